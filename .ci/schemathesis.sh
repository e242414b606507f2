#!/usr/bin/env bash
# Issue 15, acceptance 5: schemathesis (PyPI, pinned) against /openapi.json of a live
# `switchyard serve` (the debug binary `cargo test` built; nothing is rebuilt here), on a
# fresh SQLite file and a free port, with every secret set and sent. Checks: no 5xx
# (`not_a_server_error`) and every response matches its documented schema
# (`response_schema_conformance`). Any finding fails CI. Called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=.ci/venv
if ! { [ -x "$VENV/bin/st" ] && "$VENV/bin/st" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; }; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  fi
  echo "installing schemathesis==$SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

command -v curl >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
}

BIN=target/debug/switchyard
[ -x "$BIN" ] || { echo "error: $BIN is missing: run cargo test first" >&2; exit 1; }
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
secret="st-admin-$$"
APP_DB_PATH="$work/events.sqlite3" HOST=127.0.0.1 PORT="$port" \
  ADMIN_SECRET="$secret" INGRESS_SECRET="$secret-in" CRON_SECRET="$secret-cron" \
  "$BIN" serve >"$work/serve.log" 2>&1 </dev/null &
server=$!
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.2
done

# A few events so the event routes have rows to list, replay and cancel.
for i in 1 2 3; do
  curl -fsS -X POST -H "X-Ingress-Secret: $secret-in" -H 'Content-Type: application/json' \
    -d "{\"id\":\"seed-$i\"}" "http://127.0.0.1:$port/webhook" >/dev/null
done

# Bounded: 25 examples per operation keeps the run to about a minute on 2 cores.
started=$(date +%s)
CI=true "$VENV/bin/st" --no-color run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples 25 --seed 15 --generation-database none \
  -H "X-Admin-Secret: $secret" -H "X-Ingress-Secret: $secret-in" -H "X-Cron-Secret: $secret-cron" \
  </dev/null || { echo "schemathesis found problems (server log: below)" >&2; tail -50 "$work/serve.log" >&2; exit 1; }
echo "schemathesis: $(($(date +%s) - started)) s"
