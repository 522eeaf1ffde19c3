/*
 * Holds and settlement as the API layer uses them: the hold a request places before it goes
 * upstream (api_place_hold), and the settle/release functions a prov_call carries so that
 * whoever finishes the request (the proxy, the echo provider, a detached stream that outlived its
 * client) bills it the same way. Rules: docs/BILLING.md.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "billing/billing.h"
#include "common/util.h"
#include "providers/provider.h"

static void fill_event(const prov_call *call, int status, store_usage_event *ev)
{
    memset(ev, 0, sizeof *ev);
    snprintf(ev->request_id, sizeof ev->request_id, "%s", call->request_id);
    snprintf(ev->model, sizeof ev->model, "%s", call->model->name);
    snprintf(ev->provider, sizeof ev->provider, "%s", call->dep->provider->name);
    ev->status = status;
    ev->latency_ms = (int64_t)((ms_mono_ns() - call->start_ns) / 1000000);
    ev->created_at_ms = ms_now_ms();
}

static int64_t settle(prov_call *call, const prov_usage *u, int status, int estimated, char *cost)
{
    bill_t *b = call->bill;
    store_usage_event ev;
    fill_event(call, status, &ev);
    ev.prompt_tokens = u->prompt_tokens;
    ev.completion_tokens = u->completion_tokens;
    ev.estimated = estimated;
    ev.charged_nusd = price_cost(b ? bill_cfg(b) : NULL, call->model, u->prompt_tokens,
                                 u->completion_tokens);
    int64_t charged = bill_settle(b, &call->hold, &ev);
    if (cost)
        ms_format_decimal(charged, 9, cost, 32);
    return charged;
}

static void release(prov_call *call, int status)
{
    store_usage_event ev;
    fill_event(call, status, &ev);
    bill_release(call->bill, &call->hold, &ev);
}

int api_place_hold(http_conn *c, prov_call *call, const store_key *key)
{
    worker_t *w = c->w;
    const cfg_t *cfg = w->cfg;
    call->bill = w->bill;
    call->settle = settle;
    call->release = release;
    call->start_ns = c->req.start_ns;
    snprintf(call->request_id, sizeof call->request_id, "%s", c->req.id);
    call->prompt_bound = price_prompt_bound(call->body.p, call->body.n);
    int64_t out = call->ep == EP_CHAT ? price_output_bound(cfg, call->model, call->max_tokens) : 0;
    int64_t amount = price_cost(cfg, call->model, call->prompt_bound, out);
    bill_status st = bill_hold_place(w->bill, key, amount, &call->hold);
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
