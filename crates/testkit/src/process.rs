//! A real `hlsmark` process for end-to-end tests: its own free port and data dir, its log in a
//! file (shown when a wait times out), SIGTERM then SIGKILL when stopped or dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::{self, Response};
use crate::{free_port, wait_for_port};

/// The bearer token every test process is started with.
pub const TOKEN: &str = "test-token-0123456789";

/// A running `hlsmark run`.
#[derive(Debug)]
pub struct Hlsmark {
    child: Mutex<Option<Child>>,
    port: u16,
    data: PathBuf,
    log: PathBuf,
}

impl Hlsmark {
    /// Runs `bin run --listen 127.0.0.1:PORT --data-dir DATA --token TOKEN ARGS...` with a clean
    /// environment (PATH only; `RUST_LOG` = `info` unless given) and waits until it listens.
    /// `envs` adds variables (e.g. `RUST_LOG`).
    pub fn start(bin: &Path, data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(data).expect("create the data dir");
        let port = free_port();
        let log = data.with_extension("log");
        let logf = std::fs::File::create(&log).expect("create the log file");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .arg("run")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data)
            .args(["--token", TOKEN])
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let h = Self {
            child: Mutex::new(Some(child)),
            port,
            data: data.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !wait_for_port(port, Duration::from_millis(200)) {
            if let Some(st) = h.exited() {
                panic!("hlsmark exited at start ({st}):\n{}", h.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "hlsmark did not listen on {port}:\n{}",
                h.log_tail(40)
            );
        }
        h
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(Child::id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The exit status if the process has ended.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.lock()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last `n` lines of the process's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        http::get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET path` as JSON (`Null` when the body is not JSON).
    pub fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_slice(&self.get(path).body).unwrap_or_default()
    }

    /// `POST /markers` with the token.
    pub fn post_marker(&self, body: &serde_json::Value) -> Response {
        http::request(
            "POST",
            self.port,
            "/markers",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &format!("Bearer {TOKEN}")),
            ],
            body.to_string().as_bytes(),
        )
        .expect("POST /markers")
    }

    /// Calls `f` every 100 ms until it gives a value; fails the test with `what` and the log's
    /// tail after `timeout`, or at once if the process has exited.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if let Some(st) = self.exited() {
                panic!(
                    "hlsmark exited ({st}) while waiting for {what}:\n{}",
                    self.log_tail(40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after `timeout`).
    pub fn stop(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.lock().take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Hlsmark {
    /// A graceful stop first, so hlsmark stops its own ffmpeg children (a SIGKILL would orphan
    /// them until their next write).
    fn drop(&mut self) {
        let _ = self.stop(Duration::from_secs(5));
    }
}
