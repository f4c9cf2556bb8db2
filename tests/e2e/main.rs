//! End-to-end tests: real `cosmic-node` processes on temporary data dirs.
//!
//! Each test is bounded in time: every wait has a deadline, and [`harness::TestNode`]
//! kills its process when dropped.

mod api;
mod harness;
mod identity;
mod lifecycle;
mod sync;
