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
 * Text a caller has merely scanned before (a stream event's `choices`) is scanned once more by
 * jtree_load: the pass is a fraction of the jansson parse it replaces, and it bounds the
 * builder's recursion. A request body is read whole several times on a translated path (the
 * dialect's scan, this tree, the hub's own parse): there the caller's word that the text is
 * valid (jtree_load_valid) saves one pass of a large request, and the builder bounds its own
 * nesting.
 */
#ifndef MS_JTREE_H
#define MS_JTREE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* Returns a new reference, or NULL with err->text set (err may be NULL). */
json_t *jtree_load(const char *p, size_t n, json_error_t *err);
/* jtree_load of a text already known to be valid JSON (prov_call's valid member: the scan of
 * the same bytes, or the gateway's own writing of such a tree): the same tree without the
 * second pass. The builder still checks every index against the end (a text that was not valid
 * after all fails, never reads past it) and bounds its own nesting (2 x JSCAN_MAX_DEPTH). */
json_t *jtree_load_valid(const char *p, size_t n, json_error_t *err);

/* {k1: v1, k2: v2, ...} of n pairs (const char *, json_t *), taking every value's reference as
 * json_pack's "o" does: NULL, with every value released, when a value is NULL or memory runs
 * out. For the objects a translation makes per message and per part, where json_pack parses its
 * format on every call (~1,300 instructions an object). Keys are the caller's literals. */
json_t *jtree_obj(int n, ...);

/* For a reader that takes what it needs from a document with jscan and must fail exactly where
 * jtree_load would (a decoder's shortcut beside its tree): past JSON's syntax the tree refuses
 * only a number out of range and a name holding U+0000, so the parts such a reader passes over
 * are checked with these. */
/* Whether the tree would hold v, a value jscan has accepted (its text, white space around
 * allowed). */
int jtree_holds(ms_str v);
/* Whether an object's name, as its raw text between the quotes, is one the tree takes. */
int jtree_holds_key(ms_str raw);
/* A number value as the tree holds it: 1 an integer (into *out), 2 a real, 0 out of range (the
 * tree refuses it) or not a number. */
int jtree_number_kind(ms_str v, int64_t *out);

#endif
