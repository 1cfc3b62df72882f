#!/usr/bin/env bash
# A local single-node Geth devnet for the tutorial, natively (no Docker).
#
#   scripts/devnet.sh start    init .devnet/ from genesis.json if needed, start geth
#   scripts/devnet.sh stop     stop geth (the chain stays in .devnet/)
#   scripts/devnet.sh clean    stop geth and delete .devnet/ (a fresh chain next start)
#   scripts/devnet.sh status   is it running, and at which block
#
# Engine API on 127.0.0.1:8551 (JWT secret .devnet/jwt.hex), JSON-RPC on 127.0.0.1:8545.
# The flags are the ones the test harness uses (common/src/harness.rs, GETH_FLAGS).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVNET="$ROOT/.devnet"
AUTH_PORT="${AUTH_PORT:-8551}"
HTTP_PORT="${HTTP_PORT:-8545}"
GETH="${GETH_BIN:-$ROOT/.tools/bin/geth}"

say() { echo "devnet: $*" >&2; }

# Alive and not a zombie: a killed Geth whose parent is gone may linger unreaped, and
# `kill -0` still succeeds on it.
running() {
    [[ -f "$DEVNET/geth.pid" ]] || return 1
    local state
    state="$(ps -o stat= -p "$(cat "$DEVNET/geth.pid")" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

rpc() {
    curl -sf --max-time 2 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":[]}" "http://127.0.0.1:$HTTP_PORT"
}

start() {
    if running; then say "already running (pid $(cat "$DEVNET/geth.pid"))"; return; fi
    [[ -n "${GETH_BIN:-}" ]] || "$ROOT/scripts/setup.sh" geth
    mkdir -p "$DEVNET"
    if [[ ! -s "$DEVNET/jwt.hex" ]]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEVNET/jwt.hex"
        say "wrote a new JWT secret to .devnet/jwt.hex"
    fi
    if [[ ! -d "$DEVNET/data/geth/chaindata" ]]; then
        "$GETH" init --datadir "$DEVNET/data" --state.scheme=hash "$ROOT/genesis.json" >> "$DEVNET/geth.log" 2>&1
        say "initialised .devnet/data from genesis.json"
    fi
    nohup "$GETH" --datadir "$DEVNET/data" \
        --syncmode=full --state.scheme=hash --gcmode=archive --nodiscover --maxpeers=0 \
        --authrpc.addr=127.0.0.1 --authrpc.port="$AUTH_PORT" --authrpc.jwtsecret="$DEVNET/jwt.hex" \
        --http --http.addr=127.0.0.1 --http.port="$HTTP_PORT" --http.api=eth,net,web3,txpool \
        >> "$DEVNET/geth.log" 2>&1 < /dev/null &
    echo $! > "$DEVNET/geth.pid"
    for _ in $(seq 1 600); do
        if rpc eth_chainId >/dev/null; then
            say "geth running (pid $(cat "$DEVNET/geth.pid")): Engine API http://127.0.0.1:$AUTH_PORT, JSON-RPC http://127.0.0.1:$HTTP_PORT, log .devnet/geth.log"
            return
        fi
        running || { say "geth exited; the end of .devnet/geth.log:"; tail -n 20 "$DEVNET/geth.log" >&2; exit 1; }
        sleep 0.1
    done
    say "geth did not answer within 60 s; see .devnet/geth.log"
    exit 1
}

stop() {
    if ! running; then say "not running"; rm -f "$DEVNET/geth.pid"; return; fi
    local pid; pid="$(cat "$DEVNET/geth.pid")"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do running || break; sleep 0.1; done
    running && { say "geth ignored SIGTERM for 30 s; killing it"; kill -KILL "$pid"; }
    rm -f "$DEVNET/geth.pid"
    say "stopped"
}

status() {
    if running; then
        say "running (pid $(cat "$DEVNET/geth.pid")), $(rpc eth_blockNumber || echo 'no answer')"
    else
        say "not running"; return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    clean) stop; rm -rf "$DEVNET"; say "removed .devnet/" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|clean|status" >&2; exit 2 ;;
esac
