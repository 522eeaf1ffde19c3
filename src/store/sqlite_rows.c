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

/* A fixed-size text field of the event (store.h's char arrays): at most its size, no NUL
 * needed, as store_bind_usage bound them. */
static void sqr_text(sqlite3_context *ctx, const char *p, size_t cap)
{
    sqlite3_result_text(ctx, p, (int)strnlen(p, cap), SQLITE_STATIC);
}

/* Column col (an integer one) of the cursor's row. */
static int64_t sqr_int(const sqr_cursor *c, int col)
{
    const store_usage_event *e = &c->b->ev[c->i];
    const usage_counts *u = &e->usage;

    switch (col) {
    case SQR_ACCOUNT_ID:
        return e->account_id;
    case SQR_KEY_ID:
        return e->key_id;
    case SQR_PROMPT: /* cannot overflow: store_check_event refused such an event */
        return usage_prompt(u);
    case SQR_COMPLETION:
        return u->output;
    case SQR_CHARGED:
        return e->charged_nusd;
    case SQR_STATUS:
        return e->status;
    case SQR_ESTIMATED:
        return e->estimated ? 1 : 0;
    case SQR_LATENCY:
        return e->latency_ms;
    case SQR_CREATED_AT:
        return c->b->at[c->i];
    case SQR_CACHED_TOKENS:
        return u->cached_input;
    case SQR_CACHE_WRITE:
        return u->cache_write;
    case SQR_CACHE_WRITE_1H:
        return u->cache_write_1h;
    case SQR_REASONING:
        return u->reasoning;
    case SQR_CACHED:
        return e->cached ? 1 : 0;
    default: /* SQR_ID */
        return c->b->id0 + (int64_t)c->i;
    }
}

static int sqr_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    const sqr_cursor *c = (const sqr_cursor *)cur;
    const store_usage_event *e = &c->b->ev[c->i];

    if (col == SQR_REQUEST_ID)
        sqr_text(ctx, e->request_id, sizeof(e->request_id));
    else if (col == SQR_MODEL)
        sqr_text(ctx, e->model, sizeof(e->model));
    else if (col == SQR_PROVIDER)
        sqr_text(ctx, e->provider, sizeof(e->provider));
    else if (col == SQR_BATCH) /* the argument is not read back */
        sqlite3_result_null(ctx);
    else
        sqlite3_result_int64(ctx, sqr_int(c, col));
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
