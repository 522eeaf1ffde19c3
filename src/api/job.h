/*
 * Store work for the API layer, off the event loop: the account API (/api/, account.c) and the
 * operator API (/admin/, admin.c) read and write the store, and a store call may block, so it
 * never runs on a worker's loop thread. api_job runs it on libuv's thread pool with a store handle
 * that belongs to that pool thread, then comes back to the loop to answer.
 *
 * The flow of one request: the handler validates the request on the loop (cheap, no store), puts
 * what the work needs into a malloc'd ctx and calls api_job. work(ctx, store) runs in a pool
 * thread and leaves its results in ctx; done(c, ctx) runs back on the loop and answers on c. If
 * the client went away meanwhile, done is still called, with c == NULL, so it can release what
 * ctx owns (and finish side effects such as updating the key cache) without touching the
 * connection. The job frees ctx itself after done returns.
 *
 * Each pool thread opens its store handle on first use and keeps it; the handles are listed in a
 * registry that api_jobs_shutdown closes once every worker has stopped.
 *
 * This header also carries what account.c, admin.c and router.c share (they have no header of
 * their own).
 */
#ifndef MS_API_JOB_H
#define MS_API_JOB_H

#include <stdint.h>

#include "common/jscan.h"
#include "server/http.h"
#include "store/store.h"

/* Runs in a pool thread; s is that thread's own handle (never NULL). */
typedef void (*api_job_work_fn)(void *ctx, store_t *s);
/* Runs on the loop thread; c is NULL when the answer must not (or need not) be sent. */
typedef void (*api_job_done_fn)(http_conn *c, void *ctx);

/* Queues work on c's worker loop and registers an abort handler on c, so the request stays in
 * progress until done has answered. ctx must come from malloc; it is freed by the job. If no
 * store handle can be opened, the client gets 500 internal_error and done is called with
 * c == NULL. */
void api_job(http_conn *c, api_job_work_fn work, api_job_done_fn done, void *ctx);

/* api_job for work that no connection waits for (saving a response the client already has): done
 * is called with c == NULL. A draining worker waits for it (srv_app_work_begin), so what was
 * queued is written before the process exits. Returns 0, or -1 (nothing queued; ctx not freed). */
int api_job_bg(worker_t *w, api_job_work_fn work, api_job_done_fn done, void *ctx);

/* Closes every pool thread's store handle. Call once, after every worker loop has stopped (no
 * job can be running), before the process exits. */
void api_jobs_shutdown(void);

/* ---- shared by the account and operator endpoints ---- */

/* 404 not_found ("what" completes the message, e.g. "key 12"); also the answer for another
 * account's ids, which must look exactly like ids that do not exist. */
void api_err_not_found(http_conn *c, const char *what);

/* Routes of the account API, called by the router after the billing key is authenticated.
 * id is the path's {id} (> 0) or 0 when the path has none. */
typedef enum {
    ACCT_BALANCE,
    ACCT_KEYS, /* /api/keys and /api/billing-keys */
    ACCT_KEY,  /* /api/keys/{id} and /api/billing-keys/{id} */
    ACCT_USAGE,
    ACCT_USAGE_STATS,
    ACCT_TRANSACTIONS,
    ACCT_NOTIFICATIONS, /* /api/settings/notifications */
} acct_route;
void api_account(http_conn *c, http_request *r, const store_key *key, acct_route route,
                 key_type type, int64_t id);

/* GET and PUT /api/settings/notifications of account_id (notifications.c). */
void api_notifications(http_conn *c, http_request *r, int64_t account_id);

/* Routes of the operator API, called by the router after the admin token is checked. */
typedef enum {
    ADMIN_ACCOUNTS,     /* /admin/accounts */
    ADMIN_ACCOUNT,      /* /admin/accounts/{id} */
    ADMIN_TOPUP,        /* /admin/accounts/{id}/topup */
    ADMIN_BILLING_KEYS, /* /admin/accounts/{id}/billing-keys */
} admin_route;
void api_admin(http_conn *c, http_request *r, admin_route route, int64_t id);

/* Creates a key of type for account_id from the body {"name"?, "expires_at"?, and for proxy
 * keys "spend_limit"?, "rpm"?, "tpm"?} and answers 201 with the key shown once (account.c; the
 * operator API uses it for an account's billing keys). */
void api_account_create_key(http_conn *c, http_request *r, int64_t account_id, key_type type);

/* ---- request bodies and answers (account.c), also used by admin.c ---- */

#define API_MAX_MEMBERS 32

/* Scans body as one JSON object into m[API_MAX_MEMBERS]. Returns the member count, or -1 after
 * answering 400 (invalid_json, or too many fields). */
int api_scan_object(http_conn *c, ms_str body, jscan_member *m);
/* The member's name with escapes decoded, for comparing and for `param` (never empty). */
void api_member_name(const jscan_member *m, char *out, size_t outlen);
/* A string member decoded into out (NUL-terminated, no NUL inside). Returns 0 or -1. */
int api_member_str(const jscan_member *m, char *out, size_t outlen);
/* 400 invalid_parameter for a field the endpoint does not know, param = its name. */
void api_err_unknown_field(http_conn *c, const char *name);

/* Parses a JSON number's exact text (exponents allowed, as JavaScript writes 1e-7) into
 * nano-dollars without floating point. Returns 0, or -1 when it is not a number or not exact to
 * the nano-dollar or out of range. */
int api_parse_usd(ms_str number, int64_t *nusd);

/* Appends v nano-dollars as a JSON number with its exact decimal text (1500.5, 0.000002). */
int api_append_usd(buf_t *b, int64_t nusd);
/* Appends "<ISO 8601>" (quoted), with milliseconds only when they are not zero. */
int api_append_time(buf_t *b, int64_t epoch_ms);
/* Appends a JSON string (quoted and escaped). */
int api_append_str(buf_t *b, const char *s);
/* Appends one key as the account API shows it: {"id",...,"tpm"}, with "key": material after the
 * id only when material is not NULL (at creation). spent is passed in because it may come from
 * memory rather than the row. */
int api_append_key(buf_t *b, const store_key *k, int64_t spent_nusd, const char *material);

/* Sends b (a complete JSON document) with status, taking its storage; 500 when b failed. */
void api_send_json(http_conn *c, int status, buf_t *b);

#endif
