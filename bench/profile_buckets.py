#!/usr/bin/env python3
"""Sorts the samples of a `perf record -g` profile of switchyard into subsystems.

Usage: perf script -i FILE.perf.data | bench/profile_buckets.py

Each sample's whole call stack is matched against the buckets below in order; the first
bucket whose patterns all match frames of the stack gets the sample (so an allocation inside the envelope code
counts as envelope, a futex inside a SQLite call as SQLite). Profiles need frame pointers
to have whole stacks: docs/PERFORMANCE.md says how the profiling build is made.
"""

import re
import sys
from collections import Counter

# (bucket, regexes): a sample goes to the first bucket each of whose regexes matches some
# frame of its stack.
WAKE = r"futex|schedule|finish_task_switch|try_to_wake_up"
BUCKETS = [
    ("SQLite: WAL checkpoint (copy WAL into the db file)", [r"walCheckpoint|sqlite3WalCheckpoint"]),
    ("SQLite: commit (WAL frame writes)", [r"sqlite3PagerCommitPhaseOne|pagerWalFrames|sqlite3BtreeCommitPhase"]),
    ("SQLite: statements (prepare, step, b-tree)", [r"^sqlite3|Vdbe|[bB]tree|^pager|^pcache|yy_reduce"]),
    ("sqlx: hand-off to/from its SQLite thread (channel + futex)", [r"sqlx_|flume", WAKE]),
    ("sqlx: other (binding, row decoding, pool)", [r"sqlx_|flume"]),
    ("ingest: envelope + event id (JSON probe, headers, serialise)", [r"ingest::envelope|event_id::derive"]),
    ("worker: routing (detect, rules, decide)", [r"switchyard::routing"]),
    ("JSON (serde_json) elsewhere", [r"serde_json"]),
    ("HTTP: hyper + TCP send/receive", [r"hyper|tcp_|sock_|inet_|__sys_sendto|__sys_recvfrom|ip_"]),
    ("tokio: worker threads parking / waking (futex)", [r"tokio::", WAKE]),
    ("other futex / scheduler", [WAKE]),
    ("tokio runtime + epoll", [r"tokio::|epoll"]),
    ("allocator (malloc/free, mimalloc)", [r"malloc|free|realloc|_int_|^_?mi_"]),
]
COMPILED = [(name, [re.compile(rx) for rx in rxs]) for name, rxs in BUCKETS]


def samples(lines):
    """Yields the list of symbols of each sample (leaf first)."""
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        if line.startswith((" ", "\t")):
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                sym = re.sub(r"\+0x[0-9a-f]+ \(.*\)$|\s\(.*\)$", "", parts[1])
                stack.append(sym)
    if stack:
        yield stack


def main():
    counts = Counter()
    total = 0
    for stack in samples(sys.stdin):
        total += 1
        for name, rxs in COMPILED:
            if all(any(rx.search(sym) for sym in stack) for rx in rxs):
                counts[name] += 1
                break
        else:
            counts["other"] += 1
    if total == 0:
        print("no samples", file=sys.stderr)
        return 1
    print(f"| share | where ({total} samples) |")
    print("|---:|---|")
    for name, n in counts.most_common():
        print(f"| {100.0 * n / total:.1f}% | {name} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
