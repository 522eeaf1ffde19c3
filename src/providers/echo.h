/*
 * The built-in `echo` provider: answers locally, deterministically, with real token counts, so
 * the gateway works (and its billing can be tested) without any provider key. The rules are in
 * docs/PROVIDERS.md:
 *   - a token is a maximal run of ASCII letters and digits, or any other single non-white-space
 *     character (a multi-byte UTF-8 character counts as one);
 *   - chat: the reply is "You said: " + the text of the last user message ("Hello! I am the echo
 *     model." when there is none), cut to max_tokens tokens (finish_reason "length");
 *     prompt_tokens = 3 + sum over messages of (4 + tokens(content text));
 *     completion_tokens = tokens(reply);
 *   - embeddings: 8 dimensions per input, derived from an FNV-1a hash of the text, unit length;
 *     prompt_tokens = tokens of every input.
 */
#ifndef MS_ECHO_H
#define MS_ECHO_H

#include <stddef.h>
#include <stdint.h>

#include "providers/provider.h"

/* Counts tokens of s by the rule above. */
int64_t echo_count_tokens(const char *s, size_t n);

#endif
