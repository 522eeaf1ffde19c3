/*
 * Unit tests for src/common/bgprio.c: a background thread runs SCHED_IDLE when allowed, a boost
 * from another thread puts it back on the normal policy at once, and relaxing respects the hold
 * time. The scheduling policy is read back from the kernel (sched_getscheduler on the thread's
 * id), not from the module's own flags. Where this process may not leave SCHED_IDLE (no
 * CAP_SYS_NICE), the tests check the fallback instead: nothing is ever made idle.
 * Also: what a busy-polling worker reads (bg_cpu_wanted) follows the threads' sleeps and wakes.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/bgprio.h"
#include "common/util.h"
#include "tap.h"

static bg_thread bt;
static _Atomic int phase; /* main -> thread: 1 = relax now, 2 = exit */
static _Atomic int acked;

static void *bg_main(void *arg)
{
    (void)arg;
    bg_enter(&bt, "test-bg");
    atomic_store(&acked, 1);
    for (;;) {
        int p = atomic_load(&phase);
        if (p == 2) break;
        if (p == 1) {
            bg_relax(&bt);
            atomic_store(&phase, 0);
            atomic_store(&acked, 2);
        }
        usleep(1000);
    }
    bg_leave(&bt);
    return NULL;
}

static int policy_of(const bg_thread *t)
{
    return sched_getscheduler(atomic_load(&t->tid));
}

static void wait_ack(int v)
{
    for (int i = 0; i < 5000 && atomic_load(&acked) != v; i++)
        usleep(1000);
}

static void relax_now(void)
{
    atomic_store(&acked, 0);
    atomic_store(&phase, 1);
    wait_ack(2);
}

static void test_idle_boost_relax(void)
{
    int idle = bg_setup(1);
    pthread_t th;
    memset(&bt, 0, sizeof bt);
    atomic_store(&phase, 0);
    atomic_store(&acked, 0);
    CHECK(pthread_create(&th, NULL, bg_main, NULL) == 0);
    wait_ack(1);
    CHECK(atomic_load(&bt.tid) > 0);
    if (!idle) {
        /* not permitted here: the fallback is the normal policy, and boosts are no-ops */
        printf("# SCHED_IDLE cannot be left again in this process: checking the fallback\n");
        CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
        bg_boost(&bt);
        CHECK_EQ_INT(atomic_load(&bt.boosts), 0);
    } else {
        CHECK_EQ_INT(policy_of(&bt), SCHED_IDLE);
        bg_boost(&bt); /* from this thread, as a worker would */
        CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
        CHECK_EQ_INT(atomic_load(&bt.boosts), 1);
        bg_boost(&bt); /* already normal: nothing happens */
        CHECK_EQ_INT(atomic_load(&bt.boosts), 1);
        relax_now(); /* within the hold time: stays normal */
        CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
        usleep(2100 * 1000);
        relax_now(); /* after it: idle again */
        CHECK_EQ_INT(policy_of(&bt), SCHED_IDLE);
        bg_boost(&bt);
        CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
        CHECK_EQ_INT(atomic_load(&bt.boosts), 2);
    }
    atomic_store(&phase, 2);
    pthread_join(th, NULL);
}

/* background_priority: normal (or no permission) never makes a thread idle */
static void test_disabled(void)
{
    pthread_t th;
    CHECK_EQ_INT(bg_setup(0), 0);
    memset(&bt, 0, sizeof bt);
    atomic_store(&phase, 0);
    atomic_store(&acked, 0);
    CHECK(pthread_create(&th, NULL, bg_main, NULL) == 0);
    wait_ack(1);
    CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
    relax_now();
    CHECK_EQ_INT(policy_of(&bt), SCHED_OTHER);
    atomic_store(&phase, 2);
    pthread_join(th, NULL);
}

/* A polling worker must make way exactly while a background thread is due or running. */
static void test_cpu_wanted(void)
{
    pthread_t th;
    bg_setup(0);
    memset(&bt, 0, sizeof bt);
    atomic_store(&phase, 0);
    atomic_store(&acked, 0);
    int64_t now = (int64_t)ms_mono_ns();
    CHECK_EQ_INT(bg_cpu_wanted(now), 0); /* no thread started */
    CHECK(pthread_create(&th, NULL, bg_main, NULL) == 0);
    wait_ack(1);
    now = (int64_t)ms_mono_ns();
    CHECK_EQ_INT(bg_cpu_wanted(now), 1); /* entered: running */
    CHECK(atomic_load(&bt.slot) > 0);
    bg_sleep(&bt, now + 200 * 1000000LL); /* waits for up to 200 ms */
    CHECK_EQ_INT(bg_cpu_wanted(now), 0);
    CHECK_EQ_INT(bg_cpu_wanted(now + 199 * 1000000LL), 0);
    CHECK_EQ_INT(bg_cpu_wanted(now + 200 * 1000000LL), 1); /* its wait ends: due */
    bg_wake(&bt);                                          /* signalled before that */
    CHECK_EQ_INT(bg_cpu_wanted(now), 1);
    bg_sleep(&bt, now + 1000 * 1000000LL);
    CHECK_EQ_INT(bg_cpu_wanted(now), 0);
    bg_sleep(&bt, 0); /* no deadline given: treated as running, never as asleep for ever */
    CHECK_EQ_INT(bg_cpu_wanted(now), 1);
    atomic_store(&phase, 2);
    pthread_join(th, NULL);
    CHECK_EQ_INT(atomic_load(&bt.slot), 0);
    CHECK_EQ_INT(bg_cpu_wanted((int64_t)ms_mono_ns() + 3600 * 1000000000LL), 0); /* left */
}

int main(void)
{
    RUN(test_idle_boost_relax);
    RUN(test_disabled);
    RUN(test_cpu_wanted);
    TAP_DONE();
}
