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

/* ---- commands in RESP, written in one pass ----
 * The hot commands (an admission, a request's end) are some thirty short arguments, most of them
 * numbers. hiredis's printf-style and argv builders format each through sds and snprintf, which
 * callgrind put at ~70,000 instructions per request; here each goes once into a bounded buffer on
 * the stack, numbers by a plain digit loop, and the bytes are handed to hiredis as they are. */

#define SH_CMD_MAX 2048 /* the largest hot command is under 1 KiB */
#define SH_CMD_HEAD 16  /* room for "*<argc>\r\n", written last in front of the arguments */

typedef struct sh_cmd {
    char buf[SH_CMD_MAX];
    size_t len; /* from SH_CMD_HEAD */
    int argc;
    int overflow;
} sh_cmd;

static void cmd_init(sh_cmd *c)
{
    c->len = SH_CMD_HEAD;
    c->argc = 0;
    c->overflow = 0;
}

/* Decimal digits of v ending at end; returns where they start. */
static char *cmd_digits(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static void cmd_str(sh_cmd *c, const char *p, size_t n)
{
    char tmp[24], *d = cmd_digits(tmp + sizeof tmp, n);
    size_t dn = (size_t)(tmp + sizeof tmp - d);
    if (c->len + 1 + dn + 2 + n + 2 > SH_CMD_MAX) {
        c->overflow = 1;
        return;
    }
    char *o = c->buf + c->len;
    *o++ = '$';
    memcpy(o, d, dn);
    o += dn;
    *o++ = '\r';
    *o++ = '\n';
    memcpy(o, p, n);
    o += n;
    *o++ = '\r';
    *o++ = '\n';
    c->len = (size_t)(o - c->buf);
    c->argc++;
}

static void cmd_i64(sh_cmd *c, int64_t v)
{
    char tmp[24], *d = cmd_digits(tmp + sizeof tmp, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0) *--d = '-';
    cmd_str(c, d, (size_t)(tmp + sizeof tmp - d));
}

/* A rate-limit counter's name: "k:<id>", "a:<id>", or "m:<16 hex digits>" for a model. */
static void cmd_counter(sh_cmd *c, const rl_limit *l)
{
    char tmp[24], *d;
    if (l->scope == 'm') {
        static const char hex[] = "0123456789abcdef";
        d = tmp + sizeof tmp;
        for (int i = 0; i < 16; i++)
            *--d = hex[(l->id >> (4 * i)) & 15];
    } else {
        d = cmd_digits(tmp + sizeof tmp, l->id);
    }
    *--d = ':';
    *--d = l->scope;
    cmd_str(c, d, (size_t)(tmp + sizeof tmp - d));
}

/* Sends c (a reply to fn, or none); REDIS_ERR when it overflowed or hiredis refused it. */
static int cmd_send(sh_worker *w, sh_cmd *c, redisCallbackFn *fn, void *priv)
{
    if (c->overflow) return REDIS_ERR;
    char head[SH_CMD_HEAD], *d = cmd_digits(head + sizeof head - 2, (uint64_t)c->argc);
    head[sizeof head - 2] = '\r';
    head[sizeof head - 1] = '\n';
    *--d = '*';
    size_t hn = (size_t)(head + sizeof head - d);
    char *start = c->buf + SH_CMD_HEAD - hn;
    memcpy(start, d, hn);
    return redisAsyncFormattedCommand(w->ac, fn, priv, start, c->len - (SH_CMD_HEAD - hn));
}

/* EVALSHA <script> 0: what every hot command starts with. */
static void cmd_eval(sh_cmd *c, sh_worker *w, int script)
{
    cmd_init(c);
    cmd_str(c, "EVALSHA", 7);
    cmd_str(c, w->sh->sha[script], 40);
    cmd_str(c, "0", 1);
}

sh_pending *sh_admit(sh_worker *w, const sh_admit_req *rq, sh_admit_cb cb, void *ud)
{
    if (!w->ac) return NULL;
    sh_pending *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    sh_cmd c;
    cmd_eval(&c, w, SH_ADMIT);
    cmd_str(&c, w->sh->inst, 32);
    cmd_i64(&c, SH_GRACE_MS);
    cmd_i64(&c, rq->nlim);
    for (int i = 0; i < rq->nlim && i < 3; i++) {
        const rl_limit *l = &rq->lim[i];
        cmd_counter(&c, l);
        cmd_i64(&c, l->requests);
        cmd_i64(&c, l->tokens);
        p->scope[i] = l->scope;
    }
    cmd_i64(&c, rq->tokens);
    const bill_snap *s = rq->snap;
    static const bill_snap none = {0};
    if (!s || rq->amount <= 0) s = &none;
    cmd_i64(&c, rq->amount > 0 ? rq->amount : 0);
    cmd_i64(&c, s->account_id);
    cmd_i64(&c, s->abal);
    cmd_i64(&c, s->aseq);
    cmd_i64(&c, (int64_t)s->aver);
    cmd_i64(&c, s->aresv);
    cmd_i64(&c, s->aresv - rq->amount > 0 ? s->aresv - rq->amount : 0);
    cmd_i64(&c, s->key_id);
    cmd_i64(&c, rq->spend_limit_nusd >= 0 ? rq->spend_limit_nusd : -1);
    cmd_i64(&c, s->kspent);
    cmd_i64(&c, (int64_t)s->kver);
    cmd_i64(&c, s->kresv);
    cmd_i64(&c, s->kresv - rq->amount > 0 ? s->kresv - rq->amount : 0);
    p->w = w;
    p->cb = cb;
    p->ud = ud;
    p->deadline = now_ms() + SH_TIMEOUT_MS;
    if (cmd_send(w, &c, on_admit, p) != REDIS_OK) {
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

/* One group of a snapshot: its kind ("a" account, "k" key), id, version and reservation, and
 * two empty fields (sh_lua_push's layout). */
static void cmd_snap_group(sh_cmd *c, const char *kind, int64_t id, uint64_t ver, int64_t resv)
{
    cmd_str(c, kind, 1);
    cmd_i64(c, id);
    cmd_i64(c, (int64_t)ver);
    cmd_i64(c, resv);
    cmd_str(c, "", 0);
    cmd_str(c, "", 0);
}

/* The snapshot's two groups. */
static void cmd_snap(sh_cmd *c, sh_worker *w, const bill_snap *s)
{
    cmd_str(c, w->sh->inst, 32);
    cmd_snap_group(c, "a", s->account_id, s->aver, s->aresv);
    cmd_snap_group(c, "k", s->key_id, s->kver, s->kresv);
}

void sh_push_snap(sh_worker *w, const bill_snap *s)
{
    if (!w || !w->ac || !s->aver) return; /* a lost one: the next snapshot or re-push mends it */
    sh_cmd c;
    cmd_eval(&c, w, SH_PUSH);
    cmd_snap(&c, w, s);
    cmd_send(w, &c, NULL, NULL);
}

void sh_end(sh_worker *w, const rl_limit *lim, int nlim, int64_t estimate, int64_t actual,
            const bill_snap *snap)
{
    if (!w || !w->ac) return;
    int ns = 0;
    for (int i = 0; i < nlim && i < 3; i++)
        ns += lim[i].tokens > 0; /* requests are never corrected */
    sh_cmd c;
    cmd_eval(&c, w, SH_CORRECT);
    cmd_i64(&c, ns);
    for (int i = 0; i < nlim && i < 3; i++) {
        if (lim[i].tokens <= 0) continue;
        cmd_counter(&c, &lim[i]);
        cmd_i64(&c, lim[i].tokens);
    }
    cmd_i64(&c, estimate < 0 ? 0 : estimate);
    cmd_i64(&c, actual < 0 ? 0 : actual);
    if (snap && snap->aver) cmd_snap(&c, w, snap);
    cmd_send(w, &c, NULL, NULL);
}
