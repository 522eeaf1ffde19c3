/*
 * Golden tests of the Gemini adapter (src/providers/gemini.c): OpenAI request bodies in, the
 * exact Gemini URL, headers and body out (or the 400 naming the field); Gemini answers and
 * alt=sse chunk sequences in, the exact OpenAI chat.completion / chunk bytes out through the
 * OpenAI chat dialect, as a client gets them; the usage mapping of shared/spec/API.md
 * ("Billing"); embeddings both ways. The decoders' scan of the usual response against their
 * tree (gemini_decode.c): the same events on a table of responses and on every one-byte change
 * of two, and the usual ones read by the scan.
 *
 * Answer fixtures follow the shapes of Google's reference,
 * https://ai.google.dev/api/generate-content (GenerateContentResponse, Candidate, UsageMetadata,
 * PromptFeedback, the alt=sse stream) and https://ai.google.dev/api/embeddings
 * (batchEmbedContents), with made-up text and counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/gemini_decode.h"
#include "providers/provider.h"
#include "quote.h"
#include "ev_record.h"
#include "mutate.h"
#include "tap.h"

/* also in provider.h; declared here so this file builds whichever lands first */
extern const prov_adapter prov_gemini;

static cfg_provider PROV = {.name = "google",
                            .kind = PROV_GEMINI,
                            .base_url = "http://g.test",
                            .api_key = "AIza-secret",
                            .enabled = 1};
static cfg_deployment DEP = {.provider = &PROV, .model = "gemini-2.5-flash", .weight = 1};
static cfg_model MODEL = {.name = "gem", .deployments = &DEP, .ndeployments = 1};

static prov_call CALL;
static unsigned char ST[1024];
static prov_upreq UP;
static prov_refusal WHY;

static void setup(prov_endpoint ep, const char *body, int stream, int64_t max_tokens)
{
    memset(&CALL, 0, offsetof(prov_call, members));
    CALL.ep = ep;
    CALL.dialect = &dialect_openai_chat;
    CALL.model = &MODEL;
    CALL.dep = &DEP;
    CALL.body = ms_str_c(body);
    int n = jscan_object(body, strlen(body), CALL.members, PROV_MAX_MEMBERS, NULL);
    CALL.nmembers = n > 0 ? (size_t)n : 0;
    if (n >= 0) CALL.valid = CALL.body; /* scanned whole, as dialect_scan vouches for a body */
    CALL.m_model = jscan_find(CALL.members, CALL.nmembers, "model");
    CALL.stream = stream;
    CALL.max_tokens = max_tokens;
    CHECK(prov_gemini.state_size <= sizeof ST);
    memset(ST, 0xA5, sizeof ST); /* reset must clear it */
    prov_gemini.reset(ST, &CALL);
}

/* Builds; returns build's code and leaves the upstream request in UP. */
static int build(prov_endpoint ep, const char *body, int stream, int64_t max_tokens)
{
    prov_upreq_free(&UP);
    memset(&UP, 0, sizeof UP);
    memset(&WHY, 0, sizeof WHY);
    setup(ep, body, stream, max_tokens);
    return prov_gemini.build(&CALL, ST, &UP, &WHY);
}

static char BODY[1 << 16];

static const char *up_body(void)
{
    size_t k = 0;
    for (size_t i = 0; i < UP.niov; i++) {
        memcpy(BODY + k, UP.iov[i].base, UP.iov[i].len);
        k += UP.iov[i].len;
    }
    BODY[k] = '\0';
    return BODY;
}

#define CHAT(body) build(EP_CHAT, body, 0, -1)
#define CHECK_BODY(body, want)                                                                     \
    do {                                                                                           \
        CHECK_EQ_INT(CHAT(body), 0);                                                               \
        CHECK_EQ_STR(up_body(), want);                                                             \
    } while (0)
#define CHECK_REFUSED(body, want_param)                                                            \
    do {                                                                                           \
        CHECK_EQ_INT(CHAT(body), -2);                                                              \
        CHECK_EQ_INT(WHY.status, 400);                                                             \
        CHECK_EQ_STR(WHY.code, "invalid_parameter");                                               \
        CHECK_EQ_STR(WHY.param, want_param);                                                       \
    } while (0)

/* URL, headers (the key in x-goog-api-key, never in the URL), roles, system, merged turns. */
static void test_build_basic(void)
{
    CHECK_EQ_INT(
        CHAT("{\"model\":\"gem\",\"messages\":["
             "{\"role\":\"system\",\"content\":\"Be brief.\"},"
             "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Be nice.\"}]},"
             "{\"role\":\"user\",\"content\":\"Hi\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"there\"}]},"
             "{\"role\":\"assistant\",\"content\":\"Hello!\"},"
             "{\"role\":\"user\",\"content\":\"2+2?\"}],"
             "\"temperature\":0.7,\"top_p\":0.9,\"stop\":\"END\",\"seed\":7,"
             "\"presence_penalty\":0.5,\"frequency_penalty\":-0.25,\"n\":1,"
             "\"user\":\"u1\",\"max_tokens\":100}"),
        0);
    CHECK_EQ_STR(UP.url, "http://g.test/v1beta/models/gemini-2.5-flash:generateContent");
    CHECK_EQ_INT(UP.nheaders, 2);
    CHECK_EQ_STR(UP.headers[0], "x-goog-api-key: AIza-secret");
    CHECK_EQ_STR(UP.headers[1], "Content-Type: application/json");
    CHECK_EQ_INT(UP.niov, 1);
    /* max_tokens comes from the call (the API layer read it): -1 here, so none */
    CHECK_EQ_STR(up_body(),
                 "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Hi\"},{\"text\":"
                 "\"there\"}]},{\"role\":\"model\",\"parts\":[{\"text\":\"Hello!\"}]},{\"role\":"
                 "\"user\",\"parts\":[{\"text\":\"2+2?\"}]}],\"systemInstruction\":{\"parts\":[{"
                 "\"text\":\"Be brief.\"},{\"text\":\"Be nice.\"}]},\"generationConfig\":{"
                 "\"temperature\":0.7,\"topP\":0.9,\"presencePenalty\":0.5,\"frequencyPenalty\":"
                 "-0.25,\"seed\":7,\"stopSequences\":[\"END\"]}}");

    /* streams: alt=sse; the model name is a path segment, percent-encoded */
    DEP.model = "tuned/x y";
    CHECK_EQ_INT(build(EP_CHAT,
                       "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"s\"}],\"stream\":true,\"stream_options\":{\"include_usage\":"
                       "true},\"max_completion_tokens\":5,\"stop\":[\"a\",\"b\"]}",
                       1, 5),
                 0);
    DEP.model = "gemini-2.5-flash";
    CHECK_EQ_STR(UP.url, "http://g.test/v1beta/models/tuned%2Fx%20y:streamGenerateContent?alt=sse");
    CHECK_EQ_STR(UP.headers[2], "Accept: text/event-stream");
    CHECK_EQ_STR(up_body(), "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"s\"}]}],"
                            "\"generationConfig\":{\"maxOutputTokens\":5,\"stopSequences\":[\"a\","
                            "\"b\"]}}");
}

/* Images: data URLs inline, http(s) URLs by reference when their type is known; audio; files. */
static void test_build_media(void)
{
    CHECK_BODY("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":["
               "{\"type\":\"text\",\"text\":\"What is this?\"},"
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\"}},"
               "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.test/a/cat.JPG?s=1\","
               "\"detail\":\"low\"}},"
               "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"UklG\",\"format\":\"wav\"}},"
               "{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,JVBE\","
               "\"filename\":\"a.pdf\"}}]}]}",
               "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"What is this?\"},{"
               "\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBO\"}},{\"fileData\":{"
               "\"mimeType\":\"image/jpeg\",\"fileUri\":\"https://x.test/a/cat.JPG?s=1\"}},{"
               "\"inlineData\":{\"mimeType\":\"audio/wav\",\"data\":\"UklG\"}},{\"inlineData\":{"
               "\"mimeType\":\"application/pdf\",\"data\":\"JVBE\"}}]}]}");
    /* an image URL whose type cannot be told, a non-base64 data URL, a file id */
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"image_url\",\"image_url\":{\"url\":\"https://x.test/img?id=3\"}}]}]}",
                  "messages");
    CHECK(strstr(WHY.message, "messages[0]") != NULL);
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"image_url\",\"image_url\":{\"url\":\"data:image/png,abc\"}}]}]}",
                  "messages");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"file\",\"file\":{\"file_id\":\"file-1\"}}]}]}",
                  "messages");
}

/* Tools, tool_choice, an assistant's tool calls as functionCall parts, tool results as
 * functionResponse parts named after the call they answer (found by tool_call_id). */
static void test_build_tools(void)
{
    const char *tools =
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"Weather of a city\",\"strict\":true,\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":{\"type\":["
        "\"string\",\"null\"],\"enum\":[\"C\",\"F\"]}},\"required\":[\"city\",\"unit\"],"
        "\"additionalProperties\":false}}},{\"type\":\"function\",\"function\":{\"name\":"
        "\"now\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]";
    char body[4096];
    snprintf(body, sizeof body,
             "{\"model\":\"gem\",\"messages\":["
             "{\"role\":\"user\",\"content\":\"Weather in Paris and the time?\"},"
             "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
             "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
             "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"unit\\\":\\\"C\\\"}\"}},"
             "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\","
             "\"arguments\":\"\"}}]},"
             "{\"role\":\"tool\",\"tool_call_id\":\"call_b\",\"content\":\"12:00\"},"
             "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"{\\\"temp\\\":21.5}\"},"
             "{\"role\":\"user\",\"content\":\"Thanks\"}],%s,\"tool_choice\":\"required\","
             "\"parallel_tool_calls\":true}",
             tools);
    CHECK_BODY(body,
               "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"Weather in Paris and the "
               "time?\"}]},{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":"
               "\"get_weather\",\"args\":{\"city\":\"Paris\",\"unit\":\"C\"}}},{\"functionCall\":{"
               "\"name\":\"now\",\"args\":{}}}]},{\"role\":\"user\",\"parts\":[{"
               "\"functionResponse\":{\"name\":\"now\",\"response\":{\"result\":\"12:00\"}}},{"
               "\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"temp\":21.5}}},{"
               "\"text\":\"Thanks\"}]}],\"tools\":[{\"functionDeclarations\":[{\"name\":"
               "\"get_weather\",\"description\":\"Weather of a city\",\"parameters\":{\"type\":"
               "\"OBJECT\",\"properties\":{\"city\":{\"type\":\"STRING\"},\"unit\":{\"nullable\":"
               "true,\"type\":\"STRING\",\"enum\":[\"C\",\"F\"]}},\"propertyOrdering\":[\"city\","
               "\"unit\"],\"required\":[\"city\",\"unit\"]}},{\"name\":\"now\"}]}],\"toolConfig\":"
               "{\"functionCallingConfig\":{\"mode\":\"ANY\"}}}");

    /* the other tool_choice forms */
    static const char *const choice[][2] = {
        {"\"auto\"", "{\"mode\":\"AUTO\"}"},
        {"\"none\"", "{\"mode\":\"NONE\"}"},
        {"{\"type\":\"function\",\"function\":{\"name\":\"now\"}}",
         "{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"now\"]}"}};
    for (size_t i = 0; i < 3; i++) {
        snprintf(body, sizeof body,
                 "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"t\"}],"
                 "\"tool_choice\":%s}",
                 choice[i][0]);
        char want[256];
        snprintf(want, sizeof want,
                 "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"t\"}]}],\"toolConfig\":"
                 "{\"functionCallingConfig\":%s}}",
                 choice[i][1]);
        CHECK_BODY(body, want);
    }

    /* a tool result for no known call; arguments that are not an object; a schema keyword
     * Gemini cannot take; a tool that is not a function; parallel_tool_calls false */
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{"
                  "\"role\":\"tool\",\"tool_call_id\":\"call_zz\",\"content\":\"1\"}]}",
                  "messages");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{"
                  "\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
                  "\"[1\"}}]}]}",
                  "messages");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                  "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/A\"}}}}}]}",
                  "tools");
    CHECK(strstr(WHY.message, "'$ref'") != NULL);
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"tools\":[{\"type\":\"web_search\"}]}",
                  "tools");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"parallel_tool_calls\":false}",
                  "parallel_tool_calls");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                  "\"tool_choice\":\"maybe\"}",
                  "tool_choice");
}

/* response_format, reasoning_effort, and the fields refused by name (nothing goes upstream). */
static void test_build_config_and_refusals(void)
{
    CHECK_BODY("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"j\"}],"
               "\"response_format\":{\"type\":\"json_object\"},\"reasoning_effort\":\"low\"}",
               "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"j\"}]}],"
               "\"generationConfig\":{\"responseMimeType\":\"application/json\",\"thinkingConfig\":"
               "{\"thinkingBudget\":1024,\"includeThoughts\":true}}}");
    CHECK_BODY(
        "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"j\"}],"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","
        "\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
        "\"integer\",\"minimum\":0},\"tags\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"string\"}}},\"required\":[\"n\",\"tags\"],\"additionalProperties\":false}}},"
        "\"reasoning_effort\":\"none\"}",
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"j\"}]}],"
        "\"generationConfig\":{\"responseMimeType\":\"application/json\",\"responseSchema\":"
        "{\"type\":\"OBJECT\",\"properties\":{\"n\":{\"type\":\"INTEGER\",\"minimum\":0},"
        "\"tags\":{\"type\":\"ARRAY\",\"items\":{\"type\":\"STRING\"}}},\"propertyOrdering\":"
        "[\"n\",\"tags\"],\"required\":[\"n\",\"tags\"]},\"thinkingConfig\":{"
        "\"thinkingBudget\":0}}}");
    /* unknown fields go to Gemini as they came (Gemini's own, or its 400 naming them) */
    CHECK_BODY(
        "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"u\"}],"
        "\"safetySettings\":[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"threshold\":"
        "\"BLOCK_NONE\"}],\"logprobs\":false,\"metadata\":{\"a\":\"b\"}}",
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"u\"}]}],\"safetySettings\":"
        "[{\"category\":\"HARM_CATEGORY_HARASSMENT\",\"threshold\":\"BLOCK_NONE\"}]}");

    static const char *const refused[][2] = {
        {"\"n\":2", "n"},
        {"\"logprobs\":true", "logprobs"},
        {"\"top_logprobs\":3", "top_logprobs"},
        {"\"logit_bias\":{\"50256\":-100}", "logit_bias"},
        {"\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}", "audio"},
        {"\"modalities\":[\"text\",\"audio\"]", "modalities"},
        {"\"prediction\":{\"type\":\"content\",\"content\":\"x\"}", "prediction"},
        {"\"reasoning_effort\":\"extreme\"", "reasoning_effort"},
        {"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
         "\"schema\":{\"type\":\"object\",\"properties\":{\"a\":{\"oneOf\":[{\"type\":"
         "\"string\"}]}}}}}",
         "response_format"},
        {"\"response_format\":{\"type\":\"grammar\"}", "response_format"},
        {"\"temperature\":\"hot\"", "temperature"},
        {"\"stop\":[1]", "stop"},
        {"\"generationConfig\":{}", "generationConfig"},
        {"\"contents\":[]", "contents"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}",
                 refused[i][0]);
        CHECK_REFUSED(body, refused[i][1]);
    }
    /* only system messages: Gemini needs a turn */
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
                  "messages");
    CHECK_REFUSED("{\"model\":\"gem\",\"messages\":[{\"role\":\"function\",\"name\":\"f\","
                  "\"content\":\"x\"}]}",
                  "messages");
}

/* ---- answers ---------------------------------------------------------------------------- */

static const dialect_req REQ = {.model = "gem", .request_id = "req_abc", .created = 1700000000};

typedef struct sink_ctx {
    dialect_enc *enc;
    buf_t *out; /* NULL: whole answer */
} sink_ctx;

static int to_enc(void *ctx, const ev_event *ev)
{
    sink_ctx *s = ctx;
    return dialect_openai_chat.event(s->enc, ev, s->out);
}

static char ANSWER[1 << 16];
static prov_usage USAGE;

/* A whole answer through decode_answer and the OpenAI encoder. Returns decode's code. */
static int whole(const char *req, const char *resp)
{
    setup(EP_CHAT, req, 0, -1);
    prov_upreq_free(&UP);
    memset(&UP, 0, sizeof UP);
    CHECK_EQ_INT(prov_gemini.build(&CALL, ST, &UP, &WHY), 0);
    dialect_enc *e = dialect_openai_chat.enc_new(&REQ);
    sink_ctx sc = {e, NULL};
    ev_sink sink = {to_enc, &sc};
    char err[256] = "";
    memset(&USAGE, 0, sizeof USAGE);
    int rc = prov_gemini.decode_answer(ST, &CALL, ms_str_c(resp), &sink, &USAGE, err, sizeof err);
    buf_t out;
    buf_init(&out, 0);
    ANSWER[0] = '\0';
    if (rc == 0 && dialect_openai_chat.answer(e, &USAGE.u, &out) == 0)
        snprintf(ANSWER, sizeof ANSWER, "%.*s", (int)out.len, out.data);
    else
        snprintf(ANSWER, sizeof ANSWER, "ERR %s", err);
    buf_free(&out);
    dialect_openai_chat.enc_free(e);
    return rc;
}

static const char *const ONE_USER = "{\"model\":\"gem\",\"messages\":[{\"role\":\"user\","
                                    "\"content\":\"hi\"}]}";

#define ANSWER_HEAD                                                                                \
    "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":"    \
    "\"gem\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"

/* Text joined from several parts, a thought as reasoning_content, usage with cached, thoughts
 * and tool-use prompt counts mapped as the contract says. */
static void test_answer_text_usage(void)
{
    CHECK_EQ_INT(
        whole(ONE_USER,
              "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Let me "
              "think.\",\"thought\":true},{\"text\":\"Hello "
              "\"},{\"text\":\"there\",\"thoughtSignature\""
              ":\"c2ln\"}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{"
              "\"promptTokenCount\":100,\"cachedContentTokenCount\":60,\"toolUsePromptTokenCount\":"
              "5,\"candidatesTokenCount\":7,\"thoughtsTokenCount\":11,\"totalTokenCount\":123},"
              "\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}"),
        0);
    /* input = 100 - 60 + 5 = 45, cached 60: prompt_tokens 105; output = 7 + 11 */
    CHECK_EQ_STR(ANSWER,
                 ANSWER_HEAD "\"Hello there\",\"refusal\":null,\"reasoning_content\":\"Let me "
                             "think.\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                             "\"prompt_tokens\":105,\"completion_tokens\":18,\"total_tokens\":123,"
                             "\"prompt_tokens_details\":{\"cached_tokens\":60},"
                             "\"completion_tokens_details\":{\"reasoning_tokens\":11}}}");
    CHECK_EQ_INT(USAGE.known, 1);
    CHECK_EQ_INT(USAGE.u.input, 45);
    CHECK_EQ_INT(USAGE.u.cached_input, 60);
    CHECK_EQ_INT(USAGE.u.output, 18);
    CHECK_EQ_INT(USAGE.u.reasoning, 11);
    CHECK_EQ_INT(USAGE.u.cache_write + USAGE.u.cache_write_1h, 0);

    /* finish reasons */
    static const char *const fin[][2] = {{"MAX_TOKENS", "length"},
                                         {"SAFETY", "content_filter"},
                                         {"RECITATION", "content_filter"},
                                         {"PROHIBITED_CONTENT", "content_filter"},
                                         {"BLOCKLIST", "content_filter"},
                                         {"SPII", "content_filter"},
                                         {"OTHER", "stop"}};
    for (size_t i = 0; i < sizeof fin / sizeof *fin; i++) {
        char resp[512], want[128];
        snprintf(resp, sizeof resp,
                 "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"a\"}]},"
                 "\"finishReason\":\"%s\"}],\"usageMetadata\":{\"promptTokenCount\":3,"
                 "\"candidatesTokenCount\":1,\"totalTokenCount\":4}}",
                 fin[i][0]);
        CHECK_EQ_INT(whole(ONE_USER, resp), 0);
        snprintf(want, sizeof want, "\"finish_reason\":\"%s\"", fin[i][1]);
        CHECK(strstr(ANSWER, want) != NULL);
    }

    /* a prompt blocked before any candidate */
    CHECK_EQ_INT(whole(ONE_USER,
                       "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},"
                       "\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":8}}"),
                 0);
    CHECK_EQ_STR(ANSWER, ANSWER_HEAD "\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":"
                                     "\"content_filter\"}],\"usage\":{\"prompt_tokens\":8,"
                                     "\"completion_tokens\":0,\"total_tokens\":8,"
                                     "\"prompt_tokens_details\":{\"cached_tokens\":0},"
                                     "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
    /* not an answer */
    CHECK_EQ_INT(whole(ONE_USER, "{\"candidates\":[]}"), -1);
    CHECK_EQ_INT(whole(ONE_USER, "[1]"), -1);
    CHECK_EQ_INT(whole(ONE_USER, "{\"candidates\":[{\"content\":{\"parts\":[{\"executableCode\":"
                                 "{\"code\":\"1\"}}]},\"finishReason\":\"STOP\"}]}"),
                 -1);
    CHECK(strstr(ANSWER, "executableCode") != NULL);
}

/* Function calls: made-up ids, stable for the same conversation and different across turns;
 * finish_reason tool_calls although Gemini says STOP. */
static void test_answer_tool_calls(void)
{
    const char *resp =
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{"
        "\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\",\"t\":1.5}}},{\"functionCall\":{"
        "\"name\":\"now\"}}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":"
        "20,\"candidatesTokenCount\":4,\"totalTokenCount\":24}}";
    CHECK_EQ_INT(whole(ONE_USER, resp), 0);
    static char first[sizeof ANSWER];
    snprintf(first, sizeof first, "%s", ANSWER);
    CHECK(strstr(ANSWER, "\"content\":null") != NULL);
    CHECK(strstr(ANSWER, "\"finish_reason\":\"tool_calls\"") != NULL);
    CHECK(strstr(ANSWER, "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":"
                         "\\\"Paris\\\",\\\"t\\\":1.5}\"}") != NULL);
    CHECK(strstr(ANSWER, "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}") != NULL);
    /* ids: "call_" + 16 hex digits, two different ones */
    const char *a = strstr(first, "\"id\":\"call_"),
               *b = a ? strstr(a + 1, "\"id\":\"call_") : NULL;
    CHECK(a && b && memcmp(a, b, 27) != 0);
    CHECK(a && strspn(a + 11, "0123456789abcdef") == 16);
    /* the same conversation again: the same ids */
    CHECK_EQ_INT(whole(ONE_USER, resp), 0);
    CHECK_EQ_STR(ANSWER, first);
    /* a later turn (one more assistant message before it): other ids */
    CHECK_EQ_INT(whole("{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"assistant\",\"content\":\"yes?\"},{\"role\":\"user\","
                       "\"content\":\"weather\"}]}",
                       resp),
                 0);
    CHECK(strcmp(ANSWER, first) != 0);
    const char *c = strstr(ANSWER, "\"id\":\"call_");
    CHECK(a && c && strncmp(c, a, 27) != 0);
}

/* ---- streams ---------------------------------------------------------------------------- */

#define CHUNK_HEAD                                                                                 \
    "data: {\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"  \
    "\"model\":\"gem\",\"choices\":"

typedef struct stream_result {
    int rc, done, error;
    char err[256];
} stream_result;

/* Feeds data events (NULL-terminated) until one is done or fails; appends the client's bytes
 * and the stream's end (usage asked for) to out. */
static stream_result stream(const char *req, const char *const *events, buf_t *out)
{
    stream_result r = {0};
    setup(EP_CHAT, req, 1, -1);
    prov_upreq_free(&UP);
    memset(&UP, 0, sizeof UP);
    CHECK_EQ_INT(prov_gemini.build(&CALL, ST, &UP, &WHY), 0);
    dialect_req rq = REQ;
    rq.include_usage = 1;
    dialect_enc *e = dialect_openai_chat.enc_new(&rq);
    sink_ctx sc = {e, out};
    ev_sink sink = {to_enc, &sc};
    memset(&USAGE, 0, sizeof USAGE);
    for (size_t i = 0; events[i] && !r.done && !r.error && r.rc == 0; i++) {
        sse_event ev = {.data = ms_str_c(events[i])};
        r.rc = prov_gemini.decode_event(ST, &CALL, &ev, &sink, &USAGE, &r.done, &r.error, r.err,
                                        sizeof r.err);
    }
    dialect_error de = {"provider_error", "upstream_error", r.err};
    dialect_openai_chat.stream_end(e, USAGE.known ? &USAGE.u : NULL, (ms_str){0}, "0.01",
                                   r.error ? &de : NULL, out);
    dialect_openai_chat.enc_free(e);
    return r;
}

static void test_stream_text(void)
{
    /* alt=sse: every chunk a GenerateContentResponse with cumulative usageMetadata, the last
     * with finishReason; no [DONE] */
    const char *const ev[] = {
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"hmm\","
        "\"thought\":true}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,"
        "\"totalTokenCount\":10},\"responseId\":\"r2\"}",
        "",
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hi "
        "\\\"you\\\"\"}]},"
        "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":2,"
        "\"totalTokenCount\":12}}",
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"!\"}]},"
        "\"finishReason\":\"MAX_TOKENS\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,"
        "\"cachedContentTokenCount\":4,\"candidatesTokenCount\":3,\"thoughtsTokenCount\":2,"
        "\"totalTokenCount\":15}}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"after the end\"}]}}]}",
        NULL};
    buf_t out;
    buf_init(&out, 0);
    stream_result r = stream(ONE_USER, ev, &out);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.done, 1);
    CHECK_EQ_INT(r.error, 0);
    CHECK_EQ_STR(out.data,
                 CHUNK_HEAD "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                            "\"logprobs\":null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                            "[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"},\"logprobs\":"
                            "null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                            "[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"you\\\"\"},\"logprobs\":"
                            "null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                            "[{\"index\":0,\"delta\":{\"content\":\"!\"},\"logprobs\":null,"
                            "\"finish_reason\":null}]}\n\n" CHUNK_HEAD
                            "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
                            "\"length\"}]}\n\n" CHUNK_HEAD
                            "[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,"
                            "\"total_tokens\":15,\"prompt_tokens_details\":{\"cached_tokens\":4},"
                            "\"completion_tokens_details\":{\"reasoning_tokens\":2},\"cost\":0.01}}"
                            "\n\ndata: [DONE]\n\n");
    CHECK_EQ_INT(USAGE.u.input, 6);
    CHECK_EQ_INT(USAGE.u.cached_input, 4);
    CHECK_EQ_INT(USAGE.streamed_bytes, 3 + 8 + 1);
    buf_free(&out);
}

static void test_stream_tools_and_errors(void)
{
    const char *const ev[] = {
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":"
        "\"f\",\"args\":{\"a\":1}}}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{"
        "\"promptTokenCount\":5,\"candidatesTokenCount\":2,\"totalTokenCount\":7}}",
        NULL};
    buf_t out;
    buf_init(&out, 0);
    stream_result r = stream(ONE_USER, ev, &out);
    CHECK_EQ_INT(r.done, 1);
    char id[32];
    const char *p = strstr(out.data, "\"id\":\"call_");
    CHECK(p != NULL);
    snprintf(id, sizeof id, "%.21s", p ? p + 6 : "");
    char want[2048];
    snprintf(want, sizeof want,
             CHUNK_HEAD
             "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
             "\"logprobs\":null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
             "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"%s\","
             "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},"
             "\"logprobs\":null,\"finish_reason\":null}]}\n\n" CHUNK_HEAD
             "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
             "\"arguments\":\"{\\\"a\\\":1}\"}}]},\"logprobs\":null,\"finish_reason\":"
             "null}]}\n\n" CHUNK_HEAD
             "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
             "\"tool_calls\"}]}\n\n" CHUNK_HEAD
             "[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":"
             "7,\"prompt_tokens_details\":{\"cached_tokens\":0},"
             "\"completion_tokens_details\":{\"reasoning_tokens\":0},\"cost\":0.01}}\n\n"
             "data: [DONE]\n\n",
             id);
    CHECK_EQ_STR(out.data, want);

    /* the stream's id equals the whole answer's for the same conversation */
    CHECK_EQ_INT(whole(ONE_USER,
                       "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{"
                       "\"name\":\"f\",\"args\":{\"a\":1}}}]},\"finishReason\":\"STOP\"}]}"),
                 0);
    CHECK(strstr(ANSWER, id) != NULL);

    /* an in-band error after some text: Google's error object, its message and status */
    buf_reset(&out);
    const char *const bad[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}",
        "{\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":"
        "\"UNAVAILABLE\"}}",
        NULL};
    r = stream(ONE_USER, bad, &out);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_EQ_INT(r.error, 1);
    CHECK_EQ_INT(r.done, 0);
    CHECK_EQ_STR(r.err, "The model is overloaded. (UNAVAILABLE)");
    CHECK(strstr(out.data, "data: {\"error\":{\"message\":\"The model is overloaded. "
                           "(UNAVAILABLE)\",\"type\":\"upstream_error\",\"code\":"
                           "\"provider_error\",\"param\":null}}\n\ndata: [DONE]\n\n") != NULL);
    /* not JSON */
    buf_reset(&out);
    const char *const junk[] = {"{nope", NULL};
    r = stream(ONE_USER, junk, &out);
    CHECK_EQ_INT(r.rc, -1);
    buf_free(&out);
}

/* ---- embeddings and errors -------------------------------------------------------------- */

static void test_embeddings(void)
{
    CHECK_EQ_INT(build(EP_EMBEDDINGS,
                       "{\"model\":\"gem-emb\",\"input\":[\"hello\",\"h\\u00e9\"],\"dimensions\":4,"
                       "\"encoding_format\":\"float\"}",
                       0, -1),
                 0);
    CHECK_EQ_STR(UP.url, "http://g.test/v1beta/models/gemini-2.5-flash:batchEmbedContents");
    CHECK_EQ_STR(up_body(),
                 "{\"requests\":[{\"model\":\"models/gemini-2.5-flash\",\"content\":{\"parts\":[{"
                 "\"text\":\"hello\"}]},\"outputDimensionality\":4},{\"model\":\"models/"
                 "gemini-2.5-flash\",\"content\":{\"parts\":[{\"text\":\"h\xc3\xa9\"}]},"
                 "\"outputDimensionality\":4}]}");
    buf_t out;
    buf_init(&out, 0);
    char err[128] = "";
    memset(&USAGE, 0, sizeof USAGE);
    const char *resp = "{\"embeddings\":[{\"values\":[0.11, -0.12,1e-3]},{\"values\":[0.21,0.22,"
                       "0.23]}]}";
    CHECK_EQ_INT(
        prov_gemini.decode_embeddings(ST, &CALL, ms_str_c(resp), &out, &USAGE, err, sizeof err), 0);
    /* no usage from Gemini: the inputs' UTF-8 bytes, 5 + 3 */
    CHECK_EQ_STR(out.data, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                           "\"embedding\":[0.11,-0.12,1e-3]},{\"object\":\"embedding\",\"index\":1,"
                           "\"embedding\":[0.21,0.22,0.23]}],\"model\":\"gem\",\"usage\":{"
                           "\"prompt_tokens\":8,\"total_tokens\":8}}");
    CHECK_EQ_INT(USAGE.known, 1);
    CHECK_EQ_INT(USAGE.u.input, 8);

    /* base64: float32 little-endian, as OpenAI sends; a single string input */
    CHECK_EQ_INT(build(EP_EMBEDDINGS,
                       "{\"model\":\"gem-emb\",\"input\":\"abc\",\"encoding_format\":\"base64\"}",
                       0, -1),
                 0);
    buf_reset(&out);
    memset(&USAGE, 0, sizeof USAGE);
    /* 1.0f = 00 00 80 3f, 2.0f = 00 00 00 40 */
    CHECK_EQ_INT(prov_gemini.decode_embeddings(ST, &CALL,
                                               ms_str_c("{\"embeddings\":[{\"values\":[1,2.0]}]}"),
                                               &out, &USAGE, err, sizeof err),
                 0);
    CHECK_EQ_STR(out.data, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                           "\"embedding\":\"AACAPwAAAEA=\"}],\"model\":\"gem\",\"usage\":{"
                           "\"prompt_tokens\":3,\"total_tokens\":3}}");
    /* a usageMetadata, when one comes, wins over the estimate */
    buf_reset(&out);
    CHECK_EQ_INT(prov_gemini.decode_embeddings(
                     ST, &CALL,
                     ms_str_c("{\"embeddings\":[{\"values\":[1]}],\"usageMetadata\":{"
                              "\"promptTokenCount\":2}}"),
                     &out, &USAGE, err, sizeof err),
                 0);
    CHECK_EQ_INT(USAGE.u.input, 2);
    buf_reset(&out);
    CHECK_EQ_INT(prov_gemini.decode_embeddings(ST, &CALL, ms_str_c("{\"data\":[]}"), &out, &USAGE,
                                               err, sizeof err),
                 -1);
    buf_free(&out);

    /* token ids are refused, naming input; dimensions must be a positive integer */
    CHECK_EQ_INT(build(EP_EMBEDDINGS, "{\"model\":\"e\",\"input\":[[1,2,3]]}", 0, -1), -2);
    CHECK_EQ_STR(WHY.param, "input");
    CHECK_EQ_INT(build(EP_EMBEDDINGS, "{\"model\":\"e\",\"input\":[1,2]}", 0, -1), -2);
    CHECK_EQ_STR(WHY.param, "input");
    CHECK_EQ_INT(build(EP_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"a\",\"dimensions\":0}", 0, -1),
                 -2);
    CHECK_EQ_STR(WHY.param, "dimensions");
}

static void test_error_message(void)
{
    char out[256];
    prov_gemini.error_message(
        ms_str_c("{\"error\":{\"code\":429,\"message\":\"Resource has been exhausted (e.g. check "
                 "quota).\",\"status\":\"RESOURCE_EXHAUSTED\"}}"),
        out, sizeof out);
    CHECK_EQ_STR(out, "Resource has been exhausted (e.g. check quota). (RESOURCE_EXHAUSTED)");
    prov_gemini.error_message(ms_str_c("[{\"error\":{\"code\":400,\"message\":\"bad\",\"status\":"
                                       "\"INVALID_ARGUMENT\"}}]"),
                              out, sizeof out);
    CHECK_EQ_STR(out, "bad (INVALID_ARGUMENT)");
    prov_gemini.error_message(ms_str_c("<html>502\n</html>"), out, sizeof out);
    CHECK_EQ_STR(out, "<html>502 </html>");
}

/* ---- the usual response, scanned (gemini_decode.c, "The usual response") ---- */

/* The decoders' switch between the scan and the tree (not in the header: tests only). */
extern int gemini_dec_fast;

static uint32_t g_shape_hits; /* the streamed scan's chunks read through the shape */

/* Decodes evs[0..n) (stream: as data events of one transfer; else evs[0] as a whole answer)
 * with the scan on or off into a record of every event, return code, error and usage; returns
 * how many responses the scan read. */
static uint32_t decode_record(int fast, int streamed, const char *const *evs, size_t n, buf_t *out)
{
    gemini_dec_fast = fast;
    setup(EP_CHAT, ONE_USER, streamed, -1);
    prov_usage u = {0};
    int done = 0, error = 0;
    ev_sink sink = {ev_record, out};
    for (size_t i = 0; i < (streamed ? n : 1); i++) {
        char err[256] = "";
        int rc;
        if (streamed) {
            sse_event ev = {.event = MS_STR_LIT(""), .data = ms_str_c(evs[i])};
            rc =
                prov_gemini.decode_event(ST, &CALL, &ev, &sink, &u, &done, &error, err, sizeof err);
        } else {
            rc = prov_gemini.decode_answer(ST, &CALL, ms_str_c(evs[i]), &sink, &u, err, sizeof err);
        }
        buf_printf(out, "|rc=%d done=%d error=%d err=%s bytes=%lld known=%d in=%lld out=%lld\n", rc,
                   done, error, err, (long long)u.streamed_bytes, u.known, (long long)u.u.input,
                   (long long)u.u.output);
    }
    gemini_dec_fast = 1;
    if (fast && streamed) g_shape_hits = ((gem_state *)(void *)ST)->shape.hits;
    return ((gem_state *)(void *)ST)->fast_hits;
}

static uint32_t g_hits; /* the scan's reads in the last same_reading */

/* Whether the scan and the tree give the same record for evs, streamed and whole. */
static int same_reading(const char *const *evs, size_t n)
{
    int same = 1;
    g_hits = 0;
    for (int streamed = 0; streamed < 2; streamed++) {
        buf_t a, b;
        buf_init(&a, 0);
        buf_init(&b, 0);
        g_hits += decode_record(1, streamed, evs, n, &a);
        CHECK_EQ_INT(decode_record(0, streamed, evs, n, &b), 0);
        if (!ev_records_same(&a, &b, streamed ? "streamed" : "whole", evs, n)) same = 0;
    }
    return same;
}

#define GCAND(cand) "{'candidates':[" cand "],'responseId':'r1'}"
#define GPART(part) GCAND("{'content':{'role':'model','parts':[" part "]},'index':0}")
#define GUSAGE(um) "{'candidates':[{'content':{'parts':[{'text':'u'}]}}],'usageMetadata':" um "}"

/* Responses the scan reads and responses it must leave to the tree, each decoded whole and as
 * the middle chunk of a stream, both ways, and the records compared; the usual ones must be
 * read by the scan. */
static void test_fast_same_as_tree(void)
{
    static const char *const usual[] = {
        GPART("{'text':'Hello'}"),
        GPART("{'text':'a\\nb\\'c\\u00e9\\ud83d\\ude00\\u0000z'}"),
        GPART("{'text':'hmm','thought':true}"),
        GPART("{'text':'not a thought','thought':false}"),
        GPART("{'text':'signed','thoughtSignature':'c2ln'}"),
        GPART("{'thoughtSignature':'c2ln'}"),
        GPART("{'thoughtSignature':'c2ln','thought':true}"),
        GPART("{}"),
        GPART("{'text':''}"),
        GPART("{'text':'','functionCall':{'name':'f'}}"),
        GPART("{'text':'one'},{'text':'two','thought':true},{'text':''},{'text':'three'}"),
        GPART(" {'text':'spaced'} , {'text':'out'} "),
        GPART("{'te\\u0078t':'escaped name'}"),
        GPART("{'text':'t','x':[1,{'y':null}],'z':-0.5e-3}"),
        GCAND("{'content':{'role':'model','parts':[{'text':'end'}]},'finishReason':'STOP'}"),
        GCAND("{'content':{'parts':[{'text':'x'}]},'finishReason':'MAX_TOKENS'}"),
        GCAND("{'content':{'parts':[]},'finishReason':'SAFETY','safetyRatings':[{'category':"
              "'HARM_CATEGORY_HATE_SPEECH','probability':'NEGLIGIBLE','blocked':false}]}"),
        GCAND("{'finishReason':'RECITATION','citationMetadata':{'citationSources':[{"
              "'startIndex':1,'endIndex':2,'uri':'u'}]}}"),
        GCAND("{'finishReason':''}"),
        GCAND("{'finishReason':'\\u0000STOP'}"),
        GCAND("{'finishReason':'SAFETY\\u0000x'}"),
        GCAND("{'finishReason':'OTHER'}"),
        GCAND("{'finishReason':'MALFORMED_FUNCTION_CALL','index':0,'avgLogprobs':-1.25}"),
        GCAND("{}"),
        GCAND("{'content':{}}"),
        GCAND("{'content':{'role':'model'}}"),
        GUSAGE("{'promptTokenCount':11,'candidatesTokenCount':3,'totalTokenCount':14}"),
        GUSAGE("{'promptTokenCount':10,'cachedContentTokenCount':4,'candidatesTokenCount':3,"
               "'thoughtsTokenCount':2,'toolUsePromptTokenCount':5,'totalTokenCount':24,"
               "'promptTokensDetails':[{'modality':'TEXT','tokenCount':10}],"
               "'trafficType':'ON_DEMAND'}"),
        GUSAGE("{'promptTokenCount':3,'cachedContentTokenCount':9}"),
        GUSAGE("{'promptTokenCount':-3,'candidatesTokenCount':-1}"),
        GUSAGE("{'promptTokenCount':0}"),
        GUSAGE("{'promptTokenCount':11.0,'candidatesTokenCount':2}"),
        GUSAGE("{'promptTokenCount':11,'candidatesTokenCount':2e0}"),
        GUSAGE("{'candidatesTokenCount':5}"),
        GUSAGE("{'promptTokenCount':9223372036854775807,'candidatesTokenCount':"
               "9223372036854775807,'thoughtsTokenCount':9223372036854775807}"),
        GUSAGE(
            "{'promptTokenCount':123456789012345678,'candidatesTokenCount':1234567890123456789}"),
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'responseId':'r\\u0000x'}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'responseId':'\\u0072\\u0032'}",
        ("{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'modelVersion':'gemini-2.5-pro',"
         "'createTime':'2026-01-01T00:00:00Z','responseId':''}"),
        " {\t'candidates' : [ {'content':{'parts':[{'text':'ws'}]} } ] }\n",
    };
    static const char *const tree[] = {
        GPART("{'functionCall':{'name':'f','args':{'a':1}}}"),
        GPART("{'text':'t'},{'functionCall':{'name':'f'}}"),
        GPART("{'inlineData':{'mimeType':'image/png','data':'AA=='}}"),
        GPART("{'executableCode':{'code':'x'}}"),
        GPART("{'text':5}"),
        GPART("{'text':null}"),
        GPART("{'text':'a','text':'b'}"),
        GPART("{'text':'a','thought':'yes'}"),
        GPART("{'text':'a','thought':true,'thought':false}"),
        GPART("'a string part'"),
        GPART("{'text':'t'},7"),
        GPART("{'text':'t','n':99999999999999999999}"),
        GPART("{'text':'t','x':[[1e999]]}"),
        GPART("{'text':'t','a\\u0000b':1}"),
        GPART("{'text':'t','x':{'a\\u0000':1}}"),
        GCAND("{'content':{'parts':[{'text':'a'}]}},{'content':{'parts':[{'text':'b'}]}}"),
        GCAND("{'content':'text'}"),
        GCAND("{'content':{'parts':{'text':'obj'}}}"),
        GCAND("{'content':{'parts':[{'text':'a'}],'parts':[]}}"),
        GCAND("{'finishReason':5}"),
        GCAND("{'finishReason':'STOP','finishReason':'SAFETY'}"),
        GCAND("{'finishReason':'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'"
              "}"),
        GCAND("{'index':18446744073709551616}"),
        GCAND("7"),
        GCAND(""),
        GUSAGE("{'promptTokenCount':9223372036854775808}"),
        GUSAGE("{'promptTokenCount':1,'candidatesTokenCount':1e400}"),
        GUSAGE("{'promptTokenCount':[1]}"),
        GUSAGE("{'promptTokenCount':'11'}"),
        GUSAGE("{'promptTokenCount':1,'promptTokenCount':2}"),
        GUSAGE("null"),
        GUSAGE("[]"),
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'error':{'code':500,'message':'x'}}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'error':'x'}",
        "{'candidates':[],'promptFeedback':{'blockReason':'SAFETY'}}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'promptFeedback':{}}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'responseId':7}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'candidates':[]}",
        "{'candidates':[]}",
        "{'candidates':{}}",
        "{'usageMetadata':{'promptTokenCount':1}}",
        "[{'candidates':[{'content':{'parts':[{'text':'array'}]}}]}]",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}],'big':1e99999}",
        "{'candidates':[{'content':{'parts':[{'text':'t'}]}}]",
        "",
    };
    char first[512], mid[8192], last[512];
    snprintf(first, sizeof first, "%s", q(GPART("{'text':'first'}")));
    snprintf(last, sizeof last, "%s",
             q(GCAND("{'content':{'parts':[{'text':'last'}]},'finishReason':'STOP'}")));
    uint32_t hits = 0;
    for (int set = 0; set < 2; set++) {
        const char *const *cases = set ? tree : usual;
        size_t n = set ? sizeof tree / sizeof *tree : sizeof usual / sizeof *usual;
        for (size_t i = 0; i < n; i++) {
            snprintf(mid, sizeof mid, "%s", q(cases[i]));
            const char *alone[] = {mid};
            const char *evs[] = {first, mid, last};
            CHECK(same_reading(alone, 1));
            uint32_t alone_hits = g_hits;
            CHECK(same_reading(evs, 3));
            /* alone, whole and as a stream's one chunk: the usual ones read by the scan, the
             * others by the tree */
            if (alone_hits != (set ? 0 : 2))
                fprintf(stderr, "# %s: %s\n", set ? "scanned" : "not scanned", mid);
            hits += alone_hits;
        }
    }
    CHECK_EQ_INT(hits, 2 * (sizeof usual / sizeof *usual));
    /* texts with escapes past the stack's room for decoded strings (GF_SCRATCH, 2048) */
    static const size_t lens[] = {1000, 2040, 2047, 2048, 2049, 5000};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        buf_t b;
        buf_init(&b, 0);
        buf_appends(&b, "{\"responseId\":\"\\u0072");
        for (size_t k = 0; k < lens[i] / 2; k++)
            buf_appends(&b, "i");
        buf_appends(&b, "\",\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\\n");
        for (size_t k = 0; k < lens[i]; k++)
            buf_appends(&b, k % 7 ? "x" : "\\t");
        buf_appends(&b, "\"},{\"text\":\"\\\"more\"}]}}]}");
        buf_append(&b, "", 1);
        const char *evs[] = {b.data, last};
        CHECK(same_reading(evs, 2));
        CHECK_EQ_INT(g_hits, 3);
        buf_free(&b);
    }
}

/* Streams whose chunks differ in their text and running counts: after the first plain one they
 * are read through its shape, which must give what the tree gives, and the scan must take
 * every chunk the shape does not fit (another member, a finish, a count that is no longer plain
 * digits, a longer number, a part more). */
static void test_shape_same_as_tree(void)
{
#define GS(text, cands, total)                                                                     \
    "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":" text "}]},"          \
    "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":" cands     \
    ",\"totalTokenCount\":" total ",\"promptTokensDetails\":[{\"modality\":\"TEXT\","              \
    "\"tokenCount\":11}]},\"modelVersion\":\"gemini-2.5-pro\",\"responseId\":\"r1\"}"
    static const char *const plain[] = {
        GS("\"Hello\"", "1", "12"),
        GS("\" wor\\nld \\u00e9\\ud83d\\ude00\"", "2", "13"),
        GS("\"\"", "2", "13"),
        GS("\"x\\u0000y\"", "3", "14"),
        GS("\"long count\"", "123456789012345678", "123456789012345689"),
        GS("\"too long\"", "1234567890123456789", "15"),
        GS("\"zero\"", "0", "11"),
        GS("\"lead\"", "07", "18"),
        GS("\"minus\"", "-1", "10"),
        GS("\"real\"", "4.0", "15"),
        GS("\"again\"", "5", "16"),
        GS("\"\\\"quoted\\\"\"", "6", "17"),
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"two\"},{\"text\":"
        "\"parts\"}]},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":11,"
        "\"candidatesTokenCount\":7,\"totalTokenCount\":18,\"promptTokensDetails\":[{\"modality\":"
        "\"TEXT\",\"tokenCount\":11}]},\"modelVersion\":\"gemini-2.5-pro\",\"responseId\":\"r1\"}",
        GS("\"after\"", "8", "19"),
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"end\"}]},"
        "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":11,"
        "\"candidatesTokenCount\":9,\"totalTokenCount\":20},\"modelVersion\":\"gemini-2.5-pro\","
        "\"responseId\":\"r1\"}",
        GS("\"past the end\"", "10", "21"),
    };
    CHECK(same_reading(plain, sizeof plain / sizeof *plain));
    CHECK(g_shape_hits >= 8);
    /* the shape's bytes and more: not a chunk the shape read (and not valid JSON); then valid
     * JSON with white space after the shape's bytes, which the scan reads from a clean start
     * (the shape's reading of the same prefix leaves nothing behind) */
    static const char *const trailing[] = {GS("\"a\"", "1", "2"), GS("\"b\"", "2", "3") "x",
                                           GS("\"c\"", "3", "4") "}", GS("\"d\"", "4", "5"),
                                           GS("\"e\"", "5", "6") " \n"};
    CHECK(same_reading(trailing, sizeof trailing / sizeof *trailing));
    CHECK_EQ_INT(g_shape_hits, 1);
    /* thoughts, then text: a new shape; the thought flag is part of it */
#define GT(text, thought, n)                                                                       \
    "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"" text "\"" thought "}],\"role\":"      \
    "\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":8,\"totalTokenCount\":" n    \
    ",\"thoughtsTokenCount\":" n "}}"
    static const char *const thinking[] = {
        GT("a", ",\"thought\":true", "1"),
        GT("b", ",\"thought\":true", "2"),
        GT("c", ",\"thought\":true", "3"),
        GT("d", "", "4"),
        GT("e", "", "5"),
        GT("f", ",\"thought\":false", "6"),
        GT("g", ",\"thought\":false", "7"),
        GT("h", ",\"thought\":true", "8"),
    };
    CHECK(same_reading(thinking, sizeof thinking / sizeof *thinking));
    CHECK(g_shape_hits >= 3);
    /* no usage: the text is the only hole; a usage without promptTokenCount bills nothing */
    static const char *const bare[] = {
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"c\"}]}}],\"usageMetadata\":{"
        "\"candidatesTokenCount\":3}}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"d\"}]}}],\"usageMetadata\":{"
        "\"candidatesTokenCount\":4}}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"e\"}]}}]} ",
    };
    CHECK(same_reading(bare, sizeof bare / sizeof *bare));
    CHECK(g_shape_hits >= 2);
    /* a chunk longer than a shape holds makes none */
    buf_t big;
    buf_init(&big, 0);
    buf_appends(&big, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}],\"pad\":\"");
    for (int i = 0; i < 600; i++)
        buf_appends(&big, "p");
    buf_appends(&big, "\"}");
    buf_append(&big, "", 1);
    const char *longer[] = {big.data, big.data, big.data};
    CHECK(same_reading(longer, 3));
    CHECK_EQ_INT(g_shape_hits, 0);
    buf_free(&big);
#undef GS
#undef GT
}

/* Every one-byte change of a usual chunk and of a whole answer (to bytes that matter to JSON):
 * whatever the scan takes or leaves, the record is the tree's. */
static void test_fast_mutated(void)
{
    static const char *const bases[] = {
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"h\\u00e9\"}]},"
        "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":11,\"candidatesTokenCount\":1,"
        "\"totalTokenCount\":12},\"modelVersion\":\"g\",\"responseId\":\"r\"}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"t\",\"thought\":true},{\"text\":"
        "\"a\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":5,"
        "\"thoughtsTokenCount\":2,\"promptTokensDetails\":[{\"tokenCount\":5}]}}",
    };
    static const char subst[] = "\"\\{}[],:0 1atu-.e";
    size_t runs = 0, failed = 0;
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++) {
        size_t n = strlen(bases[b]);
        char *m = malloc(n + 2);
        for (size_t i = 0; i < n; i++) {
            for (size_t k = 0; k < sizeof subst; k++) {
                if (k < sizeof subst - 1) { /* replaced */
                    memcpy(m, bases[b], n + 1);
                    if (m[i] == subst[k]) continue;
                    m[i] = subst[k];
                } else { /* deleted */
                    memcpy(m, bases[b], i);
                    memcpy(m + i, bases[b] + i + 1, n - i);
                }
                /* the change alone and after itself, and after the chunk it was made of (the
                 * shape learnt from that one) */
                const char *evs[] = {m, m}, *after[] = {bases[b], m};
                runs++;
                if (!same_reading(evs, 2) || !same_reading(after, 2)) failed++;
            }
        }
        free(m);
    }
    CHECK(runs > 3000);
    CHECK_EQ_INT(failed, 0);
}

/* The usual chat request written token by token (gemini.c, gf_build) against the tree path
 * (gemini_build_fast off): the same code, bytes, refusal and answer turn. Returns whether the
 * token path took it, or -1 when they differ. */
extern int gemini_build_fast;
static char TREE_BODY[1 << 16];
static int same_build(const char *body, int stream, int64_t max_tokens)
{
    gemini_build_fast = 0;
    int rc_tree = build(EP_CHAT, body, stream, max_tokens);
    int turn_tree = ((gem_state *)ST)->turn;
    char param[64];
    snprintf(param, sizeof param, "%s", rc_tree == -2 && WHY.param ? WHY.param : "");
    snprintf(TREE_BODY, sizeof TREE_BODY, "%s", rc_tree == 0 ? up_body() : "");
    char url[sizeof UP.url];
    memcpy(url, UP.url, sizeof url);
    gemini_build_fast = 1;
    int rc = build(EP_CHAT, body, stream, max_tokens);
    const gem_state *st = (const gem_state *)ST;
    int same = rc == rc_tree && strcmp(url, UP.url) == 0 &&
               (rc != 0 || (strcmp(up_body(), TREE_BODY) == 0 && st->turn == turn_tree)) &&
               (rc != -2 || strcmp(param, WHY.param ? WHY.param : "") == 0);
    if (!same) {
        fprintf(stderr, "# differs (%d / %d): %s\n#  tree:  %s\n#  token: %s\n", rc_tree, rc, body,
                TREE_BODY, rc == 0 ? up_body() : "");
        return -1;
    }
    return st->fast_built;
}

static void test_build_fast_same_as_tree(void)
{
    static const struct {
        const char *body;
        int fast; /* 1: the token path must take it */
    } cases[] = {
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 1},
        {"{\"messages\":[{\"content\":\"be brief\",\"role\":\"system\"},{\"role\":\"developer\","
         "\"content\":\"and kind\"},{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
         "\"content\":\"b\"},{\"role\":\"assistant\",\"content\":\"c\"},{\"role\":\"assistant\","
         "\"content\":\"\"},{\"role\":\"user\",\"content\":\"d\"}],\"model\":\"gem\"}",
         1},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"},"
         "{\"role\":\"system\",\"content\":\"\"},{\"role\":\"user\",\"content\":\"y\"}],"
         "\"temperature\":0.7,\"top_p\":1,\"max_tokens\":55,\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true},\"user\":\"u-1\"}",
         1},
        /* escapes decoded and written back as the tree writes them */
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\n\\t"
         "\\\"q\\\" \\/ \\ud83d\\ude00 \\u0001\"}]}",
         1},
        /* numbers by the tree's rule */
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"n\"}],"
         "\"temperature\":0.70,\"top_p\":1e-5}",
         1},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"n\"}],"
         "\"temperature\":-0,\"top_p\":1E2}",
         1},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"n\"}],"
         "\"temperature\":123456789012345678901234567890}",
         0}, /* an integer out of the tree's range: its invalid_json */
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"n\"}],"
         "\"max_completion_tokens\":9}",
         1},
        /* fields OpenAI does not define, passed through as the tree writes them */
        {"{\"model\":\"gem\",\"safetySettings\":[ {\"category\": \"HARM\", \"threshold\":1.50}],"
         "\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"mock\":{\"chunks\":50},"
         "\"cachedContent\":\"c\\u0041\",\"x\":true,\"y\":2.50,\"z\":false}",
         1},
        /* the tree's: refusals, nulls, parts, tools, other fields, names written twice */
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"mock\":1,\"mock\":2}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"contents\":[]}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"audio\":{}}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"seed\":1}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"labels\":{\"k\":1e999}}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"labels\":null}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"system\",\"content\":\"only\"}]}", 0},
        {"{\"model\":\"gem\",\"messages\":[]}", 0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", 0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"temperature\":null}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"temperature\":\"hot\"}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"temperature\":1e999}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":2}", 0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"name\":\"x\"}]}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
         "\"text\":\"a\"}]}]}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"tool\",\"content\":\"a\"}]}", 0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"role\":\"user\",\"content\":"
         "\"a\"}]}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"top_p\":1,\"top_p\":2}",
         0},
        {"{\"model\":\"gem\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
         "\"stream_options\":{\"x\":1e999}}",
         0},
        {"{\"model\":\"gem\",\"\\u006dessages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = same_build(cases[i].body, (int)(i & 1), i % 3 ? -1 : 40);
        if (got != cases[i].fast) fprintf(stderr, "# case %zu\n", i);
        CHECK_EQ_INT(got, cases[i].fast);
    }
    /* more system messages than the token path keeps aside: the tree */
    char many[4096] = "{\"model\":\"gem\",\"messages\":[";
    for (int i = 0; i < 20; i++)
        strcat(many, "{\"role\":\"system\",\"content\":\"s\"},");
    strcat(many, "{\"role\":\"user\",\"content\":\"u\"}]}");
    CHECK_EQ_INT(same_build(many, 0, -1), 0);
}

/* Every one-byte change of two usual requests (that still parses): both paths agree. */
static void request_changed(const char *m, size_t i, size_t k, void *ud)
{
    mutate_count *c = ud;
    (void)k;
    if (jscan_object(m, strlen(m), CALL.members, PROV_MAX_MEMBERS, NULL) < 0)
        return; /* the dialect refuses it before any adapter */
    int got = same_build(m, 0, (int64_t)(i % 3) - 1);
    c->runs++;
    c->failed += got < 0;
    c->taken += got == 1;
}

static void test_build_fast_mutated(void)
{
    static const char *const bases[] = {
        "{\"model\":\"gem\",\"messages\":[{\"role\":\"system\",\"content\":\"s\\n\"},{\"role\":"
        "\"user\",\"content\":\"h\\u00e9\"},{\"role\":\"assistant\",\"content\":\"a\"}],"
        "\"temperature\":0.5,\"max_tokens\":7}",
        "{\"messages\":[{\"content\":\"x\",\"role\":\"user\"},{\"role\":\"user\",\"content\":"
        "\"\"}],\"top_p\":1,\"stream\":false,\"user\":\"u\",\"mock\":{\"n\":[1,2.0]}}",
    };
    mutate_count c = {0};
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++)
        mutate_each(bases[b], "\"\\{}[],:0 1atu-.en", request_changed, &c);
    CHECK(c.runs > 500);
    CHECK(c.taken > 100);
    CHECK_EQ_INT(c.failed, 0);
}

int main(void)
{
    RUN(test_build_basic);
    RUN(test_build_media);
    RUN(test_build_tools);
    RUN(test_build_config_and_refusals);
    RUN(test_answer_text_usage);
    RUN(test_answer_tool_calls);
    RUN(test_stream_text);
    RUN(test_stream_tools_and_errors);
    RUN(test_embeddings);
    RUN(test_error_message);
    RUN(test_fast_same_as_tree);
    RUN(test_shape_same_as_tree);
    RUN(test_fast_mutated);
    RUN(test_build_fast_same_as_tree);
    RUN(test_build_fast_mutated);
    prov_upreq_free(&UP);
    TAP_DONE();
}
