/*
 * The translating adapters' decode_len (src/providers/provider.h): a stream event of the shape
 * the decoder learnt is decoded straight from the bytes the engine read, past the SSE parser
 * (api/proxy.c, take_decoded). That shortcut must decide exactly what the parser and
 * decode_event do, so every stream here is read twice, cut into the same pieces: by the parser
 * alone, every event through decode_event, and the way the engine reads a translated stream,
 * runs of events decode_len knows taken first. The two must give the same events in the same
 * order, stop alike and count the same streamed bytes and usage. Each event is also encoded by
 * the three dialects' encoders twice, once as given and once with its `plain` mark taken off,
 * and the bytes must be the same: a text marked plain needs no escaping.
 *
 * The generated streams are OpenAI's, Anthropic's and Gemini's (each adapter's own framing):
 * plain deltas, escapes and multi-byte text, padding, CRLF framing, "data:" with no space, data
 * split over several lines (JSON's whitespace may be a line break there, which a shape must not
 * learn: the same bytes on one line are another event to the parser), comments, finishes, usage
 * and corrupted bytes, so that shapes are learnt, matched, missed and replaced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"
#include "dialect/dialect.h"
#include "ev_record.h"
#include "providers/provider.h"
#include "stream_cuts.h"
#include "tap.h"

static const dialect_req REQ = {
    .model = "m", .request_id = "req_1", .created = 1700000000, .include_usage = 1};

/* The encoders an event goes through: [dialect][0: as given, 1: plain taken off]. */
#define NENC 3
static const dialect *const encoders[NENC] = {&dialect_anthropic_messages, &dialect_openai_chat,
                                              &dialect_openai_responses};

/* One reading of a stream. */
typedef struct reader {
    const prov_adapter *ad;
    prov_call call;
    void *st;
    prov_usage usage;
    buf_t log; /* the events (ev_record) and how the reading stopped */
    dialect_enc *enc[NENC][2];
    buf_t out[NENC][2];
    int stopped;   /* done, an error or an invalid event: the engine stops reading */
    int taken;     /* events decode_len took */
    int plain;     /* text events marked plain */
    int encfailed; /* an encoder refused an event */
} reader;

static void reader_open(reader *r, const prov_adapter *ad)
{
    memset(r, 0, sizeof *r);
    r->ad = ad;
    r->call.stream = 1;
    r->st = calloc(1, ad->state_size);
    ad->reset(r->st, &r->call);
    buf_init(&r->log, 0);
    for (int d = 0; d < NENC; d++)
        for (int k = 0; k < 2; k++) {
            r->enc[d][k] = encoders[d]->enc_new(&REQ);
            buf_init(&r->out[d][k], 0);
        }
}

static void reader_close(reader *r)
{
    if (r->ad->release) r->ad->release(r->st);
    free(r->st);
    buf_free(&r->log);
    for (int d = 0; d < NENC; d++)
        for (int k = 0; k < 2; k++) {
            encoders[d]->enc_free(r->enc[d][k]);
            buf_free(&r->out[d][k]);
        }
}

/* The sink: recorded, and encoded as given and unmarked. */
static int sink_emit(void *ctx, const ev_event *ev)
{
    reader *r = ctx;
    ev_record(&r->log, ev);
    if (ev->plain) {
        r->plain++;
        /* what the mark promises, checked directly too */
        CHECK(buf_json_plain(ev->text.p, ev->text.n) == ev->text.n);
    }
    ev_event bare = *ev;
    bare.plain = 0;
    for (int d = 0; d < NENC; d++) {
        int a = encoders[d]->event(r->enc[d][0], ev, &r->out[d][0]);
        int b = encoders[d]->event(r->enc[d][1], &bare, &r->out[d][1]);
        CHECK_EQ_INT(a, b);
        if (a) r->encfailed = 1;
    }
    return 0;
}

static void note(reader *r, char mark, const char *err)
{
    CHECK(buf_append(&r->log, &mark, 1) == 0 && buf_appends(&r->log, err) == 0);
}

/* The engine's on_decoded_event, reduced to what the client would see. */
static int on_event(void *ud, const sse_event *ev)
{
    reader *r = ud;
    int done = 0, error = 0;
    char err[256] = "";
    ev_sink sink = {sink_emit, r};
    int rc =
        r->ad->decode_event(r->st, &r->call, ev, &sink, &r->usage, &done, &error, err, sizeof err);
    if (rc < 0 || error || done) {
        note(r, rc < 0 ? 'X' : error ? 'E' : 'D', err);
        r->stopped = 1;
        return 1;
    }
    return 0;
}

/* proxy.c's take_decoded: a run of events decode_len knows, each looked for in at most
 * max_event bytes. */
static size_t take(void *ud, const char *p, size_t n, size_t max_event, int *stop)
{
    reader *r = ud;
    ev_sink sink = {sink_emit, r};
    size_t run = 0, k;
    int failed = 0;
    while (run < n && !failed &&
           (k = r->ad->decode_len(r->st, p + run, n - run < max_event ? n - run : max_event, &sink,
                                  &r->usage, &failed)) != 0) {
        CHECK(k <= n - run && p[run + k - 1] == '\n');
        r->taken++;
        run += k;
    }
    *stop = failed;
    return run;
}

/* Reads s in the pieces cuts gives, with decode_len or without. */
static void read_stream(reader *r, const char *s, size_t n, const size_t *cuts, int ncuts, int fast,
                        size_t max_event)
{
    sse_parser sp;
    sse_init(&sp, max_event, on_event, r);
    if (fast) sse_set_take(&sp, take);
    size_t at = 0;
    for (int i = 0; i <= ncuts && !r->stopped; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (end > at && sse_feed(&sp, s + at, end - at) == SSE_TOO_LARGE) {
            note(r, 'L', "");
            r->stopped = 1;
        }
        at = end > at ? end : at;
    }
    sse_free(&sp);
}

static int same_bytes(const buf_t *a, const buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int same(const reader *a, const reader *b)
{
    return same_bytes(&a->log, &b->log) && a->usage.streamed_bytes == b->usage.streamed_bytes &&
           a->usage.known == b->usage.known &&
           memcmp(&a->usage.u, &b->usage.u, sizeof a->usage.u) == 0 && a->stopped == b->stopped;
}

/* A reading's encoders wrote the same bytes whether texts were marked plain or not. */
static int plain_kept(const reader *r)
{
    for (int d = 0; d < NENC; d++)
        if (!same_bytes(&r->out[d][0], &r->out[d][1])) return 0;
    return 1;
}

typedef struct tally {
    int taken, plain, streams;
} tally;

/* Compares the two readings of s over a few random ways to cut it. */
static void compare(const prov_adapter *ad, const char *s, size_t n, int tries, size_t max_event,
                    tally *t)
{
    for (int k = 0; k < tries; k++) {
        size_t cuts[8];
        int nc = rnd_cuts(cuts, 8, n, k == 0);
        reader a, b;
        reader_open(&a, ad);
        reader_open(&b, ad);
        read_stream(&a, s, n, cuts, nc, 0, max_event);
        read_stream(&b, s, n, cuts, nc, 1, max_event);
        if (!same(&a, &b)) {
            buf_append(&a.log, "", 1);
            buf_append(&b.log, "", 1);
            fprintf(stderr, "# readings differ (cut %d times)\n# parser: %s\n# taken:  %s\n", nc,
                    a.log.data, b.log.data);
            fprintf(stderr, "# stream: %.*s\n", (int)n, s);
        }
        CHECK(same(&a, &b));
        CHECK(plain_kept(&a) && plain_kept(&b));
        CHECK_EQ_INT(a.taken, 0);
        t->taken += b.taken;
        t->plain += b.plain;
        t->streams++;
        reader_close(&a);
        reader_close(&b);
    }
}

/* ---- the texts the generators put in deltas (JSON string insides) ---- */

static const char *const texts[] = {"Hello",
                                    " world",
                                    ",",
                                    "a b c",
                                    "\\n",
                                    "x\\\"y\\\"",
                                    "tab\\there",
                                    "\\u00e9t\\u00e9",
                                    "\xc3\xa9\xe2\x82\xac",
                                    "\\ud83d\\ude00",
                                    "back\\\\slash",
                                    "",
                                    "ok",
                                    "\\u0000z",
                                    "<b>&amp;",
                                    "a/b\\/c"};
#define NTEXTS (sizeof texts / sizeof *texts)

static const char *text_at(void)
{
    return texts[rnd() % NTEXTS];
}

/* Frames data as one event: "data: " (or "data:"), LF or CRLF ends, or data over two lines. */
static void frame(buf_t *s, const char *name, const char *data, int odd)
{
    const char *eol = odd == 1 ? "\r\n" : "\n";
    if (name) buf_printf(s, "event: %s%s", name, eol);
    if (odd == 2) {
        buf_printf(s, "data:%s%s%s", data, eol, eol);
        return;
    }
    if (odd == 3) {
        /* two data lines, cut after the first comma: the parser joins them with "\n" */
        const char *c = strchr(data, ',');
        if (c) {
            buf_printf(s, "data: %.*s\ndata: %s\n\n", (int)(c + 1 - data), data, c + 1);
            return;
        }
    }
    if (odd == 4) {
        /* the same bytes as 3 on one line: a field line after the data line, not JSON */
        const char *c = strchr(data, ',');
        if (c) {
            buf_printf(s, "data: %.*s\n%s\n\n", (int)(c + 1 - data), data, c + 1);
            return;
        }
    }
    buf_printf(s, "data: %s%s%s", data, eol, eol);
}

/* Mostly 0 (the usual framing), now and then another. */
static int oddity(int rate)
{
    return rnd() % (unsigned)rate == 0 ? 1 + (int)(rnd() % 4) : 0;
}

static void corrupt(buf_t *s, int rate)
{
    static const char bytes[] = "\"\\{}[],:\n\r 0a";
    if (s->len && rnd() % (unsigned)rate == 0)
        s->data[rnd() % s->len] = bytes[rnd() % (sizeof bytes - 1)];
}

/* ---- OpenAI chat completions ---- */

static void openai_stream(buf_t *s, int nev, int rate)
{
    char d[512];
    snprintf(d, sizeof d,
             "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\","
             "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
             "\"finish_reason\":null}]}");
    frame(s, NULL, d, 0);
    int pad = (int)(rnd() % 2), think = rnd() % 4 == 0;
    for (int i = 0; i < nev; i++) {
        const char *field = think && i < nev / 2 ? "reasoning_content" : "content";
        int odd = oddity(rate);
        if (rnd() % (unsigned)(rate * 2) == 0) {
            frame(s, NULL, "", 0); /* a data line with nothing: no event */
            buf_appends(s, ": keep-alive\n\n");
        }
        if (pad)
            snprintf(d, sizeof d,
                     "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
                     "\"g\",\"choices\":[{\"index\":0,\"delta\":{\"%s\":\"%s\"},\"logprobs\":null,"
                     "\"finish_reason\":null}],\"obfuscation\":\"%.*s\"}",
                     field, text_at(), (int)(rnd() % 9), "abcdefghi");
        else
            snprintf(d, sizeof d,
                     "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":"
                     "\"g\",\"choices\":[{\"index\":0,\"delta\":{\"%s\":\"%s\"},\"logprobs\":null,"
                     "\"finish_reason\":null}]}",
                     field, text_at());
        frame(s, NULL, d, odd);
        if (odd == 3) frame(s, NULL, d, 4);
    }
    frame(s, NULL,
          "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", 0);
    frame(s, NULL,
          "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9,"
          "\"total_tokens\":16}}",
          0);
    frame(s, NULL, "[DONE]", 0);
}

/* ---- Anthropic Messages ---- */

static void anthropic_stream(buf_t *s, int nev, int rate)
{
    char d[512];
    frame(s, "message_start",
          "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
          "\"assistant\",\"content\":[],\"model\":\"c\",\"usage\":{\"input_tokens\":25,"
          "\"output_tokens\":1}}}",
          0);
    int blocks = 1 + (int)(rnd() % 3), per = nev / blocks + 1;
    for (int b = 0; b < blocks; b++) {
        int thinking = rnd() % 3 == 0;
        snprintf(d, sizeof d,
                 "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":{\"type\":"
                 "\"%s\",\"%s\":\"\"}}",
                 b, thinking ? "thinking" : "text", thinking ? "thinking" : "text");
        frame(s, "content_block_start", d, 0);
        for (int i = 0; i < per; i++) {
            int odd = oddity(rate);
            if (rnd() % (unsigned)(rate * 2) == 0) frame(s, "ping", "{\"type\": \"ping\"}", 0);
            snprintf(d, sizeof d,
                     "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"%s\","
                     "\"%s\":\"%s\"}}",
                     b, thinking ? "thinking_delta" : "text_delta", thinking ? "thinking" : "text",
                     text_at());
            frame(s, "content_block_delta", d, odd);
            if (odd == 3) frame(s, "content_block_delta", d, 4);
        }
        if (thinking)
            frame(s, "content_block_delta",
                  "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                  "\"signature_delta\",\"signature\":\"sig\"}}",
                  0);
        snprintf(d, sizeof d, "{\"type\":\"content_block_stop\",\"index\":%d}", b);
        frame(s, "content_block_stop", d, 0);
    }
    frame(s, "message_delta",
          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{"
          "\"output_tokens\":9}}",
          0);
    frame(s, "message_stop", "{\"type\":\"message_stop\"}", 0);
}

/* ---- Gemini (CRLF framing, as Google sends it with alt=sse) ---- */

static void gemini_stream(buf_t *s, int nev, int rate)
{
    char d[640];
    int crlf = rnd() % 4 != 0, out = 0;
    for (int i = 0; i < nev; i++) {
        int odd = oddity(rate);
        if (!odd && crlf) odd = 1;
        if (odd == 1 && !crlf) odd = 0;
        out += 1 + (int)(rnd() % 5);
        snprintf(d, sizeof d,
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"%s\"%s}],\"role\":"
                 "\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,"
                 "\"candidatesTokenCount\":%d,\"totalTokenCount\":%d},\"modelVersion\":"
                 "\"gemini-x\",\"responseId\":\"r1\"}",
                 text_at(), i % 7 == 3 ? ",\"thought\":true" : "", out, 12 + out);
        frame(s, NULL, d, odd);
        if (odd == 3) frame(s, NULL, d, 4);
    }
    snprintf(d, sizeof d,
             "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"end\"}],\"role\":\"model\"},"
             "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,"
             "\"candidatesTokenCount\":%d,\"totalTokenCount\":%d},\"modelVersion\":\"gemini-x\","
             "\"responseId\":\"r1\"}",
             out + 1, 13 + out);
    frame(s, NULL, d, crlf);
}

typedef void (*gen_fn)(buf_t *s, int nev, int rate);

/* Many generated streams of one provider, read both ways: with no oddity, with some, and with
 * corrupted bytes. */
static tally run_provider(const prov_adapter *ad, gen_fn gen, int streams)
{
    tally t = {0};
    for (int i = 0; i < streams; i++) {
        buf_t s;
        buf_init(&s, 0);
        int rate = i % 3 == 0 ? 1000000 : 4;
        gen(&s, 3 + (int)(rnd() % 30), rate);
        if (i % 3 == 2) corrupt(&s, 1);
        compare(ad, s.data, s.len, 6, 1 << 20, &t);
        buf_free(&s);
    }
    printf("# %d readings: %d events taken, %d texts marked plain\n", t.streams, t.taken, t.plain);
    return t;
}

static void test_openai(void)
{
    CHECK(prov_openai.decode_len != NULL);
    tally t = run_provider(&prov_openai, openai_stream, 300);
    CHECK(t.taken > 1000);
    CHECK(t.plain > 1000);
}

static void test_anthropic(void)
{
    CHECK(prov_anthropic.decode_len != NULL);
    tally t = run_provider(&prov_anthropic, anthropic_stream, 300);
    CHECK(t.taken > 1000);
    CHECK(t.plain > 1000);
}

static void test_gemini(void)
{
    CHECK(prov_gemini.decode_len != NULL);
    tally t = run_provider(&prov_gemini, gemini_stream, 300);
    CHECK(t.taken > 1000);
    CHECK(t.plain > 1000);
}

/* An event longer than the parser's cap is the parser's to refuse, taken or not. */
static void test_max_event(void)
{
    buf_t s;
    buf_init(&s, 0);
    openai_stream(&s, 20, 1000000);
    tally t = {0};
    /* every chunk of this stream is ~200 bytes: a cap below that refuses the first, above it
     * none */
    compare(&prov_openai, s.data, s.len, 8, 120, &t);
    CHECK_EQ_INT(t.taken, 0);
    compare(&prov_openai, s.data, s.len, 8, 400, &t);
    CHECK(t.taken > 0);
    buf_free(&s);
}

/* The shape is not learnt from data over several lines, whose joined text holds a line break:
 * the same bytes on one line are a data line and a field line to the parser, an invalid chunk
 * (the reading stops there), never a text of the shape. */
static void test_no_shape_over_lines(void)
{
    static const char head[] = "{\"id\":\"c\",\"choices\":[{\"index\":0,";
    buf_t s;
    buf_init(&s, 0);
    frame(&s, NULL, "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}",
          0);
    buf_printf(&s, "data: %s\ndata: \"delta\":{\"content\":\"one\"}}]}\n\n", head);
    buf_printf(&s, "data: %s\n\"delta\":{\"content\":\"two\"}}]}\n\n", head);
    reader a, b;
    reader_open(&a, &prov_openai);
    reader_open(&b, &prov_openai);
    read_stream(&a, s.data, s.len, NULL, 0, 0, 1 << 20);
    read_stream(&b, s.data, s.len, NULL, 0, 1, 1 << 20);
    CHECK(same(&a, &b));
    CHECK_EQ_INT(b.taken, 0);
    CHECK(a.stopped && a.log.len && memchr(a.log.data, 'X', a.log.len) != NULL);
    reader_close(&a);
    reader_close(&b);
    buf_free(&s);
}

int main(void)
{
    RUN(test_openai);
    RUN(test_anthropic);
    RUN(test_gemini);
    RUN(test_max_event);
    RUN(test_no_shape_over_lines);
    TAP_DONE();
}
