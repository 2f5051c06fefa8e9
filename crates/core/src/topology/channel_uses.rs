//! The release channels a subscriber keeps subscribed, each with how many wait queues need it:
//! the first use subscribes a channel, the last one to go unsubscribes it.

use std::collections::HashMap;

#[derive(Default)]
pub struct ChannelUses(HashMap<String, usize>);

impl ChannelUses {
    /// Counts one more use of each of `channels`: those no one used before, to subscribe.
    pub fn add(&mut self, channels: &[String]) -> Vec<String> {
        let mut fresh = Vec::new();
        for channel in channels {
            let uses = self.0.entry(channel.clone()).or_insert(0);
            *uses += 1;
            if *uses == 1 {
                fresh.push(channel.clone());
            }
        }
        fresh
    }

    /// Drops one use of each of `channels`: those no one uses any more, to unsubscribe.
    pub fn remove(&mut self, channels: &[String]) -> Vec<String> {
        channels
            .iter()
            .filter(|channel| match self.0.get_mut(channel.as_str()) {
                Some(uses) if *uses > 1 => {
                    *uses -= 1;
                    false
                }
                Some(_) => {
                    self.0.remove(channel.as_str());
                    true
                }
                None => false,
            })
            .cloned()
            .collect()
    }

    /// Every channel in use, to subscribe again on a new connection.
    pub fn all(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.0.contains_key(channel)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(channels: &[&str]) -> Vec<String> {
        channels.iter().map(|&channel| channel.to_owned()).collect()
    }

    #[test]
    fn the_first_use_subscribes_and_the_last_unsubscribes() {
        let mut uses = ChannelUses::default();
        assert_eq!(uses.add(&names(&["a", "b"])), names(&["a", "b"]));
        assert_eq!(uses.add(&names(&["a"])), Vec::<String>::new());
        assert_eq!(uses.remove(&names(&["a", "b"])), names(&["b"]));
        assert!(uses.contains("a") && !uses.contains("b"));
        assert_eq!(uses.remove(&names(&["a", "never"])), names(&["a"]));
        assert!(uses.is_empty());
    }
}
