/*
 * GET and PUT /api/settings/notifications: an account's low-balance threshold and the webhook
 * told when its balance falls below it (docs/API.md, "Notifications"; the sending is
 * src/notify/webhook.c, the crossing docs/BILLING.md).
 *
 * The webhook's signing secret is made by the store when a webhook is first set (and again on
 * `rotate_secret`), and shown in that one answer, as keys are: the receiver keeps it to check
 * signatures, and nothing else can be done with it. Other answers show its display prefix only.
 *
 * Both the store and billing's memory hold the settings (billing decides at settlement whether a
 * charge crossed the threshold). A PUT writes the store, then tells billing, under one mutex, so
 * two PUTs of an account cannot leave the store with one threshold and memory with the other.
 * The store work runs in a pool thread (api_job), never on the loop.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/job.h"
#include "billing/billing.h"
#include "common/log.h"
#include "notify/webhook.h"

/* The prefix of the secret shown after its one showing: "whsec_" and two characters. */
#define SECRET_PREFIX_LEN 8

typedef enum { RES_OK, RES_INTERNAL, RES_NO_WEBHOOK } notify_res;

typedef struct notify_job {
    int64_t account_id;
    int put;
    store_notify_patch p;
    char url[STORE_WEBHOOK_URL_MAX + 1];
    char rotate_param[80]; /* the name rotate_secret came as, for the 400 */
    bill_t *bill;
    notify_res res;
    buf_t body;
} notify_job;

/* Serialises PUTs: store write and billing's copy in the same order (see the top). */
static pthread_mutex_t notify_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- the body of a PUT ---- */

enum { F_THRESHOLD = 1, F_URL = 2, F_ROTATE = 4 };

/* The bit of a field name: snake_case as everywhere in the account API, and the contract's
 * camelCase spelling of the same fields. 0 for an unknown name. */
static unsigned field_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } f[] = {{"low_balance_threshold", F_THRESHOLD},
             {"lowBalanceThreshold", F_THRESHOLD},
             {"webhook_url", F_URL},
             {"webhookUrl", F_URL},
             {"rotate_secret", F_ROTATE},
             {"rotateSecret", F_ROTATE}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (!strcmp(name, f[i].name)) return f[i].bit;
    return 0;
}

static void invalid(http_conn *c, const char *param, const char *rule)
{
    char msg[300];
    snprintf(msg, sizeof msg, "'%s' %s", param, rule);
    api_err_invalid(c, param, msg);
}

static int parse_threshold(http_conn *c, const jscan_member *f, const char *name, notify_job *j)
{
    j->p.set_threshold = 1;
    j->p.threshold_nusd = 0;
    if (f->type == JS_NULL) return 0;
    if (f->type != JS_NUMBER || api_parse_usd(f->value, &j->p.threshold_nusd) != 0 ||
        j->p.threshold_nusd <= 0 || j->p.threshold_nusd > STORE_MAX_BALANCE_NUSD) {
        invalid(c, name,
                "must be a number of USD > 0 with at most 9 decimal places (at most the maximum "
                "balance, 1000000000), or null for none.");
        return -1;
    }
    return 0;
}

static int parse_url(http_conn *c, const jscan_member *f, const char *name, notify_job *j)
{
    j->p.set_url = 1;
    j->p.url = NULL;
    if (f->type == JS_NULL) return 0;
    if (f->type != JS_STRING) {
        invalid(c, name, "must be an http:// or https:// URL, or null for none.");
        return -1;
    }
    if (api_member_str(f, j->url, sizeof j->url) != 0) {
        invalid(c, name, "must be a URL of 1 to 2048 bytes, or null for none.");
        return -1;
    }
    const char *why = hook_url_check(j->url);
    if (why) {
        invalid(c, name, why);
        return -1;
    }
    j->p.url = j->url;
    return 0;
}

/* Fills j from the body. Returns 0, or -1 after answering. */
static int parse_put(http_conn *c, ms_str body, notify_job *j)
{
    jscan_member m[API_MAX_MEMBERS];
    char name[80];
    unsigned seen = 0;
    int n = api_scan_object(c, body, m);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) {
        const jscan_member *f = &m[i];
        api_member_name(f, name, sizeof name);
        unsigned bit = field_bit(name);
        if (!bit) {
            api_err_unknown_field(c, name);
            return -1;
        }
        if (seen & bit) { /* twice, or in both spellings: which one would win is a guess */
            invalid(c, name, "is given twice (the field or its other spelling).");
            return -1;
        }
        seen |= bit;
        if (bit == F_THRESHOLD && parse_threshold(c, f, name, j) != 0) return -1;
        if (bit == F_URL && parse_url(c, f, name, j) != 0) return -1;
        if (bit == F_ROTATE) {
            if (f->type != JS_TRUE && f->type != JS_FALSE) {
                invalid(c, name, "must be a boolean.");
                return -1;
            }
            j->p.rotate_secret = f->type == JS_TRUE;
            snprintf(j->rotate_param, sizeof j->rotate_param, "%s", name);
        }
    }
    if (j->p.rotate_secret && j->p.set_url && !j->p.url) {
        invalid(c, j->rotate_param, "needs a webhook: there is no secret without one.");
        return -1;
    }
    return 0;
}

/* ---- the answer ---- */

static void append_settings(buf_t *b, const store_notify *n, int show_secret)
{
    buf_appends(b, "{\"lowBalanceThreshold\":");
    if (n->threshold_nusd > 0)
        api_append_usd(b, n->threshold_nusd);
    else
        buf_appends(b, "null");
    buf_appends(b, ",\"webhookUrl\":");
    if (n->url[0])
        api_append_str(b, n->url);
    else
        buf_appends(b, "null");
    if (show_secret) {
        buf_appends(b, ",\"webhookSecret\":");
        api_append_str(b, n->secret);
    }
    buf_appends(b, ",\"webhookSecretPrefix\":");
    if (n->secret[0])
        buf_printf(b, "\"%.*s\"", SECRET_PREFIX_LEN, n->secret);
    else
        buf_appends(b, "null");
    buf_appends(b, ",\"updatedAt\":");
    if (n->updated_at_ms > 0)
        api_append_time(b, n->updated_at_ms);
    else
        buf_appends(b, "null");
    buf_appends(b, "}");
}

/* ---- the work, in a pool thread ---- */

/* Billing's copy of the settings: a threshold only counts with a webhook to tell. */
static void tell_billing(notify_job *j, const store_notify *n)
{
    int64_t threshold = n->url[0] ? n->threshold_nusd : 0;
    if (!j->bill || bill_notify_set(j->bill, j->account_id, threshold) == 0) return;
    /* an account created a moment ago elsewhere: billing learns it on its next poll */
    bill_poll_sync(j->bill, 1000);
    if (bill_notify_set(j->bill, j->account_id, threshold) != 0)
        log_warn("notifications: billing does not know account %" PRId64
                 " yet; its threshold applies from the next start",
                 j->account_id);
}

static void work_put(notify_job *j, store_t *s, store_notify *n)
{
    int fresh = 0;
    pthread_mutex_lock(&notify_mu);
    if (!j->p.set_threshold && !j->p.set_url && !j->p.rotate_secret) {
        /* {} (or only rotate_secret: false) changes nothing, not even updatedAt */
        if (store_notify_get(s, j->account_id, n) != STORE_OK) {
            log_error("notifications: settings get: %s", store_errmsg(s));
            j->res = RES_INTERNAL;
        } else {
            append_settings(&j->body, n, 0);
        }
        goto out;
    }
    if (j->p.rotate_secret && !j->p.set_url) {
        if (store_notify_get(s, j->account_id, n) != STORE_OK) {
            log_error("notifications: settings get: %s", store_errmsg(s));
            j->res = RES_INTERNAL;
            goto out;
        }
        if (!n->url[0]) {
            j->res = RES_NO_WEBHOOK;
            goto out;
        }
    }
    if (store_notify_update(s, j->account_id, &j->p, n, &fresh) != STORE_OK) {
        log_error("notifications: settings update: %s", store_errmsg(s));
        j->res = RES_INTERNAL;
        goto out;
    }
    tell_billing(j, n);
    append_settings(&j->body, n, fresh);
out:
    pthread_mutex_unlock(&notify_mu);
}

static void notify_work(void *ctx, store_t *s)
{
    notify_job *j = ctx;
    store_notify *n = malloc(sizeof *n);
    if (!n) {
        j->res = RES_INTERNAL;
        return;
    }
    if (j->put) {
        work_put(j, s, n);
    } else if (store_notify_get(s, j->account_id, n) != STORE_OK) {
        log_error("notifications: settings get: %s", store_errmsg(s));
        j->res = RES_INTERNAL;
    } else {
        append_settings(&j->body, n, 0);
    }
    explicit_bzero(n, sizeof *n); /* the secret */
    free(n);
}

static void notify_done(http_conn *c, void *ctx)
{
    notify_job *j = ctx;
    if (c) {
        if (j->res == RES_INTERNAL)
            api_err_internal(c);
        else if (j->res == RES_NO_WEBHOOK)
            invalid(c, j->rotate_param, "needs a webhook: there is no secret without one.");
        else
            api_send_json(c, 200, &j->body);
    }
    /* a new secret's only copy may be in here */
    if (j->body.data) explicit_bzero(j->body.data, j->body.len);
    buf_free(&j->body);
}

void api_notifications(http_conn *c, http_request *r, int64_t account_id)
{
    notify_job *j = calloc(1, sizeof *j);
    if (!j) {
        api_err_internal(c);
        return;
    }
    j->account_id = account_id;
    j->bill = c->w->bill;
    j->put = r->method == HTTP_M_PUT;
    buf_init(&j->body, 0);
    if (j->put && parse_put(c, r->body, j) != 0) {
        buf_free(&j->body);
        free(j);
        return;
    }
    api_job(c, notify_work, notify_done, j);
}
