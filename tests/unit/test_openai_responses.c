/*
 * Tests of the Responses adapter (src/providers/openai_responses.c) and of the adapter choice
 * (prov_adapter_for): which clients pass through to which providers; the upstream request (URL
 * for OpenAI and Azure, headers, the client's body with only model spliced); whole answers
 * checked and their usage mapped onto the billed counts; stream events classified (passed
 * through as they came, the terminal one held with its usage and ending the stream, errors,
 * chat's [DONE], invalid events); and what stands in for a terminal event that never came.
 *
 * Fixtures follow OpenAI's Responses API reference (the response object and its usage;
 * the streaming events with sequence_number).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sse.h"
#include "providers/provider.h"
#include "tap.h"

static cfg_provider g_oai = {.name = (char *)"oai",
                             .kind = PROV_OPENAI,
                             .base_url = (char *)"http://up.example/v1",
                             .api_key = (char *)"sk-secret",
                             .enabled = 1,
                             .responses = 1};
static cfg_provider g_az = {.name = (char *)"az",
                            .kind = PROV_AZURE,
                            .base_url = (char *)"https://r.openai.azure.com",
                            .api_key = (char *)"az-secret",
                            .enabled = 1,
                            .responses = 1};
static cfg_deployment g_dep = {.provider = &g_oai, .model = (char *)"gpt-\"up\"", .weight = 1};
static cfg_model g_model = {.name = (char *)"gpt-x"};

static char g_body[4096];

static prov_call *mkcall(const cfg_provider *prov, const char *body, int stream)
{
    prov_call *c = calloc(1, sizeof *c);
    snprintf(g_body, sizeof g_body, "%s", body);
    c->ep = EP_CHAT;
    c->dialect = &dialect_openai_responses;
    c->model = &g_model;
    g_dep.provider = (cfg_provider *)prov;
    c->dep = &g_dep;
    c->body = ms_str_c(g_body);
    int n = jscan_object(g_body, strlen(g_body), c->members, PROV_MAX_MEMBERS, NULL);
    if (n < 0) {
        fprintf(stderr, "bad test body: %s\n", g_body);
        exit(1);
    }
    c->nmembers = (size_t)n;
    c->m_model = jscan_find(c->members, c->nmembers, "model");
    c->stream = stream;
    c->max_tokens = -1;
    return c;
}

/* The adapter for each provider and client: Responses clients pass through only where the
 * provider says it speaks that API; every other client keeps its adapter. */
static void test_adapter_choice(void)
{
    cfg_provider off = g_oai, azoff = g_az, ant = {.kind = PROV_ANTHROPIC, .responses = 1};
    off.responses = 0;
    azoff.responses = 0;
    CHECK(prov_adapter_for(&g_oai, WIRE_OPENAI_RESPONSES) == &prov_openai_responses);
    CHECK(prov_adapter_for(&g_az, WIRE_OPENAI_RESPONSES) == &prov_openai_responses);
    CHECK(prov_adapter_for(&g_oai, WIRE_OPENAI_CHAT) == &prov_openai);
    CHECK(prov_adapter_for(&g_oai, WIRE_ANTHROPIC_MESSAGES) == &prov_openai);
    CHECK(prov_adapter_for(&off, WIRE_OPENAI_RESPONSES) == &prov_openai);
    CHECK(prov_adapter_for(&azoff, WIRE_OPENAI_RESPONSES) == &prov_openai);
    CHECK(prov_adapter_for(&ant, WIRE_OPENAI_RESPONSES) == &prov_anthropic);
    CHECK_EQ_INT(prov_openai_responses.api, WIRE_OPENAI_RESPONSES);
    CHECK(prov_openai_responses.passthrough_state && prov_openai_responses.stream_cut);
}

/* The request body's iovecs joined. */
static char *joined(const prov_upreq *u)
{
    static char out[4096];
    size_t k = 0;
    for (size_t i = 0; i < u->niov; i++) {
        memcpy(out + k, u->iov[i].base, u->iov[i].len);
        k += u->iov[i].len;
    }
    out[k] = '\0';
    return out;
}

static const char *header(const prov_upreq *u, size_t i)
{
    return i < u->nheaders ? u->headers[i] : "(none)";
}

static void test_build(void)
{
    const char *body = "{ \"input\" : \"h\\u00e9\", \"model\":\"gpt-x\" ,\"tools\":[{\"type\":"
                       "\"web_search\"}],\"top_logprobs\":2}";
    prov_upreq u;
    prov_refusal why;
    prov_call *c = mkcall(&g_oai, body, 0);
    memset(&u, 0, sizeof u);
    CHECK_EQ_INT(prov_openai_responses.build(c, NULL, &u, &why), 0);
    CHECK_EQ_STR(u.url, "http://up.example/v1/responses");
    CHECK_EQ_STR(joined(&u), "{ \"input\" : \"h\\u00e9\", \"model\":\"gpt-\\\"up\\\"\" ,\"tools\":"
                             "[{\"type\":\"web_search\"}],\"top_logprobs\":2}");
    CHECK_EQ_INT(u.nheaders, 2);
    CHECK_EQ_STR(header(&u, 0), "Authorization: Bearer sk-secret");
    CHECK_EQ_STR(header(&u, 1), "Content-Type: application/json");
    prov_upreq_free(&u);
    free(c);

    /* Azure's v1 API: no deployment in the path, no api-version, the key as api-key */
    c = mkcall(&g_az, "{\"model\":\"gpt-x\",\"input\":\"hi\",\"stream\":true}", 1);
    memset(&u, 0, sizeof u);
    CHECK_EQ_INT(prov_openai_responses.build(c, NULL, &u, &why), 0);
    CHECK_EQ_STR(u.url, "https://r.openai.azure.com/openai/v1/responses");
    CHECK_EQ_STR(joined(&u), "{\"model\":\"gpt-\\\"up\\\"\",\"input\":\"hi\",\"stream\":true}");
    CHECK_EQ_INT(u.nheaders, 3);
    CHECK_EQ_STR(header(&u, 0), "api-key: az-secret");
    CHECK_EQ_STR(header(&u, 2), "Accept: text/event-stream");
    prov_upreq_free(&u);
    free(c);

    /* a base URL that leaves no room for the path: refused, never cut */
    static char longurl[1100];
    memset(longurl, 'a', sizeof longurl - 1);
    memcpy(longurl, "http://", 7);
    cfg_provider big = g_oai;
    big.base_url = longurl;
    c = mkcall(&big, "{\"model\":\"gpt-x\",\"input\":\"hi\"}", 0);
    memset(&u, 0, sizeof u);
    CHECK_EQ_INT(prov_openai_responses.build(c, NULL, &u, &why), -1);
    prov_upreq_free(&u);
    free(c);
}

static int answer(const char *body, prov_usage *usage, char *err, size_t errlen)
{
    prov_call *c = mkcall(&g_oai, "{\"model\":\"gpt-x\",\"input\":\"hi\"}", 0);
    buf_t client;
    buf_init(&client, 0);
    memset(usage, 0, sizeof *usage);
    err[0] = '\0';
    int rc = prov_openai_responses.response(NULL, c, ms_str_c(body), &client, usage, err, errlen);
    CHECK_EQ_INT(client.len, 0); /* passed through: nothing rewritten */
    buf_free(&client);
    free(c);
    return rc;
}

/* Whole answers: usage onto the five counts (input excludes the cached reads, output includes
 * reasoning), details above their totals clamped, and a body that is not a response refused. */
static void test_response(void)
{
    prov_usage u;
    char err[200];
    CHECK_EQ_INT(answer("{\"id\":\"resp_1\",\"object\":\"response\",\"output\":[],\"usage\":{"
                        "\"input_tokens\":100,\"input_tokens_details\":{\"cached_tokens\":60},"
                        "\"output_tokens\":9,\"output_tokens_details\":{\"reasoning_tokens\":7},"
                        "\"total_tokens\":109}}",
                        &u, err, sizeof err),
                 0);
    CHECK(u.known && !u.estimated);
    CHECK_EQ_INT(u.u.input, 40);
    CHECK_EQ_INT(u.u.cached_input, 60);
    CHECK_EQ_INT(u.u.cache_write + u.u.cache_write_1h, 0);
    CHECK_EQ_INT(u.u.output, 9);
    CHECK_EQ_INT(u.u.reasoning, 7);
    CHECK_EQ_INT(answer("{\"output\":[],\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{"
                        "\"cached_tokens\":9},\"output_tokens\":2,\"output_tokens_details\":{"
                        "\"reasoning_tokens\":3}}}",
                        &u, err, sizeof err),
                 0);
    CHECK_EQ_INT(u.u.input, 0);
    CHECK_EQ_INT(u.u.cached_input, 5);
    CHECK_EQ_INT(u.u.output, 2);
    CHECK_EQ_INT(u.u.reasoning, 2);
    CHECK_EQ_INT(answer("{\"output\":[],\"usage\":null}", &u, err, sizeof err), 0);
    CHECK(!u.known);
    CHECK_EQ_INT(answer("{\"usage\":{\"input_tokens\":1}}", &u, err, sizeof err), -1);
    CHECK(strstr(err, "'output'") != NULL);
    CHECK_EQ_INT(answer("[1]", &u, err, sizeof err), -1);
    CHECK_EQ_INT(answer("{\"output\":[", &u, err, sizeof err), -1);
}

typedef struct feed {
    prov_call *call;
    void *st;
    prov_usage usage;
    buf_t out;
    int rc[16], usage_chunk[16], done, error, n;
    char err[200];
} feed;

static int on_event(void *ud, const sse_event *ev)
{
    feed *f = ud;
    int uc = 0, done = 0, error = 0;
    buf_reset(&f->out);
    int rc = prov_openai_responses.stream_event(f->st, f->call, ev, &f->out, &f->usage, &done,
                                                &error, &uc, f->err, sizeof f->err);
    if (f->n < 16) f->rc[f->n] = rc, f->usage_chunk[f->n] = uc;
    f->n++;
    f->done |= done;
    f->error |= error;
    return 0;
}

static void feed_init(feed *f)
{
    memset(f, 0, sizeof *f);
    f->call = mkcall(&g_oai, "{\"model\":\"gpt-x\",\"input\":\"hi\",\"stream\":true}", 1);
    f->st = calloc(1, prov_openai_responses.state_size);
    prov_openai_responses.reset(f->st, f->call);
    buf_init(&f->out, 0);
}

static void feed_run(feed *f, const char *text)
{
    sse_parser p;
    sse_init(&p, 1 << 20, on_event, f);
    sse_feed(&p, text, strlen(text));
    sse_free(&p);
}

static void feed_free(feed *f)
{
    buf_free(&f->out);
    free(f->st);
    free(f->call);
}

#define CREATED                                                                                    \
    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,"         \
    "\"response\":{\"id\":\"resp_up\",\"object\":\"response\",\"created_at\":77,\"status\":"       \
    "\"in_progress\",\"model\":\"gpt-up\",\"output\":[],\"usage\":null}}\n\n"
#define DELTA(seq, d)                                                                              \
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\","           \
    "\"sequence_number\":" #seq ",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,"   \
    "\"delta\":\"" d "\"}\n\n"
#define COMPLETED                                                                                  \
    "{\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"id\":\"resp_up\","     \
    "\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":10,"                       \
    "\"input_tokens_details\":{\"cached_tokens\":4},\"output_tokens\":6,"                          \
    "\"output_tokens_details\":{\"reasoning_tokens\":1}}}}"

/* A stream: every event but the terminal one as it came (2), deltas counted as generated bytes,
 * the terminal one held (its data in out) with its usage, and the end with it. */
static void test_stream(void)
{
    feed f;
    feed_init(&f);
    static const char stream[] = ": keep-alive\n\n" CREATED DELTA(1, "ab")
        DELTA(2, "c\\u00e9") "event: response.completed\ndata: " COMPLETED "\n\n";
    feed_run(&f, stream);
    CHECK_EQ_INT(f.n, 5);
    CHECK_EQ_INT(f.rc[0], 0); /* the comment: nothing */
    CHECK_EQ_INT(f.rc[1], 2);
    CHECK_EQ_INT(f.rc[2], 2);
    CHECK_EQ_INT(f.rc[3], 2);
    CHECK_EQ_INT(f.rc[4], 0);
    CHECK_EQ_INT(f.usage_chunk[3], 0);
    CHECK_EQ_INT(f.usage_chunk[4], 1);
    CHECK(f.done && !f.error);
    buf_append(&f.out, "", 1); /* the held event's data, as it came */
    CHECK_EQ_STR(f.out.data, COMPLETED);
    CHECK_EQ_INT(f.usage.streamed_bytes, 2 + 7); /* the deltas' bytes as sent */
    CHECK(f.usage.known);
    CHECK_EQ_INT(f.usage.u.input, 6);
    CHECK_EQ_INT(f.usage.u.cached_input, 4);
    CHECK_EQ_INT(f.usage.u.output, 6);
    CHECK_EQ_INT(f.usage.u.reasoning, 1);
    feed_free(&f);

    /* response.incomplete and response.failed end it too */
    static const char *const ends[] = {"response.incomplete", "response.failed"};
    for (int i = 0; i < 2; i++) {
        char ev[256];
        snprintf(ev, sizeof ev, "data: {\"type\":\"%s\",\"response\":{\"usage\":null}}\n\n",
                 ends[i]);
        feed_init(&f);
        feed_run(&f, ev);
        CHECK(f.done && f.usage_chunk[0] && !f.usage.known);
        feed_free(&f);
    }
}

/* An error event is the dialect's to write (the provider's message kept), [DONE] is not this
 * API's end, and an event that is not a JSON object fails the stream. */
static void test_stream_errors(void)
{
    feed f;
    feed_init(&f);
    feed_run(&f, "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":"
                 "\"boom \\\"x\\\"\",\"sequence_number\":4}\n\n");
    CHECK(f.error && !f.done);
    CHECK_EQ_INT(f.rc[0], 0);
    CHECK_EQ_STR(f.err, "boom \"x\"");
    feed_free(&f);

    feed_init(&f);
    feed_run(&f, "data: {\"type\":\"error\",\"error\":{\"message\":\"nested\"}}\n\n");
    CHECK(f.error);
    CHECK_EQ_STR(f.err, "nested");
    feed_free(&f);

    feed_init(&f);
    feed_run(&f, "event: error\ndata: {}\n\n");
    CHECK(f.error);
    CHECK_EQ_STR(f.err, "the provider reported an error in the stream");
    feed_free(&f);

    feed_init(&f);
    feed_run(&f, "data: [DONE]\n\n");
    CHECK(!f.done && !f.error && f.rc[0] == 0);
    feed_free(&f);

    feed_init(&f);
    feed_run(&f, "data: {\"type\":\"response.created\"\n\n");
    CHECK_EQ_INT(f.rc[0], -1);
    feed_run(&f, "data: [1,2]\n\n");
    CHECK_EQ_INT(f.rc[1], -1);
    feed_free(&f);
}

static const char *cut(feed *f, buf_t *held)
{
    buf_reset(held);
    CHECK_EQ_INT(prov_openai_responses.stream_cut(f->st, held), 0);
    buf_append(held, "", 1);
    return held->data;
}

/* What stands in for a terminal event that never came: nothing when nothing went out; the last
 * sequence number and the provider's response (id, time, model) when it did. */
static void test_stream_cut(void)
{
    feed f;
    buf_t held;
    buf_init(&held, 0);
    feed_init(&f);
    CHECK_EQ_STR(cut(&f, &held), "");
    feed_run(&f, CREATED DELTA(1, "a") DELTA(2, "b"));
    CHECK_EQ_STR(cut(&f, &held),
                 "{\"type\":\"response.in_progress\",\"sequence_number\":2,\"response\":{\"id\":"
                 "\"resp_up\",\"created_at\":77,\"model\":\"gpt-up\"}}");
    feed_free(&f);

    /* events without sequence numbers or a response.created: only what is known */
    feed_init(&f);
    feed_run(&f, "data: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n");
    CHECK_EQ_STR(cut(&f, &held), "{\"type\":\"response.in_progress\"}");
    feed_free(&f);

    /* an id too long to keep is not half kept */
    char ev[600];
    char id[300];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    snprintf(ev, sizeof ev,
             "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":"
             "\"%s\",\"model\":\"m\"}}\n\n",
             id);
    feed_init(&f);
    feed_run(&f, ev);
    CHECK_EQ_STR(cut(&f, &held), "{\"type\":\"response.in_progress\",\"sequence_number\":0}");
    feed_free(&f);
    buf_free(&held);
}

int main(void)
{
    RUN(test_adapter_choice);
    RUN(test_build);
    RUN(test_response);
    RUN(test_stream);
    RUN(test_stream_errors);
    RUN(test_stream_cut);
    TAP_DONE();
}
