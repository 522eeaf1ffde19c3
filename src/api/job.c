/*
 * api_job (see job.h): store work on libuv's thread pool, answered back on the worker's loop.
 *
 * libuv's pool is process-wide and small (UV_THREADPOOL_SIZE, 4 by default), so each pool thread
 * keeps one store handle for its whole life instead of opening one per job: opening runs the
 * migration check and prepares statements. The handle lives in a thread-local pointer; the
 * registry is only there so that shutdown can close every handle from the main thread, and a
 * generation number makes a pool thread notice that its handle was closed and open a new one.
 *
 * A job holds the config generation it was queued on (server.h): the pool thread reads the
 * store's settings from it, and the done callback may still use what the request parsed from it.
 *
 * The abort hook is what keeps a job safe against a client that goes away: the connection calls
 * it (and then may free itself) while the work is still in the pool. The job cannot be cancelled
 * at that point, so abort only marks it; the after-work callback then skips the answer. The loop
 * cannot exit while a job is queued (a uv_work_t is an active request), so after-work always
 * runs and ctx is always freed.
 */
#include "api/job.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/api.h"
#include "common/log.h"

typedef struct api_job_t {
    uv_work_t req;
    http_conn *c; /* NULL once aborted */
    worker_t *bg; /* api_job_bg: the worker whose drain waits for it */
    srv_gen *gen; /* a reference */
    const cfg_t *cfg;
    api_job_work_fn work;
    api_job_done_fn done;
    void *ctx;
    int no_store; /* the pool thread had no store handle: the work did not run */
} api_job_t;

/* ---- the pool threads' store handles ---- */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static store_t **reg_handles; /* guarded by reg_mu */
static size_t reg_len, reg_cap;
static unsigned reg_gen = 1; /* bumped by api_jobs_shutdown */

static _Thread_local store_t *tl_store;
static _Thread_local unsigned tl_gen;

/* The calling pool thread's handle, opened on first use. NULL (logged) when the store cannot be
 * opened; the next job tries again. */
static store_t *thread_store(const cfg_t *cfg)
{
    char err[512] = "";
    unsigned gen;

    pthread_mutex_lock(&reg_mu);
    gen = reg_gen;
    pthread_mutex_unlock(&reg_mu);
    if (tl_store && tl_gen == gen) return tl_store;
    tl_store = NULL; /* closed by api_jobs_shutdown */

    store_t *s = store_open(cfg, err, sizeof err);
    if (!s) {
        log_error("api: cannot open the store in a pool thread: %s", err);
        return NULL;
    }
    pthread_mutex_lock(&reg_mu);
    if (reg_len == reg_cap) {
        size_t ncap = reg_cap ? reg_cap * 2 : 8;
        store_t **n = realloc(reg_handles, ncap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&reg_mu);
            store_close(s);
            log_error("api: out of memory registering a store handle");
            return NULL;
        }
        reg_handles = n;
        reg_cap = ncap;
    }
    reg_handles[reg_len++] = s;
    gen = reg_gen;
    pthread_mutex_unlock(&reg_mu);
    tl_store = s;
    tl_gen = gen;
    return s;
}

void api_jobs_shutdown(void)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < reg_len; i++)
        store_close(reg_handles[i]);
    free(reg_handles);
    reg_handles = NULL;
    reg_len = reg_cap = 0;
    reg_gen++;
    pthread_mutex_unlock(&reg_mu);
}

/* ---- jobs ---- */

static void job_work(uv_work_t *req)
{
    api_job_t *j = req->data;
    store_t *s = thread_store(j->cfg);
    if (!s) {
        j->no_store = 1;
        return;
    }
    j->work(j->ctx, s);
}

static void job_after(uv_work_t *req, int status)
{
    api_job_t *j = req->data;
    http_conn *c = j->c;

    if (c) {
        /* The request is ours to answer: the connection must not call back into a freed job. */
        c->handler = (http_handler){0};
        if (status < 0 || j->no_store) {
            api_err_internal(c);
            c = NULL;
        }
    }
    j->done(c, j->ctx);
    free(j->ctx);
    srv_gen_release(j->gen);
    if (j->bg) srv_app_work_end(j->bg); /* may let a draining worker stop */
    free(j);
}

static int job_abort(http_conn *c, void *ctx)
{
    api_job_t *j = ctx;
    /* The work may be running right now: only the loop thread reads j->c, after it is done. */
    j->c = NULL;
    return 0;
}

void api_job(http_conn *c, api_job_work_fn work, api_job_done_fn done, void *ctx)
{
    api_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        api_err_internal(c);
        done(NULL, ctx);
        free(ctx);
        return;
    }
    j->c = c;
    j->gen = srv_gen_hold(c->w->gen);
    j->cfg = j->gen->cfg;
    j->work = work;
    j->done = done;
    j->ctx = ctx;
    j->req.data = j;
    if (uv_queue_work(&c->w->loop, &j->req, job_work, job_after) != 0) {
        srv_gen_release(j->gen);
        free(j);
        api_err_internal(c);
        done(NULL, ctx);
        free(ctx);
        return;
    }
    c->handler = (http_handler){.ctx = j, .abort = job_abort, .drained = NULL};
}

int api_job_bg(worker_t *w, api_job_work_fn work, api_job_done_fn done, void *ctx)
{
    api_job_t *j = calloc(1, sizeof *j);
    if (!j) return -1;
    j->bg = w;
    j->gen = srv_gen_hold(w->gen);
    j->cfg = j->gen->cfg;
    j->work = work;
    j->done = done;
    j->ctx = ctx;
    j->req.data = j;
    if (uv_queue_work(&w->loop, &j->req, job_work, job_after) != 0) {
        srv_gen_release(j->gen);
        free(j);
        return -1;
    }
    srv_app_work_begin(w);
    return 0;
}
