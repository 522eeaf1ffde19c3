#!/usr/bin/env bash
# Installs what ModelSwitch needs to build and test, on Debian 12, as root. Idempotent: a machine
# that already has every package skips apt entirely (no `apt-get update`), so `make test` and CI
# pay nothing on a prepared machine.
#
#   scripts/install-deps.sh          build and runtime dependencies (Debian packages)
#   scripts/install-deps.sh --test   also the end-to-end test dependencies: Debian's Chromium and
#                                    a font for the dashboard's browser tests, PostgreSQL's server
#                                    (tests/pg.sh), redis-server and nginx for the multi-instance
#                                    tests, npm ci in tests/e2e, and promtool (Debian's prometheus
#                                    package, if it can be had)
#
# Node.js may already come from elsewhere (the machines here carry a newer Node than Debian's, with
# its own npm): a working `node`/`npm` on PATH counts as installed, because Debian's npm package
# conflicts with such a Node.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WANT_TEST=0
for arg in "$@"; do
    case "$arg" in
    --test) WANT_TEST=1 ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "install-deps: unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

die() {
    echo "install-deps: error: $*" >&2
    exit 1
}

PKGS=(build-essential pkg-config clang valgrind curl ca-certificates libuv1-dev node-llhttp
    libcurl4-openssl-dev libjansson-dev libjsmn-dev libsqlite3-dev libyaml-dev libssl-dev
    libhiredis-dev libpq-dev sqlite3 openssl)
# The dashboard's browser tests (tests/e2e/dashboard.test.mjs) drive Debian's Chromium through
# puppeteer-core, which downloads no browser of its own; a font so its pages, and the screenshots
# in docs/dashboard/, have readable text.
# The store's PostgreSQL backend is tested against a real server that tests/pg.sh starts from
# the package's binaries (/usr/lib/postgresql/*/bin) in a temporary directory.
if ((WANT_TEST)); then
    PKGS+=(chromium fonts-dejavu-core postgresql)
    # The multi-instance tests (tests/integration/cluster*.test.mjs): tests/redis.sh runs a
    # throwaway redis-server on loopback, and cluster_lb.test.mjs runs nginx in front of the
    # instances with config/examples/nginx-cluster.conf. Their system services are not wanted
    # (see below).
    PKGS+=(redis-server nginx)
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done
# Node: any node >= 18 already on PATH will do (node:test, fetch, the openai SDK).
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
elif ! command -v npm >/dev/null 2>&1; then
    if installed nodejs && dpkg-query -W -f='${Version}' nodejs | grep -q dfsg; then
        missing+=(npm) # Debian's own Node: Debian's npm goes with it
    else
        die "node is on PATH but npm is not; install the npm that goes with $(command -v node)"
    fi
fi

if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
    command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
    echo "install-deps: installing ${missing[*]}"
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q >"$log" 2>&1; then
        cat "$log" >&2
        die "apt-get update failed"
    fi
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get install failed for: ${missing[*]}"
    fi
fi

# promtool (`promtool check metrics` in tests/integration/metrics.test.mjs) comes with Debian's
# prometheus package. Only for the tests, and not worth failing them for: when it cannot be
# installed the reason is printed and that one check skips itself. The package would also run a
# Prometheus server as a service, which the tests do not want: it is stopped and disabled.
if ((WANT_TEST)) && ! installed prometheus; then
    why=""
    if [[ $(id -u) -ne 0 ]]; then
        why="not root"
    elif ! command -v apt-get >/dev/null 2>&1; then
        why="no apt-get"
    else
        echo "install-deps: installing prometheus (for promtool)"
        plog=$(mktemp)
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get install -y -q --no-install-recommends prometheus >"$plog" 2>&1 ||
            { apt-get update -q >>"$plog" 2>&1 &&
                apt-get install -y -q --no-install-recommends prometheus >>"$plog" 2>&1; }; }; then
            why="apt-get install failed: $(tail -n 1 "$plog")"
        elif command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
        rm -f "$plog"
    fi
    [[ -z $why ]] || echo "install-deps: promtool not installed ($why); the metrics test skips its promtool check"
fi

# redis-server and nginx start a system service when Debian installs them (Redis on 6379, nginx
# on 80). The tests start their own on free loopback ports; a service this script has just
# installed is stopped and disabled (one the machine had before is left alone).
for svc in redis-server nginx; do
    if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || die "node does not run"
((node_major >= 18)) || die "Node.js >= 18 is needed, found $(node --version)"

if ((WANT_TEST)); then
    # The test runner needs node --test-concurrency/--test-timeout (Node 20.10+).
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=10)?0:1)' ||
        die "the tests need Node.js >= 20.10, found $(node --version)"
    E2E="$ROOT/tests/e2e"
    [[ -f "$E2E/package.json" ]] || die "$E2E/package.json is missing"
    # Skip npm when node_modules already matches the lock (npm ci would delete and reinstall it).
    stamp="$E2E/node_modules/.install-stamp"
    if [[ -f "$E2E/package-lock.json" ]]; then
        want=$(cat "$E2E/package.json" "$E2E/package-lock.json" | sha256sum | cut -d' ' -f1)
        if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
            echo "install-deps: npm ci in tests/e2e"
            (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
                die "npm ci failed in tests/e2e"
            echo "$want" >"$stamp"
        fi
    else
        echo "install-deps: npm install in tests/e2e (no package-lock.json)"
        (cd "$E2E" && npm install --no-audit --no-fund --loglevel=error >/dev/null) ||
            die "npm install failed in tests/e2e"
    fi
    (cd "$E2E" && node -e 'require.resolve("openai")' >/dev/null 2>&1) ||
        die "the openai package is not resolvable from tests/e2e after install"
fi
exit 0
