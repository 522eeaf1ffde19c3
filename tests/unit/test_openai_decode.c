/*
 * Golden tests of the OpenAI adapter's decoders (src/providers/openai_decode.c): OpenAI chat
 * answers and chunk sequences in, the exact normalized events out (an event recorder), and the
 * same events through the OpenAI chat dialect: a round trip OpenAI -> events -> OpenAI must give
 * back the same content, reasoning, tool calls, finish reason and usage (compared by
 * accumulating both sides as an SDK does).
 *
 * Fixtures follow OpenAI's API reference: the chat completion object
 * (https://platform.openai.com/docs/api-reference/chat/object) and the chat completion chunk
 * object with stream_options.include_usage (every chunk has "usage":null, then a last chunk with
 * empty choices and the usage; https://platform.openai.com/docs/api-reference/chat-streaming),
 * plus what OpenAI-shaped servers send instead (reasoning / reasoning_content, choices null).
 *
 * JSON is written with ' for " (q() swaps them) so the goldens stay readable.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/openai_decode.h"
#include "providers/provider.h"
#include "ev_record.h"
#include "tap.h"
#include "quote.h"

static const dialect_req REQ = {
    .model = "gpt-x", .request_id = "req_abc", .created = 1700000000, .include_usage = 1};

/* ---- the event recorder (and the OpenAI encoder behind it) ---- */

typedef struct rec {
    buf_t log; /* one line per event */
    dialect_enc *e;
    buf_t *out; /* NULL: a whole answer, accumulated */
} rec;

static int rec_emit(void *ctx, const ev_event *ev)
{
    rec *r = ctx;
    static const char *const names[] = {"start",     "text",   "reasoning", "tool_start",
                                        "tool_args", "finish", "usage"};
    static const char *const fin[] = {"stop", "length", "tool_calls", "content_filter"};
    buf_appends(&r->log, names[ev->type]);
    switch (ev->type) {
    case EV_START:
        buf_printf(&r->log, " %.*s", (int)ev->id.n, ev->id.p);
        break;
    case EV_TEXT:
    case EV_REASONING:
        buf_printf(&r->log, " %.*s", (int)ev->text.n, ev->text.p);
        break;
    case EV_TOOL_START:
        buf_printf(&r->log, " %d %.*s %.*s", ev->index, (int)ev->id.n, ev->id.p, (int)ev->name.n,
                   ev->name.p);
        break;
    case EV_TOOL_ARGS:
        buf_printf(&r->log, " %d %.*s", ev->index, (int)ev->text.n, ev->text.p);
        break;
    case EV_FINISH:
        buf_printf(&r->log, " %s", fin[ev->finish]);
        break;
    case EV_USAGE:
        buf_printf(&r->log, " in=%lld cached=%lld out=%lld reasoning=%lld",
                   (long long)ev->usage.input, (long long)ev->usage.cached_input,
                   (long long)ev->usage.output, (long long)ev->usage.reasoning);
        break;
    }
    buf_appends(&r->log, "\n");
    return r->e ? dialect_openai_chat.event(r->e, ev, r->out) : 0;
}

static const char *logstr(rec *r)
{
    buf_append(&r->log, "", 1);
    r->log.len--;
    return r->log.data;
}

static prov_call *mkcall(int stream)
{
    prov_call *c = calloc(1, sizeof *c);
    c->ep = EP_CHAT;
    c->dialect = &dialect_openai_chat;
    c->max_tokens = -1;
    c->stream = stream;
    return c;
}

/* ---- what an SDK accumulates: both sides of a round trip are compared through this ---- */

static void str_of(buf_t *b, const char *what, json_t *v)
{
    if (json_is_string(v)) {
        buf_appends(b, what);
        buf_append(b, json_string_value(v), json_string_length(v));
    }
}

/* A chat.completion as "content|reasoning|tools|finish|usage". */
static void summary_answer(const char *doc, buf_t *b)
{
    json_t *j = json_loads(doc, 0, NULL);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *m = json_object_get(ch, "message");
    buf_appends(b, "content=");
    str_of(b, "", json_object_get(m, "content"));
    str_of(b, "", json_object_get(m, "refusal")); /* a refusal comes back as content */
    buf_appends(b, "|reasoning=");
    json_t *r = json_object_get(m, "reasoning_content");
    str_of(b, "", r ? r : json_object_get(m, "reasoning"));
    buf_appends(b, "|tools=");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(m, "tool_calls"), i, t)
    {
        json_t *f = json_object_get(t, "function");
        str_of(b, "[", json_object_get(t, "id"));
        str_of(b, ",", json_object_get(f, "name"));
        str_of(b, ",", json_object_get(f, "arguments"));
        buf_appends(b, "]");
    }
    str_of(b, "|finish=", json_object_get(ch, "finish_reason"));
    json_t *u = json_object_get(j, "usage");
    buf_printf(b, "|usage=%lld,%lld,%lld,%lld",
               (long long)json_integer_value(json_object_get(u, "prompt_tokens")),
               (long long)json_integer_value(json_object_get(u, "completion_tokens")),
               (long long)json_integer_value(
                   json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")),
               (long long)json_integer_value(json_object_get(
                   json_object_get(u, "completion_tokens_details"), "reasoning_tokens")));
    json_decref(j);
}

/* A chunk stream ("data: …" lines) accumulated the same way, tool calls by their index. */
static void summary_stream(const char *sse, buf_t *b)
{
    buf_t content, reasoning, tools[8][3];
    char finish[32] = "";
    long long usage[4] = {0};
    int maxt = -1;
    buf_init(&content, 0);
    buf_init(&reasoning, 0);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 3; k++)
            buf_init(&tools[i][k], 0);
    for (const char *p = sse; (p = strstr(p, "data: ")) != NULL;) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        json_t *j = json_loadb(p, (size_t)(e - p), 0, NULL);
        p = e;
        if (!j) continue; /* [DONE] */
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        json_t *d = json_object_get(ch, "delta"), *v;
        if (json_is_string(v = json_object_get(d, "content")))
            buf_appends(&content, json_string_value(v));
        if (json_is_string(v = json_object_get(d, "refusal")))
            buf_appends(&content, json_string_value(v));
        if (json_is_string(v = json_object_get(d, "reasoning_content")) ||
            json_is_string(v = json_object_get(d, "reasoning")))
            buf_appends(&reasoning, json_string_value(v));
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(d, "tool_calls"), i, t)
        {
            int ix = (int)json_integer_value(json_object_get(t, "index"));
            if (ix < 0 || ix >= 8) continue;
            if (ix > maxt) maxt = ix;
            json_t *f = json_object_get(t, "function");
            if (json_is_string(v = json_object_get(t, "id")))
                buf_appends(&tools[ix][0], json_string_value(v));
            if (json_is_string(v = json_object_get(f, "name")))
                buf_appends(&tools[ix][1], json_string_value(v));
            if (json_is_string(v = json_object_get(f, "arguments")))
                buf_appends(&tools[ix][2], json_string_value(v));
        }
        if (json_is_string(v = json_object_get(ch, "finish_reason")))
            snprintf(finish, sizeof finish, "%s", json_string_value(v));
        json_t *u = json_object_get(j, "usage");
        if (json_is_object(u)) {
            usage[0] = json_integer_value(json_object_get(u, "prompt_tokens"));
            usage[1] = json_integer_value(json_object_get(u, "completion_tokens"));
            usage[2] = json_integer_value(
                json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
            usage[3] = json_integer_value(json_object_get(
                json_object_get(u, "completion_tokens_details"), "reasoning_tokens"));
        }
        json_decref(j);
    }
    buf_appends(b, "content=");
    buf_append(b, content.data, content.len);
    buf_appends(b, "|reasoning=");
    buf_append(b, reasoning.data, reasoning.len);
    buf_appends(b, "|tools=");
    for (int i = 0; i <= maxt; i++) {
        buf_printf(b, "[%d:", i);
        for (int k = 0; k < 3; k++) {
            if (k) buf_appends(b, ",");
            buf_append(b, tools[i][k].data, tools[i][k].len);
        }
        buf_appends(b, "]");
    }
    buf_printf(b, "|finish=%s|usage=%lld,%lld,%lld,%lld", finish, usage[0], usage[1], usage[2],
               usage[3]);
    buf_append(b, "", 1);
    buf_free(&content);
    buf_free(&reasoning);
    for (int i = 0; i < 8; i++)
        for (int k = 0; k < 3; k++)
            buf_free(&tools[i][k]);
}

/* ---- whole answers ---- */

typedef struct ans {
    rec r;
    buf_t out; /* the encoded chat.completion */
    prov_usage usage;
    char err[256];
    int rc;
} ans;

static void answer(ans *a, const char *body)
{
    memset(a, 0, sizeof *a);
    prov_call *c = mkcall(0);
    buf_init(&a->r.log, 0);
    buf_init(&a->out, 0);
    a->r.e = dialect_openai_chat.enc_new(&REQ);
    ev_sink sink = {rec_emit, &a->r};
    void *st = calloc(1, prov_openai.state_size);
    prov_openai.reset(st, c);
    const char *b = q(body);
    a->rc = prov_openai.decode_answer(st, c, ms_str_c(b), &sink, &a->usage, a->err, sizeof a->err);
    if (a->rc == 0) a->rc = dialect_openai_chat.answer(a->r.e, &a->usage.u, &a->out);
    buf_append(&a->out, "", 1);
    prov_openai.release(st);
    free(st);
    dialect_openai_chat.enc_free(a->r.e);
    free(c);
}

static void ans_free(ans *a)
{
    buf_free(&a->r.log);
    buf_free(&a->out);
}

/* The round trip of a whole answer: the client's chat.completion says what the upstream's did. */
#define CHECK_ROUND_TRIP_ANSWER(a, upstream)                                                       \
    do {                                                                                           \
        buf_t s1_, s2_;                                                                            \
        buf_init(&s1_, 0);                                                                         \
        buf_init(&s2_, 0);                                                                         \
        summary_answer(q(upstream), &s1_);                                                         \
        summary_answer((a)->out.data, &s2_);                                                       \
        buf_append(&s1_, "", 1);                                                                   \
        buf_append(&s2_, "", 1);                                                                   \
        CHECK_EQ_STR(s2_.data, s1_.data);                                                          \
        buf_free(&s1_);                                                                            \
        buf_free(&s2_);                                                                            \
    } while (0)

#define COMPLETION_HEAD                                                                            \
    "{'id':'chatcmpl-abc','object':'chat.completion','created':1700000000,'model':'gpt-x',"        \
    "'choices':[{'index':0,'message':{'role':'assistant',"

/* The chat completion object: text with reasoning_content (DeepSeek), usage with details (the
 * worked example of docs/BILLING.md: input = prompt - cached). */
static void test_answer_text(void)
{
    static const char body[] =
        "{'id':'chatcmpl-B9MHDbslfk','object':'chat.completion','created':1741570283,"
        "'model':'gpt-4o-2024-08-06','choices':[{'index':0,'message':{'role':'assistant',"
        "'content':'Hello \\'you\\'\\n','reasoning_content':'Think \\u00e9','refusal':null,"
        "'annotations':[]},'logprobs':null,'finish_reason':'stop'}],'usage':{"
        "'prompt_tokens':1000,'completion_tokens':9,'total_tokens':1009,"
        "'prompt_tokens_details':{'cached_tokens':600,'audio_tokens':0},"
        "'completion_tokens_details':{'reasoning_tokens':7,'audio_tokens':0,"
        "'accepted_prediction_tokens':0,'rejected_prediction_tokens':0}},"
        "'service_tier':'default','system_fingerprint':'fp_fc9f1d7035'}";
    ans a;
    answer(&a, body);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_STR(logstr(&a.r), "start chatcmpl-B9MHDbslfk\n"
                               "reasoning Think \xc3\xa9\n"
                               "text Hello \"you\"\n\n"
                               "finish stop\n"
                               "usage in=400 cached=600 out=9 reasoning=7\n");
    CHECK_EQ_INT(a.usage.known, 1);
    CHECK_EQ_INT(a.usage.u.input, 400);
    CHECK_EQ_INT(a.usage.u.cached_input, 600);
    CHECK_EQ_INT(a.usage.u.output, 9);
    CHECK_EQ_INT(a.usage.u.reasoning, 7);
    CHECK_EQ_STR(a.out.data,
                 q(COMPLETION_HEAD "'content':'Hello \\'you\\'\\n','refusal':null,"
                                   "'reasoning_content':'Think \xc3\xa9'},'logprobs':null,"
                                   "'finish_reason':'stop'}],'usage':{'prompt_tokens':1000,"
                                   "'completion_tokens':9,'total_tokens':1009,"
                                   "'prompt_tokens_details':{'cached_tokens':600},"
                                   "'completion_tokens_details':{'reasoning_tokens':7}}}"));
    CHECK_ROUND_TRIP_ANSWER(&a, body);
    ans_free(&a);
}

/* Tool calls (content null, finish tool_calls): one start + args each, in order. */
static void test_answer_tools(void)
{
    static const char body[] =
        "{'id':'chatcmpl-t','object':'chat.completion','created':1,'model':'gpt-4o',"
        "'choices':[{'index':0,'message':{'role':'assistant','content':null,'tool_calls':["
        "{'id':'call_abc','type':'function','function':{'name':'get_weather','arguments':"
        "'{\\'city\\':\\'Paris\\'}'}},"
        "{'id':'call_def','type':'function','function':{'name':'now','arguments':'{}'}}],"
        "'refusal':null},'logprobs':null,'finish_reason':'tool_calls'}],"
        "'usage':{'prompt_tokens':82,'completion_tokens':17,'total_tokens':99}}";
    ans a;
    answer(&a, body);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_STR(logstr(&a.r), "start chatcmpl-t\n"
                               "tool_start 0 call_abc get_weather\n"
                               "tool_args 0 {\"city\":\"Paris\"}\n"
                               "tool_start 1 call_def now\n"
                               "tool_args 1 {}\n"
                               "finish tool_calls\n"
                               "usage in=82 cached=0 out=17 reasoning=0\n");
    CHECK_EQ_STR(a.out.data,
                 q(COMPLETION_HEAD "'content':null,'refusal':null,'tool_calls':[{'id':'call_abc',"
                                   "'type':'function','function':{'name':'get_weather',"
                                   "'arguments':'{\\'city\\':\\'Paris\\'}'}},{'id':'call_def',"
                                   "'type':'function','function':{'name':'now','arguments':'{}'}}"
                                   "]},'logprobs':null,'finish_reason':'tool_calls'}],'usage':{"
                                   "'prompt_tokens':82,'completion_tokens':17,'total_tokens':99,"
                                   "'prompt_tokens_details':{'cached_tokens':0},"
                                   "'completion_tokens_details':{'reasoning_tokens':0}}}"));
    CHECK_ROUND_TRIP_ANSWER(&a, body);
    ans_free(&a);
}

/* A refusal is text; the finish is finish_reason's (content_filter here). Every finish_reason
 * maps; `reasoning` (vLLM) is read when reasoning_content is absent, and only one of the two
 * when a server sends both; content parts (Mistral) are text. */
static void test_answer_refusal_and_finishes(void)
{
    static const char body[] =
        "{'id':'x','object':'chat.completion','choices':[{'index':0,'message':{'role':"
        "'assistant','content':null,'refusal':'I can\\'t help with that.'},'finish_reason':"
        "'content_filter'}],'usage':{'prompt_tokens':5,'completion_tokens':6}}";
    ans a;
    answer(&a, body);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_STR(logstr(&a.r), "start x\ntext I can\"t help with that.\nfinish content_filter\n"
                               "usage in=5 cached=0 out=6 reasoning=0\n");
    CHECK_ROUND_TRIP_ANSWER(&a, body);
    ans_free(&a);

    static const struct {
        const char *reason, *want;
    } fin[] = {{"stop", "stop"},
               {"length", "length"},
               {"tool_calls", "tool_calls"},
               {"function_call", "tool_calls"},
               {"content_filter", "content_filter"},
               {"model_length", "length"},
               {"something_new", "stop"}};
    for (size_t i = 0; i < sizeof fin / sizeof *fin; i++) {
        char b[512], want[64];
        snprintf(b, sizeof b,
                 "{'id':'x','choices':[{'index':0,'message':{'content':'a'},'finish_reason':"
                 "'%s'}]}",
                 fin[i].reason);
        answer(&a, b);
        CHECK_EQ_INT(a.rc, 0);
        snprintf(want, sizeof want, "finish %s\n", fin[i].want);
        CHECK(strstr(logstr(&a.r), want) != NULL);
        CHECK_EQ_INT(a.usage.known, 0); /* no usage: unknown, the engine estimates */
        ans_free(&a);
    }

    answer(&a, "{'id':'x','choices':[{'index':0,'message':{'content':'a','reasoning':'r1'},"
               "'finish_reason':null}]}");
    CHECK_EQ_STR(logstr(&a.r), "start x\nreasoning r1\ntext a\nfinish stop\n");
    ans_free(&a);
    answer(&a, "{'id':'x','choices':[{'index':0,'message':{'content':'a','reasoning':'r1',"
               "'reasoning_content':'r1'},'finish_reason':'stop'}]}");
    CHECK_EQ_STR(logstr(&a.r), "start x\nreasoning r1\ntext a\nfinish stop\n");
    ans_free(&a);
    answer(&a, "{'id':'x','choices':[{'index':0,'message':{'content':[{'type':'text','text':"
               "'a'},{'type':'text','text':'b'}]},'finish_reason':'stop'}]}");
    CHECK_EQ_STR(logstr(&a.r), "start x\ntext a\ntext b\nfinish stop\n");
    ans_free(&a);
    /* n > 1: choices[0] (by its index) is the answer */
    answer(&a, "{'id':'x','choices':[{'index':1,'message':{'content':'no'},'finish_reason':"
               "'stop'},{'index':0,'message':{'content':'yes'},'finish_reason':'length'}]}");
    CHECK_EQ_STR(logstr(&a.r), "start x\ntext yes\nfinish length\n");
    ans_free(&a);
}

/* Not an answer: invalid JSON, no choices, an error object in a 200, a choice without a
 * message, more than 128 tool calls. Each is -1 with a message. */
static void test_answer_invalid(void)
{
    ans a;
    answer(&a, "{'id':'x','choices':[");
    CHECK_EQ_INT(a.rc, -1);
    CHECK_EQ_STR(a.err, "the provider's answer is not a JSON object");
    ans_free(&a);
    answer(&a, "{'id':'x'}");
    CHECK_EQ_INT(a.rc, -1);
    CHECK_EQ_STR(a.err, "the provider's answer has no 'choices' array");
    ans_free(&a);
    answer(&a, "{'error':{'message':'Rate limit reached','type':'requests','code':null}}");
    CHECK_EQ_INT(a.rc, -1);
    CHECK_EQ_STR(a.err, "Rate limit reached");
    ans_free(&a);
    answer(&a, "{'id':'x','choices':[]}");
    CHECK_EQ_INT(a.rc, -1);
    CHECK_EQ_STR(a.err, "the provider's answer has no choices[0].message");
    CHECK_EQ_STR(logstr(&a.r), ""); /* nothing was sent before the check */
    ans_free(&a);

    buf_t b;
    buf_init(&b, 0);
    buf_appends(&b, "{'id':'x','choices':[{'index':0,'message':{'tool_calls':[");
    for (int i = 0; i < 129; i++)
        buf_printf(&b, "%s{'id':'c%d','type':'function','function':{'name':'f','arguments':'{}'}}",
                   i ? "," : "", i);
    buf_appends(&b, "]},'finish_reason':'tool_calls'}]}");
    buf_append(&b, "", 1);
    answer(&a, b.data);
    CHECK_EQ_INT(a.rc, -1);
    CHECK_EQ_STR(a.err, "the provider's answer has more than 128 tool calls");
    ans_free(&a);
    buf_free(&b);
}

/* ---- streams ---- */

typedef struct run {
    prov_call *c;
    void *st;
    rec r;
    buf_t out; /* the encoded chunks */
    prov_usage usage;
    int done, error;
    char err[256];
} run;

static void run_open(run *r)
{
    memset(r, 0, sizeof *r);
    r->c = mkcall(1);
    r->st = calloc(1, prov_openai.state_size);
    prov_openai.reset(r->st, r->c);
    buf_init(&r->r.log, 0);
    buf_init(&r->out, 0);
    r->r.e = dialect_openai_chat.enc_new(&REQ);
    r->r.out = &r->out;
}

static int feed_named(run *r, const char *name, const char *data)
{
    static char d[16384];
    snprintf(d, sizeof d, "%s", q(data));
    sse_event ev = {.event = ms_str_c(name), .data = ms_str_c(d)};
    ev_sink sink = {rec_emit, &r->r};
    return prov_openai.decode_event(r->st, r->c, &ev, &sink, &r->usage, &r->done, &r->error, r->err,
                                    sizeof r->err);
}

static int feed(run *r, const char *data)
{
    return feed_named(r, "", data);
}

/* The engine's end of the stream: the usage chunk the dialect writes, then [DONE]. */
static const char *run_end(run *r)
{
    dialect_openai_chat.stream_end(r->r.e, r->usage.known ? &r->usage.u : NULL, (ms_str){0}, "0",
                                   NULL, &r->out);
    buf_append(&r->out, "", 1);
    return r->out.data;
}

static void run_close(run *r)
{
    prov_openai.release(r->st);
    free(r->st);
    dialect_openai_chat.enc_free(r->r.e);
    buf_free(&r->r.log);
    buf_free(&r->out);
    free(r->c);
}

/* Feeds each chunk of evs (as "data: " events), then checks the round trip: what the client's
 * SDK accumulates from the encoded stream is what it would from the upstream's. */
static void feed_all(run *r, const char *const *evs, size_t n)
{
    buf_t up, s1, s2;
    buf_init(&up, 0);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(feed(r, evs[i]), 0);
        CHECK_EQ_INT(r->done, i + 1 == n); /* [DONE] is last */
        buf_printf(&up, "data: %s\n\n", q(evs[i]));
    }
    buf_append(&up, "", 1);
    buf_init(&s1, 0);
    buf_init(&s2, 0);
    summary_stream(up.data, &s1);
    summary_stream(run_end(r), &s2);
    CHECK_EQ_STR(s2.data, s1.data);
    buf_free(&up);
    buf_free(&s1);
    buf_free(&s2);
}

#define CHUNK(choices)                                                                             \
    "{'id':'chatcmpl-123','object':'chat.completion.chunk','created':1694268190,'model':"          \
    "'gpt-4o-mini','system_fingerprint':'fp_44709d6fcb','choices':" choices ",'usage':null}"
#define UDELTA(d) CHUNK("[{'index':0,'delta':" d ",'logprobs':null,'finish_reason':null}]")
#define UUSAGE(u)                                                                                  \
    "{'id':'chatcmpl-123','object':'chat.completion.chunk','created':1694268190,'model':"          \
    "'gpt-4o-mini','system_fingerprint':'fp_44709d6fcb','choices':[],'usage':" u "}"
#define UFINISH(f) CHUNK("[{'index':0,'delta':{},'logprobs':null,'finish_reason':'" f "'}]")

#define CHUNK_HEAD                                                                                 \
    "data: {'id':'chatcmpl-abc','object':'chat.completion.chunk','created':1700000000,"            \
    "'model':'gpt-x','choices':"
#define DELTA(d) CHUNK_HEAD "[{'index':0,'delta':" d ",'logprobs':null,'finish_reason':null}]}\n\n"

/* Role chunk, reasoning_content then content deltas, the finish, the usage chunk (empty
 * choices, with details), [DONE]. */
static void test_stream_text(void)
{
    run r;
    run_open(&r);
    static const char *const evs[] = {
        UDELTA("{'role':'assistant','content':'','refusal':null}"),
        UDELTA("{'reasoning_content':'Hm'}"),
        UDELTA("{'reasoning_content':'m.'}"),
        UDELTA("{'content':'Hello'}"),
        UDELTA("{'content':' \\'w\\u00f6rld\\'\\n'}"),
        UFINISH("stop"),
        "{'id':'chatcmpl-123','object':'chat.completion.chunk','created':1694268190,'model':"
        "'gpt-4o-mini','choices':[],'usage':{'prompt_tokens':1000,'completion_tokens':9,"
        "'total_tokens':1009,'prompt_tokens_details':{'cached_tokens':600,'audio_tokens':0},"
        "'completion_tokens_details':{'reasoning_tokens':7,'audio_tokens':0}}}",
        "[DONE]",
    };
    feed_all(&r, evs, sizeof evs / sizeof *evs);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\n"
                               "reasoning Hm\n"
                               "reasoning m.\n"
                               "text Hello\n"
                               "text  \"w\xc3\xb6rld\"\n\n"
                               "finish stop\n"
                               "usage in=400 cached=600 out=9 reasoning=7\n");
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_INT(r.usage.known, 1);
    CHECK_EQ_INT(r.usage.u.input, 400);
    CHECK_EQ_INT(r.usage.u.cached_input, 600);
    CHECK_EQ_INT(r.usage.u.output, 9);
    CHECK_EQ_INT(r.usage.u.reasoning, 7);
    CHECK_EQ_INT(r.usage.streamed_bytes, 2 + 2 + 5 + 10);
    CHECK_EQ_STR(r.out.data,
                 q(DELTA("{'role':'assistant','content':''}") DELTA("{'reasoning_content':'Hm'}")
                       DELTA("{'reasoning_content':'m.'}") DELTA("{'content':'Hello'}")
                           DELTA("{'content':' \\'w\xc3\xb6rld\\'\\n'}") CHUNK_HEAD
                   "[{'index':0,'delta':{},'logprobs':null,'finish_reason':'stop'}]}\n\n" CHUNK_HEAD
                   "[],'usage':{'prompt_tokens':1000,'completion_tokens':9,'total_tokens':1009,"
                   "'prompt_tokens_details':{'cached_tokens':600},'completion_tokens_details':{"
                   "'reasoning_tokens':7},'cost':0}}\n\ndata: [DONE]\n\n"));
    run_close(&r);
}

/* Two tool calls streamed interleaved by index (id and name in each call's first delta only,
 * then argument pieces alternating), finish tool_calls, usage. */
static void test_stream_tools_interleaved(void)
{
    run r;
    run_open(&r);
    static const char *const evs[] = {
        UDELTA("{'role':'assistant','content':null}"),
        UDELTA("{'tool_calls':[{'index':0,'id':'call_A','type':'function','function':{'name':"
               "'get_weather','arguments':''}}]}"),
        UDELTA("{'tool_calls':[{'index':1,'id':'call_B','type':'function','function':{'name':"
               "'get_time','arguments':''}}]}"),
        UDELTA("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'ci'}}]}"),
        UDELTA("{'tool_calls':[{'index':1,'function':{'arguments':'{\\'tz\\':'}}]}"),
        UDELTA("{'tool_calls':[{'index':0,'function':{'arguments':'ty\\':\\'Paris\\'}'}}]}"),
        UDELTA("{'tool_calls':[{'index':1,'function':{'arguments':'\\'CET\\'}'}}]}"),
        UFINISH("tool_calls"),
        UUSAGE("{'prompt_tokens':82,'completion_tokens':17,'total_tokens':99,"
               "'prompt_tokens_details':{'cached_tokens':0},'completion_tokens_details':{"
               "'reasoning_tokens':0}}"),
        "[DONE]",
    };
    feed_all(&r, evs, sizeof evs / sizeof *evs);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\n"
                               "tool_start 0 call_A get_weather\n"
                               "tool_start 1 call_B get_time\n"
                               "tool_args 0 {\"ci\n"
                               "tool_args 1 {\"tz\":\n"
                               "tool_args 0 ty\":\"Paris\"}\n"
                               "tool_args 1 \"CET\"}\n"
                               "finish tool_calls\n"
                               "usage in=82 cached=0 out=17 reasoning=0\n");
    CHECK_EQ_INT(r.usage.streamed_bytes, 4 + 6 + 12 + 6);
    CHECK_EQ_STR(
        r.out.data,
        q(DELTA("{'role':'assistant','content':''}")
              DELTA("{'tool_calls':[{'index':0,'id':'call_A','type':'function','function':{"
                    "'name':'get_weather','arguments':''}}]}")
                  DELTA("{'tool_calls':[{'index':1,'id':'call_B','type':'function',"
                        "'function':{'name':'get_time','arguments':''}}]}")
                      DELTA("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'ci'}}]}")
                          DELTA("{'tool_calls':[{'index':1,'function':{'arguments':'{\\'tz\\':"
                                "'}}]}") DELTA("{'tool_calls':[{'index':0,'function':{"
                                               "'arguments':'ty\\':\\'Paris\\'}'}}]}")
                              DELTA("{'tool_calls':[{'index':1,'function':{'arguments':"
                                    "'\\'CET\\'}'}}]}") CHUNK_HEAD
          "[{'index':0,'delta':{},'logprobs':null,'finish_reason':'tool_calls'}]}\n\n" CHUNK_HEAD
          "[],'usage':{'prompt_tokens':82,'completion_tokens':17,"
          "'total_tokens':99,'prompt_tokens_details':{'cached_tokens':0},"
          "'completion_tokens_details':{'reasoning_tokens':0},'cost':0}}\n\n"
          "data: [DONE]\n\n"));
    run_close(&r);
}

/* Indexes out of order: a stream whose first call is index 1 numbers it 0 (the events' index is
 * the order calls started in; its id, name and arguments stay together), then index 0 is the
 * second call; two calls in one delta; a server that gives no index names the call by id, or
 * continues the last one. */
static void test_stream_tools_out_of_order(void)
{
    run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':1,'id':'call_B','type':'function',"
                                 "'function':{'name':'b','arguments':'{\\'x\\''}}]}")),
                 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':0,'id':'call_A','type':'function',"
                                 "'function':{'name':'a','arguments':''}},{'index':1,'function':"
                                 "{'arguments':':1}'}}]}")),
                 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':0,'function':{'arguments':'{}'}}]}")), 0);
    /* no index: by id (a known one continues it, a new one starts a call), else the last */
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'id':'call_C','function':{'name':'c',"
                                 "'arguments':'{'}}]}")),
                 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'function':{'arguments':'}'}}]}")), 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'id':'call_B','function':{'arguments':' '}}]}")),
                 0);
    CHECK_EQ_INT(feed(&r, UFINISH("tool_calls")), 0);
    CHECK_EQ_INT(feed(&r, UFINISH("tool_calls")), 0); /* a repeat is not sent twice */
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\n"
                               "tool_start 0 call_B b\n"
                               "tool_args 0 {\"x\"\n"
                               "tool_start 1 call_A a\n"
                               "tool_args 0 :1}\n"
                               "tool_args 1 {}\n"
                               "tool_start 2 call_C c\n"
                               "tool_args 2 {\n"
                               "tool_args 2 }\n"
                               "tool_args 0  \n"
                               "finish tool_calls\n");
    /* the client's calls: each id with its own name and arguments */
    buf_t s;
    buf_init(&s, 0);
    summary_stream(run_end(&r), &s);
    CHECK_EQ_STR(s.data, "content=|reasoning=|tools=[0:call_B,b,{\"x\":1} ][1:call_A,a,{}]"
                         "[2:call_C,c,{}]|finish=tool_calls|usage=0,0,0,0");
    buf_free(&s);
    run_close(&r);
}

/* A refusal streams as text; the finish is content_filter when finish_reason says so. */
static void test_stream_refusal(void)
{
    run r;
    run_open(&r);
    static const char *const evs[] = {
        UDELTA("{'role':'assistant','content':null,'refusal':''}"),
        UDELTA("{'refusal':'I can\\'t'}"),
        UDELTA("{'refusal':' help.'}"),
        UFINISH("content_filter"),
        "[DONE]",
    };
    feed_all(&r, evs, sizeof evs / sizeof *evs);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\ntext I can\"t\ntext  help.\n"
                               "finish content_filter\n");
    CHECK_EQ_INT(r.usage.known, 0);
    CHECK_EQ_INT(r.usage.streamed_bytes, 7 + 6);
    run_close(&r);
}

/* Usage: null in every chunk but the last (include_usage); a usage chunk whose choices is null
 * or missing (vLLM) is read too; `reasoning` (vLLM) is reasoning; comments are skipped; a chunk
 * for another choice (n > 1) adds nothing. */
static void test_stream_usage_and_variants(void)
{
    run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, ""), 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'role':'assistant','reasoning':'r'}")), 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'reasoning':'r','reasoning_content':'r'}")), 0);
    CHECK_EQ_INT(feed(&r, CHUNK("[{'index':1,'delta':{'content':'other'},'finish_reason':"
                                "'stop'}]")),
                 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'content':'a'}")), 0);
    CHECK_EQ_INT(feed(&r, "{'id':'chatcmpl-123','choices':null,'usage':{'prompt_tokens':3,"
                          "'completion_tokens':2}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "{'id':'chatcmpl-123','usage':{'prompt_tokens':4,'completion_tokens':5,"
                          "'prompt_tokens_details':{'cached_tokens':9},"
                          "'completion_tokens_details':null}}"),
                 0);
    CHECK_EQ_INT(feed(&r, "[DONE]"), 0);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\nreasoning r\nreasoning r\ntext a\n"
                               "usage in=3 cached=0 out=2 reasoning=0\n"
                               "usage in=0 cached=4 out=5 reasoning=0\n");
    CHECK_EQ_INT(r.usage.u.input, 0);
    CHECK_EQ_INT(r.usage.u.cached_input, 4); /* cached above prompt is clamped to it */
    CHECK_EQ_INT(r.usage.u.output, 5);
    run_close(&r);
    /* a usage chunk first still starts the answer, once */
    run_open(&r);
    CHECK_EQ_INT(feed(&r, UUSAGE("{'prompt_tokens':1,'completion_tokens':0}")), 0);
    CHECK_EQ_INT(feed(&r, UDELTA("{'content':'x'}")), 0);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\nusage in=1 cached=0 out=0 reasoning=0\n"
                               "text x\n");
    run_close(&r);
}

/* An error chunk ({"error":{…}} mid-stream) stops the stream with its message; so does an event
 * named error; text bytes seen so far are counted. */
static void test_stream_error(void)
{
    run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, UDELTA("{'content':'tok0 '}")), 0);
    CHECK_EQ_INT(feed(&r, "{'error':{'message':'The server had an error while processing your "
                          "request.','type':'server_error','param':null,'code':null}}"),
                 0);
    CHECK_EQ_INT(r.error, 1);
    CHECK_EQ_STR(r.err, "The server had an error while processing your request.");
    CHECK_EQ_INT(r.usage.streamed_bytes, 5);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\ntext tok0 \n");
    run_close(&r);
    run_open(&r);
    CHECK_EQ_INT(feed(&r, "{'error':'overloaded'}"), 0);
    CHECK_EQ_INT(r.error, 1);
    CHECK_EQ_STR(r.err, "overloaded");
    run_close(&r);
    run_open(&r);
    CHECK_EQ_INT(feed_named(&r, "error", "{'message':'x'}"), 0);
    CHECK_EQ_INT(r.error, 1);
    CHECK_EQ_STR(r.err, "the provider reported an error in the stream");
    CHECK_EQ_STR(logstr(&r.r), "");
    run_close(&r);
}

/* Invalid events are -1 with a message: not JSON, a tool-call index that is not a count, a
 * delta naming no call, more than 128 calls. A new attempt (release, zero, reset) starts clean. */
static void test_stream_invalid(void)
{
    run r;
    run_open(&r);
    CHECK_EQ_INT(feed(&r, "{not json"), -1);
    CHECK_EQ_STR(r.err, "the provider sent an invalid stream event");
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':-1,'function':{'name':'f'}}]}")), -1);
    CHECK_EQ_STR(r.err, "the provider sent a tool call with an invalid index");
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':'0','function':{'name':'f'}}]}")), -1);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'function':{'arguments':'{}'}}]}")), -1);
    CHECK_EQ_STR(r.err, "the provider sent a tool call delta without index or id");
    CHECK_EQ_INT(feed(&r, UDELTA("{'content':'x','n':123456789012345678901234567890}")), -1);
    for (int i = 0; i < 129; i++) {
        char d[512];
        snprintf(d, sizeof d,
                 UDELTA("{'tool_calls':[{'index':%d,'id':'c%d','type':'function','function':{"
                        "'name':'f','arguments':'{}'}}]}"),
                 i, i);
        CHECK_EQ_INT(feed(&r, d), i < 128 ? 0 : -1);
    }
    CHECK_EQ_STR(r.err, "the provider's answer has more than 128 tool calls");
    /* the engine's retry: release, zero, reset; the calls start again at 0 */
    prov_openai.release(r.st);
    memset(r.st, 0, prov_openai.state_size);
    prov_openai.reset(r.st, r.c);
    buf_reset(&r.r.log);
    CHECK_EQ_INT(feed(&r, UDELTA("{'tool_calls':[{'index':5,'id':'t','function':{'name':'f'}}]}")),
                 0);
    CHECK_EQ_STR(logstr(&r.r), "start chatcmpl-123\ntool_start 0 t f\n");
    run_close(&r);
}

/* ---- the usual chunk, scanned (openai_decode.c, "The usual chunk") ---- */

/* The decoder's switch between the scan and the tree (not in the header: tests only). */
extern int openai_dec_fast_chunks;

/* Decodes events evs[0..n) (JSON, not quoted) through one transfer with the scan on or off, into
 * a record of every event's bytes, return code, error, streamed bytes and usage. */
static uint32_t g_shape_hits; /* the scanned run's chunks read through the shape */

static void decode_record(int fast, const char *const *evs, size_t n, buf_t *out)
{
    openai_dec_fast_chunks = fast;
    prov_call *c = mkcall(1);
    void *st = calloc(1, prov_openai.state_size);
    prov_openai.reset(st, c);
    prov_usage u = {0};
    int done = 0, error = 0;
    ev_sink sink = {ev_record, out};
    for (size_t i = 0; i < n; i++) {
        char err[256] = "";
        sse_event ev = {.event = MS_STR_LIT(""), .data = ms_str_c(evs[i])};
        int rc = prov_openai.decode_event(st, c, &ev, &sink, &u, &done, &error, err, sizeof err);
        buf_printf(out, "|rc=%d done=%d error=%d err=%s bytes=%lld known=%d out=%lld\n", rc, done,
                   error, err, (long long)u.streamed_bytes, u.known, (long long)u.u.output);
    }
    if (fast) g_shape_hits = ((openai_dec_state *)st)->shape.hits;
    prov_openai.release(st);
    free(st);
    free(c);
    openai_dec_fast_chunks = 1;
}

/* Whether the scan and the tree give the same record for evs; counts the runs. */
static int same_reading(const char *const *evs, size_t n)
{
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    decode_record(1, evs, n, &a);
    decode_record(0, evs, n, &b);
    return ev_records_same(&a, &b, "streamed", evs, n);
}

#define FCHUNK(choice) "{'id':'c','object':'chat.completion.chunk','choices':[" choice "]}"

/* Chunks the scan reads and chunks it must leave to the tree; each is decoded after a first
 * chunk (EV_START) and before a second finish, both ways, and the two records compared. */
static void test_fast_chunks_same_as_tree(void)
{
    static const char *const choices[] = {
        /* the usual ones, and their strings with escapes */
        FCHUNK("{'index':0,'delta':{'content':'Hello'},'logprobs':null,'finish_reason':null}"),
        FCHUNK("{'index':0,'delta':{'role':'assistant','content':'','refusal':null}}"),
        FCHUNK("{'index':0,'delta':{'content':'a\\nb\\'c\\u00e9\\ud83d\\ude00\\u0000z'}}"),
        FCHUNK("{'delta':{'content':null},'finish_reason':'stop'}"),
        FCHUNK("{'index':null,'delta':{},'finish_reason':'length'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'\\u006cength'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'tool_calls'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'content_filter'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'length\\u0000x'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'model_length'}"),
        FCHUNK("{'index':0,'delta':{},'finish_reason':'whatever'}"),
        FCHUNK("{'index':0,'delta':null,'finish_reason':'stop'}"),
        /* reasoning: reasoning_content unless empty, else reasoning; both; with content */
        FCHUNK("{'index':0,'delta':{'reasoning_content':'think','content':null}}"),
        FCHUNK("{'index':0,'delta':{'reasoning_content':'','reasoning':'r'}}"),
        FCHUNK("{'index':0,'delta':{'reasoning_content':null,'reasoning':'r'}}"),
        FCHUNK("{'index':0,'delta':{'reasoning_content':'x','reasoning':'x','content':'y'}}"),
        FCHUNK("{'index':0,'delta':{'refusal':'no','content':'c','reasoning':'r'}}"),
        /* names with escapes, a repeated name, members the scan passes over */
        FCHUNK("{'index':0,'delta':{'con\\u0074ent':'esc'}}"),
        FCHUNK("{'index':0,'delta':{'content':'one','content':'two'}}"),
        FCHUNK("{'index':0,'delta':{'content':'big','x':1},'delta':{'content':'t'}}"),
        FCHUNK("{'index':99999999999999999999,'index':0,'delta':{'content':'t'}}"),
        FCHUNK("{'index':0,'delta':{'content':1e999999,'content':'t'}}"),
        FCHUNK("{'index':0,'delta':{'content':'k','x':true,'y':false,'z':null,'w':'s'},"
               "'native_finish_reason':null,'stop_reason':null}"),
        /* what takes the tree */
        FCHUNK("{'index':1,'delta':{'content':'other choice'}}"),
        FCHUNK("{'index':'0','delta':{'content':'string index'}}"),
        FCHUNK("{'index':0.0,'delta':{'content':'real index'}}"),
        FCHUNK("{'index':-0,'delta':{'content':'minus zero'}}"),
        FCHUNK("{'index':0,'delta':{'content':'a'}},{'index':1,'delta':{'content':'b'}}"),
        FCHUNK("{'index':1,'delta':{'content':'b'}},{'index':0,'delta':{'content':'a'}}"),
        FCHUNK("'not an object'"),
        FCHUNK("{'index':0,'delta':{'content':[{'type':'text','text':'part'}]}}"),
        FCHUNK("{'index':0,'delta':{'content':5}}"),
        FCHUNK("{'index':0,'delta':{'content':'t','tool_calls':null}}"),
        FCHUNK("{'index':0,'delta':{'content':'t','tool_calls':[]}}"),
        FCHUNK("{'index':0,'delta':{'tool_calls':[{'index':0,'id':'t1','function':{'name':'f',"
               "'arguments':'{}'}}]}}"),
        FCHUNK("{'index':0,'delta':{'content':'t'},'logprobs':{'content':[{'token':'t',"
               "'logprob':-0.5}]}}"),
        FCHUNK("{'index':0,'delta':{'content':'t'},'n':99999999999999999999999}"),
        FCHUNK("{'index':0,'delta':{'content':'t','a\\u0000b':'x'}}"),
        FCHUNK("{'index':0,'delta':{'content':'t'},'a\\u0000':null}"),
        FCHUNK("{'index':0,'delta':{'content':'t','n':99999999999999999999999}}"),
        FCHUNK("{'index':0,'delta':'text'}"),
        FCHUNK("{'index':0,'delta':{'content':'t'},'finish_reason':5}"),
        FCHUNK("{'index':0,'delta':{'content':'a','b':1,'c':2,'d':3,'e':4,'f':5,'g':6,'h':7,'i':8,"
               "'j':9,'k':10,'l':11,'m':12,'n':13,'o':14,'p':15,'q':16}}"),
        FCHUNK("{'a':1,'b':2,'c':3,'d':4,'e':5,'f':6,'g':7,'h':8,'i':9,'j':10,'k':11,'l':12,"
               "'m':13,'n':14,'o':15,'p':16,'delta':{'content':'late'}}"),
        FCHUNK(""),
        FCHUNK("{}"),
    };
    char first[256], body[4096], fin2[256];
    snprintf(first, sizeof first, "%s", q(FCHUNK("{'index':0,'delta':{'role':'assistant'}}")));
    snprintf(fin2, sizeof fin2, "%s", q(FCHUNK("{'index':0,'delta':{},'finish_reason':'stop'}")));
    for (size_t i = 0; i < sizeof choices / sizeof *choices; i++) {
        snprintf(body, sizeof body, "%s", q(choices[i]));
        const char *evs[] = {first, body, fin2};
        CHECK(same_reading(evs, 3));
    }
    /* strings with escapes at and past the stack's decoding room (OAI_FAST_DECODE, 2048) */
    static const size_t lens[] = {1000, 2040, 2046, 2047, 2048, 3000};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        buf_t b;
        buf_init(&b, 0);
        buf_appends(&b, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\n");
        for (size_t k = 4; k < lens[i]; k++)
            buf_appends(&b, "x");
        buf_appends(&b, "\"},\"finish_reason\":\"");
        for (size_t k = 0; k < lens[i]; k++)
            buf_appends(&b, k == 0 ? "s" : "t");
        buf_appends(&b, "\"}]}");
        buf_append(&b, "", 1);
        const char *evs[] = {first, b.data, fin2};
        CHECK(same_reading(evs, 3));
        buf_free(&b);
    }
}

/* Streams whose chunks differ only in their text (and OpenAI's padding): after the first plain
 * one they are read through its shape, which must give what the tree gives, and take the full
 * path wherever the text alone does not decide (an empty text, a finish, another member). */
static void test_shape_chunks_same_as_tree(void)
{
#define SC(x) "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":" x ",\"finish_reason\":null}]}"
#define SP(x, pad)                                                                                 \
    "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":" x "}],\"obfuscation\":\"" pad "\"}"
    static const char *const texts[] = {
        SC("{\"role\":\"assistant\",\"content\":\"\"}"),
        SC("{\"content\":\"Hello\"}"),
        SC("{\"content\":\" wor\\nld \\u00e9\\ud83d\\ude00\"}"),
        SC("{\"content\":\"\"}"),
        SC("{\"content\":\"x\\u0000y\"}"),
        SC("{\"content\":\"again\"}"),
        SC("{\"content\":\"z\"},\"x\":1"),
        SC("{\"content\":\"after\"}"),
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"end\"},"
        "\"finish_reason\":\"stop\"}]}",
        SC("{\"content\":\"past the end\"}"),
        "{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}",
    };
    CHECK(same_reading(texts, sizeof texts / sizeof *texts));
    CHECK(g_shape_hits >= 4);
    /* the reasoning: reasoning_content "" gives way to reasoning, which the shape cannot see */
    static const char *const thinking[] = {
        SC("{\"reasoning_content\":\"a\",\"reasoning\":\"b\"}"),
        SC("{\"reasoning_content\":\"c\",\"reasoning\":\"b\"}"),
        SC("{\"reasoning_content\":\"\",\"reasoning\":\"b\"}"),
        SC("{\"reasoning_content\":\"d\",\"reasoning\":\"b\"}"),
        SC("{\"reasoning\":\"e\"}"),
        SC("{\"reasoning\":\"f\"}"),
        SC("{\"refusal\":\"g\"}"),
        SC("{\"refusal\":\"h\"}"),
    };
    CHECK(same_reading(thinking, sizeof thinking / sizeof *thinking));
    CHECK(g_shape_hits >= 3);
    /* OpenAI's padding, after the text and before it; two texts in one chunk make no shape */
    static const char *const padded[] = {
        SP("{\"content\":\"a\"}", "xyz"),
        SP("{\"content\":\"bb\"}", "q"),
        SP("{\"content\":\"ccc\"}", ""),
        "{\"obfuscation\":\"p\",\"choices\":[{\"delta\":{\"content\":\"d\"}}]}",
        "{\"obfuscation\":\"pp\",\"choices\":[{\"delta\":{\"content\":\"e\"}}]}",
        SC("{\"content\":\"f\",\"refusal\":\"g\"}"),
        SC("{\"content\":\"h\",\"refusal\":\"i\"}"),
    };
    CHECK(same_reading(padded, sizeof padded / sizeof *padded));
    CHECK(g_shape_hits >= 2);
    /* a text with escapes too long to decode on the stack goes the full way */
    buf_t big;
    buf_init(&big, 0);
    buf_appends(&big, "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    for (int i = 0; i < 1200; i++)
        buf_appends(&big, "\\n");
    buf_appends(&big, "\"},\"finish_reason\":null}]}");
    buf_append(&big, "", 1);
    const char *longer[] = {texts[1], big.data, texts[5]};
    CHECK(same_reading(longer, 3));
    buf_free(&big);
#undef SC
#undef SP
}

/* ---- the usual answer, scanned (openai_decode.c, "The usual answer") ---- */

/* Decodes a whole answer (JSON, not quoted) with the scan on or off, into a record of every
 * event's bytes, the return code, the error and the usage. */
static void answer_record(int fast, const char *body, buf_t *out)
{
    openai_dec_fast_chunks = fast;
    prov_call *c = mkcall(0);
    void *st = calloc(1, prov_openai.state_size);
    prov_openai.reset(st, c);
    prov_usage u = {0};
    char err[256] = "";
    ev_sink sink = {ev_record, out};
    int rc = prov_openai.decode_answer(st, c, ms_str_c(body), &sink, &u, err, sizeof err);
    buf_printf(out, "|rc=%d err=%s bytes=%lld known=%d in=%lld out=%lld\n", rc, err,
               (long long)u.streamed_bytes, u.known, (long long)u.u.input, (long long)u.u.output);
    prov_openai.release(st);
    free(st);
    free(c);
    openai_dec_fast_chunks = 1;
}

static int same_answer(const char *body)
{
    buf_t a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    answer_record(1, body, &a);
    answer_record(0, body, &b);
    const char *evs[] = {body};
    return ev_records_same(&a, &b, "whole", evs, 1);
}

#define FANS(choice)                                                                               \
    "{'id':'chatcmpl-1','object':'chat.completion','choices':[" choice "],"                        \
    "'usage':{'prompt_tokens':5,'completion_tokens':7}}"

/* Answers the scan reads and answers it must leave to the tree, decoded both ways. */
static void test_fast_answers_same_as_tree(void)
{
    static const char *const choices[] = {
        /* the usual ones: OpenAI's, the mock's, with escapes, texts of every kind */
        FANS("{'index':0,'message':{'role':'assistant','content':'Hello','refusal':null,"
             "'annotations':[]},'logprobs':null,'finish_reason':'stop'}"),
        FANS("{'index':0,'message':{'role':'assistant','content':'tok0 tok1 '},'logprobs':null,"
             "'finish_reason':'length'}"),
        FANS("{'index':0,'message':{'content':'a\\nb\\'c\\u00e9\\ud83d\\ude00\\u0000z'},"
             "'finish_reason':'stop'}"),
        FANS("{'message':{'content':''},'finish_reason':null}"),
        FANS("{'index':null,'message':{},'finish_reason':'\\u006cength'}"),
        FANS("{'index':0,'message':{'content':null,'tool_calls':null},'finish_reason':'x'}"),
        FANS("{'index':0,'message':{'content':'t','tool_calls':[ ]},"
             "'finish_reason':'tool_calls'}"),
        FANS("{'index':0,'message':{'content':'t'},'finish_reason':'length\\u0000x'}"),
        FANS("{'index':0,'message':{'reasoning_content':'think','content':'c'}}"),
        FANS("{'index':0,'message':{'reasoning_content':'','reasoning':'r'}}"),
        FANS("{'index':0,'message':{'reasoning_content':null,'reasoning':'r','refusal':'no'}}"),
        FANS("{'index':0,'message':{'content':'k','x':true,'y':false,'z':null,'w':'s','v':{},"
             "'u':[]},'native_finish_reason':null,'stop_reason':null}"),
        FANS("{'index':0,'message':{'con\\u0074ent':'esc'}}"),
        /* what takes the tree */
        FANS("{'index':0,'message':{'content':'one','content':'two'}}"),
        FANS("{'index':1,'message':{'content':'other choice'}}"),
        FANS("{'index':0,'message':{'content':'a'}},{'index':1,'message':{'content':'b'}}"),
        FANS("{'index':1,'message':{'content':'b'}},{'index':0,'message':{'content':'a'}}"),
        FANS("{'index':'0','message':{'content':'string index'}}"),
        FANS("{'index':-0,'message':{'content':'minus zero'}}"),
        FANS("'not an object'"),
        FANS("{'index':0,'message':'text'}"),
        FANS("{'index':0}"),
        FANS("{'index':0,'message':{'content':[{'type':'text','text':'part'}]}}"),
        FANS("{'index':0,'message':{'content':5}}"),
        FANS("{'index':0,'message':{'content':null,'tool_calls':[{'id':'t1','type':'function',"
             "'function':{'name':'f','arguments':'{}'}}]},'finish_reason':'tool_calls'}"),
        FANS("{'index':0,'message':{'content':'t','annotations':[{'type':'url_citation'}]}}"),
        FANS("{'index':0,'message':{'content':'t'},'logprobs':{'content':null}}"),
        FANS("{'index':0,'message':{'content':'t'},'n':99999999999999999999999}"),
        FANS("{'index':0,'message':{'content':'t','a\\u0000b':'x'}}"),
        FANS("{'index':0,'message':{'content':'t'},'finish_reason':5}"),
        FANS("{'index':0,'message':{'content':'a','b':1,'c':2,'d':3,'e':4,'f':5,'g':6,'h':7,"
             "'i':8,'j':9,'k':10,'l':11,'m':12,'n':13,'o':14,'p':15,'q':16}}"),
        FANS(""),
        FANS("{}"),
    };
    for (size_t i = 0; i < sizeof choices / sizeof *choices; i++)
        CHECK(same_answer(q(choices[i])));
    /* a long text with escapes (decoded onto the heap), and a finish past the stack's room */
    static const size_t lens[] = {1000, 2047, 2048, 70000};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        buf_t b;
        buf_init(&b, 0);
        buf_appends(&b, "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"\\n");
        for (size_t k = 4; k < lens[i]; k++)
            buf_appends(&b, k % 50 ? "x" : "\\t");
        buf_appends(&b, "\"},\"finish_reason\":\"");
        for (size_t k = 0; k < lens[i] && k < 3000; k++)
            buf_appends(&b, k == 0 ? "s" : "t");
        buf_appends(&b, "\"}]}");
        buf_append(&b, "", 1);
        CHECK(same_answer(b.data));
        buf_free(&b);
    }
}

/* Every one-byte change of a usual answer (to bytes that matter to JSON): whatever the scan takes
 * or leaves, the record is the tree's. */
static void test_fast_answers_mutated(void)
{
    static const char base[] =
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
        "\"h\\u00e9\",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":"
        "\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
    static const char subst[] = "\"\\{}[],:0 1anlu-";
    size_t runs = 0, failed = 0, n = strlen(base);
    char *m = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof subst - 1; k++) {
            memcpy(m, base, n + 1);
            if (m[i] == subst[k]) continue;
            m[i] = subst[k];
            runs++;
            if (!same_answer(m)) failed++;
        }
    }
    free(m);
    CHECK(runs > 1500);
    CHECK_EQ_INT(failed, 0);
}

/* Every one-byte change of two usual chunks (to bytes that matter to JSON): whatever the scan
 * takes or leaves, the record is the tree's. */
static void test_fast_chunks_mutated(void)
{
    static const char *const bases[] = {
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\\u00e9\","
        "\"reasoning_content\":null},\"logprobs\":null,\"finish_reason\":null}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"r\",\"refusal\":\"x\"},"
        "\"finish_reason\":\"length\"}],\"usage\":null}",
    };
    static const char subst[] = "\"\\{}[],:0 1anlu-";
    size_t runs = 0, failed = 0;
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        size_t n = strlen(bases[b]);
        char *m = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            for (size_t k = 0; k < sizeof subst - 1; k++) {
                memcpy(m, bases[b], n + 1);
                if (m[i] == subst[k]) continue;
                m[i] = subst[k];
                const char *evs[] = {m, m};
                runs++;
                if (!same_reading(evs, 2)) failed++;
            }
        }
        free(m);
    }
    CHECK(runs > 2000);
    CHECK_EQ_INT(failed, 0);
}

/* The adapter: OpenAI clients keep the pass-through path (the engine calls the decoders only
 * when the client speaks another API), and its state is small (allocated for every attempt that
 * translates or passes a stream through, whose shape it keeps: test_openai_stream.c). */
static void test_adapter(void)
{
    CHECK(prov_openai.decode_answer == openai_decode_answer);
    CHECK(prov_openai.decode_event == openai_decode_event);
    CHECK(prov_openai.response != NULL && prov_openai.stream_event != NULL);
    CHECK_EQ_INT(prov_openai.api, dialect_openai_chat.api);
    CHECK(prov_openai.state_size <= 128 + sizeof(openai_shape));
    CHECK_EQ_INT(prov_openai.passthrough_state, PROV_STATE_STREAMS);
}

int main(void)
{
    RUN(test_answer_text);
    RUN(test_answer_tools);
    RUN(test_answer_refusal_and_finishes);
    RUN(test_answer_invalid);
    RUN(test_stream_text);
    RUN(test_stream_tools_interleaved);
    RUN(test_stream_tools_out_of_order);
    RUN(test_stream_refusal);
    RUN(test_stream_usage_and_variants);
    RUN(test_stream_error);
    RUN(test_stream_invalid);
    RUN(test_fast_chunks_same_as_tree);
    RUN(test_fast_chunks_mutated);
    RUN(test_fast_answers_same_as_tree);
    RUN(test_fast_answers_mutated);
    RUN(test_shape_chunks_same_as_tree);
    RUN(test_adapter);
    TAP_DONE();
}
