/*
 * The gateway's counters, kept per worker and summed when GET /metrics reads them (metrics.c).
 *
 * The hot path pays a few plain adds per request: every counter belongs to one worker (its
 * stats_worker, in the API layer's per-worker state) and is indexed by numbers the request
 * already has (the model's and the deployment's place in the config, the endpoint, a status
 * bucket); no hashing, no lock, no atomic read-modify-write (common/counter.h).
 *
 * Models, providers and deployments come from the config, which may be replaced while the
 * gateway runs (a reload): the arrays are laid out per config (a stats_gen, made by a worker the
 * first time one of its requests runs on that config, identified by cfg_t.generation, never by
 * address) and carry copies of the names they are labelled with, so they outlive their config.
 * A request holds its generation until it ends; a generation no request holds any more that is
 * not the worker's newest is folded into the worker's name-keyed totals and freed, so reloads do
 * not grow memory and no count is lost. Readers sum everything by label text, so a model counted
 * under two configs is one series.
 */
#ifndef MS_STATS_H
#define MS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/counter.h"
#include "common/usage.h"
#include "common/util.h"
#include "config/config.h"
#include "server/http.h"

/* The endpoint label. The first STATS_NEP_MODEL take a model. */
typedef enum {
    STATS_EP_CHAT,
    STATS_EP_EMBEDDINGS,
    STATS_EP_MESSAGES,
    STATS_EP_COUNT_TOKENS,
    STATS_EP_RESPONSES,
    STATS_EP_MODELS,
    STATS_EP_ACCOUNT,
    STATS_EP_ADMIN,
    STATS_EP_HEALTH,
    STATS_EP_METRICS,
    STATS_EP_OTHER,
    STATS_NEP
} stats_ep;
#define STATS_NEP_MODEL 5

/* What one upstream attempt came to (modelswitch_upstream_attempts_total's outcome). A failed
 * attempt that another followed is counted as retried or failed_over, not by its failure. */
typedef enum {
    STATS_ATTEMPT_OK,           /* the provider answered 2xx */
    STATS_ATTEMPT_ERROR,        /* 5xx, connection failure, an invalid or cut answer */
    STATS_ATTEMPT_TIMEOUT,      /* no answer in time (connect, first byte, idle gap, total) */
    STATS_ATTEMPT_RATE_LIMITED, /* the provider's 429 */
    STATS_ATTEMPT_REFUSED,      /* the provider refused the request itself (400, 401, 404...) */
    STATS_ATTEMPT_ABANDONED,    /* ended without a verdict: the client left, or it never started */
    STATS_ATTEMPT_RETRIED,      /* failed (error, timeout, 429), then another attempt followed */
    STATS_ATTEMPT_FAILED_OVER,  /* failed, then the request moved to a fallback model */
    STATS_NATTEMPT
} stats_attempt_outcome;

typedef enum {
    STATS_REFUSAL_BALANCE,     /* insufficient_balance */
    STATS_REFUSAL_SPEND_LIMIT, /* spend_limit_reached */
    STATS_NREFUSAL
} stats_refusal_reason;

/* The families kept in series tables (stats_collect): each table's key is the label text. */
typedef enum {
    STATS_F_REQUESTS,     /* endpoint, model, provider, status */
    STATS_F_DURATION,     /* endpoint, model: a histogram (ctr_latency) */
    STATS_F_TTFB,         /* endpoint, model: a histogram (ctr_latency) */
    STATS_F_OVERHEAD,     /* endpoint: a histogram (ctr_overhead) */
    STATS_F_TOKENS,       /* model, kind */
    STATS_F_SPEND,        /* model: nano-dollars */
    STATS_F_ATTEMPTS,     /* provider, outcome */
    STATS_F_RETRIES,      /* model */
    STATS_F_FALLBACKS,    /* model, fallback */
    STATS_F_RATE_LIMITED, /* scope */
    STATS_F_REFUSALS,     /* reason */
    STATS_F_HOLDS,        /* no labels: holds placed, holds ended */
    STATS_NFAM
} stats_family;

typedef struct stats_worker stats_worker;
typedef struct stats_gen stats_gen;

/* The counters of one worker (made before the worker runs, freed after it stopped). */
stats_worker *stats_worker_new(void);
void stats_worker_free(stats_worker *sw);

/* ---- a request's life (on its worker's thread) ---- */

/* The request r runs on cfg for model m: its counters are cfg's generation's, which it holds
 * until stats_request_done. Returns the generation (for the events below), or NULL (memory:
 * the request is then counted without its model). */
stats_gen *stats_bind(stats_worker *sw, http_request *r, const cfg_t *cfg, const cfg_model *m);
/* What r ended on: the model that answered (a fallback, perhaps), the deployment of its last
 * attempt (NULL: none), and how long it waited on upstreams. */
void stats_end(http_request *r, const cfg_model *m, const cfg_deployment *dep,
               uint64_t upstream_ns);
/* A stream's first byte goes out to the client now (only the first call counts). */
static inline void stats_first_byte(http_request *r)
{
    if (!r->note.first_byte_ns) r->note.first_byte_ns = ms_mono_ns();
}
/* r is over with the client-facing status (499: the client left): counts it and lets its
 * generation go. */
void stats_request_done(stats_worker *sw, http_request *r, int status);

/* ---- events (g may be NULL: nothing is counted) ---- */

void stats_attempt(stats_gen *g, const cfg_provider *p, stats_attempt_outcome o);
/* Another attempt on model m after one failed. */
void stats_retry(stats_gen *g, const cfg_model *m);
/* A request for model `from` moved to the model at place pos (1..) of its chain. */
void stats_fallback(stats_gen *g, const cfg_model *from, size_t pos);
/* A request on m settled: its hold ended, with its tokens and the nano-dollars charged (the
 * ledger's figures). */
void stats_settled(stats_gen *g, const cfg_model *m, const usage_counts *u, int64_t charged_nusd);
/* A hold was placed (placed = 1), or released without a charge (0). */
void stats_hold(stats_gen *g, int placed);
/* A request refused with 429: scope "key", "account", "model" (the gateway's limits) or
 * "upstream" (every provider said 429). */
void stats_rate_limited(stats_worker *sw, const char *scope);
void stats_refusal(stats_worker *sw, stats_refusal_reason why);

/* ---- reading (any thread) ---- */

/* The width of family f's table values. */
size_t stats_width(stats_family f);
/* Adds sw's counters into tabs (STATS_NFAM tables, initialised with stats_width). Takes sw's
 * lock, which its worker takes only to add or fold away a generation. Returns 0, or -1 when a
 * table ran out of memory (what was added stays). */
int stats_collect(stats_worker *sw, ctr_table *tabs);

/* How many config generations sw keeps counters for (the newest, and older ones requests still
 * hold): what a reload leaves behind until its last old request ends. */
size_t stats_generations(stats_worker *sw);

/* Label values, for the families above. */
const char *stats_ep_name(stats_ep ep);
extern const char *const stats_scopes[];   /* NULL-terminated */
extern const char *const stats_refusals[]; /* STATS_NREFUSAL */

#endif
