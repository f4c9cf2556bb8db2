//! The process harness, shared with the scenario and benchmark runners.

pub(crate) use cosmic_tests::harness::*;
