#!/bin/bash
# bench/ledger_shapes.sh: what a usage row costs SQLite, tree by tree and check by check, and what
# a batch stored as one row costs instead (docs/PERFORMANCE.md, rounds 19, 20 and 22: migration
# 10's blocks, a batch of one account in one, the worst case of a block for every event, and
# 256 accounts coming back batch after batch, into usage_blocks and through migration 11's
# usage_recent).
#
# Why: the ledger's thread is most of what ModelSwitch spends beyond nginx on a chat request, and
# nearly all of it is SQLite writing one b-tree row per request. This measures the usage table's
# shape with each of its indexes and constraints taken away in turn, so a change to the schema
# or to the ledger's design can be weighed before it is made. It uses the sqlite3 shell, not the
# gateway: the same statement shape as the ledger's (INSERT ... SELECT of a batch in one
# transaction, WAL, synchronous=NORMAL), counted by callgrind, so the figures do not move with
# the machine. A benchmark, not a test: it prints figures and checks nothing.
#
#   bash bench/ledger_shapes.sh            # 60,000 rows in transactions of 600 (~3 minutes)
#   N=12000 bash bench/ledger_shapes.sh    # fewer rows
#
# Needs valgrind and the sqlite3 shell (scripts/install-deps.sh installs both).
set -euo pipefail

N=${N:-60000}
B=${B:-600}
for tool in valgrind sqlite3; do
    command -v "$tool" >/dev/null || {
        echo "ledger_shapes: $tool is not installed" >&2
        exit 1
    }
done
TMP=$(mktemp -d /tmp/ledger_shapes.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The usage table as the SQLite store's migrations leave it (src/store/sqlite.c), and its rows
# as the gateway writes them: a time-ordered request id, one account and key, the same model.
COLS="request_id, account_id, key_id, model, provider, prompt_tokens, completion_tokens,
  charged_nusd, status, estimated, latency_ms, created_at_ms, cached_tokens, cache_write_tokens,
  cache_write_1h_tokens, reasoning_tokens, cached, id"
ROW="printf('req_%011x%013x', 1700000000000 + (value / 600), value), 1, 1, 'gpt-4o-mini',
  'openai', 1234, 56, 12345, 200, 0, 120, 1700000000000 + value, 0, 0, 0, 0, 0, value + 1"
RID="request_id TEXT NOT NULL UNIQUE CHECK (length(request_id) > 0)"
REST="account_id INTEGER NOT NULL, key_id INTEGER NOT NULL, model TEXT NOT NULL,
  provider TEXT NOT NULL, prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
  completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
  charged_nusd INTEGER NOT NULL CHECK (charged_nusd >= 0), status INTEGER NOT NULL,
  estimated INTEGER NOT NULL DEFAULT 0, latency_ms INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
  cache_write_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
  cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens >= 0),
  reasoning_tokens INTEGER NOT NULL DEFAULT 0 CHECK (reasoning_tokens >= 0),
  cached INTEGER NOT NULL DEFAULT 0"
ACCT="CREATE INDEX usage_account ON usage(account_id, id);"
BARE="request_id TEXT, account_id INTEGER, key_id INTEGER, model TEXT, provider TEXT,
  prompt_tokens INTEGER, completion_tokens INTEGER, charged_nusd INTEGER, status INTEGER,
  estimated INTEGER, latency_ms INTEGER, created_at_ms INTEGER, cached_tokens INTEGER,
  cache_write_tokens INTEGER, cache_write_1h_tokens INTEGER, reasoning_tokens INTEGER,
  cached INTEGER"

# script NAME PRAGMAS SCHEMA STATEMENT: a shell script of N/B transactions of STATEMENT, in which
# S and E stand for the batch's first and last value.
script() {
    local f=$TMP/$1.sql s
    printf 'PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-2048; %s\n%s\n' \
        "$2" "$3" >"$f"
    for ((s = 0; s < N; s += B)); do
        local st=${4//@S@/$s}
        printf 'BEGIN IMMEDIATE; %s; COMMIT;\n' "${st//@E@/$((s + B - 1))}" >>"$f"
    done
}

# instructions NAME: what the shell executed for the script (callgrind's total)
instructions() {
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$1.cg" sqlite3 "$TMP/$1.db" \
        <"$TMP/$1.sql" >/dev/null 2>"$TMP/$1.err"
    awk '/^(summary|totals):/ {print $2; exit}' "$TMP/$1.cg"
}

INS="INSERT INTO usage($COLS) SELECT $ROW FROM generate_series(@S@, @E@)"
script made "" "CREATE TABLE usage($BARE, id INTEGER PRIMARY KEY); CREATE TEMP TABLE sink(x);" \
    "INSERT INTO sink SELECT count(*) FROM (SELECT $ROW FROM generate_series(@S@, @E@))"
script today "" "CREATE TABLE usage(id INTEGER PRIMARY KEY, $RID, $REST) STRICT; $ACCT" "$INS"
script no_account_index "" "CREATE TABLE usage(id INTEGER PRIMARY KEY, $RID, $REST) STRICT;" "$INS"
script no_unique_request_id "" \
    "CREATE TABLE usage(id INTEGER PRIMARY KEY, ${RID/ UNIQUE/}, $REST) STRICT; $ACCT" "$INS"
script no_checks "PRAGMA ignore_check_constraints=ON;" \
    "CREATE TABLE usage(id INTEGER PRIMARY KEY, $RID, $REST) STRICT; $ACCT" "$INS"
script not_strict "" "CREATE TABLE usage(id INTEGER PRIMARY KEY, $RID, $REST); $ACCT" "$INS"
script bare "" "CREATE TABLE usage(id INTEGER PRIMARY KEY, $BARE);" "$INS"
script without_rowid "" \
    "CREATE TABLE usage(id INTEGER NOT NULL, $RID, $REST, PRIMARY KEY (account_id, id)) STRICT,
     WITHOUT ROWID;" "$INS"
# A batch as one row: its events as 64-byte records in one BLOB, one index entry a batch.
script block_made "" "CREATE TEMP TABLE sink(x);" \
    "INSERT INTO sink VALUES (length(randomblob($((B * 64)))))"
script block "" \
    "CREATE TABLE usage_blocks(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
     first_id INTEGER NOT NULL, n INTEGER NOT NULL, rows BLOB NOT NULL) STRICT;
     CREATE INDEX usage_blocks_account ON usage_blocks(account_id, first_id);" \
    "INSERT INTO usage_blocks(account_id, first_id, n, rows) VALUES (1, @S@, $B,
     randomblob($((B * 64))))"
# Migration 10's blocks (round 20): its table and two indexes, a batch's rows of one account as
# one block of ~40 bytes a row (what the encoder makes of a row whose model and provider repeat
# the one before's); and the worst case, every event of a batch another account's, a block each.
BLOCKS="CREATE TABLE usage_blocks(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  first_id INTEGER NOT NULL, n INTEGER NOT NULL CHECK (n BETWEEN 1 AND 1024),
  min_created_ms INTEGER NOT NULL, max_created_ms INTEGER NOT NULL, rows BLOB NOT NULL) STRICT;
  CREATE INDEX usage_blocks_account ON usage_blocks(account_id, id);
  CREATE INDEX usage_blocks_time ON usage_blocks(account_id, max_created_ms);"
script blocks10_made "" "CREATE TEMP TABLE sink(x);" \
    "INSERT INTO sink VALUES (length(randomblob($((B * 40)))))"
script blocks10 "" "$BLOCKS" \
    "INSERT INTO usage_blocks VALUES (@E@ + 1, 1, @S@ + 1, $B, 1700000000000 + @S@,
     1700000000000 + @E@, randomblob($((B * 40))))"
script single_made "" "CREATE TEMP TABLE sink(x);" \
    "INSERT INTO sink SELECT count(*) FROM (SELECT value, randomblob(60) FROM
     generate_series(@S@, @E@))"
script single "" "$BLOCKS" \
    "INSERT INTO usage_blocks SELECT value + 1, value, value + 1, 1, 1700000000000 + value,
     1700000000000 + value, randomblob(60) FROM generate_series(@S@, @E@)"
# A block an event again, but of 256 accounts that come back batch after batch (a gateway with
# many customers: round 22), where the ones above each had an account of its own, always the
# index's last: here every batch inserts at 256 places of each index. Migration 10 writes them
# into usage_blocks; migration 11 into usage_recent (one small index), moved into usage_blocks
# every 4,200 blocks (seven batches of 600: the gateway moves at 4,096).
RECENT="CREATE TABLE usage_recent(id INTEGER PRIMARY KEY, account_id INTEGER NOT NULL,
  first_id INTEGER NOT NULL, n INTEGER NOT NULL CHECK (n BETWEEN 1 AND 1024),
  min_created_ms INTEGER NOT NULL, max_created_ms INTEGER NOT NULL, rows BLOB NOT NULL) STRICT;
  CREATE INDEX usage_recent_account ON usage_recent(account_id, id);"
script many10 "" "$BLOCKS" \
    "INSERT INTO usage_blocks SELECT value + 1, value % 256 + 1, value + 1, 1,
     1700000000000 + value, 1700000000000 + value, randomblob(60) FROM generate_series(@S@, @E@)"
script many11 "" "$BLOCKS $RECENT" \
    "INSERT INTO usage_recent SELECT value + 1, value % 256 + 1, value + 1, 1,
     1700000000000 + value, 1700000000000 + value, randomblob(60) FROM generate_series(@S@, @E@);
     INSERT INTO usage_blocks SELECT * FROM usage_recent WHERE (@E@ + 1) % 4200 = 0 ORDER BY id;
     DELETE FROM usage_recent WHERE (@E@ + 1) % 4200 = 0"

echo "ledger_shapes: $N rows in transactions of $B, instructions a row (callgrind, sqlite3 $(sqlite3 --version | cut -d' ' -f1))"
made=$(instructions made)
for v in today no_account_index no_unique_request_id no_checks not_strict bare without_rowid; do
    printf '%-22s %8d\n' "$v" $((($(instructions "$v") - made) / N))
done
made=$(instructions block_made)
printf '%-22s %8d\n' "block (one row a batch)" $((($(instructions block) - made) / N))
made=$(instructions blocks10_made)
printf '%-22s %8d\n' "migration 10, a batch" $((($(instructions blocks10) - made) / N))
made=$(instructions single_made)
printf '%-22s %8d\n' "migration 10, a row" $((($(instructions single) - made) / N))
printf '%-22s %8d\n' "10, 256 accounts" $((($(instructions many10) - made) / N))
printf '%-22s %8d\n' "11, 256 accounts" $((($(instructions many11) - made) / N))
