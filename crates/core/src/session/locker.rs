//! [`Locker`]: what one JS `Locker` talks to. Requests go in; completions come out, through the
//! wire calls for what the wire carried and through the [`CompletionSink`] for what ran on the
//! runtime. Everything between (which transport carries a request, the held locks, cancelling a
//! wait, the watchdog, what a busy wire attempt becomes) is decided in this module, not by the
//! binding.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::runtime::Handle;

use crate::config::{LockerConfig, Target};
use crate::session::lifecycle::Lifecycle;
use crate::session::on_wire::{LockWire, WireOutput};
use crate::session::operations::Operations;
use crate::session::request::{CompletionSink, Request};
use crate::topology::WireCalls;
use crate::transport::wire::Broken;

pub struct Locker {
    operations: Arc<Operations>,
    /// One Redis: the protocol state of the socket the caller drives (see
    /// [`crate::transport::wire`]).
    wire: Option<Mutex<LockWire>>,
    /// Behind Sentinel: the wire follows the master.
    follows_master: bool,
}

impl Locker {
    /// A locker for `config`, running on `runtime`; no connection opens before the first request.
    pub fn new(
        config: &LockerConfig,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Result<Self, String> {
        let wire = match &config.target {
            Target::Single(node) => Some(WireCalls::new(node)),
            Target::Sentinel(sentinels) => Some(WireCalls::to_master(sentinels)),
            _ => None,
        };
        let lifecycle = {
            let _runtime = runtime.enter();
            Lifecycle::new(config)?
        };
        let follows_master = matches!(config.target, Target::Sentinel(_));
        Ok(Self::assemble(
            lifecycle,
            wire,
            follows_master,
            sink,
            runtime,
        ))
    }

    /// A locker over the topology `topology` makes (see [`Lifecycle::with_topology`]), with or
    /// without a wire: the session's tests drive both without sockets.
    #[cfg(test)]
    pub(super) fn with_topology(
        topology: impl FnOnce(
            std::sync::Weak<dyn crate::topology::ReleaseListener>,
        ) -> Result<Arc<dyn crate::topology::Topology>, String>,
        wire: Option<LockWire>,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Result<Self, String> {
        let lifecycle = {
            let _runtime = runtime.enter();
            Lifecycle::with_topology("", crate::defaults::DRIFT_FACTOR, topology)?
        };
        Ok(Self::assemble(lifecycle, wire, false, sink, runtime))
    }

    fn assemble(
        lifecycle: Lifecycle,
        wire: Option<LockWire>,
        follows_master: bool,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Self {
        Self {
            operations: Arc::new(Operations::new(lifecycle, sink, runtime)),
            wire: wire.map(Mutex::new),
            follows_master,
        }
    }

    /// Starts `requests`. Returns the bytes to write to the wire's socket, when the wire is
    /// ready and carries some of them: one-key acquires no local request is ahead of, and
    /// releases of one-key locks nobody here waits for. Everything else runs on the runtime.
    pub fn submit(&self, requests: impl IntoIterator<Item = Request>) -> Vec<u8> {
        let operations = &self.operations;
        let mut out = Vec::new();
        let mut wire = self.lock_wire().filter(|wire| wire.is_ready());
        if let Some(connected) = &mut wire {
            if let Some(reason) = self.master_moved(connected) {
                connected.retire(reason, &mut out);
                wire = None;
            }
        }
        let mut jobs = Vec::new();
        for request in requests {
            let Some(job) = operations.job(request) else {
                continue;
            };
            match &mut wire {
                Some(wire) => jobs.extend(operations.onto_wire(wire, job)),
                None => jobs.push(job),
            }
        }
        if !jobs.is_empty() {
            operations.start(jobs);
        }
        if let Some(mut wire) = wire {
            wire.flush(&mut out);
        }
        out
    }

    /// Ends the wait of operation `op`, if it still waits; the lock it may have been granted
    /// meanwhile, on either connection, is given back here (its completion reports it aborted,
    /// or, if already on its way, is to be ignored). Only for a caller that has not read `op`'s
    /// completion: a lock it was granted and still holds would be given back too.
    pub fn cancel(&self, op: u32) {
        self.operations.cancel(op);
    }

    /// Stops every watchdog, ends every wait and drops the connections. The wire's operations
    /// are the caller's to end ([`Locker::wire_closed`]).
    pub fn close(&self) {
        self.operations.close();
    }

    /// Whether this locker has a wire (its target is one Redis).
    pub fn has_wire(&self) -> bool {
        self.wire.is_some()
    }

    /// The wire's socket connected to `address`: its first bytes (AUTH, SELECT, the client's
    /// name; behind Sentinel, ROLE).
    pub fn wire_connected(&self, address: (String, u16)) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(mut wire) = self.lock_wire() {
            wire.connected(address, &mut out);
        }
        out
    }

    /// Where the wire's socket connects now (see [`crate::Topology::wire_address`]); `None`:
    /// not yet, the runtime's connection carries everything meanwhile.
    pub fn wire_address(&self) -> Option<(String, u16)> {
        self.wire.as_ref()?;
        self.operations.wire_address()
    }

    /// Bytes read from the wire's socket: the operations they finish, and what to write back.
    pub fn wire_read(&self, bytes: &[u8]) -> WireOutput {
        let Some(mut wire) = self.lock_wire() else {
            return WireOutput::default();
        };
        let mut out = Vec::new();
        let mut answers = Vec::new();
        let broken = match wire.feed(bytes, &mut out, &mut answers) {
            Ok(()) => None,
            Err(Broken::Failed(reason)) => {
                wire.fail(&reason, false, &mut answers);
                Some(reason)
            }
            // Nothing sent ran: it goes again on the runtime's connection, to the master.
            Err(Broken::NotMaster(reason)) => {
                let mut moved = Vec::new();
                wire.fail(&reason, false, &mut moved);
                self.operations.retry_on_runtime(moved);
                Some(reason)
            }
        };
        self.operations.wire_output(wire, answers, out, broken)
    }

    /// The wire's socket closed or failed. With `retry` (the socket closed under it, Redis may
    /// well be back at once), what it carried runs again on the runtime's connection, after
    /// giving back whatever a sent attempt may have taken; without (a command timed out), it
    /// fails with `reason`.
    pub fn wire_failed(&self, reason: &str, retry: bool) -> WireOutput {
        let Some(mut wire) = self.lock_wire() else {
            return WireOutput::default();
        };
        let mut answers = Vec::new();
        wire.fail(reason, false, &mut answers);
        if retry {
            self.operations
                .retry_on_runtime(std::mem::take(&mut answers));
        }
        self.operations.wire_output(wire, answers, Vec::new(), None)
    }

    /// The locker is closing: what the wire carried fails as closed.
    pub fn wire_closed(&self) -> WireOutput {
        let Some(mut wire) = self.lock_wire() else {
            return WireOutput::default();
        };
        let mut answers = Vec::new();
        wire.fail("the locker was closed", true, &mut answers);
        self.operations.wire_output(wire, answers, Vec::new(), None)
    }

    /// Behind Sentinel, why the wire must go: the master is no longer where it is connected
    /// (the sentinels moved it while the old one still answers, as in a network split).
    fn master_moved(&self, wire: &LockWire) -> Option<String> {
        if !self.follows_master {
            return None;
        }
        let (connected, now) = (wire.address()?, self.operations.wire_address()?);
        (*connected != now).then(|| {
            let ((was_host, was_port), (host, port)) = (connected, now);
            format!("the sentinels moved the master from {was_host}:{was_port} to {host}:{port}")
        })
    }

    fn lock_wire(&self) -> Option<MutexGuard<'_, LockWire>> {
        self.wire.as_ref().map(|wire| wire.lock().expect("wire"))
    }
}
