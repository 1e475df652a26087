//! A real RTSP camera for tests: `scripts/rtsp-server.py` (GStreamer's RTSP server) serving a clip
//! on a free port, looped in real time. It can be killed (a camera that vanishes) and started again
//! on the same port and path, and it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{free_port, repo_root};

/// The RTSP server process.
#[derive(Debug)]
pub struct RtspServer {
    child: Option<Child>,
    clip: PathBuf,
    port: u16,
    path: String,
    audio: bool,
}

/// The Python that has GStreamer's bindings: Debian's, not a pyenv or venv shim earlier in PATH.
fn python() -> PathBuf {
    let system = Path::new("/usr/bin/python3");
    if system.is_file() {
        system.to_owned()
    } else {
        PathBuf::from("python3")
    }
}

impl RtspServer {
    /// Serves `clip` (H.264 in mp4/mkv/ts, with its AAC audio if any) at
    /// `rtsp://127.0.0.1:PORT/cam` on a free port; returns once the server says it listens.
    pub fn start(clip: &Path) -> Self {
        Self::start_with(clip, "/cam", true)
    }

    /// As [`RtspServer::start`], at `path`, with or without the clip's audio.
    pub fn start_with(clip: &Path, path: &str, audio: bool) -> Self {
        let mut last = String::new();
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..3 {
            let mut s = Self {
                child: None,
                clip: clip.to_owned(),
                port: free_port(),
                path: path.to_owned(),
                audio,
            };
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => last = e,
            }
        }
        panic!("the RTSP server did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let script = repo_root().join("scripts/rtsp-server.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg(&self.clip)
            .args(["--port", &self.port.to_string(), "--path", &self.path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.audio {
            cmd.arg("--no-audio");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        // stderr is drained by a thread (so a chatty GStreamer never blocks the server) and
        // echoed to the test's stderr, which the test harness shows only for failing tests.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[rtsp-server] {line}");
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("ready ") => {
                self.child = Some(child);
                Ok(())
            }
            other => {
                let _ = child.kill();
                let status = child.wait();
                Err(format!(
                    "no ready line ({other:?}, exit {status:?}); is python3-gi with \
                     gir1.2-gst-rtsp-server-1.0 installed? ./scripts/test.sh installs it"
                ))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:PORT/PATH`.
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{}", self.port, self.path)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the server: connections drop at once, as when a camera loses power.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and path (the clip starts from its beginning).
    pub fn start_again(&mut self) {
        self.stop();
        let mut last = String::new();
        // The port was ours a moment ago; a client's reconnect storm can delay the bind briefly.
        for _ in 0..5 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the RTSP server did not start again on port {}: {last}",
            self.port
        );
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop();
    }
}
