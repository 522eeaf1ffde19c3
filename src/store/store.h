/*
 * The store: accounts, keys and the ledger, behind one small interface so that SQLite (the
 * default, src/store/sqlite.c) and PostgreSQL (src/store/postgres.c, for several gateway
 * instances on one database) are interchangeable: store_open picks the backend's table of
 * operations by the config (src/store/backend.h, store.c).
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
#include <stdio.h>

#include "common/usage.h"
#include "config/config.h"

#define STORE_OK 0
#define STORE_ERR (-1)
#define STORE_NOTFOUND (-2)
/* The change would take an account's balance above STORE_MAX_BALANCE_NUSD (message in
 * store_errmsg). Nothing was written. */
#define STORE_LIMIT (-3)

/* The largest balance an account may have: USD 1 000 000 000. In nano-dollars that is 1e18, about
 * a ninth of INT64_MAX, so a balance plus any single amount that passed the same check (a top-up,
 * a charge, a hold) still fits in int64 without a wider type; docs/BILLING.md gives the reasoning.
 */
#define STORE_MAX_BALANCE_NUSD 1000000000000000000LL

typedef struct store store_t;

typedef enum { KEY_PROXY = 0, KEY_BILLING = 1 } key_type;

typedef struct store_account {
    int64_t id;
    char name[128];
    int64_t balance_nusd;
    int64_t created_at_ms;
    int64_t seq; /* store-wide account change sequence of the last change to this row */
    /* store_account_list and store_account_show only (0 elsewhere): proxy keys not deleted, and
     * the USD ever charged to the account (the sum of its keys' spent, which the ledger keeps
     * equal to the sum of its usage charges) */
    int64_t proxy_keys;
    int64_t spent_nusd;
} store_account;

typedef struct store_key {
    int64_t id;
    int64_t account_id;
    key_type type;
    char name[128];
    char prefix[16];        /* first 8 characters of the key, e.g. "ms-abc12" */
    unsigned char hash[32]; /* SHA-256 of the whole key */
    int active;
    int deleted; /* deleted keys are kept as tombstones so caches see the change */
    int64_t created_at_ms;
    int64_t expires_at_ms;    /* 0 = never */
    int64_t spend_limit_nusd; /* -1 = none */
    int64_t spent_nusd;
    int64_t rpm; /* -1 = configured default */
    int64_t tpm; /* -1 = configured default */
    int64_t seq; /* store-wide change sequence of the last change to this row */
} store_key;

/* Opens (creating the file and its directory if needed) and migrates. NULL + err on failure. */
store_t *store_open(const cfg_t *cfg, char *err, size_t errlen);

/* Creates every missing directory above path (mkdir -p of its dirname), mode 0700. */
int store_mkdirs(const char *path, char *err, size_t errlen);

/* The serving lock (lock.c): one `serve` per store unless the instances share their state in
 * Redis. Two gateways on one store without it would each hold balances in memory and overspend,
 * so the second refuses to start. SQLite: flock on "<database>.lock", which the kernel releases
 * when the process dies, however it dies. PostgreSQL without `redis:`: a session advisory lock
 * on a connection kept open while serving (the server releases it when the connection drops).
 * PostgreSQL with `redis:`: no lock (*out = NULL), several instances serve one database.
 * Returns 0 with the handle to keep while serving in *out, or -1 with a message in err when
 * another process holds it or it cannot be taken. */
typedef struct store_lock store_lock;
int store_serve_lock(const cfg_t *cfg, store_lock **out, char *err, size_t errlen);
void store_serve_unlock(store_lock *l);
void store_close(store_t *s);
const char *store_errmsg(store_t *s);
/* "sqlite" or "postgres". */
const char *store_backend(store_t *s);
/* The highest applied schema migration. */
int store_schema_version(store_t *s, int64_t *version);

/*
 * Background durability work for one writer handle (SQLite: WAL checkpoints; on PostgreSQL the
 * server checkpoints itself and this returns a handle that does nothing). A checkpoint
 * copies the WAL into the database file and fsyncs both: from a millisecond to hundreds of them
 * on a slow disk. Left to SQLite, it runs inside whichever commit crosses the WAL threshold, so
 * the ledger thread would stall and settled requests would wait in memory that long before they
 * are on disk. store_ckpt_start gives `writer` no checkpoints of its own and starts a thread, on
 * its own connection, that checkpoints (PASSIVE: never blocking the writer) once the writer's
 * commits have grown the WAL by STORE_CKPT_PAGES pages, and at least once a second while it
 * grows. Once the WAL is 4 x STORE_CKPT_PAGES long the writer checkpoints the rest itself after a
 * commit, so that the WAL restarts instead of growing for as long as the load lasts. Stop it
 * (store_ckpt_stop) while `writer` is idle and before closing it. NULL + err on failure; the writer
 * is then unchanged.
 */
typedef struct store_ckpt store_ckpt;
store_ckpt *store_ckpt_start(const cfg_t *cfg, store_t *writer, char *err, size_t errlen);
void store_ckpt_stop(store_ckpt *c);
/* Tests: the WAL growth (pages) that asks for a checkpoint, the restart four times it; 0 = the
 * default (4,000). Before store_ckpt_start; SQLite only. */
void store_ckpt_set_pages(int pages);
/* Tests: how many rows the ledger's newest-blocks table holds before a commit moves them, and
 * how many accounts a commit names for its small groups of rows to go there (store/sqlite.c,
 * migrations 11 and 12); 0 = the defaults (8,192 and 8). SQLite only. */
void store_ledger_set_recent(int64_t rows, int accounts);
/* Checkpoints the checkpointer has completed (each may have copied part of the WAL): tests. */
uint64_t store_ckpt_count(store_ckpt *c);

/* STORE_LIMIT when balance_nusd is above STORE_MAX_BALANCE_NUSD. */
int store_account_create(store_t *s, const char *name, int64_t balance_nusd, int64_t *id_out);
int store_account_get(store_t *s, int64_t id, store_account *out);
/* store_account_get with proxy_keys and spent_nusd filled in (the operator's view). */
int store_account_show(store_t *s, int64_t id, store_account *out);
/* *out is malloc'd (free it); ordered by id; proxy_keys and spent_nusd filled in. */
int store_account_list(store_t *s, store_account **out, size_t *n);
/* Adds a `payment` transaction and raises the balance, atomically. STORE_LIMIT when the amount
 * or the new balance would be above STORE_MAX_BALANCE_NUSD. */
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

/* ---- the ledger (issue 3) ---- */

/* Every account row change (create, topup, usage charge) takes the next value of the store-wide
 * `account_seq` (like key_seq) so the gateway can follow changes made by other processes.
 * Calls cb for every account whose seq is greater than since, in seq order. */
int store_accounts_since(store_t *s, int64_t since, void (*cb)(void *ud, const store_account *a),
                         void *ud, int64_t *max_seq);

/* One finished request, as the gateway settled it. */
typedef struct store_usage_event {
    char request_id[40];
    int64_t account_id;
    int64_t key_id;
    char model[128];   /* the model the client was billed for */
    char provider[64]; /* the provider name from the config */
    /* The provider's counts (common/usage.h), every one >= 0, reasoning <= output. The row's
     * prompt_tokens is their prompt sum (usage_prompt), completion_tokens is output. */
    usage_counts usage;
    int64_t charged_nusd; /* >= 0 */
    int status;           /* HTTP status the client got (499: the client went away) */
    int estimated;        /* usage was estimated because the provider never reported it */
    int cached;           /* answered from the response cache (charged 0) */
    int64_t latency_ms;
    int64_t created_at_ms;
    /* A low-balance notice (billing sets it, docs/BILLING.md): when notice_threshold_nusd > 0,
     * this charge took the account's balance to notice_balance_nusd, below that threshold, and
     * the batch also writes the notice into the webhook outbox. */
    int64_t notice_threshold_nusd;
    int64_t notice_balance_nusd;
} store_usage_event;

/* Writes a batch in ONE transaction. Per event: a `usage` row; and when charged_nusd > 0 a
 * `usage` transaction of -charged_nusd (description "<model> <prompt>+<completion> tokens",
 * request_id set), the account's balance lowered by it, and the key's spent_nusd raised by it;
 * with a notice, its webhook (store_webhook) in the outbox, event id "evt_" + the request id's
 * part after "req_".
 * Events whose request_id is already in the usage table, or earlier in the batch, are skipped (a
 * retry after a crash never bills twice). The balance CHECK (>= 0) failing makes the whole batch
 * fail with STORE_ERR. */
int store_ledger_commit(store_t *s, const store_usage_event *ev, size_t n);
/* The same for events the caller never offered to any store before (not a retry of a batch
 * whose commit failed, not read back from the ledger journal): a backend may then leave out its
 * look-up of request ids already stored (SQLite does, PostgreSQL's unique index does not care).
 * A request id twice in the batch is still skipped. Passing events that were offered before is
 * a double charge: when in doubt, call store_ledger_commit. */
int store_ledger_commit_new(store_t *s, const store_usage_event *ev, size_t n);
/* Makes s the ledger's own handle, one that writes nothing but ledger batches (the billing
 * thread's): SQLite then leaves its per-row foreign-key lookups to the batch, which checks each
 * account and key it names once (an account or key that does not exist, or a key of another
 * account, fails the batch as before). On PostgreSQL nothing changes. */
int store_ledger_writer(store_t *s);
/* Deferred posting (SQLite; docs/BILLING.md, "The ledger writer"): with on, the commits of this
 * handle write usage rows and leave the charges' balances and spends to store_ledger_post, which
 * writes each account and key once for all the rows since the last posting (with many accounts,
 * a commit's updates were an account row and a key row on pages of their own each, written to
 * the WAL every commit). Every read of a balance or a spend, through any handle, includes the
 * rows not yet posted, so nothing but the tables' raw columns can tell. Not for a store shared
 * through Redis (its pushes need every commit's rows). STORE_ERR where the backend posts at
 * once always (PostgreSQL). */
int store_ledger_defer(store_t *s, int on);
/* Posts every committed charge not yet in its account's balance and key's spend, in one
 * transaction; STORE_OK with nothing to do. Safe from any handle or process at any time. */
int store_ledger_post(store_t *s);

typedef struct store_key_patch {
    int set_name;
    char name[128];
    int set_active;
    int active;
    int set_spend_limit;
    int64_t spend_limit_nusd; /* -1 = none */
    int set_rpm;
    int64_t rpm; /* -1 = default */
    int set_tpm;
    int64_t tpm; /* -1 = default */
    int set_expires;
    int64_t expires_at_ms; /* 0 = never */
} store_key_patch;

/* Applies the fields that are set to a key that is not deleted (STORE_NOTFOUND otherwise) and
 * bumps its seq; *out (may be NULL) receives the updated row. */
int store_key_update(store_t *s, int64_t id, const store_key_patch *p, store_key *out);

typedef struct store_usage_row {
    int64_t id;
    char request_id[40];
    int64_t key_id;
    char model[128];
    char provider[64];
    int64_t prompt_tokens;         /* every prompt token, as OpenAI counts them */
    int64_t cached_tokens;         /* of which read from the provider's cache */
    int64_t cache_write_tokens;    /* of which written to a 5-minute cache */
    int64_t cache_write_1h_tokens; /* of which written to a 1-hour cache */
    int64_t completion_tokens;     /* output, reasoning included */
    int64_t reasoning_tokens;      /* of which reasoning */
    int64_t charged_nusd;
    int status;
    int estimated;
    int cached; /* answered from the response cache (docs/BILLING.md) */
    int64_t latency_ms;
    int64_t created_at_ms;
} store_usage_row;

/* Which of an account's usage rows a listing or statistics read covers. */
typedef struct store_usage_filter {
    const char *model; /* NULL = every model */
    int64_t key_id;    /* 0 = every key */
    int64_t from_ms;   /* created_at_ms >= from_ms (INT64_MIN = no bound) */
    int64_t to_ms;     /* created_at_ms <= to_ms (INT64_MAX = no bound) */
} store_usage_filter;

/* No filter: every row of the account. */
#define STORE_USAGE_ALL ((store_usage_filter){NULL, 0, INT64_MIN, INT64_MAX})

/* An account's usage rows that pass f (NULL = all), newest first (by id), limit/offset paging;
 * *out malloc'd. */
int store_usage_query(store_t *s, int64_t account_id, const store_usage_filter *f, int64_t limit,
                      int64_t offset, store_usage_row **out, size_t *n);
/* store_usage_query without a filter. */
int store_usage_list(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                     store_usage_row **out, size_t *n);

typedef struct store_usage_stat {
    char model[128]; /* by model; empty otherwise */
    int64_t key_id;  /* by key; 0 otherwise */
    int64_t day;     /* by day: days since 1970-01-01 (UTC); 0 otherwise */
    int64_t requests;
    int64_t prompt_tokens; /* sums of the rows' fields of the same names (store_usage_row) */
    int64_t cached_tokens;
    int64_t cache_write_tokens;
    int64_t cache_write_1h_tokens;
    int64_t completion_tokens;
    int64_t reasoning_tokens;
    int64_t spend_nusd;
} store_usage_stat;

typedef enum { STORE_BY_MODEL, STORE_BY_KEY, STORE_BY_DAY, STORE_BY__COUNT } store_usage_group;

typedef struct store_usage_stats_out {
    store_usage_stat overall;
    /* by[g] (malloc'd, n[g] rows) for every group g asked for, else NULL: by model and by key
     * highest spend first, by day oldest first */
    store_usage_stat *by[STORE_BY__COUNT];
    size_t n[STORE_BY__COUNT];
} store_usage_stats_out;

/* Totals over an account's usage rows that pass f (NULL = all), and the groups whose bit
 * (1u << store_usage_group) is set in groups, all from one snapshot (the groups always add up
 * to the overall row). Free with store_usage_stats_free. */
int store_usage_stats_query(store_t *s, int64_t account_id, const store_usage_filter *f,
                            unsigned groups, store_usage_stats_out *out);
void store_usage_stats_free(store_usage_stats_out *out);
/* Totals over all of an account's usage rows, and per model (ordered by spend, descending). */
int store_usage_stats(store_t *s, int64_t account_id, store_usage_stat *overall,
                      store_usage_stat **by_model, size_t *n);

typedef struct store_txn {
    int64_t id;
    int64_t amount_nusd; /* negative for usage */
    char type[16];       /* usage | payment | refund */
    char description[256];
    char request_id[40];
    int64_t created_at_ms;
    /* the account's balance right after this transaction: the sum of its transactions up to and
     * including this one */
    int64_t balance_after_nusd;
} store_txn;

/* An account's transactions, newest first, limit/offset paging; *out malloc'd. Each row's
 * balance_after comes from the same snapshot as the rows: the balance minus the rows after it,
 * so a page costs what its offset and limit cost, whatever the account's history. */
int store_transactions_list(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                            store_txn **out, size_t *n);

/* Key spend as the ledger knows it, for every key (deleted ones too): cb(ud, key_id, account_id,
 * spent). */
int store_key_spends(store_t *s,
                     void (*cb)(void *ud, int64_t key_id, int64_t account_id, int64_t spent_nusd),
                     void *ud);

/* Checks the ledger's invariants and writes one line per violation to report: every balance
 * equals the sum of its account's transactions; no negative balance; every key's spent equals
 * the sum of its usage charges; no usage transaction without its usage row. Returns the number
 * of violations (0 = consistent) or STORE_ERR. */
int store_audit(store_t *s, FILE *report);
/* How many accounts and transactions there are (what `audit` reports when all is well). */
int store_ledger_counts(store_t *s, int64_t *accounts, int64_t *transactions);

/* ---- stored responses (the Responses API's store: true; docs/DIALECTS.md) ---- */

/* One stored response. response: the response object as the client got it; history: the
 * conversation up to and including it as Responses input items (a JSON array), what a
 * previous_response_id continues from, or NULL when it was too long to keep. */
typedef struct store_response {
    const char *id;                       /* put only */
    int64_t account_id;                   /* put only */
    int64_t key_id;                       /* put only */
    const char *model;                    /* put only */
    int64_t created_at_ms, expires_at_ms; /* put only */
    char *response;                       /* get: malloc'd, NUL-terminated */
    size_t response_len;
    char *history; /* get: malloc'd, NUL-terminated, or NULL */
    size_t history_len;
} store_response;

/* Saves r (an id already stored is left as it is). */
int store_response_put(store_t *s, const store_response *r);
/* The response id of account_id that has not expired at now_ms, into *out (its history only
 * when want_history); STORE_NOTFOUND for another account's id, an expired or a deleted one. */
int store_response_get(store_t *s, const char *id, int64_t account_id, int64_t now_ms,
                       int want_history, store_response *out);
void store_response_free(store_response *r);
/* STORE_NOTFOUND as store_response_get. */
int store_response_delete(store_t *s, const char *id, int64_t account_id, int64_t now_ms);
/* Deletes up to max_rows responses that expired at now_ms, oldest first. */
int store_responses_purge(store_t *s, int64_t now_ms, int64_t max_rows, int64_t *deleted);

/* ---- notification settings and the webhook outbox (docs/API.md, "Notifications") ---- */

#define STORE_WEBHOOK_URL_MAX 2048

/* An account's notification settings; an account that never set any reads as all unset. */
typedef struct store_notify {
    int64_t account_id;
    int64_t threshold_nusd;              /* low-balance threshold, > 0; 0 = none */
    char url[STORE_WEBHOOK_URL_MAX + 1]; /* the webhook; "" = none */
    char secret[64];                     /* its signing secret (HMAC key); "" = none */
    int64_t updated_at_ms;               /* 0 = never set */
} store_notify;

typedef struct store_notify_patch {
    int set_threshold;
    int64_t threshold_nusd; /* 0 = none */
    int set_url;
    const char *url; /* NULL or "" = none (the secret goes with it) */
    int rotate_secret;
} store_notify_patch;

/* The account's settings (all unset when it never set any); STORE_NOTFOUND for no account. */
int store_notify_get(store_t *s, int64_t account_id, store_notify *out);
/* Applies p in one transaction and reads the result into *out. A webhook that has no secret
 * gets one (and rotate_secret makes a new one): *new_secret is then 1 and out->secret is the
 * only time the caller sees it; without a webhook there is no secret. STORE_NOTFOUND for no
 * account. */
int store_notify_update(store_t *s, int64_t account_id, const store_notify_patch *p,
                        store_notify *out, int *new_secret);
/* Calls cb for every account whose settings have both a threshold and a webhook. */
int store_notify_list(store_t *s, void (*cb)(void *ud, const store_notify *n), void *ud);

/* A notice waiting in the outbox, with its account's webhook as it is now ("" when there is none
 * any more). */
typedef struct store_webhook {
    char event_id[48];
    int64_t account_id;
    char type[32]; /* "balance.low" */
    int64_t balance_nusd;
    int64_t threshold_nusd;
    int64_t created_at_ms;
    int64_t attempts; /* deliveries tried so far */
    int64_t next_attempt_ms;
    char url[STORE_WEBHOOK_URL_MAX + 1];
    char secret[64];
} store_webhook;

/* Up to max notices due at now_ms (next_attempt_ms <= now_ms), oldest due first, into out[]. */
int store_webhooks_due(store_t *s, int64_t now_ms, size_t max, store_webhook *out, size_t *n);
/* When the next notice is due; STORE_NOTFOUND when the outbox is empty. */
int store_webhook_next(store_t *s, int64_t *next_ms);
/* Takes a notice out of the outbox (delivered, or given up). */
int store_webhook_done(store_t *s, const char *event_id);
/* Records a failed delivery: attempts so far, and when to try again. */
int store_webhook_retry(store_t *s, const char *event_id, int64_t attempts, int64_t next_ms);

/* ---- moving a store between backends (docs/OPERATIONS.md) ---- */

/* Writes every row of every table to out as JSON lines: a header line {"format":
 * "modelswitch-export","version":1,"schema":N,"backend":...}, then per table a line
 * {"table":NAME,"columns":[...]} and one {"t":NAME,"r":[values]} per row (integers as JSON
 * integers, a key hash as hex), and a last line {"end":true,"rows":N}. Secrets stored in the
 * clear (webhook signing secrets) are in it: keep the file as private as the database. */
int store_export(store_t *s, FILE *out);
/* Reads an export into this store, which must be empty (STORE_LIMIT otherwise) and at the same
 * schema version, in one transaction: all of it or nothing. *rows (may be NULL) = rows read. */
int store_import(store_t *s, FILE *in, int64_t *rows);

/* Runs one read-only SQL statement (`modelswitch sql`: the operator's view of the store, whose
 * usage rows SQLite keeps in blocks only the store can read) and writes its rows to out as
 * `sqlite3 -json` does: a JSON array of one object per row, column name to value (integers and
 * reals as numbers, a BLOB as hex), nothing for no rows. A statement that would write is refused
 * (STORE_LIMIT, before it runs), as is more than one statement. */
int store_query(store_t *s, const char *sql, FILE *out);

#endif
