/*
 * The OpenAI dialect's request side: POST /v1/chat/completions and /v1/embeddings bodies parsed
 * into the gateway's request (prov_call). Only the fields the gateway acts on are read (model,
 * messages, stream, stream_options, max_tokens, max_completion_tokens, n; input,
 * encoding_format);
 * the rest of the body passes through unread to providers that speak OpenAI, and adapters that
 * translate read it themselves.
 *
 * One jscan pass validates the whole document and records the top-level members as views into
 * the body (no tree, no copy). Keys are compared decoded, a field the gateway acts on may not be
 * given twice (jscan_pick_unique), and the model name is compared by length. Errors are returned
 * as values (dialect_refusal) with the contract's status, code and `param`, so the API layer
 * writes them in the client's shape.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "dialect/dialect.h"
#include "providers/provider.h"

/* The fields each endpoint acts on; [0] is always model. */
enum {
    F_MODEL,
    F_MESSAGES,
    F_STREAM,
    F_STREAM_OPTIONS,
    F_MAX_TOKENS,
    F_MAX_COMPLETION_TOKENS,
    F_N
};
static const jscan_key chat_fields[] = {JSCAN_KEY("model"),      JSCAN_KEY("messages"),
                                        JSCAN_KEY("stream"),     JSCAN_KEY("stream_options"),
                                        JSCAN_KEY("max_tokens"), JSCAN_KEY("max_completion_tokens"),
                                        JSCAN_KEY("n")};
enum { F_INPUT = 1, F_ENCODING_FORMAT };
static const jscan_key embedding_fields[] = {JSCAN_KEY("model"), JSCAN_KEY("input"),
                                             JSCAN_KEY("encoding_format")};
#define FIELDS_MAX 7
/* OpenAI's own bound on n */
#define CHAT_MAX_CHOICES 128

/* fmt names the field once, as '%s' */
static int invalid(dialect_refusal *why, const char *param, const char *fmt)
    __attribute__((format(printf, 3, 0)));
static int invalid(dialect_refusal *why, const char *param, const char *fmt)
{
    return dialect_refuse(why, 400, "invalid_parameter", param, fmt, param);
}

static int duplicate(dialect_refusal *why, const char *field)
{
    return dialect_refuse(
        why, 400, "invalid_parameter", field,
        "The field '%s' appears more than once in the request body; give it once.", field);
}

static int check_bool(const jscan_member *m, const char *param, int *out, dialect_refusal *why)
{
    if (!m || m->type == JS_NULL) return 0;
    if (m->type != JS_TRUE && m->type != JS_FALSE)
        return invalid(why, param, "'%s' must be a boolean.");
    *out = m->type == JS_TRUE;
    return 0;
}

/* stream_options: an object (or null) whose include_usage, if present, is a boolean given once. */
static int stream_options(prov_call *call, const jscan_member *so, dialect_refusal *why)
{
    if (!so || so->type == JS_NULL) return 0;
    if (so->type != JS_OBJECT) return invalid(why, "stream_options", "'%s' must be an object.");
    jscan_member sm[PROV_MAX_STREAM_OPTIONS];
    int sn = jscan_members(so->value, sm, PROV_MAX_STREAM_OPTIONS);
    /* the splice copies every option it keeps; none may be dropped unseen */
    if (sn > PROV_MAX_STREAM_OPTIONS)
        return invalid(why, "stream_options", "'%s' has too many fields.");
    static const jscan_key iu_key[] = {JSCAN_KEY("include_usage")};
    const jscan_member *iu;
    if (jscan_pick_unique(sm, sn > 0 ? (size_t)sn : 0, iu_key, 1, &iu) >= 0)
        return duplicate(why, "stream_options.include_usage");
    return check_bool(iu, "stream_options.include_usage", &call->client_include_usage, why);
}

static int parse_chat(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                      dialect_refusal *why)
{
    const jscan_member *f[FIELDS_MAX];
    if (dialect_scan(cfg, call, chat_fields, sizeof chat_fields / sizeof *chat_fields, f, shown,
                     shown_len, why) != 0)
        return -1;
    const jscan_member *msgs = f[F_MESSAGES];
    if (!msgs)
        return dialect_refuse(why, 400, "missing_required_parameter", "messages",
                              "Missing required parameter: '%s'.", "messages");
    if (msgs->type != JS_ARRAY)
        return invalid(why, "messages", "'%s' must be an array of message objects.");
    if (dialect_empty_array(msgs->value))
        return invalid(why, "messages", "'%s' must contain at least one message.");
    if (check_bool(f[F_STREAM], "stream", &call->stream, why) != 0) return -1;
    for (int i = F_MAX_TOKENS; i <= F_MAX_COMPLETION_TOKENS; i++) {
        const jscan_member *mt = f[i];
        if (!mt || mt->type == JS_NULL) continue;
        int64_t v;
        if (mt->type != JS_NUMBER || jscan_int(mt->value, &v) != 0 || v < 1)
            return invalid(why, chat_fields[i].s, "'%s' must be an integer of at least 1.");
        call->max_tokens = v;
    }
    /* n choices are each up to max_tokens: the hold covers them all */
    const jscan_member *n = f[F_N];
    if (n && n->type != JS_NULL) {
        int64_t v;
        if (n->type != JS_NUMBER || jscan_int(n->value, &v) != 0 || v < 1 || v > CHAT_MAX_CHOICES)
            return invalid(why, "n", "'%s' must be an integer from 1 to 128.");
        call->choices = (int)v;
    }
    const jscan_member *so = f[F_STREAM_OPTIONS];
    if (stream_options(call, so, why) != 0) return -1;
    if (so && (so->type != JS_NULL || call->stream)) call->m_stream_options = so;
    return 0;
}

static int parse_embeddings(const cfg_t *cfg, prov_call *call, char *shown, size_t shown_len,
                            dialect_refusal *why)
{
    const jscan_member *f[FIELDS_MAX];
    if (dialect_scan(cfg, call, embedding_fields,
                     sizeof embedding_fields / sizeof *embedding_fields, f, shown, shown_len,
                     why) != 0)
        return -1;
    const jscan_member *in = f[F_INPUT];
    if (!in)
        return dialect_refuse(why, 400, "missing_required_parameter", "input",
                              "Missing required parameter: '%s'.", "input");
    if (in->type != JS_STRING && in->type != JS_ARRAY)
        return invalid(why, "input", "'%s' must be a string or an array.");
    if (in->type == JS_ARRAY && dialect_empty_array(in->value))
        return invalid(why, "input", "'%s' must not be empty.");
    const jscan_member *ef = f[F_ENCODING_FORMAT];
    if (ef && ef->type != JS_NULL) {
        char fmt[16];
        long fl = ef->type == JS_STRING ? jscan_string(ef->value, fmt, sizeof fmt) : -1;
        if (fl < 0 || !((fl == 5 && memcmp(fmt, "float", 5) == 0) ||
                        (fl == 6 && memcmp(fmt, "base64", 6) == 0)))
            return invalid(why, "encoding_format", "'%s' must be 'float' or 'base64'.");
    }
    return 0;
}

static int parse(const cfg_t *cfg, prov_endpoint ep, prov_call *call, int valid, size_t listed,
                 char *shown, size_t shown_len, dialect_refusal *why)
{
    /* the members are written by the scan: the rest is zeroed (6 KB not touched) */
    ms_str body = call->body;
    char rid[sizeof call->request_id];
    memcpy(rid, call->request_id, sizeof rid);
    memset(call, 0, offsetof(prov_call, members));
    memcpy(call->request_id, rid, sizeof rid);
    call->body = body;
    if (valid) call->valid = body; /* dialect_scan lists its members without validating */
    call->nmembers = listed;       /* or takes them as listed */
    call->ep = ep;
    call->dialect = &dialect_openai_chat;
    call->max_tokens = -1;
    shown[0] = '\0';
    return ep == EP_CHAT ? parse_chat(cfg, call, shown, shown_len, why)
                         : parse_embeddings(cfg, call, shown, shown_len, why);
}

int dialect_openai_parse(const cfg_t *cfg, prov_endpoint ep, prov_call *call, char *shown,
                         size_t shown_len, dialect_refusal *why)
{
    return parse(cfg, ep, call, 0, 0, shown, shown_len, why);
}

int dialect_openai_parse_valid(const cfg_t *cfg, prov_endpoint ep, prov_call *call, char *shown,
                               size_t shown_len, dialect_refusal *why)
{
    return parse(cfg, ep, call, 1, 0, shown, shown_len, why);
}

int dialect_openai_parse_listed(const cfg_t *cfg, prov_endpoint ep, prov_call *call, size_t listed,
                                char *shown, size_t shown_len, dialect_refusal *why)
{
    return parse(cfg, ep, call, 1, listed <= PROV_MAX_MEMBERS ? listed : 0, shown, shown_len, why);
}
