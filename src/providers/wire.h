/*
 * Small writers every adapter needs when it builds an upstream request: a header line, a URL
 * path segment, a pass-through body with `model` spliced, and JSON written compactly from a jansson
 * document in the document's own member order (jansson's own dump reorders nothing but prints 0.7
 * as 0.69999999999999996, which a provider's validator may read differently). One copy, so every
 * adapter escapes alike.
 */
#ifndef MS_PROV_WIRE_H
#define MS_PROV_WIRE_H

#include <jansson.h>
#include <stddef.h>

#include "providers/provider.h"

/* Adds the header "<name><value>" (name includes ": "). Returns 0, or -1 (full or memory). */
int prov_add_header(prov_upreq *u, const char *name, const char *value);
/* Appends s percent-encoded outside RFC 3986's unreserved set: a model or deployment name
 * going into a URL path. */
int prov_put_path_segment(buf_t *b, const char *s);
/* Appends s[0..n) as a JSON string (quotes and escapes). */
int prov_put_jstr(buf_t *b, const char *s, size_t n);
/* Appends v as compact JSON: members in insertion order, reals in the shortest form that reads
 * back the same (non-finite ones as null, which JSON has no other way to say). */
int prov_put_json(buf_t *b, const json_t *v);
/* Appends v as prov_put_json writes a real: the shortest decimal that reads back as v. */
int prov_put_real(buf_t *b, double v);
/* For a body written token by token from the client's, as the tree path would write it
 * (gemini.c, anthropic.c: their usual requests): a JSON string token, quotes included, as
 * prov_put_json writes the string a tree holds (copied when it has no escape, else decoded and
 * escaped again); 0 or -1 (memory). */
int prov_put_token_str(buf_t *b, ms_str raw);
/* A JSON number token as prov_put_json writes the number a tree holds (jtree_number_kind's
 * rule): 0, -1 (memory), or 1 when a tree would not hold it (nothing written). */
int prov_put_token_num(buf_t *b, ms_str raw);

/* The pass-through request body: the client's body (call->body) with only the value of its
 * `model` member replaced by the deployment's upstream name, as three iovecs over the client's
 * buffer and the new name (a JSON string in u->scratch, which this initializes): nothing is
 * re-serialised, so every other byte reaches the provider as the client sent it. Returns 0, or
 * -1 (memory; no model member). */
int prov_splice_model(const prov_call *call, prov_upreq *u);

/* A short, printable excerpt (at most 200 bytes) of an answer that is not the provider's error
 * shape (a proxy's HTML page, say), for the message a client gets. */
void prov_excerpt(ms_str body, char *out, size_t outlen);

/* Fills *why with the contract's 400 invalid_parameter naming param and a formatted message;
 * returns -2, build's refusal. */
int prov_refuse(prov_refusal *why, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
