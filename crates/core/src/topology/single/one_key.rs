//! One-key locks asked for together travel as one script call (at most [`chunks::MAX_BATCH`]
//! locks): how such a call is written and how its reply reads, lock by lock, whichever connection
//! carries it (the runtime's, [`super::Single`]; the JS thread's, [`super::WireCalls`]; a Redis
//! Cluster's, one call per hash slot, `crate::topology::Cluster`).

use std::sync::Arc;
use std::time::Duration;

use crate::error::LockError;
use crate::protocol::chunks;
use crate::protocol::keys::{hash_slot, LockKeys};
use crate::protocol::resp::Reply;
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply::{self, Attempt, Refusal};
use crate::protocol::scripts::{self, Script};

/// One lock key to take with `token`, and its fencing counter. It shares the lock's keys rather
/// than copying their names: on the wire that is the hot path's every attempt.
pub struct OneKeyAcquire {
    keys: Arc<LockKeys>,
    token: String,
    /// The TTL in ms, rendered once: the call borrows it.
    ttl_arg: String,
}

impl OneKeyAcquire {
    /// The attempt at a one-key lock; `None` for a lock of several keys, which goes as one call
    /// of its own.
    pub fn new(keys: &LockKeys, token: &str, ttl: Duration) -> Option<Self> {
        (keys.redis_keys.len() == 1)
            .then(|| Self::shared(&Arc::new(keys.clone()), token.to_owned(), ttl))
            .flatten()
    }

    /// [`OneKeyAcquire::new`] of keys already shared.
    pub fn shared(keys: &Arc<LockKeys>, token: String, ttl: Duration) -> Option<Self> {
        (keys.redis_keys.len() == 1 && keys.fence_keys.len() == 1).then(|| Self {
            keys: keys.clone(),
            token,
            ttl_arg: ttl.as_millis().to_string(),
        })
    }

    /// The key as the caller named it, for errors.
    pub fn name(&self) -> &str {
        self.keys.first()
    }

    fn key(&self) -> &str {
        &self.keys.redis_keys[0]
    }

    /// The Redis Cluster hash slot of the key (and of its fencing counter).
    pub fn slot(&self) -> u16 {
        hash_slot(self.key())
    }

    /// The release that undoes this attempt, whatever it took.
    pub fn undo(self) -> OneKeyRelease {
        OneKeyRelease {
            keys: self.keys,
            index: 0,
            token: self.token,
        }
    }
}

/// Key `index` of a lock to delete if it still holds `token`, announcing it on its channel.
pub struct OneKeyRelease {
    keys: Arc<LockKeys>,
    index: usize,
    token: String,
}

impl OneKeyRelease {
    /// The release of key `index` of `keys` (each key of a lock goes as a release of its own),
    /// named for errors by the lock's first key, as the lock's other errors are.
    pub fn new(keys: &LockKeys, index: usize, token: &str) -> Self {
        Self::shared(&Arc::new(keys.clone()), index, token.to_owned())
    }

    /// [`OneKeyRelease::new`] of keys already shared.
    pub fn shared(keys: &Arc<LockKeys>, index: usize, token: String) -> Self {
        Self {
            keys: keys.clone(),
            index,
            token,
        }
    }

    pub fn name(&self) -> &str {
        self.keys.first()
    }

    fn key(&self) -> &str {
        &self.keys.redis_keys[self.index]
    }

    fn channel(&self) -> &str {
        &self.keys.channels[self.index]
    }

    /// The Redis Cluster hash slot of the key (and of its release channel).
    pub fn slot(&self) -> u16 {
        hash_slot(self.key())
    }
}

/// How a refused script call becomes the error of the lock of `names`: the connection's words.
pub type Refused<'a> = &'a dyn Fn(&[String], Refusal) -> LockError;

/// Attempts asked for together, each with the tag `T` its caller knows it by: one
/// [`scripts::ACQUIRE_EACH`] call.
pub struct Acquires<T>(pub Vec<(OneKeyAcquire, T)>);

impl<T> Acquires<T> {
    /// `attempts` in calls of at most [`chunks::MAX_BATCH`].
    pub fn split(attempts: Vec<(OneKeyAcquire, T)>) -> impl Iterator<Item = Self> {
        chunks::split(attempts).map(Self)
    }

    /// The key the call's connection errors name.
    pub fn first_name(&self) -> &str {
        self.0[0].0.name()
    }

    pub fn call(&self) -> ScriptCall<'_> {
        let attempts = &self.0;
        let mut call = ScriptCall::new(
            &scripts::ACQUIRE_EACH,
            2 * attempts.len(),
            2 * attempts.len(),
        );
        for (attempt, _) in attempts {
            call.key(attempt.key()).key(&attempt.keys.fence_keys[0]);
        }
        for (attempt, _) in attempts {
            call.arg(&attempt.token).arg(&attempt.ttl_arg);
        }
        call
    }

    /// Each attempt with its tag and outcome, read from the call's `reply` (an `Err`: the call
    /// failed, and with it every attempt it carried).
    pub fn answers(
        self,
        reply: Result<Reply, LockError>,
        refused: Refused<'_>,
    ) -> Vec<(OneKeyAcquire, T, Result<Attempt, LockError>)> {
        let count = self.0.len();
        let outcomes = reply.and_then(|reply| {
            script_reply::acquire_each(reply, count)
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|refusal| refused(&self.0[0].0.keys.names[..1], refusal))
        });
        answer_each(self.0, outcomes, OneKeyAcquire::name, refused)
    }
}

/// Releases asked for together: one [`scripts::RELEASE_EACH`] call.
pub struct Releases<T>(pub Vec<(OneKeyRelease, T)>);

impl<T> Releases<T> {
    /// `releases` in calls of at most [`chunks::MAX_BATCH`].
    pub fn split(releases: Vec<(OneKeyRelease, T)>) -> impl Iterator<Item = Self> {
        chunks::split(releases).map(Self)
    }

    pub fn first_name(&self) -> &str {
        self.0[0].0.name()
    }

    pub fn call(&self) -> ScriptCall<'_> {
        self.call_of(&scripts::RELEASE_EACH)
    }

    /// The call on Redis Cluster, announcing on the keys' shard (every key in one slot).
    pub fn sharded_call(&self) -> ScriptCall<'_> {
        self.call_of(&scripts::RELEASE_EACH_SHARDED)
    }

    fn call_of(&self, script: &'static Script) -> ScriptCall<'_> {
        let releases = &self.0;
        let mut call = ScriptCall::new(script, releases.len(), 2 * releases.len());
        for (release, _) in releases {
            call.key(release.key());
        }
        for (release, _) in releases {
            call.arg(&release.token).arg(release.channel());
        }
        call
    }

    /// Each release with its tag and whether the key was still ours and is now deleted.
    pub fn answers(
        self,
        reply: Result<Reply, LockError>,
        refused: Refused<'_>,
    ) -> Vec<(OneKeyRelease, T, Result<bool, LockError>)> {
        let count = self.0.len();
        let outcomes = reply.and_then(|reply| {
            script_reply::release_each(reply, count)
                .map(Iterator::collect::<Vec<_>>)
                .map_err(|refusal| refused(&self.0[0].0.keys.names[..1], refusal))
        });
        answer_each(self.0, outcomes, OneKeyRelease::name, refused)
    }
}

/// Whether every key of `keys` was still ours, from the releases of its keys in order. Each key
/// went as a release of its own, named by the lock's first key: a key of another type is named
/// by itself.
pub fn all_released(
    released: Vec<Result<bool, LockError>>,
    keys: &LockKeys,
) -> Result<bool, LockError> {
    let mut all_ours = true;
    for (released, name) in released.into_iter().zip(&keys.names) {
        all_ours &= released.map_err(|error| match error {
            LockError::KeyType { found, .. } => LockError::KeyType {
                key: name.clone(),
                found,
            },
            other => other,
        })?;
    }
    Ok(all_ours)
}

/// Pairs each request with its own outcome, or with the whole call's error, named by its own key.
fn answer_each<I, T, A>(
    items: Vec<(I, T)>,
    outcomes: Result<Vec<Result<A, Refusal>>, LockError>,
    name: fn(&I) -> &str,
    refused: Refused<'_>,
) -> Vec<(I, T, Result<A, LockError>)> {
    match outcomes {
        Ok(outcomes) => items
            .into_iter()
            .zip(outcomes)
            .map(|((item, tag), outcome)| {
                let outcome =
                    outcome.map_err(|refusal| refused(&[name(&item).to_owned()], refusal));
                (item, tag, outcome)
            })
            .collect(),
        Err(error) => items
            .into_iter()
            .map(|(item, tag)| {
                let error = error.for_key(name(&item));
                (item, tag, Err(error))
            })
            .collect(),
    }
}
