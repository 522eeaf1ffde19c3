/*
 * The operator API (/admin/, behind the admin token): create, list and show accounts, top one up
 * (a `payment` transaction), and give an account its billing keys. The router has checked the
 * token and the method; this file validates bodies, runs the store work in a pool thread
 * (job.h) and answers. Every action here is also a CLI command working on the store directly.
 *
 * Balances shown are the settled balance billing holds in memory when it knows the account
 * (the store's figure lags by the charges the ledger writer has not committed yet). A top-up
 * first waits for the writer (bill_flush_for, at most 2 s) so the balance it returns is current,
 * and every change of an account waits for billing to re-read accounts (bill_poll_sync, at most
 * 1 s) before the answer, so the account is usable with its new balance as soon as it is told.
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

#define DESC_MAX 1024 /* the store's limit for a transaction description */
#define MAX_BALANCE_USD (STORE_MAX_BALANCE_NUSD / 1000000000LL)

typedef enum { OP_CREATE, OP_LIST, OP_GET, OP_TOPUP } admin_op;
/* RES_LIMIT: the store refused because the balance would go above its maximum (a 400: the
 * operator asked for too much, nothing failed). */
typedef enum { RES_OK, RES_NOT_FOUND, RES_INTERNAL, RES_LIMIT } admin_res;

typedef struct admin_job {
    admin_op op;
    int64_t id;
    char name[128];
    int64_t amount_nusd; /* opening balance or top-up */
    int has_desc;
    char desc[DESC_MAX + 1];
    bill_t *bill;
    struct sh *sh; /* other instances hear of account changes through it (or NULL) */
    /* results */
    admin_res res;
    int status;
    char limit_msg[256]; /* the 400's message when res is RES_LIMIT */
    buf_t body;
} admin_job;

static void job_fail(admin_job *j, store_t *s, const char *what)
{
    log_error("admin: %s: %s", what, store_errmsg(s));
    j->res = RES_INTERNAL;
}

static int64_t shown_balance(admin_job *j, const store_account *a)
{
    int64_t nusd;
    if (j->bill && bill_balance(j->bill, a->id, &nusd) == 0) return nusd;
    return a->balance_nusd;
}

/* An account as the operator sees it: keys and spent as store_account_list or _show read them
 * (0 for an account just created). */
static void append_account(buf_t *b, const store_account *a, int64_t balance_nusd)
{
    buf_printf(b, "{\"id\":%" PRId64 ",\"name\":", a->id);
    api_append_str(b, a->name);
    buf_appends(b, ",\"balance\":");
    api_append_usd(b, balance_nusd);
    buf_appends(b, ",\"createdAt\":");
    api_append_time(b, a->created_at_ms);
    buf_printf(b, ",\"keys\":%" PRId64 ",\"spent\":", a->proxy_keys);
    api_append_usd(b, a->spent_nusd);
    buf_appends(b, "}");
}

static void work_create(admin_job *j, store_t *s)
{
    store_account a;
    int rc = store_account_create(s, j->name, j->amount_nusd, &j->id);
    if (rc == STORE_LIMIT) { /* create_account checked already: only if the two disagree */
        j->res = RES_LIMIT;
        snprintf(j->limit_msg, sizeof j->limit_msg,
                 "'balance' must be at most %lld USD (the maximum balance).", MAX_BALANCE_USD);
        return;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "account create");
        return;
    }
    /* the answer reports the new balance: billing must have it by then */
    if (j->bill) bill_poll_sync(j->bill, 1000);
    if (store_account_get(s, j->id, &a) != STORE_OK) {
        job_fail(j, s, "account get");
        return;
    }
    j->status = 201;
    /* billing has not loaded the account yet: the row is the truth */
    append_account(&j->body, &a, a.balance_nusd);
}

static void work_list(admin_job *j, store_t *s)
{
    store_account *v = NULL;
    size_t n = 0;
    /* spent comes from the store: settled charges first, so it agrees with the balance */
    if (j->bill) bill_flush_for(j->bill, 2000);
    if (store_account_list(s, &v, &n) != STORE_OK) {
        job_fail(j, s, "account list");
        return;
    }
    buf_appends(&j->body, "{\"accounts\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) buf_appends(&j->body, ",");
        append_account(&j->body, &v[i], shown_balance(j, &v[i]));
    }
    buf_appends(&j->body, "]}");
    free(v);
}

static void work_get(admin_job *j, store_t *s)
{
    store_account a;
    if (j->bill) bill_flush_for(j->bill, 2000);
    int rc = store_account_show(s, j->id, &a);
    if (rc == STORE_NOTFOUND) {
        j->res = RES_NOT_FOUND;
        return;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "account get");
        return;
    }
    append_account(&j->body, &a, shown_balance(j, &a));
}

static void work_topup(admin_job *j, store_t *s)
{
    store_account a;
    /* Settled charges first, so the balance read back below is the whole truth. */
    if (j->bill) bill_flush_for(j->bill, 2000);
    int rc = store_account_topup(s, j->id, j->amount_nusd, j->has_desc ? j->desc : NULL);
    if (rc == STORE_NOTFOUND) {
        j->res = RES_NOT_FOUND;
        return;
    }
    if (rc == STORE_LIMIT) {
        char bal[32] = "?";
        j->res = RES_LIMIT;
        if (store_account_get(s, j->id, &a) == STORE_OK)
            ms_format_decimal(shown_balance(j, &a), 9, bal, sizeof bal);
        snprintf(j->limit_msg, sizeof j->limit_msg,
                 "'amount' would take the balance of account %" PRId64
                 " (now %s USD) above the maximum balance of %lld USD.",
                 j->id, bal, MAX_BALANCE_USD);
        return;
    }
    if (rc != STORE_OK) {
        job_fail(j, s, "account top-up");
        return;
    }
    if (j->bill) bill_poll_sync(j->bill, 1000); /* the new balance is usable once we answer */
    if (store_account_get(s, j->id, &a) != STORE_OK) {
        job_fail(j, s, "account get");
        return;
    }
    buf_printf(&j->body, "{\"id\":%" PRId64 ",\"balance\":", a.id);
    api_append_usd(&j->body, a.balance_nusd);
    buf_appends(&j->body, "}");
}

static void admin_work(void *ctx, store_t *s)
{
    admin_job *j = ctx;
    switch (j->op) {
    case OP_CREATE:
        work_create(j, s);
        break;
    case OP_LIST:
        work_list(j, s);
        break;
    case OP_GET:
        work_get(j, s);
        break;
    case OP_TOPUP:
        work_topup(j, s);
        break;
    }
}

static void admin_done(http_conn *c, void *ctx)
{
    admin_job *j = ctx;
    /* a new account or a top-up: the other instances read balances now */
    if (j->res == RES_OK && (j->op == OP_CREATE || j->op == OP_TOPUP)) sh_publish(j->sh, 'a');
    if (c) {
        if (j->res == RES_NOT_FOUND) {
            char what[48];
            snprintf(what, sizeof what, "account %" PRId64, j->id);
            api_err_not_found(c, what);
        } else if (j->res == RES_INTERNAL) {
            api_err_internal(c);
        } else if (j->res == RES_LIMIT) {
            api_err_invalid(c, j->op == OP_CREATE ? "balance" : "amount", j->limit_msg);
        } else {
            api_send_json(c, j->status, &j->body);
        }
    }
    buf_free(&j->body);
}

static admin_job *job_new(http_conn *c, admin_op op, int64_t id)
{
    admin_job *j = calloc(1, sizeof *j);
    if (!j) {
        api_err_internal(c);
        return NULL;
    }
    j->op = op;
    j->id = id;
    j->bill = c->w->bill;
    j->sh = c->w->sh;
    j->status = 200;
    buf_init(&j->body, 0);
    return j;
}

/* An amount member: a JSON number of USD, exact to the nano-dollar, > 0 (or >= 0 when zero_ok),
 * and at most the maximum balance (no single amount could be booked above it anyway, and the cap
 * keeps every later sum far from int64's end). Returns 0, or -1 after answering with what is
 * wrong. */
static int parse_amount(http_conn *c, const jscan_member *m, const char *param, int zero_ok,
                        int64_t *out)
{
    char msg[200];
    const char *sign = zero_ok ? ">= 0" : "> 0";
    double approx;

    if (m->type != JS_NUMBER) {
        snprintf(msg, sizeof msg, "'%s' must be a JSON number of USD (such as 12.5), not %s.",
                 param,
                 m->type == JS_STRING ? "a string"
                 : m->type == JS_NULL ? "null"
                                      : "this type");
    } else if (api_parse_usd(m->value, out) == 0) {
        if (*out > 0 || (*out == 0 && zero_ok)) {
            if (*out <= STORE_MAX_BALANCE_NUSD) return 0;
            snprintf(msg, sizeof msg, "'%s' must be at most %lld USD (the maximum balance).", param,
                     MAX_BALANCE_USD);
        } else {
            snprintf(msg, sizeof msg, "'%s' must be %s.", param, sign);
        }
    } else if (m->value.n > 0 && m->value.p[0] == '-') {
        snprintf(msg, sizeof msg, "'%s' must be %s.", param, sign);
    } else if (jscan_double(m->value, &approx) == 0 && approx <= (double)MAX_BALANCE_USD) {
        /* Not exact, yet small enough to fit: too many decimals. The double only tells the two
         * reasons apart; an amount is never taken from it. */
        snprintf(msg, sizeof msg, "'%s' must have at most 9 decimal places (1 nano-dollar).",
                 param);
    } else {
        snprintf(msg, sizeof msg, "'%s' must be at most %lld USD (the maximum balance).", param,
                 MAX_BALANCE_USD);
    }
    api_err_invalid(c, param, msg);
    return -1;
}

/* A name that is empty or only blanks names nothing a person can tell apart. */
static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\v' && *s != '\f')
            return 0;
    return 1;
}

/* POST /admin/accounts {"name", "balance"?} */
static void create_account(http_conn *c, http_request *r)
{
    jscan_member m[API_MAX_MEMBERS];
    char field[80], name[128] = "";
    int64_t balance = 0;
    int has_name = 0;
    int n = api_scan_object(c, r->body, m);
    if (n < 0) return;
    for (int i = 0; i < n; i++) {
        api_member_name(&m[i], field, sizeof field);
        if (!strcmp(field, "name")) {
            if (api_member_str(&m[i], name, sizeof name) != 0 || blank(name)) {
                api_err_invalid(c, "name",
                                "'name' must be a string of 1 to 127 bytes, not only blanks.");
                return;
            }
            has_name = 1;
        } else if (!strcmp(field, "balance")) {
            if (m[i].type == JS_NULL)
                balance = 0;
            else if (parse_amount(c, &m[i], "balance", 1, &balance) != 0)
                return;
        } else {
            api_err_unknown_field(c, field);
            return;
        }
    }
    if (!has_name) {
        api_err_missing(c, "name");
        return;
    }
    admin_job *j = job_new(c, OP_CREATE, 0);
    if (!j) return;
    memcpy(j->name, name, sizeof j->name);
    j->amount_nusd = balance;
    api_job(c, admin_work, admin_done, j);
}

/* POST /admin/accounts/{id}/topup {"amount", "description"?} */
static void topup(http_conn *c, http_request *r, int64_t id)
{
    jscan_member m[API_MAX_MEMBERS];
    char field[80];
    int64_t amount = 0;
    int has_amount = 0;
    int n = api_scan_object(c, r->body, m);
    if (n < 0) return;
    admin_job *j = job_new(c, OP_TOPUP, id);
    if (!j) return;
    for (int i = 0; i < n; i++) {
        api_member_name(&m[i], field, sizeof field);
        if (!strcmp(field, "amount")) {
            if (parse_amount(c, &m[i], "amount", 0, &amount) != 0) goto fail;
            has_amount = 1;
        } else if (!strcmp(field, "description")) {
            if (m[i].type == JS_NULL) {
                j->has_desc = 0;
            } else if (api_member_str(&m[i], j->desc, sizeof j->desc) != 0) {
                api_err_invalid(c, "description",
                                "'description' must be a string of at most 1024 bytes, or null.");
                goto fail;
            } else {
                j->has_desc = 1;
            }
        } else {
            api_err_unknown_field(c, field);
            goto fail;
        }
    }
    if (!has_amount) {
        api_err_missing(c, "amount");
        goto fail;
    }
    j->amount_nusd = amount;
    api_job(c, admin_work, admin_done, j);
    return;

fail:
    buf_free(&j->body);
    free(j);
}

void api_admin(http_conn *c, http_request *r, admin_route route, int64_t id)
{
    admin_job *j = NULL;
    switch (route) {
    case ADMIN_ACCOUNTS:
        if (r->method == HTTP_M_POST) {
            create_account(c, r);
            return;
        }
        j = job_new(c, OP_LIST, 0);
        break;
    case ADMIN_ACCOUNT:
        j = job_new(c, OP_GET, id);
        break;
    case ADMIN_TOPUP:
        topup(c, r, id);
        return;
    case ADMIN_BILLING_KEYS:
        api_account_create_key(c, r, id, KEY_BILLING);
        return;
    }
    if (j) api_job(c, admin_work, admin_done, j);
}
