//! Writes that count only once replicas acknowledged them (`replicas: n`) on a Redis Cluster:
//! each call that takes a lock goes on its slot's master with `WAIT` right behind it, on that
//! master's connection of its own ([`ClusterMasters`]), never on the cluster connection every
//! other call shares. One-key attempts asked for together with the same [`Replicas`] go as one
//! call per slot, the calls of one master in one pipeline with one `WAIT`, as one Redis batches
//! them (`super::super::single`'s replicated writes, whose grouping and checks these are).

use std::sync::Arc;

use futures_util::future::join_all;

use super::Shards;
use crate::error::LockError;
use crate::protocol::chunks::per_slot;
use crate::protocol::replicas::Replicas;
use crate::protocol::resp;
use crate::protocol::script_call::ScriptCall;
use crate::topology::single::{by_replicas, granted, Acquires, OneKeyAcquire, ReplicatedAcquire};
use crate::topology::Attempt;
use crate::transport::batch::Reply;
use crate::transport::cluster_masters::SlotCall;

impl Shards {
    /// Runs a call that takes a lock (an attempt or a hand-over) for the lock `key` on the master
    /// of `slot`, followed by `WAIT` when `replicas` are wanted: the reply, and how many replicas
    /// acknowledged it if asked.
    pub(super) async fn run_for(
        &self,
        key: &str,
        slot: u16,
        call: ScriptCall<'_>,
        replicas: Replicas,
    ) -> Result<(resp::Reply, Option<u32>), LockError> {
        if !replicas.are_wanted() {
            return Ok((self.connection.run(key, slot, &call).await?, None));
        }
        let calls = [SlotCall { slot, call }];
        let answers = self
            .masters
            .run_each_then_wait(&self.connection, key, &calls, replicas)
            .await;
        let answer = answers.into_iter().next();
        let no_answer = || Err(self.connection.failure(key, "the call went unanswered"));
        let (reply, acknowledged) = answer.unwrap_or_else(no_answer)?;
        Ok((reply, Some(acknowledged)))
    }

    /// Queues a one-key attempt that waits for `replicas`; its batch leaves once the tasks
    /// runnable now have queued theirs.
    pub(super) async fn acquire_one_replicated(
        self: &Arc<Self>,
        attempt: OneKeyAcquire,
        replicas: Replicas,
    ) -> Result<Attempt, LockError> {
        let queued = ReplicatedAcquire::new(attempt, replicas);
        let name = queued.name().to_owned();
        let flush = || self.clone().flush_replicated_acquires();
        self.replicated_acquires.queue(queued, &name, flush).await
    }

    async fn flush_replicated_acquires(self: Arc<Self>) {
        let queued = self.replicated_acquires.take().into_iter().flatten();
        let groups = by_replicas(queued).into_iter();
        join_all(groups.map(|(replicas, attempts)| self.replicated_calls(attempts, replicas)))
            .await;
    }

    /// `attempts` that ask for the same `replicas`: one call per slot (and chunk), each master's
    /// calls in one pipeline with one `WAIT`, each attempt granted only if its master's replicas
    /// acknowledged enough.
    async fn replicated_calls(
        self: &Arc<Self>,
        attempts: Vec<(OneKeyAcquire, Reply<Attempt>)>,
        replicas: Replicas,
    ) {
        let chunks: Vec<(u16, Acquires<Reply<Attempt>>)> =
            per_slot(attempts.into_iter(), |(attempt, _)| attempt.slot())
                .into_iter()
                .map(|(slot, chunk)| (slot, Acquires(chunk)))
                .collect();
        let Some((_, first)) = chunks.first() else {
            return;
        };
        let calls: Vec<SlotCall<'_>> = chunks
            .iter()
            .map(|(slot, acquires)| SlotCall {
                slot: *slot,
                call: acquires.call(),
            })
            .collect();
        let answers = self
            .masters
            .run_each_then_wait(&self.connection, first.first_name(), &calls, replicas)
            .await;
        drop(calls);
        let refused = |names: &[String], refusal| self.connection.refused(names, refusal);
        for ((_, acquires), answer) in chunks.into_iter().zip(answers) {
            let (reply, acknowledged) = match answer {
                Ok((reply, acknowledged)) => (Ok(reply), acknowledged),
                Err(error) => (Err(error), 0),
            };
            for (attempt, reply_to, outcome) in acquires.answers(reply, &refused) {
                let outcome = granted(outcome, &attempt, replicas, acknowledged);
                self.answer_attempt(attempt, reply_to, outcome);
            }
        }
    }
}
