/*
 * What the two halves of the shared state (shared.c, loop.c) and its scripts (lua.c) share, and
 * nothing else includes.
 */
#ifndef MS_SHARED_INTERNAL_H
#define MS_SHARED_INTERNAL_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "shared/shared.h"

extern const char sh_lua_admit[], sh_lua_correct[], sh_lua_push[], sh_lua_beat[];

enum { SH_ADMIT, SH_CORRECT, SH_PUSH, SH_BEAT, SH_NSCRIPTS };

/* Where Redis is: resolved once, at start, so no connection ever resolves a name. */
typedef struct sh_addr {
    char ip[64]; /* numeric, or "" for a Unix socket */
    int port;
    char path[108];
    char password[256];
    int db;
} sh_addr;

struct sh {
    const cfg_t *cfg;
    bill_t *bill;
    kc_t *kc;
    sh_addr addr;
    char inst[33];             /* this process's id: 32 hex digits, random */
    char sha[SH_NSCRIPTS][41]; /* SHA-1 of each script, for EVALSHA */
    const char *script[SH_NSCRIPTS];

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    unsigned publish; /* bit 0: keys, bit 1: accounts */
    pthread_t beat, sub;
    int beat_started, sub_started;
    _Atomic int sub_fd; /* the subscriber's socket, shut down to stop it */
    /* when admissions can succeed (monotonic ms): the epoch's grace, and INT64_MAX while the
     * heartbeat fails or this instance is not counted (sh_ready) */
    _Atomic int64_t admit_from_ms;

    /* ms-redis only */
    redisContext *bc;
    char epoch[96];

    /* the ledger thread only */
    redisContext *lc;
    store_t *lstore;
};

/* A blocking connection with timeouts, authenticated and on its database, with every script
 * loaded. NULL + err. */
redisContext *sh_connect_sync(const sh_addr *a, const char *const *scripts, int timeout_ms,
                              char *err, size_t errlen);
/* Parses redis://[:pass@]host:port[/db] or unix:path and resolves the host. */
int sh_addr_parse(const char *url, sh_addr *a, char *err, size_t errlen);
/* The parsing half, which never resolves: a's fields but ip, and the host name into host
 * (hostlen bytes; not set for unix:). Separate so the parser can be fuzzed without lookups. */
int sh_addr_split(const char *url, sh_addr *a, char *host, size_t hostlen, char *err,
                  size_t errlen);
/* "redis://host:port/db" without the password, for logs. */
void sh_addr_describe(const sh_addr *a, char *out, size_t n);

#endif
