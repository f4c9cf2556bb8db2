//! End-to-end testing of CosmicSyncCore with real `cosmic-node` processes on loopback.
//!
//! The library holds what the end-to-end tests (`e2e/`), the scenario runner
//! (`cargo xtask e2e`) and the process benchmarks (`cargo xtask bench`) share:
//! [`harness::TestNode`] starts and signals real node processes, and [`client::Api`]
//! talks to their HTTP API.
//!
//! The binary is not built here (tests never run cargo): `cargo xtask test` builds it and
//! passes its path in `COSMIC_NODE_BIN`; without that variable the harness looks for it
//! beside its own executable in the target dir (`cargo build -p cosmic-node` puts it there).
#![allow(
    clippy::disallowed_methods,
    reason = "harness tasks end with their test, scenario or benchmark run"
)]

pub mod bench;
pub mod client;
pub mod harness;
pub mod scenarios;
pub mod soak;
