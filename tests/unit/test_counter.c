/*
 * Unit tests of src/common/counter.c: single-writer counters, fixed-bucket histograms, the series
 * table that sums series by label text, and the exact text of Prometheus's format.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/counter.h"
#include "tap.h"

/* b's contents as a C string (in a static buffer). */
static const char *text(const buf_t *b)
{
    static char s[8192];
    size_t n = b->len < sizeof s - 1 ? b->len : sizeof s - 1;
    memcpy(s, b->data ? b->data : "", n);
    s[n] = '\0';
    return s;
}

static void test_add_and_get(void)
{
    ctr_t c = 0;
    ctr_add(&c, 1);
    ctr_add(&c, 41);
    CHECK_EQ_INT(ctr_get(&c), 42);
    ctr_add(&c, UINT64_C(1) << 40);
    CHECK(ctr_get(&c) == (UINT64_C(1) << 40) + 42);
}

static void test_observe_buckets(void)
{
    /* a bound is inclusive (le: less than or equal) */
    ctr_t h[CTR_LATENCY_N + 2] = {0};
    ctr_observe(h, &ctr_latency, 5000000);         /* exactly 5 ms: the first bucket */
    ctr_observe(h, &ctr_latency, 5000001);         /* just above: the second */
    ctr_observe(h, &ctr_latency, 0);               /* nothing at all: the first */
    ctr_observe(h, &ctr_latency, 301000000000ull); /* above 300 s: +Inf only */
    CHECK_EQ_INT(ctr_get(&h[0]), 2);
    CHECK_EQ_INT(ctr_get(&h[1]), 1);
    CHECK_EQ_INT(ctr_get(&h[CTR_LATENCY_N]), 1);
    CHECK(ctr_get(&h[CTR_LATENCY_N + 1]) == 5000000ull + 5000001ull + 301000000000ull);
    CHECK_EQ_INT(ctr_latency.n, CTR_LATENCY_N);
    CHECK_EQ_INT(ctr_overhead.n, CTR_OVERHEAD_N);
    for (size_t i = 1; i < ctr_latency.n; i++)
        CHECK(ctr_latency.le_ns[i] > ctr_latency.le_ns[i - 1]);
    for (size_t i = 1; i < ctr_overhead.n; i++)
        CHECK(ctr_overhead.le_ns[i] > ctr_overhead.le_ns[i - 1]);
    CHECK_EQ_INT(ctr_overhead.le_ns[0], 50000);          /* 50 us */
    CHECK_EQ_INT(ctr_overhead.le_ns[5], 2500000);        /* 2.5 ms */
    CHECK_EQ_INT(ctr_latency.le_ns[14], 300000000000ll); /* 5 min */
}

static void test_label_escaping(void)
{
    buf_t b;
    buf_init(&b, 0);
    const char v[] = "a\"b\\c\nd";
    CHECK_EQ_INT(ctr_label(&b, "model", v, sizeof v - 1), 0);
    CHECK_EQ_STR(text(&b), "model=\"a\\\"b\\\\c\\nd\"");
    ctr_label(&b, "kind", "", 0);
    CHECK_EQ_STR(text(&b), "model=\"a\\\"b\\\\c\\nd\",kind=\"\"");
    buf_free(&b);
}

static void test_decimal(void)
{
    buf_t b;
    buf_init(&b, 0);
    ctr_decimal(&b, 1234, 9);
    buf_append(&b, " ", 1);
    ctr_decimal(&b, 5000000000ull, 9);
    buf_append(&b, " ", 1);
    ctr_decimal(&b, 0, 3);
    buf_append(&b, " ", 1);
    ctr_decimal(&b, 1500, 3);
    buf_append(&b, " ", 1);
    ctr_decimal(&b, UINT64_MAX, 0); /* saturates rather than wrapping negative */
    CHECK_EQ_STR(text(&b), "0.000001234 5 0 1.5 9223372036854775807");
    buf_free(&b);
}

static void test_table_sums_and_sorts(void)
{
    ctr_table t;
    ctr_table_init(&t, 3);
    const uint64_t a[3] = {1, 2, 3}, b[3] = {10, 20, 30};
    CHECK_EQ_INT(ctr_table_add(&t, "m=\"z\"", 5, a), 0);
    CHECK_EQ_INT(ctr_table_add(&t, "m=\"a\"", 5, b), 0);
    CHECK_EQ_INT(ctr_table_add(&t, "m=\"z\"xx", 5, b), 0); /* klen, not the NUL, ends a key */
    CHECK_EQ_INT(t.n, 2);
    ctr_table u;
    ctr_table_init(&u, 3);
    ctr_table_add(&u, "m=\"a\"", 5, a);
    ctr_table_add(&u, "", 0, a);
    CHECK_EQ_INT(ctr_table_merge(&t, &u), 0);
    ctr_table_sort(&t);
    CHECK_EQ_INT(t.n, 3);
    CHECK_EQ_STR(t.rows[0].key, "");
    CHECK_EQ_STR(t.rows[1].key, "m=\"a\"");
    CHECK_EQ_STR(t.rows[2].key, "m=\"z\"");
    CHECK_EQ_INT(t.rows[1].vals[0], 11);
    CHECK_EQ_INT(t.rows[1].vals[2], 33);
    CHECK_EQ_INT(t.rows[2].vals[1], 22);
    CHECK_EQ_INT(ctr_table_add(&t, "x", 1, a), -1); /* sorted: read-only */
    ctr_table w;
    ctr_table_init(&w, 1);
    CHECK_EQ_INT(ctr_table_merge(&w, &t), -1); /* widths differ */
    ctr_table_free(&w);
    ctr_table_free(&u);
    ctr_table_free(&t);
}

static void test_table_grows(void)
{
    ctr_table t;
    ctr_table_init(&t, 1);
    const uint64_t one = 1;
    char k[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 1000; i++) {
            int n = snprintf(k, sizeof k, "k=\"%d\"", i);
            CHECK_EQ_INT(ctr_table_add(&t, k, (size_t)n, &one), 0);
        }
    CHECK_EQ_INT(t.n, 1000);
    int all_two = 1;
    for (size_t i = 0; i < t.n; i++)
        all_two &= t.rows[i].vals[0] == 2;
    CHECK(all_two);
    ctr_table_free(&t);
    CHECK_EQ_INT(t.n, 0);
}

static void test_text_format(void)
{
    static const uint64_t le[] = {1000000, 2000000000};
    const ctr_buckets bk = {2, le};
    ctr_t h[4] = {0};
    ctr_observe(h, &bk, 1000000);    /* 1 ms */
    ctr_observe(h, &bk, 1500000000); /* 1.5 s */
    ctr_observe(h, &bk, 3000000000); /* 3 s */
    uint64_t v[4];
    for (int i = 0; i < 4; i++)
        v[i] = ctr_get(&h[i]);
    buf_t b;
    buf_init(&b, 0);
    ctr_family(&b, "x_seconds", "histogram", "Help text.");
    ctr_histogram(&b, "x_seconds", "a=\"1\"", 5, &bk, v);
    ctr_histogram(&b, "x_seconds", "", 0, &bk, v);
    ctr_sample(&b, "y_usd_total", NULL, "m=\"q\"", 5, 2500000001ull, 9);
    ctr_sample(&b, "z", "_count", "", 0, 7, 0);
    CHECK_EQ_STR(text(&b), "# HELP x_seconds Help text.\n"
                           "# TYPE x_seconds histogram\n"
                           "x_seconds_bucket{a=\"1\",le=\"0.001\"} 1\n"
                           "x_seconds_bucket{a=\"1\",le=\"2\"} 2\n"
                           "x_seconds_bucket{a=\"1\",le=\"+Inf\"} 3\n"
                           "x_seconds_sum{a=\"1\"} 4.501\n"
                           "x_seconds_count{a=\"1\"} 3\n"
                           "x_seconds_bucket{le=\"0.001\"} 1\n"
                           "x_seconds_bucket{le=\"2\"} 2\n"
                           "x_seconds_bucket{le=\"+Inf\"} 3\n"
                           "x_seconds_sum 4.501\n"
                           "x_seconds_count 3\n"
                           "y_usd_total{m=\"q\"} 2.500000001\n"
                           "z_count 7\n");
    buf_free(&b);
}

int main(void)
{
    RUN(test_add_and_get);
    RUN(test_observe_buckets);
    RUN(test_label_escaping);
    RUN(test_decimal);
    RUN(test_table_sums_and_sorts);
    RUN(test_table_grows);
    RUN(test_text_format);
    TAP_DONE();
}
