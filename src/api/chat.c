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

/* Scans the body and the fields common to both endpoints. Returns the call, or NULL when an
 * error has been answered. */
static prov_call *begin_call(http_conn *c, http_request *r, prov_endpoint ep, store_key *key)
{
    if (api_authenticate(c, r, KEY_PROXY, key) != 0) return NULL;
    prov_call *call = malloc(sizeof *call);
    if (!call) {
        api_err_internal(c);
        return NULL;
    }
    memset(call, 0, offsetof(prov_call, members)); /* the members are written by the scan */
    call->ep = ep;
    call->body = r->body;
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
    const jscan_member *m = jscan_find(call->members, call->nmembers, "model");
    if (!m) {
        free(call);
        api_err_missing(c, "model");
        return NULL;
    }
    char name[256];
    if (m->type != JS_STRING || jscan_string(m->value, name, sizeof name) <= 0) {
        free(call);
        api_err_invalid(c, "model", "'model' must be a non-empty string naming a model.");
        return NULL;
    }
    call->m_model = m;
    snprintf(r->log_model, sizeof r->log_model, "%s", name);
    const cfg_model *model = cfg_find_model(c->w->cfg, name, strlen(name));
    if (!model || model->ndeployments == 0) {
        free(call);
        api_err_model_not_found(c, name);
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
    if (api_admit(c, call, key) != 0) {
        free(call);
        return;
    }
    proxy_start(c, call);
}

void api_chat_completions(http_conn *c, http_request *r)
{
    store_key key;
    prov_call *call = begin_call(c, r, EP_CHAT, &key);
    if (!call) return;
    const jscan_member *msgs = jscan_find(call->members, call->nmembers, "messages");
    if (!msgs) {
        free(call);
        return api_err_missing(c, "messages");
    }
    if (msgs->type != JS_ARRAY) {
        free(call);
        return api_err_invalid(c, "messages", "'messages' must be an array of message objects.");
    }
    /* "[ ]" and "[]" both mean no messages */
    size_t k = 1;
    while (k < msgs->value.n && (msgs->value.p[k] == ' ' || msgs->value.p[k] == '\n' ||
                                 msgs->value.p[k] == '\r' || msgs->value.p[k] == '\t'))
        k++;
    if (msgs->value.p[k] == ']') {
        free(call);
        return api_err_invalid(c, "messages", "'messages' must contain at least one message.");
    }
    if (check_bool(c, jscan_find(call->members, call->nmembers, "stream"), "stream",
                   &call->stream) != 0) {
        free(call);
        return;
    }
    static const char *const limits[] = {"max_tokens", "max_completion_tokens"};
    for (int i = 0; i < 2; i++) {
        const jscan_member *mt = jscan_find(call->members, call->nmembers, limits[i]);
        if (!mt || mt->type == JS_NULL) continue;
        int64_t v;
        if (mt->type != JS_NUMBER || jscan_int(mt->value, &v) != 0 || v < 1) {
            char msg[128];
            snprintf(msg, sizeof msg, "'%s' must be an integer of at least 1.", limits[i]);
            free(call);
            return api_err_invalid(c, limits[i], msg);
        }
        call->max_tokens = v;
    }
    const jscan_member *so = jscan_find(call->members, call->nmembers, "stream_options");
    if (so && so->type != JS_NULL) {
        if (so->type != JS_OBJECT) {
            free(call);
            return api_err_invalid(c, "stream_options", "'stream_options' must be an object.");
        }
        jscan_member sm[16];
        int sn = jscan_members(so->value, sm, 16);
        const jscan_member *iu =
            sn > 0 ? jscan_find(sm, (size_t)(sn > 16 ? 16 : sn), "include_usage") : NULL;
        if (check_bool(c, iu, "stream_options.include_usage", &call->client_include_usage)) {
            free(call);
            return;
        }
    }
    if (so && (so->type != JS_NULL || call->stream)) call->m_stream_options = so;
    dispatch_call(c, call, &key);
}

void api_embeddings(http_conn *c, http_request *r)
{
    store_key key;
    prov_call *call = begin_call(c, r, EP_EMBEDDINGS, &key);
    if (!call) return;
    const jscan_member *in = jscan_find(call->members, call->nmembers, "input");
    if (!in) {
        free(call);
        return api_err_missing(c, "input");
    }
    if (in->type != JS_STRING && in->type != JS_ARRAY) {
        free(call);
        return api_err_invalid(c, "input", "'input' must be a string or an array.");
    }
    if (in->type == JS_ARRAY) {
        size_t k = 1;
        while (k < in->value.n && (in->value.p[k] == ' ' || in->value.p[k] == '\n' ||
                                   in->value.p[k] == '\r' || in->value.p[k] == '\t'))
            k++;
        if (in->value.p[k] == ']') {
            free(call);
            return api_err_invalid(c, "input", "'input' must not be empty.");
        }
    }
    const jscan_member *ef = jscan_find(call->members, call->nmembers, "encoding_format");
    if (ef && ef->type != JS_NULL) {
        char fmt[16];
        if (ef->type != JS_STRING || jscan_string(ef->value, fmt, sizeof fmt) < 0 ||
            (strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0)) {
            free(call);
            return api_err_invalid(c, "encoding_format",
                                   "'encoding_format' must be 'float' or 'base64'.");
        }
    }
    dispatch_call(c, call, &key);
}
