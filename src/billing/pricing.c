/*
 * Prices and hold bounds (billing.h, "prices"): pure integer arithmetic, no state, no locks, so
 * every worker calls it directly on its loop.
 *
 * Money is nano-dollars. A provider price is kept per 1M tokens because that is how prices are
 * written (USD 0.0375 per 1M tokens is 37500000 nano-dollars per 1M tokens, but 0.0375 nano-dollars
 * per token): dividing per token would round every cheap model to zero. The markup is applied to
 * that per-1M price, and the division by 1M happens once per request, on the whole sum, so a
 * request is rounded once and never per token. Products go through __int128 and saturate at
 * INT64_MAX, so absurd token counts or prices cannot wrap into a small (or negative) charge.
 *
 * The bounds feed the hold a request places before it goes upstream; their rules and why they
 * are safe are in docs/BILLING.md.
 */
#include <string.h>

#include "billing/billing.h"

/* markup_percent_micro is in millionths of a percent, so 100 % is 100 * 1e6. */
#define PRICE_HUNDRED_PERCENT 100000000LL
#define PRICE_TOKENS_PER_PRICE 1000000LL
/* What one image or audio part may cost beyond the bytes of its JSON: see docs/BILLING.md. */
#define PRICE_MEDIA_ALLOWANCE 1500LL
/* The reply priming and any other fixed per-request overhead of the chat format. */
#define PRICE_REQUEST_OVERHEAD 16LL

static int64_t price_sat(__int128 v)
{
    if (v > (__int128)INT64_MAX) return INT64_MAX;
    if (v < 0) return 0;
    return (int64_t)v;
}

/* (num + den/2) / den for num >= 0, den > 0: division rounded half up. */
static __int128 price_div_half_up(__int128 num, __int128 den)
{
    return (num + den / 2) / den;
}

int64_t price_list_per_mtok(const cfg_t *cfg, int64_t base_nusd_per_mtok)
{
    int64_t markup = cfg ? cfg->markup_percent_micro : 0;
    __int128 num;

    if (base_nusd_per_mtok <= 0) return 0;
    if (markup < 0) markup = 0; /* the config refuses it; never let it lower a price */
    num = (__int128)base_nusd_per_mtok * (PRICE_HUNDRED_PERCENT + (__int128)markup);
    return price_sat(price_div_half_up(num, PRICE_HUNDRED_PERCENT));
}

/* The largest sum of (tokens x list price) that still costs less than INT64_MAX nano-dollars
 * once divided: anything above saturates anyway, so a running sum is clamped here, which keeps
 * five products (each below 2^126) from overflowing __int128 together. */
#define PRICE_SUM_CAP ((__int128)INT64_MAX * PRICE_TOKENS_PER_PRICE + PRICE_TOKENS_PER_PRICE)

/* sum + tokens x list price of base, clamped at PRICE_SUM_CAP; negative tokens count as none. */
static __int128 price_add(const cfg_t *cfg, __int128 sum, int64_t tokens, int64_t base)
{
    if (tokens <= 0) return sum;
    sum += (__int128)tokens * price_list_per_mtok(cfg, base);
    return sum > PRICE_SUM_CAP ? PRICE_SUM_CAP : sum;
}

int64_t price_usage_cost(const cfg_t *cfg, const cfg_model *m, const usage_counts *u)
{
    __int128 sum = 0;

    if (!m || !u) return 0;
    sum = price_add(cfg, sum, u->input, m->price_in_nusd_per_mtok);
    sum = price_add(cfg, sum, u->cached_input, m->price_cached_in_nusd_per_mtok);
    sum = price_add(cfg, sum, u->cache_write, m->price_cache_write_nusd_per_mtok);
    sum = price_add(cfg, sum, u->cache_write_1h, m->price_cache_write_1h_nusd_per_mtok);
    /* reasoning is inside output, which the provider bills at the output price */
    sum = price_add(cfg, sum, u->output, m->price_out_nusd_per_mtok);
    return price_sat(price_div_half_up(sum, PRICE_TOKENS_PER_PRICE));
}

int64_t price_cost(const cfg_t *cfg, const cfg_model *m, int64_t prompt_tokens,
                   int64_t completion_tokens)
{
    usage_counts u = {.input = prompt_tokens, .output = completion_tokens};
    return price_usage_cost(cfg, m, &u);
}

int64_t price_hold(const cfg_t *cfg, const cfg_model *m, int64_t prompt_bound, int64_t output_bound)
{
    __int128 sum = 0;
    int64_t dear;

    if (!m) return 0;
    /* The markup is the same factor for every kind, so the dearest base price gives the dearest
     * list price. A cache write usually costs more than plain input (Anthropic: 1.25x, 2x for an
     * hour), so pricing the bound as input would let a request that writes its prompt to the
     * cache cost more than its hold. */
    dear = m->price_in_nusd_per_mtok;
    if (m->price_cached_in_nusd_per_mtok > dear) dear = m->price_cached_in_nusd_per_mtok;
    if (m->price_cache_write_nusd_per_mtok > dear) dear = m->price_cache_write_nusd_per_mtok;
    if (m->price_cache_write_1h_nusd_per_mtok > dear) dear = m->price_cache_write_1h_nusd_per_mtok;
    sum = price_add(cfg, sum, prompt_bound, dear);
    sum = price_add(cfg, sum, output_bound, m->price_out_nusd_per_mtok);
    return price_sat(price_div_half_up(sum, PRICE_TOKENS_PER_PRICE));
}

/* Occurrences of "image_url" and "input_audio" in the body. Both have their only '_' at index
 * 5, so every occurrence holds exactly one '_' (and none can overlap another): one memchr pass
 * over the underscores, which prose rarely has, instead of two memmem passes over every byte
 * (they were half of the worker's cost on a 100 KB prompt). */
static int64_t price_media_count(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    int64_t n = 0;

    while (p < end && (p = memchr(p, '_', (size_t)(end - p))) != NULL) {
        size_t before = (size_t)(p - body), after = (size_t)(end - p) - 1;
        if (before >= 5 && after >= 3 && memcmp(p - 5, "image", 5) == 0 &&
            memcmp(p + 1, "url", 3) == 0)
            n++;
        else if (before >= 5 && after >= 5 && memcmp(p - 5, "input", 5) == 0 &&
                 memcmp(p + 1, "audio", 5) == 0)
            n++;
        p++;
    }
    return n;
}

int64_t price_prompt_bound(const char *body, size_t len)
{
    __int128 bound = (__int128)len + PRICE_REQUEST_OVERHEAD;

    if (body && len > 0) bound += (__int128)PRICE_MEDIA_ALLOWANCE * price_media_count(body, len);
    return price_sat(bound);
}

int64_t price_output_bound(const cfg_t *cfg, const cfg_model *m, int64_t request_max_tokens)
{
    /* a provider never writes more than the model's cap, whatever the request asks */
    if (request_max_tokens >= 0 && m && m->max_output_tokens > 0 &&
        request_max_tokens > m->max_output_tokens)
        return m->max_output_tokens;
    if (request_max_tokens >= 0) return request_max_tokens;
    if (m && m->max_output_tokens > 0) return m->max_output_tokens;
    if (cfg && cfg->default_max_output_tokens > 0) return cfg->default_max_output_tokens;
    return 4096; /* the config default; only reached with a cfg_t not made by cfg_load */
}
