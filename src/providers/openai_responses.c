/*
 * The Responses adapter: clients of OpenAI's Responses API (POST /v1/responses: Codex, the OpenAI
 * SDKs' responses.*) passed through to an openai or azure provider that speaks that API too
 * (`responses: true`, the default at OpenAI's own URL; prov_adapter_for chooses it). Every other
 * provider gets such a client's request rewritten into chat completions (dialect/hub.c), and this
 * adapter is not used; clients of other APIs never use it either.
 *
 * Like the chat adapter (openai.c) it forwards the client's bytes with only `model` spliced (the
 * deployment's upstream name), so every Responses feature works, present and future: built-in
 * tools, `include`, reasoning summaries and encrypted reasoning, and fields the hub rewrite
 * refuses. The answer passes through; the adapter only reads what billing needs and checks that
 * the answer is what it claims to be:
 *   - a whole answer is a `response` object with an `output` array; its `usage` is billed
 *     (input_tokens with input_tokens_details.cached_tokens as cache reads, output_tokens with
 *     output_tokens_details.reasoning_tokens: openai.c's mapping, under these names);
 *   - a stream's typed events go to the client as they came, `event:` lines included, except the
 *     terminal one (response.completed, response.incomplete or response.failed), which carries
 *     the usage: it is held, so the dialect (dialect/openai_responses.c) can splice the gateway's
 *     cost into its response.usage, and it ends the stream (there is no [DONE]). An `error` event
 *     becomes the dialect's own (the contract's code, the provider's message). A stream that ends
 *     without a terminal event is cut: the dialect ends it with an error event and
 *     response.failed that continue the provider's own (stream_cut gives it the response's id
 *     and the last sequence number), and the request is billed by estimate.
 * References: https://platform.openai.com/docs/api-reference/responses (create, the response
 * object, usage) and .../responses-streaming (the events, sequence_number); Azure OpenAI's v1
 * API, https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle ("v1 API":
 * {endpoint}/openai/v1/responses, the deployment name as `model`, no api-version).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "providers/openai_decode.h"
#include "providers/provider.h"
#include "providers/wire.h"

#define RSP_MAX_ID 128    /* the provider's response id kept for a cut stream; longer: none */
#define RSP_MAX_MODEL 256 /* its model name, likewise */

/* Per-transfer state: what a cut stream's end needs of what the client already got. */
typedef struct rsp_state {
    int forwarded; /* events went to the client */
    int has_seq;   /* seq is the provider's last sequence_number */
    int64_t seq;
    int64_t created_at;
    char id[RSP_MAX_ID]; /* from response.created ("" until then) */
    char model[RSP_MAX_MODEL];
} rsp_state;

static void rsp_reset(void *stv, const prov_call *call)
{
    (void)call;
    memset(stv, 0, sizeof(rsp_state));
}

/* OpenAI: {base_url}/responses. Azure: its v1 API, {base_url}/openai/v1/responses, where the
 * deployment is the body's `model` (spliced) and no api-version is needed: the path Azure's
 * current documentation gives for the Responses API (its older preview path,
 * /openai/responses?api-version=...-preview, is not used; nor is the provider's api_version,
 * which is chat completions'). */
static int rsp_url(const prov_call *call, prov_upreq *u)
{
    const cfg_provider *prov = call->dep->provider;
    buf_t b;
    buf_init_with(&b, u->url, sizeof u->url, sizeof u->url - 1);
    int rc = buf_appends(&b, prov->base_url);
    rc |= buf_appends(&b, prov->kind == PROV_AZURE ? "/openai/v1/responses" : "/responses");
    /* the limit is below the array's size: a URL too long is refused, never cut */
    if (rc || !b.borrowed) {
        buf_free(&b);
        return -1;
    }
    u->url[b.len] = '\0';
    return 0;
}

static int rsp_build(const prov_call *call, void *st, prov_upreq *u, prov_refusal *why)
{
    (void)st;
    if (call->ep != EP_CHAT) /* prov_adapter_for gives it only Responses clients */
        return prov_refuse(why, NULL, "The Responses API has no embeddings.");
    if (rsp_url(call, u) != 0 || prov_openai_headers(call, u) != 0) return -1;
    return prov_splice_model(call, u);
}

/* A whole answer: passes through; it must be a response object with its output. */
static int rsp_response(void *st, const prov_call *call, ms_str body, buf_t *client,
                        prov_usage *usage, char *err, size_t errlen)
{
    (void)st;
    (void)call;
    (void)client;
    jscan_member m[64];
    int n = jscan_object(body.p, body.n, m, 64, NULL);
    if (n < 0) {
        snprintf(err, errlen, "the provider's answer is not a JSON object");
        return -1;
    }
    static const jscan_key keys[] = {JSCAN_KEY("usage"), JSCAN_KEY("output")};
    const jscan_member *f[2];
    jscan_pick(m, (size_t)(n > 64 ? 64 : n), keys, 2, f);
    if (f[0] && f[0]->type == JS_OBJECT) prov_openai_read_responses_usage(f[0]->value, usage);
    if (!f[1] || f[1]->type != JS_ARRAY) {
        snprintf(err, errlen, "the provider's answer has no 'output' array");
        return -1;
    }
    return 0;
}

static int type_is(const jscan_member *t, const char *lit)
{
    return t && t->type == JS_STRING && t->value.n == strlen(lit) + 2 &&
           memcmp(t->value.p + 1, lit, t->value.n - 2) == 0;
}

/* The provider's response id, creation time and model, from response.created: a cut stream's
 * end names the response the client has been getting. Too long or absent: not kept. */
static void keep_response(rsp_state *st, const jscan_member *r)
{
    jscan_member m[64];
    int n = r && r->type == JS_OBJECT ? jscan_members(r->value, m, 64) : -1;
    if (n < 0) return;
    static const jscan_key keys[] = {JSCAN_KEY("id"), JSCAN_KEY("created_at"), JSCAN_KEY("model")};
    const jscan_member *f[3];
    jscan_pick(m, (size_t)(n > 64 ? 64 : n), keys, 3, f);
    if (!f[0] || jscan_string(f[0]->value, st->id, sizeof st->id) < 0) {
        st->id[0] = '\0';
        return;
    }
    if (!f[1] || jscan_int(f[1]->value, &st->created_at) != 0) st->created_at = 0;
    if (!f[2] || jscan_string(f[2]->value, st->model, sizeof st->model) < 0) st->model[0] = '\0';
}

/* The message of an `error` event: {"type":"error","code","message",...}, or nested in "error"
 * as OpenAI's servers also send it. */
static void error_event_message(const jscan_member *msg, const jscan_member *nested, char *err,
                                size_t errlen)
{
    if (msg && jscan_string(msg->value, err, errlen) >= 0) return;
    jscan_member e[16];
    int n = nested && nested->type == JS_OBJECT ? jscan_members(nested->value, e, 16) : -1;
    const jscan_member *m = n > 0 ? jscan_find(e, (size_t)(n > 16 ? 16 : n), "message") : NULL;
    if (!m || jscan_string(m->value, err, errlen) < 0)
        snprintf(err, errlen, "the provider reported an error in the stream");
}

enum { K_TYPE, K_SEQ, K_RESPONSE, K_DELTA, K_MESSAGE, K_ERROR, K_COUNT };

static int rsp_stream_event(void *stv, const prov_call *call, const sse_event *ev, buf_t *out,
                            prov_usage *usage, int *done, int *error, int *usage_chunk, char *err,
                            size_t errlen)
{
    rsp_state *st = stv;
    (void)call;
    ms_str d = ev->data;
    /* comments and keep-alives carry nothing; [DONE] is chat's end, not this API's (a stream
     * that has only that is cut) */
    if (d.n == 0 || ms_str_eq(d, "[DONE]")) return 0;
    jscan_member m[16];
    int n = jscan_object(d.p, d.n, m, 16, NULL);
    if (n < 0) {
        snprintf(err, errlen, "the provider sent an invalid stream event");
        return -1;
    }
    static const jscan_key keys[K_COUNT] = {JSCAN_KEY("type"),     JSCAN_KEY("sequence_number"),
                                            JSCAN_KEY("response"), JSCAN_KEY("delta"),
                                            JSCAN_KEY("message"),  JSCAN_KEY("error")};
    const jscan_member *f[K_COUNT];
    jscan_pick(m, (size_t)(n > 16 ? 16 : n), keys, K_COUNT, f);
    const jscan_member *type = f[K_TYPE];
    if (type_is(type, "error") || ms_str_eq(ev->event, "error")) {
        /* the dialect writes it, with the contract's code (and ends the stream) */
        *error = 1;
        error_event_message(f[K_MESSAGE], f[K_ERROR], err, errlen);
        return 0;
    }
    int64_t seq;
    if (f[K_SEQ] && jscan_int(f[K_SEQ]->value, &seq) == 0) st->seq = seq, st->has_seq = 1;
    if (type_is(type, "response.completed") || type_is(type, "response.incomplete") ||
        type_is(type, "response.failed")) {
        /* the end, with the usage: held for the cost, sent last by the dialect */
        const jscan_member *r = f[K_RESPONSE];
        jscan_member rm[64];
        int rn = r && r->type == JS_OBJECT ? jscan_members(r->value, rm, 64) : -1;
        const jscan_member *u =
            rn > 0 ? jscan_find(rm, (size_t)(rn > 64 ? 64 : rn), "usage") : NULL;
        if (u && u->type == JS_OBJECT) prov_openai_read_responses_usage(u->value, usage);
        *usage_chunk = 1;
        *done = 1;
        return buf_append(out, d.p, d.n) ? -1 : 0;
    }
    if (type_is(type, "response.created") && !st->id[0]) keep_response(st, f[K_RESPONSE]);
    /* text, argument and reasoning deltas bound the output billed if usage never comes */
    if (f[K_DELTA] && f[K_DELTA]->type == JS_STRING)
        usage->streamed_bytes += (int64_t)f[K_DELTA]->value.n - 2;
    st->forwarded = 1;
    return 2; /* as it came, its event: line too */
}

/* What stands in for the terminal event of a stream cut after some events went to the client:
 * {"type":"response.in_progress","sequence_number":<the last>,"response":{"id","created_at",
 * "model"}}, so the dialect's error event and response.failed continue the provider's numbering
 * and name its response. Nothing when nothing went out: the dialect then ends the stream from
 * its own start. */
static int rsp_stream_cut(void *stv, buf_t *held)
{
    const rsp_state *st = stv;
    if (!st->forwarded) return 0;
    int rc = buf_appends(held, "{\"type\":\"response.in_progress\"");
    if (st->has_seq) rc |= buf_printf(held, ",\"sequence_number\":%" PRId64, st->seq);
    if (st->id[0]) {
        rc |= buf_appends(held, ",\"response\":{\"id\":");
        rc |= prov_put_jstr(held, st->id, strlen(st->id));
        rc |= buf_printf(held, ",\"created_at\":%" PRId64 ",\"model\":", st->created_at);
        rc |= prov_put_jstr(held, st->model, strlen(st->model));
        rc |= buf_appends(held, "}");
    }
    rc |= buf_appends(held, "}");
    if (rc) buf_reset(held);
    return rc ? -1 : 0;
}

/* Errors come in OpenAI's envelope, as chat completions' do. */
static void rsp_error_message(ms_str body, char *out, size_t outlen)
{
    prov_openai.error_message(body, out, outlen);
}

const prov_adapter prov_openai_responses = {
    .api = WIRE_OPENAI_RESPONSES,
    .state_size = sizeof(rsp_state),
    .reset = rsp_reset,
    .build = rsp_build,
    .response = rsp_response,
    .stream_event = rsp_stream_event,
    .passthrough_state = 1,
    .stream_cut = rsp_stream_cut,
    .error_message = rsp_error_message,
};
