#!/usr/bin/env bash
# The benchmarks (bench/): installs what they need, builds the release binaries, and runs
# one scenario or all of them. The report goes to docs/src/benchmarks.md.
#
#   scripts/bench.sh all
#   scripts/bench.sh throughput --repeats 5 --duration 60
#   scripts/bench.sh report          write the report again from the stored results
#   scripts/bench.sh all --dry-run   check the arguments and print the plan, run nothing
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ " $* " == *" --dry-run "* ]]; then
    exec cargo run --quiet --locked -p bench -- "$@"
fi
scripts/setup.sh geth cometbft services fonts
cargo build --release --locked --quiet -p bench -p engine-api -p single-node -p member-nodes -p cometbft-consensus
# Up to four Geths run at once (the BFT network).
GETH_TEST_SLOTS="${GETH_TEST_SLOTS:-4}" exec target/release/bench "$@"
