//! Part 1 against a real Geth. The `engine-api` binary is run as a user runs it, with its
//! environment variables, and the chain is then read back from Geth. `blocks` checks what
//! it makes, `input` what it does with bad input.

mod blocks;
mod input;
mod support;
