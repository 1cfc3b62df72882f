#!/usr/bin/env bash
# Part 3's cluster on this machine, natively (no Docker): Redis, PostgreSQL, and three
# nodes, each with its own Geth on a fresh chain from genesis.json:
#   node1 and node2 are leader candidates (--mode leader), node3 is a member.
#
#   scripts/cluster.sh start              start whatever is not running (builds member-nodes)
#   scripts/cluster.sh status             each node's /status
#   scripts/cluster.sh node NAME start|stop|kill
#                                         one node's member-nodes process (kill = SIGKILL;
#                                         if it was not running, it says so and exits 0)
#   scripts/cluster.sh env NAME           the environment to run NAME by hand:
#                                         eval "$(scripts/cluster.sh env node3)"; cargo run -p member-nodes
#   scripts/cluster.sh stop               stop everything (the chains and the store stay)
#   scripts/cluster.sh clean              stop everything and delete .devnet/cluster
#
# Ports (all on 127.0.0.1): node N has its Engine API on 856N, JSON-RPC on 857N, Geth's
# metrics on 606N, devp2p on 3030N (the three Geths are peered, so a transaction sent to any of them reaches the
# leader's) and /health, /ready, /metrics, /status on 920N. Redis on 6379, PostgreSQL on
# 5432 (user, password and database: tutorial). Logs and data in .devnet/cluster/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.devnet/cluster"
REDIS_PORT="${REDIS_PORT:-6379}"
PG_PORT="${PG_PORT:-5432}"
NODES=(node1 node2 node3)

mode_of() { [[ "$1" == node3 ]] && echo member || echo leader; }
index_of() { echo "${1#node}"; }

check_node() {
    [[ " ${NODES[*]} " == *" $1 "* ]] || { say "no node '$1' (node1, node2, node3)"; exit 2; }
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_redis() {
    if alive "$DIR/redis.pid"; then return; fi
    port_taken "$REDIS_PORT" && { say "port $REDIS_PORT is taken (another Redis?); set REDIS_PORT"; exit 1; }
    mkdir -p "$DIR/redis"
    # appendonly: a restarted Redis keeps its term counter (the nodes cope without it).
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DIR/redis" --appendonly yes \
        --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    for _ in $(seq 1 100); do [[ -s "$DIR/redis.pid" ]] && break; sleep 0.1; done
    say "redis running on 127.0.0.1:$REDIS_PORT"
}

# PostgreSQL refuses to run as root: as root, its files belong to the postgres user.
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
    local bin; bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$bin" ]] || { say "PostgreSQL not found: run scripts/setup.sh"; exit 1; }
    if alive "$DIR/postgres.pid"; then return; fi
    port_taken "$PG_PORT" && { say "port $PG_PORT is taken (another PostgreSQL?); set PG_PORT"; exit 1; }
    local data="$DIR/postgres"
    if [[ ! -s "$data/PG_VERSION" ]]; then
        mkdir -p "$data"
        if [[ $EUID -eq 0 ]]; then
            chown postgres: "$data"
            runuser -u postgres -- test -w "$data" || {
                say "user postgres cannot reach $data (PostgreSQL refuses to run as root); move the checkout somewhere it can, or run as another user"
                exit 1
            }
        fi
        as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 > "$DIR/postgres.log" 2>&1
    fi
    touch "$DIR/postgres.log"; [[ $EUID -eq 0 ]] && chown postgres: "$DIR/postgres.log"
    as_pg "$bin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -w -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k ''" start > /dev/null
    head -n 1 "$data/postmaster.pid" > "$DIR/postgres.pid"
    local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt)
    if [[ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'tutorial'")" ]]; then
        "${psql[@]}" -c "CREATE ROLE tutorial LOGIN PASSWORD 'tutorial'" -c "CREATE DATABASE tutorial OWNER tutorial"
    fi
    say "postgresql running on 127.0.0.1:$PG_PORT (database tutorial)"
}

stop_postgres() {
    local bin; bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if alive "$DIR/postgres.pid"; then
        as_pg "$bin/pg_ctl" -D "$DIR/postgres" -m fast -w stop > /dev/null
        say "stopped postgresql"
    fi
    rm -f "$DIR/postgres.pid"
}

start_node() {
    local name="$1" n; n="$(index_of "$1")"
    if alive "$DIR/$name.pid"; then say "$name already running (pid $(cat "$DIR/$name.pid"))"; return; fi
    if port_taken "920$n"; then
        say "$name not started: 127.0.0.1:920$n is in use (is $name running by hand?)"
        return
    fi
    (eval "$(node_env "$name")"; nohup "$ROOT/target/debug/member-nodes" >> "$DIR/$name.log" 2>&1 < /dev/null &
        echo $! > "$DIR/$name.pid")
    say "$name running as $(mode_of "$name") (pid $(cat "$DIR/$name.pid")): http://127.0.0.1:920$n/status, log .devnet/cluster/$name.log"
}

node_env() {
    local n; n="$(index_of "$1")"
    cat <<ENV
export INSTANCE_ID=$1 MODE=$(mode_of "$1")
export ETH_CLIENT_URL=http://127.0.0.1:856$n JWT_SECRET=$DIR/jwt.hex GENESIS=$ROOT/genesis.json
export REDIS_ADDR=127.0.0.1:$REDIS_PORT POSTGRES_URL=postgres://tutorial:tutorial@127.0.0.1:$PG_PORT/tutorial
export HEALTH_ADDR=127.0.0.1:920$n
ENV
}

start() {
    "$ROOT/scripts/setup.sh" geth services
    install_cast
    (cd "$ROOT" && cargo build --quiet -p member-nodes)
    ensure_jwt "$DIR/jwt.hex"
    start_redis
    start_postgres
    local peers=()
    for name in "${NODES[@]}"; do
        local n; n="$(index_of "$name")"
        start_geth "$DIR/$name/geth" "856$n" "857$n" "606$n" "$DIR/jwt.hex" "$DIR/$name/geth.log" "$DIR/$name/geth.pid" "3030$n"
        peers+=("857$n:3030$n")
    done
    peer_geths "${peers[@]}"
    # node1 first, and the others once a candidate leads: on a first start node1 leads.
    start_node node1
    wait_for_leader
    for name in node2 node3; do start_node "$name"; done
}

# Waits up to 60 s for a candidate's /status to say it leads.
wait_for_leader() {
    local n
    for _ in $(seq 1 600); do
        for n in 1 2; do
            curl -sf --max-time 1 "http://127.0.0.1:920$n/status" | grep -q '"role":"leading"' && return
        done
        sleep 0.1
    done
    say "no candidate leads after 60 s; see .devnet/cluster/node1.log"
}

stop() {
    for name in "${NODES[@]}"; do stop_pid "$DIR/$name.pid" "$name"; done
    for name in "${NODES[@]}"; do stop_pid "$DIR/$name/geth.pid" "$name's geth"; done
    stop_postgres
    stop_pid "$DIR/redis.pid" redis
}

status() {
    for name in "${NODES[@]}"; do
        local n; n="$(index_of "$name")"
        if alive "$DIR/$name.pid"; then
            echo "$name: $(curl -sf --max-time 2 "http://127.0.0.1:920$n/status" || echo 'no answer')"
        else
            echo "$name: not running"
        fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    clean) stop; rm -rf "$DIR"; say "removed .devnet/cluster" ;;
    status) status ;;
    env) check_node "${2:-}"; node_env "$2" ;;
    node)
        check_node "${2:-}"
        case "${3:-}" in
            start) start_node "$2" ;;
            stop) stop_pid "$DIR/$2.pid" "$2" ;;
            kill)
                if kill_pid "$DIR/$2.pid" "$2"; then
                    say "killed $2"
                elif port_taken "920$(index_of "$2")"; then
                    say "$2 was not started by cluster.sh (127.0.0.1:920$(index_of "$2") runs by hand?): nothing to kill"
                else
                    say "$2 was not running: nothing to kill"
                fi ;;
            *) echo "usage: $0 node NAME start|stop|kill" >&2; exit 2 ;;
        esac ;;
    *) echo "usage: $0 start|stop|clean|status|env NAME|node NAME start|stop|kill" >&2; exit 2 ;;
esac
