/*
 * ms_usage_rows(?1): a ledger batch's events as rows, for the ledger's one INSERT ... SELECT
 * (store/sqlite.c, store_ledger_rows).
 *
 * Why. The ledger wrote its rows with multi-row INSERTs of up to 32 rows, every value bound on
 * its own: 18 sqlite3_bind_* calls a row (~2,100 instructions, each call checking the statement's
 * state and releasing the parameter's old value), an OP_Variable and a copy of each value in the
 * statement, and a statement (with its own statement journal, a copy of every page it changes
 * that existed when it began) every 32 rows. Read through a virtual table, a value is one
 * xColumn call that sets the result, and a batch of any size is one statement. This is the
 * pattern of SQLite's own carray extension: the batch is passed as a pointer bound with
 * sqlite3_bind_pointer, whose type string SQLite checks, so SQL text can never forge one.
 *
 * The table is eponymous-only (xCreate is NULL: it cannot be created in a schema) and
 * direct-only (a view or trigger cannot read it). It reads the caller's memory in place and
 * copies nothing; the caller keeps the batch alive while the statement steps.
 */
#include "store/sqlite_rows.h"

#include <stdlib.h>
#include <string.h>

#include "common/usage.h"

/* Column numbers, SQR_COLS's order, then the hidden argument. */
enum {
    SQR_REQUEST_ID,
    SQR_ACCOUNT_ID,
    SQR_KEY_ID,
    SQR_MODEL,
    SQR_PROVIDER,
    SQR_PROMPT,
    SQR_COMPLETION,
    SQR_CHARGED,
    SQR_STATUS,
    SQR_ESTIMATED,
    SQR_LATENCY,
    SQR_CREATED_AT,
    SQR_CACHED_TOKENS,
    SQR_CACHE_WRITE,
    SQR_CACHE_WRITE_1H,
    SQR_REASONING,
    SQR_CACHED,
    SQR_ID,
    SQR_BATCH /* HIDDEN: the pointer */
};
_Static_assert(SQR_BATCH == SQR_NCOLS, "SQR_NCOLS counts SQR_COLS");

typedef struct sqr_cursor {
    sqlite3_vtab_cursor base;
    const sqr_batch *b; /* NULL: no rows */
    size_t i;
} sqr_cursor;

static int sqr_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                       sqlite3_vtab **out, char **err)
{
    (void)aux, (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(" SQR_COLS ", batch HIDDEN)");
    if (rc != SQLITE_OK) return rc;
    sqlite3_vtab *t = sqlite3_malloc(sizeof(*t));
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof(*t));
    (void)sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
    *out = t;
    return SQLITE_OK;
}

static int sqr_disconnect(sqlite3_vtab *t)
{
    sqlite3_free(t);
    return SQLITE_OK;
}

/* The only plan: the argument given (an equality on the hidden column), passed to xFilter. A
 * plan without it has no rows to read, so it is refused rather than offered at any cost. */
static int sqr_best_index(sqlite3_vtab *t, sqlite3_index_info *ix)
{
    (void)t;
    for (int i = 0; i < ix->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ix->aConstraint[i];
        if (c->iColumn == SQR_BATCH && c->op == SQLITE_INDEX_CONSTRAINT_EQ) {
            if (!c->usable) return SQLITE_CONSTRAINT;
            ix->aConstraintUsage[i].argvIndex = 1;
            ix->aConstraintUsage[i].omit = 1;
            ix->idxNum = 1;
            ix->estimatedCost = 1.0;
            ix->estimatedRows = 100;
            return SQLITE_OK;
        }
    }
    return SQLITE_CONSTRAINT;
}

static int sqr_open(sqlite3_vtab *t, sqlite3_vtab_cursor **out)
{
    (void)t;
    sqr_cursor *c = sqlite3_malloc(sizeof(*c));
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    *out = &c->base;
    return SQLITE_OK;
}

static int sqr_close(sqlite3_vtab_cursor *cur)
{
    sqlite3_free(cur);
    return SQLITE_OK;
}

static int sqr_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxs, int argc,
                      sqlite3_value **argv)
{
    (void)idxs;
    sqr_cursor *c = (sqr_cursor *)cur;
    c->b = idx == 1 && argc == 1 ? sqlite3_value_pointer(argv[0], SQR_PTR_TYPE) : NULL;
    c->i = 0;
    return SQLITE_OK;
}

static int sqr_next(sqlite3_vtab_cursor *cur)
{
    ((sqr_cursor *)cur)->i++;
    return SQLITE_OK;
}

static int sqr_eof(sqlite3_vtab_cursor *cur)
{
    const sqr_cursor *c = (const sqr_cursor *)cur;
    return !c->b || c->i >= c->b->n;
}

/* Column col of row i: a text column (request id, model, provider: store.h's fixed-size char
 * arrays, at most their size, no terminator needed) returns its bytes with *n their length; an
 * integer column returns NULL with *n its value. The one mapping of an event onto a usage row. */
static inline const char *sqr_value(const sqr_batch *b, size_t i, int col, int64_t *n)
{
    const store_usage_event *e = &b->ev[i];
    const usage_counts *u = &e->usage;

    switch (col) {
    case SQR_REQUEST_ID:
        *n = (int64_t)strnlen(e->request_id, sizeof(e->request_id));
        return e->request_id;
    case SQR_MODEL:
        *n = (int64_t)strnlen(e->model, sizeof(e->model));
        return e->model;
    case SQR_PROVIDER:
        *n = (int64_t)strnlen(e->provider, sizeof(e->provider));
        return e->provider;
    case SQR_ACCOUNT_ID:
        *n = e->account_id;
        break;
    case SQR_KEY_ID:
        *n = e->key_id;
        break;
    case SQR_PROMPT: /* cannot overflow: store_check_event refused such an event */
        *n = usage_prompt(u);
        break;
    case SQR_COMPLETION:
        *n = u->output;
        break;
    case SQR_CHARGED:
        *n = e->charged_nusd;
        break;
    case SQR_STATUS:
        *n = e->status;
        break;
    case SQR_ESTIMATED:
        *n = e->estimated ? 1 : 0;
        break;
    case SQR_LATENCY:
        *n = e->latency_ms;
        break;
    case SQR_CREATED_AT:
        *n = b->at[i];
        break;
    case SQR_CACHED_TOKENS:
        *n = u->cached_input;
        break;
    case SQR_CACHE_WRITE:
        *n = u->cache_write;
        break;
    case SQR_CACHE_WRITE_1H:
        *n = u->cache_write_1h;
        break;
    case SQR_REASONING:
        *n = u->reasoning;
        break;
    case SQR_CACHED:
        *n = e->cached ? 1 : 0;
        break;
    default: /* SQR_ID */
        *n = b->id0 + (int64_t)i;
        break;
    }
    return NULL;
}

static int sqr_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    const sqr_cursor *c = (const sqr_cursor *)cur;
    int64_t n;
    const char *t;

    if (col == SQR_BATCH) /* the argument is not read back */
        sqlite3_result_null(ctx);
    else if ((t = sqr_value(c->b, c->i, col, &n)))
        sqlite3_result_text(ctx, t, (int)n, SQLITE_STATIC);
    else
        sqlite3_result_int64(ctx, n);
    return SQLITE_OK;
}

int sqr_bind(sqlite3_stmt *st, const sqr_batch *b, size_t i)
{
    for (int col = 0; col < SQR_NCOLS; col++) {
        int64_t n;
        const char *t = sqr_value(b, i, col, &n);
        int rc = t ? sqlite3_bind_text(st, col + 1, t, (int)n, SQLITE_STATIC)
                   : sqlite3_bind_int64(st, col + 1, n);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int sqr_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *out)
{
    *out = (sqlite_int64)((const sqr_cursor *)cur)->i;
    return SQLITE_OK;
}

static const sqlite3_module sqr_module = {
    .iVersion = 0,
    .xCreate = NULL, /* eponymous-only */
    .xConnect = sqr_connect,
    .xBestIndex = sqr_best_index,
    .xDisconnect = sqr_disconnect,
    .xDestroy = sqr_disconnect,
    .xOpen = sqr_open,
    .xClose = sqr_close,
    .xFilter = sqr_filter,
    .xNext = sqr_next,
    .xEof = sqr_eof,
    .xColumn = sqr_column,
    .xRowid = sqr_rowid,
};

int sqr_register(sqlite3 *db)
{
    return sqlite3_create_module(db, SQR_NAME, &sqr_module, NULL);
}
