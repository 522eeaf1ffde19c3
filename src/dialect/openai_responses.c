/*
 * The OpenAI Responses dialect's encoder (issue 11): normalized events to the typed SSE events of
 * OpenAI's streaming Responses API and to one whole `response` object, for clients of
 * `POST /v1/responses` (Codex, the Vercel AI SDK, OpenAI's SDKs) whose model is served by a
 * provider that does not speak the Responses API. When it does (providers/openai_responses.c),
 * the provider's events pass through and only the stream's end comes here (passthrough_end: its
 * terminal event with the cost, or the failure that continues a cut stream). Formats followed:
 *   - https://platform.openai.com/docs/api-reference/responses/object (the Response object,
 *     output items, usage, status and incomplete_details)
 *   - https://platform.openai.com/docs/api-reference/responses-streaming (response.created …
 *     response.completed / incomplete / failed, output_item, content_part, output_text,
 *     function_call_arguments, reasoning_summary_part / reasoning_summary_text, error)
 *   - https://platform.openai.com/docs/guides/error-codes (the error envelope)
 * and checked against what the `openai` Node SDK (v6: lib/responses/ResponseAccumulator.js,
 * core/streaming.js) and the Vercel AI SDK's Responses model read.
 *
 * A Responses stream is a sequence of output items, each announced (output_item.added), filled
 * (deltas) and finished (output_item.done) before the next; OpenAI-style providers interleave
 * (several tool calls by index), so this encoder serializes as anthropic_messages.c does: one item
 * open at a time, and a tool call that begins while another call is open waits, its arguments
 * held, until the open one is done. Every item is kept until the end (bounded, as whole answers
 * are): the terminal event carries the whole response, output included, and the openai SDK's
 * finalResponse() is that object, not what the deltas built. JSON is written straight into the
 * output; strings from providers are escaped on the way in.
 *
 * Reasoning from providers that are not OpenAI (DeepSeek's reasoning_content, Anthropic's
 * thinking, Gemini's thoughts) goes out as a reasoning item's summary (summary_text and the
 * reasoning_summary_* events), not as reasoning_text content: the summary is what Codex and the
 * Vercel AI SDK show as reasoning, while reasoning_text is newer and read by fewer clients. It
 * carries no encrypted_content: nothing the gateway could hand back to OpenAI would be accepted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/util.h"
#include "dialect/dialect.h"

#define RS_MAX_ANSWER (64u << 20) /* an answer's bytes kept, streamed or whole */
#define RS_MAX_ITEMS 4096         /* an answer's output items; more is an error */
#define RS_MAX_TOOL_CALLS 128     /* an answer's tool calls; more is an error, not a drop */

typedef enum { IT_REASONING, IT_MESSAGE, IT_CALL } it_kind;

enum { ST_OPEN, ST_HELD, ST_DONE }; /* streams: an item's progress */

/* One output item. Its position in items[] is its output_index: items are created in the order
 * they go out (a waiting call is created before any item that would close the open call). */
typedef struct rs_item {
    it_kind kind;
    int index;  /* calls: the provider's call index */
    int state;  /* streams */
    buf_t data; /* summary text, message text, or a call's arguments */
    buf_t call_id;
    buf_t name;
    char id[96];       /* the item's id: rs_/msg_/fc_<request hex>_<output index> */
    char gen_call[96]; /* a call without the provider's id gets one: call_id pairs the output */
} rs_item;

struct dialect_enc {
    char hex[48]; /* the request id's hex: ids are made from it */
    char id[64];  /* resp_<hex> */
    char model[256];
    int64_t created;
    /* streams */
    int started; /* response.created went out */
    int open;    /* items[open_item] is the open item */
    size_t open_item;
    int64_t seq; /* the next sequence_number */
    /* both */
    int have_usage;
    usage_counts usage;
    int finished;
    ev_finish finish;
    rs_item *items;
    size_t nitems, cap, ncalls;
    size_t total; /* bytes kept */
    int failed;   /* a bound was passed or a call was unknown: the answer cannot be encoded */
};

static dialect_enc *enc_new(const dialect_req *req)
{
    dialect_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    /* the request id's hex: unique, and the same id the access log shows */
    const char *rid = req->request_id ? req->request_id : "";
    if (strncmp(rid, "req_", 4) == 0) rid += 4;
    size_t k = 0;
    while (rid[k] && k + 1 < sizeof e->hex) {
        e->hex[k] = rid[k];
        k++;
    }
    snprintf(e->id, sizeof e->id, "resp_%s", e->hex);
    ms_copy(e->model, sizeof e->model, req->model ? req->model : "");
    e->created = req->created;
    /* include_usage is chat's opt-in: a Responses terminal event always carries usage */
    return e;
}

static void enc_free(dialect_enc *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nitems; i++) {
        buf_free(&e->items[i].data);
        buf_free(&e->items[i].call_id);
        buf_free(&e->items[i].name);
    }
    free(e->items);
    free(e);
}

static rs_item *item_new(dialect_enc *e, it_kind kind)
{
    if (kind == IT_CALL && e->ncalls == RS_MAX_TOOL_CALLS) return NULL;
    if (e->nitems == RS_MAX_ITEMS) return NULL;
    if (e->nitems == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 4;
        rs_item *bigger = realloc(e->items, cap * sizeof *bigger);
        if (!bigger) return NULL;
        e->items = bigger;
        e->cap = cap;
    }
    size_t pos = e->nitems++;
    rs_item *it = &e->items[pos];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    buf_init(&it->data, RS_MAX_ANSWER);
    buf_init(&it->call_id, 1024);
    buf_init(&it->name, 1024);
    static const char *const prefix[] = {"rs", "msg", "fc"};
    snprintf(it->id, sizeof it->id, "%s_%s_%zu", prefix[kind], e->hex, pos);
    if (kind == IT_CALL) e->ncalls++;
    return it;
}

static int call_item(dialect_enc *e, rs_item *it, const ev_event *ev)
{
    it->index = ev->index;
    if (!ev->id.n) /* Gemini's calls have no id; the client's function_call_output needs one */
        snprintf(it->gen_call, sizeof it->gen_call, "call_%s_%zu", e->hex, e->ncalls - 1);
    int rc = buf_append(&it->call_id, ev->id.p ? ev->id.p : "", ev->id.n);
    return rc | buf_append(&it->name, ev->name.p ? ev->name.p : "", ev->name.n);
}

static ms_str call_id(const rs_item *it)
{
    return it->call_id.len ? buf_view(&it->call_id) : ms_str_c(it->gen_call);
}

/* A call's arguments once done: none at all is "{}", the arguments of a call without
 * parameters, which clients JSON.parse (Codex does) where "" would throw. */
static ms_str call_args(const rs_item *it)
{
    return it->data.len ? buf_view(&it->data) : MS_STR_LIT("{}");
}

/* The latest call with this index (live_only: not done), or NULL. */
static rs_item *call_at(dialect_enc *e, int index, int live_only)
{
    for (size_t i = e->nitems; i-- > 0;) {
        rs_item *it = &e->items[i];
        if (it->kind == IT_CALL && it->index == index && (!live_only || it->state != ST_DONE))
            return it;
    }
    return NULL;
}

static int keep(dialect_enc *e, rs_item *it, ms_str text)
{
    if (e->total + text.n > RS_MAX_ANSWER) return -1;
    if (buf_append(&it->data, text.p, text.n) != 0) return -1;
    e->total += text.n;
    return 0;
}

/* The answer was cut (the output limit, or a filter): the response is "incomplete". */
static int cut(const dialect_enc *e)
{
    return e->finished && (e->finish == EV_FINISH_LENGTH || e->finish == EV_FINISH_CONTENT_FILTER);
}

/* A finished item's status: the last item of a cut answer is "incomplete" (as OpenAI marks the
 * message max_output_tokens stopped); in a failed stream, so is every item not finished. */
static const char *item_status(const dialect_enc *e, const rs_item *it, int failed)
{
    if (failed) return it->state == ST_DONE ? "completed" : "incomplete";
    return cut(e) && it == &e->items[e->nitems - 1] ? "incomplete" : "completed";
}

static int text_part(buf_t *out, ms_str text)
{
    int rc = buf_appends(out, "{\"type\":\"output_text\",\"text\":");
    rc |= dialect_put_str(out, text);
    return rc | buf_appends(out, ",\"annotations\":[]}");
}

static int summary_part(buf_t *out, ms_str text)
{
    int rc = buf_appends(out, "{\"type\":\"summary_text\",\"text\":");
    rc |= dialect_put_str(out, text);
    return rc | buf_appends(out, "}");
}

/* An output item: as announced (added: empty, in progress) or finished. */
static int item_json(const dialect_enc *e, const rs_item *it, int added, int failed, buf_t *out)
{
    int rc;
    switch (it->kind) {
    case IT_REASONING:
        rc = buf_appends(out, "{\"type\":\"reasoning\",\"id\":\"");
        rc |= buf_appends(out, it->id);
        rc |= buf_appends(out, "\",\"summary\":[");
        if (!added) rc |= summary_part(out, buf_view(&it->data));
        return rc | buf_appends(out, "]}");
    case IT_MESSAGE:
        rc = buf_appends(out, "{\"type\":\"message\",\"id\":\"");
        rc |= buf_appends(out, it->id);
        rc |= buf_appends(out, "\",\"status\":\"");
        rc |= buf_appends(out, added ? "in_progress" : item_status(e, it, failed));
        rc |= buf_appends(out, "\",\"role\":\"assistant\",\"content\":[");
        if (!added) rc |= text_part(out, buf_view(&it->data));
        return rc | buf_appends(out, "]}");
    default:
        rc = buf_appends(out, "{\"type\":\"function_call\",\"id\":\"");
        rc |= buf_appends(out, it->id);
        rc |= buf_appends(out, "\",\"call_id\":");
        rc |= dialect_put_str(out, call_id(it));
        rc |= buf_appends(out, ",\"name\":");
        rc |= dialect_put_str(out, buf_view(&it->name));
        rc |= buf_appends(out, ",\"arguments\":");
        rc |= dialect_put_str(out, added ? MS_STR_LIT("") : call_args(it));
        rc |= buf_appends(out, ",\"status\":\"");
        rc |= buf_appends(out, added ? "in_progress" : item_status(e, it, failed));
        return rc | buf_appends(out, "\"}");
    }
}

/* The Responses usage object. input_tokens is every prompt token, however read or written (as
 * chat's prompt_tokens: shared/spec/API.md "Billing"), cached_tokens the cache reads among them;
 * output_tokens includes reasoning_tokens. The gateway's cost goes inside, as "cost", as the
 * chat and Anthropic dialects put it in theirs: SDKs ignore a field they do not know. */
static int usage_json(buf_t *out, const usage_counts *u, const char *cost)
{
    int64_t in = usage_prompt(u);
    int rc = buf_appends(out, "{\"input_tokens\":");
    rc |= buf_append_dec(out, in);
    rc |= buf_appends(out, ",\"input_tokens_details\":{\"cached_tokens\":");
    rc |= buf_append_dec(out, u->cached_input);
    rc |= buf_appends(out, "},\"output_tokens\":");
    rc |= buf_append_dec(out, u->output);
    rc |= buf_appends(out, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    rc |= buf_append_dec(out, u->reasoning);
    rc |= buf_appends(out, "},\"total_tokens\":");
    rc |= buf_append_dec(out, in + u->output);
    if (cost) {
        rc |= buf_appends(out, ",\"cost\":");
        rc |= buf_appends(out, cost);
    }
    return rc | buf_appends(out, "}");
}

enum { R_START, R_END, R_FAILED };

/* The response object. R_START: in progress, no output, usage null (response.created and
 * in_progress). R_END: the status the finish gives, every item, usage u. R_FAILED: "failed" with
 * the error, the items announced so far.
 *
 * The request's own parameters (instructions, tools, tool_choice, temperature…) are not known to
 * an encoder (dialect_req carries the model, the id and the time): OpenAI's defaults stand in, so
 * the fields SDKs type as present are there. output_text is not written: it is the SDKs'
 * convenience, which they compute from output themselves. */
static int response_json(const dialect_enc *e, int phase, const usage_counts *u, const char *cost,
                         const dialect_error *err, buf_t *out)
{
    const char *status = phase == R_START    ? "in_progress"
                         : phase == R_FAILED ? "failed"
                         : cut(e)            ? "incomplete"
                                             : "completed";
    /* the id is escaped: a passed-through response's is the provider's (adopt) */
    int rc = buf_appends(out, "{\"id\":");
    rc |= dialect_put_str(out, ms_str_c(e->id));
    rc |= buf_appends(out, ",\"object\":\"response\",\"created_at\":");
    rc |= buf_append_dec(out, e->created);
    rc |= buf_appends(out, ",\"status\":\"");
    rc |= buf_appends(out, status);
    rc |= buf_appends(out, "\",\"error\":");
    if (phase == R_FAILED && err) {
        rc |= buf_appends(out, "{\"code\":");
        rc |= dialect_put_str(out, ms_str_c(err->code ? err->code : "server_error"));
        rc |= buf_appends(out, ",\"message\":");
        rc |= dialect_put_str(out, ms_str_c(err->message ? err->message : ""));
        rc |= buf_appends(out, "}");
    } else {
        rc |= buf_appends(out, "null");
    }
    rc |= buf_appends(out, ",\"incomplete_details\":");
    if (phase == R_END && cut(e))
        rc |= buf_appends(out, e->finish == EV_FINISH_LENGTH ? "{\"reason\":\"max_output_tokens\"}"
                                                             : "{\"reason\":\"content_filter\"}");
    else
        rc |= buf_appends(out, "null");
    rc |= buf_appends(out, ",\"instructions\":null,\"max_output_tokens\":null,\"model\":");
    rc |= dialect_put_str(out, ms_str_c(e->model));
    rc |= buf_appends(out, ",\"output\":[");
    int n = 0;
    for (size_t i = 0; phase != R_START && i < e->nitems; i++) {
        const rs_item *it = &e->items[i];
        if (it->state == ST_HELD) continue; /* failed streams: never announced */
        if (n++) rc |= buf_appends(out, ",");
        rc |= item_json(e, it, 0, phase == R_FAILED, out);
    }
    rc |= buf_appends(out, "],\"parallel_tool_calls\":true,\"previous_response_id\":null,"
                           "\"reasoning\":{\"effort\":null,\"summary\":null},"
                           "\"temperature\":null,\"text\":{\"format\":{\"type\":\"text\"}},"
                           "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":null,"
                           "\"truncation\":\"disabled\",\"usage\":");
    if (phase == R_START)
        rc |= buf_appends(out, "null");
    else
        rc |= usage_json(out, u, cost);
    return rc | buf_appends(out, ",\"metadata\":{}}");
}

/* ---- streams ---- */

/* `event: <type>\ndata: {"type":"<type>","sequence_number":N` — the caller adds the rest and
 * sse_close. Sequence numbers count every event from 0, as OpenAI's do. */
static int sse_open(dialect_enc *e, buf_t *out, const char *type)
{
    /* appended, not formatted: every event of a stream starts so (printf cost ~800 instructions
     * an event, docs/PERFORMANCE.md round 14) */
    int rc = buf_appends(out, "event: ");
    rc |= buf_appends(out, type);
    rc |= buf_appends(out, "\ndata: {\"type\":\"");
    rc |= buf_appends(out, type);
    rc |= buf_appends(out, "\",\"sequence_number\":");
    return rc | buf_append_dec(out, e->seq++);
}

static int sse_close(buf_t *out)
{
    return buf_appends(out, "}\n\n");
}

static size_t pos_of(const dialect_enc *e, const rs_item *it)
{
    return (size_t)(it - e->items);
}

/* The fields every item event starts with: item_id and output_index. */
static int item_ref(const dialect_enc *e, const rs_item *it, buf_t *out)
{
    int rc = buf_appends(out, ",\"item_id\":\"");
    rc |= buf_appends(out, it->id);
    rc |= buf_appends(out, "\",\"output_index\":");
    return rc | buf_append_dec(out, (int64_t)pos_of(e, it));
}

static int start(dialect_enc *e, buf_t *out)
{
    e->started = 1;
    int rc = sse_open(e, out, "response.created");
    rc |= buf_appends(out, ",\"response\":");
    rc |= response_json(e, R_START, NULL, NULL, NULL, out);
    rc |= sse_close(out);
    rc |= sse_open(e, out, "response.in_progress");
    rc |= buf_appends(out, ",\"response\":");
    rc |= response_json(e, R_START, NULL, NULL, NULL, out);
    return rc | sse_close(out);
}

/* ,"output_index":N,"item": — before an item's JSON. */
static int output_index(buf_t *out, size_t pos)
{
    int rc = buf_appends(out, ",\"output_index\":");
    rc |= buf_append_dec(out, (int64_t)pos);
    return rc | buf_appends(out, ",\"item\":");
}

/* output_item.added, then the item's empty part (messages and reasoning). */
static int item_added(dialect_enc *e, const rs_item *it, buf_t *out)
{
    int rc = sse_open(e, out, "response.output_item.added");
    rc |= output_index(out, pos_of(e, it));
    rc |= item_json(e, it, 1, 0, out);
    rc |= sse_close(out);
    if (it->kind == IT_MESSAGE) {
        rc |= sse_open(e, out, "response.content_part.added");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"content_index\":0,\"part\":");
        rc |= text_part(out, MS_STR_LIT(""));
        rc |= sse_close(out);
    } else if (it->kind == IT_REASONING) {
        rc |= sse_open(e, out, "response.reasoning_summary_part.added");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"summary_index\":0,\"part\":");
        rc |= summary_part(out, MS_STR_LIT(""));
        rc |= sse_close(out);
    }
    return rc;
}

static int item_delta(dialect_enc *e, const rs_item *it, ms_str d, int plain, buf_t *out)
{
    static const char *const type[] = {"response.reasoning_summary_text.delta",
                                       "response.output_text.delta",
                                       "response.function_call_arguments.delta"};
    int rc = sse_open(e, out, type[it->kind]);
    rc |= item_ref(e, it, out);
    if (it->kind == IT_MESSAGE) rc |= buf_appends(out, ",\"content_index\":0");
    if (it->kind == IT_REASONING) rc |= buf_appends(out, ",\"summary_index\":0");
    rc |= buf_appends(out, ",\"delta\":");
    rc |= plain ? dialect_put_plain(out, d) : dialect_put_str(out, d); /* ev_event.plain */
    if (it->kind == IT_MESSAGE) rc |= buf_appends(out, ",\"logprobs\":[]");
    return rc | sse_close(out);
}

/* The item's done events: its full text or arguments, its part, then output_item.done. */
static int item_done(dialect_enc *e, rs_item *it, buf_t *out)
{
    int rc = 0;
    switch (it->kind) {
    case IT_MESSAGE:
        rc |= sse_open(e, out, "response.output_text.done");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"content_index\":0,\"text\":");
        rc |= dialect_put_str(out, buf_view(&it->data));
        rc |= buf_appends(out, ",\"logprobs\":[]");
        rc |= sse_close(out);
        rc |= sse_open(e, out, "response.content_part.done");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"content_index\":0,\"part\":");
        rc |= text_part(out, buf_view(&it->data));
        rc |= sse_close(out);
        break;
    case IT_REASONING:
        rc |= sse_open(e, out, "response.reasoning_summary_text.done");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"summary_index\":0,\"text\":");
        rc |= dialect_put_str(out, buf_view(&it->data));
        rc |= sse_close(out);
        rc |= sse_open(e, out, "response.reasoning_summary_part.done");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"summary_index\":0,\"part\":");
        rc |= summary_part(out, buf_view(&it->data));
        rc |= sse_close(out);
        break;
    default:
        rc |= sse_open(e, out, "response.function_call_arguments.done");
        rc |= item_ref(e, it, out);
        rc |= buf_appends(out, ",\"name\":");
        rc |= dialect_put_str(out, buf_view(&it->name));
        rc |= buf_appends(out, ",\"arguments\":");
        rc |= dialect_put_str(out, call_args(it));
        rc |= sse_close(out);
        break;
    }
    it->state = ST_DONE; /* before the item: a done item of a cut answer shows its status */
    rc |= sse_open(e, out, "response.output_item.done");
    rc |= output_index(out, pos_of(e, it));
    rc |= item_json(e, it, 0, 0, out);
    return rc | sse_close(out);
}

/* Finishes the open item, then gives each call that waited its whole life (added, its arguments
 * in one delta, done), in the order the calls began. After this no item is open and none
 * waits. */
static int settle(dialect_enc *e, buf_t *out)
{
    int rc = 0;
    if (e->open) rc |= item_done(e, &e->items[e->open_item], out);
    e->open = 0;
    for (size_t i = 0; i < e->nitems; i++) {
        rs_item *it = &e->items[i];
        if (it->state != ST_HELD) continue;
        rc |= item_added(e, it, out);
        if (it->data.len) rc |= item_delta(e, it, buf_view(&it->data), 0, out);
        rc |= item_done(e, it, out);
    }
    return rc;
}

static int open_new(dialect_enc *e, it_kind kind, rs_item **made, buf_t *out)
{
    int rc = settle(e, out);
    rs_item *it = item_new(e, kind);
    if (!it) return -1;
    e->open = 1;
    e->open_item = pos_of(e, it);
    *made = it;
    return rc | item_added(e, it, out);
}

/* A text or reasoning delta: into the open item of its kind, or a new one. Empty deltas (an
 * OpenAI role chunk's content "") make no item. */
static int text_delta(dialect_enc *e, it_kind kind, const ev_event *ev, buf_t *out)
{
    ms_str text = ev->text;
    if (!text.n) return 0;
    int rc = 0;
    rs_item *it = e->open ? &e->items[e->open_item] : NULL;
    if (!it || it->kind != kind) rc |= open_new(e, kind, &it, out);
    if (rc || keep(e, it, text) != 0) return -1;
    return item_delta(e, it, text, ev->plain, out);
}

static int tool_start(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    if (call_at(e, ev->index, 1)) return 0; /* announced again: one call */
    if (e->open && e->items[e->open_item].kind == IT_CALL) {
        /* another call is open and may still get arguments (OpenAI interleaves parallel calls
         * by index): this one waits */
        rs_item *it = item_new(e, IT_CALL);
        if (!it) return -1;
        it->state = ST_HELD;
        return call_item(e, it, ev);
    }
    int rc = settle(e, out);
    rs_item *it = item_new(e, IT_CALL);
    if (!it || call_item(e, it, ev) != 0) return -1;
    e->open = 1;
    e->open_item = pos_of(e, it);
    return rc | item_added(e, it, out);
}

static int tool_args(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    /* arguments for a call that never began, or that is already done (text came between, or it
     * waited and was sent): they cannot be placed, so the stream fails rather than give the
     * client a call with arguments missing */
    rs_item *it = call_at(e, ev->index, 1);
    if (!it) return -1;
    if (!ev->text.n) return 0;
    if (keep(e, it, ev->text) != 0) return -1;
    return it->state == ST_OPEN ? item_delta(e, it, ev->text, ev->plain, out) : 0;
}

static int stream_event(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    int rc = e->started ? 0 : start(e, out);
    switch (ev->type) {
    case EV_TEXT:
        return rc | text_delta(e, IT_MESSAGE, ev, out);
    case EV_REASONING:
        return rc | text_delta(e, IT_REASONING, ev, out);
    case EV_TOOL_START:
        return rc | tool_start(e, ev, out);
    case EV_TOOL_ARGS:
        return rc | tool_args(e, ev, out);
    case EV_FINISH:
        /* kept for the end: arguments of a waiting call may still come after it */
        e->finished = 1;
        e->finish = ev->finish;
        return rc;
    case EV_USAGE:
        e->have_usage = 1;
        e->usage = ev->usage;
        return rc;
    default:
        return rc; /* EV_START: response.created is all */
    }
}

/* OpenAI's stream error event, as the API reference gives it ({"type":"error","code","message",
 * "param","sequence_number"}: what the Vercel AI SDK parses), with the same three also nested
 * as "error", as OpenAI's servers send it: the openai SDKs throw an APIError on an event whose
 * data has an "error" member, so the client's stream fails instead of ending quietly. */
static int error_event(dialect_enc *e, const dialect_error *err, buf_t *out)
{
    ms_str code = ms_str_c(err->code ? err->code : "server_error");
    ms_str msg = ms_str_c(err->message ? err->message : "");
    int rc = sse_open(e, out, "error");
    for (int nested = 0; nested < 2; nested++) {
        rc |= buf_appends(out, nested ? ",\"error\":{\"code\":" : ",\"code\":");
        rc |= dialect_put_str(out, code);
        rc |= buf_appends(out, ",\"message\":");
        rc |= dialect_put_str(out, msg);
        rc |= buf_appends(out, ",\"param\":null");
    }
    rc |= buf_appends(out, "}");
    return rc | sse_close(out);
}

/* Pass-through: the provider's response named in held (a stream cut after some of its events
 * went to the client) becomes this encoder's, so what the encoder writes next continues it: its
 * id, creation time and model, and the sequence numbers after the last one the client got. What
 * held does not say stays the encoder's own. */
static void adopt(dialect_enc *e, const jscan_member *r, const jscan_member *seq)
{
    int64_t v;
    if (seq && seq->type == JS_NUMBER && jscan_int(seq->value, &v) == 0) e->seq = v + 1;
    jscan_member m[8];
    int n = r && r->type == JS_OBJECT ? jscan_members(r->value, m, 8) : -1;
    if (n <= 0) return;
    size_t k = (size_t)(n > 8 ? 8 : n);
    const jscan_member *id = jscan_find(m, k, "id"), *at = jscan_find(m, k, "created_at");
    const jscan_member *model = jscan_find(m, k, "model");
    char tmp[sizeof e->id];
    if (id && jscan_string(id->value, tmp, sizeof tmp) > 0) memcpy(e->id, tmp, sizeof tmp);
    if (at && jscan_int(at->value, &v) == 0) e->created = v;
    if (model && jscan_string(model->value, e->model, sizeof e->model) < 0) e->model[0] = '\0';
}

/* The terminal events of a Responses stream. */
static int terminal(const char *type)
{
    return !strcmp(type, "response.completed") || !strcmp(type, "response.incomplete") ||
           !strcmp(type, "response.failed");
}

/* Pass-through (the provider speaks the Responses API and its events went to the client as they
 * came). up is the provider's terminal event, held back: it goes out with the cost spliced into
 * its response's usage (as it came when it has none). Or up stands in for a terminal event that
 * never came (the stream was cut: providers/openai_responses.c, stream_cut): the error event and
 * response.failed then continue the provider's stream, its response's id and its numbering,
 * with no output (the client has the provider's own items). */
static int passthrough_end(dialect_enc *e, ms_str up, const char *cost, const dialect_error *err,
                           buf_t *out)
{
    jscan_member m[32];
    int n = jscan_object(up.p, up.n, m, 32, NULL);
    size_t nm = n > 0 ? (size_t)(n > 32 ? 32 : n) : 0;
    const jscan_member *t = nm ? jscan_find(m, nm, "type") : NULL;
    const jscan_member *r = nm ? jscan_find(m, nm, "response") : NULL;
    const jscan_member *s = nm ? jscan_find(m, nm, "sequence_number") : NULL;
    char type[64] = "response.completed";
    if (t && t->type == JS_STRING && jscan_string(t->value, type, sizeof type) <= 0)
        snprintf(type, sizeof type, "response.completed");
    adopt(e, terminal(type) ? NULL : r, s);
    if (!terminal(type)) {
        static const dialect_error cut = {"provider_error", "upstream_error",
                                          "The provider's stream ended before it finished."};
        usage_counts none = {0};
        e->started = 1; /* the provider's response.created reached the client */
        int rc = error_event(e, err ? err : &cut, out);
        rc |= sse_open(e, out, "response.failed");
        rc |= buf_appends(out, ",\"response\":");
        rc |= response_json(e, R_FAILED, &none, cost, err ? err : &cut, out);
        return rc | sse_close(out);
    }
    for (char *c = type; *c; c++) /* a line break would end the SSE field */
        if (*c == '\n' || *c == '\r') *c = ' ';
    int rc = buf_appends(out, "event: ");
    rc |= buf_appends(out, type);
    rc |= buf_appends(out, "\ndata: ");
    size_t mark = out->len;
    int spliced = -1;
    if (r && r->type == JS_OBJECT) {
        size_t at = (size_t)(r->value.p - up.p);
        spliced = buf_append(out, up.p, at);
        spliced |= dialect_splice_cost(out, r->value, cost);
        spliced |= buf_append(out, up.p + at + r->value.n, up.n - at - r->value.n);
    }
    if (spliced != 0) {
        out->len = mark; /* no usage to put it in: as it came */
        rc |= buf_append(out, up.p, up.n);
    }
    /* data sent on several data: lines was joined with line feeds, which JSON reads as white
     * space between tokens (a string cannot hold one): one data: line again */
    for (size_t i = mark; rc == 0 && i < out->len; i++)
        if (out->data[i] == '\n') out->data[i] = ' ';
    rc |= buf_appends(out, "\n\n");
    /* an error after the terminal event (the provider kept the stream open past it, and the
     * idle timeout ended it): said after it, numbered after it */
    return err ? rc | error_event(e, err, out) : rc;
}

/* The end of a stream.
 *
 * The open item is finished and any waiting calls sent, then response.completed (or
 * response.incomplete: the output limit or a filter cut the answer) with the whole response,
 * output and usage: u, else the last EV_USAGE, else zeros (unknown, never estimated; the Vercel
 * AI SDK requires the usage object there). The cost goes in that usage. No [DONE]: a Responses
 * stream ends with its terminal event.
 *
 * With err: no more item events (the open item stays unfinished), the error event, then
 * response.failed with status "failed", the error {code, message} in the contract's code, and
 * the items announced so far. Both, because clients differ on what ends a failed stream: Codex
 * requires a terminal response.* event, the Vercel AI SDK reads the error event. A failure before
 * any event still sends response.created first: the openai SDK's accumulator refuses a stream
 * that does not begin with it. */
static int stream_end(dialect_enc *e, const usage_counts *u, ms_str upstream_usage,
                      const char *cost, const dialect_error *err, buf_t *out)
{
    const char *c = cost && cost[0] ? cost : "0";
    if (upstream_usage.n) return passthrough_end(e, upstream_usage, c, err, out);
    int rc = e->started ? 0 : start(e, out);
    usage_counts none = {0};
    const usage_counts *fin = u ? u : e->have_usage ? &e->usage : &none;
    if (err) {
        rc |= error_event(e, err, out);
        rc |= sse_open(e, out, "response.failed");
        rc |= buf_appends(out, ",\"response\":");
        rc |= response_json(e, R_FAILED, fin, c, err, out);
        return rc | sse_close(out);
    }
    rc |= settle(e, out);
    rc |= sse_open(e, out, cut(e) ? "response.incomplete" : "response.completed");
    rc |= buf_appends(out, ",\"response\":");
    rc |= response_json(e, R_END, fin, c, NULL, out);
    return rc | sse_close(out);
}

/* ---- whole answers ---- */

static int accumulate_text(dialect_enc *e, it_kind kind, ms_str text)
{
    if (!text.n) return 0;
    rs_item *last = e->nitems ? &e->items[e->nitems - 1] : NULL;
    rs_item *it = last && last->kind == kind ? last : item_new(e, kind);
    return it ? keep(e, it, text) : -1;
}

static int accumulate(dialect_enc *e, const ev_event *ev)
{
    switch (ev->type) {
    case EV_TEXT:
        return accumulate_text(e, IT_MESSAGE, ev->text);
    case EV_REASONING:
        return accumulate_text(e, IT_REASONING, ev->text);
    case EV_TOOL_START: {
        if (call_at(e, ev->index, 0)) return 0;
        rs_item *it = item_new(e, IT_CALL);
        return it ? call_item(e, it, ev) : -1;
    }
    case EV_TOOL_ARGS: {
        rs_item *it = call_at(e, ev->index, 0);
        if (!it) return -1;
        return ev->text.n ? keep(e, it, ev->text) : 0;
    }
    case EV_FINISH:
        e->finished = 1;
        e->finish = ev->finish;
        return 0;
    case EV_USAGE:
        e->have_usage = 1;
        e->usage = ev->usage;
        return 0;
    default:
        return 0;
    }
}

static int event(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    if (e->failed) return -1;
    int rc = out ? stream_event(e, ev, out) : accumulate(e, ev);
    if (rc) e->failed = 1;
    return rc;
}

/* The whole response, as the stream's terminal event carries it; no cost (answer() is not given
 * one: the gateway's cost goes in a header for whole answers). */
static int answer(dialect_enc *e, const usage_counts *u, buf_t *out)
{
    if (e->failed) return -1;
    usage_counts none = {0};
    const usage_counts *fin = u ? u : e->have_usage ? &e->usage : &none;
    return response_json(e, R_END, fin, NULL, NULL, out) ? -1 : 0;
}

int dialect_responses_error_body(buf_t *out, int status, const char *type, const char *code,
                                 const char *param, const char *message)
{
    (void)status; /* it goes in the status line */
    /* the Responses API answers errors in OpenAI's usual envelope, as chat completions does */
    int rc = buf_appends(out, "{\"error\":{\"message\":");
    rc |= dialect_put_str(out, ms_str_c(message ? message : ""));
    rc |= buf_appends(out, ",\"type\":");
    rc |= dialect_put_str(out, ms_str_c(type ? type : "api_error"));
    rc |= buf_appends(out, ",\"code\":");
    rc |= code ? dialect_put_str(out, ms_str_c(code)) : buf_appends(out, "null");
    rc |= buf_appends(out, ",\"param\":");
    rc |= param ? dialect_put_str(out, ms_str_c(param)) : buf_appends(out, "null");
    rc |= buf_appends(out, "}}");
    return rc ? -1 : 0;
}

const dialect dialect_openai_responses = {
    .name = "openai-responses",
    .api = WIRE_OPENAI_RESPONSES,
    .stream_content_type = "text/event-stream",
    .enc_new = enc_new,
    .enc_free = enc_free,
    .event = event,
    .stream_end = stream_end,
    .answer = answer,
};
