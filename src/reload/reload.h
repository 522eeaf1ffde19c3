/*
 * Live reload of the config file (SIGHUP, `modelswitch reload`; docs/OPERATIONS.md, "Live
 * reload"). The running gateway re-reads the file it was started with and, if it is valid, makes
 * it the config of every request that starts from then on: a new generation (server.h, srv_gen)
 * with the router's view of it (route_derive keeps each deployment's breaker), the rate limiter's
 * defaults and the log level. Requests in flight finish on the generation they started with. An
 * invalid file is refused with its file:line error and the running config is kept. What cannot
 * change in a running process (the listen address, the number of workers, the store, background
 * priority and busy polling) keeps its running value and is named in the log.
 *
 * Each attempt's outcome goes to a status file beside the store, `<database>.reload` (one JSON
 * object: pid, seq, generation, ok, config, message), written by the main thread and replaced
 * atomically, from the moment SIGHUP is handled until the gateway exits (it removes it).
 * `modelswitch reload` finds the gateway that holds the store's serving lock (store/lock.c), sends
 * it SIGHUP and waits for the status file's seq to move.
 */
#ifndef MS_RELOAD_H
#define MS_RELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "ratelimit/ratelimit.h"
#include "router/router.h"
#include "server/server.h"

/* The fields a running gateway cannot take from a reloaded file (restart-only). */
#define RELOAD_FIXED_MAX 8

/* Writes into names (up to max) the restart-only fields whose value differs between running
 * and next ("server.listen", "server.workers", ...), in a fixed order. Returns their number. */
size_t reload_fixed_changes(const cfg_t *running, const cfg_t *next, const char **names,
                            size_t max);
/* Gives next the running values of the restart-only fields, so that the generation says what
 * the process really does. Returns 0, or -1 (memory; next is then unchanged or partly changed
 * and must be freed). */
int reload_keep_fixed(cfg_t *next, const cfg_t *running);

/* A generation of cfg (owned and freed with it when owns_cfg) and its router (owned), number n,
 * with one reference. NULL: memory (nothing is freed). */
srv_gen *reload_gen_new(cfg_t *cfg, int owns_cfg, route_t *route, uint64_t n);

/* What `serve` gives the server for SIGHUP (srv_set_reloader). */
typedef struct reload_ctx {
    char *path;        /* the config file, as serve was given it */
    char *status_path; /* <database>.reload, or NULL: no status file (no SQLite store) */
    rl_t *rl;
    uint64_t seq; /* SIGHUPs handled */
    int wrote;    /* the status file was written: removed when the gateway exits */
} reload_ctx;

/* Sets up ctx for the config cfg (serve's) and the limiter rl. Returns 0, or -1 (memory). */
int reload_ctx_init(reload_ctx *ctx, const cfg_t *cfg, rl_t *rl, const char *journal);
void reload_ctx_free(reload_ctx *ctx);
/* The server's hooks, with ctx as their context. */
srv_reloader reload_hooks(reload_ctx *ctx);
/* One reload, as SIGHUP does it (main thread, s running). Returns 0 when a new generation was
 * published, -1 when the running one was kept. */
int reload_run(reload_ctx *ctx, srv_t *s);

/* `modelswitch reload [--timeout S]`: signals the gateway serving cfg's store and reports the
 * outcome (stdout on success, stderr with the file:line error on failure). Exit status 0, 1, or
 * 2 (usage). */
int reload_cli(const cfg_t *cfg, int argc, char **argv);

#endif
