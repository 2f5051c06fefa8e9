//! Hands finished operations to JS in batches, in the completion layout of
//! [`layout`](super::layout).
//!
//! Every napi `async fn` costs a hop from a tokio thread to the JS thread per call. Instead, each
//! finished operation is queued here, and one weak threadsafe function call delivers everything
//! queued since the last delivery: `(numbers, texts, failures)`, in the completion layout of
//! [`layout`](super::layout). The threadsafe function lives only while something is owed, and a
//! moment after (see [`Completions`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ironlock_core::error::Doing;
use ironlock_core::session::{Completion, CompletionSink, Outcome, Request};
use ironlock_core::LockError;
use napi::bindgen_prelude::{FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tokio::runtime::Handle;

use super::copied::CopiedNumbers;
use super::layout::{
    retry_after_ms, CompletionField as Field, CompletionRecord, CompletionStatus as Status,
    COMPLETION_FIELDS,
};
use super::messages::busy_message;

/// A failed operation's error, as `lib/errors.js` `fromNative` builds the JS error from it.
/// Made only for failures: the success path carries numbers and tokens alone.
#[napi(object, object_from_js = false)]
pub struct NativeFailure {
    /// `ELOCKBUSY`, `ELOCKLOST`, `EQUORUM`, `ECONNECTION`, `EKEYTYPE`, `EREPLICAS`, `EINTERNAL`
    /// or `ABORT_ERR`.
    pub code: String,
    pub key: String,
    pub message: String,
    /// ELOCKBUSY: ms until the holder's TTL ends, as `layout::retry_after_ms` rounds it (the
    /// busy completion's rule); -1 when it set none.
    pub retry_after: Option<f64>,
    /// EQUORUM: how the nodes voted.
    pub votes: Option<NativeVotes>,
    /// A connection error (not a closed locker): what the connection said, for its `cause`.
    pub detail: Option<String>,
    /// EKEYTYPE: the Redis type found at the key (`hash`, `list`…).
    #[napi(js_name = "type")]
    pub found: Option<String>,
    /// EREPLICAS: how many replicas acknowledged the lock in time.
    pub acknowledged: Option<u32>,
    /// EREPLICAS: how many replicas the acquire asked for.
    pub wanted: Option<u32>,
}

/// The votes of a quorum error.
#[napi(object, object_from_js = false)]
pub struct NativeVotes {
    #[napi(js_name = "for")]
    pub granted: u32,
    pub against: u32,
    /// The nodes that failed to answer.
    pub errors: Vec<NativeNodeError>,
}

#[napi(object, object_from_js = false)]
pub struct NativeNodeError {
    /// `host:port`.
    pub node: String,
    pub message: String,
}

impl NativeFailure {
    /// `error`, met while `doing` what its message then says.
    pub fn new(error: &LockError, doing: Doing) -> Self {
        let mut failure = Self {
            code: error.code().to_owned(),
            key: error.key().to_owned(),
            message: error.message_while(doing),
            retry_after: None,
            votes: None,
            detail: None,
            found: None,
            acknowledged: None,
            wanted: None,
        };
        match error {
            LockError::Busy { key, retry_after } => {
                // Worded from the rounded number, as JS words a busy completion's.
                let after = retry_after_ms(*retry_after);
                failure.retry_after = Some(after);
                failure.message = busy_message(key.clone(), after);
            }
            LockError::Quorum { votes, .. } => {
                failure.votes = Some(NativeVotes {
                    granted: votes.granted as u32,
                    against: votes.refused as u32,
                    errors: votes
                        .errors
                        .iter()
                        .map(|(node, message)| NativeNodeError {
                            node: node.clone(),
                            message: message.clone(),
                        })
                        .collect(),
                });
            }
            LockError::Connection { message, .. } => failure.detail = Some(message.clone()),
            LockError::KeyType { found, .. } => failure.found = Some(found.clone()),
            LockError::Replication {
                acknowledged,
                wanted,
                ..
            } => {
                failure.acknowledged = Some(*acknowledged);
                failure.wanted = Some(*wanted);
            }
            _ => {}
        }
        failure
    }
}

pub type Batch = FnArgs<(CopiedNumbers, Vec<String>, Option<Vec<NativeFailure>>)>;
type Deliver = ThreadsafeFunction<(), (), Batch, napi::Status, false, true>;

/// How long a locker stays idle before its threadsafe function goes: making one again costs a few
/// µs of the JS thread, which back-to-back operations (each idle for an instant between its
/// completion and the next submit) would otherwise pay twice a cycle. Far below the 30 ms jest's
/// `--detectOpenHandles` waits for handles to close.
const IDLE_GRACE: Duration = Duration::from_millis(2);

/// The queue of finished operations of one locker and the JS function that drains it.
///
/// The threadsafe function exists only while the runtime may still complete something: from the
/// submit that finds it gone until nothing submitted is owed a completion and no held lock is
/// watched, for [`IDLE_GRACE`]. jest's `--detectOpenHandles` reports every live one, weak or
/// not, so an idle locker must hold none. (Keeping Node alive is the JS side's:
/// `lib/dispatch.js` `keepAlive`.)
pub struct Completions {
    inner: Arc<Mutex<Inner>>,
    /// Where the release of an idle locker's threadsafe function waits out [`IDLE_GRACE`].
    runtime: Handle,
}

#[derive(Default)]
struct Inner {
    queue: Vec<Completion>,
    deliver: Option<Arc<Deliver>>,
    /// Operations submitted and not yet completed, with how many of each (op 0, JS's release of
    /// a lock nobody waits for any more, may be in flight more than once).
    owed: HashMap<u32, u32>,
    /// The owed acquires whose lock is to be watched once held.
    to_watch: HashSet<u32>,
    /// Held locks whose watchdog may report their loss.
    watched: HashSet<u32>,
    /// A release of the threadsafe function is waiting out [`IDLE_GRACE`].
    release_scheduled: bool,
    closed: bool,
}

impl Inner {
    fn idle(&self) -> bool {
        self.owed.is_empty() && self.watched.is_empty()
    }

    fn submitted(&mut self, request: &Request) {
        let op = match request {
            Request::Acquire { op, upkeep, .. } => {
                if upkeep.is_some() {
                    self.to_watch.insert(*op);
                }
                op
            }
            // The core stops the lock's watchdog as the release starts.
            Request::Release { op, id } => {
                self.watched.remove(id);
                op
            }
            Request::Extend { op, .. } => op,
            // Completes nothing; the lock's loss is still reported, as it stays watched.
            Request::LetLapse { .. } => return,
        };
        *self.owed.entry(*op).or_default() += 1;
    }

    fn completed(&mut self, completion: &Completion) {
        let op = completion.op;
        match &completion.outcome {
            Outcome::Lost { id, .. } => {
                self.watched.remove(id);
            }
            outcome => {
                if let Some(count) = self.owed.get_mut(&op) {
                    *count -= 1;
                    if *count == 0 {
                        self.owed.remove(&op);
                    }
                }
                let watch = self.to_watch.remove(&op);
                if let (true, Outcome::Acquired { id, .. }) = (watch, outcome) {
                    self.watched.insert(*id);
                }
            }
        }
    }

    /// Whether the threadsafe function is to be let go after [`IDLE_GRACE`]: nothing more can
    /// come through it, and no release is scheduled yet (it now is).
    fn release_due(&mut self) -> bool {
        let due = self.idle() && self.deliver.is_some() && !self.release_scheduled;
        self.release_scheduled |= due;
        due
    }
}

impl Completions {
    pub fn new(runtime: Handle) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            runtime,
        }
    }

    /// Records `requests` as owed a completion, before the core gets them; makes the threadsafe
    /// function from `callback` if it is gone and will be needed. JS thread only.
    pub fn submitting<'env>(
        &self,
        requests: &[Request],
        callback: impl FnOnce() -> napi::Result<Function<'env, Batch, ()>>,
    ) -> napi::Result<()> {
        let mut inner = self.lock();
        // Made before anything is recorded: if it fails, the batch fails whole, and JS submits
        // its requests again one by one.
        if !inner.closed && inner.deliver.is_none() && requests.iter().any(completes) {
            inner.deliver = Some(Arc::new(self.deliver(callback()?)?));
        }
        for request in requests {
            inner.submitted(request);
        }
        Ok(())
    }

    /// The threadsafe function that hands `callback` whatever is queued when it is called.
    fn deliver(&self, callback: Function<'_, Batch, ()>) -> napi::Result<Deliver> {
        let drained = Arc::downgrade(&self.inner);
        callback
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_| {
                let batch = drained
                    .upgrade()
                    .map(|inner| std::mem::take(&mut inner.lock().expect("completion queue").queue))
                    .unwrap_or_default();
                Ok(encode(batch))
            })
    }

    /// Records `completions`, which came back from a wire call rather than through the sink,
    /// and schedules the release of the threadsafe function if that was the last thing owed.
    /// JS thread only.
    pub fn completed_on_wire(&self, completions: &[Completion]) {
        let due = {
            let mut inner = self.lock();
            for completion in completions {
                inner.completed(completion);
            }
            inner.release_due()
        };
        if due {
            self.release_when_still_idle();
        }
    }

    /// Lets the threadsafe function go after [`IDLE_GRACE`] unless something is owed again by
    /// then. Dropped, it is released (from any thread), and Node still makes the calls queued on
    /// it before it goes.
    fn release_when_still_idle(&self) {
        let inner = Arc::downgrade(&self.inner);
        self.runtime.spawn(async move {
            tokio::time::sleep(IDLE_GRACE).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let released = {
                let mut inner = inner.lock().expect("completion queue");
                inner.release_scheduled = false;
                if inner.idle() {
                    inner.deliver.take()
                } else {
                    None
                }
            };
            drop(released);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("completion queue")
    }
}

impl CompletionSink for Completions {
    /// Stops deliveries; the JS side settles whatever was still pending.
    fn close(&self) {
        let deliver = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.queue.clear();
            inner.deliver.take()
        };
        drop(deliver);
    }

    fn push(&self, completion: Completion) {
        let (deliver, due) = {
            let mut inner = self.lock();
            inner.completed(&completion);
            // Gone only when nothing was owed: a watchdog's late word on a lock released since.
            let Some(deliver) = &inner.deliver else {
                return;
            };
            // Only the push that finds the queue empty schedules a delivery; later ones ride along.
            let first = inner.queue.is_empty().then(|| Arc::clone(deliver));
            inner.queue.push(completion);
            (first, inner.release_due())
        };
        // Outside the lock: the call wakes the JS thread (a syscall), which would otherwise find
        // the queue locked when it comes to drain it. A delivery that finds the queue already
        // drained passes JS an empty batch.
        if let Some(deliver) = deliver {
            deliver.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
        if due {
            self.release_when_still_idle();
        }
    }
}

/// Whether `request` is owed a completion (every kind but a let-lapse).
fn completes(request: &Request) -> bool {
    !matches!(request, Request::LetLapse { .. })
}

fn encode(batch: Vec<Completion>) -> Batch {
    let (numbers, texts, failures) = flatten(batch);
    FnArgs::from((CopiedNumbers(numbers), texts, failures))
}

/// The numbers, texts and failures of `batch`, in the completion layout of
/// [`layout`](super::layout); no failures is `None`, so JS gets no array for them.
pub fn flatten(batch: Vec<Completion>) -> (Vec<f64>, Vec<String>, Option<Vec<NativeFailure>>) {
    let mut numbers = Vec::with_capacity(batch.len() * COMPLETION_FIELDS as usize);
    let mut texts = Vec::new();
    let mut failures = Vec::new();
    for Completion { op, outcome } in batch {
        if let Some((error, doing)) = outcome.failure() {
            failures.push(NativeFailure::new(error, doing));
        }
        let record = match outcome {
            Outcome::Acquired {
                id,
                token,
                fence,
                expires_at,
            } => {
                texts.push(token);
                let mut record = CompletionRecord::new(op, Status::Acquired);
                record[Field::Lock] = f64::from(id);
                record[Field::Fence] = fence as f64;
                record[Field::ExpiresAt] = epoch_ms(expires_at);
                record
            }
            Outcome::Busy { retry_after } => {
                let mut record = CompletionRecord::new(op, Status::Busy);
                record[Field::RetryAfter] = retry_after_ms(retry_after);
                record
            }
            Outcome::Released { released } => {
                let mut record = CompletionRecord::new(op, Status::Done);
                record[Field::Released] = f64::from(u8::from(released));
                record
            }
            Outcome::Extended { expires_at } => {
                let mut record = CompletionRecord::new(op, Status::Extended);
                record[Field::ExpiresAt] = epoch_ms(expires_at);
                record
            }
            Outcome::Failed { .. } => CompletionRecord::new(op, Status::Failed),
            Outcome::Lost { id, .. } => {
                let mut record = CompletionRecord::new(op, Status::Lost);
                record[Field::Lock] = f64::from(id);
                record
            }
        };
        numbers.extend_from_slice(&record.0);
    }
    (numbers, texts, (!failures.is_empty()).then_some(failures))
}

/// `time` in epoch ms, rounded down: the lock is surely ours until then.
fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_millis() as f64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ironlock_core::error::Doing;
    use ironlock_core::session::{Completion, Outcome};
    use ironlock_core::LockError;

    use super::{flatten, Field, NativeFailure, Status};

    /// The one rounding rule: a holder with 1500.4 ms left is 1501 ms on the busy completion,
    /// on a busy failure, and in both messages (JS words the completion's with `busyMessage`).
    #[test]
    fn retry_after_rounds_up_to_whole_ms_on_every_path() {
        let left = Duration::from_micros(1_500_400);
        let (numbers, _, _) = flatten(vec![Completion {
            op: 7,
            outcome: Outcome::Busy {
                retry_after: Some(left),
            },
        }]);
        assert_eq!(
            numbers[Field::Status as usize],
            f64::from(Status::Busy as u8)
        );
        let on_completion = numbers[Field::RetryAfter as usize];
        let busy = LockError::Busy {
            key: "k".to_owned(),
            retry_after: Some(left),
        };
        let failure = NativeFailure::new(&busy, Doing::Locking);
        assert_eq!(on_completion, 1501.0);
        assert_eq!(failure.retry_after, Some(on_completion));
        assert_eq!(
            failure.message,
            super::busy_message("k".to_owned(), on_completion)
        );
        assert!(failure.message.contains("1501 ms"), "{}", failure.message);
    }
}
