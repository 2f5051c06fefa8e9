//! The fixed Lua scripts of the lock protocol. Keys and values travel as KEYS/ARGV, never as
//! script text, so user strings cannot change what runs.

use std::sync::LazyLock;

use crate::protocol::token::token_mark;

/// One script: its Lua source, and the SHA1 that `EVALSHA` names it by, computed once.
pub struct Script {
    source: &'static str,
    hash: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            // redis-rs hashes as Redis does; nothing else of its `Script` is used.
            hash: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// The Lua function `busy_code(value)`: how an attempt reports a key held by `value`. 0: by an
/// ironlock token, whose release is announced; 2: by anything else, whose waiters must poll
/// (see [`crate::protocol::token`]).
macro_rules! busy_code_lua {
    () => {
        concat!(
            r#"
local function busy_code(value)
  if type(value) == 'string' and #value == 36 and string.sub(value, 1, 8) == '"#,
            token_mark!(),
            r#"' then return 0 end
  return 2
end
"#
        )
    };
}

/// The Lua function `other_type(key, failure)`: after a command on lock key `key` failed with
/// `failure`, the Redis type of the value there (`hash`, `list`…), since a value of another type
/// than a string is what makes `GET` fail; any other failure is raised again. Asked only after a
/// failure, so the uncontended path runs no more commands. Scripts report such a key with code
/// `3` and the type, never as busy: no holder will ever release it.
macro_rules! other_type_lua {
    () => {
        r#"
local function other_type(key, failure)
  local found = redis.call('TYPE', key).ok
  if found == 'string' or found == 'none' then error(failure) end
  return found
end
"#
    };
}

/// The Lua function `next_fence(counter, n)`: reserves the next `n` fencing tokens of `counter` and returns the last.
/// They are above every token the counter gave before, and never below the server's clock in
/// microseconds: a counter lost with the data (a restart without persistence, a failover to a
/// replica that lagged behind) starts again above every token handed out before it, as long as
/// the server's clock did not go back and no counter was drawn faster than a million per second.
/// Lua numbers are doubles: exact for microsecond clocks until the year 2255.
///
/// The clock is read once per script call, when its first lock needs it: `TIME` costs Redis
/// more than a write, and one call carries up to [`crate::protocol::chunks::MAX_BATCH`] locks. A
/// counter behind the clock (the usual case: its slot was last drawn a microsecond ago or more)
/// is set to it with one `GETSET`, which also says where it was; one at or ahead of the clock (a
/// hand-over chain's block, a Redlock lift from a node whose clock runs ahead, a second lock of
/// its slot in the same call) counts on from where it was with an `INCRBY`.
macro_rules! next_fence_lua {
    () => {
        r#"
local clock_now, clock_digits
local function server_clock()
  if not clock_now then
    local now = redis.call('TIME')
    clock_now = tonumber(now[1]) * 1000000 + tonumber(now[2])
    clock_digits = now[1] .. string.rep('0', 6 - #now[2]) .. now[2]
  end
  return clock_now, clock_digits
end
local function next_fence(counter, n)
  local now, now_digits = server_clock()
  local last = now + n - 1
  local previous = redis.call('GETSET', counter, n == 1 and now_digits or string.format('%.0f', last))
  if not previous then return last end
  local counted = tonumber(previous)
  if not counted then
    -- Not a number: put back for INCRBY to refuse, as it always did.
    redis.call('SET', counter, previous)
    return redis.call('INCRBY', counter, n)
  end
  if counted < now then return last end
  return redis.call('INCRBY', counter, counted - now + 1)
end
"#
    };
}

/// Takes one-key locks, each on its own: `SET NX PX` (the layout of `redlock` and hand-rolled
/// locks), then bumps the lock's fencing counter. One call carries every lock that was asked for
/// while the previous calls were on their way, so a burst costs Redis one script run.
///
/// KEYS: lock key and fencing counter, per lock. ARGV: token and ttl in ms, per lock.
/// Returns two values per lock: `1, fence` when taken (also when the key holds the token already:
/// a call that reached Redis before and goes again, as a cluster connection resends after a
/// dropped connection); `0, pttl` when busy with an ironlock holder, `2, pttl` when busy with any other (pttl -1: a holder without TTL); `3, type` when the
/// key holds a value of another Redis type than a string; `-1, message` when Redis refused a
/// command (the other locks are unaffected).
pub static ACQUIRE_EACH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        next_fence_lua!(),
        busy_code_lua!(),
        other_type_lua!(),
        r#"
local function take(key, counter, token, ttl)
  -- One command tells both whether the key was free and who holds it.
  local holder = redis.pcall('SET', key, token, 'NX', 'PX', ttl, 'GET')
  if type(holder) == 'table' and holder.err then
    -- Before Redis 7.0, NX and GET do not go together; from 7.0, GET fails on another type.
    if redis.call('SET', key, token, 'NX', 'PX', ttl) then
      holder = false
    else
      holder = redis.pcall('GET', key)
      if type(holder) == 'table' and holder.err then return 3, other_type(key, holder) end
    end
  end
  if not holder or holder == token then
    return 1, next_fence(counter, 1)
  end
  return busy_code(holder), redis.call('PTTL', key)
end
local out = {}
for i = 1, #KEYS, 2 do
  local ok, taken, value = pcall(take, KEYS[i], KEYS[i + 1], ARGV[i], ARGV[i + 1])
  if ok then
    out[i], out[i + 1] = taken, value
  else
    out[i], out[i + 1] = -1, type(taken) == 'table' and taken.err or tostring(taken)
  end
end
return out
"#
    ))
});

/// The Lua function `held_by_others(n, token)`: what an attempt at the first `n` of KEYS finds,
/// writing nothing: `{0, pttl}` when some are held (the longest pttl among them, -1 when one has
/// no TTL), `{2, pttl}` when one of the holders is not ironlock's, `{3, type, i}` when key `i`
/// (from 1) holds a value of another Redis type than a string, `nil` when all are free. A key
/// holding `token` counts as free (see [`ACQUIRE_EACH`]).
macro_rules! held_by_others_lua {
    () => {
        r#"
local function held_by_others(n, token)
  local longest = -2
  local code = 0
  for i = 1, n do
    local left = redis.call('PTTL', KEYS[i])
    if left ~= -2 then
      local holder = redis.pcall('GET', KEYS[i])
      if type(holder) == 'table' and holder.err then
        return {3, other_type(KEYS[i], holder), i}
      end
      if holder ~= token then
        code = math.max(code, busy_code(holder))
        if left == -1 or (left > longest and longest ~= -1) then longest = left end
      end
    end
  end
  if longest ~= -2 then return {code, longest} end
  return nil
end
"#
    };
}

/// Sets every key of a multi-key lock or none, then bumps the fencing counters.
///
/// KEYS: the n lock keys, then the fencing counters. ARGV: token, ttl in ms, n.
/// Returns `{1, fence}` when taken (a key holding the token already counts as free, as in
/// [`ACQUIRE_EACH`]), or what `held_by_others` found (busy, or a key of another type).
pub static ACQUIRE_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        next_fence_lua!(),
        busy_code_lua!(),
        other_type_lua!(),
        held_by_others_lua!(),
        r#"
local n = tonumber(ARGV[3])
local busy = held_by_others(n, ARGV[1])
if busy then return busy end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
local fence = 0
local counters = {}
for i = n + 1, #KEYS do
  counters[i] = next_fence(KEYS[i], 1)
  if counters[i] > fence then fence = counters[i] end
end
-- keys from several slots: lift every counter to the fence so each key's next one is higher
for i = n + 1, #KEYS do
  if counters[i] < fence then redis.call('SET', KEYS[i], string.format('%.0f', fence)) end
end
return {1, fence}
"#
    ))
});

/// What [`ACQUIRE_ALL`] would find busy at the lock keys, writing nothing: on Redis Cluster, a
/// lock across slots that found one slot busy asks this of the slots after it, so that its
/// `retryAfter` is the longest hold among all its keys without holding any of them.
///
/// KEYS: the lock keys. Returns `held_by_others`' answer, or `{}` when every key is free.
pub static HELD_BY_OTHERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        busy_code_lua!(),
        other_type_lua!(),
        held_by_others_lua!(),
        r#"
return held_by_others(#KEYS, false) or {}
"#
    ))
});

/// The Lua of [`RELEASE_EACH`], announcing with `$publish`.
macro_rules! release_each_lua {
    ($publish:literal) => {
        concat!(
            other_type_lua!(),
            r#"
local function release(key, token, channel)
  local holder = redis.pcall('GET', key)
  if type(holder) == 'table' and holder.err then return {3, other_type(key, holder)} end
  if holder ~= token then return 0 end
  redis.call('DEL', key)
  redis.call('"#,
            $publish,
            r#"', channel, token)
  return 1
end
local out = {}
for i = 1, #KEYS do
  local ok, result = pcall(release, KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
  if ok then
    out[i] = result
  else
    out[i] = type(result) == 'table' and result.err or tostring(result)
  end
end
return out
"#
        )
    };
}

/// Deletes lock keys that still hold their token and announces each on its channel. Like
/// [`ACQUIRE_EACH`], one call carries every release asked for meanwhile.
///
/// KEYS: the lock keys. ARGV: token and channel, per key. Returns per key 1 when it was ours and
/// is deleted, 0 when it was not ours, `{3, type}` when it holds a value of another Redis type
/// than a string, or the message of a command Redis refused.
pub static RELEASE_EACH: LazyLock<Script> =
    LazyLock::new(|| Script::new(release_each_lua!("PUBLISH")));

/// [`RELEASE_EACH`] on Redis Cluster: each release announced with `SPUBLISH`, on its key's shard
/// only (a channel shares its key's slot, see [`crate::protocol::keys::release_channel`]), where
/// `PUBLISH` would go to every node of the cluster. Redis 7 and later.
pub static RELEASE_EACH_SHARDED: LazyLock<Script> =
    LazyLock::new(|| Script::new(release_each_lua!("SPUBLISH")));

/// Resets the TTL of every lock key, only if all still hold our token.
///
/// KEYS: the lock keys. ARGV: token, ttl in ms. Returns 1 when extended, 0 when not ours,
/// `{3, type, i}` when lock key `i` (from 1) holds a value of another Redis type than a string.
pub static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        other_type_lua!(),
        r#"
for i = 1, #KEYS do
  local holder = redis.pcall('GET', KEYS[i])
  if type(holder) == 'table' and holder.err then return {3, other_type(KEYS[i], holder), i} end
  if holder ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
"#
    ))
});

/// Passes a one-key lock straight from its holder to the next local waiter, without deleting it:
/// the key is never free, so no other process can take it in between, and nothing is published.
/// A chain of hand-overs reserves its fencing tokens as one block (see `crate::session::handover`).
///
/// KEYS: lock key, fencing counter. ARGV: old token, new token, new ttl in ms, how many fencing
/// tokens to reserve (0: none). Returns `{0}` when the key holds neither token, `{1}` when handed
/// over (also when it holds the new token already: a call that reached Redis before goes again), `{1, counter}` when handed over with a block reserved (`counter` its last),
/// `{3, type, 1}` when the key holds a value of another Redis type than a string.
pub static HAND_OVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        next_fence_lua!(),
        other_type_lua!(),
        r#"
local holder = redis.pcall('GET', KEYS[1])
if type(holder) == 'table' and holder.err then return {3, other_type(KEYS[1], holder), 1} end
if holder ~= ARGV[1] and holder ~= ARGV[2] then return {0} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local reserve = tonumber(ARGV[4])
if reserve > 0 then return {1, next_fence(KEYS[2], reserve)} end
return {1}
"#
    ))
});

/// Counts the lock keys that are held, writing nothing: what a waiter behind a holder that is not
/// ironlock's asks a Redlock node before attempting (see `Topology::may_be_free`).
///
/// KEYS: the lock keys. Returns how many hold a string: a value of another type is no holder
/// that will go away, and the attempt reports it (see [`ACQUIRE_EACH`]).
pub static COUNT_HELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local held = 0
for i = 1, #KEYS do
  if redis.call('TYPE', KEYS[i]).ok == 'string' then held = held + 1 end
end
return held
"#,
    )
});

/// Raises fencing counters to at least a given fence. Redlock hands out the highest fence among
/// the nodes that granted a lock; lifting every node's counter to it afterwards makes the next
/// holder's fence higher on whichever majority grants it.
///
/// KEYS: fencing counters. ARGV: the fence for each. One call carries every lift asked for
/// meanwhile.
pub static LIFT_FENCES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #KEYS do
  if (tonumber(redis.call('GET', KEYS[i])) or 0) < tonumber(ARGV[i]) then
    redis.call('SET', KEYS[i], ARGV[i])
  end
end
return 1
"#,
    )
});

/// Redlock's hand-over on one node: passes a one-key lock from its holder straight to the next
/// local waiter (see `Topology::hand_over`), or takes the key where it is free, as an attempt
/// would. The key is never free where the old token held it, and nothing is published.
///
/// The new fence is above `floor`, the old holder's fence, on every node that grants, whatever
/// its counter said: so any majority's answers give a fence above the old one, and the nodes of
/// a chain agree (every counter is `floor + 1`) without a lift. `INCR` alone does it once the
/// counters agree; a counter below the floor is raised to it.
///
/// KEYS: lock key, fencing counter. ARGV: old token, new token, new ttl in ms, floor. Returns
/// `{0}` when another token holds the key, `{1, fence}` when the key was free and is taken,
/// `{2, fence}` when the old token held it and the new one does now, `{3, type, 1}` when the key
/// holds a value of another Redis type than a string.
pub static REDLOCK_HAND_OVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        other_type_lua!(),
        r#"
local holder = redis.pcall('GET', KEYS[1])
if type(holder) == 'table' and holder.err then return {3, other_type(KEYS[1], holder), 1} end
local code = 1
if holder == ARGV[1] then
  code = 2
elseif holder then
  return {0}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
local floor = tonumber(ARGV[4]) + 1
local fence = redis.call('INCR', KEYS[2])
if fence < floor then
  fence = redis.call('INCRBY', KEYS[2], string.format('%.0f', floor - fence))
end
return {code, fence}
"#
    ))
});
