/*
 * POST /v1/messages: Anthropic's Messages API as a client dialect (Claude Code, the Anthropic
 * SDKs). The same keys, models, holds, limits, routing and ledger as chat completions; only the
 * shapes differ. The key may come as x-api-key (what Anthropic's SDKs send) or as a Bearer token,
 * and every error, before or during the answer, is in Anthropic's envelope (the route sets
 * http_request.error_body before anything can fail).
 *
 * The request is parsed in the Anthropic dialect (dialect/anthropic_messages_request.c); the
 * first attempt on a provider that does not speak it has the proxy rewrite it, once, into the
 * hub format (OpenAI chat) that such adapters build from (api_hub_call); answers come
 * back as events that the Anthropic dialect encodes (dialect/anthropic_messages.c). A provider
 * that speaks Anthropic's API gets the client's own bytes instead (only `model` spliced, its
 * anthropic-version and anthropic-beta forwarded) and its events pass through as they came.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/cache.h"
#include "api/proxy.h"
#include "common/util.h"
#include "dialect/anthropic_request.h"

prov_call *api_hub_call(const cfg_t *cfg, const prov_call *call, api_to_hub to_hub, char **body_out,
                        dialect_refusal *why)
{
    buf_t b;
    buf_init(&b, (size_t)cfg->max_body_bytes * 2 + 65536); /* a rewrite is not much larger */
    prov_call *hub = prov_call_alloc();
    size_t listed = 0;
    if (!hub) {
        *why = (dialect_refusal){0};
        goto fail;
    }
    /* The rewrite walks the client's body level by level (the messages, a message's content,
     * a block's text): the first walk over a long value notes where it ends, and the next
     * level's walks jump over it. Only a body validated by its parse is noted. */
    jscan_skips sk;
    int noted = prov_body_valid(call);
    if (noted) jscan_skips_begin(&sk, call->body.p, call->body.n);
    int rc = to_hub(call, &b, hub->members, PROV_MAX_MEMBERS, &listed, why);
    if (noted) jscan_skips_end();
    if (rc != 0) goto fail;
    hub->body = (ms_str){b.data ? b.data : "", b.len};
    ms_copy(hub->request_id, sizeof hub->request_id, call->request_id);
    char shown[256];
    /* written from a body the dialect validated: valid JSON by construction, its members
     * maybe listed by the rewrite */
    if ((prov_body_valid(call)
             ? dialect_openai_parse_listed(cfg, EP_CHAT, hub, listed, shown, sizeof shown, why)
             : dialect_openai_parse(cfg, EP_CHAT, hub, shown, sizeof shown, why)) != 0)
        goto fail;
    *body_out = buf_steal(&b);
    return hub;
fail:
    prov_call_free(hub);
    buf_free(&b);
    return NULL;
}

void api_messages(http_conn *c, http_request *r)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    const cfg_t *cfg = c->w->cfg;
    prov_call *call = prov_call_alloc();
    if (!call) return api_err_internal(c);
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    dialect_refusal why = {0};
    if (dialect_anthropic_parse(cfg, call, r->log_model, sizeof r->log_model, &why) != 0) {
        prov_call_free(call);
        return api_refuse(c, &why);
    }
    call->dialect = &dialect_anthropic_messages;
    /* forwarded to providers that speak the Messages API too (the request's header block
     * outlives every upstream request built from them) */
    call->anthropic_version = r->anthropic_version;
    call->anthropic_beta = r->anthropic_beta;
    /* an identical request answered before (the headers forwarded upstream are part of it):
     * from the response cache, no hold needed */
    char extra[1024];
    ms_str ver = r->anthropic_version, beta = r->anthropic_beta;
    int xn = -1; /* "<version>\n<beta>", copied (printf's ~800 instructions a request) */
    if (ver.n + 1 + beta.n < sizeof extra) {
        if (ver.n) memcpy(extra, ver.p, ver.n);
        extra[ver.n] = '\n';
        if (beta.n) memcpy(extra + ver.n + 1, beta.p, beta.n);
        xn = (int)(ver.n + 1 + beta.n);
    }
    /* nothing goes upstream before the rate limits and the worst case are covered. A request
     * the rewrite into the hub form would refuse (top_k, server tools...) can still go to a
     * provider that speaks the Messages API, untouched: the proxy makes that form, and answers
     * its refusal, only if an attempt needs it. */
    api_next next = {.to_hub = dialect_anthropic_to_openai_listed};
    if (xn < 0 || (size_t)xn >= sizeof extra) /* too long to key: not cached */
        return api_run(c, c->w->gen, call, &key, &next, NULL);
    api_cache_serve(c, call, &key, 'm', (ms_str){extra, (size_t)xn}, &next);
}
