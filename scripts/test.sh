#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what is missing, run every test
# against the real components, build the tutorial book (its listings are included from
# the crates, so a listing that no longer exists breaks the build), and run every command
# the README, the book and the crate roots show (scripts/check-docs.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Free disk, checked first: when the disk fills mid-run, Geth, PostgreSQL and CometBFT die
# on a failed write, and a dozen tests time out far from the cause. Measured on 2026-12-06,
# the disk's use sampled every 20 s: a fresh clone (the build, the tools, the mutants' copy,
# the tests' chains) took 18.3 GiB more at its peak than at its start; a tree built before,
# with `common` changed (so everything rebuilt), 8.4 GiB; the tests' chains, in TMPDIR, 4.3
# GiB of that. What is built already is taken off a fresh clone's need, down to a rebuild's.
# TMPDIR is checked on its own where it is another disk.
NEED_FRESH_GIB=20
NEED_BUILT_GIB=10
NEED_TMP_GIB=6
kib_free() { { df -Pk "$1" 2>/dev/null || true; } | awk 'NR == 2 { print $4 }'; }
gib() { echo "$(($1 / 1024 / 1024)) GiB"; }
built_kib="$({ du -sk "${CARGO_TARGET_DIR:-target}" .tools 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }')"
need_kib=$((NEED_FRESH_GIB * 1024 * 1024 - built_kib))
((need_kib > NEED_BUILT_GIB * 1024 * 1024)) || need_kib=$((NEED_BUILT_GIB * 1024 * 1024))
free_kib="$(kib_free "$ROOT")"
if [[ -n "$free_kib" ]] && ((free_kib < need_kib)); then
    echo "test.sh: $(gib "$free_kib") free on the disk of $ROOT, and the build, the tools and the" \
        "tests need about $(gib "$need_kib") more there; free some space and run it again" >&2
    exit 1
fi
tmp="${TMPDIR:-/tmp}"
if [[ "$(stat -c %d "$tmp" 2>/dev/null)" != "$(stat -c %d "$ROOT")" ]]; then
    free_kib="$(kib_free "$tmp")"
    if [[ -n "$free_kib" ]] && ((free_kib < NEED_TMP_GIB * 1024 * 1024)); then
        echo "test.sh: $(gib "$free_kib") free in $tmp (TMPDIR), where the tests write their chains:" \
            "they need about $NEED_TMP_GIB GiB; free some, or set TMPDIR to a directory on a larger disk" >&2
        exit 1
    fi
fi

scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked --quiet -- -D warnings
promtool check rules monitoring/rules.yml
promtool test rules monitoring/rules_test.yml
cargo test --workspace --locked
scripts/build-docs.sh
scripts/check-docs.sh
