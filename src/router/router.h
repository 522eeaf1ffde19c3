/*
 * Deployment selection and health: which deployment of a model serves the next attempt of a
 * request, and circuit breaking for deployments that keep failing.
 *
 * Selection: among the deployments that are available (not cooling down, or whose cool-down has
 * ended and whose single probe slot is free), the lowest `priority` wins; within it traffic splits
 * by `weight`. A request that already tried some deployments prefers ones it has not tried
 * (another deployment first, then the same one again).
 *
 * Health: a deployment cools down on its failure rate across requests, so that one client's
 * request that fails everywhere (a poisoned request) cannot take it out for everybody. Over the
 * last `failure_window_ms`, each request that was done with the deployment counts once: as a
 * failure if every attempt it made there failed (5xx, connection failure, timeout), else as a
 * success. When at least `min_requests` requests counted and `failure_rate_percent` of them
 * failed, the deployment is out for `cooldown_ms`, doubling on every further failed round up to
 * `cooldown_max_ms`. When a cool-down ends, exactly one request (the probe) is let through; its
 * success closes the breaker, its failure starts the next, longer cool-down. An upstream 429
 * takes the deployment out for its retry-after (or 1 s), clamped to routing.retry_after_max_ms,
 * without counting as a failure. State is shared by every worker thread; every transition is
 * logged.
 *
 * A route_t belongs to one config generation (live reload) and reads that cfg_t, which must
 * outlive it. route_derive makes the next generation's: each deployment keeps its state when the
 * new config has it too (the same model name, provider name and upstream model), and the two
 * generations share that state while both live, so requests still running on the old config and
 * new ones on the new config see and steer the same breakers.
 */
#ifndef MS_ROUTER_H
#define MS_ROUTER_H

#include <stdint.h>

#include "config/config.h"

typedef struct route route_t;

route_t *route_new(const cfg_t *cfg);
/* The router of a reloaded config cfg, sharing old's deployment states as above (old may be
 * NULL: all fresh, as route_new). old stays valid and may still be used; NULL: out of memory.
 * Runs on one thread at a time (the reload's), concurrently with picks and reports on old. */
route_t *route_derive(const route_t *old, const cfg_t *cfg);
/* Frees r; a deployment state no other generation maps is freed with it. Any thread. */
void route_free(route_t *r);

typedef enum {
    ROUTE_SUCCESS,      /* a usable answer (2xx) */
    ROUTE_FAILURE,      /* 5xx, connection failure, invalid answer */
    ROUTE_TIMEOUT,      /* no answer in time (counts as a failure) */
    ROUTE_RATE_LIMITED, /* upstream 429: out for retry_after_ms (not a failure) */
    ROUTE_ABANDONED,    /* the attempt ended without a verdict (client left): frees a probe slot */
} route_outcome;

/* Why no deployment could be picked. */
typedef struct route_none {
    int all_cooling;      /* every deployment is cooling down or rate limited */
    int all_rate_limited; /* ... and every one of them because of a 429 */
    int64_t wait_ms;      /* the earliest time one becomes available again, from now */
} route_none;

/* Picks the deployment for the next attempt of a request on model m. `tried` has bit i set for
 * every deployment index i (into m->deployments, < 64) this request has already tried. Returns
 * the index, or -1 with *why filled. A probe slot taken here is released by route_report. */
int route_pick(route_t *r, const cfg_model *m, uint64_t tried, int64_t now_ms, route_none *why);
/* Reports the outcome of one attempt on deployment idx of m: it settles a probe, a success
 * closes the breaker, and a 429 takes the deployment out. retry_after_ms: the upstream's, or -1.
 * Failures count towards a cool-down only through route_request_done. */
void route_report(route_t *r, const cfg_model *m, int idx, route_outcome o, int64_t retry_after_ms,
                  int64_t now_ms);
/* A request is done with deployment idx of m, which it tried: failed says that every attempt it
 * made there failed. Call it once per request and deployment, whatever the number of attempts;
 * it may open the breaker (see the failure rate above). */
void route_request_done(route_t *r, const cfg_model *m, int idx, int failed, int64_t now_ms);
/* How long until some deployment of m can be tried again: 0 if one can be now, else what
 * route_pick would put in why->wait_ms. Takes no probe slot. */
int64_t route_wait_ms(route_t *r, const cfg_model *m, int64_t now_ms);
/* Whether deployment idx of m is in service now: its breaker closed and no 429 wait running.
 * A read, not a pick: no probe slot is taken, so a deployment whose cool-down has ended is not in
 * service until a request's probe says so. For side requests that must not steer the breaker
 * (count_tokens, which reports nothing back). */
int route_in_service(route_t *r, const cfg_model *m, int idx, int64_t now_ms);
/* A random 64-bit value from this thread's generator (for the backoff's jitter). */
uint64_t route_rand(void);
/* The wait before retry number n (1 = the first retry) on the SAME deployment: exponential from
 * backoff_base_ms, capped at backoff_max_ms, with full jitter (rnd is any random 64-bit value). */
int64_t route_backoff_ms(const cfg_t *cfg, int n, uint64_t rnd);

#endif
