//! [`GiveBack`]: the claim of a script call that may take keys, armed until its answer is known.

use crate::protocol::lock::Claim;
use crate::session::clean_up::CleanUps;

/// The claim of an attempt or hand-over on its way: dropped before [`GiveBack::keep`], whatever
/// its token took of its keys is given back (queued, so it needs no runtime where it is dropped).
pub(super) struct GiveBack<'a> {
    clean_ups: &'a CleanUps,
    claim: Option<Claim>,
}

impl<'a> GiveBack<'a> {
    pub(super) fn new(clean_ups: &'a CleanUps, claim: Claim) -> Self {
        Self {
            clean_ups,
            claim: Some(claim),
        }
    }

    pub(super) fn token(&self) -> &str {
        &self.claim().token
    }

    /// The armed claim: its keys and token.
    pub(super) fn claim(&self) -> &Claim {
        self.claim.as_ref().expect("kept only once")
    }

    /// The outcome is known and nothing is to be given back: the claim, to hold or drop.
    pub(super) fn keep(mut self) -> Claim {
        self.claim.take().expect("kept only once")
    }
}

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.clean_ups.give_back(claim.keys, claim.token);
        }
    }
}
