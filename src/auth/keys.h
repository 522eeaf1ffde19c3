/*
 * Key material: generation from the OS CSPRNG, the textual format, and hashing.
 *
 * A key is "ms-" (proxy) or "mk-" (billing) followed by 40 base62 characters (~238 bits). Only
 * SHA-256 of the whole key and its first 8 characters (the display prefix) are ever stored.
 * The same generator makes the signing secrets of account webhooks (key_generate_secret).
 */
#ifndef MS_KEYS_H
#define MS_KEYS_H

#include <stddef.h>

#include "store/store.h"

#define KEY_RANDOM_CHARS 40
#define KEY_LEN (3 + KEY_RANDOM_CHARS)
#define KEY_PREFIX_LEN 8

/* Writes a new NUL-terminated key into out (at least KEY_LEN + 1 bytes). Returns 0 or -1. */
int key_generate(key_type type, char *out, size_t outlen);
/* 1 when s has the exact shape of a key of some type (prefix, length, alphabet), else 0. */
int key_well_formed(const char *s, size_t n, key_type *type_out);
void key_hash(const char *s, size_t n, unsigned char out[32]);

/* A webhook signing secret: "whsec_" and 40 base62 characters, like a key's. Unlike a key it is
 * stored as it is, since the gateway needs it to sign (HMAC) what it sends, and it grants no
 * access to anything: it only lets a receiver check that a webhook came from this gateway. */
#define KEY_SECRET_PREFIX "whsec_"
#define KEY_SECRET_LEN (sizeof KEY_SECRET_PREFIX - 1 + KEY_RANDOM_CHARS)
/* Writes a new NUL-terminated secret into out (at least KEY_SECRET_LEN + 1 bytes). 0 or -1. */
int key_generate_secret(char *out, size_t outlen);

#endif
