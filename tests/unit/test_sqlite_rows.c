/*
 * Unit tests for src/store/sqlite_rows.c, ms_usage_rows(?1), the table-valued function the
 * ledger's INSERT reads a batch through, on a plain in-memory connection:
 * - every column of every row is the event's value (the prompt as the sum of its parts, the
 *   batch's created_at and ids, full-width text fields without a terminator, flags as 0/1);
 * - only a pointer bound with the function's own type is read: another type, a number, a text,
 *   NULL or an empty batch give no rows, so SQL text cannot make it read memory;
 * - without its argument it has no plan; it cannot be created in a schema, nor read from a view
 *   or trigger (direct-only).
 * The ledger's use of it (idempotent batches of every size, chunks of 1024) is test_ledger_store's.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "store/sqlite_rows.h"
#include "tap.h"

static sqlite3 *db;

static int open_db(void)
{
    if (sqlite3_open(":memory:", &db) != SQLITE_OK || sqr_register(db) != SQLITE_OK) {
        fprintf(stderr, "open: %s\n", db ? sqlite3_errmsg(db) : "no memory");
        return -1;
    }
    return 0;
}

/* Rows of `sql` (one parameter, bound by bind) counted; -1 when it cannot be prepared or
 * stepping fails. */
static int count_rows(const char *sql, void (*bind)(sqlite3_stmt *, void *), void *arg)
{
    sqlite3_stmt *st = NULL;
    int n = 0, rc;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return -1;
    if (bind) bind(st, arg);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        n++;
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? n : -1;
}

static void bind_batch(sqlite3_stmt *st, void *b)
{
    sqlite3_bind_pointer(st, 1, b, SQR_PTR_TYPE, NULL);
}

static void bind_other_type(sqlite3_stmt *st, void *b)
{
    sqlite3_bind_pointer(st, 1, b, "carray", NULL);
}

static void bind_int(sqlite3_stmt *st, void *b)
{
    sqlite3_bind_int64(st, 1, (int64_t)(intptr_t)b);
}

static void bind_text(sqlite3_stmt *st, void *b)
{
    (void)b;
    sqlite3_bind_text(st, 1, "0x1234", -1, SQLITE_STATIC);
}

static void test_values(void)
{
    static store_usage_event ev[3];
    int64_t at[3] = {1750000000001LL, 1750000000002LL, 1750000000003LL};
    memset(ev, 0, sizeof ev);
    for (int i = 0; i < 3; i++) {
        snprintf(ev[i].request_id, sizeof ev[i].request_id, "req_%d", i);
        ev[i].account_id = 10 + i;
        ev[i].key_id = 20 + i;
        snprintf(ev[i].model, sizeof ev[i].model, "gpt-4o");
        snprintf(ev[i].provider, sizeof ev[i].provider, "openai");
        ev[i].usage.input = 100;
        ev[i].usage.cached_input = 50 + i;
        ev[i].usage.cache_write = 7;
        ev[i].usage.cache_write_1h = 3;
        ev[i].usage.output = 40;
        ev[i].usage.reasoning = 11;
        ev[i].charged_nusd = 123456789 + i;
        ev[i].status = 200 + i;
        ev[i].estimated = 5 * i; /* any nonzero is 1 */
        ev[i].cached = i == 1 ? 9 : 0;
        ev[i].latency_ms = 321;
        ev[i].created_at_ms = 99; /* not read: the batch's at[] is */
    }
    memset(ev[2].model, 'm', sizeof ev[2].model);       /* no terminator */
    memset(ev[2].provider, 'p', sizeof ev[2].provider); /* no terminator */
    sqr_batch b = {.ev = ev, .at = at, .id0 = 1000, .n = 3};

    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "SELECT " SQR_COLS " FROM " SQR_NAME "(?1)", -1, &st, NULL),
                 SQLITE_OK);
    if (!st) return;
    bind_batch(st, &b);
    for (int i = 0; i < 3; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "req_%d", i);
        CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
        CHECK_EQ_STR((const char *)sqlite3_column_text(st, 0), rid);
        CHECK_EQ_INT(sqlite3_column_int64(st, 1), 10 + i);
        CHECK_EQ_INT(sqlite3_column_int64(st, 2), 20 + i);
        CHECK_EQ_INT(sqlite3_column_bytes(st, 3), i == 2 ? 128 : 6);
        CHECK_EQ_INT(sqlite3_column_bytes(st, 4), i == 2 ? 64 : 6);
        CHECK_EQ_INT(sqlite3_column_int64(st, 5), 100 + 50 + i + 7 + 3);
        CHECK_EQ_INT(sqlite3_column_int64(st, 6), 40);
        CHECK_EQ_INT(sqlite3_column_int64(st, 7), 123456789 + i);
        CHECK_EQ_INT(sqlite3_column_int64(st, 8), 200 + i);
        CHECK_EQ_INT(sqlite3_column_int64(st, 9), i ? 1 : 0);
        CHECK_EQ_INT(sqlite3_column_int64(st, 10), 321);
        CHECK_EQ_INT(sqlite3_column_int64(st, 11), at[i]);
        CHECK_EQ_INT(sqlite3_column_int64(st, 12), 50 + i);
        CHECK_EQ_INT(sqlite3_column_int64(st, 13), 7);
        CHECK_EQ_INT(sqlite3_column_int64(st, 14), 3);
        CHECK_EQ_INT(sqlite3_column_int64(st, 15), 11);
        CHECK_EQ_INT(sqlite3_column_int64(st, 16), i == 1 ? 1 : 0);
        CHECK_EQ_INT(sqlite3_column_int64(st, 17), 1000 + i);
        CHECK_EQ_INT(sqlite3_column_type(st, 0), SQLITE_TEXT);
        CHECK_EQ_INT(sqlite3_column_type(st, 17), SQLITE_INTEGER);
    }
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    /* the hidden argument is not among the columns a star reads */
    CHECK_EQ_INT(count_rows("SELECT * FROM " SQR_NAME "(?1) WHERE batch IS NULL", bind_batch, &b),
                 3);
}

static void test_only_its_pointer(void)
{
    store_usage_event ev[2];
    int64_t at[2] = {1, 2};
    memset(ev, 0, sizeof ev);
    sqr_batch b = {.ev = ev, .at = at, .id0 = 1, .n = 2}, empty = {.ev = ev, .at = at, .n = 0};
    const char *sql = "SELECT id FROM " SQR_NAME "(?1)";

    CHECK_EQ_INT(count_rows(sql, bind_batch, &b), 2);
    CHECK_EQ_INT(count_rows(sql, bind_batch, &empty), 0);
    CHECK_EQ_INT(count_rows(sql, bind_other_type, &b), 0);
    CHECK_EQ_INT(count_rows(sql, bind_int, (void *)(intptr_t)&b), 0);
    CHECK_EQ_INT(count_rows(sql, bind_text, NULL), 0);
    CHECK_EQ_INT(count_rows(sql, NULL, NULL), 0); /* unbound: NULL */
    CHECK_EQ_INT(count_rows("SELECT id FROM " SQR_NAME "(1234)", NULL, NULL), 0);
}

static void test_refused(void)
{
    sqlite3_stmt *st = NULL;
    /* no argument: no plan */
    CHECK(sqlite3_prepare_v2(db, "SELECT id FROM " SQR_NAME, -1, &st, NULL) != SQLITE_OK);
    sqlite3_finalize(st);
    st = NULL;
    /* not in a schema */
    CHECK(sqlite3_exec(db, "CREATE VIRTUAL TABLE t USING " SQR_NAME, NULL, NULL, NULL) !=
          SQLITE_OK);
    /* not from a view or a trigger: the view can be created, not read */
    CHECK_EQ_INT(
        sqlite3_exec(db, "CREATE VIEW v AS SELECT id FROM " SQR_NAME "(NULL)", NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_EQ_INT(count_rows("SELECT * FROM v", NULL, NULL), -1);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "CREATE TABLE x(a); CREATE TRIGGER tr AFTER INSERT ON x BEGIN "
                              "SELECT id FROM " SQR_NAME "(NULL); END;",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK(sqlite3_exec(db, "INSERT INTO x VALUES (1)", NULL, NULL, NULL) != SQLITE_OK);
}

int main(void)
{
    if (open_db() != 0) return 1;
    RUN(test_values);
    RUN(test_only_its_pointer);
    RUN(test_refused);
    sqlite3_close(db);
    TAP_DONE();
}
