#!/usr/bin/env bash
# The soak (soak/): Part 3's cluster or Part 4's network under a steady load of transfers
# through every node, every link through toxiproxy, while random faults, several at a
# time, are injected and healed; then what the clients saw is checked against the chain.
# Installs what it needs and builds the binaries first: the test build (target/debug, the
# build the tests run), or the release build with SOAK_PROFILE=release.
#
#   scripts/soak.sh part3 --minutes 3 --seed 7                  a short one, as CI runs it
#   SOAK_PROFILE=release scripts/soak.sh part4 --minutes 30 --seed 1 --record
#                                                               the book's runs
#   scripts/soak.sh part4 --dry-run                             check the arguments only
#
# Exits 0 if every check passed, 1 if one failed (the reasons are printed last), 2 if the
# run itself could not go on. The history, verdict, summary, plot and every process's log
# are in .soak/PART-seedS/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ " $* " == *" --dry-run "* ]]; then
    exec cargo run --quiet --locked -p soak -- "$@"
fi
scripts/setup.sh geth cometbft toxiproxy services fonts
profile="${SOAK_PROFILE:-dev}"
case "$profile" in
    dev) dir=debug ;;
    release) dir=release ;;
    *) echo "soak.sh: SOAK_PROFILE is dev or release, not '$profile'" >&2; exit 2 ;;
esac
cargo build --profile "$profile" --locked --quiet -p soak -p member-nodes -p cometbft-consensus
# Up to four Geths run at once (Part 4's network). The soak runs the nodes' binaries from
# the directory it runs from.
GETH_TEST_SLOTS="${GETH_TEST_SLOTS:-4}" exec "target/$dir/soak" "$@"
