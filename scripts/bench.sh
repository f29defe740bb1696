#!/usr/bin/env bash
# Benchmarks token-server against a stock redis-server on loopback, with the same load
# generator (token-bench) for both and redis-benchmark as a cross-check, and writes the results
# between the bench markers of docs/performance.md.
#
# Usage: scripts/bench.sh            (from anywhere; it works in the repository root)
#
# Settings (environment variables, defaults in brackets):
#   BENCH_SECONDS       seconds of every timed run [3]
#   BENCH_REPS          repetitions of every run; medians are reported [3]
#   BENCH_CONNECTIONS   client connections [50]
#   BENCH_MEMORY_LOCKS  locks loaded for the memory figures [1000000]
#   BENCH_SERVER_CPUS   taskset CPU list for the servers [first half of the cores]
#   BENCH_LOAD_CPUS     taskset CPU list for token-bench and redis-benchmark [second half]
#   BENCH_LOAD_THREADS  token-bench runtime threads [half the cores, at least 1]
#   BENCH_NOTE          a sentence printed under the tables (e.g. what else was running)
#   BENCH_WRITE_DOC     1 writes the tables into BENCH_DOC, 0 only prints them [1]
#   BENCH_DOC           the file to write [docs/performance.md]
#   BENCH_BUILD         1 runs cargo build --release first, 0 uses target/release as it is [1]
#   BENCH_PHASES        which phases to run, any of ABCD [ABCD]; the doc is written only
#                       when all four ran
#
# Every server is started here on 127.0.0.1 (token-server on port 0, redis-server on a free
# port), with its data in a temporary directory, and killed by its PID at the end.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh

SECS=${BENCH_SECONDS:-3}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
MEM_LOCKS=${BENCH_MEMORY_LOCKS:-1000000}
NOTE=${BENCH_NOTE:-}
WRITE_DOC=${BENCH_WRITE_DOC:-1}
DOC=${BENCH_DOC:-docs/performance.md}
PHASES=${BENCH_PHASES:-ABCD}
COMMAND_LINE="$([[ ${BENCH_BUILD:-1} == 1 ]] || echo 'BENCH_BUILD=0 ')BENCH_SECONDS=$SECS BENCH_REPS=$REPS BENCH_CONNECTIONS=$CONNS BENCH_MEMORY_LOCKS=$MEM_LOCKS scripts/bench.sh"

say() { printf '%s\n' "bench: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
missing=()
for tool in redis-server redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    say "missing: ${missing[*]} (Debian packages redis-server and redis-tools)"
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "installing them: apt-get update; apt-get install -y redis-server redis-tools"
        apt-get update -qq >/dev/null || true
        apt-get install -y redis-server redis-tools >/dev/null ||
            die "apt-get install failed; install redis-server and redis-tools and rerun"
    else
        die "install them (apt-get install -y redis-server redis-tools) and rerun"
    fi
fi
for tool in getconf awk; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)

# Servers on the first half of the cores, the load on the second half.
if command -v taskset >/dev/null && ((NPROC >= 2)); then
    span() { if (($1 == $2)); then echo "$1"; else echo "$1-$2"; fi; }
    SERVER_CPUS=${BENCH_SERVER_CPUS:-$(span 0 $((NPROC / 2 - 1)))}
    LOAD_CPUS=${BENCH_LOAD_CPUS:-$(span $((NPROC / 2)) $((NPROC - 1)))}
    SERVER_PIN=(taskset -c "$SERVER_CPUS")
    LOAD_PIN=(taskset -c "$LOAD_CPUS")
    PINNING="servers on CPUs $SERVER_CPUS, load generators on CPUs $LOAD_CPUS (taskset)"
else
    SERVER_PIN=()
    LOAD_PIN=()
    PINNING="no CPU pinning (taskset missing or a single core)"
fi
LOAD_THREADS=${BENCH_LOAD_THREADS:-$(((NPROC + 1) / 2))}
((LOAD_THREADS >= 1)) || LOAD_THREADS=1

# The commit the binaries are built from, read before the build (edits made while the
# benchmark runs must not be attributed to it).
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain 2>/dev/null | grep -q . && echo " with uncommitted changes" || true)
if [[ ${BENCH_BUILD:-1} == 1 ]]; then
    say "building release binaries"
    cargo build --release --quiet --bin token-server --bin token-bench ||
        die "the release build failed"
fi
for bin in token-server token-bench; do
    [[ -x target/release/$bin ]] || die "target/release/$bin is missing; build it or unset BENCH_BUILD"
done

TMP=$(mktemp -d /tmp/token-bench.XXXXXX)
RES=$TMP/results
mkdir -p "$RES"
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
# Private copies, so that a build finishing during the run cannot change the binaries under it.
cp target/release/token-server target/release/token-bench "$TMP/"
TS=$TMP/token-server
TB=$TMP/token-bench

# ---------------------------------------------------------------------------------------------
# Servers. Each start_* sets PID and PORT (and HTTP_PORT for token-server).
# ---------------------------------------------------------------------------------------------
start_token() { # name, extra flags...
    local name=$1
    shift
    mkdir -p "$TMP/$name"
    : >"$TMP/$name.log"
    "${SERVER_PIN[@]}" "$TS" --port 0 --http-port 0 --dir "$TMP/$name/data" "$@" \
        >"$TMP/$name.log" 2>&1 &
    PID=$!
    STARTED+=("$PID")
    # The HTTP line is logged before the RESP one.
    if PORT=$(listened_port "$TMP/$name.log" resp "$PID" 300) &&
        HTTP_PORT=$(listened_port "$TMP/$name.log" http "$PID" 1); then
        return 0
    fi
    cat "$TMP/$name.log" >&2
    die "token-server $name did not start"
}

free_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

start_redis() { # name, extra flags...
    local name=$1 attempt i
    shift
    mkdir -p "$TMP/$name"
    for ((attempt = 0; attempt < 5; attempt++)); do
        PORT=$(free_port) || die "no free port"
        "${SERVER_PIN[@]}" redis-server --port "$PORT" --bind 127.0.0.1 --dir "$TMP/$name" \
            --save "" --appendonly no --logfile "$TMP/$name.log" "$@" >/dev/null 2>&1 &
        PID=$!
        for ((i = 0; i < 100; i++)); do
            if [[ $(redis-cli -p "$PORT" PING 2>/dev/null) == PONG ]]; then
                STARTED+=("$PID")
                return 0
            fi
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    done
    cat "$TMP/$name.log" >&2 || true
    die "redis-server $name did not start"
}

stop_server() { # pid; also forgets it, so that cleanup never signals a reused PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${STARTED[@]}"; do
        [[ $pid == "$1" ]] || kept+=("$pid")
    done
    STARTED=("${kept[@]}")
}

# CPU time (user + system, all threads) of a process in clock ticks: fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

info_field() { # port field
    redis-cli -p "$1" INFO all 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p" | head -n 1
}

rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
hwm_bytes() { awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$1/status"; }

per() { # before after count -> growth per item
    awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }'
}

# "<log bytes> <rewrites so far>" of a server, from one INFO; "- -" without a log.
log_size() { # target port
    local info
    info=$(redis-cli -p "$2" INFO persistence 2>/dev/null | tr -d '\r')
    if [[ $1 == token-server ]]; then
        printf '%s %s\n' "$(sed -n 's/^log_bytes://p' <<<"$info")" \
            "$(sed -n 's/^log_rewrites://p' <<<"$info")"
    elif [[ $(sed -n 's/^aof_enabled://p' <<<"$info") == 1 ]]; then
        printf '%s %s\n' "$(sed -n 's/^aof_current_size://p' <<<"$info")" \
            "$(sed -n 's/^aof_rewrites://p' <<<"$info")"
    else
        echo "- -"
    fi | awk '{ print ($1 == "" ? "-" : $1), ($2 == "" ? "-" : $2) }'
}

field() { # name line -> value of name=value
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1
}

# ---------------------------------------------------------------------------------------------
# Runs. Every run appends one line of key=value fields to $RES/<key>.
# ---------------------------------------------------------------------------------------------
# tb KEY SERVER_PID PORT HTTP_PORT TARGET WORKLOAD PIPELINE [more token-bench flags]
tb() {
    local key=$1 pid=$2 port=$3 http_port=$4 target=$5 workload=$6 pipeline=$7
    shift 7
    local before after line status=0 log_before='' log_after='' rewrites_before=0 rewrites_after=0
    # Log growth is read around cycle runs only: each INFO costs a redis-cli start.
    if [[ $workload == cycle ]]; then
        read -r log_before rewrites_before < <(log_size "$target" "$port")
    fi
    before=$(cpu_ticks "$pid")
    line=$("${LOAD_PIN[@]}" "$TB" "$workload" --target "$target" --port "$port" \
        --http-port "$http_port" --connections "$CONNS" --pipeline "$pipeline" \
        --duration "$SECS" --threads "$LOAD_THREADS" --output kv "$@" 2>"$TMP/tb.err") || status=$?
    after=$(cpu_ticks "$pid")
    if [[ $workload == cycle ]]; then
        read -r log_after rewrites_after < <(log_size "$target" "$port")
    fi
    if ((status != 0)) || [[ -z $line ]]; then
        say "token-bench $workload on $key failed: $(tr '\n' ' ' <"$TMP/tb.err")"
        line="ops=0 ops_per_sec=0 failed=1"
    fi
    local ops cpu log
    ops=$(field ops "$line")
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$ops" \
        'BEGIN { if (n > 0) printf "%.3f", t * 1e6 / hz / n; else print "-" }')
    log=-
    if [[ $log_before =~ ^[0-9]+$ && $log_after =~ ^[0-9]+$ && $rewrites_before == "$rewrites_after" ]]; then
        log=$(awk -v a="$log_before" -v b="$log_after" -v n="$ops" \
            'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }')
    fi
    printf '%s cpu_us_per_op=%s log_bytes_per_op=%s\n' "$line" "$cpu" "$log" >>"$RES/$key"
    say "$(printf '%-28s %10.0f ops/s  p99 %8s us  cpu %6s us/op  unexpected %s' "$key" \
        "$(field ops_per_sec "$line")" "$(field p99_us "$line")" "$cpu" \
        "$(field unexpected_errors "$line")")"
}

# rb KEY SERVER_PID PORT REQUESTS PIPELINE COMMAND... (redis-benchmark, which stops at the
# first error reply: ids get a fresh prefix per run and two random parts, so none repeats)
rb() {
    local key=$1 pid=$2 port=$3 n=$4 pipeline=$5
    shift 5
    local before after out status=0
    before=$(cpu_ticks "$pid")
    out=$("${LOAD_PIN[@]}" redis-benchmark -h 127.0.0.1 -p "$port" -c "$CONNS" -n "$n" \
        -P "$pipeline" -r 100000000 --csv "$@" 2>"$TMP/rb.err") || status=$?
    after=$(cpu_ticks "$pid")
    local csv line
    csv=$(printf '%s\n' "$out" | tail -n 1 | tr -d '"')
    if ((status != 0)) || [[ $csv != *,*,* || $csv == test,* ]]; then
        say "redis-benchmark on $key failed: $(tr '\n' ' ' <"$TMP/rb.err" | cut -c1-200)"
        line="ops=0 ops_per_sec=0 failed=1"
    else
        line=$(printf '%s\n' "$csv" | awk -F, -v n="$n" '{
            printf "ops=%d ops_per_sec=%s p50_us=%.1f p99_us=%.1f p999_us=- unexpected_errors=0 expected_errors=0",
                n, $2, $5 * 1000, $7 * 1000 }')
    fi
    local ops cpu
    ops=$(field ops "$line")
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$ops" \
        'BEGIN { if (n > 0) printf "%.3f", t * 1e6 / hz / n; else print "-" }')
    printf '%s cpu_us_per_op=%s log_bytes_per_op=-\n' "$line" "$cpu" >>"$RES/$key"
    say "$(printf '%-28s %10.0f ops/s  p99 %8s us  cpu %6s us/op' "$key" \
        "$(field ops_per_sec "$line")" "$(field p99_us "$line")" "$cpu")"
}

# Requests for a redis-benchmark run of about half BENCH_SECONDS, from a token-bench rate.
rb_count() { awk -v r="$1" -v s="$SECS" 'BEGIN { n = int(r * s / 2); if (n < 10000) n = 10000; print n }'; }
last_rate() { tail -n 1 "$RES/$1" | tr ' ' '\n' | sed -n 's/^ops_per_sec=//p'; }

# ---------------------------------------------------------------------------------------------
# Phase A: request throughput, latency, CPU. token-server (1 shard, appendfsync no) against
# redis-server without persistence.
# ---------------------------------------------------------------------------------------------
phase_a() {
    say "phase A: lock, ping, contended, http; ${SECS}s x $REPS per run, $CONNS connections"
    for ((rep = 1; rep <= REPS; rep++)); do
        # Fresh servers for every repetition, so that the repetitions measure the same state.
        start_token "a-ours-$rep" --shards 1 --appendfsync no
        A_OURS=$PID A_OURS_PORT=$PORT A_OURS_HTTP=$HTTP_PORT
        start_redis "a-redis-$rep"
        A_REDIS=$PID A_REDIS_PORT=$PORT
        for p in 1 16; do
            tb "lock.p$p.ours" "$A_OURS" "$A_OURS_PORT" "$A_OURS_HTTP" token-server lock "$p"
            tb "lock.p$p.redis" "$A_REDIS" "$A_REDIS_PORT" 0 redis lock "$p"
            tb "ping.p$p.ours" "$A_OURS" "$A_OURS_PORT" "$A_OURS_HTTP" token-server ping "$p"
            tb "ping.p$p.redis" "$A_REDIS" "$A_REDIS_PORT" 0 redis ping "$p"
        done
        tb contended.p1.ours "$A_OURS" "$A_OURS_PORT" "$A_OURS_HTTP" token-server contended 1
        tb contended.p1.redis "$A_REDIS" "$A_REDIS_PORT" 0 redis contended 1
        tb http.p1.ours "$A_OURS" "$A_OURS_PORT" "$A_OURS_HTTP" token-server http 1
        for p in 1 16; do
            n=$(rb_count "$(last_rate "lock.p$p.ours")")
            rb "rb-lock.p$p.ours" "$A_OURS" "$A_OURS_PORT" "$n" "$p" \
                LOCK "b$RANDOM$rep:__rand_int____rand_int__" PX 30000
            n=$(rb_count "$(last_rate "lock.p$p.redis")")
            rb "rb-lock.p$p.redis" "$A_REDIS" "$A_REDIS_PORT" "$n" "$p" \
                SET "b$RANDOM$rep:__rand_int____rand_int__" x NX PX 30000
        done
        n=$(rb_count "$(last_rate ping.p1.ours)")
        rb rb-ping.p1.ours "$A_OURS" "$A_OURS_PORT" "$n" 1 PING
        n=$(rb_count "$(last_rate ping.p1.redis)")
        rb rb-ping.p1.redis "$A_REDIS" "$A_REDIS_PORT" "$n" 1 PING
        stop_server "$A_OURS"
        stop_server "$A_REDIS"
    done
}

# ---------------------------------------------------------------------------------------------
# Phase B: cycle, pipeline 16: one shard against two, and Redis, all without fsync.
# ---------------------------------------------------------------------------------------------
phase_b() {
    say "phase B: cycle pipeline 16, 1 shard vs 2 shards"
    for ((rep = 1; rep <= REPS; rep++)); do
        start_token "b-ours1-$rep" --shards 1 --appendfsync no
        B1=$PID B1_PORT=$PORT
        start_token "b-ours2-$rep" --shards 2 --appendfsync no
        B2=$PID B2_PORT=$PORT
        start_redis "b-redis-$rep"
        BR=$PID BR_PORT=$PORT
        tb cycle.p16.ours1 "$B1" "$B1_PORT" 0 token-server cycle 16
        tb cycle.p16.ours2 "$B2" "$B2_PORT" 0 token-server cycle 16
        tb cycle.p16.redis "$BR" "$BR_PORT" 0 redis cycle 16
        stop_server "$B1"
        stop_server "$B2"
        stop_server "$BR"
    done
}

# ---------------------------------------------------------------------------------------------
# Phase C: durability. cycle, no pipelining, each appendfsync setting on both servers.
# ---------------------------------------------------------------------------------------------
phase_c() {
    say "phase C: cycle with appendfsync always / everysec / no"
    local -A C_PID C_PORT
    for mode in always everysec no; do
        start_token "c-ours-$mode" --shards 1 --appendfsync "$mode"
        C_PID[ours.$mode]=$PID C_PORT[ours.$mode]=$PORT
    done
    start_redis c-redis-always --appendonly yes --appendfsync always
    C_PID[redis.always]=$PID C_PORT[redis.always]=$PORT
    start_redis c-redis-everysec --appendonly yes --appendfsync everysec
    C_PID[redis.everysec]=$PID C_PORT[redis.everysec]=$PORT
    start_redis c-redis-no
    C_PID[redis.no]=$PID C_PORT[redis.no]=$PORT
    for ((rep = 1; rep <= REPS; rep++)); do
        for mode in always everysec no; do
            tb "cycle.p1.ours.$mode" "${C_PID[ours.$mode]}" "${C_PORT[ours.$mode]}" 0 token-server cycle 1
            tb "cycle.p1.redis.$mode" "${C_PID[redis.$mode]}" "${C_PORT[redis.$mode]}" 0 redis cycle 1
        done
    done
    for k in "${!C_PID[@]}"; do stop_server "${C_PID[$k]}"; done
}

# ---------------------------------------------------------------------------------------------
# Phase D: memory per held lock (12-byte ids, 1 h leases, nothing else stored).
# ---------------------------------------------------------------------------------------------
MEM_OURS=- MEM_REDIS_USED=- MEM_REDIS_RSS=- ours_held=- redis_held=-
BURST_OURS_START=- BURST_OURS_PEAK=- BURST_OURS_LEFT=- BURST_OURS_KEYS=-
BURST_REDIS_START=- BURST_REDIS_PEAK=- BURST_REDIS_LEFT=- BURST_REDIS_KEYS=-
phase_d() {
    say "phase D: memory for $MEM_LOCKS locks"
    start_token d-ours --shards 1 --appendfsync no
    D_OURS=$PID D_OURS_PORT=$PORT
    start_redis d-redis
    D_REDIS=$PID D_REDIS_PORT=$PORT
    sleep 1
    ours_rss0=$(rss_bytes "$D_OURS")
    redis_rss0=$(rss_bytes "$D_REDIS")
    redis_used0=$(info_field "$D_REDIS_PORT" used_memory)
    "${LOAD_PIN[@]}" "$TB" lock --port "$D_OURS_PORT" --count "$MEM_LOCKS" --pipeline 16 \
        --ttl-ms 3600000 --id-prefix memo --threads "$LOAD_THREADS" >"$TMP/mem-ours.txt"
    "${LOAD_PIN[@]}" "$TB" lock --target redis --port "$D_REDIS_PORT" --count "$MEM_LOCKS" \
        --pipeline 16 --ttl-ms 3600000 --id-prefix memo --threads "$LOAD_THREADS" >"$TMP/mem-redis.txt"
    sleep 1
    ours_rss1=$(rss_bytes "$D_OURS")
    redis_rss1=$(rss_bytes "$D_REDIS")
    redis_used1=$(info_field "$D_REDIS_PORT" used_memory)
    ours_held=$(info_field "$D_OURS_PORT" locked)
    redis_held=$(redis-cli -p "$D_REDIS_PORT" DBSIZE)
    say "held: token-server $ours_held, redis $redis_held"
    MEM_OURS=$(per "$ours_rss0" "$ours_rss1" "$ours_held")
    MEM_REDIS_USED=$(per "$redis_used0" "$redis_used1" "$redis_held")
    MEM_REDIS_RSS=$(per "$redis_rss0" "$redis_rss1" "$redis_held")
    stop_server "$D_OURS"
    stop_server "$D_REDIS"

    # A burst that expires: the same count of locks with 2 s leases, then what stays resident
    # once both servers have dropped every one of them.
    say "phase D: $MEM_LOCKS locks with 2 s leases, until they expire"
    start_token d-burst-ours --shards 1 --appendfsync no
    D_OURS=$PID D_OURS_PORT=$PORT
    start_redis d-burst-redis
    D_REDIS=$PID D_REDIS_PORT=$PORT
    sleep 1
    ours_rss0=$(rss_bytes "$D_OURS")
    redis_rss0=$(rss_bytes "$D_REDIS")
    # Peak: the highest resident set so far (VmHWM), read right after each load, before the
    # other server's load gives the leases time to run out.
    "${LOAD_PIN[@]}" "$TB" lock --port "$D_OURS_PORT" --count "$MEM_LOCKS" --pipeline 16 \
        --ttl-ms 2000 --threads "$LOAD_THREADS" >"$TMP/burst-ours.txt"
    BURST_OURS_PEAK=$(hwm_bytes "$D_OURS")
    "${LOAD_PIN[@]}" "$TB" lock --target redis --port "$D_REDIS_PORT" --count "$MEM_LOCKS" \
        --pipeline 16 --ttl-ms 2000 --threads "$LOAD_THREADS" >"$TMP/burst-redis.txt"
    BURST_REDIS_PEAK=$(hwm_bytes "$D_REDIS")
    # Redis removes expired keys in the background; DBSIZE counts them until it has.
    local waited=0
    while ((waited < 60)); do
        sleep 1
        waited=$((waited + 1))
        [[ $(redis-cli -p "$D_OURS_PORT" DBSIZE) == 0 && $(redis-cli -p "$D_REDIS_PORT" DBSIZE) == 0 ]] && break
    done
    sleep 1
    BURST_OURS_LEFT=$(rss_bytes "$D_OURS")
    BURST_REDIS_LEFT=$(rss_bytes "$D_REDIS")
    BURST_OURS_KEYS=$(redis-cli -p "$D_OURS_PORT" DBSIZE)
    BURST_REDIS_KEYS=$(redis-cli -p "$D_REDIS_PORT" DBSIZE)
    BURST_OURS_START=$ours_rss0 BURST_REDIS_START=$redis_rss0
    say "burst: ids left token-server $BURST_OURS_KEYS, redis $BURST_REDIS_KEYS after ${waited}s"
    stop_server "$D_OURS"
    stop_server "$D_REDIS"
}

for phase in A B C D; do
    if [[ $PHASES == *$phase* ]]; then
        phase_start=$SECONDS
        "phase_${phase,,}"
        say "phase $phase took $((SECONDS - phase_start)) s"
    fi
done

# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
# Median of one field over the runs of a key ("-" when no run produced a number).
med() {
    [[ -f $RES/$1 ]] || {
        echo -
        return
    }
    tr ' ' '\n' <"$RES/$1" | sed -n "s/^$2=//p" | { grep -E '^[0-9.]+$' || true; } | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
failures() { [[ -f $RES/$1 ]] && grep -c 'failed=1' "$RES/$1" || true; }
errors() { # the unexpected error kinds seen in any run of a key
    [[ -f $RES/$1 ]] || return 0
    tr ' ' '\n' <"$RES/$1" | sed -n 's/^unexpected=//p' | { grep -v '^-$' || true; } | sort -u |
        tr '\n' ' '
}
num() { # a number for people: thousands separated, decimals by size
    awk -v x="$1" 'BEGIN {
        if (x == "-" || x == "") { print "-"; exit }
        if (x >= 100) s = sprintf("%.0f", x); else if (x >= 10) s = sprintf("%.1f", x); else s = sprintf("%.2f", x)
        split(s, part, "."); i = part[1]; out = ""
        while (length(i) > 3) { out = "," substr(i, length(i) - 2) out; i = substr(i, 1, length(i) - 3) }
        out = i out; if (part[2] != "") out = out "." part[2]; print out }'
}
# row MEASURE OURS THEIRS TARGET_OP TARGET
row() {
    local ratio verdict
    ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }')
    verdict=$(awk -v r="$ratio" -v op="$4" -v t="$5" 'BEGIN {
        if (r == "-") { print "no data"; exit }
        ok = (op == ">=") ? (r >= t) : (op == "<=") ? (r <= t) : (r > t)
        print ok ? "met" : "**missed**" }')
    local shown=$4
    [[ $shown == ">=" ]] && shown="≥"
    [[ $shown == "<=" ]] && shown="≤"
    [[ $ratio != - ]] && ratio="$ratio×"
    printf '| %s | %s | %s | %s | %s %s× | %s |\n' "$1" "$(num "$2")" "$(num "$3")" "$ratio" "$shown" "$5" "$verdict"
}

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
KERNEL=$(uname -sr)
REDIS_VERSION=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`$COMMAND_LINE\`, commit \`$COMMIT\`$DIRTY."
    echo
    echo "Machine: $NPROC CPUs ($CPU_MODEL), $KERNEL, redis-server $REDIS_VERSION; $PINNING;"
    echo "load average when the tables were written: $LOADAVG."
    [[ -n $NOTE ]] && echo && echo "$NOTE"
    echo
    echo "Every figure is the median of $REPS runs of ${SECS} s with $CONNS connections. ratio ="
    echo "token-server / compared-with. CPU is the server process's user + system time per"
    echo "operation (\`/proc/PID/stat\`)."
    echo
    echo "| measure | token-server | compared with | ratio | target | |"
    echo "|---|---:|---:|---:|---|---|"
    row "LOCK ops/s, no pipelining, 1 shard, vs Redis SET NX PX" \
        "$(med lock.p1.ours ops_per_sec)" "$(med lock.p1.redis ops_per_sec)" ">=" 1.0
    row "LOCK ops/s, pipeline 16, vs Redis SET NX PX" \
        "$(med lock.p16.ours ops_per_sec)" "$(med lock.p16.redis ops_per_sec)" ">=" 2.0
    row "server CPU µs per LOCK, pipeline 16, vs Redis per SET NX PX" \
        "$(med lock.p16.ours cpu_us_per_op)" "$(med lock.p16.redis cpu_us_per_op)" "<=" 0.6
    row "LOCK ops/s vs our own PING ops/s, no pipelining" \
        "$(med lock.p1.ours ops_per_sec)" "$(med ping.p1.ours ops_per_sec)" ">=" 0.9
    row "bytes per held lock (RSS) vs Redis used_memory" "$MEM_OURS" "$MEM_REDIS_USED" "<=" 0.5
    row "bytes per held lock (RSS) vs Redis RSS" "$MEM_OURS" "$MEM_REDIS_RSS" "<=" 0.5
    row "cycle ops/s, appendfsync always, vs Redis always (SET NX PX + SET XX)" \
        "$(med cycle.p1.ours.always ops_per_sec)" "$(med cycle.p1.redis.always ops_per_sec)" ">=" 1.0
    row "p99 latency µs, LOCK, no pipelining, vs Redis SET NX PX" \
        "$(med lock.p1.ours p99_us)" "$(med lock.p1.redis p99_us)" "<=" 1.0
    row "cycle ops/s, pipeline 16, 2 shards vs 1 shard" \
        "$(med cycle.p16.ours2 ops_per_sec)" "$(med cycle.p16.ours1 ops_per_sec)" ">" 1.0
    echo
    echo "Durability: \`cycle\` (LOCK then COMPLETE, no pipelining), one shard. Log bytes per"
    echo "completed id: growth of INFO \`log_bytes\` (Redis: \`aof_current_size\`) over a run,"
    echo "divided by the cycles it completed."
    echo
    echo "| appendfsync | token-server cycles/s | Redis cycles/s | ratio | token-server log bytes per id | Redis AOF bytes per id |"
    echo "|---|---:|---:|---:|---:|---:|"
    for mode in always everysec no; do
        ours=$(med "cycle.p1.ours.$mode" ops_per_sec)
        theirs=$(med "cycle.p1.redis.$mode" ops_per_sec)
        label=$mode
        [[ $mode == no ]] && label="no (Redis: persistence off)"
        printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$(num "$ours")" "$(num "$theirs")" \
            "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f×", a / b }')" \
            "$(med "cycle.p1.ours.$mode" log_bytes_per_op)" "$(med "cycle.p1.redis.$mode" log_bytes_per_op)"
    done
    echo
    echo "Memory: $ours_held locks held in token-server, $redis_held keys in Redis (12-byte ids,"
    echo "1 h leases; Redis values are 32-character tokens). token-server RSS grew by"
    echo "$(num "$MEM_OURS") bytes per lock; Redis used_memory by $(num "$MEM_REDIS_USED"), RSS by $(num "$MEM_REDIS_RSS")."
    echo
    echo "After a burst: $MEM_LOCKS locks with 2 s leases, RSS in MiB at the start, at its peak"
    echo "(VmHWM), and once every lock had expired (ids left: token-server $BURST_OURS_KEYS, Redis $BURST_REDIS_KEYS):"
    echo
    echo "| server | start | peak | after expiry |"
    echo "|---|---:|---:|---:|"
    mib() { awk -v b="$1" 'BEGIN { if (b == "-" || b == "") print "-"; else printf "%.1f", b / 1048576 }'; }
    echo "| token-server | $(mib "$BURST_OURS_START") | $(mib "$BURST_OURS_PEAK") | $(mib "$BURST_OURS_LEFT") |"
    echo "| Redis | $(mib "$BURST_REDIS_START") | $(mib "$BURST_REDIS_PEAK") | $(mib "$BURST_REDIS_LEFT") |"
    echo
    echo "Every run (medians; tb = token-bench, rb = redis-benchmark, whose latencies have no p99.9):"
    echo
    echo "| run | tool | ops/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/op | unexpected errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---|"
    for key in lock.p1.ours lock.p1.redis lock.p16.ours lock.p16.redis ping.p1.ours ping.p1.redis \
        ping.p16.ours ping.p16.redis contended.p1.ours contended.p1.redis http.p1.ours \
        cycle.p16.ours1 cycle.p16.ours2 cycle.p16.redis \
        cycle.p1.ours.always cycle.p1.redis.always cycle.p1.ours.everysec cycle.p1.redis.everysec \
        cycle.p1.ours.no cycle.p1.redis.no \
        rb-lock.p1.ours rb-lock.p1.redis rb-lock.p16.ours rb-lock.p16.redis rb-ping.p1.ours rb-ping.p1.redis; do
        tool=tb
        [[ $key == rb-* ]] && tool=rb
        errs="$(errors "$key")"
        f=$(failures "$key")
        [[ $f != 0 && -n $f ]] && errs="$errs$f failed run(s)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${key#rb-}" "$tool" \
            "$(num "$(med "$key" ops_per_sec)")" "$(med "$key" p50_us)" "$(med "$key" p99_us)" \
            "$(med "$key" p999_us)" "$(med "$key" cpu_us_per_op)" "${errs:-0}"
    done
    echo
    echo "Run names: workload, pipeline depth, server (ours = token-server, 1 shard unless"
    echo "ours2; lock, ping, contended, http: appendfsync no against Redis without persistence)."
} >"$TMP/table.md"

cat "$TMP/table.md"

if [[ $WRITE_DOC == 1 && $PHASES != *A*B*C*D* ]]; then
    say "not all phases ran (BENCH_PHASES=$PHASES): $DOC left as it was"
elif [[ $WRITE_DOC == 1 ]]; then
    if ! grep -q '<!-- bench:start -->' "$DOC" 2>/dev/null; then
        {
            echo
            echo "## token-server versus Redis (\`scripts/bench.sh\`)"
            echo
            echo "<!-- bench:start -->"
            echo "<!-- bench:end -->"
        } >>"$DOC"
    fi
    awk -v gen="$TMP/table.md" '
        /<!-- bench:start -->/ { print; while ((getline line < gen) > 0) print line; skip = 1; next }
        /<!-- bench:end -->/ { skip = 0 }
        !skip { print }' "$DOC" >"$TMP/doc.new"
    cat "$TMP/doc.new" >"$DOC"
    say "tables written into $DOC"
fi
