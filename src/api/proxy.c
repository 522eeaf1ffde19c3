/*
 * Forwarding a validated request to an upstream provider and bringing its answer back: the
 * per-request state machine shared by every adapter (see providers/provider.h).
 *
 * Non-streaming answers are collected (bounded) so they can be checked, their usage read and the
 * request billed before the client sees a status line: a broken upstream answer becomes a clean
 * 502, not a truncated 200, and x-modelswitch-cost is known. Streaming answers go out event by
 * event as they arrive; the usage chunk is held back to the end so the cost can be added to it.
 * Once the first byte is out, failures are reported in-band (an error event, then [DONE]).
 * When the client reads slower than the upstream sends, the upstream transfer is paused above a
 * high-water mark, so a stream holds a bounded amount of memory.
 *
 * Money: every request that got here holds money (api_place_hold). Exactly one of settle (usage
 * known, or estimated when the provider answered 2xx but never said) or release (the provider
 * failed before answering) ends it. If the client goes away mid-answer the proxy detaches: the
 * upstream answer is still read (and discarded), bounded in time and bytes, until its usage
 * arrives, so the account pays what the provider charged (docs/BILLING.md).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/proxy.h"
#include "common/log.h"
#include "common/util.h"

#define RESPONSE_MAX (64u << 20) /* the largest non-streaming answer accepted from a provider */
#define SSE_EVENT_MAX (4u << 20)
#define DETACHED_MAX_MS 30000       /* how long a detached request waits for its usage */
#define DETACHED_MAX_BYTES (8u << 20) /* and how many more bytes it reads for it */

struct proxy {
    http_conn *c; /* NULL once detached */
    worker_t *w;
    prov_call *call;
    const prov_adapter *ad;
    prov_upreq up;
    up_xfer *x;
    int status;
    int64_t retry_after_ms;
    int is_sse;
    int paused;
    int busy;     /* inside an upstream callback: freeing is deferred */
    int aborted;  /* must be freed as soon as the callback unwinds */
    int finished; /* billed and answered; only the end of the transfer is awaited */
    int saw_done;
    int stream_failed;
    int detached;
    uint64_t detached_bytes;
    uv_timer_t timer; /* detached: the time bound */
    struct proxy *dnext, *dprev;
    char *owned_body; /* detached: the client's body, which the upstream may still be reading */
    http_request req;  /* detached: the request as the access log needs it */
    char path[128];
    uint64_t bytes_in, bytes_out;
    buf_t resp;
    buf_t out;
    buf_t usage_chunk; /* the upstream's usage-only chunk, sent last with the cost */
    sse_parser sse;
    prov_usage usage;
    uint64_t t0;
    char err[512];
};

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void proxy_free(proxy *p)
{
    /* the connection must not call back into a freed handler */
    if (p->c && p->c->handler.ctx == p)
        p->c->handler = (http_handler){0};
    if (p->x) {
        up_cancel(p->x);
        p->x = NULL;
    }
    prov_upreq_free(&p->up);
    buf_free(&p->resp);
    buf_free(&p->out);
    buf_free(&p->usage_chunk);
    sse_free(&p->sse);
    free(p->call);
    free(p->owned_body);
    if (p->detached) {
        worker_t *w = p->w;
        /* the access line waited for the usage the request was billed */
        if (p->usage.known) {
            p->req.prompt_tokens = p->usage.prompt_tokens;
            p->req.completion_tokens = p->usage.completion_tokens;
        }
        http_log_request(&p->req, 499, p->bytes_in, p->bytes_out);
        if (p->dprev)
            p->dprev->dnext = p->dnext;
        else
            w->detached = p->dnext;
        if (p->dnext)
            p->dnext->dprev = p->dprev;
        w->ndetached--;
        p->timer.data = p;
        uv_close((uv_handle_t *)&p->timer, timer_closed);
        if (w->draining)
            srv_worker_check_drained(w);
        return;
    }
    free(p);
}

static void note_upstream_time(proxy *p)
{
    if (!p->c)
        return;
    http_request *r = &p->c->req;
    if (r->upstream_ms < 0)
        r->upstream_ms = (int64_t)((ms_mono_ns() - p->t0) / 1000000);
}

/* Ends the request's money: usage if the provider said, an estimate if it answered 2xx without
 * saying (it billed something), else the hold is released. cost gets the USD text ("" when
 * nothing was charged). */
static void bill(proxy *p, int client_status, char *cost)
{
    prov_call *call = p->call;
    cost[0] = '\0';
    if (call->hold.amount_nusd == 0 && call->hold.account_id == 0)
        return; /* already billed */
    if (p->usage.known) {
        call->settle(call, &p->usage, client_status, 0, cost);
    } else if (p->status >= 200 && p->status < 300) {
        prov_usage est = {1, call->prompt_bound, p->usage.streamed_bytes, 0};
        call->settle(call, &est, client_status, 1, cost);
        p->usage = est;
    } else {
        call->release(call, client_status);
    }
    call->hold.account_id = 0;
    call->hold.amount_nusd = 0;
    if (p->c && p->usage.known) {
        p->c->req.prompt_tokens = p->usage.prompt_tokens;
        p->c->req.completion_tokens = p->usage.completion_tokens;
    }
}

static void detached_timeout(uv_timer_t *t)
{
    proxy *p = t->data;
    char cost[32];
    bill(p, 499, cost);
    proxy_free(p);
}

/* The client went away while the answer was still coming: keep reading it for its usage. */
static int on_abort(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    p->c = NULL;
    if (!p->x || p->finished) {
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
    p->owned_body = buf_steal(&c->body);
    p->detached = 1;
    p->dnext = w->detached;
    if (w->detached)
        w->detached->dprev = p;
    w->detached = p;
    w->ndetached++;
    uv_timer_init(&w->loop, &p->timer);
    p->timer.data = p;
    uv_timer_start(&p->timer, detached_timeout, DETACHED_MAX_MS, 0);
    if (p->paused) {
        p->paused = 0;
        up_resume(p->x);
    }
    return 1;
}

void proxy_kill_detached(worker_t *w)
{
    while (w->detached) {
        proxy *p = w->detached;
        char cost[32];
        bill(p, 499, cost);
        proxy_free(p);
    }
}

static void on_drained(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    if (p->paused && p->x) {
        p->paused = 0;
        up_resume(p->x);
    }
}

static void model_headers(proxy *p, char *h, size_t n, const char *cost)
{
    int k = snprintf(h, n, "x-modelswitch-model: %s\r\nx-modelswitch-provider: %s\r\n",
                     p->call->model->name, p->call->dep->provider->name);
    if (cost && cost[0] && k > 0 && (size_t)k < n)
        snprintf(h + k, n - (size_t)k, "x-modelswitch-cost: %s\r\n", cost);
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
        if (p->c) {
            char h[512];
            model_headers(p, h, sizeof h - 32, NULL);
            strncat(h, "cache-control: no-cache\r\n", sizeof h - strlen(h) - 1);
            http_stream_start(p->c, 200, "text/event-stream", h);
        }
    }
}

static void stream_write(proxy *p, const char *data, size_t n)
{
    if (p->c)
        http_stream_write(p->c, data, n);
}

static void stream_error_event(proxy *p, const char *code, const char *type, const char *message)
{
    buf_t b;
    buf_init(&b, 0);
    buf_appends(&b, "data: {\"error\":{\"message\":\"");
    buf_append_json_escaped(&b, message, strlen(message));
    buf_printf(&b, "\",\"type\":\"%s\",\"code\":\"%s\",\"param\":null}}\n\n", type, code);
    if (b.data)
        stream_write(p, b.data, b.len);
    buf_free(&b);
}

/* The stream is over (end marker, failure, or the upstream ended): bill, send what is held back
 * and the end marker, and end the response. Frees p unless inside a callback. */
static void stream_finish(proxy *p, const char *fail_code, const char *fail_type,
                          const char *fail_msg)
{
    p->finished = 1;
    char cost[32];
    bill(p, !p->c ? 499 : fail_code ? 502 : 200, cost);
    if (p->c) {
        if (p->usage_chunk.len && p->call->client_include_usage) {
            buf_t b;
            buf_init(&b, 0);
            buf_appends(&b, "data: ");
            ms_str chunk = {p->usage_chunk.data, p->usage_chunk.len};
            if (prov_splice_cost(&b, chunk, cost[0] ? cost : "0") != 0) {
                buf_reset(&b);
                buf_appends(&b, "data: ");
                buf_append(&b, chunk.p, chunk.n);
            }
            buf_appends(&b, "\n\n");
            if (b.data)
                stream_write(p, b.data, b.len);
            buf_free(&b);
        }
        if (fail_code)
            stream_error_event(p, fail_code, fail_type, fail_msg);
        stream_write(p, "data: [DONE]\n\n", 14);
        http_conn *c = p->c;
        if (c->handler.ctx == p)
            c->handler = (http_handler){0};
        p->c = NULL;
        http_stream_end(c);
    }
}

static int on_sse_event(void *ud, const sse_event *ev)
{
    proxy *p = ud;
    int done = 0, error = 0, usage_chunk = 0;
    buf_reset(&p->out);
    if (p->ad->stream_event(p->call, ev, &p->out, &p->usage, &done, &error, &usage_chunk, p->err,
                            sizeof p->err) != 0) {
        p->stream_failed = 1;
        return 1;
    }
    if (usage_chunk) {
        buf_reset(&p->usage_chunk);
        buf_append(&p->usage_chunk, p->out.data, p->out.len);
        return 0;
    }
    if (p->out.len) {
        stream_write(p, p->out.data, p->out.len);
        if (p->aborted)
            return 1;
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

static void on_data(void *ud, const char *data, size_t n)
{
    proxy *p = ud;
    if (p->finished)
        return;
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
        if (p->saw_done)
            goto out; /* after [DONE] only the end of the transfer is awaited */
        int rc = sse_feed(&p->sse, data, n);
        if (p->aborted)
            goto out;
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
    } else if (buf_append(&p->resp, data, n) != 0) {
        p->finished = 1;
        char cost[32];
        bill(p, 502, cost);
        if (p->c) {
            http_conn *c = p->c;
            if (c->handler.ctx == p)
                c->handler = (http_handler){0};
            p->c = NULL;
            http_error(c, 502, "upstream_error", "provider_error", NULL,
                       "The provider's answer is larger than the gateway accepts.", -1);
        }
        p->aborted = 1;
    }
out:
    p->busy--;
    if (p->aborted)
        proxy_free(p);
}

static void finish_plain(proxy *p, up_result res, const char *errmsg)
{
    const char *prov = p->call->dep->provider->name;
    char msg[700], cost[32];
    if (res != UP_OK) {
        api_error_info e = api_upstream_error(res, 0);
        if (res == UP_TIMEOUT)
            snprintf(msg, sizeof msg, "The provider '%s' did not answer in time.", prov);
        else
            snprintf(msg, sizeof msg, "Could not reach the provider '%s': %s", prov,
                     errmsg ? errmsg : "connection failed");
        bill(p, p->c ? e.status : 499, cost);
        http_conn *c = p->c;
        proxy_free(p);
        if (c)
            http_error(c, e.status, e.type, e.code, NULL, msg, -1);
        return;
    }
    ms_str body = {p->resp.data ? p->resp.data : "", p->resp.len};
    if (p->status >= 200 && p->status < 300) {
        buf_t client;
        buf_init(&client, 0);
        if (p->ad->response(p->call, body, &client, &p->usage, p->err, sizeof p->err) != 0) {
            snprintf(msg, sizeof msg, "The provider '%s' sent an invalid response: %s", prov,
                     p->err);
            buf_free(&client);
            bill(p, p->c ? 502 : 499, cost);
            http_conn *c = p->c;
            proxy_free(p);
            if (c)
                http_error(c, 502, "upstream_error", "provider_error", NULL, msg, -1);
            return;
        }
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
        size_t len = out->len;
        char *data = buf_steal(out);
        buf_free(&client);
        proxy_free(p);
        http_respond(c, 200, "application/json", h, data, len, 1);
        return;
    }
    char pmsg[512];
    p->ad->error_message(body, pmsg, sizeof pmsg);
    api_error_info e = api_upstream_error(UP_OK, p->status);
    int64_t ra = -1;
    if (e.status == 429) {
        ra = p->retry_after_ms >= 0 ? p->retry_after_ms : 1000;
        snprintf(msg, sizeof msg, "The provider '%s' is rate limiting requests: %s", prov, pmsg);
    } else {
        snprintf(msg, sizeof msg, "The provider '%s' returned HTTP %d: %s", prov, p->status,
                 pmsg);
    }
    bill(p, p->c ? e.status : 499, cost);
    http_conn *c = p->c;
    proxy_free(p);
    if (c)
        http_error(c, e.status, e.type, e.code, NULL, msg, ra);
}

static void on_complete(void *ud, up_result res, const char *errmsg)
{
    proxy *p = ud;
    p->x = NULL;
    note_upstream_time(p);
    if (p->finished) {
        proxy_free(p);
        return;
    }
    if (!p->is_sse) {
        finish_plain(p, res, errmsg);
        return;
    }
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
    proxy_free(p);
}

void proxy_start(http_conn *c, prov_call *call, const prov_adapter *ad)
{
    proxy *p = calloc(1, sizeof *p);
    if (!p) {
        call->release(call, 500);
        free(call);
        api_err_internal(c);
        return;
    }
    p->c = c;
    p->w = c->w;
    p->call = call;
    p->ad = ad;
    p->retry_after_ms = -1;
    buf_init(&p->resp, RESPONSE_MAX);
    buf_init(&p->out, 0);
    buf_init(&p->usage_chunk, SSE_EVENT_MAX);
    sse_init(&p->sse, SSE_EVENT_MAX, on_sse_event, p);
    snprintf(c->req.log_provider, sizeof c->req.log_provider, "%s", call->dep->provider->name);
    if (ad->build(call, &p->up) != 0) {
        call->release(call, 500);
        proxy_free(p);
        api_err_internal(c);
        return;
    }
    const cfg_provider *prov = call->dep->provider;
    up_request req = {
        .method = "POST",
        .url = p->up.url,
        .headers = (const char *const *)p->up.headers,
        .nheaders = p->up.nheaders,
        .body = p->up.iov,
        .nbody = p->up.niov,
        .connect_timeout_ms = prov->connect_timeout_ms,
        .first_byte_timeout_ms = prov->timeout_ms,
        .total_timeout_ms = call->stream ? 0 : prov->timeout_ms,
    };
    static const up_callbacks cbs = {on_response, on_data, on_complete};
    p->t0 = ms_mono_ns();
    p->x = up_start(c->w->up, &req, &cbs, p);
    if (!p->x) {
        call->release(call, 500);
        proxy_free(p);
        api_err_internal(c);
        return;
    }
    c->handler = (http_handler){.ctx = p, .abort = on_abort, .drained = on_drained};
}
