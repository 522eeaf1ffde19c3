/*
 * Scheduling of the gateway's background threads (the ledger writer and the WAL checkpointer): they
 * run as SCHED_IDLE so that an event-loop thread waking up with a request takes the CPU from them
 * at once, instead of waiting for the kernel's fair-share preemption (measured: p99 added latency
 * at 5000 req/s on one core went from ~3 ms to ~0.7 ms).
 *
 * An idle thread gets next to no CPU while the workers keep the cores busy, so each one has a
 * way back: whoever notices it falling behind (a worker queueing ledger events that have waited
 * too long, a large WAL) or waits for it (an API flush, shutdown) calls bg_boost, which returns it
 * to SCHED_OTHER; the thread calls bg_relax once it has caught up, and goes idle again when its
 * boost is older than BG_HOLD_MS. Leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE >= 20;
 * bg_setup checks that once, and without it every thread simply keeps the normal policy.
 *
 * Busy-polling workers (server.busy_poll_us) never sleep while they poll, so no policy would get
 * a background thread the CPU: each thread therefore also says when it next wants the CPU
 * (bg_sleep before a timed wait, bg_wake from whoever signals it), and a polling worker stops
 * polling, and sleeps in the kernel, as soon as bg_cpu_wanted says one of them is due.
 */
#ifndef MS_BGPRIO_H
#define MS_BGPRIO_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

/* One background thread's state; zero-initialised (static or calloc) is "not started". */
typedef struct bg_thread {
    _Atomic pid_t tid;             /* 0 until bg_enter */
    _Atomic int idle;              /* runs SCHED_IDLE now */
    _Atomic int64_t boosted_at_ms; /* monotonic ms of the last boost, 0 = never */
    _Atomic unsigned long boosts;  /* how many times it was boosted (stats, tests) */
    _Atomic int64_t due_ns;        /* monotonic ns from which it wants the CPU; 0 = never */
    _Atomic int slot;              /* 1 + its index among the threads bg_cpu_wanted reads */
} bg_thread;

/* Decides once, before any background thread starts, whether they run idle: want_idle (the
 * config's server.background_priority) and the permission to leave SCHED_IDLE again. Returns 1
 * when they will, 0 when they keep the normal policy. */
int bg_setup(int want_idle);
/* From the thread itself, first thing: records it and makes it idle when bg_setup said so. */
void bg_enter(bg_thread *t, const char *name);
/* From the thread itself, last thing: forgets its id, so that no later boost can reach another
 * thread that the kernel gave the same id. */
void bg_leave(bg_thread *t);
/* From any thread: t back to the normal policy if it is idle. Cheap when it is not. */
void bg_boost(bg_thread *t);
/* From the thread itself once it has caught up: idle again, unless boosted in the last
 * BG_HOLD_MS (hysteresis, so that a thread kept busy is not flipped back and forth). */
void bg_relax(bg_thread *t);

/* From the thread itself, just before a wait that ends at until_ns (monotonic) at the latest. */
void bg_sleep(bg_thread *t, int64_t until_ns);
/* From whoever is about to wake t (signal its condition variable): it wants the CPU now. */
void bg_wake(bg_thread *t);
/* From a busy-polling worker: 1 when some background thread is due to run at now_ns (or is
 * running), so the worker should sleep and leave it the CPU. A few atomic loads. It reads the
 * bg_thread of every started thread: the workers stop before any of those is freed (main's
 * shutdown order). */
int bg_cpu_wanted(int64_t now_ns);

#endif
