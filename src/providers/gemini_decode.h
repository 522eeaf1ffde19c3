/*
 * The Gemini adapter's decoders (gemini_decode.c) and the per-transfer state they share with its
 * request builder (gemini.c). Gemini's answers, stream chunks, embeddings and error bodies come
 * back in Google's shapes, which no client speaks: every one is read here into normalized events
 * (engine/event.h) or into OpenAI's embeddings object. The builder sets the state's turn (tool
 * call ids) and the embeddings' estimate; the decoders read them.
 */
#ifndef MS_GEMINI_DECODE_H
#define MS_GEMINI_DECODE_H

#include <stdint.h>

#include "providers/provider.h"

/* What every chunk of a stream has in common (gemini_decode.c, "The stream's shape"): its bytes
 * but for the holes where the text and the usage's integers go, in order. nholes 0: none
 * learnt. */
#define GEM_SHAPE_TEXT 512
#define GEM_SHAPE_HOLES 8
typedef struct gem_shape {
    uint8_t nholes;
    uint8_t thought;                   /* the text is a thought */
    uint8_t usage;                     /* the chunks carry an integer promptTokenCount (a hole) */
    int8_t what[GEM_SHAPE_HOLES];      /* a hole: -1 the text, else the count it is (or another) */
    uint16_t seg[GEM_SHAPE_HOLES + 1]; /* lengths of the constant runs in text, in order */
    uint32_t hits;                     /* chunks read through it (tests) */
    char text[GEM_SHAPE_TEXT];
} gem_shape;

/* Per-transfer state (reset before every attempt; nothing on the heap, so nothing to release). */
typedef struct gem_state {
    int turn;     /* assistant turns already in the request: the answer's turn index (ids) */
    int started;  /* EV_START went out */
    int ntools;   /* tool calls decoded so far: the next call's index and ordinal */
    int finished; /* EV_FINISH went out */
    int64_t embed_estimate; /* embeddings: UTF-8 bytes of the inputs, the token bound */
    uint32_t fast_hits;     /* responses read without a tree (gemini_decode.c; tests) */
    int fast_built;         /* the request was written without a tree (gemini.c; tests) */
    gem_shape shape;        /* streams */
} gem_state;

/* The adapter's decode_answer, decode_event, decode_embeddings and error_message (provider.h). */
int gemini_dec_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                      prov_usage *usage, char *err, size_t errlen);
int gemini_dec_event(void *stv, const prov_call *call, const sse_event *sev, const ev_sink *sink,
                     prov_usage *usage, int *done, int *error, char *err, size_t errlen);
/* prov_adapter.decode_len: a chunk of the stream's learnt shape, framed "data: …" and a blank
 * line. */
size_t gemini_dec_len(void *stv, const char *p, size_t n, const ev_sink *sink, prov_usage *usage,
                      int *failed);
int gemini_dec_embeddings(void *stv, const prov_call *call, ms_str body, buf_t *client,
                          prov_usage *usage, char *err, size_t errlen);
void gemini_dec_error_message(ms_str body, char *out, size_t outlen);

#endif
