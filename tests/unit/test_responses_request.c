/*
 * Golden tests of the OpenAI Responses dialect's request side
 * (src/dialect/openai_responses_request.c): Responses bodies parsed into the gateway's request
 * (errors with their code and param, model resolution, max_output_tokens, stream, store and what
 * needs stored state), and rewritten into the exact OpenAI chat body the adapters build from
 * (instructions, string and item inputs, images, a function call round trip, tools and
 * tool_choice, text.format, reasoning.effort, stream; what is dropped; refusals naming their
 * field). Last, every rewrite is a body the gateway's own OpenAI parser accepts.
 *
 * Fixtures follow OpenAI's Responses reference (https://platform.openai.com/docs/api-reference/
 * responses/create) and its function calling, vision and structured outputs guides. JSON is
 * written with ' for " (q() swaps them) so the goldens stay readable.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/responses_request.h"
#include "providers/provider.h"
#include "tap.h"
#include "quote.h"

static cfg_provider g_prov[2] = {
    {.name = (char *)"oai",
     .kind = PROV_OPENAI,
     .base_url = (char *)"http://o.example",
     .api_key = (char *)"k",
     .enabled = 1},
    {.name = (char *)"off", .kind = PROV_OPENAI, .api_key_var = "OFF_KEY"},
};
static cfg_deployment g_dep[1] = {{.provider = &g_prov[0], .model = (char *)"gpt-up", .weight = 1}};
static cfg_model g_models[3] = {
    {.name = (char *)"gpt-x", .deployments = &g_dep[0], .ndeployments = 1},
    {.name = (char *)"nokey", .unconfigured = &g_prov[1]},
    {.name = (char *)"gone"},
};
static cfg_t g_cfg = {.models = g_models, .nmodels = 3, .default_max_output_tokens = 4096};

static char g_body[16384];

/* A call whose body is body[0..len), parsed; returns parse's result. */
static int parse(prov_call *c, const char *body, size_t len, dialect_refusal *why, char *shown)
{
    memcpy(g_body, body, len);
    memset(c, 0xa5, sizeof *c); /* the parser must set what it leaves to the caller */
    snprintf(c->request_id, sizeof c->request_id, "req_t");
    c->body = (ms_str){g_body, len};
    memset(why, 0, sizeof *why);
    return dialect_responses_parse(&g_cfg, c, shown, 256, NULL, why);
}

#define CHECK_PARSE_ERR(body, status_, code_, param_)                                              \
    do {                                                                                           \
        prov_call *c_ = malloc(sizeof *c_);                                                        \
        dialect_refusal w_;                                                                        \
        char sh_[256];                                                                             \
        const char *body_ = q(body);                                                               \
        CHECK_EQ_INT(parse(c_, body_, strlen(body_), &w_, sh_), -1);                               \
        CHECK_EQ_INT(w_.status, status_);                                                          \
        CHECK_EQ_STR(w_.code, code_);                                                              \
        if (param_)                                                                                \
            CHECK_EQ_STR(w_.param, (const char *)(param_));                                        \
        else                                                                                       \
            CHECK(w_.param == NULL);                                                               \
        CHECK(w_.message[0] != '\0');                                                              \
        free(c_);                                                                                  \
    } while (0)

static void test_parse_errors(void)
{
    CHECK_PARSE_ERR("", 400, "invalid_json", NULL);
    CHECK_PARSE_ERR("[1]", 400, "invalid_json", NULL);
    CHECK_PARSE_ERR("{'model':", 400, "invalid_json", NULL);
    CHECK_PARSE_ERR("{'input':'hi'}", 400, "missing_required_parameter", "model");
    CHECK_PARSE_ERR("{'model':5,'input':'hi'}", 400, "invalid_parameter", "model");
    CHECK_PARSE_ERR("{'model':'gpt-x'}", 400, "missing_required_parameter", "input");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':null}", 400, "invalid_parameter", "input");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':{}}", 400, "invalid_parameter", "input");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':[ ]}", 400, "invalid_parameter", "input");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','max_output_tokens':0}", 400,
                    "invalid_parameter", "max_output_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','max_output_tokens':'5'}", 400,
                    "invalid_parameter", "max_output_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','max_output_tokens':1.5}", 400,
                    "invalid_parameter", "max_output_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','stream':'yes'}", 400, "invalid_parameter",
                    "stream");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','store':1}", 400, "invalid_parameter", "store");
    /* what needs a stored response */
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','previous_response_id':5}", 400,
                    "invalid_parameter", "previous_response_id");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','background':true}", 400, "invalid_parameter",
                    "background");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','background':'no'}", 400, "invalid_parameter",
                    "background");
    /* a field the gateway acts on, given twice (keys compared decoded) */
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','in\\u0070ut':'x'}", 400, "invalid_parameter",
                    "input");
    CHECK_PARSE_ERR("{'model':'gpt-x','model':'gone','input':'hi'}", 400, "invalid_parameter",
                    "model");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','store':false,'store':true}", 400,
                    "invalid_parameter", "store");
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','max_output_tokens':5,'max_output_tokens':9}",
                    400, "invalid_parameter", "max_output_tokens");
    /* a null previous_response_id twice is still two copies the provider may read differently */
    CHECK_PARSE_ERR("{'model':'gpt-x','input':'hi','previous_response_id':null,"
                    "'previous_response_id':'r'}",
                    400, "invalid_parameter", "previous_response_id");
    CHECK_PARSE_ERR("{'model':'gone','input':'hi'}", 404, "model_not_found", "model");
}

static void test_parse_ok(void)
{
    prov_call *c = malloc(sizeof *c);
    dialect_refusal why;
    char shown[256];
    const char *b = q("{'model':'nokey','input':'hi'}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), -1);
    CHECK_EQ_INT(why.status, 503);
    CHECK_EQ_STR(why.code, "provider_not_configured");
    CHECK_EQ_STR(shown, "nokey");

    b = q("{'model':'gpt-\\u0078','stream':true,'max_output_tokens':1e3,'input':[{'role':'user',"
          "'content':'hi'}],'store':true,'previous_response_id':null,'background':false}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    CHECK(c->model == &g_models[0]);
    CHECK_EQ_STR(shown, "gpt-x");
    CHECK(c->m_model != NULL && c->m_model->type == JS_STRING);
    CHECK_EQ_INT(c->ep, EP_CHAT);
    CHECK_EQ_INT(c->stream, 1);
    CHECK_EQ_INT(c->max_tokens, 1000);
    CHECK_EQ_INT(c->client_include_usage, 1);
    CHECK(c->dialect == &dialect_openai_responses);
    CHECK(c->dep == NULL && c->m_stream_options == NULL);
    CHECK_EQ_INT(c->output_bound, 0);
    CHECK_EQ_INT(c->nmembers, 7);
    CHECK_EQ_STR(c->request_id, "req_t");
    b = q("{'model':'gpt-x','stream':null,'max_output_tokens':null,'input':''}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    CHECK_EQ_INT(c->stream, 0);
    CHECK_EQ_INT(c->max_tokens, -1);
    free(c);
}

/* ---- the rewrite ---- */

static char g_out[65536];

/* Parses body (q()'d) and rewrites it; returns the rewrite's result (parse must pass), the OpenAI
 * body in g_out. A body written must be one the gateway's OpenAI parser accepts, with the same
 * model, limit and stream. */
static int rewrite(const char *body, dialect_refusal *why)
{
    prov_call *c = malloc(sizeof *c);
    char shown[256];
    const char *b = q(body);
    int rc = parse(c, b, strlen(b), why, shown);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  parse refused: %s\n", why->message);
        free(c);
        return -2;
    }
    buf_t out;
    buf_init(&out, 1u << 20);
    rc = dialect_responses_to_openai(c, &out, why);
    g_out[0] = '\0';
    if (rc == 0) {
        size_t n = out.len < sizeof g_out - 1 ? out.len : sizeof g_out - 1;
        memcpy(g_out, out.data, n);
        g_out[n] = '\0';
        prov_call *hub = malloc(sizeof *hub);
        dialect_refusal hw;
        hub->body = (ms_str){out.data, out.len};
        memcpy(hub->request_id, "req_h", 6);
        CHECK_EQ_INT(dialect_openai_parse(&g_cfg, EP_CHAT, hub, shown, sizeof shown, &hw), 0);
        CHECK(hub->model == c->model);
        CHECK_EQ_INT(hub->max_tokens, c->max_tokens);
        CHECK_EQ_INT(hub->stream, c->stream);
        CHECK_EQ_INT(hub->client_include_usage, c->stream);
        free(hub);
    } else {
        CHECK_EQ_INT(out.len, 0);
    }
    buf_free(&out);
    free(c);
    return rc;
}

#define CHECK_OPENAI(body, want)                                                                   \
    do {                                                                                           \
        dialect_refusal why_;                                                                      \
        int rc_ = rewrite(body, &why_);                                                            \
        CHECK_EQ_INT(rc_, 0);                                                                      \
        if (rc_) fprintf(stderr, "  refused: %s\n", why_.message);                                 \
        CHECK_EQ_STR(g_out, q(want));                                                              \
    } while (0)

#define CHECK_REFUSED(body, param_)                                                                \
    do {                                                                                           \
        dialect_refusal why_;                                                                      \
        CHECK_EQ_INT(rewrite(body, &why_), -1);                                                    \
        CHECK_EQ_INT(why_.status, 400);                                                            \
        CHECK_EQ_STR(why_.type, "invalid_request_error");                                          \
        CHECK_EQ_STR(why_.code, "invalid_parameter");                                              \
        if (param_)                                                                                \
            CHECK_EQ_STR(why_.param, (const char *)(param_));                                      \
        else                                                                                       \
            CHECK(why_.param == NULL);                                                             \
        CHECK(why_.message[0] != '\0');                                                            \
    } while (0)

#define HEAD "{'model':'gpt-x',"
#define OUT_HI "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}]"

/* A string input with instructions: a system message, then the user's; max_output_tokens ->
 * max_tokens; store, metadata and the other hints dropped. */
static void test_string_input(void)
{
    CHECK_OPENAI(HEAD "'instructions':'Be brief.','input':'Hi','max_output_tokens':100,"
                      "'store':true,'metadata':{'k':'v'},'truncation':'disabled',"
                      "'service_tier':'auto','include':['reasoning.encrypted_content'],"
                      "'prompt_cache_key':'c1','temperature':0.7,'top_p':0.9,'user':'u-1'}",
                 "{'model':'gpt-x','messages':[{'role':'system','content':'Be brief.'},"
                 "{'role':'user','content':'Hi'}],'max_tokens':100,'temperature':0.7,"
                 "'top_p':0.9,'user':'u-1'}");
    /* no limit given: none written (the gateway's default applies downstream) */
    CHECK_OPENAI(HEAD "'input':'Hi','instructions':''}", OUT_HI "}");
    CHECK_OPENAI(HEAD "'input':'Hi','instructions':null,'safety_identifier':'s-1','user':'u-1'}",
                 OUT_HI ",'user':'s-1'}");
    CHECK_REFUSED(HEAD "'input':'Hi','instructions':5}", "instructions");
    CHECK_REFUSED(HEAD "'input':'Hi','temperature':3}", "temperature");
    CHECK_REFUSED(HEAD "'input':'Hi','top_p':'x'}", "top_p");
    CHECK_REFUSED(HEAD "'input':'Hi','user':5}", "user");
    CHECK_REFUSED(HEAD "'input':'Hi','metadata':[]}", "metadata");
}

/* Items in order: roles kept (developer too: every adapter reads it as system), text parts,
 * images (detail kept), assistant output_text; reasoning items, ids, statuses, annotations
 * dropped. */
static void test_multi_turn_images(void)
{
    CHECK_OPENAI(HEAD
                 "'input':["
                 "{'role':'developer','content':'Answer in French.'},"
                 "{'type':'message','role':'user','content':[{'type':'input_text','text':'What?'},"
                 "{'type':'input_image','image_url':'data:image/png;base64,iVBORw0KGgo=',"
                 "'detail':'high'}]},"
                 "{'type':'reasoning','id':'rs_1','summary':[],'encrypted_content':'gAAA'},"
                 "{'type':'message','id':'msg_1','status':'completed','role':'assistant','content':"
                 "[{'type':'output_text','text':'Un chat.','annotations':[],'logprobs':[]}]},"
                 "{'role':'user','content':[{'type':'input_image','image_url':"
                 "'https://x.test/a.jpg'},{'type':'input_text','text':'And this?'}]},"
                 "{'role':'system','content':[{'type':'input_text','text':'Short.'}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'developer','content':'Answer in French.'},"
                 "{'role':'user','content':[{'type':'text','text':'What?'},{'type':'image_url',"
                 "'image_url':{'url':'data:image/png;base64,iVBORw0KGgo=','detail':'high'}}]},"
                 "{'role':'assistant','content':'Un chat.'},{'role':'user','content':[{'type':"
                 "'image_url','image_url':{'url':'https://x.test/a.jpg'}},{'type':'text','text':"
                 "'And this?'}]},{'role':'system','content':'Short.'}]}");
    /* several text parts stay parts; an earlier refusal is what the assistant said */
    CHECK_OPENAI(HEAD "'input':[{'role':'user','content':[{'type':'input_text','text':'A'},"
                      "{'type':'input_text','text':'B'}]},{'role':'assistant','content':[{'type':"
                      "'refusal','refusal':'No.'}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':[{'type':'text','text':"
                 "'A'},{'type':'text','text':'B'}]},{'role':'assistant','content':'No.'}]}");
    CHECK_REFUSED(HEAD "'input':[{'role':'user','content':[{'type':'input_file','file_id':'f'}]}]}",
                  "input");
    CHECK_REFUSED(HEAD
                  "'input':[{'role':'user','content':[{'type':'input_image','file_id':'f'}]}]}",
                  "input");
    CHECK_REFUSED(HEAD "'input':[{'role':'assistant','content':[{'type':'input_image',"
                       "'image_url':'https://x.test/a.jpg'}]}]}",
                  "input");
    CHECK_REFUSED(HEAD "'input':[{'role':'tool','content':'x'}]}", "input");
    CHECK_REFUSED(HEAD "'input':[{'role':'user','content':5}]}", "input");
    CHECK_REFUSED(HEAD "'input':[{'role':'user','content':[{'type':'input_text'}]}]}", "input");
    CHECK_REFUSED(HEAD "'input':[5]}", "input");
    CHECK_REFUSED(HEAD "'input':[{'type':'reasoning','summary':[]}]}", "input");
}

/* A function call round trip: the assistant's text and its consecutive calls in one message,
 * each output a tool message. */
static void test_function_round_trip(void)
{
    CHECK_OPENAI(
        HEAD "'input':[{'role':'user','content':'Weather in Paris and Rome?'},"
             "{'type':'reasoning','id':'rs_1','summary':[]},"
             "{'type':'function_call','id':'fc_1','call_id':'call_1','name':'get_weather',"
             "'arguments':'{\\'city\\':\\'Paris\\'}','status':'completed'},"
             "{'type':'function_call','id':'fc_2','call_id':'call_2','name':'get_weather',"
             "'arguments':'{\\'city\\':\\'Rome\\'}'},"
             "{'type':'function_call_output','call_id':'call_1','output':'18C'},"
             "{'type':'function_call_output','call_id':'call_2','output':[{'type':'input_text',"
             "'text':'21C'}]},"
             "{'role':'assistant','content':[{'type':'output_text','text':'Checking.'}]},"
             "{'type':'function_call','call_id':'call_3','name':'now','arguments':'{}'},"
             "{'type':'function_call_output','call_id':'call_3','output':''}]}",
        "{'model':'gpt-x','messages':[{'role':'user','content':'Weather in Paris and Rome?'},"
        "{'role':'assistant','content':null,'tool_calls':[{'id':'call_1','type':'function',"
        "'function':{'name':'get_weather','arguments':'{\\'city\\':\\'Paris\\'}'}},{'id':"
        "'call_2','type':'function','function':{'name':'get_weather','arguments':"
        "'{\\'city\\':\\'Rome\\'}'}}]},{'role':'tool','tool_call_id':'call_1','content':'18C'},"
        "{'role':'tool','tool_call_id':'call_2','content':'21C'},{'role':'assistant','content':"
        "'Checking.','tool_calls':[{'id':'call_3','type':'function','function':{'name':'now',"
        "'arguments':'{}'}}]},{'role':'tool','tool_call_id':'call_3','content':''}]}");
    CHECK_REFUSED(HEAD "'input':[{'type':'function_call','call_id':'c','name':'f',"
                       "'arguments':{}}]}",
                  "input");
    CHECK_REFUSED(HEAD "'input':[{'type':'function_call_output','output':'x'}]}", "input");
    CHECK_REFUSED(HEAD "'input':[{'type':'function_call_output','call_id':'c','output':[{'type':"
                       "'input_image','image_url':'https://x.test/a.jpg'}]}]}",
                  "input");
    /* built-in tool items and references to stored items */
    CHECK_REFUSED(HEAD "'input':[{'type':'web_search_call','id':'ws_1','status':'completed'}]}",
                  "input");
    CHECK_REFUSED(HEAD "'input':[{'type':'item_reference','id':'msg_1'}]}", "input");
}

#define TOOLS                                                                                      \
    "'tools':[{'type':'function','name':'get_weather','description':'Weather now','parameters':"   \
    "{'type':'object','properties':{'city':{'type':'string'}},'required':['city']},"               \
    "'strict':true},{'type':'function','name':'now','parameters':null}]"
#define TOOLS_OUT                                                                                  \
    "'tools':[{'type':'function','function':{'name':'get_weather','description':'Weather now',"    \
    "'parameters':{'type':'object','properties':{'city':{'type':'string'}},'required':['city']},"  \
    "'strict':true}},{'type':'function','function':{'name':'now'}}]"

/* Flat function tools -> nested; every tool_choice form; parallel_tool_calls with tools. */
static void test_tools(void)
{
    CHECK_OPENAI(HEAD "'input':'Hi'," TOOLS "}", OUT_HI "," TOOLS_OUT "}");
    CHECK_OPENAI(HEAD "'input':'Hi'," TOOLS ",'tool_choice':'auto','parallel_tool_calls':false}",
                 OUT_HI "," TOOLS_OUT ",'tool_choice':'auto','parallel_tool_calls':false}");
    CHECK_OPENAI(HEAD "'input':'Hi'," TOOLS ",'tool_choice':'none'}",
                 OUT_HI "," TOOLS_OUT ",'tool_choice':'none'}");
    CHECK_OPENAI(HEAD "'input':'Hi'," TOOLS ",'tool_choice':'required'}",
                 OUT_HI "," TOOLS_OUT ",'tool_choice':'required'}");
    CHECK_OPENAI(HEAD "'input':'Hi'," TOOLS ",'tool_choice':{'type':'function','name':'now'}}",
                 OUT_HI "," TOOLS_OUT ",'tool_choice':{'type':'function','function':{'name':"
                        "'now'}}}");
    /* no tools: auto and none mean nothing, and chat refuses tool_choice without tools */
    CHECK_OPENAI(HEAD "'input':'Hi','tools':[],'tool_choice':'auto','parallel_tool_calls':true}",
                 OUT_HI "}");
    CHECK_REFUSED(HEAD "'input':'Hi','tool_choice':'required'}", "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi'," TOOLS ",'tool_choice':'any'}", "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi'," TOOLS ",'tool_choice':{'type':'function'}}", "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi'," TOOLS ",'tool_choice':{'type':'web_search_preview'}}",
                  "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi'," TOOLS ",'tool_choice':{'type':'allowed_tools','mode':"
                       "'auto','tools':[]}}",
                  "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi'," TOOLS ",'parallel_tool_calls':1}", "parallel_tool_calls");
    /* built-in tools run only at OpenAI: left out of what the provider is offered (Codex offers
     * web_search and namespaces on every request), functions kept */
    CHECK_OPENAI(HEAD "'input':'Hi','tools':[{'type':'web_search'},{'type':'file_search',"
                      "'vector_store_ids':['v']},{'type':'code_interpreter','container':{'type':"
                      "'auto'}},{'type':'mcp','server_label':'x'},{'type':'namespace','name':'n'},"
                      "{'type':'image_generation'},{'type':'computer_use_preview'}]}",
                 OUT_HI "}");
    CHECK_OPENAI(HEAD
                 "'input':'Hi','tools':[{'type':'web_search'},{'type':'function','name':'f'}]}",
                 OUT_HI ",'tools':[{'type':'function','function':{'name':'f'}}]}");
    /* forcing a tool the provider is not offered is refused */
    CHECK_REFUSED(HEAD "'input':'Hi','tools':[{'type':'web_search'}],'tool_choice':'required'}",
                  "tool_choice");
    CHECK_REFUSED(HEAD "'input':'Hi','tools':[{'type':'function'}]}", "tools");
    CHECK_REFUSED(HEAD "'input':'Hi','tools':[{'type':'function','name':'f','parameters':5}]}",
                  "tools");
    CHECK_REFUSED(HEAD "'input':'Hi','tools':{}}", "tools");
}

/* text.format -> response_format; text -> nothing; verbosity carried. */
static void test_text_format(void)
{
    CHECK_OPENAI(HEAD "'input':'Hi','text':{'format':{'type':'json_schema','name':'answer',"
                      "'description':'An answer','schema':{'type':'object','properties':{'a':"
                      "{'type':'string'}},'required':['a'],'additionalProperties':false},"
                      "'strict':true},'verbosity':'low'}}",
                 OUT_HI ",'response_format':{'type':'json_schema','json_schema':{'name':'answer',"
                        "'description':'An answer','schema':{'type':'object','properties':{'a':"
                        "{'type':'string'}},'required':['a'],'additionalProperties':false},"
                        "'strict':true}},'verbosity':'low'}");
    CHECK_OPENAI(HEAD "'input':'Hi','text':{'format':{'type':'json_object'}}}",
                 OUT_HI ",'response_format':{'type':'json_object'}}");
    CHECK_OPENAI(HEAD "'input':'Hi','text':{'format':{'type':'text'}}}", OUT_HI "}");
    CHECK_REFUSED(HEAD "'input':'Hi','text':{'format':{'type':'json_schema','schema':{}}}}",
                  "text");
    CHECK_REFUSED(HEAD "'input':'Hi','text':{'format':{'type':'xml'}}}", "text");
    CHECK_REFUSED(HEAD "'input':'Hi','text':{'other':1}}", "text");
    CHECK_REFUSED(HEAD "'input':'Hi','text':'json'}", "text");
}

/* reasoning.effort -> reasoning_effort; the summary dropped. */
static void test_reasoning(void)
{
    CHECK_OPENAI(HEAD "'input':'Hi','reasoning':{'effort':'high','summary':'auto'}}",
                 OUT_HI ",'reasoning_effort':'high'}");
    CHECK_OPENAI(HEAD "'input':'Hi','reasoning':{'summary':'detailed'}}", OUT_HI "}");
    CHECK_REFUSED(HEAD "'input':'Hi','reasoning':{'effort':3}}", "reasoning");
    CHECK_REFUSED(HEAD "'input':'Hi','reasoning':'high'}", "reasoning");
}

/* stream: true -> stream with usage (Responses streams always end with it); false -> nothing. */
static void test_stream(void)
{
    CHECK_OPENAI(HEAD "'input':'Hi','stream':true,'stream_options':{'include_obfuscation':false},"
                      "'max_output_tokens':50}",
                 OUT_HI ",'max_tokens':50,'stream':true,'stream_options':{'include_usage':true}}");
    CHECK_OPENAI(HEAD "'input':'Hi','stream':false}", OUT_HI "}");
}

/* Fields that need what the gateway does not have, and unknown fields (named in the message). */
static void test_refused_fields(void)
{
    CHECK_REFUSED(HEAD "'input':'Hi','conversation':'conv_1'}", "conversation");
    CHECK_REFUSED(HEAD "'input':'Hi','prompt':{'id':'pmpt_1'}}", "prompt");
    CHECK_REFUSED(HEAD "'input':'Hi','top_logprobs':3}", "top_logprobs");
    CHECK_OPENAI(HEAD "'input':'Hi','top_logprobs':0,'conversation':null}", OUT_HI "}");
    /* a field this API does not define goes to the provider as it came (it answers for it);
     * Codex's client_metadata is dropped; one that would clash with a written field is refused */
    CHECK_OPENAI(HEAD "'input':'Hi','frobnicate':1,'client_metadata':{'x':'y'}}",
                 OUT_HI ",'frobnicate':1}");
    dialect_refusal why;
    CHECK_EQ_INT(
        rewrite(HEAD "'input':'Hi','reasoning':{'effort':'low'},'reasoning_effort':'high'}", &why),
        -1);
    CHECK(why.param == NULL);
    CHECK(strstr(why.message, "'reasoning_effort'") != NULL);
    /* the chat fields the gateway reads back from the hub body are refused, named, whether the
     * rewrite writes them or not: passed through they would bound the answer otherwise than the
     * request was held for (fuzz_responses_request's seed max_completion_tokens_passed) */
    CHECK_REFUSED(HEAD "'input':'Hi','messages':[]}", "messages");
    CHECK_REFUSED(HEAD "'input':'Hi','max_completion_tokens':1}", "max_completion_tokens");
    CHECK_REFUSED(HEAD "'input':'Hi','max_output_tokens':5,'max_completion_tokens':100000}",
                  "max_completion_tokens");
    CHECK_REFUSED(HEAD "'input':'Hi','max_tokens':7}", "max_tokens");
    CHECK_REFUSED(HEAD "'input':'Hi','n':4}", "n");
    /* (stream, stream_options and model are the Responses API's own: read or dropped as such) */
    CHECK_OPENAI(HEAD "'input':'Hi','stream_options':{'include_obfuscation':false}}", OUT_HI "}");
    /* jansson cannot hold an integer beyond 64 bits that the scan accepts */
    CHECK_EQ_INT(
        rewrite(HEAD "'input':'Hi','metadata':{'n':123456789012345678901234567890}}", &why), -1);
    CHECK_EQ_INT(why.status, 400);
    CHECK_EQ_STR(why.code, "invalid_json");
}

/* out's limit: -1 with status 0, nothing written. */
static void test_out_limit(void)
{
    prov_call *c = malloc(sizeof *c);
    dialect_refusal why;
    char shown[256];
    const char *b = q(HEAD "'input':'Hello there, this is long enough'}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    buf_t out;
    buf_init(&out, 16);
    CHECK_EQ_INT(dialect_responses_to_openai(c, &out, &why), -1);
    CHECK_EQ_INT(why.status, 0);
    CHECK_EQ_INT(out.len, 0);
    buf_free(&out);
    free(c);
}

int main(void)
{
    RUN(test_parse_errors);
    RUN(test_parse_ok);
    RUN(test_string_input);
    RUN(test_multi_turn_images);
    RUN(test_function_round_trip);
    RUN(test_tools);
    RUN(test_text_format);
    RUN(test_reasoning);
    RUN(test_stream);
    RUN(test_refused_fields);
    RUN(test_out_limit);
    TAP_DONE();
}
