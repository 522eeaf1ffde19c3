/*
 * The response cache's in-process backend (rcache.h): per partition (model) a chained hash table
 * over the 32-byte keys and a doubly linked LRU list, under the partition's own mutex, so workers
 * serving different models never wait for each other. The partition table is append-only (a
 * partition is never freed before the cache): a lookup scans the published prefix without a lock,
 * and only the creation of a partition takes the table's mutex.
 *
 * Values are copied in and out under the lock: a hit's bytes belong to the caller, which writes
 * them to its client after the lock is released, and an eviction never frees bytes someone is
 * still sending.
 */
#include "cache/rcache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define RC_BUCKETS_MIN 64

typedef struct rc_ent {
    uint8_t key[RCACHE_KEY_LEN];
    struct rc_ent *hnext;       /* the bucket's chain */
    struct rc_ent *prev, *next; /* the LRU list: head most recent */
    int64_t expires_ms;
    int64_t cost;
    rcache_value v;
} rc_ent;

typedef struct rc_part {
    char name[RCACHE_PART_MAX];
    pthread_mutex_t mu;
    rc_ent **buckets;
    size_t nbuckets, count;
    int64_t bytes;
    rc_ent lru; /* sentinel: lru.next most recent, lru.prev least */
} rc_part;

typedef struct rc_mem {
    pthread_mutex_t mu; /* creation of partitions */
    rc_part *parts[RCACHE_PARTS_MAX];
    atomic_size_t nparts;
} rc_mem;

int64_t rcache_entry_cost(size_t len)
{
    return (int64_t)(sizeof(rc_ent) + len);
}

void rcache_value_free(rcache_value *v)
{
    free(v->data);
    v->data = NULL;
    v->len = 0;
}

static size_t bucket_of(const uint8_t *key, size_t nbuckets)
{
    uint64_t h; /* the key is a SHA-256: any 8 of its bytes are a good hash */
    memcpy(&h, key, sizeof h);
    return (size_t)(h & (nbuckets - 1));
}

static void lru_unlink(rc_ent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push(rc_part *p, rc_ent *e)
{
    e->next = p->lru.next;
    e->prev = &p->lru;
    p->lru.next->prev = e;
    p->lru.next = e;
}

static rc_ent **find_slot(rc_part *p, const uint8_t *key)
{
    rc_ent **s = &p->buckets[bucket_of(key, p->nbuckets)];
    while (*s && memcmp((*s)->key, key, RCACHE_KEY_LEN) != 0)
        s = &(*s)->hnext;
    return s;
}

static void remove_entry(rc_part *p, rc_ent *e)
{
    rc_ent **s = find_slot(p, e->key);
    if (*s == e) *s = e->hnext;
    lru_unlink(e);
    p->count--;
    p->bytes -= e->cost;
    rcache_value_free(&e->v);
    free(e);
}

/* Doubles the table when it holds more entries than buckets; on memory failure the chains just
 * get longer. */
static void maybe_grow(rc_part *p)
{
    if (p->count < p->nbuckets) return;
    size_t n = p->nbuckets * 2;
    rc_ent **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < p->nbuckets; i++) {
        rc_ent *e = p->buckets[i];
        while (e) {
            rc_ent *next = e->hnext;
            size_t j = bucket_of(e->key, n);
            e->hnext = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
}

static rc_part *part_find(rc_mem *m, const char *name)
{
    size_t n = atomic_load_explicit(&m->nparts, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->parts[i]->name, name) == 0) return m->parts[i];
    return NULL;
}

static rc_part *part_new(const char *name)
{
    rc_part *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->buckets = calloc(RC_BUCKETS_MIN, sizeof *p->buckets);
    if (!p->buckets) {
        free(p);
        return NULL;
    }
    p->nbuckets = RC_BUCKETS_MIN;
    ms_copy(p->name, sizeof p->name, name);
    pthread_mutex_init(&p->mu, NULL);
    p->lru.next = p->lru.prev = &p->lru;
    return p;
}

/* The partition called name, made when missing; NULL when the table is full or on memory
 * failure. */
static rc_part *part_get(rc_mem *m, const char *name)
{
    char cut[RCACHE_PART_MAX];
    ms_copy(cut, sizeof cut, name);
    rc_part *p = part_find(m, cut);
    if (p) return p;
    pthread_mutex_lock(&m->mu);
    p = part_find(m, cut);
    size_t n = atomic_load_explicit(&m->nparts, memory_order_relaxed);
    if (!p && n < RCACHE_PARTS_MAX && (p = part_new(cut)) != NULL) {
        m->parts[n] = p;
        atomic_store_explicit(&m->nparts, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&m->mu);
    return p;
}

static int copy_value(rcache_value *dst, const rcache_value *src)
{
    *dst = *src;
    dst->data = malloc(src->len ? src->len : 1);
    if (!dst->data) return -1;
    memcpy(dst->data, src->data, src->len);
    return 0;
}

static int mem_get(void *be, const char *part, const uint8_t key[RCACHE_KEY_LEN], int64_t now_ms,
                   rcache_value *out)
{
    char cut[RCACHE_PART_MAX];
    ms_copy(cut, sizeof cut, part);
    rc_part *p = part_find(be, cut);
    if (!p) return 0;
    int hit = 0;
    pthread_mutex_lock(&p->mu);
    rc_ent *e = *find_slot(p, key);
    if (e && e->expires_ms <= now_ms) {
        remove_entry(p, e);
    } else if (e && copy_value(out, &e->v) == 0) {
        lru_unlink(e);
        lru_push(p, e);
        hit = 1;
    }
    pthread_mutex_unlock(&p->mu);
    return hit;
}

static int mem_put(void *be, const char *part, int64_t max_bytes, const uint8_t key[RCACHE_KEY_LEN],
                   const rcache_value *v, int64_t expires_ms, int64_t now_ms)
{
    int64_t cost = rcache_entry_cost(v->len);
    if (cost > max_bytes || expires_ms <= now_ms) return 0;
    rc_part *p = part_get(be, part);
    if (!p) return 0;
    rc_ent *e = calloc(1, sizeof *e);
    if (!e || copy_value(&e->v, v) != 0) {
        free(e);
        return 0;
    }
    memcpy(e->key, key, RCACHE_KEY_LEN);
    e->expires_ms = expires_ms;
    e->cost = cost;
    pthread_mutex_lock(&p->mu);
    rc_ent *old = *find_slot(p, key);
    if (old) remove_entry(p, old);
    /* the bound may have shrunk since (a reload): evict until the new entry fits */
    while (p->bytes + cost > max_bytes && p->lru.prev != &p->lru)
        remove_entry(p, p->lru.prev);
    rc_ent **s = find_slot(p, key);
    *s = e;
    lru_push(p, e);
    p->count++;
    p->bytes += cost;
    maybe_grow(p);
    pthread_mutex_unlock(&p->mu);
    return 1;
}

static void mem_free(void *be)
{
    rc_mem *m = be;
    size_t n = atomic_load(&m->nparts);
    for (size_t i = 0; i < n; i++) {
        rc_part *p = m->parts[i];
        while (p->lru.next != &p->lru)
            remove_entry(p, p->lru.next);
        pthread_mutex_destroy(&p->mu);
        free(p->buckets);
        free(p);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const rcache_ops mem_ops = {.get = mem_get, .put = mem_put, .free = mem_free};

rcache *rcache_memory_new(void)
{
    rcache *c = calloc(1, sizeof *c);
    rc_mem *m = calloc(1, sizeof *m);
    if (!c || !m) {
        free(c);
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->mu, NULL);
    atomic_init(&m->nparts, 0);
    c->ops = &mem_ops;
    c->be = m;
    return c;
}

void rcache_free(rcache *c)
{
    if (!c) return;
    c->ops->free(c->be);
    free(c);
}

void rcache_memory_stats(rcache *c, const char *part, size_t *entries, int64_t *bytes)
{
    *entries = 0;
    *bytes = 0;
    if (c->ops != &mem_ops) return;
    rc_part *p = part_find(c->be, part);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    *entries = p->count;
    *bytes = p->bytes;
    pthread_mutex_unlock(&p->mu);
}
