/*
 * Unit tests for src/billing/pricing.c: list prices with markup (exact, rounded half up), request
 * costs rounded once per request, tiny prices, saturation at INT64_MAX, and the prompt and output
 * bounds that size a hold (docs/BILLING.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing/billing.h"
#include "tap.h"

static cfg_t mkcfg(int64_t markup_micro)
{
    cfg_t c;
    memset(&c, 0, sizeof(c));
    c.markup_percent_micro = markup_micro;
    c.default_max_output_tokens = 4096;
    return c;
}

static cfg_model mkmodel(int64_t in, int64_t out, int64_t max_out)
{
    cfg_model m;
    memset(&m, 0, sizeof(m));
    m.name = "m";
    m.price_in_nusd_per_mtok = in;
    m.price_out_nusd_per_mtok = out;
    m.max_output_tokens = max_out;
    return m;
}

static void test_list_price(void)
{
    cfg_t none = mkcfg(0), m125 = mkcfg(12500000), m50 = mkcfg(50000000);
    cfg_t almost50 = mkcfg(49999999), tiny = mkcfg(1);

    /* USD 2.50 / 1M: unchanged without markup, x1.125 with 12.5 %. */
    CHECK_EQ_INT(price_list_per_mtok(&none, 2500000000LL), 2500000000LL);
    CHECK_EQ_INT(price_list_per_mtok(&m125, 2500000000LL), 2812500000LL);
    CHECK_EQ_INT(price_list_per_mtok(&m125, 10000000000LL), 11250000000LL);
    CHECK_EQ_INT(price_list_per_mtok(NULL, 123), 123);
    /* Half up: 1 * 1.5 = 1.5 -> 2; 3 * 1.5 = 4.5 -> 5; 1 * 1.49999999 -> 1. */
    CHECK_EQ_INT(price_list_per_mtok(&m50, 1), 2);
    CHECK_EQ_INT(price_list_per_mtok(&m50, 3), 5);
    CHECK_EQ_INT(price_list_per_mtok(&almost50, 1), 1);
    /* 12.5 % of 1 nano-dollar is 0.125 -> 1.125 -> 1; of 4 is 0.5 -> 4.5 -> 5. */
    CHECK_EQ_INT(price_list_per_mtok(&m125, 1), 1);
    CHECK_EQ_INT(price_list_per_mtok(&m125, 4), 5);
    /* One millionth of a percent on USD 1000/1M = 10 nano-dollars more. */
    CHECK_EQ_INT(price_list_per_mtok(&tiny, 1000000000000LL), 1000000010000LL);
    CHECK_EQ_INT(price_list_per_mtok(&m125, 0), 0);
    CHECK_EQ_INT(price_list_per_mtok(&m125, -5), 0);
    /* Saturation instead of overflow. */
    CHECK_EQ_INT(price_list_per_mtok(&m50, INT64_MAX), INT64_MAX);
    CHECK_EQ_INT(price_list_per_mtok(&none, INT64_MAX), INT64_MAX);
}

static void test_cost(void)
{
    cfg_t none = mkcfg(0), m125 = mkcfg(12500000);
    cfg_model gpt4o = mkmodel(2500000000LL, 10000000000LL, 16384);
    cfg_model cheap = mkmodel(37500000LL, 37500000LL, 0); /* USD 0.0375 / 1M */
    cfg_model nano = mkmodel(1, 1, 0);                    /* USD 0.000000001 / 1M */

    /* 1000 x 2.5 / 1e6 USD + 500 x 10 / 1e6 USD = USD 0.0075. */
    CHECK_EQ_INT(price_cost(&none, &gpt4o, 1000, 500), 7500000);
    CHECK_EQ_INT(price_cost(&m125, &gpt4o, 1000, 500), 8437500);
    CHECK_EQ_INT(price_cost(&none, &gpt4o, 0, 0), 0);
    CHECK_EQ_INT(price_cost(&none, &gpt4o, 1, 0), 2500);
    CHECK_EQ_INT(price_cost(&none, &gpt4o, 0, 1), 10000);
    /* 37.5 nano-dollars per token: 1 -> 38 (half up), 2 -> 75, 13 -> 487.5 -> 488. */
    CHECK_EQ_INT(price_cost(&none, &cheap, 1, 0), 38);
    CHECK_EQ_INT(price_cost(&none, &cheap, 2, 0), 75);
    CHECK_EQ_INT(price_cost(&none, &cheap, 13, 0), 488);
    CHECK_EQ_INT(price_cost(&none, &cheap, 0, 13), 488);
    /* Rounded once per request: 1 + 1 tokens = 75, not 38 + 38. */
    CHECK_EQ_INT(price_cost(&none, &cheap, 1, 1), 75);
    /* Below half a nano-dollar: 0; from half: 1. */
    CHECK_EQ_INT(price_cost(&none, &nano, 499999, 0), 0);
    CHECK_EQ_INT(price_cost(&none, &nano, 250000, 250000), 1);
    CHECK_EQ_INT(price_cost(&none, &nano, 1500000, 0), 2);
    /* Huge counts saturate; negative counts count as zero. */
    CHECK_EQ_INT(price_cost(&none, &gpt4o, INT64_MAX, INT64_MAX), INT64_MAX);
    CHECK_EQ_INT(price_cost(&none, &gpt4o, INT64_MAX, 0), INT64_MAX);
    /* 3e15 tokens x 2.5e9 nano-dollars per 1M: the product overflows int64, the result does not. */
    CHECK_EQ_INT(price_cost(&none, &gpt4o, 3000000000000000LL, 0), 7500000000000000000LL);
    CHECK_EQ_INT(price_cost(&none, &gpt4o, -5, 2), 20000);
    CHECK_EQ_INT(price_cost(&none, NULL, 5, 5), 0);
    cfg_model dear = mkmodel(INT64_MAX, INT64_MAX, 0);
    CHECK_EQ_INT(price_cost(&m125, &dear, 1000000, 0), INT64_MAX);
    CHECK_EQ_INT(price_cost(&none, &dear, 1, 0), (INT64_MAX + 500000ULL) / 1000000);
}

/* The hold covers the cost whenever the real counts are within the bounds (cost is monotonic). */
static void test_cost_monotonic(void)
{
    cfg_t m = mkcfg(7654321);
    cfg_model md = mkmodel(150000000LL, 600000000LL, 0);
    srand(42);
    for (int i = 0; i < 20000; i++) {
        int64_t p = rand() % 100000, c = rand() % 100000;
        int64_t dp = rand() % 1000, dc = rand() % 1000;
        int64_t lo = price_cost(&m, &md, p, c), hi = price_cost(&m, &md, p + dp, c + dc);
        if (lo > hi) {
            CHECK(lo <= hi);
            break;
        }
    }
}

static void test_prompt_bound(void)
{
    const char *hello =
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}";
    const char *img = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
                      "\"image_url\":{\"url\":\"https://x/y.png\"}},{\"type\":\"input_audio\","
                      "\"input_audio\":{\"data\":\"AAAA\",\"format\":\"wav\"}}]}]}";
    size_t n = strlen(img);

    CHECK_EQ_INT(price_prompt_bound("", 0), 16);
    CHECK_EQ_INT(price_prompt_bound(NULL, 0), 16);
    CHECK_EQ_INT(price_prompt_bound(hello, strlen(hello)), (int64_t)strlen(hello) + 16);
    /* Two "image_url" and two "input_audio" occurrences. */
    CHECK_EQ_INT(price_prompt_bound(img, n), (int64_t)n + 16 + 4 * 1500);
    /* Only the given length is scanned (no NUL needed; an occurrence cut by len is not counted). */
    CHECK_EQ_INT(price_prompt_bound("image_url", 8), 8 + 16);
    CHECK_EQ_INT(price_prompt_bound("image_urlimage_url", 18), 18 + 16 + 3000);
    CHECK_EQ_INT(price_prompt_bound("image_urlimage_url", 17), 17 + 16 + 1500);
    /* A body of escapes is bounded by its bytes: "\u00e9" is one token at most, 6 bytes. */
    CHECK_EQ_INT(price_prompt_bound("\"\\u00e9\"", 8), 8 + 16);
    CHECK_EQ_INT(price_prompt_bound("_input_audio_image_url_", 23), 23 + 16 + 3000);
    CHECK_EQ_INT(price_prompt_bound("input_audi", 10), 10 + 16);
}

/* The straightforward count (memmem per needle) the bound's scanner must agree with. */
static int64_t ref_count(const char *b, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    int64_t n = 0;
    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(b + i, needle, nl) == 0) {
            n++;
            i += nl - 1;
        }
    return n;
}

/* Random bodies made of the needles' pieces, cut anywhere: the same counts as the reference. */
static void test_prompt_bound_differential(void)
{
    static const char *const parts[] = {"image", "_",  "url",     "input",  "audio",  "x",
                                        "\"",    "im", "age_url", "input_", "_audio", "__"};
    unsigned seed = 12345;
    int bad = 0;
    for (int it = 0; it < 20000; it++) {
        char b[128];
        size_t len = 0;
        int k = (int)(seed % 12);
        for (int j = 0; j < k + 4; j++) {
            seed = seed * 1103515245u + 12345u;
            const char *p = parts[(seed >> 16) % (sizeof parts / sizeof parts[0])];
            size_t pl = strlen(p);
            if (len + pl > sizeof b) break;
            memcpy(b + len, p, pl);
            len += pl;
        }
        seed = seed * 1103515245u + 12345u;
        size_t cut = len ? (seed >> 16) % (len + 1) : 0;
        int64_t want = (int64_t)cut + 16 +
                       1500 * (ref_count(b, cut, "image_url") + ref_count(b, cut, "input_audio"));
        if (price_prompt_bound(b, cut) != want && bad++ < 5)
            fprintf(stderr, "bound differs for %.*s\n", (int)cut, b);
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_output_bound(void)
{
    cfg_t c = mkcfg(0);
    cfg_model with = mkmodel(1, 1, 16384), without = mkmodel(1, 1, 0);

    CHECK_EQ_INT(price_output_bound(&c, &with, 100), 100);
    CHECK_EQ_INT(price_output_bound(&c, &with, 0), 0);
    CHECK_EQ_INT(price_output_bound(&c, &with, 100000), 16384); /* capped at the model's limit */
    CHECK_EQ_INT(price_output_bound(&c, &without, 100000), 100000);
    CHECK_EQ_INT(price_output_bound(&c, &with, -1), 16384);
    CHECK_EQ_INT(price_output_bound(&c, &without, -1), 4096);
    c.default_max_output_tokens = 2048;
    CHECK_EQ_INT(price_output_bound(&c, &without, -1), 2048);
    CHECK_EQ_INT(price_output_bound(&c, NULL, -1), 2048);
    CHECK_EQ_INT(price_output_bound(&c, &without, 7), 7);
}

/* The hold the API layer computes for a typical request, and the most its real cost can be. */
static void test_hold_example(void)
{
    cfg_t c = mkcfg(12500000);
    cfg_model gpt4o = mkmodel(2500000000LL, 10000000000LL, 16384);
    const char *body = "{\"model\":\"gpt-4o\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"Say hi\"}]}";
    int64_t pb = price_prompt_bound(body, strlen(body));
    int64_t ob = price_output_bound(&c, &gpt4o, 100);
    int64_t hold = price_cost(&c, &gpt4o, pb, ob);
    CHECK_EQ_INT(pb, (int64_t)strlen(body) + 16);
    /* (pb x 2.8125 + 100 x 11.25) / 1e6 USD, rounded half up. */
    CHECK_EQ_INT(hold, (pb * 2812500000LL + 100 * 11250000000LL + 500000) / 1000000);
    /* OpenAI counts this prompt as about 10 tokens: any real count <= pb costs <= the hold. */
    CHECK(price_cost(&c, &gpt4o, 10, 100) <= hold);
}

/* claude-sonnet-4 as shared/spec/CONFIG.md prices it: 3.00, 15.00, 0.30, 3.75, 6.00 USD per 1M. */
static cfg_model mksonnet(void)
{
    cfg_model m = mkmodel(3000000000LL, 15000000000LL, 64000);
    m.price_cached_in_nusd_per_mtok = 300000000LL;
    m.price_cache_write_nusd_per_mtok = 3750000000LL;
    m.price_cache_write_1h_nusd_per_mtok = 6000000000LL;
    return m;
}

/* Each of the five counts at its own price, reasoning inside output, one rounding. */
static void test_usage_cost(void)
{
    cfg_t none = mkcfg(0), m125 = mkcfg(12500000);
    cfg_model s = mksonnet();
    usage_counts u = {.input = 1000,
                      .cached_input = 2000,
                      .cache_write = 300,
                      .cache_write_1h = 100,
                      .output = 500,
                      .reasoning = 200};

    /* 1000 x 3 + 2000 x 0.30 + 300 x 3.75 + 100 x 6 + 500 x 15 = 12 825 000 USD/1e6 x 1e-6 */
    CHECK_EQ_INT(price_usage_cost(&none, &s, &u), 12825000);
    /* with 12.5 % markup every price is x1.125: 14 428 125 */
    CHECK_EQ_INT(price_usage_cost(&m125, &s, &u), 14428125);
    /* reasoning is part of output: it never adds to the cost */
    u.reasoning = 0;
    CHECK_EQ_INT(price_usage_cost(&none, &s, &u), 12825000);
    u.reasoning = 500;
    CHECK_EQ_INT(price_usage_cost(&none, &s, &u), 12825000);
    /* cache reads are cheaper than input: the same prompt read from cache costs less */
    usage_counts plain = {.input = 3400, .output = 500};
    CHECK_EQ_INT(price_usage_cost(&none, &s, &plain), 3400 * 3000 + 500 * 15000);
    CHECK(price_usage_cost(&none, &s, &u) > 0);
    usage_counts cached = {.input = 400, .cached_input = 3000, .output = 500};
    CHECK_EQ_INT(price_usage_cost(&none, &s, &cached), 400 * 3000 + 3000 * 300 + 500 * 15000);
    /* price_cost is plain input + output */
    CHECK_EQ_INT(price_cost(&none, &s, 3400, 500), price_usage_cost(&none, &s, &plain));

    /* One rounding per request: 37.5 nano-dollars per token for each kind; 1 token of each of
     * four kinds is 150, and 1 each of three is 112.5 -> 113 (not 38 x 3 = 114). */
    cfg_model cheap = mkmodel(37500000LL, 37500000LL, 0);
    cheap.price_cached_in_nusd_per_mtok = 37500000LL;
    cheap.price_cache_write_nusd_per_mtok = 37500000LL;
    cheap.price_cache_write_1h_nusd_per_mtok = 37500000LL;
    usage_counts one = {.input = 1, .cached_input = 1, .output = 1};
    CHECK_EQ_INT(price_usage_cost(&none, &cheap, &one), 113);
    one.cache_write = 1;
    CHECK_EQ_INT(price_usage_cost(&none, &cheap, &one), 150);

    /* A free kind is free, not "unset". */
    cfg_model freecache = mksonnet();
    freecache.price_cached_in_nusd_per_mtok = 0;
    usage_counts only_cached = {.cached_input = 1000000};
    CHECK_EQ_INT(price_usage_cost(&none, &freecache, &only_cached), 0);

    /* Negative counts count as none; no model or usage costs nothing. */
    usage_counts neg = {.input = -5,
                        .cached_input = -1,
                        .cache_write = INT64_MIN,
                        .cache_write_1h = -7,
                        .output = 2,
                        .reasoning = -3};
    CHECK_EQ_INT(price_usage_cost(&none, &s, &neg), 30000);
    CHECK_EQ_INT(price_usage_cost(&none, NULL, &u), 0);
    CHECK_EQ_INT(price_usage_cost(&none, &s, NULL), 0);

    /* Saturation: five products near 2^126 each would overflow __int128 together. */
    cfg_model dear = mkmodel(INT64_MAX, INT64_MAX, 0);
    dear.price_cached_in_nusd_per_mtok = INT64_MAX;
    dear.price_cache_write_nusd_per_mtok = INT64_MAX;
    dear.price_cache_write_1h_nusd_per_mtok = INT64_MAX;
    usage_counts huge = {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX};
    CHECK_EQ_INT(price_usage_cost(&none, &dear, &huge), INT64_MAX);
    CHECK_EQ_INT(price_usage_cost(&m125, &dear, &huge), INT64_MAX);
    usage_counts last = {.output = 1};
    CHECK_EQ_INT(price_usage_cost(&none, &dear, &last), (INT64_MAX + 500000ULL) / 1000000);
    /* 3e15 cache-write tokens x 3.75e9: the product overflows int64, the cost does not */
    usage_counts big = {.cache_write = 1000000000000000LL};
    CHECK_EQ_INT(price_usage_cost(&none, &s, &big), 3750000000000000000LL);
}

/* The hold prices the prompt bound at the dearest prompt price: whatever the split of a prompt
 * within the bound, and whatever output within its bound, the cost is at most the hold. */
static void test_hold_bound(void)
{
    cfg_t none = mkcfg(0), mk = mkcfg(7654321);
    cfg_model s = mksonnet();

    /* 1h cache writes are the dearest here: 1000 x 6 + 100 x 15 */
    CHECK_EQ_INT(price_hold(&none, &s, 1000, 100), 1000 * 6000 + 100 * 15000);
    /* input dearest (cache reads cheaper, writes unset = input): the old input x bound */
    cfg_model g = mkmodel(2500000000LL, 10000000000LL, 16384);
    g.price_cached_in_nusd_per_mtok = 1250000000LL;
    g.price_cache_write_nusd_per_mtok = 2500000000LL;
    g.price_cache_write_1h_nusd_per_mtok = 2500000000LL;
    CHECK_EQ_INT(price_hold(&none, &g, 1000, 100), price_cost(&none, &g, 1000, 100));
    /* each kind can be the dearest one */
    for (int k = 0; k < 3; k++) {
        cfg_model m = mkmodel(1000000000LL, 2000000000LL, 0);
        m.price_cached_in_nusd_per_mtok = m.price_cache_write_nusd_per_mtok =
            m.price_cache_write_1h_nusd_per_mtok = 500000000LL;
        int64_t *kind[] = {&m.price_cached_in_nusd_per_mtok, &m.price_cache_write_nusd_per_mtok,
                           &m.price_cache_write_1h_nusd_per_mtok};
        *kind[k] = 4000000000LL;
        CHECK_EQ_INT(price_hold(&none, &m, 10, 1), 10 * 4000 + 2000);
    }
    /* markup and rounding like a cost: one rounding of the whole sum */
    cfg_model cheap = mkmodel(37500000LL, 37500000LL, 0);
    cheap.price_cache_write_1h_nusd_per_mtok = 37500000LL;
    CHECK_EQ_INT(price_hold(&none, &cheap, 1, 1), 75);
    CHECK_EQ_INT(price_hold(&none, NULL, 1, 1), 0);
    CHECK_EQ_INT(price_hold(&none, &s, INT64_MAX, INT64_MAX), INT64_MAX);
    CHECK_EQ_INT(price_hold(&none, &s, -1, 0), 0);

    srand(7);
    int bad = 0;
    for (int i = 0; i < 20000 && !bad; i++) {
        int64_t pb = rand() % 200000, ob = rand() % 20000;
        int64_t hold = price_hold(&mk, &s, pb, ob);
        /* a random split of at most pb prompt tokens into the four kinds */
        int64_t left = rand() % (pb + 1), q[4];
        for (int k = 0; k < 3; k++) {
            q[k] = left ? rand() % (left + 1) : 0;
            left -= q[k];
        }
        q[3] = left;
        usage_counts u = {q[0], q[1], q[2], q[3], rand() % (ob + 1), 0};
        u.reasoning = u.output / 2;
        if (price_usage_cost(&mk, &s, &u) > hold) bad = 1;
        /* the whole bound written to the 1h cache costs exactly the hold */
        usage_counts all = {.cache_write_1h = pb, .output = ob};
        if (price_usage_cost(&mk, &s, &all) != hold) bad = 2;
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    RUN(test_prompt_bound_differential);
    RUN(test_list_price);
    RUN(test_cost);
    RUN(test_cost_monotonic);
    RUN(test_prompt_bound);
    RUN(test_output_bound);
    RUN(test_hold_example);
    RUN(test_usage_cost);
    RUN(test_hold_bound);
    TAP_DONE();
}
