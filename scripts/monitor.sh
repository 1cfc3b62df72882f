#!/usr/bin/env bash
# Prometheus for whichever devnets run, natively: it scrapes every consensus process
# (single-node, the cluster's nodes, the validators' apps and CometBFT nodes) and every
# Geth, and evaluates the alert and recording rules of monitoring/rules.yml.
#
#   scripts/monitor.sh start     write the scrape config for the devnets that run now, and
#                                start Prometheus (or make a running one read it again)
#   scripts/monitor.sh status    each target's health, and the alerts that fire
#   scripts/monitor.sh config    print the scrape config it would write
#   scripts/monitor.sh write     write it and the rules to .devnet/monitor without starting
#                                Prometheus (for the compose file's Prometheus, which it
#                                makes read them again if it runs)
#   scripts/monitor.sh stop      stop Prometheus (its data stays in .devnet/monitor)
#   scripts/monitor.sh clean     stop it and delete .devnet/monitor
#
# With the compose file's Prometheus running on the port instead (`docker compose --profile
# monitor up -d`), `start` and `write` make it read the new config, `status` reads it, and
# `stop` and `clean` say how to stop it.
#
# Prometheus listens on 127.0.0.1:9090 (PROMETHEUS_PORT). Start the devnets first; run
# `start` again after starting or stopping one, so the targets follow. The targets are
# whatever answers on the devnet scripts' own port table (natively or in Docker):
#   devnet      Geth 6060 (metrics), single-node 9100 (if it runs)
#   cluster     node N 920N, its Geth 606N
#   bft         validator I's app 9300+I, CometBFT 26660+10I, Geth 6070+I; full node K's
#               app 9310+K, CometBFT 26760+10K, Geth 6080+K
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
DIR="$ROOT/.devnet/monitor"
PORT="${PROMETHEUS_PORT:-9090}"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Whether the Prometheus on $PORT is the compose file's: it reads our config from where
# the compose file mounts .devnet/monitor (/etc/prometheus-devnet). Ours has a pid file.
compose_runs() {
    local flags
    flags="$(curl -sf --max-time 2 "http://127.0.0.1:$PORT/api/v1/status/flags" 2>/dev/null)" || return 1
    [[ "$flags" =~ \"config\.file\":\"[^\"]*/prometheus-devnet/prometheus\.yml\" ]]
}

# Whether the Prometheus on $PORT is the compose file's and not one `start` started.
compose_only() { ! alive "$DIR/prometheus.pid" && compose_runs; }

# Makes the Prometheus on $PORT read its config and rules again.
reload() {
    curl -sf --max-time 5 -X POST "http://127.0.0.1:$PORT/-/reload" > /dev/null ||
        { say "Prometheus on port $PORT did not reload; see its log"; exit 1; }
}

# One scrape job: $1 job name, $2 metrics path, then "target devnet node" triples.
job() {
    local name="$1" path="$2"; shift 2
    [[ $# -gt 0 ]] || return 0
    printf '  - job_name: %s\n    metrics_path: %s\n    static_configs:\n' "$name" "$path"
    while [[ $# -gt 0 ]]; do
        printf '      - targets: ["%s"]\n        labels: {devnet: %s, node: %s}\n' "$1" "$2" "$3"
        shift 3
    done
}

# The scrape config for the devnets that run now: whatever answers on the devnet scripts'
# ports (natively or in Docker).
config() {
    local sequencers=() members=() apps=() comets=() geths=() n i
    if port_taken 6060; then geths+=("127.0.0.1:6060" devnet geth); fi
    if port_taken 9100; then sequencers+=("127.0.0.1:9100" devnet single-node); fi
    for n in 1 2 3; do
        if port_taken "920$n"; then members+=("127.0.0.1:920$n" cluster "node$n"); fi
        if port_taken "606$n"; then geths+=("127.0.0.1:606$n" cluster "node$n"); fi
    done
    local name
    for ((i = 0; i < 20; i++)); do
        name="node$i"; ((i < 10)) || name="full$((i - 10))"
        if port_taken $((9300 + i)); then apps+=("127.0.0.1:$((9300 + i))" bft "$name"); fi
        if port_taken $((26660 + 10 * i)); then comets+=("127.0.0.1:$((26660 + 10 * i))" bft "$name"); fi
        if port_taken $((6070 + i)); then geths+=("127.0.0.1:$((6070 + i))" bft "$name"); fi
    done
    cat <<YAML
# Written by scripts/monitor.sh for the devnets that ran when it was started.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
YAML
    job single-node /metrics "${sequencers[@]}"
    job member-nodes /metrics "${members[@]}"
    job cometbft-consensus /metrics "${apps[@]}"
    job cometbft /metrics "${comets[@]}"
    job geth /debug/metrics/prometheus "${geths[@]}"
}

prometheus_bin() {
    command -v prometheus >/dev/null || "$ROOT/scripts/setup.sh" services
    command -v prometheus
}

# Writes the config and the rules into .devnet/monitor (where the compose file's Prometheus
# reads them too); sets `targets` to how many it found.
write() {
    mkdir -p "$DIR"
    config > "$DIR/prometheus.yml"
    cp "$ROOT/monitoring/rules.yml" "$DIR/rules.yml"
    targets="$(grep -c 'targets:' "$DIR/prometheus.yml" || true)"
    [[ "$targets" -gt 0 ]] || say "no devnet runs: Prometheus will scrape nothing until you start one and run this again"
}

# `write`, then has the compose file's Prometheus, if it runs, read the new config.
write_for_compose() {
    local targets reloaded=""
    write
    if compose_runs; then reload; reloaded="; the compose file's Prometheus reloaded them"; fi
    say "wrote .devnet/monitor/prometheus.yml ($targets targets) and rules.yml$reloaded"
}

start() {
    local bin targets
    write
    if alive "$DIR/prometheus.pid"; then
        reload
        say "Prometheus (pid $(cat "$DIR/prometheus.pid")) reloaded: $targets targets"
        return
    fi
    if compose_runs; then
        reload
        say "the compose file's Prometheus runs on port $PORT; it reloaded the config: $targets targets"
        return
    fi
    bin="$(prometheus_bin)"
    port_taken "$PORT" && { say "port $PORT is taken (another Prometheus? Debian's service: sudo systemctl disable --now prometheus); or set PROMETHEUS_PORT"; exit 1; }
    nohup "$bin" --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/data" \
        --web.listen-address="127.0.0.1:$PORT" --web.enable-lifecycle \
        >> "$DIR/prometheus.log" 2>&1 < /dev/null &
    echo $! > "$DIR/prometheus.pid"
    for _ in $(seq 1 300); do
        if curl -sf --max-time 1 "http://127.0.0.1:$PORT/-/ready" > /dev/null; then
            say "Prometheus running (pid $(cat "$DIR/prometheus.pid")): http://127.0.0.1:$PORT, $targets targets, log .devnet/monitor/prometheus.log"
            return
        fi
        alive "$DIR/prometheus.pid" || { say "Prometheus exited; the end of its log:"; tail -n 20 "$DIR/prometheus.log" >&2; exit 1; }
        sleep 0.1
    done
    say "Prometheus did not get ready within 30 s; see .devnet/monitor/prometheus.log"
    exit 1
}

# Stops the Prometheus `start` started. The compose file's is Docker's to stop.
stop() {
    if compose_only; then
        say "the compose file's Prometheus runs on port $PORT; stop it with: docker compose --profile monitor stop prometheus"
        return
    fi
    stop_pid "$DIR/prometheus.pid" prometheus
}

# Each target's health, then the alerts that are pending or firing, one a line.
status() {
    command -v jq >/dev/null || "$ROOT/scripts/setup.sh" services
    alive "$DIR/prometheus.pid" || compose_runs || { say "not running"; return 1; }
    local api="http://127.0.0.1:$PORT/api/v1"
    curl -sf --max-time 5 "$api/targets?state=active" |
        jq -r '.data.activeTargets[] | "target \(.labels.devnet) \(.labels.node) \(.labels.job): \(.health)"'
    curl -sf --max-time 5 "$api/alerts" |
        jq -r '.data.alerts[] | "alert \(.labels.alertname) \(.labels.devnet // "") \(.labels.node // ""): \(.state)"'
}

case "${1:-}" in
    start) start ;;
    status) status ;;
    config) config ;;
    write) write_for_compose ;;
    stop) stop ;;
    clean)
        # The compose file's Prometheus reads its config from there: stop it first.
        if compose_only; then stop; exit 1; fi
        stop; rm -rf "$DIR"; say "removed .devnet/monitor" ;;
    *) echo "usage: $0 start|status|config|write|stop|clean" >&2; exit 2 ;;
esac
