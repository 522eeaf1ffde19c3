/*
 * libFuzzer target for everything that parses a client's or a provider's bytes beyond the JSON
 * scanner and the SSE parser: the OpenAI dialect's request parser, the translating adapters'
 * request builders (a client body rewritten for Anthropic and Gemini), their decoders of whole
 * answers and of stream events (fed through the real SSE parser), the OpenAI adapter's decoders
 * (OpenAI answers and chunks into events, for clients of other APIs), the OpenAI chat encoder
 * their events end up in, and the Responses adapter's pass-through (a provider's response object
 * or typed stream, then what ends the client's stream: the held terminal event with the cost, or
 * the stand-in of a cut, through the Responses dialect), and the OpenAI and Anthropic adapters'
 * pass-through of a stream, read by the parser alone and the way the engine reads it (runs of
 * events of the learned shape past the parser, stream_len), which must forward, hold back and
 * count alike (OpenAI's events are also decided with the transfer's state and without), and
 * OpenAI and Anthropic streams and Gemini's answers and streams decoded with the decoders'
 * shortcuts (the usual chunk or response scanned, the stream's shape, a run of events of the
 * shape decoded past the parser: decode_len) and without, which must send the client the same
 * bytes and count the same usage. The input's first byte picks what to
 * drive (modulo 11: 0-5 as they always were, 6/7 an OpenAI answer whole/streamed, 8/9 a Responses
 * answer whole/streamed, 10 a stream passed through, as OpenAI's and as Anthropic's); the rest
 * is the document.
 *
 * What is checked is memory safety and bounds (ASan/UBSan), no leak, and that a whole answer
 * that decodes encodes to valid JSON (jscan): a malformed upstream must become a clean error,
 * never a crash or a broken answer to the client.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/jscan.h"
#include "common/sse.h"
#include "dialect/dialect.h"
#include "providers/gemini_decode.h"
#include "providers/provider.h"

#define MUST(c)                                                                                    \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static cfg_provider g_prov[3] = {
    {.name = (char *)"anth",
     .kind = PROV_ANTHROPIC,
     .base_url = (char *)"http://a.example",
     .api_key = (char *)"k",
     .enabled = 1},
    {.name = (char *)"gem",
     .kind = PROV_GEMINI,
     .base_url = (char *)"http://g.example",
     .api_key = (char *)"k",
     .enabled = 1},
    {.name = (char *)"oai",
     .kind = PROV_OPENAI,
     .base_url = (char *)"http://o.example",
     .api_key = (char *)"k",
     .enabled = 1},
};
static cfg_deployment g_dep[3] = {{.provider = &g_prov[0], .model = (char *)"up", .weight = 1},
                                  {.provider = &g_prov[1], .model = (char *)"up", .weight = 1},
                                  {.provider = &g_prov[2], .model = (char *)"up", .weight = 1}};
static cfg_model g_model[3] = {{.name = (char *)"m", .deployments = &g_dep[0], .ndeployments = 1},
                               {.name = (char *)"m", .deployments = &g_dep[1], .ndeployments = 1},
                               {.name = (char *)"m", .deployments = &g_dep[2], .ndeployments = 1}};
static cfg_t g_cfg = {.models = g_model, .nmodels = 1, .default_max_output_tokens = 64};

static int sink_emit(void *ctx, const ev_event *ev)
{
    buf_t *out = ((void **)ctx)[1];
    return dialect_openai_chat.event(((void **)ctx)[0], ev, out);
}

typedef struct stream_ctx {
    const prov_adapter *ad;
    void *st;
    prov_call *call;
    ev_sink *sink;
    prov_usage usage;
} stream_ctx;

static int on_event(void *ud, const sse_event *ev)
{
    stream_ctx *s = ud;
    int done = 0, error = 0;
    char err[256];
    err[0] = '\0';
    int rc =
        s->ad->decode_event(s->st, s->call, ev, s->sink, &s->usage, &done, &error, err, sizeof err);
    return rc < 0 || error || done;
}

/* proxy.c's take_decoded: a run of events the adapter decodes by the stream's shape
 * (decode_len), past the parser, each looked for in at most max_event bytes. With the decoders'
 * shortcuts off, decode_len takes nothing. */
static size_t take_ev(void *ud, const char *p, size_t n, size_t max_event, int *stop)
{
    stream_ctx *s = ud;
    size_t run = 0, k;
    int failed = 0;
    while (run < n && !failed &&
           (k = s->ad->decode_len(s->st, p + run, n - run < max_event ? n - run : max_event,
                                  s->sink, &s->usage, &failed)) != 0) {
        MUST(k <= n - run && p[run + k - 1] == '\n');
        run += k;
    }
    *stop = failed;
    return run;
}

/* One build of call by ad: its code, its body (kept in *body, the caller frees it) and, for
 * Gemini, the answer's turn. */
static int build_once(const prov_adapter *ad, prov_call *call, buf_t *body, int *turn)
{
    void *st = ad->state_size ? calloc(1, ad->state_size) : NULL;
    if (ad->reset) ad->reset(st, call);
    prov_upreq u;
    memset(&u, 0, sizeof u);
    prov_refusal pr;
    memset(&pr, 0, sizeof pr);
    int rc = ad->build(call, st, &u, &pr);
    MUST(rc == 0 || rc == -1 || (rc == -2 && pr.status >= 400));
    buf_init(body, 0);
    if (rc == 0) {
        for (size_t i = 0; i < u.niov; i++) {
            MUST(u.iov[i].base != NULL || u.iov[i].len == 0);
            MUST(buf_append(body, u.iov[i].base, u.iov[i].len) == 0);
        }
    }
    *turn = ad == &prov_gemini ? ((gem_state *)st)->turn : 0;
    prov_upreq_free(&u);
    if (ad->release) ad->release(st);
    free(st);
    return rc;
}

/* A client body through the parser and, when it is a chat request, the adapter's builder,
 * twice: the usual requests written token by token and by the tree (gemini.c and anthropic.c,
 * gemini_build_fast and anthropic_build_fast): the same code, bytes and (Gemini) turn. */
extern int gemini_build_fast;
extern int anthropic_build_fast;
static void drive_request(const prov_adapter *ad, int which, const char *p, size_t n)
{
    prov_call *call = malloc(sizeof *call);
    call->body = (ms_str){p, n};
    memcpy(call->request_id, "req_f", 6);
    dialect_refusal why;
    char shown[256];
    int ep = n && (p[0] & 1) ? EP_EMBEDDINGS : EP_CHAT;
    g_cfg.models = &g_model[which];
    if (dialect_openai_parse(&g_cfg, ep, call, shown, sizeof shown, &why) == 0) {
        MUST(call->model == &g_model[which]);
        call->dep = &g_dep[which];
        call->output_bound = 64;
        buf_t fast, tree;
        int turn_fast, turn_tree;
        int rc = build_once(ad, call, &fast, &turn_fast);
        int *sw = ad == &prov_gemini ? &gemini_build_fast : &anthropic_build_fast;
        {
            *sw = 0;
            int rc_tree = build_once(ad, call, &tree, &turn_tree);
            *sw = 1;
            MUST(rc == rc_tree);
            MUST(fast.len == tree.len &&
                 (!fast.len || memcmp(fast.data, tree.data, fast.len) == 0));
            MUST(rc != 0 || turn_fast == turn_tree);
            buf_free(&tree);
        }
        buf_free(&fast);
    }
    free(call);
}

/* A provider's answer: whole, then as a stream, into the OpenAI encoder; keep (when not NULL)
 * gets what the client was sent and the usage counted. */
static void drive_answer_kept(const prov_adapter *ad, int which, int stream, const char *p,
                              size_t n, buf_t *keep, prov_usage *ukeep)
{
    static char body[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    prov_call *call = calloc(1, sizeof *call);
    call->body = ms_str_c(body);
    call->dialect = &dialect_openai_chat;
    call->ep = EP_CHAT;
    call->model = &g_model[which];
    call->dep = &g_dep[which];
    call->max_tokens = -1;
    call->stream = stream;
    int nm = jscan_object(body, strlen(body), call->members, PROV_MAX_MEMBERS, NULL);
    call->nmembers = (size_t)nm;
    dialect_req dr = {.model = "m", .request_id = "req_f", .created = 1, .include_usage = 1};
    dialect_enc *enc = dialect_openai_chat.enc_new(&dr);
    buf_t out;
    buf_init(&out, 1u << 24);
    void *ctx[2] = {enc, stream ? &out : NULL};
    ev_sink sink = {sink_emit, ctx};
    void *st = ad->state_size ? calloc(1, ad->state_size) : NULL;
    if (ad->reset) ad->reset(st, call);
    prov_usage usage = {0};
    char err[256];
    if (!stream) {
        if (ad->decode_answer(st, call, (ms_str){p, n}, &sink, &usage, err, sizeof err) == 0 &&
            dialect_openai_chat.answer(enc, &usage.u, &out) == 0) {
            /* a decoded answer is always a valid document for the client */
            MUST(jscan_object(out.data, out.len, NULL, 0, NULL) >= 0);
        }
    } else {
        stream_ctx sc = {ad, st, call, &sink, {0}};
        sse_parser sp;
        sse_init(&sp, 1u << 20, on_event, &sc);
        if (ad->decode_len) sse_set_take(&sp, take_ev);
        /* in two reads, cut where the input's length says: events taken whole or left to the
         * parser across the cut */
        size_t cut = n * 5 / 8;
        if (sse_feed(&sp, p, cut) == 0) (void)sse_feed(&sp, p + cut, n - cut);
        sse_free(&sp);
        usage = sc.usage;
        dialect_error de = {"provider_error", "upstream_error", "x"};
        (void)dialect_openai_chat.stream_end(enc, usage.known ? &usage.u : NULL, (ms_str){0}, "0",
                                             &de, &out);
    }
    MUST(usage.u.input >= 0 && usage.u.output >= 0 && usage.u.cached_input >= 0);
    if (keep) {
        MUST(buf_append(keep, out.data, out.len) == 0);
        *ukeep = usage;
    }
    if (ad->release) ad->release(st);
    free(st);
    buf_free(&out);
    dialect_openai_chat.enc_free(enc);
    free(call);
}

/* The decoders' switches between their shortcuts (the OpenAI one's scan of the usual chunk and
 * shape, the Anthropic one's shape and scan of the usual whole answer) and their full paths
 * (tests only). */
extern int openai_dec_fast_chunks;
extern int anthropic_dec_shapes;
extern int gemini_dec_fast;
extern int anthropic_dec_answer_fast;

/* An answer, whole or streamed, decoded with the adapter's shortcuts and without (*sw 0): the
 * client must be sent the same bytes and the same usage counted. */
static void drive_both(const prov_adapter *ad, int which, int stream, int *sw, const char *p,
                       size_t n)
{
    buf_t a, b;
    prov_usage ua, ub;
    buf_init(&a, 0);
    buf_init(&b, 0);
    drive_answer_kept(ad, which, stream, p, n, &a, &ua);
    *sw = 0;
    drive_answer_kept(ad, which, stream, p, n, &b, &ub);
    *sw = 1;
    MUST(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    MUST(memcmp(&ua, &ub, sizeof ua) == 0);
    buf_free(&a);
    buf_free(&b);
}

typedef struct rsp_ctx {
    prov_call *call;
    void *st;
    prov_usage usage;
    buf_t out, held;
    int done, stop;
} rsp_ctx;

static int on_rsp_event(void *ud, const sse_event *ev)
{
    rsp_ctx *r = ud;
    int done = 0, error = 0, usage_chunk = 0;
    char err[256];
    buf_reset(&r->out);
    int rc = prov_openai_responses.stream_event(r->st, r->call, ev, &r->out, &r->usage, &done,
                                                &error, &usage_chunk, err, sizeof err);
    MUST(rc >= -1 && rc <= 2);
    if (usage_chunk) {
        buf_reset(&r->held);
        MUST(buf_append(&r->held, r->out.data, r->out.len) == 0);
    }
    r->done = done;
    return rc < 0 || error || done;
}

/* An OpenAI stream passed through: the shape's fast path against the full one, event by event. */
typedef struct oai_twin {
    prov_call *call;
    void *st;
    prov_usage usage[2];
    buf_t out[2];
    buf_t log; /* every event's raw bytes and data, in order (the engine's two ways compared) */
} oai_twin;

static void oai_log(oai_twin *t, const sse_event *ev, int rc)
{
    char sep[2] = {(char)rc, '|'};
    (void)buf_append(&t->log, ev->raw.p, ev->raw.n);
    (void)buf_append(&t->log, sep, 2);
    (void)buf_append(&t->log, ev->data.p, ev->data.n);
    (void)buf_append(&t->log, sep, 2);
}

static int on_oai_event(void *ud, const sse_event *ev)
{
    oai_twin *t = ud;
    int rc[2], done[2] = {0, 0}, error[2] = {0, 0}, held[2] = {0, 0};
    char err[2][256];
    for (int s = 0; s < 2; s++) {
        buf_reset(&t->out[s]);
        rc[s] = prov_openai.stream_event(s ? NULL : t->st, t->call, ev, &t->out[s], &t->usage[s],
                                         &done[s], &error[s], &held[s], err[s], sizeof err[s]);
    }
    MUST(rc[0] == rc[1] && done[0] == done[1] && error[0] == error[1] && held[0] == held[1]);
    MUST(t->usage[0].streamed_bytes == t->usage[1].streamed_bytes);
    MUST(t->usage[0].known == t->usage[1].known);
    MUST(memcmp(&t->usage[0].u, &t->usage[1].u, sizeof t->usage[0].u) == 0);
    MUST(t->out[0].len == t->out[1].len &&
         (t->out[0].len == 0 || memcmp(t->out[0].data, t->out[1].data, t->out[0].len) == 0));
    oai_log(t, ev, rc[0]);
    return 0; /* on to the next event whatever it was: the state must survive anything */
}

/* proxy.c's sse_take for the twin's state: a run of events prov_openai.stream_len knows whole,
 * each one the stateless full path must forward as it is with the text bytes stream_len gave
 * (the engine writes the run without asking stream_event), logged as the parser's would be. */
static size_t oai_take(void *ud, const char *d, size_t m, size_t max_event, int *stop)
{
    oai_twin *t = ud;
    size_t run = 0, k;
    int64_t bytes;
    (void)stop;
    while (run < m && (k = prov_openai.stream_len(t->st, d + run, m - run, &bytes)) != 0 &&
           k <= max_event) {
        const char *e = d + run;
        MUST(k <= m - run && k >= 8 && e[k - 1] == '\n' && e[k - 2] == '\n');
        sse_event ev = {{e, k}, {"", 0}, {e + 6, k - 8}, {"", 0}};
        int done = 0, error = 0, held = 0;
        char err[256];
        buf_reset(&t->out[1]);
        int rc = prov_openai.stream_event(NULL, t->call, &ev, &t->out[1], &t->usage[1], &done,
                                          &error, &held, err, sizeof err);
        t->usage[0].streamed_bytes += bytes;
        MUST(rc == 1 && !done && !error && !held && t->out[1].len == 0);
        MUST(t->usage[0].streamed_bytes == t->usage[1].streamed_bytes);
        oai_log(t, &ev, rc);
        run += k;
    }
    return run;
}

/* A streamed call and an adapter's fresh per-transfer state for it, as the engine makes them. */
static void *stream_state(const prov_adapter *ad, prov_call **call)
{
    *call = calloc(1, sizeof **call);
    (*call)->stream = 1;
    void *st = calloc(1, ad->state_size);
    ad->reset(st, *call);
    return st;
}

/* Feeds p[0..n) in pieces cut where its own bytes say, until *stopped (NULL: never). */
static void feed_pieces(sse_parser *sp, const char *p, size_t n, const int *stopped)
{
    size_t at = 0;
    while (at < n && !(stopped && *stopped)) {
        size_t piece = n - at;
        if (n > 1 && (unsigned char)p[at] % 7 == 0) piece = 1 + (unsigned char)p[n - 1] % piece;
        (void)sse_feed(sp, p + at, piece);
        at += piece;
    }
}

/* The input in pieces (cut where its own bytes say), through the parser alone (fast 0) or the
 * way the engine reads a pass-through stream (fast 1: runs of events prov_openai.stream_len
 * knows whole go past the parser and stream_event, proxy.c sse_take). */
static void oai_pass(oai_twin *t, const char *p, size_t n, int fast)
{
    memset(t, 0, sizeof *t);
    t->st = stream_state(&prov_openai, &t->call);
    buf_init(&t->out[0], 1u << 24);
    buf_init(&t->out[1], 1u << 24);
    buf_init(&t->log, 0);
    sse_parser sp;
    sse_init(&sp, 1u << 20, on_oai_event, t);
    if (fast) sse_set_take(&sp, oai_take);
    feed_pieces(&sp, p, n, NULL);
    sse_free(&sp);
}

static void oai_close(oai_twin *t)
{
    prov_openai.release(t->st);
    free(t->st);
    free(t->call);
    buf_free(&t->out[0]);
    buf_free(&t->out[1]);
    buf_free(&t->log);
}

static void drive_openai_passthrough(const char *p, size_t n)
{
    oai_twin a, b;
    oai_pass(&a, p, n, 0);
    oai_pass(&b, p, n, 1);
    /* the same events, decided the same, whichever way they were read */
    MUST(a.log.len == b.log.len &&
         (a.log.len == 0 || memcmp(a.log.data, b.log.data, a.log.len) == 0));
    MUST(a.usage[0].streamed_bytes == b.usage[0].streamed_bytes);
    oai_close(&a);
    oai_close(&b);
}

/* An Anthropic stream passed through, read the same two ways: what the client would get (each
 * forwarded raw, the held usage event, the end or failure, marked) and what was counted. */
typedef struct ant_twin {
    prov_call *call;
    void *st;
    prov_usage usage;
    buf_t out, log;
    int stopped;
} ant_twin;

static void ant_note(ant_twin *t, char mark, const char *p, size_t n)
{
    (void)buf_append(&t->log, &mark, 1);
    (void)buf_append(&t->log, p, n);
}

static int on_ant_event(void *ud, const sse_event *ev)
{
    ant_twin *t = ud;
    int done = 0, error = 0, held = 0;
    char err[256] = "";
    buf_reset(&t->out);
    int rc = prov_anthropic.stream_event(t->st, t->call, ev, &t->out, &t->usage, &done, &error,
                                         &held, err, sizeof err);
    MUST(rc >= -1 && rc <= 2);
    if (rc < 0) {
        ant_note(t, 'X', err, strlen(err));
        t->stopped = 1;
        return 1;
    }
    if (held) ant_note(t, 'U', t->out.data, t->out.len);
    if (rc == 2) ant_note(t, 'R', ev->raw.p, ev->raw.n);
    if (done || error) {
        ant_note(t, error ? 'E' : 'D', err, strlen(err));
        t->stopped = 1;
        return 1;
    }
    return 0;
}

/* proxy.c's sse_take for the Anthropic twin. */
static size_t ant_take(void *ud, const char *d, size_t m, size_t max_event, int *stop)
{
    ant_twin *t = ud;
    size_t run = 0, k;
    int64_t bytes;
    (void)stop;
    while (run < m && (k = prov_anthropic.stream_len(t->st, d + run, m - run, &bytes)) != 0 &&
           k <= max_event) {
        MUST(k <= m - run && d[run + k - 1] == '\n' && d[run + k - 2] == '\n' && bytes >= 0);
        t->usage.streamed_bytes += bytes;
        ant_note(t, 'R', d + run, k);
        run += k;
    }
    return run;
}

static void ant_pass(ant_twin *t, const char *p, size_t n, int fast)
{
    memset(t, 0, sizeof *t);
    t->st = stream_state(&prov_anthropic, &t->call);
    buf_init(&t->out, 1u << 24);
    buf_init(&t->log, 0);
    sse_parser sp;
    sse_init(&sp, 1u << 20, on_ant_event, t);
    if (fast) sse_set_take(&sp, ant_take);
    feed_pieces(&sp, p, n, &t->stopped);
    sse_free(&sp);
}

static void drive_anthropic_passthrough(const char *p, size_t n)
{
    ant_twin a, b;
    ant_pass(&a, p, n, 0);
    ant_pass(&b, p, n, 1);
    MUST(a.log.len == b.log.len &&
         (a.log.len == 0 || memcmp(a.log.data, b.log.data, a.log.len) == 0));
    MUST(a.usage.streamed_bytes == b.usage.streamed_bytes && a.usage.known == b.usage.known &&
         memcmp(&a.usage.u, &b.usage.u, sizeof a.usage.u) == 0 && a.stopped == b.stopped);
    ant_twin *t[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        prov_anthropic.release(t[i]->st);
        free(t[i]->st);
        free(t[i]->call);
        buf_free(&t[i]->out);
        buf_free(&t[i]->log);
    }
}

/* Every line of what a client gets is an SSE field of ours or the blank line that ends an event,
 * and every data line is a JSON object: a provider's bytes must never break the framing. */
static void check_sse(const buf_t *b)
{
    const char *p = b->data, *e = b->data + b->len;
    while (p && p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        MUST(nl != NULL); /* every line ends */
        size_t len = (size_t)(nl - p);
        if (len >= 6 && memcmp(p, "data: ", 6) == 0)
            MUST(jscan_object(p + 6, len - 6, NULL, 0, NULL) >= 0);
        else
            MUST(len == 0 || (len >= 7 && memcmp(p, "event: ", 7) == 0));
        p = nl + 1;
    }
}

/* The Responses adapter passing a provider's answer through to a Responses client. */
static void drive_responses(int stream, const char *p, size_t n)
{
    static char body[] = "{\"model\":\"m\",\"input\":\"x\",\"stream\":true}";
    const prov_adapter *ad = &prov_openai_responses;
    rsp_ctx r;
    memset(&r, 0, sizeof r);
    r.call = calloc(1, sizeof *r.call);
    r.call->body = ms_str_c(body);
    r.call->dialect = &dialect_openai_responses;
    r.call->ep = EP_CHAT;
    r.call->model = &g_model[2];
    r.call->dep = &g_dep[2];
    r.call->max_tokens = -1;
    r.call->stream = stream;
    r.st = calloc(1, ad->state_size);
    ad->reset(r.st, r.call);
    buf_init(&r.out, 1u << 24);
    buf_init(&r.held, 1u << 24);
    char err[256];
    if (!stream) {
        buf_t client;
        buf_init(&client, 0);
        (void)ad->response(r.st, r.call, (ms_str){p, n}, &client, &r.usage, err, sizeof err);
        MUST(client.len == 0); /* passed through */
        buf_free(&client);
    } else {
        sse_parser sp;
        sse_init(&sp, 1u << 20, on_rsp_event, &r);
        (void)sse_feed(&sp, p, n);
        sse_free(&sp);
        if (!r.done) MUST(ad->stream_cut(r.st, &r.held) == 0);
        dialect_req dr = {.model = "m", .request_id = "req_f", .created = 1};
        dialect_enc *enc = dialect_openai_responses.enc_new(&dr);
        dialect_error de = {"provider_error", "upstream_error", "x"};
        buf_t end;
        buf_init(&end, 1u << 25);
        if (dialect_openai_responses.stream_end(enc, NULL, (ms_str){r.held.data, r.held.len}, "0.1",
                                                r.done ? NULL : &de, &end) == 0)
            check_sse(&end);
        buf_free(&end);
        dialect_openai_responses.enc_free(enc);
    }
    MUST(r.usage.u.input >= 0 && r.usage.u.output >= 0 && r.usage.u.cached_input >= 0);
    MUST(r.usage.u.reasoning <= r.usage.u.output);
    buf_free(&r.out);
    buf_free(&r.held);
    free(r.st);
    free(r.call);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int op = data[0] % 11, which = op & 1;
    const prov_adapter *ad = which ? &prov_gemini : &prov_anthropic;
    char *p = malloc(size);
    memcpy(p, data + 1, size - 1);
    size_t n = size - 1;
    if (op < 2)
        drive_request(ad, which, p, n);
    else if (op == 4)
        drive_both(ad, 0, 1, &anthropic_dec_shapes, p, n); /* Anthropic, streamed */
    else if (op == 3 || op == 5)
        drive_both(ad, 1, op == 5, &gemini_dec_fast, p, n); /* Gemini, whole or streamed */
    else if (op < 6)
        drive_both(ad, 0, 0, &anthropic_dec_answer_fast, p, n); /* 2: Anthropic, whole */
    else if (op == 6)
        drive_both(&prov_openai, 2, 0, &openai_dec_fast_chunks, p, n); /* whole */
    else if (op == 7)
        drive_both(&prov_openai, 2, 1, &openai_dec_fast_chunks, p, n); /* streamed */
    else if (op < 10)
        drive_responses(op == 9, p, n); /* 8: whole, 9: streamed */
    else {
        drive_openai_passthrough(p, n);
        drive_anthropic_passthrough(p, n);
    }
    free(p);
    return 0;
}
