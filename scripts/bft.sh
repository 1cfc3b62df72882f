#!/usr/bin/env bash
# Part 4's validator network on this machine, natively (no Docker): N validators (default
# 4), each with its own Geth (peered with the others, for transaction gossip), its own
# cometbft-consensus app, and its own CometBFT node, all from `cometbft testnet`; and the
# full nodes added to it, which follow the chain without voting.
#
#   scripts/bft.sh start [N]          start whatever is not running (builds the app); N
#                                     validators (1 to 10, default 4) for a new network
#   scripts/bft.sh full               add a full node (fullK) to the network and start it: a
#                                     Geth from genesis, peered with the others, an app, and
#                                     a CometBFT node from `cometbft init` and the validators'
#                                     genesis, which syncs the chain from them and follows
#   scripts/bft.sh full --state-sync  the same, but its CometBFT starts from a validator's
#                                     snapshot, trusting node0's latest header, and its Geth
#                                     syncs the blocks below it from its peers: for a network
#                                     whose validators run with RETAIN_BLOCKS (given to
#                                     start, which the network then keeps for its apps)
#   scripts/bft.sh status             each node's height and app status
#   scripts/bft.sh node NAME start|stop|kill
#                                     a validator's (nodeI) or full node's (fullK) CometBFT
#                                     and app (kill = SIGKILL, and says which it killed: if
#                                     neither was running, it says so and exits 0, like
#                                     stop); start starts what is not running (an app run by
#                                     hand stays)
#   scripts/bft.sh timeouts           the CometBFT timeouts a new network gets, for a block
#                                     every BLOCK_TIME_MS (default 1000) and the apps'
#                                     BUILD_TIME_MS (default 200); both are read only when
#                                     start makes a network
#   scripts/bft.sh env NAME           the environment to run a node's app by hand:
#                                     eval "$(scripts/bft.sh env node0)"; cargo run -p cometbft-consensus
#   scripts/bft.sh run [N]            start, then wait in the foreground until SIGTERM (Docker)
#   scripts/bft.sh stop               stop everything (the chains stay in .devnet/bft)
#   scripts/bft.sh clean              stop everything and delete .devnet/bft
#
# Ports (all on 127.0.0.1), for validator I: CometBFT P2P 26656+10I, RPC 26657+10I, the
# app's ABCI 26658+10I, CometBFT's Prometheus metrics 26660+10I; Geth's Engine API 8650+I,
# JSON-RPC 8660+I, metrics 6070+I, devp2p 30310+I; the app's /health, /ready, /metrics and
# /status 9300+I. Full node K takes I = 10+K in the same table (CometBFT RPC 26757+10K,
# app 9310+K, ...), except its Geth's Engine API 8670+K and JSON-RPC 8680+K. Data and logs
# in .devnet/bft/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.devnet/bft"
COMETBFT="${COMETBFT_BIN:-$ROOT/.tools/bin/cometbft}"
APP="${APP_BIN:-$ROOT/target/debug/cometbft-consensus}"

count() { local homes=("$DIR"/node[0-9]*); [[ -e "${homes[0]}" ]] && echo "${#homes[@]}" || echo 0; }
# Every node's name: the validators in order, then the full nodes.
names() {
    local i k
    for ((i = 0; i < $(count); i++)); do echo "node$i"; done
    for ((k = 0; k < 10; k++)); do [[ -d "$DIR/full$k" ]] && echo "full$k"; done
    return 0
}
checked_name() {
    [[ "$1" =~ ^(node|full)(0|[1-9][0-9]*)$ && -d "$DIR/$1" ]] ||
        { say "no node '$1' in .devnet/bft (there: $(names | paste -sd ' '))"; exit 2; }
    echo "$1"
}
# A node's place in the port table: I for validator nodeI, 10+K for full node fullK.
slot() { local n="${1#node}"; [[ "$1" == full* ]] && n=$((10 + ${1#full})); echo "$n"; }
engine_port() { local s; s="$(slot "$1")"; echo $((s < 10 ? 8650 + s : 8660 + s)); }
geth_rpc_port() { local s; s="$(slot "$1")"; echo $((s < 10 ? 8660 + s : 8670 + s)); }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The CometBFT timeouts for a block every BLOCK_TIME_MS (default 1000), as the test harness
# derives them (common/src/harness/cometbft.rs, CometTimeouts::for_block_time): the commit
# wait is the block time less one round (ROUND_ESTIMATE_MS, measured on a small machine
# with blocks built ahead); connections flush every 10 ms (CometBFT's 100 ms default suits
# links across the world); and a proposal is waited for half the block time, but at least
# a round more than the apps' build deadline (BUILD_TIME_MS, default 200, which a new
# network keeps in build_time_ms for its apps) or a proposer's hold for the clock (up to a
# second less the commit wait); a round that decided nothing waits half a round for its
# last precommits. The Part 4 chapter explains them all.
ROUND_ESTIMATE_MS=250
timeouts() {
    local block="${BLOCK_TIME_MS:-1000}" build="${BUILD_TIME_MS:-200}"
    [[ "$block" =~ ^[0-9]+$ ]] || { say "BLOCK_TIME_MS must be a number of milliseconds, not '$block'"; exit 2; }
    [[ "$build" =~ ^[0-9]+$ ]] || { say "BUILD_TIME_MS must be a number of milliseconds, not '$build'"; exit 2; }
    block=$((10#$block)) build=$((10#$build))
    local commit=$((block > ROUND_ESTIMATE_MS ? block - ROUND_ESTIMATE_MS : 0))
    local hold=$((commit < 1000 ? 1000 - commit : 0))
    local propose=$((block / 2)) floor=$(((build > hold ? build : hold) + ROUND_ESTIMATE_MS))
    ((propose >= floor)) || propose=$floor
    echo "timeout_commit=${commit}ms timeout_propose=${propose}ms timeout_precommit=$((ROUND_ESTIMATE_MS / 2))ms flush_throttle_timeout=10ms"
}

# Node NAME's config.toml: its ports (see the table above), its persistent peers, and the
# timeouts commit, propose, precommit and flush (and the file, if not yet in place). Every node is on 127.0.0.1, so each must
# accept several peers at one address (`cometbft testnet` sets the same for validators;
# `cometbft init`, which makes a full node, does not). No transaction index: each block's
# one transaction is the whole EL payload, which the index would keep a second time, never
# pruned; transactions are Geth's to look up.
configure() {
    local name="$1" peers="$2" commit="$3" propose="$4" precommit="$5" flush="$6" s
    local file="${7:-$DIR/$name/cometbft/config/config.toml}"
    s="$(slot "$name")"
    sed -i \
        -e "s|^proxy_app = .*|proxy_app = \"tcp://127.0.0.1:$((26658 + 10 * s))\"|" \
        -e "s|^laddr = \"tcp://127.0.0.1:26657\"|laddr = \"tcp://127.0.0.1:$((26657 + 10 * s))\"|" \
        -e "s|^laddr = \"tcp://0.0.0.0:26656\"|laddr = \"tcp://127.0.0.1:$((26656 + 10 * s))\"|" \
        -e "s|^persistent_peers = .*|persistent_peers = \"$peers\"|" \
        -e "s|^allow_duplicate_ip = .*|allow_duplicate_ip = true|" \
        -e "s|^addr_book_strict = .*|addr_book_strict = false|" \
        -e "s|^timeout_commit = .*|timeout_commit = \"$commit\"|" \
        -e "s|^timeout_propose = .*|timeout_propose = \"$propose\"|" \
        -e "s|^timeout_precommit = .*|timeout_precommit = \"$precommit\"|" \
        -e "s|^flush_throttle_timeout = .*|flush_throttle_timeout = \"$flush\"|" \
        -e "s|^indexer = .*|indexer = \"null\"|" \
        -e "s|^prometheus = .*|prometheus = true|" \
        -e "s|^prometheus_listen_addr = .*|prometheus_listen_addr = \"127.0.0.1:$((26660 + 10 * s))\"|" \
        "$file"
}

# cometbft testnet, then each node's ports moved to its own (see the table above), and the
# timeouts for BLOCK_TIME_MS.
init() {
    local n="$1"
    if [[ -d "$DIR/node0/cometbft/config" ]]; then
        # The timing is the network's, written when it was made: say so to someone who
        # asks for another.
        if [[ -n "${BLOCK_TIME_MS:-}${BUILD_TIME_MS:-}" && -f "$DIR/timeouts" &&
            ( "$(timeouts)" != "$(< "$DIR/timeouts")" || "$((10#${BUILD_TIME_MS:-200}))" != "$(< "$DIR/build_time_ms")" ) ]]; then
            say "the network in .devnet/bft keeps the timing it was made with ($(< "$DIR/timeouts"), build time $(< "$DIR/build_time_ms") ms): BLOCK_TIME_MS and BUILD_TIME_MS apply to a new one (scripts/bft.sh clean first)"
        fi
        return
    fi
    local derived commit propose precommit flush
    derived="$(timeouts)"
    commit="${derived#timeout_commit=}"; commit="${commit%% *}"
    propose="${derived#*timeout_propose=}"; propose="${propose%% *}"
    precommit="${derived#*timeout_precommit=}"; precommit="${precommit%% *}"
    flush="${derived##*flush_throttle_timeout=}"
    mkdir -p "$DIR"
    "$COMETBFT" testnet --v "$n" --o "$DIR/testnet" --populate-persistent-peers=false > /dev/null
    local peers=() i
    for ((i = 0; i < n; i++)); do
        mkdir -p "$DIR/node$i"
        mv "$DIR/testnet/node$i" "$DIR/node$i/cometbft"
        peers+=("$("$COMETBFT" show-node-id --home "$DIR/node$i/cometbft")@127.0.0.1:$((26656 + 10 * i))")
    done
    rmdir "$DIR/testnet"
    for ((i = 0; i < n; i++)); do
        local others=() j
        for ((j = 0; j < n; j++)); do [[ $j -ne $i ]] && others+=("${peers[j]}"); done
        configure "node$i" "$(IFS=,; echo "${others[*]}")" "$commit" "$propose" "$precommit" "$flush"
    done
    # The apps' build deadline goes with the network, as the timeouts derived from it do:
    # every app this script starts, and `env`, take it from here.
    echo "$((10#${BUILD_TIME_MS:-200}))" > "$DIR/build_time_ms"
    echo "$derived" > "$DIR/timeouts"
    say "wrote a $n-validator network to .devnet/bft ($derived)"
}

# The apps' window (RETAIN_BLOCKS), once `start` is given one, goes with the network as the
# build deadline does: it is kept in .devnet/bft/retain_blocks, and every app this script
# starts from then on (and `env`) takes it, unless RETAIN_BLOCKS is set for that start;
# apps already running keep theirs until they start again. RETAIN_BLOCKS=0 keeps every
# block again. Checked before anything is made, with the apps' own rule.
check_retain_blocks() {
    [[ -n "${RETAIN_BLOCKS:-}" ]] || return 0
    [[ "$RETAIN_BLOCKS" =~ ^[0-9]{1,15}$ ]] && { ((10#$RETAIN_BLOCKS == 0)) || ((10#$RETAIN_BLOCKS >= 128)); } ||
        { say "RETAIN_BLOCKS must be 0 (keep every block) or a number of blocks of at least 128, not '$RETAIN_BLOCKS'"; exit 2; }
}

keep_retain_blocks() {
    [[ -n "${RETAIN_BLOCKS:-}" ]] || return 0
    echo "$((10#$RETAIN_BLOCKS))" > "$DIR/retain_blocks"
}

node_env() {
    local name="$1" s; s="$(slot "$1")"
    cat <<ENV
export ETH_CLIENT_URL=http://127.0.0.1:$(engine_port "$name") JWT_SECRET=$DIR/jwt.hex GENESIS=$ROOT/genesis.json
export ABCI_ADDR=127.0.0.1:$((26658 + 10 * s)) STATE_DIR=$DIR/$name/app HEALTH_ADDR=127.0.0.1:$((9300 + s))
export COMETBFT_RPC=http://127.0.0.1:$((26657 + 10 * s))
ENV
    [[ -f "$DIR/build_time_ms" ]] && echo "export BUILD_TIME_MS=$(< "$DIR/build_time_ms")"
    [[ -z "${RETAIN_BLOCKS:-}" && -f "$DIR/retain_blocks" ]] && echo "export RETAIN_BLOCKS=$(< "$DIR/retain_blocks")"
    # A full node never proposes: it has nothing to build ahead for, whatever BUILD_AHEAD
    # the validators were given.
    [[ "$name" == full* ]] && echo "export BUILD_AHEAD=off"
    return 0
}

# Starts whichever of node NAME's app and CometBFT node is not running. An app run by
# hand (see `env`) is not ours to start: its ABCI port is taken, and only CometBFT starts.
# Node $1's app ended at start: its error (what it wrote to log $2 from byte $3 on), then
# the script ends.
app_exited() {
    say "$1's app exited:"
    last_error "$2" "$3" | sed 's/^/    /' >&2
    exit 1
}

start_node() {
    local name="$1" s; s="$(slot "$1")"
    local abci=$((26658 + 10 * s)) app_log="$DIR/$name/app.log" app_from=""
    if alive "$DIR/$name/app.pid"; then
        :
    elif port_taken "$abci"; then
        say "$name's app: 127.0.0.1:$abci is in use (an app run by hand?); starting only its CometBFT"
    else
        app_from=$(($(stat -c %s "$app_log" 2>/dev/null || echo 0) + 1))
        (eval "$(node_env "$name")"; nohup "$APP" >> "$app_log" 2>&1 < /dev/null & echo $! > "$DIR/$name/app.pid")
    fi
    # CometBFT gives up at once if its app is not listening. An app that exits (its checks
    # of its Geth at start: the JWT, the chain id) is said at once, with its error.
    local app_deadline=$((SECONDS + 60))
    while ((SECONDS < app_deadline)); do
        port_taken "$abci" && break
        [[ -n "$app_from" ]] && ! alive "$DIR/$name/app.pid" && app_exited "$name" "$app_log" "$app_from"
        sleep 0.1
    done
    port_taken "$abci" || { say "$name's app is not listening on 127.0.0.1:$abci; see .devnet/bft/$name/app.log"; exit 1; }
    if ! alive "$DIR/$name/cometbft.pid"; then
        local log="$DIR/$name/cometbft.log" from
        from=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
        nohup "$COMETBFT" start --home "$DIR/$name/cometbft" >> "$log" 2>&1 < /dev/null &
        echo $! > "$DIR/$name/cometbft.pid"
        # CometBFT opens its RPC once its handshake with the app is done, and exits if the
        # app refused it (InitChain's checks) or its config is wrong: say so at once, with
        # the errors it logged since it started. A long replay into the app, or the app
        # bringing its Geth back to its stored head, can take longer than the wait; the
        # start goes on then.
        local rpc=$((26657 + 10 * s)) deadline=$((SECONDS + 30)) errors
        while ((SECONDS < deadline)); do
            port_taken "$rpc" && break
            alive "$DIR/$name/cometbft.pid" || {
                # The app listens before it checks its Geth: one that stopped at those
                # checks after CometBFT connected takes CometBFT with it (give it two
                # seconds to end). Its own error says why.
                if [[ -n "$app_from" ]]; then
                    for _ in $(seq 1 20); do alive "$DIR/$name/app.pid" || break; sleep 0.1; done
                fi
                [[ -n "$app_from" ]] && ! alive "$DIR/$name/app.pid" && app_exited "$name" "$app_log" "$app_from"
                errors="$(tail -c "+$from" "$log" | grep -E '^(ERROR|E\[)' | tail -n 3 || true)"
                [[ -n "$errors" ]] || errors="$(tail -c "+$from" "$log" | tail -n 5)"
                say "$name's cometbft exited:"
                sed 's/^/    /' <<< "$errors" >&2
                say "see .devnet/bft/$name/cometbft.log and app.log"
                exit 1
            }
            # An app that stopped at those checks before CometBFT connected leaves CometBFT
            # dialling it for ever: stop CometBFT, and say the app's error.
            if [[ -n "$app_from" ]] && ! alive "$DIR/$name/app.pid"; then
                stop_pid "$DIR/$name/cometbft.pid" "$name's cometbft"
                app_exited "$name" "$app_log" "$app_from"
            fi
            sleep 0.1
        done
        port_taken "$rpc" ||
            say "$name's CometBFT RPC does not answer yet (its app may be replaying blocks, or bringing its Geth back to its stored head); see .devnet/bft/$name/cometbft.log"
    fi
    say "$name running: CometBFT RPC http://127.0.0.1:$((26657 + 10 * s)), app http://127.0.0.1:$((9300 + s))/status, Geth JSON-RPC http://127.0.0.1:$(geth_rpc_port "$name"), logs .devnet/bft/$name/"
}

stop_node() {
    stop_pid "$DIR/$1/cometbft.pid" "$1's cometbft"
    stop_pid "$DIR/$1/app.pid" "$1's app"
}

# SIGKILLs node NAME's CometBFT and app, and says which it killed: one that was not
# running is not reported killed (an app run by hand is not ours to kill, and says so).
kill_node() {
    local name="$1" part killed=() s; s="$(slot "$1")"
    local abci=$((26658 + 10 * s))
    for part in cometbft app; do
        if kill_pid "$DIR/$name/$part.pid" "$name's $part"; then killed+=("$part"); fi
    done
    local app="its app was not running"
    port_taken "$abci" && app="its app runs by hand (127.0.0.1:$abci), not ours to kill"
    case "${killed[*]}" in
        "cometbft app") say "killed $name's cometbft and app" ;;
        cometbft) say "killed $name's cometbft; $app" ;;
        app) say "killed $name's app; its cometbft was not running" ;;
        *) if [[ "$app" == *"by hand"* ]]; then
               say "$name's cometbft was not running, and $app: nothing killed"
           else
               say "$name was not running (neither its cometbft nor its app): nothing to kill"
           fi ;;
    esac
}

# Starts node NAME's Geth, peered with every other node's.
start_node_geth() {
    local name="$1" s; s="$(slot "$1")"
    start_geth "$DIR/$name/geth" "$(engine_port "$name")" "$(geth_rpc_port "$name")" $((6070 + s)) "$DIR/jwt.hex" \
        "$DIR/$name/geth.log" "$DIR/$name/geth.pid" $((30310 + s))
}
# Peers every node's Geth with every other's, once they are known to hold one chain (the
# one the network's genesis names, if it names one); returns 1, having said which Geth is
# wrong, if not (2 if it cannot read a Geth's chain).
peer_all() {
    local name peers=() datadirs=()
    for name in $(names); do
        peers+=("$(geth_rpc_port "$name"):$((30310 + $(slot "$name")))")
        datadirs+=("$(geth_rpc_port "$name"):${DIR#"$ROOT"/}/$name/geth")
    done
    same_chain "$(named_el_chain)" "${datadirs[@]}" || return $?
    peer_geths "${peers[@]}"
}

# The EL chain the network's genesis names, as chain_of says it ("chain id N, block 0
# 0x…, fork id 0x…, genesis forks 0x…, blob schedule 0x…"; without the blob schedule, the
# genesis forks, the fork id or the chain id, if it names none, as a network made before it
# did; empty if it names no chain).
named_el_chain() {
    local file="$DIR/node0/cometbft/config/genesis.json" hash id fork forks blobs
    hash="$(sed -nE 's/.*"el_genesis_hash": *"(0x[0-9a-f]{64})".*/\1/p' "$file")"
    id="$(sed -nE 's/.*"el_chain_id": *([0-9]+).*/\1/p' "$file")"
    fork="$(sed -nE 's/.*"el_fork_id": *"(0x[0-9a-f]{8})".*/\1/p' "$file")"
    forks="$(sed -nE 's/.*"el_genesis_forks": *"(0x[0-9a-f]{8})".*/\1/p' "$file")"
    blobs="$(sed -nE 's/.*"el_blob_schedule": *"(0x[0-9a-f]{8})".*/\1/p' "$file")"
    [[ -n "$hash" ]] || return 0
    [[ -n "$id" ]] || { echo "block 0 $hash"; return 0; }
    local chain="chain id $id, block 0 $hash" part
    # Each part as far as the first one it leaves out.
    for part in "fork id:$fork" "genesis forks:$forks" "blob schedule:$blobs"; do
        [[ -n "${part#*:}" ]] || break
        chain+=", ${part%%:*} ${part#*:}"
    done
    echo "$chain"
}

tools() {
    if [[ -z "${GETH_BIN:-}" || -z "${COMETBFT_BIN:-}" ]]; then "$ROOT/scripts/setup.sh" geth cometbft; fi
    install_cast
    if [[ -z "${APP_BIN:-}" ]]; then (cd "$ROOT" && cargo build --quiet -p cometbft-consensus); fi
}

# Starts an N-validator network (N from the argument; default 4, or the existing
# network's size), or whatever of it (and of its full nodes) is not running.
start() {
    local n="${1:-}" have; have="$(count)"
    if [[ -n "$n" ]]; then
        [[ "$n" =~ ^[0-9]+$ && "$n" -ge 1 && "$n" -le 10 ]] || { say "N must be a number from 1 to 10 (the port table has room for ten), not '$n'"; exit 2; }
        if [[ "$have" -gt 0 && "$n" -ne "$have" ]]; then
            say "a $have-validator network already exists in .devnet/bft; to make one of $n: scripts/bft.sh clean, then scripts/bft.sh start $n"
            exit 1
        fi
    fi
    [[ "$have" -gt 0 ]] && n="$have"
    n="${n:-4}"
    check_retain_blocks
    tools
    init "$n"
    keep_retain_blocks
    ensure_jwt "$DIR/jwt.hex"
    local name
    for name in $(names); do start_node_geth "$name"; done
    peer_all || { [[ $? -eq 1 ]] && chain_remedy; exit 1; }
    name_el_genesis
    for name in $(names); do start_node "$name"; done
}

# The network's genesis names its EL chain: app_state.el_genesis_hash, el_chain_id,
# el_fork_id, el_genesis_forks and el_blob_schedule, block 0, chain id, last fork id (which
# covers the fork times after block 0), forks at block 0 and the forks' blob parameters of
# node0's Geth (peer_all has checked that every Geth holds the same). Each app checks its
# own Geth against them at InitChain, so a node on a Geth of another chain stops there, saying so.
# Written into each validator's genesis while the network is new (node0's CometBFT has kept
# no state yet: CometBFT reads the file only at its first start); a full node copies
# node0's. A network made before this names less, and its apps check only what it names.
name_el_genesis() {
    local i file port hash id fork forks blobs named=0
    [[ -e "$DIR/node0/cometbft/data/state.db" ]] && return
    port="$(geth_rpc_port node0)"
    hash="$(block0_hash "$port")"
    id="$(chain_id_of "$port")"
    fork="$(fork_id_of "$port")"
    forks="$(genesis_forks_of "$port")"
    blobs="$(blob_schedule_of "$port")"
    [[ -n "$hash" && -n "$id" && -n "$fork" && -n "$forks" && -n "$blobs" ]] ||
        { say "node0's Geth gives no block 0, chain id, fork id (eth_config) or chain config (admin_nodeInfo) to name in the network's genesis"; exit 1; }
    for ((i = 0; i < $(count); i++)); do
        file="$DIR/node$i/cometbft/config/genesis.json"
        grep -q '"app_state"' "$file" && continue
        sed -i "s|^  \"app_hash\": \"\"$|  \"app_hash\": \"\",\n  \"app_state\": {\"el_genesis_hash\": \"$hash\", \"el_chain_id\": $id, \"el_fork_id\": \"$fork\", \"el_genesis_forks\": \"$forks\", \"el_blob_schedule\": \"$blobs\"}|" "$file"
        grep -q '"app_state"' "$file" || { say "cannot name the EL chain in $file: it has no empty app_hash line"; exit 1; }
        named=1
    done
    ((named == 0)) || say "the network's genesis names the EL chain: chain id $id, block 0 $hash, fork id $fork, genesis forks $forks, blob schedule $blobs"
}

# Adds full node fullK (the first K free): a CometBFT home from `cometbft init` (keys of
# its own, which the genesis does not name, so it never votes), the validators' genesis and
# timeouts, every validator as a persistent peer; and a Geth from genesis, peered with the
# others, so that transactions sent to it reach the proposers.
add_full() {
    local state_sync=false
    case "${1:-}" in
        "") ;;
        --state-sync) state_sync=true ;;
        *) say "unknown option '$1' for full (the only one is --state-sync)"; exit 2 ;;
    esac
    [[ -f "$DIR/node0/cometbft/config/genesis.json" ]] || { say "no network in .devnet/bft to follow: scripts/bft.sh start first"; exit 1; }
    local i
    for ((i = 0; i < $(count); i++)); do
        alive "$DIR/node$i/geth.pid" && alive "$DIR/node$i/cometbft.pid" ||
            { say "node$i is not running: a full node syncs from running validators (scripts/bft.sh start first)"; exit 1; }
    done
    local k=0
    while [[ -d "$DIR/full$k" ]]; do k=$((k + 1)); done
    ((k < 10)) || { say "ten full nodes at most (the port table has room for ten)"; exit 2; }
    tools
    local name="full$k" config="$DIR/node0/cometbft/config/config.toml" peers=()
    for ((i = 0; i < $(count); i++)); do
        peers+=("$("$COMETBFT" show-node-id --home "$DIR/node$i/cometbft")@127.0.0.1:$((26656 + 10 * i))")
    done
    config_value() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$config"; }
    # Written aside and moved into place whole, so that a failure leaves no half-made node
    # for `start` to find.
    local tmp="$DIR/.$name.new"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "$COMETBFT" init --home "$tmp/cometbft" > /dev/null
    cp "$DIR/node0/cometbft/config/genesis.json" "$tmp/cometbft/config/genesis.json"
    configure "$name" "$(IFS=,; echo "${peers[*]}")" "$(config_value timeout_commit)" "$(config_value timeout_propose)" \
        "$(config_value timeout_precommit)" "$(config_value flush_throttle_timeout)" "$tmp/cometbft/config/config.toml"
    $state_sync && state_sync_from_node0 "$tmp/cometbft/config/config.toml"
    mv "$tmp" "$DIR/$name"
    say "wrote full node $name to .devnet/bft/$name: it follows node0 … node$(( $(count) - 1 )) and never votes"
    start_node_geth "$name"
    peer_all || {
        local differ=$?
        stop_pid "$DIR/$name/geth.pid" "$name's geth"
        if ((differ == 1)); then
            rm -rf "${DIR:?}/$name"
            say "removed .devnet/bft/$name, just written: it cannot join while the Geths differ (if the Geth named is $name's, genesis.json has changed since the network was made; if another's, stop the network, delete that datadir, and start it again)"
        else
            say "stopped $name's Geth; .devnet/bft/$name is kept, with its log: scripts/bft.sh start tries it again, or delete it"
        fi
        exit 1
    }
    start_node "$name"
}

# Sets a new node's config ($1) to state sync: its light client trusts node0's latest
# header but one (height and hash from node0's RPC, as an operator would take them from a
# node they trust) and checks the snapshot against node0's and node1's RPC.
state_sync_from_node0() {
    local rpc="http://127.0.0.1:26657" height hash servers="127.0.0.1:26657,127.0.0.1:26667"
    (($(count) > 1)) || servers="127.0.0.1:26657,127.0.0.1:26657"
    height="$(curl -sf --max-time 5 "$rpc/status" | sed -nE 's/.*"latest_block_height":"([0-9]+)".*/\1/p')"
    [[ -n "$height" && "$height" -gt 1 ]] || { say "node0's RPC gives no height to trust: is the network making blocks?"; exit 1; }
    height=$((height - 1))
    hash="$(curl -sf --max-time 5 "$rpc/block?height=$height" | grep -o '"block_id":{"hash":"[0-9A-F]*"' | head -n 1 |
        sed -E 's/.*"hash":"([0-9A-F]*)"/\1/')"
    [[ ${#hash} -eq 64 ]] || { say "node0's RPC gives no hash for block $height"; exit 1; }
    sed -i -e '/^\[statesync\]/,/^\[/ {' \
        -e 's|^enable = .*|enable = true|' \
        -e "s|^rpc_servers = .*|rpc_servers = \"$servers\"|" \
        -e "s|^trust_height = .*|trust_height = $height|" \
        -e "s|^trust_hash = .*|trust_hash = \"$hash\"|" \
        -e '}' "$1"
    say "state sync: trusting node0's block $height ($hash)"
}

stop() {
    local name
    for name in $(names); do stop_node "$name"; done
    for name in $(names); do stop_pid "$DIR/$name/geth.pid" "$name's geth"; done
}

status() {
    local name s height
    for name in $(names); do
        s="$(slot "$name")"
        height="$(curl -sf --max-time 2 "http://127.0.0.1:$((26657 + 10 * s))/status" |
            sed -E 's/.*"latest_block_height":"([0-9]+)".*/\1/' || echo 'no answer')"
        echo "$name: height $height, app $(curl -sf --max-time 2 "http://127.0.0.1:$((9300 + s))/status" || echo 'no answer')"
    done
}

case "${1:-}" in
    start) start "${2:-}" ;;
    run) start "${2:-}"; trap 'stop; exit 0' TERM INT; while true; do sleep 1; done ;;
    full) add_full "${2:-}" ;;
    stop) stop ;;
    clean) stop; rm -rf "$DIR"; say "removed .devnet/bft" ;;
    status) status ;;
    timeouts) timeouts ;;
    env) name="$(checked_name "${2:-}")"; node_env "$name" ;;
    node)
        name="$(checked_name "${2:-}")"
        case "${3:-}" in
            start) start_node "$name" ;;
            stop) stop_node "$name" ;;
            kill) kill_node "$name" ;;
            *) echo "usage: $0 node NAME start|stop|kill" >&2; exit 2 ;;
        esac ;;
    *) echo "usage: $0 start [N]|run [N]|full [--state-sync]|stop|clean|status|timeouts|env NAME|node NAME start|stop|kill" >&2; exit 2 ;;
esac
