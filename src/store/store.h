/*
 * The store: accounts, keys and the ledger, behind one small interface so that SQLite (the
 * default, src/store/sqlite.c) and PostgreSQL (later) are interchangeable.
 *
 * Every call is synchronous and may block: it is for the CLI, the key-cache refresher thread and
 * the writer thread, never for an event-loop thread. A store_t is used by one thread at a time;
 * each thread that needs the store opens its own handle. Opening applies schema migrations.
 *
 * Money is int64 nano-dollars. Times are int64 milliseconds since the epoch.
 * Functions return 0 on success, STORE_NOTFOUND when the row does not exist, or STORE_ERR
 * (message in store_errmsg).
 */
#ifndef MS_STORE_H
#define MS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define STORE_OK 0
#define STORE_ERR (-1)
#define STORE_NOTFOUND (-2)

typedef struct store store_t;

typedef enum { KEY_PROXY = 0, KEY_BILLING = 1 } key_type;

typedef struct store_account {
    int64_t id;
    char name[128];
    int64_t balance_nusd;
    int64_t created_at_ms;
} store_account;

typedef struct store_key {
    int64_t id;
    int64_t account_id;
    key_type type;
    char name[128];
    char prefix[16];          /* first 8 characters of the key, e.g. "ms-abc12" */
    unsigned char hash[32];   /* SHA-256 of the whole key */
    int active;
    int deleted;              /* deleted keys are kept as tombstones so caches see the change */
    int64_t created_at_ms;
    int64_t expires_at_ms;    /* 0 = never */
    int64_t spend_limit_nusd; /* -1 = none */
    int64_t spent_nusd;
    int64_t rpm;              /* -1 = configured default */
    int64_t tpm;              /* -1 = configured default */
    int64_t seq;              /* store-wide change sequence of the last change to this row */
} store_key;

/* Opens (creating the file and its directory if needed) and migrates. NULL + err on failure. */
store_t *store_open(const cfg_t *cfg, char *err, size_t errlen);
void store_close(store_t *s);
const char *store_errmsg(store_t *s);
/* The highest applied schema migration. */
int store_schema_version(store_t *s, int64_t *version);

int store_account_create(store_t *s, const char *name, int64_t balance_nusd, int64_t *id_out);
int store_account_get(store_t *s, int64_t id, store_account *out);
/* *out is malloc'd (free it); ordered by id. */
int store_account_list(store_t *s, store_account **out, size_t *n);
/* Adds a `payment` transaction and raises the balance, atomically. */
int store_account_topup(store_t *s, int64_t id, int64_t amount_nusd, const char *description);

/* Creates a key with fresh random material; writes the full key (NUL-terminated) into key_out,
 * which must hold 64 bytes, and the stored row into *out (may be NULL). expires_at_ms 0 = never,
 * spend_limit_nusd -1 = none. */
int store_key_create(store_t *s, int64_t account_id, key_type type, const char *name,
                     int64_t expires_at_ms, int64_t spend_limit_nusd, char key_out[64],
                     store_key *out);
int store_key_get(store_t *s, int64_t id, store_key *out);
/* Keys of an account that are not deleted, ordered by id; *out malloc'd. */
int store_key_list(store_t *s, int64_t account_id, key_type type, store_key **out, size_t *n);
int store_key_set_active(store_t *s, int64_t id, int active);
/* Irreversible: marks the key deleted (the row stays as a tombstone). */
int store_key_delete(store_t *s, int64_t id);
/* Calls cb for every key (deleted ones included) whose seq is greater than since, in seq order,
 * and sets *max_seq to the greatest seq seen (or since when none). */
int store_keys_since(store_t *s, int64_t since, void (*cb)(void *ud, const store_key *k), void *ud,
                     int64_t *max_seq);

#endif
