/*
 * Golden tests of the client dialects' encoders (src/dialect/): a sequence of normalized events
 * in, the exact bytes a client gets out, streamed and whole, with usage, cost, tool calls,
 * reasoning and errors. These are what every translating adapter's output ends up as, so each
 * field OpenAI's SDKs read is pinned here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/dialect.h"
#include "tap.h"

static const dialect_req REQ = {
    .model = "claude-x", .request_id = "req_abc", .created = 1700000000};

#define CHUNK_HEAD                                                                                 \
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"  \
    "\"model\":\"claude-x\",\"choices\":"

static const char *str(const buf_t *b)
{
    return b->data ? b->data : "";
}

/* A text answer with reasoning, streamed: a role chunk first, one chunk per delta, the finish
 * chunk, then the usage chunk with the cost (asked for) and [DONE]. */
static void test_openai_stream_text(void)
{
    dialect_req rq = REQ;
    rq.include_usage = 1;
    dialect_enc *e = dialect_openai_chat.enc_new(&rq);
    buf_t out;
    buf_init(&out, 0);
    ev_event evs[] = {
        {.type = EV_START},
        {.type = EV_REASONING, .text = MS_STR_LIT("hmm")},
        {.type = EV_TEXT, .text = MS_STR_LIT("Hi \"you\"\n")},
        {.type = EV_USAGE, .usage = {.input = 5, .cached_input = 3, .output = 7, .reasoning = 2}},
        {.type = EV_FINISH, .finish = EV_FINISH_LENGTH},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        CHECK_EQ_INT(dialect_openai_chat.event(e, &evs[i], &out), 0);
    usage_counts u = {.input = 5, .cached_input = 3, .cache_write = 1, .output = 7, .reasoning = 2};
    CHECK_EQ_INT(dialect_openai_chat.stream_end(e, &u, (ms_str){0}, "0.000123", NULL, &out), 0);
    const char *want =
        CHUNK_HEAD "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":"
                   "null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                   "[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"},\"logprobs\":null,"
                   "\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                   "[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"you\\\"\\n\"},\"logprobs\":null,"
                   "\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                   "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}"
                   "\n\n" CHUNK_HEAD
                   "[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7,\"total_tokens\":16,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":3},\"completion_tokens_details\":"
                   "{\"reasoning_tokens\":2},\"cost\":0.000123}}\n\ndata: [DONE]\n\n";
    CHECK_EQ_STR(str(&out), want);
    buf_free(&out);
    dialect_openai_chat.enc_free(e);
}

/* Tool calls streamed in OpenAI's shape: index, id, type and name first, arguments in deltas. */
static void test_openai_stream_tools(void)
{
    dialect_enc *e = dialect_openai_chat.enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ev_event evs[] = {
        {.type = EV_TOOL_START, .index = 0, .id = MS_STR_LIT("call_1"), .name = MS_STR_LIT("f")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("{\"a\":")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("1}")},
        {.type = EV_FINISH, .finish = EV_FINISH_TOOL_CALLS},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        CHECK_EQ_INT(dialect_openai_chat.event(e, &evs[i], &out), 0);
    /* the client did not ask for usage: only the end marker */
    dialect_error err = {"provider_error", "upstream_error", "cut \"off\""};
    CHECK_EQ_INT(dialect_openai_chat.stream_end(e, NULL, (ms_str){0}, "1", &err, &out), 0);
    const char *want = CHUNK_HEAD
        "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":"
        "null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
        "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"logprobs\":"
        "null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
        "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
        "\"arguments\":\"{\\\"a\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}]}"
        "\n\n" CHUNK_HEAD "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
        "\"arguments\":\"1}\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
        "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}"
        "\n\ndata: {\"error\":{\"message\":\"cut \\\"off\\\"\",\"type\":\"upstream_error\","
        "\"code\":\"provider_error\",\"param\":null}}\n\ndata: [DONE]\n\n";
    CHECK_EQ_STR(str(&out), want);
    buf_free(&out);
    dialect_openai_chat.enc_free(e);
}

/* The same events, whole: one chat.completion with content null beside tool calls. */
static void test_openai_whole(void)
{
    dialect_enc *e = dialect_openai_chat.enc_new(&REQ);
    ev_event evs[] = {
        {.type = EV_START},
        {.type = EV_REASONING, .text = MS_STR_LIT("think")},
        {.type = EV_TOOL_START, .index = 1, .id = MS_STR_LIT("call_9"), .name = MS_STR_LIT("get")},
        {.type = EV_TOOL_ARGS, .index = 1, .text = MS_STR_LIT("{}")},
        {.type = EV_FINISH, .finish = EV_FINISH_TOOL_CALLS},
    };
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        CHECK_EQ_INT(dialect_openai_chat.event(e, &evs[i], NULL), 0);
    buf_t out;
    buf_init(&out, 0);
    usage_counts u = {.input = 10, .cache_write_1h = 2, .output = 4};
    CHECK_EQ_INT(dialect_openai_chat.answer(e, &u, &out), 0);
    CHECK_EQ_STR(str(&out),
                 "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,"
                 "\"model\":\"claude-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                 "\"assistant\",\"content\":null,\"refusal\":null,\"reasoning_content\":\"think\","
                 "\"tool_calls\":[{\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":"
                 "\"get\",\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":"
                 "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4,"
                 "\"total_tokens\":16,\"prompt_tokens_details\":{\"cached_tokens\":0},"
                 "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
    buf_free(&out);
    /* arguments for a call that never started are an error, not a silent drop */
    ev_event stray = {.type = EV_TOOL_ARGS, .index = 7, .text = MS_STR_LIT("x")};
    CHECK_EQ_INT(dialect_openai_chat.event(e, &stray, NULL), -1);
    dialect_openai_chat.enc_free(e);
}

/* A usage event that passed through keeps its bytes; the cost goes inside its usage object. */
static void test_openai_passthrough_usage(void)
{
    dialect_req rq = REQ;
    rq.include_usage = 1;
    dialect_enc *e = dialect_openai_chat.enc_new(&rq);
    buf_t out;
    buf_init(&out, 0);
    ms_str up = MS_STR_LIT("{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1} }");
    CHECK_EQ_INT(dialect_openai_chat.stream_end(e, NULL, up, "0.5", NULL, &out), 0);
    CHECK_EQ_STR(str(&out), "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
                            "\"cost\":0.5} }\n\ndata: [DONE]\n\n");
    buf_reset(&out);
    /* no cost known (nothing charged): 0; an event without usage goes as it came */
    ms_str odd = MS_STR_LIT("{\"usage\":5}");
    CHECK_EQ_INT(dialect_openai_chat.stream_end(e, NULL, odd, "", NULL, &out), 0);
    CHECK_EQ_STR(str(&out), "data: {\"usage\":5}\n\ndata: [DONE]\n\n");
    buf_free(&out);
    dialect_openai_chat.enc_free(e);
}

int main(void)
{
    RUN(test_openai_stream_text);
    RUN(test_openai_stream_tools);
    RUN(test_openai_whole);
    RUN(test_openai_passthrough_usage);
    TAP_DONE();
}
