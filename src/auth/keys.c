/*
 * Key material: generation, the textual format check and hashing (see keys.h).
 *
 * Keys come straight from the kernel CSPRNG (getrandom(2)); base62 characters are drawn by
 * rejection sampling so that every character is exactly equally likely. Only key_hash's output
 * and the display prefix are ever stored: the full key exists in memory just long enough to be
 * shown once (by the CLI or the API) and to be hashed on every request.
 */
#include "auth/keys.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const char key_alphabet[] = "0123456789"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "abcdefghijklmnopqrstuvwxyz";

#define KEY_ALPHABET_LEN 62
/* The largest multiple of 62 that fits in a byte: bytes at or above it are thrown away, so
 * byte % 62 is uniform over the alphabet (no modulo bias). */
#define KEY_REJECT_AT (256 / KEY_ALPHABET_LEN * KEY_ALPHABET_LEN)

/* Fills buf completely from the kernel CSPRNG, retrying on EINTR and short reads. */
static int key_random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Writes n base62 characters drawn from the CSPRNG into out (no terminator). */
static int key_random_base62(char *out, size_t n)
{
    /* 40 characters need ~40 * 256/248 bytes on average; 64 covers almost every draw and the
     * loop refills when it does not. */
    unsigned char pool[64];
    size_t used = sizeof(pool), filled = 0;
    int rc = -1;

    while (filled < n) {
        if (used == sizeof(pool)) {
            if (key_random_bytes(pool, sizeof(pool)) != 0) goto cleanup;
            used = 0;
        }
        unsigned char b = pool[used++];
        if (b >= KEY_REJECT_AT) continue;
        out[filled++] = key_alphabet[b % KEY_ALPHABET_LEN];
    }
    rc = 0;

cleanup:
    OPENSSL_cleanse(pool, sizeof(pool));
    return rc;
}

int key_generate(key_type type, char *out, size_t outlen)
{
    if (!out || outlen < KEY_LEN + 1 || (type != KEY_PROXY && type != KEY_BILLING)) return -1;
    memcpy(out, type == KEY_PROXY ? "ms-" : "mk-", 3);
    if (key_random_base62(out + 3, KEY_RANDOM_CHARS) != 0) {
        OPENSSL_cleanse(out, outlen);
        return -1;
    }
    out[KEY_LEN] = '\0';
    return 0;
}

int key_generate_secret(char *out, size_t outlen)
{
    if (!out || outlen < KEY_SECRET_LEN + 1) return -1;
    memcpy(out, KEY_SECRET_PREFIX, sizeof KEY_SECRET_PREFIX - 1);
    if (key_random_base62(out + sizeof KEY_SECRET_PREFIX - 1, KEY_RANDOM_CHARS) != 0) {
        OPENSSL_cleanse(out, outlen);
        return -1;
    }
    out[KEY_SECRET_LEN] = '\0';
    return 0;
}

/* 1 for the bytes of base62 ('0'-'9', 'A'-'Z', 'a'-'z'), by byte value: each designator
 * starts a run of consecutive ones. */
#define KEY_B62_10 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define KEY_B62_26 KEY_B62_10, KEY_B62_10, 1, 1, 1, 1, 1, 1
static const unsigned char key_b62[256] = {
    ['0'] = KEY_B62_10, ['A'] = KEY_B62_26, ['a'] = KEY_B62_26};

int key_well_formed(const char *s, size_t n, key_type *type_out)
{
    key_type t;

    if (!s || n != KEY_LEN) return 0;
    if (memcmp(s, "ms-", 3) == 0)
        t = KEY_PROXY;
    else if (memcmp(s, "mk-", 3) == 0)
        t = KEY_BILLING;
    else
        return 0;
    /* every byte looked at, no branch a byte: a request whose connection changes key checks
     * one (the range tests with an early exit cost ~780 instructions a key) */
    unsigned ok = 1;
    for (size_t i = 3; i < KEY_LEN; i++)
        ok &= key_b62[(unsigned char)s[i]];
    if (!ok) return 0;
    if (type_out) *type_out = t;
    return 1;
}

/* SHA-256 fetched once for the process, and a digest context kept by each thread that hashes
 * (freed at its exit). EVP_sha256() makes every EVP_Digest look the algorithm up in OpenSSL 3's
 * provider store again (name to id, a lock, a reference count), and EVP_Digest allocates,
 * cleanses and frees a context each time: measured, 461 ns a 51-byte key that way, 152 ns with
 * the fetched algorithm, 113 ns with a kept context too. A request whose connection changes
 * key (a client behind a pooling load balancer; bench/'s chat1k-accts) hashes its key. */
static EVP_MD *key_sha256;
static pthread_key_t key_ctx_slot;
static int key_ctx_ok;
static pthread_once_t key_sha256_once = PTHREAD_ONCE_INIT;

static void key_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void key_sha256_fetch(void)
{
    key_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    key_ctx_ok = pthread_key_create(&key_ctx_slot, key_ctx_free) == 0;
}

/* SHA-256 only fails when OpenSSL itself is broken (allocation failure, provider missing).
 * Returning some fixed value would let every such failure authenticate as the same key, so the
 * only safe answer is to stop. */
static void key_hash_failed(void)
{
    fputs("fatal: SHA-256 failed in OpenSSL\n", stderr);
    abort();
}

void key_hash(const char *s, size_t n, unsigned char out[32])
{
    unsigned int outlen = 0;

    pthread_once(&key_sha256_once, key_sha256_fetch);
    if (!key_sha256 || !key_ctx_ok) key_hash_failed();
    EVP_MD_CTX *ctx = pthread_getspecific(key_ctx_slot);
    if (!ctx) {
        if (!(ctx = EVP_MD_CTX_new())) key_hash_failed();
        if (pthread_setspecific(key_ctx_slot, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            key_hash_failed();
        }
    }
    if (EVP_DigestInit_ex2(ctx, key_sha256, NULL) != 1 || EVP_DigestUpdate(ctx, s, n) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &outlen) != 1 || outlen != 32)
        key_hash_failed();
}
