/*
 * The differential check of the upstream response parser (src/common/h1parse.c) against llhttp,
 * shared by tests/unit/test_h1parse.c (seeds and a fixed run of mutations, in the suite) and
 * tests/fuzz/fuzz_h1parse.c (libFuzzer). h1parse may refuse what llhttp takes, never the reverse
 * in a way that matters: a response it accepts must have llhttp's status, body bytes, end and
 * keep-alive; and how the bytes are cut into reads must change nothing.
 *
 * h1p_diff(data, n, head_only, cuts) returns NULL when the two agree, else what differs.
 */
#ifndef MS_TEST_H1P_DIFF_H
#define MS_TEST_H1P_DIFF_H

#include "common/h1parse.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define H1D_BODY_MAX (1 << 20)

typedef struct {
    char *body;
    size_t blen;
    int status, heads;
    bool done, keep, in_body; /* in_body: ours wants body bytes (not a line) */
} h1d_out;

static int h1d_on_body(void *ud, const char *p, size_t n)
{
    h1d_out *o = ud;
    if (o->blen + n > H1D_BODY_MAX) return -1;
    memcpy(o->body + o->blen, p, n);
    o->blen += n;
    return 0;
}

static int h1d_on_head(void *ud, int status)
{
    h1d_out *o = ud;
    o->status = status;
    o->heads++;
    return 0;
}

static const h1p_callbacks h1d_cb = {.on_head = h1d_on_head, .on_body = h1d_on_body};

/* ours, the input cut after each offset in cuts (sorted, < n; ncut of them); at the end the
 * connection closes when eof. Returns the result; *used is the end of the response when DONE. */
static h1p_result h1d_ours(const char *d, size_t n, bool head_only, const size_t *cuts, int ncut,
                           bool eof, h1d_out *o, size_t *end)
{
    h1p p;
    size_t at = 0, used = 0;
    h1p_result r = H1P_MORE;

    memset(&p, 0, sizeof p);
    h1p_init(&p, &h1d_cb, o, head_only);
    for (int k = 0; k <= ncut && r == H1P_MORE; k++) {
        size_t to = k < ncut ? cuts[k] : n;
        if (to < at) continue;
        r = h1p_execute(&p, d + at, to - at, &used);
        at += used;
    }
    if (r == H1P_MORE && eof) {
        r = h1p_finish(&p);
    }
    *end = at;
    o->in_body = r == H1P_MORE && o->status >= 200 && (p.left > 0 || h1p_needs_eof(&p));
    if (r == H1P_DONE) {
        o->done = true;
        o->keep = h1p_keep_alive(&p);
    }
    h1p_free(&p);
    return r;
}

typedef struct {
    h1d_out *o;
    bool head_only;
} h1d_ll;

static int h1d_ll_body(llhttp_t *p, const char *at, size_t n)
{
    return h1d_on_body(((h1d_ll *)p->data)->o, at, n);
}

static int h1d_ll_head(llhttp_t *p)
{
    h1d_ll *l = p->data;
    h1d_on_head(l->o, p->status_code);
    return l->head_only && p->status_code >= 200 ? 1 : 0;
}

static int h1d_ll_done(llhttp_t *p)
{
    h1d_ll *l = p->data;
    if (p->status_code < 200) return 0;
    l->o->done = true;
    l->o->keep = llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

/* llhttp over the whole input: 1 complete (*end where), 0 wants more, -1 refused */
static int h1d_theirs(const char *d, size_t n, bool head_only, bool eof, h1d_out *o, size_t *end)
{
    llhttp_settings_t s;
    llhttp_t p;
    h1d_ll l = {o, head_only};

    llhttp_settings_init(&s);
    s.on_body = h1d_ll_body;
    s.on_headers_complete = h1d_ll_head;
    s.on_message_complete = h1d_ll_done;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = &l;
    llhttp_errno_t e = llhttp_execute(&p, d, n);
    *end = n;
    if (o->done) {
        *end = (size_t)(llhttp_get_error_pos(&p) - d);
        return 1;
    }
    if (e != HPE_OK) return -1;
    if (eof) {
        e = llhttp_finish(&p);
        if (o->done) return 1;
        if (e != HPE_OK) return -1;
        return -1; /* closed before the end: an error for the client either way */
    }
    return 0;
}

/* ours (a) against b; with llhttp we may close a connection it would keep, never the reverse */
static const char *h1d_same(const h1d_out *a, const h1d_out *b, bool exact)
{
    if (a->status != b->status) return "status";
    if (a->blen != b->blen || memcmp(a->body, b->body, a->blen) != 0) return "body";
    if (exact ? a->keep != b->keep : a->keep && !b->keep) return "keep-alive";
    return NULL;
}

static const char *h1p_diff(const char *d, size_t n, bool head_only, const size_t *cuts, int ncut)
{
    static char *bufs[3];
    h1d_out whole = {0}, cut = {0}, ll = {0};
    size_t e1, e2, e3;
    const char *why = NULL;

    for (int k = 0; k < 3; k++)
        if (!bufs[k] && !(bufs[k] = malloc(H1D_BODY_MAX))) return "out of memory";
    whole.body = bufs[0];
    cut.body = bufs[1];
    ll.body = bufs[2];
    for (int eof = 0; eof <= 1 && !why; eof++) {
        whole.blen = cut.blen = ll.blen = 0;
        whole.status = cut.status = ll.status = 0;
        whole.heads = cut.heads = ll.heads = 0;
        whole.done = cut.done = ll.done = whole.keep = cut.keep = ll.keep = false;
        h1p_result r1 = h1d_ours(d, n, head_only, NULL, 0, eof, &whole, &e1);
        h1p_result r2 = h1d_ours(d, n, head_only, cuts, ncut, eof, &cut, &e2);
        if (r1 != r2) return "the cuts changed the result";
        if (r1 == H1P_DONE && (e1 != e2 || h1d_same(&whole, &cut, true)))
            return "the cuts changed the response";
        if (r1 == H1P_MALFORMED || r1 == H1P_TOO_LARGE || r1 == H1P_ABORTED || r1 == H1P_NOMEM)
            continue; /* stricter than llhttp is allowed */
        int t = h1d_theirs(d, n, head_only, eof, &ll, &e3);
        if (r1 == H1P_DONE) {
            if (t != 1) return "complete for us, not for llhttp";
            if (e1 != e3) return "the response ends elsewhere for llhttp";
            why = h1d_same(&whole, &ll, false);
        } else if (t == 1 && whole.in_body) {
            /* (llhttp's leniencies about line ends only make us wait for bytes it did not: a
             * line is never taken for body bytes, so nothing is framed differently) */
            return "llhttp has the response complete, we want more";
        }
    }
    return why;
}

#endif
