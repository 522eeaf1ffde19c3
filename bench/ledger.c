/*
 * bench/ledger.c: the ledger writer's rate against the number of accounts its batches charge
 * (make bench, phase "ledger"; issue 15's scaling target names the ledger writer).
 *
 * Why this program: every settled request becomes a usage event, and one thread commits them
 * (billing.c's ledger thread, group commit). bench/scale.c measures that thread with a handful
 * of accounts, where each batch updates a few hot rows. A gateway with many clients charges a
 * different account (and key) with nearly every event of a batch, and on SQLite each of those
 * is an UPDATE of a row on its own page: a page written to the WAL per account, then copied into
 * the database by the checkpointer. This program measures how the writer's rate falls as the
 * accounts spread, on a handle set up exactly as the gateway sets up its ledger's (the ledger
 * writer's pragmas, the checkpointer thread beside it), committing batches of the sizes the
 * gateway forms: 300 (what the 10 ms group-commit window gathers at ~30,000 requests a second,
 * one worker's rate) and 1,000 (BILL_CHUNK: a backlog's batches).
 *
 * For each number of accounts A: a fresh SQLite database with A accounts and a key each, then
 * for each batch size: a few batches to warm it, then batches until SECONDS have passed, each
 * event charging an account drawn at random (a fixed seed) with its key (or until 400,000
 * events). The charges are posted as the gateway posts them (store_ledger_defer; every second of
 * commits and once at the end, inside the time measured), or with each commit where the backend
 * always does (PostgreSQL) or LEDGER_POST=commit says so (the way before deferred posting). One
 * line each:
 *
 *   ledger A BATCH 1 events=N seconds=S events_per_s=R us_per_event=U cpu_us_per_event=C
 *          deferred=0|1
 *
 * (cpu: the process's user + system time, the checkpointer's included), then "ledger audit ok"
 * (or the audit's failure) once every database passed store_audit afterwards.
 *
 * Usage: ledger DIR [SECONDS [ACCOUNTS...]] (DIR: an empty scratch directory; defaults: 3 s,
 * accounts 1 256 10000 100000). With LEDGER_PG_URL set (a PostgreSQL server's URL, its
 * database one to connect to, e.g. tests/pg.sh's), the databases are made there instead
 * (ledger_A, dropped first if they exist): the same batches on the PostgreSQL backend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "auth/keys.h"
#include "common/util.h"
#include "config/config.h"
#include "store/store.h"

#define LB_MAX_BATCH 1000
#define LB_WARM_BATCHES 5
#define LB_MAX_CASES 16
/* A case stops at this many events too: a few hot accounts commit millions a second, and the
 * database (and the audit after) would grow with them for nothing. */
#define LB_MAX_EVENTS 400000
#define LB_POST_NS 1000000000ull /* billing.c's BILL_POST_MS */

static void lb_die(const char *what, const char *why)
{
    fprintf(stderr, "ledger: %s: %s\n", what, why);
    exit(1);
}

static double lb_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* xorshift64: the same draw of accounts on every run */
static uint64_t lb_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* A accounts with a key each; ids into acct[] and key[]. */
static void lb_fill(store_t *s, int n, int64_t *acct, int64_t *key)
{
    for (int a = 0; a < n; a++) {
        char name[32], raw[64]; /* store_key_create writes the full key: 64 bytes */
        store_key k;
        snprintf(name, sizeof name, "bench-%d", a);
        if (store_account_create(s, name, STORE_MAX_BALANCE_NUSD, &acct[a]) != STORE_OK ||
            store_key_create(s, acct[a], KEY_PROXY, name, 0, -1, raw, &k) != STORE_OK)
            lb_die("setup", store_errmsg(s));
        key[a] = k.id;
    }
}

/* Commits batches of `batch` events over the n accounts until `secs` have passed; prints the
 * line. *seq numbers the request ids across calls (each id once per database). */
static void lb_case(store_t *s, int n, const int64_t *acct, const int64_t *key, int batch,
                    double secs, int deferred, int64_t *seq, uint64_t *rng)
{
    static store_usage_event ev[LB_MAX_BATCH];
    int64_t events = 0;
    uint64_t t0 = 0, posted = ms_mono_ns();
    double c0 = 0;
    for (int b = 0;; b++) {
        if (b == LB_WARM_BATCHES) {
            t0 = ms_mono_ns();
            c0 = lb_cpu_s();
        }
        for (int i = 0; i < batch; i++) {
            store_usage_event *e = &ev[i];
            int a = n == 1 ? 0 : (int)(lb_rand(rng) % (uint64_t)n);
            memset(e, 0, sizeof *e);
            snprintf(e->request_id, sizeof e->request_id, "req_lb%012lld", (long long)++*seq);
            e->account_id = acct[a];
            e->key_id = key[a];
            snprintf(e->model, sizeof e->model, "bench-model");
            snprintf(e->provider, sizeof e->provider, "bench");
            e->usage.input = 260;
            e->usage.output = 120;
            e->charged_nusd = 1000 + (int64_t)(lb_rand(rng) % 1000);
            e->status = 200;
            e->latency_ms = 3;
            e->created_at_ms = ms_now_ms();
        }
        if (store_ledger_commit_new(s, ev, (size_t)batch) != STORE_OK)
            lb_die("commit", store_errmsg(s));
        if (deferred && ms_mono_ns() - posted >= LB_POST_NS) {
            if (store_ledger_post(s) != STORE_OK) lb_die("post", store_errmsg(s));
            posted = ms_mono_ns();
        }
        if (b < LB_WARM_BATCHES) continue;
        events += batch;
        if (events >= LB_MAX_EVENTS || (double)(ms_mono_ns() - t0) / 1e9 >= secs) break;
    }
    if (deferred && store_ledger_post(s) != STORE_OK) lb_die("post", store_errmsg(s));
    double wall = (double)(ms_mono_ns() - t0) / 1e9, cpu = lb_cpu_s() - c0;
    printf("ledger %d %d 1 events=%lld seconds=%.3f events_per_s=%.0f us_per_event=%.2f "
           "cpu_us_per_event=%.2f deferred=%d\n",
           n, batch, (long long)events, wall, (double)events / wall, wall * 1e6 / (double)events,
           cpu * 1e6 / (double)events, deferred);
    fflush(stdout);
}

static void lb_pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* PostgreSQL: a fresh database ledger_N on the server of base; its URL into out. */
static void lb_pg_fresh(const char *base, int n, char *out, size_t outlen)
{
    const char *slash = strrchr(base, '/');
    if (!slash || slash - base < 12) lb_die("LEDGER_PG_URL", "no database in the URL");
    PGconn *c = PQconnectdb(base);
    if (PQstatus(c) != CONNECTION_OK) lb_die("LEDGER_PG_URL", PQerrorMessage(c));
    PQsetNoticeProcessor(c, lb_pg_quiet, NULL); /* "does not exist, skipping" */
    char sql[96];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS ledger_%d", n);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE ledger_%d", n);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) lb_die("create database", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(out, outlen, "%.*s/ledger_%d", (int)(slash - base), base, n);
}

int main(int argc, char **argv)
{
    static const int defaults[] = {1, 256, 10000, 100000};
    static const int batches[] = {300, LB_MAX_BATCH};
    int counts[LB_MAX_CASES], ncounts = 0, audit_ok = 1;
    char err[256], path[4096];

    if (argc < 2) {
        fprintf(stderr, "usage: ledger DIR [SECONDS [ACCOUNTS...]]\n");
        return 2;
    }
    double secs = argc > 2 ? atof(argv[2]) : 3.0;
    for (int i = 3; i < argc && ncounts < LB_MAX_CASES; i++)
        counts[ncounts++] = atoi(argv[i]);
    if (!ncounts)
        for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
            counts[ncounts++] = defaults[i];
    if (secs <= 0) lb_die("usage", "SECONDS must be positive");

    for (int c = 0; c < ncounts; c++) {
        int n = counts[c];
        if (n < 1) lb_die("usage", "ACCOUNTS must be at least 1");
        int64_t *acct = malloc((size_t)n * sizeof *acct), *key = malloc((size_t)n * sizeof *key);
        cfg_t *cfg = calloc(1, sizeof *cfg);
        if (!acct || !key || !cfg) lb_die("setup", "out of memory");
        if (getenv("LEDGER_PG_URL")) {
            lb_pg_fresh(getenv("LEDGER_PG_URL"), n, path, sizeof path);
            cfg->postgres_url = path;
        } else {
            snprintf(path, sizeof path, "%s/ledger-%d.db", argv[1], n);
            cfg->sqlite_path = path;
        }
        store_t *s = store_open(cfg, err, sizeof err);
        if (!s) lb_die("store", err);
        lb_fill(s, n, acct, key);
        store_close(s);
        /* the gateway's arrangement: a handle of the ledger's own, the checkpointer beside it */
        if (!(s = store_open(cfg, err, sizeof err))) lb_die("store", err);
        if (store_ledger_writer(s) != STORE_OK) lb_die("ledger writer", store_errmsg(s));
        const char *mode = getenv("LEDGER_POST");
        int deferred = !(mode && strcmp(mode, "commit") == 0) && store_ledger_defer(s, 1) == 0;
        /* as billing.c starts: a posting, which also starts the handle's sums */
        if (deferred && store_ledger_post(s) != STORE_OK) lb_die("post", store_errmsg(s));
        store_ckpt *ck = store_ckpt_start(cfg, s, err, sizeof err);
        if (!ck) lb_die("checkpointer", err);
        int64_t seq = 0;
        uint64_t rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
        for (size_t b = 0; b < sizeof batches / sizeof *batches; b++)
            lb_case(s, n, acct, key, batches[b], secs, deferred, &seq, &rng);
        store_ckpt_stop(ck);
        store_close(s);
        /* a handle of its own, as `modelswitch audit` opens one */
        if (!(s = store_open(cfg, err, sizeof err))) lb_die("store", err);
        if (store_audit(s, NULL) != 0) {
            audit_ok = 0;
            fprintf(stderr, "ledger: audit of %s failed\n", path);
        }
        store_close(s);
        free(cfg);
        free(acct);
        free(key);
    }
    printf("ledger audit %s\n", audit_ok ? "ok" : "FAILED");
    return audit_ok ? 0 : 1;
}
