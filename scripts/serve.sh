#!/usr/bin/env bash
# Builds ModelSwitch and runs it with config/modelswitch.yaml (embedded SQLite in data/).
# On the first run it creates a demo account (USD 10) and a demo proxy key, and prints the key
# once. Extra arguments go to `modelswitch serve` (e.g. --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
make -j"$(nproc)" build/modelswitch >/dev/null

MS=build/modelswitch
CONFIG=${MODELSWITCH_CONFIG:-config/modelswitch.yaml}
"$MS" --config "$CONFIG" check-config >/dev/null
"$MS" --config "$CONFIG" migrate >/dev/null

# An account list with only its header line means a new store: add the demo account and key.
if [ "$("$MS" --config "$CONFIG" account list | wc -l)" -le 1 ]; then
    id=$("$MS" --config "$CONFIG" account create --name demo --balance 10)
    key=$("$MS" --config "$CONFIG" key create --account "$id" --name demo | tail -n 1)
    cat <<MSG

  Demo account $id created with USD 10 and this proxy key (shown once, keep it):

    $key

  Try:
    curl -H "Authorization: Bearer $key" \\
      -d '{"model":"echo-1","messages":[{"role":"user","content":"hi"}]}' \\
      localhost:8080/v1/chat/completions

MSG
fi
exec "$MS" --config "$CONFIG" serve "$@"
