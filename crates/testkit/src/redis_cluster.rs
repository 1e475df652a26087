//! A real Redis Cluster for tests: 3 masters and 3 replicas, each a `redis-server` on its own free
//! port (and free cluster-bus port) in its own temp dir, `appendonly yes` with `appendfsync
//! always` (an acknowledged write is on the master's disk; [`RedisCluster::start_volatile`]:
//! none, for behaviour tests), created by `redis-cli --cluster
//! create … --cluster-replicas 1`, stopped when dropped. `cluster-node-timeout` is 1 s so a
//! killed master is replaced by its replica within a few seconds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, listens_while_alive, require_program};

/// Milliseconds after which the cluster considers a silent node failed (and promotes its replica).
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// One node of a [`RedisCluster`].
#[derive(Debug)]
struct Node {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// `appendonly yes` + `appendfsync always` (the failover tests), or no persistence (the
    /// conformance runs: behaviour, not durability, and 31 clusters of 6 fsyncing servers on a
    /// shared 2-core machine would slow every replica past the store's `WAIT`).
    durable: bool,
}

/// A running Redis Cluster of real processes.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// The client port of a `CLUSTER NODES` address `ip:port@cport`.
fn node_port(addr: &str) -> Option<u16> {
    addr.split('@').next()?.rsplit(':').next()?.parse().ok()
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Node {
    /// A new node on free ports, started. A port found free can be taken by another test before
    /// redis-server binds it (its data port or its bus port): a node that exits at start is
    /// started again on other free ports, up to three times.
    fn start_new(dir: PathBuf, durable: bool) -> Self {
        let mut last = 0;
        for _ in 0..3 {
            let mut node = Node {
                port: free_port(),
                bus_port: free_port(),
                dir: dir.clone(),
                child: None,
                durable,
            };
            if node.try_spawn() {
                return node;
            }
            last = node.port;
            node.kill();
            let _ = std::fs::remove_file(dir.join("nodes.conf"));
        }
        panic!("cluster node did not start (3 tries; last on port {last})");
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "cluster node did not start on port {}",
            self.port
        );
    }

    /// Starts redis-server on this node's ports; `false` when it exited or did not listen within
    /// 10 s.
    fn try_spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus_port.to_string()])
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (cluster node)");
        let child = self.child.insert(child);
        listens_while_alive(child, self.port, Duration::from_secs(10))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl RedisCluster {
    /// Starts 3 masters with one replica each (appendonly, fsync always) and waits until the
    /// cluster is `ok` on every node.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// [`RedisCluster::start`] without persistence: for tests of behaviour, not durability.
    pub fn start_volatile() -> Self {
        Self::start_with(false)
    }

    fn start_with(durable: bool) -> Self {
        require_program("redis-server");
        require_program("redis-cli");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut nodes = Vec::new();
        for i in 0..6 {
            let node_dir = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.push(Node::start_new(node_dir, durable));
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes, _dir: dir };
        assert!(
            cluster.wait_ok(Duration::from_secs(30)),
            "the cluster did not reach cluster_state:ok"
        );
        cluster
    }

    /// One cluster-enabled redis-server that serves every slot itself (`CLUSTER ADDSLOTSRANGE 0
    /// 16383`): a plain `redis://` client reaches every key without redirects, and the server
    /// still refuses what a cluster refuses of declared keys (`CROSSSLOT` for a script's `KEYS`
    /// or a multi-key command in two slots). Not for failover.
    pub fn start_one() -> Self {
        require_program("redis-server");
        require_program("redis-cli");
        let dir = tempfile::tempdir().expect("temp dir");
        let node_dir = dir.path().join("node0");
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let node = Node::start_new(node_dir, true);
        let port = node.port;
        let cluster = Self {
            nodes: vec![node],
            _dir: dir,
        };
        assert!(
            cli(port, &["cluster", "addslotsrange", "0", "16383"])
                .is_some_and(|r| r.contains("OK")),
            "CLUSTER ADDSLOTSRANGE failed on port {port}"
        );
        assert!(
            cluster.wait_ok(Duration::from_secs(20)),
            "the one-node cluster did not reach cluster_state:ok"
        );
        cluster
    }

    /// `redis://127.0.0.1:port/` of the first node (for a plain client on [`RedisCluster::start_one`]).
    pub fn node_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.nodes[0].port)
    }

    /// `127.0.0.1:port` of every node, killed ones included.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// The store spec `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,…` (every node).
    pub fn url(&self) -> String {
        format!("redis+cluster://{}", self.addrs().join(","))
    }

    /// Ports of the nodes that are running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Whether every running node reports `cluster_state:ok`, sees every slot served, and sees
    /// only running nodes serving slots (after a kill, not before the replica took over), and
    /// every running replica's link to its master is up.
    pub fn is_ok(&self) -> bool {
        let ports = self.live_ports();
        !ports.is_empty()
            && ports.iter().all(|&p| {
                let info_ok = cli(p, &["cluster", "info"]).is_some_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                });
                let masters_live = cli(p, &["cluster", "nodes"]).is_some_and(|nodes| {
                    nodes.lines().all(|line| {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        f.len() < 9
                            || !f[2].contains("master")
                            || node_port(f[1]).is_some_and(|port| ports.contains(&port))
                    })
                });
                // A replica counts once its link to its master is up (its initial sync done).
                let synced = cli(p, &["info", "replication"]).is_some_and(|r| {
                    r.contains("role:master") || r.contains("master_link_status:up")
                });
                info_ok && masters_live && synced
            })
    }

    /// Waits until [`RedisCluster::is_ok`]; `false` on timeout.
    pub fn wait_ok(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Ports of the running masters that serve slots, as a running node sees them.
    pub fn master_ports(&self) -> Vec<u16> {
        let Some(&asker) = self.live_ports().first() else {
            return Vec::new();
        };
        let nodes = cli(asker, &["cluster", "nodes"]).unwrap_or_default();
        let mut ports = Vec::new();
        for line in nodes.lines() {
            // <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port = node_port(f[1]);
            if let Some(port) = port.filter(|p| self.live_ports().contains(p)) {
                ports.push(port);
            }
        }
        ports
    }

    /// The port of the master serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER NODES`).
    pub fn master_of(&self, key: &str) -> Option<u16> {
        let asker = *self.live_ports().first()?;
        let slot: u16 = cli(asker, &["cluster", "keyslot", key])?
            .trim()
            .parse()
            .ok()?;
        let nodes = cli(asker, &["cluster", "nodes"])?;
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|r| {
                let mut it = r.split('-');
                let lo = it.next().and_then(|s| s.parse::<u16>().ok());
                let hi = it.next().and_then(|s| s.parse::<u16>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if (lo..=hi).contains(&slot))
            });
            if serves {
                return node_port(f[1]);
            }
        }
        None
    }

    /// SIGKILLs the node on `port` (a crash): its replica is promoted after about
    /// [`NODE_TIMEOUT_MS`] plus an election.
    pub fn kill(&mut self, port: u16) {
        for n in &mut self.nodes {
            if n.port == port {
                n.kill();
            }
        }
    }

    /// Starts a killed node again on its port and dir (it rejoins from its `nodes.conf` and AOF;
    /// a former master comes back as a replica of its promoted one).
    pub fn restart(&mut self, port: u16) {
        for n in &mut self.nodes {
            if n.port == port && n.child.is_none() {
                n.spawn();
            }
        }
    }
}

/// A node is stopped with its value too: a cluster whose start failed half-way (a panic before
/// the `RedisCluster` exists) leaves no redis-server behind.
impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}
