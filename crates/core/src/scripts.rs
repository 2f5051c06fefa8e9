//! The fixed Lua scripts of the lock protocol. Keys and values travel as KEYS/ARGV, never as
//! script text, so user strings cannot change what runs.

use std::sync::LazyLock;

use redis::Script;

/// Sets every lock key or none (`SET NX PX`, the layout of `redlock` and hand-rolled locks), then
/// bumps the fencing counters.
///
/// KEYS: the n lock keys, then the fencing counters. ARGV: token, ttl in ms, n.
/// Returns `{1, fence}` when taken, `{0, pttl}` when busy (pttl -1: a holder without TTL).
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = tonumber(ARGV[3])
if n == 1 then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {0, redis.call('PTTL', KEYS[1])}
  end
else
  local longest = -2
  for i = 1, n do
    local left = redis.call('PTTL', KEYS[i])
    if left == -1 or (left > longest and longest ~= -1) then longest = left end
  end
  if longest ~= -2 then return {0, longest} end
  for i = 1, n do redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2]) end
end
local fence = 0
local counters = {}
for i = n + 1, #KEYS do
  counters[i] = redis.call('INCR', KEYS[i])
  if counters[i] > fence then fence = counters[i] end
end
-- keys from several slots: lift every counter to the fence so each key's next one is higher
for i = n + 1, #KEYS do
  if counters[i] < fence then redis.call('SET', KEYS[i], fence) end
end
return {1, fence}
"#,
    )
});

/// Deletes each lock key still holding our token and announces it on the key's channel.
///
/// KEYS: the lock keys. ARGV: token, then one channel per key. Returns how many were ours.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('PUBLISH', ARGV[i + 1], ARGV[1])
    released = released + 1
  end
end
return released
"#,
    )
});

/// Resets the TTL of every lock key, only if all still hold our token.
///
/// KEYS: the lock keys. ARGV: token, ttl in ms. Returns 1 when extended, 0 when not ours.
pub static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
return 1
"#,
    )
});
