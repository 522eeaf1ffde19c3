/*
 * Golden tests of the OpenAI Responses encoder (src/dialect/openai_responses.c): normalized events
 * in, the exact bytes a Responses client (Codex, the Vercel AI SDK, the openai SDKs) gets out,
 * streamed and whole. They pin what those clients depend on: response.created first, sequence
 * numbers from 0 without a gap, one output item at a time with its added/delta/done events and
 * output_index in order, interleaved tool calls serialized, the whole response (output and usage
 * with the cost) in the terminal event, incomplete on the output limit, and failures as an error
 * event then response.failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dialect/dialect.h"
#include "tap.h"

static const dialect *const D = &dialect_openai_responses;

static const dialect_req REQ = {.model = "gpt-x", .request_id = "req_abc", .created = 1700000000};

/* One SSE event: its type twice, its sequence number, the rest of its data. */
#define EV(type, seq, rest)                                                                        \
    "event: " type "\ndata: {\"type\":\"" type "\",\"sequence_number\":" #seq rest "}\n\n"
/* The response object; status, error, incomplete_details, output items, usage. */
#define RESP(status, error, incomplete, output, usage)                                             \
    "{\"id\":\"resp_abc\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"" status  \
    "\",\"error\":" error ",\"incomplete_details\":" incomplete                                    \
    ",\"instructions\":null,\"max_output_tokens\":null,\"model\":\"gpt-x\",\"output\":[" output    \
    "],\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{\"effort\":null," \
    "\"summary\":null},\"temperature\":null,\"text\":{\"format\":{\"type\":\"text\"}},"            \
    "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":null,\"truncation\":\"disabled\","            \
    "\"usage\":" usage ",\"metadata\":{}}"
#define START                                                                                      \
    EV("response.created", 0, ",\"response\":" RESP("in_progress", "null", "null", "", "null"))    \
    EV("response.in_progress", 1, ",\"response\":" RESP("in_progress", "null", "null", "", "null"))
#define USAGE(in, cached, out, reasoning, total, more)                                             \
    "{\"input_tokens\":" #in ",\"input_tokens_details\":{\"cached_tokens\":" #cached               \
    "},\"output_tokens\":" #out ",\"output_tokens_details\":{\"reasoning_tokens\":" #reasoning     \
    "},\"total_tokens\":" #total more "}"
#define USAGE0(cost) USAGE(0, 0, 0, 0, 0, ",\"cost\":" cost)
#define REF(id, i) ",\"item_id\":\"" id "\",\"output_index\":" #i
#define MSG(id, status, text)                                                                      \
    "{\"type\":\"message\",\"id\":\"" id "\",\"status\":\"" status                                 \
    "\",\"role\":\"assistant\",\"content\":[" text "]}"
#define OTEXT(s) "{\"type\":\"output_text\",\"text\":\"" s "\",\"annotations\":[]}"
#define RS(id, summary) "{\"type\":\"reasoning\",\"id\":\"" id "\",\"summary\":[" summary "]}"
#define STEXT(s) "{\"type\":\"summary_text\",\"text\":\"" s "\"}"
#define FC(id, call, name, args, status)                                                           \
    "{\"type\":\"function_call\",\"id\":\"" id "\",\"call_id\":\"" call "\",\"name\":\"" name      \
    "\",\"arguments\":\"" args "\",\"status\":\"" status "\"}"
#define ITEM_ADDED(seq, i, item)                                                                   \
    EV("response.output_item.added", seq, ",\"output_index\":" #i ",\"item\":" item)
#define ITEM_DONE(seq, i, item)                                                                    \
    EV("response.output_item.done", seq, ",\"output_index\":" #i ",\"item\":" item)
/* A whole message item's events, from its added to its done: seq a.. a+5 (one delta per text) */
#define TEXT_DELTA(seq, id, i, s)                                                                  \
    EV("response.output_text.delta", seq,                                                          \
       REF(id, i) ",\"content_index\":0,\"delta\":\"" s "\",\"logprobs\":[]")
#define PART_ADDED(seq, id, i)                                                                     \
    EV("response.content_part.added", seq, REF(id, i) ",\"content_index\":0,\"part\":" OTEXT(""))
#define TEXT_DONE(seq, id, i, s)                                                                   \
    EV("response.output_text.done", seq,                                                           \
       REF(id, i) ",\"content_index\":0,\"text\":\"" s "\",\"logprobs\":[]")
#define PART_DONE(seq, id, i, s)                                                                   \
    EV("response.content_part.done", seq, REF(id, i) ",\"content_index\":0,\"part\":" OTEXT(s))
#define ARGS_DELTA(seq, id, i, s)                                                                  \
    EV("response.function_call_arguments.delta", seq, REF(id, i) ",\"delta\":\"" s "\"")
#define ARGS_DONE(seq, id, i, name, s)                                                             \
    EV("response.function_call_arguments.done", seq,                                               \
       REF(id, i) ",\"name\":\"" name "\",\"arguments\":\"" s "\"")

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

/* A text answer: one message item, streamed with its part and text events, then
 * response.completed with the whole response; usage maps every prompt count into input_tokens
 * (5 + 3 + 2 + 1), the cache reads into cached_tokens, and carries the cost. Whole: the same
 * response object, without cost. */
static void test_text_stream_and_whole(void)
{
    ev_event evs[] = {
        {.type = EV_START},
        {.type = EV_TEXT, .text = MS_STR_LIT("")}, /* an OpenAI role chunk: no item */
        {.type = EV_TEXT, .text = MS_STR_LIT("Hi \"you\"\n")},
        {.type = EV_TEXT, .text = MS_STR_LIT("!")},
        {.type = EV_FINISH, .finish = EV_FINISH_STOP},
    };
    usage_counts u = {.input = 5,
                      .cached_input = 3,
                      .cache_write = 2,
                      .cache_write_1h = 1,
                      .output = 7,
                      .reasoning = 4};
    char *s = stream(evs, N(evs), &u, "0.000123", NULL);
    CHECK_EQ_STR(
        s,
        START ITEM_ADDED(2, 0, MSG("msg_abc_0", "in_progress", "")) PART_ADDED(3, "msg_abc_0", 0)
            TEXT_DELTA(4, "msg_abc_0", 0, "Hi \\\"you\\\"\\n") TEXT_DELTA(5, "msg_abc_0", 0, "!")
                TEXT_DONE(6, "msg_abc_0", 0, "Hi \\\"you\\\"\\n!")
                    PART_DONE(7, "msg_abc_0", 0, "Hi \\\"you\\\"\\n!")
                        ITEM_DONE(8, 0, MSG("msg_abc_0", "completed", OTEXT("Hi \\\"you\\\"\\n!")))
                            EV("response.completed", 9,
                               ",\"response\":" RESP(
                                   "completed", "null", "null",
                                   MSG("msg_abc_0", "completed", OTEXT("Hi \\\"you\\\"\\n!")),
                                   USAGE(11, 3, 7, 4, 18, ",\"cost\":0.000123"))));
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, RESP("completed", "null", "null",
                         MSG("msg_abc_0", "completed", OTEXT("Hi \\\"you\\\"\\n!")),
                         USAGE(11, 3, 7, 4, 18, "")));
    free(s);
}

/* Reasoning then text: a reasoning item whose text goes out as its summary (part, text deltas,
 * done), then a message item; reasoning after text is a new reasoning item. No usage from the
 * engine: the last EV_USAGE is the one shown; no cost: 0. */
static void test_reasoning_then_text(void)
{
    ev_event evs[] = {
        {.type = EV_REASONING, .text = MS_STR_LIT("hmm")},
        {.type = EV_TEXT, .text = MS_STR_LIT("Hi")},
        {.type = EV_USAGE, .usage = {.input = 2, .output = 3, .reasoning = 1}},
        {.type = EV_REASONING, .text = MS_STR_LIT("more")},
        {.type = EV_FINISH, .finish = EV_FINISH_STOP},
    };
#define RDELTA(seq, id, i, s)                                                                      \
    EV("response.reasoning_summary_text.delta", seq,                                               \
       REF(id, i) ",\"summary_index\":0,\"delta\":\"" s "\"")
#define RPART_ADDED(seq, id, i)                                                                    \
    EV("response.reasoning_summary_part.added", seq,                                               \
       REF(id, i) ",\"summary_index\":0,\"part\":" STEXT(""))
#define RDONE(seq, seq2, id, i, s)                                                                 \
    EV("response.reasoning_summary_text.done", seq,                                                \
       REF(id, i) ",\"summary_index\":0,\"text\":\"" s "\"")                                       \
    EV("response.reasoning_summary_part.done", seq2,                                               \
       REF(id, i) ",\"summary_index\":0,\"part\":" STEXT(s))
    char *s = stream(evs, N(evs), NULL, "", NULL);
    CHECK_EQ_STR(
        s,
        START ITEM_ADDED(2, 0, RS("rs_abc_0", "")) RPART_ADDED(3, "rs_abc_0", 0) RDELTA(
            4, "rs_abc_0", 0, "hmm") RDONE(5, 6, "rs_abc_0", 0,
                                           "hmm") ITEM_DONE(7, 0, RS("rs_abc_0", STEXT("hmm")))
            ITEM_ADDED(8, 1, MSG("msg_abc_1", "in_progress", "")) PART_ADDED(9, "msg_abc_1", 1)
                TEXT_DELTA(10, "msg_abc_1", 1, "Hi") TEXT_DONE(11, "msg_abc_1", 1, "Hi")
                    PART_DONE(12, "msg_abc_1", 1,
                              "Hi") ITEM_DONE(13, 1, MSG("msg_abc_1", "completed", OTEXT("Hi")))
                        ITEM_ADDED(14, 2, RS("rs_abc_2", "")) RPART_ADDED(15, "rs_abc_2", 2)
                            RDELTA(16, "rs_abc_2", 2, "more") RDONE(17, 18, "rs_abc_2", 2, "more")
                                ITEM_DONE(19, 2, RS("rs_abc_2", STEXT("more")))
                                    EV("response.completed", 20,
                                       ",\"response\":" RESP(
                                           "completed", "null", "null",
                                           RS("rs_abc_0", STEXT("hmm")) "," MSG(
                                               "msg_abc_1", "completed",
                                               OTEXT("Hi")) "," RS("rs_abc_2", STEXT("more")),
                                           USAGE(2, 0, 3, 1, 5, ",\"cost\":0"))));
    free(s);
    s = whole(evs, N(evs), NULL);
    CHECK_EQ_STR(
        s, RESP("completed", "null", "null",
                RS("rs_abc_0", STEXT("hmm")) "," MSG("msg_abc_1", "completed",
                                                     OTEXT("Hi")) "," RS("rs_abc_2", STEXT("more")),
                USAGE(2, 0, 3, 1, 5, "")));
    free(s);
}

/* A function call: added with empty arguments, argument deltas, done with the whole arguments
 * and the provider's id as call_id; whole, the same item. */
static void test_function_call(void)
{
    ev_event evs[] = {
        {.type = EV_TOOL_START,
         .index = 0,
         .id = MS_STR_LIT("call_1"),
         .name = MS_STR_LIT("get_weather")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("{\"city\":")},
        {.type = EV_TOOL_ARGS, .index = 0, .text = MS_STR_LIT("\"Paris\"}")},
        {.type = EV_FINISH, .finish = EV_FINISH_TOOL_CALLS},
    };
    usage_counts u = {.input = 20, .output = 10};
    char *s = stream(evs, N(evs), &u, "0.01", NULL);
#define WEATHER(status)                                                                            \
    FC("fc_abc_0", "call_1", "get_weather", "{\\\"city\\\":\\\"Paris\\\"}", status)
    CHECK_EQ_STR(
        s, START ITEM_ADDED(2, 0, FC("fc_abc_0", "call_1", "get_weather", "", "in_progress"))
               ARGS_DELTA(3, "fc_abc_0", 0, "{\\\"city\\\":") ARGS_DELTA(4, "fc_abc_0", 0,
                                                                         "\\\"Paris\\\"}")
                   ARGS_DONE(5, "fc_abc_0", 0, "get_weather",
                             "{\\\"city\\\":\\\"Paris\\\"}") ITEM_DONE(6, 0, WEATHER("completed"))
                       EV("response.completed", 7,
                          ",\"response\":" RESP("completed", "null", "null", WEATHER("completed"),
                                                USAGE(20, 0, 10, 0, 30, ",\"cost\":0.01"))));
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(
        s, RESP("completed", "null", "null", WEATHER("completed"), USAGE(20, 0, 10, 0, 30, "")));
    free(s);
}

/* Two calls interleaved by index (OpenAI can): the first call's item streams as it comes; the
 * second waits, its arguments held, and follows as a whole item (one delta) after the first
 * one's done. */
static void test_interleaved_calls(void)
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
#define CALL_A(status) FC("fc_abc_0", "call_a", "f", "{\\\"x\\\":1}", status)
#define CALL_B(status) FC("fc_abc_1", "call_b", "g", "{\\\"y\\\":2}", status)
    char *s = stream(evs, N(evs), NULL, "0", NULL);
    CHECK_EQ_STR(s,
                 START ITEM_ADDED(2, 0, FC("fc_abc_0", "call_a", "f", "", "in_progress"))
                     ARGS_DELTA(3, "fc_abc_0", 0, "{\\\"x\\\":") ARGS_DELTA(4, "fc_abc_0", 0, "1}")
                         ARGS_DONE(5, "fc_abc_0", 0, "f", "{\\\"x\\\":1}")
                             ITEM_DONE(6, 0, CALL_A("completed"))
                                 ITEM_ADDED(7, 1, FC("fc_abc_1", "call_b", "g", "", "in_progress"))
                                     ARGS_DELTA(8, "fc_abc_1", 1, "{\\\"y\\\":2}")
                                         ARGS_DONE(9, "fc_abc_1", 1, "g", "{\\\"y\\\":2}")
                                             ITEM_DONE(10, 1, CALL_B("completed"))
                                                 EV("response.completed", 11,
                                                    ",\"response\":" RESP(
                                                        "completed", "null", "null",
                                                        CALL_A("completed") "," CALL_B("completed"),
                                                        USAGE0("0"))));
    free(s);
    usage_counts u = {0};
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, RESP("completed", "null", "null", CALL_A("completed") "," CALL_B("completed"),
                         USAGE(0, 0, 0, 0, 0, "")));
    free(s);
}

/* Calls that cannot be placed are errors, not silent drops; a call without an id gets one, and
 * no arguments at all are "{}". */
static void test_call_edges(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ev_event start = {.type = EV_TOOL_START, .index = 3, .name = MS_STR_LIT("h")};
    CHECK_EQ_INT(D->event(e, &start, &out), 0);
    CHECK(strstr(str(&out), "\"call_id\":\"call_abc_0\",\"name\":\"h\"") != NULL);
    ev_event text = {.type = EV_TEXT, .text = MS_STR_LIT("x")};
    CHECK_EQ_INT(D->event(e, &text, &out), 0);
    CHECK(strstr(str(&out), "\"arguments\":\"{}\",\"status\":\"completed\"") != NULL);
    /* the call is done since the text began: its arguments have no place now */
    ev_event late = {.type = EV_TOOL_ARGS, .index = 3, .text = MS_STR_LIT("{}")};
    CHECK_EQ_INT(D->event(e, &late, &out), -1);
    CHECK_EQ_INT(D->event(e, &text, &out), -1); /* and the encoder stays failed */
    D->enc_free(e);
    buf_free(&out);

    e = D->enc_new(&REQ);
    buf_init(&out, 0);
    ev_event stray = {.type = EV_TOOL_ARGS, .index = 7, .text = MS_STR_LIT("x")};
    CHECK_EQ_INT(D->event(e, &stray, &out), -1);
    D->enc_free(e);
    buf_free(&out);
    e = D->enc_new(&REQ);
    CHECK_EQ_INT(D->event(e, &stray, NULL), -1);
    buf_init(&out, 0);
    CHECK_EQ_INT(D->answer(e, NULL, &out), -1);
    D->enc_free(e);
    buf_free(&out);
}

/* The output limit: response.incomplete with incomplete_details max_output_tokens, the last item
 * "incomplete"; a filter: reason content_filter. Whole answers alike. */
static void test_incomplete(void)
{
    ev_event evs[] = {
        {.type = EV_TEXT, .text = MS_STR_LIT("cut")},
        {.type = EV_FINISH, .finish = EV_FINISH_LENGTH},
    };
    usage_counts u = {.input = 1, .output = 2};
    char *s = stream(evs, N(evs), &u, "0.5", NULL);
    CHECK_EQ_STR(s,
                 START ITEM_ADDED(2, 0, MSG("msg_abc_0", "in_progress", ""))
                     PART_ADDED(3, "msg_abc_0", 0) TEXT_DELTA(4, "msg_abc_0", 0, "cut")
                         TEXT_DONE(5, "msg_abc_0", 0, "cut") PART_DONE(6, "msg_abc_0", 0, "cut")
                             ITEM_DONE(7, 0, MSG("msg_abc_0", "incomplete", OTEXT("cut")))
                                 EV("response.incomplete", 8,
                                    ",\"response\":" RESP(
                                        "incomplete", "null", "{\"reason\":\"max_output_tokens\"}",
                                        MSG("msg_abc_0", "incomplete", OTEXT("cut")),
                                        USAGE(1, 0, 2, 0, 3, ",\"cost\":0.5"))));
    free(s);
    s = whole(evs, N(evs), &u);
    CHECK_EQ_STR(s, RESP("incomplete", "null", "{\"reason\":\"max_output_tokens\"}",
                         MSG("msg_abc_0", "incomplete", OTEXT("cut")), USAGE(1, 0, 2, 0, 3, "")));
    free(s);
    evs[1].finish = EV_FINISH_CONTENT_FILTER;
    s = stream(evs, N(evs), &u, "0.5", NULL);
    CHECK(strstr(s, "event: response.incomplete\n") != NULL);
    CHECK(strstr(s, "\"status\":\"incomplete\",\"error\":null,\"incomplete_details\":{\"reason\":"
                    "\"content_filter\"}") != NULL);
    free(s);
    /* nothing said at all: an empty response that completed */
    s = stream(NULL, 0, NULL, NULL, NULL);
    CHECK_EQ_STR(s, START EV("response.completed", 2,
                             ",\"response\":" RESP("completed", "null", "null", "", USAGE0("0"))));
    free(s);
}

#define ERROR_EV(seq, code, msg)                                                                   \
    EV("error", seq,                                                                               \
       ",\"code\":\"" code "\",\"message\":\"" msg "\",\"param\":null,\"error\":{\"code\":\"" code \
       "\",\"message\":\"" msg "\",\"param\":null}")

/* An error mid-stream: no more item events, the error event, then response.failed with the
 * error and the items announced so far (the unfinished one "incomplete"; a call still waiting
 * is not among them). Before any event: response.created and in_progress still come first. */
static void test_error_mid_stream(void)
{
    ev_event evs[] = {
        {.type = EV_TEXT, .text = MS_STR_LIT("par")},
    };
    dialect_error err = {"provider_error", "upstream_error", "cut \"off\""};
    usage_counts u = {.input = 3, .output = 1};
    char *s = stream(evs, N(evs), &u, "0.1", &err);
    CHECK_EQ_STR(
        s, START ITEM_ADDED(2, 0, MSG("msg_abc_0", "in_progress", "")) PART_ADDED(3, "msg_abc_0", 0)
               TEXT_DELTA(4, "msg_abc_0", 0, "par") ERROR_EV(5, "provider_error", "cut \\\"off\\\"")
                   EV("response.failed", 6,
                      ",\"response\":" RESP(
                          "failed", "{\"code\":\"provider_error\",\"message\":\"cut \\\"off\\\"\"}",
                          "null", MSG("msg_abc_0", "incomplete", OTEXT("par")),
                          USAGE(3, 0, 1, 0, 4, ",\"cost\":0.1"))));
    free(s);

    ev_event calls[] = {
        {.type = EV_TOOL_START, .index = 0, .id = MS_STR_LIT("call_a"), .name = MS_STR_LIT("f")},
        {.type = EV_TOOL_START, .index = 1, .id = MS_STR_LIT("call_b"), .name = MS_STR_LIT("g")},
    };
    s = stream(calls, N(calls), NULL, "", &err);
    CHECK(strstr(s, "\"output\":[" FC("fc_abc_0", "call_a", "f", "{}", "incomplete") "]") != NULL);
    CHECK(strstr(s, "call_b") == NULL);
    free(s);

    dialect_error to = {"upstream_timeout", "timeout_error", "slow"};
    s = stream(NULL, 0, NULL, "", &to);
    CHECK_EQ_STR(s, START ERROR_EV(2, "upstream_timeout", "slow")
                        EV("response.failed", 3,
                           ",\"response\":" RESP(
                               "failed", "{\"code\":\"upstream_timeout\",\"message\":\"slow\"}",
                               "null", "", USAGE0("0"))));
    free(s);
}

/* Whole answers with no usage at all: zeros, never an estimate. */
static void test_usage_unknown(void)
{
    ev_event evs[] = {{.type = EV_TEXT, .text = MS_STR_LIT("a")}};
    char *s = whole(evs, N(evs), NULL);
    CHECK(s && strstr(s, "\"usage\":" USAGE(0, 0, 0, 0, 0, "") ",") != NULL);
    free(s);
}

/* OpenAI's error envelope for errors that are not in a stream. */
static void test_error_body(void)
{
    buf_t out;
    buf_init(&out, 0);
    CHECK_EQ_INT(dialect_responses_error_body(&out, 401, "invalid_request_error", "invalid_api_key",
                                              NULL, "Invalid \"key\""),
                 0);
    CHECK_EQ_STR(str(&out),
                 "{\"error\":{\"message\":\"Invalid \\\"key\\\"\",\"type\":"
                 "\"invalid_request_error\",\"code\":\"invalid_api_key\",\"param\":null}}");
    buf_reset(&out);
    CHECK_EQ_INT(dialect_responses_error_body(&out, 400, "invalid_request_error",
                                              "missing_required_parameter", "model", "m"),
                 0);
    CHECK_EQ_STR(str(&out), "{\"error\":{\"message\":\"m\",\"type\":\"invalid_request_error\","
                            "\"code\":\"missing_required_parameter\",\"param\":\"model\"}}");
    buf_free(&out);
}

/* Pass-through: the provider's own terminal event, held back, goes out with the cost inside its
 * response's usage; an error after it continues its sequence numbers. */
static void test_passthrough_usage(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ms_str up = MS_STR_LIT("{\"type\":\"response.completed\",\"sequence_number\":41,\"response\":{"
                           "\"id\":\"resp_up\",\"usage\":{\"input_tokens\":5},\"x\":1}}");
    CHECK_EQ_INT(D->stream_end(e, NULL, up, "0.25", NULL, &out), 0);
    CHECK_EQ_STR(str(&out), "event: response.completed\ndata: {\"type\":\"response.completed\","
                            "\"sequence_number\":41,\"response\":{\"id\":\"resp_up\",\"usage\":{"
                            "\"input_tokens\":5,\"cost\":0.25},\"x\":1}}\n\n");
    D->enc_free(e);
    buf_reset(&out);
    e = D->enc_new(&REQ);
    dialect_error err = {"provider_error", "upstream_error", "m"};
    ms_str nousage = MS_STR_LIT("{\"type\":\"response.incomplete\",\"sequence_number\":7,"
                                "\"response\":{\"usage\":null}}");
    CHECK_EQ_INT(D->stream_end(e, NULL, nousage, "1", &err, &out), 0);
    CHECK_EQ_STR(str(&out), "event: response.incomplete\ndata: {\"type\":\"response.incomplete\","
                            "\"sequence_number\":7,\"response\":{\"usage\":null}}\n\n" ERROR_EV(
                                8, "provider_error", "m"));
    D->enc_free(e);
    buf_free(&out);
}

/* Pass-through, cut: what stands in for the terminal event (providers/openai_responses.c,
 * stream_cut) names the provider's response and its last sequence number; the error event and
 * response.failed continue them, with no output (the client has the provider's items) and no
 * response.created of the gateway's own. Without the response's fields, the encoder's stay; with
 * no error given, a generic one. */
#define RESP_OF(id, at, model, error, usage)                                                       \
    "{\"id\":\"" id "\",\"object\":\"response\",\"created_at\":" at                                \
    ",\"status\":\"failed\",\"error\":" error ",\"incomplete_details\":null,"                      \
    "\"instructions\":null,\"max_output_tokens\":null,\"model\":\"" model "\",\"output\":[],"      \
    "\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{\"effort\":null,"   \
    "\"summary\":null},\"temperature\":null,\"text\":{\"format\":{\"type\":\"text\"}},"            \
    "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":null,\"truncation\":\"disabled\","            \
    "\"usage\":" usage ",\"metadata\":{}}"
static void test_passthrough_cut(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ms_str held =
        MS_STR_LIT("{\"type\":\"response.in_progress\",\"sequence_number\":5,\"response\":"
                   "{\"id\":\"resp_up\\u0031\",\"created_at\":123,\"model\":\"gpt-up\"}}");
    dialect_error err = {"provider_error", "upstream_error", "cut"};
    CHECK_EQ_INT(D->stream_end(e, NULL, held, "0.5", &err, &out), 0);
    CHECK_EQ_STR(str(&out),
                 ERROR_EV(6, "provider_error", "cut")
                     EV("response.failed", 7,
                        ",\"response\":" RESP_OF(
                            "resp_up1", "123", "gpt-up",
                            "{\"code\":\"provider_error\",\"message\":\"cut\"}", USAGE0("0.5"))));
    D->enc_free(e);

    buf_reset(&out);
    e = D->enc_new(&REQ);
    CHECK_EQ_INT(D->stream_end(e, NULL,
                               MS_STR_LIT("{\"type\":\"response.in_progress\","
                                          "\"sequence_number\":2}"),
                               "", NULL, &out),
                 0);
    CHECK_EQ_STR(
        str(&out),
        ERROR_EV(3, "provider_error", "The provider's stream ended before it finished.")
            EV("response.failed", 4,
               ",\"response\":" RESP_OF(
                   "resp_abc", "1700000000", "gpt-x",
                   "{\"code\":\"provider_error\",\"message\":\"The provider's stream ended "
                   "before it finished.\"}",
                   USAGE0("0"))));
    D->enc_free(e);
    buf_free(&out);
}

/* Pass-through: a terminal event whose data came on several data: lines goes out on one (the
 * line feeds were white space), and the cost goes into an empty usage object without a comma. */
static void test_passthrough_framing(void)
{
    dialect_enc *e = D->enc_new(&REQ);
    buf_t out;
    buf_init(&out, 0);
    ms_str up = MS_STR_LIT("{\"type\":\"response.completed\",\n\"response\":{\"usage\":{ }\n}}");
    CHECK_EQ_INT(D->stream_end(e, NULL, up, "2", NULL, &out), 0);
    CHECK_EQ_STR(str(&out), "event: response.completed\ndata: {\"type\":\"response.completed\", "
                            "\"response\":{\"usage\":{ \"cost\":2} }}\n\n");
    D->enc_free(e);
    buf_free(&out);
}

int main(void)
{
    RUN(test_text_stream_and_whole);
    RUN(test_reasoning_then_text);
    RUN(test_function_call);
    RUN(test_interleaved_calls);
    RUN(test_call_edges);
    RUN(test_incomplete);
    RUN(test_error_mid_stream);
    RUN(test_usage_unknown);
    RUN(test_error_body);
    RUN(test_passthrough_usage);
    RUN(test_passthrough_cut);
    RUN(test_passthrough_framing);
    TAP_DONE();
}
