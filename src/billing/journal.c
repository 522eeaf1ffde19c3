/*
 * The ledger journal (journal.h): settled usage events that overflowed billing's bounded memory
 * queue, on local disk until the store takes them. Why it exists and who calls what: journal.h
 * and docs/BILLING.md, "Store outages".
 *
 * The file is a sequence of records [magic u32][payload length u32][checksum 8][payload], all
 * little-endian. The checksum is SHA-256 over the length and the payload, truncated: it tells a
 * torn or damaged record from an intact one (a CRC would do as well; libcrypto is already linked,
 * a CRC would be one more library). The payload is the event field by field with a version byte,
 * so the format does not depend on the struct's layout.
 *
 * Offsets: [head, tail) holds the records not consumed; `tail` is where the next append goes and
 * only moves after the append's fdatasync, so a reader never sees a record that is not durable.
 */
#include "billing/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/log.h"

#define JR_MAGIC 0x4A4C534Du /* "MSLJ" on disk */
#define JR_HEADER 16
#define JR_VERSION 1
/* Reads and writes go through a buffer of this size (a multiple of any record). */
#define JR_BLOCK (512u * 1024u)

struct jr {
    pthread_mutex_t mu;
    int fd;
    char *path;
    off_t head, tail;
    uint64_t count;     /* intact records in [head, tail) */
    off_t peek_end;     /* where the last jr_read stopped */
    uint64_t peek_n;    /* and how many events it returned */
    unsigned char *buf; /* JR_BLOCK bytes: one read or write at a time, under mu */
};

/* ---- encoding ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

/* SHA-256 of the length field and the payload, first 8 bytes. */
static int jr_sum(const unsigned char *lenp, const unsigned char *payload, size_t n,
                  unsigned char out[8])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    int ok = x && EVP_DigestInit_ex(x, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(x, lenp, 4) == 1 && EVP_DigestUpdate(x, payload, n) == 1 &&
             EVP_DigestFinal_ex(x, md, &mdlen) == 1 && mdlen >= 8;
    EVP_MD_CTX_free(x);
    if (!ok) return -1;
    memcpy(out, md, 8);
    return 0;
}

/* A string field: a length byte and the bytes (at most cap - 1, the field's NUL excluded). */
static unsigned char *put_str(unsigned char *p, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap - 1);
    *p++ = (unsigned char)n;
    memcpy(p, s, n);
    return p + n;
}

static const unsigned char *get_str(const unsigned char *p, const unsigned char *end, char *s,
                                    size_t cap)
{
    if (p >= end) return NULL;
    size_t n = *p++;
    /* a NUL inside is not what jr_encode writes (it stops at the first): refused like the other
     * values it never writes, rather than read as a shorter string */
    if (n >= cap || (size_t)(end - p) < n || memchr(p, '\0', n)) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return p + n;
}

_Static_assert(JR_HEADER + 1 + sizeof(((store_usage_event *)0)->request_id) +
                       sizeof(((store_usage_event *)0)->model) +
                       sizeof(((store_usage_event *)0)->provider) + 16 * 8 <=
                   JR_RECORD_MAX,
               "JR_RECORD_MAX must hold the largest record");

size_t jr_encode(const store_usage_event *ev, unsigned char *out)
{
    unsigned char *p = out + JR_HEADER;
    *p++ = JR_VERSION;
    p = put_str(p, ev->request_id, sizeof ev->request_id);
    p = put_str(p, ev->model, sizeof ev->model);
    p = put_str(p, ev->provider, sizeof ev->provider);
    const int64_t v[] = {ev->account_id,
                         ev->key_id,
                         ev->usage.input,
                         ev->usage.cached_input,
                         ev->usage.cache_write,
                         ev->usage.cache_write_1h,
                         ev->usage.output,
                         ev->usage.reasoning,
                         ev->charged_nusd,
                         ev->status,
                         ev->estimated,
                         ev->cached,
                         ev->latency_ms,
                         ev->created_at_ms,
                         ev->notice_threshold_nusd,
                         ev->notice_balance_nusd};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++, p += 8)
        put64(p, v[i]);
    size_t plen = (size_t)(p - out) - JR_HEADER;
    put32(out, JR_MAGIC);
    put32(out + 4, (uint32_t)plen);
    if (jr_sum(out + 4, out + JR_HEADER, plen, out + 8) != 0) return 0;
    return JR_HEADER + plen;
}

static int jr_decode(const unsigned char *p, size_t n, store_usage_event *ev)
{
    const unsigned char *end = p + n;
    memset(ev, 0, sizeof *ev);
    if (n < 1 || *p++ != JR_VERSION) return -1;
    if (!(p = get_str(p, end, ev->request_id, sizeof ev->request_id)) ||
        !(p = get_str(p, end, ev->model, sizeof ev->model)) ||
        !(p = get_str(p, end, ev->provider, sizeof ev->provider)))
        return -1;
    if (end - p != 16 * 8) return -1;
    int64_t v[16];
    for (int i = 0; i < 16; i++, p += 8)
        v[i] = get64(p);
    ev->account_id = v[0];
    ev->key_id = v[1];
    ev->usage.input = v[2];
    ev->usage.cached_input = v[3];
    ev->usage.cache_write = v[4];
    ev->usage.cache_write_1h = v[5];
    ev->usage.output = v[6];
    ev->usage.reasoning = v[7];
    ev->charged_nusd = v[8];
    /* ints on the way in: anything else was not written by jr_encode */
    for (int i = 9; i <= 11; i++)
        if (v[i] < INT32_MIN || v[i] > INT32_MAX) return -1;
    ev->status = (int)v[9];
    ev->estimated = (int)v[10];
    ev->cached = (int)v[11];
    ev->latency_ms = v[12];
    ev->created_at_ms = v[13];
    ev->notice_threshold_nusd = v[14];
    ev->notice_balance_nusd = v[15];
    return 0;
}

/* The record at p (n bytes available): 1 and *used when it is intact, 0 when it may be one but
 * needs more bytes than n, -1 when no intact record starts here. */
static int jr_parse(const unsigned char *p, size_t n, store_usage_event *ev, size_t *used)
{
    unsigned char sum[8];
    if (n >= 4 && get32(p) != JR_MAGIC) return -1;
    if (n < JR_HEADER) return 0;
    uint32_t plen = get32(p + 4);
    if (plen == 0 || plen > JR_RECORD_MAX - JR_HEADER) return -1;
    if (n < JR_HEADER + (size_t)plen) return 0;
    if (jr_sum(p + 4, p + JR_HEADER, plen, sum) != 0 || memcmp(sum, p + 8, 8) != 0) return -1;
    if (jr_decode(p + JR_HEADER, plen, ev) != 0) return -1;
    *used = JR_HEADER + plen;
    return 1;
}

/* ---- walking the file ---- */

typedef struct jr_walk_out {
    off_t next;      /* the offset after the last record returned (or damage skipped) */
    off_t good_end;  /* the end of the last intact record (from, when none) */
    uint64_t n;      /* intact records returned */
    uint64_t damage; /* bytes skipped: not an intact record */
} jr_walk_out;

static ssize_t jr_pread_full(int fd, unsigned char *p, size_t n, off_t at)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, at + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads the records of [from, to) in order, at most max (0 = all), giving each intact one to cb
 * (when not NULL) and stepping over bytes that are none (to the next magic). Caller holds mu. */
static int jr_walk(jr_t *j, off_t from, off_t to, uint64_t max,
                   void (*cb)(void *ud, const store_usage_event *ev), void *ud, jr_walk_out *o)
{
    size_t have = 0, p = 0;
    off_t base = from; /* the file offset of buf[0] */
    store_usage_event ev;
    static const unsigned char magic[4] = {0x4D, 0x53, 0x4C, 0x4A};

    memset(o, 0, sizeof *o);
    o->next = o->good_end = from;
    while (max == 0 || o->n < max) {
        size_t used = 0;
        int r = p < have ? jr_parse(j->buf + p, have - p, &ev, &used) : 0;
        if (r == 1) {
            if (cb) cb(ud, &ev);
            p += used;
            o->n++;
            o->next = o->good_end = base + (off_t)p;
            continue;
        }
        if (r == 0) {
            /* more bytes needed: the rest of the buffer goes to the front, then more */
            off_t at = base + (off_t)have;
            ssize_t got = 0;
            if (at < to) {
                memmove(j->buf, j->buf + p, have - p);
                base += (off_t)p;
                have -= p;
                p = 0;
                size_t want = JR_BLOCK - have;
                if ((off_t)want > to - at) want = (size_t)(to - at);
                if ((got = jr_pread_full(j->fd, j->buf + have, want, at)) < 0) return -1;
                have += (size_t)got;
            }
            if (got > 0) continue;
            if (p >= have) {
                o->next = base + (off_t)p;
                break;
            }
            /* the end (of the range, or of the file): what starts at p is not a whole record
             * here, but an intact one may still start inside it (a damaged length made a record
             * claim the bytes of the ones after it): stepped over like any damage, so the walk
             * finds the same records whatever the range's end (jr_open cuts a torn tail) */
        }
        /* not a record: skip to the next magic in the buffer (or keep its last 3 bytes) */
        size_t q = p + 1;
        unsigned char *m = have > q ? memmem(j->buf + q, have - q, magic, sizeof magic) : NULL;
        size_t nq = m ? (size_t)(m - j->buf) : (have > 3 && have - 3 > q ? have - 3 : q);
        o->damage += nq - p;
        p = nq;
        o->next = base + (off_t)p;
    }
    return 0;
}

/* ---- the journal ---- */

static int jr_sync_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) return -1;
    if (slash && n == 0) n = 1;
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

jr_t *jr_open(const char *path, char *err, size_t errlen)
{
    jr_t *j = calloc(1, sizeof *j);
    struct stat sb;
    jr_walk_out o;

    if (!j || !(j->path = strdup(path)) || !(j->buf = malloc(JR_BLOCK))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    j->fd = -1;
    pthread_mutex_init(&j->mu, NULL);
    if (store_mkdirs(path, err, errlen) != 0) goto fail;
    j->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        snprintf(err, errlen, "cannot open the ledger journal %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "the ledger journal %s is in use by another process%s%s", path,
                 errno == EWOULDBLOCK ? "" : ": ", errno == EWOULDBLOCK ? "" : strerror(errno));
        goto fail;
    }
    /* a journal that exists only in a directory entry the disk never saw would vanish */
    if (jr_sync_dir(path) != 0)
        log_warn("billing: could not sync the directory of the ledger journal %s: %s", path,
                 strerror(errno));
    if (fstat(j->fd, &sb) != 0 || jr_walk(j, 0, sb.st_size, 0, NULL, NULL, &o) != 0) {
        snprintf(err, errlen, "cannot read the ledger journal %s: %s", path, strerror(errno));
        goto fail;
    }
    j->count = o.n;
    j->tail = sb.st_size;
    if (o.good_end < sb.st_size) {
        /* a torn tail (a crash during an append) is cut off, so appends follow the last intact
         * record; what it held was never reported as journaled */
        log_warn("billing: the ledger journal %s ends in %jd bytes that are not an intact record "
                 "(an append cut short by a crash); they are ignored",
                 path, (intmax_t)(sb.st_size - o.good_end));
        if (ftruncate(j->fd, o.good_end) == 0 && fdatasync(j->fd) == 0) j->tail = o.good_end;
    }
    if (o.damage > (uint64_t)(sb.st_size - o.good_end))
        log_error("billing: the ledger journal %s has %" PRIu64
                  " damaged bytes between intact records; the records there are lost, the others "
                  "are kept",
                  path, o.damage - (uint64_t)(sb.st_size - o.good_end));
    return j;

fail:
    jr_close(j);
    return NULL;
}

void jr_close(jr_t *j)
{
    if (!j) return;
    if (j->fd >= 0) close(j->fd);
    pthread_mutex_destroy(&j->mu);
    free(j->buf);
    free(j->path);
    free(j);
}

uint64_t jr_count(jr_t *j)
{
    pthread_mutex_lock(&j->mu);
    uint64_t n = j->count;
    pthread_mutex_unlock(&j->mu);
    return n;
}

static int jr_pwrite_full(int fd, const unsigned char *p, size_t n, off_t at)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
        at += w;
    }
    return 0;
}

int jr_append(jr_t *j, const store_usage_event *ev, size_t n, char *err, size_t errlen)
{
    size_t fill = 0;
    int rc = -1;

    pthread_mutex_lock(&j->mu);
    off_t at = j->tail;
    for (size_t i = 0; i < n; i++) {
        if (fill + JR_RECORD_MAX > JR_BLOCK) {
            if (jr_pwrite_full(j->fd, j->buf, fill, at) != 0) goto io;
            at += (off_t)fill;
            fill = 0;
        }
        size_t len = jr_encode(&ev[i], j->buf + fill);
        if (len == 0) {
            snprintf(err, errlen, "computing a checksum failed");
            goto undo;
        }
        fill += len;
    }
    if (fill && jr_pwrite_full(j->fd, j->buf, fill, at) != 0) goto io;
    at += (off_t)fill;
    if (fdatasync(j->fd) != 0) goto io;
    j->tail = at;
    j->count += n;
    rc = 0;
    goto out;
io:
    snprintf(err, errlen, "writing the ledger journal %s: %s", j->path, strerror(errno));
undo:
    /* a partial append must not be read: cut it off (when that fails too, the next append
     * overwrites it from the same offset, and a reader skips what is left past the end) */
    if (ftruncate(j->fd, j->tail) != 0) {
    }
out:
    pthread_mutex_unlock(&j->mu);
    return rc;
}

typedef struct jr_collect {
    store_usage_event *out;
    size_t n;
} jr_collect;

static void jr_collect_cb(void *ud, const store_usage_event *ev)
{
    jr_collect *c = ud;
    c->out[c->n++] = *ev;
}

int jr_read(jr_t *j, store_usage_event *out, size_t max, size_t *n, char *err, size_t errlen)
{
    jr_collect c = {out, 0};
    jr_walk_out o;
    pthread_mutex_lock(&j->mu);
    int rc = max ? jr_walk(j, j->head, j->tail, max, jr_collect_cb, &c, &o) : 0;
    if (rc != 0) {
        snprintf(err, errlen, "reading the ledger journal %s: %s", j->path, strerror(errno));
        j->peek_n = 0;
        j->peek_end = j->head;
    } else if (max) {
        j->peek_n = o.n;
        j->peek_end = o.next;
        if (o.damage)
            log_error("billing: %" PRIu64 " damaged bytes in the ledger journal %s were skipped",
                      o.damage, j->path);
    }
    pthread_mutex_unlock(&j->mu);
    *n = c.n;
    return rc;
}

void jr_consume(jr_t *j)
{
    pthread_mutex_lock(&j->mu);
    j->head = j->peek_end;
    j->count -= j->peek_n <= j->count ? j->peek_n : j->count;
    j->peek_n = 0;
    if (j->count == 0 || j->head >= j->tail) {
        /* everything is in the store: start the file again (a crash that undoes this only makes
         * the next start read committed records again, which the store skips) */
        if (ftruncate(j->fd, 0) != 0 || fdatasync(j->fd) != 0)
            log_warn("billing: could not empty the ledger journal %s: %s", j->path,
                     strerror(errno));
        j->head = j->tail = j->peek_end = 0;
        j->count = 0;
    }
    pthread_mutex_unlock(&j->mu);
}

int jr_scan(jr_t *j, void (*cb)(void *ud, const store_usage_event *ev), void *ud, char *err,
            size_t errlen)
{
    jr_walk_out o;
    pthread_mutex_lock(&j->mu);
    int rc = jr_walk(j, j->head, j->tail, 0, cb, ud, &o);
    if (rc != 0)
        snprintf(err, errlen, "reading the ledger journal %s: %s", j->path, strerror(errno));
    pthread_mutex_unlock(&j->mu);
    return rc;
}
