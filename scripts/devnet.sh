#!/usr/bin/env bash
# A local single-node Geth devnet for the tutorial, natively (no Docker).
#
#   scripts/devnet.sh start    init .devnet/ from genesis.json if needed, start geth
#   scripts/devnet.sh stop     stop geth (the chain stays in .devnet/)
#   scripts/devnet.sh clean    stop geth and delete .devnet/ (a fresh chain next start)
#   scripts/devnet.sh status   is it running, and at which block
#
# Engine API on 127.0.0.1:8551 (JWT secret .devnet/jwt.hex), JSON-RPC on 127.0.0.1:8545.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DEVNET="$ROOT/.devnet"
AUTH_PORT="${AUTH_PORT:-8551}"
HTTP_PORT="${HTTP_PORT:-8545}"

start() {
    ensure_jwt "$DEVNET/jwt.hex"
    start_geth "$DEVNET/data" "$AUTH_PORT" "$HTTP_PORT" "$DEVNET/jwt.hex" "$DEVNET/geth.log" "$DEVNET/geth.pid"
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
    clean) stop_pid "$DEVNET/geth.pid" geth; rm -rf "$DEVNET"; say "removed .devnet/" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|clean|status" >&2; exit 2 ;;
esac
