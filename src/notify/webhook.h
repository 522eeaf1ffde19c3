/*
 * Account webhooks: the sender of low-balance notices, and the pieces of the wire format that
 * the account API and the tests share (body, signature, URL rules).
 *
 * A notice is born in the ledger (billing.c settles the charge that takes an account's balance
 * below its threshold; store_ledger_commit writes the notice into the webhook outbox in that
 * charge's own transaction). This module's thread (ms-webhook) takes due notices out of the
 * outbox and POSTs each to its account's webhook, signed with the account's secret, with a
 * timeout, retrying failures that may pass (timeouts, connection errors, 5xx, 408, 429) with a
 * growing delay. Nothing here runs on an event loop or in the ledger writer: the only thing they
 * do is hook_wake, a short lock. The outbox is the queue, so it survives restarts and takes no
 * memory; the thread reads at most HOOK_BATCH notices at a time. Rules: docs/API.md
 * ("Notifications"), docs/BILLING.md ("Low-balance notices").
 */
#ifndef MS_WEBHOOK_H
#define MS_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/buf.h"
#include "config/config.h"
#include "store/store.h"

/* Deliveries of one notice, the first included, before it is given up. */
#define HOOK_MAX_ATTEMPTS 8
/* The signature header: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">". */
#define HOOK_SIGNATURE_HEADER "x-modelswitch-signature"

typedef struct hook hook_t;

/* Starts the sender thread with its own store handle; notices already due (left by an earlier
 * run) go at once. NULL with err on failure. */
hook_t *hook_start(const cfg_t *cfg, char *err, size_t errlen);
/* New notices are in the outbox (the ledger thread, after a commit). Never blocks beyond a
 * short lock. h is a hook_t (void * to fit bill_set_on_notice). */
void hook_wake(void *h);
/* Stops the thread: a delivery in flight is abandoned at once and stays in the outbox for the
 * next run. */
void hook_stop(hook_t *h);

/* ---- the wire format (pure functions) ---- */

/* The notice's JSON body: {"id","type","createdAt","accountId","balance","threshold"}.
 * Returns 0 or -1 (memory). */
int hook_body(const store_webhook *w, buf_t *b);
/* The signature header's value for body sent at unix time t, signed with secret: "t=<t>,v1=<64
 * hex digits>" into out (128 bytes). Returns 0 or -1. */
int hook_sign(const char *secret, int64_t t, const char *body, size_t len, char out[128]);
/* NULL when url may be an account's webhook (http:// or https://, a host, at most
 * STORE_WEBHOOK_URL_MAX bytes, no blanks or control characters, no user:password), else why
 * not: the end of a sentence that starts with the field's name ("must start with http://..."). */
const char *hook_url_check(const char *url);
/* scheme://host[:port] of url, what logs show of a webhook (its path and query may hold a
 * token of the receiver's). "?" when it cannot be parsed. */
void hook_url_origin(const char *url, char *out, size_t outlen);
/* 1 when a webhook must not connect to sa unless notifications.allow_private_networks: a
 * loopback, private, link-local, carrier-grade NAT, multicast, unspecified or reserved address
 * (IPv4, IPv6, and IPv4 inside IPv6). */
int hook_addr_private(const struct sockaddr *sa);
/* The delay before the next delivery of a notice that failed `attempts` times (>= 1). */
int64_t hook_backoff_ms(int64_t attempts);

#endif
