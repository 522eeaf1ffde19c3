/*
 * libFuzzer target for the Anthropic Messages dialect's request side: a client's body through
 * dialect_anthropic_parse and, when it is accepted, dialect_anthropic_to_openai; the OpenAI body
 * written must be one the gateway accepts from an OpenAI client (dialect_openai_parse) and then
 * goes through the Anthropic adapter's build, as a hub body does on its way to any provider.
 * The first input byte bounds the output buffer (a small limit drives the out-of-space path).
 * The top-level members the rewrite lists (dialect_anthropic_to_openai_listed, which the engine
 * hands to the OpenAI parser instead of a scan) must be jscan_members_valid's, to the offset.
 *
 * What is checked is memory safety and bounds (ASan/UBSan), no leak, nothing half-written on a
 * failure, and that every rewrite is valid for the next stage: a body a client can send must
 * become a clean refusal or a valid request, never a crash or a body the gateway cannot read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/anthropic_request.h"
#include "providers/provider.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static cfg_provider g_prov = {.name = (char *)"anth",
                              .kind = PROV_ANTHROPIC,
                              .base_url = (char *)"http://a.example",
                              .api_key = (char *)"k",
                              .enabled = 1};
static cfg_deployment g_dep = {.provider = &g_prov, .model = (char *)"up", .weight = 1};
static cfg_model g_model = {.name = (char *)"m", .deployments = &g_dep, .ndeployments = 1};
static cfg_t g_cfg = {.models = &g_model, .nmodels = 1, .default_max_output_tokens = 64};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t limit = data[0] < 0x80 ? 0 : (size_t)(data[0] & 0x7f) * 16;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    prov_call *call = malloc(sizeof *call);
    call->body = (ms_str){p, n};
    memcpy(call->request_id, "req_f", 6);
    dialect_refusal why;
    char shown[256];
    if (dialect_anthropic_parse(&g_cfg, call, shown, sizeof shown, &why) != 0) {
        MUST(why.status >= 400 && why.message[0]);
        free(call);
        return 0;
    }
    MUST(call->model == &g_model && call->max_tokens >= 1 && call->ep == EP_CHAT);
    buf_t out;
    buf_init(&out, limit);
    size_t listed = 0;
    jscan_member *lm = malloc(PROV_MAX_MEMBERS * sizeof *lm);
    int rc = dialect_anthropic_to_openai_listed(call, &out, lm, PROV_MAX_MEMBERS, &listed, &why);
    if (rc != 0) {
        MUST(rc == -1 && out.len == 0);
        MUST(why.status == 0 || (why.status == 400 && why.message[0]));
    } else {
        /* the members the rewrite lists are the scan's, to the byte and offset */
        jscan_member *sm = malloc(PROV_MAX_MEMBERS * sizeof *sm);
        int sn = jscan_members_valid((ms_str){out.data, out.len}, sm, PROV_MAX_MEMBERS);
        MUST(sn > 0 && (size_t)sn == listed);
        for (size_t i = 0; i < listed; i++)
            MUST(lm[i].key.p == sm[i].key.p && lm[i].key.n == sm[i].key.n &&
                 lm[i].value.p == sm[i].value.p && lm[i].value.n == sm[i].value.n &&
                 lm[i].type == sm[i].type && lm[i].key_plain == sm[i].key_plain &&
                 lm[i].start == sm[i].start && lm[i].end == sm[i].end);
        free(sm);
        /* the hub body: the gateway's OpenAI parser takes it, the same model and limits */
        prov_call *hub = malloc(sizeof *hub);
        hub->body = (ms_str){out.data, out.len};
        memcpy(hub->request_id, "req_f", 6);
        MUST(dialect_openai_parse(&g_cfg, EP_CHAT, hub, shown, sizeof shown, &why) == 0);
        MUST(hub->model == &g_model && hub->max_tokens == call->max_tokens);
        MUST(hub->stream == call->stream);
        hub->dep = &g_dep;
        hub->output_bound = hub->max_tokens;
        prov_upreq u;
        memset(&u, 0, sizeof u);
        prov_refusal pr;
        memset(&pr, 0, sizeof pr);
        int brc = prov_anthropic.build(hub, NULL, &u, &pr);
        MUST(brc == 0 || brc == -1 || (brc == -2 && pr.status >= 400));
        prov_upreq_free(&u);
        free(hub);
    }
    free(lm);
    buf_free(&out);
    free(call);
    return 0;
}
