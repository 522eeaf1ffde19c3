/*
 * POST /v1/responses: OpenAI's Responses API as a client dialect (Codex, the Vercel AI SDK's
 * default OpenAI provider, the OpenAI SDKs' responses.*). The same keys, models, holds, limits,
 * routing and ledger as chat completions. The request is parsed in the Responses dialect
 * (dialect/openai_responses_request.c), rewritten once into the hub format (OpenAI chat) that
 * every adapter builds from, and the answer, decoded into events, is encoded by the Responses
 * dialect (dialect/openai_responses.c) as a response object or its typed stream events.
 * Responses are not stored yet (docs/DIALECTS.md): previous_response_id is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/proxy.h"
#include "common/util.h"
#include "dialect/responses_request.h"

void api_responses(http_conn *c, http_request *r)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    const cfg_t *cfg = c->w->cfg;
    prov_call *call = malloc(sizeof *call);
    if (!call) return api_err_internal(c);
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    dialect_refusal why;
    why.status = 0;
    if (dialect_responses_parse(cfg, call, r->log_model, sizeof r->log_model, &why) != 0) {
        free(call);
        return api_refuse(c, &why);
    }
    call->dialect = &dialect_openai_responses;
    char *hub_body = NULL;
    why.status = 0;
    prov_call *hub = api_hub_call(cfg, call, dialect_responses_to_openai, &hub_body, &why);
    if (!hub && !why.status) {
        free(call);
        return api_err_internal(c);
    }
    /* nothing goes upstream before the rate limits and the worst case are covered */
    api_settlement *s = api_admit(c, call, &key);
    if (!s) {
        free(call);
        free(hub);
        free(hub_body);
        return;
    }
    proxy_start(c, call, hub, hub_body, hub ? NULL : &why, s);
}
