/*
 * The OpenAI chat completions dialect: normalized events to `chat.completion.chunk` events and
 * to one `chat.completion`, the usage a client sees (prompt_tokens counting every prompt token,
 * with cached and reasoning tokens in their details objects, as shared/spec/API.md "Billing"
 * says), the held-back usage chunk with the gateway's `cost` added, in-band errors and
 * `data: [DONE]`.
 *
 * JSON is written directly into the output buffer (no document is built): every event of every
 * translated stream comes through here. Strings from providers are escaped on the way in.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/util.h"
#include "dialect/dialect.h"

#define OAI_MAX_HEAD 4096      /* a chunk's head: the id, and a model name of 255 bytes escaped */
#define OAI_MAX_TOOL_CALLS 128 /* a whole answer's tool calls; more is an error, not a drop */
#define OAI_MAX_ANSWER                                                                             \
    (64u << 20) /* the largest whole answer accumulated (as upstream answers)                      \
                 */

typedef struct oai_tool {
    int index;
    buf_t id, name, args;
} oai_tool;

struct dialect_enc {
    char id[64];
    char model[256];
    int64_t created;
    int include_usage;
    int started; /* the role chunk went out */
    /* every chunk's opening, the same for the whole stream: made at the first, copied after */
    buf_t head;
    int finished;
    ev_finish finish;
    /* whole answers */
    buf_t text, reasoning;
    oai_tool *tools; /* grown on demand: most answers call no tool */
    size_t ntools, tools_cap;
    int too_many_tools;
};

static const char *finish_name(ev_finish f)
{
    switch (f) {
    case EV_FINISH_LENGTH:
        return "length";
    case EV_FINISH_TOOL_CALLS:
        return "tool_calls";
    case EV_FINISH_CONTENT_FILTER:
        return "content_filter";
    case EV_FINISH_STOP:
    default:
        return "stop";
    }
}

static dialect_enc *enc_new(const dialect_req *req)
{
    dialect_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    /* chatcmpl- + the request id's hex: unique, and the same id the access log shows */
    const char *rid = req->request_id ? req->request_id : "";
    if (strncmp(rid, "req_", 4) == 0) rid += 4;
    size_t k = 0;
    memcpy(e->id, "chatcmpl-", 9);
    k = 9;
    while (*rid && k + 1 < sizeof e->id)
        e->id[k++] = *rid++;
    e->id[k] = '\0';
    ms_copy(e->model, sizeof e->model, req->model ? req->model : "");
    e->created = req->created;
    e->include_usage = req->include_usage;
    buf_init(&e->text, OAI_MAX_ANSWER);
    buf_init(&e->reasoning, OAI_MAX_ANSWER);
    buf_init(&e->head, OAI_MAX_HEAD);
    return e;
}

static void enc_free(dialect_enc *e)
{
    if (!e) return;
    buf_free(&e->text);
    buf_free(&e->reasoning);
    buf_free(&e->head);
    for (size_t i = 0; i < e->ntools; i++) {
        buf_free(&e->tools[i].id);
        buf_free(&e->tools[i].name);
        buf_free(&e->tools[i].args);
    }
    free(e->tools);
    free(e);
}

/* `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":`, made once
 * (every event of a stream is a chunk: formatting its head each time cost ~1,300 instructions
 * an event, docs/PERFORMANCE.md round 14). */
static int chunk_open(dialect_enc *e, buf_t *out)
{
    buf_t *h = &e->head;
    if (!h->len) {
        int rc = buf_appends(h, "data: {\"id\":\"");
        rc |= buf_appends(h, e->id);
        rc |= buf_appends(h, "\",\"object\":\"chat.completion.chunk\",\"created\":");
        rc |= buf_append_dec(h, e->created);
        rc |= buf_appends(h, ",\"model\":");
        rc |= dialect_put_str(h, ms_str_c(e->model));
        rc |= buf_appends(h, ",\"choices\":");
        if (rc) {
            buf_reset(h);
            return -1;
        }
    }
    return buf_append(out, h->data, h->len);
}

/* A chunk of one choice: delta_begin opens it up to its delta, delta_end closes it. */
static int delta_begin(dialect_enc *e, buf_t *out)
{
    return chunk_open(e, out) | buf_appends(out, "[{\"index\":0,\"delta\":");
}

static int delta_end(buf_t *out, const char *finish)
{
    int rc = buf_appends(out, ",\"logprobs\":null,\"finish_reason\":");
    if (finish) {
        rc |= buf_appends(out, "\"");
        rc |= buf_appends(out, finish);
        rc |= buf_appends(out, "\"");
    } else {
        rc |= buf_appends(out, "null");
    }
    return rc | buf_appends(out, "}]}\n\n");
}

/* A delta with one string member, the event's text: {"<name>":"<text>"}, name given with the
 * quote and colon after it (DELTA_NAME). Constants appended by their known lengths: a translated
 * stream writes one of these an event. */
#define DELTA_NAME(name) MS_STR_LIT(name "\":")
static int string_delta(dialect_enc *e, buf_t *out, ms_str name, const ev_event *ev)
{
    static const char mid[] = "[{\"index\":0,\"delta\":{\"";
    static const char tail[] = "},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    int rc = chunk_open(e, out);
    rc |= buf_append(out, mid, sizeof mid - 1);
    rc |= buf_append(out, name.p, name.n);
    rc |= dialect_put_text(out, ev);
    return rc | buf_append(out, tail, sizeof tail - 1);
}

static int stream_event(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    int rc = 0;
    if (!e->started && ev->type != EV_USAGE) {
        /* OpenAI's first chunk names the role */
        e->started = 1;
        rc |= delta_begin(e, out);
        rc |= buf_appends(out, "{\"role\":\"assistant\",\"content\":\"\"}");
        rc |= delta_end(out, NULL);
    }
    switch (ev->type) {
    case EV_TEXT:
        return rc | string_delta(e, out, DELTA_NAME("content"), ev);
    case EV_REASONING:
        return rc | string_delta(e, out, DELTA_NAME("reasoning_content"), ev);
    case EV_TOOL_START:
        rc |= delta_begin(e, out);
        rc |= buf_appends(out, "{\"tool_calls\":[{\"index\":");
        rc |= buf_append_dec(out, ev->index);
        rc |= buf_appends(out, ",\"id\":");
        rc |= dialect_put_str(out, ev->id);
        rc |= buf_appends(out, ",\"type\":\"function\",\"function\":{\"name\":");
        rc |= dialect_put_str(out, ev->name);
        rc |= buf_appends(out, ",\"arguments\":\"\"}}]}");
        return rc | delta_end(out, NULL);
    case EV_TOOL_ARGS:
        rc |= delta_begin(e, out);
        rc |= buf_appends(out, "{\"tool_calls\":[{\"index\":");
        rc |= buf_append_dec(out, ev->index);
        rc |= buf_appends(out, ",\"function\":{\"arguments\":");
        rc |= dialect_put_str(out, ev->text);
        rc |= buf_appends(out, "}}]}");
        return rc | delta_end(out, NULL);
    case EV_FINISH:
        e->finished = 1;
        e->finish = ev->finish;
        rc |= delta_begin(e, out);
        rc |= buf_appends(out, "{}");
        return rc | delta_end(out, finish_name(ev->finish));
    default:
        return rc; /* the start is the role chunk; usage is sent last, with the cost */
    }
}

static oai_tool *tool_at(dialect_enc *e, int index)
{
    for (size_t i = 0; i < e->ntools; i++)
        if (e->tools[i].index == index) return &e->tools[i];
    return NULL;
}

/* Whole answers: the event is kept for answer(). */
static int accumulate(dialect_enc *e, const ev_event *ev)
{
    switch (ev->type) {
    case EV_TEXT:
        return buf_append(&e->text, ev->text.p ? ev->text.p : "", ev->text.n);
    case EV_REASONING:
        return buf_append(&e->reasoning, ev->text.p ? ev->text.p : "", ev->text.n);
    case EV_TOOL_START: {
        if (tool_at(e, ev->index)) return 0;
        if (e->ntools == OAI_MAX_TOOL_CALLS) {
            e->too_many_tools = 1;
            return -1;
        }
        if (e->ntools == e->tools_cap) {
            size_t cap = e->tools_cap ? 2 * e->tools_cap : 4;
            oai_tool *bigger = realloc(e->tools, cap * sizeof *bigger);
            if (!bigger) return -1;
            e->tools = bigger;
            e->tools_cap = cap;
        }
        oai_tool *t = &e->tools[e->ntools++];
        t->index = ev->index;
        buf_init(&t->id, 1024);
        buf_init(&t->name, 1024);
        buf_init(&t->args, OAI_MAX_ANSWER);
        int rc = buf_append(&t->id, ev->id.p ? ev->id.p : "", ev->id.n);
        rc |= buf_append(&t->name, ev->name.p ? ev->name.p : "", ev->name.n);
        return rc;
    }
    case EV_TOOL_ARGS: {
        oai_tool *t = tool_at(e, ev->index);
        return t ? buf_append(&t->args, ev->text.p ? ev->text.p : "", ev->text.n) : -1;
    }
    case EV_FINISH:
        e->finished = 1;
        e->finish = ev->finish;
        return 0;
    default:
        return 0;
    }
}

static int event(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    return out ? stream_event(e, ev, out) : accumulate(e, ev);
}

static int usage_json(buf_t *out, const usage_counts *u, const char *cost)
{
    /* constants and numbers appended in turn: one buf_printf of it was ~2,400 instructions,
     * once in every translated answer (docs/PERFORMANCE.md, round 25) */
    int64_t prompt = usage_prompt(u);
    int rc = buf_appends(out, "{\"prompt_tokens\":");
    rc |= buf_append_dec(out, prompt);
    rc |= buf_appends(out, ",\"completion_tokens\":");
    rc |= buf_append_dec(out, u->output);
    rc |= buf_appends(out, ",\"total_tokens\":");
    rc |= buf_append_dec(out, prompt + u->output);
    rc |= buf_appends(out, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    rc |= buf_append_dec(out, u->cached_input);
    rc |= buf_appends(out, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    rc |= buf_append_dec(out, u->reasoning);
    rc |= buf_appends(out, "}");
    if (cost) {
        rc |= buf_appends(out, ",\"cost\":");
        rc |= buf_appends(out, cost);
    }
    rc |= buf_appends(out, "}");
    return rc;
}

static int error_event(const dialect_error *err, buf_t *out)
{
    int rc = buf_appends(out, "data: {\"error\":{\"message\":\"");
    rc |= buf_append_json_escaped(out, err->message, strlen(err->message));
    rc |= buf_appends(out, "\",\"type\":\"");
    rc |= buf_appends(out, err->type);
    rc |= buf_appends(out, "\",\"code\":\"");
    rc |= buf_appends(out, err->code);
    rc |= buf_appends(out, "\",\"param\":null}}\n\n");
    return rc;
}

static int stream_end(dialect_enc *e, const usage_counts *u, ms_str upstream_usage,
                      const char *cost, const dialect_error *err, buf_t *out)
{
    int rc = 0;
    const char *c = cost && cost[0] ? cost : "0";
    if (e->include_usage && upstream_usage.n) {
        rc |= buf_appends(out, "data: ");
        size_t mark = out->len;
        if (dialect_splice_cost(out, upstream_usage, c) != 0) {
            /* not an object with usage after all: as it came */
            out->len = mark;
            rc |= buf_append(out, upstream_usage.p, upstream_usage.n);
        }
        rc |= buf_appends(out, "\n\n");
    } else if (e->include_usage && u) {
        rc |= chunk_open(e, out);
        rc |= buf_appends(out, "[],\"usage\":");
        rc |= usage_json(out, u, c);
        rc |= buf_appends(out, "}\n\n");
    }
    if (err) rc |= error_event(err, out);
    rc |= buf_appends(out, "data: [DONE]\n\n");
    return rc;
}

static int tool_calls_json(dialect_enc *e, buf_t *out)
{
    int rc = buf_appends(out, ",\"tool_calls\":[");
    for (size_t i = 0; i < e->ntools; i++) {
        oai_tool *t = &e->tools[i];
        rc |= buf_appends(out, i ? ",{\"id\":" : "{\"id\":");
        rc |= dialect_put_str(out, (ms_str){t->id.data, t->id.len});
        rc |= buf_appends(out, ",\"type\":\"function\",\"function\":{\"name\":");
        rc |= dialect_put_str(out, (ms_str){t->name.data, t->name.len});
        rc |= buf_appends(out, ",\"arguments\":");
        rc |= dialect_put_str(out, (ms_str){t->args.data, t->args.len});
        rc |= buf_appends(out, "}}");
    }
    rc |= buf_appends(out, "]");
    return rc;
}

static int answer(dialect_enc *e, const usage_counts *u, buf_t *out)
{
    if (e->too_many_tools) return -1;
    int rc = buf_appends(out, "{\"id\":\"");
    rc |= buf_appends(out, e->id);
    rc |= buf_appends(out, "\",\"object\":\"chat.completion\",\"created\":");
    rc |= buf_append_dec(out, e->created);
    rc |= buf_appends(out, ",\"model\":");
    rc |= dialect_put_str(out, ms_str_c(e->model));
    rc |= buf_appends(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                           "\"content\":");
    /* OpenAI's content is null when the model only called tools */
    if (e->text.len || e->ntools == 0)
        rc |= dialect_put_str(out, (ms_str){e->text.data, e->text.len});
    else
        rc |= buf_appends(out, "null");
    rc |= buf_appends(out, ",\"refusal\":null");
    if (e->reasoning.len) {
        rc |= buf_appends(out, ",\"reasoning_content\":");
        rc |= dialect_put_str(out, (ms_str){e->reasoning.data, e->reasoning.len});
    }
    if (e->ntools) rc |= tool_calls_json(e, out);
    rc |= buf_appends(out, "},\"logprobs\":null,\"finish_reason\":\"");
    rc |= buf_appends(out, finish_name(e->finish));
    rc |= buf_appends(out, "\"}],\"usage\":");
    rc |= usage_json(out, u, NULL);
    rc |= buf_appends(out, "}");
    return rc;
}

const dialect dialect_openai_chat = {
    .name = "openai-chat",
    .api = WIRE_OPENAI_CHAT,
    .stream_content_type = "text/event-stream",
    .enc_new = enc_new,
    .enc_free = enc_free,
    .event = event,
    .stream_end = stream_end,
    .answer = answer,
};
