/*
 * Unit tests for src/store/sqlite.c against a fresh database in a temporary directory: migrations
 * (including migration 2 applied to a database that migration 1 made), accounts and the ledger
 * invariant (balance == sum of transactions), the account and key change sequences, not-found
 * codes and the schema's own guards (balance CHECK, STRICT types).
 * The ledger is checked with plain SQL through a separate SQLite connection; usage charges and
 * the other issue-3 calls are in test_ledger_store.c.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "auth/keys.h"
#include "config/config.h"
#include "store/store.h"
#include "tap.h"
#include "testdb.h"

static char tmpdir[64];
static char dbpath[128];
static cfg_t *cfg;

static void setup(void)
{
    tap_mkdtemp("test_store", tmpdir);
    /* Two missing directory levels: store_open must create them. */
    snprintf(dbpath, sizeof(dbpath), "%s/a/b/store.db", tmpdir);
    cfg = calloc(1, sizeof(*cfg));
    tdb_use(cfg, dbpath);
}

static void teardown(void)
{
    free(cfg);
    tap_rmtree(tmpdir);
}

static store_t *open_store(void)
{
    char err[256] = "";
    store_t *s = store_open(cfg, err, sizeof(err));
    if (!s) fprintf(stderr, "store_open: %s\n", err);
    return s;
}

/* Runs a query returning one integer through a separate connection. */
static int64_t sql_int(const char *sql)
{
    return tdb_int(sql);
}

static int sql_exec(const char *sql)
{
    return tdb_exec(sql);
}

/* Accounts whose balance differs from the sum of their transactions. */
static int64_t ledger_mismatches(void)
{
    return sql_int("SELECT count(*) FROM accounts a WHERE a.balance_nusd != "
                   "(SELECT coalesce(sum(amount_nusd), 0) FROM ledger_transactions t "
                   "WHERE t.account_id = a.id)");
}

static void test_open_and_migrate(void)
{
    int64_t v = -1;
    store_t *s = open_store();

    CHECK(s != NULL);
    if (!s) return;
    /* The store turned SQLite's memory statistics off before SQLite first initialized (their
     * global mutex around every allocation was ~9% of a ledger batch): nothing is counted. */
    if (!tdb_pg) CHECK_EQ_INT(sqlite3_memory_used(), 0);
    if (!tdb_pg) CHECK_EQ_INT(access(dbpath, F_OK), 0);
    CHECK_EQ_INT(store_schema_version(s, &v), STORE_OK);
    CHECK_EQ_INT(v, 13);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM schema_migrations"), 13);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'key_seq'"), 0);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), 0);
    /* a fresh store: every usage row is its own transaction (migration 9) */
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'usage_tx_after'"), 0);
    CHECK(sql_int("SELECT applied_at FROM schema_migrations WHERE version = 1") > 1600000000000);
    CHECK(sql_int("SELECT applied_at FROM schema_migrations WHERE version = 2") > 1600000000000);
    /* Migration 2's columns, table and indexes. */
    if (tdb_pg) {
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM information_schema.columns WHERE "
                             "table_name = 'usage'"),
                     18);
        /* migration 8 dropped transactions_request again */
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM pg_indexes WHERE indexname IN "
                             "('accounts_seq', 'usage_account', 'transactions_request')"),
                     2);
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM information_schema.columns WHERE "
                             "table_name = 'accounts' AND column_name = 'seq' AND "
                             "data_type = 'bigint' AND is_nullable = 'NO'"),
                     1);
    } else {
        CHECK_EQ_INT(
            sql_int("SELECT count(*) FROM pragma_table_info('accounts') WHERE name = 'seq' "
                    "AND \"notnull\" = 1 AND dflt_value = '0'"),
            1);
        /* 13 columns from migration 2, 4 from migration 4, 1 from migration 7: since 10 the
         * virtual table's over usage_blocks, which migration 10 made with its two indexes */
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM pragma_table_info('usage')"), 18);
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE name = 'usage'"), 0);
        CHECK_EQ_INT(sql_int("SELECT strict FROM pragma_table_list WHERE name = 'usage_blocks'"),
                     1);
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN "
                             "('accounts_seq', 'usage_blocks_account', 'usage_blocks_time', "
                             "'transactions_request')"),
                     3);
        /* migration 12: usage_recent's blocks hold many accounts, no index by account */
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
                             "tbl_name = 'usage_recent'"),
                     0);
        CHECK_EQ_INT(sql_int("SELECT strict FROM pragma_table_list WHERE name = 'usage_recent'"),
                     1);
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"),
                     1);
    }
    store_close(s);

    /* Reopening (twice, with two handles alive) applies nothing again. */
    store_t *a = open_store(), *b = open_store();
    CHECK(a != NULL && b != NULL);
    if (a) {
        CHECK_EQ_INT(store_schema_version(a, &v), STORE_OK);
        CHECK_EQ_INT(v, 13);
    }
    store_close(a);
    store_close(b);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM schema_migrations"), 13);
    /* SQLite's posting mark (migration 13): PostgreSQL posts every commit's charges at once */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM meta"), tdb_pg ? 3 : 4);
    if (!tdb_pg) CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'posted_through'"), 0);
}

/* Migration 1 exactly as it shipped, to build a database the way an issue-2 build left it. */
static const char migration1_sql[] =
    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);"
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    "  balance_nusd INTEGER NOT NULL DEFAULT 0 CHECK (balance_nusd >= 0),"
    "  created_at_ms INTEGER NOT NULL) STRICT;"
    "CREATE TABLE api_keys (id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
    "  type INTEGER NOT NULL CHECK (type IN (0, 1)), name TEXT NOT NULL DEFAULT '',"
    "  prefix TEXT NOT NULL, hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),"
    "  active INTEGER NOT NULL DEFAULT 1, deleted INTEGER NOT NULL DEFAULT 0,"
    "  created_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL DEFAULT 0,"
    "  spend_limit_nusd INTEGER NOT NULL DEFAULT -1, spent_nusd INTEGER NOT NULL DEFAULT 0,"
    "  rpm INTEGER NOT NULL DEFAULT -1, tpm INTEGER NOT NULL DEFAULT -1,"
    "  seq INTEGER NOT NULL) STRICT;"
    "CREATE INDEX api_keys_seq ON api_keys(seq);"
    "CREATE INDEX api_keys_account ON api_keys(account_id, id);"
    "CREATE TABLE transactions (id INTEGER PRIMARY KEY,"
    "  account_id INTEGER NOT NULL REFERENCES accounts(id), amount_nusd INTEGER NOT NULL,"
    "  type TEXT NOT NULL CHECK (type IN ('usage', 'payment', 'refund')), description TEXT,"
    "  request_id TEXT, created_at_ms INTEGER NOT NULL) STRICT;"
    "CREATE INDEX transactions_account ON transactions(account_id, id);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;"
    "INSERT INTO meta(key, value) VALUES ('key_seq', 0);"
    "INSERT INTO schema_migrations(version, applied_at) VALUES (1, 1700000000000);";

static void test_migration_2_upgrade(void)
{
    if (tdb_pg) return; /* an old SQLite file: PostgreSQL starts at the current schema */
    char path[sizeof(dbpath)], saved[sizeof(dbpath)], err[256] = "";
    sqlite3 *db = NULL;
    store_t *s = NULL;
    store_account a, *list = NULL;
    size_t n = 0;
    int64_t v = 0, id = 0;

    /* A version-1 database with three accounts (ids 1, 2, 5: a gap) and their ledger. */
    snprintf(path, sizeof(path), "%s/v1.db", tmpdir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db, migration1_sql, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ_INT(
        sqlite3_exec(db,
                     "INSERT INTO accounts(id, name, balance_nusd, created_at_ms) VALUES "
                     "(1, 'one', 10, 1), (2, 'two', 0, 2), (5, 'five', 7, 3);"
                     "INSERT INTO transactions(account_id, amount_nusd, type, created_at_ms) "
                     "VALUES (1, 10, 'payment', 1), (5, 7, 'payment', 3)",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    snprintf(saved, sizeof(saved), "%s", dbpath);
    snprintf(dbpath, sizeof(dbpath), "%s", path);
    cfg->sqlite_path = dbpath;
    s = store_open(cfg, err, sizeof(err));
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "store_open: %s\n", err);
        goto cleanup;
    }
    CHECK_EQ_INT(store_schema_version(s, &v), STORE_OK);
    CHECK_EQ_INT(v, 13);
    CHECK_EQ_INT(sql_int("SELECT applied_at FROM schema_migrations WHERE version = 1"),
                 1700000000000LL);
    /* Migration 3 rebuilt transactions: same rows and ids, the type CHECK without IN (which
     * SQLite runs through a temporary b-tree per row), still enforced, both indexes there. */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions WHERE id IN (1, 2) AND "
                         "((account_id = 1 AND amount_nusd = 10) OR "
                         "(account_id = 5 AND amount_nusd = 7)) AND type = 'payment'"),
                 2);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE name = 'transactions' AND "
                         "sql LIKE '%type = ''usage'' OR type = ''payment''%' AND "
                         "sql NOT LIKE '% IN (%'"),
                 1);
    /* transactions_account (migration 3 rebuilt it; 8 dropped transactions_request) */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
                         "tbl_name = 'transactions'"),
                 1);
    CHECK(sql_exec("INSERT INTO transactions(account_id, amount_nusd, type, created_at_ms) "
                   "VALUES (1, 1, 'gift', 1)") != SQLITE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM sqlite_schema WHERE name = 'transactions_v3'"), 0);
    /* Existing rows are numbered, and the counter continues above them. */
    CHECK_EQ_INT(store_account_list(s, &list, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(list[0].seq, 1);
        CHECK_EQ_INT(list[1].seq, 2);
        CHECK_EQ_INT(list[2].seq, 5);
        CHECK_EQ_INT(list[2].balance_nusd, 7);
        CHECK_EQ_STR(list[2].name, "five");
    }
    free(list);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), 5);
    /* migration 9: the ledger's ids continue above the transactions already there */
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'usage_tx_after'"), 2);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 0);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions"), 2);
    CHECK_EQ_INT(store_account_create(s, "six", 0, &id), STORE_OK);
    CHECK_EQ_INT(store_account_get(s, id, &a), STORE_OK);
    CHECK_EQ_INT(a.seq, 6);
    CHECK_EQ_INT(store_account_topup(s, 1, 5, NULL), STORE_OK);
    CHECK_EQ_INT(store_account_get(s, 1, &a), STORE_OK);
    CHECK_EQ_INT(a.seq, 7);
    CHECK_EQ_INT(a.balance_nusd, 15);
    CHECK_EQ_INT(store_audit(s, NULL), 0);

cleanup:
    store_close(s);
    snprintf(dbpath, sizeof(dbpath), "%s", saved);
}

/* Migration 4 on a database a version-3 build left, with usage rows in it: the rows keep their
 * totals and read as all plain input (zeros in the new columns), and new rows get every count. */
static void test_migration_4_upgrade(void)
{
    if (tdb_pg) return;
    char path[sizeof(dbpath)], saved[sizeof(dbpath)];
    store_t *s = NULL;
    store_usage_row *rows = NULL;
    size_t n = 0;
    int64_t v = 0, acct = 0;

    snprintf(path, sizeof(path), "%s/v3.db", tmpdir);
    snprintf(saved, sizeof(saved), "%s", dbpath);
    snprintf(dbpath, sizeof(dbpath), "%s", path);
    cfg->sqlite_path = dbpath;
    /* Version 3: today's schema without migrations 4 to 9 (their columns, tables and view
     * dropped, their records gone). */
    s = open_store();
    CHECK(s != NULL);
    if (!s) goto cleanup;
    CHECK_EQ_INT(store_account_create(s, "old", 1000, &acct), STORE_OK);
    store_close(s);
    s = NULL;
    CHECK_EQ_INT(sql_exec(TDB_UNDO_MIGRATION_10), SQLITE_OK);
    CHECK_EQ_INT(sql_exec("ALTER TABLE usage DROP COLUMN cached_tokens;"
                          "ALTER TABLE usage DROP COLUMN cache_write_tokens;"
                          "ALTER TABLE usage DROP COLUMN cache_write_1h_tokens;"
                          "ALTER TABLE usage DROP COLUMN reasoning_tokens;"
                          "ALTER TABLE usage DROP COLUMN cached;"
                          "DROP TABLE responses;"
                          "DROP TABLE notification_settings;"
                          "DROP TABLE webhook_outbox;"
                          "DROP VIEW ledger_transactions;"
                          "DELETE FROM meta WHERE key = 'usage_tx_after';"
                          "DELETE FROM schema_migrations WHERE version >= 4;"),
                 SQLITE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM pragma_table_info('usage')"), 13);
    char ins[512];
    snprintf(ins, sizeof ins,
             "INSERT INTO api_keys(account_id, type, name, prefix, hash, created_at_ms, seq) "
             "VALUES (%lld, 0, 'k', 'ms-x', zeroblob(32), 1, 1);"
             "INSERT INTO usage(request_id, account_id, key_id, model, provider, prompt_tokens, "
             "completion_tokens, charged_nusd, status, latency_ms, created_at_ms) VALUES "
             "('old1', %lld, last_insert_rowid(), 'gpt-4o', 'openai', 11, 3, 0, 200, 5, 1)",
             (long long)acct, (long long)acct);
    CHECK_EQ_INT(sql_exec(ins), SQLITE_OK);

    s = open_store();
    CHECK(s != NULL);
    if (!s) goto cleanup;
    CHECK_EQ_INT(store_schema_version(s, &v), STORE_OK);
    CHECK_EQ_INT(v, 13);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM pragma_table_info('usage') WHERE name IN "
                         "('cached_tokens', 'cache_write_tokens', 'cache_write_1h_tokens', "
                         "'reasoning_tokens') AND type = 'INTEGER'"),
                 4);
    CHECK_EQ_INT(store_usage_list(s, acct, 10, 0, &rows, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_STR(rows[0].request_id, "old1");
        CHECK_EQ_INT(rows[0].prompt_tokens, 11);
        CHECK_EQ_INT(rows[0].completion_tokens, 3);
        CHECK_EQ_INT(rows[0].cached_tokens, 0);
        CHECK_EQ_INT(rows[0].cache_write_tokens, 0);
        CHECK_EQ_INT(rows[0].cache_write_1h_tokens, 0);
        CHECK_EQ_INT(rows[0].reasoning_tokens, 0);
    }
    free(rows);
    /* the row moved into a block (migration 10); rows are never changed */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_blocks"), 1);
    CHECK(sql_exec("UPDATE usage SET reasoning_tokens = -1") != SQLITE_OK);
    CHECK_EQ_INT(store_audit(s, NULL), 0);

cleanup:
    store_close(s);
    snprintf(dbpath, sizeof(dbpath), "%s", saved);
    cfg->sqlite_path = dbpath;
}

static void test_newer_schema_refused(void)
{
    char err[256] = "";
    store_t *s;

    CHECK_EQ_INT(sql_exec("INSERT INTO schema_migrations(version, applied_at) VALUES (999, 0)"),
                 SQLITE_OK);
    s = store_open(cfg, err, sizeof(err));
    CHECK(s == NULL);
    CHECK(strstr(err, "newer") != NULL);
    store_close(s);
    CHECK_EQ_INT(sql_exec("DELETE FROM schema_migrations WHERE version = 999"), SQLITE_OK);
}

static void test_open_errors(void)
{
    char err[256] = "";
    cfg_t c;

    memset(&c, 0, sizeof(c));
    CHECK(store_open(&c, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    if (tdb_pg) {
        /* an unreachable server: the message names it, never the password */
        c.postgres_url = "postgres://ms:s3cret-pw@127.0.0.1:1/ms?password=s3cret-pw";
        err[0] = '\0';
        CHECK(store_open(&c, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "127.0.0.1") != NULL);
        CHECK(strstr(err, "s3cret") == NULL);
        CHECK(strstr(err, "ms:***@") != NULL);
        return;
    }
    /* A directory component that is a regular file cannot be created. */
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/store.db/x/y.db", tmpdir);
    c.sqlite_path = path;
    err[0] = '\0';
    CHECK(store_open(&c, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "store.db") != NULL);
}

static void test_accounts(void)
{
    store_t *s = open_store();
    store_account a, *list = NULL;
    size_t n = 0;
    int64_t id1 = 0, id2 = 0, id3 = 0;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_account_create(s, "alice", 5 * 1000000000LL, &id1), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "bob", 0, &id2), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "carol", 1, &id3), STORE_OK);
    CHECK(id1 > 0 && id2 > id1 && id3 > id2);

    CHECK_EQ_INT(store_account_get(s, id1, &a), STORE_OK);
    CHECK_EQ_INT(a.id, id1);
    CHECK_EQ_STR(a.name, "alice");
    CHECK_EQ_INT(a.balance_nusd, 5000000000LL);
    CHECK(a.created_at_ms > 1600000000000);
    /* Every account change takes the next account_seq value. */
    CHECK_EQ_INT(a.seq, 1);
    CHECK_EQ_INT(store_account_get(s, id3, &a), STORE_OK);
    CHECK_EQ_INT(a.seq, 3);

    /* The opening balance is a payment; a zero balance writes no transaction. */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions"), 2);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions WHERE type = 'payment' AND "
                         "description = 'initial balance'"),
                 2);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    CHECK_EQ_INT(store_account_list(s, &list, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(list[0].id, id1);
        CHECK_EQ_STR(list[1].name, "bob");
        CHECK_EQ_INT(list[2].balance_nusd, 1);
        CHECK_EQ_INT(list[1].seq, 2);
    }
    free(list);

    /* Top-ups. */
    CHECK_EQ_INT(store_account_topup(s, id2, 1500000000LL, "card"), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, id2, 1, NULL), STORE_OK);
    CHECK_EQ_INT(store_account_get(s, id2, &a), STORE_OK);
    CHECK_EQ_INT(a.balance_nusd, 1500000001LL);
    CHECK_EQ_INT(a.seq, 5);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions WHERE description = 'card'"), 1);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* Refused top-ups leave everything unchanged. */
    int64_t ntx = sql_int("SELECT count(*) FROM transactions");
    CHECK_EQ_INT(store_account_topup(s, id2, 0, NULL), STORE_ERR);
    CHECK_EQ_INT(store_account_topup(s, id2, -5, NULL), STORE_ERR);
    CHECK_EQ_INT(store_account_topup(s, 999999, 5, NULL), STORE_NOTFOUND);
    CHECK(strstr(store_errmsg(s), "999999") != NULL);
    CHECK_EQ_INT(store_account_topup(s, id2, INT64_MAX, NULL), STORE_LIMIT);
    CHECK(strstr(store_errmsg(s), "maximum") != NULL);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions"), ntx);
    CHECK_EQ_INT(store_account_get(s, id2, &a), STORE_OK);
    CHECK_EQ_INT(a.balance_nusd, 1500000001LL);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    /* ... and take no sequence value. */
    CHECK_EQ_INT(a.seq, 5);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), 5);

    /* Not found, invalid input. */
    CHECK_EQ_INT(store_account_get(s, 424242, &a), STORE_NOTFOUND);
    CHECK_EQ_STR(store_errmsg(s), "account 424242 not found");
    CHECK_EQ_INT(store_account_create(s, "neg", -1, NULL), STORE_ERR);
    CHECK_EQ_INT(store_account_create(s, "", 0, NULL), STORE_ERR);
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_EQ_INT(store_account_create(s, longname, 0, NULL), STORE_ERR);
    longname[127] = '\0';
    CHECK_EQ_INT(store_account_create(s, longname, 0, NULL), STORE_OK);

    store_close(s);
}

/* The schema itself refuses what the code must never write. */
static void test_schema_guards(void)
{
    CHECK(sql_int("SELECT count(*) FROM accounts") > 0);
    CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = -1 WHERE id = 1"), SQLITE_CONSTRAINT);
    /* STRICT: SQLite refuses a float; PostgreSQL's BIGINT column rounds one, never stores it */
    if (!tdb_pg)
        CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = 1.5 WHERE id = 1"),
                     SQLITE_CONSTRAINT);
    CHECK_EQ_INT(sql_exec("INSERT INTO transactions(account_id, amount_nusd, type, "
                          "created_at_ms) VALUES (1, 1, 'gift', 0)"),
                 SQLITE_CONSTRAINT);
    CHECK_EQ_INT(sql_int("SELECT balance_nusd FROM accounts WHERE id = 1"), 5000000000LL);
}

static void test_keys(void)
{
    store_t *s = open_store();
    store_key k, k2, *list = NULL;
    size_t n = 0;
    int64_t acct = 0, other = 0;
    char key[64], key2[64];
    unsigned char h[32];

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_account_create(s, "keys", 0, &acct), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "other", 0, &other), STORE_OK);

    CHECK_EQ_INT(store_key_create(s, acct, KEY_PROXY, "laptop", 0, -1, key, &k), STORE_OK);
    CHECK_EQ_INT(key_well_formed(key, strlen(key), NULL), 1);
    CHECK(strncmp(key, "ms-", 3) == 0);
    CHECK(k.id > 0);
    CHECK_EQ_INT(k.account_id, acct);
    CHECK_EQ_INT(k.type, KEY_PROXY);
    CHECK_EQ_STR(k.name, "laptop");
    CHECK_EQ_INT(strlen(k.prefix), 8);
    CHECK(strncmp(k.prefix, key, 8) == 0);
    key_hash(key, strlen(key), h);
    CHECK(memcmp(h, k.hash, 32) == 0);
    CHECK_EQ_INT(k.active, 1);
    CHECK_EQ_INT(k.deleted, 0);
    CHECK_EQ_INT(k.expires_at_ms, 0);
    CHECK_EQ_INT(k.spend_limit_nusd, -1);
    CHECK_EQ_INT(k.spent_nusd, 0);
    CHECK_EQ_INT(k.rpm, -1);
    CHECK_EQ_INT(k.tpm, -1);
    CHECK_EQ_INT(k.seq, 1);
    /* Only the hash and prefix are stored: the full key is nowhere in the database. */
    char q[256];
    snprintf(q, sizeof(q), "SELECT count(*) FROM api_keys WHERE name || prefix LIKE '%%%s%%'",
             key + 3);
    CHECK_EQ_INT(sql_int(q), 0);

    CHECK_EQ_INT(store_key_get(s, k.id, &k2), STORE_OK);
    CHECK(memcmp(&k, &k2, sizeof(k)) == 0);

    CHECK_EQ_INT(
        store_key_create(s, acct, KEY_BILLING, NULL, 1900000000000LL, 2500000000LL, key2, &k2),
        STORE_OK);
    CHECK(strncmp(key2, "mk-", 3) == 0);
    CHECK(strcmp(key, key2) != 0);
    CHECK_EQ_STR(k2.name, "");
    CHECK_EQ_INT(k2.expires_at_ms, 1900000000000LL);
    CHECK_EQ_INT(k2.spend_limit_nusd, 2500000000LL);
    CHECK_EQ_INT(k2.seq, 2);

    CHECK_EQ_INT(store_key_create(s, acct, KEY_PROXY, "second", 0, -1, key2, NULL), STORE_OK);
    CHECK_EQ_INT(store_key_create(s, other, KEY_PROXY, "theirs", 0, -1, key2, NULL), STORE_OK);

    CHECK_EQ_INT(store_key_list(s, acct, KEY_PROXY, &list, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(list[0].name, "laptop");
        CHECK_EQ_STR(list[1].name, "second");
        CHECK(list[0].id < list[1].id);
    }
    free(list);
    CHECK_EQ_INT(store_key_list(s, acct, KEY_BILLING, &list, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    free(list);
    CHECK_EQ_INT(store_key_list(s, 99999, KEY_PROXY, &list, &n), STORE_NOTFOUND);
    CHECK(list == NULL && n == 0);

    /* Deactivate / activate / delete, each taking a new sequence value. */
    CHECK_EQ_INT(store_key_set_active(s, k.id, 0), STORE_OK);
    CHECK_EQ_INT(store_key_get(s, k.id, &k2), STORE_OK);
    CHECK_EQ_INT(k2.active, 0);
    CHECK_EQ_INT(k2.seq, 5);
    CHECK_EQ_INT(store_key_set_active(s, k.id, 1), STORE_OK);
    CHECK_EQ_INT(store_key_get(s, k.id, &k2), STORE_OK);
    CHECK_EQ_INT(k2.active, 1);
    CHECK_EQ_INT(k2.seq, 6);
    CHECK_EQ_INT(store_key_delete(s, k.id), STORE_OK);
    CHECK_EQ_INT(store_key_get(s, k.id, &k2), STORE_NOTFOUND);
    CHECK_EQ_INT(store_key_delete(s, k.id), STORE_NOTFOUND);
    CHECK_EQ_INT(store_key_set_active(s, k.id, 1), STORE_NOTFOUND);
    CHECK_EQ_STR(store_errmsg(s), "key 1 not found");
    CHECK_EQ_INT(sql_int("SELECT deleted FROM api_keys WHERE id = 1"), 1);
    CHECK_EQ_INT(sql_int("SELECT seq FROM api_keys WHERE id = 1"), 7);
    /* Failed changes do not consume sequence values. */
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'key_seq'"), 7);
    CHECK_EQ_INT(store_key_list(s, acct, KEY_PROXY, &list, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    free(list);

    /* Not found and invalid input; the caller never gets a key that was not stored. */
    memset(key2, 'x', sizeof(key2));
    CHECK_EQ_INT(store_key_create(s, 99999, KEY_PROXY, "x", 0, -1, key2, NULL), STORE_NOTFOUND);
    CHECK_EQ_INT(key2[0], 0);
    CHECK_EQ_INT(store_key_create(s, acct, KEY_PROXY, "x", -5, -1, key2, NULL), STORE_ERR);
    CHECK_EQ_INT(store_key_create(s, acct, KEY_PROXY, "x", 0, -2, key2, NULL), STORE_ERR);
    CHECK_EQ_INT(store_key_create(s, acct, (key_type)9, "x", 0, -1, key2, NULL), STORE_ERR);
    CHECK_EQ_INT(store_key_get(s, 99999, &k2), STORE_NOTFOUND);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'key_seq'"), 7);

    store_close(s);
}

typedef struct {
    int64_t seqs[64];
    int64_t ids[64];
    int deleted[64];
    int n;
} since_log;

static void since_cb(void *ud, const store_key *k)
{
    since_log *l = ud;
    if (l->n < 64) {
        l->seqs[l->n] = k->seq;
        l->ids[l->n] = k->id;
        l->deleted[l->n] = k->deleted;
        l->n++;
    }
}

static void test_keys_since(void)
{
    store_t *s = open_store(), *w = open_store();
    since_log l;
    int64_t max = -1, acct = 0;
    store_key k;
    char key[64];

    CHECK(s != NULL && w != NULL);
    if (!s || !w) goto cleanup;

    /* Everything from the start, in seq order, tombstone included. */
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_keys_since(s, 0, since_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 4);
    CHECK_EQ_INT(max, 7);
    for (int i = 1; i < l.n; i++)
        CHECK(l.seqs[i] > l.seqs[i - 1]);
    CHECK_EQ_INT(l.seqs[l.n - 1], 7);
    CHECK_EQ_INT(l.ids[l.n - 1], 1);
    CHECK_EQ_INT(l.deleted[l.n - 1], 1);

    /* Nothing new: max stays at since. */
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_keys_since(s, 7, since_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 0);
    CHECK_EQ_INT(max, 7);

    /* Changes through another handle show up, each once, in order. */
    CHECK_EQ_INT(store_account_create(w, "since", 0, &acct), STORE_OK);
    CHECK_EQ_INT(store_key_create(w, acct, KEY_PROXY, "a", 0, -1, key, &k), STORE_OK);
    CHECK_EQ_INT(store_key_set_active(w, 2, 0), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_keys_since(s, 7, since_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.ids[0], k.id);
    CHECK_EQ_INT(l.seqs[0], 8);
    CHECK_EQ_INT(l.ids[1], 2);
    CHECK_EQ_INT(l.seqs[1], 9);
    CHECK_EQ_INT(max, 9);

    /* A key changed twice appears once, with its latest sequence. */
    CHECK_EQ_INT(store_key_set_active(w, k.id, 0), STORE_OK);
    CHECK_EQ_INT(store_key_set_active(w, k.id, 1), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_keys_since(s, max, since_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_INT(l.seqs[0], 11);
    CHECK_EQ_INT(max, 11);

cleanup:
    store_close(s);
    store_close(w);
}

/* The maximum balance: an opening balance or a top-up that would pass it is STORE_LIMIT (the API
 * answers 400 for it, not 500) and changes nothing; reaching it exactly is fine. */
static void test_balance_maximum(void)
{
    const int64_t max = STORE_MAX_BALANCE_NUSD;
    store_t *s = open_store();
    store_account a;
    int64_t full = 0, near = 0, id = 0;

    CHECK(s != NULL);
    if (!s) return;
    /* with headroom: a balance plus any amount that passed the same check fits in int64 */
    CHECK(max <= INT64_MAX / 4);
    CHECK_EQ_INT(store_account_create(s, "full", max, &full), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "near", max - 5, &near), STORE_OK);
    int64_t naccounts = sql_int("SELECT count(*) FROM accounts");
    int64_t ntx = sql_int("SELECT count(*) FROM transactions");
    int64_t seq = sql_int("SELECT value FROM meta WHERE key = 'account_seq'");

    CHECK_EQ_INT(store_account_create(s, "over", max + 1, &id), STORE_LIMIT);
    CHECK(strstr(store_errmsg(s), "maximum balance of USD 1000000000") != NULL);
    CHECK_EQ_INT(store_account_create(s, "huge", INT64_MAX, &id), STORE_LIMIT);

    CHECK_EQ_INT(store_account_topup(s, full, 1, NULL), STORE_LIMIT);
    CHECK(strstr(store_errmsg(s), "maximum balance of USD 1000000000") != NULL);
    CHECK_EQ_INT(store_account_topup(s, near, 6, NULL), STORE_LIMIT);
    CHECK_EQ_INT(store_account_topup(s, near, max + 1, NULL), STORE_LIMIT);
    CHECK_EQ_INT(store_account_topup(s, near, INT64_MAX, NULL), STORE_LIMIT);
    /* 9223372036 USD fits in int64 nano-dollars alone but not added to a balance: the case that
     * used to be a 500 */
    CHECK_EQ_INT(store_account_topup(s, near, 9223372036000000000LL, NULL), STORE_LIMIT);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM accounts"), naccounts);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions"), ntx);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), seq);

    CHECK_EQ_INT(store_account_topup(s, near, 5, "to the brim"), STORE_OK);
    CHECK_EQ_INT(store_account_get(s, near, &a), STORE_OK);
    CHECK_EQ_INT(a.balance_nusd, max);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    store_close(s);
}

/* Stored responses: a row is read back only by its account and before it expires; DELETE and
 * GET agree; the same id saved twice keeps the first; purge deletes expired rows only. */
static void test_responses(void)
{
    store_t *s = open_store();
    int64_t a = 0, b = 0, n = -1;
    store_response got;
    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_account_create(s, "ra", 0, &a), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "rb", 0, &b), STORE_OK);
    store_response r = {.id = "resp_1",
                        .account_id = a,
                        .key_id = 3,
                        .model = "m",
                        .created_at_ms = 1000,
                        .expires_at_ms = 5000,
                        .response = "{\"id\":\"resp_1\"}",
                        .response_len = 15,
                        .history = "[1]",
                        .history_len = 3};
    CHECK_EQ_INT(store_response_put(s, &r), STORE_OK);
    store_response again = r;
    again.response = "{\"id\":\"other\"}";
    again.response_len = 14;
    CHECK_EQ_INT(store_response_put(s, &again), STORE_OK);
    CHECK_EQ_INT(store_response_get(s, "resp_1", a, 4999, 1, &got), STORE_OK);
    CHECK_EQ_STR(got.response, "{\"id\":\"resp_1\"}");
    CHECK_EQ_INT(got.response_len, 15);
    CHECK_EQ_STR(got.history, "[1]");
    store_response_free(&got);
    CHECK_EQ_INT(store_response_get(s, "resp_1", a, 4999, 0, &got), STORE_OK);
    CHECK(got.history == NULL);
    store_response_free(&got);
    /* another account, an expired row, an unknown id */
    CHECK_EQ_INT(store_response_get(s, "resp_1", b, 4999, 1, &got), STORE_NOTFOUND);
    CHECK(got.response == NULL);
    CHECK_EQ_INT(store_response_get(s, "resp_1", a, 5000, 1, &got), STORE_NOTFOUND);
    CHECK_EQ_INT(store_response_get(s, "resp_2", a, 10, 1, &got), STORE_NOTFOUND);
    CHECK_EQ_INT(store_response_delete(s, "resp_1", b, 10), STORE_NOTFOUND);
    CHECK_EQ_INT(store_response_delete(s, "resp_1", a, 6000), STORE_NOTFOUND);
    /* no history kept */
    store_response h = r;
    h.id = "resp_3";
    h.history = NULL;
    h.expires_at_ms = 9000;
    CHECK_EQ_INT(store_response_put(s, &h), STORE_OK);
    CHECK_EQ_INT(store_response_get(s, "resp_3", a, 10, 1, &got), STORE_OK);
    CHECK(got.response != NULL && got.history == NULL);
    store_response_free(&got);
    /* purge at 6000: resp_1 (expired at 5000) goes, resp_3 stays */
    CHECK_EQ_INT(store_responses_purge(s, 6000, 100, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM responses"), 1);
    CHECK_EQ_INT(store_response_delete(s, "resp_3", a, 6000), STORE_OK);
    CHECK_EQ_INT(store_response_delete(s, "resp_3", a, 6000), STORE_NOTFOUND);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM responses"), 0);
    store_close(s);
}

static void run_all(void)
{
    setup();
    RUN(test_open_and_migrate);
    RUN(test_migration_2_upgrade);
    RUN(test_migration_4_upgrade);
    RUN(test_newer_schema_refused);
    RUN(test_open_errors);
    RUN(test_accounts);
    RUN(test_schema_guards);
    RUN(test_keys);
    RUN(test_keys_since);
    RUN(test_balance_maximum);
    RUN(test_responses);
    teardown();
}

int main(void)
{
    tdb_run(run_all);
    TAP_DONE();
}
