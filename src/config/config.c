/*
 * Loads the YAML configuration file (see config.h, docs/CONFIG.md) into a cfg_t.
 *
 * libyaml's document API builds the whole node tree first; every node keeps the line where it
 * starts, so each error can name file:line and the dotted field path ("models.x.deployments[0].
 * provider"). The tree is then walked section by section against a fixed schema: an unknown or
 * repeated field, a wrong type or a dangling reference stops the load, because a typo in a
 * gateway's config must never silently change routing or billing.
 *
 * ${NAME} and ${NAME:-default} are substituted in every scalar value just before it is
 * interpreted (never in field names). Values of secret fields (api_key, admin_token) are never
 * echoed in error messages.
 *
 * Providers are read before models so that deployments can point at them. A provider whose
 * api_key resolves to "" is kept but disabled, and its deployments are left out of every model:
 * one file can list every provider and serve only those whose keys are set.
 */
#include "config/config.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#define CFG_MAX_FILE (4 << 20) /* a config file is a few KiB; refuse anything absurd */
#define CFG_MAX_VALUE 65536    /* one scalar after substitution */
#define CFG_PATH_MAX 256
#define CFG_MAX_VARNAME 128
#define CFG_DAY_MS 86400000LL

typedef struct {
    const char *file;
    yaml_document_t *doc;
    char *err;
    size_t errlen;
    int64_t now_s;
} cfg_ld;

/* ---- errors and paths ---- */

static int line_of(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 1;
}

static int fail(cfg_ld *L, int line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(cfg_ld *L, int line, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->err && L->errlen)
        snprintf(L->err, L->errlen, "%s:%d: %s: %s", L->file, line, *path ? path : "(top level)",
                 msg);
    return -1;
}

/* Paths are for messages only: one that does not fit is cut short rather than refused. */
static void path_cat(char *out, const char *a, const char *sep, const char *b, const char *end)
{
    size_t n = 0;
    const char *parts[4] = {a, sep, b, end};
    for (int i = 0; i < 4; i++)
        for (const char *s = parts[i]; *s && n + 1 < CFG_PATH_MAX; s++)
            out[n++] = *s;
    out[n] = '\0';
}

static void path_key(char *out, const char *parent, const char *key)
{
    path_cat(out, parent, *parent ? "." : "", key, "");
}

static void path_idx(char *out, const char *parent, size_t i)
{
    char num[24];
    char *p = num + sizeof num;
    *--p = '\0';
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    path_cat(out, parent, "[", p, "]");
}

/* ---- node helpers ---- */

static yaml_node_t *node_at(cfg_ld *L, int id)
{
    return yaml_document_get_node(L->doc, id);
}

/* A plain scalar spelled as YAML null ("key:" with nothing after it, "~", "null"). */
static int is_null(const yaml_node_t *n)
{
    if (!n) return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *kind_of(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE) return "a map";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    return is_null(n) ? "nothing" : "a string";
}

static int want_map(cfg_ld *L, const yaml_node_t *n, const char *path)
{
    if (n->type == YAML_MAPPING_NODE) return 0;
    return fail(L, line_of(n), path, "expected a map, got %s", kind_of(n));
}

static int want_list(cfg_ld *L, const yaml_node_t *n, const char *path)
{
    if (n->type == YAML_SEQUENCE_NODE) return 0;
    return fail(L, line_of(n), path, "expected a list, got %s", kind_of(n));
}

static size_t map_size(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static size_t list_size(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static const char *key_str(cfg_ld *L, const yaml_node_pair_t *p)
{
    return (const char *)node_at(L, p->key)->data.scalar.value;
}

/* Checks that every key of map is a scalar, appears once, and (when allowed is not NULL) is one
 * of the allowed names. Maps whose keys are names chosen by the operator (providers, models)
 * pass allowed = NULL. */
static int check_fields(cfg_ld *L, const yaml_node_t *map, const char *path,
                        const char *const *allowed)
{
    char cp[CFG_PATH_MAX];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(L, p->key);
        if (k->type != YAML_SCALAR_NODE)
            return fail(L, line_of(k), path, "a field name must be a string, got %s", kind_of(k));
        const char *name = (const char *)k->data.scalar.value;
        if (strlen(name) != k->data.scalar.length)
            return fail(L, line_of(k), path, "a field name contains a NUL byte");
        path_key(cp, path, name);
        if (!*name) return fail(L, line_of(k), path, "a name must not be empty");
        if (allowed) {
            const char *const *a = allowed;
            while (*a && strcmp(*a, name))
                a++;
            if (!*a) return fail(L, line_of(k), cp, "unknown field '%.64s'", name);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(key_str(L, q), name))
                return fail(L, line_of(k), cp, "'%.64s' is given twice (first on line %d)", name,
                            line_of(node_at(L, q->key)));
    }
    return 0;
}

/* The value of field key in map (already checked by check_fields), or NULL. */
static yaml_node_t *get_field(cfg_ld *L, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (!strcmp(key_str(L, p), key)) return node_at(L, p->value);
    return NULL;
}

/* ---- ${VAR} substitution ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom; /* the last failure was an allocation, not the length cap */
} cfg_sb;

static int sb_add(cfg_sb *b, const char *s, size_t n)
{
    if (n > CFG_MAX_VALUE - b->n) return -1;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return -1;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Returns in *out a new string: the scalar n with every ${NAME} / ${NAME:-default} replaced.
 * ${NAME:-default} uses default when NAME is unset or empty (as the shell does). */
static int subst(cfg_ld *L, const yaml_node_t *n, const char *path, char **out)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length, i = 0;
    cfg_sb b = {0};
    int rc = -1;

    *out = NULL;
    if (memchr(s, '\0', len)) {
        fail(L, line_of(n), path, "the value contains a NUL byte");
        goto cleanup;
    }
    if (sb_add(&b, "", 0)) goto oom;
    if (is_null(n)) len = 0; /* "~" and "null" mean an empty value */
    while (i < len) {
        const char *d = memchr(s + i, '$', len - i);
        size_t lit = d ? (size_t)(d - (s + i)) : len - i;
        if (sb_add(&b, s + i, lit)) goto too_long;
        i += lit;
        if (i >= len) break;
        if (i + 1 >= len || s[i + 1] != '{') {
            /* A '$' not followed by '{' is literal text. */
            if (sb_add(&b, "$", 1)) goto too_long;
            i++;
            continue;
        }
        size_t ns = i + 2, j = ns;
        if (j < len && is_name_start(s[j]))
            while (j < len && is_name_char(s[j]))
                j++;
        if (j == ns) {
            fail(L, line_of(n), path, "a variable name must follow '${' (letters, digits, _)");
            goto cleanup;
        }
        if (j - ns > CFG_MAX_VARNAME) {
            fail(L, line_of(n), path, "variable name too long");
            goto cleanup;
        }
        char name[CFG_MAX_VARNAME + 1];
        memcpy(name, s + ns, j - ns);
        name[j - ns] = '\0';
        const char *def = NULL;
        size_t deflen = 0;
        if (j < len && s[j] == '}') {
            j++;
        } else if (j + 1 < len && s[j] == ':' && s[j + 1] == '-') {
            def = s + j + 2;
            const char *rb = memchr(def, '}', len - (j + 2));
            if (!rb) {
                fail(L, line_of(n), path, "'${%s:-' is not closed by '}'", name);
                goto cleanup;
            }
            deflen = (size_t)(rb - def);
            if (memmem(def, deflen, "${", 2)) {
                fail(L, line_of(n), path, "a default value cannot contain '${' (no nesting)");
                goto cleanup;
            }
            j = (size_t)(rb - s) + 1;
        } else if (j >= len) {
            fail(L, line_of(n), path, "'${%s' is not closed by '}'", name);
            goto cleanup;
        } else {
            fail(L, line_of(n), path, "invalid reference '${%s': expected '}' or ':-default}'",
                 name);
            goto cleanup;
        }
        const char *v = getenv(name);
        if (def && (!v || !*v)) {
            if (sb_add(&b, def, deflen)) goto too_long;
        } else if (!v) {
            fail(L, line_of(n), path, "environment variable %s is not set", name);
            goto cleanup;
        } else if (sb_add(&b, v, strlen(v))) {
            goto too_long;
        }
        i = j;
    }
    *out = b.p;
    b.p = NULL;
    rc = 0;
    goto cleanup;
too_long:
    if (b.oom) goto oom;
    fail(L, line_of(n), path, "the value is longer than %d bytes", CFG_MAX_VALUE);
    goto cleanup;
oom:
    fail(L, line_of(n), path, "out of memory");
cleanup:
    free(b.p);
    return rc;
}

/* ---- typed values ---- */

/* The name of the first ${NAME} in a scalar's raw text, or "": what an operator must set. */
static void first_var_name(const yaml_node_t *n, char *out, size_t outlen)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length, k = 0;
    out[0] = '\0';
    for (size_t i = 0; i + 2 < len; i++) {
        if (s[i] != '$' || s[i + 1] != '{' || !is_name_start(s[i + 2])) continue;
        for (size_t j = i + 2; j < len && is_name_char(s[j]) && k + 1 < outlen; j++)
            out[k++] = s[j];
        out[k] = '\0';
        return;
    }
}

static int get_str(cfg_ld *L, const yaml_node_t *n, const char *path, char **out)
{
    if (n->type != YAML_SCALAR_NODE)
        return fail(L, line_of(n), path, "expected a string, got %s", kind_of(n));
    return subst(L, n, path, out);
}

static int get_int(cfg_ld *L, const yaml_node_t *n, const char *path, int64_t min, int64_t max,
                   int64_t *out)
{
    char *s = NULL;
    int64_t v;
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail(L, line_of(n), path, "expected an integer, got %s", kind_of(n));
    if (subst(L, n, path, &s)) return -1;
    if (ms_parse_decimal(s, strlen(s), 0, &v)) {
        fail(L, line_of(n), path, "expected an integer, got '%.40s'", s);
        free(s);
        return -1;
    }
    free(s);
    if (v < min || v > max)
        return fail(L, line_of(n), path, "must be between %lld and %lld, got %lld", (long long)min,
                    (long long)max, (long long)v);
    *out = v;
    return 0;
}

/* A boolean: true or false (YAML 1.2's spellings, after substitution). yes/no/on/off are
 * refused rather than read as YAML 1.1 would: the two readings differ, and a typo must not pass. */
static int get_bool(cfg_ld *L, const yaml_node_t *n, const char *path, int *out)
{
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                           "FALSE"};
    char *s = NULL;
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail(L, line_of(n), path, "expected true or false, got %s", kind_of(n));
    if (subst(L, n, path, &s)) return -1;
    int v = -1;
    for (size_t i = 0; i < 3 && v < 0; i++)
        v = !strcmp(s, t[i]) ? 1 : !strcmp(s, f[i]) ? 0 : -1;
    if (v < 0) fail(L, line_of(n), path, "expected true or false, got '%.40s'", s);
    free(s);
    if (v < 0) return -1;
    *out = v;
    return 0;
}

/* Reads an optional integer field into *dst (left unchanged when the field is absent). */
static int int_field(cfg_ld *L, const yaml_node_t *map, const char *path, const char *key,
                     int64_t min, int64_t max, int64_t *dst)
{
    char cp[CFG_PATH_MAX];
    yaml_node_t *v = get_field(L, map, key);
    if (!v) return 0;
    path_key(cp, path, key);
    return get_int(L, v, cp, min, max, dst);
}

static int int_field_i(cfg_ld *L, const yaml_node_t *map, const char *path, const char *key,
                       int min, int max, int *dst)
{
    int64_t v = *dst;
    if (int_field(L, map, path, key, min, max, &v)) return -1;
    *dst = (int)v;
    return 0;
}

/* A non-negative exact decimal scaled by 10^scale ("2.50" with scale 9 -> 2500000000). */
static int get_money(cfg_ld *L, const yaml_node_t *n, const char *path, int scale, int64_t *out)
{
    char *s = NULL;
    int64_t v;
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return fail(L, line_of(n), path, "expected a decimal number, got %s", kind_of(n));
    if (subst(L, n, path, &s)) return -1;
    if (ms_parse_decimal(s, strlen(s), scale, &v)) {
        fail(L, line_of(n), path,
             "expected a decimal number such as 2.50 (at most %d decimal places), got '%.40s'",
             scale, s);
        free(s);
        return -1;
    }
    free(s);
    if (v < 0) return fail(L, line_of(n), path, "must not be negative");
    *out = v;
    return 0;
}

/* ---- sections ---- */

static int parse_listen(cfg_ld *L, cfg_t *c, const yaml_node_t *n, const char *path)
{
    char *s = NULL, *host, *port;
    int64_t p;
    int rc = -1;
    if (get_str(L, n, path, &s)) return -1;
    if (s[0] == '[') {
        char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') {
            fail(L, line_of(n), path, "expected [IPV6]:PORT, e.g. [::1]:8080");
            goto cleanup;
        }
        *rb = '\0';
        host = s + 1;
        port = rb + 2;
    } else {
        char *colon = strrchr(s, ':');
        if (!colon) {
            fail(L, line_of(n), path, "expected HOST:PORT, e.g. 127.0.0.1:8080");
            goto cleanup;
        }
        *colon = '\0';
        if (strchr(s, ':')) {
            fail(L, line_of(n), path, "an IPv6 address is written in brackets: [::1]:8080");
            goto cleanup;
        }
        host = s;
        port = colon + 1;
    }
    if (!*host) {
        fail(L, line_of(n), path, "expected HOST:PORT, the host is missing");
        goto cleanup;
    }
    if (ms_parse_decimal(port, strlen(port), 0, &p) || p < 0 || p > 65535) {
        fail(L, line_of(n), path,
             "the port must be a number between 0 and 65535 (0: any free port)");
        goto cleanup;
    }
    char *h = strdup(host);
    if (!h) {
        fail(L, line_of(n), path, "out of memory");
        goto cleanup;
    }
    free(c->listen_host);
    c->listen_host = h;
    c->listen_port = (int)p;
    rc = 0;
cleanup:
    free(s);
    return rc;
}

static int parse_server(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"listen",
                                         "workers",
                                         "max_body_bytes",
                                         "max_header_bytes",
                                         "max_headers",
                                         "header_timeout_ms",
                                         "body_timeout_ms",
                                         "idle_timeout_ms",
                                         "drain_timeout_ms",
                                         "admin_token",
                                         "background_priority",
                                         "busy_poll_us",
                                         "metrics_public",
                                         NULL};
    const char *path = "server";
    yaml_node_t *v;
    if (is_null(n)) return 0;
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    if ((v = get_field(L, n, "listen")) && parse_listen(L, c, v, "server.listen")) return -1;
    if (int_field_i(L, n, path, "workers", 0, 1024, &c->workers) ||
        int_field(L, n, path, "max_body_bytes", 1, 1LL << 30, &c->max_body_bytes) ||
        int_field(L, n, path, "max_header_bytes", 1024, 1LL << 20, &c->max_header_bytes) ||
        int_field_i(L, n, path, "max_headers", 1, 10000, &c->max_headers) ||
        int_field(L, n, path, "header_timeout_ms", 1, CFG_DAY_MS, &c->header_timeout_ms) ||
        int_field(L, n, path, "body_timeout_ms", 1, CFG_DAY_MS, &c->body_timeout_ms) ||
        int_field(L, n, path, "idle_timeout_ms", 1, CFG_DAY_MS, &c->idle_timeout_ms) ||
        int_field(L, n, path, "drain_timeout_ms", 0, CFG_DAY_MS, &c->drain_timeout_ms) ||
        int_field_i(L, n, path, "busy_poll_us", 0, 1000, &c->busy_poll_us))
        return -1;
    /* An empty admin token is kept as "": the admin API treats NULL and "" alike (disabled). */
    if ((v = get_field(L, n, "admin_token")) &&
        get_str(L, v, "server.admin_token", &c->admin_token))
        return -1;
    if ((v = get_field(L, n, "background_priority"))) {
        char *s;
        if (get_str(L, v, "server.background_priority", &s)) return -1;
        int idle = !strcmp(s, "idle"), normal = !strcmp(s, "normal");
        if (!idle && !normal) {
            fail(L, line_of(v), "server.background_priority",
                 "unknown value '%.40s' (expected idle or normal)", s);
            free(s);
            return -1;
        }
        c->background_idle = idle;
        free(s);
    }
    if ((v = get_field(L, n, "metrics_public")) &&
        get_bool(L, v, "server.metrics_public", &c->metrics_public))
        return -1;
    return 0;
}

/* A relative store.sqlite is relative to the config file's directory, not to the current one:
 * otherwise a CLI command run from elsewhere would silently create a new, empty store whose keys
 * never work on the running gateway. The result is absolute, so logs say which file it is. */
static int resolve_path(cfg_t *c, char **pathp, const char *field, char *err, size_t errlen)
{
    if (!*pathp || (*pathp)[0] == '/') return 0;
    char dir[PATH_MAX], real[PATH_MAX];
    const char *slash = strrchr(c->path, '/');
    size_t dl = slash ? (size_t)(slash - c->path) : 0;
    if (dl >= sizeof dir) dl = sizeof dir - 1;
    if (slash && dl == 0) dl = 1; /* "/modelswitch.yaml": the root */
    memcpy(dir, slash ? c->path : ".", slash ? dl : 1);
    dir[slash ? dl : 1] = '\0';
    if (!realpath(dir, real)) {
        snprintf(err, errlen, "%s: %s: cannot resolve the config file's directory: %s", c->path,
                 field, strerror(errno));
        return -1;
    }
    size_t rl = strlen(real), sl = strlen(*pathp);
    char *abs = malloc(rl + 1 + sl + 1);
    if (!abs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(abs, real, rl);
    abs[rl] = '/';
    memcpy(abs + rl + 1, *pathp, sl + 1);
    free(*pathp);
    *pathp = abs;
    return 0;
}

/* store.sqlite and store.journal, relative to the config file's directory; the journal's default
 * follows the database (docs/CONFIG.md, `store`). */
static int resolve_store_path(cfg_t *c, char *err, size_t errlen)
{
    if (resolve_path(c, &c->sqlite_path, "store.sqlite", err, errlen) != 0) return -1;
    if (!c->journal_path) {
        const char *base = c->sqlite_path ? c->sqlite_path : "modelswitch-ledger";
        size_t n = strlen(base) + sizeof ".journal";
        if (!(c->journal_path = malloc(n))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        snprintf(c->journal_path, n, "%s.journal", base);
    }
    return resolve_path(c, &c->journal_path, "store.journal", err, errlen);
}

/* One line for the operator: models that exist but cannot be served, and what to set. */
static void warn_unserved_models(const cfg_t *c)
{
    char line[1024];
    size_t k = 0;
    int n = 0;
    for (size_t i = 0; i < c->nmodels; i++) {
        const cfg_model *m = &c->models[i];
        if (m->ndeployments > 0 || !m->unconfigured) continue;
        const cfg_provider *p = m->unconfigured;
        int w = snprintf(line + k, sizeof line - k, "%s%s (provider %s%s%s)", n ? ", " : "",
                         m->name, p->name, p->api_key_var[0] ? ": set " : "", p->api_key_var);
        n++;
        if (w < 0 || (size_t)w >= sizeof line - k) {
            memcpy(line + sizeof line - 5, "...", 4);
            k = sizeof line - 1;
            break;
        }
        k += (size_t)w;
    }
    if (n) log_warn("models not served because their providers have no API key: %s", line);
}

static int parse_store(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"sqlite", "postgres", "journal", NULL};
    yaml_node_t *sq, *pg, *jr;
    if (is_null(n)) return 0;
    if (want_map(L, n, "store") || check_fields(L, n, "store", fields)) return -1;
    if ((jr = get_field(L, n, "journal"))) {
        if (get_str(L, jr, "store.journal", &c->journal_path)) return -1;
        if (!*c->journal_path)
            return fail(L, line_of(jr), "store.journal", "the journal path must not be empty");
    }
    sq = get_field(L, n, "sqlite");
    pg = get_field(L, n, "postgres");
    if (!sq == !pg)
        return fail(L, line_of(n), "store", "give exactly one of sqlite: PATH or postgres: URL");
    if (sq) {
        char *s;
        if (get_str(L, sq, "store.sqlite", &s)) return -1;
        if (!*s) {
            free(s);
            return fail(L, line_of(sq), "store.sqlite", "the database path must not be empty");
        }
        free(c->sqlite_path);
        c->sqlite_path = s;
    } else {
        if (get_str(L, pg, "store.postgres", &c->postgres_url)) return -1;
        if (!*c->postgres_url)
            return fail(L, line_of(pg), "store.postgres", "the database URL must not be empty");
        /* sqlite_path == NULL tells the store that PostgreSQL was chosen. */
        free(c->sqlite_path);
        c->sqlite_path = NULL;
    }
    return 0;
}

/* Per-minute limits: far above any real provider's, and low enough that the rate limiter's exact
 * integer arithmetic (src/ratelimit/ratelimit.c) stays within int64. */
#define CFG_MAX_RPM 1000000000LL
#define CFG_MAX_TPM 1000000000000LL

static int parse_limits(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"requests_per_minute", "tokens_per_minute",
                                         "account_requests_per_minute", "account_tokens_per_minute",
                                         NULL};
    if (is_null(n)) return 0;
    if (want_map(L, n, "limits") || check_fields(L, n, "limits", fields)) return -1;
    /* A key always has a limit (its own or these defaults); account limits are optional. */
    if (int_field(L, n, "limits", "requests_per_minute", 1, CFG_MAX_RPM, &c->requests_per_minute) ||
        int_field(L, n, "limits", "tokens_per_minute", 1, CFG_MAX_TPM, &c->tokens_per_minute) ||
        int_field(L, n, "limits", "account_requests_per_minute", 0, CFG_MAX_RPM,
                  &c->account_requests_per_minute) ||
        int_field(L, n, "limits", "account_tokens_per_minute", 0, CFG_MAX_TPM,
                  &c->account_tokens_per_minute))
        return -1;
    return 0;
}

/* Fails unless *hi >= *lo; the error points at hi's field when it was written, else at lo's
 * (the one the operator changed against the other's default). */
static int check_order(cfg_ld *L, const yaml_node_t *map, const char *path, const char *lo_name,
                       int64_t lo, const char *hi_name, int64_t hi)
{
    char cp[CFG_PATH_MAX];
    yaml_node_t *v = get_field(L, map, hi_name);
    const char *at = hi_name;
    if (hi >= lo) return 0;
    if (!v) {
        v = get_field(L, map, lo_name);
        at = lo_name;
    }
    path_key(cp, path, at);
    return fail(L, line_of(v), cp, "%s (%lld) must not be less than %s (%lld)", hi_name,
                (long long)hi, lo_name, (long long)lo);
}

/* cooldown_failures (N consecutive failed attempts) is the old name of min_requests: a
 * deployment that fails everything still cools down after N failures, now N failed requests. */
static int routing_alias(cfg_ld *L, cfg_t *c, const yaml_node_t *n, const char *path)
{
    char cp[CFG_PATH_MAX];
    yaml_node_t *old = get_field(L, n, "cooldown_failures");
    if (!old) return 0;
    if (get_field(L, n, "min_requests")) {
        path_key(cp, path, "cooldown_failures");
        return fail(L, line_of(old), cp,
                    "is the deprecated name of min_requests; give only min_requests");
    }
    c->routing.min_requests = c->routing.cooldown_failures;
    return 0;
}

static int parse_routing(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {
        "max_attempts",       "retry_budget_ms",      "backoff_base_ms",   "backoff_max_ms",
        "retry_after_max_ms", "failure_rate_percent", "failure_window_ms", "min_requests",
        "cooldown_failures",  "cooldown_ms",          "cooldown_max_ms",   NULL};
    const char *path = "routing";
    if (is_null(n)) return 0;
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    if (int_field_i(L, n, path, "max_attempts", 1, 20, &c->routing.max_attempts) ||
        int_field(L, n, path, "retry_budget_ms", 0, CFG_DAY_MS, &c->routing.retry_budget_ms) ||
        int_field(L, n, path, "backoff_base_ms", 0, CFG_DAY_MS, &c->routing.backoff_base_ms) ||
        int_field(L, n, path, "backoff_max_ms", 0, CFG_DAY_MS, &c->routing.backoff_max_ms) ||
        int_field(L, n, path, "retry_after_max_ms", 0, CFG_DAY_MS,
                  &c->routing.retry_after_max_ms) ||
        int_field_i(L, n, path, "failure_rate_percent", 1, 100, &c->routing.failure_rate_percent) ||
        int_field(L, n, path, "failure_window_ms", 100, CFG_DAY_MS,
                  &c->routing.failure_window_ms) ||
        int_field_i(L, n, path, "min_requests", 1, 1000000, &c->routing.min_requests) ||
        int_field_i(L, n, path, "cooldown_failures", 1, 1000000, &c->routing.cooldown_failures) ||
        int_field(L, n, path, "cooldown_ms", 0, CFG_DAY_MS, &c->routing.cooldown_ms) ||
        int_field(L, n, path, "cooldown_max_ms", 0, CFG_DAY_MS, &c->routing.cooldown_max_ms))
        return -1;
    if (routing_alias(L, c, n, path) ||
        check_order(L, n, path, "backoff_base_ms", c->routing.backoff_base_ms, "backoff_max_ms",
                    c->routing.backoff_max_ms) ||
        check_order(L, n, path, "cooldown_ms", c->routing.cooldown_ms, "cooldown_max_ms",
                    c->routing.cooldown_max_ms))
        return -1;
    return 0;
}

static int parse_billing(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"markup_percent", "default_max_output_tokens", NULL};
    yaml_node_t *v;
    if (is_null(n)) return 0;
    if (want_map(L, n, "billing") || check_fields(L, n, "billing", fields)) return -1;
    if ((v = get_field(L, n, "markup_percent")) &&
        get_money(L, v, "billing.markup_percent", 6, &c->markup_percent_micro))
        return -1;
    if (int_field(L, n, "billing", "default_max_output_tokens", 1, 100000000,
                  &c->default_max_output_tokens))
        return -1;
    return 0;
}

/* responses: the Responses API's stored responses (docs/DIALECTS.md). */
static int parse_responses_section(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"retention_days", NULL};
    if (is_null(n)) return 0;
    if (want_map(L, n, "responses") || check_fields(L, n, "responses", fields)) return -1;
    return int_field(L, n, "responses", "retention_days", 0, 3650, &c->responses_retention_days);
}

/* notifications: how account webhooks are delivered (docs/CONFIG.md, docs/API.md). */
static int parse_notifications(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"webhook_timeout_ms", "allow_private_networks", NULL};
    yaml_node_t *v;
    if (is_null(n)) return 0;
    if (want_map(L, n, "notifications") || check_fields(L, n, "notifications", fields)) return -1;
    if (int_field(L, n, "notifications", "webhook_timeout_ms", 100, 60000, &c->notify_timeout_ms))
        return -1;
    if ((v = get_field(L, n, "allow_private_networks")) &&
        get_bool(L, v, "notifications.allow_private_networks", &c->notify_allow_private))
        return -1;
    return 0;
}

static int parse_log(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    static const char *const fields[] = {"level", NULL};
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const int levels[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    yaml_node_t *v;
    char *s;
    if (is_null(n)) return 0;
    if (want_map(L, n, "log") || check_fields(L, n, "log", fields)) return -1;
    if (!(v = get_field(L, n, "level"))) return 0;
    if (get_str(L, v, "log.level", &s)) return -1;
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            c->log_level = levels[i];
            free(s);
            return 0;
        }
    fail(L, line_of(v), "log.level", "unknown level '%.40s' (expected debug, info, warn or error)",
         s);
    free(s);
    return -1;
}

static const char *const kind_names[] = {"openai", "anthropic", "gemini", "azure", "echo"};

/* An API version goes into a URL's query as it is: only characters that need no escaping. */
static int valid_api_version(const char *s)
{
    if (!*s || strlen(s) > 32) return 0;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* `responses`: whether an openai or azure upstream speaks OpenAI's Responses API, so that a
 * Responses client's request passes through to it. Only OpenAI's own URL is known to: other
 * OpenAI-shaped servers (vLLM, Ollama, Groq...) and Azure resources (whose Responses API depends
 * on the region and the model) are opted in by the operator. Other kinds cannot take it (a field
 * that would be ignored is refused). */
static int parse_responses(cfg_ld *L, const yaml_node_t *n, const char *path, cfg_provider *p)
{
    char cp[CFG_PATH_MAX];
    yaml_node_t *v = get_field(L, n, "responses");
    path_key(cp, path, "responses");
    if (v && p->kind != PROV_OPENAI && p->kind != PROV_AZURE)
        return fail(L, line_of(v), cp, "only an openai or azure provider takes responses");
    p->responses = p->kind == PROV_OPENAI && strcasecmp(p->base_url, CFG_OPENAI_BASE_URL) == 0;
    return v ? get_bool(L, v, cp, &p->responses) : 0;
}

/* Whether the file holds at least one PEM certificate (read now, so a wrong path fails the load
 * instead of every request to the provider). */
static int pem_has_cert(const char *file)
{
    FILE *f = fopen(file, "r");
    X509 *x;
    if (!f) return 0;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (!x) return 0;
    X509_free(x);
    return 1;
}

/* Extra CAs trusted for this provider's https upstream, on top of the system store. */
static int parse_tls_ca_file(cfg_ld *L, const yaml_node_t *n, const char *path, cfg_provider *p)
{
    char cp[CFG_PATH_MAX];
    yaml_node_t *v = get_field(L, n, "tls_ca_file");

    if (!v) return 0;
    path_key(cp, path, "tls_ca_file");
    if (!p->base_url || strncmp(p->base_url, "https://", 8) != 0)
        return fail(L, line_of(v), cp,
                    "only a provider with an https:// base_url takes tls_ca_file");
    if (get_str(L, v, cp, &p->tls_ca_file)) return -1;
    if (!*p->tls_ca_file) {
        free(p->tls_ca_file);
        p->tls_ca_file = NULL;
        return 0;
    }
    if (!pem_has_cert(p->tls_ca_file))
        return fail(L, line_of(v), cp, "cannot read a PEM certificate from '%.200s'",
                    p->tls_ca_file);
    return 0;
}

static int parse_provider(cfg_ld *L, const yaml_node_t *k, const yaml_node_t *n, cfg_provider *p)
{
    static const char *const fields[] = {"kind",
                                         "base_url",
                                         "api_key",
                                         "timeout_ms",
                                         "connect_timeout_ms",
                                         "first_byte_timeout_ms",
                                         "idle_timeout_ms",
                                         "api_version",
                                         "responses",
                                         "tls_ca_file",
                                         NULL};
    char path[CFG_PATH_MAX], cp[CFG_PATH_MAX];
    yaml_node_t *v, *bu, *ak, *av;
    char *s = NULL;
    int rc = -1;

    path_key(path, "providers", p->name);
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;

    path_key(cp, path, "kind");
    if (!(v = get_field(L, n, "kind")))
        return fail(L, line_of(k), cp,
                    "kind is required (openai, anthropic, gemini, azure or echo)");
    if (get_str(L, v, cp, &s)) return -1;
    size_t ki = 0;
    while (ki < 5 && strcmp(s, kind_names[ki]))
        ki++;
    if (ki == 5) {
        fail(L, line_of(v), cp,
             "unknown provider kind '%.40s' (expected openai, anthropic, gemini, azure or echo)",
             s);
        goto cleanup;
    }
    p->kind = (cfg_prov_kind)ki;
    free(s);
    s = NULL;

    bu = get_field(L, n, "base_url");
    ak = get_field(L, n, "api_key");
    if (p->kind == PROV_ECHO) {
        /* The echo provider is built in; a URL or key here is a mistake worth reporting. */
        path_key(cp, path, "base_url");
        if (bu) return fail(L, line_of(bu), cp, "an echo provider takes no base_url");
        path_key(cp, path, "api_key");
        if (ak) return fail(L, line_of(ak), cp, "an echo provider takes no api_key");
        p->enabled = 1;
    } else {
        path_key(cp, path, "base_url");
        if (bu) {
            if (get_str(L, bu, cp, &s)) return -1;
            /* The URL itself is not echoed: it may carry credentials. */
            if (*s && strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) {
                fail(L, line_of(bu), cp, "must start with http:// or https://");
                goto cleanup;
            }
            size_t len = strlen(s);
            if (len && s[len - 1] == '/') s[len - 1] = '\0';
            if (*s) {
                p->base_url = s;
                s = NULL;
            }
            free(s);
            s = NULL;
        }
        if (!p->base_url) {
            const char *def = p->kind == PROV_OPENAI      ? CFG_OPENAI_BASE_URL
                              : p->kind == PROV_ANTHROPIC ? "https://api.anthropic.com"
                              : p->kind == PROV_GEMINI ? "https://generativelanguage.googleapis.com"
                                                       : NULL;
            if (!def)
                return fail(L, bu ? line_of(bu) : line_of(k), cp,
                            "an azure provider requires base_url");
            if (!(p->base_url = strdup(def))) return fail(L, line_of(k), cp, "out of memory");
        }
        path_key(cp, path, "api_key");
        if (ak) {
            if (get_str(L, ak, cp, &p->api_key)) return -1;
            p->enabled = *p->api_key != '\0';
            if (!p->enabled) first_var_name(ak, p->api_key_var, sizeof p->api_key_var);
        } else {
            p->enabled = 1;
        }
    }
    if (int_field(L, n, path, "timeout_ms", 1, CFG_DAY_MS, &p->timeout_ms) ||
        int_field(L, n, path, "connect_timeout_ms", 1, CFG_DAY_MS, &p->connect_timeout_ms) ||
        int_field(L, n, path, "idle_timeout_ms", 1, CFG_DAY_MS, &p->idle_timeout_ms))
        return -1;
    /* Azure OpenAI names its API version in every request's query; other kinds have none, and a
     * field that would be ignored is refused (a typo must not look like it took effect). */
    path_key(cp, path, "api_version");
    av = get_field(L, n, "api_version");
    if (av && p->kind != PROV_AZURE)
        return fail(L, line_of(av), cp, "only an azure provider takes api_version");
    if (p->kind == PROV_AZURE) {
        if (av && get_str(L, av, cp, &p->api_version)) return -1;
        if (av && !valid_api_version(p->api_version)) {
            fail(L, line_of(av), cp,
                 "expected a version like 2024-10-21 (letters, digits, '-', '.')");
            return -1;
        }
        if (!p->api_version && !(p->api_version = strdup(CFG_AZURE_API_VERSION)))
            return fail(L, line_of(k), cp, "out of memory");
    }
    if (parse_responses(L, n, path, p) || parse_tls_ca_file(L, n, path, p)) return -1;
    /* Waiting for the first byte longer than the whole request may take would never happen:
     * such a value is a mistake, so it is refused rather than silently cut. */
    p->first_byte_timeout_ms = p->timeout_ms;
    if (int_field(L, n, path, "first_byte_timeout_ms", 1, CFG_DAY_MS, &p->first_byte_timeout_ms))
        return -1;
    if (p->first_byte_timeout_ms > p->timeout_ms) {
        path_key(cp, path, "first_byte_timeout_ms");
        return fail(L, line_of(get_field(L, n, "first_byte_timeout_ms")), cp,
                    "must not be more than timeout_ms (%lld), got %lld", (long long)p->timeout_ms,
                    (long long)p->first_byte_timeout_ms);
    }
    rc = 0;
cleanup:
    free(s);
    return rc;
}

static int parse_providers(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    if (is_null(n)) return 0;
    if (want_map(L, n, "providers") || check_fields(L, n, "providers", NULL)) return -1;
    size_t np = map_size(n);
    if (!np) return 0;
    if (!(c->providers = calloc(np, sizeof *c->providers)))
        return fail(L, line_of(n), "providers", "out of memory");
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node_at(L, pr->key);
        cfg_provider *p = &c->providers[c->nproviders++];
        p->line = line_of(k);
        p->timeout_ms = 600000;
        p->connect_timeout_ms = 10000;
        p->idle_timeout_ms = 60000;
        if (!(p->name = strdup((const char *)k->data.scalar.value)))
            return fail(L, line_of(k), "providers", "out of memory");
        if (parse_provider(L, k, node_at(L, pr->value), p)) return -1;
    }
    return 0;
}

static cfg_provider *find_provider_mut(cfg_t *c, const char *name)
{
    for (size_t i = 0; i < c->nproviders; i++)
        if (!strcmp(c->providers[i].name, name)) return &c->providers[i];
    return NULL;
}

static int parse_pricing(cfg_ld *L, cfg_model *m, const yaml_node_t *k, const yaml_node_t *n,
                         const char *mpath)
{
    static const char *const fields[] = {"input",       "output",         "cached_input",
                                         "cache_write", "cache_write_1h", NULL};
    /* the prompt kinds a provider may bill apart from plain input; absent = the input price */
    static const char *const extra[] = {"cached_input", "cache_write", "cache_write_1h"};
    int64_t *const extra_price[] = {&m->price_cached_in_nusd_per_mtok,
                                    &m->price_cache_write_nusd_per_mtok,
                                    &m->price_cache_write_1h_nusd_per_mtok};
    char path[CFG_PATH_MAX], cp[CFG_PATH_MAX];
    yaml_node_t *in, *out, *v;
    path_key(path, mpath, "pricing");
    if (!n)
        return fail(L, line_of(k), path,
                    "pricing is required: {input: USD, output: USD} per 1M tokens");
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    in = get_field(L, n, "input");
    out = get_field(L, n, "output");
    if (!in || !out) return fail(L, line_of(n), path, "both input and output prices are required");
    path_key(cp, path, "input");
    if (get_money(L, in, cp, 9, &m->price_in_nusd_per_mtok)) return -1;
    path_key(cp, path, "output");
    if (get_money(L, out, cp, 9, &m->price_out_nusd_per_mtok)) return -1;
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) {
        *extra_price[i] = m->price_in_nusd_per_mtok;
        if (!(v = get_field(L, n, extra[i]))) continue;
        path_key(cp, path, extra[i]);
        if (get_money(L, v, cp, 9, extra_price[i])) return -1;
    }
    return 0;
}

static int parse_deployment(cfg_ld *L, cfg_t *c, cfg_model *m, const yaml_node_t *n,
                            const char *path)
{
    static const char *const fields[] = {"provider", "model", "weight", "priority", NULL};
    char cp[CFG_PATH_MAX];
    yaml_node_t *v;
    char *pname = NULL, *model = NULL;
    int64_t weight = 1, priority = 1;
    cfg_provider *p;
    int rc = -1;

    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    path_key(cp, path, "provider");
    if (!(v = get_field(L, n, "provider"))) return fail(L, line_of(n), cp, "provider is required");
    if (get_str(L, v, cp, &pname)) return -1;
    if (!(p = find_provider_mut(c, pname))) {
        fail(L, line_of(v), cp, "unknown provider '%.64s'", pname);
        goto cleanup;
    }
    path_key(cp, path, "model");
    if ((v = get_field(L, n, "model"))) {
        if (get_str(L, v, cp, &model)) goto cleanup;
        if (!*model) {
            fail(L, line_of(v), cp, "must not be empty");
            goto cleanup;
        }
    } else if (!(model = strdup(m->name))) {
        fail(L, line_of(n), cp, "out of memory");
        goto cleanup;
    }
    if (int_field(L, n, path, "weight", 0, 1000000, &weight) ||
        int_field(L, n, path, "priority", 0, 1000000, &priority))
        goto cleanup;
    /* Deployments of a disabled provider are validated like the others, then left out. */
    if (!p->enabled && !m->unconfigured) m->unconfigured = p;
    if (p->enabled) {
        cfg_deployment *d = &m->deployments[m->ndeployments++];
        d->provider = p;
        d->model = model;
        model = NULL;
        d->weight = (int)weight;
        d->priority = (int)priority;
    }
    rc = 0;
cleanup:
    free(pname);
    free(model);
    return rc;
}

/* True when models (the `models:` map) has a model called name. */
static int model_declared(cfg_ld *L, const yaml_node_t *models, const char *name)
{
    for (yaml_node_pair_t *p = models->data.mapping.pairs.start; p < models->data.mapping.pairs.top;
         p++)
        if (!strcmp(key_str(L, p), name)) return 1;
    return 0;
}

/* `limits:` of a model: gateway-wide limits on the model, shared by every key (0 = none). */
static int parse_model_limits(cfg_ld *L, cfg_model *m, const yaml_node_t *n, const char *mpath)
{
    static const char *const fields[] = {"requests_per_minute", "tokens_per_minute", NULL};
    char path[CFG_PATH_MAX];
    if (!n || is_null(n)) return 0;
    path_key(path, mpath, "limits");
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    if (int_field(L, n, path, "requests_per_minute", 0, CFG_MAX_RPM, &m->requests_per_minute) ||
        int_field(L, n, path, "tokens_per_minute", 0, CFG_MAX_TPM, &m->tokens_per_minute))
        return -1;
    return 0;
}

/* `cache:` of a model: its answers kept in the response cache (docs/CONFIG.md). Absent: no
 * caching unless a request asks, within the default bound. */
static int parse_model_cache(cfg_ld *L, cfg_model *m, const yaml_node_t *n, const char *mpath)
{
    static const char *const fields[] = {"ttl_s", "max_bytes", NULL};
    char path[CFG_PATH_MAX];
    m->cache_ttl_s = 0;
    m->cache_max_bytes = CFG_CACHE_DEFAULT_BYTES;
    if (!n || is_null(n)) return 0;
    path_key(path, mpath, "cache");
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    m->cache_ttl_s = CFG_CACHE_DEFAULT_TTL_S;
    if (int_field(L, n, path, "ttl_s", 1, CFG_CACHE_MAX_TTL_S, &m->cache_ttl_s) ||
        int_field(L, n, path, "max_bytes", CFG_CACHE_MIN_BYTES, CFG_CACHE_MAX_BYTES,
                  &m->cache_max_bytes))
        return -1;
    return 0;
}

static int parse_model(cfg_ld *L, cfg_t *c, const yaml_node_t *models, const yaml_node_t *k,
                       const yaml_node_t *n, cfg_model *m)
{
    static const char *const fields[] = {
        "pricing", "max_output_tokens", "deployments", "fallbacks", "limits", "cache", NULL};
    char path[CFG_PATH_MAX], cp[CFG_PATH_MAX], ip[CFG_PATH_MAX];
    yaml_node_t *v;

    path_key(path, "models", m->name);
    if (want_map(L, n, path) || check_fields(L, n, path, fields)) return -1;
    if (parse_pricing(L, m, k, get_field(L, n, "pricing"), path)) return -1;
    if (int_field(L, n, path, "max_output_tokens", 0, 100000000, &m->max_output_tokens)) return -1;
    if (parse_model_limits(L, m, get_field(L, n, "limits"), path)) return -1;
    if (parse_model_cache(L, m, get_field(L, n, "cache"), path)) return -1;

    path_key(cp, path, "deployments");
    if (!(v = get_field(L, n, "deployments")))
        return fail(L, line_of(k), cp, "at least one deployment is required");
    if (want_list(L, v, cp)) return -1;
    size_t nd = list_size(v);
    if (!nd) return fail(L, line_of(v), cp, "at least one deployment is required");
    if (!(m->deployments = calloc(nd, sizeof *m->deployments)))
        return fail(L, line_of(v), cp, "out of memory");
    for (size_t i = 0; i < nd; i++) {
        path_idx(ip, cp, i);
        if (parse_deployment(L, c, m, node_at(L, v->data.sequence.items.start[i]), ip)) return -1;
    }

    path_key(cp, path, "fallbacks");
    if (!(v = get_field(L, n, "fallbacks")) || is_null(v)) return 0;
    if (want_list(L, v, cp)) return -1;
    size_t nf = list_size(v);
    if (!nf) return 0;
    if (!(m->fallbacks = calloc(nf, sizeof *m->fallbacks)))
        return fail(L, line_of(v), cp, "out of memory");
    for (size_t i = 0; i < nf; i++) {
        yaml_node_t *f = node_at(L, v->data.sequence.items.start[i]);
        char *s;
        path_idx(ip, cp, i);
        if (get_str(L, f, ip, &s)) return -1;
        m->fallbacks[m->nfallbacks++] = s;
        if (!model_declared(L, models, s))
            return fail(L, line_of(f), ip, "unknown model '%.64s'", s);
        if (!strcmp(s, m->name))
            return fail(L, line_of(f), ip, "a model cannot be its own fallback");
    }
    return 0;
}

static int parse_models(cfg_ld *L, cfg_t *c, const yaml_node_t *k, const yaml_node_t *n)
{
    const char *none = "no models: at least one model must be configured";
    if (!n || is_null(n)) return fail(L, line_of(k), "models", "%s", none);
    if (want_map(L, n, "models") || check_fields(L, n, "models", NULL)) return -1;
    size_t nm = map_size(n);
    if (!nm) return fail(L, line_of(n), "models", "%s", none);
    if (!(c->models = calloc(nm, sizeof *c->models)))
        return fail(L, line_of(n), "models", "out of memory");
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *mk = node_at(L, pr->key);
        cfg_model *m = &c->models[c->nmodels++];
        m->line = line_of(mk);
        m->created = L->now_s;
        if (!(m->name = strdup((const char *)mk->data.scalar.value)))
            return fail(L, line_of(mk), "models", "out of memory");
        m->name_hash = ms_fnv1a64(m->name);
        if (parse_model(L, c, n, mk, node_at(L, pr->value), m)) return -1;
    }
    return 0;
}

/* redis: URL. Empty (the spec's `${REDIS_URL:-}` with the variable unset) means this instance
 * alone: no shared state. Only redis:// and unix: URLs are understood (no TLS in hiredis 0.14). */
static int parse_redis(cfg_ld *L, cfg_t *c, const yaml_node_t *n)
{
    char *s;
    if (!n || is_null(n)) return 0;
    if (get_str(L, n, "redis", &s)) return -1;
    if (!*s) {
        free(s);
        return 0;
    }
    if (strncmp(s, "redis://", 8) != 0 && strncmp(s, "unix:", 5) != 0) {
        free(s);
        return fail(L, line_of(n), "redis", "give a redis://HOST:PORT/DB or unix:PATH URL");
    }
    free(c->redis_url);
    c->redis_url = s;
    return 0;
}

static int parse_root(cfg_ld *L, cfg_t *c, yaml_node_t *root)
{
    static const char *const fields[] = {"server",    "store",         "redis",     "limits",
                                         "routing",   "billing",       "responses", "log",
                                         "providers", "notifications", "models",    NULL};
    yaml_node_t *mk = NULL;
    if (!root || is_null(root))
        return fail(L, 1, "models", "no models: at least one model must be configured");
    if (want_map(L, root, "") || check_fields(L, root, "", fields)) return -1;
    if (parse_server(L, c, get_field(L, root, "server")) ||
        parse_store(L, c, get_field(L, root, "store")) ||
        parse_redis(L, c, get_field(L, root, "redis")) ||
        parse_limits(L, c, get_field(L, root, "limits")) ||
        parse_routing(L, c, get_field(L, root, "routing")) ||
        parse_billing(L, c, get_field(L, root, "billing")) ||
        parse_responses_section(L, c, get_field(L, root, "responses")) ||
        parse_notifications(L, c, get_field(L, root, "notifications")) ||
        parse_log(L, c, get_field(L, root, "log")) ||
        parse_providers(L, c, get_field(L, root, "providers")))
        return -1;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++)
        if (!strcmp(key_str(L, p), "models")) mk = node_at(L, p->key);
    return parse_models(L, c, mk, get_field(L, root, "models"));
}

/* ---- loading ---- */

static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap > CFG_MAX_FILE) {
                snprintf(err, errlen, "%s: the file is larger than %d bytes", path, CFG_MAX_FILE);
                goto cleanup;
            }
            cap = cap ? cap * 2 : 16384;
            char *nd = realloc(data, cap + 1);
            if (!nd) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto cleanup;
            }
            data = nd;
        }
        size_t r = fread(data + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto cleanup;
    }
    if (len > CFG_MAX_FILE) {
        snprintf(err, errlen, "%s: the file is larger than %d bytes", path, CFG_MAX_FILE);
        goto cleanup;
    }
    data[len] = '\0';
    *out = data;
    *outlen = len;
    data = NULL;
    rc = 0;
cleanup:
    free(data);
    fclose(f);
    return rc;
}

static void yaml_error(cfg_ld *L, yaml_parser_t *pr)
{
    const yaml_mark_t *mk = pr->problem ? &pr->problem_mark : &pr->context_mark;
    snprintf(L->err, L->errlen, "%s:%d: syntax error: %s%s%s", L->file, (int)mk->line + 1,
             pr->problem ? pr->problem : "invalid YAML", pr->context ? " " : "",
             pr->context ? pr->context : "");
}

cfg_t *cfg_load(const char *path, char *err, size_t errlen)
{
    char dummy[1];
    char *text = NULL;
    size_t len = 0;
    cfg_t *c = NULL;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int parser_ok = 0, doc_ok = 0;
    cfg_ld L = {.file = path, .doc = &doc, .err = err, .errlen = errlen};

    if (!err || !errlen) {
        L.err = err = dummy;
        L.errlen = errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!path) {
        snprintf(err, errlen, "no config file given");
        return NULL;
    }
    if (read_file(path, &text, &len, err, errlen)) return NULL;
    L.now_s = ms_now_ms() / 1000;

    if (!(c = calloc(1, sizeof *c)) || !(c->path = strdup(path)) ||
        !(c->listen_host = strdup("127.0.0.1")) ||
        !(c->sqlite_path = strdup("data/modelswitch.db"))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    /* what outlives a config (the metrics' counters) tells configs apart by this, never by an
     * address a later config may reuse */
    static _Atomic uint64_t generations;
    c->generation = atomic_fetch_add(&generations, 1) + 1;
    c->listen_port = 8080;
    c->workers = 0;
    c->max_body_bytes = 8LL << 20;
    c->max_header_bytes = 16LL << 10;
    c->max_headers = 100;
    c->header_timeout_ms = 10000;
    c->body_timeout_ms = 30000;
    c->idle_timeout_ms = 60000;
    c->background_idle = 1;
    c->drain_timeout_ms = 30000;
    c->requests_per_minute = 600;
    c->tokens_per_minute = 1000000;
    c->account_requests_per_minute = 0;
    c->account_tokens_per_minute = 0;
    c->routing.max_attempts = 3;
    c->routing.retry_budget_ms = 30000;
    c->routing.backoff_base_ms = 100;
    c->routing.backoff_max_ms = 2000;
    c->routing.retry_after_max_ms = 10000;
    c->routing.failure_rate_percent = 50;
    c->routing.failure_window_ms = 10000;
    c->routing.min_requests = 5;
    c->routing.cooldown_failures = 3;
    c->routing.cooldown_ms = 5000;
    c->routing.cooldown_max_ms = 300000;
    c->markup_percent_micro = 0;
    c->default_max_output_tokens = 4096;
    c->responses_retention_days = 30;
    c->notify_timeout_ms = 5000;
    c->log_level = LOG_INFO;

    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_error(&L, &parser);
        goto fail;
    }
    doc_ok = 1;
    /* A second document ("---") would be silently ignored by a lazier reader. */
    if (yaml_document_get_root_node(&doc)) {
        if (!yaml_parser_load(&parser, &extra)) {
            yaml_error(&L, &parser);
            goto fail;
        }
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        int line2 = r2 ? line_of(r2) : 0;
        yaml_document_delete(&extra);
        if (r2) {
            snprintf(err, errlen, "%s:%d: syntax error: only one YAML document is allowed", path,
                     line2);
            goto fail;
        }
    }
    if (parse_root(&L, c, yaml_document_get_root_node(&doc))) goto fail;

    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    if (resolve_store_path(c, err, errlen) != 0) goto fail;
    for (size_t i = 0; i < c->nproviders; i++)
        if (!c->providers[i].enabled)
            log_warn("provider %s disabled: api_key is empty", c->providers[i].name);
    warn_unserved_models(c);
    return c;

fail:
    if (doc_ok) yaml_document_delete(&doc);
    if (parser_ok) yaml_parser_delete(&parser);
    free(text);
    cfg_free(c);
    return NULL;
}

void cfg_free(cfg_t *c)
{
    if (!c) return;
    free(c->path);
    free(c->listen_host);
    if (c->admin_token) explicit_bzero(c->admin_token, strlen(c->admin_token));
    free(c->admin_token);
    free(c->sqlite_path);
    free(c->postgres_url);
    free(c->journal_path);
    free(c->redis_url);
    for (size_t i = 0; i < c->nproviders; i++) {
        cfg_provider *p = &c->providers[i];
        free(p->name);
        free(p->base_url);
        if (p->api_key) explicit_bzero(p->api_key, strlen(p->api_key));
        free(p->api_key);
        free(p->api_version);
        free(p->tls_ca_file);
    }
    free(c->providers);
    for (size_t i = 0; i < c->nmodels; i++) {
        cfg_model *m = &c->models[i];
        free(m->name);
        for (size_t j = 0; j < m->ndeployments; j++)
            free(m->deployments[j].model);
        free(m->deployments);
        for (size_t j = 0; j < m->nfallbacks; j++)
            free(m->fallbacks[j]);
        free(m->fallbacks);
    }
    free(c->models);
    free(c);
}

const cfg_model *cfg_find_model(const cfg_t *c, const char *name, size_t len)
{
    if (!c || !name) return NULL;
    for (size_t i = 0; i < c->nmodels; i++) {
        const cfg_model *m = &c->models[i];
        if (strlen(m->name) == len && memcmp(m->name, name, len) == 0) return m;
    }
    return NULL;
}

const cfg_provider *cfg_find_provider(const cfg_t *c, const char *name)
{
    if (!c || !name) return NULL;
    for (size_t i = 0; i < c->nproviders; i++)
        if (!strcmp(c->providers[i].name, name)) return &c->providers[i];
    return NULL;
}

const char *cfg_prov_kind_name(cfg_prov_kind k)
{
    if ((unsigned)k < sizeof kind_names / sizeof kind_names[0]) return kind_names[k];
    return "unknown";
}
