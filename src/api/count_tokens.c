/*
 * POST /v1/messages/count_tokens: how many input tokens a Messages request would take, for a
 * client sizing its context (Claude Code asks it). The provider's own count where it has one, else
 * the gateway's documented estimate (docs/DIALECTS.md):
 *
 *  - When the model has a deployment in service whose adapter counts tokens in the client's API
 *    (build_count: Anthropic's count_tokens), the client's body goes there as /v1/messages would
 *    pass through (only `model` spliced, the provider's key, the client's anthropic-version and
 *    anthropic-beta), and the provider's 200 answer reaches the client as it came.
 *  - Otherwise, or when that provider cannot answer (no connection, a timeout, 408, 429, 5xx, an
 *    invalid or oversized answer), the gateway's estimate: the body's bytes / 4, rounded up, with
 *    `x-modelswitch-estimate: true` and the reason in `x-modelswitch-estimate-reason`. The count is
 *    a sizing hint: a client must not break because a provider is down.
 *  - A provider that refuses the request itself (400, 401, 404...) is the contract's 502
 *    provider_error with the provider's message, in Anthropic's envelope (the route's
 *    error_body), as the proxy answers a refused /v1/messages: the client's request is wrong, and
 *    an estimate would hide it.
 *
 * Nothing is held or billed: counting is free at Anthropic and bills no tokens here. A count the
 * provider is asked for costs one request of the key's (and its account's) requests per minute,
 * no tokens and not the model's limits, so a key cannot use the gateway as an unlimited proxy of
 * the provider's key; over that limit the estimate answers and nothing goes upstream. One attempt,
 * no retry and no fail-over, and nothing is reported to the router: a count says little about the
 * Messages API's health, and must not open a breaker or take a probe slot.
 *
 * The transfer runs on the worker's loop through the upstream client, bounded by the provider's
 * timeouts and CT_RESPONSE_MAX bytes, and holds the config generation it started on (its model
 * and deployment live there) until it ends. A client that goes away cancels it (the abort hook); a
 * draining worker waits for it as for any request in flight.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/stats.h"
#include "common/log.h"
#include "common/util.h"
#include "dialect/anthropic_request.h"
#include "providers/provider.h"
#include "router/router.h"

/* A count is a few bytes ({"input_tokens":N}); more is not an answer to pass on. */
#define CT_RESPONSE_MAX (64u << 10)
/* Deployments of the best priority weighed for the pick; more are not considered. */
#define CT_MAX_CANDIDATES 64

/* Why the answer is the gateway's estimate (x-modelswitch-estimate-reason). */
#define CT_NO_COUNT "no_provider_count"       /* no deployment in service counts tokens */
#define CT_RATE_LIMITED "rate_limited"        /* the key's requests per minute are used */
#define CT_UNAVAILABLE "provider_unavailable" /* the provider asked could not answer */

typedef struct ct_req {
    http_conn *c;
    srv_gen *gen; /* the config call's model and deployment are from (a reference), or NULL */
    up_xfer *x;
    prov_upreq up;
    int status; /* the provider's, once its head came */
    buf_t resp; /* its answer, at most CT_RESPONSE_MAX bytes */
    uint64_t t0;
    prov_call call; /* last: its member array is large and only partly written */
} ct_req;

static void ct_free(ct_req *ct)
{
    if (ct->x) up_cancel(ct->x);
    prov_upreq_free(&ct->up);
    buf_free(&ct->resp);
    srv_gen_release(ct->gen);
    free(ct);
}

/* The gateway's estimate: about four bytes of the request a token. */
static void respond_estimate(http_conn *c, const prov_call *call, const char *reason)
{
    char body[64], h[640];
    int n = snprintf(body, sizeof body, "{\"input_tokens\":%zu}", (call->body.n + 3) / 4);
    snprintf(h, sizeof h,
             "x-modelswitch-model: %s\r\nx-modelswitch-estimate: true\r\n"
             "x-modelswitch-estimate-reason: %s\r\n",
             call->model->name, reason);
    http_respond(c, 200, "application/json", h, body, (size_t)n, 0);
}

/* Ends the request: the connection is ours to answer and no callback may follow. */
static http_conn *ct_take_conn(ct_req *ct)
{
    http_conn *c = ct->c;
    if (c->handler.ctx == ct) c->handler = (http_handler){0};
    ct->c = NULL;
    return c;
}

/* The provider could not answer: the estimate, and a line for the operator. */
static void fall_back(ct_req *ct, const char *what)
{
    log_info("request %s: count_tokens on provider '%s' failed (%s); answered the estimate",
             ct->call.request_id, ct->call.dep->provider->name, what);
    http_conn *c = ct_take_conn(ct);
    respond_estimate(c, &ct->call, CT_UNAVAILABLE);
    ct_free(ct);
}

/* The provider's count: passed on as it came, if it is one. */
static void answer_count(ct_req *ct)
{
    jscan_member m[16];
    ms_str b = buf_view(&ct->resp);
    int n = jscan_object(b.p, b.n, m, 16, NULL);
    const jscan_member *it =
        n > 0 ? jscan_find(m, (size_t)(n > 16 ? 16 : n), "input_tokens") : NULL;
    int64_t v;
    if (!it || it->type != JS_NUMBER || jscan_int(it->value, &v) != 0 || v < 0) {
        fall_back(ct, "an answer without input_tokens");
        return;
    }
    char h[640];
    snprintf(h, sizeof h, "x-modelswitch-model: %s\r\nx-modelswitch-provider: %s\r\n",
             ct->call.model->name, ct->call.dep->provider->name);
    size_t len = ct->resp.len;
    char *data = buf_steal(&ct->resp);
    http_conn *c = ct_take_conn(ct);
    ct_free(ct);
    http_respond(c, 200, "application/json", h, data, len, 1);
}

/* The provider refused the request itself: its message in the contract's 502, not retried. */
static void answer_refused(ct_req *ct)
{
    const cfg_provider *prov = ct->call.dep->provider;
    const prov_adapter *ad = prov_adapter_for(prov, WIRE_ANTHROPIC_MESSAGES);
    char pmsg[512], msg[700];
    ad->error_message(buf_view(&ct->resp), pmsg, sizeof pmsg);
    snprintf(msg, sizeof msg, "The provider '%s' returned HTTP %d: %s", prov->name, ct->status,
             pmsg);
    prov_redact(prov, &ct->up, msg, sizeof msg);
    http_conn *c = ct_take_conn(ct);
    ct_free(ct);
    http_add_extra_header(c, "x-should-retry: false\r\n");
    http_error(c, 502, "upstream_error", "provider_error", NULL, msg, -1);
}

static void on_response(void *ud, int status, const char *content_type, int64_t retry_after_ms)
{
    ct_req *ct = ud;
    ct->status = status;
    ct->c->req.upstream_ms = (int64_t)((ms_mono_ns() - ct->t0) / 1000000);
}

static void on_data(void *ud, const char *p, size_t n)
{
    ct_req *ct = ud;
    if (buf_append(&ct->resp, p, n) == 0) return;
    /* no callback follows a cancel, so this is the end of the request */
    up_cancel(ct->x);
    ct->x = NULL;
    fall_back(ct, "an answer larger than a count");
}

static void on_complete(void *ud, up_result res, const char *errmsg)
{
    ct_req *ct = ud;
    ct->x = NULL;
    int st = ct->status;
    char what[160];
    if (res != UP_OK) {
        snprintf(what, sizeof what, "%s",
                 res == UP_TIMEOUT ? "no answer in time"
                 : errmsg          ? errmsg
                                   : "connection failed");
        fall_back(ct, what);
    } else if (st >= 200 && st < 300) {
        answer_count(ct);
    } else if (st == 408 || st == 429 || st >= 500) {
        snprintf(what, sizeof what, "HTTP %d", st);
        fall_back(ct, what);
    } else {
        answer_refused(ct);
    }
}

/* The client went away: the transfer is cancelled and nothing else is owed (nothing was held). */
static int on_abort(http_conn *c, void *ctx)
{
    ct_free(ctx);
    return 0;
}

/* A deployment of m that counts tokens in the client's API and is in service: the lowest priority,
 * then by weight as the router splits traffic (weight-0 ones only when no weighted one is). -1:
 * none. */
static int pick(worker_t *w, const prov_call *call)
{
    const cfg_model *m = call->model;
    int64_t now = (int64_t)(ms_mono_ns() / 1000000);
    int cand[CT_MAX_CANDIDATES], best = INT_MAX;
    size_t nc = 0;
    for (size_t i = 0; i < m->ndeployments; i++) {
        const cfg_deployment *d = &m->deployments[i];
        const prov_adapter *ad = prov_adapter_for(d->provider, WIRE_ANTHROPIC_MESSAGES);
        if (!ad || !ad->build_count || ad->api != call->dialect->api || d->priority > best ||
            !route_in_service(w->route, m, (int)i, now))
            continue;
        if (d->priority < best) best = d->priority, nc = 0;
        if (nc < CT_MAX_CANDIDATES) cand[nc++] = (int)i;
    }
    if (nc == 0) return -1;
    uint64_t total = 0;
    for (size_t k = 0; k < nc; k++)
        total += (uint64_t)m->deployments[cand[k]].weight;
    uint64_t x = route_rand() % (total ? total : nc);
    for (size_t k = 0; k < nc && total; k++) {
        uint64_t wt = (uint64_t)m->deployments[cand[k]].weight;
        if (x < wt) return cand[k];
        x -= wt;
    }
    return cand[x % nc];
}

/* One request of the key's and its account's requests per minute, no tokens (see above); sets
 * the answer's x-ratelimit-* headers. Returns whether it was admitted. */
static int admit(http_conn *c, const store_key *key)
{
    if (!c->w->rl) return 1;
    rl_result res;
    int ok = rl_admit(c->w->rl, key, NULL, 0, (int64_t)(ms_mono_ns() / 1000000), &res);
    c->req.rl = res;
    c->req.have_rl = 1;
    return ok;
}

/* Sends ct's count request to deployment idx. Returns 0, or -1 (nothing started). */
static int start(ct_req *ct, http_request *r, int idx)
{
    prov_call *call = &ct->call;
    call->dep = &call->model->deployments[idx];
    call->anthropic_version = r->anthropic_version;
    call->anthropic_beta = r->anthropic_beta;
    const cfg_provider *prov = call->dep->provider;
    const prov_adapter *ad = prov_adapter_for(prov, WIRE_ANTHROPIC_MESSAGES);
    if (ad->build_count(call, &ct->up) != 0) return -1;
    up_request req = {
        .method = "POST",
        .url = ct->up.url,
        .headers = (const char *const *)ct->up.headers,
        .nheaders = ct->up.nheaders,
        .body = ct->up.iov,
        .nbody = ct->up.niov,
        .connect_timeout_ms = prov->connect_timeout_ms,
        .first_byte_timeout_ms = prov->first_byte_timeout_ms,
        .total_timeout_ms = prov->timeout_ms,
        .tls_ca_file = prov->tls_ca_file,
    };
    static const up_callbacks cbs = {on_response, on_data, on_complete};
    ct->t0 = ms_mono_ns();
    ct->x = up_start(ct->c->w->up, &req, &cbs, ct);
    return ct->x ? 0 : -1;
}

void api_count_tokens(http_conn *c, http_request *r)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    ct_req *ct = calloc(1, sizeof *ct);
    if (!ct) return api_err_internal(c);
    prov_call *call = &ct->call;
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    dialect_refusal why = {0};
    if (dialect_anthropic_parse_count(c->w->cfg, call, r->log_model, sizeof r->log_model, &why)) {
        free(ct);
        return api_refuse(c, &why);
    }
    stats_bind(api_worker_of(c->w)->stats, r, c->w->cfg, call->model); /* its metrics' model */
    int idx = pick(c->w, call);
    const char *reason = idx < 0 ? CT_NO_COUNT : !admit(c, &key) ? CT_RATE_LIMITED : NULL;
    if (reason) {
        if (!c->req.have_rl) api_rate_headers(c, &key);
        respond_estimate(c, call, reason);
        free(ct);
        return;
    }
    ct->c = c;
    ct->gen = srv_gen_hold(c->w->gen);
    buf_init(&ct->resp, CT_RESPONSE_MAX);
    ms_copy(r->log_provider, sizeof r->log_provider, call->model->deployments[idx].provider->name);
    if (start(ct, r, idx) != 0) {
        fall_back(ct, "the request could not be started");
        return;
    }
    c->handler = (http_handler){.ctx = ct, .abort = on_abort, .drained = NULL};
}
