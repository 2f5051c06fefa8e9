//! Where a connection to "the" Redis goes: always the same node, or whichever server the
//! sentinels name master at the moment it opens.

use std::sync::Arc;

use redis::Client;

use super::connect::{client_for, redact};
use super::sentinel::Sentinels;
use crate::config::NodeConfig;
use crate::topology::BoxFuture;

#[derive(Clone)]
pub enum Dial {
    Node(Arc<Dialled>),
    /// Asked of the sentinels on every new connection, which then checks it reached a master.
    Master(Arc<Sentinels>),
}

/// A node to open a connection to.
#[derive(Clone)]
pub struct Dialled {
    pub client: Client,
    pub address: (String, u16),
    pub tls: bool,
}

impl Dialled {
    /// The error says why `node` cannot be reached at all (an address redis-rs refuses),
    /// without its password.
    pub fn new(node: &NodeConfig) -> Result<Self, String> {
        Ok(Self {
            client: client_for(node).map_err(|error| redact(&error, node))?,
            address: (node.host.clone(), node.port),
            tls: node.tls.is_some(),
        })
    }

    /// With TLS, where to ask in plain text whether a Redis without TLS answers, when the
    /// handshake is slow to finish (see [`super::connect::answers_in_plain_text`]).
    pub fn plain_address(&self) -> Option<&(String, u16)> {
        self.tls.then_some(&self.address)
    }
}

impl Dial {
    /// Always `node`.
    pub fn node(node: &NodeConfig) -> Result<Self, String> {
        Dialled::new(node).map(|node| Self::Node(Arc::new(node)))
    }

    /// The node to open a connection to now. Boxed: finding the master nests futures deep
    /// enough that those which nest this one overflow rustc's limits.
    pub fn dial(&self) -> BoxFuture<'_, Result<Dialled, String>> {
        Box::pin(async move {
            match self {
                Self::Node(node) => Ok(Dialled::clone(node)),
                Self::Master(sentinels) => Dialled::new(&sentinels.master().await?),
            }
        })
    }

    /// Where a connection opened now would go, if known without asking: behind Sentinel, where
    /// the master was last found or announced.
    pub fn address_now(&self) -> Option<(String, u16)> {
        match self {
            Self::Node(node) => Some(node.address.clone()),
            Self::Master(sentinels) => sentinels.last_known(),
        }
    }

    /// Whether the server can move: a connection then checks it reached a master, and a call
    /// that met a failover goes again, to wherever the master is now.
    pub fn follows_failovers(&self) -> bool {
        matches!(self, Self::Master(_))
    }
}
