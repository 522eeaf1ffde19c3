/*
 * The store's unit tests run against both backends: every case once on a SQLite file (as
 * always) and, when MS_TEST_PG_URL names a PostgreSQL server (tests/run.sh starts one with
 * tests/pg.sh), once more on PostgreSQL, each store on a fresh database of its own.
 *
 * A test points its config at the current pass's store with tdb_use, checks rows with plain SQL
 * through tdb_int / tdb_exec (a connection of their own, like an operator's), and wraps what
 * only one database has (SQLite's pragmas, an old SQLite schema to upgrade) in `if (!tdb_pg)`.
 * tdb_exec answers in SQLite's result codes on both, so a check written as "this UPDATE fails
 * with SQLITE_CONSTRAINT" means the same thing on PostgreSQL (an integrity violation, SQLSTATE
 * class 23).
 */
#ifndef MS_TESTDB_H
#define MS_TESTDB_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "store/sqlite_usage.h"
#include "tap.h"

static int tdb_pg;             /* this pass runs on PostgreSQL */
static const char *tdb_sqlite; /* the SQLite pass's database file (the test's buffer) */
static char tdb_url[512];      /* the PostgreSQL pass's database */
static char tdb_names[64][48]; /* databases made, dropped by tdb_finish */
static int tdb_nnames;

/* MS_TEST_PG_URL with its database replaced by name, into out. */
static inline void tdb_url_for(const char *name, char *out, size_t outlen)
{
    const char *base = getenv("MS_TEST_PG_URL");
    const char *q = strchr(base, '?'), *host = strstr(base, "://");
    const char *slash = NULL;
    for (const char *p = host ? host + 3 : base; *p && p != q; p++)
        if (*p == '/') slash = p;
    int keep = (int)((slash ? slash : q ? q : base + strlen(base)) - base);
    snprintf(out, outlen, "%.*s/%s%s", keep, base, name, q ? q : "");
}

/* Runs sql on the server's own database (CREATE / DROP DATABASE); 0 on success. */
static inline int tdb_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("MS_TEST_PG_URL"));
    int ok = 0;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) fprintf(stderr, "testdb: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "testdb: cannot reach MS_TEST_PG_URL: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* Points cfg at a fresh store of this pass: the SQLite file sqlite_path (as the test made it),
 * or a new PostgreSQL database. Exits when the server cannot make one (nothing could be
 * tested). */
static inline void tdb_use(cfg_t *cfg, const char *sqlite_path)
{
    if (!tdb_pg) {
        tdb_sqlite = sqlite_path;
        cfg->sqlite_path = (char *)sqlite_path;
        cfg->postgres_url = NULL;
        return;
    }
    char name[48], sql[96];
    snprintf(name, sizeof name, "ms_t%ld_%d", (long)getpid(), tdb_nnames);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (tdb_nnames == 64 || tdb_admin(sql) != 0) {
        fprintf(stderr, "testdb: cannot create a database\n");
        exit(1);
    }
    snprintf(tdb_names[tdb_nnames++], sizeof tdb_names[0], "%s", name);
    tdb_url_for(name, tdb_url, sizeof tdb_url);
    cfg->sqlite_path = NULL;
    cfg->postgres_url = tdb_url;
}

/* SQL that takes a SQLite store with no usage rows back from schema version 12 to 9: usage a
 * table again, as migrations 2, 4 and 7 left it, for the tests of older databases' upgrades
 * (which then go through migrations 10 to 12 with the rows they wrote). */
#define TDB_UNDO_MIGRATION_10                                                                      \
    "DROP VIEW ledger_transactions; DROP TABLE usage_blocks; DROP TABLE usage_recent;"             \
    "CREATE TABLE usage (id INTEGER PRIMARY KEY,"                                                  \
    "  request_id TEXT NOT NULL UNIQUE CHECK (length(request_id) > 0),"                            \
    "  account_id INTEGER NOT NULL REFERENCES accounts(id),"                                       \
    "  key_id INTEGER NOT NULL REFERENCES api_keys(id), model TEXT NOT NULL,"                      \
    "  provider TEXT NOT NULL, prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),"         \
    "  completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),"                         \
    "  charged_nusd INTEGER NOT NULL CHECK (charged_nusd >= 0), status INTEGER NOT NULL,"          \
    "  estimated INTEGER NOT NULL DEFAULT 0, latency_ms INTEGER NOT NULL,"                         \
    "  created_at_ms INTEGER NOT NULL,"                                                            \
    "  cached_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),"                       \
    "  cache_write_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),"             \
    "  cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),"       \
    "  reasoning_tokens INTEGER NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),"                 \
    "  cached INTEGER NOT NULL DEFAULT 0) STRICT;"                                                 \
    "CREATE INDEX usage_account ON usage(account_id, id);"                                         \
    "CREATE VIEW ledger_transactions AS SELECT id, account_id, amount_nusd, type, description,"    \
    "  request_id, created_at_ms FROM transactions UNION ALL SELECT id, account_id,"               \
    "  -charged_nusd, 'usage', model || ' ' || prompt_tokens || '+' || completion_tokens ||"       \
    "  ' tokens', request_id, created_at_ms FROM usage WHERE charged_nusd > 0 AND id > "           \
    "  (SELECT value FROM meta WHERE key = 'usage_tx_after');"                                     \
    "DELETE FROM schema_migrations WHERE version >= 10;"

/* Opens the current SQLite store with the `usage` table its readers see (store/sqlite_usage.h:
 * the rows live in blocks a plain connection cannot read). */
static inline int tdb_sqlite_open(sqlite3 **db)
{
    int rc = sqlite3_open(tdb_sqlite, db);
    return rc == SQLITE_OK ? squ_register(*db) : rc;
}

/* One integer from sql on the current store, INT64_MIN on failure. */
static inline int64_t tdb_int(const char *sql)
{
    int64_t v = INT64_MIN;
    if (tdb_pg) {
        PGconn *c = PQconnectdb(tdb_url);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fprintf(stderr, "testdb: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (tdb_sqlite_open(&db) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* One text value (first row, first column) into out; "" when there is none. */
static inline const char *tdb_text(const char *sql, char *out, size_t outlen)
{
    out[0] = '\0';
    if (tdb_pg) {
        PGconn *c = PQconnectdb(tdb_url);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
            snprintf(out, outlen, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        PQfinish(c);
        return out;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (tdb_sqlite_open(&db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0))
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Runs sql on the current store: SQLITE_OK, SQLITE_CONSTRAINT (PostgreSQL: an integrity
 * violation) or another SQLite error code. */
static inline int tdb_exec(const char *sql)
{
    if (tdb_pg) {
        PGconn *c = PQconnectdb(tdb_url);
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? SQLITE_OK
                 : state && strncmp(state, "23", 2) == 0         ? SQLITE_CONSTRAINT
                                                                 : SQLITE_ERROR;
        PQclear(r);
        PQfinish(c);
        return rc;
    }
    sqlite3 *db = NULL;
    int rc = tdb_sqlite_open(&db);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    sqlite3_close(db);
    return rc;
}

/* Drops the databases this process made. */
static inline void tdb_finish(void)
{
    for (int i = 0; i < tdb_nnames; i++) {
        char sql[96];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %.47s WITH (FORCE)", tdb_names[i]);
        tdb_admin(sql);
    }
    tdb_nnames = 0;
}

/* Runs all (every case of a test binary) on SQLite, then on PostgreSQL when configured. */
static inline void tdb_run(void (*all)(void))
{
    tdb_pg = 0;
    tap_variant = "";
    all();
    const char *url = getenv("MS_TEST_PG_URL");
    if (!url || !*url) return;
    tdb_pg = 1;
    tap_variant = " [postgres]";
    all();
    tdb_finish();
    tdb_pg = 0;
    tap_variant = "";
}

#endif
