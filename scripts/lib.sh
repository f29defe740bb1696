# Shared by the scripts in this folder; sourced, not run.

# listened_port LOG KIND PID TRIES: prints the port of token-server's "listening KIND=addr:port"
# line in LOG, polling every 0.1 s up to TRIES times while process PID lives. Fails, printing
# nothing, if the line never comes.
listened_port() {
    local log=$1 kind=$2 pid=$3 tries=$4 port i
    for ((i = 0; i < tries; i++)); do
        port=$(sed -n "s/.*listening $kind=[0-9.]*:\([0-9]*\).*/\1/p" "$log")
        if [[ -n $port ]]; then
            echo "$port"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
