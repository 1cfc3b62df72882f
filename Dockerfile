# Part 4's validator network in Docker: the pinned Geth and CometBFT (versions from .env,
# passed by docker-compose.yml) and this checkout's cometbft-consensus, running the same
# scripts/bft.sh as the native path.
#
#   docker compose --profile bft up --build
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUST_IMAGE=rust:1.95-bookworm

FROM ${GO_IMAGE} AS go-tools
ARG GETH_VERSION
ARG COMETBFT_VERSION
RUN GOFLAGS=-mod=mod go install "github.com/ethereum/go-ethereum/cmd/geth@${GETH_VERSION}" \
 && GOFLAGS=-mod=mod go install "github.com/cometbft/cometbft/cmd/cometbft@${COMETBFT_VERSION}"

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cometbft-consensus

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash ca-certificates curl procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tutorial
COPY --from=go-tools /go/bin/geth /go/bin/cometbft /usr/local/bin/
COPY --from=build /src/target/release/cometbft-consensus /usr/local/bin/
COPY genesis.json ./
COPY scripts/ scripts/
ENV GETH_BIN=/usr/local/bin/geth COMETBFT_BIN=/usr/local/bin/cometbft APP_BIN=/usr/local/bin/cometbft-consensus
CMD ["scripts/bft.sh", "run"]
