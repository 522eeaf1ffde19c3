/*
 * Unit tests of src/api/stats.c: what a request's life and its events add to the counters, read
 * back as GET /metrics reads them (stats_collect), and config generations: a reload that adds,
 * drops and renames things, an old config's requests still in flight, its counters folded once
 * no request holds it, and names that outlive the config they came from.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "api/stats.h"
#include "common/util.h"
#include "config/config.h"
#include "tap.h"

static char g_dir[64];

static cfg_t *load(const char *name, const char *text)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/%s.yaml", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    cfg_t *c = cfg_load(path, err, sizeof err);
    if (!c) fprintf(stderr, "%s\n", err);
    return c;
}

static const char cfg_a[] =
    "providers:\n"
    "  p1: {kind: echo}\n"
    "  p2: {kind: echo}\n"
    "models:\n"
    "  m1:\n"
    "    pricing: {input: 1, output: 2}\n"
    "    deployments: [{provider: p1, model: a}, {provider: p2, model: b},\n"
    "                  {provider: p1, model: c}]\n"
    "    fallbacks: [m2]\n"
    "  m2:\n"
    "    pricing: {input: 1, output: 2}\n"
    "    deployments: [{provider: p2, model: a}]\n";

/* The reload: m1 loses p2, m2 is gone, m3 is new, and providers are in another order. */
static const char cfg_b[] = "providers:\n"
                            "  p3: {kind: echo}\n"
                            "  p1: {kind: echo}\n"
                            "models:\n"
                            "  m3:\n"
                            "    pricing: {input: 1, output: 2}\n"
                            "    deployments: [{provider: p3, model: x}]\n"
                            "  m1:\n"
                            "    pricing: {input: 1, output: 2}\n"
                            "    deployments: [{provider: p1, model: a}]\n";

typedef struct tabs {
    ctr_table t[STATS_NFAM];
} tabs;

static void collect(stats_worker *sw, tabs *out)
{
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_init(&out->t[f], stats_width((stats_family)f));
    CHECK_EQ_INT(stats_collect(sw, out->t), 0);
}

static void tabs_free(tabs *t)
{
    for (int f = 0; f < STATS_NFAM; f++)
        ctr_table_free(&t->t[f]);
}

/* The value i of series key in family f, or -1 when there is no such series. */
static long long val(const tabs *t, stats_family f, const char *key, size_t i)
{
    const ctr_table *tb = &t->t[f];
    for (size_t r = 0; r < tb->n; r++)
        if (strcmp(tb->rows[r].key, key) == 0) return (long long)tb->rows[r].vals[i];
    return -1;
}

/* A request on path that started ms milliseconds ago. */
static http_request req(const char *path, int ms)
{
    http_request r;
    memset(&r, 0, sizeof r);
    r.path = ms_str_c(path);
    r.start_ns = ms_mono_ns() - (uint64_t)ms * 1000000;
    return r;
}

#define REQ(ep, m, p, st) "endpoint=\"" ep "\",model=\"" m "\",provider=\"" p "\",status=\"" st "\""

static void test_request_life(void)
{
    cfg_t *a = load("a", cfg_a);
    CHECK(a != NULL);
    if (!a) return;
    stats_worker *sw = stats_worker_new();
    const cfg_model *m1 = &a->models[0], *m2 = &a->models[1];

    /* a streamed chat request on m1 that fell back to m2 after failing on p1 */
    http_request r = req("/v1/chat/completions", 20);
    stats_gen *g = stats_bind(sw, &r, a, m1);
    CHECK(g != NULL);
    stats_hold(g, 1);
    stats_attempt(g, &a->providers[0], STATS_ATTEMPT_TIMEOUT);
    stats_retry(g, m1);
    stats_attempt(g, &a->providers[0], STATS_ATTEMPT_ERROR);
    stats_fallback(g, m1, 1);
    stats_attempt(g, &a->providers[1], STATS_ATTEMPT_OK);
    usage_counts u = {.input = 10,
                      .cached_input = 2,
                      .cache_write = 3,
                      .cache_write_1h = 4,
                      .output = 5,
                      .reasoning = 7}; /* more reasoning than output: the ledger's 5 */
    stats_settled(g, m2, &u, 1234);
    stats_end(&r, m2, &m2->deployments[0], 15000000);
    r.note.first_byte_ns = r.start_ns + 2000000; /* 2 ms */
    stats_request_done(sw, &r, 200);
    CHECK(r.note.block == NULL);

    /* m1 over p1's third deployment; the same labels as its first: one series */
    for (int i = 0; i < 2; i++) {
        http_request q = req("/v1/messages", 1);
        stats_bind(sw, &q, a, m1);
        stats_end(&q, m1, &m1->deployments[i ? 2 : 0], 0);
        stats_request_done(sw, &q, 502);
    }
    /* refused before its model was known, an odd status, a path without a model */
    http_request q = req("/v1/embeddings", 1);
    stats_request_done(sw, &q, 401);
    q = req("/v1/responses/resp_1", 1);
    stats_request_done(sw, &q, 418);
    q = req("/api/balance", 1);
    stats_request_done(sw, &q, 200);
    q = req("/nowhere", 1);
    stats_request_done(sw, &q, 999);
    stats_rate_limited(sw, "account");
    stats_rate_limited(sw, "upstream");
    stats_rate_limited(sw, NULL);
    stats_refusal(sw, STATS_REFUSAL_SPEND_LIMIT);

    tabs t;
    collect(sw, &t);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m2", "p2", "200"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("messages", "m1", "p1", "502"), 0), 2);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("embeddings", "", "", "401"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("responses", "", "", "4xx"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("account", "", "", "200"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("other", "", "", "other"), 0), 1);
    CHECK_EQ_INT(t.t[STATS_F_REQUESTS].n, 6);
    /* durations: the chat request lasted at least 20 ms, above the 10 ms bucket */
    const char *chat_m2 = "endpoint=\"chat_completions\",model=\"m2\"";
    CHECK_EQ_INT(val(&t, STATS_F_DURATION, chat_m2, 0), 0); /* le 5 ms */
    CHECK_EQ_INT(val(&t, STATS_F_DURATION, chat_m2, 1), 0); /* le 10 ms */
    long long sum_ns = val(&t, STATS_F_DURATION, chat_m2, CTR_LATENCY_N + 1);
    CHECK(sum_ns >= 20000000);
    /* first byte at 2 ms: the first bucket, and exactly 2 ms summed */
    CHECK_EQ_INT(val(&t, STATS_F_TTFB, chat_m2, 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_TTFB, chat_m2, CTR_LATENCY_N + 1), 2000000);
    CHECK_EQ_INT(t.t[STATS_F_TTFB].n, 1); /* only the stream */
    /* overhead: 15 of its >= 20 ms were spent waiting on upstreams */
    long long ovh = val(&t, STATS_F_OVERHEAD, "endpoint=\"chat_completions\"", CTR_OVERHEAD_N + 1);
    CHECK(ovh >= 5000000 && ovh < sum_ns - 15000000 + 1000000);
    CHECK(val(&t, STATS_F_OVERHEAD, "endpoint=\"account\"", 0) == -1); /* inference only */
    /* tokens and spend as the ledger keeps them, under the model that answered */
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"input\"", 0), 10);
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"cached_input\"", 0), 2);
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"cache_write\"", 0), 3);
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"cache_write_1h\"", 0), 4);
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"output\"", 0), 5);
    CHECK_EQ_INT(val(&t, STATS_F_TOKENS, "model=\"m2\",kind=\"reasoning\"", 0), 5);
    CHECK_EQ_INT(val(&t, STATS_F_SPEND, "model=\"m2\"", 0), 1234);
    CHECK_EQ_INT(val(&t, STATS_F_SPEND, "model=\"m1\"", 0), 0);
    CHECK_EQ_INT(val(&t, STATS_F_ATTEMPTS, "provider=\"p1\",outcome=\"timeout\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_ATTEMPTS, "provider=\"p1\",outcome=\"error\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_ATTEMPTS, "provider=\"p2\",outcome=\"ok\"", 0), 1);
    CHECK_EQ_INT(t.t[STATS_F_ATTEMPTS].n, 3);
    CHECK_EQ_INT(val(&t, STATS_F_RETRIES, "model=\"m1\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_FALLBACKS, "model=\"m1\",fallback=\"m2\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_RATE_LIMITED, "scope=\"key\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_RATE_LIMITED, "scope=\"account\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_RATE_LIMITED, "scope=\"model\"", 0), 0);
    CHECK_EQ_INT(val(&t, STATS_F_RATE_LIMITED, "scope=\"upstream\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REFUSALS, "reason=\"spend_limit_reached\"", 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REFUSALS, "reason=\"insufficient_balance\"", 0), 0);
    CHECK_EQ_INT(val(&t, STATS_F_HOLDS, "", 0), 1); /* placed */
    CHECK_EQ_INT(val(&t, STATS_F_HOLDS, "", 1), 1); /* ended by stats_settled */
    tabs_free(&t);
    stats_worker_free(sw);
    cfg_free(a);
}

/* Ignores events without a generation or outside it, instead of writing out of bounds. */
static void test_foreign_pointers(void)
{
    cfg_t *a = load("a", cfg_a), *b = load("b", cfg_b);
    CHECK(a && b);
    if (!a || !b) return;
    stats_worker *sw = stats_worker_new();
    http_request r = req("/v1/chat/completions", 1);
    stats_gen *g = stats_bind(sw, &r, a, &a->models[0]);
    stats_attempt(NULL, &a->providers[0], STATS_ATTEMPT_OK);
    stats_attempt(g, &b->providers[0], STATS_ATTEMPT_OK);          /* another config's */
    stats_attempt(g, &a->providers[0], (stats_attempt_outcome)99); /* no such outcome */
    stats_retry(g, &b->models[0]);
    stats_settled(g, NULL, &(usage_counts){.input = 1}, 1);
    stats_end(&r, &a->models[0], &b->models[0].deployments[0], 0); /* not m1's deployment */
    stats_request_done(sw, &r, 200);
    stats_request_done(NULL, &r, 200);
    tabs t;
    collect(sw, &t);
    CHECK_EQ_INT(t.t[STATS_F_ATTEMPTS].n, 0);
    CHECK_EQ_INT(val(&t, STATS_F_RETRIES, "model=\"m1\"", 0), 0);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m1", "", "200"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_HOLDS, "", 1), 1); /* the settlement ended a hold anyway */
    tabs_free(&t);
    stats_worker_free(sw);
    cfg_free(a);
    cfg_free(b);
}

static void test_reload(void)
{
    cfg_t *a = load("a", cfg_a), *b = load("b", cfg_b);
    CHECK(a && b);
    if (!a || !b) return;
    CHECK(a->generation != b->generation);
    stats_worker *sw = stats_worker_new();

    /* a request on the old config is in flight across the reload */
    http_request old = req("/v1/chat/completions", 1);
    stats_gen *ga = stats_bind(sw, &old, a, &a->models[0]);
    http_request r = req("/v1/chat/completions", 1);
    stats_bind(sw, &r, a, &a->models[1]);
    stats_end(&r, &a->models[1], &a->models[1].deployments[0], 0);
    stats_request_done(sw, &r, 200);

    /* new requests run on the new config */
    for (int i = 0; i < 3; i++) {
        r = req("/v1/chat/completions", 1);
        stats_gen *gb = stats_bind(sw, &r, b, &b->models[1]); /* m1, on p1 */
        CHECK(gb != ga);
        stats_end(&r, &b->models[1], &b->models[1].deployments[0], 0);
        stats_attempt(gb, &b->providers[1], STATS_ATTEMPT_OK);
        stats_request_done(sw, &r, 200);
    }
    r = req("/v1/chat/completions", 1);
    stats_bind(sw, &r, b, &b->models[0]);
    stats_end(&r, &b->models[0], &b->models[0].deployments[0], 0);
    stats_request_done(sw, &r, 200);
    CHECK_EQ_INT(stats_generations(sw), 2); /* the old request still holds the old config's */

    /* the old request ends on the old config, on a deployment that is gone since */
    stats_attempt(ga, &a->providers[0], STATS_ATTEMPT_OK);
    stats_end(&old, &a->models[0], &a->models[0].deployments[2], 0);
    stats_request_done(sw, &old, 200);
    /* nothing holds the old config any more: its counters are folded and the config may go */
    CHECK_EQ_INT(stats_generations(sw), 1);
    cfg_free(a);

    tabs t;
    collect(sw, &t);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m1", "p1", "200"), 0), 4);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m2", "p2", "200"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m3", "p3", "200"), 0), 1);
    CHECK_EQ_INT(val(&t, STATS_F_ATTEMPTS, "provider=\"p1\",outcome=\"ok\"", 0), 4);
    /* one histogram across both configs: the four observations, in whatever buckets their
     * durations fell (about 1 ms each, but a loaded machine or valgrind may stretch one) */
    long long seen = 0;
    for (size_t i = 0; i <= CTR_LATENCY_N; i++)
        seen += val(&t, STATS_F_DURATION, "endpoint=\"chat_completions\",model=\"m1\"", i);
    CHECK_EQ_INT(seen, 4);
    tabs_free(&t);

    /* a third config may take the freed one's memory: it is a generation of its own */
    cfg_t *c = load("a", cfg_a);
    CHECK(c && c->generation != b->generation);
    if (c) {
        r = req("/v1/embeddings", 1);
        stats_bind(sw, &r, c, &c->models[1]);
        stats_end(&r, &c->models[1], &c->models[1].deployments[0], 0);
        stats_request_done(sw, &r, 200);
        CHECK_EQ_INT(stats_generations(sw), 1); /* b's: no request holds it, c is newer */
        collect(sw, &t);
        CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("embeddings", "m2", "p2", "200"), 0), 1);
        CHECK_EQ_INT(val(&t, STATS_F_REQUESTS, REQ("chat_completions", "m1", "p1", "200"), 0), 4);
        tabs_free(&t);
    }
    stats_worker_free(sw);
    cfg_free(b);
    cfg_free(c);
}

int main(void)
{
    tap_mkdtemp("stats", g_dir);
    RUN(test_request_life);
    RUN(test_foreign_pointers);
    RUN(test_reload);
    tap_rmtree(g_dir);
    TAP_DONE();
}
