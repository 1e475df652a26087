//! Test clips made by a real ffmpeg: H.264 (+ AAC) with a mint block in the top-left corner on known
//! frames, over grey moving content that is far from mint, at a constant, variable or gappy frame
//! rate. [`make_clip`] returns the presentation time (90 kHz) of every frame as ffmpeg decodes the
//! file, so a test compares against what a decoder sees, not against what we meant to write.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::decode::{self, DecodedFrame};
use crate::require_program;

/// How frame times advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// Every frame lasts `den / num` s.
    Constant,
    /// Frame durations cycle 1.25, 1.25, 0.5 nominal frames (mean: the nominal rate), so no two
    /// neighbouring gaps tell the rate.
    Variable,
    /// Constant up to this source frame, then frames late by 0, 1001 and 2002 ticks in turn: the
    /// gaps (nominal +1001, +1001, -2002) share no divisor a frame rate could have, so ffmpeg
    /// guesses the nominal rate, on whose grid the later frames do not fall (a camera that changes
    /// its rate, a file cut from several).
    VariableFrom(u32),
    /// Constant rate with these source frames left out (their times stay empty: a camera that
    /// dropped them).
    Dropped(Vec<u32>),
}

/// The container the clip is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Mkv,
    MpegTs,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mkv => "mkv",
            Container::MpegTs => "ts",
        }
    }
}

/// What to make. `ClipSpec::new(name)` gives 25 fps, 320x180, 4 s, mint on frames 40..50, a
/// keyframe every second, no B-frames, no audio, mp4.
#[derive(Debug, Clone)]
pub struct ClipSpec {
    /// File stem (the clip is `<dir>/<name>.<ext>`).
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Nominal rate `fps_num / fps_den` (e.g. 30000/1001).
    pub fps_num: u32,
    pub fps_den: u32,
    /// Source frames generated (before any are dropped).
    pub frames: u32,
    /// Source frame indices that show the mint block.
    pub mint: Range<u32>,
    /// Side of the mint block, px (even).
    pub block: u32,
    pub timing: Timing,
    /// A keyframe every `gop` source frames (0: every nominal second).
    pub gop: u32,
    /// B-frames between references (0: none, like most cameras).
    pub bframes: u32,
    /// AAC 48 kHz mono: a quiet 440 Hz tone and a loud 1 kHz beep of `beep_ms` that starts exactly
    /// at the first mint frame's presentation time.
    pub audio: bool,
    pub beep_ms: u32,
    pub container: Container,
    /// x264 bitrate in kbit/s (0: CRF 23).
    pub bitrate_kbps: u32,
}

impl ClipSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            width: 320,
            height: 180,
            fps_num: 25,
            fps_den: 1,
            frames: 100,
            mint: 40..50,
            block: 32,
            timing: Timing::Constant,
            gop: 0,
            bframes: 0,
            audio: false,
            beep_ms: 200,
            container: Container::Mp4,
            bitrate_kbps: 0,
        }
    }

    pub fn fps(mut self, num: u32, den: u32) -> Self {
        self.fps_num = num;
        self.fps_den = den;
        self
    }

    pub fn frames(mut self, n: u32) -> Self {
        self.frames = n;
        self
    }

    pub fn mint(mut self, frames: Range<u32>) -> Self {
        self.mint = frames;
        self
    }

    pub fn timing(mut self, t: Timing) -> Self {
        self.timing = t;
        self
    }

    pub fn audio(mut self, on: bool) -> Self {
        self.audio = on;
        self
    }

    pub fn bframes(mut self, n: u32) -> Self {
        self.bframes = n;
        self
    }

    pub fn container(mut self, c: Container) -> Self {
        self.container = c;
        self
    }

    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Frames per keyframe: `gop`, or one nominal second.
    pub fn gop_frames(&self) -> u32 {
        if self.gop > 0 {
            self.gop
        } else {
            self.fps_num.div_ceil(self.fps_den).max(1)
        }
    }

    /// The intended presentation time of source frame `n`, in seconds as an ffmpeg expression
    /// (exact rational arithmetic in ffmpeg's double evaluator) and in 90 kHz ticks (rounded to the
    /// nearest tick, as ffmpeg's rescaling does).
    fn nominal_90k(&self, n: u32) -> i64 {
        // quarter-frames: n*4 (+1 or +2 for the variable pattern)
        let quarters = i64::from(n) * 4 + self.variable_quarters(n);
        let num = quarters * 90_000 * i64::from(self.fps_den);
        let den = 4 * i64::from(self.fps_num);
        (num + den / 2).div_euclid(den) + self.late_ticks(n)
    }

    fn late_ticks(&self, n: u32) -> i64 {
        match self.timing {
            Timing::VariableFrom(k) if n >= k => i64::from(n % 3) * 1001,
            _ => 0,
        }
    }

    fn variable_quarters(&self, n: u32) -> i64 {
        match self.timing {
            Timing::Variable => i64::from(n % 3),
            _ => 0,
        }
    }

    /// Nominal length in seconds (source frames / rate): where the audio is cut.
    fn duration_secs(&self) -> f64 {
        f64::from(self.frames) * f64::from(self.fps_den) / f64::from(self.fps_num)
    }
}

/// A made clip, with what a decoder sees in it.
#[derive(Debug, Clone)]
pub struct Clip {
    pub path: PathBuf,
    pub spec: ClipSpec,
    /// Every decoded frame in presentation order (PTS in 90 kHz ticks, corner colour, checksum).
    pub frames: Vec<DecodedFrame>,
    /// Presentation time (90 kHz) of the first mint frame.
    pub first_mint_90k: i64,
    /// Presentation time of the last frame before it (not mint).
    pub before_mint_90k: i64,
    /// When the beep starts (90 kHz), if the clip has audio: measured in the decoded audio.
    pub beep_90k: Option<i64>,
    /// The end of the last frame (90 kHz): the clip's length as a looping source repeats it.
    pub duration_90k: i64,
}

impl Clip {
    /// PTS (90 kHz) of every decoded frame.
    pub fn pts_90k(&self) -> Vec<i64> {
        self.frames.iter().map(|f| f.pts_90k).collect()
    }

    /// Mean frame duration in ticks (for "half a frame" offsets).
    pub fn nominal_frame_90k(&self) -> i64 {
        90_000 * i64::from(self.spec.fps_den) / i64::from(self.spec.fps_num)
    }
}

/// Builds `<dir>/<name>.<ext>` with ffmpeg and decodes it back (see [`Clip`]). Panics with
/// ffmpeg's message when ffmpeg fails, and when the decoded clip is not what the spec asked for
/// (the mint block on exactly the mint frames that were kept), so a broken fixture never passes
/// silently.
pub fn make_clip(dir: &Path, spec: &ClipSpec) -> Clip {
    require_program("ffmpeg");
    let path = dir.join(format!("{}.{}", spec.name, spec.container.extension()));
    let rate = format!("{}/{}", spec.fps_num, spec.fps_den);
    let b = spec.block;
    let mut vf = format!(
        "testsrc2=size={w}x{h}:rate={rate},hue=s=0,\
         drawbox=x=0:y=0:w={b}:h={b}:color=0x00FFFF@1:t=fill:enable='between(n,{m0},{m1})',\
         settb=1/90000",
        w = spec.width,
        h = spec.height,
        m0 = spec.mint.start,
        m1 = spec.mint.end.saturating_sub(1),
    );
    match &spec.timing {
        Timing::Constant => {}
        Timing::Variable => vf.push_str(&format!(
            ",setpts='(N+0.25*mod(N,3))*{}/({}*TB)'",
            spec.fps_den, spec.fps_num
        )),
        // (TB is 1/90000 after settb.)
        Timing::VariableFrom(k) => vf.push_str(&format!(
            ",setpts='N*{}/({}*TB)+gte(N,{k})*mod(N,3)*1001'",
            spec.fps_den, spec.fps_num
        )),
        Timing::Dropped(drop) => {
            let terms: Vec<String> = drop.iter().map(|n| format!("eq(n,{n})")).collect();
            if !terms.is_empty() {
                vf.push_str(&format!(",select='not({})'", terms.join("+")));
            }
        }
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", &vf]);
    let first_mint = first_kept_mint(spec);
    if spec.audio {
        let t0 = format!("{}/90000", spec.nominal_90k(first_mint));
        let t1 = format!("({t0}+{}/1000)", spec.beep_ms);
        let expr = format!(
            "aevalsrc='0.05*sin(2*PI*440*t)+if(gte(t,{t0})*lt(t,{t1}),0.8*sin(2*PI*1000*(t-{t0})),0)':s=48000:c=mono"
        );
        cmd.args(["-f", "lavfi", "-i", &expr]);
    }
    // The video's source frame count bounds the clip; audio is cut to the same length.
    let total_frames = spec.frames
        - match &spec.timing {
            Timing::Dropped(d) => {
                u32::try_from(d.iter().filter(|n| **n < spec.frames).count()).unwrap_or(0)
            }
            _ => 0,
        };
    cmd.args(["-map", "0:v:0", "-frames:v", &total_frames.to_string()]);
    let gop = spec.gop_frames().to_string();
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-bf",
        &spec.bframes.to_string(),
        "-fps_mode",
        "passthrough",
        "-enc_time_base:v",
        "1/90000",
    ]);
    if spec.bitrate_kbps > 0 {
        let br = format!("{}k", spec.bitrate_kbps);
        cmd.args(["-b:v", &br, "-maxrate", &br, "-bufsize", &br]);
    }
    if spec.audio {
        cmd.args([
            "-map", "1:a:0", "-c:a", "aac", "-b:a", "96k", "-ar", "48000",
        ]);
        cmd.args(["-t", &format!("{:.6}", spec.duration_secs())]);
    }
    match spec.container {
        Container::Mp4 => {
            cmd.args(["-video_track_timescale", "90000", "-f", "mp4"]);
        }
        Container::Mkv => {
            cmd.args(["-f", "matroska"]);
        }
        Container::MpegTs => {
            cmd.args(["-f", "mpegts"]);
        }
    }
    cmd.arg(&path);
    let out = cmd.output().expect("spawn ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not make {}: {}\n{cmd:?}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    let frames = decode::decode_frames(&path, spec.width, spec.block);
    assert_eq!(
        frames.len(),
        total_frames as usize,
        "{}: decoded frame count",
        path.display()
    );
    let kept: Vec<u32> = (0..spec.frames)
        .filter(|n| !matches!(&spec.timing, Timing::Dropped(d) if d.contains(n)))
        .collect();
    for (f, n) in frames.iter().zip(&kept) {
        assert_eq!(
            f.mint,
            spec.mint.contains(n),
            "{}: source frame {n} (pts {}) mint={} corner {:?}",
            path.display(),
            f.pts_90k,
            f.mint,
            f.corner
        );
    }
    let i = frames
        .iter()
        .position(|f| f.mint)
        .expect("the clip has a mint frame");
    assert!(i > 0, "the first frame must not be mint");
    let last = frames.last().expect("frames");
    let last_len = if frames.len() >= 2 {
        last.pts_90k - frames[frames.len() - 2].pts_90k
    } else {
        90_000 * i64::from(spec.fps_den) / i64::from(spec.fps_num)
    };
    let beep_90k = spec
        .audio
        .then(|| decode::beep_onset_90k(&path).expect("the beep is in the decoded audio"));
    Clip {
        path,
        spec: spec.clone(),
        first_mint_90k: frames[i].pts_90k,
        before_mint_90k: frames[i - 1].pts_90k,
        beep_90k,
        duration_90k: last.pts_90k + last_len.max(1),
        frames,
    }
}

fn first_kept_mint(spec: &ClipSpec) -> u32 {
    spec.mint
        .clone()
        .find(|n| !matches!(&spec.timing, Timing::Dropped(d) if d.contains(n)))
        .expect("at least one mint frame is kept")
}
