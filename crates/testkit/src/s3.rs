//! A real S3-compatible object store for tests: a single-node Garage (replication factor 1) on
//! free loopback ports and its own temp dir, a layout applied, one key allowed on one bucket,
//! stopped when dropped. Set up through the `garage` CLI (the same steps an operator runs).
//!
//! The binary is built by `scripts/ensure-garage.sh` (the test command runs it) into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/hlsmark-tools/garage-<version>/bin/garage`, or named by
//! `HLSMARK_GARAGE`. A test that needs it and finds none FAILS with a message naming the script:
//! like redis-server and ffmpeg, a missing server is a broken setup, not a skip (the one rule,
//! inside the test command or out).

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port};

/// The Garage version `scripts/ensure-garage.sh` builds (keep the two equal).
pub const GARAGE_VERSION: &str = "2.5.0";

/// The access key every test Garage has (Garage's format: `GK` + 24 hex digits).
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
/// Its secret (64 hex digits). A test secret of a loopback server, nothing else.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The region Garage answers as.
pub const REGION: &str = "garage";

/// Where the garage binary is: `HLSMARK_GARAGE`, else the script's cache, else `garage` on the
/// PATH. Panics (the test fails) naming the script when there is none.
pub fn garage_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HLSMARK_GARAGE") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "HLSMARK_GARAGE={} is not a file; run ./scripts/ensure-garage.sh",
            p.display()
        );
        return p;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(c) = cache {
        let p = c
            .join("hlsmark-tools")
            .join(format!("garage-{GARAGE_VERSION}"))
            .join("bin/garage");
        if p.is_file() {
            return p;
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("garage");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "garage (the S3-compatible server of the media-storage tests) is not built; run \
         ./scripts/ensure-garage.sh (./scripts/test.sh runs it; it builds garage {GARAGE_VERSION} \
         once into ~/.cache/hlsmark-tools) or set HLSMARK_GARAGE"
    );
}

/// A running single-node Garage with one bucket and one key allowed on it.
#[derive(Debug)]
pub struct Garage {
    child: Option<Child>,
    bin: PathBuf,
    config: PathBuf,
    s3_port: u16,
    bucket: String,
    _dir: tempfile::TempDir,
}

impl Garage {
    /// Starts Garage with a bucket named `media`.
    pub fn start() -> Self {
        Self::start_with_bucket("media")
    }

    /// Starts Garage, applies a one-node layout, imports [`KEY_ID`] and creates `bucket` with the
    /// key allowed to read, write and own it. Panics with Garage's output when a step fails.
    pub fn start_with_bucket(bucket: &str) -> Self {
        let bin = garage_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret = "7d0b5f1c2e3a4b6c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";
        let text = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"lmdb\"\n\
             metadata_fsync = false\n\
             data_fsync = false\n\
             replication_factor = 1\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = dir.path().join("meta").display(),
            data = dir.path().join("data").display(),
        );
        std::fs::write(&config, text).expect("write garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("garage.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut g = Self {
            child: Some(child),
            bin,
            config,
            s3_port: s3,
            bucket: bucket.to_owned(),
            _dir: dir,
        };
        assert!(
            wait_for_port(rpc, Duration::from_secs(30))
                && wait_for_port(s3, Duration::from_secs(30)),
            "garage did not start; its log:\n{}",
            g.log()
        );
        let id = g.retry(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap_or("").to_owned();
        g.retry(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.retry(&["layout", "apply", "--version", "1"]);
        g.retry(&[
            "key",
            "import",
            "--yes",
            "-n",
            "hlsmark-test",
            KEY_ID,
            SECRET,
        ]);
        g.retry(&["bucket", "create", bucket]);
        g.retry(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", KEY_ID,
        ]);
        g
    }

    /// Runs a garage CLI command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run garage")
    }

    /// Runs a CLI command until it succeeds (the node needs a moment after start and after a
    /// layout change), for up to 30 s; returns its stdout.
    fn retry(&mut self, args: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli(args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if Instant::now() > deadline || self.exited() {
                panic!(
                    "garage {}: {}{err}\nlog:\n{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("garage.log")).unwrap_or_default()
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The `--media` value for keys under `prefix` of the bucket.
    pub fn media_url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The usual AWS variables for this server (for an `hlsmark` child or an S3 client).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// Creates another bucket the test key may use.
    pub fn create_bucket(&mut self, name: &str) {
        self.retry(&["bucket", "create", name]);
        self.retry(&[
            "bucket", "allow", "--read", "--write", "--owner", name, "--key", KEY_ID,
        ]);
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
