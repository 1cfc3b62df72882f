//! Part 3 against the real engines: Redis for the lease, PostgreSQL for the block log, a
//! Geth per node. `lease` and `block_log` call the library directly; `cluster` runs the
//! `member-nodes` binary as a user would and kills, pauses and restarts things.

mod block_log;
mod cluster;
mod faults;
mod lease;
mod monitor;
mod support;
