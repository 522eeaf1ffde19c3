/*
 * The configuration file (YAML, see docs/CONFIG.md and shared/spec/CONFIG.md) loaded into plain
 * structs. ${VAR} and ${VAR:-default} are substituted in every scalar before it is interpreted.
 * Validation is strict: an unknown field, a wrong type or a dangling reference is an error that
 * names file:line and the field, so a typo never silently changes behaviour.
 *
 * A cfg_t is immutable after cfg_load and shared read-only by every thread.
 */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/* The Azure OpenAI API version used when a provider does not name one: the GA version the
 * contract's example uses. */
#define CFG_AZURE_API_VERSION "2024-10-21"

/* OpenAI's own API: an openai provider's default base_url, and the one URL whose server is known
 * to speak the Responses API (`responses` defaults to true there). */
#define CFG_OPENAI_BASE_URL "https://api.openai.com/v1"

typedef enum {
    PROV_OPENAI,
    PROV_ANTHROPIC,
    PROV_GEMINI,
    PROV_AZURE,
    PROV_ECHO,
} cfg_prov_kind;

typedef struct cfg_provider {
    char *name;
    cfg_prov_kind kind;
    char *base_url;                /* without trailing slash; NULL for echo */
    char *api_key;                 /* may be NULL (local servers need none); never logged */
    int enabled;                   /* 0 when api_key was given but resolved to "" */
    char api_key_var[64];          /* the environment variable api_key names ("" if none) */
    char *api_version;             /* azure only: the api-version query; default below */
    int responses;                 /* openai, azure: speaks the Responses API too (CONFIG.md) */
    char *tls_ca_file;             /* https: PEM file of extra CAs trusted, or NULL */
    int64_t timeout_ms;            /* whole request; default 600000 */
    int64_t connect_timeout_ms;    /* default 10000 */
    int64_t first_byte_timeout_ms; /* default = timeout_ms: no response headers by then -> 504 */
    int64_t idle_timeout_ms;       /* default 60000: longest gap between stream events */
    int line;                      /* where it was defined, for messages */
} cfg_provider;

typedef struct cfg_deployment {
    cfg_provider *provider;
    char *model;  /* upstream model name */
    int weight;   /* default 1, >= 0 */
    int priority; /* default 1, lower first */
} cfg_deployment;

typedef struct cfg_model {
    char *name;
    /* ms_fnv1a64(name), worked out once at load: the rate limiter keys a model's counters by it
     * on every request (0 in a model not from a config file: the limiter hashes the name) */
    uint64_t name_hash;
    /* Prices exactly as written, in nano-dollars per 1M tokens (USD 2.50 -> 2500000000),
     * before markup. */
    int64_t price_in_nusd_per_mtok;
    int64_t price_out_nusd_per_mtok;
    /* The prompt's other three kinds (shared/spec/API.md, "Billing"); each defaults to the input
     * price, so a model without them bills every prompt token alike (no discount by default). */
    int64_t price_cached_in_nusd_per_mtok;
    int64_t price_cache_write_nusd_per_mtok;
    int64_t price_cache_write_1h_nusd_per_mtok;
    int64_t max_output_tokens; /* 0 = not set */
    int64_t created;           /* unix seconds reported by /v1/models (the config's load time) */
    cfg_deployment *deployments;
    size_t ndeployments; /* only deployments whose provider is enabled */
    /* a provider whose deployments of this model were left out because it is disabled (no API
     * key), or NULL: a model with no deployments left says so instead of "does not exist" */
    const cfg_provider *unconfigured;
    char **fallbacks;
    size_t nfallbacks;
    /* gateway-wide limits for this model (`limits:` under the model); 0 = none */
    int64_t requests_per_minute;
    int64_t tokens_per_minute;
    /* `cache:` under the model (docs/CONFIG.md): identical requests answered from the response
     * cache for cache_ttl_s seconds, the model's entries bounded by cache_max_bytes. 0 ttl: the
     * model caches only requests that ask (x-modelswitch-cache: ttl=N); cache_max_bytes is then
     * still the model's bound (CFG_CACHE_DEFAULT_BYTES unless set). */
    int64_t cache_ttl_s;
    int64_t cache_max_bytes;
    int line;
} cfg_model;

#define CFG_CACHE_DEFAULT_TTL_S 300
#define CFG_CACHE_MAX_TTL_S 2592000                 /* 30 days */
#define CFG_CACHE_DEFAULT_BYTES ((int64_t)64 << 20) /* 64 MiB per model */
#define CFG_CACHE_MIN_BYTES ((int64_t)4096)
#define CFG_CACHE_MAX_BYTES ((int64_t)64 << 30) /* 64 GiB */

typedef struct cfg {
    char *path;
    /* 1, 2, ... for each config this process loads: unlike the address, never reused */
    uint64_t generation;
    /* server */
    char *listen_host;         /* default 127.0.0.1 */
    int listen_port;           /* default 8080 */
    int workers;               /* 0 = one per core */
    int64_t max_body_bytes;    /* default 8 MiB */
    int64_t max_header_bytes;  /* default 16 KiB, whole header block */
    int max_headers;           /* default 100 */
    int64_t header_timeout_ms; /* default 10000: whole header block must arrive within it */
    int64_t body_timeout_ms;   /* default 30000: max gap between body reads */
    int64_t idle_timeout_ms;   /* default 60000: keep-alive idle */
    int64_t drain_timeout_ms;  /* default 30000: SIGTERM waits this long for in-flight requests */
    char *admin_token;         /* NULL or "" = /admin/ disabled; never logged */
    int background_idle;       /* server.background_priority: 1 = idle (default), 0 = normal */
    int busy_poll_us;          /* server.busy_poll_us: 0 = workers sleep when idle (default) */
    int metrics_public;        /* server.metrics_public: GET /metrics without the admin token */
    /* store */
    char *sqlite_path;  /* default data/modelswitch.db; relative paths are resolved against the
                           config file's directory, so the result is absolute */
    char *postgres_url; /* NULL unless configured */
    /* store.journal: the ledger's journal of usage events waiting for the store (docs/BILLING.md,
     * "Store outages"); default "<sqlite path>.journal", or modelswitch-ledger.journal in the
     * config file's directory with PostgreSQL; made absolute like sqlite_path */
    char *journal_path;
    /* redis: URL of the state shared by several instances (limits, holds, key changes); NULL =
     * this instance alone. Never logged whole (it may carry a password). */
    char *redis_url;
    /* limits */
    int64_t requests_per_minute;         /* default 600, per key (a key's rpm overrides) */
    int64_t tokens_per_minute;           /* default 1000000, per key (a key's tpm overrides) */
    int64_t account_requests_per_minute; /* default 0 = no account-wide limit */
    int64_t account_tokens_per_minute;   /* default 0 = no account-wide limit */
    /* routing: retries, fail-over and cool-downs (docs/ROUTING.md) */
    struct {
        int max_attempts;        /* default 3: upstream attempts per model, first included */
        int64_t retry_budget_ms; /* default 30000: no new attempt after this much time */
        int64_t backoff_base_ms; /* default 100 */
        int64_t backoff_max_ms;  /* default 2000 */
        int64_t
            retry_after_max_ms; /* default 10000: an upstream retry-after is honoured up to this */
        /* A deployment cools down when, over the last failure_window_ms (default 10000), at
         * least min_requests (default 5) requests ended on it and failure_rate_percent (default
         * 50) of them failed there. cooldown_failures (default 3) is only read as the deprecated
         * old name of min_requests. */
        int failure_rate_percent;
        int64_t failure_window_ms;
        int min_requests;
        int cooldown_failures;
        int64_t cooldown_ms;     /* default 5000: the first cool-down */
        int64_t cooldown_max_ms; /* default 300000: cool-downs double up to this */
    } routing;
    /* billing: markup_percent exactly, in millionths of a percent (12.5 -> 12500000) */
    int64_t markup_percent_micro;
    /* the output cap of a balance hold when neither the request nor the model gives one;
     * default 4096, >= 1 */
    int64_t default_max_output_tokens;
    /* responses.retention_days: how long a stored Responses API response (store: true) is kept
     * for GET and previous_response_id; default 30, 0 = none is stored */
    int64_t responses_retention_days;
    /* notifications: account webhooks. webhook_timeout_ms (default 5000, 100-60000) bounds one
     * delivery; allow_private_networks (default false) lets them reach loopback and private
     * addresses */
    int64_t notify_timeout_ms;
    int notify_allow_private;
    /* log */
    int log_level; /* log_level from common/log.h; `log: {level: info}`; default info */
    cfg_provider *providers;
    size_t nproviders;
    cfg_model *models;
    size_t nmodels;
} cfg_t;

/* Loads and validates path. On error returns NULL and writes "file:line: field: message" into
 * err. Warnings (a provider disabled because its key is empty) are logged with log_warn. */
cfg_t *cfg_load(const char *path, char *err, size_t errlen);
void cfg_free(cfg_t *c);
const cfg_model *cfg_find_model(const cfg_t *c, const char *name, size_t len);
const cfg_provider *cfg_find_provider(const cfg_t *c, const char *name);
const char *cfg_prov_kind_name(cfg_prov_kind k);

#endif
