/*
 * Golden tests of the Anthropic adapter (src/providers/anthropic.c): OpenAI chat request bodies
 * in, the exact Anthropic Messages body out (system, merged turns, images, tools, tool results,
 * the max_tokens rule, stop, thinking, refusals naming their field); Anthropic answers and
 * stream event sequences in, the exact OpenAI chat.completion / chunks out through the OpenAI
 * chat dialect, with the usage mapped onto the five billed counts.
 *
 * Fixtures follow Anthropic's references: the message shape of the Messages API
 * (https://docs.claude.com/en/api/messages), the event flow of streaming
 * (https://docs.claude.com/en/docs/build-with-claude/streaming), thinking blocks
 * (https://docs.claude.com/en/docs/build-with-claude/extended-thinking), cache usage fields
 * (https://docs.claude.com/en/docs/build-with-claude/prompt-caching) and the error envelope
 * (https://docs.claude.com/en/api/errors).
 *
 * JSON is written with ' for " (q() swaps them) so the goldens stay readable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ev_record.h"
#include "mutate.h"
#include "providers/provider.h"
#include "tap.h"
#include "quote.h"

static cfg_provider g_prov = {.name = (char *)"anth",
                              .kind = PROV_ANTHROPIC,
                              .base_url = (char *)"http://up.example",
                              .api_key = (char *)"sk-ant-secret",
                              .enabled = 1};
static cfg_deployment g_dep = {.provider = &g_prov, .model = (char *)"claude-up", .weight = 1};
/* no max_output_tokens: the billing default (4096) applies */
static cfg_model g_model = {.name = (char *)"claude-x"};
/* with one */
static cfg_model g_model_cap = {.name = (char *)"claude-x", .max_output_tokens = 8192};

static char g_body[16384];

static prov_call *mkcall(const cfg_model *m, const char *body, int64_t max_tokens, int stream)
{
    prov_call *c = calloc(1, sizeof *c);
    snprintf(g_body, sizeof g_body, "%s", q(body));
    c->ep = EP_CHAT;
    c->dialect = &dialect_openai_chat;
    c->model = m;
    c->dep = &g_dep;
    c->body = ms_str_c(g_body);
    int n = jscan_object(g_body, strlen(g_body), c->members, PROV_MAX_MEMBERS, NULL);
    if (n < 0) {
        fprintf(stderr, "bad test body: %s\n", g_body);
        exit(1);
    }
    c->nmembers = (size_t)n;
    c->valid = c->body; /* scanned whole, as dialect_scan vouches for a body */
    c->m_model = jscan_find(c->members, c->nmembers, "model");
    c->max_tokens = max_tokens;
    c->stream = stream;
    snprintf(c->request_id, sizeof c->request_id, "req_abc");
    return c;
}

/* Builds body; returns build's result, the Anthropic body in out (NUL-terminated). */
static int build(const cfg_model *m, const char *body, int64_t max_tokens, int stream, char *out,
                 size_t outlen, prov_refusal *why)
{
    prov_call *c = mkcall(m, body, max_tokens, stream);
    prov_upreq u;
    memset(&u, 0, sizeof u);
    memset(why, 0, sizeof *why);
    int rc = prov_anthropic.build(c, NULL, &u, why);
    out[0] = '\0';
    if (rc == 0) {
        CHECK_EQ_INT(u.niov, 1);
        size_t n = u.iov[0].len < outlen - 1 ? u.iov[0].len : outlen - 1;
        memcpy(out, u.iov[0].base, n);
        out[n] = '\0';
    }
    prov_upreq_free(&u);
    free(c);
    return rc;
}

static char g_out[65536];

#define CHECK_BODY(m, body, max, stream, want)                                                     \
    do {                                                                                           \
        prov_refusal why_;                                                                         \
        int rc_ = build(m, body, max, stream, g_out, sizeof g_out, &why_);                         \
        CHECK_EQ_INT(rc_, 0);                                                                      \
        if (rc_) fprintf(stderr, "  refused: %s\n", why_.message);                                 \
        CHECK_EQ_STR(g_out, q(want));                                                              \
    } while (0)

#define CHECK_REFUSED(m, body, max, param_)                                                        \
    do {                                                                                           \
        prov_refusal why_;                                                                         \
        CHECK_EQ_INT(build(m, body, max, 0, g_out, sizeof g_out, &why_), -2);                      \
        CHECK_EQ_INT(why_.status, 400);                                                            \
        CHECK_EQ_STR(why_.type, "invalid_request_error");                                          \
        if (param_)                                                                                \
            CHECK_EQ_STR(why_.param, (const char *)(param_));                                      \
        else                                                                                       \
            CHECK(why_.param == NULL);                                                             \
        CHECK(why_.message[0] != '\0');                                                            \
    } while (0)

/* URL, headers, and a plain system + user request; temperature kept in its shortest form. */
static void test_build_plain(void)
{
    prov_call *c = mkcall(&g_model,
                          "{'model':'claude-x','messages':[{'role':'system','content':"
                          "'Be brief.'},{'role':'user','content':'hi'}],'temperature':0.7}",
                          100, 1);
    prov_upreq u;
    memset(&u, 0, sizeof u);
    prov_refusal why = {0};
    CHECK_EQ_INT(prov_anthropic.build(c, NULL, &u, &why), 0);
    CHECK_EQ_STR(u.url, "http://up.example/v1/messages");
    CHECK_EQ_INT(u.nheaders, 4);
    if (u.nheaders == 4) {
        CHECK_EQ_STR(u.headers[0], "x-api-key: sk-ant-secret");
        CHECK_EQ_STR(u.headers[1], "anthropic-version: 2023-06-01");
        CHECK_EQ_STR(u.headers[2], "content-type: application/json");
        CHECK_EQ_STR(u.headers[3], "accept: text/event-stream");
    }
    buf_t b;
    buf_init(&b, 0);
    buf_append(&b, u.iov[0].base, u.iov[0].len);
    buf_append(&b, "", 1);
    CHECK_EQ_STR(b.data, q("{'model':'claude-up','max_tokens':100,'system':[{'type':'text','text':"
                           "'Be brief.'}],'messages':[{'role':'user','content':'hi'}],"
                           "'temperature':0.7,'stream':true}"));
    buf_free(&b);
    prov_upreq_free(&u);
    free(c);
}

/* system and developer messages hoisted (cache_control kept), same-role turns merged, images as
 * base64 and url sources (Vision), OpenAI's detail dropped. */
static void test_build_merge_images(void)
{
    CHECK_BODY(&g_model_cap,
               "{'model':'claude-x','messages':["
               "{'role':'system','content':'A'},"
               "{'role':'developer','content':[{'type':'text','text':'B','cache_control':{'type':"
               "'ephemeral'}}]},"
               "{'role':'user','content':'one','name':'bob'},"
               "{'role':'user','content':[{'type':'text','text':'two'},{'type':'image_url',"
               "'image_url':{'url':'data:image/png;base64,AAAA'}},{'type':'image_url','image_url':"
               "{'url':'https://x.test/y.jpg','detail':'high'}}]},"
               "{'role':'assistant','content':'ok'},"
               "{'role':'assistant','content':[{'type':'text','text':'more'}]},"
               "{'role':'user','content':''},"
               "{'role':'user','content':'again'}]}",
               -1, 0,
               "{'model':'claude-up','max_tokens':8192,'system':[{'type':'text','text':'A'},"
               "{'type':'text','text':'B','cache_control':{'type':'ephemeral'}}],'messages':["
               "{'role':'user','content':[{'type':'text','text':'one'},{'type':'text','text':"
               "'two'},{'type':'image','source':{'type':'base64','media_type':'image/png','data':"
               "'AAAA'}},{'type':'image','source':{'type':'url','url':'https://x.test/y.jpg'}}]},"
               "{'role':'assistant','content':[{'type':'text','text':'ok'},{'type':'text','text':"
               "'more'}]},{'role':'user','content':'again'}]}");
}

/* A tool round trip: assistant tool_calls -> tool_use (input parsed; empty arguments -> {}),
 * tool messages -> tool_result blocks in one user turn with the next user text; tools,
 * tool_choice required -> any, parallel_tool_calls false, stop, user, stream (Tool use). */
static void test_build_tools(void)
{
    CHECK_BODY(&g_model,
               "{'model':'claude-x','stream':true,'messages':["
               "{'role':'user','content':'weather?'},"
               "{'role':'assistant','content':null,'tool_calls':["
               "{'id':'call_1','type':'function','function':{'name':'get_weather','arguments':"
               "'{\\'city\\': \\'Paris\\', \\'t\\': 0.1}'}},"
               "{'id':'call_2','type':'function','function':{'name':'now','arguments':''}}]},"
               "{'role':'tool','tool_call_id':'call_1','content':'sunny'},"
               "{'role':'tool','tool_call_id':'call_2','content':[{'type':'text','text':'noon'}]},"
               "{'role':'user','content':'thanks'}],"
               "'tools':[{'type':'function','function':{'name':'get_weather','description':"
               "'Weather','parameters':{'type':'object','properties':{'city':{'type':'string'}}}}},"
               "{'type':'function','function':{'name':'now'}}],"
               "'tool_choice':'required','parallel_tool_calls':false,'stop':'END','user':'u-1',"
               "'stream_options':{'include_usage':true},'store':false,'seed':7,'n':1,"
               "'presence_penalty':0,'metadata':{'a':'b'}}",
               -1, 1,
               "{'model':'claude-up','max_tokens':4096,'messages':["
               "{'role':'user','content':'weather?'},"
               "{'role':'assistant','content':[{'type':'tool_use','id':'call_1','name':"
               "'get_weather','input':{'city':'Paris','t':0.1}},{'type':'tool_use','id':'call_2',"
               "'name':'now','input':{}}]},"
               "{'role':'user','content':[{'type':'tool_result','tool_use_id':'call_1','content':"
               "'sunny'},{'type':'tool_result','tool_use_id':'call_2','content':[{'type':'text',"
               "'text':'noon'}]},{'type':'text','text':'thanks'}]}],"
               "'tools':[{'name':'get_weather','description':'Weather','input_schema':{'type':"
               "'object','properties':{'city':{'type':'string'}}}},{'name':'now','input_schema':"
               "{'type':'object'}}],"
               "'tool_choice':{'type':'any','disable_parallel_tool_use':true},"
               "'stop_sequences':['END'],'metadata':{'user_id':'u-1'},'stream':true}");
    /* the other choices, and stop as an array */
    CHECK_BODY(&g_model,
               "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'tools':[{'type':"
               "'function','function':{'name':'f','parameters':{'type':'object'}}}],"
               "'tool_choice':{'type':'function','function':{'name':'f'}},'stop':['a','b']}",
               -1, 0,
               "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}],"
               "'tools':[{'name':'f','input_schema':{'type':'object'}}],'tool_choice':{'type':"
               "'tool','name':'f'},'stop_sequences':['a','b']}");
    CHECK_BODY(
        &g_model,
        "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'tool_choice':'none',"
        "'parallel_tool_calls':false}",
        -1, 0,
        "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}],"
        "'tool_choice':{'type':'none'}}");
    CHECK_BODY(&g_model,
               "{'model':'claude-x','messages':[{'role':'user','content':'x'}],"
               "'parallel_tool_calls':false,'tool_choice':'auto'}",
               -1, 0,
               "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}],"
               "'tool_choice':{'type':'auto','disable_parallel_tool_use':true}}");
}

/* max_tokens: the client's, capped at the model's max_output_tokens; else the model's; else
 * the billing default. */
static void test_build_max_tokens(void)
{
    const char *body = "{'model':'claude-x','messages':[{'role':'user','content':'x'}]}";
    CHECK_BODY(&g_model_cap, body, 50, 0,
               "{'model':'claude-up','max_tokens':50,'messages':[{'role':'user','content':'x'}]}");
    CHECK_BODY(
        &g_model_cap, body, 100000, 0,
        "{'model':'claude-up','max_tokens':8192,'messages':[{'role':'user','content':'x'}]}");
    CHECK_BODY(
        &g_model_cap, body, -1, 0,
        "{'model':'claude-up','max_tokens':8192,'messages':[{'role':'user','content':'x'}]}");
    CHECK_BODY(
        &g_model, body, -1, 0,
        "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}]}");
}

/* reasoning_effort -> thinking with a budget below max_tokens (Extended thinking). */
static void test_build_thinking(void)
{
    CHECK_BODY(&g_model_cap,
               "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'reasoning_effort':"
               "'medium','temperature':1,'top_p':0.95}",
               10000, 0,
               "{'model':'claude-up','max_tokens':8192,'messages':[{'role':'user','content':'x'}],"
               "'temperature':1,'top_p':0.95,'thinking':{'type':'enabled','budget_tokens':4096}}");
    CHECK_BODY(&g_model,
               "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'reasoning_effort':"
               "'low'}",
               2000, 0,
               "{'model':'claude-up','max_tokens':2000,'messages':[{'role':'user','content':'x'}],"
               "'thinking':{'type':'enabled','budget_tokens':1024}}");
    /* high's budget cut to fit under max_tokens */
    CHECK_BODY(&g_model_cap,
               "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'reasoning_effort':"
               "'high'}",
               -1, 0,
               "{'model':'claude-up','max_tokens':8192,'messages':[{'role':'user','content':'x'}],"
               "'thinking':{'type':'enabled','budget_tokens':8191}}");
    CHECK_BODY(
        &g_model,
        "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'reasoning_effort':"
        "'none'}",
        -1, 0,
        "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}]}");
    const char *m = "{'model':'claude-x','messages':[{'role':'user','content':'x'}],";
    char b[512];
    snprintf(b, sizeof b, "%s'reasoning_effort':'low'}", m);
    CHECK_REFUSED(&g_model, b, 1024, "reasoning_effort");
    snprintf(b, sizeof b, "%s'reasoning_effort':'extreme'}", m);
    CHECK_REFUSED(&g_model, b, -1, "reasoning_effort");
    snprintf(b, sizeof b, "%s'reasoning_effort':'low','temperature':0.5}", m);
    CHECK_REFUSED(&g_model, b, -1, "temperature");
    snprintf(b, sizeof b, "%s'reasoning_effort':'low','top_p':0.5}", m);
    CHECK_REFUSED(&g_model, b, -1, "top_p");
    snprintf(b, sizeof b, "%s'reasoning_effort':'low','tool_choice':'required'}", m);
    CHECK_REFUSED(&g_model, b, -1, "tool_choice");
}

/* What Anthropic cannot take is refused with the field named, never dropped. */
static void test_build_refusals(void)
{
    static const struct {
        const char *extra, *param;
    } cases[] = {
        {"'n':2", "n"},
        {"'logprobs':true", "logprobs"},
        {"'top_logprobs':3", "top_logprobs"},
        {"'presence_penalty':0.5", "presence_penalty"},
        {"'frequency_penalty':-1", "frequency_penalty"},
        {"'logit_bias':{'50256':-100}", "logit_bias"},
        {"'response_format':{'type':'json_object'}", "response_format"},
        {"'response_format':{'type':'json_schema','json_schema':{'name':'x','schema':{}}}",
         "response_format"},
        {"'audio':{'voice':'alloy','format':'wav'}", "audio"},
        {"'modalities':['text','audio']", "modalities"},
        {"'functions':[{'name':'f'}]", "functions"},
        {"'function_call':'auto'", "function_call"},
        {"'web_search_options':{}", "web_search_options"},
        {"'verbosity':'low'", "verbosity"},
        {"'temperature':1.5", "temperature"},
        {"'temperature':'hot'", "temperature"},
        {"'top_p':2", "top_p"},
        {"'stop':[1]", "stop"},
        {"'tools':[{'type':'custom','custom':{'name':'x'}}]", "tools"},
        {"'tool_choice':'sometimes'", "tool_choice"},
        {"'user':5", "user"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char b[512];
        snprintf(b, sizeof b, "{'model':'claude-x','messages':[{'role':'user','content':'x'}],%s}",
                 cases[i].extra);
        CHECK_REFUSED(&g_model, b, -1, cases[i].param);
    }
    /* in messages */
    static const char *const bad_msgs[] = {
        "[{'role':'assistant','content':null,'tool_calls':[{'id':'c','type':'function',"
        "'function':{'name':'f','arguments':'{not json'}}]}]",
        "[{'role':'assistant','content':null,'tool_calls':[{'id':'c','type':'function',"
        "'function':{'name':'f','arguments':'[1]'}}]}]",
        "[{'role':'user','content':[{'type':'input_audio','input_audio':{'data':'x','format':"
        "'wav'}}]}]",
        "[{'role':'user','content':[{'type':'image_url','image_url':{'url':'ftp://x/y.png'}}]}]",
        "[{'role':'user','content':[{'type':'image_url','image_url':{'url':'data:image/"
        "png,xx'}}]}]",
        "[{'role':'system','content':[{'type':'image_url','image_url':{'url':'https://x/y'}}]}]",
        "[{'role':'function','name':'f','content':'x'}]",
        "[{'role':'tool','content':'x'}]",
        "[{'role':'wizard','content':'x'}]",
        "[{'role':'user'}]",
    };
    for (size_t i = 0; i < sizeof bad_msgs / sizeof *bad_msgs; i++) {
        char b[1024];
        snprintf(b, sizeof b, "{'model':'claude-x','messages':%s}", bad_msgs[i]);
        CHECK_REFUSED(&g_model, b, -1, "messages");
    }
    /* a field that clashes with one the translation writes */
    CHECK_REFUSED(&g_model,
                  "{'model':'claude-x','messages':[{'role':'system','content':'s'},{'role':'user',"
                  "'content':'x'}],'system':'t'}",
                  -1, NULL);
    /* embeddings: Anthropic has none */
    prov_call *c = mkcall(&g_model, "{'model':'claude-x','input':'x'}", -1, 0);
    c->ep = EP_EMBEDDINGS;
    prov_upreq u;
    memset(&u, 0, sizeof u);
    prov_refusal why = {0};
    CHECK_EQ_INT(prov_anthropic.build(c, NULL, &u, &why), -2);
    CHECK_EQ_STR(why.param, "model");
    prov_upreq_free(&u);
    free(c);
}

/* Fields OpenAI does not define go to Anthropic as written (top_k, the test upstream's mock). */
static void test_build_passthrough(void)
{
    CHECK_BODY(&g_model,
               "{'model':'claude-x','top_k':5,'messages':[{'role':'user','content':'x'}],"
               "'mock':{ 'chunks' : 2 }}",
               -1, 0,
               "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'x'}],"
               "'top_k':5,'mock':{ 'chunks' : 2 }}");
    /* unicode and escapes survive */
    CHECK_BODY(
        &g_model,
        "{'model':'claude-x','messages':[{'role':'user','content':'caf\\u00e9 \\'q\\' "
        "\\n\\u0001'}]}",
        -1, 0,
        "{'model':'claude-up','max_tokens':4096,'messages':[{'role':'user','content':'caf\xc3"
        "\xa9 \\'q\\' \\n\\u0001'}]}");
}

/* count_tokens for a Messages client: the client's bytes to /v1/messages/count_tokens with only
 * `model` spliced, its anthropic-version and anthropic-beta (the default version without one),
 * never a stream's accept header, whatever the body says. */
static void test_build_count(void)
{
    prov_call *c = mkcall(&g_model,
                          "{'system':'s','model' : 'claude-x','messages':[{'role':'user',"
                          "'content':'hi'}],'tools':[]}",
                          -1, 1);
    c->dialect = &dialect_anthropic_messages;
    c->anthropic_version = MS_STR_LIT("2099-01-01");
    c->anthropic_beta = MS_STR_LIT("token-counting-2024-11-01,x");
    prov_upreq u;
    memset(&u, 0, sizeof u);
    CHECK(prov_anthropic.build_count != NULL);
    CHECK_EQ_INT(prov_anthropic.build_count(c, &u), 0);
    CHECK_EQ_STR(u.url, "http://up.example/v1/messages/count_tokens");
    CHECK_EQ_INT(u.nheaders, 4);
    if (u.nheaders == 4) {
        CHECK_EQ_STR(u.headers[0], "x-api-key: sk-ant-secret");
        CHECK_EQ_STR(u.headers[1], "anthropic-version: 2099-01-01");
        CHECK_EQ_STR(u.headers[2], "anthropic-beta: token-counting-2024-11-01,x");
        CHECK_EQ_STR(u.headers[3], "content-type: application/json");
    }
    buf_t b;
    buf_init(&b, 0);
    for (size_t i = 0; i < u.niov; i++)
        buf_append(&b, u.iov[i].base, u.iov[i].len);
    buf_append(&b, "", 1);
    CHECK_EQ_STR(b.data, q("{'system':'s','model' : 'claude-up','messages':[{'role':'user',"
                           "'content':'hi'}],'tools':[]}"));
    buf_free(&b);
    prov_upreq_free(&u);

    /* no anthropic-version from the client: the adapter's default, and no beta */
    c->anthropic_version = c->anthropic_beta = (ms_str){"", 0};
    memset(&u, 0, sizeof u);
    CHECK_EQ_INT(prov_anthropic.build_count(c, &u), 0);
    CHECK_EQ_INT(u.nheaders, 3);
    if (u.nheaders == 3) CHECK_EQ_STR(u.headers[1], "anthropic-version: 2023-06-01");
    prov_upreq_free(&u);
    free(c);
    /* the other adapters have no count of their own: the gateway estimates for them */
    CHECK(prov_openai.build_count == NULL);
    CHECK(prov_gemini.build_count == NULL);
    CHECK(prov_echo.build_count == NULL);
}

/* ---- answers ---- */

static int enc_emit(void *ctx, const ev_event *ev)
{
    void **c = ctx;
    return dialect_openai_chat.event(c[0], ev, c[1]);
}

static const dialect_req REQ = {
    .model = "claude-x", .request_id = "req_abc", .created = 1700000000, .include_usage = 1};

/* Decodes a whole answer and encodes it as OpenAI's chat.completion into out. */
static int answer(const char *body, buf_t *out, prov_usage *usage, char *err)
{
    prov_call *c = mkcall(&g_model, "{'model':'claude-x','messages':[]}", -1, 0);
    dialect_enc *e = dialect_openai_chat.enc_new(&REQ);
    void *ctx[2] = {e, NULL};
    ev_sink sink = {enc_emit, ctx};
    void *st = calloc(1, prov_anthropic.state_size);
    prov_anthropic.reset(st, c);
    char b[8192];
    snprintf(b, sizeof b, "%s", q(body));
    err[0] = '\0';
    int rc = prov_anthropic.decode_answer(st, c, ms_str_c(b), &sink, usage, err, 256);
    if (rc == 0) rc = dialect_openai_chat.answer(e, &usage->u, out);
    prov_anthropic.release(st);
    free(st);
    dialect_openai_chat.enc_free(e);
    free(c);
    buf_append(out, "", 1);
    return rc;
}

#define COMPLETION_HEAD                                                                            \
    "{'id':'chatcmpl-abc','object':'chat.completion','created':1700000000,'model':'claude-x',"     \
    "'choices':[{'index':0,'message':{'role':'assistant',"

/* The Messages API's answer with thinking, text and a tool call (as the mock sends it), and the
 * cache usage with its 5m/1h breakdown (Prompt caching). */
static void test_answer_full(void)
{
    buf_t out;
    buf_init(&out, 0);
    prov_usage u = {0};
    char err[256];
    CHECK_EQ_INT(
        answer(
            "{'id':'msg_01','type':'message','role':'assistant','model':'claude-up','content':["
            "{'type':'thinking','thinking':'Let me think','signature':'c2ln'},"
            "{'type':'text','text':'Hello \\'you\\''},"
            "{'type':'tool_use','id':'toolu_01','name':'get_weather','input':{'city':'Paris',"
            "'days':2.5,'opts':[true,null]}}],"
            "'stop_reason':'tool_use','stop_sequence':null,'usage':{'input_tokens':10,"
            "'cache_creation_input_tokens':30,'cache_read_input_tokens':20,'cache_creation':{"
            "'ephemeral_5m_input_tokens':10,'ephemeral_1h_input_tokens':20},'output_tokens':40}}",
            &out, &u, err),
        0);
    CHECK_EQ_STR(out.data,
                 q(COMPLETION_HEAD
                   "'content':'Hello \\'you\\'','refusal':null,'reasoning_content':'Let me think',"
                   "'tool_calls':[{'id':'toolu_01','type':'function','function':{'name':"
                   "'get_weather','arguments':'{\\'city\\':\\'Paris\\',\\'days\\':2.5,\\'opts\\':"
                   "[true,null]}'}}]},'logprobs':null,'finish_reason':'tool_calls'}],'usage':{"
                   "'prompt_tokens':60,'completion_tokens':40,'total_tokens':100,"
                   "'prompt_tokens_details':{'cached_tokens':20},'completion_tokens_details':{"
                   "'reasoning_tokens':0}}}"));
    CHECK_EQ_INT(u.known, 1);
    CHECK_EQ_INT(u.u.input, 10);
    CHECK_EQ_INT(u.u.cached_input, 20);
    CHECK_EQ_INT(u.u.cache_write, 10);
    CHECK_EQ_INT(u.u.cache_write_1h, 20);
    CHECK_EQ_INT(u.u.output, 40);
    CHECK_EQ_INT(u.u.reasoning, 0);
    buf_free(&out);
}

/* stop reasons; cache writes without the breakdown are 5-minute; a breakdown that leaves some
 * out counts the rest as 5-minute. */
static void test_answer_stops_and_cache(void)
{
    static const struct {
        const char *reason, *finish;
    } stops[] = {{"end_turn", "stop"},          {"stop_sequence", "stop"},
                 {"max_tokens", "length"},      {"tool_use", "tool_calls"},
                 {"refusal", "content_filter"}, {"pause_turn", "stop"}};
    for (size_t i = 0; i < sizeof stops / sizeof *stops; i++) {
        char body[512], want[160];
        snprintf(body, sizeof body,
                 "{'id':'m','type':'message','content':[{'type':'text','text':'a'}],"
                 "'stop_reason':'%s','usage':{'input_tokens':1,'cache_creation_input_tokens':30,"
                 "'output_tokens':2}}",
                 stops[i].reason);
        buf_t out;
        buf_init(&out, 0);
        prov_usage u = {0};
        char err[256];
        CHECK_EQ_INT(answer(body, &out, &u, err), 0);
        snprintf(want, sizeof want, "'finish_reason':'%s'", stops[i].finish);
        CHECK(strstr(out.data, q(want)) != NULL);
        CHECK_EQ_INT(u.u.cache_write, 30);
        CHECK_EQ_INT(u.u.cache_write_1h, 0);
        buf_free(&out);
    }
    buf_t out;
    buf_init(&out, 0);
    prov_usage u = {0};
    char err[256];
    CHECK_EQ_INT(answer("{'id':'m','content':[],'stop_reason':'end_turn','usage':{'input_tokens':"
                        "1,'cache_creation_input_tokens':30,'cache_creation':{"
                        "'ephemeral_5m_input_tokens':5,'ephemeral_1h_input_tokens':20},"
                        "'output_tokens':0}}",
                        &out, &u, err),
                 0);
    CHECK_EQ_INT(u.u.cache_write, 10);
    CHECK_EQ_INT(u.u.cache_write_1h, 20);
    /* empty content: content "" (not null: no tool calls) */
    CHECK(strstr(out.data, q("'content':'','refusal':null")) != NULL);
    buf_free(&out);
    /* no usage: unknown (the engine estimates) */
    buf_init(&out, 0);
    u = (prov_usage){0};
    CHECK_EQ_INT(
        answer("{'id':'m','content':[{'type':'text','text':'a'}],'stop_reason':'end_turn'}", &out,
               &u, err),
        0);
    CHECK_EQ_INT(u.known, 0);
    buf_free(&out);
    /* not a message */
    buf_init(&out, 0);
    CHECK_EQ_INT(answer("{'type':'error'}", &out, &u, err), -1);
    CHECK(strstr(err, "content") != NULL);
    buf_free(&out);
}

/* The pass-through (a Messages API client to an Anthropic deployment) forwards the answer as it
 * came and reads only its usage, by scanning: the same counts as the decoder's tree for every
 * answer the decoder takes, and the same refusal of what is not a message. */
static void test_passthrough_answer(void)
{
    static const char *const bodies[] = {
        "{'id':'msg_01','type':'message','content':[{'type':'text','text':'hi'}],'usage':{"
        "'input_tokens':10,'cache_creation_input_tokens':30,'cache_read_input_tokens':20,"
        "'cache_creation':{'ephemeral_5m_input_tokens':10,'ephemeral_1h_input_tokens':20},"
        "'output_tokens':40}}",
        /* a breakdown that leaves some out; no breakdown */
        "{'content':[],'usage':{'input_tokens':1,'cache_creation_input_tokens':30,"
        "'cache_creation':{'ephemeral_5m_input_tokens':5,'ephemeral_1h_input_tokens':20},"
        "'output_tokens':0}}",
        "{'content':[],'usage':{'input_tokens':1,'cache_creation_input_tokens':30,"
        "'output_tokens':2}}",
        /* escaped names, a repeated one (the last counts), negatives and fractions as 0 */
        "{'content':[],'usage':{'input\\u005ftokens':7,'output_tokens':1,'output_tokens':3,"
        "'cache_read_input_tokens':-4,'cache_creation_input_tokens':2.5}}",
        /* no usage, a usage that is not an object, a usage without counts */
        "{'content':[{'type':'text','text':'a'}],'stop_reason':'end_turn'}",
        "{'content':[],'usage':null}",
        "{'content':[],'usage':{'server_tool_use':{'web_search_requests':1}}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        buf_t out;
        buf_init(&out, 0);
        prov_usage want = {0}, got = {0};
        char err[256];
        CHECK_EQ_INT(answer(bodies[i], &out, &want, err), 0);
        buf_free(&out);
        prov_call *c = mkcall(&g_model, "{'model':'claude-x','messages':[]}", -1, 0);
        char b[1024];
        snprintf(b, sizeof b, "%s", q(bodies[i]));
        CHECK_EQ_INT(prov_anthropic.response(NULL, c, ms_str_c(b), NULL, &got, err, sizeof err), 0);
        CHECK_EQ_INT(got.known, want.known);
        CHECK(memcmp(&got.u, &want.u, sizeof got.u) == 0);
        free(c);
    }
    /* what is not a message with a content array, or not JSON, is refused */
    static const char *const bad[] = {"{'type':'error'}", "{'content':{}}", "[]",
                                      "{'content':[],'usage':{'input_tokens':1}",
                                      "{'content':[{'type':'text','text':'a\\x'}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        prov_call *c = mkcall(&g_model, "{'model':'claude-x','messages':[]}", -1, 0);
        prov_usage got = {0};
        char err[256] = "", b[256];
        snprintf(b, sizeof b, "%s", q(bad[i]));
        CHECK_EQ_INT(prov_anthropic.response(NULL, c, ms_str_c(b), NULL, &got, err, sizeof err),
                     -1);
        CHECK(strstr(err, "content") != NULL);
        CHECK_EQ_INT(got.known, 0);
        free(c);
    }
}

/* ---- streams ---- */

typedef struct stream_run {
    prov_call *c;
    void *st;
    dialect_enc *e;
    buf_t out;
    prov_usage usage;
    int done, error;
    char err[256];
} stream_run;

static void run_open(stream_run *r)
{
    memset(r, 0, sizeof *r);
    r->c = mkcall(&g_model, "{'model':'claude-x','messages':[],'stream':true}", -1, 1);
    r->st = calloc(1, prov_anthropic.state_size);
    prov_anthropic.reset(r->st, r->c);
    r->e = dialect_openai_chat.enc_new(&REQ);
    buf_init(&r->out, 0);
}

/* Feeds one named event; returns decode_event's result. */
static int feed(stream_run *r, const char *name, const char *data)
{
    char d[4096];
    snprintf(d, sizeof d, "%s", q(data));
    sse_event ev = {.event = ms_str_c(name), .data = ms_str_c(d)};
    void *ctx[2] = {r->e, &r->out};
    ev_sink sink = {enc_emit, ctx};
    return prov_anthropic.decode_event(r->st, r->c, &ev, &sink, &r->usage, &r->done, &r->error,
                                       r->err, sizeof r->err);
}

static void run_close(stream_run *r)
{
    prov_anthropic.release(r->st);
    free(r->st);
    dialect_openai_chat.enc_free(r->e);
    buf_free(&r->out);
    free(r->c);
}

#define CHUNK_HEAD                                                                                 \
    "data: {'id':'chatcmpl-abc','object':'chat.completion.chunk','created':1700000000,"            \
    "'model':'claude-x','choices':"
#define DELTA(d) CHUNK_HEAD "[{'index':0,'delta':" d ",'logprobs':null,'finish_reason':null}]}\n\n"

/* ---- a translated stream's shape (anthropic.c, "The stream's shape, decoding") ---- */

/* The decoder's switch for its shape, and its count of events read through it (tests only). */
extern int anthropic_dec_shapes;
uint32_t anthropic_dec_shape_hits(const void *st);

/* Decodes evs[0..n) (name, data) with the shape on or off into a record of what the client was
 * sent, each event's result and the counts; returns the shape's hits. */
static uint32_t shaped_record(int on, const char *const (*evs)[2], size_t n, buf_t *rec)
{
    stream_run r;
    anthropic_dec_shapes = on;
    run_open(&r);
    for (size_t i = 0; i < n; i++) {
        r.err[0] = '\0';
        int rc = feed(&r, evs[i][0], evs[i][1]);
        buf_printf(rec, "rc=%d done=%d error=%d err=%s bytes=%lld known=%d out=%lld\n", rc, r.done,
                   r.error, r.err, (long long)r.usage.streamed_bytes, r.usage.known,
                   (long long)r.usage.u.output);
    }
    buf_append(rec, r.out.data, r.out.len);
    uint32_t hits = anthropic_dec_shape_hits(r.st);
    run_close(&r);
    anthropic_dec_shapes = 1;
    return hits;
}

/* Deltas that differ only in their text are read through the shape after the first, and give
 * the client what the full path gives; what the text alone does not decide (an empty text,
 * another block, another kind, an event of another name, another member) takes the full path. */
static void test_stream_shape(void)
{
#define TD(i, t)                                                                                   \
    "{'type':'content_block_delta','index':" #i ",'delta':{'type':'text_delta','text':'" t "'}}"
#define KD(i, t)                                                                                   \
    "{'type':'content_block_delta','index':" #i ",'delta':{'type':'thinking_delta','thinking':'" t \
    "'}}"
    static const char *const evs[][2] = {
        {"message_start", "{'type':'message_start','message':{'id':'msg_1','usage':{"
                          "'input_tokens':5,'output_tokens':1}}}"},
        {"content_block_start",
         "{'type':'content_block_start','index':0,'content_block':{'type':'thinking',"
         "'thinking':''}}"},
        {"content_block_delta", KD(0, "Let")},
        {"content_block_delta", KD(0, " me")},
        {"content_block_delta", KD(0, " th\\nink \\u00e9")},
        {"content_block_delta", KD(0, "")},
        {"content_block_delta", KD(0, "!")},
        {"content_block_delta",
         "{'type':'content_block_delta','index':0,'delta':{'type':'signature_delta',"
         "'signature':'c2ln'}}"},
        {"content_block_stop", "{'type':'content_block_stop','index':0}"},
        {"content_block_start", "{'type':'content_block_start','index':1,'content_block':{"
                                "'type':'text','text':''}}"},
        {"content_block_delta", TD(1, "Hel")},
        {"ping", "{'type':'ping'}"},
        {"content_block_delta", TD(1, "lo")},
        {"content_block_delta", TD(1, " \\'you\\'")},
        {"error", TD(1, "named error")},
        {"content_block_delta", TD(1, "x\\u0000y")},
        {"content_block_delta", TD(2, "another block")},
        {"content_block_delta", TD(1, "back")},
        {"content_block_delta",
         "{'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':'m',"
         "'extra':1}}"},
        {"content_block_delta", TD(1, "end")},
        {"content_block_stop", "{'type':'content_block_stop','index':1}"},
        {"message_delta", "{'type':'message_delta','delta':{'stop_reason':'end_turn'},"
                          "'usage':{'output_tokens':12}}"},
        {"message_stop", "{'type':'message_stop'}"},
    };
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    uint32_t hits = shaped_record(1, evs, sizeof evs / sizeof *evs, &a);
    shaped_record(0, evs, sizeof evs / sizeof *evs, &b);
    buf_append(&a, "", 1);
    buf_append(&b, "", 1);
    CHECK_EQ_STR(a.data, b.data);
    CHECK(hits >= 6);
    buf_free(&a);
    buf_free(&b);
#undef TD
#undef KD
}

/* The event flow of Streaming (message_start, blocks with ping, deltas incl. signature_delta,
 * message_delta with the cumulative output_tokens, message_stop) -> OpenAI's chunks: role first,
 * reasoning, content, tool calls with their index, a tool without arguments getting {}, the
 * finish, the usage chunk with cached tokens, [DONE]. */
static void test_stream_full(void)
{
    stream_run r;
    run_open(&r);
    static const char *const evs[][2] = {
        {"message_start",
         "{'type':'message_start','message':{'id':'msg_1','type':'message','role':'assistant',"
         "'content':[],'model':'claude-up','stop_reason':null,'stop_sequence':null,'usage':{"
         "'input_tokens':25,'cache_creation_input_tokens':0,'cache_read_input_tokens':100,"
         "'output_tokens':1}}}"},
        {"content_block_start",
         "{'type':'content_block_start','index':0,'content_block':{'type':'thinking',"
         "'thinking':'','signature':''}}"},
        {"ping", "{'type': 'ping'}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':0,'delta':{'type':'thinking_delta','thinking':"
         "'Hmm'}}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':0,'delta':{'type':'signature_delta','signature':"
         "'c2ln'}}"},
        {"content_block_stop", "{'type':'content_block_stop','index':0}"},
        {"content_block_start",
         "{'type':'content_block_start','index':1,'content_block':{'type':'text','text':''}}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':1,'delta':{'type':'text_delta','text':'Hi\\n'}}"},
        {"content_block_stop", "{'type':'content_block_stop','index':1}"},
        {"content_block_start",
         "{'type':'content_block_start','index':2,'content_block':{'type':'tool_use','id':"
         "'toolu_1','name':'get_weather','input':{}}}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
         "'partial_json':''}}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
         "'partial_json':'{\\'city\\':'}}"},
        {"content_block_delta",
         "{'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
         "'partial_json':'\\'Paris\\'}'}}"},
        {"content_block_stop", "{'type':'content_block_stop','index':2}"},
        {"content_block_start",
         "{'type':'content_block_start','index':3,'content_block':{'type':'tool_use','id':"
         "'toolu_2','name':'now','input':{}}}"},
        {"content_block_stop", "{'type':'content_block_stop','index':3}"},
        {"message_delta",
         "{'type':'message_delta','delta':{'stop_reason':'tool_use','stop_sequence':null},"
         "'usage':{'output_tokens':15}}"},
        {"message_stop", "{'type':'message_stop'}"},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
        CHECK_EQ_INT(feed(&r, evs[i][0], evs[i][1]), 0);
        CHECK_EQ_INT(r.done, i + 1 == sizeof evs / sizeof *evs);
    }
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(r.usage.known, 1);
    CHECK_EQ_INT(r.usage.u.input, 25);
    CHECK_EQ_INT(r.usage.u.cached_input, 100);
    CHECK_EQ_INT(r.usage.u.output, 15);
    CHECK_EQ_INT(r.usage.streamed_bytes, 3 + 3 + 8 + 8);
    CHECK_EQ_INT(
        dialect_openai_chat.stream_end(r.e, &r.usage.u, (ms_str){0}, "0.00123", NULL, &r.out), 0);
    buf_append(&r.out, "", 1);
    const char *want = q(
        DELTA("{'role':'assistant','content':''}") DELTA("{'reasoning_content':'Hmm'}")
            DELTA("{'content':'Hi\\n'}") DELTA(
                "{'tool_calls':[{'index':0,'id':'toolu_1','type':'function','function':{'name':"
                "'get_weather','arguments':''}}]}")
                DELTA("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'city\\':'}}]}")
                    DELTA("{'tool_calls':[{'index':0,'function':{'arguments':'\\'Paris\\'}'}}]}")
                        DELTA("{'tool_calls':[{'index':1,'id':'toolu_2','type':'function',"
                              "'function':{'name':'now','arguments':''}}]}")
                            DELTA("{'tool_calls':[{'index':1,'function':{'arguments':'{}'}}]}")
                                CHUNK_HEAD "[{'index':0,'delta':{},'logprobs':null,"
                                           "'finish_reason':'tool_calls'}]}\n\n" CHUNK_HEAD
                                           "[],'usage':{'prompt_tokens':125,'completion_tokens':15,"
                                           "'total_tokens':140,'prompt_tokens_details':{"
                                           "'cached_tokens':100},'completion_tokens_details':{"
                                           "'reasoning_tokens':0},'cost':0.00123}}\n\n"
                                           "data: [DONE]\n\n");
    CHECK_EQ_STR(r.out.data, want);
    run_close(&r);
}

/* An in-band error (Errors: overloaded_error mid-stream) stops the stream with its message;
 * usage stays unknown (message_start's output count is a placeholder), text bytes counted. */
static void test_stream_error(void)
{
    stream_run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, "message_start",
                      "{'type':'message_start','message':{'id':'msg_2','content':[],'usage':{"
                      "'input_tokens':5,'output_tokens':1}}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "content_block_start",
                      "{'type':'content_block_start','index':0,'content_block':{'type':'text',"
                      "'text':''}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "content_block_delta",
                      "{'type':'content_block_delta','index':0,'delta':{'type':'text_delta',"
                      "'text':'tok0 '}}"),
                 0);
    CHECK_EQ_INT(
        feed(&r, "error",
             "{'type':'error','error':{'type':'overloaded_error','message':'Overloaded'}}"),
        0);
    CHECK_EQ_INT(r.error, 1);
    CHECK_EQ_STR(r.err, "Overloaded");
    CHECK_EQ_INT(r.usage.known, 0);
    CHECK_EQ_INT(r.usage.streamed_bytes, 5);
    run_close(&r);
}

/* Bounded state: block indexes past the cap, too many tool calls, tool input on a text block,
 * invalid JSON: each fails the stream with a message. A new attempt starts clean. */
static void test_stream_limits(void)
{
    stream_run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, "content_block_start",
                      "{'type':'content_block_start','index':256,'content_block':{'type':'text',"
                      "'text':''}}"),
                 -1);
    CHECK(strstr(r.err, "more than 256 content blocks") != NULL);
    CHECK_EQ_INT(feed(&r, "x", "{not json"), -1);
    CHECK_EQ_INT(feed(&r, "content_block_start",
                      "{'type':'content_block_start','index':0,'content_block':{'type':'text',"
                      "'text':''}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "content_block_delta",
                      "{'type':'content_block_delta','index':0,'delta':{'type':'input_json_delta',"
                      "'partial_json':'{}'}}"),
                 -1);
    for (int i = 0; i < 129; i++) {
        char d[256];
        snprintf(d, sizeof d,
                 "{'type':'content_block_start','index':%d,'content_block':{'type':'tool_use',"
                 "'id':'t%d','name':'f','input':{}}}",
                 i + 1, i);
        int rc = feed(&r, "content_block_start", d);
        CHECK_EQ_INT(rc, i < 128 ? 0 : -1);
    }
    CHECK(strstr(r.err, "more than 128 tool calls") != NULL);
    /* the engine's retry: release, zero, reset; tool indexes start again at 0 */
    prov_anthropic.release(r.st);
    memset(r.st, 0, prov_anthropic.state_size);
    prov_anthropic.reset(r.st, r.c);
    buf_reset(&r.out);
    dialect_openai_chat.enc_free(r.e);
    r.e = dialect_openai_chat.enc_new(&REQ);
    CHECK_EQ_INT(feed(&r, "content_block_start",
                      "{'type':'content_block_start','index':0,'content_block':{'type':'tool_use',"
                      "'id':'t','name':'f','input':{}}}"),
                 0);
    buf_append(&r.out, "", 1);
    CHECK(strstr(r.out.data, q("'tool_calls':[{'index':0,'id':'t'")) != NULL);
    /* unknown events and comments are skipped */
    CHECK_EQ_INT(feed(&r, "", ""), 0);
    CHECK_EQ_INT(feed(&r, "future_event", "{'type':'future_event','x':1}"), 0);
    run_close(&r);
}

/* message_delta's counts are cumulative: the last one wins, and later input counts replace the
 * start's. No usage at all leaves it unknown. */
static void test_stream_usage(void)
{
    stream_run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, "message_start",
                      "{'type':'message_start','message':{'id':'m','content':[],'usage':{"
                      "'input_tokens':5,'cache_creation_input_tokens':40,'cache_read_input_tokens'"
                      ":0,'cache_creation':{'ephemeral_5m_input_tokens':10,"
                      "'ephemeral_1h_input_tokens':30},'output_tokens':1}}}"),
                 0);
    CHECK_EQ_INT(r.usage.known, 0);
    CHECK_EQ_INT(feed(&r, "message_delta",
                      "{'type':'message_delta','delta':{'stop_reason':'max_tokens'},'usage':{"
                      "'output_tokens':7}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "message_delta",
                      "{'type':'message_delta','delta':{},'usage':{'output_tokens':9,"
                      "'input_tokens':6}}"),
                 0);
    CHECK_EQ_INT(r.usage.known, 1);
    CHECK_EQ_INT(r.usage.u.input, 6);
    CHECK_EQ_INT(r.usage.u.cache_write, 10);
    CHECK_EQ_INT(r.usage.u.cache_write_1h, 30);
    CHECK_EQ_INT(r.usage.u.output, 9);
    buf_append(&r.out, "", 1);
    CHECK(strstr(r.out.data, q("'finish_reason':'length'")) != NULL);
    run_close(&r);

    run_open(&r);
    CHECK_EQ_INT(feed(&r, "message_start", "{'type':'message_start','message':{'id':'m'}}"), 0);
    CHECK_EQ_INT(
        feed(&r, "message_delta", "{'type':'message_delta','delta':{'stop_reason':'end_turn'}}"),
        0);
    CHECK_EQ_INT(feed(&r, "message_stop", "{'type':'message_stop'}"), 0);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(r.usage.known, 0);
    run_close(&r);
}

/* Errors: the envelope's message; anything else, a printable excerpt. */
static void test_error_message(void)
{
    char out[256];
    const char *env = q("{'type':'error','error':{'type':'overloaded_error','message':"
                        "'Overloaded'},'request_id':'req_1'}");
    prov_anthropic.error_message(ms_str_c(env), out, sizeof out);
    CHECK_EQ_STR(out, "Overloaded");
    prov_anthropic.error_message(MS_STR_LIT("<html>bad\ngateway</html>"), out, sizeof out);
    CHECK_EQ_STR(out, "<html>bad gateway</html>");
}

/* The usual whole answer read by the scan (anthropic.c, af_answer) against the tree
 * (anthropic_dec_answer_fast off): the same code, events and usage. Returns whether the scan
 * read it, or -1 when they differ. */
extern int anthropic_dec_answer_fast;
int anthropic_answer_scanned(const void *st);
static int decode_record(const char *body, size_t n, buf_t *rec, prov_usage *u, int *scanned)
{
    prov_call *c = mkcall(&g_model, "{'model':'claude-x','messages':[]}", -1, 0);
    ev_sink sink = {ev_record, rec};
    void *st = calloc(1, prov_anthropic.state_size);
    prov_anthropic.reset(st, c);
    char err[256] = "";
    memset(u, 0, sizeof *u);
    int rc = prov_anthropic.decode_answer(st, c, (ms_str){body, n}, &sink, u, err, sizeof err);
    *scanned = anthropic_answer_scanned(st);
    prov_anthropic.release(st);
    free(st);
    free(c);
    return rc;
}

static int same_answer(const char *body, size_t n)
{
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    prov_usage ua, ub;
    int sa, sb;
    anthropic_dec_answer_fast = 0;
    int rb = decode_record(body, n, &b, &ub, &sb);
    anthropic_dec_answer_fast = 1;
    int ra = decode_record(body, n, &a, &ua, &sa);
    buf_printf(&a, "(%d %d %lld %lld)", ra, ua.known, (long long)ua.u.cache_write,
               (long long)ua.u.cache_write_1h);
    buf_printf(&b, "(%d %d %lld %lld)", rb, ub.known, (long long)ub.u.cache_write,
               (long long)ub.u.cache_write_1h);
    const char *evs[] = {body};
    if (!ev_records_same(&a, &b, "answer", evs, 1)) return -1;
    return sa;
}

static void test_answer_scan_same_as_tree(void)
{
    static const struct {
        const char *body;
        int scanned;
    } cases[] = {
        {"{'id':'msg_1','type':'message','role':'assistant','model':'c','content':[{'type':"
         "'text','text':'Hello'}],'stop_reason':'end_turn','stop_sequence':null,'usage':{"
         "'input_tokens':12,'output_tokens':3}}",
         1},
        {"{'content':[{'text':'a\\u00e9\\n','type':'text'},{'type':'text','text':''},{'type':"
         "'text','text':'b'}],'id':'m','stop_reason':'max_tokens','usage':{'input_tokens':1,"
         "'cache_read_input_tokens':5,'cache_creation_input_tokens':9,'cache_creation':{"
         "'ephemeral_5m_input_tokens':2,'ephemeral_1h_input_tokens':3},'output_tokens':-4,"
         "'service_tier':'standard','server_tool_use':{'web_search_requests':0}}}",
         1},
        {"{'content':[],'stop_reason':'refusal','usage':{'input_tokens':1.5}}", 1},
        {"{'content':[{'type':'text','text':'x'}],'stop_reason':'model_context_window_exceeded',"
         "'usage':null,'id':7,'container':{'id':'c','expires_at':'t'}}",
         1},
        {"{'content':[{'type':'text','text':'x'}],'stop_reason':'tool_use','usage':{}}", 1},
        {"{'content':[{'type':'text','text':'x'}],'stop_reason':12}", 1},
        {"{'content':[{'type':'text','text':'x'}],'stop_reason':'a-reason-longer-than-forty-"
         "bytes-that-no-one-knows'}",
         1},
        /* the tree's */
        {"{'content':[{'type':'tool_use','id':'t','name':'f','input':{}}]}", 0},
        {"{'content':[{'type':'thinking','thinking':'h','signature':'s'}]}", 0},
        {"{'content':[{'type':'text','text':'x','citations':null}]}", 0},
        {"{'content':[{'type':'text','text':'x'}],'content':[]}", 0},
        {"{'content':[{'type':'text','type':'text','text':'x'}]}", 0},
        {"{'content':[{'type':'text','text':'x'}],'usage':{'input_tokens':1,'input_tokens':2}}", 0},
        {"{'content':[{'type':'text','text':'x'}],'n':1e999}", 0},
        {"{'content':[{'type':'text','text':'x'}],'usage':{'output_tokens':1e999}}", 0},
        {"{'content':[{'type':'text','text':'x'}],'id':'m\\u0041'}", 0},
        {"{'content':[{'type':'text','text':'x'}],'stop_reason':'end\\u005fturn'}", 0},
        {"{'con\\u0074ent':[{'type':'text','text':'x'}]}", 0},
        {"{'content':{}}", 0},
        {"[1]", 0},
        {"{'content':[{'type':'text','text':'x'}]", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char b[2048];
        snprintf(b, sizeof b, "%s", q(cases[i].body));
        int got = same_answer(b, strlen(b));
        if (got != cases[i].scanned) fprintf(stderr, "# case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].scanned);
    }
}

/* Every one-byte change of two usual answers: the scan and the tree agree. */
static void answer_changed(const char *m, size_t i, size_t k, void *ud)
{
    mutate_count *c = ud;
    (void)i;
    (void)k;
    int got = same_answer(m, strlen(m));
    c->runs++;
    c->failed += got < 0;
    c->taken += got == 1;
}

static void test_answer_scan_mutated(void)
{
    static const char *const bases[] = {
        "{'id':'msg_1','type':'message','content':[{'type':'text','text':'H\\u00e9'},{'type':"
        "'text','text':'b'}],'stop_reason':'end_turn','usage':{'input_tokens':12,"
        "'output_tokens':3,'cache_creation':{'ephemeral_5m_input_tokens':2}}}",
        "{'content':[{'text':'x','type':'text'}],'stop_reason':null,'model':'m','usage':{"
        "'cache_read_input_tokens':1,'output_tokens':7}}",
    };
    mutate_count c = {0};
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        char base[1024];
        snprintf(base, sizeof base, "%s", q(bases[b]));
        mutate_each(base, "\"\\{}[],:0 1atu-.e", answer_changed, &c);
    }
    CHECK(c.runs > 3000);
    CHECK(c.taken > 300);
    CHECK_EQ_INT(c.failed, 0);
}

/* The usual request written token by token (anthropic.c, ab_build) against the tree path
 * (anthropic_build_fast off): the same code, bytes and refusal. Returns whether the token path
 * wrote it, or -1 when they differ. body is JSON as it is (no quote()). */
extern int anthropic_build_fast;
int anthropic_request_written(const void *st);
static int build_raw(const char *body, int64_t max_tokens, int stream, int64_t bound, buf_t *out,
                     int *written)
{
    prov_call *c = calloc(1, sizeof *c);
    c->ep = EP_CHAT;
    c->dialect = &dialect_openai_chat;
    c->model = &g_model;
    c->dep = &g_dep;
    c->body = ms_str_c(body);
    int n = jscan_object(body, strlen(body), c->members, PROV_MAX_MEMBERS, NULL);
    c->nmembers = n > 0 ? (size_t)n : 0;
    c->valid = c->body;
    c->max_tokens = max_tokens;
    c->output_bound = bound;
    c->stream = stream;
    void *st = calloc(1, prov_anthropic.state_size);
    prov_anthropic.reset(st, c);
    prov_upreq u;
    memset(&u, 0, sizeof u);
    prov_refusal why;
    memset(&why, 0, sizeof why);
    int rc = prov_anthropic.build(c, st, &u, &why);
    buf_printf(out, "%d|%s|%s|", rc, rc == -2 && why.param ? why.param : "", u.url);
    for (size_t i = 0; rc == 0 && i < u.niov; i++)
        buf_append(out, u.iov[i].base, u.iov[i].len);
    *written = anthropic_request_written(st);
    prov_upreq_free(&u);
    prov_anthropic.release(st);
    free(st);
    free(c);
    return rc;
}

static int same_build(const char *body, int64_t max_tokens, int stream, int64_t bound)
{
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    int wa, wb;
    anthropic_build_fast = 0;
    build_raw(body, max_tokens, stream, bound, &b, &wb);
    anthropic_build_fast = 1;
    build_raw(body, max_tokens, stream, bound, &a, &wa);
    int same = a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
    if (!same) {
        buf_append(&a, "", 1);
        buf_append(&b, "", 1);
        fprintf(stderr, "# differs: %s\n#  tree:  %s\n#  token: %s\n", body, b.data, a.data);
    }
    buf_free(&a);
    buf_free(&b);
    return same ? wa : -1;
}

static void test_build_token_same_as_tree(void)
{
    static const struct {
        const char *body;
        int written;
    } cases[] = {
        {"{'model':'claude-x','messages':[{'role':'user','content':'hi'}]}", 1},
        {"{'messages':[{'content':'be brief','role':'system'},{'role':'user','content':'a'},"
         "{'role':'developer','content':'and kind'},{'role':'user','content':'b'},{'role':"
         "'assistant','content':'c'},{'role':'assistant','content':''},{'role':'user','content':"
         "'d'}],'model':'claude-x'}",
         1},
        {"{'model':'claude-x','messages':[{'role':'assistant','content':'x'},{'role':'system',"
         "'content':''},{'role':'user','content':'y'}],'temperature':0.70,'top_p':1,"
         "'max_tokens':55,'stream':true,'stream_options':{'include_usage':true},'user':'u-1',"
         "'store':false,'metadata':{'a':'b'},'seed':3}",
         1},
        {"{'model':'claude-x','messages':[{'role':'user','content':'caf\\u00e9 \\n\\t\\\"q\\\" "
         "\\/ \\ud83d\\ude00'}],'temperature':1e-5,'top_p':0}",
         1},
        {"{'model':'claude-x','messages':[{'role':'user','content':'n'}],'top_k':5,"
         "'anthropic_beta': [ 1 , 2.50 ],'container':null}",
         0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'n'}],'top_k':5,"
         "'anthropic_beta': [ 1 , 2.50 ], 'x' : {'y':'z'}}",
         1},
        /* the tree's */
        {"{'model':'claude-x','messages':[{'role':'system','content':'only'}]}", 0},
        {"{'model':'claude-x','messages':[]}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'temperature':1.5}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'temperature':-0.1}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'temperature':'x'}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'n':1}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'stop':'x'}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'system':'x'}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'thinking':{}}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'user':3}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'user':null}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],"
         "'safety_identifier':'s'}",
         0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'top_p':1,'top_p':1}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a'}],'k':1e999}", 0},
        {"{'model':'claude-x','messages':[{'role':'user','content':[{'type':'text','text':"
         "'a'}]}]}",
         0},
        {"{'model':'claude-x','messages':[{'role':'user','content':'a','name':'n'}]}", 0},
        {"{'model':'claude-x','messages':[{'role':'tool','content':'a','tool_call_id':'t'}]}", 0},
        {"{'model':'claude-x','\\u006dessages':[{'role':'user','content':'a'}]}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char b[2048];
        snprintf(b, sizeof b, "%s", q(cases[i].body));
        int got = same_build(b, i % 3 ? -1 : 77, (int)(i & 1), i % 4 ? 0 : 300);
        if (got != cases[i].written) fprintf(stderr, "# case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].written);
    }
}

/* Every one-byte change of two usual requests (that still parses): both paths agree. */
static void request_changed(const char *m, size_t i, size_t k, void *ud)
{
    mutate_count *c = ud;
    jscan_member mm[PROV_MAX_MEMBERS];
    if (jscan_object(m, strlen(m), mm, PROV_MAX_MEMBERS, NULL) < 0) return;
    int got = same_build(m, (int64_t)(i % 3) - 1, (int)(k & 1), 0);
    c->runs++;
    c->failed += got < 0;
    c->taken += got == 1;
}

static void test_build_token_mutated(void)
{
    static const char *const bases[] = {
        "{'model':'claude-x','messages':[{'role':'system','content':'s\\n'},{'role':'user',"
        "'content':'h\\u00e9'},{'role':'user','content':'u2'},{'role':'assistant','content':"
        "'a'}],'temperature':0.5,'max_tokens':7,'k':[1,2.0]}",
        "{'messages':[{'content':'x','role':'user'},{'role':'user','content':''}],'top_p':1,"
        "'stream':false,'user':'u','store':true}",
    };
    mutate_count c = {0};
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        char base[1024];
        snprintf(base, sizeof base, "%s", q(bases[b]));
        mutate_each(base, "\"\\{}[],:0 1atu-.en", request_changed, &c);
    }
    CHECK(c.runs > 500);
    CHECK(c.taken > 100);
    CHECK_EQ_INT(c.failed, 0);
}

int main(void)
{
    RUN(test_build_plain);
    RUN(test_build_merge_images);
    RUN(test_build_tools);
    RUN(test_build_max_tokens);
    RUN(test_build_thinking);
    RUN(test_build_refusals);
    RUN(test_build_passthrough);
    RUN(test_build_count);
    RUN(test_answer_full);
    RUN(test_answer_stops_and_cache);
    RUN(test_passthrough_answer);
    RUN(test_stream_full);
    RUN(test_stream_error);
    RUN(test_stream_limits);
    RUN(test_stream_usage);
    RUN(test_stream_shape);
    RUN(test_error_message);
    RUN(test_answer_scan_same_as_tree);
    RUN(test_answer_scan_mutated);
    RUN(test_build_token_same_as_tree);
    RUN(test_build_token_mutated);
    TAP_DONE();
}
