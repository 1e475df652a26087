//! The shared Redis backend: docker compose, several API replicas, separate generate/serve processes.
//!
//! Keys (all under `{prefix}:`, then per stream; `{hls}` is the 90 kHz tick count as 16 hex digits
//! with the sign bit flipped, so byte order is numeric order; `{id}` is the uuid as 32 hex digits;
//! `{seq}` is the sequence number as 16 hex digits):
//!
//! | key                        | type | content                                        |
//! |----------------------------|------|------------------------------------------------|
//! | `{p}:streams`              | set  | names of streams with an epoch, segment or marker |
//! | `{p}:{s}:ver`              | int  | version, `INCR` on every change (starts at server time in µs) |
//! | `{p}:{s}:m:idx`            | zset | all scores 0, members `{hls}:{id}` (lex order = (hls, id)) |
//! | `{p}:{s}:m:body`           | hash | `{id}` -> marker JSON                          |
//! | `{p}:{s}:m:pos`            | hash | `{id}` -> its `m:idx` member (for delete)      |
//! | `{p}:{s}:seg`              | hash | `{seq}` -> segment JSON                        |
//! | `{p}:{s}:seg:seq`          | zset | all scores 0, members `{seq}`                  |
//! | `{p}:{s}:seg:hls`          | zset | all scores 0, members `{hls}:{seq}`            |
//! | `{p}:{s}:seg:pos`          | hash | `{seq}` -> its `seg:hls` member                |
//! | `{p}:{s}:epochs`           | hash | epoch index -> epoch JSON                      |
//! | channel `{p}:markers`      |      | every newly inserted marker as JSON            |
//!
//! A range query is one Lua script (one round trip): `ZRANGEBYLEX ... LIMIT` (O(log n + k)) and an
//! `HMGET` of the k bodies. Scores are not used for time because a double holds only 53 bits and
//! marker times may use 55. Every write is one Lua script, so a marker, its index entries, the
//! version bump and the live-feed `PUBLISH` happen atomically; an insert of an existing id returns
//! the stored body and the comparison (ignoring `created_at`) happens here.
//!
//! Failure behaviour: one [`ConnectionManager`] (multiplexed, reconnects by itself) with short
//! connection and response timeouts and few retries, and every call bounded by [`CALL_TIMEOUT`]:
//! a lost server gives `Unavailable` (refused, dropped) or `Timeout` well within a second, and the
//! next calls after the server is back succeed without any action of the caller. The live feed is a
//! separate pub/sub connection owned by a background task that resubscribes after a pause whenever
//! the connection ends; markers published while it was down are not replayed (re-query the range).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use hlsmark_clock::{Epoch, HlsTime, Segment, SeqNo};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Client, IntoConnectionInfo, RedisError, Script, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{
    InsertOutcome, Marker, MarkerFeed, Page, RangeQuery, Result, RetentionReport, Store,
    StoreError, StreamName,
};

/// Upper bound of every store call, whatever the network does.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(800);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(600);
/// Pause between attempts of the live-feed task to resubscribe.
const FEED_RETRY: Duration = Duration::from_millis(200);
/// How often the live-feed task pings its pub/sub connection.
const FEED_KEEPALIVE: Duration = Duration::from_secs(5);
const FEED_CAPACITY: usize = 4096;
/// Markers per script call in [`Store::insert_markers`] and per retention batch: small enough that
/// one call never holds the (single-threaded) server for long, even on a loaded machine.
const BATCH: usize = 250;

/// Lua prelude of every writing script: `bump(key)` increments a stream's version. A missing
/// version starts at the server's clock in microseconds, so after Redis lost its data (no
/// persistence, flushed) versions still move forward and never repeat one a cache holds.
macro_rules! lua_bump {
    () => {
        r"
local function bump(k)
  if redis.call('EXISTS', k) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', k, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  return redis.call('INCR', k)
end
"
    };
}

const INSERT: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: idx body pos ver streams; ARGV: stream channel (id member json)...
local out = {}
local added = 0
for i = 3, #ARGV, 3 do
  local id, member, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', KEYS[2], id)
  if old then
    out[#out + 1] = old
  else
    redis.call('ZADD', KEYS[1], 0, member)
    redis.call('HSET', KEYS[2], id, json)
    redis.call('HSET', KEYS[3], id, member)
    redis.call('PUBLISH', ARGV[2], json)
    added = added + 1
    out[#out + 1] = 1
  end
end
if added > 0 then
  bump(KEYS[4])
  redis.call('SADD', KEYS[5], ARGV[1])
end
return out
"
);

const DELETE: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: idx body pos ver; ARGV: id
local m = redis.call('HGET', KEYS[3], ARGV[1])
if not m then return 0 end
redis.call('ZREM', KEYS[1], m)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
bump(KEYS[4])
return 1
"
);

const QUERY: &str = r"
-- KEYS: idx body streams; ARGV: min max count stream. Nil = unknown stream.
local ms = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
if #ms == 0 then
  if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 0 then return false end
  return {}
end
local ids = {}
for i, m in ipairs(ms) do ids[i] = string.sub(m, 18) end
return redis.call('HMGET', KEYS[2], unpack(ids))
";

const COUNT: &str = r"
-- KEYS: idx streams; ARGV: stream. -1 = unknown stream.
local n = redis.call('ZCARD', KEYS[1])
if n == 0 and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return -1 end
return n
";

const APPEND_SEGMENT: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: seg segseq seghls segpos ver streams; ARGV: seq json hlsmember stream
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
if old then
  local oldm = redis.call('HGET', KEYS[4], ARGV[1])
  if oldm then redis.call('ZREM', KEYS[3], oldm) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
bump(KEYS[5])
redis.call('SADD', KEYS[6], ARGV[4])
return 1
"
);

const LAST_SEGMENTS: &str = r"
-- KEYS: segseq seg; ARGV: n
local ss = redis.call('ZRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #ss == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ss))
";

const SEGMENTS_IN_RANGE: &str = r"
-- KEYS: seghls seg; ARGV: before-from, from, to, limit
local seqs = {}
local prev = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[1], '-', 'LIMIT', 0, 1)
if #prev == 1 then seqs[1] = string.sub(prev[1], 18) end
local rest = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
for _, m in ipairs(rest) do seqs[#seqs + 1] = string.sub(m, 18) end
if #seqs == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(seqs))
";

const PUT_EPOCH: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: epochs ver streams; ARGV: index json stream
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"
);

const DROP_SEGMENTS: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: seg segseq seghls segpos ver; ARGV: seq...
for _, s in ipairs(ARGV) do
  local m = redis.call('HGET', KEYS[4], s)
  if m then redis.call('ZREM', KEYS[3], m) end
  redis.call('HDEL', KEYS[1], s)
  redis.call('HDEL', KEYS[4], s)
  redis.call('ZREM', KEYS[2], s)
end
if #ARGV > 0 then bump(KEYS[5]) end
return #ARGV
"
);

const DROP_MARKERS: &str = concat!(
    lua_bump!(),
    r"
-- KEYS: idx body pos ver; ARGV: max batch
local ms = redis.call('ZRANGEBYLEX', KEYS[1], '-', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(ms) do
  local id = string.sub(m, 18)
  redis.call('ZREM', KEYS[1], m)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
if #ms > 0 then bump(KEYS[4]) end
return #ms
"
);

/// Ticks as 16 hex digits whose byte order is numeric order (sign bit flipped).
fn hex_ticks(ticks: i64) -> String {
    format!("{:016x}", ticks.cast_unsigned() ^ (1 << 63))
}

fn hex_seq(seq: SeqNo) -> String {
    format!("{seq:016x}")
}

fn marker_member(hls: HlsTime, id: Uuid) -> String {
    format!("{}:{}", hex_ticks(hls.ticks()), id.simple())
}

fn map_err(e: RedisError) -> StoreError {
    let busy = matches!(
        e.code(),
        Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
    );
    if e.is_timeout() {
        StoreError::Timeout(u64::try_from(RESPONSE_TIMEOUT.as_millis()).unwrap_or(u64::MAX))
    } else if busy
        || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
    {
        StoreError::Unavailable(format!("redis: {e}"))
    } else {
        StoreError::Backend(format!("redis: {e}"))
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], key: impl FnOnce() -> String) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key(),
        why: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

fn unexpected(what: &str, v: &Value) -> StoreError {
    StoreError::Backend(format!("redis: unexpected reply to {what}: {v:?}"))
}

/// The bulk strings of an array reply; `Nil` entries (a missing hash field) are skipped.
fn bulk_strings(what: &str, v: Value) -> Result<Vec<Vec<u8>>> {
    match v {
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|i| match i {
                Value::BulkString(b) => Some(b),
                _ => None,
            })
            .collect()),
        other => Err(unexpected(what, &other)),
    }
}

struct Scripts {
    insert: Script,
    delete: Script,
    query: Script,
    count: Script,
    append_segment: Script,
    last_segments: Script,
    segments_in_range: Script,
    put_epoch: Script,
    drop_segments: Script,
    drop_markers: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            insert: Script::new(INSERT),
            delete: Script::new(DELETE),
            query: Script::new(QUERY),
            count: Script::new(COUNT),
            append_segment: Script::new(APPEND_SEGMENT),
            last_segments: Script::new(LAST_SEGMENTS),
            segments_in_range: Script::new(SEGMENTS_IN_RANGE),
            put_epoch: Script::new(PUT_EPOCH),
            drop_segments: Script::new(DROP_SEGMENTS),
            drop_markers: Script::new(DROP_MARKERS),
        }
    }
}

/// Per-stream key names.
struct Keys {
    ver: String,
    idx: String,
    body: String,
    pos: String,
    seg: String,
    seg_seq: String,
    seg_hls: String,
    seg_pos: String,
    epochs: String,
}

/// The Redis-backed [`Store`].
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    scripts: Scripts,
    feed: broadcast::Sender<Marker>,
    feed_ready: watch::Sender<bool>,
    feed_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.client.get_connection_info().addr())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        if let Ok(mut t) = self.feed_task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
    }
}

async fn bounded<T>(fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_err),
        Err(_) => Err(StoreError::Timeout(
            u64::try_from(CALL_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        )),
    }
}

impl RedisStore {
    /// Connects (within about a second, or `Unavailable`) with every key under `{prefix}:`.
    /// `prefix` is 1-64 characters of `[A-Za-z0-9_.-]`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !prefix_ok {
            return Err(StoreError::Backend(format!(
                "invalid key prefix {prefix:?}: use 1-64 of A-Z, a-z, 0-9, '_', '.' and '-'"
            )));
        }
        let bad_url = |e: RedisError| StoreError::Unavailable(format!("invalid redis url: {e}"));
        // TCP_NODELAY: requests are small and latency-bound (Nagle plus delayed ACKs would add
        // tens of milliseconds to pipelined calls). TCP_USER_TIMEOUT: a peer that vanished without
        // a reset is given up on within seconds, which ends the live-feed subscription too.
        let tcp = TcpSettings::default().set_nodelay(true);
        #[cfg(target_os = "linux")]
        let tcp = tcp.set_user_timeout(Duration::from_secs(5));
        let info = url
            .into_connection_info()
            .map_err(bad_url)?
            .set_tcp_settings(tcp);
        let client = Client::open(info).map_err(bad_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = match tokio::time::timeout(
            CALL_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot connect to redis: {e}"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(
                    "cannot connect to redis: timed out".into(),
                ));
            }
        };
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            scripts: Scripts::new(),
            feed: broadcast::channel(FEED_CAPACITY).0,
            feed_ready: watch::channel(false).0,
            feed_task: Mutex::new(None),
        })
    }

    fn keys(&self, s: &StreamName) -> Keys {
        let k = |suffix: &str| format!("{}:{}:{suffix}", self.prefix, s);
        Keys {
            ver: k("ver"),
            idx: k("m:idx"),
            body: k("m:body"),
            pos: k("m:pos"),
            seg: k("seg"),
            seg_seq: k("seg:seq"),
            seg_hls: k("seg:hls"),
            seg_pos: k("seg:pos"),
            epochs: k("epochs"),
        }
    }

    fn streams_key(&self) -> String {
        format!("{}:streams", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:markers", self.prefix)
    }

    /// Inserts markers of one stream in one script call.
    async fn insert_batch(
        &self,
        stream: &StreamName,
        batch: &[Marker],
    ) -> Result<Vec<InsertOutcome>> {
        let k = self.keys(stream);
        let mut inv = self.scripts.insert.prepare_invoke();
        inv.key(&k.idx)
            .key(&k.body)
            .key(&k.pos)
            .key(&k.ver)
            .key(self.streams_key())
            .arg(stream.as_str())
            .arg(self.channel());
        for m in batch {
            inv.arg(m.id.simple().to_string())
                .arg(marker_member(m.hls, m.id))
                .arg(encode(m)?);
        }
        let mut conn = self.conn.clone();
        let reply: Value = bounded(inv.invoke_async(&mut conn)).await?;
        let Value::Array(items) = reply else {
            return Err(unexpected("insert", &reply));
        };
        if items.len() != batch.len() {
            return Err(unexpected("insert", &Value::Array(items)));
        }
        let mut out = Vec::with_capacity(batch.len());
        for (m, item) in batch.iter().zip(items) {
            match item {
                Value::Int(1) => out.push(InsertOutcome::Inserted),
                Value::BulkString(old) => {
                    let old: Marker = decode(&old, || format!("{}[{}]", k.body, m.id.simple()))?;
                    if old.same_content(m) {
                        out.push(InsertOutcome::AlreadyExists);
                    } else {
                        return Err(StoreError::Conflict(m.id));
                    }
                }
                other => return Err(unexpected("insert", &other)),
            }
        }
        Ok(out)
    }

    fn ensure_feed_task(&self) -> Result<()> {
        let mut task = self
            .feed_task
            .lock()
            .map_err(|_| StoreError::Backend("feed task lock poisoned".into()))?;
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let client = self.client.clone();
        let channel = self.channel();
        let tx = self.feed.clone();
        let ready = self.feed_ready.clone();
        *task = Some(tokio::spawn(feed_loop(client, channel, tx, ready)));
        Ok(())
    }
}

/// Owns the pub/sub connection: subscribes, forwards, and after any loss waits and resubscribes.
async fn feed_loop(
    client: Client,
    channel: String,
    tx: broadcast::Sender<Marker>,
    ready: watch::Sender<bool>,
) {
    loop {
        let connect = async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, RedisError>(ps)
        };
        match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Ok(Ok(ps)) => {
                ready.send_replace(true);
                let (mut sink, mut messages) = ps.split();
                // A server that vanished without closing the socket (network cut) sends nothing:
                // a periodic PING notices within FEED_KEEPALIVE + CALL_TIMEOUT.
                let mut keepalive = tokio::time::interval(FEED_KEEPALIVE);
                keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        msg = messages.next() => {
                            let Some(msg) = msg else { break };
                            match serde_json::from_slice::<Marker>(msg.get_payload_bytes()) {
                                Ok(m) => {
                                    // No receiver right now is fine.
                                    let _ = tx.send(m);
                                }
                                Err(e) => {
                                    tracing::warn!(%channel, "ignoring a malformed live marker: {e}");
                                }
                            }
                        }
                        _ = keepalive.tick() => {
                            let ping = tokio::time::timeout(CALL_TIMEOUT, sink.ping::<Value>()).await;
                            if !matches!(ping, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                ready.send_replace(false);
                tracing::warn!(%channel, "live marker feed lost; resubscribing");
            }
            Ok(Err(e)) => tracing::debug!(%channel, "live marker feed: {e}"),
            Err(_) => tracing::debug!(%channel, "live marker feed: connect timed out"),
        }
        tokio::time::sleep(FEED_RETRY).await;
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn insert_marker(&self, marker: &Marker) -> Result<InsertOutcome> {
        marker.validate()?;
        let out = self
            .insert_batch(&marker.stream, std::slice::from_ref(marker))
            .await?;
        out.first()
            .copied()
            .ok_or_else(|| StoreError::Backend("redis: empty insert reply".into()))
    }

    async fn insert_markers(&self, markers: &[Marker]) -> Result<Vec<InsertOutcome>> {
        for m in markers {
            m.validate()?;
        }
        let mut out = Vec::with_capacity(markers.len());
        // Consecutive runs of one stream, at most BATCH per script call.
        let mut rest = markers;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take(BATCH)
                .take_while(|m| m.stream == first.stream)
                .count();
            let (batch, tail) = rest.split_at(run);
            out.extend(self.insert_batch(&first.stream, batch).await?);
            rest = tail;
        }
        Ok(out)
    }

    async fn get_marker(&self, stream: &StreamName, id: Uuid) -> Result<Option<Marker>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let body: Option<Vec<u8>> = bounded(
            redis::cmd("HGET")
                .arg(&k.body)
                .arg(id.simple().to_string())
                .query_async(&mut conn),
        )
        .await?;
        body.map(|b| decode(&b, || format!("{}[{}]", k.body, id.simple())))
            .transpose()
    }

    async fn delete_marker(&self, stream: &StreamName, id: Uuid) -> Result<bool> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let n: i64 = bounded(
            self.scripts
                .delete
                .key(&k.idx)
                .key(&k.body)
                .key(&k.pos)
                .key(&k.ver)
                .arg(id.simple().to_string())
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(n == 1)
    }

    async fn query_markers(&self, q: &RangeQuery) -> Result<Page> {
        if let Some(c) = q.after
            && (c.hls < q.from || c.hls >= q.to)
        {
            return Err(StoreError::InvalidCursor(c.to_string()));
        }
        let k = self.keys(&q.stream);
        let min = match q.after {
            Some(c) => format!("({}", marker_member(c.hls, c.id)),
            None => format!("[{}", hex_ticks(q.from.ticks())),
        };
        let max = format!("({}", hex_ticks(q.to.ticks()));
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            self.scripts
                .query
                .key(&k.idx)
                .key(&k.body)
                .key(self.streams_key())
                .arg(min)
                .arg(max)
                .arg(limit + 1)
                .arg(q.stream.as_str())
                .invoke_async(&mut conn),
        )
        .await?;
        if reply == Value::Nil {
            return Err(StoreError::UnknownStream(q.stream.to_string()));
        }
        let bodies = bulk_strings("query", reply)?;
        let more = bodies.len() > limit;
        let mut markers = Vec::with_capacity(bodies.len().min(limit));
        for b in bodies.iter().take(limit) {
            markers.push(decode::<Marker>(b, || k.body.clone())?);
        }
        let next = if more {
            markers.last().map(Marker::cursor)
        } else {
            None
        };
        Ok(Page { markers, next })
    }

    async fn count_markers(&self, stream: &StreamName) -> Result<u64> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let n: i64 = bounded(
            self.scripts
                .count
                .key(&k.idx)
                .key(self.streams_key())
                .arg(stream.as_str())
                .invoke_async(&mut conn),
        )
        .await?;
        u64::try_from(n).map_err(|_| StoreError::UnknownStream(stream.to_string()))
    }

    async fn subscribe_markers(&self) -> Result<MarkerFeed> {
        self.ensure_feed_task()?;
        // Subscribe to the broadcast first so nothing forwarded after the wait is missed.
        let rx = self.feed.subscribe();
        let mut ready = self.feed_ready.subscribe();
        match tokio::time::timeout(CALL_TIMEOUT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(rx),
            Ok(Err(_)) => Err(StoreError::Backend("live feed task ended".into())),
            Err(_) => Err(StoreError::Unavailable(
                "cannot subscribe to the live marker feed (redis unreachable); retrying".into(),
            )),
        }
    }

    async fn append_segment(&self, stream: &StreamName, segment: &Segment) -> Result<()> {
        crate::embedded::check_segment(segment)?;
        let k = self.keys(stream);
        let seq = hex_seq(segment.seq);
        let member = format!("{}:{seq}", hex_ticks(segment.hls_start.ticks()));
        let mut conn = self.conn.clone();
        let _: i64 = bounded(
            self.scripts
                .append_segment
                .key(&k.seg)
                .key(&k.seg_seq)
                .key(&k.seg_hls)
                .key(&k.seg_pos)
                .key(&k.ver)
                .key(self.streams_key())
                .arg(&seq)
                .arg(encode(segment)?)
                .arg(member)
                .arg(stream.as_str())
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn last_segments(&self, stream: &StreamName, n: usize) -> Result<Vec<Segment>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            self.scripts
                .last_segments
                .key(&k.seg_seq)
                .key(&k.seg)
                .arg(n.min(1 << 40))
                .invoke_async(&mut conn),
        )
        .await?;
        bulk_strings("last_segments", reply)?
            .iter()
            .map(|b| decode(b, || k.seg.clone()))
            .collect()
    }

    async fn segments_in_range(
        &self,
        stream: &StreamName,
        from: HlsTime,
        to: HlsTime,
        limit: usize,
    ) -> Result<Vec<Segment>> {
        if from > to {
            return Err(StoreError::InvertedRange {
                from: from.ticks(),
                to: to.ticks(),
            });
        }
        if from == to || limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(stream);
        let f = hex_ticks(from.ticks());
        let mut conn = self.conn.clone();
        let reply: Value = bounded(
            self.scripts
                .segments_in_range
                .key(&k.seg_hls)
                .key(&k.seg)
                .arg(format!("({f}"))
                .arg(format!("[{f}"))
                .arg(format!("({}", hex_ticks(to.ticks())))
                .arg(limit.min(1 << 40))
                .invoke_async(&mut conn),
        )
        .await?;
        let mut out = Vec::new();
        for b in bulk_strings("segments_in_range", reply)? {
            let seg: Segment = decode(&b, || k.seg.clone())?;
            if seg.hls_end() > from && out.len() < limit {
                out.push(seg);
            }
        }
        Ok(out)
    }

    async fn get_segment(&self, stream: &StreamName, seq: SeqNo) -> Result<Option<Segment>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let body: Option<Vec<u8>> = bounded(
            redis::cmd("HGET")
                .arg(&k.seg)
                .arg(hex_seq(seq))
                .query_async(&mut conn),
        )
        .await?;
        body.map(|b| decode(&b, || format!("{}[{seq}]", k.seg)))
            .transpose()
    }

    async fn put_epoch(&self, stream: &StreamName, epoch: &Epoch) -> Result<()> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let _: i64 = bounded(
            self.scripts
                .put_epoch
                .key(&k.epochs)
                .key(&k.ver)
                .key(self.streams_key())
                .arg(epoch.index)
                .arg(encode(epoch)?)
                .arg(stream.as_str())
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }

    async fn epochs(&self, stream: &StreamName) -> Result<Vec<Epoch>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let all: Vec<(String, Vec<u8>)> =
            bounded(redis::cmd("HGETALL").arg(&k.epochs).query_async(&mut conn)).await?;
        let mut out = all
            .iter()
            .map(|(i, b)| decode::<Epoch>(b, || format!("{}[{i}]", k.epochs)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|e| e.index);
        Ok(out)
    }

    async fn streams(&self) -> Result<Vec<StreamName>> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = bounded(
            redis::cmd("SMEMBERS")
                .arg(self.streams_key())
                .query_async(&mut conn),
        )
        .await?;
        let mut out = names
            .iter()
            .map(|n| {
                StreamName::new(n).map_err(|e| StoreError::Corrupt {
                    key: self.streams_key(),
                    why: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    async fn version(&self, stream: &StreamName) -> Result<u64> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let v: Option<u64> = bounded(redis::cmd("GET").arg(&k.ver).query_async(&mut conn)).await?;
        Ok(v.unwrap_or(0))
    }

    async fn apply_retention(
        &self,
        stream: &StreamName,
        segments_before: HlsTime,
        markers_before: Option<HlsTime>,
    ) -> Result<RetentionReport> {
        let k = self.keys(stream);
        let mut report = RetentionReport::default();
        // Segments: read the oldest in batches, drop those that end in time, stop at a survivor.
        loop {
            let mut conn = self.conn.clone();
            let seqs: Vec<String> = bounded(
                redis::cmd("ZRANGE")
                    .arg(&k.seg_seq)
                    .arg(0)
                    .arg(BATCH - 1)
                    .query_async(&mut conn),
            )
            .await?;
            if seqs.is_empty() {
                break;
            }
            let bodies: Vec<Option<Vec<u8>>> = bounded(
                redis::cmd("HMGET")
                    .arg(&k.seg)
                    .arg(&seqs)
                    .query_async(&mut conn),
            )
            .await?;
            let mut doomed = Vec::new();
            let mut survivor = false;
            for (seq, body) in seqs.iter().zip(bodies) {
                let Some(body) = body else {
                    doomed.push(seq.clone());
                    continue;
                };
                let seg: Segment = decode(&body, || format!("{}[{seq}]", k.seg))?;
                if seg.hls_end() > segments_before {
                    survivor = true;
                    break;
                }
                doomed.push(seq.clone());
                report.segments.push(seg);
            }
            if !doomed.is_empty() {
                let _: i64 = bounded(
                    self.scripts
                        .drop_segments
                        .key(&k.seg)
                        .key(&k.seg_seq)
                        .key(&k.seg_hls)
                        .key(&k.seg_pos)
                        .key(&k.ver)
                        .arg(&doomed)
                        .invoke_async(&mut conn),
                )
                .await?;
            }
            if survivor || seqs.len() < BATCH {
                break;
            }
        }
        if let Some(before) = markers_before {
            let max = format!("({}", hex_ticks(before.ticks()));
            loop {
                let mut conn = self.conn.clone();
                let n: u64 = bounded(
                    self.scripts
                        .drop_markers
                        .key(&k.idx)
                        .key(&k.body)
                        .key(&k.pos)
                        .key(&k.ver)
                        .arg(&max)
                        .arg(BATCH)
                        .invoke_async(&mut conn),
                )
                .await?;
                report.markers += n;
                if n < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = bounded(redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The lex order of index members is the numeric order of ticks, negatives included.
        #[test]
        fn hex_ticks_sorts_like_the_numbers(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), hex_ticks(a).cmp(&hex_ticks(b)));
            prop_assert_eq!(hex_ticks(a).len(), 16);
        }

        /// Members order by (hls, id), exactly like `Cursor`.
        #[test]
        fn members_sort_like_cursors(a: i64, b: i64, x: u128, y: u128) {
            let (ma, mb) = (
                marker_member(HlsTime(a), Uuid::from_u128(x)),
                marker_member(HlsTime(b), Uuid::from_u128(y)),
            );
            prop_assert_eq!((a, x).cmp(&(b, y)), ma.cmp(&mb));
            // The id starts at byte 18 (1-based), where the Lua scripts cut it.
            prop_assert_eq!(&ma[17..], Uuid::from_u128(x).simple().to_string());
        }
    }
}
