/*
 * Unit tests for src/common/memtune.c: with the thresholds set, a worker-like thread that keeps
 * allocating, filling and freeing a few dozen 100-300 KB buffers (request bodies, TLS records)
 * reuses its heap: after the first rounds it takes no new page faults. Without the thresholds
 * glibc's adaptive ones made the same loop fault on every round (the cost measured in
 * docs/PERFORMANCE.md, round 13). Faults are the kernel's count for the thread (RUSAGE_THREAD).
 * Also: an operator's malloc tunables are left alone.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/memtune.h"
#include "tap.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define NBUF 48
#define ROUNDS 40
#define WARM 5

static long thread_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

/* One round: NBUF buffers of 100-300 KB, each written whole, then freed in a shuffled order. */
static void round_of_bodies(uint32_t *seed)
{
    char *b[NBUF];
    for (int i = 0; i < NBUF; i++) {
        *seed = *seed * 1103515245u + 12345u;
        size_t n = 100 * 1024 + (*seed >> 8) % (200 * 1024);
        b[i] = malloc(n);
        if (b[i]) memset(b[i], i, n);
    }
    for (int i = NBUF - 1; i > 0; i--) {
        *seed = *seed * 1103515245u + 12345u;
        int j = (int)((*seed >> 8) % (uint32_t)(i + 1));
        char *t = b[i];
        b[i] = b[j];
        b[j] = t;
    }
    for (int i = 0; i < NBUF; i++)
        free(b[i]);
}

static void *worker(void *arg)
{
    long *faults = arg;
    uint32_t seed = 7;
    for (int r = 0; r < WARM; r++)
        round_of_bodies(&seed);
    long before = thread_faults();
    for (int r = WARM; r < ROUNDS; r++)
        round_of_bodies(&seed);
    *faults = thread_faults() - before;
    return NULL;
}

/* The faults of a worker thread's rounds after warm-up, in a child process (the thresholds are
 * the process's, set once): tuned or with glibc's own. -1 if the child failed. */
static long faults_in_child(int tuned)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        long faults = -1;
        if (!tuned || memtune_setup() == MEMTUNE_APPLIED) {
            pthread_t t;
            if (pthread_create(&t, NULL, worker, &faults) == 0) pthread_join(t, NULL);
        } else {
            faults = -2;
        }
        ssize_t w = write(fds[1], &faults, sizeof faults);
        _exit(w == (ssize_t)sizeof faults ? 0 : 1);
    }
    close(fds[1]);
    long faults = -1;
    if (pid < 0 || read(fds[0], &faults, sizeof faults) != (ssize_t)sizeof faults) faults = -1;
    close(fds[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return faults;
}

static void test_heap_reused(void)
{
    unsetenv("GLIBC_TUNABLES");
    if (RUNNING_ON_VALGRIND) {
        /* valgrind's allocator takes the place of glibc's and says yes to mallopt */
        printf("# skipped: under valgrind, whose allocator is not glibc's\n");
        return;
    }
    long tuned = faults_in_child(1);
    if (tuned == -2) {
        printf("# skipped: not glibc's allocator here (a sanitizer's or another libc's)\n");
        return;
    }
    long plain = faults_in_child(0);
    /* ~2,500 pages are written a round: a heap that went back to the kernel faults them in again */
    printf("# page faults over %d rounds after warm-up: %ld tuned, %ld with glibc's thresholds\n",
           ROUNDS - WARM, tuned, plain);
    CHECK(tuned >= 0 && tuned < (ROUNDS - WARM) * 10);
}

static void test_operator_wins(void)
{
    setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576", 1);
    CHECK_EQ_INT(memtune_setup(), MEMTUNE_OPERATOR);
    setenv("GLIBC_TUNABLES", "glibc.rtld.nns=4", 1);
    CHECK(memtune_setup() != MEMTUNE_OPERATOR);
    unsetenv("GLIBC_TUNABLES");
}

int main(void)
{
    /* each heap case runs in a child of its own: the thresholds are a process's, set once */
    RUN(test_heap_reused);
    RUN(test_operator_wins); /* last: it leaves the thresholds set in this process */
    TAP_DONE();
}
