/*
 * Unit tests for src/auth/keys.c: the key format, the alphabet and its uniform use, uniqueness,
 * the shape check and SHA-256 against known vectors.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/keys.h"
#include "tap.h"

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static void test_format(void)
{
    char k[KEY_LEN + 1];
    key_type t = KEY_BILLING;

    CHECK_EQ_INT(key_generate(KEY_PROXY, k, sizeof(k)), 0);
    CHECK_EQ_INT(strlen(k), 43);
    CHECK(strncmp(k, "ms-", 3) == 0);
    for (size_t i = 3; i < strlen(k); i++)
        CHECK(is_base62(k[i]));
    CHECK_EQ_INT(key_well_formed(k, strlen(k), &t), 1);
    CHECK_EQ_INT(t, KEY_PROXY);

    CHECK_EQ_INT(key_generate(KEY_BILLING, k, sizeof(k)), 0);
    CHECK(strncmp(k, "mk-", 3) == 0);
    CHECK_EQ_INT(key_well_formed(k, strlen(k), &t), 1);
    CHECK_EQ_INT(t, KEY_BILLING);

    /* Too small an output buffer and an invalid type are refused. */
    CHECK_EQ_INT(key_generate(KEY_PROXY, k, KEY_LEN), -1);
    CHECK_EQ_INT(key_generate((key_type)7, k, sizeof(k)), -1);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* 10000 keys: all distinct, and every one of the 62 characters used about equally often (a
 * modulo-biased generator over bytes would favour the first 8 characters by ~25%). */
static void test_unique_and_uniform(void)
{
    enum { N = 10000 };
    char(*keys)[KEY_LEN + 1] = calloc(N, sizeof(*keys));
    long counts[256] = {0};
    int dups = 0, distinct = 0;

    CHECK(keys != NULL);
    if (!keys) return;
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(key_generate(i % 2 ? KEY_PROXY : KEY_BILLING, keys[i], sizeof(keys[i])), 0);
        for (int j = 3; j < KEY_LEN; j++)
            counts[(unsigned char)keys[i][j]]++;
    }
    qsort(keys, N, sizeof(*keys), cmp_keys);
    for (int i = 1; i < N; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dups++;
    CHECK_EQ_INT(dups, 0);

    /* 400000 characters over 62 symbols: 6452 expected each, sd ~80; allow +-10%. */
    for (int c = 0; c < 256; c++) {
        if (!counts[c]) continue;
        distinct++;
        CHECK(is_base62((char)c));
        CHECK(counts[c] > 5800 && counts[c] < 7100);
    }
    CHECK_EQ_INT(distinct, 62);
    free(keys);
}

static void test_well_formed(void)
{
    char k[KEY_LEN + 1];
    char bad[KEY_LEN + 2];

    CHECK_EQ_INT(key_generate(KEY_PROXY, k, sizeof(k)), 0);
    CHECK_EQ_INT(key_well_formed(k, KEY_LEN, NULL), 1);
    CHECK_EQ_INT(key_well_formed(k, KEY_LEN - 1, NULL), 0);
    CHECK_EQ_INT(key_well_formed(NULL, 0, NULL), 0);
    CHECK_EQ_INT(key_well_formed("", 0, NULL), 0);

    memcpy(bad, k, sizeof(k));
    bad[KEY_LEN] = 'a';
    bad[KEY_LEN + 1] = '\0';
    CHECK_EQ_INT(key_well_formed(bad, KEY_LEN + 1, NULL), 0);

    const char *prefixes[] = {"MS-", "ms_", "mx-", "sk-", "ms:"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        memcpy(bad, k, sizeof(k));
        memcpy(bad, prefixes[i], 3);
        CHECK_EQ_INT(key_well_formed(bad, KEY_LEN, NULL), 0);
    }
    const char badchars[] = {'-', '_', '+', '/', '=', ' ', '\0', '\n', (char)0xc3};
    for (size_t i = 0; i < sizeof(badchars); i++) {
        memcpy(bad, k, sizeof(k));
        bad[20] = badchars[i];
        CHECK_EQ_INT(key_well_formed(bad, KEY_LEN, NULL), 0);
    }
    /* every byte value, at the first random place and the last: base62 only */
    int wrong = 0;
    for (int b = 0; b < 256; b++)
        for (size_t at = 3; at < KEY_LEN; at += KEY_LEN - 4) {
            memcpy(bad, k, sizeof(k));
            bad[at] = (char)b;
            int want = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
            wrong += key_well_formed(bad, KEY_LEN, NULL) != want;
        }
    CHECK_EQ_INT(wrong, 0);
}

static void test_hash_vectors(void)
{
    unsigned char h[32];
    char x[65];

    key_hash("abc", 3, h);
    hex(h, 32, x);
    CHECK_EQ_STR(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    key_hash("", 0, h);
    hex(h, 32, x);
    CHECK_EQ_STR(x, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* Only the given n bytes count, not the NUL-terminated string. */
    key_hash("abcdef", 3, h);
    hex(h, 32, x);
    CHECK_EQ_STR(x, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* key_hash keeps a digest context per thread: threads hashing at once, each alternating two
 * inputs, must each get the right digest every time (a context shared, or not reset between
 * uses, would mix them). */
static void *hash_many(void *arg)
{
    long *bad = arg;
    unsigned char h[32];
    char x[65];
    for (int i = 0; i < 2000; i++) {
        int odd = i & 1;
        key_hash(odd ? "" : "abc", odd ? 0 : 3, h);
        hex(h, 32, x);
        if (strcmp(x, odd ? "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                          : "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
            (*bad)++;
    }
    return NULL;
}

static void test_hash_threads(void)
{
    pthread_t t[4];
    long bad[4] = {0};
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(pthread_create(&t[i], NULL, hash_many, &bad[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(bad[i], 0);
    }
}

int main(void)
{
    RUN(test_format);
    RUN(test_unique_and_uniform);
    RUN(test_well_formed);
    RUN(test_hash_vectors);
    RUN(test_hash_threads);
    TAP_DONE();
}
