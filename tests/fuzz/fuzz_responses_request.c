/*
 * libFuzzer target for the OpenAI Responses dialect's request side: a client's body through
 * dialect_responses_parse and, when it is accepted, dialect_responses_to_openai; the OpenAI body
 * written must be one the gateway accepts from an OpenAI client (dialect_openai_parse), and it
 * then goes through the Anthropic and Gemini adapters' builds, as a hub body does on its way to
 * any provider. The first input byte bounds the output buffer (a small limit drives the
 * out-of-space path).
 *
 * What is checked is memory safety and bounds (ASan/UBSan), no leak, nothing half-written on a
 * failure, and that every rewrite is valid for the next stage: a body a client can send must
 * become a clean refusal or a valid request, never a crash or a body the gateway cannot read.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/responses_request.h"
#include "providers/provider.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static cfg_provider g_prov[2] = {{.name = (char *)"anth",
                                  .kind = PROV_ANTHROPIC,
                                  .base_url = (char *)"http://a.example",
                                  .api_key = (char *)"k",
                                  .enabled = 1},
                                 {.name = (char *)"gem",
                                  .kind = PROV_GEMINI,
                                  .base_url = (char *)"http://g.example",
                                  .api_key = (char *)"k",
                                  .enabled = 1}};
static cfg_deployment g_dep[2] = {{.provider = &g_prov[0], .model = (char *)"up", .weight = 1},
                                  {.provider = &g_prov[1], .model = (char *)"up", .weight = 1}};
static cfg_model g_model = {.name = (char *)"m", .deployments = g_dep, .ndeployments = 2};
static cfg_t g_cfg = {.models = &g_model, .nmodels = 1, .default_max_output_tokens = 64};

/* The hub body through one adapter's build: a request, or a clean refusal. */
static void build(prov_call *hub, const cfg_deployment *dep, const prov_adapter *a)
{
    hub->dep = dep;
    hub->output_bound = hub->max_tokens > 0 ? hub->max_tokens : 64;
    prov_upreq u;
    memset(&u, 0, sizeof u);
    prov_refusal pr;
    memset(&pr, 0, sizeof pr);
    /* the per-transfer state the engine allocates zeroed (Gemini counts turns in it) */
    void *st = a->state_size ? calloc(1, a->state_size) : NULL;
    MUST(st || !a->state_size);
    if (a->reset) a->reset(st, hub);
    int brc = a->build(hub, st, &u, &pr);
    MUST(brc == 0 || brc == -1 || (brc == -2 && pr.status >= 400));
    prov_upreq_free(&u);
    if (a->release) a->release(st);
    free(st);
}

/* The stored-response side (openai_responses_history.c) on an accepted body: the body read as a
 * response object and as a terminal event, its input kept as history with the body's own output,
 * and, with previous_response_id, the continuation made whole, which must parse again with no
 * previous id and the same model. */
/* A lookup that finds every response the fuzzed body names: the body itself. */
static int self_lookup(void *ud, const char *resp_id, ms_str *response)
{
    MUST(strncmp(resp_id, "resp_", 5) == 0);
    *response = *(const ms_str *)ud;
    return 0;
}

static void stored_state(const prov_call *call, const dialect_responses_state *st, size_t limit)
{
    ms_str obj;
    char id[128];
    if (dialect_responses_object(call->body, 0, &obj, id, sizeof id) == 0)
        MUST(obj.p == call->body.p && id[0]);
    if (dialect_responses_object(call->body, 1, &obj, id, sizeof id) == 0)
        MUST(obj.p > call->body.p && obj.p + obj.n <= call->body.p + call->body.n);
    buf_t h;
    buf_init(&h, limit);
    if (dialect_responses_history(st->input, call->body, &h) == 0)
        MUST(h.len >= 2 && h.data[0] == '[');
    buf_t res;
    buf_init(&res, limit);
    int rr = dialect_responses_resolve(st->input, self_lookup, (void *)&call->body, &res);
    MUST(rr == -1 || rr == 1 || (rr == 0 && res.len >= 2 && res.data[0] == '['));
    MUST(rr == 0 || res.len == 0);
    buf_free(&res);
    if (st->has_previous) {
        static const char hist[] = "[{\"role\":\"user\",\"content\":\"a\"},"
                                   "{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":"
                                   "\"f\",\"arguments\":\"{}\"}]";
        ms_str hs = h.len ? (ms_str){h.data, h.len} : (ms_str){hist, sizeof hist - 1};
        buf_t whole;
        buf_init(&whole, limit);
        if (dialect_responses_continue(call->body, st->input, st->previous_value, hs, &whole) ==
            0) {
            prov_call *again = malloc(sizeof *again);
            dialect_responses_state st2;
            dialect_refusal why;
            char shown[256];
            again->body = (ms_str){whole.data, whole.len};
            memcpy(again->request_id, "req_f", 6);
            MUST(dialect_responses_parse(&g_cfg, again, shown, sizeof shown, &st2, &why) == 0);
            MUST(!st2.has_previous && again->model == call->model);
            free(again);
        }
        buf_free(&whole);
    }
    buf_free(&h);
}

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
    dialect_responses_state st;
    if (dialect_responses_parse(&g_cfg, call, shown, sizeof shown, &st, &why) != 0) {
        MUST(why.status >= 400 && why.message[0]);
        free(call);
        return 0;
    }
    MUST(call->model == &g_model && call->ep == EP_CHAT && call->client_include_usage == 1);
    MUST(call->max_tokens == -1 || call->max_tokens >= 1);
    stored_state(call, &st, limit);
    buf_t out;
    buf_init(&out, limit);
    int rc = dialect_responses_to_openai(call, &out, &why);
    if (rc != 0) {
        MUST(rc == -1 && out.len == 0);
        MUST(why.status == 0 || (why.status == 400 && why.message[0]));
    } else {
        /* the hub body: the gateway's OpenAI parser takes it, the same model and limits */
        prov_call *hub = malloc(sizeof *hub);
        hub->body = (ms_str){out.data, out.len};
        memcpy(hub->request_id, "req_f", 6);
        /* unless a field the Responses API does not define, passed through as it came, is one
         * chat completions defines and refuses as it is: a 400 then, as api_hub_call answers it
         * (those the gateway reads back, max_completion_tokens and the like, the rewrite refuses
         * itself: seed max_completion_tokens_passed) */
        if (dialect_openai_parse(&g_cfg, EP_CHAT, hub, shown, sizeof shown, &why) != 0) {
            MUST(why.status == 400 && why.message[0]);
        } else {
            MUST(hub->model == &g_model && hub->max_tokens == call->max_tokens);
            MUST(hub->stream == call->stream);
            build(hub, &g_dep[0], &prov_anthropic);
            build(hub, &g_dep[1], &prov_gemini);
        }
        free(hub);
    }
    buf_free(&out);
    free(call);
    return 0;
}
