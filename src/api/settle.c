/*
 * Holds and settlement as the API layer uses them: the hold a request places before it goes
 * upstream (api_admit), and the settle/release functions a prov_call carries so that
 * whoever finishes the request (the proxy, the echo provider, a detached stream that outlived its
 * client) bills it the same way. Rules: docs/BILLING.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/proxy.h"
#include "billing/billing.h"
#include "ratelimit/ratelimit.h"
#include "common/util.h"
#include "providers/provider.h"

static void fill_event(const prov_call *call, int status, store_usage_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ms_copy(ev->request_id, sizeof ev->request_id, call->request_id);
    ms_copy(ev->model, sizeof ev->model, call->model->name);
    /* no deployment at all when every one was cooling down */
    ms_copy(ev->provider, sizeof ev->provider, call->dep ? call->dep->provider->name : "");
    ev->status = status;
    ev->latency_ms = (int64_t)((ms_mono_ns() - call->start_ns) / 1000000);
    ev->created_at_ms = ms_now_ms();
}

/* The rate limiter admitted an estimate; now the real count is known (0 when nothing ran). */
static void correct_tokens(prov_call *call, int64_t real)
{
    if (call->rl && real != call->rl_tokens)
        rl_correct(call->rl, &call->key, call->model, call->rl_tokens, real,
                   (int64_t)(ms_mono_ns() / 1000000));
    call->rl_tokens = real;
}

static int64_t settle(prov_call *call, const prov_usage *u, int status, int estimated, char *cost)
{
    bill_t *b = call->bill;
    int64_t prompt = usage_prompt(&u->u), completion = u->u.output;
    correct_tokens(call, prompt + completion);
    store_usage_event ev;
    fill_event(call, status, &ev);
    ev.usage = u->u;
    ev.estimated = estimated;
    /* each kind at its own price: cache reads cheaper, writes dearer, reasoning as output */
    ev.charged_nusd = price_usage_cost(bill_cfg(b), call->model, &u->u);
    int64_t charged = bill_settle(b, &call->hold, &ev);
    if (cost) ms_format_decimal(charged, 9, cost, 32);
    return charged;
}

static void release(prov_call *call, int status)
{
    correct_tokens(call, 0);
    store_usage_event ev;
    fill_event(call, status, &ev);
    bill_release(call->bill, &call->hold, &ev);
}

void api_rate_headers(http_conn *c, const store_key *key)
{
    if (!c->w->rl) return;
    rl_peek(c->w->rl, key, (int64_t)(ms_mono_ns() / 1000000), &c->req.rl);
    c->req.have_rl = 1;
}

int api_admit(http_conn *c, prov_call *call, const store_key *key)
{
    worker_t *w = c->w;
    const cfg_t *cfg = w->cfg;
    call->bill = w->bill;
    call->rl = w->rl;
    call->key = *key;
    call->settle = settle;
    call->release = release;
    call->start_ns = c->req.start_ns;
    ms_copy(call->request_id, sizeof call->request_id, c->req.id);
    call->prompt_bound = price_prompt_bound(call->body.p, call->body.n);
    /* the hold covers the dearest model the request may end up on (its fallbacks included) */
    const cfg_model *chain[9];
    size_t n = proxy_chain(cfg, call->model, chain, 9);
    int64_t amount = 0, out = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t o = call->ep == EP_CHAT ? price_output_bound(cfg, chain[i], call->max_tokens) : 0;
        /* the prompt at the model's dearest prompt price: the cache split is not known yet */
        int64_t a = price_hold(cfg, chain[i], call->prompt_bound, o);
        if (a > amount) amount = a;
        if (o > out) out = o;
    }
    if (w->rl) {
        rl_result res;
        int64_t now = (int64_t)(ms_mono_ns() / 1000000);
        call->rl_tokens = call->prompt_bound + out;
        int ok = rl_admit(w->rl, key, call->model, call->rl_tokens, now, &res);
        c->req.rl = res;
        c->req.have_rl = 1;
        if (!ok) {
            call->rl = NULL; /* nothing was consumed */
            char msg[200];
            snprintf(msg, sizeof msg,
                     "Rate limit reached: %s per minute (%s). Retry in %" PRId64 " ms.",
                     res.which ? res.which : "requests", res.scope ? res.scope : "key",
                     res.retry_after_ms);
            http_error(c, 429, "rate_limit_error", "rate_limit_exceeded", NULL, msg,
                       res.retry_after_ms);
            return -1;
        }
    }
    bill_status st = bill_hold_place(w->bill, key, amount, &call->hold);
    if (st != BILL_OK)
        correct_tokens(call, 0); /* refused before anything ran: the tokens go back */
    switch (st) {
    case BILL_OK:
        return 0;
    case BILL_SPEND_LIMIT:
        http_error(c, 403, "permission_error", "spend_limit_reached", NULL,
                   "This API key has reached its spend limit.", -1);
        return -1;
    case BILL_INSUFFICIENT:
    case BILL_NO_ACCOUNT:
    default: {
        char msg[200], usd[32];
        ms_format_decimal(amount, 9, usd, sizeof usd);
        snprintf(msg, sizeof msg,
                 "Your balance is too low for this request (it needs a hold of USD %s). "
                 "Top up your account or lower max_tokens.",
                 usd);
        http_error(c, 403, "permission_error", "insufficient_balance", NULL, msg, -1);
        return -1;
    }
    }
}
