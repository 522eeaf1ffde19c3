/*
 * Unit tests for src/common/util.c: clocks, ISO 8601 formatting/parsing (including round trips
 * over a wide range of instants), and exact decimal parsing/formatting (overflow, too many
 * fractional digits, signs, syntax that must be refused).
 */
#include "common/buf.h"
#include "common/util.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int dec(const char *s, int scale, int64_t *out)
{
    return ms_parse_decimal(s, strlen(s), scale, out);
}

static void test_clocks(void)
{
    int64_t now = ms_now_ms();
    int64_t t = (int64_t)time(NULL) * 1000;
    CHECK(now > 1700000000000LL);
    CHECK(now >= t - 2000 && now <= t + 2000);
    uint64_t a = ms_mono_ns();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    uint64_t b = ms_mono_ns();
    CHECK(b > a);
    CHECK(b - a >= 2000000);
}

/* Whether the thread's loop clock answers without reading the clock: two readings 2 ms apart. */
static int loop_clock_frozen(void)
{
    uint64_t a = ms_loop_mono_ns();
    int64_t wa = ms_loop_now_ms();
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    return ms_loop_mono_ns() == a && ms_loop_now_ms() == wa;
}

/* The loop clock (util.h): off, it is the clock; on, one reading per phase until a tick. */
static void test_loop_clock(void)
{
    CHECK(!loop_clock_frozen()); /* a thread that did not turn it on: every call reads */
    ms_loop_clock_on();
    ms_loop_clock_tick();
    uint64_t before = ms_mono_ns();
    uint64_t a = ms_loop_mono_ns();
    CHECK(a >= before);
    CHECK(loop_clock_frozen());
    CHECK_EQ_INT((int64_t)ms_loop_mono_ns(), (int64_t)a);
    ms_loop_clock_tick();
    uint64_t b = ms_loop_mono_ns();
    CHECK(b - a >= 2000000); /* the tick let the next call read the clock again */
    int64_t w = ms_loop_now_ms(), t = (int64_t)time(NULL) * 1000;
    CHECK(w >= t - 2000 && w <= t + 2000);
    ms_loop_clock.on = 0; /* the other cases of this thread read the clock */
    ms_loop_clock_tick();
    CHECK(!loop_clock_frozen());
}

static void test_iso_format(void)
{
    char buf[32];
    CHECK_EQ_STR(ms_iso8601(0, buf, 0), "1970-01-01T00:00:00Z");
    CHECK_EQ_STR(ms_iso8601(0, buf, 1), "1970-01-01T00:00:00.000Z");
    CHECK_EQ_STR(ms_iso8601(1764032523123LL, buf, 1), "2025-11-25T01:02:03.123Z");
    CHECK_EQ_STR(ms_iso8601(1764032523123LL, buf, 0), "2025-11-25T01:02:03Z");
    CHECK_EQ_STR(ms_iso8601(1709251199999LL, buf, 1), "2024-02-29T23:59:59.999Z");
    CHECK_EQ_STR(ms_iso8601(951868800000LL, buf, 0), "2000-03-01T00:00:00Z");
    CHECK_EQ_STR(ms_iso8601(253402300799999LL, buf, 1), "9999-12-31T23:59:59.999Z");
    /* Before the epoch the division must floor, not truncate. */
    CHECK_EQ_STR(ms_iso8601(-1, buf, 1), "1969-12-31T23:59:59.999Z");
    CHECK_EQ_STR(ms_iso8601(-2208988800000LL, buf, 0), "1900-01-01T00:00:00Z");
    CHECK(ms_iso8601(5, buf, 0) == buf);
    /* Extremes must stay inside the 32 bytes the header promises. */
    CHECK(strlen(ms_iso8601(INT64_MAX, buf, 1)) < 32);
    CHECK(strlen(ms_iso8601(INT64_MIN, buf, 1)) < 32);
}

static void test_iso_parse(void)
{
    int64_t v = 42;
    CHECK_EQ_INT(ms_parse_iso8601("2026-11-25", &v), 0);
    CHECK_EQ_INT(v, 1795564800000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03Z", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03.123Z", &v), 0);
    CHECK_EQ_INT(v, 1764032523123LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03.1Z", &v), 0);
    CHECK_EQ_INT(v, 1764032523100LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03.123456Z", &v), 0);
    CHECK_EQ_INT(v, 1764032523123LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03+00:00", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T03:02:03+02:00", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T03:02:03+0200", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-24T19:32:03-05:30", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02:03", &v), 0); /* no zone = UTC */
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25t01:02:03z", &v), 0);
    CHECK_EQ_INT(v, 1764032523000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2025-11-25T01:02Z", &v), 0);
    CHECK_EQ_INT(v, 1764032520000LL);
    CHECK_EQ_INT(ms_parse_iso8601("2024-02-29", &v), 0);
    CHECK_EQ_INT(ms_parse_iso8601("2000-02-29", &v), 0);
    CHECK_EQ_INT(ms_parse_iso8601("1969-12-31T23:59:59.999Z", &v), 0);
    CHECK_EQ_INT(v, -1);

    v = 42;
    const char *bad[] = {"",
                         "2025",
                         "2025-11",
                         "25-11-25",
                         "2025-1-25",
                         "2025-13-01",
                         "2025-00-01",
                         "2025-02-29",
                         "1900-02-29",
                         "2025-04-31",
                         "2025-11-00",
                         "2025-11-25T",
                         "2025-11-25T24:00:00Z",
                         "2025-11-25T01:60:00Z",
                         "2025-11-25T01:02:60Z",
                         "2025-11-25T01:02:03.Z",
                         "2025-11-25T01:02:03.1234567890Z",
                         "2025-11-25T01:02:03ZZ",
                         "2025-11-25T01:02:03+24:00",
                         "2025-11-25T01:02:03+1",
                         "2025-11-25X01:02:03Z",
                         "2025-11-25 junk",
                         " 2025-11-25",
                         "2025-11-25T1:02:03Z",
                         "+2025-11-25"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (ms_parse_iso8601(bad[i], &v) != -1) {
            fprintf(stderr, "accepted bad time '%s'\n", bad[i]);
            CHECK(0);
        }
    }
    CHECK_EQ_INT(v, 42);
    CHECK_EQ_INT(ms_parse_iso8601(NULL, &v), -1);
}

static void test_iso_roundtrip(void)
{
    char buf[32];
    int failures = 0;
    /* A prime step walks through every month, leap years, and negative instants. */
    for (int64_t t = -5000000000000LL; t < 253402300799999LL; t += 7777777777LL + 13) {
        int64_t back = 0;
        if (ms_parse_iso8601(ms_iso8601(t, buf, 1), &back) || back != t) failures++;
        int64_t whole = t - (((t % 1000) + 1000) % 1000);
        if (ms_parse_iso8601(ms_iso8601(t, buf, 0), &back) || back != whole) failures++;
    }
    CHECK_EQ_INT(failures, 0);
    /* Every day of a leap year and its neighbours. */
    for (int64_t d = 19000; d < 20200; d++) {
        int64_t t = d * 86400000LL + 43200123, back = 0;
        if (ms_parse_iso8601(ms_iso8601(t, buf, 1), &back) || back != t) failures++;
    }
    CHECK_EQ_INT(failures, 0);
}

static void test_decimal_parse(void)
{
    int64_t v = 0;
    CHECK_EQ_INT(dec("12.5", 1, &v), 0);
    CHECK_EQ_INT(v, 125);
    CHECK_EQ_INT(dec("2.50", 9, &v), 0);
    CHECK_EQ_INT(v, 2500000000LL);
    CHECK_EQ_INT(dec("10.00", 9, &v), 0);
    CHECK_EQ_INT(v, 10000000000LL);
    CHECK_EQ_INT(dec("-3", 9, &v), 0);
    CHECK_EQ_INT(v, -3000000000LL);
    CHECK_EQ_INT(dec("0.000000001", 9, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(dec("-0.000000001", 9, &v), 0);
    CHECK_EQ_INT(v, -1);
    CHECK_EQ_INT(dec("0", 0, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(dec("-0", 2, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(dec("007", 0, &v), 0);
    CHECK_EQ_INT(v, 7);
    CHECK_EQ_INT(dec("1500.5", 9, &v), 0);
    CHECK_EQ_INT(v, 1500500000000LL);
    CHECK_EQ_INT(dec("12.5", 6, &v), 0);
    CHECK_EQ_INT(v, 12500000);

    /* Limits of int64, exactly. */
    CHECK_EQ_INT(dec("9223372036854775807", 0, &v), 0);
    CHECK_EQ_INT(v, INT64_MAX);
    CHECK_EQ_INT(dec("-9223372036854775808", 0, &v), 0);
    CHECK(v == INT64_MIN);
    CHECK_EQ_INT(dec("9223372036.854775807", 9, &v), 0);
    CHECK_EQ_INT(v, INT64_MAX);
    CHECK_EQ_INT(dec("-9223372036.854775808", 9, &v), 0);
    CHECK(v == INT64_MIN);

    v = 77;
    CHECK_EQ_INT(dec("9223372036854775808", 0, &v), -1);
    CHECK_EQ_INT(dec("-9223372036854775809", 0, &v), -1);
    CHECK_EQ_INT(dec("99999999999999999999999", 0, &v), -1);
    CHECK_EQ_INT(dec("9223372037", 9, &v), -1);   /* overflows while scaling */
    CHECK_EQ_INT(dec("9223372036.9", 9, &v), -1); /* overflows in the fraction */
    CHECK_EQ_INT(dec("0.0000000001", 9, &v), -1); /* too many fractional digits */
    CHECK_EQ_INT(dec("1.0", 0, &v), -1);
    CHECK_EQ_INT(dec("2.500", 2, &v), -1);
    CHECK_EQ_INT(dec("1e5", 0, &v), -1);
    CHECK_EQ_INT(dec("1E5", 0, &v), -1);
    CHECK_EQ_INT(dec("+1", 0, &v), -1);
    CHECK_EQ_INT(dec(".5", 1, &v), -1);
    CHECK_EQ_INT(dec("5.", 1, &v), -1);
    CHECK_EQ_INT(dec("-.5", 1, &v), -1);
    CHECK_EQ_INT(dec("", 0, &v), -1);
    CHECK_EQ_INT(dec("-", 0, &v), -1);
    CHECK_EQ_INT(dec("--1", 0, &v), -1);
    CHECK_EQ_INT(dec("1.2.3", 3, &v), -1);
    CHECK_EQ_INT(dec(" 1", 0, &v), -1);
    CHECK_EQ_INT(dec("1 ", 0, &v), -1);
    CHECK_EQ_INT(dec("0x10", 0, &v), -1);
    CHECK_EQ_INT(dec("1,5", 1, &v), -1);
    CHECK_EQ_INT(dec("1_000", 0, &v), -1);
    CHECK_EQ_INT(dec("nan", 0, &v), -1);
    CHECK_EQ_INT(dec("1", -1, &v), -1);
    CHECK_EQ_INT(dec("1", 19, &v), -1);
    CHECK_EQ_INT(ms_parse_decimal(NULL, 0, 0, &v), -1);
    CHECK_EQ_INT(v, 77); /* untouched on error */

    /* The length is honoured: no NUL terminator is needed or looked for. */
    CHECK_EQ_INT(ms_parse_decimal("12.5xyz", 4, 1, &v), 0);
    CHECK_EQ_INT(v, 125);
    CHECK_EQ_INT(ms_parse_decimal("12", 1, 0, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(ms_parse_decimal("1\0002", 3, 0, &v), -1);
}

/* ms_i64_dec writes two digits at a time: every length, odd and even, and both ends. */
static void test_i64_dec(void)
{
    static const struct {
        int64_t v;
        const char *s;
    } cases[] = {{0, "0"},
                 {7, "7"},
                 {10, "10"},
                 {99, "99"},
                 {100, "100"},
                 {-5, "-5"},
                 {-10, "-10"},
                 {1000000000000LL, "1000000000000"},
                 {123456789, "123456789"},
                 {INT64_MAX, "9223372036854775807"},
                 {INT64_MIN, "-9223372036854775808"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[24];
        memset(buf, 'x', sizeof buf);
        char *e = ms_i64_dec(cases[i].v, buf);
        CHECK_EQ_INT((long long)(e - buf), (long long)strlen(cases[i].s));
        *e = '\0';
        CHECK_EQ_STR(buf, cases[i].s);
    }
    /* each side of every power of ten (the digit count's edges), both signs, against printf */
    for (int64_t p = 1, k = 0; k <= 18; k++, p = k <= 18 ? p * 10 : p) {
        int64_t vs[] = {p - 1, p, p + 1, -(p - 1), -p, -(p + 1)};
        for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
            char a[24], b[24];
            *ms_i64_dec(vs[i], a) = '\0';
            snprintf(b, sizeof b, "%lld", (long long)vs[i]);
            CHECK_EQ_STR(a, b);
        }
    }
    /* values of every magnitude (eight-digit blocks, and what is left after them) */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 200000; i++) {
        char a[24], b[24];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t v = (int64_t)(x >> (i % 64));
        if (i & 1) v = -v;
        *ms_i64_dec(v, a) = '\0';
        snprintf(b, sizeof b, "%lld", (long long)v);
        if (strcmp(a, b) != 0) {
            CHECK_EQ_STR(a, b);
            break;
        }
    }
    /* every value up to 10^5 against printf */
    for (int64_t v = -100000; v <= 100000; v++) {
        char a[24], b[24];
        *ms_i64_dec(v, a) = '\0';
        snprintf(b, sizeof b, "%lld", (long long)v);
        if (strcmp(a, b) != 0) {
            CHECK_EQ_STR(a, b);
            break;
        }
    }
}

/* buf_append's inline path and its growing path agree on the limit, the NUL and borrowed
 * memory; the JSON escaper copies clean strings whole and escapes the rest. */
static void test_buf(void)
{
    char stack[8];
    buf_t b;
    buf_init_with(&b, stack, sizeof stack, 10);
    CHECK_EQ_INT(buf_append(&b, "abcdefg", 7), 0); /* fills the stack array, NUL included */
    CHECK(b.data == stack);
    CHECK_EQ_INT(buf_append(&b, "hij", 3), 0); /* grows to the heap, at the limit */
    CHECK(b.data != stack);
    CHECK_EQ_STR(b.data, "abcdefghij");
    CHECK_EQ_INT(buf_append(&b, "k", 1), -1); /* past the limit: refused, unchanged */
    CHECK_EQ_INT((int)b.len, 10);
    CHECK_EQ_STR(b.data, "abcdefghij");
    CHECK_EQ_INT(buf_append(&b, "", 0), 0);
    /* rewound: the heap copy freed (ASan and valgrind would see a leak), the array lent again,
     * empty, with the same limit */
    buf_rewind_to(&b, stack, sizeof stack);
    CHECK(b.data == stack);
    CHECK_EQ_INT((int)b.len, 0);
    CHECK_EQ_INT(buf_append(&b, "0123456789", 10), 0);
    CHECK(b.data != stack);
    CHECK_EQ_INT(buf_append(&b, "x", 1), -1); /* the limit kept */
    buf_rewind_to(&b, stack, sizeof stack);
    CHECK_EQ_INT(buf_append(&b, "ab", 2), 0);
    CHECK(b.data == stack);
    CHECK_EQ_STR(stack, "ab");
    buf_free(&b); /* lent memory: nothing to free */
    CHECK(b.data == NULL);
    /* stolen while lent: a heap copy of what it holds, NUL-terminated; b is left empty and its
     * own again */
    buf_init_with(&b, stack, sizeof stack, 0);
    CHECK_EQ_INT(buf_append(&b, "xyz", 3), 0);
    char *own = buf_steal(&b);
    CHECK(own != NULL && own != stack);
    CHECK_EQ_STR(own, "xyz");
    CHECK(b.data == NULL && b.len == 0 && !b.borrowed);
    free(own);

    buf_init(&b, 0);
    CHECK_EQ_INT(buf_appends(&b, "plain text"), 0);
    CHECK_EQ_INT(buf_append_json_escaped(&b, " \"q\" \\ \n\t\x01", 10), 0);
    CHECK_EQ_STR(b.data, "plain text \\\"q\\\" \\\\ \\n\\t\\u0001");
    buf_reset(&b);
    CHECK_EQ_INT(buf_append_json_string(&b, "clean", 5), 0);
    CHECK_EQ_STR(b.data, "\"clean\"");
    buf_free(&b);

    buf_init(&b, 4);
    CHECK_EQ_INT(buf_append_json_escaped(&b, "abcde", 5), -1);
    CHECK_EQ_INT(buf_append_json_escaped(&b, "ab\n", 3), 0); /* 4 bytes escaped: the limit */
    CHECK_EQ_STR(b.data, "ab\\n");
    buf_free(&b);
}

static void test_decimal_format(void)
{
    char buf[32];
    CHECK_EQ_STR(ms_format_decimal(1500500000000LL, 9, buf, sizeof buf), "1500.5");
    CHECK_EQ_STR(ms_format_decimal(2000, 9, buf, sizeof buf), "0.000002");
    CHECK_EQ_STR(ms_format_decimal(0, 9, buf, sizeof buf), "0");
    CHECK_EQ_STR(ms_format_decimal(-500000000, 9, buf, sizeof buf), "-0.5");
    CHECK_EQ_STR(ms_format_decimal(-1, 9, buf, sizeof buf), "-0.000000001");
    CHECK_EQ_STR(ms_format_decimal(2500000000LL, 9, buf, sizeof buf), "2.5");
    CHECK_EQ_STR(ms_format_decimal(10000000000LL, 9, buf, sizeof buf), "10");
    CHECK_EQ_STR(ms_format_decimal(123, 0, buf, sizeof buf), "123");
    CHECK_EQ_STR(ms_format_decimal(-123, 0, buf, sizeof buf), "-123");
    CHECK_EQ_STR(ms_format_decimal(10, 1, buf, sizeof buf), "1");
    CHECK_EQ_STR(ms_format_decimal(1, 18, buf, sizeof buf), "0.000000000000000001");
    CHECK_EQ_STR(ms_format_decimal(INT64_MAX, 0, buf, sizeof buf), "9223372036854775807");
    CHECK_EQ_STR(ms_format_decimal(INT64_MIN, 9, buf, sizeof buf), "-9223372036.854775808");
    CHECK_EQ_STR(ms_format_decimal(INT64_MIN, 0, buf, sizeof buf), "-9223372036854775808");
    CHECK(ms_format_decimal(5, 9, buf, sizeof buf) == buf);

    /* Too small a buffer or a bad scale: NULL and an empty string, never an overrun. */
    char small[4] = "zzz";
    CHECK(ms_format_decimal(12345, 0, small, sizeof small) == NULL);
    CHECK_EQ_STR(small, "");
    CHECK(ms_format_decimal(123, 0, small, sizeof small) == small);
    CHECK_EQ_STR(small, "123");
    CHECK(ms_format_decimal(1, 19, buf, sizeof buf) == NULL);
    CHECK(ms_format_decimal(1, -1, buf, sizeof buf) == NULL);
    CHECK(ms_format_decimal(1, 0, buf, 0) == NULL);
}

static void test_decimal_roundtrip(void)
{
    char buf[32];
    int failures = 0;
    int64_t samples[] = {0,
                         1,
                         -1,
                         9,
                         10,
                         999999999,
                         1000000000,
                         -1000000001,
                         123456789012345LL,
                         INT64_MAX,
                         INT64_MIN,
                         INT64_MAX - 1,
                         INT64_MIN + 1};
    for (int scale = 0; scale <= 18; scale++) {
        for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
            int64_t back = 0;
            const char *s = ms_format_decimal(samples[i], scale, buf, sizeof buf);
            if (!s || dec(s, scale, &back) || back != samples[i]) failures++;
        }
        for (int64_t x = -3000000; x < 3000000; x += 4999) {
            int64_t back = 0;
            const char *s = ms_format_decimal(x * 1117, scale, buf, sizeof buf);
            if (!s || dec(s, scale, &back) || back != x * 1117) failures++;
        }
    }
    CHECK_EQ_INT(failures, 0);
}

static void test_copy(void)
{
    char b[6];
    memset(b, 'x', sizeof b);
    CHECK_EQ_INT(ms_copy(b, sizeof b, "abc"), 3);
    CHECK_EQ_STR(b, "abc");
    CHECK_EQ_INT(ms_copy(b, sizeof b, "abcdefgh"), 5); /* truncated, still terminated */
    CHECK_EQ_STR(b, "abcde");
    CHECK_EQ_INT(ms_copy(b, sizeof b, ""), 0);
    CHECK_EQ_STR(b, "");
    CHECK_EQ_INT(ms_copy(b, 1, "abc"), 0);
    CHECK_EQ_STR(b, "");
}

/* buf_append_json_escaped against a byte-at-a-time reference: strings of every length to 48
 * (the 16-byte scan's steps and tails) with one byte to escape, or a UTF-8 byte that must stay,
 * at every position, and a second at every later one. */
static void ref_escape(const unsigned char *s, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c == '\n') {
            *out++ = '\\';
            *out++ = 'n';
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            if (c == '\r' || c == '\t') {
                *out++ = '\\';
                *out++ = c == '\r' ? 'r' : 't';
            } else {
                memcpy(out, "\\u00", 4);
                out[4] = hex[c >> 4];
                out[5] = hex[c & 15];
                out += 6;
            }
        } else {
            *out++ = (char)c;
        }
    }
    *out = '\0';
}

static void test_json_escape_positions(void)
{
    static const unsigned char specials[] = {'"', '\\', '\n', 0x01, 0x1f, 0x7f, 0x80, 0xe9, ' '};
    unsigned char s[48];
    char want[48 * 6 + 1];
    for (size_t n = 1; n <= sizeof s; n++) {
        for (size_t at = 0; at < n; at++) {
            for (size_t k = 0; k < sizeof specials; k++) {
                for (size_t i = 0; i < n; i++)
                    s[i] = (unsigned char)('a' + i % 26);
                s[at] = specials[k];
                buf_t b;
                buf_init(&b, 0);
                CHECK_EQ_INT(buf_append_json_escaped(&b, (const char *)s, n), 0);
                ref_escape(s, n, want);
                if (!b.data || strcmp(b.data, want) != 0) {
                    fprintf(stderr, "n %zu at %zu byte %02x\n", n, at, specials[k]);
                    CHECK(0);
                }
                buf_free(&b);
                /* and a second one at every later position: the run after an escape is found
                 * by the same 16-byte scan */
                for (size_t at2 = at + 1; at2 < n; at2++) {
                    unsigned char keep = s[at2];
                    s[at2] = specials[(k + 3) % sizeof specials];
                    buf_init(&b, 0);
                    CHECK_EQ_INT(buf_append_json_escaped(&b, (const char *)s, n), 0);
                    ref_escape(s, n, want);
                    if (!b.data || strcmp(b.data, want) != 0) {
                        fprintf(stderr, "n %zu at %zu and %zu byte %02x\n", n, at, at2,
                                specials[k]);
                        CHECK(0);
                    }
                    buf_free(&b);
                    s[at2] = keep;
                }
            }
        }
    }
}

/* ms_ct_equal against memcmp: every length up to 40 (whole words and tails), equal, and one
 * bit flipped at every position; the pointers unaligned too. */
static void test_ct_equal(void)
{
    unsigned char a[48], b[48];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (unsigned char)(i * 37 + 11);
    CHECK(ms_ct_equal(a, b, 0));
    for (size_t n = 1; n <= 40; n++) {
        CHECK(ms_ct_equal(a, b, n));
        CHECK(ms_ct_equal(a + 3, b + 3, n));
        for (size_t at = 0; at < n; at++) {
            for (int bit = 0; bit < 8; bit += 7) {
                b[at] ^= (unsigned char)(1u << bit);
                if (ms_ct_equal(a, b, n) != (memcmp(a, b, n) == 0))
                    fprintf(stderr, "n %zu at %zu bit %d\n", n, at, bit);
                CHECK(!ms_ct_equal(a, b, n));
                CHECK(ms_ct_equal(a, b, at)); /* the bytes before still agree */
                b[at] ^= (unsigned char)(1u << bit);
            }
        }
    }
}

int main(void)
{
    RUN(test_clocks);
    RUN(test_iso_format);
    RUN(test_iso_parse);
    RUN(test_iso_roundtrip);
    RUN(test_decimal_parse);
    RUN(test_i64_dec);
    RUN(test_buf);
    RUN(test_decimal_format);
    RUN(test_decimal_roundtrip);
    RUN(test_copy);
    RUN(test_loop_clock);
    RUN(test_ct_equal);
    RUN(test_json_escape_positions);
    TAP_DONE();
}
