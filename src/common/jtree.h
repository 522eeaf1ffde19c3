/*
 * A jansson tree from JSON text, built on the hot-path scanner (jscan.c) instead of jansson's
 * own parser. The translating paths (a client of one API, a provider of another) must hold the
 * request as a tree to rewrite it, and jansson's parser reads a string a byte at a time, copying
 * each into a growing buffer: a 100 KB prompt cost ~1.1 ms of CPU there, ten times the rest of a
 * proxied request (docs/PERFORMANCE.md, round 13). Here the document is validated by jscan (16
 * bytes a step over string bodies), then each string is made in one copy (decoded first only if
 * it has escapes).
 *
 * The result is what json_loadb(p, n, JSON_ALLOW_NUL, ...) returns, value for value (the unit
 * test and the fuzz target compare the two with json_equal): objects and arrays as the top
 * level only, duplicate names the last one's, \u0000 kept in strings but refused in names,
 * integers within int64 (else "too big integer"), reals within double (else "real number
 * overflow").
 *
 * Text a caller has already scanned (a stream event's `choices`, a body the dialect accepted) is
 * scanned once more here: a second SIMD pass is a fraction of the jansson parse it replaces, and
 * it is what bounds the builder's recursion, so there is deliberately no "trusted" variant.
 */
#ifndef MS_JTREE_H
#define MS_JTREE_H

#include <jansson.h>
#include <stddef.h>

/* Returns a new reference, or NULL with err->text set (err may be NULL). */
json_t *jtree_load(const char *p, size_t n, json_error_t *err);

#endif
