/*
 * The Anthropic Messages dialect's encoder (issue 11): normalized events to the named SSE events
 * of Anthropic's streaming Messages API and to one whole `message` object, for clients of
 * `POST /v1/messages` (Claude Code, Anthropic's SDKs) whose model is served by a provider that
 * does not speak Anthropic's API. Formats followed:
 *   - https://docs.claude.com/en/api/messages (the Message object, usage, stop_reason)
 *   - https://platform.claude.com/docs/en/build-with-claude/streaming (message_start,
 *     content_block_start/delta/stop, message_delta, message_stop, error; thinking_delta,
 *     signature_delta, input_json_delta)
 *   - https://docs.claude.com/en/api/errors (error types)
 * and checked against what @anthropic-ai/sdk's MessageStream accumulates (lib/MessageStream.js).
 *
 * Anthropic's stream is a sequence of content blocks, one open at a time, each with its index;
 * OpenAI-style providers interleave freely (reasoning and text in one chunk, several tool calls by
 * index), so this encoder serializes: a block is stopped before the next starts, and a tool call
 * that begins while another call's block is open waits (its arguments held, bounded) until the
 * open block is done. JSON is written straight into the output (no document is built), as in
 * openai_chat.c; strings from providers are escaped on the way in.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/util.h"
#include "dialect/dialect.h"

#define AM_MAX_ANSWER (64u << 20) /* a whole answer's accumulated bytes (as upstream answers) */
#define AM_MAX_BLOCKS 4096        /* a whole answer's content blocks; more is an error */
#define AM_MAX_TOOL_CALLS 128     /* an answer's tool calls; more is an error, not a drop */
#define AM_MAX_HELD (16u << 20)   /* streams: argument bytes held for calls waiting their turn */

/* What goes in a thinking block's signature. Anthropic signs its thinking so that it can be
 * handed back unchanged in the next turn; providers that are not Anthropic sign nothing, and no
 * gateway can make a signature Anthropic would accept. But the signature must be there: Claude
 * Code drops a thinking block that ends without a signature_delta (and with it the answer: see
 * routatic/proxy#51, nielspeter/claude-code-proxy#17), and strict clients reject an empty one
 * (dwgx/WindsurfAPI#228). So a fixed, recognizable marker goes out; it is not a signature. The
 * request side must drop thinking blocks carrying it before a request goes to Anthropic itself
 * (Anthropic would answer 400 "Invalid signature in thinking block"); other providers take the
 * thinking as reasoning text or not at all. */
#define AM_UNSIGNED "modelswitch-unsigned-thinking"

typedef enum { BLK_NONE, BLK_THINKING, BLK_TEXT, BLK_TOOL } blk_kind;

/* Whole answers: one content block. Streams: one tool call (its block, or its wait). */
typedef struct am_part {
    blk_kind kind;
    int index;       /* tool calls: the provider's call index */
    int state;       /* streams: PART_OPEN, PART_HELD or PART_DONE */
    buf_t data;      /* thinking or text; a tool call's arguments */
    buf_t id;        /* tool calls */
    buf_t name;      /* tool calls */
    char gen_id[96]; /* a tool call without an id gets one: Anthropic's tool_use needs one */
} am_part;

enum { PART_OPEN, PART_HELD, PART_DONE };

struct dialect_enc {
    char id[64];
    char model[256];
    /* streams */
    int started;       /* message_start went out */
    blk_kind open;     /* the open block's kind (BLK_NONE: none) */
    size_t open_part;  /* the open tool call's part */
    int nblocks;       /* blocks started: the next one's index */
    size_t held_bytes; /* arguments held for waiting calls */
    /* both */
    int have_usage; /* an EV_USAGE came */
    usage_counts usage;
    int finished;
    ev_finish finish;
    am_part *parts; /* grown on demand: streams keep only tool calls here */
    size_t nparts, parts_cap;
    size_t ntools;
    size_t total; /* whole answers: bytes accumulated */
    int failed;   /* a bound was passed or a call was unknown: the answer cannot be encoded */
};

static dialect_enc *enc_new(const dialect_req *req)
{
    dialect_enc *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    /* msg_ + the request id's hex: unique, and the same id the access log shows */
    const char *rid = req->request_id ? req->request_id : "";
    if (strncmp(rid, "req_", 4) == 0) rid += 4;
    size_t k = 4;
    memcpy(e->id, "msg_", 4);
    while (*rid && k + 1 < sizeof e->id)
        e->id[k++] = *rid++;
    e->id[k] = '\0';
    ms_copy(e->model, sizeof e->model, req->model ? req->model : "");
    /* include_usage is OpenAI's opt-in: Anthropic's stream always carries usage */
    return e;
}

static void enc_free(dialect_enc *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nparts; i++) {
        buf_free(&e->parts[i].data);
        buf_free(&e->parts[i].id);
        buf_free(&e->parts[i].name);
    }
    free(e->parts);
    free(e);
}

/* A new part, or NULL (a bound, or memory). */
static am_part *part_new(dialect_enc *e, blk_kind kind)
{
    if (kind == BLK_TOOL && e->ntools == AM_MAX_TOOL_CALLS) return NULL;
    if (e->nparts == AM_MAX_BLOCKS) return NULL;
    if (e->nparts == e->parts_cap) {
        size_t cap = e->parts_cap ? 2 * e->parts_cap : 4;
        am_part *bigger = realloc(e->parts, cap * sizeof *bigger);
        if (!bigger) return NULL;
        e->parts = bigger;
        e->parts_cap = cap;
    }
    am_part *p = &e->parts[e->nparts++];
    memset(p, 0, sizeof *p);
    p->kind = kind;
    buf_init(&p->data, AM_MAX_ANSWER);
    buf_init(&p->id, 1024);
    buf_init(&p->name, 1024);
    if (kind == BLK_TOOL) e->ntools++;
    return p;
}

/* A tool call's part: the provider's id and name, or an id made from the message's. */
static int tool_part(dialect_enc *e, am_part *p, const ev_event *ev)
{
    p->index = ev->index;
    if (!ev->id.n) /* Gemini's calls have no id; Claude Code pairs each tool_result by it */
        snprintf(p->gen_id, sizeof p->gen_id, "toolu_%s_%zu", e->id + 4, e->ntools - 1);
    int rc = buf_append(&p->id, ev->id.p ? ev->id.p : "", ev->id.n);
    return rc | buf_append(&p->name, ev->name.p ? ev->name.p : "", ev->name.n);
}

static ms_str tool_id(const am_part *p)
{
    return p->id.len ? buf_view(&p->id) : ms_str_c(p->gen_id);
}

/* The latest tool call with this index that is not done, or NULL. */
static am_part *tool_at(dialect_enc *e, int index, int live_only)
{
    for (size_t i = e->nparts; i-- > 0;) {
        am_part *p = &e->parts[i];
        if (p->kind == BLK_TOOL && p->index == index && (!live_only || p->state != PART_DONE))
            return p;
    }
    return NULL;
}

/* Anthropic's names for why the answer ended. A natural end after tool calls is tool_use: some
 * OpenAI-compatible servers say "stop" there, Anthropic always says tool_use. */
static const char *stop_reason(const dialect_enc *e)
{
    switch (e->finish) {
    case EV_FINISH_LENGTH:
        return "max_tokens";
    case EV_FINISH_TOOL_CALLS:
        return "tool_use";
    case EV_FINISH_CONTENT_FILTER:
        return "refusal";
    case EV_FINISH_STOP:
    default:
        return e->ntools ? "tool_use" : "end_turn";
    }
}

/* Anthropic's usage object: input_tokens counts only what was read normally (cache reads and
 * writes have their own fields, unlike OpenAI's prompt_tokens), cache_creation_input_tokens both
 * cache lifetimes together, with the split in cache_creation. */
static int usage_json(buf_t *out, const usage_counts *u, int breakdown, const char *cost)
{
    int rc = buf_appends(out, "{\"input_tokens\":");
    rc |= buf_append_dec(out, u->input);
    rc |= buf_appends(out, ",\"cache_creation_input_tokens\":");
    rc |= buf_append_dec(out, u->cache_write + u->cache_write_1h);
    rc |= buf_appends(out, ",\"cache_read_input_tokens\":");
    rc |= buf_append_dec(out, u->cached_input);
    if (breakdown) {
        rc |= buf_appends(out, ",\"cache_creation\":{\"ephemeral_5m_input_tokens\":");
        rc |= buf_append_dec(out, u->cache_write);
        rc |= buf_appends(out, ",\"ephemeral_1h_input_tokens\":");
        rc |= buf_append_dec(out, u->cache_write_1h);
        rc |= buf_appends(out, "}");
    }
    rc |= buf_appends(out, ",\"output_tokens\":");
    rc |= buf_append_dec(out, u->output);
    if (cost) {
        rc |= buf_appends(out, ",\"cost\":");
        rc |= buf_appends(out, cost);
    }
    return rc | buf_appends(out, "}");
}

/* ---- streams ---- */

/* An event's head, "event: NAME\ndata: {"type":"NAME"", as one append of a constant (the caller
 * adds the rest and sse_close): a translated stream writes one a token, where five appends of
 * strings measured ~180 instructions. */
#define SSE_HEAD(name) "event: " name "\ndata: {\"type\":\"" name "\""
#define SSE_OPEN(out, name) buf_append((out), SSE_HEAD(name), sizeof SSE_HEAD(name) - 1)

/* A block's index: almost always one digit. */
static int put_index(buf_t *out, int64_t i)
{
    if (i >= 0 && i < 10) {
        char d = (char)('0' + i);
        return buf_append(out, &d, 1);
    }
    return buf_append_dec(out, i);
}

static int sse_close(buf_t *out)
{
    return buf_appends(out, "}\n\n");
}

/* message_start: the message with no content yet and the usage known so far.
 *
 * Anthropic's own message_start carries the prompt's input_tokens (it knows them before it
 * generates); an OpenAI-style provider reports usage only at the end, so here they are known
 * only if the provider's usage came first. When they are not, every count is still there, as 0:
 * gateways that send a partial usage object (or none) break Claude Code, which reads
 * message.usage.input_tokens and the cache counts as numbers ("incomplete usage in
 * message_start"). The real counts follow in message_delta, whose input and cache counts the SDK
 * (MessageStream) and Claude Code take as whole-message totals over these. No estimate is sent:
 * a client sees only usage its provider reported (shared/spec/API.md, "Billing"). */
static int message_start(dialect_enc *e, buf_t *out)
{
    e->started = 1;
    usage_counts none = {0};
    const usage_counts *u = e->have_usage ? &e->usage : &none;
    usage_counts start = *u;
    start.output = 0; /* nothing generated yet; the total goes in message_delta */
    int rc = SSE_OPEN(out, "message_start");
    rc |= buf_appends(out, ",\"message\":{\"id\":\"");
    rc |= buf_appends(out, e->id);
    rc |= buf_appends(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc |= dialect_put_str(out, ms_str_c(e->model));
    rc |= buf_appends(out, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                           "\"usage\":");
    rc |= usage_json(out, &start, 1, NULL);
    rc |= buf_appends(out, "}");
    return rc | sse_close(out);
}

static int block_start_tool(dialect_enc *e, am_part *p, buf_t *out)
{
    int rc = SSE_OPEN(out, "content_block_start");
    rc |= buf_appends(out, ",\"index\":");
    rc |= put_index(out, e->nblocks++);
    rc |= buf_appends(out, ",\"content_block\":{\"type\":\"tool_use\",\"id\":");
    rc |= dialect_put_str(out, tool_id(p));
    rc |= buf_appends(out, ",\"name\":");
    rc |= dialect_put_str(out, buf_view(&p->name));
    rc |= buf_appends(out, ",\"input\":{}}");
    return rc | sse_close(out);
}

/* A content_block_delta of the open block: {"type":"<type>","<field>":"<value>"}. */
/* A delta's kind, what goes between the index and the value: DELTA("text_delta", "text"). */
#define DELTA(type, field) MS_STR_LIT(",\"delta\":{\"type\":\"" type "\",\"" field "\":")

/* block_delta of a text that needs no escaping (ev_event.plain) in a block of a one-digit index,
 * a translated stream's usual event: one reservation, the parts copied in. Kept apart from
 * block_delta: that one with dialect_put_plain measured ~86 instructions an event more
 * (callgrind, the translated 50-event stream's worker 127,385 → 131,708). */
static int block_delta_plain(dialect_enc *e, buf_t *out, ms_str kind, ms_str value)
{
    static const char head[] = SSE_HEAD("content_block_delta") ",\"index\":";
    const size_t hl = sizeof head - 1;
    if (value.n > SIZE_MAX / 2 || buf_reserve(out, hl + 1 + kind.n + value.n + 6) != 0) return -1;
    char *o = out->data + out->len;
    memcpy(o, head, hl);
    o += hl;
    *o++ = (char)('0' + (e->nblocks - 1));
    memcpy(o, kind.p, kind.n);
    o += kind.n;
    *o++ = '"';
    memcpy(o, value.p, value.n);
    o += value.n;
    memcpy(o, "\"}}\n\n", 5);
    out->len = (size_t)(o + 5 - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int block_delta(dialect_enc *e, buf_t *out, ms_str kind, ms_str value)
{
    static const char head[] = SSE_HEAD("content_block_delta") ",\"index\":";
    int rc = buf_append(out, head, sizeof head - 1);
    rc |= put_index(out, e->nblocks - 1);
    rc |= buf_append(out, kind.p, kind.n);
    rc |= dialect_put_str(out, value);
    return rc | buf_append(out, "}}\n\n", 4);
}

static int block_stop(dialect_enc *e, buf_t *out)
{
    int rc = SSE_OPEN(out, "content_block_stop");
    rc |= buf_appends(out, ",\"index\":");
    rc |= put_index(out, e->nblocks - 1);
    return rc | sse_close(out);
}

/* Stops the open block (a thinking block gets its signature first), then gives each tool call
 * that waited its whole block, in the order the calls began. After this no block is open and no
 * call waits; a call that is done takes no more arguments. */
static int settle(dialect_enc *e, buf_t *out)
{
    int rc = 0;
    if (e->open == BLK_THINKING)
        rc |= block_delta(e, out, DELTA("signature_delta", "signature"), MS_STR_LIT(AM_UNSIGNED));
    if (e->open != BLK_NONE) rc |= block_stop(e, out);
    if (e->open == BLK_TOOL) e->parts[e->open_part].state = PART_DONE;
    e->open = BLK_NONE;
    for (size_t i = 0; i < e->nparts; i++) {
        am_part *p = &e->parts[i];
        if (p->kind != BLK_TOOL || p->state != PART_HELD) continue;
        rc |= block_start_tool(e, p, out);
        if (p->data.len)
            rc |=
                block_delta(e, out, DELTA("input_json_delta", "partial_json"), buf_view(&p->data));
        rc |= block_stop(e, out);
        p->state = PART_DONE;
        e->held_bytes -= p->data.len;
        buf_free(&p->data); /* sent: only the index is still needed */
    }
    return rc;
}

/* A text or thinking delta: into the open block of its kind, or a new one. Empty deltas (an
 * OpenAI role chunk's content "") make no block: Anthropic never sends an empty one. */
static int text_delta(dialect_enc *e, blk_kind kind, const ev_event *ev, buf_t *out)
{
    ms_str text = ev->text;
    if (!text.n) return 0;
    if (e->open == kind && ev->plain && e->nblocks >= 1 && e->nblocks <= 10)
        return block_delta_plain(e, out,
                                 kind == BLK_THINKING ? DELTA("thinking_delta", "thinking")
                                                      : DELTA("text_delta", "text"),
                                 text);
    int rc = 0;
    if (e->open != kind) {
        rc |= settle(e, out);
        rc |= SSE_OPEN(out, "content_block_start");
        rc |= buf_appends(out, ",\"index\":");
        rc |= put_index(out, e->nblocks++);
        rc |= buf_appends(out, ",\"content_block\":");
        rc |= buf_appends(out, kind == BLK_THINKING ? "{\"type\":\"thinking\",\"thinking\":\"\"}"
                                                    : "{\"type\":\"text\",\"text\":\"\"}");
        rc |= sse_close(out);
        e->open = kind;
    }
    return rc |
           (kind == BLK_THINKING ? block_delta(e, out, DELTA("thinking_delta", "thinking"), text)
                                 : block_delta(e, out, DELTA("text_delta", "text"), text));
}

static int tool_start(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    if (tool_at(e, ev->index, 1)) return 0; /* announced again: one call */
    am_part *p = part_new(e, BLK_TOOL);
    if (!p) return -1;
    /* held calls keep their arguments until their turn; the open one streams them */
    buf_init(&p->data, AM_MAX_HELD);
    if (tool_part(e, p, ev) != 0) return -1;
    if (e->open == BLK_TOOL) {
        /* another call's block is open and may still get arguments (OpenAI interleaves
         * parallel calls by index): this one waits */
        p->state = PART_HELD;
        return 0;
    }
    int rc = settle(e, out);
    p->state = PART_OPEN;
    e->open = BLK_TOOL;
    e->open_part = (size_t)(p - e->parts);
    return rc | block_start_tool(e, p, out);
}

static int tool_args(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    /* arguments for a call that never began, or whose block is already stopped (text came
     * between, or it waited and was sent): they cannot be placed, so the stream fails rather
     * than give the client a call with arguments missing */
    am_part *p = tool_at(e, ev->index, 1);
    if (!p) return -1;
    if (!ev->text.n) return 0;
    if (p->state == PART_OPEN)
        return block_delta(e, out, DELTA("input_json_delta", "partial_json"), ev->text);
    if (e->held_bytes + ev->text.n > AM_MAX_HELD) return -1;
    if (buf_append(&p->data, ev->text.p, ev->text.n) != 0) return -1;
    e->held_bytes += ev->text.n;
    return 0;
}

static int stream_event(dialect_enc *e, const ev_event *ev, buf_t *out)
{
    if (ev->type == EV_USAGE) { /* kept first: message_start shows it if it came first */
        e->have_usage = 1;
        e->usage = ev->usage;
    }
    int rc = e->started ? 0 : message_start(e, out);
    switch (ev->type) {
    case EV_TEXT:
        return rc | text_delta(e, BLK_TEXT, ev, out);
    case EV_REASONING:
        return rc | text_delta(e, BLK_THINKING, ev, out);
    case EV_TOOL_START:
        return rc | tool_start(e, ev, out);
    case EV_TOOL_ARGS:
        return rc | tool_args(e, ev, out);
    case EV_FINISH:
        /* recorded for message_delta: arguments of a waiting call may still come after it */
        e->finished = 1;
        e->finish = ev->finish;
        return rc;
    default:
        return rc; /* EV_START: message_start is all; EV_USAGE: kept for the end */
    }
}

/* Anthropic's error type for the contract's error. Anthropic has no 502 or 503 type: a provider
 * that failed is api_error (Anthropic's 500, "an unexpected error"); a model with no deployment
 * available, or a draining gateway, is overloaded_error (529: temporary, retry later, which is
 * what Claude Code does with it); an upstream timeout is timeout_error (504, in the SDK's
 * ErrorType). The 4xx keep their category; a bad key is authentication_error, as the contract's
 * Anthropic envelope shows. */
static const char *anthropic_error_type(const dialect_error *err)
{
    const char *t = err->type ? err->type : "", *c = err->code ? err->code : "";
    if (strcmp(c, "invalid_api_key") == 0) return "authentication_error";
    if (strcmp(c, "request_too_large") == 0) return "request_too_large";
    static const char *const same[] = {
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
        "rate_limit_error",      "timeout_error",        "api_error"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (strcmp(t, same[i]) == 0) return same[i];
    if (strcmp(t, "service_unavailable_error") == 0) return "overloaded_error";
    return "api_error"; /* upstream_error, and anything new */
}

/* Anthropic's in-band error, in the contract's envelope for this dialect (type, message, and
 * the contract's code and param, which the SDKs ignore: shared/spec/API.md). */
static int error_event(const dialect_error *err, buf_t *out)
{
    int rc = SSE_OPEN(out, "error");
    rc |= buf_appends(out, ",\"error\":{\"type\":\"");
    rc |= buf_appends(out, anthropic_error_type(err));
    rc |= buf_appends(out, "\",\"message\":");
    rc |= dialect_put_str(out, ms_str_c(err->message ? err->message : ""));
    rc |= buf_appends(out, ",\"code\":");
    rc |= dialect_put_str(out, ms_str_c(err->code ? err->code : ""));
    rc |= buf_appends(out, ",\"param\":null}");
    return rc | sse_close(out);
}

int dialect_anthropic_error_body(buf_t *out, int status, const char *type, const char *code,
                                 const char *param, const char *message)
{
    (void)status; /* the type carries the category; the status goes in the status line */
    dialect_error err = {code, type, message};
    int rc = buf_appends(out, "{\"type\":\"error\",\"error\":{\"type\":\"");
    rc |= buf_appends(out, anthropic_error_type(&err));
    rc |= buf_appends(out, "\",\"message\":");
    rc |= dialect_put_str(out, ms_str_c(message ? message : ""));
    rc |= buf_appends(out, ",\"code\":");
    rc |= dialect_put_str(out, ms_str_c(code ? code : ""));
    rc |= buf_appends(out, ",\"param\":");
    rc |= param ? dialect_put_str(out, ms_str_c(param)) : buf_appends(out, "null");
    rc |= buf_appends(out, "}}");
    return rc ? -1 : 0;
}

/* The end of a stream.
 *
 * Translated answers: the open block is stopped and any waiting tool calls sent, then
 * message_delta with the stop reason and the final usage (always: the SDK reads its
 * output_tokens), message_stop. The usage is u (what the provider reported), else the last
 * EV_USAGE, else zeros (unknown, and never estimated). Every count is in it, the input ones too,
 * so a client whose message_start said 0 gets the real ones (the SDK's MessageStream overwrites
 * its counts with these). The 5-minute/1-hour split (cache_creation) is only in message_start:
 * Anthropic's message_delta has no field for it, so when the usage came last a streaming client
 * sees the cache-write total but not its split. The gateway's cost goes inside that
 * usage object as "cost", as OpenAI clients get it in theirs: the SDKs ignore a field they do not
 * know, and a client that wants it can read it off the raw event.
 *
 * With err, the error event ends the stream, as Anthropic's does mid-stream: no block stop, no
 * message_delta, no message_stop after it (the SDK throws on the error event anyway).
 *
 * upstream_usage (pass-through, when the provider speaks Anthropic's API and its events went to
 * the client as they came): the provider's own message_delta data, held back, goes out with the
 * cost spliced into its usage; nothing was encoded here, so no message_start nor block events. */
static int stream_end(dialect_enc *e, const usage_counts *u, ms_str upstream_usage,
                      const char *cost, const dialect_error *err, buf_t *out)
{
    int rc = 0;
    const char *c = cost && cost[0] ? cost : "0";
    if (upstream_usage.n) {
        rc |= buf_appends(out, "event: message_delta\ndata: ");
        size_t mark = out->len;
        if (dialect_splice_cost(out, upstream_usage, c) != 0) {
            out->len = mark; /* not an object with usage after all: as it came */
            rc |= buf_append(out, upstream_usage.p, upstream_usage.n);
        }
        rc |= buf_appends(out, "\n\n");
    } else if (!err) {
        if (!e->started) rc |= message_start(e, out);
        rc |= settle(e, out);
        usage_counts none = {0};
        const usage_counts *fin = u ? u : e->have_usage ? &e->usage : &none;
        rc |= SSE_OPEN(out, "message_delta");
        rc |= buf_appends(out, ",\"delta\":{\"stop_reason\":\"");
        rc |= buf_appends(out, stop_reason(e));
        rc |= buf_appends(out, "\",\"stop_sequence\":null},\"usage\":");
        rc |= usage_json(out, fin, 0, c);
        rc |= sse_close(out);
    }
    if (err) return rc | error_event(err, out);
    rc |= SSE_OPEN(out, "message_stop");
    return rc | sse_close(out);
}

/* ---- whole answers ---- */

static int accumulate_text(dialect_enc *e, blk_kind kind, ms_str text)
{
    if (!text.n) return 0;
    if (e->total + text.n > AM_MAX_ANSWER) return -1;
    am_part *last = e->nparts ? &e->parts[e->nparts - 1] : NULL;
    am_part *p = last && last->kind == kind ? last : part_new(e, kind);
    if (!p || buf_append(&p->data, text.p, text.n) != 0) return -1;
    e->total += text.n;
    return 0;
}

static int accumulate(dialect_enc *e, const ev_event *ev)
{
    switch (ev->type) {
    case EV_TEXT:
        return accumulate_text(e, BLK_TEXT, ev->text);
    case EV_REASONING:
        return accumulate_text(e, BLK_THINKING, ev->text);
    case EV_TOOL_START: {
        if (tool_at(e, ev->index, 0)) return 0;
        am_part *p = part_new(e, BLK_TOOL);
        return p ? tool_part(e, p, ev) : -1;
    }
    case EV_TOOL_ARGS: {
        am_part *p = tool_at(e, ev->index, 0);
        if (!p || e->total + ev->text.n > AM_MAX_ANSWER) return -1;
        if (buf_append(&p->data, ev->text.p ? ev->text.p : "", ev->text.n) != 0) return -1;
        e->total += ev->text.n;
        return 0;
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

/* A tool_use block's input: the call's arguments, which must be one JSON object (none at all is
 * {}). Anthropic's input is always an object; arguments that are not (the provider's model wrote
 * broken JSON) cannot be shown as one without inventing or dropping what the model asked for,
 * so the answer fails: the engine's 502, "an invalid response", which the gateway may retry
 * elsewhere. (A stream cannot check: its arguments go out as they come, and the SDK's partial
 * JSON parser fails on them the same way.) */
static int tool_input(buf_t *out, const buf_t *args)
{
    size_t i = 0;
    while (i < args->len && strchr(" \t\r\n", args->data[i]))
        i++;
    if (i == args->len) return buf_appends(out, "{}");
    if (jscan_object(args->data, args->len, NULL, 0, NULL) < 0) return -1;
    return buf_append(out, args->data + i, args->len - i);
}

static int answer(dialect_enc *e, const usage_counts *u, buf_t *out)
{
    if (e->failed) return -1;
    int rc = buf_appends(out, "{\"id\":\"");
    rc |= buf_appends(out, e->id);
    rc |= buf_appends(out, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc |= dialect_put_str(out, ms_str_c(e->model));
    rc |= buf_appends(out, ",\"content\":[");
    for (size_t i = 0; i < e->nparts; i++) {
        am_part *p = &e->parts[i];
        if (i) rc |= buf_appends(out, ",");
        switch (p->kind) {
        case BLK_THINKING:
            rc |= buf_appends(out, "{\"type\":\"thinking\",\"thinking\":");
            rc |= dialect_put_str(out, buf_view(&p->data));
            rc |= buf_appends(out, ",\"signature\":\"" AM_UNSIGNED "\"}");
            break;
        case BLK_TEXT:
            rc |= buf_appends(out, "{\"type\":\"text\",\"text\":");
            rc |= dialect_put_str(out, buf_view(&p->data));
            rc |= buf_appends(out, "}");
            break;
        default:
            rc |= buf_appends(out, "{\"type\":\"tool_use\",\"id\":");
            rc |= dialect_put_str(out, tool_id(p));
            rc |= buf_appends(out, ",\"name\":");
            rc |= dialect_put_str(out, buf_view(&p->name));
            rc |= buf_appends(out, ",\"input\":");
            if (tool_input(out, &p->data) != 0) return -1;
            rc |= buf_appends(out, "}");
            break;
        }
    }
    rc |= buf_appends(out, "],\"stop_reason\":\"");
    rc |= buf_appends(out, stop_reason(e));
    rc |= buf_appends(out, "\",\"stop_sequence\":null,\"usage\":");
    usage_counts none = {0};
    rc |= usage_json(out, u ? u : e->have_usage ? &e->usage : &none, 1, NULL);
    rc |= buf_appends(out, "}");
    return rc ? -1 : 0;
}

const dialect dialect_anthropic_messages = {
    .name = "anthropic-messages",
    .api = WIRE_ANTHROPIC_MESSAGES,
    .stream_content_type = "text/event-stream",
    .enc_new = enc_new,
    .enc_free = enc_free,
    .event = event,
    .stream_end = stream_end,
    .answer = answer,
};
