#!/usr/bin/env bash
# The soak (soak/): Part 3's cluster or Part 4's network under a steady load of transfers
# through every node, every link through toxiproxy, while random faults, several at a
# time, are injected and healed; then what the clients saw is checked against the chain.
# Installs what it needs and builds the release binaries first.
#
#   scripts/soak.sh part3 --minutes 30 --seed 1            the run the book reports
#   scripts/soak.sh part4 --minutes 3 --seed 7             a short one
#   scripts/soak.sh part3 --minutes 30 --seed 1 --record   also write the book's figures
#
# Exits 0 if every check passed, 1 if one failed (the reasons are printed last), 2 if the
# run itself could not go on. The history, verdict, summary and plot are in
# .soak/PART-seedS/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh geth cometbft toxiproxy services fonts
cargo build --release --locked --quiet -p soak -p member-nodes -p cometbft-consensus
# Up to four Geths run at once (Part 4's network).
GETH_TEST_SLOTS="${GETH_TEST_SLOTS:-4}" exec target/release/soak "$@"
