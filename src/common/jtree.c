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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t n;
    json_error_t *err;
} jtree_in;

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

static json_t *jtree_number(jtree_in *in, size_t *i)
{
    size_t k = *i;
    int real = 0;
    while (k < in->n && in->s[k] && strchr("-+0123456789.eE", in->s[k])) {
        if (in->s[k] == '.' || in->s[k] == 'e' || in->s[k] == 'E') real = 1;
        k++;
    }
    size_t len = k - *i;
    char small[64], *t = len < sizeof small ? small : malloc(len + 1);
    if (!t || len == 0) {
        if (t && t != small) free(t);
        return NULL;
    }
    memcpy(t, in->s + *i, len);
    t[len] = '\0';
    json_t *v = NULL;
    char *end;
    errno = 0;
    if (!real) {
        long long x = strtoll(t, &end, 10);
        if (errno == ERANGE)
            jtree_fail(in, x < 0 ? "too big negative integer" : "too big integer");
        else if (*end == '\0')
            v = json_integer(x);
    } else {
        double d = strtod(t, &end);
        if (errno == ERANGE && isinf(d))
            jtree_fail(in, "real number overflow");
        else if (*end == '\0')
            v = json_real(d);
    }
    if (t != small) free(t);
    if (v) *i = k;
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
    json_t *o = json_object();
    size_t k;
    if (!o) return NULL;
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
            return o;
        }
        if (next < 0) break;
    }
    json_decref(o);
    return NULL;
}

static json_t *jtree_array(jtree_in *in, size_t *i)
{
    json_t *a = json_array();
    size_t k;
    if (!a) return NULL;
    if (!jtree_first(in, *i, &k, ']')) {
        *i = k; /* empty */
        return a;
    }
    for (;;) {
        json_t *v = jtree_value(in, &k);
        int next = v && json_array_append_new(a, v) == 0 ? jtree_next(in, &k, ']') : -1;
        if (next == 0) {
            *i = k;
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

json_t *jtree_load(const char *p, size_t n, json_error_t *err)
{
    jtree_in in = {p, n, err};
    if (err) memset(err, 0, sizeof *err);
    if (!p || jscan_object(p, n, NULL, 0, NULL) == JSCAN_INVALID) {
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
