/*
 * Unit tests for src/common/jtree.c: jtree_load must give what jansson's json_loadb(...,
 * JSON_ALLOW_NUL) gives, value for value (json_equal), and fail where it fails: on a table of
 * documents (escapes, surrogate pairs, \u0000 in values and in names, duplicate names, numbers
 * at int64's and double's edges, white space, top-level scalars, trailing bytes) and on every
 * one-byte change of a chat request and of an Anthropic one (each byte replaced by each of a
 * set of bytes that matter to JSON, deleted, or doubled). The one decided difference: nesting
 * deeper than jscan's 128 levels, which jansson takes up to 2048; the gateway refuses such
 * bodies before any translation. Also: a long string with and without escapes, the error
 * texts the callers put in their refusals, jtree_load_valid (the same tree of every document
 * jscan accepts; its own bound on nesting), jtree_obj, and jtree_holds (whether the tree would be
 * built, asked of every document of the table and of the changes), jtree_holds_key and
 * jtree_number_kind.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/jtree.h"
#include "tap.h"

static int same(const char *p, size_t n)
{
    json_error_t e1, e2;
    json_t *a = json_loadb(p, n, JSON_ALLOW_NUL, &e1);
    json_t *b = jtree_load(p, n, &e2);
    int ok = (a == NULL) == (b == NULL) && (!a || json_equal(a, b));
    if (!ok)
        fprintf(stderr, "differs on [%.*s]: jansson %s (%s), jtree %s (%s)\n", (int)n, p,
                a ? "ok" : "fails", a ? "" : e1.text, b ? "ok" : "fails", b ? "" : e2.text);
    /* of a document jscan accepts, jtree_load_valid builds the same tree */
    if (jscan_object(p, n, NULL, 0, NULL) != JSCAN_INVALID) {
        json_t *c = jtree_load_valid(p, n, NULL);
        if ((c == NULL) != (b == NULL) || (c && !json_equal(b, c))) {
            fprintf(stderr, "jtree_load_valid differs on [%.*s]\n", (int)n, p);
            ok = 0;
        }
        json_decref(c);
    }
    /* jtree_holds says, of a document jscan accepts with an object or array at the top,
     * whether the tree is built */
    size_t i = 0;
    while (i < n && strchr(" \t\r\n", p[i]))
        i++;
    if (i < n && (p[i] == '{' || p[i] == '[') &&
        jscan_object(p, n, NULL, 0, NULL) != JSCAN_INVALID && jtree_holds((ms_str){p, n}) != !!b) {
        fprintf(stderr, "jtree_holds differs on [%.*s]\n", (int)n, p);
        ok = 0;
    }
    json_decref(a);
    json_decref(b);
    return ok;
}

#define SAME(lit) CHECK(same(lit, sizeof(lit) - 1))

static void test_table(void)
{
    SAME("{}");
    SAME("[]");
    SAME(" \t\r\n{ \"a\" : 1 , \"b\" : [ true , false , null ] } \n");
    SAME("{\"a\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\"}");
    SAME("{\"a\":\"\\u00e9\\u20ac\\ud83d\\ude00\"}");
    SAME("{\"a\":\"\\ud83d\"}");     /* a lone high surrogate */
    SAME("{\"a\":\"\\ude00\"}");     /* a lone low surrogate */
    SAME("{\"a\":\"x\\u0000y\"}");   /* NUL in a value: kept */
    SAME("{\"a\\u0000b\":1}");       /* NUL in a name: refused */
    SAME("{\"a\":1,\"a\":2}");       /* the last one wins */
    SAME("{\"\\u0061\":1,\"a\":2}"); /* names compared decoded */
    SAME("[9223372036854775807,-9223372036854775808]");
    SAME("[9223372036854775808]");
    SAME("[-9223372036854775809]");
    SAME("[0,-0,1.5,-0.0,1e3,1E-3,2.5e+10,1e308,1e-400]");
    SAME("[1e309]");
    SAME("[-1e309]");
    SAME("[01]");
    SAME("[1.]");
    SAME("[.5]");
    SAME("[+1]");
    SAME("[-]");
    SAME("[1e]");
    SAME("\"top\"");
    SAME("42");
    SAME("true");
    SAME("{\"a\":1} x");
    SAME("{\"a\":1}{}");
    SAME("");
    SAME("   ");
    SAME("{\"a\":[1,2,]}");
    SAME("{\"a\":1,}");
    SAME("{\"a\" 1}");
    SAME("{\"a\":tru}");
    SAME("{\"a\":\"\x01\"}");
    SAME("{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}");
    SAME("{\"a\":\"\xc0\xaf\"}");     /* overlong */
    SAME("{\"a\":\"\xed\xa0\x80\"}"); /* a surrogate in UTF-8 */
    SAME("{\"a\":\"\xf4\x90\x80\x80\"}");
    SAME("{\"a\":\"\\x\"}");
    SAME("{\"a\":\"\\u12g4\"}");
    char deep[300];
    int d = 100;
    memset(deep, '[', (size_t)d);
    memset(deep + d, ']', (size_t)d);
    CHECK(same(deep, 2 * (size_t)d));
}

static void mutate_all(const char *doc)
{
    static const char bytes[] = "{}[]\":,\\ u0-1eE.tfnx\x01\x80\xff";
    size_t n = strlen(doc);
    char *m = malloc(n + 2);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        for (size_t b = 0; b < sizeof bytes - 1; b++) {
            memcpy(m, doc, n);
            m[i] = bytes[b];
            bad += !same(m, n);
        }
        /* deleted, doubled */
        memcpy(m, doc, i);
        memcpy(m + i, doc + i + 1, n - i - 1);
        bad += !same(m, n - 1);
        memcpy(m, doc, i + 1);
        memcpy(m + i + 1, doc + i, n - i);
        bad += !same(m, n + 1);
    }
    free(m);
    CHECK_EQ_INT(bad, 0);
}

static void test_mutations(void)
{
    mutate_all("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
               "brief.\\n\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi "
               "\\u00e9\\ud83d\\ude00\"}]}],\"max_tokens\":64,\"temperature\":0.7,\"stream\":true,"
               "\"stop\":null,\"tools\":[]}");
    mutate_all(
        "{\"model\":\"claude-sonnet-4\",\"max_tokens\":1024,\"system\":[{\"type\":"
        "\"text\",\"text\":\"x\",\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":"
        "[{\"role\":\"user\",\"content\":\"caf\xc3\xa9\"}],\"metadata\":{\"user_id\":\"u1\"},"
        "\"top_k\":-1,\"top_p\":1e-2}");
}

static void test_long_strings(void)
{
    size_t n = 200000;
    char *doc = malloc(n + 64);
    for (int esc = 0; esc < 2; esc++) {
        size_t o = (size_t)sprintf(doc, "{\"content\":\"");
        for (size_t i = 0; i < n; i++)
            doc[o++] = esc && i % 1000 == 999 ? 'n' : (char)('a' + i % 26);
        if (esc) /* "\\n" every 1000 bytes: the content's byte 998 a backslash, 999 an n */
            for (size_t i = 998; i < n; i += 1000)
                doc[12 + i] = '\\';
        o += (size_t)sprintf(doc + o, "\"}");
        CHECK(same(doc, o));
        json_t *v = jtree_load(doc, o, NULL);
        CHECK_EQ_INT(json_string_length(json_object_get(v, "content")), esc ? n - n / 1000 : n);
        json_decref(v);
    }
    free(doc);
}

static void test_error_texts(void)
{
    json_error_t e;
    CHECK(jtree_load("[9223372036854775808]", 21, &e) == NULL);
    CHECK_EQ_STR(e.text, "too big integer");
    CHECK(jtree_load("[1e999]", 7, &e) == NULL);
    CHECK_EQ_STR(e.text, "real number overflow");
    CHECK(jtree_load("{\"a\\u0000\":1}", 13, &e) == NULL);
    CHECK_EQ_STR(e.text, "NUL byte in object key not supported");
    CHECK(jtree_load("{", 1, &e) == NULL);
    CHECK_EQ_STR(e.text, "invalid JSON");
    json_t *v = jtree_load("{}", 2, NULL);
    CHECK(json_is_object(v));
    json_decref(v);
}

/* jtree_load_valid bounds its own nesting (2 x JSCAN_MAX_DEPTH), where jscan's limit is not
 * there to do it: deeper text fails cleanly. */
static void test_valid_depth(void)
{
    char deep[1200];
    for (int d = 200; d <= 600; d += 400) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        json_t *t = jtree_load_valid(deep, 2 * (size_t)d, NULL);
        CHECK_EQ_INT(t != NULL, d <= 2 * JSCAN_MAX_DEPTH);
        json_decref(t);
        CHECK(jtree_load(deep, 2 * (size_t)d, NULL) == NULL); /* jscan's limit */
    }
}

/* jtree_obj: the pairs in order, their references taken; a NULL value gives NULL and releases
 * the others (valgrind's leak check sees them go). */
static void test_obj(void)
{
    json_t *t = json_string("x");
    json_t *o = jtree_obj(3, "role", json_string_nocheck("user"), "content", json_incref(t), "n",
                          json_integer(2));
    CHECK(o != NULL);
    CHECK_EQ_INT(json_object_size(o), 3);
    CHECK_EQ_STR(json_string_value(json_object_get(o, "role")), "user");
    CHECK(json_object_get(o, "content") == t);
    CHECK_EQ_INT(json_integer_value(json_object_get(o, "n")), 2);
    CHECK_EQ_STR(json_object_iter_key(json_object_iter(o)), "role"); /* in the order given */
    json_decref(o);
    CHECK_EQ_INT(t->refcount, 1);
    CHECK(jtree_obj(3, "a", json_incref(t), "b", NULL, "c", json_incref(t)) == NULL);
    CHECK_EQ_INT(t->refcount, 1); /* both references released */
    CHECK(jtree_obj(1, "a", NULL) == NULL);
    o = jtree_obj(0);
    CHECK(json_is_object(o) && json_object_size(o) == 0);
    json_decref(o);
    json_decref(t);
}

/* jtree_number_kind reads a number as the tree holds it; jtree_holds_key a name. */
static void test_number_kind_and_keys(void)
{
    int64_t x = 7;
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("42"), &x), 1);
    CHECK_EQ_INT((int)x, 42);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("-0"), &x), 1);
    CHECK_EQ_INT((int)x, 0);
    CHECK(jtree_number_kind(ms_str_c("-9223372036854775808"), &x) == 1 && x == INT64_MIN);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("9223372036854775808"), &x), 0);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("1.0"), &x), 2); /* a real, not an integer */
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("1e3"), &x), 2);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("1e-400"), &x), 2);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c("1e999"), &x), 0);
    CHECK_EQ_INT(jtree_number_kind(ms_str_c(""), &x), 0);
    CHECK(jtree_holds_key(ms_str_c("text")));
    CHECK(jtree_holds_key(ms_str_c("a\\\\u0000")));    /* an escaped backslash, then "u0000" */
    CHECK(!jtree_holds_key(ms_str_c("a\\\\\\u0000"))); /* a backslash, then U+0000 */
    CHECK(!jtree_holds_key(ms_str_c("\\u0000")));
    CHECK(jtree_holds_key(ms_str_c("\\u000")));
    CHECK(jtree_holds(ms_str_c(" {\"a\":[1,{\"b\":null}],\"c\":\"\\u0000\"} ")));
    CHECK(!jtree_holds(ms_str_c("{\"a\":[1,{\"b\\u0000\":null}]}")));
    CHECK(!jtree_holds(ms_str_c("[[[1e400]]]")));
    CHECK(jtree_holds(ms_str_c("\"x\"")));
}

int main(void)
{
    RUN(test_table);
    RUN(test_mutations);
    RUN(test_long_strings);
    RUN(test_error_texts);
    RUN(test_number_kind_and_keys);
    RUN(test_valid_depth);
    RUN(test_obj);
    TAP_DONE();
}
