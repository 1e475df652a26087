//! The ffmpeg child: its argument list (built in exactly one place, [`ffmpeg_args`]), file naming,
//! the start-up check, and spawning with stderr routed to our log.
//!
//! ffmpeg only encodes and cuts. Its own playlist goes to a private dot-file that we read to learn
//! that a segment is finished; viewers get playlists rendered from the store.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use hlsmark_clock::{FrameRate, HlsTime, SeqNo};
use tokio::io::AsyncBufReadExt;

use crate::GeneratorError;

/// What one ffmpeg run (one epoch) produces.
#[derive(Debug, Clone)]
pub struct FfmpegJob {
    pub width: u32,
    pub height: u32,
    pub fps: FrameRate,
    pub segment_frames: u32,
    pub epoch_index: u32,
    pub first_seq: SeqNo,
    /// Media time of the epoch's first frame: written into the fMP4 `tfdt` via `-output_ts_offset`.
    pub hls_start: HlsTime,
    /// The stream's segment directory.
    pub dir: PathBuf,
}

/// `e{epoch}-{seq:08}.m4s`
pub fn segment_name(epoch: u32, seq: SeqNo) -> String {
    format!("e{epoch}-{seq:08}.m4s")
}

/// `e{epoch}-init.mp4`
pub fn init_name(epoch: u32) -> String {
    format!("e{epoch}-init.mp4")
}

/// ffmpeg's private playlist of an epoch (an input for us, never served).
pub fn private_playlist(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!(".ffmpeg-e{epoch}.m3u8"))
}

/// Ticks as ffmpeg's duration syntax (`S.uuuuuu`), rounded to the microsecond. ffmpeg rounds back to
/// the nearest 90 kHz tick, and a tick (11.1 µs) is more than twice a microsecond, so the round
/// trip is exact.
fn ffmpeg_secs(ticks: i64) -> String {
    let micros = (i128::from(ticks) * 100 + 4) / 9;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The whole ffmpeg command line after the program name.
///
/// Why each group is there:
/// * rawvideo RGB24 from stdin at the exact rational frame rate: frame n has PTS n/fps.
/// * libx264 veryfast/zerolatency (no B-frames, no lookahead), High profile and yuv420p: plays in
///   every browser's MSE.
/// * A keyframe exactly every `segment_frames` frames and nowhere else (`-g`, `-keyint_min`,
///   `-sc_threshold 0`, `-force_key_frames` on the frame number): the segmenter can only cut at
///   keyframes, so segments are exactly `segment_frames` long.
/// * `-hls_time` half a frame below the segment length, so every keyframe is a cut whatever the
///   rounding of the muxer's running total.
/// * `-output_ts_offset` = the epoch's HLS start and a 90 kHz track timescale: the fMP4 `tfdt` of
///   every segment is its HLS time in ticks.
pub fn ffmpeg_args(job: &FfmpegJob) -> Vec<OsString> {
    let s = job.segment_frames;
    let seg_ticks = job.fps.frame_to_ticks(i64::from(s)).ticks();
    let half_frame = job.fps.frame_to_ticks(1).ticks() / 2;
    let mut seg_pattern = job
        .dir
        .join(format!("e{}-", job.epoch_index))
        .into_os_string();
    seg_pattern.push("%08d.m4s");
    let args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        &format!("{}x{}", job.width, job.height),
        "-framerate",
        &format!("{}/{}", job.fps.num(), job.fps.den()),
        "-i",
        "pipe:0",
        "-an",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &s.to_string(),
        "-keyint_min",
        &s.to_string(),
        "-sc_threshold",
        "0",
        "-force_key_frames",
        &format!("expr:eq(mod(n,{s}),0)"),
        "-output_ts_offset",
        &ffmpeg_secs(job.hls_start.ticks()),
        "-f",
        "hls",
        "-hls_segment_type",
        "fmp4",
        "-hls_time",
        &ffmpeg_secs(seg_ticks - half_frame),
        "-hls_list_size",
        "30",
        "-hls_flags",
        "temp_file",
        "-start_number",
        &job.first_seq.to_string(),
        "-hls_fmp4_init_filename",
        &init_name(job.epoch_index),
        "-hls_segment_options",
        "video_track_timescale=90000",
        "-hls_segment_filename",
    ]
    .iter()
    .map(OsString::from)
    .chain([
        seg_pattern,
        private_playlist(&job.dir, job.epoch_index).into_os_string(),
    ])
    .collect();
    args
}

/// Checks at start-up that the ffmpeg binary runs and has libx264; returns its version line.
pub async fn check_ffmpeg(path: &Path) -> Result<String, GeneratorError> {
    let out = tokio::process::Command::new(path)
        .args(["-hide_banner", "-encoders"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(GeneratorError::FfmpegMissing {
                path: path.to_owned(),
            });
        }
        Err(e) => {
            return Err(GeneratorError::FfmpegBroken {
                path: path.to_owned(),
                why: e.to_string(),
            });
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("libx264") {
        return Err(GeneratorError::FfmpegBroken {
            path: path.to_owned(),
            why: "it has no libx264 encoder (Debian's ffmpeg package has it)".into(),
        });
    }
    let version = tokio::process::Command::new(path)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .await
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    Ok(version)
}

/// Starts ffmpeg for `job` with stdin piped and stderr forwarded to `tracing` (target `ffmpeg`).
pub fn spawn(ffmpeg: &Path, job: &FfmpegJob) -> Result<tokio::process::Child, GeneratorError> {
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(ffmpeg_args(job))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GeneratorError::FfmpegMissing {
                path: ffmpeg.to_owned(),
            },
            _ => GeneratorError::Io {
                context: format!("starting {}", ffmpeg.display()),
                source: e,
            },
        })?;
    if let Some(stderr) = child.stderr.take() {
        let epoch = job.epoch_index;
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "ffmpeg", epoch, "{line}");
            }
        });
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(job: &FfmpegJob) -> Vec<String> {
        ffmpeg_args(job)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn value<'a>(a: &'a [String], flag: &str) -> &'a str {
        let i = a.iter().position(|x| x == flag).expect(flag);
        &a[i + 1]
    }

    #[test]
    fn argument_list_encodes_the_timeline() {
        let job = FfmpegJob {
            width: 160,
            height: 96,
            fps: FrameRate::new(30_000, 1_001).unwrap(),
            segment_frames: 30,
            epoch_index: 3,
            first_seq: 42,
            hls_start: HlsTime(42 * 90_090),
            dir: PathBuf::from("/d/hls/live"),
        };
        let a = args(&job);
        assert_eq!(value(&a, "-f"), "rawvideo");
        assert_eq!(value(&a, "-pix_fmt"), "rgb24");
        assert_eq!(value(&a, "-s"), "160x96");
        assert_eq!(value(&a, "-framerate"), "30000/1001");
        assert_eq!(value(&a, "-i"), "pipe:0");
        assert_eq!(value(&a, "-c:v"), "libx264");
        assert_eq!(value(&a, "-tune"), "zerolatency");
        assert_eq!(value(&a, "-g"), "30");
        assert_eq!(value(&a, "-keyint_min"), "30");
        assert_eq!(value(&a, "-sc_threshold"), "0");
        assert_eq!(value(&a, "-force_key_frames"), "expr:eq(mod(n,30),0)");
        // 42 segments of 1.001 s.
        assert_eq!(value(&a, "-output_ts_offset"), "42.042000");
        // 1.001 s minus half a frame (1501 ticks = 16.678 ms).
        assert_eq!(value(&a, "-hls_time"), "0.984322");
        assert_eq!(value(&a, "-hls_segment_type"), "fmp4");
        assert_eq!(value(&a, "-start_number"), "42");
        assert_eq!(value(&a, "-hls_fmp4_init_filename"), "e3-init.mp4");
        assert_eq!(
            value(&a, "-hls_segment_options"),
            "video_track_timescale=90000"
        );
        assert_eq!(
            value(&a, "-hls_segment_filename"),
            "/d/hls/live/e3-%08d.m4s"
        );
        assert_eq!(a.last().unwrap(), "/d/hls/live/.ffmpeg-e3.m3u8");
        // pix_fmt appears twice: rgb24 for the input, yuv420p for the output, in that order.
        let pf: Vec<_> = a
            .iter()
            .enumerate()
            .filter(|(_, x)| *x == "-pix_fmt")
            .map(|(i, _)| a[i + 1].as_str())
            .collect();
        assert_eq!(pf, ["rgb24", "yuv420p"]);
        let input = a.iter().position(|x| x == "-i").unwrap();
        assert!(a.iter().position(|x| x == "-output_ts_offset").unwrap() > input);
    }

    #[test]
    fn seconds_round_trip_through_microseconds() {
        assert_eq!(ffmpeg_secs(0), "0.000000");
        assert_eq!(ffmpeg_secs(90_000), "1.000000");
        assert_eq!(ffmpeg_secs(1), "0.000011");
        assert_eq!(ffmpeg_secs(3_003), "0.033367");
        for t in [1i64, 2, 3_003, 123_456_789, 90_000 * 86_400 * 365 + 7] {
            let us: i128 = ffmpeg_secs(t).replace('.', "").parse().unwrap();
            assert_eq!((us * 9 + 50) / 100, i128::from(t), "{t}");
        }
        assert_eq!(segment_name(2, 7), "e2-00000007.m4s");
    }
}
