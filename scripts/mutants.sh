#!/usr/bin/env bash
# Mutation testing of the code that carries the safety guarantees: a change that breaks a
# guarantee must make a test fail.
#
#   scripts/mutants.sh safety [NAME...]   the hand-made safety mutants in mutants/*.patch
#                                         (those cargo-mutants cannot make: a reordered call,
#                                         a check taken out). Each is applied to a copy of the
#                                         work tree (target/mutants/), the tests its "Caught
#                                         by:" line names are run there, and every one of them
#                                         must fail. The work tree itself is never changed.
#   scripts/mutants.sh list [SCOPE...]    cargo-mutants' mutants of the safety modules
#   scripts/mutants.sh run [SCOPE...]     cargo-mutants over those modules, against the tests
#                                         that guard them (real Geth, Redis, PostgreSQL,
#                                         CometBFT: hours for all scopes on a 2-core machine);
#                                         results in mutants.out/SCOPE/
#   list/run ... --since REV              only the mutants on lines changed since commit REV
#                                         (cargo-mutants --in-diff): a scope run again after
#                                         its run on REV's code (its results replace the
#                                         scope's in mutants.out/SCOPE/). Other options go to
#                                         cargo-mutants as they are, written --option=VALUE
#                                         (such as --exclude-re=REGEX, matched against the
#                                         mutant's name, which begins with file:line:column).
#                                         One run at a time: runs share target/mutants/.
#
# Scopes: part2-round part2-store part3-election part3-block-log part3-sequencer
# part3-follower part4-proposal part4-app (all of them if none is named).
# cargo-mutants is installed pinned (CARGO_MUTANTS_VERSION in .env) into .tools/bin.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../.env
source .env
say() { echo "mutants: $*" >&2; }

# scope: package | what `cargo test` runs against its mutants | its files. The fast scopes
# run the tests that call the module directly (unit tests, and the `it` tests named after
# it); the loops run the package's whole suite.
declare -A SCOPES=(
    [part2-round]="single-node|--lib --test it|02-single-node/src/round.rs"
    [part2-store]="single-node|--lib --test it|02-single-node/src/store.rs"
    [part3-election]="member-nodes|--lib --test it -- election:: lease::|03-member-nodes/src/election.rs"
    [part3-block-log]="member-nodes|--lib --test it -- block_log::|03-member-nodes/src/block_log.rs 03-member-nodes/src/block_log/row.rs 03-member-nodes/src/block_log/listen.rs"
    [part3-sequencer]="member-nodes|--lib --test it|03-member-nodes/src/sequencer.rs 03-member-nodes/src/sequencer/recovery.rs"
    [part3-follower]="member-nodes|--lib --test it|03-member-nodes/src/follower.rs"
    [part4-proposal]="cometbft-consensus|--lib --test it -- proposal:: abci_input::|04-cometbft-consensus/src/proposal.rs 04-cometbft-consensus/src/app/proposals.rs"
    [part4-app]="cometbft-consensus|--lib --test it -- abci_input:: app::|04-cometbft-consensus/src/app.rs"
)
ORDER=(part2-round part2-store part3-election part3-block-log part3-sequencer part3-follower part4-proposal part4-app)

install() {
    if [[ -x .tools/bin/cargo-mutants ]] && [[ "$(.tools/bin/cargo-mutants mutants --version)" == "cargo-mutants $CARGO_MUTANTS_VERSION" ]]; then
        return
    fi
    say "installing cargo-mutants $CARGO_MUTANTS_VERSION into .tools/bin (a few minutes, once)"
    cargo install --locked --root .tools "cargo-mutants@$CARGO_MUTANTS_VERSION"
}

# The tests run in cargo-mutants' copy of the tree, which leaves out what .gitignore names:
# point them at the programs scripts/setup.sh installed here.
export GETH_BIN="$ROOT/.tools/bin/geth" COMETBFT_BIN="$ROOT/.tools/bin/cometbft" \
    CAST_BIN="$ROOT/.tools/bin/cast" TOXIPROXY_BIN="$ROOT/.tools/bin/toxiproxy-server"

mutants() { # mode scope
    local mode=$1 scope=$2 spec package tests files
    spec="${SCOPES[$scope]:-}"
    [[ -n "$spec" ]] || { say "no scope $scope (scopes: ${ORDER[*]})"; exit 2; }
    IFS='|' read -r package tests files <<<"$spec"
    local args=(--package "$package" --timeout 900 --build-timeout 900 --jobs 1)
    for file in $files; do args+=(--file "$file"); done
    if [[ -n "$SINCE" ]]; then
        local diff="$ROOT/target/mutants/$scope.since.diff"
        mkdir -p "$ROOT/target/mutants"
        # shellcheck disable=SC2086 # $files is a list of paths
        git diff --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ "$SINCE" -- $files >"$diff"
        args+=(--in-diff "$diff")
    fi
    args+=(${EXTRA[@]+"${EXTRA[@]}"})
    local listed
    listed="$(.tools/bin/cargo-mutants mutants "${args[@]}" --list)" ||
        { say "$scope: cargo-mutants cannot list the mutants (above)"; exit 1; }
    if [[ "$mode" == list ]]; then
        [[ -z "$listed" ]] || printf '%s\n' "$listed"
        return
    fi
    # With no mutant to run, cargo-mutants writes no results: say so, and leave the last
    # run's results alone.
    if [[ -z "$listed" ]]; then
        say "$scope: no mutants${SINCE:+ on the lines changed since $SINCE}"
        return 0
    fi
    say "$scope: cargo-mutants over $files, tests: cargo test -p $package $tests"
    mkdir -p "mutants.out/$scope"
    # cargo-mutants copies the tree it is given before each mutant; give it a snapshot of
    # the work tree as it is now, so that a run of hours is not changed by edits meanwhile.
    # Exits 2 when a mutant is missed and 3 when one timed out; the counts below say so. Any
    # other failure (4: the tests fail with no mutant) is the run's. Its copies of the
    # tree build into a target dir of their own, kept between runs (see seed_target).
    fresh_copy "$MUTANTS_COPY"
    MADE_COPY=1
    seed_target "$MUTANTS_TARGET" || { say "cannot seed $MUTANTS_TARGET from target/debug"; exit 1; }
    # A mutant is caught at its first failing test (TEST_FAIL_FAST, see the harness's
    # process.rs): the rest of the suite would only wait out its timeouts. The harness removes
    # its servers' temporary directories as it ends the binary; whatever else a test made
    # goes to a directory of its own, removed after the run.
    rm -rf "$MUTANTS_TMP" && mkdir -p "$MUTANTS_TMP"
    local started="$MUTANTS_TMP.started"
    touch "$started"
    local status=0
    # shellcheck disable=SC2086
    TEST_FAIL_FAST=1 TMPDIR="$MUTANTS_TMP" CARGO_TARGET_DIR="$MUTANTS_TARGET" \
        .tools/bin/cargo-mutants mutants "${args[@]}" --dir "$MUTANTS_COPY" \
        --output "$ROOT/mutants.out/$scope" -- $tests || status=$?
    rm -rf "$MUTANTS_TMP"
    local kind out="mutants.out/$scope/mutants.out"
    if ((status != 0 && status != 2 && status != 3)); then
        say "$scope: cargo-mutants failed (exit $status; 4: the tests fail with no mutant), see $out/debug.log"
        exit 1
    fi
    if [[ ! "$out/outcomes.json" -nt "$started" ]]; then
        say "$scope: cargo-mutants wrote no outcomes for this run (see $out/debug.log)"
        exit 1
    fi
    rm -f "$started"
    for kind in caught missed timeout unviable; do
        printf '%s %s: %s\n' "$scope" "$kind" "$(wc -l <"$out/$kind.txt")"
    done
}

# Where the hand-made mutants are built and tested: a git worktree at a fixed path (so
# cargo rebuilds only what a patch changes) with a target dir of its own, so that a mutated
# binary is never left where `cargo run` in the work tree would take it for up to date.
# cargo-mutants' copies build into another.
COPY="$ROOT/target/mutants/tree"
COPY_TARGET="$ROOT/target/mutants/target"
MUTANTS_COPY="$ROOT/target/mutants/run-tree"
MUTANTS_TARGET="$ROOT/target/mutants/cargo-mutants"
MUTANTS_TMP="$ROOT/target/mutants/tmp"

# The first time, what is already built for the work tree is hard-linked into target dir
# $1 instead of being built again. Only what the compiler writes anew may be linked: rustc
# replaces an rlib, an rmeta or a binary it rebuilds, and in its incremental cache it
# deletes a file before writing it again. Cargo rewrites its fingerprints, the dep-info
# files, the build scripts' outputs and its lock file in place, so those are copied
# (first, so that a build in the work tree meanwhile can only make the copy rebuild):
# linked, a build in the copy rewrote the work tree's, and the work tree's cargo then took
# an artifact built before a source change for fresh (seen on 2026-12-07: a test failed on
# code that passed once rebuilt). A target dir seeded before this was done is made again.
seed_target() {
    local target=$1 built="$ROOT/target/debug" marker="$1/.seeded-with-own-fingerprints" entry
    if [[ -d "$target" && ! -f "$marker" ]]; then
        say "$target was seeded sharing the work tree's fingerprints: made again; if a test in the work tree" \
            "fails on code that looks right, touch the files it was changed in (or cargo clean -p the package)"
        rm -rf "$target"
    fi
    [[ -d "$target" ]] && return
    mkdir -p "$target/debug"
    if [[ -d "$built" ]]; then
        for entry in .fingerprint build; do
            if [[ -d "$built/$entry" ]]; then cp -a "$built/$entry" "$target/debug/" || return 1; fi
        done
        for entry in "$built"/* "$built"/.[!.]*; do
            case "$(basename "$entry")" in
                .fingerprint | build | .cargo-lock | '*' | '.[!.]*') ;;
                *) cp -al "$entry" "$target/debug/" || return 1 ;;
            esac
        done
        find "$target/debug" -path "$target/debug/incremental" -prune -o -type f -name '*.d' \
            -exec sh -c 'for f; do cp -p "$f" "$f.own" && mv -f "$f.own" "$f"; done' sh {} + || return 1
    fi
    touch "$marker"
}

# Makes a git worktree at $1 of the work tree as it is: uncommitted changes and new files
# included, ignored files left out. The snapshot is a commit made from a scratch index, so
# neither the work tree, nor the index, nor the branch changes.
fresh_copy() {
    local copy="$1" index tree commit
    git worktree remove --force "$copy" 2>/dev/null || rm -rf "$copy"
    git worktree prune
    index="$(mktemp)"
    cp "$(git rev-parse --git-dir)/index" "$index"
    GIT_INDEX_FILE="$index" git add -A
    tree="$(GIT_INDEX_FILE="$index" git write-tree)"
    rm -f "$index"
    # (A commit object needs a name; CI may have none configured.)
    commit="$(GIT_AUTHOR_NAME=mutants GIT_AUTHOR_EMAIL=mutants@localhost GIT_COMMITTER_NAME=mutants \
        GIT_COMMITTER_EMAIL=mutants@localhost git commit-tree "$tree" -p HEAD -m "mutants: the work tree as it was")"
    git worktree add --quiet --detach "$copy" "$commit"
}

# Applies one hand-made mutant to the copy, runs the tests it names there, and checks that
# every one of them failed. The tests' output is kept in mutants.out/safety/NAME.log.
safety() { # patch
    local patch=$1 name caught dir package log failed=0
    name="$(basename "$patch" .patch)"
    caught="$(sed -n 's/^Caught by: //p' "$patch")"
    [[ -n "$caught" ]] || { say "$name: no 'Caught by:' line"; exit 2; }
    dir="$(sed -n 's|^+++ b/||p' "$patch" | head -n 1)"
    dir="${dir%%/*}"
    package="$(sed -n 's/^name = "\(.*\)"/\1/p' "$dir/Cargo.toml" | head -n 1)"
    fresh_copy "$COPY"
    seed_target "$COPY_TARGET" || { say "cannot seed $COPY_TARGET from target/debug"; return 1; }
    # (`set -e` does not stop a function called as `safety ... || status=1`: check by hand.)
    git -C "$COPY" apply "$ROOT/$patch" || { say "$name: the patch does not apply to the work tree; make it again"; return 1; }
    say "$name: $(head -n 1 "$patch")"
    mkdir -p mutants.out/safety
    log="$ROOT/mutants.out/safety/$name.log"
    (cd "$COPY" && CARGO_TARGET_DIR="$COPY_TARGET" cargo test --locked -p "$package" --test it --no-run --quiet)
    # shellcheck disable=SC2086
    (cd "$COPY" && CARGO_TARGET_DIR="$COPY_TARGET" cargo test --locked -p "$package" --test it -- --exact $caught) \
        >"$log" 2>&1 || true
    for test in $caught; do
        if grep -q "^test $test \.\.\. FAILED" "$log"; then
            say "$name: caught by $test: $(grep -A1 -m1 "^thread '$test' .*panicked" "$log" | tail -n 1)"
        else
            say "$name: NOT caught by $test (see $log)"
            failed=1
        fi
    done
    return $failed
}

command="${1:-}"
shift || true
case "$command" in
    safety)
        status=0
        if [[ $# -eq 0 ]]; then set -- mutants/*.patch; fi
        for patch in "$@"; do
            [[ -f "$patch" ]] || patch="mutants/$patch.patch"
            safety "$patch" || status=1
        done
        git worktree remove --force "$COPY"
        exit $status
        ;;
    list | run)
        scopes=() SINCE="" EXTRA=() MADE_COPY=""
        while [[ $# -gt 0 ]]; do
            case "$1" in
                --since | --since=*)
                    if [[ "$1" == --since ]]; then
                        [[ $# -ge 2 ]] || { say "--since needs a commit"; exit 2; }
                        rev=$2 && shift 2
                    else
                        rev=${1#--since=} && shift
                    fi
                    SINCE="$(git rev-parse --verify --quiet "$rev^{commit}")" || { say "--since: no commit $rev"; exit 2; }
                    ;;
                --*) EXTRA+=("$1") && shift ;;
                *) scopes+=("$1") && shift ;;
            esac
        done
        if [[ ${#scopes[@]} -eq 0 ]]; then scopes=("${ORDER[@]}"); fi
        for scope in "${scopes[@]}"; do
            [[ -n "${SCOPES[$scope]:-}" ]] || { say "no scope $scope (scopes: ${ORDER[*]})"; exit 2; }
        done
        install
        for scope in "${scopes[@]}"; do mutants "$command" "$scope"; done
        # Only if this run made it: a `list`, or a run with nothing to run, leaves the copy
        # of a run going on beside it alone.
        if [[ -n "$MADE_COPY" ]]; then git worktree remove --force "$MUTANTS_COPY"; fi
        ;;
    *)
        sed -n '2,27p' "$0" >&2
        exit 2
        ;;
esac
