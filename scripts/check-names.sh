#!/usr/bin/env bash
# Fails when the README or the book names something the project does not have: a test, a
# function, a type, a module, a flag or a file that was renamed or never existed.
#
#   scripts/check-names.sh       (scripts/check-docs.sh runs it first)
#
# It reads the `inline code` of README.md and docs/src/*.md (fenced blocks are commands,
# which check-docs runs) and checks each span that is one of ours:
# - a Rust path (`round::finalize`, `Store::revert`, `faults::a_leader_…`, `block_log::`): every
#   module on the way exists (a file or a `mod`), and the last name is defined (a fn, type,
#   const, module, field or variant); paths into other crates (`serde_json::Value`) are
#   left alone;
# - a name of four words or more in snake case: a test or a function defined as a `fn`, or
#   a metric or setting our code or rules write (`cluster_step_downs_total`);
# - a flag (`--block-time`): taken by one of our programs (a clap field) or passed by our
#   scripts, compose file or tests (Geth's dotted flags and `--help` are left alone);
# - a file or directory of the repository (`03-member-nodes/src/node.rs`, `app/proposals.rs`,
#   `mutants/*.patch`): it exists.
# It also checks that the book's table of contents calls each chapter by its heading.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

failed=0
bad() { echo "check-names: $1: \`$2\` $3" >&2; failed=1; }

# What the repository has: its files (tracked or new), its Rust sources, and the other
# files a flag or a metric can be written in.
FILES="$(git ls-files --cached --others --exclude-standard | sort -u)"
mapfile -t RUST < <(grep -E '\.rs$' <<< "$FILES")
mapfile -t OTHER < <(grep -E '\.(sh|yml|yaml|toml)$|^\.env$|Dockerfile' <<< "$FILES")
# Names defined in Rust (fn, type, module, const), and every identifier (for fields and
# variants, which have no keyword).
# (`const fn` first: the leftmost match would otherwise take `const` for the keyword and
# `fn` for the name.)
DEFINED="$(cat "${RUST[@]}" |
    grep -oE '\b(const[[:space:]]+fn|fn|struct|enum|mod|trait|type|const|static)[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' |
    awk '{print $NF}' | sort -u)"
WORDS="$(cat "${RUST[@]}" | grep -oE '\b[A-Za-z_][A-Za-z0-9_]*\b' | sort -u)"
# Modules: a `mod` or a file; crates: ours, by their library names.
MODULES="$( { grep -oE '\bmod[[:space:]]+[a-z_][a-z0-9_]*' <<< "$(cat "${RUST[@]}")" | awk '{print $2}';
    grep -oE '[a-z_][a-z0-9_]*\.rs$' <<< "$FILES" | sed 's/\.rs$//'; } | sort -u)"
CRATES="$(sed -n 's/^name = "\(.*\)"/\1/p' ./*/Cargo.toml | tr - _ | sort -u)"
TOP="$(ls -A)"

has() { grep -Fxq -- "$2" <<< "$1"; }

# A Rust path: `a::b::c`, `a::b::c()`, `a::` (a test module).
check_path() {
    local doc="$1" span="$2" path segments first last i
    path="${span%%(*}"
    IFS=: read -r -a segments <<< "${path//::/:}"
    first="${segments[0]}"
    # `faults::` alone: a module of tests.
    if [[ "$path" == *:: ]]; then
        has "$MODULES" "${path%::}" || bad "$doc" "$span" "names a module no file or \`mod\` defines"
        return
    fi
    # Only paths that start in our code: one of our crates, modules or defined names.
    has "$CRATES" "$first" || has "$MODULES" "$first" || has "$DEFINED" "$first" || return 0
    last="${segments[${#segments[@]} - 1]}"
    for ((i = 1; i < ${#segments[@]} - 1; i++)); do
        [[ "${segments[i]}" =~ ^[a-z] ]] || continue
        has "$MODULES" "${segments[i]}" || bad "$doc" "$span" "goes through a module that does not exist (${segments[i]})"
    done
    if [[ "$last" =~ ^[a-z] ]]; then
        has "$DEFINED" "$last" || grep -qE "\b$last:" "${RUST[@]}" || bad "$doc" "$span" "names a function or module that does not exist ($last)"
    else
        has "$WORDS" "$last" || bad "$doc" "$span" "names a type or variant that does not exist ($last)"
    fi
}

# A snake-case name of four words or more: a test or a function; or a metric or a setting,
# written in our code or rules (a metric without the prefix each service gives it, and a
# counter without the `_total` the exporter adds).
check_name() {
    local doc="$1" span="$2" name="${2%%(*}" bare
    has "$DEFINED" "$name" && return
    bare="${name#*_}"
    for word in "$name" "${name%_total}" "$bare" "${bare%_total}"; do
        grep -rqw -- "$word" "${RUST[@]}" "${OTHER[@]}" && return
    done
    bad "$doc" "$span" "names a test, function or metric that does not exist"
}

# A flag: a clap field of ours (`--block-time` is `block_time`), or passed in our scripts,
# compose file, Dockerfiles or tests. Geth's own flags, which have a dot (`--miner.recommit`),
# may be named in the text without our passing them, and every program has `--help`.
check_flag() {
    local doc="$1" span="$2" flag field
    flag="${span%%=*}"
    [[ "$flag" == *.* || "$flag" == --help || "$flag" == --version ]] && return
    field="${flag#--}"
    field="${field//-/_}"
    grep -rqF -- "$flag" "${OTHER[@]}" && return
    grep -qF -- "\"$flag" "${RUST[@]}" && return
    grep -qE "\b${field}: " "${RUST[@]}" && return
    bad "$doc" "$span" "is a flag nothing here takes or passes"
}

# A file or directory of this repository (`*` as a glob).
check_file() {
    local doc="$1" span="$2" path="${2%/}" match
    # shellcheck disable=SC2053
    while IFS= read -r match; do
        [[ "$match" == $path || "$match" == */$path || "$match" == $path/* || "$match" == */$path/* ]] && return
    done <<< "$FILES"
    bad "$doc" "$span" "names a file that does not exist"
}

check() { # doc span
    local doc="$1" span="$2" word
    case "$span" in
        *' '*)
            # Flags inside a command line (`--back-to-back --skip-empty`).
            for word in $span; do
                [[ "$word" =~ ^--[a-z][a-z0-9.-]*(=.*)?$ ]] && check_flag "$doc" "$word"
            done
            ;;
        --[a-z]*) check_flag "$doc" "$span" ;;
        *::*) [[ "$span" =~ ^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(::|\(.*\))?$ ]] && check_path "$doc" "$span" ;;
        .devnet/* | .tools/* | .soak/* | */*.go | *.go) ;;
        */* | *.rs | *.sh | *.patch | *.yml | *.toml | *.png)
            # A path of ours: it starts at one of the repository's own top-level entries,
            # or it names a Rust file, a script or a patch.
            if has "$TOP" "${span%%/*}" || [[ "$span" =~ \.(rs|sh|patch)$ || "$span" == tests/* || "$span" == src/* ]]; then
                check_file "$doc" "$span"
            fi
            ;;
        *)
            [[ "$span" =~ ^[a-z][a-z0-9]*(_[a-z0-9]+){3,}(\(\))?$ ]] && check_name "$doc" "$span"
            ;;
    esac
    return 0
}

# The `inline code` of DOC, outside fenced blocks, once each.
spans() {
    # shellcheck disable=SC2016
    awk '/^[[:space:]]*```/ { fenced = !fenced; next } !fenced' "$1" | grep -oE '`[^`]+`' | tr -d '`' | sort -u
}

for doc in README.md docs/src/*.md; do
    while IFS= read -r span; do
        check "$doc" "$span"
    done < <(spans "$doc")
done

# The book's table of contents calls each chapter by its heading.
while IFS=$'\t' read -r title file; do
    heading="$(sed -n 's/^# //p' "docs/src/$file" | head -n 1)"
    [[ "$heading" == "$title" ]] || bad docs/src/SUMMARY.md "$title" "is not the heading of $file ($heading)"
done < <(sed -n 's/.*\[\(.*\)\](\(.*\.md\)).*/\1\t\2/p' docs/src/SUMMARY.md)

if ((failed)); then
    echo "check-names: the docs name things the project does not have (above)" >&2
    exit 1
fi
echo "check-names: every test, function, flag and file the docs name exists"
