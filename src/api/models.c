/*
 * GET /v1/models and GET /v1/models/{id}: the models this gateway serves (those with at least
 * one enabled deployment) in OpenAI's list shape, each with its list prices (provider price plus
 * the configured markup), in USD per 1M tokens. owned_by is the provider kind (openai, anthropic,
 * gemini, azure, echo) of the model's first usable deployment, in the config's order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "billing/billing.h"
#include "common/util.h"

/* The kind of the first deployment whose provider is enabled. The config keeps only those in
 * deployments (ndeployments), so this is deployments[0]; the check says what "usable" means should
 * that ever change. Listed models have at least one. */
static const char *owner_kind(const cfg_model *m)
{
    for (size_t i = 0; i < m->ndeployments; i++)
        if (m->deployments[i].provider->enabled)
            return cfg_prov_kind_name(m->deployments[i].provider->kind);
    return cfg_prov_kind_name(m->deployments[0].provider->kind);
}

static void append_model(buf_t *b, const cfg_t *cfg, const cfg_model *m)
{
    char in[40], out[40];
    ms_format_decimal(price_list_per_mtok(cfg, m->price_in_nusd_per_mtok), 9, in, sizeof in);
    ms_format_decimal(price_list_per_mtok(cfg, m->price_out_nusd_per_mtok), 9, out, sizeof out);
    buf_appends(b, "{\"id\":\"");
    buf_append_json_escaped(b, m->name, strlen(m->name));
    buf_printf(b,
               "\",\"object\":\"model\",\"created\":%" PRId64 ",\"owned_by\":\"%s\","
               "\"pricing\":{\"input\":%s,\"output\":%s,\"unit\":\"USD per 1M tokens\"}}",
               m->created, owner_kind(m), in, out);
}

void api_models_list(http_conn *c, http_request *r)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    const cfg_t *cfg = c->w->cfg;
    buf_t b;
    buf_init(&b, 0);
    buf_appends(&b, "{\"object\":\"list\",\"data\":[");
    int first = 1;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const cfg_model *m = &cfg->models[i];
        if (m->ndeployments == 0) continue;
        if (!first) buf_appends(&b, ",");
        first = 0;
        append_model(&b, cfg, m);
    }
    if (buf_appends(&b, "]}") != 0) {
        buf_free(&b);
        return api_err_internal(c);
    }
    size_t len = b.len;
    http_respond(c, 200, "application/json", NULL, buf_steal(&b), len, 1);
}

void api_models_get(http_conn *c, http_request *r, ms_str id)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    const cfg_t *cfg = c->w->cfg;
    const cfg_model *m = cfg_find_model(cfg, id.p, id.n);
    if (!m || m->ndeployments == 0) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(id.n > 200 ? 200 : id.n), id.p);
        return api_err_model_not_found(c, name);
    }
    buf_t b;
    buf_init(&b, 0);
    append_model(&b, cfg, m);
    if (!b.data) {
        buf_free(&b);
        return api_err_internal(c);
    }
    size_t len = b.len;
    http_respond(c, 200, "application/json", NULL, buf_steal(&b), len, 1);
}
