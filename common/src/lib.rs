//! What every step of the tutorial needs: an Engine API client and its helpers, the
//! plumbing every long-running service shares, and the test harness. The pieces of a
//! long-running producer (timing, the round with its retries, the block store, what
//! `/ready` and `/metrics` say) are Part 2's lesson, and live in `02-single-node`, whose
//! library Parts 3 and 4 build on.
//!
//! Layout:
//! - [`auth`]: the JWT secret file and the HS256 token on every Engine API request.
//! - [`rpc`]: JSON-RPC 2.0 over HTTP/1.1 keep-alive, with per-call timeouts.
//! - [`engine`]: one typed method per Engine API wire method, beside its timeout.
//! - [`fork`]: the chain's fork times (from `genesis.json`), the getPayload version, and
//!   which chain a node is on (block 0, chain id, fork id, genesis forks, blob schedule).
//! - [`types`]: the answers: payload status, forkchoice result, built payload, block, head.
//! - [`error`]: what a call can fail with, as variants a caller branches on.
//! - [`payload`]: pure helpers: payload attributes, versioned hashes, forkchoice state.
//! - [`startup`]: the capability, chain-id and fork-schedule checks made before driving an EL.
//! - [`redact`]: URLs and connection strings without their secrets, for messages.
//! - [`config`]: the flags every binary has (`--eth-client-url`, `--jwt-secret`, `--genesis`),
//!   and with feature `service` those of every service (`--health-addr`, `--el-wait`).
//! - `service` (feature `service`, Parts 2 to 4): the endpoints' HTTP server, the metrics
//!   export, shutdown on a signal, and waiting for Geth at start.
//! - [`logging`]: `tracing` to stderr, filtered by `RUST_LOG`.
//! - `harness` (feature `harness`, tests only): starts a real Geth (and Redis, PostgreSQL,
//!   CometBFT, toxiproxy, Prometheus) per test.

pub mod auth;
mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod fork;
pub mod logging;
pub mod payload;
pub mod redact;
pub mod rpc;
pub mod startup;
pub mod types;

#[cfg(feature = "service")]
pub mod service;

#[cfg(feature = "harness")]
pub mod harness;

pub use auth::JwtSecret;
pub use clock::unix_time;
pub use engine::EngineClient;
pub use error::{EngineError, RpcErrorKind};
pub use fork::{ElChain, ElForks, ForkSchedule};
pub use types::{Block, BlockTag, BuiltPayload, ForkchoiceUpdated, Head, PayloadStatus};
