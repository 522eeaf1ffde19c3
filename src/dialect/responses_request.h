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

/* What a Responses request asks of the gateway's store of responses (api/responses.c). */
typedef struct dialect_responses_state {
    int store; /* store: true, the API's default: keep the response for GET and continuations */
    int has_previous; /* previous_response_id was given (not null) */
    /* its value decoded, "" when it cannot be an id the gateway made or kept (too long, or a
     * character outside [A-Za-z0-9_-]): such an id is simply not found */
    char previous[128];
    ms_str previous_value; /* previous_response_id's JSON value, in the body */
    ms_str input;          /* the input member's JSON value, as the client wrote it */
} dialect_responses_state;

/* Parses call->body (set by the caller, with call->request_id) as a Responses request into call
 * (ep EP_CHAT, model resolved in cfg, stream, max_output_tokens as max_tokens, usage always
 * wanted: Responses streams always end with it), and what it asks of the store into *state (may
 * be NULL). Refuses background (a response polled for later). shown gets the model name as the
 * client gave it, printable, for the access log (even when refused). Returns 0, or -1 with *why
 * filled in the contract's terms. */
int dialect_responses_parse(const cfg_t *cfg, struct prov_call *call, char *shown, size_t shown_len,
                            dialect_responses_state *state, dialect_refusal *why);

/* Appends to out the request call->body (accepted by dialect_responses_parse) rewritten as an
 * OpenAI chat completions body, compact JSON. A field that would change the answer and cannot be
 * carried is refused with the contract's 400 naming it, never dropped
 * (openai_responses_request.c lists what is mapped, dropped and refused). Returns 0; or -1 with
 * *why filled (refused), or with why->status 0 when memory or out's limit ran out. */
int dialect_responses_to_openai(const struct prov_call *call, buf_t *out, dialect_refusal *why);

/* ---- stored responses (dialect/openai_responses_history.c) ---- */

/* The response object a kept answer carries: doc itself, or (is_event) the `response` member of
 * a stream's terminal event. *obj gets it and id its "id" (NUL-terminated). Returns 0, or -1
 * when there is no object with a string id of [A-Za-z0-9_-] that fits idlen. */
int dialect_responses_object(ms_str doc, int is_event, ms_str *obj, char *id, size_t idlen);

/* The conversation after a response, as Responses input items (a JSON array) into out: the
 * request's input (a string is one user message; items as they came) and then the response's
 * output as the input items a client sends back (assistant text as output_text parts, function
 * calls by call_id; reasoning and built-in tool items are left out: see the file's comment).
 * Returns 0, or -1 (invalid JSON, memory, or out's limit). */
int dialect_responses_history(ms_str input, ms_str response, buf_t *out);

/* The input a continuation sends: history's items (a JSON array; empty: none), then those of
 * input (a JSON value: a string is one user turn), as one JSON array into out. Returns 0, or -1
 * (history or input is not an array or string, memory, or out's limit). */
int dialect_responses_merge(ms_str history, ms_str input, buf_t *out);

/* body with its input member's value (input) replaced by new_input, and previous_response_id's
 * value (prev; empty: none) by null, into out: what the client would have sent without state on
 * the server. Returns 0, or -1 (a value outside body, memory, or out's limit). */
int dialect_responses_splice(ms_str body, ms_str input, ms_str new_input, ms_str prev, buf_t *out);

/* dialect_responses_merge then dialect_responses_splice: a continuation made whole. */
int dialect_responses_continue(ms_str body, ms_str input, ms_str prev, ms_str history, buf_t *out);

/* The response that made the output item item_id, for ids the gateway's encoder makes
 * (msg_/fc_/rs_<hex>_<index> of resp_<hex>). Returns 0 with resp_id filled, or -1. */
int dialect_responses_item_response(const char *item_id, char *resp_id, size_t len);

/* Finds a stored response object by id: 0 with *response, or -1 (not there). */
typedef int (*dialect_responses_lookup)(void *ud, const char *resp_id, ms_str *response);

/* input (a JSON array of items) with each item_reference to an item of a stored response that
 * lookup finds replaced by that item as a client sends it back (reasoning items left out), into
 * out. References lookup cannot find stay as they are: a provider that keeps items of its own
 * may know them (the rewrite for other providers refuses them). Returns 0; 1 when nothing was
 * resolved (out untouched: the input stands); -1 (not an array, memory, or out's limit). */
int dialect_responses_resolve(ms_str input, dialect_responses_lookup lookup, void *ud, buf_t *out);

#endif
