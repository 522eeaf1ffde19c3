/*
 * Client dialects: how the gateway speaks to a client in the API the client chose. A dialect
 * encodes normalized answer events (engine/event.h) into its own wire format, streamed event by
 * event or accumulated into one whole answer, and frames what ends a stream (the usage the client
 * asked for, with the cost the gateway charged; an in-band error; the end marker).
 *
 * The engine (api/proxy.c) drives a dialect through this table and never writes a dialect's bytes
 * itself, so a new client API (Anthropic's Messages, OpenAI's Responses) is a new table, not a
 * change to the engine. When the provider speaks the client's API the answer's bytes pass through
 * instead; only what ends a stream goes through the dialect then (the provider's own usage event,
 * with the cost spliced in).
 */
#ifndef MS_DIALECT_H
#define MS_DIALECT_H

#include <stdint.h>

#include "common/buf.h"
#include "config/config.h"
#include "engine/event.h"

/* The APIs spoken on a wire, by clients (dialects) and by upstreams (adapters). When a client's
 * dialect and its provider's adapter speak the same one, the answer passes through. */
typedef enum {
    WIRE_OPENAI_CHAT,        /* OpenAI chat completions (and embeddings): openai, azure */
    WIRE_ANTHROPIC_MESSAGES, /* Anthropic's Messages API */
    WIRE_GEMINI,             /* Google's generateContent */
    WIRE_OPENAI_RESPONSES,   /* OpenAI's Responses API */
} wire_api;

/* The client's endpoint: what kind of answer it wants. */
typedef enum { EP_CHAT, EP_EMBEDDINGS } prov_endpoint;

/* A request refused before anything ran: the contract's error, for the client's dialect to
 * write in its shape. */
typedef struct dialect_refusal {
    int status;
    const char *type, *code, *param;
    char message[400];
    int64_t retry_after_ms; /* > 0: retry-after and retry-after-ms go with it */
    int no_retry;           /* x-should-retry: false, beyond the statuses that always carry it */
} dialect_refusal;

struct prov_call;

/* What an encoder needs to know of the request. */
typedef struct dialect_req {
    const char *model;      /* the model name the client sees */
    const char *request_id; /* the gateway's request id ("req_…") */
    int64_t created;        /* unix seconds */
    int include_usage;      /* streams: the client asked for a usage event */
} dialect_req;

typedef struct dialect_enc dialect_enc; /* one answer's encoder state */

/* An error in the contract's terms, for a dialect to write in its own shape. */
typedef struct dialect_error {
    const char *code;
    const char *type;
    const char *message;
} dialect_error;

typedef struct dialect {
    const char *name;
    wire_api api;
    const char *stream_content_type;
    /* A new encoder for one answer, or NULL (out of memory). */
    dialect_enc *(*enc_new)(const dialect_req *req);
    void (*enc_free)(dialect_enc *e);
    /* Streams: appends the event's bytes for the client to out (maybe none: usage is kept for
     * the end). Whole answers: pass out = NULL, the event is accumulated. 0, or -1 (memory). */
    int (*event)(dialect_enc *e, const ev_event *ev, buf_t *out);
    /* Streams: appends what ends a stream: the usage event when the client asked for one, with
     * cost (USD text) added; then err, if the stream failed, as an in-band error; then the end
     * marker. upstream_usage: the provider's own usage event when the answer passed through (its
     * bytes are kept, the cost spliced in), else empty and the dialect writes one from u (NULL:
     * usage unknown, none is written). */
    int (*stream_end)(dialect_enc *e, const usage_counts *u, ms_str upstream_usage,
                      const char *cost, const dialect_error *err, buf_t *out);
    /* Whole answers: the answer accumulated from the events, with usage u. */
    int (*answer)(dialect_enc *e, const usage_counts *u, buf_t *out);
} dialect;

/* ---- shared by the dialects (dialect/common.c) ---- */

/* s as a JSON string (quotes, escapes): every encoder writes its strings through this. */
static inline int dialect_put_str(buf_t *b, ms_str s)
{
    return buf_append_json_string(b, s.p, s.n);
}

/* The same for a string known to need no escaping (ev_event.plain): quoted, copied once. */
static inline int dialect_put_plain(buf_t *b, ms_str s)
{
    if (s.n > ((size_t)-1) / 2 || buf_reserve(b, s.n + 2) != 0) return -1;
    char *o = b->data + b->len;
    o[0] = '"';
    memcpy(o + 1, s.p, s.n);
    o[s.n + 1] = '"';
    b->len += s.n + 2;
    b->data[b->len] = '\0';
    return 0;
}

/* An event's text as a JSON string: copied when the decoder found nothing to escape. */
static inline int dialect_put_text(buf_t *b, const ev_event *ev)
{
    return ev->plain ? dialect_put_plain(b, ev->text) : dialect_put_str(b, ev->text);
}

/* Fills *why with the contract's error (type by status: not_found_error for 404, else
 * invalid_request_error) and a formatted message; returns -1. */
int dialect_refuse(dialect_refusal *why, int status, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The model member m of a request: a non-empty string naming a served model, compared by length.
 * *out gets it; shown its name as the client gave it, printable (control characters as \u00XX),
 * even when refused (404 model_not_found, 503 provider_not_configured, 400). Returns 0 or -1. */
struct jscan_member;
int dialect_resolve_model(const cfg_t *cfg, const struct jscan_member *m, const cfg_model **out,
                          char *shown, size_t shown_len, dialect_refusal *why);
/* The first part of every dialect's parse: one jscan pass of call->body (the whole document
 * validated, top-level members recorded in call->members), the fields the gateway acts on picked
 * into f (keys compared decoded; one given twice is refused naming it), and fields[0], the
 * model, resolved into call->model and call->m_model. Returns 0 or -1 with *why filled. */
struct jscan_key;
struct prov_call;
int dialect_scan(const cfg_t *cfg, struct prov_call *call, const struct jscan_key *fields,
                 size_t nfields, const struct jscan_member **f, char *shown, size_t shown_len,
                 dialect_refusal *why);
/* name[0..len) printable into out (NUL-terminated, cut to fit). */
void dialect_printable_name(const char *name, size_t len, char *out, size_t outlen);
/* Whether a JSON array value is empty ("[]", "[ ]"). */
int dialect_empty_array(ms_str v);
/* The JSON object obj with "cost":<cost> added to its top-level usage object, into out; -1 when
 * obj has no usage object. For usage events that passed through. */
int dialect_splice_cost(buf_t *out, ms_str obj, const char *cost);

/* OpenAI chat completions (dialect/openai_chat.c). */
extern const dialect dialect_openai_chat;
extern const dialect dialect_anthropic_messages; /* dialect/anthropic_messages.c */
/* The Anthropic envelope of an error answer (not in a stream), as the contract shows it:
 * {"type":"error","error":{"type","message","code","param"}}; http_request.error_body's shape. */
int dialect_anthropic_error_body(buf_t *out, int status, const char *type, const char *code,
                                 const char *param, const char *message);
extern const dialect dialect_openai_responses; /* dialect/openai_responses.c */
/* OpenAI's error envelope, which the Responses API keeps: {"error":{"message","type","code",
 * "param"}}; http_request.error_body's shape. */
int dialect_responses_error_body(buf_t *out, int status, const char *type, const char *code,
                                 const char *param, const char *message);

/* OpenAI's request side (dialect/openai_chat_request.c): parses call->body (set by the caller,
 * with call->request_id) for endpoint ep into call, resolving the model in cfg. shown gets the
 * model name as the client gave it, printable, for the access log (even when refused). Returns
 * 0, or -1 with *why filled. */
int dialect_openai_parse(const cfg_t *cfg, prov_endpoint ep, struct prov_call *call, char *shown,
                         size_t shown_len, dialect_refusal *why);
/* The same for a body the gateway wrote itself, valid JSON by construction (a hub body written
 * from a validated one: api_hub_call): its members are listed without validating it again, and
 * the call remembers it as valid (prov_call.valid). */
int dialect_openai_parse_valid(const cfg_t *cfg, prov_endpoint ep, struct prov_call *call,
                               char *shown, size_t shown_len, dialect_refusal *why);
/* The same, its top-level members already in call->members[0..listed) as the scan would list
 * them (the rewrite that wrote it knows them: dialect_anthropic_to_openai_listed); listed 0:
 * dialect_openai_parse_valid. */
int dialect_openai_parse_listed(const cfg_t *cfg, prov_endpoint ep, struct prov_call *call,
                                size_t listed, char *shown, size_t shown_len, dialect_refusal *why);

#endif
