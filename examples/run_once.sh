#!/usr/bin/env bash
# Run a command exactly once per job id, with token-server over HTTP and curl.
#
#   examples/run_once.sh BASE_URL JOB_ID COMMAND [ARG...]
#   examples/run_once.sh http://127.0.0.1:8409 invoice-42 ./send-invoice 42
#
# 1. GET /lock?id=JOB&ttl=LEASE&wait=WAIT&key=KEY: take the id with a lease under a random key
#    of this run's own (queueing while someone holds it); if it is complete already, exit 0
#    without running anything.
# 2. Run COMMAND while a background loop renews the lease every third of it.
# 3. GET /complete on success (exit 0); GET /unlock on failure, so a retry can run (exit 1).
#
# Every request is retried when its reply is lost (curl gets no response) or refused (503):
# /complete, /renew and /unlock are idempotent for their key, and a /lock sent again with the
# same key while the id is held under it gets the same key. Exit status 2: the server
# could not be used, the id stayed held by someone else for HOLD_PATIENCE_S, or the lease ran
# out while the command ran (it may run again elsewhere).
#
# Settings (environment):
#   LEASE_MS            the lease, renewed every third of it (default 30000)
#   WAIT_MS             how long one /lock queues for a held id (default 10000)
#   PATIENCE_S          how long one request is retried when its reply is lost (default 120)
#   HOLD_PATIENCE_S     how long to keep queueing while someone else holds the id, which
#                       without a lease may be forever (default 600)
#   TOKEN_SERVER_TOKEN  sent as `Authorization: Bearer` when the server has a password
#
# Job ids are sent as their bytes (UTF-8 under a UTF-8 locale), the same ids as over RESP.
set -u

base=${1:?usage: run_once.sh BASE_URL JOB_ID COMMAND [ARG...]}
job=${2:?usage: run_once.sh BASE_URL JOB_ID COMMAND [ARG...]}
shift 2
lease_ms=${LEASE_MS:-30000}
wait_ms=${WAIT_MS:-10000}
patience_s=${PATIENCE_S:-120}
hold_patience_s=${HOLD_PATIENCE_S:-600}

auth=()
if [ -n "${TOKEN_SERVER_TOKEN:-}" ]; then
    auth=(-H "Authorization: Bearer $TOKEN_SERVER_TOKEN")
fi

# Percent-encodes $1 for a query string, byte by byte: in the C locale bash sees bytes, so a
# character such as € becomes its UTF-8 bytes (%E2%82%AC), not its code point.
encode() {
    local LC_ALL=C
    local s=$1 out= c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [a-zA-Z0-9._~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# call PATH_AND_QUERY: sets $status and $body, retrying lost and refused replies.
call() {
    local started=$SECONDS pause=0.01 out
    while :; do
        if out=$(curl -s "${auth[@]}" --max-time $(((wait_ms + 5000) / 1000)) \
            -w '\n%{http_code}' "$base$1"); then
            status=${out##*$'\n'}
            body=${out%$'\n'*}
            [ "$status" != 503 ] && return 0
        fi
        if ((SECONDS - started > patience_s)); then
            echo "run_once: no usable reply to $1" >&2
            exit 2
        fi
        sleep "$pause"
        pause=0.2
    done
}

id=$(encode "$job")
# This run's key: 128 random bits as 32 hex characters.
mine=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
queued_since=$SECONDS
while :; do
    call "/lock?id=$id&ttl=$lease_ms&wait=$wait_ms&key=$mine"
    case "$status $body" in
        "200 "*) key=$body; break ;;
        "409 complete"*) echo "$job: already done"; exit 0 ;;
        "409 locked"*)
            # Held by someone else (the wait ran out): queue again, for a while.
            if ((SECONDS - queued_since > hold_patience_s)); then
                echo "run_once: $job is still held by someone else after ${hold_patience_s}s" >&2
                exit 2
            fi
            continue
            ;;
        *) echo "run_once: /lock answered $status $body" >&2; exit 2 ;;
    esac
done

# Renew in the background; a lease that ran out is noted in a file.
lost=$(mktemp)
rm -f "$lost"
(
    while sleep "$(awk "BEGIN { print $lease_ms / 3000 }")"; do
        call "/renew?id=$id&key=$key&ttl=$lease_ms"
        if [ "$status" != 200 ]; then
            : >"$lost"
            exit 0
        fi
    done
) &
renewer=$!

"$@"
result=$?
kill "$renewer" 2>/dev/null
wait "$renewer" 2>/dev/null

if [ -e "$lost" ]; then
    rm -f "$lost"
    echo "$job: the lease ran out while working" >&2
    exit 2
fi
if [ "$result" -ne 0 ]; then
    call "/unlock?id=$id&key=$key" # 404 or 403 after a lost reply: unlocked already
    echo "$job: failed (exit $result); unlocked for a retry" >&2
    exit 1
fi
call "/complete?id=$id&key=$key"
case "$status $body" in
    "200 "*) echo "$job: done" ;;
    "409 complete"*) echo "$job: already done" ;;
    *) echo "$job: /complete answered $status $body: the lease ran out" >&2; exit 2 ;;
esac
