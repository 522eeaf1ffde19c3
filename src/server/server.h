/*
 * The server: listener sockets, worker threads and their event loops, signals and draining.
 *
 * Each worker thread owns one libuv loop, one listening socket bound to the shared address with
 * SO_REUSEPORT (the kernel spreads connections across workers), its own upstream client context
 * (curl multi handle and connection pool) and every connection it accepted: nothing on the request
 * path is shared between threads except read-mostly state (config, key cache).
 * SIGTERM or SIGINT start a drain: idle connections close, in-flight requests finish, requests
 * that arrive meanwhile get 503, and each worker exits once it has nothing in flight (or the drain
 * timeout passes).
 *
 * The server knows nothing of what requests mean: the layer that answers them (the API layer)
 * hands srv_new a table of handlers (srv_handlers) once, at start-up, and keeps whatever it needs
 * per worker behind worker_t.app. Nothing under server/ includes a header of that layer.
 *
 * Live reload: the config is a generation (srv_gen), refcounted. SIGHUP calls the reloader that
 * `serve` set (srv_set_reloader) on the main thread; it builds the next generation and publishes
 * it (srv_publish), which puts it in each worker's mailbox and wakes the worker. A worker adopts
 * it at the top of its loop's callbacks (a read, the wake-up), never inside a request's
 * dispatch, so everything a request does synchronously sees one generation; a request that
 * outlives its dispatch holds its generation (srv_gen_hold) until it ends.
 */
#ifndef MS_SERVER_H
#define MS_SERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "auth/keycache.h"
#include "config/config.h"
#include "upstream/upstream.h"

typedef struct srv srv_t;
typedef struct worker worker_t;

/* A config generation: a config and what the layers above built from it (the router's view of
 * the deployments' breakers), immutable once published and read by every thread. The server's
 * current pointer, each worker's (and its mailbox), and each request in flight on it hold a
 * reference; the last srv_gen_release frees it, on whatever thread, through destroy. */
typedef struct srv_gen {
    _Atomic uint64_t refs;
    uint64_t number; /* 1: the config the gateway started with, then one per reload */
    const cfg_t *cfg;
    struct route *route;                /* router/router.h: this config's view of the breakers */
    void (*destroy)(struct srv_gen *g); /* frees what g owns, and g */
} srv_gen;

/* Takes a reference to g (a relaxed increment: the holder already has one to copy). */
static inline srv_gen *srv_gen_hold(srv_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}
/* Gives one back; the last one frees g (destroy). NULL is ignored. */
void srv_gen_release(srv_gen *g);
struct http_conn;    /* server/http.h */
struct http_request; /* server/http.h */

/* What the server calls into the layer that answers requests. Given to srv_new once; every hook
 * but dispatch may be NULL. All run on the worker's loop thread except worker_init and
 * worker_free, which run on the thread that calls srv_new and srv_free (no worker runs then). */
typedef struct srv_handlers {
    /* A request is complete: route it and answer it, now or later, through http.h's response
     * API. Never called while the worker drains (the server answers 503 itself). */
    void (*dispatch)(struct http_conn *c, struct http_request *r);
    /* Checks a request on its headers alone, before its body is read (r has the method, path,
     * query and credentials, no body), so that a bad key is refused before `100 Continue` and
     * before an upload. Runs for a request with a body that has not fully arrived with its
     * headers, or that asks for 100-continue. Returns 0 to go on, or -1 when it has answered
     * (http_error); the body is then not read and the connection closes after the answer. NULL:
     * no check (100 Continue goes out at once). */
    int (*head_check)(struct http_conn *c, struct http_request *r);
    /* Sets up the layer's per-worker state in w->app (w->loop is ready, the worker has not
     * started). Returns 0, or -1 and srv_new fails. */
    int (*worker_init)(worker_t *w);
    /* Frees w->app, after the worker's loop has stopped; called for each worker whose
     * worker_init returned 0. */
    void (*worker_free)(worker_t *w);
    /* The drain timed out: abandon, now, the work that outlived its connection
     * (srv_app_work_begin), before the remaining connections are closed. */
    void (*on_drain_kill)(worker_t *w);
    /* A request is over (answered, or its client left: status 499), as its access line is
     * written: the layer counts it (r->note). Not called for a request the abort hook took over
     * (that one's handler says when it is over). */
    void (*on_done)(worker_t *w, struct http_request *r, int status);
} srv_handlers;

struct worker {
    srv_t *srv;
    int id;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wakeup; /* drain requests from the main thread */
    uv_timer_t drain_timer;
    uv_check_t held_check; /* http.c: sends held stream heads after the I/O phase */
    /* the loop clock's ticks (ms_loop_clock_tick): before the loop polls, and after its I/O */
    uv_prepare_t clock_prepare;
    uv_check_t clock_check;
    struct http_conn *held; /* connections holding a stream head (http_stream_start) */
    uv_thread_t thread;
    up_ctx *up;
    /* The generation new requests use, and its config and router (copies of gen's, for the
     * code that reads them): changed only by the worker itself (srv_worker_adopt). */
    srv_gen *gen;
    const cfg_t *cfg;
    struct route *route;     /* router/router.h: deployment health */
    _Atomic(srv_gen *) next; /* a published generation not yet adopted (owns a reference) */
    uv_async_t gen_wakeup;   /* next was filled */
    kc_t *kc;
    kc_local kcl;      /* this worker's copies of the keys it looked up last (keycache.h) */
    struct bill *bill; /* billing/billing.h: balances, holds, the ledger queue */
    struct rl *rl;     /* ratelimit/ratelimit.h: shared limiter */
    struct sh *sh;     /* shared/shared.h: the state several instances share, or NULL */
    int draining;
    int listener_open;
    /* requests being processed on a connection; atomic (one writer, this worker) because
     * GET /metrics reads every worker's from whichever worker serves it, like nconns */
    _Atomic uint64_t inflight;
    /* requests the handler layer still works on after their connection let them go (a proxy
     * reading the usage of a client that left): the worker does not stop while any is left */
    uint64_t app_work;
    void *app;               /* the handler layer's per-worker state (srv_handlers.worker_init) */
    int app_ready;           /* worker_init succeeded: worker_free is owed */
    struct http_conn *conns; /* intrusive list of open connections */
    _Atomic uint64_t nconns;
    uint64_t rid_seq;  /* request id sequence (srv_new_request_id) */
    uint64_t rid_salt; /* random per worker, so workers and processes never collide */
    char *readbuf;     /* shared by every connection of this worker: data is consumed in read_cb */
    size_t readbuf_len;
    /* http.c: the stream chunks of the one corked connection, sent in one write at the uncork
     * (http_stream_cork): one per worker, as corking spans a single callback */
    struct http_conn *corked;
    char *cork;
    size_t cork_len;
    int cork_gather; /* the cork copies chunks in (its first one went out at once, or a burst) */
    uint64_t poll_ns, polls, poll_hits; /* busy polling (server.c): time, polls, events seen */
};

/* What the workers share, made by main before the server. */
typedef struct srv_shared {
    kc_t *kc;
    struct bill *bill;
    struct rl *rl;
    struct sh *sh; /* NULL: this instance alone */
    srv_gen *gen;  /* the first generation; srv_new takes over its reference, even on failure */
} srv_shared;

/* What SIGHUP does (srv_set_reloader). Both run on the main thread, in its loop. */
typedef struct srv_reloader {
    void (*ready)(void *ctx, srv_t *s);  /* SIGHUP is handled from now on */
    void (*reload)(void *ctx, srv_t *s); /* SIGHUP came: reload, srv_publish if it worked */
    void *ctx;
} srv_reloader;

struct srv {
    const cfg_t *cfg; /* the config at start-up: listen address, workers (never reloaded) */
    srv_shared sh;
    srv_handlers h;
    srv_gen *gen; /* the current generation (the main thread's reference) */
    srv_reloader reloader;
    int stopping; /* SIGTERM/SIGINT came: no more reloads */
    char host[256];
    int port;
    int nworkers;
    worker_t *workers;
    int listen_fd_first; /* port 0: the first socket fixes the port the others reuse */
    int poll_slots;      /* how many workers may busy-poll at once: the CPUs we may run on */
    _Atomic int polling; /* how many do now */
};

/* Binds every worker's socket (so address errors surface before serving) and sets up each
 * worker's handler state (h->worker_init). h is copied; h->dispatch is required. Returns NULL
 * with a message in err on failure. listen_override may be NULL ("HOST:PORT" otherwise). */
srv_t *srv_new(const cfg_t *cfg, const srv_shared *sh, const srv_handlers *h,
               const char *listen_override, char *err, size_t errlen);
/* Runs until a signal has drained every worker. Returns 0. */
int srv_run(srv_t *s);
void srv_free(srv_t *s);

/* Sets what SIGHUP does; before srv_run. Without it SIGHUP is ignored. */
void srv_set_reloader(srv_t *s, const srv_reloader *r);
/* Makes g (fully built; the caller's reference is taken over) the generation of every request
 * that starts from now on: main thread. The previous one lives on while requests hold it. */
void srv_publish(srv_t *s, srv_gen *g);

/* Adopts the generation waiting in w's mailbox, if any. Worker thread, at the top of a loop
 * callback only (see the top comment): the previous generation may be freed here. */
void srv_worker_adopt(worker_t *w);
static inline void srv_worker_sync(worker_t *w)
{
    if (atomic_load_explicit(&w->next, memory_order_relaxed)) srv_worker_adopt(w);
}

/* Called by a connection when it finishes a request while draining, so the worker can exit. */
void srv_worker_check_drained(worker_t *w);

/* The handler layer took over a request its connection let go (the client left, the layer goes
 * on: a proxy reading the usage it must bill), and then finished it. While any is left the worker
 * keeps running through a drain, until the drain timeout calls h.on_drain_kill. */
void srv_app_work_begin(worker_t *w);
void srv_app_work_end(worker_t *w);

/* Writes a new request id ("req_" + 24 hex digits) into out (>= 40 bytes). Request ids belong to
 * the server: it answers some requests itself (400, 408, 413, 431, 503) and every answer and
 * access line carries one, and they come from per-worker state (a salt and a sequence). */
void srv_new_request_id(worker_t *w, char *out);

#endif
