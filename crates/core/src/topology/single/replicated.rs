//! Writes that count only once replicas acknowledged them (`replicas: n`): each script call goes
//! with `WAIT` right behind it, on a connection of their own ([`Server::replicated`]), since
//! `WAIT` counts what its connection wrote and blocks that connection until it answers. One-key
//! attempts asked for together with the same [`Replicas`] share one script call and one `WAIT`,
//! as on the shared connection ([`super::one_key`]). A Redis Cluster batches them the same way,
//! per master (`crate::topology::Cluster`), with what is here.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;

use super::one_key::{Acquires, OneKeyAcquire};
use super::Server;
use crate::error::LockError;
use crate::protocol::replicas::Replicas;
use crate::protocol::resp;
use crate::protocol::script_call::ScriptCall;
use crate::protocol::script_reply::Attempt;
use crate::transport::batch::Reply;

/// A one-key attempt waiting to be sent with `WAIT` behind it, with what it asks of replicas (on
/// one Redis and on a Redis Cluster alike).
pub(in crate::topology) struct ReplicatedAcquire {
    attempt: OneKeyAcquire,
    replicas: Replicas,
}

impl ReplicatedAcquire {
    pub(in crate::topology) fn new(attempt: OneKeyAcquire, replicas: Replicas) -> Self {
        Self { attempt, replicas }
    }

    pub(in crate::topology) fn name(&self) -> &str {
        self.attempt.name()
    }
}

/// The attempts `queued` together, by the [`Replicas`] they ask for: one `WAIT` answers one
/// count and one timeout.
pub(in crate::topology) fn by_replicas(
    queued: impl Iterator<Item = (ReplicatedAcquire, Reply<Attempt>)>,
) -> HashMap<Replicas, Vec<(OneKeyAcquire, Reply<Attempt>)>> {
    let mut by_replicas: HashMap<Replicas, Vec<_>> = HashMap::new();
    for (queued, reply_to) in queued {
        by_replicas
            .entry(queued.replicas)
            .or_default()
            .push((queued.attempt, reply_to));
    }
    by_replicas
}

/// What `attempt` comes to once `acknowledged` replicas have it: a grant stands only with as
/// many as `replicas` wants; a busy answer or an error stays what it was.
pub(in crate::topology) fn granted(
    outcome: Result<Attempt, LockError>,
    attempt: &OneKeyAcquire,
    replicas: Replicas,
    acknowledged: u32,
) -> Result<Attempt, LockError> {
    outcome.and_then(|taken| match taken {
        Attempt::Acquired { .. } => replicas.check(attempt.name(), acknowledged).map(|()| taken),
        busy => Ok(busy),
    })
}

impl Server {
    /// Runs `call` for the lock `key`, then `WAIT` for `replicas`, on the replicated writes'
    /// connection: the script's reply and how many replicas acknowledged it.
    pub(super) async fn run_then_wait(
        &self,
        key: &str,
        call: &ScriptCall<'_>,
        replicas: Replicas,
    ) -> Result<(resp::Reply, u32), LockError> {
        self.replicated.run_then_wait(key, call, replicas).await
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
        let chunks = by_replicas(queued)
            .into_iter()
            .flat_map(|(replicas, attempts)| {
                Acquires::split(attempts).map(move |chunk| (chunk, replicas))
            });
        join_all(chunks.map(|(chunk, replicas)| self.replicated_chunk(chunk, replicas))).await;
    }

    async fn replicated_chunk(
        self: &Arc<Self>,
        acquires: Acquires<Reply<Attempt>>,
        replicas: Replicas,
    ) {
        let answer = self
            .run_then_wait(acquires.first_name(), &acquires.call(), replicas)
            .await;
        let (reply, acknowledged) = match answer {
            Ok((reply, acknowledged)) => (Ok(reply), acknowledged),
            Err(error) => (Err(error), 0),
        };
        let refused = |names: &[String], refusal| self.refused(names, refusal);
        for (attempt, reply_to, outcome) in acquires.answers(reply, &refused) {
            let outcome = granted(outcome, &attempt, replicas, acknowledged);
            if let Err(Ok(Attempt::Acquired { .. }) | Err(_)) = reply_to.send(outcome) {
                // Its caller is gone: give back whatever the attempt may have set.
                let server = self.clone();
                tokio::spawn(async move {
                    let _ = server.release_one(attempt.undo()).await;
                });
            }
        }
    }
}
