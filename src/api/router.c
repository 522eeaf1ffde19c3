/*
 * Routing, authentication and the shared error answers of the API layer (see api.h).
 *
 * Routes are few and fixed, so they are matched with plain comparisons rather than a table
 * walk. A known path with the wrong method answers 405 with Allow; anything else 404. Every /v1/
 * route authenticates a proxy key before it looks at the body, as OpenAI does, so an
 * unauthenticated client learns nothing about the request it sent. The same holds for /api/
 * (billing keys, account.c) and /admin/ (the admin token, admin.c): an unknown path there is a
 * 404 only for a caller who got through authentication. /admin/ does not exist at all (404 for
 * every path) when no admin token is configured. /healthz and /readyz are public; /metrics takes
 * the admin token too (and is absent without one), unless server.metrics_public opens it. The web
 * dashboard ("/", "/dashboard/...", dashboard.c) is matched after all of them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "api/dashboard.h"
#include "api/job.h"
#include "api/proxy.h"
#include "shared/shared.h"
#include "api/stats.h"
#include "cache/rcache.h"
#include "auth/keys.h"
#include "common/util.h"

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

void api_refuse(http_conn *c, const dialect_refusal *why)
{
    if (why->no_retry) http_add_extra_header(c, "x-should-retry: false\r\n");
    http_error(c, why->status, why->type, why->code, why->param, why->message,
               why->retry_after_ms > 0 ? why->retry_after_ms : -1);
}

void api_err_internal(http_conn *c)
{
    http_error(c, 500, "api_error", "internal_error", NULL,
               "The gateway had an internal error while processing your request.", -1);
}

void api_err_not_found(http_conn *c, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "No such %s.", what);
    http_error(c, 404, "not_found_error", "not_found", NULL, msg, -1);
}

/* The credential of "Bearer <credential>", trimmed; -1 when there is none. */
static int bearer_token(ms_str a, const char **out, size_t *outlen)
{
    /* "Bearer" is case-insensitive in RFC 6750 practice; the key itself is not */
    if (a.n >= 8 && strncasecmp(a.p, "Bearer ", 7) == 0) {
        const char *k = a.p + 7;
        size_t n = a.n - 7;
        while (n && (*k == ' ' || *k == '\t')) {
            k++;
            n--;
        }
        while (n && (k[n - 1] == ' ' || k[n - 1] == '\t'))
            n--;
        if (n) {
            *out = k;
            *outlen = n;
            return 0;
        }
    }
    return -1;
}

/* s without surrounding blanks. */
static ms_str trim(ms_str s)
{
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.n--;
    }
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

/* The key of "x-api-key: <key>" (Anthropic's SDKs) or "Authorization: Bearer <key>". Both
 * present must name the same key: a request must not be billed to a key it did not choose. On
 * failure the error has been sent and -1 is returned. */
static int bearer(http_conn *c, http_request *r, const char **out, size_t *outlen)
{
    ms_str x = trim(r->api_key);
    if (x.n && r->authorization.n == 0) {
        *out = x.p;
        *outlen = x.n;
        return 0;
    }
    if (x.n) {
        const char *k;
        size_t n;
        if (bearer_token(r->authorization, &k, &n) == 0 && n == x.n && memcmp(k, x.p, n) == 0) {
            *out = k;
            *outlen = n;
            return 0;
        }
        http_error(c, 400, "invalid_request_error", "invalid_request", NULL,
                   "The request has both an x-api-key and an Authorization header, and they "
                   "differ: send one key.",
                   -1);
        return -1;
    }
    if (bearer_token(r->authorization, out, outlen) == 0) return 0;
    http_error(c, 401, "authentication_error", "missing_api_key", NULL,
               "You didn't provide an API key. Provide it in the Authorization header as "
               "'Bearer YOUR_KEY' (or, for /v1/messages, as x-api-key).",
               -1);
    return -1;
}

int api_authenticate(http_conn *c, http_request *r, key_type want, store_key *key)
{
    const char *k;
    size_t n;
    if (bearer(c, r, &k, &n) != 0) return -1;
    kc_status st;
    if (n == c->auth_key_len && ms_ct_equal(k, c->auth_key, n)) {
        st = kc_lookup_local(c->w->kc, &c->w->kcl, c->auth_hash, ms_loop_now_ms(), key);
    } else if (!key_well_formed(k, n, NULL)) {
        st = KC_NOT_FOUND;
    } else {
        key_hash(k, n, c->auth_hash);
        if (n <= sizeof c->auth_key) {
            memcpy(c->auth_key, k, n);
            c->auth_key_len = n;
        } else {
            c->auth_key_len = 0;
        }
        st = kc_lookup_local(c->w->kc, &c->w->kcl, c->auth_hash, ms_loop_now_ms(), key);
    }
    if (st == KC_NOT_FOUND) {
        http_error(c, 401, "invalid_request_error", "invalid_api_key", NULL, "Invalid API key", -1);
        return -1;
    }
    _Static_assert(sizeof r->log_account >= 21, "an int64 in decimal with its NUL");
    *ms_i64_dec(key->account_id, r->log_account) = '\0';
    ms_copy(r->log_key, sizeof r->log_key, key->prefix);
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
    /* every /v1/ answer from here on says where the key stands (admission refreshes it) */
    if (want == KEY_PROXY) api_rate_headers(c, key);
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

/* 1 when the request's method is one of allow ("GET, POST"). */
static int method_in(http_request *r, const char *allow)
{
    const char *name = r->method_name;
    size_t n = strlen(name);
    if (n == 0) return 0;
    for (const char *p = allow; (p = strstr(p, name)) != NULL; p += n) {
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0')) return 1;
    }
    return 0;
}

/* Takes prefix off *p when *p starts with it. */
static int eat(ms_str *p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (p->n < n || memcmp(p->p, prefix, n) != 0) return 0;
    p->p += n;
    p->n -= n;
    return 1;
}

/* A path id: 1 to 18 digits, not 0. Takes it off *p; returns it, or 0 when there is none. */
static int64_t eat_id(ms_str *p)
{
    int64_t v = 0;
    size_t i = 0;
    while (i < p->n && i < 18 && p->p[i] >= '0' && p->p[i] <= '9')
        v = v * 10 + (p->p[i++] - '0');
    if (v == 0 || (i < p->n && p->p[i] != '/')) return 0;
    p->p += i;
    p->n -= i;
    return v;
}

/* The route functions below take head: set when only the request's headers are here (the head
 * check, see api_head_check); they then answer what the headers decide (404, 405, a refused key)
 * and return 0 for a request that may go on to its body, -1 when it was answered. Without head
 * they go on to the endpoint. */

/* /api/...: the account API behind a billing key. */
static int route_api(http_conn *c, http_request *r, int head)
{
    ms_str p = r->path;
    const char *allow = NULL;
    acct_route route = ACCT_BALANCE;
    key_type type = KEY_PROXY;
    int64_t id = 0;

    eat(&p, "/api/");
    if (ms_str_eq(p, "balance")) {
        allow = "GET";
    } else if (ms_str_eq(p, "usage")) {
        route = ACCT_USAGE, allow = "GET";
    } else if (ms_str_eq(p, "usage/stats")) {
        route = ACCT_USAGE_STATS, allow = "GET";
    } else if (ms_str_eq(p, "transactions")) {
        route = ACCT_TRANSACTIONS, allow = "GET";
    } else if (ms_str_eq(p, "settings/notifications")) {
        route = ACCT_NOTIFICATIONS, allow = "GET, PUT";
    } else if (eat(&p, "keys") || (eat(&p, "billing-keys") && (type = KEY_BILLING, 1))) {
        if (p.n == 0) {
            route = ACCT_KEYS, allow = "GET, POST";
        } else if (eat(&p, "/")) {
            route = ACCT_KEY, allow = "GET, PUT, DELETE";
            id = eat_id(&p);
            if (!id || p.n) allow = NULL; /* /api/keys/abc: no such resource */
        }
    }
    if (allow && !method_in(r, allow)) {
        method_not_allowed(c, allow);
        return -1;
    }
    store_key key;
    if (api_authenticate(c, r, KEY_BILLING, &key) != 0) return -1;
    if (!allow) {
        not_found(c);
        return -1;
    }
    if (head) return 0;
    api_account(c, r, &key, route, type, id);
    return 0;
}

/* Checks the admin token in constant time. On failure the 401 has been sent. */
static int admin_authenticate(http_conn *c, http_request *r, const char *token)
{
    const char *k;
    size_t n;
    unsigned char got[32], want[32];
    if (bearer(c, r, &k, &n) != 0) return -1;
    /* Comparing digests keeps the time independent of where (and whether) the lengths or the
     * bytes differ. */
    key_hash(k, n, got);
    key_hash(token, strlen(token), want);
    if (!ms_ct_equal(got, want, sizeof got)) {
        http_error(c, 401, "invalid_request_error", "invalid_api_key", NULL, "Invalid API key", -1);
        return -1;
    }
    snprintf(r->log_key, sizeof r->log_key, "admin");
    return 0;
}

/* The operator's token, for a route outside /admin/ that wants it (/metrics): a 404 when none is
 * configured, as /admin/ is then (the route does not exist), else as admin_authenticate. */
static int route_admin_token(http_conn *c, http_request *r)
{
    const char *token = c->w->cfg->admin_token;
    if (!token || !*token) {
        not_found(c);
        return -1;
    }
    return admin_authenticate(c, r, token);
}

/* /admin/...: the operator API behind the admin token. */
static int route_admin(http_conn *c, http_request *r, int head)
{
    const char *token = c->w->cfg->admin_token;
    ms_str p = r->path;
    const char *allow = NULL;
    admin_route route = ADMIN_ACCOUNTS;
    int64_t id = 0;

    if (!token || !*token) {
        not_found(c); /* disabled: the operator API does not exist */
        return -1;
    }
    eat(&p, "/admin/");
    if (ms_str_eq(p, "accounts")) {
        allow = "GET, POST";
    } else if (eat(&p, "accounts/") && (id = eat_id(&p)) != 0) {
        if (p.n == 0)
            route = ADMIN_ACCOUNT, allow = "GET";
        else if (ms_str_eq(p, "/topup"))
            route = ADMIN_TOPUP, allow = "POST";
        else if (ms_str_eq(p, "/billing-keys"))
            route = ADMIN_BILLING_KEYS, allow = "POST";
    }
    if (allow && !method_in(r, allow)) {
        method_not_allowed(c, allow);
        return -1;
    }
    if (admin_authenticate(c, r, token) != 0) return -1;
    if (!allow) {
        not_found(c);
        return -1;
    }
    if (head) return 0;
    api_admin(c, r, route, id);
    return 0;
}

static int route(http_conn *c, http_request *r, int head)
{
    ms_str p = r->path;
    int get = r->method == HTTP_M_GET, post = r->method == HTTP_M_POST;
    store_key key;

    if (ms_str_eq(p, "/healthz")) {
        if (!get) return method_not_allowed(c, "GET"), -1;
        if (head) return 0;
        static const char ok[] = "{\"status\":\"ok\"}";
        http_respond(c, 200, "application/json", NULL, ok, sizeof ok - 1, 0);
        return 0;
    }
    /* The endpoints authenticate first thing; on the headers alone only that is done. */
    if (ms_str_eq(p, "/v1/chat/completions")) {
        if (!post) return method_not_allowed(c, "POST"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_chat_completions(c, r), 0;
    }
    if (ms_str_eq(p, "/v1/messages") || ms_str_eq(p, "/v1/messages/count_tokens")) {
        /* Anthropic's clients read Anthropic's error envelope, from the first refusal on */
        r->error_body = dialect_anthropic_error_body;
        if (!post) return method_not_allowed(c, "POST"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        if (p.n == 12) return api_messages(c, r), 0;
        return api_count_tokens(c, r), 0;
    }
    if (ms_str_eq(p, "/v1/responses")) {
        r->error_body = dialect_responses_error_body;
        if (!post) return method_not_allowed(c, "POST"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_responses(c, r), 0;
    }
    if (p.n > 14 && memcmp(p.p, "/v1/responses/", 14) == 0) {
        r->error_body = dialect_responses_error_body;
        if (!get && r->method != HTTP_M_DELETE) return method_not_allowed(c, "GET, DELETE"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_response_one(c, r, (ms_str){p.p + 14, p.n - 14}), 0;
    }
    if (ms_str_eq(p, "/v1/embeddings")) {
        if (!post) return method_not_allowed(c, "POST"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_embeddings(c, r), 0;
    }
    if (ms_str_eq(p, "/v1/models")) {
        if (!get) return method_not_allowed(c, "GET"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_models_list(c, r), 0;
    }
    if (p.n > 11 && memcmp(p.p, "/v1/models/", 11) == 0) {
        if (!get) return method_not_allowed(c, "GET"), -1;
        if (head) return api_authenticate(c, r, KEY_PROXY, &key);
        return api_models_get(c, r, (ms_str){p.p + 11, p.n - 11}), 0;
    }
    if (ms_str_eq(p, "/metrics") || ms_str_eq(p, "/readyz")) {
        if (!get) return method_not_allowed(c, "GET"), -1;
        /* /readyz is public; /metrics too with server.metrics_public, else the operator's */
        if (p.n == 8 && !c->w->cfg->metrics_public && route_admin_token(c, r) != 0) return -1;
        if (head) return 0;
        return p.n == 8 ? metrics_scrape(c, r) : metrics_readyz(c, r), 0;
    }
    if (p.n >= 4 && memcmp(p.p, "/v1/", 4) == 0) {
        /* Unknown inference routes still need a valid key first, like OpenAI. */
        if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return -1;
    }
    if (p.n >= 5 && memcmp(p.p, "/api/", 5) == 0) return route_api(c, r, head);
    if (p.n >= 7 && memcmp(p.p, "/admin/", 7) == 0) return route_admin(c, r, head);
    /* last: the dashboard's pages cost the API's requests nothing */
    if (ms_str_eq(p, "/") || (p.n >= 10 && memcmp(p.p, "/dashboard", 10) == 0))
        return dash_route(c, r, head);
    not_found(c);
    return -1;
}

/* Routes and answers (now or later) a complete request. */
static void api_dispatch(http_conn *c, http_request *r)
{
    route(c, r, 0);
}

/* The server's head check (srv_handlers.head_check): the same route and key checks as
 * api_dispatch, on the headers, before a body is read or 100 Continue is sent. */
static int api_head_check(http_conn *c, http_request *r)
{
    return route(c, r, 1);
}

static int api_worker_init(worker_t *w)
{
    api_worker *aw = calloc(1, sizeof *aw);
    if (!aw || !(aw->stats = stats_worker_new())) {
        free(aw);
        return -1;
    }
    if (w->sh &&
        (!(aw->shw = sh_worker_new(w->sh, &w->loop)) || !(aw->rc = rcache_redis_new(aw->shw)))) {
        sh_worker_free(aw->shw);
        stats_worker_free(aw->stats);
        free(aw);
        return -1;
    }
    w->app = aw;
    return 0;
}

static void api_worker_free(worker_t *w)
{
    api_worker *aw = w->app;
    if (aw) {
        stats_worker_free(aw->stats);
        rcache_free(aw->rc);
        sh_worker_free(aw->shw);
    }
    free(aw);
    w->app = NULL;
}

/* A request is over: its metrics (stats.h). */
static void api_request_done(worker_t *w, http_request *r, int status)
{
    stats_request_done(api_worker_of(w)->stats, r, status);
}

/* The server reaches the API layer only through these pointers, so server/ includes nothing of
 * api/ (the layers would otherwise include each other). */
srv_handlers api_server_handlers(void)
{
    return (srv_handlers){.dispatch = api_dispatch,
                          .head_check = api_head_check,
                          .worker_init = api_worker_init,
                          .worker_free = api_worker_free,
                          .on_drain_kill = proxy_kill_detached,
                          .on_done = api_request_done};
}
