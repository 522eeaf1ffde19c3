/*
 * Whether two usage rows (store/sqlite_usage.h) are the same row: every number and every text's
 * bytes. Shared by test_sqlite_usage (blocks round-tripped) and the usage block fuzz target
 * (rows decoded, encoded again and decoded again).
 */
#ifndef MS_TEST_SQU_ROWS_H
#define MS_TEST_SQU_ROWS_H

#include <string.h>

#include "store/sqlite_usage.h"

static inline int squ_rows_equal(const squ_row *a, const squ_row *b)
{
    return a->id == b->id && a->account_id == b->account_id && a->key_id == b->key_id &&
           a->prompt == b->prompt && a->completion == b->completion && a->charged == b->charged &&
           a->status == b->status && a->estimated == b->estimated && a->latency == b->latency &&
           a->created == b->created && a->cached_tokens == b->cached_tokens &&
           a->cache_write == b->cache_write && a->cache_write_1h == b->cache_write_1h &&
           a->reasoning == b->reasoning && a->cached == b->cached &&
           a->request_id_len == b->request_id_len &&
           memcmp(a->request_id, b->request_id, a->request_id_len) == 0 &&
           a->model_len == b->model_len && memcmp(a->model, b->model, a->model_len) == 0 &&
           a->provider_len == b->provider_len &&
           memcmp(a->provider, b->provider, a->provider_len) == 0;
}

#endif
