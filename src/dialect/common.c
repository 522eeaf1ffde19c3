/*
 * What every client dialect's request parser and encoder share (dialect.h, "shared"): refusals
 * in the contract's terms, the model named by a request resolved the same way (by length, 404
 * or 503 provider_not_configured), the printable form of a client's model name, and the cost
 * spliced into a usage object that passed through. One copy, so the dialects answer alike.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/jscan.h"
#include "common/util.h"
#include "dialect/dialect.h"
#include "providers/provider.h"

int dialect_refuse(dialect_refusal *why, int status, const char *code, const char *param,
                   const char *fmt, ...)
{
    *why = (dialect_refusal){.status = status,
                             .type = status == 404 ? "not_found_error" : "invalid_request_error",
                             .code = code,
                             .param = param};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof why->message, fmt, ap);
    va_end(ap);
    return -1;
}

void dialect_printable_name(const char *name, size_t len, char *out, size_t outlen)
{
    size_t k = 0;
    if (!outlen) return;
    for (size_t i = 0; i < len && k + 7 < outlen; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 0x20 && ch != 0x7f) {
            out[k++] = (char)ch;
        } else {
            static const char hex[] = "0123456789abcdef";
            memcpy(out + k, "\\u00", 4);
            out[k + 4] = hex[ch >> 4];
            out[k + 5] = hex[ch & 15];
            k += 6;
        }
    }
    out[k] = '\0';
}

int dialect_resolve_model(const cfg_t *cfg, const jscan_member *m, const cfg_model **out,
                          char *shown, size_t shown_len, dialect_refusal *why)
{
    if (!m)
        return dialect_refuse(why, 400, "missing_required_parameter", "model",
                              "Missing required parameter: 'model'.");
    char name[256];
    long len = m->type == JS_STRING ? jscan_string(m->value, name, sizeof name) : -1;
    if (len <= 0)
        return dialect_refuse(why, 400, "invalid_parameter", "model",
                              "'model' must be a non-empty string naming a model.");
    dialect_printable_name(name, (size_t)len, shown, shown_len);
    /* by length: a name with a NUL inside is not the name before the NUL */
    const cfg_model *model = cfg_find_model(cfg, name, (size_t)len);
    if (model && model->ndeployments == 0 && model->unconfigured) {
        /* the model exists, but every provider of it is disabled for want of an API key: a 404
         * would send the user looking for a typo; 503, not worth an automatic retry: only the
         * operator can fix it */
        const cfg_provider *p = model->unconfigured;
        dialect_refuse(why, 503, "provider_not_configured", "model",
                       "The model '%s' is configured, but its provider '%s' has no API key: the "
                       "operator must set %s for the gateway.",
                       model->name, p->name, p->api_key_var[0] ? p->api_key_var : "its api_key");
        why->type = "service_unavailable_error";
        why->retry_after_ms = 60000;
        why->no_retry = 1;
        return -1;
    }
    if (!model || model->ndeployments == 0) {
        char shown200[201];
        ms_copy(shown200, sizeof shown200, shown_len ? shown : "");
        return dialect_refuse(why, 404, "model_not_found", "model",
                              "The model '%s' does not exist or you do not have access to it.",
                              shown200);
    }
    *out = model;
    return 0;
}

/* Whether the array or object value v holds nothing but white space. */
static int empty_container(ms_str v, char close)
{
    size_t k = 1;
    while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\n' || v.p[k] == '\r' || v.p[k] == '\t'))
        k++;
    return k < v.n && v.p[k] == close;
}

int dialect_empty_array(ms_str v)
{
    return empty_container(v, ']');
}

int dialect_splice_cost(buf_t *out, ms_str obj, const char *cost)
{
    jscan_member m[32];
    int n = jscan_object(obj.p, obj.n, m, 32, NULL);
    const jscan_member *u = n > 0 ? jscan_find(m, (size_t)(n > 32 ? 32 : n), "usage") : NULL;
    if (!u || u->type != JS_OBJECT) return -1;
    /* the usage object's closing brace is its last byte */
    size_t close = (size_t)(u->value.p - obj.p) + u->value.n - 1;
    int rc = buf_append(out, obj.p, close);
    /* no comma in an empty object, "{ }" included */
    rc |= buf_appends(out, empty_container(u->value, '}') ? "\"cost\":" : ",\"cost\":");
    rc |= buf_appends(out, cost);
    rc |= buf_append(out, obj.p + close, obj.n - close);
    return rc ? -1 : 0;
}

int dialect_scan(const cfg_t *cfg, struct prov_call *call, const jscan_key *fields, size_t nfields,
                 const jscan_member **f, char *shown, size_t shown_len, dialect_refusal *why)
{
    size_t err_off = 0;
    ms_str b = call->body;
    /* a body the gateway wrote (a hub body) needs its members listed, not a second validation;
     * the rewrite that wrote it may have listed them already (call->nmembers set) */
    int n = call->nmembers ? (int)call->nmembers
            : prov_body_valid(call)
                ? jscan_members_valid(b, call->members, PROV_MAX_MEMBERS)
                : jscan_object(b.p, b.n, call->members, PROV_MAX_MEMBERS, &err_off);
    if (n == JSCAN_INVALID || n == JSCAN_NOT_OBJECT) {
        char detail[96];
        if (b.n == 0)
            snprintf(detail, sizeof detail, "the body is empty");
        else if (n == JSCAN_NOT_OBJECT)
            snprintf(detail, sizeof detail, "the body must be a JSON object");
        else
            snprintf(detail, sizeof detail, "invalid JSON at byte %zu", err_off);
        return dialect_refuse(why, 400, "invalid_json", NULL,
                              "We could not parse the JSON body of your request: %s", detail);
    }
    if (n > PROV_MAX_MEMBERS)
        return dialect_refuse(why, 400, "invalid_parameter", NULL,
                              "The request body has too many top-level fields.");
    call->nmembers = (size_t)n;
    call->valid = b;
    int dup = jscan_pick_unique(call->members, call->nmembers, fields, nfields, f);
    if (dup >= 0)
        return dialect_refuse(
            why, 400, "invalid_parameter", fields[dup].s,
            "The field '%s' appears more than once in the request body; give it once.",
            fields[dup].s);
    if (dialect_resolve_model(cfg, f[0], &call->model, shown, shown_len, why) != 0) return -1;
    call->m_model = f[0];
    return 0;
}
