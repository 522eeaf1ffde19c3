#!/usr/bin/env bash
# bench/run.sh: ModelSwitch's side-by-side benchmark (`make bench`; issue 5, bench/README.md).
#
# Starts, on 127.0.0.1 only, the project's mock upstream, nginx, the Portkey gateway and
# ModelSwitch (every production feature on), pins the proxy under test alone on one core and the
# load tools and upstream on the other, measures closed-loop throughput (wrk), CPU per request,
# open-loop added latency and streaming time to first byte (bench/loadgen.c), memory with many
# idle connections and many streams, and instructions per request (callgrind). Nothing here
# asserts a figure: it prints a table and writes bench/RESULTS.md (bench/report.mjs).
#
# ModelSwitch also runs with the shared state of several instances (config `redis:`, target
# "modelswitch-redis", issue 13) against a redis-server the harness starts on the load core, so
# that what Redis costs per request (the gateway's added CPU and latency, Redis's own CPU) is
# measured against the same gateway without it.
#
# HTTPS upstreams (issue 15): a test CA and server certificate are made at start (openssl), and
# nginx serves the mock's own answers as static files over plain HTTP and TLS on the load core
# (bench/upstream.conf.tmpl: a cheap, stable upstream). Targets modelswitch-https (the native TLS
# client, tls_ca_file = the test CA), modelswitch-https-curl (MODELSWITCH_UPSTREAM=curl) and
# nginx-https (proxy_pass https with verification and session reuse) use it. Phase "cpu" measures
# the proxies' CPU per request with the proxy the limit and the load core below saturation, plain
# HTTP and HTTPS, both against the static upstream; phase "scale" runs W workers on W cores when
# the machine has the cores for them and the load (else it says why it skipped); phase "shared"
# drives what the workers share (key cache, rate limiter, billing and its ledger, router,
# logger) from W threads on W cores, W = 1 up to every core (bench/scale.c), which needs no
# load core and so runs on this 2-core machine too.
#
# Every process it starts is tracked by pid and stopped on every exit path (trap).
#
# Environment:
#   BUILD=build          build dir with modelswitch and mock_upstream (relative to the repo)
#   BENCH_QUICK=1        one round, short runs (~2 min) for development
#   BENCH_NO_BUILD=1     do not run `make all` first (use the binaries already in BUILD)
#   BENCH_OUT=FILE       where to write the results (default bench/RESULTS.md)
#   BENCH_KEEP_TMP=1     keep the temp dir (configs, logs, raw results)
#   BENCH_TARGETS="direct nginx portkey modelswitch modelswitch-redis nginx-https
#                  modelswitch-https modelswitch-https-curl"
#                        the targets (a subset for development; modelswitch-redis only when
#                        redis-server is installed)
#   BENCH_PHASES="closed open ttfb mem cg cpu scale shared ledger"   the phases (a subset
#                        for development)
#   BENCH_CG_WORKLOADS="chat1k stream50"   the cg phase's workloads for every target (any of
#                        the cpu phase's: msgs50-oai with modelswitch-https is a translated stream
#                        read from the static upstream in one burst, as the cpu phase reads it)
#   BENCH_CG_MS_WORKLOADS="msg1k msg1k-oai ant1k gem1k gems50"   and for modelswitch alone, from the
#                        mock (one HTTP chunk an event)
#   BENCH_CPU_CONNS=16   wrk connections in the cpu and scale phases (few: see phase_cpu)
#   BENCH_CPU_WORKLOADS="chat1k chat1k-accts stream50 chat100k chat1k@256 msg1k msg1k-oai msgs50
#                        msgs50-oai"   the cpu phase's workloads (NAME@N: that workload with N wrk
#                        connections instead of BENCH_CPU_CONNS; msg*: Anthropic's Messages API,
#                        msgs50*: streamed, see the bodies)
#   BENCH_ACCOUNTS=256   NAME-accts workloads: requests go round this many keys, each of its
#                        own account
#   BENCH_GW_CPU=0 BENCH_LOAD_CPU=1                     the two cores
#   BENCH_BUSY_POLL_US=200   the open-loop and first-byte phases also measure ModelSwitch with
#                            server.busy_poll_us at this value ("modelswitch-poll"); 0 = not
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
QUICK=${BENCH_QUICK:-0}
OUT=${BENCH_OUT:-$ROOT/bench/RESULTS.md}
GW_CPU=${BENCH_GW_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
TARGETS=${BENCH_TARGETS:-direct nginx portkey modelswitch modelswitch-redis nginx-https \
    modelswitch-https modelswitch-https-curl}
TARGETS=$(tr -s ' \n' ' ' <<<"$TARGETS")
PHASES=${BENCH_PHASES:-closed open ttfb mem cg cpu scale shared ledger}
HTTPS_TARGETS="nginx-https modelswitch-https modelswitch-https-curl"
CPU_CONNS=${BENCH_CPU_CONNS:-16}
PORTKEY_DIR=$ROOT/bench/portkey

if [[ $QUICK == 1 ]]; then
    ROUNDS=1 DUR=2 WARM=1 OPEN_ROUNDS=1 OPEN_DUR=4 OPEN_WARM=1 CG_N1=100 CG_N2=600
    CPU_ROUNDS=1 CPU_DUR=3
else
    ROUNDS=3 DUR=4 WARM=1 OPEN_ROUNDS=2 OPEN_DUR=6 OPEN_WARM=1 CG_N1=200 CG_N2=2200
    CPU_ROUNDS=${BENCH_CPU_ROUNDS:-3} CPU_DUR=${BENCH_CPU_DUR:-5}
fi
WRK_CONNS=${BENCH_WRK_CONNS:-64}
OPEN_RATES=${BENCH_RATES:-500 5000}
TTFB_RATE=${BENCH_TTFB_RATE:-500}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
ACCOUNTS=${BENCH_ACCOUNTS:-256}
STREAMS=${BENCH_STREAMS:-1000}
BUSY_POLL_US=${BENCH_BUSY_POLL_US:-200}
WORKLOADS="chat1k chat100k stream50 embed"
CG_WORKLOADS=${BENCH_CG_WORKLOADS-chat1k stream50}
CG_MS_WORKLOADS=${BENCH_CG_MS_WORKLOADS:-msg1k msg1k-oai ant1k gem1k gems50}

T_START=$(date +%s)
TMP=$(mktemp -d /tmp/msbench.XXXXXX)
RES=$TMP/results.txt
: >"$RES"
PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
has() { [[ " $1 " == *" $2 "* ]]; }
has_ms() { [[ " $TARGETS " == *" modelswitch"* ]]; }
is_https() { has "$HTTPS_TARGETS" "$1"; }
# The static upstream (nginx, plain and TLS) is needed by the HTTPS targets and the cpu phase.
need_static() {
    local t
    for t in $HTTPS_TARGETS; do has "$TARGETS" "$t" && return 0; done
    has "$PHASES" cpu || has "$PHASES" scale
}
record() { printf '%s\n' "$*" >>"$RES"; }

# ---------------------------------------------------------------------------------------------
# processes

alive() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}') || return 1
    [[ -n $st && $st != Z ]]
}

# stop_pid PID [SIGNAL [SECONDS]]: signal, wait, then SIGKILL.
stop_pid() {
    local pid=$1 sig=${2:-TERM} secs=${3:-10} i
    alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 20; i++)); do
        alive "$pid" || break
        sleep 0.05
    done
    if alive "$pid"; then
        log "pid $pid did not exit after SIG$sig; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}" TERM 5
    done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 || $rc != 0 ]]; then
        log "temp dir kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bg CPU LOGFILE CMD...: starts CMD pinned to CPU in the background; sets BG.
bg() {
    local cpu=$1 logf=$2
    shift 2
    taskset -c "$cpu" "$@" >>"$logf" 2>&1 </dev/null &
    BG=$!
    PIDS+=("$BG")
}

# A free port below the ephemeral range: other programs on the machine (test suites) bind port 0
# and connect out all the time, and a port taken from the ephemeral range could be theirs by the
# time our server binds it; wait_port then checks that the listener really is ours.
free_port() {
    node -e '
const net = require("net");
const lo = 20000, hi = 32000;
const tryPort = (n) => {
    if (n === 0) { console.error("no free port"); process.exit(1); }
    const p = lo + Math.floor(Math.random() * (hi - lo));
    const s = net.createServer();
    s.once("error", () => tryPort(n - 1));
    s.listen(p, "127.0.0.1", () => { s.close(() => console.log(p)); });
};
tryPort(50);'
}

wait_port() { # PORT PID SECONDS
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            if command -v ss >/dev/null && ! ss -Hltnp "( sport = :$1 )" | grep -q "pid=$2,"; then
                log "port $1 is held by another process: $(ss -Hltnp "( sport = :$1 )")"
                return 1
            fi
            return 0
        fi
        alive "$2" || return 1
        sleep 0.05
    done
    return 1
}

# Upstream connections the mock has accepted so far (to see whether a proxy reuses them).
mock_conns() {
    curl -s -m 5 "http://127.0.0.1:$MOCK_PORT/_mock/stats" |
        sed -n 's/.*"connections":\([0-9]*\).*/\1/p'
}

# delta A B: B - A for decimal numbers (CPU seconds).
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }

# cpu_s PID...: user+system CPU seconds of the processes (all their threads).
CLK_TCK=$(getconf CLK_TCK)
cpu_s() {
    local t=0 p v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        t=$((t + ${v:-0}))
    done
    awk -v t="$t" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }'
}

# threads_s PID...: "th_NAME=SECONDS ..." for every thread of the processes, by name (threads of
# one name summed; a worker's number dropped, so W workers are one figure): which of ModelSwitch's
# threads the CPU of a request goes to (the worker, the ledger, the logger, the checkpointer).
threads_s() {
    local p
    for p in "$@"; do
        for t in /proc/"$p"/task/*; do
            [[ -r $t/stat ]] || continue
            sed 's/^[0-9]* (\(.*\)) /\1 /' "$t/stat" 2>/dev/null | awk '{print $1, $13 + $14}'
        done
    done | awk -v hz="$CLK_TCK" '{ n = $1; sub(/-[0-9]+$/, "", n); gsub(/[^A-Za-z0-9_-]/, "_", n)
        t[n] += $2 } END { for (n in t) printf "th_%s=%.3f ", n, t[n] / hz }'
}

# threads_delta "A" "B": B - A of two threads_s lines (a thread only in B counts from 0).
threads_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { na = split(a, x, " "); for (i = 1; i <= na; i++) {
        split(x[i], kv, "="); v[kv[1]] = kv[2] } nb = split(b, y, " ")
        for (i = 1; i <= nb; i++) { split(y[i], kv, "="); printf "%s=%.3f ", kv[1], kv[2] - v[kv[1]] } }'
}

# rss_kb FIELD PID...: VmRSS or VmHWM summed over processes.
mem_kb() {
    local f=$1 t=0 p v
    shift
    for p in "$@"; do
        v=$(awk -v f="$f:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -1 || true; }

# ---------------------------------------------------------------------------------------------
# prerequisites

ensure_nginx() {
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] && return 0
    log "installing nginx (Debian package) with apt-get"
    # The package's postinst would start the system service: a policy-rc.d that refuses service
    # starts prevents it (most containers already have one).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx)
    { "${apt[@]}" >"$TMP/apt.log" 2>&1 ||
        { apt-get update -q >>"$TMP/apt.log" 2>&1 && "${apt[@]}" >>"$TMP/apt.log" 2>&1; }; } ||
        rc=$?
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $rc == 0 ]] || die "apt-get install nginx failed (see $TMP/apt.log)"
}

ensure_portkey() {
    if [[ -d $PORTKEY_DIR/node_modules/@portkey-ai/gateway ]] &&
        cmp -s "$PORTKEY_DIR/package-lock.json" "$PORTKEY_DIR/node_modules/.bench-lock"; then
        return 0
    fi
    log "installing the Portkey gateway (npm ci in bench/portkey)"
    (cd "$PORTKEY_DIR" && npm ci --no-audit --no-fund >"$TMP/npm.log" 2>&1) ||
        die "npm ci in bench/portkey failed (see $TMP/npm.log)"
    cp "$PORTKEY_DIR/package-lock.json" "$PORTKEY_DIR/node_modules/.bench-lock"
}

# wrk and valgrind (callgrind) come from Debian like everything else: a fresh
# machine runs `make bench` without a manual step.
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v valgrind >/dev/null || missing+=(valgrind)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]} (Debian packages) with apt-get"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}")
    { "${apt[@]}" >"$TMP/apt-tools.log" 2>&1 ||
        { apt-get update -q >>"$TMP/apt-tools.log" 2>&1 && "${apt[@]}" >>"$TMP/apt-tools.log" 2>&1; }; } ||
        die "apt-get install ${missing[*]} failed (see $TMP/apt-tools.log)"
}

NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
ensure_tools
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
command -v node >/dev/null || die "node is not installed"
command -v taskset >/dev/null || die "taskset is not installed (util-linux)"
[[ $(nproc) -ge 2 ]] || die "needs 2 cores"
if ! command -v openssl >/dev/null && need_static; then
    log "openssl is not installed (Debian package openssl): no test CA, so no HTTPS targets" \
        "and no cpu/scale phases"
    for t in $HTTPS_TARGETS; do TARGETS=$(sed "s/ *$t\b//" <<<"$TARGETS"); done
    PHASES=$(sed 's/ *\bcpu\b//; s/ *\bscale\b//' <<<"$PHASES")
fi
if has "$TARGETS" nginx || need_static; then
    ensure_nginx
    NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
fi
has "$TARGETS" portkey && ensure_portkey
if has "$TARGETS" modelswitch-redis && ! command -v redis-server >/dev/null; then
    log "redis-server is not installed (Debian package redis-server): skipping modelswitch-redis"
    TARGETS=$(sed 's/ *modelswitch-redis//' <<<"$TARGETS")
fi
if has "$PHASES" cg && ! command -v valgrind >/dev/null; then
    log "valgrind is not installed: skipping the callgrind phase"
    PHASES=${PHASES/cg/}
fi

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building ($BUILD)"
    make -s -j2 BUILD="$BUILD" all >"$TMP/build.log" 2>&1 || die "build failed (see $TMP/build.log)"
fi
MS=$BUILD/modelswitch
MOCK=$BUILD/mock_upstream
[[ -x $MS && -x $MOCK ]] || die "$MS or $MOCK missing (build first, or set BUILD)"
LOADGEN=$BUILD/bench/loadgen
mkdir -p "$BUILD/bench"
LLOBJ=("$BUILD"/llhttp/llhttp.o "$BUILD"/llhttp/api.o "$BUILD"/llhttp/http.o)
[[ -f ${LLOBJ[0]} ]] || LLOBJ=(/usr/share/llhttp/{llhttp,api,http}.c)
${CC:-cc} -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -I/usr/share/include/llhttp \
    -o "$LOADGEN" bench/loadgen.c "${LLOBJ[@]}" -lm 2>"$TMP/loadgen-build.log" ||
    die "loadgen build failed (see $TMP/loadgen-build.log)"

# 10,000 client connections in one process, and as many accepted by the proxy.
HARD=$(ulimit -Hn)
if [[ $HARD != unlimited && $HARD -lt $((IDLE_CONNS + 2000)) ]]; then
    IDLE_CONNS=$((HARD - 2000))
    log "open-file hard limit is $HARD: idle connection test reduced to $IDLE_CONNS"
fi
ulimit -n "$([[ $HARD == unlimited ]] && echo 65536 || echo "$HARD")"

# ---------------------------------------------------------------------------------------------
# request bodies: the same bytes for every target

node - "$TMP" <<'EOF'
const fs = require('fs');
const dir = process.argv[2];
// A prompt of n bytes of plain words (what a long document looks like to a proxy).
const words = 'the quick brown fox jumps over the lazy dog while the gateway counts tokens ';
const text = (n) => words.repeat(Math.ceil(n / words.length)).slice(0, n);
const chat = (n, extra = {}) => JSON.stringify({
    model: 'bench-model', max_tokens: 256,
    messages: [
        { role: 'system', content: 'You are a benchmark.' },
        { role: 'user', content: text(n) },
    ],
    ...extra,
});
fs.writeFileSync(`${dir}/chat1k.json`, chat(1024));
fs.writeFileSync(`${dir}/chat100k.json`, chat(100 * 1024));
fs.writeFileSync(`${dir}/stream50.json`, chat(1024, { stream: true, mock: { chunks: 50 } }));
fs.writeFileSync(`${dir}/embed.json`, JSON.stringify({ model: 'bench-embed', input: text(1024) }));
// Anthropic's Messages API in Claude Code's shape (system and content as text blocks, the
// system prompt marked for caching, a user id in metadata), 1 KB of prompt: to a model on an
// Anthropic deployment (bench-claude: passed through) and to one on an OpenAI deployment
// (bench-model: translated both ways, what a Claude Code user of an OpenAI-shaped model runs).
const msg = (model) => JSON.stringify({
    model, max_tokens: 256,
    system: [{ type: 'text', text: 'You are a benchmark.', cache_control: { type: 'ephemeral' } }],
    messages: [{ role: 'user', content: [{ type: 'text', text: text(1024) }] }],
    metadata: { user_id: 'bench-user' },
});
fs.writeFileSync(`${dir}/msg1k.json`, msg('bench-claude'));
fs.writeFileSync(`${dir}/msg1k-oai.json`, msg('bench-model'));
// The same streamed, as Claude Code asks (the static upstream serves 50 events; no `mock` member:
// a translated request refuses fields its provider's API does not have).
const msgs = (model) => JSON.stringify({ ...JSON.parse(msg(model)), stream: true });
fs.writeFileSync(`${dir}/msgs50.json`, msgs('bench-claude'));
fs.writeFileSync(`${dir}/msgs50-oai.json`, msgs('bench-model'));
// OpenAI's chat to a model on a Gemini deployment (bench-gemini): translated both ways, every
// answer and chunk read from Google's shape (the cg phase, against the mock; its `mock` member
// reaches the mock, as Gemini's request keeps fields it does not know).
fs.writeFileSync(`${dir}/gem1k.json`, chat(1024, { model: 'bench-gemini' }));
// OpenAI's chat to a model on an Anthropic deployment (bench-claude): the request written in the
// Messages API, the answer read from it (the cg phase, against the mock).
fs.writeFileSync(`${dir}/ant1k.json`, chat(1024, { model: 'bench-claude' }));
fs.writeFileSync(`${dir}/gems50.json`,
    chat(1024, { model: 'bench-gemini', stream: true, mock: { chunks: 50 } }));
// Time to first byte: the same stream with 1 ms between events. Without a pause the mock (on the
// load core) writes all 52 events in one go, and the load generator, on the same core, only gets
// to read the first event a proxy forwarded once the mock is done: TTFB would be the mock's
// time to produce the whole stream.
fs.writeFileSync(`${dir}/ttfb50.json`,
    chat(1024, { stream: true, mock: { chunks: 50, chunk_delay_ms: 1 } }));
// Long-lived streams for the memory test: 50 chunks 60 ms apart (about 3 s each).
fs.writeFileSync(`${dir}/slowstream.json`,
    chat(1024, { stream: true, mock: { chunks: 50, chunk_delay_ms: 60 } }));
EOF

wl_path() {
    case $1 in
    embed) echo /v1/embeddings ;;
    msg*) echo /v1/messages ;;
    *) echo /v1/chat/completions ;;
    esac
}
# The request headers of a workload on the current target: T_HDRS, and for the Messages API the
# version header Anthropic's clients send (the key stays a Bearer token, as Claude Code sends
# it with ANTHROPIC_AUTH_TOKEN, so every target keeps its own authentication).
wl_hdrs() {
    printf '%s' "$T_HDRS"
    [[ ${1:-} == msg* ]] && printf '\nanthropic-version: 2023-06-01'
    return 0
}
wl_body() {
    case $1 in
    mem-streams) echo "$TMP/slowstream.json" ;;
    *-accts) echo "$TMP/${1%-accts}.json" ;;
    *) echo "$TMP/$1.json" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# the processes under test

MOCK_PORT=
MOCK_PID=
start_mock() {
    bg "$LOAD_CPU" "$TMP/mock.log" "$MOCK" --host 127.0.0.1 --port 0
    MOCK_PID=$BG
    local i
    for ((i = 0; i < 200; i++)); do
        MOCK_PORT=$(awk '/^PORT /{print $2}' "$TMP/mock.log")
        [[ -n $MOCK_PORT ]] && break
        alive "$MOCK_PID" || die "mock_upstream exited: $(cat "$TMP/mock.log")"
        sleep 0.05
    done
    [[ -n $MOCK_PORT ]] || die "mock_upstream printed no port"
    # The stream workloads need 50 chunks. Portkey forwards only the OpenAI fields it knows, so
    # the `mock` member of the body never reaches the upstream through it; if the mock takes
    # instance defaults for chunks, they are used, else Portkey's streams go through its
    # pass-through route /v1/proxy/..., which forwards the body as it is.
    MOCK_CHUNK_DEFAULT=0
    if curl -s -m 5 -X POST -H 'content-type: application/json' -d '{"chunks":3}' \
        "http://127.0.0.1:$MOCK_PORT/_mock/config" | grep -q '"chunks":3'; then
        MOCK_CHUNK_DEFAULT=1
    fi
}

# mock_chunks N [DELAY]: instance defaults for the streaming workloads (when supported).
mock_chunks() {
    [[ $MOCK_CHUNK_DEFAULT == 1 ]] || return 0
    curl -s -m 5 -o /dev/null -X POST -H 'content-type: application/json' \
        -d "{\"chunks\":$1,\"chunk_delay_ms\":${2:-0}}" "http://127.0.0.1:$MOCK_PORT/_mock/config"
}

# ---------------------------------------------------------------------------------------------
# the static upstream, plain HTTP and HTTPS (issue 15; bench/upstream.conf.tmpl)

# A test CA and a server certificate for 127.0.0.1 (IP SAN, what ModelSwitch verifies for an
# https://127.0.0.1 base_url) and localhost (DNS SAN, the name nginx-https verifies: nginx checks
# host names only). P-256 keys, as most providers' front ends serve; with keep-alive and session
# reuse a handshake is rare anyway.
make_tls() {
    local d=$TMP/tls
    mkdir -p "$d"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj "/CN=ModelSwitch bench test CA" -keyout "$d/ca.key" -out "$d/ca.pem" \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$d/server.key" -out "$d/server.csr" &&
            printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
                'extendedKeyUsage=serverAuth' >"$d/ext.cnf" &&
            openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
                -CAcreateserial -days 2 -out "$d/server.pem" -extfile "$d/ext.cnf" &&
            openssl verify -CAfile "$d/ca.pem" "$d/server.pem"
    } >"$d/openssl.log" 2>&1 || die "making the test CA failed (see $d/openssl.log)"
    TLS_CA=$d/ca.pem
}

# The mock's own answers, captured once: what the static upstream serves. The chat and stream
# requests are the ones the gateway sends upstream (a stream asks for the usage chunk).
capture_answers() {
    local d=$1 u="http://127.0.0.1:$MOCK_PORT"
    mkdir -p "$d"
    curl -sf -m 10 -o "$d/chat.json" -H 'content-type: application/json' \
        -d '{"model":"bench-model","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}' \
        "$u/v1/chat/completions" &&
        curl -sf -m 10 -o "$d/stream.sse" -H 'content-type: application/json' \
            -d '{"model":"bench-model","max_tokens":256,"stream":true,"mock":{"chunks":50},
                "stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}' \
            "$u/v1/chat/completions" &&
        curl -sf -m 10 -o "$d/embed.json" -H 'content-type: application/json' \
            -d '{"model":"bench-embed","input":"hello"}' "$u/v1/embeddings" &&
        curl -sf -m 10 -o "$d/messages.json" -H 'content-type: application/json' \
            -H 'x-api-key: sk-bench-upstream' -H 'anthropic-version: 2023-06-01' \
            -d '{"model":"bench-claude","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}' \
            "$u/v1/messages" &&
        curl -sf -m 10 -o "$d/msgstream.sse" -H 'content-type: application/json' \
            -H 'x-api-key: sk-bench-upstream' -H 'anthropic-version: 2023-06-01' \
            -d '{"model":"bench-claude","max_tokens":256,"stream":true,"mock":{"chunks":50},
                "messages":[{"role":"user","content":"hi"}]}' "$u/v1/messages" ||
        die "capturing the mock's answers for the static upstream failed"
}

UP_PID=
UP_PIDS=
UP_HTTP_PORT=
UP_TLS_PORT=
UP_ANSWER=chat
start_static_upstream() {
    local d=$TMP/upstream
    mkdir -p "$d/tmp"
    cp "$TMP/tls/server.pem" "$TMP/tls/server.key" "$d/"
    capture_answers "$d/answers"
    UP_HTTP_PORT=$(free_port)
    UP_TLS_PORT=$(free_port)
    while [[ $UP_TLS_PORT == "$UP_HTTP_PORT" ]]; do UP_TLS_PORT=$(free_port); done
    sed -e "s#@PREFIX@#$d#g" -e "s#@HTTP_PORT@#$UP_HTTP_PORT#g" -e "s#@TLS_PORT@#$UP_TLS_PORT#g" \
        -e "s#@USER@#$([[ $(id -u) == 0 ]] && echo 'user root;')#" \
        bench/upstream.conf.tmpl >"$d/nginx.conf"
    # The JSON answers go into the configuration as single-quoted strings (`return 200`).
    node -e '
const fs = require("fs");
const [conf, dir] = process.argv.slice(1);
let s = fs.readFileSync(conf, "utf8");
for (const [field, file] of [["@CHAT_JSON@", "chat.json"], ["@EMBED_JSON@", "embed.json"],
    ["@MESSAGES_JSON@", "messages.json"]]) {
    const j = fs.readFileSync(`${dir}/${file}`, "utf8").trim();
    if (/[$\x27\\]/.test(j)) { console.error(`${file}: $, quote or backslash`); process.exit(1); }
    s = s.replace(field, j);
}
fs.writeFileSync(conf, s);' "$d/nginx.conf" "$d/answers" || die "static upstream configuration"
    bg "$LOAD_CPU" "$d/stderr.log" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
    UP_PID=$BG
    wait_port "$UP_TLS_PORT" "$UP_PID" 60 ||
        die "the static upstream (nginx) did not start: $(cat "$d/stderr.log" "$d/error.log")"
    UP_PIDS="$UP_PID $(pgrep -P "$UP_PID" | tr '\n' ' ' || true)"
    local p
    for p in $UP_PIDS; do [[ $p == "$UP_PID" ]] || PIDS+=("$p"); done
    curl -sf -m 5 -o /dev/null --cacert "$TLS_CA" -d '{}' \
        "https://127.0.0.1:$UP_TLS_PORT/v1/chat/completions" ||
        die "the static upstream does not answer over TLS: $(tail -3 "$d/error.log")"
}

# static_answers chat|stream: which answers /v1/chat/completions and /v1/messages serve (the
# upstream does not read bodies, so the harness switches them per workload, as it sets the mock's
# chunks): the streams (OpenAI's chunks, Anthropic's events) while answers/streams.on exists.
# nginx looks files up at most once a second (open_file_cache_valid): wait until it serves them.
static_answers() {
    [[ -n $UP_PID && $1 != "$UP_ANSWER" ]] || return 0
    local a=$TMP/upstream/answers ct i p
    if [[ $1 == stream ]]; then
        : >"$a/streams.on"
        ct=text/event-stream
    else
        rm -f "$a/streams.on"
        ct=application/json
    fi
    UP_ANSWER=$1
    for p in chat/completions messages; do
        for ((i = 0; i < 50; i++)); do
            curl -s -m 5 -o /dev/null -w '%{content_type}' -d '{}' \
                "http://127.0.0.1:$UP_HTTP_PORT/v1/$p" | grep -q "^$ct" && break
            sleep 0.1
        done
        ((i < 50)) || die "the static upstream still serves the old answer at /v1/$p"
    done
}

# set_workload WL: the upstreams' answers for a workload (mock chunks, the static file).
set_workload() {
    case $1 in
    stream50 | msgs50* | gems50)
        mock_chunks 50
        static_answers stream
        ;;
    *)
        mock_chunks 3
        static_answers chat
        ;;
    esac
}

# The CPU seconds of the upstream serving TARGET (the static nginx for HTTPS and in the cpu phase).
up_cpu() { if [[ $UPSTREAM_MODE == static ]] || is_https "$1"; then cpu_s $UP_PIDS; else cpu_s "$MOCK_PID"; fi; }
UPSTREAM_MODE=mock

MS_DIR=$TMP/modelswitch
MS_KEY=
MS_STARTS=0
setup_modelswitch() {
    mkdir -p "$MS_DIR"
    MS_PORT=$(free_port)
    cat >"$MS_DIR/modelswitch.yaml" <<EOF
# Generated by bench/run.sh: every production feature on (key auth, rate limits counting but
# never refusing, balance holds and settlement, the usage ledger, the access log).
server:
  listen: 127.0.0.1:$MS_PORT
  workers: 1
  max_body_bytes: 16777216
store:
  sqlite: $MS_DIR/modelswitch.db
limits:
  requests_per_minute: 1000000000
  tokens_per_minute: 1000000000000
  account_requests_per_minute: 1000000000
  account_tokens_per_minute: 1000000000000
billing:
  markup_percent: 10
log:
  level: info
providers:
  mock:
    kind: openai
    base_url: http://127.0.0.1:$MOCK_PORT/v1
    api_key: sk-bench-upstream
  mock-anthropic:
    kind: anthropic
    base_url: http://127.0.0.1:$MOCK_PORT
    api_key: sk-bench-upstream
  mock-gemini:
    kind: gemini
    base_url: http://127.0.0.1:$MOCK_PORT
    api_key: sk-bench-upstream
models:
  bench-model:
    pricing: {input: 0.01, output: 0.02}
    max_output_tokens: 4096
    deployments: [{provider: mock}]
    limits: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000}
  bench-embed:
    pricing: {input: 0.01, output: 0}
    deployments: [{provider: mock}]
    limits: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000}
  bench-claude:
    pricing: {input: 0.01, output: 0.02}
    max_output_tokens: 4096
    deployments: [{provider: mock-anthropic}]
    limits: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000}
  bench-gemini:
    pricing: {input: 0.01, output: 0.02}
    max_output_tokens: 4096
    deployments: [{provider: mock-gemini}]
    limits: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000}
EOF
    local cfg=$MS_DIR/modelswitch.yaml acct
    acct=$("$MS" --config "$cfg" account create --name bench --balance 1000000 | tail -1) ||
        die "account create failed"
    MS_KEY=$("$MS" --config "$cfg" key create --account "$acct" --name bench | tail -1) ||
        die "key create failed"
    [[ $MS_KEY == ms-* ]] || die "key create printed no key"
    # NAME-accts workloads send each request with the next of ACCOUNTS keys, each of its own
    # account (wrk.lua, BENCH_KEYS): a busy gateway's ledger sees many accounts in a batch, where
    # one key gives it one (the usage ledger's cost per event depends on it: docs/PERFORMANCE.md,
    # round 22). Made only when a workload asks for them.
    : >"$MS_DIR/keys.txt"
    if [[ " $CPU_WORKLOADS $WORKLOADS $CG_WORKLOADS $CG_MS_WORKLOADS " == *-accts[@\ ]* ]]; then
        local i a k
        for ((i = 0; i < ACCOUNTS; i++)); do
            a=$("$MS" --config "$cfg" account create --name "bench$i" --balance 1000000 |
                tail -1) || die "account create failed"
            k=$("$MS" --config "$cfg" key create --account "$a" --name bench | tail -1) ||
                die "key create failed"
            [[ $k == ms-* ]] || die "key create printed no key"
            echo "$k" >>"$MS_DIR/keys.txt"
        done
    fi
    # The same gateway, database and key, with busy polling (docs/CONFIG.md server.busy_poll_us).
    sed "s/^  workers: 1\$/  workers: 1\n  busy_poll_us: $BUSY_POLL_US/" "$cfg" \
        >"$MS_DIR/modelswitch-poll.yaml"
    # The same gateway, database and key with the shared state of several instances in Redis
    # (docs/BILLING.md, "Several instances"): every admission is one script in Redis, every
    # request's end a reservation snapshot. Its Redis is started with it (start_redis).
    if has "$TARGETS" modelswitch-redis; then
        REDIS_PORT=$(free_port)
        { cat "$cfg" && echo "redis: redis://127.0.0.1:$REDIS_PORT/0"; } \
            >"$MS_DIR/modelswitch-redis.yaml"
    fi
    # The same gateway, database and key with the static upstream: over TLS with the test CA
    # (modelswitch-https, and modelswitch-https-curl with MODELSWITCH_UPSTREAM=curl), and over
    # plain HTTP (modelswitch-static: the cpu phase's plain-HTTP ModelSwitch).
    # The three providers (OpenAI's base URL ends in /v1, Anthropic's and Gemini's do not) move
    # to it.
    if [[ -n $UP_PID ]]; then
        local from="^    base_url: http://127.0.0.1:$MOCK_PORT\\(/v1\\)\\?\$"
        sed "s#$from#    base_url: https://127.0.0.1:$UP_TLS_PORT\\1\n    tls_ca_file: $TLS_CA#" \
            "$cfg" >"$MS_DIR/modelswitch-https.yaml"
        sed "s#$from#    base_url: http://127.0.0.1:$UP_HTTP_PORT\\1#" "$cfg" \
            >"$MS_DIR/modelswitch-static.yaml"
        [[ $(grep -c tls_ca_file "$MS_DIR/modelswitch-https.yaml") == 3 ]] ||
            die "no https config made"
    fi
}

# A redis-server for each start of modelswitch-redis, on the load core with the other side's
# processes (another machine's work in a deployment; its CPU is read on its own), no persistence.
# Fresh each time because Redis keeps a stopped instance's fields for an hour and every admission
# walks them: a Redis shared by every start of the run would cost more per request with each one
# (docs/PERFORMANCE.md, "Several instances"); fresh, each measurement is one instance alone. A
# fresh Redis admits nothing for the shared state's grace window (SH_GRACE_MS, 3 s): the target
# waits for a request to succeed (ms_ready) before it is measured. Stopped with its gateway.
REDIS_PID=
REDIS_PORT=
start_redis() {
    mkdir -p "$TMP/redis"
    bg "$LOAD_CPU" "$TMP/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save '' --appendonly no --dir "$TMP/redis" --daemonize no --protected-mode yes
    REDIS_PID=$BG
    wait_port "$REDIS_PORT" "$REDIS_PID" 30 ||
        die "redis-server did not start: $(tail -5 "$TMP/redis.log")"
    if [[ -z ${REDIS_SEEN:-} ]]; then
        REDIS_SEEN=1
        record "info redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//')" \
            "(no persistence, pinned on CPU $LOAD_CPU, a fresh one for each gateway start)"
    fi
}

stop_redis() {
    [[ -n $REDIS_PID ]] || return 0
    stop_pid "$REDIS_PID" TERM 10
    REDIS_PID=
}

# ms_ready SECONDS: one chat request at a time until one answers 2xx (the shared state admits
# nothing until this instance is registered and the epoch's grace is over: 503 meanwhile).
ms_ready() {
    local i code
    for ((i = 0; i < $1 * 5; i++)); do
        code=$(taskset -c "$LOAD_CPU" curl -s -o /dev/null -w '%{http_code}' -m 30 \
            -H 'Content-Type: application/json' -H "Authorization: Bearer $MS_KEY" \
            --data-binary "@$TMP/chat1k.json" "http://127.0.0.1:$MS_PORT/v1/chat/completions" ||
            true)
        [[ $code == 2* ]] && return 0
        alive "$T_PID" || return 1
        sleep 0.2
    done
    return 1
}

# ms_start NAME [valgrind args...]: one ModelSwitch process with the config NAME.yaml; sets
# T_PID, T_LOG.
ms_start() {
    local name=$1
    shift
    # stderr carries the operator log and the access log: to a file, as in production.
    MS_STARTS=$((MS_STARTS + 1))
    T_LOG=$MS_DIR/stderr.$MS_STARTS.$name.log
    bg "$GW_CPU" "$T_LOG" "$@" "$MS" serve --config "$MS_DIR/$name.yaml"
    T_PID=$BG
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q 'listening on' "$T_LOG" 2>/dev/null && break
        alive "$T_PID" || die "modelswitch ($name) exited: $(tail -20 "$T_LOG")"
        sleep 0.05
    done
    wait_port "$MS_PORT" "$T_PID" 60 ||
        die "modelswitch ($name) did not start: $(tail -20 "$T_LOG")"
}

# The targets of the latency phases: ModelSwitch also with busy polling, right after it. The
# first-byte phase leaves the HTTPS targets out: their static upstream cannot pause between events.
latency_targets() {
    local t
    for t in $TARGETS; do
        [[ ${1:-} == ttfb ]] && is_https "$t" && continue
        printf '%s ' "$t"
        [[ $t == modelswitch && $BUSY_POLL_US -gt 0 ]] && printf 'modelswitch-poll '
    done
}

# start_target NAME [valgrind args...]: sets T_PID (the process to measure), T_PIDS (all of its
# processes), T_PORT and T_HDRS (request headers).
start_target() {
    local name=$1
    shift
    case $name in
    direct)
        T_PID=$MOCK_PID T_PIDS=$MOCK_PID T_PORT=$MOCK_PORT
        T_HDRS=$'Content-Type: application/json\nAuthorization: Bearer sk-bench-upstream'
        ;;
    nginx | nginx-https)
        local d=$TMP/$name up_port=$MOCK_PORT scheme=http ssl=
        [[ $UPSTREAM_MODE == static ]] && up_port=$UP_HTTP_PORT
        if [[ $name == nginx-https ]]; then
            # Verified against the test CA by name (localhost: nginx checks DNS names only),
            # sessions reused on new connections; keep-alive as for plain HTTP.
            up_port=$UP_TLS_PORT scheme=https
            ssl="proxy_ssl_trusted_certificate $TLS_CA; proxy_ssl_verify on;"
            ssl+=" proxy_ssl_name localhost; proxy_ssl_server_name on;"
            ssl+=" proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.2 TLSv1.3;"
        fi
        mkdir -p "$d/tmp"
        T_PORT=$(free_port)
        sed -e "s#@PREFIX@#$d#g" -e "s#@PORT@#$T_PORT#g" -e "s#@UPSTREAM_PORT@#$up_port#g" \
            -e "s#@SCHEME@#$scheme#g" -e "s#@PROXY_SSL@#$ssl#" \
            -e "s#@USER@#$([[ $(id -u) == 0 ]] && echo 'user root;')#" \
            -e "s#@MASTER@#$([[ $# -gt 0 ]] && echo 'master_process off;')#" \
            bench/nginx.conf.tmpl >"$d/nginx.conf"
        bg "$GW_CPU" "$d/stderr.log" "$@" "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
        T_PID=$BG
        wait_port "$T_PORT" "$T_PID" 60 ||
            die "$name did not start: $(cat "$d/stderr.log" "$d/error.log")"
        # The worker does the work; it is pinned with its master. Track it so that it is stopped
        # even if the master has to be killed.
        T_PIDS="$T_PID $(pgrep -P "$T_PID" | tr '\n' ' ' || true)"
        local p
        for p in $T_PIDS; do [[ $p == "$T_PID" ]] || PIDS+=("$p"); done
        T_HDRS=$'Content-Type: application/json\nAuthorization: Bearer sk-bench-upstream'
        ;;
    portkey)
        T_PORT=$(free_port)
        bg "$GW_CPU" "$TMP/portkey.log" env NODE_ENV=production PORTKEY_BENCH_HOST=127.0.0.1 \
            node --import "$PORTKEY_DIR/preload.mjs" \
            "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/build/start-server.js" \
            --port="$T_PORT" --headless
        T_PID=$BG T_PIDS=$BG
        wait_port "$T_PORT" "$T_PID" 60 || die "Portkey did not start: $(cat "$TMP/portkey.log")"
        T_HDRS=$'Content-Type: application/json\nAuthorization: Bearer sk-bench-upstream\n'
        T_HDRS+=$'x-portkey-provider: openai\n'
        T_HDRS+="x-portkey-custom-host: http://127.0.0.1:$MOCK_PORT/v1"
        ;;
    modelswitch | modelswitch-poll | modelswitch-redis)
        [[ $name == modelswitch-redis ]] && start_redis
        T_PORT=$MS_PORT
        ms_start "$name" "$@"
        T_PIDS=$T_PID
        if [[ $name == modelswitch-redis ]]; then
            local t0=$SECONDS
            ms_ready 60 || die "modelswitch-redis answered no request with 2xx: $(tail -5 "$T_LOG")"
            log "modelswitch-redis: the shared state admitted after $((SECONDS - t0)) s"
        fi
        T_HDRS=$'Content-Type: application/json\n'"Authorization: Bearer $MS_KEY"
        ;;
    modelswitch-static | modelswitch-https | modelswitch-https-curl | modelswitch-https-w*)
        T_PORT=$MS_PORT
        if [[ $name == modelswitch-https-curl ]]; then
            ms_start modelswitch-https env MODELSWITCH_UPSTREAM=curl "$@"
        else
            ms_start "$name" "$@"
        fi
        T_PIDS=$T_PID
        T_HDRS=$'Content-Type: application/json\n'"Authorization: Bearer $MS_KEY"
        ;;
    *) die "unknown target $name" ;;
    esac
}

stop_target() { # NAME
    case $1 in
    direct) ;;
    nginx | nginx-https) stop_pid "$T_PID" QUIT 30 ;;
    *) stop_pid "$T_PID" TERM 60 ;;
    esac
    local p
    for p in $T_PIDS; do stop_pid "$p" KILL 5; done
    [[ $1 == modelswitch-redis ]] && stop_redis
    return 0
}

# Path of a workload on a target (Portkey's streams may need its pass-through route).
t_path() { # TARGET WORKLOAD
    local p
    p=$(wl_path "$2")
    if [[ $1 == portkey && $MOCK_CHUNK_DEFAULT != 1 && $2 != chat* && $2 != embed ]]; then
        p=/v1/proxy${p#/v1}
    fi
    echo "$p"
}

hdr_args() { # [WORKLOAD]: the workload's headers (wl_hdrs) as -H arguments for loadgen, in HDR_ARGS
    HDR_ARGS=()
    local line
    while IFS= read -r line; do [[ -n $line ]] && HDR_ARGS+=(-H "$line"); done <<<"$(wl_hdrs "${1:-}")"
    # NAME-accts: each request the next key of keys.txt, as wrk.lua does with BENCH_KEYS
    [[ ${1%@*} == *-accts ]] && HDR_ARGS+=(--keys-file "$MS_DIR/keys.txt")
    return 0
}

# A check that a target answers a workload correctly before it is measured.
check_target() { # TARGET WORKLOAD
    local out=$TMP/check.out
    hdr_args "$2"
    taskset -c "$LOAD_CPU" "$LOADGEN" --port "$T_PORT" --path "$(t_path "$1" "$2")" \
        "${HDR_ARGS[@]}" --body-file "$(wl_body "$2")" --count 20 --conns 2 \
        --timeout-ms 20000 >"$out" 2>"$out.err" || true
    if [[ $(kv "$out" ok) != 20 ]]; then
        log "WARNING: $1 $2: $(kv "$out" ok)/20 answered 2xx: $(tr '\n' ' ' <"$out.err")"
        record "check $2 $1 0 ok=$(kv "$out" ok) errors=$(kv "$out" errors)" \
            "non2xx=$(kv "$out" non2xx)"
    fi
}

# Redis's CPU seconds when TARGET uses it, else nothing (it is not the proxy's: read apart).
redis_cpu() { [[ $1 == modelswitch-redis && -n $REDIS_PID ]] && cpu_s "$REDIS_PID" || true; }

# ---------------------------------------------------------------------------------------------
# phase 1: closed loop (wrk), alternating rounds

wrk_run() { # TARGET WORKLOAD SECONDS OUTFILE [CONNECTIONS [CPUS [THREADS]]]
    local url
    url="http://127.0.0.1:$T_PORT$(t_path "$1" "$2")"
    local TIMEFORMAT='%U %S'
    local keys=
    [[ ${2%@*} == *-accts ]] && keys=$MS_DIR/keys.txt
    { time BENCH_BODY=$(wl_body "$2") BENCH_HEADERS=$(wl_hdrs "$2") BENCH_KEYS=$keys \
        taskset -c "${6:-$LOAD_CPU}" \
        wrk -t"${7:-1}" -c"${5:-$WRK_CONNS}" -d"${3}s" --timeout 10s -s bench/wrk.lua "$url" \
        >"$4" 2>&1; } 2>"$4.time"
}


# After a wrk run started at W0 that wrote OUT (and OUT.time): sets wall (seconds since W0),
# line (wrk.lua's "WRK ..." summary, or zero requests when wrk failed) and wu/ws (wrk's CPU).
wrk_result() { # W0 OUT TARGET WORKLOAD
    wall=$(awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}')
    line=$(grep '^WRK ' "$2" | head -1 || true)
    [[ -n $line ]] || {
        log "wrk failed on $3 $4: $(tail -3 "$2")"
        line="WRK requests=0 duration_us=1"
    }
    read -r wu ws <"$2.time"
}

phase_closed() {
    local wl t r i order
    local -a tl
    read -r -a tl <<<"$TARGETS"
    for wl in $WORKLOADS; do
        set_workload "$wl"
        for ((r = 1; r <= ROUNDS; r++)); do
            # Rotate the order each round so no target always runs first or last.
            order=()
            for ((i = 0; i < ${#tl[@]}; i++)); do
                order+=("${tl[(i + r - 1) % ${#tl[@]}]}")
            done
            for t in "${order[@]}"; do
                start_target "$t"
                [[ $r == 1 ]] && check_target "$t" "$wl"
                wrk_run "$t" "$wl" "$WARM" "$TMP/wrk.warm"
                local c0 m0 w0 c1 m1 r0 r1 out=$TMP/wrk.$wl.$t.$r
                local k0 k1
                k0=$(mock_conns)
                c0=$(cpu_s $T_PIDS)
                m0=$(up_cpu "$t")
                r0=$(redis_cpu "$t")
                w0=$(date +%s.%N)
                wrk_run "$t" "$wl" "$DUR" "$out"
                c1=$(cpu_s $T_PIDS)
                m1=$(up_cpu "$t")
                r1=$(redis_cpu "$t")
                k1=$(mock_conns)
                local line wall
                wrk_result "$w0" "$out" "$t" "$wl"
                record "closed $wl $t $r ${line#WRK } proxy_cpu_s=$(delta "$c0" "$c1")" \
                    "mock_cpu_s=$(delta "$m0" "$m1") wrk_cpu_s=$(sum "$wu" "$ws")" \
                    "wall_s=$wall upstream_conns=$((${k1:-0} - ${k0:-0} - 1))" \
                    "$([[ -n $r0 ]] && echo "redis_cpu_s=$(delta "$r0" "$r1")")"
                log "closed $wl $t round $r: $(awk '{
                    for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
                    printf "%.0f req/s", v["requests"] / (v["duration_us"] / 1e6) }' <<<"$line")"
                [[ $t == direct ]] || stop_target "$t"
            done
        done
    done
    set_workload chat1k
}

# ---------------------------------------------------------------------------------------------
# phases 2 and 3: open loop (loadgen): added latency at fixed rates, streaming time to first byte

# Closed-loop capacity of a target on a workload (median req/s), 0 if unknown.
capacity() {
    awk -v wl="$2" -v t="$1" '$1 == "closed" && $2 == wl && $3 == t {
        for (i = 5; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
        if (v["duration_us"] > 0) print v["requests"] / (v["duration_us"] / 1e6) }' "$RES" |
        sort -n | awk '{a[NR] = $1} END { print NR ? a[int((NR + 1) / 2)] : 0 }'
}

open_run() { # KIND TARGET WORKLOAD RATE ROUND
    local kind=$1 t=$2 wl=$3 rate=$4 nominal=$4 round=$5 cap out=$TMP/open.$1.$2.$3.$4.$5
    cap=$(capacity "$t" "${wl/ttfb50/stream50}")
    # A rate above what a peer can sustain only measures an ever-growing queue. A peer whose
    # closed-loop capacity is under twice the rate is measured at half its capacity instead (the
    # table says so), or skipped if that is under a tenth of the rate. ModelSwitch is always
    # measured at the rate asked: its figure at that rate is the point.
    if [[ $t != modelswitch* ]] &&
        awk -v c="$cap" -v r="$rate" 'BEGIN { exit !(c > 0 && c < r * 2) }'; then
        if awk -v c="$cap" -v r="$rate" 'BEGIN { exit !(c / 2 < r / 10) }'; then
            log "$kind $wl $t at $rate req/s: skipped (closed-loop capacity $cap req/s)"
            record "$kind $wl $t $rate round=$round skipped=1 capacity=$cap"
            return 0
        fi
        rate=$(awk -v c="$cap" 'BEGIN { r = int(c / 2); print r < 1 ? 1 : r }')
        log "$kind $wl $t: closed-loop capacity $cap req/s, measured at $rate req/s" \
            "instead of $nominal"
    fi
    hdr_args "$wl"
    local c0 m0 c1 m1 k0 k1 r0 r1
    k0=$(mock_conns)
    c0=$(cpu_s $T_PIDS)
    m0=$(up_cpu "$t")
    r0=$(redis_cpu "$t")
    taskset -c "$LOAD_CPU" "$LOADGEN" --port "$T_PORT" --path "$(t_path "$t" "$wl")" \
        "${HDR_ARGS[@]}" --body-file "$(wl_body "$wl")" --rate "$rate" --duration "$OPEN_DUR" \
        --warmup "$OPEN_WARM" --conns 64 --max-conns 2000 --timeout-ms 10000 \
        >"$out" 2>"$out.err" || log "loadgen failed on $t: $(cat "$out.err")"
    c1=$(cpu_s $T_PIDS)
    m1=$(up_cpu "$t")
    r1=$(redis_cpu "$t")
    k1=$(mock_conns)
    [[ -s $out.err ]] && log "$t $wl: $(tr '\n' ' ' <"$out.err")"
    local up=$((${k1:-0} - ${k0:-0} - 1))
    record "$kind $wl $t $nominal round=$round $(tr '\n' ' ' <"$out")" \
        "proxy_cpu_s=$(delta "$c0" "$c1") mock_cpu_s=$(delta "$m0" "$m1") upstream_conns=$up" \
        "$([[ -n $r0 ]] && echo "redis_cpu_s=$(delta "$r0" "$r1")")"
    log "$kind $wl $t at $rate req/s (round $round): p50 $(kv "$out" lat_p50_us) µs," \
        "p99 $(kv "$out" lat_p99_us) µs, ttfb p50 $(kv "$out" ttfb_p50_us) µs," \
        "errors $(kv "$out" errors), non-2xx $(kv "$out" non2xx)," \
        "client conns $(kv "$out" conns_opened), upstream conns $up"
}

# Latency percentiles on a shared machine only ever get worse from noise: each target runs
# OPEN_ROUNDS times (alternating) and the report keeps the best round of each.
phase_open() {
    local t rate r
    mock_chunks 3
    for ((r = 1; r <= OPEN_ROUNDS; r++)); do
        for t in $(latency_targets); do
            start_target "$t"
            for rate in $OPEN_RATES; do open_run open "$t" chat1k "$rate" "$r"; done
            [[ $t == direct ]] || stop_target "$t"
        done
    done
}

phase_ttfb() {
    local t r
    mock_chunks 50 1
    for ((r = 1; r <= OPEN_ROUNDS; r++)); do
        for t in $(latency_targets ttfb); do
            start_target "$t"
            open_run ttfb "$t" ttfb50 "$TTFB_RATE" "$r"
            [[ $t == direct ]] || stop_target "$t"
        done
    done
    mock_chunks 3
}

# ---------------------------------------------------------------------------------------------
# phase 4: memory with 10,000 idle keep-alive connections and with 1,000 concurrent streams

mem_run() { # TEST TARGET N INFLIGHT HOLD_SECS WORKLOAD
    local test=$1 t=$2 n=$3 inflight=$4 hold=$5 wl=$6 out=$TMP/mem.$1.$2
    start_target "$t"
    local base
    base=$(mem_kb VmRSS $T_PIDS)
    hdr_args "$wl"
    taskset -c "$LOAD_CPU" "$LOADGEN" --port "$T_PORT" --path "$(t_path "$t" "$wl")" \
        "${HDR_ARGS[@]}" --body-file "$(wl_body "$wl")" --hold "$n" --inflight "$inflight" \
        --hold-secs "$hold" --timeout-ms 60000 >"$out" 2>"$out.err" &
    local lg=$!
    PIDS+=("$lg")
    local peak=0 cur i ready=
    # Sample RSS while the load runs; the idle figure is read once every request is done.
    for ((i = 0; i < 2400; i++)); do
        alive "$lg" || break
        cur=$(mem_kb VmRSS $T_PIDS)
        ((cur > peak)) && peak=$cur
        if [[ -z $ready ]] && grep -q '^READY' "$out" 2>/dev/null; then
            sleep 0.5
            ready=$(mem_kb VmRSS $T_PIDS)
        fi
        sleep 0.05
    done
    wait "$lg" 2>/dev/null || true
    local hwm
    hwm=$(mem_kb VmHWM $T_PIDS)
    record "mem $test $t $n rss_base_kb=$base rss_ready_kb=${ready:-0} rss_peak_kb=$peak" \
        "hwm_kb=$hwm open_at_ready=$(sed -n 's/^READY //p' "$out") $(tr '\n' ' ' <"$out")"
    log "mem $test $t: base $((base / 1024)) MB, at ready $((${ready:-0} / 1024)) MB," \
        "sampled peak $((peak / 1024)) MB, HWM $((hwm / 1024)) MB; ok $(kv "$out" ok)/$n," \
        "max streaming $(kv "$out" max_streaming), errors $(kv "$out" errors)"
    [[ -s $out.err ]] && log "$t: $(tr '\n' ' ' <"$out.err")"
    stop_target "$t"
}

phase_mem() {
    local t
    for t in $TARGETS; do
        # The shared state changes no buffer a connection or a stream holds: not measured here.
        [[ $t == direct || $t == modelswitch-redis ]] && continue
        # Nor does the upstream's scheme (and the static upstream cannot pace long streams).
        is_https "$t" && continue
        # Portkey needs about 20 s for 10,000 requests; quick runs leave it out.
        [[ $t == portkey && $QUICK == 1 ]] && continue
        mock_chunks 3
        mem_run idle "$t" "$IDLE_CONNS" 64 2 chat1k
        mock_chunks 50 60
        mem_run streams "$t" "$STREAMS" "$STREAMS" 0 mem-streams
    done
    mock_chunks 3
}

# ---------------------------------------------------------------------------------------------
# phase 5: instructions per request under callgrind (N1 and N2 requests, the difference)

# The entry functions of ModelSwitch's threads (src/: server, billing, common/log, auth/keycache,
# store/sqlite, notify/webhook, shared), which name them in the per-thread split.
CG_ENTRIES='worker_main|bill_main|bill_jr_main|log_thread|kc_main|store_ckpt_main|hook_main'
CG_ENTRIES+='|beat_main|sub_main'
cg_run() { # TARGET WORKLOAD N
    local t=$1 wl=$2 n=$3 d=$TMP/cg/$1.$2.$3
    mkdir -p "$d"
    start_target "$t" valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$d/callgrind.out" --dump-instr=no
    hdr_args "$wl"
    taskset -c "$LOAD_CPU" "$LOADGEN" --port "$T_PORT" --path "$(t_path "$t" "$wl")" \
        "${HDR_ARGS[@]}" --body-file "$(wl_body "$wl")" --count "$n" --conns 4 \
        --timeout-ms 60000 >"$d/loadgen.out" 2>&1 || true
    stop_target "$t"
    # One file per thread; the event total is the "summary:" (or "totals:") line. A thread is
    # named by the entry function it ran (ModelSwitch's worker, ledger writer, ledger journal,
    # logger, key-cache refresher, SQLite checkpointer, webhooks, the shared state's heartbeat
    # and notice reader), else "main"; threads of the same name are summed.
    local f v th
    local -A per=()
    CG_TOT=0 CG_MAX=0
    CG_THR=()
    for f in "$d"/callgrind.out*; do
        v=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
        [[ -n $v ]] || continue
        CG_TOT=$((CG_TOT + v))
        ((v > CG_MAX)) && CG_MAX=$v
        th=$(grep -oE "^c?fn=\\([0-9]+\\) ($CG_ENTRIES)\\b" "$f" | head -1 | awk '{print $2}' ||
            true)
        case $th in
        worker_main) th=worker ;; bill_main) th=ledger ;; bill_jr_main) th=journal ;;
        log_thread) th="logger" ;; kc_main) th=keycache ;; store_ckpt_main) th=checkpoint ;;
        hook_main) th=webhook ;; beat_main) th=redis-beat ;; sub_main) th=redis-sub ;;
        *) th=main ;;
        esac
        per[$th]=$((${per[$th]:-0} + v))
    done
    for th in "${!per[@]}"; do CG_THR+=("$th=${per[$th]}"); done
    CG_OK=$(kv "$d/loadgen.out" ok)
    CG_OK=${CG_OK:-0}
}

# cg_pair TARGET WORKLOAD: the target under callgrind for N1 and N2 requests, recorded.
cg_pair() {
    local t=$1 wl=$2
    local -a a b
    cg_run "$t" "$wl" "$CG_N1"
    a=("$CG_TOT" "$CG_MAX" "$CG_OK")
    local thr1=("${CG_THR[@]/#/t1_}")
    cg_run "$t" "$wl" "$CG_N2"
    b=("$CG_TOT" "$CG_MAX" "$CG_OK")
    local thr2=("${CG_THR[@]/#/t2_}")
    record "cg $wl $t 0 n1=$CG_N1 n2=$CG_N2 ir1=${a[0]} ir2=${b[0]} top1=${a[1]}" \
        "top2=${b[1]} ok1=${a[2]} ok2=${b[2]} ${thr1[*]} ${thr2[*]}"
    log "callgrind $wl $t: $(((b[0] - a[0]) / (CG_N2 - CG_N1))) instructions/request" \
        "(all threads); ok ${a[2]}/$CG_N1, ${b[2]}/$CG_N2"
}

phase_cg() {
    local t wl
    mock_chunks 3
    for wl in $CG_WORKLOADS; do
        set_workload "$wl"
        for t in modelswitch modelswitch-redis nginx modelswitch-https modelswitch-https-curl \
            nginx-https; do
            if has "$TARGETS" "$t"; then cg_pair "$t" "$wl"; fi
        done
    done
    # Claude Code's requests (the cpu phase's msg1k, msg1k-oai) and OpenAI's chat to a Claude
    # model (ant1k) and to a Gemini model (gem1k, gems50) to the mock, ModelSwitch alone: the Messages dialect's and the
    # translations' instructions, for the comparison with the previous results (nginx's would
    # be chat's: it reads no body)
    if has "$TARGETS" modelswitch; then
        for wl in $CG_MS_WORKLOADS; do
            set_workload "$wl"
            cg_pair modelswitch "$wl"
        done
    fi
    set_workload chat1k
}

# ---------------------------------------------------------------------------------------------
# phase 6: CPU per request with the proxy the limit (issue 15)
#
# The closed phase's figures are capped by the load core (wrk + the mock, which parses every
# body): there every proxy's core idles part of the time and the req/s ratio says little. Here
# the upstream is the static nginx (bench/upstream.conf.tmpl), the same for the plain-HTTP and
# the HTTPS targets, so the load core (wrk + that upstream) costs less per request than any
# proxy, and wrk runs closed-loop with few connections (BENCH_CPU_CONNS, 16): enough to keep the
# proxy busy, few enough that the load side does not spend its core on queues. Whether the load
# core was the limit is not assumed but measured: its CPU use (wrk from bash `time`, the
# upstream from /proc) over the run's wall time is recorded with the proxy's, and the report
# marks a run whose load core was above 90% (its CPU per request is still exact, but taken with
# the proxy partly idle). The headline is the proxy's CPU per request (user+system, all
# threads) and requests per second of proxy CPU, against nginx's on the same upstream.
# The 50-event stream comes from the static upstream in one burst: nginx forwards it in a few
# large writes, and so does ModelSwitch since it corks a client stream for the rest of a loop
# iteration once its first event is out (http_stream_cork; before that it wrote event by event,
# and this phase left streams out as unlike work). When a real provider's events come apart in
# time, both write each one as it comes.
# Two workloads are there for what few connections and small prompts hide: 100 KB prompts (the
# body's copies and TLS records: the allocator gave a worker's heap back to the kernel after
# each, and every request faulted it in again) and chat1k@256, 256 connections (a proxy's pool of
# upstream connections must hold that many, or each request pays a new connection: a TLS
# handshake). Both cost the proxy 1.6-2.7 times nginx's CPU before round 13 (docs/PERFORMANCE.md).
# Four are Claude Code's requests (Anthropic's Messages API), whole and streamed (50 events):
# msg1k and msgs50 to an Anthropic deployment, passed through as chat is, and msg1k-oai and
# msgs50-oai to an OpenAI deployment, which the gateway translates (the request into chat
# completions, the answer or each chunk back into Anthropic's events) and nginx cannot: nginx
# proxies the same request to the upstream's /v1/messages, so those rows' ratio is what
# translating costs over a pass-through.
CPU_WORKLOADS=${BENCH_CPU_WORKLOADS:-chat1k chat1k-accts stream50 chat100k chat1k@256 msg1k msg1k-oai msgs50 msgs50-oai}
cpu_run() { # KIND TARGET START_AS WORKLOAD[@CONNS] ROUND [GW_CPUS LOAD_CPUS THREADS]
    local kind=$1 t=$2 as=$3 wl=$4 r=$5 lc=${7:-$LOAD_CPU} th=${8:-1}
    local out=$TMP/$kind.$wl.$t.$r c0 c1 u0 u1 h0 h1 w0 wall line wu ws
    local base=${wl%@*} conns=$CPU_CONNS
    [[ $wl == *@* ]] && conns=${wl#*@}
    start_target "$as"
    [[ $r == 1 ]] && check_target "$t" "$base"
    wrk_run "$as" "$base" "$WARM" "$TMP/wrk.warm" "$conns" "$lc" "$th"
    c0=$(cpu_s $T_PIDS)
    u0=$(cpu_s $UP_PIDS)
    h0=$(threads_s $T_PIDS)
    w0=$(date +%s.%N)
    wrk_run "$as" "$base" "$CPU_DUR" "$out" "$conns" "$lc" "$th"
    c1=$(cpu_s $T_PIDS)
    u1=$(cpu_s $UP_PIDS)
    h1=$(threads_s $T_PIDS)
    wrk_result "$w0" "$out" "$t" "$wl"
    record "$kind $wl $t $r ${line#WRK } proxy_cpu_s=$(delta "$c0" "$c1")" \
        "mock_cpu_s=$(delta "$u0" "$u1") wrk_cpu_s=$(sum "$wu" "$ws") wall_s=$wall" \
        "load_cores=$(awk -F, '{print NF}' <<<"$lc") ${CPU_EXTRA:-}" \
        "$([[ $t == modelswitch* ]] && threads_delta "$h0" "$h1")"
    log "$kind $wl $t round $r: $(awk -v c="$(delta "$c0" "$c1")" -v w="$wall" \
        -v u="$(delta "$u0" "$u1")" -v k="$(sum "$wu" "$ws")" '{
        for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
        printf "%.0f req/s, proxy %.1f µs/req, proxy core %.0f%%, load core %.0f%%",
            v["requests"] / (v["duration_us"] / 1e6), c * 1e6 / (v["requests"] ? v["requests"] : 1),
            100 * c / w, 100 * (u + k) / w }' <<<"$line")"
    stop_target "$as"
}

# A round runs each comparison's targets back to back (nginx then ModelSwitch over plain HTTP,
# then nginx-https and the two HTTPS ModelSwitch targets), the order within each group and of the
# two groups turned round every round: the report's ratio is the median of the rounds' ratios,
# each taken from runs seconds apart, where this VM's speed moves by up to 30% from one minute to
# the next (docs/PERFORMANCE.md, round 17).
cpu_round_order() { # ROUND: prints the targets of that round, in order
    local r=$1 g t i n
    local -a plain=() tls=() groups
    for t in nginx modelswitch; do has "$TARGETS" "$t" && plain+=("$t"); done
    for t in nginx-https modelswitch-https modelswitch-https-curl; do
        has "$TARGETS" "$t" && tls+=("$t")
    done
    if ((r % 2)); then groups=(plain tls); else groups=(tls plain); fi
    for g in "${groups[@]}"; do
        local -n grp=$g
        n=${#grp[@]}
        for ((i = 0; i < n; i++)); do printf '%s\n' "${grp[(i + r - 1) % n]}"; done
        unset -n grp
    done
}

phase_cpu() {
    local wl r t
    [[ -n $(cpu_round_order 1) ]] || return 0
    UPSTREAM_MODE=static
    for wl in $CPU_WORKLOADS; do
        set_workload "${wl%@*}"
        for ((r = 1; r <= CPU_ROUNDS; r++)); do
            for t in $(cpu_round_order "$r"); do
                cpu_run cpu "$t" "$([[ $t == modelswitch ]] && echo modelswitch-static || echo "$t")" \
                    "$wl" "$r"
            done
        done
    done
    set_workload chat1k
    UPSTREAM_MODE=mock
}

# ---------------------------------------------------------------------------------------------
# phase 7: several workers on several cores (issue 15)
#
# W workers (server.workers: W) pinned on W cores, the load (wrk, one thread per load core) and
# the static upstream on the others, W = 1, 2, ... as far as the cores allow, HTTPS upstream
# (the users' case), chat 1 KB. Half the cores (at least one) carry the load, so W goes up to
# the other half; the phase needs W = 2 at least (4 cores), else it prints why it is skipped and
# the report says so. The static upstream stays on LOAD_CPU (one nginx worker): on a machine
# with the cores, check its core in the record (load core use) before reading the scaling.
phase_scale() {
    local n reason w gw lc
    n=$(nproc)
    local nload=$((n / 2 > 0 ? n / 2 : 1))
    local maxw=$((n - nload))
    if ((maxw < 2)); then
        reason="$n cores: two workers on two cores plus a core for the load and the upstream"
        reason+=" need at least 4 (half the cores carry the load); multi-worker run skipped"
        log "scale: $reason"
        record "info scale_skipped $reason"
        return 0
    fi
    has "$TARGETS" modelswitch-https || return 0
    # Load cores: the last nload (LOAD_CPU is among them only if it is one of those).
    lc=$(seq -s, $((n - nload)) $((n - 1)))
    set_workload chat1k
    for ((w = 1; w <= maxw; w++)); do
        gw=$(seq -s, 0 $((w - 1)))
        sed "s/^  workers: 1\$/  workers: $w/" "$MS_DIR/modelswitch-https.yaml" \
            >"$MS_DIR/modelswitch-https-w$w.yaml"
        GW_CPU=$gw CPU_EXTRA="workers=$w" cpu_run scale modelswitch-https-w$w \
            modelswitch-https-w$w chat1k 1 "$gw" "$lc" "$nload"
    done
}

# ---------------------------------------------------------------------------------------------
# phase 8: what the workers share, W threads on W cores (issue 15; bench/scale.c says why and
# how). Runs on any machine: W = 1 to every core, no load core needed. Its paced runs put a
# worker's own work between two requests: the cpu phase's CPU per chat request when it ran
# (ModelSwitch, plain HTTP, median of the rounds), else 30 µs.
phase_shared() {
    local pace rounds=5 per=25000 out=$TMP/shared.out
    pace=$(awk '$1 == "cpu" && $2 == "chat1k" && $3 == "modelswitch" {
            for (i = 5; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
            if (v["requests"] > 0) print v["proxy_cpu_s"] * 1e6 / v["requests"] }' "$RES" |
        sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 30 }')
    [[ $QUICK == 1 ]] && { rounds=3; per=10000; }
    # (the rest of the run is measured already: a build failure here only skips the phase)
    if ! make -s BUILD="$BUILD" "$BUILD/bench/scale" >"$TMP/scale-build.log" 2>&1; then
        log "shared: bench/scale build failed (see $TMP/scale-build.log); phase skipped"
        return 0
    fi
    mkdir -p "$TMP/shared"
    log "shared: W threads on W cores, W = 1..$(nproc), $rounds rounds, paced at $pace µs"
    if ! "$BUILD/bench/scale" "$TMP/shared" "$per" "$rounds" "$pace" >"$out"; then
        log "shared: bench/scale failed: $(tail -1 "$out")"
        return 0
    fi
    grep '^shared ' "$out" | grep -v '^shared audit' >>"$RES"
    record "info shared_pace_us $pace"
    record "info shared_audit $(sed -n 's/^shared audit //p' "$out")"
}

# ---------------------------------------------------------------------------------------------
# phase 9: the ledger writer against the number of accounts its batches charge (issue 15;
# bench/ledger.c says why and how). The program commits usage batches on a handle set up as the
# gateway's ledger (its checkpointer beside it), pinned on the proxy's core as the gateway's
# ledger thread would be; 1, 256, 10,000 and 100,000 accounts (quick mode: the first three).
phase_ledger() {
    local secs=3 out=$TMP/ledger.out counts=(1 256 10000 100000)
    [[ $QUICK == 1 ]] && { secs=1; counts=(1 256 10000); }
    if ! make -s BUILD="$BUILD" "$BUILD/bench/ledger" >"$TMP/ledger-build.log" 2>&1; then
        log "ledger: bench/ledger build failed (see $TMP/ledger-build.log); phase skipped"
        return 0
    fi
    mkdir -p "$TMP/ledger"
    log "ledger: the ledger writer over ${counts[*]} accounts, ${secs}s a case"
    if ! taskset -c "$GW_CPU" "$BUILD/bench/ledger" "$TMP/ledger" "$secs" "${counts[@]}" \
        >"$out" 2>"$TMP/ledger.err"; then
        log "ledger: bench/ledger failed: $(tail -1 "$TMP/ledger.err")"
    fi
    grep '^ledger ' "$out" | grep -v '^ledger audit' >>"$RES" || true
    record "info ledger_audit $(sed -n 's/^ledger audit //p' "$out")"
    rm -rf "$TMP/ledger" # up to a few hundred MB of databases
}

# ---------------------------------------------------------------------------------------------
# main

machine_info() {
    record "info cpu $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    record "info cores $(nproc)"
    record "info loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)" \
        "(other work on the machine makes the figures noisier)"
    record "info kernel $(uname -sr)"
    record "info os $(. /etc/os-release && echo "$PRETTY_NAME")"
    record "info mem $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    record "info nginx $("$NGINX" -v 2>&1 | sed 's/.*: //' || echo none)"
    record "info node $(node --version)"
    record "info portkey $(node -p 'require(process.argv[1]).version' \
        "$PORTKEY_DIR/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null || echo none)"
    record "info wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    record "info valgrind $(valgrind --version 2>/dev/null || echo none)"
    local rev mod=
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
    git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || mod=', src modified'
    record "info modelswitch $("$MS" --version 2>/dev/null | head -1) ($rev$mod)"
    record "info busy_poll_us $BUSY_POLL_US"
    record "info mode $([[ $QUICK == 1 ]] && echo quick || echo full): rounds=$ROUNDS" \
        "wrk=${DUR}s+${WARM}s warm-up, ${WRK_CONNS} connections;" \
        "open loop ${OPEN_ROUNDS} rounds of ${OPEN_DUR}s (${OPEN_WARM}s warm-up);" \
        "idle=$IDLE_CONNS streams=$STREAMS; callgrind N1=$CG_N1 N2=$CG_N2"
    record "info pinning proxy on CPU $GW_CPU; load tools and mock upstream on CPU $LOAD_CPU"
    if [[ -n $UP_PID ]]; then
        record "info static_upstream nginx serving the mock's answers as files, plain HTTP and" \
            "TLS (test CA, P-256, $(openssl version | awk '{print $1, $2}')), on CPU $LOAD_CPU:" \
            "the HTTPS targets' upstream and the cpu phase's; cpu phase: wrk $CPU_CONNS" \
            "connections, $CPU_ROUNDS rounds of ${CPU_DUR}s"
    fi
    if [[ $MOCK_CHUNK_DEFAULT == 1 ]]; then
        record "info portkey_streams normal route, chunks from the mock's instance defaults"
    else
        record "info portkey_streams pass-through route /v1/proxy/chat/completions" \
            "(Portkey drops the body's mock member on its normal route)"
    fi
}

start_mock
if need_static; then
    make_tls
    start_static_upstream
fi
has_ms && setup_modelswitch
machine_info
log "mock upstream on port $MOCK_PORT (CPU $LOAD_CPU); targets: $TARGETS; phases: $PHASES"
has "$PHASES" closed && phase_closed
has "$PHASES" open && phase_open
has "$PHASES" ttfb && phase_ttfb
has "$PHASES" mem && phase_mem
has "$PHASES" cg && phase_cg
has "$PHASES" cpu && phase_cpu
has "$PHASES" scale && phase_scale
has "$PHASES" shared && phase_shared
has "$PHASES" ledger && phase_ledger
if has_ms && ((MS_STARTS > 0)); then
    # What the gateway logged: access lines by status class, warnings and errors (for the report).
    # grep -o rather than a sed capture: the cpu phase leaves millions of lines, which a
    # backtracking `.*"status"` took minutes over.
    cat "$MS_DIR"/stderr.*.log >"$TMP/ms-all.log" 2>/dev/null || true
    if has "$TARGETS" modelswitch-redis; then
        cat "$MS_DIR"/stderr.*.modelswitch-redis.log 2>/dev/null |
            { grep '"type":"access"' || true; } | { grep -o '"status":[0-9]*' || true; } | cut -d: -f2 |
            sort | uniq -c | awk '{printf "%s:%s ", $2, $1}' >"$TMP/ms-redis-status" || true
        record "info ms_redis_access_status $(cat "$TMP/ms-redis-status")"
    fi
    record "info ms_access_lines $(grep -c '"type":"access"' "$TMP/ms-all.log" || true)"
    record "info ms_access_status $( { grep '"type":"access"' "$TMP/ms-all.log" || true; } |
        { grep -o '"status":[0-9]*' || true; } | cut -d: -f2 | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')"
    record "info ms_log_warn_error $(grep -c '"level":"\(warn\|error\)"' "$TMP/ms-all.log" || true)"
    { grep -h '"level":"\(warn\|error\)"' "$TMP/ms-all.log" || true; } |
        sed 's/.*"level":"\([a-z]*\)","msg":"/\1: /' | cut -c1-160 | sort | uniq -c | sort -rn |
        head -8 | while read -r line; do record "info ms_log_msg $line"; done
    { grep '"type":"access"' "$TMP/ms-all.log" || true; } |
        { grep -v '"status":\(2\|499\)' || true; } | head -3 |
        while read -r line; do record "info ms_access_sample ${line:0:300}"; done
fi
record "info elapsed_s $(($(date +%s) - T_START))"
node bench/report.mjs "$RES" "$OUT"
log "done in $(($(date +%s) - T_START)) s; results in ${OUT#"$ROOT"/}"
