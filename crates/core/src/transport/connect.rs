//! Opening a redis-rs connection to one node: the client for its address, credentials and TLS,
//! and the errors of connecting as users read them.

use std::sync::Arc;
use std::time::Duration;

use redis::{
    Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, TlsCertificates,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{NodeConfig, TlsConfig};
use crate::error::{MAYBE_ONLY_TLS, NOT_REDIS, NOT_TLS, REFUSED};

/// How long a TLS handshake may take before a plain-text question asks whether the server is a
/// Redis without TLS: far longer than a handshake takes, far shorter than the connect timeout
/// (10 s by default) that would otherwise be all a user hears.
const PLAIN_TEXT_PROBE_AFTER: Duration = Duration::from_millis(500);

/// Resolves once the server at `address` answers a plain-text PING as Redis does (`+PONG`, or an
/// error such as `-NOAUTH`), asked after [`PLAIN_TEXT_PROBE_AFTER`]; never for a TLS server, which
/// refuses plain text, nor without an address. A plain Redis often just waits for the rest of a
/// TLS greeting, which it reads as the start of a command, so only asking tells it apart.
pub(super) async fn answers_in_plain_text(address: Option<&(String, u16)>) {
    if let Some((host, port)) = address {
        tokio::time::sleep(PLAIN_TEXT_PROBE_AFTER).await;
        if let Ok(mut socket) = tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            let mut first = [0u8; 1];
            let answered = socket.write_all(b"PING\r\n").await.is_ok()
                && socket.read_exact(&mut first).await.is_ok();
            if answered && matches!(first[0], b'+' | b'-') {
                return;
            }
        }
    }
    std::future::pending().await
}

/// The driver's `error` while connecting, as users read it: with what to check when the reason
/// is known (nothing listens, TLS on one side only).
pub(super) fn connect_error(error: &RedisError, tls: bool) -> String {
    if error.is_connection_refusal() {
        REFUSED.to_owned()
    } else if tls && is_plain_text_record(error) {
        NOT_TLS.to_owned()
    } else if !tls && error.is_connection_dropped() {
        MAYBE_ONLY_TLS.to_owned()
    } else {
        driver_error(error)
    }
}

/// The I/O error under `error`, which redis-rs keeps behind an `Arc`.
fn io_error(error: &RedisError) -> Option<&std::io::Error> {
    std::error::Error::source(error)?
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?
        .downcast_ref::<std::io::Error>()
}

/// Whether the TLS layer met bytes that are no TLS record: the server answered in plain text
/// (a Redis without TLS answers the greeting with `-ERR` once it reads a line end in it).
fn is_plain_text_record(error: &RedisError) -> bool {
    io_error(error)
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidMessage(_)))
}

/// The driver's `error` as users read it: its parse error would show the bytes it choked on.
pub(crate) fn driver_error(error: &RedisError) -> String {
    if error.kind() == ErrorKind::Parse {
        NOT_REDIS.to_owned()
    } else {
        error.to_string()
    }
}

/// The redis-rs client for `node`: its address, database, credentials and TLS settings.
pub(super) fn client_for(node: &NodeConfig) -> Result<Client, RedisError> {
    let info = connection_info(node)?;
    match node.tls.as_ref().and_then(certificates) {
        Some(certificates) => Client::build_with_tls(info, certificates),
        None => Client::open(info),
    }
}

/// How redis-rs reaches `node`: its address, TLS mode, database and credentials.
pub(super) fn connection_info(node: &NodeConfig) -> Result<ConnectionInfo, RedisError> {
    if node.tls.is_some() {
        // Once per process; an `Err` only says another provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut redis = RedisConnectionInfo::default().set_db(node.db);
    if let Some(username) = &node.username {
        redis = redis.set_username(username);
    }
    if let Some(password) = &node.password {
        redis = redis.set_password(password.expose());
    }
    let addr = match &node.tls {
        None => ConnectionAddr::Tcp(node.host.clone(), node.port),
        Some(tls) => ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: !tls.reject_unauthorized,
            tls_params: None,
        },
    };
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// The CA and client certificate `tls` asks for, if any; `None`: the default web roots.
pub(super) fn certificates(tls: &TlsConfig) -> Option<TlsCertificates> {
    if tls.ca.is_none() && tls.cert.is_none() {
        return None;
    }
    Some(TlsCertificates {
        client_tls: match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            _ => None,
        },
        root_cert: tls.ca.clone(),
    })
}

/// An error text with the node's password blanked, should a driver ever echo it.
pub(super) fn redact(error: &RedisError, node: &NodeConfig) -> String {
    let text = error.to_string();
    match &node.password {
        Some(password) if !password.expose().is_empty() => text.replace(password.expose(), "***"),
        _ => text,
    }
}
