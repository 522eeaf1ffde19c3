/*
 * jansson trees from JSON text through jscan (jtree.h says why). Two passes: jscan validates the
 * whole document (strict RFC 8259, nesting within JSCAN_MAX_DEPTH), then the tree is built from
 * text known to be valid. The builder still checks every index against the end, so a wrong
 * "valid" could only make it fail, never read past the input, and its recursion is as deep as
 * the nesting jscan allowed.
 */
#include "common/jtree.h"

#include "common/jscan.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n;
    json_error_t *err;
    int depth; /* containers open (jtree_load_valid's bound: jscan's is not there) */
} jtree_in;

/* Nesting jtree_load_valid builds: jscan's limit and room for the few levels a rewrite adds. */
#define JTREE_VALID_DEPTH (2 * JSCAN_MAX_DEPTH)

static void jtree_fail(jtree_in *in, const char *msg)
{
    if (in->err && !in->err->text[0]) snprintf(in->err->text, sizeof in->err->text, "%s", msg);
}

static size_t jtree_ws(const jtree_in *in, size_t i)
{
    while (i < in->n &&
           (in->s[i] == ' ' || in->s[i] == '\n' || in->s[i] == '\r' || in->s[i] == '\t'))
        i++;
    return i;
}

/* The string token at s[*i] decoded: *out points into the input when it has no escape (*owned
 * = NULL), else into a new buffer (*owned, the caller's to free). Returns its length or -1. */
static long jtree_str(jtree_in *in, size_t *i, const char **out, char **owned)
{
    size_t len = jscan_string_token(in->s + *i, in->n - *i);
    if (len < 2) return -1;
    const char *raw = in->s + *i + 1;
    size_t rawlen = len - 2;
    *owned = NULL;
    if (!memchr(raw, '\\', rawlen)) {
        *out = raw;
        *i += len;
        return (long)rawlen;
    }
    /* a decoded string is never longer than its escaped form */
    char *buf = malloc(rawlen + 1);
    long dl = buf ? jscan_string((ms_str){in->s + *i, len}, buf, rawlen + 1) : -1;
    if (dl < 0) {
        free(buf);
        return -1;
    }
    *out = *owned = buf;
    *i += len;
    return dl;
}

/* The length of the number token at s[i] (its bytes, as the builder takes them). */
static size_t jtree_numlen(const jtree_in *in, size_t i)
{
    size_t k = i;
    while (k < in->n && in->s[k] && strchr("-+0123456789.eE", in->s[k]))
        k++;
    return k - i;
}

/* A number token p[0..len) as the tree holds it: 1 an integer (*x), 2 a real (*d), 0 out of
 * range (*why says which), -1 not a number. One rule for the builder and jtree_holds. */
static int jtree_num(const char *p, size_t len, long long *x, double *d, const char **why)
{
    /* the usual integer, digits with a minus or not, at most 18 of them: within range */
    size_t neg = len && p[0] == '-', k = neg;
    long long v = 0;
    while (k < len && k - neg < 18 && p[k] >= '0' && p[k] <= '9')
        v = v * 10 + (p[k++] - '0');
    if (k == len && k > neg) {
        *x = neg ? -v : v;
        return 1;
    }
    char small[64], *t = len < sizeof small ? small : malloc(len + 1);
    int real = 0, kind = -1;
    if (!t || len == 0) {
        if (t && t != small) free(t);
        return -1;
    }
    memcpy(t, p, len);
    t[len] = '\0';
    for (size_t j = 0; j < len; j++)
        if (t[j] == '.' || t[j] == 'e' || t[j] == 'E') real = 1;
    char *end;
    errno = 0;
    if (!real) {
        *x = strtoll(t, &end, 10);
        if (errno == ERANGE) {
            *why = *x < 0 ? "too big negative integer" : "too big integer";
            kind = 0;
        } else if (*end == '\0') {
            kind = 1;
        }
    } else {
        *d = strtod(t, &end);
        if (errno == ERANGE && isinf(*d)) {
            *why = "real number overflow";
            kind = 0;
        } else if (*end == '\0') {
            kind = 2;
        }
    }
    if (t != small) free(t);
    return kind;
}

static json_t *jtree_number(jtree_in *in, size_t *i)
{
    size_t len = jtree_numlen(in, *i);
    long long x = 0;
    double d = 0;
    const char *why = NULL;
    int kind = jtree_num(in->s + *i, len, &x, &d, &why);
    json_t *v = kind == 1 ? json_integer(x) : kind == 2 ? json_real(d) : NULL;
    if (kind == 0) jtree_fail(in, why);
    if (v) *i += len;
    return v;
}

static json_t *jtree_value(jtree_in *in, size_t *i);

/* After a member or an element at *k: 1 when a ',' (and white space) was passed and another
 * follows, 0 when the container's close was (*k then just past it), -1 on anything else. */
static int jtree_next(const jtree_in *in, size_t *k, char close)
{
    size_t j = jtree_ws(in, *k);
    if (j < in->n && in->s[j] == ',') {
        *k = jtree_ws(in, j + 1);
        return 1;
    }
    if (j < in->n && in->s[j] == close) {
        *k = j + 1;
        return 0;
    }
    return -1;
}

/* Past a container's opening at s[open]: 0 when it closes at once (*k just past the close), 1
 * when a member or an element starts at *k. */
static int jtree_first(const jtree_in *in, size_t open, size_t *k, char close)
{
    size_t j = jtree_ws(in, open + 1);
    *k = j < in->n && in->s[j] == close ? j + 1 : j;
    return *k == j;
}

static json_t *jtree_object(jtree_in *in, size_t *i)
{
    if (in->depth >= JTREE_VALID_DEPTH) return NULL;
    json_t *o = json_object();
    size_t k;
    if (!o) return NULL;
    in->depth++;
    if (!jtree_first(in, *i, &k, '}')) {
        *i = k; /* empty */
        return o;
    }
    for (;;) {
        const char *key;
        char *owned;
        long kl = k < in->n && in->s[k] == '"' ? jtree_str(in, &k, &key, &owned) : -1;
        if (kl < 0) break;
        if (memchr(key, '\0', (size_t)kl)) {
            jtree_fail(in, "NUL byte in object key not supported");
            free(owned);
            break;
        }
        /* a name the input shares NUL-terminated for jansson: copy a short one to the stack */
        char kbuf[256], *kz = owned;
        if (!owned) kz = (size_t)kl < sizeof kbuf ? kbuf : malloc((size_t)kl + 1);
        if (kz && !owned) {
            memcpy(kz, key, (size_t)kl);
            kz[kl] = '\0';
        }
        k = jtree_ws(in, k);
        json_t *v = NULL;
        if (kz && k < in->n && in->s[k] == ':') {
            k = jtree_ws(in, k + 1);
            v = jtree_value(in, &k);
        }
        /* the last of duplicate names wins, as in jansson */
        int rc = v ? json_object_set_new_nocheck(o, kz, v) : -1;
        if (kz != kbuf) free(kz);
        int next = rc == 0 ? jtree_next(in, &k, '}') : -1;
        if (next == 0) {
            *i = k;
            in->depth--;
            return o;
        }
        if (next < 0) break;
    }
    json_decref(o);
    return NULL;
}

static json_t *jtree_array(jtree_in *in, size_t *i)
{
    if (in->depth >= JTREE_VALID_DEPTH) return NULL;
    json_t *a = json_array();
    size_t k;
    if (!a) return NULL;
    in->depth++;
    if (!jtree_first(in, *i, &k, ']')) {
        *i = k; /* empty */
        return a;
    }
    for (;;) {
        json_t *v = jtree_value(in, &k);
        int next = v && json_array_append_new(a, v) == 0 ? jtree_next(in, &k, ']') : -1;
        if (next == 0) {
            *i = k;
            in->depth--;
            return a;
        }
        if (next < 0) break;
    }
    json_decref(a);
    return NULL;
}

static json_t *jtree_literal(jtree_in *in, size_t *i, const char *lit, json_t *v)
{
    size_t l = strlen(lit);
    if (in->n - *i < l || memcmp(in->s + *i, lit, l) != 0) return NULL;
    *i += l;
    return v;
}

static json_t *jtree_value(jtree_in *in, size_t *i)
{
    if (*i >= in->n) return NULL;
    switch (in->s[*i]) {
    case '{':
        return jtree_object(in, i);
    case '[':
        return jtree_array(in, i);
    case '"': {
        const char *p;
        char *owned;
        long l = jtree_str(in, i, &p, &owned);
        json_t *v = l < 0 ? NULL : json_stringn_nocheck(p, (size_t)l);
        free(owned);
        return v;
    }
    case 't':
        return jtree_literal(in, i, "true", json_true());
    case 'f':
        return jtree_literal(in, i, "false", json_false());
    case 'n':
        return jtree_literal(in, i, "null", json_null());
    default:
        return jtree_number(in, i);
    }
}

/* The tree of p[0..n), validated (jtree_load) or not (jtree_load_valid). */
static json_t *jtree_build(const char *p, size_t n, json_error_t *err, int validate)
{
    jtree_in in = {p, n, err, 0};
    if (err) memset(err, 0, sizeof *err);
    if (!p || (validate && jscan_object(p, n, NULL, 0, NULL) == JSCAN_INVALID)) {
        jtree_fail(&in, "invalid JSON");
        return NULL;
    }
    size_t i = jtree_ws(&in, 0);
    /* jansson without JSON_DECODE_ANY: an object or an array at the top */
    if (i >= n || (p[i] != '{' && p[i] != '[')) {
        jtree_fail(&in, "'[' or '{' expected");
        return NULL;
    }
    json_t *v = jtree_value(&in, &i);
    if (v && jtree_ws(&in, i) != n) {
        json_decref(v);
        v = NULL;
    }
    if (!v) jtree_fail(&in, "invalid JSON");
    return v;
}

json_t *jtree_load(const char *p, size_t n, json_error_t *err)
{
    return jtree_build(p, n, err, 1);
}

json_t *jtree_load_valid(const char *p, size_t n, json_error_t *err)
{
    return jtree_build(p, n, err, 0);
}

/* ---- what a tree can hold ---- */

int jtree_holds_key(ms_str raw)
{
    if (!memchr(raw.p, '\\', raw.n)) return 1; /* the usual name: no escape at all */
    for (size_t i = 0; i + 1 < raw.n; i++) {
        if (raw.p[i] != '\\') continue;
        /* U+0000 has one spelling in JSON; a surrogate pair never decodes to it */
        if (raw.p[i + 1] == 'u' && i + 5 < raw.n && memcmp(raw.p + i + 2, "0000", 4) == 0) return 0;
        i++; /* the escaped byte */
    }
    return 1;
}

/* The value at *i (valid JSON) walked as jtree_value builds it: 1 and *i past it when the tree
 * would hold it, else 0. Its recursion is bounded by the nesting jscan allowed. */
static int jtree_holds_at(const jtree_in *in, size_t *i)
{
    size_t k;
    if (*i >= in->n) return 0;
    switch (in->s[*i]) {
    case '{':
    case '[': {
        char close = in->s[*i] == '{' ? '}' : ']';
        if (!jtree_first(in, *i, &k, close)) break;
        for (;;) {
            if (close == '}') {
                size_t kl = jscan_string_token(in->s + k, in->n - k);
                if (kl < 2 || !jtree_holds_key((ms_str){in->s + k + 1, kl - 2})) return 0;
                k = jtree_ws(in, k + kl);
                if (k >= in->n || in->s[k] != ':') return 0;
                k = jtree_ws(in, k + 1);
            }
            if (!jtree_holds_at(in, &k)) return 0;
            int next = jtree_next(in, &k, close);
            if (next < 0) return 0;
            if (next == 0) break;
        }
        break;
    }
    case '"': {
        size_t len = jscan_string_token(in->s + *i, in->n - *i);
        if (len < 2) return 0;
        k = *i + len;
        break;
    }
    case 't':
    case 'n':
        k = *i + 4;
        break;
    case 'f':
        k = *i + 5;
        break;
    default: {
        long long x;
        double d;
        const char *why;
        size_t len = jtree_numlen(in, *i);
        if (jtree_num(in->s + *i, len, &x, &d, &why) <= 0) return 0;
        k = *i + len;
    }
    }
    *i = k;
    return 1;
}

int jtree_holds(ms_str v)
{
    jtree_in in = {v.p, v.n, NULL, 0};
    size_t i = jtree_ws(&in, 0);
    return v.p && jtree_holds_at(&in, &i) && jtree_ws(&in, i) == v.n;
}

int jtree_number_kind(ms_str v, int64_t *out)
{
    long long x = 0;
    double d;
    const char *why;
    int kind = jtree_num(v.p, v.n, &x, &d, &why);
    if (kind == 1) *out = (int64_t)x;
    return kind < 0 ? 0 : kind;
}

/* ---- objects made by hand ---- */

json_t *jtree_obj(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    json_t *o = json_object();
    int ok = o != NULL;
    for (int i = 0; i < n; i++) {
        const char *k = va_arg(ap, const char *);
        json_t *v = va_arg(ap, json_t *);
        if (!v)
            ok = 0;
        else if (!ok)
            json_decref(v);
        else if (json_object_set_new_nocheck(o, k, v) != 0)
            ok = 0; /* (it released v) */
    }
    va_end(ap);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
