/*
 * A validating, zero-copy JSON scanner for the hot path. It checks a whole document against
 * RFC 8259 (strings with their escapes and UTF-8, numbers, literals, nesting up to a depth limit)
 * without building a tree or allocating, and reports the top-level members of an object as views
 * into the input. The gateway uses it to read the few fields it needs (model, stream, max_tokens,
 * usage) from bodies it otherwise forwards untouched, so a 100 KB prompt is scanned once and never
 * copied or re-serialised. Documents that must be built or edited go through jansson instead.
 */
#ifndef MS_JSCAN_H
#define MS_JSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define JSCAN_MAX_DEPTH 128

typedef enum { JS_STRING, JS_NUMBER, JS_OBJECT, JS_ARRAY, JS_TRUE, JS_FALSE, JS_NULL } jscan_type;

typedef struct jscan_member {
    ms_str key;   /* the key's raw text between the quotes (escapes not decoded) */
    ms_str value; /* the value's raw JSON text (a string value includes its quotes) */
    jscan_type type;
    /* 1: the raw key has no backslash, so it is its own decoding (the scanners set it; 0, as in
     * a member made by hand, means not known): a lookup then compares bytes and lengths only */
    unsigned char key_plain;
    size_t start; /* offset of the key's opening quote in the scanned text */
    size_t end;   /* offset just past the value */
} jscan_member;

#define JSCAN_INVALID (-1)    /* not valid JSON */
#define JSCAN_NOT_OBJECT (-2) /* valid JSON, but the top level is not an object */

/* Validates p[0..n) as one JSON document (surrounding white space allowed). If it is an object,
 * records its top-level members, in order, into members[0..max) and returns how many there are
 * in total (which may exceed max; those past max are not recorded). On failure returns
 * JSCAN_INVALID and, if err_off is not NULL, the offset of the first bad byte. */
int jscan_object(const char *p, size_t n, jscan_member *members, size_t max, size_t *err_off);

/* Where a valid document's long values end, noted as the walks pass over them: between
 * jscan_skips_begin and jscan_skips_end, the calling thread's scanners that walk the document
 * without validating it (jscan_members_valid, jscan_iter_*) note the long strings and containers
 * inside a value they pass over, and jump past a value noted instead of passing over its bytes
 * again. A request translated into the hub's dialect is walked level by level (the messages, a
 * message's content, a block's text), and each level passed over the prompt once more. Values
 * shorter than JSCAN_SKIP_MIN bytes are not noted; the table holds the last few noted (up to
 * JSCAN_SKIPS / 2, then it starts over), what the next level's walk wants. */
#define JSCAN_SKIPS_BITS 5
#define JSCAN_SKIPS (1u << JSCAN_SKIPS_BITS)
#define JSCAN_SKIP_MIN 256
typedef struct jscan_skips {
    const char *base; /* the document noted */
    size_t n;
    unsigned count;
    struct {
        uint32_t start, end; /* offsets in the document; end 0: a free slot */
    } slot[JSCAN_SKIPS];
} jscan_skips;

/* Starts noting for p[0..n), a document jscan_object has accepted, into *sk (emptied): the
 * walks of views inside it note and jump until jscan_skips_end, which the caller calls before
 * the document or *sk can change or go. Memory-safe for any input (a walk never leaves its
 * view); on bytes that are not valid JSON the walks' results are unspecified, as without notes.
 * A document over 4 GiB is not noted. */
void jscan_skips_begin(jscan_skips *sk, const char *p, size_t n);
void jscan_skips_end(void);

/* The type of the valid JSON value that starts with the byte c. */
jscan_type jscan_type_of(char c);

/* The length of the valid JSON string token (quotes included) that p[0..n) starts with, or 0
 * when it does not start with one. */
size_t jscan_string_token(const char *p, size_t n);

/* Same, for a value already known to be valid (for example a member's value): lists the members
 * of the object it holds. Returns their count, or JSCAN_NOT_OBJECT. */
int jscan_members(ms_str obj, jscan_member *members, size_t max);

/* The members of an object inside a document jscan_object has already accepted (a member's
 * value, or anything within one), without validating it a second time: one structural pass,
 * several times cheaper than jscan_members on chunks of small values. Memory-safe for any input
 * (every read is bounds-checked), but on input that is not valid JSON the result is unspecified
 * beyond being a count <= the bytes given or JSCAN_NOT_OBJECT. Returns as jscan_members. */
int jscan_members_valid(ms_str obj, jscan_member *members, size_t max);

/* Walks the members of an object, or the elements of an array, that lies in a document
 * jscan_object has already accepted, one at a time and without validating it again (the structural
 * pass of jscan_members_valid): for rewriting a document token by token, where a member list
 * of fixed size could not hold every member. Memory-safe for any input; on input that is not
 * valid JSON the values given are unspecified beyond lying within it. */
typedef struct jscan_iter {
    const char *p;
    size_t n, i; /* i: where the next member or element starts (n: none left) */
    size_t past; /* once the close is reached: the offset just past it (0 before) */
    char close;  /* '}' or ']' */
} jscan_iter;

/* Starts on v, an object or an array (white space around it allowed). Returns 0, or -1 when it
 * is neither (the iterator then gives nothing). */
int jscan_iter_start(jscan_iter *it, ms_str v);
/* The next member of an object into *m (start and end are offsets in the object's text).
 * Returns 1, 0 when there are no more (or the value is an array), -1 when the text is not as
 * promised (nothing more is given). */
int jscan_iter_member(jscan_iter *it, jscan_member *m);
/* The next element of an array: its raw text and type. Returns as jscan_iter_member. */
int jscan_iter_value(jscan_iter *it, ms_str *v, jscan_type *t);
/* The next element of an array without finding where it ends: v runs from its start to the end of
 * the array's text, t is its type. The caller, having walked it (an object's members, whose walk
 * finds its close: it.past), says how long it was with jscan_iter_past, so that its bytes are not
 * passed over twice (a message's prompt is its largest part). Returns 1, or 0 when none is left. */
int jscan_iter_peek(jscan_iter *it, ms_str *v, jscan_type *t);
/* After jscan_iter_peek: the element was len bytes (0: not known, it is looked for). */
void jscan_iter_past(jscan_iter *it, size_t len);

/* The last member named key (keys compared after decoding escapes), or NULL. */
const jscan_member *jscan_find(const jscan_member *m, size_t n, const char *key);

/* Whether a member's raw key text (escapes not decoded) names key[0..klen). Every lookup and
 * every splice must use this one comparison: a splice that compared raw bytes would miss
 * "include_\u0075sage" while the provider, which decodes, would read it. */
int jscan_key_eq(ms_str raw, const char *key, size_t klen);

/* A name to look for with jscan_pick; JSCAN_KEY("usage") makes one. */
typedef struct jscan_key {
    const char *s;
    size_t n;
} jscan_key;
#define JSCAN_KEY(lit)                                                                             \
    {                                                                                              \
        (lit), sizeof(lit) - 1                                                                     \
    }

/* jscan_find for several names in one pass: out[i] is the last member named keys[i], or NULL.
 * For the hot path (every streamed event), where a jscan_find per name walks the members again
 * each time. */
void jscan_pick(const jscan_member *m, size_t n, const jscan_key *keys, size_t nk,
                const jscan_member **out);

/* The index in keys of the first name raw (a member's name as written) is, by jscan_key_eq's
 * comparison; nk when it is none of them. For scans that take each member in turn and must see
 * every one (a repeated name, a name no table lists). */
size_t jscan_key_index(ms_str raw, const jscan_key *keys, size_t nk);

/* jscan_pick for fields the gateway acts on: out[i] is the member named keys[i], or NULL.
 * Returns -1, or the index in keys of a name that occurs more than once (out is then not
 * complete). JSON leaves duplicate names undefined, and parsers differ (first wins, last wins,
 * error): a gateway that read one copy while the provider reads the other would bill, route or
 * force usage on a request the provider sees differently, so such requests are refused. */
int jscan_pick_unique(const jscan_member *m, size_t n, const jscan_key *keys, size_t nk,
                      const jscan_member **out);

/* Decodes a JSON string value (with its quotes) into out as UTF-8, NUL-terminated. Returns the
 * decoded length, or -1 if it is not a string or does not fit in outlen - 1 bytes. */
long jscan_string(ms_str v, char *out, size_t outlen);
/* Parses a number value that is an integer (no fraction or exponent, or an exponent/fraction
 * that still yields an exact integer like 1.0 or 1e3) within int64. Returns 0 or -1. */
int jscan_int(ms_str v, int64_t *out);
/* Parses any number value into a double. Returns 0 or -1. */
int jscan_double(ms_str v, double *out);

#endif
