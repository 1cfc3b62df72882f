#!/usr/bin/env bash
# Part 3's cluster on this machine, natively (no Docker): Redis, PostgreSQL, and three
# nodes, each with its own Geth on a fresh chain from genesis.json:
#   node1 and node2 are leader candidates (--mode leader), node3 is a member.
#
#   scripts/cluster.sh start              start whatever is not running (builds member-nodes)
#   scripts/cluster.sh start --ha         the same with no single point of failure: Redis with
#                                         a replica and three Sentinels, PostgreSQL with a
#                                         synchronous standby (on a running or stopped cluster,
#                                         it adds them; the cluster stays so until `clean`)
#   scripts/cluster.sh fault redis-primary
#                                         SIGKILL the Redis primary; the Sentinels promote the
#                                         replica; the killed one comes back as its replica
#   scripts/cluster.sh fault pg-primary   SIGKILL the PostgreSQL primary and promote the
#                                         standby, as a failover tool would; the killed one
#                                         is made a synchronous standby of the new primary
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
# 5432 (user, password and database: tutorial). With --ha also: Redis's second server on
# 6380, Sentinels on 26379-26381, PostgreSQL's second server on 5433; the nodes find each
# primary by themselves (`env NAME` shows the URLs). Logs and data in .devnet/cluster/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.devnet/cluster"
REDIS_PORT="${REDIS_PORT:-6379}"
PG_PORT="${PG_PORT:-5432}"
NODES=(node1 node2 node3)

mode_of() { [[ "$1" == node3 ]] && echo member || echo leader; }
# What the chapter calls a node of each mode: a `--mode leader` node is a candidate for the
# lease, and only the one that holds it leads (its /status says which).
role_of() { [[ "$(mode_of "$1")" == leader ]] && echo "candidate (--mode leader)" || echo "member (--mode member)"; }
index_of() { echo "${1#node}"; }

check_node() {
    [[ " ${NODES[*]} " == *" $1 "* ]] || { say "no node '$1' (node1, node2, node3)"; exit 2; }
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --ha: the marker that this cluster runs without a single point of failure.
HA_FILE="$DIR/ha"
ha() { [[ -f "$HA_FILE" ]]; }
SENTINEL_PORTS=(26379 26380 26381)
# The name the Sentinels know the Redis primary by (sentinelServiceName in the URL).
SERVICE=lease

# Redis server $1 (redis or redis2) on port $2; a replica of the one on port $3 if given.
start_redis() {
    local name="${1:-redis}" port="${2:-$REDIS_PORT}" of="${3:-}"
    if alive "$DIR/$name.pid"; then return; fi
    port_taken "$port" && { say "port $port is taken (another Redis? Debian's service: sudo systemctl disable --now redis-server); or set REDIS_PORT"; exit 1; }
    mkdir -p "$DIR/$name"
    # appendonly: a restarted Redis keeps its term counter (the nodes cope without it).
    local args=(--bind 127.0.0.1 --port "$port" --dir "$DIR/$name" --appendonly yes
        --daemonize yes --pidfile "$DIR/$name.pid" --logfile "$DIR/$name.log")
    [[ -n "$of" ]] && args+=(--replicaof 127.0.0.1 "$of")
    redis-server "${args[@]}"
    for _ in $(seq 1 100); do [[ -s "$DIR/$name.pid" ]] && break; sleep 0.1; done
    say "redis running on 127.0.0.1:$port${of:+ (a replica of 127.0.0.1:$of)}"
}

# The port of the Redis primary: as the Sentinels say (they rewrite their config file as
# they fail over, so it is known while they are stopped too), else the first server's.
redis_primary() {
    local port
    port="$(redis-cli -p "${SENTINEL_PORTS[0]}" SENTINEL GET-MASTER-ADDR-BY-NAME "$SERVICE" 2>/dev/null | sed -n 2p)"
    [[ -z "$port" && -f "$DIR/sentinel1.conf" ]] &&
        port="$(sed -nE "s/^sentinel monitor $SERVICE [^ ]+ ([0-9]+) .*/\1/p" "$DIR/sentinel1.conf")"
    echo "${port:-$REDIS_PORT}"
}

# The Redis server name on port $1.
redis_name() { [[ "$1" == "$REDIS_PORT" ]] && echo redis || echo redis2; }

# Both Redis servers (the primary first, the other its replica) and three Sentinels, each
# a quorum of 2: the primary is down once two of them cannot reach it for 2 s, and they
# then promote the replica.
start_redis_ha() {
    local primary other k port conf
    primary="$(redis_primary)"
    other=$(( primary == REDIS_PORT ? REDIS_PORT + 1 : REDIS_PORT ))
    start_redis "$(redis_name "$primary")" "$primary"
    start_redis "$(redis_name "$other")" "$other" "$primary"
    for k in 1 2 3; do
        port="${SENTINEL_PORTS[k - 1]}" conf="$DIR/sentinel$k.conf"
        alive "$DIR/sentinel$k.pid" && continue
        port_taken "$port" && { say "port $port is taken (another Sentinel?)"; exit 1; }
        # Written once; a Sentinel rewrites its file with what it learns (the primary after
        # a failover, the other Sentinels, the replicas).
        [[ -f "$conf" ]] || cat > "$conf" <<CONF
bind 127.0.0.1
port $port
dir $DIR
sentinel monitor $SERVICE 127.0.0.1 $primary 2
sentinel down-after-milliseconds $SERVICE 2000
sentinel failover-timeout $SERVICE 10000
CONF
        redis-server "$conf" --sentinel --daemonize yes --pidfile "$DIR/sentinel$k.pid" --logfile "$DIR/sentinel$k.log"
        for _ in $(seq 1 100); do [[ -s "$DIR/sentinel$k.pid" ]] && break; sleep 0.1; done
    done
    say "sentinels running on 127.0.0.1:${SENTINEL_PORTS[0]}, ${SENTINEL_PORTS[1]}, ${SENTINEL_PORTS[2]}, watching the primary 127.0.0.1:$primary"
}

# PostgreSQL refuses to run as root: as root, its files belong to the postgres user.
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# One SQL statement $2 on the PostgreSQL server on port $1, as its superuser (in database
# postgres, or $3).
psql_at() { "$(pg_bin)/psql" -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -qAtX -c "$2"; }

# PostgreSQL server $1 (postgres or postgres2) on port $2. A new one is made with initdb,
# or, given the port $3 of a running primary, as its streaming standby, as an operator
# makes one (pg_basebackup -R: a copy of the primary's data, and the primary's address).
start_postgres() {
    local name="${1:-postgres}" port="${2:-$PG_PORT}" of="${3:-}" bin
    bin="$(pg_bin)"
    [[ -n "$bin" ]] || { say "PostgreSQL not found: run scripts/setup.sh"; exit 1; }
    if alive "$DIR/$name.pid"; then return; fi
    port_taken "$port" && { say "port $port is taken (another PostgreSQL? Debian's service: sudo systemctl disable --now postgresql); or set PG_PORT"; exit 1; }
    local data="$DIR/$name" log="$DIR/$name.log"
    if [[ ! -s "$data/PG_VERSION" ]]; then
        rm -rf "$data"
        mkdir -p -m 700 "$data"
        if [[ $EUID -eq 0 ]]; then
            chown postgres: "$data"
            runuser -u postgres -- test -w "$data" || {
                say "user postgres cannot reach $data (PostgreSQL refuses to run as root); move the checkout somewhere it can, or run as another user"
                exit 1
            }
        fi
        if [[ -n "$of" ]]; then
            as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$of" -U postgres -R -X stream -c fast -D "$data" > "$log" 2>&1 ||
                { say "pg_basebackup from 127.0.0.1:$of failed:"; tail -n 5 "$log" >&2; exit 1; }
        else
            as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 > "$log" 2>&1
        fi
    fi
    touch "$log"; [[ $EUID -eq 0 ]] && chown postgres: "$log"
    as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -o "-p $port -c listen_addresses=127.0.0.1 -k ''" start > /dev/null
    head -n 1 "$data/postmaster.pid" > "$DIR/$name.pid"
    if [[ -f "$data/standby.signal" ]]; then
        say "postgresql running on 127.0.0.1:$port (a standby of 127.0.0.1:${of:-its primary})"
        return
    fi
    if [[ -z "$(psql_at "$port" "SELECT 1 FROM pg_roles WHERE rolname = 'tutorial'")" ]]; then
        psql_at "$port" "CREATE ROLE tutorial LOGIN PASSWORD 'tutorial'"
        psql_at "$port" "CREATE DATABASE tutorial OWNER tutorial"
    fi
    say "postgresql running on 127.0.0.1:$port (database tutorial)"
}

# The PostgreSQL server that takes writes: the one whose data has no standby.signal.
pg_primary() { [[ -f "$DIR/postgres/standby.signal" ]] && echo postgres2 || echo postgres; }
pg_other() { [[ "$1" == postgres ]] && echo postgres2 || echo postgres; }
pg_port() { [[ "$1" == postgres ]] && echo "$PG_PORT" || echo $((PG_PORT + 1)); }

# The primary and a synchronous standby of it.
start_postgres_ha() {
    local primary other
    primary="$(pg_primary)" other="$(pg_other "$primary")"
    start_postgres "$primary" "$(pg_port "$primary")"
    start_postgres "$other" "$(pg_port "$other")" "$(pg_port "$primary")"
    make_synchronous "$(pg_port "$primary")"
}

# Makes the primary on port $1 wait at every commit until its standby has it too
# (synchronous_standby_names; synchronous_commit stays on), and returns once the standby
# is synchronous: a block PostgreSQL says it committed is then on both servers.
make_synchronous() {
    psql_at "$1" "ALTER SYSTEM SET synchronous_standby_names = '*'"
    psql_at "$1" "SELECT pg_reload_conf()" > /dev/null
    for _ in $(seq 1 600); do
        if [[ "$(psql_at "$1" "SELECT sync_state FROM pg_stat_replication")" == sync ]]; then
            say "postgresql on 127.0.0.1:$1 commits synchronously to its standby"
            return
        fi
        sleep 0.1
    done
    say "the standby did not become synchronous within 60 s; see .devnet/cluster/postgres*.log"
    exit 1
}

stop_postgres() {
    local name
    for name in postgres postgres2; do
        if alive "$DIR/$name.pid"; then
            as_pg "$(pg_bin)/pg_ctl" -D "$DIR/$name" -m fast -w stop > /dev/null
            say "stopped $name"
        fi
        rm -f "$DIR/$name.pid"
    done
}

# --- faults of the HA cluster -------------------------------------------------------

# Seconds since $1 (date +%s.%N), to a tenth.
since() { awk -v t="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - t }'; }

# Waits up to 120 s for a block stored after the failover ended at time $2 (date +%s.%N)
# in the PostgreSQL primary on port $3, then says when it came after the fault at time $1,
# and the longest time between two stored blocks from the last one stored before the fault
# on (PostgreSQL's stored_at; a slot is 1 s, so 1 s means no slot was lost).
wait_for_block() {
    local number gap
    for _ in $(seq 1 600); do
        number="$(psql_at "$3" "SELECT max(number) FROM blocks WHERE stored_at > to_timestamp($2)" tutorial 2>/dev/null || true)"
        if [[ -n "$number" ]]; then
            gap="$(psql_at "$3" "SELECT round(max(extract(epoch FROM stored_at - before))::numeric, 1)
                FROM (SELECT stored_at, lag(stored_at) OVER (ORDER BY number) AS before FROM blocks
                      WHERE number >= (SELECT max(number) FROM blocks WHERE stored_at <= to_timestamp($1))) AS blocks" tutorial)"
            say "block $number stored, $(since "$1") s after the kill; the longest time without a block: $gap s"
            return
        fi
        sleep 0.2
    done
    say "no new block within 120 s of the failover; see .devnet/cluster/node*.log"
    exit 1
}

need_ha() { ha || { say "fault $1 needs the HA cluster: scripts/cluster.sh start --ha"; exit 2; }; }

fault_redis_primary() {
    need_ha redis-primary
    local primary name started new=""
    primary="$(redis_primary)" name="$(redis_name "$primary")"
    started="$(date +%s.%N)"
    kill_pid "$DIR/$name.pid" "$name" || { say "the Redis primary (127.0.0.1:$primary) is not running"; exit 1; }
    say "killed the Redis primary on 127.0.0.1:$primary"
    for _ in $(seq 1 600); do
        new="$(redis_primary)"
        [[ "$new" != "$primary" ]] && break
        sleep 0.1
    done
    [[ "$new" != "$primary" ]] || { say "the Sentinels promoted no replica within 60 s; see .devnet/cluster/sentinel*.log"; exit 1; }
    local promoted; promoted="$(date +%s.%N)"
    say "the Sentinels promoted the replica on 127.0.0.1:$new, $(since "$started") s after the kill"
    # As a supervisor restarts it, as a replica of the new primary (the Sentinels would
    # make it one too, once they see it back); before the wait for a block, so that the
    # pair is whole again even if no block comes.
    start_redis "$name" "$primary" "$new"
    wait_for_block "$started" "$promoted" "$(pg_port "$(pg_primary)")"
}

fault_pg_primary() {
    need_ha pg-primary
    local primary standby started pid
    primary="$(pg_primary)" standby="$(pg_other "$primary")"
    alive "$DIR/$standby.pid" || { say "the standby ($standby) is not running: a failover would lose blocks"; exit 1; }
    alive "$DIR/$primary.pid" || { say "the PostgreSQL primary ($primary) is not running"; exit 1; }
    started="$(date +%s.%N)"
    # The server and every process it started, as a host that dies takes them all.
    pid="$(head -n 1 "$DIR/$primary.pid")"
    # shellcheck disable=SC2046
    kill -KILL "$pid" $(pgrep -P "$pid") 2>/dev/null || true
    wait_gone "$DIR/$primary.pid" 100 || say "the primary (pid $pid) is still there 10 s after SIGKILL"
    rm -f "$DIR/$primary.pid"
    say "killed the PostgreSQL primary on 127.0.0.1:$(pg_port "$primary")"
    # What Patroni, pg_auto_failover or repmgr do once the primary is gone: promote the
    # synchronous standby. It has every commit the old primary confirmed.
    psql_at "$(pg_port "$standby")" "SELECT pg_promote(true, 60)" > /dev/null
    psql_at "$(pg_port "$standby")" "ALTER SYSTEM RESET synchronous_standby_names"
    psql_at "$(pg_port "$standby")" "SELECT pg_reload_conf()" > /dev/null
    say "promoted the standby on 127.0.0.1:$(pg_port "$standby"), $(since "$started") s after the kill"
    wait_for_block "$started" "$(date +%s.%N)" "$(pg_port "$standby")"
    # The old primary's data may end in commits the standby never confirmed: it is not
    # reused but made again as a standby of the new primary.
    rm -rf "${DIR:?}/$primary"
    start_postgres "$primary" "$(pg_port "$primary")" "$(pg_port "$standby")"
    make_synchronous "$(pg_port "$standby")"
}

start_node() {
    local name="$1" n; n="$(index_of "$1")"
    if alive "$DIR/$name.pid"; then say "$name already running (pid $(cat "$DIR/$name.pid"))"; return; fi
    if port_taken "920$n"; then
        say "$name not started: 127.0.0.1:920$n is in use (is $name running by hand?)"
        return
    fi
    local from=$(($(stat -c %s "$DIR/$name.log" 2>/dev/null || echo 0) + 1))
    (eval "$(node_env "$name")"; nohup "$ROOT/target/debug/member-nodes" >> "$DIR/$name.log" 2>&1 < /dev/null &
        echo $! > "$DIR/$name.pid")
    # Its /status answers once it has reached PostgreSQL and Redis: wait for that (30 s at
    # most), so that `status`, or Prometheus's targets, find every node started.
    local answers="" deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:920$n/status" && { answers=1; break; }
        alive "$DIR/$name.pid" || { say "$name exited:"; last_error "$DIR/$name.log" "$from" >&2; exit 1; }
        sleep 0.1
    done
    say "$name running as a $(role_of "$name") (pid $(cat "$DIR/$name.pid")): http://127.0.0.1:920$n/status, log .devnet/cluster/$name.log"
    [[ -n "$answers" ]] || say "$name's /status does not answer yet; see its log"
}

node_env() {
    local n; n="$(index_of "$1")"
    cat <<ENV
export INSTANCE_ID=$1 MODE=$(mode_of "$1")
export ETH_CLIENT_URL=http://127.0.0.1:856$n JWT_SECRET=$DIR/jwt.hex GENESIS=$ROOT/genesis.json
export HEALTH_ADDR=127.0.0.1:920$n
ENV
    if ha; then
        # The Sentinels to ask where the Redis primary is; both PostgreSQL servers, of which
        # only the one that takes writes is kept.
        cat <<ENV
export REDIS_ADDR='redis-sentinel://127.0.0.1:${SENTINEL_PORTS[0]}/0?sentinelServiceName=$SERVICE&node=127.0.0.1:${SENTINEL_PORTS[1]}&node=127.0.0.1:${SENTINEL_PORTS[2]}'
export POSTGRES_URL='postgres://tutorial:tutorial@127.0.0.1:$PG_PORT,127.0.0.1:$((PG_PORT + 1))/tutorial?target_session_attrs=read-write'
ENV
    else
        echo "export REDIS_ADDR=127.0.0.1:$REDIS_PORT POSTGRES_URL=postgres://tutorial:tutorial@127.0.0.1:$PG_PORT/tutorial"
    fi
}

start() {
    case "${1:-}" in
        "") ;;
        --ha)
            if ! ha; then
                local name
                for name in "${NODES[@]}"; do
                    alive "$DIR/$name.pid" &&
                        say "$name is running with the single servers' URLs: restart it (node $name stop, then start) to follow failovers"
                done
            fi
            mkdir -p "$DIR"
            touch "$HA_FILE" ;;
        *) echo "usage: $0 start [--ha]" >&2; exit 2 ;;
    esac
    "$ROOT/scripts/setup.sh" geth services
    install_cast
    (cd "$ROOT" && cargo build --quiet -p member-nodes)
    ensure_jwt "$DIR/jwt.hex"
    if ha; then
        start_redis_ha
        start_postgres_ha
    else
        start_redis
        start_postgres
    fi
    local peers=() datadirs=()
    for name in "${NODES[@]}"; do
        local n; n="$(index_of "$name")"
        start_geth "$DIR/$name/geth" "856$n" "857$n" "606$n" "$DIR/jwt.hex" "$DIR/$name/geth.log" "$DIR/$name/geth.pid" "3030$n"
        peers+=("857$n:3030$n")
        datadirs+=("857$n:${DIR#"$ROOT"/}/$name/geth")
    done
    same_chain "" "${datadirs[@]}" || { [[ $? -eq 1 ]] && chain_remedy; exit 1; }
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
    # The Sentinels first, or they would fail over as the primary stops.
    for k in 1 2 3; do [[ -f "$DIR/sentinel$k.pid" ]] && stop_pid "$DIR/sentinel$k.pid" "sentinel$k"; done
    stop_pid "$DIR/redis.pid" redis
    [[ -f "$DIR/redis2.pid" ]] && stop_pid "$DIR/redis2.pid" redis2
    return 0
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
    if ha; then
        local primary replica standby
        primary="$(redis_primary)" replica=$(( primary == REDIS_PORT ? REDIS_PORT + 1 : REDIS_PORT ))
        echo "redis: primary 127.0.0.1:$primary ($(redis-cli -p "$primary" ping 2>/dev/null || echo 'no answer')), replica 127.0.0.1:$replica ($(redis-cli -p "$replica" INFO replication 2>/dev/null | tr -d '\r' | sed -n 's/^master_link_status:/link /p' || true))"
        primary="$(pg_primary)" standby="$(pg_other "$primary")"
        echo "postgresql: primary 127.0.0.1:$(pg_port "$primary"), standby 127.0.0.1:$(pg_port "$standby") ($(psql_at "$(pg_port "$primary")" "SELECT sync_state FROM pg_stat_replication" 2>/dev/null || echo 'no answer'))"
    fi
}

case "${1:-}" in
    start) start "${2:-}" ;;
    fault)
        case "${2:-}" in
            redis-primary) fault_redis_primary ;;
            pg-primary) fault_pg_primary ;;
            *) echo "usage: $0 fault redis-primary|pg-primary" >&2; exit 2 ;;
        esac ;;
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
    *) echo "usage: $0 start [--ha]|stop|clean|status|env NAME|node NAME start|stop|kill|fault redis-primary|pg-primary" >&2; exit 2 ;;
esac
