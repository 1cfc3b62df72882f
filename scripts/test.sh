#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, run every test
# against the real components, build the tutorial book (its listings are included from
# the crates, so a listing that no longer exists breaks the build), and run every command
# the README, the book and the crate roots show (scripts/check-docs.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Free disk, checked first: when the disk fills mid-run, Geth, PostgreSQL and CometBFT die
# on a failed write, and a dozen tests time out far from the cause. A fresh clone (target/,
# the tools, the tests' chains, the mutants' copy) took 18.3 GiB more at its peak than at
# its start (a clone of 2026-12-06, the disk's use sampled every 20 s); a tree built before
# needs room for the tests' chains and what it rebuilds.
NEED_FRESH_GIB=20
NEED_BUILT_GIB=8
need=$NEED_FRESH_GIB
[[ -d target/debug/deps ]] && need=$NEED_BUILT_GIB
free_kib="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
tmp_kib="$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')"
(( tmp_kib < free_kib )) && free_kib=$tmp_kib
if (( free_kib < need * 1024 * 1024 )); then
    echo "test.sh: $((free_kib / 1024 / 1024)) GiB free on the disk of $ROOT or ${TMPDIR:-/tmp}," \
        "and the suite needs about $need GiB there (it builds, and its tests write chains);" \
        "free some space and run it again" >&2
    exit 1
fi

scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked --quiet -- -D warnings
promtool check rules monitoring/rules.yml
promtool test rules monitoring/rules_test.yml
cargo test --workspace --locked
scripts/build-docs.sh
scripts/check-docs.sh
