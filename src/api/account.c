/*
 * The account API (/api/, billing keys): balance, proxy and billing keys, usage, statistics and
 * transactions of the account the billing key belongs to. The router has matched the path and
 * method and authenticated the key; this file validates the request, runs the store work in a pool
 * thread (job.h) and answers.
 *
 * Isolation: every id in a path is looked up and checked against the caller's account (and the
 * key type of the path) before anything is read or changed; an id of another account answers the
 * same 404 as an id that does not exist, so an account cannot even learn which ids are taken.
 *
 * Money leaves as JSON numbers with the exact decimal text of the nano-dollar amount and arrives
 * as the exact text of a JSON number: no double is ever involved. Reads of usage, statistics and
 * transactions first wait for the ledger writer (bill_flush_for, at most 2 s), so a client sees
 * the requests it has just finished. Key changes go into the key cache (kc_apply) as soon as the
 * store has them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "shared/shared.h"
#include "api/job.h"
#include "billing/billing.h"
#include "common/jscan.h"
#include "common/log.h"
#include "common/util.h"

#define USAGE_LIMIT_DEFAULT 20
#define USAGE_LIMIT_MAX 50
#define OFFSET_MAX 1000000000000LL

/* ---- answers ---- */

int api_append_usd(buf_t *b, int64_t nusd)
{
    char t[32];
    if (!ms_format_decimal(nusd, 9, t, sizeof t)) return -1;
    return buf_appends(b, t);
}

int api_append_time(buf_t *b, int64_t epoch_ms)
{
    char t[32];
    ms_iso8601(epoch_ms, t, epoch_ms % 1000 != 0);
    return buf_printf(b, "\"%s\"", t);
}

int api_append_str(buf_t *b, const char *s)
{
    int rc = buf_appends(b, "\"");
    rc |= buf_append_json_escaped(b, s, strlen(s));
    rc |= buf_appends(b, "\"");
    return rc;
}

int api_append_key(buf_t *b, const store_key *k, int64_t spent_nusd, const char *material)
{
    int rc = buf_printf(b, "{\"id\":%" PRId64 ",", k->id);
    if (material) {
        rc |= buf_appends(b, "\"key\":");
        rc |= api_append_str(b, material);
        rc |= buf_appends(b, ",");
    }
    rc |= buf_appends(b, "\"name\":");
    rc |= api_append_str(b, k->name);
    rc |= buf_appends(b, ",\"prefix\":");
    rc |= api_append_str(b, k->prefix);
    rc |= buf_printf(b, ",\"active\":%s,\"createdAt\":", k->active ? "true" : "false");
    rc |= api_append_time(b, k->created_at_ms);
    rc |= buf_appends(b, ",\"expiresAt\":");
    rc |= k->expires_at_ms ? api_append_time(b, k->expires_at_ms) : buf_appends(b, "null");
    rc |= buf_appends(b, ",\"spendLimit\":");
    rc |=
        k->spend_limit_nusd >= 0 ? api_append_usd(b, k->spend_limit_nusd) : buf_appends(b, "null");
    rc |= buf_appends(b, ",\"spent\":");
    rc |= api_append_usd(b, spent_nusd);
    rc |= buf_appends(b, ",\"rpm\":");
    rc |= k->rpm >= 0 ? buf_printf(b, "%" PRId64, k->rpm) : buf_appends(b, "null");
    rc |= buf_appends(b, ",\"tpm\":");
    rc |= k->tpm >= 0 ? buf_printf(b, "%" PRId64, k->tpm) : buf_appends(b, "null");
    rc |= buf_appends(b, "}");
    return rc;
}

void api_send_json(http_conn *c, int status, buf_t *b)
{
    if (!b->data) {
        buf_free(b);
        api_err_internal(c);
        return;
    }
    size_t len = b->len;
    http_respond(c, status, "application/json", NULL, buf_steal(b), len, 1);
}

/* ---- exact money from JSON numbers ---- */

int api_parse_usd(ms_str v, int64_t *nusd)
{
    /* A JSON number is -?int(.frac)?(e[+-]?exp)?. The digits are gathered without the point,
     * the exponent moves the point, and the plain decimal that results goes to
     * ms_parse_decimal, which refuses anything not exact to 9 places. plain holds at most 80
     * digits moved by at most 60 places either way: sign, 140, point, 140. */
    char digits[96], plain[300];
    size_t nd = 0, i = 0, point;
    int neg = 0;
    long exp = 0;

    if (v.n == 0 || v.n > 80) return -1;
    if (v.p[i] == '-') {
        neg = 1;
        i++;
    }
    for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++)
        digits[nd++] = v.p[i];
    if (nd == 0) return -1;
    point = nd;
    if (i < v.n && v.p[i] == '.') {
        for (i++; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++)
            digits[nd++] = v.p[i];
        if (nd == point) return -1;
    }
    if (i < v.n && (v.p[i] == 'e' || v.p[i] == 'E')) {
        int eneg = 0;
        size_t start;
        i++;
        if (i < v.n && (v.p[i] == '+' || v.p[i] == '-')) eneg = v.p[i++] == '-';
        start = i;
        for (; i < v.n && v.p[i] >= '0' && v.p[i] <= '9'; i++) {
            exp = exp * 10 + (v.p[i] - '0');
            if (exp > 60) return -1; /* out of range, or finer than a nano-dollar */
        }
        if (i == start) return -1;
        if (eneg) exp = -exp;
    }
    if (i != v.n) return -1;

    /* The point's new place, counted in digits from the left (may be < 0 or > nd). */
    long p = (long)point + exp;
    size_t o = 0;
    if (neg) plain[o++] = '-';
    if (p <= 0) {
        plain[o++] = '0';
    } else {
        for (long k = 0; k < p; k++)
            plain[o++] = k < (long)nd ? digits[k] : '0';
    }
    /* fraction: zeros before the digits when p < 0, then the digits right of the point, with
     * trailing zeros dropped (they carry no value, but ms_parse_decimal counts them) */
    size_t frac_start = o + 1;
    plain[o++] = '.';
    for (long k = p; k < (long)nd; k++)
        plain[o++] = k < 0 ? '0' : digits[k];
    while (o > frac_start && plain[o - 1] == '0')
        o--;
    if (o == frac_start) o--; /* no fraction left: drop the point */
    return ms_parse_decimal(plain, o, 9, nusd);
}

/* ---- request bodies ---- */

/* What a key body may hold; a field is only looked at when its bit is allowed. */
enum {
    F_NAME = 1,
    F_EXPIRES = 2,
    F_SPEND = 4,
    F_RPM = 8,
    F_TPM = 16,
    F_ACTIVE = 32,
};

typedef struct key_body {
    unsigned set; /* F_* present in the body */
    char name[128];
    int64_t expires_at_ms;    /* 0 = never */
    int64_t spend_limit_nusd; /* -1 = none */
    int64_t rpm, tpm;         /* -1 = default */
    int active;
} key_body;

static void invalid_field(http_conn *c, const char *param, const char *fmt)
{
    char msg[200];
    snprintf(msg, sizeof msg, fmt, param);
    api_err_invalid(c, param, msg);
}

int api_scan_object(http_conn *c, ms_str body, jscan_member *m)
{
    size_t err_off = 0;
    int n = jscan_object(body.p, body.n, m, API_MAX_MEMBERS, &err_off);
    if (n == JSCAN_INVALID || n == JSCAN_NOT_OBJECT) {
        char detail[96];
        if (body.n == 0)
            snprintf(detail, sizeof detail, "the body is empty (send {} for no fields)");
        else if (n == JSCAN_NOT_OBJECT)
            snprintf(detail, sizeof detail, "the body must be a JSON object");
        else
            snprintf(detail, sizeof detail, "invalid JSON at byte %zu", err_off);
        api_err_invalid_json(c, detail);
        return -1;
    }
    if (n > API_MAX_MEMBERS) {
        api_err_invalid(c, NULL, "The request body has too many fields.");
        return -1;
    }
    return n;
}

void api_member_name(const jscan_member *m, char *out, size_t outlen)
{
    ms_str quoted = {m->key.p - 1, m->key.n + 2};
    if (jscan_string(quoted, out, outlen) < 0)
        snprintf(out, outlen, "%.*s", (int)(m->key.n > 64 ? 64 : m->key.n), m->key.p);
    if (!out[0]) snprintf(out, outlen, "(empty)");
}

void api_err_unknown_field(http_conn *c, const char *name)
{
    char msg[200];
    snprintf(msg, sizeof msg, "Unrecognized request argument supplied: %s", name);
    api_err_invalid(c, name, msg);
}

int api_member_str(const jscan_member *m, char *out, size_t outlen)
{
    if (m->type != JS_STRING) return -1;
    long n = jscan_string(m->value, out, outlen);
    return n < 0 || (size_t)n != strlen(out) ? -1 : 0;
}

/* A key's name is how its owner tells it apart in lists and logs; an empty or blank one names
 * nothing, so it is refused like a missing one (the contract makes `name` required). */
static int parse_name(http_conn *c, const jscan_member *m, char out[128])
{
    int blank = 1;
    if (api_member_str(m, out, 128) != 0) out[0] = '\0'; /* refused below, like "" */
    for (const char *p = out; *p && blank; p++)
        blank = *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f';
    if (blank) {
        invalid_field(c, "name", "'%s' must be a string of 1 to 127 bytes, not only blanks.");
        return -1;
    }
    return 0;
}

/* Parses a key body, allowing the fields in allowed. Returns 0, or -1 after answering. */
static int parse_key_body(http_conn *c, ms_str body, unsigned allowed, key_body *kb)
{
    jscan_member m[API_MAX_MEMBERS];
    char name[80];
    int n = api_scan_object(c, body, m);
    if (n < 0) return -1;

    memset(kb, 0, sizeof *kb);
    kb->spend_limit_nusd = -1;
    kb->rpm = kb->tpm = -1;
    for (int i = 0; i < n; i++) {
        const jscan_member *f = &m[i];
        api_member_name(f, name, sizeof name);
        unsigned bit = !strcmp(name, "name")          ? F_NAME
                       : !strcmp(name, "expires_at")  ? F_EXPIRES
                       : !strcmp(name, "spend_limit") ? F_SPEND
                       : !strcmp(name, "rpm")         ? F_RPM
                       : !strcmp(name, "tpm")         ? F_TPM
                       : !strcmp(name, "active")      ? F_ACTIVE
                                                      : 0;
        if (!bit) {
            api_err_unknown_field(c, name);
            return -1;
        }
        if (!(bit & allowed)) {
            invalid_field(c, name,
                          bit == F_ACTIVE ? "'%s' can only be changed on an existing key."
                                          : "'%s' does not apply to billing keys.");
            return -1;
        }
        kb->set |= bit;
        switch (bit) {
        case F_NAME:
            if (parse_name(c, f, kb->name) != 0) return -1;
            break;
        case F_EXPIRES: {
            if (f->type == JS_NULL) {
                kb->expires_at_ms = 0;
                break;
            }
            char when[64];
            if (api_member_str(f, when, sizeof when) != 0 ||
                ms_parse_iso8601(when, &kb->expires_at_ms) != 0) {
                invalid_field(c, "expires_at",
                              "'%s' must be an ISO 8601 time such as 2030-01-31T00:00:00Z, or "
                              "null for never.");
                return -1;
            }
            if (kb->expires_at_ms <= ms_now_ms()) {
                invalid_field(c, "expires_at", "'%s' must be in the future.");
                return -1;
            }
            break;
        }
        case F_SPEND:
            if (f->type == JS_NULL) {
                kb->spend_limit_nusd = -1;
                break;
            }
            if (f->type != JS_NUMBER || api_parse_usd(f->value, &kb->spend_limit_nusd) != 0 ||
                kb->spend_limit_nusd < 0) {
                invalid_field(c, "spend_limit",
                              "'%s' must be a number of USD >= 0 with at most 9 decimal places, or "
                              "null for no limit.");
                return -1;
            }
            break;
        case F_RPM:
        case F_TPM: {
            int64_t *dst = bit == F_RPM ? &kb->rpm : &kb->tpm;
            if (f->type == JS_NULL) {
                *dst = -1;
                break;
            }
            if (f->type != JS_NUMBER || jscan_int(f->value, dst) != 0 || *dst < 1) {
                invalid_field(c, bit == F_RPM ? "rpm" : "tpm",
                              "'%s' must be an integer >= 1, or null for the configured default.");
                return -1;
            }
            break;
        }
        case F_ACTIVE:
            if (f->type != JS_TRUE && f->type != JS_FALSE) {
                invalid_field(c, "active", "'%s' must be a boolean.");
                return -1;
            }
            kb->active = f->type == JS_TRUE;
            break;
        }
    }
    return 0;
}

/* What a listing or statistics query asks for. */
typedef struct usage_query {
    int64_t limit, offset;
    char model[128];
    int has_model;
    store_usage_filter f; /* f.model is set when the job copies the query */
    unsigned groups;      /* 1u << store_usage_group */
} usage_query;

/* The query parameters a route reads; others are ignored, as before. */
enum { Q_PAGING = 1, Q_FILTER = 2, Q_GROUP = 4 };

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* v percent-decoded ('+' is a space, as forms send it) into out (NUL-terminated). -1 when it
 * does not fit, has a broken escape or decodes to a NUL. */
static int query_decode(ms_str v, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < v.n; i++) {
        char ch = v.p[i];
        if (ch == '%') {
            int hi = i + 2 < v.n ? hexval(v.p[i + 1]) : -1, lo = hi >= 0 ? hexval(v.p[i + 2]) : -1;
            if (lo < 0) return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch == '\0' || o + 1 >= outlen) return -1;
        out[o++] = ch;
    }
    out[o] = '\0';
    return 0;
}

/* A decimal integer of at most 13 digits (no sign), or -1. */
static int64_t query_uint(ms_str v)
{
    int64_t x = 0;
    if (v.n == 0 || v.n > 13) return -1;
    for (size_t j = 0; j < v.n; j++) {
        if (v.p[j] < '0' || v.p[j] > '9') return -1;
        x = x * 10 + (v.p[j] - '0');
    }
    return x;
}

/* from= or to=: an ISO 8601 time, or a date, which for `to` means the end of that day (so
 * from=2026-03-01&to=2026-03-31 is all of March). Both bounds are inclusive. */
static int query_time(http_conn *c, ms_str v, int is_to, int64_t *out)
{
    char t[64];
    if (query_decode(v, t, sizeof t) != 0 || ms_parse_iso8601(t, out) != 0) {
        api_err_invalid(c, is_to ? "to" : "from",
                        is_to ? "'to' must be an ISO 8601 time such as 2026-03-01T12:00:00Z or a "
                                "date such as 2026-03-01."
                              : "'from' must be an ISO 8601 time such as 2026-03-01T12:00:00Z or "
                                "a date such as 2026-03-01.");
        return -1;
    }
    if (is_to && strlen(t) == 10) *out += 86400000 - 1;
    return 0;
}

/* The query's parameters of the kinds in `want`. Returns 0, or -1 after answering. */
static int parse_query(http_conn *c, ms_str q, unsigned want, usage_query *uq)
{
    memset(uq, 0, sizeof *uq);
    uq->limit = USAGE_LIMIT_DEFAULT;
    uq->f = STORE_USAGE_ALL;
    size_t i = 0;
    while (i < q.n) {
        size_t end = i;
        while (end < q.n && q.p[end] != '&')
            end++;
        ms_str pair = {q.p + i, end - i};
        const char *eq = memchr(pair.p, '=', pair.n);
        ms_str k = {pair.p, eq ? (size_t)(eq - pair.p) : pair.n};
        ms_str v = eq ? (ms_str){eq + 1, pair.n - k.n - 1} : (ms_str){"", 0};
        int is_limit = ms_str_eq(k, "limit"), is_offset = ms_str_eq(k, "offset");
        if ((want & Q_PAGING) && (is_limit || is_offset)) {
            int64_t x = query_uint(v);
            if (is_limit && (x < 1 || x > USAGE_LIMIT_MAX)) {
                char msg[96];
                snprintf(msg, sizeof msg, "'limit' must be an integer from 1 to %d.",
                         USAGE_LIMIT_MAX);
                api_err_invalid(c, "limit", msg);
                return -1;
            }
            if (is_offset && (x < 0 || x > OFFSET_MAX)) {
                api_err_invalid(c, "offset", "'offset' must be an integer >= 0.");
                return -1;
            }
            *(is_limit ? &uq->limit : &uq->offset) = x;
        } else if ((want & Q_FILTER) && ms_str_eq(k, "model")) {
            if (query_decode(v, uq->model, sizeof uq->model) != 0 || !uq->model[0]) {
                api_err_invalid(c, "model", "'model' must be a model name (at most 127 bytes).");
                return -1;
            }
            uq->has_model = 1;
        } else if ((want & Q_FILTER) && ms_str_eq(k, "key_id")) {
            int64_t x = query_uint(v);
            if (x < 1) {
                api_err_invalid(c, "key_id", "'key_id' must be a key id (an integer >= 1).");
                return -1;
            }
            uq->f.key_id = x;
        } else if ((want & Q_FILTER) && ms_str_eq(k, "from")) {
            if (query_time(c, v, 0, &uq->f.from_ms) != 0) return -1;
        } else if ((want & Q_FILTER) && ms_str_eq(k, "to")) {
            if (query_time(c, v, 1, &uq->f.to_ms) != 0) return -1;
        } else if ((want & Q_GROUP) && ms_str_eq(k, "group_by")) {
            if (ms_str_eq(v, "model"))
                uq->groups |= 1u << STORE_BY_MODEL;
            else if (ms_str_eq(v, "key"))
                uq->groups |= 1u << STORE_BY_KEY;
            else if (ms_str_eq(v, "day"))
                uq->groups |= 1u << STORE_BY_DAY;
            else {
                api_err_invalid(c, "group_by", "'group_by' must be model, key or day.");
                return -1;
            }
        }
        i = end + 1;
    }
    if (uq->f.from_ms > uq->f.to_ms) {
        api_err_invalid(c, "to", "'to' must not be before 'from'.");
        return -1;
    }
    return 0;
}

/* ---- the jobs ---- */

typedef enum {
    OP_BALANCE,
    OP_LIST,
    OP_GET,
    OP_CREATE,
    OP_UPDATE,
    OP_DELETE,
    OP_USAGE,
    OP_STATS,
    OP_TXNS,
} acct_op;

typedef enum { RES_OK, RES_NOT_FOUND, RES_INTERNAL } acct_res;

typedef struct acct_job {
    acct_op op;
    key_type type;
    int64_t account_id;
    int64_t id; /* the path's key id */
    int64_t limit, offset;
    usage_query q; /* usage and statistics */
    key_body kb;
    bill_t *bill; /* may be NULL: everything then comes from the store */
    kc_t *kc;
    struct sh *sh; /* other instances hear of key changes through it (or NULL) */
    /* results */
    acct_res res;
    int status;
    char what[48]; /* for the 404 message */
    buf_t body;
    int apply; /* row holds a key row for the cache */
    store_key row;
} acct_job;

static void job_fail(acct_job *j, store_t *s, const char *what)
{
    log_error("api: %s (account %" PRId64 "): %s", what, j->account_id, store_errmsg(s));
    j->res = RES_INTERNAL;
}

static void job_not_found(acct_job *j)
{
    snprintf(j->what, sizeof j->what, "%s %" PRId64, j->type == KEY_BILLING ? "billing key" : "key",
             j->id);
    j->res = RES_NOT_FOUND;
}

static int64_t key_spent(acct_job *j, const store_key *k)
{
    int64_t spent;
    if (k->type == KEY_PROXY && j->bill && bill_key_spent(j->bill, k->id, &spent) == 0)
        return spent;
    return k->spent_nusd;
}

/* Loads the path's key and checks it belongs to the caller's account and has the path's type.
 * Returns 0, or -1 with the result set. */
static int owned_key(acct_job *j, store_t *s, store_key *k)
{
    int rc = store_key_get(s, j->id, k);
    if (rc == STORE_NOTFOUND ||
        (rc == STORE_OK && (k->account_id != j->account_id || k->type != j->type))) {
        job_not_found(j);
        return -1;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "key get");
        return -1;
    }
    return 0;
}

static void work_balance(acct_job *j, store_t *s)
{
    store_account a;
    int rc = store_account_get(s, j->account_id, &a);
    if (rc != STORE_OK) {
        /* the key authenticated, so its account exists: any failure is ours */
        job_fail(j, s, "account get");
        return;
    }
    buf_appends(&j->body, "{\"balance\":");
    api_append_usd(&j->body, a.balance_nusd);
    buf_appends(&j->body, "}");
}

static void work_list(acct_job *j, store_t *s)
{
    store_key *v = NULL;
    size_t n = 0;
    if (store_key_list(s, j->account_id, j->type, &v, &n) != STORE_OK) {
        job_fail(j, s, "key list");
        return;
    }
    buf_appends(&j->body, "{\"keys\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_appends(&j->body, ",");
        api_append_key(&j->body, &v[i], key_spent(j, &v[i]), NULL);
    }
    buf_appends(&j->body, "]}");
    free(v);
}

static void work_get(acct_job *j, store_t *s)
{
    store_key k;
    if (owned_key(j, s, &k) != 0) return;
    api_append_key(&j->body, &k, key_spent(j, &k), NULL);
}

static void work_create(acct_job *j, store_t *s)
{
    char material[64];
    store_key k;
    const key_body *kb = &j->kb;

    int rc = store_key_create(s, j->account_id, j->type, kb->name, kb->expires_at_ms,
                              kb->spend_limit_nusd, material, &k);
    if (rc == STORE_NOTFOUND) {
        snprintf(j->what, sizeof j->what, "account %" PRId64, j->account_id);
        j->res = RES_NOT_FOUND;
        return;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "key create");
        return;
    }
    if (kb->rpm >= 0 || kb->tpm >= 0) {
        /* store_key_create has no rate-limit fields; a key that cannot get them is withdrawn
         * before anyone has seen it */
        store_key_patch p = {0};
        p.set_rpm = kb->rpm >= 0;
        p.rpm = kb->rpm;
        p.set_tpm = kb->tpm >= 0;
        p.tpm = kb->tpm;
        if (store_key_update(s, k.id, &p, &k) != STORE_OK) {
            job_fail(j, s, "key create (rate limits)");
            if (store_key_delete(s, k.id) != STORE_OK) job_fail(j, s, "key create (withdraw)");
            explicit_bzero(material, sizeof material);
            return;
        }
    }
    j->status = 201;
    j->apply = 1;
    j->row = k;
    api_append_key(&j->body, &k, 0, material);
    explicit_bzero(material, sizeof material);
}

static void work_update(acct_job *j, store_t *s)
{
    store_key k;
    const key_body *kb = &j->kb;
    if (owned_key(j, s, &k) != 0) return;
    if (kb->set) {
        store_key_patch p = {0};
        p.set_name = !!(kb->set & F_NAME);
        memcpy(p.name, kb->name, sizeof p.name);
        p.set_active = !!(kb->set & F_ACTIVE);
        p.active = kb->active;
        p.set_spend_limit = !!(kb->set & F_SPEND);
        p.spend_limit_nusd = kb->spend_limit_nusd;
        p.set_rpm = !!(kb->set & F_RPM);
        p.rpm = kb->rpm;
        p.set_tpm = !!(kb->set & F_TPM);
        p.tpm = kb->tpm;
        p.set_expires = !!(kb->set & F_EXPIRES);
        p.expires_at_ms = kb->expires_at_ms;
        int rc = store_key_update(s, j->id, &p, &k);
        if (rc == STORE_NOTFOUND) { /* deleted meanwhile */
            job_not_found(j);
            return;
        }
        if (rc != STORE_OK) {
            job_fail(j, s, "key update");
            return;
        }
        j->apply = 1;
        j->row = k;
    }
    api_append_key(&j->body, &k, key_spent(j, &k), NULL);
}

static void find_row(void *ud, const store_key *k)
{
    acct_job *j = ud;
    if (k->id == j->id) {
        j->row = *k;
        j->apply = 1;
    }
}

static void work_delete(acct_job *j, store_t *s)
{
    store_key k;
    if (owned_key(j, s, &k) != 0) return;
    int rc = store_key_delete(s, j->id);
    if (rc == STORE_NOTFOUND) {
        job_not_found(j);
        return;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "key delete");
        return;
    }
    j->status = 204;
    /* The cache needs the tombstone with its new sequence number, which only the store knows:
     * it is the one row of this key changed after the row just read. */
    int64_t max_seq;
    if (store_keys_since(s, k.seq, find_row, j, &max_seq) != STORE_OK || !j->apply ||
        !j->row.deleted) {
        /* the refresher removes the key within one tick anyway */
        j->apply = 0;
    }
}

/* The filter of a job's query, its model pointing into the job. */
static store_usage_filter job_filter(acct_job *j)
{
    store_usage_filter f = j->q.f;
    f.model = j->q.has_model ? j->q.model : NULL;
    return f;
}

static void work_usage(acct_job *j, store_t *s)
{
    store_usage_row *v = NULL;
    size_t n = 0;
    store_usage_filter f = job_filter(j);
    if (j->bill) bill_flush_for(j->bill, 2000);
    if (store_usage_query(s, j->account_id, &f, j->q.limit, j->q.offset, &v, &n) != STORE_OK) {
        job_fail(j, s, "usage list");
        return;
    }
    buf_t *b = &j->body;
    buf_appends(b, "{\"usage\":[");
    for (size_t i = 0; i < n; i++) {
        const store_usage_row *u = &v[i];
        buf_printf(b, "%s{\"id\":%" PRId64 ",\"requestId\":", i ? "," : "", u->id);
        api_append_str(b, u->request_id);
        buf_appends(b, ",\"model\":");
        api_append_str(b, u->model);
        buf_appends(b, ",\"provider\":");
        api_append_str(b, u->provider);
        /* promptTokens counts every prompt token, as OpenAI's does; cacheWriteTokens both
         * cache-write kinds, of which cacheWrite1hTokens the 1-hour ones */
        buf_printf(b,
                   ",\"keyId\":%" PRId64 ",\"promptTokens\":%" PRId64 ",\"cachedTokens\":%" PRId64
                   ",\"cacheWriteTokens\":%" PRId64 ",\"cacheWrite1hTokens\":%" PRId64
                   ",\"completionTokens\":%" PRId64 ",\"reasoningTokens\":%" PRId64
                   ",\"chargedAmount\":",
                   u->key_id, u->prompt_tokens, u->cached_tokens,
                   u->cache_write_tokens + u->cache_write_1h_tokens, u->cache_write_1h_tokens,
                   u->completion_tokens, u->reasoning_tokens);
        api_append_usd(b, u->charged_nusd);
        /* cached: answered from the response cache, charged 0 (docs/BILLING.md) */
        buf_printf(b,
                   ",\"status\":%d,\"estimated\":%s,\"cached\":%s,\"latencyMs\":%" PRId64
                   ",\"createdAt\":",
                   u->status, u->estimated ? "true" : "false", u->cached ? "true" : "false",
                   u->latency_ms);
        api_append_time(b, u->created_at_ms);
        buf_appends(b, "}");
    }
    buf_appends(b, "]}");
    free(v);
}

/* One statistics object; group says which label it starts with (-1: none, the overall row). */
static void append_stat(buf_t *b, const store_usage_stat *st, int group)
{
    buf_appends(b, "{");
    if (group == STORE_BY_MODEL) {
        buf_appends(b, "\"model\":");
        api_append_str(b, st->model);
        buf_appends(b, ",");
    } else if (group == STORE_BY_KEY) {
        buf_printf(b, "\"keyId\":%" PRId64 ",", st->key_id);
    } else if (group == STORE_BY_DAY) {
        char t[32];
        ms_iso8601(st->day * 86400000, t, 0);
        buf_printf(b, "\"date\":\"%.10s\",", t);
    }
    buf_printf(b,
               "\"requests\":%" PRId64 ",\"promptTokens\":%" PRId64 ",\"cachedTokens\":%" PRId64
               ",\"cacheWriteTokens\":%" PRId64 ",\"cacheWrite1hTokens\":%" PRId64
               ",\"completionTokens\":%" PRId64 ",\"reasoningTokens\":%" PRId64 ",\"spend\":",
               st->requests, st->prompt_tokens, st->cached_tokens,
               st->cache_write_tokens + st->cache_write_1h_tokens, st->cache_write_1h_tokens,
               st->completion_tokens, st->reasoning_tokens);
    api_append_usd(b, st->spend_nusd);
    buf_appends(b, "}");
}

static void work_stats(acct_job *j, store_t *s)
{
    static const char *const name[STORE_BY__COUNT] = {"byModel", "byKey", "byDay"};
    store_usage_stats_out o;
    store_usage_filter f = job_filter(j);
    /* byModel always, as before group_by existed; the others when asked */
    unsigned groups = j->q.groups | 1u << STORE_BY_MODEL;
    if (j->bill) bill_flush_for(j->bill, 2000);
    if (store_usage_stats_query(s, j->account_id, &f, groups, &o) != STORE_OK) {
        job_fail(j, s, "usage stats");
        return;
    }
    buf_t *b = &j->body;
    buf_appends(b, "{\"overall\":");
    append_stat(b, &o.overall, -1);
    for (int g = 0; g < STORE_BY__COUNT; g++) {
        if (!(groups & (1u << g))) continue;
        buf_printf(b, ",\"%s\":[", name[g]);
        for (size_t i = 0; i < o.n[g]; i++) {
            if (i) buf_appends(b, ",");
            append_stat(b, &o.by[g][i], g);
        }
        buf_appends(b, "]");
    }
    buf_appends(b, "}");
    store_usage_stats_free(&o);
}

static void work_txns(acct_job *j, store_t *s)
{
    store_txn *v = NULL;
    size_t n = 0;
    if (j->bill) bill_flush_for(j->bill, 2000);
    if (store_transactions_list(s, j->account_id, j->limit, j->offset, &v, &n) != STORE_OK) {
        job_fail(j, s, "transaction list");
        return;
    }
    buf_t *b = &j->body;
    buf_appends(b, "{\"transactions\":[");
    for (size_t i = 0; i < n; i++) {
        const store_txn *t = &v[i];
        buf_printf(b, "%s{\"id\":%" PRId64 ",\"amount\":", i ? "," : "", t->id);
        api_append_usd(b, t->amount_nusd);
        buf_appends(b, ",\"type\":");
        api_append_str(b, t->type);
        buf_appends(b, ",\"description\":");
        if (t->description[0])
            api_append_str(b, t->description);
        else
            buf_appends(b, "null");
        buf_appends(b, ",\"createdAt\":");
        api_append_time(b, t->created_at_ms);
        buf_appends(b, ",\"balanceAfter\":");
        api_append_usd(b, t->balance_after_nusd);
        buf_appends(b, "}");
    }
    buf_appends(b, "]}");
    free(v);
}

static void acct_work(void *ctx, store_t *s)
{
    acct_job *j = ctx;
    switch (j->op) {
    case OP_BALANCE:
        work_balance(j, s);
        break;
    case OP_LIST:
        work_list(j, s);
        break;
    case OP_GET:
        work_get(j, s);
        break;
    case OP_CREATE:
        work_create(j, s);
        break;
    case OP_UPDATE:
        work_update(j, s);
        break;
    case OP_DELETE:
        work_delete(j, s);
        break;
    case OP_USAGE:
        work_usage(j, s);
        break;
    case OP_STATS:
        work_stats(j, s);
        break;
    case OP_TXNS:
        work_txns(j, s);
        break;
    }
}

static void acct_done(http_conn *c, void *ctx)
{
    acct_job *j = ctx;
    /* The store has the change whether or not the client is still there. */
    if (j->apply) {
        kc_apply(j->kc, &j->row);
        sh_publish(j->sh, 'k'); /* the other instances look now, not at their next poll */
    }
    if (c) {
        if (j->res == RES_NOT_FOUND)
            api_err_not_found(c, j->what);
        else if (j->res == RES_INTERNAL)
            api_err_internal(c);
        else if (j->status == 204)
            http_respond(c, 204, NULL, NULL, "", 0, 0);
        else
            api_send_json(c, j->status, &j->body);
    }
    /* a created key's only copy may still be in here */
    if (j->body.data) explicit_bzero(j->body.data, j->body.len);
    buf_free(&j->body);
}

static acct_job *job_new(http_conn *c, acct_op op, int64_t account_id, key_type type, int64_t id)
{
    acct_job *j = calloc(1, sizeof *j);
    if (!j) {
        api_err_internal(c);
        return NULL;
    }
    j->op = op;
    j->account_id = account_id;
    j->type = type;
    j->id = id;
    j->bill = c->w->bill;
    j->kc = c->w->kc;
    j->sh = c->w->sh;
    j->status = 200;
    buf_init(&j->body, 0);
    return j;
}

/* ---- entry points ---- */

/* Fields a body may carry, by key type and by create or update. Billing keys spend nothing and
 * are not rate limited, so their spend and rate fields would be settings without an effect. */
static unsigned allowed_fields(key_type type, int update)
{
    unsigned f = F_NAME | F_EXPIRES;
    if (type == KEY_PROXY) f |= F_SPEND | F_RPM | F_TPM;
    if (update) f |= F_ACTIVE;
    return f;
}

void api_account_create_key(http_conn *c, http_request *r, int64_t account_id, key_type type)
{
    key_body kb;
    if (parse_key_body(c, r->body, allowed_fields(type, 0), &kb) != 0) return;
    if (!(kb.set & F_NAME)) {
        api_err_missing(c, "name");
        return;
    }
    acct_job *j = job_new(c, OP_CREATE, account_id, type, 0);
    if (!j) return;
    j->kb = kb;
    api_job(c, acct_work, acct_done, j);
}

void api_account(http_conn *c, http_request *r, const store_key *key, acct_route route,
                 key_type type, int64_t id)
{
    int64_t account = key->account_id;
    http_method m = r->method;
    acct_job *j = NULL;

    switch (route) {
    case ACCT_BALANCE: {
        int64_t nusd;
        if (c->w->bill && bill_balance(c->w->bill, account, &nusd) == 0) {
            /* from memory: settled charges included, open holds not */
            buf_t b;
            buf_init(&b, 0);
            buf_appends(&b, "{\"balance\":");
            api_append_usd(&b, nusd);
            buf_appends(&b, "}");
            api_send_json(c, 200, &b);
            return;
        }
        /* an account billing has not loaded yet (created a moment ago elsewhere) */
        j = job_new(c, OP_BALANCE, account, type, 0);
        break;
    }
    case ACCT_NOTIFICATIONS:
        api_notifications(c, r, account);
        return;
    case ACCT_KEYS:
        if (m == HTTP_M_POST) {
            api_account_create_key(c, r, account, type);
            return;
        }
        j = job_new(c, OP_LIST, account, type, 0);
        break;
    case ACCT_KEY:
        if (m == HTTP_M_GET) {
            j = job_new(c, OP_GET, account, type, id);
        } else if (m == HTTP_M_PUT) {
            key_body kb;
            if (parse_key_body(c, r->body, allowed_fields(type, 1), &kb) != 0) return;
            if (type == KEY_BILLING && id == key->id && (kb.set & F_ACTIVE) && !kb.active) {
                api_err_invalid(c, "active",
                                "The billing key in use cannot deactivate itself; use another "
                                "billing key of the account.");
                return;
            }
            j = job_new(c, OP_UPDATE, account, type, id);
            if (j) j->kb = kb;
        } else {
            if (type == KEY_BILLING && id == key->id) {
                api_err_invalid(c, "id",
                                "The billing key in use cannot delete itself; use another billing "
                                "key of the account.");
                return;
            }
            j = job_new(c, OP_DELETE, account, type, id);
        }
        break;
    case ACCT_USAGE:
    case ACCT_TRANSACTIONS:
    case ACCT_USAGE_STATS: {
        usage_query q;
        unsigned want = route == ACCT_USAGE         ? Q_PAGING | Q_FILTER
                        : route == ACCT_USAGE_STATS ? Q_FILTER | Q_GROUP
                                                    : Q_PAGING;
        if (parse_query(c, r->query, want, &q) != 0) return;
        j = job_new(c,
                    route == ACCT_USAGE         ? OP_USAGE
                    : route == ACCT_USAGE_STATS ? OP_STATS
                                                : OP_TXNS,
                    account, type, 0);
        if (j) {
            j->q = q;
            j->limit = q.limit;
            j->offset = q.offset;
        }
        break;
    }
    }
    if (j) api_job(c, acct_work, acct_done, j);
}
