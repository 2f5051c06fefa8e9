//! How each script's reply is read, whichever connection brought it: the wire's RESP and
//! redis-rs's values both arrive here as a [`Reply`]. `Err` is a [`Refusal`], for the caller to
//! report.

use std::time::Duration;

use crate::protocol::resp::Reply;

/// Why a script did not do what it was asked for a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Lock key `index` (from 0, in the order the lock names its keys) holds a value of the
    /// Redis type `found` (`hash`, `list`…), not a string: no lock can live there.
    OtherType { index: usize, found: String },
    /// What Redis said refusing a command, or an answer no script gives.
    Text(String),
}

impl From<String> for Refusal {
    fn from(text: String) -> Self {
        Refusal::Text(text)
    }
}

/// The outcome of one attempt to take a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Acquired {
        fence: u64,
    },
    /// Someone else holds at least one of the keys; `retry_after` is the longest remaining TTL
    /// among them, `None` when a holder has no TTL at all. `foreign`: a holder is not ironlock's
    /// (see [`crate::protocol::token`]), so no release of it will be announced.
    Busy {
        retry_after: Option<Duration>,
        foreign: bool,
    },
}

/// The outcome of handing a one-key lock to a new token (see
/// [`crate::topology::Topology::hand_over`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOver {
    /// The key no longer held the old token: nothing changed.
    NotHeld,
    /// The key now holds the new token; `reserved` is the last fencing token of the block
    /// reserved with it, when one was asked for.
    Done { reserved: Option<u64> },
    /// The key now holds the new token, whose fence the topology chose itself (Redlock: above
    /// the old fence on every node that granted it).
    Fenced { fence: u64 },
    /// The old token was released but the new one does not hold the lock (Redlock: the new
    /// lock's validity ran out on the way); the waiter attempts as after a release.
    Released,
}

/// [`crate::protocol::scripts::ACQUIRE_EACH`]'s reply to a call of `locks` locks: each lock's
/// outcome in order, `Err` holding the text of the command Redis refused for that lock.
pub fn acquire_each(
    reply: Reply,
    locks: usize,
) -> Result<impl Iterator<Item = Result<Attempt, Refusal>>, Refusal> {
    let mut values = values(reply, 2 * locks)?.into_iter();
    Ok(std::iter::from_fn(move || {
        Some(attempt(values.next()?, values.next()?))
    }))
}

/// [`crate::protocol::scripts::ACQUIRE_ALL`]'s reply: the same pair as one lock of ACQUIRE_EACH,
/// or `{3, type, i}` naming the lock key of another type.
pub fn acquire_all(reply: Reply) -> Result<Attempt, Refusal> {
    if let Some(other_type) = other_type_of_one(&reply) {
        return Err(other_type);
    }
    let mut pair = values(reply, 2)?.into_iter();
    match (pair.next(), pair.next()) {
        (Some(code), Some(value)) => attempt(code, value),
        _ => unreachable!("values() checked there are two"),
    }
}

/// [`crate::protocol::scripts::HELD_BY_OTHERS`]'s reply: `None` when every key is free, else what
/// an attempt would find, read as [`acquire_all`] reads it.
pub fn held_by_others(reply: Reply) -> Result<Option<Attempt>, Refusal> {
    if matches!(&reply, Reply::Array(Some(values)) if values.is_empty()) {
        return Ok(None);
    }
    acquire_all(reply).map(Some)
}

/// `1, fence`: taken; `0, pttl` (an ironlock holder) or `2, pttl` (any other): busy, pttl -1
/// meaning a holder without TTL; `3, type`: a value of another type; anything else carries the
/// text of a refused command.
fn attempt(code: Reply, value: Reply) -> Result<Attempt, Refusal> {
    match (code, value) {
        (Reply::Int(1), Reply::Int(fence)) => Ok(Attempt::Acquired {
            fence: fence as u64,
        }),
        (Reply::Int(code @ (0 | 2)), Reply::Int(pttl)) => Ok(Attempt::Busy {
            retry_after: (pttl >= 0).then(|| Duration::from_millis(pttl as u64)),
            foreign: code == 2,
        }),
        (Reply::Int(3), Reply::Bulk(Some(found))) => Err(other_type(0, &found)),
        (_, refusal) => Err(refusal_text(refusal).into()),
    }
}

/// [`crate::protocol::scripts::RELEASE_EACH`]'s reply to a call of `keys` keys: for each in
/// order, whether it still held the token (and is now deleted), or why not.
pub fn release_each(
    reply: Reply,
    keys: usize,
) -> Result<impl Iterator<Item = Result<bool, Refusal>>, Refusal> {
    Ok(values(reply, keys)?.into_iter().map(|value| match value {
        Reply::Array(Some(pair)) => match pair.as_slice() {
            [Reply::Int(3), Reply::Bulk(Some(found))] => Err(other_type(0, found)),
            _ => Err(format!("unexpected answer {pair:?}").into()),
        },
        flag => one_or_zero(flag),
    }))
}

/// [`crate::protocol::scripts::EXTEND`]'s reply: whether every key still held the token.
pub fn extend(reply: Reply) -> Result<bool, Refusal> {
    match other_type_of_one(&reply) {
        Some(other_type) => Err(other_type),
        None => one_or_zero(reply),
    }
}

fn one_or_zero(value: Reply) -> Result<bool, Refusal> {
    match value {
        Reply::Int(flag) => Ok(flag == 1),
        refusal => Err(refusal_text(refusal).into()),
    }
}

/// [`crate::protocol::scripts::HAND_OVER`]'s reply to a hand-over that asked to reserve
/// `reserve` fencing tokens.
pub fn hand_over(reply: Reply, reserve: u64) -> Result<HandOver, Refusal> {
    if let Some(other_type) = other_type_of_one(&reply) {
        return Err(other_type);
    }
    let values = match &reply {
        Reply::Array(Some(values)) => values.as_slice(),
        _ => &[],
    };
    match (values, reserve) {
        ([Reply::Int(0)], _) => Ok(HandOver::NotHeld),
        ([Reply::Int(1)], 0) => Ok(HandOver::Done { reserved: None }),
        ([Reply::Int(1), Reply::Int(last)], 1..) if *last >= reserve as i64 => Ok(HandOver::Done {
            reserved: Some(*last as u64),
        }),
        _ => Err(format!("unexpected answer {reply:?} to a hand-over").into()),
    }
}

/// The `{3, type, i}` of a script about a whole lock: lock key `i` (from 1) holds a value of
/// another type. `None` for any other reply.
fn other_type_of_one(reply: &Reply) -> Option<Refusal> {
    match reply {
        Reply::Array(Some(values)) => match values.as_slice() {
            [Reply::Int(3), Reply::Bulk(Some(found)), Reply::Int(index @ 1..)] => {
                Some(other_type(*index as usize - 1, found))
            }
            _ => None,
        },
        _ => None,
    }
}

fn other_type(index: usize, found: &[u8]) -> Refusal {
    Refusal::OtherType {
        index,
        found: String::from_utf8_lossy(found).into_owned(),
    }
}

/// One Redlock node's answer to [`crate::protocol::scripts::REDLOCK_HAND_OVER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeHandOver {
    /// Another token holds the key there.
    Refused,
    /// The key was free there and the new token took it, with this fence.
    Taken { fence: u64 },
    /// The old token held the key there and the new one does now, with this fence.
    Replaced { fence: u64 },
}

impl NodeHandOver {
    pub fn replaced(&self) -> bool {
        matches!(self, NodeHandOver::Replaced { .. })
    }

    pub fn fence(&self) -> Option<u64> {
        match self {
            NodeHandOver::Refused => None,
            NodeHandOver::Taken { fence } | NodeHandOver::Replaced { fence } => Some(*fence),
        }
    }
}

/// [`crate::protocol::scripts::REDLOCK_HAND_OVER`]'s reply on one node.
pub fn redlock_hand_over(reply: Reply) -> Result<NodeHandOver, Refusal> {
    if let Some(other_type) = other_type_of_one(&reply) {
        return Err(other_type);
    }
    let values = match &reply {
        Reply::Array(Some(values)) => values.as_slice(),
        _ => &[],
    };
    match values {
        [Reply::Int(0)] => Ok(NodeHandOver::Refused),
        [Reply::Int(1), Reply::Int(fence)] if *fence > 0 => Ok(NodeHandOver::Taken {
            fence: *fence as u64,
        }),
        [Reply::Int(2), Reply::Int(fence)] if *fence > 0 => Ok(NodeHandOver::Replaced {
            fence: *fence as u64,
        }),
        _ => Err(format!("unexpected answer {reply:?} to a hand-over").into()),
    }
}

/// [`crate::protocol::scripts::COUNT_HELD`]'s reply: how many of the keys hold a string.
pub fn count_held(reply: Reply) -> Result<u64, Refusal> {
    match reply {
        Reply::Int(held) if held >= 0 => Ok(held as u64),
        other => Err(refusal_text(other).into()),
    }
}

/// The values of a batched script's reply, checking there is one for each request.
fn values(reply: Reply, expected: usize) -> Result<Vec<Reply>, Refusal> {
    let text = match reply {
        Reply::Array(Some(values)) if values.len() == expected => return Ok(values),
        Reply::Array(Some(values)) => format!(
            "expected {expected} values from the script, got {}",
            values.len()
        ),
        Reply::Error(message) => message,
        other => format!("expected {expected} values from the script, got {other:?}"),
    };
    Err(Refusal::Text(text))
}

/// The text of a command Redis refused: the scripts hand it back as a string.
fn refusal_text(value: Reply) -> String {
    match value {
        Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Reply::Simple(text) | Reply::Error(text) => text,
        other => format!("unexpected answer {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(values: Vec<Reply>) -> Reply {
        Reply::Array(Some(values))
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn reads_each_shape_of_an_acquire_each_pair() {
        let reply = array(vec![
            Reply::Int(1),
            Reply::Int(7),
            Reply::Int(0),
            Reply::Int(1500),
            Reply::Int(2),
            Reply::Int(-1),
            Reply::Int(-1),
            bulk("OOM command not allowed when used memory > 'maxmemory'."),
        ]);
        let outcomes: Vec<_> = acquire_each(reply, 4).unwrap().collect();
        assert_eq!(
            outcomes,
            [
                Ok(Attempt::Acquired { fence: 7 }),
                Ok(Attempt::Busy {
                    retry_after: Some(Duration::from_millis(1500)),
                    foreign: false,
                }),
                Ok(Attempt::Busy {
                    retry_after: None,
                    foreign: true,
                }),
                Err(Refusal::Text(
                    "OOM command not allowed when used memory > 'maxmemory'.".into()
                )),
            ]
        );
    }

    #[test]
    fn a_reply_of_the_wrong_size_fails_the_whole_call() {
        let short = array(vec![Reply::Int(1), Reply::Int(7)]);
        let error = acquire_each(short, 2).err().unwrap();
        assert_eq!(
            error,
            Refusal::Text("expected 4 values from the script, got 2".into())
        );
        let refused = Reply::Error("BUSY Redis is busy running a script".into());
        assert_eq!(
            release_each(refused, 1).err().unwrap(),
            Refusal::Text("BUSY Redis is busy running a script".into())
        );
        assert!(matches!(acquire_all(Reply::Int(1)),
            Err(Refusal::Text(text)) if text.starts_with("expected 2 values from the script, got Int(1)")));
    }

    #[test]
    fn reads_acquire_all_like_one_acquire_each_pair() {
        let taken = array(vec![Reply::Int(1), Reply::Int(42)]);
        assert_eq!(acquire_all(taken), Ok(Attempt::Acquired { fence: 42 }));
        let busy = array(vec![Reply::Int(2), Reply::Int(300)]);
        assert_eq!(
            acquire_all(busy),
            Ok(Attempt::Busy {
                retry_after: Some(Duration::from_millis(300)),
                foreign: true,
            })
        );
    }

    #[test]
    fn reads_held_by_others_as_free_busy_or_of_another_type() {
        assert_eq!(held_by_others(array(vec![])), Ok(None));
        let busy = array(vec![Reply::Int(0), Reply::Int(-1)]);
        assert_eq!(
            held_by_others(busy),
            Ok(Some(Attempt::Busy {
                retry_after: None,
                foreign: false,
            }))
        );
        let hash = array(vec![Reply::Int(3), bulk("hash"), Reply::Int(2)]);
        assert_eq!(
            held_by_others(hash),
            Err(Refusal::OtherType {
                index: 1,
                found: "hash".into()
            })
        );
    }

    #[test]
    fn reads_release_each_values_and_refusals() {
        let reply = array(vec![
            Reply::Int(1),
            Reply::Int(0),
            bulk("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ]);
        let released: Vec<_> = release_each(reply, 3).unwrap().collect();
        assert_eq!(
            released,
            [
                Ok(true),
                Ok(false),
                Err(Refusal::Text(
                    "WRONGTYPE Operation against a key holding the wrong kind of value".into()
                )),
            ]
        );
    }

    #[test]
    fn a_key_of_another_type_is_read_with_the_type_and_which_key_never_as_busy() {
        let other = |index, found: &str| Refusal::OtherType {
            index,
            found: found.into(),
        };
        let each = array(vec![
            Reply::Int(3),
            bulk("hash"),
            Reply::Int(0),
            Reply::Int(20),
        ]);
        let outcomes: Vec<_> = acquire_each(each, 2).unwrap().collect();
        assert_eq!(outcomes[0], Err(other(0, "hash")));
        assert!(matches!(outcomes[1], Ok(Attempt::Busy { .. })));
        let all = array(vec![Reply::Int(3), bulk("list"), Reply::Int(2)]);
        assert_eq!(acquire_all(all), Err(other(1, "list")));
        let released = array(vec![
            array(vec![Reply::Int(3), bulk("stream")]),
            Reply::Int(1),
        ]);
        let released: Vec<_> = release_each(released, 2).unwrap().collect();
        assert_eq!(released, [Err(other(0, "stream")), Ok(true)]);
        let whole = || array(vec![Reply::Int(3), bulk("zset"), Reply::Int(1)]);
        assert_eq!(extend(whole()), Err(other(0, "zset")));
        assert_eq!(hand_over(whole(), 0), Err(other(0, "zset")));
        assert_eq!(redlock_hand_over(whole()), Err(other(0, "zset")));
    }

    #[test]
    fn a_malformed_report_of_another_type_is_an_unexpected_answer() {
        // The index counts from 1: 0 names no key.
        let no_key = array(vec![Reply::Int(3), bulk("hash"), Reply::Int(0)]);
        assert!(matches!(acquire_all(no_key), Err(Refusal::Text(_))));
        let no_type = array(vec![array(vec![Reply::Int(3)])]);
        let released: Vec<_> = release_each(no_type, 1).unwrap().collect();
        assert!(matches!(&released[0], Err(Refusal::Text(text)) if text.starts_with("unexpected")));
        let each = array(vec![Reply::Int(3), Reply::Int(7)]);
        let outcomes: Vec<_> = acquire_each(each, 1).unwrap().collect();
        assert_eq!(
            outcomes,
            [Err(Refusal::Text("unexpected answer Int(7)".into()))]
        );
    }

    #[test]
    fn reads_extend_and_count_held() {
        assert_eq!(extend(Reply::Int(1)), Ok(true));
        assert_eq!(extend(Reply::Int(0)), Ok(false));
        assert_eq!(count_held(Reply::Int(2)), Ok(2));
        assert_eq!(
            count_held(Reply::Bulk(None)),
            Err(Refusal::Text("unexpected answer Bulk(None)".into()))
        );
    }

    #[test]
    fn reads_a_hand_over() {
        let answer = |values: &[i64]| array(values.iter().copied().map(Reply::Int).collect());
        assert_eq!(hand_over(answer(&[0]), 3), Ok(HandOver::NotHeld));
        assert_eq!(
            hand_over(answer(&[1]), 0),
            Ok(HandOver::Done { reserved: None })
        );
        assert_eq!(
            hand_over(answer(&[1, 9]), 3),
            Ok(HandOver::Done { reserved: Some(9) })
        );
        let below_the_block = hand_over(answer(&[1, 2]), 3).unwrap_err();
        assert!(
            matches!(&below_the_block, Refusal::Text(text) if text.contains("to a hand-over")),
            "{below_the_block:?}"
        );
        assert!(hand_over(answer(&[1]), 3).is_err(), "a block was asked for");
    }

    #[test]
    fn a_redlock_node_refuses_takes_or_replaces_on_hand_over() {
        let int = Reply::Int;
        let array = |values: Vec<Reply>| Reply::Array(Some(values));
        assert_eq!(
            redlock_hand_over(array(vec![int(0)])),
            Ok(NodeHandOver::Refused)
        );
        assert_eq!(
            redlock_hand_over(array(vec![int(1), int(9)])),
            Ok(NodeHandOver::Taken { fence: 9 })
        );
        assert_eq!(
            redlock_hand_over(array(vec![int(2), int(10)])),
            Ok(NodeHandOver::Replaced { fence: 10 })
        );
        assert!(redlock_hand_over(array(vec![int(2), int(0)])).is_err());
        assert!(redlock_hand_over(int(1)).is_err());
    }
}
