/*
 * The account, key, migrate, audit, export and import commands (see cli.h): a small argument
 * parser, one function per subcommand, and plain-text output.
 *
 * Every command parses and validates its whole command line before it opens the store, so
 * `--help` and usage errors work without a database. USD amounts are parsed and printed exactly
 * (nano-dollars through ms_parse_decimal / ms_format_decimal, never a float). Full keys are
 * printed once, by `key create`, and are never echoed back in an error message: an argument that
 * looks like a key is shown redacted.
 */
#include "cli/cli.h"
#include "shared/shared.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"
#include "common/util.h"
#include "store/store.h"

typedef struct cli_sub cli_sub;
typedef int (*cli_fn)(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv);

struct cli_sub {
    const char *name;
    cli_fn fn;
    const char *usage;
};

/* An option that takes a value; *value stays NULL when the option is absent. */
typedef struct {
    const char *flag;
    const char **value;
} cli_opt;

/* ---- output helpers ---- */

__attribute__((format(printf, 1, 2))) static int cli_err(const char *fmt, ...)
{
    va_list ap;
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_ERROR;
}

__attribute__((format(printf, 2, 3))) static int cli_usage_err(const char *usage, const char *fmt,
                                                               ...)
{
    va_list ap;
    fputs("error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(usage, stderr);
    return CLI_USAGE;
}

/* Arguments are echoed in messages; one that could be a key (pasted by mistake) is not. */
static const char *cli_safe(const char *arg)
{
    if (strncmp(arg, "ms-", 3) == 0 || strncmp(arg, "mk-", 3) == 0) return "(key redacted)";
    return arg;
}

/* Copies a stored name for display with control characters replaced, so a name set through the
 * API cannot forge lines of CLI output. */
static const char *cli_clean(const char *s, char *out, size_t outlen)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outlen; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    out[i] = '\0';
    return out;
}

static const char *cli_usd(int64_t nusd, char *out, size_t outlen)
{
    if (!ms_format_decimal(nusd, 9, out, outlen)) snprintf(out, outlen, "?");
    return out;
}

/* A key's own rpm or tpm; -1 means the configured default applies. */
static const char *cli_limit(int64_t v, char *out, size_t outlen)
{
    if (v < 0) return "default";
    snprintf(out, outlen, "%lld", (long long)v);
    return out;
}

static const char *cli_time(int64_t ms, char *out)
{
    return ms_iso8601(ms, out, 0);
}

static const char *cli_type_name(key_type t)
{
    return t == KEY_BILLING ? "billing" : "proxy";
}

/* ---- argument parsing ---- */

static int cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    }
    return 0;
}

/* Parses options (`--flag VALUE` or `--flag=VALUE`) and exactly npos positional arguments named
 * posnames. Returns 0, or CLI_USAGE after printing the problem and the usage. */
static int cli_parse(const char *usage, int argc, char **argv, cli_opt *opts, size_t nopts,
                     const char **pos, const char *const *posnames, size_t npos)
{
    size_t got = 0;
    int only_pos = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        /* "-3" is a (negative) amount to refuse with its reason, not an unknown option */
        if (!only_pos && a[0] == '-' && a[1] != '\0' && (a[1] < '0' || a[1] > '9')) {
            const char *eq = strchr(a, '=');
            size_t fl = eq ? (size_t)(eq - a) : strlen(a);
            cli_opt *o = NULL;
            for (size_t j = 0; j < nopts && !o; j++)
                if (strlen(opts[j].flag) == fl && strncmp(opts[j].flag, a, fl) == 0) o = &opts[j];
            if (!o)
                return cli_usage_err(usage, "unknown option %.*s", (int)(fl > 64 ? 64 : fl),
                                     cli_safe(a));
            if (*o->value) return cli_usage_err(usage, "%s given twice", o->flag);
            if (eq)
                *o->value = eq + 1;
            else if (i + 1 < argc)
                *o->value = argv[++i];
            else
                return cli_usage_err(usage, "%s needs a value", o->flag);
            continue;
        }
        if (got == npos) return cli_usage_err(usage, "unexpected argument '%s'", cli_safe(a));
        pos[got++] = a;
    }
    if (got < npos) return cli_usage_err(usage, "missing %s", posnames[got]);
    return 0;
}

/* A positive decimal id. */
static int cli_parse_id(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (s[0] < '0' || s[0] > '9') return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0) return -1;
    *out = v;
    return 0;
}

/* A USD amount for option `what` (e.g. "--balance"), exactly, in nano-dollars: >= 0 (> 0 unless
 * zero_ok) and at most max. Returns 0, or CLI_USAGE after saying which rule the text breaks. */
static int cli_usd_arg(const char *usage, const char *what, const char *s, int zero_ok, int64_t max,
                       int64_t *out)
{
    const char *rest = s + (s[0] == '-');
    size_t ndig = strspn(rest, "0123456789"), nfrac = 0;
    int dot, shaped;
    int64_t v;

    rest += ndig;
    dot = *rest == '.';
    if (dot) {
        nfrac = strspn(rest + 1, "0123456789");
        rest += 1 + nfrac;
    }
    shaped = ndig > 0 && *rest == '\0' && (!dot || nfrac > 0); /* -?D+(.D+)? */
    if (ms_parse_decimal(s, strlen(s), 9, &v) == 0) {
        if (v < 0 || (v == 0 && !zero_ok))
            return cli_usage_err(usage, "%s: '%s' must be %s", what, cli_safe(s),
                                 zero_ok ? ">= 0" : "> 0");
        if (v > max) {
            char m[48];
            return cli_usage_err(usage, "%s: '%s' is above the maximum of %s USD", what,
                                 cli_safe(s), cli_usd(max, m, sizeof m));
        }
        *out = v;
        return 0;
    }
    /* Why the exact parse failed, from the text's shape: never by rounding it. */
    if (!shaped)
        return cli_usage_err(usage, "%s: '%s' is not a USD amount (e.g. 12.50)", what, cli_safe(s));
    if (s[0] == '-')
        return cli_usage_err(usage, "%s: '%s' must be %s", what, cli_safe(s),
                             zero_ok ? ">= 0" : "> 0");
    if (nfrac > 9)
        return cli_usage_err(usage, "%s: '%s' has more than 9 decimal places (1 nano-dollar)", what,
                             cli_safe(s));
    char m[48];
    return cli_usage_err(usage, "%s: '%s' is above the maximum of %s USD", what, cli_safe(s),
                         cli_usd(max, m, sizeof m));
}

/* A per-minute limit, as the API takes it: an integer >= 1. */
static int cli_limit_arg(const char *usage, const char *what, const char *s, int64_t *out)
{
    char *end;
    long long v = 0;
    int ok = s[0] >= '0' && s[0] <= '9'; /* strtoll would take blanks and signs */

    if (ok) {
        errno = 0;
        v = strtoll(s, &end, 10);
        ok = errno == 0 && *end == '\0' && v >= 1;
    }
    if (!ok)
        return cli_usage_err(usage, "%s: '%s' is not a whole number from 1 to %lld", what,
                             cli_safe(s), (long long)INT64_MAX);
    *out = v;
    return 0;
}

/* An empty or blank name cannot tell one account or key from another. */
static int cli_blank(const char *s)
{
    return s[strspn(s, " \t\n\r\v\f")] == '\0';
}

/* ---- store helpers ---- */

static store_t *cli_open(const cfg_t *cfg)
{
    char err[512];
    store_t *s = store_open(cfg, err, sizeof(err));
    if (!s) cli_err("%s", err);
    return s;
}

static int cli_store_err(store_t *s)
{
    return cli_err("%s", store_errmsg(s));
}

static int cli_cmp_key_id(const void *a, const void *b)
{
    const store_key *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Both kinds of keys of an account, ordered by id. */
static int cli_load_keys(store_t *s, int64_t account_id, store_key **out, size_t *n)
{
    store_key *proxy = NULL, *billing = NULL, *all = NULL;
    size_t np = 0, nb = 0;
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = store_key_list(s, account_id, KEY_PROXY, &proxy, &np)) != STORE_OK) goto cleanup;
    if ((rc = store_key_list(s, account_id, KEY_BILLING, &billing, &nb)) != STORE_OK) goto cleanup;
    if (np + nb > 0) {
        all = malloc((np + nb) * sizeof(*all));
        if (!all) {
            rc = STORE_ERR;
            fprintf(stderr, "error: out of memory\n");
            goto cleanup;
        }
        if (np) memcpy(all, proxy, np * sizeof(*all));
        if (nb) memcpy(all + np, billing, nb * sizeof(*all));
        qsort(all, np + nb, sizeof(*all), cli_cmp_key_id);
    }
    *out = all;
    *n = np + nb;
cleanup:
    free(proxy);
    free(billing);
    return rc;
}

static void cli_print_keys(const store_key *v, size_t n, const char *indent)
{
    char name[128], created[32], expires[32], limit[48], spent[48], rpm[24], tpm[24];
    int w = 4;

    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(v[i].name);
        if (len > w) w = len;
    }
    printf("%s%-6s %-7s %-*s %-8s %-6s %-20s %-20s %-14s %-10s %-13s %s\n", indent, "ID", "TYPE", w,
           "NAME", "PREFIX", "ACTIVE", "CREATED", "EXPIRES", "SPEND LIMIT", "RPM", "TPM",
           "SPENT (USD)");
    for (size_t i = 0; i < n; i++) {
        const store_key *k = &v[i];
        /* billing keys are never rate limited: "-" rather than a default that does not apply */
        int billing = k->type == KEY_BILLING;
        printf("%s%-6lld %-7s %-*s %-8s %-6s %-20s %-20s %-14s %-10s %-13s %s\n", indent,
               (long long)k->id, cli_type_name(k->type), w, cli_clean(k->name, name, sizeof(name)),
               k->prefix, k->active ? "yes" : "no", cli_time(k->created_at_ms, created),
               k->expires_at_ms ? cli_time(k->expires_at_ms, expires) : "never",
               k->spend_limit_nusd >= 0 ? cli_usd(k->spend_limit_nusd, limit, sizeof(limit))
                                        : "none",
               billing ? "-" : cli_limit(k->rpm, rpm, sizeof(rpm)),
               billing ? "-" : cli_limit(k->tpm, tpm, sizeof(tpm)),
               cli_usd(k->spent_nusd, spent, sizeof(spent)));
    }
}

/* ---- account ---- */

static int cli_account_create(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *name = NULL, *balance = NULL;
    cli_opt opts[] = {{"--name", &name}, {"--balance", &balance}};
    int64_t bal = 0, id = 0;
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, opts, 2, NULL, NULL, 0)) != 0) return rc;
    if (!name) return cli_usage_err(sub->usage, "--name is required");
    if (cli_blank(name)) return cli_usage_err(sub->usage, "--name must not be empty or blank");
    if (balance &&
        (rc = cli_usd_arg(sub->usage, "--balance", balance, 1, STORE_MAX_BALANCE_NUSD, &bal)) != 0)
        return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_account_create(s, name, bal, &id) != STORE_OK)
        rc = cli_store_err(s);
    else
        printf("%lld\n", (long long)id);
    store_close(s);
    return rc;
}

static int cli_account_list(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    store_account *v = NULL;
    size_t n = 0;
    char name[128], bal[48], created[32];
    int w = 4, rc;
    store_t *s;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, NULL, NULL, 0)) != 0) return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_account_list(s, &v, &n) != STORE_OK) {
        rc = cli_store_err(s);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        int len = (int)strlen(v[i].name);
        if (len > w) w = len;
    }
    printf("%-6s %-*s %20s  %s\n", "ID", w, "NAME", "BALANCE (USD)", "CREATED");
    for (size_t i = 0; i < n; i++)
        printf("%-6lld %-*s %20s  %s\n", (long long)v[i].id, w,
               cli_clean(v[i].name, name, sizeof(name)),
               cli_usd(v[i].balance_nusd, bal, sizeof(bal)), cli_time(v[i].created_at_ms, created));
cleanup:
    free(v);
    store_close(s);
    return rc;
}

static int cli_account_show(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *pos[1];
    const char *const names[] = {"ID"};
    store_account a;
    store_key *keys = NULL;
    size_t n = 0;
    char name[128], bal[48], created[32];
    int64_t id;
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, pos, names, 1)) != 0) return rc;
    if (cli_parse_id(pos[0], &id) != 0)
        return cli_usage_err(sub->usage, "'%s' is not an account id", cli_safe(pos[0]));
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_account_show(s, id, &a) != STORE_OK || cli_load_keys(s, id, &keys, &n) != STORE_OK) {
        rc = cli_store_err(s);
        goto cleanup;
    }
    printf("id:       %lld\n", (long long)a.id);
    printf("name:     %s\n", cli_clean(a.name, name, sizeof(name)));
    printf("balance:  %s USD\n", cli_usd(a.balance_nusd, bal, sizeof(bal)));
    printf("spent:    %s USD\n", cli_usd(a.spent_nusd, bal, sizeof(bal)));
    printf("created:  %s\n", cli_time(a.created_at_ms, created));
    if (n == 0) {
        printf("keys:     none\n");
    } else {
        printf("keys:\n");
        cli_print_keys(keys, n, "  ");
    }
cleanup:
    free(keys);
    store_close(s);
    return rc;
}

static int cli_account_topup(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *pos[2], *desc = NULL;
    const char *const names[] = {"ID", "USD"};
    cli_opt opts[] = {{"--description", &desc}};
    store_account a;
    int64_t id, amount;
    char bal[48];
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, opts, 1, pos, names, 2)) != 0) return rc;
    if (cli_parse_id(pos[0], &id) != 0)
        return cli_usage_err(sub->usage, "'%s' is not an account id", cli_safe(pos[0]));
    if ((rc = cli_usd_arg(sub->usage, "USD", pos[1], 0, STORE_MAX_BALANCE_NUSD, &amount)) != 0)
        return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_account_topup(s, id, amount, desc ? desc : "top-up (CLI)") != STORE_OK ||
        store_account_get(s, id, &a) != STORE_OK)
        rc = cli_store_err(s);
    else
        printf("%s\n", cli_usd(a.balance_nusd, bal, sizeof(bal)));
    store_close(s);
    return rc;
}

/* ---- key ---- */

static int cli_key_create(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *account = NULL, *name = NULL, *type = NULL, *expires = NULL, *limit = NULL,
               *rpm = NULL, *tpm = NULL;
    cli_opt opts[] = {{"--account", &account},  {"--name", &name}, {"--type", &type},
                      {"--expires", &expires},  {"--rpm", &rpm},   {"--tpm", &tpm},
                      {"--spend-limit", &limit}};
    int64_t account_id, expires_ms = 0, limit_nusd = -1, rpm_v = -1, tpm_v = -1;
    key_type kt = KEY_PROXY;
    char key[64], buf[48], when[32], kname[128];
    store_key k;
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, opts, sizeof opts / sizeof opts[0], NULL, NULL,
                        0)) != 0)
        return rc;
    if (!account) return cli_usage_err(sub->usage, "--account is required");
    if (name && cli_blank(name))
        return cli_usage_err(sub->usage,
                             "--name must not be empty or blank (leave it out instead)");
    if (cli_parse_id(account, &account_id) != 0)
        return cli_usage_err(sub->usage, "--account: '%s' is not an account id", cli_safe(account));
    if (type) {
        if (strcmp(type, "proxy") == 0)
            kt = KEY_PROXY;
        else if (strcmp(type, "billing") == 0)
            kt = KEY_BILLING;
        else
            return cli_usage_err(sub->usage, "--type must be proxy or billing");
    }
    if (expires) {
        if (ms_parse_iso8601(expires, &expires_ms) != 0 || expires_ms <= 0)
            return cli_usage_err(sub->usage, "--expires: '%s' is not an ISO 8601 time",
                                 cli_safe(expires));
        if (expires_ms <= ms_now_ms())
            return cli_err("--expires %s is in the past", cli_time(expires_ms, when));
    }
    if (limit &&
        (rc = cli_usd_arg(sub->usage, "--spend-limit", limit, 1, INT64_MAX, &limit_nusd)) != 0)
        return rc;
    if (rpm && (rc = cli_limit_arg(sub->usage, "--rpm", rpm, &rpm_v)) != 0) return rc;
    if (tpm && (rc = cli_limit_arg(sub->usage, "--tpm", tpm, &tpm_v)) != 0) return rc;
    /* as the API: billing keys are never rate limited, so the setting would have no effect */
    if (kt == KEY_BILLING && (rpm || tpm))
        return cli_usage_err(sub->usage, "%s does not apply to billing keys",
                             rpm ? "--rpm" : "--tpm");
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_key_create(s, account_id, kt, name ? name : "", expires_ms, limit_nusd, key, &k) !=
        STORE_OK) {
        rc = cli_store_err(s);
        goto cleanup;
    }
    if (rpm || tpm) {
        /* store_key_create has no rate-limit fields. The key has not been shown to anyone yet,
         * so one that cannot get its limits is withdrawn rather than left working without them. */
        store_key_patch p = {0};
        p.set_rpm = rpm != NULL;
        p.rpm = rpm_v;
        p.set_tpm = tpm != NULL;
        p.tpm = tpm_v;
        if (store_key_update(s, k.id, &p, &k) != STORE_OK) {
            rc = cli_store_err(s);
            if (store_key_delete(s, k.id) != STORE_OK)
                cli_err("key %lld could not be withdrawn: delete it", (long long)k.id);
            goto cleanup;
        }
    }
    printf("id:          %lld\n", (long long)k.id);
    printf("account:     %lld\n", (long long)k.account_id);
    printf("type:        %s\n", cli_type_name(k.type));
    printf("name:        %s\n", cli_clean(k.name, kname, sizeof(kname)));
    printf("prefix:      %s\n", k.prefix);
    printf("expires:     %s\n", k.expires_at_ms ? cli_time(k.expires_at_ms, when) : "never");
    printf("spend limit: %s\n",
           k.spend_limit_nusd >= 0 ? cli_usd(k.spend_limit_nusd, buf, sizeof(buf)) : "none");
    if (k.type == KEY_PROXY) {
        printf("rpm:         %s\n", cli_limit(k.rpm, buf, sizeof(buf)));
        printf("tpm:         %s\n", cli_limit(k.tpm, buf, sizeof(buf)));
    }
    printf("The key below is shown only this once; only its hash is stored.\n");
    printf("%s\n", key);
    /* The key is worthless if it never reached the operator: say so, and how to clean up. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        rc = cli_err("could not write the key to stdout; delete key %lld and create another",
                     (long long)k.id);
    }
cleanup:
    OPENSSL_cleanse(key, sizeof(key));
    store_close(s);
    return rc;
}

static int cli_key_list(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *account = NULL;
    cli_opt opts[] = {{"--account", &account}};
    store_key *keys = NULL;
    size_t n = 0;
    int64_t id;
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, opts, 1, NULL, NULL, 0)) != 0) return rc;
    if (!account) return cli_usage_err(sub->usage, "--account is required");
    if (cli_parse_id(account, &id) != 0)
        return cli_usage_err(sub->usage, "--account: '%s' is not an account id", cli_safe(account));
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (cli_load_keys(s, id, &keys, &n) != STORE_OK)
        rc = cli_store_err(s);
    else
        cli_print_keys(keys, n, "");
    free(keys);
    store_close(s);
    return rc;
}

/* deactivate, activate and delete: one key id, one store call, one confirmation line. */
static int cli_key_change(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *pos[1];
    const char *const names[] = {"ID"};
    int64_t id;
    store_t *s;
    int rc, src;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, pos, names, 1)) != 0) return rc;
    if (cli_parse_id(pos[0], &id) != 0)
        return cli_usage_err(sub->usage, "'%s' is not a key id (keys are named by their number)",
                             cli_safe(pos[0]));
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (strcmp(sub->name, "delete") == 0)
        src = store_key_delete(s, id);
    else
        src = store_key_set_active(s, id, strcmp(sub->name, "activate") == 0);
    if (src != STORE_OK)
        rc = cli_store_err(s);
    else
        printf("key %lld %sd\n", (long long)id, sub->name);
    store_close(s);
    return rc;
}

/* ---- migrate ---- */

static int cli_migrate(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    int64_t version = 0;
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, NULL, NULL, 0)) != 0) return rc;
    /* Opening the store is what applies pending migrations. */
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_schema_version(s, &version) != STORE_OK)
        rc = cli_store_err(s);
    else
        printf("schema version %lld\n", (long long)version);
    store_close(s);
    return rc;
}

/* ---- export, import (docs/OPERATIONS.md, "Moving from SQLite to PostgreSQL") ---- */

static int cli_export(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, NULL, NULL, 0)) != 0) return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_export(s, stdout) != STORE_OK) rc = cli_store_err(s);
    store_close(s);
    return rc;
}

static int cli_import(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *file = NULL;
    static const char *const names[] = {"FILE"};
    int64_t rows = 0;
    FILE *in = stdin;
    store_t *s;
    int rc;

    if (argc == 0) {
        file = "-";
    } else if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, &file, names, 1)) != 0) {
        return rc;
    }
    if (strcmp(file, "-") != 0 && !(in = fopen(file, "r")))
        return cli_err("cannot open %s: %s", file, strerror(errno));
    if (!(s = cli_open(cfg))) {
        if (in != stdin) fclose(in);
        return CLI_ERROR;
    }
    rc = store_import(s, in, &rows);
    if (rc == STORE_OK)
        printf("imported %lld rows into the %s store; run `modelswitch audit` to check them\n",
               (long long)rows, store_backend(s));
    else
        rc = cli_store_err(s);
    store_close(s);
    if (in != stdin) fclose(in);
    return rc;
}

/* ---- sql ---- */

static int cli_sql(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    const char *sql = NULL;
    static const char *const names[] = {"QUERY"};
    store_t *s;
    int rc;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, &sql, names, 1)) != 0) return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    if (store_query(s, sql, stdout) != STORE_OK) rc = cli_store_err(s);
    store_close(s);
    return rc;
}

/* ---- audit ---- */

static int cli_audit(const cfg_t *cfg, const cli_sub *sub, int argc, char **argv)
{
    int64_t accounts = 0, txns = 0;
    store_t *s;
    int rc, violations;

    if ((rc = cli_parse(sub->usage, argc, argv, NULL, 0, NULL, NULL, 0)) != 0) return rc;
    if (!(s = cli_open(cfg))) return CLI_ERROR;
    violations = store_audit(s, stdout);
    if (violations < 0 || (violations == 0 && store_ledger_counts(s, &accounts, &txns) != 0)) {
        rc = cli_store_err(s);
        goto cleanup;
    }
    /* CONFIG.md also asks for "no open hold older than the longest request timeout": holds exist
     * only in a running gateway's memory and end with its process, so the store has none. */
    printf("holds: none stored (open holds live only in a running gateway's memory)\n");
    if (violations == 0) {
        printf("ok: %lld accounts, %lld transactions consistent\n", (long long)accounts,
               (long long)txns);
    } else {
        printf("%d violation%s\n", violations, violations == 1 ? "" : "s");
        rc = CLI_ERROR;
    }
cleanup:
    store_close(s);
    return rc;
}

/* ---- dispatch ---- */

static const cli_sub cli_account_subs[] = {
    {"create", cli_account_create,
     "usage: modelswitch account create --name NAME [--balance USD]\n"
     "Creates an account and prints its id. An opening --balance (at most 1000000000 USD, the\n"
     "maximum balance) is booked as a payment.\n"},
    {"list", cli_account_list,
     "usage: modelswitch account list\n"
     "Lists every account: id, name, balance (USD), created.\n"},
    {"show", cli_account_show,
     "usage: modelswitch account show ID\n"
     "Shows one account and its keys (by prefix; full keys are never stored).\n"},
    {"topup", cli_account_topup,
     "usage: modelswitch account topup ID USD [--description TEXT]\n"
     "Books a payment of USD to the account and prints the new balance. A top-up that would\n"
     "take the balance above 1000000000 USD (the maximum balance) is refused.\n"},
};

static const cli_sub cli_key_subs[] = {
    {"create", cli_key_create,
     "usage: modelswitch key create --account ID [--name NAME] [--type proxy|billing]\n"
     "                              [--expires ISO8601] [--spend-limit USD] [--rpm N] [--tpm N]\n"
     "Creates a key (default type proxy: ms-...; billing: mk-...) and prints it alone on the\n"
     "last line. It is shown only this once. --rpm and --tpm (proxy keys, whole numbers >= 1)\n"
     "are the key's own requests and tokens per minute; without them the config's limits apply.\n"},
    {"list", cli_key_list,
     "usage: modelswitch key list --account ID\n"
     "Lists the account's keys (deleted keys are not shown).\n"},
    {"deactivate", cli_key_change,
     "usage: modelswitch key deactivate ID\n"
     "Refuses the key until it is activated again (a running gateway notices within 1 s).\n"},
    {"activate", cli_key_change,
     "usage: modelswitch key activate ID\n"
     "Re-enables a deactivated key.\n"},
    {"delete", cli_key_change,
     "usage: modelswitch key delete ID\n"
     "Deletes the key for good (a running gateway notices within 1 s).\n"},
};

static const cli_sub cli_migrate_sub = {
    "migrate", cli_migrate,
    "usage: modelswitch migrate\n"
    "Applies pending database migrations and prints the schema version.\n"};

static const cli_sub cli_export_sub = {
    "export", cli_export,
    "usage: modelswitch export > FILE\n"
    "Writes every row of the store (accounts, keys as hashes, transactions, usage, stored\n"
    "responses, notification settings with their webhook secrets, the webhook outbox and the\n"
    "change counters) to stdout as JSON lines, for `import` into another store. Keep the file\n"
    "as private as the database.\n"};

static const cli_sub cli_import_sub = {
    "import", cli_import,
    "usage: modelswitch import [FILE]\n"
    "Reads an `export` (from FILE, or stdin) into the configured store, which must be new\n"
    "(empty) and at the same schema version; all of it in one transaction, or nothing.\n"};

static const cli_sub cli_sql_sub = {
    "sql", cli_sql,
    "usage: modelswitch sql QUERY\n"
    "Runs one read-only SQL statement on the store and prints its rows as a JSON array of\n"
    "objects (as `sqlite3 -json` does; nothing for no rows). On SQLite, usage rows are kept in\n"
    "blocks that only ModelSwitch reads: this is how to query the `usage` table by hand.\n"
    "A statement that writes is refused.\n"};

static const cli_sub cli_audit_sub = {
    "audit", cli_audit,
    "usage: modelswitch audit\n"
    "Checks the ledger: every balance equals the sum of its transactions, no balance is\n"
    "negative, every key's spent equals the sum of its usage charges, and every usage\n"
    "transaction matches its usage record. Prints each violation and a summary line;\n"
    "exits 0 when consistent, 1 otherwise.\n"};

static const char cli_account_usage[] =
    "usage: modelswitch account create --name NAME [--balance USD]\n"
    "       modelswitch account list\n"
    "       modelswitch account show ID\n"
    "       modelswitch account topup ID USD [--description TEXT]\n"
    "USD amounts are decimal dollars, e.g. 12.50, with at most 9 decimal places; a balance\n"
    "is at most 1000000000 USD. `account SUBCOMMAND --help` for details.\n";

static const char cli_key_usage[] =
    "usage: modelswitch key create --account ID [--name NAME] [--type proxy|billing]\n"
    "                              [--expires ISO8601] [--spend-limit USD] [--rpm N] [--tpm N]\n"
    "       modelswitch key list --account ID\n"
    "       modelswitch key deactivate ID\n"
    "       modelswitch key activate ID\n"
    "       modelswitch key delete ID\n"
    "`key SUBCOMMAND --help` for details.\n";

static const char cli_top_usage[] =
    "usage: modelswitch [--config FILE] COMMAND [ARGS]   (`modelswitch --help` lists them)\n";

static int cli_group(const cfg_t *cfg, const char *group, const char *usage, const cli_sub *subs,
                     size_t nsubs, int argc, char **argv)
{
    if (argc < 1) return cli_usage_err(usage, "%s: missing subcommand", group);
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < nsubs; i++) {
        if (strcmp(argv[0], subs[i].name) != 0) continue;
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(subs[i].usage, stdout);
            return CLI_OK;
        }
        return subs[i].fn(cfg, &subs[i], argc - 1, argv + 1);
    }
    return cli_usage_err(usage, "unknown command '%s %s'", group, cli_safe(argv[0]));
}

int cli_is_command(const char *name)
{
    return name &&
           (strcmp(name, "account") == 0 || strcmp(name, "key") == 0 ||
            strcmp(name, "migrate") == 0 || strcmp(name, "audit") == 0 ||
            strcmp(name, "export") == 0 || strcmp(name, "import") == 0 || strcmp(name, "sql") == 0);
}

/* A change the running instances should see at once (several instances share a Redis): a
 * notice on its channel. Without it they still see the change at their next poll (within a
 * second), so a failure is a warning, not an error. Returns rc. */
static int cli_told(const cfg_t *cfg, int argc, char **argv, int rc)
{
    static const char *const changes[] = {"create", "topup", "activate", "deactivate", "delete"};
    if (rc != CLI_OK || !cfg || !cfg->redis_url || argc < 2) return rc; /* --help: no config */
    for (size_t i = 0; i < sizeof changes / sizeof *changes; i++) {
        if (strcmp(argv[1], changes[i]) != 0) continue;
        char err[256];
        if (sh_publish_once(cfg, argv[0][0] == 'k' ? 'k' : 'a', err, sizeof err) != 0)
            fprintf(stderr,
                    "warning: the running instances were not told at once (%s); they "
                    "see the change within a second\n",
                    err);
        break;
    }
    return rc;
}

int cli_run(const cfg_t *cfg, int argc, char **argv)
{
    if (argc < 1 || !argv[0]) {
        fputs("error: missing command\n", stderr);
        fputs(cli_top_usage, stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[0], "account") == 0)
        return cli_told(cfg, argc, argv,
                        cli_group(cfg, "account", cli_account_usage, cli_account_subs,
                                  sizeof(cli_account_subs) / sizeof(cli_account_subs[0]), argc - 1,
                                  argv + 1));
    if (strcmp(argv[0], "key") == 0)
        return cli_told(cfg, argc, argv,
                        cli_group(cfg, "key", cli_key_usage, cli_key_subs,
                                  sizeof(cli_key_subs) / sizeof(cli_key_subs[0]), argc - 1,
                                  argv + 1));
    if (strcmp(argv[0], "migrate") == 0) {
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(cli_migrate_sub.usage, stdout);
            return CLI_OK;
        }
        return cli_migrate(cfg, &cli_migrate_sub, argc - 1, argv + 1);
    }
    const cli_sub *single[] = {&cli_audit_sub, &cli_export_sub, &cli_import_sub, &cli_sql_sub};
    for (size_t i = 0; i < sizeof single / sizeof single[0]; i++) {
        if (strcmp(argv[0], single[i]->name) != 0) continue;
        if (cli_wants_help(argc - 1, argv + 1)) {
            fputs(single[i]->usage, stdout);
            return CLI_OK;
        }
        return single[i]->fn(cfg, single[i], argc - 1, argv + 1);
    }
    fprintf(stderr, "error: unknown command '%s'\n", cli_safe(argv[0]));
    fputs(cli_top_usage, stderr);
    return CLI_USAGE;
}

int cli_usage(FILE *f)
{
    /* main.c prints the header, serve and check-config in the same layout (description at
     * column 31), then these lines. */
    static const char *const lines[][2] = {
        {"account create --name NAME [--balance USD]", "create an account, print its id"},
        {"account list", "accounts with balances"},
        {"account show ID", "one account and its keys"},
        {"account topup ID USD [--description TEXT]", "book a payment, print the new balance"},
        {"key create --account ID [--name NAME] [--type proxy|billing]\n"
         "             [--expires ISO8601] [--spend-limit USD] [--rpm N] [--tpm N]",
         "create a key, print it once (last line)"},
        {"key list --account ID", "an account's keys"},
        {"key deactivate ID", "refuse the key until it is activated again"},
        {"key activate ID", "re-enable a deactivated key"},
        {"key delete ID", "delete the key for good"},
        {"migrate", "apply database migrations, print the schema version"},
        {"audit", "check the ledger's invariants; exit 1 on any violation"},
        {"export > FILE", "every row of the store as JSON lines (for import)"},
        {"import [FILE]", "read an export into a new, empty store"},
        {"sql QUERY", "one read-only SQL statement, rows as JSON"},
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (strlen(lines[i][0]) <= 28)
            fprintf(f, "  %-28s %s\n", lines[i][0], lines[i][1]);
        else
            fprintf(f, "  %s\n%31s%s\n", lines[i][0], "", lines[i][1]);
    }
    return 0;
}
