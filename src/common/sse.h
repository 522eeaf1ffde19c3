/*
 * An incremental parser for Server-Sent Events (the WHATWG event-stream format) as providers
 * send them: bytes arrive in arbitrary pieces; the parser finds event boundaries (a blank line,
 * with LF, CRLF or CR line endings), and hands each complete event to a callback with both its
 * raw bytes (to forward unchanged) and its decoded fields. An event that is wholly inside the
 * piece being fed is reported without copying; only an event split across pieces is buffered,
 * and that buffer has a hard cap so an upstream cannot make the gateway allocate without bound.
 *
 * Every blank line ends an event, so comment-only keep-alives arrive as events with empty data,
 * and joining every ev.raw gives back the stream byte for byte. When a piece ends with the CR of
 * an event's final CRLF, the event is delivered at once and the LF starts the next event's raw.
 * Views in an event are valid only during the callback.
 */
#ifndef MS_SSE_H
#define MS_SSE_H

#include <stddef.h>

#include "common/buf.h"

typedef struct sse_event {
    ms_str raw;   /* the whole event as received, including its terminating blank line */
    ms_str event; /* value of the `event:` field, empty if none */
    ms_str data;  /* `data:` lines joined with "\n" (one leading space after the colon removed) */
    ms_str id;    /* value of the `id:` field, empty if none */
} sse_event;

/* Return 0 to go on, non-zero to stop parsing (sse_feed then returns that value). */
typedef int (*sse_event_cb)(void *ud, const sse_event *ev);
/* Optional (sse_set_take): whole events at p[0..n) that the caller deals with itself, past the
 * line search and the callback (an adapter that knows a stream's shape forwards a run of them as
 * it came). Returns their total length, 0 for none: each one an event it can tell whole, ending
 * in LF, at most max_event bytes. Setting *stop non-zero ends the feed after them as a
 * callback's non-zero return does. Asked where an event starts with nothing held back; what it
 * leaves the parser reads. */
typedef size_t (*sse_take_cb)(void *ud, const char *p, size_t n, size_t max_event, int *stop);

typedef struct sse_parser {
    buf_t pending; /* raw bytes of an event split across pieces */
    buf_t data;    /* joined data when an event has several data lines */
    size_t max_event;
    int last_cr; /* previous piece ended with CR (a following LF belongs to it) */
    sse_event_cb cb;
    sse_take_cb take;
    void *ud;
} sse_parser;

#define SSE_TOO_LARGE (-1000)

void sse_init(sse_parser *p, size_t max_event, sse_event_cb cb, void *ud);
void sse_free(sse_parser *p);
/* Feeds a piece. Returns 0, the callback's non-zero value, or SSE_TOO_LARGE when one event
 * exceeds max_event bytes. */
int sse_feed(sse_parser *p, const char *data, size_t n);
/* Bytes of an incomplete event held back (the stream ended mid-event when this is not 0). */
size_t sse_pending(const sse_parser *p);
static inline void sse_set_take(sse_parser *p, sse_take_cb take)
{
    p->take = take;
}

#endif
