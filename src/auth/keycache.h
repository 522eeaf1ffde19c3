/*
 * The in-memory key cache the hot path authenticates against. It holds every key of the store
 * (by SHA-256) and is kept fresh by a refresher thread that asks the store for rows changed since
 * the last sequence it saw, every refresh interval (250 ms), so a CLI change (deactivate, delete)
 * reaches a running gateway within one second. Lookups take a read lock and copy the entry out;
 * they never touch the store.
 */
#ifndef MS_KEYCACHE_H
#define MS_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "store/store.h"

typedef struct kc kc_t;

/* Loads every key once (synchronously), then starts the refresher thread with its own store
 * handle. NULL + err on failure. */
kc_t *kc_start(const cfg_t *cfg, char *err, size_t errlen);
void kc_stop(kc_t *kc);

typedef enum {
    KC_OK,
    KC_NOT_FOUND, /* unknown, malformed or deleted */
    KC_EXPIRED,
    KC_INACTIVE,
} kc_status;

/* Looks up the presented key (not NUL-terminated) and copies its row into *out (hash zeroed).
 * now_ms decides expiry. */
kc_status kc_lookup(kc_t *kc, const char *key, size_t n, int64_t now_ms, store_key *out);
/* The same for a key already hashed (key_hash) and known to be well formed: a connection that
 * presents the same key again skips the SHA-256. */
kc_status kc_lookup_hash(kc_t *kc, const unsigned char hash[32], int64_t now_ms, store_key *out);

/* An event-loop thread's memory of the keys it looked up last (KC_LOCAL_SLOTS, by the hash's
 * first byte). The table's read lock is a word every lookup writes, so with several workers that
 * word's cache line moves between their cores on every request (bench/scale.c measured a lookup
 * at 92 ns on one core and 320 ns each on two). A lookup through a kc_local whose slot holds the
 * key and whose copy is as new as the table (a counter that every change of the table bumps
 * under the write lock, and that the lookup only reads) takes no lock and writes nothing shared;
 * any change since sends it to the table. So a deactivation or deletion reaches it exactly as it
 * reaches kc_lookup_hash. Zero-initialised, owned by one thread, never freed. */
#define KC_LOCAL_SLOTS 8
typedef struct kc_local_slot {
    uint64_t gen; /* the table's generation the copy was taken at; 0 = empty */
    unsigned char hash[32];
    int found;
    store_key key; /* its hash zeroed, as lookups hand it out */
} kc_local_slot;
typedef struct kc_local {
    kc_local_slot slot[KC_LOCAL_SLOTS];
} kc_local;
/* kc_lookup_hash through l. */
kc_status kc_lookup_local(kc_t *kc, kc_local *l, const unsigned char hash[32], int64_t now_ms,
                          store_key *out);

/* Puts one key row, as the store returned it after a write (hash included: never a row copied
 * out by kc_lookup), into the cache now: inserted, updated, or removed when k->deleted. Takes
 * the write lock briefly; never touches the store. A row older than what the cache already
 * holds is ignored, so calling this after the refresher has caught up is harmless. */
void kc_apply(kc_t *kc, const store_key *k);

/* Called on the refresher thread before a refresh publishes keys that are new or changed and
 * usable (active, not deleted): billing uses it to learn their accounts first (bill_poll_sync),
 * so a key never works before its account's balance is known. May block. */
/* Refresh now instead of at the next interval: another instance changed keys (its notice came
 * through the shared state). Any thread; never blocks beyond a short lock. */
void kc_poke(kc_t *kc);

void kc_set_before_publish(kc_t *kc, void (*fn)(void *ud), void *ud);

#endif
