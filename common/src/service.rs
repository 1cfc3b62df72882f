//! The plumbing of a long-running service, the same in Parts 2, 3 and 4 (feature
//! `service`): none of it is a step's lesson, so it lives here and the diff between steps
//! stays about what each step adds. Each service says what its endpoints report (its
//! `server.rs` and `metrics.rs`); this module serves them. Its flags, `--health-addr` and
//! `--el-wait`, are [`crate::config::ServiceArgs`].
//!
//! - [`http`]: `/health`, `/ready`, `/metrics` and `/status` over HTTP/1.1.
//! - [`exporter`]: the Engine API metrics every service exports, and the metrics text.
//! - [`shutdown`]: Ctrl-C or SIGTERM, as a cancellation token; a sleep that ends on it.
//! - [`startup`]: waiting for Geth at start, as long as `--el-wait` allows.

pub mod exporter;
pub mod http;
pub mod shutdown;
pub mod startup;
