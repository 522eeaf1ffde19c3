/*
 * The Gemini adapter's decoders: Google's GenerateContentResponse (a whole answer, or one chunk of
 * a stream) into normalized events, its embeddings answer into OpenAI's embeddings object, and
 * its error bodies into one line for the contract's error. The request side is gemini.c; why
 * every Gemini answer is translated is said there.
 *
 * References (ai.google.dev): https://ai.google.dev/api/generate-content (GenerateContentResponse,
 * Candidate, FinishReason, UsageMetadata), https://ai.google.dev/api/embeddings,
 * https://ai.google.dev/gemini-api/docs/troubleshooting (the error object).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/jtree.h"
#include "providers/gemini_decode.h"
#include "providers/wire.h"

#define GEM_MAX_TOOLS 128        /* tool calls in one answer: the OpenAI encoder's limit too */
#define GEM_MAX_ARGS (16u << 20) /* the largest tool-call arguments serialized */
#define GEM_ID_LEN 32            /* "call_" + 16 hex digits + NUL fits */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Gemini's function calls carry no id, and OpenAI's clients need one to answer each call. The id
 * is made from what identifies the call within its conversation: the function's name, the turn
 * (how many assistant messages came before the answer) and the call's ordinal in that answer. So
 * a retry, or the same conversation sent again, gets the same ids, and the ids of different turns
 * differ. The gateway never needs to reverse it: a tool result names its function through the
 * assistant message it answers, which the client sends back. */
static void make_id(char out[GEM_ID_LEN], const char *name, size_t nlen, int turn, int ordinal)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ull, name, nlen);
    unsigned char sep = 0;
    h = fnv1a(h, &sep, 1);
    uint32_t t = (uint32_t)turn, o = (uint32_t)ordinal;
    unsigned char w[8] = {(unsigned char)t,         (unsigned char)(t >> 8),
                          (unsigned char)(t >> 16), (unsigned char)(t >> 24),
                          (unsigned char)o,         (unsigned char)(o >> 8),
                          (unsigned char)(o >> 16), (unsigned char)(o >> 24)};
    h = fnv1a(h, w, sizeof w);
    snprintf(out, GEM_ID_LEN, "call_%016" PRIx64, h);
}

/* ---- answers ---------------------------------------------------------------------------- */

static int64_t count_of(json_t *um, const char *k)
{
    json_t *v = json_object_get(um, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* UsageMetadata onto the billed counts (shared/spec/API.md, "Billing"): promptTokenCount holds
 * the cached tokens, and the tool-use prompt is read as prompt too; thoughts are output that
 * candidatesTokenCount leaves out. A cached count above the prompt is clamped to it. */
static int read_usage(json_t *um, prov_usage *u)
{
    if (!json_is_object(um) || !json_is_integer(json_object_get(um, "promptTokenCount"))) return 0;
    int64_t prompt = count_of(um, "promptTokenCount"),
            cached = count_of(um, "cachedContentTokenCount");
    if (cached > prompt) cached = prompt;
    int64_t thoughts = count_of(um, "thoughtsTokenCount");
    u->known = 1;
    u->u = (usage_counts){0};
    u->u.input = prompt - cached + count_of(um, "toolUsePromptTokenCount");
    u->u.cached_input = cached;
    u->u.output = count_of(um, "candidatesTokenCount") + thoughts;
    u->u.reasoning = thoughts;
    return 1;
}

static ev_finish map_finish(const char *r)
{
    static const char *const filtered[] = {"SAFETY",
                                           "RECITATION",
                                           "BLOCKLIST",
                                           "PROHIBITED_CONTENT",
                                           "SPII",
                                           "IMAGE_SAFETY",
                                           "IMAGE_PROHIBITED_CONTENT",
                                           "IMAGE_RECITATION",
                                           "MODEL_ARMOR"};
    if (strcmp(r, "MAX_TOKENS") == 0) return EV_FINISH_LENGTH;
    for (size_t i = 0; i < sizeof filtered / sizeof *filtered; i++)
        if (strcmp(r, filtered[i]) == 0) return EV_FINISH_CONTENT_FILTER;
    /* STOP, and the rest (OTHER, MALFORMED_FUNCTION_CALL, LANGUAGE...), which OpenAI has no name
     * for: the model stopped */
    return EV_FINISH_STOP;
}

/* Google's error object as one line: "<message> (<STATUS>)". */
static int error_text(json_t *e, char *out, size_t outlen)
{
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *status = json_string_value(json_object_get(e, "status"));
    if (!msg && !status) return -1;
    if (msg && status)
        snprintf(out, outlen, "%s (%s)", msg, status);
    else
        snprintf(out, outlen, "%s", msg ? msg : status);
    return 0;
}

/* One GenerateContentResponse (a whole answer, or one chunk of a stream) into events. */
static int decode_response(gem_state *st, json_t *resp, const ev_sink *sink, prov_usage *usage,
                           char *err, size_t errlen)
{
    ev_event ev;
    if (!st->started) {
        const char *id = json_string_value(json_object_get(resp, "responseId"));
        ev = (ev_event){.type = EV_START, .id = ms_str_c(id ? id : "")};
        if (ev_emit(sink, &ev)) return -1;
        st->started = 1;
    }
    json_t *cands = json_object_get(resp, "candidates");
    json_t *cand = json_array_get(cands, 0);
    json_t *parts = json_object_get(json_object_get(cand, "content"), "parts");
    size_t i;
    json_t *p;
    buf_t args;
    buf_init(&args, GEM_MAX_ARGS);
    json_array_foreach(parts, i, p)
    {
        json_t *text = json_object_get(p, "text"), *fc = json_object_get(p, "functionCall");
        int rc = 0;
        if (json_is_string(text)) {
            if (json_string_length(text) == 0) continue;
            ev = (ev_event){.type = json_is_true(json_object_get(p, "thought")) ? EV_REASONING
                                                                                : EV_TEXT,
                            .text = {json_string_value(text), json_string_length(text)}};
            usage->streamed_bytes += (int64_t)json_string_length(text);
            rc = ev_emit(sink, &ev);
        } else if (json_is_object(fc)) {
            json_t *name = json_object_get(fc, "name"), *a = json_object_get(fc, "args");
            if (!json_is_string(name) || (a && !json_is_object(a))) {
                snprintf(err, errlen, "the provider sent a function call without a name");
                buf_free(&args);
                return -1;
            }
            if (st->ntools >= GEM_MAX_TOOLS) {
                snprintf(err, errlen, "the provider sent more than %d function calls",
                         GEM_MAX_TOOLS);
                buf_free(&args);
                return -1;
            }
            char id[GEM_ID_LEN];
            int ord = st->ntools++;
            make_id(id, json_string_value(name), json_string_length(name), st->turn, ord);
            ev = (ev_event){.type = EV_TOOL_START,
                            .index = ord,
                            .id = ms_str_c(id),
                            .name = {json_string_value(name), json_string_length(name)}};
            rc = ev_emit(sink, &ev);
            buf_reset(&args);
            if (rc == 0) rc = a ? prov_put_json(&args, a) : buf_appends(&args, "{}");
            if (rc == 0) {
                ev = (ev_event){.type = EV_TOOL_ARGS, .index = ord, .text = {args.data, args.len}};
                usage->streamed_bytes += (int64_t)args.len;
                rc = ev_emit(sink, &ev);
            }
        } else {
            /* a part that only carries a thought signature says nothing to an OpenAI client;
             * anything else (images, code execution) it could not be shown */
            const char *k;
            json_t *v;
            json_object_foreach(p, k, v)
            {
                if (strcmp(k, "thoughtSignature") != 0 && strcmp(k, "thought") != 0) {
                    snprintf(err, errlen,
                             "the provider answered with a '%.40s' part, which OpenAI's chat "
                             "format cannot carry",
                             k);
                    buf_free(&args);
                    return -1;
                }
            }
        }
        if (rc) {
            buf_free(&args);
            return -1;
        }
    }
    buf_free(&args);
    if (read_usage(json_object_get(resp, "usageMetadata"), usage)) {
        ev = (ev_event){.type = EV_USAGE, .usage = usage->u};
        if (ev_emit(sink, &ev)) return -1;
    }
    const char *reason = json_string_value(json_object_get(cand, "finishReason"));
    const char *block =
        json_string_value(json_object_get(json_object_get(resp, "promptFeedback"), "blockReason"));
    if ((reason && reason[0]) || (!cand && block)) {
        ev_finish f = !cand ? EV_FINISH_CONTENT_FILTER : map_finish(reason);
        /* Gemini says STOP after function calls; OpenAI's clients look for tool_calls */
        if (f == EV_FINISH_STOP && st->ntools > 0) f = EV_FINISH_TOOL_CALLS;
        ev = (ev_event){.type = EV_FINISH, .finish = f};
        if (ev_emit(sink, &ev)) return -1;
        st->finished = 1;
    }
    return 0;
}

int gemini_dec_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                      prov_usage *usage, char *err, size_t errlen)
{
    gem_state *st = stv;
    (void)call;
    json_error_t je;
    json_t *resp = jtree_load(body.p, body.n, &je);
    int rc = -1;
    if (!json_is_object(resp)) {
        snprintf(err, errlen, "the provider's answer is not a JSON object");
    } else if (json_array_size(json_object_get(resp, "candidates")) == 0 &&
               !json_object_get(json_object_get(resp, "promptFeedback"), "blockReason")) {
        snprintf(err, errlen, "the provider's answer has no candidates");
    } else if ((rc = decode_response(st, resp, sink, usage, err, errlen)) == 0 && !st->finished) {
        /* a whole answer is complete even when its candidate names no reason */
        ev_event ev = {.type = EV_FINISH,
                       .finish = st->ntools ? EV_FINISH_TOOL_CALLS : EV_FINISH_STOP};
        rc = ev_emit(sink, &ev);
    }
    json_decref(resp);
    return rc;
}

int gemini_dec_event(void *stv, const prov_call *call, const sse_event *sev, const ev_sink *sink,
                     prov_usage *usage, int *done, int *error, char *err, size_t errlen)
{
    gem_state *st = stv;
    (void)call;
    if (sev->data.n == 0) return 0; /* comments and keep-alives */
    json_error_t je;
    json_t *chunk = jtree_load(sev->data.p, sev->data.n, &je);
    int rc = 0;
    if (!json_is_object(chunk)) {
        snprintf(err, errlen, "the provider sent an invalid stream event");
        rc = -1;
    } else if (json_is_object(json_object_get(chunk, "error"))) {
        *error = 1;
        if (error_text(json_object_get(chunk, "error"), err, errlen) != 0)
            snprintf(err, errlen, "the provider reported an error in the stream");
    } else if (st->finished) {
        /* nothing is read after the finish (the engine stops at *done) */
    } else if ((rc = decode_response(st, chunk, sink, usage, err, errlen)) == 0 && st->finished) {
        *done = 1; /* Gemini has no end marker: the chunk with finishReason is the last */
    }
    json_decref(chunk);
    return rc;
}

/* ---- embeddings answers ----------------------------------------------------------------- */

/* The elements of a JSON array already validated: calls fn for each element's raw text. */
static int each_element(ms_str arr, int (*fn)(void *ctx, ms_str el), void *ctx)
{
    const char *p = arr.p, *e = arr.p + arr.n;
    while (p < e && *p != '[')
        p++;
    if (p == e) return -1;
    p++;
    for (;;) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ','))
            p++;
        if (p >= e || *p == ']') return 0;
        const char *s = p;
        int depth = 0, in_str = 0;
        for (; p < e; p++) {
            char ch = *p;
            if (in_str) {
                if (ch == '\\')
                    p++;
                else if (ch == '"')
                    in_str = 0;
                continue;
            }
            if (ch == '"') {
                in_str = 1;
            } else if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (depth == 0) break;
                depth--;
            } else if (ch == ',' && depth == 0) {
                break;
            }
        }
        const char *end = p;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
            end--;
        int rc = fn(ctx, (ms_str){s, (size_t)(end - s)});
        if (rc) return rc;
    }
}

typedef struct emb_ctx {
    buf_t *out;
    int b64;
    size_t index, nvalues;
    unsigned char pend[3]; /* base64: bytes waiting for a whole group of three */
    int npend;
    char *err;
    size_t errlen;
} emb_ctx;

static const char b64tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_byte(emb_ctx *c, unsigned char byte)
{
    c->pend[c->npend++] = byte;
    if (c->npend < 3) return 0;
    uint32_t v = (uint32_t)c->pend[0] << 16 | (uint32_t)c->pend[1] << 8 | c->pend[2];
    char q[4] = {b64tbl[v >> 18 & 63], b64tbl[v >> 12 & 63], b64tbl[v >> 6 & 63], b64tbl[v & 63]};
    c->npend = 0;
    return buf_append(c->out, q, 4);
}

static int b64_end(emb_ctx *c)
{
    if (c->npend == 0) return 0;
    uint32_t v = (uint32_t)c->pend[0] << 16 | (c->npend > 1 ? (uint32_t)c->pend[1] << 8 : 0);
    char q[4] = {b64tbl[v >> 18 & 63], b64tbl[v >> 12 & 63],
                 c->npend > 1 ? b64tbl[v >> 6 & 63] : '=', '='};
    c->npend = 0;
    return buf_append(c->out, q, 4);
}

static int emb_value(void *ctx, ms_str v)
{
    emb_ctx *c = ctx;
    double d;
    if (jscan_double(v, &d) != 0) {
        snprintf(c->err, c->errlen, "the provider sent an embedding value that is not a number");
        return -1;
    }
    if (!c->b64) { /* the provider's own digits: exact, and as short as it wrote them */
        int rc = c->nvalues++ ? buf_appends(c->out, ",") : 0;
        return rc | buf_append(c->out, v.p, v.n);
    }
    /* OpenAI's base64: the float32 values, little-endian */
    float f = (float)d;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    int rc = 0;
    for (int k = 0; k < 4; k++)
        rc |= b64_byte(c, (unsigned char)(bits >> (8 * k)));
    c->nvalues++;
    return rc;
}

static int emb_one(void *ctx, ms_str el)
{
    emb_ctx *c = ctx;
    jscan_member m[8];
    int n = jscan_members_valid(el, m, 8);
    const jscan_member *vals = n > 0 ? jscan_find(m, (size_t)(n > 8 ? 8 : n), "values") : NULL;
    if (!vals || vals->type != JS_ARRAY) {
        snprintf(c->err, c->errlen, "the provider sent an embedding without values");
        return -1;
    }
    int rc = buf_printf(c->out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":%s",
                        c->index ? "," : "", c->index, c->b64 ? "\"" : "[");
    c->nvalues = 0;
    c->npend = 0;
    if (rc == 0 && (rc = each_element(vals->value, emb_value, c)) != 0) return rc;
    if (c->b64) rc |= b64_end(c);
    rc |= buf_appends(c->out, c->b64 ? "\"}" : "]}");
    c->index++;
    return rc;
}

int gemini_dec_embeddings(void *stv, const prov_call *call, ms_str body, buf_t *client,
                          prov_usage *usage, char *err, size_t errlen)
{
    gem_state *st = stv;
    err[0] = '\0';
    jscan_member m[16];
    int n = jscan_object(body.p, body.n, m, 16, NULL);
    const jscan_member *embs =
        n > 0 ? jscan_find(m, (size_t)(n > 16 ? 16 : n), "embeddings") : NULL;
    if (!embs || embs->type != JS_ARRAY) {
        snprintf(err, errlen, "the provider's answer has no 'embeddings' array");
        return -1;
    }
    int b64 = 0;
    const jscan_member *ef = jscan_find(call->members, call->nmembers, "encoding_format");
    if (ef && ef->type == JS_STRING && ms_str_eq(ef->value, "\"base64\"")) b64 = 1;
    emb_ctx c = {.out = client, .b64 = b64, .err = err, .errlen = errlen};
    int rc = buf_appends(client, "{\"object\":\"list\",\"data\":[");
    if (rc == 0 && (rc = each_element(embs->value, emb_one, &c)) != 0) {
        if (!err[0]) snprintf(err, errlen, "the gateway ran out of memory");
        return -1;
    }
    /* Gemini's embeddings answer reports no usage; a usageMetadata, if it ever comes, is read.
     * Otherwise the prompt is billed at its bound: the UTF-8 bytes of the inputs (no Gemini
     * token is shorter than a byte: docs/BILLING.md, "Prompt bound"), so the estimate is never
     * below what Google bills. */
    json_error_t je;
    prov_usage u = {0};
    const jscan_member *um = jscan_find(m, (size_t)(n > 16 ? 16 : n), "usageMetadata");
    json_t *umj = um && um->type == JS_OBJECT ? json_loadb(um->value.p, um->value.n, 0, &je) : NULL;
    if (!read_usage(umj, &u))
        u = (prov_usage){.known = 1, .u = {.input = st->embed_estimate}, .estimated = 1};
    json_decref(umj);
    u.u.output = u.u.reasoning = 0;
    usage->known = 1;
    usage->u = u.u;
    usage->estimated = u.estimated; /* the usage row says it was not the provider's count */
    int64_t total = usage_prompt(&usage->u);
    rc = buf_appends(client, "],\"model\":");
    rc |= prov_put_jstr(client, call->model->name, strlen(call->model->name));
    rc |= buf_printf(client,
                     ",\"usage\":{\"prompt_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "}}",
                     total, total);
    if (rc) {
        snprintf(err, errlen, "the gateway ran out of memory");
        return -1;
    }
    return 0;
}

/* ---- errors ----------------------------------------------------------------------------- */

/* {"error":{"code":429,"message":…,"status":"RESOURCE_EXHAUSTED"}}, or a list of them (the
 * streamed-array form), as "<message> (<STATUS>)". */
void gemini_dec_error_message(ms_str body, char *out, size_t outlen)
{
    json_error_t je;
    json_t *j = jtree_load(body.p, body.n, &je);
    json_t *o = json_is_array(j) ? json_array_get(j, 0) : j;
    json_t *e = json_object_get(o, "error");
    int ok = json_is_object(e) && error_text(e, out, outlen) == 0;
    if (!ok && json_is_string(e)) {
        snprintf(out, outlen, "%s", json_string_value(e));
        ok = 1;
    }
    json_decref(j);
    if (ok) return;
    /* not Google's shape: a short, printable excerpt */
    prov_excerpt(body, out, outlen);
}
