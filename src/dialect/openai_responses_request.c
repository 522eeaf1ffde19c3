/*
 * The OpenAI Responses dialect's request side (responses_request.h): POST /v1/responses bodies
 * parsed into the gateway's request (prov_call), and rewritten as OpenAI chat completions bodies,
 * the hub format every adapter builds from. A provider that speaks the Responses API
 * (`responses: true`) gets the client's own bytes instead (providers/openai_responses.c); for
 * every other, this rewrite is what the request becomes: it must be lossless or refuse, and a
 * refusal is answered only when an attempt needs the rewrite (api/proxy.c, no_hub).
 *
 * Parsing follows dialect_anthropic_parse (anthropic_messages_request.c) rule for rule: one jscan
 * pass, the fields the gateway acts on (model, input, max_output_tokens, stream, store,
 * previous_response_id, background) picked with keys compared decoded and refused when given
 * twice, the model compared by length, refusals returned as values with the contract's codes.
 * Its few helpers are static there, so they are repeated here rather than exported from a file
 * another dialect owns.
 *
 * store and previous_response_id are read into dialect_responses_state for the gateway's own
 * store of responses (api/responses.c): a continuation is made whole (the stored conversation
 * spliced before its input, previous_response_id nulled) before it is parsed again and
 * rewritten, so the rewrite never sees one. What needs state the gateway does not keep is
 * refused: background (a response polled for later), conversation and item_reference items.
 *
 * The rewrite reads the body with jansson (it is rebuilt anyway) and wire.h's writer emits it
 * compactly in a fixed member order. Its rule is the Anthropic rewrite's: nothing that changes
 * the answer is silently dropped.
 *   Mapped: model, instructions (-> a first system message), input (a string -> one user
 *     message; message items of role user, assistant, system, developer with input_text,
 *     output_text and refusal parts -> text, input_image -> image_url parts; function_call items
 *     -> assistant tool_calls, consecutive calls and the assistant text before them in one
 *     message; function_call_output items -> tool messages), max_output_tokens -> max_tokens,
 *     temperature, top_p, tools (function tools, flat in Responses -> nested under function),
 *     tool_choice, parallel_tool_calls, text.format -> response_format, text.verbosity ->
 *     verbosity, reasoning.effort -> reasoning_effort, safety_identifier (or user) -> user,
 *     stream (+ stream_options.include_usage: Responses streams always end with usage, and the
 *     gateway bills from it).
 *   Dropped, because they do not change what the answer may be: reasoning items (the provider's
 *     own reasoning from an earlier turn, often encrypted for OpenAI alone; chat completions has
 *     no field to carry it back, and OpenAI does not carry reasoning between chat turns either),
 *     item ids and statuses, annotations and logprobs of earlier output_text, metadata (labels of
 *     the stored response, which the gateway does not keep), store and previous_response_id (see
 *     above), reasoning.summary (asks for a
 *     summary of reasoning; the answer is the same without it), include (extra output such as
 *     encrypted reasoning or logprobs, which the Responses encoder does not produce), truncation
 *     ("auto" only drops old items near the context limit: the provider sees the whole
 *     conversation instead, and a conversation too long is a clear error, not another answer),
 *     service_tier (capacity, not content), prompt_cache_key (a caching hint), max_tool_calls
 *     (bounds built-in tool calls, which are refused), stream_options (include_obfuscation pads
 *     stream events; the encoder decides that).
 *   Left out of what the provider is offered: built-in tools (web_search, file_search,
 *     code_interpreter, computer_use, image_generation, mcp, Codex's namespaces...: only OpenAI
 *     runs them; Codex offers web_search on every request, so refusing would make it unusable);
 *     the model answers without them, and forcing one with tool_choice is refused. Codex's
 *     client_metadata (session labels) is dropped.
 *   Passed into the hub body as they came: top-level fields this API does not define, as chat
 *     completions pass unknown fields to providers (the provider answers for them: OpenAI refuses
 *     what it does not know); one that clashes with a field the rewrite writes, or names one of
 *     the chat fields the gateway reads back from the hub body (max_tokens,
 *     max_completion_tokens, n, stream, stream_options, messages, model), is refused.
 *   Refused with a 400 naming the field: background, conversation, prompt
 *     (a stored prompt template), tool_choice forcing a built-in tool or allowed_tools,
 *     input_file parts, images held by file_id, images in assistant, system or developer turns
 *     (chat carries only text there), item types other than those mapped (built-in tool calls
 *     and their outputs, item_reference), top_logprobs (the encoder returns no log
 *     probabilities).
 */
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "dialect/hub.h"
#include "dialect/responses_request.h"
#include "providers/provider.h"
#include "providers/wire.h"

#define INVALID(why, param, ...) dialect_refuse(why, 400, "invalid_parameter", param, __VA_ARGS__)

/* ---- parse ---- */

enum {
    F_MODEL,
    F_INPUT,
    F_MAX_OUTPUT_TOKENS,
    F_STREAM,
    F_STORE,
    F_PREVIOUS,
    F_BACKGROUND,
    F_COUNT
};
static const jscan_key fields[F_COUNT] = {
    JSCAN_KEY("model"),     JSCAN_KEY("input"), JSCAN_KEY("max_output_tokens"),
    JSCAN_KEY("stream"),    JSCAN_KEY("store"), JSCAN_KEY("previous_response_id"),
    JSCAN_KEY("background")};

static int missing(dialect_refusal *why, const char *param)
{
    return dialect_refuse(why, 400, "missing_required_parameter", param,
                          "Missing required parameter: '%s'.", param);
}

/* A boolean member (null or absent: *out untouched). */
static int boolean(const jscan_member *m, const char *param, int *out, dialect_refusal *why)
{
    if (!m || m->type == JS_NULL) return 0;
    if (m->type != JS_TRUE && m->type != JS_FALSE)
        return INVALID(why, param, "'%s' must be a boolean.", param);
    *out = m->type == JS_TRUE;
    return 0;
}

/* previous_response_id into st: a string, decoded; an id that cannot be one the gateway keeps
 * leaves st->previous empty (not found, as any unknown id). */
static int previous_id(const jscan_member *m, dialect_responses_state *st, dialect_refusal *why)
{
    if (!m || m->type == JS_NULL) return 0;
    if (m->type != JS_STRING)
        return INVALID(why, "previous_response_id", "'previous_response_id' must be a string.");
    if (!st) return 0;
    st->has_previous = 1;
    st->previous_value = m->value;
    long n = jscan_string(m->value, st->previous, sizeof st->previous);
    for (long i = 0; n > 0 && i < n; i++) {
        char ch = st->previous[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            n = 0;
    }
    if (n <= 0) st->previous[0] = '\0';
    return 0;
}

int dialect_responses_parse(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                            dialect_responses_state *state, dialect_refusal *why)
{
    /* the members are written by the scan: the rest is zeroed (6 KB not touched) */
    ms_str b = call->body;
    char rid[sizeof call->request_id];
    memcpy(rid, call->request_id, sizeof rid);
    memset(call, 0, offsetof(prov_call, members));
    memcpy(call->request_id, rid, sizeof rid);
    call->body = b;
    call->ep = EP_CHAT;
    call->dialect = &dialect_openai_responses; /* the encoder: dialect/openai_responses.c */
    call->max_tokens = -1;
    call->client_include_usage = 1; /* Responses streams always end with usage */
    if (shown_len) shown[0] = '\0';

    const jscan_member *f[F_COUNT];
    if (dialect_scan(cfg, call, fields, F_COUNT, f, shown, shown_len, why) != 0) return -1;

    const jscan_member *in = f[F_INPUT];
    if (!in) return missing(why, "input");
    if (in->type != JS_STRING && in->type != JS_ARRAY)
        return INVALID(why, "input", "'input' must be a string or an array of input items.");
    if (in->type == JS_ARRAY && dialect_empty_array(in->value))
        return INVALID(why, "input", "'input' must contain at least one item.");
    const jscan_member *mt = f[F_MAX_OUTPUT_TOKENS];
    int64_t v;
    if (mt && mt->type != JS_NULL) {
        if (mt->type != JS_NUMBER || jscan_int(mt->value, &v) != 0 || v < 1)
            return INVALID(why, "max_output_tokens",
                           "'max_output_tokens' must be an integer of at least 1.");
        call->max_tokens = v;
    }
    if (boolean(f[F_STREAM], "stream", &call->stream, why) != 0) return -1;
    int flag = 1; /* store: true is the API's default */
    if (boolean(f[F_STORE], "store", &flag, why) != 0) return -1;
    if (state) {
        memset(state, 0, sizeof *state);
        state->store = flag;
        state->input = in->value;
    }
    if (previous_id(f[F_PREVIOUS], state, why) != 0) return -1;
    flag = 0;
    if (boolean(f[F_BACKGROUND], "background", &flag, why) != 0) return -1;
    if (flag)
        return INVALID(why, "background",
                       "'background' responses are not supported yet: the gateway does not store "
                       "responses.");
    return 0;
}

/* ---- Responses body -> OpenAI chat body ---- */

/* -1 with *why filled: what the rewrite returns for a refusal. */
static int cannot(dialect_refusal *why, const char *param, const char *what)
{
    return INVALID(why, param, "'%s' cannot be translated for this model's provider: %s.", param,
                   what);
}

/* -1 with why->status 0: memory ran out. */
static int no_memory(dialect_refusal *why)
{
    *why = (dialect_refusal){0};
    return -1;
}

/* An input_image part as an image_url part: image_url (a data: or https URL) and detail. */
static json_t *image_part(json_t *p, dialect_refusal *why)
{
    json_t *url = json_object_get(p, "image_url"), *detail = json_object_get(p, "detail");
    if (!dialect_is_null(json_object_get(p, "file_id")) && dialect_is_null(url)) {
        cannot(why, "input",
               "an image given by file_id (OpenAI's Files API) cannot be read by "
               "another provider; give its image_url");
        return NULL;
    }
    if (!json_is_string(url) || (!dialect_is_null(detail) && !json_is_string(detail))) {
        INVALID(why, "input", "An input_image part needs an 'image_url' string.");
        return NULL;
    }
    json_t *iu = json_pack("{s:O}", "url", url);
    if (json_is_string(detail)) json_object_set(iu, "detail", detail);
    return json_pack("{s:s, s:o}", "type", "image_url", "image_url", iu);
}

/* A message item's content as chat content: a string, or parts (text and, for user turns,
 * images). NULL with *why filled when refused. */
static json_t *message_content(json_t *content, int user, dialect_refusal *why)
{
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) {
        INVALID(why, "input", "A message's 'content' must be a string or an array of parts.");
        return NULL;
    }
    json_t *parts = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *x = NULL;
        /* an earlier answer's refusal is what the assistant said: it stays its text */
        const char *key = dialect_type_is(type, "refusal") ? "refusal" : "text";
        if (dialect_type_is(type, "input_text") || dialect_type_is(type, "output_text") ||
            dialect_type_is(type, "refusal")) {
            json_t *t = json_object_get(p, key);
            if (json_is_string(t))
                x = dialect_text_part(t);
            else
                INVALID(why, "input", "A %s part needs a '%s' string.", type, key);
        } else if (dialect_type_is(type, "input_image") && user) {
            x = image_part(p, why);
        } else if (dialect_type_is(type, "input_file")) {
            cannot(why, "input", "input_file parts (documents) are not translated");
        } else {
            char what[120];
            snprintf(what, sizeof what, "a %s message cannot hold a '%.40s' part here",
                     user ? "user" : "non-user", type ? type : "(untyped)");
            cannot(why, "input", what);
        }
        if (!x) {
            json_decref(parts);
            return NULL;
        }
        json_array_append_new(parts, x);
    }
    return dialect_simplify(parts);
}

/* A message item (type "message", or no type with a role). */
static int message_item(json_t *item, json_t *msgs, dialect_refusal *why)
{
    const char *role = json_string_value(json_object_get(item, "role"));
    if (!(dialect_type_is(role, "user") || dialect_type_is(role, "assistant") ||
          dialect_type_is(role, "system") || dialect_type_is(role, "developer")))
        return INVALID(why, "input",
                       "A message item needs a role of user, assistant, system or developer.");
    json_t *content =
        message_content(json_object_get(item, "content"), dialect_type_is(role, "user"), why);
    if (!content) return -1;
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content", content));
    return 0;
}

/* A function_call item: a tool call of the assistant message just written when the item before
 * was assistant text or another call (one turn of the model), else of a new assistant message. */
static int function_call_item(json_t *item, json_t *msgs, dialect_refusal *why)
{
    json_t *id = json_object_get(item, "call_id"), *name = json_object_get(item, "name");
    json_t *args = json_object_get(item, "arguments");
    if (!json_is_string(id) || !json_is_string(name) || !json_is_string(args))
        return INVALID(why, "input",
                       "A function_call item needs 'call_id', 'name' and 'arguments' strings.");
    json_t *call = json_pack("{s:O, s:s, s:{s:O, s:O}}", "id", id, "type", "function", "function",
                             "name", name, "arguments", args);
    if (!call) return no_memory(why);
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (!last || !dialect_type_is(json_string_value(json_object_get(last, "role")), "assistant")) {
        last = json_pack("{s:s, s:n}", "role", "assistant", "content");
        json_array_append_new(msgs, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (!calls) json_object_set_new(last, "tool_calls", calls = json_array());
    json_array_append_new(calls, call);
    return 0;
}

/* A function_call_output item as a tool message: output a string, or text parts. */
static int function_output_item(json_t *item, json_t *msgs, dialect_refusal *why)
{
    json_t *id = json_object_get(item, "call_id"), *out = json_object_get(item, "output");
    if (!json_is_string(id))
        return INVALID(why, "input", "A function_call_output item needs a 'call_id' string.");
    json_t *content;
    if (json_is_string(out)) {
        content = json_incref(out);
    } else if (json_is_array(out)) {
        json_t *parts = json_array();
        size_t i;
        json_t *p;
        json_array_foreach(out, i, p)
        {
            json_t *t = json_object_get(p, "text");
            if (!dialect_type_is(json_string_value(json_object_get(p, "type")), "input_text") ||
                !json_is_string(t)) {
                json_decref(parts);
                return cannot(why, "input",
                              "a function_call_output may only hold text here (a chat tool "
                              "message carries no images or files)");
            }
            json_array_append_new(parts, dialect_text_part(t));
        }
        content = dialect_simplify(parts);
    } else {
        return INVALID(why, "input",
                       "A function_call_output's 'output' must be a string or an array of parts.");
    }
    json_array_append_new(
        msgs, json_pack("{s:s, s:O, s:o}", "role", "tool", "tool_call_id", id, "content", content));
    return 0;
}

static int translate_input(json_t *input, json_t *msgs, dialect_refusal *why)
{
    if (json_is_string(input)) {
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "user", "content", input));
        return 0;
    }
    size_t i;
    json_t *item;
    json_array_foreach(input, i, item)
    {
        if (!json_is_object(item))
            return INVALID(why, "input", "Each input item must be an object.");
        json_t *tv = json_object_get(item, "type");
        const char *type = json_string_value(tv);
        int rc;
        if (dialect_type_is(type, "message") ||
            (dialect_is_null(tv) && json_object_get(item, "role")))
            rc = message_item(item, msgs, why);
        else if (dialect_type_is(type, "function_call"))
            rc = function_call_item(item, msgs, why);
        else if (dialect_type_is(type, "function_call_output"))
            rc = function_output_item(item, msgs, why);
        else if (dialect_type_is(type, "reasoning"))
            rc = 0; /* dropped: the opening comment says why */
        else if (dialect_type_is(type, "item_reference"))
            rc = cannot(why, "input",
                        "item_reference items name items stored by id, and the gateway keeps "
                        "whole conversations instead: use previous_response_id");
        else {
            char what[120];
            snprintf(what, sizeof what,
                     "'%.40s' items (built-in tools run only at OpenAI) are not translated",
                     type ? type : "(untyped)");
            rc = cannot(why, "input", what);
        }
        if (rc) return rc;
    }
    return 0;
}

/* tools: function tools (flat in Responses) -> chat's nested form; built-in tools refused. An
 * empty list is left out (chat refuses one, and it offers nothing). */
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
        /* Built-in tools (web_search, file_search, code_interpreter, mcp...) and Codex's
         * namespaces run only at OpenAI: they are left out of what the provider is offered
         * (Codex offers web_search on every request, and refusing would make it unusable with
         * any other provider). The model can still answer, only without that tool; forcing one
         * of them with tool_choice is refused (translate_tool_choice finds no such function). */
        if (!dialect_type_is(json_string_value(json_object_get(t, "type")), "function")) continue;
        json_t *name = json_object_get(t, "name"), *d = json_object_get(t, "description");
        json_t *params = json_object_get(t, "parameters"), *strict = json_object_get(t, "strict");
        if (!json_is_string(name) || (!dialect_is_null(d) && !json_is_string(d)) ||
            (!dialect_is_null(params) && !json_is_object(params)) ||
            (!dialect_is_null(strict) && !json_is_boolean(strict))) {
            json_decref(list); /* not in out yet: out's release would not free it */
            return INVALID(why, "tools",
                           "A function tool needs a 'name' string and, if any, a 'description' "
                           "string, a 'parameters' object and a 'strict' boolean.");
        }
        json_t *fn = json_pack("{s:O}", "name", name);
        if (!dialect_is_null(d)) json_object_set(fn, "description", d);
        if (!dialect_is_null(params)) json_object_set(fn, "parameters", params);
        if (!dialect_is_null(strict)) json_object_set(fn, "strict", strict);
        json_array_append_new(list, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    if (json_array_size(list))
        json_object_set_new(out, "tools", list);
    else
        json_decref(list);
    return 0;
}

/* tool_choice: auto, none, required as they are; {type: function, name} -> chat's nested form.
 * Without tools chat refuses it: auto and none then mean what no tool_choice means, and forcing
 * a tool that is not there is refused. parallel_tool_calls goes with tools only, for the same
 * reason. */
static int translate_tool_choice(json_t *req, json_t *out, dialect_refusal *why)
{
    json_t *tc = json_object_get(req, "tool_choice"),
           *par = json_object_get(req, "parallel_tool_calls");
    int tools = json_object_get(out, "tools") != NULL;
    if (!dialect_is_null(par) && !json_is_boolean(par))
        return INVALID(why, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean.");
    if (!dialect_is_null(tc)) {
        const char *s = json_string_value(tc);
        const char *type = json_string_value(json_object_get(tc, "type"));
        json_t *name = json_object_get(tc, "name");
        json_t *choice = NULL;
        if (dialect_type_is(s, "auto") || dialect_type_is(s, "none")) {
            if (tools) choice = json_incref(tc);
        } else if (dialect_type_is(s, "required") ||
                   (dialect_type_is(type, "function") && json_is_string(name))) {
            if (!tools)
                return INVALID(why, "tool_choice",
                               "'tool_choice' forces a tool, but no tools are given.");
            choice = s ? json_incref(tc)
                       : json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name);
        } else if (json_is_object(tc) && type && !dialect_type_is(type, "function")) {
            return cannot(why, "tool_choice",
                          "it may only be auto, none, required or a function tool (built-in tools "
                          "and allowed_tools are not translated)");
        } else {
            return INVALID(why, "tool_choice",
                           "'tool_choice' must be auto, none, required or {\"type\": \"function\", "
                           "\"name\": ...}.");
        }
        if (choice) json_object_set_new(out, "tool_choice", choice);
    }
    if (tools && !dialect_is_null(par)) json_object_set(out, "parallel_tool_calls", par);
    return 0;
}

/* text: format -> response_format (json_schema, json_object; text is the default: nothing),
 * verbosity -> verbosity (each adapter judges whether its provider has it). */
static int translate_text(json_t *text, json_t *out, dialect_refusal *why)
{
    if (dialect_is_null(text)) return 0;
    if (!json_is_object(text)) return INVALID(why, "text", "'text' must be an object.");
    const char *k;
    json_t *v;
    json_object_foreach(text, k, v)
    {
        if (strcmp(k, "format") != 0 && strcmp(k, "verbosity") != 0)
            return INVALID(why, "text", "'text' may hold only 'format' and 'verbosity'.");
    }
    json_t *verb = json_object_get(text, "verbosity"), *fmt = json_object_get(text, "format");
    if (!dialect_is_null(verb) && !json_is_string(verb))
        return INVALID(why, "text", "'text.verbosity' must be a string.");
    if (!dialect_is_null(fmt)) {
        const char *type = json_string_value(json_object_get(fmt, "type"));
        if (dialect_type_is(type, "json_schema")) {
            json_t *name = json_object_get(fmt, "name"), *schema = json_object_get(fmt, "schema");
            json_t *d = json_object_get(fmt, "description"),
                   *strict = json_object_get(fmt, "strict");
            if (!json_is_string(name) || !json_is_object(schema) ||
                (!dialect_is_null(d) && !json_is_string(d)) ||
                (!dialect_is_null(strict) && !json_is_boolean(strict)))
                return INVALID(why, "text",
                               "A json_schema format needs a 'name' string and a 'schema' object "
                               "(and, if any, a 'description' string and a 'strict' boolean).");
            json_t *js = json_pack("{s:O}", "name", name);
            if (!dialect_is_null(d)) json_object_set(js, "description", d);
            json_object_set(js, "schema", schema);
            if (!dialect_is_null(strict)) json_object_set(js, "strict", strict);
            json_object_set_new(out, "response_format",
                                json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", js));
        } else if (dialect_type_is(type, "json_object")) {
            json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
        } else if (!dialect_type_is(type, "text")) {
            return INVALID(why, "text",
                           "'text.format' must be of type text, json_object or json_schema.");
        }
    }
    if (!dialect_is_null(verb)) json_object_set(out, "verbosity", verb);
    return 0;
}

/* reasoning: effort -> reasoning_effort; summary (and its older name) dropped. */
static int translate_reasoning(json_t *r, json_t *out, dialect_refusal *why)
{
    if (dialect_is_null(r)) return 0;
    if (!json_is_object(r)) return INVALID(why, "reasoning", "'reasoning' must be an object.");
    json_t *effort = json_object_get(r, "effort");
    if (!dialect_is_null(effort) && !json_is_string(effort))
        return INVALID(why, "reasoning", "'reasoning.effort' must be a string.");
    if (!dialect_is_null(effort)) json_object_set(out, "reasoning_effort", effort);
    return 0;
}

/* temperature (0 to 2) and top_p (0 to 1): OpenAI's own scales, copied. */
static int number_in(json_t *req, const char *name, double hi, json_t *out, dialect_refusal *why)
{
    json_t *v = json_object_get(req, name);
    if (dialect_is_null(v)) return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > hi)
        return INVALID(why, name, "'%s' must be a number from 0 to %g.", name, hi);
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
    {"input", K_MAPPED, NULL},
    {"instructions", K_MAPPED, NULL},
    {"max_output_tokens", K_MAPPED, NULL},
    {"stream", K_MAPPED, NULL},
    {"temperature", K_MAPPED, NULL},
    {"top_p", K_MAPPED, NULL},
    {"tools", K_MAPPED, NULL},
    {"tool_choice", K_MAPPED, NULL},
    {"parallel_tool_calls", K_MAPPED, NULL},
    {"text", K_MAPPED, NULL},
    {"reasoning", K_MAPPED, NULL},
    {"user", K_MAPPED, NULL},
    {"safety_identifier", K_MAPPED, NULL},
    {"metadata", K_DROPPED, NULL},
    {"store", K_DROPPED, NULL},
    {"truncation", K_DROPPED, NULL},
    {"service_tier", K_DROPPED, NULL},
    {"include", K_DROPPED, NULL},
    {"prompt_cache_key", K_DROPPED, NULL},
    {"max_tool_calls", K_DROPPED, NULL},
    {"stream_options", K_DROPPED, NULL},
    /* Codex sends its own session data (originator, versions): labels, not instructions */
    {"client_metadata", K_DROPPED, NULL},
    /* resolved by the gateway before the rewrite (api/responses.c), which leaves it null */
    {"previous_response_id", K_DROPPED, NULL},
    {"background", K_REFUSED, "the gateway does not store responses yet"},
    {"conversation", K_REFUSED, "the gateway does not store conversations"},
    {"prompt", K_REFUSED, "stored prompt templates live at OpenAI"},
    {"top_logprobs", K_REFUSED, "log probabilities are not returned in this API yet"},
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
        /* a field this API does not define passes into the hub body as it came, as chat
         * completions pass unknown fields to the provider: the provider answers for it (OpenAI
         * refuses what it does not know), nothing is dropped silently */
        if (i == sizeof known / sizeof *known) continue;
        /* background: false and top_logprobs: 0 ask for nothing */
        if (known[i].what == K_REFUSED && !dialect_is_null(v) && !json_is_false(v) &&
            !(json_is_integer(v) && json_integer_value(v) == 0))
            return cannot(why, known[i].name, known[i].why);
    }
    return 0;
}

/* The chat completions fields the gateway itself reads from the hub body (dialect_openai_parse):
 * its limits (n, the choices, multiplies them) and its stream. Passed through from a Responses
 * request they would bound the provider's answer otherwise than the request was admitted and held
 * for (a max_completion_tokens beside max_output_tokens: a hold for the one, an answer as long as
 * the other). */
static const char *const hub_read[] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n"};

/* Fields this API does not define, into the hub body as they came (check_fields says why); one
 * that names a field the rewrite writes, or one the gateway reads from what it writes, is refused,
 * since the two could not both be meant. */
static int pass_unknown(json_t *req, json_t *out, dialect_refusal *why)
{
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof *known && strcmp(known[i].name, k) != 0)
            i++;
        if (i < sizeof known / sizeof *known) continue;
        for (i = 0; i < sizeof hub_read / sizeof *hub_read; i++)
            if (strcmp(hub_read[i], k) == 0)
                return INVALID(why, hub_read[i],
                               "'%s' is a chat completions field, not one of the Responses "
                               "API's (its limit is max_output_tokens).",
                               hub_read[i]);
        if (json_object_get(out, k))
            return INVALID(why, NULL,
                           "The field '%.64s' clashes with one the gateway writes for this "
                           "model's provider.",
                           k);
        json_object_set(out, k, v);
    }
    return 0;
}

static int build(const prov_call *call, json_t *req, json_t *out, dialect_refusal *why)
{
    int rc = check_fields(req, why);
    if (rc) return rc;
    json_t *model = json_object_get(req, "model"), *input = json_object_get(req, "input");
    if (!json_is_string(model) || !(json_is_string(input) || json_is_array(input)))
        return INVALID(why, NULL, "The request was not parsed as a Responses request.");
    json_object_set(out, "model", model);
    json_t *msgs = json_array();
    json_object_set_new(out, "messages", msgs);
    json_t *ins = json_object_get(req, "instructions");
    if (!dialect_is_null(ins) && !json_is_string(ins))
        return INVALID(why, "instructions", "'instructions' must be a string.");
    if (json_string_length(ins))
        json_array_append_new(msgs, json_pack("{s:s, s:O}", "role", "system", "content", ins));
    if ((rc = translate_input(input, msgs, why)) != 0) return rc;
    if (json_array_size(msgs) == 0)
        return INVALID(why, "input", "'input' has nothing left to send but reasoning.");
    /* max_output_tokens as parsed (jscan_int also takes 1e3, which jansson reads as a real) */
    if (call->max_tokens >= 1)
        json_object_set_new(out, "max_tokens", json_integer((json_int_t)call->max_tokens));
    if ((rc = number_in(req, "temperature", 2, out, why)) != 0) return rc;
    if ((rc = number_in(req, "top_p", 1, out, why)) != 0) return rc;
    if ((rc = translate_tools(json_object_get(req, "tools"), out, why)) != 0) return rc;
    if ((rc = translate_tool_choice(req, out, why)) != 0) return rc;
    if ((rc = translate_text(json_object_get(req, "text"), out, why)) != 0) return rc;
    if ((rc = translate_reasoning(json_object_get(req, "reasoning"), out, why)) != 0) return rc;
    /* safety_identifier is user's newer name; given both, it is the one meant for the purpose */
    json_t *user = json_object_get(req, "safety_identifier");
    const char *uname = "safety_identifier";
    if (dialect_is_null(user)) {
        user = json_object_get(req, "user");
        uname = "user";
    }
    if (!dialect_is_null(user) && !json_is_string(user))
        return INVALID(why, uname, "'%s' must be a string.", uname);
    if (!dialect_is_null(user)) json_object_set(out, "user", user);
    json_t *md = json_object_get(req, "metadata");
    if (!dialect_is_null(md) && !json_is_object(md))
        return INVALID(why, "metadata", "'metadata' must be an object.");
    if (call->stream) {
        json_object_set_new(out, "stream", json_true());
        /* the gateway bills from the provider's usage, and Responses streams always end with it */
        json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    return pass_unknown(req, out, why);
}

int dialect_responses_to_openai(const prov_call *call, buf_t *out, dialect_refusal *why)
{
    return dialect_hub_rewrite(call, out, why, build);
}
