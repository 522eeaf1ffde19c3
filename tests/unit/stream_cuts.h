/*
 * What the unit tests that read a generated stream two ways share (test_anthropic_stream,
 * test_openai_stream, test_decode_len): a seeded xorshift, so that every run generates the same
 * streams, and the random places a stream is cut into reads. A file may set its own seed
 * (STREAM_CUTS_SEED) before including this.
 */
#ifndef MS_TEST_STREAM_CUTS_H
#define MS_TEST_STREAM_CUTS_H

#include <stddef.h>
#include <stdint.h>

#ifndef STREAM_CUTS_SEED
#define STREAM_CUTS_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t rnd_state = STREAM_CUTS_SEED;
static inline uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Fewer than max places to cut a stream of n bytes, in order, into cuts (none when whole: the
 * stream in one read). Returns how many. */
static inline int rnd_cuts(size_t *cuts, int max, size_t n, int whole)
{
    int nc = whole ? 0 : (int)(rnd() % (uint64_t)max);
    for (int i = 0; i < nc; i++)
        cuts[i] = n ? (size_t)(rnd() % n) : 0;
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && cuts[j] < cuts[j - 1]; j--) {
            size_t x = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = x;
        }
    return nc;
}

#endif
