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

/* ---- answers ---------------------------------------------------------------------------- */

static int64_t count_of(json_t *um, const char *k)
{
    json_t *v = json_object_get(um, k);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (int64_t)json_integer_value(v) : 0;
}

/* The counts of a UsageMetadata that are billed, in this order. */
enum { GU_PROMPT, GU_CACHED, GU_THOUGHTS, GU_TOOL_PROMPT, GU_CANDIDATES, GU_N };
static const jscan_key usage_keys[GU_N] = {
    JSCAN_KEY("promptTokenCount"), JSCAN_KEY("cachedContentTokenCount"),
    JSCAN_KEY("thoughtsTokenCount"), JSCAN_KEY("toolUsePromptTokenCount"),
    JSCAN_KEY("candidatesTokenCount")};

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* UsageMetadata onto the billed counts (shared/spec/API.md, "Billing"): promptTokenCount holds
 * the cached tokens, and the tool-use prompt is read as prompt too; thoughts are output that
 * candidatesTokenCount leaves out. A cached count above the prompt is clamped to it. c: each
 * count of usage_keys, 0 when it is absent, not an integer or below 1 (both readings). */
static void usage_from(const int64_t c[GU_N], prov_usage *u)
{
    int64_t cached = c[GU_CACHED] > c[GU_PROMPT] ? c[GU_PROMPT] : c[GU_CACHED];
    u->known = 1;
    u->u = (usage_counts){0};
    u->u.input = sat_add(c[GU_PROMPT] - cached, c[GU_TOOL_PROMPT]);
    u->u.cached_input = cached;
    u->u.output = sat_add(c[GU_CANDIDATES], c[GU_THOUGHTS]);
    u->u.reasoning = c[GU_THOUGHTS];
}

/* The usage of a tree's usageMetadata; 0 when it has none (no integer promptTokenCount). */
static int read_usage(json_t *um, prov_usage *u)
{
    if (!json_is_object(um) || !json_is_integer(json_object_get(um, "promptTokenCount"))) return 0;
    int64_t c[GU_N];
    for (int i = 0; i < GU_N; i++)
        c[i] = count_of(um, usage_keys[i].s);
    usage_from(c, u);
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

/* ---- the usual response ------------------------------------------------------------------ */

/*
 * Nearly every chunk of a stream, and most whole answers, is one candidate whose parts are text:
 *   {"candidates":[{"content":{"role":"model","parts":[{"text":"…"}]},"index":0}],
 *    "usageMetadata":{"promptTokenCount":11,"candidatesTokenCount":1,"totalTokenCount":12},
 *    "modelVersion":"gemini-2.5-pro","responseId":"…"}
 * Its tree cost ~24,000 instructions a chunk, a 50-event stream eighteen times what an OpenAI
 * one passed through costs (docs/PERFORMANCE.md, round 15). Such a response is read with jscan
 * instead when that is certain to give the tree's events (decode_response): an object without
 * `error` or `promptFeedback`; `candidates` an array of one object; its `content` an object (or
 * absent) whose `parts` is an array (or absent) of objects; each part a string `text` with a
 * boolean `thought` or none, or nothing but a thought's signature; `finishReason` a string;
 * `responseId` a string; `usageMetadata` an object whose counts are numbers; no name read given
 * twice in one object; and every member passed over one the tree would hold (jtree_holds: the
 * tree fails on numbers out of range and on U+0000 in a name). Anything else (function calls,
 * other parts, several candidates, a block, an error) is left to the tree, before any event.
 */
/* 0: every response takes the tree. Only tests change it, to compare the two readings. */
int gemini_dec_fast = 1;

#define GF_PARTS 64     /* text parts read on this path; more take the tree */
#define GF_MEMBERS 24   /* members of one object read on this path; more take the tree */
#define GF_SCRATCH 2048 /* bytes of decoded strings on the stack; more go to the heap */
#define GF_REASON 64    /* a finishReason's bytes; a longer one takes the tree */

/* A string's text: in the input (dec 0) or in the scratch buffer (dec 1), which may move. */
typedef struct gf_text {
    size_t off, len;
    uint8_t dec, thought;
} gf_text;

typedef struct gem_fast {
    const char *in;
    buf_t scratch;
    gf_text part[GF_PARTS];
    int nparts;
    gf_text id; /* responseId; len 0: none */
    int64_t count[GU_N];
    int usage;              /* usageMetadata has an integer promptTokenCount */
    char reason[GF_REASON]; /* finishReason decoded ("" none) */
    /* what a stream's shape is learnt from: parts was one object, the last text's token (its
     * quotes included), usageMetadata's integers (nnum -1: one is not plain digits, or more
     * than a shape holds) and the count each is (GU_N: another, such as totalTokenCount) */
    int single;
    ms_str text_tok;
    int nnum;
    ms_str num[GEM_SHAPE_HOLES - 1];
    int8_t num_what[GEM_SHAPE_HOLES - 1];
} gem_fast;

static const char *gf_ptr(const gem_fast *f, const gf_text *t)
{
    return (t->dec ? f->scratch.data : f->in) + t->off;
}

/* A string token's text into *t (decoded into the scratch buffer when it has an escape). */
static int gf_string(gem_fast *f, ms_str tok, gf_text *t)
{
    ms_str raw = {tok.p + 1, tok.n - 2};
    t->dec = 0;
    if (!memchr(raw.p, '\\', raw.n)) {
        t->off = (size_t)(raw.p - f->in);
        t->len = raw.n;
        return 0;
    }
    /* decoded text is never longer than its JSON */
    if (buf_reserve(&f->scratch, tok.n) != 0) return -1;
    long n = jscan_string(tok, f->scratch.data + f->scratch.len, tok.n);
    if (n < 0) return -1;
    t->dec = 1;
    t->off = f->scratch.len;
    t->len = (size_t)n;
    f->scratch.len += (size_t)n;
    return 0;
}

/* Whether the tree would hold a member passed over. */
static int gf_holds(const jscan_member *m)
{
    if (!jtree_holds_key(m->key)) return 0;
    return m->type == JS_STRING || m->type == JS_TRUE || m->type == JS_FALSE ||
           m->type == JS_NULL || jtree_holds(m->value);
}

/* Sorts m[0..n) onto the names keys[0..nk) (out[i]: that member or NULL); the others must be
 * members the tree would hold. 0, or -1 when the tree must read the object: a name of keys
 * given twice (the tree keeps the last, and may have failed on the first) or another member
 * the tree would refuse. */
static int gf_sort(const jscan_member *m, int n, const jscan_key *keys, int nk,
                   const jscan_member **out)
{
    for (int i = 0; i < nk; i++)
        out[i] = NULL;
    for (int k = 0; k < n; k++) {
        int i = (int)jscan_key_index(m[k].key, keys, (size_t)nk);
        if (i < nk) {
            if (out[i]) return -1;
            out[i] = &m[k];
        } else if (!gf_holds(&m[k])) {
            return -1;
        }
    }
    return 0;
}

/* gf_sort of an object's members (a value jscan accepted); their count, or -1. */
static int gf_members(ms_str obj, jscan_member *m, const jscan_key *keys, int nk,
                      const jscan_member **out)
{
    int n = jscan_members_valid(obj, m, GF_MEMBERS);
    if (n < 0 || n > GF_MEMBERS || gf_sort(m, n, keys, nk, out) != 0) return -1;
    return n;
}

/* An array's text (jscan accepted it) without its brackets and the white space after '['. */
static ms_str gf_inside(ms_str arr)
{
    ms_str in = {arr.p + 1, arr.n - 2};
    while (in.n && (in.p[0] == ' ' || in.p[0] == '\t' || in.p[0] == '\r' || in.p[0] == '\n')) {
        in.p++;
        in.n--;
    }
    return in;
}

/* The length of the integer p[0..n) starts with as a shape's hole takes it (JSON's form, 1 to
 * 18 digits, so within int64), or 0. */
static size_t gs_digits(const char *p, size_t n)
{
    size_t k = 0;
    while (k < n && k < 19 && p[k] >= '0' && p[k] <= '9')
        k++;
    return k == 0 || k > 18 || (p[0] == '0' && k > 1) ? 0 : k;
}

enum { GP_TEXT, GP_THOUGHT, GP_N };
static const jscan_key part_keys[GP_N] = {JSCAN_KEY("text"), JSCAN_KEY("thought")};

/* One part (each_element's callback): its text recorded, or passed over as the tree does (empty
 * text, a thought's signature alone); nonzero: the tree must read the response. */
static int gf_part(void *ctx, ms_str el)
{
    gem_fast *f = ctx;
    jscan_member m[GF_MEMBERS];
    const jscan_member *k[GP_N];
    if (!el.n || el.p[0] != '{') return -1;
    int n = jscan_members_valid(el, m, GF_MEMBERS);
    if (n == JSCAN_NOT_OBJECT) return 2; /* gf_candidate's guess of one part was wrong */
    if (n < 0 || n > GF_MEMBERS || gf_sort(m, n, part_keys, GP_N, k) != 0) return -1;
    if (k[GP_THOUGHT] && k[GP_THOUGHT]->type != JS_TRUE && k[GP_THOUGHT]->type != JS_FALSE)
        return -1;
    if (!k[GP_TEXT]) {
        /* a thought's signature says nothing to the client; a function call, an image or code
         * is the tree's to read (or refuse) */
        for (int i = 0; i < n; i++)
            if (!jscan_key_eq(m[i].key, "thoughtSignature", 16) &&
                !jscan_key_eq(m[i].key, "thought", 7))
                return -1;
        return 0;
    }
    if (k[GP_TEXT]->type != JS_STRING || f->nparts == GF_PARTS) return -1;
    gf_text *t = &f->part[f->nparts];
    if (gf_string(f, k[GP_TEXT]->value, t) != 0) return -1;
    if (t->len == 0) return 0; /* no event, whatever else the part holds */
    t->thought = k[GP_THOUGHT] && k[GP_THOUGHT]->type == JS_TRUE;
    f->nparts++;
    f->text_tok = k[GP_TEXT]->value;
    return 0;
}

enum { GC_CONTENT, GC_FINISH, GC_N };
static const jscan_key cand_keys[GC_N] = {JSCAN_KEY("content"), JSCAN_KEY("finishReason")};
static const jscan_key content_keys[1] = {JSCAN_KEY("parts")};

/* The candidate: its parts' texts and its finishReason; 0, or -1 (the tree's). */
static int gf_candidate(gem_fast *f, ms_str cand)
{
    jscan_member m[GF_MEMBERS], mc[GF_MEMBERS];
    const jscan_member *k[GC_N], *parts;
    if (gf_members(cand, m, cand_keys, GC_N, k) < 0) return -1;
    const jscan_member *reason = k[GC_FINISH], *content = k[GC_CONTENT];
    if (reason &&
        (reason->type != JS_STRING || jscan_string(reason->value, f->reason, sizeof f->reason) < 0))
        return -1;
    if (!content) return 0;
    if (content->type != JS_OBJECT || gf_members(content->value, mc, content_keys, 1, &parts) < 0)
        return -1;
    if (!parts) return 0;
    if (parts->type != JS_ARRAY) return -1;
    /* a stream's chunk has one part: the array's inside is then one object (gf_part tells);
     * else each element in turn */
    ms_str one = gf_inside(parts->value);
    int rc = one.n && one.p[0] == '{' ? gf_part(f, one) : 2;
    f->single = rc != 2;
    if (rc == 2) rc = each_element(parts->value, gf_part, f);
    return rc == 0 ? 0 : -1;
}

/* The usage counts as the tree reads them (count_of); -1 when a count is out of the tree's
 * range or not a number. */
static int gf_usage(gem_fast *f, const jscan_member *um)
{
    jscan_member m[GF_MEMBERS];
    const jscan_member *k[GU_N];
    int n;
    if (um->type != JS_OBJECT || (n = gf_members(um->value, m, usage_keys, GU_N, k)) < 0) return -1;
    for (int j = 0; j < n && f->nnum >= 0; j++) {
        if (m[j].type != JS_NUMBER) continue;
        if (gs_digits(m[j].value.p, m[j].value.n) != m[j].value.n ||
            f->nnum == GEM_SHAPE_HOLES - 1) {
            f->nnum = -1;
            break;
        }
        int i = 0;
        while (i < GU_N && k[i] != &m[j])
            i++;
        f->num[f->nnum] = m[j].value;
        f->num_what[f->nnum++] = (int8_t)i;
    }
    for (int i = 0; i < GU_N; i++) {
        int64_t x = 0;
        int kind = k[i] ? (k[i]->type == JS_NUMBER ? jtree_number_kind(k[i]->value, &x) : 0) : 2;
        if (kind == 0) return -1;
        f->count[i] = kind == 1 && x > 0 ? x : 0;
        if (i == GU_PROMPT) f->usage = kind == 1;
    }
    return 0;
}

enum { GT_CANDIDATES, GT_USAGE, GT_ID, GT_ERROR, GT_FEEDBACK, GT_N };
static const jscan_key top_keys[GT_N] = {JSCAN_KEY("candidates"), JSCAN_KEY("usageMetadata"),
                                         JSCAN_KEY("responseId"), JSCAN_KEY("error"),
                                         JSCAN_KEY("promptFeedback")};

/* Reads d into f; 0, or -1 when the tree must read it. */
static int gf_read(const gem_state *st, ms_str d, gem_fast *f)
{
    jscan_member m[GF_MEMBERS];
    const jscan_member *k[GT_N];
    int n = jscan_object(d.p, d.n, m, GF_MEMBERS, NULL);
    if (n < 0 || n > GF_MEMBERS || gf_sort(m, n, top_keys, GT_N, k) != 0) return -1;
    const jscan_member *c = k[GT_CANDIDATES];
    if (k[GT_ERROR] || k[GT_FEEDBACK] || !c || c->type != JS_ARRAY) return -1;
    if (k[GT_ID] && k[GT_ID]->type != JS_STRING) return -1;
    if (k[GT_ID] && !st->started && gf_string(f, k[GT_ID]->value, &f->id) != 0) return -1;
    if (k[GT_USAGE] && gf_usage(f, k[GT_USAGE]) != 0) return -1;
    /* one candidate: the array's inside is then one object, which jscan_members_valid takes
     * whole; the inside of a valid array is values and commas, so with two or more the scan
     * of the first ends at its close with a comma after it, which it refuses */
    ms_str cand = gf_inside(c->value);
    if (!cand.n || cand.p[0] != '{') return -1;
    return gf_candidate(f, cand);
}

/* f's events, in the tree's order: start, texts, usage, finish. */
static int gf_emit(gem_state *st, const gem_fast *f, const ev_sink *sink, prov_usage *usage)
{
    ev_event ev;
    if (!st->started) {
        const char *id = f->id.len ? gf_ptr(f, &f->id) : "";
        /* the tree's id is a C string: it ends at a U+0000 */
        ev = (ev_event){.type = EV_START, .id = {id, strnlen(id, f->id.len)}};
        if (ev_emit(sink, &ev)) return -1;
        st->started = 1;
    }
    for (int i = 0; i < f->nparts; i++) {
        const gf_text *t = &f->part[i];
        ev = (ev_event){.type = t->thought ? EV_REASONING : EV_TEXT,
                        .plain = !t->dec,
                        .text = {gf_ptr(f, t), t->len}};
        usage->streamed_bytes += (int64_t)t->len;
        if (ev_emit(sink, &ev)) return -1;
    }
    if (f->usage) {
        usage_from(f->count, usage);
        ev = (ev_event){.type = EV_USAGE, .usage = usage->u};
        if (ev_emit(sink, &ev)) return -1;
    }
    if (f->reason[0]) {
        ev_finish fin = map_finish(f->reason);
        if (fin == EV_FINISH_STOP && st->ntools > 0) fin = EV_FINISH_TOOL_CALLS;
        ev = (ev_event){.type = EV_FINISH, .finish = fin};
        if (ev_emit(sink, &ev)) return -1;
        st->finished = 1;
    }
    return 0;
}

/* ---- the stream's shape ---------------------------------------------------------------- */

/*
 * A stream's chunks differ from one another in their text and in usageMetadata's running counts
 * (candidatesTokenCount, totalTokenCount...); the rest (the candidate's structure, the role,
 * promptTokenCount, modelVersion, responseId) is the same bytes every time. A chunk the scan read
 * with one text part, no finish and usage integers of plain digits becomes the stream's shape:
 * its bytes with holes where the text's string and those integers are. A later chunk that is
 * the shape's bytes with a valid string token and integers of 1 to 18 digits in the holes is
 * the learnt chunk with other values: valid JSON, with the same names, types and nesting, so the
 * scan (and the tree) would give the same events with those values (the integers are within
 * int64, a text may be empty: then no event). It is read by comparing the constant runs and the
 * holes' tokens alone: a few hundred instructions where the scan takes thousands. Anything else
 * takes the scan, which may learn a new shape.
 */

typedef struct gs_hole {
    size_t off, len;
    int8_t what;
} gs_hole;

/* Learns d's shape from what the scan read of it (f), when it has one: the shape kept
 * otherwise is still right for chunks that match it. */
static void gs_learn(gem_shape *sh, ms_str d, const gem_fast *f)
{
    if (f->nparts != 1 || !f->single || f->reason[0] || f->nnum < 0) return;
    gs_hole h[GEM_SHAPE_HOLES];
    int n = 0;
    h[n++] = (gs_hole){(size_t)(f->text_tok.p - d.p), f->text_tok.n, -1};
    for (int i = 0; i < f->nnum; i++)
        h[n++] = (gs_hole){(size_t)(f->num[i].p - d.p), f->num[i].n, f->num_what[i]};
    for (int i = 1; i < n; i++) /* in the document's order */
        for (int j = i; j > 0 && h[j].off < h[j - 1].off; j--) {
            gs_hole t = h[j];
            h[j] = h[j - 1];
            h[j - 1] = t;
        }
    size_t at = 0, used = 0;
    for (int i = 0; i <= n; i++) {
        size_t end = i < n ? h[i].off : d.n, len = end - at;
        if (used + len > sizeof sh->text) {
            sh->nholes = 0;
            return;
        }
        /* data of several lines is joined with line breaks, which no event's bytes would have
         * where gemini_dec_len looks for the shape */
        if (memchr(d.p + at, '\n', len) || memchr(d.p + at, '\r', len)) {
            sh->nholes = 0;
            return;
        }
        memcpy(sh->text + used, d.p + at, len);
        sh->seg[i] = (uint16_t)len;
        used += len;
        if (i < n) {
            sh->what[i] = h[i].what;
            at = h[i].off + h[i].len;
        }
    }
    sh->nholes = (uint8_t)n;
    sh->thought = f->part[0].thought;
    sh->usage = (uint8_t)f->usage;
}

/* Reads a chunk of the shape at d's start into f (the text, the counts): its length, or 0 when
 * d does not start with one, or (whole) is not one to its end. f is written only for a chunk
 * read: a chunk that is not one goes on to the scan with f as it was. */
static size_t gs_span(const gem_shape *sh, ms_str d, int whole, gem_fast *f)
{
    const char *p = d.p, *e = d.p + d.n, *t = sh->text;
    ms_str text = {0};
    int64_t count[GU_N] = {0};
    for (int i = 0;; i++) {
        size_t len = sh->seg[i];
        if ((size_t)(e - p) < len || memcmp(p, t, len) != 0) return 0;
        p += len;
        t += len;
        if (i == sh->nholes) break;
        size_t k = sh->what[i] < 0 ? jscan_string_token(p, (size_t)(e - p))
                                   : gs_digits(p, (size_t)(e - p));
        if (k == 0) return 0;
        if (sh->what[i] < 0) {
            text = (ms_str){p, k};
        } else if (sh->what[i] < GU_N) {
            int64_t x = 0;
            for (size_t j = 0; j < k; j++)
                x = x * 10 + (p[j] - '0');
            count[sh->what[i]] = x;
        }
        p += k;
    }
    if ((whole && p != e) || gf_string(f, text, &f->part[0]) != 0) return 0;
    memcpy(f->count, count, sizeof count);
    f->part[0].thought = sh->thought;
    f->nparts = f->part[0].len > 0;
    f->usage = sh->usage;
    return (size_t)(p - d.p);
}

/* Reads d, whole, through the shape into f; 0, or -1 when it is not a chunk of the shape. */
static int gs_read(const gem_shape *sh, ms_str d, gem_fast *f)
{
    return gs_span(sh, d, 1, f) ? 0 : -1;
}

static void gf_init(gem_fast *f, ms_str d, char *small, size_t cap)
{
    f->in = d.p;
    f->nparts = f->usage = f->single = f->nnum = 0;
    f->id = (gf_text){0};
    memset(f->count, 0, sizeof f->count);
    f->reason[0] = '\0';
    buf_init_with(&f->scratch, small, cap, d.n + 1);
}

/* prov_adapter.decode_len: "data: <chunk of the shape>", then the blank line, CRLF (Google's)
 * or LF: what the SSE parser would hand gemini_dec_event as one event, and read as it would
 * read it. */
size_t gemini_dec_len(void *stv, const char *p, size_t n, const ev_sink *sink, prov_usage *usage,
                      int *failed)
{
    gem_state *st = stv;
    if (!gemini_dec_fast || st->finished || !st->started || !st->shape.nholes || n < 8 ||
        memcmp(p, "data: ", 6) != 0)
        return 0;
    gem_fast f;
    char small[GF_SCRATCH];
    ms_str d = {p + 6, n - 6};
    gf_init(&f, d, small, sizeof small);
    size_t len = gs_span(&st->shape, d, 0, &f), end = 0;
    if (len && d.n - len >= 4 && memcmp(d.p + len, "\r\n\r\n", 4) == 0)
        end = 4;
    else if (len && d.n - len >= 2 && memcmp(d.p + len, "\n\n", 2) == 0)
        end = 2;
    if (end) {
        st->fast_hits++;
        st->shape.hits++;
        *failed = gf_emit(st, &f, sink, usage) != 0;
    }
    buf_free(&f.scratch);
    return end ? 6 + len + end : 0;
}

/* 1 when d was read this way and its events went out (*rc 0, or -1 when the sink failed); 0
 * when the tree must read it (nothing went out). */
static int fast_response(gem_state *st, ms_str d, int stream, const ev_sink *sink,
                         prov_usage *usage, int *rc)
{
    if (!gemini_dec_fast) return 0;
    gem_fast f;
    char small[GF_SCRATCH];
    gf_init(&f, d, small, sizeof small);
    int shaped = stream && st->started && st->shape.nholes && gs_read(&st->shape, d, &f) == 0;
    int ok = shaped || gf_read(st, d, &f) == 0;
    if (ok) {
        st->fast_hits++;
        st->shape.hits += (uint32_t)shaped;
        if (stream && !shaped) gs_learn(&st->shape, d, &f);
        *rc = gf_emit(st, &f, sink, usage);
    }
    buf_free(&f.scratch);
    return ok;
}

/* A whole answer is complete even when its candidate names no reason. */
static int answer_end(gem_state *st, const ev_sink *sink)
{
    if (st->finished) return 0;
    ev_event ev = {.type = EV_FINISH, .finish = st->ntools ? EV_FINISH_TOOL_CALLS : EV_FINISH_STOP};
    return ev_emit(sink, &ev);
}

int gemini_dec_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                      prov_usage *usage, char *err, size_t errlen)
{
    gem_state *st = stv;
    (void)call;
    int rc = -1;
    if (fast_response(st, body, 0, sink, usage, &rc)) return rc == 0 ? answer_end(st, sink) : rc;
    json_error_t je;
    json_t *resp = jtree_load(body.p, body.n, &je);
    if (!json_is_object(resp)) {
        snprintf(err, errlen, "the provider's answer is not a JSON object");
    } else if (json_array_size(json_object_get(resp, "candidates")) == 0 &&
               !json_object_get(json_object_get(resp, "promptFeedback"), "blockReason")) {
        snprintf(err, errlen, "the provider's answer has no candidates");
    } else if ((rc = decode_response(st, resp, sink, usage, err, errlen)) == 0) {
        rc = answer_end(st, sink);
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
    int rc = 0;
    if (!st->finished && fast_response(st, sev->data, 1, sink, usage, &rc)) {
        if (rc == 0 && st->finished) *done = 1;
        return rc;
    }
    json_error_t je;
    json_t *chunk = jtree_load(sev->data.p, sev->data.n, &je);
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
