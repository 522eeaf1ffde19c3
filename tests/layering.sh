#!/usr/bin/env bash
# The include layering of src/, checked on the source (run by tests/run.sh, stage 2):
#   1. src/server/ includes nothing of the layers that answer requests (api/, providers/, and the
#      engine/ and dialect/ that take over from proxy.c): the server reaches them only through
#      the handlers given to srv_new (srv_handlers in server/server.h), so the layers do not
#      include each other.
#   2. src/common/ includes only src/common/: everything else builds on it.
# Each rule is one case. Prints TAP lines, each violation as file:line, and the unit binaries'
# summary "# unit: N passed, M failed". Exit status 1 when a rule is broken.
#
# Usage: tests/layering.sh [ROOT]   (ROOT defaults to this checkout; a copy can be checked too)
set -uo pipefail

ROOT="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
PASSED=0
FAILED=0
N=0

# Every quoted include of the .c and .h files under DIR, as "file:line:path", the path with any
# leading "./" and "../" removed (a relative include must not slip past the rules).
includes() {
    local dir="$1"
    [[ -d "$dir" ]] || return 0
    find "$dir" -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z |
        xargs -0 -r grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' /dev/null |
        sed -E 's/^([^:]*):([0-9]+):[^"]*"([^"]*)".*/\1:\2:\3/; s#:(\.\.?/)+#:#'
}

# case NAME VIOLATIONS: one TAP line; the violations (one a line) follow a failure.
check() {
    local name="$1" bad="$2"
    N=$((N + 1))
    if [[ -z "$bad" ]]; then
        echo "ok $N - $name"
        PASSED=$((PASSED + 1))
    else
        echo "not ok $N - $name"
        sed "s|^$ROOT/||; s|^|#   |" <<<"$bad"
        FAILED=$((FAILED + 1))
    fi
}

if [[ ! -d "$ROOT/src/server" || ! -d "$ROOT/src/common" ]]; then
    echo "not ok 1 - $ROOT has no src/server and src/common"
    echo "# unit: 0 passed, 1 failed"
    exit 1
fi

# A path names a layer by its first directory ("api/proxy.h"), or by a directory after "src/".
check "src/server/ includes nothing from api/, providers/, engine/ or dialect/" \
    "$(includes "$ROOT/src/server" | grep -E ':(src/)?(api|providers|engine|dialect)/[^:]*$')"

# A header of common/ is "common/x.h", or "x.h" next to the file; anything with another
# directory is above common/.
check "src/common/ includes only src/common/" \
    "$(includes "$ROOT/src/common" | grep -vE ':(src/)?common/[^/:]+$' | grep -E ':[^:]*/[^:]*$')"

echo "1..$N"
echo "# unit: $PASSED passed, $FAILED failed"
((FAILED == 0))
