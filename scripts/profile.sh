#!/usr/bin/env bash
# Profiles token-server under load and draws a flamegraph.
#
# Usage: scripts/profile.sh [WORKLOAD] [PIPELINE]      (defaults: cycle 16)
#
# Builds token-server and token-bench with frame pointers into target/profiling (so call
# chains are whole), starts one shard with --appendfsync no on 127.0.0.1 pinned to CPU 0, drives
# it with token-bench on CPU 1 for PROFILE_SECONDS [5], records it with `perf record -g`, and
# writes:
#   docs/flamegraph-WORKLOAD.svg   the flamegraph (inferno; `cargo install inferno` if missing)
#   stdout                         the top functions by own time, and by time including callees
#   $PROFILE_DATA                  a copy of perf.data, when that variable names a file
#
# Needs perf (Debian: linux-perf) with permission to profile our own processes
# (perf_event_paranoid <= 2). The server is killed by its PID at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/lib.sh
WORKLOAD=${1:-cycle}
PIPELINE=${2:-16}
SECS=${PROFILE_SECONDS:-5}
OUT=docs/flamegraph-$WORKLOAD.svg

command -v perf >/dev/null || {
    echo "profile: perf is missing (apt-get install linux-perf)" >&2
    exit 1
}
if ! command -v inferno-flamegraph >/dev/null; then
    echo "profile: installing inferno (cargo install inferno --locked)" >&2
    cargo install inferno --locked --quiet
fi

RUSTFLAGS="-C force-frame-pointers=yes" CARGO_TARGET_DIR=target/profiling \
    cargo build --release --quiet --bin token-server --bin token-bench
BIN=target/profiling/release

TMP=$(mktemp -d /tmp/token-profile.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

PIN_SERVER=()
PIN_LOAD=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    PIN_SERVER=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
fi
"${PIN_SERVER[@]}" "$BIN/token-server" --port 0 --http-port 0 --shards 1 --appendfsync no \
    --dir "$TMP/data" >"$TMP/server.log" 2>&1 &
PID=$!
PORT=$(listened_port "$TMP/server.log" resp "$PID" 100) || {
    cat "$TMP/server.log" >&2
    exit 1
}

# Warm up (the table grows fastest at first), then record while the load runs.
"${PIN_LOAD[@]}" "$BIN/token-bench" "$WORKLOAD" --port "$PORT" -c 50 -P "$PIPELINE" -d 1 >/dev/null
perf record -F 1999 -g -p "$PID" -o "$TMP/perf.data" -- sleep "$SECS" 2>"$TMP/perf.err" &
PERF=$!
"${PIN_LOAD[@]}" "$BIN/token-bench" "$WORKLOAD" --port "$PORT" -c 50 -P "$PIPELINE" -d "$SECS"
wait "$PERF" || {
    cat "$TMP/perf.err" >&2
    exit 1
}

if [[ -n ${PROFILE_DATA:-} ]]; then
    cp "$TMP/perf.data" "$PROFILE_DATA"
fi
perf script -i "$TMP/perf.data" 2>/dev/null | inferno-collapse-perf >"$TMP/folded"
inferno-flamegraph --title "token-server, $WORKLOAD, pipeline $PIPELINE, 1 shard" \
    <"$TMP/folded" >"$OUT"
echo "profile: flamegraph written to $OUT" >&2

echo "Own time (perf report --no-children):"
perf report -i "$TMP/perf.data" --no-children --percent-limit 1.5 --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 25
echo
echo "Including callees (perf report --children):"
perf report -i "$TMP/perf.data" --children --percent-limit 5 --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -n 30
