/*
 * /v1/responses: OpenAI's Responses API as a client dialect (Codex, the Vercel AI SDK's default
 * OpenAI provider, the OpenAI SDKs' responses.*). The same keys, models, holds, limits, routing
 * and ledger as chat completions. The request is parsed in the Responses dialect
 * (dialect/openai_responses_request.c). A provider that speaks the Responses API (responses:
 * true) gets the client's bytes and its answer passes through (providers/openai_responses.c);
 * for every other the proxy rewrites the request once, when an attempt first needs it, into
 * the hub format (OpenAI chat) that their adapters build from, and the answer, decoded into
 * events, is encoded by the Responses dialect (dialect/openai_responses.c) as a response object
 * or its typed stream events.
 *
 * Stored responses (store: true, the API's default; docs/DIALECTS.md): an answer that ended well
 * is kept with the conversation up to it, for GET and DELETE /v1/responses/{id} and for
 * previous_response_id, for responses.retention_days. Every store round trip runs on the thread
 * pool (api/job.c), never on the loop:
 *   - saving: the engine hands the answer over before the client gets its last byte (the
 *     settlement context's keep hook); its row is written by a background job.
 *   - continuing: previous_response_id is looked up in a job before anything is admitted; the
 *     request is then rebuilt whole (the stored conversation before its input) and goes on as
 *     any request, so every provider can serve it, whatever served the response it continues.
 * A client that continues at once may ask for a response whose row is still being written: the
 * ids being saved are listed (saving), and a lookup that misses one of them waits for its write.
 * Rows belong to the account whose key made them; any other account gets what an id that never
 * existed gets. Expired rows are never read, and are deleted a batch at a time by later saves.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/cache.h"
#include "api/job.h"
#include "api/proxy.h"
#include "common/log.h"
#include "common/util.h"
#include "dialect/responses_request.h"

#define RS_ID_MAX 128           /* dialect_responses_state.previous */
#define RS_SAVING_MAX 256       /* saves in flight that a lookup can wait for */
#define RS_WAIT_MS 5000         /* how long a lookup waits for a save in flight */
#define RS_PURGE_EVERY_MS 60000 /* expired rows are deleted at most this often */
#define RS_PURGE_BATCH 1000
#define RS_REFS_MAX 16 /* responses one request's item_reference items are looked up in */

/* ---- saves in flight ---- */

static pthread_mutex_t saving_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t saving_cv = PTHREAD_COND_INITIALIZER;
static char saving[RS_SAVING_MAX][RS_ID_MAX]; /* "" = free slot; guarded by saving_mu */

/* Lists id as being saved; -1 when the list is full (the save goes on, unlisted: a continuation
 * sent before it is written may then not find it). */
static int saving_add(const char *id)
{
    int slot = -1;
    pthread_mutex_lock(&saving_mu);
    for (int i = 0; i < RS_SAVING_MAX && slot < 0; i++)
        if (!saving[i][0]) slot = i;
    if (slot >= 0) ms_copy(saving[slot], RS_ID_MAX, id);
    pthread_mutex_unlock(&saving_mu);
    return slot;
}

static void saving_done(int slot)
{
    if (slot < 0) return;
    pthread_mutex_lock(&saving_mu);
    saving[slot][0] = '\0';
    pthread_cond_broadcast(&saving_cv);
    pthread_mutex_unlock(&saving_mu);
}

/* Waits (a pool thread) until id is no longer being saved, or RS_WAIT_MS. */
static void saving_wait(const char *id)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += RS_WAIT_MS / 1000;
    pthread_mutex_lock(&saving_mu);
    for (;;) {
        int listed = 0;
        for (int i = 0; i < RS_SAVING_MAX && !listed; i++)
            listed = saving[i][0] && strcmp(saving[i], id) == 0;
        if (!listed || pthread_cond_timedwait(&saving_cv, &saving_mu, &until) != 0) break;
    }
    pthread_mutex_unlock(&saving_mu);
}

/* The response id of acct (a pool thread), or STORE_NOTFOUND. A miss waits for a save of that id
 * in flight and looks once more, whether or not it waited: the save may have been committed and
 * unlisted between the miss and the wait. With del, the row is deleted instead of read. */
static int saved(store_t *s, const char *id, int64_t acct, int del, int want_history,
                 store_response *out)
{
    for (int look = 0;; look++) {
        int rc = del ? store_response_delete(s, id, acct, ms_now_ms())
                     : store_response_get(s, id, acct, ms_now_ms(), want_history, out);
        if (rc != STORE_NOTFOUND || look == 1) return rc;
        saving_wait(id);
    }
}

/* ---- saving ---- */

/* What the keep hook needs of the request (api_settlement.keep_ctx). */
typedef struct rs_keeper {
    int64_t account_id, key_id;
    ms_str input; /* the (whole) request's input value, in its body, which outlives the hook */
} rs_keeper;

typedef struct rs_save {
    char id[RS_ID_MAX];
    int slot;
    int64_t account_id, key_id;
    int64_t created_ms, expires_ms;
    int64_t history_max; /* a longer history is not kept: no continuation could be sent */
    char model[256];
    char *response, *input; /* owned copies */
    size_t response_len, input_len;
} rs_save;

static void purge_expired(store_t *s, int64_t now)
{
    static int64_t last_purge_ms; /* read and swapped atomically: pool threads race here */
    int64_t last = __atomic_load_n(&last_purge_ms, __ATOMIC_RELAXED);
    if (now - last < RS_PURGE_EVERY_MS ||
        !__atomic_compare_exchange_n(&last_purge_ms, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    int64_t n = 0;
    if (store_responses_purge(s, now, RS_PURGE_BATCH, &n) != STORE_OK)
        log_warn("responses: cannot delete expired responses: %s", store_errmsg(s));
    else if (n > 0)
        log_info("responses: deleted %lld expired responses", (long long)n);
}

static void save_work(void *ctx, store_t *s)
{
    rs_save *sv = ctx;
    buf_t h;
    buf_init(&h, (size_t)sv->history_max);
    /* too long to continue, or not readable: kept for GET, without what a continuation needs */
    int have = dialect_responses_history((ms_str){sv->input, sv->input_len},
                                         (ms_str){sv->response, sv->response_len}, &h) == 0;
    store_response r = {
        .id = sv->id,
        .account_id = sv->account_id,
        .key_id = sv->key_id,
        .model = sv->model,
        .created_at_ms = sv->created_ms,
        .expires_at_ms = sv->expires_ms,
        .response = sv->response,
        .response_len = sv->response_len,
        .history = have ? (h.data ? h.data : "[]") : NULL,
        .history_len = have ? h.len : 0,
    };
    if (store_response_put(s, &r) != STORE_OK)
        log_warn("responses: cannot store response %s: %s", sv->id, store_errmsg(s));
    buf_free(&h);
    saving_done(sv->slot);
    sv->slot = -1;
    purge_expired(s, sv->created_ms);
}

static void save_done(http_conn *c, void *ctx)
{
    (void)c;
    rs_save *sv = ctx;
    saving_done(sv->slot); /* a job that never ran */
    free(sv->response);
    free(sv->input);
}

static char *copy_of(ms_str v)
{
    char *p = malloc(v.n + 1);
    if (p) {
        memcpy(p, v.p, v.n);
        p[v.n] = '\0';
    }
    return p;
}

/* api_settlement.keep: the answer ended well; its row is written off the loop. */
static void keep(api_settlement *s, worker_t *w, const prov_call *call, ms_str doc, int is_event)
{
    const rs_keeper *k = s->keep_ctx;
    const cfg_t *cfg = w->cfg;
    rs_save *sv = calloc(1, sizeof *sv);
    ms_str obj;
    if (!sv) return;
    sv->slot = -1;
    if (dialect_responses_object(doc, is_event, &obj, sv->id, sizeof sv->id) != 0) {
        log_warn("responses: request %s: the answer has no response id; not stored", s->request_id);
        free(sv);
        return;
    }
    sv->account_id = k->account_id;
    sv->key_id = k->key_id;
    sv->created_ms = ms_now_ms();
    sv->expires_ms = sv->created_ms + cfg->responses_retention_days * 86400000LL;
    sv->history_max = cfg->max_body_bytes;
    ms_copy(sv->model, sizeof sv->model, call->model->name);
    sv->response = copy_of(obj);
    sv->input = copy_of(k->input);
    sv->response_len = obj.n;
    sv->input_len = k->input.n;
    if (sv->response && sv->input) sv->slot = saving_add(sv->id);
    if (!sv->response || !sv->input || api_job_bg(w, save_work, save_done, sv) != 0) {
        log_warn("responses: request %s: out of memory; response %s not stored", s->request_id,
                 sv->id);
        save_done(NULL, sv);
        free(sv);
    }
}

/* ---- POST /v1/responses ---- */

/* api_next.hooks: the answer is kept (store: true), with the request's input. */
static int keep_hooks(http_conn *c, api_settlement *s, ms_str input)
{
    rs_keeper *k = malloc(sizeof *k);
    if (!k) {
        api_err_internal(c);
        return -1;
    }
    *k = (rs_keeper){s->key.account_id, s->key.id, input};
    s->keep = keep;
    s->keep_ctx = k;
    return 0;
}

/* api_to_hub: the Responses rewrite lists no members (the parser scans them). */
static int to_hub(const prov_call *call, buf_t *out, struct jscan_member *members, size_t max,
                  size_t *listed, dialect_refusal *why)
{
    (void)members;
    (void)max;
    *listed = 0;
    return dialect_responses_to_openai(call, out, why);
}

/* Admits call and runs it; the answer is kept when the request asked for it. */
static void run(http_conn *c, prov_call *call, const store_key *key,
                const dialect_responses_state *state)
{
    const cfg_t *cfg = c->w->cfg;
    api_next next = {.to_hub = to_hub};
    if (state->store && cfg->responses_retention_days > 0) {
        next.hooks = keep_hooks;
        next.arg = state->input;
    }
    /* an identical request answered before (a continuation's whole conversation, as rebuilt):
     * from the response cache, no hold needed */
    api_cache_serve(c, call, key, 'r', (ms_str){"", 0}, &next);
}

static void not_found_previous(http_conn *c, const char *id)
{
    char msg[300];
    snprintf(msg, sizeof msg, "Previous response with id '%.128s' not found.", id);
    http_error(c, 400, "invalid_request_error", "previous_response_not_found",
               "previous_response_id", msg, -1);
}

/* A request that needs stored state before it can run (previous_response_id, item_reference
 * items), while it is looked up. */
typedef struct rs_cont {
    prov_call *call;
    dialect_responses_state st; /* the request's, as parsed (views into its body) */
    int refs;                   /* its input may hold item_reference items */
    store_key key;
    int found; /* previous_response_id: STORE_OK, STORE_NOTFOUND or STORE_ERR */
    store_response row;
    buf_t resolved; /* the input with the references the store knows resolved; empty: as it is */
    /* the responses item_reference items named, read once each */
    store_t *s;
    size_t nrefd;
    char refd_id[RS_REFS_MAX][RS_ID_MAX];
    store_response refd[RS_REFS_MAX];
} rs_cont;

/* dialect_responses_lookup in a pool thread: the asking account's response resp_id. */
static int ref_lookup(void *ud, const char *resp_id, ms_str *response)
{
    rs_cont *ct = ud;
    for (size_t i = 0; i < ct->nrefd; i++)
        if (!strcmp(ct->refd_id[i], resp_id)) {
            *response = (ms_str){ct->refd[i].response, ct->refd[i].response_len};
            return ct->refd[i].response ? 0 : -1;
        }
    if (ct->nrefd == RS_REFS_MAX) return -1; /* left as they are */
    size_t k = ct->nrefd++;
    ms_copy(ct->refd_id[k], RS_ID_MAX, resp_id);
    int64_t acct = ct->key.account_id;
    if (saved(ct->s, resp_id, acct, 0, 0, &ct->refd[k]) != STORE_OK) return -1;
    *response = (ms_str){ct->refd[k].response, ct->refd[k].response_len};
    return 0;
}

static void cont_work(void *ctx, store_t *s)
{
    rs_cont *ct = ctx;
    int64_t acct = ct->key.account_id;
    ct->found = STORE_OK;
    if (ct->st.has_previous) {
        const char *id = ct->st.previous;
        ct->found = saved(s, id, acct, 0, 1, &ct->row);
        if (ct->found == STORE_ERR)
            log_error("responses: cannot read a response: %s", store_errmsg(s));
        if (ct->found != STORE_OK) return;
    }
    if (ct->refs) {
        ct->s = s;
        if (dialect_responses_resolve(ct->st.input, ref_lookup, ct, &ct->resolved) != 0)
            buf_reset(&ct->resolved);
        ct->s = NULL;
    }
}

/* The request as the client would have sent it without state on the server: the stored
 * conversation before its input, its references resolved. Returns 0, or -1 after answering. */
static int make_whole(http_conn *c, rs_cont *ct)
{
    const cfg_t *cfg = c->w->cfg;
    http_request *r = &c->req;
    ms_str input = ct->resolved.len ? (ms_str){ct->resolved.data, ct->resolved.len} : ct->st.input;
    buf_t merged, whole;
    buf_init(&merged, (size_t)cfg->max_body_bytes * 2);
    buf_init(&whole, (size_t)cfg->max_body_bytes * 2);
    ms_str history =
        ct->row.history ? (ms_str){ct->row.history, ct->row.history_len} : (ms_str){"", 0};
    ms_str prev = ct->st.has_previous ? ct->st.previous_value : (ms_str){"", 0};
    int rc = ct->st.has_previous ? dialect_responses_merge(history, input, &merged) : 0;
    if (rc == 0) {
        ms_str with = ct->st.has_previous ? (ms_str){merged.data, merged.len} : input;
        rc = dialect_responses_splice(r->body, ct->st.input, with, prev, &whole);
    }
    buf_free(&merged);
    if (rc != 0) {
        buf_free(&whole);
        http_error(c, 413, "invalid_request_error", "request_too_large", NULL,
                   "The stored conversation and this request are too long together "
                   "(twice server.max_body_bytes).",
                   -1);
        return -1;
    }
    http_replace_body(c, &whole);
    return 0;
}

static void cont_done(http_conn *c, void *ctx)
{
    rs_cont *ct = ctx;
    prov_call *call = ct->call;
    ct->call = NULL;
    if (!c) goto out;
    if (ct->found == STORE_NOTFOUND) {
        not_found_previous(c, ct->st.previous);
        goto out;
    }
    if (ct->found != STORE_OK) {
        api_err_internal(c);
        goto out;
    }
    if (ct->st.has_previous && !ct->row.history) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "The conversation of response '%.128s' is too long to continue "
                 "(server.max_body_bytes); send the whole input instead.",
                 ct->st.previous);
        http_error(c, 400, "invalid_request_error", "invalid_parameter", "previous_response_id",
                   msg, -1);
        goto out;
    }
    if ((ct->st.has_previous || ct->resolved.len) && make_whole(c, ct) != 0) goto out;
    /* Parsed again, whole or not, on the worker's config now: a reload may have come while the
     * store was read, and the request runs on one generation (its model from the one it is
     * admitted and proxied on). */
    http_request *r = &c->req;
    dialect_responses_state st;
    dialect_refusal why;
    why.status = 0;
    call->body = r->body;
    if (dialect_responses_parse(c->w->cfg, call, r->log_model, sizeof r->log_model, &st, &why) !=
        0) {
        api_refuse(c, &why);
        goto out;
    }
    ct->st = st;
    run(c, call, &ct->key, &ct->st);
    call = NULL;
out:
    prov_call_free(call);
    store_response_free(&ct->row);
    buf_free(&ct->resolved);
    for (size_t i = 0; i < ct->nrefd; i++)
        store_response_free(&ct->refd[i]);
}

/* Whether input may hold item_reference items (a cheap look; the lookup job reads it). */
static int may_reference(ms_str input)
{
    return input.n && input.p[0] == '[' && memmem(input.p, input.n, "item_reference", 14);
}

void api_responses(http_conn *c, http_request *r)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    const cfg_t *cfg = c->w->cfg;
    prov_call *call = prov_call_alloc();
    if (!call) return api_err_internal(c);
    call->body = r->body;
    ms_copy(call->request_id, sizeof call->request_id, r->id);
    dialect_refusal why;
    why.status = 0;
    dialect_responses_state st;
    if (dialect_responses_parse(cfg, call, r->log_model, sizeof r->log_model, &st, &why) != 0) {
        prov_call_free(call);
        return api_refuse(c, &why);
    }
    int keeps = cfg->responses_retention_days > 0;
    int refs = keeps && may_reference(st.input);
    if (!st.has_previous && !refs) return run(c, call, &key, &st);
    /* an id that cannot be one the gateway keeps, or nothing kept at all: no lookup */
    if (st.has_previous && (!st.previous[0] || !keeps)) {
        prov_call_free(call);
        char raw[RS_ID_MAX], shown[RS_ID_MAX];
        if (jscan_string(st.previous_value, raw, sizeof raw) < 0) ms_copy(raw, sizeof raw, "...");
        dialect_printable_name(raw, strlen(raw), shown, sizeof shown);
        return not_found_previous(c, shown);
    }
    rs_cont *ct = calloc(1, sizeof *ct);
    if (!ct) {
        prov_call_free(call);
        return api_err_internal(c);
    }
    ct->call = call;
    ct->st = st;
    ct->refs = refs;
    ct->key = key;
    buf_init(&ct->resolved, (size_t)cfg->max_body_bytes * 2);
    api_job(c, cont_work, cont_done, ct);
}

/* ---- GET and DELETE /v1/responses/{id} ---- */

typedef struct rs_one {
    char id[RS_ID_MAX];
    int64_t account_id;
    int del;
    int found;
    store_response row;
} rs_one;

static void one_work(void *ctx, store_t *s)
{
    rs_one *o = ctx;
    o->found = saved(s, o->id, o->account_id, o->del, 0, &o->row);
    if (o->found == STORE_ERR) log_error("responses: store error: %s", store_errmsg(s));
}

static void response_not_found(http_conn *c, const char *id)
{
    char msg[300];
    snprintf(msg, sizeof msg, "Response with id '%.128s' not found.", id);
    http_error(c, 404, "not_found_error", "not_found", NULL, msg, -1);
}

static void one_done(http_conn *c, void *ctx)
{
    rs_one *o = ctx;
    if (!c) goto out;
    if (o->found == STORE_NOTFOUND) {
        response_not_found(c, o->id);
    } else if (o->found != STORE_OK) {
        api_err_internal(c);
    } else if (o->del) {
        buf_t b;
        buf_init(&b, 0);
        int rc = buf_appends(&b, "{\"id\":");
        rc |= api_append_str(&b, o->id);
        rc |= buf_appends(&b, ",\"object\":\"response\",\"deleted\":true}");
        if (rc) buf_free(&b);
        api_send_json(c, 200, &b);
    } else {
        size_t n = o->row.response_len;
        http_respond(c, 200, "application/json", NULL, o->row.response, n, 1);
        o->row.response = NULL;
    }
out:
    store_response_free(&o->row);
}

void api_response_one(http_conn *c, http_request *r, ms_str id)
{
    store_key key;
    if (api_authenticate(c, r, KEY_PROXY, &key) != 0) return;
    char shown[RS_ID_MAX];
    dialect_printable_name(id.p, id.n, shown, sizeof shown);
    int ok = id.n > 0 && id.n < RS_ID_MAX;
    for (size_t i = 0; ok && i < id.n; i++) {
        char ch = id.p[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-';
    }
    if (!ok || c->w->cfg->responses_retention_days == 0) return response_not_found(c, shown);
    rs_one *o = calloc(1, sizeof *o);
    if (!o) return api_err_internal(c);
    memcpy(o->id, id.p, id.n);
    o->account_id = key.account_id;
    o->del = r->method == HTTP_M_DELETE;
    api_job(c, one_work, one_done, o);
}
