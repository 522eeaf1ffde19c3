/*
 * Bounded growable buffers (see buf.h). Growth doubles capacity but never passes the owner's
 * limit, so a peer that sends more than allowed gets an error, not an allocation.
 */
#include "common/buf.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

int ms_str_caseeq(ms_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && strncasecmp(a.p, lit, n) == 0;
}

void buf_init(buf_t *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
    b->borrowed = 0;
}

void buf_init_with(buf_t *b, char *mem, size_t cap, size_t limit)
{
    b->data = mem;
    b->len = 0;
    b->cap = cap;
    b->limit = limit;
    b->borrowed = 1;
}

void buf_free(buf_t *b)
{
    if (!b->borrowed) free(b->data);
    b->borrowed = 0;
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_rewind_to(buf_t *b, char *mem, size_t cap)
{
    size_t limit = b->limit;
    if (!b->borrowed) free(b->data);
    buf_init_with(b, mem, cap, limit);
}

int buf_reserve(buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) return -1;
    size_t need = b->len + extra;
    if (b->limit && need > b->limit) return -1;
    if (need + 1 <= b->cap) return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need + 1)
        ncap *= 2;
    /* +1 keeps room for a NUL so text users can treat data as a C string */
    if (b->limit && ncap > b->limit + 1) ncap = b->limit + 1;
    char *p;
    if (b->borrowed) {
        p = malloc(ncap);
        if (p && b->len) memcpy(p, b->data, b->len);
    } else {
        p = realloc(b->data, ncap);
    }
    if (!p) return -1;
    b->borrowed = 0;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int buf_append_grow(buf_t *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return buf_append(b, small, (size_t)n);
    if (buf_reserve(b, (size_t)n) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int buf_append_dec(buf_t *b, int64_t v)
{
    char d[24];
    return buf_append(b, d, (size_t)(ms_i64_dec(v, d) - d));
}

/* The length of s's prefix that JSON takes as it is: no control byte, '"' or '\\' (bytes from
 * 0x80, UTF-8, are plain). Sixteen bytes a step where SSE2 is there: the access log and the
 * answers escape a dozen strings per request. */
size_t buf_json_plain(const char *s, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* x <= 0x1f (unsigned) exactly when min(x, 0x1f) == x */
        __m128i bad =
            _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask) return i + (size_t)__builtin_ctz(mask);
    }
#endif
    while (i < n && (unsigned char)s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

size_t buf_json_escape_byte(unsigned char c, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char e;
    switch (c) {
    case '"':
    case '\\':
        e = (char)c;
        break;
    case '\n':
        e = 'n';
        break;
    case '\r':
        e = 'r';
        break;
    case '\t':
        e = 't';
        break;
    default:
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        return 6;
    }
    out[0] = '\\';
    out[1] = e;
    return 2;
}

int buf_append_json_escaped(buf_t *b, const char *s, size_t n)
{
    if (n == 0) return buf_reserve(b, 0);
    /* The common case, a string with nothing to escape, is one copy. */
    size_t i = buf_json_plain(s, n);
    if (i == n) return buf_append(b, s, n);
    /* Else a run and an escape at a time: a prompt's or a tool description's new lines come
     * every few dozen bytes, and the run between them is found sixteen bytes a step. */
    size_t start = 0;
    while (i < n) {
        char esc[6];
        if (buf_append(b, s + start, i - start) != 0 ||
            buf_append(b, esc, buf_json_escape_byte((unsigned char)s[i], esc)) != 0)
            return -1;
        start = i + 1;
        i = start + buf_json_plain(s + start, n - start);
    }
    return buf_append(b, s + start, n - start);
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data) b->data[b->len] = '\0';
}

char *buf_steal(buf_t *b)
{
    char *p = b->data;
    if (b->borrowed) {
        /* the caller's memory cannot be handed on: a heap copy of what it holds */
        if (!(p = malloc(b->len + 1))) return NULL;
        if (b->len) memcpy(p, b->data, b->len);
        p[b->len] = '\0';
        b->borrowed = 0;
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int buf_append_json_string(buf_t *b, const char *s, size_t n)
{
    int rc = buf_append(b, "\"", 1);
    rc |= buf_append_json_escaped(b, s ? s : "", n);
    return rc | buf_append(b, "\"", 1);
}
