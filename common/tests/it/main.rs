//! Integration tests of `common`: the client against a mock EL (error paths Geth cannot be
//! made to produce) and against a real Geth started by the harness.

mod geth;
mod mock_el;
mod services;
