//! How a script call is written, whichever connection sends it: `EVALSHA` by the script's hash,
//! or `EVAL` with its source once Redis said it does not know the hash (EVAL also caches the
//! script, so the calls after go by hash again).

use crate::protocol::scripts::Script;

/// How a call names its script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    ByHash,
    WithSource,
}

impl Naming {
    /// How to send again a call named `self`-wise that Redis refused with `error` (its code
    /// first): with the source, once, when Redis did not know the hash; `None`: the error stands.
    pub fn resend_after(self, error: &str) -> Option<Naming> {
        (self == Naming::ByHash && error.starts_with("NOSCRIPT")).then_some(Naming::WithSource)
    }
}

/// One call of a script with its keys and arguments, borrowed from the requests it carries:
/// building it copies none of them, and it can be written either way without building it again.
pub struct ScriptCall<'a> {
    script: &'static Script,
    key_count: usize,
    key_count_arg: String,
    /// The keys, then the arguments.
    words: Vec<&'a [u8]>,
}

impl<'a> ScriptCall<'a> {
    /// A call of `script` with `keys` keys and room for `args` arguments. Every key is given
    /// before the first argument, as Redis takes them.
    pub fn new(script: &'static Script, keys: usize, args: usize) -> Self {
        Self {
            script,
            key_count: keys,
            key_count_arg: keys.to_string(),
            words: Vec::with_capacity(keys + args),
        }
    }

    pub fn key(&mut self, key: &'a str) -> &mut Self {
        debug_assert!(self.words.len() < self.key_count, "more keys than declared");
        self.words.push(key.as_bytes());
        self
    }

    pub fn arg(&mut self, arg: &'a str) -> &mut Self {
        debug_assert!(
            self.words.len() >= self.key_count,
            "an argument before a key"
        );
        self.words.push(arg.as_bytes());
        self
    }

    /// The command's words: `EVALSHA hash n keys… args…` or `EVAL source n keys… args…`.
    pub fn command(&self, naming: Naming) -> Command<'_> {
        debug_assert!(
            self.words.len() >= self.key_count,
            "fewer keys than declared"
        );
        let script: &[u8] = match naming {
            Naming::ByHash => self.script.hash().as_bytes(),
            Naming::WithSource => self.script.source().as_bytes(),
        };
        let verb: &[u8] = match naming {
            Naming::ByHash => b"EVALSHA",
            Naming::WithSource => b"EVAL",
        };
        Command {
            head: [verb, script, self.key_count_arg.as_bytes()].into_iter(),
            rest: self.words.iter(),
        }
    }
}

/// The words of one command, in order; their count is known up front, as RESP needs it.
pub struct Command<'c> {
    head: std::array::IntoIter<&'c [u8], 3>,
    rest: std::slice::Iter<'c, &'c [u8]>,
}

impl<'c> Iterator for Command<'c> {
    type Item = &'c [u8];

    fn next(&mut self) -> Option<&'c [u8]> {
        self.head.next().or_else(|| self.rest.next().copied())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.head.len() + self.rest.len();
        (len, Some(len))
    }
}

impl ExactSizeIterator for Command<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scripts;

    fn words(call: &ScriptCall<'_>, naming: Naming) -> Vec<String> {
        call.command(naming)
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect()
    }

    fn release_call() -> ScriptCall<'static> {
        let mut call = ScriptCall::new(&scripts::RELEASE_EACH, 1, 2);
        call.key("k").arg("token").arg("k:released");
        call
    }

    #[test]
    fn names_the_script_by_its_hash() {
        let call = release_call();
        let hash = scripts::RELEASE_EACH.hash();
        assert_eq!(hash.len(), 40, "a SHA1 in hex");
        assert_eq!(
            words(&call, Naming::ByHash),
            ["EVALSHA", hash, "1", "k", "token", "k:released"]
        );
        assert_eq!(call.command(Naming::ByHash).len(), 6);
    }

    #[test]
    fn names_the_script_by_its_source_after_noscript() {
        let call = release_call();
        let again = Naming::ByHash.resend_after("NOSCRIPT No matching script. Please use EVAL.");
        assert_eq!(again, Some(Naming::WithSource));
        let source = scripts::RELEASE_EACH.source();
        assert!(source.contains("redis.call('PUBLISH', channel, token)"));
        assert_eq!(
            words(&call, Naming::WithSource),
            ["EVAL", source, "1", "k", "token", "k:released"]
        );
    }

    #[test]
    fn resends_once_and_only_for_noscript() {
        assert_eq!(Naming::WithSource.resend_after("NOSCRIPT again"), None);
        assert_eq!(
            Naming::ByHash.resend_after("ERR wrong number of arguments"),
            None
        );
        assert_eq!(Naming::ByHash.resend_after("OOM command not allowed"), None);
    }

    #[test]
    fn every_key_precedes_the_arguments() {
        let mut call = ScriptCall::new(&scripts::ACQUIRE_EACH, 4, 4);
        for (key, counter) in [("a", "a:fence"), ("b", "b:fence")] {
            call.key(key).key(counter);
        }
        for (token, ttl) in [("ta", "100"), ("tb", "200")] {
            call.arg(token).arg(ttl);
        }
        assert_eq!(
            words(&call, Naming::ByHash)[2..],
            ["4", "a", "a:fence", "b", "b:fence", "ta", "100", "tb", "200"]
        );
    }
}
