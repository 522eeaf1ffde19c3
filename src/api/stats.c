/*
 * The gateway's counters (see stats.h): per worker, laid out per config generation, summed by
 * label text when read.
 *
 * A generation's per-model counters are allocated the first time the worker counts something
 * for that model, so a config with many models costs memory only for the models in use. The
 * block's pointer is published with a release store and read with an acquire load: a reader on
 * another thread sees it whole or not at all.
 *
 * Locking: a worker's lock guards its list of generations and its folded totals against a
 * reader; the worker takes it only when it adds a generation or folds one away (after a
 * reload), never to count.
 */
#include "api/stats.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/proxy.h"
#include "common/log.h"

/* Client-facing statuses counted apart; the others by class. */
static const int status_codes[] = {200, 201, 204, 400, 401, 403, 404, 405, 408,
                                   413, 429, 431, 499, 500, 502, 503, 504};
#define NCODES (sizeof status_codes / sizeof *status_codes)
static const char *const status_classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
#define NSTATUS (NCODES + sizeof status_classes / sizeof *status_classes)

#define LAT_W (CTR_LATENCY_N + 2)
#define OVH_W (CTR_OVERHEAD_N + 2)
#define CHAIN_MAX 9 /* the model and its fallbacks, as proxy.c's chain */

static const char *const ep_names[STATS_NEP] = {
    "chat_completions", "embeddings", "messages", "count_tokens", "responses", "models",
    "account",          "admin",      "health",   "metrics",      "other"};
static const char *const attempt_names[STATS_NATTEMPT] = {
    "ok", "error", "timeout", "rate_limited", "refused", "abandoned", "retried", "failed_over"};
static const char *const token_kinds[] = {"input",          "cached_input", "cache_write",
                                          "cache_write_1h", "output",       "reasoning"};
#define NKINDS (sizeof token_kinds / sizeof *token_kinds)
const char *const stats_scopes[] = {"key", "account", "model", "upstream", NULL};
#define NSCOPES 4
const char *const stats_refusals[STATS_NREFUSAL] = {"insufficient_balance", "spend_limit_reached"};

/* One model's counters in one generation. */
typedef struct stats_model {
    ctr_t tokens[NKINDS];
    ctr_t spend_nusd;
    ctr_t retries;
    ctr_t fallbacks[CHAIN_MAX]; /* by place in the chain; [0] unused */
    ctr_t dur[STATS_NEP_MODEL][LAT_W];
    ctr_t ttfb[STATS_NEP_MODEL][LAT_W];
    ctr_t req[]; /* [STATS_NEP_MODEL][deployments + 1][NSTATUS]; deployment 0: none */
} stats_model;

/* What a generation knows of its config, copied: names outlive the config. */
typedef struct gen_model {
    char *name;
    size_t ndeps;
    int32_t *dep_provider;    /* provider index of each deployment */
    int32_t chain[CHAIN_MAX]; /* model indices of the request chain (proxy_chain), -1 past it */
} gen_model;

struct stats_gen {
    stats_gen *next; /* older; guarded by the worker's lock */
    stats_worker *sw;
    uint64_t generation;
    int refs; /* requests that hold it (worker thread only) */
    /* the config's arrays, only to place a model or provider within them (never read) */
    uintptr_t models_base, providers_base;
    size_t nmodels, nproviders;
    gen_model *models;
    char **provider_names;
    _Atomic(stats_model *) *blocks; /* per model, made on first use */
    ctr_t *attempts;                /* [nproviders][STATS_NATTEMPT] */
};

struct stats_worker {
    pthread_mutex_t mu;
    stats_gen *gens; /* newest first */
    stats_gen *cur;  /* the newest config's */
    /* requests counted without a model (other endpoints, refused before the model was known) */
    ctr_t req[STATS_NEP][NSTATUS];
    ctr_t dur[STATS_NEP][LAT_W];
    ctr_t overhead[STATS_NEP_MODEL][OVH_W];
    ctr_t rate_limited[NSCOPES];
    ctr_t refusals[STATS_NREFUSAL];
    ctr_t holds_placed, holds_ended;
    ctr_table folded[STATS_NFAM]; /* generations folded away (guarded by mu) */
};

const char *stats_ep_name(stats_ep ep)
{
    return ep >= 0 && ep < STATS_NEP ? ep_names[ep] : "other";
}

size_t stats_width(stats_family f)
{
    switch (f) {
    case STATS_F_DURATION:
    case STATS_F_TTFB:
        return LAT_W;
    case STATS_F_OVERHEAD:
        return OVH_W;
    case STATS_F_HOLDS:
        return 2;
    default:
        return 1;
    }
}

stats_worker *stats_worker_new(void)
{
    stats_worker *sw = calloc(1, sizeof *sw);
    if (!sw) return NULL;
    pthread_mutex_init(&sw->mu, NULL);
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_init(&sw->folded[f], stats_width((stats_family)f));
    return sw;
}

static void gen_free(stats_gen *g)
{
    if (!g) return;
    for (size_t i = 0; g->models && i < g->nmodels; i++) {
        free(g->models[i].name);
        free(g->models[i].dep_provider);
        free(atomic_load_explicit(&g->blocks[i], memory_order_relaxed));
    }
    for (size_t i = 0; g->provider_names && i < g->nproviders; i++)
        free(g->provider_names[i]);
    free(g->models);
    free(g->provider_names);
    free((void *)g->blocks);
    free(g->attempts);
    free(g);
}

void stats_worker_free(stats_worker *sw)
{
    if (!sw) return;
    for (stats_gen *g = sw->gens, *n; g; g = n) {
        n = g->next;
        gen_free(g);
    }
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_free(&sw->folded[f]);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}

/* ---- places in the config ---- */

/* Where p lies in an array of n elements of size sz at base: its index, or -1. Compared as
 * integers: the array may belong to another config than p. */
static long index_in(uintptr_t base, size_t n, size_t sz, const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (!p || a < base || (a - base) % sz != 0 || (a - base) / sz >= n) return -1;
    return (long)((a - base) / sz);
}

static long model_index(const stats_gen *g, const cfg_model *m)
{
    return index_in(g->models_base, g->nmodels, sizeof(cfg_model), m);
}

/* ---- generations ---- */

static int gen_copy_model(stats_gen *g, const cfg_t *cfg, size_t i)
{
    const cfg_model *m = &cfg->models[i];
    gen_model *gm = &g->models[i];
    if (!(gm->name = strdup(m->name))) return -1;
    gm->ndeps = m->ndeployments;
    if (gm->ndeps && !(gm->dep_provider = calloc(gm->ndeps, sizeof *gm->dep_provider))) return -1;
    for (size_t d = 0; d < gm->ndeps; d++)
        gm->dep_provider[d] = (int32_t)index_in(g->providers_base, g->nproviders,
                                                sizeof(cfg_provider), m->deployments[d].provider);
    const cfg_model *chain[CHAIN_MAX];
    size_t n = proxy_chain(cfg, m, chain, CHAIN_MAX);
    for (size_t k = 0; k < CHAIN_MAX; k++)
        gm->chain[k] = k < n ? (int32_t)model_index(g, chain[k]) : -1;
    return 0;
}

static stats_gen *gen_new(stats_worker *sw, const cfg_t *cfg)
{
    stats_gen *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->sw = sw;
    g->generation = cfg->generation;
    g->models_base = (uintptr_t)cfg->models;
    g->providers_base = (uintptr_t)cfg->providers;
    g->nmodels = cfg->nmodels;
    g->nproviders = cfg->nproviders;
    g->models = calloc(g->nmodels + 1, sizeof *g->models);
    g->provider_names = calloc(g->nproviders + 1, sizeof *g->provider_names);
    g->blocks = calloc(g->nmodels + 1, sizeof *g->blocks);
    g->attempts = calloc((g->nproviders + 1) * STATS_NATTEMPT, sizeof *g->attempts);
    int ok = g->models && g->provider_names && g->blocks && g->attempts;
    for (size_t i = 0; ok && i < g->nproviders; i++)
        ok = (g->provider_names[i] = strdup(cfg->providers[i].name)) != NULL;
    for (size_t i = 0; ok && i < g->nmodels; i++)
        ok = gen_copy_model(g, cfg, i) == 0;
    if (!ok) {
        gen_free(g);
        return NULL;
    }
    return g;
}

static int collect_gen(const stats_gen *g, ctr_table *tabs);

/* Folds g (held by no request, not the newest) into the worker's totals and frees it. */
static void gen_fold(stats_worker *sw, stats_gen *g)
{
    pthread_mutex_lock(&sw->mu);
    if (collect_gen(g, sw->folded) != 0)
        log_warn("metrics: out of memory folding an old config's counters; some are lost");
    stats_gen **pp = &sw->gens;
    while (*pp && *pp != g)
        pp = &(*pp)->next;
    if (*pp) *pp = g->next;
    pthread_mutex_unlock(&sw->mu);
    gen_free(g);
}

/* The generation of cfg on this worker, made if needed. */
static stats_gen *gen_for(stats_worker *sw, const cfg_t *cfg)
{
    stats_gen *g = sw->cur;
    if (g && g->generation == cfg->generation) return g;
    for (g = sw->gens; g; g = g->next) /* a request that started on an older config */
        if (g->generation == cfg->generation) return g;
    if (!(g = gen_new(sw, cfg))) return NULL;
    pthread_mutex_lock(&sw->mu);
    g->next = sw->gens;
    sw->gens = g;
    pthread_mutex_unlock(&sw->mu);
    if (sw->cur && sw->cur->generation > g->generation) return g; /* folded when released */
    sw->cur = g;
    for (stats_gen *o = sw->gens, *n; o; o = n) {
        n = o->next;
        if (o != g && o->refs == 0) gen_fold(sw, o);
    }
    return g;
}

static void gen_release(stats_gen *g)
{
    if (--g->refs == 0 && g != g->sw->cur) gen_fold(g->sw, g);
}

/* The model's counters, made on first use. */
static stats_model *model_block(stats_gen *g, size_t mi)
{
    stats_model *b = atomic_load_explicit(&g->blocks[mi], memory_order_relaxed);
    if (b) return b;
    size_t nreq = STATS_NEP_MODEL * (g->models[mi].ndeps + 1) * NSTATUS;
    if (!(b = calloc(1, sizeof *b + nreq * sizeof(ctr_t)))) return NULL;
    atomic_store_explicit(&g->blocks[mi], b, memory_order_release);
    return b;
}

/* ---- a request's life ---- */

stats_gen *stats_bind(stats_worker *sw, http_request *r, const cfg_t *cfg, const cfg_model *m)
{
    if (!sw) return NULL;
    stats_gen *g = gen_for(sw, cfg);
    if (!g) return NULL;
    ctr_note *n = &r->note;
    if (n->block != g) {
        g->refs++;
        if (n->block) gen_release(n->block);
        n->block = g;
    }
    n->model = (int32_t)(model_index(g, m) + 1);
    n->slot = 0;
    return g;
}

void stats_end(http_request *r, const cfg_model *m, const cfg_deployment *dep, uint64_t upstream_ns)
{
    ctr_note *n = &r->note;
    stats_gen *g = n->block;
    if (!g) return;
    long mi = model_index(g, m);
    n->model = (int32_t)(mi + 1);
    n->slot = 0;
    if (mi >= 0 && dep) {
        long d = index_in((uintptr_t)m->deployments, g->models[mi].ndeps, sizeof *dep, dep);
        n->slot = (int32_t)(d + 1);
    }
    n->upstream_ns = upstream_ns;
}

/* The status's bucket: its own for status_codes, else its class. */
static size_t status_slot(int status)
{
    for (size_t i = 0; i < NCODES; i++)
        if (status_codes[i] == status) return i;
    return status >= 100 && status < 600 ? NCODES + (size_t)(status / 100 - 1) : NSTATUS - 1;
}

/* The endpoint of a path, as the router sees it. */
static stats_ep endpoint_of(ms_str p)
{
    if (p.n >= 4 && memcmp(p.p, "/v1/", 4) == 0) {
        ms_str s = {p.p + 4, p.n - 4};
        if (ms_str_eq(s, "chat/completions")) return STATS_EP_CHAT;
        if (ms_str_eq(s, "messages")) return STATS_EP_MESSAGES;
        if (ms_str_eq(s, "responses") || (s.n > 10 && memcmp(s.p, "responses/", 10) == 0))
            return STATS_EP_RESPONSES;
        if (ms_str_eq(s, "embeddings")) return STATS_EP_EMBEDDINGS;
        if (ms_str_eq(s, "messages/count_tokens")) return STATS_EP_COUNT_TOKENS;
        if (ms_str_eq(s, "models") || (s.n > 7 && memcmp(s.p, "models/", 7) == 0))
            return STATS_EP_MODELS;
        return STATS_EP_OTHER;
    }
    if (p.n >= 5 && memcmp(p.p, "/api/", 5) == 0) return STATS_EP_ACCOUNT;
    if (p.n >= 7 && memcmp(p.p, "/admin/", 7) == 0) return STATS_EP_ADMIN;
    if (ms_str_eq(p, "/healthz") || ms_str_eq(p, "/readyz")) return STATS_EP_HEALTH;
    if (ms_str_eq(p, "/metrics")) return STATS_EP_METRICS;
    return STATS_EP_OTHER;
}

static void count_request(stats_worker *sw, stats_gen *g, const http_request *r, int status);

void stats_request_done(stats_worker *sw, http_request *r, int status)
{
    ctr_note *n = &r->note;
    stats_gen *g = n->block;
    n->block = NULL;
    if (sw) count_request(sw, g, r, status);
    if (g) gen_release(g);
}

/* Counts a request that is over in sw (g: its generation, or NULL). */
static void count_request(stats_worker *sw, stats_gen *g, const http_request *r, int status)
{
    const ctr_note *n = &r->note;
    uint64_t now = ms_loop_mono_ns();
    uint64_t total = r->start_ns && now > r->start_ns ? now - r->start_ns : 0;
    stats_ep ep = endpoint_of(r->path);
    size_t st = status_slot(status);
    stats_model *b =
        g && n->model > 0 && ep < STATS_NEP_MODEL ? model_block(g, (size_t)n->model - 1) : NULL;
    if (b) {
        size_t slots = g->models[n->model - 1].ndeps + 1;
        ctr_add(&b->req[((size_t)ep * slots + (size_t)n->slot) * NSTATUS + st], 1);
        ctr_observe(b->dur[ep], &ctr_latency, total);
        if (n->first_byte_ns > r->start_ns)
            ctr_observe(b->ttfb[ep], &ctr_latency, n->first_byte_ns - r->start_ns);
    } else {
        ctr_add(&sw->req[ep][st], 1);
        ctr_observe(sw->dur[ep], &ctr_latency, total);
    }
    if (ep < STATS_NEP_MODEL)
        ctr_observe(sw->overhead[ep], &ctr_overhead,
                    total > n->upstream_ns ? total - n->upstream_ns : 0);
}

/* ---- events ---- */

void stats_attempt(stats_gen *g, const cfg_provider *p, stats_attempt_outcome o)
{
    long pi = g ? index_in(g->providers_base, g->nproviders, sizeof *p, p) : -1;
    if (pi >= 0 && o >= 0 && o < STATS_NATTEMPT)
        ctr_add(&g->attempts[(size_t)pi * STATS_NATTEMPT + o], 1);
}

/* m's counters in g, or NULL. */
static stats_model *block_of(stats_gen *g, const cfg_model *m)
{
    long mi = g ? model_index(g, m) : -1;
    return mi >= 0 ? model_block(g, (size_t)mi) : NULL;
}

void stats_retry(stats_gen *g, const cfg_model *m)
{
    stats_model *b = block_of(g, m);
    if (b) ctr_add(&b->retries, 1);
}

void stats_fallback(stats_gen *g, const cfg_model *from, size_t pos)
{
    stats_model *b = block_of(g, from);
    if (b && pos > 0 && pos < CHAIN_MAX) ctr_add(&b->fallbacks[pos], 1);
}

/* A count as the ledger keeps it (billing.c's bill_sanitize): never negative, at most 2^60. */
static uint64_t ledger_count(int64_t v)
{
    return v < 0 ? 0 : v > ((int64_t)1 << 60) ? (uint64_t)1 << 60 : (uint64_t)v;
}

void stats_settled(stats_gen *g, const cfg_model *m, const usage_counts *u, int64_t charged_nusd)
{
    stats_hold(g, 0);
    stats_model *b = block_of(g, m);
    if (!b) return;
    uint64_t out = ledger_count(u->output), reasoning = ledger_count(u->reasoning);
    const uint64_t v[NKINDS] = {ledger_count(u->input),
                                ledger_count(u->cached_input),
                                ledger_count(u->cache_write),
                                ledger_count(u->cache_write_1h),
                                out,
                                reasoning > out ? out : reasoning}; /* a part of output */
    for (size_t k = 0; k < NKINDS; k++)
        if (v[k]) ctr_add(&b->tokens[k], v[k]);
    if (charged_nusd > 0) ctr_add(&b->spend_nusd, (uint64_t)charged_nusd);
}

void stats_hold(stats_gen *g, int placed)
{
    if (g) ctr_add(placed ? &g->sw->holds_placed : &g->sw->holds_ended, 1);
}

void stats_rate_limited(stats_worker *sw, const char *scope)
{
    if (!sw) return;
    for (size_t i = 0; i < NSCOPES; i++)
        if (scope && strcmp(scope, stats_scopes[i]) == 0) {
            ctr_add(&sw->rate_limited[i], 1);
            return;
        }
    ctr_add(&sw->rate_limited[0], 1); /* the limiter names no scope: the key's */
}

void stats_refusal(stats_worker *sw, stats_refusal_reason why)
{
    if (sw && why >= 0 && why < STATS_NREFUSAL) ctr_add(&sw->refusals[why], 1);
}

/* ---- reading ---- */

/* One label of a series; a list of them ends with a NULL name. */
typedef struct label {
    const char *name, *value;
} label;

#define LABELS(...) ((const label[]){__VA_ARGS__, {NULL, NULL}})

/* Adds vals to the series of table t with these labels. */
static int add_series(ctr_table *t, const uint64_t *vals, const label *labels)
{
    char mem[1024];
    buf_t k;
    buf_init_with(&k, mem, sizeof mem, 0);
    int rc = 0;
    for (const label *l = labels; l->name; l++)
        rc |= ctr_label(&k, l->name, l->value, strlen(l->value));
    if (rc == 0) rc = ctr_table_add(t, k.data ? k.data : "", k.len, vals);
    buf_free(&k);
    return rc;
}

/* A status bucket's label value (code: 8 bytes of room for its digits). */
static const char *status_label(size_t st, char *code)
{
    if (st >= NCODES) return status_classes[st - NCODES];
    *ms_i64_dec(status_codes[st], code) = '\0';
    return code;
}

/* Reads n counters into out; returns their sum over [0, count_n) (a histogram's count). */
static uint64_t read_ctrs(const ctr_t *c, size_t n, uint64_t *out, size_t count_n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = ctr_get(&c[i]);
        if (i < count_n) sum += out[i];
    }
    return sum;
}

static int collect_model(const stats_gen *g, size_t mi, const stats_model *b, ctr_table *tabs)
{
    const gen_model *gm = &g->models[mi];
    const char *model = gm->name;
    uint64_t v[LAT_W];
    int rc = 0;
    for (int ep = 0; ep < STATS_NEP_MODEL; ep++) {
        for (size_t s = 0; s <= gm->ndeps; s++) {
            int32_t pi = s ? gm->dep_provider[s - 1] : -1;
            const char *prov = pi >= 0 ? g->provider_names[pi] : "";
            for (size_t st = 0; st < NSTATUS; st++) {
                v[0] = ctr_get(&b->req[((size_t)ep * (gm->ndeps + 1) + s) * NSTATUS + st]);
                if (!v[0]) continue;
                char code[8];
                const char *sl = status_label(st, code);
                rc |= add_series(&tabs[STATS_F_REQUESTS], v,
                                 LABELS({"endpoint", ep_names[ep]}, {"model", model},
                                        {"provider", prov}, {"status", sl}));
            }
        }
        if (read_ctrs(b->dur[ep], LAT_W, v, LAT_W - 1))
            rc |= add_series(&tabs[STATS_F_DURATION], v,
                             LABELS({"endpoint", ep_names[ep]}, {"model", model}));
        if (read_ctrs(b->ttfb[ep], LAT_W, v, LAT_W - 1))
            rc |= add_series(&tabs[STATS_F_TTFB], v,
                             LABELS({"endpoint", ep_names[ep]}, {"model", model}));
    }
    for (size_t k = 0; k < NKINDS; k++) {
        v[0] = ctr_get(&b->tokens[k]);
        rc |= add_series(&tabs[STATS_F_TOKENS], v,
                         LABELS({"model", model}, {"kind", token_kinds[k]}));
    }
    v[0] = ctr_get(&b->spend_nusd);
    rc |= add_series(&tabs[STATS_F_SPEND], v, LABELS({"model", model}));
    v[0] = ctr_get(&b->retries);
    rc |= add_series(&tabs[STATS_F_RETRIES], v, LABELS({"model", model}));
    for (size_t k = 1; k < CHAIN_MAX; k++) {
        v[0] = ctr_get(&b->fallbacks[k]);
        if (v[0] && gm->chain[k] >= 0)
            rc |= add_series(&tabs[STATS_F_FALLBACKS], v,
                             LABELS({"model", model}, {"fallback", g->models[gm->chain[k]].name}));
    }
    return rc;
}

static int collect_gen(const stats_gen *g, ctr_table *tabs)
{
    int rc = 0;
    for (size_t mi = 0; mi < g->nmodels; mi++) {
        const stats_model *b = atomic_load_explicit(&g->blocks[mi], memory_order_acquire);
        if (b) rc |= collect_model(g, mi, b, tabs);
    }
    for (size_t pi = 0; pi < g->nproviders; pi++)
        for (int o = 0; o < STATS_NATTEMPT; o++) {
            uint64_t v = ctr_get(&g->attempts[pi * STATS_NATTEMPT + (size_t)o]);
            if (v)
                rc |= add_series(
                    &tabs[STATS_F_ATTEMPTS], &v,
                    LABELS({"provider", g->provider_names[pi]}, {"outcome", attempt_names[o]}));
        }
    return rc;
}

/* The counters that do not depend on the config. */
static int collect_worker(const stats_worker *sw, ctr_table *tabs)
{
    uint64_t v[LAT_W > OVH_W ? LAT_W : OVH_W];
    int rc = 0;
    for (int ep = 0; ep < STATS_NEP; ep++) {
        for (size_t st = 0; st < NSTATUS; st++) {
            if (!(v[0] = ctr_get(&sw->req[ep][st]))) continue;
            char code[8];
            const char *sl = status_label(st, code);
            rc |= add_series(&tabs[STATS_F_REQUESTS], v,
                             LABELS({"endpoint", ep_names[ep]}, {"model", ""}, {"provider", ""},
                                    {"status", sl}));
        }
        if (read_ctrs(sw->dur[ep], LAT_W, v, LAT_W - 1))
            rc |= add_series(&tabs[STATS_F_DURATION], v,
                             LABELS({"endpoint", ep_names[ep]}, {"model", ""}));
        if (ep < STATS_NEP_MODEL && read_ctrs(sw->overhead[ep], OVH_W, v, OVH_W - 1))
            rc |= add_series(&tabs[STATS_F_OVERHEAD], v, LABELS({"endpoint", ep_names[ep]}));
    }
    for (size_t i = 0; i < NSCOPES; i++) {
        v[0] = ctr_get(&sw->rate_limited[i]);
        rc |= add_series(&tabs[STATS_F_RATE_LIMITED], v, LABELS({"scope", stats_scopes[i]}));
    }
    for (size_t i = 0; i < STATS_NREFUSAL; i++) {
        v[0] = ctr_get(&sw->refusals[i]);
        rc |= add_series(&tabs[STATS_F_REFUSALS], v, LABELS({"reason", stats_refusals[i]}));
    }
    /* ended first (a hold ends after it is placed); the reader clamps the difference at 0 all
     * the same, relaxed loads promise no order */
    v[1] = ctr_get(&sw->holds_ended);
    v[0] = ctr_get(&sw->holds_placed);
    rc |= ctr_table_add(&tabs[STATS_F_HOLDS], "", 0, v);
    return rc;
}

size_t stats_generations(stats_worker *sw)
{
    size_t n = 0;
    pthread_mutex_lock(&sw->mu);
    for (const stats_gen *g = sw->gens; g; g = g->next)
        n++;
    pthread_mutex_unlock(&sw->mu);
    return n;
}

int stats_collect(stats_worker *sw, ctr_table *tabs)
{
    if (!sw) return 0;
    int rc = 0;
    pthread_mutex_lock(&sw->mu);
    for (const stats_gen *g = sw->gens; g; g = g->next)
        rc |= collect_gen(g, tabs);
    for (int f = 0; f < STATS_NFAM; f++)
        rc |= ctr_table_merge(&tabs[f], &sw->folded[f]);
    pthread_mutex_unlock(&sw->mu);
    rc |= collect_worker(sw, tabs);
    return rc ? -1 : 0;
}
