/*
 * POST /v1/chat/completions and POST /v1/embeddings: authenticate, validate the few fields the
 * gateway relies on (the rest of the body passes through unread), resolve the model to a
 * deployment, and hand the request to the echo provider or to an upstream adapter.
 *
 * Validation scans the body once with jscan (no tree, no copy). Field errors name the field in
 * `param`, as OpenAI does, so SDK users see which field is wrong.
 */
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/proxy.h"
#include "common/util.h"

/* The fields each endpoint acts on; [0] is always model. A name given twice is refused
 * (jscan_pick_unique says why). */
enum { F_MODEL, F_MESSAGES, F_STREAM, F_STREAM_OPTIONS, F_MAX_TOKENS, F_MAX_COMPLETION_TOKENS };
static const jscan_key chat_fields[] = {
    JSCAN_KEY("model"),          JSCAN_KEY("messages"),   JSCAN_KEY("stream"),
    JSCAN_KEY("stream_options"), JSCAN_KEY("max_tokens"), JSCAN_KEY("max_completion_tokens")};
enum { F_INPUT = 1, F_ENCODING_FORMAT };
static const jscan_key embedding_fields[] = {JSCAN_KEY("model"), JSCAN_KEY("input"),
                                             JSCAN_KEY("encoding_format")};
#define FIELDS_MAX 6

static void err_duplicate(http_conn *c, const char *field)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "The field '%s' appears more than once in the request body; give it once.", field);
    api_err_invalid(c, field, msg);
}

/* The model exists, but every provider of it is disabled for want of an API key: a 404 would
 * send the user looking for a typo. 503, as for a model with no deployment available, but not
 * worth an automatic retry: only the operator can fix it. */
static void err_unconfigured(http_conn *c, const cfg_model *model)
{
    const cfg_provider *p = model->unconfigured;
    char msg[400];
    if (p->api_key_var[0])
        snprintf(msg, sizeof msg,
                 "The model '%s' is configured, but its provider '%s' has no API key: the "
                 "operator must set %s for the gateway.",
                 model->name, p->name, p->api_key_var);
    else
        snprintf(msg, sizeof msg,
                 "The model '%s' is configured, but its provider '%s' has no API key: the "
                 "operator must set its api_key.",
                 model->name, p->name);
    http_add_extra_header(c, "x-should-retry: false\r\n");
    http_error(c, 503, "service_unavailable_error", "provider_not_configured", "model", msg, 60000);
}

/* A model name as the client sent it, printable: control characters (a NUL among them) are
 * shown as \u00XX, so a message never claims that "echo-1\u0000x" is "echo-1". */
static void printable_name(const char *name, size_t len, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < len && k + 7 < outlen; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 0x20 && ch != 0x7f) {
            out[k++] = (char)ch;
        } else {
            static const char hex[] = "0123456789abcdef";
            memcpy(out + k, "\\u00", 4);
            out[k + 4] = hex[ch >> 4];
            out[k + 5] = hex[ch & 15];
            k += 6;
        }
    }
    out[k] = '\0';
}

/* Scans the body, picks the endpoint's fields into f and resolves the model. Returns the call,
 * or NULL when an error has been answered. */
static prov_call *begin_call(http_conn *c, http_request *r, prov_endpoint ep, store_key *key,
                             const jscan_key *fields, size_t nfields, const jscan_member **f)
{
    if (api_authenticate(c, r, KEY_PROXY, key) != 0) return NULL;
    prov_call *call = malloc(sizeof *call);
    if (!call) {
        api_err_internal(c);
        return NULL;
    }
    memset(call, 0, offsetof(prov_call, members)); /* the members are written by the scan */
    call->ep = ep;
    call->dialect = &dialect_openai_chat;
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    call->max_tokens = -1;
    size_t err_off = 0;
    int n = jscan_object(r->body.p, r->body.n, call->members, PROV_MAX_MEMBERS, &err_off);
    if (n == JSCAN_INVALID || n == JSCAN_NOT_OBJECT) {
        char detail[96];
        if (r->body.n == 0)
            snprintf(detail, sizeof detail, "the body is empty");
        else if (n == JSCAN_NOT_OBJECT)
            snprintf(detail, sizeof detail, "the body must be a JSON object");
        else
            snprintf(detail, sizeof detail, "invalid JSON at byte %zu", err_off);
        free(call);
        api_err_invalid_json(c, detail);
        return NULL;
    }
    if (n > PROV_MAX_MEMBERS) {
        free(call);
        api_err_invalid(c, NULL, "The request body has too many top-level fields.");
        return NULL;
    }
    call->nmembers = (size_t)n;
    int dup = jscan_pick_unique(call->members, call->nmembers, fields, nfields, f);
    if (dup >= 0) {
        free(call);
        err_duplicate(c, fields[dup].s);
        return NULL;
    }
    const jscan_member *m = f[F_MODEL];
    if (!m) {
        free(call);
        api_err_missing(c, "model");
        return NULL;
    }
    char name[256], shown[256];
    long len = m->type == JS_STRING ? jscan_string(m->value, name, sizeof name) : -1;
    if (len <= 0) {
        free(call);
        api_err_invalid(c, "model", "'model' must be a non-empty string naming a model.");
        return NULL;
    }
    call->m_model = m;
    printable_name(name, (size_t)len, shown, sizeof shown);
    ms_copy(r->log_model, sizeof r->log_model, shown);
    /* by length: a name with a NUL inside is not the name before the NUL */
    const cfg_model *model = cfg_find_model(c->w->cfg, name, (size_t)len);
    if (model && model->ndeployments == 0 && model->unconfigured) {
        free(call);
        err_unconfigured(c, model);
        return NULL;
    }
    if (!model || model->ndeployments == 0) {
        free(call);
        api_err_model_not_found(c, shown);
        return NULL;
    }
    call->model = model;
    return call;
}

static int check_bool(http_conn *c, const jscan_member *m, const char *param, int *out)
{
    if (!m || m->type == JS_NULL) return 0;
    if (m->type != JS_TRUE && m->type != JS_FALSE) {
        char msg[128];
        snprintf(msg, sizeof msg, "'%s' must be a boolean.", param);
        api_err_invalid(c, param, msg);
        return -1;
    }
    *out = m->type == JS_TRUE;
    return 0;
}

static void dispatch_call(http_conn *c, prov_call *call, const store_key *key)
{
    /* nothing goes upstream before the rate limits and the worst case are covered */
    api_settlement *s = api_admit(c, call, key);
    if (!s) {
        free(call);
        return;
    }
    proxy_start(c, call, s);
}

/* "[ ]" and "[]" both mean an empty array. */
static int empty_array(ms_str v)
{
    size_t k = 1;
    while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\n' || v.p[k] == '\r' || v.p[k] == '\t'))
        k++;
    return k < v.n && v.p[k] == ']';
}

/* stream_options: an object (or null) whose include_usage, if present, is a boolean given once.
 * Returns 0, or -1 when an error has been answered. */
static int check_stream_options(http_conn *c, prov_call *call, const jscan_member *so)
{
    if (!so || so->type == JS_NULL) return 0;
    if (so->type != JS_OBJECT) {
        api_err_invalid(c, "stream_options", "'stream_options' must be an object.");
        return -1;
    }
    jscan_member sm[PROV_MAX_STREAM_OPTIONS];
    int sn = jscan_members(so->value, sm, PROV_MAX_STREAM_OPTIONS);
    if (sn > PROV_MAX_STREAM_OPTIONS) {
        /* the splice copies every option it keeps; none may be dropped unseen */
        api_err_invalid(c, "stream_options", "'stream_options' has too many fields.");
        return -1;
    }
    static const jscan_key iu_key[] = {JSCAN_KEY("include_usage")};
    const jscan_member *iu;
    if (jscan_pick_unique(sm, sn > 0 ? (size_t)sn : 0, iu_key, 1, &iu) >= 0) {
        err_duplicate(c, "stream_options.include_usage");
        return -1;
    }
    return check_bool(c, iu, "stream_options.include_usage", &call->client_include_usage);
}

void api_chat_completions(http_conn *c, http_request *r)
{
    store_key key;
    const jscan_member *f[FIELDS_MAX];
    prov_call *call =
        begin_call(c, r, EP_CHAT, &key, chat_fields, sizeof chat_fields / sizeof *chat_fields, f);
    if (!call) return;
    const jscan_member *msgs = f[F_MESSAGES];
    if (!msgs) {
        free(call);
        return api_err_missing(c, "messages");
    }
    if (msgs->type != JS_ARRAY) {
        free(call);
        return api_err_invalid(c, "messages", "'messages' must be an array of message objects.");
    }
    if (empty_array(msgs->value)) {
        free(call);
        return api_err_invalid(c, "messages", "'messages' must contain at least one message.");
    }
    if (check_bool(c, f[F_STREAM], "stream", &call->stream) != 0) {
        free(call);
        return;
    }
    for (int i = F_MAX_TOKENS; i <= F_MAX_COMPLETION_TOKENS; i++) {
        const jscan_member *mt = f[i];
        if (!mt || mt->type == JS_NULL) continue;
        int64_t v;
        if (mt->type != JS_NUMBER || jscan_int(mt->value, &v) != 0 || v < 1) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' must be an integer of at least 1.", chat_fields[i].s);
            free(call);
            return api_err_invalid(c, chat_fields[i].s, msg);
        }
        call->max_tokens = v;
    }
    const jscan_member *so = f[F_STREAM_OPTIONS];
    if (check_stream_options(c, call, so) != 0) {
        free(call);
        return;
    }
    if (so && (so->type != JS_NULL || call->stream)) call->m_stream_options = so;
    dispatch_call(c, call, &key);
}

void api_embeddings(http_conn *c, http_request *r)
{
    store_key key;
    const jscan_member *f[FIELDS_MAX];
    prov_call *call = begin_call(c, r, EP_EMBEDDINGS, &key, embedding_fields,
                                 sizeof embedding_fields / sizeof *embedding_fields, f);
    if (!call) return;
    const jscan_member *in = f[F_INPUT];
    if (!in) {
        free(call);
        return api_err_missing(c, "input");
    }
    if (in->type != JS_STRING && in->type != JS_ARRAY) {
        free(call);
        return api_err_invalid(c, "input", "'input' must be a string or an array.");
    }
    if (in->type == JS_ARRAY && empty_array(in->value)) {
        free(call);
        return api_err_invalid(c, "input", "'input' must not be empty.");
    }
    const jscan_member *ef = f[F_ENCODING_FORMAT];
    if (ef && ef->type != JS_NULL) {
        char fmt[16];
        long fl = ef->type == JS_STRING ? jscan_string(ef->value, fmt, sizeof fmt) : -1;
        if (fl < 0 || !((fl == 5 && memcmp(fmt, "float", 5) == 0) ||
                        (fl == 6 && memcmp(fmt, "base64", 6) == 0))) {
            free(call);
            return api_err_invalid(c, "encoding_format",
                                   "'encoding_format' must be 'float' or 'base64'.");
        }
    }
    dispatch_call(c, call, &key);
}
