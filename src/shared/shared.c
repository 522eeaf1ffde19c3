/*
 * The shared state's process half (shared.h): the address, the instance's identity, the
 * background threads, change notices, and the ledger's pushes.
 *
 * The data in Redis (every name under "ms:"):
 *   ms:epoch            {id, ready}: made by whoever finds Redis empty (a first start, or a
 *                       Redis that lost its data); until `ready` nothing is admitted, while
 *                       every instance notices the new id and re-registers
 *   ms:live:<inst>      an instance's heartbeat, SH_LIVE_TTL_MS long: a reservation counts only
 *                       while its instance's live key exists
 *   ms:a:<account>      {bal, seq}: the balance as of the store's row with that seq (the newest
 *                       row any instance read wins); {r:<inst>, v:<inst>}: what each instance
 *                       reserves of it and the version of that snapshot
 *   ms:k:<key>          {spent}: the key's committed spend (only grows); r:/v: as above
 *   ms:rl:<scope>:<id>  {t1, l1, t2, l2}: GCRA state of a key's, account's or model's requests
 *                       and tokens per minute, expiring when replenished
 *   ms:changes          the channel of change notices: "k" keys, "a" accounts
 * Available money = bal - the sum of the live instances' reservations; a key's room = its spend
 * limit - spent - the same sums. Why that is exact, and what each fault costs: docs/BILLING.md.
 */
#include "shared/shared_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

/* ---- the address ---- */

/* A decimal number of 1 to 7 digits (no sign, no space: strtol would take both) into *v; the
 * end in *end. */
static int sh_addr_num(const char *p, long *v, const char **end)
{
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n > 7) return -1;
    char *e;
    *v = strtol(p, &e, 10);
    *end = e;
    return 0;
}

int sh_addr_split(const char *url, sh_addr *a, char *host, size_t hostlen, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (strncmp(url, "unix:", 5) == 0) {
        if (strlen(url + 5) == 0 || strlen(url + 5) >= sizeof a->path) {
            snprintf(err, errlen, "redis: a unix: URL needs a socket path");
            return -1;
        }
        snprintf(a->path, sizeof a->path, "%s", url + 5);
        return 0;
    }
    /* the config checks the scheme; checked again so that no caller reads past a short string */
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis: give a redis://HOST:PORT/DB or unix:PATH URL");
        return -1;
    }
    const char *p = url + 8;
    /* the last '@': a password may hold '@' (no percent-decoding), and no part of it may end up
     * in the host, which error messages name */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t n = (size_t)(at - pw);
        if (n >= sizeof a->password) {
            snprintf(err, errlen, "redis: the password is too long");
            return -1;
        }
        memcpy(a->password, pw, n);
        p = at + 1;
    }
    size_t hn = strcspn(p, ":/");
    if (hn == 0 || hn >= hostlen) {
        snprintf(err, errlen, "redis: no host in the URL");
        return -1;
    }
    memcpy(host, p, hn);
    host[hn] = '\0';
    p += hn;
    a->port = 6379;
    if (*p == ':') {
        long port;
        if (sh_addr_num(p + 1, &port, &p) != 0 || port < 1 || port > 65535) {
            snprintf(err, errlen, "redis: bad port in the URL");
            return -1;
        }
        a->port = (int)port;
    }
    if (*p == '/' && p[1]) {
        long db;
        if (sh_addr_num(p + 1, &db, &p) != 0 || *p || db > 1000000) {
            snprintf(err, errlen, "redis: bad database number in the URL");
            return -1;
        }
        a->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "redis: unexpected text after the host in the URL");
        return -1;
    }
    return 0;
}

int sh_addr_parse(const char *url, sh_addr *a, char *err, size_t errlen)
{
    char host[256];
    if (sh_addr_split(url, a, host, sizeof host, err, errlen) != 0) return -1;
    if (a->path[0]) return 0;
    /* resolved here, once: the workers connect to the address, never to a name */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "redis: cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    void *src = res->ai_family == AF_INET
                    ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
                    : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    inet_ntop(res->ai_family, src, a->ip, sizeof a->ip);
    freeaddrinfo(res);
    return 0;
}

void sh_addr_describe(const sh_addr *a, char *out, size_t n)
{
    if (a->path[0])
        snprintf(out, n, "unix:%s", a->path);
    else
        snprintf(out, n, "redis://%s:%d/%d", a->ip, a->port, a->db);
}

static int reply_ok(redisReply *r)
{
    return r && r->type != REDIS_REPLY_ERROR;
}

redisContext *sh_connect_sync(const sh_addr *a, const char *const *scripts, int timeout_ms,
                              char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = a->path[0] ? redisConnectUnixWithTimeout(a->path, tv)
                                 : redisConnectWithTimeout(a->ip, a->port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r;
    if (a->password[0]) {
        r = redisCommand(c, "AUTH %s", a->password);
        if (!reply_ok(r)) goto fail;
        freeReplyObject(r);
    }
    if (a->db) {
        r = redisCommand(c, "SELECT %d", a->db);
        if (!reply_ok(r)) goto fail;
        freeReplyObject(r);
    }
    for (int i = 0; scripts && i < SH_NSCRIPTS; i++) {
        r = redisCommand(c, "SCRIPT LOAD %s", scripts[i]);
        if (!reply_ok(r)) goto fail;
        freeReplyObject(r);
    }
    return c;
fail:
    /* never the password: only Redis's own message */
    snprintf(err, errlen, "%s", r ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* ---- change notices ---- */

void sh_publish(sh_t *sh, char what)
{
    if (!sh) return;
    pthread_mutex_lock(&sh->mu);
    sh->publish |= what == 'k' ? 1u : 2u;
    pthread_cond_signal(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
}

int sh_publish_once(const cfg_t *cfg, char what, char *err, size_t errlen)
{
    sh_addr a;
    if (!cfg->redis_url) return 0;
    if (sh_addr_parse(cfg->redis_url, &a, err, errlen) != 0) return -1;
    redisContext *c = sh_connect_sync(&a, NULL, 1000, err, errlen);
    if (!c) return -1;
    redisReply *r = redisCommand(c, "PUBLISH ms:changes %s", what == 'k' ? "k" : "a");
    int ok = reply_ok(r);
    if (!ok) snprintf(err, errlen, "%s", r ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

/* ---- pushing reservations (the ledger thread, and ms-redis when re-registering) ---- */

#define SH_PUSH_CHUNK 128 /* entries per script call: a bounded argument list */

static int push_batch(sh_t *sh, redisContext *c, const bill_push *p, size_t n)
{
    for (size_t off = 0; off < n; off += SH_PUSH_CHUNK) {
        size_t m = n - off < SH_PUSH_CHUNK ? n - off : SH_PUSH_CHUNK;
        size_t argc = 4 + 6 * m;
        const char **argv = malloc(argc * sizeof *argv);
        char(*num)[5][24] = malloc(m * sizeof *num);
        char kinds[SH_PUSH_CHUNK][2];
        if (!argv || !num) {
            free(argv);
            free(num);
            return -1;
        }
        argv[0] = "EVALSHA";
        argv[1] = sh->sha[SH_PUSH];
        argv[2] = "0";
        argv[3] = sh->inst;
        for (size_t i = 0; i < m; i++) {
            const bill_push *e = &p[off + i];
            kinds[i][0] = e->kind;
            kinds[i][1] = '\0';
            snprintf(num[i][0], 24, "%" PRId64, e->id);
            snprintf(num[i][1], 24, "%" PRIu64, e->ver);
            snprintf(num[i][2], 24, "%" PRId64, e->resv < 0 ? 0 : e->resv);
            snprintf(num[i][3], 24, "%" PRId64, e->row_value < 0 ? 0 : e->row_value);
            const char **g = argv + 4 + 6 * i;
            g[0] = kinds[i];
            g[1] = num[i][0];
            snprintf(num[i][4], 24, "%" PRId64, e->row_seq);
            /* version 0: a row alone, the reservation left as it is (re-registration) */
            g[2] = e->ver ? num[i][1] : "";
            g[3] = num[i][2];
            g[4] = e->has_row ? num[i][3] : "";
            g[5] = e->kind == 'a' && e->has_row ? num[i][4] : "";
        }
        redisReply *r = redisCommandArgv(c, (int)argc, argv, NULL);
        int ok = reply_ok(r);
        if (r) freeReplyObject(r);
        free(argv);
        free(num);
        if (!ok) return -1;
    }
    return 0;
}

/* bill_set_pusher's: the ledger thread, on a connection of its own (made when first needed and
 * again after a failure). */
static int ledger_push(void *ud, const bill_push *p, size_t n)
{
    sh_t *sh = ud;
    char err[256];
    if (!sh->lc && !(sh->lc = sh_connect_sync(&sh->addr, sh->script, 1000, err, sizeof err)))
        return -1;
    if (push_batch(sh, sh->lc, p, n) == 0) return 0;
    redisFree(sh->lc);
    sh->lc = NULL;
    return -1;
}

/* ---- ms-redis: heartbeat, re-registration, notices out ---- */

typedef struct rows {
    bill_push *p;
    size_t n, cap;
    int oom;
} rows;

static void rows_add(rows *r, bill_push e)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 256;
        bill_push *np = realloc(r->p, nc * sizeof *np);
        if (!np) {
            r->oom = 1;
            return;
        }
        r->p = np;
        r->cap = nc;
    }
    r->p[r->n++] = e;
}

static void spend_row(void *ud, int64_t key_id, int64_t account_id, int64_t spent)
{
    (void)account_id;
    rows_add(ud, (bill_push){.kind = 'k', .id = key_id, .has_row = 1, .row_value = spent});
}

/* Redis has a new epoch (it lost its data, or this is the first start): tell it everything this
 * instance reserves, and the store's rows (balances with their seqs, key spends) so that nothing
 * is seeded from one instance's older view. Admissions wait for the epoch's grace meanwhile. */
static int reregister(sh_t *sh, store_t **st)
{
    bill_push *mine;
    size_t n;
    char err[256];
    if (bill_reservations(sh->bill, &mine, &n) != 0) return -1;
    int rc = push_batch(sh, sh->bc, mine, n);
    free(mine);
    if (rc != 0) return -1;
    if (!*st && !(*st = store_open(sh->cfg, err, sizeof err))) {
        log_warn("shared state: cannot open the store to re-register balances: %s", err);
        return 0; /* the reservations are in; balances are seeded as requests come */
    }
    rows r = {0};
    store_account *acc = NULL;
    size_t na = 0;
    if (store_account_list(*st, &acc, &na) == STORE_OK) {
        for (size_t i = 0; i < na; i++)
            rows_add(&r, (bill_push){.kind = 'a',
                                     .id = acc[i].id,
                                     .has_row = 1,
                                     .row_value = acc[i].balance_nusd,
                                     .row_seq = acc[i].seq});
        free(acc);
    }
    store_key_spends(*st, spend_row, &r);
    rc = r.oom ? -1 : push_batch(sh, sh->bc, r.p, r.n);
    free(r.p);
    return rc;
}

/* One heartbeat: renews this instance's live key; after a new epoch, or once the key had
 * expired, re-registers every reservation first and only then becomes live again, so no
 * admission of this instance is ever checked against a partial set of its own reservations. */
static int beat(sh_t *sh, store_t **st, const char *where)
{
    char id[sizeof sh->epoch];
    for (int mode = 0; mode < 2; mode++) {
        redisReply *r = redisCommand(sh->bc, "EVALSHA %s 0 %s %d %d %s", sh->sha[SH_BEAT], sh->inst,
                                     SH_LIVE_TTL_MS, SH_GRACE_MS, mode ? "live" : "beat");
        int ok = reply_ok(r) && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                 r->element[0]->type == REDIS_REPLY_STRING;
        int live = ok && r->element[1]->type == REDIS_REPLY_INTEGER && r->element[1]->integer;
        int64_t wait =
            ok && r->element[2]->type == REDIS_REPLY_INTEGER ? r->element[2]->integer : 0;
        if (ok) snprintf(id, sizeof id, "%s", r->element[0]->str);
        /* /readyz: admitting from then on, if this beat leaves the instance live */
        if (ok && (live || mode == 1))
            atomic_store(&sh->admit_from_ms, (int64_t)(ms_mono_ns() / 1000000u) + wait);
        if (r) freeReplyObject(r);
        if (!ok) return -1;
        if (mode == 1) break;
        int fresh = strcmp(id, sh->epoch) != 0;
        if (live && !fresh) return 0;
        if (reregister(sh, st) != 0) return -1;
        if (fresh && sh->epoch[0])
            log_warn("shared state: %s has a new epoch (it lost its data or was replaced); this "
                     "instance re-registered its reservations",
                     where);
        else if (!live && sh->epoch[0])
            log_warn("shared state: this instance had stopped being counted by %s (no heartbeat "
                     "for %d ms); it re-registered its reservations",
                     where, SH_LIVE_TTL_MS);
        snprintf(sh->epoch, sizeof sh->epoch, "%s", id);
    }
    return 0;
}

static int64_t mono_ms(void)
{
    return (int64_t)(ms_mono_ns() / 1000000u);
}

static void *beat_main(void *arg)
{
    sh_t *sh = arg;
    char err[256], where[160];
    unsigned failures = 0;
    int64_t next_beat = 0;
    store_t *st = NULL;
    pthread_setname_np(pthread_self(), "ms-redis");
    sh_addr_describe(&sh->addr, where, sizeof where);
    pthread_mutex_lock(&sh->mu);
    while (!sh->stop) {
        int64_t now = mono_ms();
        if (!sh->publish && now < next_beat) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t ns = ts.tv_nsec + (next_beat - now) * 1000000;
            ts.tv_sec += ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&sh->cv, &sh->mu, &ts);
            continue;
        }
        unsigned pub = sh->publish;
        sh->publish = 0;
        pthread_mutex_unlock(&sh->mu);

        int ok = 1;
        if (!sh->bc && !(sh->bc = sh_connect_sync(&sh->addr, sh->script, 1000, err, sizeof err)))
            ok = 0;
        for (int i = 0; ok && i < 2; i++) {
            if (!(pub & (1u << i))) continue;
            redisReply *r = redisCommand(sh->bc, "PUBLISH ms:changes %s", i ? "a" : "k");
            ok = reply_ok(r);
            if (r) freeReplyObject(r);
            if (ok) pub &= ~(1u << i);
        }
        if (ok && now >= next_beat) {
            ok = beat(sh, &st, where) == 0;
            if (ok) next_beat = mono_ms() + SH_BEAT_MS;
        }
        if (!ok) {
            atomic_store(&sh->admit_from_ms, INT64_MAX);
            if (failures++ % 20 == 0)
                log_warn("shared state: %s does not answer (%s); new requests get 503 until it "
                         "does",
                         where, sh->bc ? sh->bc->errstr : err);
            if (sh->bc) redisFree(sh->bc);
            sh->bc = NULL;
            next_beat = mono_ms() + 200; /* retry soon: instances wait for this */
        } else if (failures) {
            log_warn("shared state: %s answers again", where);
            failures = 0;
        }
        pthread_mutex_lock(&sh->mu);
        sh->publish |= pub; /* what could not be sent goes with the next try */
    }
    pthread_mutex_unlock(&sh->mu);
    if (st) store_close(st);
    return NULL;
}

/* ---- ms-redis-sub: notices in ---- */

static void *sub_main(void *arg)
{
    sh_t *sh = arg;
    char err[256];
    pthread_setname_np(pthread_self(), "ms-redis-sub");
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        int stop = sh->stop;
        pthread_mutex_unlock(&sh->mu);
        if (stop) break;
        redisContext *c = sh_connect_sync(&sh->addr, NULL, 1000, err, sizeof err);
        redisReply *r = c ? redisCommand(c, "SUBSCRIBE ms:changes") : NULL;
        if (!reply_ok(r)) {
            if (r) freeReplyObject(r);
            if (c) redisFree(c);
            struct timespec ts = {0, 200 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        freeReplyObject(r);
        redisSetTimeout(c, (struct timeval){0, 0}); /* wait for notices as long as it takes */
        pthread_mutex_lock(&sh->mu);
        if (sh->stop) {
            pthread_mutex_unlock(&sh->mu);
            redisFree(c);
            break;
        }
        atomic_store(&sh->sub_fd, c->fd);
        pthread_mutex_unlock(&sh->mu);
        /* notices sent while this connection was down are lost: look now */
        kc_poke(sh->kc);
        bill_poke(sh->bill);
        void *v;
        while (redisGetReply(c, &v) == REDIS_OK) {
            redisReply *m = v;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                m->element[2]->type == REDIS_REPLY_STRING) {
                const char *what = m->element[2]->str;
                if (strchr(what, 'k')) kc_poke(sh->kc);
                if (strchr(what, 'a')) bill_poke(sh->bill);
            }
            freeReplyObject(m);
        }
        pthread_mutex_lock(&sh->mu);
        atomic_store(&sh->sub_fd, -1);
        pthread_mutex_unlock(&sh->mu);
        redisFree(c);
    }
    return NULL;
}

/* ---- start, stop ---- */

static void leave(void *ud, bill_t *b);

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

sh_t *sh_start(const cfg_t *cfg, bill_t *bill, kc_t *kc, char *err, size_t errlen)
{
    sh_t *sh = calloc(1, sizeof *sh);
    if (!sh) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sh->cfg = cfg;
    sh->bill = bill;
    sh->kc = kc;
    atomic_store(&sh->sub_fd, -1);
    atomic_store(&sh->admit_from_ms, INT64_MAX);
    if (sh_addr_parse(cfg->redis_url, &sh->addr, err, errlen) != 0) {
        free(sh);
        return NULL;
    }
    unsigned char id[16];
    if (RAND_bytes(id, sizeof id) != 1) {
        snprintf(err, errlen, "no randomness for the instance id");
        free(sh);
        return NULL;
    }
    for (int i = 0; i < 16; i++)
        snprintf(sh->inst + 2 * i, 3, "%02x", id[i]);
    sh->script[SH_ADMIT] = sh_lua_admit;
    sh->script[SH_CORRECT] = sh_lua_correct;
    sh->script[SH_PUSH] = sh_lua_push;
    sh->script[SH_BEAT] = sh_lua_beat;
    for (int i = 0; i < SH_NSCRIPTS; i++)
        sha1_hex(sh->script[i], sh->sha[i]);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sh->cv, &ca);
    pthread_condattr_destroy(&ca);

    char where[160], cerr[256];
    sh_addr_describe(&sh->addr, where, sizeof where);
    redisContext *c = sh_connect_sync(&sh->addr, sh->script, 1000, cerr, sizeof cerr);
    if (c) {
        log_info("shared state: %s (instance %s)", where, sh->inst);
        sh->bc = c; /* the heartbeat's from now on */
        /* counted before the first request (the threads keep it so) */
        store_t *st = NULL;
        if (beat(sh, &st, where) != 0) {
            redisFree(sh->bc);
            sh->bc = NULL;
        }
        if (st) store_close(st);
    } else {
        log_warn("shared state: %s does not answer (%s); new requests get 503 until it does", where,
                 cerr);
    }
    bill_set_pusher(bill, ledger_push, sh);
    bill_set_on_stopped(bill, leave, sh);
    int rc = pthread_create(&sh->beat, NULL, beat_main, sh);
    if (rc == 0) {
        sh->beat_started = 1;
        rc = pthread_create(&sh->sub, NULL, sub_main, sh);
        if (rc == 0) sh->sub_started = 1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "starting the shared state's threads: %s", strerror(rc));
        sh_stop(sh);
        sh_free(sh);
        return NULL;
    }
    return sh;
}

void sh_stop(sh_t *sh)
{
    if (!sh) return;
    pthread_mutex_lock(&sh->mu);
    sh->stop = 1;
    pthread_cond_signal(&sh->cv);
    int fd = atomic_load(&sh->sub_fd);
    if (fd >= 0) shutdown(fd, SHUT_RDWR); /* ends the subscriber's wait */
    pthread_mutex_unlock(&sh->mu);
    if (sh->beat_started) pthread_join(sh->beat, NULL);
    if (sh->sub_started) pthread_join(sh->sub, NULL);
    sh->beat_started = sh->sub_started = 0;
}

/* A clean stop, after billing committed everything: the rows the store has now include every
 * charge of this instance, so its reservations can go, with those rows, and it leaves at once
 * instead of being counted for SH_LIVE_TTL_MS (and walked by every admission for a minute).
 * Skipped when anything is still owed to the store (it stopped while the store was down: those
 * charges are in no row yet). */
static void leave(void *ud, bill_t *b)
{
    sh_t *sh = ud;
    (void)b; /* sh->bill */
    bill_health_info hi;
    bill_health(sh->bill, &hi);
    if (hi.queue_depth > 0 || !hi.store_ok || !sh->bc) return;
    bill_push *mine;
    size_t n;
    char err[256];
    if (bill_reservations(sh->bill, &mine, &n) != 0) return;
    store_t *st = n ? store_open(sh->cfg, err, sizeof err) : NULL;
    int ok = n == 0 || st != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        bill_push *e = &mine[i];
        if (e->kind == 'a') {
            store_account a;
            ok = store_account_get(st, e->id, &a) == STORE_OK;
            e->row_value = a.balance_nusd;
            e->row_seq = a.seq;
        } else {
            store_key k;
            ok = store_key_get(st, e->id, &k) == STORE_OK;
            e->row_value = k.spent_nusd;
        }
        e->has_row = 1;
        e->ver++;
        e->resv = 0;
    }
    if (ok && push_batch(sh, sh->bc, mine, n) == 0) {
        redisReply *r = redisCommand(sh->bc, "DEL ms:live:%s ms:seen:%s", sh->inst, sh->inst);
        if (r) freeReplyObject(r);
    }
    if (st) store_close(st);
    free(mine);
}

void sh_free(sh_t *sh)
{
    if (!sh) return;
    if (sh->bc) redisFree(sh->bc);
    if (sh->lc) redisFree(sh->lc);
    pthread_cond_destroy(&sh->cv);
    pthread_mutex_destroy(&sh->mu);
    free(sh);
}

const char *sh_instance(const sh_t *sh)
{
    return sh->inst;
}

int sh_ready(const sh_t *sh, int64_t *wait_ms)
{
    int64_t from = atomic_load(&((sh_t *)sh)->admit_from_ms);
    int64_t now = (int64_t)(ms_mono_ns() / 1000000u);
    *wait_ms = from == INT64_MAX ? -1 : from > now ? from - now : 0;
    return from <= now;
}
