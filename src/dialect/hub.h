/*
 * The rewrite of a request in another dialect into the hub format (OpenAI chat), shared by the
 * Anthropic and Responses request sides. Two ways: a tree (the document read with jansson, a
 * dialect's builder, the result written compactly or not at all: the Responses side), and token
 * by token (the Anthropic side: the scanned body's members walked with jscan_iter and written
 * straight out, the client's strings, numbers and schemas copied as they came, no tree). The
 * small JSON helpers of both are here.
 */
#ifndef MS_DIALECT_HUB_H
#define MS_DIALECT_HUB_H

#include <jansson.h>
#include <string.h>

#include "common/buf.h"
#include "common/jscan.h"
#include "dialect/dialect.h"

struct prov_call;

/* Builds the hub body of a request from its parsed document req into out (a JSON object).
 * Returns 0, or -1 with *why filled (a refusal, or why->status 0: memory). */
typedef int (*dialect_hub_builder)(const struct prov_call *call, json_t *req, json_t *out,
                                   dialect_refusal *why);

/* call->body read, built by build, appended to out as compact JSON; on failure out is as it was.
 * Returns 0, or -1 with *why filled (why->status 0: memory or out's limit). */
int dialect_hub_rewrite(const struct prov_call *call, buf_t *out, dialect_refusal *why,
                        dialect_hub_builder build);

/* JSON null or absent. */
int dialect_is_null(const json_t *v);
/* type (may be NULL) is want. */
int dialect_type_is(const char *type, const char *want);
/* {"type":"text","text":t} (t's reference is taken). */
json_t *dialect_text_part(json_t *t);
/* A content list of text parts only: a single text becomes a plain string (the same request, and
 * what OpenAI's own examples send), none at all ""; other lists as they are. Consumes parts. */
json_t *dialect_simplify(json_t *parts);

/* ---- token by token ---- */

/* A member dialect_pick did not find: value.p NULL. */
static inline int dialect_absent(const jscan_member *m)
{
    return m->value.p == NULL;
}
/* Absent or JSON null (what dialect_is_null says of a tree's member). */
static inline int dialect_tok_null(const jscan_member *m)
{
    return !m->value.p || m->type == JS_NULL;
}
/* A string member (present). */
static inline int dialect_tok_str(const jscan_member *m)
{
    return m->value.p && m->type == JS_STRING;
}
/* Whether m is a string that decodes to want[0..n) (escapes decoded, as jansson would read it);
 * want has no backslash. */
int dialect_tok_esc_eq(const jscan_member *m, const char *want, size_t n);
static inline int dialect_tok_eq(const jscan_member *m, const char *want, size_t n)
{
    if (!dialect_tok_str(m) || m->value.n < 2 + n) return 0; /* an escape only lengthens */
    /* the usual names are written plainly: the same length means the same bytes */
    if (m->value.n == 2 + n) return memcmp(m->value.p + 1, want, n) == 0;
    return dialect_tok_esc_eq(m, want, n);
}
#define DIALECT_TOK_IS(m, lit) dialect_tok_eq((m), (lit), sizeof(lit) - 1)
/* out[i] = the member of obj named keys[i] (the last of a name, as jansson keeps it), or absent;
 * all absent when obj is not an object. obj lies in a document jscan_object accepted, and may run
 * on past the object (an element jscan_iter_peek gave). Returns the object's length up to its
 * close (0: not an object). */
size_t dialect_pick(ms_str obj, const jscan_key *keys, size_t nk, jscan_member *out);
/* The next element of the array arr walks: its type into *t, and when it is an object its members
 * picked as dialect_pick does, in the one pass that finds where it ends. Returns 1, or 0 when
 * none is left. */
int dialect_pick_next(jscan_iter *arr, const jscan_key *keys, size_t nk, jscan_member *out,
                      jscan_type *t);
/* The decoded text of a string token tok (quotes included) for a message: at most outlen - 1
 * bytes, NUL-terminated; "(untyped)" when tok is not a string. */
void dialect_tok_name(ms_str tok, int is_string, char *out, size_t outlen);
/* Appends v, a valid JSON value, without the white space between its tokens (strings, numbers
 * and literals as they are). */
int dialect_put_compact(buf_t *b, ms_str v);
/* Appends v's compact text as a JSON string (a tool call's arguments): every '"' and '\\' of it
 * escaped. */
int dialect_put_quoted(buf_t *b, ms_str v);

#endif
