/*
 * Unit tests for the wire format of account webhooks (src/notify/webhook.c): the body of a
 * low-balance notice, its HMAC signature against a vector computed elsewhere (Python's hmac),
 * the rules a webhook URL must pass at the account API, what logs show of a URL, the addresses
 * a webhook may not reach by default, and the retry delays. Deliveries themselves are tested end
 * to end in tests/integration/notifications.test.mjs.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "notify/webhook.h"
#include "tap.h"

static void test_body(void)
{
    store_webhook w;
    buf_t b;
    memset(&w, 0, sizeof w);
    snprintf(w.event_id, sizeof w.event_id, "evt_0a1b");
    snprintf(w.type, sizeof w.type, "balance.low");
    w.account_id = 42;
    w.balance_nusd = 4990000000LL;
    w.threshold_nusd = 5000000000LL;
    w.created_at_ms = 1772366400250LL;
    buf_init(&b, 0);
    CHECK_EQ_INT(hook_body(&w, &b), 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK_EQ_STR(b.data, "{\"id\":\"evt_0a1b\",\"type\":\"balance.low\",\"createdAt\":"
                         "\"2026-03-01T12:00:00.250Z\",\"accountId\":42,\"balance\":4.99,"
                         "\"threshold\":5}");
    buf_free(&b);
    /* whole seconds carry no fraction; tiny amounts stay exact */
    w.created_at_ms = 1772366400000LL;
    w.balance_nusd = 1;
    buf_init(&b, 0);
    CHECK_EQ_INT(hook_body(&w, &b), 0);
    CHECK_EQ_INT(buf_append(&b, "", 1), 0);
    CHECK(strstr(b.data, "\"createdAt\":\"2026-03-01T12:00:00Z\"") != NULL);
    CHECK(strstr(b.data, "\"balance\":0.000000001,") != NULL);
    buf_free(&b);
}

static void test_sign(void)
{
    char sig[128];
    const char *body = "{\"id\":\"evt_1\"}";
    CHECK_EQ_INT(hook_sign("whsec_test", 1750000000, body, strlen(body), sig), 0);
    /* python3: hmac.new(b'whsec_test', b'1750000000.' + body, hashlib.sha256).hexdigest() */
    CHECK_EQ_STR(sig, "t=1750000000,v1="
                      "614e14c11eb4e0a265ab8b2ca3524056258febe246bf29101598d9acc32ea423");
    /* another time, another secret or another body: another signature */
    char other[128];
    CHECK_EQ_INT(hook_sign("whsec_test", 1750000001, body, strlen(body), other), 0);
    CHECK(strcmp(sig + 16, other + 16) != 0);
    CHECK_EQ_INT(hook_sign("whsec_tesu", 1750000000, body, strlen(body), other), 0);
    CHECK(strcmp(sig, other) != 0);
    CHECK_EQ_INT(hook_sign("whsec_test", 1750000000, body, strlen(body) - 1, other), 0);
    CHECK(strcmp(sig, other) != 0);
}

static void test_url_check(void)
{
    static const char *const good[] = {"https://hooks.example.com/ms?token=abc",
                                       "http://127.0.0.1:8080/hook", "http://[::1]:9/x",
                                       "https://example.com", "HTTPS://EXAMPLE.COM/upper"};
    static const char *const bad[] = {"",
                                      "ftp://example.com/x",
                                      "example.com/hook",
                                      "https://",
                                      "https:///path",
                                      "https://exa mple.com/",
                                      "https://example.com/\x01",
                                      "https://user:pass@example.com/",
                                      "https://user@example.com/",
                                      "javascript:alert(1)",
                                      "http://[::1/x"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        const char *why = hook_url_check(good[i]);
        if (why) fprintf(stderr, "refused %s: %s\n", good[i], why);
        CHECK(why == NULL);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *why = hook_url_check(bad[i]);
        if (!why) fprintf(stderr, "accepted %s\n", bad[i]);
        CHECK(why != NULL);
    }
    /* the length cap: 2048 bytes pass, 2049 do not */
    char *u = malloc(STORE_WEBHOOK_URL_MAX + 2);
    memcpy(u, "https://example.com/", 20);
    memset(u + 20, 'a', STORE_WEBHOOK_URL_MAX - 20);
    u[STORE_WEBHOOK_URL_MAX] = '\0';
    CHECK(hook_url_check(u) == NULL);
    u[STORE_WEBHOOK_URL_MAX] = 'a';
    u[STORE_WEBHOOK_URL_MAX + 1] = '\0';
    CHECK(hook_url_check(u) != NULL);
    free(u);
}

static void test_url_origin(void)
{
    char o[300];
    hook_url_origin("https://hooks.example.com/ms/secret-path?token=abc#frag", o, sizeof o);
    CHECK_EQ_STR(o, "https://hooks.example.com");
    hook_url_origin("http://127.0.0.1:8080/hook?token=abc", o, sizeof o);
    CHECK_EQ_STR(o, "http://127.0.0.1:8080");
    hook_url_origin("not a url", o, sizeof o);
    CHECK_EQ_STR(o, "?");
}

static int private4(const char *ip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) return -1;
    return hook_addr_private((struct sockaddr *)&a);
}

static int private6(const char *ip)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET6, ip, &a.sin6_addr) != 1) return -1;
    return hook_addr_private((struct sockaddr *)&a);
}

static void test_private_addresses(void)
{
    static const char *const inside4[] = {
        "127.0.0.1",   "127.255.0.9",     "10.1.2.3",   "172.16.0.1",  "172.31.255.255",
        "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.1.1", "0.0.0.0",
        "224.0.0.1",   "255.255.255.255", "198.18.0.1", "192.0.0.8"};
    static const char *const outside4[] = {"8.8.8.8",     "1.1.1.1",      "172.15.0.1",
                                           "172.32.0.1",  "100.63.0.1",   "100.128.0.1",
                                           "192.169.0.1", "93.184.216.34"};
    static const char *const inside6[] = {"::1",
                                          "::",
                                          "fe80::1",
                                          "fd00::1",
                                          "fc12::3",
                                          "ff02::1",
                                          "::ffff:127.0.0.1",
                                          "::ffff:10.0.0.1",
                                          "64:ff9b::a9fe:a9fe"};
    static const char *const outside6[] = {"2001:4860:4860::8888", "2606:4700::1111",
                                           "::ffff:8.8.8.8", "64:ff9b::808:808"};
    for (size_t i = 0; i < sizeof inside4 / sizeof *inside4; i++) {
        if (private4(inside4[i]) != 1) fprintf(stderr, "not private: %s\n", inside4[i]);
        CHECK_EQ_INT(private4(inside4[i]), 1);
    }
    for (size_t i = 0; i < sizeof outside4 / sizeof *outside4; i++) {
        if (private4(outside4[i]) != 0) fprintf(stderr, "private: %s\n", outside4[i]);
        CHECK_EQ_INT(private4(outside4[i]), 0);
    }
    for (size_t i = 0; i < sizeof inside6 / sizeof *inside6; i++) {
        if (private6(inside6[i]) != 1) fprintf(stderr, "not private: %s\n", inside6[i]);
        CHECK_EQ_INT(private6(inside6[i]), 1);
    }
    for (size_t i = 0; i < sizeof outside6 / sizeof *outside6; i++) {
        if (private6(outside6[i]) != 0) fprintf(stderr, "private: %s\n", outside6[i]);
        CHECK_EQ_INT(private6(outside6[i]), 0);
    }
    /* a family the check does not know is refused */
    struct sockaddr other = {.sa_family = AF_UNIX};
    CHECK_EQ_INT(hook_addr_private(&other), 1);
}

static void test_backoff(void)
{
    CHECK_EQ_INT(hook_backoff_ms(1), 1000);
    CHECK_EQ_INT(hook_backoff_ms(2), 5000);
    CHECK_EQ_INT(hook_backoff_ms(3), 25000);
    CHECK_EQ_INT(hook_backoff_ms(5), 625000);
    CHECK_EQ_INT(hook_backoff_ms(6), 3125000);
    CHECK_EQ_INT(hook_backoff_ms(7), 3600000);
    CHECK_EQ_INT(hook_backoff_ms(HOOK_MAX_ATTEMPTS), 3600000);
    CHECK_EQ_INT(hook_backoff_ms(1000000), 3600000);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_body);
    RUN(test_sign);
    RUN(test_url_check);
    RUN(test_url_origin);
    RUN(test_private_addresses);
    RUN(test_backoff);
    curl_global_cleanup();
    TAP_DONE();
}
