/*
 * libFuzzer target for the JSON scanner (src/common/jscan.c). Each input is scanned from an
 * exact-size heap copy (so ASan sees any read past the view), the result is checked against
 * jansson's verdict, and every reported member is pushed through the accessors (jscan_find,
 * jscan_string, jscan_int, jscan_double, jscan_members) with invariants checked. The tree built
 * on the scanner (common/jtree.c) must equal jansson's own (json_equal) wherever either accepts,
 * jtree_load_valid must build the same of what jscan accepts, and jtree_holds must say whether
 * it is built. The iterator (jscan_iter) walks what jscan accepts to the same members as
 * jscan_members_valid and as many elements as jansson counts, peek and past the same elements
 * as a plain walk, and the same with the notes of the long values in use (jscan_skips); on
 * anything else it must only stay within the input.
 *
 * Built by `make fuzz` and run by the suite (tests/fuzz.sh); by hand:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_jscan.c \
 *     src/common/jscan.c src/common/jtree.c $(pkg-config --cflags --libs jansson) \
 *     -o /tmp/fuzz_jscan
 *   /tmp/fuzz_jscan -max_total_time=60
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/jtree.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static void check_members(const char *p, size_t n, const jscan_member *m, int count)
{
    char buf[4096];
    for (int k = 0; k < count; k++) {
        MUST(m[k].start < m[k].end && m[k].end <= n);
        MUST(m[k].key.p == p + m[k].start + 1);
        MUST(m[k].value.p + m[k].value.n == p + m[k].end);
        long kl = jscan_string((ms_str){m[k].key.p - 1, m[k].key.n + 2}, buf, sizeof(buf));
        MUST(kl >= 0 || m[k].key.n + 1 >= sizeof(buf));
        if (kl >= 0 && (size_t)kl == strlen(buf)) {
            const jscan_member *f = jscan_find(m, (size_t)count, buf);
            MUST(f && f >= &m[k]); /* the last one with that name */
        }
        if (kl >= 0) {
            /* the decoded name, NULs included, matches its own raw key; pick_unique finds a
             * duplicate exactly when another member decodes to the same bytes */
            MUST(jscan_key_eq(m[k].key, buf, (size_t)kl));
            int same = 0;
            for (int j = 0; j < count; j++)
                same += jscan_key_eq(m[j].key, buf, (size_t)kl);
            const jscan_key key = {buf, (size_t)kl};
            const jscan_member *got;
            int dup = jscan_pick_unique(m, (size_t)count, &key, 1, &got);
            MUST(same >= 1 && (dup == 0) == (same > 1));
            if (dup < 0) MUST(got == &m[k]);
        }
        jscan_member in[4];
        int r = jscan_members(m[k].value, in, 4);
        MUST((m[k].type == JS_OBJECT) == (r >= 0));
        if (m[k].type == JS_STRING) {
            MUST(jscan_string(m[k].value, buf, sizeof(buf)) >= 0 || m[k].value.n >= sizeof(buf));
        } else if (m[k].type == JS_NUMBER) {
            int64_t iv;
            double dv;
            if (jscan_int(m[k].value, &iv) == 0 && jscan_double(m[k].value, &dv) == 0 &&
                iv > -(1LL << 53) && iv < (1LL << 53))
                MUST(dv == (double)iv);
        } else {
            MUST(jscan_string(m[k].value, buf, sizeof(buf)) < 0);
        }
    }
}

/* Walks v, a container within a document jscan accepted, with jscan_iter (nested ones too, a few
 * levels down); returns how many members or elements it has. */
static size_t walk(ms_str v, int depth)
{
    jscan_iter it, it2;
    size_t count = 0;
    int r;
    if (jscan_iter_start(&it, v) != 0) return 0;
    if (it.close == '}') {
        jscan_member m, mv[64];
        int n = jscan_members_valid(v, mv, 64);
        MUST(n >= 0);
        while ((r = jscan_iter_member(&it, &m)) > 0) {
            if (count < 64) {
                const jscan_member *w = &mv[count];
                MUST(m.key.p == w->key.p && m.key.n == w->key.n && m.value.p == w->value.p &&
                     m.value.n == w->value.n && m.type == w->type && m.key_plain == w->key_plain);
            }
            if (depth < 8) walk(m.value, depth + 1);
            count++;
        }
        MUST(r == 0 && (size_t)n == count);
        MUST(it.past > 0 && it.past <= v.n && v.p[it.past - 1] == '}');
        return count;
    }
    ms_str e, e2;
    jscan_type t, t2;
    jscan_iter_start(&it2, v);
    while ((r = jscan_iter_value(&it, &e, &t)) > 0) {
        MUST(jscan_iter_peek(&it2, &e2, &t2) == 1 && e2.p == e.p && t2 == t);
        jscan_iter_past(&it2, count % 2 ? e.n : 0);
        if (depth < 8) walk(e, depth + 1);
        count++;
    }
    MUST(r == 0 && jscan_iter_peek(&it2, &e2, &t2) == 0);
    MUST(it.past > 0 && it.past == it2.past && v.p[it.past - 1] == ']');
    return count;
}

/* The iterator over bytes that are not valid JSON: whatever it gives lies within them. */
static void walk_any(ms_str v)
{
    jscan_iter it;
    jscan_member m;
    ms_str e;
    jscan_type t;
    if (jscan_iter_start(&it, v) != 0) return;
    for (int k = 0; k < 1000; k++) {
        int r = it.close == '}' ? jscan_iter_member(&it, &m) : jscan_iter_value(&it, &e, &t);
        if (r <= 0) break;
        if (it.close == '}') e = m.value;
        MUST(e.p >= v.p && e.p + e.n <= v.p + v.n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    if (size) memcpy(p, data, size);
    jscan_member m[32];
    size_t err = (size_t)-1;
    int r = jscan_object(p, size, m, 32, &err);
    MUST(r >= JSCAN_NOT_OBJECT);
    if (r == JSCAN_INVALID) MUST(err <= size);
    if (r >= 0) check_members(p, size, m, r < 32 ? r : 32);

    json_error_t e;
    json_t *j = json_loadb(p, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (j) {
        /* jansson takes a raw NUL byte for the end of input, and allows deeper nesting;
         * anything else it accepts is valid */
        if (r == JSCAN_INVALID && !memchr(p, '\0', size)) {
            size_t opens = 0;
            for (size_t k = 0; k < size; k++)
                opens += p[k] == '[' || p[k] == '{';
            MUST(opens > JSCAN_MAX_DEPTH);
        }
        if (r != JSCAN_INVALID) MUST((r >= 0) == json_is_object(j));
    } else if (r != JSCAN_INVALID) {
        /* valid JSON jansson refuses: numbers it cannot hold, NUL in keys, its depth limit */
        MUST(strstr(e.text, "too big") || strstr(e.text, "overflow") ||
             strstr(e.text, "NUL byte") || strstr(e.text, "depth"));
    }
    /* the iterator: the top level's members or elements, as jansson counts them */
    if (r != JSCAN_INVALID) {
        size_t count = walk((ms_str){p, size}, 0);
        if (json_is_array(j)) MUST(count == json_array_size(j));
        /* with the notes of its long values in use, the same walk (its own checks included) */
        jscan_skips sk;
        jscan_skips_begin(&sk, p, size);
        MUST(walk((ms_str){p, size}, 0) == count); /* noting as it goes */
        MUST(walk((ms_str){p, size}, 0) == count); /* jumping by the notes */
        jscan_skips_end();
        MUST(sk.base == p && sk.count <= JSCAN_SKIPS / 2);
    } else {
        walk_any((ms_str){p, size});
        /* notes of bytes that are not JSON stay within them, and so do walks with them */
        jscan_skips sk;
        jscan_skips_begin(&sk, p, size);
        walk_any((ms_str){p, size});
        walk_any((ms_str){p, size});
        jscan_skips_end();
        for (unsigned h = 0; h < JSCAN_SKIPS; h++)
            MUST(sk.slot[h].end <= size && sk.slot[h].start <= sk.slot[h].end);
    }
    json_decref(j);

    /* jtree_load (common/jtree.c) gives what json_loadb gives, value for value; where jansson
     * alone accepts, the input has a raw NUL byte or nesting beyond jscan's depth */
    json_error_t e2;
    json_t *t = jtree_load(p, size, &e2);
    json_t *jj = json_loadb(p, size, JSON_ALLOW_NUL, &e);
    if (t) {
        MUST(jj && json_equal(t, jj));
    } else if (jj) {
        size_t opens = 0;
        for (size_t k = 0; k < size; k++)
            opens += p[k] == '[' || p[k] == '{';
        MUST(memchr(p, '\0', size) || opens > JSCAN_MAX_DEPTH);
    }
    /* jtree_load_valid builds the same tree of a document jscan accepts */
    if (jscan_object(p, size, NULL, 0, NULL) != JSCAN_INVALID) {
        json_t *c = jtree_load_valid(p, size, NULL);
        MUST((c == NULL) == (t == NULL) && (!c || json_equal(c, t)));
        json_decref(c);
    }
    /* jtree_holds says whether the tree is built, for a document jscan accepts with an
     * object or an array at the top */
    size_t w = 0;
    while (w < size && (p[w] == ' ' || p[w] == '\t' || p[w] == '\r' || p[w] == '\n'))
        w++;
    if (w < size && (p[w] == '{' || p[w] == '[') &&
        jscan_object(p, size, NULL, 0, NULL) != JSCAN_INVALID)
        MUST(jtree_holds((ms_str){p, size}) == (t != NULL));
    json_decref(t);
    json_decref(jj);

    /* the accessors on arbitrary bytes must not misbehave */
    char out[64];
    int64_t iv;
    double dv;
    (void)jscan_string((ms_str){p, size}, out, sizeof(out));
    (void)jscan_int((ms_str){p, size}, &iv);
    (void)jscan_double((ms_str){p, size}, &dv);
    free(p);
    return 0;
}
