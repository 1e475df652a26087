//! A minimal DevTools-protocol client for one headless Chromium, over `--remote-debugging-pipe`.
//!
//! Why not a crate (chromiumoxide): it generates types for the whole protocol (a very large crate
//! to compile on our 2-core machines, for the five commands and two events a page source uses),
//! and it talks over a WebSocket on a TCP port, which any local process could connect to and
//! drive the browser with. The pipe is private to hlsmark and needs no WebSocket code: Chromium
//! reads commands from its fd 3 and writes answers and events to its fd 4, each message one JSON
//! text ended by a NUL byte. The standard library cannot hand a child fds 3 and 4 without unsafe
//! code (forbidden here), so the browser is started through `sh`, which moves our two pipes
//! (its stdin and stdout) there and then `exec`s Chromium: the pid we hold is Chromium's.
//!
//! The browser runs in its own process group (renderers and helpers included), which
//! [`Browser::kill`] ends at once; its profile is a temp dir removed when the [`Browser`] drops.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Moves the pipes to the fds Chromium's `--remote-debugging-pipe` uses, then becomes Chromium.
/// `$0` is the browser, `"$@"` its arguments.
const EXEC_ON_FDS_3_4: &str = r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#;

/// A message larger than this is a broken stream (a 1080p JPEG in base64 is well under 2 MB).
const MAX_MESSAGE: usize = 64 << 20;

/// Why talking to the browser failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdpError {
    #[error("the browser's DevTools pipe closed")]
    Closed,
    #[error("{method}: no answer in {secs} s")]
    Timeout { method: String, secs: u64 },
    #[error("{method}: {message}")]
    Protocol { method: String, message: String },
}

/// An event from the browser: its method, parameters and (flattened) session.
#[derive(Debug, Clone)]
pub struct Event {
    pub method: String,
    pub params: Value,
    pub session: Option<String>,
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// Sends commands; cheap to clone. Answers are matched to commands by id.
#[derive(Debug, Clone)]
pub struct Cdp {
    out: mpsc::UnboundedSender<Vec<u8>>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
}

impl Cdp {
    /// Sends `method` (to `session`, or the browser) and waits at most `timeout` for its answer.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id, tx);
        }
        self.send(id, method, params, session)?;
        let r = tokio::time::timeout(timeout, rx).await;
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(&id);
        }
        match r {
            Err(_) => Err(CdpError::Timeout {
                method: method.into(),
                secs: timeout.as_secs(),
            }),
            Ok(Err(_)) => Err(CdpError::Closed),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(message))) => Err(CdpError::Protocol {
                method: method.into(),
                message,
            }),
        }
    }

    /// Sends `method` without waiting for the answer (screencast acks).
    pub fn notify(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<(), CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(id, method, params, session)
    }

    fn send(
        &self,
        id: u64,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<(), CdpError> {
        let mut m = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            m["sessionId"] = Value::from(s);
        }
        let mut bytes = serde_json::to_vec(&m).map_err(|_| CdpError::Closed)?;
        bytes.push(0);
        self.out.send(bytes).map_err(|_| CdpError::Closed)
    }
}

/// A running headless Chromium: its process group and its temp profile.
#[derive(Debug)]
pub struct Browser {
    pid: Option<u32>,
    /// Chromium's last line on stderr (most are harmless noise; kept for a failure's reason).
    last_line: Arc<Mutex<String>>,
    /// Removed on drop, after the browser is killed.
    profile: Option<tempfile::TempDir>,
}

/// What [`launch`] hands back: the browser guard, the command side, the events, and the exit.
#[derive(Debug)]
pub struct Launched {
    pub browser: Browser,
    pub cdp: Cdp,
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Resolves with the exit status text when the browser process ends.
    pub exited: oneshot::Receiver<String>,
}

/// The browser's command line: headless, no GPU, a fresh profile, a `width` x `height` window,
/// and timers and rendering never throttled (a headless page counts as hidden, and a hidden page
/// would repaint once a second at most).
pub fn browser_args(profile: &Path, width: u32, height: u32) -> Vec<OsString> {
    let mut profile_arg = OsString::from("--user-data-dir=");
    profile_arg.push(profile.as_os_str());
    let mut a: Vec<OsString> = [
        "--headless=new",
        // Chromium refuses to run as root (containers) with its sandbox on; the page is the
        // operator's own choice of URL (README: page sources).
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--mute-audio",
        "--remote-debugging-pipe",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    a.push(profile_arg);
    a.push(format!("--window-size={width},{height}").into());
    a.push("about:blank".into());
    a
}

/// Starts `chromium` (a name on `PATH` or a path) with a fresh temp profile, connected by pipes.
pub fn launch(chromium: &Path, width: u32, height: u32, stream: &str) -> std::io::Result<Launched> {
    let profile = tempfile::Builder::new().prefix("hlsmark-page-").tempdir()?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(EXEC_ON_FDS_3_4)
        .arg(chromium)
        .args(browser_args(profile.path(), width, height))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::ErrorKind::BrokenPipe.into());
    };

    let last_line = Arc::new(Mutex::new(String::new()));
    {
        let (last, stream) = (last_line.clone(), stream.to_owned());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "chromium", stream = %stream, "{line}");
                if let Ok(mut l) = last.lock() {
                    *l = line;
                }
            }
        });
    }

    // Writer: one task owns the pipe, so commands from any task go out whole and in order.
    let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if stdin.write_all(&m).await.is_err() {
                break;
            }
        }
    });

    // Reader: answers go to their waiter, events to the channel; EOF drops both.
    let waiters: Waiters = Arc::default();
    let (ev_tx, events) = mpsc::unbounded_channel();
    {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            let mut r = tokio::io::BufReader::with_capacity(1 << 20, stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match (&mut r)
                    .take(MAX_MESSAGE as u64)
                    .read_until(0, &mut buf)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.last() != Some(&0) {
                    break; // cut short or oversized: the stream cannot be trusted further
                }
                buf.pop();
                let Ok(m) = serde_json::from_slice::<Value>(&buf) else {
                    continue;
                };
                dispatch(m, &waiters, &ev_tx);
            }
            if let Ok(mut w) = waiters.lock() {
                w.clear();
            }
        });
    }

    let (exit_tx, exited) = oneshot::channel();
    tokio::spawn(async move {
        let st = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        let _ = exit_tx.send(st);
    });

    Ok(Launched {
        browser: Browser {
            pid,
            last_line,
            profile: Some(profile),
        },
        cdp: Cdp {
            out,
            waiters,
            next_id: Arc::new(AtomicU64::new(1)),
        },
        events,
        exited,
    })
}

fn dispatch(m: Value, waiters: &Waiters, events: &mpsc::UnboundedSender<Event>) {
    if let Some(id) = m.get("id").and_then(Value::as_u64) {
        let w = waiters.lock().ok().and_then(|mut w| w.remove(&id));
        if let Some(w) = w {
            let r = match m.get("error") {
                Some(e) => Err(e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned()),
                None => Ok(m.get("result").cloned().unwrap_or(Value::Null)),
            };
            let _ = w.send(r);
        }
        return;
    }
    if let Some(method) = m.get("method").and_then(Value::as_str) {
        let _ = events.send(Event {
            method: method.to_owned(),
            session: m
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            params: m.get("params").cloned().unwrap_or(Value::Null),
        });
    }
}

impl Browser {
    /// The browser's pid (the `kill -9` test finds it as hlsmark's child).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Chromium's last stderr line.
    pub fn last_line(&self) -> String {
        self.last_line.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills the browser's whole process group (main process, zygotes, renderers, helpers).
    pub fn kill(&self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
        // The group was killed a moment ago; a helper that was mid-write into the profile may
        // make the first removal fail with a non-empty directory.
        if let Some(dir) = self.profile.take() {
            let path = dir.path().to_owned();
            for _ in 0..5 {
                if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            let _ = dir.close();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn browser_args_are_headless_private_and_sized() {
        let a: Vec<String> = browser_args(Path::new("/tmp/p"), 1280, 720)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        for want in [
            "--headless=new",
            "--remote-debugging-pipe",
            "--user-data-dir=/tmp/p",
            "--window-size=1280,720",
            "--disable-renderer-backgrounding",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} in {a:?}");
        }
        // No TCP debugging port: only hlsmark can drive the browser.
        assert!(!a.iter().any(|x| x.starts_with("--remote-debugging-port")));
    }

    #[test]
    fn answers_go_to_their_waiter_and_events_to_the_channel() {
        let waiters: Waiters = Arc::default();
        let (tx, mut rx) = oneshot::channel();
        waiters.lock().unwrap().insert(7, tx);
        let (etx, mut erx) = mpsc::unbounded_channel();
        dispatch(json!({"id": 7, "result": {"a": 1}}), &waiters, &etx);
        assert_eq!(rx.try_recv().unwrap(), Ok(json!({"a": 1})));
        let (tx, mut rx) = oneshot::channel();
        waiters.lock().unwrap().insert(8, tx);
        dispatch(
            json!({"id": 8, "error": {"code": -32000, "message": "nope"}}),
            &waiters,
            &etx,
        );
        assert_eq!(rx.try_recv().unwrap(), Err("nope".into()));
        dispatch(
            json!({"method": "Page.screencastFrame", "params": {"sessionId": 3}, "sessionId": "S"}),
            &waiters,
            &etx,
        );
        let e = erx.try_recv().unwrap();
        assert_eq!(
            (e.method.as_str(), e.session.as_deref()),
            ("Page.screencastFrame", Some("S"))
        );
    }
}
