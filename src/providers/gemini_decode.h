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

/* Per-transfer state (reset before every attempt; nothing on the heap, so nothing to release). */
typedef struct gem_state {
    int turn;     /* assistant turns already in the request: the answer's turn index (ids) */
    int started;  /* EV_START went out */
    int ntools;   /* tool calls decoded so far: the next call's index and ordinal */
    int finished; /* EV_FINISH went out */
    int64_t embed_estimate; /* embeddings: UTF-8 bytes of the inputs, the token bound */
    uint32_t fast_hits;     /* responses read without a tree (gemini_decode.c; tests) */
} gem_state;

/* The adapter's decode_answer, decode_event, decode_embeddings and error_message (provider.h). */
int gemini_dec_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                      prov_usage *usage, char *err, size_t errlen);
int gemini_dec_event(void *stv, const prov_call *call, const sse_event *sev, const ev_sink *sink,
                     prov_usage *usage, int *done, int *error, char *err, size_t errlen);
int gemini_dec_embeddings(void *stv, const prov_call *call, ms_str body, buf_t *client,
                          prov_usage *usage, char *err, size_t errlen);
void gemini_dec_error_message(ms_str body, char *out, size_t outlen);

#endif
