/*
 * Background thread scheduling (bgprio.h): SCHED_IDLE while a thread keeps up, SCHED_OTHER
 * while it does not.
 */
#include "common/bgprio.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* How long a boosted thread stays at the normal policy before it may go idle again. */
#define BG_HOLD_MS 2000

static _Atomic int bg_enabled;

/* The started threads bg_cpu_wanted looks at: a fixed table, since there are only a few (the
 * ledger writer, the checkpointer) and a polling worker reads it every few hundred ns. */
#define BG_MAX 8
static bg_thread *_Atomic bg_table[BG_MAX];

/* Whether a thread that made itself SCHED_IDLE may leave it again (CAP_SYS_NICE, or an
 * RLIMIT_NICE of 20 or more): tried for real on a scratch thread, since root in a container
 * may lack the capability. */
static void *bg_probe(void *arg)
{
    struct sched_param sp;
    memset(&sp, 0, sizeof sp);
    int *ok = arg;
    *ok =
        sched_setscheduler(0, SCHED_IDLE, &sp) == 0 && sched_setscheduler(0, SCHED_OTHER, &sp) == 0;
    return NULL;
}

int bg_setup(int want_idle)
{
    int ok = 0;
    pthread_t th;
    if (want_idle && pthread_create(&th, NULL, bg_probe, &ok) == 0) pthread_join(th, NULL);
    if (want_idle && !ok)
        log_info("background threads keep the normal scheduling policy: leaving SCHED_IDLE "
                 "again needs CAP_SYS_NICE or RLIMIT_NICE >= 20 (tail latency is higher)");
    atomic_store(&bg_enabled, want_idle && ok);
    return want_idle && ok;
}

static int bg_policy(pid_t tid, int policy)
{
    struct sched_param sp;
    memset(&sp, 0, sizeof sp);
    return sched_setscheduler(tid, policy, &sp);
}

void bg_enter(bg_thread *t, const char *name)
{
    pthread_setname_np(pthread_self(), name); /* what top -H and perf show */
    atomic_store(&t->tid, gettid());
    atomic_store(&t->due_ns, 1); /* running */
    for (int i = 0; i < BG_MAX; i++) {
        bg_thread *expected = NULL;
        if (atomic_compare_exchange_strong(&bg_table[i], &expected, t)) {
            atomic_store(&t->slot, i + 1);
            break;
        }
    }
    /* a full table only means pollers do not make way for this thread: say so, go on */
    if (!atomic_load(&t->slot)) log_warn("bgprio: more than %d background threads", BG_MAX);
    if (atomic_load(&bg_enabled) && bg_policy(0, SCHED_IDLE) == 0) atomic_store(&t->idle, 1);
}

void bg_leave(bg_thread *t)
{
    int slot = atomic_exchange(&t->slot, 0);
    if (slot) atomic_store(&bg_table[slot - 1], NULL);
    atomic_store(&t->due_ns, 0);
    atomic_store(&t->idle, 0);
    atomic_store(&t->tid, 0);
}

void bg_boost(bg_thread *t)
{
    pid_t tid = atomic_load(&t->tid);
    if (!tid || !atomic_load(&t->idle)) return;
    /* one booster wins; the others see idle == 0 */
    int expected = 1;
    if (!atomic_compare_exchange_strong(&t->idle, &expected, 0)) return;
    if (bg_policy(tid, SCHED_OTHER) != 0) {
        atomic_store(&t->idle, 1);
        return;
    }
    atomic_store(&t->boosted_at_ms, (int64_t)(ms_mono_ns() / 1000000));
    atomic_fetch_add(&t->boosts, 1);
}

void bg_relax(bg_thread *t)
{
    if (!atomic_load(&bg_enabled) || atomic_load(&t->idle)) return;
    int64_t at = atomic_load(&t->boosted_at_ms);
    if ((int64_t)(ms_mono_ns() / 1000000) - at < BG_HOLD_MS) return;
    if (bg_policy(0, SCHED_IDLE) == 0) atomic_store(&t->idle, 1);
}

void bg_sleep(bg_thread *t, int64_t until_ns)
{
    atomic_store(&t->due_ns, until_ns > 0 ? until_ns : 1);
}

void bg_wake(bg_thread *t)
{
    atomic_store(&t->due_ns, 1);
}

int bg_cpu_wanted(int64_t now_ns)
{
    for (int i = 0; i < BG_MAX; i++) {
        bg_thread *t = atomic_load_explicit(&bg_table[i], memory_order_acquire);
        if (!t) continue;
        int64_t due = atomic_load_explicit(&t->due_ns, memory_order_relaxed);
        if (due > 0 && due <= now_ns) return 1;
    }
    return 0;
}
