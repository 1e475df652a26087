//! One ffmpeg run of any source: spawn ffmpeg, read its fragmented MP4 from the pipe, rebase every
//! fragment to HLS time, cut segments in-process, write each part and segment file whole, and
//! hand the records (parts, epochs, segments) to the supervisor in order.
//!
//! ```text
//! ffmpeg ─stdout (fMP4)─▶ FragmentReader ─Init─▶ e{E}-init.mp4
//!                               │ Fragment (arrival time noted for the UTC anchor)
//!                               ▼ shift (one origin for video and audio)
//!                          Segmenter ─CutPart─▶ e{E}-{seq:08}.p{i}.m4s ─▶ Output::Part
//!                               │ (each fragment as it arrives)
//!                               └─CutSegment─▶ e{E}-{seq:08}.m4s (one write, then rename)
//!                                 (when the next segment's keyframe fragment arrives)
//!                                                        │
//!                                   Output::{Epoch, Segment} ──▶ supervisor ──▶ store queue
//! ```
//!
//! Parts (LL-HLS, when `RunSpec::parts`) are handed over as soon as their fragment is read, so a
//! segment's parts all come before the segment (cut when the next keyframe fragment arrives,
//! whose part follows the segment). A real
//! source's epoch is only made when its first segment is cut (the UTC anchor needs all of it), so
//! the first segment of each of its attempts has no parts: a part never names an epoch the store
//! does not have yet. When a real source re-anchors (a new epoch at a segment cut), the parts of
//! that segment were already published under the previous epoch's index and file names; they stay
//! so (same init bytes, same media), only the segment record carries the new epoch.
//!
//! The read loop runs in its own task: it is the only reader of the pipe, it never waits on the
//! store, and it notices a stall itself (no fragment for `stall_timeout`). ffmpeg runs in its own
//! process group and is killed (the whole group) on every path out of ours: the [`Ffmpeg`] guard
//! kills it when dropped. A `kill -9` of hlsmark itself leaves ffmpeg to notice its closed stdout
//! (it exits on EPIPE at its next write: ~0.2 s for a live source, tested); one blocked on a
//! silent input is killed by the next start, which finds it through the stream directory's
//! [`PID_FILE`] ([`kill_leftover`]). A parent-death signal would need `prctl` in `pre_exec`,
//! which is unsafe code, forbidden in this workspace.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hlsmark_clock::{
    Duration90k, Epoch, FrameRate, GenTime, HlsTime, Part, Segment, SeqNo, UtcTime,
};
use hlsmark_media::{
    CutPart, CutSegment, Fragment, FragmentReader, Init, Item, Pushed, Segmenter, SegmenterConfig,
};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

use crate::anchor::Anchor;

const HZ: u32 = 90_000;

/// `e{epoch}-{seq:08}.m4s`: a segment file in the stream's directory.
pub fn segment_name(epoch: u32, seq: SeqNo) -> String {
    Segment::file_name(epoch, seq)
}

/// `e{epoch}-init.mp4`: the init section (ftyp+moov) of an epoch.
pub fn init_name(epoch: u32) -> String {
    Segment::init_file_name(epoch)
}

/// `e{epoch}-{seq:08}.p{index}.m4s`: a part file (the one spelling is [`Part::file_name`]).
pub fn part_name(epoch: u32, seq: SeqNo, index: u32) -> String {
    Part::file_name(epoch, seq, index)
}

/// Whether a file of the stream's directory is a part or a part being written (`.{part}.tmp`).
pub fn is_part_file(name: &str) -> bool {
    let inner = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .unwrap_or(name);
    Part::parse_file_name(inner).is_some()
}

/// The epoch a file of the stream's directory belongs to: `e{E}-…` (segments, parts, init sections)
/// and the temporary `.e{E}-….tmp` files, plus ffmpeg's private playlists of older versions
/// (`.ffmpeg-e{E}.m3u8`).
pub fn file_epoch(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix(".ffmpeg-e")
        .or_else(|| name.strip_prefix(".e"))
        .or_else(|| name.strip_prefix('e'))?;
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    let tail = &rest[digits.len()..];
    if digits.is_empty() || !(tail.starts_with('-') || tail == ".m3u8") {
        return None;
    }
    digits.parse().ok()
}

/// Why a run could not start or had to end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("ffmpeg not found at {0:?}")]
    FfmpegMissing(PathBuf),
    #[error("starting ffmpeg at {path:?}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading ffmpeg's output: {0}")]
    Media(#[from] hlsmark_media::MediaError),
    #[error("ffmpeg's output has no video track")]
    NoVideo,
    #[error("--video copy keeps H.264 that browsers play only; the source's video is {0}")]
    CopyNotH264(String),
    #[error("ffmpeg's video track has timescale {0}, expected 90000 (-video_track_timescale)")]
    VideoTimescale(u32),
    #[error("ffmpeg's output has a second init section")]
    SecondInit,
    #[error("a fragment came before the init section")]
    FragmentBeforeInit,
    #[error("rebasing a fragment to HLS time")]
    Shift(#[source] hlsmark_media::MediaError),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the segment writer task failed: {0}")]
    Join(String),
    /// The input carries no timestamps (Motion JPEG over HTTP: ffmpeg would stamp it at 25 fps
    /// whatever the camera sends); read again with arrival times.
    #[error("the source is {0}, which carries no timestamps")]
    NoTimestamps(String),
}

/// ffmpeg's warnings that say nothing about the stream: swscale's note on the JPEG-range pixel
/// formats (`yuvj420p`, which the MJPEG preview encoder takes and JPEG sources give) at every
/// start. Logged at debug and never kept as the reason a run ended.
fn harmless_ffmpeg_line(line: &str) -> bool {
    line.contains("deprecated pixel format used, make sure you did set range correctly")
}

/// One line of ffmpeg's stderr under `-loglevel level+...`: its level and the line without the
/// `[level] ` tag (`[h264 @ 0x5] [error] msg` -> `[h264 @ 0x5] msg`). A line without a tag (an
/// ffmpeg run without the `level` flag) is taken as a warning.
fn split_level(line: &str) -> (&'static str, String) {
    const LEVELS: [&str; 8] = [
        "panic", "fatal", "error", "warning", "info", "verbose", "debug", "trace",
    ];
    for level in LEVELS {
        let tag = format!("[{level}] ");
        if let Some(i) = line.find(&tag)
            && (i == 0 || line[..i].ends_with("] "))
        {
            return (level, format!("{}{}", &line[..i], &line[i + tag.len()..]));
        }
    }
    ("warning", line.to_owned())
}

/// The container of ffmpeg's first input, from its dump (`Input #0, mpegts, from 'x.ts':`).
fn dump_input_format(line: &str) -> Option<&str> {
    line.strip_prefix("Input #0, ")?.split(", from ").next()
}

/// The start time of ffmpeg's first input in 90 kHz ticks, from its dump
/// (`  Duration: 00:00:12.02, start: 11.376778, bitrate: 914 kb/s`): ffmpeg subtracts it from
/// every timestamp it reads (without `-copyts`), so a source's own PTS is the output's plus it.
/// Rounded as ffmpeg rescales (nearest, half away from zero) from its microseconds.
fn dump_start_ticks(line: &str) -> Option<i64> {
    let rest = line.trim_start().strip_prefix("Duration:")?;
    let value = rest.split(", start: ").nth(1)?.split(',').next()?.trim();
    let (neg, digits) = match value.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, value),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros = whole.parse::<i64>().ok()?.checked_mul(1_000_000)?
        + format!("{frac:0<6}").parse::<i64>().ok()?;
    let ticks = (micros.checked_mul(9)? + 50) / 100;
    Some(if neg { -ticks } else { ticks })
}

/// Whether ffmpeg's first input has a duration, from its dump's `Duration:` line: `N/A` for a
/// live input (a camera, a live HLS playlist), a time for a finished one (a file, a finished HLS
/// playlist: ffmpeg sums its segments).
fn dump_duration_known(line: &str) -> Option<bool> {
    let rest = line.trim_start().strip_prefix("Duration:")?;
    Some(!rest.trim_start().starts_with("N/A"))
}

/// What ffmpeg's dump of its first input says (`-loglevel level+info`), filled in as its stderr
/// is read; each value once (the first input's).
#[derive(Debug, Default)]
pub struct InputDump {
    /// The start time ffmpeg subtracts from the input's timestamps (90 kHz ticks; 0 when the
    /// output's dump came and the input had none).
    pub start: std::sync::OnceLock<i64>,
    /// The container (`mpegts`, `mpjpeg`, `hls`...).
    pub format: std::sync::OnceLock<String>,
    /// Whether the input has a duration ([`dump_duration_known`]).
    pub finite: std::sync::OnceLock<bool>,
}

impl InputDump {
    /// Reads one info line of the dump.
    fn read(&self, line: &str) {
        if let Some(f) = dump_input_format(line) {
            let _ = self.format.set(f.to_owned());
            return;
        }
        if let Some(known) = dump_duration_known(line) {
            let _ = self.finite.set(known);
        }
        if let Some(t) = dump_start_ticks(line) {
            let _ = self.start.set(t);
        } else if line.starts_with("Stream mapping:") || line.starts_with("Output #0") {
            let _ = self.start.set(0);
        }
    }
}

/// A running ffmpeg child: its own process group, stderr to the log (target `ffmpeg`) with the
/// last line kept as the reason of a failure, killed with its group when dropped.
#[derive(Debug)]
pub struct Ffmpeg {
    child: tokio::process::Child,
    pid: Option<u32>,
    reaped: bool,
    last_line: Arc<Mutex<String>>,
    /// What ffmpeg's dump says of its first input.
    input: Arc<InputDump>,
    /// Where its pid is recorded while it runs ([`Ffmpeg::record_pid`]).
    pid_file: Option<PathBuf>,
}

/// The file in a stream's directory naming its running ffmpeg (`{pid} {start time}`), so the
/// next start can end one that outlived a `kill -9` of hlsmark ([`kill_leftover`]).
pub const PID_FILE: &str = ".ffmpeg.pid";

/// A process's start time in clock ticks since boot (`/proc/{pid}/stat`, field 22): with the
/// pid, it names one process, never a later one that reused the pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Ends the ffmpeg a `kill -9`ed predecessor left running for this stream, if any: the pid in
/// `dir/`[`PID_FILE`] is killed (its whole process group) only when that process still has the
/// recorded start time and its command line is an ffmpeg; the file is removed either way.
/// Returns the pid killed. (ffmpeg usually dies by itself first: it exits on EPIPE at its next
/// write to the pipe nobody reads; one blocked on a silent input may not write for a while.)
pub fn kill_leftover(dir: &Path) -> Option<u32> {
    let path = dir.join(PID_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let mut it = text.split_whitespace();
    let pid: u32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    if start_time(pid) != Some(started) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name = Path::new(std::ffi::OsStr::new(std::str::from_utf8(argv0).ok()?))
        .file_name()?
        .to_string_lossy()
        .into_owned();
    if !name.contains("ffmpeg") {
        tracing::warn!(pid, %name, "the recorded ffmpeg pid is another program now; left alone");
        return None;
    }
    let raw = i32::try_from(pid).ok()?;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(raw),
        nix::sys::signal::Signal::SIGKILL,
    );
    tracing::warn!(
        pid,
        dir = %dir.display(),
        "killed an ffmpeg left running by an earlier hlsmark that was killed"
    );
    Some(pid)
}

impl Ffmpeg {
    /// Starts `path args`; stdin piped when `stdin` (the generator's frames), else null.
    pub fn spawn(
        path: &Path,
        args: &[OsString],
        stdin: bool,
        stream: &str,
    ) -> Result<Self, PipelineError> {
        Self::spawn_redacted(path, args, stdin, stream, &crate::Source::Generator)
    }

    /// [`Ffmpeg::spawn`] with `source`'s secrets hidden in every line of ffmpeg's that is logged
    /// or kept as the reason of a failure (ffmpeg quotes the URL it was given).
    pub fn spawn_redacted(
        path: &Path,
        args: &[OsString],
        stdin: bool,
        stream: &str,
        source: &crate::Source,
    ) -> Result<Self, PipelineError> {
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PipelineError::FfmpegMissing(path.to_owned()),
            _ => PipelineError::Spawn {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let last_line = Arc::new(Mutex::new(String::new()));
        let input = Arc::new(InputDump::default());
        if let Some(stderr) = child.stderr.take() {
            let (last, stream) = (last_line.clone(), stream.to_owned());
            let dump = input.clone();
            let source = source.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = source.redact(String::from_utf8_lossy(&buf).trim_end());
                    if line.is_empty() {
                        continue;
                    }
                    let (level, line) = split_level(&line);
                    if matches!(level, "info" | "verbose" | "debug" | "trace") {
                        dump.read(&line);
                        tracing::debug!(target: "ffmpeg", stream = %stream, "{line}");
                        continue;
                    }
                    if harmless_ffmpeg_line(&line) {
                        tracing::debug!(target: "ffmpeg", stream = %stream, "{line}");
                        continue;
                    }
                    tracing::warn!(target: "ffmpeg", stream = %stream, "{line}");
                    // ffmpeg's hint after "Stream map '0:v:0' matches no streams." is not the
                    // reason: keep the line before it.
                    if line.starts_with("To ignore this, add a trailing '?' to the map") {
                        continue;
                    }
                    if let Ok(mut l) = last.lock() {
                        line.clone_into(&mut l);
                    }
                }
            });
        }
        Ok(Self {
            pid: child.id(),
            child,
            reaped: false,
            last_line,
            input,
            pid_file: None,
        })
    }

    /// Records the pid and start time in `path` until this guard is dropped (best effort: a
    /// directory that cannot take it only loses the clean-up after a `kill -9`).
    pub fn record_pid(&mut self, path: PathBuf) {
        let Some(pid) = self.pid else { return };
        let Some(started) = start_time(pid) else {
            return;
        };
        match std::fs::write(&path, format!("{pid} {started}\n")) {
            Ok(()) => self.pid_file = Some(path),
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "could not record ffmpeg's pid");
            }
        }
    }

    pub fn id(&self) -> Option<u32> {
        self.pid
    }

    pub fn take_stdin(&mut self) -> Option<tokio::process::ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// What ffmpeg's dump says of its first input, filled in as it is read; see
    /// [`RunSpec::input`].
    pub fn input(&self) -> Arc<InputDump> {
        self.input.clone()
    }

    /// ffmpeg's last stderr line (empty if it printed nothing).
    pub fn last_line(&self) -> String {
        self.last_line.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn signal_group(&self, sig: nix::sys::signal::Signal) {
        if self.reaped {
            return;
        }
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// Asks ffmpeg to finish (SIGINT: it flushes its last fragment and exits).
    pub fn interrupt(&self) {
        self.signal_group(nix::sys::signal::Signal::SIGINT);
    }

    /// Kills ffmpeg's whole process group.
    pub fn kill(&self) {
        self.signal_group(nix::sys::signal::Signal::SIGKILL);
    }

    /// Waits for ffmpeg to exit (cancel-safe).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let st = self.child.wait().await;
        if st.is_ok() {
            self.reaped = true;
        }
        st
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        self.kill();
        if let Some(p) = self.pid_file.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// How the run's segments get their clocks.
#[derive(Debug, Clone, Copy)]
pub enum Timing {
    /// The generator: its epoch was written before ffmpeg started; frame n of the epoch must sit at
    /// `epoch.frame_time(n)` (checked against every frame table), PDT is the exact anchor.
    Generator { epoch: Epoch },
    /// A real source: the epoch is made when the first segment is ready (least-delayed anchor),
    /// starting at `hls_start` (the end of the last published segment); re-anchors make new
    /// epochs `index + 1`, ...
    Source {
        index: u32,
        first_seq: SeqNo,
        hls_start: HlsTime,
        /// PDT never goes below this (the end of the last published segment's PDT).
        floor: UtcTime,
    },
    /// An imported recording (`--pace false` / `--start-utc`): like `Source`, but the epoch's
    /// first frame is at `utc_start` and every segment's UTC is `utc_start` plus its media time
    /// from there, exactly (no anchoring by arrival, no slew, no re-anchor). Paced imports are
    /// paced from the moment their epoch is made, not to their (past) PDT.
    Import {
        index: u32,
        first_seq: SeqNo,
        hls_start: HlsTime,
        utc_start: UtcTime,
    },
}

/// How far ahead of the wall clock a live source's media may be published ([`Pace::Live`]): more
/// than the burst a camera sends at connect (some send their cached last GOP, 1-2 s).
pub const LIVE_AHEAD: Duration90k = Duration90k::from_secs(2);

/// How the read loop holds ffmpeg's output back (the pipe then holds ffmpeg back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Never: the generator (its pump paces), unpaced imports.
    Off,
    /// Files, read by ffmpeg without `-re`: a fragment is taken no earlier than the PDT of its
    /// end (for a paced import, its pace origin). Nothing waits before the epoch exists, so the
    /// first segment comes as fast as ffmpeg reads it (launch time) and its anchor (the
    /// least-delayed fragment) puts that burst in the past: PDT stays the wall time a frame is
    /// published at, as with `-re`.
    Media,
    /// Live sources but HLS playlists: a guard, not a pace. A fragment is taken no earlier than
    /// [`LIVE_AHEAD`] before the PDT of its end as the anchor has it (slewed, so a camera whose
    /// clock runs a little fast is never held): a live camera's media arrives after its PDT and
    /// never waits, but a source read faster than real time (a file over HTTP) no longer
    /// publishes PDT in the future.
    Live,
    /// HLS playlists: [`Pace::Live`] once ffmpeg's dump gave the input a duration (a finished
    /// playlist, VOD, which ffmpeg reads as fast as the network allows), else never (a live
    /// playlist: its media comes a whole upstream segment at a time, seconds ahead of the
    /// anchor its first burst set, so the guard would add that latency).
    LiveFinished,
}

/// What one run needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub dir: PathBuf,
    /// Where init sections, parts and segments are written (the stream directory or `--media`).
    pub media: crate::media_out::StreamMedia,
    pub target: Duration90k,
    pub stall_timeout: Duration,
    pub timing: Timing,
    /// Publish every fragment as an LL-HLS part (`--part-duration` not 0).
    pub parts: bool,
    /// `--video copy`: the video must be H.264 (what every browser plays), else
    /// [`PipelineError::CopyNotH264`] before anything is written.
    pub copy: bool,
    /// Restream targets: handed every init section and every rebased fragment, never waited on.
    pub restream: Option<hlsmark_outputs::Restream>,
    /// Whether and how ffmpeg's output is held back to real time here ([`Pace`]).
    pub pace: Pace,
    /// Shutdown: a paced run stops taking media at once (what ffmpeg wrote ahead of the wall
    /// clock is not published, so nothing gets a PDT in the future and a slow file does not
    /// play on through the shutdown); the open segment ends with what was taken.
    pub stop: watch::Receiver<bool>,
    /// ffmpeg's dump of its input ([`Ffmpeg::input`]): the start time it subtracted from the
    /// input's timestamps (an epoch's `pts_start` is its first frame's time in the source's own
    /// clock: a TS file whose PTS begin at 11.4 s gives 11.4 s, not ffmpeg's 0.02 s), the
    /// container, and whether the input is finite ([`Pace::LiveFinished`]).
    pub input: Arc<InputDump>,
    /// An input without timestamps (`mpjpeg`) ends the run with
    /// [`PipelineError::NoTimestamps`] so that the next is read with arrival times (HTTP sources
    /// not read so yet).
    pub stamp_arrival_next: bool,
}

/// A finished, written segment.
#[derive(Debug, Clone)]
pub struct Published {
    pub segment: Segment,
    /// Generator: index (from the epoch start) of the frame after the segment's last frame.
    pub end_frame: Option<i64>,
    /// From the arrival of the fragment that completed the segment to the record being handed
    /// over (file written).
    pub lag: Duration,
    pub bytes: usize,
}

/// Records for the supervisor, in the order they must reach the store.
#[derive(Debug, Clone)]
pub enum Output {
    /// A part of the open segment (or of the segment that follows it at once), file written.
    Part(Part),
    /// A new epoch beginning with the next segment (real sources; written before it).
    Epoch(Epoch),
    Segment(Published),
}

/// Why a run's output ended.
#[derive(Debug)]
pub enum EndReason {
    /// ffmpeg closed its output cleanly.
    Eof,
    /// No fragment for this long.
    Stalled(Duration),
    Failed(PipelineError),
}

/// What the read loop did.
#[derive(Debug)]
pub struct RunEnd {
    pub reason: EndReason,
    pub segments: u64,
    /// Parts published.
    pub parts: u64,
    /// Fragments before the first keyframe (not published).
    pub dropped_fragments: u64,
    /// Generator frames whose PTS was not `epoch.frame_time(n)` (must stay 0).
    pub frame_mismatches: u64,
    /// The first fragment arrived (the source opened).
    pub opened: bool,
}

/// Shifts of the two tracks, in their own timescales, from one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub video: i64,
    pub audio: i64,
}

/// Offsets that put the first fragment's earliest video frame at `target`, computed once from
/// one origin for both tracks so audio and video keep their relative timing:
///
/// * `d = target - v0` (90 kHz), the video shift.
/// * When audio is present and `align` (real sources), `d` is rounded *up* to a multiple of
///   `90000 / gcd(90000, rate)` ticks (15 at 48 kHz) so that the audio shift `d * rate / 90000`
///   is an exact integer: A/V timing is then kept exactly, at the price of the first video frame
///   landing up to 14 ticks (0.16 ms) after `target`. Without `align` (the generator, whose video
///   must stay on its frame grid) the audio shift is `d` rescaled to the nearest sample (off by at
///   most half a sample, 10 µs, only when `d` is not on that grid).
/// * Nothing may go below zero (a tfdt is unsigned): if any decode time of either track would,
///   `d` is raised until the lowest lands on zero (then the first video frame lands after
///   `target` by the audio lead or the B-frame delay; only possible at the very start of a stream).
pub fn plan_offsets(
    target: HlsTime,
    first: &Fragment,
    video_track: u32,
    audio: Option<(u32, u32)>,
    align: bool,
) -> Option<Offsets> {
    let v0 = first
        .samples
        .iter()
        .filter(|s| s.track == video_track)
        .map(|s| s.pts)
        .min()?;
    let mut d = i128::from(target.ticks()) - i128::from(v0);
    // Lowest decode/presentation time of each track in the fragment, 90 kHz (audio floored so the
    // bound is safe).
    let v_low = first
        .samples
        .iter()
        .filter(|s| s.track == video_track)
        .map(|s| s.dts.min(s.pts))
        .min()
        .map_or(0, i128::from);
    let a_low = audio.and_then(|(id, rate)| {
        let low = first
            .samples
            .iter()
            .filter(|s| s.track == id)
            .map(|s| s.dts.min(s.pts))
            .min()?;
        Some((i128::from(low) * i128::from(HZ)).div_euclid(i128::from(rate.max(1))))
    });
    let low = a_low.map_or(v_low, |a| a.min(v_low));
    if low + d < 0 {
        d = -low;
    }
    let audio_shift = |d: i128, rate: u32| -> i128 {
        let num = d * i128::from(rate);
        let den = i128::from(HZ);
        // Round to nearest, halves away from zero; exact when d is on the common grid. Ceil when
        // the result would take the lowest audio sample below zero.
        let r = (2 * num.abs() + den) / (2 * den);
        if num < 0 { -r } else { r }
    };
    if let Some((_, rate)) = audio {
        let q = i128::from(HZ / gcd(HZ, rate.max(1)));
        if align && d.rem_euclid(q) != 0 {
            d += q - d.rem_euclid(q);
        }
    }
    let a = audio.map_or(0, |(_, rate)| {
        let mut a = audio_shift(d, rate);
        // Never below zero, even through the nearest rounding.
        if let Some((id, _)) = audio
            && let Some(low) = first
                .samples
                .iter()
                .filter(|s| s.track == id)
                .map(|s| s.dts.min(s.pts))
                .min()
            && i128::from(low) + a < 0
        {
            a = -i128::from(low);
        }
        a
    });
    Some(Offsets {
        video: i64::try_from(d).ok()?,
        audio: i64::try_from(a).ok()?,
    })
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A nominal frame rate for a real source's epoch (display only): from the median spacing of the
/// segment's frames, snapped to a common rate within 0.5 %, else the nearest whole rate (1-240).
pub fn nominal_rate(cut: &CutSegment) -> FrameRate {
    let offs = cut.frames.offsets();
    let mut gaps: Vec<u32> = offs.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    let spacing = match gaps.get(gaps.len() / 2) {
        Some(&g) if g > 0 => i64::from(g),
        _ => {
            let n = i64::try_from(offs.len().max(1)).unwrap_or(1);
            (cut.duration.ticks() / n).max(1)
        }
    };
    const COMMON: [(u32, u32); 10] = [
        (24_000, 1_001),
        (24, 1),
        (25, 1),
        (30_000, 1_001),
        (30, 1),
        (50, 1),
        (60_000, 1_001),
        (60, 1),
        (15, 1),
        (10, 1),
    ];
    // The closest common rate whose frame spacing (90000 * den / num) is within 0.5 %.
    let best = COMMON
        .iter()
        .map(|&(num, den)| {
            let want = i64::from(HZ) * i64::from(den);
            let off = (spacing * i64::from(num) - want).abs();
            // Relative error, compared as off / want across rates: scale to a common basis.
            (i128::from(off) * 1_000_000 / i128::from(want), num, den)
        })
        .filter(|&(rel, _, _)| rel <= 5_000)
        .min();
    if let Some((_, num, den)) = best
        && let Ok(r) = FrameRate::new(num, den)
    {
        return r;
    }
    let fps = ((i64::from(HZ) + spacing / 2) / spacing).clamp(1, 240);
    FrameRate::integer(u32::try_from(fps).unwrap_or(1))
}

/// Writes `chunks` to `dir/name` so a reader never sees a partial file
/// ([`hlsmark_mediastore::write_whole`]: a temporary file, its length checked, then renamed). A
/// failed or short write (a full disk) is never renamed, so no empty or cut segment is ever
/// published (the caller ends the attempt; the restart is a new epoch, a DISCONTINUITY).
pub fn write_whole(dir: &Path, name: &str, chunks: &[Bytes]) -> Result<(), PipelineError> {
    let path = dir.join(name);
    hlsmark_mediastore::write_whole(&path, chunks)
        .map_err(|source| PipelineError::Write { path, source })
}

/// A positive 90 kHz duration as a sleep (edge of the process: timers take `std` durations).
fn std_duration(d: Duration90k) -> Duration {
    let micros = i128::from(d.ticks().max(0)) * 100 / 9;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// Why browsers cannot play a copied video of this RFC 6381 codec string, if they cannot: what is
/// not H.264, and H.264 of the profiles beyond High (`avc1.64001f` is High): High 10, High 4:2:2,
/// High 4:4:4 and CAVLC 4:4:4 carry 10-bit or non-4:2:0 pictures no browser's MSE decodes.
fn not_for_browsers(codec: &str) -> Option<String> {
    let Some(rest) = codec
        .strip_prefix("avc1.")
        .or_else(|| codec.strip_prefix("avc3."))
    else {
        return (!(codec == "avc1" || codec == "avc3")).then(|| codec.to_owned());
    };
    let profile = rest.get(..2).and_then(|p| u8::from_str_radix(p, 16).ok());
    let name = match profile? {
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        _ => return None,
    };
    Some(format!(
        "{codec} (H.264 {name}: 10-bit or not 4:2:0, which browsers do not decode)"
    ))
}

/// The read loop's state.
struct Reader {
    spec: RunSpec,
    tx: mpsc::UnboundedSender<Output>,
    init: Option<Init>,
    video: u32,
    audio: Option<(u32, u32)>,
    segmenter: Option<Segmenter>,
    offsets: Option<Offsets>,
    anchor: Anchor,
    /// Epoch of the next segment (for real sources: `None` until the first segment).
    epoch: Option<Epoch>,
    index: u32,
    next_seq: SeqNo,
    end: RunEnd,
    /// [`Segmenter::part_mismatches`] already logged.
    part_mismatches: u64,
    /// Paced imports: (media time, the wall time it is due), set when the epoch is made.
    pace_origin: Option<(HlsTime, UtcTime)>,
    /// Shutdown came while pacing: the run ends without taking more.
    stopped: bool,
}

impl Reader {
    async fn on_init(&mut self, init: Init) -> Result<(), PipelineError> {
        if self.init.is_some() {
            return Err(PipelineError::SecondInit);
        }
        if self.spec.stamp_arrival_next {
            self.wait_dump().await;
            if let Some(f) = self
                .spec
                .input
                .format
                .get()
                .filter(|f| f.as_str() == "mpjpeg")
            {
                return Err(PipelineError::NoTimestamps(f.clone()));
            }
        }
        let video = init.video().ok_or(PipelineError::NoVideo)?;
        if self.spec.copy
            && let Some(why) = not_for_browsers(&video.codec)
        {
            return Err(PipelineError::CopyNotH264(why));
        }
        if video.timescale != HZ {
            return Err(PipelineError::VideoTimescale(video.timescale));
        }
        self.video = video.id;
        self.audio = init.audio().map(|a| (a.id, a.timescale));
        self.segmenter = Some(Segmenter::new(SegmenterConfig {
            target: self.spec.target,
            video_track: video.id,
            video_timescale: video.timescale,
        }));
        self.spec
            .media
            .put(&init_name(self.index), vec![init.bytes.clone()])
            .await?;
        tracing::debug!(
            tracks = ?init.tracks.iter().map(|t| (&t.codec, t.width, t.height, t.sample_rate)).collect::<Vec<_>>(),
            "ffmpeg output opened"
        );
        if let Some(r) = &self.spec.restream {
            r.init(&init);
        }
        self.init = Some(init);
        Ok(())
    }

    async fn on_fragment(
        &mut self,
        mut f: Fragment,
        mut arrived: Instant,
    ) -> Result<(), PipelineError> {
        let Some(seg) = self.segmenter.as_mut() else {
            return Err(PipelineError::FragmentBeforeInit);
        };
        let _ = seg;
        self.end.opened = true;
        let offsets = match self.offsets {
            Some(o) => o,
            None => {
                if !f.starts_with_keyframe(self.video) {
                    self.end.dropped_fragments += 1;
                    return Ok(());
                }
                let (target, align) = match self.spec.timing {
                    Timing::Generator { epoch } => (epoch.hls_start, false),
                    Timing::Source { hls_start, .. } | Timing::Import { hls_start, .. } => {
                        (hls_start, true)
                    }
                };
                let Some(o) = plan_offsets(target, &f, self.video, self.audio, align) else {
                    self.end.dropped_fragments += 1;
                    return Ok(());
                };
                self.offsets = Some(o);
                o
            }
        };
        f.shift(self.video, offsets.video)
            .map_err(PipelineError::Shift)?;
        if let Some((a, _)) = self.audio {
            f.shift(a, offsets.audio).map_err(PipelineError::Shift)?;
        }
        let media_end = f
            .samples
            .iter()
            .filter(|s| s.track == self.video)
            .map(|s| s.pts + i64::from(s.duration))
            .max();
        if let Some(due) = media_end.and_then(|end| self.due(HlsTime(end))) {
            // Sleeping holds ffmpeg back through the pipe; a stall is only noticed while reading.
            let wait = due - UtcTime::now();
            if wait.ticks() > 0 {
                let mut stop = self.spec.stop.clone();
                tokio::select! {
                    () = tokio::time::sleep(std_duration(wait)) => {}
                    _ = stop.wait_for(|s| *s) => {
                        self.stopped = true;
                        return Ok(());
                    }
                }
                arrived = Instant::now();
            }
        }
        if let Some(r) = &self.spec.restream {
            r.fragment(&f);
        }
        let now = UtcTime::now();
        let pushed = self
            .segmenter
            .as_mut()
            .map(|s| s.push(f))
            .unwrap_or_default();
        self.take(pushed, false, arrived).await?;
        if let Some(end) = media_end {
            self.anchor.observe(now, HlsTime(end));
        }
        Ok(())
    }

    /// The wall time at which media ending at `end` may be taken ([`Pace`]), once the epoch
    /// exists: its PDT, for an import the pace origin set when its epoch was made, for a live
    /// source [`LIVE_AHEAD`] before its PDT as the anchor has it.
    fn due(&self, end: HlsTime) -> Option<UtcTime> {
        match (self.spec.pace, self.spec.timing) {
            (Pace::Off, _) => None,
            (Pace::LiveFinished, _) if self.spec.input.finite.get() != Some(&true) => None,
            (Pace::Live | Pace::LiveFinished, _) => {
                self.epoch?;
                self.anchor.utc_at(end).map(|u| u - LIVE_AHEAD)
            }
            (Pace::Media, Timing::Import { .. }) => self.pace_origin.map(|(h, u)| u + (end - h)),
            (Pace::Media, _) => self.epoch.map(|e| e.utc_at(end)),
        }
    }

    /// Publishes what the segmenter completed, in its order: a part of the open segment (or the
    /// last part of the segment cut now), the segment, then part 0 of the segment just opened.
    async fn take(
        &mut self,
        pushed: Pushed,
        last: bool,
        arrived: Instant,
    ) -> Result<(), PipelineError> {
        if let Some(part) = pushed.part {
            self.publish_part(part).await?;
        }
        if let Some(cut) = pushed.segment {
            self.publish(cut, last, arrived).await?;
        }
        if let Some(part) = pushed.opening {
            self.publish_part(part).await?;
        }
        let mismatches = self
            .segmenter
            .as_ref()
            .map_or(0, Segmenter::part_mismatches);
        if mismatches > self.part_mismatches {
            self.part_mismatches = mismatches;
            tracing::debug!(
                mismatches,
                "a segment's parts do not add up to it (a guessed frame duration); it is listed without them"
            );
        }
        Ok(())
    }

    /// Writes a part file (temporary name, then rename) and hands its record over. Its segment is
    /// the next one to be published (`next_seq`); skipped when parts are off, and before a real
    /// source's epoch exists (see the module note).
    async fn publish_part(&mut self, cut: CutPart) -> Result<(), PipelineError> {
        let Some(epoch) = self.epoch.filter(|_| self.spec.parts) else {
            return Ok(());
        };
        debug_assert_eq!(cut.segment, self.end.segments, "a part of the next segment");
        let seq = self.next_seq;
        let file = part_name(epoch.index, seq, cut.index);
        self.spec.media.put(&file, cut.bytes).await?;
        self.end.parts += 1;
        let _ = self.tx.send(Output::Part(Part {
            seq,
            index: cut.index,
            epoch: epoch.index,
            hls_start: cut.start,
            duration: cut.duration,
            independent: cut.independent,
            file,
        }));
        Ok(())
    }

    async fn publish(
        &mut self,
        cut: CutSegment,
        last: bool,
        arrived: Instant,
    ) -> Result<(), PipelineError> {
        let seq = self.next_seq;
        let mut end_frame = None;
        let (hls_start, duration, utc_start) = match self.spec.timing {
            Timing::Generator { epoch } => {
                // The frame index of the segment's first frame, and a check of every frame.
                let a = epoch.frame_at(cut.start);
                let mut bad = u64::from(epoch.frame_time(a) != cut.start);
                for (i, t) in (0i64..).zip(cut.frames.times(cut.start)) {
                    bad += u64::from(t != epoch.frame_time(a + i));
                }
                let n = i64::try_from(cut.frames.len()).unwrap_or(0);
                let k = i64::try_from(seq - epoch.first_seq).unwrap_or(0);
                if a != k * i64::from(epoch.segment_frames) {
                    bad += 1;
                }
                let exact = epoch.frame_time(a + n) - cut.start;
                if !last && exact != cut.duration {
                    bad += 1;
                }
                if bad > 0 {
                    self.end.frame_mismatches += bad;
                    tracing::error!(
                        seq,
                        start = ?cut.start,
                        first_frame = a,
                        frames = n,
                        duration = ?cut.duration,
                        "segment's frames are not on the generator's frame grid"
                    );
                }
                end_frame = Some(a + n);
                // The epoch formula is exact; for the last segment it is also better than
                // ffmpeg's guess of the last frame's duration.
                (cut.start, exact, epoch.utc_at(cut.start))
            }
            Timing::Source { .. } => {
                let placed = self.anchor.place(cut.start, cut.duration, UtcTime::now());
                if self.epoch.is_none() || placed.new_epoch {
                    if self.epoch.is_some() {
                        // Re-anchored: a new epoch with the same init section.
                        self.index += 1;
                        if let Some(init) = &self.init {
                            self.spec
                                .media
                                .put(&init_name(self.index), vec![init.bytes.clone()])
                                .await?;
                        }
                        tracing::warn!(
                            epoch = self.index,
                            utc = %placed.utc_start,
                            "PDT fell more than 3 s behind the wall clock; re-anchored as a new epoch"
                        );
                    }
                    self.wait_dump().await;
                    let e = self.source_epoch(&cut, seq, placed.utc_start);
                    self.epoch = Some(e);
                    let _ = self.tx.send(Output::Epoch(e));
                }
                (cut.start, cut.duration, placed.utc_start)
            }
            Timing::Import { utc_start, .. } => {
                let e = match self.epoch {
                    Some(e) => e,
                    None => {
                        self.wait_dump().await;
                        let e = self.source_epoch(&cut, seq, utc_start);
                        // Paced imports: the end of this first segment is due now.
                        self.pace_origin = Some((cut.start + cut.duration, UtcTime::now()));
                        self.epoch = Some(e);
                        let _ = self.tx.send(Output::Epoch(e));
                        e
                    }
                };
                (cut.start, cut.duration, e.utc_at(cut.start))
            }
        };
        let index = self.epoch.map_or(self.index, |e| e.index);
        let file = segment_name(index, seq);
        let bytes = cut.len_bytes();
        self.spec.media.put(&file, cut.bytes).await?;
        let segment = Segment {
            seq,
            epoch: index,
            hls_start,
            duration,
            utc_start,
            file,
            init_file: Some(init_name(index)),
            frames: cut.frames,
        };
        self.next_seq += 1;
        self.end.segments += 1;
        let _ = self.tx.send(Output::Segment(Published {
            segment,
            end_frame,
            lag: arrived.elapsed(),
            bytes,
        }));
        Ok(())
    }

    /// ffmpeg prints its input's dump (format, start time) before it writes any output, but on
    /// another pipe: an init section or a first segment cut at disk speed may come before those
    /// lines are read. Waits up to 200 ms for them (ffmpeg always prints them; a run whose
    /// stderr says nothing goes on with a start of 0 and no format).
    async fn wait_dump(&self) {
        for _ in 0..40 {
            if self.spec.input.start.get().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A real source's epoch beginning with `cut` (sequence `seq`) at `utc_start`.
    fn source_epoch(&self, cut: &CutSegment, seq: SeqNo, utc_start: UtcTime) -> Epoch {
        let fps = nominal_rate(cut);
        let segment_frames =
            u32::try_from(fps.frames_nearest(self.spec.target).max(1)).unwrap_or(u32::MAX);
        let input_start = self.spec.input.start.get().copied().unwrap_or(0);
        let pts_start = self.offsets.map(|o| {
            cut.start
                .ticks()
                .saturating_sub(o.video)
                .saturating_add(input_start)
        });
        Epoch {
            index: self.index,
            first_seq: seq,
            hls_start: cut.start,
            gen_start: GenTime(cut.start.ticks()),
            utc_start,
            fps,
            segment_frames,
            hls_end: None,
            pts_start,
        }
    }

    /// The open segment at the end of input.
    async fn finish(&mut self) -> Result<(), PipelineError> {
        let pushed = self
            .segmenter
            .as_mut()
            .map(Segmenter::finish)
            .unwrap_or_default();
        self.take(pushed, true, Instant::now()).await
    }
}

/// Reads ffmpeg's output until it ends, stalls or fails; sends every record on `tx` in order.
/// The open segment is published at every end (its fragments are complete).
pub async fn read_loop(
    stdout: impl tokio::io::AsyncRead + Unpin,
    spec: RunSpec,
    tx: mpsc::UnboundedSender<Output>,
) -> RunEnd {
    let (index, next_seq, epoch, floor) = match spec.timing {
        Timing::Generator { epoch } => (epoch.index, epoch.first_seq, Some(epoch), epoch.utc_start),
        Timing::Source {
            index,
            first_seq,
            floor,
            ..
        } => (index, first_seq, None, floor),
        Timing::Import {
            index,
            first_seq,
            utc_start,
            ..
        } => (index, first_seq, None, utc_start),
    };
    let stall = spec.stall_timeout;
    let mut r = Reader {
        spec,
        tx,
        init: None,
        video: 0,
        audio: None,
        segmenter: None,
        offsets: None,
        anchor: Anchor::new(floor),
        epoch,
        index,
        next_seq,
        part_mismatches: 0,
        pace_origin: None,
        stopped: false,
        end: RunEnd {
            reason: EndReason::Eof,
            segments: 0,
            parts: 0,
            dropped_fragments: 0,
            frame_mismatches: 0,
            opened: false,
        },
    };
    let mut reader = FragmentReader::new(stdout);
    let reason = loop {
        let item = match tokio::time::timeout(stall, reader.next()).await {
            Err(_) => break EndReason::Stalled(stall),
            Ok(Err(e)) => break EndReason::Failed(e.into()),
            Ok(Ok(None)) => break EndReason::Eof,
            Ok(Ok(Some(item))) => item,
        };
        let arrived = Instant::now();
        let step = match item {
            Item::Init(init) => r.on_init(init).await,
            Item::Fragment(f) => r.on_fragment(f, arrived).await,
        };
        if let Err(e) = step {
            break EndReason::Failed(e);
        }
        if r.stopped {
            break EndReason::Eof;
        }
    };
    let reason = match r.finish().await {
        Err(e) if matches!(reason, EndReason::Eof) => EndReason::Failed(e),
        _ => reason,
    };
    r.end.reason = reason;
    r.end
}

#[cfg(test)]
mod tests {
    use super::*;
    use hlsmark_media::Sample;

    fn frag(samples: &[(u32, i64, i64)]) -> Fragment {
        Fragment {
            bytes: Bytes::new(),
            samples: samples
                .iter()
                .map(|&(track, dts, pts)| Sample {
                    track,
                    dts,
                    pts,
                    duration: 1,
                    keyframe: true,
                    size: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn ffmpeg_lines_lose_their_level_tag_and_the_input_start_is_read_exactly() {
        assert_eq!(
            split_level("[mov,mp4 @ 0x56] [error] moov atom not found"),
            ("error", "[mov,mp4 @ 0x56] moov atom not found".to_owned())
        );
        assert_eq!(
            split_level("[error] file:a.mp4: Invalid data found when processing input"),
            (
                "error",
                "file:a.mp4: Invalid data found when processing input".to_owned()
            )
        );
        assert_eq!(split_level("[info]   Duration: N/A").0, "info");
        assert_eq!(
            split_level("plain line [info] inside"),
            ("warning", "plain line [info] inside".to_owned())
        );
        let d = |s: &str| dump_start_ticks(s);
        assert_eq!(
            d("  Duration: 00:00:12.02, start: 11.376778, bitrate: 914 kb/s"),
            Some(1_023_910)
        );
        assert_eq!(d("  Duration: N/A, start: 0.000000, bitrate: N/A"), Some(0));
        // 1 us = 0.09 ticks: ffmpeg's nearest, half away from zero.
        assert_eq!(d("  Duration: N/A, start: 0.000006, bitrate: N/A"), Some(1));
        assert_eq!(
            d("  Duration: N/A, start: -0.021333, bitrate: N/A"),
            Some(-1_920)
        );
        assert_eq!(d("  Duration: 00:00:01.00, bitrate: 5 kb/s"), None);
        assert_eq!(d("    Stream #0:0: Video: h264"), None);
        assert_eq!(
            dump_input_format("Input #0, mpjpeg, from 'http://cam/video.cgi':"),
            Some("mpjpeg")
        );
        assert_eq!(
            dump_input_format("Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:a.mp4':"),
            Some("mov,mp4,m4a,3gp,3g2,mj2")
        );
        assert_eq!(dump_input_format("Output #0, mp4, to 'pipe:1':"), None);
        let dump = InputDump::default();
        for line in [
            "Input #0, hls, from 'http://cdn/vod.m3u8':",
            "  Duration: 00:00:12.00, start: 1.400000, bitrate: 0 kb/s",
            "  Duration: N/A, start: 0.000000, bitrate: N/A",
        ] {
            dump.read(line);
        }
        assert_eq!(dump.format.get().map(String::as_str), Some("hls"));
        assert_eq!(
            (dump.start.get(), dump.finite.get()),
            (Some(&126_000), Some(&true))
        );
        let live = InputDump::default();
        live.read("  Duration: N/A, start: 5.000000, bitrate: N/A");
        assert_eq!(
            live.finite.get(),
            Some(&false),
            "a live playlist or a camera"
        );
        let none = InputDump::default();
        none.read("Output #0, mp4, to 'pipe:1':");
        assert_eq!((none.start.get(), none.finite.get()), (Some(&0), None));
    }

    #[test]
    fn copy_keeps_the_h264_browsers_play_and_nothing_else() {
        for ok in [
            "avc1.42c01e",
            "avc1.4d401f",
            "avc1.64001f",
            "avc3.640028",
            "avc1",
        ] {
            assert_eq!(not_for_browsers(ok), None, "{ok}");
        }
        for (no, says) in [
            ("hev1.1.6.L93.B0", "hev1"),
            ("vp09.00.10.08", "vp09"),
            ("avc1.6e001f", "High 10"),
            ("avc1.7a001f", "4:2:2"),
            ("avc1.f4001f", "4:4:4"),
        ] {
            let why = not_for_browsers(no).unwrap_or_default();
            assert!(why.contains(says), "{no}: {why}");
        }
    }

    #[test]
    fn offsets_put_the_first_video_frame_at_the_target() {
        // Video only: first frame (pts 6006, B-frame delay: dts 3003) lands on 900000.
        let f = frag(&[(1, 3_003, 6_006), (1, 6_006, 15_015)]);
        let o = plan_offsets(HlsTime(900_000), &f, 1, None, true).unwrap();
        assert_eq!(o.video, 900_000 - 6_006);
        // At the very start of a stream the decode time would go below zero: raised to 0.
        let o = plan_offsets(HlsTime(0), &f, 1, None, true).unwrap();
        assert_eq!(o.video, -3_003);
    }

    #[test]
    fn audio_is_shifted_by_the_same_offset_exactly() {
        // Video starts at 1.0 s (90 kHz), audio (48 kHz) at 0.98 s: 20 ms before the video.
        let f = frag(&[(1, 90_000, 90_000), (2, 47_040, 47_040)]);
        let o = plan_offsets(HlsTime(900_000), &f, 1, Some((2, 48_000)), true).unwrap();
        // d = 810000 is a multiple of 15: exact, video exactly on the target.
        assert_eq!(o.video, 810_000);
        assert_eq!(o.audio, 810_000 * 48_000 / 90_000);
        // A target off the 15-tick grid: rounded up so that audio stays exact.
        let o = plan_offsets(HlsTime(900_007), &f, 1, Some((2, 48_000)), true).unwrap();
        assert_eq!(o.video % 15, 0);
        assert!(o.video >= 810_007 && o.video < 810_007 + 15);
        assert_eq!(i128::from(o.audio) * 90_000, i128::from(o.video) * 48_000);
        // The generator keeps video exact and rounds audio to the nearest sample.
        let o = plan_offsets(HlsTime(900_007), &f, 1, Some((2, 48_000)), false).unwrap();
        assert_eq!(o.video, 810_007);
        assert_eq!(o.audio, (810_007 * 48_000 + 45_000) / 90_000);
        // At the start of a stream, audio leading the video must not go negative: the origin is
        // the audio (0.98 s maps to 0) and the video lands 20 ms later, still exact.
        let o = plan_offsets(HlsTime(0), &f, 1, Some((2, 48_000)), true).unwrap();
        assert_eq!(o.audio, -47_040);
        assert_eq!(o.video, -88_200);
        assert_eq!(i128::from(o.audio) * 90_000, i128::from(o.video) * 48_000);
    }

    #[test]
    fn no_video_no_offsets() {
        let f = frag(&[(2, 0, 0)]);
        assert_eq!(
            plan_offsets(HlsTime(0), &f, 1, Some((2, 48_000)), true),
            None
        );
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn nominal_rates_snap_to_common_ones() {
        let cut = |step: f64, n: usize| CutSegment {
            bytes: vec![],
            start: HlsTime(0),
            duration: Duration90k(90_000),
            frames: hlsmark_clock::FrameTable::new(
                HlsTime(0),
                (0..n).map(|i| HlsTime((i as f64 * step).round() as i64)),
            )
            .unwrap(),
            has_audio: false,
        };
        assert_eq!(
            nominal_rate(&cut(3_753.75, 24)),
            FrameRate::new(24_000, 1_001).unwrap()
        );
        assert_eq!(nominal_rate(&cut(3_600.0, 25)), FrameRate::integer(25));
        assert_eq!(
            nominal_rate(&cut(3_003.0, 30)),
            FrameRate::new(30_000, 1_001).unwrap()
        );
        assert_eq!(nominal_rate(&cut(1_500.0, 60)), FrameRate::integer(60));
        assert_eq!(nominal_rate(&cut(7_500.0, 12)), FrameRate::integer(12));
        assert_eq!(nominal_rate(&cut(0.0, 1)), FrameRate::integer(1));
    }

    #[test]
    fn file_names_carry_their_epoch() {
        assert_eq!(part_name(2, 7, 3), "e2-00000007.p3.m4s");
        assert_eq!(file_epoch(&part_name(2, 7, 3)), Some(2));
        assert_eq!(file_epoch(".e2-00000007.p3.m4s.tmp"), Some(2));
        assert!(is_part_file("e2-00000007.p3.m4s"));
        assert!(is_part_file(".e2-00000007.p3.m4s.tmp"));
        assert!(!is_part_file("e2-00000007.m4s"));
        assert!(!is_part_file(".e2-00000007.m4s.tmp"));
        assert!(!is_part_file("e2-init.mp4"));
        assert_eq!(segment_name(2, 7), "e2-00000007.m4s");
        assert_eq!(file_epoch(&segment_name(2, 7)), Some(2));
        assert_eq!(file_epoch(&init_name(13)), Some(13));
        assert_eq!(file_epoch(".e4-00000001.m4s.tmp"), Some(4));
        assert_eq!(file_epoch(".ffmpeg-e3.m3u8"), Some(3));
        assert_eq!(file_epoch("hlsmark.redb"), None);
        assert_eq!(file_epoch("e-1.m4s"), None);
        assert_eq!(file_epoch("ex"), None);
    }

    #[test]
    fn segment_files_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = vec![
            Bytes::from_static(b"moof"),
            Bytes::from_static(b"mdat-data"),
        ];
        write_whole(dir.path(), "e0-00000001.m4s", &chunks).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("e0-00000001.m4s")).unwrap(),
            b"moofmdat-data"
        );
        assert!(!dir.path().join(".e0-00000001.m4s.tmp").exists());
    }
}
