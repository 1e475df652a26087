//! The Redis store's webhook outbox ([`crate::outbox`]). Keys, under `{p}:wh:` (the braces are
//! literal: a hash tag, the prefix's slot; on one server the insert scripts write these):
//!
//! | key                 | type | content                                                  |
//! |---------------------|------|----------------------------------------------------------|
//! | `{p}:wh:hooks`      | hash | hook id -> `{seen ms}\|{streams}` (`*` or `,a,b,`)        |
//! | `{p}:wh:urls`       | hash | hook id -> masked URL                                     |
//! | `{p}:wh:{h}:e`      | hash | `{stream}/{id}` -> `{created ms} {attempts}`              |
//! | `{p}:wh:{h}:due`    | zset | score = due ms, members `{stream}/{id}`                   |
//! | `{p}:wh:{h}:age`    | zset | score = created ms (the oldest pending entry)             |
//! | `{p}:wh:{h}:stats`  | hash | `delivered`, `failed`, `dead`, `skipped` counters         |
//!
//! Entries are written by `outbox(...)` ([`lua_outbox!`]) inside the insert scripts, so a
//! marker and its entries are one atomic script. Times come from the server's `TIME`, so every
//! node leases and schedules on one clock. Milliseconds since 1970 fit a Lua number exactly.
//!
//! **On a Redis Cluster** a script runs in one slot, the stream's, so a stream's entries and
//! counters live in its own slot: `{p:s}:wh:{h}:e|due|age|stats` (same shapes). Registrations
//! stay in `{p}:wh:hooks|urls`; the store reads them (`HGETALL`) before each insert script and
//! passes them with the channel argument ([`LUA_OUTBOX_CLUSTER`]), so an insert still writes its
//! entries in its own atomic script. Claims walk the streams of `{p}:streams` (oldest due first
//! within a stream, streams in turn); stats add the streams up.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::{Script, Value};
use uuid::Uuid;

use super::{RedisStore, bulk_strings};
use crate::outbox::{
    Finish, HookRegistration, Outbox, OutboxEntry, OutboxStats, check_hook_id, ms,
};
use crate::{Result, StoreError, StreamName};

/// Lua prelude of the insert scripts: `outbox(ver_key, stream, id)` adds an entry for every
/// live registration that wants the stream (the registrations are read once per script call).
/// 604800000 ms = [`crate::outbox::REGISTRATION_TTL`].
macro_rules! lua_outbox {
    () => {
        r#"
local wh_hooks, wh_now
local function outbox(k, s, id)
  local p = '{' .. string.match(k, '^{([^:]+):') .. '}'
  if wh_hooks == nil then
    wh_hooks = redis.call('HGETALL', p .. ':wh:hooks')
    if #wh_hooks > 0 then
      local t = redis.call('TIME')
      wh_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
  end
  for i = 1, #wh_hooks, 2 do
    local seen, f = string.match(wh_hooks[i + 1], '^(%d+)|(.*)$')
    if seen and wh_now - tonumber(seen) <= 604800000
      and (f == '*' or string.find(f, ',' .. s .. ',', 1, true)) then
      local h = p .. ':wh:' .. wh_hooks[i]
      local m = s .. '/' .. id
      local now = string.format('%d', wh_now)
      if redis.call('HSETNX', h .. ':e', m, now .. ' 0') == 1 then
        redis.call('ZADD', h .. ':due', now, m)
        redis.call('ZADD', h .. ':age', now, m)
      end
    end
  end
end
"#
    };
}

/// The cluster variant of [`lua_outbox!`]: `ARGV[2]` is `channel`, a newline, then one
/// `id=seen|filter` line per registration (read by the store just before the script), and the
/// entries go under the stream's own hash tag (`{p:s}` of the version key), never the prefix's.
pub(super) const LUA_OUTBOX_CLUSTER: &str = r#"
local wh_channel, wh_list = string.match(ARGV[2], '^([^\n]*)\n?(.*)$')
local wh_now
local function outbox(k, s, id)
  local p = string.match(k, '^({[^}]+})')
  for h, seen, f in string.gmatch(wh_list, '([0-9a-z]+)=(%d+)|([^\n]*)') do
    if wh_now == nil then
      local t = redis.call('TIME')
      wh_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    if wh_now - tonumber(seen) <= 604800000
      and (f == '*' or string.find(f, ',' .. s .. ',', 1, true)) then
      local hk = p .. ':wh:' .. h
      local m = s .. '/' .. id
      local now = string.format('%d', wh_now)
      if redis.call('HSETNX', hk .. ':e', m, now .. ' 0') == 1 then
        redis.call('ZADD', hk .. ':due', now, m)
        redis.call('ZADD', hk .. ':age', now, m)
      end
    end
  end
end
"#;

/// Cluster stats of one stream's slot: `KEYS[1]` any key of the slot (routing), `ARGV[1]` the
/// slot's `{p:s}`, then hook ids. Returns 6 strings per hook: due count, the 4 counters, oldest.
const STREAM_STATS: &str = r"
local out = {}
for i = 2, #ARGV do
  local b = ARGV[1] .. ':wh:' .. ARGV[i]
  local st = redis.call('HMGET', b .. ':stats', 'delivered', 'failed', 'dead', 'skipped')
  local oldest = redis.call('ZRANGE', b .. ':age', 0, 0, 'WITHSCORES')
  out[#out + 1] = tostring(redis.call('ZCARD', b .. ':due'))
  for j = 1, 4 do out[#out + 1] = st[j] or '0' end
  out[#out + 1] = oldest[2] or ''
end
return out
";

const NOW: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

const REGISTER: &str = r"
-- KEYS: hooks urls; ARGV: id filter url
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', now_ms()) .. '|' .. ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
";

const CLAIM: &str = r"
-- KEYS: e due; ARGV: limit lease_ms. Returns member, created, attempt triples.
local now = now_ms()
local lease = string.format('%d', now + tonumber(ARGV[2]))
local picked = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, m in ipairs(picked) do
  local v = redis.call('HGET', KEYS[1], m)
  if v then
    local created, attempts = string.match(v, '^(%d+) (%d+)$')
    local attempt = string.format('%d', tonumber(attempts) + 1)
    redis.call('HSET', KEYS[1], m, created .. ' ' .. attempt)
    redis.call('ZADD', KEYS[2], lease, m)
    out[#out + 1] = m
    out[#out + 1] = created
    out[#out + 1] = attempt
  else
    redis.call('ZREM', KEYS[2], m)
  end
end
return out
";

const FINISH: &str = r"
-- KEYS: e due age stats; ARGV: member counter...
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
for i = 2, #ARGV do redis.call('HINCRBY', KEYS[4], ARGV[i], 1) end
return 1
";

const RETRY: &str = r"
-- KEYS: e due stats; ARGV: member after_ms
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], string.format('%d', now_ms() + tonumber(ARGV[2])), ARGV[1])
redis.call('HINCRBY', KEYS[3], 'failed', 1)
return 1
";

const STATS: &str = r"
-- KEYS: hooks urls; ARGV: prefix. Returns now, then 8 strings per hook.
local out = {string.format('%d', now_ms())}
for _, h in ipairs(redis.call('HKEYS', KEYS[1])) do
  local b = ARGV[1] .. ':wh:' .. h
  local st = redis.call('HMGET', b .. ':stats', 'delivered', 'failed', 'dead', 'skipped')
  local oldest = redis.call('ZRANGE', b .. ':age', 0, 0, 'WITHSCORES')
  out[#out + 1] = h
  out[#out + 1] = redis.call('HGET', KEYS[2], h) or ''
  out[#out + 1] = tostring(redis.call('ZCARD', b .. ':due'))
  for i = 1, 4 do out[#out + 1] = st[i] or '0' end
  out[#out + 1] = oldest[2] or ''
end
return out
";

struct Scripts {
    register: Script,
    claim: Script,
    finish: Script,
    retry: Script,
    stats: Script,
    stream_stats: Script,
}

fn scripts() -> &'static Scripts {
    static S: OnceLock<Scripts> = OnceLock::new();
    S.get_or_init(|| {
        let s = |body: &str| Script::new(&format!("{NOW}{body}"));
        Scripts {
            register: s(REGISTER),
            claim: s(CLAIM),
            finish: s(FINISH),
            retry: s(RETRY),
            stats: s(STATS),
            stream_stats: Script::new(STREAM_STATS),
        }
    })
}

fn member(e: &OutboxEntry) -> String {
    format!("{}/{}", e.stream, e.marker.simple())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn number(what: &str, b: &[u8]) -> Result<u64> {
    let s = text(b);
    // Counters are integers; a score may come back as "1764670000000" or "1.76467e+12".
    s.parse::<u64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(whole))
        .ok_or_else(|| StoreError::Backend(format!("redis: {what} is not a number: {s:?}")))
}

/// A score Redis printed in exponent form, as the integer it holds (ms since 1970 are exact).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(f: f64) -> Option<u64> {
    (f.is_finite() && (0.0..9.0e15).contains(&f)).then(|| f.round() as u64)
}

impl RedisStore {
    /// The key of a hook's entries, leases, ages or counters: in the prefix's slot on one
    /// server, in the stream's on a cluster.
    fn hook_key(&self, stream: &StreamName, hook: &str, suffix: &str) -> String {
        if self.cluster {
            format!("{{{}:{stream}}}:wh:{hook}:{suffix}", self.prefix)
        } else {
            format!("{{{}}}:wh:{hook}:{suffix}", self.prefix)
        }
    }

    /// The insert scripts' channel argument: the marker channel, and on a cluster a newline and
    /// every registration (`id=seen|filter` lines, [`LUA_OUTBOX_CLUSTER`]): the script runs in
    /// the stream's slot and cannot read `{p}:wh:hooks` itself.
    pub(super) async fn channel_arg(&self) -> Result<String> {
        let mut arg = format!("{}:markers", self.prefix);
        if !self.cluster {
            return Ok(arg);
        }
        let mut conn = self.conn.clone();
        let hooks: Vec<(String, String)> = self
            .bounded(
                redis::cmd("HGETALL")
                    .arg(format!("{{{}}}:wh:hooks", self.prefix))
                    .query_async(&mut conn),
            )
            .await?;
        arg.push('\n');
        for (id, value) in hooks {
            arg.push_str(&id);
            arg.push('=');
            arg.push_str(&value);
            arg.push('\n');
        }
        Ok(arg)
    }

    /// The streams whose slots may hold outbox entries (a cluster), sorted.
    async fn outbox_streams(&self) -> Result<Vec<StreamName>> {
        crate::Store::streams(self).await
    }

    /// Claims of one stream's entries of `hook` (the CLAIM script on its keys).
    async fn claim_in(
        &self,
        stream: Option<&StreamName>,
        hook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        let key = |suffix: &str| match stream {
            Some(s) => self.hook_key(s, hook, suffix),
            None => format!("{{{}}}:wh:{hook}:{suffix}", self.prefix),
        };
        let mut conn = self.conn.clone();
        let v: Value = self
            .bounded(
                scripts()
                    .claim
                    .key(key("e"))
                    .key(key("due"))
                    .arg(limit.max(1))
                    .arg(ms(lease))
                    .invoke_async(&mut conn),
            )
            .await?;
        let items = bulk_strings("outbox claim", v)?;
        let mut out = Vec::with_capacity(items.len() / 3);
        for t in items.chunks_exact(3) {
            let m = text(&t[0]);
            let bad = || StoreError::Corrupt {
                key: format!("{}/{m}", key("e")),
                why: "not {stream}/{id}".into(),
            };
            let (s, id) = m.split_once('/').ok_or_else(bad)?;
            out.push(OutboxEntry {
                hook: hook.to_owned(),
                stream: StreamName::new(s)?,
                marker: Uuid::try_parse(id).map_err(|_| bad())?,
                created_ms: number("created", &t[1])?,
                attempt: u32::try_from(number("attempt", &t[2])?).unwrap_or(u32::MAX),
            });
        }
        Ok(out)
    }

    /// Cluster stats: registrations and URLs from the prefix's slot, then each stream's
    /// counters, pending and oldest entry from its own slot, added up.
    async fn cluster_stats(&self) -> Result<Vec<OutboxStats>> {
        let mut conn = self.conn.clone();
        let urls: Vec<(String, String)> = self
            .bounded(
                redis::cmd("HGETALL")
                    .arg(format!("{{{}}}:wh:urls", self.prefix))
                    .query_async(&mut conn),
            )
            .await?;
        let hooks: Vec<String> = self
            .bounded(
                redis::cmd("HKEYS")
                    .arg(format!("{{{}}}:wh:hooks", self.prefix))
                    .query_async(&mut conn),
            )
            .await?;
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let (secs, micros): (u64, u64) = self
            .bounded(redis::cmd("TIME").query_async(&mut conn))
            .await?;
        let now_ms = secs * 1000 + micros / 1000;
        let mut out: Vec<OutboxStats> = hooks
            .iter()
            .map(|h| OutboxStats {
                hook: h.clone(),
                url_masked: urls
                    .iter()
                    .find(|(id, _)| id == h)
                    .map(|(_, u)| u.clone())
                    .unwrap_or_default(),
                now_ms,
                ..OutboxStats::default()
            })
            .collect();
        for stream in self.outbox_streams().await? {
            let tag = format!("{{{}:{stream}}}", self.prefix);
            let v: Value = self
                .bounded(
                    scripts()
                        .stream_stats
                        .key(format!("{tag}:wh"))
                        .arg(&tag)
                        .arg(&hooks)
                        .invoke_async(&mut conn),
                )
                .await?;
            let items = bulk_strings("outbox stats", v)?;
            for (st, r) in out.iter_mut().zip(items.chunks_exact(6)) {
                st.pending += number("pending", &r[0])?;
                st.delivered += number("delivered", &r[1])?;
                st.failed_attempts += number("failed", &r[2])?;
                st.dead += number("dead", &r[3])?;
                st.skipped += number("skipped", &r[4])?;
                if !r[5].is_empty() {
                    let oldest = number("oldest", &r[5])?;
                    st.oldest_pending_ms =
                        Some(st.oldest_pending_ms.map_or(oldest, |o| o.min(oldest)));
                }
            }
        }
        out.sort_by(|a, b| a.hook.cmp(&b.hook));
        Ok(out)
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn register_webhook(&self, reg: &HookRegistration) -> Result<()> {
        check_hook_id(&reg.id)?;
        let filter = match &reg.streams {
            None => "*".to_owned(),
            Some(list) => {
                let mut f = String::from(",");
                for s in list {
                    f.push_str(s.as_str());
                    f.push(',');
                }
                f
            }
        };
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                scripts()
                    .register
                    .key(format!("{{{}}}:wh:hooks", self.prefix))
                    .key(format!("{{{}}}:wh:urls", self.prefix))
                    .arg(&reg.id)
                    .arg(filter)
                    .arg(&reg.url_masked)
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        hook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        check_hook_id(hook)?;
        if !self.cluster {
            return self.claim_in(None, hook, limit, lease).await;
        }
        // Each stream's entries are in its own slot: claim stream by stream, starting at a
        // different one each time so a busy stream does not starve the others.
        let streams = self.outbox_streams().await?;
        let start = usize::try_from(crate::outbox::now_ms() / 1000).unwrap_or(0);
        let mut out = Vec::new();
        for i in 0..streams.len() {
            let left = limit.max(1) - out.len();
            if left == 0 {
                break;
            }
            let stream = &streams[(start + i) % streams.len()];
            out.extend(self.claim_in(Some(stream), hook, left, lease).await?);
        }
        Ok(out)
    }

    async fn finish(&self, entry: &OutboxEntry, how: Finish) -> Result<()> {
        let h = &entry.hook;
        let mut conn = self.conn.clone();
        let mut call = scripts().finish.prepare_invoke();
        let s = &entry.stream;
        call.key(self.hook_key(s, h, "e"))
            .key(self.hook_key(s, h, "due"))
            .key(self.hook_key(s, h, "age"))
            .key(self.hook_key(s, h, "stats"))
            .arg(member(entry));
        match how {
            Finish::Delivered => call.arg("delivered"),
            Finish::Skipped => call.arg("skipped"),
            Finish::Dead => call.arg("failed").arg("dead"),
        };
        let _: i64 = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn retry_later(&self, entry: &OutboxEntry, after: Duration) -> Result<()> {
        let h = &entry.hook;
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                scripts()
                    .retry
                    .key(self.hook_key(&entry.stream, h, "e"))
                    .key(self.hook_key(&entry.stream, h, "due"))
                    .key(self.hook_key(&entry.stream, h, "stats"))
                    .arg(member(entry))
                    .arg(ms(after))
                    .invoke_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<Vec<OutboxStats>> {
        if self.cluster {
            return self.cluster_stats().await;
        }
        let mut conn = self.conn.clone();
        let v: Value = self
            .bounded(
                scripts()
                    .stats
                    .key(format!("{{{}}}:wh:hooks", self.prefix))
                    .key(format!("{{{}}}:wh:urls", self.prefix))
                    .arg(format!("{{{}}}", self.prefix))
                    .invoke_async(&mut conn),
            )
            .await?;
        let items = bulk_strings("outbox stats", v)?;
        let Some((now, rest)) = items.split_first() else {
            return Ok(Vec::new());
        };
        let now_ms = number("time", now)?;
        let mut out = Vec::new();
        for r in rest.chunks_exact(8) {
            out.push(OutboxStats {
                hook: text(&r[0]),
                url_masked: text(&r[1]),
                pending: number("pending", &r[2])?,
                delivered: number("delivered", &r[3])?,
                failed_attempts: number("failed", &r[4])?,
                dead: number("dead", &r[5])?,
                skipped: number("skipped", &r[6])?,
                oldest_pending_ms: if r[7].is_empty() {
                    None
                } else {
                    Some(number("oldest", &r[7])?)
                },
                now_ms,
            });
        }
        out.sort_by(|a, b| a.hook.cmp(&b.hook));
        Ok(out)
    }
}
