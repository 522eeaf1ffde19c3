/*
 * Routing, authentication and the shared error answers of the API layer (see api.h).
 *
 * Routes are few and fixed, so they are matched with plain comparisons rather than a table
 * walk. A known path with the wrong method answers 405 with Allow; anything else 404. Every /v1/
 * route authenticates a proxy key before it looks at the body, as OpenAI does, so an
 * unauthenticated client learns nothing about the request it sent.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "auth/keys.h"
#include "common/util.h"

void api_new_request_id(worker_t *w, char *out)
{
    /* A per-worker counter mixed with a per-worker random salt: unique and cheap, no syscall. */
    uint64_t x = w->rid_salt ^ (++w->rid_seq * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    snprintf(out, 40, "req_%08" PRIx64 "%016" PRIx64, (w->rid_salt >> 32) ^ (uint64_t)w->id, x);
}

void api_err_invalid_json(http_conn *c, const char *detail)
{
    char msg[200];
    snprintf(msg, sizeof msg, "We could not parse the JSON body of your request: %s", detail);
    http_error(c, 400, "invalid_request_error", "invalid_json", NULL, msg, -1);
}

void api_err_missing(http_conn *c, const char *param)
{
    char msg[160];
    snprintf(msg, sizeof msg, "Missing required parameter: '%s'.", param);
    http_error(c, 400, "invalid_request_error", "missing_required_parameter", param, msg, -1);
}

void api_err_invalid(http_conn *c, const char *param, const char *message)
{
    http_error(c, 400, "invalid_request_error", "invalid_parameter", param, message, -1);
}

void api_err_model_not_found(http_conn *c, const char *model)
{
    char msg[300];
    snprintf(msg, sizeof msg, "The model '%.200s' does not exist or you do not have access to it.",
             model);
    http_error(c, 404, "not_found_error", "model_not_found", "model", msg, -1);
}

void api_err_internal(http_conn *c)
{
    http_error(c, 500, "api_error", "internal_error", NULL,
               "The gateway had an internal error while processing your request.", -1);
}

int api_authenticate(http_conn *c, http_request *r, key_type want, store_key *key)
{
    ms_str a = r->authorization;
    /* "Bearer" is case-insensitive in RFC 6750 practice; the key itself is not */
    if (a.n < 8 || strncasecmp(a.p, "Bearer ", 7) != 0) {
        http_error(c, 401, "authentication_error", "missing_api_key", NULL,
                   "You didn't provide an API key. Provide it in the Authorization header as "
                   "'Bearer YOUR_KEY'.",
                   -1);
        return -1;
    }
    const char *k = a.p + 7;
    size_t n = a.n - 7;
    while (n && (*k == ' ' || *k == '\t')) {
        k++;
        n--;
    }
    while (n && (k[n - 1] == ' ' || k[n - 1] == '\t'))
        n--;
    if (n == 0) {
        http_error(c, 401, "authentication_error", "missing_api_key", NULL,
                   "You didn't provide an API key. Provide it in the Authorization header as "
                   "'Bearer YOUR_KEY'.",
                   -1);
        return -1;
    }
    kc_status st = kc_lookup(c->w->kc, k, n, ms_now_ms(), key);
    if (st == KC_NOT_FOUND) {
        http_error(c, 401, "invalid_request_error", "invalid_api_key", NULL, "Invalid API key",
                   -1);
        return -1;
    }
    snprintf(r->log_account, sizeof r->log_account, "%" PRId64, key->account_id);
    snprintf(r->log_key, sizeof r->log_key, "%s", key->prefix);
    if (st == KC_EXPIRED) {
        http_error(c, 401, "authentication_error", "expired_api_key", NULL,
                   "This API key has expired.", -1);
        return -1;
    }
    if (st == KC_INACTIVE) {
        http_error(c, 403, "permission_error", "key_deactivated", NULL,
                   "This API key has been deactivated.", -1);
        return -1;
    }
    if (key->type != want) {
        http_error(c, 403, "permission_error", "wrong_key_type", NULL,
                   want == KEY_PROXY
                       ? "Billing keys (mk-) cannot be used for inference; use a proxy key (ms-)."
                       : "Proxy keys (ms-) cannot be used for account management; use a billing "
                         "key (mk-).",
                   -1);
        return -1;
    }
    return 0;
}

static void method_not_allowed(http_conn *c, const char *allow)
{
    char h[64];
    snprintf(h, sizeof h, "allow: %s\r\n", allow);
    /* http_error has no header parameter, so the Allow line rides on the extra headers */
    http_set_extra_headers(c, h);
    http_error(c, 405, "invalid_request_error", "method_not_allowed", NULL,
               "This method is not allowed on this path.", -1);
}

static void not_found(http_conn *c)
{
    http_error(c, 404, "not_found_error", "not_found", NULL, "Unknown route.", -1);
}

void api_dispatch(http_conn *c, http_request *r)
{
    ms_str p = r->path;
    int get = r->method == HTTP_GET, post = r->method == HTTP_POST;

    if (ms_str_eq(p, "/healthz")) {
        if (!get)
            return method_not_allowed(c, "GET");
        static const char ok[] = "{\"status\":\"ok\"}";
        http_respond(c, 200, "application/json", NULL, ok, sizeof ok - 1, 0);
        return;
    }
    if (ms_str_eq(p, "/v1/chat/completions")) {
        if (!post)
            return method_not_allowed(c, "POST");
        return api_chat_completions(c, r);
    }
    if (ms_str_eq(p, "/v1/embeddings")) {
        if (!post)
            return method_not_allowed(c, "POST");
        return api_embeddings(c, r);
    }
    if (ms_str_eq(p, "/v1/models")) {
        if (!get)
            return method_not_allowed(c, "GET");
        return api_models_list(c, r);
    }
    if (p.n > 11 && memcmp(p.p, "/v1/models/", 11) == 0) {
        if (!get)
            return method_not_allowed(c, "GET");
        return api_models_get(c, r, (ms_str){p.p + 11, p.n - 11});
    }
    if (p.n >= 4 && memcmp(p.p, "/v1/", 4) == 0) {
        /* Unknown inference routes still need a valid key first, like OpenAI. */
        store_key key;
        if (api_authenticate(c, r, KEY_PROXY, &key) != 0)
            return;
    }
    if (p.n >= 5 && memcmp(p.p, "/api/", 5) == 0) {
        store_key key;
        if (api_authenticate(c, r, KEY_BILLING, &key) != 0)
            return;
    }
    not_found(c);
}
