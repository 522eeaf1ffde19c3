/*
 * The upstream HTTP client (see upstream.h): libcurl's multi_socket interface driven by a worker's
 * libuv loop.
 *
 * Dispatch. http:// and https:// URLs go to the native HTTP/1.1 client (h1.c), far cheaper per
 * request, unless MODELSWITCH_UPSTREAM=curl was set when the ctx was created; https:// stays here
 * when https_proxy or all_proxy is set (curl honours them; the native client speaks no proxy). Each
 * ctx then owns an h1_ctx next to its curl multi handle, and up_pause/up_resume/up_cancel tell the
 * two kinds of transfer apart by their first member.
 *
 * How it is wired. Each up_ctx owns one CURLM. curl tells us which sockets to watch through the
 * socket callback (one uv_poll_t per curl socket, created and closed as curl asks) and when to call
 * it back through the timer callback (one uv_timer_t). Every readiness event or timer expiry is
 * turned into curl_multi_socket_action, and after every such call the finished transfers are
 * collected with curl_multi_info_read. The multi handle keeps the connection pool (reused across
 * requests, HTTP/2 multiplexed where TLS allows it) and the DNS cache.
 *
 * Re-entrancy. curl forbids adding or removing easy handles from inside its callbacks, and the
 * consumer's on_response / on_data run inside them. So whenever we are inside curl (ctx->in_curl),
 * up_cancel only marks the transfer (its curl callbacks then refuse further work) and up_start
 * only queues the add; both are finished from a uv_idle_t ("deferred work") on the next loop
 * iteration, which is also where up_resume's unpause happens: curl_easy_pause(CURLPAUSE_CONT)
 * delivers buffered bytes synchronously, and doing that inside up_resume would re-enter the
 * consumer. on_complete is only ever called outside curl, so the consumer may do anything there.
 *
 * Backpressure. up_pause inside on_data, or from the loop outside curl, pauses the receive side
 * at once with curl_easy_pause(CURLPAUSE_RECV) (the bytes already handed over were consumed); one
 * requested inside another curl callback (on_response, another transfer's on_data) is applied
 * lazily: the next write callback returns CURL_WRITEFUNC_PAUSE and curl keeps that chunk for
 * later. Either way curl holds at most a chunk or so of buffered data per paused stream.
 *
 * Timeouts. connect and total use curl's own options; note that curl counts paused time in the
 * total timeout, so a consumer that keeps a stream paused for long can make it fail with
 * UP_TIMEOUT (we keep curl's semantics on purpose: a total timeout is a hard cap on the stream's
 * lifetime). The first-byte timeout is a per-transfer uv_timer_t stopped when the final response
 * header block arrives.
 *
 * Process-wide setup: curl_global_init must have been called once by the program before the
 * first up_ctx_new (it is not thread-safe and is not done here), and curl_global_cleanup after
 * the last up_ctx is gone.
 */
#include "upstream/upstream.h"
#include "upstream/internal.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Idle pooled connections kept per worker, all hosts: as many as the native client keeps per
 * host (h1.c's H1_MAX_IDLE says why so many); curl closes one unused for 118 s itself. */
#define UP_MAX_CONNECTS 1024
/* Easy handles kept for reuse per ctx (saves their setup cost on every request). */
#define UP_EASY_FREELIST 16
#define UP_CT_MAX 256
#define UP_ERRMSG_MAX 256
/* Retry hints beyond a day are treated as a day. */
#define UP_RETRY_MAX_MS (24LL * 3600 * 1000)

typedef struct up_sock up_sock;

struct up_sock {
    uv_poll_t poll;
    up_ctx *ctx;
    curl_socket_t fd;
    up_sock *prev, *next;
};

/* Bodies up to this size are sent from one joined buffer together with the request head. */
#define UP_SMALL_BODY 16384

struct up_xfer {
    int kind; /* UP_KIND_CURL; must stay first */
    up_ctx *ctx;
    CURL *easy;
    struct curl_slist *headers;
    up_callbacks cb;
    void *ud;

    up_iov *iov; /* copy of the caller's array; the bytes themselves are the caller's */
    size_t niov, iov_i, iov_off;
    char *small_body; /* a small body joined into one buffer (see UP_SMALL_BODY) */

    uv_timer_t fb_timer; /* first-byte timeout, initialised only when asked for */
    int64_t fb_timeout_ms;
    bool fb_init;

    bool in_multi;    /* added to ctx->multi */
    bool paused;      /* the consumer asked for a pause */
    bool curl_paused; /* curl's receive side is actually paused */
    bool cancelled;
    bool finished; /* on_complete is running or has run */
    bool responded;
    bool want_add, want_resume; /* deferred work pending */
    bool in_defer;

    int status;
    char content_type[UP_CT_MAX];
    bool has_ct;
    int64_t retry_after_ms;    /* from Retry-After, -1 if absent */
    int64_t retry_after_ms_ms; /* from retry-after-ms, -1 if absent; wins */

    char errbuf[CURL_ERROR_SIZE];

    up_xfer *prev, *next;   /* ctx->xfers */
    up_xfer *dprev, *dnext; /* ctx->deferred */
};

struct up_ctx {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout */
    uv_idle_t defer;  /* deferred adds, cancels and resumes */
    int in_curl;      /* depth of curl calls that may run our easy-handle callbacks */
    bool freeing;
    int nhandles; /* uv handles of the ctx not yet closed; the last close frees the ctx */
    size_t active;
    up_xfer *xfers;
    up_xfer *deferred, *deferred_tail;
    size_t ndeferred;
    up_sock *socks;
    bool no_proxy_env; /* no *_proxy variable at start: curl need not look them up per request */
    bool https_proxy; /* https_proxy or all_proxy set: https:// stays with curl, which honours it */
    CURL *free_easy[UP_EASY_FREELIST];
    size_t nfree_easy;
    h1_ctx *h1; /* plain http:// goes here unless MODELSWITCH_UPSTREAM=curl */
};

static int xfer_kind(const up_xfer *x)
{
    return *(const int *)(const void *)x;
}

static void check_multi_info(up_ctx *ctx);

/* ---- handle bookkeeping ---- */

static void ctx_handle_closed(up_ctx *ctx)
{
    if (--ctx->nhandles == 0 && ctx->freeing) free(ctx);
}

static void ctx_handle_close_cb(uv_handle_t *h)
{
    ctx_handle_closed(h->data);
}

static void sock_close_cb(uv_handle_t *h)
{
    up_sock *s = h->data;
    up_ctx *ctx = s->ctx;
    free(s);
    ctx_handle_closed(ctx);
}

static void sock_close(up_ctx *ctx, up_sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        ctx->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    /* Closing stops the watcher at once, so curl may reuse the fd number right away; only the
     * memory is released later. */
    uv_close((uv_handle_t *)&s->poll, sock_close_cb);
}

static void xfer_free_cb(uv_handle_t *h)
{
    free(h->data);
}

static void defer_unlink(up_ctx *ctx, up_xfer *x)
{
    if (!x->in_defer) return;
    if (x->dprev)
        x->dprev->dnext = x->dnext;
    else
        ctx->deferred = x->dnext;
    if (x->dnext)
        x->dnext->dprev = x->dprev;
    else
        ctx->deferred_tail = x->dprev;
    x->dprev = x->dnext = NULL;
    x->in_defer = false;
    ctx->ndeferred--;
}

static void defer_cb(uv_idle_t *h);

static void defer_add(up_ctx *ctx, up_xfer *x)
{
    if (!x->in_defer) {
        x->in_defer = true;
        x->dnext = NULL;
        x->dprev = ctx->deferred_tail;
        if (ctx->deferred_tail)
            ctx->deferred_tail->dnext = x;
        else
            ctx->deferred = x;
        ctx->deferred_tail = x;
        ctx->ndeferred++;
    }
    uv_idle_start(&ctx->defer, defer_cb);
}

static void easy_recycle(up_ctx *ctx, CURL *e)
{
    if (!ctx->freeing && ctx->nfree_easy < UP_EASY_FREELIST) {
        curl_easy_reset(e);
        ctx->free_easy[ctx->nfree_easy++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

/* Detaches the transfer from curl and the ctx and frees it (its timer's memory asynchronously).
 * Never call from inside a curl callback. */
static void xfer_release(up_xfer *x)
{
    up_ctx *ctx = x->ctx;

    if (x->in_multi) {
        curl_multi_remove_handle(ctx->multi, x->easy);
        x->in_multi = false;
    }
    if (x->easy) easy_recycle(ctx, x->easy);
    x->easy = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    free(x->iov);
    x->iov = NULL;
    free(x->small_body);
    x->small_body = NULL;
    defer_unlink(ctx, x);
    if (x->prev)
        x->prev->next = x->next;
    else if (ctx->xfers == x)
        ctx->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
    if (x->fb_init)
        uv_close((uv_handle_t *)&x->fb_timer, xfer_free_cb);
    else
        free(x);
}

/* ---- completion ---- */

static up_result map_curl_code(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return UP_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return UP_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return UP_CONNECT_FAILED;
    default:
        return UP_ERROR;
    }
}

/* curl's messages name hosts and ports, never request headers; a query string could carry a
 * key (some providers take one there), so anything from a '?' on is dropped to be safe. */
static void format_errmsg(char *out, size_t outlen, CURLcode rc, const char *errbuf)
{
    size_t n;
    if (errbuf[0])
        snprintf(out, outlen, "%s: %.160s", curl_easy_strerror(rc), errbuf);
    else
        snprintf(out, outlen, "%s", curl_easy_strerror(rc));
    out[strcspn(out, "?")] = '\0';
    n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
}

/* Ends a transfer that was neither cancelled nor finished: on_complete, then release. Only from
 * outside curl callbacks. */
static void xfer_finish(up_xfer *x, up_result res, const char *msg)
{
    up_ctx *ctx = x->ctx;

    x->finished = true;
    ctx->active--;
    if (x->fb_init) uv_timer_stop(&x->fb_timer);
    /* Removing first returns the connection to the pool, so on_complete can start a new
     * transfer that reuses it. */
    if (x->in_multi) {
        curl_multi_remove_handle(ctx->multi, x->easy);
        x->in_multi = false;
    }
    if (x->cb.on_complete) x->cb.on_complete(x->ud, res, msg ? msg : "");
    xfer_release(x);
}

static void xfer_done(up_xfer *x, CURLcode rc)
{
    char msg[UP_ERRMSG_MAX];
    up_result res = map_curl_code(rc);

    msg[0] = '\0';
    if (rc != CURLE_OK)
        format_errmsg(msg, sizeof msg, rc, x->errbuf);
    else if (!x->responded) {
        res = UP_ERROR;
        snprintf(msg, sizeof msg, "upstream sent no response header");
    }
    xfer_finish(x, res, msg);
}

static void check_multi_info(up_ctx *ctx)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(ctx->multi, &left)) != NULL) {
        char *priv = NULL;
        up_xfer *x;
        CURLcode rc;

        if (m->msg != CURLMSG_DONE) continue;
        rc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        x = (up_xfer *)priv;
        /* A cancelled transfer is released by the deferred work. */
        if (!x || x->cancelled || x->finished) continue;
        xfer_done(x, rc);
    }
}

static void run_timeout_action(up_ctx *ctx)
{
    int running;

    ctx->in_curl++;
    curl_multi_socket_action(ctx->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    ctx->in_curl--;
    check_multi_info(ctx);
}

/* ---- curl multi callbacks ---- */

static void poll_cb(uv_poll_t *h, int status, int events)
{
    up_sock *s = h->data;
    up_ctx *ctx = s->ctx;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    /* s may be closed by the call below: use only ctx afterwards. */
    ctx->in_curl++;
    curl_multi_socket_action(ctx->multi, s->fd, flags, &running);
    ctx->in_curl--;
    check_multi_info(ctx);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    up_ctx *ctx = userp;
    up_sock *s = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (s) sock_close(ctx, s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        if (uv_poll_init_socket(ctx->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->ctx = ctx;
        s->fd = fd;
        s->next = ctx->socks;
        if (ctx->socks) ctx->socks->prev = s;
        ctx->socks = s;
        ctx->nhandles++;
        curl_multi_assign(ctx->multi, fd, s);
    }
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, poll_cb) != 0) return -1;
    return 0;
}

static void timer_fired(uv_timer_t *t)
{
    run_timeout_action(t->data);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    up_ctx *ctx = userp;

    if (ctx->freeing) return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&ctx->timer);
    else
        /* A 0 ms timeout fires on the next loop iteration, never from inside this call (curl
         * does not want socket_action called from its timer callback). */
        uv_timer_start(&ctx->timer, timer_fired, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- deferred work ---- */

static void defer_cb(uv_idle_t *h)
{
    up_ctx *ctx = h->data;
    bool kick = false;
    /* Work queued while this runs waits for the next iteration, so a consumer that pauses and
     * resumes on every chunk cannot keep us here. */
    size_t n = ctx->ndeferred;

    while (n-- > 0 && ctx->deferred) {
        up_xfer *x = ctx->deferred;

        defer_unlink(ctx, x);
        if (x->cancelled) {
            xfer_release(x);
            continue;
        }
        if (x->want_add) {
            x->want_add = false;
            if (curl_multi_add_handle(ctx->multi, x->easy) != CURLM_OK) {
                xfer_finish(x, UP_ERROR, "could not start the upstream transfer");
                continue;
            }
            x->in_multi = true;
            kick = true;
        }
        if (x->want_resume) {
            x->want_resume = false;
            if (!x->paused && x->curl_paused && x->in_multi) {
                CURLcode rc;

                x->curl_paused = false;
                ctx->in_curl++;
                rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
                ctx->in_curl--;
                kick = true;
                if (rc != CURLE_OK && !x->cancelled && !x->finished) xfer_done(x, rc);
            }
        }
    }
    /* Let curl move the data it buffered while paused and drive the newly added handles. */
    if (kick) run_timeout_action(ctx);
    if (!ctx->deferred) uv_idle_stop(&ctx->defer);
}

/* ---- easy handle callbacks ---- */

static size_t read_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    up_xfer *x = ud;
    size_t cap = size * nitems, out = 0;

    if (x->cancelled) return CURL_READFUNC_ABORT;
    while (out < cap && x->iov_i < x->niov) {
        const up_iov *v = &x->iov[x->iov_i];
        size_t n = v->len - x->iov_off;

        if (n > cap - out) n = cap - out;
        if (n) memcpy(buf + out, v->base + x->iov_off, n);
        out += n;
        x->iov_off += n;
        if (x->iov_off == v->len) {
            x->iov_i++;
            x->iov_off = 0;
        }
    }
    return out;
}

/* curl rewinds the body when a pooled connection turned out dead and it resends the request. */
static int seek_cb(void *ud, curl_off_t offset, int origin)
{
    up_xfer *x = ud;
    size_t i;

    if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
    for (i = 0; i < x->niov; i++) {
        if ((curl_off_t)x->iov[i].len > offset) break;
        offset -= (curl_off_t)x->iov[i].len;
    }
    if (i == x->niov && offset > 0) return CURL_SEEKFUNC_FAIL;
    x->iov_i = i;
    x->iov_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static bool name_is(const char *p, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

/* Parses a run of digits (with an optional fraction, ignored) as a bounded count; -1 if it is
 * not a number. */
static int64_t parse_count(const char *p, size_t n, bool allow_fraction)
{
    int64_t v = 0;
    size_t i = 0;

    if (n == 0) return -1;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        if (v < UP_RETRY_MAX_MS) v = v * 10 + (p[i] - '0');
    if (i == 0) return -1;
    if (i < n && allow_fraction && p[i] == '.') {
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            ;
    }
    return i == n ? v : -1;
}

static int64_t clamp_retry(int64_t ms)
{
    return ms > UP_RETRY_MAX_MS ? UP_RETRY_MAX_MS : ms;
}

int64_t up__retry_after_ms(const char *p, size_t n)
{
    int64_t ms = parse_count(p, n, true);
    return ms >= 0 ? clamp_retry(ms) : -1;
}

int64_t up__retry_after(const char *p, size_t n)
{
    char date[64];
    int64_t secs = parse_count(p, n, false);
    time_t t, now;

    if (secs >= 0) return clamp_retry(secs * 1000);
    if (n == 0 || n >= sizeof date) return -1;
    memcpy(date, p, n);
    date[n] = '\0';
    t = curl_getdate(date, NULL);
    if (t == (time_t)-1) return -1;
    now = time(NULL);
    if (t <= now) return 0;
    return clamp_retry(((int64_t)t - (int64_t)now) * 1000);
}

static void reset_response(up_xfer *x)
{
    x->status = 0;
    x->has_ct = false;
    x->content_type[0] = '\0';
    x->retry_after_ms = -1;
    x->retry_after_ms_ms = -1;
}

static void header_block_done(up_xfer *x)
{
    int64_t ra = x->retry_after_ms_ms >= 0 ? x->retry_after_ms_ms : x->retry_after_ms;
    long code = 0;

    if (x->status == 0 && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
        x->status = (int)code;
    /* 1xx are interim: the real answer follows with its own header block. */
    if (x->status >= 100 && x->status < 200) {
        reset_response(x);
        return;
    }
    x->responded = true;
    if (x->fb_init) uv_timer_stop(&x->fb_timer);
    if (x->cb.on_response)
        x->cb.on_response(x->ud, x->status, x->has_ct ? x->content_type : NULL, ra);
}

static size_t header_cb(char *p, size_t size, size_t nitems, void *ud)
{
    up_xfer *x = ud;
    size_t len = size * nitems, n = len, nl;
    const char *colon, *v;
    size_t vn;

    if (x->cancelled) return 0;   /* anything but len aborts the transfer */
    if (x->responded) return len; /* trailers */
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n == 0) {
        header_block_done(x);
        return x->cancelled ? 0 : len;
    }
    if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {
        size_t i = 5;
        int st = 0;

        reset_response(x);
        while (i < n && p[i] != ' ')
            i++;
        while (i < n && p[i] == ' ')
            i++;
        for (; i < n && p[i] >= '0' && p[i] <= '9' && st < 1000; i++)
            st = st * 10 + (p[i] - '0');
        x->status = st;
        return len;
    }
    colon = memchr(p, ':', n);
    if (!colon) return len;
    nl = (size_t)(colon - p);
    while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
        nl--;
    v = colon + 1;
    vn = n - (size_t)(v - p);
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (name_is(p, nl, "content-type")) {
        if (vn >= sizeof x->content_type) vn = sizeof x->content_type - 1;
        memcpy(x->content_type, v, vn);
        x->content_type[vn] = '\0';
        x->has_ct = true;
    } else if (name_is(p, nl, "retry-after")) {
        x->retry_after_ms = up__retry_after(v, vn);
    } else if (name_is(p, nl, "retry-after-ms")) {
        x->retry_after_ms_ms = up__retry_after_ms(v, vn);
    }
    return len;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    up_xfer *x = ud;
    size_t len = size * nmemb;

    if (x->cancelled) return CURL_WRITEFUNC_ERROR;
    if (x->paused) {
        /* Paused from outside a callback: curl keeps this chunk and hands it over again after
         * the unpause. */
        x->curl_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (len && x->cb.on_data) x->cb.on_data(x->ud, p, len);
    if (x->cancelled) return CURL_WRITEFUNC_ERROR;
    if (x->paused && !x->curl_paused) {
        /* The bytes above were consumed; stop reading before the next chunk. */
        curl_easy_pause(x->easy, CURLPAUSE_RECV);
        x->curl_paused = true;
    }
    return len;
}

static void fb_timer_fired(uv_timer_t *t)
{
    up_xfer *x = t->data;
    char msg[UP_ERRMSG_MAX];

    if (x->responded || x->cancelled || x->finished) return;
    snprintf(msg, sizeof msg, "no response header within %lld ms", (long long)x->fb_timeout_ms);
    xfer_finish(x, UP_TIMEOUT, msg);
}

/* ---- public API ---- */

up_ctx *up_ctx_new(uv_loop_t *loop)
{
    up_ctx *ctx = calloc(1, sizeof *ctx);

    if (!ctx) return NULL;
    ctx->loop = loop;
    /* curl reads the proxy variables for every transfer when no proxy is set; an egress proxy
     * from the environment keeps working, and without one the lookups are skipped */
    static const char *const proxy_vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                             "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
    ctx->no_proxy_env = true;
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++) {
        const char *v = getenv(proxy_vars[i]);
        if (v && *v) {
            ctx->no_proxy_env = false;
            if (i >= 2) ctx->https_proxy = true;
        }
    }
    ctx->multi = curl_multi_init();
    if (!ctx->multi) {
        free(ctx);
        return NULL;
    }
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx);
    curl_multi_setopt(ctx->multi, CURLMOPT_MAXCONNECTS, (long)UP_MAX_CONNECTS);
    curl_multi_setopt(ctx->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    uv_timer_init(loop, &ctx->timer);
    ctx->timer.data = ctx;
    uv_idle_init(loop, &ctx->defer);
    ctx->defer.data = ctx;
    ctx->nhandles = 2;
    {
        const char *impl = getenv("MODELSWITCH_UPSTREAM");
        if (!impl || strcmp(impl, "curl") != 0) {
            ctx->h1 = h1_ctx_new(loop);
            if (!ctx->h1) {
                up_ctx_free(ctx);
                return NULL;
            }
        }
    }
    return ctx;
}

void up_ctx_free(up_ctx *ctx)
{
    up_sock *s;
    size_t i;

    if (!ctx) return;
    h1_ctx_free(ctx->h1);
    ctx->h1 = NULL;
    ctx->freeing = true;
    while (ctx->xfers) {
        up_xfer *x = ctx->xfers;

        x->cancelled = true;
        if (x->fb_init) uv_timer_stop(&x->fb_timer);
        xfer_release(x);
    }
    ctx->active = 0;
    for (i = 0; i < ctx->nfree_easy; i++)
        curl_easy_cleanup(ctx->free_easy[i]);
    ctx->nfree_easy = 0;
    /* Closes the pooled connections; curl may report their sockets removed on the way. */
    curl_multi_cleanup(ctx->multi);
    ctx->multi = NULL;
    while ((s = ctx->socks) != NULL)
        sock_close(ctx, s);
    uv_close((uv_handle_t *)&ctx->timer, ctx_handle_close_cb);
    uv_close((uv_handle_t *)&ctx->defer, ctx_handle_close_cb);
}

static int setup_easy(up_xfer *x, const up_request *req)
{
    CURL *e = x->easy;
    curl_off_t total = 0;
    bool ok = true;
    size_t i;

    for (i = 0; i < x->niov; i++)
        total += (curl_off_t)x->iov[i].len;

    ok &= curl_easy_setopt(e, CURLOPT_URL, req->url) == CURLE_OK;
    ok &= curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x) == CURLE_OK;
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (x->ctx->no_proxy_env) curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
    /* HTTP/2 where TLS negotiates it, HTTP/1.1 otherwise. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Over TLS, wait for a connection being set up to learn (by ALPN) whether it multiplexes
     * instead of opening more. Not for plain http: there curl would hold every new request until
     * the first one's response arrived. */
    if (strncasecmp(req->url, "https://", 8) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    /* Extra CAs for this provider. CAINFO replaces curl's bundle, but its CA directory (the
     * system store, hashed) stays, so the system CAs are trusted too, as by the native client. */
    if (req->tls_ca_file && *req->tls_ca_file)
        ok &= curl_easy_setopt(e, CURLOPT_CAINFO, req->tls_ca_file) == CURLE_OK;
    /* Bytes are forwarded as the provider sent them: no Content-Encoding decoding. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* Removing a transfer whose name is still being resolved would otherwise join the resolver
     * thread, blocking the loop until getaddrinfo returns; with this the thread is detached and
     * cleans up after itself. */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
    if (req->connect_timeout_ms > 0)
        curl_easy_setopt(
            e, CURLOPT_CONNECTTIMEOUT_MS,
            (long)(req->connect_timeout_ms > LONG_MAX ? LONG_MAX : req->connect_timeout_ms));
    if (req->total_timeout_ms > 0)
        curl_easy_setopt(
            e, CURLOPT_TIMEOUT_MS,
            (long)(req->total_timeout_ms > LONG_MAX ? LONG_MAX : req->total_timeout_ms));

    ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb) == CURLE_OK;
    curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x);
    ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb) == CURLE_OK;
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);

    if (x->niov > 0 && total <= UP_SMALL_BODY &&
        (!req->method || strcmp(req->method, "POST") == 0)) {
        /* A small body is joined into one buffer (a copy of a few KB) so curl sends it in the
         * same write as the request head: one syscall and one packet instead of two. Large
         * bodies stream from the caller's iovecs without a copy. */
        x->small_body = malloc((size_t)total + 1);
        if (!x->small_body) return -1;
        size_t off = 0;
        for (size_t k = 0; k < x->niov; k++) {
            memcpy(x->small_body + off, x->iov[k].base, x->iov[k].len);
            off += x->iov[k].len;
        }
        ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, total) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->small_body) == CURLE_OK;
    } else if (x->niov > 0 || (req->method && strcmp(req->method, "POST") == 0)) {
        ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb) == CURLE_OK;
        curl_easy_setopt(e, CURLOPT_READDATA, (void *)x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, (void *)x);
        ok &= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, total) == CURLE_OK;
        if (req->method && strcmp(req->method, "POST") != 0)
            ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
    } else if (!req->method || strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method) == CURLE_OK;
    }
    ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers) == CURLE_OK;
    return ok ? 0 : -1;
}

up_xfer *up_start(up_ctx *ctx, const up_request *req, const up_callbacks *cb, void *ud)
{
    up_xfer *x;
    size_t i;

    if (!ctx || ctx->freeing || !req || !req->url || !cb) return NULL;
    if (ctx->h1 && (strncasecmp(req->url, "http://", 7) == 0 ||
                    (!ctx->https_proxy && strncasecmp(req->url, "https://", 8) == 0)))
        return h1_start(ctx->h1, req, cb, ud);
    x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->kind = UP_KIND_CURL;
    x->ctx = ctx;
    x->cb = *cb;
    x->ud = ud;
    reset_response(x);

    if (req->nbody > 0) {
        x->iov = malloc(req->nbody * sizeof *x->iov);
        if (!x->iov) goto fail;
        memcpy(x->iov, req->body, req->nbody * sizeof *x->iov);
        x->niov = req->nbody;
    }
    for (i = 0; i < req->nheaders; i++) {
        struct curl_slist *l = curl_slist_append(x->headers, req->headers[i]);
        if (!l) goto fail;
        x->headers = l;
    }
    {
        /* Without this curl waits for "100 Continue" before sending bodies over 1 MB. */
        struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
        if (!l) goto fail;
        x->headers = l;
    }

    x->easy = ctx->nfree_easy > 0 ? ctx->free_easy[--ctx->nfree_easy] : curl_easy_init();
    if (!x->easy || setup_easy(x, req) != 0) goto fail;

    if (req->first_byte_timeout_ms > 0) {
        uv_timer_init(ctx->loop, &x->fb_timer);
        x->fb_timer.data = x;
        x->fb_init = true;
        x->fb_timeout_ms = req->first_byte_timeout_ms;
    }

    if (ctx->in_curl) {
        /* curl refuses to add handles from inside its callbacks. */
        x->want_add = true;
        defer_add(ctx, x);
    } else {
        if (curl_multi_add_handle(ctx->multi, x->easy) != CURLM_OK) goto fail;
        x->in_multi = true;
    }
    if (x->fb_init)
        uv_timer_start(&x->fb_timer, fb_timer_fired, (uint64_t)req->first_byte_timeout_ms, 0);

    x->next = ctx->xfers;
    if (ctx->xfers) ctx->xfers->prev = x;
    ctx->xfers = x;
    ctx->active++;
    return x;

fail:
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    free(x->iov);
    free(x->small_body);
    if (x->fb_init)
        uv_close((uv_handle_t *)&x->fb_timer, xfer_free_cb);
    else
        free(x);
    return NULL;
}

void up_pause(up_xfer *x)
{
    if (x && xfer_kind(x) == UP_KIND_H1) {
        h1_pause(x);
        return;
    }
    if (!x || x->cancelled || x->finished || x->paused) return;
    x->paused = true;
    /* Outside curl we can stop the receive side right away (pausing never delivers data);
     * inside curl it happens in this transfer's own write callback. */
    if (!x->ctx->in_curl && x->in_multi && !x->curl_paused) {
        curl_easy_pause(x->easy, CURLPAUSE_RECV);
        x->curl_paused = true;
    }
}

void up_resume(up_xfer *x)
{
    if (x && xfer_kind(x) == UP_KIND_H1) {
        h1_resume(x);
        return;
    }
    if (!x || x->cancelled || x->finished || !x->paused) return;
    x->paused = false;
    if (x->curl_paused) {
        x->want_resume = true;
        defer_add(x->ctx, x);
    }
}

void up_cancel(up_xfer *x)
{
    up_ctx *ctx;

    if (x && xfer_kind(x) == UP_KIND_H1) {
        h1_cancel(x);
        return;
    }
    if (!x || x->cancelled || x->finished) return;
    ctx = x->ctx;
    x->cancelled = true;
    ctx->active--;
    if (x->fb_init) uv_timer_stop(&x->fb_timer);
    if (ctx->in_curl) {
        defer_add(ctx, x);
        return;
    }
    xfer_release(x);
}

size_t up_active(up_ctx *ctx)
{
    return ctx ? ctx->active + h1_active(ctx->h1) : 0;
}

void up_set_idle_ms(up_ctx *ctx, uint64_t ms)
{
    if (ctx && ctx->h1) h1_set_idle_ms(ctx->h1, ms);
}
