#!/usr/bin/env bash
# What each step adds to the step it builds on, file by file: what it adds, what it
# changes, and what it takes unchanged from the step below (as a library, not a copy).
#
#   scripts/diff-steps.sh           a table per step: each file new, changed (lines added
#                                   and removed), the same, or not here (used from the step
#                                   below's library, or not needed)
#   scripts/diff-steps.sh 03        the table for one step: 03-member-nodes against 02-single-node
#   scripts/diff-steps.sh diff 03   the step's lesson as one unified diff: its table, then
#                                   every changed file as a diff and every new file in full
#                                   (as added lines). A file of the step below that is not
#                                   here is listed in the table, never shown as deleted:
#                                   the step uses it from the library.
#
# Plain `diff -ru BELOW/src STEP/src` would show a new file as one "Only in" line, and a
# module the step takes from the library as if the step had dropped it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Each step and the step it builds on. Part 4 builds on Part 2: CometBFT takes the place of
# Part 3's lease and shared log, and each validator keeps Part 2's store.
STEPS=(
    "02-single-node 01-engine-api"
    "03-member-nodes 02-single-node"
    "04-cometbft-consensus 02-single-node"
)

usage() {
    echo "usage: scripts/diff-steps.sh [02|03|04] | diff 02|03|04" >&2
    exit 2
}

# Lines added and removed between two files, as "ADDED REMOVED".
changed_lines() {
    diff -u "$1" "$2" | awk '
        /^\+\+\+ |^--- / { next }
        /^\+/ { added++ } /^-/ { removed++ }
        END { printf "%d %d\n", added, removed }'
}

# The table for STEP against BELOW.
report() {
    local step="$1" below="$2" file added removed lines
    local new=0 changed=0 same=0 reused=0 total_added=0 total_removed=0
    echo "$step against $below:  scripts/diff-steps.sh diff ${step%%-*}"
    printf '  %-24s %-30s %8s %8s\n' file status added removed
    while IFS= read -r file; do
        if [[ -f "$below/src/$file" && -f "$step/src/$file" ]]; then
            read -r added removed < <(changed_lines "$below/src/$file" "$step/src/$file")
            if ((added + removed == 0)); then
                same=$((same + 1))
                printf '  %-24s %-30s %8s %8s\n' "$file" "same" "" ""
            else
                changed=$((changed + 1))
                printf '  %-24s %-30s %8s %8s\n' "$file" "changed" "+$added" "-$removed"
            fi
        elif [[ -f "$step/src/$file" ]]; then
            lines="$(wc -l < "$step/src/$file")"
            added=$lines removed=0
            new=$((new + 1))
            printf '  %-24s %-30s %8s %8s\n' "$file" "new" "+$lines" ""
        else
            added=0 removed=0
            reused=$((reused + 1))
            printf '  %-24s %-30s %8s %8s\n' "$file" "not here: $(reuse_note "$step" "$file")" "" ""
        fi
        total_added=$((total_added + added))
        total_removed=$((total_removed + removed))
    done < <({ (cd "$below/src" && find . -name '*.rs'); (cd "$step/src" && find . -name '*.rs'); } |
        sed 's|^\./||' | sort -u)
    printf '  %d new, %d changed, %d the same, %d not here; +%d -%d lines\n\n' \
        "$new" "$changed" "$same" "$reused" "$total_added" "$total_removed"
}

# Why FILE of the step below is not in STEP: used from its library, or not needed.
reuse_note() {
    local step="$1" file="$2" module
    module="$(basename "${file%.rs}")"
    # A path through the module (`slot::next_slot`), or its name in a `use single_node::`
    # line or block.
    if grep -r -q -E "\b$module::" "$step/src" ||
        find "$step/src" -name '*.rs' -exec cat {} + | tr '\n' ' ' |
        grep -q -E "single_node::(\{[^;]*\b)?$module\b"; then
        echo "used from single_node"
    else
        echo "not needed"
    fi
}

# Every file of STEP's that is new or changed against BELOW, as a unified diff; a new file
# is diffed against nothing, so all of it shows.
show() {
    local step="$1" below="$2" file
    while IFS= read -r file; do
        if [[ -f "$below/src/$file" ]]; then
            diff -u --label "$below/src/$file" --label "$step/src/$file" "$below/src/$file" "$step/src/$file" || true
        else
            diff -u --label /dev/null --label "$step/src/$file" /dev/null "$step/src/$file" || true
        fi
    done < <(cd "$step/src" && find . -name '*.rs' | sed 's|^\./||' | sort)
}

# Sets STEP and BELOW for a step number: 02, 03 or 04.
pick() {
    local pair
    for pair in "${STEPS[@]}"; do
        [[ "$pair" == "$1"-* ]] && { read -r STEP BELOW <<< "$pair"; return; }
    done
}

case "${1:-all}" in
    all) for pair in "${STEPS[@]}"; do read -r STEP BELOW <<< "$pair" && report "$STEP" "$BELOW"; done ;;
    02 | 03 | 04) pick "$1" && report "$STEP" "$BELOW" ;;
    diff)
        [[ $# -eq 2 && "$2" =~ ^0[234]$ ]] || usage
        pick "$2"
        report "$STEP" "$BELOW"
        show "$STEP" "$BELOW"
        ;;
    *) usage ;;
esac
