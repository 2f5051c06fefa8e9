//! A lock whose keys span several hash slots: no script can take them at once, so it is taken
//! slot by slot, in ascending slot order, all or nothing.
//!
//! A slot found busy gives back the slots taken before it, so a lock not won holds nothing; since
//! every locker takes the slots in the same order, two lockers whose key sets overlap meet first
//! on their lowest shared slot and one of them steps back there. The slots after it are only
//! asked who holds them (for the longest hold, the busy answer's `retryAfter`), never taken. The fence is the highest of the
//! slots' fences, and every slot's counter is raised to it before the lock is granted, so each key
//! still gets a higher fence next time, whichever lock takes it. An attempt that fails midway is
//! given back by the session, by its token, as on one Redis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::slots::{by_slot, SlotKeys};
use super::Shards;
use crate::error::LockError;
use crate::protocol::keys::LockKeys;
use crate::topology::{Attempt, Replicas};

/// Takes every key of `keys` with `token`, or none, slot by slot in ascending slot order. With
/// `replicas` wanted, each slot's call waits for its own master's replicas, and the first that
/// falls short refuses the lock with its count, the lowest among the masters asked.
pub(super) async fn acquire(
    shards: &Arc<Shards>,
    keys: &LockKeys,
    token: &str,
    ttl: Duration,
    replicas: Replicas,
) -> Result<Attempt, LockError> {
    let parts = by_slot(keys);
    let mut fence = 0;
    for (taken, part) in parts.iter().enumerate() {
        match shards.acquire_all(part, token, ttl, replicas).await? {
            (Attempt::Acquired { fence: slot_fence }, acknowledged) => {
                if let Some(acknowledged) = acknowledged {
                    // The session gives back what the token took, in every slot.
                    replicas.check(keys.first(), acknowledged)?;
                }
                fence = fence.max(slot_fence);
            }
            (busy, _) => {
                give_back(shards, &parts[..taken], token).await?;
                return longest_hold(shards, busy, &parts[taken + 1..]).await;
            }
        }
    }
    if parts.len() > 1 {
        let fence_arg = fence.to_string();
        let lifts = parts
            .iter()
            .map(|part| shards.lift_fences(part, &fence_arg));
        join_all(lifts)
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
    }
    Ok(Attempt::Acquired { fence })
}

/// Gives every key of `keys` `ttl` more life, only if all still hold `token`; a lock whose keys
/// span slots and that lost some of them gives the others back, as it is lost as a whole.
pub(super) async fn extend(
    shards: &Arc<Shards>,
    keys: &LockKeys,
    token: &str,
    ttl: Duration,
) -> Result<bool, LockError> {
    let parts = by_slot(keys);
    if let [part] = &parts[..] {
        return shards.extend(part, token, ttl).await;
    }
    let extended = join_all(parts.iter().map(|part| shards.extend(part, token, ttl))).await;
    let mut all_ours = true;
    for part in extended {
        all_ours &= part?;
    }
    if !all_ours {
        shards.release(keys, token).await?;
    }
    Ok(all_ours)
}

/// `busy`, the first slot's answer that was busy, with the longest hold among the keys of the
/// slots after it, asked without taking any (as on one Redis, `retryAfter` is the longest).
async fn longest_hold(
    shards: &Arc<Shards>,
    busy: Attempt,
    rest: &[SlotKeys],
) -> Result<Attempt, LockError> {
    let held = join_all(rest.iter().map(|part| shards.held_by_others(part))).await;
    let mut longest = busy;
    for part in held {
        if let Some(other) = part? {
            longest = longer(longest, other);
        }
    }
    Ok(longest)
}

/// The longer of two busy answers (no TTL is longest); foreign if either holder is.
fn longer(one: Attempt, other: Attempt) -> Attempt {
    match (one, other) {
        (
            Attempt::Busy {
                retry_after: a,
                foreign: foreign_a,
            },
            Attempt::Busy {
                retry_after: b,
                foreign: foreign_b,
            },
        ) => Attempt::Busy {
            retry_after: a.zip(b).map(|(a, b)| a.max(b)),
            foreign: foreign_a || foreign_b,
        },
        (busy @ Attempt::Busy { .. }, _) | (_, busy) => busy,
    }
}

async fn give_back(shards: &Arc<Shards>, parts: &[SlotKeys], token: &str) -> Result<(), LockError> {
    let releases = parts.iter().map(|part| shards.release(&part.keys, token));
    join_all(releases)
        .await
        .into_iter()
        .try_for_each(|released| released.map(drop))
}
