/*
 * libFuzzer target for the SSE parser (src/common/sse.c). The first input bytes choose a cap and
 * a way to cut the rest into pieces; the stream is then parsed whole and in those pieces (each
 * from an exact-size heap copy), and both runs must give the same decoded events, the same
 * verdict, and raw bytes that put end to end give back the stream.
 *
 * Built by `make fuzz` and run by the suite (tests/fuzz.sh); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_sse.c \
 *     src/common/sse.c src/common/buf.c src/common/util.c -o /tmp/fuzz_sse
 *   /tmp/fuzz_sse -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

typedef struct {
    char log[1 << 16]; /* event, data, id of each event, separated by 0xFF */
    size_t log_n;
    char raw[1 << 16]; /* the raws end to end */
    size_t raw_n;
    int events;
} run;

static void put(run *r, ms_str s)
{
    MUST(r->log_n + s.n + 1 <= sizeof(r->log));
    memcpy(r->log + r->log_n, s.p, s.n);
    r->log_n += s.n;
    r->log[r->log_n++] = (char)0xFF;
}

static int on_event(void *ud, const sse_event *e)
{
    run *r = ud;
    put(r, e->event);
    put(r, e->data);
    put(r, e->id);
    MUST(r->raw_n + e->raw.n <= sizeof(r->raw));
    memcpy(r->raw + r->raw_n, e->raw.p, e->raw.n);
    r->raw_n += e->raw.n;
    r->events++;
    return 0;
}

static run a, b;

static int parse(run *r, const uint8_t *s, size_t n, size_t cap, const size_t *cuts, size_t nc,
                 size_t *pending)
{
    sse_parser p;
    memset(r, 0, sizeof(*r));
    sse_init(&p, cap, on_event, r);
    size_t at = 0;
    int res = 0;
    for (size_t k = 0; k <= nc && !res; k++) {
        size_t to = k < nc ? cuts[k] : n;
        char *piece = malloc(to - at ? to - at : 1);
        memcpy(piece, s + at, to - at);
        res = sse_feed(&p, piece, to - at);
        free(piece);
        at = to;
    }
    *pending = sse_pending(&p);
    sse_free(&p);
    return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 8192) return 0;
    size_t cap = data[0] < 128 ? (size_t)data[0] * 4 : 1 << 20;
    unsigned seed = data[1];
    const uint8_t *s = data + 2;
    size_t n = size - 2;
    size_t cuts[8192], nc = 0;
    for (size_t at = 0;;) {
        seed = seed * 1103515245u + 12345u;
        at += (seed >> 16) % 8 == 0 ? 1 : 1 + (seed >> 16) % 64;
        if (at >= n) break;
        cuts[nc++] = at;
    }
    size_t pa, pb;
    int ra = parse(&a, s, n, cap, NULL, 0, &pa);
    int rb = parse(&b, s, n, cap, cuts, nc, &pb);
    MUST(ra == rb);
    if (ra == 0) {
        MUST(a.events == b.events);
        MUST(a.log_n == b.log_n && memcmp(a.log, b.log, a.log_n) == 0);
        MUST(pa == pb);
        /* raw end to end is the stream less what is pending (maybe a leftover LF too) */
        MUST(a.raw_n <= n && memcmp(a.raw, s, a.raw_n) == 0);
        MUST(n - a.raw_n == pa || n - a.raw_n == pa + 1);
        /* cut between the CR and LF of a blank line, the LF goes with the next event, which
         * may still be pending */
        MUST(b.raw_n == a.raw_n ||
             (b.raw_n + 1 == a.raw_n && s[b.raw_n - 1] == '\r' && s[b.raw_n] == '\n'));
        MUST(memcmp(b.raw, s, b.raw_n) == 0);
        MUST(n - b.raw_n == pb || n - b.raw_n == pb + 1);
    } else {
        MUST(ra == SSE_TOO_LARGE);
        /* the events before the oversized one are the same */
        MUST(a.events == b.events);
        MUST(a.log_n == b.log_n && memcmp(a.log, b.log, a.log_n) == 0);
    }
    return 0;
}
