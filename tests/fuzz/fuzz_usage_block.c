/*
 * libFuzzer target for the usage ledger's block decoder (squ_dec_* in src/store/sqlite_usage.c),
 * which reads BLOBs from the store file: a damaged or hostile file must cost an error, never a
 * read past the block. The input's first two bytes (little-endian) are the block's row count,
 * the rest its bytes. Besides "no crash": every decoded row's texts lie inside the block, its
 * ids rise, and the rows decoded, encoded again (as a mixed block: a row may name another
 * account) and decoded again are the same rows (the encoder may leave out repeats the input
 * spelled out, so the bytes may differ, not the rows).
 *
 * Build with `make fuzz`, run: build-fuzz/fuzz_usage_block SCRATCH_DIR
 * tests/fuzz/corpus_usage_block
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/squ_rows.h"
#include "store/sqlite_usage.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static int inside(const char *p, size_t n, const unsigned char *b, size_t len)
{
    return n == 0 || ((const unsigned char *)p >= b && (const unsigned char *)p + n <= b + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > SQU_BLOCK_MAX) return 0;
    int64_t n = data[0] | (int64_t)data[1] << 8;
    size_t len = size - 2;
    /* an exact-size heap copy: ASan sees any read past the block */
    unsigned char *b = malloc(len ? len : 1);
    memcpy(b, data + 2, len);
    squ_row *rows = malloc(sizeof(squ_row) * (n > 0 ? (size_t)n : 1));
    const int64_t first = 1000, min_created = 1700000000000;
    squ_dec d;
    squ_dec_start(&d, 7, first, n, min_created, b, len);
    int64_t k = 0, prev = INT64_MIN;
    int rc;
    while (k < n && (rc = squ_dec_next(&d, &rows[k])) == 1) {
        const squ_row *r = &rows[k];
        MUST(inside(r->request_id, r->request_id_len, b, len));
        MUST(inside(r->model, r->model_len, b, len));
        MUST(inside(r->provider, r->provider_len, b, len));
        MUST(r->id > prev);
        prev = r->id;
        k++;
    }
    if (k == n && squ_dec_next(&d, &rows[0]) == 0 && n > 0 && n <= SQU_ROWS_MAX) {
        /* a whole block: its rows survive another round */
        unsigned char *again = malloc(SQU_BLOCK_MAX);
        squ_enc e;
        int64_t lo = INT64_MAX;
        for (int64_t i = 0; i < n; i++)
            if (rows[i].created < lo) lo = rows[i].created;
        squ_enc_start(&e, again, lo);
        squ_enc_mixed(&e); /* a row may name another account (usage_recent's blocks) */
        int ok = 1;
        for (int64_t i = 0; i < n && ok; i++)
            ok = squ_enc_add(&e, &rows[i]) == 0;
        if (ok) {
            squ_dec_start(&d, e.account_id, e.first_id, (int64_t)e.n, e.min_created, again, e.len);
            for (int64_t i = 0; i < n; i++) {
                squ_row r;
                MUST(squ_dec_next(&d, &r) == 1);
                MUST(squ_rows_equal(&r, &rows[i]));
            }
            squ_row r;
            MUST(squ_dec_next(&d, &r) == 0);
        }
        free(again);
    }
    free(rows);
    free(b);
    return 0;
}
