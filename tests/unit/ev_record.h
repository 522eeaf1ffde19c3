/*
 * ev_record(): an event sink (engine/event.h) that writes every event it is given into a buf_t as
 * bytes: its type, index, finish, the lengths and bytes of its text (NUL bytes included) and id,
 * and a usage event's counts. Shared by the unit tests that read a provider's answers two ways
 * (a decoder's shortcut and its tree) and compare what each would have sent on.
 */
#ifndef MS_TEST_EV_RECORD_H
#define MS_TEST_EV_RECORD_H

#include <stdio.h>
#include <string.h>

#include "common/buf.h"
#include "engine/event.h"

static inline int ev_record(void *ctx, const ev_event *ev)
{
    buf_t *b = ctx;
    char h[96];
    snprintf(h, sizeof h, "[%d %d %d %zu %zu]", (int)ev->type, ev->index, (int)ev->finish,
             ev->text.n, ev->id.n);
    buf_appends(b, h);
    buf_append(b, ev->text.p, ev->text.n);
    buf_append(b, ev->id.p, ev->id.n);
    if (ev->type == EV_USAGE)
        buf_printf(b, "{%lld %lld %lld %lld}", (long long)ev->usage.input,
                   (long long)ev->usage.cached_input, (long long)ev->usage.output,
                   (long long)ev->usage.reasoning);
    return 0;
}

/* Whether records a (the shortcut's) and b (the tree's) are the same bytes; when not, both are
 * printed with the events that made them (what: a label). Frees both. */
static inline int ev_records_same(buf_t *a, buf_t *b, const char *what, const char *const *evs,
                                  size_t n)
{
    int same = a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
    if (!same) {
        buf_append(a, "", 1);
        buf_append(b, "", 1);
        fprintf(stderr, "# %s\n# scan: %s# tree: %s", what, a->data, b->data);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "#   %s\n", evs[i]);
    }
    buf_free(a);
    buf_free(b);
    return same;
}

#endif
