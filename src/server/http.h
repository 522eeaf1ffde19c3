/*
 * One HTTP/1.1 client connection: parsing (common/h1parse.c's request mode), limits and timeouts,
 * and the response writer the API handlers use.
 *
 * A connection processes one request at a time. When a request is complete the parser pauses, so
 * pipelined requests are answered strictly in order; bytes that arrive meanwhile wait in a small
 * bounded buffer (reading stops when it is full, which pushes back on the client). Reading goes on
 * while a request is processed so that a client that goes away is noticed at once and its upstream
 * transfer cancelled (the handler's abort hook).
 *
 * Memory per connection: the struct, the request's header block (<= max_header_bytes) and body
 * (<= max_body_bytes) while a request is in progress, and pending writes; socket reads go through
 * one buffer per worker. An idle keep-alive connection holds only the struct.
 */
#ifndef MS_HTTP_H
#define MS_HTTP_H

#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/counter.h"
#include "common/h1parse.h"
#include "ratelimit/ratelimit.h"
#include "server/server.h"

#define HTTP_MAX_EXTRA_HEADERS 24
/* Headers kept for the handlers (Authorization, x-api-key, anthropic-version, anthropic-beta,
 * x-modelswitch-cache), each allowed once per request. */
#define HTTP_ONCE_KEPT 5
/* A body must arrive within this many times body_timeout_ms of the end of its headers (408 and
 * close): body_timeout_ms alone bounds only the gap between reads, which a byte a second meets. */
#define HTTP_BODY_DEADLINE_FACTOR 4

typedef struct http_conn http_conn;

/* What the handler of the current request may set so the connection can call it back. */
typedef struct http_handler {
    void *ctx;
    /* The client went away (or the connection must close) while the request was in progress:
     * stop all work and free ctx, or go on without the connection. No http_* call on this
     * request may follow. Returns 1 when the handler goes on and will write the request's access
     * line itself (http_log_request), 0 when the connection should log it now. */
    int (*abort)(http_conn *c, void *ctx);
    /* Pending writes fell below the low-water mark after http_write_pending() was high. */
    void (*drained)(http_conn *c, void *ctx);
} http_handler;

/* A request's method: those the handlers serve by name; any other token is HTTP_M_OTHER, which
 * the router answers 404 or 405 (its name is in method_name either way). */
typedef enum {
    HTTP_M_OTHER = 0,
    HTTP_M_GET,
    HTTP_M_HEAD,
    HTTP_M_POST,
    HTTP_M_PUT,
    HTTP_M_DELETE,
    HTTP_M_PATCH,
    HTTP_M_OPTIONS
} http_method;

typedef struct http_request {
    http_method method;
    /* a token (no byte needs escaping in JSON), "" before the request line; held here, not in
     * the connection's buffers, so a copy of the request (a detached proxy's) keeps it */
    char method_name[H1P_METHOD_MAX + 1];
    ms_str path;  /* without the query */
    ms_str query; /* after '?', may be empty */
    ms_str authorization;
    ms_str api_key;           /* x-api-key: the Anthropic dialect's way to send a key */
    ms_str anthropic_version; /* forwarded to Anthropic providers by the Anthropic dialect */
    ms_str anthropic_beta;
    ms_str cache; /* x-modelswitch-cache: the response cache's per-request switch (api/cache.c) */
    ms_str content_type;
    ms_str if_none_match; /* the dashboard's assets answer 304 when it names their ETag */
    ms_str body;
    /* Writes an error's body in the shape the client's API uses, or NULL for the contract's
     * {"error":{...}}. Set by the handler layer once it knows the route (the server knows no
     * client API). Returns 0, or -1 (memory). */
    int (*error_body)(buf_t *out, int status, const char *type, const char *code, const char *param,
                      const char *message);
    int keep_alive;
    char id[40]; /* x-request-id */
    uint64_t start_ns;
    /* filled in by handlers for the access log */
    char log_account[24];
    char log_key[16]; /* key prefix only */
    char log_model[256];
    char log_provider[64];
    int64_t upstream_ms;
    int64_t prompt_tokens, completion_tokens;
    /* the key's rate-limit state, written into the answer's head once, when it is sent */
    int have_rl;
    rl_result rl;
    /* when the answer goes out without have_rl, this fills rl (the handler layer's, set at
     * authentication: an admitted request carries its admission's state and never asks) */
    void (*rl_late)(struct http_conn *c);
    struct {
        int64_t id, account_id, rpm, tpm;
    } rl_key; /* what rl_late needs of the key */
    /* the handler layer's note of where the request is counted (srv_handlers.on_done) */
    ctr_note note;
} http_request;

struct http_conn {
    uv_tcp_t tcp;
    worker_t *w;
    struct http_conn *next, *prev;
    h1p parser;
    int in_msg; /* the parser has begun a request (msg_begin) that has not ended */
    uv_timer_t timer;
    int phase; /* ST_IDLE, ST_HEAD, ST_BODY (http.c) */
    /* while conn_feed runs, the timer's last wanted state (ms, or -1 to stop), applied once
     * as it returns (conn_timer_set) */
    int timer_defer, timer_pending;
    int64_t timer_want;
    /* the timeout in force (loop ms it falls due, when timer_on) and the armed libuv timer (loop
     * ms it fires, when timer_armed): they differ while the timer is lazily left ahead of it
     * (conn_timer_set) */
    int timer_on, timer_armed;
    uint64_t timer_due, timer_fires;
    int open_handles; /* handles still to close before the struct is freed */
    int closing;
    int lingering; /* answered and shut down for writing; discarding input until close */
    uv_shutdown_t shutdown_req;
    int processing; /* a request is between message-complete and its last response byte */
    int responded;  /* the response head has been queued */
    int chunked;    /* the response is a chunked stream */
    int close_after;
    int reading;
    int draining_high; /* write queue went above the high-water mark */
    /* header collection */
    buf_t head; /* the target and the header values we keep (the parser caps the block) */
    size_t url_off, url_len;
    int nheaders;
    size_t once_off[HTTP_ONCE_KEPT], once_len[HTTP_ONCE_KEPT]; /* kept headers (http.c) */
    size_t ctype_off, ctype_len;
    size_t inm_off, inm_len; /* If-None-Match */
    int expect_continue;
    int header_too_large;
    int body_too_large;
    unsigned once_seen;     /* credential headers seen (bits of http.c's once_headers) */
    int dup_header;         /* 1 + index in once_headers of one that came twice, else 0 */
    uint64_t body_deadline; /* loop time (ms) by which the whole body must have arrived */
    uint64_t body_left; /* bytes of a Content-Length body still to come (read straight into body) */
    buf_t body;
    char *body_block; /* body's first HTTP_BODY_BLOCK bytes, lent by the object cache, or NULL */
    buf_t pending;    /* bytes after a paused (complete) request */
    http_request req;
    http_handler handler;
    buf_t extra; /* extra response headers for the current request */
    /* while a request is under way, a block from the thread's object cache (http.c) that
     * head and extra lend: its first half for a typical request's URL and header values, its
     * second for the rate limit's and the cost's headers, so neither allocates per request */
    char *scratch;
    /* the last key this connection presented and its SHA-256: clients reuse one key on a
     * keep-alive connection, and hashing it again is a tenth of a request's own cost */
    unsigned char auth_key[64];
    size_t auth_key_len;
    unsigned char auth_hash[32];
    uint64_t bytes_in, bytes_out;
    int status; /* status of the current response */
    /* A stream's head, held back until its first chunk or the end of the loop's I/O phase
     * (http_stream_start), and the worker's list of connections holding one. */
    char *held;
    size_t held_len;
    struct http_conn *held_next, *held_prev;
};

/* Writes the access line of a request (normally done by the connection when it finishes). */
void http_log_request(const http_request *r, int status, uint64_t bytes_in, uint64_t bytes_out);

/* Called by the worker's listener for each accepted connection. */
void http_accept(worker_t *w, uv_stream_t *listener);
/* Closes idle connections and marks the rest to close after their current response. */
void http_drain_worker(worker_t *w);
/* Nothing is in flight any more: closes connections, letting queued answers finish writing. */
void http_finish_drain(worker_t *w);
/* Closes every connection now (drain timeout, shutdown). */
void http_close_all(worker_t *w);
/* The worker's check handle: sends the stream heads still held after the I/O phase. */
void http_flush_held(uv_check_t *h);

/* ---- response API for handlers (srv_handlers in server.h: dispatch and head_check) ---- */

/* A complete response with Content-Length. headers: NULL or "Name: value\r\n" lines. body is
 * copied unless own_body is set, in which case the pointer is taken and freed after writing. */
void http_respond(http_conn *c, int status, const char *content_type, const char *headers,
                  const char *body, size_t len, int own_body);
/* The contract's error body; param may be NULL. retry_after_ms >= 0 adds retry-after headers. */
void http_error(http_conn *c, int status, const char *type, const char *code, const char *param,
                const char *message, int64_t retry_after_ms);
/* Starts a chunked response (for SSE: content_type "text/event-stream"). The head is held until
 * the first chunk, or the end of the loop's I/O phase if none comes, so that a provider's head and
 * first event, which usually arrive in one read, reach the client in one write. */
void http_stream_start(http_conn *c, int status, const char *content_type, const char *headers);
/* Sends one chunk (copied if the socket does not take it at once). Returns 0, or -1 when the
 * connection is gone. */
int http_stream_write(http_conn *c, const char *data, size_t len);
/* The same for a chunk in up to HTTP_STREAM_PARTS pieces (an event framed where it lies). */
int http_stream_writev(http_conn *c, const uv_buf_t *parts, int nparts);
/* Corks c's stream until the end of the loop iteration's I/O phase (the worker's check handle),
 * http_uncork, or anything else written on c: its chunks are gathered (up to HTTP_CORK_MAX bytes
 * at a time) and go out in one write. A proxy corks when upstream data arrives (burst: its
 * size), so that a burst of events (many in one read, as HTTP chunks of their own) costs one
 * system call rather than one each. A burst under HTTP_CORK_GATHER (one event, most reads of a
 * real stream) has its first chunk go at once instead, with no copy. One connection per worker
 * at a time: corking another one uncorks the first; http_uncork takes the worker because the
 * connection may have closed meanwhile. */
void http_stream_cork(http_conn *c, size_t burst);
void http_uncork(worker_t *w);
#define HTTP_STREAM_PARTS 4
/* The most a corked stream gathers before it writes (http_stream_cork). */
#define HTTP_CORK_MAX (64 * 1024)
#define HTTP_CORK_GATHER 1024
/* Makes *b the request's body (taking its storage; *b is left empty), for a handler that answers
 * for a body of its own making (the Responses API's continuation: the stored conversation and the
 * new input): whatever outlives the handler with the request's body (a detached proxy, an
 * upstream still reading it) then has this one. c->req.body is updated. */
void http_replace_body(http_conn *c, buf_t *b);
/* Hands the request's body over to the caller, who frees it with free(): a detached proxy keeps
 * it where it is, since an upstream write in flight reads it from there. */
char *http_take_body(http_conn *c);
/* Ends the chunked response; the request is finished. */
void http_stream_end(http_conn *c);
/* Bytes queued for the client and not yet written; a handler pauses its source above
 * HTTP_HIGH_WATER and is told through handler.drained when it falls below HTTP_LOW_WATER. */
size_t http_write_pending(http_conn *c);
#define HTTP_HIGH_WATER (256 * 1024)
#define HTTP_LOW_WATER (64 * 1024)

/* Extra response headers every handler may want: set by the API layer before responding. */
void http_set_extra_headers(http_conn *c, const char *headers);
/* Appends header lines ("Name: value\r\n") to the extra headers. */
void http_add_extra_header(http_conn *c, const char *headers);

#endif
