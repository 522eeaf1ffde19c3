/*
 * The Anthropic Messages dialect's request side (anthropic_request.h): POST /v1/messages bodies
 * parsed into the gateway's request (prov_call), and rewritten as OpenAI chat completions bodies
 * for models whose provider does not speak Anthropic's API.
 *
 * Parsing follows dialect_openai_parse (openai_chat_request.c) rule for rule: one jscan pass, the
 * fields the gateway acts on (model, messages, max_tokens, stream) picked with keys compared
 * decoded and refused when given twice, the model compared by length, refusals returned as
 * values with the contract's codes. Its helpers are static there, so the few lines they take are
 * repeated here rather than exported from a file another dialect owns.
 *
 * The rewrite is the reverse of the Anthropic adapter's build (providers/anthropic.c), written
 * token by token (hub.h): the scanned body's members walked in place and the OpenAI body written
 * straight out in a fixed member order, the client's strings, numbers and schemas copied as they
 * came (a tool's input compacted into its arguments string), no tree built (round 24 of
 * docs/PERFORMANCE.md: the trees were two thirds of a translated request's cost). A name given
 * twice in an object is read as jansson reads it, the last value. Its rule is the adapter's:
 * nothing that changes the answer is silently dropped.
 *   Mapped: model, system (-> a first system message), messages (text, images, tool_use ->
 *     tool_calls, tool_result -> tool messages), max_tokens, stop_sequences -> stop, temperature,
 *     top_p, tools (client tools), tool_choice (+ disable_parallel_tool_use ->
 *     parallel_tool_calls), thinking -> reasoning_effort, output_config.effort ->
 *     reasoning_effort, metadata.user_id -> user, stream (+ stream_options.include_usage, since
 *     Anthropic streams always report usage and the gateway bills from it).
 *   Dropped, because they do not change what the answer may be: cache_control on blocks and
 *     tools (a caching hint; OpenAI caches prefixes by itself), thinking and redacted_thinking
 *     blocks of assistant turns (signed reasoning only Anthropic can verify; an OpenAI-shaped
 *     provider has no field for it, and reasoning is not carried over between turns there),
 *     citations on text blocks (annotations of an earlier answer), metadata keys other than
 *     user_id, service_tier (capacity, not content), thinking {type: disabled | adaptive} (no
 *     effort given: the provider's default), context_management (context editing, which only
 *     removes old tool results near the context limit: the provider sees the whole
 *     conversation instead).
 *   Refused with a 400 naming the field: top_k (OpenAI has no top-k sampling: dropping it would
 *     widen the sampling the client narrowed), server tools (web search, bash, text editor, code
 *     execution...: only Anthropic runs them), container, mcp_servers (server side state),
 *     output_format and output_config.format (structured
 *     outputs), output_config.effort "max", document / search_result / server tool blocks, images
 *     in assistant turns or tool results (OpenAI carries only text there), file image sources
 *     (Anthropic's Files API), and any top-level field not listed here (Anthropic refuses unknown
 *     fields too, and an unknown field cannot be known to be harmless).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "dialect/hub.h"
#include "dialect/anthropic_request.h"
#include "providers/provider.h"
#include "providers/wire.h"

/* thinking.budget_tokens -> reasoning_effort: the nearest of the budgets the Anthropic adapter
 * gives each effort (1024, 4096, 16384), split at their geometric midpoints, so an effort sent
 * through both translations comes back as it was. */
#define AREQ_MEDIUM_FROM 2048
#define AREQ_HIGH_FROM 8192
#define AREQ_BUDGET_MIN 1024 /* Anthropic's minimum thinking budget (extended thinking) */

#define INVALID(why, param, ...) dialect_refuse(why, 400, "invalid_parameter", param, __VA_ARGS__)

/* ---- parse ---- */

enum { F_MODEL, F_MESSAGES, F_MAX_TOKENS, F_STREAM, F_COUNT };
static const jscan_key fields[F_COUNT] = {JSCAN_KEY("model"), JSCAN_KEY("messages"),
                                          JSCAN_KEY("max_tokens"), JSCAN_KEY("stream")};

static int missing(dialect_refusal *why, const char *param)
{
    return dialect_refuse(why, 400, "missing_required_parameter", param,
                          "Missing required parameter: '%s'.", param);
}

static int parse(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                 dialect_refusal *why, int need_max_tokens)
{
    /* the members are written by the scan: the rest is zeroed (6 KB not touched) */
    ms_str b = call->body;
    char rid[sizeof call->request_id];
    memcpy(rid, call->request_id, sizeof rid);
    memset(call, 0, offsetof(prov_call, members));
    memcpy(call->request_id, rid, sizeof rid);
    call->body = b;
    call->ep = EP_CHAT;
    call->dialect = &dialect_anthropic_messages;
    call->max_tokens = -1;
    call->client_include_usage = 1; /* Anthropic streams always carry usage (message_delta) */
    if (shown_len) shown[0] = '\0';

    const jscan_member *f[F_COUNT];
    if (dialect_scan(cfg, call, fields, F_COUNT, f, shown, shown_len, why) != 0) return -1;

    const jscan_member *msgs = f[F_MESSAGES];
    if (!msgs) return missing(why, "messages");
    if (msgs->type != JS_ARRAY)
        return INVALID(why, "messages", "'messages' must be an array of message objects.");
    if (dialect_empty_array(msgs->value))
        return INVALID(why, "messages", "'messages' must contain at least one message.");
    /* Anthropic requires max_tokens (Messages): the hold is placed for it; count_tokens has none */
    const jscan_member *mt = f[F_MAX_TOKENS];
    if (!mt && need_max_tokens) return missing(why, "max_tokens");
    int64_t v;
    if (mt && (mt->type != JS_NUMBER || jscan_int(mt->value, &v) != 0 || v < 1))
        return INVALID(why, "max_tokens", "'max_tokens' must be an integer of at least 1.");
    if (mt) call->max_tokens = v;
    const jscan_member *st = f[F_STREAM];
    if (st && st->type != JS_NULL) {
        if (st->type != JS_TRUE && st->type != JS_FALSE)
            return INVALID(why, "stream", "'stream' must be a boolean.");
        call->stream = st->type == JS_TRUE;
    }
    return 0;
}

int dialect_anthropic_parse(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                            dialect_refusal *why)
{
    return parse(cfg, call, shown, shown_len, why, 1);
}

int dialect_anthropic_parse_count(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                                  dialect_refusal *why)
{
    return parse(cfg, call, shown, shown_len, why, 0);
}

/* ---- Anthropic body -> OpenAI chat body ---- */

/* The rewrite's state. A tool call is written among a turn's blocks but goes after its content:
 * calls holds them until the turn ends. full: an append failed (memory or out's limit); the
 * rewrite goes on (a refusal found later still wins) and gives nothing. */
#define AREQ_MEMBERS 16 /* top-level members the hub body can have (build) */
typedef struct {
    buf_t *out;
    buf_t calls;
    size_t nmsgs;
    int full;
    dialect_refusal *why;
    /* where each top-level member of the hub body begins (its ',' or the '{'), relative to
     * base, and where the closing '}' is: the members listed without a scan (list_members) */
    size_t base, mstart[AREQ_MEMBERS], mend;
    size_t nm;
} areq;

/* A top-level member of the hub body begins here (the rewrite writes none where a helper finds
 * nothing to write: list_members skips an empty stretch). */
static void mb(areq *w)
{
    if (w->nm < AREQ_MEMBERS) w->mstart[w->nm] = w->out->len - w->base;
    w->nm++;
}

static void wr(areq *w, buf_t *b, const char *s, size_t n)
{
    w->full |= buf_append(b, s, n) != 0;
}
#define PUT(w, lit) wr((w), (w)->out, (lit), sizeof(lit) - 1)

static void put_tok(areq *w, ms_str t)
{
    wr(w, w->out, t.p, t.n);
}

static void put_compact(areq *w, buf_t *b, ms_str v)
{
    w->full |= dialect_put_compact(b, v) != 0;
}

/* -1 with *why filled: what the rewrite returns for a refusal. */
static int cannot(dialect_refusal *why, const char *param, const char *what)
{
    return INVALID(why, param,
                   "'%s' cannot be translated for this model's provider, which does not speak "
                   "Anthropic's API: %s.",
                   param, what);
}

/* A block's type for a refusal's message. */
static void type_name(const jscan_member *type, char *out, size_t outlen)
{
    dialect_tok_name(type->value, dialect_tok_str(type), out, outlen);
}

/* A message's head ("{role...content":), its comma first; returns where it began (for
 * buf_truncate, when the message turns out empty). */
static size_t msg_open(areq *w, const char *head, size_t n)
{
    size_t mark = w->out->len;
    if (w->nmsgs) PUT(w, ",");
    wr(w, w->out, head, n);
    return mark;
}
#define MSG_OPEN(w, lit) msg_open((w), (lit), sizeof(lit) - 1)
static void msg_close(areq *w)
{
    PUT(w, "}");
    w->nmsgs++;
}

/* A string token's text, or "Error: <text>" ("Error" for none) for a failed tool call's result:
 * the model must still learn that the call failed, and OpenAI has no flag for it. Both are the
 * client's valid string insides and ASCII, so the join is a valid string. */
static void put_text(areq *w, ms_str t, int error)
{
    if (!error) return put_tok(w, t);
    PUT(w, "\"Error");
    if (t.n > 2) {
        PUT(w, ": ");
        wr(w, w->out, t.p + 1, t.n - 2);
    }
    PUT(w, "\"");
}

/* A content list being written: a list of one text part becomes that text (the same request,
 * and what OpenAI's own examples send), of none "" (or null for an assistant's, which has tool
 * calls then); other lists stay lists. */
typedef struct {
    size_t mark;  /* where the content began */
    size_t n;     /* parts written */
    ms_str first; /* the first part's text, when it is a text part */
    int first_text;
    int error; /* a failed tool call's result: its first text says so */
} parts;

static void parts_open(areq *w, parts *p, int error)
{
    *p = (parts){.mark = w->out->len, .error = error};
    PUT(w, "[");
}

static void parts_text(areq *w, parts *p, ms_str text)
{
    if (p->n) PUT(w, ",");
    PUT(w, "{\"type\":\"text\",\"text\":");
    put_text(w, text, p->error && p->n == 0);
    PUT(w, "}");
    if (p->n++ == 0) {
        p->first = text;
        p->first_text = 1;
    }
}

/* Before a part of another kind, which the caller writes. */
static void parts_other(areq *w, parts *p)
{
    if (p->n++) PUT(w, ",");
}

static void parts_close(areq *w, parts *p, int null_if_none)
{
    if (p->n > 1 || (p->n == 1 && !p->first_text)) {
        PUT(w, "]");
        return;
    }
    buf_truncate(w->out, p->mark);
    if (p->n == 1)
        put_text(w, p->first, p->error);
    else if (null_if_none)
        PUT(w, "null");
    else
        put_text(w, MS_STR_LIT("\"\""), p->error);
}

/* An image block (Vision) as an image_url part: a base64 source becomes a data: URL with its
 * media type, a url source its URL. */
enum { SRC_TYPE, SRC_MEDIA, SRC_DATA, SRC_URL, SRC_N };
static const jscan_key src_keys[SRC_N] = {JSCAN_KEY("type"), JSCAN_KEY("media_type"),
                                          JSCAN_KEY("data"), JSCAN_KEY("url")};

static int image_part(areq *w, const jscan_member *source)
{
    jscan_member f[SRC_N];
    dialect_pick(source->value, src_keys, SRC_N, f);
    if (DIALECT_TOK_IS(&f[SRC_TYPE], "base64")) {
        const jscan_member *mt = &f[SRC_MEDIA], *data = &f[SRC_DATA];
        if (!dialect_tok_str(mt) || !dialect_tok_str(data) || mt->value.n <= 2)
            return INVALID(w->why, "messages",
                           "A base64 image source needs 'media_type' and 'data'.");
        /* the client's string insides joined: an image's megabytes of base64 copied once */
        PUT(w, "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:");
        wr(w, w->out, mt->value.p + 1, mt->value.n - 2);
        PUT(w, ";base64,");
        wr(w, w->out, data->value.p + 1, data->value.n - 2);
        PUT(w, "\"}}");
        return 0;
    }
    if (DIALECT_TOK_IS(&f[SRC_TYPE], "url")) {
        if (!dialect_tok_str(&f[SRC_URL]))
            return INVALID(w->why, "messages", "A url image source needs a 'url' string.");
        PUT(w, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
        put_tok(w, f[SRC_URL].value);
        PUT(w, "}}");
        return 0;
    }
    return cannot(w->why, "messages",
                  "an image source must be base64 or url (files of Anthropic's Files API cannot "
                  "be read by another provider)");
}

/* The members of a content block the rewrite reads, of every kind. */
enum { B_TYPE, B_TEXT, B_SOURCE, B_TOOL_USE_ID, B_CONTENT, B_IS_ERROR, B_ID, B_NAME, B_INPUT, B_N };
static const jscan_key block_keys[B_N] = {
    JSCAN_KEY("type"),        JSCAN_KEY("text"),    JSCAN_KEY("source"),
    JSCAN_KEY("tool_use_id"), JSCAN_KEY("content"), JSCAN_KEY("is_error"),
    JSCAN_KEY("id"),          JSCAN_KEY("name"),    JSCAN_KEY("input")};

static int text_needed(areq *w)
{
    return INVALID(w->why, "messages", "A text block needs a 'text' string.");
}

/* A tool_result block as an OpenAI tool message: its text (a string, or the text blocks it
 * holds), with an error result said in the text. */
static int tool_message(areq *w, const jscan_member *f)
{
    const jscan_member *c = &f[B_CONTENT], *err = &f[B_IS_ERROR];
    if (!dialect_tok_str(&f[B_TOOL_USE_ID]))
        return INVALID(w->why, "messages", "A tool_result block needs a 'tool_use_id' string.");
    int error = !dialect_absent(err) && err->type == JS_TRUE;
    MSG_OPEN(w, "{\"role\":\"tool\",\"tool_call_id\":");
    put_tok(w, f[B_TOOL_USE_ID].value);
    PUT(w, ",\"content\":");
    if (dialect_tok_null(c)) {
        put_text(w, MS_STR_LIT("\"\""), error);
    } else if (c->type == JS_STRING) {
        put_text(w, c->value, error);
    } else if (c->type == JS_ARRAY) {
        parts p;
        parts_open(w, &p, error);
        jscan_iter it;
        jscan_type bt;
        jscan_member g[B_TEXT + 1];
        jscan_iter_start(&it, c->value);
        while (dialect_pick_next(&it, block_keys, B_TEXT + 1, g, &bt) > 0) {
            if (!DIALECT_TOK_IS(&g[B_TYPE], "text"))
                return cannot(w->why, "messages",
                              "a tool_result may only hold text here (an OpenAI tool message "
                              "carries no images or documents)");
            if (!dialect_tok_str(&g[B_TEXT])) return text_needed(w);
            parts_text(w, &p, g[B_TEXT].value);
        }
        parts_close(w, &p, 0);
    } else {
        return INVALID(w->why, "messages",
                       "A tool_result's 'content' must be a string or an array.");
    }
    if (!dialect_tok_null(err) && err->type != JS_TRUE && err->type != JS_FALSE)
        return INVALID(w->why, "messages", "A tool_result's 'is_error' must be a boolean.");
    msg_close(w);
    return 0;
}

#define USER_HEAD "{\"role\":\"user\",\"content\":"
#define ASSISTANT_HEAD "{\"role\":\"assistant\",\"content\":"

/* A user turn: tool_result blocks first, one tool message each (OpenAI wants them right after
 * the assistant's tool_calls); the rest (text, images) as a user message after them. */
static int user_turn(areq *w, const jscan_member *content)
{
    if (content->type == JS_STRING) {
        MSG_OPEN(w, USER_HEAD);
        put_tok(w, content->value);
        msg_close(w);
        return 0;
    }
    parts p;
    int open = 0;
    jscan_iter it;
    jscan_type bt;
    jscan_member f[B_N];
    jscan_iter_start(&it, content->value);
    while (dialect_pick_next(&it, block_keys, B_IS_ERROR + 1, f, &bt) > 0) {
        if (DIALECT_TOK_IS(&f[B_TYPE], "tool_result")) {
            /* Anthropic's own rule (tool use): results come first in their turn; after other
             * content they would land after a user message, where OpenAI refuses them */
            if (open)
                return INVALID(w->why, "messages",
                               "tool_result blocks must come before any other content in a user "
                               "message.");
            if (tool_message(w, f) != 0) return -1;
            continue;
        }
        if (!open) {
            MSG_OPEN(w, USER_HEAD);
            parts_open(w, &p, 0);
            open = 1;
        }
        if (DIALECT_TOK_IS(&f[B_TYPE], "text")) {
            if (!dialect_tok_str(&f[B_TEXT])) return text_needed(w);
            parts_text(w, &p, f[B_TEXT].value);
        } else if (DIALECT_TOK_IS(&f[B_TYPE], "image")) {
            parts_other(w, &p);
            if (image_part(w, &f[B_SOURCE]) != 0) return -1;
        } else {
            char type[48], what[96];
            type_name(&f[B_TYPE], type, 41);
            snprintf(what, sizeof what, "a user message cannot hold a '%s' block here", type);
            return cannot(w->why, "messages", what);
        }
    }
    if (open) {
        parts_close(w, &p, 0);
        msg_close(w);
    }
    return 0;
}

/* A tool_use block as a tool call, into w->calls (n: the calls already there). */
static int tool_call(areq *w, const jscan_member *f, size_t n)
{
    buf_t *c = &w->calls;
    if (!dialect_tok_str(&f[B_ID]) || !dialect_tok_str(&f[B_NAME]) ||
        f[B_INPUT].type != JS_OBJECT || dialect_absent(&f[B_INPUT]))
        return INVALID(w->why, "messages",
                       "A tool_use block needs an 'id', a 'name' and an 'input' object.");
    if (n) wr(w, c, ",", 1);
    wr(w, c, "{\"id\":", 6);
    wr(w, c, f[B_ID].value.p, f[B_ID].value.n);
    static const char mid[] = ",\"type\":\"function\",\"function\":{\"name\":";
    wr(w, c, mid, sizeof mid - 1);
    wr(w, c, f[B_NAME].value.p, f[B_NAME].value.n);
    wr(w, c, ",\"arguments\":", 13);
    /* input as a JSON string of itself: the client's members, compact */
    w->full |= dialect_put_quoted(c, f[B_INPUT].value) != 0;
    wr(w, c, "}}", 2);
    return 0;
}

/* An assistant turn: text, and tool_use blocks as tool_calls; thinking blocks dropped (see the
 * file's opening comment). A turn left with nothing is not written. */
static int assistant_turn(areq *w, const jscan_member *content)
{
    if (content->type == JS_STRING) {
        MSG_OPEN(w, ASSISTANT_HEAD);
        put_tok(w, content->value);
        msg_close(w);
        return 0;
    }
    size_t mark = MSG_OPEN(w, ASSISTANT_HEAD), ncalls = 0;
    parts p;
    parts_open(w, &p, 0);
    buf_reset(&w->calls);
    jscan_iter it;
    jscan_type bt;
    jscan_member f[B_N];
    jscan_iter_start(&it, content->value);
    while (dialect_pick_next(&it, block_keys, B_N, f, &bt) > 0) {
        const jscan_member *type = &f[B_TYPE];
        if (DIALECT_TOK_IS(type, "thinking") || DIALECT_TOK_IS(type, "redacted_thinking")) continue;
        if (DIALECT_TOK_IS(type, "text")) {
            if (!dialect_tok_str(&f[B_TEXT])) return text_needed(w);
            parts_text(w, &p, f[B_TEXT].value);
        } else if (DIALECT_TOK_IS(type, "tool_use")) {
            if (tool_call(w, f, ncalls++) != 0) return -1;
        } else {
            char name[48], what[96];
            type_name(type, name, 41);
            snprintf(what, sizeof what, "an assistant message cannot hold a '%s' block here", name);
            return cannot(w->why, "messages", what);
        }
    }
    if (p.n == 0 && ncalls == 0) {
        buf_truncate(w->out, mark);
        return 0;
    }
    parts_close(w, &p, 1);
    if (ncalls) {
        PUT(w, ",\"tool_calls\":[");
        wr(w, w->out, w->calls.data, w->calls.len);
        PUT(w, "]");
    }
    msg_close(w);
    return 0;
}

/* system (or a message of role system): a string or text blocks -> a message, role system. */
static int translate_system(areq *w, const jscan_member *system)
{
    if (dialect_tok_null(system)) return 0;
    if (system->type == JS_STRING) {
        if (system->value.n <= 2) return 0; /* "" */
        MSG_OPEN(w, "{\"role\":\"system\",\"content\":");
        put_tok(w, system->value);
        msg_close(w);
        return 0;
    }
    if (system->type != JS_ARRAY)
        return INVALID(w->why, "system", "'system' must be a string or text blocks.");
    size_t mark = MSG_OPEN(w, "{\"role\":\"system\",\"content\":");
    parts p;
    parts_open(w, &p, 0);
    jscan_iter it;
    jscan_type bt;
    jscan_member f[B_TEXT + 1];
    jscan_iter_start(&it, system->value);
    while (dialect_pick_next(&it, block_keys, B_TEXT + 1, f, &bt) > 0) {
        if (!DIALECT_TOK_IS(&f[B_TYPE], "text") || !dialect_tok_str(&f[B_TEXT]))
            return INVALID(w->why, "system", "'system' must be a string or text blocks.");
        parts_text(w, &p, f[B_TEXT].value);
    }
    if (p.n == 0) {
        buf_truncate(w->out, mark);
        return 0;
    }
    parts_close(w, &p, 0);
    msg_close(w);
    return 0;
}

enum { M_ROLE, M_CONTENT, M_N };
static const jscan_key msg_keys[M_N] = {JSCAN_KEY("role"), JSCAN_KEY("content")};

static int translate_messages(areq *w, ms_str messages)
{
    jscan_iter it;
    jscan_type mt;
    jscan_member f[M_N];
    jscan_iter_start(&it, messages);
    while (dialect_pick_next(&it, msg_keys, M_N, f, &mt) > 0) {
        const jscan_member *role = &f[M_ROLE], *content = &f[M_CONTENT];
        int sys = DIALECT_TOK_IS(role, "system"), user = DIALECT_TOK_IS(role, "user");
        if (mt != JS_OBJECT || !(user || sys || DIALECT_TOK_IS(role, "assistant")))
            return INVALID(w->why, "messages",
                           "Each message must be an object with role 'user', 'assistant' or "
                           "'system'.");
        if (dialect_absent(content) || (content->type != JS_STRING && content->type != JS_ARRAY))
            return INVALID(w->why, "messages",
                           "A message's 'content' must be a string or an array of blocks.");
        /* Claude Code puts system text among the messages too (a system turn between user
         * turns, text blocks only): it stays a system message, where it stood */
        int rc = sys    ? translate_system(w, content)
                 : user ? user_turn(w, content)
                        : assistant_turn(w, content);
        if (rc) return rc;
    }
    return 0;
}

/* tools: client tools -> function tools; server tools refused. An empty list is left out
 * (OpenAI refuses one, and it offers nothing). *any: whether a tool was written. */
enum { T_TYPE, T_NAME, T_DESCRIPTION, T_SCHEMA, T_N };
static const jscan_key tool_keys[T_N] = {JSCAN_KEY("type"), JSCAN_KEY("name"),
                                         JSCAN_KEY("description"), JSCAN_KEY("input_schema")};

static int translate_tools(areq *w, const jscan_member *tools, int *any)
{
    *any = 0;
    if (dialect_tok_null(tools)) return 0;
    if (tools->type != JS_ARRAY) return INVALID(w->why, "tools", "'tools' must be an array.");
    jscan_iter it;
    jscan_type tt;
    jscan_member f[T_N];
    size_t n = 0;
    jscan_iter_start(&it, tools->value);
    while (dialect_pick_next(&it, tool_keys, T_N, f, &tt) > 0) {
        if (!dialect_tok_null(&f[T_TYPE]) && !DIALECT_TOK_IS(&f[T_TYPE], "custom"))
            return cannot(w->why, "tools",
                          "server tools (web search, bash, text editor, code execution...) run "
                          "only at Anthropic; give client tools (name, input_schema)");
        const jscan_member *d = &f[T_DESCRIPTION];
        if (!dialect_tok_str(&f[T_NAME]) || dialect_absent(&f[T_SCHEMA]) ||
            f[T_SCHEMA].type != JS_OBJECT || (!dialect_tok_null(d) && d->type != JS_STRING))
            return INVALID(w->why, "tools",
                           "A tool needs a 'name', an 'input_schema' object and, if any, a "
                           "'description' string.");
        if (n++)
            PUT(w, ",");
        else
            PUT(w, ",\"tools\":[");
        PUT(w, "{\"type\":\"function\",\"function\":{\"name\":");
        put_tok(w, f[T_NAME].value);
        if (dialect_tok_str(d)) {
            PUT(w, ",\"description\":");
            put_tok(w, d->value);
        }
        PUT(w, ",\"parameters\":");
        put_compact(w, w->out, f[T_SCHEMA].value);
        PUT(w, "}}");
    }
    if (n) PUT(w, "]");
    *any = n > 0;
    return 0;
}

/* tool_choice: auto -> auto, any -> required, tool -> the named function, none -> none;
 * disable_parallel_tool_use -> parallel_tool_calls false. Without tools OpenAI refuses both, and
 * auto or none then mean what no tool_choice means; forcing a tool that is not there is refused. */
enum { C_TYPE, C_DISABLE, C_NAME, C_N };
static const jscan_key choice_keys[C_N] = {
    JSCAN_KEY("type"), JSCAN_KEY("disable_parallel_tool_use"), JSCAN_KEY("name")};

static int translate_tool_choice(areq *w, const jscan_member *tc, int tools)
{
    if (dialect_tok_null(tc)) return 0;
    jscan_member f[C_N];
    dialect_pick(tc->value, choice_keys, C_N, f);
    const jscan_member *type = &f[C_TYPE], *dp = &f[C_DISABLE];
    int a = DIALECT_TOK_IS(type, "auto"), any = DIALECT_TOK_IS(type, "any");
    int tool = DIALECT_TOK_IS(type, "tool"), none = DIALECT_TOK_IS(type, "none");
    if (tc->type != JS_OBJECT || !(a || any || tool || none))
        return INVALID(w->why, "tool_choice",
                       "'tool_choice' must be an object of type auto, any, tool or none.");
    if (!dialect_tok_null(dp) && dp->type != JS_TRUE && dp->type != JS_FALSE)
        return INVALID(w->why, "tool_choice",
                       "'tool_choice.disable_parallel_tool_use' must be a boolean.");
    if (tool && !dialect_tok_str(&f[C_NAME]))
        return INVALID(w->why, "tool_choice", "A tool_choice of type tool needs a 'name'.");
    if (!tools) {
        if (any || tool)
            return INVALID(w->why, "tool_choice",
                           "'tool_choice' forces a tool, but no tools are given.");
        return 0;
    }
    if (a) {
        PUT(w, ",\"tool_choice\":\"auto\"");
    } else if (any) {
        PUT(w, ",\"tool_choice\":\"required\"");
    } else if (none) {
        PUT(w, ",\"tool_choice\":\"none\"");
    } else {
        PUT(w, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        put_tok(w, f[C_NAME].value);
        PUT(w, "}}");
    }
    if (!dialect_absent(dp) && dp->type == JS_TRUE && !none) {
        mb(w); /* a member of its own (list_members) */
        PUT(w, ",\"parallel_tool_calls\":false");
    }
    return 0;
}

/* thinking -> reasoning_effort (NULL: none given). *rc = -1 when refused. */
enum { TH_TYPE, TH_BUDGET, TH_N };
static const jscan_key thinking_keys[TH_N] = {JSCAN_KEY("type"), JSCAN_KEY("budget_tokens")};

static const char *thinking_effort(areq *w, const jscan_member *th, int *rc)
{
    if (dialect_tok_null(th)) return NULL;
    jscan_member f[TH_N];
    dialect_pick(th->value, thinking_keys, TH_N, f);
    if (DIALECT_TOK_IS(&f[TH_TYPE], "disabled") || DIALECT_TOK_IS(&f[TH_TYPE], "adaptive"))
        return NULL;
    /* an integer, maybe written as 1e4 */
    double n = 0;
    int number = !dialect_absent(&f[TH_BUDGET]) && f[TH_BUDGET].type == JS_NUMBER &&
                 jscan_double(f[TH_BUDGET].value, &n) == 0;
    if (!DIALECT_TOK_IS(&f[TH_TYPE], "enabled") || !number || !(n >= AREQ_BUDGET_MIN) ||
        (n < 1e15 && n != (double)(int64_t)n)) {
        *rc = INVALID(w->why, "thinking",
                      "'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": n} with n at "
                      "least %d, or of type disabled or adaptive.",
                      AREQ_BUDGET_MIN);
        return NULL;
    }
    return n < AREQ_MEDIUM_FROM ? "low" : n < AREQ_HIGH_FROM ? "medium" : "high";
}

/* output_config: effort low/medium/high -> reasoning_effort (it says how hard to think, as
 * OpenAI's does); anything else in it is refused. A name given twice is read as jansson reads
 * it: where it first stands, with the last value. */
static int output_config(areq *w, const jscan_member *oc, const char **effort)
{
    static const jscan_key effort_key = JSCAN_KEY("effort");
    if (dialect_tok_null(oc)) return 0;
    if (oc->type != JS_OBJECT)
        return INVALID(w->why, "output_config", "'output_config' must be an object.");
    jscan_member last, m;
    dialect_pick(oc->value, &effort_key, 1, &last);
    jscan_iter it;
    jscan_iter_start(&it, oc->value);
    while (jscan_iter_member(&it, &m) > 0) {
        if (!jscan_key_eq(m.key, "effort", 6)) {
            char k[48], what[96];
            dialect_tok_name((ms_str){m.key.p - 1, m.key.n + 2}, 1, k, 41);
            snprintf(what, sizeof what, "'%s' (structured outputs and the like)", k);
            return cannot(w->why, "output_config", what);
        }
        if (dialect_tok_null(&last)) continue;
        static const char *const efforts[] = {"low", "medium", "high"};
        const char *e = NULL;
        for (size_t i = 0; i < 3 && !e; i++)
            if (dialect_tok_eq(&last, efforts[i], strlen(efforts[i]))) e = efforts[i];
        if (!e)
            return cannot(w->why, "output_config",
                          "its effort must be low, medium or high (OpenAI's reasoning_effort has "
                          "no 'max')");
        *effort = e;
    }
    return 0;
}

/* temperature, top_p: numbers from 0 to 1 as Anthropic takes them, copied as written (the same
 * scale). */
static int unit_number(areq *w, const jscan_member *v, const char *name, const char *key)
{
    if (dialect_tok_null(v)) return 0;
    double d;
    if (v->type != JS_NUMBER || jscan_double(v->value, &d) != 0 || d < 0 || d > 1)
        return INVALID(w->why, name, "'%s' must be a number from 0 to 1.", name);
    wr(w, w->out, key, strlen(key));
    put_tok(w, v->value);
    return 0;
}

static int stop_sequences(areq *w, const jscan_member *stop)
{
    if (dialect_tok_null(stop)) return 0;
    jscan_iter it;
    ms_str s;
    jscan_type st;
    if (stop->type != JS_ARRAY)
        return INVALID(w->why, "stop_sequences", "'stop_sequences' must be an array of strings.");
    size_t n = 0;
    jscan_iter_start(&it, stop->value);
    while (jscan_iter_value(&it, &s, &st) > 0) {
        if (st != JS_STRING)
            return INVALID(w->why, "stop_sequences",
                           "'stop_sequences' must be an array of strings.");
        n++;
    }
    if (n) {
        PUT(w, ",\"stop\":");
        put_compact(w, w->out, stop->value);
    }
    return 0;
}

static int metadata(areq *w, const jscan_member *md)
{
    static const jscan_key user_key = JSCAN_KEY("user_id");
    if (dialect_tok_null(md)) return 0;
    jscan_member user;
    dialect_pick(md->value, &user_key, 1, &user);
    if (md->type != JS_OBJECT || (!dialect_tok_null(&user) && user.type != JS_STRING))
        return INVALID(w->why, "metadata", "'metadata' must be an object; its user_id a string.");
    if (dialect_tok_str(&user)) {
        PUT(w, ",\"user\":");
        put_tok(w, user.value);
    }
    return 0;
}

/* Top-level fields: what the rewrite does with each (the opening comment says why). */
enum { K_MAPPED, K_DROPPED, K_REFUSED };
static const struct {
    jscan_key name;
    int what;
    const char *why; /* K_REFUSED */
} known[] = {
    {JSCAN_KEY("model"), K_MAPPED, NULL},
    {JSCAN_KEY("messages"), K_MAPPED, NULL},
    {JSCAN_KEY("max_tokens"), K_MAPPED, NULL},
    {JSCAN_KEY("system"), K_MAPPED, NULL},
    {JSCAN_KEY("stop_sequences"), K_MAPPED, NULL},
    {JSCAN_KEY("stream"), K_MAPPED, NULL},
    {JSCAN_KEY("temperature"), K_MAPPED, NULL},
    {JSCAN_KEY("top_p"), K_MAPPED, NULL},
    {JSCAN_KEY("tools"), K_MAPPED, NULL},
    {JSCAN_KEY("tool_choice"), K_MAPPED, NULL},
    {JSCAN_KEY("thinking"), K_MAPPED, NULL},
    {JSCAN_KEY("output_config"), K_MAPPED, NULL},
    {JSCAN_KEY("metadata"), K_MAPPED, NULL},
    {JSCAN_KEY("service_tier"), K_DROPPED, NULL},
    {JSCAN_KEY("top_k"), K_REFUSED, "OpenAI-shaped providers have no top-k sampling"},
    {JSCAN_KEY("container"), K_REFUSED, "containers are Anthropic's code execution state"},
    {JSCAN_KEY("mcp_servers"), K_REFUSED, "only Anthropic connects to MCP servers"},
    /* Claude Code sends it on every request. Context editing only ever removes old tool results
     * from what the model sees, near the context limit; without it the provider sees the whole
     * conversation, which it may answer from (or refuse as too long: a clear error, not a
     * silently different answer), so it is dropped rather than refused. */
    {JSCAN_KEY("context_management"), K_DROPPED, NULL},
    {JSCAN_KEY("output_format"), K_REFUSED, "structured outputs are not translated"},
};
#define NKNOWN (sizeof known / sizeof *known)

/* The first top-level field that is refused (or unknown), if any. A refused field given twice
 * counts by its last value, as jansson would read it. */
static int check_fields(const prov_call *call, dialect_refusal *why)
{
    for (size_t k = 0; k < call->nmembers; k++) {
        const jscan_member *m = &call->members[k];
        size_t i = 0;
        while (i < NKNOWN && !jscan_key_eq(m->key, known[i].name.s, known[i].name.n))
            i++;
        if (i == NKNOWN) {
            char name[72];
            dialect_tok_name((ms_str){m->key.p - 1, m->key.n + 2}, 1, name, 65);
            return INVALID(why, NULL,
                           "The field '%s' is not supported for this model's provider, which "
                           "does not speak Anthropic's API.",
                           name);
        }
        if (known[i].what != K_REFUSED) continue;
        const jscan_member *last = jscan_find(call->members, call->nmembers, known[i].name.s);
        if (last && last->type != JS_NULL) return cannot(why, known[i].name.s, known[i].why);
    }
    return 0;
}

/* The top-level members the rewrite reads (model, messages, max_tokens and stream as parsed). */
enum {
    F2_MODEL,
    F2_MESSAGES,
    F2_SYSTEM,
    F2_STOP,
    F2_TEMPERATURE,
    F2_TOP_P,
    F2_TOOLS,
    F2_TOOL_CHOICE,
    F2_THINKING,
    F2_OUTPUT_CONFIG,
    F2_METADATA,
    F2_N
};
static const jscan_key top_keys[F2_N] = {
    JSCAN_KEY("model"),          JSCAN_KEY("messages"),    JSCAN_KEY("system"),
    JSCAN_KEY("stop_sequences"), JSCAN_KEY("temperature"), JSCAN_KEY("top_p"),
    JSCAN_KEY("tools"),          JSCAN_KEY("tool_choice"), JSCAN_KEY("thinking"),
    JSCAN_KEY("output_config"),  JSCAN_KEY("metadata")};

static int build(const prov_call *call, areq *w)
{
    int rc = check_fields(call, w->why);
    if (rc) return rc;
    const jscan_member *p[F2_N];
    jscan_member f[F2_N];
    jscan_pick(call->members, call->nmembers, top_keys, F2_N, p);
    for (size_t i = 0; i < F2_N; i++) {
        if (p[i])
            f[i] = *p[i];
        else
            f[i].value.p = NULL;
    }
    if (!dialect_tok_str(&f[F2_MODEL]) || dialect_absent(&f[F2_MESSAGES]) ||
        f[F2_MESSAGES].type != JS_ARRAY || call->max_tokens < 1)
        return INVALID(w->why, NULL, "The request was not parsed as a Messages request.");
    mb(w);
    PUT(w, "{\"model\":");
    put_tok(w, f[F2_MODEL].value);
    mb(w);
    PUT(w, ",\"messages\":[");
    if ((rc = translate_system(w, &f[F2_SYSTEM])) != 0) return rc;
    if ((rc = translate_messages(w, f[F2_MESSAGES].value)) != 0) return rc;
    if (w->nmsgs == 0)
        return INVALID(w->why, "messages", "'messages' has nothing left to send but reasoning.");
    PUT(w, "]");
    mb(w);
    PUT(w, ",\"max_tokens\":");
    w->full |= buf_append_dec(w->out, call->max_tokens) != 0;
    mb(w);
    if ((rc = stop_sequences(w, &f[F2_STOP])) != 0) return rc;
    mb(w);
    if ((rc = unit_number(w, &f[F2_TEMPERATURE], "temperature", ",\"temperature\":")) != 0)
        return rc;
    mb(w);
    if ((rc = unit_number(w, &f[F2_TOP_P], "top_p", ",\"top_p\":")) != 0) return rc;
    int tools;
    mb(w);
    if ((rc = translate_tools(w, &f[F2_TOOLS], &tools)) != 0) return rc;
    mb(w);
    if ((rc = translate_tool_choice(w, &f[F2_TOOL_CHOICE], tools)) != 0) return rc;
    const char *effort = thinking_effort(w, &f[F2_THINKING], &rc);
    if (rc) return rc;
    if ((rc = output_config(w, &f[F2_OUTPUT_CONFIG], &effort)) != 0) return rc;
    mb(w);
    if (effort) {
        PUT(w, ",\"reasoning_effort\":\"");
        wr(w, w->out, effort, strlen(effort));
        PUT(w, "\"");
    }
    mb(w);
    if ((rc = metadata(w, &f[F2_METADATA])) != 0) return rc;
    /* the gateway bills from the provider's usage, and Anthropic clients always get it */
    if (call->stream) {
        mb(w);
        PUT(w, ",\"stream\":true");
        mb(w);
        PUT(w, ",\"stream_options\":{\"include_usage\":true}");
    }
    w->mend = w->out->len - w->base;
    PUT(w, "}");
    return 0;
}

/* The hub body's top-level members, as jscan_members_valid would list them, from where build
 * began each: `{"key":value` or `,"key":value` up to the next one's start (the rewrite writes
 * them compact, keys of its own with no escape). Returns their count, or 0 when there were more
 * than max (the caller scans). The hub body is otherwise scanned again by the OpenAI parser only
 * to find these (~3,900 instructions for a 1 KB request, docs/PERFORMANCE.md round 25). */
static size_t list_members(const areq *w, const char *body, jscan_member *m, size_t max)
{
    size_t n = 0;
    if (w->nm > AREQ_MEMBERS) return 0;
    for (size_t i = 0; i < w->nm; i++) {
        size_t s = w->mstart[i], e = i + 1 < w->nm ? w->mstart[i + 1] : w->mend;
        if (s == e) continue;
        if (n == max) return 0;
        const char *k = body + s + 2, *q = memchr(k, '"', e - s - 2);
        size_t vs = (size_t)(q - body) + 2;
        m[n++] = (jscan_member){.key = {k, (size_t)(q - k)},
                                .value = {body + vs, e - vs},
                                .type = jscan_type_of(body[vs]),
                                .key_plain = 1,
                                .start = s + 1,
                                .end = e};
    }
    return n;
}

int dialect_anthropic_to_openai(const prov_call *call, buf_t *out, dialect_refusal *why)
{
    size_t n;
    return dialect_anthropic_to_openai_listed(call, out, NULL, 0, &n, why);
}

int dialect_anthropic_to_openai_listed(const prov_call *call, buf_t *out,
                                       struct jscan_member *members, size_t max, size_t *listed,
                                       dialect_refusal *why)
{
    *listed = 0;
    *why = (dialect_refusal){0};
    /* the members are the scan's (dialect_anthropic_parse); nested values are walked without a
     * second validation, so a body not vouched for is validated once here */
    if (!prov_body_valid(call) && jscan_object(call->body.p, call->body.n, NULL, 0, NULL) < 0)
        return dialect_refuse(why, 400, "invalid_json", NULL,
                              "The request cannot be translated for this model's provider: it is "
                              "not a valid JSON object.");
    areq w = {.out = out, .why = why, .base = out->len};
    buf_init(&w.calls, out->limit);
    size_t len0 = out->len;
    int rc = build(call, &w);
    if (rc == 0 && w.full) {
        *why = (dialect_refusal){0}; /* memory, or out's limit */
        rc = -1;
    }
    if (rc != 0) buf_truncate(out, len0); /* nothing half-written */
    if (rc == 0 && members) *listed = list_members(&w, out->data + len0, members, max);
    buf_free(&w.calls);
    return rc;
}
