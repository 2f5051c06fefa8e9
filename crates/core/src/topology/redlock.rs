//! Redlock: a lock is held when a majority of independent Redis masters grant it.
//!
//! Every operation goes to all nodes at once and resolves as soon as its outcome is certain, so a
//! stalled node delays nothing while a majority answers; the slower nodes finish in the background.
//! A lost attempt is undone on every node, and a slow node's grant that lands after the lock's
//! release is undone when that node answers.
//!
//! A release in this process with a local waiter hands the lock over instead (see
//! [`Topology::hand_over`]): node by node, the key goes from the old token to the new one without
//! ever being free, and the new token holds the lock when a majority made the switch, as an
//! attempt would need; otherwise both tokens are given back everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::Rng;

use super::{
    handed_key, Attempt, BoxFuture, HandOver, ReleaseListener, Replicas, Single, Topology,
};
use crate::config::NodeConfig;
use crate::error::{LockError, QuorumVotes};
use crate::protocol::keys::LockKeys;
use crate::protocol::lock::drift;
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply::{self, NodeHandOver};
use crate::protocol::scripts;

/// Longest pause before retrying a round whose votes were split between competing clients.
const SPLIT_VOTE_RETRY: Duration = Duration::from_millis(50);

/// Longest pause of a woken head before it attempts (see [`Topology::attempt_spread`]): several
/// round trips on loopback, so the first attempt usually wins every node before the next arrives.
const ATTEMPT_SPREAD: Duration = Duration::from_millis(3);

pub struct Redlock {
    nodes: Vec<Arc<Single>>,
    quorum: usize,
    command_timeout: Duration,
    drift_factor: f64,
    unsettled: Arc<UnsettledAttempts>,
}

/// Attempts whose round was decided before every node answered, by token, and whether the lock
/// was released meanwhile. A slow node's grant can land after the release that should have
/// deleted it (the two travel in separate calls, and a call Redis did not know the script of
/// goes again later): the attempt's late answers then tell which nodes to clean.
#[derive(Default)]
struct UnsettledAttempts {
    released: Mutex<HashMap<String, bool>>,
}

impl UnsettledAttempts {
    fn start(&self, token: &str) {
        self.lock().insert(token.to_owned(), false);
    }

    /// Called before a release of `token` is sent.
    fn releasing(&self, token: &str) {
        if let Some(released) = self.lock().get_mut(token) {
            *released = true;
        }
    }

    /// Every node answered `token`'s attempt: whether it was released before that.
    fn settle(&self, token: &str) -> bool {
        self.lock().remove(token).unwrap_or(false)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.released.lock().expect("unsettled attempts")
    }
}

/// One node's answer in a round: `None` while it has not answered.
type Answer<T> = Option<Result<T, LockError>>;

impl Redlock {
    pub fn new(
        nodes: &[NodeConfig],
        connect_timeout: Duration,
        command_timeout: Duration,
        drift_factor: f64,
        listener: Weak<dyn ReleaseListener>,
    ) -> Result<Self, String> {
        let nodes = nodes
            .iter()
            .map(|node| {
                Single::new(node, connect_timeout, command_timeout, listener.clone()).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            quorum: nodes.len() / 2 + 1,
            nodes,
            command_timeout,
            drift_factor,
            unsettled: Arc::default(),
        })
    }

    /// A node's time to answer: small against the TTL, so one slow node cannot eat the validity.
    fn node_timeout(&self, ttl: Duration) -> Duration {
        self.command_timeout
            .min(ttl / 10)
            .max(Duration::from_millis(5))
    }

    /// Runs `call` on every node at once and returns the answers as soon as `decided` holds for
    /// them. The remaining nodes keep running in the background; `finish` then gets every answer
    /// and which of them came after the decision.
    async fn round<T, Call, Fut>(
        &self,
        timeout: Duration,
        call: Call,
        decided: impl Fn(&[Answer<T>]) -> bool + Send + 'static,
        finish: impl FnOnce(Vec<Answer<T>>, Vec<bool>) + Send + 'static,
    ) -> Vec<Answer<T>>
    where
        T: Clone + Send + 'static,
        Call: Fn(Arc<Single>) -> Fut,
        Fut: std::future::Future<Output = Result<T, LockError>> + Send + 'static,
    {
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let label = node.label().to_owned();
                let call = call(node.clone());
                async move {
                    let answer = tokio::time::timeout(timeout, call)
                        .await
                        .unwrap_or_else(|_| {
                            Err(LockError::Connection {
                                key: String::new(),
                                message: format!(
                                    "{label}: no answer within {} ms",
                                    timeout.as_millis()
                                ),
                            })
                        });
                    (index, answer)
                }
            })
            .collect();
        let (decision, decided_answers) = tokio::sync::oneshot::channel();
        let node_count = self.nodes.len();
        tokio::spawn(async move {
            let mut answers: Vec<Answer<T>> = vec![None; node_count];
            let mut late = vec![false; node_count];
            let mut decision = Some(decision);
            while let Some((index, answer)) = pending.next().await {
                answers[index] = Some(answer);
                late[index] = decision.is_none();
                if decision.is_some() && (decided(&answers) || answers.iter().all(Option::is_some))
                {
                    let _ = decision
                        .take()
                        .expect("checked above")
                        .send(answers.clone());
                }
            }
            finish(answers, late);
        });
        decided_answers.await.unwrap_or_default()
    }

    /// The votes of a round. Nodes that had not answered when it was decided are neither for,
    /// against nor failed: they are listed only if the round ends in a [`LockError::Quorum`].
    fn votes<T>(&self, answers: &[Answer<T>], granted: impl Fn(&T) -> bool) -> QuorumVotes {
        let mut votes = QuorumVotes::default();
        for (node, answer) in self.nodes.iter().zip(answers) {
            match answer {
                Some(Ok(value)) if granted(value) => votes.granted += 1,
                Some(Ok(_)) => votes.refused += 1,
                Some(Err(error)) => votes
                    .errors
                    .push((node.label().to_owned(), node_message(error))),
                None => {}
            }
        }
        votes
    }

    /// A [`LockError::Quorum`] when too few nodes work to ever make a majority.
    fn unreachable<T>(
        &self,
        key: &str,
        answers: &[Answer<T>],
        mut votes: QuorumVotes,
    ) -> Option<LockError> {
        if self.nodes.len() - votes.errors.len() >= self.quorum {
            return None;
        }
        for (node, answer) in self.nodes.iter().zip(answers) {
            if answer.is_none() {
                votes.errors.push((
                    node.label().to_owned(),
                    "no answer before the round was decided".to_owned(),
                ));
            }
        }
        Some(LockError::Quorum {
            key: key.to_owned(),
            votes,
        })
    }

    /// The [`LockError::KeyType`] of a round in which so many nodes hold a lock key as a value of
    /// another type that the others can never make a majority: no wait helps. Fewer such nodes
    /// only vote against, their error among the votes.
    fn key_of_another_type<T>(&self, answers: &[Answer<T>]) -> Option<LockError> {
        let mut other_types = answers.iter().filter_map(|answer| match answer {
            Some(Err(error @ LockError::KeyType { .. })) => Some(error),
            _ => None,
        });
        let first = other_types.next()?;
        let others = self.nodes.len() - 1 - other_types.count();
        (others < self.quorum).then(|| first.clone())
    }

    /// Lifts fencing counters for `keys` to `fence`, without waiting, on as few nodes as it
    /// takes for every majority to include a node that counts `fence`: then the next holder's
    /// fence is higher on whichever majority grants it, while every node keeps its data. Each
    /// lift leaves on its node's connection before anything the holder sends it later (a
    /// release).
    ///
    /// `granted` is each node's fence in this round, if it gave one. A node that gave `fence`
    /// counts it already (counters only ever rise); any `n - quorum + 1` nodes meet every
    /// majority, so that many must count it. The others lifted are nodes that granted below
    /// `fence` (there are always enough: a majority granted), whose connections just answered;
    /// on three nodes that is one lift, the node that has not answered yet is left alone.
    fn lift_fences(&self, keys: &LockKeys, fence: u64, granted: &[Option<u64>]) {
        let counting = granted
            .iter()
            .filter(|given| **given == Some(fence))
            .count();
        let needed = (self.nodes.len() + 1 - self.quorum).saturating_sub(counting);
        self.nodes
            .iter()
            .zip(granted)
            .filter(|(_, given)| matches!(given, Some(given) if *given < fence))
            .take(needed)
            .for_each(|(node, _)| node.lift_fences(keys, fence));
    }

    /// Undoes a failed hand-over: deletes both of its tokens on every node. The head attempts as
    /// soon as the release returns, so the nodes that answered are cleaned first (their
    /// connections work); the others in the background.
    async fn give_back_both(
        &self,
        answers: &[Answer<NodeHandOver>],
        keys: &Arc<LockKeys>,
        tokens: &(String, String),
    ) {
        self.unsettled.releasing(&tokens.0);
        let (answered, silent): (Vec<_>, Vec<_>) = self
            .nodes
            .iter()
            .zip(answers)
            .partition(|(_, answer)| matches!(answer, Some(Ok(_))));
        let releases = answered
            .iter()
            .flat_map(|(node, _)| [&tokens.0, &tokens.1].map(|token| node.release(keys, token)));
        join_all(releases).await;
        let silent: Vec<_> = silent.into_iter().map(|(node, _)| node.clone()).collect();
        Self::undo(silent.clone(), keys.clone(), tokens.1.clone());
        Self::undo(silent, keys.clone(), tokens.0.clone());
    }

    /// Releases `token` on every node, without waiting: undoes a lost attempt.
    fn undo(nodes: Vec<Arc<Single>>, keys: Arc<LockKeys>, token: String) {
        for node in nodes {
            let (keys, token) = (keys.clone(), token.clone());
            tokio::spawn(async move {
                let _ = node.release(&keys, &token).await;
            });
        }
    }
}

/// Runs the hand-over script on one node.
async fn hand_over_on(
    node: Arc<Single>,
    keys: Arc<LockKeys>,
    tokens: Arc<(String, String)>,
    ttl_ms: u64,
    floor: u64,
) -> Result<NodeHandOver, LockError> {
    let (ttl_arg, floor_arg) = (ttl_ms.to_string(), floor.to_string());
    let mut call = ScriptCall::new(&scripts::REDLOCK_HAND_OVER, 2, 4);
    call.key(&keys.redis_keys[0])
        .key(&keys.fence_keys[0])
        .arg(&tokens.0)
        .arg(&tokens.1)
        .arg(&ttl_arg)
        .arg(&floor_arg);
    let reply = node.run_script(keys.first(), &call).await?;
    script_reply::redlock_hand_over(reply)
        .map_err(|refusal| LockError::refused(&keys.names, node.label(), refusal))
}

/// `decided` for a yes/no round: a majority either way is final. A round not won with a key of
/// another type among its answers hears every node, since whether it failed on the key's type or
/// was refused depends on how many nodes hold that type ([`Redlock::key_of_another_type`]).
fn majority_decided<T>(
    quorum: usize,
    granted: impl Fn(&T) -> bool,
) -> impl Fn(&[Answer<T>]) -> bool {
    move |answers: &[Answer<T>]| {
        let yes = count_granted(answers, &granted);
        if yes >= quorum {
            return true;
        }
        if answers
            .iter()
            .any(|answer| matches!(answer, Some(Err(LockError::KeyType { .. }))))
        {
            return answers.iter().all(Option::is_some);
        }
        let no = answers
            .iter()
            .filter(|answer| {
                matches!(answer, Some(Ok(value)) if !granted(value))
                    || matches!(answer, Some(Err(_)))
            })
            .count();
        no > answers.len() - quorum
    }
}

/// How many nodes answered yes.
fn count_granted<T>(answers: &[Answer<T>], granted: impl Fn(&T) -> bool) -> usize {
    answers
        .iter()
        .filter(|answer| matches!(answer, Some(Ok(value)) if granted(value)))
        .count()
}

/// A node's error text without the key prefix the single topology gives it.
fn node_message(error: &LockError) -> String {
    match error {
        LockError::Connection { message, .. } => message
            .split_once(": ")
            .map_or(message.clone(), |(_, rest)| rest.to_owned()),
        other => other.to_string(),
    }
}

fn is_granted(attempt: &Attempt) -> bool {
    matches!(attempt, Attempt::Acquired { .. })
}

impl Topology for Redlock {
    /// With `replicas` wanted, each node's grant counts only once that many of its own replicas
    /// acknowledged it ([`Single`]'s `WAIT`); a node whose replicas fell short votes with its
    /// [`LockError::Replication`], so too few such grants lose the round as a
    /// [`LockError::Quorum`] whose votes say why.
    fn try_acquire<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<Attempt, LockError>> {
        Box::pin(async move {
            let started = Instant::now();
            let shared_keys = Arc::new(keys.clone());
            let owned_token = token.to_owned();
            // A node that answers after the round was decided is undone then, if the round was
            // lost or the lock released meanwhile, where it granted or failed (its SET may have
            // landed all the same).
            self.unsettled.start(&owned_token);
            let undo_late_grants = {
                let (nodes, keys, token) =
                    (self.nodes.clone(), shared_keys.clone(), owned_token.clone());
                let (quorum, unsettled) = (self.quorum, self.unsettled.clone());
                move |answers: Vec<Answer<Attempt>>, late: Vec<bool>| {
                    let released = unsettled.settle(&token);
                    let granted = |answer: &Answer<Attempt>| matches!(answer, Some(Ok(attempt)) if is_granted(attempt));
                    let won = count_granted(&answers, is_granted) >= quorum;
                    if won && !released {
                        return;
                    }
                    let late_grants: Vec<_> = nodes
                        .into_iter()
                        .zip(answers.iter().zip(late))
                        .filter(|(_, (answer, late))| {
                            *late && (granted(answer) || matches!(answer, Some(Err(_))))
                        })
                        .map(|(node, _)| node)
                        .collect();
                    if !late_grants.is_empty() {
                        Self::undo(late_grants, keys, token);
                    }
                }
            };
            let answers = self
                .round(
                    self.node_timeout(ttl) + replicas.timeout,
                    |node| {
                        let (keys, token) = (shared_keys.clone(), owned_token.clone());
                        async move { node.try_acquire(&keys, &token, ttl, replicas).await }
                    },
                    majority_decided(self.quorum, is_granted),
                    undo_late_grants,
                )
                .await;
            let votes = self.votes(&answers, is_granted);
            let validity = ttl
                .checked_sub(started.elapsed() + drift(ttl, self.drift_factor))
                .unwrap_or_default();
            if votes.granted >= self.quorum && !validity.is_zero() {
                let granted: Vec<_> = answers
                    .iter()
                    .map(|answer| match answer {
                        Some(Ok(Attempt::Acquired { fence })) => Some(*fence),
                        _ => None,
                    })
                    .collect();
                let fence = granted.iter().flatten().copied().max().unwrap_or(0);
                self.lift_fences(keys, fence, &granted);
                return Ok(Attempt::Acquired { fence });
            }
            let key_of_another_type = self.key_of_another_type(&answers);
            if votes.granted > 0 {
                // Lost with a partial majority: give the votes back now, not when the TTL ends.
                // When the answer is final (a key of another type; the round heard every node),
                // before answering, so that no token of this attempt outlives the error.
                if key_of_another_type.is_some() {
                    let granting = self.nodes.iter().zip(&answers).filter(
                        |(_, answer)| matches!(answer, Some(Ok(attempt)) if is_granted(attempt)),
                    );
                    join_all(granting.map(|(node, _)| node.release(&shared_keys, &owned_token)))
                        .await;
                } else {
                    Self::undo(self.nodes.clone(), shared_keys, owned_token);
                }
            }
            if let Some(error) = key_of_another_type {
                return Err(error);
            }
            if let Some(error) = self.unreachable(keys.first(), &answers, votes.clone()) {
                return Err(error);
            }
            // Free again once enough of the refusing holders' TTLs have run out.
            let mut holders: Vec<Option<Duration>> = Vec::new();
            let mut foreign = false;
            for answer in &answers {
                if let Some(Ok(Attempt::Busy {
                    retry_after,
                    foreign: held_by_other,
                })) = answer
                {
                    holders.push(*retry_after);
                    foreign |= *held_by_other;
                }
            }
            holders.sort_by_key(|left| left.unwrap_or(Duration::MAX));
            let needed = self.quorum.saturating_sub(votes.granted).max(1);
            let mut retry_after = holders.get(needed - 1).copied().flatten();
            if votes.granted > 0 || holders.is_empty() {
                // Votes split between competing clients (or validity ran out): retry after a
                // random pause so the competitors stop colliding.
                let pause = rand::rng().random_range(Duration::ZERO..SPLIT_VOTE_RETRY);
                retry_after = Some(retry_after.map_or(pause, |after| after.min(pause)));
            }
            Ok(Attempt::Busy {
                retry_after,
                foreign,
            })
        })
    }

    fn attempt_spread(&self) -> Duration {
        ATTEMPT_SPREAD
    }

    /// Hands a one-key lock to `new_token` on every node where `old_token` holds it (and takes
    /// the key where it is free), in one round. The new token holds the lock once a majority of
    /// nodes switched from the old token, within the new TTL's validity, as an attempt would need;
    /// its fence is above `old_fence` on every node that granted it. Otherwise the old lock no
    /// longer held a majority: both tokens are given back on every node.
    ///
    /// When every node that granted gave `old_fence + 1` (their counters were at most the old
    /// fence, as the last acquisition's lift or link left them), each of them now counts the new
    /// fence, and every node that grants later at least as much: no lift is needed. Otherwise
    /// the counters are lifted, as after an attempt.
    ///
    /// A head that waits for replicas is not handed the lock: the lock is released, and the head
    /// attempts with its `WAIT`s as after any release (the hand-over's script has none).
    fn hand_over<'a>(
        &'a self,
        keys: &'a LockKeys,
        old_token: &'a str,
        old_fence: u64,
        new_token: &'a str,
        ttl: Duration,
        _reserve: u64,
        replicas: Replicas,
    ) -> BoxFuture<'a, Result<HandOver, LockError>> {
        Box::pin(async move {
            handed_key(keys)?;
            if replicas.are_wanted() {
                return Ok(if self.release(keys, old_token).await? {
                    HandOver::Released
                } else {
                    HandOver::NotHeld
                });
            }
            let started = Instant::now();
            let shared_keys = Arc::new(keys.clone());
            let tokens = Arc::new((old_token.to_owned(), new_token.to_owned()));
            let ttl_ms = ttl.as_millis() as u64;
            // Decided early only by a majority that switched: a failed hand-over hears every
            // node (or its timeout), so that it can be undone below before the head attempts.
            let quorum = self.quorum;
            let answers = self
                .round(
                    self.node_timeout(ttl),
                    |node| {
                        hand_over_on(node, shared_keys.clone(), tokens.clone(), ttl_ms, old_fence)
                    },
                    move |answers: &[Answer<NodeHandOver>]| {
                        count_granted(answers, NodeHandOver::replaced) >= quorum
                    },
                    |_, _| {},
                )
                .await;
            let votes = self.votes(&answers, NodeHandOver::replaced);
            if votes.granted >= self.quorum {
                let granted: Vec<_> = answers
                    .iter()
                    .map(|answer| match answer {
                        Some(Ok(switched)) => switched.fence(),
                        _ => None,
                    })
                    .collect();
                let fence = granted.iter().flatten().copied().max().unwrap_or(0);
                let validity = ttl
                    .checked_sub(started.elapsed() + drift(ttl, self.drift_factor))
                    .unwrap_or_default();
                if validity.is_zero() {
                    // The old lock was released on a majority; the new one came too late.
                    Self::undo(self.nodes.clone(), shared_keys, tokens.1.clone());
                    return Ok(HandOver::Released);
                }
                if fence > old_fence + 1 {
                    self.lift_fences(keys, fence, &granted);
                }
                return Ok(HandOver::Fenced { fence });
            }
            self.give_back_both(&answers, &shared_keys, &tokens).await;
            if let Some(error) = self.key_of_another_type(&answers) {
                return Err(error);
            }
            match self.unreachable(keys.first(), &answers, votes) {
                Some(error) => Err(error),
                None => Ok(HandOver::NotHeld),
            }
        })
    }

    /// Yes when no node holds any of `keys` (a node that does not answer counts as free: the
    /// attempt finds out what is wrong with it). A key left on even one node may be a `redlock`
    /// client's partial vote, which it keeps while it retries: attempting then would only split
    /// the votes further and strand more of them until their TTL.
    fn may_be_free<'a>(&'a self, keys: &'a LockKeys, ttl: Duration) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let timeout = self.node_timeout(ttl);
            let answers = futures_util::future::join_all(
                self.nodes
                    .iter()
                    .map(|node| tokio::time::timeout(timeout, node.count_held(keys))),
            )
            .await;
            let held = answers
                .iter()
                .filter(|answer| matches!(answer, Ok(Ok(held)) if *held > 0))
                .count();
            held == 0
        })
    }

    fn release<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            self.unsettled.releasing(token);
            let (shared_keys, owned_token) = (Arc::new(keys.clone()), token.to_owned());
            let answers = self
                .round(
                    self.command_timeout,
                    |node| {
                        let (keys, token) = (shared_keys.clone(), owned_token.clone());
                        async move { node.release(&keys, &token).await }
                    },
                    majority_decided(self.quorum, |released: &bool| *released),
                    |_, _| {},
                )
                .await;
            let votes = self.votes(&answers, |released| *released);
            if votes.granted >= self.quorum {
                return Ok(true);
            }
            if let Some(error) = self.key_of_another_type(&answers) {
                return Err(error);
            }
            match self.unreachable(keys.first(), &answers, votes) {
                Some(error) => Err(error),
                None => Ok(false),
            }
        })
    }

    fn extend<'a>(
        &'a self,
        keys: &'a LockKeys,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, LockError>> {
        Box::pin(async move {
            let started = Instant::now();
            let (shared_keys, owned_token) = (Arc::new(keys.clone()), token.to_owned());
            let answers = self
                .round(
                    self.node_timeout(ttl),
                    |node| {
                        let (keys, token) = (shared_keys.clone(), owned_token.clone());
                        async move { node.extend(&keys, &token, ttl).await }
                    },
                    majority_decided(self.quorum, |extended: &bool| *extended),
                    |_, _| {},
                )
                .await;
            let votes = self.votes(&answers, |extended| *extended);
            let in_time = started.elapsed() + drift(ttl, self.drift_factor) < ttl;
            if votes.granted >= self.quorum && in_time {
                return Ok(true);
            }
            if let Some(error) = self.key_of_another_type(&answers) {
                return Err(error);
            }
            match self.unreachable(keys.first(), &answers, votes) {
                Some(error) => Err(error),
                None => Ok(false),
            }
        })
    }

    fn watch_releases<'a>(
        &'a self,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            // One subscribed node is enough to be woken; the others join as they answer.
            let channels = channels.to_vec();
            let mut pending: FuturesUnordered<_> = self
                .nodes
                .iter()
                .map(|node| {
                    let (node, channels) = (node.clone(), channels.clone());
                    tokio::spawn(async move { node.watch_releases(&channels).await })
                })
                .collect();
            let mut last_error = None;
            while let Some(joined) = pending.next().await {
                match joined {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(error)) => last_error = Some(error),
                    Err(_) => {}
                }
            }
            Err(last_error.unwrap_or(LockError::Connection {
                key: String::new(),
                message: "no node could subscribe".into(),
            }))
        })
    }

    fn unwatch_releases(&self, channels: &[String]) {
        for node in &self.nodes {
            node.unwatch_releases(channels);
        }
    }

    fn close(&self) {
        for node in &self.nodes {
            node.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{majority_decided, Answer, UnsettledAttempts};
    use crate::LockError;

    fn key_type() -> LockError {
        LockError::KeyType {
            key: "k".to_owned(),
            found: "hash".to_owned(),
        }
    }

    #[test]
    fn a_lost_round_with_a_key_of_another_type_hears_every_node() {
        let decided = majority_decided(2, |granted: &bool| *granted);
        // Refused by a holder and by a key of another type: lost either way, but whether the key's
        // type decides it rests on the third node, so the round waits for it.
        let partial: [Answer<bool>; 3] = [Some(Ok(false)), Some(Err(key_type())), None];
        assert!(!decided(&partial));
        let whole: [Answer<bool>; 3] = [Some(Ok(false)), Some(Err(key_type())), Some(Ok(false))];
        assert!(decided(&whole));
        // A majority granted is final whatever the others hold.
        let won: [Answer<bool>; 3] = [Some(Ok(true)), Some(Err(key_type())), Some(Ok(true))];
        assert!(decided(&won));
        // Without a key of another type, two refusals of three decide at once, as before.
        let refused: [Answer<bool>; 3] = [Some(Ok(false)), Some(Ok(false)), None];
        assert!(decided(&refused));
    }

    #[test]
    fn an_attempt_settles_as_released_only_when_released_before_its_last_answer() {
        let unsettled = UnsettledAttempts::default();
        unsettled.start("kept");
        unsettled.start("released");
        unsettled.releasing("released");
        assert!(!unsettled.settle("kept"));
        assert!(unsettled.settle("released"));
        // Settled attempts are forgotten: a release after the last answer marks nothing.
        unsettled.releasing("kept");
        assert!(!unsettled.settle("kept"));
        assert!(unsettled.lock().is_empty());
    }
}
