//! `NativeLocker`: the JS-facing handle of one core [`Locker`]. It decodes requests from the
//! request layout of `layout.rs` and encodes what the core answers in the completion layout;
//! every decision is the core's. Calls return at once; results arrive through [`Completions`]
//! or, for what the wire carried, from the wire calls.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ironlock_core::session::{Locker, Request, ToWire, WireOutput};
use ironlock_core::topology::ShardWrite;
use ironlock_core::transport::runtime::RUNTIME;
use ironlock_core::{LockerConfig, Replicas, Upkeep};
use napi::bindgen_prelude::{BufferSlice, Either, Float64ArraySlice, Function, FunctionRef};
use napi::{CleanupEnvHook, Env};
use napi_derive::napi;

use super::completions::{flatten, Batch, Completions, NativeFailure};
use super::copied::{CopiedBytes, CopiedNumbers};
use super::layout::{
    AcquireFlag, RequestField as Field, RequestKind, RequestRecord, REQUEST_FIELDS,
};
use super::options::LockerOptions;

#[napi]
pub struct NativeLocker {
    locker: Arc<Locker>,
    completions: Arc<Completions>,
    /// `onComplete`, from which a threadsafe function is made whenever the runtime may complete
    /// something again (see [`Completions`]).
    on_complete: FunctionRef<Batch, ()>,
    /// Closes the locker when its JS environment goes away without `close()` (a worker thread
    /// terminated mid-operation): its connections live on the process-wide runtime and would
    /// outlive the worker. JS-thread only.
    teardown: RefCell<Option<CleanupEnvHook<Weak<Locker>>>>,
}

/// A server's address, for the wire's socket.
#[napi(object)]
pub struct WireAddress {
    pub host: String,
    pub port: u32,
}

/// What the wire's sockets are to do after a submit: one socket's bytes, or each master's
/// bytes or whether to open it (see [`NativeLocker::submit`]).
type WireWrites = Either<CopiedBytes, Vec<Either<CopiedBytes, bool>>>;

/// What a wire call gives back to JS.
#[napi(object, object_from_js = false)]
pub struct NativeWireOutput {
    /// Finished operations, in the completion layout of `onComplete` (see `layout.rs`).
    #[napi(ts_type = "Float64Array")]
    pub numbers: CopiedNumbers,
    pub texts: Vec<String>,
    pub failures: Option<Vec<NativeFailure>>,
    /// Bytes to write to the socket.
    #[napi(ts_type = "Buffer")]
    pub write: Option<CopiedBytes>,
    /// AUTH and SELECT are done: requests may go on the wire.
    pub ready: bool,
    /// Commands still unanswered: JS times them out.
    pub in_flight: u32,
    /// Set when the connection is beyond repair: JS closes the socket.
    pub broken: Option<String>,
}

impl From<WireOutput> for NativeWireOutput {
    fn from(output: WireOutput) -> Self {
        let (numbers, texts, failures) = flatten(output.completions);
        Self {
            numbers: CopiedNumbers(numbers),
            texts,
            failures,
            write: bytes(output.write),
            ready: output.ready,
            in_flight: output.in_flight as u32,
            broken: output.broken,
        }
    }
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
        let completions = Arc::new(Completions::new(RUNTIME.clone()));
        let locker = Locker::new(&config, completions.clone(), RUNTIME.clone())
            .map_err(napi::Error::from_reason)?;
        let locker = Arc::new(locker);
        let teardown = env.add_env_cleanup_hook(Arc::downgrade(&locker), |locker| {
            if let Some(locker) = locker.upgrade() {
                locker.close();
            }
        })?;
        Ok(Self {
            locker,
            completions,
            on_complete: on_complete.create_ref()?,
            teardown: RefCell::new(Some(teardown)),
        })
    }

    /// Starts a batch of operations: JS queues the calls of one tick and hands them over at once,
    /// so a burst costs one napi call, one wake of the runtime and one socket write.
    ///
    /// `numbers` and `keys` are in the request layout of `layout.rs`: [`REQUEST_FIELDS`] numbers
    /// per operation, placed as `RequestField` says and used as [`RequestKind`] says.
    ///
    /// Returns what JS must do with the wire's sockets (see `Locker::submit` in the core): on one
    /// Redis (or Sentinel's master), the bytes to write to its socket when the wire is ready and
    /// took some of the requests; on a Redis Cluster, for each master's socket by index, the
    /// bytes to write, `true` to open it, or `false`; `null` when there is nothing to do.
    #[napi(ts_return_type = "Buffer | Array<Buffer | boolean> | null")]
    pub fn submit(
        &self,
        env: Env,
        numbers: Float64ArraySlice<'_>,
        keys: Vec<String>,
    ) -> napi::Result<Option<WireWrites>> {
        // Refused whole, before anything starts: JS then submits the requests one by one.
        let records = numbers
            .chunks_exact(REQUEST_FIELDS as usize)
            .map(RequestRecord)
            .map(|record| Ok((record, RequestKind::from_field(record[Field::Kind])?)))
            .collect::<napi::Result<Vec<_>>>()?;
        let mut keys = keys.into_iter();
        let requests = records
            .into_iter()
            .map(|(record, kind)| {
                let op = record[Field::Op] as u32;
                let lock = record[Field::Lock] as u32;
                match kind {
                    RequestKind::Acquire => Request::Acquire {
                        op,
                        names: keys
                            .by_ref()
                            .take(record[Field::KeyCount] as usize)
                            .collect(),
                        ttl: millis(record[Field::Ttl]),
                        wait: (record[Field::Wait] >= 0.0).then(|| millis(record[Field::Wait])),
                        cancellable: AcquireFlag::Cancellable.is_in(record[Field::Flags]),
                        upkeep: upkeep(record[Field::Flags]),
                        replicas: Replicas {
                            wanted: record[Field::Replicas] as u32,
                            timeout: millis(record[Field::ReplicasTimeout]),
                        },
                    },
                    RequestKind::Release => Request::Release { op, id: lock },
                    RequestKind::Extend => Request::Extend {
                        op,
                        id: lock,
                        ttl: (record[Field::Ttl] > 0.0).then(|| millis(record[Field::Ttl])),
                        key: keys
                            .by_ref()
                            .take(record[Field::KeyCount] as usize)
                            .next()
                            .unwrap_or_default(),
                    },
                    RequestKind::LetLapse => Request::LetLapse { id: lock },
                }
            })
            .collect::<Vec<_>>();
        self.completions
            .submitting(&requests, || self.on_complete.borrow_back(&env))?;
        Ok(match self.locker.submit(requests) {
            ToWire::One(out) => bytes(out).map(Either::A),
            ToWire::Shards(writes) if writes.is_empty() => None,
            ToWire::Shards(writes) => Some(Either::B(
                writes
                    .into_iter()
                    .map(|write| match write {
                        ShardWrite::Write(out) => Either::A(CopiedBytes(out)),
                        ShardWrite::Open => Either::B(true),
                        ShardWrite::Nothing => Either::B(false),
                    })
                    .collect(),
            )),
        })
    }

    /// Where socket `wire` connects now: one Redis's address, behind Sentinel where the master
    /// was last found, on a Redis Cluster its master's; `null` while it is not known (the native
    /// connection finds it).
    #[napi]
    pub fn wire_address(&self, wire: u32) -> Option<WireAddress> {
        self.locker
            .wire_address(wire as usize)
            .map(|(host, port)| WireAddress {
                host,
                port: u32::from(port),
            })
    }

    /// Socket `wire` connected to `host:port` (as [`Self::wire_address`] said): returns its
    /// first bytes (AUTH, SELECT, the client's name; behind Sentinel, ROLE).
    #[napi(ts_return_type = "Buffer")]
    pub fn wire_connected(&self, wire: u32, host: String, port: u32) -> napi::Result<CopiedBytes> {
        let port = u16::try_from(port)
            .map_err(|_| napi::Error::from_reason(format!("port {port} is out of range")))?;
        Ok(CopiedBytes(
            self.locker.wire_connected(wire as usize, (host, port)),
        ))
    }

    /// Bytes read from socket `wire`: the operations they finish, and what to write back.
    #[napi]
    pub fn wire_feed(&self, wire: u32, bytes: BufferSlice<'_>) -> napi::Result<NativeWireOutput> {
        self.with_wire(|locker| locker.wire_read(wire as usize, &bytes))
    }

    /// Socket `wire` closed or failed. With `retry` (the socket closed under it, Redis may well
    /// be back at once), what it carried runs again on the runtime's connection, after giving
    /// back whatever a sent attempt may have taken; without (a command timed out), it fails with
    /// `reason`.
    #[napi]
    pub fn wire_fail(
        &self,
        wire: u32,
        reason: String,
        retry: bool,
    ) -> napi::Result<NativeWireOutput> {
        self.with_wire(|locker| locker.wire_failed(wire as usize, &reason, retry))
    }

    /// The locker is closing: what socket `wire` carried fails as closed.
    #[napi]
    pub fn wire_close(&self, wire: u32) -> napi::Result<NativeWireOutput> {
        self.with_wire(|locker| locker.wire_closed(wire as usize))
    }

    /// Stops the wait of operation `op`, if it is still waiting.
    #[napi]
    pub fn cancel(&self, op: u32) {
        self.locker.cancel(op);
    }

    /// Closes the connections; operations after this fail with a connection error.
    #[napi]
    pub fn close(&self, env: Env) -> napi::Result<()> {
        if let Some(teardown) = self.teardown.borrow_mut().take() {
            env.remove_env_cleanup_hook(teardown)?;
        }
        self.locker.close();
        Ok(())
    }
}

impl NativeLocker {
    fn with_wire(
        &self,
        call: impl FnOnce(&Locker) -> WireOutput,
    ) -> napi::Result<NativeWireOutput> {
        if !self.locker.has_wire() {
            return Err(napi::Error::from_reason(
                "this locker has no wire: its target is neither one Redis, Sentinel nor a Redis Cluster",
            ));
        }
        let output = call(&self.locker);
        self.completions.completed_on_wire(&output.completions);
        Ok(output.into())
    }
}

/// `ms` from JS as a duration; negative is none.
fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// What the holder of a lock acquired with `flags` wants watched.
fn upkeep(flags: f64) -> Option<Upkeep> {
    if AcquireFlag::Watchdog.is_in(flags) {
        Some(Upkeep::Extend)
    } else if AcquireFlag::WatchLease.is_in(flags) {
        Some(Upkeep::WatchOnly)
    } else {
        None
    }
}

/// Bytes for JS: `null` when there are none.
fn bytes(out: Vec<u8>) -> Option<CopiedBytes> {
    (!out.is_empty()).then_some(CopiedBytes(out))
}
