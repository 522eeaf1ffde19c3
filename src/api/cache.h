/*
 * The exact response cache on the request path (cache.c; docs/OPERATIONS.md, "Response cache"):
 * the lookup the endpoints make after parsing and authentication, and the engine's hooks that
 * keep an answer that ended well. The storage behind it is src/cache/rcache.h.
 */
#ifndef MS_API_CACHE_H
#define MS_API_CACHE_H

#include "api/api.h"
#include "providers/provider.h"

/* What an endpoint's request runs after the cache (a miss, or a request the cache does not apply
 * to): how to make its hub form, and the endpoint's hooks on its settlement context. */
typedef struct api_next {
    api_to_hub to_hub;
    /* Sets the endpoint's hooks on s before admission (the Responses API's keep), NULL for none.
     * Returns 0, or -1 after answering. arg: a view into the request (it outlives a lookup). */
    int (*hooks)(http_conn *c, api_settlement *s, ms_str arg);
    ms_str arg;
} api_next;

/* The request's run: its settlement context on generation gen (the one call was parsed on), the
 * cache's part cr (NULL: none), the endpoint's hooks, then admission (api_admit) and the proxy.
 * Takes call and cr in every case. */
void api_run(http_conn *c, srv_gen *gen, prov_call *call, const store_key *key,
             const api_next *next, api_cache_req *cr);
/* The part of api_cache_serve that runs when the cache applies. */
void api_cache_lookup(http_conn *c, prov_call *call, const store_key *key, char endpoint,
                      ms_str extra, const api_next *next);
/* Serves a parsed request: from the response cache when it applies (its model's `cache:`, or the
 * request's x-modelswitch-cache header) and holds an identical request's answer (a hit, answered
 * and recorded here), else api_run with the cache's part of the request (a miss: the engine keeps
 * the answer). With the in-process backend all of it happens before this returns; with the Redis
 * one (config `redis:`) the lookup goes out on the worker's connection and the request goes on
 * when Redis answers (an error or a timeout is a miss; a client that leaves meanwhile ends it).
 * Takes call in every case; key and next are copied. endpoint names the client's API ('c' chat,
 * 'e' embeddings, 'm' Messages, 'r' Responses), extra the request's other bytes its answer
 * depends on (Anthropic's version and beta headers). A request on a model without `cache:` and
 * without the header pays these two tests only. */
static inline void api_cache_serve(http_conn *c, prov_call *call, const store_key *key,
                                   char endpoint, ms_str extra, const api_next *next)
{
    if (!c->req.cache.n && !call->model->cache_ttl_s)
        return api_run(c, c->w->gen, call, key, next, NULL);
    api_cache_lookup(c, call, key, endpoint, extra, next);
}
/* A stream's bytes as the client got them (the engine calls it for each write). */
void api_cache_tee(api_cache_req *cr, const char *data, size_t n);
/* A whole answer ended well: keeps body (the client's bytes) with its usage, the model and the
 * provider that answered. */
void api_cache_store_whole(api_cache_req *cr, ms_str body, const usage_counts *u, const char *model,
                           const char *provider);
/* A stream ended well: keeps the bytes teed so far, whose last tail_len bytes (the dialect's end
 * of the stream) carry the cost text cost, written as 0 in what is kept; not kept when the cost
 * cannot be found there exactly. */
void api_cache_store_stream(api_cache_req *cr, const char *cost, size_t tail_len,
                            const usage_counts *u, const char *model, const char *provider);
/* A cache hit's rate limits: one request, no tokens (429 sent and -1 when refused). */
int api_admit_hit(http_conn *c, const prov_call *call, const store_key *key);
/* A cache hit's usage record: charged 0, status 200, cached, with the original answer's usage. */
void api_settle_hit(http_conn *c, const store_key *key, const char *model, const char *provider,
                    const usage_counts *u);

#endif
