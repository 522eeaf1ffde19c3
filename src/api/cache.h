/*
 * The exact response cache on the request path (cache.c; docs/OPERATIONS.md, "Response cache"):
 * the lookup the endpoints make after parsing and authentication, and the engine's hooks that
 * keep an answer that ended well. The storage behind it is src/cache/rcache.h.
 */
#ifndef MS_API_CACHE_H
#define MS_API_CACHE_H

#include "api/api.h"
#include "providers/provider.h"

/* The part of api_cache_begin that runs when the cache applies. */
int api_cache_lookup(http_conn *c, const prov_call *call, const store_key *key, char endpoint,
                     ms_str extra, api_cache_req **out);
/* Whether the response cache applies to call (its model's `cache:`, or the request's
 * x-modelswitch-cache header), and if so its lookup. Returns 1 when the request has been answered
 * (a hit; or a refusal: an invalid header, a rate limit), else 0 with *out the cache's part of
 * the request (give it to the settlement context: s->cache), NULL when the cache does not apply.
 * endpoint names the client's API ('c' chat, 'e' embeddings, 'm' Messages, 'r' Responses), extra
 * the request's other bytes its answer depends on (Anthropic's version and beta headers). A
 * request on a model without `cache:` and without the header pays these two tests only. */
static inline int api_cache_begin(http_conn *c, const prov_call *call, const store_key *key,
                                  char endpoint, ms_str extra, api_cache_req **out)
{
    *out = NULL;
    if (!c->req.cache.n && !call->model->cache_ttl_s) return 0;
    return api_cache_lookup(c, call, key, endpoint, extra, out);
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
