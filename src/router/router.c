/*
 * The router (router.h): picks the deployment for each upstream attempt and keeps the circuit
 * breaker of every deployment. The proxy calls route_pick before an attempt and route_report
 * once with its outcome; nothing here does I/O or allocates after route_new.
 *
 * State lives in one dep_state per deployment. A route_t belongs to one config generation (live
 * reload: a reloaded config is a new cfg_t, and requests still running keep theirs), and finds a
 * deployment's state by (model index, deployment index) in its own cfg_t, whose arrays are stable
 * for the generation's life. The states themselves are shared between generations: route_derive
 * maps each deployment of the new config to the state of the old one with the same model name,
 * provider name and upstream model, so a deployment cooling down stays cooling down across a
 * reload, and the reports of requests still running on the old config land in the state the new
 * one reads. A deployment the old config did not have starts fresh. Each model name has one mutex
 * (in its model_health, shared the same way), held for one short loop over the model's
 * deployments; models never contend with each other. Log lines are formatted after the mutex is
 * released.
 *
 * Every request of a model goes through its mutex, from every worker, so in the steady state
 * (every deployment closed and not rate limited) a request that succeeds takes no lock:
 * route_pick chooses from states read without it, route_report of a success to a closed
 * deployment changes nothing and returns at once, and route_request_done of a success to a
 * closed deployment is one atomic add to the window's current slot (bench/scale.c: the mutex's line
 * moving between two workers' cores made the router 5 times slower a request than on one core). The
 * fields those reads see (state, open_until, rl_until, the slots) are atomic, changed only under
 * the mutex but for that add; a read that races a change is the read of a moment before it, as a
 * lock taken just before the change would give. Whatever is not the steady state (a failure, a slot
 * to start, a breaker not closed) takes the mutex as before.
 *
 * Two kinds of reports: route_report per attempt (probe verdicts, 429s, a success closing the
 * breaker) and route_request_done once per request and deployment (the failure-rate window).
 * Counting requests rather than attempts is what keeps one client's request that fails on every
 * attempt from opening the breaker for everyone: its retries are not independent evidence.
 *
 * Reports are not tied to a particular attempt (the API carries no token): a report that arrives
 * while a probe is in flight is taken as the probe's verdict. Late reports of attempts that began
 * before a cool-down are therefore counted as if they came now; see docs/ROUTING.md for why that
 * is harmless.
 */
#include "router/router.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/log.h"

/* The retry hint for a deployment whose probe is in flight: its verdict may come any moment. */
#define ROUTE_PROBE_WAIT_MS 1000
/* Wait assumed when an upstream 429 carries no retry-after. */
#define ROUTE_DEFAULT_RETRY_AFTER_MS 1000
/* A probe never reported (an integration bug) is written off after the provider's whole-request
 * timeout plus this grace, so one lost report cannot take a deployment out for good. */
#define ROUTE_PROBE_GRACE_MS 5000
#define ROUTE_DEFAULT_TIMEOUT_MS 600000
/* The failure window slides in steps of a tenth of its length: bounded memory, no allocation. */
#define ROUTE_WINDOW_SLOTS 10

enum { DS_CLOSED, DS_OPEN, DS_PROBING };

/* The requests that ended in one tenth of the failure window. */
typedef struct win_slot {
    _Atomic int64_t epoch; /* now / slot length when the slot was last written */
    /* atomic for route_request_done's success without the mutex; a slot is reset under it */
    _Atomic uint32_t ok, failed;
} win_slot;

typedef struct dep_state {
    _Atomic int state;                /* read without the mutex by the fast paths, as are: */
    _Atomic int64_t open_until;       /* DS_OPEN: the cool-down ends; from then one probe may go */
    _Atomic int64_t rl_until;         /* out because of an upstream 429 until then */
    win_slot win[ROUTE_WINDOW_SLOTS]; /* DS_CLOSED: the requests of the last failure window */
    int64_t probe_since;              /* DS_PROBING: when the probe was handed out */
    int64_t cooldown_ms;              /* the length of the next cool-down */
} dep_state;

/* One deployment's state and what identifies it across generations. Guarded by its model's
 * mutex, like the list it is on. */
typedef struct dep_node {
    dep_state st;
    char *provider; /* the provider's name and the upstream model: with the model's name, the */
    char *umodel;   /* deployment's identity from one config to the next */
    int refs;       /* generations that map a deployment to it */
    uint64_t claim; /* the route_derive that last mapped one: identical deployments map 1:1 */
    struct dep_node *next;
} dep_node;

/* A model name's health, shared by every generation that has a model of that name. */
typedef struct model_health {
    pthread_mutex_t mu;
    int refs;       /* generations using it; under mu */
    dep_node *deps; /* every deployment state any live generation maps; under mu */
} model_health;

/* One generation's view of a model: its health, and its deployments' states by index. */
typedef struct model_state {
    model_health *h;
    dep_node **deps;
    size_t ndeps; /* as the config said when derived: freeing does not read the config */
} model_state;

struct route {
    const cfg_t *cfg;
    size_t nmodels;
    model_state *models;
    dep_node **all; /* every model's deps pointers in one block */
};

/* ---- randomness: xorshift64* per thread, seeded from the OS on first use ---- */

static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    if (!x) {
        if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x || !x) {
            /* no entropy yet (early boot): the clock and a per-thread address still differ
             * between threads, which is all the weighting needs */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                ((uint64_t)(uintptr_t)&rng_state * 0x9E3779B97F4A7C15u);
            if (!x) x = 0x9E3779B97F4A7C15u;
        }
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Du;
}

uint64_t route_rand(void)
{
    return rng_next();
}

/* ---- helpers ---- */

static int64_t first_cooldown(const cfg_t *cfg)
{
    int64_t c = cfg->routing.cooldown_ms, max = cfg->routing.cooldown_max_ms;
    if (c > max) c = max;
    return c < 0 ? 0 : c;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* "5s", "2.5s", "250ms": for log lines. */
static const char *fmt_dur(int64_t ms, char *out, size_t n)
{
    if (ms < 1000) {
        snprintf(out, n, "%lldms", (long long)ms);
    } else if (ms % 1000 == 0) {
        snprintf(out, n, "%llds", (long long)(ms / 1000));
    } else {
        int frac = (int)(ms % 1000), digits = 3;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        snprintf(out, n, "%lld.%0*ds", (long long)(ms / 1000), digits, frac);
    }
    return out;
}

static model_state *model_of(route_t *r, const cfg_model *m)
{
    /* compared as integers: m may (by a caller's bug) point outside the array */
    uintptr_t p = (uintptr_t)m, lo = (uintptr_t)r->cfg->models;
    if (!m || !r->cfg->nmodels || p < lo) return NULL;
    uintptr_t off = p - lo;
    if (off % sizeof *m || off / sizeof *m >= r->cfg->nmodels) return NULL;
    return &r->models[off / sizeof *m];
}

static int64_t probe_deadline(const cfg_deployment *d)
{
    int64_t t = d->provider && d->provider->timeout_ms > 0 ? d->provider->timeout_ms
                                                           : ROUTE_DEFAULT_TIMEOUT_MS;
    return add_sat(t, ROUTE_PROBE_GRACE_MS);
}

/* Deployments past the 64 bits of `tried` always count as untried. */
static int was_tried(uint64_t tried, size_t i)
{
    return i < 64 && (tried >> i & 1);
}

static int usable(const dep_state *s, int64_t now)
{
    if (s->rl_until > now) return 0;
    if (s->state == DS_CLOSED) return 1;
    return s->state == DS_OPEN && now >= s->open_until;
}

static int64_t slot_ms(const cfg_t *cfg)
{
    int64_t w = cfg->routing.failure_window_ms / ROUTE_WINDOW_SLOTS;
    return w > 0 ? w : 1;
}

static void slot_reset(win_slot *w, int64_t epoch)
{
    w->ok = 0;
    w->failed = 0;
    w->epoch = epoch;
}

/* A success counted without the model's mutex, when the deployment is closed and the slot of
 * now is current: one atomic add, the only write. Returns 0 when the mutex is needed (a slot to
 * start, a state to check). An add that races a reset of its slot (ten slots later) counts one
 * success in the wrong tenth of the window: nothing a failure rate notices. */
static int window_add_ok(const cfg_t *cfg, dep_state *s, int64_t now)
{
    if (s->state != DS_CLOSED) return 0;
    int64_t epoch = (now < 0 ? 0 : now) / slot_ms(cfg);
    win_slot *w = &s->win[epoch % ROUTE_WINDOW_SLOTS];
    if (atomic_load_explicit(&w->epoch, memory_order_relaxed) != epoch) return 0;
    /* (4e9 successes in a tenth of the window would be needed to reach the cap) */
    if (atomic_load_explicit(&w->ok, memory_order_relaxed) < UINT32_MAX)
        atomic_fetch_add_explicit(&w->ok, 1, memory_order_relaxed);
    return 1;
}

/* Counts one request in the window; returns the window's totals in *ok and *failed. */
static void window_add(const cfg_t *cfg, dep_state *s, int failed, int64_t now, uint32_t *ok,
                       uint32_t *nfailed)
{
    int64_t epoch = (now < 0 ? 0 : now) / slot_ms(cfg);
    win_slot *w = &s->win[epoch % ROUTE_WINDOW_SLOTS];
    if (w->epoch != epoch) slot_reset(w, epoch);
    if (failed && w->failed < UINT32_MAX) w->failed++;
    if (!failed && w->ok < UINT32_MAX) w->ok++;
    uint64_t tok = 0, tfailed = 0;
    for (int i = 0; i < ROUTE_WINDOW_SLOTS; i++) {
        const win_slot *x = &s->win[i];
        if (x->epoch > epoch - ROUTE_WINDOW_SLOTS && x->epoch <= epoch) {
            tok += x->ok;
            tfailed += x->failed;
        }
    }
    *ok = tok > UINT32_MAX ? UINT32_MAX : (uint32_t)tok;
    *nfailed = tfailed > UINT32_MAX ? UINT32_MAX : (uint32_t)tfailed;
}

/* The breaker's rule: enough requests, and enough of them failed. */
static int window_trips(const cfg_t *cfg, uint32_t ok, uint32_t failed)
{
    uint64_t total = (uint64_t)ok + failed;
    return total >= (uint64_t)cfg->routing.min_requests &&
           (uint64_t)failed * 100 >= (uint64_t)cfg->routing.failure_rate_percent * total;
}

/* Starts a cool-down of the current length and doubles the next one. Returns the length. */
static int64_t open_breaker(const cfg_t *cfg, dep_state *s, int64_t now)
{
    int64_t len = s->cooldown_ms, max = cfg->routing.cooldown_max_ms;
    s->state = DS_OPEN;
    s->open_until = add_sat(now, len);
    /* after the cool-down the probe decides; old requests must not reopen it at once */
    for (int i = 0; i < ROUTE_WINDOW_SLOTS; i++)
        slot_reset(&s->win[i], 0);
    s->cooldown_ms = len > max - len ? max : 2 * len;
    if (s->cooldown_ms < len) s->cooldown_ms = len; /* max below cooldown_ms: never shrink */
    return len;
}

/* ---- lifecycle ---- */

static _Atomic uint64_t derive_serial;

/* The old generation's state of the model called name, or NULL. */
static model_state *model_named(const route_t *old, const char *name)
{
    const cfg_model *m = old ? cfg_find_model(old->cfg, name, strlen(name)) : NULL;
    return m ? &old->models[m - old->cfg->models] : NULL;
}

static model_health *health_new(void)
{
    model_health *h = calloc(1, sizeof *h);
    if (h && pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return NULL;
    }
    return h;
}

/* The state deployment d maps to in h (the caller holds h->mu): the unclaimed one of the same
 * provider and upstream model, else a fresh one. NULL: out of memory. */
static dep_node *node_for(model_health *h, const cfg_deployment *d, uint64_t claim,
                          const cfg_t *cfg)
{
    const char *prov = d->provider ? d->provider->name : "";
    for (dep_node *n = h->deps; n; n = n->next)
        if (n->claim != claim && !strcmp(n->provider, prov) && !strcmp(n->umodel, d->model)) {
            n->claim = claim;
            n->refs++;
            return n;
        }
    dep_node *n = calloc(1, sizeof *n);
    if (!n || !(n->provider = strdup(prov)) || !(n->umodel = strdup(d->model))) {
        if (n) free(n->provider);
        free(n);
        return NULL;
    }
    n->st.cooldown_ms = first_cooldown(cfg);
    n->claim = claim;
    n->refs = 1;
    n->next = h->deps;
    h->deps = n;
    return n;
}

/* Gives up this generation's hold on its model's health and deployment states; the last
 * generation to let go of one frees it. */
static void model_release(model_state *ms)
{
    model_health *h = ms->h;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    for (size_t j = 0; j < ms->ndeps && ms->deps[j]; j++) {
        dep_node *n = ms->deps[j];
        if (--n->refs > 0) continue;
        for (dep_node **pp = &h->deps; *pp; pp = &(*pp)->next)
            if (*pp == n) {
                *pp = n->next;
                break;
            }
        free(n->provider);
        free(n->umodel);
        free(n);
    }
    int last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last) {
        pthread_mutex_destroy(&h->mu);
        free(h);
    }
}

route_t *route_new(const cfg_t *cfg)
{
    return route_derive(NULL, cfg);
}

route_t *route_derive(const route_t *old, const cfg_t *cfg)
{
    route_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->cfg = cfg;
    r->nmodels = cfg->nmodels;
    size_t total = 0;
    for (size_t i = 0; i < cfg->nmodels; i++)
        total += cfg->models[i].ndeployments;
    r->models = calloc(cfg->nmodels ? cfg->nmodels : 1, sizeof *r->models);
    r->all = calloc(total ? total : 1, sizeof *r->all);
    if (!r->models || !r->all) goto fail;
    uint64_t claim = atomic_fetch_add(&derive_serial, 1) + 1;
    dep_node **next = r->all;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const cfg_model *m = &cfg->models[i];
        model_state *ms = &r->models[i], *was = model_named(old, m->name);
        model_health *h = was ? was->h : health_new();
        if (!h) goto fail;
        ms->deps = next;
        ms->ndeps = m->ndeployments;
        next += m->ndeployments;
        pthread_mutex_lock(&h->mu);
        h->refs++;
        ms->h = h;
        for (size_t j = 0; j < m->ndeployments; j++)
            if (!(ms->deps[j] = node_for(h, &m->deployments[j], claim, cfg))) break;
        pthread_mutex_unlock(&h->mu);
        if (m->ndeployments && !ms->deps[m->ndeployments - 1]) goto fail;
    }
    return r;
fail:
    route_free(r);
    return NULL;
}

void route_free(route_t *r)
{
    if (!r) return;
    for (size_t i = 0; r->models && i < r->nmodels; i++)
        model_release(&r->models[i]);
    free(r->models);
    free(r->all);
    free(r);
}

/* ---- selection ---- */

/* Deployment i's state in ms (its model's mutex held). */
static dep_state *st_of(const model_state *ms, size_t i)
{
    return &ms->deps[i]->st;
}

static void fill_none(const cfg_model *m, const model_state *ms, int64_t now, route_none *why)
{
    int64_t best = INT64_MAX;
    size_t limited = 0;
    for (size_t i = 0; i < m->ndeployments; i++) {
        const dep_state *s = st_of(ms, i);
        int64_t w = 0;
        if (s->rl_until > now) {
            w = s->rl_until - now;
            limited++;
        }
        if (s->state == DS_OPEN && s->open_until > now && s->open_until - now > w)
            w = s->open_until - now;
        if (s->state == DS_PROBING && w < ROUTE_PROBE_WAIT_MS) w = ROUTE_PROBE_WAIT_MS;
        if (w < best) best = w;
    }
    int any = m->ndeployments > 0;
    why->all_cooling = any;
    why->all_rate_limited = any && limited == m->ndeployments;
    why->wait_ms = !any ? 0 : best < 1 ? 1 : best;
}

/* The deployment a request's next attempt goes to among the usable ones (-1: none): the untried
 * ones first, then the lowest priority, then split by weight. Under the model's mutex, or from
 * pick_closed. */
static int choose(const cfg_model *m, model_state *ms, uint64_t tried, int64_t now_ms)
{
    size_t n = m->ndeployments;
    /* best[0]: lowest usable priority among untried deployments, best[1]: among tried ones */
    int best[2] = {INT_MAX, INT_MAX};
    int have[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        if (!usable(st_of(ms, i), now_ms)) continue;
        int grp = was_tried(tried, i);
        have[grp] = 1;
        if (m->deployments[i].priority < best[grp]) best[grp] = m->deployments[i].priority;
    }
    int g = have[0] ? 0 : have[1] ? 1 : -1;
    if (g < 0) return -1;
    /* Within the group and priority, split by weight; weight-0 deployments are the standby and
     * share the traffic evenly only when no weighted one is usable. */
    uint64_t total = 0, nzero = 0;
    for (size_t i = 0; i < n; i++) {
        const cfg_deployment *d = &m->deployments[i];
        if (was_tried(tried, i) != g || d->priority != best[g] || !usable(st_of(ms, i), now_ms))
            continue;
        if (d->weight > 0)
            total += (uint64_t)d->weight;
        else
            nzero++;
    }
    int zero = total == 0;
    /* (a state read without the mutex may change between the loops: then none may be left) */
    if (total == 0 && nzero == 0) return -1;
    uint64_t x = rng_next() % (zero ? nzero : total);
    for (size_t i = 0; i < n; i++) {
        const cfg_deployment *d = &m->deployments[i];
        if (was_tried(tried, i) != g || d->priority != best[g] || !usable(st_of(ms, i), now_ms))
            continue;
        uint64_t w = zero ? (d->weight <= 0) : d->weight > 0 ? (uint64_t)d->weight : 0;
        if (x < w) return (int)i;
        x -= w;
    }
    return -1;
}

/* The steady state without the mutex: every deployment of m closed (rate-limited ones are
 * skipped by usable). Returns the choice, or -1 for the caller to take the mutex: some
 * deployment is open or probing (a probe is handed out, a lost one noticed, only under it), or
 * none is usable now (why is filled under it). */
static int pick_closed(const cfg_model *m, model_state *ms, uint64_t tried, int64_t now_ms)
{
    for (size_t i = 0; i < m->ndeployments; i++)
        if (st_of(ms, i)->state != DS_CLOSED) return -1;
    int c = choose(m, ms, tried, now_ms);
    /* opened since it was read: a request begun just before the breaker opened, or the slow
     * path's to decide; re-checking the choice is enough, as the others were not chosen */
    return c >= 0 && st_of(ms, (size_t)c)->state == DS_CLOSED ? c : -1;
}

int route_pick(route_t *r, const cfg_model *m, uint64_t tried, int64_t now_ms, route_none *why)
{
    model_state *ms = model_of(r, m);
    if (!ms) {
        log_error("route_pick: model %s is not part of the router's config",
                  m && m->name ? m->name : "(null)");
        if (why) *why = (route_none){0};
        return -1;
    }
    int chosen = pick_closed(m, ms, tried, now_ms);
    if (chosen >= 0) return chosen;
    size_t n = m->ndeployments;
    int lost = -1, probe = -1;
    int64_t lost_after = 0;

    pthread_mutex_lock(&ms->h->mu);
    for (size_t i = 0; i < n; i++) {
        dep_state *s = st_of(ms, i);
        if (s->state == DS_PROBING &&
            now_ms - s->probe_since >= probe_deadline(&m->deployments[i])) {
            lost = (int)i;
            lost_after = now_ms - s->probe_since;
            s->state = DS_OPEN; /* open_until has passed: the next request probes */
        }
    }
    chosen = choose(m, ms, tried, now_ms);
    if (chosen >= 0) {
        dep_state *s = st_of(ms, (size_t)chosen);
        if (s->state == DS_OPEN) {
            /* the cool-down is over: this request is the probe, nobody else gets through */
            s->state = DS_PROBING;
            s->probe_since = now_ms;
            probe = chosen;
        }
    } else if (why) {
        fill_none(m, ms, now_ms, why);
    }
    pthread_mutex_unlock(&ms->h->mu);

    char dur[32];
    if (lost >= 0) {
        const cfg_deployment *d = &m->deployments[lost];
        log_warn("deployment %s/%s of model %s: probe not reported after %s, the next request "
                 "probes again",
                 d->provider->name, d->model, m->name, fmt_dur(lost_after, dur, sizeof dur));
    }
    if (probe >= 0) {
        const cfg_deployment *d = &m->deployments[probe];
        log_info("deployment %s/%s of model %s: cool-down over, probing with one request",
                 d->provider->name, d->model, m->name);
    }
    return chosen;
}

int64_t route_wait_ms(route_t *r, const cfg_model *m, int64_t now_ms)
{
    model_state *ms = model_of(r, m);
    if (!ms) return 0;
    route_none why = {0};
    int any = 0;
    pthread_mutex_lock(&ms->h->mu);
    for (size_t i = 0; i < m->ndeployments && !any; i++)
        any = usable(st_of(ms, i), now_ms);
    if (!any) fill_none(m, ms, now_ms, &why);
    pthread_mutex_unlock(&ms->h->mu);
    return any ? 0 : why.wait_ms;
}

int route_in_service(route_t *r, const cfg_model *m, int idx, int64_t now_ms)
{
    model_state *ms = model_of(r, m);
    if (!ms || idx < 0 || (size_t)idx >= m->ndeployments) return 0;
    pthread_mutex_lock(&ms->h->mu);
    const dep_state *s = st_of(ms, (size_t)idx);
    int in = s->state == DS_CLOSED && s->rl_until <= now_ms;
    pthread_mutex_unlock(&ms->h->mu);
    return in;
}

/* ---- outcomes ---- */

typedef enum {
    EV_NONE,
    EV_OPENED,        /* closed -> open on the failure rate */
    EV_PROBE_FAILED,  /* probe -> open, longer */
    EV_BACK,          /* probe succeeded */
    EV_BACK_LATE,     /* open -> closed by a success of an attempt begun earlier */
    EV_PROBE_ABANDON, /* probe slot freed */
    EV_PROBE_LIMITED, /* probe got a 429 */
    EV_LIMITED,       /* started being rate limited */
} route_event;

typedef struct ev_info {
    route_event ev;
    route_outcome o;
    int64_t len;         /* the cool-down or rate limit that starts */
    uint32_t ok, failed; /* EV_OPENED: the window that tripped */
} ev_info;

static void log_event(route_t *r, const cfg_model *m, int idx, const ev_info *e)
{
    const cfg_deployment *d = &m->deployments[idx];
    const char *p = d->provider->name, *um = d->model, *mn = m->name;
    char dur[32], win[32];
    switch (e->ev) {
    case EV_OPENED:
        log_warn("deployment %s/%s of model %s: cooling down for %s, %u of %u requests failed in "
                 "the last %s",
                 p, um, mn, fmt_dur(e->len, dur, sizeof dur), e->failed, e->ok + e->failed,
                 fmt_dur(r->cfg->routing.failure_window_ms, win, sizeof win));
        break;
    case EV_PROBE_FAILED:
        log_warn("deployment %s/%s of model %s: probe %s, cooling down for %s", p, um, mn,
                 e->o == ROUTE_TIMEOUT ? "timed out" : "failed", fmt_dur(e->len, dur, sizeof dur));
        break;
    case EV_BACK:
        log_info("deployment %s/%s of model %s: probe succeeded, back in service", p, um, mn);
        break;
    case EV_BACK_LATE:
        log_info("deployment %s/%s of model %s: answered during its cool-down, back in service", p,
                 um, mn);
        break;
    case EV_PROBE_ABANDON:
        log_info("deployment %s/%s of model %s: probe abandoned, the next request probes", p, um,
                 mn);
        break;
    case EV_PROBE_LIMITED:
        log_info("deployment %s/%s of model %s: probe rate limited, probing again in %s", p, um, mn,
                 fmt_dur(e->len, dur, sizeof dur));
        break;
    case EV_LIMITED:
        log_info("deployment %s/%s of model %s: rate limited by the provider for %s", p, um, mn,
                 fmt_dur(e->len, dur, sizeof dur));
        break;
    case EV_NONE:
        break;
    }
}

static model_state *model_checked(route_t *r, const cfg_model *m, int idx, const char *fn)
{
    model_state *ms = model_of(r, m);
    if (!ms || idx < 0 || (size_t)idx >= m->ndeployments) {
        log_error("%s: deployment %d of model %s is not part of the router's config", fn, idx,
                  m && m->name ? m->name : "(null)");
        return NULL;
    }
    return ms;
}

/* The attempt-level transitions; the caller holds the model's mutex. */
static void apply_report(const cfg_t *cfg, dep_state *s, route_outcome o, int64_t retry_after_ms,
                         int64_t now_ms, ev_info *e)
{
    switch (o) {
    case ROUTE_SUCCESS:
        if (s->state == DS_PROBING)
            e->ev = EV_BACK;
        else if (s->state == DS_OPEN)
            e->ev = EV_BACK_LATE;
        if (s->state != DS_CLOSED) {
            s->cooldown_ms = first_cooldown(cfg);
            s->state = DS_CLOSED;
        }
        break;
    case ROUTE_FAILURE:
    case ROUTE_TIMEOUT:
        if (s->state == DS_PROBING) {
            e->len = open_breaker(cfg, s, now_ms);
            e->ev = EV_PROBE_FAILED;
        }
        /* DS_CLOSED: the request's verdict comes with route_request_done. DS_OPEN: a late
         * report of an attempt begun before the cool-down; already out */
        break;
    case ROUTE_RATE_LIMITED: {
        int64_t ra = retry_after_ms >= 0 ? retry_after_ms : ROUTE_DEFAULT_RETRY_AFTER_MS;
        if (ra > cfg->routing.retry_after_max_ms) ra = cfg->routing.retry_after_max_ms;
        if (ra < 0) ra = 0;
        int64_t until = add_sat(now_ms, ra);
        if (until > now_ms && s->rl_until <= now_ms) e->ev = EV_LIMITED;
        /* several 429s in flight: the longest wait any of them asked for stands */
        if (until > s->rl_until) s->rl_until = until;
        e->len = s->rl_until - now_ms;
        if (s->state == DS_PROBING) {
            s->state = DS_OPEN; /* not a failure: probe again once the limit has passed */
            e->ev = EV_PROBE_LIMITED;
        }
        break;
    }
    case ROUTE_ABANDONED:
        if (s->state == DS_PROBING) {
            s->state = DS_OPEN;
            e->ev = EV_PROBE_ABANDON;
        }
        break;
    }
}

void route_report(route_t *r, const cfg_model *m, int idx, route_outcome o, int64_t retry_after_ms,
                  int64_t now_ms)
{
    model_state *ms = model_checked(r, m, idx, "route_report");
    if (!ms) return;
    /* a success to a closed deployment changes nothing (apply_report): no lock */
    if (o == ROUTE_SUCCESS && st_of(ms, (size_t)idx)->state == DS_CLOSED) return;
    ev_info e = {.ev = EV_NONE, .o = o};
    pthread_mutex_lock(&ms->h->mu);
    apply_report(r->cfg, st_of(ms, (size_t)idx), o, retry_after_ms, now_ms, &e);
    pthread_mutex_unlock(&ms->h->mu);
    if (e.ev != EV_NONE) log_event(r, m, idx, &e);
}

void route_request_done(route_t *r, const cfg_model *m, int idx, int failed, int64_t now_ms)
{
    model_state *ms = model_checked(r, m, idx, "route_request_done");
    if (!ms) return;
    if (!failed && window_add_ok(r->cfg, st_of(ms, (size_t)idx), now_ms)) return;
    ev_info e = {.ev = EV_NONE, .o = ROUTE_FAILURE};
    pthread_mutex_lock(&ms->h->mu);
    dep_state *s = st_of(ms, (size_t)idx);
    /* open or probing: the probe decides, and requests begun before the cool-down say nothing
     * new */
    if (s->state == DS_CLOSED) {
        window_add(r->cfg, s, failed, now_ms, &e.ok, &e.failed);
        if (failed && window_trips(r->cfg, e.ok, e.failed)) {
            e.len = open_breaker(r->cfg, s, now_ms);
            e.ev = EV_OPENED;
        }
    }
    pthread_mutex_unlock(&ms->h->mu);
    if (e.ev != EV_NONE) log_event(r, m, idx, &e);
}

int64_t route_backoff_ms(const cfg_t *cfg, int n, uint64_t rnd)
{
    int64_t cap = cfg->routing.backoff_base_ms, max = cfg->routing.backoff_max_ms;
    if (max < 0) max = 0;
    if (cap < 0) cap = 0;
    /* base * 2^(n-1) without overflow: stop doubling once the cap is reached */
    for (int i = 1; i < n && cap > 0 && cap < max; i++)
        cap = cap > max / 2 ? max : cap * 2;
    if (cap > max) cap = max;
    return (int64_t)(rnd % ((uint64_t)cap + 1));
}
