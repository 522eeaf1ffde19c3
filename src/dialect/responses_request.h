/*
 * The OpenAI Responses dialect's request side (POST /v1/responses: Codex, the Vercel AI SDK).
 * Two pure functions, as for Anthropic's Messages (anthropic_request.h): one reads the fields the
 * gateway acts on into its request (prov_call); the other rewrites the body as an OpenAI chat
 * completions body, the gateway's hub format, which every adapter builds from (but the
 * Responses adapter, providers/openai_responses.c, which passes the client's bytes through).
 */
#ifndef MS_DIALECT_RESPONSES_REQUEST_H
#define MS_DIALECT_RESPONSES_REQUEST_H

#include <stddef.h>

#include "common/buf.h"
#include "config/config.h"
#include "dialect/dialect.h"

struct prov_call;

/* Parses call->body (set by the caller, with call->request_id) as a Responses request into call
 * (ep EP_CHAT, model resolved in cfg, stream, max_output_tokens as max_tokens, usage always
 * wanted: Responses streams always end with it). Refuses what needs stored state the gateway does
 * not keep yet (previous_response_id, background). shown gets the model name as the client gave
 * it, printable, for the access log (even when refused). Returns 0, or -1 with *why filled in
 * the contract's terms. */
int dialect_responses_parse(const cfg_t *cfg, struct prov_call *call, char *shown, size_t shown_len,
                            dialect_refusal *why);

/* Appends to out the request call->body (accepted by dialect_responses_parse) rewritten as an
 * OpenAI chat completions body, compact JSON. A field that would change the answer and cannot be
 * carried is refused with the contract's 400 naming it, never dropped
 * (openai_responses_request.c lists what is mapped, dropped and refused). Returns 0; or -1 with
 * *why filled (refused), or with why->status 0 when memory or out's limit ran out. */
int dialect_responses_to_openai(const struct prov_call *call, buf_t *out, dialect_refusal *why);

#endif
