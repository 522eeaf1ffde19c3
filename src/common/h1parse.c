/*
 * The HTTP/1.1 parser of the upstream client's responses and the server's requests (the why and
 * the rules: h1parse.h).
 *
 * Lines (the start line, header fields, chunk sizes, trailers) are found with memchr and checked
 * where they lie in the read; only a line that a read cuts in two is gathered in the parser's own
 * buffer. Body bytes are handed on where they lie. Every byte of the header block counts against
 * the head cap (H1P_HEAD_MAX for a response, the caller's for a request), a chunk's size line
 * against H1P_CHUNK_LINE_MAX, so a peer that never ends a line costs at most that much memory.
 */
#include "common/h1parse.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    H1P_S_STATUS,
    H1P_S_HEADER,
    H1P_S_BODY_CL,
    H1P_S_BODY_EOF,
    H1P_S_CHUNK_SIZE,
    H1P_S_CHUNK_DATA,
    H1P_S_CHUNK_CR,
    H1P_S_CHUNK_LF,
    H1P_S_TRAILER,
    H1P_S_DONE,
    H1P_S_ERROR
};

/* Character classes (RFC 9110 5.6.2, 5.5; RFC 3986 for the target): tchar; a field value's or
 * reason phrase's byte (HTAB, SP, VCHAR, obs-text); a request target's (VCHAR: what the URI
 * grammar allows in a path is the router's to judge, what matters here is where the target
 * ends); an absolute target's authority's (RFC 3986 3.2: unreserved, pct-encoded, sub-delims,
 * ':', '@', and '[' ']' of an IP literal); a quoted-string's byte (qdtext, RFC 9110 5.6.4). And
 * every byte's value as a hex digit (16 when it is none). */
#define H1P_TOKEN 1
#define H1P_VALUE 2
#define H1P_TARGET 4
#define H1P_QDTEXT 8
#define H1P_AUTH 16
#define H1P_ALNUM(c)                                                                               \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define H1P_TSYM(c)                                                                                \
    ((c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||          \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||           \
     (c) == '`' || (c) == '|' || (c) == '~')
#define H1P_AUTHSYM(c)                                                                             \
    ((c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '%' || (c) == '!' ||           \
     (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' ||          \
     (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=' || (c) == ':' || (c) == '@' ||           \
     (c) == '[' || (c) == ']')
#define H1P_ISHEX(c)                                                                               \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define H1P_C(c)                                                                                   \
    ((H1P_ALNUM(c) || H1P_TSYM(c) ? H1P_TOKEN : 0) |                                               \
     ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f) ? H1P_VALUE : 0) |                               \
     ((c) > 0x20 && (c) < 0x7f ? H1P_TARGET : 0) |                                                 \
     ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f && (c) != '"' && (c) != '\\') ? H1P_QDTEXT : 0) | \
     (H1P_ALNUM(c) || H1P_AUTHSYM(c) ? H1P_AUTH : 0))
#define H1P_HV(c)                                                                                  \
    (!H1P_ISHEX(c) ? 16 : (c) <= '9' ? (c) - '0' : (c) >= 'a' ? (c) - 'a' + 10 : (c) - 'A' + 10)
#define H1P_R4(f, i) f(i), f(i + 1), f(i + 2), f(i + 3)
#define H1P_R16(f, i) H1P_R4(f, i), H1P_R4(f, i + 4), H1P_R4(f, i + 8), H1P_R4(f, i + 12)
#define H1P_R64(f, i) H1P_R16(f, i), H1P_R16(f, i + 16), H1P_R16(f, i + 32), H1P_R16(f, i + 48)
#define H1P_TABLE(f)                                                                               \
    {                                                                                              \
        H1P_R64(f, 0), H1P_R64(f, 64), H1P_R64(f, 128), H1P_R64(f, 192)                            \
    }
static const unsigned char h1p_cls[256] = H1P_TABLE(H1P_C);
static const unsigned char h1p_hexv[256] = H1P_TABLE(H1P_HV);

#define H1P_LINE_FIRST 512 /* the most a line buffer keeps between responses */

void h1p_free(h1p *p)
{
    buf_free(&p->line);
}

static void h1p_reset(h1p *p, const h1p_callbacks *cb, void *ud, size_t head_max)
{
    /* a buffer grown for a long line is not kept for the connection's later messages (an idle
     * connection holds at most the first size) */
    buf_t line = p->line;
    if (line.cap > H1P_LINE_FIRST) buf_free(&line);
    line.len = 0;
    line.limit = head_max > H1P_CHUNK_LINE_MAX ? head_max : H1P_CHUNK_LINE_MAX;
    memset(p, 0, sizeof *p);
    p->line = line;
    p->cb = cb;
    p->ud = ud;
    p->head_max = head_max;
    p->state = H1P_S_STATUS;
}

void h1p_init(h1p *p, const h1p_callbacks *cb, void *ud, bool head_only)
{
    h1p_reset(p, cb, ud, H1P_HEAD_MAX);
    p->head_only = head_only;
}

void h1p_init_request(h1p *p, const h1p_callbacks *cb, void *ud, size_t head_max)
{
    h1p_reset(p, cb, ud, head_max);
    p->request = true;
}

static h1p_result h1p_fail(h1p *p, h1p_result r)
{
    p->where = p->state == H1P_S_STATUS   ? H1P_IN_START
               : p->state == H1P_S_HEADER ? H1P_IN_HEADER
                                          : H1P_IN_BODY;
    p->state = H1P_S_ERROR;
    p->err = (uint8_t)r;
    return r;
}

h1p_where h1p_error_where(const h1p *p)
{
    return (h1p_where)p->where;
}

/* The next line from d[*i..n), at most cap bytes with its CRLF: 1 with *l and *ln (without the
 * CRLF) when it is whole, 0 when every byte was taken and the line goes on in the next read, or
 * an error result (negated). */
static int h1p_line(h1p *p, const char *d, size_t n, size_t *i, size_t cap, const char **l,
                    size_t *ln)
{
    const char *s = d + *i;
    size_t avail = n - *i;
    const char *nl = memchr(s, '\n', avail);
    size_t take = nl ? (size_t)(nl - s) + 1 : avail;

    if (p->line.len + take > cap) return -(int)h1p_fail(p, H1P_TOO_LARGE);
    *i += take;
    if (p->line.len == 0 && nl) {
        *l = s;
        *ln = take;
    } else {
        if (buf_append(&p->line, s, take) != 0) return -(int)h1p_fail(p, H1P_NOMEM);
        if (!nl) return 0;
        *l = p->line.data;
        *ln = p->line.len;
    }
    p->line.len = 0; /* the bytes stay where they are until the next line is gathered */
    if (*ln < 2 || (*l)[*ln - 2] != '\r') return -(int)h1p_fail(p, H1P_MALFORMED);
    *ln -= 2;
    return 1;
}

/* Four bytes a turn, their classes ANDed (one test, one branch): a request's target goes
 * through here, byte by byte it cost twice as much. (Not header names: most are too short for
 * it to pay.) */
#define H1P_CLS4(s, k)                                                                             \
    (h1p_cls[(unsigned char)(s)[(k)]] & h1p_cls[(unsigned char)(s)[(k) + 1]] &                     \
     h1p_cls[(unsigned char)(s)[(k) + 2]] & h1p_cls[(unsigned char)(s)[(k) + 3]])

static bool h1p_all(const char *s, size_t n, unsigned cls)
{
    size_t k = 0;
    while (k + 4 <= n && (H1P_CLS4(s, k) & cls))
        k += 4;
    for (; k < n; k++)
        if (!(h1p_cls[(unsigned char)s[k]] & cls)) return false;
    return true;
}

/* A field value or reason phrase: no control byte but HTAB. Eight bytes at a time while no byte
 * is below 0x20 or 0x7f (exact as to whether one is: Bit Twiddling Hacks' hasless), the rest
 * and any word with a tab through the table. */
static bool h1p_value_ok(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t x, y;
        memcpy(&x, s + k, 8);
        y = x ^ (0x7f * ones);
        if ((((x - 0x20 * ones) & ~x) | ((y - ones) & ~y)) & high) break;
    }
    return h1p_all(s + k, n - k, H1P_VALUE);
}

/* The length of the token that starts l[0..n) */
static size_t h1p_token_len(const char *l, size_t n)
{
    size_t k = 0;
    while (k < n && (h1p_cls[(unsigned char)l[k]] & H1P_TOKEN))
        k++;
    return k;
}

/* "HTTP/1.x NNN[ reason]" */
static h1p_result h1p_status_line(h1p *p, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') || l[8] != ' ')
        return H1P_MALFORMED;
    if (l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9')
        return H1P_MALFORMED;
    if (n > 12 && (l[12] != ' ' || !h1p_value_ok(l + 13, n - 13))) return H1P_MALFORMED;
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    /* A switch of protocols we never asked for: nothing after it is HTTP/1.1. */
    if (p->status == 101) return H1P_MALFORMED;
    p->v11 = l[7] == '1';
    p->chunked = p->has_cl = p->has_te = p->conn_close = p->conn_keep = false;
    p->left = 0;
    p->state = H1P_S_HEADER;
    return H1P_MORE;
}

/* An absolute target, "http(s)://authority[/path][?query]", with an authority of its characters,
 * not empty, with one '@' at most: what the router ignores of it, refused as strictly as llhttp
 * does, so the two never read a target two ways. */
static bool h1p_absolute_ok(const char *t, size_t tn)
{
    size_t k, at = 0;
    if (tn > 7 && strncasecmp(t, "http://", 7) == 0)
        k = 7;
    else if (tn > 8 && strncasecmp(t, "https://", 8) == 0)
        k = 8;
    else
        return false;
    size_t b = k;
    for (; k < tn && t[k] != '/' && t[k] != '?'; k++) {
        if (!(h1p_cls[(unsigned char)t[k]] & H1P_AUTH)) return false;
        at += t[k] == '@';
    }
    return k > b && at <= 1;
}

/* "METHOD TARGET HTTP/1.x"; empty lines before it are skipped (RFC 9112 2.2: a client may send
 * a CRLF after a body). The method is any token (the router answers one it does not serve) but
 * CONNECT; the target is the origin form, "*", or the absolute form of http(s) (RFC 9112 3.2),
 * not the authority form. */
static h1p_result h1p_request_line(h1p *p, const char *l, size_t n)
{
    size_t m;

    if (n == 0) return H1P_MORE;
    m = h1p_token_len(l, n);
    /* the method, its space, a target of a byte at least, and " HTTP/1.x" */
    if (m == 0 || m > H1P_METHOD_MAX || n < m + 11 || l[m] != ' ') return H1P_MALFORMED;
    const char *v = l + n - 9, *t = l + m + 1;
    size_t tn = (size_t)(v - t);
    if (memcmp(v, " HTTP/1.", 8) != 0 || (v[8] != '0' && v[8] != '1')) return H1P_MALFORMED;
    if (!h1p_all(t, tn, H1P_TARGET)) return H1P_MALFORMED;
    /* (CONNECT asks for a tunnel, which this server never opens) */
    if (m == 7 && memcmp(l, "CONNECT", 7) == 0) return H1P_MALFORMED;
    if (t[0] != '/' && !(tn == 1 && t[0] == '*') && !h1p_absolute_ok(t, tn)) return H1P_MALFORMED;
    p->v11 = v[8] == '1';
    if (p->cb->on_request && p->cb->on_request(p->ud, l, m, t, tn) != 0) return H1P_ABORTED;
    p->state = H1P_S_HEADER;
    return H1P_MORE;
}

/* The next element of a comma-separated list in [*s, e), without whitespace around it. */
static bool h1p_list_next(const char **s, const char *e, const char **t, size_t *tn)
{
    const char *q = *s;
    while (q < e && (*q == ' ' || *q == '\t' || *q == ','))
        q++;
    if (q == e) return false;
    const char *b = q;
    while (q < e && *q != ',')
        q++;
    const char *te = q;
    while (te > b && (te[-1] == ' ' || te[-1] == '\t'))
        te--;
    *t = b;
    *tn = (size_t)(te - b);
    *s = q;
    return true;
}

static h1p_result h1p_framing(h1p *p, const char *name, size_t nl, const char *v, size_t vn,
                              bool tab_after)
{
    const char *e = v + vn, *t;
    size_t tn;

    if (H1P_IS(name, nl, "content-length")) {
        uint64_t cl = 0;
        /* one, of at most 18 digits (no overflow, and more than anyone sends) */
        if (p->has_cl || vn == 0 || vn > 18 || tab_after) return H1P_MALFORMED;
        for (size_t k = 0; k < vn; k++) {
            if (v[k] < '0' || v[k] > '9') return H1P_MALFORMED;
            cl = cl * 10 + (uint64_t)(v[k] - '0');
        }
        p->has_cl = true;
        p->left = cl;
    } else if (H1P_IS(name, nl, "transfer-encoding")) {
        /* chunked when it is the last coding; anywhere else the framing is not one we read */
        /* (an empty coding last, "chunked,", is not chunked for llhttp: refused) */
        if (p->chunked || (vn > 0 && v[vn - 1] == ',') || tab_after) return H1P_MALFORMED;
        p->has_te = true;
        while (h1p_list_next(&v, e, &t, &tn)) {
            if (p->chunked) return H1P_MALFORMED;
            p->chunked = H1P_IS(t, tn, "chunked");
            /* a request's body is chunked and nothing else (RFC 9112 6.3: a request is never
             * read until the close; and a coding we would not undo is no body we can use) */
            if (p->request && !p->chunked) return H1P_MALFORMED;
        }
        if (p->request && !p->chunked) return H1P_MALFORMED; /* (an empty list) */
    } else if (H1P_IS(name, nl, "connection")) {
        /* (a tab in or after it: "keep-alive<TAB>" is keep-alive to us and not to llhttp, so the
         * two would disagree on whether another message follows; nobody sends one) */
        if (tab_after || memchr(v, '\t', vn)) return H1P_MALFORMED;
        while (h1p_list_next(&v, e, &t, &tn)) {
            if (H1P_IS(t, tn, "close")) p->conn_close = true;
            if (H1P_IS(t, tn, "keep-alive")) p->conn_keep = true;
        }
    }
    return H1P_MORE;
}

/* A request's header block ended: where its body is (the caller may pause before it), or that
 * there is none. */
static h1p_result h1p_request_head_end(h1p *p)
{
    int rc = p->cb->on_head ? p->cb->on_head(p->ud, 0) : 0;

    if (rc != 0 && rc != H1P_PAUSE) return H1P_ABORTED;
    if (p->chunked) {
        p->state = H1P_S_CHUNK_SIZE;
    } else if (p->left > 0) {
        p->state = H1P_S_BODY_CL;
    } else {
        return H1P_DONE;
    }
    return rc == H1P_PAUSE ? H1P_PAUSED : H1P_MORE;
}

/* The header block ended: where the body is, or that there is none. */
static h1p_result h1p_head_end(h1p *p)
{
    if (p->has_cl && p->has_te) return H1P_MALFORMED; /* RFC 9112 6.3: a smuggling vector */
    if (p->request) return h1p_request_head_end(p);
    /* No body whatever they say; and a length that says otherwise is not worth a guess (llhttp
     * would read it as a body, RFC 9110 would not). */
    bool bodiless = p->status < 200 || p->status == 204 || p->status == 304;
    if (bodiless && (p->has_te || p->left > 0)) return H1P_MALFORMED;
    if (p->cb->on_head && p->cb->on_head(p->ud, p->status) != 0) return H1P_ABORTED;
    if (p->status < 200) {
        /* (HTTP/1.0 has none, and one that closes the connection leaves no room for the answer) */
        if (!p->v11 || p->conn_close) return H1P_MALFORMED;
        p->state = H1P_S_STATUS; /* interim: the real answer follows */
        return H1P_MORE;
    }
    if (p->head_only || bodiless) return H1P_DONE;
    if (p->chunked) {
        p->state = H1P_S_CHUNK_SIZE;
    } else if (p->has_cl && !p->has_te) {
        if (p->left == 0) return H1P_DONE;
        p->state = H1P_S_BODY_CL;
    } else {
        p->state = H1P_S_BODY_EOF;
    }
    return H1P_MORE;
}

static h1p_result h1p_header_line(h1p *p, const char *l, size_t n, bool trailer)
{
    size_t k;

    if (n == 0) return trailer ? H1P_DONE : h1p_head_end(p);
    k = h1p_token_len(l, n);
    if (k == 0 || k == n || l[k] != ':') return H1P_MALFORMED;
    const char *v = l + k + 1, *e = l + n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (!h1p_value_ok(v, (size_t)(e - v))) return H1P_MALFORMED;
    /* (a tab after a Content-Length or Transfer-Encoding: llhttp refuses the one and misreads
     * the other; we refuse both, below) */
    bool tab_after = false;
    for (const char *q = e; q < l + n; q++) /* (usually none: no call for it) */
        tab_after |= *q == '\t';
    if (trailer) {
        /* framing has no place in trailers (RFC 9110 6.5.1), and llhttp reads it there */
        if (H1P_IS(l, k, "connection") || H1P_IS(l, k, "content-length") ||
            H1P_IS(l, k, "transfer-encoding"))
            return H1P_MALFORMED;
        return H1P_MORE;
    }
    h1p_result r = h1p_framing(p, l, k, v, (size_t)(e - v), tab_after);
    if (r != H1P_MORE) return r;
    if (p->cb->on_header && p->cb->on_header(p->ud, l, k, v, (size_t)(e - v)) != 0)
        return H1P_ABORTED;
    return H1P_MORE;
}

/* A quoted-string from l[k] (its opening DQUOTE): the index after its closing one, or 0 when it
 * is not one (RFC 9110 5.6.4). */
static size_t h1p_quoted(const char *l, size_t k, size_t n)
{
    for (k++; k < n; k++) {
        unsigned char c = (unsigned char)l[k];
        if (c == '"') return k + 1;
        if (c == '\\') {
            if (++k == n || !(h1p_cls[(unsigned char)l[k]] & H1P_VALUE)) return 0;
        } else if (!(h1p_cls[c] & H1P_QDTEXT)) {
            return 0;
        }
    }
    return 0;
}

/* A chunk's extensions, l[k..n): ";name[=value]" each, tokens, no whitespace. A response's are
 * what servers send and nothing llhttp 8.1 misreads: at most one value, and it ends the line. A
 * request's may be any number, a value quoted or not (a client may send what RFC 9112 7.1.1
 * allows), or empty; they mean nothing to us and count against H1P_REQ_EXT_MAX over the
 * message. */
static h1p_result h1p_chunk_exts(h1p *p, const char *l, size_t k, size_t n)
{
    if (p->request && (p->ext_bytes += n - k) > H1P_REQ_EXT_MAX) return H1P_TOO_LARGE;
    while (k < n) {
        size_t b;
        if (l[k++] != ';') return H1P_MALFORMED;
        for (b = k; k < n && (h1p_cls[(unsigned char)l[k]] & H1P_TOKEN); k++)
            ;
        if (k == b || k == n || l[k] != '=') {
            if (k == b) return H1P_MALFORMED;
            continue;
        }
        if (++k < n && l[k] == '"' && p->request) {
            if ((k = h1p_quoted(l, k, n)) == 0) return H1P_MALFORMED;
            continue;
        }
        for (b = k; k < n && (h1p_cls[(unsigned char)l[k]] & H1P_TOKEN); k++)
            ;
        /* A response's value ends the line (llhttp 8.1 refuses an extension after one with a
         * value there). A request's may be empty: not the grammar's, but harmless in what we
         * ignore, and clients have sent it (llhttp took it). */
        if (!p->request && (k == b || k < n)) return H1P_MALFORMED;
    }
    return H1P_MORE;
}

/* "HEX[;ext...]" */
static h1p_result h1p_chunk_line(h1p *p, const char *l, size_t n)
{
    uint64_t size = 0;
    size_t k = 0;

    unsigned v;
    while (k < n && (v = h1p_hexv[(unsigned char)l[k]]) < 16) {
        if (k++ == 15) return H1P_MALFORMED; /* 2^60 bytes is not a chunk */
        size = size * 16 + v;
    }
    if (k == 0) return H1P_MALFORMED;
    h1p_result r = h1p_chunk_exts(p, l, k, n);
    if (r != H1P_MORE) return r;
    if (size == 0) {
        p->state = H1P_S_TRAILER;
    } else {
        p->left = size;
        p->state = H1P_S_CHUNK_DATA;
    }
    return H1P_MORE;
}

/* The chunk head every server sends, "HEX\r\n" whole in the read, read without the line
 * machinery (a stream is a chunk per event): the bytes it took, or 0 when it is not that and
 * the line path decides. */
static size_t h1p_chunk_fast(h1p *p, const char *d, size_t n)
{
    uint64_t size = 0;
    size_t k = 0;
    unsigned v;

    while (k < n && k < 15 && (v = h1p_hexv[(unsigned char)d[k]]) < 16) {
        size = size * 16 + v;
        k++;
    }
    if (k == 0 || n - k < 2 || d[k] != '\r' || d[k + 1] != '\n') return 0;
    if (size == 0) {
        p->state = H1P_S_TRAILER;
    } else {
        p->left = size;
        p->state = H1P_S_CHUNK_DATA;
    }
    return k + 2;
}

static h1p_result h1p_on_line(h1p *p, const char *l, size_t n)
{
    switch (p->state) {
    case H1P_S_STATUS:
        return p->request ? h1p_request_line(p, l, n) : h1p_status_line(p, l, n);
    case H1P_S_HEADER:
        return h1p_header_line(p, l, n, false);
    case H1P_S_TRAILER:
        return h1p_header_line(p, l, n, true);
    default:
        return h1p_chunk_line(p, l, n);
    }
}

/* Body bytes where they lie, at most p->left of them (all of them for a body ended by close). */
static h1p_result h1p_body(h1p *p, const char *d, size_t n, size_t *i)
{
    size_t k = n - *i;
    bool counted = p->state != H1P_S_BODY_EOF;

    if (counted && k > p->left) k = (size_t)p->left;
    if (p->cb->on_body && p->cb->on_body(p->ud, d + *i, k) != 0) return H1P_ABORTED;
    *i += k;
    if (!counted) return H1P_MORE;
    p->left -= k;
    if (p->left > 0) return H1P_MORE;
    if (p->state == H1P_S_BODY_CL) return H1P_DONE;
    /* the CRLF after the data, when it is there, at once */
    if (n - *i >= 2 && d[*i] == '\r' && d[*i + 1] == '\n') {
        *i += 2;
        p->state = H1P_S_CHUNK_SIZE;
    } else {
        p->state = H1P_S_CHUNK_CR;
    }
    return H1P_MORE;
}

h1p_result h1p_execute(h1p *p, const char *d, size_t n, size_t *used)
{
    size_t i = 0;
    h1p_result r = H1P_MORE;

    *used = 0;
    if (p->state == H1P_S_ERROR) return (h1p_result)p->err;
    if (p->state == H1P_S_DONE) return H1P_DONE;
    while (i < n && r == H1P_MORE) {
        switch (p->state) {
        case H1P_S_BODY_CL:
        case H1P_S_CHUNK_DATA:
        case H1P_S_BODY_EOF:
            r = h1p_body(p, d, n, &i);
            break;
        case H1P_S_CHUNK_CR:
        case H1P_S_CHUNK_LF:
            if (d[i++] != (p->state == H1P_S_CHUNK_CR ? '\r' : '\n'))
                r = H1P_MALFORMED;
            else
                p->state = p->state == H1P_S_CHUNK_CR ? H1P_S_CHUNK_LF : H1P_S_CHUNK_SIZE;
            break;
        default: {
            const char *l;
            size_t ln, fast;
            bool chunk = p->state == H1P_S_CHUNK_SIZE;
            if (chunk && p->line.len == 0 && (fast = h1p_chunk_fast(p, d + i, n - i)) > 0) {
                i += fast;
                break;
            }
            int got = h1p_line(p, d, n, &i,
                               chunk ? H1P_CHUNK_LINE_MAX : p->head_max - p->head_bytes, &l, &ln);
            if (got < 0) return (h1p_result)-got;
            if (got == 0) break;
            if (!chunk) p->head_bytes += ln + 2;
            r = h1p_on_line(p, l, ln);
            break;
        }
        }
    }
    *used = i;
    if (r == H1P_DONE)
        p->state = H1P_S_DONE;
    else if (r != H1P_MORE && r != H1P_PAUSED)
        h1p_fail(p, r);
    return r;
}

h1p_result h1p_finish(h1p *p)
{
    if (p->state == H1P_S_ERROR) return (h1p_result)p->err;
    if (p->state == H1P_S_BODY_EOF || p->state == H1P_S_DONE) {
        p->state = H1P_S_DONE;
        return H1P_DONE;
    }
    return h1p_fail(p, H1P_MALFORMED);
}

bool h1p_needs_eof(const h1p *p)
{
    return p->state == H1P_S_BODY_EOF;
}

bool h1p_keep_alive(const h1p *p)
{
    /* a body ended by the close ends the connection too (state is DONE after h1p_finish) */
    bool framed = !(p->status >= 200 && !p->head_only && p->status != 204 && p->status != 304 &&
                    !p->chunked && !p->has_cl);
    return framed && (p->v11 ? !p->conn_close : p->conn_keep);
}
