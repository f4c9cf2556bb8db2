//! Counts of what a store refused or removed, by reason (see `Store::refusals`).

use std::sync::atomic::AtomicU64;

/// The counters behind [`Store::refusals`](super::Store::refusals).
#[derive(Debug, Default)]
pub(super) struct RefusalCounters {
    pub(super) clock_drift: AtomicU64,
    pub(super) bad_signature: AtomicU64,
    pub(super) no_right: AtomicU64,
    pub(super) revoked: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) quota: AtomicU64,
    pub(super) cut_off: AtomicU64,
    pub(super) statements_cut_off: AtomicU64,
    pub(super) statements_refused: AtomicU64,
}

/// Entries from elsewhere that a store refused, by reason (see [`Store::refusals`](super::Store::refusals)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Stamped further ahead of our clock than `max_clock_drift` (offered again later).
    pub clock_drift: u64,
    /// Signatures that do not verify.
    pub bad_signature: u64,
    /// Authors without a right to write there at the entry's time.
    pub no_right: u64,
    /// Authors whose right a revocation ended: dated at or after it, or dated before a
    /// sealed revocation that does not keep the entry.
    pub revoked: u64,
    /// Keys, fields or values that break the rules.
    pub malformed: u64,
    /// Authors over their quota in an open space ([`Options::author_quota`](super::Options::author_quota)).
    pub quota: u64,
    /// Entries held already that a revocation which arrived later cut off, and removed.
    pub cut_off: u64,
    /// Statements held already (a revoked admin's grants) that a revocation which
    /// arrived later cut off, and removed.
    pub statements_cut_off: u64,
    /// Statements refused because their issuer may not issue them: not an admin at
    /// their time, or a revoked admin (see `cosmic_auth::check_issuer`).
    pub statements_refused: u64,
}
