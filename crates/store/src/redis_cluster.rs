//! `redis+cluster://` stores: a Redis Cluster given by some of its nodes.
//!
//! `redis+cluster://host:port,host:port,…` (optionally `user:password@` before the first node,
//! used for every node, and a trailing `/`). Any one reachable node is enough to discover the
//! cluster; listing several lets the store start while one of them is down. The store itself is
//! [`crate::RedisStore`] (every command and script shared with a single server) over a
//! [`Conn`]: the `redis` crate's `cluster_async` client, which routes each call by its first
//! key's slot (every key of a stream is in one slot) and follows `MOVED` after a failover. Writing
//! scripts go out with `WAIT 1` ([`Conn::ClusterWrites`]): see `design/store.md`, "Redis Cluster".

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::{Result, StoreError};

/// The scheme of a cluster spec.
pub const SCHEME: &str = "redis+cluster://";

/// The nodes of a `redis+cluster://` spec as plain `redis://[auth@]host:port/` URLs, in the
/// order given. One line of error naming the bad part (never the password) otherwise.
pub fn parse_spec(spec: &str) -> Result<Vec<String>> {
    let bad = |why: String| StoreError::Unavailable(format!("invalid redis+cluster spec: {why}"));
    let rest = spec
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad(format!("it must start with {SCHEME}")))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (auth, list) = match rest.rsplit_once('@') {
        Some((auth, list)) if !auth.is_empty() => (Some(auth), list),
        Some(_) => return Err(bad("empty credentials before '@'".into())),
        None => (None, rest),
    };
    if list.trim().is_empty() {
        return Err(bad(
            "no nodes: give host:port[,host:port...], e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000"
                .into(),
        ));
    }
    let mut nodes = Vec::new();
    for (i, node) in list.split(',').enumerate() {
        let node = node.trim();
        if node.is_empty() {
            return Err(bad(format!("node {} is empty", i + 1)));
        }
        if node.contains('/') || node.contains('?') {
            return Err(bad(format!(
                "node {node:?}: a cluster has no database number or options; give host:port"
            )));
        }
        let (host, port) = node
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("node {node:?} has no port; give host:port")))?;
        let host_ok = !host.is_empty()
            && (host.starts_with('[') && host.ends_with(']')
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
        if !host_ok {
            return Err(bad(format!("node {node:?}: {host:?} is not a host name")));
        }
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        if !port_ok {
            return Err(bad(format!(
                "node {node:?}: port {port:?} is not a number from 1 to 65535"
            )));
        }
        let url = match auth {
            Some(auth) => format!("redis://{auth}@{host}:{port}/"),
            None => format!("redis://{host}:{port}/"),
        };
        if !nodes.contains(&url) {
            nodes.push(url);
        }
    }
    Ok(nodes)
}

/// How long a write waits for a replica's acknowledgement (`WAIT 1 <ms>`).
/// Long enough for a replica on a loaded machine (it answers at once when it has the write: this
/// bound only matters when it lags, or on the first write to a master that has no replica),
/// short enough that the write still answers within [`crate::redis::CALL_TIMEOUT`] on a loaded
/// machine (500 ms did not: the first writes after a failover timed out one after the other).
pub const REPLICA_WAIT: Duration = Duration::from_millis(300);
/// The second, longer `WAIT` when the master has a connected replica that did not confirm
/// within [`REPLICA_WAIT`] (it lags: a loaded machine, a large write).
pub const REPLICA_WAIT_MORE: Duration = Duration::from_millis(600);
/// How long a slot whose master had no connected replica writes without `WAIT` (each `WAIT`
/// there would cost [`REPLICA_WAIT`] for nothing). The `INFO` sent with every write ends it as
/// soon as a replica is connected, so this only bounds how long one stale answer can last.
const REPLICA_LESS_FOR: Duration = Duration::from_secs(60);

/// The connection of the Redis store: one server (a [`ConnectionManager`], or a plain
/// multiplexed connection for one task) or a cluster. Every command and script of
/// [`crate::RedisStore`] goes through it unchanged; the cluster client routes each by its first
/// key. A plain enum rather than a type parameter: the store stays one type (`outbox::of` and
/// `open` downcast and box it), and the match costs nothing next to a round trip.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Plain(MultiplexedConnection),
    /// A cluster: a script that is not read-only goes out with `WAIT 1` and
    /// `INFO replication` in one pipeline to the same node ([`Replication`]).
    ClusterWrites(ClusterConnection, Arc<Replication>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
            Self::ClusterWrites(c, r) => {
                if r.waits_for(cmd) {
                    let r = Arc::clone(r);
                    Box::pin(async move { r.write(c, cmd).await })
                } else {
                    c.req_packed_command(cmd)
                }
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Self::ClusterWrites(c, _) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
            Self::ClusterWrites(c, _) => c.get_db(),
        }
    }
}

/// What a cluster write waits for. Redis replication is asynchronous: a master acknowledges a
/// write before its replica has it, and a failover promotes the replica with what it has. So a
/// script that writes is sent as `EVALSHA …; WAIT 1 300; INFO replication` in one pipeline to
/// the slot's master (one connection, so `WAIT` covers that write):
/// - `WAIT` answered 1: the replica has it; acknowledged.
/// - 0 and the master has no connected replica (after a failover, before the old master rejoins
///   as its replica; or a cluster without replicas): nothing a failover could promote lacks it;
///   acknowledged (it is on that master only: its appendonly file, as configured, is what keeps
///   it), and the slot writes without `WAIT` for [`REPLICA_LESS_FOR`].
/// - 0 with a connected replica (it lags): a second `WAIT 1 600` on that node's connection;
///   still 0: an `Unavailable` error. The write may stand (a retry is safe: every write is
///   idempotent) but is not acknowledged.
pub(crate) struct Replication {
    /// Script hashes that only read: sent without `WAIT`.
    read_only: HashSet<String>,
    /// Hash tag -> until when its master is taken to have no replica.
    replica_less: Mutex<HashMap<Vec<u8>, Instant>>,
    /// Last time the "written without a replica" warning was logged.
    warned: Mutex<Option<Instant>>,
}

impl Replication {
    pub(crate) fn new(read_only: impl IntoIterator<Item = String>) -> Self {
        Self {
            read_only: read_only.into_iter().collect(),
            replica_less: Mutex::new(HashMap::new()),
            warned: Mutex::new(None),
        }
    }

    /// A script call (`EVALSHA`/`EVAL`) that is not known to be read-only.
    fn waits_for(&self, cmd: &Cmd) -> bool {
        let mut args = cmd.args_iter().map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &[][..],
        });
        let name = args.next().unwrap_or_default();
        if name.eq_ignore_ascii_case(b"EVAL") {
            return true;
        }
        name.eq_ignore_ascii_case(b"EVALSHA")
            && args
                .next()
                .is_some_and(|sha| !self.read_only.contains(&*String::from_utf8_lossy(sha)))
    }

    /// The hash tag of the script's first key (`{p:s}` of `{p:s}:ver`): the slot's name here.
    fn tag(cmd: &Cmd) -> Vec<u8> {
        let key = cmd.args_iter().nth(3).map(|a| match a {
            redis::Arg::Simple(b) => b.to_vec(),
            _ => Vec::new(),
        });
        let key = key.unwrap_or_default();
        match (
            key.iter().position(|&b| b == b'{'),
            key.iter().position(|&b| b == b'}'),
        ) {
            (Some(open), Some(close)) if close > open + 1 => key[open + 1..close].to_vec(),
            _ => key,
        }
    }

    fn is_replica_less(&self, tag: &[u8]) -> bool {
        self.replica_less
            .lock()
            .is_ok_and(|m| m.get(tag).is_some_and(|until| Instant::now() < *until))
    }

    fn set_replica_less(&self, tag: Vec<u8>, yes: bool) {
        if let Ok(mut m) = self.replica_less.lock() {
            let now = Instant::now();
            m.retain(|_, until| now < *until);
            if yes {
                m.insert(tag, now + REPLICA_LESS_FOR);
            } else {
                m.remove(&tag);
            }
        }
    }

    async fn write(&self, conn: &mut ClusterConnection, cmd: &Cmd) -> redis::RedisResult<Value> {
        let tag = Self::tag(cmd);
        let wait = !self.is_replica_less(&tag);
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        if wait {
            pipe.cmd("WAIT")
                .arg(1)
                .arg(u64::try_from(REPLICA_WAIT.as_millis()).unwrap_or(300));
        }
        pipe.cmd("INFO").arg("replication");
        let n = if wait { 3 } else { 2 };
        // The cluster client follows MOVED for a single command, not inside a pipeline's
        // replies: on a redirect (a failover: the slot has a new master) the pipeline goes again
        // to the address the redirect named, at most twice (bounded by the caller's timeout too;
        // a redirected script did not run).
        let mut attempt = 0;
        // Where a redirect said the slot now is (the pipeline goes there directly next time).
        let mut moved_to: Option<SingleNodeRoutingInfo> = None;
        let (reply, mut values) = loop {
            attempt += 1;
            let values = match moved_to.take() {
                Some(route) => conn.route_pipeline(pipe.clone(), 0, n, route).await?,
                None => conn.req_packed_commands(&pipe, 0, n).await?,
            };
            let mut values = values.into_iter();
            // The script's own error (NOSCRIPT after a failover: the caller loads it, retries).
            match values.next().unwrap_or(Value::Nil).extract_error() {
                Ok(reply) => break (reply, values),
                Err(e) if e.is_cluster_error() && attempt < 3 => {
                    let target = e.redirect_node().and_then(|(addr, _)| {
                        let (host, port) = addr.rsplit_once(':')?;
                        Some((host.to_owned(), port.parse::<u16>().ok()?))
                    });
                    if let Some((host, port)) = target {
                        moved_to = Some(SingleNodeRoutingInfo::ByAddress { host, port });
                        // A single command on the key: the client follows it and updates its
                        // slot map for the calls after this one.
                        let key = cmd.args_iter().nth(3).and_then(|a| match a {
                            redis::Arg::Simple(b) => Some(b.to_vec()),
                            _ => None,
                        });
                        let _ = conn
                            .req_packed_command(redis::cmd("TYPE").arg(key.unwrap_or_default()))
                            .await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let acks = if wait {
            match values.next() {
                Some(Value::Int(n)) => n,
                _ => 0,
            }
        } else {
            0
        };
        let replicas = values.next().map_or(0, |info| connected_replicas(&info));
        if !wait {
            if replicas > 0 {
                self.set_replica_less(tag, false);
            }
            return Ok(reply);
        }
        if acks >= 1 {
            return Ok(reply);
        }
        if replicas == 0 {
            self.set_replica_less(tag, true);
            self.warn_unreplicated();
            return Ok(reply);
        }
        // A connected replica that lags (a loaded machine): wait longer, on the same node's
        // connection (the client keeps one per node, and `WAIT` covers everything written on
        // it so far, this write included).
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot_of(&tag),
            SlotAddr::Master,
        )));
        let mut wait = redis::cmd("WAIT");
        wait.arg(1)
            .arg(u64::try_from(REPLICA_WAIT_MORE.as_millis()).unwrap_or(600));
        if let Ok(Value::Int(n)) = conn.route_command(wait, route).await
            && n >= 1
        {
            return Ok(reply);
        }
        Err(RedisError::from(std::io::Error::other(format!(
            "written on the master but no replica confirmed it within {} ms (WAIT 1); \
             not acknowledged, retrying is safe",
            (REPLICA_WAIT + REPLICA_WAIT_MORE).as_millis()
        ))))
    }

    fn warn_unreplicated(&self) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
            *warned = Some(Instant::now());
            tracing::warn!(
                "redis cluster: a master has no connected replica; its writes are on that master \
                 only until a replica is back (logged at most once a minute)"
            );
        }
    }
}

/// The cluster slot of a hash tag (or of a whole key without one): CRC16/XMODEM mod 16384, as
/// Redis computes it.
fn slot_of(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// `connected_slaves:N` of an `INFO replication` reply (0 when absent).
fn connected_replicas(info: &Value) -> i64 {
    let text = match info {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::SimpleString(s) => s.clone(),
        _ => return 0,
    };
    text.lines()
        .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Known slots (`CLUSTER KEYSLOT` of Redis): the routing of the second `WAIT` relies on it.
    #[test]
    fn slots_match_redis() {
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"123456789"), 0x31c3);
        assert_eq!(slot_of(b""), 0);
    }

    #[test]
    fn nodes_are_listed_in_order() {
        assert_eq!(
            parse_spec("redis+cluster://127.0.0.1:7000,h2:7001/").unwrap(),
            vec!["redis://127.0.0.1:7000/", "redis://h2:7001/"]
        );
        assert_eq!(
            parse_spec("redis+cluster://u:secret@a:1, b:2,a:1").unwrap(),
            vec!["redis://u:secret@a:1/", "redis://u:secret@b:2/"]
        );
        assert_eq!(
            parse_spec("redis+cluster://[::1]:7000").unwrap(),
            vec!["redis://[::1]:7000/"]
        );
    }

    #[test]
    fn bad_specs_are_one_line_errors_without_the_password() {
        for (spec, needle) in [
            ("redis+cluster://", "no nodes"),
            ("redis+cluster://a:1,,b:2", "node 2 is empty"),
            ("redis+cluster://a", "no port"),
            ("redis+cluster://a:0", "not a number from 1 to 65535"),
            ("redis+cluster://a:99999", "not a number"),
            ("redis+cluster://a:x", "not a number"),
            ("redis+cluster://a:1/0", "database number"),
            ("redis+cluster://:1", "not a host name"),
            ("redis+cluster://pw@", "no nodes"),
            ("redis+cluster://u:hunter2@a b:1", "not a host name"),
        ] {
            let e = parse_spec(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
            assert!(!e.contains('\n') && !e.contains("hunter2"), "{spec}: {e}");
        }
    }
}
