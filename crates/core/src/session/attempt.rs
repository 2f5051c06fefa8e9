//! One try at the lock, with a token of its own that is given back should its outcome be unknown.

use std::sync::Arc;
use std::time::Duration;

use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::{Claim, HeldLock};
use crate::session::give_back::GiveBack;
use crate::session::lifecycle::Lifecycle;
use crate::session::options::AcquireOptions;
use crate::topology::Attempt;

/// What an attempt that found the lock busy learned about its holder.
pub(super) struct Refused {
    /// The holder's remaining TTL (`None`: it has none).
    pub(super) retry_after: Option<Duration>,
    /// The holder is not ironlock's and will not announce its release.
    pub(super) foreign: bool,
}

impl Lifecycle {
    /// One try: `Ok(Ok(lock))` when taken, `Ok(Err(refused))` when busy.
    ///
    /// Every attempt has a token of its own: the undo of a lost attempt may still be on its way
    /// to a node when the next attempt wins there, and must not delete the new lock.
    pub(super) async fn attempt(
        &self,
        keys: &Arc<LockKeys>,
        options: &AcquireOptions,
    ) -> Result<Result<HeldLock, Refused>, LockError> {
        // The SET may land even though no answer comes back (the connection failed, or the
        // waiter went away meanwhile, its future dropped): `undo` then gives it back by token.
        let undo = GiveBack::new(&self.clean_ups, Claim::new(keys.clone(), options.ttl));
        match self
            .topology
            .try_acquire(keys, undo.token(), options.ttl, options.replicas)
            .await
        {
            Ok(Attempt::Acquired { fence }) => {
                Ok(Ok(undo.keep().granted(fence, self.drift_factor)))
            }
            Ok(Attempt::Busy {
                retry_after,
                foreign,
            }) => {
                undo.keep();
                Ok(Err(Refused {
                    retry_after,
                    foreign,
                }))
            }
            Err(error @ LockError::Replication { .. }) => {
                self.give_back_now(undo).await;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Gives back what `undo`'s token took before the caller hears why it is not granted (too
    /// few replicas acknowledged it), so the keys are free by then. Should the release fail, or
    /// this call be dropped meanwhile, `undo` queues the give-back as usual.
    pub(super) async fn give_back_now(&self, undo: GiveBack<'_>) {
        let claim = undo.claim();
        match self.topology.release(&claim.keys, &claim.token).await {
            Ok(released) => {
                let claim = undo.keep();
                if released {
                    self.queues
                        .released_here(&claim.keys.channels, &claim.token);
                }
            }
            Err(_) => drop(undo),
        }
    }
}
