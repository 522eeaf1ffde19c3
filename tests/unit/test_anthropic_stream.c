/*
 * The Anthropic adapter's pass-through of a stream and its shape (src/providers/anthropic.c, "The
 * stream's shape"): a text or thinking delta that is the previous plain one with another string
 * in its place is forwarded past the SSE parser and the decoder (prov_anthropic.stream_len, the
 * engine's sse_take). That fast path must decide exactly what the full one does, so every stream
 * here is read twice, cut into the same pieces: by the parser alone, every event through
 * stream_event, and the way the engine reads it, runs of events stream_len knows taken first. The
 * two must forward the same bytes in the same order, hold back the same usage event, end and fail
 * alike, and count the same streamed bytes and usage. Generated streams mix text, thinking, tool
 * and signature blocks, escapes and multi-byte text, pings, CRLF framing, extra members and
 * corrupted bytes, so that the shape is learned, matched, missed and replaced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"
#include "providers/provider.h"
#include "tap.h"

/* this file's own run of generated streams (stream_cuts.h) */
#define STREAM_CUTS_SEED 0x2545F4914F6CDD1Dull
#include "stream_cuts.h"

/* One reading of a stream: what the client would get, in order, and what was counted. */
typedef struct reader {
    prov_call call;
    void *st;
    prov_usage usage;
    buf_t log;   /* forwarded raw bytes, held-back usage events, ends, marked */
    buf_t out;   /* stream_event's out */
    int stopped; /* done or error: the engine stops reading */
    int taken;   /* events the take hook forwarded */
} reader;

static void reader_open(reader *r)
{
    memset(r, 0, sizeof *r);
    r->call.stream = 1;
    r->st = calloc(1, prov_anthropic.state_size);
    prov_anthropic.reset(r->st, &r->call);
    buf_init(&r->log, 0);
    buf_init(&r->out, 1 << 20);
}

static void reader_close(reader *r)
{
    prov_anthropic.release(r->st);
    free(r->st);
    buf_free(&r->log);
    buf_free(&r->out);
}

static void note(reader *r, char mark, const char *p, size_t n)
{
    CHECK(buf_append(&r->log, &mark, 1) == 0 && buf_append(&r->log, p, n) == 0);
}

/* The engine's on_sse_event for a pass-through stream, reduced to what the client sees. */
static int on_event(void *ud, const sse_event *ev)
{
    reader *r = ud;
    int done = 0, error = 0, held = 0;
    char err[256] = "";
    buf_reset(&r->out);
    int rc = prov_anthropic.stream_event(r->st, &r->call, ev, &r->out, &r->usage, &done, &error,
                                         &held, err, sizeof err);
    if (rc < 0) {
        note(r, 'X', err, strlen(err));
        r->stopped = 1;
        return 1;
    }
    if (held) note(r, 'U', r->out.data, r->out.len);
    if (rc == 2) note(r, 'R', ev->raw.p, ev->raw.n);
    if (error || done) {
        note(r, error ? 'E' : 'D', err, strlen(err));
        r->stopped = 1;
        return 1;
    }
    return 0;
}

/* proxy.c's sse_take: a run of events stream_len knows, forwarded as they came. */
static size_t take(void *ud, const char *p, size_t n, size_t max_event, int *stop)
{
    reader *r = ud;
    size_t run = 0, k;
    int64_t bytes;
    (void)stop;
    while (run < n && (k = prov_anthropic.stream_len(r->st, p + run, n - run, &bytes)) != 0 &&
           k <= max_event) {
        CHECK(k <= n - run && p[run + k - 1] == '\n' && p[run + k - 2] == '\n');
        r->usage.streamed_bytes += bytes;
        note(r, 'R', p + run, k); /* each event's raw, as the parser would have cut it */
        r->taken++;
        run += k;
    }
    return run;
}

/* Reads s in the pieces cuts gives, with the take hook or without. */
static void read_stream(reader *r, const char *s, size_t n, const size_t *cuts, int ncuts, int fast)
{
    sse_parser sp;
    sse_init(&sp, 1 << 20, on_event, r);
    if (fast) sse_set_take(&sp, take);
    size_t at = 0;
    for (int i = 0; i <= ncuts && !r->stopped; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (end > at) (void)sse_feed(&sp, s + at, end - at);
        at = end > at ? end : at;
    }
    sse_free(&sp);
}

static int same(const reader *a, const reader *b)
{
    return a->log.len == b->log.len &&
           (a->log.len == 0 || memcmp(a->log.data, b->log.data, a->log.len) == 0) &&
           a->usage.streamed_bytes == b->usage.streamed_bytes && a->usage.known == b->usage.known &&
           memcmp(&a->usage.u, &b->usage.u, sizeof a->usage.u) == 0 && a->stopped == b->stopped;
}

/* Compares the two readings of s over a few random ways to cut it; returns events taken. */
static int compare(const char *s, size_t n, int tries)
{
    int taken = 0;
    for (int t = 0; t < tries; t++) {
        size_t cuts[8];
        int nc = rnd_cuts(cuts, 8, n, t == 0);
        reader a, b;
        reader_open(&a);
        reader_open(&b);
        read_stream(&a, s, n, cuts, nc, 0);
        read_stream(&b, s, n, cuts, nc, 1);
        if (!same(&a, &b))
            fprintf(stderr,
                    "readings differ (cut %d times; log %zu/%zu bytes, streamed %lld/%lld)\n", nc,
                    a.log.len, b.log.len, (long long)a.usage.streamed_bytes,
                    (long long)b.usage.streamed_bytes);
        CHECK(same(&a, &b));
        taken += b.taken;
        reader_close(&a);
        reader_close(&b);
    }
    return taken;
}

static void add(buf_t *s, const char *name, const char *data)
{
    CHECK(buf_appends(s, "event: ") == 0 && buf_appends(s, name) == 0 &&
          buf_appends(s, "\ndata: ") == 0 && buf_appends(s, data) == 0 &&
          buf_appends(s, "\n\n") == 0);
}

#define START                                                                                      \
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"     \
    "\"assistant\",\"content\":[],\"model\":\"claude-x\",\"usage\":{\"input_tokens\":25,"          \
    "\"cache_read_input_tokens\":3,\"output_tokens\":1}}}"

/* A plain stream: the shape is learned at the first delta of each block and every later delta
 * is taken; the bytes counted are the decoded text's (an escape is one byte, é two). */
static void test_plain_stream(void)
{
    buf_t s;
    buf_init(&s, 0);
    add(&s, "message_start", START);
    add(&s, "content_block_start",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
        "\"text\":\"\"}}");
    add(&s, "ping", "{\"type\": \"ping\"}");
    static const char *const texts[] = {"Hello", ",", " w\\u00e9rld", "\\n", "", "\\\"q\\\"", "!"};
    for (int i = 0; i < 7; i++) {
        char d[256];
        snprintf(d, sizeof d,
                 "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
                 "\"text\":\"%s\"}}",
                 texts[i]);
        add(&s, "content_block_delta", d);
    }
    add(&s, "content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}");
    add(&s, "message_delta",
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{"
        "\"output_tokens\":9}}");
    add(&s, "message_stop", "{\"type\":\"message_stop\"}");

    reader a, b;
    reader_open(&a);
    reader_open(&b);
    read_stream(&a, s.data, s.len, NULL, 0, 0);
    read_stream(&b, s.data, s.len, NULL, 0, 1);
    CHECK(same(&a, &b));
    CHECK_EQ_INT(b.taken, 6); /* all but the first delta, which taught the shape */
    /* Hello , ' wérld' (7) '\n' '' '"q"' (3) ! */
    CHECK_EQ_INT(b.usage.streamed_bytes, 5 + 1 + 7 + 1 + 0 + 3 + 1);
    CHECK(b.usage.known && b.usage.u.output == 9);
    CHECK(b.stopped);
    reader_close(&a);
    reader_close(&b);
    CHECK(compare(s.data, s.len, 200) > 0);
    buf_free(&s);
}

/* Generated streams: blocks of every kind, deltas of random strings (escapes, UTF-8, control
 * characters and broken escapes that make an event invalid), CRLF framing, extra members, an
 * index that changes, and a byte of the constant text changed now and then. */
static void gen_delta(buf_t *s, int idx, int kind)
{
    static const char *const pieces[] = {"a",       " ",    "\\\"", "\\n", "\xc3\xa9",
                                         "\\u00e9", "\x01", "\"",   "\\",  "\\ud83d\\ude00",
                                         "\\x"};
    char text[128] = "", d[512];
    size_t tl = 0;
    int parts = (int)(rnd() % 5);
    for (int k = 0; k < parts; k++) {
        const char *pc = pieces[rnd() % 40 == 0 ? rnd() % 11 : rnd() % 6];
        size_t pl = strlen(pc);
        memcpy(text + tl, pc, pl);
        tl += pl;
    }
    text[tl] = '\0';
    static const char *const types[] = {"text_delta\",\"text", "thinking_delta\",\"thinking",
                                        "input_json_delta\",\"partial_json",
                                        "signature_delta\",\"signature"};
    const char *extra = rnd() % 9 == 0 ? ",\"x\":[1,{\"y\":null}]" : "";
    int n = snprintf(d, sizeof d,
                     "{\"type\":\"content_block_delta\",\"index\":%d%s,\"delta\":{\"type\":\"%s\":"
                     "\"%s\"}}",
                     idx, extra, types[kind], text);
    unsigned r = (unsigned)(rnd() % 30);
    if (r == 0) d[rnd() % (size_t)n] = (char)("{}[]\":,ax 0"[rnd() % 11]);
    if (r == 1) {
        CHECK(buf_appends(s, "event: content_block_delta\r\ndata: ") == 0 &&
              buf_appends(s, d) == 0 && buf_appends(s, "\r\n\r\n") == 0);
        return;
    }
    if (r == 2) {
        CHECK(buf_appends(s, "data: ") == 0 && buf_appends(s, d) == 0 &&
              buf_appends(s, "\n\n") == 0);
        return;
    }
    add(s, "content_block_delta", d);
}

static void test_generated(void)
{
    static const char *const blocks[] = {
        "{\"type\":\"text\",\"text\":\"\"}", "{\"type\":\"thinking\",\"thinking\":\"\"}",
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}",
        "{\"type\":\"redacted_thinking\",\"data\":\"x\"}"};
    int taken = 0;
    for (int i = 0; i < 400; i++) {
        buf_t s;
        buf_init(&s, 0);
        add(&s, "message_start", START);
        int nblocks = 1 + (int)(rnd() % 4);
        for (int b = 0; b < nblocks; b++) {
            int kind = (int)(rnd() % 4);
            char d[256];
            snprintf(d, sizeof d,
                     "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":%s}", b,
                     blocks[kind]);
            add(&s, "content_block_start", d);
            int ndeltas = (int)(rnd() % 40);
            for (int k = 0; k < ndeltas; k++) {
                int dk = rnd() % 40 == 0 ? (int)(rnd() % 4) : kind == 3 ? 3 : kind;
                gen_delta(&s, rnd() % 40 == 0 ? (int)(rnd() % 3) : b, dk);
                if (rnd() % 15 == 0) add(&s, "ping", "{\"type\": \"ping\"}");
                if (rnd() % 25 == 0) CHECK(buf_appends(&s, ": keep-alive\n\n") == 0);
            }
            snprintf(d, sizeof d, "{\"type\":\"content_block_stop\",\"index\":%d}", b);
            add(&s, "content_block_stop", d);
        }
        add(&s, "message_delta",
            "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{"
            "\"output_tokens\":42}}");
        add(&s, "message_stop", "{\"type\":\"message_stop\"}");
        taken += compare(s.data, s.len, 6);
        buf_free(&s);
    }
    printf("# %d events taken past the parser\n", taken);
    CHECK(taken > 5000);
}

int main(void)
{
    RUN(test_plain_stream);
    RUN(test_generated);
    TAP_DONE();
}
