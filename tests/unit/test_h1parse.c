/*
 * The upstream response parser (src/common/h1parse.c): what it accepts and how (status, body,
 * end, keep-alive) whole, a byte at a time and cut at every offset; what it refuses and with
 * which result; its caps; its callbacks; and a fixed run of mutations of real responses checked
 * against llhttp (tests/unit/h1p_diff.h, the same check as tests/fuzz/fuzz_h1parse.c).
 */
#include "tap.h"

#include "h1p_diff.h"

#include <stdint.h>

typedef struct {
    const char *name;
    const char *in;
    bool head_only;
    int status;
    const char *body;
    bool keep;
    int extra; /* bytes after the response */
} accept_case;

static const accept_case accepts[] = {
    {"content-length",
     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", false,
     200, "hello", true, 0},
    {"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", false, 200, "ok", true, 0},
    {"empty reason", "HTTP/1.1 404 \r\ncontent-length: 0\r\n\r\n", false, 404, "", true, 0},
    {"chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
     "chunked\r\n\r\n5\r\nhello\r\nA;x=1\r\n0123456789\r\n0\r\n\r\n",
     false, 200, "hello0123456789", true, 0},
    {"chunked, extensions and trailers",
     "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, CHUNKED\r\n\r\n3;a;b;c=d\r\nabc\r\n0\r\nX-T: "
     "1\r\nY: 2\r\n\r\n",
     false, 200, "abc", true, 0},
    {"until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", false, 200,
     "all of it", false, 0},
    {"a coding other than chunked: until close",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", false, 200, "zz", false, 0},
    {"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, 200, "x", false, 0},
    {"HTTP/1.0 keep-alive",
     "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", false, 200, "x",
     true, 0},
    {"Connection: close",
     "HTTP/1.1 503 Busy\r\nConnection: foo, close\r\nContent-Length: 1\r\n\r\nx", false, 503, "x",
     false, 0},
    {"bytes after the response", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxyz", false, 200, "x",
     true, 2},
    {"interim answers",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 "
     "Created\r\nContent-Length: 1\r\n\r\nx",
     false, 201, "x", true, 0},
    {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", true, 200, "", true, 0},
    {"HEAD, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 200, "", true,
     0},
    {"204", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false, 204, "", true, 0},
    {"304", "HTTP/1.1 304 Not Modified\r\n\r\n", false, 304, "", true, 0},
    {"values with tabs and obs-text",
     "HTTP/1.1 200 OK\r\nX-A:\t v\xc3\xa9 \t\r\nContent-Length: 0\r\n\r\n", false, 200, "", true,
     0},
};

typedef struct {
    char body[4096];
    size_t blen;
    int status;
    char ct[64];
    int heads;
} acc;

static int a_header(void *ud, const char *n, size_t nl, const char *v, size_t vn)
{
    acc *a = ud;
    if (nl == 12 && strncasecmp(n, "content-type", 12) == 0 && vn < sizeof a->ct) {
        memcpy(a->ct, v, vn);
        a->ct[vn] = '\0';
    }
    return 0;
}

static int a_head(void *ud, int status)
{
    acc *a = ud;
    a->status = status;
    a->heads++;
    return 0;
}

static int a_body(void *ud, const char *p, size_t n)
{
    acc *a = ud;
    if (a->blen + n > sizeof a->body) return -1;
    memcpy(a->body + a->blen, p, n);
    a->blen += n;
    return 0;
}

static const h1p_callbacks acb = {.on_header = a_header, .on_head = a_head, .on_body = a_body};

/* parses in: a first read of `first` bytes when not 0, then reads of `step` bytes (0: the rest) */
static h1p_result parse_cut(h1p *p, const char *in, size_t n, size_t first, size_t step, acc *a,
                            size_t *end)
{
    size_t at = 0, used;
    h1p_result r = H1P_MORE;
    memset(a, 0, sizeof *a);
    while (r == H1P_MORE && at < n) {
        size_t len = at == 0 && first ? first : step ? step : n - at;
        if (len > n - at) len = n - at;
        r = h1p_execute(p, in + at, len, &used);
        at += used;
    }
    if (r == H1P_MORE) r = h1p_finish(p);
    *end = at;
    return r;
}

static void test_accepts(void)
{
    h1p p;
    memset(&p, 0, sizeof p);
    for (size_t i = 0; i < sizeof accepts / sizeof accepts[0]; i++) {
        const accept_case *c = &accepts[i];
        size_t n = strlen(c->in), end;
        acc a;
        /* whole, a byte at a time, and cut in two at every offset */
        for (size_t cut = 0; cut < n; cut++) {
            for (int mode = 0; mode < 2; mode++) {
                if (mode == 1 && cut > 0) break;
                h1p_init(&p, &acb, &a, c->head_only);
                h1p_result r = parse_cut(&p, c->in, n, cut, mode == 1 ? 1 : 0, &a, &end);
                bool keep = h1p_keep_alive(&p);
                if (r != H1P_DONE || a.status != c->status || a.blen != strlen(c->body) ||
                    memcmp(a.body, c->body, a.blen) != 0 || end != n - (size_t)c->extra ||
                    keep != c->keep) {
                    fprintf(stderr,
                            "%s (cut %zu, mode %d): r=%d status=%d body=%.*s end=%zu keep=%d\n",
                            c->name, cut, mode, r, a.status, (int)a.blen, a.body, end, keep);
                    CHECK(0);
                    cut = n;
                    break;
                }
            }
        }
        const char *why = h1p_diff(c->in, n, c->head_only, NULL, 0);
        if (why) fprintf(stderr, "%s: llhttp differs: %s\n", c->name, why);
        CHECK(why == NULL);
    }
    h1p_free(&p);
}

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    h1p_result want;
} refuse_case;
#define R(name, lit, want)                                                                         \
    {                                                                                              \
        name, lit, sizeof(lit) - 1, want                                                           \
    }

static const refuse_case refuses[] = {
    R("bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", H1P_MALFORMED),
    R("bare LF in a header", "HTTP/1.1 200 OK\r\nA: b\nContent-Length: 0\r\n\r\n", H1P_MALFORMED),
    R("CR inside a value", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n", H1P_MALFORMED),
    R("NUL in a value", "HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", H1P_MALFORMED),
    R("obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\nContent-Length: 0\r\n\r\n", H1P_MALFORMED),
    R("space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", H1P_MALFORMED),
    R("no colon", "HTTP/1.1 200 OK\r\nContent-Length\r\n\r\n", H1P_MALFORMED),
    R("empty name", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", H1P_MALFORMED),
    R("Content-Length and Transfer-Encoding",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      H1P_MALFORMED),
    R("two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      H1P_MALFORMED),
    R("Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx", H1P_MALFORMED),
    R("Content-Length sign", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", H1P_MALFORMED),
    R("Content-Length empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", H1P_MALFORMED),
    R("Content-Length too long", "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
      H1P_MALFORMED),
    R("Content-Length and a tab", "HTTP/1.1 200 OK\r\nContent-Length: 1\t\r\n\r\nx", H1P_MALFORMED),
    R("chunked then another coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      H1P_MALFORMED),
    R("an empty coding after chunked",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", H1P_MALFORMED),
    R("a tab after chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
      H1P_MALFORMED),
    R("chunked twice",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      H1P_MALFORMED),
    R("HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", H1P_MALFORMED),
    R("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n", H1P_MALFORMED),
    R("lowercase http", "http/1.1 200 OK\r\n\r\n", H1P_MALFORMED),
    R("two spaces", "HTTP/1.1  200 OK\r\n\r\n", H1P_MALFORMED),
    R("status 099", "HTTP/1.1 099 OK\r\n\r\n", H1P_MALFORMED),
    R("status of four digits", "HTTP/1.1 2000 OK\r\n\r\n", H1P_MALFORMED),
    R("control byte in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n", H1P_MALFORMED),
    R("101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", H1P_MALFORMED),
    R("HTTP/1.0 interim", "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n", H1P_MALFORMED),
    R("interim with a length", "HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\nx",
      H1P_MALFORMED),
    R("204 with a body", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      H1P_MALFORMED),
    R("chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
      H1P_MALFORMED),
    R("chunk size too big",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", H1P_MALFORMED),
    R("chunk size with a space",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n", H1P_MALFORMED),
    R("no CRLF after chunk data",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXY0\r\n\r\n", H1P_MALFORMED),
    R("CR alone after chunk data",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n", H1P_MALFORMED),
    R("extension after a value",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a=b;c\r\nx\r\n", H1P_MALFORMED),
    R("framing in the trailers",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n",
      H1P_MALFORMED),
    R("closed in the header", "HTTP/1.1 200 OK\r\nContent-Len", H1P_MALFORMED),
    R("closed in the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", H1P_MALFORMED),
    R("closed between chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n",
      H1P_MALFORMED),
};

static void test_refuses(void)
{
    h1p p;
    acc a;
    memset(&p, 0, sizeof p);
    for (size_t i = 0; i < sizeof refuses / sizeof refuses[0]; i++) {
        const refuse_case *c = &refuses[i];
        size_t n = c->len, end;
        for (size_t step = 0; step <= 1; step++) {
            h1p_init(&p, &acb, &a, false);
            h1p_result r = parse_cut(&p, c->in, n, 0, step, &a, &end);
            if (r != c->want) {
                fprintf(stderr, "%s (step %zu): %d, want %d\n", c->name, step, r, c->want);
                CHECK(0);
            }
            /* sticky: nothing more is taken */
            size_t used = 1;
            CHECK(h1p_execute(&p, "x", 1, &used) == c->want && used == 0);
        }
    }
    h1p_free(&p);
}

/* Every byte value at every place of a value (the check goes eight bytes at a time): control
 * bytes but HTAB refused, obs-text taken. */
static void test_value_bytes(void)
{
    h1p p;
    acc a;
    size_t end;
    int wrong = 0;
    memset(&p, 0, sizeof p);
    for (int b = 0; b < 256; b++) {
        for (int at = 0; at < 24; at++) {
            char in[128];
            int n = sprintf(in, "HTTP/1.1 200 OK\r\nX: ");
            for (int k = 0; k < 24; k++)
                in[n + k] = k == at ? (char)b : 'v';
            n += 24;
            n += sprintf(in + n, "\r\nContent-Length: 0\r\n\r\n");
            bool ok = b == '\t' || (b >= 0x20 && b != 0x7f);
            /* (a CR or LF is a line end first: refused all the same) */
            h1p_init(&p, &acb, &a, false);
            h1p_result r = parse_cut(&p, in, (size_t)n, 0, 0, &a, &end);
            if ((r == H1P_DONE) != ok) wrong++;
        }
    }
    CHECK_EQ_INT(wrong, 0);
    h1p_free(&p);
}

/* The header block's cap holds whether the bytes come whole or a line at a time (the line
 * buffer), and a line that never ends costs no more than the cap. */
static void test_limits(void)
{
    static char big[H1P_HEAD_MAX + 256];
    h1p p;
    acc a;
    size_t end;
    memset(&p, 0, sizeof p);
    for (int over = 0; over <= 1; over++) {
        /* "HTTP/1.1 200 OK\r\n" (17) + X: ... + "Content-Length: 0\r\n" (19) + "\r\n" */
        size_t fill = H1P_HEAD_MAX - 17 - 19 - 2 - 5 + (size_t)over;
        size_t n = (size_t)sprintf(big, "HTTP/1.1 200 OK\r\nX: ");
        memset(big + n, 'a', fill);
        n += fill;
        n += (size_t)sprintf(big + n, "\r\nContent-Length: 0\r\n\r\n");
        for (size_t step = 0; step <= 1000; step += 1000) {
            h1p_init(&p, &acb, &a, false);
            h1p_result r = parse_cut(&p, big, n, 0, step, &a, &end);
            CHECK_EQ_INT(r, over ? H1P_TOO_LARGE : H1P_DONE);
        }
    }
    /* a line that never ends */
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    h1p_init(&p, &acb, &a, false);
    CHECK_EQ_INT(parse_cut(&p, big, sizeof big, 0, 777, &a, &end), H1P_TOO_LARGE);
    CHECK(p.line.cap <= H1P_HEAD_MAX && p.line.cap > 512);
    /* the next response on the connection does not keep the grown buffer */
    h1p_init(&p, &acb, &a, false);
    CHECK(p.line.data == NULL && p.line.cap == 0);
    /* a chunk line */
    size_t n = (size_t)sprintf(big, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(big + n, 'e', H1P_CHUNK_LINE_MAX);
    n += H1P_CHUNK_LINE_MAX;
    h1p_init(&p, &acb, &a, false);
    CHECK_EQ_INT(parse_cut(&p, big, n, 0, 100, &a, &end), H1P_TOO_LARGE);
    h1p_free(&p);
    CHECK(p.line.data == NULL);
}

static int stop_head(void *ud, int status)
{
    return status >= 200 ? 1 : 0;
}

static int stop_body(void *ud, const char *b, size_t n)
{
    return 1;
}

static void test_callbacks(void)
{
    const char *in = "HTTP/1.1 100 Continue\r\nContent-Type: no\r\n\r\nHTTP/1.1 200 OK\r\n"
                     "Content-Type:   text/event-stream  \r\nContent-Length: 3\r\n\r\nabc";
    h1p p;
    acc a;
    size_t end, used;
    memset(&p, 0, sizeof p);
    h1p_init(&p, &acb, &a, false);
    CHECK_EQ_INT(parse_cut(&p, in, strlen(in), 0, 0, &a, &end), H1P_DONE);
    CHECK_EQ_STR(a.ct, "text/event-stream"); /* trimmed; the 1xx's was replaced */
    CHECK_EQ_INT(a.heads, 2);
    h1p_callbacks c1 = acb, c2 = acb;
    c1.on_head = stop_head;
    h1p_init(&p, &c1, &a, false);
    CHECK_EQ_INT(h1p_execute(&p, in, strlen(in), &used), H1P_ABORTED);
    CHECK_EQ_INT(h1p_finish(&p), H1P_ABORTED);
    c2.on_body = stop_body;
    h1p_init(&p, &c2, &a, false);
    CHECK_EQ_INT(h1p_execute(&p, in, strlen(in), &used), H1P_ABORTED);
    /* a new response on the same parser starts clean */
    h1p_init(&p, &acb, &a, false);
    CHECK_EQ_INT(parse_cut(&p, in, strlen(in), 7, 5, &a, &end), H1P_DONE);
    CHECK(a.blen == 3 && memcmp(a.body, "abc", 3) == 0);
    CHECK(!h1p_needs_eof(&p));
    h1p_init(&p, &acb, &a, false);
    CHECK_EQ_INT(h1p_execute(&p, "HTTP/1.1 200 OK\r\n\r\nab", 21, &used), H1P_MORE);
    CHECK(h1p_needs_eof(&p) && !h1p_keep_alive(&p));
    CHECK_EQ_INT(h1p_finish(&p), H1P_DONE);
    h1p_free(&p);
}

/* Mutations of real responses (a fixed seed: the same inputs every run), each checked against
 * llhttp and against itself cut into reads. */
static const char *const seeds[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\nDate: Sat, 05 Dec "
    "2026 16:00:00 GMT\r\n\r\n{\"id\":\"x\",\"usage\":{\"a\":1}}",
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n1c\r\n"
    "data: {\"a\":1}\n\ndata: [DONE]\n\n\r\n0\r\n\r\n",
    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nretry-after-ms: 1500\r\nConnection: "
    "close\r\nContent-Length: 2\r\n\r\n{}",
    "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\n"
    "hello\r\n0\r\nX-T: y\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil the close",
    "HTTP/1.1 204 No Content\r\n\r\n",
};

static uint32_t rng = 12345;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % (n ? n : 1);
}

static void test_mutations(void)
{
    static const char bytes[] = "\r\n :;,=\t0123456789aAfFzZ\x80\xff\x00-HTTP/1.chunkedclose";
    char buf[512];
    int bad = 0, runs = 0;
    for (int round = 0; round < 4000 && bad < 5; round++) {
        const char *s = seeds[rnd(sizeof seeds / sizeof seeds[0])];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        for (int m = 1 + (int)rnd(4); m > 0; m--) {
            size_t at = rnd((uint32_t)n);
            switch (rnd(4)) {
            case 0: /* replace */
                if (n) buf[at] = bytes[rnd(sizeof bytes - 1)];
                break;
            case 1: /* insert */
                if (n < sizeof buf - 1) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = bytes[rnd(sizeof bytes - 1)];
                    n++;
                }
                break;
            case 2: /* delete */
                if (n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
                break;
            default: /* cut short */
                n = at;
            }
        }
        size_t cuts[4];
        int ncut = 0;
        for (int k = 0; k < 4 && n > 0; k++) {
            size_t c = rnd((uint32_t)n);
            if (ncut == 0 || c > cuts[ncut - 1]) cuts[ncut++] = c;
        }
        const char *why = h1p_diff(buf, n, rnd(8) == 0, cuts, ncut);
        runs++;
        if (why) {
            bad++;
            fprintf(stderr, "differs (%s) on: ", why);
            for (size_t k = 0; k < n; k++)
                fprintf(stderr,
                        (unsigned char)buf[k] < 32 || (unsigned char)buf[k] > 126 ? "\\x%02x"
                                                                                  : "%c",
                        (unsigned char)buf[k]);
            fprintf(stderr, "\n");
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(runs == 4000);
}

int main(void)
{
    RUN(test_accepts);
    RUN(test_refuses);
    RUN(test_value_bytes);
    RUN(test_limits);
    RUN(test_callbacks);
    RUN(test_mutations);
    TAP_DONE();
}
