#!/usr/bin/env bash
# The whole test suite: what `make test` and CI run. Stages:
#   1. dependencies   scripts/install-deps.sh --test (apt only if something is missing; npm ci)
#   2. build + unit   make -j2, make -j2 unit, a throwaway PostgreSQL (tests/pg.sh; its URL in
#                     MS_TEST_PG_URL for every later stage), then every build/tests/test_*
#                     binary, and tests/layering.sh (which module may include which)
#   3. integration    node --test over tests/integration and tests/e2e against build/
#   4. sanitizers     make asan, then the unit binaries and both node suites against build-asan/
#   5. valgrind       the unit binaries under valgrind, and the smoke file with the gateway under it
#   6. fuzz targets   make fuzz, then tests/fuzz.sh: each libFuzzer target over its seeds and a
#                     few seconds of fuzzing from them (one case a target)
# Each stage prints a header; the last line of output is exactly "N passed, M failed" (the sum of
# every unit case and node test, plus one failure per broken stage), and the exit status is
# non-zero when anything failed. Logs go to build/test-logs/.
#
# Options: --quick skips stages 4, 5 and 6. Environment: MS_TEST_JOBS (test files run at once,
# default 4), MS_TEST_FILES (space-separated node test files instead of the default set).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

QUICK=0
for arg in "$@"; do
    case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

PASSED=0
FAILED=0
START=$(date +%s)
LOGS="$ROOT/build/test-logs"
mkdir -p "$LOGS"
rm -f "$LOGS/failures.txt"
JOBS="${MS_TEST_JOBS:-4}"

section() {
    printf '\n==== %s  [%ds]\n' "$*" $(($(date +%s) - START))
}
stage_failed() {
    echo "FAILED: $*" | tee -a "$LOGS/failures.txt"
    FAILED=$((FAILED + 1))
}
finish() {
    section "summary"
    echo "logs: $LOGS"
    # CI shows only the end of the output: what failed, and why, goes here
    if [[ -s "$LOGS/failures.txt" ]]; then
        echo "---- failures (details in the logs above) ----"
        head -n 200 "$LOGS/failures.txt"
        echo "----"
    fi
    if ((PASSED == 0 && FAILED == 0)); then
        echo "no test ran"
        FAILED=1
    fi
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
    exit $?
}

# Runs every unit binary in DIR, optionally under a wrapper command, and adds up their
# "# unit: N passed, M failed" lines. A binary that crashes, exits non-zero without reporting a
# failure, or prints no summary counts as one failure.
run_units() {
    local dir="$1" label="$2"
    shift 2
    local bins=("$dir"/tests/test_*) b out rc line p f
    if [[ ! -e "${bins[0]}" ]]; then
        echo "(no unit test binaries in $dir/tests)"
        return
    fi
    for b in "${bins[@]}"; do
        [[ -x "$b" ]] || continue
        out="$LOGS/$label-$(basename "$b").log"
        timeout 300 "$@" "$b" >"$out" 2>&1
        rc=$?
        line=$(grep -E '^# unit: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
        if [[ -z "$line" ]]; then
            echo "$label $(basename "$b"): no summary line (exit $rc; 124 is the 300 s timeout)" |
                tee -a "$LOGS/failures.txt"
            tail -n 40 "$out" | tee -a "$LOGS/failures.txt"
            FAILED=$((FAILED + 1))
            continue
        fi
        p=$(sed -E 's/^# unit: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
        f=$(sed -E 's/^# unit: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
        printf '%-32s %s\n' "$(basename "$b")" "${line#\# unit: }"
        if ((f > 0)); then
            grep -E '^not ok|check failed|failed:' "$out" | head -n 40 |
                sed "s|^|$label $(basename "$b"): |" | tee -a "$LOGS/failures.txt"
        fi
        if ((rc != 0 && f == 0)); then
            echo "$label $(basename "$b"): exit $rc with no failed case (crash, sanitizer or valgrind error)" |
                tee -a "$LOGS/failures.txt"
            tail -n 60 "$out"
            FAILED=$((FAILED + 1))
        fi
    done
}

# Runs node's test runner over the given files; spec output to the console, TAP to a log that
# gives the counts. A runner that dies without a summary counts as one failure.
run_node() {
    local label="$1"
    shift
    local tap="$LOGS/$label.tap" rc p f c t
    timeout 900 node --test --test-concurrency="$JOBS" --test-timeout=180000 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" "$@"
    rc=$?
    p=$(grep -E '^# pass [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | awk '{print $3}')
    # node counts a todo test (a feature of a later issue) as passed; it is neither here
    t=$(grep -E '^# todo [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | awk '{print $3}')
    [[ -n "$p" ]] && p=$((p - ${t:-0}))
    f=$(grep -E '^# fail [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | awk '{print $3}')
    c=$(grep -E '^# cancelled [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | awk '{print $3}')
    if [[ -z "$p" || -z "$f" ]]; then
        stage_failed "$label: the test runner gave no summary (exit $rc)"
        return
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f + ${c:-0}))
    if ((f + ${c:-0} > 0)); then
        # each failing test's TAP line and its YAML block (error, expected, actual, stack)
        awk -v label="$label" '
            /^ *not ok / { grab = 1; print label ": " $0; next }
            grab && /^ *\.\.\.$/ { grab = 0; next }
            grab { print }
        ' "$tap" | grep -v -E '^ *(duration_ms|type|location|failureType):' | cut -c1-300 \
            >>"$LOGS/failures.txt"
    fi
    echo "$label: $p passed, $f failed, ${c:-0} cancelled, ${t:-0} todo (later issues)"
    if ((rc != 0 && f + ${c:-0} == 0)); then
        stage_failed "$label: the test runner exited $rc"
    fi
}

# Runs a check script that prints the unit binaries' summary line (tests/layering.sh, tests/fuzz.sh)
# and adds its counts, given LIMIT seconds (default 60); no summary line counts as one failure.
run_check() {
    local script="$1" limit="${2:-60}" out line p f
    out="$LOGS/check-$(basename "$script" .sh).log"
    timeout "$limit" "$script" >"$out" 2>&1
    line=$(grep -E '^# unit: [0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    if [[ -z "$line" ]]; then
        stage_failed "$script: no summary line"
        tail -n 20 "$out"
        return
    fi
    p=$(sed -E 's/^# unit: ([0-9]+) passed, ([0-9]+) failed.*/\1/' <<<"$line")
    f=$(sed -E 's/^# unit: ([0-9]+) passed, ([0-9]+) failed.*/\2/' <<<"$line")
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    printf '%-32s %s\n' "$(basename "$script")" "${line#\# unit: }"
    if ((f > 0)); then
        grep -E '^not ok|^#   ' "$out" | sed "s|^|$(basename "$script"): |" | tee -a "$LOGS/failures.txt"
    fi
}

NODE_FILES=()
if [[ -n "${MS_TEST_FILES:-}" ]]; then
    read -r -a NODE_FILES <<<"$MS_TEST_FILES"
else
    NODE_FILES=(tests/integration/*.test.mjs tests/e2e/*.test.mjs)
fi
SMOKE_FILE=tests/integration/smoke.test.mjs

# ---------------------------------------------------------------------------------------------
section "1. dependencies"
if ! scripts/install-deps.sh --test; then
    stage_failed "scripts/install-deps.sh --test"
    finish
fi
echo "ok"

# ---------------------------------------------------------------------------------------------
section "2. build and unit tests (build/)"
if ! make -j2 all >"$LOGS/build.log" 2>&1 || ! make -j2 unit >>"$LOGS/build.log" 2>&1; then
    tail -n 60 "$LOGS/build.log"
    stage_failed "build (make -j2 all unit)"
    finish
fi
echo "built build/modelswitch, build/mock_upstream and the unit tests"
# One throwaway PostgreSQL for the suite (tests/pg.sh): the store's unit tests run a second pass
# on it and the node tests use it (MS_TEST_PG_URL); stopped on exit, whatever ends the run.
PG_DIR=$(mktemp -d /tmp/ms-test-pg.XXXXXX)
stop_pg() {
    if [[ -n "${PG_DIR:-}" ]]; then
        bash tests/pg.sh stop "$PG_DIR" >/dev/null 2>&1
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}
trap stop_pg EXIT
if MS_TEST_PG_URL=$(bash tests/pg.sh start "$PG_DIR" 2>"$LOGS/pg.log"); then
    export MS_TEST_PG_URL
    echo "PostgreSQL for the tests: $MS_TEST_PG_URL"
else
    cat "$LOGS/pg.log"
    stage_failed "tests/pg.sh start: no PostgreSQL for the tests"
    unset MS_TEST_PG_URL
fi
run_units build unit
run_check tests/layering.sh

# ---------------------------------------------------------------------------------------------
section "3. integration and end-to-end tests (build/modelswitch)"
MODELSWITCH_BIN=build/modelswitch MOCK_UPSTREAM_BIN=build/mock_upstream \
    run_node integration "${NODE_FILES[@]}"

if ((QUICK)); then
    finish
fi

# ---------------------------------------------------------------------------------------------
section "4. sanitizers (build-asan/: ASan + UBSan)"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if make -j2 asan >"$LOGS/build-asan.log" 2>&1; then
    run_units build-asan unit-asan
    MODELSWITCH_BIN=build-asan/modelswitch MOCK_UPSTREAM_BIN=build-asan/mock_upstream \
        run_node integration-asan "${NODE_FILES[@]}"
else
    tail -n 60 "$LOGS/build-asan.log"
    stage_failed "make asan"
fi
unset ASAN_OPTIONS UBSAN_OPTIONS

# ---------------------------------------------------------------------------------------------
section "5. valgrind"
if command -v valgrind >/dev/null 2>&1; then
    # SQLite only under valgrind: the PostgreSQL pass repeats the same code paths of ours, and
    # libpq's round trips under valgrind would take most of the stage's time
    MS_TEST_PG_URL= run_units build unit-valgrind valgrind --leak-check=full --error-exitcode=99 -q
    MODELSWITCH_BIN=build/modelswitch MOCK_UPSTREAM_BIN=build/mock_upstream MODELSWITCH_VALGRIND=1 \
        run_node smoke-valgrind "$SMOKE_FILE"
else
    stage_failed "valgrind is not installed"
fi

# ---------------------------------------------------------------------------------------------
section "6. fuzz targets (build-fuzz/: libFuzzer, ASan + UBSan)"
if make -j2 fuzz >"$LOGS/build-fuzz.log" 2>&1; then
    run_check tests/fuzz.sh 300
else
    tail -n 40 "$LOGS/build-fuzz.log"
    stage_failed "make fuzz"
fi

finish
