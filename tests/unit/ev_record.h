/*
 * ev_record(): an event sink (engine/event.h) that writes every event it is given into a buf_t as
 * bytes: its type, index, finish, the lengths and bytes of its text (NUL bytes included) and id,
 * and a usage event's counts. Shared by the unit tests that read a provider's answers two ways
 * (a decoder's shortcut and its tree) and compare what each would have sent on.
 */
#ifndef MS_TEST_EV_RECORD_H
#define MS_TEST_EV_RECORD_H

#include <stdio.h>

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

#endif
