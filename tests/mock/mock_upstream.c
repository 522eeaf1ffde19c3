/*
 * mock_upstream: a fake LLM provider for ModelSwitch's integration and end-to-end tests.
 *
 * It speaks the wire formats of the providers the gateway talks to, with deterministic answers:
 * OpenAI (chat completions, streaming included, usage details, embeddings, model list), Azure
 * OpenAI (the same behind /openai/deployments/... and api-version), Anthropic's Messages API
 * (thinking and tool_use blocks, cache usage, named-event streams, count_tokens) and Google's
 * Gemini API (generateContent, SSE or JSON-array streams, embeddings). It injects faults on
 * demand: error statuses in each provider's error shape, delays, broken streams, mid-stream
 * errors, invalid JSON, hung or dropped connections; and it refuses requests that lack what the
 * real provider requires (auth headers, api-version, max_tokens, contents), so that tests catch
 * a gateway adapter that forgets them. Tests drive it through an optional "mock" object in the
 * request body, which the gateway forwards untouched, and through the /_mock/ control
 * endpoints (instance defaults, request recording, connection counters).
 *
 * It is deliberately independent of src/: a test tool must not share bugs with the code it tests.
 * Single-threaded libuv loop, llhttp for parsing, jansson for JSON. tests/mock/README.md is the
 * contract the test authors rely on; keep it in sync with this file.
 *
 * Layout: buffers and JSON helpers, recording, connection and write plumbing, HTTP parsing,
 * response engine (plain and streamed), fault handling, then one section per provider family
 * (OpenAI, Anthropic, Gemini, Azure) and the route table. A new provider adds a mock_family
 * (its error body shape), its handlers, optional accept/validate hooks, and rows in
 * mock_routes[].
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <llhttp.h>
#include <uv.h>

/* Limits: everything that grows from input is bounded. */
#define MOCK_MAX_URL (8 * 1024)
#define MOCK_MAX_HEADER_BYTES (64 * 1024)
#define MOCK_MAX_HEADERS 256
#define MOCK_MAX_BODY (64u * 1024 * 1024)
/* Bytes of later requests buffered while one is being answered; past this we stop reading. */
#define MOCK_PENDING_PAUSE (1024 * 1024)
#define MOCK_PENDING_MAX (MOCK_PENDING_PAUSE + 128 * 1024)
#define MOCK_REC_MAX 200
/* Total body bytes kept by the recorder; older records are evicted first. */
#define MOCK_REC_MAX_BYTES ((size_t)256 * 1024 * 1024)
#define MOCK_MAX_CHUNKS 10000
#define MOCK_MAX_DIMS 8192
#define MOCK_MAX_INPUTS 2048
#define MOCK_MAX_VALUES (1024 * 1024) /* embedding numbers in one response */
#define MOCK_MAX_DELAY_MS (10L * 60 * 1000)
#define MOCK_READ_SIZE (64 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Bounded growable buffer                                                                     */

typedef struct mock_buf {
    char *p;
    size_t len, cap, max;
} mock_buf;

static void mock_buf_init(mock_buf *b, size_t max)
{
    b->p = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

static void mock_buf_free(mock_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Keeps one spare byte so the content can always be NUL-terminated. */
static int mock_buf_reserve(mock_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1) cap = b->max + 1;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int mock_buf_put(mock_buf *b, const void *d, size_t n)
{
    if (mock_buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int mock_buf_puts(mock_buf *b, const char *s)
{
    return mock_buf_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static int mock_buf_printf(mock_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return -1; /* only used for short, fixed-shape lines */
    return mock_buf_put(b, tmp, (size_t)n);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON and text helpers                                                                       */

/* Length of the valid UTF-8 sequence at s (same rules as jansson: no overlongs, surrogates or
 * code points past U+10FFFF), or 0 if the bytes there are not valid UTF-8. */
static size_t mock_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A JSON string for arbitrary bytes: invalid UTF-8 becomes U+FFFD so that recording never fails.
 * *lossy tells the caller the bytes did not survive (it then adds a base64 copy). */
static json_t *mock_json_bytes(const char *s, size_t n, bool *lossy)
{
    json_t *j = json_stringn(s, n);
    if (lossy) *lossy = false;
    if (j) return j;
    if (lossy) *lossy = true;
    mock_buf b;
    mock_buf_init(&b, n * 3 + 16);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = mock_utf8_seq(u + i, n - i);
        if (l) {
            mock_buf_put(&b, u + i, l);
            i += l;
        } else {
            mock_buf_put(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    j = json_stringn(b.p ? b.p : "", b.len);
    mock_buf_free(&b);
    return j;
}

static int mock_base64(mock_buf *out, const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (mock_buf_reserve(out, (n + 2) / 3 * 4) < 0) return -1;
    char *o = out->p + out->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - out->p);
    out->p[out->len] = '\0';
    return 0;
}

static const char *mock_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Overloaded";
    default:
        return "Mock Status";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Global state                                                                                */

typedef struct mock_record {
    unsigned long long seq;
    char *method, *path, *query, *body;
    size_t body_len;
    json_t *headers;
} mock_record;

/* Instance defaults, set by the command line and POST /_mock/config. */
typedef struct mock_defaults {
    long fail_status, delay_ms;
    /* a stream's text chunks and the pause between them when the request's mock member does
     * not say (a benchmark's requests that may not carry one: a translated body refuses fields
     * its provider does not have) */
    long chunks, chunk_delay_ms;
    char retry_after[72];
} mock_defaults;

struct mock_conn;

static struct {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_signal_t sigint, sigterm;
    bool stopping, verbose;
    struct mock_conn *conns; /* live (not yet closing) connections, for shutdown */
    mock_defaults def;
    json_t *next_mock; /* options armed for the next inference request (mock_take_next) */
    unsigned long long requests, connections, completion_ids, message_ids, anthropic_req_ids;
    mock_record rec[MOCK_REC_MAX];
    size_t rec_head, rec_count, rec_bytes;
} g;

/* ------------------------------------------------------------------------------------------ */
/* Request recording (ring of the last MOCK_REC_MAX non-control requests)                      */

static void mock_rec_drop_oldest(void)
{
    mock_record *r = &g.rec[g.rec_head];
    g.rec_bytes -= r->body_len;
    free(r->method);
    free(r->path);
    free(r->query);
    free(r->body);
    json_decref(r->headers);
    memset(r, 0, sizeof *r);
    g.rec_head = (g.rec_head + 1) % MOCK_REC_MAX;
    g.rec_count--;
}

static void mock_rec_clear(void)
{
    while (g.rec_count)
        mock_rec_drop_oldest();
    g.rec_head = 0;
}

static char *mock_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void mock_rec_add(const char *method, const char *path, size_t path_len, const char *query,
                         json_t *headers, const char *body, size_t body_len)
{
    if (g.rec_count == MOCK_REC_MAX) mock_rec_drop_oldest();
    while (g.rec_count && g.rec_bytes + body_len > MOCK_REC_MAX_BYTES)
        mock_rec_drop_oldest();
    mock_record r = {.seq = g.requests, .body_len = body_len};
    r.method = strdup(method);
    r.path = mock_strndup(path, path_len);
    r.query = strdup(query);
    r.body = mock_strndup(body ? body : "", body_len);
    r.headers = json_incref(headers);
    if (!r.method || !r.path || !r.query || !r.body) {
        free(r.method);
        free(r.path);
        free(r.query);
        free(r.body);
        json_decref(r.headers);
        fprintf(stderr, "mock_upstream: out of memory, request not recorded\n");
        return;
    }
    g.rec[(g.rec_head + g.rec_count) % MOCK_REC_MAX] = r;
    g.rec_count++;
    g.rec_bytes += body_len;
}

static json_t *mock_rec_json(void)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < g.rec_count; i++) {
        const mock_record *r = &g.rec[(g.rec_head + i) % MOCK_REC_MAX];
        bool lossy;
        json_t *o = json_object();
        json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
        json_object_set_new(o, "method", json_string(r->method));
        json_object_set_new(o, "path", mock_json_bytes(r->path, strlen(r->path), NULL));
        json_object_set_new(o, "query", mock_json_bytes(r->query, strlen(r->query), NULL));
        json_object_set(o, "headers", r->headers);
        json_object_set_new(o, "body", mock_json_bytes(r->body, r->body_len, &lossy));
        json_object_set_new(o, "body_length", json_integer((json_int_t)r->body_len));
        if (lossy) {
            mock_buf b;
            mock_buf_init(&b, SIZE_MAX / 2);
            if (mock_base64(&b, (const unsigned char *)r->body, r->body_len) == 0)
                json_object_set_new(o, "body_base64", json_stringn(b.p, b.len));
            mock_buf_free(&b);
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                 */

/* Fault options of one request: instance defaults overridden by the body's "mock" object. */
typedef struct mock_opts {
    long events_per_write; /* stream events gathered into one write (0: one each) */
    long status, delay_ms, chunk_delay_ms, first_chunk_delay_ms, chunks, prompt_tokens, cut_after,
        stream_error_after, dims;
    /* OpenAI usage details: cached prompt tokens and hidden reasoning tokens (-1: not set) */
    long cached_tokens, reasoning_tokens;
    /* Anthropic and Gemini usage (-1: not set) */
    long input_tokens, output_tokens, cache_read_input_tokens, cache_creation_input_tokens,
        cache_creation_1h_input_tokens, thoughts_tokens, tool_use_prompt_tokens;
    bool prompt_tokens_set, no_usage, invalid_json, hang, close, thinking;
    /* these point into the parsed request body */
    const char *error_message, *stop_sequence, *finish_reason, *tool_name;
    json_t *tool_args; /* tool_call's input (Anthropic), args (Gemini) or arguments: an object */
} mock_opts;

/* A tool call's arguments are streamed in this many pieces (Anthropic input_json_delta, OpenAI
 * function.arguments deltas), so that a client that doesn't join them is caught; each piece also
 * counts as one output token. */
#define MOCK_TOOL_PIECES 2

typedef enum { MOCK_PIECE_MORE, MOCK_PIECE_LAST, MOCK_PIECE_CUT } mock_piece;
typedef mock_piece (*mock_produce_fn)(struct mock_conn *c, mock_buf *out);

typedef enum {
    MOCK_TIMER_NONE,
    MOCK_TIMER_START,
    MOCK_TIMER_PUMP,
    MOCK_TIMER_CLOSE
} mock_timer_action;

struct mock_route;

/* State of the response being produced; reset after every response. */
typedef struct mock_resp {
    const struct mock_route *route;
    json_t *json; /* parsed request body (inference routes) */
    mock_opts o;
    char retry_after[72];
    /* Family-specific response headers ("name: value\r\n" lines), e.g. Anthropic's request-id
     * and rate-limit headers; mock_head appends them to every head of this response. */
    char extra_headers[512];
    char req_id[40]; /* a provider request id that error bodies repeat (Anthropic) */
    void (*azure_fn)(struct mock_conn *c); /* the OpenAI handler an Azure path maps to */
    mock_timer_action timer_action;
    bool hanging;
    /* streaming */
    mock_produce_fn produce;
    json_t *model;
    char id[48];
    long long created;
    bool include_usage, role_sent, final_sent, usage_sent;
    long seq; /* Responses streams: the next sequence_number */
    long tokens_sent;
    /* Anthropic and Gemini answers, planned once from the options and the request */
    int phase, block, nblocks;
    char blocks[3]; /* content blocks in order: 'k' thinking, 't' text, 'u' tool use */
    long step, text_tokens, out_tokens;
    bool ping_sent, truncated, array_framing, array_open;
    const char *stop_reason;
    char tool_id[40];
    int gemini_method;        /* which Gemini method the URL named */
    const char *stream_ctype; /* the stream's Content-Type when not text/event-stream */
} mock_resp;

typedef struct mock_req {
    mock_buf url, hfield, hvalue, body;
    json_t *headers;
    size_t nheaders, header_bytes;
    bool keep_alive;
    int method;
} mock_req;

typedef struct mock_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    int open_handles;
    struct mock_conn *prev, *next;
    llhttp_t parser;
    mock_req req;
    mock_resp resp;
    mock_buf pending; /* bytes received while a response is in progress */
    bool busy;        /* a request was parsed and is not fully answered yet */
    bool reading, closing;
    bool draining;    /* error sent, write side shut: discard input until EOF */
    int parse_status; /* HTTP status for a request we refused while parsing */
    const char *parse_msg;
} mock_conn;

/* What to do once a write has been handed to the kernel. */
enum {
    MOCK_WF_NONE = 0,
    MOCK_WF_PUMP = 1,   /* streaming: produce the next piece */
    MOCK_WF_END = 2,    /* last write of the response */
    MOCK_WF_CLOSE = 4,  /* close the connection (abruptly for a cut stream) */
    MOCK_WF_LINGER = 8, /* close gracefully: the client may still be sending */
};

typedef struct mock_write {
    uv_write_t req;
    mock_conn *c;
    int flags;
    size_t len;
    char data[];
} mock_write;

static void mock_conn_close(mock_conn *c);
static void mock_response_done(mock_conn *c);
static void mock_stream_pump(mock_conn *c);
static void mock_inference_start(mock_conn *c);
static void mock_timer_cb(uv_timer_t *t);
static void mock_conn_linger(mock_conn *c);
static void mock_conn_read_start(mock_conn *c);
static void mock_conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void mock_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

static void mock_resp_reset(mock_conn *c)
{
    mock_resp *r = &c->resp;
    if (!uv_is_closing((uv_handle_t *)&c->timer)) uv_timer_stop(&c->timer);
    json_decref(r->json);
    json_decref(r->model);
    memset(r, 0, sizeof *r);
}

static void mock_req_reset(mock_req *q)
{
    q->url.len = q->hfield.len = q->hvalue.len = q->body.len = 0;
    json_decref(q->headers);
    q->headers = NULL;
    q->nheaders = q->header_bytes = 0;
}

static void mock_conn_handle_closed(uv_handle_t *h)
{
    mock_conn *c = h->data;
    if (--c->open_handles > 0) return;
    mock_req_reset(&c->req);
    mock_buf_free(&c->req.url);
    mock_buf_free(&c->req.hfield);
    mock_buf_free(&c->req.hvalue);
    mock_buf_free(&c->req.body);
    mock_buf_free(&c->pending);
    free(c);
}

/* Closing stops the timer too, so a client that disconnects mid-stream ends its response. Pending
 * writes are cancelled by libuv and their callbacks run before the close callbacks, so the
 * connection stays valid for them. */
static void mock_conn_close(mock_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        g.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    mock_resp_reset(c);
    uv_close((uv_handle_t *)&c->timer, mock_conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, mock_conn_handle_closed);
}

static void mock_shutdown_cb(uv_shutdown_t *req, int status)
{
    mock_conn *c = req->data;
    if (status < 0 && status != UV_ECANCELED) mock_conn_close(c);
}

/* Closing a socket with unread input makes the kernel send a reset, which can destroy the error
 * response before the client reads it (a refused 70 MiB upload, say). So shut down the write
 * side, swallow input until the client closes, and give up after a second. */
static void mock_conn_linger(mock_conn *c)
{
    c->draining = true;
    c->resp.timer_action = MOCK_TIMER_CLOSE;
    uv_timer_start(&c->timer, mock_timer_cb, 1000, 0);
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, mock_shutdown_cb) < 0)
        mock_conn_close(c);
    else
        mock_conn_read_start(c);
}

static void mock_write_cb(uv_write_t *req, int status)
{
    mock_write *w = (mock_write *)req;
    mock_conn *c = w->c;
    int flags = w->flags;
    free(w);
    if (c->closing) return;
    if (status < 0 || (flags & MOCK_WF_CLOSE)) {
        mock_conn_close(c);
        return;
    }
    if (flags & MOCK_WF_LINGER) {
        mock_conn_linger(c);
        return;
    }
    if (flags & MOCK_WF_END) {
        mock_response_done(c);
    } else if (flags & MOCK_WF_PUMP) {
        if (c->resp.o.chunk_delay_ms > 0) {
            c->resp.timer_action = MOCK_TIMER_PUMP;
            uv_timer_start(&c->timer, mock_timer_cb, (uint64_t)c->resp.o.chunk_delay_ms, 0);
        } else {
            mock_stream_pump(c);
        }
    }
}

/* Queues a+b as one write; the copy makes the caller's buffers reusable at once. */
static void mock_conn_write(mock_conn *c, int flags, const char *a, size_t alen, const char *b,
                            size_t blen)
{
    if (c->closing) return;
    mock_write *w = malloc(sizeof *w + alen + blen);
    if (!w) {
        mock_conn_close(c);
        return;
    }
    w->c = c;
    w->flags = flags;
    w->len = alen + blen;
    if (alen) memcpy(w->data, a, alen);
    if (blen) memcpy(w->data + alen, b, blen);
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, mock_write_cb) < 0) {
        free(w);
        mock_conn_close(c);
    }
}

static void mock_conn_read_start(mock_conn *c)
{
    if (!c->reading && !c->closing &&
        uv_read_start((uv_stream_t *)&c->tcp, mock_alloc_cb, mock_conn_read_cb) == 0)
        c->reading = true;
}

/* ------------------------------------------------------------------------------------------ */
/* Responses                                                                                   */

/* Builds the status line and common headers. Retry-After comes from the current fault options,
 * whatever the status. */
static void mock_head(mock_conn *c, mock_buf *h, int status, const char *ctype, bool chunked,
                      size_t content_length)
{
    mock_buf_printf(h, "HTTP/1.1 %d %s\r\n", status, mock_reason(status));
    mock_buf_printf(h, "Content-Type: %s\r\n", ctype);
    if (chunked)
        mock_buf_puts(h, "Transfer-Encoding: chunked\r\n");
    else
        mock_buf_printf(h, "Content-Length: %zu\r\n", content_length);
    if (c->resp.retry_after[0]) mock_buf_printf(h, "retry-after: %s\r\n", c->resp.retry_after);
    mock_buf_puts(h, c->resp.extra_headers);
    mock_buf_puts(h, c->req.keep_alive ? "Connection: keep-alive\r\n\r\n"
                                       : "Connection: close\r\n\r\n");
}

static void mock_send(mock_conn *c, int status, const char *ctype, const char *body, size_t len)
{
    mock_buf h;
    mock_buf_init(&h, 4096);
    mock_head(c, &h, status, ctype, false, len);
    mock_conn_write(c, MOCK_WF_END, h.p, h.len, body, len);
    mock_buf_free(&h);
}

/* Sends body (reference stolen) as JSON; dump_flags allow a real precision for embeddings. */
static void mock_send_json_flags(mock_conn *c, int status, json_t *body, size_t dump_flags)
{
    char *s = body ? json_dumps(body, JSON_COMPACT | dump_flags) : NULL;
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"error\":{\"message\":\"mock: out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":\"mock_error\"}}";
        mock_send(c, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    mock_send(c, status, "application/json", s, strlen(s));
    free(s);
}

static void mock_send_json(mock_conn *c, int status, json_t *body)
{
    mock_send_json_flags(c, status, body, 0);
}

static void mock_chunk_frame(mock_buf *out, const char *data, size_t len)
{
    mock_buf_printf(out, "%zx\r\n", len);
    mock_buf_put(out, data, len);
    mock_buf_puts(out, "\r\n");
}

/* One server-sent event as one HTTP chunk: "data: <json>\n\n". Steals ev. */
static void mock_sse_json(mock_buf *out, json_t *ev)
{
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    mock_buf e;
    mock_buf_init(&e, SIZE_MAX / 2);
    mock_buf_puts(&e, "data: ");
    mock_buf_puts(&e, s ? s : "{}");
    mock_buf_puts(&e, "\n\n");
    free(s);
    mock_chunk_frame(out, e.p, e.len);
    mock_buf_free(&e);
}

/* Writes the headers and the first piece, then each later piece once the previous one is
 * written (optionally after chunk_delay_ms): one event per write, and memory stays bounded
 * however many chunks were asked for. */
static void mock_stream_begin(mock_conn *c, mock_produce_fn produce)
{
    c->resp.produce = produce;
    mock_buf h;
    mock_buf_init(&h, 4096);
    mock_head(c, &h, 200, c->resp.stream_ctype ? c->resp.stream_ctype : "text/event-stream", true,
              0);
    mock_conn_write(c, MOCK_WF_NONE, h.p, h.len, NULL, 0);
    mock_buf_free(&h);
    if (c->resp.o.first_chunk_delay_ms > 0) {
        /* the head alone for a while, as a provider that is slow to its first token */
        c->resp.timer_action = MOCK_TIMER_PUMP;
        uv_timer_start(&c->timer, mock_timer_cb, (uint64_t)c->resp.o.first_chunk_delay_ms, 0);
        return;
    }
    mock_stream_pump(c);
}

static void mock_stream_pump(mock_conn *c)
{
    if (c->closing || !c->resp.produce) return;
    mock_buf out;
    mock_buf_init(&out, SIZE_MAX / 2);
    /* events_per_write: a burst in one write, as a fast provider's events reach the gateway in
     * one read */
    long per = c->resp.o.events_per_write > 0 ? c->resp.o.events_per_write : 1;
    mock_piece p;
    for (long i = 1;; i++) {
        p = c->resp.produce(c, &out);
        if (p != MOCK_PIECE_MORE || i >= per) break;
    }
    int flags = p == MOCK_PIECE_MORE   ? MOCK_WF_PUMP
                : p == MOCK_PIECE_LAST ? MOCK_WF_END
                                       : MOCK_WF_CLOSE;
    if (out.len)
        mock_conn_write(c, flags, out.p, out.len, NULL, 0);
    else if (p == MOCK_PIECE_CUT)
        mock_conn_close(c);
    mock_buf_free(&out);
}

/* ------------------------------------------------------------------------------------------ */
/* Routes and provider families                                                                */

/* A provider family decides the shape of error bodies (faults, bad requests). */
typedef struct mock_family {
    const char *name;
    /* code is OpenAI's error.code; families without one ignore it */
    json_t *(*error_body)(mock_conn *c, int status, const char *message, const char *code);
    /* optional: headers that go with an error status (Anthropic's rate-limit headers on 429) */
    void (*error_headers)(mock_conn *c, int status);
} mock_family;

typedef void (*mock_handler)(mock_conn *c);
/* Checks what must hold before the body is even looked at (path parts, query, auth headers) and
 * answers the request itself when it does not; returns false then. */
typedef bool (*mock_accept_fn)(mock_conn *c);

typedef struct mock_route {
    const char *method;
    const char *path;
    bool prefix;    /* path is a prefix (for providers that put the model in the URL) */
    bool inference; /* body is JSON with fault options; instance defaults apply */
    const mock_family *family;
    mock_handler fn;
    mock_accept_fn accept; /* optional */
    /* optional: checks the parsed body (required fields) after the mock options are read and
     * before any fault, so a gateway that omits a required field is caught whatever the test
     * injects; answers and returns false when the body is refused */
    mock_accept_fn validate;
} mock_route;

static void mock_error(mock_conn *c, const mock_family *f, int status, const char *msg,
                       const char *code)
{
    if (f->error_headers) f->error_headers(c, status);
    mock_send_json(c, status, f->error_body(c, status, msg, code));
}

/* Appends one "name: value" response header; bounded, a header that does not fit is dropped. */
__attribute__((format(printf, 2, 3))) static void mock_extra_header(mock_conn *c, const char *fmt,
                                                                    ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t have = strlen(c->resp.extra_headers);
    if (n < 0 || (size_t)n >= sizeof line || have + (size_t)n + 3 > sizeof c->resp.extra_headers)
        return;
    snprintf(c->resp.extra_headers + have, sizeof c->resp.extra_headers - have, "%s\r\n", line);
}

/* The value of request header name (lowercase), or NULL; an empty value counts as absent. */
static const char *mock_req_header(mock_conn *c, const char *name)
{
    const char *v = json_string_value(json_object_get(c->req.headers, name));
    return v && v[0] ? v : NULL;
}

/* Copies the value of query parameter name into out (raw, not percent-decoded). Returns false
 * when the parameter is absent or empty, or its value does not fit. */
static bool mock_query_param(mock_conn *c, const char *name, char *out, size_t outlen)
{
    const char *url = c->req.url.p ? c->req.url.p : "";
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    while (q) {
        q++;
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl == 0 || vl >= outlen) return false;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        q = end;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Fault options                                                                               */

/* Reads an integer field of the "mock" object into *out, clamped check included. Returns -1 and
 * fills err when the field is present with a wrong type or out of range. */
static int mock_opt_int(json_t *m, const char *key, long lo, long hi, long *out, bool *set,
                        char *err, size_t errlen)
{
    json_t *v = json_object_get(m, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "mock.%s must be an integer in %ld..%ld", key, lo, hi);
        return -1;
    }
    *out = (long)json_integer_value(v);
    if (set) *set = true;
    return 0;
}

static int mock_opt_bool(json_t *m, const char *key, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(m, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "mock.%s must be a boolean", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int mock_opt_str(json_t *m, const char *key, const char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(m, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "mock.%s must be a string", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Retry-After accepts seconds or any header-safe string (an HTTP date, a bad value for tests). */
static int mock_retry_after_value(json_t *v, char *out, size_t outlen)
{
    if (!v || json_is_null(v)) {
        out[0] = '\0';
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        snprintf(out, outlen, "%lld", (long long)json_integer_value(v));
        return 0;
    }
    if (json_is_string(v) && json_string_length(v) < outlen) {
        const char *s = json_string_value(v);
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) return -1;
        snprintf(out, outlen, "%s", s);
        return 0;
    }
    return -1;
}

static bool mock_status_ok(long s)
{
    return s == 0 || s == 200 || (s >= 300 && s <= 599);
}

static int mock_opts_parse(mock_conn *c, json_t *body, char *err, size_t errlen)
{
    mock_opts *o = &c->resp.o;
    memset(o, 0, sizeof *o);
    o->status = g.def.fail_status;
    o->delay_ms = g.def.delay_ms;
    o->chunks = g.def.chunks;
    o->chunk_delay_ms = g.def.chunk_delay_ms;
    o->cut_after = -1;
    o->stream_error_after = -1;
    o->dims = 4;
    o->cached_tokens = o->reasoning_tokens = -1;
    o->input_tokens = o->output_tokens = o->cache_read_input_tokens = -1;
    o->cache_creation_input_tokens = o->cache_creation_1h_input_tokens = -1;
    o->thoughts_tokens = o->tool_use_prompt_tokens = -1;
    snprintf(c->resp.retry_after, sizeof c->resp.retry_after, "%s", g.def.retry_after);

    json_t *m = json_object_get(body, "mock");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_object(m)) {
        snprintf(err, errlen, "mock must be an object");
        return -1;
    }
    if (mock_opt_int(m, "status", 0, 599, &o->status, NULL, err, errlen) ||
        mock_opt_int(m, "delay_ms", 0, MOCK_MAX_DELAY_MS, &o->delay_ms, NULL, err, errlen) ||
        mock_opt_int(m, "first_chunk_delay_ms", 0, MOCK_MAX_DELAY_MS, &o->first_chunk_delay_ms,
                     NULL, err, errlen) ||
        mock_opt_int(m, "chunk_delay_ms", 0, MOCK_MAX_DELAY_MS, &o->chunk_delay_ms, NULL, err,
                     errlen) ||
        mock_opt_int(m, "chunks", 0, MOCK_MAX_CHUNKS, &o->chunks, NULL, err, errlen) ||
        mock_opt_int(m, "events_per_write", 0, 100000, &o->events_per_write, NULL, err, errlen) ||
        mock_opt_int(m, "prompt_tokens", 0, 1000000000L, &o->prompt_tokens, &o->prompt_tokens_set,
                     err, errlen) ||
        mock_opt_int(m, "cut_after", 0, MOCK_MAX_CHUNKS, &o->cut_after, NULL, err, errlen) ||
        mock_opt_int(m, "stream_error_after", 0, MOCK_MAX_CHUNKS, &o->stream_error_after, NULL, err,
                     errlen) ||
        mock_opt_int(m, "dims", 1, MOCK_MAX_DIMS, &o->dims, NULL, err, errlen) ||
        mock_opt_int(m, "cached_tokens", 0, 1000000000L, &o->cached_tokens, NULL, err, errlen) ||
        mock_opt_int(m, "reasoning_tokens", 0, 1000000000L, &o->reasoning_tokens, NULL, err,
                     errlen) ||
        mock_opt_int(m, "input_tokens", 0, 1000000000L, &o->input_tokens, NULL, err, errlen) ||
        mock_opt_int(m, "output_tokens", 0, 1000000000L, &o->output_tokens, NULL, err, errlen) ||
        mock_opt_int(m, "cache_read_input_tokens", 0, 1000000000L, &o->cache_read_input_tokens,
                     NULL, err, errlen) ||
        mock_opt_int(m, "cache_creation_input_tokens", 0, 1000000000L,
                     &o->cache_creation_input_tokens, NULL, err, errlen) ||
        mock_opt_int(m, "cache_creation_1h_input_tokens", 0, 1000000000L,
                     &o->cache_creation_1h_input_tokens, NULL, err, errlen) ||
        mock_opt_int(m, "thoughts_tokens", 0, 1000000000L, &o->thoughts_tokens, NULL, err,
                     errlen) ||
        mock_opt_int(m, "tool_use_prompt_tokens", 0, 1000000000L, &o->tool_use_prompt_tokens, NULL,
                     err, errlen) ||
        mock_opt_bool(m, "thinking", &o->thinking, err, errlen) ||
        mock_opt_str(m, "stop_sequence", &o->stop_sequence, err, errlen) ||
        mock_opt_str(m, "finish_reason", &o->finish_reason, err, errlen) ||
        mock_opt_bool(m, "no_usage", &o->no_usage, err, errlen) ||
        mock_opt_bool(m, "invalid_json", &o->invalid_json, err, errlen) ||
        mock_opt_bool(m, "hang", &o->hang, err, errlen) ||
        mock_opt_bool(m, "close", &o->close, err, errlen))
        return -1;
    if (!mock_status_ok(o->status)) {
        snprintf(err, errlen, "mock.status must be 0, 200 or 300..599");
        return -1;
    }
    if (mock_opt_str(m, "error_message", &o->error_message, err, errlen) < 0) return -1;
    json_t *tc = json_object_get(m, "tool_call");
    if (tc && !json_is_null(tc)) {
        /* "input" is Anthropic's name for the arguments, "args" Gemini's; either works for both */
        json_t *name = json_object_get(tc, "name");
        json_t *args = json_object_get(tc, "input");
        if (!args) args = json_object_get(tc, "args");
        if (!args) args = json_object_get(tc, "arguments");
        if (!json_is_object(tc) || !json_is_string(name) || json_string_length(name) == 0 ||
            (args && !json_is_object(args))) {
            snprintf(err, errlen,
                     "mock.tool_call must be {\"name\": string, \"input\" or \"args\": object}");
            return -1;
        }
        o->tool_name = json_string_value(name);
        o->tool_args = args;
    }
    json_t *ra = json_object_get(m, "retry_after");
    if (ra && mock_retry_after_value(ra, c->resp.retry_after, sizeof c->resp.retry_after) < 0) {
        snprintf(err, errlen, "mock.retry_after must be a non-negative integer or a short string");
        return -1;
    }
    return 0;
}

/* Options armed by POST /_mock/config {"next": ...} go to the next inference request, as if its
 * body had them as "mock": for a client whose bodies the test does not write (an SDK's tool loop,
 * whose first request only must be answered with a tool call). The body's own "mock" wins; either
 * way the armed options are used up. */
static void mock_take_next(json_t *body)
{
    if (!g.next_mock) return;
    if (!json_object_get(body, "mock"))
        json_object_set_new(body, "mock", g.next_mock);
    else
        json_decref(g.next_mock);
    g.next_mock = NULL;
}

/* Inference routes: parse the body, apply faults in a fixed order (close, hang, delay, status,
 * invalid_json), then let the route's handler answer normally. */
static void mock_inference_begin(mock_conn *c)
{
    const mock_route *rt = c->resp.route;
    json_error_t jerr;
    json_t *body = json_loadb(c->req.body.p ? c->req.body.p : "", c->req.body.len, 0, &jerr);
    if (!body || !json_is_object(body)) {
        char msg[300];
        snprintf(msg, sizeof msg, "We could not parse the JSON body of your request. (mock: %s)",
                 body ? "body is not a JSON object" : jerr.text);
        json_decref(body);
        mock_error(c, rt->family, 400, msg, "invalid_json");
        return;
    }
    c->resp.json = body;
    mock_take_next(body);
    char err[160];
    if (mock_opts_parse(c, body, err, sizeof err) < 0) {
        c->resp.retry_after[0] = '\0';
        mock_error(c, rt->family, 400, err, "invalid_mock_option");
        return;
    }
    if (rt->validate && !rt->validate(c)) return;
    if (c->resp.o.close) {
        mock_conn_close(c);
        return;
    }
    if (c->resp.o.hang) {
        /* Keep reading so that the client's disconnect is noticed and the connection freed. */
        c->resp.hanging = true;
        return;
    }
    if (c->resp.o.delay_ms > 0) {
        c->resp.timer_action = MOCK_TIMER_START;
        uv_timer_start(&c->timer, mock_timer_cb, (uint64_t)c->resp.o.delay_ms, 0);
        return;
    }
    mock_inference_start(c);
}

static void mock_inference_start(mock_conn *c)
{
    const mock_opts *o = &c->resp.o;
    const mock_route *rt = c->resp.route;
    if (o->status >= 300) {
        char msg[64];
        snprintf(msg, sizeof msg, "mock error %ld", o->status);
        mock_error(c, rt->family, (int)o->status, o->error_message ? o->error_message : msg,
                   "mock_error");
        return;
    }
    if (o->invalid_json) {
        static const char bad[] = "{\"this is\": not json";
        mock_send(c, 200, "application/json", bad, sizeof bad - 1);
        return;
    }
    rt->fn(c);
}

static void mock_timer_cb(uv_timer_t *t)
{
    mock_conn *c = t->data;
    mock_timer_action a = c->resp.timer_action;
    c->resp.timer_action = MOCK_TIMER_NONE;
    if (c->closing) return;
    if (a == MOCK_TIMER_START)
        mock_inference_start(c);
    else if (a == MOCK_TIMER_PUMP)
        mock_stream_pump(c);
    else if (a == MOCK_TIMER_CLOSE)
        mock_conn_close(c);
}

/* mock.tool_call's arguments, shared by the families (a tool_call without them has "{}"). */
static json_t *mock_tool_args(mock_conn *c)
{
    return c->resp.o.tool_args ? json_deep_copy(c->resp.o.tool_args) : json_object();
}

/* The arguments as compact JSON text (malloc'd, NULL on allocation failure). ASCII-only, so a
 * stream may split it at any byte and each piece is still valid UTF-8 for a JSON string. */
static char *mock_tool_args_text(mock_conn *c)
{
    json_t *args = mock_tool_args(c);
    char *js = args ? json_dumps(args, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(args);
    return js;
}

/* ------------------------------------------------------------------------------------------ */
/* OpenAI family                                                                               */

static const char *mock_openai_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 429:
        return "rate_limit_error";
    default:
        if (status >= 500) return "server_error";
        return status >= 400 ? "invalid_request_error" : "api_error";
    }
}

static json_t *mock_openai_error_body(mock_conn *c, int status, const char *message,
                                      const char *code)
{
    return json_pack("{s:{s:s, s:s, s:n, s:s?}}", "error", "message", message, "type",
                     mock_openai_error_type(status), "param", "code", code);
}

static const mock_family mock_openai = {"openai", mock_openai_error_body, NULL};

/* The request's model is echoed back; a request without one gets "mock-model". */
static json_t *mock_request_model(json_t *body)
{
    json_t *m = json_object_get(body, "model");
    return json_is_string(m) ? json_incref(m) : json_string("mock-model");
}

/* Chat usage. The details objects appear only when their option is set, so a request without
 * them gets exactly the three counts. As OpenAI counts them, prompt_tokens already includes the
 * cached tokens and completion_tokens includes the hidden reasoning tokens (which are not in the
 * visible content). Shape: https://platform.openai.com/docs/api-reference/chat/object (usage). */
static json_t *mock_openai_usage(const mock_resp *r)
{
    const mock_opts *o = &r->o;
    long completion = r->out_tokens + (o->reasoning_tokens > 0 ? o->reasoning_tokens : 0);
    json_t *u = json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)o->prompt_tokens,
                          "completion_tokens", (json_int_t)completion, "total_tokens",
                          (json_int_t)(o->prompt_tokens + completion));
    if (u && o->cached_tokens >= 0)
        json_object_set_new(u, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)o->cached_tokens));
    if (u && o->reasoning_tokens >= 0)
        json_object_set_new(
            u, "completion_tokens_details",
            json_pack("{s:I}", "reasoning_tokens", (json_int_t)o->reasoning_tokens));
    return u;
}

/* Plans the chat answer once, for both answers, as the Anthropic and Gemini personalities do:
 * the text is cut to the request's output limit (max_completion_tokens, or the older
 * max_tokens; the smaller when both are given) when that is below chunks, and the answer then
 * ends with "length" and no tool call, since the model ran out of room before it; otherwise
 * mock.tool_call ends it with "tool_calls", else "stop". Completion tokens count the text
 * tokens sent plus one per streamed argument piece of a tool call.
 * Shapes: https://platform.openai.com/docs/api-reference/chat/object (finish_reason,
 * message.tool_calls) and .../chat/streaming (delta.tool_calls). */
static void mock_openai_plan(mock_conn *c)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    static const char *const limits[] = {"max_completion_tokens", "max_tokens"};
    long max = -1;
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        json_t *v = json_object_get(r->json, limits[i]);
        /* anything but a non-negative integer is no limit: the mock checks no request fields */
        if (!json_is_integer(v) || json_integer_value(v) < 0) continue;
        long n =
            json_integer_value(v) > MOCK_MAX_CHUNKS ? MOCK_MAX_CHUNKS : (long)json_integer_value(v);
        if (max < 0 || n < max) max = n;
    }
    r->truncated = max >= 0 && max < o->chunks;
    r->text_tokens = r->truncated ? max : o->chunks;
    r->nblocks = o->tool_name && !r->truncated ? 1 : 0; /* the tool call, if any */
    r->stop_reason = r->truncated ? "length" : r->nblocks ? "tool_calls" : "stop";
    r->out_tokens = r->text_tokens + (r->nblocks ? MOCK_TOOL_PIECES : 0);
    /* the call id shares the completion's number, so a test can tell which answer it came from */
    snprintf(r->tool_id, sizeof r->tool_id, "call_mock_%llu", g.completion_ids);
}

/* The tool call of a non-streamed message: arguments are a JSON string, as OpenAI sends them. */
static json_t *mock_openai_tool_calls(mock_conn *c)
{
    char *js = mock_tool_args_text(c);
    json_t *tc = json_pack("[{s:s, s:s, s:{s:s, s:s}}]", "id", c->resp.tool_id, "type", "function",
                           "function", "name", c->resp.o.tool_name, "arguments", js ? js : "{}");
    free(js);
    return tc;
}

/* Streamed tool-call delta number step: 0 opens the call (index, id, type, name, empty
 * arguments), 1..MOCK_TOOL_PIECES carry the arguments' text in pieces, each with the index only,
 * as OpenAI streams them; a client must join the pieces by index. */
static json_t *mock_openai_tool_delta(mock_conn *c, long step)
{
    const mock_resp *r = &c->resp;
    if (step == 0)
        return json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", 0, "id",
                         r->tool_id, "type", "function", "function", "name", r->o.tool_name,
                         "arguments", "");
    char *js = mock_tool_args_text(c);
    size_t len = js ? strlen(js) : 0;
    size_t from = len * (size_t)(step - 1) / MOCK_TOOL_PIECES,
           to = len * (size_t)step / MOCK_TOOL_PIECES;
    json_t *d = json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", 0, "function",
                          "arguments", js ? js + from : "", to - from);
    free(js);
    return d;
}

/* A chat.completion.chunk with one choice (delta stolen) or none (for the usage chunk). */
static json_t *mock_openai_chunk(mock_conn *c, json_t *delta, const char *finish)
{
    const mock_resp *r = &c->resp;
    json_t *ev = json_pack("{s:s, s:s, s:I, s:O}", "id", r->id, "object", "chat.completion.chunk",
                           "created", (json_int_t)r->created, "model", r->model);
    if (!ev) {
        json_decref(delta);
        return NULL;
    }
    json_t *choices = json_array();
    if (delta)
        json_array_append_new(choices, json_pack("{s:i, s:o, s:n, s:s?}", "index", 0, "delta",
                                                 delta, "logprobs", "finish_reason", finish));
    json_object_set_new(ev, "choices", choices);
    if (r->include_usage && !r->o.no_usage) json_object_set_new(ev, "usage", json_null());
    return ev;
}

static mock_piece mock_openai_chat_produce(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    if (!r->role_sent) {
        r->role_sent = true;
        mock_sse_json(
            out, mock_openai_chunk(c, json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                                   NULL));
        return o->cut_after == 0 ? MOCK_PIECE_CUT : MOCK_PIECE_MORE;
    }
    if (o->stream_error_after >= 0 && r->tokens_sent >= o->stream_error_after &&
        (o->cut_after < 0 || o->cut_after > o->stream_error_after)) {
        static const char ev[] =
            "data: {\"error\":{\"message\":\"mock stream error\",\"type\":\"server_error\"}}\n\n";
        mock_chunk_frame(out, ev, sizeof ev - 1);
        mock_buf_puts(out, "0\r\n\r\n");
        return MOCK_PIECE_LAST;
    }
    if (r->tokens_sent < r->text_tokens) {
        char tok[32];
        snprintf(tok, sizeof tok, "tok%ld ", r->tokens_sent);
        r->tokens_sent++;
        mock_sse_json(out, mock_openai_chunk(c, json_pack("{s:s}", "content", tok), NULL));
        return o->cut_after >= 0 && r->tokens_sent >= o->cut_after ? MOCK_PIECE_CUT
                                                                   : MOCK_PIECE_MORE;
    }
    if (o->cut_after >= 0)
        return MOCK_PIECE_CUT; /* cut_after > chunks: cut right after the last token */
    if (r->nblocks && r->step <= MOCK_TOOL_PIECES) {
        mock_sse_json(out, mock_openai_chunk(c, mock_openai_tool_delta(c, r->step), NULL));
        r->step++;
        return MOCK_PIECE_MORE;
    }
    if (!r->final_sent) {
        r->final_sent = true;
        mock_sse_json(out, mock_openai_chunk(c, json_object(), r->stop_reason));
        return MOCK_PIECE_MORE;
    }
    if (r->include_usage && !o->no_usage && !r->usage_sent) {
        r->usage_sent = true;
        json_t *ev = mock_openai_chunk(c, NULL, NULL);
        if (ev) json_object_set_new(ev, "usage", mock_openai_usage(r));
        mock_sse_json(out, ev);
        return MOCK_PIECE_MORE;
    }
    static const char done[] = "data: [DONE]\n\n";
    mock_chunk_frame(out, done, sizeof done - 1);
    mock_buf_puts(out, "0\r\n\r\n");
    return MOCK_PIECE_LAST;
}

static void mock_openai_chat(mock_conn *c)
{
    mock_resp *r = &c->resp;
    mock_opts *o = &r->o;
    if (!o->prompt_tokens_set) o->prompt_tokens = 11;
    if (o->cached_tokens > o->prompt_tokens) {
        /* cached tokens are a part of the prompt; a bigger part would make billing tests lie */
        mock_error(c, &mock_openai, 400, "mock.cached_tokens must not exceed the prompt tokens",
                   "invalid_mock_option");
        return;
    }
    r->model = mock_request_model(r->json);
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "chatcmpl-mock-%llu", ++g.completion_ids);
    mock_openai_plan(c);

    if (json_is_true(json_object_get(r->json, "stream"))) {
        json_t *so = json_object_get(r->json, "stream_options");
        r->include_usage = json_is_true(json_object_get(so, "include_usage"));
        mock_stream_begin(c, mock_openai_chat_produce);
        return;
    }

    mock_buf content;
    mock_buf_init(&content, (size_t)MOCK_MAX_CHUNKS * 16);
    for (long i = 0; i < r->text_tokens; i++)
        mock_buf_printf(&content, "tok%ld ", i);
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    /* a tool call without text has content null, as OpenAI sends it; plain answers keep "" */
    json_object_set_new(msg, "content",
                        r->nblocks && content.len == 0
                            ? json_null()
                            : json_stringn(content.p ? content.p : "", content.len));
    if (r->nblocks) json_object_set_new(msg, "tool_calls", mock_openai_tool_calls(c));
    json_t *resp = json_pack("{s:s, s:s, s:I, s:O, s:[{s:i, s:o, s:n, s:s}]}", "id", r->id,
                             "object", "chat.completion", "created", (json_int_t)r->created,
                             "model", r->model, "choices", "index", 0, "message", msg, "logprobs",
                             "finish_reason", r->stop_reason);
    mock_buf_free(&content);
    if (resp && !o->no_usage) json_object_set_new(resp, "usage", mock_openai_usage(r));
    mock_send_json(c, 200, resp);
}

/* Deterministic embedding value for input i, dimension j. */
static double mock_embedding_value(size_t i, size_t j)
{
    return (double)(i + 1) * 0.1 + (double)(j + 1) * 0.01;
}

static void mock_openai_embeddings(mock_conn *c)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    json_t *input = json_object_get(r->json, "input");
    size_t n = 0;
    if (json_is_string(input)) {
        n = 1;
    } else if (json_is_array(input) && json_array_size(input) > 0) {
        /* Strings, one token list (ints), or a list of token lists. */
        size_t strings = 0, ints = 0, lists = 0, idx;
        json_t *v;
        json_array_foreach(input, idx, v)
        {
            strings += json_is_string(v);
            ints += json_is_integer(v);
            lists += json_is_array(v);
        }
        size_t total = json_array_size(input);
        if (ints == total)
            n = 1;
        else if (strings == total || lists == total)
            n = total;
    }
    if (n == 0) {
        mock_error(c, &mock_openai, 400,
                   "'input' must be a non-empty string, array of strings, array of tokens, or "
                   "array of token arrays",
                   "invalid_input");
        return;
    }
    if (n > MOCK_MAX_INPUTS) {
        mock_error(c, &mock_openai, 400, "too many inputs (mock limit 2048)", "invalid_input");
        return;
    }
    json_t *fmt = json_object_get(r->json, "encoding_format");
    bool b64 = false;
    if (fmt && !json_is_null(fmt)) {
        if (json_is_string(fmt) && strcmp(json_string_value(fmt), "base64") == 0)
            b64 = true;
        else if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "float") != 0) {
            mock_error(c, &mock_openai, 400, "encoding_format must be 'float' or 'base64'",
                       "invalid_encoding_format");
            return;
        }
    }
    size_t dims = (size_t)o->dims;
    if (n * dims > MOCK_MAX_VALUES) {
        mock_error(c, &mock_openai, 400, "inputs x dims exceeds the mock limit of 1048576 values",
                   "invalid_input");
        return;
    }
    json_t *data = json_array();
    mock_buf raw;
    mock_buf_init(&raw, dims * 4);
    for (size_t i = 0; i < n; i++) {
        json_t *emb;
        if (b64) {
            raw.len = 0;
            mock_buf_reserve(&raw, dims * 4);
            for (size_t j = 0; j < dims; j++) {
                float f = (float)mock_embedding_value(i, j);
                uint32_t u;
                memcpy(&u, &f, sizeof u);
                unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                       (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
                mock_buf_put(&raw, le, 4);
            }
            mock_buf s;
            mock_buf_init(&s, dims * 8 + 16);
            mock_base64(&s, (const unsigned char *)raw.p, raw.len);
            emb = json_stringn(s.p ? s.p : "", s.len);
            mock_buf_free(&s);
        } else {
            emb = json_array();
            for (size_t j = 0; j < dims; j++)
                json_array_append_new(emb, json_real(mock_embedding_value(i, j)));
        }
        json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", emb));
    }
    mock_buf_free(&raw);
    json_t *model = mock_request_model(r->json);
    json_t *resp = json_pack("{s:s, s:o, s:o}", "object", "list", "data", data, "model", model);
    if (resp && !o->no_usage) {
        long prompt = o->prompt_tokens_set ? o->prompt_tokens : 5 * (long)n;
        json_object_set_new(resp, "usage",
                            json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)prompt,
                                      "total_tokens", (json_int_t)prompt));
    }
    /* Nine significant digits print the doubles above as short decimals (0.11, not
     * 0.11000000000000001) and still round-trip every float32. */
    mock_send_json_flags(c, 200, resp, JSON_REAL_PRECISION(9));
}

static void mock_openai_models(mock_conn *c)
{
    mock_send_json(c, 200,
                   json_pack("{s:s, s:[{s:s, s:s, s:i, s:s}]}", "object", "list", "data", "id",
                             "mock-model", "object", "model", "created", 0, "owned_by", "mock"));
}

/* ------------------------------------------------------------------------------------------ */
/* OpenAI family: the Responses API (POST /v1/responses, and Azure's v1 POST                    */
/* /openai/v1/responses)                                                                        */

/* Shapes follow OpenAI's references: https://platform.openai.com/docs/api-reference/responses
 * (create, the response object, its output items and usage) and .../responses-streaming (the
 * typed events, each with its sequence_number; the stream ends with its terminal event,
 * response.completed or response.incomplete, and has no [DONE]). The answer is chat's: N text
 * tokens "tok0 " ... in one message item, then mock.tool_call as a function_call item; the text
 * is cut to the request's max_output_tokens (status "incomplete", incomplete_details
 * max_output_tokens, no call). Usage always has its details, as OpenAI sends them:
 * input_tokens (mock.prompt_tokens, default 11) includes input_tokens_details.cached_tokens
 * (mock.cached_tokens, default 0), output_tokens (text tokens + 2 for a call + reasoning)
 * includes output_tokens_details.reasoning_tokens (mock.reasoning_tokens, default 0). */

static unsigned long long mock_response_ids;

static void mock_sse_named(mock_buf *out, const char *name, json_t *ev); /* Anthropic's part */

enum {
    MOCK_R_CREATED,
    MOCK_R_IN_PROGRESS,
    MOCK_R_MSG_ADDED,
    MOCK_R_PART_ADDED,
    MOCK_R_TEXT_DELTA,
    MOCK_R_TEXT_DONE,
    MOCK_R_PART_DONE,
    MOCK_R_MSG_DONE,
    MOCK_R_CALL_ADDED,
    MOCK_R_ARGS_DELTA,
    MOCK_R_ARGS_DONE,
    MOCK_R_CALL_DONE,
    MOCK_R_END
};

static void mock_responses_plan(mock_conn *c)
{
    mock_resp *r = &c->resp;
    mock_opts *o = &r->o;
    json_t *v = json_object_get(r->json, "max_output_tokens");
    long max = json_is_integer(v) && json_integer_value(v) >= 0
                   ? (json_integer_value(v) > MOCK_MAX_CHUNKS ? MOCK_MAX_CHUNKS
                                                              : (long)json_integer_value(v))
                   : -1;
    if (!o->prompt_tokens_set) o->prompt_tokens = 11;
    r->truncated = max >= 0 && max < o->chunks;
    r->text_tokens = r->truncated ? max : o->chunks;
    r->nblocks = o->tool_name && !r->truncated ? 1 : 0;
    r->out_tokens = r->text_tokens + (r->nblocks ? MOCK_TOOL_PIECES : 0);
    r->model = mock_request_model(r->json);
    r->created = (long long)time(NULL);
    unsigned long long n = ++mock_response_ids;
    snprintf(r->id, sizeof r->id, "resp_mock_%llu", n);
    snprintf(r->tool_id, sizeof r->tool_id, "call_resp_mock_%llu", n);
}

static json_t *mock_responses_usage(const mock_resp *r)
{
    const mock_opts *o = &r->o;
    long cached = o->cached_tokens > 0 ? o->cached_tokens : 0;
    long reasoning = o->reasoning_tokens > 0 ? o->reasoning_tokens : 0;
    long out = r->out_tokens + reasoning;
    return json_pack("{s:I, s:{s:I}, s:I, s:{s:I}, s:I}", "input_tokens",
                     (json_int_t)o->prompt_tokens, "input_tokens_details", "cached_tokens",
                     (json_int_t)cached, "output_tokens", (json_int_t)out, "output_tokens_details",
                     "reasoning_tokens", (json_int_t)reasoning, "total_tokens",
                     (json_int_t)(o->prompt_tokens + out));
}

/* Output item ids share the response's number, so a test can tell which answer they came from. */
static void mock_responses_item_id(const mock_resp *r, const char *prefix, char *out, size_t n)
{
    snprintf(out, n, "%s_%s", prefix, r->id + 5); /* r->id is "resp_mock_<n>" */
}

/* The message item with text[0..len): done (status completed, or incomplete when cut) or just
 * added (in progress, no content). */
static json_t *mock_responses_message(const mock_resp *r, const char *text, size_t len, bool done)
{
    char id[64];
    mock_responses_item_id(r, "msg", id, sizeof id);
    json_t *content = json_array();
    if (done)
        json_array_append_new(content, json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text",
                                                 text, len, "annotations"));
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "message", "id", id, "status",
                     !done          ? "in_progress"
                     : r->truncated ? "incomplete"
                                    : "completed",
                     "role", "assistant", "content", content);
}

static json_t *mock_responses_call(mock_conn *c, bool done)
{
    const mock_resp *r = &c->resp;
    char id[64];
    mock_responses_item_id(r, "fc", id, sizeof id);
    char *args = done ? mock_tool_args_text(c) : NULL;
    json_t *it = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "function_call", "id", id,
                           "call_id", r->tool_id, "name", r->o.tool_name, "arguments",
                           args ? args : "", "status", done ? "completed" : "in_progress");
    free(args);
    return it;
}

/* The whole output: the message (when there is text), then the call (when there is one). */
static json_t *mock_responses_output(mock_conn *c)
{
    const mock_resp *r = &c->resp;
    json_t *out = json_array();
    if (r->text_tokens > 0) {
        mock_buf text;
        mock_buf_init(&text, (size_t)MOCK_MAX_CHUNKS * 16);
        for (long i = 0; i < r->text_tokens; i++)
            mock_buf_printf(&text, "tok%ld ", i);
        json_array_append_new(out, mock_responses_message(r, text.p ? text.p : "", text.len, true));
        mock_buf_free(&text);
    }
    if (r->nblocks) json_array_append_new(out, mock_responses_call(c, true));
    return out;
}

/* The response object. in_progress: no output, usage null (response.created and in_progress);
 * else the status the plan gives, every item and the usage (left out with no_usage). The
 * request's instructions, max_output_tokens and tools are echoed, as OpenAI's are. */
static json_t *mock_responses_object(mock_conn *c, bool in_progress)
{
    mock_resp *r = &c->resp;
    const char *status = in_progress ? "in_progress" : r->truncated ? "incomplete" : "completed";
    json_t *req = r->json, *ins = json_object_get(req, "instructions");
    json_t *max = json_object_get(req, "max_output_tokens"), *tools = json_object_get(req, "tools");
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:n}", "id", r->id, "object", "response",
                          "created_at", (json_int_t)r->created, "status", status, "error");
    if (!o) return NULL;
    json_object_set_new(o, "incomplete_details",
                        !in_progress && r->truncated
                            ? json_pack("{s:s}", "reason", "max_output_tokens")
                            : json_null());
    json_object_set_new(o, "instructions", json_is_string(ins) ? json_incref(ins) : json_null());
    json_object_set_new(o, "max_output_tokens",
                        json_is_integer(max) ? json_incref(max) : json_null());
    json_object_set(o, "model", r->model);
    json_object_set_new(o, "output", in_progress ? json_array() : mock_responses_output(c));
    json_object_set_new(o, "parallel_tool_calls", json_true());
    json_object_set_new(o, "previous_response_id", json_null());
    json_object_set_new(o, "tools", json_is_array(tools) ? json_incref(tools) : json_array());
    json_object_set_new(o, "usage", in_progress ? json_null() : mock_responses_usage(r));
    if (!in_progress && r->o.no_usage) json_object_del(o, "usage");
    json_object_set_new(o, "metadata", json_object());
    return o;
}

/* One typed event: `event: <type>` and data {"type", "sequence_number", ...fields (stolen)}. */
static void mock_responses_event(mock_conn *c, mock_buf *out, const char *type, json_t *fields)
{
    json_t *ev =
        json_pack("{s:s, s:I}", "type", type, "sequence_number", (json_int_t)c->resp.seq++);
    if (ev && fields) json_object_update(ev, fields);
    json_decref(fields);
    mock_sse_named(out, type, ev);
}

/* {"item_id", "output_index", "content_index"?} of an item event. */
static json_t *mock_responses_ref(const mock_resp *r, const char *prefix, long index, bool part)
{
    char id[64];
    mock_responses_item_id(r, prefix, id, sizeof id);
    json_t *f = json_pack("{s:s, s:I}", "item_id", id, "output_index", (json_int_t)index);
    if (f && part) json_object_set_new(f, "content_index", json_integer(0));
    return f;
}

/* The terminal event (response.completed or response.incomplete), then the end of the body. */
static mock_piece mock_responses_end(mock_conn *c, mock_buf *out)
{
    mock_responses_event(c, out, c->resp.truncated ? "response.incomplete" : "response.completed",
                         json_pack("{s:o}", "response", mock_responses_object(c, false)));
    mock_buf_puts(out, "0\r\n\r\n");
    return MOCK_PIECE_LAST;
}

/* The message item's events; step counts the text deltas. */
static mock_piece mock_responses_text(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    json_t *f;
    switch (r->phase) {
    case MOCK_R_MSG_ADDED:
        mock_responses_event(c, out, "response.output_item.added",
                             json_pack("{s:i, s:o}", "output_index", 0, "item",
                                       mock_responses_message(r, "", 0, false)));
        r->phase = MOCK_R_PART_ADDED;
        return MOCK_PIECE_MORE;
    case MOCK_R_PART_ADDED:
        f = mock_responses_ref(r, "msg", 0, true);
        json_object_set_new(
            f, "part",
            json_pack("{s:s, s:s, s:[]}", "type", "output_text", "text", "", "annotations"));
        mock_responses_event(c, out, "response.content_part.added", f);
        r->phase = MOCK_R_TEXT_DELTA;
        return MOCK_PIECE_MORE;
    case MOCK_R_TEXT_DELTA: {
        char tok[32];
        snprintf(tok, sizeof tok, "tok%ld ", r->tokens_sent++);
        f = mock_responses_ref(r, "msg", 0, true);
        json_object_set_new(f, "delta", json_string(tok));
        json_object_set_new(f, "logprobs", json_array());
        mock_responses_event(c, out, "response.output_text.delta", f);
        if (r->tokens_sent == r->text_tokens) r->phase = MOCK_R_TEXT_DONE;
        if (o->cut_after >= 0 && r->tokens_sent >= o->cut_after) return MOCK_PIECE_CUT;
        return MOCK_PIECE_MORE;
    }
    default: {
        /* text done, part done, item done: the whole text each time */
        json_t *item = mock_responses_message(r, "", 0, true), *part;
        part = json_incref(json_array_get(json_object_get(item, "content"), 0));
        mock_buf text;
        mock_buf_init(&text, (size_t)MOCK_MAX_CHUNKS * 16);
        for (long i = 0; i < r->text_tokens; i++)
            mock_buf_printf(&text, "tok%ld ", i);
        json_t *t = json_stringn(text.p ? text.p : "", text.len);
        mock_buf_free(&text);
        json_object_set(part, "text", t);
        f = mock_responses_ref(r, "msg", 0, r->phase != MOCK_R_MSG_DONE);
        if (r->phase == MOCK_R_TEXT_DONE) {
            json_object_set(f, "text", t);
            json_object_set_new(f, "logprobs", json_array());
            mock_responses_event(c, out, "response.output_text.done", f);
        } else if (r->phase == MOCK_R_PART_DONE) {
            json_object_set(f, "part", part);
            mock_responses_event(c, out, "response.content_part.done", f);
        } else {
            json_decref(f);
            mock_responses_event(c, out, "response.output_item.done",
                                 json_pack("{s:i, s:O}", "output_index", 0, "item", item));
        }
        json_decref(t);
        json_decref(part);
        json_decref(item);
        r->phase = r->phase == MOCK_R_MSG_DONE ? (r->nblocks ? MOCK_R_CALL_ADDED : MOCK_R_END)
                                               : r->phase + 1;
        return MOCK_PIECE_MORE;
    }
    }
}

/* The function_call item's events: added, the arguments in MOCK_TOOL_PIECES deltas, done. */
static mock_piece mock_responses_tool(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    long index = r->text_tokens > 0 ? 1 : 0;
    json_t *f;
    if (r->phase == MOCK_R_CALL_ADDED || r->phase == MOCK_R_CALL_DONE) {
        bool done = r->phase == MOCK_R_CALL_DONE;
        mock_responses_event(c, out,
                             done ? "response.output_item.done" : "response.output_item.added",
                             json_pack("{s:I, s:o}", "output_index", (json_int_t)index, "item",
                                       mock_responses_call(c, done)));
        r->phase = done ? MOCK_R_END : MOCK_R_ARGS_DELTA;
        r->step = 0;
        return MOCK_PIECE_MORE;
    }
    char *js = mock_tool_args_text(c);
    size_t len = js ? strlen(js) : 0;
    f = mock_responses_ref(r, "fc", index, false);
    if (r->phase == MOCK_R_ARGS_DELTA) {
        size_t from = len * (size_t)r->step / MOCK_TOOL_PIECES,
               to = len * (size_t)(r->step + 1) / MOCK_TOOL_PIECES;
        json_object_set_new(f, "delta", json_stringn(js ? js + from : "", to - from));
        mock_responses_event(c, out, "response.function_call_arguments.delta", f);
        if (++r->step == MOCK_TOOL_PIECES) r->phase = MOCK_R_ARGS_DONE;
    } else {
        json_object_set_new(f, "arguments", json_string(js ? js : "{}"));
        mock_responses_event(c, out, "response.function_call_arguments.done", f);
        r->phase = MOCK_R_CALL_DONE;
    }
    free(js);
    return MOCK_PIECE_MORE;
}

/* The stream, one event per call. cut_after N closes the connection after response.created,
 * response.in_progress and N text deltas; stream_error_after N sends an `error` event after N
 * text deltas and ends the body (no terminal event). */
static mock_piece mock_responses_produce(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    if (r->phase <= MOCK_R_IN_PROGRESS) {
        bool created = r->phase == MOCK_R_CREATED;
        mock_responses_event(c, out, created ? "response.created" : "response.in_progress",
                             json_pack("{s:o}", "response", mock_responses_object(c, true)));
        r->phase = created              ? MOCK_R_IN_PROGRESS
                   : r->text_tokens > 0 ? MOCK_R_MSG_ADDED
                   : r->nblocks         ? MOCK_R_CALL_ADDED
                                        : MOCK_R_END;
        return !created && o->cut_after == 0 ? MOCK_PIECE_CUT : MOCK_PIECE_MORE;
    }
    if (o->stream_error_after >= 0 && r->tokens_sent >= o->stream_error_after &&
        (o->cut_after < 0 || o->cut_after > o->stream_error_after)) {
        mock_responses_event(c, out, "error",
                             json_pack("{s:s, s:s, s:n}", "code", "server_error", "message",
                                       "mock stream error", "param"));
        mock_buf_puts(out, "0\r\n\r\n");
        return MOCK_PIECE_LAST;
    }
    if (o->cut_after >= 0 && r->tokens_sent >= r->text_tokens)
        return MOCK_PIECE_CUT; /* cut_after past the text: right after its last delta */
    if (r->phase <= MOCK_R_MSG_DONE) return mock_responses_text(c, out);
    if (r->phase < MOCK_R_END) return mock_responses_tool(c, out);
    return mock_responses_end(c, out);
}

static void mock_openai_responses(mock_conn *c)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    mock_responses_plan(c);
    if (o->cached_tokens > o->prompt_tokens) {
        /* cached tokens are a part of the input; a bigger part would make billing tests lie */
        mock_error(c, &mock_openai, 400, "mock.cached_tokens must not exceed the prompt tokens",
                   "invalid_mock_option");
        return;
    }
    if (json_is_true(json_object_get(r->json, "stream"))) {
        mock_stream_begin(c, mock_responses_produce);
        return;
    }
    mock_send_json(c, 200, mock_responses_object(c, false));
}

/* ------------------------------------------------------------------------------------------ */
/* Anthropic family: the Messages API                                                          */

/* Shapes follow Anthropic's published references:
 *   - request and answer: https://docs.claude.com/en/api/messages
 *   - streaming events:   https://docs.claude.com/en/docs/build-with-claude/streaming
 *   - errors:             https://docs.claude.com/en/api/errors
 *   - extended thinking:  https://docs.claude.com/en/docs/build-with-claude/extended-thinking
 *   - prompt caching:     https://docs.claude.com/en/docs/build-with-claude/prompt-caching
 *   - token counting:     https://docs.claude.com/en/api/messages-count-tokens
 * input_tokens excludes the cached tokens there (the prompt is input + cache read + cache
 * creation), unlike OpenAI's prompt_tokens. */

/* Error types by status, as the errors page lists them; other 4xx are invalid_request_error. */
static const char *mock_anthropic_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static json_t *mock_anthropic_error_body(mock_conn *c, int status, const char *message,
                                         const char *code)
{
    json_t *b = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                          mock_anthropic_error_type(status), "message", message);
    if (b && c->resp.req_id[0]) json_object_set_new(b, "request_id", json_string(c->resp.req_id));
    return b;
}

/* A 429 comes with retry-after (1 s unless the test set one) and the request rate-limit headers,
 * as https://docs.claude.com/en/api/rate-limits describes them. */
static void mock_anthropic_error_headers(mock_conn *c, int status)
{
    if (status != 429) return;
    mock_resp *r = &c->resp;
    if (!r->retry_after[0]) snprintf(r->retry_after, sizeof r->retry_after, "1");
    char *end;
    long secs = strtol(r->retry_after, &end, 10);
    if (*end || secs < 0 || secs > 86400L * 365) secs = 1;
    time_t reset = time(NULL) + secs;
    struct tm tm;
    char when[32];
    gmtime_r(&reset, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    mock_extra_header(c, "anthropic-ratelimit-requests-limit: 50");
    mock_extra_header(c, "anthropic-ratelimit-requests-remaining: 0");
    mock_extra_header(c, "anthropic-ratelimit-requests-reset: %s", when);
}

static const mock_family mock_anthropic = {"anthropic", mock_anthropic_error_body,
                                           mock_anthropic_error_headers};

/* Every answer carries a request-id header (repeated in error bodies as request_id). Anthropic
 * refuses a request without an x-api-key (401) or an anthropic-version header (400) before it
 * looks at the body; so does the mock, so that a gateway that forgets either is caught. */
static bool mock_anthropic_accept(mock_conn *c)
{
    mock_resp *r = &c->resp;
    snprintf(r->req_id, sizeof r->req_id, "req_mock_%llu", ++g.anthropic_req_ids);
    mock_extra_header(c, "request-id: %s", r->req_id);
    if (!mock_req_header(c, "x-api-key")) {
        mock_error(c, &mock_anthropic, 401, "x-api-key header is required", NULL);
        return false;
    }
    if (!mock_req_header(c, "anthropic-version")) {
        mock_error(c, &mock_anthropic, 400, "anthropic-version: header is required", NULL);
        return false;
    }
    return true;
}

static bool mock_anthropic_validate_count(mock_conn *c)
{
    json_t *b = c->resp.json;
    const char *missing = !json_is_string(json_object_get(b, "model"))     ? "model"
                          : !json_is_array(json_object_get(b, "messages")) ? "messages"
                                                                           : NULL;
    if (missing) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s: Field required", missing);
        mock_error(c, &mock_anthropic, 400, msg, NULL);
        return false;
    }
    return true;
}

static bool mock_anthropic_validate_messages(mock_conn *c)
{
    if (!mock_anthropic_validate_count(c)) return false;
    json_t *mt = json_object_get(c->resp.json, "max_tokens");
    if (!json_is_integer(mt)) {
        mock_error(c, &mock_anthropic, 400, "max_tokens: Field required", NULL);
        return false;
    }
    if (json_integer_value(mt) < 1) {
        mock_error(c, &mock_anthropic, 400,
                   "max_tokens: Input should be greater than or equal to 1", NULL);
        return false;
    }
    return true;
}

/* Words (whitespace-separated runs) in s. */
static long mock_count_words(const char *s)
{
    long n = 0;
    bool in = false;
    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

/* The deterministic "token count" of a request: the words of every string that is text (a
 * string, or under a "text", "content" or "thinking" member), with the recursion bounded. */
static long mock_count_text(json_t *v, int depth)
{
    if (depth > 64) return 0;
    long n = 0;
    if (json_is_string(v)) return mock_count_words(json_string_value(v));
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) n += mock_count_text(e, depth + 1);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            if (strcmp(k, "text") == 0 || strcmp(k, "content") == 0 || strcmp(k, "thinking") == 0)
                n += mock_count_text(e, depth + 1);
        }
    }
    return n;
}

/* mock.input_tokens, else the words of "system" and "messages" (at least 1), the same number
 * count_tokens answers for the same body. */
static long mock_anthropic_input_tokens(mock_conn *c)
{
    if (c->resp.o.input_tokens >= 0) return c->resp.o.input_tokens;
    json_t *b = c->resp.json;
    long n = mock_count_text(json_object_get(b, "system"), 0) +
             mock_count_text(json_object_get(b, "messages"), 0);
    return n > 0 ? n : 1;
}

static void mock_anthropic_count_tokens(mock_conn *c)
{
    mock_send_json(c, 200,
                   json_pack("{s:I}", "input_tokens", (json_int_t)mock_anthropic_input_tokens(c)));
}

/* Usage of the answer; output is what message_start reports (1) or the final count. */
static json_t *mock_anthropic_usage(mock_conn *c, long output)
{
    const mock_opts *o = &c->resp.o;
    long created = o->cache_creation_input_tokens > 0 ? o->cache_creation_input_tokens : 0;
    long h1 = o->cache_creation_1h_input_tokens > 0 ? o->cache_creation_1h_input_tokens : 0;
    long read = o->cache_read_input_tokens > 0 ? o->cache_read_input_tokens : 0;
    return json_pack("{s:I, s:I, s:I, s:{s:I, s:I}, s:I}", "input_tokens",
                     (json_int_t)mock_anthropic_input_tokens(c), "cache_creation_input_tokens",
                     (json_int_t)created, "cache_read_input_tokens", (json_int_t)read,
                     "cache_creation", "ephemeral_5m_input_tokens", (json_int_t)(created - h1),
                     "ephemeral_1h_input_tokens", (json_int_t)h1, "output_tokens",
                     (json_int_t)output);
}

#define MOCK_THINKING_TEXT "think0 think1 "
#define MOCK_THINKING_DELTAS 2
/* A fixed stand-in for the opaque signature a thinking block carries. */
#define MOCK_SIGNATURE "bW9jay10aGlua2luZy1zaWduYXR1cmU="

/* Decides the content blocks, the stop reason and the output count once, for both answers:
 * the text is cut to max_tokens (stop_reason max_tokens, no tool block after it); otherwise a
 * tool call wins (tool_use), then a stop sequence, then end_turn. Output tokens count one per
 * delta a stream would carry (text tokens, 2 thinking, 2 tool-input pieces) unless set. */
static void mock_anthropic_plan(mock_conn *c)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    long max = (long)json_integer_value(json_object_get(r->json, "max_tokens"));
    r->truncated = max < o->chunks;
    r->text_tokens = r->truncated ? max : o->chunks;
    bool tool = o->tool_name && !r->truncated;
    r->nblocks = 0;
    if (o->thinking) r->blocks[r->nblocks++] = 'k';
    if (r->text_tokens > 0) r->blocks[r->nblocks++] = 't';
    if (tool) r->blocks[r->nblocks++] = 'u';
    r->stop_reason = r->truncated       ? "max_tokens"
                     : tool             ? "tool_use"
                     : o->stop_sequence ? "stop_sequence"
                                        : "end_turn";
    r->out_tokens =
        r->text_tokens + (o->thinking ? MOCK_THINKING_DELTAS : 0) + (tool ? MOCK_TOOL_PIECES : 0);
    if (o->output_tokens >= 0) r->out_tokens = o->output_tokens;
    snprintf(r->id, sizeof r->id, "msg_mock_%llu", ++g.message_ids);
    snprintf(r->tool_id, sizeof r->tool_id, "toolu_mock_%llu", g.message_ids);
    r->model = mock_request_model(r->json);
}

static json_t *mock_anthropic_stop_sequence(mock_conn *c)
{
    return strcmp(c->resp.stop_reason, "stop_sequence") == 0 ? json_string(c->resp.o.stop_sequence)
                                                             : json_null();
}

/* One named server-sent event as one HTTP chunk: "event: <name>\ndata: <json>\n\n". Steals ev. */
static void mock_sse_named(mock_buf *out, const char *name, json_t *ev)
{
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    mock_buf e;
    mock_buf_init(&e, SIZE_MAX / 2);
    mock_buf_printf(&e, "event: %s\ndata: ", name);
    mock_buf_puts(&e, s ? s : "{}");
    mock_buf_puts(&e, "\n\n");
    free(s);
    mock_chunk_frame(out, e.p, e.len);
    mock_buf_free(&e);
}

enum { MOCK_A_START, MOCK_A_BLOCK_START, MOCK_A_PING, MOCK_A_DELTA, MOCK_A_MSG_DELTA, MOCK_A_STOP };

/* The stream, one event per call: message_start, then for each block content_block_start,
 * its deltas and content_block_stop (a ping right after the first block start, as in the
 * streaming guide's example), then message_delta and message_stop. Faults count text deltas. */
static mock_piece mock_anthropic_produce(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    if (r->phase == MOCK_A_START) {
        json_t *msg = json_pack("{s:s, s:s, s:s, s:O, s:[], s:n, s:n}", "id", r->id, "type",
                                "message", "role", "assistant", "model", r->model, "content",
                                "stop_reason", "stop_sequence");
        if (msg && !o->no_usage) json_object_set_new(msg, "usage", mock_anthropic_usage(c, 1));
        mock_sse_named(out, "message_start",
                       json_pack("{s:s, s:o}", "type", "message_start", "message", msg));
        r->phase = r->nblocks ? MOCK_A_BLOCK_START : MOCK_A_PING;
        return o->cut_after == 0 || (o->cut_after > 0 && r->text_tokens == 0) ? MOCK_PIECE_CUT
                                                                              : MOCK_PIECE_MORE;
    }
    if (o->stream_error_after >= 0 && r->tokens_sent >= o->stream_error_after &&
        (o->cut_after < 0 || o->cut_after > o->stream_error_after)) {
        mock_sse_named(out, "error",
                       json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                                 "overloaded_error", "message", "Overloaded"));
        mock_buf_puts(out, "0\r\n\r\n");
        return MOCK_PIECE_LAST;
    }
    char kind = r->block < r->nblocks ? r->blocks[r->block] : 0;
    switch (r->phase) {
    case MOCK_A_BLOCK_START: {
        json_t *cb = kind == 'k' ? json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "",
                                             "signature", "")
                     : kind == 't' ? json_pack("{s:s, s:s}", "type", "text", "text", "")
                                   : json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id",
                                               r->tool_id, "name", o->tool_name, "input");
        mock_sse_named(out, "content_block_start",
                       json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index",
                                 r->block, "content_block", cb));
        r->phase = r->ping_sent ? MOCK_A_DELTA : MOCK_A_PING;
        r->step = 0;
        return MOCK_PIECE_MORE;
    }
    case MOCK_A_PING:
        r->ping_sent = true;
        mock_sse_named(out, "ping", json_pack("{s:s}", "type", "ping"));
        r->phase = r->nblocks ? MOCK_A_DELTA : MOCK_A_MSG_DELTA;
        return MOCK_PIECE_MORE;
    case MOCK_A_DELTA: {
        long count = kind == 'k'   ? MOCK_THINKING_DELTAS + 1
                     : kind == 't' ? r->text_tokens
                                   : MOCK_TOOL_PIECES;
        if (r->step >= count) {
            mock_sse_named(
                out, "content_block_stop",
                json_pack("{s:s, s:i}", "type", "content_block_stop", "index", r->block));
            r->block++;
            r->phase = r->block < r->nblocks ? MOCK_A_BLOCK_START : MOCK_A_MSG_DELTA;
            return MOCK_PIECE_MORE;
        }
        json_t *d;
        char tok[32];
        if (kind == 'k' && r->step < MOCK_THINKING_DELTAS) {
            snprintf(tok, sizeof tok, "think%ld ", r->step);
            d = json_pack("{s:s, s:s}", "type", "thinking_delta", "thinking", tok);
        } else if (kind == 'k') {
            d = json_pack("{s:s, s:s}", "type", "signature_delta", "signature", MOCK_SIGNATURE);
        } else if (kind == 't') {
            snprintf(tok, sizeof tok, "tok%ld ", r->step);
            d = json_pack("{s:s, s:s}", "type", "text_delta", "text", tok);
        } else {
            /* the input's JSON text in MOCK_TOOL_PIECES pieces; ASCII, so any split is valid */
            char *js = mock_tool_args_text(c);
            size_t len = js ? strlen(js) : 0, half = len / 2;
            d = r->step == 0 ? json_pack("{s:s, s:s%}", "type", "input_json_delta", "partial_json",
                                         js ? js : "", half)
                             : json_pack("{s:s, s:s}", "type", "input_json_delta", "partial_json",
                                         js ? js + half : "");
            free(js);
        }
        r->step++;
        mock_sse_named(out, "content_block_delta",
                       json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index",
                                 r->block, "delta", d));
        if (kind == 't') {
            r->tokens_sent++;
            if (o->cut_after >= 0 &&
                (r->tokens_sent >= o->cut_after || r->tokens_sent == r->text_tokens))
                return MOCK_PIECE_CUT;
        }
        return MOCK_PIECE_MORE;
    }
    case MOCK_A_MSG_DELTA: {
        json_t *ev =
            json_pack("{s:s, s:{s:s, s:o}}", "type", "message_delta", "delta", "stop_reason",
                      r->stop_reason, "stop_sequence", mock_anthropic_stop_sequence(c));
        if (ev && !o->no_usage)
            json_object_set_new(ev, "usage",
                                json_pack("{s:I}", "output_tokens", (json_int_t)r->out_tokens));
        mock_sse_named(out, "message_delta", ev);
        r->phase = MOCK_A_STOP;
        return MOCK_PIECE_MORE;
    }
    default:
        mock_sse_named(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
        mock_buf_puts(out, "0\r\n\r\n");
        return MOCK_PIECE_LAST;
    }
}

static void mock_anthropic_messages(mock_conn *c)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    if (o->cache_creation_1h_input_tokens >
        (o->cache_creation_input_tokens > 0 ? o->cache_creation_input_tokens : 0)) {
        /* the 1-hour part is a part of the cache writes; more would make billing tests lie */
        mock_error(c, &mock_anthropic, 400,
                   "mock.cache_creation_1h_input_tokens must not exceed "
                   "mock.cache_creation_input_tokens",
                   NULL);
        return;
    }
    mock_anthropic_plan(c);
    if (json_is_true(json_object_get(r->json, "stream"))) {
        mock_stream_begin(c, mock_anthropic_produce);
        return;
    }
    json_t *content = json_array();
    for (int i = 0; i < r->nblocks; i++) {
        if (r->blocks[i] == 'k') {
            json_array_append_new(content,
                                  json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking",
                                            MOCK_THINKING_TEXT, "signature", MOCK_SIGNATURE));
        } else if (r->blocks[i] == 't') {
            mock_buf text;
            mock_buf_init(&text, (size_t)MOCK_MAX_CHUNKS * 16);
            for (long t = 0; t < r->text_tokens; t++)
                mock_buf_printf(&text, "tok%ld ", t);
            json_array_append_new(content, json_pack("{s:s, s:s%}", "type", "text", "text",
                                                     text.p ? text.p : "", text.len));
            mock_buf_free(&text);
        } else {
            json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use",
                                                     "id", r->tool_id, "name", o->tool_name,
                                                     "input", mock_tool_args(c)));
        }
    }
    json_t *resp =
        json_pack("{s:s, s:s, s:s, s:O, s:o, s:s, s:o}", "id", r->id, "type", "message", "role",
                  "assistant", "model", r->model, "content", content, "stop_reason", r->stop_reason,
                  "stop_sequence", mock_anthropic_stop_sequence(c));
    if (resp && !o->no_usage)
        json_object_set_new(resp, "usage", mock_anthropic_usage(c, r->out_tokens));
    mock_send_json(c, 200, resp);
}

/* ------------------------------------------------------------------------------------------ */
/* Gemini family: Google's Generative Language API (v1beta)                                    */

/* Shapes follow Google's published references:
 *   - generateContent, streamGenerateContent, GenerateContentResponse, UsageMetadata:
 *     https://ai.google.dev/api/generate-content
 *   - batchEmbedContents, embedContent: https://ai.google.dev/api/embeddings
 *   - API key in the x-goog-api-key header: https://ai.google.dev/gemini-api/docs/api-key
 *   - error statuses: https://ai.google.dev/gemini-api/docs/troubleshooting
 * promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount is not part of
 * candidatesTokenCount; totalTokenCount is prompt + candidates + tool-use prompt + thoughts. */

enum { MOCK_G_GENERATE = 1, MOCK_G_STREAM, MOCK_G_BATCH_EMBED, MOCK_G_EMBED };

/* google.rpc.Code names for the HTTP statuses they map to. */
static const char *mock_gemini_status_name(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 500:
        return "INTERNAL";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "UNKNOWN" : "FAILED_PRECONDITION";
    }
}

static json_t *mock_gemini_error_body(mock_conn *c, int status, const char *message,
                                      const char *code)
{
    return json_pack("{s:{s:i, s:s, s:s}}", "error", "code", status, "message", message, "status",
                     mock_gemini_status_name(status));
}

static const mock_family mock_gemini = {"gemini", mock_gemini_error_body, NULL};

/* Splits /v1beta/models/{model}:{method} (the last ':' separates them) and requires the
 * x-goog-api-key header, as Google does before reading the body: no key is 403
 * PERMISSION_DENIED. Only the header is accepted (not ?key=), so a gateway that puts the key
 * in the URL, where access logs keep it, is caught. */
static bool mock_gemini_accept(mock_conn *c)
{
    static const char prefix[] = "/v1beta/models/";
    const char *url = c->req.url.p + sizeof prefix - 1; /* the route matched this prefix */
    const char *qm = strchr(url, '?');
    size_t len = qm ? (size_t)(qm - url) : strlen(url);
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (url[i] == ':') colon = url + i;
    static const struct {
        const char *name;
        int method;
    } methods[] = {{"generateContent", MOCK_G_GENERATE},
                   {"streamGenerateContent", MOCK_G_STREAM},
                   {"batchEmbedContents", MOCK_G_BATCH_EMBED},
                   {"embedContent", MOCK_G_EMBED}};
    int method = 0;
    if (colon && colon > url && !memchr(url, '/', (size_t)(colon - url))) {
        size_t ml = len - (size_t)(colon + 1 - url);
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (strlen(methods[i].name) == ml && memcmp(colon + 1, methods[i].name, ml) == 0)
                method = methods[i].method;
    }
    if (!method) {
        char msg[200];
        snprintf(msg, sizeof msg, "Method not found: %.*s", (int)(len > 120 ? 120 : len), url);
        mock_error(c, &mock_gemini, 404, msg, NULL);
        return false;
    }
    if (!mock_req_header(c, "x-goog-api-key")) {
        mock_error(c, &mock_gemini, 403,
                   "Method doesn't allow unregistered callers (callers without established "
                   "identity). Please use API Key or other form of API consumer identity to call "
                   "this API.",
                   NULL);
        return false;
    }
    c->resp.gemini_method = method;
    c->resp.model = mock_json_bytes(url, (size_t)(colon - url), NULL);
    return true;
}

static bool mock_gemini_validate(mock_conn *c)
{
    json_t *b = c->resp.json;
    const char *msg = NULL;
    switch (c->resp.gemini_method) {
    case MOCK_G_GENERATE:
    case MOCK_G_STREAM: {
        json_t *ct = json_object_get(b, "contents");
        if (!json_is_array(ct) || json_array_size(ct) == 0)
            msg = "* GenerateContentRequest.contents: contents is not specified";
        break;
    }
    case MOCK_G_BATCH_EMBED: {
        json_t *rq = json_object_get(b, "requests");
        if (!json_is_array(rq) || json_array_size(rq) == 0)
            msg = "* BatchEmbedContentsRequest.requests: requests is not specified";
        else if (json_array_size(rq) > MOCK_MAX_INPUTS)
            msg = "* BatchEmbedContentsRequest.requests: at most 2048 requests (mock limit)";
        break;
    }
    default:
        if (!json_is_object(json_object_get(b, "content")))
            msg = "* EmbedContentRequest.content: content is not specified";
    }
    if (msg) {
        mock_error(c, &mock_gemini, 400, msg, NULL);
        return false;
    }
    return true;
}

/* Plans the answer once: text tokens (cut to generationConfig.maxOutputTokens, finishReason
 * MAX_TOKENS, no function call after the cut), the parts in order ('k' thought, 't' one per
 * text token, 'u' functionCall), and the finish reason (mock.finish_reason wins). */
static void mock_gemini_plan(mock_conn *c)
{
    mock_resp *r = &c->resp;
    mock_opts *o = &r->o;
    if (!o->prompt_tokens_set) o->prompt_tokens = 11;
    json_t *max = json_object_get(json_object_get(r->json, "generationConfig"), "maxOutputTokens");
    r->truncated = json_is_integer(max) && json_integer_value(max) < o->chunks;
    r->text_tokens = r->truncated ? (long)json_integer_value(max) : o->chunks;
    if (r->text_tokens < 0) r->text_tokens = 0;
    r->stop_reason = o->finish_reason ? o->finish_reason : r->truncated ? "MAX_TOKENS" : "STOP";
    r->out_tokens = r->text_tokens + (o->tool_name && !r->truncated ? MOCK_TOOL_PIECES : 0);
    if (o->output_tokens >= 0) r->out_tokens = o->output_tokens;
    snprintf(r->id, sizeof r->id, "mock-resp-%llu", ++g.message_ids);
}

/* Number of parts of the answer: the stream sends one per chunk. */
static long mock_gemini_nparts(const mock_resp *r)
{
    return (r->o.thinking ? 1 : 0) + r->text_tokens + (r->o.tool_name && !r->truncated ? 1 : 0);
}

/* Part i of the answer. */
static json_t *mock_gemini_part(mock_conn *c, long i)
{
    const mock_resp *r = &c->resp;
    if (r->o.thinking) {
        if (i == 0) return json_pack("{s:s, s:b}", "text", MOCK_THINKING_TEXT, "thought", 1);
        i--;
    }
    if (i < r->text_tokens) {
        char tok[32];
        snprintf(tok, sizeof tok, "tok%ld ", i);
        return json_pack("{s:s}", "text", tok);
    }
    return json_pack("{s:{s:s, s:o}}", "functionCall", "name", r->o.tool_name, "args",
                     mock_tool_args(c));
}

/* usageMetadata; candidates is the count so far (a stream's running total) or the final one,
 * and the optional counts appear only in the final one, only when set. */
static json_t *mock_gemini_usage(mock_conn *c, long candidates, bool final)
{
    const mock_opts *o = &c->resp.o;
    long thoughts = o->thoughts_tokens >= 0 ? o->thoughts_tokens
                    : o->thinking           ? MOCK_THINKING_DELTAS
                                            : -1;
    long total = o->prompt_tokens + candidates;
    json_t *u = json_pack("{s:I, s:I}", "promptTokenCount", (json_int_t)o->prompt_tokens,
                          "candidatesTokenCount", (json_int_t)candidates);
    if (!u || !final) {
        if (u) json_object_set_new(u, "totalTokenCount", json_integer(total));
        return u;
    }
    if (o->cached_tokens >= 0)
        json_object_set_new(u, "cachedContentTokenCount", json_integer(o->cached_tokens));
    if (thoughts >= 0) {
        json_object_set_new(u, "thoughtsTokenCount", json_integer(thoughts));
        total += thoughts;
    }
    if (o->tool_use_prompt_tokens >= 0) {
        json_object_set_new(u, "toolUsePromptTokenCount", json_integer(o->tool_use_prompt_tokens));
        total += o->tool_use_prompt_tokens;
    }
    json_object_set_new(u, "totalTokenCount", json_integer(total));
    return u;
}

/* A GenerateContentResponse with the given parts (stolen); finish is NULL on non-final chunks. */
static json_t *mock_gemini_response(mock_conn *c, json_t *parts, const char *finish, json_t *usage)
{
    mock_resp *r = &c->resp;
    json_t *cand =
        json_pack("{s:{s:s, s:o}, s:i}", "content", "role", "model", "parts", parts, "index", 0);
    if (cand && finish) json_object_set_new(cand, "finishReason", json_string(finish));
    json_t *resp = json_pack("{s:[o]}", "candidates", cand);
    if (!resp) {
        json_decref(usage);
        return NULL;
    }
    if (usage && !r->o.no_usage)
        json_object_set_new(resp, "usageMetadata", usage);
    else
        json_decref(usage);
    json_object_set(resp, "modelVersion", r->model);
    json_object_set_new(resp, "responseId", json_string(r->id));
    return resp;
}

/* One stream element: an SSE event "data: <json>\r\n\r\n" (with alt=sse; Google ends events with
 * CRLF pairs) or an element of the streamed JSON array (without it). Steals ev. */
static void mock_gemini_emit(mock_conn *c, mock_buf *out, json_t *ev, bool last)
{
    mock_resp *r = &c->resp;
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    mock_buf e;
    mock_buf_init(&e, SIZE_MAX / 2);
    if (r->array_framing) {
        mock_buf_puts(&e, r->array_open ? ",\r\n" : "[");
        r->array_open = true;
        mock_buf_puts(&e, s ? s : "{}");
        if (last) mock_buf_puts(&e, "]");
    } else {
        mock_buf_puts(&e, "data: ");
        mock_buf_puts(&e, s ? s : "{}");
        mock_buf_puts(&e, "\r\n\r\n");
    }
    free(s);
    mock_chunk_frame(out, e.p, e.len);
    mock_buf_free(&e);
    if (last) mock_buf_puts(out, "0\r\n\r\n");
}

/* One chunk per part; the last carries finishReason and the final usageMetadata, the others a
 * running usage. Faults count text chunks and apply before a text or functionCall chunk. */
static mock_piece mock_gemini_produce(mock_conn *c, mock_buf *out)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    long n = mock_gemini_nparts(r), i = r->step;
    bool thought = o->thinking && i == 0;
    if (!thought) {
        if (o->cut_after >= 0 &&
            (r->tokens_sent >= o->cut_after || r->tokens_sent == r->text_tokens))
            return MOCK_PIECE_CUT;
        if (o->stream_error_after >= 0 && r->tokens_sent >= o->stream_error_after) {
            mock_gemini_emit(c, out,
                             mock_gemini_error_body(c, 503,
                                                    "The model is overloaded. Please try again "
                                                    "later.",
                                                    NULL),
                             true);
            return MOCK_PIECE_LAST;
        }
    }
    bool last = i + 1 >= n;
    json_t *parts = json_array();
    if (n > 0) json_array_append_new(parts, mock_gemini_part(c, i));
    bool text = !thought && r->tokens_sent < r->text_tokens;
    if (text) r->tokens_sent++;
    r->step++;
    long sofar = last ? r->out_tokens : r->tokens_sent;
    mock_gemini_emit(c, out,
                     mock_gemini_response(c, parts, last ? r->stop_reason : NULL,
                                          o->no_usage ? NULL : mock_gemini_usage(c, sofar, last)),
                     last && o->cut_after < 0);
    /* cut_after at or past the text: the last chunk goes out, but the stream never ends */
    if (last && o->cut_after >= 0) return MOCK_PIECE_CUT;
    return last ? MOCK_PIECE_LAST : MOCK_PIECE_MORE;
}

static void mock_gemini_generate(mock_conn *c, bool stream)
{
    mock_resp *r = &c->resp;
    const mock_opts *o = &r->o;
    mock_gemini_plan(c);
    if (o->cached_tokens > o->prompt_tokens) {
        mock_error(c, &mock_gemini, 400, "mock.cached_tokens must not exceed the prompt tokens",
                   NULL);
        return;
    }
    if (stream) {
        /* Without alt=sse Google streams one JSON array of the same responses. */
        char alt[16];
        r->array_framing = !(mock_query_param(c, "alt", alt, sizeof alt) && !strcmp(alt, "sse"));
        r->stream_ctype = r->array_framing ? "application/json" : "text/event-stream";
        mock_stream_begin(c, mock_gemini_produce);
        return;
    }
    json_t *parts = json_array();
    long n = mock_gemini_nparts(r);
    for (long i = 0; i < n; i++)
        json_array_append_new(parts, mock_gemini_part(c, i));
    mock_send_json(
        c, 200,
        mock_gemini_response(c, parts, r->stop_reason,
                             o->no_usage ? NULL : mock_gemini_usage(c, r->out_tokens, true)));
}

/* {"values":[...]} for input i, the same numbers as OpenAI's embeddings. */
static json_t *mock_gemini_values(size_t i, size_t dims)
{
    json_t *v = json_array();
    for (size_t j = 0; j < dims; j++)
        json_array_append_new(v, json_real(mock_embedding_value(i, j)));
    return json_pack("{s:o}", "values", v);
}

static void mock_gemini_embed(mock_conn *c, bool batch)
{
    mock_resp *r = &c->resp;
    size_t dims = (size_t)r->o.dims;
    size_t n = batch ? json_array_size(json_object_get(r->json, "requests")) : 1;
    if (n * dims > MOCK_MAX_VALUES) {
        mock_error(c, &mock_gemini, 400, "requests x dims exceeds the mock limit of 1048576 values",
                   NULL);
        return;
    }
    json_t *resp;
    if (batch) {
        json_t *embs = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(embs, mock_gemini_values(i, dims));
        resp = json_pack("{s:o}", "embeddings", embs);
    } else {
        resp = json_pack("{s:o}", "embedding", mock_gemini_values(0, dims));
    }
    mock_send_json_flags(c, 200, resp, JSON_REAL_PRECISION(9));
}

static void mock_gemini_dispatch(mock_conn *c)
{
    switch (c->resp.gemini_method) {
    case MOCK_G_GENERATE:
        mock_gemini_generate(c, false);
        break;
    case MOCK_G_STREAM:
        mock_gemini_generate(c, true);
        break;
    case MOCK_G_BATCH_EMBED:
        mock_gemini_embed(c, true);
        break;
    default:
        mock_gemini_embed(c, false);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Azure OpenAI                                                                                */

/* Azure serves OpenAI's wire format under /openai/deployments/{deployment}/..., authenticates
 * with an api-key header, and requires an api-version query parameter. The mock answers exactly
 * as the OpenAI routes do (options, faults, streaming); only a request Azure would not route gets
 * Azure's own 404 body, {"error":{"code":"404","message":"Resource not found"}}, which is what
 * Azure OpenAI returns for a missing or unknown api-version or path (see the REST reference,
 * https://learn.microsoft.com/en-us/azure/ai-services/openai/reference). The recording keeps the
 * api-key header and the query for tests to check. */

static bool mock_azure_accept(mock_conn *c)
{
    static const char prefix[] = "/openai/deployments/";
    /* the route matched this prefix, so the URL holds it */
    const char *dep = c->req.url.p + sizeof prefix - 1;
    const char *qm = strchr(dep, '?');
    size_t rest = qm ? (size_t)(qm - dep) : strlen(dep);
    const char *slash = memchr(dep, '/', rest);
    char ver[64];
    if (slash && slash > dep && mock_query_param(c, "api-version", ver, sizeof ver)) {
        size_t tail = rest - (size_t)(slash + 1 - dep);
        static const char chat[] = "chat/completions", emb[] = "embeddings";
        if (tail == sizeof chat - 1 && memcmp(slash + 1, chat, tail) == 0) {
            c->resp.azure_fn = mock_openai_chat;
            return true;
        }
        if (tail == sizeof emb - 1 && memcmp(slash + 1, emb, tail) == 0) {
            c->resp.azure_fn = mock_openai_embeddings;
            return true;
        }
    }
    mock_send_json(
        c, 404,
        json_pack("{s:{s:s, s:s}}", "error", "code", "404", "message", "Resource not found"));
    return false;
}

static void mock_azure_dispatch(mock_conn *c)
{
    c->resp.azure_fn(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Control endpoints (/_mock/...)                                                              */

static json_t *mock_config_json(void)
{
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:I}", "fail_status", (json_int_t)g.def.fail_status, "delay_ms",
                  (json_int_t)g.def.delay_ms, "chunks", (json_int_t)g.def.chunks, "chunk_delay_ms",
                  (json_int_t)g.def.chunk_delay_ms);
    if (!o) return NULL;
    char *end;
    long long secs = strtoll(g.def.retry_after, &end, 10);
    if (!g.def.retry_after[0])
        json_object_set_new(o, "retry_after", json_null());
    else if (*end == '\0')
        json_object_set_new(o, "retry_after", json_integer(secs));
    else
        json_object_set_new(o, "retry_after", json_string(g.def.retry_after));
    if (g.next_mock) json_object_set(o, "next", g.next_mock);
    return o;
}

static void mock_ctl_config_get(mock_conn *c)
{
    mock_send_json(c, 200, mock_config_json());
}

/* A config field that is an integer in 0..max (null or absent: unchanged): into *out, or *err. */
static void mock_config_long(json_t *body, const char *name, long max, long *out, const char **err)
{
    static char msg[96];
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return;
    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= max) {
        *out = (long)json_integer_value(v);
        return;
    }
    snprintf(msg, sizeof msg, "%s must be an integer in 0..%ld", name, max);
    *err = msg;
}

/* Validates everything before changing anything, so a bad request leaves the config intact. */
static void mock_ctl_config_set(mock_conn *c)
{
    json_error_t jerr;
    json_t *body = json_loadb(c->req.body.p ? c->req.body.p : "", c->req.body.len, 0, &jerr);
    mock_defaults d = g.def;
    json_t *next = NULL;
    const char *err = NULL;
    if (!json_is_object(body)) {
        err = "body must be a JSON object";
    } else {
        json_t *fs = json_object_get(body, "fail_status");
        json_t *ra = json_object_get(body, "retry_after");
        next = json_object_get(body, "next");
        if (next && !json_is_object(next) && !json_is_null(next))
            err = "next must be an object (the next inference request's mock options) or null";
        if (fs && !json_is_null(fs)) {
            if (!json_is_integer(fs) || !mock_status_ok((long)json_integer_value(fs)))
                err = "fail_status must be 0, 200 or 300..599";
            else
                d.fail_status = (long)json_integer_value(fs);
        }
        mock_config_long(body, "delay_ms", MOCK_MAX_DELAY_MS, &d.delay_ms, &err);
        mock_config_long(body, "chunks", MOCK_MAX_CHUNKS, &d.chunks, &err);
        mock_config_long(body, "chunk_delay_ms", MOCK_MAX_DELAY_MS, &d.chunk_delay_ms, &err);
        if (ra) {
            if (json_is_integer(ra) && json_integer_value(ra) == 0)
                d.retry_after[0] = '\0';
            else if (mock_retry_after_value(ra, d.retry_after, sizeof d.retry_after) < 0)
                err = "retry_after must be a non-negative integer, a short string or null";
        }
    }
    if (err) {
        json_decref(body);
        mock_error(c, &mock_openai, 400, err, "invalid_config");
        return;
    }
    if (next) {
        json_decref(g.next_mock);
        g.next_mock = json_is_object(next) ? json_incref(next) : NULL;
    }
    json_decref(body);
    if (d.fail_status == 200) d.fail_status = 0;
    g.def = d;
    mock_send_json(c, 200, mock_config_json());
}

static void mock_ctl_requests_get(mock_conn *c)
{
    mock_send_json(c, 200, mock_rec_json());
}

static void mock_ctl_requests_clear(mock_conn *c)
{
    mock_rec_clear();
    mock_send_json(c, 200, json_pack("{s:b}", "cleared", 1));
}

static void mock_ctl_stats(mock_conn *c)
{
    mock_send_json(c, 200,
                   json_pack("{s:I, s:I, s:I}", "requests", (json_int_t)g.requests, "connections",
                             (json_int_t)g.connections, "recorded", (json_int_t)g.rec_count));
}

/* ------------------------------------------------------------------------------------------ */
/* Route table                                                                                 */

/* Designated initialisers keep the rows short and -Wmissing-field-initializers quiet. */
#define MOCK_ROUTE(m, p, pre, inf, fam, f, acc, val)                                               \
    {                                                                                              \
        .method = m, .path = p, .prefix = pre, .inference = inf, .family = fam, .fn = f,           \
        .accept = acc, .validate = val                                                             \
    }

static const mock_route mock_routes[] = {
    MOCK_ROUTE("POST", "/v1/chat/completions", false, true, &mock_openai, mock_openai_chat, NULL,
               NULL),
    MOCK_ROUTE("POST", "/v1/embeddings", false, true, &mock_openai, mock_openai_embeddings, NULL,
               NULL),
    MOCK_ROUTE("GET", "/v1/models", false, false, &mock_openai, mock_openai_models, NULL, NULL),
    MOCK_ROUTE("POST", "/v1/responses", false, true, &mock_openai, mock_openai_responses, NULL,
               NULL),
    /* Azure OpenAI's v1 API: the deployment is the body's model, no api-version */
    MOCK_ROUTE("POST", "/openai/v1/responses", false, true, &mock_openai, mock_openai_responses,
               NULL, NULL),
    MOCK_ROUTE("POST", "/openai/deployments/", true, true, &mock_openai, mock_azure_dispatch,
               mock_azure_accept, NULL),
    MOCK_ROUTE("POST", "/v1/messages", false, true, &mock_anthropic, mock_anthropic_messages,
               mock_anthropic_accept, mock_anthropic_validate_messages),
    MOCK_ROUTE("POST", "/v1/messages/count_tokens", false, true, &mock_anthropic,
               mock_anthropic_count_tokens, mock_anthropic_accept, mock_anthropic_validate_count),
    MOCK_ROUTE("POST", "/v1beta/models/", true, true, &mock_gemini, mock_gemini_dispatch,
               mock_gemini_accept, mock_gemini_validate),
    MOCK_ROUTE("GET", "/_mock/config", false, false, &mock_openai, mock_ctl_config_get, NULL, NULL),
    MOCK_ROUTE("POST", "/_mock/config", false, false, &mock_openai, mock_ctl_config_set, NULL,
               NULL),
    MOCK_ROUTE("GET", "/_mock/requests", false, false, &mock_openai, mock_ctl_requests_get, NULL,
               NULL),
    MOCK_ROUTE("DELETE", "/_mock/requests", false, false, &mock_openai, mock_ctl_requests_clear,
               NULL, NULL),
    MOCK_ROUTE("GET", "/_mock/stats", false, false, &mock_openai, mock_ctl_stats, NULL, NULL),
};

static bool mock_route_path_matches(const mock_route *rt, const char *path, size_t len)
{
    size_t rl = strlen(rt->path);
    if (rt->prefix) return len >= rl && memcmp(path, rt->path, rl) == 0;
    return len == rl && memcmp(path, rt->path, rl) == 0;
}

/* Called with a complete request parsed and the parser paused. */
static void mock_dispatch(mock_conn *c)
{
    mock_req *q = &c->req;
    const char *method = llhttp_method_name((llhttp_method_t)q->method);
    const char *url = q->url.p ? q->url.p : "";
    const char *qm = strchr(url, '?');
    size_t path_len = qm ? (size_t)(qm - url) : strlen(url);
    bool control = path_len >= 7 && memcmp(url, "/_mock/", 7) == 0;

    if (!control) {
        g.requests++;
        mock_rec_add(method, url, path_len, qm ? qm + 1 : "", q->headers, q->body.p, q->body.len);
    }
    if (g.verbose)
        fprintf(stderr, "mock_upstream: %s %.*s (%zu body bytes)\n", method, (int)path_len, url,
                q->body.len);

    const mock_route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof mock_routes / sizeof mock_routes[0]; i++) {
        const mock_route *rt = &mock_routes[i];
        if (!mock_route_path_matches(rt, url, path_len)) continue;
        path_known = true;
        if (strcmp(rt->method, method) == 0) {
            found = rt;
            break;
        }
    }
    if (!found) {
        char msg[160];
        snprintf(msg, sizeof msg, "Invalid URL (%s %.*s)", method,
                 (int)(path_len > 100 ? 100 : path_len), url);
        mock_error(c, &mock_openai, path_known ? 405 : 404, msg,
                   path_known ? "method_not_allowed" : "unknown_url");
        return;
    }
    c->resp.route = found;
    if (found->accept && !found->accept(c)) return;
    if (found->inference)
        mock_inference_begin(c);
    else
        found->fn(c);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP parsing                                                                                */

static mock_conn *mock_of(llhttp_t *p)
{
    return p->data;
}

static int mock_refuse(mock_conn *c, int status, const char *msg)
{
    c->parse_status = status;
    c->parse_msg = msg;
    return -1;
}

static int mock_on_message_begin(llhttp_t *p)
{
    mock_conn *c = mock_of(p);
    mock_req_reset(&c->req);
    c->req.headers = json_object();
    return c->req.headers ? 0 : mock_refuse(c, 500, "out of memory");
}

static int mock_on_url(llhttp_t *p, const char *at, size_t len)
{
    mock_conn *c = mock_of(p);
    return mock_buf_put(&c->req.url, at, len) < 0 ? mock_refuse(c, 414, "URL too long") : 0;
}

static int mock_header_bytes(mock_conn *c, size_t len)
{
    c->req.header_bytes += len;
    return c->req.header_bytes > MOCK_MAX_HEADER_BYTES ? -1 : 0;
}

static int mock_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    mock_conn *c = mock_of(p);
    if (mock_header_bytes(c, len) < 0 || mock_buf_put(&c->req.hfield, at, len) < 0)
        return mock_refuse(c, 431, "request headers too large");
    return 0;
}

static int mock_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    mock_conn *c = mock_of(p);
    if (mock_header_bytes(c, len) < 0 || mock_buf_put(&c->req.hvalue, at, len) < 0)
        return mock_refuse(c, 431, "request headers too large");
    return 0;
}

/* Names are lowercased; repeated headers are joined with ", " as HTTP allows. */
static int mock_on_header_value_complete(llhttp_t *p)
{
    mock_conn *c = mock_of(p);
    mock_req *q = &c->req;
    if (++q->nheaders > MOCK_MAX_HEADERS) return mock_refuse(c, 431, "too many request headers");
    if (mock_buf_put(&q->hfield, "", 0) < 0 || mock_buf_put(&q->hvalue, "", 0) < 0)
        return mock_refuse(c, 431, "request headers too large");
    for (char *s = q->hfield.p; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
    json_t *old = json_object_get(q->headers, q->hfield.p);
    json_t *val;
    if (old) {
        mock_buf j;
        mock_buf_init(&j, MOCK_MAX_HEADER_BYTES * 2);
        mock_buf_put(&j, json_string_value(old), json_string_length(old));
        mock_buf_puts(&j, ", ");
        mock_buf_put(&j, q->hvalue.p, q->hvalue.len);
        val = mock_json_bytes(j.p, j.len, NULL);
        mock_buf_free(&j);
    } else {
        val = mock_json_bytes(q->hvalue.p, q->hvalue.len, NULL);
    }
    json_object_set_new(q->headers, q->hfield.p, val);
    q->hfield.len = q->hvalue.len = 0;
    return 0;
}

static int mock_on_headers_complete(llhttp_t *p)
{
    mock_conn *c = mock_of(p);
    c->req.keep_alive = llhttp_should_keep_alive(p) != 0;
    c->req.method = llhttp_get_method(p);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > MOCK_MAX_BODY)
        return mock_refuse(c, 413, "request body too large (mock limit 64 MiB)");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0 &&
        mock_buf_reserve(&c->req.body, (size_t)p->content_length) < 0)
        return mock_refuse(c, 500, "out of memory");
    json_t *expect = json_object_get(c->req.headers, "expect");
    if (expect && strcasecmp(json_string_value(expect), "100-continue") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        mock_conn_write(c, MOCK_WF_NONE, cont, sizeof cont - 1, NULL, 0);
    }
    return 0;
}

static int mock_on_body(llhttp_t *p, const char *at, size_t len)
{
    mock_conn *c = mock_of(p);
    if (mock_buf_put(&c->req.body, at, len) < 0)
        return mock_refuse(c, 413, "request body too large (mock limit 64 MiB)");
    return 0;
}

/* Pausing makes llhttp_execute return after each request, so requests are answered one at a
 * time and bytes of the next one wait in c->pending. */
static int mock_on_message_complete(llhttp_t *p)
{
    mock_conn *c = mock_of(p);
    c->busy = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t mock_settings = {
    .on_message_begin = mock_on_message_begin,
    .on_url = mock_on_url,
    .on_header_field = mock_on_header_field,
    .on_header_value = mock_on_header_value,
    .on_header_value_complete = mock_on_header_value_complete,
    .on_headers_complete = mock_on_headers_complete,
    .on_body = mock_on_body,
    .on_message_complete = mock_on_message_complete,
};

/* Answers a request the parser rejected, then closes: the stream can't be trusted any more. */
static void mock_parse_failed(mock_conn *c)
{
    int status = c->parse_status ? c->parse_status : 400;
    char msg[200];
    snprintf(msg, sizeof msg, "mock: %s",
             c->parse_msg ? c->parse_msg : llhttp_get_error_reason(&c->parser));
    c->req.keep_alive = false;
    c->busy = true;
    mock_resp_reset(c);
    json_t *body = mock_openai_error_body(c, status, msg, "bad_request");
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    mock_buf h;
    mock_buf_init(&h, 4096);
    mock_head(c, &h, status, "application/json", false, s ? strlen(s) : 0);
    mock_conn_write(c, MOCK_WF_LINGER, h.p, h.len, s, s ? strlen(s) : 0);
    mock_buf_free(&h);
    free(s);
}

static void mock_feed(mock_conn *c, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_OK) return;
    if (e != HPE_PAUSED) {
        mock_parse_failed(c);
        return;
    }
    const char *pos = llhttp_get_error_pos(&c->parser);
    size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    if (used < len && mock_buf_put(&c->pending, data + used, len - used) < 0) {
        mock_conn_close(c);
        return;
    }
    mock_dispatch(c);
}

/* Runs the requests that arrived while the previous one was answered. Each pass parses at most
 * one request, and answers are written asynchronously, so this never recurses. */
static void mock_process_pending(mock_conn *c)
{
    if (c->busy || c->closing || c->pending.len == 0) return;
    mock_buf b = c->pending;
    mock_buf_init(&c->pending, MOCK_PENDING_MAX);
    mock_feed(c, b.p, b.len);
    mock_buf_free(&b);
}

static void mock_response_done(mock_conn *c)
{
    mock_resp_reset(c);
    if (!c->req.keep_alive) {
        mock_conn_close(c);
        return;
    }
    c->busy = false;
    llhttp_resume(&c->parser);
    mock_process_pending(c);
    if (!c->busy || c->pending.len < MOCK_PENDING_PAUSE) mock_conn_read_start(c);
}

static void mock_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    buf->base = malloc(MOCK_READ_SIZE);
    buf->len = buf->base ? MOCK_READ_SIZE : 0;
}

static void mock_conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mock_conn *c = s->data;
    if (nread < 0) {
        /* EOF or error. A response in progress has lost its reader: stop it. */
        free(buf->base);
        if (!c->busy) llhttp_finish(&c->parser);
        mock_conn_close(c);
        return;
    }
    if (nread > 0 && !c->closing && !c->draining) {
        if (c->busy) {
            if (mock_buf_put(&c->pending, buf->base, (size_t)nread) < 0) {
                mock_conn_close(c);
            } else if (c->pending.len >= MOCK_PENDING_PAUSE) {
                uv_read_stop(s);
                c->reading = false;
            }
        } else {
            mock_feed(c, buf->base, (size_t)nread);
        }
    }
    free(buf->base);
}

static void mock_on_connection(uv_stream_t *server, int status)
{
    if (status < 0) return;
    mock_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(&g.loop, &c->tcp);
    uv_timer_init(&g.loop, &c->timer);
    c->open_handles = 2;
    c->tcp.data = c->timer.data = c;
    mock_buf_init(&c->req.url, MOCK_MAX_URL);
    mock_buf_init(&c->req.hfield, MOCK_MAX_HEADER_BYTES);
    mock_buf_init(&c->req.hvalue, MOCK_MAX_HEADER_BYTES);
    mock_buf_init(&c->req.body, MOCK_MAX_BODY);
    mock_buf_init(&c->pending, MOCK_PENDING_MAX);
    llhttp_init(&c->parser, HTTP_REQUEST, &mock_settings);
    c->parser.data = c;
    c->next = g.conns;
    if (g.conns) g.conns->prev = c;
    g.conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        mock_conn_close(c);
        return;
    }
    g.connections++;
    uv_tcp_nodelay(&c->tcp, 1);
    mock_conn_read_start(c);
    if (!c->reading) mock_conn_close(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Process lifetime                                                                            */

static void mock_stop(void)
{
    if (g.stopping) return;
    g.stopping = true;
    uv_close((uv_handle_t *)&g.server, NULL);
    uv_close((uv_handle_t *)&g.sigint, NULL);
    uv_close((uv_handle_t *)&g.sigterm, NULL);
    while (g.conns)
        mock_conn_close(g.conns);
}

static void mock_signal_cb(uv_signal_t *s, int signum)
{
    mock_stop();
}

static void mock_usage(FILE *f)
{
    fprintf(f, "usage: mock_upstream [--host ADDR] [--port N] [--fail-status N] [--delay-ms N]\n"
               "                     [--retry-after S] [--verbose]\n"
               "Prints 'PORT <n>' once listening. See tests/mock/README.md.\n");
}

static int mock_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 0;
    g.def.chunks = 3;
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"fail-status", required_argument, NULL, 'f'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"retry-after", required_argument, NULL, 'r'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'H'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            if (mock_parse_long(optarg, 0, 65535, &port) < 0) {
                fprintf(stderr, "mock_upstream: bad --port\n");
                return 2;
            }
            break;
        case 'f':
            if (mock_parse_long(optarg, 0, 599, &g.def.fail_status) < 0 ||
                !mock_status_ok(g.def.fail_status)) {
                fprintf(stderr, "mock_upstream: --fail-status must be 0, 200 or 300..599\n");
                return 2;
            }
            if (g.def.fail_status == 200) g.def.fail_status = 0;
            break;
        case 'd':
            if (mock_parse_long(optarg, 0, MOCK_MAX_DELAY_MS, &g.def.delay_ms) < 0) {
                fprintf(stderr, "mock_upstream: bad --delay-ms\n");
                return 2;
            }
            break;
        case 'r': {
            long secs;
            if (mock_parse_long(optarg, 0, 1000000000L, &secs) < 0) {
                fprintf(stderr, "mock_upstream: bad --retry-after\n");
                return 2;
            }
            if (secs > 0) snprintf(g.def.retry_after, sizeof g.def.retry_after, "%ld", secs);
            break;
        }
        case 'v':
            g.verbose = true;
            break;
        case 'H':
            mock_usage(stdout);
            return 0;
        default:
            mock_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        mock_usage(stderr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN); /* a vanished client must be a write error, not a dead mock */
    if (uv_loop_init(&g.loop) < 0) return 1;

    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr);
    if (rc < 0) rc = uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr);
    if (rc < 0) {
        fprintf(stderr, "mock_upstream: bad --host %s\n", host);
        return 2;
    }
    uv_tcp_init(&g.loop, &g.server);
    rc = uv_tcp_bind(&g.server, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&g.server, 511, mock_on_connection);
    if (rc < 0) {
        fprintf(stderr, "mock_upstream: cannot listen on %s:%ld: %s\n", host, port,
                uv_strerror(rc));
        uv_close((uv_handle_t *)&g.server, NULL);
        uv_run(&g.loop, UV_RUN_DEFAULT);
        uv_loop_close(&g.loop);
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&g.server, (struct sockaddr *)&bound, &blen);
    int bport = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&bound)->sin_port);

    uv_signal_init(&g.loop, &g.sigint);
    uv_signal_init(&g.loop, &g.sigterm);
    uv_signal_start(&g.sigint, mock_signal_cb, SIGINT);
    uv_signal_start(&g.sigterm, mock_signal_cb, SIGTERM);

    printf("PORT %d\n", bport);
    fflush(stdout);

    uv_run(&g.loop, UV_RUN_DEFAULT);
    mock_rec_clear();
    json_decref(g.next_mock);
    if (uv_loop_close(&g.loop) != 0) fprintf(stderr, "mock_upstream: handles left open at exit\n");
    return 0;
}
