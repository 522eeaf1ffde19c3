/*
 * The Anthropic adapter: serves OpenAI chat clients from Anthropic's Messages API. It is a
 * translating adapter (provider.h): build writes a new Messages request from the client's chat
 * request, and decode_answer/decode_event turn Anthropic's message and its named stream events
 * into normalized events (engine/event.h), which the client's dialect encodes as OpenAI chat.
 *
 * Nothing the client asked for is silently dropped: a field Anthropic cannot honour and that
 * would change the answer (n > 1, logprobs, penalties, JSON modes, audio...) is refused with the
 * contract's 400 naming it, before anything goes upstream; harmless OpenAI fields are ignored
 * (docs/PROVIDERS.md lists them and why); fields OpenAI does not define pass through to Anthropic
 * untouched, as the contract says unknown fields do, so the provider judges them.
 *
 * Anthropic references followed here (cited again where each rule is applied):
 *   Messages:          https://docs.claude.com/en/api/messages
 *   Streaming:         https://docs.claude.com/en/docs/build-with-claude/streaming
 *   Errors:            https://docs.claude.com/en/api/errors
 *   Extended thinking: https://docs.claude.com/en/docs/build-with-claude/extended-thinking
 *   Tool use:          https://docs.claude.com/en/docs/agents-and-tools/tool-use/implement-tool-use
 *   Vision:            https://docs.claude.com/en/docs/build-with-claude/vision
 *   Prompt caching:    https://docs.claude.com/en/docs/build-with-claude/prompt-caching
 *
 * The request is read with jansson (it is rebuilt anyway) and written by a small serializer of
 * our own, so numbers come out in their shortest exact form (0.7, not 0.69999999999999996) and
 * members in the client's order. Stream events, the hot path, are read with jscan (no tree).
 * Everything here runs on the event loop: parsing and building only, every buffer bounded.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jarena.h"
#include "common/jtree.h"
#include "providers/provider.h"
#include "providers/wire.h"

#define ANT_VERSION "2023-06-01"
/* Content blocks one answer may have; a stream with more fails with a clear error (the state
 * is a fixed array, so a provider cannot make it grow). */
#define ANT_MAX_BLOCKS 256
/* Tool calls one answer may have: the OpenAI encoder's own cap (dialect/openai_chat.c). */
#define ANT_MAX_TOOLS 128
/* Top-level members of an answer the pass-through looks among for 'content' and 'usage' (a
 * message has about eight). */
#define ANT_TOP_MEMBERS 64
/* reasoning_effort -> thinking.budget_tokens. Anthropic's minimum budget is 1024 and the budget
 * must stay below max_tokens (extended thinking, "Max tokens and context window size"). */
#define ANT_BUDGET_LOW 1024
#define ANT_BUDGET_MEDIUM 4096
#define ANT_BUDGET_HIGH 16384
#define ANT_BUDGET_MIN 1024

/* ---- per-transfer state (streams) ---- */

enum { BLK_NONE, BLK_TEXT, BLK_THINKING, BLK_TOOL, BLK_OTHER };

/* A usage object as Anthropic reports it, before mapping onto the billed counts. */
typedef struct ant_usage {
    int64_t input, cache_read, cache_create, w5m, w1h, output;
    int has_breakdown; /* cache_creation.{ephemeral_5m,ephemeral_1h}_input_tokens given */
    int any;           /* some count was read */
} ant_usage;

/* The constant text around a text or thinking delta's string, the event's own framing included
 * (see "The stream's shape" below); pre == 0: none learned. */
#define ANT_SHAPE_TEXT 256
typedef struct ant_shape {
    uint16_t pre, post; /* bytes of text before the string and after it */
    uint32_t hits;      /* events that matched it (tests) */
    char text[ANT_SHAPE_TEXT];
} ant_shape;

typedef struct ant_state {
    int started; /* message_start seen */
    int ntools;
    unsigned char kind[ANT_MAX_BLOCKS];      /* BLK_* by Anthropic's block index */
    short tool[ANT_MAX_BLOCKS];              /* OpenAI's tool-call index of a tool block */
    unsigned char tool_args[ANT_MAX_BLOCKS]; /* the tool block's arguments were not empty */
    ant_usage u;                             /* what the stream reported so far */
    buf_t dec;                               /* decoded strings of the event in hand */
    /* the event in hand was a plain text or thinking delta, this its string (block_delta; only
     * when every member was looked at) */
    ms_str plain;
    unsigned char plain_kind; /* its event: EV_TEXT or EV_REASONING */
    ant_shape shape;          /* passing a stream through */
    ant_shape dshape;         /* decoding: the data of a plain delta around its string */
    unsigned char dshape_kind;
    int answer_scanned;  /* the whole answer was read by the scan (af_answer; tests) */
    int request_written; /* the request was written token by token (ab_build; tests) */
} ant_state;

static void ant_reset(void *stv, const prov_call *call)
{
    ant_state *st = stv;
    (void)call;
    /* the engine hands it zeroed (and released after a previous attempt); a stream event is at
     * most the engine's SSE cap (4 MiB), and its strings decode shorter */
    memset(st, 0, sizeof *st);
    buf_init(&st->dec, 4u << 20);
}

static void ant_release(void *stv)
{
    ant_state *st = stv;
    buf_free(&st->dec);
}

/* ---- JSON output ---- */

/* ---- build: OpenAI chat request -> Anthropic Messages request ---- */

typedef struct bctx {
    const prov_call *call;
    prov_refusal *why;
    json_t *system; /* array of text blocks, or NULL */
    json_t *msgs;   /* the Anthropic messages */
    json_t *last;   /* the last message's content array (for merging same-role turns) */
    const char *last_role;
} bctx;

static int cannot_take(prov_refusal *why, const char *param, const char *what)
{
    return prov_refuse(why, param, "The provider (Anthropic) cannot take '%s': %s.", param, what);
}

static int is_null(const json_t *v)
{
    return !v || json_is_null(v);
}

/* A text block, with the part's cache_control kept: it is how an OpenAI-shaped client asks
 * Anthropic to cache a prefix (prompt caching), and Anthropic reads it on any block. The text is
 * the request's own string, shared, not copied: json_stringn would check a 100 KB prompt's UTF-8
 * again a byte at a time (jtree_load made it from text jscan had checked). */
static json_t *text_block(json_t *text, json_t *cache_control)
{
    json_t *b = json_object();
    json_object_set_new(b, "type", json_string("text"));
    json_object_set(b, "text", text);
    if (json_is_object(cache_control)) json_object_set(b, "cache_control", cache_control);
    return b;
}

/* Appends blocks to the conversation as a turn of role, merged into the previous turn when it
 * has the same role: Anthropic wants user and assistant turns to alternate (Messages), and
 * OpenAI's consecutive tool messages are one user turn of tool_result blocks there. */
static void add_turn(bctx *c, const char *role, json_t *blocks)
{
    if (json_array_size(blocks) == 0) {
        /* an empty message (content "") has nothing Anthropic accepts: empty text blocks are
         * refused there */
        json_decref(blocks);
        return;
    }
    if (c->last && strcmp(c->last_role, role) == 0) {
        json_array_extend(c->last, blocks);
        json_decref(blocks);
        return;
    }
    json_t *m = json_object();
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", blocks);
    json_array_append_new(c->msgs, m);
    c->last = blocks;
    c->last_role = role;
}

/* An image part's URL as an Anthropic image source (Vision): a data: URL becomes a base64
 * source with its media type, an http(s) URL a url source. */
static int image_block(bctx *c, json_t *part, json_t *out)
{
    json_t *iu = json_object_get(part, "image_url");
    json_t *url = json_is_object(iu) ? json_object_get(iu, "url") : iu;
    if (!json_is_string(url))
        return prov_refuse(c->why, "messages", "An image_url part needs a 'url' string.");
    const char *s = json_string_value(url);
    size_t n = json_string_length(url);
    json_t *src = json_object();
    if (n > 5 && strncmp(s, "data:", 5) == 0) {
        const char *comma = memchr(s, ',', n);
        const char *semi = comma ? memchr(s + 5, ';', (size_t)(comma - s - 5)) : NULL;
        if (!semi || (size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7) != 0 ||
            semi == s + 5) {
            json_decref(src);
            return prov_refuse(c->why, "messages",
                               "An image data: URL must be 'data:<media type>;base64,<data>'.");
        }
        json_object_set_new(src, "type", json_string("base64"));
        json_object_set_new(src, "media_type", json_stringn(s + 5, (size_t)(semi - s - 5)));
        json_object_set_new(src, "data", json_stringn(comma + 1, n - (size_t)(comma + 1 - s)));
    } else if ((n > 7 && strncmp(s, "http://", 7) == 0) ||
               (n > 8 && strncmp(s, "https://", 8) == 0)) {
        json_object_set_new(src, "type", json_string("url"));
        json_object_set(src, "url", url);
    } else {
        json_decref(src);
        return prov_refuse(c->why, "messages",
                           "An image URL must be an http(s) URL or a base64 data: URL.");
    }
    json_t *b = json_object();
    json_object_set_new(b, "type", json_string("image"));
    json_object_set_new(b, "source", src);
    json_t *cc = json_object_get(part, "cache_control");
    if (json_is_object(cc)) json_object_set(b, "cache_control", cc);
    json_array_append_new(out, b);
    return 0;
}

/* A message's content (string or parts) as blocks appended to out. images: whether image parts
 * are allowed (user turns). Returns 0 or -2. */
static int content_blocks(bctx *c, json_t *content, int images, json_t *out)
{
    if (is_null(content)) return 0;
    if (json_is_string(content)) {
        if (json_string_length(content)) json_array_append_new(out, text_block(content, NULL));
        return 0;
    }
    if (!json_is_array(content))
        return prov_refuse(c->why, "messages", "A message's content must be a string or an array.");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type) return prov_refuse(c->why, "messages", "A content part needs a 'type'.");
        /* an assistant's refusal part is what it said, as text */
        if (strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0) {
            json_t *t = json_object_get(part, type);
            if (!json_is_string(t))
                return prov_refuse(c->why, "messages", "A '%s' part needs a '%s' string.", type,
                                   type);
            if (json_string_length(t))
                json_array_append_new(out, text_block(t, json_object_get(part, "cache_control")));
        } else if (strcmp(type, "image_url") == 0 && images) {
            int rc = image_block(c, part, out);
            if (rc) return rc;
        } else {
            return prov_refuse(c->why, "messages",
                               "The provider (Anthropic) cannot take a '%s' content part here.",
                               type);
        }
    }
    return 0;
}

/* An assistant's tool_calls as tool_use blocks (Tool use): input is the parsed arguments,
 * which must be a JSON object. */
static int tool_use_blocks(bctx *c, json_t *calls, json_t *out)
{
    if (is_null(calls)) return 0;
    if (!json_is_array(calls))
        return prov_refuse(c->why, "messages",
                           "An assistant message's tool_calls must be an array.");
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        json_t *id = json_object_get(tc, "id");
        json_t *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        const char *type = json_string_value(json_object_get(tc, "type"));
        if (type && strcmp(type, "function") != 0)
            return prov_refuse(c->why, "messages",
                               "The provider (Anthropic) cannot take a '%s' tool call.", type);
        if (!json_is_string(id) || !json_is_string(name))
            return prov_refuse(c->why, "messages",
                               "A tool call needs an 'id' and a function 'name'.");
        json_t *input;
        if (is_null(args) || (json_is_string(args) && json_string_length(args) == 0)) {
            input = json_object(); /* a call without arguments */
        } else if (!json_is_string(args)) {
            return prov_refuse(c->why, "messages",
                               "A tool call's 'arguments' must be a JSON string.");
        } else {
            json_error_t jerr;
            input = json_loadb(json_string_value(args), json_string_length(args), 0, &jerr);
            if (!json_is_object(input)) {
                json_decref(input);
                return prov_refuse(c->why, "messages",
                                   "The arguments of tool call '%.64s' are not a JSON object; the "
                                   "provider (Anthropic) needs one.",
                                   json_string_value(id));
            }
        }
        json_t *b = json_object();
        json_object_set_new(b, "type", json_string("tool_use"));
        json_object_set(b, "id", id);
        json_object_set(b, "name", name);
        json_object_set_new(b, "input", input);
        json_array_append_new(out, b);
    }
    return 0;
}

/* OpenAI's messages -> Anthropic's system and messages. */
static int translate_messages(bctx *c, json_t *messages)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        int rc = 0;
        if (!json_is_object(m) || !role)
            return prov_refuse(c->why, "messages", "Each message must be an object with a 'role'.");
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Anthropic has no system role: every system (and developer) message becomes text
             * blocks of the top-level system, in order, wherever it stood (Messages) */
            if (!c->system) c->system = json_array();
            rc = content_blocks(c, content, 0, c->system);
        } else if (strcmp(role, "user") == 0) {
            if (is_null(content))
                return prov_refuse(c->why, "messages", "A user message needs content.");
            json_t *blocks = json_array();
            rc = content_blocks(c, content, 1, blocks);
            if (rc) {
                json_decref(blocks);
                return rc;
            }
            add_turn(c, "user", blocks);
        } else if (strcmp(role, "assistant") == 0) {
            if (!is_null(json_object_get(m, "function_call")))
                return cannot_take(c->why, "messages",
                                   "the deprecated function_call of an assistant message; use "
                                   "tool_calls");
            /* reasoning_content is not sent back: Anthropic only takes thinking blocks with the
             * signature it made, which an OpenAI client has nowhere to keep */
            json_t *blocks = json_array();
            rc = content_blocks(c, content, 0, blocks);
            if (!rc) rc = tool_use_blocks(c, json_object_get(m, "tool_calls"), blocks);
            if (rc) {
                json_decref(blocks);
                return rc;
            }
            add_turn(c, "assistant", blocks);
        } else if (strcmp(role, "tool") == 0) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (!json_is_string(id))
                return prov_refuse(c->why, "messages", "A tool message needs a 'tool_call_id'.");
            json_t *r = json_object();
            json_object_set_new(r, "type", json_string("tool_result"));
            json_object_set(r, "tool_use_id", id);
            if (json_is_string(content)) {
                if (json_string_length(content)) json_object_set(r, "content", content);
            } else if (!is_null(content)) {
                json_t *blocks = json_array();
                rc = content_blocks(c, content, 0, blocks);
                if (rc) {
                    json_decref(blocks);
                    json_decref(r);
                    return rc;
                }
                if (json_array_size(blocks))
                    json_object_set_new(r, "content", blocks);
                else
                    json_decref(blocks);
            }
            json_t *blocks = json_array();
            json_array_append_new(blocks, r);
            /* tool results are a user turn; consecutive ones merge into one (Tool use) */
            add_turn(c, "user", blocks);
        } else if (strcmp(role, "function") == 0) {
            return cannot_take(c->why, "messages",
                               "messages of the deprecated 'function' role; use 'tool'");
        } else {
            return prov_refuse(c->why, "messages", "Unknown message role '%.32s'.", role);
        }
        if (rc) return rc;
    }
    return 0;
}

/* A single text block without cache_control is written as a plain string: the same request,
 * and what people read in logs. */
static void simplify_contents(json_t *msgs)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *content = json_object_get(m, "content");
        json_t *b = json_array_get(content, 0);
        if (json_array_size(content) == 1 &&
            strcmp(json_string_value(json_object_get(b, "type")), "text") == 0 &&
            json_object_size(b) == 2)
            json_object_set(m, "content", json_object_get(b, "text"));
    }
}

/* tools: OpenAI function tools -> Anthropic client tools (name, description, input_schema). */
static int translate_tools(bctx *c, json_t *tools, json_t *out)
{
    if (!json_is_array(tools)) return prov_refuse(c->why, "tools", "'tools' must be an array.");
    json_t *list = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        if (!type || strcmp(type, "function") != 0) {
            json_decref(list);
            return prov_refuse(c->why, "tools",
                               "The provider (Anthropic) can only take tools of type 'function'.");
        }
        if (!json_is_string(name)) {
            json_decref(list);
            return prov_refuse(c->why, "tools", "A function tool needs a 'name'.");
        }
        json_t *d = json_object_get(fn, "description");
        json_t *params = json_object_get(fn, "parameters");
        json_t *tool = json_object();
        json_object_set(tool, "name", name);
        if (json_is_string(d)) json_object_set(tool, "description", d);
        /* a function without parameters takes none; Anthropic requires a schema */
        if (json_is_object(params))
            json_object_set(tool, "input_schema", params);
        else
            json_object_set_new(tool, "input_schema", json_pack("{s:s}", "type", "object"));
        json_t *cc = json_object_get(t, "cache_control");
        if (json_is_object(cc)) json_object_set(tool, "cache_control", cc);
        json_array_append_new(list, tool);
    }
    json_object_set_new(out, "tools", list);
    return 0;
}

/* tool_choice (auto/none/required/named) and parallel_tool_calls -> Anthropic's tool_choice
 * (Tool use; parallel tool use: disable_parallel_tool_use). */
static int translate_tool_choice(bctx *c, json_t *tc, json_t *parallel, int thinking, json_t *out)
{
    json_t *choice = NULL;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        const char *t = strcmp(s, "auto") == 0       ? "auto"
                        : strcmp(s, "none") == 0     ? "none"
                        : strcmp(s, "required") == 0 ? "any"
                                                     : NULL;
        if (!t)
            return prov_refuse(c->why, "tool_choice",
                               "'tool_choice' must be auto, none, required or a named function.");
        choice = json_pack("{s:s}", "type", t);
    } else if (json_is_object(tc)) {
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (!json_is_string(name))
            return prov_refuse(c->why, "tool_choice", "A named tool_choice needs function.name.");
        choice = json_pack("{s:s, s:O}", "type", "tool", "name", name);
    } else if (!is_null(tc)) {
        return prov_refuse(c->why, "tool_choice",
                           "'tool_choice' must be auto, none, required or a named function.");
    }
    if (!is_null(parallel) && !json_is_boolean(parallel)) {
        json_decref(choice);
        return prov_refuse(c->why, "parallel_tool_calls",
                           "'parallel_tool_calls' must be a boolean.");
    }
    const char *type = choice ? json_string_value(json_object_get(choice, "type")) : "auto";
    if (thinking && (strcmp(type, "any") == 0 || strcmp(type, "tool") == 0)) {
        json_decref(choice);
        /* Extended thinking: "tool_choice: any / tool" is not supported with thinking */
        return prov_refuse(c->why, "tool_choice",
                           "The provider (Anthropic) cannot force a tool call while reasoning "
                           "(reasoning_effort): use tool_choice auto or none.");
    }
    if (json_is_false(parallel) && strcmp(type, "none") != 0) {
        if (!choice) choice = json_pack("{s:s}", "type", "auto");
        json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    }
    if (choice) json_object_set_new(out, "tool_choice", choice);
    return 0;
}

/* The OpenAI fields this adapter knows, and what it does with them. Every other field passes
 * through to Anthropic as the client wrote it (the contract: unknown fields are forwarded). */
enum { F_MAPPED, F_IGNORED, F_CHECKED };
static const struct {
    const char *name;
    int what;
} known_fields[] = {
    {"model", F_MAPPED},
    {"messages", F_MAPPED},
    {"max_tokens", F_MAPPED},
    {"max_completion_tokens", F_MAPPED},
    {"stop", F_MAPPED},
    {"temperature", F_MAPPED},
    {"top_p", F_MAPPED},
    {"tools", F_MAPPED},
    {"tool_choice", F_MAPPED},
    {"parallel_tool_calls", F_MAPPED},
    {"reasoning_effort", F_MAPPED},
    {"stream", F_MAPPED},
    {"user", F_MAPPED},
    {"safety_identifier", F_MAPPED},
    /* harmless: they do not change what the answer may be (docs/PROVIDERS.md says why) */
    {"stream_options", F_IGNORED},
    {"store", F_IGNORED},
    {"metadata", F_IGNORED},
    {"seed", F_IGNORED},
    {"service_tier", F_IGNORED},
    {"prediction", F_IGNORED},
    {"prompt_cache_key", F_IGNORED},
    {"prompt_cache_retention", F_IGNORED},
    /* refused unless given their neutral value */
    {"n", F_CHECKED},
    {"logprobs", F_CHECKED},
    {"top_logprobs", F_CHECKED},
    {"presence_penalty", F_CHECKED},
    {"frequency_penalty", F_CHECKED},
    {"logit_bias", F_CHECKED},
    {"response_format", F_CHECKED},
    {"audio", F_CHECKED},
    {"modalities", F_CHECKED},
    {"functions", F_CHECKED},
    {"function_call", F_CHECKED},
    {"web_search_options", F_CHECKED},
    {"verbosity", F_CHECKED},
};

/* Fields given a value that changes the answer in a way Anthropic cannot: the 400 naming it. */
static int check_refused(bctx *c, json_t *req)
{
    json_t *v;
    prov_refusal *why = c->why;
    v = json_object_get(req, "n");
    if (!is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        return cannot_take(why, "n", "it writes one choice per request (n must be 1)");
    v = json_object_get(req, "logprobs");
    if (!is_null(v) && !json_is_false(v))
        return cannot_take(why, "logprobs", "it does not report log probabilities");
    v = json_object_get(req, "top_logprobs");
    if (!is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
        return cannot_take(why, "top_logprobs", "it does not report log probabilities");
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(req, penalties[i]);
        if (!is_null(v) && !(json_is_number(v) && json_number_value(v) == 0))
            return cannot_take(why, penalties[i], "it has no repetition penalties");
    }
    v = json_object_get(req, "logit_bias");
    if (!is_null(v) && !(json_is_object(v) && json_object_size(v) == 0))
        return cannot_take(why, "logit_bias", "it has no logit bias");
    v = json_object_get(req, "response_format");
    if (!is_null(v)) {
        const char *t = json_string_value(json_object_get(v, "type"));
        if (!t || strcmp(t, "text") != 0)
            return cannot_take(why, "response_format",
                               "it has no JSON mode in the Messages API this gateway speaks");
    }
    v = json_object_get(req, "audio");
    if (!is_null(v)) return cannot_take(why, "audio", "it does not write audio");
    v = json_object_get(req, "modalities");
    if (!is_null(v)) {
        size_t i;
        json_t *x;
        if (!json_is_array(v))
            return prov_refuse(why, "modalities", "'modalities' must be an array.");
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x) || strcmp(json_string_value(x), "text") != 0)
                return cannot_take(why, "modalities", "it only writes text");
        }
    }
    if (!is_null(json_object_get(req, "functions")))
        return cannot_take(why, "functions", "the deprecated functions; use tools");
    if (!is_null(json_object_get(req, "function_call")))
        return cannot_take(why, "function_call", "the deprecated function_call; use tool_choice");
    if (!is_null(json_object_get(req, "web_search_options")))
        return cannot_take(why, "web_search_options", "OpenAI's web search");
    v = json_object_get(req, "verbosity");
    if (!is_null(v) && !(json_is_string(v) && strcmp(json_string_value(v), "medium") == 0))
        return cannot_take(why, "verbosity", "it has no verbosity setting");
    return 0;
}

/* A number field within [lo, hi]: NULL when absent, else the value (borrowed), or *rc = -2. */
static json_t *number_in(bctx *c, json_t *req, const char *name, double lo, double hi, int *rc)
{
    json_t *v = json_object_get(req, name);
    if (is_null(v)) return NULL;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        /* Anthropic's temperature is 0..1 where OpenAI's is 0..2: a value above 1 is refused,
         * never scaled or clamped (the answer would differ from what was asked) */
        *rc = prov_refuse(c->why, name,
                          "'%s' must be a number from %g to %g for this provider (Anthropic).",
                          name, lo, hi);
        return NULL;
    }
    return v;
}

/* reasoning_effort -> a thinking budget (Extended thinking). 0: no thinking; -2 refused. */
static int64_t thinking_budget(bctx *c, json_t *effort, int64_t max_tokens)
{
    if (is_null(effort)) return 0;
    const char *e = json_string_value(effort);
    int64_t want = !e                          ? -1
                   : strcmp(e, "none") == 0    ? 0
                   : strcmp(e, "minimal") == 0 ? ANT_BUDGET_LOW
                   : strcmp(e, "low") == 0     ? ANT_BUDGET_LOW
                   : strcmp(e, "medium") == 0  ? ANT_BUDGET_MEDIUM
                   : strcmp(e, "high") == 0    ? ANT_BUDGET_HIGH
                                               : -1;
    if (want < 0)
        return prov_refuse(c->why, "reasoning_effort",
                           "'reasoning_effort' must be none, minimal, low, medium or high.");
    if (want == 0) return 0;
    /* max_tokens counts the thinking too, as OpenAI's counts reasoning: the budget is cut to
     * fit under it (never the other way round: max_tokens is what the hold covers) */
    if (want >= max_tokens) want = max_tokens - 1;
    if (want < ANT_BUDGET_MIN)
        return prov_refuse(
            c->why, "reasoning_effort",
            "Reasoning on this provider (Anthropic) needs a thinking budget of at least "
            "%d tokens below max_tokens: raise max_tokens above %d.",
            ANT_BUDGET_MIN, ANT_BUDGET_MIN);
    return want;
}

static int is_known(ms_str raw_key)
{
    for (size_t i = 0; i < sizeof known_fields / sizeof *known_fields; i++)
        if (jscan_key_eq(raw_key, known_fields[i].name, strlen(known_fields[i].name))) return 1;
    return 0;
}

/* Builds the whole Anthropic body into b. Returns 0, -1 (memory) or -2 (refused). */
static int build_body(const prov_call *call, json_t *req, prov_refusal *why, buf_t *b)
{
    bctx c = {.call = call, .why = why, .msgs = json_array()};
    json_t *out = json_object();
    int rc = 0;
    json_t *messages = json_object_get(req, "messages");
    if (!json_is_array(messages)) {
        rc = prov_refuse(why, "messages", "'messages' must be an array of message objects.");
        goto done;
    }
    if ((rc = check_refused(&c, req)) != 0) goto done;

    /* max_tokens, which Anthropic requires: the client's (max_tokens or max_completion_tokens),
     * else the model's max_output_tokens, else the billing default; capped at the model's
     * max_output_tokens. That is the output bound the balance hold was placed for
     * (price_output_bound), so the provider can never write more than was held; the engine
     * puts it in the call for the attempt's model. */
    int64_t max_tokens = call->output_bound > 0
                             ? call->output_bound
                             : price_output_bound(NULL, call->model, call->max_tokens);
    json_t *temperature = number_in(&c, req, "temperature", 0, 1, &rc);
    if (rc) goto done;
    json_t *top_p = number_in(&c, req, "top_p", 0, 1, &rc);
    if (rc) goto done;
    int64_t budget = thinking_budget(&c, json_object_get(req, "reasoning_effort"), max_tokens);
    if (budget < 0) {
        rc = (int)budget;
        goto done;
    }
    if (budget > 0) {
        /* Extended thinking: not compatible with temperature changes, and top_p only from 0.95
         * to 1 */
        if (temperature && json_number_value(temperature) != 1) {
            rc = prov_refuse(why, "temperature",
                             "The provider (Anthropic) cannot take 'temperature' with reasoning "
                             "(reasoning_effort): leave it out or set 1.");
            goto done;
        }
        if (top_p && json_number_value(top_p) < 0.95) {
            rc = prov_refuse(why, "top_p",
                             "The provider (Anthropic) takes 'top_p' from 0.95 to 1 with reasoning "
                             "(reasoning_effort).");
            goto done;
        }
    }
    if ((rc = translate_messages(&c, messages)) != 0) goto done;
    simplify_contents(c.msgs);

    json_object_set_new(out, "model", json_string(call->dep->model));
    json_object_set_new(out, "max_tokens", json_integer(max_tokens));
    if (c.system && json_array_size(c.system)) json_object_set(out, "system", c.system);
    json_object_set(out, "messages", c.msgs);
    json_t *tools = json_object_get(req, "tools");
    if (!is_null(tools) && (rc = translate_tools(&c, tools, out)) != 0) goto done;
    rc = translate_tool_choice(&c, json_object_get(req, "tool_choice"),
                               json_object_get(req, "parallel_tool_calls"), budget > 0, out);
    if (rc) goto done;
    json_t *stop = json_object_get(req, "stop");
    if (json_is_string(stop)) {
        json_object_set_new(out, "stop_sequences", json_pack("[O]", stop));
    } else if (json_is_array(stop)) {
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s)) {
                rc = prov_refuse(why, "stop", "'stop' must be a string or an array of strings.");
                goto done;
            }
        }
        if (json_array_size(stop)) json_object_set(out, "stop_sequences", stop);
    } else if (!is_null(stop)) {
        rc = prov_refuse(why, "stop", "'stop' must be a string or an array of strings.");
        goto done;
    }
    if (temperature) json_object_set(out, "temperature", temperature);
    if (top_p) json_object_set(out, "top_p", top_p);
    if (budget > 0)
        json_object_set_new(
            out, "thinking",
            json_pack("{s:s, s:I}", "type", "enabled", "budget_tokens", (json_int_t)budget));
    json_t *user = json_object_get(req, "user");
    if (is_null(user)) user = json_object_get(req, "safety_identifier");
    if (!is_null(user)) {
        if (!json_is_string(user)) {
            rc = prov_refuse(why, "user", "'user' must be a string.");
            goto done;
        }
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", user));
    }
    if (call->stream) json_object_set_new(out, "stream", json_true());

    /* the body, then the fields OpenAI does not define, as the client wrote them */
    if (prov_put_json(b, out) != 0) {
        rc = -1;
        goto done;
    }
    b->len--; /* reopen the object */
    for (size_t i = 0; i < call->nmembers && i < PROV_MAX_MEMBERS; i++) {
        const jscan_member *m = &call->members[i];
        if (is_known(m->key)) continue;
        char key[128];
        ms_str quoted = {m->key.p - 1, m->key.n + 2};
        if (jscan_string(quoted, key, sizeof key) >= 0 && json_object_get(out, key)) {
            /* a name this body already has: two values, and parsers differ on which wins */
            rc = prov_refuse(
                why, NULL,
                "The field '%.64s' clashes with one the gateway writes for this provider "
                "(Anthropic); give it the OpenAI way.",
                key);
            goto done;
        }
        rc = buf_appends(b, ",");
        rc |= buf_append(b, call->body.p + m->start, m->end - m->start);
        if (rc) {
            rc = -1;
            goto done;
        }
    }
    if (buf_appends(b, "}") != 0) rc = -1;
done:
    if (!jarena_holds_all()) { /* else the scope's end frees them (common/jarena.h) */
        json_decref(c.system);
        json_decref(c.msgs);
        json_decref(out);
    }
    return rc;
}

/* A header line from a client header's value (a view), bounded. */
static int client_header(prov_upreq *u, const char *name, ms_str v)
{
    char val[1024];
    if (v.n >= sizeof val) return -1; /* the header block's own limit keeps it far below */
    memcpy(val, v.p, v.n);
    val[v.n] = '\0';
    return prov_add_header(u, name, val);
}

/* A client of the Messages API: its own bytes go through, only `model` spliced (the deployment's
 * name), with its anthropic-version and anthropic-beta, so every Anthropic feature works, present
 * and future: thinking with its signatures, cache_control, server tools, citations. stream: the
 * answer is asked for as a stream (never for count_tokens, whose answer is one object). */
static int passthrough_request(const prov_call *call, prov_upreq *u, int stream)
{
    int rc = client_header(u, "anthropic-version: ",
                           call->anthropic_version.n ? call->anthropic_version
                                                     : MS_STR_LIT(ANT_VERSION));
    if (!rc && call->anthropic_beta.n)
        rc = client_header(u, "anthropic-beta: ", call->anthropic_beta);
    rc |= prov_add_header(u, "content-type: ", "application/json");
    if (stream) rc |= prov_add_header(u, "accept: ", "text/event-stream");
    return rc ? -1 : prov_splice_model(call, u);
}

/* {base_url}{path} into u->url, and the provider's key in x-api-key (Messages: never in
 * Authorization). Returns 0, or -1 (a URL too long for the array, or memory). */
static int ant_endpoint(const cfg_provider *prov, const char *path, prov_upreq *u)
{
    /* the limit is below the array, so a URL too long is refused */
    buf_t url;
    buf_init_with(&url, u->url, sizeof u->url, sizeof u->url - 1);
    int rc = buf_appends(&url, prov->base_url) | buf_appends(&url, path);
    if (rc || !url.borrowed) {
        buf_free(&url);
        return -1;
    }
    u->url[url.len] = '\0';
    if (prov->api_key && prov->api_key[0] && prov_add_header(u, "x-api-key: ", prov->api_key))
        return -1;
    return 0;
}

/* The request translated into u->scratch. */
/* ---- the usual request, token by token ---- */

/* Most chat requests are messages of text and a few sampling fields: for those the tree (parse,
 * build, write: ~28,000 instructions a 1 KB request) is replaced by one walk over the client's
 * tokens (round 26, docs/PERFORMANCE.md), writing what build_body writes for them, byte for
 * byte (test_anthropic's and fuzz_adapters' comparisons, anthropic_build_fast off): the same
 * members in the same order, a turn of one text as a string (simplify_contents) and of several
 * as text blocks, the fields OpenAI does not define appended as the client wrote them. Anything
 * else (content parts, tools, a tool message, reasoning, stop, a null, a name given twice or
 * escaped, a temperature out of Anthropic's range, a name the body writes itself) gives 0 and
 * takes the tree path, which also writes every refusal. */
int anthropic_build_fast = 1;

#define AB_MAX_MSGS 256 /* messages read before writing (a turn's blocks are counted first) */

enum {
    AB_MODEL,
    AB_MESSAGES,
    AB_STREAM,
    AB_MAX_TOKENS,
    AB_MAX_COMPL,
    AB_TEMPERATURE,
    AB_TOP_P,
    AB_USER,
    AB_NKEYS
};
static const jscan_key ab_keys[AB_NKEYS] = {JSCAN_KEY("model"),
                                            JSCAN_KEY("messages"),
                                            JSCAN_KEY("stream"),
                                            JSCAN_KEY("max_tokens"),
                                            JSCAN_KEY("max_completion_tokens"),
                                            JSCAN_KEY("temperature"),
                                            JSCAN_KEY("top_p"),
                                            JSCAN_KEY("user")};

typedef struct ab_msg {
    ms_str content; /* a string token, not "" */
    char role;      /* 's' system or developer, 'u' user, 'a' assistant */
} ab_msg;

/* A name outside ab_keys: 0 ignored (F_IGNORED: read by no one), 1 passed through as written,
 * -1 for the tree (any other field it reads, and the names the body writes itself, which the
 * tree refuses or handles beside its own). */
static int ab_other(ms_str key)
{
    static const char *const own[] = {"system",   "metadata", "stop_sequences",
                                      "thinking", "tools",    "tool_choice"};
    for (size_t i = 0; i < sizeof known_fields / sizeof *known_fields; i++) {
        const char *k = known_fields[i].name;
        if (key.n == strlen(k) && memcmp(key.p, k, key.n) == 0)
            return known_fields[i].what == F_IGNORED ? 0 : -1;
    }
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (key.n == strlen(own[i]) && memcmp(key.p, own[i], key.n) == 0) return -1;
    return 1;
}

/* The top-level members into m[]: 1, or 0 for the tree. */
static int ab_members(const prov_call *call, const jscan_member **m)
{
    if (!prov_body_valid(call) || call->nmembers == 0 || call->nmembers >= PROV_MAX_MEMBERS)
        return 0;
    for (size_t i = 0; i < AB_NKEYS; i++)
        m[i] = NULL;
    for (size_t i = 0; i < call->nmembers; i++) {
        const jscan_member *x = &call->members[i];
        if (!x->key_plain || x->type == JS_NULL) return 0;
        size_t k = jscan_key_index(x->key, ab_keys, AB_NKEYS);
        /* the messages are walked once, by ab_messages: what it takes (objects of string
         * members with plain names) a tree always holds */
        if (k != AB_MESSAGES && !jtree_holds(x->value)) return 0;
        if (k < AB_NKEYS) {
            if (m[k]) return 0;
            m[k] = x;
        } else if (ab_other(x->key) < 0) {
            return 0;
        }
    }
    if (!m[AB_MESSAGES] || m[AB_MESSAGES]->type != JS_ARRAY ||
        (m[AB_USER] && m[AB_USER]->type != JS_STRING))
        return 0;
    for (int k = AB_TEMPERATURE; k <= AB_TOP_P; k++) {
        int64_t x;
        double d;
        if (!m[k]) continue;
        int kind = m[k]->type == JS_NUMBER ? jtree_number_kind(m[k]->value, &x) : 0;
        if (kind == 1)
            d = (double)x;
        else if (kind != 2 || jscan_double(m[k]->value, &d) != 0)
            return 0;
        if (d < 0 || d > 1) return 0; /* Anthropic's range: the tree's refusal */
    }
    return 1;
}

/* The messages, those with text, into msgs: their count, or -1 for the tree. */
static int ab_messages(ms_str arr, ab_msg *msgs)
{
    jscan_iter it, mi;
    jscan_member x;
    ms_str v;
    jscan_type t;
    int got, n = 0;
    if (jscan_iter_start(&it, arr) != 0) return -1;
    while ((got = jscan_iter_value(&it, &v, &t)) == 1) {
        ms_str role = {0}, content = {0};
        int g;
        if (t != JS_OBJECT || jscan_iter_start(&mi, v) != 0) return -1;
        while ((g = jscan_iter_member(&mi, &x)) == 1) {
            if (!x.key_plain || x.type != JS_STRING) return -1;
            if (x.key.n == 4 && memcmp(x.key.p, "role", 4) == 0 && !role.p)
                role = x.value;
            else if (x.key.n == 7 && memcmp(x.key.p, "content", 7) == 0 && !content.p)
                content = x.value;
            else
                return -1;
        }
        if (g < 0 || !role.p || !content.p) return -1;
        char r = ms_str_eq(role, "\"user\"")                                         ? 'u'
                 : ms_str_eq(role, "\"assistant\"")                                  ? 'a'
                 : ms_str_eq(role, "\"system\"") || ms_str_eq(role, "\"developer\"") ? 's'
                                                                                     : 0;
        if (!r) return -1;
        if (content.n == 2) continue; /* "": no block (add_turn), no turn */
        if (n == AB_MAX_MSGS) return -1;
        msgs[n++] = (ab_msg){content, r};
    }
    return got < 0 ? -1 : n;
}

static int ab_text_block(buf_t *b, ms_str text, int first)
{
    return buf_appends(b,
                       first ? "{\"type\":\"text\",\"text\":" : ",{\"type\":\"text\",\"text\":") |
           prov_put_token_str(b, text) | buf_appends(b, "}");
}

/* The turns: consecutive messages of a role are one turn, its content a string when it holds
 * one text, else text blocks. */
static int ab_turns(buf_t *b, const ab_msg *msgs, int n)
{
    int rc = buf_appends(b, ",\"messages\":["), first = 1;
    for (int i = 0; i < n;) {
        if (msgs[i].role == 's') {
            i++;
            continue;
        }
        int j = i + 1;
        while (j < n && (msgs[j].role == msgs[i].role || msgs[j].role == 's'))
            j++;
        rc |= buf_appends(b, first ? "{\"role\":" : ",{\"role\":");
        rc |= buf_appends(b, msgs[i].role == 'u' ? "\"user\",\"content\":"
                                                 : "\"assistant\",\"content\":");
        first = 0;
        int blocks = 0;
        for (int k = i; k < j; k++)
            blocks += msgs[k].role != 's';
        if (blocks == 1) {
            rc |= prov_put_token_str(b, msgs[i].content);
        } else {
            rc |= buf_appends(b, "[");
            for (int k = i, f = 1; k < j; k++) {
                if (msgs[k].role == 's') continue;
                rc |= ab_text_block(b, msgs[k].content, f);
                f = 0;
            }
            rc |= buf_appends(b, "]");
        }
        rc |= buf_appends(b, "}");
        i = j;
    }
    return rc | buf_appends(b, "]");
}

/* The usual request written into u->scratch (initialized): 1, 0 when it is not one (scratch
 * emptied), -1 out of memory. */
static int ab_build(const prov_call *call, prov_upreq *u)
{
    const jscan_member *m[AB_NKEYS];
    ab_msg msgs[AB_MAX_MSGS]; /* 6 KB: a worker's stack has room; the heap cost a call */
    buf_t *b = &u->scratch;
    if (!anthropic_build_fast || !ab_members(call, m)) return 0;
    int n = ab_messages(m[AB_MESSAGES]->value, msgs), turns = 0, nsys = 0;
    for (int i = 0; i < n; i++) {
        turns += msgs[i].role != 's';
        nsys += msgs[i].role == 's';
    }
    if (n < 0 || turns == 0) return 0; /* no turn: Anthropic's refusal, as the tree sends it */
    int64_t max_tokens = call->output_bound > 0
                             ? call->output_bound
                             : price_output_bound(NULL, call->model, call->max_tokens);
    int rc = buf_appends(b, "{\"model\":");
    rc |= prov_put_jstr(b, call->dep->model, strlen(call->dep->model));
    rc |= buf_appends(b, ",\"max_tokens\":") | buf_append_dec(b, max_tokens);
    if (nsys) {
        rc |= buf_appends(b, ",\"system\":[");
        for (int i = 0, f = 1; i < n; i++) {
            if (msgs[i].role != 's') continue;
            rc |= ab_text_block(b, msgs[i].content, f);
            f = 0;
        }
        rc |= buf_appends(b, "]");
    }
    rc |= ab_turns(b, msgs, n);
    static const char *const names[] = {",\"temperature\":", ",\"top_p\":"};
    for (int k = AB_TEMPERATURE; k <= AB_TOP_P; k++) {
        if (!m[k]) continue;
        rc |= buf_appends(b, names[k - AB_TEMPERATURE]);
        if (prov_put_token_num(b, m[k]->value) != 0) rc = -1; /* held: ab_members checked */
    }
    if (m[AB_USER])
        rc |= buf_appends(b, ",\"metadata\":{\"user_id\":") |
              prov_put_token_str(b, m[AB_USER]->value) | buf_appends(b, "}");
    if (call->stream) rc |= buf_appends(b, ",\"stream\":true");
    for (size_t i = 0; i < call->nmembers; i++) {
        const jscan_member *x = &call->members[i];
        size_t k = 0;
        while (k < AB_NKEYS && m[k] != x)
            k++;
        if (k < AB_NKEYS || ab_other(x->key) != 1) continue;
        rc |= buf_appends(b, ",") | buf_append(b, call->body.p + x->start, x->end - x->start);
    }
    rc |= buf_appends(b, "}");
    return rc ? -1 : 1;
}

static int translated_body(const prov_call *call, prov_upreq *u, prov_refusal *why)
{
    json_error_t jerr;
    json_t *req = prov_body_valid(call)
                      ? jtree_load_valid(call->body.p, call->body.n, &jerr)
                      : jtree_load(call->body.p, call->body.n, &jerr); /* jtree.h: why */
    if (!json_is_object(req)) {
        /* the gateway accepted it, but jansson cannot hold it (an integer beyond 64 bits) */
        json_decref(req);
        prov_refuse(why, NULL,
                    "The request cannot be translated for this provider (Anthropic): %s.",
                    jerr.text);
        why->code = "invalid_json";
        return -2;
    }
    int rc = build_body(call, req, why, &u->scratch); /* scratch: ant_build's */
    if (!jarena_holds_all()) json_decref(req);        /* else the scope's end frees it (jarena.h) */
    return rc;
}

static int ant_build(const prov_call *call, void *st, prov_upreq *u, prov_refusal *why)
{
    const cfg_provider *prov = call->dep->provider;
    if (call->ep != EP_CHAT)
        return prov_refuse(why, "model",
                           "The model '%.64s' is served by Anthropic, which has no embeddings API.",
                           call->model->name);
    if (ant_endpoint(prov, "/v1/messages", u)) return -1;
    if (call->dialect && call->dialect->api == WIRE_ANTHROPIC_MESSAGES)
        return passthrough_request(call, u, call->stream);
    /* translated: the API version pinned */
    if (prov_add_header(u, "anthropic-version: ", ANT_VERSION) ||
        prov_add_header(u, "content-type: ", "application/json"))
        return -1;
    if (call->stream && prov_add_header(u, "accept: ", "text/event-stream")) return -1;

    /* the translation is about the size of the body: bounded by a multiple of it */
    buf_init(&u->scratch, 4 * call->body.n + (1u << 20));
    int rc = ab_build(call, u);
    if (rc < 0) return -1;
    if (rc == 1 && st) ((ant_state *)st)->request_written = 1;
    if (rc == 0) {
        buf_reset(&u->scratch);
        /* the request's tree lives and dies here: a scope of its own (common/jarena.h) */
        int scope = jarena_begin();
        rc = translated_body(call, u, why);
        jarena_end(scope);
        if (rc) return rc;
    }
    u->iov[0] = (up_iov){u->scratch.data, u->scratch.len};
    u->niov = 1;
    return 0;
}

/* POST /v1/messages/count_tokens for a client of the Messages API (Token counting:
 * https://docs.claude.com/en/docs/build-with-claude/token-counting): the client's body with
 * `model` spliced, its anthropic-version and anthropic-beta, as a pass-through of /v1/messages. */
static int ant_build_count(const prov_call *call, prov_upreq *u)
{
    if (ant_endpoint(call->dep->provider, "/v1/messages/count_tokens", u)) return -1;
    return passthrough_request(call, u, 0);
}

/* ---- answers ---- */

static void usage_counts_of(const ant_usage *a, usage_counts *u)
{
    *u = (usage_counts){0};
    u->input = a->input;
    u->cached_input = a->cache_read;
    /* Prompt caching: cache_creation splits the written tokens by lifetime; without it,
     * cache_creation_input_tokens are 5-minute writes. Tokens the split leaves out count as
     * 5-minute ones, so none is lost. */
    if (a->has_breakdown) {
        u->cache_write = a->w5m;
        u->cache_write_1h = a->w1h;
        if (a->cache_create > a->w5m + a->w1h) u->cache_write += a->cache_create - a->w5m - a->w1h;
    } else {
        u->cache_write = a->cache_create;
    }
    u->output = a->output;
    u->reasoning = 0; /* Anthropic counts thinking in output_tokens without a separate count */
}

static ev_finish finish_of(const char *r)
{
    /* Messages, stop_reason */
    if (!r) return EV_FINISH_STOP;
    if (strcmp(r, "max_tokens") == 0 || strcmp(r, "model_context_window_exceeded") == 0)
        return EV_FINISH_LENGTH;
    if (strcmp(r, "tool_use") == 0) return EV_FINISH_TOOL_CALLS;
    if (strcmp(r, "refusal") == 0) return EV_FINISH_CONTENT_FILTER;
    return EV_FINISH_STOP; /* end_turn, stop_sequence, pause_turn */
}

static int64_t jint(json_t *o, const char *k, int *seen)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) return 0;
    *seen = 1;
    return json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

static void read_usage_json(json_t *uo, ant_usage *a)
{
    int seen = 0;
    a->input = jint(uo, "input_tokens", &seen);
    a->cache_read = jint(uo, "cache_read_input_tokens", &seen);
    a->cache_create = jint(uo, "cache_creation_input_tokens", &seen);
    a->output = jint(uo, "output_tokens", &seen);
    json_t *cc = json_object_get(uo, "cache_creation");
    if (json_is_object(cc)) {
        int b = 0;
        a->w5m = jint(cc, "ephemeral_5m_input_tokens", &b);
        a->w1h = jint(cc, "ephemeral_1h_input_tokens", &b);
        a->has_breakdown = b;
    }
    a->any = seen;
}

static int emit(const ev_sink *sink, ev_event ev)
{
    return ev_emit(sink, &ev);
}

/* ---- the usual answer, scanned ---- */

/* Most answers to an OpenAI client are a message of text blocks: for those the tree (~31,000
 * instructions a 1 KB request's answer, the validating parse and its tree) is replaced by one
 * scan (jscan) and a look at the few members read (round 26, docs/PERFORMANCE.md). The events
 * are the tree path's, in the same order; anything else (a tool_use or thinking block, a block
 * with other members, a name given twice, a member the tree would refuse to hold) gives 0 and
 * the tree reads it. test_anthropic and fuzz_adapters compare the two (anthropic_dec_answer_fast
 * off). */
int anthropic_dec_answer_fast = 1;

#define AF_MAX_MEMBERS 24 /* a message's, a block's or usage's; more: the tree */

/* A string member's text (escapes decoded into st->dec when it has any): 1, 0 for the tree. */
static int af_text(ant_state *st, ms_str v, ms_str *out, int *plain)
{
    ms_str in = {v.p + 1, v.n - 2};
    *plain = !memchr(in.p, '\\', in.n);
    if (*plain) {
        *out = in;
        return 1;
    }
    buf_reset(&st->dec);
    if (buf_reserve(&st->dec, v.n) != 0) return 0;
    long n = jscan_string(v, st->dec.data, v.n);
    if (n < 0) return 0;
    *out = (ms_str){st->dec.data, (size_t)n};
    return 1;
}

/* An object's members when none is named twice and the tree would hold every one: their count,
 * or -1 for the tree. */
static int af_members(ms_str obj, jscan_member *m)
{
    int n = jscan_members_valid(obj, m, AF_MAX_MEMBERS);
    if (n < 0 || n == AF_MAX_MEMBERS) return -1;
    for (int i = 0; i < n; i++) {
        if (!m[i].key_plain) return -1;
        for (int j = 0; j < i; j++)
            if (m[j].key.n == m[i].key.n && memcmp(m[j].key.p, m[i].key.p, m[i].key.n) == 0)
                return -1;
    }
    return n;
}

static const jscan_member *af_find(const jscan_member *m, int n, const char *k)
{
    size_t kn = strlen(k);
    for (int i = 0; i < n; i++)
        if (m[i].key.n == kn && memcmp(m[i].key.p, k, kn) == 0) return &m[i];
    return NULL;
}

/* jint's rule on a scanned member: an integer the tree holds counts (0 when not positive). */
static int64_t af_int(const jscan_member *x, int *seen)
{
    int64_t v;
    if (!x || x->type != JS_NUMBER || jtree_number_kind(x->value, &v) != 1) return 0;
    *seen = 1;
    return v > 0 ? v : 0;
}

/* read_usage_json on a scanned usage object: 1, 0 for the tree. */
static int af_usage(ms_str obj, ant_usage *a)
{
    jscan_member m[AF_MAX_MEMBERS], c[AF_MAX_MEMBERS];
    int n = af_members(obj, m), seen = 0;
    if (n < 0) return 0;
    for (int i = 0; i < n; i++)
        if (!jtree_holds(m[i].value)) return 0;
    a->input = af_int(af_find(m, n, "input_tokens"), &seen);
    a->cache_read = af_int(af_find(m, n, "cache_read_input_tokens"), &seen);
    a->cache_create = af_int(af_find(m, n, "cache_creation_input_tokens"), &seen);
    a->output = af_int(af_find(m, n, "output_tokens"), &seen);
    const jscan_member *cc = af_find(m, n, "cache_creation");
    if (cc && cc->type == JS_OBJECT) {
        int k = af_members(cc->value, c), b = 0;
        if (k < 0) return 0;
        a->w5m = af_int(af_find(c, k, "ephemeral_5m_input_tokens"), &b);
        a->w1h = af_int(af_find(c, k, "ephemeral_1h_input_tokens"), &b);
        a->has_breakdown = b;
    }
    a->any = seen;
    return 1;
}

/* The content array: 1 when every block is a text block ({type, text} and nothing else), 0 for
 * the tree. */
static int af_blocks_usual(const ant_state *st, ms_str arr)
{
    jscan_iter it;
    ms_str v;
    jscan_type t;
    jscan_member m[AF_MAX_MEMBERS];
    int got;
    if (jscan_iter_start(&it, arr) != 0) return 0;
    while ((got = jscan_iter_value(&it, &v, &t)) == 1) {
        if (t != JS_OBJECT || af_members(v, m) != 2) return 0;
        const jscan_member *ty = af_find(m, 2, "type"), *tx = af_find(m, 2, "text");
        if (!ty || !tx || tx->type != JS_STRING || !ms_str_eq(ty->value, "\"text\"")) return 0;
        /* an escaped text decodes into the state's buffer: one past its cap is the tree's */
        if (st->dec.limit && tx->value.n > st->dec.limit && memchr(tx->value.p, '\\', tx->value.n))
            return 0;
    }
    return got == 0;
}

/* The usual answer's events: 1 sent (rc their outcome), 0 for the tree. */
static int af_answer(ant_state *st, ms_str body, const ev_sink *sink, prov_usage *usage, int *rc)
{
    jscan_member m[AF_MAX_MEMBERS];
    int n = jscan_object(body.p, body.n, m, AF_MAX_MEMBERS, NULL);
    if (n < 0 || n == AF_MAX_MEMBERS) return 0;
    for (int i = 0; i < n; i++) {
        if (!m[i].key_plain) return 0;
        for (int j = 0; j < i; j++)
            if (m[j].key.n == m[i].key.n && memcmp(m[j].key.p, m[i].key.p, m[i].key.n) == 0)
                return 0;
    }
    const jscan_member *id = af_find(m, n, "id"), *content = af_find(m, n, "content");
    const jscan_member *sr = af_find(m, n, "stop_reason"), *uo = af_find(m, n, "usage");
    if (!content || content->type != JS_ARRAY || !af_blocks_usual(st, content->value)) return 0;
    if (id && id->type == JS_STRING && memchr(id->value.p, '\\', id->value.n)) return 0;
    if (sr && sr->type == JS_STRING && memchr(sr->value.p, '\\', sr->value.n)) return 0;
    for (int i = 0; i < n; i++) /* what is not read must be what the tree would hold */
        if (&m[i] != content && &m[i] != uo && !jtree_holds(m[i].value)) return 0;
    ant_usage a = {0};
    if (uo && uo->type == JS_OBJECT && !af_usage(uo->value, &a)) return 0;

    ev_event ev = {.type = EV_START};
    if (id && id->type == JS_STRING) ev.id = (ms_str){id->value.p + 1, id->value.n - 2};
    *rc = emit(sink, ev);
    jscan_iter it;
    ms_str v;
    jscan_type t;
    jscan_member b[2];
    jscan_iter_start(&it, content->value);
    while (!*rc && jscan_iter_value(&it, &v, &t) == 1) {
        int plain;
        ms_str text;
        jscan_members_valid(v, b, 2);
        const jscan_member *tx = af_find(b, 2, "text");
        if (!af_text(st, tx->value, &text, &plain)) {
            *rc = -1;
            break;
        }
        if (text.n) *rc = emit(sink, (ev_event){.type = EV_TEXT, .text = text, .plain = plain});
    }
    char reason[40] = "";
    if (sr && sr->type == JS_STRING && sr->value.n - 2 < sizeof reason) {
        memcpy(reason, sr->value.p + 1, sr->value.n - 2);
        reason[sr->value.n - 2] = '\0';
    }
    if (!*rc)
        *rc = emit(sink, (ev_event){.type = EV_FINISH,
                                    .finish = finish_of(
                                        sr && sr->type == JS_STRING
                                            ? (sr->value.n - 2 < sizeof reason ? reason : "")
                                            : NULL)});
    if (!*rc && a.any) {
        usage->known = 1;
        usage_counts_of(&a, &usage->u);
        *rc = emit(sink, (ev_event){.type = EV_USAGE, .usage = usage->u});
    }
    st->answer_scanned = 1;
    return 1;
}

static int ant_decode_answer(void *stv, const prov_call *call, ms_str body, const ev_sink *sink,
                             prov_usage *usage, char *err, size_t errlen)
{
    (void)call;
    int frc = 0;
    if (anthropic_dec_answer_fast && stv && af_answer(stv, body, sink, usage, &frc)) {
        if (frc && !err[0]) snprintf(err, errlen, "the gateway could not encode the answer");
        return frc ? -1 : 0;
    }
    json_error_t jerr;
    json_t *msg = jtree_load(body.p, body.n, &jerr);
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || !json_is_array(content)) {
        snprintf(err, errlen, "the provider's answer is not a message with a 'content' array");
        json_decref(msg);
        return -1;
    }
    int rc = 0, ntools = 0;
    json_t *id = json_object_get(msg, "id");
    ev_event ev = {.type = EV_START};
    if (json_is_string(id)) ev.id = (ms_str){json_string_value(id), json_string_length(id)};
    rc = emit(sink, ev);
    buf_t args;
    buf_init(&args, 0);
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        if (rc) break;
        const char *type = json_string_value(json_object_get(b, "type"));
        if (!type) continue;
        if (strcmp(type, "text") == 0 || strcmp(type, "thinking") == 0) {
            /* the thinking block's signature has no place in OpenAI's answer: dropped */
            int text = type[1] == 'e';
            json_t *t = json_object_get(b, text ? "text" : "thinking");
            if (json_is_string(t) && json_string_length(t))
                rc = emit(sink, (ev_event){.type = text ? EV_TEXT : EV_REASONING,
                                           .text = {json_string_value(t), json_string_length(t)}});
        } else if (strcmp(type, "tool_use") == 0) {
            json_t *tid = json_object_get(b, "id"), *name = json_object_get(b, "name");
            json_t *input = json_object_get(b, "input");
            if (!json_is_string(tid) || !json_is_string(name)) {
                snprintf(err, errlen, "the provider's answer has a tool_use block without id/name");
                rc = -1;
                break;
            }
            if (ntools == ANT_MAX_TOOLS) {
                snprintf(err, errlen, "the provider's answer has more than %d tool calls",
                         ANT_MAX_TOOLS);
                rc = -1;
                break;
            }
            buf_reset(&args);
            /* the input serialized compactly: OpenAI's arguments are a JSON text */
            if ((json_is_object(input) ? prov_put_json(&args, input) : buf_appends(&args, "{}")) !=
                0) {
                rc = -1;
                break;
            }
            ev = (ev_event){.type = EV_TOOL_START,
                            .index = ntools,
                            .id = {json_string_value(tid), json_string_length(tid)},
                            .name = {json_string_value(name), json_string_length(name)}};
            rc = emit(sink, ev);
            if (!rc)
                rc = emit(sink, (ev_event){.type = EV_TOOL_ARGS,
                                           .index = ntools,
                                           .text = {args.data, args.len}});
            ntools++;
        }
        /* redacted_thinking and server-tool blocks have nothing an OpenAI client can show */
    }
    buf_free(&args);
    if (!rc)
        rc = emit(sink, (ev_event){.type = EV_FINISH,
                                   .finish = finish_of(
                                       json_string_value(json_object_get(msg, "stop_reason")))});
    json_t *uo = json_object_get(msg, "usage");
    if (!rc && json_is_object(uo)) {
        ant_usage a = {0};
        read_usage_json(uo, &a);
        if (a.any) {
            usage->known = 1;
            usage_counts_of(&a, &usage->u);
            rc = emit(sink, (ev_event){.type = EV_USAGE, .usage = usage->u});
        }
    }
    json_decref(msg);
    if (rc && !err[0]) snprintf(err, errlen, "the gateway could not encode the answer");
    return rc ? -1 : 0;
}

/* ---- streams (named SSE events, Streaming) ---- */

/* The string value v decoded into the state's scratch; NULL if it is not a string. */
static const char *decode_str(ant_state *st, ms_str v, size_t *len)
{
    if (v.n < 2 || v.p[0] != '"') return NULL;
    buf_reset(&st->dec);
    if (buf_reserve(&st->dec, v.n) != 0) return NULL;
    long n = jscan_string(v, st->dec.data, st->dec.cap);
    if (n < 0) return NULL;
    *len = (size_t)n;
    return st->dec.data;
}

/* Whether the string value v is the literal s (Anthropic's type names have no escapes). */
static int str_is(const jscan_member *m, const char *s)
{
    size_t n = strlen(s);
    return m && m->type == JS_STRING && m->value.n == n + 2 && memcmp(m->value.p + 1, s, n) == 0;
}

static int64_t int_of(const jscan_member *m, int *seen)
{
    int64_t v = 0;
    if (!m || m->type != JS_NUMBER || jscan_int(m->value, &v) != 0) return 0;
    *seen = 1;
    return v > 0 ? v : 0;
}

/* A stream usage object merged into a: counts given replace what was known (message_delta's are
 * cumulative: the last one counts). */
static void merge_usage(ms_str obj, ant_usage *a)
{
    jscan_member m[16], d[8];
    int n = jscan_members_valid(obj, m, 16);
    if (n <= 0) return;
    static const jscan_key keys[] = {JSCAN_KEY("input_tokens"),
                                     JSCAN_KEY("cache_read_input_tokens"),
                                     JSCAN_KEY("cache_creation_input_tokens"),
                                     JSCAN_KEY("output_tokens"), JSCAN_KEY("cache_creation")};
    const jscan_member *f[5];
    jscan_pick(m, (size_t)(n > 16 ? 16 : n), keys, 5, f);
    int64_t *dst[4] = {&a->input, &a->cache_read, &a->cache_create, &a->output};
    for (int i = 0; i < 4; i++) {
        int seen = 0;
        int64_t v = int_of(f[i], &seen);
        if (seen) *dst[i] = v, a->any = 1;
    }
    if (f[4] && f[4]->type == JS_OBJECT) {
        int dn = jscan_members_valid(f[4]->value, d, 8);
        if (dn > 0) {
            static const jscan_key ck[] = {JSCAN_KEY("ephemeral_5m_input_tokens"),
                                           JSCAN_KEY("ephemeral_1h_input_tokens")};
            const jscan_member *g[2];
            jscan_pick(d, (size_t)(dn > 8 ? 8 : dn), ck, 2, g);
            int seen = 0;
            int64_t w5 = int_of(g[0], &seen), w1 = int_of(g[1], &seen);
            if (seen) a->w5m = w5, a->w1h = w1, a->has_breakdown = 1;
        }
    }
}

/* The members of the object member m, or -1. */
static int sub_members(const jscan_member *m, jscan_member *out, size_t max)
{
    if (!m || m->type != JS_OBJECT) return -1;
    int n = jscan_members_valid(m->value, out, max);
    return n < 0 ? -1 : (n > (int)max ? (int)max : n);
}

static int block_index(const jscan_member *m, char *err, size_t errlen)
{
    int64_t i = -1;
    if (!m || m->type != JS_NUMBER || jscan_int(m->value, &i) != 0 || i < 0) {
        snprintf(err, errlen, "the provider sent a content block event without a valid index");
        return -1;
    }
    if (i >= ANT_MAX_BLOCKS) {
        snprintf(err, errlen, "the provider's answer has more than %d content blocks",
                 ANT_MAX_BLOCKS);
        return -1;
    }
    return (int)i;
}

static int block_start(ant_state *st, const jscan_member *f_index, const jscan_member *f_block,
                       const ev_sink *sink, prov_usage *usage, char *err, size_t errlen)
{
    int idx = block_index(f_index, err, errlen);
    if (idx < 0) return -1;
    jscan_member b[16];
    int bn = sub_members(f_block, b, 16);
    if (bn < 0) {
        snprintf(err, errlen, "the provider sent a content_block_start without its block");
        return -1;
    }
    static const jscan_key keys[] = {JSCAN_KEY("type"), JSCAN_KEY("text"), JSCAN_KEY("thinking"),
                                     JSCAN_KEY("id"), JSCAN_KEY("name")};
    const jscan_member *f[5];
    jscan_pick(b, (size_t)bn, keys, 5, f);
    size_t len = 0;
    const char *s;
    if (str_is(f[0], "text") || str_is(f[0], "thinking")) {
        int text = str_is(f[0], "text");
        st->kind[idx] = text ? BLK_TEXT : BLK_THINKING;
        /* a block starts empty; should one start with text, it is not lost */
        const jscan_member *t = f[text ? 1 : 2];
        if (t && (s = decode_str(st, t->value, &len)) && len) {
            usage->streamed_bytes += (int64_t)len;
            return ev_emit(sink,
                           &(ev_event){.type = text ? EV_TEXT : EV_REASONING, .text = {s, len}});
        }
        return 0;
    }
    if (str_is(f[0], "tool_use")) {
        char id[512], name[512];
        if (!f[3] || !f[4] || jscan_string(f[3]->value, id, sizeof id) < 0 ||
            jscan_string(f[4]->value, name, sizeof name) < 0) {
            snprintf(err, errlen, "the provider sent a tool_use block without a valid id/name");
            return -1;
        }
        if (st->ntools == ANT_MAX_TOOLS) {
            snprintf(err, errlen, "the provider's answer has more than %d tool calls",
                     ANT_MAX_TOOLS);
            return -1;
        }
        st->kind[idx] = BLK_TOOL;
        st->tool[idx] = (short)st->ntools++;
        st->tool_args[idx] = 0;
        /* its input starts as {} and comes in input_json_delta pieces */
        return ev_emit(sink, &(ev_event){.type = EV_TOOL_START,
                                         .index = st->tool[idx],
                                         .id = ms_str_c(id),
                                         .name = ms_str_c(name)});
    }
    st->kind[idx] = BLK_OTHER; /* redacted_thinking, server tools: nothing to show */
    return 0;
}

static int block_delta(ant_state *st, const jscan_member *f_index, const jscan_member *f_delta,
                       const ev_sink *sink, prov_usage *usage, char *err, size_t errlen)
{
    int idx = block_index(f_index, err, errlen);
    if (idx < 0) return -1;
    jscan_member d[8];
    int dn = sub_members(f_delta, d, 8);
    if (dn < 0) {
        snprintf(err, errlen, "the provider sent a content_block_delta without its delta");
        return -1;
    }
    static const jscan_key keys[] = {JSCAN_KEY("type"), JSCAN_KEY("text"), JSCAN_KEY("thinking"),
                                     JSCAN_KEY("partial_json")};
    const jscan_member *f[4];
    jscan_pick(d, (size_t)dn, keys, 4, f);
    int which = str_is(f[0], "text_delta")         ? 1
                : str_is(f[0], "thinking_delta")   ? 2
                : str_is(f[0], "input_json_delta") ? 3
                                                   : 0;
    if (which == 0) return 0; /* signature_delta, citations_delta: nothing OpenAI shows */
    size_t len = 0;
    const char *s = f[which] ? decode_str(st, f[which]->value, &len) : NULL;
    if (!s) {
        snprintf(err, errlen, "the provider sent an invalid content_block_delta");
        return -1;
    }
    if (which != 3 && dn <= 8) {
        st->plain = f[which]->value;
        st->plain_kind = which == 1 ? EV_TEXT : EV_REASONING;
    }
    if (len == 0) return 0;
    usage->streamed_bytes += (int64_t)len;
    if (which == 3) {
        if (st->kind[idx] != BLK_TOOL) {
            snprintf(err, errlen, "the provider sent tool input for a block that is not a tool");
            return -1;
        }
        st->tool_args[idx] = 1;
        return ev_emit(sink,
                       &(ev_event){.type = EV_TOOL_ARGS, .index = st->tool[idx], .text = {s, len}});
    }
    return ev_emit(sink,
                   &(ev_event){.type = which == 1 ? EV_TEXT : EV_REASONING, .text = {s, len}});
}

static int ant_decode_full(void *stv, const prov_call *call, const sse_event *ev,
                           const ev_sink *sink, prov_usage *usage, int *done, int *error, char *err,
                           size_t errlen)
{
    ant_state *st = stv;
    (void)call;
    st->plain = (ms_str){NULL, 0};
    if (ev->data.n == 0) return 0; /* comments and keep-alives */
    jscan_member m[16];
    int n = jscan_object(ev->data.p, ev->data.n, m, 16, NULL);
    if (n < 0) {
        snprintf(err, errlen, "the provider sent an invalid stream event");
        return -1;
    }
    static const jscan_key keys[] = {
        JSCAN_KEY("type"),  JSCAN_KEY("message"), JSCAN_KEY("index"), JSCAN_KEY("content_block"),
        JSCAN_KEY("delta"), JSCAN_KEY("usage"),   JSCAN_KEY("error")};
    const jscan_member *f[7];
    jscan_pick(m, (size_t)(n > 16 ? 16 : n), keys, 7, f);
    const jscan_member *type = f[0];
    if (str_is(type, "content_block_delta")) {
        int rc = block_delta(st, f[2], f[4], sink, usage, err, errlen);
        if (n > 16) st->plain = (ms_str){NULL, 0}; /* members past the 16 listed: not plain */
        return rc ? -1 : 0;
    }
    if (str_is(type, "content_block_start"))
        return block_start(st, f[2], f[3], sink, usage, err, errlen) ? -1 : 0;
    if (str_is(type, "content_block_stop")) {
        int idx = block_index(f[2], err, errlen);
        if (idx < 0) return -1;
        /* a tool called without arguments still gets a JSON object an SDK can parse */
        if (st->kind[idx] == BLK_TOOL && !st->tool_args[idx]) {
            st->tool_args[idx] = 1;
            return ev_emit(sink, &(ev_event){.type = EV_TOOL_ARGS,
                                             .index = st->tool[idx],
                                             .text = MS_STR_LIT("{}")});
        }
        return 0;
    }
    if (str_is(type, "message_start")) {
        jscan_member mm[16];
        int mn = sub_members(f[1], mm, 16);
        if (mn < 0) {
            snprintf(err, errlen, "the provider sent a message_start without its message");
            return -1;
        }
        static const jscan_key mk[] = {JSCAN_KEY("id"), JSCAN_KEY("usage")};
        const jscan_member *g[2];
        jscan_pick(mm, (size_t)mn, mk, 2, g);
        /* input and cache counts are final here; output_tokens is a placeholder until
         * message_delta, so usage is only known (and billed as reported) from there on */
        if (g[1] && g[1]->type == JS_OBJECT) merge_usage(g[1]->value, &st->u);
        st->started = 1;
        size_t len = 0;
        const char *id = g[0] ? decode_str(st, g[0]->value, &len) : NULL;
        return ev_emit(sink, &(ev_event){.type = EV_START, .id = {id ? id : "", id ? len : 0}}) ? -1
                                                                                                : 0;
    }
    if (str_is(type, "message_delta")) {
        jscan_member d[8];
        int dn = sub_members(f[4], d, 8);
        if (dn > 0) {
            const jscan_member *sr = jscan_find(d, (size_t)dn, "stop_reason");
            if (sr && sr->type == JS_STRING) {
                size_t len = 0;
                const char *r = decode_str(st, sr->value, &len);
                if (ev_emit(sink, &(ev_event){.type = EV_FINISH, .finish = finish_of(r)}))
                    return -1;
            }
        }
        if (f[5] && f[5]->type == JS_OBJECT) {
            merge_usage(f[5]->value, &st->u);
            if (st->u.any) {
                usage->known = 1;
                usage_counts_of(&st->u, &usage->u);
                if (ev_emit(sink, &(ev_event){.type = EV_USAGE, .usage = usage->u})) return -1;
            }
        }
        return 0;
    }
    if (str_is(type, "message_stop")) {
        *done = 1;
        return 0;
    }
    if (str_is(type, "error") || ms_str_eq(ev->event, "error")) {
        /* Errors: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}} */
        *error = 1;
        jscan_member e[8];
        int en = sub_members(f[6], e, 8);
        const jscan_member *msg = en > 0 ? jscan_find(e, (size_t)en, "message") : NULL;
        if (!msg || jscan_string(msg->value, err, errlen) < 0)
            snprintf(err, errlen, "the provider reported an error in the stream");
        return 0;
    }
    return 0; /* ping, and event types added later (Streaming: handle unknown ones gracefully) */
}

/* The length of sh's text with a valid JSON string in its hole at the start of p[0..n) (p may go
 * on past it), or 0 when p does not start so (or sh is empty); *str is the string token. Shared by
 * the pass-through's shape (ant_stream_len) and the decoder's (dshape_event). */
static size_t shape_span(const ant_shape *sh, const char *p, size_t n, ms_str *str)
{
    size_t pre = sh->pre, post = sh->post, sl;
    if (!pre || n < pre + post + 2 || memcmp(p, sh->text, pre) != 0) return 0;
    if (!(sl = jscan_string_token(p + pre, n - pre - post)) ||
        memcmp(p + pre + sl, sh->text + pre, post) != 0)
        return 0;
    *str = (ms_str){p + pre, sl};
    return pre + sl + post;
}

/* 0: every event takes the full path. Only tests change it, to compare the two. */
int anthropic_dec_shapes = 1;

/*
 * The stream's shape, decoding. A translated stream's deltas differ only in their text, as a
 * passed-through one's do (see "The stream's shape" below): a plain text or thinking delta
 * (block_delta, every member looked at) leaves the data around its string, and a later
 * content_block_delta whose data is that text with another valid string in its place is the same
 * delta of the same block with that text. A memcmp and a string scan instead of the event's scan
 * and split (~2,900 instructions an event). An empty string takes the full path.
 */
static void dshape_learn(ant_shape *sh, ms_str data, ms_str str)
{
    size_t pre = (size_t)(str.p - data.p), post = data.n - pre - str.n;
    sh->pre = 0;
    if (pre + post > ANT_SHAPE_TEXT) return;
    /* data of several lines is joined with line breaks, which no event's bytes would have where
     * ant_decode_len looks for the shape */
    if (memchr(data.p, '\n', pre) || memchr(data.p, '\r', pre) ||
        memchr(str.p + str.n, '\n', post) || memchr(str.p + str.n, '\r', post))
        return;
    memcpy(sh->text, data.p, pre);
    memcpy(sh->text + pre, str.p + str.n, post);
    sh->post = (uint16_t)post;
    sh->pre = (uint16_t)pre;
}

/* The length of an event's data of the learned shape at the start of p[0..n) (p may go on past
 * it), its text decoded into *text; 0 when p does not start with one or the text is empty. */
static size_t dshape_text(ant_state *st, const char *p, size_t n, ms_str *text, int *plain)
{
    ms_str t = {NULL, 0};
    size_t len = 0, span = shape_span(&st->dshape, p, n, &t);
    if (!span || t.n <= 2) return 0;
    /* a valid string token with no escape is its text, with nothing JSON escapes */
    if ((*plain = !memchr(t.p + 1, '\\', t.n - 2))) {
        *text = (ms_str){t.p + 1, t.n - 2};
        return span;
    }
    const char *s = decode_str(st, t, &len);
    if (!s) return 0;
    *text = (ms_str){s, len};
    return span;
}

/* A delta of the shape: its one event, of text. 0, or -1 when it could not be encoded. */
static int dshape_emit(ant_state *st, ms_str text, int plain, const ev_sink *sink,
                       prov_usage *usage)
{
    st->dshape.hits++;
    st->plain = (ms_str){NULL, 0};
    usage->streamed_bytes += (int64_t)text.n;
    ev_event ev = {.type = (ev_type)st->dshape_kind, .plain = plain, .text = text};
    return ev_emit(sink, &ev) ? -1 : 0;
}

/* An event of the learned shape: its one event made (0, or -1 when it could not be encoded), or
 * 1 when it is not one. */
static int dshape_event(ant_state *st, ms_str d, const ev_sink *sink, prov_usage *usage)
{
    ms_str text;
    int plain;
    size_t len = dshape_text(st, d.p, d.n, &text, &plain);
    if (!len || len != d.n) return 1;
    return dshape_emit(st, text, plain, sink, usage);
}

/* prov_adapter.decode_len: a content_block_delta whose data is of the learned shape, framed as
 * Anthropic frames it (LF line ends): what the SSE parser would hand ant_decode_event. */
static size_t ant_decode_len(void *stv, const char *p, size_t n, const ev_sink *sink,
                             prov_usage *usage, int *failed)
{
    static const char head[] = "event: content_block_delta\ndata: ";
    const size_t hl = sizeof head - 1;
    ant_state *st = stv;
    ms_str text;
    int plain;
    if (!anthropic_dec_shapes || !st->dshape.pre || n < hl + 2 || memcmp(p, head, hl) != 0)
        return 0;
    size_t len = dshape_text(st, p + hl, n - hl, &text, &plain);
    if (!len || n - hl - len < 2 || p[hl + len] != '\n' || p[hl + len + 1] != '\n') return 0;
    *failed = dshape_emit(st, text, plain, sink, usage) != 0;
    return hl + len + 2;
}

/* The events a transfer's state decoded through its shape (tests; not in the header). */
int anthropic_request_written(const void *st);
int anthropic_request_written(const void *st)
{
    return ((const ant_state *)st)->request_written;
}
int anthropic_answer_scanned(const void *st);
int anthropic_answer_scanned(const void *st)
{
    return ((const ant_state *)st)->answer_scanned;
}
uint32_t anthropic_dec_shape_hits(const void *st);
uint32_t anthropic_dec_shape_hits(const void *st)
{
    return ((const ant_state *)st)->dshape.hits;
}

static int ant_decode_event(void *stv, const prov_call *call, const sse_event *ev,
                            const ev_sink *sink, prov_usage *usage, int *done, int *error,
                            char *err, size_t errlen)
{
    ant_state *st = stv;
    int delta = anthropic_dec_shapes && ms_str_eq(ev->event, "content_block_delta");
    if (delta && st->dshape.pre) {
        int rc = dshape_event(st, ev->data, sink, usage);
        if (rc <= 0) {
            if (rc < 0) snprintf(err, errlen, "the gateway could not encode the answer");
            return rc;
        }
    }
    int rc = ant_decode_full(stv, call, ev, sink, usage, done, error, err, errlen);
    if (rc == 0 && delta && st->plain.p && !*error) {
        dshape_learn(&st->dshape, ev->data, st->plain);
        st->dshape_kind = st->plain_kind;
    }
    return rc;
}

/* Errors: {"type":"error","error":{"type":…,"message":…}} -> the message. */
static void ant_error_message(ms_str body, char *out, size_t outlen)
{
    jscan_member m[16], e[16];
    int n = jscan_object(body.p, body.n, m, 16, NULL);
    if (n > 0) {
        const jscan_member *err = jscan_find(m, (size_t)(n > 16 ? 16 : n), "error");
        int en = sub_members(err, e, 16);
        const jscan_member *msg = en > 0 ? jscan_find(e, (size_t)en, "message") : NULL;
        if (msg && jscan_string(msg->value, out, outlen) >= 0) return;
        msg = jscan_find(m, (size_t)(n > 16 ? 16 : n), "message");
        if (msg && jscan_string(msg->value, out, outlen) >= 0) return;
    }
    /* not the envelope (a proxy's page): a short, printable excerpt */
    prov_excerpt(body, out, outlen);
}

/* ---- pass-through: a client of the Messages API to an Anthropic provider ---- */

static int ignore_event(void *ctx, const ev_event *ev)
{
    (void)ctx;
    (void)ev;
    return 0;
}

/* A whole answer goes to the client as it came: it must be valid JSON, an object with a
 * 'content' array, and only its usage is read. Scanned, not built as a tree: the decoder's tree
 * of a 1 KB answer cost ~28,000 instructions a request, as much as the rest of a chat request
 * (docs/PERFORMANCE.md, round 14); the client reads the blocks, as OpenAI's pass-through leaves
 * its choices to the client. */
static int ant_response(void *st, const prov_call *call, ms_str body, buf_t *client,
                        prov_usage *usage, char *err, size_t errlen)
{
    (void)st;
    (void)call;
    (void)client;
    jscan_member m[ANT_TOP_MEMBERS];
    int n = jscan_object(body.p, body.n, m, ANT_TOP_MEMBERS, NULL);
    size_t k = (size_t)(n > ANT_TOP_MEMBERS ? ANT_TOP_MEMBERS : n < 0 ? 0 : n);
    const jscan_member *content = n < 0 ? NULL : jscan_find(m, k, "content");
    if (!content || content->type != JS_ARRAY) {
        snprintf(err, errlen, "the provider's answer is not a message with a 'content' array");
        return -1;
    }
    const jscan_member *uo = jscan_find(m, k, "usage");
    if (uo && uo->type == JS_OBJECT) {
        ant_usage a = {0};
        merge_usage(uo->value, &a);
        if (a.any) {
            usage->known = 1;
            usage_counts_of(&a, &usage->u);
        }
    }
    return 0;
}

/*
 * The stream's shape. A text stream is mostly events that differ only in their text:
 *   event: content_block_delta
 *   data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"…"}}
 * A plain one (a text or thinking delta whose members were all looked at, framed with LF as
 * above) that the full path forwarded leaves its shape: the bytes before its string and after
 * it. A later event that is those bytes with another valid JSON string in its place parses
 * exactly as the first did (a string token for a string token changes no structure): valid, the
 * same block, the same kind of delta, nothing the gateway acts on but its text's size (decoded,
 * as the full path counts it). The engine then forwards a run of them past the SSE parser and
 * the decoder (prov_adapter.stream_len); anything else goes the full way, and a plain event
 * replaces the shape (a new block has a new index).
 */
static void shape_learn(ant_shape *sh, const sse_event *ev, ms_str str)
{
    static const char head[] = "event: content_block_delta\ndata: ";
    size_t hl = sizeof head - 1;
    sh->pre = 0;
    if (ev->raw.n != hl + ev->data.n + 2 || ev->data.p != ev->raw.p + hl ||
        memcmp(ev->raw.p, head, hl) != 0 || memcmp(ev->raw.p + ev->raw.n - 2, "\n\n", 2) != 0)
        return;
    size_t pre = (size_t)(str.p - ev->raw.p), post = ev->raw.n - pre - str.n;
    if (pre + post > ANT_SHAPE_TEXT) return;
    memcpy(sh->text, ev->raw.p, pre);
    memcpy(sh->text + pre, str.p + str.n, post);
    sh->post = (uint16_t)post;
    sh->pre = (uint16_t)pre;
}

/* prov_adapter.stream_len: an event of the learned shape at p[0..n), its whole length (0: not
 * one). Its text's decoded size is what the full path would add to streamed_bytes. */
static size_t ant_stream_len(void *stv, const char *p, size_t n, int64_t *text_bytes)
{
    ant_state *st = stv;
    ms_str t = {NULL, 0};
    size_t len = 0, span = shape_span(&st->shape, p, n, &t);
    *text_bytes = 0;
    if (!span || !decode_str(st, t, &len)) return 0;
    *text_bytes = (int64_t)len;
    st->shape.hits++;
    return span;
}

/* A stream's events go to the client as they came, named; the decoder reads usage, the end and
 * errors from them. message_delta (the final usage) is held back for the dialect, which adds the
 * gateway's cost to it and writes message_stop after it, as it does for translated streams; an
 * error event becomes the dialect's (the contract's code in Anthropic's envelope). */
static int ant_stream_event(void *st, const prov_call *call, const sse_event *ev, buf_t *out,
                            prov_usage *usage, int *done, int *error, int *usage_chunk, char *err,
                            size_t errlen)
{
    ev_sink none = {ignore_event, NULL};
    ant_state *as = st;
    if (ant_decode_full(st, call, ev, &none, usage, done, error, err, errlen) != 0) return -1;
    if (*error || *done) return 0;
    if (ms_str_eq(ev->event, "message_delta")) {
        *usage_chunk = 1;
        return buf_append(out, ev->data.p, ev->data.n) ? -1 : 0;
    }
    if (as->plain.p) shape_learn(&as->shape, ev, as->plain);
    return ev->data.n ? 2 : 0; /* keep-alive comments carry nothing */
}

const prov_adapter prov_anthropic = {
    .api = WIRE_ANTHROPIC_MESSAGES,
    .response = ant_response,
    .stream_event = ant_stream_event,
    .stream_len = ant_stream_len,
    .passthrough_state = 1,
    .state_size = sizeof(ant_state),
    .reset = ant_reset,
    .release = ant_release,
    .build = ant_build,
    .decode_answer = ant_decode_answer,
    .decode_event = ant_decode_event,
    .decode_len = ant_decode_len,
    .error_message = ant_error_message,
    .build_count = ant_build_count,
};
