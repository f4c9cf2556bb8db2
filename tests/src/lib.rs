//! End-to-end tests of CosmicSyncCore; the tests themselves are in `e2e/`.
//!
//! They drive the real `cosmic-node` binary on loopback. The binary is not built by the
//! tests (tests never run cargo): `cargo xtask test` builds it and passes its path in
//! `COSMIC_NODE_BIN`; without that variable the tests look for it beside their own
//! executable in the target dir (`cargo build -p cosmic-node` puts it there).
