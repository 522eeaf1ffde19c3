/*
 * Unit tests for src/store/sqlite_wal.c, the VFS that writes a WAL transaction's frames at once,
 * through the store as the gateway uses it (store_open, the ledger writer's batches) and through
 * plain SQLite connections on the same file:
 * - the frames are gathered (far fewer writes reach the file than SQLite makes), each commit's
 *   run is written by its commit frame, and none is left for the wal-index publication;
 * - readers on other connections, on this VFS and on SQLite's own, only ever see whole batches
 *   with the balances that go with them while a writer commits;
 * - a write that fails (at the commit, or in the middle of a transaction larger than the held
 *   run) fails that transaction: nothing of it is in the database, the next one commits, the
 *   file passes integrity_check and the ledger audit;
 * - a writer killed (SIGKILL) between and during commits leaves whole batches only.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "config/config.h"
#include "store/sqlite_wal.h"
#include "store/store.h"
#include "tap.h"
#include "store/sqlite_usage.h"

#define BALANCE 1000000000000LL

static char tmpdir[64];
static char dbpath[128];
static cfg_t cfg;
static int64_t acct_id, key_id;
static int64_t seq; /* request ids made so far */

static store_t *open_store(void)
{
    char err[256] = "";
    store_t *s = store_open(&cfg, err, sizeof(err));
    if (!s) fprintf(stderr, "store_open: %s\n", err);
    return s;
}

/* A fresh database with one account and one proxy key. */
static store_t *fresh(const char *name)
{
    snprintf(dbpath, sizeof dbpath, "%s/%s.db", tmpdir, name);
    cfg.sqlite_path = dbpath;
    store_t *s = open_store();
    char key[64];
    store_key k;
    if (!s) return NULL;
    if (store_account_create(s, "acct", BALANCE, &acct_id) != STORE_OK ||
        store_key_create(s, acct_id, KEY_PROXY, "k", 0, -1, key, &k) != STORE_OK) {
        fprintf(stderr, "fixture: %s\n", store_errmsg(s));
        store_close(s);
        return NULL;
    }
    key_id = k.id;
    return s;
}

/* n events charging 1..n nano-dollars in turn (so a batch's sum tells which rows it has). */
static int commit_batch(store_t *s, int n)
{
    static store_usage_event ev[1000];
    for (int i = 0; i < n; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        snprintf(ev[i].request_id, sizeof ev[i].request_id, "req_wal%012lld", (long long)seq++);
        ev[i].account_id = acct_id;
        ev[i].key_id = key_id;
        snprintf(ev[i].model, sizeof ev[i].model, "gpt-4o");
        snprintf(ev[i].provider, sizeof ev[i].provider, "openai");
        ev[i].usage.input = 100;
        ev[i].usage.output = 20;
        ev[i].charged_nusd = 1 + i;
        ev[i].status = 200;
        ev[i].latency_ms = 5;
        ev[i].created_at_ms = 1750000000000LL;
    }
    return store_ledger_commit(s, ev, (size_t)n);
}

static sqlite3 *open_raw(const char *vfs)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, vfs) != SQLITE_OK ||
        squ_register(db) != SQLITE_OK) {
        fprintf(stderr, "open %s: %s\n", dbpath, db ? sqlite3_errmsg(db) : "?");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = INT64_MIN;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return v;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* "ok" from PRAGMA integrity_check on a connection of SQLite's own VFS. */
static int integrity_ok(void)
{
    sqlite3 *db = open_raw(NULL);
    sqlite3_stmt *st;
    int ok = 0;
    if (!db) return 0;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
        ok = sqlite3_step(st) == SQLITE_ROW &&
             strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return ok;
}

static void stats_delta(const sqw_stats *a, sqw_stats *d)
{
    sqw_stats b;
    sqw_get_stats(&b);
    d->writes = b.writes - a->writes;
    d->syscalls = b.syscalls - a->syscalls;
    d->commits = b.commits - a->commits;
    d->rewrites = b.rewrites - a->rewrites;
    d->barrier_flush = b.barrier_flush - a->barrier_flush;
    d->failed = b.failed - a->failed;
}

static void test_gathered(void)
{
    store_t *s = fresh("gathered");
    sqw_stats a, d;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    sqw_get_stats(&a);
    for (int b = 0; b < 50; b++)
        CHECK_EQ_INT(commit_batch(s, 100), STORE_OK);
    stats_delta(&a, &d);
    /* SQLite makes two writes a frame, ~10 frames a batch; the layer one (or two) a batch */
    CHECK(d.writes >= 50 * 8);
    CHECK(d.commits >= 50);
    CHECK(d.syscalls <= d.commits + 10);
    CHECK(d.syscalls * 5 < d.writes);
    CHECK_EQ_INT(d.barrier_flush, 0);
    CHECK_EQ_INT(d.failed, 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
    CHECK(integrity_ok());
    sqlite3 *db = open_raw(NULL);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM usage"), 5000);
    CHECK_EQ_INT(raw_int(db, "SELECT sum(charged_nusd) FROM usage"), 50 * 5050);
    sqlite3_close(db);
}

/* ---- readers while a writer commits ---- */

typedef struct reader {
    const char *vfs;
    atomic_int *stop;
    atomic_int reads;
    int bad;
} reader;

static void *read_loop(void *arg)
{
    reader *r = arg;
    sqlite3 *db = open_raw(r->vfs);
    sqlite3_stmt *st;
    if (!db) {
        r->bad++;
        return NULL;
    }
    /* one statement: one snapshot of the rows, the balance and the key's spend */
    const char *sql = "SELECT (SELECT count(*) FROM usage), (SELECT coalesce(sum(charged_nusd), 0) "
                      "FROM usage), (SELECT balance_nusd FROM accounts), (SELECT spent_nusd "
                      "FROM api_keys WHERE type = 0)";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        r->bad++;
        sqlite3_close(db);
        return NULL;
    }
    while (!atomic_load(r->stop)) {
        if (sqlite3_step(st) == SQLITE_ROW) {
            int64_t n = sqlite3_column_int64(st, 0), sum = sqlite3_column_int64(st, 1);
            int64_t bal = sqlite3_column_int64(st, 2), spent = sqlite3_column_int64(st, 3);
            if (n % 200 != 0 || sum != n / 200 * 20100 || bal != BALANCE - sum || spent != sum)
                r->bad++;
            atomic_fetch_add(&r->reads, 1);
        } else {
            r->bad++;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return NULL;
}

static void test_readers(void)
{
    store_t *s = fresh("readers");
    atomic_int stop = 0;
    reader r[2] = {{SQW_VFS_NAME, &stop, 0, 0}, {NULL, &stop, 0, 0}};
    pthread_t t[2];
    sqw_stats a, d;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    sqw_get_stats(&a);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, read_loop, &r[i]);
    /* At least 150 batches, and on (up to 600) until each reader has read 10 times during the
     * commits; a pause after each batch lets the readers in under valgrind, which runs one
     * thread at a time. */
    const struct timespec pause = {0, 200000};
    for (int b = 0;
         b < 150 || ((atomic_load(&r[0].reads) < 10 || atomic_load(&r[1].reads) < 10) && b < 600);
         b++) {
        CHECK_EQ_INT(commit_batch(s, 200), STORE_OK);
        nanosleep(&pause, NULL);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        CHECK(atomic_load(&r[i].reads) >= 10);
        CHECK_EQ_INT(r[i].bad, 0);
    }
    stats_delta(&a, &d);
    CHECK_EQ_INT(d.barrier_flush, 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
    CHECK(integrity_ok());
}

/* ---- writes that fail ---- */

static atomic_int fail_after = -1; /* real writes let through before one fails; -1: none */

static int failing_write(void *file, const void *p, int n, int64_t off)
{
    sqlite3_file *f = file;
    int left = atomic_load(&fail_after);
    if (left == 0) {
        atomic_store(&fail_after, -1);
        return SQLITE_IOERR_WRITE;
    }
    if (left > 0) atomic_store(&fail_after, left - 1);
    return f->pMethods->xWrite(f, p, n, off);
}

static void test_failed_commit(void)
{
    store_t *s = fresh("failed");
    sqw_stats a, d;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    CHECK_EQ_INT(commit_batch(s, 100), STORE_OK);
    sqw_get_stats(&a);
    sqw_set_write_hook(failing_write);
    atomic_store(&fail_after, 0);
    CHECK_EQ_INT(commit_batch(s, 100), STORE_ERR);
    stats_delta(&a, &d);
    CHECK_EQ_INT(d.failed, 1);
    /* the failed batch's ids are free again: the same events commit now */
    seq -= 100;
    CHECK_EQ_INT(commit_batch(s, 100), STORE_OK);
    CHECK_EQ_INT(commit_batch(s, 100), STORE_OK);
    sqw_set_write_hook(NULL);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
    CHECK(integrity_ok());
    sqlite3 *db = open_raw(NULL);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM usage"), 300);
    CHECK_EQ_INT(raw_int(db, "SELECT count(DISTINCT request_id) FROM usage"), 300);
    CHECK_EQ_INT(raw_int(db, "SELECT sum(charged_nusd) FROM usage"), 3 * 5050);
    CHECK_EQ_INT(raw_int(db, "SELECT balance_nusd FROM accounts"), BALANCE - 3 * 5050);
    sqlite3_close(db);
}

/* A fresh store's database opened on this VFS by a plain connection, with sql run on it
 * (a small page cache and a table); NULL when any of it failed (the case has failed). */
static sqlite3 *raw_fresh(const char *name, const char *sql)
{
    store_t *s = fresh(name);
    CHECK(s != NULL);
    if (!s) return NULL;
    store_close(s);
    sqlite3 *db = open_raw(SQW_VFS_NAME);
    CHECK(db != NULL);
    if (db && sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        CHECK(0);
        sqlite3_close(db);
        db = NULL;
    }
    return db;
}

/* A transaction of ~2.5 MB of pages, spilled mid-way by a small page cache: held runs are
 * written before the commit (the held run's cap), and one of those writes fails. */
static void test_failed_large(void)
{
    sqlite3 *db = raw_fresh(
        "large", "PRAGMA cache_size=20; CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB)");
    if (!db) return;
    const char *fill = "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                       "WHERE i < 600) INSERT INTO blobs SELECT i, randomblob(4000) FROM n; COMMIT";
    for (int k = 1; k <= 4; k++) {
        sqw_stats a, d;
        sqw_get_stats(&a);
        sqw_set_write_hook(failing_write);
        atomic_store(&fail_after, k);
        int rc = sqlite3_exec(db, fill, NULL, NULL, NULL);
        sqw_set_write_hook(NULL);
        atomic_store(&fail_after, -1);
        stats_delta(&a, &d);
        CHECK(rc != SQLITE_OK);
        CHECK_EQ_INT(d.failed, 1);
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM blobs"), 0);
    }
    sqw_stats a, d;
    sqw_get_stats(&a);
    CHECK_EQ_INT(sqlite3_exec(db, fill, NULL, NULL, NULL), SQLITE_OK);
    stats_delta(&a, &d);
    CHECK(d.syscalls >= 3); /* the run did not fit in one held run */
    CHECK_EQ_INT(d.barrier_flush, 0);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM blobs"), 600);
    sqlite3_close(db);
    CHECK(integrity_ok());
    db = open_raw(NULL);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM blobs"), 600);
    sqlite3_close(db);
}

/* A transaction that spills pages to the WAL and then changes them again: SQLite overwrites
 * those frames in place and, after the commit frame, rewrites the checksums from the first of
 * them, the commit frame's header last. That header must reach the file at once: a copy of the
 * database and its WAL taken right after the commit (no wal-index: SQLite recovers from the
 * frames' checksums, as after a crash) holds every row. */
static void test_checksum_rewrite(void)
{
    sqlite3 *db = raw_fresh("rewrite", "PRAGMA cache_size=8; CREATE TABLE t(id INTEGER PRIMARY "
                                       "KEY, n INT, b BLOB)");
    if (!db) return;
    sqw_stats a, d;
    sqw_get_stats(&a);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                              "FROM n WHERE i < 300) INSERT INTO t SELECT i, 0, randomblob(1500) "
                              "FROM n; UPDATE t SET n = id; COMMIT",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    stats_delta(&a, &d);
    CHECK(d.rewrites >= 1);
    CHECK_EQ_INT(d.barrier_flush, 0);
    CHECK_EQ_INT(d.failed, 0);
    /* the crash copy, taken with the connection still open */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/crash.db' && cp '%s-wal' '%s/crash.db-wal'", dbpath,
             tmpdir, dbpath, tmpdir);
    CHECK_EQ_INT(system(cmd), 0);
    sqlite3_close(db);
    char saved[128];
    snprintf(saved, sizeof saved, "%s", dbpath);
    snprintf(dbpath, sizeof dbpath, "%s/crash.db", tmpdir);
    db = open_raw(NULL);
    CHECK_EQ_INT(raw_int(db, "SELECT count(*) FROM t"), 300);
    CHECK_EQ_INT(raw_int(db, "SELECT sum(n) FROM t"), 300 * 301 / 2);
    sqlite3_close(db);
    CHECK(integrity_ok());
    snprintf(dbpath, sizeof dbpath, "%s", saved);
}

/* ---- the layer on its own: a database and its WAL opened through the VFS by hand ---- */

static void be32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static int64_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    int64_t n = ftell(f);
    fclose(f);
    return n;
}

/* Writes frame i (page number i + 1, commit when db_size > 0) at its place after a 32-byte
 * header, as SQLite does: header, then page. Returns the first failure. */
static int put_frame(sqlite3_file *w, int i, uint32_t db_size)
{
    unsigned char hdr[24] = {0}, page[4096];
    int64_t off = 32 + (int64_t)i * (24 + 4096);
    be32_put(hdr, (uint32_t)i + 1);
    be32_put(hdr + 4, db_size);
    memset(page, 'a' + i % 26, sizeof page);
    int rc = w->pMethods->xWrite(w, hdr, 24, off);
    return rc != SQLITE_OK ? rc : w->pMethods->xWrite(w, page, 4096, off + 24);
}

static void test_file_level(void)
{
    sqlite3_vfs *vfs = sqlite3_vfs_find(SQW_VFS_NAME);
    char db[160], jn[170], wal[170];
    CHECK(vfs != NULL);
    if (!vfs) return;
    snprintf(db, sizeof db, "%s/raw.db", tmpdir);
    snprintf(jn, sizeof jn, "%s-journal", db);
    snprintf(wal, sizeof wal, "%s-wal", db);
    sqlite3_filename name = sqlite3_create_filename(db, jn, wal, 0, NULL);
    sqlite3_file *d = calloc(1, (size_t)vfs->szOsFile), *w = calloc(1, (size_t)vfs->szOsFile);
    int fl = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    CHECK_EQ_INT(vfs->xOpen(vfs, name, d, fl | SQLITE_OPEN_MAIN_DB, NULL), SQLITE_OK);
    CHECK_EQ_INT(vfs->xOpen(vfs, sqlite3_filename_wal(name), w, fl | SQLITE_OPEN_WAL, NULL),
                 SQLITE_OK);
    void volatile *shm = NULL;
    CHECK_EQ_INT(d->pMethods->xShmMap(d, 0, 32768, 1, &shm), SQLITE_OK);
    const int wlock = SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE;
    const int wunlock = SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE;

    /* held until the commit frame's page, then written whole */
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wlock), SQLITE_OK);
    unsigned char whdr[32] = {0x37, 0x7f, 0x06, 0x82};
    CHECK_EQ_INT(w->pMethods->xWrite(w, whdr, 32, 0), SQLITE_OK);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(put_frame(w, i, 0), SQLITE_OK);
    CHECK_EQ_INT(file_size(wal), 0);
    CHECK_EQ_INT(put_frame(w, 3, 4), SQLITE_OK);
    CHECK_EQ_INT(file_size(wal), 32 + 4 * (24 + 4096));
    /* a read of held frames writes them first */
    CHECK_EQ_INT(put_frame(w, 4, 0), SQLITE_OK);
    CHECK_EQ_INT(file_size(wal), 32 + 4 * (24 + 4096));
    unsigned char back[4096];
    CHECK_EQ_INT(w->pMethods->xRead(w, back, 4096, 32 + 4 * (24 + 4096) + 24), SQLITE_OK);
    CHECK(back[0] == 'e' && back[4095] == 'e');
    CHECK_EQ_INT(file_size(wal), 32 + 5 * (24 + 4096));

    /* a failed write: every later write fails, until the write lock is released, which also
     * drops what is held (a rolled-back transaction's frames) */
    sqw_set_write_hook(failing_write);
    atomic_store(&fail_after, 0);
    CHECK_EQ_INT(put_frame(w, 5, 0), SQLITE_OK); /* held: nothing written yet */
    CHECK_EQ_INT(w->pMethods->xSync(w, 0), SQLITE_IOERR_WRITE);
    CHECK_EQ_INT(put_frame(w, 6, 0), SQLITE_IOERR_WRITE);
    CHECK_EQ_INT(put_frame(w, 6, 7), SQLITE_IOERR_WRITE);
    CHECK_EQ_INT(file_size(wal), 32 + 5 * (24 + 4096));
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wunlock), SQLITE_OK);
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wlock), SQLITE_OK);
    CHECK_EQ_INT(put_frame(w, 5, 0), SQLITE_OK);
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wunlock), SQLITE_OK);
    CHECK_EQ_INT(file_size(wal), 32 + 5 * (24 + 4096));
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wlock), SQLITE_OK);
    CHECK_EQ_INT(put_frame(w, 6, 7), SQLITE_OK);
    CHECK_EQ_INT(file_size(wal), 32 + 7 * (24 + 4096));
    /* frame 5 was dropped, never written: a hole */
    CHECK_EQ_INT(w->pMethods->xRead(w, back, 4096, 32 + 5 * (24 + 4096) + 24), SQLITE_OK);
    CHECK(back[0] == 0 && back[4095] == 0);
    /* a commit frame's header written again right after a read of its frame (SQLite's checksum
     * rewrite, the transaction's last write) is written at once, not held */
    unsigned char hdr[24] = {0};
    be32_put(hdr, 7);
    be32_put(hdr + 4, 7);
    memset(hdr + 16, 0xab, 8);
    static unsigned char frame[24 + 4096];
    CHECK_EQ_INT(w->pMethods->xRead(w, frame, sizeof frame, 32 + 6 * (24 + 4096)), SQLITE_OK);
    CHECK_EQ_INT(w->pMethods->xWrite(w, hdr, 24, 32 + 6 * (24 + 4096)), SQLITE_OK);
    FILE *raw = fopen(wal, "rb");
    unsigned char got[24] = {0};
    CHECK(raw && fseek(raw, 32 + 6 * (24 + 4096), SEEK_SET) == 0 && fread(got, 1, 24, raw) == 24);
    if (raw) fclose(raw);
    CHECK(memcmp(got, hdr, 24) == 0);
    CHECK_EQ_INT(d->pMethods->xShmLock(d, 0, 1, wunlock), SQLITE_OK);
    sqw_set_write_hook(NULL);

    CHECK_EQ_INT(d->pMethods->xShmUnmap(d, 1), SQLITE_OK);
    CHECK_EQ_INT(w->pMethods->xClose(w), SQLITE_OK);
    CHECK_EQ_INT(d->pMethods->xClose(d), SQLITE_OK);
    free(w);
    free(d);
    sqlite3_free_filename(name);
}

/* ---- a writer killed ---- */

static void test_killed_writer(void)
{
    store_t *s = fresh("killed");
    CHECK(s != NULL);
    if (!s) return;
    store_close(s);
    for (int round = 0; round < 3; round++) {
        int ready[2];
        CHECK_EQ_INT(pipe(ready), 0);
        pid_t pid = fork();
        if (pid == 0) {
            store_t *w = open_store();
            if (!w || store_ledger_writer(w) != STORE_OK) _exit(2);
            seq = 1000000 * (round + 1);
            for (int b = 0;; b++) {
                if (commit_batch(w, 200) != STORE_OK) _exit(3);
                /* the parent kills it from its fifth commit on (however slow it runs: valgrind) */
                if (b == 4 && write(ready[1], "r", 1) != 1) _exit(4);
            }
        }
        CHECK(pid > 0);
        if (pid <= 0) return;
        close(ready[1]);
        char c;
        CHECK_EQ_INT(read(ready[0], &c, 1), 1); /* 0: the child died first */
        close(ready[0]);
        struct timespec ts = {0, (3 + 7 * round) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        s = open_store();
        CHECK(s != NULL);
        if (!s) return;
        CHECK_EQ_INT(store_audit(s, NULL), 0);
        store_close(s);
        CHECK(integrity_ok());
        sqlite3 *db = open_raw(NULL);
        int64_t n = raw_int(db, "SELECT count(*) FROM usage");
        CHECK(n >= 5 * 200 * (round + 1));
        CHECK_EQ_INT(n % 200, 0);
        CHECK_EQ_INT(raw_int(db, "SELECT sum(charged_nusd) FROM usage"), n / 200 * 20100);
        sqlite3_close(db);
    }
}

int main(void)
{
    tap_mkdtemp("test_sqlite_wal", tmpdir);
    RUN(test_gathered);
    RUN(test_readers);
    RUN(test_failed_commit);
    RUN(test_failed_large);
    RUN(test_checksum_rewrite);
    RUN(test_file_level);
    RUN(test_killed_writer);
    tap_rmtree(tmpdir);
    TAP_DONE();
}
