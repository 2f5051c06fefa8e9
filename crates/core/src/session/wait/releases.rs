//! [`Releases`]: the releases announced for a queue's keys, and the subscription that hears them.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;

use crate::session::handover::MAX_LINKS;

/// How many announced releases to remember: a release is announced more than once (directly when
/// this process made it, and on the channel of every node that held it), in any order, and must
/// wake the queue only once.
const REMEMBERED_RELEASES: usize = 16;

#[derive(Default)]
pub(super) struct Releases {
    /// Bumped by every release of any of the queue's keys.
    generation: u64,
    /// Tokens of recent releases, to recognise the second announcement of each.
    announced: VecDeque<String>,
    /// Tokens this process is releasing: their announcements are its own, whichever way they come.
    own_releases: VecDeque<String>,
    /// The last release announced was another process's.
    released_elsewhere: bool,
    /// Releases in a row made by this process.
    releases_here: u32,
    /// The queue's release channels are subscribed.
    subscribed: bool,
}

impl Releases {
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Counts the release of `token` (announced on a channel when `elsewhere`, else directly by
    /// this process): `true` when it is new and the head should wake, `false` for an
    /// announcement heard before.
    pub(super) fn announce(&mut self, token: &str, elsewhere: bool) -> bool {
        if self.announced.iter().any(|seen| seen == token) {
            return false;
        }
        remember(&mut self.announced, token);
        self.generation += 1;
        self.released_elsewhere = elsewhere && !self.own_releases.iter().any(|own| own == token);
        self.releases_here = if self.released_elsewhere {
            0
        } else {
            self.releases_here + 1
        };
        true
    }

    /// This process is about to release `token`: its announcement will be its own.
    pub(super) fn expect_own(&mut self, token: &str) {
        remember(&mut self.own_releases, token);
    }

    /// Announcements may have been missed: the generation moves on, as after a release.
    pub(super) fn missed_some(&mut self) {
        self.generation += 1;
    }

    /// See [`super::Ticket::pause_after_release`].
    pub(super) fn pause_after_release(&mut self, spread: Duration) -> Duration {
        if self.released_elsewhere {
            rand::rng().random_range(Duration::ZERO..spread)
        } else if self.releases_here >= MAX_LINKS {
            self.releases_here = 0;
            spread
        } else {
            Duration::ZERO
        }
    }

    pub(super) fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    pub(super) fn set_subscribed(&mut self, subscribed: bool) {
        self.subscribed = subscribed;
    }
}

/// Adds `token` to `tokens`, forgetting the oldest beyond [`REMEMBERED_RELEASES`].
fn remember(tokens: &mut VecDeque<String>, token: &str) {
    if tokens.len() == REMEMBERED_RELEASES {
        tokens.pop_front();
    }
    tokens.push_back(token.to_owned());
}
