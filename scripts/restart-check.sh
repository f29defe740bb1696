#!/usr/bin/env bash
# Fills a token-server with millions of ids, stops it, starts it again on the same data, and
# checks that every locked and completed id came back.
#
# Usage: scripts/restart-check.sh [kill9|term|term2] [SECONDS]
#   kill9  SIGKILL (a crash; --appendfsync everysec may lose the last second, so the load is
#          stopped and a sync interval passes first)
#   term   one SIGTERM (graceful shutdown)
#   term2  two SIGTERMs 50 ms apart (an impatient operator)
#   SECONDS of fresh locks at pipeline 16 before a 3-second cycle run [8]
#
# Uses target/release (build it first: cargo build --release). Everything listens on
# 127.0.0.1; the data lives in a temporary directory, removed at the end. Exit status 0 when
# the counts match.
set -euo pipefail

cd "$(dirname "$0")/.."
source scripts/lib.sh
MODE=${1:-kill9}
SECS=${2:-8}
BIN=target/release
SHARDS=${RESTART_SHARDS:-2}
for tool in "$BIN/token-server" "$BIN/token-bench"; do
    [[ -x $tool ]] || {
        echo "restart-check: $tool is missing: cargo build --release" >&2
        exit 1
    }
done
command -v redis-cli >/dev/null || {
    echo "restart-check: redis-cli is missing (apt-get install redis-tools)" >&2
    exit 1
}

DIR=$(mktemp -d /tmp/token-restart.XXXXXX)
PID=
cleanup() {
    [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$DIR"
}
trap cleanup EXIT

start() { # log name
    "$BIN/token-server" --port 0 --http-port 0 --shards "$SHARDS" --dir "$DIR/data" \
        --appendfsync everysec >"$DIR/$1.log" 2>&1 &
    PID=$!
    PORT=$(listened_port "$DIR/$1.log" resp "$PID" 600) && return 0
    cat "$DIR/$1.log" >&2
    exit 1
}

counts() {
    redis-cli -p "$PORT" INFO | tr -d '\r' | grep -E '^(locked|completed):' | tr '\n' ' '
}

start first
"$BIN/token-bench" lock -p "$PORT" -c 50 -P 16 -d "$SECS" --ttl-ms 3600000 --id-prefix held |
    grep ops
"$BIN/token-bench" cycle -p "$PORT" -c 50 -P 16 -d 3 --id-prefix done | grep ops
sleep 1.5 # past one everysec interval
before=$(counts)
echo "before $MODE: $before"
case $MODE in
    kill9) kill -9 "$PID" ;;
    term) kill "$PID" ;;
    term2)
        kill "$PID"
        sleep 0.05
        kill "$PID" 2>/dev/null || true
        ;;
    *)
        echo "restart-check: unknown mode $MODE" >&2
        exit 2
        ;;
esac
wait "$PID" || true
PID=
start second
after=$(counts)
echo "after $MODE:  $after"
grep -o 'recovered_ids=[0-9]* recovered_records=[0-9]* recovery_ms=[0-9]*' "$DIR/second.log" || true
if [[ $before == "$after" ]]; then
    echo "restart-check: every id came back"
else
    echo "restart-check: MISMATCH" >&2
    exit 1
fi
