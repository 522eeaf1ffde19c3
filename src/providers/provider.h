/*
 * Provider adapters. The API layer validates a client's OpenAI-shaped request and describes it
 * as a prov_call; an adapter turns that into the upstream request (URL, headers, body pieces)
 * and the upstream's answer back into OpenAI's shape, for whole bodies and for stream events.
 * src/api/proxy.c drives the transfer and is the same for every adapter.
 *
 * The OpenAI adapter forwards the client's bytes: its request body is the client's body with
 * `model` (and, for streams, `stream_options`) spliced, sent from iovecs that point into the
 * client's buffer; its answers pass through unchanged apart from dropping a usage chunk the
 * client did not ask for. The Responses adapter does the same for clients of OpenAI's Responses
 * API on providers that speak it, and the Anthropic adapter for clients of Anthropic's Messages
 * API. Adapters for other formats (Anthropic, Gemini) translate instead, into normalized events
 * (engine/event.h) that the client's dialect encodes (see prov_adapter). The echo provider is an
 * adapter with no upstream (`local`).
 */
#ifndef MS_PROVIDER_H
#define MS_PROVIDER_H

#include <stdint.h>

#include "billing/billing.h"
#include "common/buf.h"
#include "common/jscan.h"
#include "common/objcache.h"
#include "common/sse.h"
#include "common/usage.h"
#include "config/config.h"
#include "dialect/dialect.h"
#include "engine/event.h"
#include "upstream/upstream.h"

#define PROV_MAX_MEMBERS 128
#define PROV_MAX_EDITS 4
#define PROV_MAX_HEADERS 6
#define PROV_MAX_STREAM_OPTIONS 16 /* more is refused: the splice keeps every option it copies */

typedef struct prov_usage {
    int known;
    int estimated; /* the adapter's estimate, not the provider's count (the ledger marks it) */
    usage_counts u;
    /* streams: bytes of generated text seen so far (delta content, refusals, tool-call
     * arguments), the upper bound of completion tokens billed if usage never comes */
    int64_t streamed_bytes;
} prov_usage;

struct prov_call;

/* A validated client request. Views point into the client's body, which outlives the call. */
typedef struct prov_call {
    prov_endpoint ep;
    const dialect *dialect; /* the client's: encodes answers the provider did not write in it */
    const cfg_model *model;
    const cfg_deployment *dep;
    ms_str body;
    /* A text known to be valid JSON: the body once dialect_scan has accepted it (nested within
     * JSCAN_MAX_DEPTH), or a hub body the gateway wrote from such a body (a few levels deeper at
     * most). A body that is this text (same address and length: prov_body_valid) is not
     * validated again where it is read whole (dialect_scan, jtree_load_valid). */
    ms_str valid;
    size_t nmembers;
    const jscan_member *m_model;
    const jscan_member *m_stream_options; /* NULL if absent */
    int stream;
    int client_include_usage;
    int64_t max_tokens; /* -1 when not given */
    /* chat's n: the choices asked for, each up to max_tokens (0 or 1: one; the worst case the
     * hold covers is that many times one choice's, prov_choices) */
    int choices;
    /* the Anthropic dialect's client headers, forwarded when the provider speaks its API too
     * (views into the client's header block; empty when absent) */
    ms_str anthropic_version, anthropic_beta;
    int64_t output_bound; /* the attempt's model's output bound (price_output_bound): set by the
                             engine before build, for providers that require a limit */
    char request_id[40];
    /* Last, and not zeroed when a call is made (6 KB): only members[0..nmembers) are read. */
    jscan_member members[PROV_MAX_MEMBERS];
} prov_call;

/* How many choices the provider may write for the call (at least 1). */
static inline int64_t prov_choices(const prov_call *c)
{
    return c->choices > 1 ? c->choices : 1;
}

/* Whether the call's body is the text its valid member vouches for. */
static inline int prov_body_valid(const prov_call *c)
{
    return c->body.p && c->valid.p == c->body.p && c->valid.n == c->body.n;
}

/* A call's block (7 KiB, one or two a request) comes from the thread's object cache. */
static inline prov_call *prov_call_alloc(void)
{
    return oc_alloc(sizeof(prov_call));
}
static inline void prov_call_free(prov_call *call)
{
    oc_free(call, sizeof *call);
}

/* The upstream request an adapter builds. */
typedef struct prov_upreq {
    char url[1024];
    char *headers[PROV_MAX_HEADERS]; /* in hmem, or owned when they did not fit */
    size_t nheaders;
    up_iov iov[2 * PROV_MAX_EDITS + 1];
    size_t niov;
    buf_t scratch; /* owned storage for spliced-in pieces; iov may point into it */
    /* Room its owner may lend (prov_upreq_lend; NULL: none): the headers and a small scratch
     * (the model's name, stream_options) go there first, so a request's usual few need no
     * allocation. */
    char *hmem, *smem;
    size_t hcap, hused, scap;
} prov_upreq;

void prov_upreq_free(prov_upreq *u);
/* Lends u room for its headers (h[0..hn)) and scratch (s[0..sn)), which must outlive it. */
static inline void prov_upreq_lend(prov_upreq *u, char *h, size_t hn, char *s, size_t sn)
{
    u->hmem = h;
    u->hcap = hn;
    u->smem = s;
    u->scap = sn;
}
/* Starts u's scratch empty, in the lent room when there is some. */
static inline void prov_upreq_scratch(prov_upreq *u)
{
    if (u->smem)
        buf_init_with(&u->scratch, u->smem, u->scap, 0);
    else
        buf_init(&u->scratch, 0);
}

/* Why a provider cannot answer a request (a field it cannot take, an input a local provider
 * refuses): the contract's error, as a dialect refuses a request. */
typedef dialect_refusal prov_refusal;

/* A provider adapter, in the manner of nginx's upstream module: build is its create_request,
 * reset its reinit_request and input_filter_init, decode_answer/decode_event its input_filter.
 *
 * Two kinds of upstream adapters. Those whose upstream speaks the client's API (api equals the
 * client dialect's) pass the answer through: response and stream_event only read usage and check
 * it, and the client gets the provider's bytes. The others translate: build writes a new body in
 * the provider's format, and decode_answer/decode_event turn the provider's answer into
 * normalized events (engine/event.h) that the client's dialect encodes. A translating adapter
 * keeps per-transfer decoding state (state_size bytes, which the engine allocates zeroed and
 * passes to reset before every attempt, so a retry decodes from a clean slate, and to release
 * when the transfer is over). */
#define PROV_STATE_STREAMS 2 /* prov_adapter.passthrough_state */

typedef struct prov_adapter {
    wire_api api;      /* what its upstream speaks */
    size_t state_size; /* per-transfer state; 0: none */
    /* Prepares st for a new attempt (first or retry); may be NULL. */
    void (*reset)(void *st, const prov_call *call);
    /* Frees what the state holds (not st itself); may be NULL. */
    void (*release)(void *st);
    /* Fills *out (URL, headers, body pieces). Returns 0; -1 out of memory or URL too long; or
     * -2 with *why filled when the request has something this provider cannot take (the
     * contract's 400 naming param: never a silent drop). */
    int (*build)(const prov_call *call, void *st, prov_upreq *out, prov_refusal *why);
    /* A 2xx non-streaming answer. Validates it and reads usage; when the client's body differs
     * from the upstream's, writes it into client (else leaves client empty: pass through).
     * Returns 0, or -1 with a message in err when the answer is not a valid response. */
    int (*response)(void *st, const prov_call *call, ms_str body, buf_t *client, prov_usage *usage,
                    char *err, size_t errlen);
    /* One upstream stream event. Appends what the client gets to out; sets *done at the end
     * marker and *error (with a message in err) for an in-band upstream error. A chunk that only
     * carries usage is not appended: *usage_chunk is set and out holds its JSON data instead, so
     * the caller can add the cost and send it last (if the client asked for usage); *done may
     * come with it when that event is also the stream's last (Responses' terminal event). Returns
     * 0; 1 when the client gets the event's data as it is (out untouched: the caller frames it as
     * "data: …\n\n" and writes it from where it lies, no copy); 2 when the client gets the whole
     * event as it came, its `event:` line included (named events); or -1 when the event is not
     * valid (err set). */
    int (*stream_event)(void *st, const prov_call *call, const sse_event *ev, buf_t *out,
                        prov_usage *usage, int *done, int *error, int *usage_chunk, char *err,
                        size_t errlen);
    /* Optional, pass-through streams with state: the length of the whole event
     * "data: <json>\n\n" at p[0..n) when the adapter can tell from the stream's earlier events,
     * without the SSE parser, that it is one stream_event would forward as it is (return 1) and
     * nothing else; *text_bytes is then its generated text's size (prov_usage.streamed_bytes).
     * 0: it cannot; the parser reads the event and stream_event decides. The engine forwards a
     * run of such events in one write, past the parser (sse_set_take). nginx's input_filter does
     * the same for its protocols: the bytes that must be read anyway tell where the message
     * ends. */
    size_t (*stream_len)(void *st, const char *p, size_t n, int64_t *text_bytes);
    /* Pass-through needs the per-transfer state too (st above): Anthropic's usage comes in two
     * events of a stream; PROV_STATE_STREAMS: for streams only (OpenAI keeps its stream's shape,
     * openai.c). Without it st is NULL when passing through. */
    int passthrough_state;
    /* Translating adapters: a 2xx non-streaming chat answer, decoded into events to sink (usage
     * as EV_USAGE, also stored into *usage). Returns 0, or -1 with a message in err when the
     * answer is not a valid response. */
    int (*decode_answer)(void *st, const prov_call *call, ms_str body, const ev_sink *sink,
                         prov_usage *usage, char *err, size_t errlen);
    /* Translating adapters: one upstream stream event, decoded into events to sink (usage as it
     * grows, into *usage too). Sets *done when the provider's answer is complete and *error (with
     * a message in err) for an in-band upstream error. Returns 0, or -1 when the event is not
     * valid (err set). */
    int (*decode_event)(void *st, const prov_call *call, const sse_event *ev, const ev_sink *sink,
                        prov_usage *usage, int *done, int *error, char *err, size_t errlen);
    /* Optional, translating adapters: the stream_len of decoding. When the stream's earlier
     * events tell that the whole event at p[0..n) (its framing included) is one decode_event
     * would make exactly one text event of, decodes it into sink as decode_event would and
     * returns its length; 0 when it cannot tell (the parser reads the event and decode_event
     * decides; sink got nothing). *failed is set when sink refused the event (the client's
     * encoder: out of memory). The engine decodes a run of such events past the SSE parser and
     * writes their encoding in one piece. */
    size_t (*decode_len)(void *st, const char *p, size_t n, const ev_sink *sink, prov_usage *usage,
                         int *failed);
    /* Translating adapters: a 2xx embeddings answer rewritten as OpenAI's embeddings body into
     * client, usage read. Returns 0, or -1 with a message in err. */
    int (*decode_embeddings)(void *st, const prov_call *call, ms_str body, buf_t *client,
                             prov_usage *usage, char *err, size_t errlen);
    /* Pass-through streams that end before their held end event (cut, an in-band error, an
     * idle gap): appends to held what stands in for that event, for the dialect to end the
     * client's stream in the provider's own terms (Responses: the provider's response id and the
     * last sequence number the client got, openai_responses.c). Needs the per-transfer state
     * (passthrough_state); may be NULL. Returns 0, or -1 (memory: held is then left empty). */
    int (*stream_cut)(void *st, buf_t *held);
    /* The human message inside an upstream error answer. */
    void (*error_message)(ms_str body, char *out, size_t outlen);
    /* Adapters whose upstream counts a request's input tokens in the client's own API
     * (Anthropic's count_tokens, for a client of the Messages API): fills *out with that count's
     * upstream request, the client's body with `model` spliced (call->dep set). Returns 0, or -1
     * (memory, a URL too long). NULL: the gateway answers its own estimate (api/count_tokens.c). */
    int (*build_count)(const prov_call *call, prov_upreq *out);
    /* Providers with no upstream (echo) set only this: answers at once, a chat as events to
     * sink (usage last), embeddings as an OpenAI body in body; fills usage. Returns 0, or -1 with
     * *why filled (a refused request) or, why->status left 0, when out of memory. */
    int (*local)(const prov_call *call, const ev_sink *sink, buf_t *body, prov_usage *usage,
                 prov_refusal *why);
} prov_adapter;

/* Rewrites msg (NUL-terminated, in a buffer of cap bytes) with every credential the gateway
 * holds for the provider replaced by "[redacted]": its configured api_key and the value of every
 * credential header of u (Authorization, api-key, x-api-key, x-goog-api-key; u may be NULL).
 * Upstreams echo what they were sent ("invalid key sk-..."), and their messages reach clients
 * and logs, so each one passes through here first. */
void prov_redact(const cfg_provider *prov, const prov_upreq *u, char *msg, size_t cap);

/* The adapter an attempt on provider prov uses for a client speaking client (its dialect's api),
 * or NULL (a kind not implemented). One adapter per kind, except for openai and azure providers
 * with `responses`: a Responses client's request passes through to them (prov_openai_responses)
 * while every other client keeps chat completions (prov_openai). A switch and one comparison:
 * it runs for every attempt. */
const prov_adapter *prov_adapter_for(const cfg_provider *prov, wire_api client);

extern const prov_adapter prov_openai;
extern const prov_adapter prov_openai_responses; /* openai_responses.c */
extern const prov_adapter prov_echo;
extern const prov_adapter prov_anthropic;
extern const prov_adapter prov_gemini;

#endif
