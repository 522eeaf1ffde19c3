/*
 * The Anthropic Messages dialect's request side (POST /v1/messages: Claude Code, Anthropic's
 * SDKs). Two pure functions: one reads the fields the gateway acts on into its request
 * (prov_call), as dialect_openai_parse does for OpenAI clients; the other rewrites the body as an
 * OpenAI chat completions body, the gateway's hub format, for a model whose provider does not
 * speak Anthropic's API (every other adapter builds from that format). A provider that speaks
 * Anthropic's API gets the client's own bytes instead, so only that rewrite needs to be lossless
 * or refuse.
 */
#ifndef MS_DIALECT_ANTHROPIC_REQUEST_H
#define MS_DIALECT_ANTHROPIC_REQUEST_H

#include <stddef.h>

#include "common/buf.h"
#include "config/config.h"
#include "dialect/dialect.h"

struct prov_call;

/* Parses call->body (set by the caller, with call->request_id) as a Messages request into call
 * (ep EP_CHAT, model resolved in cfg, stream, max_tokens, usage always wanted: Anthropic streams
 * always carry it). shown gets the model name as the client gave it, printable, for the access
 * log (even when refused). Returns 0, or -1 with *why filled in the contract's terms (the
 * caller writes it in Anthropic's envelope). */
int dialect_anthropic_parse(const cfg_t *cfg, struct prov_call *call, char *shown, size_t shown_len,
                            dialect_refusal *why);

/* The same for POST /v1/messages/count_tokens, whose body has no max_tokens. */
int dialect_anthropic_parse_count(const cfg_t *cfg, struct prov_call *call, char *shown,
                                  size_t shown_len, dialect_refusal *why);

/* Appends to out the request call->body (accepted by dialect_anthropic_parse) rewritten as an
 * OpenAI chat completions body, compact JSON. A field that no OpenAI-shaped provider can honour
 * and that would change the answer is refused with the contract's 400 naming it, never dropped
 * (anthropic_messages_request.c lists what is mapped, dropped and refused). Returns 0; or -1
 * with *why filled (refused), or with why->status 0 when memory or out's limit ran out. */
int dialect_anthropic_to_openai(const struct prov_call *call, buf_t *out, dialect_refusal *why);
/* The same, and the body's top-level members listed into members[0..*listed) as
 * jscan_members_valid would list them (views into out's data as the rewrite left it), so that
 * the OpenAI parser need not scan it again (dialect_openai_parse_listed); *listed 0 when there
 * were more than max. The engine's api_to_hub. */
struct jscan_member;
int dialect_anthropic_to_openai_listed(const struct prov_call *call, buf_t *out,
                                       struct jscan_member *members, size_t max, size_t *listed,
                                       dialect_refusal *why);

#endif
