/*
 * The modelswitch command: `serve` runs the gateway, `check-config` validates a config file,
 * `reload` makes a running gateway re-read its config (src/reload/), and the operator commands
 * (accounts, keys, migrations) live in src/cli/. Global options are
 * --config FILE (default config/modelswitch.yaml), --version and --help.
 * Exit codes: 0 ok, 1 error, 2 usage.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/job.h"
#include "auth/keycache.h"
#include "billing/billing.h"
#include "cli/cli.h"
#include "common/bgprio.h"
#include "common/log.h"
#include "common/jarena.h"
#include "common/memtune.h"
#include "common/version.h"
#include "config/config.h"
#include "notify/webhook.h"
#include "ratelimit/ratelimit.h"
#include "reload/reload.h"
#include "router/router.h"
#include "server/server.h"
#include "shared/shared.h"

#define DEFAULT_CONFIG "config/modelswitch.yaml"

static void usage(FILE *f)
{
    fprintf(f, "usage: modelswitch [--config FILE] COMMAND [ARGS]\n"
               "\n"
               "commands:\n"
               "  serve [--listen HOST:PORT]   run the gateway\n"
               "  check-config                 validate the config file\n"
               "  reload [--timeout S]         make the running gateway re-read its config\n");
    cli_usage(f);
    fprintf(f, "\n  --version                    print the version\n"
               "  COMMAND --help               help for a command\n");
}

/* The key cache's hook: billing re-reads accounts before new keys are published. */
static void learn_accounts(void *bill)
{
    if (bill_poll_sync(bill, 1000) != 0)
        log_warn("billing did not re-read accounts within 1 s; a new key may see its account late");
}

static int cmd_serve(const char *config_path, int argc, char **argv)
{
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: modelswitch [--config FILE] serve [--listen HOST:PORT]\n");
            return 0;
        } else {
            fprintf(stderr, "serve: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    char err[1024];
    cfg_t *cfg = cfg_load(config_path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    log_set_level((log_level)cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    /* until the server handles it (a reload), SIGHUP must not end the process: the store's lock
     * file names this pid from the start, and `modelswitch reload` may signal it early */
    signal(SIGHUP, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "cannot initialise libcurl\n");
        cfg_free(cfg);
        return 1;
    }
    /* before the first background thread starts (the logger's): both are the process's */
    memtune_result mt = memtune_setup();
    bg_setup(cfg->background_idle);
    log_start();
    if (mt == MEMTUNE_OPERATOR)
        log_info("GLIBC_TUNABLES sets the allocator: its large-block thresholds are left as set");
    int rc = 1;
    srv_t *srv = NULL;
    bill_t *bill = NULL;
    hook_t *hook = NULL;
    rl_t *rl = NULL;
    sh_t *shared = NULL;
    route_t *route = NULL;
    srv_gen *gen = NULL;
    reload_ctx reload = {0};
    /* before the store is opened: a second gateway on one store (SQLite, or PostgreSQL without
     * Redis) would overspend */
    store_lock *lock = NULL;
    kc_t *kc = NULL;
    if (store_serve_lock(cfg, &lock, err, sizeof err) != 0) {
        log_error("%s", err);
        goto out;
    }
    kc = kc_start(cfg, err, sizeof err);
    if (!kc) {
        log_error("cannot open the store: %s", err);
        goto out;
    }
    bill = bill_start(cfg, err, sizeof err);
    if (!bill) {
        log_error("cannot start billing: %s", err);
        goto out;
    }
    /* a key made elsewhere works only once billing knows its account (no false 403) */
    kc_set_before_publish(kc, learn_accounts, bill);
    hook = hook_start(cfg, err, sizeof err);
    if (!hook) {
        log_error("cannot start the webhook sender: %s", err);
        goto out;
    }
    /* the ledger writes low-balance notices; the sender delivers them */
    bill_set_on_notice(bill, hook_wake, hook);
    rl = rl_new(cfg);
    /* several instances: limits, holds and key changes shared through Redis */
    if (cfg->redis_url && !(shared = sh_start(cfg, bill, kc, err, sizeof err))) {
        log_error("%s", err);
        goto out;
    }
    route = route_new(cfg);
    /* the first generation: cfg stays main's (billing, the key cache and the server keep it for
     * what never reloads), the router is the generation's */
    if (rl && route && (gen = reload_gen_new(cfg, 0, route, 1)) != NULL) route = NULL;
    if (!gen || reload_ctx_init(&reload, cfg, rl, bill_journal_path(bill)) != 0) {
        log_error("out of memory");
        goto out;
    }
    srv_shared sh = {.kc = kc, .bill = bill, .rl = rl, .sh = shared, .gen = gen};
    gen = NULL; /* the server's now */
    srv_handlers handlers = api_server_handlers();
    srv = srv_new(cfg, &sh, &handlers, listen, err, sizeof err);
    if (!srv) {
        log_error("%s", err);
        goto out;
    }
    srv_reloader hooks = reload_hooks(&reload);
    srv_set_reloader(srv, &hooks);
    rc = srv_run(srv);
out:
    /* the last generation goes with the server, once the workers (and the requests that held
     * older ones) are gone */
    srv_free(srv);
    srv_gen_release(gen);
    reload_ctx_free(&reload);
    api_jobs_shutdown(); /* after the workers stopped: no store job can be running */
    /* its threads call into the key cache and billing */
    sh_stop(shared);
    /* the key cache's refresher may be waiting on billing (learn_accounts): it stops first */
    if (kc) kc_stop(kc);
    /* after the workers: every settled request is committed before exit */
    if (bill) bill_stop(bill);
    /* after billing, whose ledger pushes its last commits through it */
    sh_free(shared);
    /* after billing, whose last commits may wake it; what it has not sent waits in the outbox */
    hook_stop(hook);
    if (rl) rl_free(rl);
    if (route) route_free(route);
    store_serve_unlock(lock); /* last: nothing of this process touches the store any more */
    log_stop();
    curl_global_cleanup();
    cfg_free(cfg);
    return rc;
}

static int cmd_check_config(const char *config_path, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("usage: modelswitch [--config FILE] check-config\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "check-config: unknown argument '%s'\n", argv[1]);
        return 2;
    }
    char err[1024];
    cfg_t *cfg = cfg_load(config_path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("ok: %zu models, %zu providers\n", cfg->nmodels, cfg->nproviders);
    cfg_free(cfg);
    return 0;
}

static int wants_help(int n, char **args)
{
    for (int i = 1; i < n; i++)
        if (strcmp(args[i], "--help") == 0 || strcmp(args[i], "-h") == 0) return 1;
    return 0;
}

static int cmd_reload(const char *config_path, int argc, char **argv)
{
    if (wants_help(argc, argv)) return reload_cli(NULL, argc, argv);
    log_set_level(LOG_ERROR); /* the file's warnings are the gateway's to log */
    char err[1024];
    cfg_t *cfg = cfg_load(config_path, err, sizeof err);
    if (!cfg) {
        /* the file names the store, through which the gateway is found: it is checked here
         * first, with the same rules (and this shell's environment variables) */
        fprintf(stderr, "%s\nreload: nothing was sent; the gateway keeps its running config\n",
                err);
        return 1;
    }
    int rc = reload_cli(cfg, argc, argv);
    cfg_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    /* before any thread or jansson value: translations build their trees in scopes */
    jarena_install();
    const char *config_path = getenv("MODELSWITCH_CONFIG");
    if (!config_path || !*config_path) config_path = DEFAULT_CONFIG;
    /* --config may stand anywhere; the rest keeps its order */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args) return 1;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "--config needs a file\n");
                free(args);
                return 2;
            }
            config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            config_path = argv[i] + 9;
        } else {
            args[n++] = argv[i];
        }
    }
    int rc;
    if (n == 0) {
        usage(stderr);
        rc = 2;
    } else if (strcmp(args[0], "--version") == 0 || strcmp(args[0], "version") == 0) {
        printf("modelswitch %s\n", MS_VERSION);
        rc = 0;
    } else if (strcmp(args[0], "--help") == 0 || strcmp(args[0], "help") == 0) {
        usage(stdout);
        rc = 0;
    } else if (strcmp(args[0], "serve") == 0) {
        rc = cmd_serve(config_path, n, args);
    } else if (strcmp(args[0], "check-config") == 0) {
        rc = cmd_check_config(config_path, n, args);
    } else if (strcmp(args[0], "reload") == 0) {
        rc = cmd_reload(config_path, n, args);
    } else if (cli_is_command(args[0]) && wants_help(n, args)) {
        rc = cli_run(NULL, n, args); /* help needs no config */
    } else if (!cli_is_command(args[0])) {
        fprintf(stderr, "modelswitch: unknown command '%s'\n\n", args[0]);
        usage(stderr);
        rc = 2;
    } else {
        /* operator commands print their own results; config warnings are for serve */
        log_set_level(LOG_ERROR);
        char err[1024];
        cfg_t *cfg = cfg_load(config_path, err, sizeof err);
        if (!cfg) {
            fprintf(stderr, "%s\n", err);
            rc = 1;
        } else {
            rc = cli_run(cfg, n, args);
            cfg_free(cfg);
        }
    }
    free(args);
    return rc;
}
