//! What every step of the tutorial shares: an Engine API client and its helpers.
//!
//! Part 1 uses the client; Parts 2 to 4 also share the pieces of a long-running producer,
//! moved here once two steps needed them unchanged, so the diff between steps stays about
//! the lesson.
//!
//! Layout:
//! - [`auth`]: the JWT secret file and the HS256 token on every Engine API request.
//! - [`rpc`]: JSON-RPC 2.0 over HTTP/1.1 keep-alive, with per-call timeouts.
//! - [`engine`]: one typed method per Engine API wire method, beside its timeout.
//! - [`fork`]: the chain's fork times (from `genesis.json`) and the getPayload version.
//! - [`types`]: the answers: payload status, forkchoice result, built payload, block, head.
//! - [`error`]: what a call can fail with, as variants a caller branches on.
//! - [`payload`]: pure helpers: payload attributes, versioned hashes, forkchoice state.
//! - [`startup`]: the capability and chain-id checks made before driving an EL.
//! - [`redact`]: URLs and connection strings without their secrets, for messages.
//! - [`config`]: the flags the binaries share (`--eth-client-url`, `--block-time`, …).
//! - [`logging`]: `tracing` to stderr, filtered by `RUST_LOG`.
//!
//! For long-running producers (Part 2 on):
//! - [`slot`]: when the next block is due (pure functions).
//! - [`round`]: build, import, finalize and replay, with their checks and retries.
//! - [`fault`]: passing or fatal: what a failed step means for the loop.
//! - [`clock`]: the wall clock, cancellable sleeps, backoff.
//! - [`server`], [`metrics`]: `/health`, `/ready`, `/metrics`, and the Engine API metrics.
//! - [`shutdown`]: Ctrl-C or SIGTERM.
//! - [`store`]: an embedded block store (redb), and replaying it into a Geth that lost blocks.
//! - `harness` (feature `harness`, tests only): starts a real Geth (and Redis, PostgreSQL)
//!   per test.

pub mod auth;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod fault;
pub mod fork;
pub mod logging;
pub mod metrics;
pub mod payload;
pub mod redact;
pub mod round;
pub mod rpc;
pub mod server;
pub mod shutdown;
pub mod slot;
pub mod startup;
pub mod store;
pub mod types;

#[cfg(feature = "harness")]
pub mod harness;

pub use auth::JwtSecret;
pub use engine::EngineClient;
pub use error::{EngineError, RpcErrorKind};
pub use fault::Fault;
pub use fork::ForkSchedule;
pub use types::{Block, BlockTag, BuiltPayload, ForkchoiceUpdated, Head, PayloadStatus};
