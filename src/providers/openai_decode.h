/*
 * The OpenAI adapter's decoders, and what the OpenAI adapters share (openai.c for chat
 * completions, openai_responses.c for the Responses API: headers, usage). The decoders turn
 * OpenAI chat answers (`chat.completion`) and stream chunks (`chat.completion.chunk`) into
 * normalized events (engine/event.h). The engine uses them only when the client speaks another
 * API than OpenAI chat (an Anthropic Messages or OpenAI Responses client of an openai/azure model
 * that is not passed through); OpenAI chat clients keep the pass-through path (openai.c:
 * response, stream_event), which never makes events.
 */
#ifndef MS_OPENAI_DECODE_H
#define MS_OPENAI_DECODE_H

#include <string.h>

#include "common/jscan.h"
#include "providers/provider.h"

/* Tool calls one answer may have: the OpenAI encoder's own cap (dialect/openai_chat.c). More is
 * an error, never a silent drop. */
#define OAI_DEC_MAX_TOOLS 128

/* A tool call a stream started: the upstream's index (-1: it gave none) and its id in ids. */
typedef struct openai_dec_call {
    int64_t upstream;
    uint32_t id_off, id_len;
} openai_dec_call;

/* What every event of a passed-through stream has in common (openai.c, "The stream's shape"):
 * the constant text around its one or two strings that vary, the runs before, between and after
 * them. nholes 0: none learnt yet. */
#define OAI_SHAPE_TEXT 512
typedef struct openai_shape {
    uint8_t nholes;  /* 1 or 2 */
    uint8_t counted; /* the hole that is the delta's text */
    uint8_t kind;    /* decoding: the event the text makes (EV_TEXT or EV_REASONING) */
    uint16_t seg[3]; /* lengths of the constant runs in text, in order */
    uint32_t hits;   /* events that matched it (tests) */
    char text[OAI_SHAPE_TEXT];
} openai_shape;

/* The length of sh's text at the start of d (its constant runs, and a valid JSON string in each
 * hole), or 0 when d does not start with it (d may go on past it); *text is the counted hole's
 * string token (quotes included). Inline: every event of a passed-through stream comes here. */
static inline size_t openai_shape_span(const openai_shape *sh, ms_str d, ms_str *text)
{
    const char *t = sh->text;
    size_t pos = 0;
    for (int k = 0; k < sh->nholes; k++) {
        size_t len = sh->seg[k], sl;
        if (d.n - pos < len + 2 || memcmp(d.p + pos, t, len) != 0) return 0;
        pos += len;
        t += len;
        if (!(sl = jscan_string_token(d.p + pos, d.n - pos))) return 0;
        if (k == sh->counted) *text = (ms_str){d.p + pos, sl};
        pos += sl;
    }
    size_t len = sh->seg[sh->nholes];
    return d.n - pos >= len && memcmp(d.p + pos, t, len) == 0 ? pos + len : 0;
}
/* Makes sh the shape of chunk d around its text and pad (pad.p NULL: none), two string tokens
 * within d; no shape (nholes 0) when the constant text does not fit. kind is left to the
 * caller. */
void openai_shape_learn(openai_shape *sh, ms_str d, ms_str text, ms_str pad);

/* Per-transfer state of a decoded stream (prov_adapter.state_size). The engine allocates it for
 * every attempt of this adapter that translates or passes a stream through, so it is small and
 * reset allocates nothing: the calls table and the ids grow on the first tool call, capped
 * (OAI_DEC_MAX_TOOLS calls, OAI_DEC_MAX_ID bytes of id each). */
typedef struct openai_dec_state {
    int started;  /* EV_START went out (at the first chunk) */
    int finished; /* EV_FINISH went out: a repeated finish_reason is not sent twice */
    int ntools;   /* calls started; the events' index is the order they started in */
    int last;     /* the call the last tool-call delta went to (-1: none) */
    buf_t calls;  /* openai_dec_call[ntools] */
    buf_t ids;
    openai_shape shape; /* passing a stream through */
} openai_dec_state;

/* prov_adapter.reset / release for openai_dec_state. */
void openai_dec_reset(void *st, const prov_call *call);
void openai_dec_release(void *st);

/* prov_adapter.decode_answer: a 2xx `chat.completion` into events (choices[0] only). */
int openai_decode_answer(void *st, const prov_call *call, ms_str body, const ev_sink *sink,
                         prov_usage *usage, char *err, size_t errlen);

/* prov_adapter.decode_event: one stream event (a chunk, the usage chunk, an error, [DONE]). */
int openai_decode_event(void *st, const prov_call *call, const sse_event *ev, const ev_sink *sink,
                        prov_usage *usage, int *done, int *error, char *err, size_t errlen);

/* prov_adapter.decode_len: a chunk of the stream's learnt shape, framed "data: …\n\n". */
size_t openai_decode_len(void *st, const char *p, size_t n, const ev_sink *sink, prov_usage *usage,
                         int *failed);

/* OpenAI chat usage (the raw `usage` object) onto the billed counts (docs/BILLING.md, "The five
 * counts"); sets out->known when prompt_tokens is a count. Shared by the pass-through path
 * (openai.c) and the decoders, so both bill alike. usage must lie in a document jscan_object
 * accepted: it is read without being validated again (jscan_members_valid). */
void prov_openai_read_usage(ms_str usage, prov_usage *out);
/* The same for a Responses API usage object (input_tokens, output_tokens and their details):
 * the Responses adapter's (openai_responses.c). */
void prov_openai_read_responses_usage(ms_str usage, prov_usage *out);

/* The headers every request to an openai or azure upstream carries, whatever its API: the key
 * (Authorization: Bearer, or Azure's api-key), Content-Type, and Accept for streams. Shared by
 * the chat and Responses adapters. Returns 0 or -1 (memory, or too many headers). */
int prov_openai_headers(const prov_call *call, prov_upreq *u);

#endif
