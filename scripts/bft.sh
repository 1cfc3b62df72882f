#!/usr/bin/env bash
# Part 4's validator network on this machine, natively (no Docker): N validators (default
# 4), each with its own Geth (peered with the others, for transaction gossip), its own
# cometbft-consensus app, and its own CometBFT node, all from `cometbft testnet`.
#
#   scripts/bft.sh start [N]          start whatever is not running (builds the app); N
#                                     validators (1 to 10, default 4) for a new network
#   scripts/bft.sh status             each validator's height and app status
#   scripts/bft.sh node nodeI start|stop|kill
#                                     validator I's CometBFT and app (kill = SIGKILL, and
#                                     says which it killed: if neither was running, it says
#                                     so and exits 0, like stop); start starts what is not
#                                     running (an app run by hand stays)
#   scripts/bft.sh timeouts           the CometBFT timeouts a new network gets, for a block
#                                     every BLOCK_TIME_MS (default 1000) and the apps'
#                                     BUILD_TIME_MS (default 200)
#   scripts/bft.sh env nodeI          the environment to run validator I's app by hand:
#                                     eval "$(scripts/bft.sh env node0)"; cargo run -p cometbft-consensus
#   scripts/bft.sh run [N]            start, then wait in the foreground until SIGTERM (Docker)
#   scripts/bft.sh stop               stop everything (the chains stay in .devnet/bft)
#   scripts/bft.sh clean              stop everything and delete .devnet/bft
#
# Ports (all on 127.0.0.1), for validator I: CometBFT P2P 26656+10I, RPC 26657+10I, the
# app's ABCI 26658+10I, CometBFT's Prometheus metrics 26660+10I; Geth's Engine API 8650+I,
# JSON-RPC 8660+I, metrics 6070+I, devp2p 30310+I; the app's /health, /ready, /metrics and
# /status 9300+I. Data and logs in .devnet/bft/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.devnet/bft"
COMETBFT="${COMETBFT_BIN:-$ROOT/.tools/bin/cometbft}"
APP="${APP_BIN:-$ROOT/target/debug/cometbft-consensus}"

count() { [[ -d "$DIR" ]] && compgen -G "$DIR/node*" | wc -l || echo 0; }
index_of() {
    [[ "$1" =~ ^node([0-9]+)$ && -d "$DIR/$1" ]] || { say "no validator '$1' (node0 … node$(( $(count) - 1 )))"; exit 2; }
    echo "${BASH_REMATCH[1]}"
}
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The CometBFT timeouts for a block every BLOCK_TIME_MS (default 1000), as the test harness
# derives them (common/src/harness/cometbft.rs, CometTimeouts::for_block_time): the commit
# wait is the block time less one round (ROUND_ESTIMATE_MS, measured on a small machine
# with blocks built ahead); connections flush every 10 ms (CometBFT's 100 ms default suits
# links across the world); and a proposal is waited for half the block time, but at least a
# round more than the apps' build deadline (BUILD_TIME_MS, which they read too; default
# 200) or a proposer's hold for the clock (up to a second less the commit wait); a round
# that decided nothing waits half a round for its last precommits. The Part 4 chapter
# explains them all.
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

# cometbft testnet, then each node's ports moved to its own (see the table above), and the
# timeouts for BLOCK_TIME_MS.
init() {
    local n="$1"
    [[ -d "$DIR/node0/cometbft/config" ]] && return
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
        sed -i \
            -e "s|^proxy_app = .*|proxy_app = \"tcp://127.0.0.1:$((26658 + 10 * i))\"|" \
            -e "s|^laddr = \"tcp://127.0.0.1:26657\"|laddr = \"tcp://127.0.0.1:$((26657 + 10 * i))\"|" \
            -e "s|^laddr = \"tcp://0.0.0.0:26656\"|laddr = \"tcp://127.0.0.1:$((26656 + 10 * i))\"|" \
            -e "s|^persistent_peers = .*|persistent_peers = \"$(IFS=,; echo "${others[*]}")\"|" \
            -e "s|^timeout_commit = .*|timeout_commit = \"$commit\"|" \
            -e "s|^timeout_propose = .*|timeout_propose = \"$propose\"|" \
            -e "s|^timeout_precommit = .*|timeout_precommit = \"$precommit\"|" \
            -e "s|^flush_throttle_timeout = .*|flush_throttle_timeout = \"$flush\"|" \
            -e "s|^prometheus = .*|prometheus = true|" \
            -e "s|^prometheus_listen_addr = .*|prometheus_listen_addr = \"127.0.0.1:$((26660 + 10 * i))\"|" \
            "$DIR/node$i/cometbft/config/config.toml"
    done
    say "wrote a $n-validator network to .devnet/bft ($derived)"
}

node_env() {
    local i="$1"
    cat <<ENV
export ETH_CLIENT_URL=http://127.0.0.1:$((8650 + i)) JWT_SECRET=$DIR/jwt.hex GENESIS=$ROOT/genesis.json
export ABCI_ADDR=127.0.0.1:$((26658 + 10 * i)) STATE_DIR=$DIR/node$i/app HEALTH_ADDR=127.0.0.1:$((9300 + i))
export COMETBFT_RPC=http://127.0.0.1:$((26657 + 10 * i))
ENV
}

# Starts whichever of validator I's app and CometBFT node is not running. An app run by
# hand (see `env`) is not ours to start: its ABCI port is taken, and only CometBFT starts.
start_validator() {
    local i="$1"
    local abci=$((26658 + 10 * i))
    if alive "$DIR/node$i/app.pid"; then
        :
    elif port_taken "$abci"; then
        say "node$i's app: 127.0.0.1:$abci is in use (an app run by hand?); starting only its CometBFT"
    else
        (eval "$(node_env "$i")"; nohup "$APP" >> "$DIR/node$i/app.log" 2>&1 < /dev/null & echo $! > "$DIR/node$i/app.pid")
    fi
    # CometBFT gives up at once if its app is not listening.
    for _ in $(seq 1 600); do port_taken "$abci" && break; sleep 0.1; done
    port_taken "$abci" || { say "node$i's app is not listening on 127.0.0.1:$abci; see .devnet/bft/node$i/app.log"; exit 1; }
    if ! alive "$DIR/node$i/cometbft.pid"; then
        nohup "$COMETBFT" start --home "$DIR/node$i/cometbft" >> "$DIR/node$i/cometbft.log" 2>&1 < /dev/null &
        echo $! > "$DIR/node$i/cometbft.pid"
    fi
    say "node$i running: CometBFT RPC http://127.0.0.1:$((26657 + 10 * i)), app http://127.0.0.1:$((9300 + i))/status, Geth JSON-RPC http://127.0.0.1:$((8660 + i)), logs .devnet/bft/node$i/"
}

stop_validator() {
    stop_pid "$DIR/node$1/cometbft.pid" "node$1's cometbft"
    stop_pid "$DIR/node$1/app.pid" "node$1's app"
}

# SIGKILLs validator I's CometBFT and app, and says which it killed: one that was not
# running is not reported killed (an app run by hand is not ours to kill, and says so).
kill_validator() {
    local i="$1" part killed=()
    local abci=$((26658 + 10 * i))
    for part in cometbft app; do
        if kill_pid "$DIR/node$i/$part.pid" "node$i's $part"; then killed+=("$part"); fi
    done
    local app="its app was not running"
    port_taken "$abci" && app="its app runs by hand (127.0.0.1:$abci), not ours to kill"
    case "${killed[*]}" in
        "cometbft app") say "killed node$i's cometbft and app" ;;
        cometbft) say "killed node$i's cometbft; $app" ;;
        app) say "killed node$i's app; its cometbft was not running" ;;
        *) if [[ "$app" == *"by hand"* ]]; then
               say "node$i's cometbft was not running, and $app: nothing killed"
           else
               say "node$i was not running (neither its cometbft nor its app): nothing to kill"
           fi ;;
    esac
}

# Starts an N-validator network (N from the argument; default 4, or the existing
# network's size), or whatever of it is not running.
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
    if [[ -z "${GETH_BIN:-}" || -z "${COMETBFT_BIN:-}" ]]; then "$ROOT/scripts/setup.sh" geth cometbft; fi
    install_cast
    if [[ -z "${APP_BIN:-}" ]]; then (cd "$ROOT" && cargo build --quiet -p cometbft-consensus); fi
    init "$n"
    ensure_jwt "$DIR/jwt.hex"
    local i
    local peers=()
    for ((i = 0; i < n; i++)); do
        start_geth "$DIR/node$i/geth" $((8650 + i)) $((8660 + i)) $((6070 + i)) "$DIR/jwt.hex" "$DIR/node$i/geth.log" "$DIR/node$i/geth.pid" $((30310 + i))
        peers+=("$((8660 + i)):$((30310 + i))")
    done
    peer_geths "${peers[@]}"
    for ((i = 0; i < n; i++)); do start_validator "$i"; done
}

stop() {
    local i
    for ((i = 0; i < $(count); i++)); do stop_validator "$i"; done
    for ((i = 0; i < $(count); i++)); do stop_pid "$DIR/node$i/geth.pid" "node$i's geth"; done
}

status() {
    local i height
    for ((i = 0; i < $(count); i++)); do
        height="$(curl -sf --max-time 2 "http://127.0.0.1:$((26657 + 10 * i))/status" |
            sed -E 's/.*"latest_block_height":"([0-9]+)".*/\1/' || echo 'no answer')"
        echo "node$i: height $height, app $(curl -sf --max-time 2 "http://127.0.0.1:$((9300 + i))/status" || echo 'no answer')"
    done
}

case "${1:-}" in
    start) start "${2:-}" ;;
    run) start "${2:-}"; trap 'stop; exit 0' TERM INT; while true; do sleep 1; done ;;
    stop) stop ;;
    clean) stop; rm -rf "$DIR"; say "removed .devnet/bft" ;;
    status) status ;;
    timeouts) timeouts ;;
    env) node_env "$(index_of "${2:-}")" ;;
    node)
        i="$(index_of "${2:-}")"
        case "${3:-}" in
            start) start_validator "$i" ;;
            stop) stop_validator "$i" ;;
            kill) kill_validator "$i" ;;
            *) echo "usage: $0 node nodeI start|stop|kill" >&2; exit 2 ;;
        esac ;;
    *) echo "usage: $0 start [N]|run [N]|stop|clean|status|timeouts|env nodeI|node nodeI start|stop|kill" >&2; exit 2 ;;
esac
