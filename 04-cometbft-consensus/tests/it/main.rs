//! Part 4 against real CometBFT and Geth: validator networks of real processes, and an
//! ABCI client that talks to a real app the way CometBFT does (and the ways it does not).

mod abci_input;
mod faults;
mod network;
mod support;
