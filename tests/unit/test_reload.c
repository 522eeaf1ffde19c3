/*
 * Unit tests for the pure parts of src/reload/reload.c: which restart-only fields a reloaded file
 * changes (reload_fixed_changes), giving the next config the running values of those fields
 * (reload_keep_fixed), and a generation's lifetime (reload_gen_new, srv_gen_hold/release: the
 * last release frees what the generation owns; under ASan or valgrind a leak or a double free
 * fails the case). The configs are real files loaded with cfg_load, as a reload reads them.
 * The SIGHUP path and `modelswitch reload` are tested end to end in
 * tests/integration/reload.test.mjs.
 */
#include "common/log.h"
#include "config/config.h"
#include "reload/reload.h"
#include "router/router.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[64];

/* Loads a config made of the base below with extra appended (later keys of the same section
 * are not allowed, so extra brings whole sections). */
static cfg_t *load(const char *name, const char *server, const char *store, const char *models)
{
    char path[128], err[1024];
    snprintf(path, sizeof path, "%s/%s.yaml", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f,
            "server:\n%s"
            "store:\n%s"
            "providers:\n"
            "  local: {kind: echo}\n"
            "  up: {kind: openai, base_url: 'http://127.0.0.1:9/v1', api_key: sk-x}\n"
            "models:\n%s",
            server, store, models);
    fclose(f);
    cfg_t *c = cfg_load(path, err, sizeof err);
    if (!c) fprintf(stderr, "cfg_load: %s\n", err);
    return c;
}

#define SERVER "  listen: 127.0.0.1:8080\n  workers: 2\n"
#define STORE "  sqlite: a.db\n"
#define MODELS                                                                                     \
    "  m1:\n    pricing: {input: 1, output: 2}\n    deployments: [{provider: local, model: e}]\n"

static void test_no_change(void)
{
    cfg_t *a = load("a", SERVER, STORE, MODELS);
    /* everything that reloads live changes; nothing restart-only does */
    cfg_t *b = load(
        "b", SERVER "  max_body_bytes: 1000\n  admin_token: tok\n  idle_timeout_ms: 5\n", STORE,
        "  m2:\n    pricing: {input: 3, output: 4}\n"
        "    deployments: [{provider: up, model: u}]\n" MODELS);
    CHECK(a && b);
    const char *names[RELOAD_FIXED_MAX];
    CHECK_EQ_INT(reload_fixed_changes(a, b, names, RELOAD_FIXED_MAX), 0);
    CHECK_EQ_INT(reload_fixed_changes(a, a, names, RELOAD_FIXED_MAX), 0);
    cfg_free(a);
    cfg_free(b);
}

static void test_fixed_changes(void)
{
    cfg_t *a = load("a", SERVER, STORE, MODELS);
    cfg_t *b = load("b",
                    "  listen: 127.0.0.1:8081\n  workers: 3\n  background_priority: normal\n"
                    "  busy_poll_us: 50\n",
                    "  sqlite: b.db\n", MODELS);
    cfg_t *c = load("c", "  listen: 0.0.0.0:8080\n  workers: 2\n", STORE, MODELS);
    cfg_t *d = load("d", SERVER, "  postgres: postgres://u@h/db\n", MODELS);
    CHECK(a && b && c && d);
    const char *names[RELOAD_FIXED_MAX];
    size_t n = reload_fixed_changes(a, b, names, RELOAD_FIXED_MAX);
    CHECK_EQ_INT(n, 5);
    if (n == 5) {
        CHECK_EQ_STR(names[0], "server.listen");
        CHECK_EQ_STR(names[1], "server.workers");
        CHECK_EQ_STR(names[2], "server.background_priority");
        CHECK_EQ_STR(names[3], "server.busy_poll_us");
        CHECK_EQ_STR(names[4], "store.sqlite");
    }
    /* the host alone is a change of the listen address */
    CHECK_EQ_INT(reload_fixed_changes(a, c, names, RELOAD_FIXED_MAX), 1);
    CHECK_EQ_STR(names[0], "server.listen");
    /* another kind of store */
    n = reload_fixed_changes(a, d, names, RELOAD_FIXED_MAX);
    CHECK(n >= 1);
    CHECK_EQ_STR(names[n - 1], "store.postgres");
    /* the journal alone (its default follows the database, so it is named only alone) */
    cfg_t *e = load("e", SERVER, "  sqlite: a.db\n  journal: elsewhere.journal\n", MODELS);
    CHECK(e != NULL);
    if (e) {
        CHECK_EQ_INT(reload_fixed_changes(a, e, names, RELOAD_FIXED_MAX), 1);
        CHECK_EQ_STR(names[0], "store.journal");
        CHECK(strstr(e->journal_path, "/elsewhere.journal") != NULL);
        CHECK(strstr(a->journal_path, "/a.db.journal") != NULL);
        cfg_free(e);
    }
    /* a short list gets the first ones */
    CHECK_EQ_INT(reload_fixed_changes(a, b, names, 2), 2);
    CHECK_EQ_STR(names[1], "server.workers");

    /* kept: b takes a's running values, and then nothing differs */
    CHECK_EQ_INT(reload_keep_fixed(b, a), 0);
    CHECK_EQ_INT(reload_fixed_changes(a, b, names, RELOAD_FIXED_MAX), 0);
    CHECK_EQ_INT(b->listen_port, 8080);
    CHECK_EQ_INT(b->workers, 2);
    CHECK(strstr(b->sqlite_path, "/a.db") != NULL);
    CHECK_EQ_INT(b->busy_poll_us, 0);
    CHECK_EQ_INT(b->background_idle, 1);
    CHECK_EQ_INT(reload_keep_fixed(d, a), 0);
    CHECK(d->postgres_url == NULL);
    CHECK(d->sqlite_path && strstr(d->sqlite_path, "/a.db") != NULL);
    cfg_free(a);
    cfg_free(b);
    cfg_free(c);
    cfg_free(d);
}

static void test_generation_lifetime(void)
{
    cfg_t *a = load("a", SERVER, STORE, MODELS);
    cfg_t *b = load("b", SERVER, STORE, MODELS);
    CHECK(a && b);
    route_t *ra = route_new(a);
    srv_gen *g1 = reload_gen_new(a, 0, ra, 1); /* the start-up config stays its owner's */
    route_t *rb = route_derive(ra, b);
    srv_gen *g2 = reload_gen_new(b, 1, rb, 2);
    CHECK(g1 && g2);
    CHECK_EQ_INT(g2->number, 2);
    CHECK(g2->cfg == b && g2->route == rb);
    /* a request on g1 outlives the switch to g2 */
    srv_gen *req = srv_gen_hold(g1);
    srv_gen_release(g1); /* the server's */
    CHECK_EQ_INT(atomic_load(&g1->refs), 1);
    CHECK(a->nmodels == 1 && strcmp(a->models[0].name, "m1") == 0); /* still readable */
    srv_gen_release(req);                                           /* g1 goes, a stays */
    CHECK_EQ_INT(a->nmodels, 1);
    srv_gen_release(g2); /* frees b and rb */
    srv_gen_release(NULL);
    cfg_free(a);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    tap_mkdtemp("reload", g_dir);
    RUN(test_no_change);
    RUN(test_fixed_changes);
    RUN(test_generation_lifetime);
    tap_rmtree(g_dir);
    TAP_DONE();
}
