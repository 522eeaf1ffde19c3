/*
 * Every one-byte change of a text, for the tests that hold a shortcut against the full path it
 * stands in for (a scan against a tree, a writer against jansson's): the shortcut must agree on
 * whatever a client or a provider could send, and the texts next to a usual one are where it
 * decides to take it or leave it.
 */
#ifndef MS_TEST_MUTATE_H
#define MS_TEST_MUTATE_H

#include <stdlib.h>
#include <string.h>

/* Calls fn(text, i, k, ud) on every text made from base by replacing its byte i with subst[k]
 * (k < strlen(subst), when the two differ) or by deleting it (k == strlen(subst)). */
static inline void mutate_each(const char *base, const char *subst,
                               void (*fn)(const char *m, size_t i, size_t k, void *ud), void *ud)
{
    size_t n = strlen(base), ns = strlen(subst);
    char *m = malloc(n + 1);
    if (!m) abort();
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k <= ns; k++) {
            if (k < ns) {
                memcpy(m, base, n + 1);
                if (m[i] == subst[k]) continue;
                m[i] = subst[k];
            } else {
                memcpy(m, base, i);
                memcpy(m + i, base + i + 1, n - i);
            }
            fn(m, i, k, ud);
        }
    }
    free(m);
}

/* What a comparison over the changes counted: texts compared, the shortcut's, disagreements. */
typedef struct mutate_count {
    size_t runs, taken, failed;
} mutate_count;

#endif
