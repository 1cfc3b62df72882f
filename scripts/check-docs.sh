#!/usr/bin/env bash
# Runs every command the README, the book's chapters and the crate roots show, in the order
# a reader meets them, against the devnets the scripts start, and checks that each still
# shows what the text says it shows (a block number that grows, a receipt with status 1, a
# /status that names a leader, ...).
#
#   scripts/check-docs.sh          (scripts/test.sh runs it after the tests)
#
# It first runs scripts/check-names.sh: every test, function, flag and file the docs name
# must exist.
# Every command in a ```sh block of a document, and in a ```text block of a crate root's
# `//!` header, is a documented command. The walkthrough below runs each of them, as
# written, with `doc FILE 'COMMAND'`, and then checks its output. At the end the commands
# run are compared with the commands documented, file by file and in order: a command added
# to the docs without a check here, or a check left for a command the docs no longer show,
# fails the run.
#
# Commands run in "terminals": each has its own shell variables (what `export`, `eval` and
# `TX=$(...)` set carry over to its next command), like a reader's terminal window. A
# command that runs until Ctrl-C runs in the background and gets SIGINT when the text moves
# on. Where the text says to run something in another terminal it is run in another one.
# Three kinds of command are not run as written, and say so in the log: `scripts/test.sh`
# (CI runs it: it is what runs this script), `scripts/bench.sh` (a full run takes
# hours) and the half-hour `scripts/soak.sh` runs the soak page's figures come from;
# those two are run with --dry-run, which checks their arguments and plan. The soak page's
# three-minute soaks run as written.
#
# It needs the devnets' ports free, and moves an existing .devnet/ aside while it runs
# (restored at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WORK="$(mktemp -d)"
RAN="$WORK/ran"           # FILE<TAB>COMMAND per command run
OUT="$WORK/out"           # the last foreground command's output
TERMINAL="$WORK/term.main"
BG_PIDS=()                # process groups of commands running until Ctrl-C
: > "$RAN"

say() { echo "check-docs [${SECONDS}s]: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# --- what the docs show -------------------------------------------------------------

# The commands documented in FILE, one per line: ```sh blocks of a Markdown file, ```text
# blocks of a Rust file's `//!` header. Continued lines are joined; a comment after two
# spaces is dropped.
documented() {
    local file="$1"
    {
        if [[ "$file" == *.rs ]]; then
            sed -n 's|^//! \{0,1\}||p' "$file" | awk '/^```/{ if (inb) { inb = 0; next } if ($0 ~ /^```text/) { inb = 1; next } } inb'
        else
            awk '/^```/{ if (inb) { inb = 0; next } if ($0 ~ /^```sh/) { inb = 1; next } } inb' "$file"
        fi
    } | awk '{ if (held != "") sub(/^[[:space:]]+/, ""); if (sub(/[[:space:]]*\\$/, "")) { held = held $0 " "; next } print held $0; held = "" }' |
        sed -E 's/[[:space:]]+# .*$//; s/[[:space:]]+$//' | grep -v -E '^(#|$)' || true
}

# The documents, in the order a reader meets them.
DOCS=(
    README.md
    docs/src/introduction.md
    docs/src/getting-started.md
    docs/src/part1-engine-api.md 01-engine-api/src/main.rs
    docs/src/part2-single-node.md 02-single-node/src/lib.rs
    docs/src/part3-member-nodes.md 03-member-nodes/src/lib.rs
    docs/src/part4-cometbft-consensus.md 04-cometbft-consensus/src/lib.rs
    docs/src/watching.md
    docs/src/testing.md
    docs/src/soak.md soak/src/main.rs
    docs/src/benchmarks.md bench/src/main.rs
)

# Every Markdown file of the book and every crate root must be in DOCS, so a new chapter
# cannot slip past the check.
check_doc_list() {
    local file
    for file in docs/src/*.md */src/lib.rs */src/main.rs; do
        [[ -n "$(documented "$file")" ]] || continue
        [[ " ${DOCS[*]} " == *" $file "* ]] || fail "$file shows commands but is not in check-docs.sh's DOCS list"
    done
}

# --- running commands as a reader would ---------------------------------------------

# Shell variables the reader set, saved after each command of a terminal.
save_vars='for v in $(compgen -v); do case "$v" in BASH*|FUNCNAME|GROUPS|PIPESTATUS|SHELLOPTS|EUID|PPID|UID|RANDOM|SRANDOM|SECONDS|LINENO|EPOCH*|HIST*|COMP*|DIRSTACK|OPT*|PS*|IFS|SHLVL|PWD|OLDPWD|_|v|rc) continue;; esac; declare -p "$v" 2>/dev/null; done'

# Opens a new terminal: the checker's own environment, nothing a reader set before.
terminal() {
    TERMINAL="$WORK/term.${1//\//_}"
    : > "$TERMINAL"
}

record() { printf '%s\t%s\n' "$1" "$2" >> "$RAN"; }

# Runs COMMAND from FILE in the current terminal, as written; fails if it exits non-zero
# or takes longer than TIMEOUT seconds (default 900: a first `cargo run` compiles). Its
# output is in $OUT for the checks that follow.
doc() {
    local file="$1" command="$2" timeout="${3:-900}"
    record "$file" "$command"
    say "[$file] \$ $command"
    local rc=0
    timeout "$timeout" bash -c 'source "$1" 2>/dev/null; eval "$2"; rc=$?; eval "$3" > "$1"; exit $rc' \
        _ "$TERMINAL" "$command" "$save_vars" > "$OUT" 2>&1 || rc=$?
    sed 's/^/    /' "$OUT" | tail -n 40 >&2
    [[ $rc -eq 0 ]] || fail "[$file] '$command' exited with $rc"
}

# Runs COMMAND from FILE in the current terminal until Ctrl-C (see ctrl_c), in the
# background, with its output in $WORK/bg.N.
doc_until_ctrl_c() {
    local file="$1" command="$2"
    record "$file" "$command"
    say "[$file] \$ $command    (runs until Ctrl-C)"
    local log="$WORK/bg.${#BG_PIDS[@]}"
    setsid bash -c 'source "$1" 2>/dev/null; eval "$2"' _ "$TERMINAL" "$command" > "$log" 2>&1 < /dev/null &
    BG_PIDS+=("$!")
    BG_LOG="$log"
}

# Ctrl-C for the last command run with doc_until_ctrl_c: SIGINT to its process group, then
# waits for it to exit; fails unless it exits within 60 s, with status 0.
ctrl_c() {
    local pid="${BG_PIDS[-1]}" rc=0
    say "Ctrl-C"
    kill -INT -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || true
        fail "the command did not stop within 60 s of Ctrl-C; its output:"$'\n'"$(tail -n 20 "$BG_LOG")"
    fi
    wait "$pid" || rc=$?
    unset 'BG_PIDS[-1]'
    [[ $rc -eq 0 ]] || fail "the command exited with $rc after Ctrl-C; its output ends:"$'\n'"$(tail -n 20 "$BG_LOG")"
}

# Runs COMMAND from FILE, which the text says fails: it must exit non-zero, saying
# something that matches REGEX.
doc_fails() {
    local file="$1" command="$2" regex="$3"
    record "$file" "$command"
    say "[$file] \$ $command    (the text says this fails)"
    local rc=0
    timeout 300 bash -c 'source "$1" 2>/dev/null; eval "$2"; rc=$?; eval "$3" > "$1"; exit $rc' \
        _ "$TERMINAL" "$command" "$save_vars" > "$OUT" 2>&1 || rc=$?
    sed 's/^/    /' "$OUT" | tail -n 10 >&2
    [[ $rc -ne 0 ]] || fail "[$file] '$command' succeeded; the text says it fails"
    expect "$regex"
}

# Runs `scripts/diff-steps.sh diff NN` from FILE, as written. What it must show is the
# step's lesson: every file the step added, in full (a hunk from nothing to all its
# lines), every file it changed as a diff, and no file of the step below as deleted.
doc_diff() {
    local file="$1" command="$2" step below name lines
    doc "$file" "$command" 60
    read -r step below < <(sed -n 's/^\([0-9a-z-]*\) against \([0-9a-z-]*\):.*/\1 \2/p' "$OUT")
    [[ -n "$step" ]] || fail "[$file] '$command' printed no table"
    while IFS= read -r name; do
        lines="$(grep -c '' "$step/src/$name")"
        grep -Fxq -- "+++ $step/src/$name" "$OUT" && grep -A1 -Fx -- "+++ $step/src/$name" "$OUT" | grep -Fxq "@@ -0,0 +1,$lines @@" ||
            fail "[$file] '$command' does not show the new $step/src/$name in full ($lines lines)"
    done < <(comm -13 <(cd "$below/src" && find . -name '*.rs' | sed 's|^\./||' | sort) \
        <(cd "$step/src" && find . -name '*.rs' | sed 's|^\./||' | sort))
    while IFS= read -r name; do
        if cmp -s "$below/src/$name" "$step/src/$name"; then continue; fi
        grep -Fxq -- "+++ $step/src/$name" "$OUT" || fail "[$file] '$command' does not show the change to $step/src/$name"
    done < <(comm -12 <(cd "$below/src" && find . -name '*.rs' | sed 's|^\./||' | sort) \
        <(cd "$step/src" && find . -name '*.rs' | sed 's|^\./||' | sort))
    ! grep -q -- '^+++ /dev/null' "$OUT" || fail "[$file] '$command' shows a file of $below as deleted"
    say "    $(grep -c '' "$OUT") lines: the table, then $(grep -c '^+++ ' "$OUT") files"
}

# `scripts/diff-steps.sh`: a table per step, each naming the command that shows its diff.
diff_steps() {
    doc "$1" 'scripts/diff-steps.sh'
    expect '^02-single-node against 01-engine-api:  scripts/diff-steps.sh diff 02$'
    expect '^03-member-nodes against 02-single-node:  scripts/diff-steps.sh diff 03$'
    expect '^04-cometbft-consensus against 02-single-node:  scripts/diff-steps.sh diff 04$'
    expect '^  election\.rs +new +\+[0-9]+'
    expect '^  round\.rs +not here: used from single_node'
}

# Records DOCUMENTED from FILE and runs RUN in its place, saying why ($4).
doc_as() {
    local file="$1" documented="$2" run="$3" why="$4"
    say "[$file] \$ $documented    (run as: $run; $why)"
    doc "$file" "$run"
    sed -i '$ d' "$RAN"
    record "$file" "$documented"
}

# A command shown again in FILE that this walkthrough already ran, as written, for an
# earlier document (a soak takes minutes: it is not run twice).
doc_again() {
    grep -q -F -x -- "$(printf '%s\t%s' "$3" "$2")" "$RAN" || fail "[$1] '$2' was not run for $3 first"
    record "$1" "$2"
    say "[$1] \$ $2    (already run as written for $3)"
}

# A command CI runs in its own right, recorded as documented and not run here.
run_by_ci() {
    record "$1" "$2"
    say "[$1] \$ $2    (not run here: CI runs it, and it is what runs this script)"
}

# --- checks -------------------------------------------------------------------------

# The last output matches the extended regular expression $1.
expect() {
    grep -E -q -- "$1" "$OUT" || fail "expected output matching '$1'"
}

# Waits up to $2 seconds (default 120) for `$3...` (a check command) to succeed.
eventually() {
    local what="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
        sleep 1
    done
}

# Whether Geth's pool on JSON-RPC port $1 holds a pending transaction (Geth promotes a new
# transaction from its queue to pending in the background).
pool_has_pending() {
    curl -sf --max-time 5 -H 'Content-Type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"txpool_status","params":[]}' "http://127.0.0.1:$1" |
        grep -E -q '"pending":"0x[1-9a-f]'
}
rpc_number() { # JSON-RPC port, method → the hex result as a number
    local hex
    hex="$(curl -sf --max-time 5 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":[]}" "http://127.0.0.1:$1" |
        sed -E 's/.*"result":"0x([0-9a-f]+)".*/\1/')" || return 1
    [[ -n "$hex" ]] && echo $((16#$hex))
}
head_above() { local n; n="$(rpc_number "$1" eth_blockNumber)" && ((n > $2)); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_closed() { ! port_open "$1"; }
http_ok() { curl -sf --max-time 5 "$1" > /dev/null; }
status_has() { curl -sf --max-time 5 "$1" | grep -E -q -- "$2"; }
json_field() { sed -E "s/.*\"$1\":\"?([^,\"}]*)\"?.*/\\1/"; }
bft_height() { curl -sf --max-time 5 "http://127.0.0.1:$((26657 + 10 * $1))/status" | json_field latest_block_height; }
bft_above() { local h; h="$(bft_height "$1")" && ((h > $2)); }
app_height() { curl -sf --max-time 5 "http://127.0.0.1:$1/status" | json_field height; }
app_above() { local h; h="$(app_height "$1")" && ((h > $2)); }
member_head() { curl -sf --max-time 5 "http://127.0.0.1:$1/status" | sed -nE 's/.*"head":\{[^}]*"number":([0-9]+).*/\1/p'; }
member_above() { local h; h="$(member_head "$1")" && [[ -n "$h" ]] && ((h > $2)); }
ports_closed() { local p; for p in "$@"; do port_closed "$p" || return 1; done; }

# A number the last output shows, from the sed -E expression $2; fails, naming it ($1),
# unless it is there and a number.
number_in_out() {
    local n; n="$(sed -nE "$2" "$OUT" | head -n 1)"
    [[ "$n" =~ ^[0-9]+$ ]] || fail "no $1 in the output"
    echo "$n"
}

# Geth's block K on JSON-RPC port $1, in Part 1's words: "block K hash 0x… txs T gas_used G".
geth_block() {
    local json hash gas txs
    json="$(curl -sf --max-time 5 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBlockByNumber\",\"params\":[\"0x$(printf %x "$2")\",false]}" \
        "http://127.0.0.1:$1")" || return 1
    hash="$(sed -nE 's/.*"hash":"(0x[0-9a-f]{64})".*/\1/p' <<< "$json")"
    gas="$(sed -nE 's/.*"gasUsed":"(0x[0-9a-f]+)".*/\1/p' <<< "$json")"
    [[ -n "$hash" && -n "$gas" ]] || return 1
    txs="$(sed -nE 's/.*"transactions":\[([^]]*)\].*/\1/p' <<< "$json" | grep -o -E '0x[0-9a-f]{64}' | wc -l || true)"
    echo "block $2 hash $hash txs $txs gas_used $((gas))"
}

# The balance of address $1 at Geth's head on port 8545, in whole gwei (wei / 10^9: a
# number bash can hold, where wei may not be). The hex is converted in base-10^9 limbs.
balance_gwei() {
    local hex limbs=(0) i k d carry
    hex="$(curl -sf --max-time 5 -H 'Content-Type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getBalance\",\"params\":[\"$1\",\"latest\"]}" \
        http://127.0.0.1:8545 | sed -nE 's/.*"result":"0x([0-9a-f]+)".*/\1/p')" || return 1
    [[ -n "$hex" ]] || return 1
    for ((i = 0; i < ${#hex}; i++)); do
        carry=$((16#${hex:i:1}))
        for ((k = 0; k < ${#limbs[@]}; k++)); do
            d=$((limbs[k] * 16 + carry)); limbs[k]=$((d % 1000000000)); carry=$((d / 1000000000))
        done
        ((carry == 0)) || limbs+=("$carry")
    done
    ((${#limbs[@]} <= 3)) || return 1
    echo $((${limbs[1]:-0} + ${limbs[2]:-0} * 1000000000))
}

# An amount in ether as `cast … --ether` prints it ("1.5", "2.000000000000000000") in
# whole gwei.
ether_to_gwei() {
    local whole="${1%%.*}" frac=""
    [[ "$1" == *.* ]] && frac="${1#*.}"
    frac="${frac}000000000"
    echo $((10#$whole * 1000000000 + 10#${frac:0:9}))
}

# --- processes -------------------------------------------------------------------------

# Is process $1 gone (no such process, or a zombie: killed, not yet reaped)?
pid_gone() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 0
    [[ -z "$state" || "$state" == Z* ]]
}

# The processes a command is about to end, from the pid files the scripts wrote, in
# NOTED: `note_running` fails unless every file given names a live process (a node's kill
# or stop: it was running), `note_live` takes whichever do and fails if none does (a
# devnet's stop: something of it was running).
NOTED=()
note_running() {
    local file pid
    NOTED=()
    for file in "$@"; do
        [[ -f "$file" ]] || fail "no $file: it is not running before the command that should end it"
        pid="$(< "$file")"
        pid_gone "$pid" && fail "$file names pid $pid, which is not running before the command that should end it"
        NOTED+=("$pid")
    done
}
note_live() {
    local file pid
    NOTED=()
    for file in "$@"; do
        [[ -f "$file" ]] || continue
        pid="$(< "$file")"
        pid_gone "$pid" || NOTED+=("$pid")
    done
    ((${#NOTED[@]} > 0)) || fail "nothing the scripts recorded ($*) is running before the command that should end it"
}

# An extended regular expression for a command line that names $ROOT/$1 (as a Geth's
# --datadir, a CometBFT's --home, PostgreSQL's -D, Prometheus's config do).
path_rx() { printf '%s( |/|$)' "$(sed 's/[]\.*^$+?(){}|[]/\\&/g' <<< "$ROOT/$1")"; }

# `ps` lines for what is left of the processes in NOTED and of any whose command line
# matches the extended regular expression $1 (if given); nothing if all are gone.
left_over() {
    local pid pids=()
    for pid in "${NOTED[@]}"; do pid_gone "$pid" || pids+=("$pid"); done
    if [[ -n "${1:-}" ]]; then
        for pid in $(pgrep -f -- "$1" || true); do pid_gone "$pid" || pids+=("$pid"); done
    fi
    ((${#pids[@]} == 0)) || ps -o pid=,stat=,args= -p "$(IFS=,; echo "${pids[*]}")" || true
}

# Waits up to 60 s for every process in NOTED, and every one whose command line matches
# $2 (if given), to be gone; fails, naming what is left, if one is not. $1 says what.
expect_gone() {
    local what="$1" rx="${2:-}" deadline=$((SECONDS + 60))
    until [[ -z "$(left_over "$rx")" ]]; do
        ((SECONDS < deadline)) || fail "$what: still running 60 s later:"$'\n'"$(left_over "$rx")"
        sleep 1
    done
}

# A devnet's `stop` (or clean) from FILE: something the script started (pid files PIDFILE...)
# runs before it, and nothing of it is left after, neither the processes the script
# recorded nor any whose command line names the devnet's data directory DIR.
doc_stop() {
    local file="$1" command="$2" dir="$3"
    shift 3
    note_live "$@"
    doc "$file" "$command"
    expect_gone "after '$command', what it should have stopped" "$(path_rx "$dir")"
}

# Part 1's output: N lines "block K hash 0x… txs T gas_used G", K consecutive, starting
# right above $2, the devnet's head before it ran ("" when Geth was not running to ask:
# then above 0). Each is the block Geth on 8545 has at that height (hash, transaction
# count, gas used), and Geth's head is now the last: it advanced by N.
expect_blocks() {
    local n="$1" after="$2" first
    [[ "$(grep -c -E '^block [0-9]+ hash 0x[0-9a-f]{64} txs [0-9]+ gas_used [0-9]+$' "$OUT")" -eq "$n" ]] ||
        fail "expected $n 'block … hash … txs … gas_used …' lines"
    first="$(grep -m1 -E '^block ' "$OUT" | awk '{print $2}')"
    ((first > ${after:-0})) || fail "the first block printed is $first, not above ${after:-0}"
    [[ -z "$after" ]] || ((first == after + 1)) || fail "the first block printed is $first, not $((after + 1)), the block on Geth's head $after"
    local expected="$first" k
    for k in $(grep -E '^block ' "$OUT" | awk '{print $2}'); do
        [[ "$k" -eq "$expected" ]] || fail "block numbers are not consecutive ($k after $((expected - 1)))"
        expected=$((k + 1))
    done
    local line geth
    while IFS= read -r line; do
        geth="$(geth_block 8545 "$(awk '{print $2}' <<< "$line")")" || fail "Geth does not answer for ${line%% hash*}"
        [[ "$line" == "$geth" ]] || fail "Part 1 printed '$line'; Geth has '$geth'"
    done < <(grep -E '^block ' "$OUT")
    local head; head="$(rpc_number 8545 eth_blockNumber)" || fail "Geth does not answer eth_blockNumber"
    ((head == expected - 1)) || fail "Geth's head is $head, not $((expected - 1)), the last block printed"
}

# The last output is a JSON-RPC answer whose result is the number $1 ("0x…").
expect_result_number() {
    local hex; hex="$(sed -nE 's/.*"result":"0x([0-9a-f]+)".*/\1/p' "$OUT")"
    [[ -n "$hex" ]] || fail "no \"result\":\"0x…\" in the output"
    ((16#$hex == $1)) || fail "the result is $((16#$hex)), not $1"
}

# The leader's number among the cluster's candidates, from their /status.
cluster_leader() {
    local n
    for n in 1 2; do status_has "http://127.0.0.1:920$n/status" '"role":"leading"' && { echo "$n"; return; }; done
    return 1
}

# A cast receipt of a successful transaction.
expect_success_receipt() {
    expect '^status +1 \(success\)'
    expect '^blockNumber +[0-9]+'
}

# Stops whatever the reader left running before the next document (the data stays, as on
# a reader's machine).
close_up() {
    scripts/monitor.sh stop > /dev/null 2>&1 || true
    scripts/cluster.sh stop > /dev/null 2>&1 || true
    scripts/bft.sh stop > /dev/null 2>&1 || true
    scripts/devnet.sh stop > /dev/null 2>&1 || true
}

# --- the walkthrough, document by document ------------------------------------------

KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
DEAD=0x000000000000000000000000000000000000dEaD
DEV=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
BLOCK_NUMBER_CURL="curl -s -H 'Content-Type: application/json' -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}' http://127.0.0.1:8545"
PATH_ONLY="export PATH=\"\$PWD/.tools/bin:\$PATH\""
PATH_AND_RPC="export PATH=\"\$PWD/.tools/bin:\$PATH\" ETH_RPC_URL=http://127.0.0.1:8545"
SEND_TO_NODE3="TX=\$(cast send --async --rpc-url http://127.0.0.1:8573 --private-key $KEY $DEAD --value 1ether)"
SEND_TO_VALIDATOR2="TX=\$(cast send --async --rpc-url http://127.0.0.1:8662 --private-key $KEY $DEAD --value 1ether)"
SEND_TO_FULL0="TX=\$(cast send --async --rpc-url http://127.0.0.1:8680 --private-key $KEY $DEAD --value 1ether)"

# A block number that grows: the devnet's head passes `$1` within 30 s.
chain_grows() { eventually "the chain to grow past block $1" 30 head_above 8545 "$1"; }

part1_round() { # FILE: Part 1 on the running devnet, from its head
    local head; head="$(rpc_number 8545 eth_blockNumber)"
    doc "$1" 'cargo run -p engine-api -- --blocks 10'
    expect_blocks 10 "$head"
}

single_node_runs() { # FILE: `cargo run -p single-node` until /ready, and blocks come
    doc_until_ctrl_c "$1" 'cargo run -p single-node'
    eventually "single-node's /ready" 600 http_ok http://127.0.0.1:9100/ready
    chain_grows "$(rpc_number 8545 eth_blockNumber)"
}

# `cluster.sh start` and `status` (node1 leads), and a transfer sent to the member's Geth,
# read back from node1's.
cluster_intro() {
    local f="$1" i head
    doc "$f" 'scripts/cluster.sh start'
    doc "$f" 'scripts/cluster.sh status'
    for i in 1 2 3; do expect "^node$i: \\{"; done
    expect '^node1: .*"role":"leading"'
    head="$(sed -nE 's/^node1: .*"head":\{[^}]*"number":([0-9]+).*/\1/p' "$OUT")"  # none yet: null
    eventually "node1, leading, to make a block past its head ${head:-null}" 120 member_above 9201 "${head:-0}"
    doc "$f" "$PATH_ONLY"
    doc "$f" "$SEND_TO_NODE3"
    doc "$f" 'cast receipt --rpc-url http://127.0.0.1:8571 $TX' 180
    expect_success_receipt
}

# SIGKILL the leader, node1: it was running, it is gone, and node2 takes over.
cluster_kill_node1() {
    note_running .devnet/cluster/node1.pid
    doc "$1" 'scripts/cluster.sh node node1 kill'
    expect 'killed node1'
    expect_gone "node1, killed"
    eventually "node1's port to close" 30 port_closed 9201
    eventually "node2 to lead" 60 status_has http://127.0.0.1:9202/status '"role":"leading"'
}

# `bft.sh start` and `status`, and a transfer sent to validator 2's Geth, read back from
# validator 0's.
bft_intro() {
    local f="$1" i height
    doc "$f" 'scripts/bft.sh start'
    # Each validator's RPC answers once its app has reconciled with its Geth; on a network
    # started again, one that answers says nothing of the others.
    for i in 0 1 2 3; do eventually "node$i to commit" 180 bft_above "$i" 1; done
    # Every validator's genesis names the EL chain (block 0, chain id, fork id, genesis
    # forks, blob schedule), and every app checked its Geth against it at InitChain.
    for i in 0 1 2 3; do
        grep -q '"app_state": {"el_genesis_hash": "0x[0-9a-f]\{64\}", "el_chain_id": 1337, "el_fork_id": "0x[0-9a-f]\{8\}", "el_genesis_forks": "0x[0-9a-f]\{8\}", "el_blob_schedule": "0x[0-9a-f]\{8\}"}' ".devnet/bft/node$i/cometbft/config/genesis.json" ||
            fail "bft.sh start did not name the EL chain (app_state) in node$i's genesis"
        grep -q "chain initialised" ".devnet/bft/node$i/app.log" || fail "node$i's app never initialised the chain"
        ! grep -q "names no EL chain" ".devnet/bft/node$i/app.log" || fail "node$i's app found no EL chain named"
    done
    doc "$f" 'scripts/bft.sh status'
    for i in 0 1 2 3; do expect "^node$i: height [0-9]+, app \\{"; done
    for i in 0 1 2 3; do
        height="$(number_in_out "node$i's height" "s/^node$i: height ([0-9]+), .*/\\1/p")"
        ((height >= 1)) || fail "node$i's height is $height: every validator had committed"
        eventually "node$i to commit past the height $height it showed" 120 bft_above "$i" "$height"
    done
    doc "$f" "$PATH_ONLY"
    doc "$f" "$SEND_TO_VALIDATOR2"
    doc "$f" 'cast receipt --rpc-url http://127.0.0.1:8660 $TX' 180
    expect_success_receipt
}

# `bft.sh full`: full0 is written and started, its CometBFT syncs past the validators'
# height at the time and goes on with them, and a transfer sent to its Geth is included.
bft_full() {
    local f="$1" height
    [[ ! -e .devnet/bft/full0 ]] || fail ".devnet/bft/full0 exists before 'scripts/bft.sh full' made it"
    height="$(bft_height 0)"
    doc "$f" 'scripts/bft.sh full'
    expect "wrote full node full0"
    expect "full0 running: CometBFT RPC http://127.0.0.1:26757"
    eventually "full0 to sync past height $height" 180 bft_above 10 "$height"
    doc "$f" 'scripts/bft.sh status'
    expect "^full0: height [0-9]+, app \\{"
    height="$(number_in_out "full0's height" "s/^full0: height ([0-9]+), .*/\\1/p")"
    eventually "full0 to follow past the height $height it showed" 120 bft_above 10 "$height"
    doc "$f" "$SEND_TO_FULL0"
    doc "$f" 'cast receipt --rpc-url http://127.0.0.1:8680 $TX' 180
    expect_success_receipt
}

# `bft.sh full --state-sync`: once node0 is past a snapshot height (64, two blocks below
# its head), full1 is written trusting node0's header, starts from a snapshot (its
# CometBFT's first block is above 1: no block sync from genesis) and follows the validators.
bft_full_state_sync() {
    local f="$1" height base
    eventually "node0 past the first snapshot height" 180 bft_above 0 66
    doc "$f" 'scripts/bft.sh full --state-sync'
    expect "state sync: trusting node0's block [0-9]+ \\([0-9A-F]{64}\\)"
    expect "wrote full node full1"
    height="$(bft_height 0)"
    eventually "full1 to sync past height $height" 240 bft_above 11 "$height"
    base="$(curl -sf --max-time 5 http://127.0.0.1:26767/status | json_field earliest_block_height)"
    ((base > 1)) || fail "full1's CometBFT begins at block $base: it did not start from a snapshot"
}

# What the chapter says of a Geth of another chain: with one (from another genesis file)
# in node3's place, `bft.sh start` stops at once, naming its datadir, and no CometBFT
# starts; node3 started alone stops at InitChain, and bft.sh shows the app's error. Then
# with a Geth of another chain id, and one of another fork time: node3's app stops at
# start. node3's own datadir and store are put back after.
bft_another_chain() {
    local i
    mv .devnet/bft/node3/geth "$WORK/node3-geth"
    sed 's/"extraData": *"[^"]*"/"extraData": "0x6f74686572"/' genesis.json > "$WORK/other-genesis.json"
    grep -q '"extraData": "0x6f74686572"' "$WORK/other-genesis.json" || fail "genesis.json has no extraData to change"
    .tools/bin/geth init --datadir .devnet/bft/node3/geth --state.scheme=hash "$WORK/other-genesis.json" > "$OUT" 2>&1 ||
        fail "geth init from another genesis failed: $(tail -n 5 "$OUT")"
    say "(node3's Geth initialised from another genesis file) \$ scripts/bft.sh start"
    if scripts/bft.sh start > "$OUT" 2>&1; then fail "bft.sh start went on with a Geth of another chain: $(tail -n 5 "$OUT")"; fi
    grep -q "the Geth of .devnet/bft/node3/geth holds another chain (chain id 1337, block 0 0x[0-9a-f]*, fork id 0x[0-9a-f]*, genesis forks 0x[0-9a-f]*, blob schedule 0x[0-9a-f]*) than the network's (chain id 1337, block 0 $(sed -nE 's/.*"el_genesis_hash": *"(0x[0-9a-f]{64})".*/\1/p' .devnet/bft/node0/cometbft/config/genesis.json), fork id 0x[0-9a-f]\{8\}, genesis forks 0x[0-9a-f]\{8\}, blob schedule 0x[0-9a-f]\{8\})" "$OUT" ||
        fail "bft.sh start did not name node3's datadir: $(tail -n 5 "$OUT")"
    for i in 0 1 2 3; do port_closed $((26657 + 10 * i)) || fail "node$i's CometBFT started beside a Geth of another chain"; done
    # node3 started alone (no peering check), its app's store set aside so that CometBFT
    # asks for InitChain again: the app refuses it, CometBFT exits, and bft.sh says why.
    mv .devnet/bft/node3/app "$WORK/node3-app"
    say "(node3's app store set aside) \$ scripts/bft.sh node node3 start"
    if scripts/bft.sh node node3 start > "$OUT" 2>&1; then fail "bft.sh started node3 on a Geth of another chain: $(tail -n 5 "$OUT")"; fi
    grep -q "node3's cometbft exited" "$OUT" || fail "bft.sh did not say node3's CometBFT exited: $(tail -n 5 "$OUT")"
    grep -q "this node's Geth has chain id 1337, block 0 0x[0-9a-f]*, fork id 0x[0-9a-f]*, genesis forks 0x[0-9a-f]*, blob schedule 0x[0-9a-f]*, but the network's genesis names chain id 1337, block 0 0x" "$OUT" ||
        fail "bft.sh did not show why (the app's refusal of InitChain): $(tail -n 5 "$OUT")"
    scripts/bft.sh stop > /dev/null 2>&1 || fail "bft.sh stop failed after the refused start"
    eventually "the Geths to stop" 60 ports_closed 8660 8661 8662 8663 8680 8681 26688
    # A Geth of another chain id, one of another fork time, one without Osaka at block 0,
    # and one of another Prague blob target (block 0 the same; without Osaka, the fork id
    # too; with another blob target, the genesis forks too): `bft.sh start` names it before
    # peering (its Geths stay up); node3 started alone, its app stops at start, its Geth
    # not being on genesis.json's chain (the app's start checks, before InitChain's, whose
    # own refusal of other genesis forks and blob schedules abci_input tests), and bft.sh
    # shows the app's error at once.
    local named; named="$(sed -nE 's/.*"el_genesis_hash": *"(0x[0-9a-f]{64})".*/\1/p' .devnet/bft/node0/cometbft/config/genesis.json)"
    node3_on_edited_geth "chain id 1338" 's/"chainId": *1337/"chainId": 1338/' \
        "(chain id 1338, block 0 $named, fork id 0x[0-9a-f]\{8\}, genesis forks 0x[0-9a-f]\{8\}, blob schedule 0x[0-9a-f]\{8\}) than the network's (chain id 1337, block 0 $named, fork id 0x" \
        "is on chain 1338, but the genesis file says 1337"
    node3_on_edited_geth "Osaka at time 4000000000" 's/"osakaTime": *0/"osakaTime": 4000000000/' \
        "(chain id 1337, block 0 $named, fork id 0x[0-9a-f]\{8\}, genesis forks 0x[0-9a-f]\{8\}, blob schedule 0x[0-9a-f]\{8\}) than the network's (chain id 1337, block 0 $named, fork id 0x" \
        "has another fork schedule than the genesis file: its fork id is 0x[0-9a-f]* (its forks: the current one from time 0, the next at 4000000000, the last at 4000000000)"
    local fork; fork="$(sed -nE 's/.*"el_fork_id": *"(0x[0-9a-f]{8})".*/\1/p' .devnet/bft/node0/cometbft/config/genesis.json)"
    node3_on_edited_geth "no Osaka at block 0" 's/"osakaTime": *0,//' \
        "(chain id 1337, block 0 $named, fork id $fork, genesis forks 0x[0-9a-f]\{8\}, blob schedule 0x[0-9a-f]\{8\}) than the network's (chain id 1337, block 0 $named, fork id $fork, genesis forks 0x" \
        "is not in Osaka in its current fork (in force from time 0), where the genesis file says it is"
    local forks; forks="$(sed -nE 's/.*"el_genesis_forks": *"(0x[0-9a-f]{8})".*/\1/p' .devnet/bft/node0/cometbft/config/genesis.json)"
    node3_on_edited_geth "a Prague blob target of 5" '/"prague"/,/}/s/"target": 6/"target": 5/' \
        "(chain id 1337, block 0 $named, fork id $fork, genesis forks $forks, blob schedule 0x[0-9a-f]\{8\}) than the network's (chain id 1337, block 0 $named, fork id $fork, genesis forks $forks, blob schedule 0x" \
        "has other blob parameters than the genesis file in its current fork (from time 0): target 5, max 9, base fee update fraction 5007716, where the file gives target 6, max 9, base fee update fraction 5007716"
    rm -rf .devnet/bft/node3/geth .devnet/bft/node3/app
    mv "$WORK/node3-geth" .devnet/bft/node3/geth
    mv "$WORK/node3-app" .devnet/bft/node3/app
}

# node3 on a Geth initialised from genesis.json as sed script $2 edits it ($1 says how):
# `bft.sh start` refuses, naming node3's datadir and the chains ("holds another chain $3"),
# and leaves the Geths up; `bft.sh node node3 start` shows its app's error ($4) at once.
# Everything is stopped after, and node3's Geth and store are deleted.
node3_on_edited_geth() {
    rm -rf .devnet/bft/node3/geth .devnet/bft/node3/app
    sed "$2" genesis.json > "$WORK/edited-genesis.json"
    ! cmp -s genesis.json "$WORK/edited-genesis.json" || fail "'$2' changes nothing in genesis.json"
    .tools/bin/geth init --datadir .devnet/bft/node3/geth --state.scheme=hash "$WORK/edited-genesis.json" > "$OUT" 2>&1 ||
        fail "geth init with $1 failed: $(tail -n 5 "$OUT")"
    say "(node3's Geth initialised with $1) \$ scripts/bft.sh start"
    if scripts/bft.sh start > "$OUT" 2>&1; then fail "bft.sh start went on with a Geth of $1: $(tail -n 5 "$OUT")"; fi
    grep -q "the Geth of .devnet/bft/node3/geth holds another chain $3" "$OUT" ||
        fail "bft.sh start did not name node3's datadir: $(tail -n 5 "$OUT")"
    port_open 8663 || fail "node3's Geth is not running after the refused start"
    say "\$ scripts/bft.sh node node3 start"
    if scripts/bft.sh node node3 start > "$OUT" 2>&1; then fail "bft.sh started node3 on a Geth of $1: $(tail -n 5 "$OUT")"; fi
    grep -q "node3's app exited" "$OUT" && grep -q "$4" "$OUT" ||
        fail "bft.sh did not show the app's error at once: $(tail -n 5 "$OUT")"
    scripts/bft.sh stop > /dev/null 2>&1 || fail "bft.sh stop failed after the refused start"
    eventually "the Geths to stop" 60 ports_closed 8660 8661 8662 8663 8680 8681 26688
    rm -rf .devnet/bft/node3/geth .devnet/bft/node3/app
}

# SIGKILL validator 2: its CometBFT and app were running, they are gone, and the other
# three go on.
bft_kill_node2() {
    local height
    note_running .devnet/bft/node2/cometbft.pid .devnet/bft/node2/app.pid
    doc "$1" 'scripts/bft.sh node node2 kill'
    expect "killed node2's cometbft and app"
    expect_gone "node2's cometbft and app, killed" "$(path_rx .devnet/bft/node2/cometbft)"
    eventually "node2's ports to close" 30 ports_closed 26677 26678 9302
    height="$(bft_height 0)"
    eventually "the other three to go on" 60 bft_above 0 $((height + 3))
}

readme() {
    local f=README.md head metric height i balance shown number geth
    terminal readme
    diff_steps $f
    doc_diff $f 'scripts/diff-steps.sh diff 02'
    doc_diff $f 'scripts/diff-steps.sh diff 03'
    doc_diff $f 'scripts/diff-steps.sh diff 04'
    doc $f 'scripts/part1.sh'
    expect_blocks 10 0
    doc $f "$BLOCK_NUMBER_CURL"
    expect '"result":"0x[0-9a-f]+"'
    expect_result_number 10
    head="$(rpc_number 8545 eth_blockNumber)"
    ((head >= 10)) || fail "the devnet is at block $head after Part 1's ten blocks"
    doc $f 'cargo run -p engine-api -- --blocks 5'
    expect_blocks 5 "$head"
    doc_stop $f 'scripts/devnet.sh stop' .devnet/data .devnet/geth.pid
    expect 'stopped geth'
    eventually "Geth to stop" 30 port_closed 8545

    # Run Part 2
    doc $f 'scripts/devnet.sh start'
    head="$(rpc_number 8545 eth_blockNumber)"
    ((head >= 15)) || fail "the devnet restarted at block $head, not where Part 1 left it"
    single_node_runs $f
    terminal readme-2
    doc $f 'curl -s http://127.0.0.1:9100/ready'
    expect '^ready$'
    doc $f 'curl -s http://127.0.0.1:9100/metrics | grep sequencer_head_number'
    expect '^sequencer_head_number [0-9]+$'
    metric="$(awk '/^sequencer_head_number /{print $2}' "$OUT")"
    chain_grows "$metric"
    doc $f "$PATH_AND_RPC"
    balance="$(balance_gwei $DEAD)" || fail "Geth does not answer eth_getBalance"
    doc $f "cast send --private-key $KEY $DEAD --value 1ether" 180
    expect_success_receipt
    doc $f "cast balance $DEAD --ether"
    expect '^[1-9][0-9]*\.[0-9]+$'
    shown="$(ether_to_gwei "$(grep -m1 -E '^[0-9]+\.[0-9]+$' "$OUT")")"
    ((shown == balance + 1000000000)) ||
        fail "cast balance shows $shown gwei; before the transfer of 1 ether it was $balance gwei"
    head="$(rpc_number 8545 eth_blockNumber)"
    doc $f 'cast block latest'
    expect '^number +[0-9]+'
    number="$(number_in_out "block number" 's/^number +([0-9]+)$/\1/p')"
    ((number >= head)) || fail "cast block latest shows block $number; Geth's head was already $head"
    geth="$(geth_block 8545 "$number" | awk '{print $4}')" || fail "Geth does not answer for block $number"
    shown="$(awk '$1 == "hash" {print $2}' "$OUT")"
    [[ "$shown" == "$geth" ]] || fail "cast block latest shows block $number with hash '$shown'; Geth's is $geth"
    terminal readme
    ctrl_c

    # Run Part 3
    cluster_intro $f
    cluster_kill_node1 $f
    doc $f 'curl -s http://127.0.0.1:9202/status'
    expect '"role":"leading"'
    head="$(number_in_out "head" 's/.*"head":\{[^}]*"number":([0-9]+).*/\1/p')"
    eventually "node2, leading, to make a block past its head $head" 120 member_above 9202 "$head"
    doc $f 'scripts/cluster.sh node node1 start'
    eventually "node1 to follow node2" 120 status_has http://127.0.0.1:9201/status '"role":"following"'
    doc_stop $f 'scripts/cluster.sh stop' .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid
    eventually "the cluster to stop" 60 port_closed 9202

    # Run Part 4
    bft_intro $f
    bft_kill_node2 $f
    doc $f 'curl -s http://127.0.0.1:9300/status'
    expect '"height":[0-9]+'
    height="$(number_in_out "height" 's/.*"height":([0-9]+).*/\1/p')"
    eventually "node0's app to commit past the height $height it showed" 120 app_above 9300 "$height"
    doc $f 'scripts/bft.sh node node2 start'
    height="$(bft_height 0)"
    eventually "node2 to catch up" 180 bft_above 2 "$height"
    doc_stop $f 'scripts/bft.sh stop' .devnet/bft .devnet/bft/*/*.pid
    eventually "the validators to stop" 60 port_closed 26657

    # Watch the chain
    doc $f 'scripts/cluster.sh start'
    monitor_sees_cluster $f
    doc_stop $f 'scripts/monitor.sh stop' .devnet/monitor .devnet/monitor/prometheus.pid
    eventually "Prometheus to stop" 30 port_closed 9090
    doc_stop $f 'scripts/cluster.sh stop' .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid

    run_by_ci $f 'scripts/test.sh'
    close_up
    soak_run $f 'scripts/soak.sh part3 --minutes 3 --seed 7'
    doc_as $f 'scripts/bench.sh all' 'scripts/bench.sh all --dry-run' "a full run takes hours"
    expect '^would run All'
    expect "^(the last runs of its scenarios took .* together \\([0-9]+ of the 13 timed|its scenarios' last runs were not timed)"
    close_up
}

introduction() {
    terminal introduction
    diff_steps docs/src/introduction.md
    doc_diff docs/src/introduction.md 'scripts/diff-steps.sh diff 03'
}

# `monitor.sh start` with the cluster running, then `status` once every target is scraped:
# the nodes and their Geths are up, and Prometheus knows the rules.
monitor_sees_cluster() {
    local f="$1" n
    doc "$f" 'scripts/monitor.sh start'
    expect 'Prometheus (running|.*reloaded).*[1-9][0-9]* targets'
    eventually "Prometheus to scrape the cluster" 60 status_has 'http://127.0.0.1:9090/api/v1/targets?state=active' '"health":"up"'
    eventually "every target to be up" 60 bash -c '! curl -sf --max-time 5 "http://127.0.0.1:9090/api/v1/targets?state=active" | grep -q -E "\"health\":\"(down|unknown)\""'
    doc "$f" 'scripts/monitor.sh status'
    for n in 1 2 3; do
        expect "^target cluster node$n member-nodes: up$"
        expect "^target cluster node$n geth: up$"
    done
}

getting_started() {
    local f=docs/src/getting-started.md head stuck
    terminal started
    head="$(rpc_number 8545 eth_blockNumber || true)"  # "": Geth is not running to ask
    doc $f 'scripts/part1.sh'
    expect_blocks 10 "$head"
    head="$(grep -E '^block ' "$OUT" | tail -n 1 | awk '{print $2}')"
    doc $f "$BLOCK_NUMBER_CURL"
    expect '"result":"0x[0-9a-f]+"'
    expect_result_number "$head"

    # Send a transaction
    doc $f 'scripts/devnet.sh start'
    single_node_runs $f
    terminal started-2
    doc $f "$PATH_AND_RPC"
    doc $f "KEY=$KEY"
    doc $f "cast send --private-key \$KEY $DEAD --value 1ether" 180
    expect_success_receipt
    # When a transaction does not land
    doc_fails $f "cast send --private-key \$KEY $DEAD --value 1ether --priority-gas-price 0" 'gas tip cap 0, minimum needed 1'
    doc_fails $f "cast send --private-key \$KEY $DEAD --value 1ether --chain 1" "chainId does not match node's \\(have=1, want=1337\\)"
    doc $f "STUCK=\$(cast send --async --private-key \$KEY $DEAD --value 1ether --gas-limit 21000 --gas-price 1 --priority-gas-price 1)"
    head="$(rpc_number 8545 eth_blockNumber)"
    chain_grows $((head + 2))
    doc $f 'cast rpc txpool_content'
    stuck="$(bash -c 'source "$1" 2>/dev/null; echo "$STUCK"' _ "$TERMINAL")"
    [[ "$stuck" =~ ^0x[0-9a-f]{64}$ ]] || fail "STUCK is not a transaction hash: '$stuck'"
    grep -q -i "$stuck" "$OUT" || fail "the stuck transfer is not in txpool_content"
    expect '"pending":\{"0x'
    doc $f "cast send --nonce \$(cast nonce $DEV) --priority-gas-price 2 --private-key \$KEY $DEAD --value 1ether" 180
    expect_success_receipt
    doc $f "LATE=\$(cast send --async --nonce \$((\$(cast nonce $DEV) + 1)) --private-key \$KEY $DEAD --value 1ether)"
    doc $f 'cast rpc txpool_status'
    expect '"queued":"0x1"'
    doc $f "cast send --private-key \$KEY $DEAD --value 1ether" 180
    expect_success_receipt
    doc $f 'cast receipt $LATE' 180
    expect_success_receipt
    terminal started
    ctrl_c

    doc $f 'scripts/cluster.sh start'
    eventually "a cluster leader" 120 cluster_leader
    doc $f 'scripts/bft.sh start'
    eventually "every validator to commit" 180 bft_above 3 1
    close_up
    run_by_ci $f 'scripts/test.sh'
}

part1_chapter() { # and Part 1's crate root, which shows the same two commands
    local f
    for f in docs/src/part1-engine-api.md 01-engine-api/src/main.rs; do
        terminal "$f"
        doc "$f" 'scripts/devnet.sh start'
        part1_round "$f"
        [[ "$f" == *.md ]] && part1_try_it "$f"
    done
    close_up
}

# Part 1's "Try it yourself": a transfer, then one block that holds it; a file that is not
# a JWT secret; a genesis file with a later Osaka than Geth's; no Geth.
part1_try_it() {
    local f="$1" head
    doc "$f" 'scripts/devnet.sh start'
    doc "$f" "$PATH_AND_RPC"
    doc "$f" "cast send --async --private-key $KEY $DEAD --value 1ether"
    expect '^0x[0-9a-f]{64}$'
    eventually "the transfer to be pending in Geth's pool" 30 pool_has_pending 8545
    head="$(rpc_number 8545 eth_blockNumber)"
    doc "$f" 'cargo run -p engine-api -- --blocks 1'
    expect_blocks 1 "$head"
    expect '^block [0-9]+ hash 0x[0-9a-f]{64} txs [1-9][0-9]* gas_used [1-9][0-9]*$'
    doc_fails "$f" 'JWT_SECRET=genesis.json cargo run -p engine-api' 'JWT secret file genesis.json is not hex'
    doc "$f" "sed 's/\"osakaTime\": 0/\"osakaTime\": 4000000000/' genesis.json > /tmp/later-osaka.json"
    grep -q '"osakaTime": 4000000000' /tmp/later-osaka.json || fail "[$f] the sed made no genesis with a later Osaka"
    head="$(rpc_number 8545 eth_blockNumber)"
    doc_fails "$f" 'GENESIS=/tmp/later-osaka.json cargo run -p engine-api' \
        '^Error: the execution client at http://127.0.0.1:8551 has another fork schedule than the genesis file: its fork id is 0x[0-9a-f]{8} .*times \[4000000000\]'
    [[ "$(rpc_number 8545 eth_blockNumber)" == "$head" ]] || fail "[$f] Part 1 made a block on a Geth of another fork schedule"
    doc_stop "$f" 'scripts/devnet.sh stop' .devnet/data .devnet/geth.pid
    expect 'stopped geth'
    eventually "Geth to stop" 30 port_closed 8551
    doc_fails "$f" 'cargo run -p engine-api -- --blocks 1' '^Error: cannot talk to the execution client at http://127.0.0.1:8551'
}

part2_chapter() { # and Part 2's crate root
    local f
    for f in docs/src/part2-single-node.md 02-single-node/src/lib.rs; do
        terminal "$f"
        doc "$f" 'scripts/devnet.sh start'
        single_node_runs "$f"
        ctrl_c
        [[ "$f" == *.md ]] && part2_try_it "$f"
    done
    close_up
}

# Part 2's diff with Part 1, and its "Try it yourself": Geth stopped under the running
# sequencer, /ready says so; Geth started again, the sequencer recovers.
part2_try_it() {
    local f="$1" head
    doc_diff "$f" 'scripts/diff-steps.sh diff 02'
    doc "$f" 'scripts/devnet.sh start'
    single_node_runs "$f"
    terminal "$f-2"
    doc_stop "$f" 'scripts/devnet.sh stop' .devnet/data .devnet/geth.pid
    expect 'stopped geth'
    eventually "/ready to say Geth is gone" 60 bash -c '! curl -sf --max-time 5 http://127.0.0.1:9100/ready'
    doc "$f" "curl -s -w '%{http_code}\\n' http://127.0.0.1:9100/ready"
    expect '^(execution client unreachable|no block for [0-9]+ s)$'
    expect '^503$'
    doc "$f" 'scripts/devnet.sh start'
    eventually "single-node to recover" 120 http_ok http://127.0.0.1:9100/ready
    doc "$f" "curl -s -w '%{http_code}\\n' http://127.0.0.1:9100/ready"
    expect '^ready$'
    expect '^200$'
    head="$(rpc_number 8545 eth_blockNumber)"
    chain_grows "$head"
    terminal "$f"
    ctrl_c
}

part3_chapter() {
    local f=docs/src/part3-member-nodes.md
    terminal part3
    doc_diff $f 'scripts/diff-steps.sh diff 03'
    cluster_intro $f
    cluster_kill_node1 $f
    doc $f 'scripts/cluster.sh node node1 start'
    eventually "node1 to follow node2" 120 status_has http://127.0.0.1:9201/status '"role":"following"'
    member_by_hand $f
    ctrl_c
    doc_stop $f 'scripts/cluster.sh stop' .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid
    terminal part3
    cluster_ha $f

    f=03-member-nodes/src/lib.rs
    terminal part3-root
    doc $f 'scripts/cluster.sh start'
    member_by_hand $f
    ctrl_c
    close_up
}

# `cluster.sh start --ha` on the stopped cluster: a Redis replica and three Sentinels, a
# synchronous PostgreSQL standby, and the nodes' URLs for them; each primary killed, and
# the chain goes on; then `clean`, and nothing is left.
cluster_ha() {
    local f="$1"
    doc "$f" 'scripts/cluster.sh start --ha'
    expect 'redis running on 127.0.0.1:6380 \(a replica of 127.0.0.1:6379\)'
    expect 'sentinels running on 127.0.0.1:26379, 26380, 26381'
    expect 'postgresql running on 127.0.0.1:5433 \(a standby of 127.0.0.1:5432\)'
    expect 'postgresql on 127.0.0.1:5432 commits synchronously to its standby'
    eventually "a cluster leader" 120 cluster_leader
    eventually "the Redis replica's link" 60 bash -c 'redis-cli -p 6380 INFO replication | grep -q "master_link_status:up"'
    doc "$f" 'scripts/cluster.sh status'
    expect '^redis: primary 127.0.0.1:6379 \(PONG\), replica 127.0.0.1:6380 \(link up\)$'
    expect '^postgresql: primary 127.0.0.1:5432, standby 127.0.0.1:5433 \(sync\)$'
    doc "$f" 'scripts/cluster.sh env node1'
    expect "^export REDIS_ADDR='redis-sentinel://127.0.0.1:26379/0\\?sentinelServiceName=lease&node=127.0.0.1:26380&node=127.0.0.1:26381'$"
    expect "^export POSTGRES_URL='postgres://tutorial:tutorial@127.0.0.1:5432,127.0.0.1:5433/tutorial\\?target_session_attrs=read-write'$"
    grep -q 'commits each block to disk and to a synchronous standby' .devnet/cluster/node1.log ||
        fail "node1 does not say it commits to a synchronous standby"
    doc "$f" 'scripts/cluster.sh fault redis-primary'
    expect 'killed the Redis primary on 127.0.0.1:6379'
    expect 'the Sentinels promoted the replica on 127.0.0.1:6380'
    expect 'block [0-9]+ stored, [0-9.]+ s after the kill; the longest time without a block: [0-9.]+ s'
    expect 'redis running on 127.0.0.1:6379 \(a replica of 127.0.0.1:6380\)'
    doc "$f" 'scripts/cluster.sh fault pg-primary'
    expect 'killed the PostgreSQL primary on 127.0.0.1:5432'
    expect 'promoted the standby on 127.0.0.1:5433'
    expect 'block [0-9]+ stored, [0-9.]+ s after the kill; the longest time without a block: [0-9.]+ s'
    expect 'postgresql on 127.0.0.1:5433 commits synchronously to its standby'
    doc_stop "$f" 'scripts/cluster.sh clean' .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid
    [[ ! -e .devnet/cluster ]] || fail "clean left .devnet/cluster"
}

# `cluster.sh node node3 stop`, node3's settings, and node3 run by hand: it follows the
# leader again. Leaves the shell in another terminal, as a reader's would be.
member_by_hand() {
    local f="$1" height
    note_running .devnet/cluster/node3.pid
    doc "$f" 'scripts/cluster.sh node node3 stop'
    expect 'stopped node3'
    expect_gone "node3, stopped"
    eventually "node3 to stop" 30 port_closed 9203
    doc "$f" 'eval "$(scripts/cluster.sh env node3)"'
    doc_until_ctrl_c "$f" 'cargo run -p member-nodes'
    eventually "node3 run by hand to answer" 600 http_ok http://127.0.0.1:9203/health
    height="$(rpc_number 8571 eth_blockNumber || rpc_number 8572 eth_blockNumber)"
    eventually "node3's Geth to follow past block $height" 120 head_above 8573 "$height"
    terminal "$f-2"
}

part4_chapter() {
    local f=docs/src/part4-cometbft-consensus.md height
    terminal part4
    doc_diff $f 'scripts/diff-steps.sh diff 04'
    bft_intro $f
    bft_full $f
    bft_full_state_sync $f
    bft_kill_node2 $f
    doc $f 'scripts/bft.sh node node2 start'
    height="$(bft_height 0)"
    eventually "node2 to catch up" 180 bft_above 2 "$height"
    validator_by_hand $f 2
    terminal part4
    ctrl_c
    doc_stop $f 'scripts/bft.sh stop' .devnet/bft .devnet/bft/*/*.pid
    eventually "the validators to stop" 60 ports_closed 26657 26667 26677 26687
    bft_another_chain

    f=04-cometbft-consensus/src/lib.rs
    terminal part4-root
    doc $f 'scripts/bft.sh start'
    eventually "every validator to commit" 180 bft_above 3 1
    validator_by_hand $f 0
    ctrl_c
    close_up
}

# Validator I's app run by hand, and its CometBFT started in another terminal as the text
# says: it catches up with the others.
validator_by_hand() {
    local f="$1" i="$2" height
    note_running ".devnet/bft/node$i/cometbft.pid" ".devnet/bft/node$i/app.pid"
    doc "$f" "scripts/bft.sh node node$i stop"
    expect "stopped node$i's cometbft"
    expect "stopped node$i's app"
    expect_gone "node$i's cometbft and app, stopped" "$(path_rx ".devnet/bft/node$i/cometbft")"
    eventually "node$i's app to stop" 30 port_closed $((26658 + 10 * i))
    eventually "node$i's CometBFT and /status to stop" 30 ports_closed $((26657 + 10 * i)) $((9300 + i))
    doc "$f" "eval \"\$(scripts/bft.sh env node$i)\""
    doc_until_ctrl_c "$f" 'cargo run -p cometbft-consensus'
    eventually "node$i's app run by hand to listen" 600 port_open $((26658 + 10 * i))
    terminal "$f-2"
    doc "$f" "scripts/bft.sh node node$i start"
    expect "starting only its CometBFT"
    height="$(bft_height $(( (i + 1) % 4 )))"
    eventually "node$i to commit past height $height" 180 bft_above "$i" "$height"
}

watching() {
    local f=docs/src/watching.md leader
    terminal watching
    doc $f 'scripts/cluster.sh start'
    monitor_sees_cluster $f
    # Each rule group has its own evaluation slot: a rule can be empty for a second after the
    # targets are up (as the chapter says). Wait for both before the documented queries.
    eventually "the recording rule devnet:leaders to say 1" 60 status_has \
        'http://127.0.0.1:9090/api/v1/query?query=devnet:leaders' '"value":\[[0-9.]+,"1"\]'
    eventually "the recording rule devnet:seconds_since_last_block to have the cluster" 60 status_has \
        'http://127.0.0.1:9090/api/v1/query?query=devnet:seconds_since_last_block' '"devnet":"cluster"'
    doc $f "curl -s 'http://127.0.0.1:9090/api/v1/query?query=devnet:leaders'"
    expect '"status":"success"'
    doc $f "curl -s 'http://127.0.0.1:9090/api/v1/query?query=devnet:seconds_since_last_block'"
    expect '"status":"success"'
    expect '"devnet":"cluster"'
    doc $f 'promtool test rules monitoring/rules_test.yml'
    expect 'SUCCESS'
    note_running .devnet/cluster/node1.pid
    doc $f 'scripts/cluster.sh node node1 kill'
    expect 'killed node1'
    expect_gone "node1, killed"
    eventually "node1's port to close" 30 port_closed 9201
    eventually "Prometheus to see node1 down" 60 status_has \
        'http://127.0.0.1:9090/api/v1/query?query=up%7Bnode%3D%22node1%22%2Cjob%3D%22member-nodes%22%7D' '"value":\[[0-9.]+,"0"\]'
    doc $f 'scripts/monitor.sh status'
    expect '^target cluster node1 member-nodes: down$'
    expect '^target cluster node2 member-nodes: up$'
    doc $f 'scripts/cluster.sh node node1 start'
    eventually "node1 to follow" 120 status_has http://127.0.0.1:9201/status '"role":"following"'
    doc_stop $f 'scripts/monitor.sh stop' .devnet/monitor .devnet/monitor/prometheus.pid
    eventually "Prometheus to stop" 30 port_closed 9090
    compose_prometheus_stand_in
    doc_stop $f 'scripts/cluster.sh stop' .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid
    close_up
}

# The chapter's Docker path: `monitor.sh write` makes the compose file's Prometheus read the
# new config, and `status` reads it. No Docker engine runs here, so the stand-in is the same
# Prometheus started as the compose file starts it, reading .devnet/monitor at the path the
# compose file mounts it at.
compose_prometheus_stand_in() {
    local dir="$WORK/compose-prometheus" pid
    mkdir -p "$dir/etc"
    ln -sfn "$ROOT/.devnet/monitor" "$dir/etc/prometheus-devnet"
    say "a stand-in for the compose file's Prometheus (no Docker here)"
    # In a process group of its own, in BG_PIDS, so that a failed run stops it too.
    setsid prometheus --config.file="$dir/etc/prometheus-devnet/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle > "$dir/log" 2>&1 < /dev/null &
    pid=$!
    BG_PIDS+=("$pid")
    eventually "the stand-in Prometheus to be ready" 60 http_ok http://127.0.0.1:9090/-/ready
    scripts/cluster.sh node node3 stop > /dev/null 2>&1 || fail "cluster.sh node node3 stop failed"
    eventually "node3's port to close" 30 port_closed 9203
    scripts/monitor.sh write > "$OUT" 2>&1 || fail "monitor.sh write failed: $(cat "$OUT")"
    expect "targets\) and rules.yml; the compose file's Prometheus reloaded them"
    # The config written without node3 reached the stand-in: node1's target is there, and
    # node3's is gone.
    eventually "the stand-in to drop node3, stopped before write" 60 bash -c \
        't="$(curl -sf --max-time 5 "http://127.0.0.1:9090/api/v1/targets?state=active")" &&
            [[ "$t" == *127.0.0.1:9201* && "$t" != *127.0.0.1:9203* ]]'
    scripts/monitor.sh status > "$OUT" 2>&1 || fail "monitor.sh status failed on the compose file's Prometheus: $(cat "$OUT")"
    expect '^target cluster node1 member-nodes: (up|unknown)$'
    ! grep -q 'node3 member-nodes' "$OUT" || fail "monitor.sh status lists node3, stopped before write"
    scripts/monitor.sh stop > "$OUT" 2>&1 || fail "monitor.sh stop failed: $(cat "$OUT")"
    expect 'docker compose --profile monitor stop prometheus'
    kill -0 "$pid" 2>/dev/null || fail "monitor.sh stop stopped the compose file's Prometheus"
    kill -TERM -- "-$pid"; wait "$pid" || true
    eventually "the stand-in Prometheus to stop" 30 port_closed 9090
}

# The hand-made safety mutants, run as written: each must be caught by the tests it
# names, and the work tree must come out of it unchanged.
testing() {
    local f=docs/src/testing.md before
    terminal "$f"
    before="$(git status --porcelain; git diff)"
    doc $f 'scripts/mutants.sh safety' 3600
    local count; count="$(ls mutants/*.patch | wc -l)"
    [[ "$(grep -c ': caught by ' "$OUT")" -ge "$count" ]] || fail "not every one of the $count mutants was caught"
    if grep -q 'NOT caught' "$OUT"; then fail "a safety mutant was not caught"; fi
    [[ "$(git status --porcelain; git diff)" == "$before" ]] || fail "scripts/mutants.sh safety changed the work tree"
    close_up
}

# A short soak, run as written: it must pass, lose nothing, and fork nothing.
soak_run() {
    doc "$1" "$2" 1800
    expect '^\| verdict \| passed \|$'
    expect '^\| \*\*lost\*\*: shown a receipt, then not in that block \| 0 \|$'
    expect '^\| \*\*forks\*\*: heights where two nodes or the block log disagree \| 0 \|$'
}

# The soak page: CI's short soaks (Part 3's already ran for the README), and the
# half-hour runs its figures come from, with --dry-run (each takes over 30 minutes).
soak_page() {
    local f=docs/src/soak.md command
    terminal "$f"
    doc_again $f 'scripts/soak.sh part3 --minutes 3 --seed 7' README.md
    soak_run $f 'scripts/soak.sh part4 --minutes 3 --seed 7'
    for f in docs/src/soak.md soak/src/main.rs; do
        while IFS= read -r command; do
            [[ "$command" == *"--minutes 30"* ]] || continue
            doc_as "$f" "$command" "$command --dry-run" "a full run takes over 30 minutes"
            expect '^would run part[34] '
        done < <(documented "$f")
    done
}

benchmarks() {
    local f
    for f in docs/src/benchmarks.md bench/src/main.rs; do
        terminal "$f"
        while IFS= read -r command; do
            doc_as "$f" "$command" "$command --dry-run" "a full run takes hours"
            expect '^would run '
        done < <(documented "$f")
    done
}

# The `clean` the text offers in comments, in place of each `stop` ("or: scripts/bft.sh
# clean, to start over"): not a documented command of its own, so run here at the end,
# with each devnet running. Nothing of the devnet is left running, its data is gone, and
# the other devnets' data stays.
cleans() {
    local script data
    say "(the text offers 'clean' in comments, in place of 'stop': each devnet started, then cleaned)"
    strangers
    for script in devnet cluster bft; do
        say "\$ scripts/$script.sh start"
        "scripts/$script.sh" start > "$OUT" 2>&1 || fail "scripts/$script.sh start failed:"$'\n'"$(tail -n 20 "$OUT")"
    done
    eventually "a cluster leader" 120 cluster_leader
    eventually "every validator to commit" 180 bft_above 3 1
    local jwt
    for jwt in .devnet/jwt.hex .devnet/cluster/jwt.hex .devnet/bft/jwt.hex; do
        [[ "$(stat -c %a "$jwt")" == 600 ]] || fail "$jwt is readable by others: $(stat -c %A "$jwt")"
    done
    [[ -d .devnet/single-node && -d .devnet/monitor ]] || fail "no .devnet/single-node or .devnet/monitor to clean: the walkthrough made both"

    held_store
    clean_devnet devnet .devnet/data .devnet/geth.pid
    for data in .devnet/data .devnet/jwt.hex .devnet/geth.log .devnet/single-node; do
        [[ ! -e "$data" ]] || fail "$data is still there after scripts/devnet.sh clean"
    done
    [[ -d .devnet/cluster && -d .devnet/bft && -d .devnet/monitor ]] || fail "scripts/devnet.sh clean deleted another devnet's data"
    clean_devnet cluster .devnet/cluster .devnet/cluster/*.pid .devnet/cluster/*/geth.pid
    [[ ! -e .devnet/cluster ]] || fail ".devnet/cluster is still there after scripts/cluster.sh clean"
    [[ -d .devnet/bft && -d .devnet/monitor ]] || fail "scripts/cluster.sh clean deleted another devnet's data"
    clean_devnet bft .devnet/bft .devnet/bft/*/*.pid
    [[ ! -e .devnet/bft ]] || fail ".devnet/bft is still there after scripts/bft.sh clean"
    [[ -d .devnet/monitor ]] || fail "scripts/bft.sh clean deleted another devnet's data"
    say "\$ scripts/monitor.sh clean"
    scripts/monitor.sh clean > "$OUT" 2>&1 || fail "scripts/monitor.sh clean failed: $(cat "$OUT")"
    [[ ! -e .devnet/monitor ]] || fail ".devnet/monitor is still there after scripts/monitor.sh clean"
}

# A pid file left from before a reboot, whose PID another process has now: `stop` does not
# signal that process, and `start` starts Geth rather than taking it for running.
strangers() {
    local stranger
    sleep 600 &
    stranger=$!
    echo "$stranger" > .devnet/geth.pid
    touch -d '-1 hour' .devnet/geth.pid
    say "(a stale .devnet/geth.pid naming pid $stranger, a process started after it)"
    say "\$ scripts/devnet.sh stop"
    scripts/devnet.sh stop > "$OUT" 2>&1 || fail "scripts/devnet.sh stop failed: $(cat "$OUT")"
    expect 'geth not running'
    pid_gone "$stranger" && fail "scripts/devnet.sh stop killed pid $stranger, which it never started"
    kill "$stranger"
}

# `devnet.sh clean` leaves Part 2's store alone while a single-node holds it, even one
# started from another directory with STATE_DIR pointing here.
held_store() {
    local pid
    (cd / && exec env JWT_SECRET="$ROOT/.devnet/jwt.hex" GENESIS="$ROOT/genesis.json" \
        STATE_DIR="$ROOT/.devnet/single-node" HEALTH_ADDR=127.0.0.1:0 "$ROOT/target/debug/single-node") \
        > "$WORK/held.log" 2>&1 &
    pid=$!
    eventually "a single-node started from / to open .devnet/single-node" 120 holds_store "$pid"
    say "(a single-node started from /, its store .devnet/single-node)"
    say "\$ scripts/devnet.sh clean"
    scripts/devnet.sh clean > "$OUT" 2>&1 && fail "scripts/devnet.sh clean deleted a store in use: $(cat "$OUT")"
    expect "is open in process $pid"
    [[ -d .devnet/single-node && -d .devnet/data ]] || fail "the refused clean deleted something"
    kill -INT "$pid"
    wait "$pid" || fail "the single-node started from / did not stop cleanly: $(tail -n 5 "$WORK/held.log")"
}

# Does process $1 hold a file of Part 2's store open?
holds_store() {
    find "/proc/$1/fd" -lname "$ROOT/.devnet/single-node/*" 2>/dev/null | grep -q .
}

# `scripts/$1.sh clean` on a running devnet whose data is in DIR ($2) and whose pid files
# are PIDFILE...: nothing of it is left running.
clean_devnet() {
    local script="$1" dir="$2"
    shift 2
    note_live "$@"
    say "\$ scripts/$script.sh clean"
    "scripts/$script.sh" clean > "$OUT" 2>&1 || fail "scripts/$script.sh clean failed:"$'\n'"$(tail -n 20 "$OUT")"
    sed 's/^/    /' "$OUT" >&2
    expect "^$script: removed "
    expect_gone "after scripts/$script.sh clean, what it should have stopped" "$(path_rx "$dir")"
}

# --- compare what ran with what is documented ---------------------------------------

compare() {
    local file status=0
    for file in "${DOCS[@]}"; do
        if ! diff <(documented "$file") <(awk -F'\t' -v f="$file" '$1 == f { print $2 }' "$RAN") > "$WORK/diff"; then
            say "$file: the commands it shows (<) and the commands checked (>) differ:"
            cat "$WORK/diff" >&2
            status=1
        fi
    done
    return $status
}

# --- setting up and cleaning up -----------------------------------------------------

PORTS=(9090 8545 8551 9100 6379 5432 8561 8562 8563 8571 8572 8573 9201 9202 9203 26657 26667 26677 26687 9300 9301 9302 9303 26757 8670 8680 9310)
preflight() {
    local port
    for port in "${PORTS[@]}"; do
        port_open "$port" && fail "port $port is in use: stop the devnets (devnet.sh, cluster.sh, bft.sh stop) and anything else on it first"
    done
    if [[ -e .devnet ]]; then
        [[ -e .devnet.before-check-docs ]] && fail ".devnet.before-check-docs exists from an interrupted run: restore it as .devnet or delete it"
        mv .devnet .devnet.before-check-docs
        say "moved .devnet aside to .devnet.before-check-docs (restored at the end)"
    fi
}

finish() {
    local rc=$?
    trap - EXIT
    local pid
    for pid in "${BG_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    close_up
    if [[ $rc -ne 0 && -d .devnet ]]; then
        rm -rf "$WORK/devnet-logs"; cp -r .devnet "$WORK/devnet-logs" 2>/dev/null || true
        say "the devnets' data and logs of the failed run: $WORK/devnet-logs"
    fi
    if [[ $rc -ne 0 && -d .soak ]]; then
        rm -rf "$WORK/soak"; cp -r .soak "$WORK/soak" 2>/dev/null || true
        say "the soaks' histories, verdicts and logs: $WORK/soak"
    fi
    rm -rf .devnet
    if [[ -e .devnet.before-check-docs ]]; then mv .devnet.before-check-docs .devnet; fi
    [[ $rc -eq 0 ]] && rm -rf "$WORK"
    exit $rc
}

check_doc_list
# The names the docs use (tests, functions, flags, files) exist, before anything runs.
scripts/check-names.sh >&2 || fail "the docs name things the project does not have"
preflight
trap finish EXIT
readme
introduction
getting_started
part1_chapter
part2_chapter
part3_chapter
part4_chapter
watching
testing
soak_page
benchmarks
cleans
compare || fail "the docs and this walkthrough disagree (above)"
say "every documented command ran and showed what the text says ($(wc -l < "$RAN") commands)"
