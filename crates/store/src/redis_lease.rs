//! Ingest leases on Redis (see `lease.rs` for the contract): three keys in the stream's slot and
//! four short scripts, plus the fence check every ingest-writing script runs first.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{p:s}:lease` | string, `PX` ttl | `"{token} {holder}"` while held |
//! | `{p:s}:lease:token` | int | the newest token granted (`INCR`; never expires) |
//! | `{p:s}:lease:wait` | hash | refused acquirer -> until when it counts as waiting (server ms) |
//!
//! Fencing compares with `lease:token`, not with the expiring `lease`: a token is good exactly
//! while no newer one was granted, so an ingest cut off from Redis for longer than its ttl
//! writes on when Redis is back unless a standby took over meanwhile.

use std::time::Duration;

use redis::{Script, Value};

use super::{RedisStore, bounded, unexpected};
use crate::lease::{LeaseAttempt, LeaseHolder, LeaseRenewal, check_lease_args, fenced, millis};
use crate::{Result, StoreError, StreamName};

/// Lua of the fence check, for the scripts that write a stream on behalf of its ingest. The
/// caller appends the `{p:s}:lease:token` key and the handle's token (`""`: not fenced) as the
/// last key and argument; `fence()` removes both (so the script's own `KEYS`/`ARGV` are as
/// before) and returns an error text when a newer token exists. The error reply is
/// `FENCED {stream} {ours} {current}`, turned into [`StoreError::Fenced`] by `map_err`.
macro_rules! lua_fence {
    () => {
        r#"
local function fence()
  local k = table.remove(KEYS)
  local t = table.remove(ARGV)
  if t == '' then return nil end
  local cur = redis.call('GET', k) or '0'
  if cur == t then return nil end
  local s = string.match(k, '^{[^:]+:([^:]+)}:')
  return 'FENCED ' .. s .. ' ' .. t .. ' ' .. cur
end
"#
    };
}

/// Server time in ms, in Lua.
const LUA_NOW: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// KEYS: lease token wait; ARGV: holder ttl_ms waiter_ms.
/// {1, token} acquired, or {0, token, holder, pttl} held.
///
/// A lease held by the asking holder itself is granted again with a new token: its earlier grant
/// reached Redis but not the caller (on a cluster, the write was applied and the `WAIT` for the
/// replica timed out), so refusing would tell an ingest that it is being ingested by itself. The
/// new token fences whatever used the old one, so this stays safe if two processes were ever
/// given the same holder id.
const ACQUIRE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, h = string.match(cur, '^(%d+) (.*)$')
  if h ~= ARGV[1] then
    redis.call('HSET', KEYS[3], ARGV[1], now_ms() + tonumber(ARGV[3]))
    return {0, tok, h, redis.call('PTTL', KEYS[1])}
  end
end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok .. ' ' .. ARGV[1], 'PX', ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return {1, tostring(tok)}
";

/// KEYS: lease token wait; ARGV: token holder ttl_ms. {1, waiting...} renewed, or {0, current}.
const RENEW: &str = r"
local cur = redis.call('GET', KEYS[2]) or '0'
if cur ~= ARGV[1] then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
local now = now_ms()
local out = {1}
local w = redis.call('HGETALL', KEYS[3])
for i = 1, #w, 2 do
  if tonumber(w[i + 1]) < now then redis.call('HDEL', KEYS[3], w[i]) else out[#out + 1] = w[i] end
end
return out
";

/// KEYS: lease; ARGV: token. 1 when it was released.
const RELEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur and string.match(cur, '^(%d+) ') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// KEYS: lease wait. {value, pttl, waiting...} or {}.
const HOLDER: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return {} end
local out = {cur, redis.call('PTTL', KEYS[1])}
local now = now_ms()
local w = redis.call('HGETALL', KEYS[2])
for i = 1, #w, 2 do
  if tonumber(w[i + 1]) >= now then out[#out + 1] = w[i] end
end
return out
";

/// A refused acquirer is listed as waiting for this many ttls (it retries every third of one).
const WAITER_TTLS: u32 = 3;

pub(super) struct LeaseKeys {
    lease: String,
    pub(super) token: String,
    wait: String,
}

pub(super) fn lease_keys(store: &RedisStore, s: &StreamName) -> LeaseKeys {
    let k = |suffix: &str| format!("{{{}:{}}}:{suffix}", store.prefix, s);
    LeaseKeys {
        lease: k("lease"),
        token: k("lease:token"),
        wait: k("lease:wait"),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn items(what: &str, v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(unexpected(what, &other)),
    }
}

/// The `FENCED {stream} {ours} {current}` error reply of a fenced script, if `e` is one.
pub(super) fn fenced_reply(e: &redis::RedisError) -> Option<StoreError> {
    if e.code() != Some("FENCED") {
        return None;
    }
    let mut words = e.detail()?.split_whitespace();
    let stream = words.next()?.to_owned();
    let token = words.next()?.parse().ok()?;
    let current = words.next()?.parse().ok()?;
    Some(StoreError::Fenced {
        stream,
        token,
        current,
    })
}

impl RedisStore {
    /// The token this handle writes `stream` under, as the fence argument (`""`: none).
    pub(super) fn fence_arg(&self, stream: &StreamName) -> String {
        self.fences
            .lock()
            .ok()
            .and_then(|f| f.get(stream).map(|(t, _)| t.to_string()))
            .unwrap_or_default()
    }

    pub(super) async fn lease_acquire(
        &self,
        stream: &StreamName,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseAttempt> {
        check_lease_args(Some(holder), ttl)?;
        let k = lease_keys(self, stream);
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            Script::new(&format!("{LUA_NOW}{ACQUIRE}"))
                .key(&k.lease)
                .key(&k.token)
                .key(&k.wait)
                .arg(holder)
                .arg(millis(ttl))
                .arg(millis(ttl * WAITER_TTLS))
                .invoke_async(&mut conn),
        )
        .await?;
        let v = items("lease acquire", reply)?;
        let bad = || StoreError::Backend(format!("redis: unexpected lease reply {v:?}"));
        let token = v.get(1).and_then(int).and_then(|t| u64::try_from(t).ok());
        match (v.first().and_then(int), token) {
            (Some(1), Some(token)) => {
                if let Ok(mut f) = self.fences.lock() {
                    f.insert(stream.clone(), (token, holder.to_owned()));
                }
                Ok(LeaseAttempt::Acquired { token })
            }
            (Some(0), Some(token)) => Ok(LeaseAttempt::Held(LeaseHolder {
                holder: v.get(2).and_then(text).ok_or_else(bad)?,
                token,
                ttl_left: Duration::from_millis(
                    v.get(3)
                        .and_then(int)
                        .and_then(|t| u64::try_from(t).ok())
                        .unwrap_or(0),
                ),
                standby: Vec::new(),
            })),
            _ => Err(bad()),
        }
    }

    pub(super) async fn lease_renew(
        &self,
        stream: &StreamName,
        token: u64,
        ttl: Duration,
    ) -> Result<LeaseRenewal> {
        check_lease_args(None, ttl)?;
        let holder = self
            .fences
            .lock()
            .ok()
            .and_then(|f| {
                f.get(stream)
                    .filter(|(t, _)| *t == token)
                    .map(|(_, h)| h.clone())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let k = lease_keys(self, stream);
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            Script::new(&format!("{LUA_NOW}{RENEW}"))
                .key(&k.lease)
                .key(&k.token)
                .key(&k.wait)
                .arg(token)
                .arg(holder)
                .arg(millis(ttl))
                .invoke_async(&mut conn),
        )
        .await?;
        let v = items("lease renew", reply)?;
        match v.first().and_then(int) {
            Some(1) => {
                let mut standby: Vec<String> = v[1..].iter().filter_map(text).collect();
                standby.sort();
                Ok(LeaseRenewal { standby })
            }
            Some(0) => {
                let current = v
                    .get(1)
                    .and_then(int)
                    .and_then(|t| u64::try_from(t).ok())
                    .unwrap_or(0);
                Err(fenced(stream, token, current))
            }
            _ => Err(StoreError::Backend(format!(
                "redis: unexpected lease reply {v:?}"
            ))),
        }
    }

    pub(super) async fn lease_release(&self, stream: &StreamName, token: u64) -> Result<()> {
        let k = lease_keys(self, stream);
        let mut conn = self.conn.clone();
        let _: i64 = bounded(
            Script::new(RELEASE)
                .key(&k.lease)
                .arg(token)
                .invoke_async(&mut conn),
        )
        .await?;
        if let Ok(mut f) = self.fences.lock()
            && f.get(stream).is_some_and(|(t, _)| *t == token)
        {
            f.remove(stream);
        }
        Ok(())
    }

    pub(super) async fn lease_holder_of(&self, stream: &StreamName) -> Result<Option<LeaseHolder>> {
        let k = lease_keys(self, stream);
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            Script::new(&format!("{LUA_NOW}{HOLDER}"))
                .key(&k.lease)
                .key(&k.wait)
                .invoke_async(&mut conn),
        )
        .await?;
        let v = items("lease holder", reply)?;
        let Some(cur) = v.first().and_then(text) else {
            return Ok(None);
        };
        let Some((token, holder)) = cur.split_once(' ') else {
            return Err(StoreError::Corrupt {
                key: k.lease,
                why: format!("not \"token holder\": {cur:?}"),
            });
        };
        let token = token.parse().map_err(|_| StoreError::Corrupt {
            key: k.lease.clone(),
            why: format!("bad token in {cur:?}"),
        })?;
        let pttl = v.get(1).and_then(int).unwrap_or(0);
        let mut standby: Vec<String> = v.iter().skip(2).filter_map(text).collect();
        standby.sort();
        Ok(Some(LeaseHolder {
            holder: holder.to_owned(),
            token,
            ttl_left: Duration::from_millis(u64::try_from(pttl).unwrap_or(0)),
            standby,
        }))
    }
}
