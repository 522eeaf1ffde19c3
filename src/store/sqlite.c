/*
 * store.h over SQLite: the default backend, one database file shared by the gateway and the CLI.
 *
 * Every process and thread that needs the store opens its own connection (store_open). The
 * database runs in WAL mode so readers (the key-cache refresher) never wait for the writer, and
 * every multi-row change runs in one BEGIN IMMEDIATE transaction so the invariants hold at every
 * commit: an account's balance equals the sum of its transactions, and every key change carries a
 * fresh value of the store-wide change sequence (meta.key_seq).
 *
 * The sequence matters for the key cache: SQLite has a single writer, so changes commit in
 * key_seq order, and a reader that has seen sequence N will never later find a commit below N.
 * sq_keys_since(N) therefore never misses a change.
 *
 * Schema changes are migrations: store_migrations[] below is append-only; entry i is schema
 * version i + 1 and is applied once, in its own transaction, recorded in schema_migrations.
 * Tables are STRICT so that a value of the wrong type (a float where nano-dollars belong) is an
 * error rather than silently stored.
 */
#include "store/backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <sqlite3.h>

#include "auth/keys.h"
#include "common/bgprio.h"
#include "common/util.h"
#include "store/sqlite_usage.h"
#include "store/sqlite_wal.h"

/* Longest accepted name (the structs hold 128 bytes) and transaction description. */
#define STORE_NAME_MAX 127
#define STORE_DESC_MAX 1024

/* ---- schema ---- */

/* The description of a usage transaction, from its usage row: "<model> <prompt>+<completion>
 * tokens" (store_usage_desc wrote the same text into the transactions table before migration 9). */
#define USAGE_TX_DESC "model || ' ' || prompt_tokens || '+' || completion_tokens || ' tokens'"
/* Usage rows with a greater id are their own usage transaction (migration 9). */
#define USAGE_TX_AFTER "(SELECT value FROM meta WHERE key = 'usage_tx_after')"
/* The next id of the ledger's shared id space: above every usage row and transaction. Each
 * max() is one seek to the end of its b-tree. */
#define LEDGER_NEXT_ID                                                                             \
    "(SELECT max(coalesce((SELECT max(id) FROM usage_blocks), 0), "                                \
    "coalesce((SELECT max(id) FROM usage_recent), 0), "                                            \
    "coalesce((SELECT max(id) FROM transactions), 0), " USAGE_TX_AFTER ") + 1)"

/* The ledger's posting mark (migration 13): every usage row up to it is in its account's balance
 * and its key's spend, no row past it is. A ledger handle that defers (store_ledger_defer) commits
 * rows past it and posts them in bulk later; any other commit posts at once. A commit that posts
 * at once leaves SQ_ALL_POSTED, which stays true however many rows come after it, so its
 * successors read the mark and write nothing; a deferring commit that meets it puts the id
 * before its rows in its place. */
#define SQ_ALL_POSTED INT64_MAX
#define POSTED "(SELECT value FROM meta WHERE key = 'posted_through')"
/* The charges of the usage rows matching `where` that are past the mark: what a balance read
 * subtracts and a spend read adds, so that every reader sees every committed charge whether it is
 * posted or not. The newest usage id is looked up first (two index ends, once a statement), so a
 * store with nothing unposted never reads a usage row for it. */
#define UNPOSTED(where)                                                                            \
    "(CASE WHEN max(coalesce((SELECT max(id) FROM usage_blocks), 0), "                             \
    "coalesce((SELECT max(id) FROM usage_recent), 0)) > " POSTED " THEN (SELECT "                  \
    "coalesce(sum(charged_nusd), 0) FROM usage WHERE " where " AND id > " POSTED ") ELSE 0 END)"

/* The columns of a table of usage blocks (sqlite_usage.c): usage_blocks (migration 10) and the
 * newest ones' usage_recent (migration 11). */
#define USAGE_BLOCK_TABLE                                                                          \
    " (id INTEGER PRIMARY KEY,"                                                                    \
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"                                       \
    "  first_id INTEGER NOT NULL,"                                                                 \
    "  n INTEGER NOT NULL CHECK (n BETWEEN 1 AND 1024),"                                           \
    "  min_created_ms INTEGER NOT NULL,"                                                           \
    "  max_created_ms INTEGER NOT NULL,"                                                           \
    "  rows BLOB NOT NULL"                                                                         \
    ") STRICT;"

static const char *const store_migrations[] = {
    /* 1: accounts, keys, the ledger and the key change sequence. */
    "CREATE TABLE accounts ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  balance_nusd INTEGER NOT NULL DEFAULT 0 CHECK (balance_nusd >= 0),"
    "  created_at_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE api_keys ("
    "  id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  type INTEGER NOT NULL CHECK (type IN (0, 1)),"
    "  name TEXT NOT NULL DEFAULT '',"
    "  prefix TEXT NOT NULL,"
    "  hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),"
    "  active INTEGER NOT NULL DEFAULT 1,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  created_at_ms INTEGER NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL DEFAULT 0,"
    "  spend_limit_nusd INTEGER NOT NULL DEFAULT -1,"
    "  spent_nusd INTEGER NOT NULL DEFAULT 0,"
    "  rpm INTEGER NOT NULL DEFAULT -1,"
    "  tpm INTEGER NOT NULL DEFAULT -1,"
    "  seq INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX api_keys_seq ON api_keys(seq);"
    "CREATE INDEX api_keys_account ON api_keys(account_id, id);"
    "CREATE TABLE transactions ("
    "  id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  amount_nusd INTEGER NOT NULL,"
    "  type TEXT NOT NULL CHECK (type IN ('usage', 'payment', 'refund')),"
    "  description TEXT,"
    "  request_id TEXT,"
    "  created_at_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX transactions_account ON transactions(account_id, id);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;"
    "INSERT INTO meta(key, value) VALUES ('key_seq', 0);",

    /* 2: the usage ledger and the account change sequence. Existing accounts are numbered by id
     * (gaps are harmless: readers only need every later change to carry a higher value). The
     * usage row is what makes a retried batch harmless: request_id is unique, and an event whose
     * row already exists is skipped whole. */
    "ALTER TABLE accounts ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;"
    "UPDATE accounts SET seq = id;"
    "CREATE INDEX accounts_seq ON accounts(seq);"
    "INSERT INTO meta(key, value) VALUES ('account_seq', (SELECT coalesce(max(id), 0) FROM "
    "accounts));"
    "CREATE TABLE usage ("
    "  id INTEGER PRIMARY KEY,"
    "  request_id TEXT NOT NULL UNIQUE CHECK (length(request_id) > 0),"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  key_id INTEGER NOT NULL REFERENCES api_keys(id),"
    "  model TEXT NOT NULL,"
    "  provider TEXT NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),"
    "  completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),"
    "  charged_nusd INTEGER NOT NULL CHECK (charged_nusd >= 0),"
    "  status INTEGER NOT NULL,"
    "  estimated INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms INTEGER NOT NULL,"
    "  created_at_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX usage_account ON usage(account_id, id);"
    /* Only usage transactions carry a request id; the audit joins usage rows to them. */
    "CREATE INDEX transactions_request ON transactions(request_id) WHERE request_id IS NOT NULL;",

    /* 3: the transaction type's CHECK as comparisons. SQLite evaluates `IN` over three or more
     * constants by building a temporary b-tree for every row written (about 50,000 instructions
     * of each usage transaction, half the ledger's cost); a CHECK cannot be altered, so the
     * table is rebuilt with the same columns, rows, ids and indexes. */
    "CREATE TABLE transactions_v3 ("
    "  id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  amount_nusd INTEGER NOT NULL,"
    "  type TEXT NOT NULL CHECK (type = 'usage' OR type = 'payment' OR type = 'refund'),"
    "  description TEXT,"
    "  request_id TEXT,"
    "  created_at_ms INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO transactions_v3(id, account_id, amount_nusd, type, description, request_id, "
    "  created_at_ms) SELECT id, account_id, amount_nusd, type, description, request_id, "
    "  created_at_ms FROM transactions ORDER BY id;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v3 RENAME TO transactions;"
    "CREATE INDEX transactions_account ON transactions(account_id, id);"
    "CREATE INDEX transactions_request ON transactions(request_id) WHERE request_id IS NOT NULL;",

    /* 4: the parts of a request's usage (common/usage.h). prompt_tokens stays every prompt
     * token (OpenAI's prompt_tokens: input + cached + both cache writes) and completion_tokens
     * every output token, reasoning included; the new columns say how many of them were of
     * each kind. So a row written before is exact with zeros: it was all plain input. */
    "ALTER TABLE usage ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0 "
    "  CHECK (cached_tokens >= 0);"
    "ALTER TABLE usage ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0 "
    "  CHECK (cache_write_tokens >= 0);"
    "ALTER TABLE usage ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0 "
    "  CHECK (cache_write_1h_tokens >= 0);"
    "ALTER TABLE usage ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0 "
    "  CHECK (reasoning_tokens >= 0);",

    /* 5: stored Responses API responses (store: true): the response object as the client got it,
     * and the conversation up to and including it as input items, what previous_response_id
     * continues from (NULL when it was too long to keep). Rows past expires_at_ms are never
     * read, and are deleted a batch at a time by later writes. */
    "CREATE TABLE responses ("
    "  id TEXT PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  key_id INTEGER NOT NULL,"
    "  model TEXT NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL,"
    "  response TEXT NOT NULL,"
    "  history TEXT"
    ") STRICT;"
    "CREATE INDEX responses_expiry ON responses(expires_at_ms);",

    /* 6: an account's notification settings (a low-balance threshold and the webhook told when
     * the balance falls below it) and the webhook outbox. Whether a notice is owed is not a
     * column: it follows from the balance and the threshold (docs/BILLING.md, "Low-balance
     * notices"). A notice is written by the ledger batch whose charge crossed the threshold, so
     * it exists exactly when that charge does, and leaves the outbox once delivered or given
     * up. Its event id comes from the request id, unique like it. */
    "CREATE TABLE notification_settings ("
    "  account_id INTEGER PRIMARY KEY REFERENCES accounts(id),"
    "  low_balance_threshold_nusd INTEGER NOT NULL DEFAULT 0 "
    "    CHECK (low_balance_threshold_nusd >= 0),"
    "  webhook_url TEXT CHECK (webhook_url IS NULL OR length(webhook_url) BETWEEN 1 AND 2048),"
    "  webhook_secret TEXT CHECK ((webhook_secret IS NULL) = (webhook_url IS NULL)),"
    "  updated_at_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE webhook_outbox ("
    "  event_id TEXT PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  type TEXT NOT NULL,"
    "  balance_nusd INTEGER NOT NULL,"
    "  threshold_nusd INTEGER NOT NULL,"
    "  created_at_ms INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_ms INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_ms);",

    /* 7: a usage row answered from the gateway's response cache (docs/BILLING.md, "Cache
     * hits"): charged 0, its status the HTTP status the client got, its tokens the original
     * answer's. */
    "ALTER TABLE usage ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;",

    /* 8: no index of transactions by request id. Only the audit looked usage transactions up
     * that way, and it now joins them in one pass; the index cost the ledger a b-tree insert
     * per request (docs/PERFORMANCE.md, round 5). */
    "DROP INDEX IF EXISTS transactions_request;",

    /* 9: a charged usage row is its own usage transaction (docs/BILLING.md, "The ledger"). The
     * ledger wrote each twice, the same facts in two tables, a third of its cost per request;
     * rows written before stay as they are: usage rows up to usage_tx_after have their
     * transaction in the transactions table, later ones stand for it. From here on the two
     * tables share one id space (LEDGER_NEXT_ID), so an account's transactions merge by id in
     * commit order as before. ledger_transactions is every transaction, for sums and for SQL
     * by hand; the listing merges the two tables itself (SQLite sorts a view's rows again). */
    "INSERT INTO meta(key, value) VALUES ('usage_tx_after', max("
    "  coalesce((SELECT max(id) FROM usage), 0), coalesce((SELECT max(id) FROM transactions), 0)));"
    "CREATE VIEW ledger_transactions AS "
    "SELECT id, account_id, amount_nusd, type, description, request_id, created_at_ms "
    "FROM transactions UNION ALL SELECT id, account_id, -charged_nusd, 'usage', " USAGE_TX_DESC
    ", request_id, created_at_ms FROM usage WHERE charged_nusd > 0 AND id > " USAGE_TX_AFTER ";",

    /* 10: usage rows in blocks (sqlite_usage.c): the rows of one account that one ledger chunk
     * writes, in one BLOB of one usage_blocks row whose id is its last row's. `usage` is from
     * here on a virtual table over them with the old table's columns, so nothing that reads it
     * changes. The existing rows move over as they are, a block each (a row's id, and so its
     * place in the listings, stays); request ids stay unique by the ledger's check instead of
     * an index. The view is made again around the move: renaming the table would rename it in
     * the view. */
    "CREATE TABLE usage_blocks" USAGE_BLOCK_TABLE
    "CREATE INDEX usage_blocks_account ON usage_blocks(account_id, id);"
    "CREATE INDEX usage_blocks_time ON usage_blocks(account_id, max_created_ms);"
    "DROP VIEW ledger_transactions;"
    "ALTER TABLE usage RENAME TO usage_v9;"
    "INSERT INTO usage(" SQU_COLS ") SELECT " SQU_COLS " FROM usage_v9 ORDER BY id;"
    "DROP TABLE usage_v9;"
    "CREATE VIEW ledger_transactions AS "
    "SELECT id, account_id, amount_nusd, type, description, request_id, created_at_ms "
    "FROM transactions UNION ALL SELECT id, account_id, -charged_nusd, 'usage', " USAGE_TX_DESC
    ", request_id, created_at_ms FROM usage WHERE charged_nusd > 0 AND id > " USAGE_TX_AFTER ";",
    /* 11: the ledger's newest blocks (store_recent_fold): a commit writes its small blocks
     * here, where the only index is small, and every STORE_RECENT_MAX blocks one transaction
     * moves them into usage_blocks. With many accounts in a commit, usage_blocks' two indexes
     * took two leaf pages an account a commit (~560 WAL pages a commit with 256 accounts); moved
     * in bulk, an account's entries share their leaf once a move (docs/PERFORMANCE.md, round
     * 22; since migration 12 a move writes a block an account). Blocks of many rows go to
     * usage_blocks at once: readers merge the two tables in id order. */
    "CREATE TABLE usage_recent" USAGE_BLOCK_TABLE
    "CREATE INDEX usage_recent_account ON usage_recent(account_id, id);",
    /* 12: a commit of many accounts writes one block a chunk into usage_recent, its rows of
     * several accounts (a row names its account when it is not the row before's; the block's
     * account_id is its first row's): one insert a commit instead of one an account, so the index
     * by account would only cost (docs/PERFORMANCE.md, round 23). Readers read usage_recent
     * whole, a few thousand rows at most; a move sorts them by account. */
    "DROP INDEX usage_recent_account;",
    /* 13: usage rows past posted_through are not yet in their account's balance and key's spend
     * (the ledger posts them later: sq_ledger_post); every read of a balance or spend adds them
     * (UNPOSTED). Rows written before this migration are all in. */
    "INSERT OR REPLACE INTO meta(key, value) VALUES ('posted_through', " LEDGER_NEXT_ID " - 1);",
};

#define STORE_NMIGRATIONS ((int64_t)(sizeof(store_migrations) / sizeof(store_migrations[0])))

/* ---- cached statements ---- */

#define KEY_UNPOSTED UNPOSTED("account_id = api_keys.account_id AND key_id = api_keys.id")
#define KEY_COLS                                                                                   \
    "id, account_id, type, name, prefix, hash, active, deleted, created_at_ms, expires_at_ms, "    \
    "spend_limit_nusd, spent_nusd + " KEY_UNPOSTED ", rpm, tpm, seq"
#define ACCOUNT_UNPOSTED UNPOSTED("account_id = accounts.id")
#define ACCOUNT_COLS "id, name, balance_nusd - " ACCOUNT_UNPOSTED ", created_at_ms, seq"
/* Statements of many rows take the charges past the mark grouped once (a correlated UNPOSTED
 * would read the rows past the mark again for every row: seconds for a list of 10,000 accounts
 * under load). Joined as `p` to accounts `a` or keys `k`. SQLite reads the group the first time
 * the join reaches it, so a statement that finds no row reads no usage row either. */
#define UNPOSTED_BY(col)                                                                           \
    "(SELECT " col " AS pid, sum(charged_nusd) AS ps FROM usage WHERE id > " POSTED                \
    " GROUP BY " col ")"
#define JOIN_ACCOUNT_UNPOSTED " LEFT JOIN " UNPOSTED_BY("account_id") " p ON p.pid = a.id"
#define JOIN_KEY_UNPOSTED " LEFT JOIN " UNPOSTED_BY("key_id") " p ON p.pid = k.id"
#define FROM_ACCOUNTS_JOINED " FROM accounts a" JOIN_ACCOUNT_UNPOSTED
#define FROM_KEYS_JOINED " FROM api_keys k" JOIN_KEY_UNPOSTED
#define ACCOUNT_COLS_JOINED                                                                        \
    "a.id, a.name, a.balance_nusd - coalesce(p.ps, 0), a.created_at_ms, a.seq"
#define KEY_COLS_JOINED                                                                            \
    "k.id, k.account_id, k.type, k.name, k.prefix, k.hash, k.active, k.deleted, k.created_at_ms, " \
    "k.expires_at_ms, k.spend_limit_nusd, k.spent_nusd + coalesce(p.ps, 0), k.rpm, k.tpm, k.seq"
/* The operator's view: ACCOUNT_COLS, then the account's live proxy keys and what it spent. Both
 * are short range reads of the api_keys_account index (a few rows per account), where a sum over
 * the usage table would read every request the account ever made. */
#define ACCOUNT_SHOW_COLS                                                                          \
    ACCOUNT_COLS ", (SELECT count(*) FROM api_keys k WHERE k.account_id = accounts.id AND "        \
                 "k.type = 0 AND k.deleted = 0), (SELECT coalesce(sum(k.spent_nusd), 0) FROM "     \
                 "api_keys k WHERE k.account_id = accounts.id) + " ACCOUNT_UNPOSTED
#define NOTIFY_COLS                                                                                \
    "account_id, low_balance_threshold_nusd, webhook_url, webhook_secret, updated_at_ms"
#define USAGE_COLS                                                                                 \
    "id, request_id, key_id, model, provider, prompt_tokens, completion_tokens, charged_nusd, "    \
    "status, estimated, latency_ms, created_at_ms, cached_tokens, cache_write_tokens, "            \
    "cache_write_1h_tokens, reasoning_tokens, cached"
/* The rows a usage read covers: ?1 account, ?2 model (NULL = all), ?3 key (0 = all), ?4..?5 the
 * time range, inclusive. One statement for every combination: the account's index narrows the
 * scan, and the rest are comparisons per row. */
#define USAGE_WHERE                                                                                \
    " FROM usage WHERE account_id = ?1 AND (?2 IS NULL OR model = ?2) AND "                        \
    "(?3 = 0 OR key_id = ?3) AND created_at_ms BETWEEN ?4 AND ?5"
#define USAGE_SUMS                                                                                 \
    "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(cached_tokens), 0), "                 \
    "coalesce(sum(cache_write_tokens), 0), coalesce(sum(cache_write_1h_tokens), 0), "              \
    "coalesce(sum(completion_tokens), 0), coalesce(sum(reasoning_tokens), 0), "                    \
    "coalesce(sum(charged_nusd), 0) AS spend"

enum {
    ST_BEGIN,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SEQ_NEXT,
    ST_ACCOUNT_SEQ_NEXT,
    ST_ACCOUNT_SEQ_GET,
    ST_ACCOUNT_SEQ_SET,
    ST_ACCOUNT_INSERT,
    ST_ACCOUNT_GET,
    ST_ACCOUNT_LIST,
    ST_ACCOUNT_SHOW,
    ST_ACCOUNT_ADD,
    ST_ACCOUNTS_SINCE,
    ST_TX_INSERT,
    ST_LEDGER_NEXT_ID,
    ST_KEY_INSERT,
    ST_KEY_GET,
    ST_KEY_LIST,
    ST_KEY_SET_ACTIVE,
    ST_KEY_DELETE,
    ST_KEY_UPDATE,
    ST_KEYS_SINCE,
    ST_KEY_SPENDS,
    ST_SCHEMA_VERSION,
    ST_BLOCK_INSERT,
    ST_BLOCKS_SEEN,
    ST_RECENT_INSERT,
    ST_RECENT_SEEN,
    ST_RECENT_COUNT,
    ST_RECENT_SCAN,
    ST_BLOCK_AFTER,
    ST_RECENT_CLEAR,
    ST_CHARGE_ACCOUNT,
    ST_CHARGE_KEY,
    ST_KEY_OF_ACCOUNT,
    ST_POSTED_GET,
    ST_ACCOUNT_POSTED,
    ST_POSTED_SET,
    ST_UNPOSTED_SUMS,
    ST_LAST_USAGE_ID,
    ST_USAGE_LIST,
    ST_USAGE_TOTAL,
    ST_USAGE_BY_MODEL,
    ST_USAGE_BY_KEY,
    ST_USAGE_BY_DAY,
    ST_TX_LIST,
    ST_TX_SKIPPED,
    ST_AUDIT_BALANCES,
    ST_AUDIT_NEGATIVE,
    ST_AUDIT_KEY_SPENT,
    ST_AUDIT_USAGE_TX,
    ST_AUDIT_USAGE_ROWS,
    ST_AUDIT_USAGE_DUP,
    ST_AUDIT_COUNTS,
    ST_RESPONSE_INSERT,
    ST_RESPONSE_GET,
    ST_RESPONSE_DELETE,
    ST_RESPONSE_PURGE,
    ST_NOTIFY_GET,
    ST_NOTIFY_PUT,
    ST_NOTIFY_LIST,
    ST_WEBHOOK_INSERT,
    ST_WEBHOOK_DUE,
    ST_WEBHOOK_NEXT,
    ST_WEBHOOK_DELETE,
    ST_WEBHOOK_RETRY,
    ST__COUNT
};

static const char *const store_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    /* Deferred: a read-only snapshot that never waits for, nor blocks, the writer (WAL). */
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SEQ_NEXT] = "UPDATE meta SET value = value + 1 WHERE key = 'key_seq' RETURNING value",
    [ST_ACCOUNT_SEQ_NEXT] =
        "UPDATE meta SET value = value + 1 WHERE key = 'account_seq' RETURNING value",
    /* A batch reads the counter once and writes it back once: an UPDATE ... RETURNING per event
     * cost nearly half of a batch's time (measured). */
    [ST_ACCOUNT_SEQ_GET] = "SELECT value FROM meta WHERE key = 'account_seq'",
    [ST_ACCOUNT_SEQ_SET] = "UPDATE meta SET value = ? WHERE key = 'account_seq'",
    [ST_ACCOUNT_INSERT] =
        "INSERT INTO accounts(name, balance_nusd, created_at_ms, seq) VALUES (?, ?, ?, ?)",
    [ST_ACCOUNT_GET] = "SELECT " ACCOUNT_COLS " FROM accounts WHERE id = ?",
    [ST_ACCOUNT_LIST] =
        "SELECT " ACCOUNT_COLS_JOINED ", (SELECT count(*) FROM api_keys k WHERE k.account_id = "
        "a.id AND k.type = 0 AND k.deleted = 0), (SELECT coalesce(sum(k.spent_nusd), 0) FROM "
        "api_keys k WHERE k.account_id = a.id) + coalesce(p.ps, 0)" FROM_ACCOUNTS_JOINED
        " ORDER BY a.id",
    [ST_ACCOUNT_SHOW] = "SELECT " ACCOUNT_SHOW_COLS " FROM accounts WHERE id = ?",
    [ST_ACCOUNT_ADD] = "UPDATE accounts SET balance_nusd = balance_nusd + ?, seq = ? WHERE id = ?",
    [ST_ACCOUNTS_SINCE] =
        "SELECT " ACCOUNT_COLS_JOINED FROM_ACCOUNTS_JOINED " WHERE a.seq > ? ORDER BY a.seq",
    [ST_TX_INSERT] = "INSERT INTO transactions(id, account_id, amount_nusd, type, description, "
                     "request_id, created_at_ms) VALUES (" LEDGER_NEXT_ID ", ?, ?, ?, ?, ?, ?)",
    [ST_KEY_INSERT] = "INSERT INTO api_keys(account_id, type, name, prefix, hash, active, deleted, "
                      "created_at_ms, expires_at_ms, spend_limit_nusd, spent_nusd, rpm, tpm, seq) "
                      "VALUES (?, ?, ?, ?, ?, 1, 0, ?, ?, ?, 0, -1, -1, ?)",
    [ST_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ? AND deleted = 0",
    [ST_KEY_LIST] = "SELECT " KEY_COLS_JOINED FROM_KEYS_JOINED
                    " WHERE k.account_id = ? AND k.type = ? AND k.deleted = 0 ORDER BY k.id",
    [ST_KEY_SET_ACTIVE] = "UPDATE api_keys SET active = ?, seq = ? WHERE id = ? AND deleted = 0",
    [ST_KEY_DELETE] = "UPDATE api_keys SET deleted = 1, seq = ? WHERE id = ? AND deleted = 0",
    /* One statement for every patch: each field is replaced only when its flag is bound true. */
    [ST_KEY_UPDATE] = "UPDATE api_keys SET "
                      "name = CASE WHEN ?1 THEN ?2 ELSE name END, "
                      "active = CASE WHEN ?3 THEN ?4 ELSE active END, "
                      "spend_limit_nusd = CASE WHEN ?5 THEN ?6 ELSE spend_limit_nusd END, "
                      "rpm = CASE WHEN ?7 THEN ?8 ELSE rpm END, "
                      "tpm = CASE WHEN ?9 THEN ?10 ELSE tpm END, "
                      "expires_at_ms = CASE WHEN ?11 THEN ?12 ELSE expires_at_ms END, "
                      "seq = ?13 WHERE id = ?14 AND deleted = 0",
    [ST_KEYS_SINCE] = "SELECT " KEY_COLS_JOINED FROM_KEYS_JOINED " WHERE k.seq > ? ORDER BY k.seq",
    [ST_KEY_SPENDS] = "SELECT k.id, k.account_id, k.spent_nusd + coalesce(p.ps, 0)" FROM_KEYS_JOINED
                      " ORDER BY k.id",
    [ST_SCHEMA_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
    /* a block of usage rows (sqlite_usage.c) */
    [ST_BLOCK_INSERT] = SQU_BLOCK_INSERT,
    /* the blocks that may hold an account's events of created_at_ms ?2..?3 (store_seen) */
    [ST_BLOCKS_SEEN] = "SELECT first_id, n, min_created_ms, rows, account_id FROM usage_blocks "
                       "WHERE account_id = ?1 AND max_created_ms >= ?2 AND min_created_ms <= ?3",
    [ST_RECENT_SEEN] = "SELECT first_id, n, min_created_ms, rows, account_id FROM usage_recent "
                       "WHERE max_created_ms >= ?1 AND min_created_ms <= ?2",
    /* the ledger's newest blocks, and their move into usage_blocks (migration 11) */
    [ST_RECENT_INSERT] = SQU_RECENT_INSERT,
    [ST_RECENT_COUNT] = "SELECT coalesce(sum(n), 0) FROM usage_recent",
    /* the waiting blocks in id order (store_recent_move), and the first block of an account in
     * usage_blocks that ends at or after a given id: a run of its rows must stop before */
    [ST_RECENT_SCAN] = "SELECT " SQU_BLOCK_COLS " FROM usage_recent ORDER BY id",
    [ST_BLOCK_AFTER] = "SELECT first_id FROM usage_blocks WHERE account_id = ?1 AND id >= ?2 "
                       "ORDER BY id LIMIT 1",
    [ST_RECENT_CLEAR] = "DELETE FROM usage_recent",
    [ST_CHARGE_ACCOUNT] =
        "UPDATE accounts SET balance_nusd = balance_nusd - ?1, seq = ?2 WHERE id = ?3",
    /* The key must belong to the charged account, and its total must stay an exact integer
     * (SQLite would turn an overflowing sum into a float). Spend changes do not take a key_seq
     * value: the billing module tracks spend, and a bump would make every key cache reload the
     * charged keys after every batch. */
    [ST_CHARGE_KEY] = "UPDATE api_keys SET spent_nusd = spent_nusd + ?1 "
                      "WHERE id = ?2 AND account_id = ?3 AND spent_nusd <= ?4 - ?1",
    /* the ledger's check of a key that only free events named (store_check_free_keys) */
    [ST_KEY_OF_ACCOUNT] = "SELECT 1 FROM api_keys WHERE id = ?1 AND account_id = ?2",
    [ST_POSTED_GET] = "SELECT " POSTED,
    [ST_ACCOUNT_POSTED] = "SELECT balance_nusd FROM accounts WHERE id = ?1",
    [ST_POSTED_SET] = "UPDATE meta SET value = ?1 WHERE key = 'posted_through'",
    /* the charges of rows (?1, ?2] by account and key, accounts in id order (sq_ledger_post):
     * the rows are read from the id bound on (sqlite_usage.c), the blocks past the mark */
    [ST_UNPOSTED_SUMS] = "SELECT account_id, key_id, sum(charged_nusd) FROM usage "
                         "WHERE id > ?1 AND id <= ?2 AND charged_nusd > 0 "
                         "GROUP BY account_id, key_id ORDER BY account_id, key_id",
    [ST_LAST_USAGE_ID] = "SELECT max(coalesce((SELECT max(id) FROM usage_blocks), 0), "
                         "coalesce((SELECT max(id) FROM usage_recent), 0))",
    [ST_USAGE_LIST] = "SELECT " USAGE_COLS USAGE_WHERE " ORDER BY id DESC LIMIT ?6 OFFSET ?7",
    /* The statistics: the group's value first (a constant for the overall row), then
     * USAGE_SUMS, as read_stat_row reads them. */
    [ST_USAGE_TOTAL] = "SELECT NULL, " USAGE_SUMS USAGE_WHERE,
    [ST_USAGE_BY_MODEL] =
        "SELECT model, " USAGE_SUMS USAGE_WHERE " GROUP BY model ORDER BY spend DESC, model",
    [ST_USAGE_BY_KEY] =
        "SELECT key_id, " USAGE_SUMS USAGE_WHERE " GROUP BY key_id ORDER BY spend DESC, key_id",
    /* created_at_ms is never negative (store_ledger_rows), so the division floors */
    [ST_USAGE_BY_DAY] = "SELECT created_at_ms / 86400000 AS day, " USAGE_SUMS USAGE_WHERE
                        " GROUP BY day ORDER BY day",
    /* An account's transactions and its charged usage rows since migration 9, merged by id
     * (SQLite walks both indexes backwards together: no sort). */
    [ST_TX_LIST] = "SELECT id, amount_nusd, type, description, request_id, created_at_ms "
                   "FROM transactions WHERE account_id = ?1 UNION ALL "
                   "SELECT id, -charged_nusd, 'usage', " USAGE_TX_DESC ", request_id, "
                   "created_at_ms FROM usage WHERE account_id = ?1 AND id > " USAGE_TX_AFTER
                   " AND charged_nusd > 0 ORDER BY 1 DESC LIMIT ?2 OFFSET ?3",
    /* What the rows a page skips add up to: the balance after the page's newest row is the
     * balance minus them (index ranges merged, no sort; a window function sorted its rows
     * again) */
    [ST_TX_SKIPPED] = "SELECT coalesce(sum(a), 0) FROM (SELECT id, amount_nusd AS a FROM "
                      "transactions WHERE account_id = ?1 UNION ALL SELECT id, -charged_nusd "
                      "FROM usage WHERE account_id = ?1 AND id > " USAGE_TX_AFTER
                      " AND charged_nusd > 0 ORDER BY 1 DESC LIMIT ?2)",
    /* Sums are grouped once over the whole table rather than per row: the audit reads every
     * transaction exactly once. */
    [ST_AUDIT_BALANCES] = "SELECT a.id, a.balance_nusd - coalesce(p.ps, 0) AS b, "
                          "coalesce(t.total, 0)" FROM_ACCOUNTS_JOINED
                          " LEFT JOIN (SELECT account_id, sum(amount_nusd) AS total FROM "
                          "ledger_transactions GROUP BY account_id) t ON t.account_id = a.id "
                          "WHERE b != coalesce(t.total, 0) ORDER BY a.id",
    [ST_AUDIT_NEGATIVE] =
        "SELECT a.id, a.balance_nusd - coalesce(p.ps, 0) AS b" FROM_ACCOUNTS_JOINED
        " WHERE b < 0 ORDER BY a.id",
    [ST_AUDIT_KEY_SPENT] = "SELECT k.id, k.spent_nusd + coalesce(p.ps, 0) AS sp, "
                           "coalesce(u.total, 0)" FROM_KEYS_JOINED
                           " LEFT JOIN (SELECT key_id, sum(charged_nusd) AS total FROM usage "
                           "GROUP BY key_id) u ON u.key_id = k.id "
                           "WHERE sp != coalesce(u.total, 0) ORDER BY k.id",
    /* A usage transaction in the table must match its usage row: same account, amount =
     * -charged. */
    [ST_AUDIT_USAGE_TX] =
        "WITH u AS MATERIALIZED (SELECT id, request_id, account_id, charged_nusd FROM usage) "
        "SELECT t.id, t.account_id, t.amount_nusd, u.id, u.account_id, u.charged_nusd "
        "FROM transactions t LEFT JOIN u ON u.request_id = t.request_id "
        "WHERE t.type = 'usage' AND (u.id IS NULL OR u.account_id != t.account_id OR "
        "u.charged_nusd != -t.amount_nusd) ORDER BY t.id",
    /* ... and a charged usage row written before migration 9 must have exactly one there; a
     * free one, or one written since (its own transaction), none. */
    [ST_AUDIT_USAGE_ROWS] =
        "SELECT u.id, u.charged_nusd, coalesce(t.n, 0) FROM usage u LEFT JOIN "
        "(SELECT request_id, count(*) AS n FROM transactions WHERE type = 'usage' "
        "GROUP BY request_id) t ON t.request_id = u.request_id "
        "WHERE coalesce(t.n, 0) != (u.charged_nusd > 0 AND u.id <= " USAGE_TX_AFTER
        ") ORDER BY u.id",
    /* Each request id once: no index enforces it since migration 10 (the ledger's check of a
     * replayed batch, store_seen, does). */
    [ST_AUDIT_USAGE_DUP] = "SELECT min(id), count(*), request_id FROM usage GROUP BY request_id "
                           "HAVING count(*) > 1 ORDER BY 1",
    [ST_AUDIT_COUNTS] =
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM ledger_transactions)",
    [ST_LEDGER_NEXT_ID] = "SELECT " LEDGER_NEXT_ID,
    /* The same id twice is the same response saved twice (ids are unique per request). */
    [ST_RESPONSE_INSERT] = "INSERT INTO responses(id, account_id, key_id, model, created_at_ms, "
                           "expires_at_ms, response, history) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT(id) DO NOTHING",
    /* another account's id, or an expired one, reads exactly like an id that never existed */
    [ST_RESPONSE_GET] = "SELECT response, history FROM responses "
                        "WHERE id = ?1 AND account_id = ?2 AND expires_at_ms > ?3",
    [ST_RESPONSE_DELETE] =
        "DELETE FROM responses WHERE id = ?1 AND account_id = ?2 AND expires_at_ms > ?3",
    [ST_RESPONSE_PURGE] = "DELETE FROM responses WHERE id IN (SELECT id FROM responses "
                          "WHERE expires_at_ms <= ?1 ORDER BY expires_at_ms LIMIT ?2)",
    [ST_NOTIFY_GET] = "SELECT " NOTIFY_COLS " FROM notification_settings WHERE account_id = ?",
    [ST_NOTIFY_PUT] =
        "INSERT INTO notification_settings(" NOTIFY_COLS ") VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT(account_id) DO UPDATE SET low_balance_threshold_nusd = ?2, "
        "webhook_url = ?3, webhook_secret = ?4, updated_at_ms = ?5",
    /* billing needs no secret */
    [ST_NOTIFY_LIST] = "SELECT account_id, low_balance_threshold_nusd, webhook_url, NULL, "
                       "updated_at_ms FROM notification_settings "
                       "WHERE low_balance_threshold_nusd > 0 AND webhook_url IS NOT NULL "
                       "ORDER BY account_id",
    /* a batch written again after its commit was in doubt writes its notices again */
    [ST_WEBHOOK_INSERT] = "INSERT INTO webhook_outbox(event_id, account_id, type, balance_nusd, "
                          "threshold_nusd, created_at_ms, attempts, next_attempt_ms) "
                          "VALUES (?1, ?2, 'balance.low', ?3, ?4, ?5, 0, ?5) "
                          "ON CONFLICT(event_id) DO NOTHING",
    [ST_WEBHOOK_DUE] = "SELECT o.event_id, o.account_id, o.type, o.balance_nusd, o.threshold_nusd, "
                       "o.created_at_ms, o.attempts, o.next_attempt_ms, n.webhook_url, "
                       "n.webhook_secret FROM webhook_outbox o LEFT JOIN notification_settings n "
                       "ON n.account_id = o.account_id WHERE o.next_attempt_ms <= ?1 "
                       "ORDER BY o.next_attempt_ms, o.created_at_ms, o.event_id LIMIT ?2",
    [ST_WEBHOOK_NEXT] = "SELECT min(next_attempt_ms) FROM webhook_outbox",
    [ST_WEBHOOK_DELETE] = "DELETE FROM webhook_outbox WHERE event_id = ?",
    [ST_WEBHOOK_RETRY] =
        "UPDATE webhook_outbox SET attempts = ?2, next_attempt_ms = ?3 WHERE event_id = ?1",
};

/* Events in one chunk of the ledger's usage rows (store_ledger_rows): a whole chunk of the
 * billing thread (BILL_CHUNK, 1000), whose arrays live on the stack; its rows of one account are
 * one block (SQU_ROWS_MAX). */
#define STORE_LEDGER_ROWS 1024
_Static_assert(STORE_LEDGER_ROWS <= SQU_ROWS_MAX, "a chunk's account fits in one block");

/* A SQLite handle: the common head (backend.h), then the connection and its statements. */
/* A sum per account (id = account_id) or per key of an account, in open addressing. */
struct sq_owed_ent {
    int64_t id, account_id, sum; /* id 0: a free slot */
};
struct sq_owed {
    struct sq_owed_ent *v;
    size_t n, cap; /* cap: a power of two, or 0 */
};

typedef struct sq {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    int ledger_writer;      /* store_ledger_writer: foreign keys off, the batch checks instead */
    unsigned char *block;   /* SQU_BLOCK_MAX bytes: the block being written (ledger handle) */
    int64_t recent;         /* rows in usage_recent, as this handle's commits left it; -1 unknown */
    int defer;              /* store_ledger_defer: commits leave balances to sq_ledger_post */
    struct sq_owed checked; /* (key, account) pairs a deferring commit found (sq_checked_add) */
    /* What this deferring handle committed since its last posting, summed as it committed
     * (sq_owed): the next posting writes these instead of reading the rows back. Valid (from
     * >= 0) while the mark is still `from` and the rows past it are this handle's own. */
    struct sq_owed owed_accts, owed_keys;
    int64_t owed_from, owed_upto; /* the mark the sums start at (-1: not known), last id */
} sq;

#define SQ(s) ((sq *)(s))

/* ---- errors ---- */

/* Records a failed SQLite call. SQLite's messages name tables and constraints but never bound
 * values, so no key material or hash can reach the message. */
static int store_dberr(store_t *s, const char *what)
{
    return store_seterr(s, "%s: %s", what, sqlite3_errmsg(SQ(s)->db));
}

/* ---- statement helpers ---- */

/* Returns the cached statement, preparing it on first use; NULL with the error recorded. */
static sqlite3_stmt *store_stmt(store_t *s, int id)
{
    if (!SQ(s)->st[id] &&
        sqlite3_prepare_v3(SQ(s)->db, store_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &SQ(s)->st[id],
                           NULL) != SQLITE_OK) {
        store_dberr(s, "prepare");
        SQ(s)->st[id] = NULL;
    }
    return SQ(s)->st[id];
}

/* Makes a cached statement ready for its next use (and releases its read snapshot). */
static void store_release(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Steps a statement that returns no row we need; records the error. */
static int store_step_done(store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ret = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? STORE_OK : store_dberr(s, what);
    store_release(st);
    return ret;
}

static int store_simple(store_t *s, int id, const char *what)
{
    sqlite3_stmt *st = store_stmt(s, id);
    return st ? store_step_done(s, st, what) : STORE_ERR;
}

static int store_begin(store_t *s)
{
    return store_simple(s, ST_BEGIN, "begin transaction");
}

static int store_commit(store_t *s)
{
    return store_simple(s, ST_COMMIT, "commit");
}

/* Undoes an open transaction after a failure, keeping the first error message: SQLite may
 * already have rolled back on its own (e.g. after SQLITE_FULL), hence the autocommit check. */
static void store_rollback(store_t *s)
{
    char saved[sizeof(s->err)];

    if (sqlite3_get_autocommit(SQ(s)->db)) return;
    memcpy(saved, s->err, sizeof(saved));
    store_simple(s, ST_ROLLBACK, "rollback");
    memcpy(s->err, saved, sizeof(saved));
}

/* Takes the next value of a change sequence (ST_SEQ_NEXT: keys, ST_ACCOUNT_SEQ_NEXT:
 * accounts); inside a transaction. */
static int store_take_seq(store_t *s, int stmt_id, int64_t *seq)
{
    const char *what = stmt_id == ST_SEQ_NEXT ? "next key sequence" : "next account sequence";
    sqlite3_stmt *st = store_stmt(s, stmt_id);
    int rc;

    if (!st) return STORE_ERR;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        int ret = rc == SQLITE_DONE ? store_seterr(s, "%s: counter missing from meta", what)
                                    : store_dberr(s, what);
        store_release(st);
        return ret;
    }
    *seq = sqlite3_column_int64(st, 0);
    /* RETURNING rows come before the statement is complete: run it to the end. */
    return store_step_done(s, st, what);
}

static int store_next_seq(store_t *s, int64_t *seq)
{
    return store_take_seq(s, ST_SEQ_NEXT, seq);
}

static int store_next_account_seq(store_t *s, int64_t *seq)
{
    return store_take_seq(s, ST_ACCOUNT_SEQ_NEXT, seq);
}

/* Copies a text column into a fixed buffer. A value too long for it (a 1 KiB description into
 * 256 bytes) is cut at a character boundary, so what callers put in JSON stays valid UTF-8. */
static void store_copy_text(char *dst, size_t dstlen, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;

    if (n >= dstlen) {
        n = dstlen - 1;
        /* t[n] is the first byte left out: if it continues a character, drop that character. */
        while (n > 0 && (t[n] & 0xC0) == 0x80)
            n--;
    }
    if (n) memcpy(dst, t, n);
    dst[n] = '\0';
}

static void store_read_account(sqlite3_stmt *st, store_account *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(st, 0);
    store_copy_text(a->name, sizeof(a->name), st, 1);
    a->balance_nusd = sqlite3_column_int64(st, 2);
    a->created_at_ms = sqlite3_column_int64(st, 3);
    a->seq = sqlite3_column_int64(st, 4);
}

/* A row of ACCOUNT_SHOW_COLS. */
static void store_read_account_show(sqlite3_stmt *st, store_account *a)
{
    store_read_account(st, a);
    a->proxy_keys = sqlite3_column_int64(st, 5);
    a->spent_nusd = sqlite3_column_int64(st, 6);
}

static void store_read_key(sqlite3_stmt *st, store_key *k)
{
    const void *h;

    memset(k, 0, sizeof(*k));
    k->id = sqlite3_column_int64(st, 0);
    k->account_id = sqlite3_column_int64(st, 1);
    k->type = sqlite3_column_int(st, 2) == KEY_BILLING ? KEY_BILLING : KEY_PROXY;
    store_copy_text(k->name, sizeof(k->name), st, 3);
    store_copy_text(k->prefix, sizeof(k->prefix), st, 4);
    h = sqlite3_column_blob(st, 5);
    if (h && sqlite3_column_bytes(st, 5) == (int)sizeof(k->hash))
        memcpy(k->hash, h, sizeof(k->hash));
    k->active = sqlite3_column_int(st, 6) != 0;
    k->deleted = sqlite3_column_int(st, 7) != 0;
    k->created_at_ms = sqlite3_column_int64(st, 8);
    k->expires_at_ms = sqlite3_column_int64(st, 9);
    k->spend_limit_nusd = sqlite3_column_int64(st, 10);
    k->spent_nusd = sqlite3_column_int64(st, 11);
    k->rpm = sqlite3_column_int64(st, 12);
    k->tpm = sqlite3_column_int64(st, 13);
    k->seq = sqlite3_column_int64(st, 14);
}

static int store_check_name(store_t *s, const char *what, const char *name, int allow_empty)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 && !allow_empty) return store_seterr(s, "%s name must not be empty", what);
    if (n > STORE_NAME_MAX)
        return store_seterr(s, "%s name longer than %d bytes", what, STORE_NAME_MAX);
    return STORE_OK;
}

/* ---- open, migrations ---- */

static int store_exec(store_t *s, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(SQ(s)->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        store_seterr(s, "%s: %s", what, msg ? msg : sqlite3_errmsg(SQ(s)->db));
        sqlite3_free(msg);
        return STORE_ERR;
    }
    return STORE_OK;
}

/* The one integer a parameterless statement answers (its first row's first column). */
static int store_int_query(store_t *s, int stmt_id, int64_t *out, const char *what)
{
    sqlite3_stmt *st = store_stmt(s, stmt_id);
    int ret = STORE_OK;

    if (!st) return STORE_ERR;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        ret = store_dberr(s, what);
    store_release(st);
    return ret;
}

static int sq_schema_version(store_t *s, int64_t *version)
{
    return store_int_query(s, ST_SCHEMA_VERSION, version, "read schema version");
}

/* Applies migration `version` unless another process got there first: the check happens inside
 * the write transaction, so two processes opening a fresh database cannot both apply it. */
static int store_apply_migration(store_t *s, int64_t version)
{
    sqlite3_stmt *st = NULL;
    int64_t current = 0;
    char what[64];
    int ret = STORE_ERR;

    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if (sq_schema_version(s, &current) != STORE_OK) goto cleanup;
    if (current >= version) {
        ret = store_commit(s);
        goto cleanup;
    }
    snprintf(what, sizeof(what), "migration %lld", (long long)version);
    if (store_exec(s, store_migrations[version - 1], what) != STORE_OK) goto cleanup;
    if (sqlite3_prepare_v2(SQ(s)->db,
                           "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)", -1,
                           &st, NULL) != SQLITE_OK) {
        store_dberr(s, what);
        goto cleanup;
    }
    sqlite3_bind_int64(st, 1, version);
    sqlite3_bind_int64(st, 2, ms_now_ms());
    if (sqlite3_step(st) != SQLITE_DONE) {
        store_dberr(s, what);
        goto cleanup;
    }
    ret = store_commit(s);

cleanup:
    sqlite3_finalize(st);
    if (ret != STORE_OK) store_rollback(s);
    return ret;
}

static int store_migrate(store_t *s)
{
    int64_t version = 0;

    /* applied_at is milliseconds since the epoch, like every other time in the store. */
    if (store_exec(s,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                   "create schema_migrations") != STORE_OK)
        return STORE_ERR;
    if (sq_schema_version(s, &version) != STORE_OK) return STORE_ERR;
    if (version > STORE_NMIGRATIONS)
        return store_seterr(s, "database schema version %lld is newer than this build knows (%lld)",
                            (long long)version, (long long)STORE_NMIGRATIONS);
    for (int64_t v = version + 1; v <= STORE_NMIGRATIONS; v++)
        if (store_apply_migration(s, v) != STORE_OK) return STORE_ERR;
    return STORE_OK;
}

/* Sets WAL mode and checks it took: journal_mode answers with the mode now in force. */
static int store_set_wal(store_t *s)
{
    sqlite3_stmt *st = NULL;
    int ret = STORE_ERR;

    if (sqlite3_prepare_v2(SQ(s)->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK) {
        store_dberr(s, "journal_mode");
        goto cleanup;
    }
    if (sqlite3_step(st) != SQLITE_ROW) {
        store_dberr(s, "journal_mode");
        goto cleanup;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    /* An in-memory database (tests) reports "memory" and has no journal to speak of. */
    if (!mode || (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)) {
        store_seterr(s, "journal_mode: WAL not available (got %s)", mode ? mode : "nothing");
        goto cleanup;
    }
    ret = STORE_OK;
cleanup:
    sqlite3_finalize(st);
    return ret;
}

static void sq_close(store_t *s)
{
    if (!s) return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(SQ(s)->st[i]);
    sqlite3_close(SQ(s)->db);
    free(SQ(s)->block);
    free(SQ(s)->checked.v);
    free(SQ(s)->owed_accts.v);
    free(SQ(s)->owed_keys.v);
    free(s);
}

/* Connections open through sqlite_wal.c's VFS (a WAL transaction written with one system call)
 * once it is registered; SQLite's own VFS otherwise. */
static int store_sqw_ok;

/* SQLite's memory statistics (sqlite3_memory_used and the soft heap limit, which nothing here
 * reads) cost a global mutex around every allocation SQLite makes, in every thread: ~3% of a
 * ledger batch's instructions. They can only be turned off before SQLite initializes, once per
 * process; if something initialized it first, the call fails harmlessly. */
static void store_sqlite_init(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)sqlite3_initialize();
    store_sqw_ok = sqw_register() == SQLITE_OK;
}

store_t *store_sqlite_open(const cfg_t *cfg, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    const char *path = cfg ? cfg->sqlite_path : NULL;
    store_t *s = NULL;
    int ok = 0;

    if (!path || !*path) {
        snprintf(err, errlen, "sqlite: no database path configured");
        return NULL;
    }
    if (strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0 &&
        store_mkdirs(path, err, errlen) != 0)
        return NULL;
    s = calloc(1, sizeof(sq));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    SQ(s)->recent = -1;
    SQ(s)->owed_from = -1; /* no sums kept until a deferring handle posts */
    s->ops = &store_sqlite_ops;
    pthread_once(&once, store_sqlite_init);
    /* NOMUTEX: a handle belongs to one thread at a time (store.h), so SQLite's own per-connection
     * mutex would only cost time. */
    if (sqlite3_open_v2(path, &SQ(s)->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        store_sqw_ok ? SQW_VFS_NAME : NULL) != SQLITE_OK) {
        store_seterr(s, "open %s: %s", path,
                     SQ(s)->db ? sqlite3_errmsg(SQ(s)->db) : "out of memory");
        goto cleanup;
    }
    sqlite3_extended_result_codes(SQ(s)->db, 1);
    if (squ_register(SQ(s)->db) != SQLITE_OK) {
        store_dberr(s, "register " SQU_NAME);
        goto cleanup;
    }
    /* Set first: switching to WAL and migrating take locks another process may hold. */
    sqlite3_busy_timeout(SQ(s)->db, 5000);
    if (store_set_wal(s) != STORE_OK) goto cleanup;
    /* NORMAL is durable across application crashes in WAL mode; only an OS crash or power loss
     * can lose the last commits, and it never corrupts the file. A ledger batch dirties a random
     * leaf of each request-id index per event: with SQLite's default 2 MiB cache a 1000-event
     * batch spills mid-transaction; 32 MiB (allocated only as pages are read) measured 12-40%
     * faster batch commits on a 300k-event database. */
    if (store_exec(s, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768",
                   "pragmas") != STORE_OK)
        goto cleanup;
    if (store_migrate(s) != STORE_OK) goto cleanup;
    ok = 1;

cleanup:
    if (!ok) {
        if (s->err[0])
            snprintf(err, errlen, "sqlite %s: %s", path, s->err);
        else
            snprintf(err, errlen, "sqlite %s: open failed", path);
        sq_close(s);
        return NULL;
    }
    return s;
}

/* ---- the checkpointer (store_ckpt_start) ---- */

/* WAL growth that asks for a checkpoint: about 16 MB, four times SQLite's own default. A
 * checkpoint copies each page the WAL holds once, however many commits rewrote it, and syncs
 * both files: a batch of many accounts rewrites two index pages an account (~560 pages a commit
 * with 256 accounts, docs/PERFORMANCE.md round 22), and at 1000 pages the checkpoints came every
 * other commit, copying nearly every frame (a fifth of the gateway's CPU). A test may lower it
 * (store_ckpt_set_pages), to fill a WAL in less time. */
#define STORE_CKPT_PAGES 4000
static int store_ckpt_pages = STORE_CKPT_PAGES;
/* While the WAL grows more slowly than that, a checkpoint at least this often. */
#define STORE_CKPT_IDLE_MS 1000
/* A WAL this long (about 64 MB) is finished by the writer itself (store_ckpt_wal_hook). */
#define STORE_CKPT_RESTART_PAGES (4 * store_ckpt_pages)

void store_ckpt_set_pages(int pages)
{
    store_ckpt_pages = pages > 0 ? pages : STORE_CKPT_PAGES;
}

typedef struct sq_ckpt {
    store_t *s;      /* the checkpointer's own connection */
    store_t *writer; /* whose commits are checkpointed */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pages;      /* WAL pages after the writer's last commit (under mu) */
    int pages_done; /* WAL size at the last checkpoint started (under mu) */
    int stop;       /* under mu */
    uint64_t done;  /* checkpoints completed (under mu) */
    bg_thread bg;   /* boosted when the WAL grows far past the threshold */
} sq_ckpt;

/*
 * Runs on the writer's thread after each of its commits: records and signals, and, once the WAL
 * is STORE_CKPT_RESTART_PAGES long, checkpoints what the checkpointer has not copied yet.
 *
 * SQLite writes the WAL from its start again only when a new write transaction finds every frame
 * copied into the database. A checkpoint on another thread copies the frames that were there when
 * it began, and under a steady load the writer has added more by the time it ends, so without
 * this the WAL never restarts: it grew by ~17 MB a second under the benchmark's load, without
 * bound, and every write to it extended the file (the file system allocating and zeroing blocks:
 * about a third of the ledger's kernel time). Here no commit can come in between, so the WAL is
 * whole in the database afterwards (unless a reader still uses an old snapshot; then the next
 * commit tries again) and the next batch starts it over. The checkpointer has copied all but
 * its last pages by then, so the writer's share is small; PASSIVE never waits for a lock.
 */
static int store_ckpt_wal_hook(void *ud, sqlite3 *db, const char *name, int pages)
{
    sq_ckpt *c = ud;
    if (pages >= STORE_CKPT_RESTART_PAGES)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    int grown = pages - c->pages_done >= store_ckpt_pages || pages < c->pages;
    c->pages = pages;
    if (grown) {
        bg_wake(&c->bg);
        pthread_cond_signal(&c->cv);
    }
    /* far behind: the checkpointer is starved of CPU (it runs SCHED_IDLE, bgprio.h) */
    if (pages - c->pages_done >= 8 * store_ckpt_pages) bg_boost(&c->bg);
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

static void *store_ckpt_main(void *arg)
{
    sq_ckpt *c = arg;
    bg_enter(&c->bg, "ms-checkpoint");
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += STORE_CKPT_IDLE_MS / 1000;
        /* A restarted WAL (pages below what was checkpointed) counts as grown too. */
        while (!c->stop && c->pages - c->pages_done < store_ckpt_pages &&
               c->pages >= c->pages_done) {
            bg_sleep(&c->bg, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
            if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
        }
        if (c->stop) break;
        if (c->pages == c->pages_done) continue; /* nothing written since the last one */
        c->pages_done = c->pages;
        pthread_mutex_unlock(&c->mu);
        int log = 0, copied = 0;
        int rc =
            sqlite3_wal_checkpoint_v2(SQ(c->s)->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        pthread_mutex_lock(&c->mu);
        if (rc == SQLITE_OK) c->done++;
        bg_relax(&c->bg);
        /* SQLITE_BUSY (another checkpoint running, e.g. the CLI's) is retried next time */
    }
    pthread_mutex_unlock(&c->mu);
    bg_leave(&c->bg);
    return NULL;
}

static void *sq_ckpt_start(const cfg_t *cfg, store_t *writer, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    sq_ckpt *c;
    int rc;

    if (!writer) {
        snprintf(err, errlen, "checkpointer: no writer");
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        snprintf(err, errlen, "checkpointer: out of memory");
        return NULL;
    }
    if (!(c->s = store_sqlite_open(cfg, err, errlen))) {
        free(c);
        return NULL;
    }
    c->writer = writer;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = pthread_create(&c->thread, NULL, store_ckpt_main, c)) != 0) {
        snprintf(err, errlen, "checkpointer: starting its thread: %s", strerror(rc));
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        sq_close(c->s);
        free(c);
        return NULL;
    }
    /* Replaces SQLite's own auto-checkpoint hook on this connection (they are one and the same
     * slot), so the writer's commits never checkpoint themselves. */
    sqlite3_wal_hook(SQ(writer)->db, store_ckpt_wal_hook, c);
    return c;
}

static void sq_ckpt_stop(void *arg)
{
    sq_ckpt *c = arg;
    if (!c) return;
    sqlite3_wal_autocheckpoint(SQ(c->writer)->db, 1000); /* SQLite's default hook again */
    bg_boost(&c->bg);                                    /* the join below waits for it */
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    bg_wake(&c->bg);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    sq_close(c->s);
    free(c);
}

static uint64_t sq_ckpt_count(void *arg)
{
    sq_ckpt *c = arg;
    if (!c) return 0;
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->done;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- accounts ---- */

/* Appends one row to the ledger; inside a transaction. request_id may be NULL (or have length
 * request_id_len, which may be -1 for NUL-terminated). */
static int store_add_tx(store_t *s, int64_t account_id, int64_t amount, const char *type,
                        const char *description, const char *request_id, int request_id_len,
                        int64_t now)
{
    sqlite3_stmt *st = store_stmt(s, ST_TX_INSERT);

    if (!st) return STORE_ERR;
    if (sqlite3_bind_int64(st, 1, account_id) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, amount) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC) != SQLITE_OK ||
        (description ? sqlite3_bind_text(st, 4, description, -1, SQLITE_TRANSIENT)
                     : sqlite3_bind_null(st, 4)) != SQLITE_OK ||
        (request_id ? sqlite3_bind_text(st, 5, request_id, request_id_len, SQLITE_TRANSIENT)
                    : sqlite3_bind_null(st, 5)) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, now) != SQLITE_OK) {
        store_dberr(s, "transaction insert");
        store_release(st);
        return STORE_ERR;
    }
    return store_step_done(s, st, "transaction insert");
}

static int sq_account_create(store_t *s, const char *name, int64_t balance_nusd, int64_t *id_out)
{
    sqlite3_stmt *st;
    int64_t now = ms_now_ms(), id, seq;
    int ret = STORE_ERR;

    if (store_check_name(s, "account", name, 0) != STORE_OK) return STORE_ERR;
    if (balance_nusd < 0) return store_seterr(s, "account balance must not be negative");
    if (balance_nusd > STORE_MAX_BALANCE_NUSD) {
        store_seterr(s, "an opening balance above the maximum balance of USD %lld",
                     STORE_MAX_BALANCE_NUSD / 1000000000LL);
        return STORE_LIMIT;
    }
    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if (store_next_account_seq(s, &seq) != STORE_OK) goto cleanup;
    if (!(st = store_stmt(s, ST_ACCOUNT_INSERT))) goto cleanup;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, balance_nusd) != SQLITE_OK ||
        sqlite3_bind_int64(st, 3, now) != SQLITE_OK ||
        sqlite3_bind_int64(st, 4, seq) != SQLITE_OK) {
        store_dberr(s, "account create");
        store_release(st);
        goto cleanup;
    }
    if (store_step_done(s, st, "account create") != STORE_OK) goto cleanup;
    id = sqlite3_last_insert_rowid(SQ(s)->db);
    /* The opening balance goes through the ledger like any other money, so the sum of an
     * account's transactions is its balance from the first commit on. */
    if (balance_nusd > 0 &&
        store_add_tx(s, id, balance_nusd, "payment", "initial balance", NULL, 0, now) != STORE_OK)
        goto cleanup;
    if (store_commit(s) != STORE_OK) goto cleanup;
    if (id_out) *id_out = id;
    ret = STORE_OK;

cleanup:
    if (ret != STORE_OK) store_rollback(s);
    return ret;
}

/* One account by ST_ACCOUNT_GET or ST_ACCOUNT_SHOW. */
static int store_account_read(store_t *s, int stmt_id, int64_t id, store_account *out)
{
    sqlite3_stmt *st = store_stmt(s, stmt_id);
    int rc, ret;

    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (out && stmt_id == ST_ACCOUNT_SHOW)
            store_read_account_show(st, out);
        else if (out)
            store_read_account(st, out);
        ret = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        store_seterr(s, "account %lld not found", (long long)id);
        ret = STORE_NOTFOUND;
    } else {
        ret = store_dberr(s, "account get");
    }
    store_release(st);
    return ret;
}

static int sq_account_get(store_t *s, int64_t id, store_account *out)
{
    return store_account_read(s, ST_ACCOUNT_GET, id, out);
}

static int sq_account_show(store_t *s, int64_t id, store_account *out)
{
    return store_account_read(s, ST_ACCOUNT_SHOW, id, out);
}

/* Steps st to the end, reading each row into a growing array of elem-sized items. */
static int store_collect(store_t *s, sqlite3_stmt *st, size_t elem,
                         void (*read)(sqlite3_stmt *, void *), void **out, size_t *n,
                         const char *what)
{
    char *v = NULL;
    size_t len = 0, cap = 0;
    int rc, ret = STORE_ERR;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char *nv = realloc(v, ncap * elem);
            if (!nv) {
                store_seterr(s, "%s: out of memory", what);
                goto cleanup;
            }
            v = nv;
            cap = ncap;
        }
        read(st, v + elem * len++);
    }
    if (rc != SQLITE_DONE) {
        store_dberr(s, what);
        goto cleanup;
    }
    *out = v;
    *n = len;
    v = NULL;
    ret = STORE_OK;

cleanup:
    free(v);
    store_release(st);
    return ret;
}

static void read_account_row(sqlite3_stmt *st, void *dst)
{
    store_read_account_show(st, dst);
}

static void read_key_row(sqlite3_stmt *st, void *dst)
{
    store_read_key(st, dst);
}

static int sq_account_list(store_t *s, store_account **out, size_t *n)
{
    sqlite3_stmt *st = store_stmt(s, ST_ACCOUNT_LIST);
    *out = NULL;
    *n = 0;
    if (!st) return STORE_ERR;
    return store_collect(s, st, sizeof **out, read_account_row, (void **)out, n, "account list");
}

static int sq_account_topup(store_t *s, int64_t id, int64_t amount_nusd, const char *description)
{
    store_account a;
    sqlite3_stmt *st;
    int64_t seq;
    int ret = STORE_ERR, rc;

    if (amount_nusd <= 0) return store_seterr(s, "top-up amount must be positive");
    if (amount_nusd > STORE_MAX_BALANCE_NUSD) {
        store_seterr(s, "a top-up above the maximum balance of USD %lld",
                     STORE_MAX_BALANCE_NUSD / 1000000000LL);
        return STORE_LIMIT;
    }
    if (description && strlen(description) > STORE_DESC_MAX)
        return store_seterr(s, "description longer than %d bytes", STORE_DESC_MAX);
    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if ((rc = sq_account_get(s, id, &a)) != STORE_OK) {
        ret = rc;
        goto cleanup;
    }
    /* Both terms are at most the maximum (a row from before the maximum may be above it, which
     * only makes this refuse), so the sum cannot overflow: SQLite would turn it into a float. */
    if (a.balance_nusd > STORE_MAX_BALANCE_NUSD - amount_nusd) {
        char bal[32];
        if (!ms_format_decimal(a.balance_nusd, 9, bal, sizeof bal)) snprintf(bal, sizeof bal, "?");
        store_seterr(s,
                     "account %lld: the balance (USD %s) would go above the maximum balance of "
                     "USD %lld",
                     (long long)id, bal, STORE_MAX_BALANCE_NUSD / 1000000000LL);
        ret = STORE_LIMIT;
        goto cleanup;
    }
    if (store_add_tx(s, id, amount_nusd, "payment", description, NULL, 0, ms_now_ms()) !=
            STORE_OK ||
        store_next_account_seq(s, &seq) != STORE_OK)
        goto cleanup;
    if (!(st = store_stmt(s, ST_ACCOUNT_ADD))) goto cleanup;
    sqlite3_bind_int64(st, 1, amount_nusd);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, id);
    if (store_step_done(s, st, "account top-up") != STORE_OK) goto cleanup;
    ret = store_commit(s);

cleanup:
    if (ret != STORE_OK) store_rollback(s);
    return ret;
}

/* ---- keys ---- */

static int sq_key_create(store_t *s, int64_t account_id, key_type type, const char *name,
                         int64_t expires_at_ms, int64_t spend_limit_nusd, char key_out[64],
                         store_key *out)
{
    store_key k;
    sqlite3_stmt *st;
    int ret = STORE_ERR, rc;

    memset(&k, 0, sizeof(k));
    if (!name) name = "";
    if (store_check_name(s, "key", name, 1) != STORE_OK) return STORE_ERR;
    if (type != KEY_PROXY && type != KEY_BILLING)
        return store_seterr(s, "invalid key type %d", (int)type);
    if (expires_at_ms < 0) return store_seterr(s, "invalid key expiry");
    if (spend_limit_nusd < -1) return store_seterr(s, "invalid key spend limit");
    if (key_generate(type, key_out, 64) != 0)
        return store_seterr(s, "key generation failed: no randomness from the OS");

    k.account_id = account_id;
    k.type = type;
    snprintf(k.name, sizeof(k.name), "%s", name);
    memcpy(k.prefix, key_out, KEY_PREFIX_LEN);
    k.prefix[KEY_PREFIX_LEN] = '\0';
    key_hash(key_out, KEY_LEN, k.hash);
    k.active = 1;
    k.created_at_ms = ms_now_ms();
    k.expires_at_ms = expires_at_ms;
    k.spend_limit_nusd = spend_limit_nusd;
    k.rpm = -1;
    k.tpm = -1;

    if (store_begin(s) != STORE_OK) goto cleanup;
    /* Checked here rather than left to the foreign key so the caller gets STORE_NOTFOUND. */
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) {
        ret = rc;
        goto cleanup;
    }
    if (store_next_seq(s, &k.seq) != STORE_OK) goto cleanup;
    if (!(st = store_stmt(s, ST_KEY_INSERT))) goto cleanup;
    if (sqlite3_bind_int64(st, 1, k.account_id) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, (int)k.type) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, k.name, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_text(st, 4, k.prefix, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_blob(st, 5, k.hash, sizeof(k.hash), SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, k.created_at_ms) != SQLITE_OK ||
        sqlite3_bind_int64(st, 7, k.expires_at_ms) != SQLITE_OK ||
        sqlite3_bind_int64(st, 8, k.spend_limit_nusd) != SQLITE_OK ||
        sqlite3_bind_int64(st, 9, k.seq) != SQLITE_OK) {
        store_dberr(s, "key create");
        store_release(st);
        goto cleanup;
    }
    if (store_step_done(s, st, "key create") != STORE_OK) goto cleanup;
    k.id = sqlite3_last_insert_rowid(SQ(s)->db);
    if (store_commit(s) != STORE_OK) goto cleanup;
    if (out) *out = k;
    ret = STORE_OK;

cleanup:
    if (ret != STORE_OK) {
        store_rollback(s);
        /* A key that was never stored must never be shown. */
        memset(key_out, 0, 64);
    }
    return ret;
}

static int sq_key_get(store_t *s, int64_t id, store_key *out)
{
    sqlite3_stmt *st = store_stmt(s, ST_KEY_GET);
    int rc, ret;

    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (out) store_read_key(st, out);
        ret = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        store_seterr(s, "key %lld not found", (long long)id);
        ret = STORE_NOTFOUND;
    } else {
        ret = store_dberr(s, "key get");
    }
    store_release(st);
    return ret;
}

static int sq_key_list(store_t *s, int64_t account_id, key_type type, store_key **out, size_t *n)
{
    sqlite3_stmt *st;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) return rc;
    if (!(st = store_stmt(s, ST_KEY_LIST))) return STORE_ERR;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int(st, 2, (int)type);
    return store_collect(s, st, sizeof **out, read_key_row, (void **)out, n, "key list");
}

/* Runs a key UPDATE (set_active or delete) under a fresh sequence value. STORE_NOTFOUND when no
 * live key matched; the rollback then returns the sequence value too. */
static int store_key_change(store_t *s, int stmt_id, int64_t id, int active)
{
    sqlite3_stmt *st;
    int64_t seq;
    int ret = STORE_ERR;

    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if (store_next_seq(s, &seq) != STORE_OK) goto cleanup;
    if (!(st = store_stmt(s, stmt_id))) goto cleanup;
    if (stmt_id == ST_KEY_SET_ACTIVE) {
        sqlite3_bind_int(st, 1, active ? 1 : 0);
        sqlite3_bind_int64(st, 2, seq);
        sqlite3_bind_int64(st, 3, id);
    } else {
        sqlite3_bind_int64(st, 1, seq);
        sqlite3_bind_int64(st, 2, id);
    }
    if (store_step_done(s, st, "key update") != STORE_OK) goto cleanup;
    if (sqlite3_changes(SQ(s)->db) == 0) {
        store_seterr(s, "key %lld not found", (long long)id);
        ret = STORE_NOTFOUND;
        goto cleanup;
    }
    ret = store_commit(s);

cleanup:
    if (ret != STORE_OK) store_rollback(s);
    return ret;
}

static int sq_key_set_active(store_t *s, int64_t id, int active)
{
    return store_key_change(s, ST_KEY_SET_ACTIVE, id, active);
}

static int sq_key_delete(store_t *s, int64_t id)
{
    return store_key_change(s, ST_KEY_DELETE, id, 0);
}

static int sq_keys_since(store_t *s, int64_t since, void (*cb)(void *ud, const store_key *k),
                         void *ud, int64_t *max_seq)
{
    sqlite3_stmt *st = store_stmt(s, ST_KEYS_SINCE);
    int64_t max = since;
    store_key k;
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_read_key(st, &k);
        if (k.seq > max) max = k.seq;
        cb(ud, &k);
    }
    if (rc != SQLITE_DONE) ret = store_dberr(s, "keys since");
    store_release(st);
    if (ret == STORE_OK && max_seq) *max_seq = max;
    return ret;
}

/* ---- the ledger ---- */

static int store_begin_read(store_t *s)
{
    return store_simple(s, ST_BEGIN_READ, "begin read transaction");
}

/* Ends a read snapshot; after a failure the rollback keeps the first error message. */
static int store_end_read(store_t *s, int ret)
{
    if (ret != STORE_OK) {
        store_rollback(s);
        return ret;
    }
    return store_commit(s);
}

static int sq_accounts_since(store_t *s, int64_t since,
                             void (*cb)(void *ud, const store_account *a), void *ud,
                             int64_t *max_seq)
{
    sqlite3_stmt *st = store_stmt(s, ST_ACCOUNTS_SINCE);
    int64_t max = since;
    store_account a;
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_read_account(st, &a);
        if (a.seq > max) max = a.seq;
        cb(ud, &a);
    }
    if (rc != SQLITE_DONE) ret = store_dberr(s, "accounts since");
    store_release(st);
    if (ret == STORE_OK && max_seq) *max_seq = max;
    return ret;
}

/* Length of a fixed-size text field, which the caller may have filled without a terminator. */
#define STORE_FIELD_LEN(f) ((int)strnlen((f), sizeof(f)))

/* Refuses an event before the batch starts, so one bad event cannot leave half a batch behind
 * and the message names the culprit. */
static int store_check_event(store_t *s, const store_usage_event *e)
{
    int rl = STORE_FIELD_LEN(e->request_id);

    if (rl == 0) return store_seterr(s, "ledger: usage event without a request id");
    if (rl == (int)sizeof(e->request_id))
        return store_seterr(s, "ledger: request id longer than %d bytes",
                            (int)sizeof(e->request_id) - 1);
    if (e->charged_nusd < 0)
        return store_seterr(s, "ledger: request %s: negative charge", e->request_id);
    const usage_counts *u = &e->usage;
    if (u->input < 0 || u->cached_input < 0 || u->cache_write < 0 || u->cache_write_1h < 0 ||
        u->output < 0 || u->reasoning < 0)
        return store_seterr(s, "ledger: request %s: negative token count", e->request_id);
    if (u->reasoning > u->output)
        return store_seterr(s, "ledger: request %s: more reasoning than output tokens",
                            e->request_id);
    /* the row keeps their sum (prompt_tokens), which must stay an exact integer */
    int64_t sum;
    if (__builtin_add_overflow(u->input, u->cached_input, &sum) ||
        __builtin_add_overflow(sum, u->cache_write, &sum) ||
        __builtin_add_overflow(sum, u->cache_write_1h, &sum))
        return store_seterr(s, "ledger: request %s: prompt token count overflows", e->request_id);
    return STORE_OK;
}

/* The charges of a batch summed per account and per (key, account): one UPDATE each instead of
 * two per event. A batch is mostly a few busy accounts and keys, so this removes about half of
 * the statements a batch runs. */
typedef struct store_sum {
    int64_t id, account_id; /* accounts: id = account_id */
    int64_t sum;
    size_t first; /* index of the first event charged to it (named in errors) */
} store_sum;

typedef struct store_sums {
    store_sum *v;
    size_t n;
    uint32_t *slot; /* open addressing over v: index + 1, 0 = empty */
    size_t cap;     /* slots, a power of two >= 2 x the events of the batch */
} store_sums;

static int store_sums_init(store_sums *t, size_t events)
{
    memset(t, 0, sizeof(*t));
    t->cap = 16;
    while (t->cap < events * 2)
        t->cap *= 2;
    t->v = malloc(events * sizeof(*t->v));
    t->slot = calloc(t->cap, sizeof(*t->slot));
    return t->v && t->slot ? 0 : -1;
}

static void store_sums_free(store_sums *t)
{
    free(t->v);
    free(t->slot);
}

/* The slot of (id, account_id) in t: the one that holds it, or the empty one it would take. */
static size_t store_sums_slot(const store_sums *t, int64_t id, int64_t account_id)
{
    uint64_t h = ((uint64_t)id * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)account_id;
    size_t i = (size_t)(h ^ (h >> 29)) & (t->cap - 1);
    for (;; i = (i + 1) & (t->cap - 1)) {
        uint32_t k = t->slot[i];
        if (!k || (t->v[k - 1].id == id && t->v[k - 1].account_id == account_id)) return i;
    }
}

/* Whether (id, account_id) has a sum in t. */
static int store_sums_has(const store_sums *t, int64_t id, int64_t account_id)
{
    return t->slot[store_sums_slot(t, id, account_id)] != 0;
}

/* Adds amount to (id, account_id); -1 if the sum would overflow. */
static int store_sums_add(store_sums *t, int64_t id, int64_t account_id, int64_t amount, size_t ev)
{
    size_t i = store_sums_slot(t, id, account_id);
    if (t->slot[i]) {
        store_sum *e = &t->v[t->slot[i] - 1];
        return __builtin_add_overflow(e->sum, amount, &e->sum) ? -1 : 0;
    }
    t->v[t->n] = (store_sum){id, account_id, amount, ev};
    t->slot[i] = (uint32_t)++t->n;
    return 0;
}

/* The first event of the batch whose charge takes the account's running total past what its
 * balance (read again, inside the failed transaction) can pay: the request an error names. */
static const char *store_overdraft_request(store_t *s, const store_usage_event *ev, size_t n,
                                           const store_sum *a)
{
    int64_t left;
    /* the row as it is (the batch's rows, past the mark, are not in it; a read through
     * ACCOUNT_COLS would take them off) */
    sqlite3_stmt *st = store_stmt(s, ST_ACCOUNT_POSTED);
    if (!st) return ev[a->first].request_id;
    sqlite3_bind_int64(st, 1, a->id);
    int rc = sqlite3_step(st);
    left = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    store_release(st);
    if (rc != SQLITE_ROW) return ev[a->first].request_id;
    for (size_t i = a->first; i < n; i++) {
        if (ev[i].account_id != a->id || ev[i].charged_nusd <= 0) continue;
        left -= ev[i].charged_nusd;
        if (left < 0) return ev[i].request_id;
    }
    return ev[a->first].request_id;
}

/* Lowers an account's balance by sum under the sequence value seq (a charge or a posting):
 * STORE_OK, STORE_NOTFOUND (no such account), STORE_LIMIT (the balance would go below zero), or
 * STORE_ERR with the error recorded (what: the caller's words for it). */
static int store_balance_lower(store_t *s, int64_t account, int64_t sum, int64_t seq,
                               const char *what)
{
    sqlite3_stmt *st = store_stmt(s, ST_CHARGE_ACCOUNT);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, sum);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, account);
    int rc = sqlite3_step(st);
    store_release(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) return STORE_LIMIT;
    if (rc != SQLITE_DONE) return store_dberr(s, what);
    return sqlite3_changes(SQ(s)->db) ? STORE_OK : STORE_NOTFOUND;
}

/* Raises a key's spend by sum: STORE_OK, STORE_NOTFOUND (no such key of that account, or its
 * total would no longer be an exact integer), or STORE_ERR with the error recorded. */
static int store_spend_raise(store_t *s, int64_t key, int64_t account, int64_t sum,
                             const char *what)
{
    sqlite3_stmt *st = store_stmt(s, ST_CHARGE_KEY);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, sum);
    sqlite3_bind_int64(st, 2, key);
    sqlite3_bind_int64(st, 3, account);
    sqlite3_bind_int64(st, 4, INT64_MAX);
    if (store_step_done(s, st, what) != STORE_OK) return STORE_ERR;
    return sqlite3_changes(SQ(s)->db) ? STORE_OK : STORE_NOTFOUND;
}

/* Lowers each account's balance by its sum, under a fresh account sequence value each. */
static int store_charge_accounts(store_t *s, const store_sums *t, int64_t *seq,
                                 const store_usage_event *ev, size_t n)
{
    for (size_t i = 0; i < t->n; i++) {
        const store_sum *a = &t->v[i];
        int rc = store_balance_lower(s, a->id, a->sum, ++*seq, "ledger: charge account");
        if (rc == STORE_LIMIT)
            return store_seterr(s, "ledger: request %s: account %lld balance would go below zero",
                                store_overdraft_request(s, ev, n, a), (long long)a->id);
        if (rc == STORE_NOTFOUND)
            return store_seterr(s, "ledger: request %s: account %lld not found",
                                ev[a->first].request_id, (long long)a->id);
        if (rc != STORE_OK) return STORE_ERR;
    }
    return STORE_OK;
}

/* Raises each key's spend by its sum; the key must belong to the charged account, and its total
 * must stay an exact integer. */
static int store_charge_keys(store_t *s, const store_sums *t, const store_usage_event *ev)
{
    for (size_t i = 0; i < t->n; i++) {
        const store_sum *k = &t->v[i];
        int rc = store_spend_raise(s, k->id, k->account_id, k->sum, "ledger: charge key");
        if (rc == STORE_ERR) return STORE_ERR;
        if (rc == STORE_NOTFOUND)
            return store_seterr(s,
                                "ledger: request %s: key %lld of account %lld not found "
                                "(or its spend would overflow)",
                                ev[k->first].request_id, (long long)k->id,
                                (long long)k->account_id);
    }
    return STORE_OK;
}

/* "evt_" and the request id's part after "req_" (all of it when it has no such prefix). */
static void store_event_id(const char *request_id, char out[48])
{
    const char *r = strncmp(request_id, "req_", 4) == 0 ? request_id + 4 : request_id;
    snprintf(out, 48, "evt_%.39s", r);
}

/* Puts e's low-balance notice into the webhook outbox, due at once; inside the batch. */
static int store_webhook_insert(store_t *s, const store_usage_event *e, int64_t at)
{
    char id[48];
    sqlite3_stmt *st = store_stmt(s, ST_WEBHOOK_INSERT);
    if (!st) return STORE_ERR;
    store_event_id(e->request_id, id);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, e->account_id);
    sqlite3_bind_int64(st, 3, e->notice_balance_nusd);
    sqlite3_bind_int64(st, 4, e->notice_threshold_nusd);
    sqlite3_bind_int64(st, 5, at);
    return store_step_done(s, st, "ledger: webhook insert");
}

/* A batch's request ids, for finding one twice: open addressing over the events' indices. */
typedef struct store_rids {
    const store_usage_event *ev;
    uint32_t *slot; /* index + 1, 0 = empty */
    size_t cap;     /* a power of two >= 2 x the events */
} store_rids;

static uint64_t store_rid_hash(const char *r, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, eight bytes a step after the first few */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, r + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (unsigned char)r[i]) * 0x100000001b3ULL;
    return h ^ (h >> 32);
}

/* The slot of request id r (n bytes): the one holding an event with it, or the empty one. */
static size_t store_rids_slot(const store_rids *t, const char *r, size_t n)
{
    size_t i = (size_t)store_rid_hash(r, n) & (t->cap - 1);
    for (;; i = (i + 1) & (t->cap - 1)) {
        uint32_t k = t->slot[i];
        if (!k) return i;
        const char *o = t->ev[k - 1].request_id;
        if (strnlen(o, sizeof(t->ev[0].request_id)) == n && memcmp(o, r, n) == 0) return i;
    }
}

/* Fills t with ev[0..n) and sets dup[i] for each event whose request id an earlier one has
 * (it is skipped, as a second row of it always was). -1: out of memory. */
static int store_rids_init(store_rids *t, const store_usage_event *ev, size_t n, unsigned char *dup)
{
    t->ev = ev;
    t->cap = 16;
    while (t->cap < n * 2)
        t->cap *= 2;
    if (!(t->slot = calloc(t->cap, sizeof(*t->slot)))) return -1;
    for (size_t i = 0; i < n; i++) {
        size_t j = store_rids_slot(t, ev[i].request_id,
                                   strnlen(ev[i].request_id, sizeof(ev[i].request_id)));
        dup[i] = t->slot[j] != 0;
        if (!dup[i]) t->slot[j] = (uint32_t)(i + 1);
    }
    return 0;
}

/* The events of a chunk grouped by account, each group in event order: the blocks to write. */
typedef struct store_groups {
    uint16_t idx[STORE_LEDGER_ROWS]; /* event indices, group after group */
    uint16_t start[STORE_LEDGER_ROWS + 1];
    size_t n; /* groups */
} store_groups;

/* Groups the events of ev[0..k) that skip[i] leaves in; O(k), stable. */
static void store_group(store_groups *g, const store_usage_event *ev, size_t k,
                        const unsigned char *skip)
{
    int64_t acct[STORE_LEDGER_ROWS];
    uint16_t count[STORE_LEDGER_ROWS], of[STORE_LEDGER_ROWS];
    uint16_t slot[2 * STORE_LEDGER_ROWS]; /* group + 1, 0 = empty */
    size_t cap = 2 * STORE_LEDGER_ROWS;
    memset(slot, 0, sizeof slot);
    g->n = 0;
    for (size_t i = 0; i < k; i++) {
        if (skip[i]) continue;
        uint64_t h = (uint64_t)ev[i].account_id * 0x9E3779B97F4A7C15ULL;
        size_t j = (size_t)(h >> 40) & (cap - 1);
        while (slot[j] && acct[slot[j] - 1] != ev[i].account_id)
            j = (j + 1) & (cap - 1);
        if (!slot[j]) {
            acct[g->n] = ev[i].account_id;
            count[g->n] = 0;
            slot[j] = (uint16_t)++g->n;
        }
        of[i] = (uint16_t)(slot[j] - 1);
        count[of[i]]++;
    }
    g->start[0] = 0;
    for (size_t q = 0; q < g->n; q++)
        g->start[q + 1] = (uint16_t)(g->start[q] + count[q]);
    uint16_t fill[STORE_LEDGER_ROWS];
    memcpy(fill, g->start, g->n * sizeof(fill[0]));
    for (size_t i = 0; i < k; i++)
        if (!skip[i]) g->idx[fill[of[i]]++] = (uint16_t)i;
}

/*
 * Marks (skip[i] = 1) the events of ev[0..k) whose request id a stored block already has: only
 * for events that may have been offered to the store before (a retry, the journal). A block that
 * can hold an event of an account has that account and a created_at_ms range around the event's
 * (it is stamped at settlement and kept): the account's blocks in usage_blocks from the group's
 * earliest event on, through their index, and usage_recent's blocks around the chunk's times
 * (rows of many accounts: one scan for the chunk), decoded and looked up in the batch's table
 * of request ids.
 */

/* Looks up the rows of the block st holds (columns: first_id, n, min_created_ms, rows,
 * account_id) in the batch's request ids: an event of this chunk of the row's account is marked.
 * -1 when the block is damaged. */
static int store_seen_block(sqlite3_stmt *st, const store_usage_event *ev, size_t k,
                            const store_rids *rids, const store_usage_event *base,
                            unsigned char *skip)
{
    squ_dec d;
    squ_row row;
    int got;
    squ_dec_start(&d, sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 0),
                  sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                  sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3));
    while ((got = squ_dec_next(&d, &row)) == 1) {
        if (row.request_id_len >= sizeof(ev[0].request_id)) continue;
        uint32_t hit = rids->slot[store_rids_slot(rids, row.request_id, row.request_id_len)];
        /* an event of this chunk (the table covers the whole batch) */
        if (hit && &base[hit - 1] >= ev && &base[hit - 1] < ev + k &&
            base[hit - 1].account_id == row.account_id)
            skip[&base[hit - 1] - ev] = 1;
    }
    return got < 0 ? -1 : 0;
}

/* Runs a look-up statement (bound) over its blocks; releases it. */
static int store_seen_run(store_t *s, sqlite3_stmt *st, const store_usage_event *ev, size_t k,
                          const store_rids *rids, const store_usage_event *base,
                          unsigned char *skip)
{
    int rc = SQLITE_DONE, ret = STORE_OK;
    while (ret == STORE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        if (store_seen_block(st, ev, k, rids, base, skip) != 0)
            ret = store_seterr(s, "ledger: a damaged usage block of account %lld",
                               (long long)sqlite3_column_int64(st, 4));
    if (ret == STORE_OK && rc != SQLITE_DONE) ret = store_dberr(s, "ledger: stored usage");
    store_release(st);
    return ret;
}

static int store_seen(store_t *s, const store_usage_event *ev, size_t k, const int64_t *at,
                      const store_rids *rids, const store_usage_event *base, unsigned char *skip)
{
    store_groups grp, *g = &grp; /* 4 KiB: the ledger thread's stack holds it */
    store_group(g, ev, k, skip);
    int64_t all_lo = INT64_MAX, all_hi = INT64_MIN;
    for (size_t q = 0; q < g->n; q++) {
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t r = g->start[q]; r < g->start[q + 1]; r++) {
            int64_t t = ev[g->idx[r]].created_at_ms;
            /* stamped by this write (none given): a stored copy has another time */
            if (t <= 0) t = at[g->idx[r]], lo = INT64_MIN, hi = INT64_MAX;
            if (t < lo) lo = t;
            if (t > hi) hi = t;
        }
        if (lo < all_lo) all_lo = lo;
        if (hi > all_hi) all_hi = hi;
        sqlite3_stmt *st = store_stmt(s, ST_BLOCKS_SEEN);
        if (!st) return STORE_ERR;
        sqlite3_bind_int64(st, 1, ev[g->idx[g->start[q]]].account_id);
        sqlite3_bind_int64(st, 2, lo);
        sqlite3_bind_int64(st, 3, hi);
        if (store_seen_run(s, st, ev, k, rids, base, skip) != STORE_OK) return STORE_ERR;
    }
    if (g->n == 0) return STORE_OK;
    sqlite3_stmt *st = store_stmt(s, ST_RECENT_SEEN);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, all_lo);
    sqlite3_bind_int64(st, 2, all_hi);
    return store_seen_run(s, st, ev, k, rids, base, skip);
}

/* Rows usage_recent may hold before a commit moves them into usage_blocks. A commit of many
 * accounts has a row or two of each; a block an account into usage_blocks, with its two indexes,
 * was two leaf pages an account written into the WAL by every commit (round 22), and a block an
 * account into usage_recent still an insert an account (round 23). So a commit of at least
 * STORE_RECENT_ACCOUNTS accounts writes the groups of fewer than STORE_RECENT_ROWS rows of each
 * chunk as one block of several accounts into usage_recent, which has no index, and a move
 * writes each account's waiting rows as one block (store_recent_move): an account's index
 * entries are written once a move instead of once a commit. A commit of fewer accounts touches
 * few pages, and a busy account's group of a chunk, hundreds of rows, pays its index entries
 * over its rows: those go straight into usage_blocks. A test may lower the first two
 * (store_ledger_set_recent). */
#define STORE_RECENT_MAX 8192
#define STORE_RECENT_ACCOUNTS 8
#define STORE_RECENT_ROWS 32
static int64_t store_recent_max = STORE_RECENT_MAX;
static size_t store_recent_accounts = STORE_RECENT_ACCOUNTS;

/* Writes an encoded block with statement id (ST_BLOCK_INSERT, ST_RECENT_INSERT). */
static int store_block_put(store_t *s, int id, const squ_enc *e)
{
    sqlite3_stmt *st = store_stmt(s, id);
    if (!st) return STORE_ERR;
    int rc = squ_block_store(st, e);
    store_release(st);
    return rc == SQLITE_OK ? STORE_OK : store_dberr(s, "ledger: usage block insert");
}

/* The block of group grp's rows, id0 + their index in the chunk each, or (grp == SIZE_MAX) of
 * the rows that small[] marks, in chunk order, several accounts' (usage_recent's). */
static int store_block(store_t *s, const store_usage_event *ev, const int64_t *at, int64_t id0,
                       const store_groups *g, size_t grp, const unsigned char *small, size_t k)
{
    sq *q = SQ(s);
    int mixed = grp == SIZE_MAX;
    size_t from = mixed ? 0 : g->start[grp], to = mixed ? k : g->start[grp + 1];
    int64_t lo = INT64_MAX;
    for (size_t r = from; r < to; r++) {
        size_t i = mixed ? r : g->idx[r];
        if ((!mixed || small[i]) && at[i] < lo) lo = at[i];
    }
    squ_enc e;
    squ_enc_start(&e, q->block, lo);
    if (mixed) squ_enc_mixed(&e);
    for (size_t r = from; r < to; r++) {
        size_t i = mixed ? r : g->idx[r];
        if (mixed && !small[i]) continue;
        const store_usage_event *x = &ev[i];
        const usage_counts *u = &x->usage;
        squ_row row = {
            .id = id0 + (int64_t)i,
            .account_id = x->account_id,
            .key_id = x->key_id,
            .prompt = usage_prompt(u), /* cannot overflow: store_check_event */
            .completion = u->output,
            .charged = x->charged_nusd,
            .status = x->status,
            .estimated = x->estimated ? 1 : 0,
            .latency = x->latency_ms,
            .created = at[i],
            .cached_tokens = u->cached_input,
            .cache_write = u->cache_write,
            .cache_write_1h = u->cache_write_1h,
            .reasoning = u->reasoning,
            .cached = x->cached ? 1 : 0,
            .request_id = x->request_id,
            .request_id_len = strnlen(x->request_id, sizeof(x->request_id)),
            .model = x->model,
            .model_len = strnlen(x->model, sizeof(x->model)),
            .provider = x->provider,
            .provider_len = strnlen(x->provider, sizeof(x->provider)),
        };
        if (squ_enc_add(&e, &row) != 0)
            return store_seterr(s, "ledger: request %s: cannot be encoded", x->request_id);
    }
    if (e.n == 0) return STORE_OK;
    if (store_block_put(s, mixed ? ST_RECENT_INSERT : ST_BLOCK_INSERT, &e) != STORE_OK)
        return STORE_ERR;
    if (mixed && q->recent >= 0) q->recent += (int64_t)e.n;
    return STORE_OK;
}

/* A chunk's blocks (k events, the groups g): a block a group, but with many accounts the small
 * groups' rows together in one block of usage_recent. */
static int store_blocks(store_t *s, const store_usage_event *ev, const int64_t *at, int64_t id0,
                        const store_groups *g, size_t k)
{
    sq *q = SQ(s);
    unsigned char small[STORE_LEDGER_ROWS];
    size_t nsmall = 0;
    if (!q->block && !(q->block = malloc(SQU_BLOCK_MAX)))
        return store_seterr(s, "ledger: out of memory");
    int many = g->n >= store_recent_accounts;
    memset(small, 0, k);
    for (size_t grp = 0; grp < g->n; grp++) {
        size_t rows = (size_t)(g->start[grp + 1] - g->start[grp]);
        if (many && rows < STORE_RECENT_ROWS) {
            for (size_t r = g->start[grp]; r < g->start[grp + 1]; r++)
                small[g->idx[r]] = 1;
            nsmall += rows;
        } else if (store_block(s, ev, at, id0, g, grp, NULL, k) != STORE_OK) {
            return STORE_ERR;
        }
    }
    return nsmall ? store_block(s, ev, at, id0, g, SIZE_MAX, small, k) : STORE_OK;
}

void store_ledger_set_recent(int64_t rows, int accounts)
{
    store_recent_max = rows > 0 ? rows : STORE_RECENT_MAX;
    store_recent_accounts = accounts > 0 ? (size_t)accounts : STORE_RECENT_ACCOUNTS;
}

/* Rows a move holds in memory at once: more waiting (a commit's rows on top of the limit, a
 * store written by hand) are moved in parts, each its own blocks. */
#define STORE_FOLD_ROWS 16384

/* A waiting block as a move loaded it: its columns, its bytes at off in the move's buffer. */
typedef struct store_fold_blk {
    int64_t id, account, first_id, n, min_created, max_created;
    size_t off, len;
} store_fold_blk;

/* A waiting row, by which a move sorts them. */
typedef struct store_fold_key {
    int64_t account, id;
    uint32_t row;
} store_fold_key;

typedef struct store_fold {
    unsigned char *bytes; /* the loaded blocks' bytes */
    size_t len, cap;
    store_fold_blk *blk;
    size_t nblk, blk_cap;
    int64_t rows; /* the loaded blocks' rows */
    squ_row *row; /* decoded, texts into bytes */
    store_fold_key *key, *sorted;
    /* store_fold_order's: an account's group (2 * STORE_FOLD_ROWS slots, 0 free, else the group
     * + 1), each row's group, the groups (account, rows, where the next goes) */
    uint32_t *slot, *grp_of;
    struct store_fold_grp {
        int64_t account;
        uint32_t n, at;
    } * grp;
} store_fold;

#define STORE_FOLD_SLOTS (2 * STORE_FOLD_ROWS)

static int store_fold_cmp(const void *a, const void *b)
{
    const store_fold_key *x = a, *y = b;
    if (x->account != y->account) return x->account < y->account ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Orders key[0..n) by account and id. The move reads usage_recent by id and a block's rows come
 * in id order, so the ids rise already: grouping the rows by account, each group's in the order
 * they came, is that order, in one pass and a sort of the distinct accounts (a sort of the rows
 * cost ~650 instructions a row, a fifth of the ledger's whole work over 256 accounts; round
 * 28). Rows whose ids do not rise (a store damaged or written by hand) are sorted. */
static void store_fold_order(store_fold *f, size_t n)
{
    int rising = 1;
    for (size_t i = 1; i < n && rising; i++)
        rising = f->key[i].id > f->key[i - 1].id;
    if (!rising) {
        qsort(f->key, n, sizeof(*f->key), store_fold_cmp);
        return;
    }
    memset(f->slot, 0, STORE_FOLD_SLOTS * sizeof(*f->slot));
    uint32_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t a = f->key[i].account;
        uint64_t h = (uint64_t)a * 0x9E3779B97F4A7C15ULL;
        size_t j = (size_t)(h >> 40) & (STORE_FOLD_SLOTS - 1);
        while (f->slot[j] && f->grp[f->slot[j] - 1].account != a)
            j = (j + 1) & (STORE_FOLD_SLOTS - 1);
        if (!f->slot[j]) {
            f->grp[ng] = (struct store_fold_grp){a, 0, 0};
            f->slot[j] = ++ng;
        }
        f->grp_of[i] = f->slot[j] - 1;
        f->grp[f->slot[j] - 1].n++;
    }
    /* the groups in account order (sorted as keys: account, 0, the group), then each one's
     * place; the rows then overwrite that order, which is no longer needed */
    for (uint32_t g = 0; g < ng; g++)
        f->sorted[g] = (store_fold_key){f->grp[g].account, 0, g};
    qsort(f->sorted, ng, sizeof(*f->sorted), store_fold_cmp);
    uint32_t at = 0;
    for (uint32_t k = 0; k < ng; k++) {
        struct store_fold_grp *g = &f->grp[f->sorted[k].row];
        g->at = at;
        at += g->n;
    }
    for (size_t i = 0; i < n; i++)
        f->sorted[f->grp[f->grp_of[i]].at++] = f->key[i];
    store_fold_key *t = f->key;
    f->key = f->sorted;
    f->sorted = t;
}

/* Copies a waiting block (its columns b, its bytes) into usage_blocks as it is: one that does
 * not decode (the audit reports it; the ledger must not stop on it). */
static int store_fold_copy(store_t *s, const store_fold_blk *b, const void *bytes)
{
    squ_enc e = {
        /* an empty blob stays a blob (NULL would bind SQL NULL, which the column refuses) */
        .buf = (unsigned char *)(bytes ? bytes : ""),
        .len = b->len,
        .n = (size_t)b->n,
        .account_id = b->account,
        .first_id = b->first_id,
        .last_id = b->id,
        .min_created = b->min_created,
        .max_created = b->max_created,
    };
    return store_block_put(s, ST_BLOCK_INSERT, &e);
}

/* The first id of the account's first block in usage_blocks that ends at or after id (one
 * written straight there since the last move): a run of its rows from id on stops before it. */
static int store_fold_barrier(store_t *s, int64_t account, int64_t id, int64_t *barrier)
{
    sqlite3_stmt *st = store_stmt(s, ST_BLOCK_AFTER);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, account);
    sqlite3_bind_int64(st, 2, id);
    int rc = sqlite3_step(st);
    *barrier = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : INT64_MAX;
    store_release(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK
                                                 : store_dberr(s, "ledger: moving recent blocks");
}

/* Writes the sorted rows key[from..to) (one account's, ids rising) as blocks. A row the encoder
 * refuses after others (an id repeated in a damaged store) starts a block of its own. */
static int store_fold_run(store_t *s, const store_fold *f, size_t from, size_t to)
{
    sq *q = SQ(s);
    int64_t lo = INT64_MAX;
    for (size_t i = from; i < to; i++)
        if (f->row[f->key[i].row].created < lo) lo = f->row[f->key[i].row].created;
    squ_enc e;
    squ_enc_start(&e, q->block, lo);
    for (size_t i = from; i < to; i++) {
        const squ_row *r = &f->row[f->key[i].row];
        if (squ_enc_add(&e, r) == 0) continue;
        if (e.n == 0 || store_block_put(s, ST_BLOCK_INSERT, &e) != STORE_OK) {
            if (e.n == 0) store_seterr(s, "ledger: moving recent blocks: a row cannot be encoded");
            return STORE_ERR;
        }
        squ_enc_start(&e, q->block, lo);
        if (squ_enc_add(&e, r) != 0)
            return store_seterr(s, "ledger: moving recent blocks: a row cannot be encoded");
    }
    return e.n ? store_block_put(s, ST_BLOCK_INSERT, &e) : STORE_OK;
}

/* Decodes the loaded blocks, sorts their rows by account and id, and writes each account's rows
 * as blocks: a block ends at SQU_ROWS_MAX rows and before a block of the account that was
 * written straight into usage_blocks meanwhile. */
static int store_fold_write(store_t *s, store_fold *f)
{
    size_t nrows = 0;
    for (size_t b = 0; b < f->nblk; b++) {
        const store_fold_blk *k = &f->blk[b];
        squ_dec d;
        squ_dec_start(&d, k->account, k->first_id, k->n, k->min_created, f->bytes + k->off, k->len);
        size_t at = nrows;
        while (nrows - at < (size_t)k->n && squ_dec_next(&d, &f->row[nrows]) == 1)
            nrows++;
        squ_row end;
        if (nrows - at != (size_t)k->n || squ_dec_next(&d, &end) != 0) {
            nrows = at;
            if (store_fold_copy(s, k, f->bytes + k->off) != STORE_OK) return STORE_ERR;
        }
    }
    for (size_t i = 0; i < nrows; i++)
        f->key[i] = (store_fold_key){f->row[i].account_id, f->row[i].id, (uint32_t)i};
    store_fold_order(f, nrows);
    for (size_t i = 0; i < nrows;) {
        int64_t account = f->key[i].account, barrier;
        if (store_fold_barrier(s, account, f->key[i].id, &barrier) != STORE_OK) return STORE_ERR;
        size_t j = i + 1;
        while (j < nrows && j - i < SQU_ROWS_MAX && f->key[j].account == account &&
               f->key[j].id < barrier)
            j++;
        if (store_fold_run(s, f, i, j) != STORE_OK) return STORE_ERR;
        i = j;
    }
    f->len = f->nblk = 0;
    f->rows = 0;
    return STORE_OK;
}

/* Loads the scanned block into the move's memory (or, when it cannot be a block, copies it as it
 * is). */
static int store_fold_load(store_t *s, store_fold *f, sqlite3_stmt *scan)
{
    store_fold_blk b = {
        .id = sqlite3_column_int64(scan, 0),
        .account = sqlite3_column_int64(scan, 1),
        .first_id = sqlite3_column_int64(scan, 2),
        .n = sqlite3_column_int64(scan, 3),
        .min_created = sqlite3_column_int64(scan, 4),
        .max_created = sqlite3_column_int64(scan, 5),
        .len = (size_t)sqlite3_column_bytes(scan, 6),
    };
    const void *blob = sqlite3_column_blob(scan, 6);
    if (b.n < 1 || b.n > SQU_ROWS_MAX || b.len > (size_t)b.n * SQU_ROW_MAX || !blob)
        return store_fold_copy(s, &b, blob);
    if (f->rows + b.n > STORE_FOLD_ROWS && store_fold_write(s, f) != STORE_OK) return STORE_ERR;
    if (f->len + b.len > f->cap) {
        size_t cap = f->cap ? f->cap : 256 * 1024;
        while (cap < f->len + b.len)
            cap *= 2;
        unsigned char *p = realloc(f->bytes, cap);
        if (!p) return store_seterr(s, "ledger: out of memory");
        f->bytes = p;
        f->cap = cap;
    }
    if (f->nblk == f->blk_cap) {
        size_t cap = f->blk_cap ? f->blk_cap * 2 : 1024;
        store_fold_blk *p = realloc(f->blk, cap * sizeof(*p));
        if (!p) return store_seterr(s, "ledger: out of memory");
        f->blk = p;
        f->blk_cap = cap;
    }
    b.off = f->len;
    memcpy(f->bytes + f->len, blob, b.len);
    f->len += b.len;
    f->blk[f->nblk++] = b;
    f->rows += b.n;
    return STORE_OK;
}

/*
 * Moves usage_recent into usage_blocks: its rows, of many accounts, sorted by account and id and
 * written a block an account (SQU_ROWS_MAX rows at most). Reading is unchanged by it: a block
 * holds the account's rows of consecutive commits in id order, and stops before any block of the
 * account that was written straight into usage_blocks meanwhile, so an account's blocks stay
 * disjoint id ranges in order (sqlite_usage.c's reading by account relies on it).
 */
static int store_recent_move(store_t *s)
{
    sq *q = SQ(s);
    store_fold f = {0};
    int ret = STORE_ERR;
    if (!q->block && !(q->block = malloc(SQU_BLOCK_MAX))) goto oom;
    /* store_fold_load writes the loaded rows before they would pass STORE_FOLD_ROWS */
    if (!(f.row = malloc(STORE_FOLD_ROWS * sizeof(*f.row))) ||
        !(f.key = malloc(STORE_FOLD_ROWS * sizeof(*f.key))) ||
        !(f.sorted = malloc(STORE_FOLD_ROWS * sizeof(*f.sorted))) ||
        !(f.slot = malloc(STORE_FOLD_SLOTS * sizeof(*f.slot))) ||
        !(f.grp_of = malloc(STORE_FOLD_ROWS * sizeof(*f.grp_of))) ||
        !(f.grp = malloc(STORE_FOLD_ROWS * sizeof(*f.grp))))
        goto oom;
    sqlite3_stmt *scan = store_stmt(s, ST_RECENT_SCAN);
    if (!scan) goto out;
    int rc = SQLITE_DONE;
    ret = STORE_OK;
    while (ret == STORE_OK && (rc = sqlite3_step(scan)) == SQLITE_ROW)
        ret = store_fold_load(s, &f, scan);
    if (ret == STORE_OK && rc != SQLITE_DONE) ret = store_dberr(s, "ledger: reading recent blocks");
    store_release(scan);
    if (ret == STORE_OK) ret = store_fold_write(s, &f);
    goto out;
oom:
    store_seterr(s, "ledger: out of memory");
out:
    free(f.bytes);
    free(f.blk);
    free(f.row);
    free(f.key);
    free(f.sorted);
    free(f.slot);
    free(f.grp_of);
    free(f.grp);
    return ret;
}

/* Inside the batch transaction, after its blocks: moves usage_recent into usage_blocks once it
 * holds store_recent_max rows (counted once a handle, then kept by its commits; a failed
 * commit makes the count unknown again). */
static int store_recent_fold(store_t *s)
{
    sq *q = SQ(s);
    if (q->recent < 0 &&
        store_int_query(s, ST_RECENT_COUNT, &q->recent, "ledger: recent blocks") != STORE_OK)
        return STORE_ERR;
    if (q->recent < store_recent_max) return STORE_OK;
    if (store_recent_move(s) != STORE_OK ||
        store_simple(s, ST_RECENT_CLEAR, "ledger: clearing recent blocks") != STORE_OK)
        return STORE_ERR;
    q->recent = 0;
    return STORE_OK;
}

/*
 * Writes k events (ev[0..k), indices base.. of the batch; k at most STORE_LEDGER_ROWS): their
 * usage rows, ids *next_id.. (a charged row is its own usage transaction: migration 9), the
 * notices of those that were new and charged, and adds their charges to the sums; inside the
 * batch transaction.
 *
 * The rows go in blocks, one per account (sqlite_usage.c). An event is skipped when its request
 * id came earlier in the batch (dup) or, for a batch that may have been offered before (!first),
 * when a stored block has it: a retry after a failed or doubtful commit, an earlier run's
 * journal. A skipped row leaves its id unused.
 */
static int store_ledger_rows(store_t *s, const store_usage_event *ev, size_t base, size_t k,
                             int first, const store_rids *rids, const unsigned char *dup,
                             int64_t *next_id, store_sums *accts, store_sums *keys,
                             store_sums *free_keys)
{
    int64_t id0 = *next_id;
    unsigned char skip[STORE_LEDGER_ROWS];
    int64_t at[STORE_LEDGER_ROWS], now = 0;
    for (size_t i = 0; i < k; i++) {
        if (ev[i].created_at_ms > 0)
            at[i] = ev[i].created_at_ms;
        else
            at[i] = now ? now : (now = ms_now_ms());
        skip[i] = dup[i];
    }
    if (!first && store_seen(s, ev, k, at, rids, ev - base, skip) != STORE_OK) return STORE_ERR;
    store_groups g;
    store_group(&g, ev, k, skip);
    if (store_blocks(s, ev, at, id0, &g, k) != STORE_OK) return STORE_ERR;
    *next_id = id0 + (int64_t)k;

    size_t idx[STORE_LEDGER_ROWS], m = 0;
    for (size_t i = 0; i < k; i++) {
        if (!skip[i] && ev[i].charged_nusd > 0)
            idx[m++] = i;
        else if (!skip[i] && free_keys) /* amount 0: cannot overflow */
            (void)store_sums_add(free_keys, ev[i].key_id, ev[i].account_id, 0, base + i);
    }
    for (size_t r = 0; r < m; r++)
        if (ev[idx[r]].notice_threshold_nusd > 0 &&
            store_webhook_insert(s, &ev[idx[r]], at[idx[r]]) != STORE_OK)
            return STORE_ERR;
    for (size_t r = 0; r < m; r++) {
        const store_usage_event *e = &ev[idx[r]];
        if (store_sums_add(accts, e->account_id, e->account_id, e->charged_nusd, base + idx[r]) !=
                0 ||
            store_sums_add(keys, e->key_id, e->account_id, e->charged_nusd, base + idx[r]) != 0)
            return store_seterr(s, "ledger: request %s: the batch's charges overflow",
                                e->request_id);
    }
    return STORE_OK;
}

/* Reads (set == 0) or writes meta.account_seq; inside a transaction. */
static int store_account_seq_io(store_t *s, int set, int64_t *seq)
{
    sqlite3_stmt *st = store_stmt(s, set ? ST_ACCOUNT_SEQ_SET : ST_ACCOUNT_SEQ_GET);
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    if (set) {
        sqlite3_bind_int64(st, 1, *seq);
        if (store_step_done(s, st, "ledger: save account sequence") != STORE_OK) return STORE_ERR;
        if (sqlite3_changes(SQ(s)->db) != 1)
            return store_seterr(s, "ledger: account sequence missing from meta");
        return STORE_OK;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ret = store_seterr(s, "ledger: account sequence missing from meta");
    else
        ret = store_dberr(s, "ledger: read account sequence");
    store_release(st);
    return ret;
}

/* ---- a handle's tables of sums by (id, account) ---- */

/* Entries a table may hold: past it the sums are dropped and the posting reads the rows back
 * (~40 MB for both tables at most). */
#define SQ_OWED_MAX ((size_t)1 << 20)

static void sq_owed_clear(struct sq_owed *o)
{
    if (o->v) memset(o->v, 0, o->cap * sizeof *o->v);
    o->n = 0;
}

static struct sq_owed_ent *sq_owed_slot(struct sq_owed_ent *v, size_t cap, int64_t id,
                                        int64_t account_id)
{
    uint64_t h = ((uint64_t)id * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)account_id;
    size_t i = (size_t)(h ^ (h >> 29)) & (cap - 1);
    while (v[i].id && (v[i].id != id || v[i].account_id != account_id))
        i = (i + 1) & (cap - 1);
    return &v[i];
}

/* Adds sum to (id, account_id); -1 when it would overflow or the table is full or out of
 * memory (the caller then forgets the sums). */
static int sq_owed_add(struct sq_owed *o, int64_t id, int64_t account_id, int64_t sum)
{
    if (o->n + 1 > o->cap / 2) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        if (o->n >= SQ_OWED_MAX) return -1;
        struct sq_owed_ent *v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; i < o->cap; i++)
            if (o->v[i].id) *sq_owed_slot(v, cap, o->v[i].id, o->v[i].account_id) = o->v[i];
        free(o->v);
        o->v = v;
        o->cap = cap;
    }
    struct sq_owed_ent *e = sq_owed_slot(o->v, o->cap, id, account_id);
    if (e->id) return __builtin_add_overflow(e->sum, sum, &e->sum) ? -1 : 0;
    *e = (struct sq_owed_ent){id, account_id, sum};
    o->n++;
    return 0;
}

static int sq_owed_has(const struct sq_owed *o, int64_t id, int64_t account_id)
{
    return o->cap && id > 0 && sq_owed_slot(o->v, o->cap, id, account_id)->id == id;
}

/* A deferring ledger handle remembers the (key, account) pairs its commits found, since nothing
 * ever deletes a key or moves it to another account: a key is looked up once a process, not once
 * a batch. A table of sums whose sums nobody reads; at SQ_CHECKED_MAX pairs (~3 MB) it starts
 * over. */
#define SQ_CHECKED_MAX ((size_t)1 << 16)
static void sq_checked_add(sq *q, int64_t key, int64_t account)
{
    if (key <= 0) return;
    if (q->checked.n >= SQ_CHECKED_MAX) sq_owed_clear(&q->checked);
    if (sq_owed_add(&q->checked, key, account, 0) != 0) sq_owed_clear(&q->checked);
}

/* The keys the batch named that no charge checked (free events' keys; on a deferring handle every
 * key, as nothing is charged): each must exist and belong to the event's account. Pairs a
 * deferring handle found before are not looked up again. */
static int store_check_free_keys(store_t *s, const store_sums *free_keys, const store_sums *keys,
                                 const store_usage_event *ev)
{
    sq *q = SQ(s);
    for (size_t i = 0; i < free_keys->n; i++) {
        const store_sum *k = &free_keys->v[i];
        if (keys && store_sums_has(keys, k->id, k->account_id)) continue;
        if (q->defer && sq_owed_has(&q->checked, k->id, k->account_id)) continue;
        sqlite3_stmt *st = store_stmt(s, ST_KEY_OF_ACCOUNT);
        if (!st) return STORE_ERR;
        sqlite3_bind_int64(st, 1, k->id);
        sqlite3_bind_int64(st, 2, k->account_id);
        int rc = sqlite3_step(st);
        store_release(st);
        if (rc == SQLITE_DONE)
            return store_seterr(s, "ledger: request %s: key %lld of account %lld not found",
                                ev[k->first].request_id, (long long)k->id,
                                (long long)k->account_id);
        if (rc != SQLITE_ROW) return store_dberr(s, "ledger: check key");
        if (q->defer) sq_checked_add(q, k->id, k->account_id);
    }
    return STORE_OK;
}

/* ---- posting: charges into balances and spends ---- */

static int store_posted_get(store_t *s, int64_t *mark)
{
    return store_int_query(s, ST_POSTED_GET, mark, "ledger: read the posting mark");
}

static int store_posted_set(store_t *s, int64_t mark)
{
    sqlite3_stmt *st = store_stmt(s, ST_POSTED_SET);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, mark);
    if (store_step_done(s, st, "ledger: move the posting mark") != STORE_OK) return STORE_ERR;
    if (sqlite3_changes(SQ(s)->db) != 1) return store_seterr(s, "ledger: posting mark missing");
    return STORE_OK;
}

/* Before a deferring commit's rows (`before`: the id before the first): a mark that says "all
 * posted" becomes that id, so the rows are past it. Any other mark is left as it is. */
static int store_posted_real(store_t *s, int64_t before)
{
    int64_t mark;
    if (store_posted_get(s, &mark) != STORE_OK) return STORE_ERR;
    return mark == SQ_ALL_POSTED ? store_posted_set(s, before) : STORE_OK;
}

/* A posting's account: its balance lowered by sum under a fresh sequence value. */
static int store_post_account(store_t *s, int64_t account, int64_t sum, int64_t *seq)
{
    int rc = store_balance_lower(s, account, sum, ++*seq, "ledger: posting to an account");
    if (rc == STORE_LIMIT)
        return store_seterr(s, "ledger: posting: account %lld balance would go below zero",
                            (long long)account);
    if (rc == STORE_NOTFOUND)
        return store_seterr(s, "ledger: posting: account %lld not found", (long long)account);
    return rc;
}

/* A posting's key: its spend raised by sum (the key must be the account's). */
static int store_post_key(store_t *s, int64_t key, int64_t account, int64_t sum)
{
    int rc = store_spend_raise(s, key, account, sum, "ledger: posting to a key");
    if (rc == STORE_NOTFOUND)
        return store_seterr(s,
                            "ledger: posting: key %lld of account %lld not found (or its "
                            "spend would overflow)",
                            (long long)key, (long long)account);
    return rc;
}

/* Posts the charges of the usage rows past the mark up to `upto`: each account's sum and each
 * key's once, accounts in id order (the pages of the accounts table in order, each written once
 * however many of its rows change), an account under a fresh sequence value (*seq: the counter
 * the caller read and writes back); then the mark. Inside a write transaction. */
static int store_post(store_t *s, int64_t upto, int64_t *seq, int64_t *mark_read)
{
    int64_t mark, last, acct = 0, acct_sum = 0;
    if (store_posted_get(s, &mark) != STORE_OK) return STORE_ERR;
    if (mark_read) *mark_read = mark;
    if (upto <= mark) return STORE_OK;
    /* nothing past the mark (a commit that posts at once finds this): its caller moves it */
    if (store_int_query(s, ST_LAST_USAGE_ID, &last, "ledger: newest usage id") != STORE_OK)
        return STORE_ERR;
    if (last <= mark) return STORE_OK;
    sqlite3_stmt *st = store_stmt(s, ST_UNPOSTED_SUMS);
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, mark);
    sqlite3_bind_int64(st, 2, upto);
    int rc, ret = STORE_OK;
    while (ret == STORE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t a = sqlite3_column_int64(st, 0), k = sqlite3_column_int64(st, 1),
                sum = sqlite3_column_int64(st, 2);
        if (a != acct) {
            if (acct && store_post_account(s, acct, acct_sum, seq) != STORE_OK) ret = STORE_ERR;
            acct = a;
            acct_sum = 0;
        }
        if (__builtin_add_overflow(acct_sum, sum, &acct_sum))
            ret = store_seterr(s, "ledger: posting: account %lld's charges overflow", (long long)a);
        else if (ret == STORE_OK && store_post_key(s, k, a, sum) != STORE_OK)
            ret = STORE_ERR;
    }
    if (ret == STORE_OK && rc != SQLITE_DONE) ret = store_dberr(s, "ledger: posting: read charges");
    store_release(st);
    if (ret == STORE_OK && acct && store_post_account(s, acct, acct_sum, seq) != STORE_OK)
        ret = STORE_ERR;
    return ret == STORE_OK ? store_posted_set(s, upto) : ret;
}

/* ---- a deferring handle's sums of what it has not posted ---- */

/* The sums are not known: the next posting reads the rows past the mark. */
static void sq_owed_forget(sq *q)
{
    sq_owed_clear(&q->owed_accts);
    sq_owed_clear(&q->owed_keys);
    q->owed_from = -1;
}

/* Known again, empty, from the mark `mark` on (after a posting, or one that found nothing). */
static void sq_owed_restart(sq *q, int64_t mark)
{
    sq_owed_clear(&q->owed_accts);
    sq_owed_clear(&q->owed_keys);
    q->owed_from = q->owed_upto = mark;
}

/* After a deferring commit that ended with id `upto`: its sums into the handle's. */
static void sq_owed_commit(sq *q, const store_sums *accts, const store_sums *keys, int64_t upto)
{
    if (q->owed_from < 0) return;
    for (size_t i = 0; i < accts->n; i++)
        if (sq_owed_add(&q->owed_accts, accts->v[i].id, accts->v[i].id, accts->v[i].sum) != 0)
            goto forget;
    for (size_t i = 0; i < keys->n; i++)
        if (sq_owed_add(&q->owed_keys, keys->v[i].id, keys->v[i].account_id, keys->v[i].sum) != 0)
            goto forget;
    q->owed_upto = upto;
    return;
forget:
    sq_owed_forget(q);
}

static int sq_owed_cmp(const void *x, const void *y)
{
    const struct sq_owed_ent *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Posts the handle's sums (the rows past the mark are all theirs): accounts, then keys, each in
 * id order (pages in order, each written once). Inside the posting's transaction. */
static int sq_owed_post(store_t *s, int64_t *seq)
{
    struct sq_owed *t[2] = {&SQ(s)->owed_accts, &SQ(s)->owed_keys};
    for (int k = 0; k < 2; k++) {
        struct sq_owed *o = t[k];
        size_t n = 0;
        for (size_t i = 0; i < o->cap; i++) /* packed to the front: the table is cleared after */
            if (o->v[i].id) o->v[n++] = o->v[i];
        if (n > 1) qsort(o->v, n, sizeof *o->v, sq_owed_cmp);
        for (size_t i = 0; i < n; i++) {
            const struct sq_owed_ent *e = &o->v[i];
            if (e->sum == 0) continue;
            if ((k == 0 ? store_post_account(s, e->id, e->sum, seq)
                        : store_post_key(s, e->id, e->account_id, e->sum)) != STORE_OK)
                return STORE_ERR;
        }
    }
    return STORE_OK;
}

/* store_ledger_post: everything committed and not yet posted, in one transaction. Safe from any
 * handle and process at any time: the rows past the mark and the mark move together, and a
 * second poster finds nothing left. A deferring handle writes the sums it kept as it committed
 * when the rows past the mark are all its own (the mark is where its sums start, and nothing
 * but its commits wrote usage rows since); otherwise the rows are read back and summed. */
static int sq_ledger_post(store_t *s)
{
    sq *q = SQ(s);
    int64_t last = 0, mark = 0, seq0 = 0, seq = 0;
    if (store_int_query(s, ST_LAST_USAGE_ID, &last, "ledger: newest usage id") != STORE_OK ||
        store_posted_get(s, &mark) != STORE_OK)
        return STORE_ERR;
    if (last <= mark) { /* the usual case between two postings: no write */
        if (q->defer && (q->owed_from != mark || q->owed_accts.n || q->owed_keys.n))
            sq_owed_restart(q, mark);
        return STORE_OK;
    }
    if (store_begin(s) != STORE_OK) return STORE_ERR;
    int ret = STORE_ERR;
    if (store_account_seq_io(s, 0, &seq0) != STORE_OK ||
        store_int_query(s, ST_LAST_USAGE_ID, &last, "ledger: newest usage id") != STORE_OK ||
        store_posted_get(s, &mark) != STORE_OK)
        goto out;
    seq = seq0;
    if (q->defer && q->owed_from >= 0 && q->owed_from == mark && last <= q->owed_upto) {
        if (sq_owed_post(s, &seq) != STORE_OK || store_posted_set(s, last) != STORE_OK) goto out;
    } else if (store_post(s, last, &seq, NULL) != STORE_OK) {
        goto out;
    }
    if (seq != seq0 && store_account_seq_io(s, 1, &seq) != STORE_OK) goto out;
    ret = store_commit(s);
out:
    if (ret != STORE_OK) {
        store_rollback(s);
        sq_owed_forget(q); /* the sums were packed; the rows are read back next time */
    } else if (q->defer) {
        sq_owed_restart(q, last);
    }
    return ret;
}

static int sq_ledger_defer(store_t *s, int on)
{
    SQ(s)->defer = on != 0;
    sq_owed_forget(SQ(s)); /* known from the next posting on */
    return STORE_OK;
}

/* Foreign-key lookups cost every row two b-tree searches and SQLite's bookkeeping (~12% of a
 * batch of 1,000, test_ledger_store's throughput case). Switching them off and on around each
 * batch would cost more than it saves: the pragma makes SQLite prepare every statement again.
 * So the ledger's own handle, which writes nothing else, goes without them for good, and its
 * batches check what they name instead: a charged account and key by their charge (an UPDATE
 * that must change a row, the key's restricted to the account), a key only free events named by
 * store_check_free_keys. Nothing ever deletes an account or a key. */
static int sq_ledger_writer(store_t *s)
{
    /* A small page cache too: the handle appends, so what it keeps is mostly pages it wrote and
     * never reads again; with the other handles' 32 MB it grew by every batch (a fresh page, a
     * malloc and its page faults, ~0.5 us a request under load) until full, ~400,000 requests
     * in. The right edges of the tables and indexes it writes stay hot within 2 MB.
     * And statement journals in memory: a statement that may have to be undone alone keeps a
     * copy of each page it changes, past 64 KiB in a temporary file (created, unlinked, written,
     * closed) unless temp_store says memory. (The ledger's multi-row usage INSERT made 312 such
     * files in 2,000 batches; its blocks are single-row INSERTs now, but the pragma costs
     * nothing.) */
    if (store_exec(s, "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-2048; PRAGMA temp_store=MEMORY",
                   "ledger writer") != STORE_OK)
        return STORE_ERR;
    SQ(s)->ledger_writer = 1;
    return STORE_OK;
}

static int sq_ledger_commit(store_t *s, const store_usage_event *ev, size_t n, int first)
{
    int64_t seq0 = 0, seq = 0, next_id = 0, mark = 0;
    int ret = STORE_ERR, check = SQ(s)->ledger_writer, defer = SQ(s)->defer;
    store_sums accts = {0}, keys = {0}, free_keys = {0};
    store_rids rids = {0};
    unsigned char *dup = NULL;

    if (n == 0) return STORE_OK;
    if (!ev) return store_seterr(s, "ledger: no events");
    if (n > UINT32_MAX / 4) return store_seterr(s, "ledger: batch too large");
    for (size_t i = 0; i < n; i++)
        if (store_check_event(s, &ev[i]) != STORE_OK) return STORE_ERR;
    if (store_sums_init(&accts, n) != 0 || store_sums_init(&keys, n) != 0 ||
        ((check || defer) && store_sums_init(&free_keys, n) != 0) || !(dup = malloc(n)) ||
        store_rids_init(&rids, ev, n, dup) != 0) {
        store_seterr(s, "ledger: out of memory");
        goto out;
    }
    if (store_begin(s) != STORE_OK) goto out;
    /* BEGIN IMMEDIATE holds the write lock: no other writer can take a value meanwhile, so
     * counting in memory gives each account exactly the value a per-charge UPDATE would, and
     * the batch's usage rows can take the ids from LEDGER_NEXT_ID on. */
    if (store_account_seq_io(s, 0, &seq0) != STORE_OK ||
        store_int_query(s, ST_LEDGER_NEXT_ID, &next_id, "ledger: next id") != STORE_OK)
        goto cleanup;
    seq = seq0;
    /* Posting at once: rows a deferring handle (this one earlier, or a process that stopped)
     * left unposted go first, so that the mark can say "all posted" after this batch's rows.
     * Deferring: the rows go past a real mark. */
    if (defer ? store_posted_real(s, next_id - 1) != STORE_OK
              : store_post(s, next_id - 1, &seq, &mark) != STORE_OK)
        goto cleanup;
    for (size_t i = 0; i < n;) {
        size_t k = n - i < STORE_LEDGER_ROWS ? n - i : STORE_LEDGER_ROWS;
        if (store_ledger_rows(s, ev + i, i, k, first, &rids, dup + i, &next_id, &accts, &keys,
                              check || defer ? &free_keys : NULL) != STORE_OK)
            goto cleanup;
        i += k;
    }
    if (defer) {
        /* rows only: balances and spends wait for sq_ledger_post; the keys are checked here,
         * as the charges would have checked them */
        if (store_check_free_keys(s, &keys, NULL, ev) != STORE_OK ||
            store_check_free_keys(s, &free_keys, &keys, ev) != STORE_OK)
            goto cleanup;
    } else if (store_charge_accounts(s, &accts, &seq, ev, n) != STORE_OK ||
               store_charge_keys(s, &keys, ev) != STORE_OK ||
               (check && store_check_free_keys(s, &free_keys, &keys, ev) != STORE_OK) ||
               (mark != SQ_ALL_POSTED && store_posted_set(s, SQ_ALL_POSTED) != STORE_OK)) {
        goto cleanup;
    }
    if (seq != seq0 && store_account_seq_io(s, 1, &seq) != STORE_OK) goto cleanup;
    if (store_recent_fold(s) != STORE_OK) goto cleanup;
    ret = store_commit(s);
    if (ret == STORE_OK && defer) sq_owed_commit(SQ(s), &accts, &keys, next_id - 1);

cleanup:
    if (ret != STORE_OK) {
        store_rollback(s);
        SQ(s)->recent = -1;
        /* a COMMIT that failed may have landed: its rows are then past the mark unsummed */
        if (defer) sq_owed_forget(SQ(s));
    }
out:
    store_sums_free(&accts);
    store_sums_free(&keys);
    store_sums_free(&free_keys);
    free(rids.slot);
    free(dup);
    return ret;
}

/* ---- key updates and spend ---- */

static int sq_key_update(store_t *s, int64_t id, const store_key_patch *p, store_key *out)
{
    sqlite3_stmt *st;
    int64_t seq;
    int ret = STORE_ERR;

    if (!p) return store_seterr(s, "key update: no patch");
    if (p->set_name) {
        if (strnlen(p->name, sizeof(p->name)) == sizeof(p->name))
            return store_seterr(s, "key name longer than %d bytes", STORE_NAME_MAX);
        if (store_check_name(s, "key", p->name, 1) != STORE_OK) return STORE_ERR;
    }
    if (p->set_spend_limit && p->spend_limit_nusd < -1)
        return store_seterr(s, "invalid key spend limit");
    if (p->set_rpm && p->rpm < -1) return store_seterr(s, "invalid key requests per minute");
    if (p->set_tpm && p->tpm < -1) return store_seterr(s, "invalid key tokens per minute");
    if (p->set_expires && p->expires_at_ms < 0) return store_seterr(s, "invalid key expiry");

    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if (store_next_seq(s, &seq) != STORE_OK) goto cleanup;
    if (!(st = store_stmt(s, ST_KEY_UPDATE))) goto cleanup;
    if (sqlite3_bind_int(st, 1, p->set_name != 0) != SQLITE_OK ||
        (p->set_name ? sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC)
                     : sqlite3_bind_null(st, 2)) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, p->set_active != 0) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, p->active ? 1 : 0) != SQLITE_OK ||
        sqlite3_bind_int(st, 5, p->set_spend_limit != 0) != SQLITE_OK ||
        sqlite3_bind_int64(st, 6, p->spend_limit_nusd) != SQLITE_OK ||
        sqlite3_bind_int(st, 7, p->set_rpm != 0) != SQLITE_OK ||
        sqlite3_bind_int64(st, 8, p->rpm) != SQLITE_OK ||
        sqlite3_bind_int(st, 9, p->set_tpm != 0) != SQLITE_OK ||
        sqlite3_bind_int64(st, 10, p->tpm) != SQLITE_OK ||
        sqlite3_bind_int(st, 11, p->set_expires != 0) != SQLITE_OK ||
        sqlite3_bind_int64(st, 12, p->expires_at_ms) != SQLITE_OK ||
        sqlite3_bind_int64(st, 13, seq) != SQLITE_OK ||
        sqlite3_bind_int64(st, 14, id) != SQLITE_OK) {
        store_dberr(s, "key update");
        store_release(st);
        goto cleanup;
    }
    if (store_step_done(s, st, "key update") != STORE_OK) goto cleanup;
    if (sqlite3_changes(SQ(s)->db) == 0) {
        store_seterr(s, "key %lld not found", (long long)id);
        ret = STORE_NOTFOUND;
        goto cleanup;
    }
    if (out && sq_key_get(s, id, out) != STORE_OK) goto cleanup;
    ret = store_commit(s);

cleanup:
    if (ret != STORE_OK) store_rollback(s);
    return ret;
}

static int sq_key_spends(store_t *s,
                         void (*cb)(void *ud, int64_t key_id, int64_t account_id,
                                    int64_t spent_nusd),
                         void *ud)
{
    sqlite3_stmt *st = store_stmt(s, ST_KEY_SPENDS);
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(ud, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
           sqlite3_column_int64(st, 2));
    if (rc != SQLITE_DONE) ret = store_dberr(s, "key spends");
    store_release(st);
    return ret;
}

/* ---- usage and transaction listings ---- */

static void read_usage_row(sqlite3_stmt *st, void *dst)
{
    store_usage_row *u = dst;

    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(st, 0);
    store_copy_text(u->request_id, sizeof(u->request_id), st, 1);
    u->key_id = sqlite3_column_int64(st, 2);
    store_copy_text(u->model, sizeof(u->model), st, 3);
    store_copy_text(u->provider, sizeof(u->provider), st, 4);
    u->prompt_tokens = sqlite3_column_int64(st, 5);
    u->completion_tokens = sqlite3_column_int64(st, 6);
    u->charged_nusd = sqlite3_column_int64(st, 7);
    u->status = sqlite3_column_int(st, 8);
    u->estimated = sqlite3_column_int(st, 9) != 0;
    u->latency_ms = sqlite3_column_int64(st, 10);
    u->created_at_ms = sqlite3_column_int64(st, 11);
    u->cached_tokens = sqlite3_column_int64(st, 12);
    u->cache_write_tokens = sqlite3_column_int64(st, 13);
    u->cache_write_1h_tokens = sqlite3_column_int64(st, 14);
    u->reasoning_tokens = sqlite3_column_int64(st, 15);
    u->cached = sqlite3_column_int(st, 16) != 0;
}

static void read_txn_row(sqlite3_stmt *st, void *dst)
{
    store_txn *t = dst;

    memset(t, 0, sizeof(*t));
    t->id = sqlite3_column_int64(st, 0);
    t->amount_nusd = sqlite3_column_int64(st, 1);
    store_copy_text(t->type, sizeof(t->type), st, 2);
    store_copy_text(t->description, sizeof(t->description), st, 3);
    store_copy_text(t->request_id, sizeof(t->request_id), st, 4);
    t->created_at_ms = sqlite3_column_int64(st, 5);
}

/* Binds a usage read's filter (USAGE_WHERE: ?1 to ?5). */
static void store_bind_filter(sqlite3_stmt *st, int64_t account_id, const store_usage_filter *f)
{
    store_usage_filter all = STORE_USAGE_ALL;
    if (!f) f = &all;
    sqlite3_bind_int64(st, 1, account_id);
    if (f->model)
        sqlite3_bind_text(st, 2, f->model, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, f->key_id);
    sqlite3_bind_int64(st, 4, f->from_ms);
    sqlite3_bind_int64(st, 5, f->to_ms);
}

/* An account's rows of a newest-first listing statement: (account, limit, offset), or for
 * usage (the filter's five, limit, offset) when f is given. */
static int store_page(store_t *s, int stmt_id, int64_t account_id, const store_usage_filter *f,
                      int64_t limit, int64_t offset, size_t elem,
                      void (*read)(sqlite3_stmt *, void *), void **out, size_t *n, const char *what)
{
    sqlite3_stmt *st;
    int rc, at = f ? 6 : 2;

    *out = NULL;
    *n = 0;
    /* SQLite reads a negative LIMIT as "no limit": refuse it rather than return everything. */
    if (limit < 0 || offset < 0) return store_seterr(s, "%s: negative limit or offset", what);
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) return rc;
    if (!(st = store_stmt(s, stmt_id))) return STORE_ERR;
    if (f)
        store_bind_filter(st, account_id, f);
    else
        sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int64(st, at, limit);
    sqlite3_bind_int64(st, at + 1, offset);
    return store_collect(s, st, elem, read, out, n, what);
}

static int sq_usage_query(store_t *s, int64_t account_id, const store_usage_filter *f,
                          int64_t limit, int64_t offset, store_usage_row **out, size_t *n)
{
    store_usage_filter all = STORE_USAGE_ALL;
    return store_page(s, ST_USAGE_LIST, account_id, f ? f : &all, limit, offset, sizeof **out,
                      read_usage_row, (void **)out, n, "usage list");
}

/* The sum of an account's newest `rows` transactions; inside a read snapshot. */
static int store_tx_skipped(store_t *s, int64_t account_id, int64_t rows, int64_t *sum)
{
    sqlite3_stmt *st = store_stmt(s, ST_TX_SKIPPED);
    int ret = STORE_OK;

    *sum = 0;
    if (rows == 0) return STORE_OK;
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int64(st, 2, rows);
    if (sqlite3_step(st) == SQLITE_ROW)
        *sum = sqlite3_column_int64(st, 0);
    else
        ret = store_dberr(s, "transaction list (skipped rows)");
    store_release(st);
    return ret;
}

static int sq_transactions_list(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                                store_txn **out, size_t *n)
{
    store_account a;
    int64_t skipped = 0;
    int ret;

    *out = NULL;
    *n = 0;
    /* One snapshot: the balance, the rows the page skips and the page agree (the ledger commits
     * meanwhile). The balance is the sum of every transaction, so going down the page from the
     * balance minus the skipped rows gives each row's balance after it: a page costs its offset
     * and limit, whatever the account's history. */
    if (store_begin_read(s) != STORE_OK) return STORE_ERR;
    ret = sq_account_get(s, account_id, &a);
    if (ret == STORE_OK && limit >= 0 && offset >= 0)
        ret = store_tx_skipped(s, account_id, offset, &skipped);
    if (ret == STORE_OK)
        ret = store_page(s, ST_TX_LIST, account_id, NULL, limit, offset, sizeof **out, read_txn_row,
                         (void **)out, n, "transaction list");
    ret = store_end_read(s, ret);
    if (ret != STORE_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
        return ret;
    }
    int64_t after = a.balance_nusd - skipped;
    for (size_t i = 0; i < *n; i++) {
        (*out)[i].balance_after_nusd = after;
        after -= (*out)[i].amount_nusd;
    }
    return STORE_OK;
}

/* A statistics row: the group's value (column 0), then USAGE_SUMS. */
static void read_stat_row(sqlite3_stmt *st, void *dst, int group)
{
    store_usage_stat *u = dst;

    memset(u, 0, sizeof(*u));
    if (group == STORE_BY_MODEL)
        store_copy_text(u->model, sizeof(u->model), st, 0);
    else if (group == STORE_BY_KEY)
        u->key_id = sqlite3_column_int64(st, 0);
    else if (group == STORE_BY_DAY)
        u->day = sqlite3_column_int64(st, 0);
    u->requests = sqlite3_column_int64(st, 1);
    u->prompt_tokens = sqlite3_column_int64(st, 2);
    u->cached_tokens = sqlite3_column_int64(st, 3);
    u->cache_write_tokens = sqlite3_column_int64(st, 4);
    u->cache_write_1h_tokens = sqlite3_column_int64(st, 5);
    u->completion_tokens = sqlite3_column_int64(st, 6);
    u->reasoning_tokens = sqlite3_column_int64(st, 7);
    u->spend_nusd = sqlite3_column_int64(st, 8);
}

static void read_stat_model(sqlite3_stmt *st, void *dst)
{
    read_stat_row(st, dst, STORE_BY_MODEL);
}

static void read_stat_key(sqlite3_stmt *st, void *dst)
{
    read_stat_row(st, dst, STORE_BY_KEY);
}

static void read_stat_day(sqlite3_stmt *st, void *dst)
{
    read_stat_row(st, dst, STORE_BY_DAY);
}

static int sq_usage_stats_query(store_t *s, int64_t account_id, const store_usage_filter *f,
                                unsigned groups, store_usage_stats_out *out)
{
    static const int stmt[STORE_BY__COUNT] = {ST_USAGE_BY_MODEL, ST_USAGE_BY_KEY, ST_USAGE_BY_DAY};
    static void (*const read[STORE_BY__COUNT])(sqlite3_stmt *, void *) = {
        read_stat_model, read_stat_key, read_stat_day};
    static const char *const what[STORE_BY__COUNT] = {"usage stats by model", "usage stats by key",
                                                      "usage stats by day"};
    sqlite3_stmt *st;
    int rc, ret = STORE_ERR;

    memset(out, 0, sizeof(*out));
    /* One snapshot, so the overall row always equals the sum of each group's rows. */
    if (store_begin_read(s) != STORE_OK) return STORE_ERR;
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) {
        ret = rc;
        goto cleanup;
    }
    if (!(st = store_stmt(s, ST_USAGE_TOTAL))) goto cleanup;
    store_bind_filter(st, account_id, f);
    if (sqlite3_step(st) != SQLITE_ROW) {
        store_dberr(s, "usage stats");
        store_release(st);
        goto cleanup;
    }
    read_stat_row(st, &out->overall, -1);
    store_release(st);
    for (int g = 0; g < STORE_BY__COUNT; g++) {
        if (!(groups & (1u << g))) continue;
        if (!(st = store_stmt(s, stmt[g]))) goto cleanup;
        store_bind_filter(st, account_id, f);
        if (store_collect(s, st, sizeof(store_usage_stat), read[g], (void **)&out->by[g],
                          &out->n[g], what[g]) != STORE_OK)
            goto cleanup;
    }
    ret = STORE_OK;

cleanup:
    ret = store_end_read(s, ret);
    if (ret != STORE_OK) {
        store_usage_stats_free(out);
        memset(&out->overall, 0, sizeof(out->overall));
    }
    return ret;
}

/* ---- audit ---- */

static const char *store_usd(int64_t nusd, char *out, size_t outlen)
{
    if (!ms_format_decimal(nusd, 9, out, outlen)) snprintf(out, outlen, "?");
    return out;
}

/* Writes the line for one violation found by audit statement stmt_id, whose row is st. */
static void store_audit_line(int stmt_id, sqlite3_stmt *st, FILE *report)
{
    char a[32], b[32];
    long long c0 = sqlite3_column_int64(st, 0), c1 = sqlite3_column_int64(st, 1);
    long long c2 = sqlite3_column_int64(st, 2);

    switch (stmt_id) {
    case ST_AUDIT_BALANCES:
        fprintf(report, "account %lld: balance %s != sum of transactions %s\n", c0,
                store_usd(c1, a, sizeof(a)), store_usd(c2, b, sizeof(b)));
        break;
    case ST_AUDIT_NEGATIVE:
        fprintf(report, "account %lld: negative balance %s\n", c0, store_usd(c1, a, sizeof(a)));
        break;
    case ST_AUDIT_KEY_SPENT:
        fprintf(report, "key %lld: spent %s != sum of its usage charges %s\n", c0,
                store_usd(c1, a, sizeof(a)), store_usd(c2, b, sizeof(b)));
        break;
    case ST_AUDIT_USAGE_TX: {
        long long uid = sqlite3_column_int64(st, 3), uacct = sqlite3_column_int64(st, 4);
        if (sqlite3_column_type(st, 3) == SQLITE_NULL)
            fprintf(report,
                    "transaction %lld (account %lld): usage transaction without its "
                    "usage row\n",
                    c0, c1);
        else if (uacct != c1)
            fprintf(report,
                    "transaction %lld: account %lld but its usage row %lld is account %lld\n", c0,
                    c1, uid, uacct);
        else
            fprintf(report,
                    "transaction %lld (account %lld): amount %s but its usage row %lld "
                    "charged %s\n",
                    c0, c1, store_usd(c2, a, sizeof(a)), uid,
                    store_usd(sqlite3_column_int64(st, 5), b, sizeof(b)));
        break;
    }
    case ST_AUDIT_USAGE_ROWS:
        fprintf(report, "usage %lld: charged %s but %lld usage transactions\n", c0,
                store_usd(c1, a, sizeof(a)), c2);
        break;
    case ST_AUDIT_USAGE_DUP: /* a request id is not a secret: the audit is the operator's */
        fprintf(report, "usage %lld: request id %.40s recorded %lld times\n", c0,
                (const char *)sqlite3_column_text(st, 2), c1);
        break;
    }
}

static int sq_audit(store_t *s, FILE *report)
{
    static const int checks[] = {ST_AUDIT_BALANCES, ST_AUDIT_NEGATIVE,   ST_AUDIT_KEY_SPENT,
                                 ST_AUDIT_USAGE_TX, ST_AUDIT_USAGE_ROWS, ST_AUDIT_USAGE_DUP};
    int64_t violations = 0;
    int ret = STORE_ERR;

    /* One snapshot: a gateway committing batches meanwhile cannot produce false alarms. */
    if (store_begin_read(s) != STORE_OK) return STORE_ERR;
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        sqlite3_stmt *st = store_stmt(s, checks[i]);
        int rc;

        if (!st) goto cleanup;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            violations++;
            if (report) store_audit_line(checks[i], st, report);
        }
        if (rc != SQLITE_DONE) {
            store_dberr(s, "audit");
            store_release(st);
            goto cleanup;
        }
        store_release(st);
    }
    ret = STORE_OK;

cleanup:
    ret = store_end_read(s, ret);
    if (ret != STORE_OK) return ret;
    return violations > INT32_MAX ? INT32_MAX : (int)violations;
}

static int sq_ledger_counts(store_t *s, int64_t *accounts, int64_t *transactions)
{
    sqlite3_stmt *st = store_stmt(s, ST_AUDIT_COUNTS);
    int ret = STORE_OK;

    if (!st) return STORE_ERR;
    if (sqlite3_step(st) == SQLITE_ROW) {
        if (accounts) *accounts = sqlite3_column_int64(st, 0);
        if (transactions) *transactions = sqlite3_column_int64(st, 1);
    } else {
        ret = store_dberr(s, "ledger counts");
    }
    store_release(st);
    return ret;
}

/* ---- stored responses (the Responses API's store: true) ---- */

static int sq_response_put(store_t *s, const store_response *r)
{
    sqlite3_stmt *st = store_stmt(s, ST_RESPONSE_INSERT);
    if (!st) return STORE_ERR;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, r->account_id);
    sqlite3_bind_int64(st, 3, r->key_id);
    sqlite3_bind_text(st, 4, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, r->created_at_ms);
    sqlite3_bind_int64(st, 6, r->expires_at_ms);
    sqlite3_bind_text(st, 7, r->response, (int)r->response_len, SQLITE_STATIC);
    if (r->history)
        sqlite3_bind_text(st, 8, r->history, (int)r->history_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    return store_step_done(s, st, "response insert");
}

/* A text column as a malloc'd NUL-terminated copy (NULL for SQL NULL); -1 out of memory. */
static int store_dup_column(sqlite3_stmt *st, int col, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return 0;
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!t || !(*out = malloc(n + 1))) return -1;
    memcpy(*out, t, n);
    (*out)[n] = '\0';
    *len = n;
    return 0;
}

static int sq_response_get(store_t *s, const char *id, int64_t account_id, int64_t now_ms,
                           int want_history, store_response *out)
{
    sqlite3_stmt *st = store_stmt(s, ST_RESPONSE_GET);
    if (!st) return STORE_ERR;
    memset(out, 0, sizeof *out);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    sqlite3_bind_int64(st, 3, now_ms);
    int rc = sqlite3_step(st), ret = STORE_OK;
    if (rc == SQLITE_ROW) {
        if (store_dup_column(st, 0, &out->response, &out->response_len) != 0 ||
            (want_history && store_dup_column(st, 1, &out->history, &out->history_len) != 0))
            ret = store_seterr(s, "response get: out of memory");
    } else {
        ret = rc == SQLITE_DONE ? STORE_NOTFOUND : store_dberr(s, "response get");
    }
    store_release(st);
    if (ret != STORE_OK) store_response_free(out);
    return ret;
}

static int sq_response_delete(store_t *s, const char *id, int64_t account_id, int64_t now_ms)
{
    sqlite3_stmt *st = store_stmt(s, ST_RESPONSE_DELETE);
    if (!st) return STORE_ERR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, account_id);
    sqlite3_bind_int64(st, 3, now_ms);
    if (store_step_done(s, st, "response delete") != STORE_OK) return STORE_ERR;
    return sqlite3_changes(SQ(s)->db) > 0 ? STORE_OK : STORE_NOTFOUND;
}

static int sq_responses_purge(store_t *s, int64_t now_ms, int64_t max_rows, int64_t *deleted)
{
    sqlite3_stmt *st = store_stmt(s, ST_RESPONSE_PURGE);
    *deleted = 0;
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, max_rows);
    if (store_step_done(s, st, "responses purge") != STORE_OK) return STORE_ERR;
    *deleted = sqlite3_changes(SQ(s)->db);
    return STORE_OK;
}

/* ---- notification settings and the webhook outbox ---- */

static void store_read_notify(sqlite3_stmt *st, store_notify *n)
{
    memset(n, 0, sizeof(*n));
    n->account_id = sqlite3_column_int64(st, 0);
    n->threshold_nusd = sqlite3_column_int64(st, 1);
    store_copy_text(n->url, sizeof(n->url), st, 2);
    store_copy_text(n->secret, sizeof(n->secret), st, 3);
    n->updated_at_ms = sqlite3_column_int64(st, 4);
}

/* The row of account_id (STORE_NOTFOUND when it has none) into *out. */
static int store_notify_row(store_t *s, int64_t account_id, store_notify *out)
{
    sqlite3_stmt *st = store_stmt(s, ST_NOTIFY_GET);
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, account_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        store_read_notify(st, out);
    else
        ret = rc == SQLITE_DONE ? STORE_NOTFOUND : store_dberr(s, "notification settings get");
    store_release(st);
    return ret;
}

static int sq_notify_get(store_t *s, int64_t account_id, store_notify *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->account_id = account_id;
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) return rc;
    rc = store_notify_row(s, account_id, out);
    return rc == STORE_NOTFOUND ? STORE_OK : rc;
}

/* Applies p to n (the row as it was), making a secret when the webhook needs one. */
static int store_notify_apply(store_t *s, store_notify *n, const store_notify_patch *p,
                              int *new_secret)
{
    if (p->set_threshold) n->threshold_nusd = p->threshold_nusd;
    if (p->set_url) {
        const char *u = p->url ? p->url : "";
        if (strlen(u) > STORE_WEBHOOK_URL_MAX)
            return store_seterr(s, "webhook URL longer than %d bytes", STORE_WEBHOOK_URL_MAX);
        memcpy(n->url, u, strlen(u) + 1);
    }
    if (!n->url[0]) {
        /* no webhook, nothing to sign: a later webhook gets a fresh secret */
        explicit_bzero(n->secret, sizeof(n->secret));
        return STORE_OK;
    }
    if (n->secret[0] && !p->rotate_secret) return STORE_OK;
    if (key_generate_secret(n->secret, sizeof(n->secret)) != 0)
        return store_seterr(s, "secret generation failed: no randomness from the OS");
    *new_secret = 1;
    return STORE_OK;
}

static int sq_notify_update(store_t *s, int64_t account_id, const store_notify_patch *p,
                            store_notify *out, int *new_secret)
{
    sqlite3_stmt *st;
    int rc, ret = STORE_ERR;

    *new_secret = 0;
    memset(out, 0, sizeof(*out));
    out->account_id = account_id;
    if (p->set_threshold && p->threshold_nusd < 0)
        return store_seterr(s, "negative low-balance threshold");
    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if ((rc = sq_account_get(s, account_id, NULL)) != STORE_OK) {
        ret = rc;
        goto cleanup;
    }
    rc = store_notify_row(s, account_id, out);
    if (rc != STORE_OK && rc != STORE_NOTFOUND) goto cleanup;
    if (store_notify_apply(s, out, p, new_secret) != STORE_OK) goto cleanup;
    out->updated_at_ms = ms_now_ms();
    if (!(st = store_stmt(s, ST_NOTIFY_PUT))) goto cleanup;
    sqlite3_bind_int64(st, 1, account_id);
    sqlite3_bind_int64(st, 2, out->threshold_nusd);
    if (out->url[0]) {
        sqlite3_bind_text(st, 3, out->url, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, out->secret, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 3);
        sqlite3_bind_null(st, 4);
    }
    sqlite3_bind_int64(st, 5, out->updated_at_ms);
    if (store_step_done(s, st, "notification settings update") != STORE_OK) goto cleanup;
    ret = store_commit(s);

cleanup:
    if (ret != STORE_OK) {
        store_rollback(s);
        /* a secret that was never stored must never be shown */
        explicit_bzero(out->secret, sizeof(out->secret));
        *new_secret = 0;
    }
    return ret;
}

static int sq_notify_list(store_t *s, void (*cb)(void *ud, const store_notify *n), void *ud)
{
    sqlite3_stmt *st = store_stmt(s, ST_NOTIFY_LIST);
    store_notify *n;
    int rc, ret = STORE_OK;

    if (!st) return STORE_ERR;
    if (!(n = malloc(sizeof(*n)))) {
        store_release(st);
        return store_seterr(s, "notification settings list: out of memory");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_read_notify(st, n);
        cb(ud, n);
    }
    if (rc != SQLITE_DONE) ret = store_dberr(s, "notification settings list");
    store_release(st);
    free(n);
    return ret;
}

static int sq_webhooks_due(store_t *s, int64_t now_ms, size_t max, store_webhook *out, size_t *n)
{
    sqlite3_stmt *st = store_stmt(s, ST_WEBHOOK_DUE);
    int rc = SQLITE_DONE;

    *n = 0;
    if (!st) return STORE_ERR;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_webhook *w = &out[(*n)++];
        memset(w, 0, sizeof(*w));
        store_copy_text(w->event_id, sizeof(w->event_id), st, 0);
        w->account_id = sqlite3_column_int64(st, 1);
        store_copy_text(w->type, sizeof(w->type), st, 2);
        w->balance_nusd = sqlite3_column_int64(st, 3);
        w->threshold_nusd = sqlite3_column_int64(st, 4);
        w->created_at_ms = sqlite3_column_int64(st, 5);
        w->attempts = sqlite3_column_int64(st, 6);
        w->next_attempt_ms = sqlite3_column_int64(st, 7);
        store_copy_text(w->url, sizeof(w->url), st, 8);
        store_copy_text(w->secret, sizeof(w->secret), st, 9);
    }
    if (*n < max && rc != SQLITE_DONE) {
        store_release(st);
        return store_dberr(s, "webhooks due");
    }
    store_release(st);
    return STORE_OK;
}

static int sq_webhook_next(store_t *s, int64_t *next_ms)
{
    sqlite3_stmt *st = store_stmt(s, ST_WEBHOOK_NEXT);
    int ret = STORE_OK;

    if (!st) return STORE_ERR;
    if (sqlite3_step(st) != SQLITE_ROW)
        ret = store_dberr(s, "next webhook");
    else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
        ret = STORE_NOTFOUND;
    else
        *next_ms = sqlite3_column_int64(st, 0);
    store_release(st);
    return ret;
}

static int sq_webhook_done(store_t *s, const char *event_id)
{
    sqlite3_stmt *st = store_stmt(s, ST_WEBHOOK_DELETE);
    if (!st) return STORE_ERR;
    sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
    return store_step_done(s, st, "webhook done");
}

static int sq_webhook_retry(store_t *s, const char *event_id, int64_t attempts, int64_t next_ms)
{
    sqlite3_stmt *st = store_stmt(s, ST_WEBHOOK_RETRY);
    if (!st) return STORE_ERR;
    sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, attempts);
    sqlite3_bind_int64(st, 3, next_ms);
    return store_step_done(s, st, "webhook retry");
}

/* ---- export and import (store.c) ---- */

static const char store_hexdig[] = "0123456789abcdef";

/* Column col of st's row, a BLOB, as hex into *buf (grown as needed; the caller frees it), which
 * v then names. 0, or -1 out of memory. */
static int store_blob_hex(sqlite3_stmt *st, int col, char **buf, store_value *v)
{
    const unsigned char *b = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *h = realloc(*buf, 2 * n + 1);
    if (!h) return -1;
    *buf = h;
    for (size_t j = 0; j < n; j++) {
        h[2 * j] = store_hexdig[b[j] >> 4];
        h[2 * j + 1] = store_hexdig[b[j] & 15];
    }
    h[2 * n] = '\0';
    v->s = h;
    v->len = 2 * n;
    return 0;
}

/* SELECT t's columns, or INSERT INTO t (one placeholder per column), into buf. */
static int store_table_sql(const store_table *t, int insert, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, insert ? "INSERT INTO %s(" : "SELECT ", t->name);
    for (size_t i = 0; i < t->ncols && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", t->cols[i]);
    if (o >= len) return -1;
    if (insert) {
        o += (size_t)snprintf(buf + o, len - o, ") VALUES (");
        for (size_t i = 0; i < t->ncols && o < len; i++)
            o += (size_t)snprintf(buf + o, len - o, "%s?", i ? ", " : "");
        if (o < len) o += (size_t)snprintf(buf + o, len - o, ")");
    } else {
        o += (size_t)snprintf(buf + o, len - o, " FROM %s ORDER BY %s", t->name, t->order);
    }
    return o < len ? 0 : -1;
}

static int sq_dump(store_t *s, const store_table *t, int (*cb)(void *ud, const store_value *v),
                   void *ud)
{
    char sql[1024];
    sqlite3_stmt *st = NULL;
    store_value v[32];
    char *hex[32] = {NULL}; /* each BLOB column's hex */
    int rc, ret = STORE_ERR;

    if (t->ncols > 32 || store_table_sql(t, 0, sql, sizeof sql) != 0)
        return store_seterr(s, "export: table %s: too many columns", t->name);
    if (sqlite3_prepare_v2(SQ(s)->db, sql, -1, &st, NULL) != SQLITE_OK)
        return store_dberr(s, "export");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (size_t i = 0; i < t->ncols; i++) {
            int c = (int)i;
            memset(&v[i], 0, sizeof v[i]);
            v[i].null = sqlite3_column_type(st, c) == SQLITE_NULL;
            if (v[i].null) continue;
            if (t->kinds[i] == STORE_COL_INT) {
                v[i].i = sqlite3_column_int64(st, c);
            } else if (t->kinds[i] == STORE_COL_TEXT) {
                v[i].s = (const char *)sqlite3_column_text(st, c);
                v[i].len = (size_t)sqlite3_column_bytes(st, c);
            } else if (store_blob_hex(st, c, &hex[i], &v[i]) != 0) {
                store_seterr(s, "export: out of memory");
                goto cleanup;
            }
        }
        /* the posting mark is this backend's own: an export has every charge posted
         * (store_export), and an import sets it past what it brought (sq_import_end) */
        if (strcmp(t->name, "meta") == 0 && !v[0].null && v[0].len == 14 &&
            memcmp(v[0].s, "posted_through", 14) == 0)
            continue;
        if ((ret = cb(ud, v)) != 0) goto cleanup;
        ret = STORE_ERR;
    }
    if (rc != SQLITE_DONE) {
        store_dberr(s, "export");
        goto cleanup;
    }
    ret = STORE_OK;
cleanup:
    for (size_t i = 0; i < 32; i++)
        free(hex[i]);
    sqlite3_finalize(st);
    return ret;
}

/* The rows and counters a store holds beyond what its migrations made. */
#define STORE_EMPTY_SQL                                                                            \
    "SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM api_keys) + "                  \
    "(SELECT count(*) FROM transactions) + (SELECT count(*) FROM usage_blocks) + "                 \
    "(SELECT count(*) FROM usage_recent) + "                                                       \
    "(SELECT count(*) FROM responses) + (SELECT count(*) FROM notification_settings) + "           \
    "(SELECT count(*) FROM webhook_outbox) + (SELECT count(*) FROM meta WHERE value != 0)"

static int sq_import_begin(store_t *s)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;

    if (store_begin(s) != STORE_OK) return STORE_ERR;
    if (sqlite3_prepare_v2(SQ(s)->db, STORE_EMPTY_SQL, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        store_dberr(s, "import: is the store empty");
    sqlite3_finalize(st);
    if (n == 0) return STORE_OK;
    if (n > 0) store_seterr(s, "the store is not empty: import only into a new store");
    store_rollback(s);
    return n > 0 ? STORE_LIMIT : STORE_ERR;
}

static int store_unhex(const char *h, size_t len, unsigned char *out)
{
    if (len % 2) return -1;
    for (size_t i = 0; i < len; i++) {
        int c = h[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        if (i % 2)
            out[i / 2] |= (unsigned char)d;
        else
            out[i / 2] = (unsigned char)(d << 4);
    }
    return 0;
}

static int sq_import_row(store_t *s, const store_table *t, const store_value *v)
{
    char sql[1024];
    sqlite3_stmt *st = NULL;
    unsigned char blob[64];
    int meta = strcmp(t->name, "meta") == 0, ret = STORE_ERR;

    if (meta)
        snprintf(sql, sizeof sql, "UPDATE meta SET value = ?2 WHERE key = ?1");
    else if (t->ncols > 32 || store_table_sql(t, 1, sql, sizeof sql) != 0)
        return store_seterr(s, "import: table %s: too many columns", t->name);
    if (sqlite3_prepare_v2(SQ(s)->db, sql, -1, &st, NULL) != SQLITE_OK)
        return store_dberr(s, "import");
    for (size_t i = 0; i < t->ncols; i++) {
        int p = (int)i + 1, rc;
        if (v[i].null)
            rc = sqlite3_bind_null(st, p);
        else if (t->kinds[i] == STORE_COL_INT)
            rc = sqlite3_bind_int64(st, p, v[i].i);
        else if (t->kinds[i] == STORE_COL_TEXT)
            rc = sqlite3_bind_text(st, p, v[i].s, (int)v[i].len, SQLITE_STATIC);
        else if (v[i].len > 2 * sizeof blob || store_unhex(v[i].s, v[i].len, blob) != 0)
            goto bad;
        else
            rc = sqlite3_bind_blob(st, p, blob, (int)(v[i].len / 2), SQLITE_TRANSIENT);
        if (rc != SQLITE_OK) goto bad;
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        store_dberr(s, "import");
        goto cleanup;
    }
    if (meta && sqlite3_changes(SQ(s)->db) != 1) {
        store_seterr(s, "import: unknown meta counter");
        goto cleanup;
    }
    ret = STORE_OK;
    goto cleanup;
bad:
    store_seterr(s, "import: table %s: a value this store cannot take", t->name);
cleanup:
    sqlite3_finalize(st);
    return ret;
}

static int sq_import_end(store_t *s, int ok)
{
    int64_t last;
    /* the balances and spends imported hold every charge of the usage rows imported (an export
     * posts first; PostgreSQL always has). The newest id, not SQ_ALL_POSTED: a store imported
     * from an empty export must still read as empty (STORE_EMPTY_SQL counts meta values). */
    if (ok && (store_int_query(s, ST_LAST_USAGE_ID, &last, "import: newest usage id") != STORE_OK ||
               store_posted_set(s, last) != STORE_OK)) {
        store_rollback(s);
        return STORE_ERR;
    }
    if (ok) return store_commit(s);
    store_rollback(s);
    return STORE_OK;
}

/* ---- store_query (`modelswitch sql`) ---- */

/* Columns of a query's row at most. */
#define STORE_QUERY_COLS 64

static int sq_query_rows(store_t *s, sqlite3_stmt *st,
                         int (*cb)(void *ud, size_t ncols, const char *const *names,
                                   const store_col_kind *kinds, const store_value *v),
                         void *ud)
{
    int n = sqlite3_column_count(st), rc, ret = STORE_OK;
    const char *names[STORE_QUERY_COLS];
    store_col_kind kinds[STORE_QUERY_COLS];
    store_value v[STORE_QUERY_COLS];
    char *hex[STORE_QUERY_COLS] = {NULL}; /* each BLOB column's hex */
    if (n > STORE_QUERY_COLS) return store_seterr(s, "sql: more than %d columns", STORE_QUERY_COLS);
    while (ret == STORE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* read after the step: a statement prepared again by it would free the old names */
        for (int i = 0; i < n; i++)
            names[i] = sqlite3_column_name(st, i);
        for (int i = 0; i < n && ret == STORE_OK; i++) {
            int t = sqlite3_column_type(st, i);
            memset(&v[i], 0, sizeof v[i]);
            v[i].null = t == SQLITE_NULL;
            kinds[i] = t == SQLITE_INTEGER ? STORE_COL_INT
                       : t == SQLITE_FLOAT ? STORE_COL_REAL
                       : t == SQLITE_BLOB  ? STORE_COL_BLOB
                                           : STORE_COL_TEXT;
            if (t == SQLITE_INTEGER) {
                v[i].i = sqlite3_column_int64(st, i);
            } else if (t == SQLITE_BLOB) {
                if (store_blob_hex(st, i, &hex[i], &v[i]) != 0)
                    ret = store_seterr(s, "sql: out of memory");
            } else if (t != SQLITE_NULL) {
                v[i].s = (const char *)sqlite3_column_text(st, i);
                v[i].len = (size_t)sqlite3_column_bytes(st, i);
            }
        }
        if (ret == STORE_OK) ret = cb(ud, (size_t)n, names, kinds, v);
    }
    for (int i = 0; i < STORE_QUERY_COLS; i++)
        free(hex[i]);
    if (ret != STORE_OK) return ret;
    return rc == SQLITE_DONE ? STORE_OK : store_dberr(s, "sql");
}

/* One statement that reads, in a read transaction, with query_only on around it: a statement
 * SQLite calls read-only cannot write the file, and query_only makes sure. */
static int sq_query(store_t *s, const char *sql,
                    int (*cb)(void *ud, size_t ncols, const char *const *names,
                              const store_col_kind *kinds, const store_value *v),
                    void *ud)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(SQ(s)->db, sql, -1, &st, &tail) != SQLITE_OK)
        return store_dberr(s, "sql");
    while (tail &&
           (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r' || *tail == ';'))
        tail++;
    int ret = STORE_LIMIT;
    if (!st)
        store_seterr(s, "sql: no statement");
    else if (tail && *tail)
        store_seterr(s, "sql: one statement at a time");
    else if (!sqlite3_stmt_readonly(st))
        store_seterr(s, "sql: only statements that read (the store is changed through the CLI's "
                        "other commands)");
    else
        ret = STORE_OK;
    if (ret == STORE_OK && store_exec(s, "PRAGMA query_only=1", "sql") != STORE_OK) ret = STORE_ERR;
    if (ret != STORE_OK) {
        sqlite3_finalize(st);
        return ret;
    }
    if ((ret = store_begin_read(s)) == STORE_OK)
        ret = store_end_read(s, sq_query_rows(s, st, cb, ud));
    sqlite3_finalize(st);
    (void)store_exec(s, "PRAGMA query_only=0", "sql");
    return ret;
}

const store_ops store_sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .schema_version = sq_schema_version,
    .account_create = sq_account_create,
    .account_get = sq_account_get,
    .account_show = sq_account_show,
    .account_list = sq_account_list,
    .account_topup = sq_account_topup,
    .key_create = sq_key_create,
    .key_get = sq_key_get,
    .key_list = sq_key_list,
    .key_set_active = sq_key_set_active,
    .key_delete = sq_key_delete,
    .key_update = sq_key_update,
    .keys_since = sq_keys_since,
    .accounts_since = sq_accounts_since,
    .key_spends = sq_key_spends,
    .ledger_commit = sq_ledger_commit,
    .ledger_writer = sq_ledger_writer,
    .ledger_defer = sq_ledger_defer,
    .ledger_post = sq_ledger_post,
    .usage_query = sq_usage_query,
    .usage_stats_query = sq_usage_stats_query,
    .transactions_list = sq_transactions_list,
    .audit = sq_audit,
    .ledger_counts = sq_ledger_counts,
    .response_put = sq_response_put,
    .response_get = sq_response_get,
    .response_delete = sq_response_delete,
    .responses_purge = sq_responses_purge,
    .notify_get = sq_notify_get,
    .notify_update = sq_notify_update,
    .notify_list = sq_notify_list,
    .webhooks_due = sq_webhooks_due,
    .webhook_next = sq_webhook_next,
    .webhook_done = sq_webhook_done,
    .webhook_retry = sq_webhook_retry,
    .dump = sq_dump,
    .import_begin = sq_import_begin,
    .import_row = sq_import_row,
    .import_end = sq_import_end,
    .query = sq_query,
    .ckpt_start = sq_ckpt_start,
    .ckpt_stop = sq_ckpt_stop,
    .ckpt_count = sq_ckpt_count,
};
