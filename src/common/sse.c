/*
 * The incremental Server-Sent Events parser (see sse.h) that the upstream side runs over every
 * streamed provider answer. It only looks for line endings: each piece is searched once, events
 * that end inside it are handed out as views into the caller's bytes, and only the unfinished
 * tail is copied into `pending` (bounded by max_event), to be completed by the next piece.
 *
 * Rules it follows (WHATWG HTML, "event stream interpretation"):
 * - a line ends with LF, CRLF or CR; an empty line ends the event;
 * - "name:value" with one space after the colon dropped, "name" alone is a field with an empty
 *   value, a line starting with ':' is a comment; data lines are joined with "\n"; the last
 *   `event:` and `id:` win (an id containing NUL is ignored); `retry:` and others are ignored;
 * - unlike a browser we report every event, even one with no data (only comments, or a stray
 *   blank line), because the gateway forwards raw bytes and must not lose keep-alive comments.
 *
 * Contract details the header leaves open:
 * - Concatenating every ev.raw gives back the stream byte for byte. The one subtle case is a
 *   CRLF whose CR is the last byte of a piece: the event is dispatched at the CR (waiting for
 *   the next piece would delay it, forever for a CR-only stream), so the LF that completes the
 *   line ending arrives later; it is reported at the head of the next event's raw. Such a raw
 *   starts with "\n", which must not be read as a blank line if it is ever parsed again.
 *   last_cr records "the previous piece ended with CR" for exactly this.
 * - Views in the event (raw, event, data, id) are only valid during the callback.
 * - When the callback returns non-zero, sse_feed returns that value at once and the rest of the
 *   piece is dropped: the parser continues, if fed again, as if the piece had ended there.
 * - A caller that can tell whole events by other means (sse_set_take: an adapter that knows the
 *   stream's shape) is asked first wherever an event starts in a piece with nothing held back;
 *   what it takes it has dealt with (no callback for those), what it leaves is read here. The
 *   raws the callback gets and the runs taken still concatenate to the stream. A take returns
 *   the longest run it can, so it is not asked again where its run ended.
 * - SSE_TOO_LARGE (an event longer than max_event, or out of memory) drops what was buffered;
 *   the stream is then out of sync and should be abandoned. The LF of a CRLF that ends an event
 *   is not counted, so that the verdict does not depend on how the stream was cut.
 */
#include "common/sse.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static const char empty[] = "";

/* The first CR or LF of s[from..n), or n: one pass for either, 16 bytes at a time, so a piece is
 * scanned once whatever the mix of line endings. (Two memchr, one per byte, scanned every piece
 * of a stream without CRs once more to the end for the CR that never comes.) */
static inline size_t next_eol(const char *s, size_t from, size_t n)
{
    size_t i = from;
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    /* two blocks a step: a chunk's line is ~200 bytes, and the loop's own work was as much as
     * the compares */
    for (; n - i >= 32; i += 32) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        unsigned ma =
            (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(a, cr), _mm_cmpeq_epi8(a, lf)));
        unsigned mb =
            (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(b, cr), _mm_cmpeq_epi8(b, lf)));
        unsigned m = ma | (mb << 16);
        if (m) return i + (size_t)__builtin_ctz(m);
    }
    for (; n - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned m =
            (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (m) return i + (size_t)__builtin_ctz(m);
    }
#endif
    for (; i < n; i++)
        if (s[i] == '\n' || s[i] == '\r') return i;
    return n;
}

/* The buffers' own cap is only a backstop behind the max_event checks in sse_feed: an event may
 * hold two bytes that are not counted (see counted_size), and the slack keeps us clear of how
 * buf_t accounts for its terminator. */
static size_t limit_for(size_t max_event)
{
    return max_event > ((size_t)-1) - 64 ? 0 : max_event + 64;
}

void sse_init(sse_parser *p, size_t max_event, sse_event_cb cb, void *ud)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->pending, limit_for(max_event));
    buf_init(&p->data, limit_for(max_event));
    p->max_event = max_event;
    p->cb = cb;
    p->ud = ud;
}

void sse_free(sse_parser *p)
{
    buf_free(&p->pending);
    buf_free(&p->data);
}

/* Bytes held back: a leftover LF from the previous event's CRLF is not part of any event. */
size_t sse_pending(const sse_parser *p)
{
    const buf_t *b = &p->pending;
    return b->len && b->data[0] == '\n' ? b->len - 1 : b->len;
}

/*
 * The size of an event (given as two consecutive segments, a then b) that counts against
 * max_event. It must not depend on where the stream was cut, so it leaves out the two bytes whose
 * owner depends on the cut: a leading LF left over from the previous event's CRLF, and the final
 * LF of a CRLF, which a cut right after the CR would hand to the next event.
 */
static size_t counted_size(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an + bn;
    char first = an ? a[0] : bn ? b[0] : 0;
    char last = bn ? b[bn - 1] : an ? a[an - 1] : 0;
    char before_last = bn >= 2   ? b[bn - 2]
                       : bn == 1 ? (an ? a[an - 1] : 0)
                       : an >= 2 ? a[an - 2]
                                 : 0;
    if (n && first == '\n') n--;
    if (n >= 2 && before_last == '\r' && last == '\n') n--;
    return n;
}

static int handle_line(sse_parser *p, sse_event *ev, const char *line, size_t n, size_t *ndata)
{
    const char *colon, *val;
    size_t name_n, val_n;
    if (line[0] == ':') return 0; /* comment */
    colon = memchr(line, ':', n);
    if (colon) {
        name_n = (size_t)(colon - line);
        val = colon + 1;
        val_n = n - name_n - 1;
        if (val_n && val[0] == ' ') {
            val++;
            val_n--;
        }
    } else {
        name_n = n;
        val = empty;
        val_n = 0;
    }
    if (name_n == 4 && memcmp(line, "data", 4) == 0) {
        /* one data line stays a view into raw; only a second one makes us copy */
        if (*ndata == 0) {
            ev->data = (ms_str){val, val_n};
        } else {
            if (*ndata == 1) {
                buf_reset(&p->data);
                if (buf_append(&p->data, ev->data.p, ev->data.n) < 0) return -1;
            }
            if (buf_append(&p->data, "\n", 1) < 0 || buf_append(&p->data, val, val_n) < 0)
                return -1;
            ev->data = (ms_str){p->data.data, p->data.len};
        }
        (*ndata)++;
    } else if (name_n == 5 && memcmp(line, "event", 5) == 0) {
        ev->event = (ms_str){val, val_n};
    } else if (name_n == 2 && memcmp(line, "id", 2) == 0) {
        if (!memchr(val, '\0', val_n)) ev->id = (ms_str){val, val_n};
    }
    return 0;
}

/* Decodes the fields of one complete event and hands it to the callback. */
static int dispatch(sse_parser *p, const char *raw, size_t n)
{
    sse_event ev = {{raw, n}, {empty, 0}, {empty, 0}, {empty, 0}};
    size_t i = 0, ndata = 0;
    while (i < n) {
        size_t e = next_eol(raw, i, n);
        /* empty lines here are only the terminating one or a leftover LF */
        if (e > i && handle_line(p, &ev, raw + i, e - i, &ndata) < 0) return SSE_TOO_LARGE;
        i = e + 1;
        if (e < n && raw[e] == '\r' && i < n && raw[i] == '\n') i++;
    }
    return p->cb(p->ud, &ev);
}

/* dispatch for the usual event, seen whole in one read: one line, LF-terminated, then the blank
 * line (every OpenAI chunk). sse_feed has found its line ends already; a data line needs no
 * second look for them. */
static int dispatch_one_line(sse_parser *p, const char *raw, size_t n, size_t line)
{
    if (line < 5 || memcmp(raw, "data:", 5) != 0) return dispatch(p, raw, n);
    const char *v = raw + 5, *end = raw + line;
    if (v < end && *v == ' ') v++;
    sse_event ev = {{raw, n}, {empty, 0}, {v, (size_t)(end - v)}, {empty, 0}};
    return p->cb(p->ud, &ev);
}

int sse_feed(sse_parser *p, const char *data, size_t n)
{
    size_t i = 0, ev_start = 0;
    int at_line_start = 1, r;
    /* the event under way in this read: its lines so far, the first one's length, a CR seen */
    size_t lines = 0, first_line = 0;
    int cr = 0;

    if (n == 0) return 0;
    /* events the caller takes at the start of a piece with nothing held back, before the
     * general set-up (a stream read a few whole events at a time is only these) */
    size_t left_at = (size_t)-1; /* where the last take ended: what follows it is for the parser */
    if (p->take && !p->pending.len && !p->last_cr) {
        int stop = 0;
        size_t k = p->take(p->ud, data, n, p->max_event, &stop);
        if (k > n) k = n; /* outside the contract; never read past the piece */
        if (stop) return stop;
        data += k;
        n -= k;
        if (n == 0) return 0;
        left_at = 0;
    }
    if (p->pending.len) {
        char last = p->pending.data[p->pending.len - 1];
        at_line_start = last == '\n' || last == '\r';
    }
    if (p->last_cr && data[0] == '\n')
        i = 1; /* the second half of a CRLF: not a line ending of its own */
    p->last_cr = data[n - 1] == '\r';

    for (;;) {
        /* events the caller takes, where one starts with nothing held back */
        if (p->take && i == ev_start && lines == 0 && at_line_start && !p->pending.len && i < n &&
            i != left_at) {
            int stop = 0;
            size_t k = p->take(p->ud, data + i, n - i, p->max_event, &stop);
            if (k > n - i) k = n - i;
            i = ev_start = left_at = i + k;
            if (stop) {
                r = stop;
                p->last_cr = 0; /* the rest of the piece is dropped; the run ended in LF */
                goto stop;
            }
            if (i == n) break;
        }
        size_t e = next_eol(data, i, n), after;
        if (e == n) break;
        after = e + 1;
        if (data[e] == '\r' && after < n && data[after] == '\n') after++;
        int blank = at_line_start && e == i;
        at_line_start = 1;
        cr |= data[e] == '\r';
        if (!blank && lines++ == 0) first_line = e - i;
        i = after;
        if (!blank) continue;

        /* a blank line: the event ends at `after` */
        if (p->pending.len) {
            if (counted_size(p->pending.data, p->pending.len, data, after) > p->max_event ||
                buf_append(&p->pending, data, after) < 0) {
                r = SSE_TOO_LARGE;
                goto stop;
            }
            r = dispatch(p, p->pending.data, p->pending.len);
            buf_reset(&p->pending);
        } else {
            if (counted_size(data + ev_start, after - ev_start, NULL, 0) > p->max_event) {
                r = SSE_TOO_LARGE;
                goto stop;
            }
            r = lines == 1 && !cr
                    ? dispatch_one_line(p, data + ev_start, after - ev_start, first_line)
                    : dispatch(p, data + ev_start, after - ev_start);
        }
        ev_start = after;
        lines = 0;
        cr = 0;
        if (r) {
            p->last_cr = after == n && data[n - 1] == '\r';
            goto stop;
        }
    }

    if (ev_start < n) {
        size_t rest = n - ev_start;
        if (counted_size(p->pending.data, p->pending.len, data + ev_start, rest) > p->max_event ||
            buf_append(&p->pending, data + ev_start, rest) < 0) {
            r = SSE_TOO_LARGE;
            goto stop;
        }
    }
    return 0;

stop:
    buf_reset(&p->pending);
    return r;
}
