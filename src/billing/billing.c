/*
 * Holds, settlement and the ledger writer (billing.h, "holds and settlement"; rules in
 * docs/BILLING.md).
 *
 * Memory. Two open-addressing hash tables map ids to heap entries: accounts {db_balance,
 * unflushed, held} and keys {db_spent, unflushed, held}. The tables are guarded by one
 * reader-writer lock (readers: every lookup; writers: inserting an account or key, which may
 * resize), and the entries' money by 64 striped mutexes chosen by account id (a key's by its
 * account's: a request's hold and settlement change both under one lock), so two workers contend
 * only when their accounts share a stripe. Entries are never freed or moved before bill_stop, so
 * a pointer found under the read lock stays valid after the lock is released: the hot path holds
 * the read lock only for the lookup, then the stripe lock. Lock order: the table lock, then a
 * stripe (two stripes, should a key's account ever differ from the one it is charged with, in
 * address order: pair_lock). No other combination is ever nested, so there is no deadlock.
 *
 * The queue. bill_settle/bill_release copy the usage event into a growable array under a mutex
 * and wake the ledger thread if it sleeps. The ledger thread swaps the whole array for its spare
 * one (O(1) under the mutex) and commits what it took in chunks of at most 1000 events, one
 * transaction each, in FIFO order. Whatever settles while a chunk is being committed is the next
 * chunk: that is the group commit, and it is why an idle system commits an event within a few
 * milliseconds. A settled event is never dropped and a loop thread never waits for the store.
 *
 * Bounded memory (docs/BILLING.md, "Store outages"). When the ledger's batch and the queue hold
 * more than BILL_MEM_CAP events (the store is down, or slower than the traffic), the journal
 * thread swaps the queue out and appends it to the journal (journal.c), fdatasync'd, before the
 * events stop counting as in memory; the worker that crossed the cap only signals it. So memory
 * holds at most the cap plus what settles during one journal write, whatever the outage's length,
 * and a crash during an outage loses at most that. The journal's events are older than the
 * queue's and newer than the ledger's batch, so the ledger thread commits the journal (in
 * chunks, each removed from the journal after its commit) before it takes the queue again, and
 * commits stay in settlement order. A journaled event is settled money: its charge stays in
 * `unflushed` until its commit, exactly like a queued one. At start, a journal left by an earlier
 * process is committed before the balances are read (or, if the store refuses, counted into
 * `unflushed` after they are read); at a shutdown with a failing store, memory goes to the
 * journal. Re-committing a journaled event that reached the store already (a crash between a
 * commit and the journal's truncation) is skipped by the store's request-id check.
 *
 * Who writes what. Settling threads change only `held` and `unflushed`. The ledger thread is
 * the only one that changes db_balance / db_spent, and it does two things, one after the other,
 * never concurrently:
 *   commit: store_ledger_commit(chunk), then for each event db -= charge, unflushed -= charge
 *           (available = db_balance - unflushed - held is unchanged by this step);
 *   poll:   store_accounts_since(last_seq), then db_balance = the row's balance.
 * (With deferred posting, SQLite without Redis: BILL_POST_MS, a commit writes the usage rows
 * and a posting, on this thread before a poll, writes their charges into the account and key
 * rows later. A store's read of a balance subtracts the committed charges not yet posted, so
 * "the row's balance" below is the committed balance either way, and a posting, which moves
 * charges from the rows past the mark into the rows' columns, changes no balance read.)
 * Why the poll is exact, with no window where a charge counts twice or not at all: this
 * process is the only writer of usage charges to the store, and its writer is this thread. When
 * the poll reads a row, every charge this thread has committed is both in the row's balance and
 * already subtracted from db_balance (the commit was applied right after COMMIT, before the
 * poll started), and every charge not yet committed is in neither: it is still in `unflushed`.
 * So the row's balance and db_balance can differ only by changes made by others (top-ups through
 * the CLI or the API), and assigning the row's value takes exactly those in. A settling thread
 * that runs meanwhile touches unflushed/held only, under the same stripe lock.
 * The one case that would break this is a commit whose outcome is unknown (an error reported by
 * COMMIT itself: the transaction may have reached the disk). Then the row may already hold
 * charges that db_balance does not, and a poll would count them twice. So while a chunk awaits
 * its retry, polls are suspended; the retry is idempotent (the store skips request ids it
 * already has), and once it succeeds the chunk is applied once, and row and memory agree again.
 * (An event the store skips because its request id was already recorded by an earlier run is
 * still applied here, which only understates db_balance until the account's next change is
 * polled: request ids are unique, so this needs a caller bug, and it errs on the safe side.)
 *
 * One gateway process per database is assumed: a second process charging the same accounts
 * would see this one's charges only through the poll, and the two could together hold more than
 * the balance.
 */
#include "billing/billing.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "billing/journal.h"
#include "common/bgprio.h"
#include "common/log.h"
#include "common/util.h"

#define BILL_STRIPES 64 /* a power of two */
#define BILL_CHUNK 1000
#define BILL_POLL_MS 100
/* Group commit: events wait at most this long for companions before they are written, so a
 * busy gateway commits a batch per window instead of a transaction per request (SQLite's cost
 * per commit is larger than its cost per row). */
#define BILL_GROUP_MS 10
/* Deferred posting (store_ledger_defer): a commit writes the usage rows, and the charges reach
 * the balances and spends of the accounts and keys at most this long after, each account and key
 * once for all of them. Readers never see the difference (every read adds what is not posted);
 * what it saves is an account row and a key row written a commit each (docs/BILLING.md). */
#define BILL_POST_MS 1000
/* Events older than this when more arrive mean the ledger thread is starved (bgprio.h). */
#define BILL_LAG_MS 25
#define BILL_QUEUE_MIN 256
/* The memory cap: usage events the ledger's batch and the queue may hold before the journal
 * thread moves the queue to the journal (about 26 MB of events). */
#define BILL_MEM_CAP 65536
/* A consumed array larger than this is freed rather than kept as the spare. */
#define BILL_QUEUE_KEEP 16384
#define BILL_RETRY_MIN_MS 10
#define BILL_RETRY_MAX_MS 1000
/* While the store keeps failing, warn once per this many failed attempts. */
#define BILL_WARN_EVERY 20
/* bill_stop keeps retrying a failing store this long before it gives up (and logs what it
 * could not write): only when the journal cannot take the events either. */
#define BILL_STOP_GIVEUP_MS 30000
/* Journal slots for several instances sharing one config on one machine (bill_start). */
#define BILL_JR_SLOTS 16
/* A journal write that failed is tried again after this long (meanwhile the queue grows). */
#define BILL_JR_RETRY_MS 1000

typedef struct bill_acct {
    int64_t id;
    int64_t db_balance; /* as committed to the store */
    int64_t unflushed;  /* settled charges queued, not yet committed */
    int64_t held;       /* open holds */
    /* Low-balance notices (docs/BILLING.md): the threshold (0 = none, or no webhook to tell),
     * and whether the next charge that takes the settled balance below it sends a notice. Only
     * ever 1 while the settled balance is at or above the threshold. */
    int64_t low_threshold;
    int low_armed;
    /* Several instances (bill_set_pusher; all 0 otherwise). What this instance reserves of the
     * balance in Redis is held + unflushed + cu: cu is what the ledger committed whose balance
     * Redis may not have yet (cleared when the row read after the commit has been pushed with it,
     * in one script). ver counts the changes, so of two snapshots sent concurrently the newer
     * wins in Redis. push_*: the row the last poll read, for the ledger's next push. */
    uint64_t ver;
    int64_t cu;
    int64_t seq;
    int64_t push_bal, push_seq;
    int push_pending;
} bill_acct;

typedef struct bill_keyent {
    int64_t id;
    int64_t acct; /* its account, whose stripe's lock guards the key's money too (key_mu) */
    int64_t db_spent;
    int64_t unflushed;
    int64_t held;
    /* several instances, as in bill_acct: kcu is committed spend Redis's copy of the key's spent
     * has not been told of yet */
    uint64_t ver;
    int64_t kcu;
    int push_pending;
} bill_keyent;

typedef struct bill_slot {
    int64_t id;
    void *entry; /* NULL = empty slot */
} bill_slot;

typedef struct bill_table {
    bill_slot *slots;
    size_t cap; /* a power of two, kept at most half full */
    size_t count;
} bill_table;

/* A mutex alone on its cache line, so that locking one stripe does not slow its neighbours. */
typedef union bill_stripe {
    pthread_mutex_t mu;
    char pad[128];
} bill_stripe;

typedef struct bill_vec {
    store_usage_event *ev;
    size_t len, cap;
} bill_vec;

typedef struct bill_newacct {
    int64_t id;
    int64_t balance;
    int64_t seq;
} bill_newacct;

/* Ids of entries the ledger thread owes Redis a push (ledger thread only). */
typedef struct bill_ids {
    int64_t *id;
    size_t len, cap;
} bill_ids;

struct bill {
    const cfg_t *cfg;

    pthread_rwlock_t tlock; /* guards the two tables (not the entries' money) */
    bill_table accts, keys;
    bill_stripe *astripes; /* accounts' money, and their keys' (key_mu) */

    /* The queue: everything below up to the ledger-only part is guarded by qmu. */
    pthread_mutex_t qmu;
    pthread_cond_t wake;    /* wakes the ledger thread */
    pthread_cond_t flushed; /* committed_total moved, or the thread ended */
    pthread_cond_t space;   /* the queue array was swapped (only waited on after an OOM) */
    bill_vec in;
    uint64_t enq_total;       /* events ever queued */
    uint64_t committed_total; /* events ever committed (FIFO, so a prefix of those queued) */
    int sleeping;             /* the ledger thread waits on `wake` */
    int flushers;             /* bill_flush callers waiting: commit without the group window */
    int64_t first_queued_ms;  /* when the oldest event of `in` was queued */
    /* events ever taken by the ledger thread (a prefix of those queued), and when the oldest of
     * the batch it took last was queued (bill_health) */
    uint64_t taken_total;
    int64_t taken_first_ms;
    int poke;
    uint64_t polls_started; /* account polls begun (the waiters of bill_poll_sync count them) */
    uint64_t polls_done;    /* the number of the last poll that completed */
    int stop;
    int exited;
    int warned_big;
    /* The journal (journal.h, docs/BILLING.md "Store outages"), also under qmu: */
    size_t mem_cap;      /* events the ledger's batch and `in` may hold before a spill */
    size_t warn_at;      /* `in` longer than this: the journal does not keep up, say so */
    size_t held_mem;     /* events of the ledger's batch taken from memory, not committed */
    size_t spilling;     /* events the journal thread is writing (taken from `in`) */
    uint64_t journaled;  /* events durable in the journal and not committed */
    int64_t jr_first_ms; /* when the oldest of the journal's events was queued */
    int64_t jr_retry_ms; /* after a failed journal write: when to try again */
    /* Events at the journal's head that an earlier run wrote (bill_jr_replay could not commit
     * them all): they may be in the store already, so their commit looks their ids up. What
     * this run appends was never offered to the store (the queue's overflow). Ledger thread. */
    uint64_t jr_old;
    int jr_sleeping; /* the journal thread waits on jr_wake */
    pthread_cond_t jr_wake;
    /* the ledger thread's last store write or read: 0 failed (since store_failed_ms), 1 ok;
     * read by the readiness probe without the lock */
    _Atomic int store_ok;
    _Atomic int64_t store_failed_ms;

    /* Ledger-thread only (and bill_start before the thread exists). */
    store_t *store;
    store_ckpt *ckpt; /* WAL checkpoints of store, on their own thread */
    bg_thread bg;     /* the ledger thread's scheduling (boosted by bill_enqueue) */
    bill_vec out;
    size_t out_pos;
    store_usage_event *jchunk; /* a batch read from the journal: BILL_CHUNK events */
    size_t jn;                 /* events in jchunk, 0 when the batch is `out` */
    int64_t last_seq;
    int defer;               /* the store's posting deferred (no shared state): see BILL_POST_MS */
    int64_t posted_ms;       /* the ledger thread's last posting */
    uint64_t posted_commits; /* commits since then (ledger thread) */
    unsigned post_failures;
    bill_newacct *polled;
    size_t npolled, polled_cap;
    int poll_oom;

    /* Several instances (bill_set_pusher): the hold checks are Redis's, and the ledger thread
     * pushes what it commits and reads (ledger thread only, below the pusher). */
    int shared;
    int (*pusher)(void *ud, const bill_push *p, size_t n);
    void *pusher_ud;
    bill_ids push_accts, push_keys;
    void (*on_stopped)(void *ud, bill_t *b); /* bill_set_on_stopped */
    void *on_stopped_ud;
    bill_push *pushbuf;
    size_t pushbuf_cap;
    unsigned push_failures;

    /* called by the ledger thread after a commit that wrote notices (bill_set_on_notice) */
    void (*on_notice)(void *ud);
    void *on_notice_ud;

    pthread_t thread;
    int thread_started;
    /* the journal: jr is used by the journal thread (appends) and the ledger thread (reads and
     * consumes), each call under the journal's own mutex, never under qmu */
    jr_t *jr;
    char *jr_path;
    bill_vec spill; /* journal thread only: the events it is writing */
    int64_t spill_first_ms;
    pthread_t jr_thread;
    int jr_thread_started;
    uint64_t noid_seq; /* for events that arrive without a request id (guarded by qmu) */
};

static int ids_add(bill_ids *v, int64_t id);
static int bill_owe_balance(bill_t *b, const bill_newacct *row);
static void bill_push_owed(bill_t *b);

/* ---- tables ---- */

static size_t bill_hash(int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29));
}

static void *tab_find(const bill_table *t, int64_t id)
{
    size_t mask = t->cap - 1;
    for (size_t i = bill_hash(id) & mask;; i = (i + 1) & mask) {
        if (!t->slots[i].entry) return NULL;
        if (t->slots[i].id == id) return t->slots[i].entry;
    }
}

static void tab_put(bill_slot *slots, size_t cap, int64_t id, void *entry)
{
    size_t mask = cap - 1, i = bill_hash(id) & mask;
    while (slots[i].entry)
        i = (i + 1) & mask;
    slots[i].id = id;
    slots[i].entry = entry;
}

/* Adds an entry whose id is not in the table yet; caller holds the write lock. -1 when out of
 * memory (the table is unchanged). */
static int tab_insert(bill_table *t, int64_t id, void *entry)
{
    if ((t->count + 1) * 2 > t->cap) {
        size_t ncap = t->cap * 2;
        bill_slot *ns = calloc(ncap, sizeof(*ns));
        if (!ns) return -1;
        for (size_t i = 0; i < t->cap; i++)
            if (t->slots[i].entry) tab_put(ns, ncap, t->slots[i].id, t->slots[i].entry);
        free(t->slots);
        t->slots = ns;
        t->cap = ncap;
    }
    tab_put(t->slots, t->cap, id, entry);
    t->count++;
    return 0;
}

static int tab_init(bill_table *t)
{
    t->cap = 1024;
    t->count = 0;
    t->slots = calloc(t->cap, sizeof(*t->slots));
    return t->slots ? 0 : -1;
}

static void tab_free(bill_table *t)
{
    for (size_t i = 0; t->slots && i < t->cap; i++)
        free(t->slots[i].entry);
    free(t->slots);
    t->slots = NULL;
}

static pthread_mutex_t *acct_mu(bill_t *b, int64_t id)
{
    return &b->astripes[bill_hash(id) & (BILL_STRIPES - 1)].mu;
}

/* A key's money is guarded by its account's stripe: a request changes both under one lock (the
 * rate limiter's way, ratelimit.c), and a key is never busier than its account. */
static pthread_mutex_t *key_mu(bill_t *b, const bill_keyent *k)
{
    return acct_mu(b, k->acct);
}

/* Locks an account's and a key's stripes (either may be NULL), once when they are one, in
 * address order when not (a key is always its account's, so that is for safety only). */
static void pair_lock(pthread_mutex_t *x, pthread_mutex_t *y)
{
    if (x == y || !y)
        y = NULL;
    else if (!x)
        x = y, y = NULL;
    else if (y < x) {
        pthread_mutex_t *t = x;
        x = y;
        y = t;
    }
    if (x) pthread_mutex_lock(x);
    if (y) pthread_mutex_lock(y);
}

static void pair_unlock(pthread_mutex_t *x, pthread_mutex_t *y)
{
    if (x) pthread_mutex_unlock(x);
    if (y && y != x) pthread_mutex_unlock(y);
}

static bill_acct *acct_find(bill_t *b, int64_t id)
{
    pthread_rwlock_rdlock(&b->tlock);
    bill_acct *a = tab_find(&b->accts, id);
    pthread_rwlock_unlock(&b->tlock);
    return a;
}

static bill_keyent *key_find(bill_t *b, int64_t id)
{
    pthread_rwlock_rdlock(&b->tlock);
    bill_keyent *k = tab_find(&b->keys, id);
    pthread_rwlock_unlock(&b->tlock);
    return k;
}

/* Both entries under one read lock: the hot path's only table access. */
static void both_find(bill_t *b, int64_t account_id, int64_t key_id, bill_acct **a, bill_keyent **k)
{
    pthread_rwlock_rdlock(&b->tlock);
    *a = tab_find(&b->accts, account_id);
    *k = tab_find(&b->keys, key_id);
    pthread_rwlock_unlock(&b->tlock);
}

/* Finds the key's entry, adding it (spent as the caller's copy of the row says) when this is
 * the first time the key is seen: a key created after bill_start has been charged by nobody but
 * this process, and this process has not charged it yet. NULL only when out of memory. */
static bill_keyent *key_get(bill_t *b, int64_t id, int64_t account_id, int64_t spent)
{
    bill_keyent *k = key_find(b, id), *nk;

    if (k) return k;
    if (!(nk = calloc(1, sizeof(*nk)))) return NULL;
    nk->id = id;
    nk->acct = account_id;
    nk->db_spent = spent > 0 ? spent : 0;
    pthread_rwlock_wrlock(&b->tlock);
    k = tab_find(&b->keys, id);
    if (!k && tab_insert(&b->keys, id, nk) == 0) {
        k = nk;
        nk = NULL;
    }
    pthread_rwlock_unlock(&b->tlock);
    free(nk);
    return k;
}

/* Sets an account's committed balance from the store (initial load and polls), adding the
 * account if it is new. Ledger thread (or bill_start) only. -1 when out of memory. */
static int acct_set(bill_t *b, int64_t id, int64_t balance, int64_t seq)
{
    bill_acct *a = acct_find(b, id), *na;

    if (!a) {
        if (!(na = calloc(1, sizeof(*na)))) return -1;
        na->id = id;
        pthread_rwlock_wrlock(&b->tlock);
        a = tab_find(&b->accts, id);
        if (!a && tab_insert(&b->accts, id, na) == 0) {
            a = na;
            na = NULL;
        }
        pthread_rwlock_unlock(&b->tlock);
        free(na);
        if (!a) return -1;
    }
    pthread_mutex_t *mu = acct_mu(b, id);
    pthread_mutex_lock(mu);
    a->db_balance = balance;
    a->seq = seq;
    /* money came in (a top-up): back at or above the threshold, the next fall is news again */
    if (a->low_threshold > 0 && a->db_balance - a->unflushed >= a->low_threshold) a->low_armed = 1;
    pthread_mutex_unlock(mu);
    return 0;
}

/* ---- the queue ---- */

static int64_t bill_now_mono_ms(void)
{
    return (int64_t)(ms_mono_ns() / 1000000u);
}

static void bill_deadline(struct timespec *ts, int64_t mono_ms)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

/* The wall-clock time max_ms from now: deadlines of the waits on `flushed` (a default cond). */
static void bill_wall_deadline(struct timespec *ts, int64_t max_ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += max_ms / 1000;
    ts->tv_nsec += (max_ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

#define BILL_MAX_TOKENS ((int64_t)1 << 60)

/* Makes an event safe to write: a batch that the store refuses is retried forever, so nothing
 * that would make it refuse one (an empty or unterminated request id, negative counts) may
 * enter the queue. Called with qmu held. */
static void bill_sanitize(bill_t *b, store_usage_event *ev)
{
    ev->request_id[sizeof(ev->request_id) - 1] = '\0';
    ev->model[sizeof(ev->model) - 1] = '\0';
    ev->provider[sizeof(ev->provider) - 1] = '\0';
    if (ev->request_id[0] == '\0') {
        /* Unique across restarts (the usage table's request_id is UNIQUE, and a clash would be
         * skipped as "already billed"). Only a caller bug gets here. */
        snprintf(ev->request_id, sizeof(ev->request_id), "noid_%" PRId64 "_%" PRIu64, ms_now_ms(),
                 ++b->noid_seq);
        log_error("billing: a usage event came without a request id; recorded as %s",
                  ev->request_id);
    }
    /* Counts within [0, 2^60]: no provider reports that many tokens, and the store keeps the sum
     * of the four prompt counts, which must not overflow (store_check_event). */
    int64_t *counts[] = {&ev->usage.input,          &ev->usage.cached_input, &ev->usage.cache_write,
                         &ev->usage.cache_write_1h, &ev->usage.output,       &ev->usage.reasoning};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        if (*counts[i] < 0) *counts[i] = 0;
        if (*counts[i] > BILL_MAX_TOKENS) *counts[i] = BILL_MAX_TOKENS;
    }
    /* reasoning is a part of output */
    if (ev->usage.reasoning > ev->usage.output) ev->usage.reasoning = ev->usage.output;
    if (ev->charged_nusd < 0) ev->charged_nusd = 0;
}

static void bill_enqueue(bill_t *b, const store_usage_event *ev)
{
    int oom_logged = 0;

    pthread_mutex_lock(&b->qmu);
    while (b->in.len == b->in.cap) {
        size_t ncap = b->in.cap ? b->in.cap * 2 : BILL_QUEUE_MIN;
        store_usage_event *n = realloc(b->in.ev, ncap * sizeof(*n));
        if (n) {
            b->in.ev = n;
            b->in.cap = ncap;
            break;
        }
        /* Dropping a settled charge is not an option; out of memory, waiting for the ledger
         * thread to take the array is the lesser evil. */
        if (b->exited) break;
        if (!oom_logged++)
            log_error("billing: out of memory growing the ledger queue (%zu events); waiting",
                      b->in.len);
        if (b->sleeping) {
            bg_wake(&b->bg);
            pthread_cond_signal(&b->wake);
        }
        pthread_cond_wait(&b->space, &b->qmu);
    }
    if (b->in.len == b->in.cap) {
        pthread_mutex_unlock(&b->qmu);
        log_error("billing: ledger stopped and out of memory: usage of %s (charged %" PRId64
                  " nano-USD) not recorded",
                  ev->request_id, ev->charged_nusd);
        return;
    }
    if (b->in.len == 0) b->first_queued_ms = bill_now_mono_ms();
    /* Events waiting longer than BILL_LAG_MS: the ledger thread is not getting the CPU (it
     * runs SCHED_IDLE, and the workers keep the cores busy). Back to the normal policy. */
    if ((b->in.len & 15) == 15 && bill_now_mono_ms() - b->first_queued_ms > BILL_LAG_MS)
        bg_boost(&b->bg);
    store_usage_event *slot = &b->in.ev[b->in.len++];
    *slot = *ev;
    bill_sanitize(b, slot);
    b->enq_total++;
    /* Past the memory cap the journal thread takes the queue to disk (the worker only wakes it:
     * a disk write here would stall every request of this loop). */
    if (b->in.len + b->held_mem > b->mem_cap && b->jr_sleeping) {
        b->jr_sleeping = 0;
        pthread_cond_signal(&b->jr_wake);
    }
    if (b->in.len > b->warn_at && !b->warned_big) {
        b->warned_big = 1;
        log_warn("billing: more than %zu usage events wait in memory; neither the store nor the "
                 "journal keeps up (they are kept in memory)",
                 b->warn_at);
    }
    /* The first event of a batch wakes a thread that went to sleep with nothing queued (its
     * deadline is then the next poll, up to BILL_POLL_MS away, not this event's group window);
     * it sets its deadline to the window's end and sleeps again. Later events of the window do
     * not wake it, and a full batch need not wait. */
    if (b->sleeping && (b->in.len == 1 || b->in.len == BILL_CHUNK)) {
        bg_wake(&b->bg);
        pthread_cond_signal(&b->wake);
    }
    pthread_mutex_unlock(&b->qmu);
}

/* ---- the ledger thread ---- */

/* Applies charge c (> 0) of account and key to their entries. Available is unchanged: db and
 * unflushed drop together. */
static void bill_apply_one(bill_t *b, int64_t account_id, int64_t key_id, int64_t c)
{
    bill_acct *a;
    bill_keyent *k;

    both_find(b, account_id, key_id, &a, &k);
    pthread_mutex_t *amu = a ? acct_mu(b, a->id) : NULL, *kmu = k ? key_mu(b, k) : NULL;
    pair_lock(amu, kmu);
    if (a) {
        a->db_balance -= c;
        a->unflushed -= c;
        /* still reserved in Redis until its balance shows the charge (bill_push_owed) */
        if (b->shared) a->cu += c;
    }
    if (k) {
        k->db_spent += c;
        k->unflushed -= c;
        if (b->shared) k->kcu += c;
    }
    pair_unlock(amu, kmu);
    if (k && b->shared && !k->push_pending && ids_add(&b->push_keys, k->id) == 0)
        k->push_pending = 1;
}

/* Applies a committed chunk to memory, a run of events of the same account and key at a time:
 * one look-up and one lock of each a run instead of an event (the tables' read lock is every
 * worker's on every request). Returns how many of its events carried a low-balance notice. */
static size_t bill_apply(bill_t *b, const store_usage_event *ev, size_t n)
{
    size_t notices = 0;
    for (size_t i = 0; i < n;) {
        int64_t sum = 0;
        size_t j = i;
        for (; j < n && ev[j].account_id == ev[i].account_id && ev[j].key_id == ev[i].key_id; j++) {
            int64_t c = ev[j].charged_nusd;
            if (c <= 0) continue;
            if (ev[j].notice_threshold_nusd > 0) notices++;
            int64_t next;
            if (__builtin_add_overflow(sum, c, &next)) { /* not with real charges: apply, go on */
                bill_apply_one(b, ev[i].account_id, ev[i].key_id, sum);
                next = c;
            }
            sum = next;
        }
        if (sum > 0) bill_apply_one(b, ev[i].account_id, ev[i].key_id, sum);
        i = j;
    }
    return notices;
}

/* first: the events were never offered to the store (a chunk's first attempt, not the
 * journal's): the store may then skip its look-up of request ids already recorded. */
static int bill_commit(bill_t *b, const store_usage_event *ev, size_t n, int first)
{
    if ((first ? store_ledger_commit_new(b->store, ev, n) : store_ledger_commit(b->store, ev, n)) !=
        STORE_OK)
        return -1;
    /* the notices are in the outbox now: whoever sends them may go */
    if (bill_apply(b, ev, n) > 0 && b->on_notice) b->on_notice(b->on_notice_ud);
    return 0;
}

static void bill_poll_collect(void *ud, const store_account *a)
{
    bill_t *b = ud;

    if (b->poll_oom) return;
    if (b->npolled == b->polled_cap) {
        size_t ncap = b->polled_cap ? b->polled_cap * 2 : 64;
        bill_newacct *n = realloc(b->polled, ncap * sizeof(*n));
        if (!n) {
            b->poll_oom = 1;
            return;
        }
        b->polled = n;
        b->polled_cap = ncap;
    }
    b->polled[b->npolled].id = a->id;
    b->polled[b->npolled].balance = a->balance_nusd;
    b->polled[b->npolled].seq = a->seq;
    b->npolled++;
}

/* Takes in the account rows changed since the last poll (see the comment at the top for why
 * this is exact). The rows are read before any lock is taken. Returns 0, or -1 with msg. */
static int bill_poll(bill_t *b, char *msg, size_t msglen)
{
    int64_t max_seq = b->last_seq;

    b->npolled = 0;
    b->poll_oom = 0;
    if (store_accounts_since(b->store, b->last_seq, bill_poll_collect, b, &max_seq) != STORE_OK) {
        snprintf(msg, msglen, "%s", store_errmsg(b->store));
        return -1;
    }
    if (b->poll_oom) {
        snprintf(msg, msglen, "out of memory reading changed accounts");
        return -1;
    }
    for (size_t i = 0; i < b->npolled; i++) {
        if (acct_set(b, b->polled[i].id, b->polled[i].balance, b->polled[i].seq) != 0 ||
            (b->shared && bill_owe_balance(b, &b->polled[i]) != 0)) {
            /* Rows already set are set again next time, with the same values: harmless. */
            snprintf(msg, msglen, "out of memory adding accounts");
            return -1;
        }
    }
    b->last_seq = max_seq;
    if (b->polled_cap > 4096) {
        free(b->polled);
        b->polled = NULL;
        b->polled_cap = 0;
    }
    return 0;
}

/* Start: an account's notification settings (both a threshold and a webhook), read after the
 * balances. Whether a notice is owed follows from them: a balance below the threshold has been
 * told already (its crossing wrote a notice with the charge) or was below when the threshold was
 * set, which is not a crossing; so only a balance at or above it is armed. */
static void bill_notify_cb(void *ud, const store_notify *n)
{
    bill_t *b = ud;
    bill_acct *a = acct_find(b, n->account_id);
    if (!a) return; /* cannot be: the row's account exists and was just loaded */
    a->low_threshold = n->threshold_nusd;
    a->low_armed = a->db_balance >= n->threshold_nusd;
}

static void bill_key_spend_cb(void *ud, int64_t key_id, int64_t account_id, int64_t spent)
{
    bill_t *b = ud;
    bill_keyent *k = key_get(b, key_id, account_id, spent);

    if (!k) {
        b->poll_oom = 1;
        return;
    }
    /* Only reached at start (before any settlement), so setting is safe. */
    pthread_mutex_lock(key_mu(b, k));
    k->db_spent = spent;
    pthread_mutex_unlock(key_mu(b, k));
}

/* Logs every event that will never be written: the last resort of bill_stop with a store that
 * stays broken, so that an operator can still bill them by hand. */
static void bill_log_lost(const store_usage_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++)
        log_error("billing: NOT RECORDED: request %s account %" PRId64 " key %" PRId64
                  " model %s tokens %" PRId64 "+%" PRId64 " (input %" PRId64 " cached %" PRId64
                  " cache write %" PRId64 " 1h %" PRId64 " reasoning %" PRId64 ") charged %" PRId64
                  " nano-USD",
                  ev[i].request_id, ev[i].account_id, ev[i].key_id, ev[i].model,
                  usage_prompt(&ev[i].usage), ev[i].usage.output, ev[i].usage.input,
                  ev[i].usage.cached_input, ev[i].usage.cache_write, ev[i].usage.cache_write_1h,
                  ev[i].usage.reasoning, ev[i].charged_nusd);
}

/* The outcome of the ledger thread's latest store access, for bill_health. */
static void bill_store_result(bill_t *b, int ok)
{
    if (ok == atomic_load_explicit(&b->store_ok, memory_order_relaxed)) return;
    if (!ok) atomic_store_explicit(&b->store_failed_ms, bill_now_mono_ms(), memory_order_relaxed);
    atomic_store_explicit(&b->store_ok, ok, memory_order_relaxed);
}

/* ---- the journal thread ---- */

/* Puts a spill whose write failed back in front of the queue (its events are older). qmu held.
 * -1 when out of memory: the spill then stays, and its write is tried again. */
static int bill_unspill(bill_t *b)
{
    size_t n = b->spill.len + b->in.len;
    if (b->spill.cap < n) {
        store_usage_event *e = realloc(b->spill.ev, n * sizeof(*e));
        if (!e) return -1;
        b->spill.ev = e;
        b->spill.cap = n;
    }
    if (b->in.len) memcpy(b->spill.ev + b->spill.len, b->in.ev, b->in.len * sizeof(*b->in.ev));
    bill_vec t = b->in;
    b->in = b->spill;
    b->in.len = n;
    b->spill = t;
    b->spill.len = 0;
    b->first_queued_ms = b->spill_first_ms;
    return 0;
}

/*
 * The journal thread (ms-journal): keeps memory bounded. When the ledger's batch and the queue
 * together pass the cap, it takes the whole queue (an O(1) swap, like the ledger's) and appends it
 * to the journal, fdatasync included; only then do the events count as journaled and leave
 * memory. Why a thread of its own rather than the ledger thread: the memory fills exactly while
 * the ledger thread is stuck in a store call that fails slowly (SQLite's 5 s busy timeout, a TCP
 * connect to an unreachable PostgreSQL), and a bound that waits for that call is no bound. Why not
 * the workers: a disk write on an event loop stalls every request of that loop.
 *
 * Order: the queue's events are newer than the ledger's batch, and the ledger takes from the
 * queue only when the journal is empty and no spill is being written. So the journal always holds
 * events older than the queue's and newer than the batch, and commits stay in settlement order
 * (committed_total remains a prefix count, which bill_flush relies on).
 */
static void *bill_jr_main(void *arg)
{
    bill_t *b = arg;
    unsigned failures = 0;
    char err[600];

    pthread_setname_np(pthread_self(), "ms-journal");
    pthread_mutex_lock(&b->qmu);
    while (!b->stop) {
        int64_t now = bill_now_mono_ms();
        int pending = b->spill.len > 0; /* a failed write whose events could not go back */
        int over = pending || (b->in.len > 0 && b->in.len + b->held_mem > b->mem_cap);
        if (!over || now < b->jr_retry_ms) {
            struct timespec ts;
            b->jr_sleeping = 1;
            if (over) {
                bill_deadline(&ts, b->jr_retry_ms);
                pthread_cond_timedwait(&b->jr_wake, &b->qmu, &ts);
            } else {
                pthread_cond_wait(&b->jr_wake, &b->qmu);
            }
            b->jr_sleeping = 0;
            continue;
        }
        if (!pending) {
            bill_vec t = b->spill;
            b->spill = b->in;
            b->in = t;
            b->in.len = 0;
            b->spill_first_ms = b->first_queued_ms;
            if (b->journaled == 0) {
                b->jr_first_ms = b->first_queued_ms;
                log_warn("billing: more than %zu usage events wait for the store; the overflow "
                         "goes to the journal %s until it catches up",
                         b->mem_cap, b->jr_path);
            }
            b->spilling = b->spill.len;
            pthread_cond_broadcast(&b->space);
        }
        pthread_mutex_unlock(&b->qmu);
        int ok = jr_append(b->jr, b->spill.ev, b->spill.len, err, sizeof err) == 0;
        pthread_mutex_lock(&b->qmu);
        if (ok) {
            b->journaled += b->spill.len;
            b->spill.len = 0;
            if (failures) log_warn("billing: writing the journal works again");
            failures = 0;
        } else {
            if (failures++ % 60 == 0)
                log_error("billing: moving %zu usage events to the journal failed; they stay in "
                          "memory, retried every %d ms: %s",
                          b->spill.len, BILL_JR_RETRY_MS, err);
            b->jr_retry_ms = bill_now_mono_ms() + BILL_JR_RETRY_MS;
            if (bill_unspill(b) != 0 && failures == 1)
                log_error("billing: out of memory putting them back in the queue; kept apart");
        }
        b->spilling = b->spill.len;
        if (!b->spill.len && b->spill.cap > BILL_QUEUE_KEEP) {
            free(b->spill.ev);
            memset(&b->spill, 0, sizeof b->spill);
        }
        /* the ledger may wait for this spill to end (it reads the journal next) */
        if (b->sleeping) {
            bg_wake(&b->bg);
            pthread_cond_signal(&b->wake);
        }
    }
    if (b->spill.len && bill_unspill(b) != 0) {
        /* the ledger ends after this thread: the queue is its, and bill_stop's last resort */
        log_error("billing: out of memory at shutdown keeping usage events the journal refused");
        bill_log_lost(b->spill.ev, b->spill.len);
        b->committed_total += b->spill.len;
        b->spill.len = 0;
    }
    b->spilling = 0;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->qmu);
    return NULL;
}

/* ---- the ledger thread ---- */

/* Reads the journal's next batch into jchunk. Ledger thread, qmu not held. 0, or -1 with msg. */
static int bill_jr_load(bill_t *b, char *msg, size_t msglen)
{
    size_t n = 0;
    if (!b->jchunk && !(b->jchunk = malloc(BILL_CHUNK * sizeof(*b->jchunk)))) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    if (jr_read(b->jr, b->jchunk, BILL_CHUNK, &n, msg, msglen) != 0) return -1;
    if (n == 0) {
        jr_consume(b->jr); /* damage only: skipped (and logged) */
        snprintf(msg, msglen, "the journal holds fewer intact events than were written to it");
        return -1;
    }
    b->jn = n;
    return 0;
}

/* Shutdown with a store that refuses writes: what is in memory (the rest of the batch, when it
 * came from memory, and the queue) goes to the journal in one append, which the next start
 * commits. qmu held (released meanwhile). 0 when it is all on disk. */
static int bill_stop_to_journal(bill_t *b, char *msg, size_t msglen)
{
    size_t mem = b->jn ? 0 : b->out.len - b->out_pos, n = mem + b->in.len;
    store_usage_event *all = n ? malloc(n * sizeof(*all)) : NULL;
    if (n && !all) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    if (mem) memcpy(all, b->out.ev + b->out_pos, mem * sizeof(*all));
    if (b->in.len) memcpy(all + mem, b->in.ev, b->in.len * sizeof(*all));
    size_t taken = b->in.len;
    pthread_mutex_unlock(&b->qmu);
    int rc = n ? jr_append(b->jr, all, n, msg, msglen) : 0;
    free(all);
    pthread_mutex_lock(&b->qmu);
    if (rc != 0) return -1;
    /* workers are stopped before bill_stop; anything settled since stays for bill_stop */
    /* the queue may never have been allocated (NULL + 0 is undefined behaviour in C) */
    if (taken) memmove(b->in.ev, b->in.ev + taken, (b->in.len - taken) * sizeof(*b->in.ev));
    b->in.len -= taken;
    b->out_pos = b->out.len;
    b->held_mem = 0;
    b->journaled += n;
    if (b->jn || b->journaled)
        log_warn("billing: the store refuses writes at shutdown: %" PRIu64
                 " usage events wait in the journal %s and are committed at the next start",
                 b->journaled, b->jr_path);
    b->jn = 0;
    return 0;
}

/* After a batch was committed: memory or the journal lets go of it. qmu not held on entry or
 * exit. */
static void bill_committed(bill_t *b, size_t n)
{
    int from_jr = b->jn > 0;
    if (from_jr) {
        jr_consume(b->jr); /* the disk, before qmu: the workers take qmu */
        b->jn = 0;
        b->jr_old -= n <= b->jr_old ? n : b->jr_old;
    } else {
        b->out_pos += n;
    }
    pthread_mutex_lock(&b->qmu);
    /* several instances: read the rows back now, Redis's balance waits for them */
    if (b->shared) b->poke = 1;
    if (from_jr) {
        b->journaled -= n <= b->journaled ? n : b->journaled;
        if (b->journaled == 0 && b->spilling == 0)
            log_info("billing: the journal's usage events are all in the store");
    } else {
        b->held_mem -= n <= b->held_mem ? n : b->held_mem;
    }
    b->committed_total += n;
    pthread_cond_broadcast(&b->flushed);
    pthread_mutex_unlock(&b->qmu);
}

/* Deferred posting, on the ledger thread between commits: every BILL_POST_MS while commits
 * come (or at once with force: at the end). A failure leaves the charges unposted, which readers
 * still count, and is tried again next time. */
static void bill_post(bill_t *b, int force)
{
    if (!b->defer || b->posted_commits == 0) return;
    int64_t now = bill_now_mono_ms();
    if (!force && now - b->posted_ms < BILL_POST_MS) return;
    b->posted_ms = now;
    if (store_ledger_post(b->store) != STORE_OK) {
        if (b->post_failures++ % BILL_WARN_EVERY == 0)
            log_warn("billing: posting committed charges to balances failed (readers count "
                     "them; retried): %s",
                     store_errmsg(b->store));
        return;
    }
    b->post_failures = 0;
    b->posted_commits = 0;
}

static void *bill_main(void *arg)
{
    bill_t *b = arg;
    int64_t next_poll = bill_now_mono_ms() + BILL_POLL_MS, retry_at = 0, giveup_at = 0;
    int64_t jr_retry_at = 0; /* after a failed journal read */
    bg_enter(&b->bg, "ms-ledger");
    int64_t backoff = 0; /* > 0 while a chunk awaits its retry */
    unsigned failures = 0, poll_failures = 0, jr_failures = 0;
    int stop_tried = 0;
    char msg[600] = "";

    pthread_mutex_lock(&b->qmu);
    for (;;) {
        int64_t now = bill_now_mono_ms();
        int have = b->jn > 0 || b->out_pos < b->out.len;
        /* The journal's events are older than the queue's (bill_jr_main): they go first. */
        if (!have && b->journaled > 0 && now >= jr_retry_at && !(b->stop && giveup_at)) {
            pthread_mutex_unlock(&b->qmu);
            int ok = bill_jr_load(b, msg, sizeof(msg)) == 0;
            pthread_mutex_lock(&b->qmu);
            if (ok) {
                jr_failures = 0;
                b->taken_total += b->jn;
                b->taken_first_ms = b->jr_first_ms;
            } else {
                if (jr_failures++ % BILL_WARN_EVERY == 0)
                    log_error("billing: reading the ledger journal %s failed, will retry: %s",
                              b->jr_path, msg);
                jr_retry_at = bill_now_mono_ms() + BILL_RETRY_MAX_MS;
                if (b->stop && giveup_at == 0) giveup_at = bill_now_mono_ms();
            }
            continue;
        }
        /* the window of the batch being formed (events already taken are written at once) */
        int64_t window_end = b->first_queued_ms + BILL_GROUP_MS;
        /* (at a shutdown that gave up on the journal, memory may go before it) */
        if (!have && (b->journaled == 0 || (b->stop && giveup_at)) && b->spilling == 0 &&
            b->in.len > 0 &&
            (now >= window_end || b->flushers || b->stop || b->in.len >= BILL_CHUNK)) {
            /* take the whole queue once the previous one is written */
            bill_vec t = b->out;
            b->out = b->in;
            b->in = t;
            b->taken_total += b->out.len;
            b->taken_first_ms = b->first_queued_ms;
            b->held_mem = b->out.len;
            b->in.len = 0;
            b->out_pos = 0;
            if (b->in.cap > BILL_QUEUE_KEEP) {
                free(b->in.ev);
                b->in.ev = NULL;
                b->in.cap = 0;
            }
            b->warned_big = 0;
            have = 1;
            pthread_cond_broadcast(&b->space);
        }
        int commit_now = have && (backoff == 0 || now >= retry_at);
        int poll_now = backoff == 0 && (b->poke || now >= next_poll);

        if (!have && b->stop && b->in.len == 0 && b->spilling == 0 &&
            (b->journaled == 0 || giveup_at))
            break;
        if (b->stop && (backoff > 0 || jr_failures > 0)) {
            /* the store (or the journal's reading) fails at shutdown: memory goes to the
             * journal, which the next start commits; only when that fails too, wait a while */
            if (!stop_tried && b->jr) {
                stop_tried = 1;
                if (bill_stop_to_journal(b, msg, sizeof(msg)) == 0) break;
                log_error("billing: moving usage events to the journal at shutdown failed: %s",
                          msg);
            }
            if (giveup_at == 0) giveup_at = now + BILL_STOP_GIVEUP_MS;
            if (now >= giveup_at) {
                log_error("billing: the store kept failing for %d s at shutdown (%s); giving up",
                          BILL_STOP_GIVEUP_MS / 1000, msg);
                if (!b->jn) bill_log_lost(b->out.ev + b->out_pos, b->out.len - b->out_pos);
                bill_log_lost(b->in.ev, b->in.len);
                b->committed_total = b->enq_total;
                b->out_pos = b->out.len = b->in.len = 0;
                b->jn = 0;
                break;
            }
        }
        if (!commit_now && !poll_now) {
            struct timespec ts;
            /* caught up: nothing taken, and what waits is younger than the lag limit */
            if (!have && (b->in.len == 0 || now - b->first_queued_ms < BILL_LAG_MS))
                bg_relax(&b->bg);
            int64_t until = backoff > 0 ? retry_at : next_poll;
            if (backoff == 0 && b->in.len > 0 && window_end < until) until = window_end;
            if (!have && b->journaled > 0 && jr_retry_at < until) until = jr_retry_at;
            bill_deadline(&ts, until);
            bg_sleep(&b->bg, until * 1000000);
            b->sleeping = 1;
            pthread_cond_timedwait(&b->wake, &b->qmu, &ts);
            b->sleeping = 0;
            continue;
        }
        uint64_t poll_gen = 0;
        if (poll_now) {
            b->poke = 0;
            poll_gen = ++b->polls_started;
        }
        pthread_mutex_unlock(&b->qmu);

        if (commit_now) {
            store_usage_event *batch = b->jn ? b->jchunk : b->out.ev + b->out_pos;
            size_t n = b->jn ? b->jn : b->out.len - b->out_pos;
            if (n > BILL_CHUNK) n = BILL_CHUNK;
            /* a retry may follow a commit that landed though it reported a failure; an earlier
             * run's journal may hold events it committed before it died */
            int ok = bill_commit(b, batch, n, failures == 0 && (!b->jn || b->jr_old == 0)) == 0;
            bill_store_result(b, ok);
            if (ok) {
                if (backoff > 0)
                    log_warn("billing: ledger writes recovered after %u failed attempts", failures);
                backoff = 0;
                failures = 0;
                b->posted_commits++;
                bill_committed(b, n);
            } else {
                snprintf(msg, sizeof(msg), "%s", store_errmsg(b->store));
                if (failures++ % BILL_WARN_EVERY == 0)
                    log_warn("billing: writing %zu usage events failed, will retry (kept in "
                             "memory up to %zu events, then in the journal): %s",
                             n, b->mem_cap, msg);
                backoff = backoff ? backoff * 2 : BILL_RETRY_MIN_MS;
                if (backoff > BILL_RETRY_MAX_MS) backoff = BILL_RETRY_MAX_MS;
                retry_at = bill_now_mono_ms() + backoff;
                poll_now = 0; /* see the top comment: no poll while a chunk's outcome is open */
            }
        }
        int polled = 0;
        if (poll_now) bill_post(b, 0);
        if (poll_now) {
            int ok = bill_poll(b, msg, sizeof(msg)) == 0;
            bill_store_result(b, ok);
            if (!ok) {
                if (poll_failures++ % BILL_WARN_EVERY == 0)
                    log_warn("billing: reading account changes failed (top-ups wait): %s", msg);
            } else {
                poll_failures = 0;
                polled = 1;
            }
            if (b->pusher) bill_push_owed(b);
            next_poll = bill_now_mono_ms() + BILL_POLL_MS;
        }
        pthread_mutex_lock(&b->qmu);
        if (polled) {
            b->polls_done = poll_gen;
            pthread_cond_broadcast(&b->flushed);
        } else if (poll_gen && b->polls_started == poll_gen) {
            b->poke = 1; /* failed: a waiter still needs a poll, and will get the next one */
        }
    }
    pthread_mutex_unlock(&b->qmu);
    bill_post(b, 1); /* the database's rows as readers see them, for whoever reads them raw */
    pthread_mutex_lock(&b->qmu);
    b->exited = 1;
    bg_leave(&b->bg);
    pthread_cond_broadcast(&b->flushed);
    pthread_cond_broadcast(&b->space);
    pthread_mutex_unlock(&b->qmu);
    return NULL;
}

/* ---- start, stop ---- */

static void bill_free(bill_t *b)
{
    tab_free(&b->accts);
    tab_free(&b->keys);
    for (int i = 0; b->astripes && i < BILL_STRIPES; i++)
        pthread_mutex_destroy(&b->astripes[i].mu);
    free(b->astripes);
    free(b->in.ev);
    free(b->out.ev);
    free(b->spill.ev);
    free(b->jchunk);
    free(b->polled);
    free(b->push_accts.id);
    free(b->push_keys.id);
    free(b->pushbuf);
    jr_close(b->jr);
    free(b->jr_path);
    store_ckpt_stop(b->ckpt);
    store_close(b->store);
    pthread_cond_destroy(&b->wake);
    pthread_cond_destroy(&b->jr_wake);
    pthread_cond_destroy(&b->flushed);
    pthread_cond_destroy(&b->space);
    pthread_mutex_destroy(&b->qmu);
    pthread_rwlock_destroy(&b->tlock);
    free(b);
}

/* The journal's path: store.journal, or (a config made without the loader, as the tests make
 * them) next to the SQLite database. NULL when out of memory. */
static char *bill_jr_path(const cfg_t *cfg)
{
    if (cfg->journal_path && *cfg->journal_path) return strdup(cfg->journal_path);
    const char *base = cfg->sqlite_path ? cfg->sqlite_path : "modelswitch-ledger";
    size_t n = strlen(base) + sizeof ".journal";
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s.journal", base);
    return p;
}

/* The memory cap; tests make it small with MODELSWITCH_TEST_LEDGER_MEMORY_CAP (never larger: the
 * default is the most memory the gateway means to spend on waiting events). */
static size_t bill_mem_cap(void)
{
    const char *t = getenv("MODELSWITCH_TEST_LEDGER_MEMORY_CAP");
    long long v = t && *t ? atoll(t) : 0;
    if (v >= 1 && v < BILL_MEM_CAP) {
        log_warn("billing: the ledger's memory cap is %lld events (a test setting)", v);
        return (size_t)v;
    }
    return BILL_MEM_CAP;
}

/* Start: commits what an earlier process left in the journal (the store was unavailable when it
 * crashed or stopped) before the balances are read, which then include it. A commit that fails
 * ends this: the rest is counted in (bill_jr_count_in) and committed by the ledger thread. An
 * event that the earlier process had committed already is skipped by the store. */
static void bill_jr_replay(bill_t *b)
{
    uint64_t total = jr_count(b->jr), done = 0;
    char msg[600];

    b->jr_old = total;
    if (!total) return;
    log_warn("billing: the journal %s holds %" PRIu64
             " usage events an earlier run could not write to the store; committing them",
             b->jr_path, total);
    if (!b->jchunk && !(b->jchunk = malloc(BILL_CHUNK * sizeof(*b->jchunk)))) return;
    for (;;) {
        size_t n = 0;
        if (jr_read(b->jr, b->jchunk, BILL_CHUNK, &n, msg, sizeof(msg)) != 0) {
            log_error("billing: %s", msg);
            break;
        }
        if (n == 0) {
            jr_consume(b->jr); /* the end, or damage only */
            if (jr_count(b->jr) == 0) break;
            continue;
        }
        if (store_ledger_commit(b->store, b->jchunk, n) != STORE_OK) {
            log_warn("billing: committing the journal failed (%s); its events count against the "
                     "balances and the ledger thread commits them once the store takes writes",
                     store_errmsg(b->store));
            break;
        }
        jr_consume(b->jr);
        done += n;
        b->posted_commits++; /* posted by the ledger thread's first posting (bill_post) */
    }
    if (done) log_info("billing: committed %" PRIu64 " usage events from the journal", done);
    b->jr_old = jr_count(b->jr); /* left for the ledger thread, which checks them too */
}

/* Start, after the balances were read: what stays in the journal is settled money the store does
 * not have yet, so it counts as unflushed until the ledger thread commits it. */
static void bill_jr_count_cb(void *ud, const store_usage_event *ev)
{
    bill_t *b = ud;
    bill_acct *a = acct_find(b, ev->account_id);
    bill_keyent *k = key_find(b, ev->key_id);
    if (ev->charged_nusd <= 0) return;
    if (a) a->unflushed += ev->charged_nusd; /* no thread runs yet */
    if (k) k->unflushed += ev->charged_nusd;
}

static int bill_jr_count_in(bill_t *b, char *err, size_t errlen)
{
    char msg[600];
    uint64_t n = jr_count(b->jr);
    if (!n) return 0;
    if (jr_scan(b->jr, bill_jr_count_cb, b, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "billing: %s", msg);
        return -1;
    }
    b->journaled = n;
    b->enq_total = n; /* bill_flush waits for them too */
    b->jr_first_ms = bill_now_mono_ms();
    return 0;
}

static bill_stripe *bill_stripes_new(void)
{
    bill_stripe *s = aligned_alloc(64, BILL_STRIPES * sizeof(*s));
    if (!s) return NULL;
    for (int i = 0; i < BILL_STRIPES; i++)
        pthread_mutex_init(&s[i].mu, NULL);
    return s;
}

bill_t *bill_start(const cfg_t *cfg, char *err, size_t errlen)
{
    pthread_rwlockattr_t rwa;
    pthread_condattr_t ca;
    bill_t *b = calloc(1, sizeof(*b));
    char msg[600];
    int rc;

    if (!b) {
        snprintf(err, errlen, "billing: out of memory");
        return NULL;
    }
    b->cfg = cfg;
    /* Readers are a steady stream (every request); an insert must still get through. */
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&b->tlock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    pthread_mutex_init(&b->qmu, NULL);
    /* Deadlines are on the monotonic clock, so a wall-clock jump cannot stall the ledger. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->wake, &ca);
    pthread_cond_init(&b->jr_wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&b->flushed, NULL);
    pthread_cond_init(&b->space, NULL);

    if (tab_init(&b->accts) || tab_init(&b->keys) || !(b->astripes = bill_stripes_new())) {
        snprintf(err, errlen, "billing: out of memory");
        goto fail;
    }
    if (!(b->store = store_open(cfg, err, errlen))) goto fail;
    /* this handle writes ledger batches and nothing else: they check what they name */
    if (store_ledger_writer(b->store) != STORE_OK) {
        snprintf(err, errlen, "billing: %s", store_errmsg(b->store));
        goto fail;
    }
    /* checkpoints off this thread: a commit is then a WAL append, never a stall of seconds */
    if (!(b->ckpt = store_ckpt_start(cfg, b->store, err, errlen))) goto fail;
    /* Deferred posting where this instance is the store's only one: several instances (redis:)
     * push each commit's rows to the shared state (bill_push_owed), which needs them posted.
     * What an earlier run left unposted (it stopped between two postings) is posted first. */
    b->defer = !cfg->redis_url && store_ledger_defer(b->store, 1) == STORE_OK;
    if (store_ledger_post(b->store) != STORE_OK)
        log_warn("billing: posting the charges an earlier run left failed (readers count them; "
                 "retried): %s",
                 store_errmsg(b->store));
    b->posted_ms = bill_now_mono_ms();
    b->mem_cap = bill_mem_cap();
    b->warn_at = b->mem_cap * 2 < BILL_MEM_CAP ? BILL_MEM_CAP : b->mem_cap * 2;
    if (!(b->jr_path = bill_jr_path(cfg))) {
        snprintf(err, errlen, "billing: out of memory");
        goto fail;
    }
    /* Several instances (redis:) may run on one machine from one config: one whose journal is
     * in use takes the next free slot, <journal>.2 to .16. A slot left by a crashed instance is
     * replayed by whichever instance takes it next (a replay is idempotent). */
    for (int slot = 2; !(b->jr = jr_open(b->jr_path, msg, sizeof(msg))); slot++) {
        if (!cfg->redis_url || slot > BILL_JR_SLOTS || !strstr(msg, "in use")) {
            snprintf(err, errlen, "billing: %s", msg);
            goto fail;
        }
        size_t base = slot == 2 ? strlen(b->jr_path) : strlen(b->jr_path) - (slot > 10 ? 3 : 2);
        size_t n = base + 8;
        char *next = malloc(n);
        if (!next) {
            snprintf(err, errlen, "billing: out of memory");
            goto fail;
        }
        snprintf(next, n, "%.*s.%d", (int)base, b->jr_path, slot);
        free(b->jr_path);
        b->jr_path = next;
    }
    bill_jr_replay(b);
    if (bill_poll(b, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "billing: loading accounts: %s", msg);
        goto fail;
    }
    b->poll_oom = 0;
    atomic_store(&b->store_ok, 1);
    if (store_key_spends(b->store, bill_key_spend_cb, b) != STORE_OK) {
        snprintf(err, errlen, "billing: loading key spends: %s", store_errmsg(b->store));
        goto fail;
    }
    if (b->poll_oom) {
        snprintf(err, errlen, "billing: out of memory loading key spends");
        goto fail;
    }
    if (store_notify_list(b->store, bill_notify_cb, b) != STORE_OK) {
        snprintf(err, errlen, "billing: loading notification settings: %s", store_errmsg(b->store));
        goto fail;
    }
    if (bill_jr_count_in(b, err, errlen) != 0) goto fail;
    rc = pthread_create(&b->jr_thread, NULL, bill_jr_main, b);
    if (rc != 0) {
        snprintf(err, errlen, "billing: starting the journal thread: %s", strerror(rc));
        goto fail;
    }
    b->jr_thread_started = 1;
    rc = pthread_create(&b->thread, NULL, bill_main, b);
    if (rc != 0) {
        snprintf(err, errlen, "billing: starting the ledger thread: %s", strerror(rc));
        bill_stop(b);
        return NULL;
    }
    b->thread_started = 1;
    return b;

fail:
    bill_free(b);
    return NULL;
}

void bill_stop(bill_t *b)
{
    if (!b) return;
    if (b->thread_started || b->jr_thread_started) {
        /* The ledger thread writes everything queued before it ends (see bill_main); the
         * journal thread ends first, after the spill it may be writing. */
        pthread_mutex_lock(&b->qmu);
        b->stop = 1;
        bg_boost(&b->bg); /* shutdown waits for it */
        bg_wake(&b->bg);
        pthread_cond_signal(&b->wake);
        pthread_cond_signal(&b->jr_wake);
        pthread_mutex_unlock(&b->qmu);
        if (b->jr_thread_started) pthread_join(b->jr_thread, NULL);
        if (b->thread_started) pthread_join(b->thread, NULL);
    }
    /* Anything settled after the thread ended (a caller that did not stop its workers first)
     * gets one synchronous attempt, then the journal. */
    if (b->in.len > 0 && b->store) {
        char msg[600];
        if (store_ledger_commit_new(b->store, b->in.ev, b->in.len) != STORE_OK) {
            log_error("billing: writing usage settled during shutdown failed: %s",
                      store_errmsg(b->store));
            if (b->jr && jr_append(b->jr, b->in.ev, b->in.len, msg, sizeof(msg)) == 0)
                log_warn("billing: %zu usage events wait in the journal %s for the next start",
                         b->in.len, b->jr_path);
            else
                bill_log_lost(b->in.ev, b->in.len);
        }
    }
    /* the shared state leaves Redis while billing can still say what it reserved */
    if (b->on_stopped) b->on_stopped(b->on_stopped_ud, b);
    bill_free(b);
}

/* ---- the hot path ---- */

bill_status bill_hold_place(bill_t *b, const store_key *key, int64_t amount_nusd, bill_hold *out)
{
    bill_acct *a;
    bill_keyent *k;
    pthread_mutex_t *amu, *kmu;
    bill_status st = BILL_OK;

    out->account_id = key->account_id;
    out->key_id = key->id;
    out->amount_nusd = 0;
    if (!b) return BILL_OK; /* billing not started: nothing is held or charged */
    if (amount_nusd < 0) amount_nusd = 0;

    both_find(b, key->account_id, key->id, &a, &k);
    if (!a) {
        /* Created by another process since the last poll: ask for one now rather than in up
         * to 100 ms, so the client's retry works. */
        bill_poke(b);
        return BILL_NO_ACCOUNT;
    }
    if (!k && !(k = key_get(b, key->id, key->account_id, key->spent_nusd))) {
        log_error("billing: out of memory adding key %" PRId64, key->id);
        return BILL_NO_ACCOUNT;
    }
    amu = acct_mu(b, a->id);
    kmu = key_mu(b, k);
    pair_lock(amu, kmu);
    /* __int128: each term fits int64, their combinations need not. */
    __int128 avail = (__int128)a->db_balance - a->unflushed - a->held;
    if (avail < amount_nusd) {
        st = BILL_INSUFFICIENT;
    } else if (key->spend_limit_nusd >= 0 &&
               (__int128)k->db_spent + k->unflushed + k->held + amount_nusd >
                   key->spend_limit_nusd) {
        st = BILL_SPEND_LIMIT;
    } else {
        a->held += amount_nusd;
        k->held += amount_nusd;
        out->amount_nusd = amount_nusd;
    }
    pair_unlock(amu, kmu);
    return st;
}

/* Finds the entries of a hold placed by bill_hold_place (they exist for as long as b does). */
static int bill_hold_entries(bill_t *b, const bill_hold *h, bill_acct **a, bill_keyent **k)
{
    both_find(b, h->account_id, h->key_id, a, k);
    if (*a && *k) return 0;
    log_error("billing: settling a hold that was never placed (account %" PRId64 ", key %" PRId64
              ")",
              h->account_id, h->key_id);
    return -1;
}

int64_t bill_settle(bill_t *b, bill_hold *h, store_usage_event *ev)
{
    bill_acct *a;
    bill_keyent *k;
    int64_t want = ev->charged_nusd > 0 ? ev->charged_nusd : 0, charge;
    int64_t amount = h->amount_nusd;

    ev->account_id = h->account_id;
    ev->key_id = h->key_id;
    ev->notice_threshold_nusd = ev->notice_balance_nusd = 0;
    if (!b || bill_hold_entries(b, h, &a, &k) != 0) {
        ev->charged_nusd = 0;
        h->amount_nusd = 0;
        return 0;
    }
    pthread_mutex_t *amu = acct_mu(b, a->id), *kmu = key_mu(b, k);
    pair_lock(amu, kmu);
    /* What the balance can pay once this hold is gone; other requests' holds stay covered. */
    __int128 can = (__int128)a->db_balance - a->unflushed - (a->held - amount);
    if (can < 0) can = 0;
    /* Several instances: this instance's view of the balance lacks the others' charges and may
     * lack a top-up it has not polled yet, so it cannot clamp; Redis covered the hold, and the
     * store clamps at commit should a fault have let charges exceed the balance. */
    if (b->shared) can = want;
    charge = (__int128)want > can ? (int64_t)can : want;
    a->held -= amount;
    a->unflushed += charge;
    k->held -= amount;
    k->unflushed += charge;
    a->ver++;
    k->ver++;
    if (a->low_armed && charge > 0 && a->db_balance - a->unflushed < a->low_threshold) {
        /* this charge crossed the threshold: one notice, written with the charge */
        a->low_armed = 0;
        ev->notice_threshold_nusd = a->low_threshold;
        ev->notice_balance_nusd = a->db_balance - a->unflushed;
    }
    pair_unlock(amu, kmu);

    if (charge < want)
        log_warn("billing: request %.39s cost %" PRId64 " nano-USD but account %" PRId64
                 " could pay only %" PRId64 "; the difference is not billed",
                 ev->request_id, want, h->account_id, charge);
    h->amount_nusd = 0;
    ev->charged_nusd = charge;
    bill_enqueue(b, ev);
    return charge;
}

void bill_release(bill_t *b, bill_hold *h, store_usage_event *ev)
{
    bill_acct *a;
    bill_keyent *k;
    int64_t amount = h->amount_nusd;

    if (!b) return;
    if (bill_hold_entries(b, h, &a, &k) != 0) return;
    if (amount > 0) {
        pthread_mutex_t *amu = acct_mu(b, a->id), *kmu = key_mu(b, k);
        pair_lock(amu, kmu);
        a->held -= amount;
        k->held -= amount;
        a->ver++;
        k->ver++;
        pair_unlock(amu, kmu);
    }
    h->amount_nusd = 0;
    if (ev) {
        ev->account_id = h->account_id;
        ev->key_id = h->key_id;
        ev->charged_nusd = 0;
        ev->notice_threshold_nusd = ev->notice_balance_nusd = 0;
        bill_enqueue(b, ev);
    }
}

const cfg_t *bill_cfg(bill_t *b)
{
    return b ? b->cfg : NULL;
}

int bill_balance(bill_t *b, int64_t account_id, int64_t *balance_nusd)
{
    bill_acct *a = b ? acct_find(b, account_id) : NULL;

    if (!a) return -1;
    pthread_mutex_t *mu = acct_mu(b, account_id);
    pthread_mutex_lock(mu);
    *balance_nusd = a->db_balance - a->unflushed;
    pthread_mutex_unlock(mu);
    return 0;
}

int bill_key_spent(bill_t *b, int64_t key_id, int64_t *spent_nusd)
{
    bill_keyent *k = b ? key_find(b, key_id) : NULL;

    if (!k) return -1;
    pthread_mutex_t *mu = key_mu(b, k);
    pthread_mutex_lock(mu);
    *spent_nusd = k->db_spent + k->unflushed;
    pthread_mutex_unlock(mu);
    return 0;
}

void bill_flush(bill_t *b)
{
    bill_flush_for(b, -1);
}

int bill_flush_for(bill_t *b, int64_t max_ms)
{
    if (!b) return 0;
    bg_boost(&b->bg); /* someone waits for the ledger thread: it must not wait for idle CPU */
    struct timespec until;
    if (max_ms >= 0) bill_wall_deadline(&until, max_ms);
    int rc = 0;
    pthread_mutex_lock(&b->qmu);
    uint64_t target = b->enq_total;
    b->flushers++;
    if (b->sleeping) {
        bg_wake(&b->bg);
        pthread_cond_signal(&b->wake);
    }
    while (b->committed_total < target && !b->exited) {
        if (max_ms < 0) {
            pthread_cond_wait(&b->flushed, &b->qmu);
        } else if (pthread_cond_timedwait(&b->flushed, &b->qmu, &until) == ETIMEDOUT) {
            rc = -1;
            break;
        }
    }
    b->flushers--;
    pthread_mutex_unlock(&b->qmu);
    return rc;
}

int bill_poll_sync(bill_t *b, int64_t max_ms)
{
    if (!b) return 0;
    struct timespec until;
    bill_wall_deadline(&until, max_ms);
    bg_boost(&b->bg);
    pthread_mutex_lock(&b->qmu);
    /* a poll already running may have read the accounts before the caller's change */
    uint64_t want = b->polls_started + 1;
    b->poke = 1;
    if (b->sleeping) {
        bg_wake(&b->bg);
        pthread_cond_signal(&b->wake);
    }
    int rc = 0;
    while (b->polls_done < want && !b->exited && rc == 0)
        rc = pthread_cond_timedwait(&b->flushed, &b->qmu, &until);
    int ok = b->polls_done >= want;
    pthread_mutex_unlock(&b->qmu);
    return ok ? 0 : -1;
}

void bill_poke(bill_t *b)
{
    if (!b) return;
    bg_boost(&b->bg); /* a poke is awaited (a new account's first request, an API top-up) */
    pthread_mutex_lock(&b->qmu);
    b->poke = 1;
    if (b->sleeping) {
        bg_wake(&b->bg);
        pthread_cond_signal(&b->wake);
    }
    pthread_mutex_unlock(&b->qmu);
}

int bill_notify_set(bill_t *b, int64_t account_id, int64_t threshold_nusd)
{
    bill_acct *a = b ? acct_find(b, account_id) : NULL;

    if (!a) return -1;
    if (threshold_nusd < 0) threshold_nusd = 0;
    pthread_mutex_t *mu = acct_mu(b, account_id);
    pthread_mutex_lock(mu);
    if (a->low_threshold != threshold_nusd) {
        /* a threshold set above the balance is not a fall below it: armed only at or above */
        a->low_threshold = threshold_nusd;
        a->low_armed = threshold_nusd > 0 && a->db_balance - a->unflushed >= threshold_nusd;
    }
    pthread_mutex_unlock(mu);
    return 0;
}

void bill_set_on_notice(bill_t *b, void (*fn)(void *ud), void *ud)
{
    if (!b) return;
    b->on_notice = fn;
    b->on_notice_ud = ud;
}

void bill_health(bill_t *b, bill_health_info *out)
{
    int64_t now = bill_now_mono_ms(), oldest = 0;
    pthread_mutex_lock(&b->qmu);
    out->queue_depth = b->enq_total - b->committed_total;
    out->journal_events = b->journaled;
    /* the batch the thread took is written first (FIFO); then the journal; then the queue */
    if (b->committed_total < b->taken_total)
        oldest = b->taken_first_ms;
    else if (b->journaled || b->spilling)
        oldest = b->jr_first_ms;
    else if (b->in.len)
        oldest = b->first_queued_ms;
    pthread_mutex_unlock(&b->qmu);
    out->lag_ms = oldest && now > oldest ? now - oldest : 0;
    out->store_ok = atomic_load_explicit(&b->store_ok, memory_order_relaxed);
    int64_t since = atomic_load_explicit(&b->store_failed_ms, memory_order_relaxed);
    out->store_failing_ms = !out->store_ok && now > since ? now - since : 0;
}

/* ---- several instances (the shared state in Redis, src/shared/) ---- */

static int ids_add(bill_ids *v, int64_t id)
{
    if (v->len == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 64;
        int64_t *n = realloc(v->id, ncap * sizeof *n);
        if (!n) return -1;
        v->id = n;
        v->cap = ncap;
    }
    v->id[v->len++] = id;
    return 0;
}

/* A row the poll read: Redis gets it with the account's next push (ledger thread). */
static int bill_owe_balance(bill_t *b, const bill_newacct *row)
{
    bill_acct *a = acct_find(b, row->id);
    if (!a) return 0;
    a->push_bal = row->balance;
    a->push_seq = row->seq;
    if (a->push_pending) return 0;
    if (ids_add(&b->push_accts, a->id) != 0) return -1;
    a->push_pending = 1;
    return 0;
}

static bill_push *pushbuf(bill_t *b, size_t n)
{
    if (n > b->pushbuf_cap) {
        bill_push *p = realloc(b->pushbuf, n * sizeof *p);
        if (!p) return NULL;
        b->pushbuf = p;
        b->pushbuf_cap = n;
    }
    return b->pushbuf;
}

/* Pushes what the ledger owes Redis, in one batch: each account's row as the poll read it, with
 * this instance's reservation no longer counting the charges that row includes (cu), and each
 * key's committed spend with its reservation likewise. The two go in one script per entry, so
 * Redis never sees a charge in neither place; until the push succeeds it is in both (which
 * refuses early, never overspends). Runs after a poll, which follows every commit: every
 * committed account is then in push_accts with a row that includes its charges. */
static void bill_push_owed(bill_t *b)
{
    size_t na = b->push_accts.len, nk = b->push_keys.len;
    if (na + nk == 0) return;
    bill_push *p = pushbuf(b, na + nk);
    if (!p) return; /* retried next time: still reserved */
    int64_t *taken = malloc((na + nk) * sizeof *taken);
    if (!taken) return;
    for (size_t i = 0; i < na; i++) {
        bill_acct *a = acct_find(b, b->push_accts.id[i]);
        pthread_mutex_t *mu = acct_mu(b, a->id);
        pthread_mutex_lock(mu);
        a->ver++;
        p[i] = (bill_push){.kind = 'a',
                           .id = a->id,
                           .ver = a->ver,
                           .resv = a->held + a->unflushed,
                           .has_row = 1,
                           .row_value = a->push_bal,
                           .row_seq = a->push_seq};
        taken[i] = a->cu;
        pthread_mutex_unlock(mu);
    }
    for (size_t i = 0; i < nk; i++) {
        bill_keyent *k = key_find(b, b->push_keys.id[i]);
        /* the key's row as it is now: every commit made, by any instance, is in its spent */
        store_key row;
        if (store_key_get(b->store, k->id, &row) != STORE_OK) {
            free(taken);
            return; /* all retried after the next poll; nothing was released */
        }
        pthread_mutex_t *mu = key_mu(b, k);
        pthread_mutex_lock(mu);
        k->ver++;
        p[na + i] = (bill_push){.kind = 'k',
                                .id = k->id,
                                .ver = k->ver,
                                .resv = k->held + k->unflushed,
                                .has_row = 1,
                                .row_value = row.spent_nusd};
        taken[na + i] = k->kcu;
        pthread_mutex_unlock(mu);
    }
    if (b->pusher(b->pusher_ud, p, na + nk) != 0) {
        /* Not applied (or not known to be): cu and kcu stay reserved, and the snapshots sent
         * meanwhile include them; the next poll's push tries again. */
        if (b->push_failures++ % BILL_WARN_EVERY == 0)
            log_warn("billing: telling the shared state of %zu committed entries failed; "
                     "they stay reserved until it works",
                     na + nk);
        free(taken);
        return;
    }
    b->push_failures = 0;
    /* A snapshot taken while the push was on its way (a request admitted or ended meanwhile) has
     * a later version and still counted what the push took: Redis keeps it, a reservation too
     * high (safe: it refuses early) until something newer comes. So such an entry stays owed,
     * and the next poll's push tells Redis again, at a later version, without it. */
    size_t again_a = 0, again_k = 0;
    for (size_t i = 0; i < na; i++) {
        bill_acct *a = acct_find(b, b->push_accts.id[i]);
        pthread_mutex_t *mu = acct_mu(b, a->id);
        pthread_mutex_lock(mu);
        a->cu -= taken[i];
        if (a->ver != p[i].ver)
            b->push_accts.id[again_a++] = a->id; /* stays push_pending */
        else
            a->push_pending = 0;
        pthread_mutex_unlock(mu);
    }
    for (size_t i = 0; i < nk; i++) {
        bill_keyent *k = key_find(b, b->push_keys.id[i]);
        pthread_mutex_t *mu = key_mu(b, k);
        pthread_mutex_lock(mu);
        k->kcu -= taken[na + i];
        if (k->ver != p[na + i].ver)
            b->push_keys.id[again_k++] = k->id;
        else
            k->push_pending = 0;
        pthread_mutex_unlock(mu);
    }
    free(taken);
    b->push_accts.len = again_a;
    b->push_keys.len = again_k;
}

void bill_set_pusher(bill_t *b, int (*push)(void *ud, const bill_push *p, size_t n), void *ud)
{
    /* before any traffic: the ledger thread reads these without a lock */
    pthread_mutex_lock(&b->qmu);
    b->shared = 1;
    b->pusher = push;
    b->pusher_ud = ud;
    pthread_mutex_unlock(&b->qmu);
}

/* Under both stripe locks. */
static void snap_fill(const bill_acct *a, const bill_keyent *k, bill_snap *sn)
{
    sn->account_id = a->id;
    sn->aver = a->ver;
    sn->aresv = a->held + a->unflushed + a->cu;
    sn->abal = a->db_balance;
    sn->aseq = a->seq;
    sn->key_id = k->id;
    sn->kver = k->ver;
    sn->kresv = k->held + k->unflushed + k->kcu;
    sn->kspent = k->db_spent;
}

bill_status bill_hold_reserve(bill_t *b, const store_key *key, int64_t amount_nusd, bill_hold *out,
                              bill_snap *sn)
{
    bill_acct *a;
    bill_keyent *k;
    out->account_id = key->account_id;
    out->key_id = key->id;
    out->amount_nusd = 0;
    memset(sn, 0, sizeof *sn);
    if (amount_nusd < 0) amount_nusd = 0;
    both_find(b, key->account_id, key->id, &a, &k);
    if (!a) {
        bill_poke(b);
        return BILL_NO_ACCOUNT;
    }
    if (!k && !(k = key_get(b, key->id, key->account_id, key->spent_nusd))) return BILL_NO_ACCOUNT;
    pthread_mutex_t *amu = acct_mu(b, a->id), *kmu = key_mu(b, k);
    pair_lock(amu, kmu);
    /* counted before Redis is asked, so that no snapshot sent meanwhile leaves it out */
    a->held += amount_nusd;
    k->held += amount_nusd;
    a->ver++;
    k->ver++;
    out->amount_nusd = amount_nusd;
    snap_fill(a, k, sn);
    pair_unlock(amu, kmu);
    return BILL_OK;
}

void bill_hold_undo(bill_t *b, bill_hold *h)
{
    bill_release(b, h, NULL);
}

int bill_snapshot(bill_t *b, int64_t account_id, int64_t key_id, bill_snap *sn)
{
    bill_acct *a;
    bill_keyent *k;
    memset(sn, 0, sizeof *sn);
    if (!b) return -1;
    both_find(b, account_id, key_id, &a, &k);
    if (!a || !k) return -1;
    pthread_mutex_t *amu = acct_mu(b, a->id), *kmu = key_mu(b, k);
    pair_lock(amu, kmu);
    snap_fill(a, k, sn);
    pair_unlock(amu, kmu);
    return 0;
}

/* Every account and key this instance reserves anything of (or ever did: a zero still needs
 * telling after a change), for re-registering with a Redis that lost its data. Each at a new
 * version: one taken while a push is on its way must not tie with the push's (Redis keeps the
 * first of equal versions, which may be this one, counting what the push takes); a later one
 * makes bill_push_owed push the entry again. */
int bill_reservations(bill_t *b, bill_push **out, size_t *n)
{
    size_t cap = 0, len = 0;
    bill_push *p = NULL;
    *out = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&b->tlock);
    size_t want = b->accts.count + b->keys.count;
    pthread_rwlock_unlock(&b->tlock);
    cap = want + 16;
    if (!(p = malloc(cap * sizeof *p))) return -1;
    pthread_rwlock_rdlock(&b->tlock);
    for (size_t i = 0; i < b->accts.cap && len < cap; i++) {
        bill_acct *a = b->accts.slots[i].entry;
        if (!a || a->ver == 0) continue;
        pthread_mutex_t *mu = acct_mu(b, a->id);
        pthread_mutex_lock(mu);
        a->ver++;
        p[len++] = (bill_push){
            .kind = 'a', .id = a->id, .ver = a->ver, .resv = a->held + a->unflushed + a->cu};
        pthread_mutex_unlock(mu);
    }
    for (size_t i = 0; i < b->keys.cap && len < cap; i++) {
        bill_keyent *k = b->keys.slots[i].entry;
        if (!k || k->ver == 0) continue;
        pthread_mutex_t *mu = key_mu(b, k);
        pthread_mutex_lock(mu);
        k->ver++;
        p[len++] = (bill_push){
            .kind = 'k', .id = k->id, .ver = k->ver, .resv = k->held + k->unflushed + k->kcu};
        pthread_mutex_unlock(mu);
    }
    pthread_rwlock_unlock(&b->tlock);
    *out = p;
    *n = len;
    return 0;
}

void bill_set_on_stopped(bill_t *b, void (*fn)(void *ud, bill_t *b), void *ud)
{
    b->on_stopped = fn;
    b->on_stopped_ud = ud;
}

const char *bill_journal_path(const bill_t *b)
{
    return b->jr_path;
}
