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

/* Takes ownership of call (malloc'd) and answers c when the upstream is done. */
void proxy_start(http_conn *c, prov_call *call, const prov_adapter *ad);

#endif
