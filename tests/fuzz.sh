#!/usr/bin/env bash
# The libFuzzer targets (tests/fuzz/, built by `make fuzz`) as a stage of the suite: each runs
# its committed seeds, then fuzzes from them for a few seconds (MS_FUZZ_SECONDS, default 5).
# Why in the suite: the targets link parts of the gateway by hand, so a new dependency of a
# parser broke their build without any test noticing (buf.c on util.c, found in round 18); and
# the seeds (inputs of each shape a parser meets, and inputs that once crashed one) are
# regression tests.
# New inputs go to a scratch directory, so the seeds stay as committed; a crash's input is kept
# in build/test-logs/fuzz/. A target that crashes, leaks, trips a sanitizer or does not finish
# is a failure. Prints the unit binaries' summary line ("# unit: N passed, M failed").
# Usage: tests/fuzz.sh [BUILD_DIR]   (default build-fuzz, made by `make fuzz`)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
DIR="${1:-build-fuzz}"
SECONDS_EACH="${MS_FUZZ_SECONDS:-5}"
OUT="$ROOT/build/test-logs/fuzz"
mkdir -p "$OUT"
SCRATCH=$(mktemp -d /tmp/ms-fuzz.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

# each target and its committed seeds
TARGETS=(
    "fuzz_jscan:tests/fuzz/corpus_jscan"
    "fuzz_sse:tests/fuzz/corpus_sse"
    "fuzz_anthropic_request:tests/fuzz/corpus_anthropic_request"
    "fuzz_responses_request:tests/fuzz/corpus_responses_request"
    "fuzz_adapters:tests/fuzz/corpus_adapters"
    "fuzz_h1parse:tests/fuzz/corpus_h1parse"
    "fuzz_h1req:tests/fuzz/corpus_h1req"
    "fuzz_journal:tests/fuzz/corpus_journal"
    "fuzz_import:tests/fuzz/corpus_import"
    "fuzz_redis_url:tests/fuzz/corpus_redis_url"
    "fuzz_usage_block:tests/fuzz/corpus_usage_block"
)

passed=0
failed=0
for entry in "${TARGETS[@]}"; do
    name="${entry%%:*}"
    seeds="${entry#*:}"
    bin="$DIR/$name"
    log="$OUT/$name.log"
    if [[ ! -x "$bin" ]]; then
        echo "not ok - $name: $bin was not built (make fuzz)"
        failed=$((failed + 1))
        continue
    fi
    mkdir -p "$SCRATCH/$name" "$OUT/$name-crash"
    args=("$SCRATCH/$name")
    [[ -n "$seeds" ]] && args+=("$seeds")
    # the time limit is libFuzzer's; timeout only catches a target that never returns
    timeout $((SECONDS_EACH + 120)) "$bin" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$OUT/$name-crash/" "${args[@]}" >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -n 1)
    if ((rc == 0)) && [[ -n "$runs" ]]; then
        echo "ok - $name: ${runs#Done } in ${SECONDS_EACH} s${seeds:+ from $seeds}"
        passed=$((passed + 1))
    else
        echo "not ok - $name: exit $rc (log $log, inputs in $OUT/$name-crash/)"
        grep -E 'ERROR:|SUMMARY:|deadly signal|Test unit written' "$log" | head -n 5 | sed 's/^/#   /'
        failed=$((failed + 1))
    fi
done
echo "# unit: $passed passed, $failed failed"
((failed == 0))
