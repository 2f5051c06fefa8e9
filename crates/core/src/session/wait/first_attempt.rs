//! Where a request starts: a [`FirstAttempt`] holding its keys' place, or a ticket behind others.

use std::sync::Arc;
use std::time::Duration;

use super::queues::WaitQueues;
use super::ticket::Ticket;

/// Where a request starts (see [`WaitQueues::arrive`]).
pub enum Arrival {
    /// Nobody here is ahead of it: it attempts at once.
    Attempt(FirstAttempt),
    /// Local requests for the same keys are ahead of it: it waits behind them.
    Wait(Ticket),
}

/// A first attempt under way, and its place: requests for the same keys that arrive meanwhile
/// queue behind it. Dropping it ends the attempt and leaves the place to the next in line.
pub struct FirstAttempt {
    queues: Arc<WaitQueues>,
    /// `None` once the attempt has left its place.
    identity: Option<String>,
}

impl WaitQueues {
    /// Gives a request for `channels` its place as it arrives: a first attempt, which holds the
    /// place while it tries Redis, when nobody in this process waits for or is trying the same
    /// keys; else a ticket behind them. Decided under one lock, so nobody comes in between.
    pub fn arrive(self: &Arc<Self>, channels: &[String]) -> Arrival {
        let mut places = self.places();
        match Self::start_attempt(&mut places, channels) {
            Some(identity) => Arrival::Attempt(FirstAttempt {
                queues: self.clone(),
                identity: Some(identity),
            }),
            None => Arrival::Wait(Ticket::new(
                self.clone(),
                self.join_in(&mut places, channels),
            )),
        }
    }
}

impl FirstAttempt {
    /// The attempt found the lock busy: it waits at its place, ahead of the requests that
    /// arrived meanwhile (at the tail of a new queue for `channels` when none did).
    pub fn wait(mut self, channels: &[String]) -> Ticket {
        let identity = self.identity.take().expect("a first attempt leaves once");
        let mut places = self.queues.places();
        let spot = match self.queues.leave_attempt(&mut places, identity) {
            Some(place) => place,
            None => self.queues.join_in(&mut places, channels),
        };
        Ticket::new(self.queues.clone(), spot)
    }

    /// The attempt took the lock for `ttl`: requests that queued meanwhile wait for its release
    /// instead of trying a lock they know is held.
    pub fn took_lock(mut self, ttl: Duration) {
        if let Some(place) = self.leave() {
            place.took_lock(ttl);
        }
    }

    /// Gives up the attempt's place: the ticket of it when requests queued behind it, to keep or
    /// drop once the places are unlocked.
    fn leave(&mut self) -> Option<Ticket> {
        let identity = self.identity.take()?;
        let spot = self
            .queues
            .leave_attempt(&mut self.queues.places(), identity)?;
        Some(Ticket::new(self.queues.clone(), spot))
    }
}

impl Drop for FirstAttempt {
    fn drop(&mut self) {
        // Dropped after `leave` has unlocked the places: the next in line moves up.
        drop(self.leave());
    }
}
