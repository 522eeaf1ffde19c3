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
#include "api/proxy.h"
#include "api/stats.h"
#include "billing/billing.h"
#include "ratelimit/ratelimit.h"
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
    ev->latency_ms = (int64_t)((ms_mono_ns() - s->start_ns) / 1000000);
    ev->created_at_ms = ms_now_ms();
}

/* The rate limiter admitted an estimate; now the real count is known (0 when nothing ran). The
 * correction goes to the counters the admission charged: the requested model's, even when a
 * fallback answered. */
static void correct_tokens(api_settlement *s, int64_t real)
{
    if (s->rl && real != s->rl_tokens)
        rl_correct(s->rl, &s->key, s->rl_model, s->rl_tokens, real,
                   (int64_t)(ms_mono_ns() / 1000000));
    s->rl_tokens = real;
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
    stats_hold(s->stats, 0);
}

void api_settlement_free(api_settlement *s)
{
    if (!s) return;
    free(s->keep_ctx);
    free(s);
}

void api_rate_headers(http_conn *c, const store_key *key)
{
    if (!c->w->rl) return;
    rl_peek(c->w->rl, key, (int64_t)(ms_mono_ns() / 1000000), &c->req.rl);
    c->req.have_rl = 1;
}

api_settlement *api_admit(http_conn *c, const prov_call *call, const store_key *key)
{
    worker_t *w = c->w;
    const cfg_t *cfg = w->cfg;
    api_settlement *s = calloc(1, sizeof *s);
    if (!s) {
        api_err_internal(c);
        return NULL;
    }
    s->bill = w->bill;
    s->cfg = cfg;
    s->rl = w->rl;
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
    int64_t amount = 0, out = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t o = call->ep == EP_CHAT ? price_output_bound(cfg, chain[i], call->max_tokens) : 0;
        /* the prompt at the model's dearest prompt price: the cache split is not known yet */
        int64_t a = price_hold(cfg, chain[i], s->prompt_bound, o);
        if (a > amount) amount = a;
        if (o > out) out = o;
    }
    if (w->rl) {
        rl_result res;
        int64_t now = (int64_t)(ms_mono_ns() / 1000000);
        s->rl_tokens = s->prompt_bound + out;
        int ok = rl_admit(w->rl, key, call->model, s->rl_tokens, now, &res);
        c->req.rl = res;
        c->req.have_rl = 1;
        if (!ok) {
            stats_rate_limited(api_worker_of(w)->stats, res.scope);
            s->rl = NULL; /* nothing was consumed */
            char msg[200];
            snprintf(msg, sizeof msg,
                     "Rate limit reached: %s per minute (%s). Retry in %" PRId64 " ms.",
                     res.which ? res.which : "requests", res.scope ? res.scope : "key",
                     res.retry_after_ms);
            http_error(c, 429, "rate_limit_error", "rate_limit_exceeded", NULL, msg,
                       res.retry_after_ms);
            free(s);
            return NULL;
        }
    }
    bill_status st = bill_hold_place(w->bill, key, amount, &s->hold);
    if (st != BILL_OK) correct_tokens(s, 0); /* refused before anything ran: the tokens go back */
    switch (st) {
    case BILL_OK:
        stats_hold(s->stats, 1);
        return s;
    case BILL_SPEND_LIMIT:
        stats_refusal(api_worker_of(w)->stats, STATS_REFUSAL_SPEND_LIMIT);
        http_error(c, 403, "permission_error", "spend_limit_reached", NULL,
                   "This API key has reached its spend limit.", -1);
        free(s);
        return NULL;
    case BILL_INSUFFICIENT:
    case BILL_NO_ACCOUNT:
    default: {
        stats_refusal(api_worker_of(w)->stats, STATS_REFUSAL_BALANCE);
        char msg[200], usd[32];
        ms_format_decimal(amount, 9, usd, sizeof usd);
        snprintf(msg, sizeof msg,
                 "Your balance is too low for this request (it needs a hold of USD %s). "
                 "Top up your account or lower max_tokens.",
                 usd);
        http_error(c, 403, "permission_error", "insufficient_balance", NULL, msg, -1);
        free(s);
        return NULL;
    }
    }
}
