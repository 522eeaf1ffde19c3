/*
 * The server's request parser (src/common/h1parse.c in request mode): what it accepts and how
 * (method, target, header fields, body, end, keep-alive) whole, cut in two at every offset and a
 * byte at a time, with and without a pause after each head, pipelined; what it refuses, with
 * which result and in which part; the caps on the head, a chunk's size line and a request's
 * chunk extensions; the pause; the callbacks; every byte value at every place of a method, a
 * target, a field name and a field value; and a fixed run of mutations checked against llhttp
 * (tests/unit/h1p_reqdiff.h, the same check as tests/fuzz/fuzz_h1req.c).
 */
#include "tap.h"

#include "h1p_reqdiff.h"

#include <stdint.h>

/* the server's default max_header_bytes (src/config/config.c) */
#define HEAD 16384

/* ---- what a run made of its input, as text ---- */

typedef struct {
    char s[4096];
    size_t n;
} text;

static void put(text *t, const char *p, size_t n)
{
    for (size_t k = 0; k < n && t->n + 5 < sizeof t->s; k++) {
        unsigned char c = (unsigned char)p[k];
        if (c < 0x20 || c > 0x7e || c == '\\')
            t->n += (size_t)snprintf(t->s + t->n, sizeof t->s - t->n, "\\x%02x", c);
        else
            t->s[t->n++] = (char)c;
    }
    t->s[t->n] = '\0';
}

static void put_str(text *t, const char *p)
{
    size_t n = strlen(p);
    if (t->n + n < sizeof t->s) {
        memcpy(t->s + t->n, p, n + 1);
        t->n += n;
    }
}

/* "METHOD TARGET [name=value]... {body} keep|close\n" for each request done; a value or body of
 * 64 bytes or more is shown as #its length */
static void render(const h1r_side *s, text *t)
{
    t->n = 0;
    t->s[0] = '\0';
    for (int i = 0; i < s->nmsg; i++) {
        const h1r_msg *m = &s->msg[i];
        const char *a = s->arena.p;
        char num[32];
        put(t, a + m->m, m->mlen);
        put_str(t, " ");
        put(t, a + m->u, m->ulen);
        for (size_t k = m->h; k < m->h + m->hlen;) {
            size_t nl, vl;
            memcpy(&nl, a + k, sizeof nl);
            k += sizeof nl;
            put_str(t, " [");
            put(t, a + k, nl);
            k += nl;
            memcpy(&vl, a + k, sizeof vl);
            k += sizeof vl;
            put_str(t, "=");
            if (vl >= 64) {
                snprintf(num, sizeof num, "#%zu", vl);
                put_str(t, num);
            } else {
                put(t, a + k, vl);
            }
            k += vl;
            put_str(t, "]");
        }
        put_str(t, " {");
        if (m->blen >= 64) {
            snprintf(num, sizeof num, "#%zu", m->blen);
            put_str(t, num);
        } else {
            put(t, a + m->b, m->blen);
        }
        put_str(t, m->keep ? "} keep\n" : "} close\n");
    }
}

/* the reads: 0 whole, 1 a byte at a time, 2 + c cut in two after c bytes */
static int reads(size_t mode, size_t n, const size_t *all, const size_t **cuts)
{
    *cuts = all;
    if (mode == 0) return 0;
    if (mode == 1) return n > 1 ? (int)n - 1 : 0;
    *cuts = &all[mode - 3]; /* all[k] = k + 1 */
    return 1;
}

static size_t *every_offset(size_t n)
{
    size_t *all = malloc((n + 1) * sizeof *all);
    if (!all) exit(1);
    for (size_t k = 0; k <= n; k++)
        all[k] = k + 1;
    return all;
}

static void show(const char *in, size_t n)
{
    text t = {.n = 0};
    put(&t, in, n > 600 ? 600 : n);
    fprintf(stderr, "  input: %s%s\n", t.s, n > 600 ? "..." : "");
}

/* ---- accepted ---- */

typedef struct {
    const char *name;
    const char *in;
    const char *want;     /* render()'s text */
    int extra;            /* bytes after the last request (one that closes the connection) */
    int ll;               /* requests llhttp must agree on (fewer: not comparable after them) */
    size_t len, head_max; /* 0: strlen(in), HEAD */
} accept_case;

#define A(...)                                                                                     \
    {                                                                                              \
        __VA_ARGS__, 0, 0                                                                          \
    }

static const accept_case accepts[] = {
    A("GET without a body",
      "GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-x\r\n\r\n",
      "GET /v1/models [Host=gw] [Authorization=Bearer sk-x] {} keep\n", 0, 1),
    A("POST with a Content-Length",
      "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: "
      "application/json\r\nContent-Length: 13\r\n\r\n{\"model\":\"m\"}",
      "POST /v1/chat/completions [Host=gw] [Content-Type=application/json] [Content-Length=13] "
      "{{\"model\":\"m\"}} keep\n",
      0, 1),
    A("Content-Length 0 and leading zeros",
      "POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\nPUT /b HTTP/1.1\r\ncontent-length: "
      "003\r\n\r\nxyz",
      "POST /a [Content-Length=0] {} keep\nPUT /b [content-length=003] {xyz} keep\n", 0, 2),
    A("chunked with extensions",
      "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=d;e\r\nhello\r\n6;q=\"x "
      "y;z\";r=s\r\n world\r\n0;last\r\n\r\n",
      "POST /up [Transfer-Encoding=chunked] {hello world} keep\n", 0, 1),
    A("chunked: empty extension values",
      "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;a=;b=\r\nhi\r\n0;z=\r\n\r\n",
      "POST /up [Transfer-Encoding=chunked] {hi} keep\n", 0, 1),
    /* (llhttp refuses any backslash in a quoted value: compared on none, h1p_reqdiff.h) */
    A("chunked: quoted values with escapes",
      "POST /up HTTP/1.1\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3;a=\"q\\\"\\\\x\";b=\"\\\t\xe9\"\r\n"
      "abc\r\n0\r\n\r\n",
      "POST /up [Transfer-Encoding=chunked] {abc} keep\n", 0, 0),
    A("chunked: trailers",
      "POST /up HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n3\r\nabc\r\nA\r\n0123456789\r\n0\r\n"
      "X-Trace: 1\r\nX-B:\t2 \r\n\r\n",
      "POST /up [transfer-encoding=CHUNKED] {abc0123456789} keep\n", 0, 1),
    A("chunked: the coding in a list",
      "POST /up HTTP/1.1\r\nTransfer-Encoding: , chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n",
      "POST /up [Transfer-Encoding=, chunked] {x} keep\n", 0, 1),
    A("pipelined",
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /c "
      "HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\nDELETE /d "
      "HTTP/1.1\r\n\r\n",
      "GET /a [Host=h] {} keep\nPOST /b [Content-Length=3] {abc} keep\nPOST /c "
      "[Transfer-Encoding=chunked] {de} keep\nDELETE /d {} keep\n",
      0, 4),
    A("HTTP/1.0 closes", "GET /x HTTP/1.0\r\nHost: h\r\n\r\nGET /never HTTP/1.1\r\n\r\n",
      "GET /x [Host=h] {} close\n", 23, 1),
    A("HTTP/1.0 keep-alive",
      "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nPOST /y HTTP/1.0\r\nConnection: "
      "keep-alive\r\nContent-Length: 1\r\n\r\nzGET /z HTTP/1.0\r\n\r\n",
      "GET /x [Connection=Keep-Alive] {} keep\nPOST /y [Connection=keep-alive] [Content-Length=1] "
      "{z} keep\nGET /z {} close\n",
      0, 3),
    A("Connection: close",
      "POST /x HTTP/1.1\r\nConnection: te, Close\r\nContent-Length: 2\r\n\r\nokGET / "
      "HTTP/1.1\r\n\r\n",
      "POST /x [Connection=te, Close] [Content-Length=2] {ok} close\n", 18, 1),
    A("absolute form",
      "GET http://example.com/v1/models?x=1 HTTP/1.1\r\nHost: other\r\n\r\nGET "
      "HTTPS://h:8443/p HTTP/1.1\r\n\r\n",
      "GET http://example.com/v1/models?x=1 [Host=other] {} keep\nGET HTTPS://h:8443/p {} keep\n",
      0, 2),
    A("asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS * [Host=h] {} keep\n", 0, 1),
    A("empty lines first",
      "\r\n\r\nGET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET /2 "
      "HTTP/1.1\r\n\r\n",
      "GET / {} keep\nPOST / [Content-Length=1] {x} keep\nGET /2 {} keep\n", 0, 3),
    A("Upgrade ignored",
      "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /next "
      "HTTP/1.1\r\n\r\n",
      "GET /ws [Upgrade=websocket] [Connection=Upgrade] {} keep\nGET /next {} keep\n", 0, 1),
    A("Upgrade with a body",
      "POST /u HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade, HTTP2-Settings\r\nContent-Length: "
      "2\r\n\r\nabPOST /v HTTP/1.1\r\n\r\n",
      "POST /u [Upgrade=h2c] [Connection=upgrade, HTTP2-Settings] [Content-Length=2] {ab} keep\n"
      "POST /v {} keep\n",
      0, 1),
    A("methods llhttp does not know",
      "FOO /x HTTP/1.1\r\n\r\nABCDEFGHIJKLMNOPQRSTUVWX / HTTP/1.1\r\n\r\n",
      "FOO /x {} keep\nABCDEFGHIJKLMNOPQRSTUVWX / {} keep\n", 0, 0),
    A("a known method, then one it does not know",
      "PATCH /p HTTP/1.1\r\nContent-Length: 1\r\n\r\n1M-SEARCH * HTTP/1.1\r\n\r\nget / "
      "HTTP/1.1\r\n\r\n",
      "PATCH /p [Content-Length=1] {1} keep\nM-SEARCH * {} keep\nget / {} keep\n", 0, 2),
    /* Known differences, decided (docs/PERFORMANCE.md, round 11): a method llhttp 8.1 does not
     * take as HTTP's reaches the router, which answers it 404 or 405; a quoted extension value
     * may hold quoted-pairs (RFC 9110 5.6.4; llhttp refuses any backslash there) */
    A("a method llhttp keeps for RTSP", "PLAY /x HTTP/1.1\r\n\r\n", "PLAY /x {} keep\n", 0, 0),
    A("PRI in HTTP/1.1", "PRI / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
      "PRI / {} keep\nGET / {} keep\n", 0, 0),
    A("values trimmed, tabs and obs-text",
      "GET / HTTP/1.1\r\nX-A: \t v\xc3\xa9 \t x \t\r\nX-Empty:\r\nX-Sp:   \r\nX-Odd: "
      "\"(),/:;<=>?@[\\]{}\x7e\x80\xff\r\n\r\n",
      "GET / [X-A=v\\xc3\\xa9 \\x09 x] [X-Empty=] [X-Sp=] "
      "[X-Odd=\"(),/:;<=>?@[\\x5c]{}~\\x80\\xff] {} keep\n",
      0, 1),
    A("HEAD, and a target of many kinds of bytes",
      "HEAD /!$&'()*+,;=:@-._~%20?a=\"<>[\\]^`{|}#f HTTP/1.1\r\n\r\n",
      "HEAD /!$&'()*+,;=:@-._~%20?a=\"<>[\\x5c]^`{|}#f {} keep\n", 0, 1),
    A("chunked in HTTP/1.0",
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n",
      "POST / [Transfer-Encoding=chunked] {q} close\n", 0, 1),
};

/* The case whole, a byte at a time and cut in two at every offset, each with and without a
 * pause after the heads: the same requests every time; then against llhttp. */
static void check_accept(const accept_case *c)
{
    static h1r_side s;
    size_t n = c->len ? c->len : strlen(c->in), hm = c->head_max ? c->head_max : HEAD;
    size_t *all = every_offset(n);
    int fails = 0;

    for (size_t mode = 0; mode < n + 2 && fails < 3; mode++) {
        if (mode == 2) continue; /* (2 + 0: no cut, as mode 0) */
        for (int pause = 0; pause <= 1; pause++) {
            const size_t *cuts;
            int ncut = reads(mode, n, all, &cuts);
            h1p_where w;
            text t;
            h1r_reset(&s, pause);
            h1p_result r = h1r_ours(c->in, n, hm, cuts, ncut, &s, &w);
            render(&s, &t);
            size_t end = s.nmsg ? s.msg[s.nmsg - 1].end : 0;
            if (r != H1P_DONE || s.bug || strcmp(t.s, c->want) != 0 ||
                end != n - (size_t)c->extra) {
                fprintf(stderr,
                        "%s (reads %zu, pause %d): r=%d where=%d end=%zu bug=%s\n   got: %s",
                        c->name, mode, pause, r, w, end, s.bug ? s.bug : "-", t.s);
                fprintf(stderr, "  want: %s", c->want);
                fails++;
            }
        }
    }
    CHECK(fails == 0);
    free(all);
    size_t cuts[2] = {n / 3, 2 * n / 3};
    const char *why = h1r_diff(c->in, n, hm, cuts, 2);
    if (why) fprintf(stderr, "%s: llhttp differs: %s\n", c->name, why);
    CHECK(why == NULL);
    if (h1r_compared != c->ll)
        fprintf(stderr, "%s: llhttp compared on %d requests, not %d\n", c->name, h1r_compared,
                c->ll);
    CHECK(h1r_compared == c->ll);
}

static void test_accepts(void)
{
    for (size_t i = 0; i < sizeof accepts / sizeof accepts[0]; i++)
        check_accept(&accepts[i]);
}

/* ---- refused ---- */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    h1p_result want;
    h1p_where where;
    int done; /* requests done before it */
    size_t head_max;
} refuse_case;

#define R(name, lit, want, where)                                                                  \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, want, where, 0, 0                                              \
    }
/* (after `done` requests accepted) */
#define R2(name, lit, want, where, done)                                                           \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, want, where, done, 0                                           \
    }
#define M H1P_MALFORMED
#define TE "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

static const refuse_case refuses[] = {
    /* (accepted by the first version, read otherwise by llhttp: refused since) */
    R("absolute form: a byte llhttp refuses in the authority", "GET http://a{b/x HTTP/1.1\r\n\r\n",
      M, H1P_IN_START),
    R("absolute form: two '@' in the authority", "GET http://a@b@c/x HTTP/1.1\r\n\r\n", M,
      H1P_IN_START),
    R("absolute form: an empty authority", "GET http:///x HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("HTTP/1.0: a tab after keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\t\r\n\r\n", M,
      H1P_IN_HEADER),
    R("HTTP/1.1: a tab after close", "GET / HTTP/1.1\r\nConnection: close\t\r\n\r\n", M,
      H1P_IN_HEADER),
    R("a tab inside Connection", "GET / HTTP/1.1\r\nConnection: keep-alive,\tclose\r\n\r\n", M,
      H1P_IN_HEADER),
    R("CONNECT with an origin-form target and a body",
      "CONNECT /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", M, H1P_IN_START),
    R("a method with a bad byte", "GE(T / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a method with a slash", "GET/ / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a method too long", "ABCDEFGHIJKLMNOPQRSTUVWXY / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("no method", " / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("two spaces", "GET  / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a tab for a space", "GET\t/ HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a target not starting with /", "GET x/y HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("the authority form (CONNECT)", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("http:// and nothing", "GET http:// HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("another scheme", "GET ftp://h/x HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("an asterisk and more", "OPTIONS *x HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a control byte in the target", "GET /a\x01z HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("DEL in the target", "GET /a\x7fz HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("obs-text in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a space in the target", "GET /a b HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a tab in the target", "GET /a\tb HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("NUL in the target", "GET /a\0b HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("NUL in the method", "G\0T / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("NUL first", "\0GET / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", M, H1P_IN_START),
    R("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", M, H1P_IN_START),
    R("lowercase http", "GET / http/1.1\r\n\r\n", M, H1P_IN_START),
    R("no version (HTTP/0.9)", "GET /\r\n\r\n", M, H1P_IN_START),
    R("a space after the version", "GET / HTTP/1.1 \r\n\r\n", M, H1P_IN_START),
    R("HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", M, H1P_IN_START),
    R("a bare LF ends the request line", "GET / HTTP/1.1\n\r\n", M, H1P_IN_START),
    R("a bare LF first", "\nGET / HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a CR alone in the request line", "GET /\r HTTP/1.1\r\n\r\n", M, H1P_IN_START),
    R("a bare LF ends a field", "GET / HTTP/1.1\r\nA: b\n\r\n", M, H1P_IN_HEADER),
    R("a bare LF ends the head", "GET / HTTP/1.1\r\nA: b\r\n\n", M, H1P_IN_HEADER),
    R("obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", M, H1P_IN_HEADER),
    R("a space before the colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", M, H1P_IN_HEADER),
    R("no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", M, H1P_IN_HEADER),
    R("an empty name", "GET / HTTP/1.1\r\n: h\r\n\r\n", M, H1P_IN_HEADER),
    R("a name with a slash", "GET / HTTP/1.1\r\nA/B: h\r\n\r\n", M, H1P_IN_HEADER),
    R("a control byte in a value", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", M, H1P_IN_HEADER),
    R("DEL in a value", "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", M, H1P_IN_HEADER),
    R("NUL in a value", "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", M, H1P_IN_HEADER),
    R("a CR inside a value", "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", M, H1P_IN_HEADER),
    R("Content-Length and Transfer-Encoding",
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", M,
      H1P_IN_HEADER),
    R("Transfer-Encoding and Content-Length",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", M,
      H1P_IN_HEADER),
    R("two Content-Lengths", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      M, H1P_IN_HEADER),
    R("a Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", M,
      H1P_IN_HEADER),
    R("a Content-Length with a sign", "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", M,
      H1P_IN_HEADER),
    R("a negative Content-Length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\nx", M,
      H1P_IN_HEADER),
    R("a Content-Length not a number", "POST / HTTP/1.1\r\nContent-Length: 1a\r\n\r\nx", M,
      H1P_IN_HEADER),
    R("a Content-Length in hex", "POST / HTTP/1.1\r\nContent-Length: 0x1\r\n\r\nx", M,
      H1P_IN_HEADER),
    R("an empty Content-Length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", M, H1P_IN_HEADER),
    R("a Content-Length of 19 digits",
      "POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n", M, H1P_IN_HEADER),
    R("Transfer-Encoding: gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx", M,
      H1P_IN_HEADER),
    R("Transfer-Encoding: identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\nxx", M,
      H1P_IN_HEADER),
    R("Transfer-Encoding: chunked, gzip",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", M, H1P_IN_HEADER),
    R("Transfer-Encoding: gzip, chunked",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", M, H1P_IN_HEADER),
    R("Transfer-Encoding in two fields",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      M, H1P_IN_HEADER),
    R("chunked twice",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      M, H1P_IN_HEADER),
    R("an empty coding after chunked",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", M, H1P_IN_HEADER),
    R("an empty Transfer-Encoding", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n", M,
      H1P_IN_HEADER),
    R("a tab after chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", M,
      H1P_IN_HEADER),
    R("a chunk size not hex", TE "x\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("an empty chunk size", TE "\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a negative chunk size", TE "-1\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a chunk size of 16 hex digits", TE "0000000000000001\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a space after the chunk size", TE "1 \r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a bare LF after the chunk size", TE "1\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a CR and no LF after the chunk size", TE "1\rxx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a space before an extension", TE "1 ;a\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a space in an extension", TE "1;a =b\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a space after an extension's =", TE "1;a= b\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("an unterminated quote", TE "1;a=\"b\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a bad escape", TE "1;a=\"\\\x01\"\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("an escape at the line's end", TE "1;a=\"\\\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a control byte quoted", TE "1;a=\"\x01\"\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("bytes after a quoted value", TE "1;a=\"b\"c\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("';' and no name", TE "1;\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("';;'", TE "1;;a\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("'=' and no name", TE "1;=b\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a name not a token", TE "1;a@b\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("a value not a token", TE "1;a=b@c\r\nx\r\n0\r\n\r\n", M, H1P_IN_BODY),
    R("no CRLF after chunk data", TE "5\r\nhelloXY0\r\n\r\n", M, H1P_IN_BODY),
    R("a CR alone after chunk data", TE "5\r\nhello\rX0\r\n\r\n", M, H1P_IN_BODY),
    R("a bare LF after chunk data", TE "5\r\nhello\n0\r\n\r\n", M, H1P_IN_BODY),
    R("Content-Length in the trailers", TE "0\r\nContent-Length: 1\r\n\r\n", M, H1P_IN_BODY),
    R("Transfer-Encoding in the trailers", TE "0\r\nTransfer-Encoding: chunked\r\n\r\n", M,
      H1P_IN_BODY),
    R("Connection in the trailers", TE "0\r\nconnection: close\r\n\r\n", M, H1P_IN_BODY),
    R("a trailer without a colon", TE "0\r\nX\r\n\r\n", M, H1P_IN_BODY),
    R("an obs-fold trailer", TE "0\r\nX: a\r\n b\r\n\r\n", M, H1P_IN_BODY),
    R("a bare LF ends the trailers", TE "0\r\n\n", M, H1P_IN_BODY),
    R2("what follows an upgrade is a request too",
       "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n\x00\x01"
       "binary\r\n\r\n",
       M, H1P_IN_START, 1),
    R2("a bad second request", "GET / HTTP/1.1\r\n\r\nGET /\x01 HTTP/1.1\r\n\r\n", M, H1P_IN_START,
       1),
    R2("a bad head after a body",
       "POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nA B\r\n\r\n", M,
       H1P_IN_HEADER, 1),
};

/* The case whole, a byte at a time and cut in two at every offset: the same result and part,
 * the requests before it done; and it sticks. */
static void check_refuse(const refuse_case *c)
{
    static h1r_side s;
    size_t n = c->len, hm = c->head_max ? c->head_max : HEAD;
    size_t *all = every_offset(n);
    int fails = 0;

    for (size_t mode = 0; mode < n + 2 && fails < 3; mode++) {
        if (mode == 2) continue;
        const size_t *cuts;
        int ncut = reads(mode, n, all, &cuts);
        h1p_where w;
        h1r_reset(&s, mode & 1);
        h1p_result r = h1r_ours(c->in, n, hm, cuts, ncut, &s, &w);
        if (r != c->want || w != c->where || s.nmsg != c->done || s.bug) {
            fprintf(stderr, "%s (reads %zu): r=%d where=%d done=%d bug=%s; want r=%d where=%d\n",
                    c->name, mode, r, w, s.nmsg, s.bug ? s.bug : "-", c->want, c->where);
            show(c->in, n);
            fails++;
        }
    }
    free(all);
    CHECK(fails == 0);
    if (c->done == 0) {
        /* sticky: nothing more is taken, whatever comes */
        h1p p;
        size_t used = 1;
        memset(&p, 0, sizeof p);
        h1r_reset(&s, false);
        h1r_begin(&s);
        h1p_init_request(&p, &h1r_cb, &s, hm);
        CHECK_EQ_INT(h1p_execute(&p, c->in, n, &used), c->want);
        CHECK(h1p_execute(&p, "GET / HTTP/1.1\r\n\r\n", 18, &used) == c->want && used == 0);
        CHECK(h1p_error_where(&p) == c->where);
        h1p_free(&p);
    }
    size_t cuts[1] = {n / 2};
    const char *why = h1r_diff(c->in, n, hm, cuts, 1);
    if (why) fprintf(stderr, "%s: llhttp differs: %s\n", c->name, why);
    CHECK(why == NULL);
}

static void test_refuses(void)
{
    CHECK(sizeof refuses / sizeof refuses[0] >= 40);
    for (size_t i = 0; i < sizeof refuses / sizeof refuses[0]; i++)
        check_refuse(&refuses[i]);
}

/* ---- the caps ---- */

/* "GET / HTTP/1.1\r\nX: aaa...\r\n\r\n" of exactly `total` bytes after `lead` empty lines */
static size_t head_of(char *b, size_t lead, size_t total)
{
    size_t n = 0;
    for (size_t k = 0; k < lead; k++, n += 2)
        memcpy(b + n, "\r\n", 2);
    n += (size_t)sprintf(b + n, "GET / HTTP/1.1\r\nX: ");
    size_t fill = total - n - 4;
    memset(b + n, 'a', fill);
    n += fill;
    memcpy(b + n, "\r\n\r\n", 4);
    return n + 4;
}

static void test_head_cap(void)
{
    static char big[70000];
    char want[64];
    accept_case a = {.name = "a head of head_max bytes", .in = big, .ll = 1, .head_max = 1024};
    refuse_case r = {.name = "a head of head_max + 1 bytes",
                     .in = big,
                     .want = H1P_TOO_LARGE,
                     .where = H1P_IN_HEADER,
                     .head_max = 1024};

    /* every byte counts: the empty lines before it, the request line, the fields, the CRLFs */
    for (size_t lead = 0; lead <= 3; lead += 3) {
        a.len = head_of(big, lead, 1024);
        snprintf(want, sizeof want, "GET / [X=#%zu] {} keep\n", 1024 - 4 - lead * 2 - 19);
        a.want = want;
        check_accept(&a);
        r.len = head_of(big, lead, 1025);
        check_refuse(&r);
    }
    /* the request line alone past the cap: refused there */
    r.name = "a request line past head_max";
    r.where = H1P_IN_START;
    r.len = (size_t)sprintf(big, "\r\n\r\nGET /");
    memset(big + r.len, 'p', 1024);
    r.len += 1024;
    r.len += (size_t)sprintf(big + r.len, " HTTP/1.1\r\n\r\n");
    check_refuse(&r);
    /* empty lines alone past it */
    r.name = "empty lines past head_max";
    for (r.len = 0; r.len < 1026; r.len += 2)
        memcpy(big + r.len, "\r\n", 2);
    check_refuse(&r);
    /* the server's cap, 64 KiB, whole and in reads of a few sizes (not every cut: its time) */
    static h1r_side s;
    for (int over = 0; over <= 1; over++) {
        size_t n = head_of(big, 0, 65536 + (size_t)over);
        for (size_t step = 0; step <= 1000; step += 333) {
            size_t cuts[256];
            int ncut = 0;
            for (size_t at = step; step && at < n && ncut < 256; at += step * 7)
                cuts[ncut++] = at;
            h1p_where w;
            h1r_reset(&s, false);
            h1p_result res = h1r_ours(big, n, 65536, cuts, ncut, &s, &w);
            CHECK_EQ_INT(res, over ? H1P_TOO_LARGE : H1P_DONE);
            CHECK(s.bug == NULL);
        }
    }
    /* a line that never ends costs no more than the cap */
    h1p p;
    size_t used;
    memset(&p, 0, sizeof p);
    h1p_init_request(&p, &h1r_cb, &s, 8192);
    h1r_reset(&s, false);
    h1r_begin(&s);
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    h1p_result res = H1P_MORE;
    for (size_t at = 0; at < sizeof big && res == H1P_MORE; at += 777)
        res = h1p_execute(&p, big + at, sizeof big - at < 777 ? sizeof big - at : 777, &used);
    CHECK_EQ_INT(res, H1P_TOO_LARGE);
    CHECK(h1p_error_where(&p) == H1P_IN_HEADER);
    CHECK(p.line.cap <= 8192 + 1);
    /* the next request on the connection does not keep the grown buffer */
    h1p_init_request(&p, &h1r_cb, &s, 8192);
    CHECK(p.line.data == NULL && p.line.cap == 0);
    h1p_free(&p);
}

/* n chunks of one byte, each with ";" and `each - 1` bytes of an extension name, the first with
 * `first_more` bytes more, then "0" and an empty trailer */
static size_t chunks_with_exts(char *b, int n, size_t each, size_t first_more)
{
    size_t len = (size_t)sprintf(b, TE);
    for (int k = 0; k < n; k++) {
        size_t e = each - 1 + (k == 0 ? first_more : 0);
        b[len++] = '1';
        b[len++] = ';';
        memset(b + len, 'e', e);
        len += e;
        memcpy(b + len, "\r\nx\r\n", 5);
        len += 5;
    }
    memcpy(b + len, "0\r\n\r\n", 5);
    return len + 5;
}

static void test_chunk_caps(void)
{
    static char big[3 * H1P_REQ_EXT_MAX];
    accept_case a = {.name = "extensions of H1P_REQ_EXT_MAX bytes", .in = big, .ll = 1};
    refuse_case r = {.name = "extensions of H1P_REQ_EXT_MAX + 1 bytes over many chunks",
                     .in = big,
                     .want = H1P_TOO_LARGE,
                     .where = H1P_IN_BODY};

    /* 64 chunks of 64 extension bytes: every byte after the digits of every size line counts */
    a.len = chunks_with_exts(big, 64, H1P_REQ_EXT_MAX / 64, 0);
    a.want = "POST / [Transfer-Encoding=chunked] {#64} keep\n";
    check_accept(&a);
    r.len = chunks_with_exts(big, 64, H1P_REQ_EXT_MAX / 64, 1);
    check_refuse(&r);
    /* the last chunk's count too */
    r.name = "extensions over H1P_REQ_EXT_MAX on the last chunk";
    r.len = chunks_with_exts(big, 64, H1P_REQ_EXT_MAX / 64, 0) - 4;
    memcpy(big + r.len, ";z\r\n\r\n", 7);
    r.len += 6;
    check_refuse(&r);
    /* each request of a connection has its own count */
    size_t n = chunks_with_exts(big, 64, H1P_REQ_EXT_MAX / 64, 0);
    memcpy(big + n, big, n);
    a.name = "two requests of H1P_REQ_EXT_MAX extension bytes each";
    a.len = 2 * n;
    a.ll = 2;
    a.want = "POST / [Transfer-Encoding=chunked] {#64} keep\n"
             "POST / [Transfer-Encoding=chunked] {#64} keep\n";
    check_accept(&a);

    /* a size line of H1P_CHUNK_LINE_MAX bytes with its CRLF, and one more (its extension bytes
     * are below H1P_REQ_EXT_MAX: the line's cap is the one met) */
    for (int over = 0; over <= 1; over++) {
        size_t len = (size_t)sprintf(big, TE "1;");
        size_t ext = H1P_CHUNK_LINE_MAX - 4 + (size_t)over;
        memset(big + len, 'l', ext);
        len += ext;
        len += (size_t)sprintf(big + len, "\r\nx\r\n0\r\n\r\n");
        if (over) {
            r.name = "a size line of H1P_CHUNK_LINE_MAX + 1 bytes";
            r.in = big;
            r.len = len;
            check_refuse(&r);
        } else {
            a.name = "a size line of H1P_CHUNK_LINE_MAX bytes";
            a.len = len;
            a.ll = 1;
            a.want = "POST / [Transfer-Encoding=chunked] {x} keep\n";
            check_accept(&a);
        }
    }
}

/* ---- the pause ---- */

typedef struct {
    int heads, bodies, head_rc, request_rc, header_rc, body_rc;
    char body[64];
    size_t blen;
} cbrec;

static int c_request(void *ud, const char *m, size_t ml, const char *t, size_t tl)
{
    return ((cbrec *)ud)->request_rc;
}

static int c_header(void *ud, const char *n, size_t nl, const char *v, size_t vl)
{
    return ((cbrec *)ud)->header_rc;
}

static int c_head(void *ud, int status)
{
    cbrec *c = ud;
    c->heads++;
    return c->head_rc;
}

static int c_body(void *ud, const char *p, size_t n)
{
    cbrec *c = ud;
    c->bodies++;
    if (c->blen + n <= sizeof c->body) memcpy(c->body + c->blen, p, n);
    c->blen += n;
    return c->body_rc;
}

static const h1p_callbacks ccb = {
    .on_request = c_request, .on_header = c_header, .on_head = c_head, .on_body = c_body};

static void test_pause(void)
{
    static const char *const bodies[] = {
        "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        "POST /p HTTP/1.1\r\nTransfer-Encoding: "
        "chunked\r\n\r\n2;x=y\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    };
    h1p p;
    cbrec c;
    size_t used;
    memset(&p, 0, sizeof p);
    for (int k = 0; k < 2; k++) {
        const char *in = bodies[k];
        size_t n = strlen(in), head = (size_t)(strstr(in, "\r\n\r\n") - in) + 4;
        /* the head and the body in one read: paused at the head's end, nothing of the body read */
        memset(&c, 0, sizeof c);
        c.head_rc = H1P_PAUSE;
        h1p_init_request(&p, &ccb, &c, HEAD);
        CHECK_EQ_INT(h1p_execute(&p, in, n, &used), H1P_PAUSED);
        CHECK_EQ_INT(used, head);
        CHECK(c.heads == 1 && c.bodies == 0);
        /* the rest on the next call */
        CHECK_EQ_INT(h1p_execute(&p, in + used, n - used, &used), H1P_DONE);
        CHECK_EQ_INT(used, n - head);
        CHECK(c.heads == 1 && c.blen == 5 && memcmp(c.body, "hello", 5) == 0);
        CHECK(h1p_keep_alive(&p));
        /* the head alone in a read: all of it taken, paused */
        memset(&c, 0, sizeof c);
        c.head_rc = H1P_PAUSE;
        h1p_init_request(&p, &ccb, &c, HEAD);
        CHECK_EQ_INT(h1p_execute(&p, in, head - 1, &used), H1P_MORE);
        CHECK_EQ_INT(h1p_execute(&p, in + head - 1, 1, &used), H1P_PAUSED);
        CHECK_EQ_INT(used, 1);
        CHECK_EQ_INT(h1p_execute(&p, in + head, n - head, &used), H1P_DONE);
        CHECK(c.blen == 5 && c.heads == 1);
    }
    /* no body: done, whatever on_head said */
    static const char *const bare[] = {
        "GET /g HTTP/1.1\r\n\r\n",
        "POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "POST /p HTTP/1.1\r\nContent-Length: 000\r\n\r\n",
    };
    for (int k = 0; k < 3; k++) {
        for (int rc = 0; rc <= H1P_PAUSE; rc++) {
            memset(&c, 0, sizeof c);
            c.head_rc = rc;
            h1p_init_request(&p, &ccb, &c, HEAD);
            size_t n = strlen(bare[k]);
            char in[128];
            memcpy(in, bare[k], n);
            memcpy(in + n, "GET /next", 9); /* (the next request's first bytes) */
            CHECK_EQ_INT(h1p_execute(&p, in, n + 9, &used), H1P_DONE);
            CHECK_EQ_INT(used, n);
            CHECK(c.heads == 1 && c.bodies == 0);
        }
    }
    /* pipelined: the first done, then the second pauses at its head */
    const char *two = "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET";
    memset(&c, 0, sizeof c);
    c.head_rc = H1P_PAUSE;
    h1p_init_request(&p, &ccb, &c, HEAD);
    CHECK_EQ_INT(h1p_execute(&p, two, strlen(two), &used), H1P_DONE);
    CHECK_EQ_INT(used, 19);
    size_t at = used;
    h1p_init_request(&p, &ccb, &c, HEAD);
    CHECK_EQ_INT(h1p_execute(&p, two + at, strlen(two) - at, &used), H1P_PAUSED);
    CHECK_EQ_INT(used, 38);
    at += used;
    CHECK_EQ_INT(h1p_execute(&p, two + at, strlen(two) - at, &used), H1P_DONE);
    CHECK_EQ_INT(used, 2);
    CHECK(c.heads == 2 && c.blen == 2 && memcmp(c.body, "ok", 2) == 0);
    /* after DONE, nothing more until h1p_init_request */
    CHECK_EQ_INT(h1p_execute(&p, "GET", 3, &used), H1P_DONE);
    CHECK_EQ_INT(used, 0);
    h1p_free(&p);
}

/* ---- the callbacks ---- */

static void test_callbacks(void)
{
    const char *in = "POST /c HTTP/1.1\r\nA: b\r\nContent-Length: 3\r\n\r\nabc";
    const char *ch = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    h1p p;
    cbrec c;
    size_t used;
    struct {
        int *rc;
        int value;
        const char *in;
        h1p_where where;
    } stops[] = {
        {&c.request_rc, 1, in, H1P_IN_START}, {&c.request_rc, -1, in, H1P_IN_START},
        {&c.header_rc, 1, in, H1P_IN_HEADER}, {&c.head_rc, 2, in, H1P_IN_HEADER},
        {&c.head_rc, -1, in, H1P_IN_HEADER},  {&c.body_rc, 1, in, H1P_IN_BODY},
        {&c.body_rc, 7, ch, H1P_IN_BODY},
    };
    memset(&p, 0, sizeof p);
    for (size_t k = 0; k < sizeof stops / sizeof stops[0]; k++) {
        for (size_t step = 0; step <= 1; step++) {
            memset(&c, 0, sizeof c);
            *stops[k].rc = stops[k].value;
            h1p_init_request(&p, &ccb, &c, HEAD);
            size_t n = strlen(stops[k].in), at = 0;
            h1p_result r = H1P_MORE;
            while (r == H1P_MORE && at < n) {
                r = h1p_execute(&p, stops[k].in + at, step ? 1 : n - at, &used);
                at += used;
            }
            if (r != H1P_ABORTED) fprintf(stderr, "stop %zu (step %zu): %d\n", k, step, r);
            CHECK_EQ_INT(r, H1P_ABORTED);
            /* (the part it was in: the result's place for a server's answer) */
            CHECK_EQ_INT(h1p_error_where(&p), stops[k].where);
            CHECK_EQ_INT(h1p_execute(&p, "x", 1, &used), H1P_ABORTED);
            CHECK_EQ_INT(used, 0);
        }
    }
    /* no callbacks at all: parsed the same */
    static const h1p_callbacks none;
    h1p_init_request(&p, &none, NULL, HEAD);
    CHECK_EQ_INT(h1p_execute(&p, ch, strlen(ch), &used), H1P_DONE);
    CHECK_EQ_INT(used, strlen(ch));
    /* a request after one that failed, on the same parser, starts clean */
    memset(&c, 0, sizeof c);
    h1p_init_request(&p, &ccb, &c, HEAD);
    CHECK_EQ_INT(h1p_execute(&p, in, strlen(in), &used), H1P_DONE);
    CHECK(c.blen == 3 && memcmp(c.body, "abc", 3) == 0 && c.heads == 1);
    h1p_free(&p);
}

/* ---- every byte at every place ---- */

static bool tchar(int b)
{
    return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
           (b && strchr("!#$%&'*+-.^_`|~", b));
}

/* Every byte value at each place of the method, the target, a field's name and its value of a
 * small request: accepted exactly when the rules say (a token's byte; the target's 0x21..0x7e
 * and its first '/'; a value's HTAB, SP, VCHAR, obs-text), reported as it was, and what is
 * accepted passes the check against llhttp. */
static void test_bytes(void)
{
    static h1r_side s;
    const char *tpl = "POST /abcdef HTTP/1.1\r\nX-Name: vvvvvvvv\r\nContent-Length: 0\r\n\r\n";
    size_t n = strlen(tpl);
    struct {
        const char *part;
        size_t at, len;
    } parts[] = {{"method", 0, 4}, {"target", 5, 7}, {"name", 23, 6}, {"value", 31, 8}};
    int wrong = 0, differ = 0, compared = 0;

    for (int k = 0; k < 4; k++) {
        for (size_t pos = parts[k].at; pos < parts[k].at + parts[k].len; pos++) {
            for (int b = 0; b < 256; b++) {
                char in[128];
                memcpy(in, tpl, n);
                in[pos] = (char)b;
                bool ok, first = pos == parts[k].at;
                if (k == 0)
                    ok = tchar(b);
                else if (k == 1)
                    ok = first ? b == '/' : b > 0x20 && b < 0x7f;
                else if (k == 2)
                    ok = tchar(b) || (b == ':' && !first);
                else
                    ok = b == '\t' || (b >= 0x20 && b != 0x7f);
                h1p_where w;
                h1r_reset(&s, false);
                h1p_result r = h1r_ours(in, n, HEAD, NULL, 0, &s, &w);
                bool seen = r == H1P_DONE && s.nmsg == 1;
                if (seen) {
                    /* reported as it is: the part with its byte (a value trimmed) */
                    const h1r_msg *m = &s.msg[0];
                    const char *a = s.arena.p;
                    size_t vl;
                    memcpy(&vl, a + m->h + sizeof(size_t) + 6, sizeof vl);
                    const char *v = a + m->h + 2 * sizeof(size_t) + 6;
                    bool edge = (b == ' ' || b == '\t') && (pos == 31 || pos == 38);
                    if ((k == 0 && (m->mlen != 4 || memcmp(a + m->m, in, 4) != 0)) ||
                        (k == 1 && (m->ulen != 7 || memcmp(a + m->u, in + 5, 7) != 0)) ||
                        (k == 3 && !edge && (vl != 8 || memcmp(v, in + 31, 8) != 0)) ||
                        (k == 3 && edge && vl != 7))
                        seen = false;
                }
                if (seen != ok) {
                    if (wrong++ < 5)
                        fprintf(stderr, "%s byte 0x%02x at %zu: r=%d, want %s\n", parts[k].part, b,
                                pos, r, ok ? "accepted" : "refused");
                }
                if (r == H1P_DONE) {
                    size_t cuts[2] = {pos, pos + 1};
                    const char *why = h1r_diff(in, n, HEAD, cuts, 2);
                    compared += h1r_compared;
                    if (why && differ++ < 5)
                        fprintf(stderr, "%s byte 0x%02x at %zu: %s\n", parts[k].part, b, pos, why);
                }
            }
        }
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(differ, 0);
    /* (methods llhttp does not know are not compared; everything else is) */
    CHECK(compared > 2500);
}

/* ---- mutations ---- */

static uint32_t rng = 20240611;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % (n ? n : 1);
}

/* Mutations of the accepted requests (a fixed seed: the same inputs every run), each checked
 * against llhttp and against itself cut into reads. */
static void test_mutations(void)
{
    static const char bytes[] = "\r\n :;,=\t\"\\0123456789aAfFzZ\x80\xff\x00-/*?#HTTP/1.01chunked"
                                "closekeep-aliveupgradeContent-LengthTransfer-EncodingCONNECT";
    static const char *const words[] = {"\r\n",
                                        "\r\n\r\n",
                                        "Content-Length: 1\r\n",
                                        "Transfer-Encoding: chunked\r\n",
                                        "Connection: close\r\n",
                                        "Connection: keep-alive\r\n",
                                        "Upgrade: x\r\nConnection: upgrade\r\n",
                                        "1;a=b\r\nx\r\n",
                                        ";e=\"q\"",
                                        "0\r\n\r\n",
                                        "GET / HTTP/1.1\r\n\r\n",
                                        " HTTP/1.0",
                                        "POST",
                                        "http://h/"};
    static const size_t heads[] = {HEAD, HEAD, HEAD, 64, 100};
    size_t nseed = 0;
    const char *seeds[64];
    char buf[1024];
    int bad = 0, runs = 0, compared = 0, shown = 0;

    for (size_t i = 0; i < sizeof accepts / sizeof accepts[0] && nseed < 64; i++)
        seeds[nseed++] = accepts[i].in;
    for (int round = 0; round < 6000; round++) {
        const char *sd = seeds[rnd((uint32_t)nseed)];
        size_t n = strlen(sd);
        memcpy(buf, sd, n);
        for (int m = 1 + (int)rnd(4); m > 0; m--) {
            size_t at = rnd((uint32_t)n);
            switch (rnd(6)) {
            case 0: /* replace */
                if (n) buf[at] = bytes[rnd(sizeof bytes - 1)];
                break;
            case 1: /* insert */
            case 2:
                if (n < sizeof buf - 1) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = bytes[rnd(sizeof bytes - 1)];
                    n++;
                }
                break;
            case 3: { /* insert a piece */
                const char *w = words[rnd(sizeof words / sizeof words[0])];
                size_t wl = strlen(w);
                if (n + wl < sizeof buf) {
                    memmove(buf + at + wl, buf + at, n - at);
                    memcpy(buf + at, w, wl);
                    n += wl;
                }
                break;
            }
            case 4: /* delete */
                if (n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            default: /* cut short */
                if (rnd(3) == 0) n = at;
            }
        }
        size_t cuts[6];
        int ncut = 0;
        for (int k = 0; k < 6 && n > 0; k++) {
            size_t c = rnd((uint32_t)n);
            if (ncut == 0 || c > cuts[ncut - 1]) cuts[ncut++] = c;
        }
        const char *why = h1r_diff(buf, n, heads[rnd(5)], cuts, ncut);
        runs++;
        compared += h1r_compared;
        if (why) {
            bad++;
            if (shown++ < 10) {
                fprintf(stderr, "differs (%s) on:\n", why);
                show(buf, n);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(runs == 6000);
    /* (not a run of refusals only) */
    if (compared < 1000) fprintf(stderr, "only %d requests compared with llhttp\n", compared);
    CHECK(compared >= 1000);
}

int main(void)
{
    RUN(test_accepts);
    RUN(test_refuses);
    RUN(test_head_cap);
    RUN(test_chunk_caps);
    RUN(test_pause);
    RUN(test_callbacks);
    RUN(test_bytes);
    RUN(test_mutations);
    TAP_DONE();
}
