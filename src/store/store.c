/*
 * store.h's public functions: store_open picks a backend by the config (backend.h) and every
 * operation goes through its table, so callers never know whether SQLite or PostgreSQL answers.
 * What is the same for every backend lives here too: the error message, the helpers that only
 * derive from other operations, the checkpointer's wrapper (a no-op where the database
 * checkpoints itself) and export/import, the line format that moves a store from one backend to
 * the other (docs/OPERATIONS.md, "Moving from SQLite to PostgreSQL").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "store/backend.h"

/* ---- open, errors ---- */

store_t *store_open(const cfg_t *cfg, char *err, size_t errlen)
{
    if (cfg && !cfg->sqlite_path && cfg->postgres_url) return store_pg_open(cfg, err, errlen);
    return store_sqlite_open(cfg, err, errlen);
}

void store_close(store_t *s)
{
    if (s) s->ops->close(s);
}

const char *store_backend(store_t *s)
{
    return s ? s->ops->name : "none";
}

int store_seterr(store_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    return STORE_ERR;
}

const char *store_errmsg(store_t *s)
{
    return s ? s->err : "store not open";
}

void store_redact_url(const char *url, char *out, size_t outlen)
{
    const char *scheme = url ? strstr(url, "://") : NULL;
    const char *at = NULL, *colon = NULL;
    size_t o = 0;

    if (!outlen) return;
    out[0] = '\0';
    if (!url) return;
    if (scheme) {
        const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?#");
        for (const char *p = auth; p < end; p++)
            if (*p == '@') at = p;
        if (at)
            for (const char *p = auth; p < at && !colon; p++)
                if (*p == ':') colon = p;
    }
    /* user:password@ -> user:***@ */
    for (const char *p = url; *p && o + 1 < outlen; p++) {
        if (colon && p == colon + 1) {
            const char *r = "***";
            while (*r && o + 1 < outlen)
                out[o++] = *r++;
            p = at - 1;
            continue;
        }
        /* password=... in the query string or a key=value string */
        if (strncmp(p, "password=", 9) == 0 &&
            (p == url || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ')) {
            const char *r = "password=***";
            while (*r && o + 1 < outlen)
                out[o++] = *r++;
            p += 9;
            while (*p && *p != '&' && *p != ' ')
                p++;
            p--;
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/* Creates every missing directory above path (like mkdir -p of its dirname). */
int store_mkdirs(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    int rc = -1;

    if (!dir) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        /* 0700: the database holds the ledger and key hashes; only its owner needs it. */
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "create directory %s: %s", dir, strerror(errno));
            goto cleanup;
        }
        *p = '/';
    }
    rc = 0;
cleanup:
    free(dir);
    return rc;
}

/* ---- the checkpointer: SQLite's; elsewhere a handle that does nothing ---- */

struct store_ckpt {
    const store_ops *ops;
    void *impl; /* the backend's, NULL when it has none */
};

store_ckpt *store_ckpt_start(const cfg_t *cfg, store_t *writer, char *err, size_t errlen)
{
    store_ckpt *c;

    if (!writer) {
        snprintf(err, errlen, "checkpointer: no writer");
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        snprintf(err, errlen, "checkpointer: out of memory");
        return NULL;
    }
    c->ops = writer->ops;
    if (c->ops->ckpt_start && !(c->impl = c->ops->ckpt_start(cfg, writer, err, errlen))) {
        free(c);
        return NULL;
    }
    return c;
}

void store_ckpt_stop(store_ckpt *c)
{
    if (!c) return;
    if (c->impl) c->ops->ckpt_stop(c->impl);
    free(c);
}

uint64_t store_ckpt_count(store_ckpt *c)
{
    return c && c->impl ? c->ops->ckpt_count(c->impl) : 0;
}

/* ---- dispatch ---- */

int store_schema_version(store_t *s, int64_t *version)
{
    return s->ops->schema_version(s, version);
}

int store_account_create(store_t *s, const char *name, int64_t balance_nusd, int64_t *id_out)
{
    return s->ops->account_create(s, name, balance_nusd, id_out);
}

int store_account_get(store_t *s, int64_t id, store_account *out)
{
    return s->ops->account_get(s, id, out);
}

int store_account_show(store_t *s, int64_t id, store_account *out)
{
    return s->ops->account_show(s, id, out);
}

int store_account_list(store_t *s, store_account **out, size_t *n)
{
    return s->ops->account_list(s, out, n);
}

int store_account_topup(store_t *s, int64_t id, int64_t amount_nusd, const char *description)
{
    return s->ops->account_topup(s, id, amount_nusd, description);
}

int store_key_create(store_t *s, int64_t account_id, key_type type, const char *name,
                     int64_t expires_at_ms, int64_t spend_limit_nusd, char key_out[64],
                     store_key *out)
{
    return s->ops->key_create(s, account_id, type, name, expires_at_ms, spend_limit_nusd, key_out,
                              out);
}

int store_key_get(store_t *s, int64_t id, store_key *out)
{
    return s->ops->key_get(s, id, out);
}

int store_key_list(store_t *s, int64_t account_id, key_type type, store_key **out, size_t *n)
{
    return s->ops->key_list(s, account_id, type, out, n);
}

int store_key_set_active(store_t *s, int64_t id, int active)
{
    return s->ops->key_set_active(s, id, active);
}

int store_key_delete(store_t *s, int64_t id)
{
    return s->ops->key_delete(s, id);
}

int store_key_update(store_t *s, int64_t id, const store_key_patch *p, store_key *out)
{
    return s->ops->key_update(s, id, p, out);
}

int store_keys_since(store_t *s, int64_t since, void (*cb)(void *ud, const store_key *k), void *ud,
                     int64_t *max_seq)
{
    return s->ops->keys_since(s, since, cb, ud, max_seq);
}

int store_accounts_since(store_t *s, int64_t since, void (*cb)(void *ud, const store_account *a),
                         void *ud, int64_t *max_seq)
{
    return s->ops->accounts_since(s, since, cb, ud, max_seq);
}

int store_key_spends(store_t *s,
                     void (*cb)(void *ud, int64_t key_id, int64_t account_id, int64_t spent_nusd),
                     void *ud)
{
    return s->ops->key_spends(s, cb, ud);
}

int store_ledger_commit(store_t *s, const store_usage_event *ev, size_t n)
{
    return s->ops->ledger_commit(s, ev, n, 0);
}

int store_ledger_commit_new(store_t *s, const store_usage_event *ev, size_t n)
{
    return s->ops->ledger_commit(s, ev, n, 1);
}

int store_ledger_writer(store_t *s)
{
    return s->ops->ledger_writer ? s->ops->ledger_writer(s) : STORE_OK;
}

int store_ledger_defer(store_t *s, int on)
{
    if (!s->ops->ledger_defer) return on ? STORE_ERR : STORE_OK;
    return s->ops->ledger_defer(s, on);
}

int store_ledger_post(store_t *s)
{
    return s->ops->ledger_post ? s->ops->ledger_post(s) : STORE_OK;
}

int store_usage_query(store_t *s, int64_t account_id, const store_usage_filter *f, int64_t limit,
                      int64_t offset, store_usage_row **out, size_t *n)
{
    return s->ops->usage_query(s, account_id, f, limit, offset, out, n);
}

int store_usage_list(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                     store_usage_row **out, size_t *n)
{
    return store_usage_query(s, account_id, NULL, limit, offset, out, n);
}

int store_usage_stats_query(store_t *s, int64_t account_id, const store_usage_filter *f,
                            unsigned groups, store_usage_stats_out *out)
{
    return s->ops->usage_stats_query(s, account_id, f, groups, out);
}

void store_usage_stats_free(store_usage_stats_out *out)
{
    if (!out) return;
    for (int g = 0; g < STORE_BY__COUNT; g++) {
        free(out->by[g]);
        out->by[g] = NULL;
        out->n[g] = 0;
    }
}

int store_usage_stats(store_t *s, int64_t account_id, store_usage_stat *overall,
                      store_usage_stat **by_model, size_t *n)
{
    store_usage_stats_out o;
    int ret = store_usage_stats_query(s, account_id, NULL, by_model ? 1u << STORE_BY_MODEL : 0, &o);

    if (by_model) *by_model = NULL;
    if (n) *n = 0;
    if (ret != STORE_OK) return ret;
    if (overall) *overall = o.overall;
    if (by_model) {
        *by_model = o.by[STORE_BY_MODEL];
        if (n) *n = o.n[STORE_BY_MODEL];
        o.by[STORE_BY_MODEL] = NULL;
    }
    store_usage_stats_free(&o);
    return STORE_OK;
}

int store_transactions_list(store_t *s, int64_t account_id, int64_t limit, int64_t offset,
                            store_txn **out, size_t *n)
{
    return s->ops->transactions_list(s, account_id, limit, offset, out, n);
}

int store_audit(store_t *s, FILE *report)
{
    return s->ops->audit(s, report);
}

int store_ledger_counts(store_t *s, int64_t *accounts, int64_t *transactions)
{
    return s->ops->ledger_counts(s, accounts, transactions);
}

int store_response_put(store_t *s, const store_response *r)
{
    return s->ops->response_put(s, r);
}

int store_response_get(store_t *s, const char *id, int64_t account_id, int64_t now_ms,
                       int want_history, store_response *out)
{
    return s->ops->response_get(s, id, account_id, now_ms, want_history, out);
}

void store_response_free(store_response *r)
{
    free(r->response);
    free(r->history);
    r->response = r->history = NULL;
    r->response_len = r->history_len = 0;
}

int store_response_delete(store_t *s, const char *id, int64_t account_id, int64_t now_ms)
{
    return s->ops->response_delete(s, id, account_id, now_ms);
}

int store_responses_purge(store_t *s, int64_t now_ms, int64_t max_rows, int64_t *deleted)
{
    return s->ops->responses_purge(s, now_ms, max_rows, deleted);
}

int store_notify_get(store_t *s, int64_t account_id, store_notify *out)
{
    return s->ops->notify_get(s, account_id, out);
}

int store_notify_update(store_t *s, int64_t account_id, const store_notify_patch *p,
                        store_notify *out, int *new_secret)
{
    return s->ops->notify_update(s, account_id, p, out, new_secret);
}

int store_notify_list(store_t *s, void (*cb)(void *ud, const store_notify *n), void *ud)
{
    return s->ops->notify_list(s, cb, ud);
}

int store_webhooks_due(store_t *s, int64_t now_ms, size_t max, store_webhook *out, size_t *n)
{
    return s->ops->webhooks_due(s, now_ms, max, out, n);
}

int store_webhook_next(store_t *s, int64_t *next_ms)
{
    return s->ops->webhook_next(s, next_ms);
}

int store_webhook_done(store_t *s, const char *event_id)
{
    return s->ops->webhook_done(s, event_id);
}

int store_webhook_retry(store_t *s, const char *event_id, int64_t attempts, int64_t next_ms)
{
    return s->ops->webhook_retry(s, event_id, attempts, next_ms);
}

/* ---- export and import ---- */

#define T(name, order, ...)                                                                        \
    static const char *const name##_cols[] = {__VA_ARGS__};                                        \
    static const char name##_order[] = order
T(accounts, "id", "id", "name", "balance_nusd", "created_at_ms", "seq");
static const store_col_kind accounts_kinds[] = {STORE_COL_INT, STORE_COL_TEXT, STORE_COL_INT,
                                                STORE_COL_INT, STORE_COL_INT};
T(api_keys, "id", "id", "account_id", "type", "name", "prefix", "hash", "active", "deleted",
  "created_at_ms", "expires_at_ms", "spend_limit_nusd", "spent_nusd", "rpm", "tpm", "seq");
static const store_col_kind api_keys_kinds[] = {
    STORE_COL_INT,  STORE_COL_INT, STORE_COL_INT, STORE_COL_TEXT, STORE_COL_TEXT,
    STORE_COL_BLOB, STORE_COL_INT, STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT,
    STORE_COL_INT,  STORE_COL_INT, STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT};
T(transactions, "id", "id", "account_id", "amount_nusd", "type", "description", "request_id",
  "created_at_ms");
static const store_col_kind transactions_kinds[] = {STORE_COL_INT,  STORE_COL_INT,  STORE_COL_INT,
                                                    STORE_COL_TEXT, STORE_COL_TEXT, STORE_COL_TEXT,
                                                    STORE_COL_INT};
T(usage, "id", "id", "request_id", "account_id", "key_id", "model", "provider", "prompt_tokens",
  "completion_tokens", "charged_nusd", "status", "estimated", "latency_ms", "created_at_ms",
  "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens", "cached");
static const store_col_kind usage_kinds[] = {
    STORE_COL_INT, STORE_COL_TEXT, STORE_COL_INT, STORE_COL_INT, STORE_COL_TEXT, STORE_COL_TEXT,
    STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT, STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT,
    STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT, STORE_COL_INT, STORE_COL_INT,  STORE_COL_INT};
T(responses, "id", "id", "account_id", "key_id", "model", "created_at_ms", "expires_at_ms",
  "response", "history");
static const store_col_kind responses_kinds[] = {STORE_COL_TEXT, STORE_COL_INT, STORE_COL_INT,
                                                 STORE_COL_TEXT, STORE_COL_INT, STORE_COL_INT,
                                                 STORE_COL_TEXT, STORE_COL_TEXT};
T(notification_settings, "account_id", "account_id", "low_balance_threshold_nusd", "webhook_url",
  "webhook_secret", "updated_at_ms");
static const store_col_kind notification_settings_kinds[] = {
    STORE_COL_INT, STORE_COL_INT, STORE_COL_TEXT, STORE_COL_TEXT, STORE_COL_INT};
T(webhook_outbox, "event_id", "event_id", "account_id", "type", "balance_nusd", "threshold_nusd",
  "created_at_ms", "attempts", "next_attempt_ms");
static const store_col_kind webhook_outbox_kinds[] = {STORE_COL_TEXT, STORE_COL_INT, STORE_COL_TEXT,
                                                      STORE_COL_INT,  STORE_COL_INT, STORE_COL_INT,
                                                      STORE_COL_INT,  STORE_COL_INT};
T(meta, "key", "key", "value");
static const store_col_kind meta_kinds[] = {STORE_COL_TEXT, STORE_COL_INT};
#undef T

#define TABLE(n)                                                                                   \
    {                                                                                              \
#n, n##_cols, n##_kinds, sizeof(n##_cols) / sizeof(n##_cols[0]), n##_order                 \
    }
const store_table store_tables[] = {
    TABLE(accounts),       TABLE(api_keys),  TABLE(transactions),
    TABLE(usage),          TABLE(responses), TABLE(notification_settings),
    TABLE(webhook_outbox), TABLE(meta),
};
const size_t store_ntables = sizeof(store_tables) / sizeof(store_tables[0]);
#undef TABLE

#define STORE_EXPORT_FORMAT "modelswitch-export"
#define STORE_EXPORT_VERSION 1
/* The longest line import reads: a stored response is the largest row. */
#define STORE_IMPORT_LINE_MAX (64u << 20)

typedef struct export_ctx {
    FILE *out;
    const store_table *t;
    int64_t rows;
} export_ctx;

static int export_row(void *ud, const store_value *v)
{
    export_ctx *x = ud;
    json_t *a = json_array();
    int ret = STORE_ERR;

    if (!a) return STORE_ERR;
    for (size_t i = 0; i < x->t->ncols; i++) {
        json_t *j;
        if (v[i].null)
            j = json_null();
        else if (x->t->kinds[i] == STORE_COL_INT)
            j = json_integer(v[i].i);
        else
            j = json_stringn(v[i].s, v[i].len);
        /* a text value that is not UTF-8 cannot go into JSON: refuse rather than lose it */
        if (!j || json_array_append_new(a, j) != 0) goto cleanup;
    }
    json_t *line = json_pack("{s:s,s:o}", "t", x->t->name, "r", a);
    a = NULL;
    if (!line) goto cleanup;
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!text) goto cleanup;
    if (fprintf(x->out, "%s\n", text) >= 0) ret = STORE_OK;
    free(text);
    x->rows++;
cleanup:
    json_decref(a);
    return ret;
}

int store_export(store_t *s, FILE *out)
{
    int64_t version = 0, rows = 0;
    /* balances and spends as they are, with every committed charge in them: the tables go out
     * row by row, and a store that is imported has no rows left to post */
    if (store_ledger_post(s) != STORE_OK) return STORE_ERR;
    if (store_schema_version(s, &version) != STORE_OK) return STORE_ERR;
    fprintf(out, "{\"format\":\"%s\",\"version\":%d,\"schema\":%lld,\"backend\":\"%s\"}\n",
            STORE_EXPORT_FORMAT, STORE_EXPORT_VERSION, (long long)version, s->ops->name);
    for (size_t i = 0; i < store_ntables; i++) {
        const store_table *t = &store_tables[i];
        export_ctx x = {out, t, 0};
        json_t *cols = json_array();
        for (size_t c = 0; c < t->ncols; c++)
            json_array_append_new(cols, json_string(t->cols[c]));
        json_t *head = json_pack("{s:s,s:o}", "table", t->name, "columns", cols);
        char *text = head ? json_dumps(head, JSON_COMPACT) : NULL;
        json_decref(head);
        if (!text) return store_seterr(s, "export: out of memory");
        fprintf(out, "%s\n", text);
        free(text);
        s->err[0] = '\0';
        if (s->ops->dump(s, t, export_row, &x) != STORE_OK) {
            if (!s->err[0])
                store_seterr(s, "export: table %s: a row that cannot be written as JSON", t->name);
            return STORE_ERR;
        }
        rows += x.rows;
    }
    fprintf(out, "{\"end\":true,\"rows\":%lld}\n", (long long)rows);
    if (fflush(out) != 0 || ferror(out)) return store_seterr(s, "export: write failed");
    return STORE_OK;
}

/* Reads one line (without its newline) into *buf; 1 = a line, 0 = end of input, -1 = too long
 * or out of memory. */
static int import_line(FILE *in, char **buf, size_t *cap, size_t *len)
{
    ssize_t n = getline(buf, cap, in);
    if (n < 0) return 0;
    if ((size_t)n > STORE_IMPORT_LINE_MAX) return -1;
    if (n > 0 && (*buf)[n - 1] == '\n') (*buf)[--n] = '\0';
    *len = (size_t)n;
    return 1;
}

static const store_table *import_table(const char *name)
{
    for (size_t i = 0; i < store_ntables; i++)
        if (strcmp(store_tables[i].name, name) == 0) return &store_tables[i];
    return NULL;
}

/* A table's header line: its columns must be exactly the ones this build exports. */
static int import_header(store_t *s, json_t *j, const store_table **cur)
{
    const char *name = json_string_value(json_object_get(j, "table"));
    json_t *cols = json_object_get(j, "columns");
    const store_table *t = name ? import_table(name) : NULL;
    if (!t) return store_seterr(s, "import: unknown table %s", name ? name : "(none)");
    if (!json_is_array(cols) || json_array_size(cols) != t->ncols)
        return store_seterr(s, "import: table %s: columns differ from this build's", t->name);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *c = json_string_value(json_array_get(cols, i));
        if (!c || strcmp(c, t->cols[i]) != 0)
            return store_seterr(s, "import: table %s: columns differ from this build's", t->name);
    }
    *cur = t;
    return STORE_OK;
}

static int import_values(store_t *s, const store_table *t, json_t *r, int64_t line)
{
    store_value v[32];
    if (!json_is_array(r) || json_array_size(r) != t->ncols || t->ncols > 32)
        return store_seterr(s, "import: line %lld: a row of %s with the wrong columns",
                            (long long)line, t->name);
    for (size_t i = 0; i < t->ncols; i++) {
        json_t *x = json_array_get(r, i);
        memset(&v[i], 0, sizeof v[i]);
        if (json_is_null(x)) {
            v[i].null = 1;
        } else if (t->kinds[i] == STORE_COL_INT && json_is_integer(x)) {
            v[i].i = json_integer_value(x);
        } else if (t->kinds[i] != STORE_COL_INT && json_is_string(x)) {
            v[i].s = json_string_value(x);
            v[i].len = json_string_length(x);
        } else {
            return store_seterr(s, "import: line %lld: %s.%s has the wrong type", (long long)line,
                                t->name, t->cols[i]);
        }
    }
    return s->ops->import_row(s, t, v);
}

int store_import(store_t *s, FILE *in, int64_t *rows_out)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    int64_t line = 0, rows = 0, version = 0;
    const store_table *cur = NULL;
    int ended = 0, rc, ret = STORE_ERR, begun = 0;
    json_t *j = NULL;

    s->err[0] = '\0';
    if (store_schema_version(s, &version) != STORE_OK) return STORE_ERR;
    while ((rc = import_line(in, &buf, &cap, &len)) == 1) {
        json_error_t je;
        line++;
        json_decref(j);
        if (!(j = json_loadb(buf, len, 0, &je)) || !json_is_object(j)) {
            store_seterr(s, "import: line %lld is not a JSON object", (long long)line);
            goto cleanup;
        }
        if (ended) {
            store_seterr(s, "import: line %lld after the end line", (long long)line);
            goto cleanup;
        }
        if (line == 1) {
            const char *f = json_string_value(json_object_get(j, "format"));
            json_int_t fv = json_integer_value(json_object_get(j, "version"));
            json_int_t sv = json_integer_value(json_object_get(j, "schema"));
            if (!f || strcmp(f, STORE_EXPORT_FORMAT) != 0 || fv != STORE_EXPORT_VERSION) {
                store_seterr(s, "import: not a modelswitch export (format version %d)",
                             STORE_EXPORT_VERSION);
                goto cleanup;
            }
            if (sv != version) {
                store_seterr(s,
                             "import: the export is of schema version %lld, this store is at %lld: "
                             "export with the same modelswitch version",
                             (long long)sv, (long long)version);
                goto cleanup;
            }
            if ((rc = s->ops->import_begin(s)) != STORE_OK) {
                ret = rc;
                goto cleanup;
            }
            begun = 1;
        } else if (json_object_get(j, "table")) {
            if (import_header(s, j, &cur) != STORE_OK) goto cleanup;
        } else if (json_object_get(j, "end")) {
            if (json_integer_value(json_object_get(j, "rows")) != rows) {
                store_seterr(s, "import: the end line counts %lld rows, the file has %lld",
                             (long long)json_integer_value(json_object_get(j, "rows")),
                             (long long)rows);
                goto cleanup;
            }
            ended = 1;
        } else {
            const char *tn = json_string_value(json_object_get(j, "t"));
            if (!cur || !tn || strcmp(tn, cur->name) != 0) {
                store_seterr(s, "import: line %lld: a row outside its table's section",
                             (long long)line);
                goto cleanup;
            }
            if (import_values(s, cur, json_object_get(j, "r"), line) != STORE_OK) goto cleanup;
            rows++;
        }
    }
    if (rc < 0) {
        store_seterr(s, "import: line %lld too long", (long long)line + 1);
        goto cleanup;
    }
    if (!ended) {
        store_seterr(s, "import: the file ends without its end line (cut short?)");
        goto cleanup;
    }
    ret = s->ops->import_end(s, 1);
    begun = 0;
    if (ret == STORE_OK && rows_out) *rows_out = rows;
cleanup:
    if (begun) {
        char saved[sizeof(s->err)];
        memcpy(saved, s->err, sizeof saved);
        s->ops->import_end(s, 0);
        memcpy(s->err, saved, sizeof saved);
    }
    json_decref(j);
    free(buf);
    return ret;
}

/* ---- store_query ---- */

/* The rows of a query (store_query). The JSON is built value by value with the same escaping
 * as jansson's, one line a row as sqlite3 -json writes it. */
typedef struct query_ctx {
    FILE *out;
    int64_t rows;
} query_ctx;

static int query_row(void *ud, size_t ncols, const char *const *names, const store_col_kind *kinds,
                     const store_value *v)
{
    query_ctx *x = ud;
    json_t *o = json_object();
    if (!o) return STORE_ERR;
    for (size_t i = 0; i < ncols; i++) {
        json_t *j;
        if (v[i].null)
            j = json_null();
        else if (kinds[i] == STORE_COL_INT)
            j = json_integer(v[i].i);
        else if (kinds[i] == STORE_COL_REAL)
            j = json_real(strtod(v[i].s, NULL));
        else
            j = json_stringn(v[i].s, v[i].len);
        /* JSON has no infinity nor NaN: such a real reads as its text */
        if (!j && kinds[i] == STORE_COL_REAL) j = json_stringn(v[i].s, v[i].len);
        /* a text that is not UTF-8 reads as its hex, as a BLOB does */
        if (!j && kinds[i] == STORE_COL_TEXT) {
            char *hex = malloc(2 * v[i].len + 1);
            for (size_t k = 0; hex && k < v[i].len; k++)
                snprintf(hex + 2 * k, 3, "%02x", (unsigned char)v[i].s[k]);
            if (hex) hex[2 * v[i].len] = '\0';
            j = hex ? json_string(hex) : NULL;
            free(hex);
        }
        if (!j || json_object_set_new(o, names[i], j) != 0) {
            json_decref(o);
            return STORE_ERR;
        }
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) return STORE_ERR;
    fprintf(x->out, "%s%s", x->rows ? ",\n" : "[", text);
    free(text);
    x->rows++;
    return STORE_OK;
}

int store_query(store_t *s, const char *sql, FILE *out)
{
    query_ctx x = {out, 0};
    s->err[0] = '\0';
    int rc = s->ops->query(s, sql, query_row, &x);
    if (x.rows) fprintf(out, "]\n");
    if (rc != STORE_OK && !s->err[0]) store_seterr(s, "sql: out of memory");
    if (rc == STORE_OK && (fflush(out) != 0 || ferror(out)))
        return store_seterr(s, "sql: write failed");
    return rc;
}
