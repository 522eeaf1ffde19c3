/*
 * The usage ledger in blocks (SQLite store, migration 10), and `usage` as a virtual table that
 * reads them.
 *
 * Why. A usage row per request cost SQLite ~13,700 instructions (bench/ledger_shapes.sh): the
 * row's b-tree insert, its request-id unique index, its account index and checks, most of the
 * ledger thread's time and a tenth of the gateway's CPU per request (docs/PERFORMANCE.md, round
 * 19). The rows of one account that one ledger chunk writes go instead into one BLOB of one
 * `usage_blocks` row, a few bytes a row (numbers as variable-length integers, a row's model and
 * provider left out when they repeat the row before's): a block costs SQLite about as much as one
 * row did, whatever its rows. Exactly-once no longer rests on a unique index: the ledger checks a
 * batch for request ids already stored only when its events may have been offered before
 * (sqlite.c, store_seen), and `modelswitch audit` checks every id is there once.
 *
 * Readers did not change: `usage` is an eponymous virtual table with the old table's columns, so
 * the account API's listings and statistics, the audit, export and SQL by hand read the rows as
 * before. Given an account, it reads that account's blocks through their index (account_id, id)
 * in id order (either way, so `ORDER BY id DESC LIMIT` pages without a sort), and skips blocks
 * outside a created_at_ms range without decoding them. A commit of many accounts leaves its small
 * groups of rows in usage_recent, one block of several accounts a chunk (migrations 11 and 12:
 * fewer pages a commit; a later commit moves them into usage_blocks, a block an account), so
 * both tables are read, merged in id order, usage_recent whole. Every constraint is checked
 * again by SQLite (none is omitted), so a block chosen too widely costs time, never a wrong row.
 * It takes single-row INSERTs (import), each a block of its own; rows are never updated or
 * deleted.
 *
 * A block's bytes are the store's own, but a damaged file must not crash the reader: decoding
 * checks every length against the block's end and reports SQLITE_CORRUPT.
 */
#include "store/sqlite_usage.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding ---- */

/* Row flags: the row's model (provider) is the row before's; the row's account follows the flags
 * (a mixed block's row whose account is not the row before's). */
#define SQU_SAME_MODEL 1u
#define SQU_SAME_PROVIDER 2u
#define SQU_ACCOUNT 4u

static inline uint64_t squ_zz(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t squ_unzz(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static inline unsigned char *squ_put(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static unsigned char *squ_put_text(unsigned char *p, const char *s, size_t n)
{
    *p++ = (unsigned char)n;
    memcpy(p, s, n);
    return p + n;
}

void squ_enc_start(squ_enc *e, unsigned char *buf, int64_t min_created)
{
    memset(e, 0, sizeof(*e));
    e->buf = buf;
    e->min_created = e->max_created = min_created;
}

/* Whether the text at buf[off..off+len) (a length byte, then the bytes) holds s. */
static int squ_same(const squ_enc *e, size_t off, const char *s, size_t n)
{
    return off && e->buf[off] == n && memcmp(e->buf + off + 1, s, n) == 0;
}

int squ_enc_add(squ_enc *e, const squ_row *r)
{
    int64_t dc;
    if (e->n >= SQU_ROWS_MAX || r->request_id_len > SQU_TEXT_MAX || r->model_len > SQU_TEXT_MAX ||
        r->provider_len > SQU_TEXT_MAX || r->created < e->min_created ||
        __builtin_sub_overflow(r->created, e->min_created, &dc))
        return -1;
    if (e->n > 0 && ((!e->mixed && r->account_id != e->account_id) || r->id <= e->last_id))
        return -1;
    if (e->n == 0) {
        e->account_id = e->last_account = r->account_id;
        e->first_id = e->last_id = r->id;
        e->max_created = r->created;
    }
    size_t model_off = e->model_off, provider_off = e->provider_off;
    unsigned flags = 0;
    if (e->n > 0 && squ_same(e, model_off, r->model, r->model_len)) flags |= SQU_SAME_MODEL;
    if (e->n > 0 && squ_same(e, provider_off, r->provider, r->provider_len))
        flags |= SQU_SAME_PROVIDER;
    if (r->account_id != e->last_account) flags |= SQU_ACCOUNT;

    unsigned char *p = e->buf + e->len;
    *p++ = (unsigned char)flags;
    if (flags & SQU_ACCOUNT) p = squ_put(p, squ_zz(r->account_id));
    p = squ_put(p, (uint64_t)r->id - (uint64_t)e->last_id);
    const int64_t nums[] = {r->key_id,        r->prompt,      r->completion,     r->charged,
                            r->status,        r->estimated,   r->latency,        dc,
                            r->cached_tokens, r->cache_write, r->cache_write_1h, r->reasoning,
                            r->cached};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        p = squ_put(p, squ_zz(nums[i]));
    p = squ_put_text(p, r->request_id, r->request_id_len);
    if (!(flags & SQU_SAME_MODEL)) {
        model_off = (size_t)(p - e->buf);
        p = squ_put_text(p, r->model, r->model_len);
    }
    if (!(flags & SQU_SAME_PROVIDER)) {
        provider_off = (size_t)(p - e->buf);
        p = squ_put_text(p, r->provider, r->provider_len);
    }
    e->model_off = model_off;
    e->provider_off = provider_off;
    e->len = (size_t)(p - e->buf);
    e->last_id = r->id;
    e->last_account = r->account_id;
    if (r->created > e->max_created) e->max_created = r->created;
    e->n++;
    return 0;
}

void squ_enc_mixed(squ_enc *e)
{
    e->mixed = 1;
}

int squ_block_store(sqlite3_stmt *st, const squ_enc *e)
{
    int rc;
    if ((rc = sqlite3_bind_int64(st, 1, e->last_id)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 2, e->account_id)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 3, e->first_id)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)e->n)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, e->min_created)) != SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 6, e->max_created)) != SQLITE_OK ||
        (rc = sqlite3_bind_blob(st, 7, e->buf, (int)e->len, SQLITE_STATIC)) != SQLITE_OK) {
        sqlite3_reset(st);
        return rc;
    }
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* the block's buffer is about to be reused */
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* ---- decoding ---- */

void squ_dec_start(squ_dec *d, int64_t account_id, int64_t first_id, int64_t n, int64_t min_created,
                   const void *rows, size_t len)
{
    memset(d, 0, sizeof(*d));
    d->p = rows;
    d->end = d->p + len;
    d->prev_id = first_id;
    d->min_created = min_created;
    d->left = n > 0 ? (size_t)n : 0;
    d->prev.account_id = account_id;
}

static int squ_get(squ_dec *d, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (d->p >= d->end) return -1;
        unsigned char c = *d->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

static int squ_get_text(squ_dec *d, const char **s, size_t *n)
{
    if (d->p >= d->end) return -1;
    size_t len = *d->p++;
    if ((size_t)(d->end - d->p) < len) return -1;
    *s = (const char *)d->p;
    *n = len;
    d->p += len;
    return 0;
}

int squ_dec_next(squ_dec *d, squ_row *r)
{
    if (d->left == 0) return d->p == d->end ? 0 : -1;
    if (d->p >= d->end) return -1;
    unsigned flags = *d->p++;
    uint64_t u, delta;
    int64_t nums[13];
    if (flags & ~(SQU_SAME_MODEL | SQU_SAME_PROVIDER | SQU_ACCOUNT)) return -1;
    squ_row *p = &d->prev;
    if (flags & SQU_ACCOUNT) {
        if (squ_get(d, &u) != 0) return -1;
        p->account_id = squ_unzz(u);
    }
    if (squ_get(d, &delta) != 0) return -1;
    for (size_t i = 0; i < 13; i++) {
        if (squ_get(d, &u) != 0) return -1;
        nums[i] = squ_unzz(u);
    }
    if (delta > (uint64_t)INT64_MAX || (d->have_prev && delta == 0) ||
        __builtin_add_overflow(d->prev_id, (int64_t)delta, &p->id) ||
        __builtin_add_overflow(d->min_created, nums[7], &p->created))
        return -1;
    p->key_id = nums[0];
    p->prompt = nums[1];
    p->completion = nums[2];
    p->charged = nums[3];
    p->status = nums[4];
    p->estimated = nums[5];
    p->latency = nums[6];
    p->cached_tokens = nums[8];
    p->cache_write = nums[9];
    p->cache_write_1h = nums[10];
    p->reasoning = nums[11];
    p->cached = nums[12];
    if (squ_get_text(d, &p->request_id, &p->request_id_len) != 0) return -1;
    if (flags & SQU_SAME_MODEL ? !d->have_prev : squ_get_text(d, &p->model, &p->model_len) != 0)
        return -1;
    if (flags & SQU_SAME_PROVIDER ? !d->have_prev
                                  : squ_get_text(d, &p->provider, &p->provider_len) != 0)
        return -1;
    d->prev_id = p->id;
    d->have_prev = 1;
    d->left--;
    *r = *p;
    return 1;
}

/* ---- the virtual table ---- */

enum {
    SQU_C_ID,
    SQU_C_REQUEST_ID,
    SQU_C_ACCOUNT_ID,
    SQU_C_KEY_ID,
    SQU_C_MODEL,
    SQU_C_PROVIDER,
    SQU_C_PROMPT,
    SQU_C_COMPLETION,
    SQU_C_CHARGED,
    SQU_C_STATUS,
    SQU_C_ESTIMATED,
    SQU_C_LATENCY,
    SQU_C_CREATED,
    SQU_C_CACHED_TOKENS,
    SQU_C_CACHE_WRITE,
    SQU_C_CACHE_WRITE_1H,
    SQU_C_REASONING,
    SQU_C_CACHED,
    SQU_C__COUNT
};
_Static_assert(SQU_C__COUNT == SQU_NCOLS, "SQU_NCOLS counts SQU_COLS");

/* The plan's parts (idxNum): which constraints came as arguments, and the order given. */
#define SQU_P_ACCOUNT 1
#define SQU_P_FROM 2      /* a lower bound of created_at_ms */
#define SQU_P_TO 4        /* an upper bound */
#define SQU_P_DESC 8      /* rows by id descending (with an account only) */
#define SQU_P_AFTER 16    /* a lower bound of id: the ledger's rows not yet posted (sqlite.c) */
#define SQU_P_AFTER_EQ 32 /* that bound inclusive (>=) */
#define SQU_PLANS 64      /* every combination of the above */

typedef struct squ_vtab {
    sqlite3_vtab base;
    sqlite3 *db;
    sqlite3_stmt *ins;  /* SQU_BLOCK_INSERT, prepared at the first INSERT */
    unsigned char *buf; /* the INSERT's one-row block */
    /* A plan's statement of blocks, kept between reads (squ_reads_put): preparing it costs
     * ~70,000 instructions, more than reading a few blocks, and a correlated read (a balance's
     * unposted charges, sqlite.c's UNPOSTED) filters once per outer row. A cursor takes it out
     * while it reads, so two cursors of one plan never share one. */
    sqlite3_stmt *reads[SQU_PLANS];
} squ_vtab;

typedef struct squ_cursor {
    sqlite3_vtab_cursor base;
    sqlite3_stmt *blocks; /* the blocks to read, in order */
    squ_row *rows;        /* the current block's rows, decoded */
    size_t nrows, cap, i;
    int desc, eof;
    int only;        /* keep only the rows of account `account` (mixed blocks hold others) */
    int64_t account; /* the account asked for */
    int plan;        /* the plan `blocks` was prepared for */
} squ_cursor;

static int squ_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                       sqlite3_vtab **out, char **err)
{
    (void)aux, (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(
        db, "CREATE TABLE x(id INTEGER, request_id TEXT, account_id INTEGER, key_id INTEGER, "
            "model TEXT, provider TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "charged_nusd INTEGER, status INTEGER, estimated INTEGER, latency_ms INTEGER, "
            "created_at_ms INTEGER, cached_tokens INTEGER, cache_write_tokens INTEGER, "
            "cache_write_1h_tokens INTEGER, reasoning_tokens INTEGER, cached INTEGER)");
    if (rc != SQLITE_OK) return rc;
    squ_vtab *t = sqlite3_malloc(sizeof(*t));
    if (!t) return SQLITE_NOMEM;
    memset(t, 0, sizeof(*t));
    t->db = db;
    /* readable from the schema's view (ledger_transactions) even with trusted_schema off */
    (void)sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
    *out = &t->base;
    return SQLITE_OK;
}

static int squ_disconnect(sqlite3_vtab *vt)
{
    squ_vtab *t = (squ_vtab *)vt;
    sqlite3_finalize(t->ins);
    for (int i = 0; i < SQU_PLANS; i++)
        sqlite3_finalize(t->reads[i]);
    sqlite3_free(t->buf);
    sqlite3_free(t);
    return SQLITE_OK;
}

static int squ_best_index(sqlite3_vtab *vt, sqlite3_index_info *ix)
{
    (void)vt;
    int acc = -1, from = -1, to = -1, after = -1;
    for (int i = 0; i < ix->nConstraint; i++) {
        const struct sqlite3_index_constraint *c = &ix->aConstraint[i];
        if (!c->usable) continue;
        if (c->iColumn == SQU_C_ACCOUNT_ID && c->op == SQLITE_INDEX_CONSTRAINT_EQ)
            acc = i;
        else if (c->iColumn == SQU_C_CREATED &&
                 (c->op == SQLITE_INDEX_CONSTRAINT_GE || c->op == SQLITE_INDEX_CONSTRAINT_GT))
            from = i;
        else if (c->iColumn == SQU_C_CREATED &&
                 (c->op == SQLITE_INDEX_CONSTRAINT_LE || c->op == SQLITE_INDEX_CONSTRAINT_LT))
            to = i;
        else if (c->iColumn == SQU_C_ID &&
                 (c->op == SQLITE_INDEX_CONSTRAINT_GT || c->op == SQLITE_INDEX_CONSTRAINT_GE))
            after = i;
    }
    int argv = 0, plan = 0;
    if (acc >= 0) {
        ix->aConstraintUsage[acc].argvIndex = ++argv;
        plan |= SQU_P_ACCOUNT;
    }
    if (from >= 0) {
        ix->aConstraintUsage[from].argvIndex = ++argv;
        plan |= SQU_P_FROM;
    }
    if (to >= 0) {
        ix->aConstraintUsage[to].argvIndex = ++argv;
        plan |= SQU_P_TO;
    }
    if (after >= 0) {
        ix->aConstraintUsage[after].argvIndex = ++argv;
        plan |= SQU_P_AFTER;
        if (ix->aConstraint[after].op == SQLITE_INDEX_CONSTRAINT_GE) plan |= SQU_P_AFTER_EQ;
    }
    /* one account's blocks are disjoint id ranges written in order: its rows come by id */
    if (acc >= 0 && ix->nOrderBy == 1 && ix->aOrderBy[0].iColumn == SQU_C_ID) {
        ix->orderByConsumed = 1;
        if (ix->aOrderBy[0].desc) plan |= SQU_P_DESC;
    }
    ix->idxNum = plan;
    ix->estimatedCost = acc >= 0 ? 1000.0 : 1e7;
    ix->estimatedRows = acc >= 0 ? 1000 : 1000000;
    if (from >= 0 || to >= 0) {
        ix->estimatedCost /= 4;
        ix->estimatedRows /= 4;
    }
    if (after >= 0) { /* the newest rows: a few thousand at most */
        ix->estimatedCost /= 100;
        ix->estimatedRows /= 100;
    }
    return SQLITE_OK;
}

static int squ_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
    (void)vt;
    squ_cursor *c = sqlite3_malloc(sizeof(*c));
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    c->eof = 1;
    *out = &c->base;
    return SQLITE_OK;
}

/* The cursor's statement back to its vtab for the next read of its plan (or finalized when
 * another cursor's already went back). */
static void squ_reads_put(squ_cursor *c)
{
    squ_vtab *t = (squ_vtab *)c->base.pVtab;
    if (!c->blocks) return;
    sqlite3_reset(c->blocks);
    sqlite3_clear_bindings(c->blocks);
    if (!t->reads[c->plan])
        t->reads[c->plan] = c->blocks;
    else
        sqlite3_finalize(c->blocks);
    c->blocks = NULL;
}

static int squ_close(sqlite3_vtab_cursor *cur)
{
    squ_cursor *c = (squ_cursor *)cur;
    squ_reads_put(c);
    sqlite3_free(c->rows);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int squ_vfail(sqlite3_vtab *vt, int rc, const char *msg)
{
    sqlite3_free(vt->zErrMsg);
    vt->zErrMsg = sqlite3_mprintf("%s", msg);
    return rc;
}

static int squ_fail(sqlite3_vtab_cursor *cur, int rc, const char *msg)
{
    return squ_vfail(cur->pVtab, rc, msg);
}

/* Decodes the next block with rows into c->rows; at the end sets eof. */
static int squ_load(squ_cursor *c)
{
    for (;;) {
        int rc = sqlite3_step(c->blocks);
        if (rc == SQLITE_DONE) {
            c->eof = 1;
            return SQLITE_OK;
        }
        if (rc != SQLITE_ROW) return rc;
        int64_t n = sqlite3_column_int64(c->blocks, 2);
        if (n < 0 || n > SQU_ROWS_MAX)
            return squ_fail(&c->base, SQLITE_CORRUPT, "usage block: bad row count");
        if ((size_t)n > c->cap) {
            squ_row *r = sqlite3_realloc64(c->rows, (sqlite3_uint64)n * sizeof(*r));
            if (!r) return SQLITE_NOMEM;
            c->rows = r;
            c->cap = (size_t)n;
        }
        squ_dec d;
        const void *blob = sqlite3_column_blob(c->blocks, 4);
        squ_dec_start(&d, sqlite3_column_int64(c->blocks, 0), sqlite3_column_int64(c->blocks, 1), n,
                      sqlite3_column_int64(c->blocks, 3), blob,
                      (size_t)sqlite3_column_bytes(c->blocks, 4));
        size_t k = 0, left = 0;
        int got;
        while ((got = squ_dec_next(&d, &c->rows[left])) == 1) {
            k++;
            if (!c->only || c->rows[left].account_id == c->account) left++;
        }
        if (got < 0 || k != (size_t)n)
            return squ_fail(&c->base, SQLITE_CORRUPT, "usage block: damaged rows");
        if (left == 0) continue;
        k = left;
        c->nrows = k;
        c->i = c->desc ? k - 1 : 0;
        return SQLITE_OK;
    }
}

static int squ_filter(sqlite3_vtab_cursor *cur, int plan, const char *idxs, int argc,
                      sqlite3_value **argv)
{
    (void)idxs;
    squ_cursor *c = (squ_cursor *)cur;
    squ_vtab *t = (squ_vtab *)cur->pVtab;
    /* The blocks of both tables (migration 11: the newest are in usage_recent until a commit
     * moves them), merged in id order by SQLite: usage_blocks' arm is read through its index
     * (account_id, id) given an account, usage_recent's by id. usage_recent's blocks hold
     * several accounts' rows (migration 12), so an account is no constraint of its arm: its
     * rows of other accounts are dropped here. The same numbered parameters serve both arms. */
    char acct[32] = "", when[96] = "", sql[640];
    size_t o = 0;
    int np = 0, rc;
    squ_reads_put(c);
    c->eof = 1;
    plan &= SQU_PLANS - 1;
    if ((c->blocks = t->reads[plan])) {
        t->reads[plan] = NULL;
        goto bind;
    }
    if (plan & SQU_P_ACCOUNT) snprintf(acct, sizeof acct, " AND account_id = ?%d", ++np);
    if (plan & SQU_P_FROM)
        o += (size_t)snprintf(when + o, sizeof when - o, " AND max_created_ms >= ?%d", ++np);
    if (plan & SQU_P_TO)
        o += (size_t)snprintf(when + o, sizeof when - o, " AND min_created_ms <= ?%d", ++np);
    /* a block's id is its last row's: one that ends past the bound may hold rows past it
     * (SQLite drops the others: the bound is checked again on every row); one that ends at it
     * holds none, and is not read (a damaged old block cannot fail the readers of new rows) */
    if (plan & SQU_P_AFTER)
        o += (size_t)snprintf(when + o, sizeof when - o, " AND id %s ?%d",
                              plan & SQU_P_AFTER_EQ ? ">=" : ">", ++np);
    snprintf(sql, sizeof sql,
             "SELECT account_id, first_id, n, min_created_ms, rows, id FROM usage_blocks WHERE "
             "1%s%s UNION ALL SELECT account_id, first_id, n, min_created_ms, rows, id FROM "
             "usage_recent WHERE 1%s ORDER BY 6%s",
             acct, when, when, plan & SQU_P_DESC ? " DESC" : "");
    rc = sqlite3_prepare_v3(t->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->blocks, NULL);
    if (rc != SQLITE_OK) return squ_fail(cur, rc, sqlite3_errmsg(t->db));
bind:
    c->plan = plan;
    for (int i = 0; i < argc; i++)
        if ((rc = sqlite3_bind_value(c->blocks, i + 1, argv[i])) != SQLITE_OK) return rc;
    c->desc = (plan & SQU_P_DESC) != 0;
    /* SQLite checks every constraint again: dropping rows here only saves it the work, so a
     * value that is no integer (compared by SQLite's rules) drops none */
    c->only = (plan & SQU_P_ACCOUNT) && sqlite3_value_type(argv[0]) == SQLITE_INTEGER;
    c->account = c->only ? sqlite3_value_int64(argv[0]) : 0;
    c->eof = 0;
    return squ_load(c);
}

static int squ_next(sqlite3_vtab_cursor *cur)
{
    squ_cursor *c = (squ_cursor *)cur;
    if (c->desc ? c->i-- > 0 : ++c->i < c->nrows) return SQLITE_OK;
    return squ_load(c);
}

static int squ_eof(sqlite3_vtab_cursor *cur)
{
    return ((const squ_cursor *)cur)->eof;
}

/* Where each integer column is in a squ_row (the three texts are apart). */
static const size_t squ_num_off[SQU_NCOLS] = {
    [SQU_C_ID] = offsetof(squ_row, id),
    [SQU_C_ACCOUNT_ID] = offsetof(squ_row, account_id),
    [SQU_C_KEY_ID] = offsetof(squ_row, key_id),
    [SQU_C_PROMPT] = offsetof(squ_row, prompt),
    [SQU_C_COMPLETION] = offsetof(squ_row, completion),
    [SQU_C_CHARGED] = offsetof(squ_row, charged),
    [SQU_C_STATUS] = offsetof(squ_row, status),
    [SQU_C_ESTIMATED] = offsetof(squ_row, estimated),
    [SQU_C_LATENCY] = offsetof(squ_row, latency),
    [SQU_C_CREATED] = offsetof(squ_row, created),
    [SQU_C_CACHED_TOKENS] = offsetof(squ_row, cached_tokens),
    [SQU_C_CACHE_WRITE] = offsetof(squ_row, cache_write),
    [SQU_C_CACHE_WRITE_1H] = offsetof(squ_row, cache_write_1h),
    [SQU_C_REASONING] = offsetof(squ_row, reasoning),
    [SQU_C_CACHED] = offsetof(squ_row, cached),
};

static int squ_is_text(int col)
{
    return col == SQU_C_REQUEST_ID || col == SQU_C_MODEL || col == SQU_C_PROVIDER;
}

static int64_t *squ_num(squ_row *r, int col)
{
    return (int64_t *)(void *)((char *)r + squ_num_off[col]);
}

static int squ_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    const squ_cursor *c = (const squ_cursor *)cur;
    squ_row *r = &c->rows[c->i];
    if (col == SQU_C_REQUEST_ID)
        sqlite3_result_text(ctx, r->request_id, (int)r->request_id_len, SQLITE_TRANSIENT);
    else if (col == SQU_C_MODEL)
        sqlite3_result_text(ctx, r->model, (int)r->model_len, SQLITE_TRANSIENT);
    else if (col == SQU_C_PROVIDER)
        sqlite3_result_text(ctx, r->provider, (int)r->provider_len, SQLITE_TRANSIENT);
    else if (col >= 0 && col < SQU_NCOLS)
        sqlite3_result_int64(ctx, *squ_num(r, col));
    return SQLITE_OK;
}

static int squ_rowid(sqlite3_vtab_cursor *cur, sqlite_int64 *out)
{
    const squ_cursor *c = (const squ_cursor *)cur;
    *out = c->rows[c->i].id;
    return SQLITE_OK;
}

/* An INSERT of one row (an import's): a block of its own. The old table's types and CHECKs
 * (STRICT, counts and charge >= 0, a request id) hold for it. */
static int squ_update(sqlite3_vtab *vt, int argc, sqlite3_value **argv, sqlite_int64 *rowid)
{
    squ_vtab *t = (squ_vtab *)vt;
    if (argc != 2 + SQU_NCOLS || sqlite3_value_type(argv[0]) != SQLITE_NULL)
        return squ_vfail(vt, SQLITE_CONSTRAINT, "usage rows are never changed or deleted");
    sqlite3_value *const *v = argv + 2;
    squ_row r = {0};
    for (int i = 0; i < SQU_NCOLS; i++) {
        int text = squ_is_text(i);
        /* no id given: the rowid's (NULL too unless the INSERT named one) */
        sqlite3_value *x =
            i == SQU_C_ID && sqlite3_value_type(v[i]) == SQLITE_NULL ? argv[1] : v[i];
        if (sqlite3_value_type(x) != (text ? SQLITE_TEXT : SQLITE_INTEGER))
            return squ_vfail(vt, SQLITE_CONSTRAINT, "usage: a column of the wrong type");
        if (text && sqlite3_value_bytes(x) > SQU_TEXT_MAX)
            return squ_vfail(vt, SQLITE_CONSTRAINT, "usage: a text longer than 255 bytes");
        if (!text) *squ_num(&r, i) = sqlite3_value_int64(x);
    }
    r.request_id = (const char *)sqlite3_value_text(v[SQU_C_REQUEST_ID]);
    r.request_id_len = (size_t)sqlite3_value_bytes(v[SQU_C_REQUEST_ID]);
    r.model = (const char *)sqlite3_value_text(v[SQU_C_MODEL]);
    r.model_len = (size_t)sqlite3_value_bytes(v[SQU_C_MODEL]);
    r.provider = (const char *)sqlite3_value_text(v[SQU_C_PROVIDER]);
    r.provider_len = (size_t)sqlite3_value_bytes(v[SQU_C_PROVIDER]);
    if (r.request_id_len == 0 || r.prompt < 0 || r.completion < 0 || r.charged < 0 ||
        r.cached_tokens < 0 || r.cache_write < 0 || r.cache_write_1h < 0 || r.reasoning < 0)
        return squ_vfail(vt, SQLITE_CONSTRAINT, "usage: CHECK constraint failed");
    if (!t->buf && !(t->buf = sqlite3_malloc(SQU_ROW_MAX))) return SQLITE_NOMEM;
    int rc;
    if (!t->ins &&
        (rc = sqlite3_prepare_v2(t->db, SQU_BLOCK_INSERT, -1, &t->ins, NULL)) != SQLITE_OK)
        return squ_vfail(vt, rc, sqlite3_errmsg(t->db));
    squ_enc e;
    squ_enc_start(&e, t->buf, r.created);
    if (squ_enc_add(&e, &r) != 0) return squ_vfail(vt, SQLITE_CONSTRAINT, "usage: a bad row");
    if ((rc = squ_block_store(t->ins, &e)) != SQLITE_OK)
        return squ_vfail(vt, rc, sqlite3_errmsg(t->db));
    *rowid = r.id;
    return SQLITE_OK;
}

static const sqlite3_module squ_module = {
    .iVersion = 0,
    .xCreate = NULL, /* eponymous-only */
    .xConnect = squ_connect,
    .xBestIndex = squ_best_index,
    .xDisconnect = squ_disconnect,
    .xDestroy = squ_disconnect,
    .xOpen = squ_open,
    .xClose = squ_close,
    .xFilter = squ_filter,
    .xNext = squ_next,
    .xEof = squ_eof,
    .xColumn = squ_column,
    .xRowid = squ_rowid,
    .xUpdate = squ_update,
};

int squ_register(sqlite3 *db)
{
    return sqlite3_create_module(db, SQU_NAME, &squ_module, NULL);
}
