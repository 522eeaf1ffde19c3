/*
 * The API layer: routing of a complete request to its endpoint, authentication against the key
 * cache, request validation, and the endpoint handlers. Handlers run on the worker's loop thread
 * and answer through the response API of server/http.h, either at once or later from upstream
 * callbacks.
 */
#ifndef MS_API_H
#define MS_API_H

#include "server/http.h"
#include "billing/billing.h"
#include "common/usage.h"
#include "dialect/dialect.h"
#include "ratelimit/ratelimit.h"
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
    struct stats_worker *stats; /* the worker's counters (stats.h), read by GET /metrics */
    struct sh_worker *shw;      /* its connection to the shared state, or NULL (shared.h) */
    struct rcache *rc;          /* the response cache's Redis backend on shw, or NULL (cache.c) */
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
/* A request refused before anything ran (a dialect's or an adapter's refusal): its status, type,
 * code and param, with retry-after and x-should-retry when it says so. */
void api_refuse(http_conn *c, const dialect_refusal *why);

/* How an upstream outcome reaches the client (the contract's error table). */
typedef struct api_error_info {
    int status;
    const char *type;
    const char *code;
} api_error_info;

/* For a transfer that failed (res != UP_OK) or an upstream error status (res == UP_OK,
 * upstream_status >= 300): the client-facing status, type and code. */
api_error_info api_upstream_error(int res, int upstream_status);

struct prov_call;
typedef struct api_cache_req api_cache_req;

/* A request's settlement context (settle.c): its hold and rate-limit admission, and the state
 * that makes it end exactly once. Owned by the request (the proxy), not by its adapter. */
typedef struct api_settlement {
    bill_t *bill;
    /* the generation the request was parsed on and runs on (held: released with the context) */
    struct srv_gen *gen;
    /* the shared state (several instances), or NULL: the worker's connection, and the limits
     * the admission counted (their token counters are corrected at the end) */
    struct sh_worker *shw;
    rl_limit lim[3];
    int nlim;
    int64_t hold_amount; /* what api_admit holds: the dearest model of the chain, worst case */
    int64_t rl_out;      /* the output bound in the rate limiter's token estimate */
    int corr_owed;       /* a token correction for the shared state, sent with the next snapshot */
    int64_t corr_est;    /* what the admission counted */
    /* the config the hold was computed with (the request's generation, which its owner holds):
     * the settlement prices with it too, whatever a reload did meanwhile */
    const cfg_t *cfg;
    rl_t *rl; /* NULL: no token correction owed */
    store_key key;
    const cfg_model *rl_model; /* the model the limiter admitted the request under */
    int64_t rl_tokens;         /* the tokens it admitted (corrected to the real count at the end) */
    bill_hold hold;
    int64_t prompt_bound;
    char request_id[40];
    uint64_t start_ns;
    int done; /* settled or released */
    /* where its events are counted (stats.h), or NULL */
    struct stats_gen *stats;
    /* What becomes of the answer once it ended well, for endpoints that keep answers (the
     * Responses API's store: true, api/responses.c); NULL for the others. Called once, on the
     * loop, before the client gets the answer's last byte, never for a failed answer or a client
     * that went away. doc: the whole answer in the client's dialect; or, with is_event, the data
     * of a passed-through stream's terminal event, which carries it. */
    void (*keep)(struct api_settlement *s, worker_t *w, const struct prov_call *call, ms_str doc,
                 int is_event);
    void *keep_ctx; /* the keeper's (owned by it; freed with the context by api_settlement_free) */
    /* The response cache's part when it applies to the request (api/cache.c), else NULL: the
     * engine copies a stream's bytes into it and stores an answer that ended well. Owned. */
    api_cache_req *cache;
} api_settlement;

/* Frees a settlement context and what its keeper holds. */
void api_cache_req_free(api_cache_req *cr);
void api_settlement_free(api_settlement *s);

/* A dialect's rewrite of a request into the hub format (OpenAI chat), as
 * dialect_anthropic_to_openai_listed: the body's top-level members listed into members[0..
 * *listed) when the rewrite can (else *listed 0: the parser scans them). */
struct jscan_member;
typedef int (*api_to_hub)(const struct prov_call *call, buf_t *out, struct jscan_member *members,
                          size_t max, size_t *listed, dialect_refusal *why);
/* A request's settlement context, before admission: what it will hold (prices, bounds:
 * docs/BILLING.md, covering the dearest model of its fallback chain). The endpoint sets its
 * cache and keep hooks on it, then calls api_admit. NULL after answering 500. */
api_settlement *api_settlement_new(http_conn *c, const struct prov_call *call,
                                   const store_key *key);
/* The same on generation gen (held by the caller), for a request parsed on it that waited (the
 * response cache's lookup in Redis) while a reload may have come. */
api_settlement *api_settlement_new_on(http_conn *c, srv_gen *gen, const struct prov_call *call,
                                      const store_key *key);
/* Admits call: the rate limits (429 with retry-after), then the hold, and sets the x-ratelimit-*
 * headers; then runs it (proxy_start with to_hub). Takes call and s in every case: a refusal
 * answers and frees them. With a shared state (several instances) the decision is Redis's, and
 * comes later, on the loop (503 when Redis cannot answer). */
void api_admit(http_conn *c, struct prov_call *call, api_to_hub to_hub, api_settlement *s);
/* Ends the request with usage u, billed for model (and provider, for the record): the hold
 * becomes the charge. Writes the USD charged as text into cost (32 bytes; "" when nothing was)
 * and returns the nano-dollars charged. A second end is ignored. */
int64_t api_settle(api_settlement *s, const cfg_model *model, const char *provider,
                   const usage_counts *u, int status, int estimated, char *cost);
/* Ends a request that got no usage: the hold is released and the request recorded with status. */
void api_release(api_settlement *s, const cfg_model *model, const char *provider, int status);
/* Sets the x-ratelimit-* headers of key's current state on the answer (no consumption). */
void api_rate_headers(http_conn *c, const store_key *key);

/* Endpoints. */
void api_chat_completions(http_conn *c, http_request *r);
void api_embeddings(http_conn *c, http_request *r);
void api_messages(http_conn *c, http_request *r);

/* The request in the hub format: a call parsed from call's body rewritten by to_hub, which owns
 * the new body through *body_out. Returns NULL with *why filled (refused, or why->status 0:
 * memory). (messages.c) */
struct prov_call *api_hub_call(const cfg_t *cfg, const struct prov_call *call, api_to_hub to_hub,
                               char **body_out, dialect_refusal *why);
/* POST /v1/messages/count_tokens: the provider's count or the gateway's estimate
 * (count_tokens.c). */
void api_count_tokens(http_conn *c, http_request *r);
void api_responses(http_conn *c, http_request *r);
/* GET (the stored response) and DELETE /v1/responses/{id}, id as the path has it. */
void api_response_one(http_conn *c, http_request *r, ms_str id);
void api_models_list(http_conn *c, http_request *r);
void api_models_get(http_conn *c, http_request *r, ms_str id);
/* GET /metrics (Prometheus's text format) and GET /readyz (metrics.c). */
void metrics_scrape(http_conn *c, http_request *r);
void metrics_readyz(http_conn *c, http_request *r);

#endif
