#!/usr/bin/env bash
# Installs what the README commands need, skipping what is already there.
#
#   scripts/setup.sh            everything: geth, cometbft, cast, toxiproxy, mdbook, services, fonts
#   scripts/setup.sh geth       only the pinned Geth (what Part 1 needs)
#   scripts/setup.sh cast       only Foundry's cast (the client the docs send transactions with)
#   scripts/setup.sh services   the Debian packages: Redis and PostgreSQL (Part 3), faketime
#                               (the clock tests), Prometheus (the monitor, its rule tests) and
#                               jq (the monitor's status)
#   scripts/setup.sh fonts      the font the benchmark plots use (the report test draws them)
#
# Geth, CometBFT, cast, toxiproxy and mdBook go into .tools/bin (project-local); the
# services come from apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../.env
source "$ROOT/.env"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"

say() { echo "setup: $*" >&2; }

# The version line of `geth version`. Read whole, then matched: piping into `grep -q` would
# let grep exit at the match while geth still writes, and pipefail turns geth's SIGPIPE
# into a failed check (exit 141). Empty if geth does not run, so the caller says why.
geth_version() {
    local out
    out="$("$TOOLS/bin/geth" version 2>/dev/null)" || true
    sed -n 's/^Version: //p' <<<"$out"
}

install_geth() {
    local want="${GETH_VERSION#v}-stable"
    if [[ -x "$TOOLS/bin/geth" ]] && [[ "$(geth_version)" == "$want" ]]; then
        say "geth $GETH_VERSION already in .tools/bin"
        return
    fi
    if ! command -v go >/dev/null; then
        say "Go is needed to install geth $GETH_VERSION (https://go.dev/dl), or use Docker (see README)"
        exit 1
    fi
    say "installing geth $GETH_VERSION with go install (a few minutes the first time)"
    GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/ethereum/go-ethereum/cmd/geth@$GETH_VERSION"
    local got
    got="$(geth_version)"
    [[ "$got" == "$want" ]] || { say "installed geth reports version '$got', expected '$want'"; exit 1; }
}

install_cometbft() {
    local want="${COMETBFT_VERSION#v}"
    if [[ -x "$TOOLS/bin/cometbft" ]] && [[ "$("$TOOLS/bin/cometbft" version)" == "$want" ]]; then
        say "cometbft $COMETBFT_VERSION already in .tools/bin"
        return
    fi
    command -v go >/dev/null || { say "Go is needed to install cometbft $COMETBFT_VERSION (https://go.dev/dl)"; exit 1; }
    say "installing cometbft $COMETBFT_VERSION with go install (a minute or two the first time)"
    GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/cometbft/cometbft/cmd/cometbft@$COMETBFT_VERSION"
    [[ "$("$TOOLS/bin/cometbft" version)" == "$want" ]]
}

# Foundry publishes cast as a binary inside an npm package per platform; npm fetches and
# checks it (the registry's integrity hash), and we keep only the binary.
cast_version() {
    local out
    out="$("$TOOLS/bin/cast" --version 2>/dev/null)" || true
    sed -n 's/^cast Version: //p' <<<"$out"
}

install_cast() {
    if [[ -x "$TOOLS/bin/cast" ]] && [[ "$(cast_version)" == "$CAST_VERSION" ]]; then
        say "cast $CAST_VERSION already in .tools/bin"
        return
    fi
    command -v npm >/dev/null || { say "npm (Node.js) is needed to install cast $CAST_VERSION (https://nodejs.org), or install Foundry yourself and copy cast to .tools/bin"; exit 1; }
    local arch
    case "$(uname -m)" in
        x86_64) arch=amd64 ;;
        aarch64 | arm64) arch=arm64 ;;
        *) say "no cast package for $(uname -m)"; exit 1 ;;
    esac
    local package="@foundry-rs/cast-linux-$arch" tmp
    say "installing cast $CAST_VERSION from npm ($package)"
    tmp="$(mktemp -d)"
    npm install --prefix "$tmp" --no-save --no-audit --no-fund --silent "$package@$CAST_VERSION" >&2
    install -m 0755 "$tmp/node_modules/$package/bin/cast" "$TOOLS/bin/cast"
    rm -rf "$tmp"
    local got
    got="$(cast_version)"
    [[ "$got" == "$CAST_VERSION" ]] || { say "installed cast reports version '$got', expected $CAST_VERSION"; exit 1; }
}

# Toxiproxy's server builds as `server`; it is kept as .tools/bin/toxiproxy-server. Its
# version flag says only "git", so the module version is read from the binary.
install_toxiproxy() {
    local bin="$TOOLS/bin/toxiproxy-server" got=""
    if [[ -x "$bin" ]] && command -v go >/dev/null; then
        got="$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/Shopify/toxiproxy/v2" { print $3 }')"
    fi
    if [[ "$got" == "$TOXIPROXY_VERSION" ]]; then
        say "toxiproxy $TOXIPROXY_VERSION already in .tools/bin"
        return
    fi
    command -v go >/dev/null || { say "Go is needed to install toxiproxy $TOXIPROXY_VERSION (https://go.dev/dl)"; exit 1; }
    say "installing toxiproxy $TOXIPROXY_VERSION with go install"
    local tmp; tmp="$(mktemp -d)"
    GOBIN="$tmp" GOFLAGS=-mod=mod go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    mv "$tmp/server" "$bin"
    rm -rf "$tmp"
}

install_mdbook() {
    if [[ -x "$TOOLS/bin/mdbook" ]] && [[ "$("$TOOLS/bin/mdbook" --version)" == "mdbook v$MDBOOK_VERSION" ]]; then
        say "mdbook $MDBOOK_VERSION already in .tools/bin"
        return
    fi
    say "installing mdbook $MDBOOK_VERSION with cargo install"
    cargo install mdbook --version "$MDBOOK_VERSION" --locked --root "$TOOLS" \
        --no-default-features --features search --quiet
}

install_services() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
    compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || missing+=(faketime)
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v jq >/dev/null || missing+=(jq)
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "redis-server, postgresql, faketime, prometheus and jq already installed"
        return
    fi
    apt_install "${missing[@]}"
    # Debian starts what it installs: the devnets want those ports.
    local services=() s
    for s in redis-server postgresql prometheus; do
        if [[ " ${missing[*]} " == *" $s "* ]]; then services+=("$s"); fi
    done
    if [[ -d /run/systemd/system && ${#services[@]} -gt 0 ]]; then
        say "apt-get may have started ${services[*]} as system services, on the ports the devnets use (6379, 5432, 9090): 'sudo systemctl disable --now ${services[*]}' stops them (for the scripts alone, REDIS_PORT, PG_PORT and PROMETHEUS_PORT move the devnets instead)"
    fi
}

# The font the benchmark plots are drawn with.
install_fonts() {
    if [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]]; then
        say "fonts-dejavu-core already installed"
        return
    fi
    apt_install fonts-dejavu-core
}

apt_install() {
    local missing=("$@")
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || { say "need root or sudo to apt-get install ${missing[*]}"; exit 1; }
        sudo=(sudo)
    fi
    say "installing ${missing[*]} with apt-get"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(geth cometbft cast toxiproxy mdbook services fonts)
for part in "${parts[@]}"; do
    case "$part" in
        geth) install_geth ;;
        cometbft) install_cometbft ;;
        cast) install_cast ;;
        toxiproxy) install_toxiproxy ;;
        mdbook) install_mdbook ;;
        services) install_services ;;
        fonts) install_fonts ;;
        *) say "unknown part '$part' (geth, cometbft, cast, toxiproxy, mdbook, services, fonts)"; exit 2 ;;
    esac
done
