/*
 * The mapping from what happened upstream to what the client is told, kept apart from the
 * transfer code so it is one table, tested on its own (tests/unit/test_errors.c).
 *
 * The contract: a provider that does not answer in time is 504 upstream_timeout; one that
 * answers with an error, an invalid answer or not at all is 502 provider_error; an upstream 429
 * stays a 429 (with the provider's retry-after) because the client can usefully wait.
 */
#include "api/api.h"
#include "upstream/upstream.h"

api_error_info api_upstream_error(int res, int upstream_status)
{
    if (res == UP_TIMEOUT) return (api_error_info){504, "timeout_error", "upstream_timeout"};
    if (res != UP_OK) return (api_error_info){502, "upstream_error", "provider_error"};
    if (upstream_status == 429)
        return (api_error_info){429, "rate_limit_error", "rate_limit_exceeded"};
    if (upstream_status == 408 || upstream_status == 504)
        return (api_error_info){504, "timeout_error", "upstream_timeout"};
    return (api_error_info){502, "upstream_error", "provider_error"};
}
