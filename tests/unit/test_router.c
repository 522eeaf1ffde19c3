/*
 * Unit tests for src/router/router.c: selection by priority, weight and the request's `tried`
 * set; the circuit breaker (cool-down on the failure rate of requests over a window, a request's
 * retries counted once, the single probe, doubling up to the cap, recovery); upstream 429s; what
 * route_pick says when nothing is available; the backoff bounds; the log lines; a reloaded
 * config's router (route_derive) keeping each deployment's state by model, provider and upstream
 * model; and 4 threads picking and reporting at random (run it under TSan too).
 *
 * The configs are built by hand (no YAML) so the tests depend on nothing but the router. Time
 * is passed in explicitly, so every cool-down is checked to the millisecond.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "config/config.h"
#include "router/router.h"
#include "tap.h"

#define MAXD 8

/* Model 0 ("m0") has the deployments under test; model 1 ("m1") has one, so that the tests see
 * that models keep separate state. */
typedef struct fx {
    cfg_t cfg;
    cfg_provider prov[MAXD];
    cfg_model models[3];
    cfg_deployment deps[MAXD + 1];
    char pname[MAXD][16], dname[MAXD + 1][16];
} fx;

static void fx_init(fx *f, size_t n, const int *pri, const int *w)
{
    memset(f, 0, sizeof *f);
    f->cfg.routing.max_attempts = 3;
    f->cfg.routing.retry_budget_ms = 30000;
    f->cfg.routing.backoff_base_ms = 100;
    f->cfg.routing.backoff_max_ms = 2000;
    f->cfg.routing.retry_after_max_ms = 10000;
    /* three failed requests in a row open the breaker, as in the older tests below */
    f->cfg.routing.failure_rate_percent = 50;
    f->cfg.routing.failure_window_ms = 10000;
    f->cfg.routing.min_requests = 3;
    f->cfg.routing.cooldown_ms = 5000;
    f->cfg.routing.cooldown_max_ms = 300000;
    for (size_t i = 0; i < MAXD; i++) {
        snprintf(f->pname[i], sizeof f->pname[i], "prov%zu", i);
        f->prov[i].name = f->pname[i];
        f->prov[i].kind = PROV_OPENAI;
        f->prov[i].api_key = "sk-test-SECRET-never-logged";
        f->prov[i].enabled = 1;
        f->prov[i].timeout_ms = 600000;
    }
    for (size_t i = 0; i <= n; i++) {
        snprintf(f->dname[i], sizeof f->dname[i], "up%zu", i);
        f->deps[i].provider = &f->prov[i % MAXD];
        f->deps[i].model = f->dname[i];
        f->deps[i].weight = i < n && w ? w[i] : 1;
        f->deps[i].priority = i < n && pri ? pri[i] : 1;
    }
    f->models[0].name = "m0";
    f->models[0].deployments = f->deps;
    f->models[0].ndeployments = n;
    f->models[1].name = "m1";
    f->models[1].deployments = &f->deps[n];
    f->models[1].ndeployments = 1;
    f->models[2].name = "empty"; /* every provider disabled */
    f->cfg.models = f->models;
    f->cfg.nmodels = 3;
    f->cfg.providers = f->prov;
    f->cfg.nproviders = MAXD;
}

static const cfg_model *M(fx *f)
{
    return &f->models[0];
}

static int pick(route_t *r, fx *f, uint64_t tried, int64_t now)
{
    route_none why = {-1, -1, -1};
    return route_pick(r, M(f), tried, now, &why);
}

/* n requests, each failing once on idx (an attempt, then the request's verdict) */
static void fail_n(route_t *r, fx *f, int idx, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        route_report(r, M(f), idx, ROUTE_FAILURE, -1, now);
        route_request_done(r, M(f), idx, 1, now);
    }
}

/* n requests served by idx */
static void ok_n(route_t *r, fx *f, int idx, int n, int64_t now)
{
    for (int i = 0; i < n; i++) {
        route_report(r, M(f), idx, ROUTE_SUCCESS, -1, now);
        route_request_done(r, M(f), idx, 0, now);
    }
}

/* ---- selection ---- */

static void test_priority(void)
{
    fx f;
    int pri[3] = {2, 1, 3};
    fx_init(&f, 3, pri, NULL);
    route_t *r = route_new(&f.cfg);
    CHECK(r != NULL);
    int ok = 1;
    for (int i = 0; i < 200; i++)
        ok &= pick(r, &f, 0, 1000) == 1;
    CHECK(ok);
    /* untried first, by priority: 1 tried -> 0, then 2; all tried -> 1 again */
    CHECK_EQ_INT(pick(r, &f, 1u << 1, 1000), 0);
    CHECK_EQ_INT(pick(r, &f, (1u << 1) | 1u, 1000), 2);
    CHECK_EQ_INT(pick(r, &f, 7, 1000), 1);
    /* priority 1 cooling down: priority 2 takes the traffic, priority 3 stays idle */
    fail_n(r, &f, 1, 3, 1000);
    ok = 1;
    for (int i = 0; i < 200; i++)
        ok &= pick(r, &f, 0, 2000) == 0;
    CHECK(ok);
    /* the other model is not affected */
    route_none why;
    CHECK_EQ_INT(route_pick(r, &f.models[1], 0, 2000, &why), 0);
    route_free(r);
}

static void test_weights(void)
{
    fx f;
    int w[4] = {1, 3, 6, 0};
    fx_init(&f, 4, NULL, w);
    route_t *r = route_new(&f.cfg);
    int count[4] = {0};
    for (int i = 0; i < 10000; i++) {
        int idx = pick(r, &f, 0, 1000);
        CHECK(idx >= 0 && idx < 4);
        if (idx >= 0 && idx < 4) count[idx]++;
    }
    /* within 3 percentage points of 10 %, 30 %, 60 %; the weight-0 standby gets nothing */
    CHECK(count[0] >= 700 && count[0] <= 1300);
    CHECK(count[1] >= 2700 && count[1] <= 3300);
    CHECK(count[2] >= 5700 && count[2] <= 6300);
    CHECK_EQ_INT(count[3], 0);
    printf("# weights 1:3:6:0 -> %d %d %d %d\n", count[0], count[1], count[2], count[3]);

    /* the standby is the retry target once every weighted one of its priority was tried */
    CHECK_EQ_INT(pick(r, &f, 7, 1000), 3);
    /* ... and takes the traffic when they all cool down */
    for (int i = 0; i < 3; i++)
        fail_n(r, &f, i, 3, 1000);
    int ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= pick(r, &f, 0, 2000) == 3;
    CHECK(ok);
    route_free(r);

    /* only weight-0 deployments: an even split among them */
    int w0[2] = {0, 0};
    fx_init(&f, 2, NULL, w0);
    r = route_new(&f.cfg);
    int c2[2] = {0};
    for (int i = 0; i < 10000; i++) {
        int idx = pick(r, &f, 0, 1000);
        if (idx >= 0 && idx < 2) c2[idx]++;
    }
    CHECK(c2[0] >= 4700 && c2[0] <= 5300);
    CHECK_EQ_INT(c2[0] + c2[1], 10000);
    route_free(r);

    /* weight 0 at priority 1 is still chosen before a weighted priority 2 */
    int pri[3] = {1, 1, 2}, w3[3] = {1, 0, 1};
    fx_init(&f, 3, pri, w3);
    r = route_new(&f.cfg);
    CHECK_EQ_INT(pick(r, &f, 1, 1000), 1);
    route_free(r);
}

static void test_tried_preference(void)
{
    fx f;
    int w[3] = {1, 1, 1};
    fx_init(&f, 3, NULL, w);
    route_t *r = route_new(&f.cfg);
    int seen[3] = {0}, ok = 1;
    for (int i = 0; i < 1000; i++) {
        int idx = pick(r, &f, 1u << 0, 1000);
        ok &= idx == 1 || idx == 2;
        if (idx >= 0) seen[idx]++;
    }
    CHECK(ok);
    CHECK(seen[1] > 300 && seen[2] > 300);
    ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= pick(r, &f, 3, 1000) == 2;
    CHECK(ok);
    /* all tried: a retry on any of them, the same way */
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 3000; i++) {
        int idx = pick(r, &f, 7, 1000);
        if (idx >= 0) seen[idx]++;
    }
    CHECK(seen[0] > 800 && seen[1] > 800 && seen[2] > 800);
    /* the untried ones cool down: the tried one again rather than nothing */
    fail_n(r, &f, 1, 3, 1000);
    fail_n(r, &f, 2, 3, 1000);
    CHECK_EQ_INT(pick(r, &f, 1, 1500), 0);
    /* bits beyond the model's deployments are ignored */
    CHECK_EQ_INT(pick(r, &f, ~(uint64_t)0, 1500), 0);
    route_free(r);
}

/* ---- the circuit breaker ---- */

static void test_cooldown_and_probe(void)
{
    fx f;
    int pri[2] = {1, 2};
    fx_init(&f, 2, pri, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    /* two failures: still in service */
    fail_n(r, &f, 0, 2, 1000);
    CHECK_EQ_INT(pick(r, &f, 0, 1000), 0);
    /* the third opens it for cooldown_ms */
    fail_n(r, &f, 0, 1, 1000);
    CHECK_EQ_INT(pick(r, &f, 0, 1001), 1);
    CHECK_EQ_INT(pick(r, &f, 0, 5999), 1);
    /* the cool-down is over: exactly one request goes to 0 (the probe) */
    CHECK_EQ_INT(pick(r, &f, 0, 6000), 0);
    int ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= pick(r, &f, 0, 6000 + i) == 1;
    CHECK(ok);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 6200);
    CHECK_EQ_INT(pick(r, &f, 0, 6201), 0);
    CHECK_EQ_INT(pick(r, &f, 0, 6202), 0);

    /* one deployment only: the second request during the probe gets nothing, retry in 1 s */
    fx_init(&f, 1, NULL, NULL);
    route_free(r);
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 3, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 1000, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 1);
    CHECK_EQ_INT(why.all_rate_limited, 0);
    CHECK_EQ_INT(why.wait_ms, 4000);
    /* late failures of attempts begun before the cool-down do not extend it */
    fail_n(r, &f, 0, 5, 3000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 4000, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 1000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 1);
    CHECK_EQ_INT(why.wait_ms, 1000); /* the probe's verdict is awaited */
    /* after the probe's success, two failures are not enough to open it again */
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 5100);
    fail_n(r, &f, 0, 2, 5200);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5300, &why), 0);
    route_free(r);
}

/* wait_ms of the single deployment of m0 at now, or -2 if it is available */
static int64_t wait_of(route_t *r, fx *f, int64_t now)
{
    route_none why;
    int idx = route_pick(r, M(f), 0, now, &why);
    if (idx >= 0) {
        route_report(r, M(f), idx, ROUTE_ABANDONED, -1, now);
        return -2;
    }
    return why.wait_ms;
}

static void test_probe_failure_doubles(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    f.cfg.routing.cooldown_max_ms = 20000;
    route_t *r = route_new(&f.cfg);
    route_none why;
    int64_t t = 0;
    fail_n(r, &f, 0, 3, t);
    CHECK_EQ_INT(wait_of(r, &f, t), 5000);
    /* probe fails: 10 s, then 20 s, then 20 s (the cap) */
    int64_t expect[4] = {10000, 20000, 20000, 20000};
    int64_t len = 5000;
    for (int i = 0; i < 4; i++) {
        t += len;
        CHECK_EQ_INT(wait_of(r, &f, t - 1), 1);
        CHECK_EQ_INT(route_pick(r, M(&f), 0, t, &why), 0);
        route_report(r, M(&f), 0, i % 2 ? ROUTE_TIMEOUT : ROUTE_FAILURE, -1, t);
        CHECK_EQ_INT(wait_of(r, &f, t), expect[i]);
        len = expect[i];
    }
    route_free(r);

    /* cooldown_ms above cooldown_max_ms is capped; 0 means probe at once */
    fx_init(&f, 1, NULL, NULL);
    f.cfg.routing.cooldown_ms = 0;
    f.cfg.routing.cooldown_max_ms = 0;
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 3, 100);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 100, &why), 0); /* the probe */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 100, &why), -1);
    route_free(r);
}

static void test_probe_success_restores(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    fail_n(r, &f, 0, 3, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    fail_n(r, &f, 0, 1, 5000); /* 10 s next */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 15000, &why), 0);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 15100);
    /* closed, the window empty: two more failures do not open it */
    fail_n(r, &f, 0, 2, 15200);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 15300, &why), 0);
    route_report(r, M(&f), 0, ROUTE_ABANDONED, -1, 15300);
    /* successes keep the rate under 50 %: 4 failed of 9 */
    ok_n(r, &f, 0, 5, 15400);
    fail_n(r, &f, 0, 2, 15400);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 15500, &why), 0);
    route_report(r, M(&f), 0, ROUTE_ABANDONED, -1, 15500);
    /* 5 of 10: the next cool-down starts again at cooldown_ms */
    fail_n(r, &f, 0, 1, 16000);
    CHECK_EQ_INT(wait_of(r, &f, 16000), 5000);
    route_free(r);
}

static void test_abandoned(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    fail_n(r, &f, 0, 3, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5001, &why), -1);
    route_report(r, M(&f), 0, ROUTE_ABANDONED, -1, 5002);
    /* half-open again: the next request is the probe, and still only one */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5003, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5004, &why), -1);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 5005);
    /* abandoned on a closed deployment changes nothing: not a failure, not a success */
    fail_n(r, &f, 0, 2, 6000);
    route_report(r, M(&f), 0, ROUTE_ABANDONED, -1, 6000);
    fail_n(r, &f, 0, 1, 6000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 6001, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 4999);
    route_free(r);
}

static void test_lost_probe(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    f.prov[0].timeout_ms = 30000;
    route_t *r = route_new(&f.cfg);
    route_none why;
    fail_n(r, &f, 0, 3, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    /* never reported: written off after timeout_ms + 5 s */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000 + 34999, &why), -1);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000 + 35000, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000 + 35001, &why), -1);
    route_free(r);
}

static void test_rate_limited(void)
{
    fx f;
    int pri[2] = {1, 2};
    fx_init(&f, 2, pri, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    /* a 429 takes 0 out for its retry-after, not counted as a failure */
    fail_n(r, &f, 0, 2, 0);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 2000, 0);
    CHECK_EQ_INT(pick(r, &f, 0, 1), 1);
    CHECK_EQ_INT(pick(r, &f, 0, 1999), 1);
    CHECK_EQ_INT(pick(r, &f, 0, 2000), 0);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 2000);
    route_free(r);
    /* a 429 is not a request that counts: 2 failures, a 429, 1 failure make 3 of 3 */
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 2, 3000);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 0, 3000);
    CHECK_EQ_INT(pick(r, &f, 0, 3000), 0); /* retry-after 0: usable at once */
    fail_n(r, &f, 0, 1, 3000);
    CHECK_EQ_INT(pick(r, &f, 0, 3001), 1);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 3002); /* a late success closes it */
    CHECK_EQ_INT(pick(r, &f, 0, 3003), 0);

    /* no retry-after: 1 s; a long one: clamped to retry_after_max_ms */
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, -1, 10000);
    CHECK_EQ_INT(pick(r, &f, 0, 10999), 1);
    CHECK_EQ_INT(pick(r, &f, 0, 11000), 0);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 600000, 20000);
    CHECK_EQ_INT(pick(r, &f, 0, 29999), 1);
    CHECK_EQ_INT(pick(r, &f, 0, 30000), 0);
    /* a shorter 429 does not cut a longer one short */
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 5000, 40000);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 100, 40000);
    CHECK_EQ_INT(pick(r, &f, 0, 44999), 1);

    /* all rate limited: -1, the shortest wait */
    route_report(r, M(&f), 1, ROUTE_RATE_LIMITED, 1500, 44000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 44100, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 1);
    CHECK_EQ_INT(why.all_rate_limited, 1);
    CHECK_EQ_INT(why.wait_ms, 900);
    CHECK_EQ_INT(pick(r, &f, 0, 45000), 0);
    route_free(r);

    /* the probe gets a 429: slot freed, probing again after the limit */
    fx_init(&f, 1, NULL, NULL);
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 3, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 500, 5000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5499, &why), -1);
    CHECK_EQ_INT(why.all_rate_limited, 1);
    CHECK_EQ_INT(why.wait_ms, 1);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5500, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5500, &why), -1);
    CHECK_EQ_INT(why.all_rate_limited, 0);
    /* (had the 429 counted as the probe's failure, the pick at 5500 would have found it out
     * for 10 s); the second probe's success closes it, the cool-down length back at 5 s */
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 5600);
    fail_n(r, &f, 0, 3, 6000);
    CHECK_EQ_INT(wait_of(r, &f, 6000), 5000);
    route_free(r);

    /* retry_after_max_ms 0: 429s never take a deployment out */
    fx_init(&f, 1, NULL, NULL);
    f.cfg.routing.retry_after_max_ms = 0;
    r = route_new(&f.cfg);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 3000, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 0, &why), 0);
    route_free(r);
}

static void test_all_cooling(void)
{
    fx f;
    fx_init(&f, 3, NULL, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    fail_n(r, &f, 0, 3, 0);    /* out until 5000 */
    fail_n(r, &f, 1, 3, 1000); /* out until 6000 */
    fail_n(r, &f, 2, 3, 2000); /* out until 7000 */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 3000, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 1);
    CHECK_EQ_INT(why.all_rate_limited, 0);
    CHECK_EQ_INT(why.wait_ms, 2000);
    /* 0 is probing (counted as 1 s away), 1 is back in 500 ms */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5500, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 500);
    /* a rate limit longer than the cool-down: the later of the two */
    route_report(r, M(&f), 1, ROUTE_RATE_LIMITED, 3000, 5500); /* 1: until 8500 */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5500, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 1000); /* 0's probe: 1000; 1: 3000; 2: 1500 */
    CHECK_EQ_INT(why.all_rate_limited, 0);
    route_report(r, M(&f), 0, ROUTE_FAILURE, -1, 5600); /* 0: until 15600 */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5600, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 1400); /* 2 at 7000 */
    route_free(r);

    /* a model without deployments: nothing to wait for */
    fx_init(&f, 1, NULL, NULL);
    r = route_new(&f.cfg);
    CHECK_EQ_INT(route_pick(r, &f.models[2], 0, 0, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 0);
    CHECK_EQ_INT(why.all_rate_limited, 0);
    CHECK_EQ_INT(why.wait_ms, 0);
    /* a model from another config is refused, not indexed blindly */
    cfg_model other = f.models[0];
    CHECK_EQ_INT(route_pick(r, &other, 0, 0, &why), -1);
    CHECK_EQ_INT(why.all_cooling, 0);
    route_report(r, &other, 0, ROUTE_FAILURE, -1, 0);
    route_report(r, M(&f), 5, ROUTE_FAILURE, -1, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 0, &why), 0);
    route_free(r);
}

/* ---- the failure-rate window (issue 9: one request must not open the breaker) ---- */

static void test_request_counts_once(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    f.cfg.routing.min_requests = 5;
    route_t *r = route_new(&f.cfg);
    route_none why;
    /* one request failing max_attempts (here 20) times on the only deployment: one failure */
    for (int i = 0; i < 20; i++)
        route_report(r, M(&f), 0, ROUTE_FAILURE, -1, 1000);
    route_request_done(r, M(&f), 0, 1, 1000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 1001, &why), 0);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 1001);
    route_request_done(r, M(&f), 0, 0, 1001);
    /* attempts alone never open it, whatever their number */
    for (int i = 0; i < 1000; i++)
        route_report(r, M(&f), 0, i % 2 ? ROUTE_TIMEOUT : ROUTE_FAILURE, -1, 1002);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 1003, &why), 0);
    route_free(r);
}

static void test_failure_rate_window(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    f.cfg.routing.min_requests = 5; /* rate 50 %, window 10 s in slots of 1 s */
    route_t *r = route_new(&f.cfg);
    route_none why;
    /* min_requests: four failed requests are not enough, the fifth opens it */
    fail_n(r, &f, 0, 4, 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 1, &why), 0);
    route_report(r, M(&f), 0, ROUTE_ABANDONED, -1, 1);
    fail_n(r, &f, 0, 1, 2000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 2001, &why), -1);
    CHECK_EQ_INT(why.wait_ms, 4999);
    route_free(r);

    /* the rate: other clients' successes keep it closed; 50 % exactly opens it */
    r = route_new(&f.cfg);
    ok_n(r, &f, 0, 6, 0);
    fail_n(r, &f, 0, 5, 100); /* 5 of 11 */
    CHECK_EQ_INT(wait_of(r, &f, 200), -2);
    fail_n(r, &f, 0, 1, 300); /* 6 of 12 */
    CHECK_EQ_INT(wait_of(r, &f, 300), 5000);
    route_free(r);

    /* the window slides: requests older than failure_window_ms no longer count */
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 4, 500);   /* slot 0 */
    fail_n(r, &f, 0, 1, 10000); /* slot 10: slot 0 has left the window */
    CHECK_EQ_INT(wait_of(r, &f, 10000), -2);
    fail_n(r, &f, 0, 3, 10500); /* 4 in the window */
    CHECK_EQ_INT(wait_of(r, &f, 10500), -2);
    ok_n(r, &f, 0, 3, 19900);   /* slot 19: slot 10 still in */
    fail_n(r, &f, 0, 2, 19900); /* 6 failed of 9 */
    CHECK_EQ_INT(wait_of(r, &f, 19900), 5000);
    route_free(r);

    /* a success that is old enough has left the window too */
    r = route_new(&f.cfg);
    ok_n(r, &f, 0, 100, 0);
    fail_n(r, &f, 0, 5, 10000);
    CHECK_EQ_INT(wait_of(r, &f, 10000), 5000);
    route_free(r);

    /* the breaker starts from an empty window after a cool-down; requests that end while it is
     * open or probing are not counted (the probe decides) */
    r = route_new(&f.cfg);
    fail_n(r, &f, 0, 5, 0);
    fail_n(r, &f, 0, 50, 100); /* open */
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    fail_n(r, &f, 0, 1, 5001); /* the probe's request fails: longer cool-down */
    CHECK_EQ_INT(wait_of(r, &f, 5001), 10000);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 15001, &why), 0);
    ok_n(r, &f, 0, 1, 15002);   /* the probe succeeds */
    fail_n(r, &f, 0, 3, 15003); /* 3 of 4: the window started afresh */
    CHECK_EQ_INT(wait_of(r, &f, 15004), -2);
    fail_n(r, &f, 0, 1, 15005); /* 4 of 5: open, at cooldown_ms again */
    CHECK_EQ_INT(wait_of(r, &f, 15005), 5000);
    route_free(r);

    /* failure_rate_percent 100 with min_requests 1: every failed request opens it */
    f.cfg.routing.failure_rate_percent = 100;
    f.cfg.routing.min_requests = 1;
    r = route_new(&f.cfg);
    ok_n(r, &f, 0, 1, 0);
    fail_n(r, &f, 0, 1, 0); /* 1 of 2: below 100 % */
    CHECK_EQ_INT(wait_of(r, &f, 0), -2);
    fail_n(r, &f, 0, 1, 10000); /* the success has left the window */
    CHECK_EQ_INT(wait_of(r, &f, 10000), 5000);
    route_free(r);
}

static void test_wait_ms(void)
{
    fx f;
    int pri[2] = {1, 2};
    fx_init(&f, 2, pri, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 0), 0);
    fail_n(r, &f, 0, 3, 0);                                   /* 0 out until 5000 */
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 100), 0);            /* 1 is free */
    route_report(r, M(&f), 1, ROUTE_RATE_LIMITED, 2000, 100); /* 1 out until 2100 */
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 600), 1500);
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 2100), 0);
    /* it takes no probe slot: the probe still goes to the next pick */
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 5000), 0);
    CHECK_EQ_INT(route_pick(r, M(&f), 0, 5000, &why), 0);
    route_report(r, M(&f), 1, ROUTE_RATE_LIMITED, 3000, 5000);
    CHECK_EQ_INT(route_wait_ms(r, M(&f), 5000), 1000); /* the probe's verdict, any moment */
    cfg_model other = f.models[0];
    CHECK_EQ_INT(route_wait_ms(r, &other, 5000), 0);
    route_free(r);
}

/* route_in_service: a read for side requests (count_tokens): closed and not rate limited; a
 * cool-down that has ended is not service until a probe says so, and asking takes no probe slot */
static void test_in_service(void)
{
    fx f;
    fx_init(&f, 2, NULL, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    CHECK_EQ_INT(route_in_service(r, M(&f), 0, 0), 1);
    CHECK_EQ_INT(route_in_service(r, M(&f), 1, 0), 1);
    CHECK_EQ_INT(route_in_service(r, M(&f), 2, 0), 0);  /* no such deployment */
    CHECK_EQ_INT(route_in_service(r, M(&f), -1, 0), 0); /* nor this one */
    fail_n(r, &f, 0, 3, 0);                             /* 0 out until 5000 */
    CHECK_EQ_INT(route_in_service(r, M(&f), 0, 100), 0);
    CHECK_EQ_INT(route_in_service(r, M(&f), 0, 6000), 0); /* cooled down, not probed yet */
    CHECK_EQ_INT(route_in_service(r, M(&f), 1, 100), 1);
    /* asking took no probe slot: the next pick of 0 is its probe, and its success restores it */
    CHECK_EQ_INT(route_pick(r, M(&f), 2, 6000, &why), 0);
    CHECK_EQ_INT(route_in_service(r, M(&f), 0, 6000), 0); /* probing */
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 6001);
    CHECK_EQ_INT(route_in_service(r, M(&f), 0, 6002), 1);
    /* a 429 takes it out for its retry-after */
    route_report(r, M(&f), 1, ROUTE_RATE_LIMITED, 2000, 7000);
    CHECK_EQ_INT(route_in_service(r, M(&f), 1, 8999), 0);
    CHECK_EQ_INT(route_in_service(r, M(&f), 1, 9000), 1);
    cfg_model other = f.models[0]; /* not the router's model */
    CHECK_EQ_INT(route_in_service(r, &other, 0, 9000), 0);
    route_free(r);
}

/* ---- backoff ---- */

static void test_backoff(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL); /* base 100, max 2000 */
    const cfg_t *c = &f.cfg;
    CHECK_EQ_INT(route_backoff_ms(c, 1, 100), 100);
    CHECK_EQ_INT(route_backoff_ms(c, 1, 101), 0);
    CHECK_EQ_INT(route_backoff_ms(c, 2, 200), 200);
    CHECK_EQ_INT(route_backoff_ms(c, 2, 201), 0);
    CHECK_EQ_INT(route_backoff_ms(c, 5, 1600), 1600);
    CHECK_EQ_INT(route_backoff_ms(c, 5, 1601), 0);
    CHECK_EQ_INT(route_backoff_ms(c, 6, 2000), 2000); /* 3200 capped */
    CHECK_EQ_INT(route_backoff_ms(c, 6, 2001), 0);
    CHECK_EQ_INT(route_backoff_ms(c, 1000000, 2000), 2000);
    CHECK_EQ_INT(route_backoff_ms(c, 0, 100), 100); /* n < 1 is the first retry */
    CHECK_EQ_INT(route_backoff_ms(c, 1, UINT64_MAX), (int64_t)(UINT64_MAX % 101));
    /* full jitter: spread over the whole [0, cap] */
    uint64_t x = 88172645463325252u;
    int64_t lo = INT64_MAX, hi = -1;
    int ok = 1;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t b = route_backoff_ms(c, 3, x);
        ok &= b >= 0 && b <= 400;
        if (b < lo) lo = b;
        if (b > hi) hi = b;
    }
    CHECK(ok);
    CHECK(lo <= 10 && hi >= 390);
    /* no overflow with large values */
    f.cfg.routing.backoff_base_ms = 86400000;
    f.cfg.routing.backoff_max_ms = 86400000;
    CHECK_EQ_INT(route_backoff_ms(c, 100, 86400000), 86400000);
    f.cfg.routing.backoff_base_ms = 0;
    CHECK_EQ_INT(route_backoff_ms(c, 50, 12345), 0);
}

/* ---- the log ---- */

static void test_log_lines(void)
{
    fx f;
    fx_init(&f, 1, NULL, NULL);
    route_t *r = route_new(&f.cfg);
    route_none why;
    char path[] = "/tmp/ms_test_router_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fail_n(r, &f, 0, 3, 0);
    route_pick(r, M(&f), 0, 5000, &why);
    fail_n(r, &f, 0, 1, 5000);
    route_pick(r, M(&f), 0, 15000, &why);
    route_report(r, M(&f), 0, ROUTE_SUCCESS, -1, 15000);
    route_report(r, M(&f), 0, ROUTE_RATE_LIMITED, 2500, 16000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[8192] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    CHECK(n > 0);
    if (n > 0) text[n] = 0;
    CHECK(strstr(text, "deployment prov0/up0 of model m0: cooling down for 5s, 3 of 3 requests "
                       "failed in the last 10s"));
    CHECK(strstr(text, "deployment prov0/up0 of model m0: cool-down over, probing with one"));
    CHECK(strstr(text, "probe failed, cooling down for 10s\""));
    CHECK(strstr(text, "deployment prov0/up0 of model m0: probe succeeded, back in service"));
    CHECK(strstr(text, "rate limited by the provider for 2.5s"));
    CHECK(!strstr(text, "SECRET"));
    route_free(r);
}

/* ---- concurrency ---- */

typedef struct worker {
    route_t *r;
    fx *f;
    int64_t t0;
    unsigned seed;
    long picks, nones, bad;
} worker;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *worker_run(void *arg)
{
    worker *w = arg;
    while (mono_ms() - w->t0 < 1000) {
        int64_t now = mono_ms();
        const cfg_model *m = &w->f->models[rand_r(&w->seed) % 2];
        uint64_t tried = (uint64_t)rand_r(&w->seed) & 0x1f;
        route_none why = {-1, -1, -1};
        int idx = route_pick(w->r, m, tried, now, &why);
        if (idx < 0) {
            w->nones++;
            /* bound: the longest cool-down (16), rate limit (5) or the probe hint (1000) */
            if (why.all_cooling != 1 || why.wait_ms < 1 || why.wait_ms > 1000) w->bad++;
            continue;
        }
        w->picks++;
        if ((size_t)idx >= m->ndeployments) {
            w->bad++;
            continue;
        }
        int o = rand_r(&w->seed) % 100;
        route_outcome out = o < 80   ? ROUTE_SUCCESS
                            : o < 88 ? ROUTE_FAILURE
                            : o < 92 ? ROUTE_TIMEOUT
                            : o < 96 ? ROUTE_RATE_LIMITED
                                     : ROUTE_ABANDONED;
        int64_t ra = rand_r(&w->seed) % 3 ? rand_r(&w->seed) % 8 : -1;
        route_report(w->r, m, idx, out, ra, mono_ms());
        if (out == ROUTE_SUCCESS || out == ROUTE_FAILURE || out == ROUTE_TIMEOUT)
            route_request_done(w->r, m, idx, out != ROUTE_SUCCESS, mono_ms());
    }
    return NULL;
}

typedef struct prober {
    route_t *r;
    fx *f;
    int64_t now;
    atomic_int *hits; /* per deployment */
    atomic_int *start;
} prober;

static void *prober_run(void *arg)
{
    prober *p = arg;
    while (!atomic_load(p->start)) {
    }
    route_none why;
    for (int i = 0; i < 2000; i++) {
        int idx = route_pick(p->r, M(p->f), 0, p->now, &why);
        if (idx >= 0) atomic_fetch_add(&p->hits[idx], 1);
    }
    return NULL;
}

static void test_concurrency(void)
{
    fx f;
    int pri[5] = {1, 1, 2, 2, 3}, w[5] = {3, 1, 1, 0, 1};
    fx_init(&f, 5, pri, w);
    f.cfg.routing.min_requests = 2;
    f.cfg.routing.failure_rate_percent = 10;
    f.cfg.routing.failure_window_ms = 100;
    f.cfg.routing.cooldown_ms = 2;
    f.cfg.routing.cooldown_max_ms = 16;
    f.cfg.routing.retry_after_max_ms = 5;
    route_t *r = route_new(&f.cfg);
    log_set_level(LOG_ERROR); /* thousands of transitions */
    worker ws[4];
    pthread_t th[4];
    int64_t t0 = mono_ms();
    for (int i = 0; i < 4; i++) {
        ws[i] = (worker){.r = r, .f = &f, .t0 = t0, .seed = (unsigned)(i * 7919 + 1)};
        pthread_create(&th[i], NULL, worker_run, &ws[i]);
    }
    long picks = 0, nones = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        picks += ws[i].picks;
        nones += ws[i].nones;
        bad += ws[i].bad;
    }
    printf("# 4 threads, 1 s: %ld picks, %ld with nothing available\n", picks, nones);
    CHECK_EQ_INT(bad, 0);
    CHECK(picks > 1000);
    CHECK(nones > 0); /* the breaker did open under 12 % failures */

    /* quiescent (every attempt reported) and past every cool-down: each deployment usable */
    int64_t later = mono_ms() + 1000;
    for (int i = 0; i < 5; i++) {
        route_none why;
        int idx = route_pick(r, M(&f), ~((uint64_t)1 << i), later, &why);
        CHECK_EQ_INT(idx, i);
        if (idx >= 0) route_report(r, M(&f), idx, ROUTE_SUCCESS, -1, later);
    }

    /* every deployment cooling down, then 4 threads race for the probes: one each */
    for (int i = 0; i < 5; i++)
        fail_n(r, &f, i, 2, later);
    atomic_int hits[5], start = 0;
    for (int i = 0; i < 5; i++)
        atomic_init(&hits[i], 0);
    prober ps[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = (prober){.r = r, .f = &f, .now = later + 100, .hits = hits, .start = &start};
        pthread_create(&th[i], NULL, prober_run, &ps[i]);
    }
    atomic_store(&start, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(atomic_load(&hits[i]), 1);
    log_set_level(LOG_INFO);
    route_free(r);
}

/* ---- live reload: route_derive ---- */

/* In f's m0, deployment i becomes provider p and upstream model um. */
static void fx_set(fx *f, int i, int p, const char *um)
{
    f->deps[i].provider = &f->prov[p];
    f->deps[i].model = (char *)um;
}

static void test_derive_keeps_state(void)
{
    fx a, b;
    route_none why;
    fx_init(&a, 3, NULL, NULL); /* m0: prov0/up0, prov1/up1, prov2/up2 */
    route_t *ra = route_new(&a.cfg);
    fail_n(ra, &a, 1, 3, 1000);                                 /* prov1/up1 cools until 6000 */
    route_report(ra, M(&a), 2, ROUTE_RATE_LIMITED, 4000, 1000); /* prov2/up2 out until 5000 */
    /* the reload: reordered, prov0 now serves another upstream model (a new deployment) */
    fx_init(&b, 3, NULL, NULL);
    fx_set(&b, 0, 2, "up2");
    fx_set(&b, 1, 1, "up1");
    fx_set(&b, 2, 0, "up0-new");
    route_t *rb = route_derive(ra, &b.cfg);
    CHECK(rb != NULL);
    int ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= pick(rb, &b, 0, 1001) == 2; /* only the new one is free */
    CHECK(ok);
    /* the old generation still works, on the same states */
    CHECK_EQ_INT(pick(ra, &a, 0, 1001), 0);
    /* a request still on the old config fails prov0/up0: nothing to do with the new one */
    fail_n(ra, &a, 0, 3, 1002);
    CHECK_EQ_INT(route_pick(ra, M(&a), 0, 1003, &why), -1);
    CHECK_EQ_INT(pick(rb, &b, 0, 1003), 2);
    /* the old generation goes; the new keeps the states it shares */
    route_free(ra);
    CHECK_EQ_INT(pick(rb, &b, 1ull << 2, 5000), 0); /* prov2/up2's 429 wait is over */
    /* prov1/up1's cool-down ends at 6000, when exactly one request probes it */
    ok = 1;
    for (int i = 0; i < 50; i++)
        ok &= pick(rb, &b, 1ull << 0 | 1ull << 2, 5999) != 1;
    CHECK(ok);
    CHECK_EQ_INT(pick(rb, &b, 1ull << 0 | 1ull << 2, 6000), 1);
    CHECK(pick(rb, &b, 1ull << 0 | 1ull << 2, 6001) != 1); /* the probe is out */
    /* its verdict, reported on the new generation, closes the breaker */
    route_report(rb, M(&b), 1, ROUTE_SUCCESS, -1, 6100);
    CHECK(route_in_service(rb, M(&b), 1, 6101));
    route_free(rb);
}

static void test_derive_models_and_duplicates(void)
{
    fx a, b, c;
    route_none why;
    fx_init(&a, 1, NULL, NULL); /* m0: prov0/up0; m1: prov1/up1 */
    route_t *ra = route_new(&a.cfg);
    fail_n(ra, &a, 0, 3, 0); /* m0's only deployment cools until 5000 */
    /* m1's deployment is prov1/up1 too, and cools separately */
    CHECK(route_in_service(ra, &a.models[1], 0, 1));
    /* the same deployment twice: one keeps the state, the other is fresh */
    fx_init(&b, 2, NULL, NULL);
    fx_set(&b, 0, 0, "up0");
    fx_set(&b, 1, 0, "up0");
    route_t *rb = route_derive(ra, &b.cfg);
    CHECK(rb != NULL);
    int cooling = !route_in_service(rb, M(&b), 0, 1) + !route_in_service(rb, M(&b), 1, 1);
    CHECK_EQ_INT(cooling, 1);
    /* m0 removed, then added back: it starts fresh */
    fx_init(&c, 1, NULL, NULL);
    c.models[0].name = "m0-renamed";
    route_t *rc = route_derive(rb, &c.cfg);
    route_free(ra);
    route_free(rb);
    route_t *rd = route_derive(rc, &a.cfg);
    CHECK_EQ_INT(route_pick(rd, M(&a), 0, 1, &why), 0);
    CHECK(route_in_service(rd, &a.models[1], 0, 1));
    route_free(rc);
    route_free(rd);
    /* nothing to derive from: as route_new */
    route_t *re = route_derive(NULL, &a.cfg);
    CHECK_EQ_INT(route_pick(re, M(&a), 0, 1, &why), 0);
    route_free(re);
}

int main(void)
{
    RUN(test_priority);
    RUN(test_weights);
    RUN(test_tried_preference);
    RUN(test_cooldown_and_probe);
    RUN(test_probe_failure_doubles);
    RUN(test_probe_success_restores);
    RUN(test_abandoned);
    RUN(test_lost_probe);
    RUN(test_rate_limited);
    RUN(test_all_cooling);
    RUN(test_request_counts_once);
    RUN(test_failure_rate_window);
    RUN(test_wait_ms);
    RUN(test_in_service);
    RUN(test_backoff);
    RUN(test_log_lines);
    RUN(test_derive_keeps_state);
    RUN(test_derive_models_and_duplicates);
    RUN(test_concurrency);
    TAP_DONE();
}
