/*
 * q(): JSON fixtures written with ' for " so that goldens stay readable in C strings. Shared by
 * the unit tests of the dialects and adapters, whose fixtures are JSON.
 */
#ifndef MS_TEST_QUOTE_H
#define MS_TEST_QUOTE_H

#include <string.h>

/* s with every ' turned into " (a static buffer per call slot: q() results are used at once, at
 * most four alive; longer fixtures are cut at 16 KiB) */
static inline const char *q(const char *s)
{
    static char bufs[4][16384];
    static int k;
    char *b = bufs[k++ & 3];
    size_t n = strlen(s);
    if (n >= sizeof bufs[0]) n = sizeof bufs[0] - 1;
    for (size_t i = 0; i < n; i++)
        b[i] = s[i] == '\'' ? '"' : s[i];
    b[n] = '\0';
    return b;
}

#endif
