/*
 * The OpenAI adapter's pass-through of a stream (prov_openai.stream_event with its per-transfer
 * state), and above all its shape (src/providers/openai.c, "The stream's shape"): a chunk that is
 * the previous plain chunk's text with other strings in its holes skips the full scan. That fast
 * path must decide exactly what the full one does, so every case here runs each event twice,
 * through a transfer that keeps a shape and through the stateless full path, and compares
 * everything the engine reads: the return value, done, error, usage_chunk, the held text, the
 * usage and the streamed bytes. The cases that can only pass when the fast path is taken check
 * the shape too, and a generated run of mutated chunks (other strings, broken strings, bytes of
 * the constant text changed) compares the two paths on thousands of events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/openai_decode.h"
#include "providers/provider.h"
#include "stream_cuts.h"
#include "tap.h"

/* One transfer: the stateful side and its stateless twin. */
typedef struct twin {
    openai_dec_state *st;
    prov_call call;
    prov_usage u[2]; /* [0] with the state, [1] without */
    buf_t out[2];
    int events;
} twin;

static void twin_open(twin *t)
{
    memset(t, 0, sizeof *t);
    t->st = calloc(1, prov_openai.state_size);
    prov_openai.reset(t->st, &t->call);
    t->call.stream = 1;
    buf_init(&t->out[0], 1 << 20);
    buf_init(&t->out[1], 1 << 20);
}

static void twin_close(twin *t)
{
    prov_openai.release(t->st);
    free(t->st);
    buf_free(&t->out[0]);
    buf_free(&t->out[1]);
}

/* Feeds data to both sides; returns the stateful side's result after checking they agree. */
static int feed(twin *t, const char *data, size_t n)
{
    sse_event ev = {.data = {data, n}};
    int rc[2], done[2] = {0, 0}, error[2] = {0, 0}, held[2] = {0, 0};
    char err[2][160] = {"", ""};
    for (int s = 0; s < 2; s++)
        rc[s] = prov_openai.stream_event(s == 0 ? (void *)t->st : NULL, &t->call, &ev, &t->out[s],
                                         &t->u[s], &done[s], &error[s], &held[s], err[s],
                                         sizeof err[s]);
    t->events++;
    int same = rc[0] == rc[1] && done[0] == done[1] && error[0] == error[1] && held[0] == held[1] &&
               strcmp(err[0], err[1]) == 0 && t->u[0].streamed_bytes == t->u[1].streamed_bytes &&
               t->u[0].known == t->u[1].known &&
               memcmp(&t->u[0].u, &t->u[1].u, sizeof t->u[0].u) == 0 &&
               t->out[0].len == t->out[1].len &&
               (t->out[0].len == 0 || memcmp(t->out[0].data, t->out[1].data, t->out[0].len) == 0);
    if (!same)
        fprintf(stderr, "event %d differs (rc %d/%d, bytes %lld/%lld): %.*s\n", t->events, rc[0],
                rc[1], (long long)t->u[0].streamed_bytes, (long long)t->u[1].streamed_bytes, (int)n,
                data);
    CHECK(same);
    return rc[0];
}

/* An event stream_len took past the parser (text_bytes its count): what the engine does with it
 * (forwards it as it is, adds the count) is what the stateless full path decides for it. */
static void take_one(twin *t, const char *data, size_t n, int64_t text_bytes)
{
    sse_event ev = {.data = {data, n}};
    int done = 0, error = 0, held = 0;
    char err[160] = "";
    int rc = prov_openai.stream_event(NULL, &t->call, &ev, &t->out[1], &t->u[1], &done, &error,
                                      &held, err, sizeof err);
    t->u[0].streamed_bytes += text_bytes;
    t->events++;
    int same = rc == 1 && !done && !error && !held && t->out[1].len == 0 &&
               t->u[0].streamed_bytes == t->u[1].streamed_bytes && t->u[0].known == t->u[1].known &&
               memcmp(&t->u[0].u, &t->u[1].u, sizeof t->u[0].u) == 0;
    if (!same)
        fprintf(stderr, "taken event %d differs (rc %d, bytes %lld/%lld): %.*s\n", t->events, rc,
                (long long)t->u[0].streamed_bytes, (long long)t->u[1].streamed_bytes, (int)n, data);
    CHECK(same);
}

static int feeds(twin *t, const char *data)
{
    return feed(t, data, strlen(data));
}

#define HEAD                                                                                       \
    "{\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,"        \
    "\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
#define TAIL "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}"

/* A plain stream: the first content chunk leaves the shape, the next ones take it. */
static void test_plain_stream(void)
{
    twin t;
    twin_open(&t);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}," TAIL), 1);
    CHECK_EQ_INT(t.st->shape.nholes, 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"Hel\"}," TAIL), 1);
    CHECK_EQ_INT(t.st->shape.nholes, 1);
    /* the shape is now this chunk's: its constant text ends where the content starts */
    CHECK(memmem(t.st->shape.text, t.st->shape.seg[0], "\"role\"", 6) == NULL);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"lo, w\\u00f6rld \\\"q\\\"\"}," TAIL), 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"\xc3\xa9t\xc3\xa9\"}," TAIL), 1);
    CHECK_EQ_INT(t.u[0].streamed_bytes, 0 + 3 + 20 + 5);
    CHECK_EQ_INT(t.st->shape.hits, 2); /* the last two took the shape */
    /* the end: a finish chunk, the usage chunk (held back), [DONE] */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                                "\"usage\":null}"),
                 1);
    CHECK_EQ_INT(feeds(&t, "{\"id\":\"chatcmpl-AbC\",\"object\":\"chat.completion.chunk\","
                           "\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,"
                           "\"total_tokens\":13}}"),
                 0);
    CHECK_EQ_INT(t.u[0].known, 1);
    CHECK_EQ_INT(t.u[0].u.output, 4);
    CHECK_EQ_INT(feeds(&t, "[DONE]"), 0);
    twin_close(&t);
}

/* OpenAI's random padding is a second hole; the text is found on either side of it. */
static void test_obfuscation(void)
{
    twin t;
    twin_open(&t);
    feeds(&t, HEAD "\"delta\":{\"content\":\"a\"}," TAIL "");
    CHECK_EQ_INT(t.st->shape.nholes, 1);
    const char *pad[] = {"x", "Qp7", "", "longer padding here", "\\u0041\\n"};
    for (int i = 0; i < 5; i++) {
        char ev[512];
        snprintf(ev, sizeof ev,
                 HEAD
                 "\"delta\":{\"content\":\"tok%d\"},\"logprobs\":null,\"finish_reason\":null}],"
                 "\"obfuscation\":\"%s\"}",
                 i, pad[i]);
        CHECK_EQ_INT(feeds(&t, ev), 1);
        CHECK_EQ_INT(t.st->shape.nholes, 2);
        CHECK_EQ_INT(t.st->shape.counted, 0);
    }
    /* the padding before the choices: the text is the second hole */
    for (int i = 0; i < 3; i++) {
        char ev[512];
        snprintf(ev, sizeof ev,
                 "{\"obfuscation\":\"%.*s\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                 "\"%d%d\"}}]}",
                 i + 1, "abc", i, i);
        CHECK_EQ_INT(feeds(&t, ev), 1);
        CHECK_EQ_INT(t.st->shape.counted, 1);
    }
    CHECK_EQ_INT(t.u[0].streamed_bytes, 1 + 4 * 5 + 2 * 3);
    CHECK_EQ_INT(t.st->shape.hits, 4 + 2);
    twin_close(&t);
}

/* Chunks that look like the shape but are not: each takes the full path and agrees with it. */
static void test_near_misses(void)
{
    twin t;
    twin_open(&t);
    feeds(&t, HEAD "\"delta\":{\"content\":\"a\"}," TAIL);
    /* not a valid string in the hole: invalid like the full path says */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\x01\"}," TAIL), -1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"\\x\"}," TAIL), -1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"\xff\"}," TAIL), -1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"open}," TAIL), -1);
    /* something else in the hole: not text */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":null}," TAIL), 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":7}," TAIL), 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":[\"a\"]}," TAIL), 1);
    /* two strings where the shape has one */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"\"b\"}," TAIL), -1);
    /* more after the shape's end, or less */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"}," TAIL " "), 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"}," TAIL "x"), -1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"},"), -1);
    /* an error member, a usage object, a second text field, tool calls */
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"}," TAIL), 1);
    feeds(&t, HEAD "\"delta\":{\"content\":\"a\"},\"logprobs\":null,\"finish_reason\":null}],"
                   "\"usage\":null,\"error\":{\"message\":\"boom\"}}");
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\"},\"logprobs\":null,"
                                "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":1,"
                                "\"completion_tokens\":1}}"),
                 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"content\":\"a\",\"reasoning_content\":\"bb\"}," TAIL),
                 1);
    CHECK_EQ_INT(feeds(&t, HEAD "\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                                "{\"arguments\":\"{}\"}}]}," TAIL),
                 1);
    /* two choices: the whole array counts, and no shape is learnt from it */
    CHECK_EQ_INT(feeds(&t, "{\"choices\":[{\"delta\":{\"content\":\"a\"}},"
                           "{\"delta\":{\"content\":\"b\"}}]}"),
                 1);
    twin_close(&t);
}

/* A shape whose constant text does not fit is not kept; the stream goes on by the full path. */
static void test_long_constant_text(void)
{
    twin t;
    twin_open(&t);
    char ev[2048], id[700];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    snprintf(ev, sizeof ev, "{\"id\":\"%s\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}", id);
    CHECK_EQ_INT(feeds(&t, ev), 1);
    CHECK_EQ_INT(t.st->shape.nholes, 0);
    CHECK_EQ_INT(feeds(&t, ev), 1);
    CHECK_EQ_INT(t.u[0].streamed_bytes, 2);
    twin_close(&t);
}

/* Thousands of chunks: mostly the shape with random strings (escapes, UTF-8 good and bad,
 * control bytes, quotes), some with a byte of the constant text changed or cut short. */
static void test_generated(void)
{
    static const char *const pieces[] = {"a",
                                         " ",
                                         "\\\"",
                                         "\\\\",
                                         "\\n",
                                         "\\u00e9",
                                         "\\ud83d\\ude00",
                                         "\\ud83d",
                                         "\\u12",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "\xc3",
                                         "\xed\xa0\x80",
                                         "\x01",
                                         "\"",
                                         "\\",
                                         "}",
                                         "\",\"",
                                         "\x7f"};
    const size_t npieces = sizeof pieces / sizeof pieces[0];
    twin t;
    twin_open(&t);
    for (int i = 0; i < 20000; i++) {
        char text[200] = "", ev[1024];
        size_t tl = 0;
        int parts = (int)(rnd() % 6);
        for (int k = 0; k < parts; k++) {
            /* mostly plain pieces, sometimes a hostile one */
            const char *pc = pieces[rnd() % 4 == 0 ? rnd() % npieces : rnd() % 3];
            size_t pl = strlen(pc);
            memcpy(text + tl, pc, pl);
            tl += pl;
        }
        text[tl] = '\0';
        int with_pad = (int)(rnd() % 2);
        int n = snprintf(ev, sizeof ev,
                         HEAD "\"delta\":{\"content\":\"%s\"},\"logprobs\":null,"
                              "\"finish_reason\":null}],\"usage\":null%s%s%s}",
                         text, with_pad ? ",\"obfuscation\":\"" : "", with_pad ? "pad" : "",
                         with_pad ? "\"" : "");
        switch (rnd() % 10) {
        case 0: /* a byte of the constant text changed */
            ev[rnd() % (size_t)n] = (char)("{}[]\":,ax 0"[rnd() % 11]);
            break;
        case 1: /* cut short */
            n = (int)(rnd() % (size_t)n);
            break;
        default:
            break;
        }
        feed(&t, ev, (size_t)n);
    }
    printf("# %d generated chunks, %u of them by the shape\n", t.events,
           (unsigned)t.st->shape.hits);
    CHECK(t.st->shape.hits > 5000);
    twin_close(&t);
}

/* prov_openai.stream_len, the engine's way past the SSE parser: over generated chunks framed
 * as events ("data: " X "\n\n", then what follows in the read: another event's start, a stray
 * blank line, nothing), with CRLF endings and cuts mixed in, it either declines (0) or names
 * exactly X's event, one the stateless full path forwards as it is, with the same text bytes. */
static void test_stream_len(void)
{
    static const char *const pieces[] = {"a", " ", "\\\"", "\\n", "\xc3\xa9", "\x01", "\"", "\\"};
    static const char *const after[] = {"", "data: {\"id\"", "\n", "data: [DONE]\n\n", ": c\n"};
    twin t;
    twin_open(&t);
    int taken = 0;
    for (int i = 0; i < 20000; i++) {
        char text[64] = "", x[1024], buf[1200];
        size_t tl = 0;
        int parts = (int)(rnd() % 5);
        for (int k = 0; k < parts; k++) {
            const char *pc = pieces[rnd() % 5 == 0 ? rnd() % 8 : rnd() % 2];
            size_t pl = strlen(pc);
            memcpy(text + tl, pc, pl);
            tl += pl;
        }
        text[tl] = '\0';
        int n = snprintf(x, sizeof x, HEAD "\"delta\":{\"content\":\"%s\"}," TAIL, text);
        unsigned r = (unsigned)(rnd() % 10);
        if (r == 0) x[rnd() % (size_t)n] = (char)("{}[]\":,ax 0"[rnd() % 11]);
        const char *end = r == 1 ? "\r\n\r\n" : r == 2 ? "\n" : "\n\n";
        size_t bl = (size_t)snprintf(buf, sizeof buf, "data: %s%s%s", x, end, after[rnd() % 5]);
        if (r == 3) bl = rnd() % bl; /* the read ends inside the event */
        int64_t bytes = -1;
        size_t k = prov_openai.stream_len(t.st, buf, bl, &bytes);
        if (k) {
            /* only ever the whole event, "\n\n" included, within the read */
            CHECK_EQ_INT((long long)k, (long long)n + 8);
            CHECK(k <= bl && buf[n + 6] == '\n' && buf[n + 7] == '\n' && r != 1);
            taken++;
            take_one(&t, buf + 6, (size_t)n, bytes);
        } else {
            feed(&t, x, (size_t)n);
        }
    }
    printf("# %d framed chunks, %d taken past the parser\n", t.events, taken);
    CHECK(taken > 5000);
    twin_close(&t);
}

int main(void)
{
    RUN(test_plain_stream);
    RUN(test_obfuscation);
    RUN(test_near_misses);
    RUN(test_long_constant_text);
    RUN(test_generated);
    RUN(test_stream_len);
    TAP_DONE();
}
