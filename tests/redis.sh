#!/usr/bin/env bash
# tests/redis.sh: a throwaway redis-server for the tests that run several gateway instances on one
# Redis (tests/lib/cluster.mjs, tests/integration/cluster*.test.mjs), or by hand.
#
#   tests/redis.sh start DIR   start a redis-server whose files live in DIR (created if missing);
#                              prints its URL, redis://127.0.0.1:PORT/0, on stdout
#   tests/redis.sh stop DIR    SIGTERM, wait for it to exit (SIGKILL after 10 s)
#   tests/redis.sh kill DIR    SIGKILL: the crash of the fault tests
#   tests/redis.sh url DIR     print the URL of DIR's server (running or not)
#
# Why these choices: the server listens on loopback only, on a free port picked here, and keeps
# nothing (`--save '' --appendonly no`): the gateway must rebuild what it keeps in Redis from the
# store after Redis restarts empty, and a test of that must not find yesterday's data. The port is
# remembered in DIR/port, so `start` on a DIR that was used before comes back on the same port
# (the gateway's configured URL stays valid across a restart). Daemonized with DIR/redis.pid; the
# pid of the process that answers on the port is checked against it, so a port taken by another
# server in the meantime is never mistaken for ours.
set -euo pipefail

die() {
    echo "redis.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(($# == 2)) || usage
cmd=$1
DIR=$2
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli || echo /usr/bin/redis-cli)}

# Something accepts connections on 127.0.0.1:$1.
listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_of() {
    [[ -s $DIR/redis.pid ]] && cat "$DIR/redis.pid"
}

alive() {
    local pid
    pid=$(pid_of) || return 1
    kill -0 "$pid" 2>/dev/null
}

# The pid the server on port $1 reports, or nothing.
served_pid() {
    timeout 2 "$REDIS_CLI" -h 127.0.0.1 -p "$1" INFO server 2>/dev/null |
        tr -d '\r' | sed -n 's/^process_id://p'
}

url() {
    echo "redis://127.0.0.1:$(cat "$DIR/port")/0"
}

# Starts redis-server on port $1; succeeds once it answers there as the pid in DIR/redis.pid.
try_start() {
    local port=$1 i pid
    rm -f "$DIR/redis.pid"
    "$REDIS_SERVER" --bind 127.0.0.1 --port "$port" --dir "$DIR" --save '' --appendonly no \
        --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" \
        --databases 4 >/dev/null 2>&1 || return 1
    for ((i = 0; i < 100; i++)); do
        pid=$(pid_of || true)
        if [[ -n $pid ]]; then
            kill -0 "$pid" 2>/dev/null || return 1
            [[ "$(served_pid "$port")" == "$pid" ]] && return 0
        fi
        sleep 0.05
    done
    [[ -n ${pid:-} ]] && kill -9 "$pid" 2>/dev/null
    return 1
}

start() {
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [[ -x $REDIS_SERVER ]] || die "redis-server not found (Debian package redis-server; scripts/install-deps.sh --test)"
    if alive; then
        url
        return 0
    fi
    if [[ -s $DIR/port ]]; then
        local port
        port=$(cat "$DIR/port")
        listening "$port" && die "port $port of $DIR is taken by another process"
        try_start "$port" || die "redis-server did not start on port $port: $(tail -n 5 "$DIR/redis.log" 2>/dev/null)"
        url
        return 0
    fi
    local tries port
    for ((tries = 0; tries < 20; tries++)); do
        port=$((20000 + RANDOM % 40000))
        listening "$port" && continue
        if try_start "$port"; then
            echo "$port" >"$DIR/port"
            url
            return 0
        fi
    done
    die "redis-server did not start on a free port after 20 tries: $(tail -n 5 "$DIR/redis.log" 2>/dev/null)"
}

stop() {
    local sig=$1 pid i
    pid=$(pid_of) || return 0
    kill -0 "$pid" 2>/dev/null || {
        rm -f "$DIR/redis.pid"
        return 0
    }
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
        sleep 0.1
    fi
    # A SIGKILLed server leaves its pidfile; a later start must not take the pid for a live one.
    rm -f "$DIR/redis.pid"
}

case "$cmd" in
start) start ;;
stop) stop TERM ;;
kill) stop KILL ;;
url)
    [[ -s $DIR/port ]] || die "$DIR has no redis port (never started)"
    url
    ;;
*) usage ;;
esac
