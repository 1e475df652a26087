//! Test support shared by hlsmark's integration tests: every test gets its own free port, its own
//! temp dir and, when it needs one, its own real `redis-server` (never one already running), a
//! real RTSP camera (GStreamer), test clips made by ffmpeg and decoders that check them.
//!
//! Only test code depends on this crate.

pub mod clip;
pub mod decode;
pub mod disk;
pub mod hls;
pub mod http;
pub mod process;
pub mod redis_cluster;
pub mod rtmp;
pub mod rtsp;
pub mod s3;

pub use clip::{Clip, ClipSpec, Container, Timing, make_clip};
pub use decode::{DecodedFrame, beep_onset_90k, decode_frames, first_mint_frame, mint_frames};
pub use process::Hlsmark;
pub use redis_cluster::RedisCluster;
pub use rtsp::RtspServer;
pub use s3::Garage;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (for scripts the tests run).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A port that was free a moment ago on 127.0.0.1 (bind to 0, read it, release it).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Fails the test with an install hint when a required program is missing: the README test command
/// installs ffmpeg, redis-server and chromium, so a missing one is a broken setup, not a skip.
pub fn require_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed; run ./scripts/test.sh (it installs it) or `apt-get install {name}`"
    );
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Waits until `child` listens on `port` (`true`), or exits (`false`: a port taken by another
/// test meanwhile, say), or `timeout` passes (`false`).
pub(crate) fn listens_while_alive(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if wait_for_port(port, Duration::from_millis(50)) {
            return true;
        }
    }
    false
}

/// A real `redis-server` on its own port and temp dir, stopped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    appendonly: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free port without persistence.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts redis-server on a free port; with `appendonly`, every write is fsynced to the AOF so a
    /// kill and restart on the same port and dir loses nothing acknowledged.
    pub fn start_with(appendonly: bool) -> Self {
        require_program("redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Self {
            child: None,
            port: free_port(),
            appendonly,
            dir,
        };
        // A port found free can be taken by another test before redis-server binds it: one that
        // exits at start is started again on another free port, up to three times.
        for _ in 0..2 {
            if s.try_spawn() {
                return s;
            }
            s.stop_child();
            s.port = free_port();
        }
        s.spawn();
        s
    }

    fn stop_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// Starts redis-server on `self.port`; `false` when it exited or did not listen within 10 s.
    fn try_spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = self.child.insert(cmd.spawn().expect("spawn redis-server"));
        listens_while_alive(child, self.port, Duration::from_secs(10))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the server (a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and dir (it reloads its AOF if appendonly).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
