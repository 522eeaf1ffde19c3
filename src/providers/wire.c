/*
 * The adapters' shared request writers (wire.h): headers, URL path segments, the pass-through
 * body with `model` spliced, compact JSON.
 */
#include "providers/wire.h"

#include "common/jscan.h"
#include "common/jtree.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int prov_add_header(prov_upreq *u, const char *name, const char *value)
{
    if (u->nheaders >= PROV_MAX_HEADERS) return -1;
    size_t a = strlen(name), b = strlen(value);
    char *h;
    if (u->hmem && a + b + 1 <= u->hcap - u->hused) {
        h = u->hmem + u->hused;
        u->hused += a + b + 1;
    } else if (!(h = malloc(a + b + 1))) {
        return -1;
    }
    memcpy(h, name, a);
    memcpy(h + a, value, b + 1);
    u->headers[u->nheaders++] = h;
    return 0;
}

int prov_put_path_segment(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (; *s && rc == 0; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            rc = buf_append(b, s, 1);
        } else {
            char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            rc = buf_append(b, esc, 3);
        }
    }
    return rc;
}

int prov_splice_model(const prov_call *call, prov_upreq *u)
{
    prov_upreq_scratch(u);
    if (!call->m_model || prov_put_jstr(&u->scratch, call->dep->model, strlen(call->dep->model)))
        return -1;
    const char *b = call->body.p;
    size_t start = (size_t)(call->m_model->value.p - b), end = start + call->m_model->value.n;
    u->iov[0] = (up_iov){b, start};
    u->iov[1] = (up_iov){u->scratch.data, u->scratch.len};
    u->iov[2] = (up_iov){b + end, call->body.n - end};
    u->niov = 3;
    return 0;
}

int prov_put_jstr(buf_t *b, const char *s, size_t n)
{
    return buf_append_json_string(b, s, n);
}

int prov_put_real(buf_t *b, double v)
{
    char tmp[40];
    if (!isfinite(v)) return buf_appends(b, "null");
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (strtod(tmp, NULL) == v) break;
    }
    return buf_appends(b, tmp);
}

int prov_put_token_str(buf_t *b, ms_str raw)
{
    if (!memchr(raw.p, '\\', raw.n)) return buf_append(b, raw.p, raw.n);
    char small[512], *t = raw.n <= sizeof small ? small : malloc(raw.n);
    if (!t) return -1;
    long n = jscan_string(raw, t, raw.n); /* an escape never decodes longer than it is */
    int rc = n < 0 ? -1 : buf_append_json_string(b, t, (size_t)n);
    if (t != small) free(t);
    return rc;
}

int prov_put_token_num(buf_t *b, ms_str raw)
{
    int64_t x;
    double d;
    int kind = jtree_number_kind(raw, &x);
    if (kind == 1) return buf_append_dec(b, x);
    if (kind == 2 && jscan_double(raw, &d) == 0) return prov_put_real(b, d);
    return 1;
}

int prov_put_json(buf_t *b, const json_t *v)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        rc |= buf_appends(b, "{");
        json_object_foreach((json_t *)v, k, x)
        {
            if (!first) rc |= buf_appends(b, ",");
            first = 0;
            rc |= prov_put_jstr(b, k, strlen(k));
            rc |= buf_appends(b, ":");
            rc |= prov_put_json(b, x);
            if (rc) return -1;
        }
        return rc | buf_appends(b, "}");
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        rc |= buf_appends(b, "[");
        json_array_foreach((json_t *)v, i, x)
        {
            if (i) rc |= buf_appends(b, ",");
            rc |= prov_put_json(b, x);
            if (rc) return -1;
        }
        return rc | buf_appends(b, "]");
    }
    case JSON_STRING:
        return prov_put_jstr(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return buf_append_dec(b, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return prov_put_real(b, json_real_value(v));
    case JSON_TRUE:
        return buf_appends(b, "true");
    case JSON_FALSE:
        return buf_appends(b, "false");
    default:
        return buf_appends(b, "null");
    }
}

void prov_excerpt(ms_str body, char *out, size_t outlen)
{
    if (!outlen) return;
    size_t k = 0;
    for (size_t i = 0; i < body.n && k + 1 < outlen && k < 200; i++) {
        unsigned char ch = (unsigned char)body.p[i];
        out[k++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
    }
    out[k] = '\0';
}

int prov_refuse(prov_refusal *why, const char *param, const char *fmt, ...)
{
    va_list ap;
    /* every field: the caller's struct may be uninitialized (it is large and usually unused) */
    *why = (prov_refusal){.status = 400,
                          .type = "invalid_request_error",
                          .code = "invalid_parameter",
                          .param = param};
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof why->message, fmt, ap);
    va_end(ap);
    return -2;
}
