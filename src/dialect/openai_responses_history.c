/*
 * The Responses API's conversation state, as the gateway keeps it for store: true and
 * previous_response_id (api/responses.c keeps the rows; this file knows the shapes). Three pure
 * functions, unit tested and fuzzed like the request side:
 *
 *   dialect_responses_object   finds the response object in what the client got (a whole answer,
 *                              or a passed-through stream's terminal event) and its id.
 *   dialect_responses_history  the conversation after a response as input items: the request's
 *                              input, then the response's output as a client sends it back.
 *   dialect_responses_continue a request with previous_response_id made whole: the stored
 *                              history spliced before its input, previous_response_id nulled.
 *
 * Why the gateway resolves previous_response_id itself instead of forwarding it: a continuation
 * may be served by another provider than the response it continues (routing, fail-over, a
 * fallback model), which knows nothing of it; and forwarding an id to a provider whose key all
 * accounts share would let one account continue another's conversation at that provider. Ids
 * are only ever looked up within the asking account.
 *
 * What the history keeps of an output (the shapes clients themselves send back, as the Vercel AI
 * SDK and Codex do when they hold the conversation):
 *   - message items: {"role":"assistant","content":[output_text and refusal parts]} without the
 *     item's id, status, annotations and logprobs: a provider asked to continue from an id it
 *     did not make (a gateway-made msg_ id at OpenAI) would refuse the request.
 *   - function_call items: type, call_id, name, arguments (call_id pairs the client's
 *     function_call_output; the item id is left out for the same reason).
 *   - reasoning items are left out: the gateway's are summaries of another provider's thinking
 *     (no provider can take them back), and OpenAI's reasoning can only be handed back by a
 *     client that asked for it encrypted. OpenAI documents reasoning items as optional context.
 *   - built-in tool calls (web_search_call...: only from OpenAI, when the request passed through)
 *     are left out: their results are in the message text that follows them.
 */
#include <jansson.h>
#include <string.h>

#include "common/jscan.h"
#include "common/util.h"
#include "dialect/responses_request.h"

#define RH_MAX_MEMBERS 64 /* top-level members read of a response object or event */

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* The member name of a scanned object, or NULL (names are compared raw: the gateway or the
 * provider wrote these objects, and neither escapes plain member names). */
static const jscan_member *member(ms_str obj, jscan_member *m, const char *name)
{
    int n = jscan_object(obj.p, obj.n, m, RH_MAX_MEMBERS, NULL);
    if (n <= 0) return NULL;
    return jscan_find(m, (size_t)(n > RH_MAX_MEMBERS ? RH_MAX_MEMBERS : n), name);
}

int dialect_responses_object(ms_str doc, int is_event, ms_str *obj, char *id, size_t idlen)
{
    jscan_member m[RH_MAX_MEMBERS];
    ms_str o = doc;
    if (is_event) {
        const jscan_member *r = member(doc, m, "response");
        if (!r || r->type != JS_OBJECT) return -1;
        o = r->value;
    }
    const jscan_member *im = member(o, m, "id");
    if (!im || im->type != JS_STRING) return -1;
    long n = jscan_string(im->value, id, idlen);
    if (n <= 0) return -1;
    for (long i = 0; i < n; i++)
        if (!id_char(id[i])) return -1;
    *obj = o;
    return 0;
}

/* An output message as the assistant turn a client sends back; NULL when it has no text. */
static json_t *assistant_turn(json_t *item)
{
    json_t *parts = json_array(), *p;
    size_t i;
    json_array_foreach(json_object_get(item, "content"), i, p)
    {
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!type) continue;
        if (!strcmp(type, "output_text") && json_is_string(json_object_get(p, "text")))
            json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "output_text", "text",
                                                   json_object_get(p, "text")));
        else if (!strcmp(type, "refusal") && json_is_string(json_object_get(p, "refusal")))
            json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "refusal", "refusal",
                                                   json_object_get(p, "refusal")));
    }
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return NULL;
    }
    return json_pack("{s:s, s:o}", "role", "assistant", "content", parts);
}

static json_t *function_call(json_t *item)
{
    json_t *cid = json_object_get(item, "call_id"), *name = json_object_get(item, "name"),
           *args = json_object_get(item, "arguments");
    if (!json_is_string(cid) || !json_is_string(name) || !json_is_string(args)) return NULL;
    return json_pack("{s:s, s:O, s:O, s:O}", "type", "function_call", "call_id", cid, "name", name,
                     "arguments", args);
}

/* Appends the output items of response that a continuation carries to list. */
static int append_output(json_t *list, json_t *response)
{
    json_t *item;
    size_t i;
    json_array_foreach(json_object_get(response, "output"), i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        json_t *turn = NULL;
        if (type && !strcmp(type, "message"))
            turn = assistant_turn(item);
        else if (type && !strcmp(type, "function_call"))
            turn = function_call(item);
        if (turn && json_array_append_new(list, turn) != 0) return -1;
    }
    return 0;
}

static int dump_into(json_t *v, buf_t *out)
{
    char *s = json_dumps(v, JSON_COMPACT);
    if (!s) return -1;
    int rc = buf_appends(out, s);
    free(s);
    return rc ? -1 : 0;
}

int dialect_responses_history(ms_str input, ms_str response, buf_t *out)
{
    json_error_t err;
    json_t *in = json_loadb(input.p, input.n, JSON_DECODE_ANY, &err);
    json_t *resp = json_loadb(response.p, response.n, 0, &err);
    json_t *list = NULL;
    int rc = -1;
    if (!in || !json_is_object(resp)) goto done;
    if (json_is_string(in)) {
        list = json_array();
        json_array_append_new(list, json_pack("{s:s, s:O}", "role", "user", "content", in));
    } else if (json_is_array(in)) {
        list = json_incref(in);
    } else {
        goto done;
    }
    if (append_output(list, resp) == 0) rc = dump_into(list, out);
done:
    json_decref(list);
    json_decref(in);
    json_decref(resp);
    return rc;
}

/* The text between an array's brackets, trimmed of white space ("" for an empty array). */
static int array_inner(ms_str a, ms_str *inner)
{
    size_t b = 0, e = a.n;
    while (b < e && (a.p[b] == ' ' || a.p[b] == '\t' || a.p[b] == '\n' || a.p[b] == '\r'))
        b++;
    while (e > b &&
           (a.p[e - 1] == ' ' || a.p[e - 1] == '\t' || a.p[e - 1] == '\n' || a.p[e - 1] == '\r'))
        e--;
    if (e - b < 2 || a.p[b] != '[' || a.p[e - 1] != ']') return -1;
    b++;
    e--;
    while (b < e && (a.p[b] == ' ' || a.p[b] == '\t' || a.p[b] == '\n' || a.p[b] == '\r'))
        b++;
    while (e > b &&
           (a.p[e - 1] == ' ' || a.p[e - 1] == '\t' || a.p[e - 1] == '\n' || a.p[e - 1] == '\r'))
        e--;
    *inner = (ms_str){a.p + b, e - b};
    return 0;
}

/* The new input: the history's items, then the request's (a string input is one user turn). */
static int merged_input(ms_str input, ms_str history, buf_t *out)
{
    ms_str h, items;
    if (array_inner(history, &h) != 0) return -1;
    int rc = buf_appends(out, "[");
    rc |= buf_append(out, h.p, h.n);
    if (input.n && input.p[0] == '"') {
        rc |= buf_appends(out, h.n ? ",{\"role\":\"user\",\"content\":"
                                   : "{\"role\":\"user\",\"content\":");
        rc |= buf_append(out, input.p, input.n);
        rc |= buf_appends(out, "}");
    } else {
        if (array_inner(input, &items) != 0) return -1;
        if (h.n && items.n) rc |= buf_appends(out, ",");
        rc |= buf_append(out, items.p, items.n);
    }
    return rc | buf_appends(out, "]") ? -1 : 0;
}

int dialect_responses_continue(ms_str body, ms_str input, ms_str prev, ms_str history, buf_t *out)
{
    /* both are members' values of body: spliced in the order they appear */
    size_t in_at = (size_t)(input.p - body.p), pv_at = (size_t)(prev.p - body.p);
    if (input.p < body.p || prev.p < body.p || in_at + input.n > body.n || pv_at + prev.n > body.n)
        return -1;
    int input_first = in_at < pv_at;
    size_t a_at = input_first ? in_at : pv_at, a_n = input_first ? input.n : prev.n;
    size_t b_at = input_first ? pv_at : in_at, b_n = input_first ? prev.n : input.n;
    if (a_at + a_n > b_at) return -1; /* overlapping: not two members */
    int rc = buf_append(out, body.p, a_at);
    rc |= input_first ? merged_input(input, history, out) : buf_appends(out, "null");
    rc |= buf_append(out, body.p + a_at + a_n, b_at - a_at - a_n);
    rc |= input_first ? buf_appends(out, "null") : merged_input(input, history, out);
    rc |= buf_append(out, body.p + b_at + b_n, body.n - b_at - b_n);
    return rc ? -1 : 0;
}
