/*
 * The exact response cache on the request path (docs/OPERATIONS.md, "Response cache"). A model
 * with `cache:` in its config, or a request with `x-modelswitch-cache: ttl=N`, has its answers
 * kept: an identical request (same account, same client API, same model, same stream flag,
 * byte-identical body, and for Anthropic's API the same version and beta headers) is answered
 * from memory with the exact bytes the first client got, billed 0 and recorded as a cached usage
 * row, and touches no provider. Keys are SHA-256 over those parts, the account's id first, so an
 * answer is never shared across accounts.
 *
 * The lookup runs after parsing and authentication and before the rate limits and the hold: a hit
 * places no hold (it costs nothing) and counts one request, no tokens, against the limits. A miss
 * gives the settlement context its part (api_cache_req): the engine copies a stream's bytes into
 * it as they go out, and stores an answer that ended well (2xx, complete, client still there);
 * the cost the engine spliced into a stream's end is written as 0 in what is kept, so a hit shows
 * cost 0 everywhere. The storage is src/cache/rcache.h, one instance shared by every worker.
 */
#include "api/cache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/rcache.h"
#include "common/util.h"

#define CACHE_HDR_TTL_MAX_S 86400 /* the most a request's ttl=N asks for; more is capped */

struct api_cache_req {
    rcache *rc; /* the backend it was looked up in (a worker's Redis one stores on that worker) */
    uint8_t key[RCACHE_KEY_LEN];
    char part[RCACHE_PART_MAX]; /* the partition: the requested model */
    int64_t ttl_ms;
    int64_t max_bytes; /* the partition's bound */
    buf_t capture;     /* a stream's bytes, bounded by max_bytes */
    int over;          /* the stream outgrew the bound: not kept */
};

static rcache *g_cache;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void cache_init(void)
{
    g_cache = rcache_memory_new();
}

/* The process's cache (made on first use; lives until exit), or NULL on memory failure. */
static rcache *shared_cache(void)
{
    pthread_once(&g_once, cache_init);
    return g_cache;
}

static int64_t now_ms(void)
{
    return (int64_t)(ms_loop_mono_ns() / 1000000);
}

/* The header's value: "ttl=N" (N >= 1 seconds, capped) sets *ttl_s; "bypass" sets it to 0.
 * Returns 0, or -1 when the value is neither. */
static int parse_header(ms_str v, int64_t *ttl_s)
{
    while (v.n && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t'))
        v.n--;
    if (v.n == 6 && strncasecmp(v.p, "bypass", 6) == 0) {
        *ttl_s = 0;
        return 0;
    }
    if (v.n < 5 || v.n > 4 + 18 || strncasecmp(v.p, "ttl=", 4) != 0) return -1;
    int64_t n = 0;
    for (size_t i = 4; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return -1;
        n = n * 10 + (v.p[i] - '0');
    }
    if (n < 1) return -1;
    *ttl_s = n > CACHE_HDR_TTL_MAX_S ? CACHE_HDR_TTL_MAX_S : n;
    return 0;
}

static int digest_part(EVP_MD_CTX *x, const void *p, size_t n)
{
    uint64_t len = n; /* each part length-prefixed: no two splits hash alike */
    return EVP_DigestUpdate(x, &len, sizeof len) == 1 && EVP_DigestUpdate(x, p, n) == 1 ? 0 : -1;
}

static int make_key(const prov_call *call, const store_key *key, char endpoint, ms_str extra,
                    uint8_t out[RCACHE_KEY_LEN])
{
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    unsigned int len = 0;
    int64_t account = key->account_id;
    char flags[2] = {endpoint, call->stream ? 's' : 'w'};
    const char *model = call->model->name;
    int rc = !x || EVP_DigestInit_ex(x, EVP_sha256(), NULL) != 1 ||
                     digest_part(x, &account, sizeof account) ||
                     digest_part(x, flags, sizeof flags) || digest_part(x, model, strlen(model)) ||
                     digest_part(x, extra.p, extra.n) ||
                     digest_part(x, call->body.p, call->body.n) ||
                     EVP_DigestFinal_ex(x, out, &len) != 1 || len != RCACHE_KEY_LEN
                 ? -1
                 : 0;
    EVP_MD_CTX_free(x);
    return rc;
}

/* Answers a hit: its bytes as they were kept, billed 0, with the answer headers a miss has and
 * x-modelswitch-cache: hit. */
static void answer_hit(http_conn *c, const prov_call *call, const store_key *key, rcache_value *v)
{
    if (api_admit_hit(c, call, key) != 0) return;
    api_settle_hit(c, key, v->model, v->provider, &v->usage);
    http_request *r = &c->req;
    ms_copy(r->log_provider, sizeof r->log_provider, v->provider);
    r->prompt_tokens = usage_prompt(&v->usage);
    r->completion_tokens = v->usage.output;
    char h[512];
    snprintf(h, sizeof h,
             "x-modelswitch-model: %s\r\nx-modelswitch-provider: %s\r\nx-modelswitch-cost: 0\r\n"
             "x-modelswitch-cache: hit\r\n%s",
             v->model, v->provider, v->stream ? "cache-control: no-cache\r\n" : "");
    if (v->stream) {
        /* replayed as a stream: every event at once */
        http_stream_start(c, 200, "text/event-stream", h);
        http_stream_write(c, v->data, v->len);
        http_stream_end(c);
        return;
    }
    http_respond(c, 200, "application/json", h, v->data, v->len, 1);
    v->data = NULL; /* the response owns it */
    v->len = 0;
}

void api_run(http_conn *c, srv_gen *gen, prov_call *call, const store_key *key,
             const api_next *next, api_cache_req *cr)
{
    /* nothing goes upstream before the rate limits and the worst case are covered */
    api_settlement *s = api_settlement_new_on(c, gen, call, key);
    if (!s) {
        api_cache_req_free(cr);
        prov_call_free(call);
        return;
    }
    s->cache = cr;
    if (next->hooks && next->hooks(c, s, next->arg) != 0) {
        api_settlement_free(s);
        prov_call_free(call);
        return;
    }
    api_admit(c, call, next->to_hub, s);
}

/* A lookup in Redis in flight: what the request needs to go on when it is answered. */
typedef struct cache_wait {
    http_conn *c;
    srv_gen *gen; /* held: call was parsed on it, and a reload may come meanwhile */
    prov_call *call;
    store_key key;
    api_next next;
    api_cache_req *cr; /* the miss's part, ready */
    void *handle;
} cache_wait;

static void wait_free(cache_wait *cw)
{
    srv_gen_release(cw->gen);
    free(cw);
}

static void on_lookup(void *ud, rcache_value *v)
{
    cache_wait *cw = ud;
    http_conn *c = cw->c;
    if (c->handler.ctx == cw) c->handler = (http_handler){0};
    if (v) {
        answer_hit(c, cw->call, &cw->key, v);
        api_cache_req_free(cw->cr);
        prov_call_free(cw->call);
    } else {
        api_run(c, cw->gen, cw->call, &cw->key, &cw->next, cw->cr);
    }
    wait_free(cw);
}

/* The client went away while Redis was asked: nothing ran, nothing is owed. */
static int lookup_abort(http_conn *c, void *ctx)
{
    (void)c;
    cache_wait *cw = ctx;
    cw->cr->rc->ops->get_cancel(cw->cr->rc->be, cw->handle);
    api_cache_req_free(cw->cr);
    prov_call_free(cw->call);
    wait_free(cw);
    return 0;
}

/* The Redis backend: the request goes on in on_lookup (at once, as a miss, if Redis cannot be
 * asked now). */
static void lookup_async(http_conn *c, prov_call *call, const store_key *key, const api_next *next,
                         api_cache_req *cr)
{
    cache_wait *cw = malloc(sizeof *cw);
    if (!cw) return api_run(c, c->w->gen, call, key, next, cr);
    *cw = (cache_wait){c, srv_gen_hold(c->w->gen), call, *key, *next, cr, NULL};
    rcache *rc = cr->rc;
    cw->handle = rc->ops->get_async(rc->be, cr->part, cr->key, on_lookup, cw);
    if (!cw->handle) {
        api_run(c, cw->gen, call, key, next, cr);
        wait_free(cw);
        return;
    }
    c->handler = (http_handler){.ctx = cw, .abort = lookup_abort, .drained = NULL};
}

void api_cache_lookup(http_conn *c, prov_call *call, const store_key *key, char endpoint,
                      ms_str extra, const api_next *next)
{
    const cfg_model *m = call->model;
    int64_t ttl_s = m->cache_ttl_s;
    if (c->req.cache.n && parse_header(c->req.cache, &ttl_s) != 0) {
        http_error(c, 400, "invalid_request_error", "invalid_request", NULL,
                   "The x-modelswitch-cache header must be 'ttl=N' (seconds, N >= 1) or "
                   "'bypass'.",
                   -1);
        prov_call_free(call);
        return;
    }
    rcache *rc = api_worker_of(c->w)->rc;
    if (!rc) rc = shared_cache();
    uint8_t k[RCACHE_KEY_LEN];
    if (ttl_s <= 0 || !rc || make_key(call, key, endpoint, extra, k) != 0)
        return api_run(c, c->w->gen, call, key, next, NULL); /* bypass */
    rcache_value v;
    if (!rcache_is_async(rc) && rcache_get(rc, m->name, k, now_ms(), &v)) {
        answer_hit(c, call, key, &v);
        rcache_value_free(&v);
        prov_call_free(call);
        return;
    }
    api_cache_req *cr = calloc(1, sizeof *cr);
    if (!cr) return api_run(c, c->w->gen, call, key, next, NULL); /* not cached, served */
    memcpy(cr->key, k, sizeof k);
    ms_copy(cr->part, sizeof cr->part, m->name);
    cr->rc = rc;
    cr->ttl_ms = ttl_s * 1000;
    cr->max_bytes = m->cache_max_bytes;
    if (call->stream) buf_init(&cr->capture, (size_t)cr->max_bytes);
    if (rcache_is_async(rc)) return lookup_async(c, call, key, next, cr);
    api_run(c, c->w->gen, call, key, next, cr);
}

void api_cache_req_free(api_cache_req *cr)
{
    if (!cr) return;
    buf_free(&cr->capture);
    free(cr);
}

void api_cache_tee(api_cache_req *cr, const char *data, size_t n)
{
    if (cr->over) return;
    if (buf_append(&cr->capture, data, n) != 0) {
        cr->over = 1; /* larger than the model's bound: it could not be kept anyway */
        buf_free(&cr->capture);
    }
}

static void put(api_cache_req *cr, char *data, size_t len, int stream, const usage_counts *u,
                const char *model, const char *provider)
{
    rcache *rc = cr->rc;
    rcache_value v = {.data = data, .len = len, .stream = stream, .usage = *u};
    ms_copy(v.model, sizeof v.model, model);
    ms_copy(v.provider, sizeof v.provider, provider);
    int64_t now = now_ms();
    rcache_put(rc, cr->part, cr->max_bytes, cr->key, &v, now + cr->ttl_ms, now);
}

void api_cache_store_whole(api_cache_req *cr, ms_str body, const usage_counts *u, const char *model,
                           const char *provider)
{
    put(cr, (char *)body.p, body.n, 0, u, model, provider);
}

/* The last "cost":<cost> in tail, followed by the end of the number, or NULL. */
static const char *find_cost(const char *tail, size_t n, const char *cost, size_t cl)
{
    const char *found = NULL;
    for (const char *p = tail; (p = memmem(p, n - (size_t)(p - tail), "\"cost\":", 7)) != NULL;
         p += 7) {
        const char *v = p + 7;
        size_t left = n - (size_t)(v - tail);
        if (left > cl && memcmp(v, cost, cl) == 0 && (v[cl] == ',' || v[cl] == '}')) found = v;
    }
    return found;
}

void api_cache_store_stream(api_cache_req *cr, const char *cost, size_t tail_len,
                            const usage_counts *u, const char *model, const char *provider)
{
    if (cr->over || tail_len > cr->capture.len) return;
    char *all = cr->capture.data;
    size_t len = cr->capture.len, cl = cost ? strlen(cost) : 0;
    const char *tail = all + len - tail_len;
    if (!cl || (cl == 1 && cost[0] == '0')) {
        put(cr, all, len, 1, u, model, provider); /* nothing charged: nothing to hide */
        return;
    }
    const char *at = find_cost(tail, tail_len, cost, cl);
    if (!at) {
        /* the cost must not be anywhere else either: the client did not ask for usage */
        if (!memmem(tail, tail_len, "\"cost\":", 7)) put(cr, all, len, 1, u, model, provider);
        return;
    }
    /* the same bytes with the cost written as 0 */
    size_t off = (size_t)(at - all);
    char *kept = malloc(len - cl + 1);
    if (!kept) return;
    memcpy(kept, all, off);
    kept[off] = '0';
    memcpy(kept + off + 1, at + cl, len - off - cl);
    put(cr, kept, len - cl + 1, 1, u, model, provider);
    free(kept);
}
