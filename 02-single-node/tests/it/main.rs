//! Part 2 against a real Geth. The sequencer runs as its own process, started the way a
//! user starts it (environment variables), so it can be killed with SIGKILL like a crash.
//! `blocks` checks what it makes, `recovery` how it puts Geth back on its chain, `faults`
//! what it does when Geth, the network or the clock misbehave.

mod blocks;
mod faults;
mod recovery;
mod support;
