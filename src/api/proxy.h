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
/* Runs call (owned) with its settlement context (owned). to_hub: how the request becomes the
 * hub format (OpenAI chat) when the client spoke another API (NULL for OpenAI chat clients);
 * the proxy makes that form only when an attempt needs it (api_hub_call), and answers the
 * rewrite's refusal only then. */
void proxy_start(http_conn *c, prov_call *call, api_to_hub to_hub, api_settlement *settlement);

/* The models a request on m may be served by, in order: m, then its fallbacks that have a
 * deployment. Returns how many were written to out (at most max). */
size_t proxy_chain(const cfg_t *cfg, const cfg_model *m, const cfg_model **out, size_t max);

#endif
