/*
 * A SQLite VFS (a shim over the default one) that writes the frames of a WAL transaction with
 * one system call. store/sqlite.c opens every connection through it.
 *
 * Why: SQLite writes each WAL frame as two pwrite(2)s, its 24-byte header then its page. A ledger
 * commit of a busy gateway's last 10 ms (~280 requests) is ~24 frames, so ~48 calls, and on the
 * virtual machines this gateway is measured on a call costs more than the copy it makes: 25
 * frames written as 50 pwrites took ~93 µs of CPU, as one ~8 µs (docs/PERFORMANCE.md, round 16).
 * A transaction's frames are contiguous in the WAL, so they can be gathered and written at once.
 *
 * Why holding them back is safe: no one reads a frame before the transaction that wrote it
 * commits. Other connections read only frames up to the committed end published in the
 * wal-index (shared memory); this connection reads its own through xRead, which writes what is
 * held first. A transaction commits by writing its commit frame (the only frame whose header has
 * a non-zero second word, the database size after the commit) and then publishing the new end in
 * shared memory, with no VFS call in between (synchronous=NORMAL does not sync the WAL). So the
 * xWrite that completes a commit frame (its page; or its header written again when SQLite
 * rewrites the checksums of frames it overwrote in place, which it does after the commit frame)
 * writes everything held, and returns any error to SQLite, which then rolls the transaction
 * back: a commit is published only after its frames are in the file, as without this layer.
 *
 * A write that fails (one of the held run, or a direct one) makes every later write to that WAL
 * fail, until SQLite releases the WAL write lock (the transaction ended, rolled back): a frame
 * that SQLite believes written but is not must never become part of a commit. Frames still held
 * at that release belong to a rolled-back transaction and are dropped.
 *
 * Second line: if a commit's frames were still held when the wal-index is published (a SQLite
 * that wrote frames in other pieces), xShmBarrier, which SQLite calls between writing the two
 * copies of the wal-index header, writes them (counted in barrier_flush: test_sqlite_wal fails
 * on any). The database file, journals and shared memory otherwise pass through untouched.
 */
#include "store/sqlite_wal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include <sqlite3.h>

/* The held run's cap: a 1000-request ledger batch is ~80 frames (~330 KB); a larger run is
 * written in pieces of this size. */
#define SQW_BUF (512u * 1024u)
/* The largest write handed to the real VFS at once: SQLite's unix VFS writes at most 0x1ffff bytes
 * a call (and reports a larger write as a full disk); a multiple of the page size below that. */
#define SQW_IO_MAX (124u * 1024u)
/* A WAL frame header: page number, database size after a commit (0 otherwise), salts, checksums. */
#define SQW_FRAME_HDR 24
/* SQLite's WAL_WRITE_LOCK, the first shared-memory lock slot (wal.c). */
#define SQW_WRITE_LOCK 0

typedef struct sqw_file sqw_file;
struct sqw_file {
    sqlite3_file base;   /* pMethods: sqw_io */
    sqlite3_file *real;  /* the default VFS's file, in this allocation after the struct */
    int wal;             /* a WAL file: its writes are held */
    const char *db_name; /* a main database: the name SQLite opened it by (the link's key) */
    sqw_file *link;      /* a database's WAL once open, a WAL's database */
    sqw_file *next;      /* the list of open main databases */
    unsigned char *buf;  /* held writes: [off, off + len), SQW_BUF bytes once allocated */
    size_t len;
    sqlite3_int64 off;
    int commit_next;       /* the last write was a new commit frame's header */
    sqlite3_int64 read_at; /* the offset of the last call if it was a read, else -1 */
    int err;               /* a failed write: later writes fail until the write lock is released */
};

static sqlite3_vfs sqw_vfs;
static sqlite3_vfs *sqw_real;
static pthread_mutex_t sqw_mu = PTHREAD_MUTEX_INITIALIZER;
static sqw_file *sqw_dbs; /* under sqw_mu */
static _Atomic(sqw_write_fn) sqw_hook;
static _Atomic uint64_t st_writes, st_syscalls, st_commits, st_rewrites, st_barrier, st_failed;
static _Atomic uint64_t st_subjournals;

#define REAL(f) ((f)->real->pMethods)

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int real_write(sqw_file *f, const void *p, int n, sqlite3_int64 off)
{
    sqw_write_fn hook = atomic_load_explicit(&sqw_hook, memory_order_relaxed);
    atomic_fetch_add_explicit(&st_syscalls, 1, memory_order_relaxed);
    int rc = hook ? hook(f->real, p, n, off) : REAL(f)->xWrite(f->real, p, n, off);
    if (rc != SQLITE_OK) {
        f->err = rc;
        atomic_fetch_add_explicit(&st_failed, 1, memory_order_relaxed);
    }
    return rc;
}

/* Writes what is held. On failure the run is dropped and the file refuses writes (f->err). */
static int sqw_flush(sqw_file *f)
{
    size_t n = f->len, at = 0;
    int rc = f->err;

    f->len = 0;
    while (rc == SQLITE_OK && at < n) {
        size_t k = n - at < SQW_IO_MAX ? n - at : SQW_IO_MAX;
        rc = real_write(f, f->buf + at, (int)k, f->off + (sqlite3_int64)at);
        at += k;
    }
    return rc;
}

/* ---- the WAL's methods: every one but xWrite writes what is held first ---- */

static int sqw_close(sqlite3_file *pf)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = SQLITE_OK;

    if (f->wal) {
        (void)sqw_flush(f);
        pthread_mutex_lock(&sqw_mu);
        if (f->link) f->link->link = NULL;
        pthread_mutex_unlock(&sqw_mu);
        sqlite3_free(f->buf);
        f->buf = NULL;
    } else if (f->db_name) {
        pthread_mutex_lock(&sqw_mu);
        for (sqw_file **pp = &sqw_dbs; *pp; pp = &(*pp)->next)
            if (*pp == f) {
                *pp = f->next;
                break;
            }
        if (f->link) f->link->link = NULL;
        pthread_mutex_unlock(&sqw_mu);
    }
    if (f->real->pMethods) rc = REAL(f)->xClose(f->real);
    return rc;
}

static int sqw_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    f->read_at = off;
    return rc != SQLITE_OK ? rc : REAL(f)->xRead(f->real, p, n, off);
}

static int sqw_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    sqw_file *f = (sqw_file *)pf;
    int rc, commit;

    if (!f->wal) return REAL(f)->xWrite(f->real, p, n, off);
    atomic_fetch_add_explicit(&st_writes, 1, memory_order_relaxed);
    if (!f->link) { /* its write lock is not visible: nothing is held */
        atomic_fetch_add_explicit(&st_syscalls, 1, memory_order_relaxed);
        return REAL(f)->xWrite(f->real, p, n, off);
    }
    if (f->err) return f->err;
    /* A commit frame's header is followed by its page, the transaction's last write, except when
     * SQLite rewrites the checksums of frames it overwrote in place (walRewriteChecksums, after
     * the commit frame): it reads each frame, then writes its header at the same offset, the
     * commit frame's last. A new frame is never read just before it is written (it is past the
     * WAL's valid end). */
    int commit_hdr = n == SQW_FRAME_HDR && be32((const unsigned char *)p + 4) != 0;
    int rewrite = f->read_at == off;
    f->read_at = -1;
    commit = f->commit_next || (commit_hdr && rewrite);
    f->commit_next = commit_hdr && !rewrite;
    if (commit_hdr && rewrite) atomic_fetch_add_explicit(&st_rewrites, 1, memory_order_relaxed);
    if (f->len && (off != f->off + (sqlite3_int64)f->len || f->len + (size_t)n > SQW_BUF) &&
        (rc = sqw_flush(f)) != SQLITE_OK)
        return rc;
    if (!f->buf && (size_t)n <= SQW_IO_MAX) f->buf = sqlite3_malloc((int)SQW_BUF);
    if (!f->buf || (size_t)n > SQW_IO_MAX) {
        /* not held (no memory, or larger than a write may be): what is held goes first */
        if ((rc = sqw_flush(f)) != SQLITE_OK) return rc;
        return real_write(f, p, n, off);
    }
    if (f->len == 0) f->off = off;
    memcpy(f->buf + f->len, p, (size_t)n);
    f->len += (size_t)n;
    if (!commit) return SQLITE_OK;
    atomic_fetch_add_explicit(&st_commits, 1, memory_order_relaxed);
    return sqw_flush(f);
}

static int sqw_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    return rc != SQLITE_OK ? rc : REAL(f)->xTruncate(f->real, size);
}

static int sqw_sync(sqlite3_file *pf, int flags)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    return rc != SQLITE_OK ? rc : REAL(f)->xSync(f->real, flags);
}

static int sqw_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    return rc != SQLITE_OK ? rc : REAL(f)->xFileSize(f->real, size);
}

static int sqw_lock(sqlite3_file *pf, int lock)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xLock(f->real, lock);
}

static int sqw_unlock(sqlite3_file *pf, int lock)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xUnlock(f->real, lock);
}

static int sqw_reserved(sqlite3_file *pf, int *out)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xCheckReservedLock(f->real, out);
}

static int sqw_fcntl(sqlite3_file *pf, int op, void *arg)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    return rc != SQLITE_OK ? rc : REAL(f)->xFileControl(f->real, op, arg);
}

static int sqw_sector(sqlite3_file *pf)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xSectorSize(f->real);
}

static int sqw_device(sqlite3_file *pf)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xDeviceCharacteristics(f->real);
}

static int sqw_shm_map(sqlite3_file *pf, int region, int size, int extend, void volatile **pp)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xShmMap(f->real, region, size, extend, pp);
}

/* The end of a write transaction (commit or rollback) releases the WAL write lock: what is still
 * held then was never committed, and a failed write no longer threatens a commit. */
static int sqw_shm_lock(sqlite3_file *pf, int ofst, int n, int flags)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = REAL(f)->xShmLock(f->real, ofst, n, flags);
    if (rc == SQLITE_OK && flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) &&
        ofst <= SQW_WRITE_LOCK && SQW_WRITE_LOCK < ofst + n && f->link) {
        f->link->len = 0;
        f->link->err = SQLITE_OK;
        f->link->commit_next = 0;
    }
    return rc;
}

static void sqw_shm_barrier(sqlite3_file *pf)
{
    sqw_file *f = (sqw_file *)pf;
    if (f->link && f->link->len) {
        atomic_fetch_add_explicit(&st_barrier, 1, memory_order_relaxed);
        (void)sqw_flush(f->link);
    }
    REAL(f)->xShmBarrier(f->real);
}

static int sqw_shm_unmap(sqlite3_file *pf, int del)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xShmUnmap(f->real, del);
}

static int sqw_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    sqw_file *f = (sqw_file *)pf;
    int rc = sqw_flush(f);
    return rc != SQLITE_OK ? rc : REAL(f)->xFetch(f->real, off, n, pp);
}

static int sqw_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    sqw_file *f = (sqw_file *)pf;
    return REAL(f)->xUnfetch(f->real, off, p);
}

/* The methods every file has; a file without shared memory (version 1 methods) must not look
 * as if it had some. */
#define SQW_IO_V1                                                                                  \
    .xClose = sqw_close, .xRead = sqw_read, .xWrite = sqw_write, .xTruncate = sqw_truncate,        \
    .xSync = sqw_sync, .xFileSize = sqw_size, .xLock = sqw_lock, .xUnlock = sqw_unlock,            \
    .xCheckReservedLock = sqw_reserved, .xFileControl = sqw_fcntl, .xSectorSize = sqw_sector,      \
    .xDeviceCharacteristics = sqw_device

static const sqlite3_io_methods sqw_io = {
    .iVersion = 3,
    SQW_IO_V1,
    .xShmMap = sqw_shm_map,
    .xShmLock = sqw_shm_lock,
    .xShmBarrier = sqw_shm_barrier,
    .xShmUnmap = sqw_shm_unmap,
    .xFetch = sqw_fetch,
    .xUnfetch = sqw_unfetch,
};

static const sqlite3_io_methods sqw_io_v1 = {.iVersion = 1, SQW_IO_V1};

/* ---- the VFS ---- */

/* The real file sits after ours, aligned for anything. */
#define SQW_REAL_AT ((sizeof(sqw_file) + 15) & ~(size_t)15)

static int sqw_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *pf, int flags, int *out_flags)
{
    sqw_file *f = (sqw_file *)pf;
    (void)vfs;

    memset(f, 0, sizeof *f);
    f->read_at = -1;
    if (flags & SQLITE_OPEN_SUBJOURNAL)
        atomic_fetch_add_explicit(&st_subjournals, 1, memory_order_relaxed);
    f->real = (sqlite3_file *)((char *)pf + SQW_REAL_AT);
    int rc = sqw_real->xOpen(sqw_real, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        /* SQLite calls xClose only when pMethods is set: leave ours unset too */
        if (f->real->pMethods) f->real->pMethods->xClose(f->real);
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    f->base.pMethods = REAL(f)->iVersion >= 3 ? &sqw_io : &sqw_io_v1;
    if (REAL(f)->iVersion < 3) return SQLITE_OK;
    pthread_mutex_lock(&sqw_mu);
    if ((flags & SQLITE_OPEN_MAIN_DB) && name) {
        f->db_name = name;
        f->next = sqw_dbs;
        sqw_dbs = f;
    } else if ((flags & SQLITE_OPEN_WAL) && name) {
        /* The connection's database: SQLite keeps the WAL's name in the same block as the
         * database's, and sqlite3_filename_database gives back the very pointer its xOpen got. */
        const char *db = sqlite3_filename_database(name);
        f->wal = 1;
        for (sqw_file *d = sqw_dbs; d; d = d->next)
            if (d->db_name == db && !d->link) {
                d->link = f;
                f->link = d;
                break;
            }
    }
    pthread_mutex_unlock(&sqw_mu);
    return SQLITE_OK;
}

static int sqw_delete(sqlite3_vfs *vfs, const char *name, int sync)
{
    (void)vfs;
    return sqw_real->xDelete(sqw_real, name, sync);
}

static int sqw_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return sqw_real->xAccess(sqw_real, name, flags, out);
}

static int sqw_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return sqw_real->xFullPathname(sqw_real, name, n, out);
}

static void *sqw_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return sqw_real->xDlOpen(sqw_real, name);
}

static void sqw_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    sqw_real->xDlError(sqw_real, n, out);
}

static void (*sqw_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return sqw_real->xDlSym(sqw_real, h, sym);
}

static void sqw_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    sqw_real->xDlClose(sqw_real, h);
}

static int sqw_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return sqw_real->xRandomness(sqw_real, n, out);
}

static int sqw_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return sqw_real->xSleep(sqw_real, us);
}

static int sqw_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return sqw_real->xCurrentTime(sqw_real, out);
}

static int sqw_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return sqw_real->xGetLastError ? sqw_real->xGetLastError(sqw_real, n, out) : 0;
}

static int sqw_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    if (sqw_real->iVersion >= 2 && sqw_real->xCurrentTimeInt64)
        return sqw_real->xCurrentTimeInt64(sqw_real, out);
    double d;
    int rc = sqw_real->xCurrentTime(sqw_real, &d);
    *out = (sqlite3_int64)(d * 86400000.0);
    return rc;
}

static int sqw_rc = SQLITE_ERROR;

static void sqw_init(void)
{
    if (sqlite3_initialize() != SQLITE_OK || !(sqw_real = sqlite3_vfs_find(NULL))) return;
    sqw_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)(SQW_REAL_AT + (size_t)sqw_real->szOsFile),
        .mxPathname = sqw_real->mxPathname,
        .zName = SQW_VFS_NAME,
        .xOpen = sqw_open,
        .xDelete = sqw_delete,
        .xAccess = sqw_access,
        .xFullPathname = sqw_fullpath,
        .xDlOpen = sqw_dlopen,
        .xDlError = sqw_dlerror,
        .xDlSym = sqw_dlsym,
        .xDlClose = sqw_dlclose,
        .xRandomness = sqw_random,
        .xSleep = sqw_sleep,
        .xCurrentTime = sqw_time,
        .xGetLastError = sqw_last_error,
        .xCurrentTimeInt64 = sqw_time64,
    };
    sqw_rc = sqlite3_vfs_register(&sqw_vfs, 0);
}

int sqw_register(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, sqw_init);
    return sqw_rc;
}

void sqw_get_stats(sqw_stats *out)
{
    out->writes = atomic_load(&st_writes);
    out->syscalls = atomic_load(&st_syscalls);
    out->commits = atomic_load(&st_commits);
    out->rewrites = atomic_load(&st_rewrites);
    out->barrier_flush = atomic_load(&st_barrier);
    out->failed = atomic_load(&st_failed);
    out->subjournals = atomic_load(&st_subjournals);
}

void sqw_set_write_hook(sqw_write_fn fn)
{
    atomic_store(&sqw_hook, fn);
}
