# Shell functions shared by devnet.sh, cluster.sh and bft.sh. Source it; it defines, runs
# nothing. Expects ROOT (the repository root) to be set.

# shellcheck disable=SC2034
GETH="${GETH_BIN:-$ROOT/.tools/bin/geth}"

say() { echo "$(basename "$0" .sh): $*" >&2; }

# Foundry's cast, the client the docs send transactions with, into .tools/bin. A devnet
# runs without it, so a machine without npm gets a warning, not a failure.
install_cast() {
    [[ -n "${GETH_BIN:-}" ]] && return  # in the Docker image: no cast, no npm
    "$ROOT/scripts/setup.sh" cast || say "cast is not installed (see above); the devnet runs, but the docs' cast commands need it"
}

# Is the process in pid file $1 alive, and the one the file was written for? A PID is
# reused: after a reboot, or once the process has died, another process (even another
# Geth) may have it. The one we started is at least as old as its pid file (written just
# after it started); a process that started later is a stranger and is never signalled.
# (A killed process whose parent is gone may linger unreaped as a zombie, and `kill -0`
# still succeeds on it: not alive either.)
alive() {
    [[ -f "$1" ]] || return 1
    local pid state age written
    pid="$(head -n 1 "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    read -r state age < <(ps -o stat= -o etimes= -p "$pid" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z* ]] || return 1
    # (The file may be gone by now: a process such as Redis removes its own as it exits.)
    written="$(stat -c %Y "$1" 2>/dev/null)" || return 1
    # (2 s of slack: both clocks count whole seconds.)
    (( age + 2 >= $(date +%s) - written ))
}

# The PIDs of the processes that hold a file under directory $1 open (Linux's /proc).
holders() {
    local dir fd pid
    dir="$(realpath "$1")"
    for fd in /proc/[0-9]*/fd/*; do
        [[ "$(readlink "$fd" 2>/dev/null)" == "$dir"/* ]] || continue
        pid="${fd#/proc/}"
        echo "${pid%%/*}"
    done 2>/dev/null | sort -un
}

# Waits up to $2 tenths of a second for the process in pid file $1 to be gone; fails if it
# is still there.
wait_gone() {
    for _ in $(seq 1 "$2"); do alive "$1" || return 0; sleep 0.1; done
    ! alive "$1"
}

# Stops the process in pid file $1 (named $2) with SIGTERM, SIGKILL after 30 s, and
# returns once it is gone.
stop_pid() {
    if ! alive "$1"; then rm -f "$1"; say "$2 not running"; return; fi
    local pid; pid="$(head -n 1 "$1")"
    # It may have ended by itself since: a CometBFT whose app stopped does.
    kill -TERM "$pid" 2>/dev/null || { rm -f "$1"; say "$2 not running"; return; }
    if ! wait_gone "$1" 300; then
        say "$2 ignored SIGTERM for 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$1" 100 || say "$2 (pid $pid) is still there 10 s after SIGKILL"
    fi
    rm -f "$1"
    say "stopped $2"
}

# SIGKILLs the process in pid file $1 (named $2) and returns once it is gone. Returns 1,
# killing nothing, if it was not running. The pid file is removed either way.
kill_pid() {
    if ! alive "$1"; then rm -f "$1"; return 1; fi
    local pid; pid="$(head -n 1 "$1")"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$1" 100 || say "$2 (pid $pid) is still there 10 s after SIGKILL"
    rm -f "$1"
}

# A JSON-RPC call of method $2 to http://127.0.0.1:$1, with the JSON params $3 (none if
# not given).
rpc() {
    curl -sf --max-time 2 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-[]}}" "http://127.0.0.1:$1"
}

# The last error a program wrote to LOG $1 (from byte $2 on, if given: what it wrote since
# it started): the `Error:` line and what follows, up to the backtrace RUST_BACKTRACE adds;
# or the last lines, if it wrote no error.
last_error() {
    local text at
    text="$(tail -c "+${2:-1}" "$1" 2>/dev/null || true)"
    at="$(grep -n '^Error:' <<< "$text" | tail -n 1 | cut -d: -f1 || true)"
    if [[ -n "$at" ]]; then tail -n "+$at" <<< "$text" | sed '/^Stack backtrace:/,$d' | head -n 12; else tail -n 20 <<< "$text"; fi
}

# Writes a random 32-byte hex JWT secret to $1 unless it has one, readable by its owner
# only: whoever reads it can drive Geth's Engine API.
ensure_jwt() {
    [[ -s "$1" ]] && return
    mkdir -p "$(dirname "$1")"
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1")
    say "wrote a new JWT secret to ${1#"$ROOT"/}"
}

# Starts Geth on datadir $1 (initialised from genesis.json the first time) with Engine API
# port $2, JSON-RPC port $3, metrics port $4 (Prometheus's, at /debug/metrics/prometheus),
# JWT secret $5, log $6, pid file $7, and waits until it answers. With an eighth argument,
# a devp2p port, it can peer with other Geths on this machine (Parts 3 and 4, see
# peer_geths); without, it has no peers. The flags are the test harness's
# (common/src/harness/geth.rs: GETH_FLAGS, then GETH_ALONE_FLAGS or GETH_PEERED_FLAGS).
start_geth() {
    local data="$1" auth="$2" http="$3" metrics="$4" jwt="$5" log="$6" pidfile="$7" p2p="${8:-}"
    local peering=(--maxpeers=0 --http.api=eth,net,web3,txpool --port=0)
    if [[ -n "$p2p" ]]; then
        peering=(--maxpeers=16 --http.api=eth,net,web3,txpool,admin --port="$p2p" --nat=none --netrestrict=127.0.0.0/8)
    fi
    if alive "$pidfile"; then say "geth already running (pid $(cat "$pidfile"))"; return; fi
    [[ -n "${GETH_BIN:-}" ]] || "$ROOT/scripts/setup.sh" geth
    mkdir -p "$(dirname "$log")"
    if [[ ! -d "$data/geth/chaindata" ]]; then
        "$GETH" init --datadir "$data" --state.scheme=hash "$ROOT/genesis.json" >> "$log" 2>&1
        say "initialised ${data#"$ROOT"/} from genesis.json"
    fi
    nohup "$GETH" --datadir "$data" \
        --syncmode=full --state.scheme=hash --gcmode=archive --nodiscover --miner.gasprice=1 --metrics "${peering[@]}" \
        --authrpc.addr=127.0.0.1 --authrpc.port="$auth" --authrpc.jwtsecret="$jwt" \
        --http --http.addr=127.0.0.1 --http.port="$http" --metrics.addr=127.0.0.1 --metrics.port="$metrics" --ipcdisable \
        >> "$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 1 600); do
        if rpc "$http" eth_chainId >/dev/null; then
            say "geth running (pid $(cat "$pidfile")): Engine API http://127.0.0.1:$auth, JSON-RPC http://127.0.0.1:$http, log ${log#"$ROOT"/}"
            return
        fi
        alive "$pidfile" || { say "geth exited; the end of ${log#"$ROOT"/}:"; tail -n 20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    say "geth did not answer within 60 s; see ${log#"$ROOT"/}"
    exit 1
}

# The hash of block 0 of the Geth whose JSON-RPC is on port $1 (empty if it does not answer).
block0_hash() {
    { rpc "$1" eth_getBlockByNumber '["0x0",false]' || true; } | sed -nE 's/.*"hash":"(0x[0-9a-f]{64})".*/\1/p'
}

# The chain id of the Geth whose JSON-RPC is on port $1, in decimal (empty if it does not
# answer).
chain_id_of() {
    local id
    id="$({ rpc "$1" eth_chainId || true; } | sed -nE 's/.*"result":"0x([0-9a-f]+)".*/\1/p')"
    [[ -z "$id" ]] || echo "$((16#$id))"
}

# The fork id of the last fork the Geth whose JSON-RPC is on port $1 has scheduled
# (eth_config, EIP-7910: the last of its current, next and last forks it names; sed's
# greedy .* takes the last on the line), which covers its whole fork schedule after block 0
# (empty if it does not answer).
fork_id_of() {
    { rpc "$1" eth_config || true; } | sed -nE 's/.*"forkId":"(0x[0-9a-f]{8})".*/\1/p'
}

# The forks in force at block 0 of the Geth whose JSON-RPC is on port $1 (it must serve the
# admin API), summed up as the consensus layers sum up a genesis file's
# (ForkSchedule::genesis_forks_id): the CRC-32 of the keys of its chain config
# (admin_nodeInfo) that name a fork at block 0, or at block 0's time and before, sorted, a
# line each. The keys of Geth v1.17.8's config that end in Block or Time are its forks (the
# lists in common/src/fork.rs). A value of 19 digits or more is a time far beyond block 0's
# (bash's numbers end at 2^63). Empty if it does not answer.
genesis_forks_of() {
    local info time key at names=""
    info="$(chain_config_of "$1")"
    time="$({ rpc "$1" eth_getBlockByNumber '["0x0",false]' || true; } | sed -nE 's/.*"timestamp":"0x([0-9a-f]+)".*/\1/p')"
    [[ -n "$info" && -n "$time" ]] || return 0
    while IFS=: read -r key at; do
        key="${key//\"/}"
        if [[ "$key" == *Block && "$at" -eq 0 ]] || [[ "$key" == *Time && ${#at} -le 18 && "$at" -le $((16#$time)) ]]; then
            names+="$key"$'\n'
        fi
    done < <(grep -oE '"[A-Za-z0-9]+(Block|Time)":[0-9]+' <<< "$info")
    printf '%s' "$names" | LC_ALL=C sort | crc32_hex
}

# The blob parameters of the forks of the Geth whose JSON-RPC is on port $1 (it must serve
# the admin API), summed up as the consensus layers sum up a genesis file's
# (ForkSchedule::blob_schedule_id): the CRC-32 of a line for each fork its chain config
# schedules that sets them (cancun, prague, bpo1 to bpo5, in that order: its key in
# blobSchedule, then its target, maximum and base fee update fraction, separated by spaces,
# a newline after each). Geth v1.17.8 refuses a config that schedules one of these without
# its entry, and writes an entry's fields in that order. Empty if it does not answer, or if
# it gives an entry of another shape (so that same_chain says it cannot read the chain,
# rather than name a wrong one).
blob_schedule_of() {
    local info name line lines=""
    info="$(chain_config_of "$1")"
    [[ -n "$info" ]] || return 0
    for name in cancun prague bpo1 bpo2 bpo3 bpo4 bpo5; do
        grep -qE "\"${name}Time\":[0-9]+" <<< "$info" || continue
        line="$(sed -nE "s/.*\"$name\":\\{\"target\":([0-9]+),\"max\":([0-9]+),\"baseFeeUpdateFraction\":([0-9]+)\\}.*/$name \\1 \\2 \\3/p" <<< "$info")"
        [[ -n "$line" ]] || return 0
        lines+="$line"$'\n'
    done
    printf '%s' "$lines" | crc32_hex
}

# The chain config of the Geth whose JSON-RPC is on port $1, as admin_nodeInfo gives it
# (one line of JSON; empty if it does not answer).
chain_config_of() {
    { rpc "$1" admin_nodeInfo || true; } | sed -nE 's/.*"config":(\{.*\}),"head".*/\1/p'
}

# The CRC-32 of standard input, as 0x and 8 hex digits, most significant first: gzip's
# trailer holds it, least significant byte first.
crc32_hex() {
    local a b c d
    read -r a b c d < <(gzip -c | tail -c 8 | head -c 4 | od -An -tx1)
    echo "0x$d$c$b$a"
}

# The chain of the Geth whose JSON-RPC is on port $1: "chain id N, block 0 0x…, fork id
# 0x…, genesis forks 0x…, blob schedule 0x…", with "unknown" for what it does not answer.
chain_of() {
    local id hash fork forks blobs
    id="$(chain_id_of "$1")"
    hash="$(block0_hash "$1")"
    fork="$(fork_id_of "$1")"
    forks="$(genesis_forks_of "$1")"
    blobs="$(blob_schedule_of "$1")"
    echo "chain id ${id:-unknown}, block 0 ${hash:-unknown}, fork id ${fork:-unknown}, genesis forks ${forks:-unknown}, blob schedule ${blobs:-unknown}"
}

# Checks that the Geths given as HTTP_PORT:DATADIR arguments (after the first) hold one
# chain: $1 if it names the chain as chain_of does (the chain the network's genesis
# names; without the blob schedule, or also the genesis forks or the fork id, if it names
# none); else the one most of them hold, among those whose chain has $1 in it if $1 is not
# empty ("block 0 0x…": a genesis that names block 0 only). Geths of another block 0 or
# network id (the chain id, here) never peer, nor do Geths whose forks after block 0 differ
# in one their chain has passed (the eth protocol's handshake compares them, and Geth logs
# its refusals only at debug level); Geths that differ only in a fork still ahead, in a
# fork at block 0, or in a fork's blob parameters, peer, and part at the first block their
# rules judge differently. So this names each Geth that is wrong, and returns 1; or, if it
# cannot read a Geth's chain, says so and returns 2.
same_chain() {
    local want="$1" arg chain network="" best=0
    shift
    local -A chain_at=() holders=()
    for arg in "$@"; do
        chain="$(chain_of "${arg%%:*}")"
        chain_at["$arg"]="$chain"
        holders["$chain"]=$((${holders["$chain"]:-0} + 1))
    done
    local unread=0
    for arg in "$@"; do
        [[ "${chain_at["$arg"]}" == *unknown* ]] || continue
        say "cannot read the chain of the Geth of ${arg#*:} (${chain_at["$arg"]}): it did not answer eth_chainId, eth_getBlockByNumber, eth_config (Geth v1.16 or later) or admin_nodeInfo on 127.0.0.1:${arg%%:*} within 2 s; see its log"
        unread=1
    done
    ((unread == 0)) || return 2
    local n
    if [[ "$want" == "chain id "* ]]; then
        network="$want"
    else
        for chain in "${!holders[@]}"; do
            [[ -z "$want" || "$chain" == *"$want"* ]] || continue
            n="${holders["$chain"]}"
            if ((n > best)); then network="$chain"; best="$n"
            elif ((n == best)); then network=""; fi
        done
        [[ -n "$network" || -z "$want" || "$best" -gt 0 ]] || network="$want, which the network's genesis names"
    fi
    local wrong=()
    for arg in "$@"; do [[ -n "$network" && "${chain_at["$arg"]}" == "$network"* ]] || wrong+=("$arg"); done
    ((${#wrong[@]} == 0)) && return 0
    if [[ -z "$network" ]]; then
        say "these Geths hold different chains, as many of each; which is the network's cannot be told:"
        for arg in "$@"; do say "  ${arg#*:}: ${chain_at["$arg"]}"; done
    else
        for arg in "${wrong[@]}"; do
            say "the Geth of ${arg#*:} holds another chain (${chain_at["$arg"]}) than the network's ($network)"
        done
    fi
    return 1
}

# What to do about a Geth same_chain named, for a script that started it from a datadir.
chain_remedy() {
    say "a Geth of another chain was initialised from another genesis file, or from genesis.json before it changed, or its datadir is another chain's; it cannot peer with the others, or would part from them at a fork. Stop them (scripts/$(basename "$0") stop), delete that datadir, and start them again: it is initialised anew from genesis.json, which must be the network's"
}

# The enode id of the Geth whose JSON-RPC is on port $1 (it must serve the admin API).
enode_id() {
    rpc "$1" admin_nodeInfo | sed -E 's/.*"enode":"enode:\/\/([0-9a-f]+)@.*/\1/'
}

# Peers the Geths given as HTTP_PORT:P2P_PORT arguments with each other: every one adds
# every other as a static peer on loopback, so a restarted one is dialled again. Peered,
# a transaction sent to any of them reaches the one that builds the next block. One side of
# a pair dials, and the other adds it once they are peers: were both to dial at once, each
# could drop the other's link as a duplicate ("already connected"), and Geth dials a static
# peer again only 35 s later, at the same moment on both sides.
peer_geths() {
    local nodes=("$@") i j
    for ((i = 0; i < ${#nodes[@]}; i++)); do
        for ((j = i + 1; j < ${#nodes[@]}; j++)); do
            add_geth_peer "${nodes[i]}" "${nodes[j]}"
            wait_geth_peer "${nodes[j]}" "${nodes[i]}"
            add_geth_peer "${nodes[j]}" "${nodes[i]}"
        done
    done
}

# The Geth HTTP_PORT:P2P_PORT $1 adds the one $2 as a static peer.
add_geth_peer() {
    local from="$1" to="$2" answer
    answer="$(curl -sf --max-time 2 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"admin_addPeer\",\"params\":[\"enode://$(enode_id "${to%%:*}")@127.0.0.1:${to##*:}\"]}" \
        "http://127.0.0.1:${from%%:*}")" || answer="no answer"
    [[ "$answer" == *'"result":true'* ]] ||
        { say "the Geth on port ${from%%:*} cannot add the one on ${to%%:*} as a peer: $answer"; exit 1; }
}

# Waits until the Geth HTTP_PORT:P2P_PORT $1 has the one $2 as a peer: up to 60 s, as Geth
# dials a peer again 35 s after a dial that failed.
wait_geth_peer() {
    local id
    id="$(enode_id "${2%%:*}")"
    for _ in $(seq 1 600); do
        [[ "$(rpc "${1%%:*}" admin_peers)" == *"enode://$id@"* ]] && return
        sleep 0.1
    done
    say "the Geths on ports ${2%%:*} and ${1%%:*} did not become peers within 60 s; see their logs"
    exit 1
}
