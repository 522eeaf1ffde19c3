/*
 * Where the HTTP/1.1 parser fuzzers (fuzz_h1parse, fuzz_h1req) cut their input into reads: up to
 * seven ascending places drawn from the input's first byte, so that libFuzzer's mutations of that
 * byte explore the cuts while those of the rest explore the message.
 */
#ifndef MS_FUZZ_H1_CUTS_H
#define MS_FUZZ_H1_CUTS_H

#include <stddef.h>
#include <stdint.h>

/* Fills cuts[] (room for 8) for an input of n bytes; returns how many. */
static int h1f_cuts(unsigned sel, size_t n, size_t *cuts)
{
    int ncut = 0;
    uint32_t h = sel * 2654435761u;
    for (int k = 0; k < 7 && n > 0; k++) {
        h = h * 1103515245u + 12345u;
        size_t c = (size_t)(h >> 8) % n;
        if (ncut == 0 || c > cuts[ncut - 1]) cuts[ncut++] = c;
    }
    return ncut;
}

#endif
