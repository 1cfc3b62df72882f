//! Part 3 against the real engines: Redis for the lease, PostgreSQL for the block log, a
//! Geth per node. `lease` and `block_log` call the library directly; `cluster` runs the
//! `member-nodes` binary as a user would and kills, pauses and restarts things; `ha` does it
//! to replicated Redis and PostgreSQL servers.

mod block_log;
mod cluster;
mod faults;
mod ha;
mod lease;
mod monitor;
mod support;
