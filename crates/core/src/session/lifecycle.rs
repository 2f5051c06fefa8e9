//! [`Lifecycle`]: what every lock's life in a locker runs over (the topology, the local queues,
//! the clean-ups), and the little the wire's path asks of it. The life itself is spread over the
//! files that each do one part: `acquire.rs` (first turn, then attempt or queue), `attempt.rs`
//! (one try), `wait_driver.rs` (a queue's head carrying out its steps), `release.rs` (release, or
//! hand-over to a sleeping head), `extend.rs`.

use std::sync::{Arc, Weak};

use tokio::runtime::Handle;

use crate::config::LockerConfig;
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::{Claim, HeldLock};
use crate::session::cancel::CancelToken;
use crate::session::clean_up::CleanUps;
use crate::session::wait::WaitQueues;
use crate::topology::{self, ReleaseListener, Topology};

pub struct Lifecycle {
    pub(super) topology: Arc<dyn Topology>,
    pub(super) queues: Arc<WaitQueues>,
    key_prefix: String,
    pub(super) drift_factor: f64,
    /// Cancelled by [`Lifecycle::close`]: every wait ends then, rather than at its deadline.
    pub(super) closed: CancelToken,
    /// Give-backs of locks nobody will hold, performed on the runtime whoever queues them.
    pub(super) clean_ups: CleanUps,
}

impl Lifecycle {
    /// Builds the lifecycle of `config`'s locks; no connection is opened until the first
    /// operation. Called inside the tokio runtime its background work is to run on (it panics
    /// elsewhere, as `tokio::spawn` does).
    pub fn new(config: &LockerConfig) -> Result<Self, String> {
        Self::with_topology(&config.key_prefix, config.drift_factor, |listener| {
            topology::for_target(config, listener)
        })
    }

    /// Builds the lifecycle over the topology `topology` makes, given whom to tell of the
    /// releases it hears; inside the runtime, as [`Lifecycle::new`].
    pub(super) fn with_topology(
        key_prefix: &str,
        drift_factor: f64,
        topology: impl FnOnce(Weak<dyn ReleaseListener>) -> Result<Arc<dyn Topology>, String>,
    ) -> Result<Self, String> {
        let queues = Arc::new(WaitQueues::default());
        let listener: Weak<dyn ReleaseListener> =
            Arc::downgrade(&queues) as Weak<dyn ReleaseListener>;
        let topology = topology(listener)?;
        let waiters = Arc::downgrade(&queues);
        let clean_ups =
            CleanUps::start(&Handle::current(), topology.clone(), move |keys, token| {
                if let Some(queues) = waiters.upgrade() {
                    queues.released_here(&keys.channels, token);
                }
            });
        queues.attach(Arc::downgrade(&topology), clean_ups.clone());
        Ok(Self {
            topology,
            queues,
            key_prefix: key_prefix.to_owned(),
            drift_factor,
            closed: CancelToken::default(),
            clean_ups,
        })
    }

    pub fn keys(&self, names: Vec<String>) -> Arc<LockKeys> {
        Arc::new(LockKeys::new(&self.key_prefix, names))
    }

    /// Whether local requests wait for any of `keys`: their release should then go through
    /// [`Lifecycle::release`], which wakes them at once.
    pub(super) fn has_waiters(&self, keys: &LockKeys) -> bool {
        self.queues.has_waiters(&keys.channels)
    }

    /// The lock `claim` asked for, granted with `fence` elsewhere (by the wire).
    pub(super) fn granted(&self, claim: Claim, fence: u64) -> HeldLock {
        claim.granted(fence, self.drift_factor)
    }

    /// Tells local waiters that `lock` was released elsewhere (by the wire).
    pub(super) fn announce_release(&self, lock: &HeldLock) {
        self.queues.released_here(&lock.keys.channels, &lock.token);
    }

    /// Deletes whatever `token` holds of `keys`, on the runtime (see [`CleanUps`]): the undo of
    /// an attempt whose caller is gone or whose outcome is unknown. Needs no runtime here.
    pub(super) fn give_back(&self, keys: Arc<LockKeys>, token: String) {
        self.clean_ups.give_back(keys, token);
    }

    /// Drops the connections and ends every wait with [`crate::error::LockError::Closed`].
    pub fn close(&self) {
        self.closed.cancel();
        self.topology.close();
    }
}
