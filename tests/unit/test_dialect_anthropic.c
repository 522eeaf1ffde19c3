/*
 * Golden tests of the Anthropic Messages encoder (src/dialect/anthropic_messages.c): normalized
 * events in, the exact bytes an Anthropic client (Claude Code, the SDKs) gets out, streamed and
 * whole. They pin what those clients depend on: one block open at a time with indexes from 0, a
 * signature before every thinking block's stop, interleaved tool calls serialized, complete usage
 * in message_start whether or not the provider's usage came first, the final usage and cost in
 * message_delta, the finish mapping, and in-band errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/dialect.h"
#include "tap.h"

static const dialect *const D = &dialect_anthropic_messages;

static const dialect_req REQ = {.model = "gpt-x", .request_id = "req_abc", .created = 1700000000};

#define START_HEAD                                                                                 \
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_abc\","     \
    "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"gpt-x\",\"content\":[],"              \
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
/* message_start when the provider's usage has not come yet: every count, as 0 */
#define START0                                                                                     \
    START_HEAD                                                                                     \
    "{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":"           \
    "0,\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,"                                       \
    "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":0}}}\n\n"
#define BSTART(i, block)                                                                           \
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":" #i            \
    ",\"content_block\":" block "}\n\n"
#define BDELTA(i, delta)                                                                           \
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":" #i            \
    ",\"delta\":" delta "}\n\n"
#define BSTOP(i)                                                                                   \
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":" #i "}\n\n"
#define MDELTA(reason, usage)                                                                      \
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"" reason \
    "\",\"stop_sequence\":null},\"usage\":" usage "}\n\n"
#define MSTOP "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
#define TEXT_BLOCK "{\"type\":\"text\",\"text\":\"\"}"
#define THINK_BLOCK "{\"type\":\"thinking\",\"thinking\":\"\"}"
#define SIG "{\"type\":\"signature_delta\",\"signature\":\"modelswitch-unsigned-thinking\"}"
#define TEXT_D(s) "{\"type\":\"text_delta\",\"text\":\"" s "\"}"
#define THINK_D(s) "{\"type\":\"thinking_delta\",\"thinking\":\"" s "\"}"
#define JSON_D(s) "{\"type\":\"input_json_delta\",\"partial_json\":\"" s "\"}"
#define USAGE0                                                                                     \
    "{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"         \
    "\"output_tokens\":0,\"cost\":0}"
#define WHOLE_HEAD                                                                                 \
    "{\"id\":\"msg_abc\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"gpt-x\","         \
    "\"content\":["

static const char *str(const buf_t *b)
{
    return b->data ? b->data : "";
}

/* Streams evs, then ends the stream; returns the bytes (the caller frees). */
static char *stream(const ev_event *evs, size_t n, const usage_counts *u, const char *cost,
                    const dialect_error *err)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(D->event(e, &evs[i], &out), 0);
    CHECK_EQ_INT(D->stream_end(e, u, (ms_str){0}, cost, err, &out), 0);
    D->enc_free(e);
    char *s = strdup(str(&out));
    buf_free(&out);
    return s;
}

/* Accumulates evs and writes the whole answer; NULL when answer() fails. */
static char *whole(const ev_event *evs, size_t n, const usage_counts *u)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(D->event(e, &evs[i], NULL), 0);
    int rc = D->answer(e, u, &out);
    D->enc_free(e);
    char *s = rc == 0 ? strdup(str(&out)) : NULL;
    buf_free(&out);
    return s;
}

#define N(a) (sizeof(a) / sizeof *(a))

/* A text answer, streamed: message_start (usage not known yet: zeros), one text block, then the
 * final usage with the cost in message_delta, message_stop. Cache reads and both cache lifetimes
 * have their own fields; input_tokens is only what was read normally. */
static void test_text_stream_and_whole(void)
{
    ev_event evs[] = {
        {.type = EV_START},
        {.type = EV_TEXT, .text = MS_STR_LIT("")}, /* an OpenAI role chunk: no block */
        {.type = EV_TEXT, .text = MS_STR_LIT("Hi \"you\"\n")},
        {.type = EV_TEXT, .text = MS_STR_LIT("!")},
        {.type = EV_FINISH, .finish = EV_FINISH_STOP},
        {.type = EV_USAGE,
         .usage =
             {.input = 5, .cached_input = 3, .cache_write = 2, .cache_write_1h = 1, .output = 7}},
    };
    usage_counts u = {
        .input = 5, .cached_input = 3, .cache_write = 2, .cache_write_1h = 1, .output = 7};
    char *s = stream(evs, N(evs), &u, "0.000123", NULL);
    CHECK_EQ_STR(s,
                 START0 BSTART(0, TEXT_BLOCK) BDELTA(0, TEXT_D("Hi \\\"you\\\"\\n"))
                     BDELTA(0, TEXT_D("!")) BSTOP(0)
                         MDELTA("end_turn", "{\"input_tokens\":5,\"cache_creation_input_tokens\":3,"
                                            "\"cache_read_input_tokens\":3,\"output_tokens\":7,"
                                            "\"cost\":0.000123}") MSTOP);
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, WHOLE_HEAD "{\"type\":\"text\",\"text\":\"Hi \\\"you\\\"\\n!\"}],"
                               "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{"
                               "\"input_tokens\":5,\"cache_creation_input_tokens\":3,"
                               "\"cache_read_input_tokens\":3,\"cache_creation\":{"
                               "\"ephemeral_5m_input_tokens\":2,\"ephemeral_1h_input_tokens\":1},"
                               "\"output_tokens\":7}}");
    free(s);
}

/* The provider's usage came first (as Anthropic's and Gemini's can): message_start carries its
 * input counts, output 0; message_delta the totals. */
static void test_usage_first(void)
{
    ev_event evs[] = {
        {.type = EV_USAGE, .usage = {.input = 12, .cached_input = 4, .cache_write_1h = 2}},
        {.type = EV_TEXT, .text = MS_STR_LIT("ok")},
        {.type = EV_USAGE,
         .usage = {.input = 12, .cached_input = 4, .cache_write_1h = 2, .output = 9}},
    };
    /* no usage from the engine: the last EV_USAGE is what message_delta gives; no cost: 0 */
    char *s = stream(evs, N(evs), NULL, "", NULL);
    CHECK_EQ_STR(s, START_HEAD
                 "{\"input_tokens\":12,\"cache_creation_input_tokens\":2,"
                 "\"cache_read_input_tokens\":4,\"cache_creation\":{"
                 "\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":2},"
                 "\"output_tokens\":0}}}\n\n" BSTART(0, TEXT_BLOCK) BDELTA(0, TEXT_D("ok")) BSTOP(0)
                     MDELTA("end_turn", "{\"input_tokens\":12,\"cache_creation_input_tokens\":2,"
                                        "\"cache_read_input_tokens\":4,\"output_tokens\":9,"
                                        "\"cost\":0}") MSTOP);
    free(s);
}

/* Thinking then text: a thinking block with its deltas and the signature before its stop, then a
 * text block; reasoning after text opens a new thinking block, never a thinking delta inside the
 * text block. */
static void test_thinking_then_text(void)
{
    ev_event evs[] = {
        {.type = EV_REASONING, .text = MS_STR_LIT("hmm")},
        {.type = EV_REASONING, .text = MS_STR_LIT(" ok")},
        {.type = EV_TEXT, .text = MS_STR_LIT("Hi")},
        {.type = EV_REASONING, .text = MS_STR_LIT("more")},
        {.type = EV_FINISH, .finish = EV_FINISH_LENGTH},
    };
    usage_counts u = {.input = 1, .output = 2, .reasoning = 1};
    char *s = stream(evs, N(evs), &u, "0.5", NULL);
    CHECK_EQ_STR(
        s, START0 BSTART(0, THINK_BLOCK) BDELTA(0, THINK_D("hmm")) BDELTA(0, THINK_D(" ok"))
               BDELTA(0, SIG) BSTOP(0) BSTART(1, TEXT_BLOCK) BDELTA(1, TEXT_D("Hi")) BSTOP(1)
                   BSTART(2, THINK_BLOCK) BDELTA(2, THINK_D("more")) BDELTA(2, SIG) BSTOP(2)
                       MDELTA("max_tokens", "{\"input_tokens\":1,\"cache_creation_input_tokens\":0,"
                                            "\"cache_read_input_tokens\":0,\"output_tokens\":2,"
                                            "\"cost\":0.5}") MSTOP);
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, WHOLE_HEAD
                 "{\"type\":\"thinking\",\"thinking\":\"hmm ok\",\"signature\":"
                 "\"modelswitch-unsigned-thinking\"},{\"type\":\"text\",\"text\":\"Hi\"},"
                 "{\"type\":\"thinking\",\"thinking\":\"more\",\"signature\":"
                 "\"modelswitch-unsigned-thinking\"}],\"stop_reason\":\"max_tokens\","
                 "\"stop_sequence\":null,\"usage\":{\"input_tokens\":1,"
                 "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
                 "\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,"
                 "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":2}}");
    free(s);
}

/* Block indexes past one digit: text and reasoning alternating twelve times open twelve blocks,
 * numbered 0..11 in their start, deltas and stop. */
static void test_many_blocks(void)
{
    /* two deltas a block, the second marked plain (ev_event.plain: the encoder copies it as it
     * is, one reservation, while the block's index is one digit): the same bytes unmarked */
    ev_event evs[24];
    for (size_t i = 0; i < 24; i++)
        evs[i] = (ev_event){.type = i / 2 % 2 ? EV_TEXT : EV_REASONING,
                            .plain = (int)(i % 2),
                            .text = i % 2 ? MS_STR_LIT("y") : MS_STR_LIT("x")};
    usage_counts u = {.input = 1, .output = 12};
    char *s = stream(evs, N(evs), &u, "", NULL);
    CHECK(strstr(s, BSTOP(8) BSTART(9, TEXT_BLOCK) BDELTA(9, TEXT_D("x")) BDELTA(9, TEXT_D("y"))
                        BSTOP(9) BSTART(10, THINK_BLOCK) BDELTA(10, THINK_D("x")) BDELTA(
                            10, THINK_D("y")) BDELTA(10, SIG) BSTOP(10) BSTART(11, TEXT_BLOCK)
                            BDELTA(11, TEXT_D("x")) BDELTA(11, TEXT_D("y")) BSTOP(11)) != NULL);
    for (size_t i = 0; i < 24; i++)
        evs[i].plain = 0;
    char *bare = stream(evs, N(evs), &u, "", NULL);
    CHECK_EQ_STR(s, bare);
    free(bare);
    free(s);
}

/* Text, then a tool call whose arguments stream as input_json_delta; whole, the arguments are
 * the tool_use block's parsed input. */
static void test_tool_use(void)
{
    ev_event evs[] = {
        {.type = EV_TEXT, .text = MS_STR_LIT("Let me check.")},
        {.type = EV_TOOL_START,
         .index = 0,
         .id = MS_STR_LIT("call_1"),
         .name = MS_STR_LIT("get_weather")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("{\"city\":")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT(" \"Paris\"}")},
        {.type = EV_FINISH, .finish = EV_FINISH_TOOL_CALLS},
    };
    usage_counts u = {.input = 20, .output = 10};
    char *s = stream(evs, N(evs), &u, "0.01", NULL);
    CHECK_EQ_STR(s,
                 START0 BSTART(0, TEXT_BLOCK) BDELTA(0, TEXT_D("Let me check.")) BSTOP(0)
                     BSTART(1, "{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":"
                               "\"get_weather\",\"input\":{}}") BDELTA(1, JSON_D("{\\\"city\\\":"))
                         BDELTA(1, JSON_D(" \\\"Paris\\\"}")) BSTOP(1)
                             MDELTA("tool_use", "{\"input_tokens\":20,\"cache_creation_input_"
                                                "tokens\":0,\"cache_read_input_tokens\":0,"
                                                "\"output_tokens\":10,\"cost\":0.01}") MSTOP);
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, WHOLE_HEAD "{\"type\":\"text\",\"text\":\"Let me check.\"},{\"type\":"
                               "\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\","
                               "\"input\":{\"city\": \"Paris\"}}],\"stop_reason\":\"tool_use\","
                               "\"stop_sequence\":null,\"usage\":{\"input_tokens\":20,"
                               "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
                               "\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,"
                               "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":10}}");
    free(s);
}

/* Two calls interleaved by index (OpenAI can): the first call's block streams as it comes; the
 * second waits, its arguments held, and follows as one block after the first one's stop. */
static void test_interleaved_tools(void)
{
    ev_event evs[] = {
        {.type = EV_TOOL_START, .index = 0, .id = MS_STR_LIT("call_a"), .name = MS_STR_LIT("f")},
        {.type = EV_TOOL_START, .index = 1, .id = MS_STR_LIT("call_b"), .name = MS_STR_LIT("g")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("{\"x\":")},
        {.type = EV_TOOL_ARGS, .index = 1, .text = MS_STR_LIT("{\"y\":")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("1}")},
        {.type = EV_TOOL_START, .index = 1, .id = MS_STR_LIT("call_b"), .name = MS_STR_LIT("g")},
        {.type = EV_TOOL_ARGS, .index = 1, .text = MS_STR_LIT("2}")},
        {.type = EV_FINISH, .finish = EV_FINISH_TOOL_CALLS},
    };
    char *s = stream(evs, N(evs), NULL, "0", NULL);
    CHECK_EQ_STR(s, START0 BSTART(0, "{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"f\","
                                     "\"input\":{}}") BDELTA(0, JSON_D("{\\\"x\\\":"))
                        BDELTA(0, JSON_D("1}")) BSTOP(0)
                            BSTART(1, "{\"type\":\"tool_use\",\"id\":\"call_b\",\"name\":\"g\","
                                      "\"input\":{}}") BDELTA(1, JSON_D("{\\\"y\\\":2}")) BSTOP(1)
                                MDELTA("tool_use", USAGE0) MSTOP);
    free(s);
    usage_counts u = {0};
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, WHOLE_HEAD "{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"f\","
                               "\"input\":{\"x\":1}},{\"type\":\"tool_use\",\"id\":\"call_b\","
                               "\"name\":\"g\",\"input\":{\"y\":2}}],\"stop_reason\":\"tool_use\","
                               "\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
                               "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
                               "\"cache_creation\":{\"ephemeral_5m_input_tokens\":0,"
                               "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":0}}");
    free(s);
}

/* Calls that cannot be placed are errors, not silent drops; a call without an id gets one. */
static void test_tool_edges(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ev_event start = {.type = EV_TOOL_START, .index = 3, .name = MS_STR_LIT("h")};
    CHECK_EQ_INT(D->event(e, &start, &out), 0);
    CHECK(strstr(str(&out), "\"id\":\"toolu_abc_0\",\"name\":\"h\"") != NULL);
    ev_event text = {.type = EV_TEXT, .text = MS_STR_LIT("x")};
    CHECK_EQ_INT(D->event(e, &text, &out), 0);
    /* the call's block was stopped when the text began: its arguments have no place now */
    ev_event late = {.type = EV_TOOL_ARGS, .index = 3, .text = MS_STR_LIT("{}")};
    CHECK_EQ_INT(D->event(e, &late, &out), -1);
    CHECK_EQ_INT(D->event(e, &text, &out), -1); /* and the encoder stays failed */
    D->enc_free(e);
    buf_free(&out);

    /* arguments for a call that never began */
    e = D->enc_new(&REQ);
    buf_init(&out, 0);
    ev_event stray = {.type = EV_TOOL_ARGS, .index = 7, .text = MS_STR_LIT("x")};
    CHECK_EQ_INT(D->event(e, &stray, &out), -1);
    D->enc_free(e);
    buf_free(&out);

    /* whole: arguments that are not a JSON object fail the answer (the engine's 502); none at
     * all are {} */
    ev_event bad[] = {
        {.type = EV_TOOL_START, .index = 0, .id = MS_STR_LIT("c"), .name = MS_STR_LIT("f")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("{\"a\":")},
    };
    usage_counts u = {0};
    CHECK(whole(bad, N(bad), &u) == NULL);
    bad[1].text = MS_STR_LIT("[1]");
    CHECK(whole(bad, N(bad), &u) == NULL);
    char *s = whole(bad, 1, &u);
    CHECK(s && strstr(s, "\"name\":\"f\",\"input\":{}}]") != NULL);
    free(s);
}

/* An error mid-stream ends it as Anthropic's does: the error event, nothing after it (no block
 * stop, no message_delta, no message_stop), with Anthropic's type for the contract's. */
static void test_error_mid_stream(void)
{
    ev_event evs[] = {{.type = EV_TEXT, .text = MS_STR_LIT("par")}};
    dialect_error err = {"provider_error", "upstream_error", "cut \"off\""};
    usage_counts u = {.input = 3, .output = 1};
    char *s = stream(evs, N(evs), &u, "0.1", &err);
    CHECK_EQ_STR(
        s,
        START0 BSTART(0, TEXT_BLOCK) BDELTA(
            0,
            TEXT_D(
                "par")) "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                        "\"message\":\"cut "
                        "\\\"off\\\"\",\"code\":\"provider_error\",\"param\":null}}"
                        "\n\n");
    free(s);
    /* before any event: only the error */
    dialect_error to = {"upstream_timeout", "timeout_error", "slow"};
    s = stream(NULL, 0, NULL, "", &to);
    CHECK_EQ_STR(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"timeout_error\","
                    "\"message\":\"slow\",\"code\":\"upstream_timeout\",\"param\":null}}\n\n");
    free(s);
    struct {
        dialect_error err;
        const char *want;
    } map[] = {
        {{"service_unavailable", "service_unavailable_error", "m"}, "overloaded_error"},
        {{"internal_error", "api_error", "m"}, "api_error"},
        {{"rate_limit_exceeded", "rate_limit_error", "m"}, "rate_limit_error"},
        {{"invalid_api_key", "invalid_request_error", "m"}, "authentication_error"},
        {{"request_too_large", "invalid_request_error", "m"}, "request_too_large"},
        {{"insufficient_balance", "permission_error", "m"}, "permission_error"},
        {{"model_not_found", "not_found_error", "m"}, "not_found_error"},
        {{"x", "something_new", "m"}, "api_error"},
    };
    for (size_t i = 0; i < N(map); i++) {
        s = stream(NULL, 0, NULL, "", &map[i].err);
        char want[128];
        snprintf(want, sizeof want, "\"error\":{\"type\":\"%s\"", map[i].want);
        CHECK(strstr(s, want) != NULL);
        free(s);
    }
}

/* The gateway's finishes in Anthropic's names, streamed and whole; a natural end after tool
 * calls is tool_use, as Anthropic says it. */
static void test_finish_mapping(void)
{
    struct {
        ev_finish f;
        int tool;
        const char *want;
    } map[] = {
        {EV_FINISH_STOP, 0, "end_turn"},       {EV_FINISH_LENGTH, 0, "max_tokens"},
        {EV_FINISH_TOOL_CALLS, 1, "tool_use"}, {EV_FINISH_CONTENT_FILTER, 0, "refusal"},
        {EV_FINISH_STOP, 1, "tool_use"},       {EV_FINISH_LENGTH, 1, "max_tokens"},
    };
    for (size_t i = 0; i < N(map); i++) {
        ev_event evs[] = {
            {.type = EV_TOOL_START, .index = 0, .id = MS_STR_LIT("c"), .name = MS_STR_LIT("f")},
            {.type = EV_FINISH, .finish = map[i].f},
        };
        char want[96];
        snprintf(want, sizeof want, "\"stop_reason\":\"%s\"", map[i].want);
        const ev_event *first = map[i].tool ? evs : evs + 1;
        size_t n = map[i].tool ? 2 : 1;
        char *s = stream(first, n, NULL, "", NULL);
        CHECK(strstr(s, want) != NULL);
        free(s);
        usage_counts u = {0};
        s = whole(first, n, &u);
        CHECK(s && strstr(s, want) != NULL);
        free(s);
    }
    /* no finish at all, nothing said: an empty message that ended normally */
    char *s = stream(NULL, 0, NULL, NULL, NULL);
    CHECK_EQ_STR(s, START0 MDELTA("end_turn", USAGE0) MSTOP);
    free(s);
}

/* Pass-through (the provider speaks Anthropic's API): its own message_delta, held back, goes out
 * with the cost inside its usage, then message_stop; nothing else is written. */
static void test_passthrough_usage(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ms_str up = MS_STR_LIT("{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
                           "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}");
    CHECK_EQ_INT(D->stream_end(e, NULL, up, "0.25", NULL, &out), 0);
    CHECK_EQ_STR(str(&out), "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{"
                            "\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{"
                            "\"output_tokens\":15,\"cost\":0.25}}\n\n" MSTOP);
    D->enc_free(e);
    buf_free(&out);
}

int main(void)
{
    RUN(test_text_stream_and_whole);
    RUN(test_usage_first);
    RUN(test_thinking_then_text);
    RUN(test_many_blocks);
    RUN(test_tool_use);
    RUN(test_interleaved_tools);
    RUN(test_tool_edges);
    RUN(test_error_mid_stream);
    RUN(test_finish_mapping);
    RUN(test_passthrough_usage);
    TAP_DONE();
}
