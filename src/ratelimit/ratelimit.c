/*
 * Rate limits (ratelimit.h): GCRA counters for requests and tokens per minute, per key, per
 * account and per model, shared by every worker thread of the instance.
 *
 * The algorithm. A counter with limit L per minute has an emission interval T = 60000/L ms and
 * a capacity of the whole minute (tau = 60000 ms); its state is one instant, the theoretical
 * arrival time TAT. A cost of n is admitted when max(TAT, now) + n*T - now <= tau, and then
 * TAT = max(TAT, now) + n*T. So an idle client may spend its whole minute at once, and a client
 * at the limit gets one unit every T, with no window edges to game.
 *
 * Exact arithmetic. T = 60000/L ms is rarely a whole number of anything (L = 7 gives 8571.43 ms,
 * a tokens limit of 1e12 gives 6e-8 ms), so no fixed time unit is exact for every limit. Instead
 * a counter keeps its TAT as whole milliseconds plus a remainder in units of 1/L ms: in those
 * units T is exactly 60000 and tau exactly 60000*L, so every step is integer arithmetic with no
 * rounding at all. Only what is reported is rounded, and always towards the safe side: a wait is
 * rounded up to the next millisecond (never 0 for a refusal), a remaining count down.
 * Everything is computed as the debt D = max(TAT, now) - now in those units: D <= 3.6e18 for
 * the largest limit (1e12) and the largest debt (one hour), so int64 never overflows.
 *
 * What a counter reports (the x-ratelimit-* headers, for the key's own two counters):
 *   remaining = floor((tau - D) / T): units that could be admitted right now (0 when the key is
 *               over its limit after a correction); after an admission, what is left after it;
 *   reset     = D rounded up to the ms: the time until the counter is back to a full minute.
 *
 * A changed limit (a key's rpm/tpm edited through the API) takes effect at once. Every counter
 * stores the limit it was last used with; a different limit rescales the state so that what the
 * key has used stays used: the debt is kept in units (requests or tokens) and re-expressed with
 * the new T. Raising the limit from 10 to 20 after 10 requests leaves 10 to use at once;
 * lowering it below what was used makes the key wait for the excess at the new pace. Account
 * and model limits come from the config and go through the same path, which is what a live
 * reload of the config needs: the defaults are set again (rl_set_limits), a model's limits come
 * with the request's model, and counters are kept.
 *
 * Debt is capped at one hour: corrections (real usage above the estimate) may push a counter
 * past its minute, so a key that used more than its limit really waits, but never more than an
 * hour, however wrong an estimate was.
 *
 * State and locking. One entry per (scope, id) holds both of its counters (requests, tokens);
 * model entries are keyed by a 64-bit hash of the model's name, not by its cfg_model, so that a
 * reloaded config (a new cfg_model) counts on where the old one left off. Entries live in 64
 * stripes, each a chained hash table with its own mutex on its own cache line. One admission
 * touches up to three entries (key, account, model; six counters): it locks their distinct stripes
 * in ascending stripe order (so two admissions never wait on each other in a cycle), checks every
 * counter, and consumes from all of them only if all allow it: a refusal consumes nothing anywhere.
 * A key's entry lives in its account's stripe: every request of the key locks that stripe for the
 * account's counters anyway, so two locks a request (account, model) do what three did, with no
 * contention added.
 *
 * Memory. An entry whose counters are fully replenished (TAT <= now) is indistinguishable from
 * a missing one, so it can be dropped without changing any answer. A stripe is swept when it
 * has grown past a threshold (checked when the stripe is locked, before any lookup, so no entry
 * pointer of the current operation can be freed under it); the threshold then doubles from what
 * survived, which keeps sweeping amortised O(1) and the table bounded by the number of keys
 * active within the last minute (or hour, for keys in correction debt).
 *
 * The backend. Everything above is the local backend, behind rl_ops (admit, correct, peek):
 * the public functions only resolve which limits apply and build an rl_query. A Redis backend
 * (several instances sharing limits: the same arithmetic in one Lua script over the up to six
 * counters) can be added as another rl_ops without changing any caller.
 *
 * When memory for a new entry cannot be allocated, that entry's limits are not enforced for the
 * request (fail open): the gateway keeps serving, and billing still guards the money.
 */
#include "ratelimit/ratelimit.h"
#include "common/util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_MINUTE_MS 60000LL         /* tau, and the period the limits are counted over */
#define RL_MAX_LIMIT 1000000000000LL /* larger limits are treated as this (config's max) */
#define RL_MAX_DEBT_MS 3600000LL     /* see "Debt is capped" above */
#define RL_STRIPES 64                /* power of two */
#define RL_SWEEP_MIN 256             /* a stripe with fewer entries is never swept */
#define RL_MAX_SLOTS 3               /* key, account, model */

enum { RL_REQ, RL_TOK, RL_NDIM };
enum { RL_SCOPE_KEY, RL_SCOPE_ACCOUNT, RL_SCOPE_MODEL };

static const char *const rl_scope_names[] = {"key", "account", "model"};
static const char *const rl_dim_names[] = {"requests", "tokens"};

/* ---- the interface between the public functions and a backend ---- */

/* One (scope, id) and the limits that apply to it for this operation (0 = not limited). */
typedef struct rl_slot {
    int scope;
    uint64_t id;
    int64_t limit[RL_NDIM];
    uint64_t home; /* the account's id for a key and its account, else id: which stripe holds it */
} rl_slot;

/* slot[0] is always the key: its counters are what rl_result reports. */
typedef struct rl_query {
    rl_slot slot[RL_MAX_SLOTS];
    int nslots;
    int64_t cost[RL_NDIM]; /* admit: 1 request and the token estimate */
} rl_query;

/* One token correction (rl_correct), kept as it was asked for until applied. */
typedef struct rl_correction {
    rl_query q;
    int64_t estimate, actual, now_ms;
} rl_correction;

typedef struct rl_ops {
    int (*admit)(void *be, const rl_query *q, int64_t now_ms, rl_result *res);
    void (*correct)(void *be, const rl_correction *c);
    void (*peek)(void *be, const rl_query *q, int64_t now_ms, rl_result *res);
    size_t (*count)(void *be);
    void (*destroy)(void *be);
} rl_ops;

struct rl {
    /* the config's defaults (limits:), set again by a reload while workers read them */
    _Atomic int64_t requests_per_minute, tokens_per_minute;
    _Atomic int64_t account_requests_per_minute, account_tokens_per_minute;
    const rl_ops *ops;
    void *be;
};

/* ---- counters: the GCRA arithmetic ---- */

typedef struct rl_ctr {
    int64_t limit;   /* the limit the state is expressed in; 0 = never used */
    int64_t tat_ms;  /* TAT = tat_ms + tat_rem / limit milliseconds */
    int64_t tat_rem; /* 0 <= tat_rem < limit */
} rl_ctr;

/* max(TAT, now) - now, in units of 1/limit ms. */
static int64_t ctr_debt(const rl_ctr *c, int64_t now)
{
    if (c->limit <= 0 || c->tat_ms < now) return 0;
    int64_t dm = c->tat_ms - now;
    /* Only a caller whose clock went far backwards can see more than the cap. */
    if (dm >= RL_MAX_DEBT_MS) return RL_MAX_DEBT_MS * c->limit;
    return dm * c->limit + c->tat_rem;
}

static void ctr_set(rl_ctr *c, int64_t now, int64_t debt)
{
    if (debt < 0) debt = 0;
    if (debt > RL_MAX_DEBT_MS * c->limit) debt = RL_MAX_DEBT_MS * c->limit;
    c->tat_ms = now + debt / c->limit;
    c->tat_rem = debt % c->limit;
}

/* Makes the counter use limit (> 0), rescaling its state when the limit changed. The debt in
 * units of 1/limit ms is (units used) * 60000 whatever the limit, so keeping the number while
 * changing the limit keeps what was used, at the new pace. */
static void ctr_use(rl_ctr *c, int64_t limit, int64_t now)
{
    if (c->limit == limit) return;
    int64_t debt = c->limit > 0 ? ctr_debt(c, now) : 0;
    c->limit = limit;
    ctr_set(c, now, debt);
}

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0);
}

static int64_t ctr_remaining(const rl_ctr *c, int64_t now)
{
    int64_t left = RL_MINUTE_MS * c->limit - ctr_debt(c, now);
    return left > 0 ? left / RL_MINUTE_MS : 0;
}

static int64_t ctr_reset_ms(const rl_ctr *c, int64_t now)
{
    return ceil_div(ctr_debt(c, now), c->limit);
}

static int64_t clamp_limit(int64_t l)
{
    return l < 0 ? 0 : l > RL_MAX_LIMIT ? RL_MAX_LIMIT : l;
}

/* Reports counter c (NULL: never used, i.e. full) with limit into the result's dimension d. */
static void report(rl_result *res, int d, const rl_ctr *c, int64_t limit, int64_t now)
{
    int64_t *lim = d == RL_REQ ? &res->limit_requests : &res->limit_tokens;
    int64_t *rem = d == RL_REQ ? &res->remaining_requests : &res->remaining_tokens;
    int64_t *rst = d == RL_REQ ? &res->reset_requests_ms : &res->reset_tokens_ms;
    *lim = limit;
    *rem = limit;
    *rst = 0;
    if (limit <= 0) {
        *rem = 0;
    } else if (c && c->limit == limit) {
        *rem = ctr_remaining(c, now);
        *rst = ctr_reset_ms(c, now);
    }
}

/* ---- the local backend: a striped hash table ---- */

typedef struct rl_entry {
    struct rl_entry *next;
    uint64_t hash;
    uint64_t id;
    int scope;
    rl_ctr c[RL_NDIM];
} rl_entry;

typedef struct rl_stripe {
    alignas(64) pthread_mutex_t mu; /* alone on its cache line with its table */
    rl_entry **buckets;
    size_t nbuckets; /* power of two, or 0 before the first insert */
    size_t count;
    size_t sweep_at;
} rl_stripe;

typedef struct rl_local {
    rl_stripe stripes[RL_STRIPES];
} rl_local;

static uint64_t rl_hash(int scope, uint64_t id)
{
    /* splitmix64's finaliser: ids are small sequential integers or pointers, both need mixing */
    uint64_t x = id + 0x9e3779b97f4a7c15ULL * (uint64_t)(scope + 1);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static size_t stripe_of(uint64_t h)
{
    return (size_t)(h & (RL_STRIPES - 1));
}

/* The stripe of a slot: its home's (the account's, for a key), hashed as an account's id. */
static size_t slot_stripe(const rl_slot *sl)
{
    return stripe_of(
        rl_hash(sl->scope == RL_SCOPE_MODEL ? RL_SCOPE_MODEL : RL_SCOPE_ACCOUNT, sl->home));
}

static size_t bucket_of(const rl_stripe *s, uint64_t h)
{
    return (size_t)(h >> 6) & (s->nbuckets - 1);
}

static int entry_idle(const rl_entry *e, int64_t now)
{
    for (int d = 0; d < RL_NDIM; d++)
        if (ctr_debt(&e->c[d], now) > 0) return 0;
    return 1;
}

/* Drops the fully replenished entries of s (see "Memory" above). Called with s locked and
 * before any entry of s is looked up by the current operation. */
static void stripe_sweep(rl_stripe *s, int64_t now)
{
    for (size_t b = 0; b < s->nbuckets; b++) {
        rl_entry **pp = &s->buckets[b];
        while (*pp) {
            rl_entry *e = *pp;
            if (entry_idle(e, now)) {
                *pp = e->next;
                free(e);
                s->count--;
            } else {
                pp = &e->next;
            }
        }
    }
    s->sweep_at = s->count * 2 > RL_SWEEP_MIN ? s->count * 2 : RL_SWEEP_MIN;
}

static void stripe_grow(rl_stripe *s)
{
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 16;
    rl_entry **nbk = calloc(nb, sizeof *nbk);
    if (!nbk) return; /* longer chains, still correct */
    for (size_t b = 0; b < s->nbuckets; b++) {
        rl_entry *e = s->buckets[b];
        while (e) {
            rl_entry *next = e->next;
            size_t i = (size_t)(e->hash >> 6) & (nb - 1);
            e->next = nbk[i];
            nbk[i] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nbk;
    s->nbuckets = nb;
}

static rl_entry *stripe_find(rl_stripe *s, int scope, uint64_t id, uint64_t h)
{
    if (!s->nbuckets) return NULL;
    for (rl_entry *e = s->buckets[bucket_of(s, h)]; e; e = e->next)
        if (e->hash == h && e->id == id && e->scope == scope) return e;
    return NULL;
}

static rl_entry *stripe_add(rl_stripe *s, int scope, uint64_t id, uint64_t h)
{
    if (s->count >= s->nbuckets) stripe_grow(s);
    if (!s->nbuckets) return NULL;
    rl_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->hash = h;
    e->id = id;
    e->scope = scope;
    size_t b = bucket_of(s, h);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->count++;
    return e;
}

/* Adds stripe st to the ascending set locked[0..n) unless it is there; returns the new size. */
static int stripe_set_add(size_t *locked, int n, size_t st)
{
    int j = n;
    while (j > 0 && locked[j - 1] > st)
        j--;
    if (j > 0 && locked[j - 1] == st) return n;
    memmove(&locked[j + 1], &locked[j], (size_t)(n - j) * sizeof *locked);
    locked[j] = st;
    return n + 1;
}

/* Locks locked[0..n) in that (ascending: the global lock order) order, and sweeps those that
 * grew past their threshold: before any lookup, so that no entry pointer of the operation can
 * be freed under it. */
static void lock_stripes(rl_local *lo, const size_t *locked, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        rl_stripe *s = &lo->stripes[locked[i]];
        pthread_mutex_lock(&s->mu);
        if (s->count >= s->sweep_at) stripe_sweep(s, now);
    }
}

/* Locks the distinct stripes of q's slots (lock_stripes). Returns how many stripes were
 * locked, into locked[] in locking order; hashes[i] receives slot i's hash, stripes[i] its
 * stripe. */
static int lock_slots(rl_local *lo, const rl_query *q, int64_t now, uint64_t *hashes,
                      size_t *stripes, size_t *locked)
{
    int n = 0;
    for (int i = 0; i < q->nslots; i++) {
        hashes[i] = rl_hash(q->slot[i].scope, q->slot[i].id);
        stripes[i] = slot_stripe(&q->slot[i]);
        n = stripe_set_add(locked, n, stripes[i]);
    }
    lock_stripes(lo, locked, n, now);
    return n;
}

static void unlock_slots(rl_local *lo, const size_t *locked, int n)
{
    while (n-- > 0)
        pthread_mutex_unlock(&lo->stripes[locked[n]].mu);
}

/* The entries of q's slots (NULL where a slot is not limited at all, or when create is false
 * and the entry does not exist, or when memory ran out). Stripes must be locked. */
static void find_entries(rl_local *lo, const rl_query *q, const uint64_t *hashes,
                         const size_t *stripes, int create, rl_entry **e)
{
    for (int i = 0; i < q->nslots; i++) {
        const rl_slot *sl = &q->slot[i];
        rl_stripe *s = &lo->stripes[stripes[i]];
        e[i] = NULL;
        if (sl->limit[RL_REQ] <= 0 && sl->limit[RL_TOK] <= 0) continue;
        e[i] = stripe_find(s, sl->scope, sl->id, hashes[i]);
        if (!e[i] && create) e[i] = stripe_add(s, sl->scope, sl->id, hashes[i]);
    }
}

static int local_admit(void *be, const rl_query *q, int64_t now, rl_result *res)
{
    rl_local *lo = be;
    uint64_t hashes[RL_MAX_SLOTS];
    size_t stripes[RL_MAX_SLOTS], locked[RL_MAX_SLOTS];
    rl_entry *e[RL_MAX_SLOTS];
    int64_t need[RL_MAX_SLOTS][RL_NDIM] = {{0}};
    int nl = lock_slots(lo, q, now, hashes, stripes, locked);

    find_entries(lo, q, hashes, stripes, 1, e);
    res->allowed = 1;
    res->retry_after_ms = 0;
    for (int i = 0; i < q->nslots; i++) {
        for (int d = 0; d < RL_NDIM; d++) {
            int64_t limit = q->slot[i].limit[d];
            if (!e[i] || limit <= 0) continue;
            rl_ctr *c = &e[i]->c[d];
            ctr_use(c, limit, now);
            /* A cost above the limit waits for a whole minute instead of never passing. */
            int64_t cost = q->cost[d] < limit ? q->cost[d] : limit;
            need[i][d] = ctr_debt(c, now) + cost * RL_MINUTE_MS;
            int64_t over = need[i][d] - RL_MINUTE_MS * limit;
            if (over <= 0) continue;
            int64_t wait = ceil_div(over, limit);
            if (res->allowed || wait > res->retry_after_ms) {
                res->retry_after_ms = wait;
                res->which = rl_dim_names[d];
                res->scope = rl_scope_names[q->slot[i].scope];
            }
            res->allowed = 0;
        }
    }
    if (res->allowed)
        for (int i = 0; i < q->nslots; i++)
            for (int d = 0; d < RL_NDIM; d++)
                if (e[i] && q->slot[i].limit[d] > 0) ctr_set(&e[i]->c[d], now, need[i][d]);
    for (int d = 0; d < RL_NDIM; d++)
        report(res, d, e[0] ? &e[0]->c[d] : NULL, q->slot[0].limit[d], now);
    unlock_slots(lo, locked, nl);
    return res->allowed;
}

/* Applies one correction; its stripes are locked, hashes[] and stripes[] are its slots'. */
static void correct_one(rl_local *lo, const rl_correction *c, const uint64_t *hashes,
                        const size_t *stripes)
{
    const rl_query *q = &c->q;
    int64_t estimate = c->estimate, actual = c->actual, now = c->now_ms;
    rl_entry *e[RL_MAX_SLOTS];
    /* Giving back to a missing (fully replenished) counter changes nothing. */
    find_entries(lo, q, hashes, stripes, actual > estimate, e);
    for (int i = 0; i < q->nslots; i++) {
        int64_t limit = q->slot[i].limit[RL_TOK];
        if (!e[i] || limit <= 0) continue;
        rl_ctr *ct = &e[i]->c[RL_TOK];
        ctr_use(ct, limit, now);
        /* admit charged at most the limit (local_admit): correct from that, or a large
         * estimate would give back tokens other requests used */
        int64_t delta = actual - (estimate < limit ? estimate : limit);
        /* An hour of the limit either way already reaches the cap or empties the debt; the
         * clamp keeps delta * 60000 within int64. */
        int64_t d = delta, hour = limit * 60;
        d = d > hour ? hour : d < -hour ? -hour : d;
        ctr_set(ct, now, ctr_debt(ct, now) + d * RL_MINUTE_MS);
    }
}

static void local_correct(void *be, const rl_correction *c)
{
    rl_local *lo = be;
    uint64_t hashes[RL_MAX_SLOTS];
    size_t stripes[RL_MAX_SLOTS], locked[RL_MAX_SLOTS];
    int nl = lock_slots(lo, &c->q, c->now_ms, hashes, stripes, locked);
    correct_one(lo, c, hashes, stripes);
    unlock_slots(lo, locked, nl);
}

static void local_peek(void *be, const rl_query *q, int64_t now, rl_result *res)
{
    rl_local *lo = be;
    uint64_t hashes[RL_MAX_SLOTS];
    size_t stripes[RL_MAX_SLOTS], locked[RL_MAX_SLOTS];
    rl_entry *e[RL_MAX_SLOTS];
    rl_query one = *q;
    one.nslots = q->nslots > 0 ? 1 : 0;
    int nl = lock_slots(lo, &one, now, hashes, stripes, locked);

    find_entries(lo, &one, hashes, stripes, 0, e);
    res->allowed = 1;
    res->retry_after_ms = 0;
    for (int d = 0; d < RL_NDIM; d++) {
        const rl_ctr *c = one.nslots && e[0] ? &e[0]->c[d] : NULL;
        int64_t limit = one.nslots ? one.slot[0].limit[d] : 0;
        /* Peeking does not rescale a changed limit (it changes nothing): report the state as
         * the next admission will see it. */
        rl_ctr tmp;
        if (c && limit > 0 && c->limit != limit) {
            tmp = *c;
            ctr_use(&tmp, limit, now);
            c = &tmp;
        }
        report(res, d, c, limit, now);
    }
    unlock_slots(lo, locked, nl);
}

static size_t local_count(void *be)
{
    rl_local *lo = be;
    size_t n = 0;
    for (int i = 0; i < RL_STRIPES; i++) {
        pthread_mutex_lock(&lo->stripes[i].mu);
        n += lo->stripes[i].count;
        pthread_mutex_unlock(&lo->stripes[i].mu);
    }
    return n;
}

static void local_destroy(void *be)
{
    rl_local *lo = be;
    if (!lo) return;
    for (int i = 0; i < RL_STRIPES; i++) {
        rl_stripe *s = &lo->stripes[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            rl_entry *e = s->buckets[b];
            while (e) {
                rl_entry *next = e->next;
                free(e);
                e = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(lo);
}

static const rl_ops rl_local_ops = {
    .admit = local_admit,
    .correct = local_correct,
    .peek = local_peek,
    .count = local_count,
    .destroy = local_destroy,
};

static void *local_new(void)
{
    rl_local *lo = aligned_alloc(alignof(rl_local), sizeof *lo);
    if (!lo) return NULL;
    memset(lo, 0, sizeof *lo);
    for (int i = 0; i < RL_STRIPES; i++) {
        if (pthread_mutex_init(&lo->stripes[i].mu, NULL)) {
            while (i-- > 0)
                pthread_mutex_destroy(&lo->stripes[i].mu);
            free(lo);
            return NULL;
        }
        lo->stripes[i].sweep_at = RL_SWEEP_MIN;
    }
    return lo;
}

/* ---- public functions: which limits apply ---- */

rl_t *rl_new(const cfg_t *cfg)
{
    if (!cfg) return NULL;
    rl_t *rl = calloc(1, sizeof *rl);
    if (!rl) return NULL;
    rl_set_limits(rl, cfg);
    rl->ops = &rl_local_ops;
    if (!(rl->be = local_new())) {
        free(rl);
        return NULL;
    }
    return rl;
}

void rl_free(rl_t *rl)
{
    if (!rl) return;
    rl->ops->destroy(rl->be);
    free(rl);
}

void rl_set_limits(rl_t *rl, const cfg_t *cfg)
{
    /* relaxed: each value is read whole; a request that sees some old and some new ones during
     * the reload is admitted under limits that were all valid a moment apart */
    atomic_store_explicit(&rl->requests_per_minute, cfg->requests_per_minute, memory_order_relaxed);
    atomic_store_explicit(&rl->tokens_per_minute, cfg->tokens_per_minute, memory_order_relaxed);
    atomic_store_explicit(&rl->account_requests_per_minute, cfg->account_requests_per_minute,
                          memory_order_relaxed);
    atomic_store_explicit(&rl->account_tokens_per_minute, cfg->account_tokens_per_minute,
                          memory_order_relaxed);
}

static int64_t limit_of(const _Atomic int64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* A model's counters' id: FNV-1a of its name (see "State and locking" above), which the config
 * worked out at load. */
static uint64_t model_id(const cfg_model *m)
{
    if (!m->name) return (uint64_t)(uintptr_t)m; /* not from a config file (tests) */
    return m->name_hash ? m->name_hash : ms_fnv1a64(m->name);
}

/* A key's own limit when it has one (>= 0; 0 = not limited), else the configured default. */
static int64_t key_limit(int64_t own, int64_t dflt)
{
    return clamp_limit(own >= 0 ? own : dflt);
}

static void build_query(const rl_t *rl, const store_key *key, const cfg_model *m, rl_query *q)
{
    memset(q, 0, sizeof *q);
    if (!key) return;
    q->slot[0] = (rl_slot){RL_SCOPE_KEY,
                           (uint64_t)key->id,
                           {key_limit(key->rpm, limit_of(&rl->requests_per_minute)),
                            key_limit(key->tpm, limit_of(&rl->tokens_per_minute))},
                           (uint64_t)key->account_id};
    q->nslots = 1;
    int64_t arpm = limit_of(&rl->account_requests_per_minute);
    int64_t atpm = limit_of(&rl->account_tokens_per_minute);
    if (arpm > 0 || atpm > 0)
        q->slot[q->nslots++] = (rl_slot){RL_SCOPE_ACCOUNT,
                                         (uint64_t)key->account_id,
                                         {clamp_limit(arpm), clamp_limit(atpm)},
                                         (uint64_t)key->account_id};
    if (m && (m->requests_per_minute > 0 || m->tokens_per_minute > 0)) {
        uint64_t mid = model_id(m);
        q->slot[q->nslots++] =
            (rl_slot){RL_SCOPE_MODEL,
                      mid,
                      {clamp_limit(m->requests_per_minute), clamp_limit(m->tokens_per_minute)},
                      mid};
    }
}

int rl_limits(rl_t *rl, const store_key *key, const cfg_model *m, rl_limit out[3])
{
    rl_query q;
    static const char scopes[] = {'k', 'a', 'm'};
    build_query(rl, key, m, &q);
    for (int i = 0; i < q.nslots; i++)
        out[i] = (rl_limit){scopes[q.slot[i].scope], q.slot[i].id, q.slot[i].limit[RL_REQ],
                            q.slot[i].limit[RL_TOK]};
    return q.nslots;
}

const char *rl_scope_name(char scope)
{
    return scope == 'a' ? "account" : scope == 'm' ? "model" : "key";
}

int rl_admit(rl_t *rl, const store_key *key, const cfg_model *m, int64_t tokens, int64_t now_ms,
             rl_result *res)
{
    rl_query q;
    memset(res, 0, sizeof *res);
    build_query(rl, key, m, &q);
    q.cost[RL_REQ] = 1;
    q.cost[RL_TOK] = tokens > 0 ? tokens : 0;
    if (!q.nslots) {
        res->allowed = 1;
        return 1;
    }
    return rl->ops->admit(rl->be, &q, now_ms, res);
}

void rl_peek(rl_t *rl, const store_key *key, int64_t now_ms, rl_result *res)
{
    rl_query q;
    memset(res, 0, sizeof *res);
    build_query(rl, key, NULL, &q);
    res->allowed = 1;
    if (q.nslots) rl->ops->peek(rl->be, &q, now_ms, res);
}

/* The correction rl_correct makes, into *c; 0 when there is none to make. */
static int make_correction(rl_t *rl, const store_key *key, const cfg_model *m, int64_t estimate,
                           int64_t actual, int64_t now_ms, rl_correction *c)
{
    if (estimate < 0) estimate = 0;
    if (actual < 0) actual = 0;
    if (actual == estimate) return 0;
    build_query(rl, key, m, &c->q);
    for (int i = 0; i < c->q.nslots; i++)
        c->q.slot[i].limit[RL_REQ] = 0; /* requests are never corrected */
    c->estimate = estimate;
    c->actual = actual;
    c->now_ms = now_ms;
    return c->q.nslots > 0;
}

void rl_correct(rl_t *rl, const store_key *key, const cfg_model *m, int64_t estimate,
                int64_t actual, int64_t now_ms)
{
    rl_correction c;
    if (make_correction(rl, key, m, estimate, actual, now_ms, &c)) rl->ops->correct(rl->be, &c);
}

/* The number of (scope, id) entries held: for tests of eviction. Not in the header because no
 * caller needs it; tests declare it themselves. */
size_t rl_entry_count(rl_t *rl);
size_t rl_entry_count(rl_t *rl)
{
    return rl ? rl->ops->count(rl->be) : 0;
}

/* ---- formatting ---- */

void rl_format_duration(int64_t ms, char *out, size_t outlen)
{
    char sec[32];
    if (!out || !outlen) return;
    if (ms < 0) ms = 0;
    if (ms < 1000) {
        snprintf(out, outlen, "%" PRId64 "ms", ms);
        return;
    }
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    if (frac) {
        /* "1.5s", "1.25s", "1.001s": milliseconds with trailing zeros dropped, as Go does */
        int digits = 3;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        snprintf(sec, sizeof sec, "%" PRId64 ".%0*" PRId64, s, digits, frac);
    } else {
        snprintf(sec, sizeof sec, "%" PRId64, s);
    }
    if (h)
        snprintf(out, outlen, "%" PRId64 "h%" PRId64 "m%ss", h, m, sec);
    else if (m)
        snprintf(out, outlen, "%" PRId64 "m%ss", m, sec);
    else
        snprintf(out, outlen, "%ss", sec);
}

/* Appends a header line "name: <decimal>\r\n" at p. */
static char *hdr_num(char *p, const char *name, size_t nlen, int64_t v)
{
    memcpy(p, name, nlen);
    p = ms_i64_dec(v, p + nlen);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *hdr_dur(char *p, const char *name, size_t nlen, int64_t ms)
{
    memcpy(p, name, nlen);
    p += nlen;
    if (ms >= 0 && ms < 1000) {
        /* the common case, without printf: this runs on every /v1/ answer */
        p = ms_i64_dec(ms, p);
        *p++ = 'm';
        *p++ = 's';
    } else {
        char d[32];
        rl_format_duration(ms, d, sizeof d);
        size_t dn = strlen(d);
        memcpy(p, d, dn);
        p += dn;
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

#define HDR(s) s, sizeof(s) - 1

int rl_format_headers(const rl_result *res, buf_t *out)
{
    char hdr[512], *p = hdr;
    p = hdr_num(p, HDR("x-ratelimit-limit-requests: "), res->limit_requests);
    p = hdr_num(p, HDR("x-ratelimit-remaining-requests: "), res->remaining_requests);
    p = hdr_dur(p, HDR("x-ratelimit-reset-requests: "), res->reset_requests_ms);
    p = hdr_num(p, HDR("x-ratelimit-limit-tokens: "), res->limit_tokens);
    p = hdr_num(p, HDR("x-ratelimit-remaining-tokens: "), res->remaining_tokens);
    p = hdr_dur(p, HDR("x-ratelimit-reset-tokens: "), res->reset_tokens_ms);
    /* One append: the six lines go out together or not at all. */
    return buf_append(out, hdr, (size_t)(p - hdr));
}
