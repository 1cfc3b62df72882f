#!/usr/bin/env bash
# A local single-node Geth devnet for the tutorial, natively (no Docker).
#
#   scripts/devnet.sh start    init .devnet/ from genesis.json if needed, start geth
#   scripts/devnet.sh stop     stop geth (the chain stays in .devnet/)
#   scripts/devnet.sh clean    stop geth and delete its chain, secret and log, and Part 2's
#                              store (.devnet/single-node): a fresh chain next start. The
#                              cluster's and the validators' data stay (cluster.sh and
#                              bft.sh clean those).
#   scripts/devnet.sh status   is it running, and at which block
#
# Engine API on 127.0.0.1:8551 (JWT secret .devnet/jwt.hex), JSON-RPC on 127.0.0.1:8545,
# Geth's Prometheus metrics on 127.0.0.1:6060/debug/metrics/prometheus.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DEVNET="$ROOT/.devnet"
AUTH_PORT="${AUTH_PORT:-8551}"
HTTP_PORT="${HTTP_PORT:-8545}"
METRICS_PORT="${METRICS_PORT:-6060}"

start() {
    install_cast
    ensure_jwt "$DEVNET/jwt.hex"
    start_geth "$DEVNET/data" "$AUTH_PORT" "$HTTP_PORT" "$METRICS_PORT" "$DEVNET/jwt.hex" "$DEVNET/geth.log" "$DEVNET/geth.pid"
}

status() {
    if alive "$DEVNET/geth.pid"; then
        say "running (pid $(cat "$DEVNET/geth.pid")), $(rpc "$HTTP_PORT" eth_blockNumber || echo 'no answer')"
    else
        say "not running"; return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop_pid "$DEVNET/geth.pid" geth ;;
    clean)
        # Part 2's store is deleted too: never from under a process that holds it open (a
        # single-node started from anywhere with STATE_DIR pointing here).
        if [[ -d "$DEVNET/single-node" ]] && held="$(holders "$DEVNET/single-node")" && [[ -n "$held" ]]; then
            say "Part 2's store .devnet/single-node is open in process $(echo "$held" | tr '\n' ' ')(single-node?); stop it (Ctrl-C) before cleaning"
            exit 1
        fi
        stop_pid "$DEVNET/geth.pid" geth
        rm -rf "$DEVNET/data" "$DEVNET/jwt.hex" "$DEVNET/geth.log" "$DEVNET/single-node"
        say "removed the devnet's chain, secret and log, and Part 2's store" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|clean|status" >&2; exit 2 ;;
esac
