#!/usr/bin/env bash
# The one-command benchmark (docs/PERFORMANCE.md):
#
#   bench/run.sh                                   # SQLite (the default backend)
#   bench/run.sh --database-url postgres://u@host/db   # PostgreSQL (or DATABASE_URL=… bench/run.sh)
#
# It installs wrk if missing, builds the release binary and the two bench examples once,
# then runs examples/loadbench/, which starts switchyard and the axum echo ceiling,
# drives them over loopback and prints the table. Extra arguments go to loadbench
# (e.g. --duration 5, --only ingest,drain, --drain-sizes 50000, --perf-dir DIR, --out FILE;
# see `target/release/examples/loadbench --help`).
#
# With PostgreSQL, a fresh database is created per phase on the server of the URL and
# dropped afterwards; the URL's own database is never touched (its role needs CREATEDB).
# The phases connect over TLS (`sslmode=require`) unless the URL sets an sslmode; every
# noop drain runs twice, plain text then TLS, and the table prints their ratio.
# With PostgreSQL, graphile-worker (Node.js, npm, pinned) then drains the same number of
# no-op jobs on the same server and the ratio is printed.
# Exit status: 0 when every step ran (targets missed are marked FAIL in the table; add
# --strict to exit 2 on a missed target), non-zero when a step failed.
set -euo pipefail

cd "$(dirname "$0")/.."

# wrk is the load generator; Debian/Ubuntu ship it. Only apt is tried: anything else is
# the user's call.
if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "wrk not found; installing it with apt-get" >&2
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq wrk
  else
    echo "error: wrk is not installed and apt-get is not available; install wrk and rerun" >&2
    exit 1
  fi
fi

# Release builds (cargo waits if another build holds the target directory's lock). The
# service is built on its own, exactly as a user builds it: built together with the
# examples, its dependencies would get the dev-dependencies' features too.
cargo build --release --locked --bin switchyard
cargo build --release --locked --example echo_ceiling --example loadbench

# A PostgreSQL URL may come from the environment; loadbench reads DATABASE_URL too, and an
# explicit --database-url wins. Empty means unset, as for switchyard itself.
if [ -z "${DATABASE_URL:-}" ]; then unset DATABASE_URL; fi

# The PostgreSQL URL, if any (for the graphile-worker comparison below).
pg_url="${DATABASE_URL:-}"
prev=""
for arg in "$@"; do
  case "$arg" in --database-url=*) pg_url="${arg#--database-url=}" ;; esac
  if [ "$prev" = "--database-url" ]; then pg_url="$arg"; fi
  prev="$arg"
done

table="$(mktemp)"
trap 'rm -f "$table"' EXIT
status=0
target/release/examples/loadbench \
  --bin target/release/switchyard \
  --echo target/release/examples/echo_ceiling \
  --lua bench/ingest.lua \
  "$@" | tee "$table" || status=$?

# With PostgreSQL: graphile-worker (Node.js, pinned in bench/graphile/package.json, the
# batching options of its performance page) drains 50,000 no-op jobs on the same server,
# and the ratio to switchyard's 50,000-event noop drain of this run is printed
# (issue 26's target: ≥ 1.0, the compass 2). Skipped, saying so, without Node.js or that drain.
if [ -n "$pg_url" ]; then
  # The plain-text drain: graphile-worker's client connects without TLS.
  ours="$(awk -F'|' '$2 ~ /drain 50000 queued, noop mapping \(postgres, plain\)/ && $3 ~ /drain rate/ {print $4}' "$table" | grep -o '[0-9]\+' | head -1 || true)"
  graphile_url="$(echo "$pg_url" | sed -E 's/([?&])sslmode=[^&]*&?/\1/; s/[?&]$//')"
  if ! command -v node >/dev/null 2>&1; then
    echo "graphile-worker comparison skipped: node is not installed" >&2
  elif [ -z "$ours" ]; then
    echo "graphile-worker comparison skipped: this run has no 50000-event noop drain" >&2
  else
    if [ ! -d bench/graphile/node_modules/graphile-worker ]; then
      npm install --prefix bench/graphile --no-save --no-audit --no-fund --loglevel=error
    fi
    line="$(node bench/graphile/drain.mjs "$graphile_url" 50000)" || status=$?
    echo "$line"
    theirs="$(echo "$line" | grep -o '[0-9]\+ jobs/s' | grep -o '[0-9]\+' || true)"
    if [ -n "$theirs" ]; then
      awk -v a="$ours" -v b="$theirs" 'BEGIN {
        r = a / b
        printf "switchyard %d events/s (plain) / graphile-worker %d jobs/s = %.2f (target >= 1.0) %s\n", a, b, r, (r >= 1.0 ? "pass" : "**FAIL**")
      }'
    fi
  fi
fi
exit "$status"
