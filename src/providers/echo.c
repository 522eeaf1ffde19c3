/*
 * The built-in echo provider (rules in echo.h and docs/PROVIDERS.md), an adapter like the others
 * with no network: it reads the request with jansson for clarity and answers at once, chat as
 * normalized events (engine/event.h) that the client's dialect encodes, embeddings in OpenAI's
 * format. So echo goes through the same engine, billing and encoders as every provider, and the
 * tests that use it exercise them.
 */
#include "providers/echo.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define ECHO_DIMS 8

static int is_alnum(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_space(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Length of the UTF-8 character starting at s (1 for invalid bytes, so counting never stalls). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t want = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    if (want > n) return 1;
    for (size_t i = 1; i < want; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return want;
}

/* Finds the next token at or after *pos; returns its start and end, or 0 when there is none. */
static int next_token(const char *s, size_t n, size_t *pos, size_t *start, size_t *end)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = *pos;
    while (i < n && is_space(u[i]))
        i++;
    if (i >= n) return 0;
    *start = i;
    if (is_alnum(u[i])) {
        while (i < n && is_alnum(u[i]))
            i++;
    } else {
        i += utf8_len(u + i, n - i);
    }
    *end = *pos = i;
    return 1;
}

int64_t echo_count_tokens(const char *s, size_t n)
{
    int64_t count = 0;
    size_t pos = 0, a, b;
    while (next_token(s, n, &pos, &a, &b))
        count++;
    return count;
}

/* The text of a message's content: a string, or the text parts of an array joined by "\n". */
static void content_text(json_t *content, buf_t *out)
{
    if (json_is_string(content)) {
        buf_append(out, json_string_value(content), json_string_length(content));
        return;
    }
    if (!json_is_array(content)) return;
    size_t i;
    json_t *part;
    int first = 1;
    json_array_foreach(content, i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (json_is_string(t)) {
            if (!first) buf_append(out, "\n", 1);
            buf_append(out, json_string_value(t), json_string_length(t));
            first = 0;
        }
    }
}

/* The reply's tokens as answer events: each token's text with the white space before it, as an
 * OpenAI server streams them (one event per token). */
static int emit_reply(const ev_sink *sink, const buf_t *reply, const size_t *ends, size_t nt,
                      const char *finish)
{
    ev_event ev = {.type = EV_START};
    int rc = ev_emit(sink, &ev);
    size_t prev = 0;
    for (size_t t = 0; t < nt && rc == 0; t++) {
        ev = (ev_event){.type = EV_TEXT, .text = {reply->data + prev, ends[t] - prev}};
        rc = ev_emit(sink, &ev);
        prev = ends[t];
    }
    if (rc == 0) {
        ev =
            (ev_event){.type = EV_FINISH,
                       .finish = strcmp(finish, "length") == 0 ? EV_FINISH_LENGTH : EV_FINISH_STOP};
        rc = ev_emit(sink, &ev);
    }
    return rc;
}

static int echo_chat(const prov_call *call, json_t *req, const ev_sink *sink, prov_usage *usage)
{
    json_t *msgs = json_object_get(req, "messages");
    int64_t prompt = 3;
    buf_t text, last_user;
    buf_init(&text, 0);
    buf_init(&last_user, 0);
    int have_user = 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        buf_reset(&text);
        content_text(json_object_get(m, "content"), &text);
        prompt += 4 + echo_count_tokens(text.data ? text.data : "", text.len);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0) {
            buf_reset(&last_user);
            buf_append(&last_user, text.data ? text.data : "", text.len);
            have_user = 1;
        }
    }
    buf_t reply;
    buf_init(&reply, 0);
    if (have_user) {
        buf_appends(&reply, "You said: ");
        buf_append(&reply, last_user.data ? last_user.data : "", last_user.len);
    } else {
        buf_appends(&reply, "Hello! I am the echo model.");
    }
    buf_free(&text);
    buf_free(&last_user);

    /* token boundaries of the reply, cut at max_tokens */
    size_t nt = 0, cap = 64;
    size_t *ends = malloc(cap * sizeof *ends);
    size_t pos = 0, a, b;
    const char *finish = "stop";
    while (ends && next_token(reply.data, reply.len, &pos, &a, &b)) {
        if (call->max_tokens >= 0 && (int64_t)nt == call->max_tokens) {
            finish = "length";
            break;
        }
        if (nt == cap) {
            size_t *bigger = realloc(ends, 2 * cap * sizeof *ends);
            if (!bigger) break;
            ends = bigger;
            cap *= 2;
        }
        ends[nt++] = b;
    }
    int rc = ends ? emit_reply(sink, &reply, ends, nt, finish) : -1;
    usage->known = 1;
    usage->u = (usage_counts){.input = prompt, .output = (int64_t)nt};
    ev_event u = {.type = EV_USAGE, .usage = usage->u};
    if (rc == 0) rc = ev_emit(sink, &u);
    free(ends);
    buf_free(&reply);
    return rc;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void embed(const char *s, size_t n, float out[ECHO_DIMS])
{
    uint64_t h = fnv1a(s, n);
    double norm = 0;
    double v[ECHO_DIMS];
    for (int j = 0; j < ECHO_DIMS; j++) {
        uint64_t x = h ^ ((uint64_t)(j + 1) * 0x9E3779B97F4A7C15ull);
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        v[j] = (double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        norm += v[j] * v[j];
    }
    norm = sqrt(norm);
    for (int j = 0; j < ECHO_DIMS; j++)
        out[j] = (float)(norm > 0 ? v[j] / norm : 0);
}

static char *base64(const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *q++ = tbl[(v >> 18) & 63];
        *q++ = tbl[(v >> 12) & 63];
        *q++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? tbl[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

/* One input: a string, or an array of token ids (whose text is their decimal list). */
static int input_text(json_t *in, buf_t *text, int64_t *tokens)
{
    if (json_is_string(in)) {
        buf_append(text, json_string_value(in), json_string_length(in));
        *tokens = echo_count_tokens(json_string_value(in), json_string_length(in));
        return 0;
    }
    if (json_is_array(in)) {
        size_t i;
        json_t *t;
        json_array_foreach(in, i, t)
        {
            if (!json_is_integer(t)) return -1;
            buf_printf(text, "%" JSON_INTEGER_FORMAT ",", json_integer_value(t));
        }
        *tokens = (int64_t)json_array_size(in);
        return 0;
    }
    return -1;
}

static int echo_embeddings(const prov_call *call, json_t *req, buf_t *body, prov_usage *usage,
                           prov_refusal *why)
{
    json_t *input = json_object_get(req, "input");
    const char *fmt = json_string_value(json_object_get(req, "encoding_format"));
    int b64 = fmt && strcmp(fmt, "base64") == 0;
    json_t *list = json_array();
    int64_t total = 0;
    /* a flat array of integers is one tokenized input; other arrays are lists of inputs */
    int single = json_is_string(input) ||
                 (json_is_array(input) && json_is_integer(json_array_get(input, 0)));
    size_t count = single ? 1 : json_array_size(input);
    buf_t text;
    buf_init(&text, 0);
    for (size_t i = 0; i < count; i++) {
        json_t *in = single ? input : json_array_get(input, i);
        int64_t tok = 0;
        buf_reset(&text);
        if (input_text(in, &text, &tok) != 0) {
            json_decref(list);
            buf_free(&text);
            *why = (prov_refusal){
                .status = 400,
                .type = "invalid_request_error",
                .code = "invalid_parameter",
                .param = "input",
                .message = "'input' must be a string, an array of strings, or token arrays."};
            return -1;
        }
        total += tok;
        float v[ECHO_DIMS];
        embed(text.data ? text.data : "", text.len, v);
        json_t *emb;
        if (b64) {
            unsigned char raw[ECHO_DIMS * 4];
            for (int j = 0; j < ECHO_DIMS; j++) {
                uint32_t bits;
                memcpy(&bits, &v[j], 4);
                for (int k = 0; k < 4; k++)
                    raw[j * 4 + k] = (unsigned char)(bits >> (8 * k));
            }
            char *enc = base64(raw, sizeof raw);
            emb = json_string(enc ? enc : "");
            free(enc);
        } else {
            emb = json_array();
            for (int j = 0; j < ECHO_DIMS; j++)
                json_array_append_new(emb, json_real(v[j]));
        }
        json_array_append_new(list, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", emb));
    }
    buf_free(&text);
    usage->known = 1;
    usage->u = (usage_counts){.input = total};
    json_t *doc = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", list,
                            "model", call->model->name, "usage", "prompt_tokens", (json_int_t)total,
                            "total_tokens", (json_int_t)total);
    char *s = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    int rc = !s || buf_appends(body, s) ? -1 : 0;
    free(s);
    return rc;
}

/* The echo adapter's whole work: see provider.h's `local`. */
static int echo_local(const prov_call *call, const ev_sink *sink, buf_t *body, prov_usage *usage,
                      prov_refusal *why)
{
    json_error_t jerr;
    json_t *req = json_loadb(call->body.p, call->body.n, JSON_ALLOW_NUL, &jerr);
    if (!json_is_object(req)) {
        json_decref(req);
        *why = (prov_refusal){.status = 400,
                              .type = "invalid_request_error",
                              .code = "invalid_json",
                              .message = "We could not parse the JSON body of your request."};
        return -1;
    }
    int rc = call->ep == EP_CHAT ? echo_chat(call, req, sink, usage)
                                 : echo_embeddings(call, req, body, usage, why);
    json_decref(req);
    return rc;
}

const prov_adapter prov_echo = {.local = echo_local};
