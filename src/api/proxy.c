/*
 * Forwarding a validated request to an upstream provider and bringing its answer back: the
 * per-request state machine shared by every adapter (see providers/provider.h).
 *
 * Non-streaming answers are collected (bounded) so they can be checked and their usage read
 * before the client sees a status line: a broken upstream answer becomes a clean 502, not a
 * truncated 200. Streaming answers go out event by event as they arrive; once the first byte is
 * out, failures are reported in-band (an error event, then [DONE]), never as a silent end.
 * When the client reads slower than the upstream sends, the upstream transfer is paused above a
 * high-water mark, so a stream holds a bounded amount of memory.
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

typedef struct proxy {
    http_conn *c;
    prov_call *call;
    const prov_adapter *ad;
    prov_upreq up;
    up_xfer *x;
    int status;
    int64_t retry_after_ms;
    int is_sse;
    int paused;
    int busy;    /* inside an upstream callback: freeing is deferred */
    int aborted; /* the client went away */
    int finished;
    int saw_done;
    int stream_failed;
    buf_t resp;
    buf_t out;
    sse_parser sse;
    prov_usage usage;
    uint64_t t0;
    char err[512];
} proxy;

static void proxy_free(proxy *p)
{
    /* the connection must not call back into a freed handler */
    if (!p->aborted && p->c->handler.ctx == p)
        p->c->handler = (http_handler){0};
    prov_upreq_free(&p->up);
    buf_free(&p->resp);
    buf_free(&p->out);
    sse_free(&p->sse);
    free(p->call);
    free(p);
}

static void note_upstream_time(proxy *p)
{
    http_request *r = &p->c->req;
    if (r->upstream_ms < 0)
        r->upstream_ms = (int64_t)((ms_mono_ns() - p->t0) / 1000000);
}

static void record_usage(proxy *p)
{
    http_request *r = &p->c->req;
    if (p->usage.known) {
        r->prompt_tokens = p->usage.prompt_tokens;
        r->completion_tokens = p->usage.completion_tokens;
    }
}

static void on_abort(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    if (p->x) {
        up_cancel(p->x);
        p->x = NULL;
    }
    p->aborted = 1;
    if (!p->busy)
        proxy_free(p);
}

static void on_drained(http_conn *c, void *ctx)
{
    proxy *p = ctx;
    if (p->paused && p->x) {
        p->paused = 0;
        up_resume(p->x);
    }
}

static void model_headers(proxy *p, char *h, size_t n)
{
    snprintf(h, n, "x-modelswitch-model: %s\r\nx-modelswitch-provider: %s\r\n",
             p->call->model->name, p->call->dep->provider->name);
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
        char h[512];
        model_headers(p, h, sizeof h - 32);
        strncat(h, "cache-control: no-cache\r\n", sizeof h - strlen(h) - 1);
        http_stream_start(p->c, 200, "text/event-stream", h);
    }
}

static void stream_fail(proxy *p, const char *code, const char *type, const char *message)
{
    if (p->stream_failed)
        return;
    p->stream_failed = 1;
    buf_t b;
    buf_init(&b, 0);
    buf_appends(&b, "data: {\"error\":{\"message\":\"");
    buf_append_json_escaped(&b, message, strlen(message));
    buf_printf(&b, "\",\"type\":\"%s\",\"code\":\"%s\",\"param\":null}}\n\ndata: [DONE]\n\n", type,
               code);
    if (b.data)
        http_stream_write(p->c, b.data, b.len);
    buf_free(&b);
}

static int on_sse_event(void *ud, const sse_event *ev)
{
    proxy *p = ud;
    int done = 0, error = 0;
    buf_reset(&p->out);
    if (p->ad->stream_event(p->call, ev, &p->out, &p->usage, &done, &error, p->err,
                            sizeof p->err) != 0) {
        stream_fail(p, "provider_error", "upstream_error", p->err);
        return 1;
    }
    if (p->out.len && http_stream_write(p->c, p->out.data, p->out.len) != 0)
        return 1;
    if (error) {
        stream_fail(p, "provider_error", "upstream_error", p->err);
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
    if (p->is_sse) {
        if (p->saw_done)
            goto out; /* after [DONE] only the end of the transfer is awaited */
        int rc = sse_feed(&p->sse, data, n);
        if (!p->aborted && rc == SSE_TOO_LARGE)
            stream_fail(p, "provider_error", "upstream_error",
                        "the provider sent a stream event larger than the gateway accepts");
        if (!p->aborted && p->stream_failed) {
            /* the client has its error; nothing more is wanted from upstream */
            p->finished = 1;
            up_cancel(p->x);
            p->x = NULL;
            record_usage(p);
            http_conn *c = p->c;
            p->busy--;
            proxy_free(p);
            http_stream_end(c);
            return;
        }
        if (!p->aborted && !p->paused && http_write_pending(p->c) > HTTP_HIGH_WATER) {
            p->paused = 1;
            up_pause(p->x);
        }
    } else if (buf_append(&p->resp, data, n) != 0) {
        p->finished = 1;
        up_cancel(p->x);
        p->x = NULL;
        p->busy--;
        http_conn *c = p->c;
        proxy_free(p);
        http_error(c, 502, "upstream_error", "provider_error", NULL,
                   "The provider's answer is larger than the gateway accepts.", -1);
        return;
    }
out:
    p->busy--;
    if (p->aborted)
        proxy_free(p);
}

static void finish_plain(proxy *p, up_result res, const char *errmsg)
{
    http_conn *c = p->c;
    const char *prov = p->call->dep->provider->name;
    char msg[700];
    if (res != UP_OK) {
        api_error_info e = api_upstream_error(res, 0);
        if (res == UP_TIMEOUT)
            snprintf(msg, sizeof msg, "The provider '%s' did not answer in time.", prov);
        else
            snprintf(msg, sizeof msg, "Could not reach the provider '%s': %s", prov,
                     errmsg ? errmsg : "connection failed");
        proxy_free(p);
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
            proxy_free(p);
            http_error(c, 502, "upstream_error", "provider_error", NULL, msg, -1);
            return;
        }
        record_usage(p);
        char h[512];
        model_headers(p, h, sizeof h);
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
    proxy_free(p);
    http_error(c, e.status, e.type, e.code, NULL, msg, ra);
}

static void on_complete(void *ud, up_result res, const char *errmsg)
{
    proxy *p = ud;
    p->x = NULL;
    if (p->finished)
        return;
    p->finished = 1;
    note_upstream_time(p);
    if (!p->is_sse) {
        finish_plain(p, res, errmsg);
        return;
    }
    record_usage(p);
    if (!p->saw_done && !p->stream_failed) {
        if (res == UP_TIMEOUT)
            stream_fail(p, "upstream_timeout", "timeout_error",
                        "The provider did not finish the stream in time.");
        else if (res != UP_OK)
            stream_fail(p, "provider_error", "upstream_error",
                        "The provider's stream was cut off before it finished.");
        else
            stream_fail(p, "provider_error", "upstream_error",
                        "The provider's stream ended without its end marker.");
    } else if (p->saw_done) {
        http_stream_write(p->c, "data: [DONE]\n\n", 14);
    }
    http_conn *c = p->c;
    proxy_free(p);
    http_stream_end(c);
}

void proxy_start(http_conn *c, prov_call *call, const prov_adapter *ad)
{
    proxy *p = calloc(1, sizeof *p);
    if (!p) {
        free(call);
        api_err_internal(c);
        return;
    }
    p->c = c;
    p->call = call;
    p->ad = ad;
    p->retry_after_ms = -1;
    buf_init(&p->resp, RESPONSE_MAX);
    buf_init(&p->out, 0);
    sse_init(&p->sse, SSE_EVENT_MAX, on_sse_event, p);
    snprintf(c->req.log_provider, sizeof c->req.log_provider, "%s", call->dep->provider->name);
    if (ad->build(call, &p->up) != 0) {
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
        proxy_free(p);
        api_err_internal(c);
        return;
    }
    c->handler = (http_handler){.ctx = p, .abort = on_abort, .drained = on_drained};
}
