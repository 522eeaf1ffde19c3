/*
 * The API layer: routing of a complete request to its endpoint, authentication against the key
 * cache, request validation, and the endpoint handlers. Handlers run on the worker's loop thread
 * and answer through the response API of server/http.h, either at once or later from upstream
 * callbacks.
 */
#ifndef MS_API_H
#define MS_API_H

#include "server/http.h"
#include "store/store.h"

/* The API layer's handlers for the server (server.h): dispatch (routes and answers a complete
 * request), the route and key check on a request's headers before its body is read, the per-worker
 * state (api_worker) and the abandoning of detached requests when a drain times out. `serve`
 * passes them to srv_new; the server includes no header of this layer. */
srv_handlers api_server_handlers(void);

/* What the API layer keeps per worker, in worker_t.app (made by the worker_init handler). */
typedef struct api_worker {
    /* requests whose client left, still reading the upstream answer for the usage to bill
     * (proxy.c); each counts in the worker's app_work (srv_app_work_begin) */
    struct proxy *detached;
} api_worker;

static inline api_worker *api_worker_of(worker_t *w)
{
    return w->app;
}

/* ---- shared by the endpoint files ---- */

/* Checks the Authorization header for a key of type want. On failure the error has been sent
 * and -1 is returned. On success fills *key and the request's log fields. */
int api_authenticate(http_conn *c, http_request *r, key_type want, store_key *key);

/* Error helpers with the contract's type and code. */
void api_err_invalid_json(http_conn *c, const char *detail);
void api_err_missing(http_conn *c, const char *param);
void api_err_invalid(http_conn *c, const char *param, const char *message);
void api_err_model_not_found(http_conn *c, const char *model);
void api_err_internal(http_conn *c);

/* How an upstream outcome reaches the client (the contract's error table). */
typedef struct api_error_info {
    int status;
    const char *type;
    const char *code;
} api_error_info;

/* For a transfer that failed (res != UP_OK) or an upstream error status (res == UP_OK,
 * upstream_status >= 300): the client-facing status, type and code. */
api_error_info api_upstream_error(int res, int upstream_status);

/* Admits call: the rate limits (429 with retry-after), then the hold (prices, bounds:
 * docs/BILLING.md, covering the dearest model of its fallback chain); wires its settle/release
 * and sets the x-ratelimit-* headers. On refusal the error has been sent and -1 is returned.
 * (settle.c) */
struct prov_call;
int api_admit(http_conn *c, struct prov_call *call, const store_key *key);
/* Sets the x-ratelimit-* headers of key's current state on the answer (no consumption). */
void api_rate_headers(http_conn *c, const store_key *key);

/* Endpoints. */
void api_chat_completions(http_conn *c, http_request *r);
void api_embeddings(http_conn *c, http_request *r);
void api_models_list(http_conn *c, http_request *r);
void api_models_get(http_conn *c, http_request *r, ms_str id);

#endif
