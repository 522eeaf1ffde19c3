/*
 * libFuzzer target: the server's request parser (src/common/h1parse.c in request mode) against
 * llhttp, and against itself with the input cut into reads and paused after each head (the
 * check: tests/unit/h1p_reqdiff.h). The first byte chooses the cap on the head and where the
 * cuts fall; the rest is what a client sent on one connection (requests one after the other).
 *
 *   make build-fuzz/fuzz_h1req && mkdir -p /tmp/chr && \
 *     build-fuzz/fuzz_h1req /tmp/chr tests/fuzz/corpus_h1req -max_total_time=240
 */
#include "h1p_reqdiff.h"
#include "h1_cuts.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* mostly the server's default cap; sometimes one small enough for the input to meet it */
    static const size_t heads[4] = {16384, 16384, 256, 40};
    size_t cuts[8];

    if (size < 1) return 0;
    unsigned sel = data[0];
    const char *d = (const char *)data + 1;
    size_t n = size - 1;
    int ncut = h1f_cuts(sel, n, cuts);
    const char *why = h1r_diff(d, n, heads[sel & 3], cuts, ncut);
    if (why) {
        fprintf(stderr, "h1parse (requests) and llhttp differ: %s\n", why);
        __builtin_trap();
    }
    return 0;
}
