/*
 * Counters, fixed-bucket histograms and Prometheus's text format (see counter.h). The table and
 * the formatting run when metrics are read, never on the path of a request.
 */
#include "common/counter.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MS_(x) ((uint64_t)(x)*1000000u) /* milliseconds in nanoseconds */
#define US_(x) ((uint64_t)(x)*1000u)    /* microseconds in nanoseconds */

static const uint64_t latency_le[] = {MS_(5),     MS_(10),    MS_(25),    MS_(50),     MS_(100),
                                      MS_(250),   MS_(500),   MS_(1000),  MS_(2500),   MS_(5000),
                                      MS_(10000), MS_(30000), MS_(60000), MS_(120000), MS_(300000)};
static const uint64_t overhead_le[] = {US_(50),   US_(100), US_(250), US_(500), MS_(1),
                                       US_(2500), MS_(5),   MS_(10),  MS_(25),  MS_(50),
                                       MS_(100),  MS_(250), MS_(1000)};

_Static_assert(sizeof latency_le / sizeof *latency_le == CTR_LATENCY_N, "counter.h's count");
_Static_assert(sizeof overhead_le / sizeof *overhead_le == CTR_OVERHEAD_N, "counter.h's count");
_Static_assert(CTR_LATENCY_N <= CTR_BUCKETS_MAX && CTR_OVERHEAD_N <= CTR_BUCKETS_MAX, "bound");

const ctr_buckets ctr_latency = {sizeof latency_le / sizeof *latency_le, latency_le};
const ctr_buckets ctr_overhead = {sizeof overhead_le / sizeof *overhead_le, overhead_le};

/* ---- the table ---- */

void ctr_table_init(ctr_table *t, size_t width)
{
    memset(t, 0, sizeof *t);
    t->width = width;
}

void ctr_table_free(ctr_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->rows[i].key);
        free(t->rows[i].vals);
    }
    free(t->rows);
    free(t->index);
    ctr_table_init(t, t->width);
}

static uint32_t key_hash(const char *k, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

/* The index slot of key: where it is, or the empty slot where it would go. */
static size_t find_slot(const ctr_table *t, const char *key, size_t klen)
{
    size_t mask = 2 * t->cap - 1, i = key_hash(key, klen) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t r = t->index[i];
        if (r == 0) return i;
        const char *k = t->rows[r - 1].key;
        if (strlen(k) == klen && memcmp(k, key, klen) == 0) return i;
    }
}

static int grow(ctr_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    if (cap > CTR_TABLE_MAX) return -1;
    ctr_row *rows = realloc(t->rows, cap * sizeof *rows);
    if (!rows) return -1;
    t->rows = rows;
    uint32_t *index = calloc(2 * cap, sizeof *index);
    if (!index) return -1;
    free(t->index);
    t->index = index;
    t->cap = cap;
    for (size_t r = 0; r < t->n; r++) {
        const char *k = t->rows[r].key;
        t->index[find_slot(t, k, strlen(k))] = (uint32_t)(r + 1);
    }
    return 0;
}

int ctr_table_add(ctr_table *t, const char *key, size_t klen, const uint64_t *vals)
{
    if (t->n == t->cap && grow(t) != 0) return -1;
    if (!t->index) return -1; /* sorted: read-only */
    size_t s = find_slot(t, key, klen);
    ctr_row *row;
    if (t->index[s]) {
        row = &t->rows[t->index[s] - 1];
    } else {
        char *k = malloc(klen + 1);
        uint64_t *v = calloc(t->width, sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return -1;
        }
        memcpy(k, key, klen);
        k[klen] = '\0';
        row = &t->rows[t->n++];
        row->key = k;
        row->vals = v;
        t->index[s] = (uint32_t)t->n;
    }
    for (size_t i = 0; i < t->width; i++)
        row->vals[i] += vals[i];
    return 0;
}

int ctr_table_merge(ctr_table *dst, const ctr_table *src)
{
    if (dst->width != src->width) return -1;
    for (size_t i = 0; i < src->n; i++)
        if (ctr_table_add(dst, src->rows[i].key, strlen(src->rows[i].key), src->rows[i].vals))
            return -1;
    return 0;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const ctr_row *)a)->key, ((const ctr_row *)b)->key);
}

void ctr_table_sort(ctr_table *t)
{
    free(t->index);
    t->index = NULL;
    if (t->n > 1) qsort(t->rows, t->n, sizeof *t->rows, row_cmp);
}

/* ---- the text format ---- */

int ctr_label(buf_t *b, const char *name, const char *value, size_t vlen)
{
    int rc = b->len ? buf_append(b, ",", 1) : 0;
    rc |= buf_appends(b, name);
    rc |= buf_append(b, "=\"", 2);
    size_t from = 0;
    for (size_t i = 0; i < vlen; i++) {
        const char *esc = value[i] == '\\'   ? "\\\\"
                          : value[i] == '"'  ? "\\\""
                          : value[i] == '\n' ? "\\n"
                                             : NULL;
        if (!esc) continue;
        rc |= buf_append(b, value + from, i - from);
        rc |= buf_appends(b, esc);
        from = i + 1;
    }
    rc |= buf_append(b, value + from, vlen - from);
    rc |= buf_append(b, "\"", 1);
    return rc;
}

int ctr_decimal(buf_t *b, uint64_t v, int scale)
{
    char d[40];
    /* ms_format_decimal takes an int64: counters this large do not happen, but must not wrap */
    if (v > (uint64_t)INT64_MAX) v = (uint64_t)INT64_MAX;
    if (!ms_format_decimal((int64_t)v, scale, d, sizeof d)) return -1;
    return buf_appends(b, d);
}

int ctr_family(buf_t *b, const char *name, const char *type, const char *help)
{
    int rc = buf_appends(b, "# HELP ");
    rc |= buf_appends(b, name);
    rc |= buf_append(b, " ", 1);
    rc |= buf_appends(b, help);
    rc |= buf_appends(b, "\n# TYPE ");
    rc |= buf_appends(b, name);
    rc |= buf_append(b, " ", 1);
    rc |= buf_appends(b, type);
    rc |= buf_append(b, "\n", 1);
    return rc;
}

static int sample_head(buf_t *b, const char *name, const char *suffix, const char *labels,
                       size_t llen, const char *extra)
{
    int rc = buf_appends(b, name);
    if (suffix) rc |= buf_appends(b, suffix);
    if (llen || extra) {
        rc |= buf_append(b, "{", 1);
        rc |= buf_append(b, labels, llen);
        if (extra) {
            if (llen) rc |= buf_append(b, ",", 1);
            rc |= buf_appends(b, extra);
        }
        rc |= buf_append(b, "}", 1);
    }
    rc |= buf_append(b, " ", 1);
    return rc;
}

int ctr_sample(buf_t *b, const char *name, const char *suffix, const char *labels, size_t llen,
               uint64_t v, int scale)
{
    int rc = sample_head(b, name, suffix, labels, llen, NULL);
    rc |= ctr_decimal(b, v, scale);
    rc |= buf_append(b, "\n", 1);
    return rc;
}

int ctr_histogram(buf_t *b, const char *name, const char *labels, size_t llen,
                  const ctr_buckets *bk, const uint64_t *vals)
{
    uint64_t cum = 0;
    int rc = 0;
    char le[48];
    for (size_t i = 0; i <= bk->n; i++) {
        cum += vals[i];
        if (i < bk->n) {
            char d[32];
            ms_format_decimal((int64_t)bk->le_ns[i], 9, d, sizeof d);
            buf_t lb;
            buf_init_with(&lb, le, sizeof le, sizeof le);
            rc |= ctr_label(&lb, "le", d, strlen(d));
            rc |= buf_append(&lb, "", 1); /* the NUL: le stays a C string */
        } else {
            ms_copy(le, sizeof le, "le=\"+Inf\"");
        }
        rc |= sample_head(b, name, "_bucket", labels, llen, le);
        rc |= ctr_decimal(b, cum, 0);
        rc |= buf_append(b, "\n", 1);
    }
    rc |= ctr_sample(b, name, "_sum", labels, llen, vals[bk->n + 1], 9);
    rc |= ctr_sample(b, name, "_count", labels, llen, cum, 0);
    return rc;
}
