/*
 * The upstream HTTP client, driven by a worker's libuv loop so upstream I/O shares the event loop
 * with client connections and never blocks it. `http://` and `https://` URLs go through a native
 * HTTP/1.1 client (src/upstream/h1.c: common/h1parse.c, OpenSSL on memory BIOs, a keep-alive pool
 * per host), which costs far less than libcurl per request; libcurl's multi_socket interface stays
 * for https:// behind a proxy from the environment, and for everything when
 * MODELSWITCH_UPSTREAM=curl is in the environment at start. One up_ctx per worker owns both clients
 * and their connection pools.
 *
 * The body is sent from the caller's iovecs without copying (they must stay valid until the
 * transfer completes). Response bytes are handed to on_data as they arrive; the consumer applies
 * backpressure with up_pause/up_resume, which pause the transfer's receive side so memory per
 * stream stays bounded. Exactly one on_complete ends every started transfer, except one
 * cancelled with up_cancel, which gets no further callbacks.
 *
 * The program calls curl_global_init once before the first up_ctx_new and curl_global_cleanup
 * after the last ctx is freed (main.c does). up_start may be called from inside a callback (a
 * retry); the transfer then starts on the next loop turn. The total timeout counts time spent
 * paused.
 */
#ifndef MS_UPSTREAM_H
#define MS_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct up_ctx up_ctx;
typedef struct up_xfer up_xfer;

typedef struct {
    const char *base;
    size_t len;
} up_iov;

typedef struct up_request {
    const char *method;         /* "POST" or "GET" */
    const char *url;            /* copied */
    const char *const *headers; /* "Name: value" lines, copied */
    size_t nheaders;
    const up_iov *body; /* NOT copied: must outlive the transfer; the iov array itself is copied */
    size_t nbody;
    int64_t connect_timeout_ms; /* 0 = the default (300 s, resolution included) */
    int64_t
        first_byte_timeout_ms; /* 0 = none: fail with UP_TIMEOUT if no response header by then */
    int64_t total_timeout_ms;  /* 0 = none */
    /* https:// only: a PEM file of CAs trusted in addition to the system store (a provider's
     * tls_ca_file), or NULL. Read once per worker by the native client; copied. */
    const char *tls_ca_file;
} up_request;

typedef enum {
    UP_OK,             /* the whole response was received */
    UP_CONNECT_FAILED, /* could not connect / resolve / TLS handshake */
    UP_TIMEOUT,        /* a timeout fired (connect, first byte or total) */
    UP_ERROR,          /* anything else: reset, truncated body, protocol error */
} up_result;

typedef struct up_callbacks {
    /* Once, when the status line and headers are complete. content_type may be NULL.
     * retry_after_ms is the parsed Retry-After / retry-after-ms header or -1. */
    void (*on_response)(void *ud, int status, const char *content_type, int64_t retry_after_ms);
    /* Body bytes as they arrive; always fully consumed by the callee. May call up_pause. */
    void (*on_data)(void *ud, const char *p, size_t n);
    /* Exactly once at the end (unless cancelled). errmsg is a short description for logs and
     * error messages (never contains credentials; "" on UP_OK). */
    void (*on_complete)(void *ud, up_result res, const char *errmsg);
} up_callbacks;

up_ctx *up_ctx_new(uv_loop_t *loop);
/* Cancels whatever is still running (no callbacks) and frees; the loop must still be alive and
 * is run briefly by the caller afterwards to close handles. Never call it from a callback of
 * this ctx. */
void up_ctx_free(up_ctx *ctx);

/* Starts a transfer. Callbacks are never called from inside up_start. NULL on allocation
 * failure. */
up_xfer *up_start(up_ctx *ctx, const up_request *req, const up_callbacks *cb, void *ud);
/* Stops delivering body bytes until up_resume. Safe inside on_data. */
void up_pause(up_xfer *x);
/* Resumes delivery; buffered bytes are delivered later from the loop, never from inside this
 * call. */
void up_resume(up_xfer *x);
/* Aborts the transfer; no callback is called after this returns. Safe inside any callback.
 * The up_xfer must not be used afterwards. */
void up_cancel(up_xfer *x);

/* Number of transfers in flight in this ctx (for draining and metrics). */
size_t up_active(up_ctx *ctx);

/* How long the native client keeps an idle pooled connection unused before closing it (60 s
 * unless set; the tests shorten it). No effect on libcurl's pool. */
void up_set_idle_ms(up_ctx *ctx, uint64_t ms);

#endif
