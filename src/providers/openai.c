/*
 * The OpenAI adapter, for OpenAI itself and every server that speaks its API (Groq, DeepSeek,
 * Mistral, vLLM, Ollama, llama.cpp). See provider.h: requests are forwarded byte for byte except
 * for spliced fields, answers pass through; the adapter only reads what billing needs (usage)
 * and checks that the answer is what it claims to be.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "providers/openai_decode.h"
#include "providers/provider.h"
#include "providers/wire.h"

void prov_upreq_free(prov_upreq *u)
{
    for (size_t i = 0; i < u->nheaders; i++)
        if ((uintptr_t)u->headers[i] - (uintptr_t)u->hmem >= u->hcap)
            free(u->headers[i]); /* not in the lent room */
    u->nheaders = 0;
    u->hused = 0;
    buf_free(&u->scratch);
}

/* Replaces each occurrence of secret[0..n) in msg by "[redacted]", within cap bytes. */
static void redact_one(char *msg, size_t cap, const char *secret, size_t n)
{
    static const char mark[] = "[redacted]";
    const size_t ml = sizeof mark - 1;
    if (n == 0 || cap == 0) return;
    if (!strstr(msg, secret)) return;
    char out[1024];
    size_t len = strlen(msg), k = 0, i = 0;
    if (cap > sizeof out) cap = sizeof out; /* messages are short; a longer one is cut */
    while (i < len && k + 1 < cap) {
        if (len - i >= n && memcmp(msg + i, secret, n) == 0) {
            size_t take = ml < cap - 1 - k ? ml : cap - 1 - k;
            memcpy(out + k, mark, take);
            k += take;
            i += n;
        } else {
            out[k++] = msg[i++];
        }
    }
    out[k] = '\0';
    memcpy(msg, out, k + 1);
}

void prov_redact(const cfg_provider *prov, const prov_upreq *u, char *msg, size_t cap)
{
    if (!msg) return;
    if (prov && prov->api_key) redact_one(msg, cap, prov->api_key, strlen(prov->api_key));
    for (size_t i = 0; u && i < u->nheaders; i++) {
        const char *h = u->headers[i], *colon = strchr(h, ':');
        if (!colon) continue;
        size_t nl = (size_t)(colon - h);
        if (!((nl == 13 && strncasecmp(h, "authorization", nl) == 0) ||
              (nl == 7 && strncasecmp(h, "api-key", nl) == 0) ||
              (nl == 9 && strncasecmp(h, "x-api-key", nl) == 0) ||
              (nl == 14 && strncasecmp(h, "x-goog-api-key", nl) == 0)))
            continue;
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (strncasecmp(v, "Bearer ", 7) == 0) v += 7;
        redact_one(msg, cap, v, strlen(v));
    }
}

const prov_adapter *prov_adapter_for(const cfg_provider *prov, wire_api client)
{
    switch (prov->kind) {
    case PROV_OPENAI:
    case PROV_AZURE: /* OpenAI's API under another URL and key header: openai_build */
        /* a Responses client's request passes through to an upstream that speaks that API too
         * (the provider's `responses`); every other client keeps chat completions */
        return client == WIRE_OPENAI_RESPONSES && prov->responses ? &prov_openai_responses
                                                                  : &prov_openai;
    case PROV_ANTHROPIC:
        return &prov_anthropic;
    case PROV_GEMINI:
        return &prov_gemini;
    case PROV_ECHO:
        return &prov_echo;
    default:
        return NULL;
    }
}

typedef struct edit {
    size_t start, end; /* replaced range of the client body (start == end: insertion) */
    size_t off, len;   /* replacement in scratch */
} edit;

/* stream_options with include_usage forced on, keeping the client's other options. */
static int stream_options_value(const prov_call *call, buf_t *s)
{
    int rc = buf_appends(s, "{\"include_usage\":true");
    const jscan_member *so = call->m_stream_options;
    if (so && so->type == JS_OBJECT) {
        jscan_member m[PROV_MAX_STREAM_OPTIONS];
        int n = jscan_members(so->value, m, PROV_MAX_STREAM_OPTIONS);
        for (int i = 0; i < n && i < PROV_MAX_STREAM_OPTIONS; i++) {
            /* decoded, as the provider will read it: "include_\u0075sage" is this key too */
            if (jscan_key_eq(m[i].key, "include_usage", 13)) continue;
            rc |= buf_appends(s, ",");
            rc |= buf_append(s, so->value.p + m[i].start - 0, m[i].end - m[i].start);
        }
    }
    rc |= buf_appends(s, "}");
    return rc;
}

/* OpenAI: {base_url}/chat/completions. Azure OpenAI: the deployment is in the path and the API
 * version in the query, {base_url}/openai/deployments/{deployment}/chat/completions?api-version=V
 * (learn.microsoft.com, "Azure OpenAI in Azure AI Foundry Models REST API reference"). */
static int openai_url(const prov_call *call, prov_upreq *u)
{
    const cfg_provider *prov = call->dep->provider;
    const char *path = call->ep == EP_CHAT ? "/chat/completions" : "/embeddings";
    buf_t b;
    buf_init_with(&b, u->url, sizeof u->url, sizeof u->url - 1);
    int rc = buf_appends(&b, prov->base_url);
    if (prov->kind == PROV_AZURE) {
        rc |= buf_appends(&b, "/openai/deployments/");
        rc |= prov_put_path_segment(&b, call->dep->model);
        rc |= buf_appends(&b, path);
        rc |= buf_appends(&b, "?api-version=");
        rc |= buf_appends(&b, prov->api_version ? prov->api_version : CFG_AZURE_API_VERSION);
    } else {
        rc |= buf_appends(&b, path);
    }
    /* the limit is below the array's size, so b never leaves it: a URL too long is refused,
     * never cut */
    if (rc || !b.borrowed) {
        buf_free(&b);
        return -1;
    }
    u->url[b.len] = '\0';
    return 0;
}

int prov_openai_headers(const prov_call *call, prov_upreq *u)
{
    const cfg_provider *prov = call->dep->provider;
    if (prov->api_key && prov->api_key[0] &&
        prov_add_header(u, prov->kind == PROV_AZURE ? "api-key: " : "Authorization: Bearer ",
                        prov->api_key))
        return -1;
    if (prov_add_header(u, "Content-Type: ", "application/json")) return -1;
    return call->stream ? prov_add_header(u, "Accept: ", "text/event-stream") : 0;
}

static int openai_build(const prov_call *call, void *st, prov_upreq *u, prov_refusal *why)
{
    if (openai_url(call, u) != 0) return -1;
    prov_upreq_scratch(u);
    if (prov_openai_headers(call, u)) return -1;

    edit ed[PROV_MAX_EDITS];
    size_t ne = 0;
    const char *b = call->body.p;
    /* model -> the deployment's upstream name */
    ed[ne].start = (size_t)(call->m_model->value.p - b);
    ed[ne].end = ed[ne].start + call->m_model->value.n;
    ed[ne].off = u->scratch.len;
    int rc = buf_appends(&u->scratch, "\"");
    rc |= buf_append_json_escaped(&u->scratch, call->dep->model, strlen(call->dep->model));
    rc |= buf_appends(&u->scratch, "\"");
    ed[ne].len = u->scratch.len - ed[ne].off;
    ne++;
    if (call->stream) {
        /* usage must always come back for billing, whatever the client asked */
        if (call->m_stream_options) {
            ed[ne].start = (size_t)(call->m_stream_options->value.p - b);
            ed[ne].end = ed[ne].start + call->m_stream_options->value.n;
            ed[ne].off = u->scratch.len;
            rc |= stream_options_value(call, &u->scratch);
        } else {
            const char *brace = memchr(b, '{', call->body.n);
            ed[ne].start = ed[ne].end = (size_t)(brace - b) + 1;
            ed[ne].off = u->scratch.len;
            rc |= buf_appends(&u->scratch, "\"stream_options\":");
            rc |= stream_options_value(call, &u->scratch);
            rc |= buf_appends(&u->scratch, ",");
        }
        ed[ne].len = u->scratch.len - ed[ne].off;
        ne++;
    }
    if (rc) return -1;
    /* edits in body order */
    if (ne == 2 && ed[1].start < ed[0].start) {
        edit t = ed[0];
        ed[0] = ed[1];
        ed[1] = t;
    }
    size_t pos = 0;
    u->niov = 0;
    for (size_t i = 0; i < ne; i++) {
        if (ed[i].start > pos) u->iov[u->niov++] = (up_iov){b + pos, ed[i].start - pos};
        u->iov[u->niov++] = (up_iov){u->scratch.data + ed[i].off, ed[i].len};
        pos = ed[i].end;
    }
    if (pos < call->body.n) u->iov[u->niov++] = (up_iov){b + pos, call->body.n - pos};
    return 0;
}

/* The non-negative integer member `name` of the details object o (NULL: missing), or 0 when
 * either is missing or is something else (OpenAI sends `null` details for some models). */
static int64_t usage_detail(const jscan_member *o, const jscan_key *name)
{
    jscan_member d[16];
    const jscan_member *f;
    int64_t v = 0;
    if (!o || o->type != JS_OBJECT) return 0;
    int n = jscan_members_valid(o->value, d, 16);
    if (n < 0) return 0;
    jscan_pick(d, (size_t)(n > 16 ? 16 : n), name, 1, &f);
    return f && jscan_int(f->value, &v) == 0 && v > 0 ? v : 0;
}

/* The names of an OpenAI usage object's counts (chat completions' and the Responses API's), in
 * the order read_usage picks them: the input count, the output count, their details. */
typedef struct usage_names {
    jscan_key k[4];
} usage_names;

/* OpenAI usage onto the billed counts (shared/spec/API.md, "Billing"): the prompt count holds
 * the cached tokens, so input is the rest; the output count holds the reasoning tokens, so
 * output is all of it. A detail above its total is clamped to the total, so a provider's
 * nonsense can move tokens between kinds but never invent or lose any. The usage object is a
 * member of a document jscan_object accepted (every caller's), so it is not validated again.
 * The four names are found in one pass over the members (jscan_pick; the last of a repeated
 * name, as jscan_find would). */
static void read_usage(ms_str usage, const usage_names *k, prov_usage *out)
{
    static const jscan_key cached_tokens = JSCAN_KEY("cached_tokens"),
                           reasoning_tokens = JSCAN_KEY("reasoning_tokens");
    jscan_member m[16];
    const jscan_member *f[4];
    int n = jscan_members_valid(usage, m, 16);
    if (n < 0) return;
    jscan_pick(m, (size_t)(n > 16 ? 16 : n), k->k, 4, f);
    int64_t p = 0, c = 0;
    if (f[0] && jscan_int(f[0]->value, &p) == 0 && p >= 0) {
        int64_t cached = usage_detail(f[2], &cached_tokens);
        if (!(f[1] && jscan_int(f[1]->value, &c) == 0 && c >= 0)) c = 0;
        int64_t reasoning = usage_detail(f[3], &reasoning_tokens);
        out->known = 1;
        out->u = (usage_counts){0};
        out->u.cached_input = cached < p ? cached : p;
        out->u.input = p - out->u.cached_input;
        out->u.output = c;
        out->u.reasoning = reasoning < c ? reasoning : c;
    }
}

/* Shared with the decoders (openai_decode.h), so a translated answer bills as a passed-through
 * one. */
void prov_openai_read_usage(ms_str usage, prov_usage *out)
{
    static const usage_names chat = {{JSCAN_KEY("prompt_tokens"), JSCAN_KEY("completion_tokens"),
                                      JSCAN_KEY("prompt_tokens_details"),
                                      JSCAN_KEY("completion_tokens_details")}};
    read_usage(usage, &chat, out);
}

/* The Responses API counts alike under other names (input_tokens with input_tokens_details,
 * output_tokens with output_tokens_details): the same five counts (shared/spec/API.md). */
void prov_openai_read_responses_usage(ms_str usage, prov_usage *out)
{
    static const usage_names rsp = {{JSCAN_KEY("input_tokens"), JSCAN_KEY("output_tokens"),
                                     JSCAN_KEY("input_tokens_details"),
                                     JSCAN_KEY("output_tokens_details")}};
    read_usage(usage, &rsp, out);
}

static int openai_response(void *st, const prov_call *call, ms_str body, buf_t *client,
                           prov_usage *usage, char *err, size_t errlen)
{
    jscan_member m[64];
    int n = jscan_object(body.p, body.n, m, 64, NULL);
    if (n < 0) {
        snprintf(err, errlen, "the provider's answer is not a JSON object");
        return -1;
    }
    size_t k = (size_t)(n > 64 ? 64 : n);
    static const jscan_key chat_keys[] = {JSCAN_KEY("usage"), JSCAN_KEY("choices")},
                           data_keys[] = {JSCAN_KEY("usage"), JSCAN_KEY("data")};
    const char *need = call->ep == EP_CHAT ? "choices" : "data";
    const jscan_member *f[2]; /* one pass over the members for both */
    jscan_pick(m, k, call->ep == EP_CHAT ? chat_keys : data_keys, 2, f);
    const jscan_member *u = f[0], *d = f[1];
    if (u && u->type == JS_OBJECT) prov_openai_read_usage(u->value, usage);
    if (!d || d->type != JS_ARRAY) {
        snprintf(err, errlen, "the provider's answer has no '%s' array", need);
        return -1;
    }
    (void)client;
    return 0;
}

/* Bytes of generated text in a chunk's `choices`: delta content, refusal and tool calls of a
 * single choice; for several choices (n > 1) the whole array's size, still an upper bound.
 * *text is the string that holds all of them when there is one (one choice, one of the fields a
 * string, none an array), else {NULL, 0}: what a stream's shape varies by. */
static int64_t chunk_text_bytes(ms_str choices, ms_str *text)
{
    *text = (ms_str){NULL, 0};
    const char *p = choices.p + 1, *e = choices.p + choices.n - 1;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
        e--;
    if (p == e) return 0;
    /* the event was validated whole: its parts are split, not validated again (every event of
     * every stream comes through here) */
    jscan_member m[16], d[16];
    int n = jscan_members_valid((ms_str){p, (size_t)(e - p)}, m, 16);
    if (n < 0) return (int64_t)choices.n;
    const jscan_member *delta = jscan_find(m, (size_t)(n > 16 ? 16 : n), "delta");
    if (!delta || delta->type != JS_OBJECT) return 0;
    int dn = jscan_members_valid(delta->value, d, 16);
    if (dn <= 0) return 0;
    int64_t bytes = 0;
    static const jscan_key fields[] = {JSCAN_KEY("content"), JSCAN_KEY("refusal"),
                                       JSCAN_KEY("tool_calls"), JSCAN_KEY("reasoning_content")};
    const jscan_member *found[4];
    int strings = 0, arrays = 0;
    jscan_pick(d, (size_t)(dn > 16 ? 16 : dn), fields, 4, found);
    for (size_t i = 0; i < 4; i++) {
        const jscan_member *f = found[i];
        if (f && f->type == JS_STRING) {
            bytes += (int64_t)f->value.n - 2;
            *text = f->value;
            strings++;
        } else if (f && f->type == JS_ARRAY) {
            bytes += (int64_t)f->value.n;
            arrays++;
        }
    }
    /* more than 16 members in the delta: the fields past them were not looked at */
    if (strings != 1 || arrays || dn > 16) *text = (ms_str){NULL, 0};
    return bytes;
}

/*
 * The stream's shape. The chunks of a stream are one JSON text but for the delta's text and, from
 * OpenAI itself, the random `obfuscation` padding:
 *   {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":"…",
 *    "choices":[{"index":0,"delta":{"content":"…"},"logprobs":null,"finish_reason":null}],
 *    "obfuscation":"…"}
 * A chunk the full path found plain (no error, no usage object, one choice whose text is one
 * string) leaves its shape: the text around those one or two strings. A later chunk that is that
 * text with other valid JSON strings in their places parses exactly as the first did (a string
 * token for a string token changes no structure), so it is valid JSON with the same members and
 * nothing the gateway acts on, and its text is its new string: two or three memcmp and a string
 * scan instead of validating and splitting the whole event (~4,500 instructions per event). Any
 * other chunk takes the full path, and a plain one replaces the shape.
 */
static int shape_match(const openai_shape *sh, ms_str d, int64_t *text_bytes)
{
    ms_str t = {NULL, 0};
    size_t len = openai_shape_span(sh, d, &t);
    *text_bytes = t.n >= 2 ? (int64_t)t.n - 2 : 0;
    return len == d.n;
}

/* prov_adapter.stream_len: an OpenAI chunk of the learned shape, "data: " before it and the
 * blank line after, is an event whose end the shape tells (its strings cannot hold a line
 * break), so the SSE parser need not look for it, and one stream_event would forward as it is.
 * Anything else (CRLF, another shape, an event cut by the read) is left to the parser. */
static size_t openai_stream_len(void *st, const char *p, size_t n, int64_t *text_bytes)
{
    openai_shape *sh = &((openai_dec_state *)st)->shape;
    *text_bytes = 0;
    if (!sh->nholes || n < 8 || memcmp(p, "data: ", 6) != 0) return 0;
    ms_str t = {NULL, 0};
    size_t len = openai_shape_span(sh, (ms_str){p + 6, n - 6}, &t);
    *text_bytes = t.n >= 2 ? (int64_t)t.n - 2 : 0;
    if (!len || n - 6 - len < 2 || p[6 + len] != '\n' || p[7 + len] != '\n') return 0;
    sh->hits++;
    return len + 8;
}

/* The `message` of an OpenAI error object ({"message": …, "type": …}). Returns 0 if found. */
static int error_object_message(ms_str obj, char *out, size_t outlen)
{
    jscan_member m[16];
    int n = jscan_members(obj, m, 16);
    const jscan_member *msg = n > 0 ? jscan_find(m, (size_t)(n > 16 ? 16 : n), "message") : NULL;
    return msg && jscan_string(msg->value, out, outlen) >= 0 ? 0 : -1;
}

static int openai_stream_event(void *st, const prov_call *call, const sse_event *ev, buf_t *out,
                               prov_usage *usage, int *done, int *error, int *usage_chunk,
                               char *err, size_t errlen)
{
    ms_str d = ev->data;
    openai_shape *sh = st ? &((openai_dec_state *)st)->shape : NULL;
    int64_t bytes = 0;
    if (d.n == 0) return 0; /* comments and keep-alives carry nothing for the client */
    if (sh && sh->nholes && shape_match(sh, d, &bytes)) {
        sh->hits++;
        usage->streamed_bytes += bytes;
        return 1;
    }
    if (ms_str_eq(d, "[DONE]")) {
        *done = 1;
        return 0;
    }
    jscan_member m[32];
    int n = jscan_object(d.p, d.n, m, 32, NULL);
    if (n < 0) {
        snprintf(err, errlen, "the provider sent an invalid stream event");
        return -1;
    }
    size_t k = (size_t)(n > 32 ? 32 : n);
    static const jscan_key names[] = {JSCAN_KEY("error"), JSCAN_KEY("choices"), JSCAN_KEY("usage"),
                                      JSCAN_KEY("obfuscation")};
    const jscan_member *f[4];
    jscan_pick(m, k, names, 4, f);
    const jscan_member *e = f[0], *ch = f[1], *u = f[2], *pad = f[3];
    if (e && e->type != JS_NULL) {
        *error = 1;
        if (e->type != JS_OBJECT || error_object_message(e->value, err, errlen) != 0)
            snprintf(err, errlen, "the provider reported an error in the stream");
        return 0;
    }
    ms_str text = {NULL, 0};
    if (ch && ch->type == JS_ARRAY) usage->streamed_bytes += chunk_text_bytes(ch->value, &text);
    /* a plain chunk (members past the 32 listed were not looked at) */
    if (sh && text.p && !(u && u->type == JS_OBJECT) && n <= 32)
        openai_shape_learn(sh, d, text,
                           pad && pad->type == JS_STRING ? pad->value : (ms_str){NULL, 0});
    if (u && u->type == JS_OBJECT) {
        prov_openai_read_usage(u->value, usage);
        int usage_only = !ch || (ch->type == JS_ARRAY && ch->value.n == 2);
        if (usage_only) {
            /* held back: the client gets it last, with the cost, and only if it asked */
            *usage_chunk = 1;
            return buf_append(out, d.p, d.n) ? -1 : 0;
        }
    }
    return 1; /* forwarded as it is, framed as OpenAI frames it whatever the upstream used */
}

static void openai_error_message(ms_str body, char *out, size_t outlen)
{
    jscan_member m[16];
    int n = jscan_object(body.p, body.n, m, 16, NULL);
    if (n > 0) {
        const jscan_member *e = jscan_find(m, (size_t)(n > 16 ? 16 : n), "error");
        if (e && e->type == JS_OBJECT) {
            if (error_object_message(e->value, out, outlen) == 0) return;
        } else if (e && e->type == JS_STRING && jscan_string(e->value, out, outlen) >= 0) {
            return;
        }
        const jscan_member *msg = jscan_find(m, (size_t)(n > 16 ? 16 : n), "message");
        if (msg && jscan_string(msg->value, out, outlen) >= 0) return;
    }
    /* not JSON: a short, printable excerpt of what came back */
    prov_excerpt(body, out, outlen);
}

/* The decoders are used only for clients of another API (provider.h): an OpenAI chat client
 * keeps the pass-through path (response, stream_event). */
const prov_adapter prov_openai = {
    .api = WIRE_OPENAI_CHAT,
    .state_size = sizeof(openai_dec_state),
    .passthrough_state = PROV_STATE_STREAMS,
    .reset = openai_dec_reset,
    .release = openai_dec_release,
    .build = openai_build,
    .response = openai_response,
    .stream_event = openai_stream_event,
    .stream_len = openai_stream_len,
    .decode_answer = openai_decode_answer,
    .decode_event = openai_decode_event,
    .decode_len = openai_decode_len,
    .error_message = openai_error_message,
};
