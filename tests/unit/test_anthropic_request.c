/*
 * Golden tests of the Anthropic Messages dialect's request side
 * (src/dialect/anthropic_messages_request.c): Messages bodies parsed into the gateway's request
 * (errors with their code and param, model resolution, max_tokens, stream), and rewritten into
 * the exact OpenAI chat body the other adapters build from (system, turns, images, a tool round
 * trip, tools and tool_choice, thinking budgets, stop, stream; refusals naming their field).
 * Last, the round trip: the rewritten body through the Anthropic adapter's build
 * (providers/anthropic.c, the opposite direction) gives back the original request, compared as
 * parsed JSON over what both translations handle.
 *
 * Fixtures follow Anthropic's Messages reference (https://docs.claude.com/en/api/messages) and
 * its tool use, vision and extended thinking guides. JSON is written with ' for " (q() swaps
 * them) so the goldens stay readable.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/anthropic_request.h"
#include "providers/provider.h"
#include "tap.h"
#include "quote.h"

static cfg_provider g_prov[3] = {
    {.name = (char *)"anth",
     .kind = PROV_ANTHROPIC,
     .base_url = (char *)"http://a.example",
     .api_key = (char *)"k",
     .enabled = 1},
    {.name = (char *)"oai",
     .kind = PROV_OPENAI,
     .base_url = (char *)"http://o.example",
     .api_key = (char *)"k",
     .enabled = 1},
    {.name = (char *)"off", .kind = PROV_OPENAI, .api_key_var = "OFF_KEY"},
};
static cfg_deployment g_dep[2] = {
    {.provider = &g_prov[0], .model = (char *)"claude-up", .weight = 1},
    {.provider = &g_prov[1], .model = (char *)"gpt-up", .weight = 1}};
static cfg_model g_models[4] = {
    {.name = (char *)"claude-x", .deployments = &g_dep[0], .ndeployments = 1},
    {.name = (char *)"gpt-x", .deployments = &g_dep[1], .ndeployments = 1},
    {.name = (char *)"nokey", .unconfigured = &g_prov[2]},
    {.name = (char *)"gone"},
};
static cfg_t g_cfg = {.models = g_models, .nmodels = 4, .default_max_output_tokens = 4096};

static char g_body[16384];
static size_t g_body_len;

/* A call whose body is body (q()'d unless raw), parsed; returns parse's result. */
static int parse(prov_call *c, const char *body, size_t len, dialect_refusal *why, char *shown)
{
    memcpy(g_body, body, len);
    g_body_len = len;
    memset(c, 0xa5, sizeof *c); /* the parser must set what it leaves to the caller */
    snprintf(c->request_id, sizeof c->request_id, "req_t");
    c->body = (ms_str){g_body, len};
    memset(why, 0, sizeof *why);
    return dialect_anthropic_parse(&g_cfg, c, shown, 256, why);
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
    CHECK_PARSE_ERR("{'messages':[{}],'max_tokens':5}", 400, "missing_required_parameter", "model");
    CHECK_PARSE_ERR("{'model':5,'messages':[{}],'max_tokens':5}", 400, "invalid_parameter",
                    "model");
    CHECK_PARSE_ERR("{'model':'','messages':[{}],'max_tokens':5}", 400, "invalid_parameter",
                    "model");
    CHECK_PARSE_ERR("{'model':'gpt-x','max_tokens':5}", 400, "missing_required_parameter",
                    "messages");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':{},'max_tokens':5}", 400, "invalid_parameter",
                    "messages");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[ ],'max_tokens':5}", 400, "invalid_parameter",
                    "messages");
    /* Anthropic requires max_tokens */
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}]}", 400, "missing_required_parameter",
                    "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':null}", 400, "invalid_parameter",
                    "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':0}", 400, "invalid_parameter",
                    "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':'5'}", 400, "invalid_parameter",
                    "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':1.5}", 400, "invalid_parameter",
                    "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':5,'stream':'yes'}", 400,
                    "invalid_parameter", "stream");
    /* a field the gateway acts on, given twice (keys compared decoded) */
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':5,'max_\\u0074okens':9}", 400,
                    "invalid_parameter", "max_tokens");
    CHECK_PARSE_ERR("{'model':'gpt-x','model':'claude-x','messages':[{}],'max_tokens':5}", 400,
                    "invalid_parameter", "model");
    CHECK_PARSE_ERR("{'model':'gpt-x','messages':[{}],'max_tokens':5,'stream':true,'stream':false}",
                    400, "invalid_parameter", "stream");
}

static void test_parse_models(void)
{
    prov_call *c = malloc(sizeof *c);
    dialect_refusal why;
    char shown[256];
    const char *b = q("{'model':'gone','messages':[{}],'max_tokens':5}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), -1);
    CHECK_EQ_INT(why.status, 404);
    CHECK_EQ_STR(why.type, "not_found_error");
    CHECK_EQ_STR(why.code, "model_not_found");
    CHECK_EQ_STR(why.param, "model");
    CHECK_EQ_STR(shown, "gone");
    /* by length: the name before a NUL is not the name, and the log shows the NUL */
    b = q("{'model':'gpt-x\\u0000y','messages':[{}],'max_tokens':5}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), -1);
    CHECK_EQ_STR(why.code, "model_not_found");
    CHECK_EQ_STR(shown, "gpt-x\\u0000y");
    CHECK(strstr(why.message, "'gpt-x\\u0000y'") != NULL);
    b = q("{'model':'nokey','messages':[{}],'max_tokens':5}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), -1);
    CHECK_EQ_INT(why.status, 503);
    CHECK_EQ_STR(why.type, "service_unavailable_error");
    CHECK_EQ_STR(why.code, "provider_not_configured");
    CHECK_EQ_STR(why.param, "model");
    CHECK_EQ_INT(why.retry_after_ms, 60000);
    CHECK_EQ_INT(why.no_retry, 1);
    CHECK(strstr(why.message, "OFF_KEY") != NULL);

    b = q("{'model':'gpt-\\u0078','stream':true,'max_tokens':1e3,'messages':[{'role':'user',"
          "'content':'hi'}],'top_k':3}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    CHECK(c->model == &g_models[1]);
    CHECK_EQ_STR(shown, "gpt-x");
    CHECK(c->m_model != NULL && c->m_model->type == JS_STRING);
    CHECK_EQ_INT(c->ep, EP_CHAT);
    CHECK_EQ_INT(c->stream, 1);
    CHECK_EQ_INT(c->max_tokens, 1000);
    CHECK_EQ_INT(c->client_include_usage, 1);
    CHECK(c->dialect == &dialect_anthropic_messages);
    CHECK(c->dep == NULL && c->m_stream_options == NULL);
    CHECK_EQ_INT(c->output_bound, 0);
    CHECK_EQ_INT(c->nmembers, 5);
    CHECK_EQ_STR(c->request_id, "req_t");
    b = q("{'model':'claude-x','stream':null,'max_tokens':7,'messages':[{}]}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    CHECK(c->model == &g_models[0]);
    CHECK_EQ_INT(c->stream, 0);
    CHECK_EQ_INT(c->max_tokens, 7);
    free(c);
}

/* ---- the rewrite ---- */

static char g_out[65536];
static int g_listed_checked; /* translations whose listed members were compared with the scan */

/* Parses body (q()'d) and rewrites it; returns the rewrite's result (parse must pass), the OpenAI
 * body in g_out. */
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
    size_t listed = 0;
    jscan_member *lm = malloc(PROV_MAX_MEMBERS * sizeof *lm);
    rc = dialect_anthropic_to_openai_listed(c, &out, lm, PROV_MAX_MEMBERS, &listed, why);
    g_out[0] = '\0';
    if (rc == 0) {
        /* the members the rewrite lists are the scan's, to the byte and offset */
        jscan_member sm[PROV_MAX_MEMBERS];
        int sn = jscan_members_valid((ms_str){out.data, out.len}, sm, PROV_MAX_MEMBERS);
        CHECK(sn > 0 && (size_t)sn == listed);
        for (size_t i = 0; sn > 0 && i < listed && i < (size_t)sn; i++)
            CHECK(lm[i].key.p == sm[i].key.p && lm[i].key.n == sm[i].key.n &&
                  lm[i].value.p == sm[i].value.p && lm[i].value.n == sm[i].value.n &&
                  lm[i].type == sm[i].type && lm[i].key_plain == sm[i].key_plain &&
                  lm[i].start == sm[i].start && lm[i].end == sm[i].end);
        g_listed_checked++;
    }
    free(lm);
    if (rc == 0) {
        size_t n = out.len < sizeof g_out - 1 ? out.len : sizeof g_out - 1;
        memcpy(g_out, out.data, n);
        g_out[n] = '\0';
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

#define HEAD "{'model':'gpt-x','max_tokens':100,"
#define USER_HI "'messages':[{'role':'user','content':'Hi'}]"

/* A system string becomes the first message; the model as given. */
static void test_system_string(void)
{
    CHECK_OPENAI(HEAD "'system':'Be brief.'," USER_HI "}",
                 "{'model':'gpt-x','messages':[{'role':'system','content':'Be brief.'},"
                 "{'role':'user','content':'Hi'}],'max_tokens':100}");
    /* an empty system is no system */
    CHECK_OPENAI(HEAD "'system':''," USER_HI "}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
}

/* System text blocks: several stay parts, one becomes a string; cache_control dropped. */
static void test_system_blocks(void)
{
    CHECK_OPENAI(HEAD "'system':[{'type':'text','text':'A','cache_control':{'type':'ephemeral'}},"
                      "{'type':'text','text':'B'}]," USER_HI "}",
                 "{'model':'gpt-x','messages':[{'role':'system','content':[{'type':'text','text':"
                 "'A'},{'type':'text','text':'B'}]},{'role':'user','content':'Hi'}],"
                 "'max_tokens':100}");
    CHECK_OPENAI(HEAD "'system':[{'type':'text','text':'A','cache_control':{'type':'ephemeral'}}],"
                      "'messages':[{'role':'user','content':[{'type':'text','text':'Hi',"
                      "'cache_control':{'type':'ephemeral'}}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'system','content':'A'},{'role':'user',"
                 "'content':'Hi'}],'max_tokens':100}");
    CHECK_REFUSED(HEAD "'system':[{'type':'image'}]," USER_HI "}", "system");
    CHECK_REFUSED(HEAD "'system':5," USER_HI "}", "system");
}

/* Turns in order; thinking blocks dropped (a turn of only thinking is not sent); sampling,
 * metadata.user_id -> user; service_tier and other metadata dropped. */
static void test_multi_turn(void)
{
    CHECK_OPENAI(
        "{'model':'gpt-x','max_tokens':256,'messages':["
        "{'role':'user','content':'Hi'},"
        "{'role':'assistant','content':'Hello.'},"
        "{'role':'user','content':[{'type':'text','text':'Two'},{'type':'text','text':'parts'}]},"
        "{'role':'assistant','content':[{'type':'thinking','thinking':'hmm','signature':'s'},"
        "{'type':'redacted_thinking','data':'x'},{'type':'text','text':'Sure.','citations':null}]},"
        "{'role':'assistant','content':[{'type':'thinking','thinking':'more','signature':'s'}]},"
        "{'role':'user','content':'Bye'}],"
        "'temperature':0.7,'top_p':0.9,'top_k':null,'metadata':{'user_id':'u-1','x':1},"
        "'service_tier':'auto','stream':false}",
        "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'},{'role':'assistant',"
        "'content':'Hello.'},{'role':'user','content':[{'type':'text','text':'Two'},{'type':"
        "'text','text':'parts'}]},{'role':'assistant','content':'Sure.'},{'role':'user',"
        "'content':'Bye'}],'max_tokens':256,'temperature':0.7,'top_p':0.9,'user':'u-1'}");
}

/* Images: base64 -> a data: URL with the media type, url -> the URL. */
static void test_images(void)
{
    CHECK_OPENAI(HEAD "'messages':[{'role':'user','content':[{'type':'text','text':'What?'},"
                      "{'type':'image','source':{'type':'base64','media_type':'image/png','data':"
                      "'iVBORw0KGgo='}},{'type':'image','source':{'type':'url','url':"
                      "'https://x.test/a.jpg'},'cache_control':{'type':'ephemeral'}}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':[{'type':'text','text':"
                 "'What?'},{'type':'image_url','image_url':{'url':"
                 "'data:image/png;base64,iVBORw0KGgo='}},{'type':'image_url','image_url':{'url':"
                 "'https://x.test/a.jpg'}}]}],'max_tokens':100}");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'image','source':{'type':"
                       "'file','file_id':'f_1'}}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'image','source':{'type':"
                       "'base64','data':'AA'}}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'assistant','content':[{'type':'image','source':{"
                       "'type':'url','url':'https://x.test/a.jpg'}}]}]}",
                  "messages");
}

/* A tool round trip: tool_use -> tool_calls (arguments = input serialized), each tool_result ->
 * a tool message (text blocks kept as parts, an error said in the text), the text after them a
 * user message. */
static void test_tool_round_trip(void)
{
    CHECK_OPENAI(
        HEAD "'messages':["
             "{'role':'user','content':'Weather in Paris?'},"
             "{'role':'assistant','content':[{'type':'thinking','thinking':'t','signature':'s'},"
             "{'type':'text','text':'Checking.'},"
             "{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{'city':'Paris',"
             "'days':2,'t':0.1}},"
             "{'type':'tool_use','id':'toolu_2','name':'now','input':{}}]},"
             "{'role':'user','content':[{'type':'tool_result','tool_use_id':'toolu_1','content':"
             "'Sunny','cache_control':{'type':'ephemeral'}},"
             "{'type':'tool_result','tool_use_id':'toolu_2','is_error':true,'content':["
             "{'type':'text','text':'clock'},{'type':'text','text':'down'}]},"
             "{'type':'text','text':'Thanks'}]},"
             "{'role':'assistant','content':[{'type':'tool_use','id':'toolu_3','name':'now',"
             "'input':{}}]},"
             "{'role':'user','content':[{'type':'tool_result','tool_use_id':'toolu_3'},"
             "{'type':'tool_result','tool_use_id':'toolu_3b','is_error':true,'content':'boom'},"
             "{'type':'tool_result','tool_use_id':'toolu_3c','is_error':false,'content':["
             "{'type':'text','text':'ok'}]}]}]}",
        "{'model':'gpt-x','messages':[{'role':'user','content':'Weather in Paris?'},"
        "{'role':'assistant','content':'Checking.','tool_calls':["
        "{'id':'toolu_1','type':'function','function':{'name':'get_weather','arguments':"
        "'{\\'city\\':\\'Paris\\',\\'days\\':2,\\'t\\':0.1}'}},"
        "{'id':'toolu_2','type':'function','function':{'name':'now','arguments':'{}'}}]},"
        "{'role':'tool','tool_call_id':'toolu_1','content':'Sunny'},"
        "{'role':'tool','tool_call_id':'toolu_2','content':[{'type':'text','text':'Error: clock'},"
        "{'type':'text','text':'down'}]},"
        "{'role':'user','content':'Thanks'},"
        "{'role':'assistant','content':null,'tool_calls':[{'id':'toolu_3','type':'function',"
        "'function':{'name':'now','arguments':'{}'}}]},"
        "{'role':'tool','tool_call_id':'toolu_3','content':''},"
        "{'role':'tool','tool_call_id':'toolu_3b','content':'Error: boom'},"
        "{'role':'tool','tool_call_id':'toolu_3c','content':'ok'}],'max_tokens':100}");
    /* Anthropic's rule: results first in their turn */
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'text','text':'x'},"
                       "{'type':'tool_result','tool_use_id':'t'}]}]}",
                  "messages");
    /* an OpenAI tool message carries text only */
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'tool_result','tool_use_id':"
                       "'t','content':[{'type':'image','source':{'type':'url','url':'https://x'}}"
                       "]}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'tool_result'}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'assistant','content':[{'type':'tool_use','id':'t',"
                       "'name':'f','input':[1]}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'document','source':{}}]}]}",
                  "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'assistant','content':[{'type':'server_tool_use',"
                       "'id':'s','name':'web_search','input':{}}]}]}",
                  "messages");
    /* a system turn among the messages (Claude Code sends one) stays a system message where it
     * stood; a role that is none of the three does not */
    CHECK_OPENAI(HEAD "'messages':[{'role':'user','content':'a'},{'role':'system','content':"
                      "[{'type':'text','text':'s','cache_control':{'type':'ephemeral'}}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'a'},{'role':'system',"
                 "'content':'s'}],'max_tokens':100}");
    CHECK_REFUSED(HEAD "'messages':[{'role':'tool','content':'x'}]}", "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':5}]}", "messages");
    CHECK_REFUSED(HEAD "'messages':[{'role':'user','content':[{'type':'text'}]}]}", "messages");
    /* nothing but reasoning left to send */
    CHECK_REFUSED(HEAD "'messages':[{'role':'assistant','content':[{'type':'thinking',"
                       "'thinking':'t','signature':'s'}]}]}",
                  "messages");
}

#define TOOLS                                                                                      \
    "'tools':[{'name':'get_weather','description':'Weather','input_schema':{'type':'object',"      \
    "'properties':{'city':{'type':'string'}}},'cache_control':{'type':'ephemeral'}},"              \
    "{'type':'custom','name':'now','input_schema':{'type':'object'}}]"
#define TOOLS_OUT                                                                                  \
    "'tools':[{'type':'function','function':{'name':'get_weather','description':'Weather',"        \
    "'parameters':{'type':'object','properties':{'city':{'type':'string'}}}}},{'type':"            \
    "'function','function':{'name':'now','parameters':{'type':'object'}}}]"
#define OUT_HEAD "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100,"

static void test_tools(void)
{
    CHECK_OPENAI(HEAD USER_HI "," TOOLS "}", OUT_HEAD TOOLS_OUT "}");
    CHECK_OPENAI(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'auto'}}",
                 OUT_HEAD TOOLS_OUT ",'tool_choice':'auto'}");
    CHECK_OPENAI(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'any'}}",
                 OUT_HEAD TOOLS_OUT ",'tool_choice':'required'}");
    CHECK_OPENAI(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'tool','name':'now',"
                              "'disable_parallel_tool_use':true}}",
                 OUT_HEAD TOOLS_OUT ",'tool_choice':{'type':'function','function':{'name':'now'}},"
                                    "'parallel_tool_calls':false}");
    CHECK_OPENAI(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'auto',"
                              "'disable_parallel_tool_use':true}}",
                 OUT_HEAD TOOLS_OUT ",'tool_choice':'auto','parallel_tool_calls':false}");
    CHECK_OPENAI(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'none',"
                              "'disable_parallel_tool_use':true}}",
                 OUT_HEAD TOOLS_OUT ",'tool_choice':'none'}");
    /* no tools: auto and none mean nothing, OpenAI refuses tool_choice without tools */
    CHECK_OPENAI(HEAD USER_HI ",'tools':[],'tool_choice':{'type':'auto'}}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    CHECK_REFUSED(HEAD USER_HI ",'tool_choice':{'type':'any'}}", "tool_choice");
    CHECK_REFUSED(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'tool'}}", "tool_choice");
    CHECK_REFUSED(HEAD USER_HI "," TOOLS ",'tool_choice':'auto'}", "tool_choice");
    CHECK_REFUSED(HEAD USER_HI "," TOOLS ",'tool_choice':{'type':'auto',"
                               "'disable_parallel_tool_use':1}}",
                  "tool_choice");
    /* server tools run only at Anthropic */
    CHECK_REFUSED(HEAD USER_HI ",'tools':[{'type':'web_search_20250305','name':'web_search'}]}",
                  "tools");
    CHECK_REFUSED(HEAD USER_HI ",'tools':[{'type':'bash_20250124','name':'bash'}]}", "tools");
    CHECK_REFUSED(HEAD USER_HI ",'tools':[{'name':'f'}]}", "tools");
    CHECK_REFUSED(HEAD USER_HI ",'tools':{}}", "tools");
}

#define THINK(budget)                                                                              \
    "{'model':'gpt-x','max_tokens':40000," USER_HI ",'thinking':{'type':'enabled',"                \
    "'budget_tokens':" budget "}}"
#define THINK_OUT(effort)                                                                          \
    "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':40000,"             \
    "'reasoning_effort':'" effort "'}"

/* Budgets to the nearest of the Anthropic adapter's (1024 low, 4096 medium, 16384 high). */
static void test_thinking(void)
{
    CHECK_OPENAI(THINK("1024"), THINK_OUT("low"));
    CHECK_OPENAI(THINK("2047"), THINK_OUT("low"));
    CHECK_OPENAI(THINK("2048"), THINK_OUT("medium"));
    CHECK_OPENAI(THINK("4096"), THINK_OUT("medium"));
    CHECK_OPENAI(THINK("8191"), THINK_OUT("medium"));
    CHECK_OPENAI(THINK("8192"), THINK_OUT("high"));
    CHECK_OPENAI(THINK("31999"), THINK_OUT("high"));
    CHECK_OPENAI(THINK("1.6e4"), THINK_OUT("high"));
    CHECK_OPENAI(HEAD USER_HI ",'thinking':{'type':'disabled'}}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    CHECK_OPENAI(HEAD USER_HI ",'thinking':{'type':'adaptive'}}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    /* output_config.effort says it directly */
    CHECK_OPENAI("{'model':'gpt-x','max_tokens':40000," USER_HI ",'thinking':{'type':'adaptive'},"
                 "'output_config':{'effort':'low'}}",
                 THINK_OUT("low"));
    CHECK_REFUSED(THINK("1023"), "thinking");
    CHECK_REFUSED(THINK("'4096'"), "thinking");
    CHECK_REFUSED(THINK("4096.5"), "thinking");
    CHECK_REFUSED(HEAD USER_HI ",'thinking':{'type':'on'}}", "thinking");
    CHECK_REFUSED(HEAD USER_HI ",'output_config':{'effort':'max'}}", "output_config");
    CHECK_REFUSED(HEAD USER_HI ",'output_config':{'format':{'type':'json_schema'}}}",
                  "output_config");
}

/* stop_sequences -> stop; stream -> stream with usage (Anthropic streams always report it). */
static void test_stop_stream(void)
{
    CHECK_OPENAI(HEAD USER_HI ",'stop_sequences':['END','\\n\\nHuman:'],'stream':true}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100,"
                 "'stop':['END','\\n\\nHuman:'],'stream':true,'stream_options':{'include_usage':"
                 "true}}");
    CHECK_OPENAI(HEAD USER_HI ",'stop_sequences':[]}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    CHECK_REFUSED(HEAD USER_HI ",'stop_sequences':'END'}", "stop_sequences");
    CHECK_REFUSED(HEAD USER_HI ",'stop_sequences':[1]}", "stop_sequences");
}

/* What changes the answer and cannot be translated: the 400 naming it. */
static void test_refused_fields(void)
{
    CHECK_REFUSED(HEAD USER_HI ",'top_k':40}", "top_k");
    CHECK_REFUSED(HEAD USER_HI ",'container':'c_1'}", "container");
    CHECK_REFUSED(HEAD USER_HI ",'mcp_servers':[{'type':'url','url':'https://m','name':'m'}]}",
                  "mcp_servers");
    /* context editing (Claude Code sends it on every request) only trims old tool results near
     * the context limit: dropped, the provider sees the whole conversation */
    CHECK_OPENAI(HEAD USER_HI
                 ",'context_management':{'edits':[{'type':'clear_thinking_20251015'}]}}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    CHECK_REFUSED(HEAD USER_HI ",'output_format':{'type':'json_schema'}}", "output_format");
    CHECK_REFUSED(HEAD USER_HI ",'temperature':1.5}", "temperature");
    CHECK_REFUSED(HEAD USER_HI ",'top_p':'x'}", "top_p");
    CHECK_REFUSED(HEAD USER_HI ",'metadata':{'user_id':5}}", "metadata");
    /* unknown: named in the message (param is a static string) */
    {
        dialect_refusal why;
        CHECK_EQ_INT(rewrite(HEAD USER_HI ",'frobnicate':1}", &why), -1);
        CHECK_EQ_INT(why.status, 400);
        CHECK(why.param == NULL);
        CHECK(strstr(why.message, "'frobnicate'") != NULL);
    }
    /* an integer beyond 64 bits (valid JSON, which a jansson tree could not hold): judged as
     * the number it is where a range applies, carried as written where the client's JSON
     * passes through (a tool's input) */
    CHECK_REFUSED(HEAD USER_HI ",'temperature':123456789012345678901234567890}", "temperature");
    CHECK_OPENAI(HEAD "'messages':[{'role':'assistant','content':[{'type':'tool_use','id':'t1',"
                      "'name':'n','input':{'big':123456789012345678901234567890}}]}]}",
                 "{'model':'gpt-x','messages':[{'role':'assistant','content':null,'tool_calls':"
                 "[{'id':'t1','type':'function','function':{'name':'n','arguments':"
                 "'{\\'big\\':123456789012345678901234567890}'}}]}],'max_tokens':100}");
}

/* The rewrite reads the client's tokens in place: names and values compared decoded (escapes
 * as jansson reads them), the last of a name given twice wins, white space between tokens is
 * not carried over (the output is compact), and the client's strings and numbers reach the
 * provider as written (escapes kept); a tool's input, compacted, is its arguments string. */
static void test_tokens(void)
{
    CHECK_OPENAI(
        " {\n  'model' : 'gpt-x' ,\n  'max_tokens' : 100 ,\n  'messages' : [\n"
        "   { 'r\\u006fle' : 'assistant' , 'role' : 'us\\u0065r' ,\n"
        "     'content' : [ { 'type' : 't\\u0065xt' , 'text' : 'caf\\u00e9\\n\\/' } ] } ,\n"
        "   { 'role' : 'assistant' , 'content' : [ { 'type' : 'tool_use' , 'id' : 'a' ,"
        " 'name' : 'f' , 'input' : { 'k' : [ 1 , 2.50 , { 'z' : 'a b \\'q\\' \\\\' } ] ,"
        " 'e' : 1E2 } } ] }\n  ] ,\n  'stop_sequences' : [ 'x' , 'y z' ] ,"
        " 'temperature' : 5e-1 ,\n  'tools' : [ { 'name' : 'f' , 'input_schema' :"
        " { 'type' : 'object' , 'properties' : { } } } ]\n } ",
        "{'model':'gpt-x','messages':[{'role':'user','content':'caf\\u00e9\\n\\/'},"
        "{'role':'assistant','content':null,'tool_calls':[{'id':'a','type':'function',"
        "'function':{'name':'f','arguments':'{\\'k\\':[1,2.50,{\\'z\\':\\'a b "
        "\\\\\\'q\\\\\\' \\\\\\\\\\'}],\\'e\\':1E2}'}}]}],'max_tokens':100,"
        "'stop':['x','y z'],'temperature':5e-1,'tools':[{'type':'function','function':"
        "{'name':'f','parameters':{'type':'object','properties':{}}}}]}");
    /* the last of a name given twice, in nested objects too */
    CHECK_OPENAI(HEAD USER_HI ",'metadata':{'user_id':'a','user_id':'b'},"
                              "'output_config':{'effort':'max','effort':'low'}}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100,"
                 "'reasoning_effort':'low','user':'b'}");
    CHECK_REFUSED(HEAD USER_HI ",'top_k':null,'top_k':3}", "top_k");
    CHECK_OPENAI(HEAD USER_HI ",'top_k':3,'top_k':null}",
                 "{'model':'gpt-x','messages':[{'role':'user','content':'Hi'}],'max_tokens':100}");
    /* a refused block's type named decoded in the message, cut to 40 bytes */
    {
        dialect_refusal why;
        CHECK_EQ_INT(rewrite(HEAD "'messages':[{'role':'user','content':[{'type':"
                                  "'d\\u006fcument'}]}]}",
                             &why),
                     -1);
        CHECK(strstr(why.message, "'document' block") != NULL);
        char body[1024];
        snprintf(body, sizeof body,
                 HEAD "'messages':[{'role':'user','content':[{'type':'%s\\u00e9%0300d'}]}]}",
                 "abcdefghijklmnopqrstuvwxyz0123456789ab", 7);
        CHECK_EQ_INT(rewrite(body, &why), -1);
        CHECK(strstr(why.message, "'abcdefghijklmnopqrstuvwxyz0123456789ab\xc3\xa9' block") !=
              NULL);
    }
}

/* Output that passes its buffer's limit: nothing half-written, why->status 0. */
static void test_out_limit(void)
{
    prov_call *c = malloc(sizeof *c);
    dialect_refusal why;
    char shown[256];
    const char *b = q(HEAD USER_HI "}");
    CHECK_EQ_INT(parse(c, b, strlen(b), &why, shown), 0);
    buf_t out;
    buf_init(&out, 20);
    buf_appends(&out, "x");
    CHECK_EQ_INT(dialect_anthropic_to_openai(c, &out, &why), -1);
    CHECK_EQ_INT(why.status, 0);
    CHECK_EQ_INT(out.len, 1);
    buf_free(&out);
    free(c);
}

/* ---- round trip through the Anthropic adapter ---- */

/* The parts of a Messages request both translations keep, in one form: strings as text blocks,
 * no cache_control, no thinking blocks, no custom tool type, no stream: false. */
static void normalize_blocks(json_t *content)
{
    for (size_t i = 0; i < json_array_size(content);) {
        json_t *b = json_array_get(content, i);
        const char *t = json_string_value(json_object_get(b, "type"));
        if (t && (strcmp(t, "thinking") == 0 || strcmp(t, "redacted_thinking") == 0)) {
            json_array_remove(content, i);
            continue;
        }
        json_object_del(b, "cache_control");
        json_t *c = json_object_get(b, "content");
        if (json_is_string(c) && json_string_length(c) == 0) json_object_del(b, "content");
        c = json_object_get(b, "content");
        if (json_is_string(c))
            json_object_set_new(b, "content", json_pack("[{s:s,s:O}]", "type", "text", "text", c));
        normalize_blocks(json_object_get(b, "content"));
        i++;
    }
}

static json_t *as_blocks(json_t *v)
{
    if (json_is_string(v)) return json_pack("[{s:s,s:O}]", "type", "text", "text", v);
    return json_incref(v);
}

static void normalize(json_t *r)
{
    json_object_del(r, "model");
    if (json_is_false(json_object_get(r, "stream"))) json_object_del(r, "stream");
    json_t *s = json_object_get(r, "system");
    if (s) {
        json_object_set_new(r, "system", as_blocks(s));
        normalize_blocks(json_object_get(r, "system"));
    }
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r, "messages"), i, m)
    {
        json_object_set_new(m, "content", as_blocks(json_object_get(m, "content")));
        normalize_blocks(json_object_get(m, "content"));
    }
    json_array_foreach(json_object_get(r, "tools"), i, m)
    {
        json_object_del(m, "cache_control");
        json_object_del(m, "type");
    }
}

static void round_trip(const char *anthropic)
{
    const char *a = q(anthropic);
    char orig[8192];
    snprintf(orig, sizeof orig, "%s", a);
    prov_call *c = malloc(sizeof *c);
    dialect_refusal why;
    char shown[256];
    CHECK_EQ_INT(parse(c, orig, strlen(orig), &why, shown), 0);
    buf_t oai;
    buf_init(&oai, 1u << 20);
    CHECK_EQ_INT(dialect_anthropic_to_openai(c, &oai, &why), 0);
    int64_t max_tokens = c->max_tokens;
    /* the OpenAI body as a client of the OpenAI dialect would send it, to claude-x */
    c->body = (ms_str){oai.data, oai.len};
    int rc = dialect_openai_parse(&g_cfg, EP_CHAT, c, shown, sizeof shown, &why);
    CHECK_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "  openai parse refused: %s\n", why.message);
    c->dep = &g_dep[0];
    c->output_bound = max_tokens;
    prov_upreq u;
    memset(&u, 0, sizeof u);
    rc = rc ? rc : prov_anthropic.build(c, NULL, &u, &why);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        json_t *want = json_loads(orig, 0, NULL);
        json_t *got = json_loadb(u.iov[0].base, u.iov[0].len, 0, NULL);
        CHECK(want && got);
        normalize(want);
        normalize(got);
        CHECK(json_equal(want, got));
        if (!json_equal(want, got)) {
            char *w = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
            char *g = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT);
            fprintf(stderr, "  want %s\n  got  %s\n", w, g);
            free(w);
            free(g);
        }
        json_decref(want);
        json_decref(got);
    } else {
        fprintf(stderr, "  refused: %s\n", why.message);
    }
    prov_upreq_free(&u);
    buf_free(&oai);
    free(c);
}

static void test_round_trip(void)
{
    round_trip("{'model':'claude-x','max_tokens':300,'system':'Be brief.','messages':["
               "{'role':'user','content':'Hi'},{'role':'assistant','content':'Hello.'},"
               "{'role':'user','content':[{'type':'text','text':'Two'},{'type':'text','text':"
               "'parts'}]}],'temperature':0.7,'top_p':0.9,'metadata':{'user_id':'u-1'},"
               "'stop_sequences':['END'],'stream':true}");
    round_trip("{'model':'claude-x','max_tokens':300,'system':[{'type':'text','text':'A',"
               "'cache_control':{'type':'ephemeral'}},{'type':'text','text':'B'}],'messages':["
               "{'role':'user','content':[{'type':'text','text':'What?'},{'type':'image',"
               "'source':{'type':'base64','media_type':'image/png','data':'iVBORw0KGgo='}},"
               "{'type':'image','source':{'type':'url','url':'https://x.test/a.jpg'}}]}]}");
    round_trip("{'model':'claude-x','max_tokens':300,'messages':["
               "{'role':'user','content':'Weather in Paris?'},"
               "{'role':'assistant','content':[{'type':'thinking','thinking':'t','signature':'s'},"
               "{'type':'text','text':'Checking.'},{'type':'tool_use','id':'toolu_1','name':"
               "'get_weather','input':{'city':'Paris','days':2,'t':0.1,'deep':{'a':[1,null]}}},"
               "{'type':'tool_use','id':'toolu_2','name':'now','input':{}}]},"
               "{'role':'user','content':[{'type':'tool_result','tool_use_id':'toolu_1','content':"
               "'Sunny'},{'type':'tool_result','tool_use_id':'toolu_2','content':[{'type':'text',"
               "'text':'a'},{'type':'text','text':'b'}]},{'type':'tool_result','tool_use_id':"
               "'toolu_2','content':''},{'type':'text','text':'Thanks'}]}]," TOOLS
               ",'tool_choice':{'type':'any','disable_parallel_tool_use':true}}");
    round_trip("{'model':'claude-x','max_tokens':300," USER_HI "," TOOLS
               ",'tool_choice':{'type':'tool','name':'now'}}");
    round_trip("{'model':'claude-x','max_tokens':300," USER_HI "," TOOLS
               ",'tool_choice':{'type':'none'}}");
    round_trip("{'model':'claude-x','max_tokens':40000," USER_HI
               ",'thinking':{'type':'enabled','budget_tokens':4096},'stream':false}");
    round_trip("{'model':'claude-x','max_tokens':40000," USER_HI
               ",'thinking':{'type':'enabled','budget_tokens':16384}}");
    round_trip("{'model':'claude-x','max_tokens':40000," USER_HI
               ",'thinking':{'type':'enabled','budget_tokens':1024}}");
}

/* A body is taken as valid (prov_call.valid) only once the scan has accepted it: a stale mark
 * from the call's last use never spares a client's body its validation; the hub body the
 * gateway writes is parsed without a second validation, to the same members. */
static void test_valid_marks(void)
{
    static const char body[] = "{'model':'claude-x','max_tokens':300,'system':'Be brief.'," USER_HI
                               ",'metadata':{'user_id':'u'},'stream':true}";
    prov_call *c = malloc(sizeof *c), *h[2] = {malloc(sizeof **h), malloc(sizeof **h)};
    dialect_refusal why;
    char shown[256];
    CHECK_EQ_INT(parse(c, q(body), strlen(q(body)), &why, shown), 0);
    CHECK(prov_body_valid(c));
    /* the same address and length, other bytes (not JSON): refused all the same */
    static char bad[] = "{\"model\":\"claude-x\",\"max_tokens\":5,\"messages\":[{]}";
    for (int d = 0; d < 2; d++) {
        memset(h[0], 0, sizeof *h[0]);
        h[0]->body = h[0]->valid = (ms_str){bad, strlen(bad)};
        int rc = d ? dialect_openai_parse(&g_cfg, EP_CHAT, h[0], shown, sizeof shown, &why)
                   : dialect_anthropic_parse(&g_cfg, h[0], shown, sizeof shown, &why);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(why.code, "invalid_json");
    }
    /* the hub body, parsed both ways: the same members */
    buf_t oai;
    buf_init(&oai, 1u << 20);
    CHECK_EQ_INT(dialect_anthropic_to_openai(c, &oai, &why), 0);
    for (int v = 0; v < 2; v++) {
        memset(h[v], 0xa5, sizeof *h[v]);
        snprintf(h[v]->request_id, sizeof h[v]->request_id, "req_t");
        h[v]->body = (ms_str){oai.data, oai.len};
        int rc = v ? dialect_openai_parse_valid(&g_cfg, EP_CHAT, h[v], shown, sizeof shown, &why)
                   : dialect_openai_parse(&g_cfg, EP_CHAT, h[v], shown, sizeof shown, &why);
        CHECK_EQ_INT(rc, 0);
        CHECK(prov_body_valid(h[v]));
        CHECK(h[v]->model == &g_models[0]);
        CHECK_EQ_INT(h[v]->max_tokens, 300);
        CHECK_EQ_INT(h[v]->stream, 1);
    }
    CHECK_EQ_INT(h[0]->nmembers, h[1]->nmembers);
    for (size_t i = 0; i < h[0]->nmembers && i < h[1]->nmembers; i++) {
        const jscan_member *a = &h[0]->members[i], *b = &h[1]->members[i];
        CHECK(a->key.p == b->key.p && a->key.n == b->key.n && a->value.p == b->value.p &&
              a->value.n == b->value.n && a->type == b->type);
    }
    buf_free(&oai);
    free(c);
    free(h[0]);
    free(h[1]);
}

int main(void)
{
    RUN(test_parse_errors);
    RUN(test_parse_models);
    RUN(test_system_string);
    RUN(test_system_blocks);
    RUN(test_multi_turn);
    RUN(test_images);
    RUN(test_tool_round_trip);
    RUN(test_tools);
    RUN(test_thinking);
    RUN(test_stop_stream);
    RUN(test_refused_fields);
    RUN(test_tokens);
    RUN(test_out_limit);
    RUN(test_round_trip);
    RUN(test_valid_marks);
    /* every translation above had its members compared (translate) */
    CHECK(g_listed_checked >= 30);
    printf("# %d translations' listed members compared with the scan\n", g_listed_checked);
    TAP_DONE();
}
