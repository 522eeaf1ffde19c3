/*
 * A request's token usage in the counts providers bill (shared/spec/API.md, "Billing"): five
 * counts that never overlap, each priced on its own, plus reasoning, which is a part of output
 * recorded apart. Every provider's usage is mapped onto these by its adapter; billing prices them,
 * the ledger stores them, and each client dialect shows them in its own fields (OpenAI's
 * prompt_tokens is the sum of the four prompt counts). One struct everywhere, so no layer can
 * drop a count another one needs.
 */
#ifndef MS_USAGE_H
#define MS_USAGE_H

#include <stdint.h>

typedef struct usage_counts {
    int64_t input;          /* prompt tokens read normally */
    int64_t cached_input;   /* prompt tokens read from the provider's prompt cache */
    int64_t cache_write;    /* prompt tokens written to a 5-minute cache */
    int64_t cache_write_1h; /* prompt tokens written to a 1-hour cache */
    int64_t output;         /* completion tokens, reasoning included */
    int64_t reasoning;      /* the part of output spent thinking (not billed apart) */
} usage_counts;

/* Every prompt token, whichever way it was read or written: what OpenAI calls prompt_tokens. */
static inline int64_t usage_prompt(const usage_counts *u)
{
    return u->input + u->cached_input + u->cache_write + u->cache_write_1h;
}

#endif
