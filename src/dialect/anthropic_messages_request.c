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
 * The rewrite is the reverse of the Anthropic adapter's build (providers/anthropic.c): jansson
 * reads the body (it is rebuilt anyway) and wire.h's writer emits it compactly in a fixed member
 * order. Its rule is the adapter's: nothing that changes the answer is silently dropped.
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
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/jtree.h"
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

/* -1 with *why filled: what the rewrite returns for a refusal. */
static int cannot(dialect_refusal *why, const char *param, const char *what)
{
    return INVALID(why, param,
                   "'%s' cannot be translated for this model's provider, which does not speak "
                   "Anthropic's API: %s.",
                   param, what);
}

/* A text block's text (a string), or NULL with *why filled. */
static json_t *block_text(json_t *block, const char *param, dialect_refusal *why)
{
    json_t *t = json_object_get(block, "text");
    if (!json_is_string(t)) INVALID(why, param, "A text block needs a 'text' string.");
    return json_is_string(t) ? t : NULL;
}

/* An image block (Vision) as an image_url part: a base64 source becomes a data: URL with its
 * media type, a url source its URL. */
static json_t *image_part(json_t *block, dialect_refusal *why)
{
    json_t *src = json_object_get(block, "source");
    const char *st = json_string_value(json_object_get(src, "type"));
    json_t *url = NULL;
    if (dialect_type_is(st, "base64")) {
        json_t *mt = json_object_get(src, "media_type"), *data = json_object_get(src, "data");
        if (!json_is_string(mt) || !json_is_string(data) || json_string_length(mt) == 0) {
            INVALID(why, "messages", "A base64 image source needs 'media_type' and 'data'.");
            return NULL;
        }
        buf_t u;
        buf_init(&u, 0);
        int rc = buf_appends(&u, "data:") |
                 buf_append(&u, json_string_value(mt), json_string_length(mt)) |
                 buf_appends(&u, ";base64,") |
                 buf_append(&u, json_string_value(data), json_string_length(data));
        /* the request's own strings (valid UTF-8) and ASCII: an image's megabytes of base64 need
         * no check a byte at a time */
        if (rc == 0) url = json_stringn_nocheck(u.data, u.len);
        buf_free(&u);
        if (!url) *why = (dialect_refusal){0}; /* memory */
    } else if (dialect_type_is(st, "url")) {
        url = json_object_get(src, "url");
        if (!json_is_string(url)) {
            INVALID(why, "messages", "A url image source needs a 'url' string.");
            return NULL;
        }
        json_incref(url);
    } else {
        cannot(why, "messages",
               "an image source must be base64 or url (files of Anthropic's Files API cannot be "
               "read by another provider)");
        return NULL;
    }
    return json_pack("{s:s, s:{s:o}}", "type", "image_url", "image_url", "url", url);
}

/* input (an object) as a JSON string of arguments, written as the rest of the body is. */
static json_t *arguments(json_t *input)
{
    buf_t a;
    buf_init(&a, 0);
    json_t *s = prov_put_json(&a, input) == 0 ? json_stringn(a.data, a.len) : NULL;
    buf_free(&a);
    return s;
}

/* A tool_result block as an OpenAI tool message: its text (a string, or the text blocks it
 * holds), with an error result said in the text, OpenAI having no flag for it. */
static json_t *tool_message(json_t *block, dialect_refusal *why)
{
    json_t *id = json_object_get(block, "tool_use_id");
    if (!json_is_string(id)) {
        INVALID(why, "messages", "A tool_result block needs a 'tool_use_id' string.");
        return NULL;
    }
    json_t *c = json_object_get(block, "content");
    json_t *content;
    if (dialect_is_null(c)) {
        content = json_string("");
    } else if (json_is_string(c)) {
        content = json_incref(c);
    } else if (json_is_array(c)) {
        json_t *parts = json_array();
        size_t i;
        json_t *b;
        json_array_foreach(c, i, b)
        {
            const char *type = json_string_value(json_object_get(b, "type"));
            json_t *t = dialect_type_is(type, "text") ? block_text(b, "messages", why) : NULL;
            if (!dialect_type_is(type, "text")) {
                json_decref(parts);
                cannot(why, "messages",
                       "a tool_result may only hold text here (an OpenAI tool message carries no "
                       "images or documents)");
                return NULL;
            }
            if (!t) {
                json_decref(parts);
                return NULL;
            }
            json_array_append_new(parts, dialect_text_part(t));
        }
        content = dialect_simplify(parts);
    } else {
        INVALID(why, "messages", "A tool_result's 'content' must be a string or an array.");
        return NULL;
    }
    json_t *err = json_object_get(block, "is_error");
    if (!dialect_is_null(err) && !json_is_boolean(err)) {
        json_decref(content);
        INVALID(why, "messages", "A tool_result's 'is_error' must be a boolean.");
        return NULL;
    }
    if (json_is_true(err)) {
        /* the model must still learn that the call failed */
        json_t *first =
            json_is_string(content) ? content : json_object_get(json_array_get(content, 0), "text");
        buf_t t;
        buf_init(&t, 0);
        int rc = buf_appends(&t, json_string_length(first) ? "Error: " : "Error") |
                 buf_append(&t, json_string_value(first), json_string_length(first));
        json_t *s = rc == 0 ? json_stringn_nocheck(t.data, t.len) : NULL; /* valid UTF-8 joined */
        buf_free(&t);
        if (!s) {
            json_decref(content);
            *why = (dialect_refusal){0};
            return NULL;
        }
        if (json_is_string(content)) {
            json_decref(content);
            content = s;
        } else {
            json_object_set_new(json_array_get(content, 0), "text", s);
        }
    }
    return jtree_obj(3, "role", json_string_nocheck("tool"), "tool_call_id", json_incref(id),
                     "content", content);
}

/* A user turn: tool_result blocks first, one tool message each (OpenAI wants them right after
 * the assistant's tool_calls); the rest (text, images) as a user message after them. */
static int user_turn(json_t *content, json_t *msgs, dialect_refusal *why)
{
    if (json_is_string(content)) {
        json_array_append_new(msgs, jtree_obj(2, "role", json_string_nocheck("user"), "content",
                                              json_incref(content)));
        return 0;
    }
    json_t *parts = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        json_t *x = NULL;
        if (dialect_type_is(type, "tool_result")) {
            /* Anthropic's own rule (tool use): results come first in their turn; after other
             * content they would land after a user message, where OpenAI refuses them */
            if (json_array_size(parts)) {
                json_decref(parts);
                return INVALID(why, "messages",
                               "tool_result blocks must come before any other content in a user "
                               "message.");
            }
            if (!(x = tool_message(b, why))) break;
            json_array_append_new(msgs, x);
            continue;
        }
        if (dialect_type_is(type, "text")) {
            json_t *t = block_text(b, "messages", why);
            x = t ? dialect_text_part(t) : NULL;
        } else if (dialect_type_is(type, "image")) {
            x = image_part(b, why);
        } else {
            char what[96];
            snprintf(what, sizeof what, "a user message cannot hold a '%.40s' block here",
                     type ? type : "(untyped)");
            cannot(why, "messages", what);
        }
        if (!x) break;
        json_array_append_new(parts, x);
    }
    if (i < json_array_size(content)) {
        json_decref(parts);
        return -1;
    }
    if (json_array_size(parts))
        json_array_append_new(msgs, jtree_obj(2, "role", json_string_nocheck("user"), "content",
                                              dialect_simplify(parts)));
    else
        json_decref(parts);
    return 0;
}

/* An assistant turn: text, and tool_use blocks as tool_calls; thinking blocks dropped (see the
 * file's opening comment). A turn left with nothing is not written. */
static int assistant_turn(json_t *content, json_t *msgs, dialect_refusal *why)
{
    if (json_is_string(content)) {
        json_array_append_new(msgs, jtree_obj(2, "role", json_string_nocheck("assistant"),
                                              "content", json_incref(content)));
        return 0;
    }
    json_t *parts = json_array(), *calls = json_array();
    size_t i;
    json_t *b;
    int rc = 0;
    json_array_foreach(content, i, b)
    {
        const char *type = json_string_value(json_object_get(b, "type"));
        if (dialect_type_is(type, "thinking") || dialect_type_is(type, "redacted_thinking"))
            continue;
        if (dialect_type_is(type, "text")) {
            json_t *t = block_text(b, "messages", why);
            if (!t) {
                rc = -1;
                break;
            }
            json_array_append_new(parts, dialect_text_part(t));
        } else if (dialect_type_is(type, "tool_use")) {
            json_t *id = json_object_get(b, "id"), *name = json_object_get(b, "name");
            json_t *input = json_object_get(b, "input");
            if (!json_is_string(id) || !json_is_string(name) || !json_is_object(input)) {
                rc = INVALID(why, "messages",
                             "A tool_use block needs an 'id', a 'name' and an 'input' object.");
                break;
            }
            json_t *args = arguments(input);
            if (!args) {
                *why = (dialect_refusal){0};
                rc = -1;
                break;
            }
            json_array_append_new(calls, json_pack("{s:O, s:s, s:{s:O, s:o}}", "id", id, "type",
                                                   "function", "function", "name", name,
                                                   "arguments", args));
        } else {
            char what[96];
            snprintf(what, sizeof what, "an assistant message cannot hold a '%.40s' block here",
                     type ? type : "(untyped)");
            rc = cannot(why, "messages", what);
            break;
        }
    }
    if (rc == 0 && (json_array_size(parts) || json_array_size(calls))) {
        json_t *m =
            jtree_obj(2, "role", json_string_nocheck("assistant"), "content",
                      json_array_size(parts) ? dialect_simplify(json_incref(parts)) : json_null());
        if (json_array_size(calls)) json_object_set(m, "tool_calls", calls);
        json_array_append_new(msgs, m);
    }
    json_decref(parts);
    json_decref(calls);
    return rc;
}

/* system (or a message of role system): a string or text blocks -> a message, role system. */
static int translate_system(json_t *system, json_t *msgs, dialect_refusal *why)
{
    if (dialect_is_null(system)) return 0;
    json_t *content;
    if (json_is_string(system)) {
        if (json_string_length(system) == 0) return 0;
        content = json_incref(system);
    } else if (json_is_array(system)) {
        json_t *parts = json_array();
        size_t i;
        json_t *b;
        json_array_foreach(system, i, b)
        {
            json_t *t = dialect_type_is(json_string_value(json_object_get(b, "type")), "text")
                            ? json_object_get(b, "text")
                            : NULL;
            if (!json_is_string(t)) {
                json_decref(parts);
                return INVALID(why, "system", "'system' must be a string or text blocks.");
            }
            json_array_append_new(parts, dialect_text_part(t));
        }
        if (json_array_size(parts) == 0) {
            json_decref(parts);
            return 0;
        }
        content = dialect_simplify(parts);
    } else {
        return INVALID(why, "system", "'system' must be a string or text blocks.");
    }
    json_array_append_new(msgs,
                          jtree_obj(2, "role", json_string_nocheck("system"), "content", content));
    return 0;
}

static int translate_messages(json_t *messages, json_t *msgs, dialect_refusal *why)
{
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        int sys = dialect_type_is(role, "system");
        if (!json_is_object(m) ||
            !(dialect_type_is(role, "user") || dialect_type_is(role, "assistant") || sys))
            return INVALID(why, "messages",
                           "Each message must be an object with role 'user', 'assistant' or "
                           "'system'.");
        if (!json_is_string(content) && !json_is_array(content))
            return INVALID(why, "messages",
                           "A message's 'content' must be a string or an array of blocks.");
        /* Claude Code puts system text among the messages too (a system turn between user
         * turns, text blocks only): it stays a system message, where it stood */
        int rc = sys                             ? translate_system(content, msgs, why)
                 : dialect_type_is(role, "user") ? user_turn(content, msgs, why)
                                                 : assistant_turn(content, msgs, why);
        if (rc) return rc;
    }
    return 0;
}

/* tools: client tools -> function tools; server tools refused. An empty list is left out
 * (OpenAI refuses one, and it offers nothing). */
static int translate_tools(json_t *tools, json_t *out, dialect_refusal *why)
{
    if (dialect_is_null(tools)) return 0;
    if (!json_is_array(tools)) return INVALID(why, "tools", "'tools' must be an array.");
    if (json_array_size(tools) == 0) return 0;
    json_t *list = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *type = json_object_get(t, "type");
        if (!dialect_is_null(type) && !dialect_type_is(json_string_value(type), "custom")) {
            json_decref(list);
            return cannot(why, "tools",
                          "server tools (web search, bash, text editor, code execution...) run "
                          "only at Anthropic; give client tools (name, input_schema)");
        }
        json_t *name = json_object_get(t, "name"), *d = json_object_get(t, "description");
        json_t *schema = json_object_get(t, "input_schema");
        if (!json_is_string(name) || !json_is_object(schema) ||
            (!dialect_is_null(d) && !json_is_string(d))) {
            json_decref(list);
            return INVALID(why, "tools",
                           "A tool needs a 'name', an 'input_schema' object and, if any, a "
                           "'description' string.");
        }
        json_t *fn = json_pack("{s:O}", "name", name);
        if (json_is_string(d)) json_object_set(fn, "description", d);
        json_object_set(fn, "parameters", schema);
        json_array_append_new(list, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    json_object_set_new(out, "tools", list);
    return 0;
}

/* tool_choice: auto -> auto, any -> required, tool -> the named function, none -> none;
 * disable_parallel_tool_use -> parallel_tool_calls false. Without tools OpenAI refuses both, and
 * auto or none then mean what no tool_choice means; forcing a tool that is not there is refused. */
static int translate_tool_choice(json_t *tc, json_t *out, dialect_refusal *why)
{
    if (dialect_is_null(tc)) return 0;
    const char *type = json_string_value(json_object_get(tc, "type"));
    json_t *dp = json_object_get(tc, "disable_parallel_tool_use");
    if (!json_is_object(tc) || !(dialect_type_is(type, "auto") || dialect_type_is(type, "any") ||
                                 dialect_type_is(type, "tool") || dialect_type_is(type, "none")))
        return INVALID(why, "tool_choice",
                       "'tool_choice' must be an object of type auto, any, tool or none.");
    if (!dialect_is_null(dp) && !json_is_boolean(dp))
        return INVALID(why, "tool_choice",
                       "'tool_choice.disable_parallel_tool_use' must be a boolean.");
    json_t *name = json_object_get(tc, "name");
    if (dialect_type_is(type, "tool") && !json_is_string(name))
        return INVALID(why, "tool_choice", "A tool_choice of type tool needs a 'name'.");
    int tools = json_object_get(out, "tools") != NULL;
    if (!tools) {
        if (dialect_type_is(type, "any") || dialect_type_is(type, "tool"))
            return INVALID(why, "tool_choice",
                           "'tool_choice' forces a tool, but no tools are given.");
        return 0;
    }
    json_t *choice =
        dialect_type_is(type, "auto")  ? json_string("auto")
        : dialect_type_is(type, "any") ? json_string("required")
        : dialect_type_is(type, "none")
            ? json_string("none")
            : json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name);
    json_object_set_new(out, "tool_choice", choice);
    if (json_is_true(dp) && !dialect_type_is(type, "none"))
        json_object_set_new(out, "parallel_tool_calls", json_false());
    return 0;
}

/* thinking -> reasoning_effort (NULL: none given). *rc = -1 when refused. */
static const char *thinking_effort(json_t *th, int *rc, dialect_refusal *why)
{
    if (dialect_is_null(th)) return NULL;
    const char *type = json_string_value(json_object_get(th, "type"));
    if (dialect_type_is(type, "disabled") || dialect_type_is(type, "adaptive")) return NULL;
    /* an integer, maybe written as 1e4 (a real to jansson) */
    json_t *b = json_object_get(th, "budget_tokens");
    double n = json_number_value(b);
    if (!dialect_type_is(type, "enabled") || !json_is_number(b) || !(n >= AREQ_BUDGET_MIN) ||
        (n < 1e15 && n != (double)(int64_t)n)) {
        *rc = INVALID(why, "thinking",
                      "'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": n} with n at "
                      "least %d, or of type disabled or adaptive.",
                      AREQ_BUDGET_MIN);
        return NULL;
    }
    return n < AREQ_MEDIUM_FROM ? "low" : n < AREQ_HIGH_FROM ? "medium" : "high";
}

/* output_config: effort low/medium/high -> reasoning_effort (it says how hard to think, as
 * OpenAI's does); anything else in it is refused. */
static int output_config(json_t *oc, const char **effort, dialect_refusal *why)
{
    if (dialect_is_null(oc)) return 0;
    if (!json_is_object(oc))
        return INVALID(why, "output_config", "'output_config' must be an object.");
    const char *k;
    json_t *v;
    json_object_foreach(oc, k, v)
    {
        if (strcmp(k, "effort") != 0) {
            char what[96];
            snprintf(what, sizeof what, "'%.40s' (structured outputs and the like)", k);
            return cannot(why, "output_config", what);
        }
        if (dialect_is_null(v)) continue;
        const char *e = json_string_value(v);
        if (!(dialect_type_is(e, "low") || dialect_type_is(e, "medium") ||
              dialect_type_is(e, "high")))
            return cannot(why, "output_config",
                          "its effort must be low, medium or high (OpenAI's reasoning_effort has "
                          "no 'max')");
        *effort = e;
    }
    return 0;
}

/* temperature, top_p: numbers from 0 to 1 as Anthropic takes them, copied (the same scale). */
static int unit_number(json_t *req, const char *name, json_t *out, dialect_refusal *why)
{
    json_t *v = json_object_get(req, name);
    if (dialect_is_null(v)) return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
        return INVALID(why, name, "'%s' must be a number from 0 to 1.", name);
    json_object_set(out, name, v);
    return 0;
}

/* Top-level fields: what the rewrite does with each (the opening comment says why). */
enum { K_MAPPED, K_DROPPED, K_REFUSED };
static const struct {
    const char *name;
    int what;
    const char *why; /* K_REFUSED */
} known[] = {
    {"model", K_MAPPED, NULL},
    {"messages", K_MAPPED, NULL},
    {"max_tokens", K_MAPPED, NULL},
    {"system", K_MAPPED, NULL},
    {"stop_sequences", K_MAPPED, NULL},
    {"stream", K_MAPPED, NULL},
    {"temperature", K_MAPPED, NULL},
    {"top_p", K_MAPPED, NULL},
    {"tools", K_MAPPED, NULL},
    {"tool_choice", K_MAPPED, NULL},
    {"thinking", K_MAPPED, NULL},
    {"output_config", K_MAPPED, NULL},
    {"metadata", K_MAPPED, NULL},
    {"service_tier", K_DROPPED, NULL},
    {"top_k", K_REFUSED, "OpenAI-shaped providers have no top-k sampling"},
    {"container", K_REFUSED, "containers are Anthropic's code execution state"},
    {"mcp_servers", K_REFUSED, "only Anthropic connects to MCP servers"},
    /* Claude Code sends it on every request. Context editing only ever removes old tool results
     * from what the model sees, near the context limit; without it the provider sees the whole
     * conversation, which it may answer from (or refuse as too long: a clear error, not a
     * silently different answer), so it is dropped rather than refused. */
    {"context_management", K_DROPPED, NULL},
    {"output_format", K_REFUSED, "structured outputs are not translated"},
};

/* The first top-level field that is refused (or unknown), if any. */
static int check_fields(json_t *req, dialect_refusal *why)
{
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof *known && strcmp(known[i].name, k) != 0)
            i++;
        if (i == sizeof known / sizeof *known) {
            /* the name is the client's: param must outlive req, so the message names it */
            return INVALID(why, NULL,
                           "The field '%.64s' is not supported for this model's provider, which "
                           "does not speak Anthropic's API.",
                           k);
        }
        if (known[i].what == K_REFUSED && !dialect_is_null(v))
            return cannot(why, known[i].name, known[i].why);
    }
    return 0;
}

static int build(const prov_call *call, json_t *req, json_t *out, dialect_refusal *why)
{
    int rc = check_fields(req, why);
    if (rc) return rc;
    json_t *model = json_object_get(req, "model");
    json_t *messages = json_object_get(req, "messages");
    /* max_tokens as parsed (jscan_int also takes 1e3, which jansson reads as a real) */
    if (!json_is_string(model) || !json_is_array(messages) || call->max_tokens < 1)
        return INVALID(why, NULL, "The request was not parsed as a Messages request.");
    json_object_set(out, "model", model);
    json_t *msgs = json_array();
    json_object_set_new(out, "messages", msgs);
    if ((rc = translate_system(json_object_get(req, "system"), msgs, why)) != 0) return rc;
    if ((rc = translate_messages(messages, msgs, why)) != 0) return rc;
    if (json_array_size(msgs) == 0)
        return INVALID(why, "messages", "'messages' has nothing left to send but reasoning.");
    json_object_set_new(out, "max_tokens", json_integer((json_int_t)call->max_tokens));

    json_t *stop = json_object_get(req, "stop_sequences");
    if (!dialect_is_null(stop)) {
        size_t i;
        json_t *s;
        if (!json_is_array(stop))
            return INVALID(why, "stop_sequences", "'stop_sequences' must be an array of strings.");
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s))
                return INVALID(why, "stop_sequences",
                               "'stop_sequences' must be an array of strings.");
        }
        if (json_array_size(stop)) json_object_set(out, "stop", stop);
    }
    if ((rc = unit_number(req, "temperature", out, why)) != 0) return rc;
    if ((rc = unit_number(req, "top_p", out, why)) != 0) return rc;
    if ((rc = translate_tools(json_object_get(req, "tools"), out, why)) != 0) return rc;
    if ((rc = translate_tool_choice(json_object_get(req, "tool_choice"), out, why)) != 0) return rc;
    const char *effort = thinking_effort(json_object_get(req, "thinking"), &rc, why);
    if (rc) return rc;
    if ((rc = output_config(json_object_get(req, "output_config"), &effort, why)) != 0) return rc;
    if (effort) json_object_set_new(out, "reasoning_effort", json_string(effort));
    json_t *md = json_object_get(req, "metadata");
    if (!dialect_is_null(md)) {
        json_t *user = json_object_get(md, "user_id");
        if (!json_is_object(md) || (!dialect_is_null(user) && !json_is_string(user)))
            return INVALID(why, "metadata", "'metadata' must be an object; its user_id a string.");
        if (json_is_string(user)) json_object_set(out, "user", user);
    }
    if (call->stream) {
        json_object_set_new(out, "stream", json_true());
        /* the gateway bills from the provider's usage, and Anthropic clients always get it */
        json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    return 0;
}

int dialect_anthropic_to_openai(const prov_call *call, buf_t *out, dialect_refusal *why)
{
    return dialect_hub_rewrite(call, out, why, build);
}
