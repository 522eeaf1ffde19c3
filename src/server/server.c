/*
 * Listener sockets, worker threads, signals and draining (see server.h).
 *
 * Sockets are created by hand rather than by uv_tcp_bind because libuv 1.44 has no flag for
 * SO_REUSEPORT, which is what lets each worker accept on its own socket without a shared accept
 * lock. With port 0 the first socket picks the port and the others bind the same one.
 *
 * Busy polling (server.busy_poll_us): on a VM, the wake-up of a sleeping thread by a packet from
 * another core costs tens of microseconds (an inter-processor interrupt, the idle vCPU's exit
 * from halt), and a proxied request pays it twice on the gateway's side: for the client's request
 * and for the upstream's answer. A worker that has just run events keeps asking the kernel for
 * more without sleeping (epoll_wait with a zero timeout) for up to busy_poll_us before it sleeps,
 * so an answer arriving within that time is picked up at once. The cost is CPU: a worker whose
 * events are closer together than the window never sleeps. Timers and deferred work keep running
 * while it polls (each turn is a uv_run). It stops early when a background thread wants the CPU
 * (bgprio.h: polling would starve it), and no more workers poll at once than the process has
 * CPUs (two pollers on one CPU would only delay each other).
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bgprio.h"
#include "common/log.h"
#include "common/util.h"
#include "server/http.h"

#define READBUF_SIZE (64 * 1024)

static int parse_listen(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec) return -1;
    size_t hl = (size_t)(colon - spec);
    if (spec[0] == '[' && hl >= 2 && spec[hl - 1] == ']') {
        spec++;
        hl -= 2;
    }
    if (hl >= hostlen) return -1;
    memcpy(host, spec, hl);
    host[hl] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
    *port = (int)p;
    return 0;
}

/* The address to bind for host:port (freeaddrinfo it), or NULL with a message in err. */
static struct addrinfo *listen_address(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host, gai_strerror(rc));
        return NULL;
    }
    return ai;
}

static int open_listener(const char *host, int port, int *actual_port, char *err, size_t errlen)
{
    struct addrinfo *ai = listen_address(host, port, err, errlen);
    if (!ai) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *actual_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* Whether host:port is free, asked without SO_REUSEPORT. The workers' sockets set it (each
 * accepts on its own), and with it Linux lets any process of the same user bind the same address
 * too: a second gateway would start silently and the kernel would split connections between the
 * two. A bind without the option fails if anything at all listens there, so this probe turns
 * that into EADDRINUSE at start-up. */
static int check_address_free(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo *ai = listen_address(host, port, err, errlen);
    if (!ai) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = 0;
    if (fd >= 0) {
        int one = 1;
        /* connections of an earlier run in TIME_WAIT are no one's: they must not count */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno == EADDRINUSE) {
            snprintf(err, errlen,
                     "cannot listen on %s:%d: the address is already in use (another "
                     "modelswitch or another program is listening there)",
                     host, port);
            rc = -1;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    return rc;
}

static void on_connection(uv_stream_t *server, int status)
{
    worker_t *w = server->data;
    if (status < 0) return;
    http_accept(w, server);
}

static void close_listener(worker_t *w)
{
    if (w->listener_open) {
        w->listener_open = 0;
        uv_close((uv_handle_t *)&w->listener, NULL);
    }
}

/* ---- config generations ---- */

void srv_gen_release(srv_gen *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) g->destroy(g);
}

void srv_worker_adopt(worker_t *w)
{
    srv_gen *g = atomic_exchange_explicit(&w->next, NULL, memory_order_acquire);
    if (!g) return;
    srv_gen *old = w->gen;
    w->gen = g;
    w->cfg = g->cfg;
    w->route = g->route;
    srv_gen_release(old); /* requests still on it hold their own references */
}

static void on_gen_wakeup(uv_async_t *a)
{
    srv_worker_adopt(a->data);
}

void srv_publish(srv_t *s, srv_gen *g)
{
    for (int i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        /* release: the worker that takes it sees it whole */
        srv_gen *unread = atomic_exchange_explicit(&w->next, srv_gen_hold(g), memory_order_acq_rel);
        srv_gen_release(unread); /* two reloads before the worker looked: the first is skipped */
        uv_async_send(&w->gen_wakeup);
    }
    srv_gen_release(s->gen);
    s->gen = g;
}

void srv_set_reloader(srv_t *s, const srv_reloader *r)
{
    s->reloader = *r;
}

static void stop_worker(worker_t *w, int force)
{
    close_listener(w);
    uv_timer_stop(&w->drain_timer);
    if (force) {
        if (w->srv->h.on_drain_kill) w->srv->h.on_drain_kill(w);
        http_close_all(w);
    } else
        http_finish_drain(w);
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->gen_wakeup, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
    uv_close((uv_handle_t *)&w->held_check, NULL);
    uv_close((uv_handle_t *)&w->clock_prepare, NULL);
    uv_close((uv_handle_t *)&w->clock_check, NULL);
}

void srv_worker_check_drained(worker_t *w)
{
    if (w->draining == 1 && w->inflight == 0 && w->app_work == 0) {
        w->draining = 2;
        stop_worker(w, 0);
    }
}

void srv_app_work_begin(worker_t *w)
{
    w->app_work++;
}

void srv_app_work_end(worker_t *w)
{
    w->app_work--;
    if (w->draining) srv_worker_check_drained(w);
}

/* Two lowercase hex digits of every byte value (request ids). */
static const char srv_hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void srv_new_request_id(worker_t *w, char *out)
{
    /* Time first, so ids sort by time and the ledger's request-id indexes grow at one end
     * instead of being written at random pages; then 20 random bits of the worker (salt) and a
     * 32-bit per-worker counter, so two workers or two processes never collide. */
    uint64_t ms = (uint64_t)ms_loop_now_ms() & 0xFFFFFFFFFFFull;
    uint64_t tail = ((w->rid_salt & 0xFFFFFull) << 32) | (++w->rid_seq & 0xFFFFFFFFull);
    /* "req_" + 11 hex digits of time + 13 of salt and counter (what "%011llx%013llx" would
     * give): the same 96 bits as 16 digits and 8, written a byte (two digits) at a time */
    uint64_t hi = ms << 20 | tail >> 32, lo = tail & 0xFFFFFFFFull;
    memcpy(out, "req_", 4);
    for (int i = 0; i < 8; i++)
        memcpy(out + 4 + 2 * i, srv_hex_pairs + 2 * ((hi >> (56 - 8 * i)) & 0xFF), 2);
    for (int i = 0; i < 4; i++)
        memcpy(out + 20 + 2 * i, srv_hex_pairs + 2 * ((lo >> (24 - 8 * i)) & 0xFF), 2);
    out[28] = '\0';
}

static void on_drain_timeout(uv_timer_t *t)
{
    worker_t *w = t->data;
    if (w->draining == 1) {
        log_warn("worker %d: drain timeout with %llu requests in flight; closing them", w->id,
                 (unsigned long long)w->inflight);
        w->draining = 2;
        stop_worker(w, 1);
    }
}

static void on_wakeup(uv_async_t *a)
{
    worker_t *w = a->data;
    if (w->draining) return;
    w->draining = 1;
    http_drain_worker(w);
    uv_timer_start(&w->drain_timer, on_drain_timeout, (uint64_t)w->cfg->drain_timeout_ms, 0);
    srv_worker_check_drained(w);
}

/* Runs the loop without sleeping while events keep coming less than busy_poll_us apart (see the
 * top comment). Returns what uv_run does: 0 once the loop has nothing left to run.
 *
 * Each turn peeks at the loop's epoll set (epoll_wait, zero timeout, nothing consumed: libuv's
 * descriptors are level-triggered) to learn whether anything happened, then lets uv_run(NOWAIT)
 * do the work. The uv_run also matters when nothing was seen: libuv registers a descriptor's new
 * interest (an upstream socket that starts reading, say) with epoll only when it next polls, so
 * without it a peek could not see the very answer it waits for. */
static int srv_busy_poll(worker_t *w, int epfd)
{
    srv_t *s = w->srv;
    if (atomic_fetch_add(&s->polling, 1) >= s->poll_slots) {
        atomic_fetch_sub(&s->polling, 1);
        return 1;
    }
    int64_t window = (int64_t)w->cfg->busy_poll_us * 1000;
    int64_t start = (int64_t)ms_mono_ns(), last = start, now = start;
    int alive = 1;
    while (now - last < window && !bg_cpu_wanted(now)) {
        struct epoll_event ev;
        int hit = epoll_wait(epfd, &ev, 1, 0) > 0;
        if (!(alive = uv_run(&w->loop, UV_RUN_NOWAIT))) break;
        now = (int64_t)ms_mono_ns();
        if (hit) {
            last = now;
            w->poll_hits++;
        }
    }
    atomic_fetch_sub(&s->polling, 1);
    w->poll_ns += (uint64_t)(now - start);
    w->polls++;
    return alive;
}

/* The loop clock's readings last one loop phase (util.h): none survives the wait for events, nor
 * the I/O callbacks into the timers of the next iteration. The prepare phase, just before that
 * wait, is also where the iteration's log lines go out (log_batch_flush): nothing waits in a
 * batch while the worker sleeps. */
static void on_clock_prepare(uv_prepare_t *h)
{
    (void)h;
    ms_loop_clock_tick();
    log_batch_flush();
}

static void on_clock_check(uv_check_t *h)
{
    (void)h;
    ms_loop_clock_tick();
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    char name[16];
    ms_loop_clock_on();
    snprintf(name, sizeof name, "ms-worker-%d", w->id);
    pthread_setname_np(pthread_self(), name); /* what top -H and perf show */
    log_batch_begin(); /* flushed by on_clock_prepare at each iteration's end */
    if (w->cfg->busy_poll_us > 0) {
        int epfd = uv_backend_fd(&w->loop);
        while (uv_run(&w->loop, UV_RUN_ONCE) && srv_busy_poll(w, epfd)) {
        }
        log_info("worker %d: busy polling: %.3f s spent in %" PRIu64
                 " polls, which picked up %" PRIu64 " events without sleeping",
                 w->id, (double)w->poll_ns / 1e9, w->polls, w->poll_hits);
    } else {
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
    up_ctx_free(w->up);
    w->up = NULL;
    /* let the upstream context's handles finish closing */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    log_batch_end();
}

srv_t *srv_new(const cfg_t *cfg, const srv_shared *sh, const srv_handlers *h,
               const char *listen_override, char *err, size_t errlen)
{
    if (!h || !h->dispatch) {
        snprintf(err, errlen, "no request handler");
        srv_gen_release(sh->gen);
        return NULL;
    }
    srv_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        srv_gen_release(sh->gen);
        return NULL;
    }
    s->cfg = cfg;
    s->sh = *sh;
    s->h = *h;
    s->gen = sh->gen;
    if (listen_override) {
        if (parse_listen(listen_override, s->host, sizeof s->host, &s->port) != 0) {
            snprintf(err, errlen, "--listen: expected HOST:PORT, got '%s'", listen_override);
            free(s);
            return NULL;
        }
    } else {
        snprintf(s->host, sizeof s->host, "%s", cfg->listen_host);
        s->port = cfg->listen_port;
    }
    s->nworkers = cfg->workers > 0 ? cfg->workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t cpus;
    s->poll_slots = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    if (s->poll_slots < 1) s->poll_slots = 1;
    if (s->nworkers < 1) s->nworkers = 1;
    s->workers = calloc((size_t)s->nworkers, sizeof *s->workers);
    if (!s->workers) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    if (s->port != 0 && check_address_free(s->host, s->port, err, errlen) != 0) goto fail;
    for (int i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        w->srv = s;
        w->id = i;
        w->gen = srv_gen_hold(s->gen);
        w->cfg = s->gen->cfg;
        w->route = s->gen->route;
        w->kc = sh->kc;
        w->bill = sh->bill;
        w->rl = sh->rl;
        w->sh = sh->sh;
        if (getrandom(&w->rid_salt, sizeof w->rid_salt, 0) != sizeof w->rid_salt)
            w->rid_salt = (uint64_t)time(NULL) ^ ((uint64_t)i << 40);
        int actual = 0;
        int fd = open_listener(s->host, s->port, &actual, err, errlen);
        if (fd < 0) goto fail;
        if (s->port == 0) s->port = actual;
        w->readbuf_len = READBUF_SIZE;
        w->readbuf = malloc(READBUF_SIZE);
        uv_loop_init(&w->loop);
        uv_tcp_init(&w->loop, &w->listener);
        w->listener.data = w;
        if (!w->readbuf || uv_tcp_open(&w->listener, fd) != 0 ||
            uv_listen((uv_stream_t *)&w->listener, 4096, on_connection) != 0) {
            snprintf(err, errlen, "cannot start listening on %s:%d", s->host, s->port);
            close(fd);
            goto fail;
        }
        w->listener_open = 1;
        uv_async_init(&w->loop, &w->wakeup, on_wakeup);
        w->wakeup.data = w;
        uv_async_init(&w->loop, &w->gen_wakeup, on_gen_wakeup);
        w->gen_wakeup.data = w;
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_check_init(&w->loop, &w->held_check);
        w->held_check.data = w;
        /* unreferenced: they never keep a loop alive that has nothing else to do */
        uv_prepare_init(&w->loop, &w->clock_prepare);
        uv_prepare_start(&w->clock_prepare, on_clock_prepare);
        uv_unref((uv_handle_t *)&w->clock_prepare);
        uv_check_init(&w->loop, &w->clock_check);
        uv_check_start(&w->clock_check, on_clock_check);
        uv_unref((uv_handle_t *)&w->clock_check);
        w->up = up_ctx_new(&w->loop);
        if (!w->up) {
            snprintf(err, errlen, "cannot create the upstream client");
            goto fail;
        }
        if (h->worker_init) {
            if (h->worker_init(w) != 0) {
                snprintf(err, errlen, "cannot set up worker %d's request handlers", i);
                goto fail;
            }
            w->app_ready = 1;
        }
    }
    return s;
fail:
    srv_free(s);
    return NULL;
}

static uv_signal_t sig_term, sig_int, sig_hup;
static srv_t *g_srv;

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("received %s: draining (in-flight requests finish, new ones get 503)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT");
    g_srv->stopping = 1;
    for (int i = 0; i < g_srv->nworkers; i++)
        uv_async_send(&g_srv->workers[i].wakeup);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_hup(uv_signal_t *h, int signum)
{
    srv_t *s = g_srv;
    if (s->stopping) {
        log_warn("received SIGHUP while shutting down: no reload");
        return;
    }
    if (s->reloader.reload) s->reloader.reload(s->reloader.ctx, s);
}

int srv_run(srv_t *s)
{
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    g_srv = s;
    uv_signal_init(&main_loop, &sig_term);
    uv_signal_init(&main_loop, &sig_int);
    uv_signal_init(&main_loop, &sig_hup);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_hup, on_hup, SIGHUP);
    /* SIGHUP alone does not keep the loop running: the drain ends it */
    uv_unref((uv_handle_t *)&sig_hup);
    for (int i = 0; i < s->nworkers; i++)
        uv_thread_create(&s->workers[i].thread, worker_main, &s->workers[i]);
    log_info("listening on http://%s:%d with %d workers", s->host, s->port, s->nworkers);
    if (s->reloader.ready) s->reloader.ready(s->reloader.ctx, s);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < s->nworkers; i++)
        uv_thread_join(&s->workers[i].thread);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    /* libuv put back the default action, which ends the process: a late reload must not */
    signal(SIGHUP, SIG_IGN);
    uv_loop_close(&main_loop);
    log_info("drained; exiting");
    return 0;
}

static void worker_drop_gens(worker_t *w)
{
    srv_gen_release(atomic_exchange(&w->next, NULL));
    srv_gen_release(w->gen);
    w->gen = NULL;
}

void srv_free(srv_t *s)
{
    if (!s) return;
    for (int i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        if (!w->readbuf && !w->listener_open && !w->up) {
            worker_drop_gens(w);
            continue;
        }
        if (w->up) {
            up_ctx_free(w->up);
            w->up = NULL;
        }
        if (w->listener_open) {
            /* never ran: close what srv_new opened */
            close_listener(w);
            uv_close((uv_handle_t *)&w->wakeup, NULL);
            uv_close((uv_handle_t *)&w->gen_wakeup, NULL);
            uv_close((uv_handle_t *)&w->drain_timer, NULL);
            uv_close((uv_handle_t *)&w->held_check, NULL);
            uv_close((uv_handle_t *)&w->clock_prepare, NULL);
            uv_close((uv_handle_t *)&w->clock_check, NULL);
        }
        uv_run(&w->loop, UV_RUN_DEFAULT);
        /* after the loop: nothing of the handler layer can run any more */
        if (w->app_ready && s->h.worker_free) s->h.worker_free(w);
        w->app_ready = 0;
        uv_run(&w->loop, UV_RUN_DEFAULT); /* handles worker_free closed, if any */
        uv_loop_close(&w->loop);
        free(w->readbuf);
        free(w->cork);
        worker_drop_gens(w); /* last: the loop's callbacks read w->cfg */
    }
    free(s->workers);
    srv_gen_release(s->gen);
    free(s);
}
