/*
 * Unit tests for the hot-path JSON scanner (src/common/jscan.c): tables of valid and invalid
 * documents with the error offsets, member and offset reporting, escapes in keys, the depth
 * limit, numbers, every UTF-8 edge, string decoding, and a 100,000-document differential test
 * against jansson (random mutations of valid documents, fixed seed): jscan's verdict must match
 * json_loadb's, and for objects the members and string values must match what jansson decodes.
 *
 * Every input is copied into a heap block of exactly its size, so under ASan any read past the
 * view is caught.
 */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/jscan.h"
#include "tap.h"

/* A heap copy of exactly n bytes (1 if n is 0, never read). */
static char *dupn(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    if (n) memcpy(c, s, n);
    return c;
}

static int scan(const char *s, size_t n, size_t *err)
{
    char *c = dupn(s, n);
    jscan_member m[4];
    int r = jscan_object(c, n, m, 4, err);
    free(c);
    return r;
}

typedef struct {
    const char *s;
    size_t n;
    int want; /* member count, or JSCAN_NOT_OBJECT */
} valid_case;

#define V(lit, want)                                                                               \
    {                                                                                              \
        lit, sizeof(lit) - 1, want                                                                 \
    }
#define NO JSCAN_NOT_OBJECT

static const valid_case valid_cases[] = {
    V("{}", 0),
    V(" {} ", 0),
    V("\t\r\n {\t\r\n }\t\r\n ", 0),
    V("{\"a\":1}", 1),
    V("{\"a\":1,\"b\":2}", 2),
    V("{ \"a\" : 1 , \"b\" : 2 }", 2),
    V("{\"\":0}", 1),
    V("{\"a\":{}}", 1),
    V("{\"a\":[]}", 1),
    V("{\"a\":{\"b\":{\"c\":[1,2,{\"d\":null}]}},\"e\":true}", 2),
    V("{\"a\":\"}\",\"b\":\"{\"}", 2),
    V("{\"a\":\"\\\"}\"}", 1),
    V("{\"a\":1,\"a\":2}", 2),
    V("{\"x\":[[],[[]],{}],\"y\":\"\"}", 2),
    V("{\"a\":true,\"b\":false,\"c\":null}", 3),
    V("{\"a\":-0.5e-3}", 1),
    V("[]", NO),
    V("[ ]", NO),
    V("[1]", NO),
    V("[1,2,3]", NO),
    V("[{}]", NO),
    V("[{\"a\":1}]", NO),
    V("[[[]]]", NO),
    V("\"\"", NO),
    V("\"abc\"", NO),
    V(" \"x\" ", NO),
    V("0", NO),
    V("-0", NO),
    V("1", NO),
    V("-1", NO),
    V("123", NO),
    V("0.0", NO),
    V("-0.0", NO),
    V("1.5", NO),
    V("1e5", NO),
    V("1E5", NO),
    V("1e+5", NO),
    V("1e-5", NO),
    V("1e05", NO),
    V("1.0e-0", NO),
    V("0e0", NO),
    V("99999999999999999999999999", NO),
    V("1e400", NO),
    V("1e-400", NO),
    V("true", NO),
    V("false", NO),
    V("null", NO),
    V(" null ", NO),
    /* escapes */
    V("\"\\\"\"", NO),
    V("\"\\\\\"", NO),
    V("\"\\/\"", NO),
    V("\"\\b\\f\\n\\r\\t\"", NO),
    V("\"\\u0000\"", NO),
    V("\"\\u0041\\u00e9\\u20AC\"", NO),
    V("\"\\uFFFF\"", NO),
    V("\"\\uD83D\\uDE00\"", NO),
    V("\"\\uDBFF\\uDFFF\"", NO),
    V("\"\\uD800\\uDC00\"", NO),
    V("\"a\\uD83D\\uDE00b\"", NO),
    /* UTF-8 */
    V("\"\xC2\x80\"", NO),
    V("\"\xDF\xBF\"", NO),
    V("\"\xE0\xA0\x80\"", NO),
    V("\"\xEF\xBF\xBF\"", NO),
    V("\"\xED\x9F\xBF\"", NO),
    V("\"\xEE\x80\x80\"", NO),
    V("\"\xF0\x90\x80\x80\"", NO),
    V("\"\xF4\x8F\xBF\xBF\"", NO),
    V("\"\xF3\xBF\xBF\xBF\"", NO),
    V("\"h\xC3\xA9llo w\xC3\xB6rld \xE2\x82\xAC \xF0\x9F\x98\x80\"", NO),
    V("{\"\xC3\xA9\":\"\xE2\x82\xAC\"}", 1),
    V("\"\x7F\"", NO),
    /* strings long enough for the 16-byte fast path, with specials at every position */
    V("\"0123456789abcdef0123456789abcdef\"", NO),
    V("\"0123456789abcde\\n0123456789abcdef\"", NO),
    V("\"0123456789abcdef\\\"123456789abcdef\"", NO),
    V("\"0123456789abcdef0\xC3\xA9"
      "3456789abcdef\"",
      NO),
    V("{\"model\":\"gpt-4o\",\"stream\":true,\"max_tokens\":100,"
      "\"messages\":[{\"role\":\"user\",\"content\":\"Hello, how are you today?\"}]}",
      4),
};

typedef struct {
    const char *s;
    size_t n;
    long err; /* expected err_off, -1 to not check */
} invalid_case;

#define I(lit, err)                                                                                \
    {                                                                                              \
        lit, sizeof(lit) - 1, err                                                                  \
    }

static const invalid_case invalid_cases[] = {
    I("", 0),
    I(" ", 1),
    I("\r\n\t ", 4),
    I("{", 1),
    I("{ ", 2),
    I("}", 0),
    I("[", 1),
    I("]", 0),
    I("[1", 2),
    I("[1,", 3),
    I("[1,]", 3),
    I("[,1]", 1),
    I("[1 2]", 3),
    I("[1,,2]", 3),
    I("[1}", 2),
    I("{]", 1),
    I("{\"a\"", 4),
    I("{\"a\" 1}", 5),
    I("{\"a\":}", 5),
    I("{\"a\":1,}", 7),
    I("{\"a\":1 \"b\":2}", 7),
    I("{\"a\":1,,\"b\":2}", 7),
    I("{1:2}", 1),
    I("{a:1}", 1),
    I("{'a':1}", 1),
    I("{\"a\"::1}", 5),
    I("{\"a\":1]", 6),
    I("{\"a\":1", 6),
    I("{\"a\":1}}", 7),
    I("{} x", 3),
    I("{}{}", 2),
    I("[] []", 3),
    I("1 2", 2),
    I("\"a\" \"b\"", 4),
    I("{\"a\":1}\x00", 7),
    I("\x00", 0),
    I("[\x00]", 1),
    /* literals */
    I("tru", 0),
    I("nul", 0),
    I("fals", 0),
    I("True", 0),
    I("NULL", 0),
    I("truee", 4),
    I("[truex]", 5),
    I("nan", 0),
    I("NaN", 0),
    I("Infinity", 0),
    I("-Infinity", 1),
    I("undefined", 0),
    /* numbers */
    I("-", 1),
    I("+1", 0),
    I("01", 1),
    I("-01", 2),
    I("00", 1),
    I("0x10", 1),
    I("1.", 2),
    I(".5", 0),
    I("-.5", 1),
    I("1.e5", 2),
    I("1e", 2),
    I("1e+", 3),
    I("1e-", 3),
    I("1E+-1", 3),
    I("1.5.5", 3),
    I("1e5.5", 3),
    I("1,5", 1),
    I("- 1", 1),
    I("--1", 1),
    I("[01]", 2),
    I("{\"a\":01}", 6),
    I("[1.]", 3),
    /* strings */
    I("\"", 1),
    I("\"abc", 4),
    I("\"abc\\", 5),
    I("\"abc\\\"", 6),
    I("\"\\x\"", 1),
    I("\"\\a\"", 1),
    I("\"\\U0041\"", 1),
    I("\"\\u\"", 1),
    I("\"\\u12\"", 1),
    I("\"\\u12G4\"", 1),
    I("\"\\u004", 6),
    I("\"\x01\"", 1),
    I("\"\x1F\"", 1),
    I("\"a\tb\"", 2),
    I("\"a\nb\"", 2),
    I("\"\x00\"", 1),
    I("\"0123456789abcdef0123456789\x1f\"", 27),
    I("\"0123456789abcdef0123456789", 27),
    I("'a'", 0),
    /* surrogates */
    I("\"\\uD800\"", 1),
    I("\"\\uDBFF\"", 1),
    I("\"\\uDC00\"", 1),
    I("\"\\uDFFF\"", 1),
    I("\"\\uD800\\uD800\"", 1),
    I("\"\\uD800\\u0041\"", 1),
    I("\"\\uD800x\"", 1),
    I("\"\\uD800\\n\"", 1),
    I("\"\\uD800\\", 1),
    I("\"\\uDC00\\uD800\"", 1),
    I("\"a\\uDE00\"", 2),
    /* UTF-8 */
    I("\"\x80\"", 1),
    I("\"\xBF\"", 1),
    I("\"\xC0\x80\"", 1),
    I("\"\xC1\xBF\"", 1),
    I("\"\xC2\"", 1),
    I("\"\xC2", 1),
    I("\"\xC2\x41\"", 1),
    I("\"\xE0\x80\x80\"", 1),
    I("\"\xE0\x9F\xBF\"", 1),
    I("\"\xED\xA0\x80\"", 1),
    I("\"\xED\xBF\xBF\"", 1),
    I("\"\xE2\x82\"", 1),
    I("\"\xE2\x82", 1),
    I("\"\xE2\x82\x41\"", 1),
    I("\"\xF0\x80\x80\x80\"", 1),
    I("\"\xF0\x8F\xBF\xBF\"", 1),
    I("\"\xF4\x90\x80\x80\"", 1),
    I("\"\xF5\x80\x80\x80\"", 1),
    I("\"\xF8\x88\x80\x80\x80\"", 1),
    I("\"\xFE\"", 1),
    I("\"\xFF\"", 1),
    I("\"\xF0\x9F\x98\"", 1),
    I("\"\xF0\x9F\x98", 1),
    I("\xEF\xBB\xBF{}", 0), /* a BOM is not JSON white space */
    I("\xC3\xA9", 0),
    /* comments, trailing commas and other relaxations */
    I("{/*c*/}", 1),
    I("{}//c", 2),
    I("# c\n{}", 0),
    I("[1,2,]", 5),
    I("{\"a\":1,\"b\":2,}", 13),
    I("\v{}", 0),
    I("\f{}", 0),
    I("{}\xA0", 2),
};

static void test_valid_table(void)
{
    for (size_t k = 0; k < sizeof(valid_cases) / sizeof(valid_cases[0]); k++) {
        const valid_case *c = &valid_cases[k];
        size_t err = 12345;
        int r = scan(c->s, c->n, &err);
        if (r != c->want) fprintf(stderr, "valid case %zu: %.*s\n", k, (int)c->n, c->s);
        CHECK_EQ_INT(r, c->want);
        CHECK_EQ_INT(err, 12345); /* untouched on success */
    }
}

static void test_invalid_table(void)
{
    for (size_t k = 0; k < sizeof(invalid_cases) / sizeof(invalid_cases[0]); k++) {
        const invalid_case *c = &invalid_cases[k];
        size_t err = 12345;
        int r = scan(c->s, c->n, &err);
        if (r != JSCAN_INVALID || (c->err >= 0 && (long)err != c->err))
            fprintf(stderr, "invalid case %zu: %.*s (r %d err %zu)\n", k, (int)c->n, c->s, r, err);
        CHECK_EQ_INT(r, JSCAN_INVALID);
        if (c->err >= 0) CHECK_EQ_INT(err, c->err);
        CHECK(err <= c->n);
        /* and without err_off */
        char *d = dupn(c->s, c->n);
        CHECK_EQ_INT(jscan_object(d, c->n, NULL, 0, NULL), JSCAN_INVALID);
        free(d);
    }
}

static int mstr_eq(ms_str a, const char *lit)
{
    return a.n == strlen(lit) && memcmp(a.p, lit, a.n) == 0;
}

static void test_members(void)
{
    const char doc[] = " { \"model\" : \"gpt-4o\",\"nested\":{\"a\":[1,{\"b\":2}],\"model\":\"x\"},"
                       "\"arr\":[ 1 , 2 ],\"n\":-12.5e3,\"t\":true,\"f\":false,\"z\":null,"
                       "\"e\\u0073c\":\"v\\\"q\" } ";
    size_t n = sizeof(doc) - 1;
    char *p = dupn(doc, n);
    jscan_member m[16];
    int r = jscan_object(p, n, m, 16, NULL);
    CHECK_EQ_INT(r, 8);
    if (r == 8) {
        CHECK(mstr_eq(m[0].key, "model"));
        CHECK(mstr_eq(m[0].value, "\"gpt-4o\""));
        CHECK_EQ_INT(m[0].type, JS_STRING);
        CHECK_EQ_INT(m[0].start, 3);
        CHECK_EQ_INT(m[0].end, 21);
        CHECK(m[0].key.p == p + 4);
        CHECK(m[0].value.p == p + 13);

        CHECK(mstr_eq(m[1].key, "nested"));
        CHECK(mstr_eq(m[1].value, "{\"a\":[1,{\"b\":2}],\"model\":\"x\"}"));
        CHECK_EQ_INT(m[1].type, JS_OBJECT);
        CHECK_EQ_INT(m[1].start, 22);
        CHECK_EQ_INT(m[1].end, 22 + 9 + 29);
        CHECK(mstr_eq(m[2].key, "arr"));
        CHECK(mstr_eq(m[2].value, "[ 1 , 2 ]"));
        CHECK_EQ_INT(m[2].type, JS_ARRAY);
        CHECK(mstr_eq(m[3].value, "-12.5e3"));
        CHECK_EQ_INT(m[3].type, JS_NUMBER);
        CHECK(mstr_eq(m[4].value, "true"));
        CHECK_EQ_INT(m[4].type, JS_TRUE);
        CHECK(mstr_eq(m[5].value, "false"));
        CHECK_EQ_INT(m[5].type, JS_FALSE);
        CHECK(mstr_eq(m[6].value, "null"));
        CHECK_EQ_INT(m[6].type, JS_NULL);
        CHECK(mstr_eq(m[7].key, "e\\u0073c"));
        CHECK(mstr_eq(m[7].value, "\"v\\\"q\""));
        /* start/end delimit "key": value exactly */
        for (int k = 0; k < r; k++) {
            CHECK_EQ_INT(p[m[k].start], '"');
            CHECK((size_t)(m[k].key.p - p) == m[k].start + 1);
            CHECK((size_t)(m[k].value.p - p) + m[k].value.n == m[k].end);
        }

        /* the nested members (the top-level "model" is not confused with the nested one) */
        const jscan_member *f = jscan_find(m, (size_t)r, "model");
        CHECK(f == &m[0]);
        jscan_member in[4];
        CHECK_EQ_INT(jscan_members(m[1].value, in, 4), 2);
        CHECK(mstr_eq(in[0].key, "a"));
        CHECK(mstr_eq(in[0].value, "[1,{\"b\":2}]"));
        CHECK_EQ_INT(in[0].start, 1);
        CHECK(mstr_eq(in[1].key, "model"));
        CHECK(mstr_eq(in[1].value, "\"x\""));
        CHECK_EQ_INT(jscan_members(m[2].value, in, 4), JSCAN_NOT_OBJECT);
        CHECK_EQ_INT(jscan_members(m[0].value, in, 4), JSCAN_NOT_OBJECT);
        CHECK_EQ_INT(jscan_members(m[3].value, in, 4), JSCAN_NOT_OBJECT);
        CHECK_EQ_INT(jscan_members((ms_str){"{\"a\":", 5}, in, 4), JSCAN_NOT_OBJECT);
        CHECK_EQ_INT(jscan_members((ms_str){"", 0}, in, 4), JSCAN_NOT_OBJECT);
        CHECK_EQ_INT(jscan_members(MS_STR_LIT("{}"), in, 4), 0);

        /* esc decoded: e\u0073c == "esc" */
        CHECK(jscan_find(m, (size_t)r, "esc") == &m[7]);
        CHECK(jscan_find(m, (size_t)r, "e\\u0073c") == NULL);
        CHECK(jscan_find(m, (size_t)r, "mode") == NULL);
        CHECK(jscan_find(m, (size_t)r, "models") == NULL);
        CHECK(jscan_find(m, (size_t)r, "") == NULL);
        CHECK(jscan_find(m, 0, "model") == NULL);
    }
    free(p);
}

static void test_max_members(void)
{
    const char doc[] = "{\"a\":1,\"b\":[2],\"c\":{\"d\":3},\"e\":\"4\",\"f\":5}";
    size_t n = sizeof(doc) - 1;
    char *p = dupn(doc, n);
    jscan_member m[8];
    memset(m, 0xAB, sizeof(m));
    CHECK_EQ_INT(jscan_object(p, n, m, 2, NULL), 5);
    CHECK(mstr_eq(m[0].key, "a"));
    CHECK(mstr_eq(m[1].key, "b"));
    CHECK_EQ_INT(m[2].start, (size_t)0xABABABABABABABABULL); /* nothing written past max */
    CHECK_EQ_INT(jscan_object(p, n, NULL, 0, NULL), 5);
    CHECK_EQ_INT(jscan_object(p, n, m, 0, NULL), 5);
    CHECK_EQ_INT(jscan_object(p, n, m, 5, NULL), 5);
    CHECK(mstr_eq(m[4].key, "f"));
    CHECK(mstr_eq(m[4].value, "5"));
    /* invalid later in the document: no count, even though members were seen */
    CHECK_EQ_INT(jscan_object(p, n - 1, m, 8, NULL), JSCAN_INVALID);
    free(p);

    /* many members */
    char big[20000];
    size_t o = 0;
    big[o++] = '{';
    for (int k = 0; k < 1000; k++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"k%d\":%d", k ? "," : "", k, k);
    big[o++] = '}';
    p = dupn(big, o);
    CHECK_EQ_INT(jscan_object(p, o, m, 8, NULL), 1000);
    CHECK(mstr_eq(m[7].key, "k7"));
    free(p);
}

static void test_find(void)
{
    const char doc[] =
        "{\"model\":\"a\",\"mo\\u0064el\":\"b\",\"x\":1,\"m\\u006fdel\":\"c\","
        "\"\\u00e9t\\u00E9\":2,\"\\uD83D\\uDE00\":3,\"q\\\"\\\\\\/\\b\\f\\n\\r\\t\":4,"
        "\"mod\":5,\"modelX\":6,\"\\u0000\":7}";
    size_t n = sizeof(doc) - 1;
    char *p = dupn(doc, n);
    jscan_member m[16];
    int r = jscan_object(p, n, m, 16, NULL);
    CHECK_EQ_INT(r, 10);
    if (r == 10) {
        const jscan_member *f = jscan_find(m, 10, "model");
        CHECK(f == &m[3]); /* the last of the three spellings */
        CHECK(mstr_eq(f->value, "\"c\""));
        CHECK(jscan_find(m, 3, "model") == &m[1]);
        CHECK(jscan_find(m, 1, "model") == &m[0]);
        CHECK(jscan_find(m, 10, "\xC3\xA9t\xC3\xA9") == &m[4]);
        CHECK(jscan_find(m, 10, "\xF0\x9F\x98\x80") == &m[5]);
        CHECK(jscan_find(m, 10, "q\"\\/\b\f\n\r\t") == &m[6]);
        CHECK(jscan_find(m, 10, "q\"\\/\b\f\n\r") == NULL);
        CHECK(jscan_find(m, 10, "mod") == &m[7]);
        CHECK(jscan_find(m, 10, "modelX") == &m[8]);
        CHECK(jscan_find(m, 10, "modelXY") == NULL);
        CHECK(jscan_find(m, 10, "") == NULL); /* "\u0000" decodes to a NUL byte, never a C key */
        CHECK(jscan_find(m, 10, "x") == &m[2]);
        CHECK(jscan_find(NULL, 0, "x") == NULL);
    }
    free(p);
}

/* jscan_pick agrees with jscan_find for every name, in one pass, whatever the order of names */
static void test_pick(void)
{
    const char doc[] = "{\"model\":\"a\",\"usage\":null,\"mo\\u0064el\":\"b\",\"choices\":[],"
                       "\"x\":1,\"u\\u0073age\":{}}";
    size_t n = sizeof(doc) - 1;
    char *p = dupn(doc, n);
    jscan_member m[16];
    int r = jscan_object(p, n, m, 16, NULL);
    CHECK_EQ_INT(r, 6);
    if (r == 6) {
        static const jscan_key keys[] = {JSCAN_KEY("usage"), JSCAN_KEY("choices"),
                                         JSCAN_KEY("error"), JSCAN_KEY("model"), JSCAN_KEY("x")};
        const jscan_member *out[5];
        jscan_pick(m, 6, keys, 5, out);
        for (size_t i = 0; i < 5; i++)
            CHECK(out[i] == jscan_find(m, 6, keys[i].s));
        CHECK(out[0] == &m[5]); /* the escaped spelling, last */
        CHECK(out[1] == &m[3]);
        CHECK(out[2] == NULL);
        CHECK(out[3] == &m[2]);
        CHECK(out[4] == &m[4]);
        jscan_pick(m, 2, keys, 5, out); /* a prefix of the members */
        CHECK(out[0] == &m[1] && out[3] == &m[0] && !out[1] && !out[2] && !out[4]);
        jscan_pick(NULL, 0, keys, 5, out);
        CHECK(!out[0] && !out[1] && !out[2] && !out[3] && !out[4]);
    }
    free(p);
}

/* nest levels of '[' (or '{"k":') around a 0 */
static char *nested(int levels, int objects, size_t *n)
{
    char *s = malloc((size_t)levels * 6 + 2);
    size_t o = 0;
    for (int k = 0; k < levels; k++) {
        if (objects) {
            memcpy(s + o, "{\"k\":", 5);
            o += 5;
        } else {
            s[o++] = '[';
        }
    }
    s[o++] = '0';
    for (int k = 0; k < levels; k++)
        s[o++] = objects ? '}' : ']';
    *n = o;
    return s;
}

static void test_depth(void)
{
    size_t n, err;
    char *s;
    s = nested(JSCAN_MAX_DEPTH, 0, &n);
    CHECK_EQ_INT(jscan_object(s, n, NULL, 0, NULL), JSCAN_NOT_OBJECT);
    free(s);
    s = nested(JSCAN_MAX_DEPTH + 1, 0, &n);
    CHECK_EQ_INT(jscan_object(s, n, NULL, 0, &err), JSCAN_INVALID);
    CHECK_EQ_INT(err, JSCAN_MAX_DEPTH);
    free(s);
    s = nested(JSCAN_MAX_DEPTH, 1, &n);
    CHECK_EQ_INT(jscan_object(s, n, NULL, 0, NULL), 1);
    free(s);
    s = nested(JSCAN_MAX_DEPTH + 1, 1, &n);
    CHECK_EQ_INT(jscan_object(s, n, NULL, 0, &err), JSCAN_INVALID);
    CHECK_EQ_INT(err, JSCAN_MAX_DEPTH * 5);
    free(s);
    s = nested(100000, 0, &n);
    CHECK_EQ_INT(jscan_object(s, n, NULL, 0, NULL), JSCAN_INVALID);
    free(s);
    /* depth is nesting, not a count: many siblings at depth 128 are fine */
    char buf[4096];
    size_t o = 0;
    for (int k = 0; k < JSCAN_MAX_DEPTH - 1; k++)
        buf[o++] = '[';
    for (int k = 0; k < 50; k++) {
        memcpy(buf + o, "[],", 3);
        o += 3;
    }
    buf[o++] = '1';
    for (int k = 0; k < JSCAN_MAX_DEPTH - 1; k++)
        buf[o++] = ']';
    s = dupn(buf, o);
    CHECK_EQ_INT(jscan_object(s, o, NULL, 0, NULL), JSCAN_NOT_OBJECT);
    free(s);
}

typedef struct {
    const char *s;
    int ok;
    int64_t v;
} int_case;

static const int_case int_cases[] = {
    {"0", 1, 0},
    {"-0", 1, 0},
    {"1", 1, 1},
    {"-1", 1, -1},
    {"42", 1, 42},
    {"9223372036854775807", 1, INT64_MAX},
    {"-9223372036854775808", 1, INT64_MIN},
    {"9223372036854775808", 0, 0},
    {"-9223372036854775809", 0, 0},
    {"18446744073709551615", 0, 0},
    {"18446744073709551616", 0, 0},
    {"99999999999999999999999", 0, 0},
    {"1.0", 1, 1},
    {"1.000000000000000000000000000", 1, 1},
    {"-3.0", 1, -3},
    {"1e3", 1, 1000},
    {"1E3", 1, 1000},
    {"1e+3", 1, 1000},
    {"1e0", 1, 1},
    {"1e-0", 1, 1},
    {"1.5", 0, 0},
    {"0.5", 0, 0},
    {"1e-1", 0, 0},
    {"10e-1", 1, 1},
    {"100e-2", 1, 1},
    {"150e-2", 0, 0},
    {"0.1e1", 1, 1},
    {"0.10e1", 1, 1},
    {"0.000001e6", 1, 1},
    {"1.5e1", 1, 15},
    {"1.25e1", 0, 0},
    {"0.0", 1, 0},
    {"-0.0e-5", 1, 0},
    {"0e999999999999999999999", 1, 0},
    {"0e-999999999999999999999", 1, 0},
    {"1e999999999999999999999", 0, 0},
    {"1e-999999999999999999999", 0, 0},
    {"1e18", 1, 1000000000000000000LL},
    {"-1e18", 1, -1000000000000000000LL},
    {"1e19", 0, 0},
    {"9e18", 1, 9000000000000000000LL},
    {"9.3e18", 0, 0},
    {"9.223372036854775807e18", 1, INT64_MAX},
    {"9.223372036854775808e18", 0, 0},
    {"-9.223372036854775808e18", 1, INT64_MIN},
    {"-9.223372036854775809e18", 0, 0},
    {"12345678901234567890e-1", 1, 1234567890123456789LL},
    {"123456789012345678901234567890e-11", 0, 0},
    {"1000000000000000000000e-3", 1, 1000000000000000000LL},
    {"00000", 0, 0},
    {"01", 0, 0},
    /* jscan_int's direct path (up to 18 plain digits) and its edges */
    {"7", 1, 7},
    {"123", 1, 123},
    {"999999999999999999", 1, 999999999999999999LL},
    {"099999999999999999", 0, 0},
    {"12a", 0, 0},
    {"1-", 0, 0},
    {"18446744073709551616", 0, 0},
    {"+1", 0, 0},
    {"1.", 0, 0},
    {".1", 0, 0},
    {"1e", 0, 0},
    {"", 0, 0},
    {"-", 0, 0},
    {"1 ", 0, 0},
    {" 1", 0, 0},
    {"\"1\"", 0, 0},
    {"true", 0, 0},
    {"0x10", 0, 0},
    {"1,0", 0, 0},
    {"NaN", 0, 0},
};

static void test_int(void)
{
    for (size_t k = 0; k < sizeof(int_cases) / sizeof(int_cases[0]); k++) {
        const int_case *c = &int_cases[k];
        size_t n = strlen(c->s);
        char *p = dupn(c->s, n);
        int64_t v = 777;
        int r = jscan_int((ms_str){p, n}, &v);
        if ((r == 0) != c->ok || (c->ok && v != c->v))
            fprintf(stderr, "int case %s: r %d v %lld\n", c->s, r, (long long)v);
        CHECK_EQ_INT(r, c->ok ? 0 : -1);
        CHECK_EQ_INT(v, c->ok ? c->v : 777);
        free(p);
    }
    /* a view inside a longer buffer: digits after the view are not read */
    const char *s = "1234";
    int64_t v = 0;
    CHECK_EQ_INT(jscan_int((ms_str){s, 2}, &v), 0);
    CHECK_EQ_INT(v, 12);
    CHECK_EQ_INT(jscan_int((ms_str){"1.5", 1}, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(jscan_int((ms_str){NULL, 0}, &v), -1);
}

static void test_double(void)
{
    struct {
        const char *s;
        int ok;
        double v;
    } cases[] = {
        {"0", 1, 0.0},
        {"1.5", 1, 1.5},
        {"-2.25", 1, -2.25},
        {"1e3", 1, 1000.0},
        {"1E-3", 1, 0.001},
        {"123456789", 1, 123456789.0},
        {"0.1", 1, 0.1},
        {"1.7976931348623157e308", 1, 1.7976931348623157e308},
        {"4.9e-324", 1, 4.9e-324},
        {"1e-400", 1, 0.0},
        {"1e400", 0, 0},
        {"-1e400", 0, 0},
        {"1.", 0, 0},
        {".5", 0, 0},
        {"+1", 0, 0},
        {"01", 0, 0},
        {"NaN", 0, 0},
        {"Infinity", 0, 0},
        {"-Infinity", 0, 0},
        {"0x10", 0, 0},
        {"1e", 0, 0},
        {"", 0, 0},
        {" 1", 0, 0},
        {"1 ", 0, 0},
        {"\"1\"", 0, 0},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t n = strlen(cases[k].s);
        char *p = dupn(cases[k].s, n);
        double d = 777;
        int r = jscan_double((ms_str){p, n}, &d);
        if ((r == 0) != cases[k].ok) fprintf(stderr, "double case %s: r %d\n", cases[k].s, r);
        CHECK_EQ_INT(r, cases[k].ok ? 0 : -1);
        CHECK(d == (cases[k].ok ? cases[k].v : 777));
        free(p);
    }
    double d = 0;
    CHECK_EQ_INT(jscan_double(MS_STR_LIT("-0.0"), &d), 0);
    CHECK(d == 0 && signbit(d));
    /* the view ends inside a longer number: strtod must not see the rest */
    CHECK_EQ_INT(jscan_double((ms_str){"1.55", 3}, &d), 0);
    CHECK(d == 1.5);
    CHECK_EQ_INT(jscan_double((ms_str){"2e10", 3}, &d), 0);
    CHECK(d == 20.0);
    /* numbers longer than the local copy */
    char big[700];
    big[0] = '1';
    memset(big + 1, '0', 299);
    char *p = dupn(big, 300);
    CHECK_EQ_INT(jscan_double((ms_str){p, 300}, &d), 0);
    CHECK(d == 1e299);
    free(p);
    memcpy(big, "0.", 2);
    memset(big + 2, '3', 600);
    p = dupn(big, 602);
    CHECK_EQ_INT(jscan_double((ms_str){p, 602}, &d), 0);
    CHECK(fabs(d - 1.0 / 3) < 1e-16);
    free(p);
}

static void test_string_decode(void)
{
    struct {
        const char *in;
        const char *out;
        long len;
    } cases[] = {
        {"\"\"", "", 0},
        {"\"abc\"", "abc", 3},
        {"\"a\\\"b\"", "a\"b", 3},
        {"\"\\\\\\/\\b\\f\\n\\r\\t\"", "\\/\b\f\n\r\t", 7},
        {"\"\\u0041\"", "A", 1},
        {"\"\\u00e9\"", "\xC3\xA9", 2},
        {"\"\\u07FF\"", "\xDF\xBF", 2},
        {"\"\\u0800\"", "\xE0\xA0\x80", 3},
        {"\"\\u20ac\"", "\xE2\x82\xAC", 3},
        {"\"\\uFFFF\"", "\xEF\xBF\xBF", 3},
        {"\"\\uD83D\\uDE00\"", "\xF0\x9F\x98\x80", 4},
        {"\"\\uD800\\uDC00\"", "\xF0\x90\x80\x80", 4},
        {"\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4},
        {"\"x\\uD83D\\uDE00y\"", "x\xF0\x9F\x98\x80y", 6},
        {"\"\xE2\x82\xAC raw\"", "\xE2\x82\xAC raw", 7},
        {"\"0123456789abcdef0123456789abcdef\\n0123456789abcdef\"",
         "0123456789abcdef0123456789abcdef\n0123456789abcdef", 49},
        /* not one valid string */
        {"abc", NULL, -1},
        {"\"abc", NULL, -1},
        {"abc\"", NULL, -1},
        {"\"", NULL, -1},
        {"", NULL, -1},
        {"\"a\"b\"", NULL, -1},
        {"\"\\\"", NULL, -1},
        {"\"\\x\"", NULL, -1},
        {"\"\\u12\"", NULL, -1},
        {"\"\\uD800\"", NULL, -1},
        {"\"\\uDC00\"", NULL, -1},
        {"\"\\uD800\\u0041\"", NULL, -1},
        {"\"\xC3\"", NULL, -1},
        {"\"\xED\xA0\x80\"", NULL, -1},
        {"\"\x01\"", NULL, -1},
        {"1", NULL, -1},
    };
    char out[64];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t n = strlen(cases[k].in);
        char *p = dupn(cases[k].in, n);
        long r = jscan_string((ms_str){p, n}, out, sizeof(out));
        if (r != cases[k].len) fprintf(stderr, "string case %zu %s: %ld\n", k, cases[k].in, r);
        CHECK_EQ_INT(r, cases[k].len);
        if (cases[k].out && r >= 0) {
            CHECK(memcmp(out, cases[k].out, (size_t)r) == 0);
            CHECK_EQ_INT(out[r], 0);
        }
        /* exact fit needs len + 1 bytes */
        if (r >= 0 && cases[k].out) {
            char *tight = malloc((size_t)r + 1);
            CHECK_EQ_INT(jscan_string((ms_str){p, n}, tight, (size_t)r + 1), r);
            CHECK(memcmp(tight, cases[k].out, (size_t)r) == 0);
            free(tight);
            if (r > 0) {
                char *small = malloc((size_t)r);
                CHECK_EQ_INT(jscan_string((ms_str){p, n}, small, (size_t)r), -1);
                free(small);
            }
        }
        free(p);
    }
    /* \u0000 decodes to a NUL inside; the length tells */
    long r = jscan_string(MS_STR_LIT("\"a\\u0000b\""), out, sizeof(out));
    CHECK_EQ_INT(r, 3);
    CHECK(memcmp(out, "a\0b", 4) == 0);
    CHECK_EQ_INT(jscan_string(MS_STR_LIT("\"a\""), out, 0), -1);
    CHECK_EQ_INT(jscan_string(MS_STR_LIT("\"a\""), NULL, 10), -1);
    /* a long prompt */
    size_t big = 100000;
    char *in = malloc(big + 2), *dec = malloc(big + 1);
    in[0] = '"';
    for (size_t k = 0; k < big; k++)
        in[k + 1] = (char)('a' + k % 26);
    in[big + 1] = '"';
    CHECK_EQ_INT(jscan_string((ms_str){in, big + 2}, dec, big + 1), (long)big);
    CHECK(memcmp(dec, in + 1, big) == 0);
    CHECK_EQ_INT(jscan_string((ms_str){in, big + 2}, dec, big), -1);
    free(in);
    free(dec);
}

/* Reference UTF-8 check written the long way (decode, then test the code point), to check the
 * table-driven one in jscan.c against. */
static int ref_utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned long cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return 0;
        }
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static int scan_string_bytes(const unsigned char *b, size_t len)
{
    char buf[16];
    buf[0] = '"';
    memcpy(buf + 1, b, len);
    buf[len + 1] = '"';
    return scan(buf, len + 2, NULL);
}

static void test_utf8_exhaustive(void)
{
    /* every code point encodes to something accepted; jscan_string gives back the same bytes */
    int bad = 0;
    for (unsigned long cp = 0x20; cp <= 0x10FFFF; cp++) {
        unsigned char b[4];
        size_t len;
        if (cp == '"' || cp == '\\') continue;
        if (cp < 0x80) {
            b[0] = (unsigned char)cp, len = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xC0 | cp >> 6), b[1] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xE0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 4;
        }
        int want = (cp >= 0xD800 && cp <= 0xDFFF) ? JSCAN_INVALID : JSCAN_NOT_OBJECT;
        if (scan_string_bytes(b, len) != want && bad++ < 5)
            fprintf(stderr, "code point U+%04lX\n", cp);
    }
    CHECK_EQ_INT(bad, 0);

    /* every 1- and 2-byte sequence, and every 3- and 4-byte one over interesting bytes,
     * agrees with the reference */
    static const unsigned char pick[] = {0x00, 0x1F, 0x20, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                         0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC,
                                         0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
    const size_t np = sizeof(pick);
    bad = 0;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            unsigned char s[2] = {(unsigned char)a, (unsigned char)b};
            for (size_t len = 1; len <= 2; len++) {
                if (len == 1 && b) continue;
                int plain = 1;
                for (size_t k = 0; k < len; k++)
                    if (s[k] < 0x20 || s[k] == '"' || s[k] == '\\') plain = 0;
                if (!plain) continue;
                int want = ref_utf8_ok(s, len) ? JSCAN_NOT_OBJECT : JSCAN_INVALID;
                if (scan_string_bytes(s, len) != want && bad++ < 5)
                    fprintf(stderr, "bytes %02X %02X len %zu\n", a, b, len);
            }
        }
    }
    for (unsigned a = 0x80; a < 256; a++)
        for (size_t x = 0; x < np; x++)
            for (size_t y = 0; y < np; y++)
                for (size_t z = 0; z <= np; z++) {
                    unsigned char s[4] = {(unsigned char)a, pick[x], pick[y], 0};
                    size_t len = 3;
                    if (z < np) s[3] = pick[z], len = 4;
                    int plain = 1;
                    for (size_t k = 0; k < len; k++)
                        if (s[k] < 0x20 || s[k] == '"' || s[k] == '\\') plain = 0;
                    if (!plain) continue;
                    int want = ref_utf8_ok(s, len) ? JSCAN_NOT_OBJECT : JSCAN_INVALID;
                    if (scan_string_bytes(s, len) != want && bad++ < 5)
                        fprintf(stderr, "bytes %02X %02X %02X len %zu\n", s[0], s[1], s[2], len);
                }
    CHECK_EQ_INT(bad, 0);
}

/* Every byte at every position of a string long enough for the vector paths (32 bytes a turn,
 * then 16, then bytes: two turns of 32 and every tail). */
static void test_fast_path_positions(void)
{
    int bad = 0;
    for (size_t len = 0; len < 72; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            for (unsigned c = 0; c < 256; c++) {
                char buf[80];
                buf[0] = '"';
                memset(buf + 1, 'x', len);
                buf[1 + pos] = (char)c;
                buf[1 + len] = '"';
                int want = (c < 0x20 || c == '\\' || c >= 0x80) ? JSCAN_INVALID : JSCAN_NOT_OBJECT;
                if (c == '"') want = JSCAN_INVALID; /* the string ends early, then garbage */
                size_t err = 0;
                int r = scan(buf, len + 2, &err);
                if (r != want && bad++ < 5)
                    fprintf(stderr, "len %zu pos %zu byte %02X: %d\n", len, pos, c, r);
                if (r == JSCAN_INVALID && c != '"' && c != '\\' && err != pos + 1 && bad++ < 5)
                    fprintf(stderr, "len %zu pos %zu byte %02X: err %zu\n", len, pos, c, err);
            }
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* strings ending exactly at the end of input, with no closing quote */
    for (size_t len = 0; len < 40; len++) {
        char buf[64];
        buf[0] = '"';
        memset(buf + 1, 'y', len);
        size_t err = 0;
        CHECK_EQ_INT(scan(buf, len + 1, &err), JSCAN_INVALID);
        CHECK_EQ_INT(err, len + 1);
    }
}

/* ---- differential test against jansson ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const char *seeds[] = {
    "{}",
    "[]",
    "{\"a\":1}",
    "{\"model\":\"gpt-4o\",\"stream\":true,\"max_tokens\":100}",
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\\n\\\"there\\\"\"}],\"temperature\":0.7}",
    "[1,-2,3.5,-4e10,0.0e-1,true,false,null,\"s\"]",
    "{\"k\":{\"k\":{\"k\":[[[{}]]]}}}",
    "\"\\u00e9\\uD83D\\uDE00\\t\\/\"",
    "{\"\xC3\xA9\":\"\xE2\x82\xAC\xF0\x9F\x98\x80\"}",
    "-0.5E+3",
    "123456789012345678",
    "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\",\"a\":2}",
    "{ \"sp\" : [ 1 , 2 ] , \"x\" : { } }",
    "true",
    "null",
    "\"0123456789abcdef0123456789abcdef\"",
};

static const char alphabet[] = "{}[]\",:0123456789-+.eE \t\n\rtrufalsn\\/bfnrtuABCDEF\x00\x01\x1f"
                               "\x7f\x80\xbf\xc0\xc2\xdf\xe0\xed\xef\xf0\xf4\xf5\xff";

static size_t mutate(char *buf, size_t n, size_t cap)
{
    int ops = 1 + (int)(rng() % 3);
    for (int k = 0; k < ops; k++) {
        size_t pos = n ? rng() % (n + 1) : 0;
        char c = alphabet[rng() % (sizeof(alphabet) - 1)];
        switch (rng() % 7) {
        case 0: /* replace */
            if (pos < n) buf[pos] = c;
            break;
        case 1: /* insert */
            if (n < cap) {
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = c;
                n++;
            }
            break;
        case 2: /* delete */
            if (pos < n) {
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
            }
            break;
        case 3: /* truncate */
            n = pos;
            break;
        case 4: { /* duplicate a slice */
            size_t len = 1 + rng() % 8;
            if (pos + len <= n && n + len <= cap) {
                memmove(buf + pos + len, buf + pos, n - pos);
                n += len;
            }
            break;
        }
        case 5: /* insert a seed (splice two documents) */ {
            const char *s = seeds[rng() % (sizeof(seeds) / sizeof(seeds[0]))];
            size_t len = strlen(s);
            if (n + len <= cap) {
                memmove(buf + pos + len, buf + pos, n - pos);
                memcpy(buf + pos, s, len);
                n += len;
            }
            break;
        }
        default: /* random byte */
            if (pos < n) buf[pos] = (char)(rng() & 0xFF);
            break;
        }
    }
    return n;
}

/* Checks members and string values of an object jansson also parsed. Returns 0 if they agree. */
static int compare_object(const char *p, size_t n, json_t *obj)
{
    jscan_member m[64];
    int r = jscan_object(p, n, m, 64, NULL);
    if (r < 0 || r > 64) return r < 0 ? -1 : 0;
    size_t distinct = 0;
    for (int k = 0; k < r; k++) {
        char key[512];
        long kl = jscan_string((ms_str){m[k].key.p - 1, m[k].key.n + 2}, key, sizeof(key));
        if (kl < 0 || (size_t)kl != strlen(key)) return -1;
        if (jscan_find(m, (size_t)r, key) == &m[k])
            distinct++;
        else
            continue; /* a later duplicate wins, as in jansson */
        json_t *jv = json_object_get(obj, key);
        if (!jv) return -1;
        json_error_t e;
        json_t *mine = json_loadb(m[k].value.p, m[k].value.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        int same = mine && json_equal(mine, jv);
        json_decref(mine);
        if (!same) return -1;
        if (m[k].type == JS_STRING) {
            char val[512];
            long vl = jscan_string(m[k].value, val, sizeof(val));
            if (vl < 0 || (size_t)vl != json_string_length(jv) ||
                memcmp(val, json_string_value(jv), (size_t)vl) != 0)
                return -1;
        }
        if (m[k].type == JS_NUMBER && json_is_integer(jv)) {
            int64_t iv;
            if (jscan_int(m[k].value, &iv) < 0 || iv != json_integer_value(jv)) return -1;
        }
        if (m[k].type == JS_NUMBER && json_is_real(jv)) {
            double dv;
            if (jscan_double(m[k].value, &dv) < 0 || dv != json_real_value(jv)) return -1;
        }
    }
    return distinct == json_object_size(obj) ? 0 : -1;
}

static void test_jansson_differential(void)
{
    const size_t cap = 256;
    int disagree = 0, valid = 0, skipped = 0, objects = 0, members_valid_checked = 0;
    for (int it = 0; it < 100000; it++) {
        char buf[256];
        const char *s = seeds[rng() % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        n = mutate(buf, n, cap);
        char *p = dupn(buf, n);
        json_error_t e;
        json_t *j = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        size_t err = 0;
        int r = jscan_object(p, n, NULL, 0, &err);
        int mine_ok = r != JSCAN_INVALID;
        /* jscan_members_valid: on any input, no read outside p[0..n) (the sanitizer and
         * valgrind runs watch this heap copy) and a sane count; on a valid object, exactly the
         * members the validating scanner finds */
        {
            jscan_member a[8], b[8];
            int rv = jscan_members_valid((ms_str){p, n}, b, 8);
            if (rv != JSCAN_NOT_OBJECT && (rv < 0 || (size_t)rv > n) && disagree++ < 10)
                fprintf(stderr, "members_valid count %d for %zu bytes\n", rv, n);
            if (r >= 0) {
                r = jscan_object(p, n, a, 8, NULL);
                int same = rv == r;
                for (int k = 0; same && k < (r < 8 ? r : 8); k++)
                    same = a[k].key.n == b[k].key.n && a[k].key.p == b[k].key.p &&
                           a[k].value.p == b[k].value.p && a[k].value.n == b[k].value.n &&
                           a[k].type == b[k].type && a[k].start == b[k].start &&
                           a[k].end == b[k].end;
                if (!same && disagree++ < 10)
                    fprintf(stderr, "members_valid differs (%d vs %d): %.*s\n", rv, r, (int)n, p);
                members_valid_checked++;
            }
        }
        if (!j && mine_ok &&
            (strstr(e.text, "too big") || strstr(e.text, "real number overflow") ||
             strstr(e.text, "NUL byte in object key"))) {
            /* valid JSON jansson will not represent: jscan is right to accept it */
            skipped++;
        } else if (j && !mine_ok && memchr(p, '\0', n)) {
            /* jansson 2.14 takes a raw NUL byte after a token for the end of the input (it
             * accepts "null\0" and even "[1,2\0]"); a raw NUL is never valid JSON */
            skipped++;
        } else if (mine_ok != (j != NULL)) {
            if (disagree++ < 10)
                fprintf(stderr, "differs (jscan %d, jansson %s): %.*s\n", r, j ? "ok" : e.text,
                        (int)n, p);
        } else if (j) {
            valid++;
            if ((r >= 0) != json_is_object(j) && disagree++ < 10)
                fprintf(stderr, "object-ness differs: %.*s\n", (int)n, p);
            if (json_is_object(j)) {
                objects++;
                if (compare_object(p, n, j) < 0 && disagree++ < 10)
                    fprintf(stderr, "members differ: %.*s\n", (int)n, p);
            }
        } else if (err > n && disagree++ < 10) {
            fprintf(stderr, "err_off %zu past end %zu\n", err, n);
        }
        json_decref(j);
        free(p);
    }
    printf("# differential: %d valid (%d objects), %d skipped (jansson limits or quirks), %d "
           "disagree\n",
           valid, objects, skipped, disagree);
    CHECK_EQ_INT(disagree, 0);
    CHECK(valid > 5000); /* the mutations must leave a fair share valid to mean anything */
    CHECK(objects > 1000);
    CHECK(members_valid_checked > 1000);
}

/* jscan_members_valid on the shapes the stream path gives it, nested values and white space. */
static void test_members_valid(void)
{
    jscan_member m[8];
    const char *doc = " { \"index\" : 0 , \"delta\":{\"content\":\"a,}\\\"b\"},"
                      "\"x\":[1,{\"y\":\"]\"}] ,\"n\":null } ";
    int r = jscan_members_valid((ms_str){doc, strlen(doc)}, m, 8);
    CHECK_EQ_INT(r, 4);
    CHECK(mstr_eq(m[0].key, "index"));
    CHECK(mstr_eq(m[0].value, "0"));
    CHECK_EQ_INT(m[0].type, JS_NUMBER);
    CHECK(mstr_eq(m[1].key, "delta"));
    CHECK(mstr_eq(m[1].value, "{\"content\":\"a,}\\\"b\"}"));
    CHECK_EQ_INT(m[1].type, JS_OBJECT);
    CHECK(mstr_eq(m[2].value, "[1,{\"y\":\"]\"}]"));
    CHECK_EQ_INT(m[2].type, JS_ARRAY);
    CHECK(mstr_eq(m[3].key, "n"));
    CHECK_EQ_INT(m[3].type, JS_NULL);
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("{}"), m, 8), 0);
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("{\"a\":1},{\"b\":2}"), m, 8), JSCAN_NOT_OBJECT);
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("[1]"), m, 8), JSCAN_NOT_OBJECT);
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("{\"a\":"), m, 8), JSCAN_NOT_OBJECT);
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("{\"a\\\""), m, 8), JSCAN_NOT_OBJECT);
    CHECK_EQ_INT(jscan_members_valid((ms_str){NULL, 0}, m, 8), JSCAN_NOT_OBJECT);
    /* more members than room: all counted, the first max recorded */
    CHECK_EQ_INT(jscan_members_valid(MS_STR_LIT("{\"a\":1,\"b\":2,\"c\":3}"), m, 2), 3);
    CHECK(mstr_eq(m[1].key, "b"));
}

/* jscan_iter: members and elements one at a time, white space around them trimmed, strings
 * holding structural bytes passed over, past set at the close; peek and past: an element whose
 * length the caller gives (or not) leaves the iterator where a full walk would have. */
static void test_iter(void)
{
    jscan_iter it;
    jscan_member m;
    ms_str v;
    jscan_type t;
    const char *obj = " { \"a\" : [1, \"],}\" ] , \"b\\u0041\":{\"c\":{}} ,\"d\":null } ";
    CHECK_EQ_INT(jscan_iter_start(&it, (ms_str){obj, strlen(obj)}), 0);
    CHECK_EQ_INT(jscan_iter_value(&it, &v, &t), 0); /* an object has no elements */
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 1);
    CHECK(mstr_eq(m.key, "a") && m.key_plain);
    CHECK(mstr_eq(m.value, "[1, \"],}\" ]"));
    CHECK_EQ_INT(m.type, JS_ARRAY);
    CHECK_EQ_INT(it.past, 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 1);
    CHECK(mstr_eq(m.key, "b\\u0041") && !m.key_plain);
    CHECK(mstr_eq(m.value, "{\"c\":{}}"));
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 1);
    CHECK(mstr_eq(m.value, "null") && m.type == JS_NULL);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 0);
    CHECK_EQ_INT(it.past, strlen(obj) - 1); /* just past the close, before the trailing space */

    const char *arr = "[ \"x\" ,{\"k\":[\"}\"]}, 12.5e1,true ,[] ]";
    const char *want[] = {"\"x\"", "{\"k\":[\"}\"]}", "12.5e1", "true", "[]"};
    const jscan_type types[] = {JS_STRING, JS_OBJECT, JS_NUMBER, JS_TRUE, JS_ARRAY};
    CHECK_EQ_INT(jscan_iter_start(&it, (ms_str){arr, strlen(arr)}), 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 0); /* an array has no members */
    for (int k = 0; k < 5; k++) {
        CHECK_EQ_INT(jscan_iter_value(&it, &v, &t), 1);
        CHECK(mstr_eq(v, want[k]));
        CHECK_EQ_INT(t, types[k]);
    }
    CHECK_EQ_INT(jscan_iter_value(&it, &v, &t), 0);
    CHECK_EQ_INT(it.past, strlen(arr));

    /* peek: v runs to the array's end; past with the right length, with 0 (looked for) and with
     * a length beyond the text (looked for too) all land on the next element */
    for (int mode = 0; mode < 3; mode++) {
        CHECK_EQ_INT(jscan_iter_start(&it, (ms_str){arr, strlen(arr)}), 0);
        for (int k = 0; k < 5; k++) {
            CHECK_EQ_INT(jscan_iter_peek(&it, &v, &t), 1);
            CHECK_EQ_INT(t, types[k]);
            CHECK(v.p + v.n == arr + strlen(arr));
            CHECK(strncmp(v.p, want[k], strlen(want[k])) == 0);
            jscan_iter_past(&it, mode == 0 ? strlen(want[k]) : mode == 1 ? 0 : v.n + 1);
        }
        CHECK_EQ_INT(jscan_iter_peek(&it, &v, &t), 0);
        CHECK_EQ_INT(it.past, strlen(arr));
    }

    /* empty containers, and what is neither */
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT(" { } ")), 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 0);
    CHECK_EQ_INT(it.past, 4);
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT("[]")), 0);
    CHECK_EQ_INT(jscan_iter_peek(&it, &v, &t), 0);
    CHECK_EQ_INT(it.past, 2);
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT("\"[]\"")), -1);
    CHECK_EQ_INT(jscan_iter_value(&it, &v, &t), 0);
    CHECK_EQ_INT(jscan_iter_start(&it, (ms_str){NULL, 0}), -1);
    /* text that is not as promised: nothing more, never a read outside it */
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT("{\"a\":")), 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), -1);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), 0);
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT("[1")), 0);
    CHECK_EQ_INT(jscan_iter_value(&it, &v, &t), -1);
    CHECK_EQ_INT(jscan_iter_start(&it, MS_STR_LIT("{1:2}")), 0);
    CHECK_EQ_INT(jscan_iter_member(&it, &m), -1);
}

/* Every member and element of v, depth first, by the iterators and jscan_members_valid: their
 * keys, offsets from base and types, appended to out (the walk's whole account). */
static void skips_walk(ms_str v, const char *base, buf_t *out, int depth)
{
    jscan_iter it;
    jscan_member m;
    ms_str e;
    jscan_type t;
    if (depth > 20 || jscan_iter_start(&it, v) != 0) return;
    int r;
    while ((r = jscan_iter_member(&it, &m)) > 0) {
        buf_printf(out, "m%.*s@%zu+%zu:%d ", (int)m.key.n, m.key.p, (size_t)(m.value.p - base),
                   m.value.n, (int)m.type);
        skips_walk(m.value, base, out, depth + 1);
    }
    while ((r = jscan_iter_value(&it, &e, &t)) > 0) {
        buf_printf(out, "e@%zu+%zu:%d ", (size_t)(e.p - base), e.n, (int)t);
        skips_walk(e, base, out, depth + 1);
    }
    buf_printf(out, "r%d past%zu ", r, it.past);
    jscan_member mv[8];
    int n = jscan_members_valid(v, mv, 8);
    buf_printf(out, "v%d ", n);
    for (int i = 0; i < n && i < 8; i++)
        buf_printf(out, "%zu+%zu ", (size_t)(mv[i].value.p - base), mv[i].value.n);
}

/* A document of long values: strings of len bytes (an escape and UTF-8 among them), arrays and
 * objects that hold them, deeper each round. */
static void skips_doc(buf_t *b, int len, int values)
{
    buf_appends(b, "{\"model\":\"m\",\"messages\":[");
    for (int i = 0; i < values; i++) {
        buf_printf(b, "%s{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"",
                   i ? "," : "");
        for (int k = 0; k < len; k++)
            buf_appends(b, k % 97 == 5 ? "\\n" : k % 89 == 7 ? "\xc3\xa9" : k % 13 ? "x" : "]");
        buf_printf(b, "\"},{\"type\":\"image\",\"n\":[%d,{\"deep\":[[[\"%*s\"]]]}]}]}", i, len,
                   "y");
    }
    buf_appends(b, "],\"stream\":true}");
}

/* Notes of long values: walks with them in use give exactly what walks without give, on the
 * whole document, on views inside it and on views cut short; they are really used (a value
 * changed after the notes were taken is jumped over as noted); bytes that are not JSON are
 * noted within their bounds; more long values than the notes hold are walked as before. */
static void test_skips(void)
{
    const int lens[] = {10, 255, 256, 300, 4000};
    const int counts[] = {1, 3, 40};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (size_t ci = 0; ci < sizeof counts / sizeof *counts; ci++) {
            buf_t d, a, w;
            buf_init(&d, 1 << 24);
            buf_init(&a, 1 << 24);
            buf_init(&w, 1 << 24);
            skips_doc(&d, lens[li], counts[ci]);
            char *doc = dupn(d.data, d.len);
            ms_str v = {doc, d.len};
            jscan_skips sk;
            jscan_member top[8];
            CHECK_EQ_INT(jscan_object(doc, d.len, top, 8, NULL), 3);
            skips_walk(v, doc, &a, 0);
            /* the first walk with notes notes as it goes, the second jumps by them */
            jscan_skips_begin(&sk, doc, d.len);
            for (int pass = 0; pass < 2; pass++) {
                w.len = 0;
                skips_walk(v, doc, &w, 0);
                CHECK(a.len == w.len && memcmp(a.data, w.data, a.len) == 0);
            }
            jscan_skips_end();
            CHECK(sk.base == doc && sk.n == d.len);
            CHECK(lens[li] < JSCAN_SKIP_MIN - 8 || sk.count > 0); /* its long texts */
            CHECK(sk.count <= JSCAN_SKIPS / 2);
            /* views cut short, from the start and from inside: the same with notes and without */
            for (size_t cut = 1; cut < d.len; cut += d.len / 7 + 1) {
                ms_str part = {doc, d.len - cut}, inner = {doc + cut, d.len - cut};
                ms_str views[2] = {part, inner};
                for (int k = 0; k < 2; k++) {
                    a.len = w.len = 0;
                    skips_walk(views[k], doc, &a, 0);
                    jscan_skips_begin(&sk, doc, d.len); /* notes of the whole, then of none */
                    skips_walk(v, doc, &w, 0);
                    for (int pass = 0; pass < 2; pass++) {
                        w.len = 0;
                        skips_walk(views[k], doc, &w, 0);
                        CHECK(a.len == w.len && memcmp(a.data, w.data, a.len) == 0);
                        jscan_skips_end();
                        jscan_skips_begin(&sk, doc, d.len);
                    }
                    jscan_skips_end();
                }
            }
            free(doc);
            buf_free(&d);
            buf_free(&a);
            buf_free(&w);
        }

    /* really used: the long text turned into two members after the notes were taken */
    char doc[600];
    int n = snprintf(doc, sizeof doc, "{\"a\":\"%0300d\",\"b\":1}", 0);
    jscan_skips sk;
    jscan_member m[4];
    CHECK_EQ_INT(jscan_object(doc, (size_t)n, m, 4, NULL), 2);
    jscan_member mv[4];
    jscan_skips_begin(&sk, doc, (size_t)n);
    CHECK_EQ_INT(jscan_members_valid((ms_str){doc, (size_t)n}, mv, 4), 2);
    CHECK_EQ_INT(sk.count, 1); /* the text */
    memcpy(doc + 10, "\",\"x\":\"", 7);
    CHECK_EQ_INT(jscan_members_valid((ms_str){doc, (size_t)n}, mv, 4), 2);
    jscan_skips_end();
    CHECK(mstr_eq(mv[1].key, "b"));
    CHECK_EQ_INT(jscan_members_valid((ms_str){doc, (size_t)n}, mv, 4), 3);
    /* bytes that are not JSON (cut, unclosed, nested past the limit): the notes stay within
     * them, and walks with them stay within their views (ASan watches the exact-size copy) */
    const char *odd[] = {"{\"a\":\"", "[[[[", "]]]}}", "\"\\", ""};
    buf_t junk;
    buf_init(&junk, 1 << 20);
    for (size_t k = 0; k < sizeof odd / sizeof *odd; k++) {
        char *c = dupn(odd[k], strlen(odd[k]));
        jscan_skips_begin(&sk, c, strlen(odd[k]));
        for (int pass = 0; pass < 2; pass++)
            skips_walk((ms_str){c, strlen(odd[k])}, c, &junk, 0);
        jscan_skips_end();
        for (unsigned h = 0; h < JSCAN_SKIPS; h++)
            CHECK(sk.slot[h].end <= strlen(odd[k]));
        free(c);
    }
    /* nested deeper than the noting follows: what is deeper is passed over, not noted */
    char deep[2 * JSCAN_MAX_DEPTH + 600];
    size_t dn = 0;
    for (int k = 0; k < 40; k++)
        deep[dn++] = '[';
    dn += (size_t)snprintf(deep + dn, sizeof deep - dn, "\"%0400d\"", 0);
    for (int k = 0; k < 40; k++)
        deep[dn++] = ']';
    jscan_skips_begin(&sk, deep, dn);
    CHECK_EQ_INT(jscan_members_valid((ms_str){deep, dn}, mv, 4), JSCAN_NOT_OBJECT);
    jscan_iter it;
    ms_str e;
    jscan_type t;
    CHECK_EQ_INT(jscan_iter_start(&it, (ms_str){deep, dn}), 0);
    CHECK_EQ_INT(jscan_iter_value(&it, &e, &t), 1);
    CHECK(e.n == dn - 2 && t == JS_ARRAY);
    jscan_skips_end();
    CHECK(sk.count >= 1 && sk.count <= JSCAN_SKIPS / 2); /* the string, the arrays it reached */
    jscan_skips_begin(&sk, NULL, 0);
    CHECK(sk.count == 0 && sk.base == NULL);
    jscan_skips_end();
    buf_free(&junk);
}

/* key_plain: set exactly when a reported key has no backslash, by both scanners, short keys
 * (the vector fast path), long ones and escaped ones; lookups read escaped keys as before, and
 * a member made by hand (key_plain 0: not known) still decodes. */
static void test_key_plain(void)
{
    jscan_member m[8];
    const jscan_key keys[] = {JSCAN_KEY("a_key_longer_than_sixteen"), JSCAN_KEY("usage"),
                              JSCAN_KEY("model")};
    const jscan_member *out[3];
    const char *doc = "{\"usage\":{\"x\\u0041\":1},\"a_key_longer_than_sixteen\":2,"
                      "\"mod\\u0065l\":3,\"a_key_longer_than_sixt\\u0065en\":4,\"p\\\\q\":5}";
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? jscan_object(doc, strlen(doc), m, 8, NULL)
                          : jscan_members_valid((ms_str){doc, strlen(doc)}, m, 8);
        CHECK_EQ_INT(n, 5);
        CHECK_EQ_INT(m[0].key_plain, 1);
        CHECK_EQ_INT(m[1].key_plain, 1);
        CHECK_EQ_INT(m[2].key_plain, 0);
        CHECK_EQ_INT(m[3].key_plain, 0);
        CHECK_EQ_INT(m[4].key_plain, 0);
        jscan_pick(m, 5, keys, 3, out);
        CHECK(out[0] == &m[3]); /* the last of two spellings */
        CHECK(out[1] == &m[0]);
        CHECK(out[2] == &m[2]);
        CHECK(jscan_find(m, 5, "p\\q") == &m[4]);
        CHECK(jscan_find(m, 5, "p\\\\q") == NULL); /* the raw text is not the name */
        m[0].key_plain = 0;                        /* as made by hand: not known */
        CHECK(jscan_find(m, 5, "usage") == &m[0]);
    }
    /* a raw key that equals a name with a backslash in it byte for byte is not that name */
    jscan_member h = {.key = MS_STR_LIT("a\\nb"), .key_plain = 0};
    CHECK(jscan_find(&h, 1, "a\\nb") == NULL);
    CHECK(jscan_find(&h, 1, "a\nb") == &h);
}

/* Duplicates of a picked name are found however the key is written; others may repeat. */
static void test_pick_unique(void)
{
    jscan_member m[16];
    static const jscan_key keys[] = {JSCAN_KEY("model"), JSCAN_KEY("stream")};
    const jscan_member *out[2];
    const char *ok = "{\"model\":\"a\",\"t\":1,\"t\":2,\"str\\u0065am\":true}";
    int n = jscan_object(ok, strlen(ok), m, 16, NULL);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(jscan_pick_unique(m, (size_t)n, keys, 2, out), -1);
    CHECK(out[0] == &m[0]);
    CHECK(out[1] == &m[3]);
    const char *dup = "{\"stream\":false,\"model\":\"a\",\"str\\u0065am\":true}";
    n = jscan_object(dup, strlen(dup), m, 16, NULL);
    CHECK_EQ_INT(jscan_pick_unique(m, (size_t)n, keys, 2, out), 1);
    const char *dup2 = "{\"model\":\"a\",\"x\":1,\"\\u006dodel\":\"b\"}";
    n = jscan_object(dup2, strlen(dup2), m, 16, NULL);
    CHECK_EQ_INT(jscan_pick_unique(m, (size_t)n, keys, 2, out), 0);
    CHECK_EQ_INT(jscan_pick_unique(NULL, 0, keys, 2, out), -1);
    CHECK(out[0] == NULL && out[1] == NULL);
    /* the comparison splices use: decoded, and by length */
    CHECK(jscan_key_eq(MS_STR_LIT("include_\\u0075sage"), "include_usage", 13));
    CHECK(jscan_key_eq(MS_STR_LIT("include_usage"), "include_usage", 13));
    CHECK(!jscan_key_eq(MS_STR_LIT("include_usag"), "include_usage", 13));
    CHECK(!jscan_key_eq(MS_STR_LIT("a\\u0000b"), "a", 1));
    CHECK(jscan_key_eq(MS_STR_LIT("a\\u0000b"), "a\0b", 3));
}

/* jscan_key_index: the first of the table a name is, decoded; the table's size for none. A
 * name's escape is looked for once and then kept: later keys must still see it. */
static void test_key_index(void)
{
    static const jscan_key keys[] = {JSCAN_KEY("x"), JSCAN_KEY("ab"), JSCAN_KEY("abc"),
                                     JSCAN_KEY("top_p")};
    static const struct {
        const char *raw;
        size_t want;
    } t[] = {
        {"x", 0},         {"ab", 1},      {"abc", 2},         {"top_p", 3},       {"\\u0061b", 1},
        {"a\\u0062c", 2}, {"\\u0078", 0}, {"top\\u005fp", 3}, {"abcd", 4},        {"", 4},
        {"a", 4},         {"\\u0061", 4}, {"xx", 4},          {"top_\\u0070", 3}, {"a\\\"b", 4},
        {"\\u0000", 4},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        ms_str raw = {t[i].raw, strlen(t[i].raw)};
        CHECK_EQ_INT((int)jscan_key_index(raw, keys, 4), (int)t[i].want);
        size_t slow = 0; /* the one-key comparison, key by key */
        while (slow < 4 && !jscan_key_eq(raw, keys[slow].s, keys[slow].n))
            slow++;
        CHECK_EQ_INT((int)slow, (int)t[i].want);
    }
    CHECK_EQ_INT((int)jscan_key_index((ms_str){NULL, 0}, keys, 4), 4);
    CHECK_EQ_INT((int)jscan_key_index(MS_STR_LIT("x"), keys, 0), 0);
}

int main(void)
{
    RUN(test_valid_table);
    RUN(test_invalid_table);
    RUN(test_members);
    RUN(test_max_members);
    RUN(test_find);
    RUN(test_pick);
    RUN(test_depth);
    RUN(test_int);
    RUN(test_double);
    RUN(test_string_decode);
    RUN(test_utf8_exhaustive);
    RUN(test_fast_path_positions);
    RUN(test_jansson_differential);
    RUN(test_members_valid);
    RUN(test_iter);
    RUN(test_skips);
    RUN(test_pick_unique);
    RUN(test_key_plain);
    RUN(test_key_index);
    TAP_DONE();
}
