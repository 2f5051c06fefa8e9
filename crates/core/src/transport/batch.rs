//! Coalescing: the requests that reach a server while the runtime is busy with others travel to
//! Redis together, as one script call, instead of one call each.
//!
//! No timer is involved. The first request of a batch spawns its flush; the runtime runs that task
//! after the tasks that were already runnable, which by then have queued their requests too. So a
//! lone request leaves at once, and a burst (many callers in one JS tick) leaves as one call.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::LockError;
use crate::protocol::chunks;

/// Where the answer to one queued request goes.
pub type Reply<R> = oneshot::Sender<Result<R, LockError>>;

pub struct Batch<T, R> {
    pending: Mutex<Vec<(T, Reply<R>)>>,
}

impl<T, R> Default for Batch<T, R> {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
        }
    }
}

impl<T, R> Batch<T, R> {
    /// Queues `item`. The flag is true for the first item of a new batch: the caller must then
    /// arrange for [`Batch::take`] to run, after the tasks that are runnable now.
    pub fn push(&self, item: T) -> (oneshot::Receiver<Result<R, LockError>>, bool) {
        let (reply, answer) = oneshot::channel();
        let mut pending = self.pending.lock().expect("batch queue");
        pending.push((item, reply));
        (answer, pending.len() == 1)
    }

    /// Queues `item` (of the lock `key`) and waits for its answer; the first item of a new batch
    /// spawns `flush()`, which takes the batch once the tasks runnable now have queued theirs.
    pub async fn queue<F>(
        &self,
        item: T,
        key: &str,
        flush: impl FnOnce() -> F,
    ) -> Result<R, LockError>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (reply, first) = self.push(item);
        if first {
            tokio::spawn(flush());
        }
        answer(reply, key).await
    }

    /// Everything queued so far, in chunks of at most [`chunks::MAX_BATCH`].
    pub fn take(&self) -> Vec<Vec<(T, Reply<R>)>> {
        let pending = std::mem::take(&mut *self.pending.lock().expect("batch queue"));
        chunks::split(pending).collect()
    }
}

/// What a caller gets when its request's flush vanished without answering (a bug, or a runtime
/// shutting down): an error, never a request left pending.
pub async fn answer<R>(
    answer: oneshot::Receiver<Result<R, LockError>>,
    key: &str,
) -> Result<R, LockError> {
    answer.await.unwrap_or_else(|_| {
        Err(LockError::Connection {
            key: key.to_owned(),
            message: "the request was dropped before Redis answered".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::chunks::MAX_BATCH;

    #[test]
    fn first_push_of_a_batch_asks_for_a_flush() {
        let batch: Batch<u32, ()> = Batch::default();
        let (_a, first) = batch.push(1);
        let (_b, second) = batch.push(2);
        assert!(first);
        assert!(!second);
        assert_eq!(batch.take().len(), 1);
        let (_c, after_take) = batch.push(3);
        assert!(after_take, "a push after a take starts a new batch");
    }

    #[test]
    fn take_splits_into_bounded_chunks_in_order() {
        let batch: Batch<usize, ()> = Batch::default();
        let _answers: Vec<_> = (0..MAX_BATCH * 2 + 5).map(|i| batch.push(i).0).collect();
        let chunks = batch.take();
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_BATCH, MAX_BATCH, 5]);
        let order: Vec<usize> = chunks.iter().flatten().map(|(item, _)| *item).collect();
        assert_eq!(order, (0..MAX_BATCH * 2 + 5).collect::<Vec<_>>());
        assert!(batch.take().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_reply_becomes_an_error() {
        let batch: Batch<u32, bool> = Batch::default();
        let (answer_rx, _) = batch.push(1);
        drop(batch.take());
        let error = answer(answer_rx, "k").await.unwrap_err();
        assert_eq!(error.code(), "ECONNECTION");
        assert_eq!(error.key(), "k");
    }
}
