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

int dialect_responses_merge(ms_str history, ms_str input, buf_t *out)
{
    ms_str h = {"", 0}, items;
    if (history.n && array_inner(history, &h) != 0) return -1;
    int rc = buf_appends(out, "[");
    rc |= buf_append(out, h.p, h.n);
    if (input.n && input.p[0] == '"') {
        rc |= buf_appends(out, h.n ? "," : "");
        rc |= buf_appends(out, "{\"role\":\"user\",\"content\":");
        rc |= buf_append(out, input.p, input.n);
        rc |= buf_appends(out, "}");
    } else {
        if (array_inner(input, &items) != 0) return -1;
        if (h.n && items.n) rc |= buf_appends(out, ",");
        rc |= buf_append(out, items.p, items.n);
    }
    return rc | buf_appends(out, "]") ? -1 : 0;
}

/* v lies inside body. */
static int within(ms_str body, ms_str v)
{
    return v.p >= body.p && (size_t)(v.p - body.p) + v.n <= body.n;
}

int dialect_responses_splice(ms_str body, ms_str input, ms_str new_input, ms_str prev, buf_t *out)
{
    if (!within(body, input) || (prev.n && !within(body, prev))) return -1;
    /* the two are members' values of body: each replaced where it lies, in order */
    ms_str first = input, second = prev;
    ms_str first_with = new_input, second_with = {"null", 4};
    if (prev.n && prev.p < input.p) {
        first = prev;
        second = input;
        first_with = (ms_str){"null", 4};
        second_with = new_input;
    }
    size_t a = (size_t)(first.p - body.p), a_end = a + first.n;
    int rc = buf_append(out, body.p, a);
    rc |= buf_append(out, first_with.p, first_with.n);
    if (!second.n) return rc | buf_append(out, body.p + a_end, body.n - a_end) ? -1 : 0;
    size_t b = (size_t)(second.p - body.p), b_end = b + second.n;
    if (b < a_end) return -1; /* overlapping: not two members */
    rc |= buf_append(out, body.p + a_end, b - a_end);
    rc |= buf_append(out, second_with.p, second_with.n);
    rc |= buf_append(out, body.p + b_end, body.n - b_end);
    return rc ? -1 : 0;
}

int dialect_responses_continue(ms_str body, ms_str input, ms_str prev, ms_str history, buf_t *out)
{
    buf_t merged;
    buf_init(&merged, out->cap);
    int rc = dialect_responses_merge(history, input, &merged);
    if (rc == 0)
        rc = dialect_responses_splice(body, input, (ms_str){merged.data, merged.len}, prev, out);
    buf_free(&merged);
    return rc;
}

/* ---- item_reference ---- */

int dialect_responses_item_response(const char *item_id, char *resp_id, size_t len)
{
    const char *hex = strchr(item_id, '_'), *idx = strrchr(item_id, '_');
    if (!hex || idx <= hex + 1 || !idx[1]) return -1;
    size_t plen = (size_t)(hex - item_id);
    if (!((plen == 3 && !strncmp(item_id, "msg", 3)) || (plen == 2 && !strncmp(item_id, "fc", 2)) ||
          (plen == 2 && !strncmp(item_id, "rs", 2))))
        return -1;
    for (const char *d = idx + 1; *d; d++)
        if (*d < '0' || *d > '9') return -1;
    int n = snprintf(resp_id, len, "resp_%.*s", (int)(idx - hex - 1), hex + 1);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* The output item named id in a stored response object (json text), as the item a client sends
 * back; *drop when it is one a continuation leaves out (reasoning). NULL when not there. */
static json_t *stored_item(ms_str response, const char *id, int *drop)
{
    json_error_t err;
    json_t *r = json_loadb(response.p, response.n, 0, &err), *item, *turn = NULL;
    size_t i;
    *drop = 0;
    json_array_foreach(json_object_get(r, "output"), i, item)
    {
        const char *iid = json_string_value(json_object_get(item, "id"));
        if (!iid || strcmp(iid, id) != 0) continue;
        const char *type = json_string_value(json_object_get(item, "type"));
        if (type && !strcmp(type, "message"))
            turn = assistant_turn(item);
        else if (type && !strcmp(type, "function_call"))
            turn = function_call(item);
        *drop = !turn; /* reasoning, or a message without text: nothing to carry */
        break;
    }
    json_decref(r);
    return turn;
}

int dialect_responses_resolve(ms_str input, dialect_responses_lookup lookup, void *ud, buf_t *out)
{
    json_error_t err;
    json_t *in = json_loadb(input.p, input.n, 0, &err), *item;
    if (!json_is_array(in)) {
        json_decref(in);
        return -1;
    }
    json_t *list = json_array();
    size_t i;
    int resolved = 0;
    json_array_foreach(in, i, item)
    {
        const char *type = json_string_value(json_object_get(item, "type"));
        const char *id = json_string_value(json_object_get(item, "id"));
        char resp_id[160];
        ms_str stored;
        json_t *turn = NULL;
        int drop = 0;
        if (type && id && !strcmp(type, "item_reference") &&
            dialect_responses_item_response(id, resp_id, sizeof resp_id) == 0 &&
            lookup(ud, resp_id, &stored) == 0) {
            turn = stored_item(stored, id, &drop);
            resolved += turn || drop;
        }
        if (!drop) json_array_append_new(list, turn ? turn : json_incref(item));
    }
    int rc = resolved ? dump_into(list, out) : 1;
    json_decref(list);
    json_decref(in);
    return rc;
}
