//! `NativeLocker`: the JS-facing handle of one core locker. Calls return at once; results arrive
//! through [`Completions`]. Held locks stay on this side and JS refers to them by id.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use ironlock_core::transport::wire::Wire;
use ironlock_core::{AcquireOptions, CancelToken, Lifecycle, LockerConfig, Target};
use napi::bindgen_prelude::{BufferSlice, Float64ArraySlice, Function};
use napi::{CleanupEnvHook, Env};
use napi_derive::napi;

use super::completions::{Batch, Completions};
use super::copied::CopiedBytes;
use super::layout::{AcquireFlag, RequestKind, REQUEST_FIELDS};
use super::options::LockerOptions;
use super::shared::{millis, upkeep, Request, Shared};
use super::wire::{LockWire, WireOutput};

#[napi]
pub struct NativeLocker {
    shared: Arc<Shared>,
    /// Closes the locker when its JS environment goes away without `close()` (a worker thread
    /// terminated mid-operation): its connections live on the process-wide runtime and would
    /// outlive the worker. JS-thread only.
    teardown: RefCell<Option<CleanupEnvHook<Weak<Shared>>>>,
    /// One Redis: JS may carry one-key acquires and releases on a socket of its own (see
    /// `lib/wire.js`); this is that connection's protocol state. JS-thread only.
    wire: Option<RefCell<LockWire>>,
}

#[napi]
impl NativeLocker {
    /// `onComplete(numbers, texts, failures)` receives batches of finished operations, in the
    /// completion layout of `layout.rs`.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        options: LockerOptions,
        #[napi(
            ts_arg_type = "(numbers: Float64Array, texts: Array<string>, failures: Array<NativeFailure> | undefined) => void"
        )]
        on_complete: Function<'_, Batch, ()>,
    ) -> napi::Result<Self> {
        let config = LockerConfig::try_from(options).map_err(napi::Error::from_reason)?;
        let locker = Lifecycle::new(&config).map_err(napi::Error::from_reason)?;
        let wire = match &config.target {
            Target::Single(node) => Some(RefCell::new(Wire::new(node, config.drift_factor))),
            _ => None,
        };
        let shared = Arc::new(Shared::new(locker, Completions::new(on_complete)?));
        let teardown = env.add_env_cleanup_hook(Arc::downgrade(&shared), |shared| {
            if let Some(shared) = shared.upgrade() {
                shared.close();
            }
        })?;
        Ok(Self {
            wire,
            shared,
            teardown: RefCell::new(Some(teardown)),
        })
    }

    /// Starts a batch of operations: JS queues the calls of one tick and hands them over at once,
    /// so a burst costs one napi call, one wake of the runtime and one socket write.
    ///
    /// `numbers` and `keys` are in the request layout of `layout.rs`: [`REQUEST_FIELDS`] numbers
    /// per operation, `[kind, op, a, b, c, key count]`, as [`RequestKind`] describes.
    ///
    /// Returns the bytes JS must write to the wire's socket, when the wire is ready and took some
    /// of the requests: one-key acquires that no local request is ahead of, and releases of
    /// one-key locks nobody here waits for. Everything else runs on the runtime.
    #[napi(ts_return_type = "Buffer | null")]
    pub fn submit(
        &self,
        numbers: Float64ArraySlice<'_>,
        keys: Vec<String>,
    ) -> napi::Result<Option<CopiedBytes>> {
        let mut wire = self
            .wire
            .as_ref()
            .map(RefCell::borrow_mut)
            .filter(|wire| wire.is_ready());
        // Refused whole, before anything starts: JS then submits the requests one by one.
        let kinds = numbers
            .chunks_exact(REQUEST_FIELDS as usize)
            .map(|fields| RequestKind::from_field(fields[0]))
            .collect::<napi::Result<Vec<_>>>()?;
        let mut keys = keys.into_iter();
        let mut requests = Vec::with_capacity(kinds.len());
        for (fields, kind) in numbers.chunks_exact(REQUEST_FIELDS as usize).zip(kinds) {
            let op = fields[1] as u32;
            let request = match kind {
                RequestKind::Acquire => {
                    let flags = fields[4];
                    let cancel = AcquireFlag::Cancellable
                        .is_in(flags)
                        .then(|| self.cancellable(op));
                    Request::Acquire {
                        op,
                        keys: self
                            .shared
                            .locker
                            .keys(keys.by_ref().take(fields[5] as usize).collect()),
                        options: AcquireOptions {
                            ttl: millis(fields[2]),
                            wait: (fields[3] >= 0.0).then(|| millis(fields[3])),
                            cancel,
                        },
                        watchdog: upkeep(flags),
                    }
                }
                RequestKind::Release => Request::Release {
                    op,
                    id: fields[2] as u32,
                },
                RequestKind::Extend => Request::Extend {
                    op,
                    id: fields[2] as u32,
                    ttl: fields[3],
                },
            };
            match &mut wire {
                Some(wire) => requests.extend(self.shared.onto_wire(wire, request)),
                None => requests.push(request),
            }
        }
        if !requests.is_empty() {
            self.shared.start(requests);
        }
        Ok(wire.and_then(|mut wire| {
            let mut out = Vec::new();
            wire.flush(&mut out);
            (!out.is_empty()).then_some(CopiedBytes(out))
        }))
    }

    /// The wire's socket connected: returns its first bytes (AUTH, SELECT; maybe none).
    #[napi(ts_return_type = "Buffer")]
    pub fn wire_connected(&self) -> CopiedBytes {
        let mut out = Vec::new();
        if let Some(wire) = &self.wire {
            wire.borrow_mut().connected(&mut out);
        }
        CopiedBytes(out)
    }

    /// Bytes read from the wire's socket: the operations they finish, and what to write back.
    #[napi]
    pub fn wire_feed(&self, bytes: BufferSlice<'_>) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut out = Vec::new();
        let mut events = Vec::new();
        let broken = wire.feed(&bytes, &mut out, &mut events).err();
        if let Some(reason) = &broken {
            wire.fail(reason, false, &mut events);
        }
        Ok(self.shared.wire_output(&wire, events, out, broken))
    }

    /// The wire's socket closed or failed. With `retry` (the socket closed under it, Redis may
    /// well be back at once), what it carried runs again on the runtime's connection, after
    /// giving back whatever a sent attempt may have taken; without (a command timed out), it
    /// fails with `reason`.
    #[napi]
    pub fn wire_fail(&self, reason: String, retry: bool) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut events = Vec::new();
        wire.fail(&reason, false, &mut events);
        if retry {
            events = self.shared.retry_on_runtime(events);
        }
        Ok(self.shared.wire_output(&wire, events, Vec::new(), None))
    }

    /// The locker is closing: what the wire carried fails as closed.
    #[napi]
    pub fn wire_close(&self) -> napi::Result<WireOutput> {
        let Some(wire) = &self.wire else {
            return Err(no_wire());
        };
        let mut wire = wire.borrow_mut();
        let mut events = Vec::new();
        wire.fail("the locker was closed", true, &mut events);
        Ok(self.shared.wire_output(&wire, events, Vec::new(), None))
    }

    /// Stops the wait of operation `op`, if it is still waiting.
    #[napi]
    pub fn cancel(&self, op: u32) {
        if let Some(token) = self
            .shared
            .cancels
            .lock()
            .expect("cancel table")
            .remove(&op)
        {
            token.cancel();
        }
    }

    /// Closes the connections; operations after this fail with a connection error.
    #[napi]
    pub fn close(&self, env: Env) -> napi::Result<()> {
        if let Some(teardown) = self.teardown.borrow_mut().take() {
            env.remove_env_cleanup_hook(teardown)?;
        }
        self.shared.close();
        Ok(())
    }
}

fn no_wire() -> napi::Error {
    napi::Error::from_reason("this locker has no wire: its target is not one Redis")
}

impl NativeLocker {
    /// Registered on the JS thread, before the wait starts, so a cancel can never come too early.
    fn cancellable(&self, op: u32) -> CancelToken {
        let token = CancelToken::default();
        self.shared
            .cancels
            .lock()
            .expect("cancel table")
            .insert(op, token.clone());
        token
    }
}
