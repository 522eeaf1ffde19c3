/*
 * Forwarding a validated request to its providers and bringing the answer back: the per-request
 * state machine shared by every adapter (see providers/provider.h).
 *
 * Attempts: the router (router/router.h) picks a deployment of the model; an upstream 429, 5xx,
 * connection failure or timeout before any byte reached the client is retried, on another
 * deployment first and then on the same one after a backoff (or the upstream's retry-after),
 * within routing.max_attempts per model and routing.retry_budget_ms per request; then the model's
 * fallbacks are tried in order. Attempts feed the router's single-attempt state (probes, 429
 * waits); each request counts once per deployment it tried in the failure window that opens a
 * breaker, so one client's poisoned request cannot cool a deployment down for everyone. When
 * nothing works the client gets one answer that says why (docs/ROUTING.md).
 *
 * Answers: non-streaming answers are collected (bounded), checked, their usage read and the
 * request billed before the client sees a status line, so a broken upstream answer becomes a
 * clean 502 and x-modelswitch-cost is known. Streams go out event by event; the usage chunk is
 * held back to the end so the cost can be added to it. Once the first byte is out, failures
 * (a cut, an error event, an idle gap longer than the provider's idle_timeout_ms) are reported
 * in-band: an error event, then [DONE]. A slow reader pauses the upstream transfer above a
 * high-water mark, so a stream holds bounded memory.
 *
 * Config: the proxy holds the config generation its request started on (server.h, srv_gen) until
 * it is freed, detached or not: a live reload changes what new requests get, while this one keeps
 * its models, deployments, prices and routing settings to the end.
 *
 * Money: every request that got here holds money (api_admit gave it a settlement context, which
 * the proxy owns). Exactly one of api_settle (usage known, or estimated when the provider answered
 * 2xx but never said all of it) or api_release (no provider answered) ends it. If the client goes
 * away mid-answer the proxy detaches from the connection and reads the rest of the upstream answer,
 * bounded in time and bytes, to bill its usage.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/proxy.h"
#include "api/cache.h"
#include "api/stats.h"
#include "common/log.h"
#include "common/objcache.h"
#include "common/util.h"
#include "router/router.h"

#define RESPONSE_MAX (64u << 20) /* the largest non-streaming answer accepted from a provider */
#define SSE_EVENT_MAX (4u << 20)
#define PROXY_RESP_BLOCK 4096         /* resp_lend's block */
#define PROXY_RUN_WRITE 320           /* take_decoded's pieces: within out_mem (see there) */
#define DETACHED_MAX_MS 30000         /* how long a detached request waits for its usage */
#define DETACHED_MAX_BYTES (8u << 20) /* and how many more bytes it reads for it */
#define CHAIN_MAX 9                   /* the model and up to 8 fallbacks */

struct proxy {
    http_conn *c; /* NULL once detached */
    worker_t *w;
    srv_gen *gen; /* the config the request started on (a reference), and its router */
    prov_call *call;
    /* the request in the hub format (OpenAI chat) when the client spoke another API: what
     * adapters that do not speak the client's API build from and decode for (owned), or NULL */
    prov_call *hub;
    char *hub_body;
    /* how the client's request becomes the hub form, made on the first attempt that needs it
     * (a pass-through provider never does: Claude Code to Anthropic, Codex to OpenAI); NULL
     * when the client speaks OpenAI chat */
    api_to_hub to_hub;
    /* why there is no hub although the client needs one (owned; NULL: none). A pointer: the
     * struct is zeroed for every request and the case is rare */
    dialect_refusal *hub_why;
    api_settlement *st; /* the request's money: how it ends (owned) */
    const prov_adapter *ad;
    prov_upreq up;
    up_xfer *x;
    /* routing */
    const cfg_model *chain[CHAIN_MAX];
    size_t nchain, chain_idx;
    uint64_t tried;   /* deployments of the current model this request has tried */
    int attempts;     /* attempts on the current model */
    int same_retries; /* retries on a deployment already tried (the backoff's exponent) */
    int dep_idx;      /* the deployment of the attempt in progress (or waiting), -1 none */
    /* deployments of the current model where this request failed, not yet counted in their
     * failure rate (router.h) */
    uint64_t failed_on;
    uint64_t budget_end_ns;
    /* why nothing worked, if it comes to that */
    int n_failed, n_429;
    int last_was_timeout;
    int64_t min_retry_after_ms;
    int64_t cooling_wait_ms; /* > 0: some model had every deployment cooling down */
    int cooling_all_429;
    int last_status;
    /* the attempt in progress */
    int status;
    int64_t retry_after_ms;
    int is_sse;
    int paused;
    int busy;     /* inside an upstream callback: freeing is deferred */
    int aborted;  /* must be freed as soon as the callback unwinds */
    int finished; /* billed and answered; only the end of the transfer is awaited */
    int freeing;
    int saw_done;
    int stream_failed;
    const char *fail_code, *fail_type;
    int detached;
    uint64_t detached_bytes;
    uv_timer_t timer;      /* a retry's wait, then the stream's idle gap */
    uint64_t last_read_ms; /* loop time of the stream's last read (idle_timeout) */
    uv_timer_t dtimer;     /* detached: the time bound */
    int open_handles;
    struct proxy *dnext, *dprev;
    char *owned_body; /* detached: the client's body, which the upstream may still be reading */
    uint64_t bytes_in, bytes_out;
    /* metrics: an attempt is under way upstream (its outcome not counted yet), and the span of
     * time the request waited on upstreams (first attempt's start to last one's end) */
    int attempt_live;
    uint64_t up_first_ns, up_last_ns;
    /* a failed attempt's outcome, counted once what follows it is known: another attempt on
     * the same model (retried), the next model (failed_over), or the end (its own outcome) */
    const cfg_provider *pend_prov;
    stats_attempt_outcome pend_outcome;
    buf_t resp;
    char *resp_block; /* resp's first PROXY_RESP_BLOCK bytes, lent by the object cache */
    buf_t out;
    buf_t usage_chunk; /* the upstream's usage-only chunk, sent last with the cost */
    dialect_enc *enc;  /* the client's dialect's encoder, once needed */
    /* the adapter's per-transfer decoding state (translating adapters), and whose it is */
    void *xst;
    const prov_adapter *xst_ad;
    int translated; /* the adapter speaks another API than the client: answers are decoded */
    sse_parser sse;
    prov_usage usage;
    uint64_t t0;
    /* Lent, not zeroed (proxy_start clears what comes before): where out, usage_chunk and the
     * upstream request's headers and scratch start, so that most requests allocate none of
     * them. */
    char out_mem[512], usage_mem[768], up_hmem[384], up_smem[256];
    /* From out_mem on nothing is zeroed by proxy_start (2 KiB less a request to clear): */
    char last_msg[512]; /* the last attempt's failure ("" until one: proxy_start) */
    char err[512];      /* an adapter's message ("" until one: proxy_start) */
    http_request req;   /* detached: the request as the access log needs it (set then) */
    char path[128];
};

static void start_attempt(proxy *p);

static void handle_closed(uv_handle_t *h)
{
    proxy *p = h->data;
    if (--p->open_handles == 0) oc_free(p, sizeof *p);
}

/* A deployment's bit in tried and failed_on; past 64 deployments there is none. */
static uint64_t dep_bit(int idx)
{
    return idx >= 0 && idx < 64 ? 1ull << idx : 0;
}

/* The request is done with the current model: each deployment that failed it counts one failed
 * request, however many attempts it made there, so that one request's retries cannot open a
 * breaker for every client. */
static void count_failures(proxy *p, int64_t now_ms)
{
    for (int i = 0; p->failed_on; i++, p->failed_on >>= 1)
        if (p->failed_on & 1) route_request_done(p->gen->route, p->call->model, i, 1, now_ms);
}

/* Reports the outcome of the attempt in progress. A success or an abandoned attempt is the last
 * one on the current model (the request ends, or moves to the next model). */
/* What an attempt came to, for the metrics: a route outcome, told apart where the router does
 * not care (an abandoned attempt the provider had refused). */
static stats_attempt_outcome attempt_outcome(const proxy *p, route_outcome o)
{
    switch (o) {
    case ROUTE_SUCCESS:
        return STATS_ATTEMPT_OK;
    case ROUTE_FAILURE:
        return STATS_ATTEMPT_ERROR;
    case ROUTE_TIMEOUT:
        return STATS_ATTEMPT_TIMEOUT;
    case ROUTE_RATE_LIMITED:
        return STATS_ATTEMPT_RATE_LIMITED;
    default:
        return p->status >= 400 ? STATS_ATTEMPT_REFUSED : STATS_ATTEMPT_ABANDONED;
    }
}

/* Counts the failed attempt that waited for what followed it, as `then` (or, with
 * STATS_NATTEMPT, as what it came to itself: nothing followed). */
static void attempt_settled(proxy *p, stats_attempt_outcome then)
{
    if (!p->pend_prov) return;
    stats_attempt(p->st->stats, p->pend_prov, then == STATS_NATTEMPT ? p->pend_outcome : then);
    p->pend_prov = NULL;
}

static void report(proxy *p, route_outcome o, int64_t retry_after_ms)
{
    int64_t now_ms = (int64_t)(ms_loop_mono_ns() / 1000000);
    int idx = p->dep_idx;
    if (idx >= 0 && p->attempt_live) {
        p->attempt_live = 0;
        const cfg_provider *prov = p->call->model->deployments[idx].provider;
        stats_attempt_outcome ao = attempt_outcome(p, o);
        attempt_settled(p, STATS_NATTEMPT);
        if (ao == STATS_ATTEMPT_ERROR || ao == STATS_ATTEMPT_TIMEOUT ||
            ao == STATS_ATTEMPT_RATE_LIMITED) {
            p->pend_prov = prov; /* retried, failed over, or final: known later */
            p->pend_outcome = ao;
        } else {
            stats_attempt(p->st->stats, prov, ao);
        }
    }
    if (idx >= 0) {
        route_report(p->gen->route, p->call->model, idx, o, retry_after_ms, now_ms);
        p->dep_idx = -1;
        if (o == ROUTE_SUCCESS) {
            p->failed_on &= ~dep_bit(idx); /* it failed this request before, but served it */
            route_request_done(p->gen->route, p->call->model, idx, 0, now_ms);
        } else if (o == ROUTE_FAILURE || o == ROUTE_TIMEOUT) {
            if (dep_bit(idx))
                p->failed_on |= dep_bit(idx);
            else /* no bit to remember it by: counted per attempt */
                route_request_done(p->gen->route, p->call->model, idx, 1, now_ms);
        }
    }
    if (o == ROUTE_SUCCESS || o == ROUTE_ABANDONED) count_failures(p, now_ms);
}

static void proxy_free(proxy *p)
{
    if (p->freeing) return;
    p->freeing = 1;
    /* the connection must not call back into a freed handler */
    if (p->c && p->c->handler.ctx == p) p->c->handler = (http_handler){0};
    if (p->x) {
        up_cancel(p->x);
        p->x = NULL;
    }
    report(p, ROUTE_ABANDONED, -1);
    attempt_settled(p, STATS_NATTEMPT);
    if (p->detached) {
        worker_t *w = p->w;
        /* the access line waited for the usage the request was billed */
        if (p->usage.known) {
            p->req.prompt_tokens = usage_prompt(&p->usage.u);
            p->req.completion_tokens = p->usage.u.output;
        }
        http_log_request(&p->req, 499, p->bytes_in, p->bytes_out);
        stats_request_done(api_worker_of(w)->stats, &p->req, 499);
        if (p->dprev)
            p->dprev->dnext = p->dnext;
        else
            api_worker_of(w)->detached = p->dnext;
        if (p->dnext) p->dnext->dprev = p->dprev;
        srv_app_work_end(w); /* may let a draining worker stop */
    }
    prov_upreq_free(&p->up);
    buf_free(&p->resp);
    oc_free(p->resp_block, PROXY_RESP_BLOCK);
    buf_free(&p->out);
    buf_free(&p->usage_chunk);
    if (p->enc) p->call->dialect->enc_free(p->enc);
    if (p->xst && p->xst_ad->release) p->xst_ad->release(p->xst);
    free(p->xst);
    sse_free(&p->sse);
    prov_call_free(p->call);
    prov_call_free(p->hub);
    free(p->hub_body);
    free(p->hub_why);
    api_settlement_free(p->st);
    free(p->owned_body);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, handle_closed);
    uv_close((uv_handle_t *)&p->dtimer, handle_closed);
    srv_gen_release(p->gen); /* last: the above read its config */
    p->gen = NULL;
}

static void note_upstream_time(proxy *p)
{
    if (!p->c) return;
    http_request *r = &p->c->req;
    if (r->upstream_ms < 0) r->upstream_ms = (int64_t)((ms_loop_mono_ns() - p->t0) / 1000000);
}

/* The documented estimate (docs/BILLING.md) for a 2xx answer whose usage never came, or came only
 * in part: what the provider reported is kept and never lowered. Output: the bytes of text seen
 * bound its tokens, and so does the request's own output limit (the provider cannot have
 * generated more than it was allowed to). Prompt, when the provider said nothing of it: the
 * prompt bound, counted as the dearest kind of prompt token the model has, so the estimate stays
 * a worst case whatever the cache did. */
static void estimate(proxy *p, usage_counts *u)
{
    prov_call *call = p->call;
    const cfg_model *m = call->model;
    int64_t out = p->usage.streamed_bytes;
    int64_t cap = call->ep == EP_CHAT
                      ? price_output_bound(p->gen->cfg, m, call->max_tokens) * prov_choices(call)
                      : 0;
    if (out > cap) out = cap;
    if (u->output < out) u->output = out;
    if (usage_prompt(u) > 0) return;
    int64_t *dearest = &u->input, price = m->price_in_nusd_per_mtok;
    if (m->price_cached_in_nusd_per_mtok > price)
        dearest = &u->cached_input, price = m->price_cached_in_nusd_per_mtok;
    if (m->price_cache_write_nusd_per_mtok > price)
        dearest = &u->cache_write, price = m->price_cache_write_nusd_per_mtok;
    if (m->price_cache_write_1h_nusd_per_mtok > price) dearest = &u->cache_write_1h;
    *dearest = p->st->prompt_bound;
}

/* Ends the request's money: usage if the provider said, an estimate if it answered 2xx without
 * saying (it billed something), else the hold is released. cost gets the USD text ("" when
 * nothing was charged). */
static void bill(proxy *p, int client_status, char *cost)
{
    prov_call *call = p->call;
    cost[0] = '\0';
    if (p->st->done) return; /* already billed */
    const char *provider = call->dep ? call->dep->provider->name : NULL;
    http_request *r = p->c ? &p->c->req : p->detached ? &p->req : NULL;
    if (r) {
        uint64_t end = p->x || !p->up_last_ns ? ms_loop_mono_ns() : p->up_last_ns;
        stats_end(r, call->model, call->dep, p->up_first_ns ? end - p->up_first_ns : 0);
    }
    /* a stream that did not reach its end may have reported only part of its usage (Anthropic
     * sends the prompt's at the start, the output's at the end) */
    int complete = !p->is_sse || p->saw_done;
    if (p->usage.known && complete) {
        api_settle(p->st, call->model, provider, &p->usage.u, client_status, p->usage.estimated,
                   cost);
    } else if (p->status >= 200 && p->status < 300) {
        prov_usage est = {.known = 1, .u = p->usage.known ? p->usage.u : (usage_counts){0}};
        estimate(p, &est.u);
        api_settle(p->st, call->model, provider, &est.u, client_status, 1, cost);
        p->usage = est;
    } else {
        api_release(p->st, call->model, provider, client_status);
    }
    if (p->c && p->usage.known) {
        p->c->req.prompt_tokens = usage_prompt(&p->usage.u);
        p->c->req.completion_tokens = p->usage.u.output;
    }
}

/* Gives up on a request whose client left: bills what is known (usage or the estimate). */
static void abandon(proxy *p)
{
    char cost[32];
    bill(p, 499, cost);
    proxy_free(p);
}

static void detached_timeout(uv_timer_t *t)
{
    abandon(t->data);
}

/* The client went away while the answer was still coming: keep reading it for its usage. */
static int on_abort(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    p->c = NULL;
    if (!p->x || p->finished) {
        /* waiting to retry, or done: nothing is coming that the provider bills */
        char cost[32];
        bill(p, 499, cost);
        if (p->busy)
            p->aborted = 1;
        else
            proxy_free(p);
        return 0;
    }
    worker_t *w = p->w;
    p->req = c->req;
    size_t pn = c->req.path.n < sizeof p->path ? c->req.path.n : sizeof p->path;
    memcpy(p->path, c->req.path.p, pn);
    p->req.path = (ms_str){p->path, pn};
    p->req.query = (ms_str){"", 0};
    p->req.authorization = p->req.content_type = p->req.body = (ms_str){"", 0};
    p->bytes_in = c->bytes_in;
    p->bytes_out = c->bytes_out;
    /* curl may still be sending the request body from the connection's buffer */
    p->owned_body = http_take_body(c);
    p->detached = 1;
    api_worker *aw = api_worker_of(w);
    p->dnext = aw->detached;
    if (aw->detached) aw->detached->dprev = p;
    aw->detached = p;
    srv_app_work_begin(w); /* a draining worker waits for it */
    uv_timer_start(&p->dtimer, detached_timeout, DETACHED_MAX_MS, 0);
    if (p->paused) {
        p->paused = 0;
        up_resume(p->x);
    }
    return 1;
}

void proxy_kill_detached(worker_t *w)
{
    api_worker *aw = api_worker_of(w);
    while (aw->detached)
        abandon(aw->detached);
}

static void on_drained(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    if (p->paused && p->x) {
        p->paused = 0;
        up_resume(p->x);
    }
}

/* The proxy lets go of its connection before it answers on it (or frees itself): nothing the
 * answer sets off (the next pipelined request, a close) may call back into the proxy. Returns
 * the connection, NULL when the client is gone already (on_abort let go of us). */
static http_conn *let_go(proxy *p)
{
    http_conn *c = p->c;
    if (c && c->handler.ctx == p) c->handler = (http_handler){0};
    p->c = NULL;
    return c;
}

#define HDR_CUR(q, lit) (memcpy((q), (lit), sizeof(lit) - 1), (q) + sizeof(lit) - 1)

/* The x-modelswitch-* lines into h (n bytes, NUL-terminated), written by a cursor with the
 * literals' sizes known, which the compiler copies with a few moves (a clamp per piece made each
 * a `rep movsq`, ~30 cycles to start). Names of a length no config has go through a heap copy,
 * cut at n as before. */
static void model_headers(proxy *p, char *h, size_t n, const char *cost)
{
    const char *model = p->call->model->name, *prov = p->call->dep->provider->name;
    size_t ml = strlen(model), pl = strlen(prov), cl = cost ? strlen(cost) : 0;
    size_t need = ml + pl + cl + 128; /* the pieces, ~100 bytes of literals, the NUL */
    char *q = need <= n ? h : malloc(need), *start = q;
    if (!q) {
        h[0] = '\0';
        return;
    }
    q = HDR_CUR(q, "x-modelswitch-model: ");
    memcpy(q, model, ml);
    q = HDR_CUR(q + ml, "\r\nx-modelswitch-provider: ");
    memcpy(q, prov, pl);
    q = HDR_CUR(q + pl, "\r\n");
    if (p->st->cache) q = HDR_CUR(q, "x-modelswitch-cache: miss\r\n");
    if (cl) {
        q = HDR_CUR(q, "x-modelswitch-cost: ");
        memcpy(q, cost, cl);
        q = HDR_CUR(q + cl, "\r\n");
    }
    *q = '\0';
    if (start != h) {
        ms_copy(h, n, start);
        free(start);
    }
}

static void stream_write(proxy *p, const char *data, size_t n)
{
    if (!p->c) return;
    stats_first_byte(&p->c->req);
    http_stream_write(p->c, data, n);
    if (p->st->cache) api_cache_tee(p->st->cache, data, n);
}

/* The client's dialect's encoder for this answer (made on first use). */
static dialect_enc *encoder(proxy *p)
{
    if (!p->enc) {
        prov_call *call = p->call;
        dialect_req dr = {.model = call->model->name,
                          .request_id = call->request_id,
                          .created = ms_loop_now_ms() / 1000,
                          .include_usage = call->client_include_usage};
        p->enc = call->dialect->enc_new(&dr);
    }
    return p->enc;
}

/* Where a translating or local adapter's events go: the client's dialect encodes them, into out
 * for a stream (the caller writes it), into the encoder's whole answer when out is NULL. */
typedef struct enc_sink {
    proxy *p;
    buf_t *out;
} enc_sink;

static int enc_emit(void *ctx, const ev_event *ev)
{
    enc_sink *es = ctx;
    dialect_enc *enc = encoder(es->p);
    return enc ? es->p->call->dialect->event(enc, ev, es->out) : -1;
}

/* The answer ended well: an endpoint that keeps answers (api_settlement.keep) gets it, in the
 * client's dialect. A passed-through stream's terminal event carries the whole answer; a
 * translated stream's encoder still has every item, and writes it whole. */
static void keep_answer(proxy *p, ms_str doc, int stream, const usage_counts *u)
{
    api_settlement *s = p->st;
    if (!s->keep || !p->c) return;
    if (!stream) {
        s->keep(s, p->w, p->call, doc, 0);
        return;
    }
    if (!p->translated && p->ad && !p->ad->local) {
        if (doc.n) s->keep(s, p->w, p->call, doc, 1);
        return;
    }
    buf_t whole;
    buf_init(&whole, 0);
    if (p->enc && p->call->dialect->answer(p->enc, u, &whole) == 0)
        s->keep(s, p->w, p->call, (ms_str){whole.data, whole.len}, 0);
    buf_free(&whole);
}

/* The stream is over (end marker, failure, or the upstream ended): bill, send what is held back
 * and the end marker, and end the response. */
static void stream_finish(proxy *p, const char *fail_code, const char *fail_type,
                          const char *fail_msg)
{
    p->finished = 1;
    uv_timer_stop(&p->timer);
    report(p,
           !fail_code                                   ? ROUTE_SUCCESS
           : strcmp(fail_code, "upstream_timeout") == 0 ? ROUTE_TIMEOUT
                                                        : ROUTE_FAILURE,
           -1);
    /* the usage the provider reported, before bill may put an estimate in its place */
    int reported = p->usage.known;
    char cost[32];
    bill(p, !p->c ? 499 : fail_code ? 502 : 200, cost);
    if (!p->c) return;
    /* the client's dialect frames the end: usage (the upstream's, as it came, with the cost),
     * the error if any, the end marker */
    char msg[512];
    dialect_error err = {fail_code, fail_type, msg};
    if (fail_code) {
        ms_copy(msg, sizeof msg, fail_msg);
        prov_redact(p->call->dep->provider, &p->up, msg, sizeof msg);
    }
    dialect_enc *enc = encoder(p);
    char stack[1024];
    buf_t b;
    buf_init_with(&b, stack, sizeof stack, 0);
    /* a pass-through stream cut before its held end: the adapter says what stands in for it */
    if (fail_code && !p->translated && !p->usage_chunk.len && p->ad->stream_cut && p->xst)
        p->ad->stream_cut(p->xst, &p->usage_chunk);
    ms_str held = {p->usage_chunk.data, p->usage_chunk.len};
    /* the client gets the usage the provider reported (its own event when it passed through),
     * or none: an estimate is the gateway's, not something the provider said */
    const usage_counts *u = p->translated && reported ? &p->usage.u : NULL;
    if (!enc || p->call->dialect->stream_end(enc, u, held, cost, fail_code ? &err : NULL, &b) != 0)
        buf_reset(&b);
    else if (!fail_code)
        keep_answer(p, held, 1, u);
    if (b.len) stream_write(p, b.data, b.len);
    if (!fail_code && p->st->cache && p->usage.known)
        api_cache_store_stream(p->st->cache, cost, b.len, &p->usage.u, p->call->model->name,
                               p->call->dep->provider->name);
    buf_free(&b);
    /* the write may have found the client gone: the connection let go of us (on_abort) */
    http_conn *c = let_go(p);
    if (c) http_stream_end(c);
}

static void idle_timeout(uv_timer_t *t)
{
    proxy *p = t->data;
    if (p->finished) return;
    /* Reads do not re-arm the timer (a timer-heap update per event); they note their time, and
     * a timer that fires early because of them is set again for the rest of the gap. */
    uint64_t idle = (uint64_t)p->call->dep->provider->idle_timeout_ms;
    uint64_t quiet = uv_now(t->loop) - p->last_read_ms;
    if (quiet < idle) {
        uv_timer_start(&p->timer, idle_timeout, idle - quiet, 0);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "The provider '%s' sent nothing for %" PRId64 " ms mid-stream.",
             p->call->dep->provider->name, p->call->dep->provider->idle_timeout_ms);
    stream_finish(p, "upstream_timeout", "timeout_error", msg);
    proxy_free(p);
}

static void on_response(void *ud, int status, const char *content_type, int64_t retry_after_ms)
{
    proxy *p = ud;
    p->status = status;
    p->retry_after_ms = retry_after_ms;
    note_upstream_time(p);
    if (p->call->stream && status >= 200 && status < 300 && content_type &&
        strncasecmp(content_type, "text/event-stream", 17) == 0) {
        p->is_sse = 1;
        uint64_t idle = (uint64_t)p->call->dep->provider->idle_timeout_ms;
        p->last_read_ms = uv_now(p->timer.loop);
        uv_timer_start(&p->timer, idle_timeout, idle, 0);
        if (p->c) {
            char h[512];
            model_headers(p, h, sizeof h - 32, NULL);
            strncat(h, "cache-control: no-cache\r\n", sizeof h - strlen(h) - 1);
            http_stream_start(p->c, 200, "text/event-stream", h);
        }
    }
}

/* The request as a translating adapter sees it: the hub form when the client spoke another API
 * than OpenAI chat (with the attempt's model and deployment), else the request itself. */
static prov_call *adapter_call(proxy *p)
{
    prov_call *call = p->call, *h = p->hub;
    if (!h) return call;
    h->model = call->model;
    h->dep = call->dep;
    h->output_bound = call->output_bound;
    return h;
}

/* A stream event of a translating adapter: decoded into events, encoded for the client. */
static int on_decoded_event(proxy *p, const sse_event *ev)
{
    int done = 0, error = 0;
    enc_sink es = {p, &p->out};
    ev_sink sink = {enc_emit, &es};
    int rc = p->ad->decode_event(p->xst, adapter_call(p), ev, &sink, &p->usage, &done, &error,
                                 p->err, sizeof p->err);
    if (p->out.len) {
        stream_write(p, p->out.data, p->out.len);
        if (p->aborted) return 1;
    }
    if (rc < 0 || error) {
        if (rc < 0 && !p->err[0]) snprintf(p->err, sizeof p->err, "the gateway ran out of memory");
        p->stream_failed = 1;
        return 1;
    }
    if (done) {
        p->saw_done = 1;
        return 1;
    }
    return 0;
}

static int on_sse_event(void *ud, const sse_event *ev)
{
    proxy *p = ud;
    int done = 0, error = 0, usage_chunk = 0;
    buf_reset(&p->out);
    if (p->translated) return on_decoded_event(p, ev);
    int rc = p->ad->stream_event(p->xst, p->call, ev, &p->out, &p->usage, &done, &error,
                                 &usage_chunk, p->err, sizeof p->err);
    if (rc < 0) {
        p->stream_failed = 1;
        return 1;
    }
    if (usage_chunk) {
        buf_reset(&p->usage_chunk);
        buf_append(&p->usage_chunk, p->out.data, p->out.len);
        if (!done) return 0;
        p->saw_done = 1; /* the held event is the stream's last too (Responses) */
        return 1;
    }
    if (rc == 1 && p->c) {
        /* the event as it came, framed where it lies */
        uv_buf_t parts[3] = {uv_buf_init("data: ", 6),
                             uv_buf_init((char *)ev->data.p, (unsigned)ev->data.n),
                             uv_buf_init("\n\n", 2)};
        stats_first_byte(&p->c->req);
        http_stream_writev(p->c, parts, 3);
        if (p->st->cache)
            for (int i = 0; i < 3; i++)
                api_cache_tee(p->st->cache, parts[i].base, parts[i].len);
        if (p->aborted) return 1;
    } else if (rc == 2 && p->c) {
        /* a named event (its `event:` line too) exactly as the provider sent it */
        stream_write(p, ev->raw.p, ev->raw.n);
        if (p->aborted) return 1;
    } else if (p->out.len) {
        stream_write(p, p->out.data, p->out.len);
        if (p->aborted) return 1;
    }
    if (error) {
        p->stream_failed = 1;
        return 1;
    }
    if (done) {
        p->saw_done = 1;
        return 1;
    }
    return 0;
}

/* sse_take_cb of a translated stream: a run of events the adapter decodes by the stream's shape
 * (prov_adapter.decode_len: a text delta each, mostly) skips the SSE parser's line search and
 * the per-event path (~500 instructions an event, docs/PERFORMANCE.md round 25). Its encoding
 * goes out whenever PROXY_RUN_WRITE bytes are there: a piece of a few events stays in p->out's
 * own 512 bytes (out_mem), where a whole run's grew the buffer by malloc every stream and wrote
 * it cold (measured: the instructions saved did not show in the CPU time). Each event is looked
 * for in at most max_event bytes, so one longer is the parser's (SSE_TOO_LARGE). */
static size_t take_decoded(proxy *p, const char *data, size_t n, size_t max_event, int *stop)
{
    if (!p->xst || !p->ad->decode_len) return 0;
    enc_sink es = {p, &p->out};
    ev_sink sink = {enc_emit, &es};
    size_t run = 0, k;
    int failed = 0;
    buf_reset(&p->out);
    while (run < n && !failed &&
           (k = p->ad->decode_len(p->xst, data + run, n - run < max_event ? n - run : max_event,
                                  &sink, &p->usage, &failed)) != 0) {
        run += k;
        if (p->out.len >= PROXY_RUN_WRITE) {
            stream_write(p, p->out.data, p->out.len);
            buf_reset(&p->out);
            if (p->aborted) break;
        }
    }
    if (p->out.len && !p->aborted) stream_write(p, p->out.data, p->out.len);
    if (failed) {
        snprintf(p->err, sizeof p->err, "the gateway could not encode the answer");
        p->stream_failed = 1;
    }
    *stop = p->aborted || failed;
    return run;
}

/* sse_take_cb: a run of pass-through events the adapter knows whole by the stream's shape
 * (prov_adapter.stream_len, "data: <json>\n\n" each) carries nothing the gateway acts on but
 * its text's size, so it goes to the client as it came, in one chunk: past the SSE parser and
 * the per-event path (a read of a fast stream holds dozens of them). */
static size_t sse_take(void *ud, const char *data, size_t n, size_t max_event, int *stop)
{
    proxy *p = ud;
    if (p->translated) return take_decoded(p, data, n, max_event, stop);
    if (!p->xst || !p->ad->stream_len) return 0;
    size_t run = 0, k;
    int64_t bytes;
    while (run < n && (k = p->ad->stream_len(p->xst, data + run, n - run, &bytes)) != 0 &&
           k <= max_event) {
        p->usage.streamed_bytes += bytes;
        run += k;
    }
    if (run) {
        stream_write(p, data, run);
        *stop = p->aborted;
    }
    return run;
}

/* A whole answer is gathered in a block of the thread's object cache (common/objcache.h) until
 * it outgrows it: most answers fit, and the block comes and goes without malloc, realloc and
 * free (~500 instructions a request). Taken at the first bytes, so a stream holds none. */
static void resp_lend(proxy *p)
{
    if (p->resp.data || p->resp_block || !(p->resp_block = oc_alloc(PROXY_RESP_BLOCK))) return;
    buf_rewind_to(&p->resp, p->resp_block, PROXY_RESP_BLOCK);
}

static void on_data(void *ud, const char *data, size_t n)
{
    proxy *p = ud;
    if (p->finished) return;
    p->busy++;
    if (p->detached) {
        p->detached_bytes += n;
        if (p->detached_bytes > DETACHED_MAX_BYTES) {
            /* enough: bill what is known and stop reading */
            p->finished = 1;
            char cost[32];
            bill(p, 499, cost);
            p->aborted = 1;
            goto out;
        }
    }
    if (p->is_sse) {
        if (p->saw_done) goto out; /* after [DONE] only the end of the transfer is awaited */
        p->last_read_ms = uv_now(p->timer.loop);
        /* a burst of events leaves in one write (http_stream_cork) */
        if (p->c) http_stream_cork(p->c, n);
        int rc = sse_feed(&p->sse, data, n);
        if (p->aborted) goto out;
        if (rc == SSE_TOO_LARGE) {
            p->stream_failed = 1;
            snprintf(p->err, sizeof p->err,
                     "the provider sent a stream event larger than the gateway accepts");
        }
        if (p->stream_failed) {
            /* the client gets its error now; nothing more is wanted from upstream */
            stream_finish(p, "provider_error", "upstream_error", p->err);
            p->aborted = 1;
            goto out;
        }
        if (p->c && !p->paused && http_write_pending(p->c) > HTTP_HIGH_WATER) {
            p->paused = 1;
            up_pause(p->x);
        }
    } else {
        resp_lend(p);
        if (buf_append(&p->resp, data, n) != 0) {
            p->finished = 1;
            report(p, ROUTE_FAILURE, -1);
            char cost[32];
            bill(p, 502, cost);
            if (p->c) {
                http_conn *c = let_go(p);
                /* the provider answered 2xx and may have billed it: not retried, here or by the
                 * client's SDK (docs/ROUTING.md) */
                http_add_extra_header(c, "x-should-retry: false\r\n");
                http_error(c, 502, "upstream_error", "provider_error", NULL,
                           "The provider's answer is larger than the gateway accepts.", -1);
            }
            p->aborted = 1;
        }
    }
out:
    p->busy--;
    if (p->aborted) proxy_free(p);
}

/* How long until the gateway would try an upstream of this request's chain again; 0: at once. */
static int64_t chain_wait_ms(proxy *p)
{
    int64_t now_ms = (int64_t)(ms_loop_mono_ns() / 1000000), best = -1;
    for (size_t i = 0; i < p->nchain; i++) {
        if (!p->chain[i]->ndeployments) continue;
        int64_t w = route_wait_ms(p->gen->route, p->chain[i], now_ms);
        if (best < 0 || w < best) best = w;
    }
    return best < 0 ? 0 : best;
}

/* Nothing more will be tried: the one answer that says why. */
static void fail_final(proxy *p)
{
    /* first, so that a cool-down this request's failures start shows in the answer */
    count_failures(p, (int64_t)(ms_loop_mono_ns() / 1000000));
    attempt_settled(p, STATS_NATTEMPT); /* the last attempt: nothing followed it */
    http_conn *c = p->c;
    char cost[32];
    int status;
    const char *type, *code;
    int64_t ra = -1;
    char msg[700];
    const char *no_retry = "x-should-retry: false\r\n";
    if (p->n_failed == 0 && p->cooling_wait_ms > 0) {
        /* no attempt was possible at all */
        if (p->cooling_all_429) {
            status = 429, type = "rate_limit_error", code = "rate_limit_exceeded";
            snprintf(msg, sizeof msg, "Every provider of '%s' is rate limiting requests.",
                     p->chain[0]->name);
        } else {
            status = 503, type = "service_unavailable_error", code = "service_unavailable";
            snprintf(msg, sizeof msg,
                     "No provider of '%s' is available right now (all are cooling down after "
                     "failures).",
                     p->chain[0]->name);
        }
        ra = p->cooling_wait_ms;
        no_retry = NULL;
    } else if (p->n_429 == p->n_failed && p->n_failed > 0) {
        status = 429, type = "rate_limit_error", code = "rate_limit_exceeded";
        /* the time the deployments stay rate limited, so that a retry before it is answered
         * here; if one is free already (max_attempts ran out first), the provider's own hint */
        ra = chain_wait_ms(p);
        if (ra <= 0) {
            int64_t max = p->gen->cfg->routing.retry_after_max_ms;
            ra = p->min_retry_after_ms >= 0 ? p->min_retry_after_ms : 1000;
            if (ra > max) ra = max;
        }
        snprintf(msg, sizeof msg, "%s", p->last_msg);
    } else if (p->last_was_timeout) {
        status = 504, type = "timeout_error", code = "upstream_timeout";
        snprintf(msg, sizeof msg, "%s", p->last_msg);
    } else {
        status = 502, type = "upstream_error", code = "provider_error";
        snprintf(msg, sizeof msg, "%s", p->last_msg[0] ? p->last_msg : "No provider answered.");
    }
    if (ra < 0) {
        /* every deployment is cooling down now: say until when, as for a 503 */
        int64_t w = chain_wait_ms(p);
        if (w > 0) ra = w;
    }
    bill(p, c ? status : 499, cost);
    if (status == 429) stats_rate_limited(api_worker_of(p->w)->stats, "upstream");
    proxy_free(p);
    if (!c) return;
    /* Once the gateway has tried upstream, it has retried and failed over already: a client
     * retry would multiply the upstream load (docs/ROUTING.md), so only the answers that tried
     * nothing invite one, after retry-after. So one SDK call costs at most one request's
     * attempts. */
    if (no_retry) http_add_extra_header(c, no_retry);
    http_error(c, status, type, code, NULL, msg, ra);
}

/* Moves to the next model of the chain, or gives up. */
static void next_model(proxy *p)
{
    p->chain_idx++;
    if (p->chain_idx >= p->nchain) {
        fail_final(p);
        return;
    }
    count_failures(p, (int64_t)(ms_loop_mono_ns() / 1000000));
    attempt_settled(p, STATS_ATTEMPT_FAILED_OVER);
    stats_fallback(p->st->stats, p->chain[0], p->chain_idx);
    p->tried = 0;
    p->attempts = 0;
    p->same_retries = 0;
    p->call->model = p->chain[p->chain_idx];
    log_info("request %s: falling back from '%s' to '%s'", p->call->request_id,
             p->chain[p->chain_idx - 1]->name, p->call->model->name);
    start_attempt(p);
}

static void run_attempt(proxy *p);

/* A backoff before retrying the deployment already picked is over. */
static void backoff_over(uv_timer_t *t)
{
    run_attempt(t->data);
}

/* Every deployment was rate limited for a short while: pick again now. */
static void rate_limit_wait_over(uv_timer_t *t)
{
    start_attempt(t->data);
}

/* The attempt in progress failed before anything reached the client. */
static void attempt_failed(proxy *p, route_outcome o, int retryable, const char *msg)
{
    int64_t ra = p->retry_after_ms;
    report(p, o, ra);
    p->n_failed++;
    if (o == ROUTE_RATE_LIMITED) {
        p->n_429++;
        if (ra >= 0 && (p->min_retry_after_ms < 0 || ra < p->min_retry_after_ms))
            p->min_retry_after_ms = ra;
    }
    p->last_was_timeout = o == ROUTE_TIMEOUT;
    p->last_status = p->status;
    snprintf(p->last_msg, sizeof p->last_msg, "%s", msg);
    if (p->call->dep) prov_redact(p->call->dep->provider, &p->up, p->last_msg, sizeof p->last_msg);
    /* a fresh attempt starts from a clean slate */
    p->status = 0;
    p->retry_after_ms = -1;
    buf_reset(&p->resp);
    if (!retryable) {
        p->chain_idx = p->nchain; /* no fallback either: the request itself was refused */
        fail_final(p);
        return;
    }
    start_attempt(p);
}

/* Why an attempt that needs the hub form of the request (the client spoke another API than the
 * provider) cannot be made, or NULL when it can: the form is made here, once, the first time an
 * attempt needs it, and a refusal of the rewrite is kept for the attempts after. */
static const prov_refusal *no_hub(proxy *p)
{
    static const prov_refusal oom = {.status = 500,
                                     .type = "api_error",
                                     .code = "internal_error",
                                     .message = "The gateway had an internal error while "
                                                "processing your request."};
    if (p->hub || !p->to_hub) return NULL;
    if (!p->hub_why) {
        dialect_refusal why;
        why.status = 0;
        p->hub = api_hub_call(p->gen->cfg, p->call, p->to_hub, &p->hub_body, &why);
        if (p->hub) return NULL;
        /* a rewrite past its bound (twice max_body_bytes) or out of memory */
        if (!why.status)
            dialect_refuse(&why, 413, "request_too_large", NULL,
                           "The request is too large to translate for this model's provider.");
        p->hub_why = malloc(sizeof *p->hub_why);
        if (p->hub_why) *p->hub_why = why;
    }
    return p->hub_why ? p->hub_why : &oom;
}

/* Gives the attempt's adapter a clean per-transfer state: a retry decodes from scratch, and a
 * fallback to another provider gets that adapter's state. Returns 0, or -1 (memory). */
static int new_transfer(proxy *p)
{
    const prov_adapter *ad = p->ad;
    /* same API both sides passes through, if the adapter can (it has `response`) */
    p->translated = ad->api != p->call->dialect->api || !ad->response;
    if (p->xst && p->xst_ad->release) p->xst_ad->release(p->xst);
    if (p->xst && p->xst_ad != ad) {
        free(p->xst);
        p->xst = NULL;
    }
    /* passing through decodes nothing, unless the adapter reads usage across events (or keeps
     * what its stream's events share) */
    int keep =
        ad->passthrough_state == PROV_STATE_STREAMS ? p->call->stream : ad->passthrough_state;
    if (ad->state_size && (p->translated || keep)) {
        if (!p->xst && !(p->xst = malloc(ad->state_size))) return -1;
        memset(p->xst, 0, ad->state_size);
        p->xst_ad = ad;
        if (ad->reset) ad->reset(p->xst, p->call);
    }
    return 0;
}

/* The provider cannot take something in the request (the adapter said which field): the
 * contract's 400 naming it, and nothing goes upstream. */
static void refuse(proxy *p, const prov_refusal *reason)
{
    char cost[32];
    prov_refusal why = *reason;     /* it may live in p, which is freed before the answer */
    report(p, ROUTE_ABANDONED, -1); /* the request's doing, not the deployment's */
    bill(p, why.status, cost);      /* nothing ran: the hold is released */
    http_conn *c = let_go(p);
    proxy_free(p);
    if (c) api_refuse(c, &why);
}

/* A 2xx whole answer: checked and passed through, or decoded and encoded in the client's
 * dialect into client. Returns 0, or -1 with a message in p->err. */
static int plain_answer(proxy *p, ms_str body, buf_t *client)
{
    prov_call *call = p->call;
    if (!p->translated)
        return p->ad->response(p->xst, call, body, client, &p->usage, p->err, sizeof p->err);
    if (call->ep != EP_CHAT)
        return p->ad->decode_embeddings(p->xst, adapter_call(p), body, client, &p->usage, p->err,
                                        sizeof p->err);
    enc_sink es = {p, NULL};
    ev_sink sink = {enc_emit, &es};
    if (p->ad->decode_answer(p->xst, adapter_call(p), body, &sink, &p->usage, p->err,
                             sizeof p->err) != 0)
        return -1;
    dialect_enc *enc = encoder(p);
    if (!enc || call->dialect->answer(enc, &p->usage.u, client) != 0) {
        snprintf(p->err, sizeof p->err, "the gateway could not encode the answer");
        return -1;
    }
    return 0;
}

static void finish_plain(proxy *p, up_result res, const char *errmsg)
{
    const char *prov = p->call->dep->provider->name;
    char msg[700], cost[32];
    if (res != UP_OK) {
        if (res == UP_TIMEOUT)
            snprintf(msg, sizeof msg, "The provider '%s' did not answer in time.", prov);
        else
            snprintf(msg, sizeof msg, "Could not reach the provider '%s': %s", prov,
                     errmsg ? errmsg : "connection failed");
        attempt_failed(p, res == UP_TIMEOUT ? ROUTE_TIMEOUT : ROUTE_FAILURE, 1, msg);
        return;
    }
    ms_str body = {p->resp.data ? p->resp.data : "", p->resp.len};
    if (p->status >= 200 && p->status < 300) {
        buf_t client;
        buf_init(&client, 0);
        if (plain_answer(p, body, &client) != 0) {
            /* the provider may have billed it: not retried, billed by estimate */
            snprintf(msg, sizeof msg, "The provider '%s' sent an invalid response: %s", prov,
                     p->err);
            buf_free(&client);
            report(p, ROUTE_FAILURE, -1);
            bill(p, p->c ? 502 : 499, cost);
            http_conn *c = p->c;
            proxy_free(p);
            if (c) {
                http_add_extra_header(c, "x-should-retry: false\r\n"); /* it may be billed */
                http_error(c, 502, "upstream_error", "provider_error", NULL, msg, -1);
            }
            return;
        }
        report(p, ROUTE_SUCCESS, -1);
        bill(p, p->c ? 200 : 499, cost);
        http_conn *c = p->c;
        if (!c) {
            buf_free(&client);
            proxy_free(p);
            return;
        }
        char h[600];
        model_headers(p, h, sizeof h, cost);
        buf_t *out = client.len ? &client : &p->resp;
        keep_answer(p, (ms_str){out->data ? out->data : "", out->len}, 0, NULL);
        if (p->st->cache)
            api_cache_store_whole(p->st->cache, (ms_str){out->data ? out->data : "", out->len},
                                  &p->usage.u, p->call->model->name, prov);
        /* The answer leaves from where it lies (the socket takes it whole, or conn_send_copy
         * copies what it does not), not from a copy the connection owns (let_go first). */
        let_go(p);
        http_respond(c, 200, "application/json", h, out->data ? out->data : "", out->len, 0);
        buf_free(&client);
        proxy_free(p);
        return;
    }
    char pmsg[512];
    p->ad->error_message(body, pmsg, sizeof pmsg);
    int st = p->status;
    if (st == 429) {
        snprintf(msg, sizeof msg, "The provider '%s' is rate limiting requests: %s", prov, pmsg);
        attempt_failed(p, ROUTE_RATE_LIMITED, 1, msg);
        return;
    }
    snprintf(msg, sizeof msg, "The provider '%s' returned HTTP %d: %s", prov, st, pmsg);
    if (st >= 500 || st == 408 || st == 409) {
        attempt_failed(p, st == 408 || st == 504 ? ROUTE_TIMEOUT : ROUTE_FAILURE, 1, msg);
        return;
    }
    /* the provider refused the request itself (400, 401, 404, 422...): another try would too */
    p->retry_after_ms = -1;
    attempt_failed(p, ROUTE_ABANDONED, 0, msg);
}

static void on_complete(void *ud, up_result res, const char *errmsg)
{
    proxy *p = ud;
    p->x = NULL;
    p->up_last_ns = ms_loop_mono_ns();
    note_upstream_time(p);
    if (p->finished) {
        proxy_free(p);
        return;
    }
    if (!p->is_sse) {
        finish_plain(p, res, errmsg);
        return;
    }
    /* A last write that finds the client gone closes the connection, whose abort must not
     * free p under stream_finish: busy makes it leave that to us. */
    p->busy++;
    if (p->saw_done)
        stream_finish(p, NULL, NULL, NULL);
    else if (res == UP_TIMEOUT)
        stream_finish(p, "upstream_timeout", "timeout_error",
                      "The provider did not finish the stream in time.");
    else if (res != UP_OK)
        stream_finish(p, "provider_error", "upstream_error",
                      "The provider's stream was cut off before it finished.");
    else
        stream_finish(p, "provider_error", "upstream_error",
                      "The provider's stream ended without its end marker.");
    p->busy--;
    proxy_free(p);
}

/* A provider with no upstream (echo) answers at once. The whole answer is known before its
 * first byte, so it is billed first and goes out in one write, with x-modelswitch-cost. */
static void run_local(proxy *p)
{
    prov_call *call = p->call;
    http_conn *c = p->c;
    const prov_refusal *nh = no_hub(p);
    if (nh) { /* a local provider reads the hub form, which was refused */
        refuse(p, nh);
        return;
    }
    buf_t out, body;
    buf_init(&out, RESPONSE_MAX);
    buf_init(&body, RESPONSE_MAX);
    enc_sink es = {p, call->stream ? &out : NULL};
    ev_sink sink = {enc_emit, &es};
    prov_refusal why; /* 448 bytes: written only when something is refused */
    why.status = 0;
    p->attempt_live = 1;
    report(p, ROUTE_SUCCESS, -1);
    int rc = p->ad->local(adapter_call(p), &sink, &body, &p->usage, &why);
    char cost[32], h[600];
    p->status = rc == 0 ? 200 : why.status ? why.status : 500;
    bill(p, p->status, cost);
    const dialect *d = call->dialect;
    if (rc == 0 && call->ep == EP_CHAT) {
        rc = call->stream ? d->stream_end(encoder(p), &p->usage.u, (ms_str){0}, cost, NULL, &out)
                          : d->answer(encoder(p), &p->usage.u, &body);
        if (rc == 0 && c)
            keep_answer(p, (ms_str){body.data ? body.data : "", body.len}, call->stream,
                        &p->usage.u);
    }
    let_go(p);
    if (!c) {
        /* the client is gone (a local answer after a wait): billed above, nothing to send */
    } else if (rc != 0) {
        if (why.status)
            api_refuse(c, &why);
        else
            api_err_internal(c);
    } else if (call->stream && call->ep == EP_CHAT) {
        model_headers(p, h, sizeof h - 32, cost);
        strncat(h, "cache-control: no-cache\r\n", sizeof h - strlen(h) - 1);
        http_stream_start(c, 200, d->stream_content_type, h);
        stats_first_byte(&c->req);
        http_stream_write(c, out.data, out.len);
        if (p->st->cache) {
            api_cache_tee(p->st->cache, out.data, out.len);
            api_cache_store_stream(p->st->cache, cost, out.len, &p->usage.u, call->model->name,
                                   call->dep->provider->name);
        }
        http_stream_end(c);
    } else {
        model_headers(p, h, sizeof h, cost);
        if (p->st->cache)
            api_cache_store_whole(p->st->cache, (ms_str){body.data ? body.data : "", body.len},
                                  &p->usage.u, call->model->name, call->dep->provider->name);
        size_t len = body.len;
        http_respond(c, 200, "application/json", h, buf_steal(&body), len, 1);
    }
    buf_free(&out);
    buf_free(&body);
    proxy_free(p);
}

/* Runs the attempt on deployment p->dep_idx of the current model. */
static void run_attempt(proxy *p)
{
    prov_call *call = p->call;
    const cfg_deployment *dep = &call->model->deployments[p->dep_idx];
    call->dep = dep;
    if (p->attempts > 0) stats_retry(p->st->stats, call->model);
    attempt_settled(p, STATS_ATTEMPT_RETRIED);
    p->attempts++;
    p->tried |= dep_bit(p->dep_idx);
    if (p->c) ms_copy(p->c->req.log_provider, sizeof p->c->req.log_provider, dep->provider->name);
    p->ad = prov_adapter_for(dep->provider, call->dialect->api);
    if (p->ad && p->ad->local) {
        run_local(p);
        return;
    }
    prov_upreq_free(&p->up);
    memset(&p->up, 0, sizeof p->up);
    prov_upreq_lend(&p->up, p->up_hmem, sizeof p->up_hmem, p->up_smem, sizeof p->up_smem);
    prov_refusal why; /* 448 bytes: written only when something is refused */
    why.status = 0;
    call->output_bound = price_output_bound(p->gen->cfg, call->model, call->max_tokens);
    int rc = !p->ad || new_transfer(p) != 0 ? -1 : 0;
    const prov_refusal *nh = rc == 0 && p->translated ? no_hub(p) : NULL;
    if (nh) {
        /* the provider does not speak the client's API, and the rewrite refused the request */
        refuse(p, nh);
        return;
    }
    if (rc == 0) rc = p->ad->build(p->translated ? adapter_call(p) : call, p->xst, &p->up, &why);
    if (rc == -2) {
        refuse(p, &why);
        return;
    }
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "The provider '%s' cannot be used by this build.",
                 dep->provider->name);
        attempt_failed(p, ROUTE_FAILURE, 1, msg);
        return;
    }
    const cfg_provider *prov = dep->provider;
    up_request req = {
        .method = "POST",
        .url = p->up.url,
        .headers = (const char *const *)p->up.headers,
        .nheaders = p->up.nheaders,
        .body = p->up.iov,
        .nbody = p->up.niov,
        .connect_timeout_ms = prov->connect_timeout_ms,
        .first_byte_timeout_ms = prov->first_byte_timeout_ms,
        .total_timeout_ms = prov->timeout_ms,
        .tls_ca_file = prov->tls_ca_file,
    };
    static const up_callbacks cbs = {on_response, on_data, on_complete};
    p->t0 = ms_loop_mono_ns();
    if (!p->up_first_ns) p->up_first_ns = p->t0;
    p->attempt_live = 1;
    p->x = up_start(p->w->up, &req, &cbs, p);
    if (!p->x)
        attempt_failed(p, ROUTE_ABANDONED, 0, "The gateway could not start the upstream request.");
}

/* Picks the next deployment (or model) and runs it, now or after the backoff a retry on the
 * same deployment needs. */
static void start_attempt(proxy *p)
{
    const cfg_t *cfg = p->gen->cfg;
    uint64_t now_ns = ms_loop_mono_ns();
    if (p->n_failed > 0 && now_ns >= p->budget_end_ns) {
        fail_final(p); /* the request's time budget is spent */
        return;
    }
    if (p->attempts >= cfg->routing.max_attempts) {
        next_model(p);
        return;
    }
    route_none why;
    int idx =
        route_pick(p->gen->route, p->call->model, p->tried, (int64_t)(now_ns / 1000000), &why);
    if (idx < 0) {
        /* every deployment is rate limited for a short while: waiting what the provider asked
         * hides the 429 from the client */
        if (why.all_rate_limited && p->attempts > 0 && p->c &&
            why.wait_ms <= cfg->routing.retry_after_max_ms &&
            now_ns + (uint64_t)why.wait_ms * 1000000 <= p->budget_end_ns) {
            uv_timer_start(&p->timer, rate_limit_wait_over, (uint64_t)why.wait_ms, 0);
            return;
        }
        if (why.all_cooling && (p->cooling_wait_ms <= 0 || why.wait_ms < p->cooling_wait_ms)) {
            p->cooling_wait_ms = why.wait_ms;
            p->cooling_all_429 = why.all_rate_limited && (p->n_failed == 0 || p->cooling_all_429);
        }
        next_model(p);
        return;
    }
    p->dep_idx = idx;
    int64_t wait = 0;
    if (p->tried & dep_bit(idx)) {
        /* the same deployment again: back off, or wait what it asked for */
        wait = route_backoff_ms(cfg, ++p->same_retries, route_rand());
        if (wait > cfg->routing.retry_after_max_ms) wait = cfg->routing.retry_after_max_ms;
        if (now_ns + (uint64_t)wait * 1000000 > p->budget_end_ns) {
            report(p, ROUTE_ABANDONED, -1);
            next_model(p);
            return;
        }
    }
    if (wait > 0 && p->c) {
        uv_timer_start(&p->timer, backoff_over, (uint64_t)wait, 0);
        return;
    }
    run_attempt(p);
}

void proxy_start(http_conn *c, prov_call *call, api_to_hub to_hub, api_settlement *settlement)
{
    proxy *p = oc_alloc(sizeof *p);
    if (p) {
        memset(p, 0, offsetof(proxy, out_mem));
        p->last_msg[0] = p->err[0] = '\0';
    }
    if (!p) {
        api_release(settlement, call->model, NULL, 500);
        api_settlement_free(settlement);
        prov_call_free(call);
        api_err_internal(c);
        return;
    }
    p->to_hub = to_hub;
    worker_t *w = c->w;
    p->c = c;
    p->w = w;
    /* the one call was parsed and admitted on (the worker may have moved to a newer one while an
     * admission waited for the shared state) */
    p->gen = srv_gen_hold(settlement->gen);
    p->call = call;
    p->st = settlement;
    p->dep_idx = -1;
    p->retry_after_ms = -1;
    p->min_retry_after_ms = -1;
    p->budget_end_ns = ms_loop_mono_ns() + (uint64_t)p->gen->cfg->routing.retry_budget_ms * 1000000;
    buf_init(&p->resp, RESPONSE_MAX);
    buf_init_with(&p->out, p->out_mem, sizeof p->out_mem, 0);
    buf_init_with(&p->usage_chunk, p->usage_mem, sizeof p->usage_mem, SSE_EVENT_MAX);
    sse_init(&p->sse, SSE_EVENT_MAX, on_sse_event, p);
    sse_set_take(&p->sse, sse_take);
    uv_timer_init(&w->loop, &p->timer);
    uv_timer_init(&w->loop, &p->dtimer);
    p->timer.data = p->dtimer.data = p;
    p->open_handles = 2;
    p->nchain = proxy_chain(p->gen->cfg, call->model, p->chain, CHAIN_MAX);
    c->handler = (http_handler){.ctx = p, .abort = on_abort, .drained = on_drained};
    start_attempt(p);
}

size_t proxy_chain(const cfg_t *cfg, const cfg_model *m, const cfg_model **out, size_t max)
{
    size_t n = 0;
    out[n++] = m;
    for (size_t i = 0; i < m->nfallbacks && n < max; i++) {
        const cfg_model *f = cfg_find_model(cfg, m->fallbacks[i], strlen(m->fallbacks[i]));
        if (f && f->ndeployments > 0) out[n++] = f;
    }
    return n;
}
