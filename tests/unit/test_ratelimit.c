/*
 * Unit tests for src/ratelimit/ratelimit.c: the GCRA arithmetic to the millisecond (limits
 * whose interval is not a whole number of ms included), tokens with estimates and corrections,
 * all-or-nothing admission across key, account and model, the longest wait winning, a key's
 * limit edited while in use, a reloaded config (new defaults, a model's counters kept by its
 * name), eviction of idle entries, the header formats, and exactness under
 * concurrency (8 threads at a frozen clock admit exactly the limit; run it under TSan too).
 *
 * Time is whatever the test passes as now_ms, so every expected value is exact.
 */
#include "ratelimit/ratelimit.h"
#include "tap.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Not in the header: how many (scope, id) entries the limiter holds. */
size_t rl_entry_count(rl_t *rl);

#define T0 1000000000LL /* an arbitrary monotonic start, so that "now" is never 0 */

static cfg_t g_cfg;

static void cfg_reset(void)
{
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.requests_per_minute = 600;
    g_cfg.tokens_per_minute = 1000000;
}

static store_key mkkey(int64_t id, int64_t account, int64_t rpm, int64_t tpm)
{
    store_key k;
    memset(&k, 0, sizeof k);
    k.id = id;
    k.account_id = account;
    k.rpm = rpm;
    k.tpm = tpm;
    return k;
}

static int admit(rl_t *rl, const store_key *k, const cfg_model *m, int64_t tokens, int64_t now,
                 rl_result *r)
{
    return rl_admit(rl, k, m, tokens, now, r);
}

/* L = 7: T = 60000/7 = 8571.43 ms. Seven pass at once, the eighth waits exactly T (rounded up
 * to the ms), and passes at that instant, not a millisecond before. */
static void test_exact(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, 7, -1);
    rl_result r;
    for (int i = 0; i < 7; i++) {
        CHECK(admit(rl, &k, NULL, 0, T0, &r));
        CHECK_EQ_INT(r.limit_requests, 7);
        CHECK_EQ_INT(r.remaining_requests, 6 - i);
        /* (i+1) * 60000/7 ms, rounded up */
        CHECK_EQ_INT(r.reset_requests_ms, ((i + 1) * 60000 + 6) / 7);
    }
    CHECK_EQ_INT(r.reset_requests_ms, 60000);
    CHECK(!admit(rl, &k, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 8572);
    CHECK_EQ_STR(r.which, "requests");
    CHECK_EQ_STR(r.scope, "key");
    CHECK_EQ_INT(r.remaining_requests, 0);
    CHECK_EQ_INT(r.reset_requests_ms, 60000);
    CHECK(!admit(rl, &k, NULL, 0, T0 + 8571, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1); /* 0.43 ms left: never 0 for a refusal */
    CHECK(admit(rl, &k, NULL, 0, T0 + 8572, &r));
    CHECK_EQ_INT(r.remaining_requests, 0);
    /* TAT is now exactly 60000 + 60000/7; the next slot is at 2T = 17142.86 -> 17143 */
    CHECK(!admit(rl, &k, NULL, 0, T0 + 17142, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1);
    CHECK(admit(rl, &k, NULL, 0, T0 + 17143, &r));
    /* After a whole minute of silence, the full allowance is back. */
    CHECK(admit(rl, &k, NULL, 0, T0 + 17143 + 60000, &r));
    CHECK_EQ_INT(r.remaining_requests, 6);

    /* L = 600: T = 100 ms exactly. */
    store_key k2 = mkkey(2, 1, -1, -1); /* the configured default */
    for (int i = 0; i < 600; i++)
        CHECK(admit(rl, &k2, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.limit_requests, 600);
    CHECK_EQ_INT(r.limit_tokens, 1000000);
    CHECK(!admit(rl, &k2, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 100);
    CHECK(!admit(rl, &k2, NULL, 0, T0 + 99, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1);
    CHECK(admit(rl, &k2, NULL, 0, T0 + 100, &r));
    CHECK(!admit(rl, &k2, NULL, 0, T0 + 100, &r));
    CHECK_EQ_INT(r.retry_after_ms, 100);
    rl_free(rl);
}

/* One request per T forever passes, whether the bucket starts full or empty; a shade faster
 * does not. */
static void test_smooth(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, 7, -1), e = mkkey(2, 1, 7, -1), f = mkkey(3, 1, 600, -1);
    rl_result r;
    int fails = 0;
    for (int64_t i = 0; i < 10000; i++) /* at ceil(i * 60000/7) */
        fails += !admit(rl, &k, NULL, 0, T0 + (i * 60000 + 6) / 7, &r);
    CHECK_EQ_INT(fails, 0);

    for (int i = 0; i < 7; i++) /* empty the bucket first */
        CHECK(admit(rl, &e, NULL, 0, T0, &r));
    fails = 0;
    for (int64_t i = 1; i <= 10000; i++)
        fails += !admit(rl, &e, NULL, 0, T0 + (i * 60000 + 6) / 7, &r);
    CHECK_EQ_INT(fails, 0);
    CHECK_EQ_INT(r.remaining_requests, 0);

    for (int i = 0; i < 600; i++)
        CHECK(admit(rl, &f, NULL, 0, T0, &r));
    fails = 0;
    for (int64_t i = 1; i <= 10000; i++)
        fails += !admit(rl, &f, NULL, 0, T0 + i * 100, &r);
    CHECK_EQ_INT(fails, 0);
    /* 99 ms apart is faster than the limit: refused at once, by exactly the 1 ms missing */
    CHECK(!admit(rl, &f, NULL, 0, T0 + 10000 * 100 + 99, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1);
    rl_free(rl);
}

/* Tokens: admitted at the estimate, corrected to the real usage. */
static void test_tokens(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, -1, 1000); /* T = 60 ms per token */
    rl_result r;
    CHECK(admit(rl, &k, NULL, 600, T0, &r));
    CHECK_EQ_INT(r.limit_tokens, 1000);
    CHECK_EQ_INT(r.remaining_tokens, 400);
    CHECK_EQ_INT(r.reset_tokens_ms, 36000);
    CHECK(!admit(rl, &k, NULL, 600, T0, &r));
    CHECK_EQ_STR(r.which, "tokens");
    CHECK_EQ_STR(r.scope, "key");
    CHECK_EQ_INT(r.retry_after_ms, 200 * 60); /* 200 tokens missing, 60 ms each */
    CHECK_EQ_INT(r.remaining_tokens, 400);    /* the refusal consumed nothing */
    CHECK_EQ_INT(r.remaining_requests, 599);

    /* It used 100, not 600: 500 come back at once. */
    rl_correct(rl, &k, NULL, 600, 100, T0);
    rl_peek(rl, &k, T0, &r);
    CHECK_EQ_INT(r.remaining_tokens, 900);
    CHECK_EQ_INT(r.reset_tokens_ms, 6000);
    CHECK_EQ_INT(r.remaining_requests, 599);
    CHECK(admit(rl, &k, NULL, 600, T0, &r));
    CHECK_EQ_INT(r.remaining_tokens, 300);
    /* It used 900, not 600: 300 more are taken, the key is at its limit. */
    rl_correct(rl, &k, NULL, 600, 900, T0);
    rl_peek(rl, &k, T0, &r);
    CHECK_EQ_INT(r.remaining_tokens, 0);
    CHECK_EQ_INT(r.reset_tokens_ms, 60000);
    /* ... and past it: the excess is owed (a request of 0 tokens still waits 6 s). */
    rl_correct(rl, &k, NULL, 900, 1000, T0);
    CHECK(!admit(rl, &k, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 6000);
    CHECK_EQ_INT(r.reset_tokens_ms, 66000);
    CHECK(admit(rl, &k, NULL, 0, T0 + 6000, &r));

    /* Giving back never goes below "full": a fresh key stays at its limit. */
    store_key k2 = mkkey(2, 1, -1, 1000);
    rl_correct(rl, &k2, NULL, 100000, 0, T0);
    rl_peek(rl, &k2, T0, &r);
    CHECK_EQ_INT(r.remaining_tokens, 1000);
    CHECK_EQ_INT(r.reset_tokens_ms, 0);
    CHECK(admit(rl, &k2, NULL, 1000, T0, &r));
    CHECK(!admit(rl, &k2, NULL, 1, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 60);
    rl_correct(rl, &k2, NULL, 100000, 0, T0);
    rl_peek(rl, &k2, T0, &r);
    CHECK_EQ_INT(r.remaining_tokens, 1000);

    /* An estimate above the limit counts as the whole limit: it passes on a full bucket and
     * then waits a minute, rather than being refused forever. */
    store_key k3 = mkkey(3, 1, -1, 1000);
    CHECK(admit(rl, &k3, NULL, 5000, T0, &r));
    CHECK_EQ_INT(r.remaining_tokens, 0);
    CHECK(!admit(rl, &k3, NULL, 5000, T0 + 1, &r));
    CHECK_EQ_INT(r.retry_after_ms, 59999);
    CHECK(admit(rl, &k3, NULL, 5000, T0 + 60000, &r));
    /* ... and its correction starts from the limit it was charged, not from the estimate:
     * 200 used of a 5000 estimate leaves 800, it does not wipe the counter (which would also
     * give back what other requests used). */
    rl_correct(rl, &k3, NULL, 5000, 200, T0 + 60000);
    rl_peek(rl, &k3, T0 + 60000, &r);
    CHECK_EQ_INT(r.remaining_tokens, 800);

    /* A limit whose interval is far below a microsecond (1e12 tokens/min) stays exact. */
    store_key k4 = mkkey(4, 1, -1, 1000000000000LL);
    CHECK(admit(rl, &k4, NULL, 999999999999LL, T0, &r));
    CHECK_EQ_INT(r.remaining_tokens, 1);
    CHECK(admit(rl, &k4, NULL, 1, T0, &r));
    CHECK(!admit(rl, &k4, NULL, 1, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1);                 /* 6e-8 ms, rounded up */
    CHECK(admit(rl, &k4, NULL, 16666666, T0 + 1, &r)); /* 1 ms = 16666666.67 tokens */
    CHECK(!admit(rl, &k4, NULL, 1, T0 + 1, &r));
    rl_free(rl);
}

/* A refusal by any limit consumes nothing from any other. */
static void test_all_or_nothing(void)
{
    cfg_reset();
    g_cfg.account_requests_per_minute = 2;
    g_cfg.account_tokens_per_minute = 1000;
    cfg_model m;
    memset(&m, 0, sizeof m);
    m.name = "m";
    m.requests_per_minute = 3;
    rl_t *rl = rl_new(&g_cfg);
    store_key a = mkkey(1, 7, 10, 10000), b = mkkey(2, 7, 10, 10000);
    rl_result r;

    CHECK(admit(rl, &a, NULL, 0, T0, &r));
    CHECK(admit(rl, &b, NULL, 0, T0, &r));
    CHECK(!admit(rl, &a, NULL, 0, T0, &r)); /* the account's 2 per minute are used */
    CHECK_EQ_STR(r.scope, "account");
    CHECK_EQ_STR(r.which, "requests");
    CHECK_EQ_INT(r.retry_after_ms, 30000);
    CHECK_EQ_INT(r.remaining_requests, 9); /* the key reports its own counter, untouched */
    for (int i = 0; i < 5; i++)
        CHECK(!admit(rl, &a, NULL, 0, T0, &r));
    rl_peek(rl, &a, T0, &r);
    CHECK_EQ_INT(r.remaining_requests, 9);
    CHECK_EQ_INT(r.remaining_tokens, 10000);

    /* The model's 3 per minute, used by keys of three other accounts. */
    for (int i = 0; i < 3; i++) {
        store_key o = mkkey(10 + i, 10 + i, 10, 10000);
        CHECK(admit(rl, &o, &m, 0, T0, &r));
    }
    store_key c = mkkey(3, 8, 10, 10000);
    CHECK(!admit(rl, &c, &m, 0, T0, &r));
    CHECK_EQ_STR(r.scope, "model");
    CHECK_EQ_INT(r.retry_after_ms, 20000);
    CHECK_EQ_INT(r.remaining_requests, 10);
    /* The model's refusal took nothing from the key nor from account 8: its 2 are intact. */
    CHECK(admit(rl, &c, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.remaining_requests, 9);
    CHECK(admit(rl, &c, NULL, 0, T0, &r));
    CHECK(!admit(rl, &c, NULL, 0, T0, &r));
    CHECK_EQ_STR(r.scope, "account");

    /* Tokens: the account's 1000 tokens refuse a 600-token request after a first one, and
     * the key's token counter is left as it was. */
    store_key d = mkkey(4, 20, 10, 10000);
    CHECK(admit(rl, &d, NULL, 600, T0, &r));
    CHECK_EQ_INT(r.remaining_tokens, 9400);
    CHECK(!admit(rl, &d, NULL, 600, T0, &r));
    CHECK_EQ_STR(r.scope, "account");
    CHECK_EQ_STR(r.which, "tokens");
    CHECK_EQ_INT(r.retry_after_ms, 200 * 60);
    CHECK_EQ_INT(r.remaining_tokens, 9400);
    CHECK_EQ_INT(r.remaining_requests, 9);
    /* Corrections reach the account too: giving back 500 lets the request in. */
    rl_correct(rl, &d, NULL, 600, 100, T0);
    CHECK(admit(rl, &d, NULL, 600, T0, &r));
    CHECK_EQ_INT(r.remaining_tokens, 9400 + 500 - 600);
    rl_free(rl);
}

/* When several limits refuse, the longest wait is reported, with its limit. */
static void test_longest_wait(void)
{
    cfg_reset();
    g_cfg.account_requests_per_minute = 2; /* T = 30 s */
    cfg_model m;
    memset(&m, 0, sizeof m);
    m.tokens_per_minute = 600; /* T = 100 ms per token */
    rl_t *rl = rl_new(&g_cfg);
    store_key a = mkkey(1, 1, 1, -1), b = mkkey(2, 1, 10, -1); /* a: 1 per minute */
    rl_result r;

    CHECK(admit(rl, &a, NULL, 0, T0, &r));
    CHECK(admit(rl, &b, NULL, 0, T0, &r));
    /* at +10 s: key a waits 50 s, the account 20 s */
    CHECK(!admit(rl, &a, NULL, 0, T0 + 10000, &r));
    CHECK_EQ_INT(r.retry_after_ms, 50000);
    CHECK_EQ_STR(r.scope, "key");
    CHECK_EQ_STR(r.which, "requests");
    /* the other way round: key b is fine, the account waits 20 s */
    CHECK(!admit(rl, &b, NULL, 0, T0 + 10000, &r));
    CHECK_EQ_INT(r.retry_after_ms, 20000);
    CHECK_EQ_STR(r.scope, "account");

    /* the model's tokens against the account's requests */
    store_key c = mkkey(3, 2, 10, -1), d = mkkey(4, 2, 10, -1);
    CHECK(admit(rl, &c, &m, 600, T0, &r)); /* model tokens: a full minute of debt */
    CHECK(admit(rl, &d, NULL, 0, T0, &r)); /* account 2: full */
    CHECK(!admit(rl, &c, &m, 600, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 60000);
    CHECK_EQ_STR(r.scope, "model");
    CHECK_EQ_STR(r.which, "tokens");
    /* at +20 s the account waits 10 s; the model 15 s for 350 tokens, 5 s for 250 */
    CHECK(!admit(rl, &c, &m, 350, T0 + 20000, &r));
    CHECK_EQ_INT(r.retry_after_ms, 15000);
    CHECK_EQ_STR(r.scope, "model");
    CHECK(!admit(rl, &c, &m, 250, T0 + 20000, &r));
    CHECK_EQ_INT(r.retry_after_ms, 10000);
    CHECK_EQ_STR(r.scope, "account");
    CHECK_EQ_STR(r.which, "requests");
    CHECK(admit(rl, &c, &m, 250, T0 + 30000, &r));
    rl_free(rl);
}

/* A key's rpm edited while it is in use takes effect at once, keeping what it has used. */
static void test_changed_limit(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, 10, -1);
    rl_result r;
    for (int i = 0; i < 10; i++)
        CHECK(admit(rl, &k, NULL, 0, T0, &r));
    CHECK(!admit(rl, &k, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 6000);

    k.rpm = 20; /* raised: 10 used, 10 left at once */
    rl_peek(rl, &k, T0, &r);
    CHECK_EQ_INT(r.limit_requests, 20);
    CHECK_EQ_INT(r.remaining_requests, 10);
    CHECK_EQ_INT(r.reset_requests_ms, 30000);
    for (int i = 0; i < 10; i++)
        CHECK(admit(rl, &k, NULL, 0, T0, &r));
    CHECK(!admit(rl, &k, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.retry_after_ms, 3000);

    k.rpm = 5; /* lowered: 20 used at 12 s each = 240 s of debt, 180 s over the minute */
    CHECK(!admit(rl, &k, NULL, 0, T0, &r));
    CHECK_EQ_INT(r.limit_requests, 5);
    CHECK_EQ_INT(r.retry_after_ms, 240000 - 60000 + 12000);
    CHECK_EQ_INT(r.remaining_requests, 0);
    CHECK_EQ_INT(r.reset_requests_ms, 240000);
    CHECK(admit(rl, &k, NULL, 0, T0 + 192000, &r));

    k.rpm = -1; /* back to the configured 600 (T = 100 ms): 21 used */
    rl_peek(rl, &k, T0 + 192000, &r);
    CHECK_EQ_INT(r.limit_requests, 600);
    CHECK_EQ_INT(r.remaining_requests, 600 - 5); /* 60 s of debt at 12 s = 5 used */
    rl_free(rl);
}

/* Idle entries are dropped, so the table stays bounded; a key still in debt is kept. */
static void test_eviction(void)
{
    cfg_reset();
    g_cfg.requests_per_minute = 10;
    rl_t *rl = rl_new(&g_cfg);
    rl_result r;
    store_key busy = mkkey(999999999, 1, -1, -1);
    int64_t id = 1;
    size_t peak = 0;
    int fails = 0, forgotten = 0;

    for (int round = 0; round < 30; round++) {
        int64_t now = T0 + round * 60000LL;
        for (int i = 0; i < 5000; i++) {
            store_key k = mkkey(id++, 1, -1, -1);
            fails += !admit(rl, &k, NULL, 0, now, &r);
        }
        /* The busy key used its minute 30 s ago: half of it is still owed, whatever the
         * sweeps triggered by the inserts above dropped. */
        if (round > 0) {
            rl_peek(rl, &busy, now, &r);
            forgotten += r.remaining_requests != 5 || r.reset_requests_ms != 30000;
        }
        /* the busy key uses its whole minute in the middle of each round */
        for (int i = 0; i < 10; i++)
            fails += !admit(rl, &busy, NULL, 0, now + 30000, &r);
        size_t n = rl_entry_count(rl);
        if (n > peak) peak = n;
    }
    CHECK_EQ_INT(fails, 0);
    CHECK_EQ_INT(forgotten, 0);
    /* 150001 keys were seen; about 5000 are busy at a time */
    CHECK(peak < 40000);
    CHECK(rl_entry_count(rl) >= 5000);

    /* the busy key survived every sweep: still refused until its debt is paid */
    int64_t last = T0 + 29 * 60000LL + 30000;
    CHECK(!admit(rl, &busy, NULL, 0, last + 5999, &r));
    CHECK_EQ_INT(r.retry_after_ms, 1);
    CHECK_EQ_INT(r.reset_requests_ms, 60000 - 5999);
    CHECK(admit(rl, &busy, NULL, 0, last + 6000, &r));

    /* an evicted key comes back full: the same answers as if it had been kept */
    store_key old = mkkey(1, 1, -1, -1);
    rl_peek(rl, &old, last, &r);
    CHECK_EQ_INT(r.remaining_requests, 10);
    CHECK_EQ_INT(r.reset_requests_ms, 0);
    for (int i = 0; i < 10; i++)
        CHECK(admit(rl, &old, NULL, 0, last, &r));
    CHECK(!admit(rl, &old, NULL, 0, last, &r));
    CHECK_EQ_INT(r.retry_after_ms, 6000);
    rl_free(rl);
}

static void test_peek_and_no_limit(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, 3, 100);
    rl_result r;
    rl_peek(rl, &k, T0, &r);
    CHECK_EQ_INT(r.allowed, 1);
    CHECK_EQ_INT(r.limit_requests, 3);
    CHECK_EQ_INT(r.remaining_requests, 3);
    CHECK_EQ_INT(r.reset_requests_ms, 0);
    CHECK_EQ_INT(r.limit_tokens, 100);
    CHECK_EQ_INT(r.remaining_tokens, 100);
    CHECK_EQ_INT(r.reset_tokens_ms, 0);
    for (int i = 0; i < 5; i++)
        rl_peek(rl, &k, T0, &r); /* peeking consumes nothing */
    CHECK(admit(rl, &k, NULL, 10, T0, &r));
    CHECK(admit(rl, &k, NULL, 10, T0, &r));
    CHECK(admit(rl, &k, NULL, 10, T0, &r));
    CHECK(!admit(rl, &k, NULL, 10, T0, &r));
    rl_peek(rl, &k, T0 + 1000, &r);
    CHECK_EQ_INT(r.remaining_requests, 0);
    CHECK_EQ_INT(r.reset_requests_ms, 59000);
    CHECK_EQ_INT(r.remaining_tokens, 71);   /* 43 s of the minute free at 0.6 s a token */
    CHECK_EQ_INT(r.reset_tokens_ms, 17000); /* 30 tokens = 18 s, 1 s later */

    /* A key whose own limit is 0 is not limited in that dimension. */
    store_key u = mkkey(2, 1, 0, 0);
    for (int i = 0; i < 1000; i++)
        CHECK(admit(rl, &u, NULL, 1000000000, T0, &r));
    CHECK_EQ_INT(r.limit_requests, 0);
    CHECK_EQ_INT(r.limit_tokens, 0);
    rl_free(rl);
}

static void test_duration(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {-5, "0ms"},
        {0, "0ms"},
        {1, "1ms"},
        {20, "20ms"},
        {999, "999ms"},
        {1000, "1s"},
        {1001, "1.001s"},
        {1010, "1.01s"},
        {1500, "1.5s"},
        {6000, "6s"},
        {59999, "59.999s"},
        {60000, "1m0s"},
        {90000, "1m30s"},
        {90500, "1m30.5s"},
        {360000, "6m0s"},
        {3599000, "59m59s"},
        {3600000, "1h0m0s"},
        {3723000, "1h2m3s"},
        {3723004, "1h2m3.004s"},
        {90061000, "25h1m1s"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rl_format_duration(cases[i].ms, out, sizeof out);
        CHECK_EQ_STR(out, cases[i].want);
    }
    rl_format_duration(INT64_MAX, out, sizeof out); /* fits in 32 bytes */
    CHECK_EQ_STR(out, "2562047788015h12m55.807s");
}

static void test_headers(void)
{
    rl_result r;
    buf_t b;
    memset(&r, 0, sizeof r);
    r.limit_requests = 600;
    r.remaining_requests = 599;
    r.reset_requests_ms = 100;
    r.limit_tokens = 1000000;
    r.remaining_tokens = 998000;
    r.reset_tokens_ms = 360000;
    buf_init(&b, 4096);
    CHECK_EQ_INT(buf_appends(&b, "HTTP/1.1 200 OK\r\n"), 0);
    CHECK_EQ_INT(rl_format_headers(&r, &b), 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK_EQ_STR(b.data, "HTTP/1.1 200 OK\r\n"
                         "x-ratelimit-limit-requests: 600\r\n"
                         "x-ratelimit-remaining-requests: 599\r\n"
                         "x-ratelimit-reset-requests: 100ms\r\n"
                         "x-ratelimit-limit-tokens: 1000000\r\n"
                         "x-ratelimit-remaining-tokens: 998000\r\n"
                         "x-ratelimit-reset-tokens: 6m0s\r\n");
    buf_free(&b);
    /* all or nothing against the buffer's limit */
    buf_init(&b, 64);
    CHECK_EQ_INT(rl_format_headers(&r, &b), -1);
    CHECK_EQ_INT(b.len, 0);
    buf_free(&b);
}

/* ---- concurrency: 8 threads at a frozen clock admit exactly the limit ---- */

#define NTHREADS 8

static pthread_barrier_t g_start;

typedef struct {
    rl_t *rl;
    const store_key *keys;
    int nkeys;
    const cfg_model *m;
    int tries;
    int admitted;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    rl_result r;
    pthread_barrier_wait(&g_start); /* all threads at once, so they really contend */
    for (int i = 0; i < a->tries; i++)
        a->admitted += rl_admit(a->rl, &a->keys[i % a->nkeys], a->m, 1, T0, &r);
    return NULL;
}

static int run_hammer(rl_t *rl, const store_key *keys, int nkeys, const cfg_model *m, int tries,
                      int rotate)
{
    pthread_t th[NTHREADS];
    hammer_arg args[NTHREADS];
    int total = 0;
    pthread_barrier_init(&g_start, NULL, NTHREADS);
    for (int t = 0; t < NTHREADS; t++) {
        /* threads start on different keys so that their lock sets overlap in every order */
        args[t] = (hammer_arg){
            rl, keys + (rotate ? t % nkeys : 0), rotate ? nkeys - t % nkeys : nkeys, m, tries, 0};
        pthread_create(&th[t], NULL, hammer, &args[t]);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        total += args[t].admitted;
    }
    pthread_barrier_destroy(&g_start);
    return total;
}

static void test_concurrency(void)
{
    cfg_reset();
    rl_t *rl = rl_new(&g_cfg);
    store_key one = mkkey(1, 1, 1000, -1);
    CHECK_EQ_INT(run_hammer(rl, &one, 1, NULL, 2000, 0), 1000);
    /* a long run of admissions, where a lost update would show */
    store_key big = mkkey(2, 1, 100000, 1000000000);
    CHECK_EQ_INT(run_hammer(rl, &big, 1, NULL, 20000, 0), 100000);
    rl_free(rl);

    /* Many keys of one account under an account limit and a model limit: every admission
     * locks up to three stripes; the totals are still exact and nothing deadlocks. */
    cfg_reset();
    g_cfg.account_requests_per_minute = 3000;
    cfg_model m;
    memset(&m, 0, sizeof m);
    m.requests_per_minute = 5000;
    m.tokens_per_minute = 2500; /* each request costs 1 token: the tightest limit */
    rl = rl_new(&g_cfg);
    store_key keys[40];
    for (int i = 0; i < 40; i++)
        keys[i] = mkkey(100 + i, 7, 100000, -1);
    CHECK_EQ_INT(run_hammer(rl, keys, 40, &m, 1000, 1), 2500);
    /* without the model: the account's 3000, of which 2500 are used */
    CHECK_EQ_INT(run_hammer(rl, keys, 40, NULL, 1000, 1), 500);
    rl_free(rl);

    /* Each key at its own limit, all sharing the account: sum of the keys' limits. */
    cfg_reset();
    g_cfg.account_requests_per_minute = 1000000;
    rl = rl_new(&g_cfg);
    for (int i = 0; i < 40; i++)
        keys[i] = mkkey(100 + i, 7, 25, -1);
    CHECK_EQ_INT(run_hammer(rl, keys, 40, NULL, 2000, 1), 40 * 25);
    rl_free(rl);
}

/* A config reload: the defaults change for the next admission, and a model's counters follow
 * its name into the new config's cfg_model. */
static void test_reload(void)
{
    cfg_reset();
    g_cfg.requests_per_minute = 2;
    cfg_model m1, m2;
    memset(&m1, 0, sizeof m1);
    m1.name = strdup("model-a");
    m1.requests_per_minute = 3;
    rl_t *rl = rl_new(&g_cfg);
    store_key k = mkkey(1, 1, -1, -1), k2 = mkkey(2, 2, -1, -1), k3 = mkkey(3, 3, -1, -1);
    rl_result r;
    CHECK(admit(rl, &k, &m1, 0, T0, &r));
    CHECK(admit(rl, &k, &m1, 0, T0, &r));
    CHECK(!admit(rl, &k, &m1, 0, T0, &r)); /* the key's default of 2 */
    CHECK_EQ_STR(r.scope, "key");
    cfg_t next = g_cfg;
    next.requests_per_minute = 4;
    rl_set_limits(rl, &next);
    CHECK(admit(rl, &k, NULL, 0, T0, &r)); /* 2 of the new 4 left */
    CHECK_EQ_INT(r.limit_requests, 4);
    /* the reloaded model: another cfg_model (and another string) of the same name */
    memset(&m2, 0, sizeof m2);
    m2.name = strdup("model-a");
    m2.requests_per_minute = 3;
    free(m1.name);
    CHECK(admit(rl, &k2, &m2, 0, T0, &r)); /* the third, after m1's two */
    CHECK(!admit(rl, &k3, &m2, 0, T0, &r));
    CHECK_EQ_STR(r.scope, "model");
    CHECK(admit(rl, &k3, &m2, 0, T0 + 20000, &r)); /* one more after T = 20 s */
    free(m2.name);
    rl_free(rl);
}

int main(void)
{
    RUN(test_exact);
    RUN(test_smooth);
    RUN(test_tokens);
    RUN(test_all_or_nothing);
    RUN(test_longest_wait);
    RUN(test_changed_limit);
    RUN(test_reload);
    RUN(test_eviction);
    RUN(test_peek_and_no_limit);
    RUN(test_duration);
    RUN(test_headers);
    RUN(test_concurrency);
    TAP_DONE();
}
