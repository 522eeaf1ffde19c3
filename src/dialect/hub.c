/*
 * The shared part of rewriting a request into the hub format (hub.h): the tree rewrite, and the
 * helpers of the token rewrite.
 */
#include "dialect/hub.h"

#include <stdio.h>
#include <string.h>

#include "common/jarena.h"
#include "common/jtree.h"
#include "providers/provider.h"
#include "providers/wire.h"

static int hub_rewrite(const prov_call *call, buf_t *out, dialect_refusal *why,
                       dialect_hub_builder build)
{
    json_error_t jerr;
    /* (jansson's own parser: 10x slower; the dialect has validated the body) */
    json_t *req = prov_body_valid(call) ? jtree_load_valid(call->body.p, call->body.n, &jerr)
                                        : jtree_load(call->body.p, call->body.n, &jerr);
    if (!json_is_object(req)) {
        /* the scan accepted it, but jansson cannot hold it (an integer beyond 64 bits) */
        json_decref(req);
        return dialect_refuse(why, 400, "invalid_json", NULL,
                              "The request cannot be translated for this model's provider: %s.",
                              jerr.text);
    }
    json_t *o = json_object();
    int rc = o ? build(call, req, o, why) : -1; /* why stays zeroed: memory */
    size_t len0 = out->len;
    if (rc == 0 && prov_put_json(out, o) != 0) {
        buf_truncate(out, len0); /* nothing half-written */
        *why = (dialect_refusal){0};
        rc = -1;
    }
    if (!jarena_holds_all()) { /* else the scope's end frees both (common/jarena.h) */
        json_decref(o);
        json_decref(req);
    }
    return rc;
}

int dialect_hub_rewrite(const prov_call *call, buf_t *out, dialect_refusal *why,
                        dialect_hub_builder build)
{
    *why = (dialect_refusal){0};
    /* both trees live and die in this call: a scope of their own (common/jarena.h) */
    int scope = jarena_begin();
    int rc = hub_rewrite(call, out, why, build);
    jarena_end(scope);
    return rc;
}

int dialect_is_null(const json_t *v)
{
    return !v || json_is_null(v);
}

int dialect_type_is(const char *type, const char *want)
{
    return type && strcmp(type, want) == 0;
}

json_t *dialect_text_part(json_t *t)
{
    return jtree_obj(2, "type", json_string_nocheck("text"), "text", json_incref(t));
}

json_t *dialect_simplify(json_t *parts)
{
    json_t *one = json_array_get(parts, 0);
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return json_string("");
    }
    if (json_array_size(parts) == 1 &&
        dialect_type_is(json_string_value(json_object_get(one, "type")), "text")) {
        json_t *s = json_incref(json_object_get(one, "text"));
        json_decref(parts);
        return s;
    }
    return parts;
}

/* ---- token by token ---- */

int dialect_tok_esc_eq(const jscan_member *m, const char *want, size_t n)
{
    if (!dialect_tok_str(m)) return 0;
    /* the inside of a string token compares as a key does: decoded */
    return jscan_key_eq((ms_str){m->value.p + 1, m->value.n - 2}, want, n);
}

size_t dialect_pick(ms_str obj, const jscan_key *keys, size_t nk, jscan_member *out)
{
    for (size_t i = 0; i < nk; i++)
        out[i].value.p = NULL;
    jscan_iter it;
    jscan_member m;
    if (jscan_iter_start(&it, obj) != 0 || it.close != '}') return 0;
    while (jscan_iter_member(&it, &m) > 0) {
        for (size_t i = 0; i < nk; i++) {
            /* a key without a backslash is its own decoding: compared as bytes */
            if (m.key.n < keys[i].n ||
                (m.key_plain ? m.key.n != keys[i].n || memcmp(m.key.p, keys[i].s, keys[i].n)
                             : !jscan_key_eq(m.key, keys[i].s, keys[i].n)))
                continue;
            out[i] = m; /* a later one of the same name replaces it */
            break;
        }
    }
    return it.past;
}

int dialect_pick_next(jscan_iter *arr, const jscan_key *keys, size_t nk, jscan_member *out,
                      jscan_type *t)
{
    ms_str v;
    if (jscan_iter_peek(arr, &v, t) <= 0) return 0;
    /* (anything but an object: all absent, its length 0, found by the iterator) */
    jscan_iter_past(arr, dialect_pick(v, keys, nk, out));
    return 1;
}

void dialect_tok_name(ms_str tok, int is_string, char *out, size_t outlen)
{
    if (!outlen) return;
    out[0] = '\0';
    if (!is_string) {
        snprintf(out, outlen, "(untyped)");
        return;
    }
    if (tok.n < 2) return;
    /* a name is shown cut: only its first bytes are decoded, cut before an escape or a UTF-8
     * sequence they would split */
    const char *in = tok.p + 1;
    size_t n = tok.n - 2, cut = n < 160 ? n : 160, i = 0;
    while (i < cut) {
        size_t len = in[i] != '\\' ? 1 : i + 1 < n && in[i + 1] == 'u' ? 6 : 2;
        if (i + len > cut) break;
        i += len;
    }
    while (i > 0 && i < n && ((unsigned char)in[i] & 0xC0) == 0x80)
        i--;
    char raw[168], dec[168];
    raw[0] = '"';
    memcpy(raw + 1, in, i);
    raw[i + 1] = '"';
    if (jscan_string((ms_str){raw, i + 2}, dec, sizeof dec) >= 0) {
        snprintf(out, outlen, "%s", dec);
        return;
    }
    /* (a surrogate pair cut in two) its bytes as written */
    size_t k = i < outlen - 1 ? i : outlen - 1;
    memcpy(out, in, k);
    out[k] = '\0';
}

/* Past the string token whose opening quote is at s[i] (valid input: it closes). */
static size_t string_end(const char *s, size_t i, size_t n)
{
    size_t from = i + 1;
    for (;;) {
        const char *q = from < n ? memchr(s + from, '"', n - from) : NULL;
        if (!q) return n;
        size_t k = (size_t)(q - s), bs = 0;
        while (k - bs > i + 1 && s[k - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0) return k + 1; /* not escaped */
        from = k + 1;
    }
}

static int is_space(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* The compact copy; quote: escaped as the inside of a JSON string. */
static int put_compact(buf_t *b, ms_str v, int quote)
{
    const char *s = v.p;
    size_t n = v.n, i = 0, from = 0;
    int rc = 0;
    while (i < n && rc == 0) {
        char c = s[i];
        if (c == '"') {
            size_t e = string_end(s, i, n);
            if (quote) {
                rc |= buf_append(b, s + from, i - from);
                rc |= buf_append_json_escaped(b, s + i, e - i);
                from = e;
            }
            i = e;
        } else if (is_space(c)) {
            rc |= buf_append(b, s + from, i - from);
            while (i < n && is_space(s[i]))
                i++;
            from = i;
        } else {
            i++;
        }
    }
    return rc | buf_append(b, s + from, n - from);
}

int dialect_put_compact(buf_t *b, ms_str v)
{
    /* a string (a prompt's text, most of a body) is its own compact form */
    if (v.n && v.p[0] == '"') return buf_append(b, v.p, v.n);
    return put_compact(b, v, 0);
}

int dialect_put_quoted(buf_t *b, ms_str v)
{
    return buf_append(b, "\"", 1) | put_compact(b, v, 1) | buf_append(b, "\"", 1);
}
