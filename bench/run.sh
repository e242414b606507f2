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
# The phases connect over TLS (`sslmode=require`) unless the URL sets an sslmode; the ingest
# and every noop drain run both ways, plain text then TLS, in rounds (--rounds, default 3),
# with graphile-worker's drain of as many no-op jobs as the smallest drain on the same
# server; the last section of the table judges the ratios on the rounds' medians.
# `--baseline REV` (PostgreSQL) also builds switchyard at git revision REV (once, under
# target/baseline/) and runs its plain-text ingest in every round: issue 26 asks this
# tree's TLS ingest not to fall below the plain ingest of the tree it was filed against
# (`--baseline 0a863c0`).
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

# --baseline REV is run.sh's own; everything else goes to loadbench.
baseline=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline="${2:?--baseline needs a git revision}"; shift 2 ;;
    --baseline=*) baseline="${1#--baseline=}"; shift ;;
    *) pass+=("$1"); shift ;;
  esac
done
set -- ${pass[@]+"${pass[@]}"}
if [ -n "$baseline" ]; then
  # The tree at REV is exported (no worktree to clean up) and built with its own lock file
  # into a target directory shared by every baseline, so a second revision builds fast.
  rev=$(git rev-parse --short=12 "$baseline^{commit}")
  base_dir="target/baseline/$rev"
  if [ ! -x "$base_dir/switchyard" ]; then
    rm -rf "$base_dir/src"
    mkdir -p "$base_dir/src"
    git archive "$rev" | tar -x -C "$base_dir/src"
    cargo build --release --locked --bin switchyard \
      --manifest-path "$base_dir/src/Cargo.toml" --target-dir target/baseline/build
    cp target/baseline/build/release/switchyard "$base_dir/switchyard"
  fi
  set -- --baseline-bin "$base_dir/switchyard" "$@"
fi

# A PostgreSQL URL may come from the environment; loadbench reads DATABASE_URL too, and an
# explicit --database-url wins. Empty means unset, as for switchyard itself.
if [ -z "${DATABASE_URL:-}" ]; then unset DATABASE_URL; fi

# With PostgreSQL, loadbench compares the drain with graphile-worker's (Node.js, pinned in
# bench/graphile/package.json) on the same server, in the same rounds; its packages are
# installed here on first use. Without node, loadbench says the comparison was skipped.
pg=""
if [ -n "${DATABASE_URL:-}" ]; then pg=1; fi
for arg in "$@"; do
  case "$arg" in --database-url*) pg=1 ;; esac
done
if [ -n "$pg" ] && command -v npm >/dev/null 2>&1 && [ ! -d bench/graphile/node_modules/graphile-worker ]; then
  npm install --prefix bench/graphile --no-save --no-audit --no-fund --loglevel=error
fi

exec target/release/examples/loadbench \
  --bin target/release/switchyard \
  --echo target/release/examples/echo_ceiling \
  --lua bench/ingest.lua \
  --graphile bench/graphile/drain.mjs \
  "$@"
