//! [`Locker`]: what one JS `Locker` talks to. Requests go in; completions come out, through the
//! wire calls for what the wire carried and through the [`CompletionSink`] for what ran on the
//! runtime. Everything between (which transport carries a request, the held locks, cancelling a
//! wait, the watchdog, what a busy wire attempt becomes) is decided in this module, not by the
//! binding.

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use crate::config::{LockerConfig, Target};
use crate::session::lifecycle::Lifecycle;
use crate::session::on_wire::{AcquireTag, LockShardWires, LockWire, ReleaseTag, WireOutput};
use crate::session::operations::Operations;
use crate::session::request::{CompletionSink, Request};
use crate::topology::{OneKeyWire, ShardWires, ShardWrite, WireCalls};
use crate::transport::wire::Broken;

pub struct Locker {
    operations: Arc<Operations>,
    wires: Wires,
    /// Behind Sentinel: the wire follows the master.
    follows_master: bool,
}

/// The protocol state of the sockets the caller drives (see [`crate::transport::wire`]), each
/// known by its index.
enum Wires {
    /// Redlock and `memory://`: everything runs on the runtime.
    None,
    /// One Redis, or the master Sentinel names: one socket, index 0.
    One(Mutex<LockWire>),
    /// A Redis Cluster: a socket per master.
    Shards(Mutex<LockShardWires>),
}

/// What a submit gives the caller's sockets.
#[derive(Debug)]
pub enum ToWire {
    /// Bytes for the one socket (empty: none).
    One(Vec<u8>),
    /// What each master's socket is to do, by index (empty: nothing).
    Shards(Vec<ShardWrite>),
}

impl Locker {
    /// A locker for `config`, running on `runtime`; no connection opens before the first request.
    pub fn new(
        config: &LockerConfig,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Result<Self, String> {
        let wires = match &config.target {
            Target::Single(node) => Wires::One(Mutex::new(WireCalls::new(node))),
            Target::Sentinel(sentinels) => Wires::One(Mutex::new(WireCalls::to_master(sentinels))),
            Target::Cluster(seeds) => Wires::Shards(Mutex::new(ShardWires::new(seeds))),
            _ => Wires::None,
        };
        let lifecycle = {
            let _runtime = runtime.enter();
            Lifecycle::new(config)?
        };
        let follows_master = matches!(config.target, Target::Sentinel(_));
        Ok(Self::assemble(
            lifecycle,
            wires,
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
        let wires = wire.map_or(Wires::None, |wire| Wires::One(Mutex::new(wire)));
        Ok(Self::assemble(lifecycle, wires, false, sink, runtime))
    }

    fn assemble(
        lifecycle: Lifecycle,
        wires: Wires,
        follows_master: bool,
        sink: Arc<dyn CompletionSink>,
        runtime: Handle,
    ) -> Self {
        Self {
            operations: Arc::new(Operations::new(lifecycle, sink, runtime)),
            wires,
            follows_master,
        }
    }

    /// Starts `requests`. Returns what the wire's sockets are to write, when they are ready and
    /// carry some of them: one-key acquires no local request is ahead of, and releases of one-key
    /// locks nobody here waits for (on a Redis Cluster, each on the socket to its key's master;
    /// a master's socket that is not ready yet is to open). Everything else runs on the runtime.
    pub fn submit(&self, requests: impl IntoIterator<Item = Request>) -> ToWire {
        let one = match &self.wires {
            Wires::Shards(wires) => {
                let mut wires = wires.lock().expect("wires");
                wires.route_by(self.operations.wire_slot_map());
                self.route(Some(&mut *wires), requests);
                return ToWire::Shards(wires.flush());
            }
            Wires::One(wire) => Some(wire.lock().expect("wire")),
            Wires::None => None,
        };
        let mut out = Vec::new();
        let mut wire = one.filter(|wire| wire.is_ready());
        if let Some(connected) = &mut wire {
            if let Some(reason) = self.master_moved(connected) {
                connected.retire(reason, &mut out);
                wire = None;
            }
        }
        self.route(wire.as_deref_mut(), requests);
        if let Some(mut wire) = wire {
            wire.flush(&mut out);
        }
        ToWire::One(out)
    }

    /// Puts what `wire` carries of `requests` on it, and starts the rest on the runtime.
    fn route(
        &self,
        mut wire: Option<&mut impl OneKeyWire<AcquireTag, ReleaseTag>>,
        requests: impl IntoIterator<Item = Request>,
    ) {
        let operations = &self.operations;
        let mut jobs = Vec::new();
        for request in requests {
            let Some(job) = operations.job(request) else {
                continue;
            };
            match &mut wire {
                Some(wire) => jobs.extend(operations.onto_wire(*wire, job)),
                None => jobs.push(job),
            }
        }
        if !jobs.is_empty() {
            operations.start(jobs);
        }
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

    /// Whether this locker has a wire (its target is one Redis, Sentinel's master or a Redis
    /// Cluster).
    pub fn has_wire(&self) -> bool {
        !matches!(self.wires, Wires::None)
    }

    /// Socket `index` connected to `address`: its first bytes (AUTH, SELECT, the client's name;
    /// behind Sentinel, ROLE).
    pub fn wire_connected(&self, index: usize, address: (String, u16)) -> Vec<u8> {
        let mut out = Vec::new();
        self.on_wire(index, |wire| wire.connected(address, &mut out));
        out
    }

    /// Where socket `index` connects now (see [`crate::Topology::wire_address`]; on a Redis
    /// Cluster, its master's address); `None`: not known (yet), the runtime's connection carries
    /// everything meanwhile.
    pub fn wire_address(&self, index: usize) -> Option<(String, u16)> {
        match &self.wires {
            Wires::One(_) if index == 0 => self.operations.wire_address(),
            Wires::Shards(wires) => wires.lock().expect("wires").address(index),
            _ => None,
        }
    }

    /// Bytes read from socket `index`: the operations they finish, and what to write back.
    pub fn wire_read(&self, index: usize, bytes: &[u8]) -> WireOutput {
        let mut out = Vec::new();
        let mut answers = Vec::new();
        // What ran nothing, for the runtime's connection.
        let mut elsewhere = Vec::new();
        let read = self.on_wire(index, |wire| {
            match wire.feed(bytes, &mut out, &mut answers, &mut elsewhere) {
                Ok(()) => None,
                Err(Broken::Failed(reason)) => {
                    wire.fail(&reason, false, &mut answers);
                    Some(reason)
                }
                // Nothing sent ran: it goes again on the runtime's connection, to the master.
                Err(Broken::NotMaster(reason)) => {
                    wire.fail(&reason, false, &mut elsewhere);
                    Some(reason)
                }
            }
        });
        let Some((broken, state)) = read else {
            return WireOutput::default();
        };
        if !elsewhere.is_empty() {
            self.operations.slot_map_stale();
            self.operations.retry_on_runtime(elsewhere);
        }
        self.operations.wire_output(state, answers, out, broken)
    }

    /// Socket `index` closed or failed. With `retry` (the socket closed under it, Redis may
    /// well be back at once), what it carried runs again on the runtime's connection, after
    /// giving back whatever a sent attempt may have taken; without (a command timed out), it
    /// fails with `reason`. On a Redis Cluster the slot map is read again: its master may have
    /// failed over.
    pub fn wire_failed(&self, index: usize, reason: &str, retry: bool) -> WireOutput {
        let mut answers = Vec::new();
        let Some(((), state)) = self.on_wire(index, |wire| wire.fail(reason, false, &mut answers))
        else {
            return WireOutput::default();
        };
        if matches!(self.wires, Wires::Shards(_)) {
            self.operations.slot_map_stale();
        }
        if retry {
            self.operations
                .retry_on_runtime(std::mem::take(&mut answers));
        }
        self.operations
            .wire_output(state, answers, Vec::new(), None)
    }

    /// The locker is closing: what socket `index` carried fails as closed.
    pub fn wire_closed(&self, index: usize) -> WireOutput {
        let mut answers = Vec::new();
        let closed = self.on_wire(index, |wire| {
            wire.fail("the locker was closed", true, &mut answers);
        });
        let Some(((), state)) = closed else {
            return WireOutput::default();
        };
        self.operations
            .wire_output(state, answers, Vec::new(), None)
    }

    /// Runs `call` on the wire of socket `index`, then gives its result and whether the wire is
    /// ready with how many commands in flight, the wire unlocked again; `None`: no such socket.
    fn on_wire<T>(
        &self,
        index: usize,
        call: impl FnOnce(&mut LockWire) -> T,
    ) -> Option<(T, (bool, usize))> {
        let run = |wire: &mut LockWire| {
            let result = call(wire);
            (result, (wire.is_ready(), wire.in_flight()))
        };
        match &self.wires {
            Wires::One(wire) if index == 0 => Some(run(&mut wire.lock().expect("wire"))),
            Wires::Shards(wires) => wires.lock().expect("wires").wire(index).map(run),
            _ => None,
        }
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
}
