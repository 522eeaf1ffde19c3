/*
 * Unit tests for the upstream-outcome-to-client-error table (src/api/errors.c) and the echo
 * provider's token rule (src/providers/echo.c), both of which the contract and docs promise.
 */
#include "api/api.h"
#include "providers/echo.h"
#include "tap.h"
#include "upstream/upstream.h"

static void test_transport_failures(void)
{
    api_error_info e = api_upstream_error(UP_TIMEOUT, 0);
    CHECK_EQ_INT(e.status, 504);
    CHECK_EQ_STR(e.type, "timeout_error");
    CHECK_EQ_STR(e.code, "upstream_timeout");
    e = api_upstream_error(UP_CONNECT_FAILED, 0);
    CHECK_EQ_INT(e.status, 502);
    CHECK_EQ_STR(e.type, "upstream_error");
    CHECK_EQ_STR(e.code, "provider_error");
    e = api_upstream_error(UP_ERROR, 0);
    CHECK_EQ_INT(e.status, 502);
    CHECK_EQ_STR(e.code, "provider_error");
}

static void test_upstream_statuses(void)
{
    static const int to502[] = {400, 401, 403, 404, 422, 500, 502, 503, 529};
    for (size_t i = 0; i < sizeof to502 / sizeof to502[0]; i++) {
        api_error_info e = api_upstream_error(UP_OK, to502[i]);
        CHECK_EQ_INT(e.status, 502);
        CHECK_EQ_STR(e.code, "provider_error");
    }
    api_error_info e = api_upstream_error(UP_OK, 429);
    CHECK_EQ_INT(e.status, 429);
    CHECK_EQ_STR(e.type, "rate_limit_error");
    CHECK_EQ_STR(e.code, "rate_limit_exceeded");
    e = api_upstream_error(UP_OK, 504);
    CHECK_EQ_INT(e.status, 504);
    CHECK_EQ_STR(e.code, "upstream_timeout");
    e = api_upstream_error(UP_OK, 408);
    CHECK_EQ_INT(e.status, 504);
}

static void test_echo_tokens(void)
{
    CHECK_EQ_INT(echo_count_tokens("", 0), 0);
    CHECK_EQ_INT(echo_count_tokens("   \n\t", 5), 0);
    CHECK_EQ_INT(echo_count_tokens("hi", 2), 1);
    CHECK_EQ_INT(echo_count_tokens("You said: hi", 12), 4);
    CHECK_EQ_INT(echo_count_tokens("a1b2 c3!?", 9), 4);
    /* "é" (2 bytes) and "€" (3 bytes) are one token each; "x" after them is another */
    CHECK_EQ_INT(echo_count_tokens("\xc3\xa9\xe2\x82\xacx", 6), 3);
    /* a stray continuation byte still counts once, never stalls */
    CHECK_EQ_INT(echo_count_tokens("\x80\x80", 2), 2);
}

int main(void)
{
    RUN(test_transport_failures);
    RUN(test_upstream_statuses);
    RUN(test_echo_tokens);
    TAP_DONE();
}
