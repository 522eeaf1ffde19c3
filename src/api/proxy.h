/*
 * Forwarding to an upstream provider through its adapter (see proxy.c).
 */
#ifndef MS_PROXY_H
#define MS_PROXY_H

#include "api/api.h"
#include "providers/provider.h"

typedef struct proxy proxy;

/* Bills and frees every request of w that outlived its client (drain timeout, shutdown). */
void proxy_kill_detached(worker_t *w);

/* Takes ownership of call (malloc'd, its hold placed) and answers c: from the model's
 * deployments, retried and failed over as docs/ROUTING.md says. */
void proxy_start(http_conn *c, prov_call *call, api_settlement *settlement);

/* The models a request on m may be served by, in order: m, then its fallbacks that have a
 * deployment. Returns how many were written to out (at most max). */
size_t proxy_chain(const cfg_t *cfg, const cfg_model *m, const cfg_model **out, size_t max);

#endif
