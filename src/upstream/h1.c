/*
 * The native HTTP/1.1 client for http:// and https:// upstreams, behind the same interface as the
 * libcurl client (upstream.h). upstream.c routes both schemes here unless MODELSWITCH_UPSTREAM=curl
 * (and https:// stays with curl when an https/all proxy is set in the environment). It exists
 * because curl's generality cost about half of the worker's instructions per request.
 *
 * TLS. An https connection carries an OpenSSL engine on two memory BIOs (set up by tls.c, which
 * holds the verification policy): bytes read from the socket are written into the engine and
 * decrypted into the read buffer, then parsed exactly like plain bytes; what the engine produces
 * is written with uv_write. The connect timeout covers the handshake. The request is encrypted at
 * most H1_TLS_ROUND bytes at a time, the next part when the previous write completed; while the
 * consumer is paused nothing is decrypted and the socket is not read, so at most one read of
 * ciphertext waits in the engine. One SSL_CTX per CA file per ctx, made on first use; the last
 * session the server gave is kept per pool and offered on new connections. A certificate or host
 * name failure is UP_CONNECT_FAILED with OpenSSL's verification reason.
 *
 * How it is wired. Everything runs on the worker's libuv loop: names are resolved with
 * uv_getaddrinfo (thread pool) and cached per host for H1_DNS_TTL_MS; connections are uv_tcp_t
 * kept in a pool per (scheme and CA file, host, port) per ctx, idle ones on a LIFO stack and still
 * reading, so a server that closes one is noticed and the connection dropped. Responses are parsed
 * by h1parse.c, which also removes chunked framing; body bytes go straight from the read buffer to
 * on_data.
 *
 * A request is written with one uv_write of the head plus the caller's body iovecs (one writev, no
 * copy). If a reused connection fails before any response byte arrives, the server closed it just
 * as we sent and processed nothing, so the request is retried once on a fresh connection, as curl
 * does.
 *
 * Re-entrancy. Consumer callbacks run from inside h1p_execute (on_response, on_data) or from the
 * deferred work (resumed data). up_cancel inside them only marks the transfer (x->in_cb); the code
 * that called the consumer releases it once the callback has returned. Failures found inside
 * up_start are reported from the deferred work, so callbacks never run inside up_start.
 *
 * Backpressure. up_pause stops reading at once; body bytes the parser still produces from the
 * current read are kept (at most one read buffer) and delivered on resume, which is deferred to
 * an idle handle so the consumer is never re-entered from inside up_resume. A paused transfer also
 * holds back on_complete until it is resumed, like curl.
 *
 * Timeouts: one uv_timer per transfer, armed for the nearest of the connect (until connected,
 * including resolution), first-byte (until the final header block) and total deadlines.
 */
#include "upstream/upstream.h"
#include "common/h1parse.h"
#include "upstream/internal.h"
#include "upstream/tls.h"

#include "common/objcache.h"
#include "common/util.h"

#include <openssl/err.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define H1_RBUF 65536
#define H1_REQ_HEAD_MAX (256 * 1024) /* request head we build */
#define H1_PENDING_MAX (2 * H1_RBUF) /* body kept while paused */
/* Idle connections kept per (scheme and trust, host, port) and worker. LLM requests last seconds,
 * so a worker's concurrency to one provider is easily hundreds: a pool smaller than that closes
 * connections as requests end and opens them again (a TLS handshake each) as the next ones
 * start. Measured with 256 concurrent clients over HTTPS: 64 → 1024 took the gateway's CPU per
 * chat request from 111 to 45 µs (nginx's 55; docs/PERFORMANCE.md, round 13). What a burst
 * leaves idle goes after H1_IDLE_MS unused (the LIFO keeps the rest warm). */
#define H1_MAX_IDLE 1024
#define H1_IDLE_MS 60000 /* an idle pooled connection unused this long is closed */
#define H1_DNS_TTL_MS 60000
#define H1_DNS_MAX 64
#define H1_MAX_ADDRS 8
#define H1_CT_MAX 256
#define H1_ERRMSG_MAX 256
#define H1_DEFAULT_CONNECT_MS 300000  /* curl's default */
#define H1_TLS_REC 16384              /* plaintext gathered per TLS record */
#define H1_TLS_ROUND (4 * H1_TLS_REC) /* request plaintext encrypted per write */
#define H1_TLS_CTX_MAX 256            /* distinct CA files (providers) per worker */

typedef struct h1_conn h1_conn;
typedef struct h1_xfer h1_xfer;
static void h1_timer_stop(h1_xfer *x);
typedef struct h1_pool h1_pool;
typedef struct h1_dns h1_dns;
typedef struct h1_resolve h1_resolve;

/* Smaller than sockaddr_storage: the transfer struct is zeroed on every request. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} h1_addr;

struct h1_dns {
    h1_dns *next;
    uint64_t expires;
    int naddr;
    h1_addr addr[H1_MAX_ADDRS];
    char host[];
};

struct h1_pool {
    h1_pool *next;
    int port;
    tls_ctx *tc;        /* https: the trust it was verified under; NULL for http */
    SSL_SESSION *sess;  /* https: the last session the server gave, offered on new connections */
    h1_conn *idle;      /* LIFO: the most recently used connection is the warmest */
    h1_conn *idle_tail; /* the longest unused: the first to expire */
    int nidle;
    char host[];
};

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    h1_ctx *ctx;
    h1_pool *pool;
    h1_xfer *x;             /* the transfer using it; NULL while idle or closing */
    h1_conn *iprev, *inext; /* pool->idle */
    uint64_t idle_since;    /* ms (h1_now) it went back to the pool */
    bool idle, closing, reused, writing;
    h1p parser;
    /* https only: the engine (tls.c), whether its handshake is done and close_notify seen, TLS
     * writes in flight, and how far the request's bufs have been encrypted. */
    SSL *ssl;
    bool hs_done, tls_eof, tls_bad;
    int nwrites;
    unsigned si;
    size_t soff;
};

struct h1_resolve {
    uv_getaddrinfo_t req;
    h1_ctx *ctx;
    h1_xfer *x; /* NULL once the transfer is gone */
    char host[];
};

struct h1_xfer {
    int kind; /* UP_KIND_H1; must stay first (upstream.c reads it) */
    h1_ctx *ctx;
    up_callbacks cb;
    void *ud;
    h1_pool *pool;
    uv_buf_t *bufs; /* head + the caller's body; the head's bytes follow the list, one malloc */
    unsigned nbufs;
    bool head_only;
    h1_conn *conn;
    h1_resolve *res;
    h1_addr addr[H1_MAX_ADDRS];
    int naddr, addr_i;

    uv_timer_t timer;
    uint64_t t_connect, t_fb, t_total; /* absolute deadlines in ms, 0 = none or passed */
    uint64_t armed;                    /* the deadline the timer runs to, 0 = stopped */
    int64_t connect_ms, fb_ms, total_ms;

    int in_cb;
    bool starting, cancelled, finished, paused, responded, got_bytes, retried;
    bool msg_done, keep_alive, want_resume, def_finish, in_defer;
    up_result def_res;
    char def_msg[H1_ERRMSG_MAX];

    int status;
    char content_type[H1_CT_MAX];
    bool has_ct;
    int64_t retry_after_ms, retry_after_ms_ms;

    char *pending;
    size_t pend_len;

    h1_xfer *prev, *next; /* ctx->xfers */
    h1_xfer *dnext;       /* ctx->deferred */
};

struct h1_ctx {
    uv_loop_t *loop;
    uv_idle_t defer;
    uv_timer_t sweep; /* closes expired idle connections; runs while any pool has one */
    uint64_t idle_ms; /* H1_IDLE_MS unless a test set it (h1_set_idle_ms) */
    h1_xfer *xfers;
    h1_xfer *deferred, *deferred_tail;
    h1_pool *pools;
    h1_dns *dns;
    int ndns;
    size_t active;
    int nrefs; /* open handles and pending resolutions; the last one frees a freed ctx */
    bool freeing;
    tls_ctx *tls; /* one per CA file set (NULL = system store only), made on first use */
    int ntls;
    /* One read buffer for every connection of the loop: each read is parsed (and whatever must
     * outlive it copied) before the next one, so an idle or slow connection costs no buffer. */
    char rbuf[H1_RBUF];    /* a read; a TLS connection's plaintext */
    char cbuf[H1_RBUF];    /* a TLS connection's ciphertext read, lent to the engine */
    char tbuf[H1_TLS_REC]; /* request plaintext gathered into full records */
};

static void h1_finish(h1_xfer *x, up_result res, const char *msg);
static void h1_dispatch(h1_xfer *x, bool allow_pool);
static void h1_connect(h1_xfer *x);

static uint64_t h1_now(void)
{
    return ms_loop_mono_ns() / 1000000u; /* util.h: a worker reads the clock once a phase */
}

static void h1_ctx_unref(h1_ctx *ctx)
{
    if (--ctx->nrefs == 0 && ctx->freeing) free(ctx);
}

static void h1_ctx_handle_closed(uv_handle_t *h)
{
    h1_ctx_unref(h->data);
}

/* ---- connections ---- */

static void h1_conn_closed(uv_handle_t *h)
{
    h1_conn *c = h->data;
    h1_ctx *ctx = c->ctx;
    h1p_free(&c->parser);
    free(c);
    h1_ctx_unref(ctx);
}

static void h1_idle_unlink(h1_conn *c)
{
    if (!c->idle) return;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        c->pool->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    else
        c->pool->idle_tail = c->iprev;
    c->iprev = c->inext = NULL;
    c->idle = false;
    c->pool->nidle--;
}

static void h1_conn_close(h1_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    h1_idle_unlink(c);
    if (c->x && c->x->conn == c) c->x->conn = NULL;
    c->x = NULL;
    /* Freed now, not when the handle is: nothing may reach the pool's session slot later. */
    tls_conn_free(c->ssl, c->hs_done && !c->tls_bad);
    c->ssl = NULL;
    /* Pending connect and write requests are cancelled before the close callback runs. */
    uv_close((uv_handle_t *)&c->tcp, h1_conn_closed);
}

static void h1_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    h1_conn *c = h->data;
    /* the engine decrypts into rbuf while it reads the ciphertext from where it was read */
    buf->base = c->ssl ? c->ctx->cbuf : c->ctx->rbuf;
    buf->len = sizeof c->ctx->rbuf;
}

static void h1_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Closes p's connections idle for idle_ms or more: the oldest are at the tail. */
static void h1_pool_expire(h1_pool *p, uint64_t now)
{
    while (p->idle_tail && now - p->idle_tail->idle_since >= p->idle_tail->ctx->idle_ms)
        h1_conn_close(p->idle_tail);
}

static void h1_sweep_cb(uv_timer_t *t)
{
    h1_ctx *ctx = t->data;
    uint64_t now = h1_now();
    bool any = false;
    for (h1_pool *p = ctx->pools; p; p = p->next) {
        h1_pool_expire(p, now);
        any |= p->idle != NULL;
    }
    if (!any) uv_timer_stop(t);
}

static void h1_pool_put(h1_conn *c)
{
    h1_pool *p = c->pool;

    c->x = NULL;
    if (c->ctx->freeing || c->writing || c->nwrites || p->nidle >= H1_MAX_IDLE) {
        h1_conn_close(c);
        return;
    }
    c->idle = true;
    c->idle_since = h1_now();
    c->iprev = NULL;
    c->inext = p->idle;
    if (p->idle)
        p->idle->iprev = c;
    else
        p->idle_tail = c;
    p->idle = c;
    p->nidle++;
    /* unreferenced, like the idle connections: it must not keep a draining worker's loop alive */
    if (!uv_is_active((uv_handle_t *)&c->ctx->sweep)) {
        /* a quarter of the idle time: a connection is closed at most 25% late */
        uint64_t every = c->ctx->idle_ms / 4 + 1;
        uv_timer_start(&c->ctx->sweep, h1_sweep_cb, every, every);
        uv_unref((uv_handle_t *)&c->ctx->sweep);
    }
    /* Keep reading while idle: EOF or an error means the server dropped it. An idle connection
     * is not work, so it must not keep the loop alive (a worker's loop ends when it drains). */
    uv_read_start((uv_stream_t *)&c->tcp, h1_alloc_cb, h1_read_cb);
    uv_unref((uv_handle_t *)&c->tcp);
}

/* ---- transfer bookkeeping ---- */

static void h1_xfer_freed(uv_handle_t *h)
{
    h1_xfer *x = h->data;
    free(x->bufs); /* (the head with it) */
    free(x->pending);
    oc_free(x, sizeof *x);
}

static void h1_defer_unlink(h1_ctx *ctx, h1_xfer *x)
{
    h1_xfer **pp;
    if (!x->in_defer) return;
    for (pp = &ctx->deferred; *pp; pp = &(*pp)->dnext)
        if (*pp == x) {
            *pp = x->dnext;
            break;
        }
    ctx->deferred_tail = NULL;
    for (h1_xfer *d = ctx->deferred; d; d = d->dnext)
        ctx->deferred_tail = d;
    x->dnext = NULL;
    x->in_defer = false;
}

static void h1_defer_cb(uv_idle_t *h);

static void h1_defer_add(h1_ctx *ctx, h1_xfer *x)
{
    if (!x->in_defer) {
        x->in_defer = true;
        x->dnext = NULL;
        if (ctx->deferred_tail)
            ctx->deferred_tail->dnext = x;
        else
            ctx->deferred = x;
        ctx->deferred_tail = x;
    }
    uv_idle_start(&ctx->defer, h1_defer_cb);
}

/* Frees the transfer without any callback; its connection is closed (not pooled). */
static void h1_release(h1_xfer *x)
{
    h1_ctx *ctx = x->ctx;

    h1_defer_unlink(ctx, x);
    if (x->res) {
        x->res->x = NULL;
        x->res = NULL;
    }
    if (x->conn) h1_conn_close(x->conn);
    if (x->prev)
        x->prev->next = x->next;
    else if (ctx->xfers == x)
        ctx->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
    h1_timer_stop(x);
    uv_close((uv_handle_t *)&x->timer, h1_xfer_freed);
}

static void h1_timer_cb(uv_timer_t *t);

static void h1_timer_stop(h1_xfer *x)
{
    uv_timer_stop(&x->timer);
    x->armed = 0;
}

/* Runs the timer to the nearest deadline. A deadline that moves later (the first byte came,
 * only the total's is left) leaves the timer where it is: it fires early, finds nothing due and
 * arms again (h1_timer_cb), which a transfer that ends first never pays; moving it costs a stop
 * and an insert in libuv's timer heap per request. */
static void h1_arm(h1_xfer *x)
{
    uint64_t dl = 0, now;
    if (x->t_connect) dl = x->t_connect;
    if (x->t_fb && (!dl || x->t_fb < dl)) dl = x->t_fb;
    if (x->t_total && (!dl || x->t_total < dl)) dl = x->t_total;
    if (!dl || (x->armed && x->armed <= dl)) return;
    now = h1_now();
    uv_timer_start(&x->timer, h1_timer_cb, dl > now ? dl - now : 0, 0);
    x->armed = dl;
}

static void h1_reset_response(h1_xfer *x)
{
    x->status = 0;
    x->has_ct = false;
    x->content_type[0] = '\0';
    x->retry_after_ms = -1;
    x->retry_after_ms_ms = -1;
}

/* Ends a live transfer: on_complete once, then release. Never inside a consumer callback of x. */
static void h1_finish(h1_xfer *x, up_result res, const char *msg)
{
    if (x->finished || x->cancelled) return;
    if (x->conn) h1_conn_close(x->conn);
    if (x->starting) {
        /* Inside up_start: report from the loop instead. */
        x->def_finish = true;
        x->def_res = res;
        snprintf(x->def_msg, sizeof x->def_msg, "%s", msg);
        h1_timer_stop(x);
        h1_defer_add(x->ctx, x);
        return;
    }
    x->finished = true;
    x->ctx->active--;
    h1_timer_stop(x);
    if (x->cb.on_complete) x->cb.on_complete(x->ud, res, msg);
    h1_release(x);
}

static void h1_timer_cb(uv_timer_t *t)
{
    h1_xfer *x = t->data;
    uint64_t now = h1_now();
    char msg[H1_ERRMSG_MAX];

    x->armed = 0; /* a one-shot timer: it stopped by firing */
    if (x->finished || x->cancelled || x->def_finish) return;
    if (x->t_connect && now >= x->t_connect)
        snprintf(msg, sizeof msg, "Connection timed out after %lld milliseconds",
                 (long long)x->connect_ms);
    else if (x->t_fb && now >= x->t_fb)
        snprintf(msg, sizeof msg, "no response header within %lld ms", (long long)x->fb_ms);
    else if (x->t_total && now >= x->t_total)
        snprintf(msg, sizeof msg, "Operation timed out after %lld milliseconds",
                 (long long)x->total_ms);
    else {
        h1_arm(x); /* the loop's clock ran behind ours */
        return;
    }
    h1_finish(x, UP_TIMEOUT, msg);
}

/* ---- response parsing (h1parse.c's callbacks; their ud is the connection) ---- */

static int h1_on_header(void *ud, const char *n, size_t nl, const char *v, size_t vn)
{
    h1_xfer *x = ((h1_conn *)ud)->x;
    /* a value longer than the buffer is no hint we can read (and a content type cut short) */
    bool fits = vn < H1_CT_MAX;

    if (H1P_IS(n, nl, "content-type")) {
        if (!fits) vn = H1_CT_MAX - 1;
        memcpy(x->content_type, v, vn);
        x->content_type[vn] = '\0';
        x->has_ct = true;
    } else if (H1P_IS(n, nl, "retry-after")) {
        x->retry_after_ms = fits ? up__retry_after(v, vn) : -1;
    } else if (H1P_IS(n, nl, "retry-after-ms")) {
        x->retry_after_ms_ms = fits ? up__retry_after_ms(v, vn) : -1;
    }
    return 0;
}

static int h1_on_head(void *ud, int status)
{
    h1_xfer *x = ((h1_conn *)ud)->x;
    int64_t ra = x->retry_after_ms_ms >= 0 ? x->retry_after_ms_ms : x->retry_after_ms;

    x->status = status;
    /* 1xx are interim: the real answer follows with its own header block. */
    if (status < 200) {
        h1_reset_response(x);
        return 0;
    }
    x->responded = true;
    x->t_fb = 0;
    h1_arm(x);
    if (x->cb.on_response)
        x->cb.on_response(x->ud, x->status, x->has_ct ? x->content_type : NULL, ra);
    return x->cancelled ? -1 : 0;
}

static int h1_on_body(void *ud, const char *at, size_t n)
{
    h1_xfer *x = ((h1_conn *)ud)->x;

    if (x->cancelled) return -1;
    if (x->paused) {
        /* The rest of the current read, delivered on resume. */
        char *np;
        if (x->pend_len + n > H1_PENDING_MAX) return -1;
        np = realloc(x->pending, x->pend_len + n);
        if (!np) return -1;
        memcpy(np + x->pend_len, at, n);
        x->pending = np;
        x->pend_len += n;
        return 0;
    }
    if (n && x->cb.on_data) x->cb.on_data(x->ud, at, n);
    return x->cancelled ? -1 : 0;
}

static const h1p_callbacks h1_parse_cb = {
    .on_header = h1_on_header, .on_head = h1_on_head, .on_body = h1_on_body};

/* The response is complete: the connection goes back to the pool (so on_complete may reuse it),
 * then on_complete unless the consumer is paused. */
static void h1_message_done(h1_xfer *x, bool reusable)
{
    h1_conn *c = x->conn;

    if (c) {
        x->conn = NULL;
        if (reusable && x->keep_alive)
            h1_pool_put(c);
        else
            h1_conn_close(c);
    }
    if (x->paused || x->pend_len) return; /* finished on resume */
    h1_finish(x, UP_OK, "");
}

/* ---- I/O ---- */

static bool h1_can_retry(h1_xfer *x)
{
    return x->conn && x->conn->reused && !x->got_bytes && !x->retried && !x->responded;
}

static void h1_retry(h1_xfer *x)
{
    h1_conn_close(x->conn);
    x->retried = true;
    x->got_bytes = false;
    h1_reset_response(x);
    h1_dispatch(x, false);
}

static void h1_fail_io(h1_xfer *x, up_result res, const char *what, int err)
{
    char msg[H1_ERRMSG_MAX];
    if (h1_can_retry(x)) {
        h1_retry(x);
        return;
    }
    if (err)
        snprintf(msg, sizeof msg, "%s: %s", what, uv_strerror(err));
    else
        snprintf(msg, sizeof msg, "%s", what);
    h1_finish(x, res, msg);
}

static void h1_parse(h1_xfer *x, const char *p, size_t n, bool eof)
{
    h1_conn *c = x->conn;
    size_t used = 0;
    h1p_result r;

    x->in_cb++;
    r = eof ? h1p_finish(&c->parser) : h1p_execute(&c->parser, p, n, &used);
    x->in_cb--;
    if (x->cancelled) {
        h1_release(x);
        return;
    }
    if (r == H1P_DONE) {
        /* Bytes after the response mean the connection cannot be reused. */
        x->msg_done = true;
        x->keep_alive = h1p_keep_alive(&c->parser);
        h1_message_done(x, !eof && used == n);
        return;
    }
    if (eof) {
        h1_finish(x, UP_ERROR,
                  x->responded ? "connection closed before the response was complete"
                               : "connection closed before a complete response header");
        return;
    }
    if (r == H1P_TOO_LARGE)
        h1_finish(x, UP_ERROR, "response header too large");
    else if (r == H1P_NOMEM)
        h1_finish(x, UP_ERROR, "out of memory");
    else if (r != H1P_MORE)
        h1_finish(x, UP_ERROR, "malformed HTTP response from upstream");
}

/* ---- TLS: the engine (tls.c) fed from the socket's reads and drained into uv_writes ---- */

typedef struct {
    uv_write_t req;
    h1_conn *c;
    char data[];
} h1_wchunk;

static void h1_send(h1_xfer *x);
static void h1_tls_send_more(h1_conn *c);

static void h1_tls_write_cb(uv_write_t *req, int status)
{
    h1_wchunk *w = req->data;
    h1_conn *c = w->c;
    h1_xfer *x = c->x;

    /* A closed connection's writes are cancelled before its memory goes. */
    free(w);
    c->nwrites--;
    if (status == UV_ECANCELED || c->closing) return;
    if (status < 0) {
        if (x)
            h1_fail_io(x, UP_ERROR, "Send failure", status);
        else
            h1_conn_close(c);
        return;
    }
    if (x && c->hs_done && c->nwrites == 0 && c->si < x->nbufs) h1_tls_send_more(c);
}

/* Writes out what the engine has produced (handshake messages, records, alerts). */
static int h1_tls_flush(h1_conn *c)
{
    const char *p;
    size_t n = tls_out_peek(c->ssl, &p), sent = 0;
    h1_wchunk *w;
    uv_buf_t b;
    int rc;

    if (n == 0) return 0;
    /* Written at once from where the engine put it when the socket takes it (libuv says EAGAIN
     * while writes are queued, so the order holds): a completed uv_write costs an epoll_ctl, as
     * libuv re-arms the socket's interest when its write queue drains. */
    b = uv_buf_init((char *)p, (unsigned)n);
    rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (rc < 0 && rc != UV_EAGAIN) return rc;
    if (rc > 0) sent = (size_t)rc;
    if (sent == n) {
        tls_out_consume(c->ssl, n);
        return 0;
    }
    /* the rest waits in a copy of its own: the engine writes again before the socket drains */
    w = malloc(sizeof *w + (n - sent));
    if (!w) return UV_ENOMEM;
    memcpy(w->data, p + sent, n - sent);
    tls_out_consume(c->ssl, n);
    w->c = c;
    w->req.data = w;
    b = uv_buf_init(w->data, (unsigned)(n - sent));
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, h1_tls_write_cb);
    if (rc != 0) {
        free(w);
        return rc;
    }
    c->nwrites++;
    return 0;
}

/* Encrypts the next part of the request, at most H1_TLS_ROUND bytes, and writes it; the rest
 * follows when that write completes, so the ciphertext held stays bounded whatever the body's
 * size. Small pieces are gathered into full records (the head and a small body make one). */
static void h1_tls_send_more(h1_conn *c)
{
    h1_xfer *x = c->x;
    char *t = c->ctx->tbuf;
    size_t budget = H1_TLS_ROUND;
    int rc;

more:
    while (budget > 0 && c->si < x->nbufs) {
        const uv_buf_t *b = &x->bufs[c->si];
        const char *p = t;
        size_t fill = 0;

        if (b->len - c->soff >= H1_TLS_REC) {
            /* A large piece is encrypted in place. */
            p = b->base + c->soff;
            fill = b->len - c->soff < budget ? b->len - c->soff : budget;
            c->soff += fill;
            if (c->soff == b->len) {
                c->si++;
                c->soff = 0;
            }
        } else {
            while (fill < H1_TLS_REC && c->si < x->nbufs) {
                size_t n = x->bufs[c->si].len - c->soff;
                if (n > H1_TLS_REC - fill) n = H1_TLS_REC - fill;
                memcpy(t + fill, x->bufs[c->si].base + c->soff, n);
                fill += n;
                c->soff += n;
                if (c->soff == x->bufs[c->si].len) {
                    c->si++;
                    c->soff = 0;
                }
            }
        }
        tls_err_reset();
        if (SSL_write(c->ssl, p, (int)fill) != (int)fill) {
            ERR_clear_error();
            h1_fail_io(x, UP_ERROR, "TLS send failure", 0);
            return;
        }
        budget = fill < budget ? budget - fill : 0;
    }
    rc = h1_tls_flush(c);
    if (rc != 0) {
        h1_fail_io(x, UP_ERROR, "Send failure", rc);
        return;
    }
    /* the socket took it all at once: no write callback will ask for the next round */
    if (c->nwrites == 0 && c->si < x->nbufs) {
        budget = H1_TLS_ROUND;
        goto more;
    }
}

/* The peer's end of the stream: TCP EOF or error, or a close_notify (c->tls_eof). */
static void h1_tls_closed(h1_conn *c, int err)
{
    h1_xfer *x = c->x;
    bool partial = BIO_ctrl_pending(SSL_get_rbio(c->ssl)) > 0;
    char msg[H1_ERRMSG_MAX];

    if (!x) {
        h1_conn_close(c);
        return;
    }
    if (!c->hs_done) {
        snprintf(msg, sizeof msg, "TLS handshake with %.100s failed: connection %s by the server",
                 x->pool->host, err == UV_EOF ? "closed" : "reset");
        h1_finish(x, UP_CONNECT_FAILED, msg);
        return;
    }
    if (!x->got_bytes) {
        if (err == UV_EOF)
            h1_fail_io(x, UP_ERROR, "Empty reply from server", 0);
        else
            h1_fail_io(x, UP_ERROR, "Recv failure", err);
        return;
    }
    if (err != UV_EOF)
        h1_finish(x, UP_ERROR,
                  err == UV_ECONNRESET ? "Recv failure: Connection reset by peer" : "Recv failure");
    else if (partial) {
        c->tls_bad = true;
        h1_finish(x, UP_ERROR, "TLS connection closed mid-record");
    } else if (!c->tls_eof && !x->msg_done && h1p_needs_eof(&c->parser))
        /* A body framed by the close could have been cut by anyone on the path. */
        h1_finish(x, UP_ERROR, "TLS connection closed without close_notify");
    else
        h1_parse(x, NULL, 0, true);
}

/* Decrypts what the engine holds and parses it, until it needs more bytes, the consumer pauses
 * or the exchange ends. An idle connection only takes session tickets and the like. */
static void h1_tls_drain(h1_conn *c)
{
    char msg[H1_ERRMSG_MAX];

    for (;;) {
        h1_xfer *x = c->x;
        int n, err;

        if (c->closing || (x && x->paused)) return;
        tls_err_reset();
        n = SSL_read(c->ssl, c->ctx->rbuf, (int)sizeof c->ctx->rbuf);
        if (n > 0) {
            if (!x) {
                h1_conn_close(c); /* bytes nobody asked for */
                return;
            }
            x->got_bytes = true;
            h1_parse(x, c->ctx->rbuf, (size_t)n, false);
            if (x->conn != c) return; /* done, failed, or back in the pool */
            continue;
        }
        err = SSL_get_error(c->ssl, n);
        if (h1_tls_flush(c) != 0) {
            if (x)
                h1_finish(x, UP_ERROR, "Send failure");
            else
                h1_conn_close(c);
            return;
        }
        if (err == SSL_ERROR_WANT_READ) return;
        if (err == SSL_ERROR_ZERO_RETURN) {
            c->tls_eof = true;
            h1_tls_closed(c, UV_EOF);
            return;
        }
        if (!x) {
            h1_conn_close(c);
            return;
        }
        c->tls_bad = true;
        tls_describe(c->ssl, x->pool->host, msg, sizeof msg);
        h1_fail_io(x, UP_ERROR, msg, 0);
        return;
    }
}

static void h1_tls_handshake(h1_conn *c)
{
    h1_xfer *x = c->x;
    char msg[H1_ERRMSG_MAX];
    int rc, err;

    ERR_clear_error();
    rc = SSL_do_handshake(c->ssl);
    err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_NONE) {
        if ((rc = h1_tls_flush(c)) != 0) {
            snprintf(msg, sizeof msg, "TLS handshake with %.100s failed: %s", x->pool->host,
                     uv_strerror(rc));
            h1_finish(x, UP_CONNECT_FAILED, msg);
            return;
        }
        if (err == SSL_ERROR_WANT_READ) return;
    } else {
        tls_describe(c->ssl, x->pool->host, msg, sizeof msg);
        /* The offered session may be what the server refused: the next try starts afresh. */
        if (x->pool->sess) {
            SSL_SESSION_free(x->pool->sess);
            x->pool->sess = NULL;
        }
        h1_finish(x, UP_CONNECT_FAILED, msg);
        return;
    }
    if (!tls_alpn_ok(c->ssl)) {
        h1_finish(x, UP_CONNECT_FAILED, "TLS: the upstream chose a protocol other than http/1.1");
        return;
    }
    c->hs_done = true;
    x->t_connect = 0;
    h1_arm(x);
    h1_send(x);
    /* Records that came with the server's last handshake flight. */
    if (x->conn == c && BIO_ctrl_pending(SSL_get_rbio(c->ssl)) > 0) h1_tls_drain(c);
}

static void h1_tls_read(h1_conn *c, ssize_t nread, const char *p)
{
    if (nread < 0) {
        h1_tls_closed(c, (int)nread);
        return;
    }
    tls_in_lend(c->ssl, p, (size_t)nread);
    if (!c->hs_done) {
        if (c->x)
            h1_tls_handshake(c);
        else
            h1_conn_close(c);
    } else {
        h1_tls_drain(c);
    }
    /* what the engine did not read (a paused consumer, a record cut by the read) waits for the
     * next; a closed connection freed its SSL */
    if (c->ssl && tls_in_keep(c->ssl) != 0) {
        if (c->x)
            h1_finish(c->x, UP_ERROR, "out of memory");
        else
            h1_conn_close(c);
    }
}

static void h1_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    h1_conn *c = s->data;
    h1_xfer *x = c->x;

    if (nread == 0) return;
    if (c->ssl) {
        h1_tls_read(c, nread, buf->base);
        return;
    }
    if (!x) {
        /* Idle: the server closed it (or sent garbage). */
        h1_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (!x->got_bytes) {
            if (nread == UV_EOF)
                h1_fail_io(x, UP_ERROR, "Empty reply from server", 0);
            else
                h1_fail_io(x, UP_ERROR, "Recv failure", (int)nread);
            return;
        }
        if (nread == UV_EOF) {
            h1_parse(x, NULL, 0, true);
            return;
        }
        h1_finish(x, UP_ERROR,
                  nread == UV_ECONNRESET ? "Recv failure: Connection reset by peer"
                                         : "Recv failure");
        return;
    }
    x->got_bytes = true;
    h1_parse(x, buf->base, (size_t)nread, false);
}

static void h1_write_cb(uv_write_t *req, int status)
{
    h1_conn *c = req->data;
    h1_xfer *x = c->x;

    c->writing = false;
    if (status == 0 || !x || status == UV_ECANCELED) return;
    h1_fail_io(x, UP_ERROR, "Send failure", status);
}

static void h1_send(h1_xfer *x)
{
    h1_conn *c = x->conn;
    int rc;

    h1p_init(&c->parser, &h1_parse_cb, c, x->head_only);
    if (c->ssl) {
        c->si = 0;
        c->soff = 0;
        h1_tls_send_more(c);
        if (x->conn != c) return; /* failed (or retried on another connection) */
    } else {
        /* At once when the socket takes it all (most requests): a completed uv_write costs
         * an epoll_ctl, as libuv re-arms the socket's interest when its write queue drains. */
        unsigned i = 0;
        size_t total = 0;
        for (unsigned k = 0; k < x->nbufs; k++)
            total += x->bufs[k].len;
        rc = uv_try_write((uv_stream_t *)&c->tcp, x->bufs, x->nbufs);
        if (rc < 0 && rc != UV_EAGAIN) {
            h1_fail_io(x, UP_ERROR, "Send failure", rc);
            return;
        }
        if (rc < 0 || (size_t)rc < total) {
            /* The rest, from where the socket stopped taking it. x->bufs stays whole (a retry
             * on another connection sends it again); uv_write copies the array it is given. */
            size_t done = rc > 0 ? (size_t)rc : 0;
            uv_buf_t *rest = malloc(x->nbufs * sizeof *rest);
            if (!rest) {
                h1_fail_io(x, UP_ERROR, "Send failure", UV_ENOMEM);
                return;
            }
            memcpy(rest, x->bufs, x->nbufs * sizeof *rest);
            while (i < x->nbufs && done >= rest[i].len)
                done -= rest[i++].len;
            rest[i].base += done;
            rest[i].len -= done;
            c->wreq.data = c;
            rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, rest + i, x->nbufs - i, h1_write_cb);
            free(rest);
            if (rc != 0) {
                h1_fail_io(x, UP_ERROR, "Send failure", rc);
                return;
            }
            c->writing = true;
        }
    }
    if (!x->paused) uv_read_start((uv_stream_t *)&c->tcp, h1_alloc_cb, h1_read_cb);
}

static void h1_connect_cb(uv_connect_t *req, int status)
{
    h1_conn *c = req->data;
    h1_xfer *x = c->x;
    char msg[H1_ERRMSG_MAX];

    if (!x || status == UV_ECANCELED) return;
    if (status < 0) {
        h1_conn_close(c);
        if (++x->addr_i < x->naddr) {
            h1_connect(x);
            return;
        }
        snprintf(msg, sizeof msg, "Failed to connect to %s port %d: %s", x->pool->host,
                 x->pool->port, uv_strerror(status));
        h1_finish(x, UP_CONNECT_FAILED, msg);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    if (x->pool->tc) {
        /* The connect timeout runs on through the handshake. */
        c->ssl = tls_conn_new(x->pool->tc, x->pool->host, &x->pool->sess);
        if (!c->ssl) {
            h1_finish(x, UP_CONNECT_FAILED, "TLS setup failed");
            return;
        }
        uv_read_start((uv_stream_t *)&c->tcp, h1_alloc_cb, h1_read_cb);
        h1_tls_handshake(c);
        return;
    }
    x->t_connect = 0;
    h1_arm(x);
    h1_send(x);
}

static void h1_connect(h1_xfer *x)
{
    h1_ctx *ctx = x->ctx;
    h1_conn *c;
    h1_addr *sa = &x->addr[x->addr_i];
    char msg[H1_ERRMSG_MAX];
    int rc;

    c = calloc(1, sizeof *c);
    if (!c) {
        h1_finish(x, UP_ERROR, "out of memory");
        return;
    }
    c->ctx = ctx;
    c->pool = x->pool;
    uv_tcp_init(ctx->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    ctx->nrefs++;
    c->x = x;
    x->conn = c;
    if (sa->sa.sa_family == AF_INET)
        sa->v4.sin_port = htons((uint16_t)x->pool->port);
    else
        sa->v6.sin6_port = htons((uint16_t)x->pool->port);
    rc = uv_tcp_connect(&c->creq, &c->tcp, &sa->sa, h1_connect_cb);
    if (rc != 0) {
        h1_conn_close(c);
        if (++x->addr_i < x->naddr) {
            h1_connect(x);
            return;
        }
        snprintf(msg, sizeof msg, "Failed to connect to %s port %d: %s", x->pool->host,
                 x->pool->port, uv_strerror(rc));
        h1_finish(x, UP_CONNECT_FAILED, msg);
    }
}

/* ---- name resolution ---- */

static h1_dns *h1_dns_find(h1_ctx *ctx, const char *host)
{
    uint64_t now = h1_now();
    for (h1_dns *d = ctx->dns; d; d = d->next)
        if (d->expires > now && strcmp(d->host, host) == 0) return d;
    return NULL;
}

static void h1_dns_store(h1_ctx *ctx, const char *host, const struct addrinfo *ai)
{
    size_t hl = strlen(host);
    h1_dns *d, **pp;

    /* Drop this host's old entry, and the oldest when full. */
    for (pp = &ctx->dns; *pp;) {
        if (strcmp((*pp)->host, host) == 0 || (ctx->ndns >= H1_DNS_MAX && !(*pp)->next)) {
            h1_dns *old = *pp;
            *pp = old->next;
            free(old);
            ctx->ndns--;
        } else {
            pp = &(*pp)->next;
        }
    }
    d = calloc(1, sizeof *d + hl + 1);
    if (!d) return;
    for (; ai && d->naddr < H1_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (ai->ai_addrlen > sizeof d->addr[0]) continue;
        memcpy(&d->addr[d->naddr++], ai->ai_addr, ai->ai_addrlen);
    }
    memcpy(d->host, host, hl + 1);
    d->expires = h1_now() + H1_DNS_TTL_MS;
    d->next = ctx->dns;
    ctx->dns = d;
    ctx->ndns++;
}

static void h1_use_addrs(h1_xfer *x, const h1_dns *d)
{
    x->naddr = d->naddr;
    x->addr_i = 0;
    memcpy(x->addr, d->addr, (size_t)d->naddr * sizeof d->addr[0]);
}

static void h1_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    h1_resolve *r = req->data;
    h1_ctx *ctx = r->ctx;
    h1_xfer *x = r->x;
    char msg[H1_ERRMSG_MAX];

    if (!ctx->freeing && status == 0) h1_dns_store(ctx, r->host, ai);
    if (ai) uv_freeaddrinfo(ai);
    if (x) {
        const h1_dns *d = ctx->freeing ? NULL : h1_dns_find(ctx, r->host);
        x->res = NULL;
        if (!d || d->naddr == 0) {
            snprintf(msg, sizeof msg, "Could not resolve host: %.100s", r->host);
            h1_finish(x, UP_CONNECT_FAILED, msg);
        } else {
            h1_use_addrs(x, d);
            h1_connect(x);
        }
    }
    free(r);
    h1_ctx_unref(ctx);
}

/* Fills x->addr from an IP literal or the cache, or starts a resolution. */
static void h1_resolve_start(h1_xfer *x)
{
    h1_ctx *ctx = x->ctx;
    const char *host = x->pool->host;
    struct sockaddr_in *s4 = &x->addr[0].v4;
    struct sockaddr_in6 *s6 = &x->addr[0].v6;
    struct addrinfo hints;
    const h1_dns *d;
    h1_resolve *r;
    size_t hl = strlen(host);
    int rc;

    memset(&x->addr[0], 0, sizeof x->addr[0]);
    x->addr_i = 0;
    if (uv_inet_pton(AF_INET, host, &s4->sin_addr) == 0) {
        s4->sin_family = AF_INET;
        x->naddr = 1;
        h1_connect(x);
        return;
    }
    if (uv_inet_pton(AF_INET6, host, &s6->sin6_addr) == 0) {
        s6->sin6_family = AF_INET6;
        x->naddr = 1;
        h1_connect(x);
        return;
    }
    d = h1_dns_find(ctx, host);
    if (d && d->naddr > 0) {
        h1_use_addrs(x, d);
        h1_connect(x);
        return;
    }
    r = calloc(1, sizeof *r + hl + 1);
    if (!r) {
        h1_finish(x, UP_ERROR, "out of memory");
        return;
    }
    memcpy(r->host, host, hl + 1);
    r->ctx = ctx;
    r->x = x;
    r->req.data = r;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = uv_getaddrinfo(ctx->loop, &r->req, h1_resolved, r->host, NULL, &hints);
    if (rc != 0) {
        free(r);
        h1_finish(x, UP_CONNECT_FAILED, "Could not resolve host");
        return;
    }
    ctx->nrefs++;
    x->res = r;
}

/* Sends x on an idle pooled connection if there is one (and allowed), else on a new one. */
static void h1_dispatch(h1_xfer *x, bool allow_pool)
{
    h1_conn *c = allow_pool ? x->pool->idle : NULL;

    if (c) {
        h1_idle_unlink(c);
        uv_ref((uv_handle_t *)&c->tcp);
        c->reused = true;
        c->x = x;
        x->conn = c;
        x->t_connect = 0;
        h1_arm(x);
        h1_send(x);
        return;
    }
    if (x->t_connect == 0 && x->connect_ms > 0) {
        x->t_connect = h1_now() + (uint64_t)x->connect_ms;
        h1_arm(x);
    }
    h1_resolve_start(x);
}

/* ---- deferred work ---- */

static void h1_do_resume(h1_xfer *x)
{
    if (x->paused || x->cancelled || x->finished) return;
    if (x->pend_len) {
        char *p = x->pending;
        size_t n = x->pend_len;
        x->pending = NULL;
        x->pend_len = 0;
        x->in_cb++;
        if (x->cb.on_data) x->cb.on_data(x->ud, p, n);
        x->in_cb--;
        free(p);
        if (x->cancelled) {
            h1_release(x);
            return;
        }
        if (x->paused) return;
    }
    if (x->msg_done) {
        h1_finish(x, UP_OK, "");
        return;
    }
    if (x->conn && x->conn->ssl) {
        /* What the engine kept while paused comes first: no new read may announce it. */
        h1_conn *c = x->conn;
        h1_tls_drain(c);
        if (x->conn != c || x->paused) return;
    }
    if (x->conn) uv_read_start((uv_stream_t *)&x->conn->tcp, h1_alloc_cb, h1_read_cb);
}

static void h1_defer_cb(uv_idle_t *h)
{
    h1_ctx *ctx = h->data;
    h1_xfer *list = ctx->deferred;

    ctx->deferred = ctx->deferred_tail = NULL;
    uv_idle_stop(&ctx->defer);
    while (list) {
        h1_xfer *x = list;
        list = x->dnext;
        x->dnext = NULL;
        x->in_defer = false;
        if (x->def_finish) {
            x->def_finish = false;
            h1_finish(x, x->def_res, x->def_msg);
        } else if (x->want_resume) {
            x->want_resume = false;
            h1_do_resume(x);
        }
    }
}

/* ---- request building ---- */

/* Splits http[s]://host[:port][/path][?query]; host is copied into host (NUL-terminated). */
static int h1_parse_url(const char *url, char *host, size_t hostlen, int *port, const char **path,
                        bool *tls)
{
    const char *p, *h, *he, *end;
    size_t hl;

    *tls = strncasecmp(url, "https://", 8) == 0;
    if (!*tls && strncasecmp(url, "http://", 7) != 0) return -1;
    p = url + (*tls ? 8 : 7);
    end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(end - p))) return -1; /* userinfo: not supported */
    if (*p == '[') {
        h = p + 1;
        he = memchr(h, ']', (size_t)(end - h));
        if (!he) return -1;
        p = he + 1;
    } else {
        h = p;
        he = memchr(p, ':', (size_t)(end - p));
        if (!he) he = end;
        p = he;
    }
    hl = (size_t)(he - h);
    if (hl == 0 || hl >= hostlen) return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = *tls ? 443 : 80;
    if (p < end) {
        long v = 0;
        if (*p != ':' || p + 1 == end) return -1;
        for (p++; p < end; p++) {
            if (*p < '0' || *p > '9') return -1;
            v = v * 10 + (*p - '0');
            if (v > 65535) return -1;
        }
        if (v == 0) return -1;
        *port = (int)v;
    }
    *path = end;
    return 0;
}

/* Keyed by (scheme and trust, host, port): http and https never share a connection, nor do
 * providers trusting different CA files. */
static h1_pool *h1_pool_get(h1_ctx *ctx, const char *host, int port, tls_ctx *tc)
{
    size_t hl = strlen(host);
    h1_pool *p;

    for (p = ctx->pools; p; p = p->next)
        if (p->port == port && p->tc == tc && strcmp(p->host, host) == 0) return p;
    p = calloc(1, sizeof *p + hl + 1);
    if (!p) return NULL;
    memcpy(p->host, host, hl + 1);
    p->port = port;
    p->tc = tc;
    p->next = ctx->pools;
    ctx->pools = p;
    return p;
}

/* The caller sized the buffer (h1_build's need). */
static void h1_put(char *h, size_t *off, const char *p, size_t n)
{
    memcpy(h + *off, p, n);
    *off += n;
}

/* (the callers' values, a port and a body's length, are far below INT64_MAX) */
static void h1_put_u64(char *h, size_t *off, uint64_t v)
{
    *off = (size_t)(ms_i64_dec((int64_t)v, h + *off) - h);
}

static int h1_build(h1_xfer *x, const up_request *req, const char *path, const char *host, int port,
                    int default_port)
{
    const char *method = req->method ? req->method : "GET";
    size_t plen = strcspn(path, "#"), need, off = 0, total = 0, i;
    bool v6 = strchr(host, ':') != NULL;
    bool send_len, own_host = true;
    char *h;

    for (i = 0; i < req->nbody; i++)
        total += req->body[i].len;
    send_len = req->nbody > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
    need = strlen(method) + plen + 64 + strlen(host) + 64;
    for (i = 0; i < req->nheaders; i++) {
        need += strlen(req->headers[i]) + 2;
        /* A caller's Host replaces ours, as with curl. */
        if (strncasecmp(req->headers[i], "host:", 5) == 0) own_host = false;
    }
    if (need > H1_REQ_HEAD_MAX) return -1;
    /* One allocation for the write's buffer list and the head after it (x->bufs, freed whole) */
    size_t list = (req->nbody + 1) * sizeof *x->bufs;
    uv_buf_t *bufs = malloc(list + need);
    if (!bufs) return -1;
    h = (char *)bufs + list;
    /* Plain copies, not snprintf: this runs for every proxied request. */
    h1_put(h, &off, method, strlen(method));
    h1_put(h, &off, " /", plen == 0 || path[0] == '?' ? 2 : 1);
    h1_put(h, &off, path, plen);
    h1_put(h, &off, " HTTP/1.1\r\n", 11);
    if (own_host) {
        h1_put(h, &off, v6 ? "Host: [" : "Host: ", v6 ? 7 : 6);
        h1_put(h, &off, host, strlen(host));
        if (v6) h1_put(h, &off, "]", 1);
        if (port != default_port) {
            h1_put(h, &off, ":", 1);
            h1_put_u64(h, &off, (uint64_t)port);
        }
        h1_put(h, &off, "\r\n", 2);
    }
    for (i = 0; i < req->nheaders; i++) {
        const char *l = req->headers[i];
        size_t n = strlen(l);
        const char *colon = memchr(l, ':', n);
        /* curl's convention: "Name:" with no value removes a header; we add none of those. */
        if (!colon || colon[1 + strspn(colon + 1, " \t")] == '\0') continue;
        /* The length is ours to state: it must match the bytes we send. */
        if (strncasecmp(l, "content-length:", 15) == 0) continue;
        if (memchr(l, '\r', n) || memchr(l, '\n', n)) continue;
        h1_put(h, &off, l, n);
        h1_put(h, &off, "\r\n", 2);
    }
    if (send_len) {
        h1_put(h, &off, "Content-Length: ", 16);
        h1_put_u64(h, &off, total);
        h1_put(h, &off, "\r\n", 2);
    }
    h1_put(h, &off, "\r\n", 2);

    x->bufs = bufs;
    x->bufs[0] = uv_buf_init(h, (unsigned)off);
    x->nbufs = 1;
    for (i = 0; i < req->nbody; i++)
        if (req->body[i].len > 0)
            x->bufs[x->nbufs++] =
                uv_buf_init((char *)req->body[i].base, (unsigned)req->body[i].len);
    x->head_only = strcmp(method, "HEAD") == 0;
    return 0;
}

/* ---- API used by upstream.c ---- */

h1_ctx *h1_ctx_new(uv_loop_t *loop)
{
    h1_ctx *ctx = malloc(sizeof *ctx);

    if (!ctx) return NULL;
    /* Not calloc: the buffers need no zeroing. */
    memset(ctx, 0, offsetof(h1_ctx, rbuf));
    ctx->loop = loop;
    uv_idle_init(loop, &ctx->defer);
    ctx->defer.data = ctx;
    uv_timer_init(loop, &ctx->sweep);
    ctx->sweep.data = ctx;
    ctx->nrefs = 2; /* the two handles, until their close callbacks */
    ctx->idle_ms = H1_IDLE_MS;
    return ctx;
}

void h1_set_idle_ms(h1_ctx *ctx, uint64_t ms)
{
    ctx->idle_ms = ms;
}

void h1_ctx_free(h1_ctx *ctx)
{
    if (!ctx) return;
    ctx->freeing = true;
    while (ctx->xfers) {
        h1_xfer *x = ctx->xfers;
        x->cancelled = true;
        h1_release(x);
    }
    ctx->active = 0;
    while (ctx->pools) {
        h1_pool *p = ctx->pools;
        ctx->pools = p->next;
        while (p->idle)
            h1_conn_close(p->idle);
        if (p->sess) SSL_SESSION_free(p->sess);
        free(p);
    }
    while (ctx->tls) {
        tls_ctx *t = ctx->tls;
        ctx->tls = *tls_ctx_nextp(t);
        tls_ctx_free(t);
    }
    while (ctx->dns) {
        h1_dns *d = ctx->dns;
        ctx->dns = d->next;
        free(d);
    }
    uv_close((uv_handle_t *)&ctx->defer, h1_ctx_handle_closed);
    uv_close((uv_handle_t *)&ctx->sweep, h1_ctx_handle_closed);
}

/* The worker's SSL_CTX for this CA file, made (reading the files) on first use. */
static tls_ctx *h1_tls_ctx(h1_ctx *ctx, const char *ca_file, char *err, size_t errlen)
{
    tls_ctx *t;

    if (ca_file && !*ca_file) ca_file = NULL;
    for (t = ctx->tls; t; t = *tls_ctx_nextp(t))
        if (tls_ctx_is(t, ca_file)) return t;
    if (ctx->ntls >= H1_TLS_CTX_MAX) {
        snprintf(err, errlen, "TLS setup failed: too many CA files");
        return NULL;
    }
    t = tls_ctx_new(ca_file, err, errlen);
    if (!t) return NULL;
    *tls_ctx_nextp(t) = ctx->tls;
    ctx->tls = t;
    ctx->ntls++;
    return t;
}

up_xfer *h1_start(h1_ctx *ctx, const up_request *req, const up_callbacks *cb, void *ud)
{
    char host[256], msg[H1_ERRMSG_MAX];
    const char *path;
    int port;
    bool tls = false;
    tls_ctx *tc = NULL;
    h1_xfer *x;
    uint64_t now;

    if (!ctx || ctx->freeing || !req || !req->url || !cb) return NULL;
    x = oc_zalloc(sizeof *x);
    if (!x) return NULL;
    x->kind = UP_KIND_H1;
    x->ctx = ctx;
    x->cb = *cb;
    x->ud = ud;
    h1_reset_response(x);
    x->connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms : H1_DEFAULT_CONNECT_MS;
    x->fb_ms = req->first_byte_timeout_ms;
    x->total_ms = req->total_timeout_ms;
    uv_timer_init(ctx->loop, &x->timer);
    x->timer.data = x;
    now = h1_now();
    if (x->fb_ms > 0) x->t_fb = now + (uint64_t)x->fb_ms;
    if (x->total_ms > 0) x->t_total = now + (uint64_t)x->total_ms;

    x->next = ctx->xfers;
    if (ctx->xfers) ctx->xfers->prev = x;
    ctx->xfers = x;
    ctx->active++;
    x->starting = true;
    if (h1_parse_url(req->url, host, sizeof host, &port, &path, &tls) != 0) {
        h1_finish(x, UP_CONNECT_FAILED, "URL rejected: malformed or unsupported http URL");
    } else if (tls && !(tc = h1_tls_ctx(ctx, req->tls_ca_file, msg, sizeof msg))) {
        h1_finish(x, UP_CONNECT_FAILED, msg);
    } else if (h1_build(x, req, path, host, port, tls ? 443 : 80) != 0) {
        /* Allocation failure or an absurd header set. */
        ctx->active--;
        x->starting = false;
        h1_release(x);
        return NULL;
    } else if (!(x->pool = h1_pool_get(ctx, host, port, tc))) {
        ctx->active--;
        x->starting = false;
        h1_release(x);
        return NULL;
    } else {
        h1_dispatch(x, true);
    }
    x->starting = false;
    return (up_xfer *)x;
}

void h1_pause(up_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)ux;
    if (x->cancelled || x->finished || x->paused) return;
    x->paused = true;
    x->want_resume = false;
    if (x->conn) uv_read_stop((uv_stream_t *)&x->conn->tcp);
}

void h1_resume(up_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)ux;
    if (x->cancelled || x->finished || !x->paused) return;
    x->paused = false;
    x->want_resume = true;
    h1_defer_add(x->ctx, x);
}

void h1_cancel(up_xfer *ux)
{
    h1_xfer *x = (h1_xfer *)ux;
    if (x->cancelled || x->finished) return;
    x->cancelled = true;
    x->ctx->active--;
    h1_timer_stop(x);
    /* Inside one of x's callbacks the caller of that callback releases it. */
    if (x->in_cb > 0) return;
    h1_release(x);
}

size_t h1_active(h1_ctx *ctx)
{
    return ctx ? ctx->active : 0;
}
