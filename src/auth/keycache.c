/*
 * The in-memory key cache (see keycache.h): a chained hash table of every live key, indexed by
 * the SHA-256 of the key, behind a reader-writer lock.
 *
 * Event-loop threads only ever read it (kc_lookup: hash, read lock, copy out). One refresher
 * thread owns a store handle and, every 250 ms, asks the store for the key rows whose change
 * sequence is above the last one it applied; deleted rows remove their entry, others replace or
 * add it. Applying a row is idempotent, so a refresh that fails half-way is simply repeated from
 * the same sequence on the next tick while lookups keep serving the last good state.
 *
 * The rows are fetched from the store before the write lock is taken, so lookups never wait for
 * disk I/O; the lock is held only while pointers are swapped.
 *
 * kc_apply lets the API layer put a row it has just written into the table at once, so a key
 * created, changed or deleted through the account API takes effect on this gateway before the
 * next tick; kc_apply_row explains how that path and the refresher's stay ordered.
 */
#include "auth/keycache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/keys.h"
#include "common/log.h"
#include "common/util.h"

#define KC_REFRESH_MS 250
#define KC_MIN_BUCKETS 64
/* While the store keeps failing, warn once every this many ticks (10 s) rather than 4 times a
 * second. */
#define KC_WARN_EVERY 40

typedef struct kc_entry {
    struct kc_entry *next;
    store_key key;
} kc_entry;

struct kc {
    pthread_rwlock_t lock; /* guards buckets, nbuckets, count, applied_seq */
    kc_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    int64_t applied_seq; /* every row up to this sequence is in the table (the refresher's) */
    /* bumped under the write lock by every change of the table; read by kc_lookup_local, which
     * keeps copies taken at a generation (starts at 1: an empty slot's 0 never matches) */
    _Atomic uint64_t gen;

    /* Used only by whoever refreshes: kc_start before the thread exists, then the thread. */
    store_t *store;
    int64_t last_seq;
    store_key *batch;
    size_t batch_len, batch_cap;
    int batch_oom;

    pthread_mutex_t mu; /* guards stop and the hook; cv wakes the refresher early for kc_stop */
    pthread_cond_t cv;
    int poke; /* kc_poke: refresh now (guarded by mu) */
    int stop;
    void (*before_publish)(void *ud);
    void *before_publish_ud;
    pthread_t thread;
    int thread_started;
};

/* The table is keyed by SHA-256 output, which is already uniformly distributed: its first bytes
 * make a perfectly good bucket index. */
static size_t kc_bucket(const kc_t *kc, const unsigned char hash[32])
{
    uint64_t h;
    memcpy(&h, hash, sizeof(h));
    return (size_t)(h & (uint64_t)(kc->nbuckets - 1));
}

/* Returns the link that points at the entry for hash (or the terminating NULL link). */
static kc_entry **kc_find(kc_t *kc, const unsigned char hash[32])
{
    kc_entry **pp = &kc->buckets[kc_bucket(kc, hash)];
    while (*pp && !ms_ct_equal((*pp)->key.hash, hash, 32))
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the bucket array; on allocation failure the table keeps working with longer chains. */
static void kc_grow(kc_t *kc)
{
    size_t nb = kc->nbuckets * 2;
    kc_entry **nbk = calloc(nb, sizeof(*nbk));
    kc_entry **old = kc->buckets;
    size_t oldn = kc->nbuckets;

    if (!nbk) return;
    kc->buckets = nbk;
    kc->nbuckets = nb;
    for (size_t i = 0; i < oldn; i++) {
        kc_entry *e = old[i];
        while (e) {
            kc_entry *next = e->next;
            size_t b = kc_bucket(kc, e->key.hash);
            e->next = nbk[b];
            nbk[b] = e;
            e = next;
        }
    }
    free(old);
}

/* Applies one changed row; caller holds the write lock. Returns -1 when out of memory.
 *
 * Rows reach the table from two directions: the refresher, in sequence order, and kc_apply, from
 * an event loop right after that loop's own store write. The two can cross (the refresher may
 * apply a batch it read just before the API's write committed), so a row never replaces a newer
 * version of itself, and a deletion, which is irreversible, always wins. kc_apply leaves a
 * deleted key as a tombstone (an entry with deleted set, which kc_lookup refuses) so that an
 * older row still on its way from the refresher cannot bring the key back; the refresher
 * removes the tombstone when it reaches the deletion itself. */
static int kc_apply_row(kc_t *kc, const store_key *k, int keep_tombstone)
{
    kc_entry **pp = kc_find(kc, k->hash);
    kc_entry *e = *pp;

    if (e && e->key.deleted && !k->deleted) return 0;
    if (e && e->key.seq > k->seq) return 0;
    if (k->deleted && !keep_tombstone) {
        if (e) {
            *pp = e->next;
            free(e);
            kc->count--;
        }
        return 0;
    }
    if (e) {
        e->key = *k;
        return 0;
    }
    e = malloc(sizeof(*e));
    if (!e) return -1;
    e->key = *k;
    e->next = NULL;
    *pp = e;
    kc->count++;
    if (kc->count > kc->nbuckets) kc_grow(kc);
    return 0;
}

static void kc_collect(void *ud, const store_key *k)
{
    kc_t *kc = ud;

    if (kc->batch_oom) return;
    if (kc->batch_len == kc->batch_cap) {
        size_t ncap = kc->batch_cap ? kc->batch_cap * 2 : 64;
        store_key *nb = realloc(kc->batch, ncap * sizeof(*nb));
        if (!nb) {
            kc->batch_oom = 1;
            return;
        }
        kc->batch = nb;
        kc->batch_cap = ncap;
    }
    kc->batch[kc->batch_len++] = *k;
}

/* One refresh: fetch the rows changed since last_seq, then apply them under the write lock.
 * Returns 0, or -1 with the reason in msg. */
static int kc_refresh(kc_t *kc, char *msg, size_t msglen)
{
    int64_t max_seq = kc->last_seq;
    int rc = 0;

    kc->batch_len = 0;
    kc->batch_oom = 0;
    if (store_keys_since(kc->store, kc->last_seq, kc_collect, kc, &max_seq) != STORE_OK) {
        snprintf(msg, msglen, "%s", store_errmsg(kc->store));
        return -1;
    }
    if (kc->batch_oom) {
        snprintf(msg, msglen, "out of memory reading changed keys");
        return -1;
    }
    if (kc->batch_len == 0) {
        kc->last_seq = max_seq;
        return 0;
    }
    pthread_mutex_lock(&kc->mu);
    void (*hook)(void *) = kc->before_publish;
    void *hook_ud = kc->before_publish_ud;
    pthread_mutex_unlock(&kc->mu);
    for (size_t i = 0; hook && i < kc->batch_len; i++) {
        if (kc->batch[i].active && !kc->batch[i].deleted) {
            hook(hook_ud);
            break;
        }
    }
    pthread_rwlock_wrlock(&kc->lock);
    for (size_t i = 0; i < kc->batch_len && rc == 0; i++)
        rc = kc_apply_row(kc, &kc->batch[i], 0);
    if (rc == 0) kc->applied_seq = max_seq;
    atomic_fetch_add_explicit(&kc->gen, 1, memory_order_release);
    pthread_rwlock_unlock(&kc->lock);
    if (rc != 0) {
        /* Rows already applied are applied again next time, which is harmless. */
        snprintf(msg, msglen, "out of memory applying changed keys");
        return -1;
    }
    kc->last_seq = max_seq;
    /* A large initial load should not pin its buffer for the life of the process. */
    if (kc->batch_cap > 1024) {
        free(kc->batch);
        kc->batch = NULL;
        kc->batch_cap = 0;
    }
    kc->batch_len = 0;
    return 0;
}

static void *kc_main(void *arg)
{
    kc_t *kc = arg;
    unsigned failures = 0;
    char msg[600];
    pthread_setname_np(pthread_self(), "ms-keycache");

    pthread_mutex_lock(&kc->mu);
    while (!kc->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += (long)KC_REFRESH_MS * 1000000L;
        deadline.tv_sec += deadline.tv_nsec / 1000000000L;
        deadline.tv_nsec %= 1000000000L;
        while (!kc->stop && !kc->poke &&
               pthread_cond_timedwait(&kc->cv, &kc->mu, &deadline) != ETIMEDOUT)
            ;
        if (kc->stop) break;
        kc->poke = 0;
        pthread_mutex_unlock(&kc->mu);

        if (kc_refresh(kc, msg, sizeof(msg)) != 0) {
            if (failures++ % KC_WARN_EVERY == 0)
                log_warn("key cache: refresh failed (serving the last good state): %s", msg);
        } else if (failures) {
            log_warn("key cache: refresh recovered after %u failed attempts", failures);
            failures = 0;
        }

        pthread_mutex_lock(&kc->mu);
    }
    pthread_mutex_unlock(&kc->mu);
    return NULL;
}

static void kc_free(kc_t *kc)
{
    for (size_t i = 0; kc->buckets && i < kc->nbuckets; i++) {
        kc_entry *e = kc->buckets[i];
        while (e) {
            kc_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(kc->buckets);
    free(kc->batch);
    store_close(kc->store);
    pthread_cond_destroy(&kc->cv);
    pthread_mutex_destroy(&kc->mu);
    pthread_rwlock_destroy(&kc->lock);
    free(kc);
}

void kc_set_before_publish(kc_t *kc, void (*fn)(void *ud), void *ud)
{
    pthread_mutex_lock(&kc->mu);
    kc->before_publish = fn;
    kc->before_publish_ud = ud;
    pthread_mutex_unlock(&kc->mu);
}

kc_t *kc_start(const cfg_t *cfg, char *err, size_t errlen)
{
    pthread_rwlockattr_t rwa;
    pthread_condattr_t ca;
    kc_t *kc = calloc(1, sizeof(*kc));
    char msg[600];
    int rc;

    if (!kc) {
        snprintf(err, errlen, "key cache: out of memory");
        return NULL;
    }
    /* glibc's default rwlock lets a steady stream of readers starve the writer; the hot path is
     * exactly such a stream, and a deactivation must still get through. */
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&kc->lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    pthread_mutex_init(&kc->mu, NULL);
    /* The tick deadline is on the monotonic clock so a wall-clock jump cannot stall refreshes. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&kc->cv, &ca);
    pthread_condattr_destroy(&ca);

    atomic_init(&kc->gen, 1);
    kc->nbuckets = KC_MIN_BUCKETS;
    kc->buckets = calloc(kc->nbuckets, sizeof(*kc->buckets));
    if (!kc->buckets) {
        snprintf(err, errlen, "key cache: out of memory");
        goto fail;
    }
    kc->store = store_open(cfg, err, errlen);
    if (!kc->store) goto fail;
    if (kc_refresh(kc, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "key cache: loading keys: %s", msg);
        goto fail;
    }
    rc = pthread_create(&kc->thread, NULL, kc_main, kc);
    if (rc != 0) {
        snprintf(err, errlen, "key cache: starting refresher: %s", strerror(rc));
        goto fail;
    }
    kc->thread_started = 1;
    return kc;

fail:
    kc_free(kc);
    return NULL;
}

void kc_stop(kc_t *kc)
{
    if (!kc) return;
    if (kc->thread_started) {
        pthread_mutex_lock(&kc->mu);
        kc->stop = 1;
        pthread_cond_signal(&kc->cv);
        pthread_mutex_unlock(&kc->mu);
        pthread_join(kc->thread, NULL);
    }
    kc_free(kc);
}

kc_status kc_lookup(kc_t *kc, const char *key, size_t n, int64_t now_ms, store_key *out)
{
    unsigned char hash[32];

    /* Malformed input is refused before hashing: it cannot match, and it costs nothing. */
    if (!key_well_formed(key, n, NULL)) {
        if (out) memset(out, 0, sizeof(*out));
        return KC_NOT_FOUND;
    }
    key_hash(key, n, hash);
    return kc_lookup_hash(kc, hash, now_ms, out);
}

/* The answer for a row found (or not) by a lookup, into out; k's hash is already zeroed (a
 * key's hash never leaves the cache). */
static kc_status kc_answer(int found, const store_key *k, int64_t now_ms, store_key *out)
{
    if (!found || k->deleted) {
        if (out) memset(out, 0, sizeof(*out));
        return KC_NOT_FOUND;
    }
    if (out) *out = *k;
    if (k->expires_at_ms != 0 && now_ms >= k->expires_at_ms) return KC_EXPIRED;
    if (!k->active) return KC_INACTIVE;
    return KC_OK;
}

/* Copies the table's row for hash into *k under the read lock, its hash zeroed; returns whether
 * there is one, and the table's generation that the copy belongs to into *gen. */
static int kc_read(kc_t *kc, const unsigned char hash[32], store_key *k, uint64_t *gen)
{
    int found = 0;
    pthread_rwlock_rdlock(&kc->lock);
    kc_entry *e = *kc_find(kc, hash);
    if (e) {
        *k = e->key;
        found = 1;
    }
    if (gen) *gen = atomic_load_explicit(&kc->gen, memory_order_relaxed);
    pthread_rwlock_unlock(&kc->lock);
    if (found) memset(k->hash, 0, sizeof(k->hash));
    return found;
}

kc_status kc_lookup_hash(kc_t *kc, const unsigned char hash[32], int64_t now_ms, store_key *out)
{
    store_key k;
    int found = kc_read(kc, hash, &k, NULL);
    return kc_answer(found, &k, now_ms, out);
}

kc_status kc_lookup_local(kc_t *kc, kc_local *l, const unsigned char hash[32], int64_t now_ms,
                          store_key *out)
{
    /* Acquire: a generation seen here comes with every change made before it was bumped. A
     * change in progress (write lock held, not yet bumped) is not seen, as it would not be by a
     * read lock taken just before it. */
    uint64_t gen = atomic_load_explicit(&kc->gen, memory_order_acquire);
    kc_local_slot *s = &l->slot[hash[0] & (KC_LOCAL_SLOTS - 1)];
    /* A hit answers from the slot itself: one copy of the row (into out), not three. */
    if (!(s->gen == gen && ms_ct_equal(s->hash, hash, 32))) {
        s->found = kc_read(kc, hash, &s->key, &s->gen);
        memcpy(s->hash, hash, 32);
    }
    return kc_answer(s->found, &s->key, now_ms, out);
}

void kc_apply(kc_t *kc, const store_key *k)
{
    int rc = 0;

    if (!kc || !k) return;
    pthread_rwlock_wrlock(&kc->lock);
    /* At or below applied_seq the refresher has already put this row, or a newer one, in place;
     * re-applying an older row could only undo a later change. */
    if (k->seq > kc->applied_seq) rc = kc_apply_row(kc, k, 1);
    atomic_fetch_add_explicit(&kc->gen, 1, memory_order_release);
    pthread_rwlock_unlock(&kc->lock);
    /* Out of memory: the refresher adds the row within one tick anyway. */
    if (rc != 0) log_warn("key cache: out of memory applying key %lld", (long long)k->id);
}

void kc_poke(kc_t *kc)
{
    if (!kc || !kc->thread_started) return;
    pthread_mutex_lock(&kc->mu);
    kc->poke = 1;
    pthread_cond_signal(&kc->cv);
    pthread_mutex_unlock(&kc->mu);
}
