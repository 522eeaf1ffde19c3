/*
 * The shared part of rewriting a request into the hub format (hub.h).
 */
#include "dialect/hub.h"

#include <string.h>

#include "common/jarena.h"
#include "common/jtree.h"
#include "providers/provider.h"
#include "providers/wire.h"

static int hub_rewrite(const prov_call *call, buf_t *out, dialect_refusal *why,
                       dialect_hub_builder build)
{
    json_error_t jerr;
    /* (jansson's own parser: 10x slower; the dialect has validated the body) */
    json_t *req = prov_body_valid(call) ? jtree_load_valid(call->body.p, call->body.n, &jerr)
                                        : jtree_load(call->body.p, call->body.n, &jerr);
    if (!json_is_object(req)) {
        /* the scan accepted it, but jansson cannot hold it (an integer beyond 64 bits) */
        json_decref(req);
        return dialect_refuse(why, 400, "invalid_json", NULL,
                              "The request cannot be translated for this model's provider: %s.",
                              jerr.text);
    }
    json_t *o = json_object();
    int rc = o ? build(call, req, o, why) : -1; /* why stays zeroed: memory */
    size_t len0 = out->len;
    if (rc == 0 && prov_put_json(out, o) != 0) {
        out->len = len0; /* nothing half-written */
        *why = (dialect_refusal){0};
        rc = -1;
    }
    if (!jarena_holds_all()) { /* else the scope's end frees both (common/jarena.h) */
        json_decref(o);
        json_decref(req);
    }
    return rc;
}

int dialect_hub_rewrite(const prov_call *call, buf_t *out, dialect_refusal *why,
                        dialect_hub_builder build)
{
    *why = (dialect_refusal){0};
    /* both trees live and die in this call: a scope of their own (common/jarena.h) */
    int scope = jarena_begin();
    int rc = hub_rewrite(call, out, why, build);
    jarena_end(scope);
    return rc;
}

int dialect_is_null(const json_t *v)
{
    return !v || json_is_null(v);
}

int dialect_type_is(const char *type, const char *want)
{
    return type && strcmp(type, want) == 0;
}

json_t *dialect_text_part(json_t *t)
{
    return jtree_obj(2, "type", json_string_nocheck("text"), "text", json_incref(t));
}

json_t *dialect_simplify(json_t *parts)
{
    json_t *one = json_array_get(parts, 0);
    if (json_array_size(parts) == 0) {
        json_decref(parts);
        return json_string("");
    }
    if (json_array_size(parts) == 1 &&
        dialect_type_is(json_string_value(json_object_get(one, "type")), "text")) {
        json_t *s = json_incref(json_object_get(one, "text"));
        json_decref(parts);
        return s;
    }
    return parts;
}
