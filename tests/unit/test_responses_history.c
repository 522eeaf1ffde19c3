/*
 * Tests of the Responses API's conversation state (src/dialect/openai_responses_history.c and
 * the parse of store / previous_response_id in openai_responses_request.c): what a request asks
 * of the store, the response object found in a whole answer and in a terminal event, the history
 * kept after a response (input items, then the output as a client sends it back: no ids, no
 * reasoning, function calls by call_id), and a continuation made whole (history before the
 * input, previous_response_id nulled, in either member order), which the rewrite into the hub
 * format then accepts; item_reference items resolved from stored responses (the encoder's item
 * ids name their response), the others left as they came. JSON is written with ' for " (q() swaps
 * them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/responses_request.h"
#include "providers/provider.h"
#include "tap.h"
#include "quote.h"

static cfg_provider g_prov = {.name = (char *)"oai",
                              .kind = PROV_OPENAI,
                              .base_url = (char *)"http://o.example",
                              .api_key = (char *)"k",
                              .enabled = 1};
static cfg_deployment g_dep = {.provider = &g_prov, .model = (char *)"gpt-up", .weight = 1};
static cfg_model g_model = {.name = (char *)"gpt-x", .deployments = &g_dep, .ndeployments = 1};
static cfg_t g_cfg = {.models = &g_model, .nmodels = 1, .default_max_output_tokens = 4096};

static prov_call g_call;
static char g_body[8192];

static int parse(const char *body, dialect_responses_state *st, dialect_refusal *why)
{
    snprintf(g_body, sizeof g_body, "%s", q(body));
    memset(&g_call, 0, sizeof g_call);
    snprintf(g_call.request_id, sizeof g_call.request_id, "req_t");
    g_call.body = (ms_str){g_body, strlen(g_body)};
    memset(why, 0, sizeof *why);
    return dialect_responses_parse(&g_cfg, &g_call, NULL, 0, st, why);
}

static int str_eq(ms_str v, const char *s)
{
    return v.n == strlen(s) && memcmp(v.p, s, v.n) == 0;
}

static void test_state(void)
{
    dialect_responses_state st;
    dialect_refusal why;
    CHECK_EQ_INT(parse("{'model':'gpt-x','input':'hi'}", &st, &why), 0);
    CHECK_EQ_INT(st.store, 1); /* the API's default */
    CHECK_EQ_INT(st.has_previous, 0);
    CHECK(str_eq(st.input, q("'hi'")));
    CHECK_EQ_INT(
        parse("{'model':'gpt-x','input':[{'role':'user','content':'a'}],'store':false}", &st, &why),
        0);
    CHECK_EQ_INT(st.store, 0);
    CHECK(str_eq(st.input, q("[{'role':'user','content':'a'}]")));
    CHECK_EQ_INT(
        parse("{'model':'gpt-x','input':'hi','store':null,'previous_response_id':null}", &st, &why),
        0);
    CHECK_EQ_INT(st.store, 1);
    CHECK_EQ_INT(st.has_previous, 0);
    CHECK_EQ_INT(
        parse("{'model':'gpt-x','input':'hi','previous_response_id':'resp_a-B_9'}", &st, &why), 0);
    CHECK_EQ_INT(st.has_previous, 1);
    CHECK_EQ_STR(st.previous, "resp_a-B_9");
    CHECK(str_eq(st.previous_value, q("'resp_a-B_9'")));
    /* escapes are decoded; what cannot be an id is kept as "" (not found, no lookup) */
    CHECK_EQ_INT(
        parse("{'model':'gpt-x','input':'hi','previous_response_id':'resp\\u005fx'}", &st, &why),
        0);
    CHECK_EQ_STR(st.previous, "resp_x");
    CHECK_EQ_INT(parse("{'model':'gpt-x','input':'hi','previous_response_id':'resp x'}", &st, &why),
                 0);
    CHECK_EQ_INT(st.has_previous, 1);
    CHECK_EQ_STR(st.previous, "");
    char long_id[400];
    snprintf(long_id, sizeof long_id,
             "{'model':'gpt-x','input':'hi','previous_response_id':'%0200d'}", 7);
    CHECK_EQ_INT(parse(long_id, &st, &why), 0);
    CHECK_EQ_STR(st.previous, "");
    CHECK_EQ_INT(parse("{'model':'gpt-x','input':'hi','previous_response_id':['r']}", &st, &why),
                 -1);
    CHECK_EQ_STR(why.param, "previous_response_id");
    CHECK_EQ_INT(parse("{'model':'gpt-x','input':'hi','store':'yes'}", &st, &why), -1);
    CHECK_EQ_STR(why.param, "store");
}

static void test_object(void)
{
    ms_str obj;
    char id[64];
    const char *whole = q("{'id':'resp_1','object':'response','output':[]}");
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(whole), 0, &obj, id, sizeof id), 0);
    CHECK_EQ_STR(id, "resp_1");
    CHECK(obj.p == whole && obj.n == strlen(whole));
    const char *ev = q("{'type':'response.completed','sequence_number':9,'response':{'id':'resp_"
                       "2','status':'completed'}}");
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(ev), 1, &obj, id, sizeof id), 0);
    CHECK_EQ_STR(id, "resp_2");
    CHECK(str_eq(obj, q("{'id':'resp_2','status':'completed'}")));
    /* no id, a bad id, an id too long, an event without a response: nothing to keep */
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(q("{'object':'response'}")), 0, &obj, id, 64),
                 -1);
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(q("{'id':'a/b'}")), 0, &obj, id, 64), -1);
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(q("{'id':'resp_1234567'}")), 0, &obj, id, 8),
                 -1);
    CHECK_EQ_INT(dialect_responses_object(ms_str_c(q("{'type':'error'}")), 1, &obj, id, 64), -1);
    CHECK_EQ_INT(dialect_responses_object(ms_str_c("not json"), 0, &obj, id, 64), -1);
}

static void check_history(const char *input, const char *response, const char *want)
{
    buf_t b;
    buf_init(&b, 0);
    CHECK_EQ_INT(dialect_responses_history(ms_str_c(q(input)), ms_str_c(q(response)), &b), 0);
    CHECK_EQ_STR(b.data ? b.data : "", q(want));
    buf_free(&b);
}

static void test_history(void)
{
    /* a string input is one user turn; the message's id, status and annotations stay behind */
    check_history("'hi'",
                  "{'id':'resp_1','output':[{'type':'message','id':'msg_1','status':'completed',"
                  "'role':'assistant','content':[{'type':'output_text','text':'yo',"
                  "'annotations':[]}]}]}",
                  "[{'role':'user','content':'hi'},{'role':'assistant','content':[{'type':'"
                  "output_text','text':'yo'}]}]");
    /* items as they came; reasoning and built-in tool items left out; calls by call_id */
    check_history(
        "[{'type':'message','role':'user','content':[{'type':'input_text','text':'w?'}]}]",
        "{'id':'resp_2','output':[{'type':'reasoning','id':'rs_1','summary':[]},"
        "{'type':'web_search_call','id':'ws_1','status':'completed'},"
        "{'type':'function_call','id':'fc_1','call_id':'call_9','name':'wx','arguments':'{}',"
        "'status':'completed'},{'type':'message','role':'assistant','content':[{'type':'refusal',"
        "'refusal':'no'}]}]}",
        "[{'type':'message','role':'user','content':[{'type':'input_text','text':'w?'}]},"
        "{'type':'function_call','call_id':'call_9','name':'wx','arguments':'{}'},"
        "{'role':'assistant','content':[{'type':'refusal','refusal':'no'}]}]");
    /* a message without text adds nothing; an empty output keeps the input */
    check_history("'x'",
                  "{'id':'r','output':[{'type':'message','content':[]},{'type':'function_call'}]}",
                  "[{'role':'user','content':'x'}]");
    check_history("'\\u00e9'", "{'id':'r'}", "[{'role':'user','content':'\xc3\xa9'}]");
    buf_t b;
    buf_init(&b, 0);
    CHECK_EQ_INT(dialect_responses_history(ms_str_c("5"), ms_str_c("{}"), &b), -1);
    CHECK_EQ_INT(dialect_responses_history(ms_str_c("'x"), ms_str_c("{}"), &b), -1);
    CHECK_EQ_INT(dialect_responses_history(ms_str_c("\"x\""), ms_str_c("[]"), &b), -1);
    buf_free(&b);
    buf_init(&b, 16); /* the limit holds */
    CHECK_EQ_INT(dialect_responses_history(ms_str_c(q("'a long enough input'")),
                                           ms_str_c(q("{'id':'r'}")), &b),
                 -1);
    buf_free(&b);
}

/* body parsed, then made whole with history; the result must parse with no previous id */
static void check_continue(const char *body, const char *history, const char *want)
{
    dialect_responses_state st;
    dialect_refusal why;
    CHECK_EQ_INT(parse(body, &st, &why), 0);
    CHECK_EQ_INT(st.has_previous, 1);
    buf_t b;
    buf_init(&b, 0);
    CHECK_EQ_INT(dialect_responses_continue(g_call.body, st.input, st.previous_value,
                                            ms_str_c(q(history)), &b),
                 0);
    CHECK_EQ_STR(b.data ? b.data : "", q(want));
    char copy[8192];
    snprintf(copy, sizeof copy, "%s", b.data ? b.data : "");
    buf_free(&b);
    for (char *p = copy; *p; p++) /* parse() swaps ' back */
        if (*p == '"') *p = '\'';
    CHECK_EQ_INT(parse(copy, &st, &why), 0);
    CHECK_EQ_INT(st.has_previous, 0);
    /* and the hub rewrite takes the whole conversation */
    buf_init(&b, 0);
    CHECK_EQ_INT(dialect_responses_to_openai(&g_call, &b, &why), 0);
    buf_free(&b);
}

static void test_continue(void)
{
    const char *h = "[{'role':'user','content':'hi'},{'role':'assistant','content':[{'type':'"
                    "output_text','text':'yo'}]}]";
    check_continue("{'model':'gpt-x','previous_response_id':'resp_1','input':'more'}", h,
                   "{'model':'gpt-x','previous_response_id':null,'input':[{'role':'user','"
                   "content':'hi'},{'role':'assistant','content':[{'type':'output_text','text':'"
                   "yo'}]},{'role':'user','content':'more'}]}");
    check_continue("{'model':'gpt-x','input':[ {'role':'user','content':'a'} ],"
                   "'previous_response_id':'resp_1','store':false}",
                   h,
                   "{'model':'gpt-x','input':[{'role':'user','content':'hi'},{'role':'assistant',"
                   "'content':[{'type':'output_text','text':'yo'}]},{'role':'user','content':'a'"
                   "}],'previous_response_id':null,'store':false}");
    /* a function call answered in the continuation */
    check_continue(
        "{'model':'gpt-x','input':[{'type':'function_call_output','call_id':'c1','output':'7'}],"
        "'previous_response_id':'resp_1'}",
        "[{'role':'user','content':'w?'},{'type':'function_call','call_id':'c1','name':'wx',"
        "'arguments':'{}'}]",
        "{'model':'gpt-x','input':[{'role':'user','content':'w?'},{'type':'function_call','call_"
        "id':'c1','name':'wx','arguments':'{}'},{'type':'function_call_output','call_id':'c1','"
        "output':'7'}],'previous_response_id':null}");
    check_continue("{'model':'gpt-x','input':'x','previous_response_id':'r'}", " [ ] ",
                   "{'model':'gpt-x','input':[{'role':'user','content':'x'}],"
                   "'previous_response_id':null}");
    /* not an array, or past the limit */
    dialect_responses_state st;
    dialect_refusal why;
    CHECK_EQ_INT(parse("{'model':'gpt-x','input':'x','previous_response_id':'r'}", &st, &why), 0);
    buf_t b;
    buf_init(&b, 0);
    CHECK_EQ_INT(
        dialect_responses_continue(g_call.body, st.input, st.previous_value, ms_str_c("{}"), &b),
        -1);
    buf_free(&b);
    buf_init(&b, 20);
    CHECK_EQ_INT(
        dialect_responses_continue(g_call.body, st.input, st.previous_value, ms_str_c("[]"), &b),
        -1);
    buf_free(&b);
}

static void test_item_response(void)
{
    char r[64];
    CHECK_EQ_INT(dialect_responses_item_response("msg_ab12_0", r, sizeof r), 0);
    CHECK_EQ_STR(r, "resp_ab12");
    CHECK_EQ_INT(dialect_responses_item_response("fc_ab_12_3", r, sizeof r), 0);
    CHECK_EQ_STR(r, "resp_ab_12");
    CHECK_EQ_INT(dialect_responses_item_response("rs_x_10", r, sizeof r), 0);
    CHECK_EQ_STR(r, "resp_x");
    /* OpenAI's own ids, other kinds, no index, no hex, too long */
    CHECK_EQ_INT(dialect_responses_item_response("msg_67ccd3acc8d48190", r, sizeof r), -1);
    CHECK_EQ_INT(dialect_responses_item_response("ws_ab_0", r, sizeof r), -1);
    CHECK_EQ_INT(dialect_responses_item_response("msg_ab_", r, sizeof r), -1);
    CHECK_EQ_INT(dialect_responses_item_response("msg__0", r, sizeof r), -1);
    CHECK_EQ_INT(dialect_responses_item_response("msg_ab_1x", r, sizeof r), -1);
    CHECK_EQ_INT(dialect_responses_item_response("msg_abcdefgh_0", r, 8), -1);
}

static const char *g_stored; /* the one response the lookup knows, resp_h */
static int g_lookups;

static int lookup(void *ud, const char *resp_id, ms_str *response)
{
    (void)ud;
    g_lookups++;
    if (strcmp(resp_id, "resp_h") != 0) return -1;
    *response = ms_str_c(g_stored);
    return 0;
}

static void test_resolve(void)
{
    g_stored = q("{'id':'resp_h','output':[{'type':'reasoning','id':'rs_h_0','summary':[]},"
                 "{'type':'message','id':'msg_h_1','role':'assistant','content':[{'type':'"
                 "output_text','text':'let me look','annotations':[]}]},{'type':'function_call',"
                 "'id':'fc_h_2','call_id':'call_7','name':'wx','arguments':'{}'}]}");
    buf_t b;
    buf_init(&b, 0);
    /* the message and the call resolved, the reasoning dropped; others stay as they came */
    const char *in = q("[{'role':'user','content':'w?'},{'type':'item_reference','id':'rs_h_0'},"
                       "{'type':'item_reference','id':'msg_h_1'},{'type':'item_reference','id':'"
                       "fc_h_2'},{'type':'function_call_output','call_id':'call_7','output':'8'},"
                       "{'type':'item_reference','id':'msg_67cc'},{'type':'item_reference','id':'"
                       "msg_other_0'}]");
    g_lookups = 0;
    CHECK_EQ_INT(dialect_responses_resolve(ms_str_c(in), lookup, NULL, &b), 0);
    CHECK_EQ_STR(b.data ? b.data : "",
                 q("[{'role':'user','content':'w?'},{'role':'assistant','content':[{'type':'"
                   "output_text','text':'let me look'}]},{'type':'function_call','call_id':'call_"
                   "7','name':'wx','arguments':'{}'},{'type':'function_call_output','call_id':'"
                   "call_7','output':'8'},{'type':'item_reference','id':'msg_67cc'},{'type':'"
                   "item_reference','id':'msg_other_0'}]"));
    CHECK_EQ_INT(g_lookups, 4);
    buf_reset(&b);
    /* nothing resolved: 1, out untouched; not an array: -1 */
    CHECK_EQ_INT(dialect_responses_resolve(
                     ms_str_c(q("[{'type':'item_reference','id':'msg_h_9'},'item_reference']")),
                     lookup, NULL, &b),
                 1);
    CHECK_EQ_INT(b.len, 0);
    CHECK_EQ_INT(dialect_responses_resolve(ms_str_c(q("'item_reference'")), lookup, NULL, &b), -1);
    buf_free(&b);
}

static void test_splice(void)
{
    const char *body = q("{'input':'x','model':'m'}");
    ms_str bs = ms_str_c(body), in = {body + 9, 3};
    buf_t b;
    buf_init(&b, 0);
    CHECK_EQ_INT(dialect_responses_splice(bs, in, ms_str_c("[1]"), (ms_str){"", 0}, &b), 0);
    CHECK_EQ_STR(b.data, q("{'input':[1],'model':'m'}"));
    buf_reset(&b);
    /* a value outside the body */
    CHECK_EQ_INT(
        dialect_responses_splice(bs, ms_str_c("'x'"), ms_str_c("[1]"), (ms_str){"", 0}, &b), -1);
    /* merge: no history, an array; a string after history */
    buf_reset(&b);
    CHECK_EQ_INT(dialect_responses_merge((ms_str){"", 0}, ms_str_c(" [ 1 , 2 ] "), &b), 0);
    CHECK_EQ_STR(b.data, "[1 , 2]");
    buf_reset(&b);
    CHECK_EQ_INT(dialect_responses_merge(ms_str_c("[0]"), ms_str_c("\"s\""), &b), 0);
    CHECK_EQ_STR(b.data, "[0,{\"role\":\"user\",\"content\":\"s\"}]");
    buf_reset(&b);
    CHECK_EQ_INT(dialect_responses_merge(ms_str_c("{}"), ms_str_c("[1]"), &b), -1);
    CHECK_EQ_INT(dialect_responses_merge(ms_str_c("[1]"), ms_str_c("5"), &b), -1);
    buf_free(&b);
}

int main(void)
{
    RUN(test_state);
    RUN(test_object);
    RUN(test_history);
    RUN(test_continue);
    RUN(test_item_response);
    RUN(test_resolve);
    RUN(test_splice);
    TAP_DONE();
}
