//! Releasing a held lock: deleted, or handed straight to the sleeping head of its local queue in
//! the same one round trip (the chain's bookkeeping is `handover.rs`'s).

use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::{Claim, HeldLock};
use crate::session::give_back::GiveBack;
use crate::session::lifecycle::Lifecycle;
use crate::session::wait::Handing;
use crate::topology::HandOver;

impl Lifecycle {
    /// `true` when the lock was still ours and is now gone.
    ///
    /// A one-key lock that a local waiter is sleeping for is handed straight to it instead,
    /// still in this call's one round trip.
    pub async fn release(&self, lock: &HeldLock) -> Result<bool, LockError> {
        if self.can_hand_over(&lock.keys) {
            if let Some(handing) = self.queues.hand_over(&lock.keys.channels[0], &lock.token) {
                return self.hand_over(lock, handing).await;
            }
        }
        if !self.topology.attempt_spread().is_zero() {
            // Only heads that spread their attempts ask whose release woke them.
            self.queues.releasing(&lock.keys.channels, &lock.token);
        }
        let released = self.topology.release(&lock.keys, &lock.token).await?;
        if released {
            self.queues.released_here(&lock.keys.channels, &lock.token);
        }
        Ok(released)
    }

    /// Whether releases of `keys` in this process can hand the lock to a local waiter: a one-key
    /// lock can, on every topology.
    pub(super) fn can_hand_over(&self, keys: &LockKeys) -> bool {
        keys.redis_keys.len() == 1
    }

    /// Replaces `lock`'s token in Redis by a new one and sends the lock to the waiting head.
    /// Whenever the head does not get it, its receiver fails and it attempts as after a release.
    async fn hand_over(&self, lock: &HeldLock, mut handing: Handing) -> Result<bool, LockError> {
        let ttl = handing.ttl();
        // Should this call be dropped while the script is on its way, or the script fail, whatever
        // it set is given back.
        let undo = GiveBack::new(&self.clean_ups, Claim::new(lock.keys.clone(), ttl));
        let outcome = self
            .topology
            .hand_over(
                &lock.keys,
                &lock.token,
                lock.fence,
                undo.token(),
                ttl,
                handing.reserve(),
                handing.replicas(),
            )
            .await;
        match outcome {
            Ok(done @ (HandOver::Done { .. } | HandOver::Fenced { .. })) => {
                let Some(fence) = handing.handed(undo.token(), done) else {
                    return Err(LockError::Internal {
                        key: lock.key().to_owned(),
                        what: format!("the topology answered a hand-over with {done:?}"),
                    });
                };
                handing.deliver(undo.keep().granted(fence, self.drift_factor));
                Ok(true)
            }
            Ok(HandOver::NotHeld) => {
                undo.keep();
                Ok(false)
            }
            // The old lock is released but not handed: dropping `handing` makes the head attempt.
            Ok(HandOver::Released) => {
                undo.keep();
                Ok(true)
            }
            // The old lock is gone, replaced by the new token, which too few replicas
            // acknowledged: given back, the head attempts and hears it from its own attempt.
            Err(LockError::Replication { .. }) => {
                self.give_back_now(undo).await;
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }
}
