/*
 * Rate limits: requests and tokens per minute, per key, per account and per model, with the
 * GCRA algorithm (a smooth limit, no fixed windows: a client at the limit gets one request every
 * 60/rpm seconds, and an idle client may burst up to the whole minute's allowance).
 *
 * The state is shared by every worker thread of the instance and exact under concurrency
 * (striped locks; an admission checks and consumes every limit it touches atomically, all or
 * nothing). The backend sits behind rl_ops so that a Redis backend can replace the local one when
 * several instances share limits.
 *
 * Tokens are admitted with the request's estimate (the hold's prompt bound + output bound) and
 * corrected to the real usage once it is known.
 */
#ifndef MS_RATELIMIT_H
#define MS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "config/config.h"
#include "store/store.h"

typedef struct rl rl_t;

/* The outcome of an admission, and what the x-ratelimit-* headers report: the key's own request
 * and token limits (the ones a client can act on). */
typedef struct rl_result {
    int allowed;
    int64_t retry_after_ms; /* refused: the exact wait until this request would be admitted */
    const char *which;      /* refused: "requests" or "tokens", for the message */
    const char *scope;      /* refused: "key", "account" or "model" */
    int64_t limit_requests, remaining_requests, reset_requests_ms;
    int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
} rl_result;

/* A limiter with cfg's default limits (copied: cfg need not outlive it). */
rl_t *rl_new(const cfg_t *cfg);
void rl_free(rl_t *rl);
/* A reloaded config's default limits (limits:), for the requests admitted from now on; the
 * counters are kept (a changed limit rescales them, as above). Any thread. */
void rl_set_limits(rl_t *rl, const cfg_t *cfg);

/* Admits one request estimated at `tokens` for key (its rpm/tpm, -1 = cfg defaults), the key's
 * account (cfg account limits, 0 = none) and model m (m's limits, 0 = none; m may be NULL).
 * Consumes nothing unless every limit allows it. now_ms is a monotonic clock in ms. A token
 * estimate above a limit is counted as the whole limit (such a request waits for a full
 * allowance rather than being refused forever). Returns res->allowed. */
int rl_admit(rl_t *rl, const store_key *key, const cfg_model *m, int64_t tokens, int64_t now_ms,
             rl_result *res);
/* Reports the key's state without consuming (for answers that are not inference requests). */
void rl_peek(rl_t *rl, const store_key *key, int64_t now_ms, rl_result *res);
/* Corrects the token counters of key, its account and m from the estimate rl_admit counted to
 * the actual usage (less gives tokens back). Each counter is corrected from what it was really
 * charged: an estimate above a counter's limit was charged as the whole limit. */
void rl_correct(rl_t *rl, const store_key *key, const cfg_model *m, int64_t estimate,
                int64_t actual, int64_t now_ms);

/* The limits that apply to a request of key on model m (NULL: the key's and account's only),
 * resolved as rl_admit resolves them, for another backend (several instances: src/shared/):
 * out[0] is always the key's; scope 'k' key, 'a' account, 'm' model (id: a hash of its name);
 * 0 = not limited. Returns how many. */
typedef struct rl_limit {
    char scope;
    uint64_t id;
    int64_t requests, tokens;
} rl_limit;
int rl_limits(rl_t *rl, const store_key *key, const cfg_model *m, rl_limit out[3]);
/* "key", "account" or "model", for a refusal's message. */
const char *rl_scope_name(char scope);

/* Appends the six x-ratelimit-* header lines ("Name: value\r\n") for res to out. */
int rl_format_headers(const rl_result *res, buf_t *out);
/* Formats a duration as OpenAI does: "1s", "6m0s", "20ms", "1h2m3s"; out needs 32 bytes. */
void rl_format_duration(int64_t ms, char *out, size_t outlen);

#endif
