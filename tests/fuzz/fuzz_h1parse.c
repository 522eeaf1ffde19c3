/*
 * libFuzzer target: the upstream response parser (src/common/h1parse.c) against llhttp, and
 * against itself with the input cut into reads (the check: tests/unit/h1p_diff.h). The first
 * byte chooses HEAD or not and where the cuts fall; the rest is the response.
 *
 *   make build-fuzz/fuzz_h1parse && mkdir -p /tmp/ch && \
 *     build-fuzz/fuzz_h1parse /tmp/ch tests/fuzz/corpus_h1parse -max_total_time=120
 */
#include "h1p_diff.h"
#include "h1_cuts.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cuts[8];

    if (size < 1) return 0;
    unsigned sel = data[0];
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    int ncut = h1f_cuts(sel, n, cuts);
    const char *why = h1p_diff(d, n, sel & 1, cuts, ncut);
    if (why) {
        fprintf(stderr, "h1parse and llhttp differ: %s\n", why);
        __builtin_trap();
    }
    return 0;
}
