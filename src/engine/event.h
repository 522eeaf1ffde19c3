/*
 * Normalized answer events: what every provider adapter decodes its upstream's answer into, and
 * what every client dialect encodes for its client. An OpenAI chat client of an Anthropic model,
 * an Anthropic client of a Gemini model: each pair meets here, so n dialects and m providers need
 * n encoders and m decoders, not n × m translators. (When client and provider speak the same API
 * the bytes pass through instead and no events are made: the fast path.)
 *
 * A whole (non-streaming) answer is decoded into the same sequence as a stream, so one encoder
 * state accumulates it for the whole-answer form. Views (ms_str) point into the adapter's input
 * and are valid only during the call that receives the event.
 */
#ifndef MS_EVENT_H
#define MS_EVENT_H

#include <stdint.h>

#include "common/buf.h"
#include "common/usage.h"

typedef enum {
    EV_START,      /* the answer begins: id (the upstream's, may be empty) */
    EV_TEXT,       /* text: a delta of the assistant's content */
    EV_REASONING,  /* text: a delta of its reasoning ("thinking") */
    EV_TOOL_START, /* index, id, name: a tool call begins */
    EV_TOOL_ARGS,  /* index, text: a delta of that call's JSON arguments */
    EV_FINISH,     /* finish: why the answer ended */
    EV_USAGE,      /* usage: the counts so far (cumulative: the last one wins) */
} ev_type;

/* Why an answer ended, in the gateway's terms; each dialect names them its own way. */
typedef enum {
    EV_FINISH_STOP,           /* a natural end or a stop sequence */
    EV_FINISH_LENGTH,         /* the output limit */
    EV_FINISH_TOOL_CALLS,     /* the model called tools */
    EV_FINISH_CONTENT_FILTER, /* refused or filtered */
} ev_finish;

typedef struct ev_event {
    ev_type type;
    /* text holds nothing JSON escapes (no control byte, '"' or '\\'): a decoder that read it as a
     * JSON string token with no escape knows so, and an encoder may then copy it as it is */
    int plain;
    ms_str text;
    ms_str id;
    ms_str name;
    int index;
    ev_finish finish;
    usage_counts usage;
} ev_event;

/* Where an adapter sends its events. Returns 0, or -1 to stop decoding (out of memory, or the
 * client is gone). */
typedef struct ev_sink {
    int (*emit)(void *ctx, const ev_event *ev);
    void *ctx;
} ev_sink;

static inline int ev_emit(const ev_sink *s, const ev_event *ev)
{
    return s->emit(s->ctx, ev);
}

#endif
