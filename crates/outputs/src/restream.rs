//! The restream hub of one stream: per target a bounded queue and a task that supervises one
//! ffmpeg (fMP4 on its stdin, FLV to the target).
//!
//! The ingest pipeline calls [`Restream::init`] and [`Restream::fragment`] as media arrives; both
//! only `try_send` into each target's queue, so a slow or dead target can never hold the stream
//! up. A full queue drops the fragment for that target only, and the target then skips fragments
//! until one starts with a keyframe (the picture resynchronises; the FLV timestamps jump). Each
//! ffmpeg start (first start, restart, new init section) begins with the newest init section and
//! waits for a keyframe, after discarding whatever queued while it was away (a live restream
//! sends now, not a backlog).
//!
//! Supervision: an ffmpeg that exits, or whose `-progress` has not advanced for [`STALL`] while it
//! was given media, is restarted after a pause: 1 s doubling to 30 s, back to 1 s after a run that
//! stayed connected for [`HEALTHY`]. A new init section (a new epoch of the source) that differs
//! from the running one restarts the target at once (counted in `reinits`); an identical one
//! keeps it running (the media time is continuous across epochs, so the target never notices).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hlsmark_clock::UtcTime;
use hlsmark_media::{Fragment, Init};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::{AudioPlan, Progress, Target, ffmpeg_args};

/// Fragments queued per target (~200 ms each: ~6 s); beyond that the target is dropping.
const QUEUE: usize = 32;
/// No progress for this long while media was given: the target is stalled and restarted.
pub const STALL: Duration = Duration::from_secs(10);
/// Restart pauses.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// A run connected for this long resets the pause.
pub const HEALTHY: Duration = Duration::from_secs(60);
/// ffmpeg gets this long to finish after its input closed at shutdown.
const FINISH: Duration = Duration::from_secs(2);

/// Where a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Waiting for the stream's media, or ffmpeg is connecting.
    Connecting,
    /// ffmpeg is sending (its output is open and growing).
    Connected,
    /// The last attempt failed; restarted after a pause (see `last_error`).
    Retrying,
    /// It cannot work with this stream (video that FLV cannot carry) until the stream changes.
    Failed,
    /// The stream stopped.
    Stopped,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// One target as reported (the key masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// `rtmp://host/app/****`.
    pub target: String,
    pub state: TargetState,
    /// Wall time the target entered `state`.
    pub since: UtcTime,
    /// Why the last attempt ended (ffmpeg's last line, a stall), key masked.
    pub last_error: Option<String>,
    /// Bytes written to the target, over every attempt.
    pub bytes_sent: u64,
    /// Media sent, over every attempt, milliseconds.
    pub sent_ms: u64,
    /// Restarts after an exit or a stall.
    pub restarts: u64,
    /// Restarts because the stream's init section changed (a new epoch of another shape).
    pub reinits: u64,
    /// Fragments dropped for this target (its queue was full, then until the next keyframe).
    pub dropped_fragments: u64,
}

/// The newest init section and what the targets need of it.
#[derive(Debug)]
struct InitInfo {
    generation: u64,
    bytes: Bytes,
    video_track: u32,
    video_codec: String,
    audio_codec: Option<String>,
}

/// A fragment for a target.
#[derive(Debug)]
struct Chunk {
    generation: u64,
    bytes: Bytes,
    key: bool,
}

#[derive(Debug)]
struct Shared {
    target: Target,
    status: Mutex<TargetStatus>,
    /// Skip fragments until one starts with a keyframe (a new init section, or a drop).
    need_key: AtomicBool,
    /// `need_key` because of a drop: the skipped fragments count as dropped.
    resyncing: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut TargetStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    fn set_state(&self, state: TargetState, error: Option<String>) {
        self.update(|s| {
            if s.state != state {
                s.state = state;
                s.since = UtcTime::now();
            }
            if error.is_some() {
                s.last_error = error;
            }
        });
    }
}

struct Inner {
    stream: String,
    targets: Vec<(Arc<Shared>, mpsc::Sender<Chunk>)>,
    init: watch::Sender<Option<Arc<InitInfo>>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    generation: AtomicU64,
}

/// The restream targets of one stream. Cheap to clone (one hub); the targets stop when
/// [`Restream::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Restream {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Restream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restream")
            .field("stream", &self.inner.stream)
            .field(
                "targets",
                &self
                    .inner
                    .targets
                    .iter()
                    .map(|(t, _)| t.target.masked())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Restream {
    /// Starts one task per target (inside a tokio runtime). They wait for the first init section.
    pub fn start(stream: &str, ffmpeg: &Path, targets: &[Target]) -> Self {
        let (init, _) = watch::channel(None);
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut handles = Vec::new();
        for t in targets {
            let shared = Arc::new(Shared {
                target: t.clone(),
                status: Mutex::new(TargetStatus {
                    target: t.masked(),
                    state: TargetState::Connecting,
                    since: UtcTime::now(),
                    last_error: None,
                    bytes_sent: 0,
                    sent_ms: 0,
                    restarts: 0,
                    reinits: 0,
                    dropped_fragments: 0,
                }),
                need_key: AtomicBool::new(true),
                resyncing: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            });
            let (tx, rx) = mpsc::channel(QUEUE);
            let worker = Worker {
                shared: shared.clone(),
                rx,
                init: init.subscribe(),
                stop: stop.subscribe(),
                ffmpeg: ffmpeg.to_owned(),
                stream: stream.to_owned(),
            };
            tasks.push(tokio::spawn(worker.run()));
            handles.push((shared, tx));
        }
        Self {
            inner: Arc::new(Inner {
                stream: stream.to_owned(),
                targets: handles,
                init,
                stop,
                tasks: Mutex::new(tasks),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// A new init section (every ffmpeg attempt of the source begins with one).
    pub fn init(&self, init: &Init) {
        let Some(video) = init.video() else { return };
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.init.send_replace(Some(Arc::new(InitInfo {
            generation,
            bytes: init.bytes.clone(),
            video_track: video.id,
            video_codec: video.codec.clone(),
            audio_codec: init.audio().map(|a| a.codec.clone()),
        })));
        for (t, _) in &self.inner.targets {
            t.need_key.store(true, Ordering::Relaxed);
            t.resyncing.store(false, Ordering::Relaxed);
        }
    }

    /// A fragment of the stream (rebased, as published). Never blocks: a target whose queue is
    /// full loses it, and the fragments after it up to the next keyframe.
    pub fn fragment(&self, f: &Fragment) {
        let Some((generation, video)) = self
            .inner
            .init
            .borrow()
            .as_ref()
            .map(|i| (i.generation, i.video_track))
        else {
            return;
        };
        let key = f.starts_with_keyframe(video);
        for (t, tx) in &self.inner.targets {
            if t.need_key.load(Ordering::Relaxed) && !key {
                if t.resyncing.load(Ordering::Relaxed) {
                    t.dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let chunk = Chunk {
                generation,
                bytes: f.bytes.clone(),
                key,
            };
            match tx.try_send(chunk) {
                Ok(()) => {
                    t.need_key.store(false, Ordering::Relaxed);
                    t.resyncing.store(false, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    t.need_key.store(true, Ordering::Relaxed);
                    t.resyncing.store(true, Ordering::Relaxed);
                    t.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Every target's status, in the order given.
    pub fn statuses(&self) -> Vec<TargetStatus> {
        self.inner
            .targets
            .iter()
            .filter_map(|(t, _)| {
                let mut s = t.status.lock().ok()?.clone();
                s.dropped_fragments = t.dropped.load(Ordering::Relaxed);
                Some(s)
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.targets.is_empty()
    }

    /// Stops every target: ffmpeg's input is closed (it sends what it has and exits), then it is
    /// killed if it has not ended within 2 s.
    pub async fn close(&self) {
        self.inner.stop.send_replace(true);
        let tasks = self
            .inner
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(FINISH + Duration::from_secs(1), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        // Also for a task that had to be aborted.
        for (t, _) in &self.inner.targets {
            t.set_state(TargetState::Stopped, None);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for t in tasks.iter() {
                t.abort();
            }
        }
    }
}

/// How one ffmpeg run ended.
#[derive(Debug)]
enum End {
    Stop,
    /// The stream's init section changed shape.
    Reinit,
    Failed(String),
}

struct Worker {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Chunk>,
    init: watch::Receiver<Option<Arc<InitInfo>>>,
    stop: watch::Receiver<bool>,
    ffmpeg: PathBuf,
    stream: String,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        let masked = self.shared.target.masked();
        let mut backoff = BACKOFF.0;
        loop {
            let Some(init) = self.wait_init().await else {
                break;
            };
            if !(init.video_codec.starts_with("avc1") || init.video_codec.starts_with("avc3")) {
                let why = format!(
                    "FLV carries H.264 only; the stream's video is {}",
                    init.video_codec
                );
                tracing::error!(stream = %self.stream, restream = %masked, "{why}; not sent until the stream's video changes");
                self.shared.set_state(TargetState::Failed, Some(why));
                if !self.wait_init_change().await {
                    break;
                }
                continue;
            }
            // A live restream sends now: what queued while it was away is stale.
            while self.rx.try_recv().is_ok() {}
            let (end, connected_for) = self.attempt(init).await;
            match end {
                End::Stop => break,
                End::Reinit => {
                    self.shared.update(|s| s.reinits += 1);
                    tracing::info!(stream = %self.stream, restream = %masked, "the stream's init section changed (new epoch): restarting the restream");
                }
                End::Failed(why) => {
                    if self.stopping() {
                        break;
                    }
                    if connected_for >= HEALTHY {
                        backoff = BACKOFF.0;
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    tracing::warn!(
                        "stream={} restream={masked} {why}; retrying in {} s",
                        self.stream,
                        pause.as_secs()
                    );
                    self.shared.update(|s| s.restarts += 1);
                    self.shared.set_state(TargetState::Retrying, Some(why));
                    if !self.pause(pause).await {
                        break;
                    }
                }
            }
        }
        self.shared.set_state(TargetState::Stopped, None);
    }

    /// The newest init section, discarding fragments meanwhile; `None` at stop.
    async fn wait_init(&mut self) -> Option<Arc<InitInfo>> {
        loop {
            if self.stopping() {
                return None;
            }
            if let Some(i) = self.init.borrow_and_update().clone() {
                return Some(i);
            }
            tokio::select! {
                r = self.init.changed() => if r.is_err() { return None },
                _ = self.stop.changed() => {}
                c = self.rx.recv() => { c.as_ref()?; }
            }
        }
    }

    /// Waits for another init section; false at stop.
    async fn wait_init_change(&mut self) -> bool {
        loop {
            tokio::select! {
                r = self.init.changed() => return r.is_ok() && !self.stopping(),
                _ = self.stop.changed() => if self.stopping() { return false },
                c = self.rx.recv() => if c.is_none() { return false },
            }
        }
    }

    /// Sleeps `d`, discarding fragments; false at stop.
    async fn pause(&mut self, d: Duration) -> bool {
        let until = tokio::time::Instant::now() + d;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return !self.stopping(),
                _ = self.stop.changed() => if self.stopping() { return false },
                c = self.rx.recv() => if c.is_none() { return false },
            }
        }
    }

    /// One ffmpeg run. Returns how it ended and how long it was connected.
    async fn attempt(&mut self, mut init: Arc<InitInfo>) -> (End, Duration) {
        let target = self.shared.target.clone();
        let masked = target.masked();
        self.shared.set_state(TargetState::Connecting, None);
        let plan = AudioPlan::for_codec(init.audio_codec.as_deref());
        let mut child = match spawn(&self.ffmpeg, &ffmpeg_args(&target, plan)) {
            Ok(c) => c,
            Err(e) => return (End::Failed(e), Duration::ZERO),
        };
        let last_line = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.child.stderr.take() {
            let (last, stream, target) = (last_line.clone(), self.stream.clone(), target.clone());
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line = target.redact(line.trim_end());
                    if line.is_empty() {
                        continue;
                    }
                    tracing::warn!(target: "ffmpeg", stream = %stream, restream = %target.masked(), "{line}");
                    if let Ok(mut l) = last.lock() {
                        line.clone_into(&mut l);
                    }
                }
            });
        }
        let reason = |fallback: String| {
            let l = last_line.lock().map(|l| l.clone()).unwrap_or_default();
            if l.is_empty() { fallback } else { l }
        };
        let (Some(mut stdin), Some(stdout)) = (child.child.stdin.take(), child.child.stdout.take())
        else {
            return (
                End::Failed("ffmpeg's pipes are missing".into()),
                Duration::ZERO,
            );
        };
        tracing::info!(stream = %self.stream, restream = %masked, pid = child.child.id(), ?plan, "restream ffmpeg started");
        let mut progress_lines = tokio::io::BufReader::new(stdout).lines();
        let (base_bytes, base_ms) = self
            .shared
            .status
            .lock()
            .map(|s| (s.bytes_sent, s.sent_ms))
            .unwrap_or_default();
        let mut progress = Progress::default();
        let mut last = Progress::default();
        let mut progress_at = Instant::now();
        let mut fed_at: Option<Instant> = None;
        let mut connected_at: Option<Instant> = None;
        let mut synced = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let connected_for = |c: Option<Instant>| c.map_or(Duration::ZERO, |t| t.elapsed());

        if let Err(e) = write_bounded(&mut stdin, &init.bytes).await {
            let end = End::Failed(reason(format!("writing the init section: {e}")));
            return (end, Duration::ZERO);
        }
        let end = loop {
            tokio::select! {
                chunk = self.rx.recv() => {
                    let Some(c) = chunk else { break End::Stop };
                    if c.generation != init.generation {
                        let newest = self.init.borrow_and_update().clone();
                        match newest {
                            Some(n) if n.bytes == init.bytes => init = n,
                            // A new shape (or a fragment of an older one): start over with it.
                            _ => break End::Reinit,
                        }
                        if c.generation != init.generation {
                            continue;
                        }
                    }
                    if !synced {
                        if !c.key {
                            continue;
                        }
                        synced = true;
                    }
                    fed_at = Some(Instant::now());
                    // A stop must not wait for a write to an ffmpeg that stopped reading.
                    let written = tokio::select! {
                        r = write_bounded(&mut stdin, &c.bytes) => r,
                        _ = self.stop.wait_for(|s| *s) => break End::Stop,
                    };
                    if let Err(e) = written {
                        // ffmpeg has exited (its line says why) or stopped reading.
                        let st = tokio::time::timeout(Duration::from_secs(2), child.child.wait()).await;
                        break End::Failed(match st {
                            Ok(Ok(st)) => reason(format!("exited ({st})")),
                            _ => reason(format!("stalled: {e}")),
                        });
                    }
                }
                line = progress_lines.next_line() => match line {
                    Ok(Some(l)) => {
                        if !progress.line(&l) {
                            continue;
                        }
                        if progress.bytes > last.bytes || progress.out_time_us > last.out_time_us {
                            progress_at = Instant::now();
                        }
                        last = progress;
                        if connected_at.is_none() && progress.bytes > 0 {
                            connected_at = Some(Instant::now());
                            tracing::info!(stream = %self.stream, restream = %masked, "restream connected");
                            self.shared.set_state(TargetState::Connected, None);
                        }
                        self.shared.update(|s| {
                            s.bytes_sent = base_bytes + progress.bytes;
                            s.sent_ms = base_ms + progress.out_time_us / 1000;
                        });
                    }
                    // Its stdout closed: ffmpeg is ending; its exit says why.
                    _ => {
                        let st = tokio::time::timeout(Duration::from_secs(2), child.child.wait()).await;
                        break End::Failed(match st {
                            Ok(Ok(st)) => reason(format!("exited ({st})")),
                            _ => reason("closed its progress output".into()),
                        });
                    }
                },
                st = child.child.wait() => {
                    let st = st.map_or_else(|e| e.to_string(), |s| s.to_string());
                    // Let the stderr reader catch the last line.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    break End::Failed(reason(format!("exited ({st})")));
                }
                _ = tick.tick() => {
                    if fed_at.is_some_and(|f| f > progress_at) && progress_at.elapsed() >= STALL {
                        break End::Failed(format!("stalled: no progress for {} s", STALL.as_secs()));
                    }
                }
                _ = self.stop.changed() => if self.stopping() { break End::Stop },
            }
        };
        if matches!(end, End::Stop) {
            // Closing its input lets ffmpeg send what it has and end the FLV cleanly.
            drop(stdin);
            if tokio::time::timeout(FINISH, child.child.wait())
                .await
                .is_err()
            {
                child.kill();
            }
        }
        (end, connected_for(connected_at))
    }
}

/// Writes `bytes` to ffmpeg's stdin, giving up after [`STALL`] (it stopped reading).
async fn write_bounded(
    stdin: &mut tokio::process::ChildStdin,
    bytes: &[u8],
) -> Result<(), std::io::Error> {
    match tokio::time::timeout(STALL, stdin.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("ffmpeg took no input for {} s", STALL.as_secs()),
        )),
    }
}

/// A restream ffmpeg in its own process group, killed with it when dropped.
struct Child {
    child: tokio::process::Child,
    pid: Option<u32>,
}

impl Child {
    fn kill(&self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only if it has not been reaped (a reaped pid may belong to someone else by now).
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn spawn(ffmpeg: &Path, args: &[OsString]) -> Result<Child, String> {
    let mut cmd = tokio::process::Command::new(ffmpeg);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    match cmd.spawn() {
        Ok(child) => Ok(Child {
            pid: child.id(),
            child,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("ffmpeg not found at {}", ffmpeg.display()))
        }
        Err(e) => Err(format!("starting ffmpeg at {}: {e}", ffmpeg.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use hlsmark_media::{Sample, Track, TrackKind};

    fn init() -> Init {
        Init {
            bytes: Bytes::from_static(b"ftyp+moov"),
            tracks: vec![Track {
                id: 1,
                kind: TrackKind::Video,
                timescale: 90_000,
                codec: "avc1.64001f".into(),
                width: 64,
                height: 64,
                sample_rate: 0,
                channels: 0,
            }],
        }
    }

    fn fragment(key: bool) -> Fragment {
        Fragment {
            bytes: Bytes::from(vec![0u8; 256 * 1024]),
            samples: vec![Sample {
                track: 1,
                dts: 0,
                pts: 0,
                duration: 3_000,
                keyframe: key,
                size: 256 * 1024,
            }],
        }
    }

    /// A target that takes nothing (its "ffmpeg" never reads stdin) fills its queue: the
    /// pipeline's calls still return at once, the target drops for itself and counts it.
    #[tokio::test]
    async fn a_target_that_does_not_read_never_blocks_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("ffmpeg");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 20\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let target = Target::parse("rtmp://127.0.0.1:1/live/k3y").unwrap();
        let r = Restream::start("live", &fake, &[target]);
        r.init(&init());
        let t0 = Instant::now();
        for i in 0..200 {
            r.fragment(&fragment(i % 10 == 0));
            tokio::task::yield_now().await;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let s = &r.statuses()[0];
        assert!(s.dropped_fragments > 100, "{s:?}");
        assert_eq!(s.target, "rtmp://127.0.0.1:1/live/****");
        assert_ne!(s.state, TargetState::Connected);
        r.close().await;
        assert_eq!(r.statuses()[0].state, TargetState::Stopped);
    }
}
