//! The shared Redis backend: docker compose, several API replicas, separate generate/serve processes.
//!
//! Keys (`{hls}` is the 90 kHz tick count as 16 hex digits with the sign bit flipped, so byte
//! order is numeric order; `{id}` is the uuid as 32 hex digits; `{seq}` is the sequence number as
//! 16 hex digits). Hash tags: the braces of `{p:s}` (prefix, stream) and `{p}` are literal, so
//! every key of one stream is in one Redis Cluster slot and every key of no stream in another;
//! no script names keys of two slots (`design/store.md`, "Redis layout"):
//!
//! | key                        | type | content                                        |
//! |----------------------------|------|------------------------------------------------|
//! | `{p}:streams`              | set  | names of streams with an epoch, segment, marker or status (`SADD` after the script) |
//! | `{p:s}:known`              | string | `1`: the stream was written (unknown vs empty, in the stream's slot) |
//! | `{p:s}:ver`                | int  | version, `INCR` on every change (starts at server time in µs) |
//! | `{p:s}:m:idx`              | zset | all scores 0, members `{hls}:{id}` (lex order = (hls, id)) |
//! | `{p:s}:m:body`             | hash | `{id}` -> marker JSON                          |
//! | `{p:s}:m:pos`              | hash | `{id}` -> its `m:idx` member (for delete)      |
//! | `{p:s}:seg`                | hash | `{seq}` -> segment JSON                        |
//! | `{p:s}:seg:seq`            | zset | all scores 0, members `{seq}`                  |
//! | `{p:s}:seg:hls`            | zset | all scores 0, members `{hls}:{seq}`            |
//! | `{p:s}:seg:pos`            | hash | `{seq}` -> its `seg:hls` member                |
//! | `{p:s}:epochs`             | hash | epoch index -> epoch JSON                      |
//! | `{p:s}:status`             | string | the stream's status JSON (no version bump)   |
//! | `{p:s}:part`               | hash | `{seq}:{index}` -> part JSON (`{index}`: 8 hex digits) |
//! | `{p:s}:part:idx`           | zset | all scores 0, members `{seq}:{index}` (lex order = (seq, index)) |
//! | channel `p:markers`        |      | every newly inserted marker as JSON            |
//! | channel `p:updates`        |      | `{"stream","version"}` after every change (version bump or status) |
//!
//! Data of the layout before hash tags (`p:s:…`, `p:streams`, `p:wh:…`) is renamed once at
//! connect ([`MIGRATE`]).
//!
//! A range query is one Lua script (one round trip): `ZRANGEBYLEX ... LIMIT` (O(log n + k)) and an
//! `HMGET` of the k bodies. Scores are not used for time because a double holds only 53 bits and
//! marker times may use 55. Every write is one Lua script, so a marker, its index entries, the
//! version bump and the live-feed `PUBLISH`es (marker, update) happen atomically; an insert of an existing id returns
//! the stored body and the comparison (ignoring `created_at`) happens here.
//!
//! Failure behaviour: one [`ConnectionManager`] (multiplexed, reconnects by itself) with short
//! connection and response timeouts and few retries, and every call bounded by [`CALL_TIMEOUT`]:
//! a lost server gives `Unavailable` (refused, dropped) or `Timeout` well within a second, and the
//! next calls after the server is back succeed without any action of the caller. The live feed is a
//! separate pub/sub connection (both channels) owned by a background task that resubscribes after a
//! pause whenever the connection ends; markers published while it was down are not replayed
//! (re-query the range), and after a resubscription the task sends every stream's current
//! version on the update feed, so a waiter re-reads instead of waiting for an update it missed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use hlsmark_clock::{Epoch, HlsTime, Part, Segment, SeqNo};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::io::tcp::TcpSettings;
use redis::{Client, IntoConnectionInfo, RedisError, Script, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

#[path = "redis_outbox.rs"]
#[macro_use]
mod outbox;

#[path = "redis_lease.rs"]
#[macro_use]
mod lease;

use crate::model::check_batch;
use crate::redis_cluster::{Conn, REPLICA_WAIT, REPLICA_WAIT_MORE, Replication};
use crate::{
    Cursor, FILTER_SCAN_MAX, InsertOutcome, Marker, MarkerFeed, Page, RangeQuery, Result,
    RetentionReport, Store, StoreError, StreamName, StreamStatus, StreamUpdate, UpdateFeed,
};

/// Upper bound of every store call, whatever the network does.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(800);
/// How long [`RedisStore::connect_cluster`] may take: it asks a node for the slot map, then
/// connects to every master.
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
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
/// Bodies fetched per round trip by a filtered query at first; it grows fourfold per round trip
/// up to [`FILTER_CHUNK_MAX`] (a selective filter walks far, an unselective one stops early).
const FILTER_CHUNK_MIN: usize = 100;
const FILTER_CHUNK_MAX: usize = 1000;
/// Attempts of an all-or-nothing batch that keeps meeting concurrent writers of its ids.
const BATCH_ATTEMPTS: usize = 5;
/// How long a stream this store listed in `{p}:streams` is taken to still be there: writes send
/// the `SADD` again after this, so a set lost with Redis's data lists its streams again soon.
const LISTED_FOR: Duration = Duration::from_secs(5);

/// Lua prelude of every writing script: `bump(key)` increments a stream's version and
/// `notify(key)` publishes the stream's version on `p:updates` (`bump` does both). A missing
/// version starts at the server's clock in microseconds, so after Redis lost its data (no
/// persistence, flushed) versions still move forward and never repeat one a cache holds. Both take
/// the version key `{p:s}:ver` and read prefix and stream from it (neither contains a `:`); the
/// version goes out as the string Redis holds (a Lua number would print 1.7e+15).
macro_rules! lua_bump {
    () => {
        r#"
local function notify(k)
  local p, s = string.match(k, '^{([^:]+):([^:]+)}:ver$')
  local v = redis.call('GET', k) or '0'
  redis.call('PUBLISH', p .. ':updates', '{"stream":"' .. s .. '","version":' .. v .. '}')
end
local function bump(k)
  if redis.call('EXISTS', k) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', k, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  local v = redis.call('INCR', k)
  notify(k)
  return v
end
"#
    };
}

const INSERT: &str = concat!(
    lua_bump!(),
    lua_outbox!(),
    r"
-- KEYS: idx body pos ver known; ARGV: stream channel (id member json)...
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
    outbox(KEYS[4], ARGV[1], id)
    added = added + 1
    out[#out + 1] = 1
  end
end
if added > 0 then
  bump(KEYS[4])
  redis.call('SET', KEYS[5], '1')
end
return out
"
);

/// All or nothing: the caller has already compared the stored markers of the batch's ids (one
/// `HMGET`) and sends only the new ones. If any of them appeared since (a concurrent writer),
/// nothing is written and the 1-based position of the first such argument triple comes back
/// negated, so the caller compares again; otherwise every one is written, published once, and
/// the version moves once.
const INSERT_ALL: &str = concat!(
    lua_bump!(),
    lua_outbox!(),
    r"
-- KEYS: idx body pos ver known; ARGV: stream channel (id member json)...
for i = 3, #ARGV, 3 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return -((i - 3) / 3 + 1) end
end
for i = 3, #ARGV, 3 do
  local id, member, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('ZADD', KEYS[1], 0, member)
  redis.call('HSET', KEYS[2], id, json)
  redis.call('HSET', KEYS[3], id, member)
  redis.call('PUBLISH', ARGV[2], json)
  outbox(KEYS[4], ARGV[1], id)
end
if #ARGV > 2 then
  bump(KEYS[4])
  redis.call('SET', KEYS[5], '1')
end
return (#ARGV - 2) / 3
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
-- KEYS: idx body known; ARGV: min max count stream rev. Nil = unknown stream.
local ms
if ARGV[5] == '1' then
  ms = redis.call('ZREVRANGEBYLEX', KEYS[1], ARGV[2], ARGV[1], 'LIMIT', 0, ARGV[3])
else
  ms = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
end
if #ms == 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then return false end
  return {}
end
local ids = {}
for i, m in ipairs(ms) do ids[i] = string.sub(m, 18) end
return redis.call('HMGET', KEYS[2], unpack(ids))
";

const COUNT: &str = r"
-- KEYS: idx known; ARGV: stream. -1 = unknown stream.
local n = redis.call('ZCARD', KEYS[1])
if n == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
return n
";

const APPEND_SEGMENT: &str = concat!(
    lua_bump!(),
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
-- KEYS: seg segseq seghls segpos ver known; ARGV: seq json hlsmember stream
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
redis.call('SET', KEYS[6], '1')
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
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
-- KEYS: epochs ver known; ARGV: index json stream
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump(KEYS[2])
redis.call('SET', KEYS[3], '1')
return 1
"
);

const DROP_SEGMENTS: &str = concat!(
    lua_bump!(),
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
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

const PUT_STATUS: &str = concat!(
    lua_bump!(),
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
-- KEYS: status known ver; ARGV: json stream. A status does not move the version (it notifies).
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1')
notify(KEYS[3])
return 1
"
);

const APPEND_PART: &str = concat!(
    lua_bump!(),
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
-- KEYS: part partidx ver known; ARGV: member json stream
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
bump(KEYS[3])
redis.call('SET', KEYS[4], '1')
return 1
"
);

const PARTS: &str = r"
-- KEYS: partidx part; ARGV: min. HMGET in chunks (Lua's unpack takes a few thousand at most).
local ms = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+')
local out = {}
for i = 1, #ms, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #ms) do chunk[#chunk + 1] = ms[j] end
  for _, b in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do out[#out + 1] = b end
end
return out
";

const DROP_PARTS: &str = concat!(
    lua_bump!(),
    lua_fence!(),
    r"
local fenced = fence() if fenced then return redis.error_reply(fenced) end
-- KEYS: partidx part ver; ARGV: max batch. Returns the bodies of the dropped parts.
local ms = redis.call('ZRANGEBYLEX', KEYS[1], '-', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ms == 0 then return {} end
local out = redis.call('HMGET', KEYS[2], unpack(ms))
redis.call('ZREM', KEYS[1], unpack(ms))
redis.call('HDEL', KEYS[2], unpack(ms))
bump(KEYS[3])
return out
"
);

/// Renames the keys of the layout before hash tags (`p:s:ver`, `p:streams`, `p:wh:…`) to the
/// current one (`{p:s}:ver`, `{p}:streams`, `{p}:wh:…`) once, at connect: one script, so on one
/// server it is atomic (it builds key names, which a Redis Cluster refuses; there was no cluster
/// layout before). Returns the number of stream keys renamed; 0 (a few `EXISTS`) when there is
/// nothing old.
const MIGRATE: &str = r"
-- KEYS: none; ARGV: prefix, then every per-stream key suffix
local p = ARGV[1]
local old = p .. ':streams'
local n = 0
if redis.call('EXISTS', old) == 1 then
  for _, s in ipairs(redis.call('SMEMBERS', old)) do
    for i = 2, #ARGV do
      local o = p .. ':' .. s .. ':' .. ARGV[i]
      if redis.call('EXISTS', o) == 1 then
        redis.call('RENAME', o, '{' .. p .. ':' .. s .. '}:' .. ARGV[i])
        n = n + 1
      end
    end
    redis.call('SET', '{' .. p .. ':' .. s .. '}:known', '1')
  end
  redis.call('SUNIONSTORE', '{' .. p .. '}:streams', '{' .. p .. '}:streams', old)
  redis.call('DEL', old)
end
local hooks = p .. ':wh:hooks'
if redis.call('EXISTS', hooks) == 1 then
  for _, h in ipairs(redis.call('HKEYS', hooks)) do
    for _, suf in ipairs({'e', 'due', 'age', 'stats'}) do
      local o = p .. ':wh:' .. h .. ':' .. suf
      if redis.call('EXISTS', o) == 1 then
        redis.call('RENAME', o, '{' .. p .. '}:wh:' .. h .. ':' .. suf)
      end
    end
  end
  redis.call('RENAME', hooks, '{' .. p .. '}:wh:hooks')
end
if redis.call('EXISTS', p .. ':wh:urls') == 1 then
  redis.call('RENAME', p .. ':wh:urls', '{' .. p .. '}:wh:urls')
end
return n
";

/// Every per-stream key suffix (what [`MIGRATE`] renames).
const STREAM_SUFFIXES: [&str; 12] = [
    "ver", "m:idx", "m:body", "m:pos", "seg", "seg:seq", "seg:hls", "seg:pos", "epochs", "status",
    "part", "part:idx",
];

/// Ticks as 16 hex digits whose byte order is numeric order (sign bit flipped).
fn hex_ticks(ticks: i64) -> String {
    format!("{:016x}", ticks.cast_unsigned() ^ (1 << 63))
}

fn hex_seq(seq: SeqNo) -> String {
    format!("{seq:016x}")
}

/// `{seq}:{index}` (16 + 8 hex digits): lex order is (seq, index) order.
fn part_member(seq: SeqNo, index: u32) -> String {
    format!("{seq:016x}:{index:08x}")
}

fn marker_member(hls: HlsTime, id: Uuid) -> String {
    format!("{}:{}", hex_ticks(hls.ticks()), id.simple())
}

fn map_err(e: RedisError) -> StoreError {
    if let Some(fenced) = lease::fenced_reply(&e) {
        return fenced;
    }
    let busy = matches!(
        e.code(),
        Some("LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN")
    );
    if e.is_timeout() {
        StoreError::Timeout(u64::try_from(RESPONSE_TIMEOUT.as_millis()).unwrap_or(u64::MAX))
    } else if busy
        || e.is_cluster_error()
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
    insert_all: Script,
    delete: Script,
    query: Script,
    count: Script,
    append_segment: Script,
    last_segments: Script,
    segments_in_range: Script,
    put_epoch: Script,
    drop_segments: Script,
    drop_markers: Script,
    put_status: Script,
    append_part: Script,
    parts: Script,
    drop_parts: Script,
}

impl Scripts {
    /// `cluster`: the insert scripts write the webhook outbox in the stream's slot
    /// (`redis_outbox.rs`, `LUA_OUTBOX_CLUSTER`: registrations come with the channel argument).
    fn new(cluster: bool) -> Self {
        let outbox = |s: &str| {
            if cluster {
                s.replacen(lua_outbox!(), outbox::LUA_OUTBOX_CLUSTER, 1)
                    .replace(
                        "redis.call('PUBLISH', ARGV[2], json)",
                        "redis.call('PUBLISH', wh_channel, json)",
                    )
            } else {
                s.to_owned()
            }
        };
        Self {
            insert: Script::new(&outbox(INSERT)),
            insert_all: Script::new(&outbox(INSERT_ALL)),
            delete: Script::new(DELETE),
            query: Script::new(QUERY),
            count: Script::new(COUNT),
            append_segment: Script::new(APPEND_SEGMENT),
            last_segments: Script::new(LAST_SEGMENTS),
            segments_in_range: Script::new(SEGMENTS_IN_RANGE),
            put_epoch: Script::new(PUT_EPOCH),
            drop_segments: Script::new(DROP_SEGMENTS),
            drop_markers: Script::new(DROP_MARKERS),
            put_status: Script::new(PUT_STATUS),
            append_part: Script::new(APPEND_PART),
            parts: Script::new(PARTS),
            drop_parts: Script::new(DROP_PARTS),
        }
    }

    /// Hashes of the scripts that only read: a cluster store sends them without `WAIT`.
    fn read_only_hashes() -> Vec<String> {
        [QUERY, COUNT, LAST_SEGMENTS, SEGMENTS_IN_RANGE, PARTS]
            .iter()
            .map(|s| Script::new(s).get_hash().to_owned())
            .collect()
    }
}

/// Checks a key prefix: 1-64 characters of `[A-Za-z0-9_.-]`.
fn check_prefix(prefix: &str) -> Result<()> {
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if prefix_ok {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid key prefix {prefix:?}: use 1-64 of A-Z, a-z, 0-9, '_', '.' and '-'"
        )))
    }
}

/// TCP_NODELAY: requests are small and latency-bound (Nagle plus delayed ACKs would add tens of
/// milliseconds to pipelined calls). TCP_USER_TIMEOUT: a peer that vanished without a reset is
/// given up on within seconds, which ends the live-feed subscription too.
fn tcp_settings() -> TcpSettings {
    let tcp = TcpSettings::default().set_nodelay(true);
    #[cfg(target_os = "linux")]
    let tcp = tcp.set_user_timeout(Duration::from_secs(5));
    tcp
}

/// `GET` of many keys, each maybe in its own slot: a pipeline on one server, `MGET` on a cluster
/// (the cluster client splits it by slot and puts the answers back in order).
async fn get_many(conn: &mut Conn, keys: &[String]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(conn, Conn::ClusterWrites(..)) {
        return redis::cmd("MGET").arg(keys).query_async(conn).await;
    }
    let mut pipe = redis::pipe();
    for k in keys {
        pipe.cmd("GET").arg(k);
    }
    pipe.query_async(conn).await
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
    status: String,
    part: String,
    part_idx: String,
    /// Set by every writing script: the stream is known (in its own slot, unlike `{p}:streams`).
    known: String,
}

/// The Redis-backed [`Store`].
pub struct RedisStore {
    client: Client,
    /// Every node's client (the one server's, or the cluster spec's nodes): the live feed
    /// subscribes on the first that answers.
    nodes: Vec<Client>,
    /// Every call goes through it; [`Conn::ClusterWrites`] on a cluster (writes wait for a replica).
    conn: Conn,
    cluster: bool,
    prefix: String,
    scripts: Scripts,
    feed: broadcast::Sender<Marker>,
    updates: broadcast::Sender<StreamUpdate>,
    feed_ready: watch::Sender<bool>,
    feed_task: Mutex<Option<JoinHandle<()>>>,
    /// Streams this store listed in `{p}:streams` and when ([`RedisStore::list_stream`]).
    listed: Mutex<HashMap<StreamName, Instant>>,
    /// Streams whose lease this handle acquired: (token, holder). Their ingest writes carry the
    /// token and are refused once a newer one exists (`redis_lease.rs`).
    fences: Mutex<HashMap<StreamName, (u64, String)>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.client.get_connection_info().addr())
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
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
    /// [`bounded`] by this store's call bound: [`CALL_TIMEOUT`], plus [`REPLICA_WAIT`] on a
    /// cluster (a write waits for its replica on top of its own time).
    async fn bounded<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        let limit = if self.cluster {
            CALL_TIMEOUT + REPLICA_WAIT + REPLICA_WAIT_MORE
        } else {
            CALL_TIMEOUT
        };
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(StoreError::Timeout(
                u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            )),
        }
    }

    /// Connects (within about a second, or `Unavailable`) with every key under `{prefix}:`.
    /// `prefix` is 1-64 characters of `[A-Za-z0-9_.-]`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        let bad_url = |e: RedisError| StoreError::Unavailable(format!("invalid redis url: {e}"));
        let info = url
            .into_connection_info()
            .map_err(bad_url)?
            .set_tcp_settings(tcp_settings());
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
        let conn = Conn::Single(conn);
        let mut migrate_conn = conn.clone();
        match bounded(
            Script::new(MIGRATE)
                .arg(prefix)
                .arg(&STREAM_SUFFIXES[..])
                .invoke_async::<i64>(&mut migrate_conn),
        )
        .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                prefix,
                keys = n,
                "redis: renamed keys to the hash-tagged layout"
            ),
            Err(e) => tracing::warn!(prefix, "redis: migrating to the hash-tagged layout: {e}"),
        }
        Ok(Self::from_parts(client.clone(), vec![client], conn, prefix))
    }

    /// Connects to a Redis Cluster given by some of its nodes (`redis://[auth@]host:port/` URLs,
    /// [`crate::redis_cluster::parse_spec`]), within [`CLUSTER_CONNECT_TIMEOUT`] or
    /// `Unavailable`: the same store, every command and script, over the `cluster_async` client
    /// (each call routed by its first key's slot; `MOVED` and reconnects followed by the client).
    /// Writing scripts wait for a replica ([`Replication`]); the webhook outbox lives in each
    /// stream's slot (`redis_outbox.rs`).
    pub async fn connect_cluster(nodes: &[String], prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        let bad_url =
            |e: RedisError| StoreError::Unavailable(format!("invalid redis+cluster node: {e}"));
        let mut infos = Vec::with_capacity(nodes.len());
        for url in nodes {
            infos.push(
                url.as_str()
                    .into_connection_info()
                    .map_err(bad_url)?
                    .set_tcp_settings(tcp_settings()),
            );
        }
        let clients = infos
            .iter()
            .map(|i| Client::open(i.clone()))
            .collect::<redis::RedisResult<Vec<_>>>()
            .map_err(bad_url)?;
        let Some(first) = clients.first().cloned() else {
            return Err(StoreError::Unavailable(
                "invalid redis+cluster spec: no nodes".into(),
            ));
        };
        // The response bound is the call's: a write waits up to REPLICA_WAIT for its replica
        // on top of its own time (a dead node is refused at once, not waited for).
        let cluster = ClusterClientBuilder::new(infos)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(CALL_TIMEOUT + REPLICA_WAIT + REPLICA_WAIT_MORE)
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(200)
            .tcp_settings(tcp_settings())
            .build()
            .map_err(bad_url)?;
        let conn =
            match tokio::time::timeout(CLUSTER_CONNECT_TIMEOUT, cluster.get_async_connection())
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    return Err(StoreError::Unavailable(format!(
                        "cannot connect to the redis cluster ({} node{} given): {e}",
                        nodes.len(),
                        if nodes.len() == 1 { "" } else { "s" }
                    )));
                }
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "cannot connect to the redis cluster: timed out".into(),
                    ));
                }
            };
        let read_only = Scripts::read_only_hashes();
        let conn = Conn::ClusterWrites(conn, std::sync::Arc::new(Replication::new(read_only)));
        let mut store = Self::from_parts(first, clients, conn, prefix);
        store.cluster = true;
        store.scripts = Scripts::new(true);
        Ok(store)
    }

    /// The store over `conn`; the one place its fields are set.
    fn from_parts(client: Client, nodes: Vec<Client>, conn: Conn, prefix: &str) -> Self {
        Self {
            client,
            nodes,
            conn,
            cluster: false,
            prefix: prefix.to_owned(),
            scripts: Scripts::new(false),
            feed: broadcast::channel(FEED_CAPACITY).0,
            updates: broadcast::channel(FEED_CAPACITY).0,
            feed_ready: watch::channel(false).0,
            feed_task: Mutex::new(None),
            listed: Mutex::new(HashMap::new()),
            fences: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self, s: &StreamName) -> Keys {
        let k = |suffix: &str| format!("{{{}:{}}}:{suffix}", self.prefix, s);
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
            status: k("status"),
            part: k("part"),
            part_idx: k("part:idx"),
            known: k("known"),
        }
    }

    fn streams_key(&self) -> String {
        format!("{{{}}}:streams", self.prefix)
    }

    /// Lists the stream in `{p}:streams` after a script wrote it. A command of its own: the set
    /// lives in the prefix's slot, not the stream's (Redis Cluster runs a script in one slot).
    /// Sent at most every [`LISTED_FOR`] per stream by this store (a round trip per write would
    /// cost a third to half of the single-insert rate); a process that crashed between a
    /// script and its `SADD` sends it on its next write after the restart.
    async fn list_stream(&self, stream: &StreamName) -> Result<()> {
        let fresh = |at: &Instant| at.elapsed() < LISTED_FOR;
        if self
            .listed
            .lock()
            .is_ok_and(|l| l.get(stream).is_some_and(fresh))
        {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                redis::cmd("SADD")
                    .arg(self.streams_key())
                    .arg(stream.as_str())
                    .query_async(&mut conn),
            )
            .await?;
        if let Ok(mut l) = self.listed.lock() {
            l.retain(|_, at| fresh(at));
            l.insert(stream.clone(), Instant::now());
        }
        Ok(())
    }

    /// Waits (bounded) until the background pub/sub task is subscribed to both channels.
    async fn feed_ready(&self) -> Result<()> {
        self.ensure_feed_task()?;
        let mut ready = self.feed_ready.subscribe();
        match tokio::time::timeout(CALL_TIMEOUT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Backend("live feed task ended".into())),
            Err(_) => Err(StoreError::Unavailable(
                "cannot subscribe to the live feed (redis unreachable); retrying".into(),
            )),
        }
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
            .key(&k.known)
            .arg(stream.as_str())
            .arg(self.channel_arg().await?);
        for m in batch {
            inv.arg(m.id.simple().to_string())
                .arg(marker_member(m.hls, m.id))
                .arg(encode(m)?);
        }
        let mut conn = self.conn.clone();
        let reply: Value = self.bounded(inv.invoke_async(&mut conn)).await?;
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
        if out.contains(&InsertOutcome::Inserted) {
            self.list_stream(stream).await?;
        }
        Ok(out)
    }

    /// One attempt of an all-or-nothing batch: compare with what is stored, then write the new
    /// ones in one script. `None` when a concurrent writer stored one of the new ids in between
    /// (nothing was written; compare again).
    async fn try_batch(
        &self,
        stream: &StreamName,
        markers: &[Marker],
        repeats: &[Option<usize>],
    ) -> Result<Option<Vec<InsertOutcome>>> {
        let k = self.keys(stream);
        let ids: Vec<String> = markers.iter().map(|m| m.id.simple().to_string()).collect();
        let mut conn = self.conn.clone();
        let stored: Vec<Option<Vec<u8>>> = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(&k.body)
                    .arg(&ids)
                    .query_async(&mut conn),
            )
            .await?;
        if stored.len() != markers.len() {
            return Err(StoreError::Backend(format!(
                "redis: HMGET of {} ids answered {}",
                markers.len(),
                stored.len()
            )));
        }
        let mut outcomes = Vec::with_capacity(markers.len());
        let mut new = Vec::new();
        for (index, (m, old)) in markers.iter().zip(stored).enumerate() {
            if repeats.get(index).copied().flatten().is_some() {
                outcomes.push(InsertOutcome::AlreadyExists);
                continue;
            }
            match old {
                None => {
                    outcomes.push(InsertOutcome::Inserted);
                    new.push(m);
                }
                Some(old) => {
                    let old: Marker = decode(&old, || format!("{}[{}]", k.body, m.id.simple()))?;
                    if !old.same_content(m) {
                        return Err(StoreError::BatchEntry {
                            index,
                            id: m.id,
                            error: Box::new(StoreError::Conflict(m.id)),
                        });
                    }
                    outcomes.push(InsertOutcome::AlreadyExists);
                }
            }
        }
        if new.is_empty() {
            return Ok(Some(outcomes));
        }
        let mut inv = self.scripts.insert_all.prepare_invoke();
        inv.key(&k.idx)
            .key(&k.body)
            .key(&k.pos)
            .key(&k.ver)
            .key(&k.known)
            .arg(stream.as_str())
            .arg(self.channel_arg().await?);
        for m in &new {
            inv.arg(m.id.simple().to_string())
                .arg(marker_member(m.hls, m.id))
                .arg(encode(m)?);
        }
        let written: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        if written < 0 {
            return Ok(None);
        }
        self.list_stream(stream).await?;
        Ok(Some(outcomes))
    }

    /// A filtered range query: pages of bodies in order (one script each, [`FILTER_CHUNK_MIN`]
    /// growing to [`FILTER_CHUNK_MAX`]), filtered here, until `limit` match (plus one, to know
    /// whether to give a cursor), the range ends or [`FILTER_SCAN_MAX`] markers were looked at
    /// (then the cursor is the last one looked at). The server never decodes JSON and no script
    /// holds it for more than one page.
    async fn query_filtered(&self, q: &RangeQuery) -> Result<Page> {
        let k = self.keys(&q.stream);
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut markers: Vec<Marker> = Vec::new();
        let mut pos: Option<Cursor> = q.after;
        let mut scanned = 0usize;
        let mut chunk = FILTER_CHUNK_MIN.max(limit + 1).min(FILTER_CHUNK_MAX);
        loop {
            let budget_left = FILTER_SCAN_MAX - scanned;
            // At the bound: ask for one more only to learn whether the range goes on.
            let want = if budget_left == 0 {
                1
            } else {
                chunk.min(budget_left)
            };
            let bodies = self.query_bodies(q, &k, pos, want).await?;
            if budget_left == 0 {
                let next = if bodies.is_empty() { None } else { pos };
                return Ok(Page { markers, next });
            }
            let ended = bodies.len() < want;
            for b in &bodies {
                let m: Marker = decode(b, || k.body.clone())?;
                scanned += 1;
                pos = Some(m.cursor());
                if !q.filter.matches(&m) {
                    continue;
                }
                if markers.len() == limit {
                    let next = markers.last().map(Marker::cursor);
                    return Ok(Page { markers, next });
                }
                markers.push(m);
            }
            if ended {
                return Ok(Page {
                    markers,
                    next: None,
                });
            }
            chunk = (chunk * 4).min(FILTER_CHUNK_MAX);
        }
    }

    /// Up to `count` marker bodies of the query's range after `pos`, in the query's order.
    async fn query_bodies(
        &self,
        q: &RangeQuery,
        k: &Keys,
        pos: Option<Cursor>,
        count: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let at_cursor = pos.map(|c| format!("({}", marker_member(c.hls, c.id)));
        let (min, max) = if q.newest_first {
            (
                format!("[{}", hex_ticks(q.from.ticks())),
                at_cursor.unwrap_or_else(|| format!("({}", hex_ticks(q.to.ticks()))),
            )
        } else {
            (
                at_cursor.unwrap_or_else(|| format!("[{}", hex_ticks(q.from.ticks()))),
                format!("({}", hex_ticks(q.to.ticks())),
            )
        };
        let mut conn = self.conn.clone();
        let reply: Value = self
            .bounded(
                self.scripts
                    .query
                    .key(&k.idx)
                    .key(&k.body)
                    .key(&k.known)
                    .arg(min)
                    .arg(max)
                    .arg(count)
                    .arg(q.stream.as_str())
                    .arg(if q.newest_first { "1" } else { "0" })
                    .invoke_async(&mut conn),
            )
            .await?;
        if reply == Value::Nil {
            return Err(StoreError::UnknownStream(q.stream.to_string()));
        }
        bulk_strings("query", reply)
    }

    fn ensure_feed_task(&self) -> Result<()> {
        let mut task = self
            .feed_task
            .lock()
            .map_err(|_| StoreError::Backend("feed task lock poisoned".into()))?;
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let feed = Feed {
            nodes: self.nodes.clone(),
            versions: self.cluster.then(|| self.conn.clone()),
            prefix: self.prefix.clone(),
            markers: self.feed.clone(),
            updates: self.updates.clone(),
            ready: self.feed_ready.clone(),
        };
        *task = Some(tokio::spawn(feed.run()));
        Ok(())
    }
}

/// What the background pub/sub task needs: the client (pub/sub connection, and a command
/// connection for the versions it sends after a resubscription) and both channels' senders.
struct Feed {
    /// Subscribes on the first of these that answers, and on the next when it is lost (on a
    /// cluster a `PUBLISH` reaches the subscribers of every node).
    nodes: Vec<Client>,
    /// The cluster connection for the versions after a resubscription (`None`: one server,
    /// where a fresh connection is used).
    versions: Option<Conn>,
    prefix: String,
    markers: broadcast::Sender<Marker>,
    updates: broadcast::Sender<StreamUpdate>,
    ready: watch::Sender<bool>,
}

impl Feed {
    /// Owns the pub/sub connection: subscribes to `p:markers` and `p:updates`, forwards, and
    /// after any loss waits and resubscribes.
    async fn run(self) {
        let markers_channel = format!("{}:markers", self.prefix);
        let updates_channel = format!("{}:updates", self.prefix);
        let channel = &markers_channel;
        let mut was_lost = false;
        let mut node = 0usize;
        loop {
            let Some(client) = self.nodes.get(node % self.nodes.len().max(1)) else {
                return;
            };
            let connect = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(&[&markers_channel, &updates_channel]).await?;
                Ok::<_, RedisError>(ps)
            };
            match tokio::time::timeout(CALL_TIMEOUT, connect).await {
                Ok(Ok(ps)) => {
                    self.ready.send_replace(true);
                    if was_lost {
                        self.send_versions().await;
                    }
                    let (mut sink, mut messages) = ps.split();
                    // A server that vanished without closing the socket (network cut) sends
                    // nothing: a periodic PING notices within FEED_KEEPALIVE + CALL_TIMEOUT.
                    let mut keepalive = tokio::time::interval(FEED_KEEPALIVE);
                    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            msg = messages.next() => {
                                let Some(msg) = msg else { break };
                                let payload = msg.get_payload_bytes();
                                if msg.get_channel_name() == updates_channel {
                                    match serde_json::from_slice::<StreamUpdate>(payload) {
                                        Ok(u) => {
                                            let _ = self.updates.send(u);
                                        }
                                        Err(e) => {
                                            tracing::warn!(channel = %updates_channel, "ignoring a malformed update: {e}");
                                        }
                                    }
                                    continue;
                                }
                                match serde_json::from_slice::<Marker>(payload) {
                                    Ok(m) => {
                                        // No receiver right now is fine.
                                        let _ = self.markers.send(m);
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
                    self.ready.send_replace(false);
                    was_lost = true;
                    node += 1;
                    tracing::warn!(%channel, "live feed lost; resubscribing");
                }
                Ok(Err(e)) => {
                    node += 1;
                    tracing::debug!(%channel, "live feed: {e}");
                }
                Err(_) => {
                    node += 1;
                    tracing::debug!(%channel, "live feed: connect timed out");
                }
            }
            tokio::time::sleep(FEED_RETRY).await;
        }
    }

    /// Sends every stream's current version: updates published while the feed was down are lost,
    /// and a waiter woken by these re-reads what it needs. On a connection of its own: the shared
    /// manager may still be waiting out its reconnect backoff when the server has just come back.
    /// Best effort (logged when it fails; waiters are bounded anyway).
    async fn send_versions(&self) {
        // SMEMBERS, then a GET per stream: each stream's version key is in the stream's slot.
        let flat: Result<Vec<String>> = bounded(async {
            let mut conn = match &self.versions {
                Some(c) => c.clone(),
                None => match self.nodes.first() {
                    Some(c) => Conn::Plain(c.get_multiplexed_async_connection().await?),
                    None => return Ok(Vec::new()),
                },
            };
            let names: Vec<String> = redis::cmd("SMEMBERS")
                .arg(format!("{{{}}}:streams", self.prefix))
                .query_async(&mut conn)
                .await?;
            let keys: Vec<String> = names
                .iter()
                .map(|name| format!("{{{}:{name}}}:ver", self.prefix))
                .collect();
            let versions = get_many(&mut conn, &keys).await?;
            Ok(names
                .into_iter()
                .zip(versions)
                .flat_map(|(n, v)| {
                    let v =
                        v.map_or_else(|| "0".into(), |v| String::from_utf8_lossy(&v).into_owned());
                    [n, v]
                })
                .collect())
        })
        .await;
        let flat = match flat {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(prefix = %self.prefix, "versions after resubscribing: {e}");
                return;
            }
        };
        for pair in flat.chunks_exact(2) {
            if let (Ok(stream), Ok(version)) = (StreamName::new(&pair[0]), pair[1].parse()) {
                let _ = self.updates.send(StreamUpdate { stream, version });
            }
        }
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

    async fn insert_marker_batch(
        &self,
        stream: &StreamName,
        markers: &[Marker],
    ) -> Result<Vec<InsertOutcome>> {
        let repeats = check_batch(stream, markers)?;
        if markers.is_empty() {
            return Ok(Vec::new());
        }
        for _ in 0..BATCH_ATTEMPTS {
            if let Some(out) = self.try_batch(stream, markers, &repeats).await? {
                return Ok(out);
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis: the batch met concurrent writers of its ids {BATCH_ATTEMPTS} times; retry"
        )))
    }

    async fn get_marker(&self, stream: &StreamName, id: Uuid) -> Result<Option<Marker>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let body: Option<Vec<u8>> = self
            .bounded(
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
        let n: i64 = self
            .bounded(
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
        if !q.filter.is_empty() {
            return self.query_filtered(q).await;
        }
        let k = self.keys(&q.stream);
        let at_cursor = q.after.map(|c| format!("({}", marker_member(c.hls, c.id)));
        let (min, max) = if q.newest_first {
            (
                format!("[{}", hex_ticks(q.from.ticks())),
                at_cursor.unwrap_or_else(|| format!("({}", hex_ticks(q.to.ticks()))),
            )
        } else {
            (
                at_cursor.unwrap_or_else(|| format!("[{}", hex_ticks(q.from.ticks()))),
                format!("({}", hex_ticks(q.to.ticks())),
            )
        };
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut conn = self.conn.clone();
        let reply: Value = self
            .bounded(
                self.scripts
                    .query
                    .key(&k.idx)
                    .key(&k.body)
                    .key(&k.known)
                    .arg(min)
                    .arg(max)
                    .arg(limit + 1)
                    .arg(q.stream.as_str())
                    .arg(if q.newest_first { "1" } else { "0" })
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
        let n: i64 = self
            .bounded(
                self.scripts
                    .count
                    .key(&k.idx)
                    .key(&k.known)
                    .arg(stream.as_str())
                    .invoke_async(&mut conn),
            )
            .await?;
        u64::try_from(n).map_err(|_| StoreError::UnknownStream(stream.to_string()))
    }

    async fn subscribe_markers(&self) -> Result<MarkerFeed> {
        // Subscribe to the broadcast first so nothing forwarded after the wait is missed.
        let rx = self.feed.subscribe();
        self.feed_ready().await?;
        Ok(rx)
    }

    async fn subscribe_updates(&self) -> Result<UpdateFeed> {
        let rx = self.updates.subscribe();
        self.feed_ready().await?;
        Ok(rx)
    }

    async fn append_part(&self, stream: &StreamName, part: &Part) -> Result<()> {
        crate::embedded::check_part(part)?;
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                self.scripts
                    .append_part
                    .key(&k.part)
                    .key(&k.part_idx)
                    .key(&k.ver)
                    .key(&k.known)
                    .arg(part_member(part.seq, part.index))
                    .arg(encode(part)?)
                    .arg(stream.as_str())
                    .key(lease::lease_keys(self, stream).token)
                    .arg(self.fence_arg(stream))
                    .invoke_async(&mut conn),
            )
            .await?;
        self.list_stream(stream).await
    }

    async fn parts(&self, stream: &StreamName, from_seq: SeqNo) -> Result<Vec<Part>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let reply: Value = self
            .bounded(
                self.scripts
                    .parts
                    .key(&k.part_idx)
                    .key(&k.part)
                    .arg(format!("[{}", part_member(from_seq, 0)))
                    .invoke_async(&mut conn),
            )
            .await?;
        bulk_strings("parts", reply)?
            .iter()
            .map(|b| decode(b, || k.part.clone()))
            .collect()
    }

    async fn drop_parts(&self, stream: &StreamName, before_seq: SeqNo) -> Result<Vec<Part>> {
        let k = self.keys(stream);
        let max = format!("({}", part_member(before_seq, 0));
        let mut out = Vec::new();
        loop {
            let mut conn = self.conn.clone();
            let reply: Value = self
                .bounded(
                    self.scripts
                        .drop_parts
                        .key(&k.part_idx)
                        .key(&k.part)
                        .key(&k.ver)
                        .arg(&max)
                        .arg(BATCH)
                        .key(lease::lease_keys(self, stream).token)
                        .arg(self.fence_arg(stream))
                        .invoke_async(&mut conn),
                )
                .await?;
            let bodies = bulk_strings("drop_parts", reply)?;
            let n = bodies.len();
            for b in &bodies {
                out.push(decode(b, || k.part.clone())?);
            }
            if n < BATCH {
                return Ok(out);
            }
        }
    }

    async fn append_segment(&self, stream: &StreamName, segment: &Segment) -> Result<()> {
        crate::embedded::check_segment(segment)?;
        let k = self.keys(stream);
        let seq = hex_seq(segment.seq);
        let member = format!("{}:{seq}", hex_ticks(segment.hls_start.ticks()));
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                self.scripts
                    .append_segment
                    .key(&k.seg)
                    .key(&k.seg_seq)
                    .key(&k.seg_hls)
                    .key(&k.seg_pos)
                    .key(&k.ver)
                    .key(&k.known)
                    .arg(&seq)
                    .arg(encode(segment)?)
                    .arg(member)
                    .arg(stream.as_str())
                    .key(lease::lease_keys(self, stream).token)
                    .arg(self.fence_arg(stream))
                    .invoke_async(&mut conn),
            )
            .await?;
        self.list_stream(stream).await
    }

    async fn last_segments(&self, stream: &StreamName, n: usize) -> Result<Vec<Segment>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let reply: Value = self
            .bounded(
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
        let reply: Value = self
            .bounded(
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
        let body: Option<Vec<u8>> = self
            .bounded(
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
        let _: i64 = self
            .bounded(
                self.scripts
                    .put_epoch
                    .key(&k.epochs)
                    .key(&k.ver)
                    .key(&k.known)
                    .arg(epoch.index)
                    .arg(encode(epoch)?)
                    .arg(stream.as_str())
                    .key(lease::lease_keys(self, stream).token)
                    .arg(self.fence_arg(stream))
                    .invoke_async(&mut conn),
            )
            .await?;
        self.list_stream(stream).await
    }

    async fn epochs(&self, stream: &StreamName) -> Result<Vec<Epoch>> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let all: Vec<(String, Vec<u8>)> = self
            .bounded(redis::cmd("HGETALL").arg(&k.epochs).query_async(&mut conn))
            .await?;
        let mut out = all
            .iter()
            .map(|(i, b)| decode::<Epoch>(b, || format!("{}[{i}]", k.epochs)))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|e| e.index);
        Ok(out)
    }

    async fn streams(&self) -> Result<Vec<StreamName>> {
        let mut conn = self.conn.clone();
        let names: Vec<String> = self
            .bounded(
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

    async fn put_status(&self, stream: &StreamName, status: &StreamStatus) -> Result<()> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .bounded(
                self.scripts
                    .put_status
                    .key(&k.status)
                    .key(&k.known)
                    .key(&k.ver)
                    .arg(encode(&status.bounded())?)
                    .arg(stream.as_str())
                    .key(lease::lease_keys(self, stream).token)
                    .arg(self.fence_arg(stream))
                    .invoke_async(&mut conn),
            )
            .await?;
        self.list_stream(stream).await
    }

    async fn statuses(&self) -> Result<Vec<(StreamName, StreamStatus)>> {
        let mut conn = self.conn.clone();
        let names = self.streams().await?;
        let keys: Vec<String> = names.iter().map(|n| self.keys(n).status).collect();
        let bodies = self.bounded(get_many(&mut conn, &keys)).await?;
        let mut out = Vec::with_capacity(names.len());
        for (stream, body) in names.into_iter().zip(bodies) {
            if let Some(body) = body {
                let key = || self.keys(&stream).status;
                out.push((stream.clone(), decode(&body, key)?));
            }
        }
        Ok(out)
    }

    async fn version(&self, stream: &StreamName) -> Result<u64> {
        let k = self.keys(stream);
        let mut conn = self.conn.clone();
        let v: Option<u64> = self
            .bounded(redis::cmd("GET").arg(&k.ver).query_async(&mut conn))
            .await?;
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
            let seqs: Vec<String> = self
                .bounded(
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
            let bodies: Vec<Option<Vec<u8>>> = self
                .bounded(
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
                let _: i64 = self
                    .bounded(
                        self.scripts
                            .drop_segments
                            .key(&k.seg)
                            .key(&k.seg_seq)
                            .key(&k.seg_hls)
                            .key(&k.seg_pos)
                            .key(&k.ver)
                            .arg(&doomed)
                            .key(lease::lease_keys(self, stream).token)
                            .arg(self.fence_arg(stream))
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
                let n: u64 = self
                    .bounded(
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
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn acquire_lease(
        &self,
        stream: &StreamName,
        holder: &str,
        ttl: Duration,
    ) -> Result<crate::LeaseAttempt> {
        self.lease_acquire(stream, holder, ttl).await
    }

    async fn renew_lease(
        &self,
        stream: &StreamName,
        token: u64,
        ttl: Duration,
    ) -> Result<crate::LeaseRenewal> {
        self.lease_renew(stream, token, ttl).await
    }

    async fn release_lease(&self, stream: &StreamName, token: u64) -> Result<()> {
        self.lease_release(stream, token).await
    }

    async fn lease_holder(&self, stream: &StreamName) -> Result<Option<crate::LeaseHolder>> {
        self.lease_holder_of(stream).await
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
