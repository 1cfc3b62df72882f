#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, run every test
# against the real components, build the tutorial book (its listings are included from
# the crates, so a listing that no longer exists breaks the build), and run every command
# the README, the book and the crate roots show (scripts/check-docs.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked --quiet -- -D warnings
promtool check rules monitoring/rules.yml
promtool test rules monitoring/rules_test.yml
cargo test --workspace --locked
scripts/build-docs.sh
scripts/check-docs.sh
