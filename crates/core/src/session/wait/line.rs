//! [`Line`]: a queue's waiters in arrival order, and the place of a first attempt among them.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
pub(super) struct Line {
    /// Each waiter's ticket and what wakes it; the head first.
    waiters: VecDeque<(u64, Arc<Notify>)>,
    next_ticket: u64,
    /// The waiter that stands for a first attempt still in flight: requests queued behind it, and
    /// the attempt takes it up should it find the lock busy.
    attempt_place: Option<u64>,
}

impl Line {
    /// Adds a waiter at the tail: its ticket and what wakes it.
    pub(super) fn enqueue(&mut self) -> (u64, Arc<Notify>) {
        self.next_ticket += 1;
        let wake = Arc::new(Notify::new());
        self.waiters.push_back((self.next_ticket, wake.clone()));
        (self.next_ticket, wake)
    }

    /// Adds, at the tail, the place of a first attempt still in flight.
    pub(super) fn hold_for_attempt(&mut self) {
        let (id, _) = self.enqueue();
        self.attempt_place = Some(id);
    }

    /// The first attempt's place, for the attempt to take up: its ticket and what wakes it.
    pub(super) fn take_attempt_place(&mut self) -> Option<(u64, Arc<Notify>)> {
        let id = self.attempt_place.take()?;
        let (_, wake) = self.waiters.iter().find(|(waiter, _)| *waiter == id)?;
        Some((id, wake.clone()))
    }

    pub(super) fn is_head(&self, id: u64) -> bool {
        self.waiters.front().is_some_and(|(head, _)| *head == id)
    }

    /// Takes waiter `id` out of the line: `true` when it was the head.
    pub(super) fn remove(&mut self, id: u64) -> bool {
        let was_head = self.is_head(id);
        self.waiters.retain(|(waiter, _)| *waiter != id);
        was_head
    }

    pub(super) fn wake_head(&self) {
        if let Some((_, head)) = self.waiters.front() {
            head.notify_one();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}
