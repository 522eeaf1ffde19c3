/*
 * Live reload (reload.h): the diff of what cannot change live, the generations `serve` builds,
 * the SIGHUP handler's work on the main thread, the status file, and `modelswitch reload`.
 *
 * Everything of a reload runs on the main thread, whose loop only waits for signals: reading and
 * validating the file, deriving the router, writing the status file (a small blocking write that
 * no request waits for). The workers only ever see a finished generation (srv_publish).
 *
 * The status file is what makes `modelswitch reload` robust: a signal carries no answer, and the
 * log may go anywhere. The CLI reads the file's seq, signals, and waits for a larger seq written
 * by the same pid. Signals that arrive together are handled as one reload, which read the file
 * after both were sent, so each waiting CLI reports an outcome that covers its own signal.
 */
#include "reload/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define RELOAD_STATUS_MAX 8192 /* the status file is one short JSON object */
#define RELOAD_MSG_MAX 1536    /* the message in it: the error, or the summary and notes */
#define RELOAD_POLL_MS 50      /* how often the CLI looks at the status file */
#define RELOAD_TIMEOUT_S 10    /* how long the CLI waits by default */
#define RELOAD_LOCKS_LINE 256  /* a /proc/locks line */

/* ---- what cannot change live ---- */

static int str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

size_t reload_fixed_changes(const cfg_t *running, const cfg_t *next, const char **names, size_t max)
{
    /* In the order of CONFIG.md. Each is read once, when the process starts: the listeners are
     * bound, the worker threads and their loops made, the store and its lock opened, the
     * background threads' priority set, the workers' loop mode chosen, the shared state's backend
     * (redis) connected. */
    const struct {
        const char *name;
        int changed;
    } f[] = {
        {"server.listen", str_differs(running->listen_host, next->listen_host) ||
                              running->listen_port != next->listen_port},
        {"server.workers", running->workers != next->workers},
        {"server.background_priority", running->background_idle != next->background_idle},
        {"server.busy_poll_us", running->busy_poll_us != next->busy_poll_us},
        {"store.sqlite", str_differs(running->sqlite_path, next->sqlite_path)},
        {"store.postgres", str_differs(running->postgres_url, next->postgres_url)},
        /* the journal's default follows the store: named only when it changed alone */
        {"store.journal", !str_differs(running->sqlite_path, next->sqlite_path) &&
                              !str_differs(running->postgres_url, next->postgres_url) &&
                              str_differs(running->journal_path, next->journal_path)},
        {"redis", str_differs(running->redis_url, next->redis_url)},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].changed && n < max) names[n++] = f[i].name;
    return n;
}

/* *dst becomes a copy of src (NULL stays NULL). Returns 0, or -1 (memory; *dst unchanged). */
static int replace_str(char **dst, const char *src)
{
    char *copy = NULL;
    if (src && !(copy = strdup(src))) return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

int reload_keep_fixed(cfg_t *next, const cfg_t *running)
{
    if (replace_str(&next->listen_host, running->listen_host) ||
        replace_str(&next->sqlite_path, running->sqlite_path) ||
        replace_str(&next->postgres_url, running->postgres_url) ||
        replace_str(&next->journal_path, running->journal_path) ||
        replace_str(&next->redis_url, running->redis_url))
        return -1;
    next->listen_port = running->listen_port;
    next->workers = running->workers;
    next->background_idle = running->background_idle;
    next->busy_poll_us = running->busy_poll_us;
    return 0;
}

/* A model that stays keeps the `created` /v1/models reports (the time the gateway first had
 * it), so a reload does not make every model look new. */
static void keep_created(cfg_t *next, const cfg_t *running)
{
    for (size_t i = 0; i < next->nmodels; i++) {
        cfg_model *m = &next->models[i];
        const cfg_model *was = cfg_find_model(running, m->name, strlen(m->name));
        if (was) m->created = was->created;
    }
}

/* ---- generations ---- */

typedef struct reload_gen {
    srv_gen g; /* first: destroy gets the srv_gen */
    cfg_t *cfg;
    int owns_cfg;
} reload_gen;

static void gen_destroy(srv_gen *g)
{
    reload_gen *rg = (reload_gen *)g;
    log_debug("config generation %" PRIu64 " freed: no request uses it any more", g->number);
    route_free(g->route);
    if (rg->owns_cfg) cfg_free(rg->cfg);
    free(rg);
}

srv_gen *reload_gen_new(cfg_t *cfg, int owns_cfg, route_t *route, uint64_t n)
{
    reload_gen *rg = calloc(1, sizeof *rg);
    if (!rg) return NULL;
    atomic_init(&rg->g.refs, 1);
    rg->g.number = n;
    rg->g.cfg = cfg;
    rg->g.route = route;
    rg->g.destroy = gen_destroy;
    rg->cfg = cfg;
    rg->owns_cfg = owns_cfg;
    return &rg->g;
}

/* ---- the status file ---- */

static void write_status(reload_ctx *ctx, uint64_t generation, int ok, const char *msg)
{
    if (!ctx->status_path) return;
    json_t *o = json_pack("{s:I, s:I, s:I, s:b, s:s, s:s}", "pid", (json_int_t)getpid(), "seq",
                          (json_int_t)ctx->seq, "generation", (json_int_t)generation, "ok", ok,
                          "config", ctx->path, "message", msg);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char tmp[4096 + 8];
    int rc = -1;
    if (text && (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", ctx->status_path) < sizeof tmp) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        size_t len = strlen(text);
        if (fd >= 0) {
            int wrote = write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1;
            rc = close(fd) == 0 && wrote ? rename(tmp, ctx->status_path) : -1;
            if (rc != 0) unlink(tmp);
        }
    }
    if (rc == 0) ctx->wrote = 1;
    if (rc != 0)
        log_warn("config reload: cannot write the status file %s (modelswitch reload will not "
                 "see the outcome): %s",
                 ctx->status_path, text ? strerror(errno) : "out of memory");
    free(text);
}

int reload_ctx_init(reload_ctx *ctx, const cfg_t *cfg, rl_t *rl, const char *journal)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->rl = rl;
    if (!(ctx->path = strdup(cfg->path))) return -1;
    /* next to what `modelswitch reload` finds the gateway by: the SQLite store's lock, or (on
     * PostgreSQL, where several instances may share a config) the journal slot it holds */
    const char *base = cfg->sqlite_path ? cfg->sqlite_path : journal;
    if (base) {
        size_t n = strlen(base) + sizeof ".reload";
        if (!(ctx->status_path = malloc(n))) return -1;
        snprintf(ctx->status_path, n, "%s.reload", base);
    }
    return 0;
}

void reload_ctx_free(reload_ctx *ctx)
{
    /* the gateway is going: a status file left behind would describe a process that is gone */
    if (ctx->status_path && ctx->wrote) unlink(ctx->status_path);
    free(ctx->path);
    free(ctx->status_path);
    memset(ctx, 0, sizeof *ctx);
}

/* ---- the reload (main thread) ---- */

/* The generation after cur, made from the file at path, with the restart-only fields it changed
 * in fixed (*nfixed of them). NULL when refused, with the reason (file:line...) in why. */
static srv_gen *next_generation(const char *path, const srv_gen *cur, const char **fixed,
                                size_t *nfixed, char *why, size_t whylen)
{
    cfg_t *next = cfg_load(path, why, whylen);
    if (!next) return NULL;
    const cfg_t *running = cur->cfg;
    *nfixed = reload_fixed_changes(running, next, fixed, RELOAD_FIXED_MAX);
    route_t *route = NULL;
    srv_gen *g = NULL;
    if (reload_keep_fixed(next, running) != 0 || !(route = route_derive(cur->route, next)) ||
        !(g = reload_gen_new(next, 1, route, cur->number + 1))) {
        route_free(route);
        cfg_free(next);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    keep_created(next, running);
    return g;
}

int reload_run(reload_ctx *ctx, srv_t *s)
{
    ctx->seq++;
    log_info("received SIGHUP: reloading %s", ctx->path);
    char why[1024];
    const char *fixed[RELOAD_FIXED_MAX];
    size_t nfixed = 0;
    srv_gen *g = next_generation(ctx->path, s->gen, fixed, &nfixed, why, sizeof why);
    if (!g) {
        log_error("config reload failed; the running config (generation %" PRIu64 ") is kept: %s",
                  s->gen->number, why);
        write_status(ctx, s->gen->number, 0, why);
        return -1;
    }
    const cfg_t *next = g->cfg;
    char msg[RELOAD_MSG_MAX];
    size_t k =
        (size_t)snprintf(msg, sizeof msg, "generation %" PRIu64 ": %zu models, %zu providers",
                         g->number, next->nmodels, next->nproviders);
    for (size_t i = 0; i < nfixed; i++) {
        log_warn("config reload: %s changed; it takes effect after a restart", fixed[i]);
        if (k < sizeof msg)
            k += (size_t)snprintf(msg + k, sizeof msg - k,
                                  "; %s changed; it takes effect after a restart", fixed[i]);
    }
    /* what lives outside the generation: read by every request from now on */
    if (ctx->rl) rl_set_limits(ctx->rl, next);
    log_set_level((log_level)next->log_level);
    srv_publish(s, g);
    log_info("config reloaded from %s: generation %" PRIu64
             ", %zu models, %zu providers; requests in flight finish on the config they started "
             "with",
             ctx->path, g->number, next->nmodels, next->nproviders);
    write_status(ctx, g->number, 1, msg);
    return 0;
}

static void hook_ready(void *c, srv_t *s)
{
    reload_ctx *ctx = c;
    write_status(ctx, s->gen->number, 1, "serving");
}

static void hook_reload(void *c, srv_t *s)
{
    reload_run(c, s);
}

srv_reloader reload_hooks(reload_ctx *ctx)
{
    return (srv_reloader){.ready = hook_ready, .reload = hook_reload, .ctx = ctx};
}

/* ---- modelswitch reload ---- */

typedef struct status {
    long pid;
    uint64_t seq, generation;
    int ok;
    char config[1024];
    char message[RELOAD_MSG_MAX];
} status;

/* Reads the status file at path into *st. Returns 0, or -1 (missing, unreadable or garbled:
 * a rename replaces it whole, so a reader never sees half of one). */
static int read_status(const char *path, status *st)
{
    char text[RELOAD_STATUS_MAX];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return -1;
    text[n] = '\0';
    json_t *o = json_loads(text, 0, NULL);
    json_int_t pid = 0, seq = -1, gen = 0;
    int ok = 0;
    const char *cfg = "", *msg = "";
    int rc = o && json_unpack(o, "{s:I, s:I, s:I, s:b, s:s, s:s}", "pid", &pid, "seq", &seq,
                              "generation", &gen, "ok", &ok, "config", &cfg, "message", &msg) == 0
                 ? 0
                 : -1;
    if (rc == 0) {
        st->pid = (long)pid;
        st->seq = (uint64_t)seq;
        st->generation = (uint64_t)gen;
        st->ok = ok;
        ms_copy(st->config, sizeof st->config, cfg);
        ms_copy(st->message, sizeof st->message, msg);
    }
    json_decref(o);
    return rc;
}

/* The pid of the process that holds the exclusive flock on path (the serving lock), or 0. Read
 * from /proc/locks rather than from the file's own text: the kernel's answer cannot be stale,
 * so a gateway that died never gets a recycled pid signalled, and nothing here takes the lock
 * (a probe lock could make a gateway starting at that moment refuse to run). */
static long lock_holder_once(const struct stat *sb);

/* /proc/locks is a seq_file: a lock taken or released by another process while it is being read
 * can shift the lines, and a line can be skipped (seen in CI with many gateways starting and
 * stopping). So "no holder" is believed only after three reads agree. */
static long lock_holder(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    for (int i = 0; i < 3; i++) {
        long pid = lock_holder_once(&sb);
        if (pid > 0) return pid;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static long lock_holder_once(const struct stat *sbp)
{
    const struct stat sb = *sbp;
    FILE *f = fopen("/proc/locks", "re");
    if (!f) return 0;
    char line[RELOAD_LOCKS_LINE];
    long holder = 0;
    while (!holder && fgets(line, sizeof line, f)) {
        char kind[16], mode[16], rw[16];
        long pid;
        unsigned maj, min;
        unsigned long long ino;
        /* "1: FLOCK  ADVISORY  WRITE 1234 fe:00:10952735 0 EOF"; waiters have "->" first */
        if (sscanf(line, "%*[^:]: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &pid, &maj, &min,
                   &ino) == 7 &&
            !strcmp(kind, "FLOCK") && !strcmp(rw, "WRITE") &&
            ino == (unsigned long long)sb.st_ino && maj == major(sb.st_dev) &&
            min == minor(sb.st_dev))
            holder = pid;
    }
    fclose(f);
    return holder;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cli_usage(FILE *f, int rc)
{
    fprintf(f, "usage: modelswitch [--config FILE] reload [--timeout SECONDS]\n"
               "  Makes the gateway serving FILE's store re-read its config file (as SIGHUP\n"
               "  does) and reports the outcome: exit 0 when the new config serves, 1 when it\n"
               "  was refused (its error is printed) or the gateway did not answer.\n");
    return rc;
}

/* Waits up to timeout_s for the status at path of pid to move past seq, and reports it. */
static int await_outcome(const char *path, long pid, uint64_t seq, long timeout_s)
{
    static status now; /* 2.5 KiB: off the stack */
    for (long waited = 0; waited < timeout_s * 1000; waited += RELOAD_POLL_MS) {
        sleep_ms(RELOAD_POLL_MS);
        if (read_status(path, &now) != 0 || now.pid != pid || now.seq <= seq) continue;
        if (now.ok) {
            printf("reloaded %s (pid %ld): %s\n", now.config, pid, now.message);
            return 0;
        }
        fprintf(stderr, "reload failed; the gateway keeps its running config: %s\n", now.message);
        return 1;
    }
    fprintf(stderr, "reload: the gateway (pid %ld) did not answer within %ld s\n", pid, timeout_s);
    return 1;
}

/* PostgreSQL: every instance serving this config on this machine holds a journal slot
 * (store.journal, then .2 to .16): each one found is signalled and its outcome awaited. */
static int reload_instances(const cfg_t *cfg, long timeout_s)
{
    int found = 0, failed = 0;
    for (int slot = 1; slot <= 16 && cfg->journal_path; slot++) {
        char lock[4096 + 8], path[4096 + 16];
        if (slot == 1)
            snprintf(lock, sizeof lock, "%s", cfg->journal_path);
        else
            snprintf(lock, sizeof lock, "%s.%d", cfg->journal_path, slot);
        snprintf(path, sizeof path, "%s.reload", lock);
        long pid = lock_holder(lock);
        if (pid <= 0) continue;
        found++;
        static status before;
        if (read_status(path, &before) != 0 || before.pid != pid) {
            fprintf(stderr,
                    "reload: the gateway with journal %s (pid %ld) has not said it takes "
                    "reloads: it may still be starting\n",
                    lock, pid);
            failed++;
        } else if (kill((pid_t)pid, SIGHUP) != 0) {
            fprintf(stderr, "reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
            failed++;
        } else if (await_outcome(path, pid, before.seq, timeout_s) != 0) {
            failed++;
        }
    }
    if (!found) {
        fprintf(stderr,
                "reload: no gateway serving this config runs on this machine (none holds "
                "its journal %s)\n",
                cfg->journal_path ? cfg->journal_path : "");
        return 1;
    }
    return failed ? 1 : 0;
}

int reload_cli(const cfg_t *cfg, int argc, char **argv)
{
    long timeout_s = RELOAD_TIMEOUT_S;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return cli_usage(stdout, 0);
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            timeout_s = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || timeout_s < 1 || timeout_s > 3600)
                return cli_usage(stderr, 2);
        } else {
            fprintf(stderr, "reload: unknown argument '%s'\n", argv[i]);
            return cli_usage(stderr, 2);
        }
    }
    if (!cfg->sqlite_path) return reload_instances(cfg, timeout_s);
    char lock[4096 + 8], path[4096 + 8];
    snprintf(lock, sizeof lock, "%s.lock", cfg->sqlite_path);
    snprintf(path, sizeof path, "%s.reload", cfg->sqlite_path);
    long pid = lock_holder(lock);
    if (pid <= 0) {
        fprintf(stderr, "reload: no gateway is serving the store %s\n", cfg->sqlite_path);
        return 1;
    }
    static status before; /* 2.5 KiB: off the stack */
    if (read_status(path, &before) != 0 || before.pid != pid) {
        fprintf(stderr,
                "reload: the gateway serving %s (pid %ld) has not said it takes reloads (no "
                "status in %s): it may still be starting\n",
                cfg->sqlite_path, pid, path);
        return 1;
    }
    if (kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "reload: cannot signal pid %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    return await_outcome(path, pid, before.seq, timeout_s);
}
