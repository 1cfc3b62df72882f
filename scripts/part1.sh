#!/usr/bin/env bash
# Part 1 on a fresh machine: install the pinned Geth, start the local devnet, and produce
# blocks with the engine-api binary. Extra arguments go to it (for example --blocks 20).
# The devnet keeps running afterwards; stop it with scripts/devnet.sh stop.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/devnet.sh start
cargo run --quiet -p engine-api -- "$@"
