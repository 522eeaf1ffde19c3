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

typedef struct worker {
    srv_t *srv;
    int id;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t wakeup; /* drain requests from the main thread */
    uv_timer_t drain_timer;
    uv_check_t held_check;  /* http.c: sends held stream heads after the I/O phase */
    struct http_conn *held; /* connections holding a stream head (http_stream_start) */
    uv_thread_t thread;
    up_ctx *up;
    const cfg_t *cfg;
    kc_t *kc;
    struct bill *bill;   /* billing/billing.h: balances, holds, the ledger queue */
    struct rl *rl;       /* ratelimit/ratelimit.h: shared limiter */
    struct route *route; /* router/router.h: deployment health */
    int draining;
    int listener_open;
    uint64_t inflight;      /* requests being processed */
    struct proxy *detached; /* requests whose client left, still reading for usage */
    uint64_t ndetached;
    struct http_conn *conns; /* intrusive list of open connections */
    uint64_t nconns;
    uint64_t rid_seq; /* request id sequence */
    uint64_t rid_salt;
    char *readbuf; /* shared by every connection of this worker: data is consumed in read_cb */
    size_t readbuf_len;
    uint64_t poll_ns, polls, poll_hits; /* busy polling (server.c): time, polls, events seen */
} worker_t;

/* What the workers share, made by main before the server. */
typedef struct srv_shared {
    kc_t *kc;
    struct bill *bill;
    struct rl *rl;
    struct route *route;
} srv_shared;

struct srv {
    const cfg_t *cfg;
    srv_shared sh;
    char host[256];
    int port;
    int nworkers;
    worker_t *workers;
    int listen_fd_first; /* port 0: the first socket fixes the port the others reuse */
    int poll_slots;      /* how many workers may busy-poll at once: the CPUs we may run on */
    _Atomic int polling; /* how many do now */
};

/* Binds every worker's socket (so address errors surface before serving). Returns NULL with a
 * message in err on failure. listen_override may be NULL ("HOST:PORT" otherwise). */
srv_t *srv_new(const cfg_t *cfg, const srv_shared *sh, const char *listen_override, char *err,
               size_t errlen);
/* Runs until a signal has drained every worker. Returns 0. */
int srv_run(srv_t *s);
void srv_free(srv_t *s);

/* Called by a connection when it finishes a request while draining, so the worker can exit. */
void srv_worker_check_drained(worker_t *w);

#endif
