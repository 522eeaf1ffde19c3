/*
 * The ledger's usage rows as a SQLite table-valued function, ms_usage_rows(?1): a batch of
 * events read in place by one INSERT ... SELECT instead of bound value by value (sqlite_rows.c
 * says why), and the same rows bound one at a time for a single-row INSERT. store/sqlite.c
 * registers it on every connection and is its only user.
 */
#ifndef MS_STORE_SQLITE_ROWS_H
#define MS_STORE_SQLITE_ROWS_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* The function's name, and the type its pointer argument is bound with (sqlite3_bind_pointer):
 * a pointer bound with another type, or a value that is not a bound pointer, reads as no rows. */
#define SQR_NAME "ms_usage_rows"
#define SQR_PTR_TYPE "ms_usage_rows"

/* Its columns, in this order, are the usage table's columns of the same names (sqlite.c's
 * USAGE_INSERT_COLS): row i is ev[i] with created_at_ms at[i] and id id0 + i. */
#define SQR_COLS                                                                                   \
    "request_id, account_id, key_id, model, provider, prompt_tokens, completion_tokens, "          \
    "charged_nusd, status, estimated, latency_ms, created_at_ms, cached_tokens, "                  \
    "cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cached, id"
#define SQR_NCOLS 18

/* What the pointer argument points to; it must outlive the statement's step. */
typedef struct sqr_batch {
    const store_usage_event *ev;
    const int64_t *at;
    int64_t id0;
    size_t n;
} sqr_batch;

/* Binds row i of b as parameters 1..SQR_NCOLS of st, in SQR_COLS's order (a single-row INSERT's
 * values: the same mapping of an event onto a usage row as the function's). Returns SQLite's
 * result code. */
int sqr_bind(sqlite3_stmt *st, const sqr_batch *b, size_t i);

/* Registers the function on db (an eponymous virtual table, usable only from top-level SQL, not
 * from a view, trigger or schema). Returns SQLite's result code. */
int sqr_register(sqlite3 *db);

#endif
