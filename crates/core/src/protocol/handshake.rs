//! The commands that open a connection the wire drives: AUTH, SELECT and CLIENT SETNAME. (redis-rs
//! does its own from the same [`NodeConfig`].)

use std::fmt;

use crate::config::NodeConfig;
use crate::protocol::resp;

/// A connection's set-up commands, RESP-encoded once for every reconnection. They hold the
/// password, so `Debug` shows only how many there are.
pub struct Handshake {
    encoded: Vec<u8>,
    commands: usize,
}

impl Handshake {
    pub fn new(node: &NodeConfig, client_name: &str) -> Self {
        let mut encoded = Vec::new();
        let mut commands = 0;
        if let Some(password) = &node.password {
            match &node.username {
                Some(username) => {
                    resp::encode(&mut encoded, ["AUTH", username.as_str(), password.expose()]);
                }
                None => resp::encode(&mut encoded, ["AUTH", password.expose()]),
            }
            commands += 1;
        }
        if node.db != 0 {
            resp::encode(&mut encoded, ["SELECT", node.db.to_string().as_str()]);
            commands += 1;
        }
        // Named, so `CLIENT LIST` tells this connection from redis-rs's.
        resp::encode(&mut encoded, ["CLIENT", "SETNAME", client_name]);
        commands += 1;
        Self { encoded, commands }
    }

    /// The commands, RESP-encoded, to write first.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// How many answers they bring.
    pub fn commands(&self) -> usize {
        self.commands
    }
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn names_the_connection_and_nothing_else_by_default() {
        let handshake = Handshake::new(&NodeConfig::default(), "me");
        assert_eq!(handshake.commands(), 1);
        assert_eq!(
            handshake.encoded(),
            b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$2\r\nme\r\n"
        );
    }

    #[test]
    fn authenticates_and_selects_the_database_first() {
        let node = NodeConfig {
            username: Some("app".into()),
            password: Some(Secret::new("hunter2")),
            db: 3,
            ..NodeConfig::default()
        };
        let handshake = Handshake::new(&node, "me");
        assert_eq!(handshake.commands(), 3);
        let mut expected = Vec::new();
        resp::encode(&mut expected, ["AUTH", "app", "hunter2"]);
        resp::encode(&mut expected, ["SELECT", "3"]);
        resp::encode(&mut expected, ["CLIENT", "SETNAME", "me"]);
        assert_eq!(handshake.encoded(), expected);
    }

    #[test]
    fn authenticates_without_a_username() {
        let node = NodeConfig {
            password: Some(Secret::new("hunter2")),
            ..NodeConfig::default()
        };
        let handshake = Handshake::new(&node, "me");
        assert!(handshake
            .encoded()
            .starts_with(b"*2\r\n$4\r\nAUTH\r\n$7\r\nhunter2\r\n"));
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let node = NodeConfig {
            password: Some(Secret::new("hunter2")),
            ..NodeConfig::default()
        };
        let printed = format!("{:?}", Handshake::new(&node, "me"));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(printed, "Handshake { commands: 2, .. }");
    }
}
