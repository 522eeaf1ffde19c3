/*
 * The native client's HTTP/1.1 response parser (h1.c): status line, header fields, and the body's
 * framing (Content-Length, chunked, or until the connection closes), pushed a read at a time.
 * It replaced llhttp on the upstream side because a response head is a handful of lines, and
 * finding each line with memchr and checking it with one table costs a third less than llhttp's
 * byte-at-a-time state machine and its callbacks (docs/PERFORMANCE.md, round 10).
 *
 * It is strict where framing is at stake: CRLF line ends only, no obs-fold, no space before a
 * header's colon, one Content-Length and never with Transfer-Encoding, HTTP/1.0 and 1.1 only, no
 * 101 (we never ask to upgrade). Anything it accepts llhttp accepts with the same status, body and
 * keep-alive (tests/fuzz/fuzz_h1parse.c checks this, and that the split of the input into reads
 * changes nothing). Private to src/upstream.
 */
#ifndef MS_UPSTREAM_H1PARSE_H
#define MS_UPSTREAM_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* The header block (status line, fields, trailers; every byte of their lines) */
#define H1P_HEAD_MAX (64 * 1024)
/* A chunk's size line, its extensions included */
#define H1P_CHUNK_LINE_MAX 4096

typedef enum {
    H1P_MORE = 0,  /* every byte taken; the response goes on */
    H1P_DONE,      /* the response ended; *used says where (what follows is not its) */
    H1P_MALFORMED, /* not a response we accept */
    H1P_TOO_LARGE, /* the header block (or a chunk line) passed its cap */
    H1P_ABORTED,   /* a callback said stop */
    H1P_NOMEM      /* a line cut between reads could not be kept */
} h1p_result;

typedef struct {
    /* A header field of the response (not of a 1xx, not a trailer), its value without the
     * surrounding whitespace. The pointers are valid only during the call. Non-zero aborts. */
    int (*on_header)(void *ud, const char *name, size_t nlen, const char *val, size_t vlen);
    /* A header block ended (1xx ones too: another block follows them). Non-zero aborts. */
    int (*on_head)(void *ud, int status);
    /* Body bytes, chunked framing removed. Non-zero aborts. */
    int (*on_body)(void *ud, const char *p, size_t n);
} h1p_callbacks;

typedef struct {
    const h1p_callbacks *cb;
    void *ud;
    uint8_t state;
    uint8_t err; /* the h1p_result an error ended in (sticky) */
    bool head_only, v11, chunked, has_cl, has_te, conn_close, conn_keep;
    int status;
    uint64_t left; /* Content-Length or chunk bytes still to come */
    size_t head_bytes;
    /* A line split between reads is gathered here (allocated on first need, kept across the
     * responses of a connection while it is of the first size, freed by h1p_free) */
    buf_t line;
} h1p;

/* Ready for a response; head_only when it answers a HEAD (no body whatever it says). Keeps the
 * line buffer of a previous response on the same h1p if it is of the first size, frees a larger
 * one (zero the struct before the first use). */
void h1p_init(h1p *p, const h1p_callbacks *cb, void *ud, bool head_only);
void h1p_free(h1p *p);
/* Parses n bytes. *used is how many belong to this response (all of them unless H1P_DONE). */
h1p_result h1p_execute(h1p *p, const char *data, size_t n, size_t *used);
/* The connection closed: H1P_DONE when that is the end of a body framed by the close. */
h1p_result h1p_finish(h1p *p);
/* Whether the body (being read) ends only when the connection closes. */
bool h1p_needs_eof(const h1p *p);
/* Whether the connection may carry another request once this response is done. */
bool h1p_keep_alive(const h1p *p);

#endif
