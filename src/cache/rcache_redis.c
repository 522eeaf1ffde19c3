/*
 * The response cache's Redis backend (rcache.h; docs/OPERATIONS.md, "Response cache"): used when
 * the instances share a Redis (config `redis:`), so that an answer one instance kept is a hit for
 * every other. One backend per worker, on the worker's asynchronous connection
 * (shared/shared.h, sh_command): a lookup is a GET answered on the worker's loop later, a store is
 * one script sent and never waited for. A Redis that is down, slow or answers nonsense is a miss:
 * the cache never fails a request.
 *
 * Layout, per partition (model) P and entry key K (64 hex digits):
 *   ms:rc:P:K   the value (rcache_encode), expiring with the entry's TTL (PX)
 *   ms:rcs:P    hash: K -> the entry's cost, and "#" -> the partition's total
 *   ms:rcx:P    sorted set: K by its expiry (Redis's clock), so expired entries stop counting
 *   ms:rcu:P    sorted set: K by its last use (the instances' clocks), the LRU order
 * The store script keeps the partition's bound exactly as the in-process backend does: an entry
 * larger than the bound is not kept, and storing one evicts the least recently used until it
 * fits. The three bookkeeping keys expire no earlier than the partition's last entry, so a model
 * no longer used leaves nothing behind. A hit moves its entry to the front of the LRU order (one
 * ZADD, fire and forget).
 */
#include "cache/rcache.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "shared/shared.h"

#define RCR_MAGIC "MSRC"
#define RCR_VERSION 1
#define RCR_HEAD (4 + 1 + 1 + 1 + 1 + 6 * 8)
/* the bookkeeping an entry costs in Redis besides its value: its key, its two sorted-set members
 * and its hash field (each naming it), and Redis's own per-key overhead */
#define RCR_OVERHEAD 400
/* expired entries a store forgets at most (the rest at the next one: they still count till then,
 * so the bound holds, only more tightly) */
#define RCR_PURGE "256"

static const char rcr_put_lua[] =
    "local part, m, v = ARGV[1], ARGV[2], ARGV[3] "
    "local ttl, max, cost, use = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), "
    "tonumber(ARGV[7])\n"
    "local dk, sk, xk, uk = 'ms:rc:' .. part .. ':', 'ms:rcs:' .. part, 'ms:rcx:' .. part, "
    "'ms:rcu:' .. part\n"
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / "
    "1000)\n"
    "local function drop(e) local c = tonumber(redis.call('HGET', sk, e) or '0') "
    "redis.call('HDEL', sk, e) redis.call('ZREM', xk, e) redis.call('ZREM', uk, e) "
    "redis.call('HINCRBY', sk, '#', -c) end\n"
    /* what expired no longer counts (its value is gone already: PX) */
    "for _, e in ipairs(redis.call('ZRANGEBYSCORE', xk, '-inf', now, 'LIMIT', 0, " RCR_PURGE
    ")) do "
    "drop(e) end\n"
    "if redis.call('HEXISTS', sk, m) == 1 then drop(m) end\n"
    "if cost > max then redis.call('DEL', dk .. m) return 0 end\n"
    "while tonumber(redis.call('HGET', sk, '#') or '0') + cost > max do "
    "local old = redis.call('ZRANGE', uk, 0, 0)[1] if not old then break end "
    "redis.call('DEL', dk .. old) drop(old) end\n"
    "redis.call('SET', dk .. m, v, 'PX', ttl)\n"
    "redis.call('ZADD', xk, now + ttl, m) redis.call('ZADD', uk, use, m) "
    "redis.call('HSET', sk, m, cost) redis.call('HINCRBY', sk, '#', cost)\n"
    "for _, k in ipairs({sk, xk, uk}) do if redis.call('PTTL', k) < ttl then "
    "redis.call('PEXPIRE', k, ttl) end end\n"
    "return 1\n";

typedef struct rcr {
    struct sh_worker *w;
} rcr;

/* A lookup in flight: what its answer needs (the LRU touch names the entry). */
typedef struct rcr_get {
    rcr *be;
    rcache_get_cb cb;
    void *ud;
    sh_pending *p;
    char part[RCACHE_PART_MAX];
    char hex[RCACHE_KEY_LEN * 2 + 1];
} rcr_get;

int64_t rcache_redis_cost(size_t len)
{
    return (int64_t)len + RCR_OVERHEAD;
}

static void put_u64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_u64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return v;
}

char *rcache_encode(const rcache_value *v, size_t *len)
{
    size_t ml = strnlen(v->model, sizeof v->model - 1);
    size_t pl = strnlen(v->provider, sizeof v->provider - 1);
    size_t n = RCR_HEAD + ml + pl + v->len;
    char *p = malloc(n);
    if (!p) return NULL;
    memcpy(p, RCR_MAGIC, 4);
    p[4] = RCR_VERSION;
    p[5] = v->stream ? 1 : 0;
    p[6] = (char)ml;
    p[7] = (char)pl;
    const int64_t u[6] = {v->usage.input,          v->usage.cached_input, v->usage.cache_write,
                          v->usage.cache_write_1h, v->usage.output,       v->usage.reasoning};
    for (int i = 0; i < 6; i++)
        put_u64(p + 8 + 8 * i, (uint64_t)u[i]);
    memcpy(p + RCR_HEAD, v->model, ml);
    memcpy(p + RCR_HEAD + ml, v->provider, pl);
    if (v->len) memcpy(p + RCR_HEAD + ml + pl, v->data, v->len);
    *len = n;
    return p;
}

int rcache_decode(const char *p, size_t n, rcache_value *out)
{
    memset(out, 0, sizeof *out);
    if (n < RCR_HEAD || memcmp(p, RCR_MAGIC, 4) != 0 || p[4] != RCR_VERSION) return -1;
    size_t ml = (unsigned char)p[6], pl = (unsigned char)p[7];
    if ((p[5] & ~1) || ml >= sizeof out->model || pl >= sizeof out->provider ||
        n - RCR_HEAD < ml + pl)
        return -1;
    int64_t u[6];
    for (int i = 0; i < 6; i++)
        u[i] = (int64_t)get_u64(p + 8 + 8 * i);
    out->usage = (usage_counts){u[0], u[1], u[2], u[3], u[4], u[5]};
    out->stream = p[5] & 1;
    memcpy(out->model, p + RCR_HEAD, ml);
    memcpy(out->provider, p + RCR_HEAD + ml, pl);
    size_t dl = n - RCR_HEAD - ml - pl;
    out->data = malloc(dl ? dl : 1);
    if (!out->data) return -1;
    memcpy(out->data, p + RCR_HEAD + ml + pl, dl);
    out->len = dl;
    return 0;
}

static void hex_of(const uint8_t *key, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < RCACHE_KEY_LEN; i++) {
        out[2 * i] = d[key[i] >> 4];
        out[2 * i + 1] = d[key[i] & 15];
    }
    out[2 * RCACHE_KEY_LEN] = '\0';
}

/* "<prefix><part>[:<hex>]" into out (sized for the longest). */
static size_t name_of(char *out, size_t n, const char *prefix, const char *part, const char *hex)
{
    int k = hex ? snprintf(out, n, "%s%s:%s", prefix, part, hex)
                : snprintf(out, n, "%s%s", prefix, part);
    return k < 0 ? 0 : (size_t)k < n ? (size_t)k : n - 1;
}

/* A hit: the entry is now the partition's most recently used. */
static void touch(rcr_get *g)
{
    char name[RCACHE_PART_MAX + 16], score[24];
    snprintf(score, sizeof score, "%" PRId64, ms_now_ms());
    const char *argv[] = {"ZADD", name, "XX", score, g->hex};
    size_t lens[] = {4, name_of(name, sizeof name, "ms:rcu:", g->part, NULL), 2, strlen(score),
                     RCACHE_KEY_LEN * 2};
    sh_command(g->be->w, 5, argv, lens, NULL, NULL);
}

static void on_get(void *ud, const struct redisReply *r)
{
    rcr_get *g = ud;
    rcache_value v;
    if (r && r->type == REDIS_REPLY_STRING && rcache_decode(r->str, r->len, &v) == 0) {
        touch(g);
        g->cb(g->ud, &v);
        rcache_value_free(&v);
    } else {
        g->cb(g->ud, NULL); /* nil, an error, a timeout, a value of another version */
    }
    free(g);
}

static void *rcr_get_async(void *be, const char *part, const uint8_t key[RCACHE_KEY_LEN],
                           rcache_get_cb cb, void *ud)
{
    rcr_get *g = malloc(sizeof *g);
    if (!g) return NULL;
    g->be = be;
    g->cb = cb;
    g->ud = ud;
    ms_copy(g->part, sizeof g->part, part);
    hex_of(key, g->hex);
    char name[RCACHE_PART_MAX + 80];
    const char *argv[] = {"GET", name};
    size_t lens[] = {3, name_of(name, sizeof name, "ms:rc:", g->part, g->hex)};
    if (!(g->p = sh_command(((rcr *)be)->w, 2, argv, lens, on_get, g))) {
        free(g);
        return NULL;
    }
    return g;
}

static void rcr_get_cancel(void *be, void *handle)
{
    (void)be;
    rcr_get *g = handle;
    sh_admit_cancel(g->p); /* on_get will not run */
    free(g);
}

static int rcr_put(void *be, const char *part, int64_t max_bytes, const uint8_t key[RCACHE_KEY_LEN],
                   const rcache_value *v, int64_t expires_ms, int64_t now_ms)
{
    size_t n;
    if (expires_ms <= now_ms || rcache_redis_cost(RCR_HEAD + v->len) > max_bytes) return 0;
    char *enc = rcache_encode(v, &n);
    if (!enc) return 0;
    char cut[RCACHE_PART_MAX], hex[RCACHE_KEY_LEN * 2 + 1], ttl[24], max[24], cost[24], use[24];
    ms_copy(cut, sizeof cut, part);
    hex_of(key, hex);
    snprintf(ttl, sizeof ttl, "%" PRId64, expires_ms - now_ms);
    snprintf(max, sizeof max, "%" PRId64, max_bytes);
    snprintf(cost, sizeof cost, "%" PRId64, rcache_redis_cost(n));
    snprintf(use, sizeof use, "%" PRId64, ms_now_ms());
    const char *argv[] = {"EVAL", rcr_put_lua, "0", cut, hex, enc, ttl, max, cost, use};
    size_t lens[] = {4,
                     sizeof rcr_put_lua - 1,
                     1,
                     strlen(cut),
                     sizeof hex - 1,
                     n,
                     strlen(ttl),
                     strlen(max),
                     strlen(cost),
                     strlen(use)};
    sh_command(((rcr *)be)->w, 10, argv, lens, NULL, NULL);
    free(enc);
    return 1;
}

static void rcr_free(void *be)
{
    free(be);
}

static const rcache_ops redis_ops = {
    .put = rcr_put, .free = rcr_free, .get_async = rcr_get_async, .get_cancel = rcr_get_cancel};

rcache *rcache_redis_new(struct sh_worker *w)
{
    rcache *c = calloc(1, sizeof *c);
    rcr *r = calloc(1, sizeof *r);
    if (!c || !r) {
        free(c);
        free(r);
        return NULL;
    }
    r->w = w;
    c->ops = &redis_ops;
    c->be = r;
    return c;
}
