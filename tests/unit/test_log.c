/*
 * Unit tests for src/common/log.c's per-thread batches (log_batch_begin/flush/end): a worker's
 * lines wait in its batch until the flush, then reach stderr whole and in order, with a line
 * too long for a batch after the lines before it, a full batch flushed by itself, and the
 * batch of a thread that ends flushed by log_batch_end. stderr is a file here, read back.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "tap.h"

static char dir[64], path[128];

/* Everything written to stderr so far (malloc'd, NUL-terminated). */
static char *stderr_text(void)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    char *buf = calloc(1, 1 << 22);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* How many times s occurs in text. */
static int count(const char *text, const char *s)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, s)); p += strlen(s))
        n++;
    return n;
}

/* 1 when every needle occurs in text, in this order. */
static int in_order(const char *text, const char *const *needles, int n)
{
    const char *p = text;
    for (int i = 0; i < n; i++) {
        if (!(p = strstr(p, needles[i]))) return 0;
        p += strlen(needles[i]);
    }
    return 1;
}

static void test_batch_waits_for_flush(void)
{
    /* with the logger stopped a queued line is written at once: a batched one is not */
    log_batch_begin();
    log_line("batched-1", 9);
    log_line("batched-2", 9);
    char *t = stderr_text();
    CHECK_EQ_INT(count(t, "batched-"), 0);
    free(t);
    log_batch_flush();
    t = stderr_text();
    static const char *const want[] = {"batched-1\n", "batched-2\n"};
    CHECK(in_order(t, want, 2));
    free(t);
    /* a flush of nothing writes nothing */
    log_batch_flush();
    t = stderr_text();
    CHECK_EQ_INT(count(t, "batched-"), 2);
    free(t);
    log_batch_end();
}

static void test_long_line_and_full_batch(void)
{
    log_batch_begin();
    log_line("before-long", 11);
    /* longer than a batch: it goes by itself, after the line before it */
    size_t n = 40000;
    char *big = malloc(n);
    memset(big, 'L', n);
    memcpy(big, "long-line", 9);
    log_line(big, n);
    char *t = stderr_text();
    static const char *const order1[] = {"before-long\n", "long-line"};
    CHECK(in_order(t, order1, 2));
    CHECK_EQ_INT(count(t, "long-line"), 1);
    free(t);
    free(big);
    /* 300 lines of 100 bytes fill a batch twice: the first ones go out by themselves */
    char line[101];
    for (int i = 0; i < 300; i++) {
        int m = snprintf(line, sizeof line, "fill-%03d-%091d", i, 0);
        CHECK_EQ_INT(m, 100);
        log_line(line, (size_t)m);
    }
    t = stderr_text();
    int out = count(t, "fill-");
    CHECK(out > 0 && out < 300);
    free(t);
    log_batch_end();
    t = stderr_text();
    CHECK_EQ_INT(count(t, "fill-"), 300);
    const char *p = t;
    int ordered = 1;
    for (int i = 0; i < 300; i++) {
        char want[16];
        snprintf(want, sizeof want, "fill-%03d-", i);
        if (!(p = strstr(p, want))) ordered = 0;
        if (!p) break;
    }
    CHECK(ordered);
    free(t);
}

static void *worker(void *arg)
{
    int id = *(int *)arg;
    char line[64];
    log_batch_begin();
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(line, sizeof line, "w%d-line-%04d", id, i);
        log_line(line, (size_t)n);
        if (i % 8 == 7) log_batch_flush();
    }
    log_batch_end(); /* the last, unflushed lines */
    return NULL;
}

/* Through the logger thread: two batching threads and this one unbatched; every line arrives
 * once, and each thread's in its order. */
static void test_threads(void)
{
    log_start();
    pthread_t th[2];
    int ids[2] = {1, 2};
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, worker, &ids[i]);
    for (int i = 0; i < 100; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "plain-%03d", i);
        log_line(line, (size_t)n);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    log_stop();
    char *t = stderr_text();
    CHECK_EQ_INT(count(t, "w1-line-"), 1000);
    CHECK_EQ_INT(count(t, "w2-line-"), 1000);
    CHECK_EQ_INT(count(t, "plain-"), 100);
    for (int id = 1; id <= 2; id++) {
        const char *p = t;
        int ordered = 1;
        for (int i = 0; i < 1000 && ordered; i++) {
            char want[32];
            snprintf(want, sizeof want, "w%d-line-%04d\n", id, i);
            if (!(p = strstr(p, want))) ordered = 0;
        }
        CHECK(ordered);
    }
    CHECK_EQ_INT(log_dropped_total(), 0);
    free(t);
}

int main(void)
{
    tap_mkdtemp("test_log", dir);
    snprintf(path, sizeof path, "%s/stderr", dir);
    /* the logger writes to file descriptor 2, the checks' messages to the stream stderr:
     * the descriptor goes to the file, the stream stays where it was */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), saved = dup(STDERR_FILENO);
    if (fd < 0 || saved < 0 || dup2(fd, STDERR_FILENO) < 0) return 1;
    close(fd);
    FILE *orig = fdopen(saved, "w");
    if (!orig) return 1;
    setvbuf(orig, NULL, _IONBF, 0);
    stderr = orig;
    RUN(test_batch_waits_for_flush);
    RUN(test_long_line_and_full_batch);
    RUN(test_threads);
    tap_rmtree(dir);
    TAP_DONE();
}
