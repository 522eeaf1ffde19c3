/*
 * Unit tests for src/cache/rcache.c, the response cache's in-process backend: hits return a copy
 * of exactly what was put, misses and expired entries return nothing, the partition's byte bound
 * holds (least recently used evicted first, a get refreshes), an entry larger than its bound is
 * not kept, partitions do not evict each other, a key put twice is replaced, and the table grows
 * past its first buckets without losing entries. And the Redis backend's value format
 * (rcache_redis.c): what is encoded decodes to the same value, binary bytes included, and anything
 * else (cut short, another version, lengths that overrun) is refused, never read past.
 */
#include "cache/rcache.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void key_of(int i, uint8_t *k)
{
    memset(k, 0, RCACHE_KEY_LEN);
    /* the first 8 bytes pick the bucket: vary them and the last ones */
    memcpy(k, &i, sizeof i);
    k[RCACHE_KEY_LEN - 1] = (uint8_t)(i * 7);
}

static rcache_value val(const char *s)
{
    rcache_value v = {0};
    v.data = (char *)s;
    v.len = strlen(s);
    v.usage.input = 11;
    v.usage.output = 5;
    strcpy(v.model, "m");
    strcpy(v.provider, "p");
    return v;
}

static int has(rcache *c, const char *part, int i, int64_t now, const char *want)
{
    uint8_t k[RCACHE_KEY_LEN];
    key_of(i, k);
    rcache_value out;
    if (!rcache_get(c, part, k, now, &out)) return 0;
    int ok = out.len == strlen(want) && memcmp(out.data, want, out.len) == 0 &&
             out.usage.input == 11 && out.usage.output == 5 && strcmp(out.provider, "p") == 0;
    rcache_value_free(&out);
    return ok ? 1 : -1;
}

static int put(rcache *c, const char *part, int64_t max, int i, const char *s, int64_t exp,
               int64_t now)
{
    uint8_t k[RCACHE_KEY_LEN];
    key_of(i, k);
    rcache_value v = val(s);
    return rcache_put(c, part, max, k, &v, exp, now);
}

static void test_hit_miss(void)
{
    rcache *c = rcache_memory_new();
    CHECK(c != NULL);
    CHECK_EQ_INT(has(c, "m", 1, 0, "x"), 0); /* no partition yet */
    CHECK_EQ_INT(put(c, "m", 1 << 20, 1, "{\"a\":1}", 1000, 0), 1);
    CHECK_EQ_INT(has(c, "m", 1, 10, "{\"a\":1}"), 1);
    CHECK_EQ_INT(has(c, "m", 2, 10, "x"), 0);     /* another key */
    CHECK_EQ_INT(has(c, "other", 1, 10, "x"), 0); /* another partition */
    /* put twice: replaced, counted once */
    CHECK_EQ_INT(put(c, "m", 1 << 20, 1, "second", 1000, 0), 1);
    CHECK_EQ_INT(has(c, "m", 1, 10, "second"), 1);
    size_t n;
    int64_t bytes;
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(bytes, rcache_entry_cost(6));
    rcache_free(c);
}

static void test_expiry(void)
{
    rcache *c = rcache_memory_new();
    CHECK_EQ_INT(put(c, "m", 1 << 20, 1, "a", 100, 0), 1);
    CHECK_EQ_INT(has(c, "m", 1, 99, "a"), 1);
    CHECK_EQ_INT(has(c, "m", 1, 100, "a"), 0); /* at its expiry: gone */
    size_t n;
    int64_t bytes;
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 0); /* and removed */
    CHECK_EQ_INT(bytes, 0);
    CHECK_EQ_INT(put(c, "m", 1 << 20, 2, "b", 50, 50), 0); /* already expired: not kept */
    rcache_free(c);
}

static void test_bound_lru(void)
{
    rcache *c = rcache_memory_new();
    int64_t one = rcache_entry_cost(4);
    int64_t max = one * 3; /* three entries of 4 bytes */
    CHECK_EQ_INT(put(c, "m", max, 1, "aaaa", 1000, 0), 1);
    CHECK_EQ_INT(put(c, "m", max, 2, "bbbb", 1000, 0), 1);
    CHECK_EQ_INT(put(c, "m", max, 3, "cccc", 1000, 0), 1);
    CHECK_EQ_INT(has(c, "m", 1, 1, "aaaa"), 1); /* 1 is now the most recent; 2 the least */
    CHECK_EQ_INT(put(c, "m", max, 4, "dddd", 1000, 0), 1);
    CHECK_EQ_INT(has(c, "m", 2, 1, "bbbb"), 0); /* evicted */
    CHECK_EQ_INT(has(c, "m", 1, 1, "aaaa"), 1);
    CHECK_EQ_INT(has(c, "m", 3, 1, "cccc"), 1);
    CHECK_EQ_INT(has(c, "m", 4, 1, "dddd"), 1);
    size_t n;
    int64_t bytes;
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 3);
    CHECK(bytes <= max);
    /* larger than the bound: not kept, nothing evicted */
    CHECK_EQ_INT(put(c, "m", one, 5, "eeeee", 1000, 0), 0);
    CHECK_EQ_INT(has(c, "m", 5, 1, "eeeee"), 0);
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 3);
    /* a smaller bound (a reload): the next put evicts down to it */
    CHECK_EQ_INT(put(c, "m", one, 6, "ffff", 1000, 0), 1);
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(bytes, one);
    CHECK_EQ_INT(has(c, "m", 6, 1, "ffff"), 1);
    /* another partition has its own bound and is untouched */
    CHECK_EQ_INT(put(c, "n", one, 1, "aaaa", 1000, 0), 1);
    CHECK_EQ_INT(has(c, "m", 6, 1, "ffff"), 1);
    CHECK_EQ_INT(has(c, "n", 1, 1, "aaaa"), 1);
    rcache_free(c);
}

static void test_many(void)
{
    rcache *c = rcache_memory_new();
    int ok = 1;
    for (int i = 0; i < 5000; i++)
        ok &= put(c, "m", 1 << 30, i, "vvvv", 1000, 0) == 1;
    CHECK(ok);
    for (int i = 0; i < 5000; i++)
        ok &= has(c, "m", i, 1, "vvvv") == 1;
    CHECK(ok);
    size_t n;
    int64_t bytes;
    rcache_memory_stats(c, "m", &n, &bytes);
    CHECK_EQ_INT(n, 5000);
    CHECK_EQ_INT(bytes, 5000 * rcache_entry_cost(4));
    rcache_free(c);
}

static void test_partition_names(void)
{
    rcache *c = rcache_memory_new();
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ_INT(put(c, longname, 1 << 20, 1, "a", 1000, 0), 1);
    CHECK_EQ_INT(has(c, longname, 1, 1, "a"), 1);
    rcache_free(c);
}

static void test_encode_decode(void)
{
    static const char bin[] = "a\0b\r\n\xff";
    rcache_value v = {0};
    v.data = (char *)bin;
    v.len = sizeof bin; /* the NUL inside and the one after */
    v.stream = 1;
    v.usage = (usage_counts){1, 2, 3, 4, 5000000000LL, 6};
    strcpy(v.model, "gpt:4o");
    strcpy(v.provider, "openai");
    size_t n = 0;
    char *enc = rcache_encode(&v, &n);
    CHECK(enc != NULL);
    rcache_value out;
    CHECK_EQ_INT(rcache_decode(enc, n, &out), 0);
    CHECK_EQ_INT((long long)out.len, (long long)sizeof bin);
    CHECK(memcmp(out.data, bin, sizeof bin) == 0);
    CHECK_EQ_INT(out.stream, 1);
    CHECK(out.usage.output == 5000000000LL && out.usage.input == 1 && out.usage.reasoning == 6 &&
          out.usage.cache_write_1h == 4);
    CHECK_EQ_STR(out.model, "gpt:4o");
    CHECK_EQ_STR(out.provider, "openai");
    rcache_value_free(&out);
    /* every prefix shorter than the header and the names is refused */
    for (size_t k = 0; k < n - sizeof bin; k++)
        CHECK_EQ_INT(rcache_decode(enc, k, &out), -1);
    enc[4] = 2; /* another version: a miss */
    CHECK_EQ_INT(rcache_decode(enc, n, &out), -1);
    enc[4] = 1;
    enc[6] = (char)200; /* a model name longer than the value */
    CHECK_EQ_INT(rcache_decode(enc, n, &out), -1);
    free(enc);
    /* an empty answer is a value too */
    v.len = 0;
    v.stream = 0;
    enc = rcache_encode(&v, &n);
    CHECK(enc != NULL);
    CHECK_EQ_INT(rcache_decode(enc, n, &out), 0);
    CHECK_EQ_INT((long long)out.len, 0);
    CHECK_EQ_INT(out.stream, 0);
    rcache_value_free(&out);
    free(enc);
    CHECK_EQ_INT(rcache_decode("MSRC", 4, &out), -1);
}

int main(void)
{
    RUN(test_hit_miss);
    RUN(test_expiry);
    RUN(test_bound_lru);
    RUN(test_many);
    RUN(test_partition_names);
    RUN(test_encode_decode);
    TAP_DONE();
}
