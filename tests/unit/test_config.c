/*
 * Unit tests for src/config/config.c. Each case writes a YAML file to /tmp (mkstemp), loads it
 * with cfg_load and checks either the resulting values or the exact "file:line: field: message"
 * error. Run under ASan, every error case also proves the error paths leak nothing.
 *
 * Warnings (disabled providers) go through log_warn, which writes to stderr while the logger
 * thread is not started; the tests count them by pointing fd 2 at a temporary file meanwhile.
 */
#include "common/log.h"
#include "common/util.h"
#include "config/config.h"
#include "tap.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char g_path[64];
static char g_err[1024];
static FILE *g_capture;
static int g_saved_stderr = -1;

static void capture_start(void)
{
    fflush(stderr);
    g_capture = tmpfile();
    g_saved_stderr = dup(2);
    dup2(fileno(g_capture), 2);
}

/* Restores stderr and returns how many captured lines contain needle. */
static int capture_stop(const char *needle)
{
    char line[1024];
    int n = 0;
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    rewind(g_capture);
    while (fgets(line, sizeof line, g_capture))
        if (strstr(line, needle)) n++;
    fclose(g_capture);
    return n;
}

/* Writes text to a fresh temporary file and loads it. */
static cfg_t *load(const char *text)
{
    strcpy(g_path, "/tmp/ms_test_cfg_XXXXXX");
    int fd = mkstemp(g_path);
    if (fd < 0) return NULL;
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    close(fd);
    g_err[0] = '\0';
    cfg_t *c = cfg_load(g_path, g_err, sizeof g_err);
    unlink(g_path);
    return c;
}

/* Loads text, expects failure, and checks the error is "<file>:<line>: <where>" followed by
 * something containing msg. */
static int expect_err_at(const char *text, int line, const char *where, const char *msg,
                         int srcline)
{
    char want[512];
    cfg_t *c = load(text);
    if (c) {
        fprintf(stderr, "test_config.c:%d: expected an error, the config loaded\n", srcline);
        cfg_free(c);
        return 0;
    }
    snprintf(want, sizeof want, "%s:%d: %s", g_path, line, where);
    if (strncmp(g_err, want, strlen(want)) != 0 || !strstr(g_err + strlen(want), msg)) {
        fprintf(stderr, "test_config.c:%d: error was:\n  %s\nwanted:\n  %s ... %s\n", srcline,
                g_err, want, msg);
        return 0;
    }
    return 1;
}
#define EXPECT_ERR(text, line, where, msg) CHECK(expect_err_at(text, line, where, msg, __LINE__))

#define MINIMAL_MODELS                                                                             \
    "providers:\n"                                                                                 \
    "  local: {kind: echo}\n"                                                                      \
    "models:\n"                                                                                    \
    "  m1:\n"                                                                                      \
    "    pricing: {input: 1, output: 2}\n"                                                         \
    "    deployments: [{provider: local}]\n"

/* store.sqlite as cfg_load resolves a relative path: against the config file's directory. */
static int store_path_is(const cfg_t *c, const char *cfg_path, const char *rel)
{
    char dir[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s", cfg_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, real)) return 0;
    snprintf(want, sizeof want, "%s/%s", real, rel);
    if (c->sqlite_path && strcmp(c->sqlite_path, want) == 0) return 1;
    fprintf(stderr, "store path %s, wanted %s\n", c->sqlite_path ? c->sqlite_path : "(null)", want);
    return 0;
}

/* c's journal is rel (resolved against cfg_path's directory). */
static int journal_path_is(const cfg_t *c, const char *cfg_path, const char *rel)
{
    char dir[PATH_MAX], real[PATH_MAX], want[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s", cfg_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, real)) return 0;
    snprintf(want, sizeof want, "%s/%s", real, rel);
    if (c->journal_path && strcmp(c->journal_path, want) == 0) return 1;
    fprintf(stderr, "journal %s, wanted %s\n", c->journal_path ? c->journal_path : "(null)", want);
    return 0;
}

static void test_defaults(void)
{
    /* The loader stamps models with ms_now_ms (CLOCK_REALTIME); time(NULL) reads the coarse
     * clock, which can lag it by a tick across a second boundary: bound with the same clock. */
    int64_t before = ms_now_ms() / 1000;
    cfg_t *c = load(MINIMAL_MODELS);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_STR(c->path, g_path);
    CHECK_EQ_STR(c->listen_host, "127.0.0.1");
    CHECK_EQ_INT(c->listen_port, 8080);
    CHECK_EQ_INT(c->workers, 0);
    CHECK_EQ_INT(c->max_body_bytes, 8 * 1024 * 1024);
    CHECK_EQ_INT(c->max_header_bytes, 16 * 1024);
    CHECK_EQ_INT(c->max_headers, 100);
    CHECK_EQ_INT(c->header_timeout_ms, 10000);
    CHECK_EQ_INT(c->body_timeout_ms, 30000);
    CHECK_EQ_INT(c->idle_timeout_ms, 60000);
    CHECK_EQ_INT(c->drain_timeout_ms, 30000);
    CHECK(c->admin_token == NULL);
    CHECK(store_path_is(c, g_path, "data/modelswitch.db"));
    CHECK(journal_path_is(c, g_path, "data/modelswitch.db.journal"));
    CHECK(c->postgres_url == NULL);
    CHECK_EQ_INT(c->requests_per_minute, 600);
    CHECK_EQ_INT(c->tokens_per_minute, 1000000);
    CHECK_EQ_INT(c->account_requests_per_minute, 0);
    CHECK_EQ_INT(c->account_tokens_per_minute, 0);
    CHECK_EQ_INT(c->routing.max_attempts, 3);
    CHECK_EQ_INT(c->routing.retry_budget_ms, 30000);
    CHECK_EQ_INT(c->routing.backoff_base_ms, 100);
    CHECK_EQ_INT(c->routing.backoff_max_ms, 2000);
    CHECK_EQ_INT(c->routing.retry_after_max_ms, 10000);
    CHECK_EQ_INT(c->routing.cooldown_failures, 3);
    CHECK_EQ_INT(c->routing.cooldown_ms, 5000);
    CHECK_EQ_INT(c->routing.cooldown_max_ms, 300000);
    CHECK_EQ_INT(c->markup_percent_micro, 0);
    CHECK_EQ_INT(c->default_max_output_tokens, 4096);
    CHECK_EQ_INT(c->responses_retention_days, 30);
    CHECK_EQ_INT(c->notify_timeout_ms, 5000);
    CHECK_EQ_INT(c->notify_allow_private, 0);
    CHECK_EQ_INT(c->log_level, LOG_INFO);
    CHECK_EQ_INT(c->background_idle, 1);
    CHECK_EQ_INT(c->busy_poll_us, 0);
    CHECK_EQ_INT(c->metrics_public, 0);
    CHECK(c->generation > 0);
    CHECK_EQ_INT(c->nproviders, 1);
    CHECK_EQ_STR(c->providers[0].name, "local");
    CHECK_EQ_INT(c->providers[0].kind, PROV_ECHO);
    CHECK(c->providers[0].base_url == NULL);
    CHECK(c->providers[0].api_key == NULL);
    CHECK_EQ_INT(c->providers[0].enabled, 1);
    CHECK_EQ_INT(c->providers[0].timeout_ms, 600000);
    CHECK_EQ_INT(c->providers[0].connect_timeout_ms, 10000);
    CHECK_EQ_INT(c->providers[0].first_byte_timeout_ms, 600000);
    CHECK_EQ_INT(c->providers[0].idle_timeout_ms, 60000);
    CHECK_EQ_INT(c->providers[0].line, 2);
    CHECK_EQ_INT(c->nmodels, 1);
    const cfg_model *m = &c->models[0];
    CHECK_EQ_STR(m->name, "m1");
    CHECK_EQ_INT(m->line, 4);
    CHECK_EQ_INT(m->price_in_nusd_per_mtok, 1000000000);
    CHECK_EQ_INT(m->price_out_nusd_per_mtok, 2000000000);
    CHECK_EQ_INT(m->max_output_tokens, 0);
    CHECK_EQ_INT(m->requests_per_minute, 0);
    CHECK_EQ_INT(m->tokens_per_minute, 0);
    CHECK(m->created >= before && m->created <= ms_now_ms() / 1000);
    CHECK_EQ_INT(m->ndeployments, 1);
    CHECK(m->deployments[0].provider == &c->providers[0]);
    CHECK_EQ_STR(m->deployments[0].model, "m1"); /* defaults to the model's own name */
    CHECK_EQ_INT(m->deployments[0].weight, 1);
    CHECK_EQ_INT(m->deployments[0].priority, 1);
    CHECK_EQ_INT(m->nfallbacks, 0);
    cfg_free(c);
}

static void test_lookups(void)
{
    cfg_t *c = load(MINIMAL_MODELS "  m10:\n"
                                   "    pricing: {input: 0, output: 0}\n"
                                   "    deployments: [{provider: local}]\n");
    CHECK(c != NULL);
    if (!c) return;
    CHECK(cfg_find_model(c, "m1", 2) == &c->models[0]);
    CHECK(cfg_find_model(c, "m10", 3) == &c->models[1]);
    CHECK(cfg_find_model(c, "m1xyz", 2) == &c->models[0]); /* length-bounded */
    CHECK(cfg_find_model(c, "m10", 2) == &c->models[0]);
    CHECK(cfg_find_model(c, "m", 1) == NULL);
    CHECK(cfg_find_model(c, "M1", 2) == NULL); /* exact bytes */
    CHECK(cfg_find_model(c, "", 0) == NULL);
    CHECK(cfg_find_model(NULL, "m1", 2) == NULL);
    CHECK(cfg_find_provider(c, "local") == &c->providers[0]);
    CHECK(cfg_find_provider(c, "loc") == NULL);
    CHECK(cfg_find_provider(c, NULL) == NULL);
    CHECK_EQ_STR(cfg_prov_kind_name(PROV_OPENAI), "openai");
    CHECK_EQ_STR(cfg_prov_kind_name(PROV_ANTHROPIC), "anthropic");
    CHECK_EQ_STR(cfg_prov_kind_name(PROV_GEMINI), "gemini");
    CHECK_EQ_STR(cfg_prov_kind_name(PROV_AZURE), "azure");
    CHECK_EQ_STR(cfg_prov_kind_name(PROV_ECHO), "echo");
    cfg_free(c);
    cfg_free(NULL);
}

static void test_every_field(void)
{
    const char *text = "server:\n"
                       "  listen: 0.0.0.0:9090\n"
                       "  workers: 4\n"
                       "  max_body_bytes: 1048576\n"
                       "  max_header_bytes: 8192\n"
                       "  max_headers: 50\n"
                       "  header_timeout_ms: 5000\n"
                       "  body_timeout_ms: 6000\n"
                       "  idle_timeout_ms: 7000\n"
                       "  drain_timeout_ms: 0\n"
                       "  admin_token: adm-secret\n"
                       "  background_priority: normal\n"
                       "  busy_poll_us: 250\n"
                       "store:\n"
                       "  sqlite: /var/lib/ms.db\n"
                       "limits:\n"
                       "  requests_per_minute: 60\n"
                       "  tokens_per_minute: 5000\n"
                       "billing:\n"
                       "  markup_percent: 12.5\n"
                       "  default_max_output_tokens: 2048\n"
                       "responses:\n"
                       "  retention_days: 7\n"
                       "log:\n"
                       "  level: debug\n"
                       "providers:\n"
                       "  oa:\n"
                       "    kind: openai\n"
                       "    base_url: http://127.0.0.1:11434/v1/\n"
                       "    api_key: sk-test\n"
                       "    timeout_ms: 1000\n"
                       "    connect_timeout_ms: 200\n"
                       "  an: {kind: anthropic, api_key: a}\n"
                       "  ge: {kind: gemini, api_key: g}\n"
                       "  az: {kind: azure, base_url: 'https://x.openai.azure.com', api_key: z}\n"
                       "  ol: {kind: openai}\n"
                       "models:\n"
                       "  big:\n"
                       "    pricing: {input: 2.50, output: 10.00}\n"
                       "    max_output_tokens: 16384\n"
                       "    deployments:\n"
                       "      - provider: oa\n"
                       "        model: gpt-4o-2024-08-06\n"
                       "        weight: 3\n"
                       "        priority: 2\n"
                       "      - {provider: az, model: dep1, weight: 0, priority: 0}\n"
                       "    fallbacks: [small]\n"
                       "  small:\n"
                       "    pricing:\n"
                       "      input: 0.000000001\n"
                       "      output: \"0.15\"\n"
                       "    deployments: [{provider: an}, {provider: ge}, {provider: ol}]\n"
                       "    fallbacks:\n"
                       "      - big\n"
                       "notifications:\n"
                       "  webhook_timeout_ms: 2500\n"
                       "  allow_private_networks: true\n";
    cfg_t *c = load(text);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_STR(c->listen_host, "0.0.0.0");
    CHECK_EQ_INT(c->listen_port, 9090);
    CHECK_EQ_INT(c->workers, 4);
    CHECK_EQ_INT(c->max_body_bytes, 1048576);
    CHECK_EQ_INT(c->max_header_bytes, 8192);
    CHECK_EQ_INT(c->max_headers, 50);
    CHECK_EQ_INT(c->header_timeout_ms, 5000);
    CHECK_EQ_INT(c->body_timeout_ms, 6000);
    CHECK_EQ_INT(c->idle_timeout_ms, 7000);
    CHECK_EQ_INT(c->drain_timeout_ms, 0);
    CHECK_EQ_STR(c->admin_token, "adm-secret");
    CHECK_EQ_INT(c->background_idle, 0);
    CHECK_EQ_INT(c->busy_poll_us, 250);
    CHECK_EQ_STR(c->sqlite_path, "/var/lib/ms.db");
    CHECK_EQ_INT(c->requests_per_minute, 60);
    CHECK_EQ_INT(c->tokens_per_minute, 5000);
    CHECK_EQ_INT(c->markup_percent_micro, 12500000);
    CHECK_EQ_INT(c->default_max_output_tokens, 2048);
    CHECK_EQ_INT(c->responses_retention_days, 7);
    CHECK_EQ_INT(c->notify_timeout_ms, 2500);
    CHECK_EQ_INT(c->notify_allow_private, 1);
    CHECK_EQ_INT(c->log_level, LOG_DEBUG);
    CHECK_EQ_INT(c->nproviders, 5);
    const cfg_provider *oa = cfg_find_provider(c, "oa"), *an = cfg_find_provider(c, "an"),
                       *ge = cfg_find_provider(c, "ge"), *az = cfg_find_provider(c, "az"),
                       *ol = cfg_find_provider(c, "ol");
    CHECK(oa && an && ge && az && ol);
    if (!oa || !an || !ge || !az || !ol) goto done;
    CHECK_EQ_INT(oa->kind, PROV_OPENAI);
    CHECK_EQ_STR(oa->base_url, "http://127.0.0.1:11434/v1"); /* one trailing '/' stripped */
    CHECK_EQ_STR(oa->api_key, "sk-test");
    CHECK_EQ_INT(oa->enabled, 1);
    CHECK_EQ_INT(oa->timeout_ms, 1000);
    CHECK_EQ_INT(oa->connect_timeout_ms, 200);
    CHECK_EQ_INT(oa->line, 27);
    CHECK_EQ_INT(an->kind, PROV_ANTHROPIC);
    CHECK_EQ_STR(an->base_url, "https://api.anthropic.com");
    CHECK_EQ_INT(ge->kind, PROV_GEMINI);
    CHECK_EQ_STR(ge->base_url, "https://generativelanguage.googleapis.com");
    CHECK_EQ_INT(az->kind, PROV_AZURE);
    CHECK_EQ_STR(az->base_url, "https://x.openai.azure.com");
    CHECK_EQ_INT(ol->kind, PROV_OPENAI);
    CHECK_EQ_STR(ol->base_url, "https://api.openai.com/v1");
    CHECK(ol->api_key == NULL);
    CHECK_EQ_INT(ol->enabled, 1); /* no api_key field: a keyless local server */

    const cfg_model *big = cfg_find_model(c, "big", 3), *small = cfg_find_model(c, "small", 5);
    CHECK(big && small);
    if (!big || !small) goto done;
    CHECK_EQ_INT(big->price_in_nusd_per_mtok, 2500000000LL);
    CHECK_EQ_INT(big->price_out_nusd_per_mtok, 10000000000LL);
    CHECK_EQ_INT(big->max_output_tokens, 16384);
    CHECK_EQ_INT(big->ndeployments, 2);
    CHECK(big->deployments[0].provider == oa);
    CHECK_EQ_STR(big->deployments[0].model, "gpt-4o-2024-08-06");
    CHECK_EQ_INT(big->deployments[0].weight, 3);
    CHECK_EQ_INT(big->deployments[0].priority, 2);
    CHECK(big->deployments[1].provider == az);
    CHECK_EQ_STR(big->deployments[1].model, "dep1");
    CHECK_EQ_INT(big->deployments[1].weight, 0);
    CHECK_EQ_INT(big->deployments[1].priority, 0);
    CHECK_EQ_INT(big->nfallbacks, 1);
    CHECK_EQ_STR(big->fallbacks[0], "small");
    CHECK_EQ_INT(small->price_in_nusd_per_mtok, 1);
    CHECK_EQ_INT(small->price_out_nusd_per_mtok, 150000000);
    CHECK_EQ_INT(small->ndeployments, 3);
    CHECK_EQ_STR(small->deployments[2].model, "small");
    CHECK_EQ_INT(small->nfallbacks, 1);
    CHECK_EQ_STR(small->fallbacks[0], "big");
done:
    cfg_free(c);
}

/* server.metrics_public (GET /metrics without the admin token), and the generation that tells
 * two loaded configs apart (the metrics' counters outlive a config). */
static void test_metrics_public_and_generation(void)
{
    cfg_t *a = load("server: {metrics_public: true}\n" MINIMAL_MODELS);
    cfg_t *b = load("server: {metrics_public: false}\n" MINIMAL_MODELS);
    CHECK(a && b);
    if (a && b) {
        CHECK_EQ_INT(a->metrics_public, 1);
        CHECK_EQ_INT(b->metrics_public, 0);
        CHECK(a->generation > 0 && b->generation > a->generation);
    }
    cfg_free(a);
    cfg_free(b);
}

static void test_postgres_and_ipv6(void)
{
    cfg_t *c = load("server: {listen: '[::1]:8443'}\n"
                    "store: {postgres: 'postgres://ms@db/ms'}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_STR(c->listen_host, "::1");
    CHECK_EQ_INT(c->listen_port, 8443);
    CHECK_EQ_STR(c->postgres_url, "postgres://ms@db/ms");
    CHECK(c->sqlite_path == NULL);
    /* the ledger's journal: in the config file's directory */
    CHECK(journal_path_is(c, g_path, "modelswitch-ledger.journal"));
    cfg_free(c);
}

/* store.sqlite: relative to the config file's directory, absolute as given; the provider a
 * model lost for want of a key, and the variable to set, are kept for the 503 and the warning. */
static void test_store_path_and_unconfigured(void)
{
    cfg_t *c = load("store: {sqlite: sub/x.db}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK(store_path_is(c, g_path, "sub/x.db"));
    cfg_free(c);
    c = load("store: {sqlite: /var/lib/ms/x.db}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK_EQ_STR(c->sqlite_path, "/var/lib/ms/x.db");
    if (c) CHECK_EQ_STR(c->journal_path, "/var/lib/ms/x.db.journal");
    cfg_free(c);
    /* store.journal: relative like sqlite, absolute as given */
    c = load("store: {sqlite: /var/lib/ms/x.db, journal: j/ledger.journal}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK(journal_path_is(c, g_path, "j/ledger.journal"));
    cfg_free(c);
    c = load("store: {postgres: 'postgres://x', journal: /srv/ms.journal}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK_EQ_STR(c->journal_path, "/srv/ms.journal");
    cfg_free(c);
    unsetenv("MS_TEST_UNSET_KEY_Q7");
    capture_start();
    c = load("providers:\n"
             "  off2: {kind: openai, base_url: 'http://x', api_key: '${MS_TEST_UNSET_KEY_Q7:-}'}\n"
             "  local: {kind: echo}\n"
             "models:\n"
             "  a: {pricing: {input: 1, output: 1}, deployments: [{provider: off2}]}\n"
             "  b: {pricing: {input: 1, output: 1}, deployments: [{provider: off2}, {provider: "
             "local}]}\n");
    int warns = capture_stop("models not served because their providers have no API key: "
                             "a (provider off2: set MS_TEST_UNSET_KEY_Q7)");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(warns, 1);
    const cfg_model *a = cfg_find_model(c, "a", 1), *b = cfg_find_model(c, "b", 1);
    CHECK(a && a->ndeployments == 0 && a->unconfigured == cfg_find_provider(c, "off2"));
    CHECK(b && b->ndeployments == 1); /* still served: a warning would be wrong */
    const cfg_provider *off = cfg_find_provider(c, "off2");
    CHECK(off && !off->enabled);
    if (off) CHECK_EQ_STR(off->api_key_var, "MS_TEST_UNSET_KEY_Q7");
    cfg_free(c);
}

static void test_null_sections(void)
{
    /* "server:" with nothing after it is YAML null: the section's defaults apply. */
    cfg_t *c = load("server:\nstore:\nlimits: ~\nrouting:\nbilling: null\nlog:\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(c->listen_port, 8080);
    CHECK(store_path_is(c, g_path, "data/modelswitch.db"));
    cfg_free(c);
}

static void test_substitution(void)
{
    setenv("MS_T_HOST", "example.com", 1);
    unsetenv("MS_T_PORT");
    setenv("MS_T_EMPTY", "", 1);
    setenv("MS_T_WORKERS", "3", 1);
    setenv("MS_T_KEY", "sk-from-env", 1);
    unsetenv("MS_T_UNSET");
    const char *text =
        "server:\n"
        "  listen: ${MS_T_HOST}:${MS_T_PORT:-8181}\n"
        "  workers: ${MS_T_WORKERS}\n"
        "  admin_token: 'a$$b$c${MS_T_EMPTY}$'\n"
        "providers:\n"
        "  p1:\n"
        "    kind: ${MS_T_KIND:-openai}\n"
        "    base_url: \"http://${MS_T_HOST}:${MS_T_PORT:-80}/v1\"\n"
        "    api_key: ${MS_T_KEY}\n"
        "  p2:\n"
        "    kind: openai\n"
        "    base_url: ${MS_T_EMPTY:-http://d:1/x}\n"
        "    api_key: ${MS_T_UNSET:-}${MS_T_EMPTY}x\n"
        "models:\n"
        "  m:\n"
        "    pricing: {input: '${MS_T_PRICE:-2.50}', output: 0}\n"
        "    deployments: [{provider: p1, model: '${MS_T_UNSET:-up}-${MS_T_HOST}'}]\n";
    cfg_t *c = load(text);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_STR(c->listen_host, "example.com");
    CHECK_EQ_INT(c->listen_port, 8181);
    CHECK_EQ_INT(c->workers, 3);
    CHECK_EQ_STR(c->admin_token, "a$$b$c$"); /* "$$" and a lone "$" are literal */
    CHECK_EQ_STR(c->providers[0].base_url, "http://example.com:80/v1");
    CHECK_EQ_STR(c->providers[0].api_key, "sk-from-env");
    CHECK_EQ_INT(c->providers[0].kind, PROV_OPENAI);
    /* ${X:-d} takes d when X is set but empty, as the shell does. */
    CHECK_EQ_STR(c->providers[1].base_url, "http://d:1/x");
    CHECK_EQ_STR(c->providers[1].api_key, "x");
    CHECK_EQ_INT(c->models[0].price_in_nusd_per_mtok, 2500000000LL);
    CHECK_EQ_STR(c->models[0].deployments[0].model, "up-example.com");
    cfg_free(c);

    /* With the variable set, it wins over the default. */
    setenv("MS_T_PORT", "9999", 1);
    c = load("server: {listen: '${MS_T_HOST}:${MS_T_PORT:-8181}'}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK_EQ_INT(c->listen_port, 9999);
    cfg_free(c);

    /* ${X} of a set-but-empty variable is simply empty, not an error. */
    c = load("server: {admin_token: '${MS_T_EMPTY}'}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) CHECK_EQ_STR(c->admin_token, "");
    cfg_free(c);

    /* Field names are not substituted. */
    EXPECT_ERR("server:\n  ${MS_T_HOST}: 1\n" MINIMAL_MODELS, 2, "server.${MS_T_HOST}",
               "unknown field");
    unsetenv("MS_T_PORT");
}

static void test_substitution_errors(void)
{
    unsetenv("MS_T_UNSET");
    unsetenv("MS_T_UNSET2");
    setenv("MS_T_SECRET", "sk-very-secret", 1);
    EXPECT_ERR("server:\n"
               "  listen: 127.0.0.1:8080\n"
               "  admin_token: ${MS_T_UNSET}\n" MINIMAL_MODELS,
               3, "server.admin_token: ", "environment variable MS_T_UNSET is not set");
    EXPECT_ERR(MINIMAL_MODELS "    max_output_tokens: ${MS_T_UNSET2}\n", 7,
               "models.m1.max_output_tokens: ", "environment variable MS_T_UNSET2 is not set");
    /* The second reference of a scalar is unset. */
    EXPECT_ERR("providers:\n  p: {kind: openai, base_url: 'http://${MS_T_SECRET}:${MS_T_UNSET}'}\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               2, "providers.p.base_url: ", "MS_T_UNSET is not set");
    CHECK(strstr(g_err, "sk-very-secret") == NULL);
    EXPECT_ERR("server: {admin_token: 'x${MS_T_UNSET'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "not closed");
    EXPECT_ERR("server: {admin_token: 'x${MS_T_UNSET:-abc'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "not closed");
    EXPECT_ERR("server: {admin_token: '${}'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "variable name");
    EXPECT_ERR("server: {admin_token: '${1ABC}'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "variable name");
    EXPECT_ERR("server: {admin_token: '${A-b}'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "invalid reference");
    EXPECT_ERR("server: {admin_token: '${A:-${B}}'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "no nesting");

    /* A value that grows past the cap after substitution. */
    char *big = malloc(70001);
    if (!big) return;
    memset(big, 'a', 70000);
    big[70000] = '\0';
    setenv("MS_T_BIG", big, 1);
    free(big);
    EXPECT_ERR("server: {admin_token: '${MS_T_BIG}'}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "longer than");
    unsetenv("MS_T_BIG");
}

static void test_unknown_fields(void)
{
    EXPECT_ERR("modles: {}\n" MINIMAL_MODELS, 1, "modles: ", "unknown field 'modles'");
    EXPECT_ERR("server:\n  workers: 1\n  listn: 1.2.3.4:80\n" MINIMAL_MODELS, 3,
               "server.listn: ", "unknown field 'listn'");
    EXPECT_ERR("store: {sqlite: a.db, sqlite3: b}\n" MINIMAL_MODELS, 1,
               "store.sqlite3: ", "unknown field");
    EXPECT_ERR("limits: {rpm: 5}\n" MINIMAL_MODELS, 1, "limits.rpm: ", "unknown field");
    EXPECT_ERR("billing: {markup: 5}\n" MINIMAL_MODELS, 1, "billing.markup: ", "unknown field");
    EXPECT_ERR("log: {lvl: info}\n" MINIMAL_MODELS, 1, "log.lvl: ", "unknown field");
    EXPECT_ERR("providers:\n  x:\n    kind: openai\n    apikey: k\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: x}]}\n",
               4, "providers.x.apikey: ", "unknown field 'apikey'");
    EXPECT_ERR(MINIMAL_MODELS "    fallback: []\n", 7, "models.m1.fallback: ", "unknown field");
    EXPECT_ERR("providers:\n  local: {kind: echo}\nmodels:\n  m1:\n"
               "    pricing: {input: 1, output: 2, cached: 1}\n"
               "    deployments: [{provider: local}]\n",
               5, "models.m1.pricing.cached: ", "unknown field");
    EXPECT_ERR("providers:\n  local: {kind: echo}\nmodels:\n  m1:\n"
               "    pricing: {input: 1, output: 2}\n"
               "    deployments:\n"
               "      - provider: local\n"
               "        wieght: 2\n",
               8, "models.m1.deployments[0].wieght: ", "unknown field 'wieght'");
    /* Duplicate fields are refused rather than one silently winning. */
    EXPECT_ERR("server:\n  workers: 1\n  workers: 2\n" MINIMAL_MODELS, 3,
               "server.workers: ", "given twice (first on line 2)");
    EXPECT_ERR(MINIMAL_MODELS "  m1:\n    pricing: {input: 1, output: 2}\n", 7,
               "models.m1: ", "given twice");
}

static void test_bad_types(void)
{
    EXPECT_ERR("server: {workers: four}\n" MINIMAL_MODELS, 1,
               "server.workers: ", "expected an integer, got 'four'");
    EXPECT_ERR("server: {workers: -1}\n" MINIMAL_MODELS, 1,
               "server.workers: ", "must be between 0 and");
    EXPECT_ERR("server: {workers: 1.5}\n" MINIMAL_MODELS, 1,
               "server.workers: ", "expected an integer");
    EXPECT_ERR("server: {workers: 1e3}\n" MINIMAL_MODELS, 1,
               "server.workers: ", "expected an integer");
    EXPECT_ERR("server: {workers: [1]}\n" MINIMAL_MODELS, 1,
               "server.workers: ", "expected an integer, got a list");
    EXPECT_ERR("server: {workers: }\n" MINIMAL_MODELS, 1,
               "server.workers: ", "expected an integer, got nothing");
    EXPECT_ERR("server: [a, b]\n" MINIMAL_MODELS, 1, "server: ", "expected a map, got a list");
    EXPECT_ERR("server: yes\n" MINIMAL_MODELS, 1, "server: ", "expected a map, got a string");
    EXPECT_ERR("- a\n- b\n", 1, "(top level): ", "expected a map, got a list");
    EXPECT_ERR("server: {max_body_bytes: 0}\n" MINIMAL_MODELS, 1,
               "server.max_body_bytes: ", "must be between");
    EXPECT_ERR("server: {max_body_bytes: 99999999999999999999}\n" MINIMAL_MODELS, 1,
               "server.max_body_bytes: ", "expected an integer");
    EXPECT_ERR("server: {admin_token: [a]}\n" MINIMAL_MODELS, 1,
               "server.admin_token: ", "expected a string, got a list");
    EXPECT_ERR("limits: {requests_per_minute: '10 per min'}\n" MINIMAL_MODELS, 1,
               "limits.requests_per_minute: ", "expected an integer");
    EXPECT_ERR("billing: {markup_percent: -5}\n" MINIMAL_MODELS, 1,
               "billing.markup_percent: ", "must not be negative");
    EXPECT_ERR("billing: {markup_percent: 1.1234567}\n" MINIMAL_MODELS, 1,
               "billing.markup_percent: ", "at most 6 decimal places");
    EXPECT_ERR("billing: {default_max_output_tokens: 0}\n" MINIMAL_MODELS, 1,
               "billing.default_max_output_tokens: ", "must be between 1 and 100000000");
    EXPECT_ERR("billing: {default_max_output_tokens: 1.5}\n" MINIMAL_MODELS, 1,
               "billing.default_max_output_tokens: ", "expected an integer");
    EXPECT_ERR("responses: {retention_days: 3651}\n" MINIMAL_MODELS, 1,
               "responses.retention_days: ", "must be between 0 and 3650");
    EXPECT_ERR("responses: {retention_days: -1}\n" MINIMAL_MODELS, 1,
               "responses.retention_days: ", "must be between 0 and 3650");
    EXPECT_ERR("responses: {retain: 5}\n" MINIMAL_MODELS, 1, "responses.retain", "unknown field");
    EXPECT_ERR("responses: 5\n" MINIMAL_MODELS, 1, "responses", "expected a map");
    EXPECT_ERR("notifications: {webhook_timeout_ms: 99}\n" MINIMAL_MODELS, 1,
               "notifications.webhook_timeout_ms: ", "must be between 100 and 60000");
    EXPECT_ERR("notifications: {webhook_timeout_ms: 60001}\n" MINIMAL_MODELS, 1,
               "notifications.webhook_timeout_ms: ", "must be between 100 and 60000");
    EXPECT_ERR("notifications: {allow_private_networks: yes}\n" MINIMAL_MODELS, 1,
               "notifications.allow_private_networks: ", "expected true or false");
    EXPECT_ERR("notifications: {timeout_ms: 5}\n" MINIMAL_MODELS, 1, "notifications.timeout_ms",
               "unknown field");
    EXPECT_ERR("log: {level: verbose}\n" MINIMAL_MODELS, 1,
               "log.level: ", "unknown level 'verbose'");
    EXPECT_ERR("server: {background_priority: low}\n" MINIMAL_MODELS, 1,
               "server.background_priority: ", "unknown value 'low' (expected idle or normal)");
    EXPECT_ERR("server: {busy_poll_us: 1001}\n" MINIMAL_MODELS, 1,
               "server.busy_poll_us: ", "must be between 0 and 1000");
    EXPECT_ERR("server: {busy_poll_us: -5}\n" MINIMAL_MODELS, 1,
               "server.busy_poll_us: ", "must be between 0 and 1000");
    EXPECT_ERR("server: {metrics_public: yes}\n" MINIMAL_MODELS, 1,
               "server.metrics_public: ", "expected true or false, got 'yes'");
}

/* Issue 4's fields: account and model limits, routing, and the provider timeouts. */
static void test_limits_and_routing(void)
{
    const char *text = "limits:\n"
                       "  requests_per_minute: 1\n"
                       "  tokens_per_minute: 1000000000000\n"
                       "  account_requests_per_minute: 120\n"
                       "  account_tokens_per_minute: 0\n"
                       "routing:\n"
                       "  max_attempts: 20\n"
                       "  retry_budget_ms: 0\n"
                       "  backoff_base_ms: 50\n"
                       "  backoff_max_ms: 50\n"
                       "  retry_after_max_ms: 0\n"
                       "  cooldown_failures: 1\n"
                       "  cooldown_ms: 0\n"
                       "  cooldown_max_ms: 86400000\n"
                       "providers:\n"
                       "  a: {kind: openai, timeout_ms: 5000}\n"
                       "  b: {kind: openai, timeout_ms: 5000, first_byte_timeout_ms: 5000,\n"
                       "      idle_timeout_ms: 86400000}\n"
                       "  c: {kind: openai, first_byte_timeout_ms: 1, idle_timeout_ms: 1}\n"
                       "models:\n"
                       "  m1:\n"
                       "    pricing: {input: 1, output: 2}\n"
                       "    deployments: [{provider: a}]\n"
                       "    limits: {requests_per_minute: 7, tokens_per_minute: 0}\n"
                       "  m2:\n"
                       "    pricing: {input: 1, output: 2}\n"
                       "    deployments: [{provider: b}]\n"
                       "    limits:\n"
                       "      tokens_per_minute: '${M2_TPM:-90000}'\n"
                       "  m3:\n"
                       "    pricing: {input: 1, output: 2}\n"
                       "    deployments: [{provider: c}]\n"
                       "    limits:\n";
    unsetenv("M2_TPM");
    cfg_t *c = load(text);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(c->requests_per_minute, 1);
    CHECK_EQ_INT(c->tokens_per_minute, 1000000000000LL);
    CHECK_EQ_INT(c->account_requests_per_minute, 120);
    CHECK_EQ_INT(c->account_tokens_per_minute, 0);
    CHECK_EQ_INT(c->routing.max_attempts, 20);
    CHECK_EQ_INT(c->routing.retry_budget_ms, 0);
    CHECK_EQ_INT(c->routing.backoff_base_ms, 50);
    CHECK_EQ_INT(c->routing.backoff_max_ms, 50);
    CHECK_EQ_INT(c->routing.retry_after_max_ms, 0);
    CHECK_EQ_INT(c->routing.cooldown_failures, 1);
    CHECK_EQ_INT(c->routing.cooldown_ms, 0);
    CHECK_EQ_INT(c->routing.cooldown_max_ms, 86400000);
    const cfg_provider *a = cfg_find_provider(c, "a"), *b = cfg_find_provider(c, "b"),
                       *pc = cfg_find_provider(c, "c");
    CHECK(a && b && pc);
    if (!a || !b || !pc) goto done;
    CHECK_EQ_INT(a->first_byte_timeout_ms, 5000); /* defaults to the provider's own timeout */
    CHECK_EQ_INT(a->idle_timeout_ms, 60000);
    CHECK_EQ_INT(b->first_byte_timeout_ms, 5000);
    CHECK_EQ_INT(b->idle_timeout_ms, 86400000);
    CHECK_EQ_INT(pc->timeout_ms, 600000);
    CHECK_EQ_INT(pc->first_byte_timeout_ms, 1);
    CHECK_EQ_INT(pc->idle_timeout_ms, 1);
    const cfg_model *m1 = cfg_find_model(c, "m1", 2), *m2 = cfg_find_model(c, "m2", 2),
                    *m3 = cfg_find_model(c, "m3", 2);
    CHECK(m1 && m2 && m3);
    if (!m1 || !m2 || !m3) goto done;
    CHECK_EQ_INT(m1->requests_per_minute, 7);
    CHECK_EQ_INT(m1->tokens_per_minute, 0);
    CHECK_EQ_INT(m2->requests_per_minute, 0);
    CHECK_EQ_INT(m2->tokens_per_minute, 90000);
    CHECK_EQ_INT(m3->requests_per_minute, 0); /* "limits:" with nothing = no limits */
    CHECK_EQ_INT(m3->tokens_per_minute, 0);
done:
    cfg_free(c);

    /* Only the base given: the default max must still hold (100 <= 2000). Only the max given
     * above the default base is fine too. */
    c = load("routing: {backoff_base_ms: 2000, cooldown_max_ms: 5000}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->routing.backoff_base_ms, 2000);
        CHECK_EQ_INT(c->routing.backoff_max_ms, 2000);
        CHECK_EQ_INT(c->routing.cooldown_ms, 5000);
        CHECK_EQ_INT(c->routing.cooldown_max_ms, 5000);
        CHECK_EQ_INT(c->routing.max_attempts, 3);
    }
    cfg_free(c);
}

static void test_limits_and_routing_errors(void)
{
    /* limits */
    EXPECT_ERR("limits: {requests_per_minute: 0}\n" MINIMAL_MODELS, 1,
               "limits.requests_per_minute: ", "must be between 1 and 1000000000");
    EXPECT_ERR("limits: {tokens_per_minute: 0}\n" MINIMAL_MODELS, 1,
               "limits.tokens_per_minute: ", "must be between 1 and 1000000000000");
    EXPECT_ERR("limits:\n  account_requests_per_minute: -1\n" MINIMAL_MODELS, 2,
               "limits.account_requests_per_minute: ", "must be between 0 and 1000000000");
    EXPECT_ERR("limits:\n  account_tokens_per_minute: 1000000000001\n" MINIMAL_MODELS, 2,
               "limits.account_tokens_per_minute: ", "must be between 0 and 1000000000000");
    EXPECT_ERR("limits: {account_tokens_per_minute: lots}\n" MINIMAL_MODELS, 1,
               "limits.account_tokens_per_minute: ", "expected an integer, got 'lots'");
    EXPECT_ERR("limits: {account_rpm: 5}\n" MINIMAL_MODELS, 1,
               "limits.account_rpm: ", "unknown field 'account_rpm'");

    /* model limits */
    EXPECT_ERR(MINIMAL_MODELS "    limits: {requests_per_minute: -5}\n", 7,
               "models.m1.limits.requests_per_minute: ", "must be between 0 and 1000000000");
    EXPECT_ERR(MINIMAL_MODELS "    limits:\n      tokens_per_minute: 1.5\n", 8,
               "models.m1.limits.tokens_per_minute: ", "expected an integer");
    EXPECT_ERR(MINIMAL_MODELS "    limits: {rpm: 5}\n", 7,
               "models.m1.limits.rpm: ", "unknown field 'rpm'");
    EXPECT_ERR(MINIMAL_MODELS "    limits: [5]\n", 7,
               "models.m1.limits: ", "expected a map, got a list");
    EXPECT_ERR(MINIMAL_MODELS "    limits: 5\n", 7,
               "models.m1.limits: ", "expected a map, got a string");

    /* routing */
    EXPECT_ERR("routing: [1]\n" MINIMAL_MODELS, 1, "routing: ", "expected a map, got a list");
    EXPECT_ERR("routing:\n  retries: 2\n" MINIMAL_MODELS, 2,
               "routing.retries: ", "unknown field 'retries'");
    EXPECT_ERR("routing: {max_attempts: 0}\n" MINIMAL_MODELS, 1,
               "routing.max_attempts: ", "must be between 1 and 20, got 0");
    EXPECT_ERR("routing: {max_attempts: 21}\n" MINIMAL_MODELS, 1,
               "routing.max_attempts: ", "must be between 1 and 20, got 21");
    EXPECT_ERR("routing: {retry_budget_ms: -1}\n" MINIMAL_MODELS, 1,
               "routing.retry_budget_ms: ", "must be between 0 and 86400000");
    EXPECT_ERR("routing: {backoff_base_ms: -1}\n" MINIMAL_MODELS, 1,
               "routing.backoff_base_ms: ", "must be between 0 and");
    EXPECT_ERR("routing: {retry_after_max_ms: x}\n" MINIMAL_MODELS, 1,
               "routing.retry_after_max_ms: ", "expected an integer, got 'x'");
    EXPECT_ERR("routing: {cooldown_failures: 0}\n" MINIMAL_MODELS, 1,
               "routing.cooldown_failures: ", "must be between 1 and");
    EXPECT_ERR("routing: {cooldown_ms: 86400001}\n" MINIMAL_MODELS, 1,
               "routing.cooldown_ms: ", "must be between 0 and 86400000");
    /* max below base: named at the max when it is written, else at the base */
    EXPECT_ERR("routing:\n  backoff_base_ms: 500\n  backoff_max_ms: 499\n" MINIMAL_MODELS, 3,
               "routing.backoff_max_ms: ",
               "backoff_max_ms (499) must not be less than backoff_base_ms (500)");
    EXPECT_ERR("routing:\n  backoff_base_ms: 2001\n" MINIMAL_MODELS, 2, "routing.backoff_base_ms: ",
               "backoff_max_ms (2000) must not be less than backoff_base_ms (2001)");
    EXPECT_ERR("routing:\n  backoff_max_ms: 99\n" MINIMAL_MODELS, 2,
               "routing.backoff_max_ms: ", "must not be less than backoff_base_ms (100)");
    EXPECT_ERR(
        "routing:\n  cooldown_ms: 10\n  cooldown_max_ms: 9\n" MINIMAL_MODELS, 3,
        "routing.cooldown_max_ms: ", "cooldown_max_ms (9) must not be less than cooldown_ms (10)");
    EXPECT_ERR("routing:\n  cooldown_ms: 300001\n" MINIMAL_MODELS, 2, "routing.cooldown_ms: ",
               "cooldown_max_ms (300000) must not be less than cooldown_ms (300001)");

    /* provider timeouts */
    EXPECT_ERR("providers:\n  p:\n    kind: openai\n    first_byte_timeout_ms: 0\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               4, "providers.p.first_byte_timeout_ms: ", "must be between 1 and 86400000");
    EXPECT_ERR("providers:\n  p:\n    kind: openai\n    timeout_ms: 1000\n"
               "    first_byte_timeout_ms: 1001\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               5, "providers.p.first_byte_timeout_ms: ",
               "must not be more than timeout_ms (1000), got 1001");
    EXPECT_ERR("providers:\n  p: {kind: echo, first_byte_timeout_ms: 600001}\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               2, "providers.p.first_byte_timeout_ms: ", "must not be more than timeout_ms");
    EXPECT_ERR("providers:\n  p:\n    kind: openai\n    idle_timeout_ms: 0\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               4, "providers.p.idle_timeout_ms: ", "must be between 1 and 86400000");
    EXPECT_ERR("providers:\n  p:\n    kind: openai\n    idle_timeout: 5\n"
               "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: p}]}\n",
               4, "providers.p.idle_timeout: ", "unknown field 'idle_timeout'");
}

static void test_listen(void)
{
    EXPECT_ERR("server: {listen: '127.0.0.1:99999'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "between 0 and 65535");
    EXPECT_ERR("server: {listen: '127.0.0.1:-1'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "between 0 and 65535");
    EXPECT_ERR("server: {listen: '127.0.0.1:http'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "between 0 and 65535");
    EXPECT_ERR("server: {listen: '127.0.0.1:'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "between 0 and 65535");
    EXPECT_ERR("server: {listen: 'localhost'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "expected HOST:PORT");
    EXPECT_ERR("server: {listen: ':8080'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "host is missing");
    EXPECT_ERR("server: {listen: '::1:8080'}\n" MINIMAL_MODELS, 1, "server.listen: ", "brackets");
    EXPECT_ERR("server: {listen: '[::1]8080'}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "expected [IPV6]:PORT");
    EXPECT_ERR("server: {listen: 8080}\n" MINIMAL_MODELS, 1,
               "server.listen: ", "expected HOST:PORT");
    cfg_t *c = load("server: {listen: 'localhost:1'}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_STR(c->listen_host, "localhost");
        CHECK_EQ_INT(c->listen_port, 1);
    }
    cfg_free(c);
}

static void test_store(void)
{
    EXPECT_ERR("store: {sqlite: a.db, postgres: 'postgres://x'}\n" MINIMAL_MODELS, 1,
               "store: ", "exactly one");
    EXPECT_ERR("store: {}\n" MINIMAL_MODELS, 1, "store: ", "exactly one");
    EXPECT_ERR("store: {sqlite: ''}\n" MINIMAL_MODELS, 1, "store.sqlite: ", "must not be empty");
    EXPECT_ERR("store: {postgres: ''}\n" MINIMAL_MODELS, 1,
               "store.postgres: ", "must not be empty");
    EXPECT_ERR("store: {sqlite: a.db, journal: ''}\n" MINIMAL_MODELS, 1,
               "store.journal: ", "must not be empty");
    EXPECT_ERR("store: {sqlite: a.db, journal: [x]}\n" MINIMAL_MODELS, 1,
               "store.journal: ", "expected a string");
    EXPECT_ERR("store: {sqlite: {path: x}}\n" MINIMAL_MODELS, 1,
               "store.sqlite: ", "expected a string, got a map");
}

#define MODEL_USING(prov)                                                                          \
    "models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: " prov "}]}\n"

static void test_providers(void)
{
    EXPECT_ERR("providers:\n  x: {kind: opnai}\n" MODEL_USING("x"), 2,
               "providers.x.kind: ", "unknown provider kind 'opnai'");
    EXPECT_ERR("providers:\n  x:\n    api_key: k\n" MODEL_USING("x"), 2,
               "providers.x.kind: ", "kind is required");
    EXPECT_ERR("providers:\n  x: {kind: azure, api_key: k}\n" MODEL_USING("x"), 2,
               "providers.x.base_url: ", "requires base_url");
    EXPECT_ERR("providers:\n  x: {kind: azure, base_url: '', api_key: k}\n" MODEL_USING("x"), 2,
               "providers.x.base_url: ", "requires base_url");
    EXPECT_ERR("providers:\n  x: {kind: echo, base_url: 'http://a'}\n" MODEL_USING("x"), 2,
               "providers.x.base_url: ", "takes no base_url");
    EXPECT_ERR("providers:\n  x: {kind: echo, api_key: sk-secret-1}\n" MODEL_USING("x"), 2,
               "providers.x.api_key: ", "takes no api_key");
    CHECK(strstr(g_err, "sk-secret-1") == NULL);
    EXPECT_ERR("providers:\n  x: {kind: openai, base_url: 'ftp://u:hunter2@h'}\n" MODEL_USING("x"),
               2, "providers.x.base_url: ", "must start with http:// or https://");
    CHECK(strstr(g_err, "hunter2") == NULL);
    EXPECT_ERR("providers:\n  x: {kind: openai, api_key: [k]}\n" MODEL_USING("x"), 2,
               "providers.x.api_key: ", "expected a string");
    EXPECT_ERR("providers:\n  x: {kind: openai, timeout_ms: 0}\n" MODEL_USING("x"), 2,
               "providers.x.timeout_ms: ", "must be between 1");
    EXPECT_ERR("providers:\n  x: {kind: openai, connect_timeout_ms: soon}\n" MODEL_USING("x"), 2,
               "providers.x.connect_timeout_ms: ", "expected an integer");
    EXPECT_ERR("providers:\n  x: openai\n" MODEL_USING("x"), 2,
               "providers.x: ", "expected a map, got a string");
    EXPECT_ERR("providers: [openai]\n" MODEL_USING("x"), 1, "providers: ", "expected a map");
    EXPECT_ERR("providers:\n  x: {kind: echo}\n  x: {kind: echo}\n" MODEL_USING("x"), 3,
               "providers.x: ", "given twice");
}

/* responses: on by default only at OpenAI's own URL (defaulted or written, one trailing slash or
 * not); set either way on openai and azure providers; an error on every other kind, and anything
 * but true or false is refused. */
static void test_responses_flag(void)
{
    cfg_t *c =
        load("providers:\n"
             "  def: {kind: openai}\n"
             "  own: {kind: openai, base_url: 'https://api.openai.com/v1/'}\n"
             "  off: {kind: openai, responses: false}\n"
             "  vllm: {kind: openai, base_url: 'http://127.0.0.1:8000/v1'}\n"
             "  vllmr: {kind: openai, base_url: 'http://127.0.0.1:8000/v1', responses: true}\n"
             "  az: {kind: azure, base_url: 'https://x.openai.azure.com'}\n"
             "  azr: {kind: azure, base_url: 'https://x.openai.azure.com', responses: True}\n"
             "  an: {kind: anthropic}\n"
             "  loc: {kind: echo}\n" MODEL_USING("def"));
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    static const struct {
        const char *name;
        int want;
    } cases[] = {{"def", 1}, {"own", 1}, {"off", 0}, {"vllm", 0}, {"vllmr", 1},
                 {"az", 0},  {"azr", 1}, {"an", 0},  {"loc", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const cfg_provider *p = cfg_find_provider(c, cases[i].name);
        CHECK(p != NULL);
        if (p && p->responses != cases[i].want)
            fprintf(stderr, "provider %s: responses %d, wanted %d\n", cases[i].name, p->responses,
                    cases[i].want);
        CHECK(p && p->responses == cases[i].want);
    }
    cfg_free(c);
    setenv("MS_TEST_RESPONSES_FLAG", "false", 1);
    c = load("providers:\n  x:\n    kind: openai\n    responses: "
             "${MS_TEST_RESPONSES_FLAG}\n" MODEL_USING("x"));
    CHECK(c && cfg_find_provider(c, "x")->responses == 0); /* substituted, then read */
    cfg_free(c);
    unsetenv("MS_TEST_RESPONSES_FLAG");

    EXPECT_ERR("providers:\n  x: {kind: anthropic, responses: true}\n" MODEL_USING("x"), 2,
               "providers.x.responses: ", "only an openai or azure provider takes responses");
    EXPECT_ERR("providers:\n  x: {kind: gemini, responses: false}\n" MODEL_USING("x"), 2,
               "providers.x.responses: ", "only an openai or azure provider takes responses");
    EXPECT_ERR("providers:\n  x: {kind: echo, responses: true}\n" MODEL_USING("x"), 2,
               "providers.x.responses: ", "only an openai or azure provider takes responses");
    EXPECT_ERR("providers:\n  x: {kind: openai, responses: yes}\n" MODEL_USING("x"), 2,
               "providers.x.responses: ", "expected true or false, got 'yes'");
    EXPECT_ERR(
        "providers:\n  x: {kind: azure, base_url: 'https://a', responses: 1}\n" MODEL_USING("x"), 2,
        "providers.x.responses: ", "expected true or false, got '1'");
    EXPECT_ERR("providers:\n  x:\n    kind: openai\n    responses: [true]\n" MODEL_USING("x"), 4,
               "providers.x.responses: ", "expected true or false, got a list");
    EXPECT_ERR("providers:\n  x: {kind: openai, responses: }\n" MODEL_USING("x"), 2,
               "providers.x.responses: ", "expected true or false");
}

/* A self-signed certificate written as PEM to path (what a private CA file holds). */
static int write_pem_cert(const char *path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f = fopen(path, "w");
    int ok = k && x && f;
    if (ok) {
        X509_NAME *n = X509_get_subject_name(x);
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 86400);
        X509_set_pubkey(x, k);
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
        X509_set_issuer_name(x, n);
        ok = X509_sign(x, k, EVP_sha256()) > 0 && PEM_write_X509(f, x) == 1;
    }
    if (f) fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static void test_tls_ca_file(void)
{
    char pem[64], text[512];
    cfg_t *c;

    strcpy(pem, "/tmp/ms_test_ca_XXXXXX");
    int fd = mkstemp(pem);
    CHECK(fd >= 0);
    close(fd);
    CHECK(write_pem_cert(pem) == 0);
    snprintf(text, sizeof text,
             "providers:\n  x: {kind: openai, base_url: 'https://llm.internal/v1', tls_ca_file: "
             "'%s'}\n  y: {kind: openai, base_url: 'https://api.example/v1'}\n" MODEL_USING("x"),
             pem);
    c = load(text);
    CHECK(c != NULL);
    CHECK(c && strcmp(cfg_find_provider(c, "x")->tls_ca_file, pem) == 0);
    CHECK(c && cfg_find_provider(c, "y")->tls_ca_file == NULL);
    cfg_free(c);

    EXPECT_ERR("providers:\n  x: {kind: openai, base_url: 'https://a', tls_ca_file: "
               "/nonexistent/ca.pem}\n" MODEL_USING("x"),
               2, "providers.x.tls_ca_file: ", "cannot read a PEM certificate");
    /* A file that is not PEM (this config itself, say). */
    snprintf(text, sizeof text,
             "providers:\n  x: {kind: openai, base_url: 'https://a', tls_ca_file: "
             "'%s.no'}\n" MODEL_USING("x"),
             pem);
    FILE *f = fopen(strcat(strcpy((char[80]){0}, pem), ".no"), "w");
    if (f) {
        fputs("not a certificate\n", f);
        fclose(f);
    }
    EXPECT_ERR(text, 2, "providers.x.tls_ca_file: ", "cannot read a PEM certificate");
    EXPECT_ERR(
        "providers:\n  x: {kind: openai, base_url: 'http://a', tls_ca_file: x.pem}\n" MODEL_USING(
            "x"),
        2, "providers.x.tls_ca_file: ", "only a provider with an https:// base_url");
    EXPECT_ERR("providers:\n  x: {kind: echo, tls_ca_file: x.pem}\n" MODEL_USING("x"), 2,
               "providers.x.tls_ca_file: ", "only a provider with an https:// base_url");
    strcat(pem, ".no");
    unlink(pem);
    pem[strlen(pem) - 3] = '\0';
    unlink(pem);
}

static void test_models(void)
{
    const char *provs = "providers:\n  openai: {kind: openai}\n  local: {kind: echo}\n";
    char buf[2048];
#define WITH_PROVS(models) (snprintf(buf, sizeof buf, "%s%s", provs, models), buf)

    /* The example error message from the brief, exactly. */
    EXPECT_ERR(WITH_PROVS("models:\n"
                          "  gpt-4o:\n"
                          "    pricing: {input: 2.50, output: 10.00}\n"
                          "    deployments:\n"
                          "      - {provider: opnai, model: gpt-4o}\n"),
               8, "models.gpt-4o.deployments[0].provider: unknown provider 'opnai'", "");
    EXPECT_ERR(WITH_PROVS("models:\n"
                          "  a:\n"
                          "    pricing: {input: 1, output: 1}\n"
                          "    deployments:\n"
                          "      - {provider: local}\n"
                          "      - {provider: local, weight: -1}\n"),
               9, "models.a.deployments[1].weight: ", "must be between 0 and");
    EXPECT_ERR(WITH_PROVS("models:\n"
                          "  a:\n"
                          "    pricing: {input: 1, output: 1}\n"
                          "    deployments:\n"
                          "      - {provider: local, priority: high}\n"),
               8, "models.a.deployments[0].priority: ", "expected an integer, got 'high'");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments:\n      - {model: x}\n"),
               8, "models.a.deployments[0].provider: ", "provider is required");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments:\n      - {provider: local, model: ''}\n"),
               8, "models.a.deployments[0].model: ", "must not be empty");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: {provider: local}\n"),
               7, "models.a.deployments: ", "expected a list, got a map");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: []\n"),
               7, "models.a.deployments: ", "at least one deployment");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"), 5,
               "models.a.deployments: ", "at least one deployment");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: [local]\n"),
               7, "models.a.deployments[0]: ", "expected a map, got a string");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    deployments: [{provider: local}]\n"), 5,
               "models.a.pricing: ", "pricing is required");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing: ", "both input and output");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: -1, output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.input: ", "must not be negative");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1e-6, output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.input: ", "expected a decimal number");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: .5}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.output: ", "expected a decimal number");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 0.0000000001, output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.input: ", "at most 9 decimal places");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 99999999999, output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.input: ", "expected a decimal number");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: [1], output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               6, "models.a.pricing.input: ", "expected a decimal number, got a list");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    max_output_tokens: many\n"
                          "    deployments: [{provider: local}]\n"),
               7, "models.a.max_output_tokens: ", "expected an integer");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: [{provider: local}]\n"
                          "    fallbacks: [b, c]\n"
                          "  b:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: [{provider: local}]\n"),
               8, "models.a.fallbacks[1]: ", "unknown model 'c'");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: [{provider: local}]\n"
                          "    fallbacks: [a]\n"),
               8, "models.a.fallbacks[0]: ", "own fallback");
    EXPECT_ERR(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                          "    deployments: [{provider: local}]\n"
                          "    fallbacks: b\n"),
               8, "models.a.fallbacks: ", "expected a list");
    EXPECT_ERR(WITH_PROVS("models:\n  a: [1]\n"), 5, "models.a: ", "expected a map, got a list");
    EXPECT_ERR(WITH_PROVS("models: [a]\n"), 4, "models: ", "expected a map, got a list");
    /* A model may be used as a fallback before it is defined; fallbacks: with no value is
     * fine. */
    cfg_t *c = load(WITH_PROVS("models:\n  a:\n    pricing: {input: 1, output: 1}\n"
                               "    deployments: [{provider: local}]\n"
                               "    fallbacks: [b]\n"
                               "  b:\n    pricing: {input: 1, output: 1}\n"
                               "    deployments: [{provider: local}]\n"
                               "    fallbacks:\n"));
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->models[0].nfallbacks, 1);
        CHECK_EQ_INT(c->models[1].nfallbacks, 0);
    }
    cfg_free(c);
#undef WITH_PROVS
}

static void test_no_models(void)
{
    EXPECT_ERR("", 1, "models: ", "no models");
    EXPECT_ERR("# only a comment\n\n", 1, "models: ", "no models");
    EXPECT_ERR("{}\n", 1, "models: ", "no models");
    EXPECT_ERR("---\n...\n", 1, "models: ", "no models");
    EXPECT_ERR("server: {workers: 2}\n", 1, "models: ", "no models");
    EXPECT_ERR("server: {workers: 2}\nmodels:\n", 2, "models: ", "no models");
    EXPECT_ERR("server: {workers: 2}\nmodels: {}\n", 2, "models: ", "no models");
}

static void test_yaml_errors(void)
{
    EXPECT_ERR("server:\n  workers: 1\n bad: [\n", 3, "syntax error: ", "");
    EXPECT_ERR(MINIMAL_MODELS "---\n" MINIMAL_MODELS, 8,
               "syntax error: ", "only one YAML document");
    EXPECT_ERR("server: {workers: 1}}\n", 1, "syntax error: ", "");
    EXPECT_ERR("{a: 1}: 2\n" MINIMAL_MODELS, 1, "(top level): ", "field name must be a string");

    g_err[0] = 'x';
    cfg_t *c = cfg_load("/nonexistent/ms.yaml", g_err, sizeof g_err);
    CHECK(c == NULL);
    CHECK(strstr(g_err, "/nonexistent/ms.yaml: cannot open: ") == g_err);
    c = cfg_load("/tmp", g_err, sizeof g_err);
    CHECK(c == NULL);
    CHECK(strstr(g_err, "/tmp: ") == g_err);
    /* No err buffer: still no crash. */
    CHECK(cfg_load("/nonexistent/ms.yaml", NULL, 0) == NULL);
}

static void test_aliases(void)
{
    cfg_t *c = load("providers:\n  local: {kind: echo}\n"
                    "models:\n"
                    "  a:\n"
                    "    pricing: &p {input: 0.5, output: 1.5}\n"
                    "    deployments: &d [{provider: local, model: echo}]\n"
                    "  b:\n"
                    "    pricing: *p\n"
                    "    deployments: *d\n");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(c->models[1].price_out_nusd_per_mtok, 1500000000);
    CHECK_EQ_STR(c->models[1].deployments[0].model, "echo");
    cfg_free(c);
}

static void test_disabled_providers(void)
{
    unsetenv("MS_T_NOKEY");
    setenv("MS_T_HASKEY", "sk-abc", 1);
    const char *text = "providers:\n"
                       "  off: {kind: openai, api_key: '${MS_T_NOKEY:-}'}\n"
                       "  on: {kind: anthropic, api_key: '${MS_T_HASKEY:-}'}\n"
                       "  keyless: {kind: openai, base_url: 'http://127.0.0.1:11434/v1'}\n"
                       "  empty: {kind: gemini, api_key: }\n"
                       "models:\n"
                       "  mixed:\n"
                       "    pricing: {input: 1, output: 1}\n"
                       "    deployments:\n"
                       "      - {provider: off, model: x}\n"
                       "      - {provider: on, model: y}\n"
                       "      - {provider: keyless, model: z}\n"
                       "  dark:\n"
                       "    pricing: {input: 1, output: 1}\n"
                       "    deployments: [{provider: off}, {provider: empty}]\n"
                       "    fallbacks: [mixed]\n";
    capture_start();
    cfg_t *c = load(text);
    int warns_off = capture_stop("provider off disabled: api_key is empty");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(warns_off, 1);
    const cfg_provider *off = cfg_find_provider(c, "off"), *on = cfg_find_provider(c, "on"),
                       *kl = cfg_find_provider(c, "keyless"), *em = cfg_find_provider(c, "empty");
    CHECK(off && on && kl && em);
    if (!off || !on || !kl || !em) goto done;
    CHECK_EQ_INT(off->enabled, 0);
    CHECK_EQ_INT(on->enabled, 1);
    CHECK_EQ_STR(on->api_key, "sk-abc");
    CHECK_EQ_INT(kl->enabled, 1);
    CHECK(kl->api_key == NULL);
    CHECK_EQ_INT(em->enabled, 0);
    const cfg_model *mixed = cfg_find_model(c, "mixed", 5), *dark = cfg_find_model(c, "dark", 4);
    CHECK(mixed && dark);
    if (!mixed || !dark) goto done;
    CHECK_EQ_INT(mixed->ndeployments, 2);
    CHECK(mixed->deployments[0].provider == on);
    CHECK_EQ_STR(mixed->deployments[0].model, "y");
    CHECK(mixed->deployments[1].provider == kl);
    /* A model left with no deployment stays listed (the API layer hides it). */
    CHECK_EQ_INT(c->nmodels, 2);
    CHECK_EQ_INT(dark->ndeployments, 0);
    CHECK_EQ_INT(dark->nfallbacks, 1);
done:
    cfg_free(c);

    /* No warnings at all when the load fails later on. */
    char bad[1024];
    snprintf(bad, sizeof bad, "%s  broken: {pricing: {input: 1, output: 1}}\n", text);
    capture_start();
    c = load(bad);
    int warns = capture_stop("disabled");
    CHECK(c == NULL);
    CHECK_EQ_INT(warns, 0);
    cfg_free(c);
}

/* The example of shared/spec/CONFIG.md, verbatim. Its gpt-4o falls back to claude-sonnet-4,
 * which the example does not define, so as written it is (rightly) refused; with that model
 * added it loads. */
static const char *spec_example =
    "server:\n"
    "  listen: 127.0.0.1:8080        # HOST:PORT\n"
    "  workers: 0                    # event-loop threads; 0 = one per core\n"
    "  max_body_bytes: 8388608\n"
    "  admin_token: ${MODELSWITCH_ADMIN_TOKEN:-}   # empty = /admin/ disabled\n"
    "\n"
    "store:\n"
    "  sqlite: data/modelswitch.db   # or: postgres: postgres://user@host/db\n"
    "\n"
    "limits:                         # defaults; a key may override\n"
    "  requests_per_minute: 600\n"
    "  tokens_per_minute: 1000000\n"
    "\n"
    "billing:\n"
    "  markup_percent: 0             # added to provider prices to give list prices\n"
    "\n"
    "providers:\n"
    "  openai:\n"
    "    kind: openai                # openai | anthropic | gemini | azure | echo\n"
    "    base_url: https://api.openai.com/v1\n"
    "    api_key: ${OPENAI_API_KEY:-}\n"
    "    timeout_ms: 600000\n"
    "  local:\n"
    "    kind: echo                  # built in, no network: answers with a deterministic text\n"
    "\n"
    "models:\n"
    "  gpt-4o:\n"
    "    pricing: {input: 2.50, output: 10.00}      # USD per 1M tokens, before markup\n"
    "    max_output_tokens: 16384\n"
    "    deployments:\n"
    "      - {provider: openai, model: gpt-4o-2024-08-06, weight: 1}\n"
    "    fallbacks: [claude-sonnet-4]\n"
    "  echo-1:\n"
    "    pricing: {input: 0.10, output: 0.20}\n"
    "    deployments:\n"
    "      - {provider: local, model: echo}\n";

static void test_spec_example(void)
{
    char text[4096];
    unsetenv("MODELSWITCH_ADMIN_TOKEN");
    setenv("OPENAI_API_KEY", "sk-spec", 1);
    EXPECT_ERR(spec_example, 32, "models.gpt-4o.fallbacks[0]: ", "unknown model 'claude-sonnet-4'");
    snprintf(text, sizeof text,
             "%s  claude-sonnet-4:\n"
             "    pricing: {input: 3, output: 15}\n"
             "    deployments: [{provider: local}]\n",
             spec_example);
    cfg_t *c = load(text);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_STR(c->admin_token, "");
    CHECK_EQ_INT(c->nproviders, 2);
    CHECK_EQ_INT(c->nmodels, 3);
    const cfg_model *m = cfg_find_model(c, "gpt-4o", 6);
    CHECK(m != NULL);
    if (m) {
        CHECK_EQ_INT(m->price_in_nusd_per_mtok, 2500000000LL);
        CHECK_EQ_INT(m->price_out_nusd_per_mtok, 10000000000LL);
        CHECK_EQ_INT(m->ndeployments, 1);
        CHECK_EQ_STR(m->deployments[0].model, "gpt-4o-2024-08-06");
        CHECK_EQ_STR(m->deployments[0].provider->api_key, "sk-spec");
        CHECK_EQ_STR(m->fallbacks[0], "claude-sonnet-4");
    }
    cfg_free(c);
    unsetenv("OPENAI_API_KEY");
}

/* config/modelswitch.yaml, the file the README runs, loads with and without a key. */
static void test_shipped_config(void)
{
    const char *paths[] = {"config/modelswitch.yaml", "../config/modelswitch.yaml",
                           "../../config/modelswitch.yaml"};
    const char *path = NULL;
    for (size_t i = 0; i < 3 && !path; i++)
        if (access(paths[i], R_OK) == 0) path = paths[i];
    CHECK(path != NULL);
    if (!path) return;
    unsetenv("MODELSWITCH_ADMIN_TOKEN");
    unsetenv("OPENAI_BASE_URL");

    unsetenv("OPENAI_API_KEY");
    capture_start();
    cfg_t *c = cfg_load(path, g_err, sizeof g_err);
    int warns = capture_stop("provider openai disabled");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(warns, 1);
    CHECK_EQ_STR(c->listen_host, "127.0.0.1");
    CHECK_EQ_INT(c->listen_port, 8080);
    CHECK_EQ_INT(c->workers, 0);
    /* the repository's data/, wherever the command runs from */
    CHECK(store_path_is(c, path, "../data/modelswitch.db"));
    CHECK(c->admin_token == NULL || c->admin_token[0] == '\0');
    CHECK_EQ_INT(c->requests_per_minute, 600);
    CHECK_EQ_INT(c->tokens_per_minute, 1000000);
    CHECK_EQ_INT(c->nproviders, 2);
    CHECK_EQ_INT(c->nmodels, 5);
    const cfg_provider *oa = cfg_find_provider(c, "openai");
    CHECK(oa && oa->enabled == 0);
    CHECK(oa && oa->base_url && !strcmp(oa->base_url, "https://api.openai.com/v1"));
    const cfg_model *e = cfg_find_model(c, "echo-1", 6);
    CHECK(e && e->ndeployments == 1 && e->price_in_nusd_per_mtok == 100000000 &&
          e->price_out_nusd_per_mtok == 200000000 && e->max_output_tokens == 4096 &&
          !strcmp(e->deployments[0].model, "echo"));
    const cfg_model *emb = cfg_find_model(c, "echo-embed-1", 12);
    CHECK(emb && emb->ndeployments == 1 && emb->price_in_nusd_per_mtok == 20000000 &&
          emb->price_out_nusd_per_mtok == 0 && !strcmp(emb->deployments[0].model, "echo-embed"));
    const cfg_model *g = cfg_find_model(c, "gpt-4o", 6);
    CHECK(g && g->ndeployments == 0 && g->price_in_nusd_per_mtok == 2500000000LL &&
          g->price_out_nusd_per_mtok == 10000000000LL && g->max_output_tokens == 16384);
    const cfg_model *mini = cfg_find_model(c, "gpt-4o-mini", 11);
    CHECK(mini && mini->price_in_nusd_per_mtok == 150000000 &&
          mini->price_out_nusd_per_mtok == 600000000);
    CHECK(cfg_find_model(c, "text-embedding-3-small", 22) != NULL);
    cfg_free(c);

    setenv("OPENAI_API_KEY", "sk-test-key", 1);
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/", 1);
    setenv("MODELSWITCH_ADMIN_TOKEN", "admin-tok", 1);
    capture_start();
    c = cfg_load(path, g_err, sizeof g_err);
    warns = capture_stop("disabled");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    CHECK_EQ_INT(warns, 0);
    CHECK_EQ_STR(c->admin_token, "admin-tok");
    oa = cfg_find_provider(c, "openai");
    CHECK(oa && oa->enabled == 1);
    CHECK(oa && !strcmp(oa->base_url, "http://127.0.0.1:9/v1"));
    g = cfg_find_model(c, "gpt-4o", 6);
    CHECK(g && g->ndeployments == 1 && !strcmp(g->deployments[0].model, "gpt-4o"));
    mini = cfg_find_model(c, "gpt-4o-mini", 11);
    CHECK(mini && mini->ndeployments == 1 && !strcmp(mini->deployments[0].model, "gpt-4o-mini"));
    cfg_free(c);
    unsetenv("OPENAI_API_KEY");
    unsetenv("OPENAI_BASE_URL");
    unsetenv("MODELSWITCH_ADMIN_TOKEN");
}

/* Issue 9: the breaker's failure-rate fields, and cooldown_failures as min_requests' old name. */
static void test_routing_failure_rate(void)
{
    cfg_t *c = load(MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->routing.failure_rate_percent, 50);
        CHECK_EQ_INT(c->routing.failure_window_ms, 10000);
        CHECK_EQ_INT(c->routing.min_requests, 5);
        cfg_free(c);
    }
    c = load("routing:\n  failure_rate_percent: 100\n  failure_window_ms: 100\n"
             "  min_requests: 1000000\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->routing.failure_rate_percent, 100);
        CHECK_EQ_INT(c->routing.failure_window_ms, 100);
        CHECK_EQ_INT(c->routing.min_requests, 1000000);
        cfg_free(c);
    }
    /* an old config keeps its threshold: N failures, now N failed requests */
    c = load("routing: {cooldown_failures: 7}\n" MINIMAL_MODELS);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->routing.min_requests, 7);
        cfg_free(c);
    }
    EXPECT_ERR("routing:\n  min_requests: 4\n  cooldown_failures: 3\n" MINIMAL_MODELS, 3,
               "routing.cooldown_failures: ", "deprecated name of min_requests");
    EXPECT_ERR("routing: {failure_rate_percent: 0}\n" MINIMAL_MODELS, 1,
               "routing.failure_rate_percent: ", "must be between 1 and 100, got 0");
    EXPECT_ERR("routing: {failure_rate_percent: 101}\n" MINIMAL_MODELS, 1,
               "routing.failure_rate_percent: ", "must be between 1 and 100");
    EXPECT_ERR("routing: {failure_window_ms: 99}\n" MINIMAL_MODELS, 1,
               "routing.failure_window_ms: ", "must be between 100 and 86400000");
    EXPECT_ERR("routing: {min_requests: 0}\n" MINIMAL_MODELS, 1,
               "routing.min_requests: ", "must be between 1 and 1000000");
}

/* pricing's prompt kinds (shared/spec/CONFIG.md): each is a price like input and output, and one
 * left out costs what input costs. */
static void test_pricing_kinds(void)
{
    cfg_t *c = load("providers:\n  local: {kind: echo}\nmodels:\n"
                    "  claude-sonnet-4:\n"
                    "    pricing: {input: 3.00, output: 15.00, cached_input: 0.30, cache_write: "
                    "3.75, cache_write_1h: 6.00}\n"
                    "    deployments: [{provider: local}]\n"
                    "  plain:\n"
                    "    pricing: {input: 2.5, output: 10}\n"
                    "    deployments: [{provider: local}]\n"
                    "  some:\n"
                    "    pricing: {input: 0.000000001, output: 1, cached_input: 0, cache_write_1h: "
                    "'${MS_T_NO_SUCH_PRICE:-0.123456789}'}\n"
                    "    deployments: [{provider: local}]\n");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    const cfg_model *cs = cfg_find_model(c, "claude-sonnet-4", 15),
                    *pl = cfg_find_model(c, "plain", 5), *so = cfg_find_model(c, "some", 4);
    CHECK(cs && pl && so);
    if (cs) {
        CHECK_EQ_INT(cs->price_in_nusd_per_mtok, 3000000000LL);
        CHECK_EQ_INT(cs->price_out_nusd_per_mtok, 15000000000LL);
        CHECK_EQ_INT(cs->price_cached_in_nusd_per_mtok, 300000000LL);
        CHECK_EQ_INT(cs->price_cache_write_nusd_per_mtok, 3750000000LL);
        CHECK_EQ_INT(cs->price_cache_write_1h_nusd_per_mtok, 6000000000LL);
    }
    if (pl) { /* none given: every prompt token at the input price */
        CHECK_EQ_INT(pl->price_cached_in_nusd_per_mtok, 2500000000LL);
        CHECK_EQ_INT(pl->price_cache_write_nusd_per_mtok, 2500000000LL);
        CHECK_EQ_INT(pl->price_cache_write_1h_nusd_per_mtok, 2500000000LL);
    }
    if (so) { /* free cache reads are a price too, not "unset" */
        CHECK_EQ_INT(so->price_in_nusd_per_mtok, 1);
        CHECK_EQ_INT(so->price_cached_in_nusd_per_mtok, 0);
        CHECK_EQ_INT(so->price_cache_write_nusd_per_mtok, 1);
        CHECK_EQ_INT(so->price_cache_write_1h_nusd_per_mtok, 123456789);
    }
    cfg_free(c);

#define PRICED(p)                                                                                  \
    "providers:\n  local: {kind: echo}\nmodels:\n  m1:\n    pricing: " p "\n"                      \
    "    deployments: [{provider: local}]\n"
    EXPECT_ERR(PRICED("{input: 1, output: 2, cached_input: -0.1}"), 5,
               "models.m1.pricing.cached_input: ", "must not be negative");
    EXPECT_ERR(PRICED("{input: 1, output: 2, cache_write: 0.0000000001}"), 5,
               "models.m1.pricing.cache_write: ", "at most 9 decimal places");
    EXPECT_ERR(PRICED("{input: 1, output: 2, cache_write_1h: cheap}"), 5,
               "models.m1.pricing.cache_write_1h: ", "expected a decimal number");
    EXPECT_ERR(PRICED("{input: 1, output: 2, cached_input: }"), 5,
               "models.m1.pricing.cached_input: ", "expected a decimal number, got nothing");
    EXPECT_ERR(PRICED("{input: 1, output: 2, cached_input: [1]}"), 5,
               "models.m1.pricing.cached_input: ", "expected a decimal number, got a list");
    EXPECT_ERR(PRICED("{input: 1, output: 2, cache_write_5m: 1}"), 5,
               "models.m1.pricing.cache_write_5m: ", "unknown field");
    /* the new kinds do not stand in for the two required prices */
    EXPECT_ERR(PRICED("{cached_input: 1, output: 2}"), 5,
               "models.m1.pricing: ", "both input and output prices are required");
#undef PRICED
}

/* `cache:` under a model: defaults, bounds, refusals (docs/CONFIG.md). */
static void test_model_cache(void)
{
    cfg_t *c = load("providers:\n  local: {kind: echo}\nmodels:\n"
                    "  a: {pricing: {input: 1, output: 2}, deployments: [{provider: local}],\n"
                    "      cache: {ttl_s: 60, max_bytes: 1048576}}\n"
                    "  b: {pricing: {input: 1, output: 2}, deployments: [{provider: local}],\n"
                    "      cache: {}}\n"
                    "  c: {pricing: {input: 1, output: 2}, deployments: [{provider: local}]}\n"
                    "  d: {pricing: {input: 1, output: 2}, deployments: [{provider: local}],\n"
                    "      cache: {max_bytes: 4096}}\n");
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "%s\n", g_err);
        return;
    }
    const cfg_model *a = cfg_find_model(c, "a", 1), *b = cfg_find_model(c, "b", 1),
                    *m = cfg_find_model(c, "c", 1), *d = cfg_find_model(c, "d", 1);
    CHECK(a && b && m && d);
    if (a && b && m && d) {
        CHECK_EQ_INT(a->cache_ttl_s, 60);
        CHECK_EQ_INT(a->cache_max_bytes, 1048576);
        CHECK_EQ_INT(b->cache_ttl_s, CFG_CACHE_DEFAULT_TTL_S); /* `cache:` given: on */
        CHECK_EQ_INT(b->cache_max_bytes, CFG_CACHE_DEFAULT_BYTES);
        CHECK_EQ_INT(m->cache_ttl_s, 0); /* none: only requests that ask */
        CHECK_EQ_INT(m->cache_max_bytes, CFG_CACHE_DEFAULT_BYTES);
        CHECK_EQ_INT(d->cache_ttl_s, CFG_CACHE_DEFAULT_TTL_S);
        CHECK_EQ_INT(d->cache_max_bytes, 4096);
    }
    cfg_free(c);
    EXPECT_ERR(MINIMAL_MODELS "    cache: {ttl_s: 0}\n", 7,
               "models.m1.cache.ttl_s: ", "must be between 1 and 2592000");
    EXPECT_ERR(MINIMAL_MODELS "    cache: {ttl_s: 2592001}\n", 7,
               "models.m1.cache.ttl_s: ", "must be between 1 and 2592000");
    EXPECT_ERR(MINIMAL_MODELS "    cache: {max_bytes: 4095}\n", 7,
               "models.m1.cache.max_bytes: ", "must be between 4096 and");
    EXPECT_ERR(MINIMAL_MODELS "    cache:\n      ttl: 5\n", 8,
               "models.m1.cache.ttl: ", "unknown field 'ttl'");
    EXPECT_ERR(MINIMAL_MODELS "    cache: yes\n", 7, "models.m1.cache: ", "expected a map");
    EXPECT_ERR(MINIMAL_MODELS "    cache: {ttl_s: five}\n", 7,
               "models.m1.cache.ttl_s: ", "expected an integer");
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_lookups);
    RUN(test_every_field);
    RUN(test_metrics_public_and_generation);
    RUN(test_postgres_and_ipv6);
    RUN(test_null_sections);
    RUN(test_store_path_and_unconfigured);
    RUN(test_substitution);
    RUN(test_substitution_errors);
    RUN(test_unknown_fields);
    RUN(test_bad_types);
    RUN(test_limits_and_routing);
    RUN(test_limits_and_routing_errors);
    RUN(test_listen);
    RUN(test_store);
    RUN(test_providers);
    RUN(test_responses_flag);
    RUN(test_tls_ca_file);
    RUN(test_models);
    RUN(test_no_models);
    RUN(test_yaml_errors);
    RUN(test_aliases);
    RUN(test_disabled_providers);
    RUN(test_spec_example);
    RUN(test_shipped_config);
    RUN(test_routing_failure_rate);
    RUN(test_pricing_kinds);
    RUN(test_model_cache);
    TAP_DONE();
}
