/*
 * POST /v1/chat/completions and POST /v1/embeddings: authenticate, let the client's dialect parse
 * the request into the gateway's (dialect/openai_chat_request.c: the few fields the gateway acts
 * on, the model resolved), answer it from the response cache when it can (api/cache.c), else
 * admit it (rate limits and the balance hold) and hand it to the proxy,
 * which runs it on an adapter. Refusals are written as the dialect says (field errors name
 * `param`, as OpenAI does, so SDK users see which field is wrong).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/cache.h"
#include "api/proxy.h"
#include "common/util.h"

/* Authenticates, parses the body in the client's dialect, answers it from the cache or admits it
 * (limits and hold) and hands it to the proxy. */
static void serve(http_conn *c, http_request *r, prov_endpoint ep)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    prov_call *call = prov_call_alloc();
    if (!call) return api_err_internal(c);
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    dialect_refusal why;
    int rc = dialect_openai_parse(c->w->cfg, ep, call, r->log_model, sizeof r->log_model, &why);
    if (rc != 0) {
        prov_call_free(call);
        return api_refuse(c, &why);
    }
    /* an identical request answered before: from the response cache, no hold needed; else
     * admitted and run */
    api_next next = {.to_hub = NULL};
    api_cache_serve(c, call, &key, ep == EP_CHAT ? 'c' : 'e', (ms_str){"", 0}, &next);
}

void api_chat_completions(http_conn *c, http_request *r)
{
    serve(c, r, EP_CHAT);
}

void api_embeddings(http_conn *c, http_request *r)
{
    serve(c, r, EP_EMBEDDINGS);
}
