/*
 * The web dashboard's files, served by the gateway itself (dashboard.c).
 *
 * The files under web/ are compiled into the binary at build time (scripts/web_embed.c writes
 * $(BUILD)/gen/web_assets.c from them), so the dashboard needs no file system, no CDN and no
 * network at run time, and a binary always serves the dashboard it was built with. Each file
 * carries its strong ETag, a digest of its bytes computed by the generator.
 */
#ifndef MS_DASHBOARD_H
#define MS_DASHBOARD_H

#include <stddef.h>

struct http_conn;
struct http_request;

typedef struct dash_asset {
    const char *path; /* the URL path: "/dashboard/js/app.js" */
    const char *type; /* its Content-Type */
    const char *etag; /* a strong ETag, quotes included: "\"<32 hex digits>\"" */
    const unsigned char *data;
    size_t len;
} dash_asset;

/* Every embedded file, ordered by path (the generated web_assets.c). */
extern const dash_asset dash_assets[];
extern const size_t dash_asset_count;

/* The asset at path ("/dashboard/" is the index page), or NULL. */
const dash_asset *dash_find(const char *path, size_t n);

/* Answers "/", "/dashboard" and everything under "/dashboard/" (the router hands them over
 * after every API route, so they cost the API's requests nothing). head: only the headers are
 * here (the router's head check); then only 404/405 are decided, and 0 means the request may go
 * on. Returns 0, or -1 when the request was answered with a refusal. */
int dash_route(struct http_conn *c, struct http_request *r, int head);

#endif
