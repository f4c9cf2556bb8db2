//! The initiating side of a session: its first message, its rounds, and how it ends.

use super::*;

/// How a session's first message opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// With the split of the whole space (when we hold its record and more than a
    /// listing's worth): three rounds when the stores differ, a split's bytes when they
    /// do not (2.9 KB for 10^6 items).
    Split,
    /// With the whole space's fingerprint: one fingerprint when the stores are equal, one
    /// round more when they differ. For sessions that expect no difference.
    Whole,
}

/// The initiating side of one reconciliation session.
#[derive(Debug)]
pub struct Session {
    space: PublicKey,
    limits: Limits,
    rounds: u64,
    max_rounds: u64,
    cut_short: bool,
}

impl Session {
    /// Starts a session on `space`: returns it and the first message (the digest of our
    /// space record and statements, and the fingerprint of the whole space, split as
    /// [`Limits::branches_for`] says when we hold the space record and more than
    /// [`Limits::max_items`] items).
    pub fn start<S: ItemSource + ?Sized>(
        source: &S,
        space: PublicKey,
        limits: Limits,
        max_rounds: u64,
    ) -> cosmic_store::Result<(Session, Message)> {
        Session::start_with(source, space, limits, max_rounds, Opening::Split)
    }

    /// [`Session::start`], opening as `opening` says.
    pub fn start_with<S: ItemSource + ?Sized>(
        source: &S,
        space: PublicKey,
        limits: Limits,
        max_rounds: u64,
        opening: Opening,
    ) -> cosmic_store::Result<(Session, Message)> {
        let mut parts = Vec::new();
        // The digest of our record and statements: the peer sends its own, and asks for
        // ours, only when they differ.
        let space_part = source.space_part(&space)?;
        let holds_record = space_part.is_some();
        parts.extend(space_part.as_ref().and_then(space_digest).map(Part::SpaceDigest));
        let all = source.fingerprint(&space, &Range::ALL)?;
        if opening == Opening::Split && holds_record && all.count > limits.max_items as u64 {
            // Split at once: the answer to the whole space's fingerprint would be its split
            // anyway, when the stores differ. The space digest tells the peer that this is
            // a session's first message.
            split(source, &space, &Range::ALL, all.count, &limits, &mut parts)?;
        } else {
            parts.push(Part::Fingerprint(Range::ALL, all));
        }
        let session =
            Session { space, limits, rounds: 1, max_rounds: max_rounds.max(1), cut_short: false };
        Ok((session, Message { space, parts }))
    }

    /// The space reconciled.
    pub fn space(&self) -> &PublicKey {
        &self.space
    }

    /// Request-response rounds so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Processes the peer's answer; returns the next message, or `None` when the session
    /// is over: `Ok(None)` with [`Session::converged`] true when nothing is left to
    /// exchange, false when the round limit was reached first.
    pub fn on_reply<S: ItemSource + ?Sized>(
        &mut self,
        source: &S,
        reply: &Message,
        origin: &Origin,
    ) -> cosmic_store::Result<(Option<Message>, Step)> {
        let (next, step) = answer(source, reply, origin, &self.limits, false)?;
        if next.parts.is_empty() || self.rounds >= self.max_rounds {
            self.cut_short = !next.parts.is_empty();
            return Ok((None, step));
        }
        self.rounds += 1;
        Ok((Some(next), step))
    }

    /// Whether the session ended because nothing was left to exchange (not at the round
    /// limit).
    pub fn converged(&self) -> bool {
        !self.cut_short
    }
}
