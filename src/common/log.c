/*
 * The logger (see log.h). Event-loop threads append lines to a bounded in-memory queue under a
 * mutex held only for a memcpy; a dedicated thread swaps the queue out and writes it to stderr
 * with one write(2). If stderr is slow and the queue is full, new lines are dropped and counted,
 * and the count is reported once stderr catches up: traffic never waits for the log.
 *
 * A worker thread (log_batch_begin) gathers its lines in a buffer of its own and queues them
 * together at the end of its loop iteration (log_batch_flush, from the loop's prepare phase):
 * one lock of the queue an iteration instead of one a request. With several workers the queue's
 * mutex is every request's, and its cache line moved between their cores on each line
 * (bench/scale.c). The lines wait microseconds longer, and a worker's own lines keep their
 * order.
 */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/util.h"

#define LOG_QUEUE_MAX (4u << 20)
#define LOG_BATCH_MS 20
/* A worker's batch: a loaded worker's iteration makes ~8 access lines of ~330 bytes; a line
 * that would not fit after the batch is flushed goes to the queue by itself */
#define LOG_THREAD_MAX (16u << 10)

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running;
    int idle; /* the thread waits with nothing queued: the next line wakes it */
    int stopping;
    char *q;
    size_t qlen;
    size_t dropped;
    _Atomic int level; /* a log_level; set again by a config reload while threads log */
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .level = LOG_INFO};

/* Lines ever dropped (L.dropped is reset once reported): the metrics read it without the lock. */
static _Atomic uint64_t dropped_total;

/* This thread's batch (log_batch_begin), NULL when its lines go to the queue one by one. */
static _Thread_local char *tl_buf;
static _Thread_local size_t tl_len, tl_lines;

uint64_t log_dropped_total(void)
{
    return atomic_load_explicit(&dropped_total, memory_order_relaxed);
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void *log_thread(void *arg)
{
    (void)arg;
    /* normal priority: its bursts are one short write every 20 ms, and log lines that wait
     * for idle CPU on a busy machine would reach operators (and tests) late */
    pthread_setname_np(pthread_self(), "ms-log");
    char *mine = malloc(LOG_QUEUE_MAX);
    if (!mine) return NULL;
    pthread_mutex_lock(&L.mu);
    for (;;) {
        if (L.qlen == 0 && L.dropped == 0 && !L.stopping) {
            /* Busy: wake every LOG_BATCH_MS and write what came meanwhile, so a loop thread never
             * pays a wake-up (a futex syscall) per line. Quiet: sleep until a line arrives. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += LOG_BATCH_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&L.cv, &L.mu, &ts);
            while (L.qlen == 0 && L.dropped == 0 && !L.stopping) {
                L.idle = 1;
                pthread_cond_wait(&L.cv, &L.mu);
            }
            L.idle = 0;
        }
        /* the two buffers trade places: the lines are written from where they were queued */
        size_t n = L.qlen, dropped = L.dropped;
        char *full = L.q;
        L.q = mine;
        mine = full;
        L.qlen = 0;
        L.dropped = 0;
        int stop = L.stopping;
        pthread_mutex_unlock(&L.mu);
        write_all(mine, n);
        if (dropped) {
            char msg[96];
            int m = snprintf(msg, sizeof msg,
                             "{\"level\":\"warn\",\"msg\":\"log queue full: %zu "
                             "lines dropped\"}\n",
                             dropped);
            write_all(msg, (size_t)m);
        }
        pthread_mutex_lock(&L.mu);
        if (stop && L.qlen == 0) break;
    }
    pthread_mutex_unlock(&L.mu);
    free(mine);
    return NULL;
}

void log_start(void)
{
    pthread_mutex_lock(&L.mu);
    if (L.running) {
        pthread_mutex_unlock(&L.mu);
        return;
    }
    L.q = malloc(LOG_QUEUE_MAX);
    L.stopping = 0;
    if (L.q && pthread_create(&L.thread, NULL, log_thread, NULL) == 0) {
        L.running = 1;
    } else {
        free(L.q);
        L.q = NULL;
    }
    pthread_mutex_unlock(&L.mu);
}

void log_stop(void)
{
    pthread_mutex_lock(&L.mu);
    if (!L.running) {
        pthread_mutex_unlock(&L.mu);
        return;
    }
    L.stopping = 1;
    pthread_cond_signal(&L.cv);
    pthread_mutex_unlock(&L.mu);
    pthread_join(L.thread, NULL);
    pthread_mutex_lock(&L.mu);
    L.running = 0;
    free(L.q);
    L.q = NULL;
    L.qlen = 0;
    pthread_mutex_unlock(&L.mu);
}

void log_set_level(log_level lvl)
{
    atomic_store_explicit(&L.level, (int)lvl, memory_order_relaxed);
}

/* Queues n bytes of `count` whole lines, and a newline after them when nl (the last line's);
 * before log_start and after log_stop, writes them directly. */
static void log_queue(const char *p, size_t n, int nl, size_t count)
{
    pthread_mutex_lock(&L.mu);
    if (!L.running) {
        pthread_mutex_unlock(&L.mu);
        /* before start / after stop (CLI, start-up errors) a direct write is fine */
        write_all(p, n);
        if (nl) write_all("\n", 1);
        return;
    }
    if (L.qlen + n + (size_t)nl > LOG_QUEUE_MAX) {
        L.dropped += count;
        atomic_fetch_add_explicit(&dropped_total, count, memory_order_relaxed);
    } else {
        memcpy(L.q + L.qlen, p, n);
        if (nl) L.q[L.qlen + n] = '\n';
        L.qlen += n + (size_t)nl;
        if (L.idle || L.qlen > LOG_QUEUE_MAX / 2) pthread_cond_signal(&L.cv);
    }
    pthread_mutex_unlock(&L.mu);
}

void log_batch_begin(void)
{
    if (!tl_buf) tl_buf = malloc(LOG_THREAD_MAX); /* out of memory: line by line, as before */
    tl_len = tl_lines = 0;
}

void log_batch_flush(void)
{
    if (!tl_len) return;
    log_queue(tl_buf, tl_len, 0, tl_lines);
    tl_len = tl_lines = 0;
}

void log_batch_end(void)
{
    log_batch_flush();
    free(tl_buf);
    tl_buf = NULL;
}

void log_line(const char *line, size_t n)
{
    if (tl_buf) {
        /* a line too long for a batch goes by itself, after the lines before it */
        if (tl_len + n + 1 > LOG_THREAD_MAX) log_batch_flush();
        if (n + 1 > LOG_THREAD_MAX) {
            log_queue(line, n, 1, 1);
            return;
        }
        memcpy(tl_buf + tl_len, line, n);
        tl_buf[tl_len + n] = '\n';
        tl_len += n + 1;
        tl_lines++;
        return;
    }
    log_queue(line, n, 1, 1);
}

void log_msg(log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if ((int)lvl < atomic_load_explicit(&L.level, memory_order_relaxed)) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    char ts[32];
    ms_iso8601(ms_now_ms(), ts, 1);
    /* Operator messages are JSON lines too, so one parser reads the whole stream. */
    buf_t b;
    buf_init(&b, 4096);
    buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, names[lvl]);
    buf_append_json_escaped(&b, msg, strlen(msg));
    buf_appends(&b, "\"}");
    if (b.data) log_line(b.data, b.len);
    buf_free(&b);
}
