/*
 * Request ids (server.c, srv_new_request_id): "req_" + 11 hex digits of the time in ms + 13 of the
 * worker's 20-bit salt and 32-bit counter, as "%011llx%013llx" would write them (the ids sort by
 * time, and ids of two workers or processes differ). The digits are written two at a time from a
 * table; this compares them with snprintf over salts and counters that set every digit.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "server/server.h"
#include "tap.h"

static void test_format(void)
{
    static worker_t w; /* static: large, and zeroed */
    const uint64_t salts[] = {0, 1, 0xFFFFF, 0xABCDE, 0x123456789ABCDEFull};
    const uint64_t seqs[] = {0, 1, 0xFFFFFFFEull, 0x7F3A9C1Dull, 0xFFFFFFFFFull};
    int bad = 0;
    for (size_t a = 0; a < sizeof salts / sizeof *salts; a++)
        for (size_t b = 0; b < sizeof seqs / sizeof *seqs; b++) {
            w.rid_salt = salts[a];
            w.rid_seq = seqs[b];
            char id[40], want_tail[16];
            int64_t t0 = ms_now_ms();
            srv_new_request_id(&w, id);
            int64_t t1 = ms_now_ms();
            uint64_t tail = ((salts[a] & 0xFFFFFull) << 32) | ((seqs[b] + 1) & 0xFFFFFFFFull);
            snprintf(want_tail, sizeof want_tail, "%013llx", (unsigned long long)tail);
            int ok =
                strlen(id) == 28 && memcmp(id, "req_", 4) == 0 && strcmp(id + 15, want_tail) == 0;
            /* the time part is one of the milliseconds the call spanned */
            int in_time = 0;
            for (int64_t t = t0; t <= t1 && ok; t++) {
                char want_time[16];
                snprintf(want_time, sizeof want_time, "%011llx",
                         (unsigned long long)((uint64_t)t & 0xFFFFFFFFFFFull));
                in_time |= memcmp(id + 4, want_time, 11) == 0;
            }
            if (!ok || !in_time) {
                fprintf(stderr, "id %s, want tail %s\n", id, want_tail);
                bad++;
            }
        }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    RUN(test_format);
    TAP_DONE();
}
