/*
 * What the two upstream clients share and nothing else may call: upstream.c (the interface,
 * libcurl, the dispatch) and h1.c (the native HTTP/1.1 client, http:// and https://).
 * Transfers of the two are told apart by their first member, `kind`.
 */
#ifndef MS_UPSTREAM_INTERNAL_H
#define MS_UPSTREAM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "upstream/upstream.h"

#define UP_KIND_CURL 1
#define UP_KIND_H1 2

typedef struct h1_ctx h1_ctx;
h1_ctx *h1_ctx_new(uv_loop_t *loop);
void h1_ctx_free(h1_ctx *ctx);
up_xfer *h1_start(h1_ctx *ctx, const up_request *req, const up_callbacks *cb, void *ud);
void h1_pause(up_xfer *ux);
void h1_resume(up_xfer *ux);
void h1_cancel(up_xfer *ux);
size_t h1_active(h1_ctx *ctx);
void h1_set_idle_ms(h1_ctx *ctx, uint64_t ms);

/* Response hints, in ms, clamped to a day; -1 when absent or malformed. Retry-After is
 * delay-seconds or an HTTP-date; retry-after-ms is a number of milliseconds. */
int64_t up__retry_after(const char *v, size_t n);
int64_t up__retry_after_ms(const char *v, size_t n);

#endif
