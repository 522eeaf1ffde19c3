/*
 * The state several gateway instances share (config `redis:`): rate limits, balance holds and
 * key and account changes, in Redis, so that N instances on one store behave like one big one.
 * Without `redis:` none of this exists and every check is the instance's own, in memory.
 *
 * Two halves. Each worker has an asynchronous connection on its own libuv loop (sh_worker:
 * admissions, token corrections and reservation snapshots, never waiting); the process has two
 * background threads with blocking connections (ms-redis: the heartbeat that keeps this instance
 * counted, re-registration after Redis lost its data, change notices out; ms-redis-sub: change
 * notices in, which wake the key cache and billing at once). The ledger thread pushes what it
 * commits through a connection of its own (sh_ledger_push). docs/BILLING.md ("Several
 * instances") has the rules and what each fault costs.
 */
#ifndef MS_SHARED_H
#define MS_SHARED_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth/keycache.h"
#include "billing/billing.h"
#include "config/config.h"
#include "ratelimit/ratelimit.h"

typedef struct sh sh_t;
typedef struct sh_worker sh_worker;

/* How long Redis may take to answer an admission before the request gets 503. */
#define SH_TIMEOUT_MS 1000
/* An instance's live key lasts this long: a dead instance's reservations stop counting within
 * it (plus one heartbeat). */
#define SH_LIVE_TTL_MS 5000
#define SH_BEAT_MS 500
/* A Redis that lost its data admits nothing for this long, while every live instance
 * re-registers what it reserves (a heartbeat, with room for a slow one). */
#define SH_GRACE_MS 3000

/* Connects (the main thread, at start: the one place a blocking connect is allowed), then starts
 * the background threads. A Redis that is down at start is not an error: requests get 503 until
 * it answers. NULL + err only for a bad URL or no memory. Then bill_set_pusher is set. */
sh_t *sh_start(const cfg_t *cfg, bill_t *bill, kc_t *kc, char *err, size_t errlen);
/* Stops the background threads (before the key cache and billing stop: they call into both). */
void sh_stop(sh_t *sh);
/* After billing stopped (its ledger thread pushes through sh until then). */
void sh_free(sh_t *sh);
/* Whether Redis admits this instance's requests now, as its heartbeat last found (for /readyz):
 * 1, or 0 with *wait_ms the grace left of a new epoch, or -1 when Redis does not answer or does
 * not count this instance yet. Any thread; a load. */
int sh_ready(const sh_t *sh, int64_t *wait_ms);
/* This instance's id (32 hex digits), for logs and tests. */
const char *sh_instance(const sh_t *sh);
/* Tells every instance that keys ('k') or accounts ('a') changed in the store: they re-read at
 * once. Any thread; never blocks (the ms-redis thread sends it). */
void sh_publish(sh_t *sh, char what);
/* A one-shot notice from a process that does not serve (the CLI): connects, publishes, closes.
 * Returns 0, or -1 (logged by the caller: the instances still see the change within a second). */
int sh_publish_once(const cfg_t *cfg, char what, char *err, size_t errlen);

/* ---- the workers' half (loop.c) ---- */

sh_worker *sh_worker_new(sh_t *sh, uv_loop_t *loop);
/* After the loop stopped: pending admissions are dropped without their callbacks. */
void sh_worker_free(sh_worker *w);

typedef enum {
    SH_OK,
    SH_RATE_LIMITED, /* res says which limit and for how long */
    SH_INSUFFICIENT,
    SH_SPEND_LIMIT,
    SH_UNAVAILABLE, /* Redis cannot be asked (down, slow, recovering): 503 */
} sh_status;

typedef struct sh_verdict {
    sh_status status;
    int64_t retry_after_ms; /* SH_RATE_LIMITED, SH_UNAVAILABLE */
    rl_result rl;           /* the key's x-ratelimit-* (have_rl: set) */
    int have_rl;
} sh_verdict;

typedef struct sh_admit_req {
    rl_limit lim[3];
    int nlim;
    int64_t tokens;           /* the token estimate the limits count */
    int64_t amount;           /* the hold; 0: no money check (a cached answer) */
    const bill_snap *snap;    /* after the hold was counted here (amount > 0) */
    int64_t spend_limit_nusd; /* the key's, -1 = none */
} sh_admit_req;

typedef void (*sh_admit_cb)(void *ud, const sh_verdict *v);
typedef struct sh_pending sh_pending;

/* Asks Redis to admit: cb runs once on the loop, later (never from inside this call), unless
 * sh_admit_cancel came first. Returns the handle, or NULL when Redis cannot be asked now (no
 * connection): the caller answers 503 at once. */
sh_pending *sh_admit(sh_worker *w, const sh_admit_req *rq, sh_admit_cb cb, void *ud);
/* The request went away: cb will not run. The caller takes back its hold. Cancels a command
 * (sh_command) the same way. */
void sh_admit_cancel(sh_pending *p);
/* Any other command, for the layers that keep their own data in the shared Redis (the response
 * cache's backend, cache/rcache_redis.c). argv/lens as redisAsyncCommandArgv (lens NULL: C
 * strings), copied before the call returns. cb runs once on the loop, later, with Redis's reply
 * (a struct redisReply, valid during the call only), or with NULL when the connection failed or
 * Redis did not answer within SH_TIMEOUT_MS (then the connection is made again, as for an
 * admission), unless sh_admit_cancel came first. Returns the handle, or NULL when Redis cannot be
 * asked now (cb will not run). cb NULL: fire and forget (NULL returned either way). */
struct redisReply;
typedef void (*sh_reply_cb)(void *ud, const struct redisReply *r);
sh_pending *sh_command(sh_worker *w, int argc, const char **argv, const size_t *lens,
                       sh_reply_cb cb, void *ud);
/* Fire and forget (a lost one is repaired by later snapshots or the heartbeat's re-push). */
void sh_push_snap(sh_worker *w, const bill_snap *snap);
/* A request's end in one call: the token correction, then the snapshot. */
void sh_end(sh_worker *w, const rl_limit *lim, int nlim, int64_t estimate, int64_t actual,
            const bill_snap *snap);

#endif
