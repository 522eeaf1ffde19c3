/*
 * A request's settlement context: the hold it places before anything goes upstream (api_admit),
 * the rate limiter's admission, and how it ends (api_settle with usage, or api_release). The
 * context belongs to the request, not to the provider adapter or to the parsed request: whoever
 * finishes the request (the proxy, a detached stream that outlived its client, a fallback on
 * another model) bills it the same way. Rules: docs/BILLING.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/cache.h"
#include "api/proxy.h"
#include "api/stats.h"
#include "billing/billing.h"
#include "shared/shared.h"
#include "ratelimit/ratelimit.h"
#include "common/objcache.h"
#include "common/util.h"
#include "providers/provider.h"

static void fill_event(const api_settlement *s, const cfg_model *model, const char *provider,
                       int status, store_usage_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ms_copy(ev->request_id, sizeof ev->request_id, s->request_id);
    ms_copy(ev->model, sizeof ev->model, model->name);
    /* no deployment at all when every one was cooling down */
    ms_copy(ev->provider, sizeof ev->provider, provider ? provider : "");
    ev->status = status;
    ev->latency_ms = (int64_t)((ms_loop_mono_ns() - s->start_ns) / 1000000);
    ev->created_at_ms = ms_loop_now_ms();
}

/* The rate limiter admitted an estimate; now the real count is known (0 when nothing ran). The
 * correction goes to the counters the admission charged: the requested model's, even when a
 * fallback answered. */
static void correct_tokens(api_settlement *s, int64_t real)
{
    /* several instances: sent with the snapshot that follows (tell_shared), one call */
    if (s->shw && real != s->rl_tokens && !s->corr_owed) {
        s->corr_owed = 1;
        s->corr_est = s->rl_tokens;
    }
    if (s->rl && real != s->rl_tokens)
        rl_correct(s->rl, &s->key, s->rl_model, s->rl_tokens, real,
                   (int64_t)(ms_loop_mono_ns() / 1000000));
    s->rl_tokens = real;
}

/* Several instances: the hold just ended, so what this instance reserves changed; Redis hears of
 * it now (fire and forget: a lost snapshot is mended by the next one or the heartbeat). */
static void tell_shared(api_settlement *s)
{
    bill_snap sn;
    if (!s->shw) return;
    int have = bill_snapshot(s->bill, s->key.account_id, s->key.id, &sn) == 0;
    if (s->corr_owed) {
        s->corr_owed = 0;
        sh_end(s->shw, s->lim, s->nlim, s->corr_est, s->rl_tokens, have ? &sn : NULL);
    } else if (have) {
        sh_push_snap(s->shw, &sn);
    }
}

int64_t api_settle(api_settlement *s, const cfg_model *model, const char *provider,
                   const usage_counts *u, int status, int estimated, char *cost)
{
    if (cost) cost[0] = '\0';
    if (s->done) return 0;
    s->done = 1;
    correct_tokens(s, usage_prompt(u) + u->output);
    store_usage_event ev;
    fill_event(s, model, provider, status, &ev);
    ev.usage = *u;
    ev.estimated = estimated;
    /* each kind at its own price: cache reads cheaper, writes dearer, reasoning as output */
    ev.charged_nusd = price_usage_cost(s->cfg, model, u);
    int64_t charged = bill_settle(s->bill, &s->hold, &ev);
    tell_shared(s);
    stats_settled(s->stats, model, u, charged);
    if (cost) ms_format_decimal(charged, 9, cost, 32);
    return charged;
}

void api_release(api_settlement *s, const cfg_model *model, const char *provider, int status)
{
    if (s->done) return;
    s->done = 1;
    correct_tokens(s, 0);
    store_usage_event ev;
    fill_event(s, model, provider, status, &ev);
    bill_release(s->bill, &s->hold, &ev);
    tell_shared(s);
    stats_hold(s->stats, 0);
}

void api_settlement_free(api_settlement *s)
{
    if (!s) return;
    srv_gen_release(s->gen);
    free(s->keep_ctx);
    api_cache_req_free(s->cache);
    oc_free(s, sizeof *s);
}

/* The limiter refused: 429 with the exact wait. */
static void rate_refused(http_conn *c, const rl_result *res)
{
    char msg[200];
    snprintf(msg, sizeof msg, "Rate limit reached: %s per minute (%s). Retry in %" PRId64 " ms.",
             res->which ? res->which : "requests", res->scope ? res->scope : "key",
             res->retry_after_ms);
    http_error(c, 429, "rate_limit_error", "rate_limit_exceeded", NULL, msg, res->retry_after_ms);
}

int api_admit_hit(http_conn *c, const prov_call *call, const store_key *key)
{
    worker_t *w = c->w;
    if (!w->rl) return 0;
    rl_result res;
    int ok = rl_admit(w->rl, key, call->model, 0, (int64_t)(ms_loop_mono_ns() / 1000000), &res);
    c->req.rl = res;
    c->req.have_rl = 1;
    if (ok) return 0;
    rate_refused(c, &res);
    return -1;
}

void api_settle_hit(http_conn *c, const store_key *key, const char *model, const char *provider,
                    const usage_counts *u)
{
    /* no hold: a zero one names the account and key the record is for */
    bill_hold none = {.account_id = key->account_id, .key_id = key->id, .amount_nusd = 0};
    store_usage_event ev;
    memset(&ev, 0, sizeof ev);
    ms_copy(ev.request_id, sizeof ev.request_id, c->req.id);
    ms_copy(ev.model, sizeof ev.model, model);
    ms_copy(ev.provider, sizeof ev.provider, provider);
    ev.usage = *u;
    ev.status = 200;
    ev.cached = 1;
    ev.latency_ms = (int64_t)((ms_loop_mono_ns() - c->req.start_ns) / 1000000);
    ev.created_at_ms = ms_loop_now_ms();
    bill_release(c->w->bill, &none, &ev);
}

/* The key's counters as they stand, for an answer that goes out without an admission's. */
static void rate_headers_late(http_conn *c)
{
    store_key k;
    memset(&k, 0, sizeof k);
    k.id = c->req.rl_key.id;
    k.account_id = c->req.rl_key.account_id;
    k.rpm = c->req.rl_key.rpm;
    k.tpm = c->req.rl_key.tpm;
    rl_peek(c->w->rl, &k, (int64_t)(ms_loop_mono_ns() / 1000000), &c->req.rl);
    c->req.have_rl = 1;
}

void api_rate_headers(http_conn *c, const store_key *key)
{
    /* several instances: the counters are Redis's, and asking costs a round trip; only the
     * answers that were admitted there carry them */
    if (!c->w->rl || api_worker_of(c->w)->shw) return;
    /* Looked up when the answer is written, and only if no admission said it first: most
     * requests are admitted, and a lookup here was one more round of the limiter's locks
     * (~550 instructions) whose result the admission replaced. build_query reads no more of
     * the key than these. */
    c->req.rl_key.id = key->id;
    c->req.rl_key.account_id = key->account_id;
    c->req.rl_key.rpm = key->rpm;
    c->req.rl_key.tpm = key->tpm;
    c->req.rl_late = rate_headers_late;
}

api_settlement *api_settlement_new(http_conn *c, const prov_call *call, const store_key *key)
{
    return api_settlement_new_on(c, c->w->gen, call, key);
}

api_settlement *api_settlement_new_on(http_conn *c, srv_gen *gen, const prov_call *call,
                                      const store_key *key)
{
    worker_t *w = c->w;
    const cfg_t *cfg = gen->cfg;
    api_settlement *s = oc_zalloc(sizeof *s);
    if (!s) {
        api_err_internal(c);
        return NULL;
    }
    s->gen = srv_gen_hold(gen);
    s->bill = w->bill;
    s->cfg = cfg;
    /* counted under its model from here on, refused or not */
    s->stats = stats_bind(api_worker_of(w)->stats, &c->req, cfg, call->model);
    s->key = *key;
    s->rl_model = call->model;
    s->start_ns = c->req.start_ns;
    ms_copy(s->request_id, sizeof s->request_id, c->req.id);
    s->prompt_bound = price_prompt_bound(call->body.p, call->body.n);
    /* the hold covers the dearest model the request may end up on (its fallbacks included) */
    const cfg_model *chain[9];
    size_t n = proxy_chain(cfg, call->model, chain, 9);
    for (size_t i = 0; i < n; i++) {
        int64_t o = call->ep == EP_CHAT
                        ? price_output_bound(cfg, chain[i], call->max_tokens) * prov_choices(call)
                        : 0;
        /* the prompt at the model's dearest prompt price: the cache split is not known yet */
        int64_t a = price_hold(cfg, chain[i], s->prompt_bound, o);
        if (a > s->hold_amount) s->hold_amount = a;
        if (o > s->rl_out) s->rl_out = o;
    }
    return s;
}

/* A refusal: the hold (if any) is back, the error answered, and the request's parts freed. */
static void refuse_balance(http_conn *c, api_settlement *s, bill_status st)
{
    worker_t *w = c->w;
    if (st == BILL_SPEND_LIMIT) {
        stats_refusal(api_worker_of(w)->stats, STATS_REFUSAL_SPEND_LIMIT);
        http_error(c, 403, "permission_error", "spend_limit_reached", NULL,
                   "This API key has reached its spend limit.", -1);
        return;
    }
    stats_refusal(api_worker_of(w)->stats, STATS_REFUSAL_BALANCE);
    char msg[200], usd[32];
    ms_format_decimal(s->hold_amount, 9, usd, sizeof usd);
    snprintf(msg, sizeof msg,
             "Your balance is too low for this request (it needs a hold of USD %s). "
             "Top up your account or lower max_tokens.",
             usd);
    http_error(c, 403, "permission_error", "insufficient_balance", NULL, msg, -1);
}

static void admit_local(http_conn *c, prov_call *call, api_to_hub to_hub, api_settlement *s)
{
    worker_t *w = c->w;
    if (w->rl) {
        rl_result res;
        int64_t now = (int64_t)(ms_loop_mono_ns() / 1000000);
        s->rl_tokens = s->prompt_bound + s->rl_out;
        int ok = rl_admit(w->rl, &s->key, call->model, s->rl_tokens, now, &res);
        c->req.rl = res;
        c->req.have_rl = 1;
        if (!ok) {
            stats_rate_limited(api_worker_of(w)->stats, res.scope);
            rate_refused(c, &res);
            goto refused;
        }
        s->rl = w->rl; /* from here on a correction is owed */
    }
    bill_status st = bill_hold_place(w->bill, &s->key, s->hold_amount, &s->hold);
    if (st != BILL_OK) {
        correct_tokens(s, 0); /* refused before anything ran: the tokens go back */
        refuse_balance(c, s, st);
        goto refused;
    }
    stats_hold(s->stats, 1);
    proxy_start(c, call, to_hub, s);
    return;
refused:
    api_settlement_free(s);
    prov_call_free(call);
}

/* ---- several instances: the decision is Redis's (shared/shared.h) ---- */

typedef struct api_admission {
    http_conn *c;
    prov_call *call;
    api_to_hub to_hub;
    api_settlement *s;
    sh_pending *pending;
} api_admission;

/* The hold counted here before Redis was asked goes back, and Redis hears of it. */
static void undo_hold(api_settlement *s)
{
    bill_hold_undo(s->bill, &s->hold);
    tell_shared(s);
}

static void admission_free(api_admission *a)
{
    api_settlement_free(a->s);
    prov_call_free(a->call);
    free(a);
}

static void unavailable(http_conn *c, int64_t retry_ms)
{
    /* counted as any answer, by its status (modelswitch_requests_total{status="503"}) */
    http_error(c, 503, "service_unavailable_error", "service_unavailable", NULL,
               "The gateway cannot reach the state its instances share; retry shortly.",
               retry_ms > 0 ? retry_ms : 1000);
}

static void on_verdict(void *ud, const sh_verdict *v)
{
    api_admission *a = ud;
    http_conn *c = a->c;
    api_settlement *s = a->s;
    if (c->handler.ctx == a) c->handler = (http_handler){0};
    if (v->have_rl) {
        c->req.rl = v->rl;
        c->req.have_rl = 1;
    }
    if (v->status == SH_OK) {
        stats_hold(s->stats, 1);
        prov_call *call = a->call;
        a->s = NULL;
        a->call = NULL;
        proxy_start(c, call, a->to_hub, s);
        free(a);
        return;
    }
    /* refused: nothing was consumed in Redis, and the tokens never counted */
    undo_hold(s);
    s->rl_tokens = 0;
    s->shw = NULL;
    switch (v->status) {
    case SH_RATE_LIMITED:
        stats_rate_limited(api_worker_of(c->w)->stats, v->rl.scope);
        rate_refused(c, &v->rl);
        break;
    case SH_INSUFFICIENT:
        refuse_balance(c, s, BILL_INSUFFICIENT);
        break;
    case SH_SPEND_LIMIT:
        refuse_balance(c, s, BILL_SPEND_LIMIT);
        break;
    default:
        unavailable(c, v->retry_after_ms);
        break;
    }
    admission_free(a);
}

static int admission_abort(http_conn *c, void *ctx)
{
    api_admission *a = ctx;
    sh_admit_cancel(a->pending);
    /* Redis may have admitted it: the snapshot after the undo takes the hold back there too;
     * the rate limits keep what they counted, as for any request that went away */
    undo_hold(a->s);
    a->s->shw = NULL;
    admission_free(a);
    return 0;
}

static void admit_shared(http_conn *c, prov_call *call, api_to_hub to_hub, api_settlement *s)
{
    worker_t *w = c->w;
    s->shw = api_worker_of(w)->shw;
    s->nlim = rl_limits(w->rl, &s->key, call->model, s->lim);
    s->rl_tokens = s->prompt_bound + s->rl_out;
    bill_snap snap;
    bill_status st = bill_hold_reserve(w->bill, &s->key, s->hold_amount, &s->hold, &snap);
    if (st != BILL_OK) {
        s->shw = NULL;
        refuse_balance(c, s, st);
        api_settlement_free(s);
        prov_call_free(call);
        return;
    }
    api_admission *a = calloc(1, sizeof *a);
    sh_admit_req rq = {.nlim = s->nlim,
                       .tokens = s->rl_tokens,
                       .amount = s->hold.amount_nusd,
                       .snap = &snap,
                       .spend_limit_nusd = s->key.spend_limit_nusd};
    memcpy(rq.lim, s->lim, sizeof rq.lim);
    if (a) *a = (api_admission){c, call, to_hub, s, NULL};
    if (!a || !(a->pending = sh_admit(s->shw, &rq, on_verdict, a))) {
        undo_hold(s);
        s->shw = NULL;
        unavailable(c, 1000);
        if (a) {
            admission_free(a);
        } else {
            api_settlement_free(s);
            prov_call_free(call);
        }
        return;
    }
    c->handler = (http_handler){.ctx = a, .abort = admission_abort, .drained = NULL};
}

void api_admit(http_conn *c, prov_call *call, api_to_hub to_hub, api_settlement *s)
{
    if (api_worker_of(c->w)->shw)
        admit_shared(c, call, to_hub, s);
    else
        admit_local(c, call, to_hub, s);
}
