/*
 * Counters for the metrics: cheap on the thread that counts, readable from any other.
 *
 * Every counter has exactly one writer (the worker thread that owns it), so an increment needs
 * no lock and no atomic read-modify-write: a relaxed load and a relaxed store of the same word,
 * which compile to the plain add a non-atomic counter would be. Another thread (the one serving
 * GET /metrics) reads them with relaxed loads at any time and never makes the writer wait; it
 * may see one counter a few events ahead of another, which a scrape tolerates.
 *
 * Histograms have fixed buckets, in integer nanoseconds, chosen at compile time: an observation
 * is a short scan of the bounds and two increments. The exposition side is a table of series
 * keyed by their label text, so that series counted apart (per worker, per configuration
 * generation, two deployments on one provider) are summed under one name, and helpers for
 * Prometheus's text format.
 */
#ifndef MS_COUNTER_H
#define MS_COUNTER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

typedef _Atomic uint64_t ctr_t;

/* Adds v to c; only c's owning thread may call it. */
static inline void ctr_add(ctr_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* Reads c from any thread. */
static inline uint64_t ctr_get(const ctr_t *c)
{
    return atomic_load_explicit((ctr_t *)c, memory_order_relaxed);
}

/* A histogram's upper bounds (le), in nanoseconds, ascending; +Inf is implicit. */
typedef struct ctr_buckets {
    size_t n;
    const uint64_t *le_ns;
} ctr_buckets;

/* The largest n of a bucket set, and the width of a histogram's counter array: one counter per
 * bound, one for above the last (+Inf alone), and the sum of the observations in nanoseconds. */
#define CTR_BUCKETS_MAX 16
#define CTR_HIST_WIDTH(b) ((b)->n + 2)

/* Request durations and times to first byte: 5 ms to 5 min (CTR_LATENCY_N bounds). */
extern const ctr_buckets ctr_latency;
#define CTR_LATENCY_N 15
/* What the gateway itself adds: 50 us to 1 s (CTR_OVERHEAD_N bounds). */
extern const ctr_buckets ctr_overhead;
#define CTR_OVERHEAD_N 13

/* Counts one observation of ns into h (CTR_HIST_WIDTH(b) counters). */
static inline void ctr_observe(ctr_t *h, const ctr_buckets *b, uint64_t ns)
{
    size_t i = 0;
    while (i < b->n && ns > b->le_ns[i])
        i++;
    ctr_add(&h[i], 1);
    ctr_add(&h[b->n + 1], ns);
}

/* Where a request is counted when it ends, noted by the layer that answers it as it learns more
 * (its counter block, the model, the deployment, when its first byte went out, how long it
 * waited on upstreams) and read back when the request ends. Zero is "nothing known yet": the
 * layer that carries it (the server's request) only zeroes it. */
typedef struct ctr_note {
    void *block;            /* the counter block the indices refer to, or NULL */
    int32_t model;          /* index + 1 in the block; 0: none */
    int32_t slot;           /* index + 1 of the deployment; 0: none */
    uint64_t first_byte_ns; /* monotonic time of a stream's first byte; 0: not a stream */
    uint64_t upstream_ns;   /* time spent waiting on upstreams */
} ctr_note;

/* ---- exposition ---- */

/* Series keyed by their label text (`a="x",b="y"`, "" for none), each with `width` values that
 * add up when the same key comes again. Bounded: at most CTR_TABLE_MAX series. */
#define CTR_TABLE_MAX (1u << 20)

typedef struct ctr_row {
    char *key;
    uint64_t *vals;
} ctr_row;

typedef struct ctr_table {
    size_t width;
    ctr_row *rows;
    size_t n, cap;
    uint32_t *index; /* open addressing: row number + 1, 0 = empty; 2 * cap slots */
} ctr_table;

void ctr_table_init(ctr_table *t, size_t width);
void ctr_table_free(ctr_table *t);
/* Adds vals (width values) to the series key (klen bytes). Returns 0, or -1 (memory, or the
 * table is full). */
int ctr_table_add(ctr_table *t, const char *key, size_t klen, const uint64_t *vals);
/* Adds every series of src to dst (same width). Returns 0 or -1. */
int ctr_table_merge(ctr_table *dst, const ctr_table *src);
/* Orders the series by key (bytewise), so that a scrape reads the same from one time to the
 * next. The table can no longer be added to afterwards (its index is dropped). */
void ctr_table_sort(ctr_table *t);

/* Appends `name="value"` with value escaped as the text format wants (backslash, double quote,
 * newline), after a comma when b is not empty: b holds one series' label text. */
int ctr_label(buf_t *b, const char *name, const char *value, size_t vlen);
/* Appends the exact decimal of v / 10^scale (scale 0..18), trailing zeros trimmed: nanoseconds
 * as seconds, nano-dollars as dollars. */
int ctr_decimal(buf_t *b, uint64_t v, int scale);
/* Appends "# HELP name help\n# TYPE name type\n". */
int ctr_family(buf_t *b, const char *name, const char *type, const char *help);
/* Appends one sample: name{labels} value (labels may be "": no braces), v / 10^scale. */
int ctr_sample(buf_t *b, const char *name, const char *suffix, const char *labels, size_t llen,
               uint64_t v, int scale);
/* Appends a histogram's samples (_bucket with le, _sum in seconds, _count) from the counters
 * vals (CTR_HIST_WIDTH(bk) of them, as ctr_observe fills them, or their sums). */
int ctr_histogram(buf_t *b, const char *name, const char *labels, size_t llen,
                  const ctr_buckets *bk, const uint64_t *vals);

#endif
