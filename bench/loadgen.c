/* bench/loadgen.c: the open-loop HTTP/1.1 load generator of ModelSwitch's benchmark.
 *
 * bench/run.sh uses wrk for closed-loop throughput; wrk cannot send at a smooth fixed rate, and a
 * closed loop hides queueing ("coordinated omission": a slow answer delays the next send, so the
 * delay is never measured). This tool fixes a schedule instead: request i is due at
 * t0 + i/rate, whatever happened before, and its latency is measured from that scheduled time to
 * the last byte of the answer. A request that finds every connection busy waits (and the wait
 * counts); more connections are opened up to --max-conns. Also printed: "lag" (scheduled time to
 * the actual send: the load generator's own wake-up delay plus any wait for a connection) and
 * "svc" (actual send to the last byte, which leaves that delay out).
 *
 * Modes:
 *   --rate R --duration S   open loop at R req/s for S seconds (--warmup W: the first W seconds
 *                           are sent but not recorded)
 *   --count N               closed loop: exactly N requests over --conns connections (callgrind
 *                           runs, warm-up)
 *   --hold N                N connections, one request on each (at most --inflight at once),
 *                           then all are kept open for --hold-secs; prints "READY <open>" once
 *                           every request has completed (RSS with idle keep-alive connections,
 *                           and with --inflight N and a slow stream, N concurrent streams)
 *
 * Every request is the same bytes: --method, --path, -H headers and --body-file, except that
 * --keys-file (one key a line) gives each request the next key in turn as its Authorization
 * header, in place of any -H Authorization (the NAME-accts workloads: many accounts at once, as
 * wrk.lua does with BENCH_KEYS). Answers are
 * parsed with llhttp (Content-Length, chunked, keep-alive); the first body byte's time gives the
 * time to first byte of a stream. Results are printed as key=value lines on stdout; the first
 * non-2xx answer is shown on stderr.
 *
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -I/usr/share/include/llhttp bench/loadgen.c \
 *        /usr/share/llhttp/{llhttp,api,http}.c -lm -o loadgen
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_SAMPLES (20u * 1000u * 1000u)
#define LG_MAX_HEADERS 32
#define LG_MAX_KEYS 65536 /* --keys-file */
#define LG_MAX_BODY (64u * 1024u * 1024u)
#define LG_MAX_CONNS 60000
#define LG_MAX_CONNECTING 256 /* concurrent connects: a burst larger than the SYN queue stalls */
#define LG_ERRBODY_MAX 600
#define LG_MAX_STATUSES 16
#define LG_NS 1000000000LL

typedef enum { LG_FREE, LG_CONNECTING, LG_IDLE, LG_BUSY } lg_state;
typedef enum { LG_OPEN, LG_COUNT, LG_HOLD } lg_mode;

typedef struct lg_conn {
    int fd;
    lg_state state;
    bool want_out; /* EPOLLOUT registered */
    bool used;     /* hold mode: this connection already made its one request */
    bool record;   /* the current request is past the warm-up */
    bool done;     /* the current answer is complete */
    bool streaming;
    size_t sent;      /* bytes of the request written */
    size_t req;       /* which of lg.reqs it sends */
    int64_t sched_ns; /* when the current request was due */
    int64_t sent_ns;  /* when its first byte was written */
    int64_t first_ns; /* first body byte of the answer, 0 = none yet */
    int status;
    llhttp_t parser;
    struct lg_conn *next_idle;
} lg_conn;

static struct {
    /* options */
    lg_mode mode;
    const char *host;
    int port;
    const char *method;
    const char *path;
    const char *body_file;
    const char *headers[LG_MAX_HEADERS];
    int nheaders;
    double rate;
    double duration_s;
    double warmup_s;
    long count;
    long hold;
    long inflight_max;
    double hold_secs;
    int conns;
    int max_conns;
    int64_t timeout_ns;
    /* the requests: one, or one a key of --keys-file, taken in turn */
    const char *keys_file;
    char **reqs;
    size_t *req_lens;
    size_t nreqs, next_req;
    /* connections */
    lg_conn *c;
    int nslots; /* slots ever used (FREE ones are reused first) */
    int nopen;  /* CONNECTING + IDLE + BUSY */
    int nconnecting;
    int fresh; /* open connections that have not made a request yet */
    int inflight;
    lg_conn *idle;
    int ep;
    struct sockaddr_in addr;
    llhttp_settings_t settings;
    /* schedule */
    int64_t t0;
    long total;    /* requests to send */
    long next_due; /* open mode: requests [dispatched, next_due) are due and waiting */
    long dispatched;
    long completed;
    int streaming_now, streaming_max;
    /* results */
    int64_t *lat, *ttfb, *lag, *svc;
    size_t nlat, nttfb, nlag, nsvc;
    long ok, non2xx, err_connect, err_io, err_timeout, err_parse, closed_by_peer, conns_opened;
    int statuses[LG_MAX_STATUSES][2];
    int nstatuses;
    char errbody[LG_ERRBODY_MAX + 1];
    size_t errbody_len;
    int errbody_status;
    bool errbody_taken;
    lg_conn *errbody_conn;
} lg;

static char lg_rbuf[256 * 1024];

static int64_t lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LG_NS + ts.tv_nsec;
}

static void lg_die(const char *msg)
{
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

/* ---------------------------------------------------------------------------------------------
 * llhttp callbacks */

static int lg_on_headers_complete(llhttp_t *p)
{
    lg_conn *c = p->data;
    c->status = llhttp_get_status_code(p);
    if ((c->status < 200 || c->status > 299) && !lg.errbody_taken) {
        lg.errbody_taken = true;
        lg.errbody_status = c->status;
        lg.errbody_conn = c;
    }
    return 0;
}

static int lg_on_body(llhttp_t *p, const char *at, size_t n)
{
    lg_conn *c = p->data;
    if (c->first_ns == 0) {
        c->first_ns = lg_now();
        c->streaming = true;
        if (++lg.streaming_now > lg.streaming_max) lg.streaming_max = lg.streaming_now;
    }
    if (lg.errbody_conn == c && lg.errbody_len < LG_ERRBODY_MAX) {
        size_t k = LG_ERRBODY_MAX - lg.errbody_len;
        if (k > n) k = n;
        memcpy(lg.errbody + lg.errbody_len, at, k);
        lg.errbody_len += k;
    }
    return 0;
}

static int lg_on_message_complete(llhttp_t *p)
{
    lg_conn *c = p->data;
    c->done = true;
    /* Pause so that bytes after the answer (there should be none) are not parsed as the next. */
    return HPE_PAUSED;
}

/* ---------------------------------------------------------------------------------------------
 * connections */

static void lg_ep_set(lg_conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(lg.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) lg_die("epoll_ctl MOD failed");
    c->want_out = out;
}

static void lg_push_idle(lg_conn *c)
{
    c->state = LG_IDLE;
    c->next_idle = lg.idle;
    lg.idle = c;
}

static lg_conn *lg_pop_idle(void)
{
    /* Closed connections stay on the list as FREE; skip them here. */
    while (lg.idle) {
        lg_conn *c = lg.idle;
        lg.idle = c->next_idle;
        c->next_idle = NULL;
        if (c->state == LG_IDLE && !(lg.mode == LG_HOLD && c->used)) return c;
    }
    return NULL;
}

static void lg_close(lg_conn *c)
{
    if (c->state == LG_FREE) return;
    if (c->state == LG_CONNECTING) lg.nconnecting--;
    if (c->state == LG_BUSY) lg.inflight--;
    if (!c->used) lg.fresh--;
    if (c->streaming) {
        c->streaming = false;
        lg.streaming_now--;
    }
    if (lg.errbody_conn == c) lg.errbody_conn = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = LG_FREE;
    lg.nopen--;
}

static bool lg_open(void)
{
    lg_conn *c = NULL;
    if (lg.nslots < lg.max_conns) {
        c = &lg.c[lg.nslots++];
    } else {
        for (int i = 0; i < lg.nslots && !c; i++)
            if (lg.c[i].state == LG_FREE && !(lg.mode == LG_HOLD && lg.c[i].used)) c = &lg.c[i];
        if (!c) return false;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("loadgen: socket");
        return false;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (struct sockaddr *)&lg.addr, sizeof lg.addr);
    if (rc < 0 && errno != EINPROGRESS) {
        close(fd);
        lg.err_connect++;
        return false;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->state = LG_CONNECTING;
    llhttp_init(&c->parser, HTTP_RESPONSE, &lg.settings);
    c->parser.data = c;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(lg.ep, EPOLL_CTL_ADD, fd, &ev) < 0) lg_die("epoll_ctl ADD failed");
    c->want_out = true;
    lg.nopen++;
    lg.nconnecting++;
    lg.fresh++;
    lg.conns_opened++;
    return true;
}

static void lg_write_more(lg_conn *c)
{
    const char *req = lg.reqs[c->req];
    size_t req_len = lg.req_lens[c->req];
    while (c->sent < req_len) {
        ssize_t n = send(c->fd, req + c->sent, req_len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) lg_ep_set(c, true);
            return;
        }
        lg.err_io++;
        lg_close(c);
        return;
    }
    if (c->want_out) lg_ep_set(c, false);
}

static void lg_start(lg_conn *c, int64_t sched_ns, bool record)
{
    c->state = LG_BUSY;
    if (!c->used) lg.fresh--;
    c->used = true;
    c->sent = 0;
    c->req = lg.next_req;
    lg.next_req = (lg.next_req + 1) % lg.nreqs;
    c->sched_ns = sched_ns;
    c->first_ns = 0;
    c->status = 0;
    c->done = false;
    c->record = record;
    lg.inflight++;
    lg.dispatched++;
    c->sent_ns = lg_now();
    if (record && lg.nlag < LG_MAX_SAMPLES) lg.lag[lg.nlag++] = c->sent_ns - sched_ns;
    lg_write_more(c);
}

static void lg_count_status(int status)
{
    for (int i = 0; i < lg.nstatuses; i++) {
        if (lg.statuses[i][0] == status) {
            lg.statuses[i][1]++;
            return;
        }
    }
    if (lg.nstatuses < LG_MAX_STATUSES) {
        lg.statuses[lg.nstatuses][0] = status;
        lg.statuses[lg.nstatuses][1] = 1;
        lg.nstatuses++;
    }
}

static void lg_complete(lg_conn *c, int64_t now)
{
    bool keep = llhttp_should_keep_alive(&c->parser);
    lg.completed++;
    lg.inflight--;
    if (c->streaming) {
        c->streaming = false;
        lg.streaming_now--;
    }
    if (c->status >= 200 && c->status <= 299) {
        lg.ok++;
    } else {
        lg.non2xx++;
        lg_count_status(c->status);
    }
    if (lg.errbody_conn == c) lg.errbody_conn = NULL;
    if (c->record) {
        if (lg.nlat < LG_MAX_SAMPLES) lg.lat[lg.nlat++] = now - c->sched_ns;
        if (lg.nsvc < LG_MAX_SAMPLES) lg.svc[lg.nsvc++] = now - c->sent_ns;
        if (c->first_ns && lg.nttfb < LG_MAX_SAMPLES)
            lg.ttfb[lg.nttfb++] = c->first_ns - c->sched_ns;
    }
    c->state = LG_IDLE; /* not BUSY any more, so lg_close does not count it in flight */
    if (!keep) {
        lg_close(c);
        return;
    }
    llhttp_resume(&c->parser);
    lg_push_idle(c);
}

static void lg_on_readable(lg_conn *c)
{
    ssize_t n = recv(c->fd, lg_rbuf, sizeof lg_rbuf, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (c->state == LG_BUSY)
            lg.err_io++;
        else
            lg.closed_by_peer++;
        lg_close(c);
        return;
    }
    if (n == 0) {
        if (c->state == LG_BUSY) {
            /* An answer delimited by the end of the connection completes here. */
            llhttp_finish(&c->parser);
            if (c->done) {
                lg_complete(c, lg_now());
            } else {
                lg.err_io++;
            }
        } else {
            lg.closed_by_peer++;
        }
        lg_close(c);
        return;
    }
    if (c->state != LG_BUSY) {
        /* Bytes nobody asked for: the server is confused; drop the connection. */
        lg.err_parse++;
        lg_close(c);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, lg_rbuf, (size_t)n);
    if (c->done) {
        lg_complete(c, lg_now());
        return;
    }
    if (e != HPE_OK) {
        fprintf(stderr, "loadgen: bad answer: %s (%s)\n", llhttp_errno_name(e),
                llhttp_get_error_reason(&c->parser));
        lg.err_parse++;
        lg_close(c);
    }
}

static void lg_on_event(lg_conn *c, uint32_t ev)
{
    if (c->state == LG_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            lg.err_connect++;
            lg_close(c);
            return;
        }
        lg.nconnecting--;
        lg_ep_set(c, false);
        lg_push_idle(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) lg_on_readable(c);
    if (c->state == LG_BUSY && (ev & EPOLLOUT) && c->sent < lg.req_lens[c->req]) lg_write_more(c);
}

static void lg_check_timeouts(int64_t now)
{
    for (int i = 0; i < lg.nslots; i++) {
        lg_conn *c = &lg.c[i];
        if (c->state == LG_BUSY && now - c->sched_ns > lg.timeout_ns) {
            lg.err_timeout++;
            lg_close(c);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * the loop */

static void lg_poll(int64_t until_ns)
{
    struct epoll_event evs[256];
    int64_t now = lg_now();
    int64_t wait = until_ns - now;
    if (wait < 0) wait = 0;
    struct timespec ts = {.tv_sec = wait / LG_NS, .tv_nsec = wait % LG_NS};
    int n = epoll_pwait2(lg.ep, evs, 256, &ts, NULL);
    if (n < 0 && errno != EINTR) lg_die("epoll_pwait2 failed");
    for (int i = 0; i < n; i++)
        lg_on_event(evs[i].data.ptr, evs[i].events);
}

static int64_t lg_sched(long i)
{
    return lg.t0 + (int64_t)((double)i * 1e9 / lg.rate);
}

/* Opens the first connections and waits until they are up (or have failed). */
static void lg_preconnect(int n)
{
    for (int i = 0; i < n; i++)
        if (!lg_open()) break;
    int64_t deadline = lg_now() + 10 * LG_NS;
    while (lg.nconnecting > 0 && lg_now() < deadline)
        lg_poll(lg_now() + 10 * 1000000LL);
    if (lg.nopen == 0) lg_die("could not connect to the target");
}

static void lg_run_open(void)
{
    lg_preconnect(lg.conns);
    lg.total = (long)(lg.rate * lg.duration_s);
    long warm = (long)(lg.rate * lg.warmup_s);
    lg.t0 = lg_now() + 1000000LL;
    int64_t last_check = 0;
    int64_t drain_deadline = 0;
    for (;;) {
        int64_t now = lg_now();
        while (lg.next_due < lg.total && lg_sched(lg.next_due) <= now)
            lg.next_due++;
        /* Due requests go out in schedule order on whatever connection is free. */
        while (lg.dispatched < lg.next_due) {
            lg_conn *c = lg_pop_idle();
            if (!c) break;
            lg_start(c, lg_sched(lg.dispatched), lg.dispatched >= warm);
        }
        long waiting = lg.next_due - lg.dispatched;
        while (waiting > lg.nconnecting && lg.nopen < lg.max_conns &&
               lg.nconnecting < LG_MAX_CONNECTING)
            if (!lg_open()) break;
        if (now - last_check > 50 * 1000000LL) {
            lg_check_timeouts(now);
            last_check = now;
        }
        if (lg.next_due >= lg.total) {
            if (lg.dispatched >= lg.total && lg.inflight == 0) break;
            if (!drain_deadline) drain_deadline = now + lg.timeout_ns;
            if (now > drain_deadline) break;
        }
        int64_t until = now + 10 * 1000000LL;
        if (lg.next_due < lg.total && lg_sched(lg.next_due) < until) until = lg_sched(lg.next_due);
        lg_poll(until);
    }
    /* Requests that never got an answer count as timeouts. */
    lg.err_timeout += lg.total - lg.dispatched + lg.inflight;
}

static void lg_run_count(void)
{
    lg_preconnect(lg.conns);
    lg.total = lg.count;
    lg.t0 = lg_now();
    int64_t last_check = 0;
    while (lg.completed + lg.err_io + lg.err_timeout + lg.err_parse < lg.total) {
        int64_t now = lg_now();
        lg_conn *c;
        while (lg.dispatched < lg.total && (c = lg_pop_idle()))
            lg_start(c, lg_now(), true);
        if (lg.dispatched < lg.total && !lg.idle && lg.nopen < lg.conns) lg_open();
        if (now - last_check > 50 * 1000000LL) {
            lg_check_timeouts(now);
            last_check = now;
        }
        if (lg.nopen == 0 && lg.err_connect > 100) lg_die("the target refuses connections");
        lg_poll(now + 10 * 1000000LL);
    }
}

static void lg_run_hold(void)
{
    lg.total = lg.hold;
    lg.max_conns = (int)lg.hold;
    lg.t0 = lg_now();
    int64_t last_check = 0;
    while (lg.completed + lg.err_io + lg.err_timeout + lg.err_parse < lg.total) {
        int64_t now = lg_now();
        while (lg.fresh < lg.total - lg.dispatched && lg.nconnecting < LG_MAX_CONNECTING)
            if (!lg_open()) break;
        lg_conn *c;
        while (lg.dispatched < lg.total && lg.inflight < lg.inflight_max && (c = lg_pop_idle()))
            lg_start(c, lg_now(), true);
        if (now - last_check > 50 * 1000000LL) {
            lg_check_timeouts(now);
            last_check = now;
        }
        if (lg.err_connect > lg.hold / 10 + 100) lg_die("too many failed connects");
        lg_poll(now + 10 * 1000000LL);
    }
    printf("READY %d\n", lg.nopen);
    fflush(stdout);
    int64_t end = lg_now() + (int64_t)(lg.hold_secs * 1e9);
    while (lg_now() < end)
        lg_poll(end < lg_now() + 50 * 1000000LL ? end : lg_now() + 50 * 1000000LL);
}

/* ---------------------------------------------------------------------------------------------
 * results */

static int lg_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void lg_print_dist(const char *name, int64_t *v, size_t n)
{
    if (n == 0) {
        printf("%s_n=0\n", name);
        return;
    }
    qsort(v, n, sizeof *v, lg_cmp);
    static const struct {
        const char *s;
        double q;
    } qs[] = {{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p999", 0.999}};
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    printf("%s_n=%zu\n", name, n);
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        size_t idx = (size_t)(qs[k].q * (double)n);
        if (idx >= n) idx = n - 1;
        printf("%s_%s_us=%.1f\n", name, qs[k].s, (double)v[idx] / 1e3);
    }
    printf("%s_max_us=%.1f\n", name, (double)v[n - 1] / 1e3);
    printf("%s_mean_us=%.1f\n", name, sum / (double)n / 1e3);
}

static void lg_report(int64_t elapsed_ns)
{
    static const char *modes[] = {"open", "count", "hold"};
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("mode=%s\n", modes[lg.mode]);
    if (lg.mode == LG_OPEN)
        printf("rate=%.0f\nduration_s=%.1f\nwarmup_s=%.1f\n", lg.rate, lg.duration_s, lg.warmup_s);
    printf("requests=%ld\ncompleted=%ld\nok=%ld\nnon2xx=%ld\n", lg.total, lg.completed, lg.ok,
           lg.non2xx);
    printf("err_connect=%ld\nerr_io=%ld\nerr_timeout=%ld\nerr_parse=%ld\n", lg.err_connect,
           lg.err_io, lg.err_timeout, lg.err_parse);
    printf("errors=%ld\n", lg.err_connect + lg.err_io + lg.err_timeout + lg.err_parse);
    printf("closed_by_peer=%ld\nconns_opened=%ld\nopen_at_end=%d\nmax_streaming=%d\n",
           lg.closed_by_peer, lg.conns_opened, lg.nopen, lg.streaming_max);
    printf("elapsed_s=%.3f\n", (double)elapsed_ns / 1e9);
    if (lg.mode == LG_OPEN && lg.duration_s > lg.warmup_s)
        printf("achieved_rps=%.1f\n", (double)lg.nlat / (lg.duration_s - lg.warmup_s));
    else
        printf("achieved_rps=%.1f\n", (double)lg.completed / ((double)elapsed_ns / 1e9));
    for (int i = 0; i < lg.nstatuses; i++)
        printf("status_%d=%d\n", lg.statuses[i][0], lg.statuses[i][1]);
    lg_print_dist("lat", lg.lat, lg.nlat);
    lg_print_dist("ttfb", lg.ttfb, lg.nttfb);
    lg_print_dist("lag", lg.lag, lg.nlag);
    lg_print_dist("svc", lg.svc, lg.nsvc);
    printf("cpu_user_s=%.3f\ncpu_sys_s=%.3f\n",
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    if (lg.errbody_taken) {
        lg.errbody[lg.errbody_len] = '\0';
        for (size_t i = 0; i < lg.errbody_len; i++)
            if (lg.errbody[i] == '\n' || lg.errbody[i] == '\r') lg.errbody[i] = ' ';
        fprintf(stderr, "loadgen: first non-2xx answer: %d %s\n", lg.errbody_status, lg.errbody);
    }
}

/* ---------------------------------------------------------------------------------------------
 * setup */

static void lg_usage(void)
{
    fprintf(stderr,
            "usage: loadgen --port P [--host 127.0.0.1] [--method POST] [--path /] [-H 'K: V']...\n"
            "               [--body-file F] [--keys-file F] [--timeout-ms 30000]\n"
            "         (--rate R --duration S [--warmup W] [--conns 64] [--max-conns 1000]\n"
            "          | --count N [--conns 16]\n"
            "          | --hold N [--inflight 100] [--hold-secs 0])\n");
    exit(2);
}

static char *lg_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = NULL;
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size < 0 || (uint64_t)st.st_size > LG_MAX_BODY)
        goto cleanup;
    data = malloc((size_t)st.st_size + 1);
    if (!data) goto cleanup;
    if (fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(data);
        data = NULL;
        goto cleanup;
    }
    *len = (size_t)st.st_size;
cleanup:
    fclose(f);
    return data;
}

/* One request's bytes, with "Authorization: Bearer KEY" when key is not NULL (and then no -H
 * Authorization). */
static char *lg_format(const char *body, size_t body_len, const char *key, size_t *out_len)
{
    size_t cap = 1024 + body_len + strlen(lg.path) + (key ? strlen(key) : 0);
    for (int i = 0; i < lg.nheaders; i++)
        cap += strlen(lg.headers[i]) + 2;
    char *req = malloc(cap);
    if (!req) lg_die("out of memory");
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", lg.method, lg.path, lg.host,
                     lg.port);
    size_t len = (size_t)n;
    for (int i = 0; i < lg.nheaders; i++) {
        if (key && strncasecmp(lg.headers[i], "authorization:", 14) == 0) continue;
        len += (size_t)snprintf(req + len, cap - len, "%s\r\n", lg.headers[i]);
    }
    if (key) len += (size_t)snprintf(req + len, cap - len, "Authorization: Bearer %s\r\n", key);
    if (body) len += (size_t)snprintf(req + len, cap - len, "Content-Length: %zu\r\n", body_len);
    len += (size_t)snprintf(req + len, cap - len, "\r\n");
    if (body) {
        memcpy(req + len, body, body_len);
        len += body_len;
    }
    *out_len = len;
    return req;
}

static void lg_add_request(char *req, size_t len)
{
    char **r = realloc(lg.reqs, (lg.nreqs + 1) * sizeof *r);
    size_t *l = r ? realloc(lg.req_lens, (lg.nreqs + 1) * sizeof *l) : NULL;
    if (!r || !l) lg_die("out of memory");
    lg.reqs = r;
    lg.req_lens = l;
    lg.reqs[lg.nreqs] = req;
    lg.req_lens[lg.nreqs++] = len;
}

static void lg_build_request(void)
{
    size_t body_len = 0, len;
    char *body = NULL;
    if (lg.body_file) {
        body = lg_read_file(lg.body_file, &body_len);
        if (!body) lg_die("cannot read --body-file (missing, unreadable or over 64 MiB)");
    }
    if (lg.keys_file) {
        FILE *f = fopen(lg.keys_file, "r");
        if (!f) lg_die("cannot read --keys-file");
        char line[512];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0') continue;
            if (lg.nreqs >= LG_MAX_KEYS) lg_die("--keys-file: too many keys");
            char *req = lg_format(body, body_len, line, &len);
            lg_add_request(req, len);
        }
        fclose(f);
        if (lg.nreqs == 0) lg_die("--keys-file holds no key");
    } else {
        char *req = lg_format(body, body_len, NULL, &len);
        lg_add_request(req, len);
    }
    free(body);
}

static double lg_num(const char *s, double lo, double hi, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"host", required_argument, NULL, 'h'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"method", required_argument, NULL, 'm'},
                                         {"path", required_argument, NULL, 'u'},
                                         {"header", required_argument, NULL, 'H'},
                                         {"body-file", required_argument, NULL, 'b'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"hold", required_argument, NULL, 'o'},
                                         {"inflight", required_argument, NULL, 'i'},
                                         {"hold-secs", required_argument, NULL, 's'},
                                         {"conns", required_argument, NULL, 'c'},
                                         {"max-conns", required_argument, NULL, 'M'},
                                         {"timeout-ms", required_argument, NULL, 't'},
                                         {"keys-file", required_argument, NULL, 'K'},
                                         {NULL, 0, NULL, 0}};
    lg.host = "127.0.0.1";
    lg.path = "/";
    lg.method = NULL;
    lg.conns = 0;
    lg.max_conns = 1000;
    lg.inflight_max = 100;
    lg.timeout_ns = 30 * LG_NS;
    int modes = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "H:", opts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            lg.host = optarg;
            break;
        case 'p':
            lg.port = (int)lg_num(optarg, 1, 65535, "--port");
            break;
        case 'm':
            lg.method = optarg;
            break;
        case 'u':
            lg.path = optarg;
            break;
        case 'H':
            if (lg.nheaders >= LG_MAX_HEADERS) lg_die("too many headers");
            lg.headers[lg.nheaders++] = optarg;
            break;
        case 'b':
            lg.body_file = optarg;
            break;
        case 'K':
            lg.keys_file = optarg;
            break;
        case 'r':
            lg.rate = lg_num(optarg, 1, 1e7, "--rate");
            lg.mode = LG_OPEN;
            modes++;
            break;
        case 'd':
            lg.duration_s = lg_num(optarg, 0.1, 86400, "--duration");
            break;
        case 'w':
            lg.warmup_s = lg_num(optarg, 0, 86400, "--warmup");
            break;
        case 'n':
            lg.count = (long)lg_num(optarg, 1, LG_MAX_SAMPLES, "--count");
            lg.mode = LG_COUNT;
            modes++;
            break;
        case 'o':
            lg.hold = (long)lg_num(optarg, 1, LG_MAX_CONNS, "--hold");
            lg.mode = LG_HOLD;
            modes++;
            break;
        case 'i':
            lg.inflight_max = (long)lg_num(optarg, 1, LG_MAX_CONNS, "--inflight");
            break;
        case 's':
            lg.hold_secs = lg_num(optarg, 0, 86400, "--hold-secs");
            break;
        case 'c':
            lg.conns = (int)lg_num(optarg, 1, LG_MAX_CONNS, "--conns");
            break;
        case 'M':
            lg.max_conns = (int)lg_num(optarg, 1, LG_MAX_CONNS, "--max-conns");
            break;
        case 't':
            lg.timeout_ns = (int64_t)lg_num(optarg, 1, 86400000, "--timeout-ms") * 1000000;
            break;
        default:
            lg_usage();
        }
    }
    if (optind != argc || modes != 1 || lg.port == 0) lg_usage();
    if (lg.mode == LG_OPEN && lg.duration_s <= 0) lg_die("--rate needs --duration");
    if (lg.mode == LG_OPEN && lg.rate * lg.duration_s > LG_MAX_SAMPLES)
        lg_die("--rate x --duration is over 20 million requests");
    if (!lg.method) lg.method = lg.body_file ? "POST" : "GET";
    if (lg.conns == 0) lg.conns = lg.mode == LG_COUNT ? 16 : 64;
    if (lg.mode == LG_OPEN && lg.max_conns < lg.conns) lg.max_conns = lg.conns;
    if (lg.mode == LG_COUNT) lg.max_conns = lg.conns;

    signal(SIGPIPE, SIG_IGN);
    /* The default 50 µs timer slack would add up to 50 µs to every scheduled send. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    lg_build_request();
    lg.addr.sin_family = AF_INET;
    lg.addr.sin_port = htons((uint16_t)lg.port);
    if (inet_pton(AF_INET, lg.host, &lg.addr.sin_addr) != 1)
        lg_die("--host must be an IPv4 address");
    llhttp_settings_init(&lg.settings);
    lg.settings.on_headers_complete = lg_on_headers_complete;
    lg.settings.on_body = lg_on_body;
    lg.settings.on_message_complete = lg_on_message_complete;

    size_t slots = lg.mode == LG_HOLD ? (size_t)lg.hold : (size_t)lg.max_conns;
    size_t nsamples = lg.mode == LG_OPEN    ? (size_t)(lg.rate * lg.duration_s) + 1
                      : lg.mode == LG_COUNT ? (size_t)lg.count
                                            : (size_t)lg.hold;
    lg.c = calloc(slots, sizeof *lg.c);
    lg.lat = malloc(nsamples * sizeof(int64_t));
    lg.ttfb = malloc(nsamples * sizeof(int64_t));
    lg.lag = malloc(nsamples * sizeof(int64_t));
    lg.svc = malloc(nsamples * sizeof(int64_t));
    if (!lg.c || !lg.lat || !lg.ttfb || !lg.lag || !lg.svc) lg_die("out of memory");
    lg.ep = epoll_create1(EPOLL_CLOEXEC);
    if (lg.ep < 0) lg_die("epoll_create1 failed");

    int64_t start = lg_now();
    switch (lg.mode) {
    case LG_OPEN:
        lg_run_open();
        break;
    case LG_COUNT:
        lg_run_count();
        break;
    case LG_HOLD:
        lg_run_hold();
        break;
    }
    lg_report(lg_now() - start);
    for (int i = 0; i < lg.nslots; i++)
        lg_close(&lg.c[i]);
    close(lg.ep);
    free(lg.c);
    free(lg.lat);
    free(lg.ttfb);
    free(lg.lag);
    free(lg.svc);
    for (size_t i = 0; i < lg.nreqs; i++)
        free(lg.reqs[i]);
    free(lg.reqs);
    free(lg.req_lens);
    return 0;
}
