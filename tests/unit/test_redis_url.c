/*
 * Unit tests for the Redis URL parser (sh_addr_split and sh_addr_parse, src/shared/shared.c):
 * the URL forms docs/CONFIG.md gives, and the inputs fuzz_redis_url showed it must survive. No
 * name is resolved here (only numeric hosts reach sh_addr_parse), so the tests need no DNS.
 */
#include <stdlib.h>
#include <string.h>

#include "shared/shared_internal.h"
#include "tap.h"

/* sh_addr_split on an exact-size heap copy (so ASan sees a read past the end); 0 or -1. */
static int split(const char *url, sh_addr *a, char *host, char *err)
{
    size_t n = strlen(url) + 1;
    char *u = malloc(n);
    memcpy(u, url, n);
    int rc = sh_addr_split(u, a, host, 256, err, 256);
    free(u);
    return rc;
}

static void test_forms(void)
{
    sh_addr a;
    char host[256], err[256];
    CHECK_EQ_INT(split("redis://127.0.0.1:6380/3", &a, host, err), 0);
    CHECK_EQ_STR(host, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6380);
    CHECK_EQ_INT(a.db, 3);
    CHECK_EQ_STR(a.password, "");
    CHECK_EQ_INT(split("redis://cache.local", &a, host, err), 0);
    CHECK_EQ_STR(host, "cache.local");
    CHECK_EQ_INT(a.port, 6379);
    CHECK_EQ_INT(a.db, 0);
    CHECK_EQ_INT(split("redis://h:7000/", &a, host, err), 0);
    CHECK_EQ_INT(a.port, 7000);
    CHECK_EQ_INT(split("redis://:s3cret@h:1/2", &a, host, err), 0);
    CHECK_EQ_STR(a.password, "s3cret");
    CHECK_EQ_STR(host, "h");
    CHECK_EQ_INT(split("unix:/run/redis.sock", &a, host, err), 0);
    CHECK_EQ_STR(a.path, "/run/redis.sock");
    CHECK_EQ_INT(split("redis://h:0", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h:65536", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h/1000001", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h/2x", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://:6379", &a, host, err), -1);
    CHECK_EQ_INT(split("unix:", &a, host, err), -1);
}

/* A string shorter than "redis://" was read past its end (the scheme was taken as checked). */
static void test_short_or_other_scheme(void)
{
    sh_addr a;
    char host[256], err[256] = "";
    CHECK_EQ_INT(split("", &a, host, err), -1);
    CHECK_EQ_INT(split("r", &a, host, err), -1);
    CHECK_EQ_INT(split("redis:/", &a, host, err), -1);
    CHECK_EQ_INT(split("rediss://h:6379", &a, host, err), -1);
    CHECK(strstr(err, "redis://") != NULL);
}

/* A password holding '@' is taken whole: cut at its first '@', the rest became part of the host
 * and was printed in "cannot resolve HOST". */
static void test_at_in_password(void)
{
    sh_addr a;
    char host[256], err[256] = "";
    CHECK_EQ_INT(split("redis://:p@ss:w@rd@cache.local:6380/1", &a, host, err), 0);
    CHECK_EQ_STR(a.password, "p@ss:w@rd");
    CHECK_EQ_STR(host, "cache.local");
    CHECK_EQ_INT(a.port, 6380);
    CHECK_EQ_INT(a.db, 1);
    CHECK_EQ_INT(sh_addr_parse("redis://:p@ss@127.0.0.1:6381", &a, err, sizeof err), 0);
    CHECK_EQ_STR(a.password, "p@ss");
    CHECK_EQ_STR(a.ip, "127.0.0.1");
    CHECK_EQ_INT(a.port, 6381);
}

/* strtol took a sign and blanks: " 80", "+80", "-0" were numbers. */
static void test_numbers_are_digits(void)
{
    sh_addr a;
    char host[256], err[256];
    CHECK_EQ_INT(split("redis://h: 80", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h:+80", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h/-0", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h/ 1", &a, host, err), -1);
    CHECK_EQ_INT(split("redis://h:00000000080", &a, host, err), -1);
}

int main(void)
{
    RUN(test_forms);
    RUN(test_short_or_other_scheme);
    RUN(test_at_in_password);
    RUN(test_numbers_are_digits);
    TAP_DONE();
}
