/*
 * Unit tests for src/store/sqlite_usage.c, the usage ledger's blocks and the `usage` virtual
 * table over them, on a plain in-memory connection with the usage_blocks table of migration 10:
 * - a block encodes and decodes every field of every row exactly: extreme and negative numbers,
 *   texts of 0 and 255 bytes, a model or provider repeated or not from the row before; a mixed
 *   block (usage_recent's, migration 12) each row's account too;
 * - the encoder refuses what a block cannot hold (another account, an id not above the last, a
 *   text over 255 bytes, a time before the block's start, a row past SQU_ROWS_MAX) and writes
 *   nothing then;
 * - every cut and every flipped byte of a block decodes to an error or to rows, never past its
 *   end (ASan watches), and the table reports a damaged block as SQLITE_CORRUPT;
 * - the table's rows are the blocks' rows, wherever they are (usage_blocks, usage_recent by
 *   account or mixed): by account in id order both ways (the plan consumes
 *   ORDER BY id, so LIMIT/OFFSET pages need no sort), with a created_at_ms range that skips
 *   blocks and gives exactly what the same filter over every row gives, and without constraints;
 * - an INSERT of one row is a block of its own, with the old table's types and CHECKs; UPDATE
 *   and DELETE are refused;
 * - a plan's statement, kept between reads, reads other values right, and two cursors of one
 *   plan at once (a correlated read) each have their own.
 * The ledger's use of it (exactly-once batches, replays) is test_ledger_store's.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "squ_rows.h"
#include "store/sqlite_usage.h"
#include "tap.h"

static sqlite3 *db;

static int open_db(void)
{
    if (sqlite3_open(":memory:", &db) != SQLITE_OK || squ_register(db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "CREATE TABLE usage_blocks (id INTEGER PRIMARY KEY, account_id INTEGER NOT "
                     "NULL, first_id INTEGER NOT NULL, n INTEGER NOT NULL, min_created_ms "
                     "INTEGER NOT NULL, max_created_ms INTEGER NOT NULL, rows BLOB NOT NULL) "
                     "STRICT; CREATE INDEX usage_blocks_account ON usage_blocks(account_id, id);"
                     "CREATE TABLE usage_recent (id INTEGER PRIMARY KEY, account_id INTEGER NOT "
                     "NULL, first_id INTEGER NOT NULL, n INTEGER NOT NULL, min_created_ms "
                     "INTEGER NOT NULL, max_created_ms INTEGER NOT NULL, rows BLOB NOT NULL) "
                     "STRICT;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "open: %s\n", db ? sqlite3_errmsg(db) : "no memory");
        return -1;
    }
    return 0;
}

static int64_t sql_int(const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = INT64_MIN;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The result code of stepping sql to its end. */
static int sql_rc(const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The rows of sql if each id is below the one before, else -1. */
static int ids_descend(const char *sql)
{
    sqlite3_stmt *st = NULL;
    int n = 0;
    int64_t prev = INT64_MAX;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        if (id >= prev) n = -1;
        if (n >= 0) n++;
        prev = id;
    }
    sqlite3_finalize(st);
    return n;
}

/* Whether sql's plan sorts (a temporary b-tree for its ORDER BY). */
static int plan_sorts(const char *sql)
{
    char q[512];
    sqlite3_stmt *st = NULL;
    int sorts = 0;
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) return -1;
    while (sqlite3_step(st) == SQLITE_ROW)
        if (strstr((const char *)sqlite3_column_text(st, 3), "TEMP B-TREE")) sorts = 1;
    sqlite3_finalize(st);
    return sorts;
}

static char texts[3][256];

/* Row i of a test block of account acct: every field derived from i. */
static squ_row make_row(int64_t acct, int64_t id, int i)
{
    squ_row r = {
        .id = id,
        .account_id = acct,
        .key_id = i % 3 ? 7 : INT64_MAX,
        .prompt = (int64_t)i * 1000003,
        .completion = i % 5 == 0 ? INT64_MAX : i,
        .charged = i % 7 == 0 ? 0 : (int64_t)i * 123456789,
        .status = i % 4 ? 200 : 499,
        .estimated = i & 1,
        .latency = i % 9 == 0 ? -1 : i * 3, /* the encoding takes any integer */
        .created = 1700000000000LL + i * 17,
        .cached_tokens = i % 2 ? 0 : INT64_MAX - i,
        .cache_write = i,
        .cache_write_1h = i / 2,
        .reasoning = i / 3,
        .cached = i % 11 == 0,
        .request_id = texts[0],
        .request_id_len = (size_t)snprintf(texts[0], sizeof texts[0], "req_%08d", i),
        .model = texts[1],
        /* the same model for runs of rows (the repeat), a long one at times */
        .model_len = i % 10 == 9 ? 255 : (size_t)snprintf(texts[1], sizeof texts[1], "m-%d", i / 4),
        .provider = texts[2],
        .provider_len = i % 6 == 5 ? 0 : (size_t)snprintf(texts[2], sizeof texts[2], "p%d", i / 8),
    };
    if (r.model_len == 255) memset(texts[1], 'M', 255);
    return r;
}

static unsigned char *blockbuf;

/* Encodes n rows of account acct, ids from id0 by step, into blockbuf. */
static int encode(squ_enc *e, int64_t acct, int64_t id0, int step, int n)
{
    squ_enc_start(e, blockbuf, 1700000000000LL);
    for (int i = 0; i < n; i++) {
        squ_row r = make_row(acct, id0 + (int64_t)i * step, i);
        if (squ_enc_add(e, &r) != 0) return -1;
    }
    return 0;
}

static void test_roundtrip(void)
{
    squ_enc e;
    CHECK_EQ_INT(encode(&e, 3, 100, 3, SQU_ROWS_MAX), 0);
    CHECK_EQ_INT(e.n, SQU_ROWS_MAX);
    CHECK_EQ_INT(e.first_id, 100);
    CHECK_EQ_INT(e.last_id, 100 + 3 * (SQU_ROWS_MAX - 1));
    CHECK_EQ_INT(e.max_created, 1700000000000LL + (SQU_ROWS_MAX - 1) * 17);
    /* repeats are left out: far fewer bytes than the texts */
    CHECK(e.len < (size_t)SQU_ROWS_MAX * 120);
    squ_dec d;
    squ_row got;
    squ_dec_start(&d, 3, e.first_id, (int64_t)e.n, e.min_created, e.buf, e.len);
    int i = 0, rc;
    while ((rc = squ_dec_next(&d, &got)) == 1) {
        squ_row want = make_row(3, 100 + 3 * i, i);
        if (!squ_rows_equal(&got, &want)) {
            CHECK(!"row decodes as encoded");
            fprintf(stderr, "# row %d differs\n", i);
            break;
        }
        i++;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(i, SQU_ROWS_MAX);
}

/* A mixed block (usage_recent's since migration 12): rows of several accounts, each row naming
 * its account only when it is not the row before's, every row decoding with its own. */
static void test_roundtrip_mixed(void)
{
    static const int64_t acct[] = {5, 5, -3, 9, 9, 9, INT64_MAX, 5, 0};
    const int n = (int)(sizeof acct / sizeof acct[0]);
    squ_enc e;
    int ok = 1;
    squ_enc_start(&e, blockbuf, 1700000000000LL);
    squ_enc_mixed(&e);
    for (int i = 0; i < n && ok; i++) {
        squ_row r = make_row(acct[i], 40 + 2 * i, i);
        ok = squ_enc_add(&e, &r) == 0;
    }
    CHECK(ok);
    CHECK_EQ_INT(e.account_id, 5); /* the first row's */
    squ_dec d;
    squ_row got;
    squ_dec_start(&d, e.account_id, e.first_id, (int64_t)e.n, e.min_created, e.buf, e.len);
    int i = 0, rc;
    while ((rc = squ_dec_next(&d, &got)) == 1) {
        squ_row want = make_row(acct[i], 40 + 2 * i, i);
        CHECK(squ_rows_equal(&got, &want));
        i++;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(i, n);
    /* one account throughout: the same bytes as a block of one account */
    squ_enc one;
    unsigned char *copy = malloc(SQU_BLOCK_MAX);
    CHECK_EQ_INT(encode(&one, 4, 10, 1, 50), 0);
    memcpy(copy, one.buf, one.len);
    squ_enc_start(&e, blockbuf, 1700000000000LL);
    squ_enc_mixed(&e);
    for (int k = 0; k < 50; k++) {
        squ_row r = make_row(4, 10 + k, k);
        CHECK_EQ_INT(squ_enc_add(&e, &r), 0);
    }
    CHECK_EQ_INT(e.len, one.len);
    CHECK(memcmp(copy, e.buf, e.len) == 0);
    free(copy);
}

static void test_enc_refuses(void)
{
    squ_enc e;
    CHECK_EQ_INT(encode(&e, 1, 10, 1, 2), 0);
    size_t len = e.len;
    squ_row r = make_row(2, 20, 2); /* another account */
    CHECK_EQ_INT(squ_enc_add(&e, &r), -1);
    r = make_row(1, 11, 2); /* not above the last id */
    CHECK_EQ_INT(squ_enc_add(&e, &r), -1);
    r = make_row(1, 12, 2);
    r.model_len = 256;
    CHECK_EQ_INT(squ_enc_add(&e, &r), -1);
    r = make_row(1, 12, 2); /* before the block's start: its time range would not hold it */
    r.created = e.min_created - 1;
    CHECK_EQ_INT(squ_enc_add(&e, &r), -1);
    CHECK_EQ_INT(e.len, len);
    CHECK_EQ_INT(e.n, 2);
    CHECK_EQ_INT(encode(&e, 1, 1, 1, SQU_ROWS_MAX), 0);
    r = make_row(1, 5000, 3); /* one too many */
    CHECK_EQ_INT(squ_enc_add(&e, &r), -1);
}

/* Every prefix and every byte flip of a block: an error, or rows, never a read past the end
 * (the copy is exactly the block's size, so ASan sees any). */
static void test_damage(void)
{
    squ_enc e;
    CHECK_EQ_INT(encode(&e, 1, 1, 1, 40), 0);
    int errors = 0;
    for (size_t cut = 0; cut < e.len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, e.buf, cut);
        squ_dec d;
        squ_row r;
        int rc;
        squ_dec_start(&d, 1, e.first_id, (int64_t)e.n, e.min_created, copy, cut);
        while ((rc = squ_dec_next(&d, &r)) == 1)
            ;
        errors += rc < 0;
        free(copy);
    }
    CHECK_EQ_INT(errors,
                 (int)e.len); /* a cut block always fails: the count says rows are missing */
    for (size_t at = 0; at < e.len; at++) {
        unsigned char *copy = malloc(e.len);
        memcpy(copy, e.buf, e.len);
        copy[at] ^= 0xA5;
        squ_dec d;
        squ_row r;
        squ_dec_start(&d, 1, e.first_id, (int64_t)e.n, e.min_created, copy, e.len);
        while (squ_dec_next(&d, &r) == 1)
            ;
        free(copy);
    }
    /* a block with bytes after its last row is damaged too */
    squ_dec d;
    squ_row r;
    squ_dec_start(&d, 1, e.first_id, (int64_t)e.n - 1, e.min_created, e.buf, e.len);
    int rc;
    while ((rc = squ_dec_next(&d, &r)) == 1)
        ;
    CHECK_EQ_INT(rc, -1);
}

/* Stores a block of n rows of acct, ids id0, id0 + step, ..., created from base. */
/* Stores a block in usage_blocks, or in usage_recent (the ledger's newest: migration 11). */
static void store_block_in(int recent, int64_t acct, int64_t id0, int step, int n)
{
    squ_enc e;
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(encode(&e, acct, id0, step, n), 0);
    CHECK_EQ_INT(
        sqlite3_prepare_v2(db, recent ? SQU_RECENT_INSERT : SQU_BLOCK_INSERT, -1, &st, NULL),
        SQLITE_OK);
    CHECK_EQ_INT(squ_block_store(st, &e), SQLITE_OK);
    sqlite3_finalize(st);
}

/* Stores chunk c's rows of accounts 1 and 2 as one block of both in usage_recent (the ledger's
 * since migration 12), rows as store_block_in(recent, acct, 1000 * c + acct, 2, 300) makes
 * them. */
static void store_mixed_in(int c)
{
    squ_enc e;
    sqlite3_stmt *st = NULL;
    int ok = 1;
    squ_enc_start(&e, blockbuf, 1700000000000LL);
    squ_enc_mixed(&e);
    for (int i = 0; i < 300 && ok; i++)
        for (int64_t acct = 1; acct <= 2 && ok; acct++) {
            squ_row r = make_row(acct, 1000 * c + acct + 2 * i, i);
            ok = squ_enc_add(&e, &r) == 0;
        }
    CHECK(ok);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, SQU_RECENT_INSERT, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(squ_block_store(st, &e), SQLITE_OK);
    sqlite3_finalize(st);
}

/* The same rows read the same whichever of the two tables their blocks are in: chunk c is in
 * usage_recent when bit c of recent is set (the ledger writes a block of few rows there and a
 * larger one straight into usage_blocks, so either table may hold the later ids), as a block an
 * account (migration 11) or, with mixed, one block of both accounts (migration 12), and reads
 * merge the two in id order. */
static void table_checks(int recent, int mixed)
{
    /* accounts 1 and 2 interleaved in id (as a chunk writes them), three chunks */
    int in_recent = 0;
    for (int c = 0; c < 3; c++) {
        int r = (recent >> c) & 1;
        if (r && mixed) {
            store_mixed_in(c);
            in_recent++;
            continue;
        }
        store_block_in(r, 1, 1000 * c + 1, 2, 300);
        store_block_in(r, 2, 1000 * c + 2, 2, 300);
        in_recent += 2 * r;
    }
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_recent"), in_recent);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 1800);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 2"), 900);
    int64_t want = 0;
    for (int i = 0; i < 300; i++)
        want += make_row(1, 1, i).charged;
    CHECK_EQ_INT(sql_int("SELECT sum(charged_nusd) FROM usage WHERE account_id = 1"), 3 * want);
    /* in id order both ways, no sort in the plan */
    CHECK_EQ_INT(sql_int("SELECT id FROM usage WHERE account_id = 1 ORDER BY id DESC LIMIT 1"),
                 2001 + 2 * 299);
    CHECK_EQ_INT(sql_int("SELECT id FROM usage WHERE account_id = 1 ORDER BY id DESC LIMIT 1 "
                         "OFFSET 300"),
                 1001 + 2 * 299);
    CHECK_EQ_INT(
        sql_int("SELECT id FROM usage WHERE account_id = 2 ORDER BY id LIMIT 1 OFFSET 301"),
        1002 + 2);
    CHECK_EQ_INT(ids_descend("SELECT id FROM usage WHERE account_id = 2 ORDER BY id DESC"), 900);
    CHECK_EQ_INT(plan_sorts("SELECT id FROM usage WHERE account_id = 1 ORDER BY id DESC"), 0);
    CHECK_EQ_INT(plan_sorts("SELECT id FROM usage ORDER BY id DESC"), 1);
    /* a created_at_ms range gives what the same filter over every row gives */
    const char *ranges[][2] = {{"1700000000000", "1700000001000"},
                               {"1700000002000", "1700000002017"},
                               {"1700000099999", "1800000000000"},
                               {"0", "1"}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        char a[300], b[300];
        snprintf(a, sizeof a,
                 "SELECT count(*) FROM usage WHERE account_id = 1 AND created_at_ms BETWEEN %s "
                 "AND %s",
                 ranges[i][0], ranges[i][1]);
        snprintf(b, sizeof b,
                 "SELECT count(*) FROM (SELECT * FROM usage WHERE account_id = 1 ORDER BY id) "
                 "WHERE +created_at_ms BETWEEN %s AND %s",
                 ranges[i][0], ranges[i][1]);
        CHECK_EQ_INT(sql_int(a), sql_int(b));
    }
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 1 AND created_at_ms > "
                         "1700000000000 + 299 * 17"),
                 0);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 1 AND created_at_ms >= "
                         "1700000000000 + 299 * 17"),
                 3);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 3"), 0);
    /* the column's INTEGER affinity, as the old table's */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = '1'"), 900);
    /* the rowid is the usage id, the texts read back */
    CHECK_EQ_INT(sql_int("SELECT rowid FROM usage WHERE request_id = 'req_00000007' AND "
                         "account_id = 2 ORDER BY id LIMIT 1"),
                 2 + 14);
    CHECK_EQ_INT(sql_int("SELECT length(model) FROM usage WHERE request_id = 'req_00000009' "
                         "LIMIT 1"),
                 255);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE provider = ''"), 6 * 50);
    /* without an account, in id order across both tables (and the next id after the last) */
    CHECK_EQ_INT(ids_descend("SELECT id FROM usage ORDER BY id DESC"), 1800);
    CHECK_EQ_INT(sql_int("SELECT id FROM usage ORDER BY id LIMIT 1 OFFSET 600"), 1001);
    CHECK_EQ_INT(sql_int("SELECT max(id) FROM usage"), 2002 + 2 * 299);
    /* a plan's statement is kept between reads: read again with other values it gives their
     * rows, and two cursors of one plan at once (a correlated read inside another) each have
     * their own */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE id > 2001"), 599);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE id > 1001"), 1199);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE id >= 1001"), 1200);
    CHECK_EQ_INT(sql_int("SELECT sum(c) FROM (SELECT (SELECT count(*) FROM usage u WHERE "
                         "u.account_id = x.account_id - 1 AND u.id > x.id) AS c FROM usage x "
                         "WHERE x.account_id = 2 AND x.id > 2500 ORDER BY x.id)"),
                 (int64_t)49 * 50 / 2);
    CHECK_EQ_INT(sql_rc("CREATE TABLE later_schema (x)"), SQLITE_OK); /* kept ones re-prepare */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 2"), 900);
    CHECK_EQ_INT(sql_rc("DROP TABLE later_schema"), SQLITE_OK);
}

static void test_table(void)
{
    /* all in usage_recent, the last two, the middle one alone, then all in usage_blocks (kept
     * for the tests after this one) */
    const int masks[] = {7, 6, 2};
    for (int mixed = 0; mixed <= 1; mixed++)
        for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
            table_checks(masks[i], mixed);
            CHECK_EQ_INT(sql_rc("DELETE FROM usage_recent"), SQLITE_OK);
            CHECK_EQ_INT(sql_rc("DELETE FROM usage_blocks"), SQLITE_OK);
            CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 0);
        }
    table_checks(0, 0);
}

static void test_insert(void)
{
    CHECK_EQ_INT(sql_rc("INSERT INTO usage(" SQU_COLS ") VALUES (50000, 'imp-1', 9, 4, 'gpt', "
                        "'openai', 10, 2, 500, 200, 0, 12, 1700000005000, 1, 2, 3, 1, 0)"),
                 SQLITE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_blocks WHERE id = 50000 AND n = 1"), 1);
    CHECK_EQ_INT(sql_int("SELECT reasoning_tokens + cache_write_1h_tokens FROM usage WHERE "
                         "account_id = 9"),
                 4);
    /* the old table's types and CHECKs */
    CHECK(sql_rc("INSERT INTO usage(" SQU_COLS ") VALUES (50001, 'imp-2', 9, 4, 'gpt', "
                 "'openai', 1.5, 2, 500, 200, 0, 12, 1, 0, 0, 0, 0, 0)") != SQLITE_OK);
    CHECK(sql_rc("INSERT INTO usage(" SQU_COLS ") VALUES (50001, '', 9, 4, 'gpt', "
                 "'openai', 1, 2, 500, 200, 0, 12, 1, 0, 0, 0, 0, 0)") != SQLITE_OK);
    CHECK(sql_rc("INSERT INTO usage(" SQU_COLS ") VALUES (50001, 'imp-2', 9, 4, 'gpt', "
                 "'openai', 1, 2, -500, 200, 0, 12, 1, 0, 0, 0, 0, 0)") != SQLITE_OK);
    CHECK(sql_rc("INSERT INTO usage(" SQU_COLS ") VALUES (50001, 'imp-2', 9, 4, NULL, "
                 "'openai', 1, 2, 5, 200, 0, 12, 1, 0, 0, 0, 0, 0)") != SQLITE_OK);
    CHECK(sql_rc("INSERT INTO usage(request_id) VALUES ('imp-3')") != SQLITE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE account_id = 9"), 1);
    /* rows never change */
    CHECK(sql_rc("DELETE FROM usage WHERE account_id = 9") != SQLITE_OK);
    CHECK(sql_rc("UPDATE usage SET charged_nusd = 0 WHERE account_id = 9") != SQLITE_OK);
    CHECK_EQ_INT(sql_int("SELECT charged_nusd FROM usage WHERE account_id = 9"), 500);
}

static void test_corrupt(void)
{
    CHECK_EQ_INT(sql_rc("UPDATE usage_blocks SET rows = substr(rows, 1, length(rows) - 3) "
                        "WHERE id = 50000"),
                 SQLITE_OK);
    CHECK_EQ_INT(sql_rc("SELECT * FROM usage WHERE account_id = 9") & 0xff, SQLITE_CORRUPT);
    CHECK_EQ_INT(sql_rc("UPDATE usage_blocks SET n = 5000 WHERE id = 50000"), SQLITE_OK);
    CHECK_EQ_INT(sql_rc("SELECT * FROM usage") & 0xff, SQLITE_CORRUPT);
}

int main(void)
{
    if (open_db() != 0 || !(blockbuf = malloc(SQU_BLOCK_MAX))) return 1;
    RUN(test_roundtrip);
    RUN(test_roundtrip_mixed);
    RUN(test_enc_refuses);
    RUN(test_damage);
    RUN(test_table);
    RUN(test_insert);
    RUN(test_corrupt);
    free(blockbuf);
    sqlite3_close(db);
    TAP_DONE();
}
