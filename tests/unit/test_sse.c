/*
 * Unit tests for the incremental SSE parser (src/common/sse.c): field rules, LF / CRLF / CR line
 * endings, comments, multi-line data, zero-copy views, the per-event cap and stopping from the
 * callback. The core property is checked exhaustively: a stream fed whole, in two pieces split at
 * every offset, one byte at a time, or in random pieces gives the same events, and the events'
 * raw bytes put end to end give back the stream.
 *
 * Pieces are copied into heap blocks of exactly their size, so under ASan any read past a piece
 * (or use of a view after the piece is gone) is caught.
 */
#include <stdlib.h>

#include "common/sse.h"
#include "tap.h"

#define MAX_EV 256

typedef struct {
    char *raw, *event, *data, *id;
    size_t raw_n, event_n, data_n, id_n;
    int raw_in_piece; /* raw pointed into the piece being fed (zero copy) */
    int data_in_raw;  /* data pointed into raw */
} rec_event;

typedef struct {
    rec_event ev[MAX_EV];
    int n;
    int stop_at; /* return stop_val from the callback for this event (1-based), 0 = never */
    int stop_val;
    const char *piece; /* the piece being fed, to tell zero-copy views */
    size_t piece_n;
} collector;

static char *copy(ms_str s)
{
    char *c = malloc(s.n + 1);
    if (s.n) memcpy(c, s.p, s.n);
    c[s.n] = '\0';
    return c;
}

static int within(const char *p, size_t n, const char *base, size_t base_n)
{
    return p >= base && p + n <= base + base_n;
}

static int on_event(void *ud, const sse_event *e)
{
    collector *c = ud;
    if (c->n < MAX_EV) {
        rec_event *r = &c->ev[c->n];
        r->raw = copy(e->raw), r->raw_n = e->raw.n;
        r->event = copy(e->event), r->event_n = e->event.n;
        r->data = copy(e->data), r->data_n = e->data.n;
        r->id = copy(e->id), r->id_n = e->id.n;
        r->raw_in_piece = c->piece && within(e->raw.p, e->raw.n, c->piece, c->piece_n);
        r->data_in_raw = within(e->data.p, e->data.n, e->raw.p, e->raw.n);
    }
    c->n++;
    if (c->stop_at && c->n == c->stop_at) return c->stop_val;
    return 0;
}

static void reset(collector *c)
{
    for (int k = 0; k < c->n && k < MAX_EV; k++) {
        free(c->ev[k].raw);
        free(c->ev[k].event);
        free(c->ev[k].data);
        free(c->ev[k].id);
    }
    memset(c, 0, sizeof(*c));
}

/* Feeds one piece from an exact-size heap copy. */
static int feed(sse_parser *p, collector *c, const char *s, size_t n)
{
    char *piece = malloc(n ? n : 1);
    if (n) memcpy(piece, s, n);
    c->piece = piece;
    c->piece_n = n;
    int r = sse_feed(p, piece, n);
    c->piece = NULL;
    free(piece);
    return r;
}

/* Feeds s cut at the given offsets (sorted, in (0, n)). Returns the last non-zero result. */
static int feed_cuts(collector *c, const char *s, size_t n, const size_t *cuts, size_t ncuts,
                     size_t max_event, size_t *pending)
{
    sse_parser p;
    sse_init(&p, max_event, on_event, c);
    size_t at = 0;
    int r = 0;
    for (size_t k = 0; k <= ncuts && !r; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        r = feed(&p, c, s + at, to - at);
        at = to;
    }
    if (pending) *pending = sse_pending(&p);
    sse_free(&p);
    return r;
}

static int field_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && memcmp(a, b, an) == 0;
}

/* Same decoded events; raw bytes end to end give back the stream's first `consumed` bytes. */
static int same_events(const collector *ref, const collector *got, const char *s, int raw_exact)
{
    if (ref->n != got->n) return 0;
    size_t at = 0;
    for (int k = 0; k < ref->n; k++) {
        const rec_event *a = &ref->ev[k], *b = &got->ev[k];
        if (!field_eq(a->event, a->event_n, b->event, b->event_n) ||
            !field_eq(a->data, a->data_n, b->data, b->data_n) ||
            !field_eq(a->id, a->id_n, b->id, b->id_n))
            return 0;
        if (raw_exact && !field_eq(a->raw, a->raw_n, b->raw, b->raw_n)) return 0;
        if (memcmp(b->raw, s + at, b->raw_n) != 0) return 0;
        at += b->raw_n;
    }
    return 1;
}

static int feed_whole(collector *c, const char *s, size_t max_event)
{
    return feed_cuts(c, s, strlen(s), NULL, 0, max_event, NULL);
}

static void test_basic(void)
{
    collector c = {0};
    const char *s = "data: hello\n\n";
    CHECK_EQ_INT(feed_whole(&c, s, 1024), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.ev[0].data, "hello");
    CHECK_EQ_STR(c.ev[0].raw, s);
    CHECK_EQ_STR(c.ev[0].event, "");
    CHECK_EQ_STR(c.ev[0].id, "");
    CHECK(c.ev[0].raw_in_piece);
    CHECK(c.ev[0].data_in_raw);
    reset(&c);

    /* no event until the blank line */
    sse_parser p;
    sse_init(&p, 1024, on_event, &c);
    CHECK_EQ_INT(feed(&p, &c, "data: a\n", 8), 0);
    CHECK_EQ_INT(c.n, 0);
    CHECK_EQ_INT(sse_pending(&p), 8);
    CHECK_EQ_INT(feed(&p, &c, "", 0), 0);
    CHECK_EQ_INT(sse_pending(&p), 8);
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.ev[0].data, "a");
    CHECK_EQ_STR(c.ev[0].raw, "data: a\n\n");
    CHECK(!c.ev[0].raw_in_piece); /* it was buffered */
    CHECK_EQ_INT(sse_pending(&p), 0);
    sse_free(&p);
    reset(&c);
}

#define IN(lit) lit, sizeof(lit) - 1

static void test_fields(void)
{
    collector c = {0};
    struct {
        const char *in;
        size_t n; /* explicit: one case holds a NUL */
        const char *event, *data, *id;
    } cases[] = {
        {IN("data:x\n\n"), "", "x", ""},
        {IN("data: x\n\n"), "", "x", ""},
        {IN("data:  x\n\n"), "", " x", ""}, /* only one space is removed */
        {IN("data:\tx\n\n"), "", "\tx", ""},
        {IN("data: x \n\n"), "", "x ", ""},
        {IN("data\n\n"), "", "", ""},
        {IN("data:\n\n"), "", "", ""},
        {IN("data: \n\n"), "", "", ""},
        {IN("data: a\ndata: b\n\n"), "", "a\nb", ""},
        {IN("data: a\ndata\ndata: c\n\n"), "", "a\n\nc", ""},
        {IN("data\ndata\n\n"), "", "\n", ""},
        {IN("data: a\ndata: b\ndata: c\ndata: d\n\n"), "", "a\nb\nc\nd", ""},
        {IN("data: a:b:c\n\n"), "", "a:b:c", ""},
        {IN("data: {\"x\": 1}\n\n"), "", "{\"x\": 1}", ""},
        {IN("event: ping\n\n"), "ping", "", ""},
        {IN("event: a\nevent: b\ndata: d\n\n"), "b", "d", ""},
        {IN("event:message_start\ndata: {}\n\n"), "message_start", "{}", ""},
        {IN("id: 7\ndata: d\n\n"), "", "d", "7"},
        {IN("id: 7\nid: 8\ndata: d\n\n"), "", "d", "8"},
        {IN("id\ndata: d\n\n"), "", "d", ""},
        {IN("id: 9\nid: a\0b\ndata: d\n\n"), "", "d", "9"}, /* an id with NUL is ignored */
        {IN("retry: 1000\ndata: d\n\n"), "", "d", ""},
        {IN("foo: bar\ndata: d\n\n"), "", "d", ""},
        {IN("Data: d\n\n"), "", "", ""},  /* names are case-sensitive */
        {IN("data : d\n\n"), "", "", ""}, /* "data " is another field */
        {IN(" data: d\n\n"), "", "", ""},
        {IN(": comment\ndata: d\n\n"), "", "d", ""},
        {IN(":\ndata: d\n: another\n\n"), "", "d", ""},
        {IN(": only a comment\n\n"), "", "", ""},
        {IN(":\n\n"), "", "", ""},
        {IN("\n"), "", "", ""}, /* a stray blank line is still reported (and forwarded) */
        {IN("event: e\nid: i\ndata: 1\ndata: 2\n: c\nretry: 5\n\n"), "e", "1\n2", "i"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t n = cases[k].n;
        CHECK_EQ_INT(feed_cuts(&c, cases[k].in, n, NULL, 0, 1024, NULL), 0);
        CHECK_EQ_INT(c.n, 1);
        if (c.n == 1) {
            if (strcmp(c.ev[0].data, cases[k].data) != 0 ||
                strcmp(c.ev[0].event, cases[k].event) != 0 || strcmp(c.ev[0].id, cases[k].id))
                fprintf(stderr, "field case %zu\n", k);
            CHECK_EQ_STR(c.ev[0].event, cases[k].event);
            CHECK_EQ_STR(c.ev[0].data, cases[k].data);
            CHECK_EQ_STR(c.ev[0].id, cases[k].id);
            CHECK(c.ev[0].raw_n == n && memcmp(c.ev[0].raw, cases[k].in, n) == 0);
        }
        reset(&c);
    }
}

static void test_line_endings(void)
{
    const char *forms[] = {
        "event: e\ndata: a\ndata: b\n\n",   "event: e\r\ndata: a\r\ndata: b\r\n\r\n",
        "event: e\rdata: a\rdata: b\r\r",   "event: e\r\ndata: a\rdata: b\n\r\n",
        "event: e\ndata: a\r\ndata: b\r\r",
    };
    for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++) {
        collector c = {0};
        CHECK_EQ_INT(feed_whole(&c, forms[k], 1024), 0);
        CHECK_EQ_INT(c.n, 1);
        if (c.n == 1) {
            CHECK_EQ_STR(c.ev[0].event, "e");
            CHECK_EQ_STR(c.ev[0].data, "a\nb");
            CHECK_EQ_STR(c.ev[0].raw, forms[k]);
        }
        reset(&c);
    }
    /* CR then LF is one line ending, LF then CR is two (a blank line) */
    collector c = {0};
    CHECK_EQ_INT(feed_whole(&c, "data: a\n\rdata: b\r\n\r\n", 1024), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.ev[0].raw, "data: a\n\r");
    CHECK_EQ_STR(c.ev[1].data, "b");
    reset(&c);
    /* "\r\r\n": a CR line ending, then a CRLF blank line */
    CHECK_EQ_INT(feed_whole(&c, "data: a\r\r\ndata: b\n\n", 1024), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.ev[0].raw, "data: a\r\r\n");
    CHECK_EQ_STR(c.ev[1].raw, "data: b\n\n");
    reset(&c);
    /* three blank lines after an event: three empty events */
    CHECK_EQ_INT(feed_whole(&c, "data: a\n\n\r\n\r", 1024), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_STR(c.ev[1].raw, "\r\n");
    CHECK_EQ_STR(c.ev[2].raw, "\r");
    CHECK_EQ_STR(c.ev[2].data, "");
    reset(&c);
}

/* CR at the end of a piece, LF at the start of the next: one line ending. */
static void test_cr_lf_across_pieces(void)
{
    collector c = {0};
    sse_parser p;
    sse_init(&p, 1024, on_event, &c);
    /* inside an event: CR | LF must not make a blank line */
    CHECK_EQ_INT(feed(&p, &c, "data: a\r", 8), 0);
    CHECK_EQ_INT(feed(&p, &c, "\ndata: b\r", 9), 0);
    CHECK_EQ_INT(c.n, 0);
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(c.n, 0);
    CHECK_EQ_INT(feed(&p, &c, "\r", 1), 0); /* the blank line: dispatched at once */
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.ev[0].data, "a\nb");
    CHECK_EQ_STR(c.ev[0].raw, "data: a\r\ndata: b\r\n\r");
    /* its LF arrives alone: it is not a blank line, and nothing is pending */
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_INT(sse_pending(&p), 0);
    /* it heads the next event's raw so that no byte is lost when forwarding */
    CHECK_EQ_INT(feed(&p, &c, "data: c\r\n\r\n", 11), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.ev[1].data, "c");
    CHECK_EQ_STR(c.ev[1].raw, "\ndata: c\r\n\r\n");
    CHECK_EQ_INT(sse_pending(&p), 0);
    /* the same with the LF and the next event in one piece (zero copy) */
    CHECK_EQ_INT(feed(&p, &c, "data: d\r\n\r", 10), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK_EQ_INT(feed(&p, &c, "\ndata: e\n\n", 10), 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_STR(c.ev[3].raw, "\ndata: e\n\n");
    CHECK_EQ_STR(c.ev[3].data, "e");
    CHECK(c.ev[3].raw_in_piece);
    /* after a CR, a piece that does not start with LF is read normally */
    CHECK_EQ_INT(feed(&p, &c, "data: f\r\r", 9), 0);
    CHECK_EQ_INT(feed(&p, &c, "\r", 1), 0); /* a blank line of its own */
    CHECK_EQ_INT(c.n, 6);
    CHECK_EQ_STR(c.ev[5].raw, "\r");
    sse_free(&p);
    reset(&c);
}

static const char openai_stream[] =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":2,\"total_tokens\":11}}\n\n"
    "data: [DONE]\n\n";

static const char anthropic_stream[] =
    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":"
    "{\"input_tokens\":25}}}\r\n\r\n"
    "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":"
    "{\"text\":\"Hi\"}}\r\n\r\n"
    "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":"
    "15}}\r\n\r\n"
    "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

static const char mixed_stream[] = ": hello\r\r"
                                   "event: a\rid: 1\rdata: x\rdata: y\r\r"
                                   "data: one\r\ndata: two\n\r\n"
                                   "\n"
                                   "retry: 10\ndata\ndata:\n\n"
                                   "id: 2\r\n: c\r\nevent: b\r\n\r\n"
                                   "\r\n"
                                   "data: last\r\r";

static void test_openai_stream(void)
{
    collector c = {0};
    CHECK_EQ_INT(feed_whole(&c, openai_stream, 4096), 0);
    CHECK_EQ_INT(c.n, 6);
    if (c.n == 6) {
        CHECK(strstr(c.ev[0].data, "\"role\":\"assistant\"") != NULL);
        CHECK(c.ev[0].data[0] == '{');
        CHECK_EQ_STR(c.ev[2].data, ""); /* the keep-alive comment, reported for forwarding */
        CHECK_EQ_STR(c.ev[2].raw, ": keep-alive\n\n");
        CHECK(strstr(c.ev[4].data, "\"total_tokens\":11") != NULL);
        CHECK_EQ_STR(c.ev[5].data, "[DONE]");
        for (int k = 0; k < 6; k++) {
            CHECK(c.ev[k].raw_in_piece);
            CHECK(c.ev[k].data_n == 0 || c.ev[k].data_in_raw);
        }
    }
    reset(&c);
    CHECK_EQ_INT(feed_whole(&c, anthropic_stream, 4096), 0);
    CHECK_EQ_INT(c.n, 5);
    if (c.n == 5) {
        CHECK_EQ_STR(c.ev[0].event, "message_start");
        CHECK_EQ_STR(c.ev[1].event, "ping");
        CHECK_EQ_STR(c.ev[1].data, "{\"type\": \"ping\"}");
        CHECK_EQ_STR(c.ev[4].event, "message_stop");
    }
    reset(&c);
}

static void check_all_splits(const char *s, size_t n, int raw_exact)
{
    collector ref = {0}, got = {0};
    size_t pending;
    CHECK_EQ_INT(feed_cuts(&ref, s, n, NULL, 0, 4096, &pending), 0);
    CHECK_EQ_INT(pending, 0);
    int bad = 0;
    /* two pieces, cut at every offset */
    for (size_t cut = 1; cut < n; cut++) {
        CHECK_EQ_INT(feed_cuts(&got, s, n, &cut, 1, 4096, &pending), 0);
        if ((!same_events(&ref, &got, s, raw_exact) || pending) && bad++ < 3)
            fprintf(stderr, "split at %zu differs (%d events)\n", cut, got.n);
        reset(&got);
    }
    /* three pieces, every pair of cuts (only on short streams: quadratic) */
    if (n < 400) {
        for (size_t a = 1; a < n; a++)
            for (size_t b = a + 1; b < n; b++) {
                size_t cuts[2] = {a, b};
                feed_cuts(&got, s, n, cuts, 2, 4096, &pending);
                if ((!same_events(&ref, &got, s, raw_exact) || pending) && bad++ < 3)
                    fprintf(stderr, "cuts at %zu,%zu differ\n", a, b);
                reset(&got);
            }
    }
    /* one byte at a time */
    size_t *cuts = malloc(n * sizeof(*cuts));
    for (size_t k = 1; k < n; k++)
        cuts[k - 1] = k;
    feed_cuts(&got, s, n, cuts, n - 1, 4096, &pending);
    if (!same_events(&ref, &got, s, raw_exact) || pending) {
        bad++;
        fprintf(stderr, "byte at a time differs\n");
    }
    reset(&got);
    /* random pieces */
    unsigned seed = 12345;
    for (int it = 0; it < 200; it++) {
        size_t nc = 0, at = 0;
        for (;;) {
            seed = seed * 1103515245 + 12345;
            at += 1 + (seed >> 16) % 40;
            if (at >= n) break;
            cuts[nc++] = at;
        }
        feed_cuts(&got, s, n, cuts, nc, 4096, &pending);
        if ((!same_events(&ref, &got, s, raw_exact) || pending) && bad++ < 3)
            fprintf(stderr, "random pieces %d differ\n", it);
        reset(&got);
    }
    free(cuts);
    CHECK_EQ_INT(bad, 0);
    reset(&ref);
}

static void test_splits_lf(void)
{
    check_all_splits(openai_stream, sizeof(openai_stream) - 1, 1);
}

static void test_splits_crlf(void)
{
    /* raw boundaries may move by the LF of a CRLF split from its CR: compare the fields and the
     * bytes end to end */
    check_all_splits(anthropic_stream, sizeof(anthropic_stream) - 1, 0);
}

static void test_splits_mixed(void)
{
    check_all_splits(mixed_stream, sizeof(mixed_stream) - 1, 0);
    collector c = {0};
    CHECK_EQ_INT(feed_whole(&c, mixed_stream, 4096), 0);
    CHECK_EQ_INT(c.n, 8);
    if (c.n == 8) {
        CHECK_EQ_STR(c.ev[0].raw, ": hello\r\r");
        CHECK_EQ_STR(c.ev[1].event, "a");
        CHECK_EQ_STR(c.ev[1].id, "1");
        CHECK_EQ_STR(c.ev[1].data, "x\ny");
        CHECK_EQ_STR(c.ev[2].data, "one\ntwo");
        CHECK_EQ_STR(c.ev[3].raw, "\n");
        CHECK_EQ_STR(c.ev[4].data, "\n");
        CHECK_EQ_STR(c.ev[5].event, "b");
        CHECK_EQ_STR(c.ev[5].id, "2");
        CHECK_EQ_STR(c.ev[5].data, "");
        CHECK_EQ_STR(c.ev[6].raw, "\r\n");
        CHECK_EQ_STR(c.ev[7].data, "last");
    }
    reset(&c);
    const char tail[] = "data: a\r\r\ndata: b\r\r\n\r\n";
    check_all_splits(tail, sizeof(tail) - 1, 0);
}

/* A large data line (a long completion chunk) crossing many pieces. */
static void test_large_event(void)
{
    size_t big = 100000;
    char *s = malloc(big + 64);
    size_t n = 0;
    memcpy(s, "data: ", 6);
    n = 6;
    for (size_t k = 0; k < big; k++)
        s[n++] = (char)('a' + k % 26);
    memcpy(s + n, "\ndata: z\n\ndata: tail\n\n", 22);
    n += 22;
    size_t cuts[40], nc = 0;
    for (size_t at = 1000; at < n && nc < 40; at += 2777)
        cuts[nc++] = at;
    collector c = {0};
    size_t pending;
    CHECK_EQ_INT(feed_cuts(&c, s, n, cuts, nc, 200000, &pending), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(pending, 0);
    if (c.n == 2) {
        CHECK_EQ_INT(c.ev[0].data_n, big + 2);
        CHECK(memcmp(c.ev[0].data, s + 6, big) == 0);
        CHECK(memcmp(c.ev[0].data + big, "\nz", 2) == 0);
        CHECK_EQ_STR(c.ev[1].data, "tail");
    }
    reset(&c);
    free(s);
}

static void test_cap(void)
{
    /* an event of exactly max_event bytes passes, one more byte fails */
    const char *ok = "data: 012345678901234567890123\n\n"; /* 32 bytes */
    const char *over = "data: 0123456789012345678901234\n\n";
    CHECK_EQ_INT(strlen(ok), 32);
    collector c = {0};
    CHECK_EQ_INT(feed_whole(&c, ok, 32), 0);
    CHECK_EQ_INT(c.n, 1);
    reset(&c);
    CHECK_EQ_INT(feed_whole(&c, over, 32), SSE_TOO_LARGE);
    CHECK_EQ_INT(c.n, 0);
    reset(&c);
    /* the same, split at every offset and a byte at a time */
    size_t n = strlen(over);
    for (size_t cut = 1; cut < n; cut++) {
        size_t pending = 99;
        CHECK_EQ_INT(feed_cuts(&c, ok, n - 1, &cut, 1, 32, &pending), 0);
        CHECK_EQ_INT(c.n, 1);
        reset(&c);
        CHECK_EQ_INT(feed_cuts(&c, over, n, &cut, 1, 32, &pending), SSE_TOO_LARGE);
        CHECK_EQ_INT(c.n, 0);
        CHECK_EQ_INT(pending, 0); /* dropped, not kept growing */
        reset(&c);
    }
    /* the LF of a final CRLF is not counted, whether or not a cut separates it from its CR */
    const char *ok_crlf = "data: 01234567890123456789012\r\n\r\n";    /* 33 bytes, counts 32 */
    const char *over_crlf = "data: 012345678901234567890123\r\n\r\n"; /* counts 33 */
    n = strlen(ok_crlf);
    CHECK_EQ_INT(n, 33);
    for (size_t cut = 0; cut < n; cut++) {
        CHECK_EQ_INT(feed_cuts(&c, ok_crlf, n, &cut, cut ? 1 : 0, 32, NULL), 0);
        CHECK_EQ_INT(c.n, 1);
        reset(&c);
        CHECK_EQ_INT(feed_cuts(&c, over_crlf, n + 1, &cut, cut ? 1 : 0, 32, NULL), SSE_TOO_LARGE);
        CHECK_EQ_INT(c.n, 0);
        reset(&c);
    }

    /* nor is an LF left over from the previous event's CRLF */
    sse_parser p;
    sse_init(&p, 32, on_event, &c);
    CHECK_EQ_INT(feed(&p, &c, "data: a\r\n\r", 10), 0);
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(feed(&p, &c, ok, 32), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(c.ev[1].raw_n, 33);
    CHECK_EQ_INT(feed(&p, &c, "data: a\r\n\r", 10), 0);
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(feed(&p, &c, over, 33), SSE_TOO_LARGE);
    CHECK_EQ_INT(c.n, 3);
    sse_free(&p);
    reset(&c);

    /* an unterminated event fails as soon as it passes the cap, not at its end */
    sse_init(&p, 64, on_event, &c);
    char chunk[16];
    memset(chunk, 'x', sizeof(chunk));
    int r = 0, fed = 0;
    CHECK_EQ_INT(feed(&p, &c, "data: ", 6), 0);
    while (!r && fed < 100) {
        r = feed(&p, &c, chunk, sizeof(chunk));
        fed++;
    }
    CHECK_EQ_INT(r, SSE_TOO_LARGE);
    CHECK_EQ_INT(fed, 4); /* 6 + 4 * 16 = 70 > 64 */
    CHECK_EQ_INT(sse_pending(&p), 0);
    sse_free(&p);
    reset(&c);
    /* events under the cap keep flowing when many pass through one parser */
    sse_init(&p, 32, on_event, &c);
    for (int k = 0; k < 100; k++)
        CHECK_EQ_INT(feed(&p, &c, ok, 32), 0);
    CHECK_EQ_INT(c.n, 100);
    sse_free(&p);
    reset(&c);
}

static void test_stop(void)
{
    collector c = {0};
    c.stop_at = 2;
    c.stop_val = 7;
    size_t n = sizeof(openai_stream) - 1, pending = 99;
    CHECK_EQ_INT(feed_cuts(&c, openai_stream, n, NULL, 0, 4096, &pending), 7);
    CHECK_EQ_INT(c.n, 2); /* the events after the second were dropped with the piece */
    CHECK_EQ_INT(pending, 0);
    reset(&c);

    /* a stop with a buffered event, then feeding goes on with the next piece */
    sse_parser p;
    c.stop_at = 1;
    c.stop_val = -5;
    sse_init(&p, 1024, on_event, &c);
    CHECK_EQ_INT(feed(&p, &c, "data: a", 7), 0);
    CHECK_EQ_INT(feed(&p, &c, "\n\ndata: b\n\ndata: partial", 24), -5);
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_STR(c.ev[0].data, "a");
    CHECK_EQ_INT(sse_pending(&p), 0);
    CHECK_EQ_INT(feed(&p, &c, "data: c\n\n", 9), 0);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_STR(c.ev[1].data, "c");
    sse_free(&p);
    reset(&c);
}

static void test_pending(void)
{
    collector c = {0};
    sse_parser p;
    sse_init(&p, 1024, on_event, &c);
    CHECK_EQ_INT(sse_pending(&p), 0);
    CHECK_EQ_INT(feed(&p, &c, "data: a\n\ndata: b", 16), 0);
    CHECK_EQ_INT(c.n, 1);
    CHECK(c.ev[0].raw_in_piece);
    CHECK_EQ_INT(sse_pending(&p), 7);
    CHECK_EQ_INT(feed(&p, &c, "\n", 1), 0);
    CHECK_EQ_INT(sse_pending(&p), 8);
    CHECK_EQ_INT(feed(&p, &c, "\ndata: c\n\n", 10), 0);
    CHECK_EQ_INT(c.n, 3);
    CHECK(!c.ev[1].raw_in_piece);
    CHECK(c.ev[1].data_in_raw);
    CHECK(c.ev[2].raw_in_piece); /* the event wholly in the piece is not copied */
    CHECK_EQ_INT(sse_pending(&p), 0);
    /* a multi-line event split across pieces */
    CHECK_EQ_INT(feed(&p, &c, "data: x\nda", 10), 0);
    CHECK_EQ_INT(feed(&p, &c, "ta: y\n\n", 7), 0);
    CHECK_EQ_INT(c.n, 4);
    CHECK_EQ_STR(c.ev[3].data, "x\ny");
    CHECK_EQ_STR(c.ev[3].raw, "data: x\ndata: y\n\n");
    sse_free(&p);
    /* sse_free on a parser that never buffered, and twice-initialised use */
    sse_init(&p, 1024, on_event, &c);
    sse_free(&p);
    reset(&c);
}

/* sse_take_cb for the tests: a run of "data: " and digits, then the blank line, are events it
 * knows whole (the way an adapter knows a stream's shape) and records itself, as the callback
 * would; it stops at anything else, or at an event over max_event. */
static int take_events, take_longest; /* events taken, the longest run */
static size_t digits_take(void *ud, const char *p, size_t n, size_t max_event, int *stop)
{
    size_t run = 0;
    for (int in_run = 1;; in_run++) {
        const char *q = p + run;
        size_t m = n - run, k = 6;
        if (m < 8 || memcmp(q, "data: ", 6) != 0) return run;
        while (k < m && q[k] >= '0' && q[k] <= '9')
            k++;
        if (k == 6 || m - k < 2 || q[k] != '\n' || q[k + 1] != '\n' || k + 2 > max_event)
            return run;
        sse_event ev = {{q, k + 2}, {"", 0}, {q + 6, k - 6}, {"", 0}};
        run += k + 2;
        take_events++;
        if (in_run > take_longest) take_longest = in_run;
        if ((*stop = on_event(ud, &ev)) != 0) return run;
    }
}

/* With the take hook, the events, their raw bytes and fields are exactly what the parser alone
 * gives, however the stream is cut (runs it takes mixed with CRLF, several lines, ids, comments,
 * a CR at the end of a piece, an event over the cap), and a stop still drops the rest. */
static void test_take_hook(void)
{
    static const char stream[] =
        "data: 12\n\ndata: 345\n\n: c\n\ndata: 6\r\n\r\ndata: 78\n\nevent: e\ndata: 9\n\n"
        "data: 1\ndata: 2\n\ndata: 42\n\ndata: x\n\ndata: 5\n\nid: 7\ndata: 8\n\ndata: 99\n\n"
        "\n\ndata: 10\r\ndata: 11\r\rdata: 12\n\ndata: 13\n\ndata: 14\n\ndata: 15\n\n";
    size_t n = sizeof stream - 1;
    collector c[2];
    memset(c, 0, sizeof c);
    int taken = 0;
    for (size_t cut1 = 0; cut1 <= n; cut1 += 3) {
        for (size_t cut2 = cut1; cut2 <= n; cut2 += 7) {
            /* the same cuts through the parser alone (0) and with the hook (1) */
            for (int h = 0; h < 2; h++) {
                sse_parser sp;
                reset(&c[h]);
                sse_init(&sp, 1 << 16, on_event, &c[h]);
                if (h) sse_set_take(&sp, digits_take);
                take_events = 0;
                CHECK_EQ_INT(feed(&sp, &c[h], stream, cut1), 0);
                CHECK_EQ_INT(feed(&sp, &c[h], stream + cut1, cut2 - cut1), 0);
                CHECK_EQ_INT(feed(&sp, &c[h], stream + cut2, n - cut2), 0);
                if (h) taken += take_events;
                sse_free(&sp);
            }
            CHECK_EQ_INT(c[1].n, c[0].n);
            for (int k = 0; k < c[0].n && k < c[1].n && k < MAX_EV; k++) {
                CHECK(c[1].ev[k].raw_n == c[0].ev[k].raw_n &&
                      memcmp(c[1].ev[k].raw, c[0].ev[k].raw, c[0].ev[k].raw_n) == 0);
                CHECK_EQ_STR(c[1].ev[k].data, c[0].ev[k].data);
                CHECK_EQ_STR(c[1].ev[k].event, c[0].ev[k].event);
                CHECK_EQ_STR(c[1].ev[k].id, c[0].ev[k].id);
            }
        }
    }
    /* the hook took events, in runs (the stream's last three, uncut) */
    CHECK(taken > 0 && take_longest >= 3);
    /* the hook's event stopping the feed: the rest of the piece is dropped, as for the parser's */
    sse_parser sp;
    reset(&c[1]);
    sse_init(&sp, 1 << 16, on_event, &c[1]);
    sse_set_take(&sp, digits_take);
    c[1].stop_at = 2;
    c[1].stop_val = 7;
    CHECK_EQ_INT(feed(&sp, &c[1], "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27), 7);
    CHECK_EQ_INT(c[1].n, 2);
    CHECK_EQ_INT((int)sse_pending(&sp), 0);
    /* and after a run, mid-piece: the parser's event first, then the run */
    reset(&c[1]);
    c[1].stop_at = 3;
    c[1].stop_val = 9;
    CHECK_EQ_INT(feed(&sp, &c[1], ": c\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n", 32), 9);
    CHECK_EQ_INT(c[1].n, 3);
    CHECK_EQ_INT((int)sse_pending(&sp), 0);
    sse_free(&sp);
    /* an event over the cap is the parser's, which refuses it as it would without the hook */
    for (int h = 0; h < 2; h++) {
        reset(&c[h]);
        sse_init(&sp, 12, on_event, &c[h]);
        if (h) sse_set_take(&sp, digits_take);
        CHECK_EQ_INT(feed(&sp, &c[h], "data: 1\n\ndata: 1234567\n\n", 24), SSE_TOO_LARGE);
        CHECK_EQ_INT(c[h].n, 1);
        sse_free(&sp);
    }
    reset(&c[0]);
    reset(&c[1]);
}

int main(void)
{
    RUN(test_basic);
    RUN(test_fields);
    RUN(test_line_endings);
    RUN(test_cr_lf_across_pieces);
    RUN(test_openai_stream);
    RUN(test_splits_lf);
    RUN(test_splits_crlf);
    RUN(test_splits_mixed);
    RUN(test_large_event);
    RUN(test_cap);
    RUN(test_stop);
    RUN(test_pending);
    RUN(test_take_hook);
    TAP_DONE();
}
