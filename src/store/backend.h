/*
 * The store's backends (private to src/store/): store.h's operations as a table of function
 * pointers, one table per database. store_open picks the table from the config (store.sqlite:
 * sqlite.c, store.postgres: postgres.c) and every public call in store.c goes through it, so the
 * rest of the gateway never knows which database it talks to.
 *
 * Each backend's handle starts with `struct store` (the table and the error message) and keeps
 * its own state after it. Operations that exist only for one database (SQLite's WAL
 * checkpointer) are NULL in the other table; store.c then does what makes sense without them.
 */
#ifndef MS_STORE_BACKEND_H
#define MS_STORE_BACKEND_H

#include "store/store.h"

/* The column kinds of an exported table (export/import, store.c): a blob travels as hex. */
/* A value's kind: the export's columns are the first three; a query's value may be any. */
typedef enum { STORE_COL_INT, STORE_COL_TEXT, STORE_COL_BLOB, STORE_COL_REAL } store_col_kind;

typedef struct store_table {
    const char *name;
    const char *const *cols;
    const store_col_kind *kinds;
    size_t ncols;
    const char *order; /* ORDER BY of the export */
} store_table;

/* One exported value: NULL, an integer, or text (a blob's hex for STORE_COL_BLOB). */
typedef struct store_value {
    int null;
    int64_t i;
    const char *s;
    size_t len;
} store_value;

typedef struct store_ops {
    const char *name;
    void (*close)(store_t *s);
    int (*schema_version)(store_t *s, int64_t *version);

    int (*account_create)(store_t *s, const char *name, int64_t balance_nusd, int64_t *id_out);
    int (*account_get)(store_t *s, int64_t id, store_account *out);
    int (*account_show)(store_t *s, int64_t id, store_account *out);
    int (*account_list)(store_t *s, store_account **out, size_t *n);
    int (*account_topup)(store_t *s, int64_t id, int64_t amount_nusd, const char *description);

    int (*key_create)(store_t *s, int64_t account_id, key_type type, const char *name,
                      int64_t expires_at_ms, int64_t spend_limit_nusd, char key_out[64],
                      store_key *out);
    int (*key_get)(store_t *s, int64_t id, store_key *out);
    int (*key_list)(store_t *s, int64_t account_id, key_type type, store_key **out, size_t *n);
    int (*key_set_active)(store_t *s, int64_t id, int active);
    int (*key_delete)(store_t *s, int64_t id);
    int (*key_update)(store_t *s, int64_t id, const store_key_patch *p, store_key *out);
    int (*keys_since)(store_t *s, int64_t since, void (*cb)(void *ud, const store_key *k), void *ud,
                      int64_t *max_seq);
    int (*accounts_since)(store_t *s, int64_t since, void (*cb)(void *ud, const store_account *a),
                          void *ud, int64_t *max_seq);
    int (*key_spends)(store_t *s,
                      void (*cb)(void *ud, int64_t key_id, int64_t account_id, int64_t spent_nusd),
                      void *ud);

    /* first: no event was offered to a store before (store_ledger_commit_new) */
    int (*ledger_commit)(store_t *s, const store_usage_event *ev, size_t n, int first);
    int (*ledger_writer)(store_t *s);        /* NULL: nothing to set up */
    int (*ledger_defer)(store_t *s, int on); /* NULL: charges are always posted at once */
    int (*ledger_post)(store_t *s);          /* NULL: nothing is ever left to post */
    int (*usage_query)(store_t *s, int64_t account_id, const store_usage_filter *f, int64_t limit,
                       int64_t offset, store_usage_row **out, size_t *n);
    int (*usage_stats_query)(store_t *s, int64_t account_id, const store_usage_filter *f,
                             unsigned groups, store_usage_stats_out *out);
    int (*transactions_list)(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                             store_txn **out, size_t *n);
    int (*audit)(store_t *s, FILE *report);
    int (*ledger_counts)(store_t *s, int64_t *accounts, int64_t *transactions);

    int (*response_put)(store_t *s, const store_response *r);
    int (*response_get)(store_t *s, const char *id, int64_t account_id, int64_t now_ms,
                        int want_history, store_response *out);
    int (*response_delete)(store_t *s, const char *id, int64_t account_id, int64_t now_ms);
    int (*responses_purge)(store_t *s, int64_t now_ms, int64_t max_rows, int64_t *deleted);

    int (*notify_get)(store_t *s, int64_t account_id, store_notify *out);
    int (*notify_update)(store_t *s, int64_t account_id, const store_notify_patch *p,
                         store_notify *out, int *new_secret);
    int (*notify_list)(store_t *s, void (*cb)(void *ud, const store_notify *n), void *ud);
    int (*webhooks_due)(store_t *s, int64_t now_ms, size_t max, store_webhook *out, size_t *n);
    int (*webhook_next)(store_t *s, int64_t *next_ms);
    int (*webhook_done)(store_t *s, const char *event_id);
    int (*webhook_retry)(store_t *s, const char *event_id, int64_t attempts, int64_t next_ms);

    /* export/import (store.c): every row of t in t->order, one cb per row (values[ncols]);
     * a non-zero cb return stops the read and is returned */
    int (*dump)(store_t *s, const store_table *t, int (*cb)(void *ud, const store_value *values),
                void *ud);
    /* one transaction around an import: begin also checks the store is empty (STORE_LIMIT with
     * a message when it is not); end commits (ok) or rolls back */
    int (*import_begin)(store_t *s);
    int (*import_row)(store_t *s, const store_table *t, const store_value *values);
    int (*import_end)(store_t *s, int ok);
    /* store_query: one read-only statement in a read-only transaction, cb(ud, ncols, names,
     * kinds, values) per row (a REAL's or BLOB's value as text: its digits, its hex); a
     * non-zero cb return stops the read and is returned */
    int (*query)(store_t *s, const char *sql,
                 int (*cb)(void *ud, size_t ncols, const char *const *names,
                           const store_col_kind *kinds, const store_value *v),
                 void *ud);

    /* SQLite only (NULL elsewhere): the WAL checkpointer of store.h */
    void *(*ckpt_start)(const cfg_t *cfg, store_t *writer, char *err, size_t errlen);
    void (*ckpt_stop)(void *c);
    uint64_t (*ckpt_count)(void *c);
} store_ops;

struct store {
    const store_ops *ops;
    char err[512];
};

extern const store_ops store_sqlite_ops;
extern const store_ops store_pg_ops;

store_t *store_sqlite_open(const cfg_t *cfg, char *err, size_t errlen);
store_t *store_pg_open(const cfg_t *cfg, char *err, size_t errlen);

/* The tables export and import move, in an order that satisfies their foreign keys. */
extern const store_table store_tables[];
extern const size_t store_ntables;

/* printf into s->err; returns STORE_ERR */
int store_seterr(store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* url with any password replaced by "***" (user:pass@ and password=...), for messages. */
void store_redact_url(const char *url, char *out, size_t outlen);

/* The PostgreSQL serving lock (postgres.c): a connection holding a session advisory lock, or
 * NULL with err when another serve holds it or the database cannot be reached. */
void *store_pg_serve_lock(const cfg_t *cfg, char *err, size_t errlen);
void store_pg_serve_unlock(void *h);

#endif
