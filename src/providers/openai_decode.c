/*
 * The OpenAI adapter's decoders (openai_decode.h): an OpenAI chat answer or stream chunk into
 * normalized events, for clients that speak another API than OpenAI chat. What is read follows
 * OpenAI's API reference:
 *   The chat completion object:       https://platform.openai.com/docs/api-reference/chat/object
 *   The chat completion chunk object: https://platform.openai.com/docs/api-reference/chat-streaming
 * and what OpenAI-shaped servers add to it: the reasoning text as `reasoning_content` (DeepSeek,
 * vLLM) or `reasoning` (vLLM, OpenRouter, Groq), content as an array of text parts (Mistral),
 * tool-call deltas without an index (matched by id, or continuing the last call), a usage-only
 * chunk whose `choices` is null or missing (vLLM).
 *
 * Only choices[0] is decoded: events describe one answer (the new dialects ask for one).
 * Tool calls get the events' index in the order they started (0, 1, ...), whatever index the
 * upstream gave them, as the Anthropic and Gemini decoders number theirs: an encoder may use it
 * as a slot, and an upstream cannot make it large.
 *
 * The top level is read with jscan (it validates the document and hands out the raw usage
 * object, which the pass-through path's usage reader takes); `choices` is parsed with jansson,
 * which decodes the strings the events carry, except in a stream's usual chunk (one choice, its
 * delta a piece of text) and the usual whole answer (one choice, its message text): those are
 * read with jscan too (see "The usual chunk" and "The usual answer" below).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jtree.h"
#include "providers/openai_decode.h"
#include "providers/wire.h"

#define OAI_DEC_MAX_ID 1024 /* bytes of one tool call's id kept for matching */

void openai_dec_reset(void *stv, const prov_call *call)
{
    openai_dec_state *st = stv;
    (void)call;
    /* the engine hands it zeroed (and released after a previous attempt) */
    memset(st, 0, sizeof *st);
    st->last = -1;
    buf_init(&st->calls, OAI_DEC_MAX_TOOLS * sizeof(openai_dec_call));
    buf_init(&st->ids, (size_t)OAI_DEC_MAX_TOOLS * OAI_DEC_MAX_ID);
}

void openai_dec_release(void *stv)
{
    openai_dec_state *st = stv;
    buf_free(&st->calls);
    buf_free(&st->ids);
}

static const openai_dec_call *call_at(const openai_dec_state *st, int i)
{
    return (const openai_dec_call *)(const void *)st->calls.data + i;
}

static int emit(const ev_sink *sink, ev_event ev)
{
    return ev_emit(sink, &ev);
}

static ms_str jstr(const json_t *s)
{
    return json_is_string(s) ? (ms_str){json_string_value(s), json_string_length(s)}
                             : (ms_str){"", 0};
}

/* finish_reason (the chat completion object: stop, length, tool_calls, content_filter and the
 * deprecated function_call; Mistral's model_length is its context limit). Anything else ends
 * normally. */
static ev_finish finish_of(const char *r)
{
    if (!r) return EV_FINISH_STOP;
    if (strcmp(r, "length") == 0 || strcmp(r, "model_length") == 0) return EV_FINISH_LENGTH;
    if (strcmp(r, "tool_calls") == 0 || strcmp(r, "function_call") == 0)
        return EV_FINISH_TOOL_CALLS;
    if (strcmp(r, "content_filter") == 0) return EV_FINISH_CONTENT_FILTER;
    return EV_FINISH_STOP;
}

/* A text delta (or a whole answer's text) as an event of type t; empty text makes none.
 * Streams count its bytes as generated text (the bound billed if usage never comes). */
static int text_event(const ev_sink *sink, ev_type t, const json_t *s, prov_usage *usage,
                      int stream)
{
    ms_str v = jstr(s);
    if (v.n == 0) return 0;
    if (stream) usage->streamed_bytes += (int64_t)v.n;
    return emit(sink, (ev_event){.type = t, .text = v});
}

/* The text members of a message or delta: reasoning, content, refusal, in that order (the
 * order a model produces them). */
static int texts(const json_t *m, const ev_sink *sink, prov_usage *usage, int stream)
{
    /* servers in a transition send both names with the same text: one is enough */
    const json_t *r = json_object_get(m, "reasoning_content");
    if (!json_is_string(r) || json_string_length(r) == 0) r = json_object_get(m, "reasoning");
    if (text_event(sink, EV_REASONING, r, usage, stream)) return -1;
    const json_t *c = json_object_get(m, "content");
    if (json_is_array(c)) {
        /* content parts: their text, in order */
        size_t i;
        const json_t *part;
        json_array_foreach(c, i, part)
        {
            if (text_event(sink, EV_TEXT, json_object_get(part, "text"), usage, stream)) return -1;
        }
    } else if (text_event(sink, EV_TEXT, c, usage, stream)) {
        return -1;
    }
    /* a refusal is what the model said instead of answering: the client reads it as text (the
     * finish says content_filter only when finish_reason does) */
    return text_event(sink, EV_TEXT, json_object_get(m, "refusal"), usage, stream);
}

/* A tool call's name and arguments: `function` (name, arguments as a JSON text) or a custom
 * tool (name, input as free text). Arguments given as a JSON value instead of its text (some
 * servers) are written compactly into args. */
static int call_parts(const json_t *tc, const json_t **name, ms_str *argv, buf_t *args)
{
    const json_t *f = json_object_get(tc, "function");
    const json_t *a = NULL;
    if (json_is_object(f)) {
        *name = json_object_get(f, "name");
        a = json_object_get(f, "arguments");
    } else if (json_is_object(f = json_object_get(tc, "custom"))) {
        *name = json_object_get(f, "name");
        a = json_object_get(f, "input");
    } else {
        *name = NULL;
    }
    *argv = (ms_str){"", 0};
    if (json_is_string(a)) {
        *argv = jstr(a);
    } else if (json_is_object(a) || json_is_array(a)) {
        buf_reset(args);
        if (prov_put_json(args, a) != 0) return -1;
        *argv = (ms_str){args->data, args->len};
    }
    return 0;
}

/* The choice with index 0 (or no index: a server that leaves it out) of a choices array, or
 * NULL: another choice's chunk (n > 1) is not this answer's. */
static json_t *first_choice(json_t *choices)
{
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c)
    {
        json_t *ix = json_object_get(c, "index");
        if (json_is_object(c) &&
            (!ix || json_is_null(ix) || (json_is_integer(ix) && json_integer_value(ix) == 0)))
            return c;
    }
    return NULL;
}

/* An error object's (or string's) message into err; 0 when there was one. */
static int error_text(ms_str v, jscan_type type, char *err, size_t errlen)
{
    if (type == JS_STRING) return jscan_string(v, err, errlen) >= 0 ? 0 : -1;
    if (type != JS_OBJECT) return -1;
    jscan_member e[16];
    int n = jscan_members(v, e, 16);
    const jscan_member *msg = n > 0 ? jscan_find(e, (size_t)(n > 16 ? 16 : n), "message") : NULL;
    return msg && jscan_string(msg->value, err, errlen) >= 0 ? 0 : -1;
}

/* The top-level members a decoder reads. */
enum { F_ID, F_CHOICES, F_USAGE, F_ERROR, F_PAD, F_N };

/* Validates d and picks its members into f, which point into m (the caller's, 32 long).
 * Returns how many members d has (past 32 they were not looked at), or -1. */
static int top_level(ms_str d, jscan_member *m, const jscan_member **f)
{
    int n = jscan_object(d.p, d.n, m, 32, NULL);
    if (n < 0) return -1;
    static const jscan_key keys[F_N] = {JSCAN_KEY("id"), JSCAN_KEY("choices"), JSCAN_KEY("usage"),
                                        JSCAN_KEY("error"), JSCAN_KEY("obfuscation")};
    jscan_pick(m, (size_t)(n > 32 ? 32 : n), keys, F_N, f);
    return n;
}

/* The upstream's id (EV_START), decoded into out; empty when it has none usable. */
static ms_str id_of(const jscan_member *id, char *out, size_t outlen)
{
    long n = id && id->type == JS_STRING ? jscan_string(id->value, out, outlen) : -1;
    return n > 0 ? (ms_str){out, (size_t)n} : (ms_str){"", 0};
}

/* The usage object into *usage and, when it holds counts, an EV_USAGE (cumulative: the last
 * one wins). */
static int usage_event(const jscan_member *u, const ev_sink *sink, prov_usage *usage)
{
    if (!u || u->type != JS_OBJECT) return 0; /* absent, or null in every chunk but the last */
    prov_usage got = {0};
    prov_openai_read_usage(u->value, &got);
    if (!got.known) return 0;
    usage->known = 1;
    usage->u = got.u;
    return emit(sink, (ev_event){.type = EV_USAGE, .usage = usage->u});
}

/* ---- whole answers (the chat completion object) ---- */

extern int openai_dec_fast_chunks;
static int answer_fast(ms_str choices, ms_str id, const ev_sink *sink);

int openai_decode_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                         prov_usage *usage, char *err, size_t errlen)
{
    (void)stv; /* a whole answer needs no state between calls */
    (void)call;
    if (errlen) err[0] = '\0'; /* set below when a check fails, before any encoding error */
    jscan_member m[32];
    const jscan_member *f[F_N];
    if (top_level(body, m, f) < 0) {
        snprintf(err, errlen, "the provider's answer is not a JSON object");
        return -1;
    }
    if (!f[F_CHOICES] || f[F_CHOICES]->type != JS_ARRAY) {
        /* a 200 carrying an error object (some proxies): its message says more */
        if (!f[F_ERROR] || error_text(f[F_ERROR]->value, f[F_ERROR]->type, err, errlen) != 0)
            snprintf(err, errlen, "the provider's answer has no 'choices' array");
        return -1;
    }
    char idb[256];
    ms_str id = id_of(f[F_ID], idb, sizeof idb);
    /* the usual answer is read with jscan (see "The usual answer" below) */
    int fast = openai_dec_fast_chunks ? answer_fast(f[F_CHOICES]->value, id, sink) : 1;
    if (fast != 1) {
        if (!fast) fast = usage_event(f[F_USAGE], sink, usage);
        if (fast && !err[0]) snprintf(err, errlen, "the gateway could not encode the answer");
        return fast ? -1 : 0;
    }
    json_error_t je;
    json_t *choices = jtree_load(f[F_CHOICES]->value.p, f[F_CHOICES]->value.n, &je);
    json_t *choice = json_is_array(choices) ? first_choice(choices) : NULL;
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        snprintf(err, errlen, "the provider's answer has no choices[0].message");
        json_decref(choices);
        return -1;
    }
    int rc = emit(sink, (ev_event){.type = EV_START, .id = id});
    if (!rc) rc = texts(msg, sink, usage, 0);
    json_t *calls = json_object_get(msg, "tool_calls");
    buf_t args;
    buf_init(&args, 0); /* bounded by the answer it is written from */
    size_t i;
    json_t *tc;
    int ntools = 0;
    json_array_foreach(calls, i, tc)
    {
        if (rc) break;
        const json_t *name;
        ms_str a;
        if (!json_is_object(tc)) continue;
        if (ntools == OAI_DEC_MAX_TOOLS) {
            snprintf(err, errlen, "the provider's answer has more than %d tool calls",
                     OAI_DEC_MAX_TOOLS);
            rc = -1;
            break;
        }
        if ((rc = call_parts(tc, &name, &a, &args)) != 0) break;
        rc = emit(sink, (ev_event){.type = EV_TOOL_START,
                                   .index = ntools,
                                   .id = jstr(json_object_get(tc, "id")),
                                   .name = jstr(name)});
        if (!rc && a.n)
            rc = emit(sink, (ev_event){.type = EV_TOOL_ARGS, .index = ntools, .text = a});
        ntools++;
    }
    buf_free(&args);
    if (!rc)
        rc = emit(sink, (ev_event){.type = EV_FINISH,
                                   .finish = finish_of(json_string_value(
                                       json_object_get(choice, "finish_reason")))});
    if (!rc) rc = usage_event(f[F_USAGE], sink, usage);
    json_decref(choices);
    if (rc && !err[0]) snprintf(err, errlen, "the gateway could not encode the answer");
    return rc ? -1 : 0;
}

/* ---- streams (the chat completion chunk object) ---- */

/* The call a tool-call delta continues, or -1 when it starts a new one. OpenAI gives every
 * delta its index; a server that gives none names the call by id, or continues the last. */
static int find_call(const openai_dec_state *st, const json_t *ix, ms_str id, int64_t *upstream,
                     char *err, size_t errlen)
{
    *upstream = -1;
    if (ix && !json_is_null(ix)) {
        if (!json_is_integer(ix) || json_integer_value(ix) < 0) {
            snprintf(err, errlen, "the provider sent a tool call with an invalid index");
            return -2;
        }
        *upstream = json_integer_value(ix);
        for (int i = 0; i < st->ntools; i++)
            if (call_at(st, i)->upstream == *upstream) return i;
        return -1;
    }
    if (id.n) {
        for (int i = 0; i < st->ntools; i++) {
            const openai_dec_call *c = call_at(st, i);
            if (c->id_len == id.n && memcmp(st->ids.data + c->id_off, id.p, id.n) == 0) return i;
        }
        return -1;
    }
    if (st->last < 0) {
        snprintf(err, errlen, "the provider sent a tool call delta without index or id");
        return -2;
    }
    return st->last;
}

static int tool_delta(openai_dec_state *st, const json_t *tc, const ev_sink *sink,
                      prov_usage *usage, buf_t *args, char *err, size_t errlen)
{
    if (!json_is_object(tc)) return 0;
    ms_str id = jstr(json_object_get(tc, "id"));
    int64_t up;
    int k = find_call(st, json_object_get(tc, "index"), id, &up, err, errlen);
    if (k == -2) return -1;
    const json_t *name;
    ms_str a;
    if (call_parts(tc, &name, &a, args) != 0) return -1;
    if (k < 0) {
        /* a new call: OpenAI sends its id and name in its first delta only */
        if (st->ntools == OAI_DEC_MAX_TOOLS) {
            snprintf(err, errlen, "the provider's answer has more than %d tool calls",
                     OAI_DEC_MAX_TOOLS);
            return -1;
        }
        if (id.n > OAI_DEC_MAX_ID) {
            snprintf(err, errlen, "the provider sent a tool call id longer than %d bytes",
                     OAI_DEC_MAX_ID);
            return -1;
        }
        openai_dec_call c = {up, (uint32_t)st->ids.len, (uint32_t)id.n};
        if (buf_append(&st->ids, id.p, id.n) != 0 || buf_append(&st->calls, &c, sizeof c) != 0)
            return -1;
        k = st->ntools++;
        if (emit(sink, (ev_event){.type = EV_TOOL_START, .index = k, .id = id, .name = jstr(name)}))
            return -1;
    }
    st->last = k;
    if (a.n == 0) return 0;
    usage->streamed_bytes += (int64_t)a.n;
    return emit(sink, (ev_event){.type = EV_TOOL_ARGS, .index = k, .text = a});
}

/*
 * The usual chunk. Nearly every chunk of a stream is one choice whose delta is a piece of text:
 *   {"index":0,"delta":{"content":"…"},"logprobs":null,"finish_reason":null}
 * Building its tree cost ~14,000 instructions an event, ten times what the events' encoding
 * costs (docs/PERFORMANCE.md, round 14). Such a chunk is read with jscan instead, its strings
 * decoded only when they hold an escape, when it is certain to give what the tree gives: one
 * element, an object; its index absent, null or exactly 0; its delta an object or null; its
 * finish_reason a string or null; the delta's texts (reasoning_content, reasoning, content,
 * refusal) strings or null; tool_calls absent or null; none of those names given twice; and every
 * other member of either a string, null, true or false, its name without U+0000 (what jansson
 * always holds, so the tree could not have failed on them where the scan goes on). Anything else
 * takes the tree (choice_delta).
 */
/* 0: every chunk takes the tree. Only tests change it, to compare the two readings. */
int openai_dec_fast_chunks = 1;

enum { FC_INDEX, FC_DELTA, FC_FINISH, FC_N };
enum { FD_REASONING_CONTENT, FD_REASONING, FD_CONTENT, FD_REFUSAL, FD_TOOL_CALLS, FD_N };
#define OAI_FAST_MEMBERS 16
/* Bytes a string with an escape may decode into on the stack; a longer one takes the tree. */
#define OAI_FAST_DECODE 2048

/* The members of a delta (a chunk's) or a message (a whole answer's) that the scan reads. */
static const jscan_key fast_text_keys[FD_N] = {JSCAN_KEY("reasoning_content"),
                                               JSCAN_KEY("reasoning"), JSCAN_KEY("content"),
                                               JSCAN_KEY("refusal"), JSCAN_KEY("tool_calls")};

/* Whether an array's or object's text holds nothing (OpenAI's "annotations": []): nothing in it
 * the tree could fail on. */
static int json_empty(ms_str v)
{
    for (size_t i = 1; i + 1 < v.n; i++)
        if (v.p[i] != ' ' && v.p[i] != '\t' && v.p[i] != '\n' && v.p[i] != '\r') return 0;
    return v.n >= 2;
}

/* Sorts members m[0..n) onto the names keys[0..nk); 0, or -1 when one of those names comes
 * twice (jansson would have parsed the first value too, and may have failed on it) or a member
 * of another name holds anything but a string, null, true, false or an empty array or object, or
 * has U+0000 in its name. */
static int fast_members(const jscan_member *m, int n, const jscan_key *keys, int nk,
                        const jscan_member **f)
{
    for (int i = 0; i < nk; i++)
        f[i] = NULL;
    for (int k = 0; k < n; k++) {
        int i = (int)jscan_key_index(m[k].key, keys, (size_t)nk);
        if (i < nk) {
            if (f[i]) return -1;
            f[i] = &m[k];
        } else if (m[k].type == JS_NUMBER ||
                   ((m[k].type == JS_OBJECT || m[k].type == JS_ARRAY) && !json_empty(m[k].value)) ||
                   !jtree_holds_key(m[k].key)) {
            return -1; /* (the tree refuses a name with U+0000) */
        }
    }
    return 0;
}

static int str_or_null(const jscan_member *m)
{
    return !m || m->type == JS_STRING || m->type == JS_NULL;
}

/* The one choice of a choices array's text, its members sorted onto keys[0..nk) into c
 * (fast_members), its index absent, null or exactly 0: 0, else 1 (the tree reads it). */
static int fast_choice(ms_str choices, jscan_member *cm, const jscan_key *keys, int nk,
                       const jscan_member **c, int index)
{
    if (choices.n < 2) return 1;
    /* between the brackets, exactly one object (several elements are not one object) */
    int n = jscan_members_valid((ms_str){choices.p + 1, choices.n - 2}, cm, OAI_FAST_MEMBERS);
    if (n < 0 || n > OAI_FAST_MEMBERS || fast_members(cm, n, keys, nk, c) != 0) return 1;
    const jscan_member *ix = c[index];
    return ix && ix->type != JS_NULL && !(ix->type == JS_NUMBER && ms_str_eq(ix->value, "0"));
}

/* Whether a string member with an escape decodes into OAI_FAST_DECODE bytes (decoded text is
 * never longer than its JSON); one without is used where it lies. */
static int fast_fits(const jscan_member *m)
{
    return !m || m->type != JS_STRING || m->value.n < OAI_FAST_DECODE ||
           !memchr(m->value.p + 1, '\\', m->value.n - 2);
}

/* A string member's text (decoded into tmp when it has an escape; fast_fits said it fits);
 * empty for null. */
static ms_str fast_text(const jscan_member *m, char *tmp)
{
    if (!m || m->type != JS_STRING) return (ms_str){"", 0};
    ms_str v = m->value;
    if (!memchr(v.p + 1, '\\', v.n - 2)) return (ms_str){v.p + 1, v.n - 2};
    long n = jscan_string(v, tmp, OAI_FAST_DECODE);
    return n < 0 ? (ms_str){"", 0} : (ms_str){tmp, (size_t)n};
}

static int fast_text_event(const ev_sink *sink, ev_type t, const jscan_member *m, prov_usage *usage,
                           char *tmp)
{
    ms_str v = fast_text(m, tmp);
    if (v.n == 0) return 0;
    usage->streamed_bytes += (int64_t)v.n;
    return emit(sink, (ev_event){.type = t, .text = v});
}

/* The usual chunk's choices (see above): 0 done, -1 an event could not be encoded, 1 not the
 * usual chunk (the tree reads it). *sole is the string that made the chunk's only event when
 * nothing else in it made one (a shape's hole, see "The stream's shape" below), else {NULL, 0}. */
static int choice_delta_fast(openai_dec_state *st, ms_str choices, const ev_sink *sink,
                             prov_usage *usage, ms_str *sole, ev_type *kind)
{
    char tmp[OAI_FAST_DECODE];
    static const jscan_key ck[FC_N] = {JSCAN_KEY("index"), JSCAN_KEY("delta"),
                                       JSCAN_KEY("finish_reason")};
    jscan_member cm[OAI_FAST_MEMBERS], dm[OAI_FAST_MEMBERS];
    const jscan_member *c[FC_N], *d[FD_N] = {NULL};
    if (fast_choice(choices, cm, ck, FC_N, c, FC_INDEX)) return 1;
    const jscan_member *delta = c[FC_DELTA], *fin = c[FC_FINISH];
    int n;
    if (!str_or_null(fin) || (delta && delta->type != JS_OBJECT && delta->type != JS_NULL))
        return 1;
    if (delta && delta->type == JS_OBJECT) {
        n = jscan_members_valid(delta->value, dm, OAI_FAST_MEMBERS);
        if (n < 0 || n > OAI_FAST_MEMBERS || fast_members(dm, n, fast_text_keys, FD_N, d) != 0)
            return 1;
        for (int i = FD_REASONING_CONTENT; i <= FD_REFUSAL; i++)
            if (!str_or_null(d[i])) return 1;
        if (d[FD_TOOL_CALLS] && d[FD_TOOL_CALLS]->type != JS_NULL) return 1;
    }
    for (int i = FD_REASONING_CONTENT; i <= FD_REFUSAL; i++)
        if (!fast_fits(d[i])) return 1;
    /* the finish is decoded whole (NUL-terminated, as finish_of reads the tree's string) */
    if (fin && fin->type == JS_STRING && fin->value.n >= OAI_FAST_DECODE) return 1;
    /* texts(), in its order: the reasoning (reasoning_content unless empty), content, refusal */
    const jscan_member *r = d[FD_REASONING_CONTENT];
    if (!r || r->type != JS_STRING || r->value.n == 2) r = d[FD_REASONING];
    const jscan_member *src[3] = {r, d[FD_CONTENT], d[FD_REFUSAL]};
    int texts_made = 0;
    for (int i = 0; i < 3; i++) {
        if (src[i] && src[i]->type == JS_STRING && src[i]->value.n > 2) {
            texts_made++;
            *sole = src[i]->value;
            *kind = i == 0 ? EV_REASONING : EV_TEXT;
        }
    }
    if (texts_made != 1 || (fin && fin->type == JS_STRING)) *sole = (ms_str){NULL, 0};
    if (fast_text_event(sink, EV_REASONING, r, usage, tmp) ||
        fast_text_event(sink, EV_TEXT, d[FD_CONTENT], usage, tmp) ||
        fast_text_event(sink, EV_TEXT, d[FD_REFUSAL], usage, tmp))
        return -1;
    if (fin && fin->type == JS_STRING && !st->finished) {
        if (jscan_string(fin->value, tmp, sizeof tmp) < 0) return -1; /* checked above */
        st->finished = 1;
        return emit(sink, (ev_event){.type = EV_FINISH, .finish = finish_of(tmp)});
    }
    return 0;
}

/*
 * The usual answer. A whole answer's choices are nearly always one choice whose message is text:
 *   [{"index":0,"message":{"role":"assistant","content":"…","refusal":null,"annotations":[]},
 *     "logprobs":null,"finish_reason":"stop"}]
 * and its tree (~11,000 instructions for a short answer: parsed, looked up, freed) was most of
 * the decoding's cost. It is read with jscan instead when that is certain to give what the tree
 * gives, by the usual chunk's rules (above), the message in the delta's place: one element, an
 * object; its index absent, null or exactly 0; its message an object; its finish_reason a string
 * or null; the message's texts (reasoning_content, reasoning, content, refusal) strings or null,
 * its tool_calls absent, null or empty; none of those names given twice; every other member of
 * either a string, null, true, false or an empty array or object, its name without U+0000. The
 * texts are decoded onto the heap (an answer may be long). Anything else takes the tree.
 */
enum { FA_INDEX, FA_MESSAGE, FA_FINISH, FA_N };

/* A string member's text, decoded into t when it has an escape (t holds the answer's bytes);
 * empty for null or a failure. */
static ms_str answer_text(const jscan_member *m, buf_t *t)
{
    if (!m || m->type != JS_STRING) return (ms_str){"", 0};
    ms_str v = m->value;
    if (!memchr(v.p + 1, '\\', v.n - 2)) return (ms_str){v.p + 1, v.n - 2};
    buf_reset(t);
    if (buf_reserve(t, v.n + 1) != 0) return (ms_str){"", 0};
    long n = jscan_string(v, t->data, v.n + 1);
    return n < 0 ? (ms_str){"", 0} : (ms_str){t->data, (size_t)n};
}

/* 1 when choices (the member's text) is not the usual answer, nothing emitted; else its events,
 * the tree's (EV_START with id, texts() and the finish, in that order): 0, or -1 when one could
 * not be encoded. A whole answer's texts are not counted as streamed. */
static int answer_fast(ms_str choices, ms_str id, const ev_sink *sink)
{
    static const jscan_key ck[FA_N] = {JSCAN_KEY("index"), JSCAN_KEY("message"),
                                       JSCAN_KEY("finish_reason")};
    jscan_member cm[OAI_FAST_MEMBERS], mm[OAI_FAST_MEMBERS];
    const jscan_member *c[FA_N], *d[FD_N];
    if (fast_choice(choices, cm, ck, FA_N, c, FA_INDEX)) return 1;
    const jscan_member *msg = c[FA_MESSAGE], *fin = c[FA_FINISH];
    if (!str_or_null(fin) || !msg || msg->type != JS_OBJECT) return 1;
    int n = jscan_members_valid(msg->value, mm, OAI_FAST_MEMBERS);
    if (n < 0 || n > OAI_FAST_MEMBERS || fast_members(mm, n, fast_text_keys, FD_N, d) != 0)
        return 1;
    for (int i = FD_REASONING_CONTENT; i <= FD_REFUSAL; i++)
        if (!str_or_null(d[i])) return 1;
    const jscan_member *tc = d[FD_TOOL_CALLS];
    if (tc && tc->type != JS_NULL && !(tc->type == JS_ARRAY && json_empty(tc->value))) return 1;
    /* the finish is decoded whole (NUL-terminated, as finish_of reads the tree's string) */
    if (fin && fin->type == JS_STRING && fin->value.n >= OAI_FAST_DECODE) return 1;
    if (emit(sink, (ev_event){.type = EV_START, .id = id})) return -1;

    /* texts(), in its order: the reasoning (reasoning_content unless empty), content, refusal */
    const jscan_member *r = d[FD_REASONING_CONTENT];
    if (!r || r->type != JS_STRING || r->value.n == 2) r = d[FD_REASONING];
    const jscan_member *src[3] = {r, d[FD_CONTENT], d[FD_REFUSAL]};
    buf_t t;
    buf_init(&t, choices.n + 1); /* bounded by the answer it is decoded from */
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        ms_str v = answer_text(src[i], &t);
        if (v.n) rc = emit(sink, (ev_event){.type = i == 0 ? EV_REASONING : EV_TEXT, .text = v});
    }
    buf_free(&t);
    char tmp[OAI_FAST_DECODE];
    const char *reason = NULL;
    if (!rc && fin && fin->type == JS_STRING) {
        if (jscan_string(fin->value, tmp, sizeof tmp) < 0) return -1; /* checked above */
        reason = tmp;
    }
    return rc ? rc : emit(sink, (ev_event){.type = EV_FINISH, .finish = finish_of(reason)});
}

/* ---- the stream's shape (openai.c, "The stream's shape"), for passing through and decoding ----
 */

void openai_shape_learn(openai_shape *sh, ms_str d, ms_str text, ms_str pad)
{
    ms_str h[2] = {text, pad};
    int n = pad.p ? 2 : 1, counted = 0;
    if (n == 2 && pad.p < text.p) {
        h[0] = pad;
        h[1] = text;
        counted = 1;
    }
    size_t pos = 0, used = 0;
    uint16_t seg[3];
    for (int k = 0; k <= n; k++) {
        size_t end = k < n ? (size_t)(h[k].p - d.p) : d.n;
        if (end < pos || end - pos > OAI_SHAPE_TEXT - used) {
            sh->nholes = 0;
            return;
        }
        /* JSON's whitespace may be a line break where the data had several lines; such a text
         * is no shape: a shape tells an event's end by its bytes (stream_len, decode_len) */
        if (memchr(d.p + pos, '\n', end - pos) || memchr(d.p + pos, '\r', end - pos)) {
            sh->nholes = 0;
            return;
        }
        memcpy(sh->text + used, d.p + pos, end - pos);
        seg[k] = (uint16_t)(end - pos);
        used += end - pos;
        if (k < n) pos = end + h[k].n;
    }
    memcpy(sh->seg, seg, sizeof seg);
    sh->counted = (uint8_t)counted;
    sh->nholes = (uint8_t)n;
}

/*
 * The stream's shape, decoding. A chunk the scan read whose one event came from one string, with
 * no finish, usage or error, leaves its shape (the text around that string and OpenAI's
 * `obfuscation` padding), as a passed-through stream's plain chunk does (openai.c). A later
 * chunk that is that text with other valid strings in the holes is the same chunk but for them
 * (a string token for a string token changes no structure): the same one event, of the hole's
 * text. Two memcmp and a string scan instead of the scan of the whole chunk (~5,000 instructions
 * an event). An empty text takes the full path (whether it makes an event depends on the rest:
 * reasoning_content "" gives way to reasoning).
 */
/* The length of a chunk of the learned shape at d's start (d may go on past it), its text
 * decoded into *v (through tmp when it has an escape); 0 when d does not start with one, or its
 * text is empty or longer than tmp. */
static size_t shape_text(const openai_dec_state *st, ms_str d, ms_str *v, int *plain, char *tmp)
{
    ms_str t = {NULL, 0};
    size_t len = openai_shape_span(&st->shape, d, &t);
    if (!len || t.n <= 2) return 0;
    /* a valid string token with no escape has no control byte or quote inside either */
    if ((*plain = !memchr(t.p + 1, '\\', t.n - 2))) {
        *v = (ms_str){t.p + 1, t.n - 2};
        return len;
    }
    long n = t.n < OAI_FAST_DECODE ? jscan_string(t, tmp, OAI_FAST_DECODE) : -1;
    if (n <= 0) return 0;
    *v = (ms_str){tmp, (size_t)n};
    return len;
}

/* A chunk of the shape: its one event, of the text v. */
static int shape_emit(openai_dec_state *st, ms_str v, int plain, const ev_sink *sink,
                      prov_usage *usage)
{
    st->shape.hits++;
    usage->streamed_bytes += (int64_t)v.n;
    return emit(sink, (ev_event){.type = (ev_type)st->shape.kind, .plain = plain, .text = v});
}

static int shape_chunk(openai_dec_state *st, ms_str d, const ev_sink *sink, prov_usage *usage)
{
    ms_str v;
    int plain;
    char tmp[OAI_FAST_DECODE];
    size_t len = shape_text(st, d, &v, &plain, tmp);
    if (!len || len != d.n) return 1;
    return shape_emit(st, v, plain, sink, usage);
}

/* prov_adapter.decode_len: "data: <chunk of the shape>\n\n", what the SSE parser would hand
 * decode_event as one event (the shape's constant text holds no line break, openai_shape_learn,
 * and its strings cannot), decoded as decode_event would. */
size_t openai_decode_len(void *stv, const char *p, size_t n, const ev_sink *sink, prov_usage *usage,
                         int *failed)
{
    openai_dec_state *st = stv;
    ms_str v;
    int plain;
    char tmp[OAI_FAST_DECODE];
    if (!st->shape.nholes || !st->started || !openai_dec_fast_chunks || n < 8 ||
        memcmp(p, "data: ", 6) != 0)
        return 0;
    size_t len = shape_text(st, (ms_str){p + 6, n - 6}, &v, &plain, tmp);
    if (!len || n - 6 - len < 2 || p[6 + len] != '\n' || p[7 + len] != '\n') return 0;
    *failed = shape_emit(st, v, plain, sink, usage) != 0;
    return len + 8;
}

/* choices[0] of a chunk: its delta's texts and tool calls, then its finish. *sole as
 * choice_delta_fast's, {NULL, 0} when the tree read the chunk. */
static int choice_delta(openai_dec_state *st, const jscan_member *f_choices, const ev_sink *sink,
                        prov_usage *usage, ms_str *sole, ev_type *kind, char *err, size_t errlen)
{
    *sole = (ms_str){NULL, 0};
    int fast = openai_dec_fast_chunks
                   ? choice_delta_fast(st, f_choices->value, sink, usage, sole, kind)
                   : 1;
    if (fast != 1) return fast;
    *sole = (ms_str){NULL, 0};
    json_error_t je;
    json_t *choices = jtree_load(f_choices->value.p, f_choices->value.n, &je);
    if (!json_is_array(choices)) {
        /* jscan accepted it; jansson refuses what it cannot represent (an integer past int64) */
        snprintf(err, errlen, "the provider sent an invalid stream event");
        json_decref(choices);
        return -1;
    }
    json_t *c = first_choice(choices);
    json_t *delta = json_object_get(c, "delta");
    int rc = 0;
    if (json_is_object(delta)) {
        /* role is in the first delta only and says nothing an event carries */
        rc = texts(delta, sink, usage, 1);
        buf_t args;
        buf_init(&args, 0); /* bounded by the event it is written from */
        size_t i;
        json_t *tc;
        json_array_foreach(json_object_get(delta, "tool_calls"), i, tc)
        {
            if (rc) break;
            rc = tool_delta(st, tc, sink, usage, &args, err, errlen);
        }
        buf_free(&args);
    }
    const char *fr = json_string_value(json_object_get(c, "finish_reason"));
    if (!rc && fr && !st->finished) {
        st->finished = 1;
        rc = emit(sink, (ev_event){.type = EV_FINISH, .finish = finish_of(fr)});
    }
    json_decref(choices);
    return rc;
}

int openai_decode_event(void *stv, const prov_call *call, const sse_event *ev, const ev_sink *sink,
                        prov_usage *usage, int *done, int *error, char *err, size_t errlen)
{
    openai_dec_state *st = stv;
    (void)call;
    ms_str d = ev->data;
    if (errlen) err[0] = '\0'; /* set below when a check fails, before any encoding error */
    if (d.n == 0) return 0;    /* comments and keep-alives */
    if (ms_str_eq(d, "[DONE]")) {
        *done = 1;
        return 0;
    }
    if (st->shape.nholes && st->started && openai_dec_fast_chunks) {
        int rc = shape_chunk(st, d, sink, usage);
        if (rc == 0) return 0;
        if (rc < 0) {
            snprintf(err, errlen, "the gateway could not encode the answer");
            return -1;
        }
    }
    jscan_member m[32];
    const jscan_member *f[F_N];
    int nm = top_level(d, m, f);
    if (nm < 0) {
        snprintf(err, errlen, "the provider sent an invalid stream event");
        return -1;
    }
    const jscan_member *e = f[F_ERROR];
    if ((e && e->type != JS_NULL) || ms_str_eq(ev->event, "error")) {
        /* an in-band error: {"error":{"message":…,"type":…}} (a few servers name the event) */
        *error = 1;
        if (!e || error_text(e->value, e->type, err, errlen) != 0)
            snprintf(err, errlen, "the provider reported an error in the stream");
        return 0;
    }
    if (!st->started) {
        char idb[256];
        st->started = 1;
        if (emit(sink, (ev_event){.type = EV_START, .id = id_of(f[F_ID], idb, sizeof idb)}))
            return -1;
    }
    const jscan_member *ch = f[F_CHOICES];
    ms_str sole = {NULL, 0};
    ev_type kind = EV_TEXT;
    if (ch && ch->type == JS_ARRAY && ch->value.n > 2 &&
        choice_delta(st, ch, sink, usage, &sole, &kind, err, errlen) != 0) {
        if (!err[0]) snprintf(err, errlen, "the gateway could not encode the answer");
        return -1;
    }
    /* a plain chunk, every member looked at: its shape (see "The stream's shape") */
    const jscan_member *u = f[F_USAGE], *pad = f[F_PAD];
    if (sole.p && nm <= 32 && (!u || u->type == JS_NULL)) {
        openai_shape_learn(&st->shape, d, sole,
                           pad && pad->type == JS_STRING ? pad->value : (ms_str){NULL, 0});
        st->shape.kind = (uint8_t)kind;
    }
    if (usage_event(f[F_USAGE], sink, usage) != 0) {
        snprintf(err, errlen, "the gateway could not encode the answer");
        return -1;
    }
    return 0;
}
