/*
 * The Gemini adapter: serves OpenAI chat and embeddings clients from Google's Gemini API. It is a
 * translating adapter (provider.h): build writes a new body in Gemini's format, and the answers
 * come back as normalized events (engine/event.h) that the client's dialect encodes, because
 * Gemini's request and answer shapes share nothing with OpenAI's. This file builds the
 * requests; gemini_decode.c reads what comes back.
 *
 * References (ai.google.dev):
 *   - generating content: https://ai.google.dev/api/generate-content (generateContent,
 *     streamGenerateContent with alt=sse, GenerateContentResponse, Candidate, FinishReason,
 *     UsageMetadata, GenerationConfig, ThinkingConfig)
 *   - function calling: https://ai.google.dev/gemini-api/docs/function-calling (Tool,
 *     FunctionDeclaration, ToolConfig.functionCallingConfig modes AUTO / ANY / NONE and
 *     allowedFunctionNames, functionCall / functionResponse parts)
 *   - structured output: https://ai.google.dev/gemini-api/docs/structured-output and the Schema
 *     object (https://ai.google.dev/api/caching#Schema): "a select subset of an OpenAPI 3.0
 *     schema object"
 *   - embeddings: https://ai.google.dev/api/embeddings (batchEmbedContents,
 *     outputDimensionality)
 *   - errors: https://ai.google.dev/gemini-api/docs/troubleshooting ({"error":{"code","message",
 *     "status"}}: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...)
 *   - API keys: https://ai.google.dev/gemini-api/docs/api-key (the x-goog-api-key header)
 *
 * The usual chat request (messages of text, the sampling fields) is written token by token from
 * the client's body ("the usual chat request" below); every other one is read and written with
 * jansson: a translation has to read nearly every field anyway. JSON is written by put_json below
 * (not json_dumps) so numbers keep their shortest form (a client's 0.7 stays 0.7) and bytes go
 * straight into the request's scratch buffer.
 *
 * What is translated, what is refused (the contract's 400 naming the field, nothing sent
 * upstream: never a silent drop) and what passes through is listed in docs/PROVIDERS.md.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/jarena.h"
#include "common/jscan.h"
#include "common/jtree.h"
#include "providers/gemini_decode.h"
#include "providers/provider.h"
#include "providers/wire.h"

#define GEM_MAX_BODY (64u << 20) /* the largest upstream body written */

static void gem_reset(void *st, const prov_call *call)
{
    (void)call;
    memset(st, 0, sizeof(gem_state));
}

/* ---- small helpers ---------------------------------------------------------------------- */

/* {base_url}/v1beta/models/{model}:{method}. The key never goes into the URL (URLs reach logs):
 * it travels in x-goog-api-key. */
static int gem_url(const prov_call *call, prov_upreq *u, const char *method)
{
    buf_t b;
    buf_init_with(&b, u->url, sizeof u->url, sizeof u->url - 1);
    int rc = buf_appends(&b, call->dep->provider->base_url);
    rc |= buf_appends(&b, "/v1beta/models/");
    rc |= prov_put_path_segment(&b, call->dep->model);
    rc |= buf_appends(&b, method);
    if (rc || !b.borrowed) { /* too long: refused, never cut */
        buf_free(&b);
        return -1;
    }
    u->url[b.len] = '\0';
    return 0;
}

/* A member that is absent or JSON null: OpenAI's SDKs send null for "not given". */
static json_t *get(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_null(v) ? NULL : v;
}

/* ---- request: messages ------------------------------------------------------------------ */

/* Appends parts to contents, merged into the last turn when it has the same role (Gemini wants
 * user and model turns to alternate). Steals parts. */
static int add_turn(json_t *contents, const char *role, json_t *parts)
{
    size_t n = json_array_size(contents);
    json_t *last = n ? json_array_get(contents, n - 1) : NULL;
    if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
        int rc = json_array_extend(json_object_get(last, "parts"), parts);
        json_decref(parts);
        return rc;
    }
    json_t *turn = jtree_obj(2, "role", json_string(role), "parts", parts);
    return turn ? json_array_append_new(contents, turn) : -1;
}

/* "data:<mime>;base64,<data>" → inlineData. Returns the part, or NULL if url is not one. */
static json_t *data_url_part(const char *url)
{
    if (strncmp(url, "data:", 5) != 0) return NULL;
    const char *semi = strchr(url + 5, ';'), *comma = strchr(url + 5, ',');
    if (!semi || !comma || semi > comma || semi == url + 5) return NULL;
    if ((size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7) != 0) return NULL;
    json_t *mime = json_stringn(url + 5, (size_t)(semi - url - 5));
    return json_pack("{s:{s:o, s:s}}", "inlineData", "mimeType", mime, "data", comma + 1);
}

/* The MIME type of an image URL from its extension (Gemini's fileData needs one), or NULL. */
static const char *image_mime(const char *url)
{
    static const struct {
        const char *ext, *mime;
    } types[] = {{".png", "image/png"},   {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
                 {".webp", "image/webp"}, {".gif", "image/gif"},  {".heic", "image/heic"},
                 {".heif", "image/heif"}};
    size_t n = strcspn(url, "?#");
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        size_t el = strlen(types[i].ext);
        if (n > el && strncasecmp(url + n - el, types[i].ext, el) == 0) return types[i].mime;
    }
    return NULL;
}

/* One part of a user message's content array → a Gemini part, or -2 (refused). */
static int user_part(json_t *p, size_t mi, json_t **out, prov_refusal *why)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    *out = NULL;
    if (type && strcmp(type, "text") == 0 && json_is_string(json_object_get(p, "text"))) {
        *out = jtree_obj(1, "text", json_incref(json_object_get(p, "text")));
    } else if (type && strcmp(type, "image_url") == 0) {
        json_t *iu = json_object_get(p, "image_url");
        const char *url = json_string_value(json_is_object(iu) ? json_object_get(iu, "url") : iu);
        if (!url)
            return prov_refuse(why, "messages", "messages[%zu]: an image_url part needs a url.",
                               mi);
        if (strncmp(url, "data:", 5) == 0) {
            if (!(*out = data_url_part(url)))
                return prov_refuse(why, "messages",
                                   "messages[%zu]: an image data URL must be base64 "
                                   "(data:<type>;base64,...).",
                                   mi);
        } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
            const char *mime = image_mime(url);
            if (!mime)
                return prov_refuse(why, "messages",
                                   "messages[%zu]: Gemini needs the type of an image URL, and this "
                                   "URL's is not known from its extension; send it as a data URL.",
                                   mi);
            *out = json_pack("{s:{s:s, s:s}}", "fileData", "mimeType", mime, "fileUri", url);
        } else {
            return prov_refuse(why, "messages", "messages[%zu]: unsupported image URL scheme.", mi);
        }
    } else if (type && strcmp(type, "input_audio") == 0) {
        json_t *a = json_object_get(p, "input_audio");
        const char *data = json_string_value(json_object_get(a, "data"));
        const char *fmt = json_string_value(json_object_get(a, "format"));
        if (!data || !fmt || (strcmp(fmt, "wav") != 0 && strcmp(fmt, "mp3") != 0))
            return prov_refuse(why, "messages",
                               "messages[%zu]: input_audio needs data and a format of wav or mp3.",
                               mi);
        *out = json_pack("{s:{s:s+, s:s}}", "inlineData", "mimeType", "audio/", fmt, "data", data);
    } else if (type && strcmp(type, "file") == 0) {
        const char *fd =
            json_string_value(json_object_get(json_object_get(p, "file"), "file_data"));
        if (!fd || !(*out = data_url_part(fd)))
            return prov_refuse(
                why, "messages",
                "messages[%zu]: Gemini takes a file as file_data (a base64 data URL), "
                "not a file_id.",
                mi);
    } else {
        return prov_refuse(why, "messages",
                           "messages[%zu]: content parts of type '%s' are not "
                           "supported by Gemini.",
                           mi, type ? type : "?");
    }
    return *out ? 0 : -1;
}

/* The text of a content that may only hold text (system, assistant, tool): a string, or text
 * parts (refusal parts of an assistant message count as its text). Returns 0, -2 refused. */
static int text_only(json_t *content, size_t mi, buf_t *text, prov_refusal *why)
{
    if (!content) return 0;
    if (json_is_string(content))
        return buf_append(text, json_string_value(content), json_string_length(content));
    if (!json_is_array(content))
        return prov_refuse(why, "messages", "messages[%zu]: content must be a string or parts.",
                           mi);
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *field = type && strcmp(type, "refusal") == 0 ? "refusal" : "text";
        json_t *t = json_object_get(p, field);
        if (!type || (strcmp(type, "text") != 0 && strcmp(type, "refusal") != 0) ||
            !json_is_string(t))
            return prov_refuse(why, "messages",
                               "messages[%zu]: this role's content may only hold text parts.", mi);
        if (buf_append(text, json_string_value(t), json_string_length(t))) return -1;
    }
    return 0;
}

/* A text part from buf (no part when it is empty: Gemini refuses empty parts). buf joins strings
 * of the request, each valid UTF-8, so it is too: no check a byte at a time (a 100 KB prompt). */
static int add_text_part(json_t *parts, const buf_t *t)
{
    if (!t->len) return 0;
    json_t *s = json_stringn_nocheck(t->data, t->len);
    return s ? json_array_append_new(parts, jtree_obj(1, "text", s)) : -1;
}

/* messages → contents and systemInstruction. names maps each tool call id to its function's
 * name, for the tool messages that answer it. */
static int convert_messages(json_t *msgs, json_t *contents, json_t *sys_parts, json_t *names,
                            prov_refusal *why)
{
    size_t mi;
    json_t *m;
    buf_t t;
    buf_init(&t, 0);
    int rc = 0;
    json_array_foreach(msgs, mi, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = get(m, "content");
        buf_reset(&t);
        if (!json_is_object(m) || !role) {
            rc = prov_refuse(why, "messages", "messages[%zu] must be an object with a role.", mi);
            break;
        }
        json_t *parts = json_array();
        if (!parts) {
            rc = -1;
            break;
        }
        const char *grole = "user";
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            /* Gemini has one system instruction: every system message goes there, in order */
            rc = text_only(content, mi, &t, why);
            if (rc == 0) rc = add_text_part(sys_parts, &t);
            json_decref(parts);
            if (rc) break;
            continue;
        } else if (strcmp(role, "user") == 0) {
            if (json_is_string(content)) {
                rc = text_only(content, mi, &t, why);
                if (rc == 0) rc = add_text_part(parts, &t);
            } else if (json_is_array(content)) {
                size_t i;
                json_t *p, *gp;
                json_array_foreach(content, i, p)
                {
                    if ((rc = user_part(p, mi, &gp, why)) != 0) break;
                    if ((rc = json_array_append_new(parts, gp)) != 0) break;
                }
            } else {
                rc = prov_refuse(why, "messages",
                                 "messages[%zu]: content must be a string or parts.", mi);
            }
        } else if (strcmp(role, "assistant") == 0) {
            grole = "model";
            rc = text_only(content, mi, &t, why);
            if (rc == 0) rc = add_text_part(parts, &t);
            json_t *calls = get(m, "tool_calls");
            if (rc == 0 && calls && !json_is_array(calls))
                rc =
                    prov_refuse(why, "messages", "messages[%zu]: tool_calls must be an array.", mi);
            size_t ci;
            json_t *c;
            json_array_foreach(calls, ci, c)
            {
                if (rc) break;
                json_t *fn = json_object_get(c, "function");
                const char *id = json_string_value(json_object_get(c, "id"));
                json_t *name = json_object_get(fn, "name");
                const char *args = json_string_value(json_object_get(fn, "arguments"));
                if (!id || !json_is_string(name) || !args) {
                    rc = prov_refuse(
                        why, "messages",
                        "messages[%zu].tool_calls[%zu] needs an id, a function name and "
                        "arguments.",
                        mi, ci);
                    break;
                }
                json_error_t je;
                json_t *a =
                    args[strspn(args, " \t\r\n")] ? json_loads(args, 0, &je) : json_object();
                if (!json_is_object(a)) {
                    json_decref(a);
                    rc = prov_refuse(
                        why, "messages",
                        "messages[%zu].tool_calls[%zu].function.arguments must be a JSON "
                        "object.",
                        mi, ci);
                    break;
                }
                rc = json_object_set(names, id, name);
                rc |= json_array_append_new(
                    parts, json_pack("{s:{s:O, s:o}}", "functionCall", "name", name, "args", a));
            }
        } else if (strcmp(role, "tool") == 0) {
            const char *id = json_string_value(json_object_get(m, "tool_call_id"));
            json_t *name = id ? json_object_get(names, id) : NULL;
            if (!name) {
                rc = prov_refuse(why, "messages",
                                 "messages[%zu]: tool_call_id names no tool call of an earlier "
                                 "assistant message.",
                                 mi);
            } else if ((rc = text_only(content, mi, &t, why)) == 0) {
                /* the result as the object it is, else wrapped: Gemini's response is a Struct */
                json_error_t je;
                json_t *r = t.len ? json_loadb(t.data, t.len, 0, &je) : NULL;
                if (!json_is_object(r)) {
                    json_decref(r);
                    r = json_pack("{s:s%}", "result", t.data ? t.data : "", t.len);
                }
                rc = json_array_append_new(parts, json_pack("{s:{s:O, s:o}}", "functionResponse",
                                                            "name", name, "response", r));
            }
        } else {
            rc = prov_refuse(why, "messages", "messages[%zu]: the role '%s' is not supported.", mi,
                             role);
        }
        if (rc) {
            json_decref(parts);
            break;
        }
        if (json_array_size(parts) == 0) {
            json_decref(parts); /* an empty message says nothing Gemini could take */
            continue;
        }
        if ((rc = add_turn(contents, grole, parts)) != 0) break;
    }
    buf_free(&t);
    return rc;
}

/* ---- request: schemas ------------------------------------------------------------------- */

/* A JSON Schema → Gemini's Schema (an OpenAPI 3.0 subset). Keywords with no Gemini equivalent
 * are refused (bad names the first one), except those whose absence cannot change an answer. */
static int convert_schema(json_t *in, json_t **out, char *bad, size_t badlen, int depth)
{
    static const char *const copied[] = {
        "description", "title",         "format",        "nullable",  "minItems", "maxItems",
        "minimum",     "maximum",       "minLength",     "maxLength", "pattern",  "default",
        "example",     "minProperties", "maxProperties", "required"};
    *out = NULL;
    if (!json_is_object(in) || depth > 64) {
        snprintf(bad, badlen, "a schema that is not an object");
        return -2;
    }
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v)
    {
        int rc = 0;
        size_t i;
        for (i = 0; i < sizeof copied / sizeof *copied; i++)
            if (strcmp(k, copied[i]) == 0) break;
        if (i < sizeof copied / sizeof *copied) {
            rc = json_object_set(o, k, v);
        } else if (strcmp(k, "type") == 0) {
            /* "string" → "STRING"; ["string","null"] → STRING, nullable */
            const char *t = json_string_value(v);
            if (json_is_array(v) && json_array_size(v) == 2) {
                const char *a = json_string_value(json_array_get(v, 0));
                const char *b = json_string_value(json_array_get(v, 1));
                if (a && b && strcmp(b, "null") == 0)
                    t = a;
                else if (a && b && strcmp(a, "null") == 0)
                    t = b;
                if (t) rc = json_object_set_new(o, "nullable", json_true());
            }
            char up[16];
            size_t n = t ? strlen(t) : 0;
            if (!t || n == 0 || n >= sizeof up || strcmp(t, "null") == 0) {
                snprintf(bad, badlen, "this 'type'");
                rc = -2;
            } else {
                for (size_t j = 0; j <= n; j++)
                    up[j] = (char)(t[j] >= 'a' && t[j] <= 'z' ? t[j] - 32 : t[j]);
                rc |= json_object_set_new(o, "type", json_string(up));
            }
        } else if (strcmp(k, "enum") == 0) {
            size_t j;
            json_t *e;
            json_array_foreach(v, j, e) if (!json_is_string(e)) rc = -2;
            if (!json_is_array(v) || rc) {
                snprintf(bad, badlen, "an 'enum' of values other than strings");
                rc = -2;
            } else {
                rc = json_object_set(o, k, v);
            }
        } else if (strcmp(k, "properties") == 0) {
            json_t *props = json_object(), *order = json_array(), *s;
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv)
            {
                if ((rc = convert_schema(pv, &s, bad, badlen, depth + 1)) != 0) break;
                rc = json_object_set_new(props, pk, s);
                rc |= json_array_append_new(order, json_string(pk));
            }
            if (rc == 0) {
                rc = json_object_set_new(o, "properties", props);
                /* Gemini orders properties alphabetically unless told: keep the client's order */
                if (json_array_size(order)) rc |= json_object_set(o, "propertyOrdering", order);
                json_decref(order);
            } else {
                json_decref(props);
                json_decref(order);
            }
        } else if (strcmp(k, "items") == 0 || strcmp(k, "anyOf") == 0) {
            json_t *s = NULL;
            if (json_is_array(v) && k[0] == 'a') {
                s = json_array();
                size_t j;
                json_t *e, *c;
                json_array_foreach(v, j, e)
                {
                    if ((rc = convert_schema(e, &c, bad, badlen, depth + 1)) != 0) break;
                    rc = json_array_append_new(s, c);
                }
            } else {
                rc = convert_schema(v, &s, bad, badlen, depth + 1);
            }
            if (rc == 0)
                rc = json_object_set_new(o, k, s);
            else
                json_decref(s);
        } else if ((strcmp(k, "additionalProperties") == 0 && json_is_false(v)) ||
                   strcmp(k, "$schema") == 0) {
            /* Gemini only ever writes the declared properties, and $schema is a label: without
             * them the answer is the same */
        } else {
            snprintf(bad, badlen, "the keyword '%s'", k);
            rc = -2;
        }
        if (rc) {
            json_decref(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

/* ---- request: the whole chat body ------------------------------------------------------- */

/* The OpenAI fields Gemini has no way to honour: each would change the answer. Returns the
 * field's name as a static string (a refusal's param outlives the parsed request), or NULL. */
static const char *refused_field(const char *k, json_t *v)
{
    static const char *const always[] = {"top_logprobs",       "audio",     "prediction",
                                         "web_search_options", "functions", "function_call",
                                         "verbosity"};
    for (size_t i = 0; i < sizeof always / sizeof *always; i++)
        if (strcmp(k, always[i]) == 0) return always[i];
    if (strcmp(k, "logprobs") == 0) return json_is_true(v) ? "logprobs" : NULL;
    if (strcmp(k, "logit_bias") == 0)
        return !json_is_object(v) || json_object_size(v) > 0 ? "logit_bias" : NULL;
    if (strcmp(k, "modalities") == 0)
        return json_is_array(v) && json_array_size(v) == 1 &&
                       json_is_string(json_array_get(v, 0)) &&
                       strcmp(json_string_value(json_array_get(v, 0)), "text") == 0
                   ? NULL
                   : "modalities";
    /* Gemini may call several functions at once and has no switch to stop it */
    if (strcmp(k, "parallel_tool_calls") == 0)
        return json_is_true(v) ? NULL : "parallel_tool_calls";
    return NULL;
}

/* Fields the adapter reads itself, and fields that do not change the answer (OpenAI's storage,
 * routing and attribution), which Gemini has no place for. */
static int known_field(const char *k)
{
    static const char *const known[] = {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "n", "response_format", "reasoning_effort", "tools",
        "tool_choice", "presence_penalty", "frequency_penalty", "seed", "parallel_tool_calls",
        "user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
        /* refused unless harmless (refused_field) */
        "logprobs", "logit_bias", "modalities"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(k, known[i]) == 0) return 1;
    return 0;
}

/* Gemini's own names for what the adapter writes: a client may not set them beside it. Returns
 * the static name, or NULL. */
static const char *written_field(const char *k)
{
    static const char *const w[] = {"contents",         "systemInstruction", "system_instruction",
                                    "generationConfig", "generation_config", "toolConfig",
                                    "tool_config",      "requests"};
    for (size_t i = 0; i < sizeof w / sizeof *w; i++)
        if (strcmp(k, w[i]) == 0) return w[i];
    return NULL;
}

static int number_field(json_t *req, const char *k, json_t *gc, const char *gk, prov_refusal *why)
{
    json_t *v = get(req, k);
    if (!v) return 0;
    if (!json_is_number(v)) return prov_refuse(why, k, "'%s' must be a number.", k);
    return json_object_set(gc, gk, v);
}

/* generationConfig from the sampling fields, the output limit, stop, n, response_format and
 * reasoning_effort. */
static int generation_config(const prov_call *call, json_t *req, json_t *gc, prov_refusal *why)
{
    int rc = 0;
    if (call->max_tokens >= 0)
        rc |= json_object_set_new(gc, "maxOutputTokens", json_integer(call->max_tokens));
    if ((rc = rc ? rc : number_field(req, "temperature", gc, "temperature", why)) != 0) return rc;
    if ((rc = number_field(req, "top_p", gc, "topP", why)) != 0) return rc;
    if ((rc = number_field(req, "presence_penalty", gc, "presencePenalty", why)) != 0) return rc;
    if ((rc = number_field(req, "frequency_penalty", gc, "frequencyPenalty", why)) != 0) return rc;
    json_t *seed = get(req, "seed");
    if (seed && !json_is_integer(seed))
        return prov_refuse(why, "seed", "'seed' must be an integer.");
    if (seed && (rc = json_object_set(gc, "seed", seed)) != 0) return rc;

    json_t *stop = get(req, "stop");
    if (json_is_string(stop)) {
        rc = json_object_set_new(gc, "stopSequences", json_pack("[O]", stop));
    } else if (json_is_array(stop)) {
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s) if (!json_is_string(s)) stop = NULL;
        if (!stop)
            return prov_refuse(why, "stop", "'stop' must be a string or an array of strings.");
        if (json_array_size(stop)) rc = json_object_set(gc, "stopSequences", stop);
    } else if (stop) {
        return prov_refuse(why, "stop", "'stop' must be a string or an array of strings.");
    }
    if (rc) return rc;

    /* One candidate only: the client's dialect carries choice 0, and dropping the others after
     * Gemini wrote (and billed) them would be a silent drop. */
    json_t *n = get(req, "n");
    if (n && !(json_is_integer(n) && json_integer_value(n) == 1))
        return prov_refuse(why, "n",
                           "Gemini models served by this gateway answer with one choice: "
                           "'n' must be 1.");

    json_t *rf = get(req, "response_format");
    if (rf) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!type) return prov_refuse(why, "response_format", "'response_format' needs a type.");
        if (strcmp(type, "json_object") == 0) {
            rc = json_object_set_new(gc, "responseMimeType", json_string("application/json"));
        } else if (strcmp(type, "json_schema") == 0) {
            json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
            json_t *gs;
            char bad[96];
            if (!schema)
                return prov_refuse(why, "response_format",
                                   "'response_format.json_schema' needs a schema.");
            rc = convert_schema(schema, &gs, bad, sizeof bad, 0);
            if (rc == -2)
                return prov_refuse(
                    why, "response_format",
                    "Gemini's response schema cannot take %s (its schema is a subset "
                    "of OpenAPI 3.0).",
                    bad);
            if (rc) return rc;
            rc = json_object_set_new(gc, "responseMimeType", json_string("application/json"));
            rc |= json_object_set_new(gc, "responseSchema", gs);
        } else if (strcmp(type, "text") != 0) {
            return prov_refuse(why, "response_format",
                               "'response_format' type '%s' is not supported.", type);
        }
        if (rc) return rc;
    }

    /* reasoning_effort → a thinking budget in tokens (Gemini 2.5's thinkingConfig); thoughts are
     * asked for so the client gets them as reasoning_content. "none" turns thinking off. */
    json_t *re = get(req, "reasoning_effort");
    if (re) {
        static const struct {
            const char *name;
            int budget;
        } levels[] = {
            {"none", 0}, {"minimal", 128}, {"low", 1024}, {"medium", 8192}, {"high", 24576}};
        const char *s = json_string_value(re);
        size_t i;
        for (i = 0; s && i < sizeof levels / sizeof *levels; i++)
            if (strcmp(s, levels[i].name) == 0) break;
        if (!s || i == sizeof levels / sizeof *levels)
            return prov_refuse(why, "reasoning_effort",
                               "'reasoning_effort' must be none, minimal, low, medium or high.");
        json_t *tc = levels[i].budget ? json_pack("{s:i, s:b}", "thinkingBudget", levels[i].budget,
                                                  "includeThoughts", 1)
                                      : json_pack("{s:i}", "thinkingBudget", 0);
        rc = json_object_set_new(gc, "thinkingConfig", tc);
    }
    return rc;
}

/* Whether a parameters schema declares no arguments at all ({"type":"object","properties":{}},
 * maybe with additionalProperties false, an empty required list, a description): Gemini
 * refuses an OBJECT without properties, and a declaration without parameters means the same. */
static int no_arguments(json_t *params)
{
    const char *k;
    json_t *v;
    const char *type = json_string_value(json_object_get(params, "type"));
    if (!type || strcmp(type, "object") != 0) return 0;
    json_object_foreach(params, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "description") == 0 || strcmp(k, "$schema") == 0 ||
            (strcmp(k, "properties") == 0 && json_is_object(v) && json_object_size(v) == 0) ||
            (strcmp(k, "required") == 0 && json_is_array(v) && json_array_size(v) == 0) ||
            (strcmp(k, "additionalProperties") == 0 && json_is_false(v)))
            continue;
        return 0;
    }
    return 1;
}

/* tools → functionDeclarations; tool_choice → toolConfig.functionCallingConfig. */
static int tools_config(json_t *req, json_t *body, prov_refusal *why)
{
    json_t *tools = get(req, "tools");
    int rc = 0;
    if (tools) {
        if (!json_is_array(tools)) return prov_refuse(why, "tools", "'tools' must be an array.");
        json_t *decls = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            const char *type = json_string_value(json_object_get(t, "type"));
            json_t *fn = json_object_get(t, "function");
            json_t *name = json_object_get(fn, "name");
            if (!type || strcmp(type, "function") != 0 || !json_is_string(name)) {
                json_decref(decls);
                return prov_refuse(
                    why, "tools",
                    "tools[%zu]: Gemini takes function tools (type 'function' with a "
                    "name) only.",
                    i);
            }
            json_t *d = json_pack("{s:O}", "name", name);
            json_t *desc = get(fn, "description"), *params = get(fn, "parameters");
            if (desc) rc |= json_object_set(d, "description", desc);
            /* a function without arguments has no parameters: Gemini refuses an OBJECT with no
             * properties */
            if (params && !no_arguments(params)) {
                json_t *gs;
                char bad[96];
                int sr = convert_schema(params, &gs, bad, sizeof bad, 0);
                if (sr == -2) {
                    json_decref(d);
                    json_decref(decls);
                    return prov_refuse(
                        why, "tools",
                        "tools[%zu]: Gemini's function parameters cannot take %s (its "
                        "schema is a subset of OpenAPI 3.0).",
                        i, bad);
                }
                rc |= sr ? sr : json_object_set_new(d, "parameters", gs);
            }
            rc |= json_array_append_new(decls, d);
        }
        if (json_array_size(decls))
            rc |= json_object_set_new(body, "tools",
                                      json_pack("[{s:o}]", "functionDeclarations", decls));
        else
            json_decref(decls);
    }
    json_t *tc = get(req, "tool_choice");
    if (tc) {
        const char *s = json_string_value(tc);
        json_t *fcc = NULL;
        if (s && strcmp(s, "auto") == 0)
            fcc = json_pack("{s:s}", "mode", "AUTO");
        else if (s && strcmp(s, "none") == 0)
            fcc = json_pack("{s:s}", "mode", "NONE");
        else if (s && strcmp(s, "required") == 0)
            fcc = json_pack("{s:s}", "mode", "ANY");
        else if (json_is_object(tc) &&
                 json_is_string(json_object_get(json_object_get(tc, "function"), "name")))
            fcc = json_pack("{s:s, s:[O]}", "mode", "ANY", "allowedFunctionNames",
                            json_object_get(json_object_get(tc, "function"), "name"));
        else
            return prov_refuse(why, "tool_choice",
                               "'tool_choice' must be auto, none, required or a named function.");
        rc |= json_object_set_new(body, "toolConfig",
                                  json_pack("{s:o}", "functionCallingConfig", fcc));
    }
    return rc;
}

static int build_chat(const prov_call *call, json_t *req, gem_state *st, json_t *body,
                      prov_refusal *why)
{
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        if (json_is_null(v)) continue;
        const char *bad = refused_field(k, v);
        if (bad)
            return prov_refuse(why, bad, "Gemini cannot honour '%s'; leave it out for this model.",
                               k);
        if ((bad = written_field(k)) != NULL)
            return prov_refuse(why, bad, "'%s' is written by the gateway from OpenAI's fields.", k);
    }
    json_t *msgs = json_object_get(req, "messages");
    json_t *contents = json_array(), *sys = json_array(), *names = json_object();
    int rc = contents && sys && names ? convert_messages(msgs, contents, sys, names, why) : -1;
    json_decref(names);
    if (rc == 0 && json_array_size(contents) == 0)
        rc = prov_refuse(why, "messages", "Gemini needs at least one user or assistant message.");
    if (rc) {
        json_decref(contents);
        json_decref(sys);
        return rc;
    }
    /* the answer's turn: how many assistant messages came before it (gemini_decode.c, make_id) */
    size_t i;
    json_array_foreach(msgs, i, v)
    {
        const char *role = json_string_value(json_object_get(v, "role"));
        if (role && strcmp(role, "assistant") == 0) st->turn++;
    }
    rc = json_object_set_new(body, "contents", contents);
    if (json_array_size(sys))
        rc |= json_object_set_new(body, "systemInstruction", json_pack("{s:o}", "parts", sys));
    else
        json_decref(sys);
    if (rc) return -1;
    if ((rc = tools_config(req, body, why)) != 0) return rc;
    json_t *gc = json_object();
    if (!gc || (rc = generation_config(call, req, gc, why)) != 0) {
        json_decref(gc);
        return rc ? rc : -1;
    }
    if (json_object_size(gc))
        rc = json_object_set_new(body, "generationConfig", gc);
    else
        json_decref(gc);
    /* Unknown fields go to Gemini as they came: Gemini's own fields (safetySettings,
     * cachedContent, labels...) work as extensions, and a field Gemini does not know gets its
     * 400 naming it, which is no silent drop either. */
    json_object_foreach(req, k, v)
    {
        if (!known_field(k) && !json_is_null(v)) rc |= json_object_set(body, k, v);
    }
    return rc;
}

/* ---- request: embeddings ---------------------------------------------------------------- */

static int build_embeddings(const prov_call *call, json_t *req, gem_state *st, json_t *body,
                            prov_refusal *why)
{
    json_t *input = json_object_get(req, "input");
    json_t *dims = get(req, "dimensions");
    if (dims && !(json_is_integer(dims) && json_integer_value(dims) >= 1))
        return prov_refuse(why, "dimensions", "'dimensions' must be an integer of at least 1.");
    json_t *requests = json_array();
    size_t count = json_is_string(input) ? 1 : json_array_size(input);
    for (size_t i = 0; i < count; i++) {
        json_t *in = json_is_string(input) ? input : json_array_get(input, i);
        if (!json_is_string(in)) {
            json_decref(requests);
            return prov_refuse(
                why, "input",
                "Gemini embeds text: 'input' must be a string or an array of strings "
                "(token ids are not accepted).");
        }
        st->embed_estimate += (int64_t)json_string_length(in);
        json_t *r = json_pack("{s:s+, s:{s:[{s:O}]}}", "model", "models/", call->dep->model,
                              "content", "parts", "text", in);
        if (r && dims) json_object_set(r, "outputDimensionality", dims);
        if (!r || json_array_append_new(requests, r)) {
            json_decref(requests);
            return -1;
        }
    }
    int rc = json_object_set_new(body, "requests", requests);
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v)
    {
        static const char *const known[] = {"model", "input", "encoding_format", "dimensions",
                                            "user"};
        size_t j;
        for (j = 0; j < sizeof known / sizeof *known; j++)
            if (strcmp(k, known[j]) == 0) break;
        if (j < sizeof known / sizeof *known || json_is_null(v)) continue;
        const char *bad = written_field(k);
        if (bad)
            return prov_refuse(why, bad, "'%s' is written by the gateway from OpenAI's fields.", k);
        rc |= json_object_set(body, k, v); /* as for chat: Gemini names what it does not know */
    }
    return rc;
}

/* ---- request: the usual chat request, token by token --------------------------------------- */

/* Most chat requests are messages of text and a few sampling fields: for those the tree (parse,
 * build, write: ~29,000 instructions a 1 KB request, two thirds of what translating costs over
 * a pass-through) is replaced by one walk over the client's tokens, writing Gemini's body as it
 * reads (round 26, docs/PERFORMANCE.md). Fields OpenAI does not define go to Gemini as the tree
 * path sends them (last, in the client's order; an object or array through a tree of its own).
 * Anything else (tools, content parts, a null, a name written twice or escaped, any other OpenAI
 * field) gives 0 and takes the tree path, which also writes every refusal. What this writes is byte
 * for byte what the tree path writes for the same request (test_gemini's and fuzz_adapters'
 * comparisons, gemini_build_fast off): strings without an escape are copied as they are (the tree
 * would decode and write them back unchanged), others decoded and escaped as the tree writes them;
 * numbers read and written by the tree's rule. */
int gemini_build_fast = 1; /* tests turn it off to compare with the tree */

#define GF_MAX_SYS 16 /* system messages kept aside for systemInstruction; more: the tree */

enum {
    GF_MODEL,
    GF_MESSAGES,
    GF_STREAM,
    GF_STREAM_OPTIONS,
    GF_MAX_TOKENS,
    GF_MAX_COMPL,
    GF_TEMPERATURE,
    GF_TOP_P,
    GF_USER,
    GF_NKEYS
};
static const jscan_key gf_keys[GF_NKEYS] = {
    JSCAN_KEY("model"),          JSCAN_KEY("messages"),   JSCAN_KEY("stream"),
    JSCAN_KEY("stream_options"), JSCAN_KEY("max_tokens"), JSCAN_KEY("max_completion_tokens"),
    JSCAN_KEY("temperature"),    JSCAN_KEY("top_p"),      JSCAN_KEY("user")};

/* Whether a top-level name that is none of gf_keys is one the tree path reads or refuses
 * (known_field, written_field, refused_field): such a request is the tree's. Else it is passed
 * through. */
static int gf_tree_name(ms_str key)
{
    static const char *const refused[] = {"top_logprobs",       "audio",     "prediction",
                                          "web_search_options", "functions", "function_call",
                                          "verbosity"};
    char k[32];
    if (key.n >= sizeof k) return 0; /* longer than any of them */
    memcpy(k, key.p, key.n);
    k[key.n] = '\0';
    if (known_field(k) || written_field(k)) return 1;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (strcmp(k, refused[i]) == 0) return 1;
    return 0;
}

/* The top-level members, each named once, of the listed kinds, into m[]; *pass: how many go
 * through as they are. 1, or 0 for the tree. */
static int gf_members(const prov_call *call, const jscan_member **m, size_t *pass)
{
    if (call->ep != EP_CHAT || !prov_body_valid(call) || call->nmembers == 0 ||
        call->nmembers >= PROV_MAX_MEMBERS)
        return 0;
    for (size_t i = 0; i < GF_NKEYS; i++)
        m[i] = NULL;
    for (size_t i = 0; i < call->nmembers; i++) {
        const jscan_member *x = &call->members[i];
        if (!x->key_plain || x->type == JS_NULL) return 0;
        size_t k = jscan_key_index(x->key, gf_keys, GF_NKEYS);
        if (k < GF_NKEYS) {
            if (m[k]) return 0;
            m[k] = x;
        } else if (gf_tree_name(x->key) || !jtree_holds(x->value)) {
            return 0;
        } else {
            /* the tree keeps one of a name given twice: such a request is its */
            for (size_t j = 0; j < i; j++)
                if (call->members[j].key.n == x->key.n &&
                    memcmp(call->members[j].key.p, x->key.p, x->key.n) == 0)
                    return 0;
            ++*pass;
        }
    }
    const jscan_member *mt = m[GF_MAX_TOKENS], *mc = m[GF_MAX_COMPL];
    if (!m[GF_MESSAGES] || m[GF_MESSAGES]->type != JS_ARRAY ||
        (m[GF_MODEL] && m[GF_MODEL]->type != JS_STRING) ||
        (m[GF_STREAM] && m[GF_STREAM]->type != JS_TRUE && m[GF_STREAM]->type != JS_FALSE) ||
        (mt && jtree_number_kind(mt->value, &(int64_t){0}) == 0) ||
        (mc && jtree_number_kind(mc->value, &(int64_t){0}) == 0) ||
        (m[GF_STREAM_OPTIONS] && !jtree_holds(m[GF_STREAM_OPTIONS]->value)) ||
        (m[GF_USER] && !jtree_holds(m[GF_USER]->value)))
        return 0;
    for (int k = GF_TEMPERATURE; k <= GF_TOP_P; k++)
        if (m[k] && m[k]->type != JS_NUMBER) return 0;
    return 1;
}

/* A passed-through member's value as prov_put_json writes the tree's: 1, or 0 for the tree. */
static int gf_put_value(buf_t *b, const jscan_member *x, int *rc)
{
    switch (x->type) {
    case JS_STRING:
        *rc |= prov_put_token_str(b, x->value);
        return 1;
    case JS_NUMBER:
        switch (prov_put_token_num(b, x->value)) {
        case 0:
            return 1;
        case 1:
            return 0;
        default:
            *rc = -1;
            return 1;
        }
    case JS_TRUE:
    case JS_FALSE:
        *rc |= buf_appends(b, x->type == JS_TRUE ? "true" : "false");
        return 1;
    case JS_OBJECT:
    case JS_ARRAY: {
        json_t *v = jtree_load_valid(x->value.p, x->value.n, NULL);
        if (!v) return 0;
        *rc |= prov_put_json(b, v);
        json_decref(v);
        return 1;
    }
    default:
        return 0;
    }
}

/* A message's role ('s' system or developer, 'u' user, 'a' assistant) and its string content,
 * its only two members: 1, or 0 for the tree. */
static int gf_message(ms_str v, int *role, ms_str *content)
{
    jscan_iter it;
    jscan_member x;
    ms_str r = {0};
    int got;
    content->p = NULL;
    if (jscan_iter_start(&it, v) != 0) return 0;
    while ((got = jscan_iter_member(&it, &x)) == 1) {
        if (!x.key_plain || x.type != JS_STRING) return 0;
        if (x.key.n == 4 && memcmp(x.key.p, "role", 4) == 0 && !r.p)
            r = x.value;
        else if (x.key.n == 7 && memcmp(x.key.p, "content", 7) == 0 && !content->p)
            *content = x.value;
        else
            return 0;
    }
    if (got < 0 || !r.p || !content->p) return 0;
#define GF_ROLE(lit) (r.n == sizeof(lit) - 1 && memcmp(r.p, lit, r.n) == 0)
    *role = GF_ROLE("\"user\"")                                 ? 'u'
            : GF_ROLE("\"assistant\"")                          ? 'a'
            : GF_ROLE("\"system\"") || GF_ROLE("\"developer\"") ? 's'
                                                                : 0;
#undef GF_ROLE
    return *role != 0;
}

/* contents: the user and model turns, a part a message, merged while the role stays (add_turn);
 * the system messages' texts into sys. 1, 0 for the tree, -1 out of memory. */
static int gf_contents(buf_t *b, ms_str msgs, ms_str *sys, size_t *nsys, int *turns)
{
    jscan_iter it;
    ms_str v, content;
    jscan_type t;
    int got, role, open = 0, rc = buf_appends(b, "{\"contents\":[");
    if (jscan_iter_start(&it, msgs) != 0) return 0;
    while ((got = jscan_iter_value(&it, &v, &t)) == 1) {
        if (t != JS_OBJECT || !gf_message(v, &role, &content)) return 0;
        if (role == 'a') ++*turns;
        if (content.n == 2) continue; /* "": no part (Gemini refuses empty ones), no turn */
        if (role == 's') {
            if (*nsys == GF_MAX_SYS) return 0;
            sys[(*nsys)++] = content;
            continue;
        }
        if (open == role) {
            rc |= buf_appends(b, ",{\"text\":");
        } else {
            if (open) rc |= buf_appends(b, "]},");
            rc |= buf_appends(b, role == 'u' ? "{\"role\":\"user\",\"parts\":[{\"text\":"
                                             : "{\"role\":\"model\",\"parts\":[{\"text\":");
            open = role;
        }
        rc |= prov_put_token_str(b, content) | buf_appends(b, "}");
        if (rc) return -1;
    }
    if (got < 0 || !open) return 0; /* no turn: the tree's refusal */
    return buf_appends(b, "]}]") ? -1 : 1;
}

/* The usual chat request written into u->scratch: 1, 0 when it is not one (scratch emptied),
 * -1 out of memory. */
static int gf_build(const prov_call *call, gem_state *st, prov_upreq *u)
{
    const jscan_member *m[GF_NKEYS];
    ms_str sys[GF_MAX_SYS];
    size_t nsys = 0, pass = 0;
    int turns = 0, rc;
    buf_t *b = &u->scratch;
    if (!gemini_build_fast || !gf_members(call, m, &pass)) return 0;
    if ((rc = gf_contents(b, m[GF_MESSAGES]->value, sys, &nsys, &turns)) != 1) {
        buf_reset(b);
        return rc;
    }
    rc = 0;
    for (size_t i = 0; i < nsys; i++) {
        rc |= buf_appends(b, i ? ",{\"text\":" : ",\"systemInstruction\":{\"parts\":[{\"text\":");
        rc |= prov_put_token_str(b, sys[i]) | buf_appends(b, "}");
    }
    if (nsys) rc |= buf_appends(b, "]}");
    const char *sep = ",\"generationConfig\":{";
    if (call->max_tokens >= 0) {
        rc |= buf_appends(b, sep) | buf_appends(b, "\"maxOutputTokens\":") |
              buf_append_dec(b, call->max_tokens);
        sep = ",";
    }
    static const char *const gk[] = {"\"temperature\":", "\"topP\":"};
    for (int k = GF_TEMPERATURE; k <= GF_TOP_P; k++) {
        if (!m[k]) continue;
        rc |= buf_appends(b, sep) | buf_appends(b, gk[k - GF_TEMPERATURE]);
        int nr = prov_put_token_num(b, m[k]->value);
        if (nr == 1) {
            buf_reset(b);
            return 0;
        }
        rc |= nr;
        sep = ",";
    }
    if (sep[0] == ',' && sep[1] == '\0') rc |= buf_appends(b, "}");
    for (size_t i = 0; pass && i < call->nmembers; i++) {
        const jscan_member *x = &call->members[i];
        size_t k = 0;
        while (k < GF_NKEYS && m[k] != x)
            k++;
        if (k < GF_NKEYS) continue;
        rc |= buf_appends(b, ",\"") | buf_append(b, x->key.p, x->key.n) | buf_appends(b, "\":");
        if (!gf_put_value(b, x, &rc)) {
            buf_reset(b);
            return 0;
        }
    }
    rc |= buf_appends(b, "}");
    if (rc) return -1;
    st->turn = turns;
    st->fast_built = 1;
    return 1;
}

/* The request translated into u->scratch. */
static int translated_body(const prov_call *call, gem_state *st, prov_upreq *u, prov_refusal *why)
{
    json_error_t je;
    json_t *req = prov_body_valid(call)
                      ? jtree_load_valid(call->body.p, call->body.n, &je)
                      : jtree_load(call->body.p, call->body.n, &je); /* jtree.h: why */
    if (!json_is_object(req)) {
        json_decref(req);
        prov_refuse(why, NULL, "We could not parse the JSON body of your request.");
        why->code = "invalid_json";
        return -2;
    }
    json_t *body = json_object();
    int rc = !body                 ? -1
             : call->ep == EP_CHAT ? build_chat(call, req, st, body, why)
                                   : build_embeddings(call, req, st, body, why);
    if (rc == 0 && prov_put_json(&u->scratch, body) != 0) rc = -1;
    if (!jarena_holds_all()) { /* else the scope's end frees both (common/jarena.h) */
        json_decref(body);
        json_decref(req);
    }
    return rc;
}

static int gem_build(const prov_call *call, void *stv, prov_upreq *u, prov_refusal *why)
{
    gem_state *st = stv;
    const cfg_provider *prov = call->dep->provider;
    const char *method = call->ep == EP_EMBEDDINGS ? ":batchEmbedContents"
                         : call->stream            ? ":streamGenerateContent?alt=sse"
                                                   : ":generateContent";
    if (gem_url(call, u, method) != 0) return -1;
    buf_init(&u->scratch, GEM_MAX_BODY);
    if (prov->api_key && prov->api_key[0] && prov_add_header(u, "x-goog-api-key: ", prov->api_key))
        return -1;
    if (prov_add_header(u, "Content-Type: ", "application/json")) return -1;
    if (call->stream && call->ep == EP_CHAT && prov_add_header(u, "Accept: ", "text/event-stream"))
        return -1;

    int rc = gf_build(call, st, u);
    if (rc < 0) return -1;
    if (rc == 0) {
        /* both trees live and die here: a scope of their own (common/jarena.h) */
        int scope = jarena_begin();
        rc = translated_body(call, st, u, why);
        jarena_end(scope);
        if (rc) return rc;
    }
    u->iov[0] = (up_iov){u->scratch.data, u->scratch.len};
    u->niov = 1;
    return 0;
}

const prov_adapter prov_gemini = {
    .api = WIRE_GEMINI,
    .state_size = sizeof(gem_state),
    .reset = gem_reset,
    .build = gem_build,
    .decode_answer = gemini_dec_answer,
    .decode_event = gemini_dec_event,
    .decode_len = gemini_dec_len,
    .decode_embeddings = gemini_dec_embeddings,
    .error_message = gemini_dec_error_message,
};
