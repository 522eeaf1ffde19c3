/*
 * The rewrite of a request in another dialect into the hub format (OpenAI chat), shared by the
 * Anthropic and Responses request sides: the document read with jansson, a dialect's builder, the
 * result written compactly or not at all, and the small JSON helpers every builder uses.
 */
#ifndef MS_DIALECT_HUB_H
#define MS_DIALECT_HUB_H

#include <jansson.h>

#include "common/buf.h"
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

#endif
