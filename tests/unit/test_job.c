/*
 * Unit tests for the account API's plumbing: api_job (store work on libuv's thread pool, answered
 * on the loop; a client that goes away; a store that cannot be opened; handles reopened after
 * api_jobs_shutdown), kc_apply (a row written through the API reaches the key cache at once, and
 * an older row never undoes a newer one or brings a deleted key back), and api_parse_usd (exact
 * nano-dollars from a JSON number's text, exponents included).
 *
 * The jobs run on a real loop against a real SQLite store in a temporary directory. The
 * connection is a zeroed http_conn: only what api_job touches is set up, and no answer is ever
 * written to a socket (the failure path is checked on a connection marked closing).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/job.h"
#include "auth/keycache.h"
#include "common/util.h"
#include "config/config.h"
#include "server/http.h"
#include "store/store.h"
#include "tap.h"
#include "testdb.h"

static char tmpdir[64];
static char dbpath[128];
static cfg_t *cfg;

static void setup(void)
{
    tap_mkdtemp("test_job", tmpdir);
    snprintf(dbpath, sizeof(dbpath), "%s/job.db", tmpdir);
    cfg = calloc(1, sizeof(*cfg));
    tdb_use(cfg, dbpath);
}

static void teardown(void)
{
    free(cfg);
    tap_rmtree(tmpdir);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- api_job ---- */

typedef struct result {
    int work_ran;
    int work_on_other_thread;
    int had_store;
    int64_t account_id;
    int done_calls;
    http_conn *done_conn;
    int handler_clear_in_done;
} result;

typedef struct job_ctx {
    pthread_t loop_thread;
    result *res;
} job_ctx;

static void test_work(void *p, store_t *s)
{
    job_ctx *x = p;
    x->res->work_ran = 1;
    x->res->work_on_other_thread = !pthread_equal(pthread_self(), x->loop_thread);
    x->res->had_store = s != NULL;
    if (s) store_account_create(s, "from-the-pool", 5, &x->res->account_id);
}

static void test_done(http_conn *c, void *p)
{
    job_ctx *x = p;
    x->res->done_calls++;
    x->res->done_conn = c;
    if (c) x->res->handler_clear_in_done = c->handler.abort == NULL && c->handler.ctx == NULL;
}

/* A worker with just a loop and a config generation, and a connection on it. */
typedef struct fake {
    worker_t w;
    http_conn c;
    srv_gen gen;
} fake;

static void gen_destroy_never(srv_gen *g)
{
    (void)g;
    fprintf(stderr, "the worker's generation was released once too often\n");
    abort();
}

static fake *fake_new(const cfg_t *conf)
{
    fake *f = calloc(1, sizeof(*f));
    uv_loop_init(&f->w.loop);
    atomic_init(&f->gen.refs, 1); /* the worker's */
    f->gen.cfg = conf;
    f->gen.destroy = gen_destroy_never;
    f->w.gen = &f->gen;
    f->w.cfg = conf;
    f->c.w = &f->w;
    return f;
}

static void fake_free(fake *f)
{
    uv_run(&f->w.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&f->w.loop), 0);
    /* every job gave back the generation it held */
    CHECK_EQ_INT(atomic_load(&f->gen.refs), 1);
    free(f);
}

static job_ctx *ctx_new(result *res)
{
    job_ctx *x = calloc(1, sizeof(*x));
    x->loop_thread = pthread_self();
    x->res = res;
    return x;
}

static void test_job_runs_in_pool_and_answers_on_loop(void)
{
    fake *f = fake_new(cfg);
    result res = {0};

    api_job(&f->c, test_work, test_done, ctx_new(&res));
    /* in progress: the connection can reach the job if the client goes away */
    CHECK(f->c.handler.abort != NULL);
    CHECK_EQ_INT(res.done_calls, 0);
    uv_run(&f->w.loop, UV_RUN_DEFAULT);

    CHECK_EQ_INT(res.work_ran, 1);
    CHECK_EQ_INT(res.work_on_other_thread, 1);
    CHECK_EQ_INT(res.had_store, 1);
    CHECK_EQ_INT(res.done_calls, 1);
    CHECK(res.done_conn == &f->c);
    CHECK_EQ_INT(res.handler_clear_in_done, 1);
    CHECK(res.account_id > 0);

    /* the work really wrote to the store */
    char err[256] = "";
    store_t *s = store_open(cfg, err, sizeof(err));
    store_account a;
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ_INT(store_account_get(s, res.account_id, &a), STORE_OK);
        CHECK_EQ_STR(a.name, "from-the-pool");
        CHECK_EQ_INT(a.balance_nusd, 5);
        store_close(s);
    }
    fake_free(f);
}

static void test_job_many_in_parallel(void)
{
    /* More jobs than pool threads: each thread keeps one handle and reuses it. */
    enum { N = 24 };
    fake *f[N];
    result res[N];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < N; i++) {
        f[i] = fake_new(cfg);
        api_job(&f[i]->c, test_work, test_done, ctx_new(&res[i]));
    }
    for (int i = 0; i < N; i++) {
        uv_run(&f[i]->w.loop, UV_RUN_DEFAULT);
        CHECK_EQ_INT(res[i].done_calls, 1);
        CHECK(res[i].done_conn == &f[i]->c);
        CHECK(res[i].account_id > 0);
        for (int j = 0; j < i; j++)
            CHECK(res[i].account_id != res[j].account_id);
        fake_free(f[i]);
    }
}

static void test_job_client_gone(void)
{
    fake *f = fake_new(cfg);
    result res = {0};

    api_job(&f->c, test_work, test_done, ctx_new(&res));
    /* what conn_close does when the client disconnects mid-request */
    CHECK(f->c.handler.abort != NULL);
    if (f->c.handler.abort) f->c.handler.abort(&f->c, f->c.handler.ctx);
    f->c.handler = (http_handler){0};
    uv_run(&f->w.loop, UV_RUN_DEFAULT);

    CHECK_EQ_INT(res.work_ran, 1); /* the work is not cancelled: its write is not lost */
    CHECK_EQ_INT(res.done_calls, 1);
    CHECK(res.done_conn == NULL);
    fake_free(f);
}

static void test_job_store_failure(void)
{
    cfg_t bad;
    memset(&bad, 0, sizeof(bad));
    bad.sqlite_path = "/proc/ms-no-such-dir/x.db";
    /* forget the handles opened with the good config, so the pool threads open new ones */
    api_jobs_shutdown();

    fake *f = fake_new(&bad);
    result res = {0};
    /* the 500 goes nowhere: http_respond drops answers on a closing connection */
    f->c.closing = 1;
    api_job(&f->c, test_work, test_done, ctx_new(&res));
    uv_run(&f->w.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(res.work_ran, 0);
    CHECK_EQ_INT(res.done_calls, 1);
    CHECK(res.done_conn == NULL);
    fake_free(f);

    /* handles opened again after a shutdown, with a good config */
    api_jobs_shutdown();
    f = fake_new(cfg);
    memset(&res, 0, sizeof(res));
    api_job(&f->c, test_work, test_done, ctx_new(&res));
    uv_run(&f->w.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(res.work_ran, 1);
    CHECK_EQ_INT(res.had_store, 1);
    CHECK(res.done_conn == &f->c);
    fake_free(f);
}

/* ---- kc_apply ---- */

static void find_key(void *ud, const store_key *k)
{
    store_key *want = ud;
    if (k->id == want->id) *want = *k;
}

static void test_kc_apply_order(void)
{
    char err[256] = "", key[64];
    store_t *s = store_open(cfg, err, sizeof(err));
    int64_t acct = 0;
    store_key r1, r2, r3;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_account_create(s, "kc-apply", 0, &acct), STORE_OK);
    kc_t *kc = kc_start(cfg, err, sizeof(err));
    CHECK(kc != NULL);
    if (!kc) {
        store_close(s);
        return;
    }
    size_t n = strlen("ms-") + 40;

    CHECK_EQ_INT(store_key_create(s, acct, KEY_PROXY, "k", 0, -1, key, &r1), STORE_OK);
    kc_apply(kc, &r1);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_OK);

    store_key_patch p = {0};
    p.set_active = 1;
    p.active = 0;
    CHECK_EQ_INT(store_key_update(s, r1.id, &p, &r2), STORE_OK);
    CHECK(r2.seq > r1.seq);
    kc_apply(kc, &r2);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_INACTIVE);
    /* an older row arriving late changes nothing */
    kc_apply(kc, &r1);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_INACTIVE);

    CHECK_EQ_INT(store_key_delete(s, r1.id), STORE_OK);
    r3.id = r1.id;
    CHECK_EQ_INT(store_keys_since(s, r2.seq, find_key, &r3, NULL), STORE_OK);
    CHECK_EQ_INT(r3.deleted, 1);
    kc_apply(kc, &r3);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_NOT_FOUND);
    /* a deleted key never comes back, whatever arrives later */
    kc_apply(kc, &r2);
    kc_apply(kc, &r1);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_NOT_FOUND);
    /* ... nor once the refresher has seen the deletion too (and dropped the tombstone) */
    sleep_ms(600);
    kc_apply(kc, &r1);
    kc_apply(kc, &r2);
    CHECK_EQ_INT(kc_lookup(kc, key, n, ms_now_ms(), NULL), KC_NOT_FOUND);

    /* NULL-safe */
    kc_apply(NULL, &r1);
    kc_apply(kc, NULL);
    kc_stop(kc);
    store_close(s);
}

/* ---- api_parse_usd ---- */

static int64_t usd(const char *s, int *rc)
{
    int64_t v = -12345;
    *rc = api_parse_usd((ms_str){s, strlen(s)}, &v);
    return v;
}

static void test_parse_usd(void)
{
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"1", 1000000000},
        {"1500.5", 1500500000000},
        {"0.1", 100000000},
        {"0.000000001", 1},
        {"1e-9", 1},
        {"1e-7", 100},
        {"1.5E2", 150000000000},
        {"1.5e+2", 150000000000},
        {"25e-1", 2500000000},
        {"2.50000000000", 2500000000},
        {"0.0000000010", 1},
        {"-3.25", -3250000000},
        {"-0", 0},
        {"9223372036.854775807", INT64_MAX},
        {"100e-11", 1},
        {"0e50", 0},
    };
    static const char *bad[] = {
        "",     "0.0000000001", "1e-10", "9223372036.854775808",
        "1e10", "abc",          "1.",    ".5",
        "1e",   "1e+",          "--1",   "1.2.3",
        "0x10", "1e99999",      "+1",
    };
    int rc;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = usd(ok[i].in, &rc);
        if (rc != 0 || v != ok[i].want)
            fprintf(stderr, "api_parse_usd(\"%s\"): rc %d, %lld\n", ok[i].in, rc, (long long)v);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(v, ok[i].want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        usd(bad[i], &rc);
        if (rc != -1) fprintf(stderr, "api_parse_usd(\"%s\") accepted\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
    }
}

static void test_append_usd_and_time(void)
{
    buf_t b;
    buf_init(&b, 0);
    api_append_usd(&b, 1500500000000);
    buf_appends(&b, " ");
    api_append_usd(&b, -2000);
    buf_appends(&b, " ");
    api_append_usd(&b, 0);
    buf_appends(&b, " ");
    api_append_time(&b, 1764032523000); /* whole seconds: no fraction */
    buf_appends(&b, " ");
    api_append_time(&b, 1764032523042);
    buf_append(&b, "", 1);
    CHECK_EQ_STR(b.data,
                 "1500.5 -0.000002 0 \"2025-11-25T01:02:03Z\" \"2025-11-25T01:02:03.042Z\"");
    buf_free(&b);
}

static void run_all(void)
{
    setup();
    RUN(test_parse_usd);
    RUN(test_append_usd_and_time);
    RUN(test_job_runs_in_pool_and_answers_on_loop);
    RUN(test_job_many_in_parallel);
    RUN(test_job_client_gone);
    RUN(test_job_store_failure);
    RUN(test_kc_apply_order);
    api_jobs_shutdown();
    teardown();
}

int main(void)
{
    tdb_run(run_all);
    TAP_DONE();
}
