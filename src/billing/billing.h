/*
 * Money on the hot path: prices, balance holds, settlement, and the ledger writer.
 *
 * The gateway keeps every account's balance and every key's spend in memory. A request places a
 * hold for its worst-case cost before anything goes upstream; the hold is settled to the actual
 * cost when usage is known (or released when the request fails), and the settled charge is
 * queued for the ledger thread, which writes batches to the store in one transaction each (group
 * commit) and never runs on an event loop. Holds and settlement take a short per-account lock,
 * so the balance can never go below zero whatever the concurrency.
 *
 * In memory, per account: db_balance (as committed to the store), unflushed (settled charges
 * queued but not committed) and held (open holds). Available = db_balance - unflushed - held.
 * Per key: db_spent, unflushed and held against the key's spend_limit. The ledger thread also
 * follows account changes made by other processes (CLI top-ups) through store_accounts_since.
 * docs/BILLING.md has the rules.
 */
#ifndef MS_BILLING_H
#define MS_BILLING_H

#include <stddef.h>
#include <stdint.h>

#include "common/usage.h"
#include "config/config.h"
#include "store/store.h"

/* ---- prices (pricing.c) ---- */

/* A model's list price (provider price plus markup) in nano-USD per 1M tokens, rounded half up
 * to a whole nano-dollar per 1M tokens. */
int64_t price_list_per_mtok(const cfg_t *cfg, int64_t base_nusd_per_mtok);
/* The cost of a request's usage at list prices: each of the five billed counts times its own
 * price (reasoning is part of output and not priced apart), summed, then rounded half up to a
 * whole nano-dollar once per request (never per token). Negative counts count as 0; the result
 * saturates at INT64_MAX instead of overflowing. */
int64_t price_usage_cost(const cfg_t *cfg, const cfg_model *m, const usage_counts *u);
/* price_usage_cost of prompt_tokens plain input and completion_tokens output. */
int64_t price_cost(const cfg_t *cfg, const cfg_model *m, int64_t prompt_tokens,
                   int64_t completion_tokens);
/* The hold of a request: prompt_bound tokens at the dearest of the model's four prompt prices
 * (the cache split is only known afterwards, and a hold must bound every split) plus
 * output_bound tokens at the output price, rounded once like price_usage_cost. */
int64_t price_hold(const cfg_t *cfg, const cfg_model *m, int64_t prompt_bound,
                   int64_t output_bound);
/* A safe upper bound of a request's prompt tokens from its body: see docs/BILLING.md. */
int64_t price_prompt_bound(const char *body, size_t len);
/* The completion-token bound of a hold: the request's max_tokens when given (>= 0, capped at the
 * model's max_output_tokens when that is set), else the model's max_output_tokens, else cfg's
 * default (billing.default_max_output_tokens). */
int64_t price_output_bound(const cfg_t *cfg, const cfg_model *m, int64_t request_max_tokens);

/* ---- holds and settlement (billing.c) ---- */

typedef struct bill bill_t;

typedef struct bill_hold {
    int64_t account_id;
    int64_t key_id;
    int64_t amount_nusd; /* 0 once settled or released */
} bill_hold;

typedef enum {
    BILL_OK,
    BILL_INSUFFICIENT, /* 403 insufficient_balance */
    BILL_SPEND_LIMIT,  /* 403 spend_limit_reached */
    BILL_NO_ACCOUNT,   /* the key's account is unknown (just created elsewhere): 403 */
} bill_status;

/* Loads every account and key spend from the store (synchronously), then starts the ledger
 * thread with its own store handle. NULL with err on failure. */
bill_t *bill_start(const cfg_t *cfg, char *err, size_t errlen);
/* Commits everything queued, then stops the thread and frees. */
void bill_stop(bill_t *b);

/* Places a hold of amount_nusd for key (whose spend_limit_nusd, -1 = none, is taken from the
 * key as given). Never blocks beyond a short lock. */
bill_status bill_hold_place(bill_t *b, const store_key *key, int64_t amount_nusd, bill_hold *out);
/* Settles h: charges ev->charged_nusd, clamped so the balance cannot go below zero (the charge
 * actually made is written back into ev->charged_nusd and returned), releases the rest of the
 * hold, and queues ev for the ledger. ev's account_id/key_id are taken from h. */
int64_t bill_settle(bill_t *b, bill_hold *h, store_usage_event *ev);
/* Releases h without a charge and queues ev (charged 0) as the request's usage record. ev may be
 * NULL (nothing recorded). */
void bill_release(bill_t *b, bill_hold *h, store_usage_event *ev);

/* The account's balance as settled (db_balance - unflushed, not minus holds), for
 * GET /api/balance. Returns 0, or -1 if the account is unknown. */
int bill_balance(bill_t *b, int64_t account_id, int64_t *balance_nusd);
/* A key's spent amount as settled. Returns 0, or -1 if unknown. */
int bill_key_spent(bill_t *b, int64_t key_id, int64_t *spent_nusd);
/* The configuration the billing module prices with. */
const cfg_t *bill_cfg(bill_t *b);
/* Waits until everything settled so far is committed (tests, shutdown). Must not be called on
 * an event-loop thread. */
void bill_flush(bill_t *b);
/* The same, for at most max_ms: /api/ reads that want to see their own requests, but must not
 * hold a pool thread (and so the shutdown) while the store refuses writes. Returns 0 when
 * everything was committed, -1 on timeout. */
int bill_flush_for(bill_t *b, int64_t max_ms);
/* How the ledger stands, for the readiness probe and the metrics: cheap (a short lock), never
 * waits for the store. */
typedef struct bill_health_info {
    uint64_t queue_depth;     /* usage events settled and not yet committed (journaled ones too) */
    uint64_t journal_events;  /* of which in the local journal (docs/BILLING.md, "Store outages") */
    int64_t lag_ms;           /* how long the oldest of them has waited; 0 when none waits */
    int store_ok;             /* the ledger thread's last store write or read succeeded */
    int64_t store_failing_ms; /* when it did not: for how long it has been failing */
} bill_health_info;
void bill_health(bill_t *b, bill_health_info *out);
/* Tells the ledger thread to re-read accounts now (after a top-up made through the API). */
void bill_poke(bill_t *b);
/* Waits, for at most max_ms, until the ledger thread has re-read the accounts in a poll that
 * started after this call: whoever is about to make a new account usable (the key cache before
 * it publishes a new key, the operator API before it answers a create or top-up) calls it, so
 * that the account's first request finds its balance instead of a false 403. Returns 0, or -1
 * on timeout. Must not be called on an event-loop thread. */
int bill_poll_sync(bill_t *b, int64_t max_ms);

/* ---- low-balance notices (docs/BILLING.md, "Low-balance notices") ---- */

/* Sets an account's low-balance threshold in nano-dollars, 0 for none (no threshold, or no
 * webhook to tell). An unchanged threshold keeps its state; a new one is armed when the settled
 * balance is at or above it. From then on, the settlement whose charge takes the settled balance
 * below an armed threshold disarms it and carries a notice to the ledger, which writes it to the
 * webhook outbox in the charge's own transaction; a top-up that lifts the balance back re-arms
 * it. Returns 0, or -1 when billing does not know the account yet (bill_poll_sync, then again).
 * Safe on any thread; never blocks beyond a stripe lock. */
int bill_notify_set(bill_t *b, int64_t account_id, int64_t threshold_nusd);
/* fn(ud) is called on the ledger thread after each commit that wrote notices, to wake whoever
 * delivers them; it must not block. Set it before any traffic. */
void bill_set_on_notice(bill_t *b, void (*fn)(void *ud), void *ud);

/* ---- several instances (docs/BILLING.md, "Several instances"; src/shared/) ----
 *
 * With a shared state (Redis), the hold checks across instances are Redis's: each instance tells
 * Redis what it reserves of each account's balance and key's spend limit (its open holds, its
 * settled charges not yet committed, and committed ones Redis's copy of the balance may not show
 * yet), as snapshots numbered by a per-entry version so that the newest wins whatever order
 * concurrent snapshots arrive in. This instance's own view of the balance only seeds Redis. */

/* What this instance reserves of one account and one key, and what it knows of them. */
typedef struct bill_snap {
    int64_t account_id, key_id;
    uint64_t aver, kver;  /* versions: > 0 once changed */
    int64_t aresv, kresv; /* this instance's reservation */
    int64_t abal, aseq;   /* the account's committed balance as last read, and its row's seq */
    int64_t kspent;       /* the key's committed spend as known here */
} bill_snap;

/* One entry the ledger thread (or a re-registration) tells Redis. */
typedef struct bill_push {
    char kind; /* 'a' account, 'k' key */
    int64_t id;
    uint64_t ver;
    int64_t resv;
    /* A row the store returned after the charges the reservation no longer counts: the
     * account's balance and seq, or the key's spent (seq unused). */
    int has_row;
    int64_t row_value, row_seq;
} bill_push;

/* Shared mode: holds are checked by Redis (bill_hold_reserve), settlement does not clamp to this
 * instance's view, and after each poll the ledger thread calls push (blocking is fine there) with
 * what it owes Redis; push returns 0 when every entry was applied. Before any traffic. */
void bill_set_pusher(bill_t *b, int (*push)(void *ud, const bill_push *p, size_t n), void *ud);
/* Counts a hold of amount_nusd in this instance's reservations without checking it (Redis is
 * asked next, with the snapshot *sn taken after it). BILL_OK or BILL_NO_ACCOUNT. */
bill_status bill_hold_reserve(bill_t *b, const store_key *key, int64_t amount_nusd, bill_hold *out,
                              bill_snap *sn);
/* Takes back a hold Redis refused or that was abandoned before use: nothing is recorded. */
void bill_hold_undo(bill_t *b, bill_hold *h);
/* The current snapshot of an account and key (after a settlement or release). -1: unknown. */
int bill_snapshot(bill_t *b, int64_t account_id, int64_t key_id, bill_snap *sn);
/* The ledger journal's path this process holds (a slot of store.journal: docs/CONFIG.md). */
const char *bill_journal_path(const bill_t *b);
/* fn(ud, b) is called by bill_stop once everything it could commit is committed, before b is
 * freed (the shared state leaves Redis then). Before any traffic. */
void bill_set_on_stopped(bill_t *b, void (*fn)(void *ud, bill_t *b), void *ud);
/* Every entry this instance ever reserved anything of, for a Redis that lost its data; *out
 * malloc'd. */
int bill_reservations(bill_t *b, bill_push **out, size_t *n);

#endif
