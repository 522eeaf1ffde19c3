#!/usr/bin/env bash
# Builds ModelSwitch and runs it with config/modelswitch.yaml (embedded SQLite in data/).
# On the first run it creates a demo account (USD 10), a demo proxy key and a billing key for the
# web dashboard, and prints both keys once, with a curl command and the dashboard's address for
# the address the gateway is about to listen on. Extra arguments
# go to `modelswitch serve` (e.g. --listen 0.0.0.0:8080).
#
# Environment:
#   MODELSWITCH_CONFIG  the config file (default config/modelswitch.yaml)
#   MODELSWITCH_BIN     a gateway that is already built: run it as it is, without installing
#                       dependencies or building (packaged installs, tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -n "${MODELSWITCH_BIN:-}" ]; then
    MS=$MODELSWITCH_BIN
else
    bash scripts/install-deps.sh
    make -j"$(nproc)" build/modelswitch >/dev/null
    MS=build/modelswitch
fi
CONFIG=${MODELSWITCH_CONFIG:-config/modelswitch.yaml}
"$MS" --config "$CONFIG" check-config >/dev/null
"$MS" --config "$CONFIG" migrate >/dev/null

# Where a client on this machine reaches the gateway: --listen as `serve` takes it, else
# server.listen from the config (its first `listen:` under `server:`), else the built-in default.
listen_address() {
    local listen="" prev="" a host port
    for a in "$@"; do
        [ "$prev" = --listen ] && listen=$a
        prev=$a
    done
    if [ -z "$listen" ]; then
        listen=$(awk '/^[^[:space:]#]/ { in_server = ($0 ~ /^server:/) }
            in_server && /^[[:space:]]+listen:/ {
                sub(/^[[:space:]]+listen:[[:space:]]*/, ""); sub(/[[:space:]]+#.*$/, "")
                gsub(/^["'\'']|["'\'']$/, ""); print; exit }' "$CONFIG")
    fi
    listen=${listen:-127.0.0.1:8080}
    # ${VAR} substitution is the gateway's to do: say where to look instead of guessing
    case $listen in *'$'* | *[[:space:]]*) echo "HOST:PORT"; return ;; esac
    host=${listen%:*}
    port=${listen##*:}
    # a wildcard address accepts connections on loopback; an IPv6 literal needs its brackets
    case $host in
    "" | 0.0.0.0) host=127.0.0.1 ;;
    "[::]" | "::") host="[::1]" ;;
    \[*) ;;
    *:*) host="[$host]" ;;
    esac
    [ "$port" = 0 ] && port="PORT" # chosen by the kernel: the "listening on" line shows it
    echo "$host:$port"
}

# An account list with only its header line means a new store: add the demo account and key.
if [ "$("$MS" --config "$CONFIG" account list | wc -l)" -le 1 ]; then
    id=$("$MS" --config "$CONFIG" account create --name demo --balance 10)
    key=$("$MS" --config "$CONFIG" key create --account "$id" --name demo | tail -n 1)
    mk=$("$MS" --config "$CONFIG" key create --account "$id" --type billing --name dashboard | tail -n 1)
    addr=$(listen_address "$@")
    cat <<MSG

  Demo account $id created with USD 10 and this proxy key (shown once, keep it):

    $key

  Try:
    curl -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \\
      -d '{"model":"echo-1","messages":[{"role":"user","content":"hi"}]}' \\
      http://$addr/v1/chat/completions

  The web dashboard (balance, keys, usage) is at http://$addr/dashboard/ ; sign in with this
  billing key (also shown once):

    $mk

MSG
fi
exec "$MS" --config "$CONFIG" serve "$@"
