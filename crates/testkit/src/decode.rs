//! What a decoder sees, with a real ffmpeg: every video frame's presentation time (90 kHz), the
//! colour of its top-left corner (mint or not) and its checksum; the onset of the beep in the
//! decoded audio; each stream's codec, profile, level and size (ffprobe).
//!
//! One ffmpeg run per file: `showinfo` logs every frame's PTS, time base and checksum, and the same
//! frames leave as RGB24 crops of the corner block's interior (`-fps_mode passthrough`: one output
//! frame per decoded frame, none duplicated or dropped), so times and pixels cannot disagree.
//! The same approach as the generator's tests (`corner_is_mint` over the block's interior, away
//! from the edges where chroma subsampling bleeds), with the corner cropped by ffmpeg.

use std::path::Path;
use std::process::Command;

use crate::require_program;

/// The mint colour (RGB) of the corner block during an event, as the generator draws it.
pub const MINT: [u8; 3] = [0, 255, 255];

/// One decoded video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// Presentation time in 90 kHz ticks (rescaled from the stream's time base, nearest tick).
    pub pts_90k: i64,
    /// Mean RGB over the corner block's interior.
    pub corner: [u8; 3],
    /// Whether that mean is mint (red low, green and blue high; grey content never is).
    pub mint: bool,
    /// Adler-32 of the whole decoded picture (ffmpeg's `showinfo` checksum): equal pictures,
    /// equal checksums, whatever container they came in.
    pub checksum: String,
    pub keyframe: bool,
}

/// Whether a mean corner colour is mint (tolerant of YUV 4:2:0 and lossy coding).
pub fn is_mint(rgb: [u8; 3]) -> bool {
    rgb[0] < 90 && rgb[1] > 170 && rgb[2] > 170
}

/// Side and offset (even, in decoded pixels) of the corner crop: the middle half of a
/// `block`-px block in a picture that was `src_width` wide when the block was drawn.
fn crop_geometry(decoded_width: u32, src_width: u32, block: u32) -> (u32, u32) {
    let side = 2 * (u64::from(decoded_width) * u64::from(block) / (4 * u64::from(src_width)));
    let off = 2 * (u64::from(decoded_width) * u64::from(block) / (8 * u64::from(src_width)));
    (
        u32::try_from(side).unwrap_or(0).max(2),
        u32::try_from(off).unwrap_or(0),
    )
}

fn rescale_90k(pts: i64, tb_num: i64, tb_den: i64) -> i64 {
    let num = i128::from(pts) * 90_000 * i128::from(tb_num);
    let den = i128::from(tb_den);
    let q = (2 * num + den).div_euclid(2 * den);
    i64::try_from(q).expect("pts in range")
}

/// Decodes the first video stream of `input` (a path or URL ffmpeg reads) and returns every frame
/// in presentation order. `src_width` and `block` say where the mint block was drawn (the crop is
/// scaled when the video was resized since).
pub fn decode_frames(input: impl AsRef<Path>, src_width: u32, block: u32) -> Vec<DecodedFrame> {
    require_program("ffmpeg");
    let input = input.as_ref();
    // First pass over the log is needed for the decoded size; ffprobe gives it cheaply.
    let width = probe_streams(input)
        .into_iter()
        .find(|s| s.kind == "video")
        .map(|s| s.width)
        .unwrap_or_else(|| panic!("{}: no video stream", input.display()));
    let (side, off) = crop_geometry(width, src_width, block);
    let vf = format!("showinfo,crop={side}:{side}:{off}:{off}");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostats",
            "-nostdin",
            "-loglevel",
            "info",
            // The file's own times, not shifted to start at zero (a segment starts where it
            // starts in the stream).
            "-copyts",
            "-i",
        ])
        .arg(input)
        .args(["-map", "0:v:0", "-fps_mode", "passthrough", "-vf", &vf])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("spawn ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}: {}",
        input.display(),
        tail(&log)
    );
    let (mut tb_num, mut tb_den) = (1i64, 90_000i64);
    let mut infos = Vec::new();
    for line in log.lines().filter(|l| l.contains("Parsed_showinfo_0")) {
        if let Some(tb) = field(line, "config in time_base:") {
            let tb = tb.trim_end_matches(',');
            if let Some((n, d)) = tb.split_once('/') {
                tb_num = n.parse().unwrap_or(1);
                tb_den = d.parse().unwrap_or(90_000);
            }
        } else if line.contains(" n:") && line.contains(" pts:") {
            let pts: i64 = field(line, "pts:")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no pts in {line}"));
            let checksum = field(line, "checksum:").unwrap_or_default().to_owned();
            let keyframe = field(line, "iskey:") == Some("1");
            infos.push((pts, checksum, keyframe));
        }
    }
    let size = (side * side * 3) as usize;
    assert_eq!(
        out.stdout.len(),
        infos.len() * size,
        "{}: {} frames logged, {} bytes of {side}x{side} crops",
        input.display(),
        infos.len(),
        out.stdout.len()
    );
    infos
        .into_iter()
        .zip(out.stdout.chunks_exact(size))
        .map(|((pts, checksum, keyframe), px)| {
            let corner = mean_rgb(px);
            DecodedFrame {
                pts_90k: rescale_90k(pts, tb_num, tb_den),
                corner,
                mint: is_mint(corner),
                checksum,
                keyframe,
            }
        })
        .collect()
}

/// The PTS (90 kHz) of every frame of `input` whose corner is mint.
pub fn mint_frames(input: impl AsRef<Path>, src_width: u32, block: u32) -> Vec<i64> {
    decode_frames(input, src_width, block)
        .into_iter()
        .filter(|f| f.mint)
        .map(|f| f.pts_90k)
        .collect()
}

/// The PTS (90 kHz) of the first mint frame of `input`, if any.
pub fn first_mint_frame(input: impl AsRef<Path>, src_width: u32, block: u32) -> Option<i64> {
    mint_frames(input, src_width, block).first().copied()
}

fn mean_rgb(px: &[u8]) -> [u8; 3] {
    let mut sum = [0u64; 3];
    for p in px.chunks_exact(3) {
        for c in 0..3 {
            sum[c] += u64::from(p[c]);
        }
    }
    let n = (px.len() / 3).max(1) as u64;
    sum.map(|s| u8::try_from(s / n).unwrap_or(u8::MAX))
}

/// The value after `key` in a showinfo line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = line.find(key)? + key.len();
    line[i..].split_whitespace().next()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// When the loud beep starts in the first audio stream of `input`, in 90 kHz ticks: the first
/// decoded sample above half the beep's amplitude (the background tone stays far below it). The
/// time is the decoded frame's PTS plus the sample's offset in it, so encoder delay and priming are
/// accounted for as a player would.
pub fn beep_onset_90k(input: impl AsRef<Path>) -> Option<i64> {
    require_program("ffmpeg");
    let input = input.as_ref();
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostats",
            "-nostdin",
            "-loglevel",
            "info",
            // The file's own times, not shifted to start at zero (a segment starts where it
            // starts in the stream).
            "-copyts",
            "-i",
        ])
        .arg(input)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "ashowinfo,aformat=sample_fmts=s16:channel_layouts=mono",
            "-f",
            "s16le",
            "-",
        ])
        .output()
        .expect("spawn ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg could not decode the audio of {}: {}",
        input.display(),
        tail(&log)
    );
    // ffmpeg feeds audio filters in 1/sample_rate: pts counts samples.
    let frames: Vec<(i64, usize, i64)> = log
        .lines()
        .filter(|l| l.contains("Parsed_ashowinfo_0") && l.contains(" pts:"))
        .map(|l| {
            let pts = field(l, "pts:").and_then(|v| v.parse().ok()).unwrap_or(0);
            let n = field(l, "nb_samples:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let rate = field(l, "rate:")
                .and_then(|v| v.parse().ok())
                .unwrap_or(48_000);
            (pts, n, rate)
        })
        .collect();
    let samples: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let total: usize = frames.iter().map(|f| f.1).sum();
    assert_eq!(
        total,
        samples.len(),
        "{}: samples logged vs decoded",
        input.display()
    );
    let threshold = i16::MAX / 5 * 2;
    let mut at = 0usize;
    for (pts, n, rate) in frames {
        if let Some(k) = samples[at..at + n]
            .iter()
            .position(|s| s.unsigned_abs() > threshold.unsigned_abs())
        {
            let sample = i128::from(pts) + k as i128;
            let t = (sample * 90_000 * 2 + i128::from(rate)).div_euclid(2 * i128::from(rate));
            return i64::try_from(t).ok();
        }
        at += n;
    }
    None
}

/// One stream as ffprobe describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// `video`, `audio`, ...
    pub kind: String,
    pub codec: String,
    /// e.g. `High`, `LC`.
    pub profile: String,
    /// H.264 level x 10 (e.g. 31), 0 for audio.
    pub level: i64,
    pub width: u32,
    pub height: u32,
    pub sample_rate: u32,
    pub channels: u32,
}

/// Every stream of `input` (ffprobe).
pub fn probe_streams(input: impl AsRef<Path>) -> Vec<StreamInfo> {
    require_program("ffprobe");
    let input = input.as_ref();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,profile,level,width,height,sample_rate,channels",
            "-of",
            "compact=p=0",
        ])
        .arg(input)
        .output()
        .expect("spawn ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut s = StreamInfo::default();
            for kv in l.split('|') {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                match k {
                    "codec_type" => s.kind = v.to_owned(),
                    "codec_name" => s.codec = v.to_owned(),
                    "profile" => s.profile = v.to_owned(),
                    "level" => s.level = v.parse().unwrap_or(0),
                    "width" => s.width = v.parse().unwrap_or(0),
                    "height" => s.height = v.parse().unwrap_or(0),
                    "sample_rate" => s.sample_rate = v.parse().unwrap_or(0),
                    "channels" => s.channels = v.parse().unwrap_or(0),
                    _ => {}
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescales_to_the_nearest_tick() {
        assert_eq!(rescale_90k(3600, 1, 90_000), 3600);
        assert_eq!(rescale_90k(33, 1, 1000), 2970);
        assert_eq!(rescale_90k(1, 1001, 30_000), 3003);
        assert_eq!(rescale_90k(-1, 1, 25), -3600);
    }

    #[test]
    fn crop_is_the_middle_half_of_the_block_scaled() {
        assert_eq!(crop_geometry(320, 320, 32), (16, 8));
        assert_eq!(crop_geometry(160, 320, 32), (8, 4));
        assert!(is_mint([10, 240, 250]) && !is_mint([128, 128, 128]));
    }
}
