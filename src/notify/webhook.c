/*
 * The webhook sender (webhook.h): one thread, ms-webhook, that delivers the outbox's notices with
 * libcurl's easy interface, one at a time.
 *
 * Why a thread of its own and a blocking client: deliveries are rare (one per account per fall
 * below its threshold) and must never take time from a worker's loop or the ledger writer, which
 * only write the outbox and wake this thread. A blocking transfer bounded by
 * notifications.webhook_timeout_ms keeps the code plain; a slow receiver delays the notices
 * behind it by at most that much each. Shutdown does not wait for a transfer: the progress
 * callback aborts it, and the notice stays in the outbox for the next run.
 *
 * Delivery is at least once: a notice leaves the outbox after its receiver answered 2xx, so a
 * crash between the answer and the delete sends it again, with the same id (receivers dedupe on
 * it, docs/API.md). Failures that may pass (timeouts, connection errors, 5xx, 408, 429) are
 * retried HOOK_MAX_ATTEMPTS times in all, hook_backoff_ms apart; any other answer (a 4xx, a
 * redirect, which is not followed) is given up at once. Logs name the event, the account and the
 * webhook's scheme://host:port only: never its path or query (a receiver's token may be there),
 * never the secret.
 *
 * Unless notifications.allow_private_networks, the socket callback refuses loopback, private,
 * link-local and other internal addresses after the name is resolved, so an account cannot make
 * the gateway POST into the operator's own network (a DNS name that resolves inside is refused
 * too). The notice is then given up and the refusal logged.
 */
#include "notify/webhook.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/log.h"
#include "common/util.h"

/* Notices read from the outbox at once (each holds a URL of up to 2 KiB). */
#define HOOK_BATCH 16
/* With nothing due, the thread still looks at the outbox this often (only the ledger writes it,
 * and it wakes the thread; this is a safety net). */
#define HOOK_IDLE_MS 60000
/* After a store error, the next look. */
#define HOOK_STORE_RETRY_MS 1000
/* Retry delays: 1 s, then five times longer each time, at most an hour (8 attempts span about
 * two hours). */
#define HOOK_BACKOFF_FIRST_MS 1000
#define HOOK_BACKOFF_MAX_MS 3600000
/* The receiver's answer is read and thrown away; more than this aborts the transfer. */
#define HOOK_MAX_ANSWER 65536

typedef enum { HOOK_SENT, HOOK_RETRY, HOOK_GIVE_UP, HOOK_STOPPED } hook_outcome;

struct hook {
    const cfg_t *cfg;
    store_t *store; /* the thread's own */
    CURL *curl;     /* kept between deliveries, so a receiver's connection is reused */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* monotonic clock */
    int pending;       /* under mu: woken since the last look */
    _Atomic int stop;  /* read by the transfer's progress callback too */
    int blocked;       /* the current transfer's address was refused (private network) */
    size_t answer_len; /* the current transfer's answer so far */
    store_webhook *batch;
};

/* ---- the wire format ---- */

int hook_body(const store_webhook *w, buf_t *b)
{
    char t[32], bal[32], thr[32];
    ms_iso8601(w->created_at_ms, t, w->created_at_ms % 1000 != 0);
    if (!ms_format_decimal(w->balance_nusd, 9, bal, sizeof bal) ||
        !ms_format_decimal(w->threshold_nusd, 9, thr, sizeof thr))
        return -1;
    int rc = buf_appends(b, "{\"id\":");
    rc |= buf_append_json_string(b, w->event_id, strlen(w->event_id));
    rc |= buf_appends(b, ",\"type\":");
    rc |= buf_append_json_string(b, w->type, strlen(w->type));
    rc |= buf_printf(
        b, ",\"createdAt\":\"%s\",\"accountId\":%" PRId64 ",\"balance\":%s,\"threshold\":%s}", t,
        w->account_id, bal, thr);
    return rc ? -1 : 0;
}

int hook_sign(const char *secret, int64_t t, const char *body, size_t len, char out[128])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char head[24];
    int hl = snprintf(head, sizeof head, "%" PRId64 ".", t);
    buf_t msg;
    int rc = -1;

    buf_init(&msg, 0);
    if (hl <= 0 || buf_append(&msg, head, (size_t)hl) != 0 || buf_append(&msg, body, len) != 0)
        goto out;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg.data, msg.len,
              mac, &maclen) ||
        maclen != 32)
        goto out;
    int o = snprintf(out, 128, "t=%" PRId64 ",v1=", t);
    for (unsigned i = 0; i < maclen && o > 0; i++)
        o += snprintf(out + o, 128 - (size_t)o, "%02x", mac[i]);
    rc = 0;
out:
    OPENSSL_cleanse(mac, sizeof mac);
    buf_free(&msg);
    return rc;
}

const char *hook_url_check(const char *url)
{
    size_t n = strlen(url);
    const char *why = NULL;
    char *part = NULL;

    if (n == 0 || n > STORE_WEBHOOK_URL_MAX)
        return "must be a URL of 1 to 2048 bytes, or null for none.";
    size_t scheme = strncasecmp(url, "http://", 7) == 0    ? 7
                    : strncasecmp(url, "https://", 8) == 0 ? 8
                                                           : 0;
    if (!scheme) return "must start with http:// or https://.";
    if (url[scheme] == '/' || url[scheme] == '\0') return "must name a host.";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return "must not contain blanks or control characters.";
    CURLU *u = curl_url();
    if (!u) return "could not be checked (out of memory).";
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        why = "is not a valid URL.";
    } else if (curl_url_get(u, CURLUPART_HOST, &part, 0) != CURLUE_OK || !part || !part[0]) {
        why = "must name a host.";
    } else {
        curl_free(part);
        part = NULL;
        /* credentials in a URL end up in places where secrets do not belong */
        if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK)
            why = "must not carry a user name or password (put a token in its path or query, and "
                  "check the signature).";
    }
    curl_free(part);
    curl_url_cleanup(u);
    return why;
}

void hook_url_origin(const char *url, char *out, size_t outlen)
{
    char *scheme = NULL, *host = NULL, *port = NULL;
    CURLU *u = curl_url();

    snprintf(out, outlen, "?");
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
            snprintf(out, outlen, "%s://%s:%s", scheme, host, port);
        else
            snprintf(out, outlen, "%s://%s", scheme, host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* An IPv4 address (host order) that is not on the public internet. */
static int hook_v4_private(uint32_t a)
{
    uint32_t b1 = a >> 24, b2 = (a >> 16) & 0xff;
    return b1 == 0 || b1 == 10 || b1 == 127 || b1 >= 224 ||    /* this net, private, loopback,
                                                                  multicast, reserved */
           (b1 == 100 && (b2 & 0xc0) == 64) ||                 /* carrier-grade NAT 100.64/10 */
           (b1 == 169 && b2 == 254) ||                         /* link-local (cloud metadata) */
           (b1 == 172 && (b2 & 0xf0) == 16) ||                 /* private 172.16/12 */
           (b1 == 192 && b2 == 168) ||                         /* private 192.168/16 */
           (b1 == 192 && b2 == 0 && ((a >> 8) & 0xff) == 0) || /* IETF 192.0.0/24 */
           (b1 == 198 && (b2 & 0xfe) == 18);                   /* benchmarking 198.18/15 */
}

int hook_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return hook_v4_private(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6) return 1;
    const unsigned char *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char zero[15] = {0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return hook_v4_private((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
                               (uint32_t)b[14] << 8 | b[15]);
    if (memcmp(b, zero, 15) == 0) return 1;           /* :: and ::1 */
    return (b[0] & 0xfe) == 0xfc ||                   /* unique local fc00::/7 */
           (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* link-local fe80::/10 */
           b[0] == 0xff;                              /* multicast */
}

int64_t hook_backoff_ms(int64_t attempts)
{
    int64_t d = HOOK_BACKOFF_FIRST_MS;
    for (int64_t i = 1; i < attempts && d < HOOK_BACKOFF_MAX_MS; i++)
        d *= 5;
    return d < HOOK_BACKOFF_MAX_MS ? d : HOOK_BACKOFF_MAX_MS;
}

/* ---- one delivery ---- */

static size_t hook_on_answer(char *p, size_t size, size_t n, void *ud)
{
    hook_t *h = ud;
    (void)p;
    h->answer_len += size * n;
    return h->answer_len > HOOK_MAX_ANSWER ? 0 : size * n;
}

static int hook_on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    hook_t *h = ud;
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&h->stop) ? 1 : 0;
}

/* Refuses internal addresses once the name is resolved (the check a URL cannot give). */
static curl_socket_t hook_on_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    hook_t *h = ud;
    (void)purpose;
    if (!h->cfg->notify_allow_private && hook_addr_private(&a->addr)) {
        h->blocked = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* What to do after a transfer that ended with res and, when res is CURLE_OK, status. */
static hook_outcome hook_judge(hook_t *h, CURLcode res, long status, char *why, size_t whylen)
{
    if (res == CURLE_ABORTED_BY_CALLBACK && atomic_load(&h->stop)) return HOOK_STOPPED;
    if (res != CURLE_OK && h->blocked) {
        snprintf(why, whylen,
                 "its address is on a private network "
                 "(notifications.allow_private_networks is off)");
        return HOOK_GIVE_UP;
    }
    if (res != CURLE_OK) {
        snprintf(why, whylen, "%s", curl_easy_strerror(res));
        return HOOK_RETRY;
    }
    snprintf(why, whylen, "HTTP %ld", status);
    if (status >= 200 && status < 300) return HOOK_SENT;
    if (status >= 500 || status == 408 || status == 429) return HOOK_RETRY;
    return HOOK_GIVE_UP;
}

/* POSTs w's notice to its webhook, signed. */
static hook_outcome hook_post(hook_t *h, const store_webhook *w, char *why, size_t whylen)
{
    char sig[128], line[200];
    struct curl_slist *hdr = NULL, *t;
    long status = 0;
    buf_t body;
    hook_outcome o = HOOK_RETRY;

    buf_init(&body, 0);
    if (hook_body(w, &body) != 0 ||
        hook_sign(w->secret, ms_now_ms() / 1000, body.data, body.len, sig) != 0) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    static const char *const fixed[] = {"content-type: application/json",
                                        "user-agent: ModelSwitch-Webhook/1", "expect:", NULL};
    for (int i = 0; fixed[i]; i++)
        if ((t = curl_slist_append(hdr, fixed[i]))) hdr = t;
    snprintf(line, sizeof line, "x-modelswitch-event-id: %s", w->event_id);
    if ((t = curl_slist_append(hdr, line))) hdr = t;
    snprintf(line, sizeof line, HOOK_SIGNATURE_HEADER ": %s", sig);
    if ((t = curl_slist_append(hdr, line))) hdr = t;

    CURL *e = h->curl;
    curl_easy_reset(e);
    h->blocked = 0;
    h->answer_len = 0;
    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)h->cfg->notify_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)h->cfg->notify_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, hook_on_answer);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, hook_on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, h);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, hook_on_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h);
    CURLcode res = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    /* a full answer before it was cut is still an answer */
    if (res == CURLE_WRITE_ERROR && status > 0) res = CURLE_OK;
    o = hook_judge(h, res, status, why, whylen);
out:
    curl_slist_free_all(hdr);
    OPENSSL_cleanse(sig, sizeof sig);
    buf_free(&body);
    return o;
}

/* Delivers one due notice and records the outcome. -1 when the store failed. */
static int hook_deliver(hook_t *h, store_webhook *w)
{
    char origin[300], why[200];
    int64_t attempts = w->attempts + 1;

    if (!w->url[0]) {
        log_info("webhook: %s (account %" PRId64 ") dropped: the account has no webhook any more",
                 w->event_id, w->account_id);
        return store_webhook_done(h->store, w->event_id) == STORE_OK ? 0 : -1;
    }
    hook_url_origin(w->url, origin, sizeof origin);
    hook_outcome o = hook_post(h, w, why, sizeof why);
    if (o == HOOK_STOPPED) return 0;
    if (o == HOOK_SENT) {
        log_info("webhook: %s (%s, account %" PRId64 ") delivered to %s (%s, attempt %" PRId64 ")",
                 w->event_id, w->type, w->account_id, origin, why, attempts);
        return store_webhook_done(h->store, w->event_id) == STORE_OK ? 0 : -1;
    }
    if (o == HOOK_RETRY && attempts < HOOK_MAX_ATTEMPTS) {
        int64_t delay = hook_backoff_ms(attempts);
        log_warn("webhook: %s (account %" PRId64 ") to %s failed: %s (attempt %" PRId64
                 " of %d; next in %" PRId64 " s)",
                 w->event_id, w->account_id, origin, why, attempts, HOOK_MAX_ATTEMPTS,
                 (delay + 999) / 1000);
        return store_webhook_retry(h->store, w->event_id, attempts, ms_now_ms() + delay) == STORE_OK
                   ? 0
                   : -1;
    }
    log_warn("webhook: %s (account %" PRId64 ") to %s failed: %s (attempt %" PRId64 "); given up",
             w->event_id, w->account_id, origin, why, attempts);
    return store_webhook_done(h->store, w->event_id) == STORE_OK ? 0 : -1;
}

/* Delivers everything due; returns when (wall-clock ms) to look again. */
static int64_t hook_run(hook_t *h)
{
    size_t n = HOOK_BATCH;
    int rc = 0;

    while (n == HOOK_BATCH && rc == 0 && !atomic_load(&h->stop)) {
        if (store_webhooks_due(h->store, ms_now_ms(), HOOK_BATCH, h->batch, &n) != STORE_OK) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n && rc == 0 && !atomic_load(&h->stop); i++)
            rc = hook_deliver(h, &h->batch[i]);
        OPENSSL_cleanse(h->batch, HOOK_BATCH * sizeof *h->batch); /* secrets */
    }
    int64_t next = INT64_MAX;
    if (rc == 0) {
        int st = store_webhook_next(h->store, &next);
        if (st == STORE_NOTFOUND)
            next = INT64_MAX;
        else if (st != STORE_OK)
            rc = -1;
    }
    if (rc != 0) {
        log_warn("webhook: reading or updating the outbox failed (notices wait): %s",
                 store_errmsg(h->store));
        return ms_now_ms() + HOOK_STORE_RETRY_MS;
    }
    return next;
}

static void *hook_main(void *arg)
{
    hook_t *h = arg;
    int64_t next = 0; /* wall-clock ms of the next look; 0 = now (notices of an earlier run) */

    pthread_setname_np(pthread_self(), "ms-webhook");
    pthread_mutex_lock(&h->mu);
    while (!atomic_load(&h->stop)) {
        int64_t now = ms_now_ms();
        if (!h->pending && next > now) {
            int idle = next - now > HOOK_IDLE_MS;
            int64_t wait = idle ? HOOK_IDLE_MS : next - now;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT && idle)
                next = 0; /* the idle look */
            continue;
        }
        h->pending = 0;
        pthread_mutex_unlock(&h->mu);
        next = hook_run(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- start, wake, stop ---- */

static void hook_free(hook_t *h)
{
    if (h->curl) curl_easy_cleanup(h->curl);
    store_close(h->store);
    free(h->batch);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
}

hook_t *hook_start(const cfg_t *cfg, char *err, size_t errlen)
{
    pthread_condattr_t ca;
    hook_t *h = calloc(1, sizeof *h);
    int rc;

    if (!h) {
        snprintf(err, errlen, "webhooks: out of memory");
        return NULL;
    }
    h->cfg = cfg;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    h->batch = calloc(HOOK_BATCH, sizeof *h->batch);
    h->curl = curl_easy_init();
    if (!h->batch || !h->curl) {
        snprintf(err, errlen, "webhooks: out of memory");
        hook_free(h);
        return NULL;
    }
    if (!(h->store = store_open(cfg, err, errlen))) {
        hook_free(h);
        return NULL;
    }
    if ((rc = pthread_create(&h->thread, NULL, hook_main, h)) != 0) {
        snprintf(err, errlen, "webhooks: starting the sender thread: %s", strerror(rc));
        hook_free(h);
        return NULL;
    }
    return h;
}

void hook_wake(void *arg)
{
    hook_t *h = arg;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->pending = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void hook_stop(hook_t *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    atomic_store(&h->stop, 1); /* also aborts a transfer in flight (hook_on_progress) */
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    hook_free(h);
}
