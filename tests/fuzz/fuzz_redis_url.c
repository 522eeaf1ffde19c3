/*
 * libFuzzer target for the Redis URL parser (sh_addr_split in src/shared/shared.c, the parsing
 * half of sh_addr_parse). The input, cut at its first NUL, is the URL. Besides "no crash": a
 * parse that succeeds gives a port and database in range, a host with none of ":/@" that is the
 * URL's text after its last '@' (so no part of a password reaches the host, which error
 * messages name) and a password that is in the URL before it; a failure says why. Numeric hosts
 * also go through sh_addr_parse whole (getaddrinfo answers those without a lookup); names do
 * not, so the target never waits on DNS.
 *
 * Build with `make fuzz`, run: build-fuzz/fuzz_redis_url SCRATCH_DIR tests/fuzz/corpus_redis_url
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/shared_internal.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static int numeric(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    /* an exact-size heap copy: ASan sees any read past the URL's NUL */
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    sh_addr a;
    char host[256], err[256] = "";
    memset(host, 0x5A, sizeof host);
    if (sh_addr_split(url, &a, host, sizeof host, err, sizeof err) != 0) {
        MUST(err[0] != '\0');
        free(url);
        return 0;
    }
    MUST(a.ip[0] == '\0');
    if (a.path[0]) {
        MUST(strncmp(url, "unix:", 5) == 0 && strcmp(a.path, url + 5) == 0);
        free(url);
        return 0;
    }
    MUST(strncmp(url, "redis://", 8) == 0);
    MUST(a.port >= 1 && a.port <= 65535 && a.db >= 0 && a.db <= 1000000);
    MUST(memchr(host, '\0', sizeof host) != NULL);
    size_t hn = strlen(host);
    MUST(hn > 0 && strcspn(host, ":/@") == hn);
    MUST(memchr(a.password, '\0', sizeof a.password) != NULL);
    const char *at = strrchr(url + 8, '@');
    const char *h = at ? at + 1 : url + 8;
    MUST(strncmp(h, host, hn) == 0);
    if (a.password[0]) {
        MUST(at != NULL);
        size_t pn = strlen(a.password);
        MUST((size_t)(at - (url + 8)) >= pn && memcmp(at - pn, a.password, pn) == 0);
    }
    if (numeric(host)) {
        sh_addr b;
        MUST(sh_addr_parse(url, &b, err, sizeof err) == 0);
        MUST(b.port == a.port && b.db == a.db && strcmp(b.password, a.password) == 0);
        MUST(b.ip[0] != '\0');
    }
    free(url);
    return 0;
}
