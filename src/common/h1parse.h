/*
 * HTTP/1.1 messages pushed a read at a time: the native upstream client's responses (h1.c) and the
 * server's requests (server/http.c). A start line, header fields, and the body's framing
 * (Content-Length, chunked, or until the connection closes for a response). It replaced llhttp
 * on both sides because a head is a handful of lines, and finding each line with memchr and
 * checking it with one table costs a fraction of llhttp's byte-at-a-time state machine and its
 * callbacks (docs/PERFORMANCE.md, rounds 10 and 11).
 *
 * It is strict where framing is at stake: CRLF line ends only, no obs-fold, no space before a
 * header's colon, one Content-Length and never with Transfer-Encoding, no tab after a
 * Content-Length or Transfer-Encoding value nor in a Connection one, HTTP/1.0 and 1.1 only.
 * Responses: no 101 (we never ask to upgrade), no body on 1xx/204/304. Requests: a body only by
 * Content-Length or chunked as the only coding (RFC 9112 6.3: anything else is refused, never read
 * to the close); no CONNECT; a target in the origin form, "*", or the absolute form of http(s) with
 * a well-formed authority; Upgrade ignored (RFC 9110 7.8), so what follows a request is always the
 * next request; trailers count against the head's cap. Anything it accepts llhttp accepts with
 * the same start line, fields, body and keep-alive, but for a request's method llhttp does not
 * take as HTTP's and a quoted-pair in a chunk extension (tests/unit/h1p_diff.h and h1p_reqdiff.h
 * and the fuzzers fuzz_h1parse and fuzz_h1req check this, and that the split of the input into
 * reads changes nothing).
 */
#ifndef MS_COMMON_H1PARSE_H
#define MS_COMMON_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/buf.h"

/* A response's header block (status line, fields, trailers; every byte of their lines); a
 * request's is the caller's (h1p_init_request) */
#define H1P_HEAD_MAX (64 * 1024)
/* A chunk's size line, its extensions included */
#define H1P_CHUNK_LINE_MAX 4096
/* A request's chunk extensions, all its chunks' together (they mean nothing to us: a client that
 * sends one-byte chunks with long extensions must not cost more than its body) */
#define H1P_REQ_EXT_MAX 4096
/* A request method's length (the longest registered one is 17 bytes) */
#define H1P_METHOD_MAX 24

typedef enum {
    H1P_MORE = 0,  /* every byte taken; the message goes on */
    H1P_DONE,      /* the message ended; *used says where (what follows is not its) */
    H1P_MALFORMED, /* not a message we accept (h1p_where says in which part) */
    H1P_TOO_LARGE, /* the header block, a chunk line or a request's extensions passed its cap */
    H1P_ABORTED,   /* a callback said stop */
    H1P_NOMEM,     /* a line cut between reads could not be kept */
    H1P_PAUSED     /* on_head said pause (a request's head is whole, its body not read yet) */
} h1p_result;

/* What on_head returns to stop after the head with H1P_PAUSED (*used: the head's end) */
#define H1P_PAUSE 1

/* The part of the message a failure was found in */
typedef enum {
    H1P_IN_START = 0, /* the request or status line */
    H1P_IN_HEADER,    /* a header field, or the head's framing as a whole */
    H1P_IN_BODY,      /* chunked framing: a size line, the CRLF after data, a trailer */
} h1p_where;

typedef struct {
    /* Request mode: the request line's method and target. Valid only during the call. Non-zero
     * aborts. */
    int (*on_request)(void *ud, const char *method, size_t mlen, const char *target, size_t tlen);
    /* A header field (not of a 1xx, not a trailer), its value without the surrounding
     * whitespace. The pointers are valid only during the call. Non-zero aborts. */
    int (*on_header)(void *ud, const char *name, size_t nlen, const char *val, size_t vlen);
    /* A header block ended (1xx ones too: another block follows them); status 0 for a request.
     * H1P_PAUSE pauses (request mode, a body follows), other non-zero aborts. */
    int (*on_head)(void *ud, int status);
    /* Body bytes, chunked framing removed. Non-zero aborts. */
    int (*on_body)(void *ud, const char *p, size_t n);
} h1p_callbacks;

typedef struct {
    const h1p_callbacks *cb;
    void *ud;
    uint8_t state;
    uint8_t err;   /* the h1p_result an error ended in (sticky) */
    uint8_t where; /* h1p_where of that error */
    bool request, head_only, v11, chunked, has_cl, has_te, conn_close, conn_keep;
    int status;
    uint64_t left; /* Content-Length (until the body starts: all of it) or chunk bytes to come */
    size_t head_bytes, head_max, ext_bytes;
    /* A line split between reads is gathered here (allocated on first need, kept across the
     * responses of a connection while it is of the first size, freed by h1p_free) */
    buf_t line;
} h1p;

/* Ready for a response; head_only when it answers a HEAD (no body whatever it says). Keeps the
 * line buffer of a previous response on the same h1p if it is of the first size, frees a larger
 * one (zero the struct before the first use). */
void h1p_init(h1p *p, const h1p_callbacks *cb, void *ud, bool head_only);
/* Ready for a request (the same rule for the line buffer); head_max caps its header block. */
void h1p_init_request(h1p *p, const h1p_callbacks *cb, void *ud, size_t head_max);
void h1p_free(h1p *p);
/* Parses n bytes. *used is how many it took: all of them unless the message ended (H1P_DONE:
 * what follows is the next message's) or paused (H1P_PAUSED: call again with the rest). */
h1p_result h1p_execute(h1p *p, const char *data, size_t n, size_t *used);
/* The connection closed: H1P_DONE when that is the end of a body framed by the close. */
h1p_result h1p_finish(h1p *p);
/* Whether the body (being read) ends only when the connection closes. */
bool h1p_needs_eof(const h1p *p);
/* Whether the connection may carry another message once this one is done. */
bool h1p_keep_alive(const h1p *p);
/* Where the error the parser stopped at was found (an h1p_where) */
h1p_where h1p_error_where(const h1p *p);

/* Whether p[0..n), a header name or a piece of a value the parser accepted, is lit[0..ln)
 * (lowercase letters, digits and '-') ignoring case. Setting bit 0x20 folds a letter's case and
 * changes none of those literal bytes; the only other bytes it would turn into one of them are
 * control bytes, which the parser refused, so the test is exact there. Eight bytes at a time (a
 * library call costs more than the comparison). */
static inline bool h1p_caseeq(const char *p, size_t n, const char *lit, size_t ln)
{
    const uint64_t fold = 0x2020202020202020ull;
    uint64_t a, b;

    if (n != ln) return false;
    if (n < 8) {
        for (size_t k = 0; k < n; k++)
            if ((p[k] | 0x20) != lit[k]) return false;
        return true;
    }
    for (size_t k = 0; k + 8 < n; k += 8) {
        memcpy(&a, p + k, 8);
        memcpy(&b, lit + k, 8);
        if ((a | fold) != b) return false;
    }
    memcpy(&a, p + n - 8, 8);
    memcpy(&b, lit + n - 8, 8);
    return (a | fold) == b;
}
#define H1P_IS(p, n, lit) h1p_caseeq(p, n, lit, sizeof lit - 1)

#endif
