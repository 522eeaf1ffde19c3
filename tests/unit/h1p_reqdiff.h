/*
 * The differential check of the server's request parser (src/common/h1parse.c in request mode)
 * against llhttp (HTTP_REQUEST, default settings, no lenient flag: what the server ran before),
 * shared by tests/unit/test_h1req.c (tables, every byte, a fixed run of mutations) and
 * tests/fuzz/fuzz_h1req.c (libFuzzer). h1parse may refuse what llhttp takes, never the reverse:
 * a request it accepts must be one llhttp accepts with the same method, target bytes, header
 * fields in order (values trimmed as ours trims them), body bytes, end and keep-alive; and how
 * the bytes are cut into reads, or a pause at each head, must change nothing. Pipelined requests
 * are followed one after the other, as the server does (h1p_init_request again after each).
 *
 * llhttp 8.1's own ways, handled here so that they are not taken for differences:
 *  - it swallows the ';' that ends an unquoted chunk extension value ("1;a=b;c=d") and then
 *    refuses the next extension; it is paused there and fed the ';' it lost, as the server did
 *    (git show 6d279de^:src/server/http.c, cb_chunk_ext_value and conn_feed_parse);
 *  - it stops with HPE_PAUSED_UPGRADE after a request with Upgrade and "Connection: upgrade"
 *    (or CONNECT): ours ignores Upgrade, so that request is compared and nothing after it;
 *  - it refuses methods it does not take as HTTP's (unknown ones, RTSP's, PRI but as HTTP/2's
 *    preface), ours takes any token: such an input is not comparable from that request on;
 *  - it refuses a quoted-pair in a quoted chunk extension value, which RFC 9110 5.6.4 allows
 *    and ours takes: not comparable from there on either (docs/PERFORMANCE.md, round 11).
 *
 * h1r_diff(data, n, head_max, cuts, ncut) returns NULL when they agree, else what differs;
 * h1r_compared is then how many requests llhttp was compared on.
 */
#ifndef MS_TEST_H1P_REQDIFF_H
#define MS_TEST_H1P_REQDIFF_H

#include "common/h1parse.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer (false when it could not grow) */
typedef struct {
    char *p;
    size_t n, cap;
} h1r_buf;

static bool h1r_put(h1r_buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
    return true;
}

/* One request as a parser reported it: where its parts lie in the side's arena (each part's
 * bytes are written in one run), its end in the input, its keep-alive. The header fields are
 * written as (size_t length, bytes) for the name, then the same for the value. */
typedef struct {
    size_t m, mlen, u, ulen, h, hlen, b, blen;
    size_t end;
    int nhdr;
    bool keep, head; /* head: its header block ended (on_head, on_headers_complete) */
} h1r_msg;

/* What one parser made of the whole input: the complete requests, then the one being read when
 * it stopped (msg[nmsg], if any) and why it stopped. */
typedef struct {
    h1r_buf arena;
    h1r_msg *msg;
    int nmsg, cap;
    bool oom;
    const char *bug;  /* ours broke its own contract (a pause without a head, a read not taken) */
    bool pause;       /* ours: on_head returns H1P_PAUSE */
    bool paused_head; /* ours: on_head asked for a pause in this request */
    bool in_data;     /* ours: stopped inside body bytes (a Content-Length's or a chunk's) */
    /* llhttp */
    h1r_buf name, val;      /* the field being gathered */
    bool upgrade;           /* stopped at HPE_PAUSED_UPGRADE after msg[nmsg - 1] */
    bool msg_done;          /* on_message_complete paused it */
    int err;                /* llhttp_errno_t it stopped at (HPE_OK: it wants more) */
    const char *reason;     /* its reason */
    const char *feed_end;   /* the end of the bytes being parsed */
    unsigned char ext_last; /* the last byte of the chunk extension value seen */
    bool ext_resync;        /* the value ended at a ';' llhttp will swallow */
} h1r_side;

static void h1r_reset(h1r_side *s, bool pause)
{
    /* (the buffers exist from the start, so that no pointer arithmetic is on NULL) */
    h1r_buf *bufs[3] = {&s->arena, &s->name, &s->val};
    s->oom = false;
    for (int k = 0; k < 3; k++) {
        bufs[k]->n = 0;
        if (!bufs[k]->p && !h1r_put(bufs[k], "", 1)) s->oom = true;
        bufs[k]->n = 0;
    }
    s->nmsg = 0;
    s->upgrade = s->msg_done = s->ext_resync = s->paused_head = s->in_data = false;
    s->bug = NULL;
    s->pause = pause;
    s->err = HPE_OK;
    s->reason = "";
    s->ext_last = 0;
}

/* The request being read (msg[nmsg]), made empty (false when there is no room for it). */
static bool h1r_begin(h1r_side *s)
{
    if (s->nmsg + 1 > s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        h1r_msg *m = realloc(s->msg, (size_t)cap * sizeof *m);
        if (!m) {
            s->oom = true;
            return false;
        }
        s->msg = m;
        s->cap = cap;
    }
    memset(&s->msg[s->nmsg], 0, sizeof s->msg[s->nmsg]);
    return true;
}

/* Appends to one part (*off, *len) of the current request. */
static void h1r_add(h1r_side *s, size_t *off, size_t *len, const void *d, size_t n)
{
    if (*len == 0) *off = s->arena.n;
    if (!h1r_put(&s->arena, d, n)) s->oom = true;
    *len += n;
}

static void h1r_add_field(h1r_side *s, const char *name, size_t nlen, const char *v, size_t vlen)
{
    h1r_msg *m = &s->msg[s->nmsg];
    h1r_add(s, &m->h, &m->hlen, &nlen, sizeof nlen);
    h1r_add(s, &m->h, &m->hlen, name, nlen);
    h1r_add(s, &m->h, &m->hlen, &vlen, sizeof vlen);
    h1r_add(s, &m->h, &m->hlen, v, vlen);
    m->nhdr++;
}

/* ---- ours ---- */

/* (every callback does nothing once memory ran out: msg[nmsg] may not exist then) */
static int h1r_on_request(void *ud, const char *method, size_t mlen, const char *t, size_t tlen)
{
    h1r_side *s = ud;
    if (s->oom) return 0;
    h1r_msg *m = &s->msg[s->nmsg];
    h1r_add(s, &m->m, &m->mlen, method, mlen);
    h1r_add(s, &m->u, &m->ulen, t, tlen);
    return 0;
}

static int h1r_on_header(void *ud, const char *name, size_t nlen, const char *v, size_t vlen)
{
    h1r_side *s = ud;
    if (!s->oom) h1r_add_field(s, name, nlen, v, vlen);
    return 0;
}

static int h1r_on_head(void *ud, int status)
{
    h1r_side *s = ud;
    if (status != 0) s->bug = "on_head with a status in request mode";
    if (!s->oom) s->msg[s->nmsg].head = true;
    s->paused_head = s->pause;
    return s->pause ? H1P_PAUSE : 0;
}

static int h1r_on_body(void *ud, const char *p, size_t n)
{
    h1r_side *s = ud;
    if (s->paused_head) s->bug = "body bytes read after on_head asked for a pause";
    if (s->oom) return 0;
    h1r_msg *m = &s->msg[s->nmsg];
    h1r_add(s, &m->b, &m->blen, p, n);
    return 0;
}

static const h1p_callbacks h1r_cb = {.on_request = h1r_on_request,
                                     .on_header = h1r_on_header,
                                     .on_head = h1r_on_head,
                                     .on_body = h1r_on_body};

/* Ours over the input cut after each offset in cuts (sorted; ncut of them), a request after
 * another until the input ends, an error, or a request that does not keep the connection (the
 * server reads nothing after it). Returns the last result: H1P_DONE when the input ended with a
 * request (or with one that closes), H1P_MORE when one was cut short, else the error (*where);
 * H1P_NOMEM when this harness ran out of memory. Checks the contract of *used and of a pause
 * on the way (s->bug). */
static h1p_result h1r_ours(const char *d, size_t n, size_t head_max, const size_t *cuts, int ncut,
                           h1r_side *s, h1p_where *where)
{
    h1p p;
    size_t at = 0;
    h1p_result r = H1P_MORE;
    bool after_pause = false;

    memset(&p, 0, sizeof p);
    h1p_init_request(&p, &h1r_cb, s, head_max);
    h1r_begin(s);
    for (int k = 0; k <= ncut && !s->oom; k++) {
        size_t to = k < ncut ? cuts[k] : n;
        while (at < to) {
            size_t used = SIZE_MAX;
            r = h1p_execute(&p, d + at, to - at, &used);
            if (s->oom) break;
            if (used > to - at) {
                s->bug = "*used past the end of the read";
                goto out;
            }
            if (after_pause && used == 0 && r == H1P_DONE) s->bug = "paused where no body followed";
            after_pause = r == H1P_PAUSED;
            at += used;
            if (r == H1P_PAUSED && !s->paused_head) s->bug = "paused when on_head did not ask";
            if (r == H1P_MORE && s->paused_head) s->bug = "on_head asked for a pause, not made";
            s->paused_head = false;
            if (r == H1P_PAUSED) continue; /* (the rest of the read is the body's) */
            if (r == H1P_DONE) {
                h1r_msg *m = &s->msg[s->nmsg];
                m->end = at;
                m->keep = h1p_keep_alive(&p);
                s->nmsg++;
                if (!m->keep) goto out;
                h1p_init_request(&p, &h1r_cb, s, head_max);
                if (!h1r_begin(s)) break;
                continue;
            }
            if (r != H1P_MORE) goto out;
            if (at != to) s->bug = "H1P_MORE without every byte of the read taken";
            at = to;
        }
    }
out:
    if (r == H1P_PAUSED) r = H1P_MORE; /* (paused at the input's end: its body is to come) */
    s->in_data = r == H1P_MORE && !s->oom && s->msg[s->nmsg].head && p.left > 0;
    *where = h1p_error_where(&p);
    h1p_free(&p);
    return s->oom ? H1P_NOMEM : r;
}

/* ---- llhttp ---- */

static h1r_side *h1r_ll_side(llhttp_t *p)
{
    return p->data;
}

static int h1r_ll_begin(llhttp_t *p)
{
    h1r_side *s = h1r_ll_side(p);
    h1r_begin(s);
    s->name.n = s->val.n = 0;
    return 0;
}

static int h1r_ll_url(llhttp_t *p, const char *at, size_t n)
{
    h1r_side *s = h1r_ll_side(p);
    if (s->oom) return 0;
    h1r_msg *m = &s->msg[s->nmsg];
    h1r_add(s, &m->u, &m->ulen, at, n);
    return 0;
}

static int h1r_ll_field(llhttp_t *p, const char *at, size_t n)
{
    h1r_side *s = h1r_ll_side(p);
    if (!h1r_put(&s->name, at, n)) s->oom = true;
    return 0;
}

static int h1r_ll_value(llhttp_t *p, const char *at, size_t n)
{
    h1r_side *s = h1r_ll_side(p);
    if (!h1r_put(&s->val, at, n)) s->oom = true;
    return 0;
}

/* A field is whole: kept as ours gives it (its value without whitespace around it); a
 * trailer's is not (ours gives none). */
static int h1r_ll_value_done(llhttp_t *p)
{
    h1r_side *s = h1r_ll_side(p);
    const char *v = s->val.p, *e = s->val.p + s->val.n;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    if (!s->oom && !s->msg[s->nmsg].head)
        h1r_add_field(s, s->name.p, s->name.n, v, (size_t)(e - v));
    s->name.n = s->val.n = 0;
    return 0;
}

static int h1r_ll_head(llhttp_t *p)
{
    h1r_side *s = h1r_ll_side(p);
    if (s->oom) return 0;
    h1r_msg *m = &s->msg[s->nmsg];
    const char *name = llhttp_method_name((llhttp_method_t)p->method);
    h1r_add(s, &m->m, &m->mlen, name, strlen(name));
    m->head = true;
    return 0;
}

static int h1r_ll_body(llhttp_t *p, const char *at, size_t n)
{
    h1r_side *s = h1r_ll_side(p);
    if (s->oom) return 0;
    h1r_msg *m = &s->msg[s->nmsg];
    h1r_add(s, &m->b, &m->blen, at, n);
    return 0;
}

static int h1r_ll_done(llhttp_t *p)
{
    h1r_side *s = h1r_ll_side(p);
    if (!s->oom) s->msg[s->nmsg].keep = llhttp_should_keep_alive(p);
    s->msg_done = true;
    return HPE_PAUSED; /* (h1r_theirs notes where it ended, and resumes) */
}

static int h1r_ll_ext_name_done(llhttp_t *p)
{
    h1r_ll_side(p)->ext_last = 0;
    return 0;
}

/* llhttp 8.1 (Debian's) takes the ';' that ends an unquoted value ("1;a=b;c=d") as part of the
 * value's end and then wants the chunk size's ';' or CR again, so it refuses a valid second
 * extension (fixed upstream by nodejs/llhttp#248). The value's span ends at its terminator; a
 * quoted value's ends at its closing '"' (that path is right). An unquoted value seen to end at a
 * ';' pauses llhttp in its complete callback, and h1r_theirs gives it the ';' it lost. */
static int h1r_ll_ext_value(llhttp_t *p, const char *at, size_t n)
{
    h1r_side *s = h1r_ll_side(p);
    if (n) s->ext_last = (unsigned char)at[n - 1];
    s->ext_resync = at + n < s->feed_end && at[n] == ';' && s->ext_last != '"';
    return 0;
}

static int h1r_ll_ext_value_done(llhttp_t *p)
{
    return h1r_ll_side(p)->ext_resync ? HPE_PAUSED : 0;
}

/* llhttp over the whole input, a request after another as the server ran it: paused at each
 * request's end, and resumed. Stops at an error (s->err), at an upgrade, after a request that
 * does not keep the connection (llhttp reads nothing after it), or at the input's end. */
static void h1r_theirs(const char *d, size_t n, h1r_side *s)
{
    static const char semicolon[] = ";";
    llhttp_settings_t st;
    llhttp_t p;
    const char *at = d, *end = d + n;

    llhttp_settings_init(&st);
    st.on_message_begin = h1r_ll_begin;
    st.on_url = h1r_ll_url;
    st.on_header_field = h1r_ll_field;
    st.on_header_value = h1r_ll_value;
    st.on_header_value_complete = h1r_ll_value_done;
    st.on_headers_complete = h1r_ll_head;
    st.on_body = h1r_ll_body;
    st.on_message_complete = h1r_ll_done;
    st.on_chunk_extension_name_complete = h1r_ll_ext_name_done;
    st.on_chunk_extension_value = h1r_ll_ext_value;
    st.on_chunk_extension_value_complete = h1r_ll_ext_value_done;
    llhttp_init(&p, HTTP_REQUEST, &st);
    p.data = s;
    h1r_begin(s);
    while (!s->oom) {
        s->feed_end = end;
        llhttp_errno_t e = llhttp_execute(&p, at, (size_t)(end - at));
        if (e == HPE_PAUSED) {
            const char *pos = llhttp_get_error_pos(&p);
            llhttp_resume(&p);
            if (s->ext_resync) {
                s->ext_resync = false;
                s->feed_end = semicolon + 1;
                e = llhttp_execute(&p, semicolon, 1);
                if (e != HPE_OK) {
                    s->err = e;
                    s->reason = llhttp_get_error_reason(&p);
                    return;
                }
            } else if (s->msg_done) {
                s->msg_done = false;
                if (s->oom) return;
                s->msg[s->nmsg].end = (size_t)(pos - d);
                bool keep = s->msg[s->nmsg].keep;
                s->nmsg++;
                if (!keep || !h1r_begin(s)) return;
            }
            at = pos;
            continue;
        }
        if (e == HPE_PAUSED_UPGRADE) {
            s->upgrade = true;
            return;
        }
        if (e != HPE_OK) {
            s->err = e;
            s->reason = llhttp_get_error_reason(&p);
        }
        return;
    }
}

/* ---- the comparison ---- */

static int h1r_compared;

/* a's request i against b's; NULL when alike */
static const char *h1r_same(const h1r_side *a, const h1r_side *b, int i)
{
    const h1r_msg *x = &a->msg[i], *y = &b->msg[i];
    const char *pa = a->arena.p, *pb = b->arena.p;
    if (x->mlen != y->mlen || memcmp(pa + x->m, pb + y->m, x->mlen) != 0) return "the method";
    if (x->ulen != y->ulen || memcmp(pa + x->u, pb + y->u, x->ulen) != 0) return "the target";
    if (x->nhdr != y->nhdr || x->hlen != y->hlen || memcmp(pa + x->h, pb + y->h, x->hlen) != 0)
        return "the header fields";
    if (x->blen != y->blen || memcmp(pa + x->b, pb + y->b, x->blen) != 0) return "the body";
    if (x->end != y->end) return "where the request ends";
    if (x->keep != y->keep)
        return x->keep ? "keep-alive (we keep, llhttp closes)"
                       : "keep-alive (we close, llhttp keeps)";
    return NULL;
}

/* Whether llhttp parses a method (ours: a token) as HTTP's: one of its HTTP methods but PRI
 * (which it takes only as HTTP/2's preface). Any other (unknown, RTSP's, PRI) it refuses as a
 * request line, and ours takes as a method the router answers 404 or 405: no framing to compare
 * from there on. */
static bool h1r_ll_http_method(const char *m, size_t n)
{
#define H1R_METHOD(num, name, string) #string,
    static const char *const known[] = {HTTP_METHOD_MAP(H1R_METHOD)};
#undef H1R_METHOD
    if (n == 3 && memcmp(m, "PRI", 3) == 0) return false;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (strlen(known[k]) == n && memcmp(known[k], m, n) == 0) return true;
    return false;
}

static const char *h1r_diff(const char *d, size_t n, size_t head_max, const size_t *cuts, int ncut)
{
    static h1r_side whole, cut, ll;
    static char why[320];
    h1p_where w1, w2;

    h1r_compared = 0;
    h1r_reset(&whole, false);
    h1r_reset(&cut, true);
    h1r_reset(&ll, false);
    h1p_result r1 = h1r_ours(d, n, head_max, NULL, 0, &whole, &w1);
    h1p_result r2 = h1r_ours(d, n, head_max, cuts, ncut, &cut, &w2);
    if (r1 == H1P_NOMEM || r2 == H1P_NOMEM) return "out of memory";
    if (whole.bug) return whole.bug;
    if (cut.bug) return cut.bug;
    if (r1 != r2) {
        snprintf(why, sizeof why, "the cuts changed the result (%d, cut %d)", r1, r2);
        return why;
    }
    if (r1 != H1P_DONE && r1 != H1P_MORE && w1 != w2) return "the cuts changed the error's place";
    if (whole.nmsg != cut.nmsg) return "the cuts changed the number of requests";
    for (int i = 0; i < whole.nmsg; i++) {
        const char *what = h1r_same(&whole, &cut, i);
        if (what) {
            snprintf(why, sizeof why, "request %d: the cuts changed %s", i + 1, what);
            return why;
        }
    }
    if (whole.nmsg == 0 && !(r1 == H1P_MORE && whole.msg[0].head)) return NULL;
    h1r_theirs(d, n, &ll);
    if (ll.oom) return "out of memory";
    for (int i = 0; i < whole.nmsg; i++) {
        const h1r_msg *m = &whole.msg[i];
        if (i >= ll.nmsg) {
            if (ll.upgrade) return NULL; /* (after an upgrade llhttp reads no more HTTP) */
            /* a method llhttp does not take as HTTP's: not comparable (PRI: it waits for the
             * rest of HTTP/2's preface, or refuses) */
            if (!h1r_ll_http_method(whole.arena.p + m->m, m->mlen)) return NULL;
            /* (a quoted-pair in a quoted extension value, RFC 9110 5.6.4, which llhttp 8.1
             * refuses; nothing of the framing depends on it: the line ends at its CRLF) */
            if (ll.err == HPE_STRICT && strstr(ll.reason, "quoted value")) return NULL;
            if (ll.err == HPE_OK)
                snprintf(why, sizeof why, "request %d: complete for us, not for llhttp", i + 1);
            else
                snprintf(why, sizeof why, "request %d: complete for us, llhttp refuses it (%s: %s)",
                         i + 1, llhttp_errno_name((llhttp_errno_t)ll.err), ll.reason);
            return why;
        }
        const char *what = h1r_same(&whole, &ll, i);
        if (what) {
            snprintf(why, sizeof why, "request %d: llhttp differs on %s", i + 1, what);
            return why;
        }
        h1r_compared++;
    }
    /* One we are reading body bytes of, llhttp has whole: the two frame it differently. (Not
     * when we wait for the end of a line: llhttp's leniencies about line ends may have ended the
     * message where we will refuse it.) */
    if (r1 == H1P_MORE && whole.in_data && ll.nmsg > whole.nmsg && !ll.upgrade) {
        snprintf(why, sizeof why, "request %d: llhttp has it complete, we want more",
                 whole.nmsg + 1);
        return why;
    }
    return NULL;
}

#endif
