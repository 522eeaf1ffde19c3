/*
 * The exact response cache's storage (docs/OPERATIONS.md, "Response cache"): answers kept by a
 * 32-byte key (SHA-256 of what makes two requests identical; api/cache.c computes it) in
 * partitions, one per model, each with its own byte bound, so that one model's traffic cannot
 * evict another's. The interface is a table of operations so that a shared backend can stand in
 * for the in-process one: the in-process backend (rcache_memory_new) is a hash table and an LRU
 * list per partition, under the partition's mutex, shared by every worker; the Redis backend
 * (rcache_redis_new, rcache_redis.c), used when several instances share a Redis, is one per
 * worker, on the worker's connection, and its lookups are asynchronous (get_async): a worker's
 * loop never waits for Redis.
 *
 * Every bound is hard: an entry larger than its partition's bound is not kept, and an insert
 * evicts the least recently used entries of its partition until it fits. Expired entries are
 * never returned.
 */
#ifndef MS_RCACHE_H
#define MS_RCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/usage.h"

#define RCACHE_KEY_LEN 32
#define RCACHE_PART_MAX 128 /* a partition's name (a model name) is cut to this */
#define RCACHE_PARTS_MAX 1024

/* What a hit answers with: the exact bytes the client gets (a whole answer's body, or a stream's
 * whole SSE byte sequence with the cost already written as 0), and what its usage row records. */
typedef struct rcache_value {
    char *data; /* owned (malloc'd) */
    size_t len;
    int stream;         /* data is an SSE byte sequence */
    usage_counts usage; /* the original answer's usage */
    char model[128];    /* the model that answered (a fallback's name when one did) */
    char provider[64];  /* the provider that answered */
} rcache_value;

/* An asynchronous lookup's answer: v (the callee's; take v->data by setting it NULL) on a hit,
 * NULL on a miss, an error or a timeout. */
typedef void (*rcache_get_cb)(void *ud, rcache_value *v);

typedef struct rcache_ops {
    /* Synchronous backends (in-process). 1: a live entry of key in partition part; *out is filled
     * with a copy the caller owns (rcache_value_free). 0: none. */
    int (*get)(void *be, const char *part, const uint8_t key[RCACHE_KEY_LEN], int64_t now_ms,
               rcache_value *out);
    /* Keeps a copy of v under key until expires_ms, within part_max_bytes for the partition.
     * Returns 1 kept, 0 not kept (larger than the bound, too many partitions, memory). */
    int (*put)(void *be, const char *part, int64_t part_max_bytes,
               const uint8_t key[RCACHE_KEY_LEN], const rcache_value *v, int64_t expires_ms,
               int64_t now_ms);
    void (*free)(void *be);
    /* Asynchronous backends (Redis; get is NULL): starts the lookup; cb runs once, later, on the
     * loop of the worker that owns the backend, unless get_cancel came first. Returns a handle,
     * or NULL when the lookup cannot start (a miss: cb will not run). */
    void *(*get_async)(void *be, const char *part, const uint8_t key[RCACHE_KEY_LEN],
                       rcache_get_cb cb, void *ud);
    void (*get_cancel)(void *be, void *handle);
} rcache_ops;

typedef struct rcache {
    const rcache_ops *ops;
    void *be;
} rcache;

/* The in-process backend. NULL on memory failure. */
rcache *rcache_memory_new(void);
void rcache_free(rcache *c);

/* The Redis backend of one worker, on its shared-state connection (shared/shared.h; w outlives
 * it). put is fire and forget; the bound is kept per partition in Redis (rcache_redis.c). */
struct sh_worker;
rcache *rcache_redis_new(struct sh_worker *w);

/* Whether c's lookups are asynchronous (get_async instead of get). */
static inline int rcache_is_async(const rcache *c)
{
    return c->ops->get == NULL;
}

static inline int rcache_get(rcache *c, const char *part, const uint8_t key[RCACHE_KEY_LEN],
                             int64_t now_ms, rcache_value *out)
{
    return c->ops->get(c->be, part, key, now_ms, out);
}

static inline int rcache_put(rcache *c, const char *part, int64_t part_max_bytes,
                             const uint8_t key[RCACHE_KEY_LEN], const rcache_value *v,
                             int64_t expires_ms, int64_t now_ms)
{
    return c->ops->put(c->be, part, part_max_bytes, key, v, expires_ms, now_ms);
}

void rcache_value_free(rcache_value *v);

/* The bytes an entry of len data bytes counts against its partition's bound (its bookkeeping
 * included), for callers that decide whether an answer can fit at all. */
int64_t rcache_entry_cost(size_t len);

/* The Redis backend's value format (exposed for its unit test): a versioned header (magic, version,
 * stream flag, usage counts, model, provider) then the bytes. encode returns a malloc'd copy (NULL
 * on memory failure); decode returns 0 with *out owning a copy of the data, or -1 for anything
 * that is not a value of this version (another version's entry is a miss, never a crash). */
char *rcache_encode(const rcache_value *v, size_t *len);
int rcache_decode(const char *p, size_t n, rcache_value *out);
/* What an entry of len encoded bytes counts against its partition's bound in Redis. */
int64_t rcache_redis_cost(size_t len);

/* Statistics of a partition of the in-process backend (tests): entries and bytes. */
void rcache_memory_stats(rcache *c, const char *part, size_t *entries, int64_t *bytes);

#endif
