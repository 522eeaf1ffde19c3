/*
 * Unit tests for the issue-3 half of src/store/sqlite.c: usage batches (store_ledger_commit) and
 * their all-or-nothing and exactly-once guarantees, the account change sequence
 * (store_accounts_since), key patches, the usage and transaction listings, usage statistics, key
 * spends, and store_audit against a consistent database and after raw-SQL corruption; and the
 * dashboard's additions: transactions' balance after, the operator's account view (keys,
 * spent), notification settings and the webhook outbox written by the ledger.
 * Expected values are read back through a separate SQLite connection wherever possible, so a
 * store that agreed with itself but wrote the wrong rows would still fail.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/util.h"
#include "config/config.h"
#include "store/sqlite_wal.h"
#include "store/store.h"
#include "tap.h"
#include "testdb.h"

#define USD 1000000000LL

static char tmpdir[64];
static char dbpath[128];
static cfg_t *cfg;

/* The fixture every case starts from (fresh database each time): */
static int64_t acct_a, acct_b; /* $10 and $1 */
static store_key key_a, key_a2, key_b;

static void setup(void)
{
    tap_mkdtemp("test_ledger", tmpdir);
    cfg = calloc(1, sizeof(*cfg));
}

static void teardown(void)
{
    free(cfg);
    tap_rmtree(tmpdir);
}

static int64_t sql_int(const char *sql)
{
    return tdb_int(sql);
}

/* One text value (first row, first column) into out; "" when there is none. */
static const char *sql_text(const char *sql, char *out, size_t outlen)
{
    return tdb_text(sql, out, outlen);
}

static int sql_exec(const char *sql)
{
    return tdb_exec(sql);
}

/* A fresh database with the fixture accounts and keys; NULL on failure. */
static store_t *fresh(const char *name)
{
    char err[256] = "", key[64];
    store_t *s;

    snprintf(dbpath, sizeof(dbpath), "%s/%s.db", tmpdir, name);
    tdb_use(cfg, dbpath);
    s = store_open(cfg, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "store_open: %s\n", err);
        return NULL;
    }
    if (store_account_create(s, "a", 10 * USD, &acct_a) != STORE_OK ||
        store_account_create(s, "b", 1 * USD, &acct_b) != STORE_OK ||
        store_key_create(s, acct_a, KEY_PROXY, "a1", 0, -1, key, &key_a) != STORE_OK ||
        store_key_create(s, acct_a, KEY_PROXY, "a2", 0, 5 * USD, key, &key_a2) != STORE_OK ||
        store_key_create(s, acct_b, KEY_PROXY, "b1", 0, -1, key, &key_b) != STORE_OK) {
        fprintf(stderr, "fixture: %s\n", store_errmsg(s));
        store_close(s);
        return NULL;
    }
    return s;
}

static store_usage_event event(const char *rid, int64_t account, int64_t key, const char *model,
                               int64_t prompt, int64_t completion, int64_t charged)
{
    store_usage_event e;

    memset(&e, 0, sizeof(e));
    snprintf(e.request_id, sizeof(e.request_id), "%s", rid);
    e.account_id = account;
    e.key_id = key;
    snprintf(e.model, sizeof(e.model), "%s", model);
    snprintf(e.provider, sizeof(e.provider), "openai");
    e.usage.input = prompt;
    e.usage.output = completion;
    e.charged_nusd = charged;
    e.status = 200;
    e.latency_ms = 123;
    e.created_at_ms = 1750000000000LL;
    return e;
}

static int64_t balance(store_t *s, int64_t id)
{
    store_account a;
    return store_account_get(s, id, &a) == STORE_OK ? a.balance_nusd : INT64_MIN;
}

static int64_t spent(store_t *s, int64_t id)
{
    store_key k;
    return store_key_get(s, id, &k) == STORE_OK ? k.spent_nusd : INT64_MIN;
}

static int64_t ledger_mismatches(void)
{
    return sql_int("SELECT count(*) FROM accounts a WHERE a.balance_nusd != "
                   "(SELECT coalesce(sum(amount_nusd), 0) FROM ledger_transactions t "
                   "WHERE t.account_id = a.id)");
}

static void test_commit_happy_path(void)
{
    store_t *s = fresh("happy");
    store_usage_event ev[3];
    char txt[256];
    int64_t key_seq, acct_seq;

    CHECK(s != NULL);
    if (!s) return;
    key_seq = sql_int("SELECT value FROM meta WHERE key = 'key_seq'");
    acct_seq = sql_int("SELECT value FROM meta WHERE key = 'account_seq'");
    ev[0] = event("req-1", acct_a, key_a.id, "gpt-4o", 11, 3, 1500);
    ev[1] = event("req-2", acct_a, key_a2.id, "gpt-4o-mini", 100, 20, 2 * USD);
    ev[2] = event("req-3", acct_b, key_b.id, "echo", 5, 5, 0); /* free: a record only */
    ev[2].status = 499;
    ev[2].estimated = 1;
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);

    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 1500 - 2 * USD);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD);
    CHECK_EQ_INT(spent(s, key_a.id), 1500);
    CHECK_EQ_INT(spent(s, key_a2.id), 2 * USD);
    CHECK_EQ_INT(spent(s, key_b.id), 0);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* The usage rows, every field. */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 3);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id = 'req-1' AND account_id = "
                         "1 AND key_id = 1 AND model = 'gpt-4o' AND provider = 'openai' AND "
                         "prompt_tokens = 11 AND completion_tokens = 3 AND charged_nusd = 1500 "
                         "AND status = 200 AND estimated = 0 AND latency_ms = 123 AND "
                         "created_at_ms = 1750000000000"),
                 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id = 'req-3' AND "
                         "status = 499 AND estimated = 1 AND charged_nusd = 0"),
                 1);

    /* One usage transaction per charged event, none for the free one. */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE type = 'usage'"), 2);
    CHECK_EQ_STR(sql_text("SELECT description FROM ledger_transactions WHERE request_id = 'req-1'",
                          txt, sizeof(txt)),
                 "gpt-4o 11+3 tokens");
    CHECK_EQ_INT(sql_int("SELECT amount_nusd FROM ledger_transactions WHERE request_id = 'req-1'"),
                 -1500);
    CHECK_EQ_INT(sql_int("SELECT account_id FROM ledger_transactions WHERE request_id = 'req-2'"),
                 acct_a);
    CHECK_EQ_INT(
        sql_int("SELECT created_at_ms FROM ledger_transactions WHERE request_id = 'req-2'"),
        1750000000000LL);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE request_id = 'req-3'"), 0);

    /* Both charges are to one account: one UPDATE of it in the batch, one sequence value; key
     * spend moves no key sequence. */
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), acct_seq + 1);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'key_seq'"), key_seq);
    {
        store_key k;
        CHECK_EQ_INT(store_key_get(s, key_a.id, &k), STORE_OK);
        CHECK_EQ_INT(k.seq, key_a.seq);
    }
    CHECK_EQ_INT(store_audit(s, NULL), 0);

    /* An empty batch is a no-op. */
    CHECK_EQ_INT(store_ledger_commit(s, NULL, 0), STORE_OK);
    store_close(s);
}

static int audit(store_t *s, char *out, size_t outlen);

/* How many blocks wait in usage_recent and how many are in usage_blocks (a macro: the line). */
#define CHECK_BLOCKS(recent, blocks)                                                               \
    do {                                                                                           \
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_recent"), recent);                        \
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_blocks"), blocks);                        \
    } while (0)

/* Commits two events never offered before. */
static int commit_two(store_t *s, store_usage_event a, store_usage_event b)
{
    store_usage_event ev[2] = {a, b};
    return store_ledger_commit_new(s, ev, 2);
}

/* SQLite keeps the small groups of rows of a commit of many accounts in usage_recent, one block
 * a chunk, and moves them into usage_blocks once there are enough of them (migrations 11 and
 * 12), inside the commit that reaches it (both limits lowered here: 3 rows, 2 accounts). A commit
 * of fewer accounts, and a block of many rows, go straight into usage_blocks. Every row reads the
 * same wherever its block is, ids go on rising, a retry finds its events in either table, and a
 * handle that did not write the waiting blocks counts them when it opens. test_recent_merge checks
 * the merging of a move. */
static void test_recent_fold(void)
{
    store_t *s = fresh("fold");
    store_usage_event ev[1];
    char err[256] = "", q[128];

    CHECK(s != NULL);
    if (!s || tdb_pg) goto out;
    store_ledger_set_recent(3, 2);
    /* two accounts: their blocks wait */
    CHECK_EQ_INT(commit_two(s, event("f1", acct_a, key_a.id, "gpt-4o", 1, 1, 10),
                            event("f2", acct_b, key_b.id, "gpt-4o", 1, 1, 20)),
                 STORE_OK);
    CHECK_BLOCKS(1, 0); /* one block of both */
    /* two more: four rows reach three, all move in this commit, a block an account */
    CHECK_EQ_INT(commit_two(s, event("f3", acct_a, key_a2.id, "gpt-4o", 1, 1, 30),
                            event("f4", acct_b, key_b.id, "gpt-4o", 1, 1, 40)),
                 STORE_OK);
    CHECK_BLOCKS(0, 2);
    /* one account: straight into usage_blocks */
    ev[0] = event("f5", acct_a, key_a.id, "gpt-4o", 1, 1, 50);
    CHECK_EQ_INT(store_ledger_commit_new(s, ev, 1), STORE_OK);
    CHECK_BLOCKS(0, 3);
    /* two waiting when the handle closes */
    CHECK_EQ_INT(commit_two(s, event("f6", acct_a, key_a.id, "gpt-4o", 1, 1, 60),
                            event("f7", acct_b, key_b.id, "gpt-4o", 1, 1, 70)),
                 STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_recent"), 1);
    store_close(s);
    s = store_open(cfg, err, sizeof(err));
    CHECK(s != NULL);
    if (!s) goto out;
    /* retried: f4 (moved), f5 (written at once) and f6 (waiting) are found and skipped; f8 and
     * f9 are new, two blocks of two accounts: with the two the new handle counted, all move */
    store_usage_event re[5] = {
        event("f4", acct_b, key_b.id, "gpt-4o", 1, 1, 40),
        event("f5", acct_a, key_a.id, "gpt-4o", 1, 1, 50),
        event("f6", acct_a, key_a.id, "gpt-4o", 1, 1, 60),
        event("f8", acct_b, key_b.id, "gpt-4o", 1, 1, 80),
        event("f9", acct_a, key_a.id, "gpt-4o", 1, 1, 90),
    };
    CHECK_EQ_INT(store_ledger_commit(s, re, 5), STORE_OK);
    CHECK_BLOCKS(0, 5);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 9);
    CHECK_EQ_INT(sql_int("SELECT count(DISTINCT request_id) FROM usage"), 9);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 240);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - 210);
    /* ids rise in the order the events were written */
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY request_id) "
                         "AS p FROM usage) WHERE p IS NOT NULL AND id <= p"),
                 0);
    snprintf(q, sizeof q, "SELECT id FROM usage WHERE account_id = %lld ORDER BY id DESC LIMIT 1",
             (long long)acct_a);
    CHECK_EQ_INT(sql_int(q), sql_int("SELECT id FROM usage WHERE request_id = 'f9'"));
    /* a block of many rows (a busy account's chunk) goes straight into usage_blocks, the other
     * account's one row waits */
    store_usage_event many[41];
    for (int i = 0; i < 40; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "g%d", i);
        many[i] = event(rid, acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    }
    many[40] = event("h0", acct_b, key_b.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit_new(s, many, 41), STORE_OK);
    CHECK_BLOCKS(1, 6);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 50);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 280);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
out:
    store_ledger_set_recent(0, 0);
    if (s) store_close(s);
}

/* An import of an empty store's export leaves the store empty: it takes the same import again
 * (the posting mark an import sets is a value of meta, which the emptiness check counts). */
static void test_import_empty(void)
{
    if (tdb_pg) return;
    char err[256] = "", *buf = NULL;
    size_t len = 0;
    snprintf(dbpath, sizeof(dbpath), "%s/imp-src.db", tmpdir);
    tdb_use(cfg, dbpath);
    store_t *a = store_open(cfg, err, sizeof(err));
    CHECK(a != NULL);
    if (!a) return;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f && store_export(a, f) == STORE_OK);
    if (f) fclose(f);
    store_close(a);
    snprintf(dbpath, sizeof(dbpath), "%s/imp-dst.db", tmpdir);
    tdb_use(cfg, dbpath);
    store_t *b = store_open(cfg, err, sizeof(err));
    CHECK(b != NULL);
    for (int k = 0; b && buf && k < 2; k++) {
        FILE *in = fmemopen(buf, len, "r");
        CHECK(in != NULL);
        if (!in) break;
        CHECK_EQ_INT(store_import(b, in, NULL), STORE_OK);
        fclose(in);
    }
    store_close(b);
    free(buf);
}

/* Every column of the usage rows `where` selects, in id order, as one text. */
#define ROW_TEXT                                                                                   \
    "request_id||':'||key_id||':'||model||':'||provider||':'||prompt_tokens||':'||"                \
    "completion_tokens||':'||charged_nusd||':'||status||':'||estimated||':'||latency_ms||':'||"    \
    "created_at_ms||':'||cached_tokens||':'||cache_write_tokens||':'||cache_write_1h_tokens||':'"  \
    "||reasoning_tokens||':'||cached"
static const char *rows_text(const char *where, char *out, size_t outlen)
{
    char q[1024];
    snprintf(q, sizeof q,
             "SELECT group_concat(t, ' ') FROM (SELECT " ROW_TEXT " AS t FROM usage WHERE %s "
             "ORDER BY id)",
             where);
    return sql_text(q, out, outlen);
}

/* An account's request ids as `usage` lists them by account, in id order either way. */
static const char *rids_of(int64_t account, int desc, char *out, size_t outlen)
{
    char q[256];
    snprintf(q, sizeof q,
             "SELECT group_concat(request_id, ',') FROM (SELECT request_id FROM usage WHERE "
             "account_id = %lld ORDER BY id%s)",
             (long long)account, desc ? " DESC" : "");
    return sql_text(q, out, outlen);
}

/* An event whose every field differs from the others' (v), the model alternating. */
static store_usage_event event_v(const char *rid, int64_t account, int64_t key, int v)
{
    store_usage_event e =
        event(rid, account, key, v % 2 ? "gpt-4o-mini" : "gpt-4o", 10 + v, v, 100 + v);
    if (v % 3 == 0) snprintf(e.provider, sizeof e.provider, "azure");
    e.usage.cached_input = v % 5;
    e.usage.cache_write = v % 7;
    e.usage.cache_write_1h = v % 4;
    e.usage.reasoning = v % 3;
    e.status = v % 4 ? 200 : 499;
    e.estimated = v % 4 == 0;
    e.cached = v % 6 == 0;
    e.latency_ms = 1000 - v;
    e.created_at_ms = 1750000000000LL + (v % 3) * 7000 - v; /* not in order */
    return e;
}

/* A move groups the waiting rows by account in the order it reads them, which is id order as
 * the ledger writes them; waiting blocks whose ids interleave (a store written by hand) are
 * sorted instead, so each account's rows still move as one block in id order. */
static void test_recent_fold_unordered(void)
{
    store_t *s = fresh("foldun");
    char err[256] = "", got[256], q[200];

    CHECK(s != NULL);
    if (!s || tdb_pg) goto out;
    store_ledger_set_recent(8, 2);
    /* a batch whose repeated request ids leave two ids unused (n, n+1, -, -, n+4, n+5) */
    store_usage_event b1[6] = {
        event("u1", acct_a, key_a.id, "gpt-4o", 1, 1, 1),
        event("u2", acct_b, key_b.id, "gpt-4o", 1, 1, 1),
        event("u1", acct_a, key_a.id, "gpt-4o", 1, 1, 1),
        event("u2", acct_b, key_b.id, "gpt-4o", 1, 1, 1),
        event("u3", acct_a, key_a.id, "gpt-4o", 1, 1, 1),
        event("u4", acct_b, key_b.id, "gpt-4o", 1, 1, 1),
    };
    CHECK_EQ_INT(store_ledger_commit_new(s, b1, 6), STORE_OK);
    int64_t n = sql_int("SELECT max(id) FROM usage") - 5;
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id = 'u3'"), 1);
    snprintf(q, sizeof q, "SELECT count(*) FROM usage WHERE id IN (%lld, %lld)", (long long)(n + 2),
             (long long)(n + 3));
    CHECK_EQ_INT(sql_int(q), 0);
    /* the next batch's block put into that gap: it ends first, so a move reads it first */
    CHECK_EQ_INT(commit_two(s, event("u5", acct_a, key_a.id, "gpt-4o", 1, 1, 1),
                            event("u6", acct_b, key_b.id, "gpt-4o", 1, 1, 1)),
                 STORE_OK);
    snprintf(q, sizeof q,
             "UPDATE usage_recent SET id = id - 4, first_id = first_id - 4 WHERE id = %lld",
             (long long)(n + 7));
    CHECK_EQ_INT(sql_exec(q), SQLITE_OK);
    store_close(s); /* the new handle counts the waiting rows again */
    s = store_open(cfg, err, sizeof(err));
    CHECK(s != NULL);
    if (!s) goto out;
    CHECK_EQ_INT(commit_two(s, event("u7", acct_a, key_a.id, "gpt-4o", 1, 1, 1),
                            event("u8", acct_b, key_b.id, "gpt-4o", 1, 1, 1)),
                 STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_recent"), 0);
    snprintf(q, sizeof q, "SELECT count(*) FROM usage_blocks WHERE id > %lld", (long long)n);
    CHECK_EQ_INT(sql_int(q), 2); /* a block an account */
    CHECK(strcmp(rids_of(acct_a, 0, got, sizeof got), "u1,u5,u3,u7") == 0);
    CHECK(strcmp(rids_of(acct_a, 1, got, sizeof got), "u7,u3,u5,u1") == 0);
    CHECK(strcmp(rids_of(acct_b, 0, got, sizeof got), "u2,u6,u4,u8") == 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
out:
    store_ledger_set_recent(0, 0);
    if (s) store_close(s);
}

/* A move writes each account's waiting rows as one block: rows read as they did (before it too,
 * from blocks of several accounts), an account's blocks stay disjoint id ranges (a block ends
 * before one written straight into usage_blocks meanwhile), a block holds at most SQU_ROWS_MAX
 * rows, a retry finds events in a moved block, and a damaged block is moved as it is without
 * stopping the ledger. */
static void test_recent_merge(void)
{
    store_t *s = fresh("merge");
    char before[4096], after[4096], txt[256], q[256];

    CHECK(s != NULL);
    if (!s || tdb_pg) goto out;
    store_ledger_set_recent(6, 2);
    CHECK_EQ_INT(
        commit_two(s, event_v("r1", acct_a, key_a.id, 1), event_v("r2", acct_b, key_b.id, 2)),
        STORE_OK);
    CHECK_EQ_INT(
        commit_two(s, event_v("r3", acct_a, key_a2.id, 3), event_v("r4", acct_b, key_b.id, 4)),
        STORE_OK);
    store_usage_event one = event_v("r5", acct_a, key_a.id, 5);
    CHECK_EQ_INT(store_ledger_commit_new(s, &one, 1), STORE_OK); /* straight into usage_blocks */
    CHECK_BLOCKS(2, 1);
    rows_text("1", before, sizeof before);
    CHECK(strstr(before, "r1:") && strstr(before, "r5:"));
    /* read by account across both tables, one of them blocks of both accounts */
    CHECK_EQ_STR(rids_of(acct_a, 0, txt, sizeof txt), "r1,r3,r5");
    CHECK_EQ_STR(rids_of(acct_a, 1, txt, sizeof txt), "r5,r3,r1");
    CHECK_EQ_STR(rids_of(acct_b, 1, txt, sizeof txt), "r4,r2");
    CHECK_EQ_INT(
        commit_two(s, event_v("r6", acct_a, key_a.id, 6), event_v("r7", acct_b, key_b.id, 7)),
        STORE_OK);
    /* a: r1+r3 (r5's block bounds the run), r6; b: r2+r4+r7 */
    CHECK_BLOCKS(0, 4);
    snprintf(q, sizeof q,
             "SELECT group_concat(n) FROM (SELECT n FROM usage_blocks WHERE account_id = %lld "
             "ORDER BY id)",
             (long long)acct_a);
    CHECK_EQ_STR(sql_text(q, txt, sizeof txt), "2,1,1");
    CHECK_EQ_STR(rows_text("request_id NOT IN ('r6', 'r7')", after, sizeof after), before);
    CHECK_EQ_STR(rids_of(acct_a, 0, txt, sizeof txt), "r1,r3,r5,r6");
    CHECK_EQ_STR(rids_of(acct_a, 1, txt, sizeof txt), "r6,r5,r3,r1");
    CHECK_EQ_STR(rids_of(acct_b, 0, txt, sizeof txt), "r2,r4,r7");
    CHECK_EQ_STR(rids_of(acct_b, 1, txt, sizeof txt), "r7,r4,r2");
    /* a time window inside a merged block: r4 and r7 (created 6,996 and 6,993 ms after the base),
     * not r2 (13,998) */
    snprintf(q, sizeof q,
             "SELECT group_concat(request_id) FROM usage WHERE account_id = %lld AND "
             "created_at_ms >= 1750000003000 AND created_at_ms <= 1750000010000",
             (long long)acct_b);
    CHECK_EQ_STR(sql_text(q, txt, sizeof txt), "r4,r7");
    /* a retry of a merged event is found and skipped */
    store_usage_event again = event_v("r3", acct_a, key_a2.id, 3);
    CHECK_EQ_INT(store_ledger_commit(s, &again, 1), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 7);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - (101 + 103 + 105 + 106));
    CHECK_EQ_INT(store_audit(s, NULL), 0);

    /* a block stops at SQU_ROWS_MAX rows: 40 commits of a's 31 rows and b's one */
    store_ledger_set_recent(1280, 2);
    store_usage_event ev[32];
    int v = 100, ok = 1;
    for (int c = 0; c < 40 && ok; c++) {
        for (int i = 0; i < 32; i++, v++) {
            char rid[16];
            snprintf(rid, sizeof rid, "m%d", v);
            ev[i] = event_v(rid, i < 31 ? acct_a : acct_b, i < 31 ? key_a.id : key_b.id, v);
        }
        ok = store_ledger_commit_new(s, ev, 32) == STORE_OK;
    }
    CHECK(ok);
    CHECK_BLOCKS(0, 4 + 3);
    snprintf(q, sizeof q,
             "SELECT group_concat(n) FROM (SELECT n FROM usage_blocks WHERE account_id = %lld "
             "AND id > (SELECT id FROM usage WHERE request_id = 'r6') ORDER BY id)",
             (long long)acct_a);
    CHECK_EQ_STR(sql_text(q, txt, sizeof txt), "1024,216");
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 7 + 1280);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM (SELECT id, lag(id) OVER (ORDER BY id) AS p FROM "
                         "usage) WHERE id <= p"),
                 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* damaged blocks waiting (bytes that do not decode, none at all) are moved as they are */
    store_ledger_set_recent(3, 2);
    snprintf(q, sizeof q,
             "INSERT INTO usage_recent VALUES (9000000, %lld, 8999999, 2, 0, 0, x'0102'), "
             "(9000001, %lld, 9000001, 1, 0, 0, x'')",
             (long long)acct_b, (long long)acct_b);
    CHECK_EQ_INT(sql_exec(q), SQLITE_OK);
    /* blocks damaged after their charges were posted (migration 13's mark past them): a commit
     * that posts at once reads the rows past the mark, none of theirs */
    CHECK_EQ_INT(sql_exec("UPDATE meta SET value = 9000001 WHERE key = 'posted_through'"),
                 SQLITE_OK);
    store_close(s); /* the new handle counts the waiting block */
    s = store_open(cfg, txt, sizeof txt);
    CHECK(s != NULL);
    if (!s) goto out;
    CHECK_EQ_INT(
        commit_two(s, event_v("d1", acct_a, key_a.id, 1), event_v("d2", acct_b, key_b.id, 2)),
        STORE_OK);
    CHECK_BLOCKS(0, 4 + 3 + 4);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_blocks WHERE id = 9000000 AND "
                         "first_id = 8999999 AND n = 2 AND rows = x'0102'"),
                 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage_blocks WHERE id = 9000001 AND rows = x''"), 1);
    snprintf(q, sizeof q,
             "SELECT count(*) FROM usage WHERE account_id = %lld AND request_id = 'd1'",
             (long long)acct_a);
    CHECK_EQ_INT(sql_int(q), 1);
out:
    store_ledger_set_recent(0, 0);
    if (s) store_close(s);
}

static void test_commit_idempotent(void)
{
    store_t *s = fresh("idem");
    store_usage_event ev[3];

    CHECK(s != NULL);
    if (!s) return;
    ev[0] = event("dup", acct_a, key_a.id, "gpt-4o", 1, 1, 100);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    /* The retried event (even with other numbers) is skipped whole; the new one is billed. */
    ev[0].charged_nusd = 999;
    ev[1] = event("new", acct_a, key_a.id, "gpt-4o", 1, 1, 10);
    /* The same request twice in one batch is billed once too. */
    ev[2] = event("new", acct_a, key_a.id, "gpt-4o", 1, 1, 10);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 110);
    CHECK_EQ_INT(spent(s, key_a.id), 110);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 2);
    CHECK_EQ_INT(sql_int("SELECT charged_nusd FROM usage WHERE request_id = 'dup'"), 100);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE type = 'usage'"), 2);
    /* The same in a batch large enough for the one INSERT (more than 3 events): it fails on the
     * first known id, and the chunk goes again row by row. */
    store_usage_event big[6];
    big[0] = ev[0];                                              /* known */
    big[1] = event("c1", acct_a, key_a.id, "gpt-4o", 1, 1, 20);  /* new */
    big[2] = event("c2", acct_a, key_a2.id, "gpt-4o", 1, 1, 30); /* new */
    big[3] = big[2];                                             /* twice in the batch */
    big[4] = ev[1];                                              /* known */
    big[5] = event("c3", acct_b, key_b.id, "gpt-4o", 1, 1, 40);  /* new */
    CHECK_EQ_INT(store_ledger_commit(s, big, 6), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 160);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - 40);
    CHECK_EQ_INT(spent(s, key_a.id), 130);
    CHECK_EQ_INT(spent(s, key_a2.id), 30);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 5);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);

    /* Events never offered before (store_ledger_commit_new): billed, a repeat in the batch
     * still skipped. Then that batch replayed as a retry is skipped whole, across accounts and
     * blocks, and mixed with new events. */
    store_usage_event nw[4];
    nw[0] = event("n1", acct_a, key_a.id, "gpt-4o", 1, 1, 7);
    nw[1] = event("n2", acct_b, key_b.id, "gpt-4o", 1, 1, 8);
    nw[2] = nw[0];
    nw[3] = event("n3", acct_a, key_a2.id, "gpt-4o", 1, 1, 9);
    CHECK_EQ_INT(store_ledger_commit_new(s, nw, 4), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 176);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - 48);
    nw[2] = event("n4", acct_b, key_b.id, "gpt-4o", 1, 1, 11);
    CHECK_EQ_INT(store_ledger_commit(s, nw, 4), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 176);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - 59);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 9);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    /* An event replayed long after (another block of its account came since): still found. */
    store_usage_event later = event("n5", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit_new(s, &later, 1), STORE_OK);
    CHECK_EQ_INT(store_ledger_commit(s, nw, 1), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - 177);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 10);
    /* An event without a time is stamped when written: its replay is found all the same. */
    store_usage_event untimed = event("n6", acct_b, key_b.id, "gpt-4o", 1, 1, 2);
    untimed.created_at_ms = 0;
    CHECK_EQ_INT(store_ledger_commit_new(s, &untimed, 1), STORE_OK);
    usleep(20000); /* the replay's stamp is another millisecond */
    CHECK_EQ_INT(store_ledger_commit(s, &untimed, 1), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - 61);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 11);
    /* Misused (a stored event passed as new), SQLite records it twice and the audit says so;
     * PostgreSQL's unique index skips it. */
    CHECK_EQ_INT(store_ledger_commit_new(s, nw, 1), STORE_OK);
    char rep[512];
    CHECK_EQ_INT(audit(s, rep, sizeof rep), tdb_pg ? 0 : 1);
    if (!tdb_pg) CHECK(strstr(rep, "request id n1 recorded 2 times\n") != NULL);
    store_close(s);
}

/* Batches are written STORE_LEDGER_ROWS (1024) events per INSERT: a batch across three such
 * chunks, of two accounts and three keys, with free events, a 128-byte model name and events a
 * previous batch already recorded scattered through it, bills exactly the new charged ones. */
static void test_commit_many_rows(void)
{
    enum { N = 2100 };
    store_t *s = fresh("rows");
    static store_usage_event ev[N], old[N];
    char rid[32], txt[256];
    int64_t want_a = 0, want_b = 0, want_k[3] = {0, 0, 0}, want_tx = 0, nold = 0;
    const store_key *keys[3] = {&key_a, &key_a2, &key_b};
    char longmodel[128];

    CHECK(s != NULL);
    if (!s) return;
    memset(longmodel, 'm', sizeof longmodel); /* fills the field: no terminator */
    for (int i = 0; i < N; i++) {
        snprintf(rid, sizeof rid, "rows-%03d", i);
        int k = i % 3;
        int64_t acct = k == 2 ? acct_b : acct_a, charge = (i % 7 == 0) ? 0 : 1000 + i;
        ev[i] = event(rid, acct, keys[k]->id, "gpt-4o", i, 2 * i, charge);
        if (i == 40) memcpy(ev[i].model, longmodel, sizeof longmodel);
        ev[i].created_at_ms = 1750000000000LL + i;
        if (i % 5 == 1) {
            /* recorded earlier, with another charge: the batch must skip it */
            old[nold] = ev[i];
            old[nold].charged_nusd = 7;
            nold++;
            want_tx++;
            *(acct == acct_a ? &want_a : &want_b) += 7;
            want_k[k] += 7;
            continue;
        }
        if (charge > 0) {
            want_tx++;
            *(acct == acct_a ? &want_a : &want_b) += charge;
            want_k[k] += charge;
        }
    }
    CHECK_EQ_INT(store_ledger_commit(s, old, (size_t)nold), STORE_OK);
    CHECK_EQ_INT(store_ledger_commit(s, ev, N), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - want_a);
    CHECK_EQ_INT(balance(s, acct_b), 1 * USD - want_b);
    for (int k = 0; k < 3; k++)
        CHECK_EQ_INT(spent(s, keys[k]->id), want_k[k]);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), N);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE type = 'usage'"), want_tx);
    CHECK_EQ_INT(sql_int("SELECT charged_nusd FROM usage WHERE request_id = 'rows-011'"), 7);
    CHECK_EQ_INT(
        sql_int("SELECT amount_nusd FROM ledger_transactions WHERE request_id = 'rows-011'"), -7);
    CHECK_EQ_INT(
        sql_int("SELECT amount_nusd FROM ledger_transactions WHERE request_id = 'rows-099'"),
        -1099);
    CHECK_EQ_INT(
        sql_int("SELECT created_at_ms FROM ledger_transactions WHERE request_id = 'rows-099'"),
        1750000000099LL);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE request_id = 'rows-070'"),
                 0);
    /* the last chunk's rows, and the ids across chunks in the batch's order */
    CHECK_EQ_INT(
        sql_int("SELECT amount_nusd FROM ledger_transactions WHERE request_id = 'rows-2099'"),
        -3099);
    int64_t id_gap = sql_int("SELECT (SELECT id FROM usage WHERE request_id = 'rows-2099') - "
                             "(SELECT id FROM usage WHERE request_id = 'rows-1023')");
    CHECK(id_gap > 0);
    /* SQLite numbers a batch's rows in order, a skipped one leaving its id unused */
    if (!tdb_pg) CHECK_EQ_INT(id_gap, 2099 - 1023);
    CHECK_EQ_STR(
        sql_text("SELECT description FROM ledger_transactions WHERE request_id = 'rows-097'", txt,
                 sizeof(txt)),
        "gpt-4o 97+194 tokens");
    CHECK_EQ_INT(sql_int("SELECT length(description) FROM ledger_transactions WHERE request_id = "
                         "'rows-040'"),
                 128 + strlen(" 40+80 tokens"));
    CHECK_EQ_INT(sql_int("SELECT length(model) FROM usage WHERE request_id = 'rows-040'"), 128);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    /* the same batch again: every event is known, nothing moves */
    CHECK_EQ_INT(store_ledger_commit(s, ev, N), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - want_a);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE type = 'usage'"), want_tx);
    store_close(s);
}

/* Everything a failed batch could have touched, to compare before and after. */
typedef struct {
    int64_t bal_a, bal_b, spent_a, spent_b, usage, txns, acct_seq, key_seq;
} snapshot;

static snapshot snap(store_t *s)
{
    snapshot x;
    x.bal_a = balance(s, acct_a);
    x.bal_b = balance(s, acct_b);
    x.spent_a = spent(s, key_a.id);
    x.spent_b = spent(s, key_b.id);
    x.usage = sql_int("SELECT count(*) FROM usage");
    x.txns = sql_int("SELECT count(*) FROM ledger_transactions");
    x.acct_seq = sql_int("SELECT value FROM meta WHERE key = 'account_seq'");
    x.key_seq = sql_int("SELECT value FROM meta WHERE key = 'key_seq'");
    return x;
}

static void check_unchanged(const snapshot *x, const snapshot *y)
{
    CHECK_EQ_INT(y->bal_a, x->bal_a);
    CHECK_EQ_INT(y->bal_b, x->bal_b);
    CHECK_EQ_INT(y->spent_a, x->spent_a);
    CHECK_EQ_INT(y->spent_b, x->spent_b);
    CHECK_EQ_INT(y->usage, x->usage);
    CHECK_EQ_INT(y->txns, x->txns);
    CHECK_EQ_INT(y->acct_seq, x->acct_seq);
    CHECK_EQ_INT(y->key_seq, x->key_seq);
}

static void test_commit_all_or_nothing(void)
{
    store_t *s = fresh("atomic");
    store_usage_event ev[3];
    snapshot before, after;

    CHECK(s != NULL);
    if (!s) return;
    ev[0] = event("ok-1", acct_a, key_a.id, "gpt-4o", 1, 1, 100);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    before = snap(s);

    /* The third event would take b below zero: the first two must not stay behind. */
    ev[0] = event("x-1", acct_a, key_a.id, "gpt-4o", 1, 1, 100);
    ev[1] = event("x-2", acct_b, key_b.id, "gpt-4o", 1, 1, USD / 2);
    ev[2] = event("x-3", acct_b, key_b.id, "gpt-4o", 1, 1, USD / 2 + 1);
    if (tdb_pg) {
        /* PostgreSQL clamps the charge to what the balance still holds (several instances:
         * postgres.c), and records the charge actually made everywhere */
        CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
        CHECK_EQ_INT(balance(s, acct_b), 0);
        CHECK_EQ_INT(sql_int("SELECT charged_nusd FROM usage WHERE request_id = 'x-3'"), USD / 2);
        CHECK_EQ_INT(
            sql_int("SELECT amount_nusd FROM ledger_transactions WHERE request_id = 'x-3'"),
            -USD / 2);
        CHECK_EQ_INT(spent(s, key_b.id) - before.spent_b, USD);
        CHECK_EQ_INT(store_audit(s, NULL), 0);
        /* a charge that finds nothing left: a usage row charged 0, no transaction */
        ev[0] = event("x-4", acct_b, key_b.id, "gpt-4o", 1, 1, 5);
        CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
        CHECK_EQ_INT(sql_int("SELECT charged_nusd FROM usage WHERE request_id = 'x-4'"), 0);
        CHECK_EQ_INT(sql_int("SELECT count(*) FROM ledger_transactions WHERE request_id = 'x-4'"),
                     0);
        CHECK_EQ_INT(store_audit(s, NULL), 0);
        ev[0] = event("x-1", acct_a, key_a.id, "gpt-4o", 1, 1, 100);
    } else {
        CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_ERR);
        CHECK(strstr(store_errmsg(s), "x-3") != NULL);
        CHECK(strstr(store_errmsg(s), "below zero") != NULL);
        after = snap(s);
        check_unchanged(&before, &after);
    }

    /* Exactly to zero is fine. */
    ev[2].charged_nusd = USD / 2;
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_b), 0);
    before = snap(s);

    /* An unknown account, a key of another account, an unknown key: refused, nothing kept. */
    ev[0] = event("y-1", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    ev[1] = event("y-2", 4242, key_a.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    after = snap(s);
    check_unchanged(&before, &after);
    ev[1] = event("y-2", acct_a, key_b.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    CHECK(strstr(store_errmsg(s), "key") != NULL);
    ev[1] = event("y-2", acct_a, 4242, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    after = snap(s);
    check_unchanged(&before, &after);

    /* The ledger's own handle (store_ledger_writer, the billing thread's): SQLite's foreign-key
     * checks are off there and the batch checks each account and key itself, free events'
     * (charged 0) included, and a key of another account too. */
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    ev[1] = event("y-2", 4242, key_a.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    ev[1] = event("y-2", acct_a, 4242, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    ev[1] = event("y-2", 4242, key_a.id, "gpt-4o", 1, 1, 0);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    ev[1] = event("y-2", acct_a, 4242, "gpt-4o", 1, 1, 0);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    CHECK(tdb_pg || strstr(store_errmsg(s), "key 4242 of account") != NULL);
    after = snap(s);
    check_unchanged(&before, &after);
    if (!tdb_pg) {
        /* (PostgreSQL's foreign keys stay on: a free event of a key of another account is
         * recorded there, as it was here before) */
        ev[2] = event("y-3", acct_b, key_a.id, "gpt-4o", 1, 1, 0);
        CHECK_EQ_INT(store_ledger_commit(s, ev + 2, 1), STORE_ERR);
        CHECK(strstr(store_errmsg(s), "y-3") != NULL);
        after = snap(s);
        check_unchanged(&before, &after);
    }
    /* a free event of a key the batch also charges, one of a key it does not: written */
    ev[0] = event("w-1", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    ev[1] = event("w-2", acct_a, key_a.id, "gpt-4o", 1, 1, 0);
    ev[2] = event("w-3", acct_a, key_a2.id, "gpt-4o", 1, 1, 0);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id LIKE 'w-%'"), 3);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    before = snap(s);
    ev[0] = event("y-1", acct_a, key_a.id, "gpt-4o", 1, 1, 1);

    /* Invalid events are refused before anything is written. */
    ev[1] = event("y-2", acct_a, key_a.id, "gpt-4o", 1, 1, -1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    CHECK(strstr(store_errmsg(s), "negative charge") != NULL);
    ev[1] = event("", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    ev[1] = event("y-2", acct_a, key_a.id, "gpt-4o", -1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    ev[1] = event("y-2", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    memset(ev[1].request_id, 'r', sizeof(ev[1].request_id)); /* no terminator */
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_ERR);
    after = snap(s);
    check_unchanged(&before, &after);

    /* A spend that would overflow the key's total is refused, not turned into a float. */
    CHECK_EQ_INT(sql_exec("UPDATE api_keys SET spent_nusd = 9223372036854775800 WHERE id = 1"),
                 SQLITE_OK);
    ev[0] = event("z-1", acct_a, key_a.id, "gpt-4o", 1, 1, 100);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_ERR);
    CHECK_EQ_INT(sql_int("SELECT spent_nusd FROM api_keys WHERE id = 1"), 9223372036854775800LL);
    if (!tdb_pg)
        CHECK_EQ_INT(sql_int("SELECT typeof(spent_nusd) = 'integer' FROM api_keys WHERE id = 1"),
                     1);

    /* After all those failures the handle still works. */
    ev[0] = event("z-2", acct_a, key_a2.id, "gpt-4o", 1, 1, 7);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(spent(s, key_a2.id), 7);
    store_close(s);
}

typedef struct {
    int64_t ids[32], seqs[32], balances[32];
    int n;
} acct_log;

static void acct_cb(void *ud, const store_account *a)
{
    acct_log *l = ud;
    if (l->n < 32) {
        l->ids[l->n] = a->id;
        l->seqs[l->n] = a->seq;
        l->balances[l->n] = a->balance_nusd;
        l->n++;
    }
}

static void test_accounts_since(void)
{
    store_t *s = fresh("since"), *r = NULL;
    char err[256];
    acct_log l;
    int64_t max = -1, c = 0;
    store_usage_event ev[2];

    CHECK(s != NULL);
    if (!s) return;
    r = store_open(cfg, err, sizeof(err)); /* the reader is another handle, like the gateway's */
    CHECK(r != NULL);
    if (!r) goto cleanup;

    /* The two creates. */
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_accounts_since(r, 0, acct_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_INT(l.ids[0], acct_a);
    CHECK_EQ_INT(l.seqs[0], 1);
    CHECK_EQ_INT(l.ids[1], acct_b);
    CHECK_EQ_INT(l.seqs[1], 2);
    CHECK_EQ_INT(max, 2);

    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_accounts_since(r, 2, acct_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 0);
    CHECK_EQ_INT(max, 2);

    /* A topup of b, a charge of a, a new account: seen in that order with their new balances. */
    CHECK_EQ_INT(store_account_topup(s, acct_b, 3 * USD, "card"), STORE_OK);
    ev[0] = event("s-1", acct_a, key_a.id, "gpt-4o", 1, 1, USD);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(store_account_create(s, "c", 0, &c), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_accounts_since(r, max, acct_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK_EQ_INT(l.ids[0], acct_b);
    CHECK_EQ_INT(l.seqs[0], 3);
    CHECK_EQ_INT(l.balances[0], 4 * USD);
    CHECK_EQ_INT(l.ids[1], acct_a);
    CHECK_EQ_INT(l.seqs[1], 4);
    CHECK_EQ_INT(l.balances[1], 9 * USD);
    CHECK_EQ_INT(l.ids[2], c);
    CHECK_EQ_INT(l.seqs[2], 5);
    CHECK_EQ_INT(max, 5);

    /* One batch charging a twice and b once: each account once, with its latest seq. A free
     * event changes no account. */
    ev[0] = event("s-2", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    ev[1] = event("s-3", acct_b, key_b.id, "gpt-4o", 1, 1, 0);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_accounts_since(r, max, acct_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_INT(l.ids[0], acct_a);
    CHECK_EQ_INT(l.seqs[0], 6);
    CHECK_EQ_INT(max, 6);
    ev[0] = event("s-4", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    ev[1] = event("s-5", acct_a, key_a2.id, "gpt-4o", 1, 1, 1);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_accounts_since(r, max, acct_cb, &l, &max), STORE_OK);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_INT(l.seqs[0], 7); /* two charges to one account: one change, one value */
    CHECK_EQ_INT(l.balances[0], 9 * USD - 3);
    CHECK_EQ_INT(max, 7);

cleanup:
    store_close(r);
    store_close(s);
}

static void test_key_update(void)
{
    store_t *s = fresh("keyupd");
    store_key_patch p;
    store_key k, g;
    int64_t seq0;

    CHECK(s != NULL);
    if (!s) return;
    seq0 = sql_int("SELECT value FROM meta WHERE key = 'key_seq'");

    /* Each field alone; the others stay as they were. */
    memset(&p, 0, sizeof(p));
    p.set_name = 1;
    snprintf(p.name, sizeof(p.name), "renamed");
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_STR(k.name, "renamed");
    CHECK_EQ_INT(k.active, 1);
    CHECK_EQ_INT(k.spend_limit_nusd, -1);
    CHECK_EQ_INT(k.seq, seq0 + 1);
    CHECK_EQ_INT(store_key_get(s, key_a.id, &g), STORE_OK);
    CHECK(memcmp(&k, &g, sizeof(k)) == 0);

    memset(&p, 0, sizeof(p));
    p.set_active = 1;
    p.active = 0;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_INT(k.active, 0);
    CHECK_EQ_STR(k.name, "renamed");
    CHECK_EQ_INT(k.seq, seq0 + 2);

    memset(&p, 0, sizeof(p));
    p.set_spend_limit = 1;
    p.spend_limit_nusd = 3 * USD;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_INT(k.spend_limit_nusd, 3 * USD);
    CHECK_EQ_INT(k.active, 0);

    memset(&p, 0, sizeof(p));
    p.set_rpm = 1;
    p.rpm = 60;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_INT(k.rpm, 60);
    CHECK_EQ_INT(k.tpm, -1);

    memset(&p, 0, sizeof(p));
    p.set_tpm = 1;
    p.tpm = 5000;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_INT(k.tpm, 5000);
    CHECK_EQ_INT(k.rpm, 60);

    memset(&p, 0, sizeof(p));
    p.set_expires = 1;
    p.expires_at_ms = 1900000000000LL;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, NULL), STORE_OK);
    CHECK_EQ_INT(store_key_get(s, key_a.id, &k), STORE_OK);
    CHECK_EQ_INT(k.expires_at_ms, 1900000000000LL);
    CHECK_EQ_INT(k.seq, seq0 + 6);
    CHECK_EQ_STR(k.name, "renamed");
    CHECK_EQ_INT(k.spend_limit_nusd, 3 * USD);

    /* All at once, back to the defaults; the key's identity and spend are untouched. */
    memset(&p, 0, sizeof(p));
    p.set_name = p.set_active = p.set_spend_limit = p.set_rpm = p.set_tpm = p.set_expires = 1;
    p.active = 1;
    p.spend_limit_nusd = -1;
    p.rpm = -1;
    p.tpm = -1;
    p.expires_at_ms = 0;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_OK);
    CHECK_EQ_STR(k.name, "");
    CHECK_EQ_INT(k.active, 1);
    CHECK_EQ_INT(k.spend_limit_nusd, -1);
    CHECK_EQ_INT(k.rpm, -1);
    CHECK_EQ_INT(k.tpm, -1);
    CHECK_EQ_INT(k.expires_at_ms, 0);
    CHECK_EQ_INT(k.id, key_a.id);
    CHECK_EQ_INT(k.account_id, key_a.account_id);
    CHECK_EQ_STR(k.prefix, key_a.prefix);
    CHECK(memcmp(k.hash, key_a.hash, sizeof(k.hash)) == 0);
    CHECK_EQ_INT(k.created_at_ms, key_a.created_at_ms);
    CHECK_EQ_INT(k.seq, seq0 + 7);
    /* Only the patched key changed. */
    CHECK_EQ_INT(store_key_get(s, key_a2.id, &g), STORE_OK);
    CHECK(memcmp(&g, &key_a2, sizeof(g)) == 0);

    /* Unknown, deleted, invalid: refused without taking a sequence value. */
    seq0 = sql_int("SELECT value FROM meta WHERE key = 'key_seq'");
    memset(&p, 0, sizeof(p));
    p.set_rpm = 1;
    p.rpm = 1;
    CHECK_EQ_INT(store_key_update(s, 4242, &p, &k), STORE_NOTFOUND);
    CHECK_EQ_STR(store_errmsg(s), "key 4242 not found");
    CHECK_EQ_INT(store_key_delete(s, key_b.id), STORE_OK);
    seq0++;
    CHECK_EQ_INT(store_key_update(s, key_b.id, &p, &k), STORE_NOTFOUND);
    CHECK_EQ_INT(sql_int("SELECT rpm FROM api_keys WHERE id = 3"), -1);
    p.rpm = -2;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_ERR);
    memset(&p, 0, sizeof(p));
    p.set_spend_limit = 1;
    p.spend_limit_nusd = -5;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_ERR);
    memset(&p, 0, sizeof(p));
    p.set_expires = 1;
    p.expires_at_ms = -1;
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_ERR);
    memset(&p, 0, sizeof(p));
    p.set_name = 1;
    memset(p.name, 'n', sizeof(p.name)); /* no terminator */
    CHECK_EQ_INT(store_key_update(s, key_a.id, &p, &k), STORE_ERR);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'key_seq'"), seq0);
    CHECK_EQ_INT(store_key_update(s, key_a.id, NULL, &k), STORE_ERR);
    store_close(s);
}

/* n charged events for account a alternating two models, request ids "p-0".."p-(n-1)". */
static int commit_series(store_t *s, int n)
{
    store_usage_event ev[64];
    char rid[16];

    if (n > 64) return STORE_ERR;
    for (int i = 0; i < n; i++) {
        snprintf(rid, sizeof(rid), "p-%d", i);
        ev[i] = event(rid, acct_a, i % 2 ? key_a2.id : key_a.id, i % 2 ? "model-odd" : "model-even",
                      10 + i, i, 1000 + i);
    }
    return store_ledger_commit(s, ev, (size_t)n);
}

static void test_usage_and_transaction_pages(void)
{
    store_t *s = fresh("pages");
    store_usage_row *u = NULL;
    store_txn *t = NULL;
    size_t n = 0;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(commit_series(s, 7), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_a, USD, "card"), STORE_OK);

    /* Newest first: p-6 .. p-0. */
    CHECK_EQ_INT(store_usage_list(s, acct_a, 3, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(u[0].request_id, "p-6");
        CHECK_EQ_STR(u[1].request_id, "p-5");
        CHECK_EQ_STR(u[2].request_id, "p-4");
        CHECK(u[0].id > u[1].id && u[1].id > u[2].id);
        CHECK_EQ_INT(u[0].key_id, key_a.id);
        CHECK_EQ_STR(u[0].model, "model-even");
        CHECK_EQ_STR(u[0].provider, "openai");
        CHECK_EQ_INT(u[0].prompt_tokens, 16);
        CHECK_EQ_INT(u[0].completion_tokens, 6);
        CHECK_EQ_INT(u[0].charged_nusd, 1006);
        CHECK_EQ_INT(u[0].status, 200);
        CHECK_EQ_INT(u[0].estimated, 0);
        CHECK_EQ_INT(u[0].latency_ms, 123);
        CHECK_EQ_INT(u[0].created_at_ms, 1750000000000LL);
        CHECK_EQ_INT(u[1].key_id, key_a2.id);
    }
    free(u);
    CHECK_EQ_INT(store_usage_list(s, acct_a, 3, 5, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(u[0].request_id, "p-1");
        CHECK_EQ_STR(u[1].request_id, "p-0");
    }
    free(u);
    CHECK_EQ_INT(store_usage_list(s, acct_a, 3, 7, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(u);
    CHECK_EQ_INT(store_usage_list(s, acct_a, 0, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(u);
    CHECK_EQ_INT(store_usage_list(s, acct_b, 10, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(u);
    CHECK_EQ_INT(store_usage_list(s, 4242, 10, 0, &u, &n), STORE_NOTFOUND);
    CHECK(u == NULL && n == 0);
    CHECK_EQ_INT(store_usage_list(s, acct_a, -1, 0, &u, &n), STORE_ERR);
    CHECK_EQ_INT(store_usage_list(s, acct_a, 1, -1, &u, &n), STORE_ERR);

    /* Transactions: the top-up, then p-6 .. p-0, then the opening balance. */
    CHECK_EQ_INT(store_transactions_list(s, acct_a, 2, 0, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(t[0].type, "payment");
        CHECK_EQ_INT(t[0].amount_nusd, USD);
        CHECK_EQ_STR(t[0].description, "card");
        CHECK_EQ_STR(t[0].request_id, "");
        CHECK_EQ_STR(t[1].type, "usage");
        CHECK_EQ_INT(t[1].amount_nusd, -1006);
        CHECK_EQ_STR(t[1].description, "model-even 16+6 tokens");
        CHECK_EQ_STR(t[1].request_id, "p-6");
        CHECK_EQ_INT(t[1].created_at_ms, 1750000000000LL);
        CHECK(t[0].id > t[1].id);
    }
    free(t);
    CHECK_EQ_INT(store_transactions_list(s, acct_a, 100, 8, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_STR(t[0].description, "initial balance");
        CHECK_EQ_INT(t[0].amount_nusd, 10 * USD);
    }
    free(t);
    CHECK_EQ_INT(store_transactions_list(s, 4242, 10, 0, &t, &n), STORE_NOTFOUND);
    CHECK_EQ_INT(store_transactions_list(s, acct_a, -3, 0, &t, &n), STORE_ERR);

    /* A description longer than the struct's field is cut at a character boundary. */
    {
        char desc[600];
        size_t i = 0;
        /* 249 times "é" (2 bytes): byte 255, the first left out, is the second half of one. */
        for (; i + 2 < 500; i += 2)
            memcpy(desc + i, "\xc3\xa9", 2);
        desc[i] = '\0';
        CHECK_EQ_INT(store_account_topup(s, acct_b, 1, desc), STORE_OK);
        CHECK_EQ_INT(store_transactions_list(s, acct_b, 1, 0, &t, &n), STORE_OK);
        CHECK_EQ_INT(n, 1);
        if (n == 1) {
            size_t len = strlen(t[0].description);
            CHECK_EQ_INT(len, 254);
            /* Ends on a whole é: the last byte is a continuation, its lead byte just before. */
            CHECK_EQ_INT((unsigned char)t[0].description[len - 1], 0xa9);
            CHECK_EQ_INT((unsigned char)t[0].description[len - 2], 0xc3);
        }
        free(t);
    }
    store_close(s);
}

static void test_usage_stats(void)
{
    store_t *s = fresh("stats");
    store_usage_stat all, *by = NULL;
    store_usage_event ev[3];
    size_t n = 0;

    CHECK(s != NULL);
    if (!s) return;
    /* No usage yet: zeros and no rows. */
    CHECK_EQ_INT(store_usage_stats(s, acct_a, &all, &by, &n), STORE_OK);
    CHECK_EQ_INT(all.requests, 0);
    CHECK_EQ_INT(all.spend_nusd, 0);
    CHECK_EQ_INT(n, 0);
    free(by);

    CHECK_EQ_INT(commit_series(s, 6), STORE_OK);
    /* A free request, a model that ties in spend with another (ordered by name then), and
     * usage of another account that must not count. */
    ev[0] = event("f-1", acct_a, key_a.id, "model-free", 4, 0, 0);
    ev[1] = event("f-2", acct_a, key_a.id, "a-tie", 1, 1, 3009);
    ev[2] = event("f-3", acct_b, key_b.id, "model-even", 1000, 1000, 5);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);

    CHECK_EQ_INT(store_usage_stats(s, acct_a, &all, &by, &n), STORE_OK);
    /* even: i = 0, 2, 4 -> prompt 10+12+14, completion 0+2+4, spend 1000+1002+1004 = 3006;
     * odd: i = 1, 3, 5 -> prompt 11+13+15, completion 1+3+5, spend 3009. */
    CHECK_EQ_INT(all.requests, 8);
    CHECK_EQ_INT(all.prompt_tokens, 36 + 39 + 4 + 1);
    CHECK_EQ_INT(all.completion_tokens, 6 + 9 + 1);
    CHECK_EQ_INT(all.spend_nusd, 3006 + 3009 + 3009);
    CHECK_EQ_STR(all.model, "");
    CHECK_EQ_INT(n, 4);
    if (n == 4) {
        CHECK_EQ_STR(by[0].model, "a-tie");
        CHECK_EQ_INT(by[0].spend_nusd, 3009);
        CHECK_EQ_INT(by[0].requests, 1);
        CHECK_EQ_STR(by[1].model, "model-odd");
        CHECK_EQ_INT(by[1].spend_nusd, 3009);
        CHECK_EQ_INT(by[1].requests, 3);
        CHECK_EQ_INT(by[1].prompt_tokens, 39);
        CHECK_EQ_INT(by[1].completion_tokens, 9);
        CHECK_EQ_STR(by[2].model, "model-even");
        CHECK_EQ_INT(by[2].spend_nusd, 3006);
        CHECK_EQ_INT(by[2].prompt_tokens, 36);
        CHECK_EQ_STR(by[3].model, "model-free");
        CHECK_EQ_INT(by[3].spend_nusd, 0);
        CHECK_EQ_INT(by[3].requests, 1);
    }
    free(by);

    CHECK_EQ_INT(store_usage_stats(s, acct_b, &all, NULL, NULL), STORE_OK);
    CHECK_EQ_INT(all.requests, 1);
    CHECK_EQ_INT(all.prompt_tokens, 1000);
    CHECK_EQ_INT(all.spend_nusd, 5);
    CHECK_EQ_INT(store_usage_stats(s, 4242, &all, &by, &n), STORE_NOTFOUND);
    CHECK(by == NULL && n == 0);
    store_close(s);
}

/* Every billed count reaches its column: prompt_tokens is the total (OpenAI's), the kinds are
 * parts of it; the description stays "<model> <prompt>+<completion> tokens". Events a sane
 * billing layer never sends are refused before anything is written. */
static void test_usage_counts(void)
{
    store_t *s = fresh("counts");
    store_usage_event ev[2];
    store_usage_row *u = NULL;
    size_t n = 0;
    char txt[256];

    CHECK(s != NULL);
    if (!s) return;
    ev[0] = event("c-1", acct_a, key_a.id, "claude", 0, 0, 777);
    ev[0].usage = (usage_counts){.input = 100,
                                 .cached_input = 2000,
                                 .cache_write = 30,
                                 .cache_write_1h = 4,
                                 .output = 50,
                                 .reasoning = 20};
    ev[1] = event("c-2", acct_a, key_a.id, "gpt-4o", 7, 3, 0); /* plain: zeros elsewhere */
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id = 'c-1' AND "
                         "prompt_tokens = 2134 AND cached_tokens = 2000 AND "
                         "cache_write_tokens = 30 AND cache_write_1h_tokens = 4 AND "
                         "completion_tokens = 50 AND reasoning_tokens = 20"),
                 1);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id = 'c-2' AND "
                         "prompt_tokens = 7 AND cached_tokens = 0 AND cache_write_tokens = 0 AND "
                         "cache_write_1h_tokens = 0 AND completion_tokens = 3 AND "
                         "reasoning_tokens = 0"),
                 1);
    CHECK_EQ_STR(sql_text("SELECT description FROM ledger_transactions WHERE request_id = 'c-1'",
                          txt, sizeof(txt)),
                 "claude 2134+50 tokens");
    CHECK_EQ_INT(store_usage_list(s, acct_a, 10, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(u[1].request_id, "c-1");
        CHECK_EQ_INT(u[1].prompt_tokens, 2134);
        CHECK_EQ_INT(u[1].cached_tokens, 2000);
        CHECK_EQ_INT(u[1].cache_write_tokens, 30);
        CHECK_EQ_INT(u[1].cache_write_1h_tokens, 4);
        CHECK_EQ_INT(u[1].completion_tokens, 50);
        CHECK_EQ_INT(u[1].reasoning_tokens, 20);
        CHECK_EQ_INT(u[0].cached_tokens + u[0].reasoning_tokens, 0);
    }
    free(u);
    /* the multi-row INSERT binds every column of every row: 32 rows in one statement */
    store_usage_event many[32];
    for (int i = 0; i < 32; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "m-%d", i);
        many[i] = event(rid, acct_a, key_a.id, "claude", 0, 0, 1);
        many[i].usage = (usage_counts){i, i + 1, i + 2, i + 3, i + 4, i};
    }
    CHECK_EQ_INT(store_ledger_commit(s, many, 32), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage WHERE request_id LIKE 'm-%' AND "
                         "prompt_tokens = 4 * reasoning_tokens + 6 AND "
                         "cached_tokens = reasoning_tokens + 1 AND "
                         "cache_write_tokens = reasoning_tokens + 2 AND "
                         "cache_write_1h_tokens = reasoning_tokens + 3 AND "
                         "completion_tokens = reasoning_tokens + 4"),
                 32);

    /* refused: any negative count, reasoning above output, a prompt sum that overflows */
    int64_t rows = sql_int("SELECT count(*) FROM usage");
    usage_counts bad[] = {
        {.cached_input = -1},
        {.cache_write = -1},
        {.cache_write_1h = -1},
        {.reasoning = -1},
        {.output = 5, .reasoning = 6},
        {.input = INT64_MAX, .cached_input = 1},
        {.cache_write = INT64_MAX / 2 + 1, .cache_write_1h = INT64_MAX / 2 + 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ev[0] = event("bad", acct_a, key_a.id, "m", 0, 0, 1);
        ev[0].usage = bad[i];
        CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_ERR);
    }
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), rows);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
}

/* GET /api/usage's filters (model, key, time range) and the statistics' groups (model, key,
 * UTC day): each group's rows add up to the overall row of the same filter. */
static void test_usage_filters_and_groups(void)
{
    store_t *s = fresh("filters");
    store_usage_event ev[6];
    store_usage_row *u = NULL;
    store_usage_stats_out o;
    size_t n = 0;
    const int64_t day0 = 20000LL * 86400000; /* 2024-10-04T00:00:00Z */

    CHECK(s != NULL);
    if (!s) return;
    ev[0] = event("g-1", acct_a, key_a.id, "m1", 10, 1, 100);
    ev[1] = event("g-2", acct_a, key_a2.id, "m1", 20, 2, 200);
    ev[2] = event("g-3", acct_a, key_a.id, "m2", 30, 3, 300);
    ev[3] = event("g-4", acct_a, key_a2.id, "m2", 40, 4, 400);
    ev[4] = event("g-5", acct_a, key_a.id, "m1", 50, 5, 500);
    ev[5] = event("g-6", acct_b, key_b.id, "m1", 60, 6, 600); /* another account */
    ev[0].created_at_ms = day0 - 1;                           /* the day before */
    ev[1].created_at_ms = day0;
    ev[2].created_at_ms = day0 + 3600000;
    ev[3].created_at_ms = day0 + 86400000 - 1;
    ev[4].created_at_ms = day0 + 86400000; /* the day after */
    ev[5].created_at_ms = day0;
    ev[2].usage.cached_input = 7;
    ev[2].usage.reasoning = 2;
    ev[4].usage.cache_write = 5;
    ev[4].usage.cache_write_1h = 6;
    CHECK_EQ_INT(store_ledger_commit(s, ev, 6), STORE_OK);

    store_usage_filter f = STORE_USAGE_ALL;
    f.model = "m1";
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(u[0].request_id, "g-5");
        CHECK_EQ_STR(u[2].request_id, "g-1");
    }
    free(u);
    f = STORE_USAGE_ALL;
    f.key_id = key_a2.id;
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    free(u);
    /* the key of another account finds nothing here */
    f.key_id = key_b.id;
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(u);
    /* the range is inclusive at both ends: the whole day0 */
    f = STORE_USAGE_ALL;
    f.from_ms = day0;
    f.to_ms = day0 + 86400000 - 1;
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(u[0].request_id, "g-4");
        CHECK_EQ_STR(u[2].request_id, "g-2");
    }
    free(u);
    /* all of them together, with paging */
    f.model = "m2";
    f.key_id = key_a.id;
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 0, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_STR(u[0].request_id, "g-3");
    free(u);
    CHECK_EQ_INT(store_usage_query(s, acct_a, &f, 50, 1, &u, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(u);
    CHECK_EQ_INT(store_usage_query(s, 4242, &f, 50, 0, &u, &n), STORE_NOTFOUND);

    /* statistics: everything, every group */
    unsigned all = 1u << STORE_BY_MODEL | 1u << STORE_BY_KEY | 1u << STORE_BY_DAY;
    CHECK_EQ_INT(store_usage_stats_query(s, acct_a, NULL, all, &o), STORE_OK);
    CHECK_EQ_INT(o.overall.requests, 5);
    CHECK_EQ_INT(o.overall.prompt_tokens, 150 + 7 + 5 + 6);
    CHECK_EQ_INT(o.overall.cached_tokens, 7);
    CHECK_EQ_INT(o.overall.cache_write_tokens, 5);
    CHECK_EQ_INT(o.overall.cache_write_1h_tokens, 6);
    CHECK_EQ_INT(o.overall.completion_tokens, 15);
    CHECK_EQ_INT(o.overall.reasoning_tokens, 2);
    CHECK_EQ_INT(o.overall.spend_nusd, 1500);
    CHECK_EQ_INT(o.n[STORE_BY_MODEL], 2);
    if (o.n[STORE_BY_MODEL] == 2) { /* m2 700, m1 800: highest spend first */
        CHECK_EQ_STR(o.by[STORE_BY_MODEL][0].model, "m1");
        CHECK_EQ_INT(o.by[STORE_BY_MODEL][0].spend_nusd, 800);
        CHECK_EQ_INT(o.by[STORE_BY_MODEL][0].cache_write_tokens, 5);
        CHECK_EQ_STR(o.by[STORE_BY_MODEL][1].model, "m2");
        CHECK_EQ_INT(o.by[STORE_BY_MODEL][1].cached_tokens, 7);
        CHECK_EQ_INT(o.by[STORE_BY_MODEL][1].reasoning_tokens, 2);
    }
    CHECK_EQ_INT(o.n[STORE_BY_KEY], 2);
    if (o.n[STORE_BY_KEY] == 2) { /* key_a 900, key_a2 600 */
        CHECK_EQ_INT(o.by[STORE_BY_KEY][0].key_id, key_a.id);
        CHECK_EQ_INT(o.by[STORE_BY_KEY][0].requests, 3);
        CHECK_EQ_INT(o.by[STORE_BY_KEY][0].spend_nusd, 900);
        CHECK_EQ_INT(o.by[STORE_BY_KEY][1].key_id, key_a2.id);
        CHECK_EQ_STR(o.by[STORE_BY_KEY][1].model, "");
    }
    CHECK_EQ_INT(o.n[STORE_BY_DAY], 3);
    if (o.n[STORE_BY_DAY] == 3) { /* oldest first */
        CHECK_EQ_INT(o.by[STORE_BY_DAY][0].day, 19999);
        CHECK_EQ_INT(o.by[STORE_BY_DAY][0].spend_nusd, 100);
        CHECK_EQ_INT(o.by[STORE_BY_DAY][1].day, 20000);
        CHECK_EQ_INT(o.by[STORE_BY_DAY][1].requests, 3);
        CHECK_EQ_INT(o.by[STORE_BY_DAY][1].spend_nusd, 900);
        CHECK_EQ_INT(o.by[STORE_BY_DAY][2].day, 20001);
    }
    store_usage_stats_free(&o);
    /* filtered, one group only */
    f = STORE_USAGE_ALL;
    f.from_ms = day0;
    f.to_ms = day0 + 86400000 - 1;
    CHECK_EQ_INT(store_usage_stats_query(s, acct_a, &f, 1u << STORE_BY_KEY, &o), STORE_OK);
    CHECK_EQ_INT(o.overall.requests, 3);
    CHECK_EQ_INT(o.overall.spend_nusd, 900);
    CHECK(o.by[STORE_BY_MODEL] == NULL && o.by[STORE_BY_DAY] == NULL);
    CHECK_EQ_INT(o.n[STORE_BY_KEY], 2);
    if (o.n[STORE_BY_KEY] == 2)
        CHECK_EQ_INT(o.by[STORE_BY_KEY][0].spend_nusd + o.by[STORE_BY_KEY][1].spend_nusd, 900);
    store_usage_stats_free(&o);
    f.model = "nothing";
    CHECK_EQ_INT(store_usage_stats_query(s, acct_a, &f, all, &o), STORE_OK);
    CHECK_EQ_INT(o.overall.requests, 0);
    CHECK_EQ_INT(o.overall.spend_nusd, 0);
    CHECK_EQ_INT(o.n[STORE_BY_MODEL] + o.n[STORE_BY_KEY] + o.n[STORE_BY_DAY], 0);
    store_usage_stats_free(&o);
    CHECK_EQ_INT(store_usage_stats_query(s, 4242, NULL, all, &o), STORE_NOTFOUND);
    CHECK(o.by[STORE_BY_MODEL] == NULL);
    store_close(s);
}

typedef struct {
    int64_t ids[16], accts[16], spent[16];
    int n;
} spend_log;

static void spend_cb(void *ud, int64_t key_id, int64_t account_id, int64_t spent_nusd)
{
    spend_log *l = ud;
    if (l->n < 16) {
        l->ids[l->n] = key_id;
        l->accts[l->n] = account_id;
        l->spent[l->n] = spent_nusd;
        l->n++;
    }
}

static void test_key_spends(void)
{
    store_t *s = fresh("spends");
    store_usage_event ev[2];
    spend_log l;

    CHECK(s != NULL);
    if (!s) return;
    ev[0] = event("k-1", acct_a, key_a2.id, "m", 1, 1, 40);
    ev[1] = event("k-2", acct_b, key_b.id, "m", 1, 1, 2);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    CHECK_EQ_INT(store_key_delete(s, key_b.id), STORE_OK);
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_key_spends(s, spend_cb, &l), STORE_OK);
    CHECK_EQ_INT(l.n, 3); /* the deleted key too */
    CHECK_EQ_INT(l.ids[0], key_a.id);
    CHECK_EQ_INT(l.accts[0], acct_a);
    CHECK_EQ_INT(l.spent[0], 0);
    CHECK_EQ_INT(l.ids[1], key_a2.id);
    CHECK_EQ_INT(l.accts[1], acct_a);
    CHECK_EQ_INT(l.spent[1], 40);
    CHECK_EQ_INT(l.ids[2], key_b.id);
    CHECK_EQ_INT(l.accts[2], acct_b);
    CHECK_EQ_INT(l.spent[2], 2);
    store_close(s);
}

/* Deferred posting (store_ledger_defer, migration 13's mark): a deferring handle's commits write
 * usage rows and leave the accounts' and keys' rows alone, and every read, through any handle,
 * still gives each balance and spend with every committed charge: the plain reads, the lists,
 * the key spends billing loads, the transactions' running balance, the audit. A posting writes
 * them once and moves the mark; a crash between two postings loses nothing (the rows are there,
 * the next posting reads them back); a posting by another handle, or a commit that posts at
 * once, meets the same rows without counting them twice. */
static int64_t raw_balance(int64_t id)
{
    char q[96];
    snprintf(q, sizeof q, "SELECT balance_nusd FROM accounts WHERE id = %lld", (long long)id);
    return sql_int(q);
}

static int64_t raw_spent(int64_t id)
{
    char q[96];
    snprintf(q, sizeof q, "SELECT spent_nusd FROM api_keys WHERE id = %lld", (long long)id);
    return sql_int(q);
}

static store_t *deferring(void)
{
    char err[256];
    store_t *w = store_open(cfg, err, sizeof err);
    if (!w) return NULL;
    if (store_ledger_writer(w) != STORE_OK || store_ledger_defer(w, 1) != STORE_OK ||
        store_ledger_post(w) != STORE_OK) {
        store_close(w);
        return NULL;
    }
    return w;
}

static void test_deferred_posting(void)
{
    store_t *s = fresh("deferred"), *w = NULL, *r = NULL;
    store_usage_event ev[3];
    char err[256];
    const int64_t a0 = 10 * USD, b0 = 1 * USD;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_ledger_defer(s, 1), tdb_pg ? STORE_ERR : STORE_OK);
    CHECK_EQ_INT(store_ledger_defer(s, 0), STORE_OK); /* s posts with each commit (below) */
    CHECK_EQ_INT(store_ledger_post(s), STORE_OK);     /* nothing to post: no write */
    if (tdb_pg) goto out;
    CHECK(tdb_pg || (w = deferring()) != NULL);
    CHECK((r = store_open(cfg, err, sizeof err)) != NULL);
    if (!w || !r) goto out;

    ev[0] = event("p-1", acct_a, key_a.id, "gpt-4o", 1, 1, 300);
    ev[1] = event("p-2", acct_a, key_a2.id, "gpt-4o", 1, 1, 20);
    ev[2] = event("p-3", acct_b, key_b.id, "gpt-4o", 1, 1, 5);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 3), STORE_OK);
    /* the rows stay as they were; every read has the charges */
    CHECK_EQ_INT(raw_balance(acct_a), a0);
    CHECK_EQ_INT(raw_spent(key_a.id), 0);
    for (int h = 0; h < 2; h++) {
        store_t *x = h ? r : w;
        CHECK_EQ_INT(balance(x, acct_a), a0 - 320);
        CHECK_EQ_INT(balance(x, acct_b), b0 - 5);
        CHECK_EQ_INT(spent(x, key_a.id), 300);
        CHECK_EQ_INT(spent(x, key_a2.id), 20);
        CHECK_EQ_INT(store_audit(x, NULL), 0);
    }
    store_account v;
    CHECK_EQ_INT(store_account_show(r, acct_a, &v), STORE_OK);
    CHECK_EQ_INT(v.balance_nusd, a0 - 320);
    CHECK_EQ_INT(v.spent_nusd, 320);
    store_account *all = NULL;
    size_t na = 0;
    CHECK_EQ_INT(store_account_list(r, &all, &na), STORE_OK);
    CHECK(na == 2 && all && all[0].balance_nusd == a0 - 320 && all[0].spent_nusd == 320 &&
          all[1].balance_nusd == b0 - 5 && all[1].spent_nusd == 5);
    free(all);
    store_key *ks = NULL;
    size_t nk = 0;
    CHECK_EQ_INT(store_key_list(r, acct_a, KEY_PROXY, &ks, &nk), STORE_OK);
    CHECK(nk == 2 && ks && ks[0].spent_nusd == 300 && ks[1].spent_nusd == 20);
    free(ks);
    spend_log l;
    memset(&l, 0, sizeof(l));
    CHECK_EQ_INT(store_key_spends(r, spend_cb, &l), STORE_OK);
    CHECK_EQ_INT(l.n, 3);
    CHECK_EQ_INT(l.spent[0] + l.spent[1] + l.spent[2], 325);
    store_txn *t = NULL;
    size_t nt = 0;
    CHECK_EQ_INT(store_transactions_list(r, acct_a, 10, 0, &t, &nt), STORE_OK);
    CHECK(nt >= 1 && t && t[0].balance_after_nusd == a0 - 320);
    free(t);

    /* a posting writes them and moves the mark; the reads do not move */
    int64_t seq = sql_int("SELECT value FROM meta WHERE key = 'account_seq'");
    CHECK_EQ_INT(store_ledger_post(w), STORE_OK);
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 320);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 5);
    CHECK_EQ_INT(raw_spent(key_a.id), 300);
    CHECK_EQ_INT(raw_spent(key_a2.id), 20);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'account_seq'"), seq + 2);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'posted_through'"),
                 sql_int("SELECT max(id) FROM usage"));
    CHECK_EQ_INT(balance(r, acct_a), a0 - 320);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    CHECK_EQ_INT(store_ledger_post(w), STORE_OK); /* nothing left */
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 320);

    /* another handle posts what w kept sums of: w's next posting finds nothing left */
    ev[0] = event("p-4", acct_a, key_a.id, "gpt-4o", 1, 1, 7);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    CHECK_EQ_INT(store_ledger_post(r), STORE_OK);
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 327);
    ev[0] = event("p-5", acct_a, key_a.id, "gpt-4o", 1, 1, 11);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    CHECK_EQ_INT(store_ledger_post(w), STORE_OK); /* read back: the mark moved under its sums */
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 338);
    CHECK_EQ_INT(raw_spent(key_a.id), 318);
    CHECK_EQ_INT(store_audit(r, NULL), 0);

    /* a crash between two postings: the rows are there, counted by every read, posted by the
     * next handle */
    ev[0] = event("p-6", acct_b, key_b.id, "gpt-4o", 1, 1, 50);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    store_close(w);
    w = NULL;
    CHECK_EQ_INT(balance(r, acct_b), b0 - 55);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 5);
    CHECK_EQ_INT(store_audit(r, NULL), 0);
    CHECK((w = deferring()) != NULL); /* posts at its start, as billing's ledger does */
    if (!w) goto out;
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 55);
    CHECK_EQ_INT(raw_spent(key_b.id), 55);

    /* a commit that posts at once (a handle that does not defer) posts what was left first */
    ev[0] = event("p-7", acct_b, key_b.id, "gpt-4o", 1, 1, 100);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    ev[0] = event("p-8", acct_b, key_b.id, "gpt-4o", 1, 1, 1000);
    CHECK_EQ_INT(store_ledger_commit_new(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 1155);
    CHECK_EQ_INT(raw_spent(key_b.id), 1155);
    CHECK_EQ_INT(balance(r, acct_b), b0 - 1155);
    CHECK_EQ_INT(ledger_mismatches(), 0);
    /* it leaves "all posted" (INT64_MAX), which its successors only read: however many rows
     * come after it, none is counted twice */
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'posted_through'"), INT64_MAX);
    ev[0] = event("p-8b", acct_b, key_b.id, "gpt-4o", 1, 1, 2);
    CHECK_EQ_INT(store_ledger_commit_new(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'posted_through'"), INT64_MAX);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 1157);
    CHECK_EQ_INT(balance(r, acct_b), b0 - 1157);
    /* a deferring commit puts the id before its rows in its place, so its rows are counted */
    int64_t before = sql_int("SELECT max(id) FROM usage");
    ev[0] = event("p-8c", acct_b, key_b.id, "gpt-4o", 1, 1, 3);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'posted_through'"), before);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 1157);
    CHECK_EQ_INT(balance(r, acct_b), b0 - 1160);
    CHECK_EQ_INT(store_ledger_post(w), STORE_OK);
    CHECK_EQ_INT(raw_balance(acct_b), b0 - 1160);
    CHECK_EQ_INT(raw_spent(key_b.id), 1160);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* a deferring commit checks what a charge would have: a key of another account fails the
     * batch whole, once its pair is not known */
    ev[0] = event("p-9", acct_a, key_a.id, "gpt-4o", 1, 1, 1);
    ev[1] = event("p-10", acct_a, key_b.id, "gpt-4o", 1, 1, 1);
    int64_t rows = sql_int("SELECT count(*) FROM usage");
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 2), STORE_ERR);
    CHECK(strstr(store_errmsg(w), "not found") != NULL);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), rows);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    CHECK_EQ_INT(store_ledger_post(w), STORE_OK);
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 339);
    CHECK_EQ_INT(store_audit(r, NULL), 0);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* an export posts first (its rows are the tables' own), and leaves the mark out: it is this
     * backend's, and an import sets it past what it brought */
    ev[0] = event("p-11", acct_a, key_a.id, "gpt-4o", 1, 1, 4);
    CHECK_EQ_INT(store_ledger_commit_new(w, ev, 1), STORE_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(store_export(r, f), STORE_OK);
        fclose(f);
        CHECK(buf && strstr(buf, "posted_through") == NULL);
        CHECK(buf && strstr(buf, "\"account_seq\"") != NULL);
    }
    free(buf);
    CHECK_EQ_INT(raw_balance(acct_a), a0 - 343);
    CHECK_EQ_INT(raw_spent(key_a.id), 323);
out:
    store_close(w);
    store_close(r);
    store_close(s);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Polls store_ckpt_count for up to ms milliseconds until it exceeds `above`. */
static uint64_t ckpt_wait(store_ckpt *c, uint64_t above, int ms)
{
    uint64_t n = store_ckpt_count(c);
    for (int waited = 0; n <= above && waited < ms; waited += 10) {
        usleep(10000);
        n = store_ckpt_count(c);
    }
    return n;
}

/* The checkpointer copies the writer's WAL into the database file on its own thread: once the
 * WAL has grown by a threshold, and after a quiet second for whatever is left. */
static void test_checkpointer(void)
{
    store_t *s = fresh("ckpt");
    char err[256] = "", walpath[160];
    store_usage_event ev[50];
    store_ckpt *c;

    CHECK(s != NULL);
    if (!s) return;
    snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
    c = store_ckpt_start(cfg, s, err, sizeof(err));
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "store_ckpt_start: %s\n", err);
        store_close(s);
        return;
    }
    if (tdb_pg) {
        /* the server checkpoints itself: a handle that does nothing, so billing needs no case */
        CHECK_EQ_INT(store_ckpt_count(c), 0);
        store_ckpt_stop(c);
        store_close(s);
        return;
    }
    off_t db0 = file_size(dbpath);
    /* Enough batches to grow the WAL past the threshold several times over. */
    int64_t total = 0;
    for (int b = 0; b < 120; b++) {
        for (int i = 0; i < 50; i++) {
            char rid[48];
            snprintf(rid, sizeof(rid), "ck-%d-%d", b, i);
            ev[i] = event(rid, acct_a, key_a.id, "m", 1, 1, 3);
            total += 3;
        }
        if (store_ledger_commit(s, ev, 50) != STORE_OK) {
            CHECK(0);
            break;
        }
    }
    uint64_t n = ckpt_wait(c, 0, 3000);
    CHECK(n >= 1);
    CHECK(file_size(dbpath) > db0); /* pages were copied into the database file */
    CHECK(file_size(walpath) >= 0);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - total);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* A small commit is checkpointed by the idle timer (about a second) */
    n = store_ckpt_count(c);
    ev[0] = event("ck-last", acct_a, key_a.id, "m", 1, 1, 3);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    CHECK(ckpt_wait(c, n, 3000) > n);
    /* and nothing is written, nothing is checkpointed: on a loaded machine the last checkpoint
     * may have copied only part of the WAL, and the idle timer finishes it once more, so the
     * count must settle within a few idle periods, and then stay */
    int settled = 0;
    for (int tries = 0; tries < 3 && !settled; tries++) {
        n = store_ckpt_count(c);
        usleep(1300000);
        settled = store_ckpt_count(c) == n;
    }
    CHECK(settled);

    store_ckpt_stop(c);
    /* the writer works on its own again (its auto-checkpoint restored) */
    ev[0] = event("ck-after", acct_a, key_a.id, "m", 1, 1, 3);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(balance(s, acct_a), 10 * USD - total - 6);
    store_close(s);
}

/* Under a steady load the WAL stays bounded: it is restarted from its beginning once it reaches
 * four times the checkpoint threshold (16,000 frames by default; 4,000 here, set so that a
 * smaller WAL fills sooner: ~16.5 MB), where it used to grow by every batch
 * written (a checkpoint running beside the writer never finds the WAL whole in the database).
 * Batches follow one another without a pause, as the ledger's do when it is behind. It may pass
 * the threshold by what the writer adds while a checkpointer pass holds the lock it needs, so
 * the bound is twice the threshold, and four times it is written. Not under valgrind, which
 * serializes the threads and makes that pass long: the question there is memory, and
 * test_checkpointer runs the same code. */
static void test_checkpointer_bounded_wal(void)
{
    enum { BATCH = 1000, MAX_BATCHES = 400, PAGES = 1000 };
    const off_t frame = 4096 + 24, bound = 2 * 4 * PAGES * frame;
    store_t *s = fresh("ckptw");
    char err[256] = "", walpath[160], model[128];
    store_usage_event *ev = calloc(BATCH, sizeof(*ev));
    store_ckpt *c = NULL;

    const char *pre = getenv("LD_PRELOAD");
    CHECK(s != NULL && ev != NULL);
    if (!s || !ev || tdb_pg) goto out;
    if (pre && strstr(pre, "vgpreload")) {
        printf("# bounded WAL: not under valgrind\n");
        goto out;
    }
    snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
    store_ckpt_set_pages(PAGES);
    c = store_ckpt_start(cfg, s, err, sizeof(err));
    CHECK(c != NULL);
    if (!c) goto out;
    /* the longest names a row can hold: fewer events fill the WAL (valgrind runs this too) */
    memset(model, 'm', sizeof(model) - 1);
    model[sizeof(model) - 1] = '\0';
    off_t most = 0, last = 0, grown = 0;
    int growing = 0, restarts = 0, b;
    for (b = 0; b < MAX_BATCHES; b++) {
        for (int i = 0; i < BATCH; i++) {
            char rid[40];
            snprintf(rid, sizeof(rid), "wal-%d-%d", b, i);
            ev[i] = event(rid, acct_b, key_b.id, model, 1, 1, 1);
            memset(ev[i].provider, 'p', sizeof(ev[i].provider) - 1);
            /* each its own model and provider: a block leaves out only a repeated one */
            memcpy(ev[i].model, rid, strlen(rid));
            memcpy(ev[i].provider, rid, strlen(rid));
        }
        if (store_ledger_commit(s, ev, BATCH) != STORE_OK) {
            CHECK(0);
            break;
        }
        /* a restarted WAL is overwritten from its start: the file keeps its size */
        off_t sz = file_size(walpath);
        if (sz > last) {
            grown += sz - last;
            growing++;
        } else {
            restarts++;
        }
        last = sz;
        if (sz > most) most = sz;
        /* written: twice the bound, at the rate the WAL grew while it grew */
        if (growing > 0 && (off_t)(b + 1) * (grown / growing) >= 2 * bound) break;
    }
    printf("# bounded WAL: %d batches, the WAL at most %lld bytes, %d restarts\n", b + 1,
           (long long)most, restarts);
    CHECK(b < MAX_BATCHES);
    CHECK(most >= frame);
    CHECK(restarts > 0);
    if (most > bound)
        fprintf(stderr, "WAL grew to %lld bytes, bound %lld\n", (long long)most, (long long)bound);
    CHECK(most <= bound);
    CHECK_EQ_INT(ledger_mismatches(), 0);
out:
    if (c) store_ckpt_stop(c);
    store_ckpt_set_pages(0);
    if (s) store_close(s);
    free(ev);
}

/* Runs store_audit and captures its report. */
static int audit(store_t *s, char *out, size_t outlen)
{
    FILE *f = tmpfile();
    size_t n = 0;
    int rc;

    out[0] = '\0';
    if (!f) return -100;
    rc = store_audit(s, f);
    rewind(f);
    n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return rc;
}

static void test_audit(void)
{
    store_t *s = fresh("audit");
    char rep[2048];

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(commit_series(s, 5), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_b, 2 * USD, NULL), STORE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 0);
    CHECK_EQ_STR(rep, "");

    /* A balance changed behind the ledger's back. */
    CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = 10500000000 WHERE id = 2"),
                 SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 1);
    CHECK_EQ_STR(rep, "account 2: balance 10.5 != sum of transactions 3\n");

    /* Put it back, then: a key's spent changed; a usage row lost; a usage transaction whose
     * amount disagrees with its row. */
    CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = 3000000000 WHERE id = 2"), SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 0);
    CHECK_EQ_INT(sql_exec("UPDATE api_keys SET spent_nusd = spent_nusd + 1 WHERE id = 1"),
                 SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 1);
    CHECK_EQ_STR(rep, "key 1: spent 0.000003007 != sum of its usage charges 0.000003006\n");
    CHECK_EQ_INT(sql_exec("UPDATE api_keys SET spent_nusd = spent_nusd - 1 WHERE id = 1"),
                 SQLITE_OK);

    /* A usage row lost: its transaction (the row itself, migration 9) goes with it. */
    /* (SQLite: the batch is one block; it is written again without the row) */
    CHECK_EQ_INT(
        sql_exec(tdb_pg
                     ? "DELETE FROM usage WHERE request_id = 'p-4'"
                     : "CREATE TEMP TABLE keep AS SELECT * FROM usage WHERE "
                       "request_id != 'p-4'; DELETE FROM usage_blocks; DELETE FROM usage_recent; "
                       "INSERT INTO usage SELECT * FROM keep"),
        SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 2);
    /* p-4 went to key 1 (even) */
    CHECK(strstr(rep, "key 1: spent 0.000003006 != sum of its usage charges 0.000002002\n") !=
          NULL);
    CHECK(strstr(rep, "account 1: balance 9.99999499 != sum of transactions 9.999995994\n") !=
          NULL);

    /* A usage transaction in the table for a row written since migration 9, which is its own:
     * the charge counts twice. */
    CHECK_EQ_INT(sql_exec("INSERT INTO transactions(id, account_id, amount_nusd, type, "
                          "description, request_id, created_at_ms) VALUES (1000, 1, -1003, "
                          "'usage', 'x', 'p-3', 0)"),
                 SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 3);
    CHECK(strstr(rep, "charged 0.000001003 but 1 usage transactions\n") != NULL);
    CHECK(strstr(rep, "account 1: balance 9.99999499 != sum of transactions 9.999994991\n") !=
          NULL);

    /* ... and one that disagrees with its row as well. */
    CHECK_EQ_INT(sql_exec("UPDATE transactions SET amount_nusd = amount_nusd - 5 "
                          "WHERE request_id = 'p-3'"),
                 SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof(rep)), 4);
    CHECK(strstr(rep, "transaction 1000 (account 1): amount -0.000001008 but its usage row 6 "
                      "charged 0.000001003\n") != NULL);

    /* A report of NULL counts without printing. */
    CHECK_EQ_INT(store_audit(s, NULL), 4);
    store_close(s);
}

/* balance_after: every page's rows carry the sum of the account's transactions up to each one,
 * whatever the page, with another account's rows interleaved; the newest equals the balance. */
static void test_transaction_balance_after(void)
{
    store_t *s = fresh("balafter");
    store_usage_event ev[2];
    store_txn *t = NULL;
    size_t n = 0;
    int64_t want[8], nwant = 0;

    CHECK(s != NULL);
    if (!s) return;
    /* a's transactions, oldest first: 10 (opening), +1, -0.5, +2, -0.25, -0.125, +4 */
    CHECK_EQ_INT(store_account_topup(s, acct_a, USD, NULL), STORE_OK);
    ev[0] = event("ba-1", acct_a, key_a.id, "m", 1, 1, USD / 2);
    ev[1] = event("bb-1", acct_b, key_b.id, "m", 1, 1, USD / 10);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_a, 2 * USD, NULL), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_b, 3 * USD, NULL), STORE_OK);
    ev[0] = event("ba-2", acct_a, key_a.id, "m", 1, 1, USD / 4);
    ev[1] = event("ba-3", acct_a, key_a2.id, "m", 1, 1, USD / 8);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 2), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_a, 4 * USD, NULL), STORE_OK);
    int64_t amounts[] = {10 * USD, USD, -USD / 2, 2 * USD, -USD / 4, -USD / 8, 4 * USD};
    int64_t run = 0;
    for (size_t i = 0; i < sizeof amounts / sizeof *amounts; i++)
        want[nwant++] = run += amounts[i];
    CHECK_EQ_INT(want[nwant - 1], balance(s, acct_a));

    /* pages of 3, newest first: rows 6..4, 3..1, 0 */
    for (int64_t off = 0; off < 9; off += 3) {
        CHECK_EQ_INT(store_transactions_list(s, acct_a, 3, off, &t, &n), STORE_OK);
        CHECK_EQ_INT(n, off < 6 ? 3 : 1);
        for (size_t i = 0; i < n; i++) {
            int64_t k = nwant - 1 - off - (int64_t)i;
            CHECK_EQ_INT(t[i].amount_nusd, amounts[k]);
            CHECK_EQ_INT(t[i].balance_after_nusd, want[k]);
        }
        free(t);
    }
    /* a page past the end, and b's own running sum: 1, -0.1, +3 */
    CHECK_EQ_INT(store_transactions_list(s, acct_a, 3, 7, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, 0);
    free(t);
    CHECK_EQ_INT(store_transactions_list(s, acct_b, 10, 0, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_INT(t[0].balance_after_nusd, 4 * USD - USD / 10);
        CHECK_EQ_INT(t[1].balance_after_nusd, USD - USD / 10);
        CHECK_EQ_INT(t[2].balance_after_nusd, USD);
    }
    free(t);
    store_close(s);
}

/* The operator's view of an account: live proxy keys only (no billing keys, no deleted ones),
 * and spent as the sum of every key's charges, deleted keys' too. */
static void test_account_show(void)
{
    store_t *s = fresh("show");
    store_usage_event ev[3];
    store_account a, *v = NULL;
    size_t n = 0;
    char key[64];
    store_key billing, gone;

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_key_create(s, acct_a, KEY_BILLING, "mk", 0, -1, key, &billing), STORE_OK);
    CHECK_EQ_INT(store_key_create(s, acct_a, KEY_PROXY, "gone", 0, -1, key, &gone), STORE_OK);
    ev[0] = event("sh-1", acct_a, key_a.id, "m", 1, 1, 300);
    ev[1] = event("sh-2", acct_a, gone.id, "m", 1, 1, 40);
    ev[2] = event("sh-3", acct_b, key_b.id, "m", 1, 1, 5);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(store_key_delete(s, gone.id), STORE_OK);

    CHECK_EQ_INT(store_account_show(s, acct_a, &a), STORE_OK);
    CHECK_EQ_INT(a.proxy_keys, 2); /* a1 and a2 */
    CHECK_EQ_INT(a.spent_nusd, 340);
    CHECK_EQ_INT(a.balance_nusd, 10 * USD - 340);
    CHECK_EQ_INT(store_account_show(s, 4242, &a), STORE_NOTFOUND);
    /* store_account_get leaves them out */
    CHECK_EQ_INT(store_account_get(s, acct_a, &a), STORE_OK);
    CHECK_EQ_INT(a.proxy_keys, 0);
    CHECK_EQ_INT(store_account_list(s, &v, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(v[0].proxy_keys, 2);
        CHECK_EQ_INT(v[0].spent_nusd, 340);
        CHECK_EQ_INT(v[1].proxy_keys, 1);
        CHECK_EQ_INT(v[1].spent_nusd, 5);
    }
    free(v);
    store_close(s);
}

static void collect_notify(void *ud, const store_notify *n)
{
    store_notify *out = ud;
    while (out->account_id)
        out++; /* the next free slot (the array is zeroed) */
    *out = *n;
}

/* Notification settings: defaults, a secret made when a webhook is first set and kept until it
 * is rotated or the webhook removed, the list billing loads, and the schema's guards. */
static void test_notify_settings(void)
{
    store_t *s = fresh("notify");
    store_notify n, *listed = calloc(4, sizeof *listed);
    store_notify_patch p;
    char first[64], txt[64];
    int fresh_secret = -1;

    CHECK(s != NULL && listed != NULL);
    if (!s || !listed) goto out;
    CHECK_EQ_INT(store_notify_get(s, acct_a, &n), STORE_OK);
    CHECK_EQ_INT(n.threshold_nusd, 0);
    CHECK_EQ_STR(n.url, "");
    CHECK_EQ_STR(n.secret, "");
    CHECK_EQ_INT(n.updated_at_ms, 0);
    CHECK_EQ_INT(store_notify_get(s, 4242, &n), STORE_NOTFOUND);

    /* a threshold alone: no webhook, no secret */
    p = (store_notify_patch){.set_threshold = 1, .threshold_nusd = 5 * USD};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 0);
    CHECK_EQ_INT(n.threshold_nusd, 5 * USD);
    CHECK_EQ_STR(n.secret, "");
    CHECK(n.updated_at_ms > 0);
    /* the webhook: a secret, shown this once */
    p = (store_notify_patch){.set_url = 1, .url = "https://hooks.example/x?t=1"};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 1);
    CHECK_EQ_INT(n.threshold_nusd, 5 * USD); /* unchanged */
    CHECK_EQ_STR(n.url, "https://hooks.example/x?t=1");
    CHECK_EQ_INT(strlen(n.secret), 46);
    CHECK(strncmp(n.secret, "whsec_", 6) == 0);
    snprintf(first, sizeof first, "%s", n.secret);
    CHECK_EQ_STR(sql_text("SELECT webhook_secret FROM notification_settings", txt, sizeof txt),
                 first);
    /* another URL keeps the secret; reading shows it (the API decides what to show) */
    p = (store_notify_patch){.set_url = 1, .url = "http://other.example/"};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 0);
    CHECK_EQ_STR(n.secret, first);
    CHECK_EQ_INT(store_notify_get(s, acct_a, &n), STORE_OK);
    CHECK_EQ_STR(n.url, "http://other.example/");
    CHECK_EQ_STR(n.secret, first);
    /* rotation */
    p = (store_notify_patch){.rotate_secret = 1};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 1);
    CHECK(strcmp(n.secret, first) != 0 && strncmp(n.secret, "whsec_", 6) == 0);
    /* b: a webhook without a threshold is not listed for billing; a has both */
    p = (store_notify_patch){.set_url = 1, .url = "http://b.example/"};
    CHECK_EQ_INT(store_notify_update(s, acct_b, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(store_notify_list(s, collect_notify, listed), STORE_OK);
    CHECK_EQ_INT(listed[0].account_id, acct_a);
    CHECK_EQ_INT(listed[0].threshold_nusd, 5 * USD);
    CHECK_EQ_STR(listed[0].url, "http://other.example/");
    CHECK_EQ_STR(listed[0].secret, ""); /* billing needs none */
    CHECK_EQ_INT(listed[1].account_id, 0);
    /* no webhook, no secret; a new webhook then gets a new one */
    p = (store_notify_patch){.set_url = 1, .url = NULL};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 0);
    CHECK_EQ_STR(n.url, "");
    CHECK_EQ_STR(n.secret, "");
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM notification_settings WHERE account_id = 1 AND "
                         "webhook_url IS NULL AND webhook_secret IS NULL"),
                 1);
    p = (store_notify_patch){.set_url = 1, .url = "http://again.example/"};
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    CHECK_EQ_INT(fresh_secret, 1);
    CHECK(n.secret[0] && strcmp(n.secret, first) != 0);
    /* refused: an unknown account, a negative threshold, a URL past the cap; nothing changes */
    p = (store_notify_patch){.set_threshold = 1, .threshold_nusd = 1};
    CHECK_EQ_INT(store_notify_update(s, 4242, &p, &n, &fresh_secret), STORE_NOTFOUND);
    CHECK_EQ_STR(n.secret, "");
    p.threshold_nusd = -1;
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_ERR);
    {
        char *big = malloc(STORE_WEBHOOK_URL_MAX + 2);
        memset(big, 'a', STORE_WEBHOOK_URL_MAX + 1);
        big[STORE_WEBHOOK_URL_MAX + 1] = '\0';
        p = (store_notify_patch){.set_url = 1, .url = big};
        CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_ERR);
        CHECK_EQ_INT(fresh_secret, 0);
        CHECK_EQ_STR(n.secret, "");
        free(big);
    }
    CHECK_EQ_INT(sql_int("SELECT low_balance_threshold_nusd FROM notification_settings WHERE "
                         "account_id = 1"),
                 5 * USD);
    /* the schema: a secret goes with a webhook, thresholds are not negative */
    CHECK(sql_exec("UPDATE notification_settings SET webhook_url = NULL") != SQLITE_OK);
    CHECK(sql_exec("UPDATE notification_settings SET low_balance_threshold_nusd = -5") !=
          SQLITE_OK);
out:
    free(listed);
    store_close(s);
}

/* Notices: the batch that carries one writes it into the outbox with its charge, once even when
 * the batch is written again; the outbox reads due notices with the account's webhook now, and
 * retry and done move and remove them. */
static void test_webhook_outbox(void)
{
    store_t *s = fresh("outbox");
    store_usage_event ev[3];
    store_webhook *w = calloc(4, sizeof *w);
    store_notify n;
    store_notify_patch p = {.set_url = 1, .url = "http://hook.example/in"};
    size_t got = 0;
    int64_t next = 0;
    int fresh_secret = 0;

    CHECK(s != NULL && w != NULL);
    if (!s || !w) goto out;
    CHECK_EQ_INT(store_webhook_next(s, &next), STORE_NOTFOUND);
    CHECK_EQ_INT(store_notify_update(s, acct_a, &p, &n, &fresh_secret), STORE_OK);
    ev[0] = event("req_0a1b", acct_a, key_a.id, "m", 1, 1, 7 * USD);
    ev[0].notice_threshold_nusd = 5 * USD;
    ev[0].notice_balance_nusd = 3 * USD;
    ev[1] = event("req_plain", acct_a, key_a.id, "m", 1, 1, 1); /* no notice */
    ev[2] = event("other-id", acct_b, key_b.id, "m", 1, 1, USD / 2);
    ev[2].created_at_ms += 5;
    ev[2].notice_threshold_nusd = USD;
    ev[2].notice_balance_nusd = USD / 2;
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM webhook_outbox"), 2);
    /* the same batch again (its commit was in doubt): no second notice, no second charge */
    CHECK_EQ_INT(store_ledger_commit(s, ev, 3), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM webhook_outbox"), 2);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    CHECK_EQ_INT(store_webhook_next(s, &next), STORE_OK);
    CHECK_EQ_INT(next, 1750000000000LL);
    CHECK_EQ_INT(store_webhooks_due(s, 1750000000000LL - 1, 4, w, &got), STORE_OK);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(store_webhooks_due(s, 1750000000000LL + 10, 4, w, &got), STORE_OK);
    CHECK_EQ_INT(got, 2);
    if (got == 2) {
        CHECK_EQ_STR(w[0].event_id, "evt_0a1b");
        CHECK_EQ_INT(w[0].account_id, acct_a);
        CHECK_EQ_STR(w[0].type, "balance.low");
        CHECK_EQ_INT(w[0].balance_nusd, 3 * USD);
        CHECK_EQ_INT(w[0].threshold_nusd, 5 * USD);
        CHECK_EQ_INT(w[0].created_at_ms, 1750000000000LL);
        CHECK_EQ_INT(w[0].attempts, 0);
        CHECK_EQ_STR(w[0].url, "http://hook.example/in");
        CHECK_EQ_STR(w[0].secret, n.secret);
        /* b has no webhook (any more): the sender drops it */
        CHECK_EQ_STR(w[1].event_id, "evt_other-id");
        CHECK_EQ_STR(w[1].url, "");
        CHECK_EQ_STR(w[1].secret, "");
    }
    /* a failed delivery is due again later; max is honoured */
    CHECK_EQ_INT(store_webhook_retry(s, "evt_0a1b", 1, 1750000009000LL), STORE_OK);
    CHECK_EQ_INT(store_webhooks_due(s, 1750000000010LL, 1, w, &got), STORE_OK);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_STR(w[0].event_id, "evt_other-id");
    CHECK_EQ_INT(store_webhook_done(s, "evt_other-id"), STORE_OK);
    CHECK_EQ_INT(store_webhook_next(s, &next), STORE_OK);
    CHECK_EQ_INT(next, 1750000009000LL);
    CHECK_EQ_INT(store_webhooks_due(s, 1750000009000LL, 4, w, &got), STORE_OK);
    CHECK_EQ_INT(got, 1);
    CHECK_EQ_INT(w[0].attempts, 1);
    CHECK_EQ_INT(store_webhook_done(s, "evt_0a1b"), STORE_OK);
    CHECK_EQ_INT(store_webhook_next(s, &next), STORE_NOTFOUND);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
out:
    free(w);
    store_close(s);
}

/* The ledger handle keeps its statement journals in memory. A chunk's INSERT keeps a copy of
 * every page it changes that existed when it began; spread over many accounts, a batch changes
 * leaves all over the usage_account index, and past 64 KiB SQLite would move that copy to a
 * temporary file for every such batch (created, unlinked, written, closed). */
static void test_writer_journal_in_memory(void)
{
    enum { ACCOUNTS = 256, BATCH = 1000 };
    store_t *s = fresh("subjournal");
    static store_usage_event ev[BATCH];
    static int64_t acct[ACCOUNTS], key[ACCOUNTS];
    char raw[64];

    CHECK(s != NULL);
    if (!s) return;
    for (int a = 0; a < ACCOUNTS; a++) {
        store_key k;
        char name[32];
        snprintf(name, sizeof name, "acct%d", a);
        if (store_account_create(s, name, 10 * USD, &acct[a]) != STORE_OK ||
            store_key_create(s, acct[a], KEY_PROXY, name, 0, -1, raw, &k) != STORE_OK) {
            CHECK(0);
            store_close(s);
            return;
        }
        key[a] = k.id;
    }
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    sqw_stats before, after;
    int64_t seq = 0;
    for (int b = 0; b < 12; b++) {
        if (b == 8) sqw_get_stats(&before); /* the index spread over pages by then */
        for (int i = 0; i < BATCH; i++) {
            char rid[40];
            int a = (int)(seq % ACCOUNTS);
            snprintf(rid, sizeof rid, "req_sj%08lld", (long long)seq++);
            ev[i] = event(rid, acct[a], key[a], "gpt-4o", 100, 20, 1);
        }
        CHECK_EQ_INT(store_ledger_commit(s, ev, BATCH), STORE_OK);
    }
    sqw_get_stats(&after);
    CHECK_EQ_INT(after.subjournals - before.subjournals, 0);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM usage"), 12 * BATCH);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
}

/* store_ledger_commit's throughput in batches of 1000 and of 10 (printed, not asserted: a
 * figure for docs/OPERATIONS.md), spread over the fixture's keys like a busy gateway's, on a
 * handle set up as the billing thread's. */
static void test_commit_throughput(void)
{
    store_t *s = fresh("bench");
    static store_usage_event ev[1000];
    const store_key *keys[3] = {&key_a, &key_a2, &key_b};
    int rounds[2][2] = {{1000, 10}, {10, 300}}; /* batch size, batches */

    CHECK(s != NULL);
    if (!s) return;
    CHECK_EQ_INT(store_ledger_writer(s), STORE_OK);
    int64_t seq = 0;
    for (int r = 0; r < 2; r++) {
        int size = rounds[r][0], batches = rounds[r][1];
        uint64_t t0 = ms_mono_ns();
        for (int b = 0; b < batches; b++) {
            for (int i = 0; i < size; i++) {
                char rid[40];
                const store_key *k = keys[i % 3];
                snprintf(rid, sizeof rid, "req_bench%lld", (long long)seq++);
                ev[i] = event(rid, k->account_id, k->id, "gpt-4o", 100, 20, 1);
            }
            if (store_ledger_commit(s, ev, (size_t)size) != STORE_OK) {
                fprintf(stderr, "bench: %s\n", store_errmsg(s));
                CHECK(0);
                break;
            }
        }
        double secs = (double)(ms_mono_ns() - t0) / 1e9;
        printf("# store_ledger_commit%s: batches of %d: %.0f events/s (%d events in %.2f s)\n",
               tap_variant, size, (double)size * batches / secs, size * batches, secs);
    }
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    store_close(s);
}

/* Migration 9 on a store written before it (usage transactions in the transactions table, ids
 * of each table its own, interleaved in commit order): the old rows stay where they are, the
 * account's transactions list in the same order with the same running balance, the audit is
 * clean, and what is written after takes ids above every old one: a usage row is its own
 * transaction, a payment shares its id space. Then the audit's checks of the old rows. */
static void test_migration_9_legacy(void)
{
    store_t *s = fresh("legacy");
    store_txn *t = NULL;
    size_t n = 0;
    char err[256] = "", sql[1024];

    CHECK(s != NULL);
    if (!s) return;
    store_close(s);
    /* Back to version 8 (the fixture's two opening payments are transactions 1 and 2), then
     * the rows a version-8 ledger wrote, in commit order: usage 1 (charged) with its
     * transaction 3, usage 2 (free), usage 3 (account b) with transaction 4, a payment (5),
     * usage 4 with transaction 6. */
    if (!tdb_pg) CHECK_EQ_INT(sql_exec(TDB_UNDO_MIGRATION_10), SQLITE_OK);
    CHECK_EQ_INT(sql_exec("DROP VIEW ledger_transactions"), SQLITE_OK);
    CHECK_EQ_INT(sql_exec("DELETE FROM meta WHERE key = 'usage_tx_after'"), SQLITE_OK);
    CHECK_EQ_INT(sql_exec("DELETE FROM schema_migrations WHERE version >= 9"), SQLITE_OK);
    static const struct {
        int64_t id, acct, charged, tx;
        const char *rid;
    } rows[] = {
        {1, 1, 100, 3, "L-1"}, {2, 1, 0, 0, "L-2"}, {3, 2, 50, 4, "L-3"}, {4, 1, 30, 6, "L-4"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t key = rows[i].acct == acct_a ? key_a.id : key_b.id;
        snprintf(sql, sizeof sql,
                 "INSERT INTO usage(id, request_id, account_id, key_id, model, provider, "
                 "prompt_tokens, completion_tokens, charged_nusd, status, latency_ms, "
                 "created_at_ms) VALUES (%lld, '%s', %lld, %lld, 'old', 'openai', 5, 7, %lld, "
                 "200, 1, 1700000000000)",
                 (long long)rows[i].id, rows[i].rid, (long long)rows[i].acct, (long long)key,
                 (long long)rows[i].charged);
        CHECK_EQ_INT(sql_exec(sql), SQLITE_OK);
        if (rows[i].tx) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO transactions(id, account_id, amount_nusd, type, description, "
                     "request_id, created_at_ms) VALUES (%lld, %lld, %lld, 'usage', "
                     "'old 5+7 tokens', '%s', 1700000000000)",
                     (long long)rows[i].tx, (long long)rows[i].acct, -(long long)rows[i].charged,
                     rows[i].rid);
            CHECK_EQ_INT(sql_exec(sql), SQLITE_OK);
        }
        if (i == 2)
            CHECK_EQ_INT(sql_exec("INSERT INTO transactions(id, account_id, amount_nusd, type, "
                                  "description, created_at_ms) VALUES (5, 1, 7000, 'payment', "
                                  "'card', 1700000000000)"),
                         SQLITE_OK);
    }
    CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = balance_nusd - 100 + 7000 - 30 "
                          "WHERE id = 1"),
                 SQLITE_OK);
    CHECK_EQ_INT(sql_exec("UPDATE accounts SET balance_nusd = balance_nusd - 50 WHERE id = 2"),
                 SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE api_keys SET spent_nusd = 130 WHERE id = %lld",
             (long long)key_a.id);
    CHECK_EQ_INT(sql_exec(sql), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE api_keys SET spent_nusd = 50 WHERE id = %lld",
             (long long)key_b.id);
    CHECK_EQ_INT(sql_exec(sql), SQLITE_OK);

    s = store_open(cfg, err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "store_open: %s\n", err);
        return;
    }
    CHECK_EQ_INT(sql_int("SELECT value FROM meta WHERE key = 'usage_tx_after'"), 6);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* new rows: a usage row (id 7, its own transaction), a payment (8), a free row (9) */
    store_usage_event ev[2];
    ev[0] = event("N-1", acct_a, key_a.id, "new", 3, 4, 40);
    CHECK_EQ_INT(store_ledger_commit(s, ev, 1), STORE_OK);
    CHECK_EQ_INT(store_account_topup(s, acct_a, 1000, "again"), STORE_OK);
    ev[1] = event("N-2", acct_a, key_a.id, "new", 3, 4, 0);
    CHECK_EQ_INT(store_ledger_commit(s, ev + 1, 1), STORE_OK);
    CHECK_EQ_INT(sql_int("SELECT id FROM usage WHERE request_id = 'N-1'"), 7);
    CHECK_EQ_INT(sql_int("SELECT id FROM transactions WHERE description = 'again'"), 8);
    CHECK_EQ_INT(sql_int("SELECT id FROM usage WHERE request_id = 'N-2'"), 9);
    CHECK_EQ_INT(sql_int("SELECT count(*) FROM transactions"), 7);
    CHECK_EQ_INT(store_audit(s, NULL), 0);
    CHECK_EQ_INT(ledger_mismatches(), 0);

    /* a's transactions, newest first, and the balance after each */
    static const struct {
        int64_t id, amount;
        const char *type, *desc;
    } want[] = {{8, 1000, "payment", "again"},        {7, -40, "usage", "new 3+4 tokens"},
                {6, -30, "usage", "old 5+7 tokens"},  {5, 7000, "payment", "card"},
                {3, -100, "usage", "old 5+7 tokens"}, {1, 10 * USD, "payment", "initial balance"}};
    int64_t after = balance(s, acct_a);
    CHECK_EQ_INT(after, 10 * USD - 100 + 7000 - 30 - 40 + 1000);
    CHECK_EQ_INT(store_transactions_list(s, acct_a, 10, 0, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < n && i < sizeof want / sizeof want[0]; i++) {
        CHECK_EQ_INT(t[i].id, want[i].id);
        CHECK_EQ_INT(t[i].amount_nusd, want[i].amount);
        CHECK_EQ_STR(t[i].type, want[i].type);
        CHECK_EQ_STR(t[i].description, want[i].desc);
        CHECK_EQ_INT(t[i].balance_after_nusd, after);
        after -= t[i].amount_nusd;
    }
    CHECK_EQ_INT(after, 0);
    free(t);
    /* a page in the middle: its running balance from the rows it skips */
    CHECK_EQ_INT(store_transactions_list(s, acct_a, 2, 2, &t, &n), STORE_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(t[0].id, 6);
        CHECK_EQ_INT(t[0].balance_after_nusd, 10 * USD - 100 + 7000 - 30);
        CHECK_EQ_INT(t[1].id, 5);
    }
    free(t);

    /* The old rows' checks: a usage transaction that disagrees with its row, then none. */
    CHECK_EQ_INT(sql_exec("UPDATE transactions SET amount_nusd = -99 WHERE request_id = 'L-1'"),
                 SQLITE_OK);
    char rep[1024];
    CHECK_EQ_INT(audit(s, rep, sizeof rep), 2);
    CHECK(strstr(rep, "transaction 3 (account 1): amount -0.000000099 but its usage row 1 "
                      "charged 0.0000001\n") != NULL);
    CHECK(strstr(rep, "account 1: balance ") != NULL);
    CHECK_EQ_INT(sql_exec("DELETE FROM transactions WHERE request_id = 'L-1'"), SQLITE_OK);
    CHECK_EQ_INT(audit(s, rep, sizeof rep), 2);
    CHECK(strstr(rep, "usage 1: charged 0.0000001 but 0 usage transactions\n") != NULL);
    store_close(s);
}

static void run_all(void)
{
    setup();
    RUN(test_commit_happy_path);
    RUN(test_commit_idempotent);
    RUN(test_recent_fold);
    RUN(test_recent_fold_unordered);
    RUN(test_import_empty);
    RUN(test_recent_merge);
    RUN(test_commit_many_rows);
    RUN(test_commit_all_or_nothing);
    RUN(test_accounts_since);
    RUN(test_key_update);
    RUN(test_usage_and_transaction_pages);
    RUN(test_usage_stats);
    RUN(test_usage_counts);
    RUN(test_usage_filters_and_groups);
    RUN(test_key_spends);
    RUN(test_checkpointer);
    RUN(test_checkpointer_bounded_wal);
    RUN(test_audit);
    RUN(test_transaction_balance_after);
    RUN(test_migration_9_legacy);
    RUN(test_account_show);
    RUN(test_notify_settings);
    RUN(test_webhook_outbox);
    if (!tdb_pg) RUN(test_writer_journal_in_memory);
    RUN(test_deferred_posting);
    RUN(test_commit_throughput);
    teardown();
}

int main(void)
{
    tdb_run(run_all);
    TAP_DONE();
}
