#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (the store's PostgreSQL backend):
#
#   tests/pg.sh start DIR         initdb in DIR, start a server on a free loopback port, print its
#                                 URL (postgres://postgres@127.0.0.1:PORT/postgres); on a DIR
#                                 paused before, start it again with its data on its port
#   tests/pg.sh pause DIR         stop the server, keep DIR (a store outage)
#   tests/pg.sh createdb DIR NAME create a fresh database NAME, print its URL
#   tests/pg.sh stop DIR          stop the server and remove DIR
#
# Why this shape: the tests must use a real server, and must not touch one the machine may run.
# The server listens on 127.0.0.1 only, its Unix socket stays in DIR (-k), durability is off
# (fsync, synchronous_commit: the data is thrown away) and PostgreSQL refuses to run as root, so
# as root it runs as the `postgres` user Debian's package creates (DIR is handed to it).
set -euo pipefail

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$d" && -x "$d/initdb" ]] || die "no PostgreSQL server installed (apt-get install postgresql)"
    echo "$d"
}

# Runs a command as the server's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

cmd_start() {
    local dir="$1" bin port
    bin=$(bindir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -e "$dir/data/PG_VERSION" && -e "$dir/port" ]]; then
        # after `pause`: the same data on the same port
        port=$(cat "$dir/port")
        as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-p $port -k $dir/sock -h 127.0.0.1 -c fsync=off -c synchronous_commit=off \
                -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB" \
            start >/dev/null 2>&1 || {
            tail -n 20 "$dir/server.log" >&2 || true
            die "the server did not start again on port $port"
        }
        echo "postgres://postgres@127.0.0.1:$port/postgres"
        return
    fi
    [[ -e "$dir/data" ]] && die "$dir/data already exists"
    mkdir -p "$dir/data" "$dir/sock"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no postgres user (apt-get install postgresql)"
        chown -R postgres: "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    for _ in 1 2 3 4 5; do
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-p $port -k $dir/sock -h 127.0.0.1 -c fsync=off -c synchronous_commit=off \
                -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB" \
            start >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            echo "postgres://postgres@127.0.0.1:$port/postgres"
            return
        fi
    done
    tail -n 20 "$dir/server.log" >&2 || true
    die "the server did not start"
}

cmd_createdb() {
    local dir="$1" name="$2" bin port
    bin=$(bindir)
    port=$(cat "$dir/port" 2>/dev/null) || die "no server in $dir"
    [[ "$name" =~ ^[a-z_][a-z0-9_]*$ ]] || die "bad database name: $name"
    "$bin/psql" -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$port/postgres" \
        -c "CREATE DATABASE $name" >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/$name"
}

cmd_stop() {
    local dir="$1" bin
    bin=$(bindir)
    [[ -d "$dir/data" ]] || return 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

# Stops the server and keeps its data: `start` on the same DIR brings it back on the same port
# (a store outage, for the tests).
cmd_pause() {
    local dir="$1" bin
    bin=$(bindir)
    [[ -d "$dir/data" ]] || die "no server in $dir"
    # fast, not immediate: the server runs with durability off (fsync, synchronous_commit), so
    # only a clean shutdown keeps its last commits, and the outage must lose nothing
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
start) cmd_start "${2:?DIR}" ;;
pause) cmd_pause "${2:?DIR}" ;;
createdb) cmd_createdb "${2:?DIR}" "${3:?NAME}" ;;
stop) cmd_stop "${2:?DIR}" ;;
*)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
