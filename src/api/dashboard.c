/*
 * The web dashboard's routes: "/" and "/dashboard" redirect to "/dashboard/", and everything
 * under "/dashboard/" is one of the files embedded at build time (dashboard.h), looked up by its
 * exact path: no file system is read, so no path can reach anything else.
 *
 * The pages hold a billing key or the admin token in the tab, so every answer here carries a
 * strict Content-Security-Policy (only this origin's own scripts and styles, no inline code,
 * Trusted Types so no script can hand a string to innerHTML, no framing, no form submission),
 * and the headers that keep the pages out of frames, Referer headers and MIME sniffing. Files
 * are revalidated on every use (Cache-Control: no-cache) against their strong ETag: a new
 * binary's files take effect at once, and an unchanged file costs a 304 without its body.
 */
#include <stdio.h>
#include <string.h>

#include "api/dashboard.h"
#include "server/http.h"

/* The policy above. form-action 'none': forms are handled by the scripts; were a script to
 * fail, a sign-in form must not send its key anywhere (least of all in a URL). */
#define DASH_HEADERS                                                                               \
    "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; "           \
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "                    \
    "frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'\r\n"         \
    "x-frame-options: DENY\r\n"                                                                    \
    "referrer-policy: no-referrer\r\n"                                                             \
    "x-content-type-options: nosniff\r\n"                                                          \
    "cross-origin-opener-policy: same-origin\r\n"                                                  \
    "cross-origin-resource-policy: same-origin\r\n"

const dash_asset *dash_find(const char *path, size_t n)
{
    static const char index[] = "/dashboard/index.html";
    if (n == 11 && memcmp(path, "/dashboard/", 11) == 0) {
        path = index;
        n = sizeof index - 1;
    }
    for (size_t i = 0; i < dash_asset_count; i++) {
        const dash_asset *a = &dash_assets[i];
        if (strlen(a->path) == n && memcmp(a->path, path, n) == 0) return a;
    }
    return NULL;
}

/* 1 when an If-None-Match value names etag: a list of entity tags, compared weakly (RFC 9110
 * 13.1.2), or "*". */
static int etag_matches(ms_str inm, const char *etag)
{
    size_t en = strlen(etag);
    const char *p = inm.p, *end = inm.p + inm.n;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e - s == 1 && *s == '*') return 1;
        if (e - s >= 2 && s[0] == 'W' && s[1] == '/') s += 2;
        if ((size_t)(e - s) == en && memcmp(s, etag, en) == 0) return 1;
    }
    return 0;
}

static void serve(http_conn *c, http_request *r, const dash_asset *a)
{
    char h[128];
    snprintf(h, sizeof h, "etag: %s\r\ncache-control: no-cache\r\n", a->etag);
    if (r->if_none_match.n && etag_matches(r->if_none_match, a->etag)) {
        http_respond(c, 304, NULL, h, "", 0, 0);
        return;
    }
    http_respond(c, 200, a->type, h, (const char *)a->data, a->len, 0);
}

int dash_route(http_conn *c, http_request *r, int head)
{
    ms_str p = r->path;
    http_set_extra_headers(c, DASH_HEADERS);
    const dash_asset *a = NULL;
    int redirect = ms_str_eq(p, "/") || ms_str_eq(p, "/dashboard");
    if (!redirect && (a = dash_find(p.p, p.n)) == NULL) {
        http_error(c, 404, "not_found_error", "not_found", NULL, "Unknown route.", -1);
        return -1;
    }
    if (r->method != HTTP_M_GET) {
        http_add_extra_header(c, "allow: GET\r\n");
        http_error(c, 405, "invalid_request_error", "method_not_allowed", NULL,
                   "This method is not allowed on this path.", -1);
        return -1;
    }
    if (head) return 0;
    if (redirect)
        http_respond(c, 302, NULL, "location: /dashboard/\r\n", "", 0, 0);
    else
        serve(c, r, a);
    return 0;
}
