/*
 * The hot-path JSON scanner (see jscan.h). One pass over the input, no allocation, no recursion:
 * nesting is tracked in a fixed stack of JSCAN_MAX_DEPTH bytes, so a hostile body can neither
 * blow the C stack nor make us allocate. Request bodies are mostly long prompt strings, so the
 * loop that skips ordinary string bytes is the one that matters: it looks at 16 bytes at a time
 * (SSE2 where the compiler offers it, a portable 8-byte word trick otherwise; -DJSCAN_PORTABLE
 * forces the latter so it can be tested on x86) and only drops to byte-at-a-time work at quotes,
 * backslashes, control bytes and non-ASCII UTF-8.
 *
 * What "valid" means is strict RFC 8259, matching jansson (which the rest of the gateway uses to
 * build documents) except where jansson refuses valid JSON it cannot represent: jscan accepts
 * integers beyond int64 and reals beyond double, and \u0000 anywhere; the caller decides what
 * to do with such values when it converts them (jscan_int / jscan_double report -1).
 */
#include "common/jscan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__) && !defined(JSCAN_PORTABLE)
#include <emmintrin.h>
#endif

typedef const unsigned char *ucp;

static inline int is_ws(unsigned c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(unsigned c)
{
    return c - '0' < 10u;
}

static inline int hex_val(unsigned c)
{
    if (c - '0' < 10u) return (int)(c - '0');
    c |= 0x20; /* fold A-F onto a-f */
    if (c - 'a' < 6u) return (int)(c - 'a' + 10);
    return -1;
}

/* Four hex digits at s[0..4), caller checked they are in range. Returns the code unit or -1. */
static inline long hex4(ucp s)
{
    int a = hex_val(s[0]), b = hex_val(s[1]), c = hex_val(s[2]), d = hex_val(s[3]);
    if ((a | b | c | d) < 0) return -1;
    return ((long)a << 12) | (b << 8) | (c << 4) | d;
}

/*
 * Length of the well-formed UTF-8 sequence at s[i] (whose lead byte is >= 0x80), or 0 if it is
 * ill-formed: a stray continuation byte, an overlong form, a UTF-16 surrogate, a code point above
 * U+10FFFF or a sequence cut short by the end of the view. The second byte's allowed range
 * depends on the lead byte (RFC 3629 section 4); the others are always 80..BF.
 */
static inline size_t utf8_len(ucp s, size_t i, size_t n)
{
    unsigned c = s[i];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0xC2) return 0; /* continuation byte, or C0/C1 (always overlong) */
    if (c < 0xE0) {
        len = 2;
    } else if (c < 0xF0) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* shorter forms are overlong */
        else if (c == 0xED)
            hi = 0x9F; /* ED A0..BF would encode surrogates */
    } else if (c < 0xF5) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* beyond U+10FFFF otherwise */
    } else {
        return 0;
    }
    if (n - i < len) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[i + k] & 0xC0) != 0x80) return 0;
    return len;
}

/*
 * Advances i over ordinary string bytes (0x20..0x7F other than '"' and '\\') and returns the
 * index of the first other byte, or a position from which fewer than 16 bytes remain.
 */
static inline size_t skip_plain(ucp s, size_t i, size_t n)
{
#if defined(__SSE2__) && !defined(JSCAN_PORTABLE)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    /* A prompt is long runs of plain bytes: 32 of them a turn, the two halves' tests merged
     * before the one mask, costs a fifth less than two turns of 16; the 16-byte loop finds
     * where the run ends. */
    while (n - i >= 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i bad = _mm_or_si128(
            _mm_or_si128(_mm_cmplt_epi8(a, space),
                         _mm_or_si128(_mm_cmpeq_epi8(a, quote), _mm_cmpeq_epi8(a, bslash))),
            _mm_or_si128(_mm_cmplt_epi8(b, space),
                         _mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, bslash))));
        if (_mm_movemask_epi8(bad)) break;
        i += 32;
    }
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        /* a signed compare catches both < 0x20 and >= 0x80 (negative as int8) */
        __m128i bad =
            _mm_or_si128(_mm_cmplt_epi8(v, space),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
        unsigned mask = (unsigned)_mm_movemask_epi8(bad);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
    return i;
#else
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (n - i >= 16) {
        uint64_t w[2];
        memcpy(w, s + i, 16);
        int k;
        for (k = 0; k < 2; k++) {
            uint64_t v = w[k], q = v ^ (ones * '"'), b = v ^ (ones * '\\');
            /* the classic "has a zero / has a byte less than" tests; a flag can only be wrong
             * in bytes above a true one, so the lowest flag is exact */
            uint64_t bad = ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b) | v;
            bad &= highs;
            if (bad) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                return i + (size_t)k * 8 + (size_t)__builtin_ctzll(bad) / 8;
#else
                return i + (size_t)k * 8; /* let the byte loop find it */
#endif
            }
        }
        i += 16;
    }
    return i;
#endif
}

/*
 * Scans a string whose opening quote is at s[i]. Returns the index just past the closing quote,
 * or (size_t)-1 with *bad set to the offending offset.
 */
static size_t scan_string(ucp s, size_t i, size_t n, size_t *bad)
{
    i++;
    for (;;) {
        i = skip_plain(s, i, n);
        if (i >= n) goto fail;
        unsigned c = s[i];
        if (c == '"') return i + 1;
        if (c == '\\') {
            if (n - i < 2) goto fail_end;
            c = s[i + 1];
            if (c == 'u') {
                for (size_t k = 2; k < 6; k++) {
                    if (i + k >= n) goto fail_end;
                    if (hex_val(s[i + k]) < 0) goto fail;
                }
                long u = hex4(s + i + 2);
                if (u >= 0xD800 && u <= 0xDBFF) {
                    /* a high surrogate is only valid right before a low one */
                    if (n - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u') goto fail;
                    long lo = hex4(s + i + 8);
                    if (lo < 0xDC00 || lo > 0xDFFF) goto fail;
                    i += 12;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    goto fail;
                } else {
                    i += 6;
                }
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                i += 2;
            } else {
                goto fail;
            }
        } else if (c < 0x20) {
            goto fail;
        } else if (c < 0x80) {
            i++;
        } else {
            /* non-Latin text is runs of multi-byte characters: stay here for the whole run */
            do {
                size_t len = utf8_len(s, i, n);
                if (!len) goto fail;
                i += len;
            } while (i < n && s[i] >= 0x80);
        }
    }
fail_end:
    i = n;
fail:
    *bad = i;
    return (size_t)-1;
}

/* The usual string of a provider's answer or event (a key, an id, a short value): plain ASCII
 * whose closing quote is among the next 16 bytes, found by one vector compare without a call.
 * Returns the index past that quote, or 0 when the string is not one of those. */
static inline size_t short_string_end(ucp s, size_t i, size_t n)
{
#if defined(__SSE2__) && !defined(JSCAN_PORTABLE)
    if (n - i > 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 1));
        __m128i special = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask) {
            size_t q = i + 1 + (size_t)__builtin_ctz(mask);
            if (s[q] == '"') return q + 1;
        }
    }
#else
    (void)s, (void)i, (void)n;
#endif
    return 0;
}

/* scan_string, short_string_end's way first. */
static inline size_t scan_string_fast(ucp s, size_t i, size_t n, size_t *bad)
{
    size_t e = short_string_end(s, i, n);
    return e ? e : scan_string(s, i, n, bad);
}

/* scan_string_fast for a key, which also says whether it has no backslash (*plain): known
 * without another look when short_string_end takes it. */
static inline size_t scan_key(ucp s, size_t i, size_t n, size_t *bad, int *plain)
{
    size_t e = short_string_end(s, i, n);
    if (e) {
        *plain = 1;
        return e;
    }
    e = scan_string(s, i, n, bad);
    if (e != (size_t)-1) *plain = !memchr(s + i + 1, '\\', e - i - 2);
    return e;
}

/* Scans a number starting at s[i] ('-' or a digit). Same return convention as scan_string. */
static size_t scan_number(ucp s, size_t i, size_t n, size_t *bad)
{
    if (s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) goto fail;
    if (s[i] == '0') {
        i++;
        if (i < n && is_digit(s[i])) goto fail; /* no leading zeros */
    } else {
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) goto fail;
        while (i < n && is_digit(s[i]))
            i++;
    }
    if (i < n && (s[i] | 0x20) == 'e') {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) goto fail;
        while (i < n && is_digit(s[i]))
            i++;
    }
    return i;
fail:
    *bad = i;
    return (size_t)-1;
}

/* Most JSON on the hot path is compact: the usual byte here is no space at all, and one compare
 * (every white-space byte is below '!') says so. */
static inline size_t skip_ws(ucp s, size_t i, size_t n)
{
    while (i < n && s[i] <= ' ' && is_ws(s[i]))
        i++;
    return i;
}

static jscan_type type_of(unsigned c)
{
    switch (c) {
    case '"':
        return JS_STRING;
    case '{':
        return JS_OBJECT;
    case '[':
        return JS_ARRAY;
    case 't':
        return JS_TRUE;
    case 'f':
        return JS_FALSE;
    case 'n':
        return JS_NULL;
    default:
        return JS_NUMBER;
    }
}

jscan_type jscan_type_of(char c)
{
    return type_of((unsigned char)c);
}

/*
 * The scanner proper: a state machine with three states (expecting a value, expecting a key,
 * after a value). stack[d] says whether nesting level d+1 is an object (1) or an array (0); up to
 * JSCAN_MAX_DEPTH containers may be open at once, one more is invalid. err_off is the offset of
 * the byte that made the document invalid: the start of a bad token, escape or UTF-8 sequence,
 * the misplaced byte, or n when the input ends too early.
 */
int jscan_object(const char *p, size_t n, jscan_member *members, size_t max, size_t *err_off)
{
    ucp s = (ucp)p;
    unsigned char stack[JSCAN_MAX_DEPTH];
    size_t depth = 0, i, bad = 0, count = 0;
    size_t key_start = 0, key_end = 0, val_start = 0;
    int top_is_object, key_plain = 0;

    if (!p) n = 0; /* reported as empty input */
    i = skip_ws(s, 0, n);
    if (i >= n) {
        bad = n;
        goto invalid;
    }
    top_is_object = s[i] == '{';

value:
    if (i >= n) {
        bad = n;
        goto invalid;
    }
    switch (s[i]) {
    case '{':
    case '[':
        if (depth == JSCAN_MAX_DEPTH) {
            bad = i;
            goto invalid;
        }
        stack[depth++] = s[i] == '{';
        i = skip_ws(s, i + 1, n);
        if (i >= n) {
            bad = n;
            goto invalid;
        }
        if (stack[depth - 1]) {
            if (s[i] == '}') {
                i++;
                depth--;
                goto after_value;
            }
            goto key;
        }
        if (s[i] == ']') {
            i++;
            depth--;
            goto after_value;
        }
        goto value;
    case '"':
        i = scan_string_fast(s, i, n, &bad);
        if (i == (size_t)-1) goto invalid;
        goto after_value;
    case 't':
        if (n - i < 4 || memcmp(s + i, "true", 4) != 0) {
            bad = i;
            goto invalid;
        }
        i += 4;
        goto after_value;
    case 'f':
        if (n - i < 5 || memcmp(s + i, "false", 5) != 0) {
            bad = i;
            goto invalid;
        }
        i += 5;
        goto after_value;
    case 'n':
        if (n - i < 4 || memcmp(s + i, "null", 4) != 0) {
            bad = i;
            goto invalid;
        }
        i += 4;
        goto after_value;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        i = scan_number(s, i, n, &bad);
        if (i == (size_t)-1) goto invalid;
        goto after_value;
    default:
        bad = i;
        goto invalid;
    }

key:
    /* i is at a non-space byte inside an object, where a key must start */
    if (s[i] != '"') {
        bad = i;
        goto invalid;
    }
    {
        size_t ks = i;
        /* only top-level members are reported */
        i = depth == 1 ? scan_key(s, i, n, &bad, &key_plain) : scan_string_fast(s, i, n, &bad);
        if (i == (size_t)-1) goto invalid;
        if (depth == 1) {
            key_start = ks;
            key_end = i;
        }
    }
    i = skip_ws(s, i, n);
    if (i >= n || s[i] != ':') {
        bad = i;
        goto invalid;
    }
    i = skip_ws(s, i + 1, n);
    if (depth == 1) val_start = i;
    goto value;

after_value:
    if (depth == 0) goto done;
    if (depth == 1 && top_is_object) {
        /* a value just ended directly inside the top-level object: that completes a member */
        if (count == INT_MAX) {
            bad = i;
            goto invalid;
        }
        if (count < max && members) {
            jscan_member *m = &members[count];
            m->key = (ms_str){p + key_start + 1, key_end - key_start - 2};
            m->value = (ms_str){p + val_start, i - val_start};
            m->type = type_of(s[val_start]);
            m->key_plain = (unsigned char)key_plain;
            m->start = key_start;
            m->end = i;
        }
        count++;
    }
    i = skip_ws(s, i, n);
    if (i >= n) {
        bad = n;
        goto invalid;
    }
    if (s[i] == ',') {
        i = skip_ws(s, i + 1, n);
        if (i >= n) {
            bad = n;
            goto invalid;
        }
        if (stack[depth - 1]) goto key;
        goto value;
    }
    if (s[i] == (stack[depth - 1] ? '}' : ']')) {
        i++;
        depth--;
        goto after_value;
    }
    bad = i;
    goto invalid;

done:
    i = skip_ws(s, i, n);
    if (i != n) {
        bad = i;
        goto invalid;
    }
    return top_is_object ? (int)count : JSCAN_NOT_OBJECT;

invalid:
    if (err_off) *err_off = bad;
    return JSCAN_INVALID;
}

size_t jscan_string_token(const char *p, size_t n)
{
    size_t bad;
    if (!p || n < 2 || p[0] != '"') return 0;
    size_t e = scan_string_fast((ucp)p, 0, n, &bad);
    return e == (size_t)-1 ? 0 : e;
}

/* Validates again rather than trusting the caller: a nested value costs one more pass over its
 * own bytes only, and a wrong "known valid" can then never make us misread memory. */
int jscan_members(ms_str obj, jscan_member *members, size_t max)
{
    int r = jscan_object(obj.p, obj.n, members, max, NULL);
    return r < 0 ? JSCAN_NOT_OBJECT : r;
}

/* Past the string whose opening quote is at s[i], in input known to be valid; n if it never
 * closes. *esc (when esc is not NULL) is set when it has a backslash. */
static inline __attribute__((always_inline)) size_t skip_valid_string(ucp s, size_t i, size_t n,
                                                                      int *esc)
{
    i++;
    while (i < n) {
        i = skip_plain(s, i, n);
        if (i >= n) break;
        if (s[i] == '"') return i + 1;
        if (s[i] == '\\') {
            if (esc) *esc = 1;
            i += 2;
        } else {
            i++;
        }
    }
    return n;
}

/* Byte classes for jscan_members_valid: 0 for every byte that cannot change the structure. */
enum { JV_PLAIN, JV_QUOTE, JV_OPEN, JV_CLOSE, JV_COMMA };
static const unsigned char jv_class[256] = {
    ['"'] = JV_QUOTE, ['{'] = JV_OPEN,  ['['] = JV_OPEN,
    ['}'] = JV_CLOSE, [']'] = JV_CLOSE, [','] = JV_COMMA,
};

/* The notes of jscan_skips_begin (this thread's; NULL: none). */
static _Thread_local jscan_skips *skips_cur;

void jscan_skips_begin(jscan_skips *sk, const char *p, size_t n)
{
    memset(sk, 0, sizeof *sk);
    if (p && n <= UINT32_MAX) {
        sk->base = p;
        sk->n = n;
        skips_cur = sk;
    }
}

void jscan_skips_end(void)
{
    skips_cur = NULL;
}

static inline size_t skip_slot(uint32_t start)
{
    return (size_t)((start * 0x9E3779B1u) >> (32 - JSCAN_SKIPS_BITS));
}

/* The offset of s + i in the noted document, or -1 when it lies outside it. */
static inline int64_t skip_off(const jscan_skips *sk, ucp s, size_t i)
{
    uintptr_t at = (uintptr_t)(s + i), base = (uintptr_t)sk->base;
    return at >= base && at - base < sk->n ? (int64_t)(at - base) : -1;
}

/* Notes that the value at s[start] ends just before s[end] (a view inside the document). A
 * full table starts over: the walks go forward, and a value noted is wanted by the next level's
 * walk, soon after (a conversation of 50 messages notes a hundred values). */
static void skip_note(jscan_skips *sk, ucp s, size_t start, size_t end)
{
    int64_t off = skip_off(sk, s, start);
    if (off < 0 || end - start > sk->n - (size_t)off) return;
    if (sk->count >= JSCAN_SKIPS / 2) {
        memset(sk->slot, 0, sizeof sk->slot);
        sk->count = 0;
    }
    size_t h = skip_slot((uint32_t)off);
    while (sk->slot[h].end) {
        if (sk->slot[h].start == (uint32_t)off) return; /* noted already */
        h = (h + 1) & (JSCAN_SKIPS - 1);
    }
    sk->slot[h].start = (uint32_t)off;
    sk->slot[h].end = (uint32_t)(off + (int64_t)(end - start));
    sk->count++;
}

/* Just past the value that starts at s[i], when it is noted and ends within the view
 * s[0..n); 0 otherwise. */
static inline size_t skip_known(const jscan_skips *sk, ucp s, size_t i, size_t n)
{
    if (!sk->count) return 0;
    int64_t off = skip_off(sk, s, i);
    if (off < 0) return 0;
    for (size_t h = skip_slot((uint32_t)off); sk->slot[h].end; h = (h + 1) & (JSCAN_SKIPS - 1)) {
        if (sk->slot[h].start != (uint32_t)off) continue;
        size_t len = sk->slot[h].end - (uint32_t)off;
        return len <= n - i ? i + len : 0;
    }
    return 0;
}

/* The end of the value starting at s[i] inside a container closed by close (']' or '}'), in
 * input known to be valid: the index of the ',' or close at the value's own level (n if none).
 * Bytes of no structural meaning (digits, letters, spaces, ':') are passed over by one table
 * lookup each. With notes (sk, jscan_skips_begin): a value noted is jumped over, and the long
 * strings and containers inside one passed over are noted as they end (containers nested up to
 * JSKIP_DEPTH levels within it), for the walk's next level. Inlined into valid_value_end twice,
 * so that the copy without notes has none of their tests. */
#define JSKIP_DEPTH 16
static inline __attribute__((always_inline)) size_t value_end(ucp s, size_t i, size_t n,
                                                              unsigned char close, jscan_skips *sk)
{
    size_t depth = 0, open_at[JSKIP_DEPTH], e = sk ? skip_known(sk, s, i, n) : 0;
    if (e) i = e; /* past the value: what follows is its own level's */
    while (i < n) {
        while (i < n && !jv_class[s[i]])
            i++;
        if (i >= n) break;
        unsigned c = jv_class[s[i]];
        if (c == JV_QUOTE) {
            size_t q = sk ? skip_known(sk, s, i, n) : 0;
            e = q ? q : skip_valid_string(s, i, n, NULL);
            if (sk && !q && e - i >= JSCAN_SKIP_MIN && s[e - 1] == '"') skip_note(sk, s, i, e);
            i = e;
            continue;
        }
        if (c == JV_OPEN) {
            if (sk && (e = skip_known(sk, s, i, n))) {
                i = e;
                continue;
            }
            if (sk && depth < JSKIP_DEPTH) open_at[depth] = i;
            depth++;
        } else if (depth > 0) {
            if (c == JV_CLOSE) { /* a ',' inside a nested value changes nothing */
                depth--;
                if (sk && depth < JSKIP_DEPTH && i + 1 - open_at[depth] >= JSCAN_SKIP_MIN)
                    skip_note(sk, s, open_at[depth], i + 1);
            }
        } else if (s[i] == ',' || s[i] == close) {
            break; /* at the value's own level */
        }
        i++;
    }
    return i;
}

static size_t valid_value_end(ucp s, size_t i, size_t n, unsigned char close)
{
    jscan_skips *sk = skips_cur;
    return sk ? value_end(s, i, n, close, sk) : value_end(s, i, n, close, NULL);
}

int jscan_members_valid(ms_str obj, jscan_member *members, size_t max)
{
    ucp s = (ucp)obj.p;
    size_t n = s ? obj.n : 0, i = skip_ws(s, 0, n), count = 0;

    if (i >= n || s[i] != '{') return JSCAN_NOT_OBJECT;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') return skip_ws(s, i + 1, n) == n ? 0 : JSCAN_NOT_OBJECT;
    while (i < n) {
        size_t ks = i, ke, vs, ve;
        int kesc = 0;
        if (s[i] != '"') return JSCAN_NOT_OBJECT;
        ke = skip_valid_string(s, i, n, &kesc);
        if (ke - ks < 2 || s[ke - 1] != '"') return JSCAN_NOT_OBJECT;
        i = skip_ws(s, ke, n);
        if (i >= n || s[i] != ':') return JSCAN_NOT_OBJECT;
        vs = i = skip_ws(s, i + 1, n);
        i = valid_value_end(s, i, n, '}');
        if (i >= n || i == vs || count == INT_MAX) return JSCAN_NOT_OBJECT;
        ve = i;
        while (ve > vs && is_ws(s[ve - 1]))
            ve--;
        if (count < max && members) {
            jscan_member *m = &members[count];
            m->key = (ms_str){obj.p + ks + 1, ke - ks - 2};
            m->value = (ms_str){obj.p + vs, ve - vs};
            m->type = type_of(s[vs]);
            m->key_plain = (unsigned char)!kesc;
            m->start = ks;
            m->end = ve;
        }
        count++;
        if (s[i] == '}') return skip_ws(s, i + 1, n) == n ? (int)count : JSCAN_NOT_OBJECT;
        i = skip_ws(s, i + 1, n);
    }
    return JSCAN_NOT_OBJECT;
}

int jscan_iter_start(jscan_iter *it, ms_str v)
{
    ucp s = (ucp)v.p;
    size_t n = s ? v.n : 0, i = skip_ws(s, 0, n);
    *it = (jscan_iter){.p = v.p, .n = n, .i = n};
    if (i >= n || (s[i] != '{' && s[i] != '[')) return -1;
    it->close = s[i] == '{' ? '}' : ']';
    i = skip_ws(s, i + 1, n);
    if (i < n && (unsigned char)s[i] != it->close)
        it->i = i;
    else if (i < n)
        it->past = i + 1; /* an empty container: nothing to give */
    return 0;
}

/* After a member or element that ended at s[e] (white space trimmed) and whose container goes on
 * at s[i] (the ',' or the close): the iterator moved to the next one, or to the end. */
static void iter_next(jscan_iter *it, size_t i)
{
    ucp s = (ucp)it->p;
    if (i < it->n && s[i] == ',') {
        it->i = skip_ws(s, i + 1, it->n);
    } else {
        it->i = it->n;
        if (i < it->n) it->past = i + 1;
    }
}

/* Past the value of an element or member that starts at s[vs]: its end (white space trimmed)
 * into *ve, and the iterator moved to the next one; 0, or -1 when the input is not as promised. */
static int iter_value(jscan_iter *it, size_t vs, size_t *ve)
{
    ucp s = (ucp)it->p;
    size_t i = valid_value_end(s, vs, it->n, (unsigned char)it->close);
    if (i >= it->n || i == vs) {
        it->i = it->n;
        return -1;
    }
    size_t e = i;
    while (e > vs && is_ws(s[e - 1]))
        e--;
    *ve = e;
    iter_next(it, i);
    return 0;
}

int jscan_iter_member(jscan_iter *it, jscan_member *m)
{
    ucp s = (ucp)it->p;
    size_t n = it->n, ks = it->i, ke, vs, ve;
    int kesc = 0;
    if (ks >= n || it->close != '}') return 0;
    it->i = n; /* until the member is read whole */
    if (s[ks] != '"') return -1;
    ke = skip_valid_string(s, ks, n, &kesc);
    if (ke - ks < 2 || s[ke - 1] != '"') return -1;
    size_t i = skip_ws(s, ke, n);
    if (i >= n || s[i] != ':') return -1;
    vs = skip_ws(s, i + 1, n);
    if (iter_value(it, vs, &ve) != 0) return -1;
    m->key = (ms_str){it->p + ks + 1, ke - ks - 2};
    m->value = (ms_str){it->p + vs, ve - vs};
    m->type = type_of(s[vs]);
    m->key_plain = (unsigned char)!kesc;
    m->start = ks;
    m->end = ve;
    return 1;
}

int jscan_iter_value(jscan_iter *it, ms_str *v, jscan_type *t)
{
    size_t vs = it->i, ve;
    if (vs >= it->n || it->close != ']') return 0;
    if (iter_value(it, vs, &ve) != 0) return -1;
    *v = (ms_str){it->p + vs, ve - vs};
    *t = type_of((unsigned char)it->p[vs]);
    return 1;
}

int jscan_iter_peek(jscan_iter *it, ms_str *v, jscan_type *t)
{
    size_t vs = it->i;
    if (vs >= it->n || it->close != ']') return 0;
    *v = (ms_str){it->p + vs, it->n - vs};
    *t = type_of((unsigned char)it->p[vs]);
    return 1;
}

void jscan_iter_past(jscan_iter *it, size_t len)
{
    size_t vs = it->i, ve;
    if (vs >= it->n) return;
    if (len == 0 || len > it->n - vs) {
        iter_value(it, vs, &ve);
        return;
    }
    iter_next(it, skip_ws((ucp)it->p, vs + len, it->n));
}

/*
 * Decodes the escape sequence at s[*i] == '\\' (a surrogate pair counts as one) into out as
 * UTF-8, advances *i past it and returns the number of bytes written, or -1 if it is malformed.
 */
static int decode_escape(ucp s, size_t *i, size_t n, unsigned char out[4])
{
    size_t k = *i;
    if (n - k < 2) return -1;
    unsigned c = s[k + 1];
    unsigned long cp;
    switch (c) {
    case '"':
    case '\\':
    case '/':
        out[0] = (unsigned char)c;
        *i = k + 2;
        return 1;
    case 'b':
        out[0] = '\b';
        *i = k + 2;
        return 1;
    case 'f':
        out[0] = '\f';
        *i = k + 2;
        return 1;
    case 'n':
        out[0] = '\n';
        *i = k + 2;
        return 1;
    case 'r':
        out[0] = '\r';
        *i = k + 2;
        return 1;
    case 't':
        out[0] = '\t';
        *i = k + 2;
        return 1;
    case 'u':
        break;
    default:
        return -1;
    }
    if (n - k < 6) return -1;
    long u = hex4(s + k + 2);
    if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return -1;
    if (u >= 0xD800 && u <= 0xDBFF) {
        if (n - k < 12 || s[k + 6] != '\\' || s[k + 7] != 'u') return -1;
        long lo = hex4(s + k + 8);
        if (lo < 0xDC00 || lo > 0xDFFF) return -1;
        cp = 0x10000 + (((unsigned long)u - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
        *i = k + 12;
    } else {
        cp = (unsigned long)u;
        *i = k + 6;
    }
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Compares a raw key (escapes not decoded) with a C string, decoding as it goes. *esc caches
 * whether the raw key has a backslash: -1 not known yet, then 0 or 1, so that one member
 * compared with several names (jscan_pick) looks for it once. */
static inline int key_eq_esc(ms_str raw, const char *key, size_t klen, int *esc)
{
    /* An escape is longer than what it decodes to: a shorter raw key never matches, one of the
     * same length only byte for byte and without escapes (then the key has no backslash
     * either), and only a longer one with a backslash needs decoding. The usual miss is a
     * length compare. */
    if (raw.n < klen) return 0;
    /* (a raw key without a backslash is its own decoding) */
    if (*esc == 0) return raw.n == klen && memcmp(raw.p, key, klen) == 0;
    if (raw.n == klen) return memcmp(raw.p, key, klen) == 0 && !memchr(key, '\\', klen);
    if (klen > 0 && raw.p[0] != key[0] && raw.p[0] != '\\') return 0;
    if (*esc < 0) *esc = memchr(raw.p, '\\', raw.n) != NULL;
    if (!*esc) return 0;
    ucp s = (ucp)raw.p;
    size_t i = 0, j = 0;
    while (i < raw.n) {
        if (s[i] != '\\') {
            if (j >= klen || s[i] != (unsigned char)key[j]) return 0;
            i++;
            j++;
            continue;
        }
        unsigned char dec[4];
        int len = decode_escape(s, &i, raw.n, dec);
        if (len < 0 || klen - j < (size_t)len || memcmp(key + j, dec, (size_t)len) != 0) return 0;
        j += (size_t)len;
    }
    return j == klen;
}

static inline int key_eq(ms_str raw, const char *key, size_t klen)
{
    int esc = -1;
    return key_eq_esc(raw, key, klen, &esc);
}

int jscan_key_eq(ms_str raw, const char *key, size_t klen)
{
    return raw.p && key && key_eq(raw, key, klen);
}

size_t jscan_key_index(ms_str raw, const jscan_key *keys, size_t nk)
{
    int esc = -1; /* whether raw holds an escape: looked for once, by the first long enough key */
    size_t i = 0;
    if (!raw.p) return nk;
    while (i < nk && !key_eq_esc(raw, keys[i].s, keys[i].n, &esc))
        i++;
    return i;
}

const jscan_member *jscan_find(const jscan_member *m, size_t n, const char *key)
{
    if (!m || !key) return NULL;
    size_t klen = strlen(key);
    /* JSON leaves duplicate names undefined; like jansson (and most parsers) the last one wins,
     * which is also what the upstream provider will see when we forward the body unchanged */
    for (size_t k = n; k-- > 0;) {
        int esc = m[k].key_plain ? 0 : -1;
        if (key_eq_esc(m[k].key, key, klen, &esc)) return &m[k];
    }
    return NULL;
}

void jscan_pick(const jscan_member *m, size_t n, const jscan_key *keys, size_t nk,
                const jscan_member **out)
{
    size_t left = nk;
    for (size_t i = 0; i < nk; i++)
        out[i] = NULL;
    if (!m) return;
    /* backwards, so that the first match of a name is its last member (as jscan_find) */
    for (size_t k = n; k-- > 0 && left > 0;) {
        int esc = m[k].key_plain ? 0 : -1;
        for (size_t i = 0; i < nk; i++) {
            if (out[i] || !key_eq_esc(m[k].key, keys[i].s, keys[i].n, &esc)) continue;
            out[i] = &m[k];
            left--;
            break; /* distinct names: one member matches one of them at most */
        }
    }
}

int jscan_pick_unique(const jscan_member *m, size_t n, const jscan_key *keys, size_t nk,
                      const jscan_member **out)
{
    for (size_t i = 0; i < nk; i++)
        out[i] = NULL;
    if (!m) return -1;
    /* every member is looked at: a duplicate may come after all names were found */
    for (size_t k = 0; k < n; k++) {
        int esc = m[k].key_plain ? 0 : -1;
        for (size_t i = 0; i < nk; i++) {
            if (!key_eq_esc(m[k].key, keys[i].s, keys[i].n, &esc)) continue;
            if (out[i]) return (int)i;
            out[i] = &m[k];
            break;
        }
    }
    return -1;
}

long jscan_string(ms_str v, char *out, size_t outlen)
{
    ucp s = (ucp)v.p;
    size_t i = 1, o = 0, end;
    if (!out || outlen == 0 || !s || v.n < 2 || s[0] != '"' || s[v.n - 1] != '"') return -1;
    end = v.n - 1; /* index of the closing quote */
    while (i < end) {
        size_t run = skip_plain(s, i, end);
        /* skip_plain leaves up to 15 plain bytes; finish the run byte by byte */
        while (run < end && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        if (run > i) {
            if (run - i > outlen - 1 - o) return -1;
            memcpy(out + o, s + i, run - i);
            o += run - i;
            i = run;
            if (i >= end) break;
        }
        unsigned c = s[i];
        if (c == '\\') {
            unsigned char dec[4];
            int len = decode_escape(s, &i, end, dec);
            if (len < 0 || (size_t)len > outlen - 1 - o) return -1;
            memcpy(out + o, dec, (size_t)len);
            o += (size_t)len;
        } else if (c >= 0x80) {
            size_t len = utf8_len(s, i, end);
            if (!len || len > outlen - 1 - o) return -1;
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            return -1; /* an unescaped quote inside, or a control byte: not one valid string */
        }
    }
    if (o > LONG_MAX) return -1;
    out[o] = '\0';
    return (long)o;
}

/* Splits a number into its parts if it is one valid JSON number token. exp saturates at
 * +-1e9, far beyond anything that still fits an int64 or a double. */
struct num_parts {
    int neg;
    size_t int_at, int_len, frac_at, frac_len;
    long long exp;
};

static int split_number(ms_str v, struct num_parts *np)
{
    ucp s = (ucp)v.p;
    size_t bad, end;
    if (!s || v.n == 0 || (s[0] != '-' && !is_digit(s[0]))) return -1;
    end = scan_number(s, 0, v.n, &bad);
    if (end != v.n) return -1;
    size_t i = 0;
    memset(np, 0, sizeof(*np));
    if (s[i] == '-') {
        np->neg = 1;
        i++;
    }
    np->int_at = i;
    while (i < v.n && is_digit(s[i]))
        i++;
    np->int_len = i - np->int_at;
    if (i < v.n && s[i] == '.') {
        np->frac_at = ++i;
        while (i < v.n && is_digit(s[i]))
            i++;
        np->frac_len = i - np->frac_at;
    }
    if (i < v.n) { /* exponent */
        int eneg = 0;
        i++;
        if (s[i] == '+' || s[i] == '-') eneg = s[i++] == '-';
        long long e = 0;
        for (; i < v.n; i++)
            if (e < 1000000000LL) e = e * 10 + (s[i] - '0');
        np->exp = eneg ? -e : e;
    }
    return 0;
}

int jscan_int(ms_str v, int64_t *out)
{
    /* The usual integer of a provider's answer (a token count, an index): up to 18 digits
     * with no sign, fraction or exponent, at most 10^18 - 1, and a valid JSON number when it
     * has no leading zero. Read directly: a usage object's six counts took ~125 instructions
     * each the general way. */
    if (v.p && v.n >= 1 && v.n <= 18 && (v.n == 1 || v.p[0] != '0')) {
        uint64_t acc = 0;
        size_t i = 0;
        for (; i < v.n && is_digit((unsigned char)v.p[i]); i++)
            acc = acc * 10 + (uint64_t)(v.p[i] - '0');
        if (i == v.n) {
            *out = (int64_t)acc;
            return 0;
        }
    }
    struct num_parts np;
    if (split_number(v, &np) < 0) return -1;
    ucp s = (ucp)v.p;
    size_t total = np.int_len + np.frac_len;
/* the k-th digit of the mantissa, integer and fraction digits taken as one run */
#define DIGIT(k) (s[(k) < np.int_len ? np.int_at + (k) : np.frac_at + (k)-np.int_len] - '0')
    size_t first = 0, last = total;
    while (first < total && DIGIT(first) == 0)
        first++;
    if (first == total) {
        *out = 0; /* 0, -0, 0.000e99 */
        return 0;
    }
    while (DIGIT(last - 1) == 0)
        last--;
    /* value = digits[first..last) * 10^scale */
    long long scale = (long long)(total - last) - (long long)np.frac_len + np.exp;
    if (scale < 0) return -1; /* a non-zero digit after the decimal point */
    if ((long long)(last - first) + scale > 19) return -1; /* at least 10^19, beyond int64 */
    uint64_t acc = 0;
    for (size_t k = first; k < last; k++)
        acc = acc * 10 + (uint64_t)DIGIT(k); /* at most 19 digits: no wrap */
#undef DIGIT
    for (long long k = 0; k < scale; k++) {
        if (acc > UINT64_MAX / 10) return -1;
        acc *= 10;
    }
    if (np.neg) {
        if (acc > (uint64_t)INT64_MAX + 1) return -1;
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    } else {
        if (acc > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)acc;
    }
    return 0;
}

int jscan_double(ms_str v, double *out)
{
    struct num_parts np;
    char local[128], *copy = local;
    if (split_number(v, &np) < 0) return -1;
    /* strtod needs a NUL-terminated string and the view is not one; a long number (which JSON
     * allows) gets a heap copy rather than being truncated into a wrong value. The process runs
     * in the "C" locale, so '.' is the decimal point strtod expects. */
    if (v.n >= sizeof(local)) {
        copy = malloc(v.n + 1);
        if (!copy) return -1;
    }
    memcpy(copy, v.p, v.n);
    copy[v.n] = '\0';
    errno = 0;
    char *end;
    double d = strtod(copy, &end);
    int ok = end == copy + v.n && !(errno == ERANGE && isinf(d));
    if (copy != local) free(copy);
    if (!ok) return -1;
    *out = d;
    return 0;
}
