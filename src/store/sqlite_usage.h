/*
 * The SQLite store's usage ledger kept in blocks: the rows of one account written by one ledger
 * chunk, encoded into one BLOB of one `usage_blocks` row (migration 10), and the `usage` table
 * every reader knows, as a virtual table that decodes them (sqlite_usage.c says why).
 *
 * store/sqlite.c writes blocks (squ_enc_*) and registers the table on each of its connections;
 * the tests register it on theirs to read a store file with plain SQL, and `modelswitch sql`
 * does so for operators.
 */
#ifndef MS_STORE_SQLITE_USAGE_H
#define MS_STORE_SQLITE_USAGE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* The virtual table's name: the name the usage table had, so every query of it reads the same. */
#define SQU_NAME "usage"
/* Its columns, the old table's, in its order. */
#define SQU_COLS                                                                                   \
    "id, request_id, account_id, key_id, model, provider, prompt_tokens, completion_tokens, "      \
    "charged_nusd, status, estimated, latency_ms, created_at_ms, cached_tokens, "                  \
    "cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, cached"
#define SQU_NCOLS 18

/* Rows in one block at most (the ledger writes a chunk of at most 1024 events). */
#define SQU_ROWS_MAX 1024
/* A text field's bytes at most (store.h's request id, model and provider fit). */
#define SQU_TEXT_MAX 255
/* A row's encoding at most: 15 numbers of up to 10 bytes (an account, in a block of several) and
 * 3 texts with a length byte. */
#define SQU_ROW_MAX (15 * 10 + 3 * (1 + SQU_TEXT_MAX) + 1)
/* A block's encoding at most. */
#define SQU_BLOCK_MAX ((size_t)SQU_ROWS_MAX * SQU_ROW_MAX)

/* One usage row. The texts point at their bytes (not terminated): into the caller's memory for
 * the encoder, into the block for the decoder. */
typedef struct squ_row {
    int64_t id, account_id, key_id, prompt, completion, charged, status, estimated, latency,
        created, cached_tokens, cache_write, cache_write_1h, reasoning, cached;
    const char *request_id, *model, *provider;
    size_t request_id_len, model_len, provider_len;
} squ_row;

/* A block being written: the rows of one account, ids ascending; or, started with squ_enc_mixed,
 * the rows of several (usage_recent's: a row names its account when it is not the row before's,
 * and the block's account_id is its first row's). */
typedef struct squ_enc {
    unsigned char *buf; /* SQU_BLOCK_MAX bytes, the caller's */
    size_t len;
    size_t n;
    int64_t account_id, first_id, last_id, min_created, max_created;
    size_t model_off, provider_off; /* where the row before's texts are in buf (0: none) */
    int mixed;                      /* rows of several accounts allowed */
    int64_t last_account;           /* the row before's account */
} squ_enc;

/* Starts a block in buf (SQU_BLOCK_MAX bytes), whose rows' created_at_ms are all >= min_created
 * (the encoding is relative to it). */
void squ_enc_start(squ_enc *e, unsigned char *buf, int64_t min_created);
/* Lets the block started hold rows of several accounts (usage_recent's). */
void squ_enc_mixed(squ_enc *e);
/* Appends r (same account as the block's other rows unless mixed, id above theirs, created >= the
 * start's min_created, texts of at most SQU_TEXT_MAX bytes). 0, or -1 when the block is full or r
 * breaks one of those rules (nothing is written then). r's texts must stay valid until the next
 * row is appended or the block is stored. */
int squ_enc_add(squ_enc *e, const squ_row *r);

/* Reads a block's rows in order. */
typedef struct squ_dec {
    const unsigned char *p, *end;
    int64_t prev_id, min_created;
    size_t left;
    squ_row prev;
    int have_prev;
} squ_dec;

/* Starts reading a block: its account, first id, row count, min_created and bytes, as the
 * usage_blocks row holds them (a row of a mixed block may name another account). */
void squ_dec_start(squ_dec *d, int64_t account_id, int64_t first_id, int64_t n, int64_t min_created,
                   const void *rows, size_t len);
/* 1 with the next row in *r, 0 at the end, -1 when the block is damaged. */
int squ_dec_next(squ_dec *d, squ_row *r);

/* Registers the `usage` table on db (an eponymous virtual table over usage_blocks and
 * usage_recent: reads, and INSERTs of single rows into usage_blocks for import). Returns
 * SQLite's result code. */
int squ_register(sqlite3 *db);

/* Stores a finished block (at least one row) with stmt, a prepared SQU_BLOCK_INSERT. Returns
 * SQLite's result code. */
#define SQU_BLOCK_COLS "id, account_id, first_id, n, min_created_ms, max_created_ms, rows"
#define SQU_BLOCK_INSERT "INSERT INTO usage_blocks(" SQU_BLOCK_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?)"
/* A ledger commit of many accounts writes their small groups of rows into usage_recent as one
 * mixed block a chunk (migration 11, of the same columns; its index dropped by migration 12), which
 * a later commit moves into usage_blocks, a block an account (store/sqlite.c, store_recent_fold).
 */
#define SQU_RECENT_INSERT                                                                          \
    "INSERT INTO usage_recent(" SQU_BLOCK_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?)"
int squ_block_store(sqlite3_stmt *st, const squ_enc *e);

#endif
