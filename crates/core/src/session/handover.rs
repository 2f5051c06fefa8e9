//! Hand-over chains: the bookkeeping behind passing a contended one-key lock from its holder
//! straight to the next local waiter.
//!
//! A hand-over rewrites the key from the old token to the new one in one script, so the key is
//! never free and nothing is published. Each hand-over needs a fencing token above every earlier
//! one of the key; instead of an `INCR` each, the first hand-over of a chain reserves a block of
//! [`FENCE_BLOCK`] values with one `INCRBY` and the chain hands them out in order. That is safe
//! because nobody else can take the key while the chain keeps it continuously held, and whoever
//! takes it next (here or in another process) gets an `INCR` above the whole block.
//!
//! Remote waiters only wake on a published release, which a chain never sends, so a chain ends
//! after [`MAX_LINKS`] hand-overs with a normal release, and the local head waits
//! [`CHAIN_END_PAUSE`] before it competes for the key again.

use std::time::Duration;

/// Hand-overs in a row before the key is released normally, giving other processes a turn.
pub const MAX_LINKS: u32 = 64;

/// Fencing tokens one hand-over reserves for its chain.
pub const FENCE_BLOCK: u64 = 64;

/// How long the local head lets other processes try first after a chain ended.
pub const CHAIN_END_PAUSE: Duration = Duration::from_millis(2);

/// The hand-overs of one key since a normal acquisition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Token of the lock the chain handed over last: only its release continues the chain.
    holder: String,
    /// The fencing tokens of the block not handed out yet: `next..=last`.
    next: u64,
    last: u64,
    /// Hand-overs so far.
    links: u32,
}

/// What the release of `token` should do, given the key's chain (taken out of the queue while
/// the release runs, so only one release works on it).
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Hand the lock over.
    HandOver(Link),
    /// The chain is long enough: release normally and let everyone compete.
    End,
}

impl Plan {
    pub fn for_release(chain: Option<Chain>, token: &str) -> Self {
        match chain {
            Some(chain) if chain.holder == token => {
                if chain.links >= MAX_LINKS {
                    Plan::End
                } else {
                    Plan::HandOver(Link {
                        block: (chain.next <= chain.last).then_some((chain.next, chain.last)),
                        links: chain.links + 1,
                    })
                }
            }
            // The lock was taken normally (or by a chain that broke since): a new chain starts.
            _ => Plan::HandOver(Link {
                block: None,
                links: 1,
            }),
        }
    }
}

/// One hand-over under way.
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    /// What is left of the chain's block; `None`: reserve a new one.
    block: Option<(u64, u64)>,
    /// Hand-overs in the chain once this one is done.
    links: u32,
}

impl Link {
    /// How many fencing tokens the hand-over script should reserve.
    pub fn reserve(&self) -> u64 {
        if self.block.is_some() {
            0
        } else {
            FENCE_BLOCK
        }
    }

    /// The new holder's fence and the chain that continues with it, once the script handed the
    /// lock to `token`; `reserved` is the last value of the block it reserved, if any. `None`
    /// when the answer does not fit the request.
    pub fn done(self, token: String, reserved: Option<u64>) -> Option<(u64, Chain)> {
        let (fence, last) = match (self.block, reserved) {
            (Some((next, last)), None) => (next, last),
            (None, Some(last)) if last >= FENCE_BLOCK => (last - FENCE_BLOCK + 1, last),
            _ => return None,
        };
        Some((
            fence,
            Chain {
                holder: token,
                next: fence + 1,
                last,
                links: self.links,
            },
        ))
    }

    /// The chain that continues with `token`, once a topology that fences each hand-over
    /// itself (Redlock) handed the lock to it: it counts the link and keeps no block.
    pub fn done_fenced(self, token: String, fence: u64) -> Chain {
        Chain {
            holder: token,
            next: fence + 1,
            last: fence,
            links: self.links,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one link for the release of `token`, as the hand-over script would answer.
    fn link(chain: Option<Chain>, token: &str, counter: &mut u64) -> Result<(u64, Chain), Plan> {
        match Plan::for_release(chain, token) {
            Plan::HandOver(link) => {
                let reserved = (link.reserve() > 0).then(|| {
                    *counter += link.reserve();
                    *counter
                });
                Ok(link
                    .done(format!("{token}+"), reserved)
                    .expect("a fitting answer"))
            }
            end => Err(end),
        }
    }

    #[test]
    fn a_chain_hands_out_its_block_in_order_then_ends() {
        // The counter as a normal acquisition left it: its fence was 10.
        let mut counter = 10;
        let mut token = "t".to_owned();
        let mut chain = None;
        let mut fences = Vec::new();
        loop {
            match link(chain.take(), &token, &mut counter) {
                Ok((fence, next)) => {
                    fences.push(fence);
                    token = format!("{token}+");
                    chain = Some(next);
                }
                Err(plan) => {
                    assert_eq!(plan, Plan::End);
                    break;
                }
            }
        }
        assert_eq!(fences.len(), MAX_LINKS as usize, "hand-overs in one chain");
        assert_eq!(fences, (11..11 + u64::from(MAX_LINKS)).collect::<Vec<_>>());
        assert_eq!(counter, 10 + FENCE_BLOCK, "one reservation for the chain");
        // The next normal acquisition's INCR is above every fence handed out.
        assert!(counter + 1 > *fences.last().unwrap());
    }

    #[test]
    fn only_the_last_handed_lock_continues_a_chain() {
        let mut counter = 100;
        let (fence, chain) = link(None, "a", &mut counter).unwrap();
        assert_eq!((fence, counter), (101, 164));
        // A lock taken otherwise (the chain broke, the key was taken normally since) starts
        // a new chain with a new block, above everything reserved before.
        counter += 1;
        let (fence, other) = link(Some(chain.clone()), "someone else", &mut counter).unwrap();
        assert_eq!((fence, counter), (166, 229));
        assert_eq!(other.links, 1);
        let (fence, next) = link(Some(chain), "a+", &mut counter).unwrap();
        assert_eq!((fence, next.links), (102, 2));
    }

    #[test]
    fn a_chain_fenced_by_its_topology_counts_its_links_and_keeps_no_block() {
        let mut token = "t".to_owned();
        let mut chain = None;
        let mut links = 0;
        // Redlock: every hand-over's fence comes from the nodes, one above the last.
        let mut fence = 1_000;
        while let Plan::HandOver(link) = Plan::for_release(chain.take(), &token) {
            assert_eq!(link.reserve(), FENCE_BLOCK, "no block to hand out from");
            fence += 1;
            token = format!("{token}+");
            let next = link.done_fenced(token.clone(), fence);
            assert_eq!((next.next, next.last), (fence + 1, fence));
            chain = Some(next);
            links += 1;
        }
        assert_eq!(links, MAX_LINKS, "a fenced chain ends like any other");
    }

    #[test]
    fn an_exhausted_block_is_renewed() {
        let chain = Chain {
            holder: "h".into(),
            next: 9,
            last: 8,
            links: 3,
        };
        let Plan::HandOver(link) = Plan::for_release(Some(chain), "h") else {
            panic!("the chain continues");
        };
        assert_eq!(link.reserve(), FENCE_BLOCK);
        let (fence, chain) = link.done("n".into(), Some(200)).unwrap();
        assert_eq!(
            (fence, chain.next, chain.last, chain.links),
            (137, 138, 200, 4)
        );
    }

    #[test]
    fn an_answer_that_does_not_fit_is_refused() {
        let Plan::HandOver(fresh) = Plan::for_release(None, "t") else {
            panic!("a new chain");
        };
        assert_eq!(fresh.done("n".into(), None), None);
        let from_block = Link {
            block: Some((5, 9)),
            links: 2,
        };
        assert_eq!(from_block.done("n".into(), Some(70)), None);
    }
}
