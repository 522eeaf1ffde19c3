/*
 * HTTP/1.1 connections (see http.h): the request parser's callbacks (common/h1parse.c), limits,
 * timeouts, in-order pipelining and the response writer. Everything here runs on the worker's loop
 * thread.
 *
 * Requests go to the handlers the server was given at start-up (srv_handlers, reached through
 * the worker's srv): this file includes nothing of the API layer.
 */
#include "server/http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/objcache.h"
#include "common/util.h"

#define PENDING_MAX (64 * 1024)
#define LIMIT_STR_(x) #x
#define LIMIT_STR(x) LIMIT_STR_(x)

enum { ST_IDLE, ST_HEAD, ST_BODY, ST_PROCESSING };

typedef struct wreq {
    uv_write_t req;
    http_conn *c;
    char *own[2];
} wreq;

static const h1p_callbacks g_parse_cb;

/* Headers a request may carry once. A second credential must not silently replace the first (a
 * request was billed to the second of two keys), so the request is refused instead; x-api-key is
 * as the Anthropic dialect's key. RFC 9112 3.2 requires the same for Host. Anthropic's version
 * and beta headers are kept to be forwarded to Anthropic providers; one of each (the SDKs send
 * the betas comma-separated in one), so what is forwarded is what was checked; so is the response
 * cache's switch (x-modelswitch-cache), so a request says one thing. (The parser itself
 * refuses a second Content-Length and a Transfer-Encoding other than chunked.) The
 * order is HTTP_ONCE_*'s: the headers the gateway keeps, then Host, which it only checks. */
static const struct {
    const char *name, *display;
    size_t len;
} once_headers[] = {
    {"authorization", "Authorization", sizeof "authorization" - 1},
    {"x-api-key", "x-api-key", sizeof "x-api-key" - 1},
    {"anthropic-version", "anthropic-version", sizeof "anthropic-version" - 1},
    {"anthropic-beta", "anthropic-beta", sizeof "anthropic-beta" - 1},
    {"x-modelswitch-cache", "x-modelswitch-cache", sizeof "x-modelswitch-cache" - 1},
    {"host", "Host", sizeof "host" - 1}};

static void conn_close(http_conn *c);
static void conn_feed(http_conn *c, const char *data, size_t n);
static void conn_arm_timer(http_conn *c, int state);
static void conn_timer_set(http_conn *c, int64_t ms);
static void conn_scratch_release(http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void on_timer(uv_timer_t *t);

static const char *status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    http_conn *c = w->c;
    free(w->own[0]);
    free(w->own[1]);
    free(w);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    size_t q = c->tcp.write_queue_size;
    if (c->draining_high && q < HTTP_LOW_WATER) {
        c->draining_high = 0;
        if (c->processing && c->handler.drained) c->handler.drained(c, c->handler.ctx);
        if (c->closing) return;
    }
}

static int cork_flush(http_conn *c);
static int conn_send_copy(http_conn *c, const uv_buf_t *v, int nv, char *held);
/* A response head's room on the stack (http_respond); a longer one moves to the heap. */
#define HTTP_HEAD_STACK 2048

/* Queues bufs; own pointers are freed after the write. Returns 0 or -1 (connection gone). */
static int conn_write(http_conn *c, uv_buf_t *bufs, unsigned nbufs, char *own0, char *own1)
{
    /* what a corked stream gathered goes first: bytes leave in the order they were written */
    if (c->w->corked == c && cork_flush(c) != 0) c->closing = 1;
    if (c->closing) {
        free(own0);
        free(own1);
        return -1;
    }
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    c->bytes_out += total;
    /* Nothing queued: write now. The socket almost always takes the whole answer, and then no
     * request object, callback or second trip through the loop is needed. */
    if (c->tcp.write_queue_size == 0) {
        int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
        if (n < 0 && n != UV_EAGAIN) {
            free(own0);
            free(own1);
            conn_close(c);
            return -1;
        }
        if (n > 0 && (size_t)n == total) {
            free(own0);
            free(own1);
            return 0;
        }
        /* queue the rest: drop what went out from the front of bufs */
        size_t done = n > 0 ? (size_t)n : 0;
        while (nbufs > 0 && done >= bufs[0].len) {
            done -= bufs[0].len;
            bufs++;
            nbufs--;
        }
        if (nbufs > 0 && done > 0) {
            bufs[0].base += done;
            bufs[0].len -= done;
        }
    }
    wreq *w = malloc(sizeof *w);
    if (!w) {
        free(own0);
        free(own1);
        conn_close(c);
        return -1;
    }
    w->c = c;
    w->own[0] = own0;
    w->own[1] = own1;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (rc < 0) {
        free(own0);
        free(own1);
        free(w);
        conn_close(c);
        return -1;
    }
    if (c->tcp.write_queue_size > HTTP_HIGH_WATER) c->draining_high = 1;
    return 0;
}

size_t http_write_pending(http_conn *c)
{
    /* what a corked stream gathered is on its way too (the proxy's backpressure counts it) */
    return c->tcp.write_queue_size + (c->w->corked == c ? c->w->cork_len : 0);
}

void http_set_extra_headers(http_conn *c, const char *headers)
{
    buf_reset(&c->extra);
    buf_appends(&c->extra, headers);
}

void http_add_extra_header(http_conn *c, const char *headers)
{
    buf_appends(&c->extra, headers);
}

/* Builds the status line and the headers every response carries. */
static int build_head(http_conn *c, buf_t *h, int status, const char *content_type,
                      const char *headers, int64_t content_length)
{
    if (c->w->draining) c->close_after = 1;
    if (!c->req.keep_alive) c->close_after = 1;
    c->status = status;
    char num[24];
    *ms_i64_dec(status, num) = '\0';
    int rc = buf_appends(h, "HTTP/1.1 ");
    rc |= buf_appends(h, num);
    rc |= buf_appends(h, " ");
    rc |= buf_appends(h, status_text(status));
    rc |= buf_appends(h, "\r\nx-request-id: ");
    rc |= buf_appends(h, c->req.id);
    rc |= buf_appends(h, "\r\n");
    if (content_type) {
        rc |= buf_appends(h, "content-type: ");
        rc |= buf_appends(h, content_type);
        rc |= buf_appends(h, "\r\n");
    }
    if (status == 204 || status == 304) {
        ; /* RFC 9110: no Content-Length on 204; on 304 it would have to be the full body's */
    } else if (content_length >= 0) {
        *ms_i64_dec(content_length, num) = '\0';
        rc |= buf_appends(h, "content-length: ");
        rc |= buf_appends(h, num);
        rc |= buf_appends(h, "\r\n");
    } else
        rc |= buf_appends(h, "transfer-encoding: chunked\r\n");
    if (c->close_after) rc |= buf_appends(h, "connection: close\r\n");
    if (!c->req.have_rl && c->req.rl_late) c->req.rl_late(c);
    if (c->req.have_rl) rc |= rl_format_headers(&c->req.rl, h);
    if (c->extra.len) rc |= buf_append(h, c->extra.data, c->extra.len);
    if (headers) rc |= buf_appends(h, headers);
    rc |= buf_append(h, "\r\n", 2);
    return rc;
}

static void access_log(http_conn *c)
{
    http_log_request(&c->req, c->status, c->bytes_in, c->bytes_out);
    if (c->w->srv->h.on_done) c->w->srv->h.on_done(c->w, &c->req, c->status);
}

/*
 * The access line is written straight into one stack buffer by a cursor that never checks room:
 * every field it writes is bounded (the request's fixed-size fields, the path cut at
 * LOG_PATH_MAX, eight numbers), so LOG_LINE_MAX, their sum, holds the longest line with every
 * string escaped at its longest. Through buf_t each of the line's ~30 pieces was a call or an
 * inlined room check: ~2,350 instructions a request, now ~1,450 (callgrind, docs/PERFORMANCE.md).
 */
#define LOG_PATH_MAX 200
#define LOG_ESC(n) (6 * (n) + 2) /* a JSON string of n bytes, each \u00XX at worst */
#define LOG_LINE_MAX                                                                               \
    (512 /* the names and punctuation */ + 32 /* time */ + sizeof(((http_request *)0)->id) +       \
     H1P_METHOD_MAX + LOG_ESC(LOG_PATH_MAX) + sizeof(((http_request *)0)->log_account) +           \
     LOG_ESC(sizeof(((http_request *)0)->log_key)) +                                               \
     LOG_ESC(sizeof(((http_request *)0)->log_model)) +                                             \
     LOG_ESC(sizeof(((http_request *)0)->log_provider)) + 8 * 24 /* numbers */)

/* A constant piece: its length is known here, so the copy is a few moves. */
#define LOG_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

/* s[0..n) as a JSON string value (quoted, escaped), or null when it is empty: runs that need no
 * escape copied whole, as buf_append_json_escaped does. */
static char *log_str(char *p, const char *s, size_t n)
{
    if (!n) return LOG_LIT(p, "null");
    *p++ = '"';
    size_t start = 0, i = buf_json_plain(s, n);
    for (;;) {
        memcpy(p, s + start, i - start);
        p += i - start;
        if (i == n) break;
        p += buf_json_escape_byte((unsigned char)s[i], p);
        start = i + 1;
        i = start + buf_json_plain(s + start, n - start);
    }
    *p++ = '"';
    return p;
}

/* s (a NUL-terminated field of at most cap bytes) as log_str writes it */
static char *log_field(char *p, const char *s, size_t cap)
{
    return log_str(p, s, strnlen(s, cap));
}

/* s (a NUL-terminated field of at most cap bytes) as it is: what needs no escaping */
static char *log_raw(char *p, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    memcpy(p, s, n);
    return p + n;
}

void http_log_request(const http_request *r, int status, uint64_t bytes_in, uint64_t bytes_out)
{
    /* The time is formatted once per millisecond and thread (a busy worker logs dozens in one). */
    static _Thread_local int64_t ts_ms = -1;
    static _Thread_local char ts[32];
    char line[LOG_LINE_MAX], *p = line;
    int64_t now_ms = ms_loop_now_ms();
    if (now_ms != ts_ms) {
        ms_iso8601(now_ms, ts, 1);
        ts_ms = now_ms;
    }
    int64_t total_us = (int64_t)((ms_mono_ns() - r->start_ns) / 1000);
    p = LOG_LIT(p, "{\"time\":\"");
    p = log_raw(p, ts, sizeof ts);
    /* the request id (srv_new_request_id) and a method (a token) need no escaping */
    p = LOG_LIT(p, "\",\"type\":\"access\",\"request_id\":\"");
    p = log_raw(p, r->id, sizeof r->id);
    p = LOG_LIT(p, "\",\"method\":\"");
    p = log_raw(p, r->method_name, H1P_METHOD_MAX);
    p = LOG_LIT(p, "\",\"path\":");
    p = log_str(p, r->path.p, r->path.n > LOG_PATH_MAX ? LOG_PATH_MAX : r->path.n);
    p = LOG_LIT(p, ",\"status\":");
    p = ms_i64_dec(status, p);
    /* account ids are numbers; the key is its display prefix, never the key */
    p = LOG_LIT(p, ",\"account\":");
    p = r->log_account[0] ? log_raw(p, r->log_account, sizeof r->log_account) : LOG_LIT(p, "null");
    p = LOG_LIT(p, ",\"key\":");
    p = log_field(p, r->log_key, sizeof r->log_key);
    p = LOG_LIT(p, ",\"model\":");
    p = log_field(p, r->log_model, sizeof r->log_model);
    p = LOG_LIT(p, ",\"provider\":");
    p = log_field(p, r->log_provider, sizeof r->log_provider);
    p = LOG_LIT(p, ",\"upstream_ms\":");
    p = r->upstream_ms >= 0 ? ms_i64_dec(r->upstream_ms, p) : LOG_LIT(p, "null");
    p = LOG_LIT(p, ",\"total_ms\":");
    p = ms_i64_dec(total_us / 1000, p);
    *p++ = '.';
    *p++ = (char)('0' + total_us % 1000 / 100);
    *p++ = (char)('0' + total_us % 100 / 10);
    *p++ = (char)('0' + total_us % 10);
    p = LOG_LIT(p, ",\"bytes_in\":");
    p = ms_i64_dec((int64_t)bytes_in, p);
    p = LOG_LIT(p, ",\"bytes_out\":");
    p = ms_i64_dec((int64_t)bytes_out, p);
    if (r->prompt_tokens >= 0) {
        p = LOG_LIT(p, ",\"prompt_tokens\":");
        p = ms_i64_dec(r->prompt_tokens, p);
        p = LOG_LIT(p, ",\"completion_tokens\":");
        p = ms_i64_dec(r->completion_tokens, p);
    }
    *p++ = '}';
    log_line(line, (size_t)(p - line));
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    http_conn *c = req->data;
    if (!c->closing && status < 0) conn_close(c);
}

/* Closing right after an answer could reset the connection while the client is still sending
 * (a 413 for a large body), and a reset can destroy the answer before the client reads it. So
 * the write side is shut down once the answer is out, and input is read and discarded for a
 * short while (or until the client closes). */
static void conn_linger(http_conn *c)
{
    if (c->closing || c->lingering) return;
    c->lingering = 1;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    conn_timer_set(c, 2000);
}

/* A request body that fits is gathered in a block of the thread's object cache
 * (common/objcache.h) rather than a buffer malloc'd and realloc'd per request (~400 instructions
 * a chat request); a larger one outgrows it into the heap as before. */
#define HTTP_BODY_BLOCK 4096

static void conn_body_free(http_conn *c)
{
    buf_free(&c->body);
    oc_free(c->body_block, HTTP_BODY_BLOCK);
    c->body_block = NULL;
}

/* The current request is fully answered (its last bytes are queued). */
static void request_done(http_conn *c)
{
    if (!c->processing) return;
    c->processing = 0;
    c->handler = (http_handler){0};
    access_log(c);
    worker_t *w = c->w;
    w->inflight--;
    conn_body_free(c);
    conn_scratch_release(c);
    c->bytes_in = c->bytes_out = 0;
    if (w->draining) {
        c->close_after = 1;
        srv_worker_check_drained(w);
    }
    if (c->close_after) {
        conn_linger(c);
        return;
    }
    conn_arm_timer(c, ST_IDLE);
    if (c->pending.len) {
        buf_t p = c->pending;
        buf_init(&c->pending, PENDING_MAX);
        conn_feed(c, p.data, p.len);
        buf_free(&p);
    }
    if (!c->closing && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
    }
}

void http_respond(http_conn *c, int status, const char *content_type, const char *headers,
                  const char *body, size_t len, int own_body)
{
    if (c->closing || c->responded) {
        if (own_body) free((char *)body);
        return;
    }
    c->responded = 1;
    /* The head is built on the stack and goes out with the body from where they are: the socket
     * almost always takes both at once, and only what it does not is copied (conn_send_copy). */
    char stack[HTTP_HEAD_STACK];
    buf_t h;
    buf_init_with(&h, stack, sizeof stack, 0);
    if (build_head(c, &h, status, content_type, headers, (int64_t)len) != 0) {
        buf_free(&h);
        if (own_body) free((char *)body);
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(h.data, (unsigned)h.len),
                        uv_buf_init((char *)body, (unsigned)len)};
    int rc = conn_send_copy(c, bufs, len ? 2 : 1, NULL);
    buf_free(&h);
    if (own_body) free((char *)body);
    if (rc == 0 && !c->closing) request_done(c);
}

void http_error(http_conn *c, int status, const char *type, const char *code, const char *param,
                const char *message, int64_t retry_after_ms)
{
    buf_t b, h;
    buf_init(&b, 0);
    buf_init(&h, 0);
    if (c->req.error_body) {
        if (c->req.error_body(&b, status, type, code, param, message) != 0) buf_free(&b);
    } else {
        buf_appends(&b, "{\"error\":{\"message\":\"");
        buf_append_json_escaped(&b, message, strlen(message));
        buf_printf(&b, "\",\"type\":\"%s\",\"code\":\"%s\",\"param\":", type, code);
        if (param) {
            buf_appends(&b, "\"");
            buf_append_json_escaped(&b, param, strlen(param));
            buf_appends(&b, "\"}}");
        } else {
            buf_appends(&b, "null}}");
        }
    }
    if (status == 400 || status == 401 || status == 403 || status == 404 || status == 405 ||
        status == 413)
        buf_appends(&h, "x-should-retry: false\r\n");
    if (retry_after_ms >= 0) {
        buf_printf(&h, "retry-after: %" PRId64 "\r\nretry-after-ms: %" PRId64 "\r\n",
                   (retry_after_ms + 999) / 1000, retry_after_ms);
    }
    if (!b.data) {
        buf_free(&b);
        buf_free(&h);
        conn_close(c);
        return;
    }
    size_t len = b.len;
    http_respond(c, status, "application/json", h.data, buf_steal(&b), len, 1);
    buf_free(&h);
}

static void held_unlink(http_conn *c)
{
    if (c->held_prev)
        c->held_prev->held_next = c->held_next;
    else
        c->w->held = c->held_next;
    if (c->held_next) c->held_next->held_prev = c->held_prev;
    c->held_next = c->held_prev = NULL;
}

/* Sends a held head now (a stream that ends, or the I/O phase that ends, before a chunk). */
static int held_flush(http_conn *c)
{
    if (!c->held) return 0;
    held_unlink(c);
    char *p = c->held;
    uv_buf_t b = uv_buf_init(p, (unsigned)c->held_len);
    c->held = NULL;
    return conn_write(c, &b, 1, p, NULL);
}

void http_flush_held(uv_check_t *h)
{
    worker_t *w = h->data;
    while (w->held)
        held_flush(w->held);
    http_uncork(w);
    uv_check_stop(h);
}

void http_stream_start(http_conn *c, int status, const char *content_type, const char *headers)
{
    if (c->closing || c->responded) return;
    c->responded = 1;
    c->chunked = 1;
    char stack[HTTP_HEAD_STACK]; /* built here, then one allocation of its size (buf_steal) */
    buf_t h;
    buf_init_with(&h, stack, sizeof stack, 0);
    if (build_head(c, &h, status, content_type, headers, -1) != 0) {
        buf_free(&h);
        conn_close(c);
        return;
    }
    /* Held, not written: the provider's first event usually came in the same read as its head
     * and is written next, and one write instead of two is one wake-up of the client less. The
     * worker's check handle runs after every I/O callback of this loop turn and sends a head
     * still held then, so a head never waits for an event that is not already here. */
    c->held_len = h.len;
    if (!(c->held = buf_steal(&h))) {
        conn_close(c);
        return;
    }
    worker_t *w = c->w;
    if (!w->held) uv_check_start(&w->held_check, http_flush_held);
    c->held_prev = NULL;
    c->held_next = w->held;
    if (w->held) w->held->held_prev = c;
    w->held = c;
}

/* "<len in hex>\r\n" into out (at least 20 bytes); returns its length. */
static int chunk_size_line(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    int n = 0, k = 0;
    do {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    } while (len);
    while (n)
        out[k++] = tmp[--n];
    out[k++] = '\r';
    out[k++] = '\n';
    return k;
}

int http_stream_write(http_conn *c, const char *data, size_t len)
{
    uv_buf_t part = uv_buf_init((char *)data, (unsigned)len);
    return http_stream_writev(c, &part, 1);
}

static int cork_add(http_conn *c, const uv_buf_t *v, int nv);

int http_stream_writev(http_conn *c, const uv_buf_t *parts, int nparts)
{
    if (c->closing || !c->chunked) return -1;
    if (nparts < 1 || nparts > HTTP_STREAM_PARTS) return -1;
    size_t len = 0;
    for (int i = 0; i < nparts; i++)
        len += parts[i].len;
    if (len == 0) return 0;
    worker_t *w = c->w;
    /* A burst's next event (see below) that fits: framed straight into the cork buffer. */
    if (w->corked == c && w->cork_gather && !c->held && w->cork &&
        w->cork_len <= HTTP_CORK_MAX - 24 && len <= HTTP_CORK_MAX - 24 - w->cork_len) {
        char *o = w->cork + w->cork_len;
        o += chunk_size_line(o, len);
        for (int i = 0; i < nparts; i++) {
            memcpy(o, parts[i].base, parts[i].len);
            o += parts[i].len;
        }
        *o++ = '\r';
        *o++ = '\n';
        w->cork_len = (size_t)(o - w->cork);
        return 0;
    }
    char head[24];
    int hl = chunk_size_line(head, len);
    /* the response head first, if it is still held (the stream's first chunk) */
    char *held = c->held;
    if (held) {
        held_unlink(c);
        c->held = NULL;
    }
    uv_buf_t v[HTTP_STREAM_PARTS + 3];
    int nv = 0;
    if (held) v[nv++] = uv_buf_init(held, (unsigned)c->held_len);
    v[nv++] = uv_buf_init(head, (unsigned)hl);
    for (int i = 0; i < nparts; i++)
        v[nv++] = parts[i];
    v[nv++] = uv_buf_init("\r\n", 2);
    /* A small burst's first chunk goes at once, with no copy: a read with one event (most of
     * them) costs what it did without the cork. A big burst's is gathered with the rest. */
    if (c->w->corked == c && c->w->cork_gather && cork_add(c, v, nv) == 0) {
        free(held);
        return 0;
    }
    c->w->cork_gather = 1;
    return conn_send_copy(c, v, nv, held);
}

/* Gathers v into the worker's cork buffer: 0, or -1 when it does not fit even after a flush
 * (the caller then writes it itself; the buffer is empty by then, so the order holds). */
static int cork_add(http_conn *c, const uv_buf_t *v, int nv)
{
    worker_t *w = c->w;
    size_t need = 0;
    for (int i = 0; i < nv; i++)
        need += v[i].len;
    if (w->cork_len + need > HTTP_CORK_MAX && cork_flush(c) != 0) return -1;
    if (need > HTTP_CORK_MAX) return -1;
    if (!w->cork && !(w->cork = malloc(HTTP_CORK_MAX))) return -1;
    for (int i = 0; i < nv; i++) {
        memcpy(w->cork + w->cork_len, v[i].base, v[i].len);
        w->cork_len += v[i].len;
    }
    return 0;
}

/* Sends the corked connection's gathered chunks (it stays corked). 0, or -1 if c closed. */
static int cork_flush(http_conn *c)
{
    worker_t *w = c->w;
    if (w->corked != c || w->cork_len == 0) return 0;
    uv_buf_t b = uv_buf_init(w->cork, (unsigned)w->cork_len);
    w->cork_len = 0;
    w->corked = NULL; /* conn_write, reached from here, must not flush again */
    int rc = conn_send_copy(c, &b, 1, NULL);
    if (rc == 0 && !c->closing) w->corked = c;
    return rc;
}

void http_stream_cork(http_conn *c, size_t burst)
{
    worker_t *w = c->w;
    if (c->closing || !c->chunked || w->corked == c) return;
    http_uncork(w); /* another stream's, corked earlier in this loop iteration */
    w->corked = c;
    w->cork_len = 0;
    /* a burst of several events is gathered from its first chunk (one write); one event goes
     * at once (no copy) */
    w->cork_gather = burst >= HTTP_CORK_GATHER;
    /* uncorked after this iteration's I/O callbacks, with the held heads */
    uv_check_start(&w->held_check, http_flush_held);
}

void http_uncork(worker_t *w)
{
    http_conn *c = w->corked;
    if (!c) return;
    cork_flush(c);
    w->corked = NULL;
    w->cork_len = 0;
}

/* Writes v at once where the socket takes it, else copies what is left and queues it; frees
 * held (a stream head that is part of v) either way. */
static int conn_send_copy(http_conn *c, const uv_buf_t *v, int nv, char *held)
{
    /* what a corked stream gathered goes first, as in conn_write (cork_flush comes here with
     * the cork already let go) */
    if (c->w->corked == c && cork_flush(c) != 0) c->closing = 1;
    if (c->closing) {
        free(held);
        return -1;
    }
    size_t total = 0, sent = 0;
    for (int i = 0; i < nv; i++)
        total += v[i].len;
    if (c->tcp.write_queue_size == 0) {
        /* the usual case: everything straight from where it is, no copy */
        int n = uv_try_write((uv_stream_t *)&c->tcp, v, (unsigned)nv);
        if (n < 0 && n != UV_EAGAIN) {
            free(held);
            conn_close(c);
            return -1;
        }
        sent = n > 0 ? (size_t)n : 0;
        c->bytes_out += sent;
        if (sent == total) {
            free(held);
            return 0;
        }
    }
    /* the socket is full, or earlier bytes wait: what is left is copied and queued */
    char *p = malloc(total - sent);
    if (!p) {
        free(held);
        conn_close(c);
        return -1;
    }
    size_t k = 0;
    for (int i = 0; i < nv; i++) {
        size_t skip = sent > v[i].len ? v[i].len : sent;
        memcpy(p + k, v[i].base + skip, v[i].len - skip);
        k += v[i].len - skip;
        sent -= skip;
    }
    free(held);
    uv_buf_t b = uv_buf_init(p, (unsigned)k);
    return conn_write(c, &b, 1, p, NULL);
}

void http_stream_end(http_conn *c)
{
    if (c->closing) return;
    if (held_flush(c) != 0) return;
    if (c->chunked) {
        static const char last[] = "0\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)last, sizeof last - 1);
        c->chunked = 0;
        if (c->w->corked == c && c->w->cork_len > 0 && cork_add(c, &b, 1) == 0) {
            /* The end joins the chunks the cork gathered, and they leave in one write: a stream
             * that ends in the read that brought its last events (a whole answer in one burst,
             * a real stream's usage and [DONE]) otherwise paid a second system call, and on
             * the client's side a second segment, for these five bytes. */
            http_uncork(c->w);
            if (c->closing) return;
        } else if (conn_write(c, &b, 1, NULL, NULL) != 0) {
            return;
        }
    }
    request_done(c);
}

/* ---- request scratch ---- */

#define HTTP_SCRATCH 1024 /* a request's scratch block: head's half, then extra's */

/* A new request: head and extra start empty in the connection's scratch block (without one,
 * when memory is out, they allocate as they grow). Requests lend the blocks, from the thread's
 * object cache (common/objcache.h), rather than connections own them: an idle keep-alive
 * connection holds none (a block each would cost 10,000 idle connections 10 MB), and a busy
 * worker reuses a few without malloc. */
static void conn_scratch_take(http_conn *c)
{
    if (!c->scratch) c->scratch = oc_alloc(HTTP_SCRATCH);
    if (c->scratch) {
        buf_rewind_to(&c->head, c->scratch, HTTP_SCRATCH / 2);
        buf_rewind_to(&c->extra, c->scratch + HTTP_SCRATCH / 2, HTTP_SCRATCH / 2);
    } else {
        buf_free(&c->head);
        buf_free(&c->extra);
    }
}

/* The request is over: what head and extra grew is freed, and the block goes back. */
static void conn_scratch_release(http_conn *c)
{
    buf_free(&c->head);
    buf_free(&c->extra);
    oc_free(c->scratch, HTTP_SCRATCH);
    c->scratch = NULL;
}

/* ---- closing and timers ---- */

static void on_close(uv_handle_t *h)
{
    http_conn *c = h->data;
    if (--c->open_handles > 0) return;
    conn_scratch_release(c);
    conn_body_free(c);
    buf_free(&c->pending);
    h1p_free(&c->parser);
    explicit_bzero(c->auth_key, sizeof c->auth_key); /* a key does not outlive its connection */
    free(c);
}

static void conn_close(http_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    worker_t *w = c->w;
    if (w->corked == c) {
        w->corked = NULL; /* what it gathered has nowhere to go */
        w->cork_len = 0;
    }
    if (c->held) {
        held_unlink(c);
        free(c->held);
        c->held = NULL;
    }
    if (c->processing) {
        /* the client is gone before its answer was complete */
        if (!c->responded) c->status = 499;
        int handler_logs = c->handler.abort && c->handler.abort(c, c->handler.ctx);
        c->handler = (http_handler){0};
        c->processing = 0;
        if (!handler_logs) access_log(c);
        w->inflight--;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    /* two handles close; the struct is freed when both are done */
    c->open_handles = 2;
    uv_close((uv_handle_t *)&c->timer, on_close);
    uv_close((uv_handle_t *)&c->tcp, on_close);
    if (w->draining) srv_worker_check_drained(w);
}

static void on_timer(uv_timer_t *t)
{
    http_conn *c = t->data;
    c->timer_armed = 0;
    if (!c->timer_on) return; /* stopped lazily (conn_timer_set) */
    uint64_t now = uv_now(&c->w->loop);
    if (now < c->timer_due) {
        /* the timeout moved later after the timer was armed: on to it */
        c->timer_armed = 1;
        c->timer_fires = c->timer_due;
        uv_timer_start(&c->timer, on_timer, c->timer_due - now, 0);
        return;
    }
    c->timer_on = 0;
    if (c->processing) return;
    if (c->phase == ST_IDLE || c->lingering) {
        /* idle keep-alive connection: close without a word, as browsers and SDKs expect */
        conn_close(c);
        return;
    }
    c->processing = 1;
    c->w->inflight++;
    c->req.start_ns = ms_loop_mono_ns();
    c->req.keep_alive = 0;
    c->req.upstream_ms = -1;
    c->req.prompt_tokens = -1;
    srv_new_request_id(c->w, c->req.id);
    http_error(c, 408, "invalid_request_error", "request_timeout", NULL,
               "The request was not received in time", -1);
}

/* Starts the connection's timeout (ms >= 0) or stops it (-1); every change of it goes through
 * here. A request that arrives in one read moves the timer five times before conn_feed returns
 * (head, body, the head check's pause, body again, stopped at its end), each a stop and an
 * insert in libuv's timer heap (~300 instructions with a few dozen timers); only the last state
 * matters, so while conn_feed runs the change is kept and applied once as it returns. No timer
 * callback can run meanwhile: they run from the loop.
 *
 * And the heap is touched only to bring the timer earlier (nginx's lazy timers): a stop leaves
 * it armed, and a later deadline leaves it where it is; when it fires early, on_timer finds
 * nothing due and arms it for the deadline then in force. A keep-alive connection's requests
 * stop the idle timeout and start it again later, each request; now that costs nothing until
 * the old deadline comes, once per idle timeout. */
static void conn_timer_set(http_conn *c, int64_t ms)
{
    if (c->timer_defer) {
        c->timer_want = ms;
        c->timer_pending = 1;
        return;
    }
    if (ms < 0) {
        c->timer_on = 0;
        return;
    }
    uint64_t now = uv_now(&c->w->loop);
    c->timer_on = 1;
    c->timer_due = now + (uint64_t)ms;
    if (c->timer_armed && c->timer_fires <= c->timer_due) return;
    c->timer_armed = 1;
    c->timer_fires = c->timer_due;
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* Applies the change conn_timer_set kept, unless the connection is closing (its timer handle
 * is being closed: it must not be started again). */
static void conn_timer_flush(http_conn *c)
{
    c->timer_defer = 0;
    if (!c->timer_pending) return;
    c->timer_pending = 0;
    if (!c->closing) conn_timer_set(c, c->timer_want);
}

static void conn_arm_timer(http_conn *c, int state)
{
    c->phase = state;
    const cfg_t *cfg = c->w->cfg;
    uint64_t ms = (uint64_t)(state == ST_IDLE   ? cfg->idle_timeout_ms
                             : state == ST_HEAD ? cfg->header_timeout_ms
                                                : cfg->body_timeout_ms);
    if (state == ST_BODY) {
        /* the gap between reads, but never past the whole body's deadline */
        uint64_t now = uv_now(&c->w->loop);
        uint64_t left = c->body_deadline > now ? c->body_deadline - now : 0;
        if (ms > left) ms = left;
    }
    conn_timer_set(c, (int64_t)ms);
}

/* ---- parsing ---- */

/* Copies bytes the request keeps (the target, some header values) into its head buffer:
 * the parser's views last only as long as its call. The parser caps the whole header block at
 * max_header_bytes, so this holds no more than that. Returns 0, or -1 (memory). */
static int head_keep(http_conn *c, const char *at, size_t n, size_t *off)
{
    *off = c->head.len;
    if (buf_append(&c->head, at, n) != 0) {
        c->header_too_large = 1;
        return -1;
    }
    return 0;
}

/* The first bytes of a request: its state starts afresh, and the head's timeout runs. */
static void msg_begin(http_conn *c)
{
    memset(&c->req, 0, sizeof c->req);
    c->req.start_ns = ms_loop_mono_ns();
    c->req.upstream_ms = -1;
    c->req.prompt_tokens = -1;
    conn_scratch_take(c);
    conn_body_free(c);
    buf_init(&c->body, (size_t)c->w->cfg->max_body_bytes);
    c->url_off = c->url_len = 0;
    c->nheaders = 0;
    c->ctype_len = 0;
    c->inm_len = 0;
    memset(c->once_len, 0, sizeof c->once_len);
    c->expect_continue = 0;
    c->header_too_large = c->body_too_large = 0;
    c->once_seen = 0;
    c->dup_header = 0;
    c->body_left = 0;
    c->responded = 0;
    c->chunked = 0;
    c->status = 0;
    c->in_msg = 1;
    h1p_init_request(&c->parser, &g_parse_cb, c, (size_t)c->w->cfg->max_header_bytes);
    conn_arm_timer(c, ST_HEAD);
}

static http_method method_of(const char *m, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        http_method m;
    } known[] = {{"GET", 3, HTTP_M_GET},        {"POST", 4, HTTP_M_POST},
                 {"HEAD", 4, HTTP_M_HEAD},      {"PUT", 3, HTTP_M_PUT},
                 {"DELETE", 6, HTTP_M_DELETE},  {"PATCH", 5, HTTP_M_PATCH},
                 {"OPTIONS", 7, HTTP_M_OPTIONS}};
    /* (methods are case-sensitive: "get" is not GET, RFC 9110 9.1) */
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (n == known[i].len && memcmp(m, known[i].name, n) == 0) return known[i].m;
    return HTTP_M_OTHER;
}

static int cb_request(void *ud, const char *m, size_t mlen, const char *t, size_t tlen)
{
    http_conn *c = ud;
    memcpy(c->req.method_name, m, mlen); /* (at most H1P_METHOD_MAX) */
    c->req.method_name[mlen] = '\0';
    c->req.method = method_of(m, mlen);
    c->url_len = tlen;
    return head_keep(c, t, tlen, &c->url_off);
}

static int cb_header(void *ud, const char *name, size_t nlen, const char *v, size_t vlen)
{
    http_conn *c = ud;
    size_t once = 0;
    if (++c->nheaders > c->w->cfg->max_headers) {
        c->header_too_large = 1;
        return -1;
    }
    while (once < sizeof once_headers / sizeof *once_headers &&
           !h1p_caseeq(name, nlen, once_headers[once].name, once_headers[once].len))
        once++;
    if (once < sizeof once_headers / sizeof *once_headers) {
        if (c->once_seen & (1u << once)) {
            c->dup_header = (int)once + 1;
            return -1;
        }
        c->once_seen |= 1u << once;
    }
    /* only what the handlers read is kept; the parser counted every byte against the cap */
    if (once < HTTP_ONCE_KEPT) {
        c->once_len[once] = vlen;
        return head_keep(c, v, vlen, &c->once_off[once]);
    }
    if (H1P_IS(name, nlen, "content-type")) {
        c->ctype_len = vlen;
        return head_keep(c, v, vlen, &c->ctype_off);
    }
    if (H1P_IS(name, nlen, "if-none-match")) {
        c->inm_len = vlen;
        return head_keep(c, v, vlen, &c->inm_off);
    }
    if (H1P_IS(name, nlen, "expect") && H1P_IS(v, vlen, "100-continue")) c->expect_continue = 1;
    return 0;
}

static void send_continue(http_conn *c)
{
    if (!c->expect_continue || c->w->draining) return;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
    c->bytes_out -= sizeof cont - 1; /* interim responses do not count as answer bytes */
    conn_write(c, &b, 1, NULL, NULL);
}

static int cb_head(void *ud, int status)
{
    http_conn *c = ud;
    h1p *p = &c->parser;
    conn_timer_set(c, -1);
    if (p->has_cl && p->left > (uint64_t)c->w->cfg->max_body_bytes) {
        c->body_too_large = 1;
        return -1;
    }
    if (p->chunked || p->left > 0) {
        c->body_left = p->chunked ? 0 : p->left;
        c->body_deadline =
            uv_now(&c->w->loop) + HTTP_BODY_DEADLINE_FACTOR * (uint64_t)c->w->cfg->body_timeout_ms;
        conn_arm_timer(c, ST_BODY);
        /* conn_feed runs the head check between the head and the body */
        if (c->w->srv->h.head_check && !c->w->draining) return H1P_PAUSE;
    }
    send_continue(c);
    return 0;
}

static int cb_body(void *ud, const char *at, size_t n)
{
    http_conn *c = ud;
    c->body_left = c->body_left > n ? c->body_left - n : 0;
    if (!c->body.data && !c->body_block && n + c->body_left < HTTP_BODY_BLOCK &&
        (c->body_block = oc_alloc(HTTP_BODY_BLOCK)))
        buf_rewind_to(&c->body, c->body_block, HTTP_BODY_BLOCK);
    if (c->body.data && at == c->body.data + c->body.len && n < c->body.cap - c->body.len) {
        c->body.len += n; /* read straight into the body by on_alloc: nothing to copy */
    } else if (buf_append(&c->body, at, n) != 0) {
        c->body_too_large = 1;
        return -1;
    }
    conn_arm_timer(c, ST_BODY);
    return 0;
}

static const h1p_callbacks g_parse_cb = {
    .on_request = cb_request, .on_header = cb_header, .on_head = cb_head, .on_body = cb_body};

/* Fills the request's target and header views from the header block. */
static void fill_request(http_conn *c)
{
    http_request *r = &c->req;
    const char *h = c->head.data ? c->head.data : "";
    const char *url = h + c->url_off;
    size_t n = c->url_len, scheme = 0;
    /* RFC 9112 3.2.2: a server must accept the absolute form ("http://host/path?query", what a
     * client talking to a proxy sends): the path is the URI's, and its authority wins over Host,
     * which the gateway does not read anyway. (The parser takes no other form but "*".) */
    if (n && url[0] != '/') {
        if (n >= 7 && strncasecmp(url, "http://", 7) == 0)
            scheme = 7;
        else if (n >= 8 && strncasecmp(url, "https://", 8) == 0)
            scheme = 8;
        if (scheme) {
            size_t i = scheme;
            while (i < n && url[i] != '/' && url[i] != '?')
                i++;
            url += i;
            n -= i;
        }
    }
    const char *q = memchr(url, '?', n);
    r->path = (ms_str){url, q ? (size_t)(q - url) : n};
    if (scheme && r->path.n == 0) r->path = (ms_str){"/", 1}; /* "http://host" is "/" */
    r->query = q ? (ms_str){q + 1, n - (size_t)(q - url) - 1} : (ms_str){"", 0};
    ms_str *kept[HTTP_ONCE_KEPT] = {&r->authorization, &r->api_key, &r->anthropic_version,
                                    &r->anthropic_beta, &r->cache};
    for (int i = 0; i < HTTP_ONCE_KEPT; i++)
        *kept[i] = (ms_str){h + c->once_off[i], c->once_len[i]};
    r->content_type = (ms_str){h + c->ctype_off, c->ctype_len};
    r->if_none_match = (ms_str){h + c->inm_off, c->inm_len};
    r->body = (ms_str){c->body.data ? c->body.data : "", c->body.len};
}

/* The headers are complete and a body follows (rest: its bytes already here). Lets the handlers
 * refuse the request (its route, its key) before the body is read and before 100 Continue
 * invites it: a client with a bad key learns so at once instead of after uploading. Returns -1
 * when the request was answered; its body is then not read and the connection closes. */
static int head_check(http_conn *c, size_t rest)
{
    h1p *p = &c->parser;
    /* A Content-Length body that came whole with its headers (a small request in one read) has
     * nothing to spare: dispatch checks the same at once, and keep-alive is kept. (Paused at
     * the head's end, the parser's left is still all of the length.) */
    int whole = p->has_cl && (uint64_t)rest >= p->left;
    if (!whole || c->expect_continue) {
        worker_t *w = c->w;
        int keep = c->close_after;
        fill_request(c);
        srv_new_request_id(w, c->req.id);
        c->processing = 1;
        w->inflight++;
        c->close_after = 1; /* if it answers: the body is not read */
        w->srv->h.head_check(c, &c->req);
        if (c->closing) return -1;
        if (c->responded) {
            c->body_left = 0; /* on_alloc: not into the body buffer */
            return -1;
        }
        c->processing = 0;
        w->inflight--;
        c->close_after = keep;
    }
    send_continue(c);
    return 0;
}

/* A request is complete: hand it to the handlers (srv_handlers.dispatch). */
static void dispatch(http_conn *c)
{
    http_request *r = &c->req;
    worker_t *w = c->w;
    c->processing = 1;
    w->inflight++;
    fill_request(c);
    if (!r->id[0]) srv_new_request_id(w, r->id); /* the head check may have made it */
    if (w->draining) {
        c->close_after = 1;
        http_error(c, 503, "service_unavailable_error", "service_unavailable", NULL,
                   "The gateway is shutting down", 1000);
        return;
    }
    w->srv->h.dispatch(c, r);
}

/* What a refused request's message says was wrong with it */
static const char *parse_error_text(const http_conn *c)
{
    switch (h1p_error_where(&c->parser)) {
    case H1P_IN_START:
        return "Malformed HTTP request: invalid request line";
    case H1P_IN_HEADER:
        return "Malformed HTTP request: invalid header field or framing";
    default:
        return "Malformed HTTP request: invalid chunked body";
    }
}

/* A parse error or a limit: answer once and close. */
static void parse_failed(http_conn *c, h1p_result err)
{
    conn_timer_set(c, -1);
    c->close_after = 1;
    c->processing = 1;
    c->w->inflight++;
    c->in_msg = 0;
    if (!c->req.start_ns) c->req.start_ns = ms_loop_mono_ns();
    c->req.keep_alive = 0;
    c->req.upstream_ms = -1;
    c->req.prompt_tokens = -1;
    srv_new_request_id(c->w, c->req.id);
    if (c->body_too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request body is larger than the limit of %" PRId64 " bytes",
                 c->w->cfg->max_body_bytes);
        http_error(c, 413, "invalid_request_error", "request_too_large", NULL, msg, -1);
    } else if (err == H1P_TOO_LARGE && h1p_error_where(&c->parser) == H1P_IN_BODY) {
        /* (a chunk's size line with its extensions, or all of a request's extensions) */
        http_error(
            c, 413, "invalid_request_error", "request_too_large", NULL,
            "Chunk extensions are longer than the limit of " LIMIT_STR(H1P_REQ_EXT_MAX) " bytes",
            -1);
    } else if (c->header_too_large || err == H1P_TOO_LARGE) {
        http_error(c, 431, "invalid_request_error", "request_too_large", NULL,
                   "Request headers are too large or too many", -1);
    } else if (c->dup_header) {
        char msg[96];
        snprintf(msg, sizeof msg, "The request has more than one %s header",
                 once_headers[c->dup_header - 1].display);
        http_error(c, 400, "invalid_request_error", "invalid_request", NULL, msg, -1);
    } else if (err == H1P_NOMEM) { /* (a line cut between reads could not be kept) */
        http_error(c, 500, "api_error", "internal_error", NULL,
                   "The gateway had an internal error while processing your request.", -1);
    } else {
        http_error(c, 400, "invalid_request_error", "invalid_request", NULL, parse_error_text(c),
                   -1);
    }
}

static void conn_feed_parse(http_conn *c, const char *data, size_t n);

static void conn_feed(http_conn *c, const char *data, size_t n)
{
    if (c->timer_defer) { /* fed again from inside a feed (a pipelined request) */
        conn_feed_parse(c, data, n);
        return;
    }
    c->timer_defer = 1;
    conn_feed_parse(c, data, n);
    conn_timer_flush(c);
}

static void conn_feed_parse(http_conn *c, const char *data, size_t n)
{
    if (c->closing || n == 0) return;
    if (c->processing || c->close_after) {
        if (c->close_after)
            return; /* whatever follows a request we will not finish reading is dropped */
        if (buf_append(&c->pending, data, n) != 0) {
            /* the client pipelines more than we hold: stop reading until it is drained */
            c->close_after = 1;
        } else if (c->pending.len >= PENDING_MAX / 2 && c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        return;
    }
    if (!c->in_msg) {
        /* Empty lines between requests (a client's CRLF after a body) begin nothing: the
         * connection is idle until a request line starts (the parser skips a split one too). */
        while (n >= 2 && data[0] == '\r' && data[1] == '\n') {
            data += 2;
            n -= 2;
        }
        if (n == 0) return;
        msg_begin(c);
    }
    /* The parser stops at the end of a request (the bytes after it wait in pending: requests are
     * answered one at a time, in order) and between a head and its body (the head check). */
    for (;;) {
        size_t used;
        h1p_result r = h1p_execute(&c->parser, data, n, &used);
        if (r == H1P_MORE) return;
        if (r == H1P_DONE) {
            conn_timer_set(c, -1);
            c->in_msg = 0;
            c->req.keep_alive = h1p_keep_alive(&c->parser);
            if (used < n && buf_append(&c->pending, data + used, n - used) != 0) c->close_after = 1;
            dispatch(c);
            return;
        }
        if (r != H1P_PAUSED) {
            parse_failed(c, r);
            return;
        }
        if (head_check(c, n - used) != 0) return;
        data += used;
        n -= used;
        if (n == 0 || c->closing) return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    http_conn *c = h->data;
    /* In the middle of a Content-Length body: read it straight into the request's body buffer,
     * no more than it still lacks (so the next pipelined request stays out of it). The buffer
     * grows with what arrives (doubling, at least 16 KiB at a time), never to the declared
     * length up front: a client that announces a large body and stalls costs little. */
    if (c->body_left > 0 && !c->processing && !c->close_after && !c->lingering && !c->closing &&
        c->pending.len == 0) {
        size_t want = c->body.len > 16384 ? c->body.len : 16384;
        if (want > c->body_left) want = (size_t)c->body_left;
        if (buf_reserve(&c->body, want) == 0) {
            size_t room = c->body.cap - 1 - c->body.len; /* buf keeps one byte for a NUL */
            b->base = c->body.data + c->body.len;
            b->len = room < c->body_left ? room : (size_t)c->body_left;
            return;
        }
    }
    b->base = c->w->readbuf;
    b->len = c->w->readbuf_len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    http_conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0) return;
    c->bytes_in += (uint64_t)n;
    if (c->lingering) return;
    /* a reloaded config, for the requests these bytes start (server.h: here, not in dispatch) */
    srv_worker_sync(c->w);
    conn_feed(c, b->base, (size_t)n);
}

void http_accept(worker_t *w, uv_stream_t *listener)
{
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->open_handles = 2;
        uv_close((uv_handle_t *)&c->timer, on_close);
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    buf_init(&c->pending, PENDING_MAX);
    buf_init(&c->extra, 4096);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    conn_arm_timer(c, ST_IDLE);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        conn_close(c);
}

void http_drain_worker(worker_t *w)
{
    http_conn *c = w->conns;
    while (c) {
        http_conn *next = c->next;
        if (!c->processing)
            conn_close(c);
        else
            c->close_after = 1;
        c = next;
    }
}

void http_finish_drain(worker_t *w)
{
    http_conn *c = w->conns;
    while (c) {
        http_conn *next = c->next;
        if (c->tcp.write_queue_size == 0)
            conn_close(c);
        else
            conn_linger(c); /* the last bytes of a finished answer still go out */
        c = next;
    }
}

void http_close_all(worker_t *w)
{
    while (w->conns)
        conn_close(w->conns);
}

void http_replace_body(http_conn *c, buf_t *b)
{
    conn_body_free(c);
    c->body = *b;
    buf_init(b, 0);
    c->req.body = (ms_str){c->body.data ? c->body.data : "", c->body.len};
}

char *http_take_body(http_conn *c)
{
    if (!c->body_block || c->body.data != c->body_block) return buf_steal(&c->body);
    char *p = c->body_block; /* a plain malloc block (objcache.h) */
    c->body_block = NULL;
    buf_init(&c->body, c->body.limit);
    return p;
}
