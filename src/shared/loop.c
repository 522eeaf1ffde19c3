/*
 * The shared state's worker half (shared.h): one asynchronous Redis connection per worker, on the
 * worker's own libuv loop (hiredis's libuv adapter), so an admission costs the loop a write and a
 * read, never a wait. Commands on one connection are answered in order, and a worker's requests
 * share its connection: many admissions in flight are pipelined for free.
 *
 * An admission waits at most SH_TIMEOUT_MS. A late or missing answer is 503 for the request
 * (whatever Redis decided: if it did admit, the hold the caller takes back is un-reserved by the
 * snapshot that follows), and the connection is dropped and made again, so a Redis that hangs
 * cannot pile up requests. The connection's handles are unreferenced: an idle connection never
 * keeps a draining worker alive (a request waiting on it does, as any request in flight).
 */
#include "shared/shared_internal.h"

#include <hiredis/async.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define SH_TICK_MS 100
#define SH_RECONNECT_MS 200

struct sh_pending {
    sh_worker *w;
    sh_admit_cb cb;
    sh_reply_cb rcb; /* a command's (sh_command) instead of an admission's */
    void *ud;
    int64_t deadline;
    int done; /* answered, timed out or cancelled: the reply only frees it */
    char scope[3];
    sh_pending *prev, *next;
};

struct sh_worker {
    sh_t *sh;
    uv_loop_t *loop;
    redisAsyncContext *ac;
    uv_timer_t timer;
    int64_t next_connect;
    int freeing;
    int connected;            /* the current connection is established */
    int64_t connect_deadline; /* and must be by then */
    sh_pending *head, *tail;
    unsigned errors;
};

/* ---- hiredis on a libuv loop ----
 * Our own glue rather than hiredis's adapters/libuv.h: that one ignores a poll error, which is
 * how libuv reports a refused connect (POLLERR), so a connection to a Redis that is down would
 * wait forever instead of failing. Here an error is handed to hiredis as a read, which makes it
 * look at the socket, see the failure and end the connection through its callbacks. */
typedef struct sh_io {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis let go */
    int events;
} sh_io;

static void io_cb(uv_poll_t *h, int status, int events)
{
    sh_io *io = h->data;
    if (!io->ac) return;
    if (status < 0) {
        redisAsyncHandleRead(io->ac);
        return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(io->ac);
    if (io->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(io->ac);
}

static void io_set(sh_io *io, int events)
{
    io->events = events;
    if (events)
        uv_poll_start(&io->poll, events, io_cb);
    else
        uv_poll_stop(&io->poll);
}

static void io_add_read(void *d)
{
    io_set(d, ((sh_io *)d)->events | UV_READABLE);
}

static void io_del_read(void *d)
{
    io_set(d, ((sh_io *)d)->events & ~UV_READABLE);
}

static void io_add_write(void *d)
{
    io_set(d, ((sh_io *)d)->events | UV_WRITABLE);
}

static void io_del_write(void *d)
{
    io_set(d, ((sh_io *)d)->events & ~UV_WRITABLE);
}

static void io_closed(uv_handle_t *h)
{
    free(h->data);
}

static void io_cleanup(void *d)
{
    sh_io *io = d;
    io->ac = NULL;
    uv_close((uv_handle_t *)&io->poll, io_closed);
}

static int io_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    sh_io *io = calloc(1, sizeof *io);
    if (!io || uv_poll_init(loop, &io->poll, ac->c.fd) != 0) {
        free(io);
        return -1;
    }
    /* an idle connection does not keep a draining worker's loop alive */
    uv_unref((uv_handle_t *)&io->poll);
    io->poll.data = io;
    io->ac = ac;
    ac->ev.data = io;
    ac->ev.addRead = io_add_read;
    ac->ev.delRead = io_del_read;
    ac->ev.addWrite = io_add_write;
    ac->ev.delWrite = io_del_write;
    ac->ev.cleanup = io_cleanup;
    return 0;
}

static int64_t now_ms(void)
{
    return (int64_t)(ms_mono_ns() / 1000000u);
}

static void unlink_p(sh_worker *w, sh_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (w->head == p)
        w->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else if (w->tail == p)
        w->tail = p->prev;
    p->prev = p->next = NULL;
}

static void track(sh_worker *w, sh_pending *p)
{
    p->prev = w->tail;
    if (w->tail)
        w->tail->next = p;
    else
        w->head = p;
    w->tail = p;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sh_worker *w = ac->data;
    if (!w) return;
    if (w->ac == ac) w->ac = NULL;
    w->next_connect = now_ms() + SH_RECONNECT_MS;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sh_worker *w = ac->data;
    if (status == REDIS_OK && w && w->ac == ac) w->connected = 1;
    if (status != REDIS_OK && w && w->ac == ac) {
        /* hiredis frees the context after this callback */
        w->ac = NULL;
        w->next_connect = now_ms() + SH_RECONNECT_MS;
    }
}

static void connect_now(sh_worker *w)
{
    const sh_addr *a = &w->sh->addr;
    redisAsyncContext *ac =
        a->path[0] ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->ip, a->port);
    w->next_connect = now_ms() + SH_RECONNECT_MS;
    if (!ac) return;
    if (ac->err || io_attach(ac, w->loop) != 0) {
        redisAsyncFree(ac);
        return;
    }
    ac->data = w;
    w->connected = 0;
    w->connect_deadline = now_ms() + SH_TIMEOUT_MS;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued until connected, and answered before anything sent after them */
    if (a->password[0]) redisAsyncCommand(ac, NULL, NULL, "AUTH %s", a->password);
    if (a->db) redisAsyncCommand(ac, NULL, NULL, "SELECT %d", a->db);
    for (int i = 0; i < SH_NSCRIPTS; i++)
        redisAsyncCommand(ac, NULL, NULL, "SCRIPT LOAD %s", w->sh->script[i]);
    w->ac = ac;
}

static void fail_pending(sh_pending *p, int64_t retry_ms)
{
    sh_verdict v = {.status = SH_UNAVAILABLE, .retry_after_ms = retry_ms};
    p->done = 1;
    if (p->rcb)
        p->rcb(p->ud, NULL);
    else
        p->cb(p->ud, &v);
}

static void on_tick(uv_timer_t *t)
{
    sh_worker *w = t->data;
    int64_t now = now_ms();
    int expired = 0;
    while (w->head && w->head->deadline <= now) {
        sh_pending *p = w->head;
        unlink_p(w, p);
        fail_pending(p, 1000);
        expired = 1;
    }
    /* Redis did not answer in time, or a connect did not complete: the connection may be stuck
     * behind a slow command or a dead peer; make a fresh one (freeing it answers what still
     * waits on it, each reply callback then seeing a NULL reply) */
    if (w->ac && (expired || (!w->connected && now >= w->connect_deadline))) {
        redisAsyncContext *ac = w->ac;
        w->ac = NULL;
        w->next_connect = now + SH_RECONNECT_MS;
        redisAsyncFree(ac);
    }
    if (!w->ac && now >= w->next_connect) connect_now(w);
}

sh_worker *sh_worker_new(sh_t *sh, uv_loop_t *loop)
{
    sh_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->sh = sh;
    w->loop = loop;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_tick, SH_TICK_MS, SH_TICK_MS);
    uv_unref((uv_handle_t *)&w->timer);
    connect_now(w);
    return w;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void sh_worker_free(sh_worker *w)
{
    if (!w) return;
    w->freeing = 1;
    if (w->ac) {
        redisAsyncContext *ac = w->ac;
        w->ac = NULL;
        redisAsyncFree(ac); /* its callbacks see freeing and only free */
    }
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, timer_closed);
}

static int64_t int_at(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer
                                                                         : 0;
}

static void on_admit(redisAsyncContext *ac, void *reply, void *priv)
{
    sh_pending *p = priv;
    sh_worker *w = p->w;
    redisReply *r = reply;
    if (p->done || w->freeing) {
        free(p);
        return;
    }
    unlink_p(w, p);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 10) {
        if (r && r->type == REDIS_REPLY_ERROR && w->errors++ % 100 == 0)
            log_warn("shared state: an admission failed in Redis: %.200s", r->str);
        fail_pending(p, 1000);
        free(p);
        return;
    }
    sh_verdict v = {.have_rl = 1};
    int64_t code = int_at(r, 0);
    v.rl.limit_requests = int_at(r, 4);
    v.rl.remaining_requests = int_at(r, 5);
    v.rl.reset_requests_ms = int_at(r, 6);
    v.rl.limit_tokens = int_at(r, 7);
    v.rl.remaining_tokens = int_at(r, 8);
    v.rl.reset_tokens_ms = int_at(r, 9);
    switch (code) {
    case 0:
        v.status = SH_OK;
        v.rl.allowed = 1;
        break;
    case 1: {
        int64_t dim = int_at(r, 1), slot = int_at(r, 2);
        v.status = SH_RATE_LIMITED;
        v.retry_after_ms = v.rl.retry_after_ms = int_at(r, 3);
        v.rl.which = dim == 2 ? "tokens" : "requests";
        v.rl.scope = rl_scope_name(slot >= 1 && slot <= 3 ? p->scope[slot - 1] : 'k');
        break;
    }
    case 2:
        v.status = SH_INSUFFICIENT;
        break;
    case 3:
        v.status = SH_SPEND_LIMIT;
        break;
    default: /* 4: a new epoch's grace; 5: this instance is not registered yet */
        v.status = SH_UNAVAILABLE;
        v.have_rl = 0;
        v.retry_after_ms = code == 4 && int_at(r, 1) > 0 ? int_at(r, 1) : 1000;
        break;
    }
    p->done = 1;
    p->cb(p->ud, &v);
    free(p);
}

/* Decimal text of v into a slot of the argument buffer. */
#define ARG_NUM(v)                                                                                 \
    do {                                                                                           \
        snprintf(num[nn], sizeof num[nn], "%" PRId64, (int64_t)(v));                               \
        argv[argc++] = num[nn++];                                                                  \
    } while (0)

sh_pending *sh_admit(sh_worker *w, const sh_admit_req *rq, sh_admit_cb cb, void *ud)
{
    if (!w->ac) return NULL;
    sh_pending *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    const char *argv[48];
    char num[40][24];
    int argc = 0, nn = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = w->sh->sha[SH_ADMIT];
    argv[argc++] = "0";
    argv[argc++] = w->sh->inst;
    ARG_NUM(SH_GRACE_MS);
    ARG_NUM(rq->nlim);
    for (int i = 0; i < rq->nlim && i < 3; i++) {
        const rl_limit *l = &rq->lim[i];
        if (l->scope == 'm')
            snprintf(num[nn], sizeof num[nn], "m:%016" PRIx64, l->id);
        else
            snprintf(num[nn], sizeof num[nn], "%c:%" PRIu64, l->scope, l->id);
        argv[argc++] = num[nn++];
        ARG_NUM(l->requests);
        ARG_NUM(l->tokens);
        p->scope[i] = l->scope;
    }
    ARG_NUM(rq->tokens);
    const bill_snap *s = rq->snap;
    static const bill_snap none = {0};
    if (!s || rq->amount <= 0) s = &none;
    ARG_NUM(rq->amount > 0 ? rq->amount : 0);
    ARG_NUM(s->account_id);
    ARG_NUM(s->abal);
    ARG_NUM(s->aseq);
    ARG_NUM(s->aver);
    ARG_NUM(s->aresv);
    ARG_NUM(s->aresv - rq->amount > 0 ? s->aresv - rq->amount : 0);
    ARG_NUM(s->key_id);
    ARG_NUM(rq->spend_limit_nusd >= 0 ? rq->spend_limit_nusd : -1);
    ARG_NUM(s->kspent);
    ARG_NUM(s->kver);
    ARG_NUM(s->kresv);
    ARG_NUM(s->kresv - rq->amount > 0 ? s->kresv - rq->amount : 0);
    p->w = w;
    p->cb = cb;
    p->ud = ud;
    p->deadline = now_ms() + SH_TIMEOUT_MS;
    if (redisAsyncCommandArgv(w->ac, on_admit, p, argc, argv, NULL) != REDIS_OK) {
        free(p);
        return NULL;
    }
    track(w, p);
    return p;
}

void sh_admit_cancel(sh_pending *p)
{
    if (!p || p->done) return;
    unlink_p(p->w, p);
    p->done = 1; /* freed when its reply (or the connection's end) comes */
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    sh_pending *p = priv;
    sh_worker *w = p->w;
    if (p->done || w->freeing) {
        free(p);
        return;
    }
    unlink_p(w, p);
    p->done = 1;
    p->rcb(p->ud, reply);
    free(p);
}

sh_pending *sh_command(sh_worker *w, int argc, const char **argv, const size_t *lens,
                       sh_reply_cb cb, void *ud)
{
    if (!w || !w->ac) return NULL;
    if (!cb) {
        redisAsyncCommandArgv(w->ac, NULL, NULL, argc, argv, lens);
        return NULL;
    }
    sh_pending *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->w = w;
    p->rcb = cb;
    p->ud = ud;
    p->deadline = now_ms() + SH_TIMEOUT_MS;
    if (redisAsyncCommandArgv(w->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
        free(p);
        return NULL;
    }
    track(w, p);
    return p;
}

/* The snapshot's two groups (sh_lua_push's layout) at argv + argc; returns the new argc. */
static int snap_args(sh_worker *w, const bill_snap *s, const char **argv, int argc, char (*num)[24])
{
    int nn = 0;
    argv[argc++] = w->sh->inst;
    argv[argc++] = "a";
    ARG_NUM(s->account_id);
    ARG_NUM(s->aver);
    ARG_NUM(s->aresv);
    argv[argc++] = "";
    argv[argc++] = "";
    argv[argc++] = "k";
    ARG_NUM(s->key_id);
    ARG_NUM(s->kver);
    ARG_NUM(s->kresv);
    argv[argc++] = "";
    argv[argc++] = "";
    return argc;
}

void sh_push_snap(sh_worker *w, const bill_snap *s)
{
    if (!w || !w->ac || !s->aver) return; /* a lost one: the next snapshot or re-push mends it */
    const char *argv[20];
    char num[8][24];
    int argc = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = w->sh->sha[SH_PUSH];
    argv[argc++] = "0";
    argc = snap_args(w, s, argv, argc, num);
    redisAsyncCommandArgv(w->ac, NULL, NULL, argc, argv, NULL);
}

void sh_end(sh_worker *w, const rl_limit *lim, int nlim, int64_t estimate, int64_t actual,
            const bill_snap *snap)
{
    if (!w || !w->ac) return;
    const char *argv[32];
    char num[12][24], snum[8][24];
    int argc = 0, nn = 0, ns = 0;
    argv[argc++] = "EVALSHA";
    argv[argc++] = w->sh->sha[SH_CORRECT];
    argv[argc++] = "0";
    int at = argc++;
    for (int i = 0; i < nlim && i < 3; i++) {
        if (lim[i].tokens <= 0) continue; /* requests are never corrected */
        if (lim[i].scope == 'm')
            snprintf(num[nn], sizeof num[nn], "m:%016" PRIx64, lim[i].id);
        else
            snprintf(num[nn], sizeof num[nn], "%c:%" PRIu64, lim[i].scope, lim[i].id);
        argv[argc++] = num[nn++];
        ARG_NUM(lim[i].tokens);
        ns++;
    }
    snprintf(num[nn], sizeof num[nn], "%d", ns);
    argv[at] = num[nn++];
    ARG_NUM(estimate < 0 ? 0 : estimate);
    ARG_NUM(actual < 0 ? 0 : actual);
    if (snap && snap->aver) argc = snap_args(w, snap, argv, argc, snum);
    redisAsyncCommandArgv(w->ac, NULL, NULL, argc, argv, NULL);
}
