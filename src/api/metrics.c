/*
 * GET /metrics and GET /readyz: what operators and load balancers ask of a running gateway
 * (docs/OPERATIONS.md).
 *
 * /metrics answers in Prometheus's text format (version 0.0.4). It is served on the worker that
 * got the scrape, off every request's path: it sums the counters every worker keeps without
 * locks (stats.h), taking each worker's lock only as long as reading its counters lasts (a
 * worker takes it only to add or fold away a config generation, never to count), and reads the
 * shared state (billing's ledger, the router's breakers, the logger) through their cheap reads.
 * Series are summed by label text and sorted, so the answer reads the same from one scrape to
 * the next. Labels are low-cardinality by construction: endpoints, models, providers, statuses,
 * outcomes and kinds, all fixed by the code or the config; never a key, an account or a request.
 *
 * /readyz says whether this instance should get traffic: the store answers (the ledger thread's
 * latest write or read succeeded) and the ledger keeps up (its queue and the age of its oldest
 * record under bounds). Both are in memory: the probe never waits for the store. A draining
 * gateway answers every request, this one included, with 503 itself (server.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/stats.h"
#include "shared/shared.h"
#include "common/counter.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "router/router.h"

#define METRICS_MAX_BYTES (64u << 20)
/* /readyz: the ledger is behind when its oldest record has waited this long, or this many wait
 * (billing.c warns at the same count: the store is not keeping up). */
#define READY_MAX_LAG_MS 10000
#define READY_MAX_QUEUE 65536

/* The families kept in stats tables, in the order they are written. */
typedef struct family {
    stats_family f;
    const char *name, *type, *help;
    int scale;               /* counters: the value is v / 10^scale */
    const ctr_buckets *hist; /* histograms: their buckets */
} family;

static const family families[] = {
    {STATS_F_REQUESTS, "modelswitch_requests_total", "counter",
     "Requests answered, by endpoint, model and provider (empty when none was reached) and "
     "client-facing status (499: the client left).",
     0, NULL},
    {STATS_F_DURATION, "modelswitch_request_duration_seconds", "histogram",
     "Time from a request's first byte to its answer's last.", 0, &ctr_latency},
    {STATS_F_TTFB, "modelswitch_time_to_first_byte_seconds", "histogram",
     "Streams: time from the request's first byte to the first byte of the answer's stream.", 0,
     &ctr_latency},
    {STATS_F_OVERHEAD, "modelswitch_gateway_overhead_seconds", "histogram",
     "Inference requests: their duration minus the time they waited on upstreams.", 0,
     &ctr_overhead},
    {STATS_F_TOKENS, "modelswitch_tokens_total", "counter",
     "Tokens billed, by model and kind, as the ledger records them.", 0, NULL},
    {STATS_F_SPEND, "modelswitch_spend_usd_total", "counter",
     "USD charged to accounts, by model, as the ledger records it.", 9, NULL},
    {STATS_F_ATTEMPTS, "modelswitch_upstream_attempts_total", "counter",
     "Attempts sent to providers, by what each came to.", 0, NULL},
    {STATS_F_RETRIES, "modelswitch_upstream_retries_total", "counter",
     "Attempts on a model after one of the same request failed.", 0, NULL},
    {STATS_F_FALLBACKS, "modelswitch_fallbacks_total", "counter",
     "Requests that moved from their model to one of its fallbacks.", 0, NULL},
    {STATS_F_RATE_LIMITED, "modelswitch_rate_limited_total", "counter",
     "Requests refused with 429, by the limit's scope (upstream: every provider was).", 0, NULL},
    {STATS_F_REFUSALS, "modelswitch_balance_refusals_total", "counter",
     "Requests refused with 403 because their hold could not be placed.", 0, NULL},
};

static int write_family(buf_t *b, const family *fm, const ctr_table *t)
{
    int rc = ctr_family(b, fm->name, fm->type, fm->help);
    for (size_t i = 0; i < t->n; i++) {
        const ctr_row *row = &t->rows[i];
        size_t kl = strlen(row->key);
        if (fm->hist)
            rc |= ctr_histogram(b, fm->name, row->key, kl, fm->hist, row->vals);
        else
            rc |= ctr_sample(b, fm->name, NULL, row->key, kl, row->vals[0], fm->scale);
    }
    return rc;
}

static int gauge(buf_t *b, const char *name, const char *help, uint64_t v, int scale)
{
    int rc = ctr_family(b, name, "gauge", help);
    return rc | ctr_sample(b, name, NULL, "", 0, v, scale);
}

/* One deployment-cooldown series per (provider, model): 1 while any such deployment is out. */
static int write_cooldowns(buf_t *b, worker_t *w)
{
    const cfg_t *cfg = w->cfg;
    int64_t now = (int64_t)(ms_mono_ns() / 1000000);
    ctr_table t;
    ctr_table_init(&t, 1);
    int rc = 0;
    for (size_t i = 0; w->route && i < cfg->nmodels; i++) {
        const cfg_model *m = &cfg->models[i];
        for (size_t d = 0; d < m->ndeployments; d++) {
            char mem[512];
            buf_t k;
            buf_init_with(&k, mem, sizeof mem, 0);
            const char *prov = m->deployments[d].provider->name;
            rc |= ctr_label(&k, "provider", prov, strlen(prov));
            rc |= ctr_label(&k, "model", m->name, strlen(m->name));
            uint64_t out = !route_in_service(w->route, m, (int)d, now);
            rc |= ctr_table_add(&t, k.data, k.len, &out);
            buf_free(&k);
        }
    }
    ctr_table_sort(&t);
    rc |= ctr_family(b, "modelswitch_deployment_cooldown", "gauge",
                     "1 while a deployment of the model on the provider is out of service "
                     "(cooling down after failures, or waiting out a 429).");
    for (size_t i = 0; i < t.n; i++)
        rc |= ctr_sample(b, "modelswitch_deployment_cooldown", NULL, t.rows[i].key,
                         strlen(t.rows[i].key), t.rows[i].vals[0] ? 1 : 0, 0);
    ctr_table_free(&t);
    return rc;
}

static int write_connections(buf_t *b, srv_t *s)
{
    uint64_t open = 0, active = 0;
    for (int i = 0; i < s->nworkers; i++) {
        open += atomic_load_explicit(&s->workers[i].nconns, memory_order_relaxed);
        active += atomic_load_explicit(&s->workers[i].inflight, memory_order_relaxed);
    }
    if (active > open) active = open; /* read at different moments */
    static const char name[] = "modelswitch_connections";
    static const char act[] = "state=\"active\"", idle[] = "state=\"idle\"";
    int rc = ctr_family(b, name, "gauge",
                        "Open client connections: active (a request in progress) or idle.");
    rc |= ctr_sample(b, name, NULL, act, sizeof act - 1, active, 0);
    rc |= ctr_sample(b, name, NULL, idle, sizeof idle - 1, open - active, 0);
    return rc;
}

static int write_gauges(buf_t *b, worker_t *w, const ctr_table *holds)
{
    uint64_t placed = holds->n ? holds->rows[0].vals[0] : 0;
    uint64_t ended = holds->n ? holds->rows[0].vals[1] : 0;
    int rc = gauge(b, "modelswitch_holds_open", "Balance holds placed and not yet settled.",
                   placed > ended ? placed - ended : 0, 0);
    bill_health_info h = {.store_ok = 1};
    if (w->bill) bill_health(w->bill, &h);
    rc |= gauge(b, "modelswitch_ledger_queue_depth",
                "Settled requests whose usage record waits to be written to the store.",
                h.queue_depth, 0);
    rc |= gauge(b, "modelswitch_ledger_journal_events",
                "Of those, the ones in the local journal (the store was unavailable or behind).",
                h.journal_events, 0);
    rc |= gauge(b, "modelswitch_ledger_lag_seconds",
                "How long the oldest usage record waiting for the store has waited.",
                (uint64_t)h.lag_ms, 3);
    rc |= gauge(b, "modelswitch_store_up",
                "1 when the ledger's latest write or read of the store succeeded.",
                (uint64_t)h.store_ok, 0);
    rc |= write_connections(b, w->srv);
    rc |= ctr_family(b, "modelswitch_log_lines_dropped_total", "counter",
                     "Log lines dropped because stderr did not keep up.");
    rc |= ctr_sample(b, "modelswitch_log_lines_dropped_total", NULL, "", 0, log_dropped_total(), 0);
    rc |= write_cooldowns(b, w);
    char mem[256];
    buf_t k;
    buf_init_with(&k, mem, sizeof mem, 0);
    const char *uv = uv_version_string();
    rc |= ctr_label(&k, "version", MS_VERSION, strlen(MS_VERSION));
    rc |= ctr_label(&k, "libuv", uv, strlen(uv));
    rc |= ctr_family(b, "modelswitch_build_info", "gauge", "The gateway's version, always 1.");
    rc |= ctr_sample(b, "modelswitch_build_info", NULL, k.data, k.len, 1, 0);
    buf_free(&k);
    return rc;
}

/* Every worker's counters, summed and sorted into tabs (STATS_NFAM tables). */
static int collect(srv_t *s, ctr_table *tabs)
{
    int rc = 0;
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_init(&tabs[f], stats_width((stats_family)f));
    for (int i = 0; i < s->nworkers; i++) {
        api_worker *aw = api_worker_of(&s->workers[i]);
        if (aw) rc |= stats_collect(aw->stats, tabs);
    }
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_sort(&tabs[f]);
    return rc;
}

void metrics_scrape(http_conn *c, http_request *r)
{
    (void)r;
    ctr_table tabs[STATS_NFAM];
    int rc = collect(c->w->srv, tabs);
    buf_t b;
    buf_init(&b, METRICS_MAX_BYTES);
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        rc |= write_family(&b, &families[i], &tabs[families[i].f]);
    rc |= write_gauges(&b, c->w, &tabs[STATS_F_HOLDS]);
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_free(&tabs[f]);
    if (rc) {
        log_error("metrics: out of memory building the answer to GET /metrics");
        buf_free(&b);
        api_err_internal(c);
        return;
    }
    size_t len = b.len;
    http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, buf_steal(&b), len, 1);
}

void metrics_readyz(http_conn *c, http_request *r)
{
    (void)r;
    bill_health_info h = {.store_ok = 1};
    if (c->w->bill) bill_health(c->w->bill, &h);
    char msg[256];
    int64_t wait = 0;
    if (!h.store_ok)
        snprintf(msg, sizeof msg,
                 "Not ready: the store is unreachable (the ledger's writes have failed for %" PRId64
                 " ms).",
                 h.store_failing_ms);
    else if (h.lag_ms > READY_MAX_LAG_MS)
        snprintf(msg, sizeof msg,
                 "Not ready: the ledger is behind (its oldest usage record has waited %" PRId64
                 " ms for the store).",
                 h.lag_ms);
    else if (h.queue_depth > READY_MAX_QUEUE)
        snprintf(msg, sizeof msg,
                 "Not ready: the ledger is behind (%" PRIu64 " usage records wait for the store).",
                 h.queue_depth);
    else if (c->w->sh && !sh_ready(c->w->sh, &wait))
        snprintf(msg, sizeof msg,
                 wait < 0
                     ? "Not ready: the shared state (Redis) does not answer or does not count this "
                       "instance yet."
                     : "Not ready: the shared state (Redis) started afresh; instances re-register "
                       "for another %" PRId64 " ms.",
                 wait);
    else {
        static const char ok[] = "{\"status\":\"ready\"}";
        http_respond(c, 200, "application/json", NULL, ok, sizeof ok - 1, 0);
        return;
    }
    http_error(c, 503, "service_unavailable_error", "service_unavailable", NULL, msg, 1000);
}
