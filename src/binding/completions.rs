//! Hands finished operations to JS in batches.
//!
//! Every napi `async fn` costs a hop from a tokio thread to the JS thread per call. Instead, each
//! finished operation is queued here, and one weak threadsafe function call delivers everything
//! queued since the last delivery: `(numbers, texts)`, where `numbers` holds [`FIELDS`] numbers per
//! completion and `texts` one string per completion that carries text, in order.

use std::sync::{Arc, Mutex};

use ironlock_core::error::Doing;
use ironlock_core::LockError;
use napi::bindgen_prelude::{FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};

use super::copied::CopiedNumbers;

/// Numbers per completion: operation id, status, and three status-specific values.
pub const FIELDS: usize = 5;

/// What finished; the JS side (`lib/dispatch.js`) decodes the same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// `[lock id, fence, expiresAt]`, text: the token.
    Acquired = 0,
    /// `[retryAfter or -1]`: busy when the wait ended.
    Busy = 1,
    /// `[1 or 0]`.
    Done = 2,
    /// `[_, _, expiresAt]`.
    Extended = 3,
    /// text: the error as JSON.
    Failed = 4,
    /// The watchdog lost a lock: `[lock id]`, text: the error as JSON. The id field is 0.
    Lost = 5,
}

pub struct Completion {
    pub op: u32,
    pub status: Status,
    pub values: [f64; 3],
    pub text: Option<String>,
}

impl Completion {
    /// A failed operation that was `doing` what its message then says.
    pub fn failed(op: u32, error: &LockError, doing: Doing) -> Self {
        Self {
            op,
            status: Status::Failed,
            values: [0.0; 3],
            text: Some(error_json(error, doing)),
        }
    }
}

type Batch = FnArgs<(CopiedNumbers, Vec<String>)>;
type Deliver = ThreadsafeFunction<(), (), Batch, napi::Status, false, true>;

/// The queue of finished operations of one locker and the JS function that drains it.
#[derive(Clone)]
pub struct Completions {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    queue: Vec<Completion>,
    /// `None` once closed: the threadsafe function is released so nothing of it outlives the
    /// locker (jest counts a live one as an open handle).
    deliver: Option<Arc<Deliver>>,
}

impl Completions {
    pub fn new(callback: Function<'_, Batch, ()>) -> napi::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            queue: Vec::new(),
            deliver: None,
        }));
        let drained = Arc::downgrade(&inner);
        let deliver = callback
            .build_threadsafe_function::<()>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |_| {
                let batch = drained
                    .upgrade()
                    .map(|inner| std::mem::take(&mut inner.lock().expect("completion queue").queue))
                    .unwrap_or_default();
                Ok(encode(batch))
            })?;
        inner.lock().expect("completion queue").deliver = Some(Arc::new(deliver));
        Ok(Self { inner })
    }

    pub fn push(&self, completion: Completion) {
        let deliver = {
            let mut inner = self.inner.lock().expect("completion queue");
            let Some(deliver) = &inner.deliver else {
                return;
            };
            // Only the push that finds the queue empty schedules a delivery; later ones ride along.
            let first = inner.queue.is_empty().then(|| Arc::clone(deliver));
            inner.queue.push(completion);
            first
        };
        // Outside the lock: the call wakes the JS thread (a syscall), which would otherwise find
        // the queue locked when it comes to drain it. A delivery that finds the queue already
        // drained passes JS an empty batch.
        if let Some(deliver) = deliver {
            deliver.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }

    /// Stops deliveries; the JS side settles whatever was still pending.
    pub fn close(&self) {
        let deliver = {
            let mut inner = self.inner.lock().expect("completion queue");
            inner.queue.clear();
            inner.deliver.take()
        };
        drop(deliver);
    }
}

fn encode(batch: Vec<Completion>) -> Batch {
    let (numbers, texts) = flatten(batch);
    FnArgs::from((CopiedNumbers(numbers), texts))
}

/// The numbers and texts of `batch`, in the layout described at the top of this file.
pub fn flatten(batch: Vec<Completion>) -> (Vec<f64>, Vec<String>) {
    let mut numbers = Vec::with_capacity(batch.len() * FIELDS);
    let mut texts = Vec::new();
    for completion in batch {
        numbers.push(f64::from(completion.op));
        numbers.push(f64::from(completion.status as u8));
        numbers.extend_from_slice(&completion.values);
        if let Some(text) = completion.text {
            texts.push(text);
        }
    }
    (numbers, texts)
}

/// `{"code","key","message",…}`: the fields the JS error classes are built from.
pub fn error_json(error: &LockError, doing: Doing) -> String {
    let mut json = format!(
        "{{\"code\":{},\"key\":{},\"message\":{}",
        quote(error.code()),
        quote(error.key()),
        quote(&error.message_while(doing))
    );
    match error {
        LockError::Busy { retry_after, .. } => {
            let after = retry_after.map_or(-1.0, |after| after.as_secs_f64() * 1000.0);
            json.push_str(&format!(",\"retryAfter\":{}", after.ceil()));
        }
        LockError::Quorum { votes, .. } => {
            let errors: Vec<String> = votes
                .errors
                .iter()
                .map(|(node, message)| {
                    format!(
                        "{{\"node\":{},\"message\":{}}}",
                        quote(node),
                        quote(message)
                    )
                })
                .collect();
            json.push_str(&format!(
                ",\"votes\":{{\"for\":{},\"against\":{},\"errors\":[{}]}}",
                votes.granted,
                votes.refused,
                errors.join(",")
            ));
        }
        LockError::Connection { message, .. } => {
            json.push_str(&format!(",\"detail\":{}", quote(message)));
        }
        _ => {}
    }
    json.push('}');
    json
}

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
