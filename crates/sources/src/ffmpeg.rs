//! The ffmpeg child's command line for every source kind (built in exactly one place,
//! [`ffmpeg_args`]) and the start-up check of the ffmpeg binary.
//!
//! ffmpeg reads the source (or the generator's frames on stdin), encodes or copies, and writes
//! one fragmented MP4 stream to stdout; hlsmark reads it box by box and cuts the segments itself
//! (`pipeline.rs`), so ffmpeg never writes a file or a playlist.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use hlsmark_clock::Duration90k;

use crate::config::StreamConfig;
use crate::encode::{AudioMode, VideoMode};
use crate::source::{Source, SourceError};

/// Ticks as ffmpeg's duration syntax (`S.uuuuuu`), rounded to the microsecond. ffmpeg rounds back to
/// the nearest 90 kHz tick, and a tick (11.1 µs) is more than twice a microsecond, so the round
/// trip is exact.
fn ffmpeg_secs(ticks: i64) -> String {
    let micros = (i128::from(ticks) * 100 + 4) / 9;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The whole ffmpeg command line after the program name, for any source. Output: fragmented MP4
/// on `pipe:1` (see `design/sources.md`). Same as [`ffmpeg_args_at`] from GEN frame 0.
pub fn ffmpeg_args(cfg: &StreamConfig) -> Vec<OsString> {
    ffmpeg_args_at(cfg, 0)
}

/// [`ffmpeg_args`] for an epoch whose first generator frame is `first_frame` (only the tone, which
/// follows the event schedule, depends on it; other sources ignore it).
///
/// Why each group is there:
/// * Input per source kind: rawvideo RGB24 on stdin at the exact rational rate for the generator
///   (frame n has PTS n/fps); files looped unless `--loop false` and read as fast as the read
///   loop takes them (it paces; no `-re`);
///   `-follow 1` on the file protocol, not seekable and a short probe for growing files; TCP
///   and a socket timeout for RTSP; reconnects and a read timeout for HTTP; wall-clock capture
///   times for V4L2.
/// * libx264 veryfast/zerolatency (no B-frames, no lookahead), High profile and yuv420p: plays in
///   every browser's MSE. Keyframes at every segment target: for the generator exactly every S
///   frames and nowhere else (`-g`, `-keyint_min`, `-sc_threshold 0`, frame-count expression), so
///   every segment has exactly S frames; for other sources at the first frame one target after
///   the previous keyframe (`gte(t-prev_forced_t,D)`), passing every frame through (`-fps_mode
///   passthrough`: a variable-rate source keeps its frame times, nothing duplicated or dropped)
///   on a 90 kHz encoder clock (`-enc_time_base:v 1:90000`; the default, 1 / the rate guessed
///   from the first frames, moved later frames off that grid onto it).
/// * fMP4 with an empty moov (the init segment comes first), a fragment at every keyframe and at
///   least every 200 ms (LL-HLS parts), video at 90 kHz so its times are HLS ticks once rebased,
///   flushed at every fragment so the segmenter sees it at once. Each track's first `tfdt` is
///   its own first decode time (made non-negative for all tracks at once), so audio and video
///   keep their offset, and no first sample is stretched to start at zero (the muxer's default,
///   which would move frame 0).
/// * AAC's encoder delay: its first packet holds 1024 priming samples and starts 1024 samples
///   before its input. Audio starting at 0 would give a packet at -21.3 ms and the muxer would
///   shift every track by it, so a frame's PTS would no longer be the source's (nor frame 0 at 0
///   for the generator). So the audio's first 1024 samples give way to the priming (`atrim`
///   keeps times): the priming packet starts at 0 and every later sample plays at its own time
///   in a player that does not trim priming (fMP4 without an edit list: browsers and ffmpeg
///   alike). A sound in an epoch's first 21 ms is cut; nothing else changes.
/// * A copied stream with B-frames starts with a negative decode time: in copy mode nothing is
///   made non-negative (`-avoid_negative_ts disabled`; the tfdt is written as two's complement
///   and read back signed), so every frame's PTS is the source's.
pub fn ffmpeg_args_at(cfg: &StreamConfig, first_frame: i64) -> Vec<OsString> {
    let mut a = Args::default();
    // Info for the input's dump (its start time: `RunSpec::input_start`), each line tagged with
    // its level so that only warnings and errors are logged as such and kept as a reason.
    a.push_all(&["-hide_banner", "-loglevel", "level+info", "-nostats"]);
    let generator = cfg.source.is_generator();
    if !generator {
        // stdin is the generator's frame pipe; nobody else's ffmpeg may read the terminal.
        a.push("-nostdin");
    }
    input(&mut a, cfg);
    let tone = generator && cfg.encoding.tone && cfg.encoding.audio == AudioMode::Auto;
    if tone {
        a.push_all(&["-f", "lavfi", "-i"]);
        a.push(tone_source(cfg, first_frame));
    }

    a.push_all(&["-map", "0:v:0"]);
    let audio = if generator {
        if tone {
            a.push_all(&["-map", "1:a:0"]);
        }
        tone
    } else if cfg.encoding.audio == AudioMode::Auto {
        a.push_all(&["-map", "0:a:0?"]);
        true
    } else {
        false
    };

    match cfg.encoding.video {
        VideoMode::Copy => a.push_all(&["-c:v", "copy"]),
        VideoMode::Encode => encode_video(&mut a, cfg),
    }
    if audio {
        // No -b:a: the aac encoder's default for stereo is 128 kb/s, and an unused -b:a (a source
        // without audio behind `0:a:0?`) is a warning at every start. The first 1024 samples
        // (21.3 ms) give way to AAC's priming; see `ffmpeg_args_at`.
        a.push_all(&["-c:a", "aac", "-ar", "48000", "-ac", "2", "-af"]);
        // A looped file: ffmpeg moves every stream on by the file's duration at each loop, which
        // counts an AAC source's priming frame, so the audio's timestamps jump 21.3 ms past its
        // last sample; `async=1` alone lets gaps under 100 ms pass (the audio stays contiguous)
        // and the sound ran one AAC frame further ahead of the picture at every loop (85 ms
        // after four). Filling gaps from 10 ms keeps it on its timestamps. Live sources keep
        // the default: their timestamps jitter.
        let fill = if matches!(cfg.source, Source::File { looped: true, .. }) {
            ":min_hard_comp=0.01"
        } else {
            ""
        };
        a.push(format!(
            "aresample=48000:async=1{fill},atrim=start_sample={AAC_PRIMING}"
        ));
    } else {
        a.push("-an");
    }
    if tone {
        // The tone never ends: the epoch ends with the generator's frames.
        a.push("-shortest");
    }
    // Every track's tfdt is its first packet's own time (`frag_discont`, no edit list), shifted
    // only to make the earliest packet non-negative (AAC's 1024 priming samples come before the
    // first frame): tracks keep their offsets to each other, and no first sample is stretched to
    // start at zero (the muxer's default, which would move frame 0 and break frame times).
    // A copied stream with B-frames starts with a negative decode time: written as it is
    // (two's complement tfdt, read back signed by hlsmark-media), so every PTS stays the
    // source's; the pipeline's rebasing makes the segments non-negative.
    let negative_ts = match cfg.encoding.video {
        VideoMode::Copy => "disabled",
        VideoMode::Encode => "make_non_negative",
    };
    a.push_all(&["-use_editlist", "0", "-avoid_negative_ts", negative_ts]);
    a.push_all(&[
        "-f",
        "mp4",
        "-movflags",
        "empty_moov+default_base_moof+frag_keyframe+frag_discont",
    ]);
    // A fragment at least every part duration (each one is an LL-HLS part); without parts
    // (`--part-duration 0`) only at keyframes: one fragment per segment.
    if !cfg.part_duration.is_zero() {
        a.push("-frag_duration");
        a.push(cfg.part_duration.as_micros().to_string());
    }
    a.push_all(&[
        "-video_track_timescale",
        "90000",
        "-flush_packets",
        "1",
        "pipe:1",
    ]);
    preview_output(&mut a, cfg);
    a.0
}

/// The preview branch, a second output of the same ffmpeg (only while the preview tap reads its
/// FIFO): the video decoded once more at `fps`, scaled to `width` and the height its display
/// aspect gives (even; an anamorphic source's sample aspect ratio is applied, square pixels out:
/// browsers ignore a JPEG's pixel aspect, so its previews looked squashed), as JPEG pictures
/// (`-q:v 5`: about 15-30 KB at 480x270), each flushed to the FIFO as it is made. Nothing of it
/// reaches the HLS output; for a copied stream it is the only decoding ffmpeg does.
fn preview_output(a: &mut Args, cfg: &StreamConfig) {
    let Some(p) = cfg.preview.as_ref().filter(|p| p.is_up()) else {
        return;
    };
    a.push_all(&["-map", "0:v:0", "-an", "-sn", "-dn", "-vf"]);
    a.push(format!(
        "fps={fps},scale={w}:'trunc({w}*ih/(iw*sar)/2)*2',setsar=1",
        fps = p.fps,
        w = p.width
    ));
    a.push_all(&[
        "-c:v",
        "mjpeg",
        "-q:v",
        "5",
        "-f",
        "image2pipe",
        "-flush_packets",
        "1",
        // The FIFO exists (the tap made it): "overwrite" it instead of refusing. A global
        // option; the only other output is a pipe, which it does not touch.
        "-y",
    ]);
    a.push(
        cfg.stream_dir()
            .join(crate::preview_tap::PREVIEW_FIFO)
            .into_os_string(),
    );
}

/// The input options and `-i` of the stream's source.
fn input(a: &mut Args, cfg: &StreamConfig) {
    match &cfg.source {
        // A page's pictures are decoded and paced by hlsmark exactly like the generator's frames.
        Source::Generator | Source::Page { .. } => {
            a.push_all(&["-f", "rawvideo", "-pix_fmt", "rgb24", "-s"]);
            a.push(format!("{}x{}", cfg.width, cfg.height));
            a.push("-framerate");
            a.push(format!("{}/{}", cfg.fps.num(), cfg.fps.den()));
            a.push_all(&["-i", "pipe:0"]);
        }
        Source::File { path, looped } => {
            // No `-re`: the read loop paces ffmpeg's output (the pipe holds ffmpeg back), so the
            // first segment is read at disk speed instead of in a second of real time.
            if *looped {
                a.push_all(&["-stream_loop", "-1"]);
            }
            // A file's headers describe its streams; 1 s / 2 MB of probing is plenty, and the
            // default (5 s / 5 MB, read under -re) held the first output back ~0.4 s: launch time.
            a.push_all(&[
                "-fflags",
                "+genpts",
                "-analyzeduration",
                "1000000",
                "-probesize",
                "2000000",
                "-i",
            ]);
            a.push(file_url(path));
        }
        Source::Follow { path } => {
            // A seekable input makes the probe read the end of the file for its duration, and
            // with -follow that end is where it waits for growth: start-up took 5 s on a file
            // growing in real time. Non-seekable and 1 s of analysis: about 1 s.
            a.push_all(&[
                "-re",
                "-follow",
                "1",
                "-seekable",
                "0",
                "-analyzeduration",
                "1000000",
                "-i",
            ]);
            a.push(file_url(path));
        }
        Source::Rtsp { url } => {
            a.push_all(&["-rtsp_transport", "tcp", "-timeout", "5000000", "-i"]);
            a.push(url.as_str());
        }
        Source::Http { url } => {
            a.push_all(&[
                "-reconnect",
                "1",
                "-reconnect_streamed",
                "1",
                "-reconnect_delay_max",
                "5",
                "-rw_timeout",
                "10000000",
            ]);
            // An HLS source starts at its newest segment, not three back (ffmpeg's default):
            // the backlog would arrive as a burst, and PDT anchored on it runs seconds ahead.
            if cfg.source.is_hls_playlist() {
                a.push_all(&["-live_start_index", "-1"]);
            }
            if cfg.stamp_arrival {
                // Motion JPEG has no timestamps: each picture's is when it arrived.
                a.push_all(&["-use_wallclock_as_timestamps", "1"]);
            }
            a.push("-i");
            a.push(url.as_str());
        }
        Source::V4l2 { device } => {
            a.push_all(&["-f", "v4l2", "-use_wallclock_as_timestamps", "1", "-i"]);
            a.push(device.as_os_str());
        }
    }
}

/// `file:PATH`: the file protocol by name, so a path with a colon or a leading dash is never read
/// as another protocol or an option.
fn file_url(path: &Path) -> OsString {
    let mut s = OsString::from("file:");
    s.push(path.as_os_str());
    s
}

/// libx264, the size and CRF from the quality knob, keyframes at every segment target.
fn encode_video(a: &mut Args, cfg: &StreamConfig) {
    let (scale, crf) = cfg.encoding.scale_and_crf();
    a.push_all(&[
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
        "-crf",
    ]);
    a.push(crf.to_string());
    if cfg.source.is_generator() {
        // The generator's size is known: scale only when the quality knob changes it.
        let (w, h) = scale.apply(cfg.width, cfg.height);
        if (w, h) != (cfg.width, cfg.height) {
            a.push("-vf");
            a.push(format!("scale={w}:{h}"));
        }
        let s = cfg.segment_frames().to_string();
        a.push_all(&["-g", &s, "-keyint_min", &s, "-sc_threshold", "0"]);
        a.push("-force_key_frames");
        a.push(format!("expr:eq(mod(n,{s}),0)"));
    } else {
        a.push("-vf");
        a.push(scale.filter());
        // The encoder's clock is 90 kHz, not ffmpeg's default 1 / the rate guessed from the
        // first frames: a frame off that grid (a rate that changes, a file cut from several)
        // would be moved onto it, away from its source time.
        a.push_all(&[
            "-fps_mode",
            "passthrough",
            "-enc_time_base:v",
            "1:90000",
            "-force_key_frames",
        ]);
        a.push(keyframe_expr(cfg.segment_target().ticks()));
    }
}

/// A source's keyframes: the first frame (whatever its time), then the first frame at least one
/// target after the previous keyframe, less 1 ms against rounding in ffmpeg's `t`. Measured from the previous keyframe,
/// as the segmenter measures a segment, so every keyframe closes a segment. A fixed grid
/// (`gte(t,n_forced*D)`) drifts against a source whose frames do not divide the target (29.97 and
/// 59.94 fps): every ~30 s a keyframe fell a frame short of `target - half a frame`, the
/// segmenter skipped it and published a segment of twice the target.
fn keyframe_expr(target_ticks: i64) -> String {
    let d = ffmpeg_secs(target_ticks.saturating_sub(90).max(1));
    format!("expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,{d}))")
}

/// Events written into one epoch's tone. The whole graph is one argument (Linux allows 128 KiB
/// per argument); 3000 events take at most ~90 KiB, about 10 hours at the default event rate.
/// Later events of a longer epoch get no beep (the tone goes on); the next epoch starts afresh.
pub const TONE_MAX_EVENTS: usize = 3000;

/// The generator's tone as a lavfi source: a quiet 440 Hz tone (-34 dBFS) plus a 1 kHz beep
/// (-10 dBFS, ~100 ms) from the first frame of every event of the next [`TONE_MAX_EVENTS`].
///
/// Sync is by construction, not by pacing: lavfi is read as fast as ffmpeg likes, but both inputs
/// start at time 0 of the epoch (GEN frame `first_frame`), and each audio frame of `sine` holds
/// exactly the samples of one video frame (`samples_per_frame` = the samples up to frame n+1
/// minus those up to frame n), so the volume filter's frame number `n` *is* the video frame
/// number and a beep starts on the sample nearest its event's first frame. The gate is a
/// balanced sum of `between(n,start,end)` (ffmpeg's expression parser refuses deep chains).
/// Like any audio, the tone's first 1024 samples give way to AAC's priming, so frame 0 stays at 0.
fn tone_source(cfg: &StreamConfig, first_frame: i64) -> String {
    let beep_frames = cfg.fps.frames_nearest(Duration90k(9_000)).max(1);
    let mut schedule = crate::events::EventSchedule::new(cfg.schedule());
    let mut beeps = Vec::new();
    let mut g = first_frame;
    while beeps.len() < TONE_MAX_EVENTS {
        let e = schedule.first_ending_after(g);
        g = e.end();
        if e.start >= first_frame {
            let k = e.start - first_frame;
            beeps.push(format!("between(n,{k},{})", k + beep_frames - 1));
        }
    }
    let (num, den) = (cfg.fps.num(), cfg.fps.den());
    let spf = format!("floor((n+1)*48000*{den}/{num})-floor(n*48000*{den}/{num})");
    // `sine` has amplitude 1/8: 2.4 and 0.16 give 0.3 and 0.02 of full scale.
    format!(
        "sine=f=1000:r=48000:samples_per_frame='{spf}',volume=eval=frame:volume='2.4*gt({},0)'[beep];\
         sine=f=440:r=48000:samples_per_frame='{spf}',volume=0.16[tone];\
         [tone][beep]amix=inputs=2:normalize=0[out0]",
        balanced_sum(&beeps)
    )
}

/// `(a+b)+(c+d)`: depth log2(n) instead of n.
fn balanced_sum(terms: &[String]) -> String {
    match terms {
        [] => "0".into(),
        [t] => t.clone(),
        _ => {
            let (l, r) = terms.split_at(terms.len() / 2);
            format!("({}+{})", balanced_sum(l), balanced_sum(r))
        }
    }
}

/// ffmpeg's AAC encoder delay in samples: its first packet starts this much before its input.
const AAC_PRIMING: u32 = 1024;

/// An argument list under construction.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, s: impl Into<OsString>) {
        self.0.push(s.into());
    }
    fn push_all(&mut self, s: &[&str]) {
        self.0.extend(s.iter().map(OsString::from));
    }
}

/// Checks at start-up that the ffmpeg binary runs and has libx264; returns its version line.
pub async fn check_ffmpeg(path: &Path) -> Result<String, SourceError> {
    // Checked once per binary and process: `run` checks before binding and every stream's start
    // would check again; each check is two process starts (~70 ms each), which is launch time.
    static CHECKED: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    if let Ok(done) = CHECKED.lock()
        && let Some((_, v)) = done.iter().find(|(p, _)| p == path)
    {
        return Ok(v.clone());
    }
    let encoders = tokio::process::Command::new(path)
        .args(["-hide_banner", "-encoders"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let version = tokio::process::Command::new(path)
        .arg("-version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    // Both at once: the check is on the path from launch to the first segment.
    let (out, version) = tokio::join!(encoders, version);
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::FfmpegMissing {
                path: path.to_owned(),
            });
        }
        Err(e) => {
            return Err(SourceError::FfmpegBroken {
                path: path.to_owned(),
                why: e.to_string(),
            });
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("libx264") {
        return Err(SourceError::FfmpegBroken {
            path: path.to_owned(),
            why: "it has no libx264 encoder (Debian's ffmpeg package has it)".into(),
        });
    }
    let version = version
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    if let Ok(mut done) = CHECKED.lock() {
        done.push((path.to_owned(), version.clone()));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::encode::Encoding;
    use hlsmark_clock::FrameRate;
    use hlsmark_store::StreamName;
    use std::path::PathBuf;
    use std::time::Duration;

    fn value<'a>(a: &'a [String], flag: &str) -> &'a str {
        let i = a.iter().position(|x| x == flag).expect(flag);
        &a[i + 1]
    }

    fn strings(a: Vec<OsString>) -> Vec<String> {
        a.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    fn cfg(source: Source) -> StreamConfig {
        let mut c = StreamConfig::new(StreamName::live(), PathBuf::from("/d"));
        c.source = source;
        c
    }

    /// Every occurrence of `flag`'s value, in order.
    fn values<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.iter()
            .enumerate()
            .filter(|(_, x)| *x == flag)
            .map(|(i, _)| a[i + 1].as_str())
            .collect()
    }

    fn has(a: &[String], flag: &str) -> bool {
        a.iter().any(|x| x == flag)
    }

    /// The part every variant shares: the output, after the last input.
    fn check_output(a: &[String]) {
        let last_input = a.iter().rposition(|x| x == "-i").unwrap();
        let map = a.iter().position(|x| x == "-map").unwrap();
        assert!(map > last_input + 1, "{a:?}");
        assert_eq!(value(a, "-map"), "0:v:0");
        let f = values(a, "-f");
        assert_eq!(*f.last().unwrap(), "mp4");
        assert_eq!(
            value(a, "-movflags"),
            "empty_moov+default_base_moof+frag_keyframe+frag_discont"
        );
        assert_eq!(value(a, "-use_editlist"), "0");
        let copy = value(a, "-c:v") == "copy";
        let want = if copy {
            "disabled"
        } else {
            "make_non_negative"
        };
        assert_eq!(value(a, "-avoid_negative_ts"), want);
        assert_eq!(value(a, "-frag_duration"), "200000");
        assert_eq!(value(a, "-video_track_timescale"), "90000");
        assert_eq!(value(a, "-flush_packets"), "1");
        assert_eq!(a.last().unwrap(), "pipe:1");
        assert_eq!(value(a, "-loglevel"), "level+info");
        assert!(has(a, "-nostats") && has(a, "-hide_banner"));
    }

    fn check_aac(a: &[String]) {
        assert_eq!(value(a, "-c:a"), "aac");
        assert!(!has(a, "-b:a"));
        assert_eq!(value(a, "-ar"), "48000");
        assert_eq!(value(a, "-ac"), "2");
        let af = value(a, "-af");
        let looped = has(a, "-stream_loop");
        assert_eq!(
            af,
            if looped {
                // Gaps at the loop points are filled (ffmpeg's loop length counts the priming).
                "aresample=48000:async=1:min_hard_comp=0.01,atrim=start_sample=1024"
            } else {
                "aresample=48000:async=1,atrim=start_sample=1024"
            }
        );
        assert!(!has(a, "-an"));
    }

    #[test]
    fn generator_args_force_a_keyframe_every_segment_of_frames() {
        let mut c = cfg(Source::Generator);
        c.width = 160;
        c.height = 96;
        c.fps = FrameRate::new(24_000, 1_001).unwrap();
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        // The frame pipe is stdin: no -nostdin.
        assert!(!has(&a, "-nostdin"));
        assert_eq!(values(&a, "-f"), ["rawvideo", "mp4"]);
        assert_eq!(values(&a, "-pix_fmt"), ["rgb24", "yuv420p"]);
        assert_eq!(value(&a, "-s"), "160x96");
        assert_eq!(value(&a, "-framerate"), "24000/1001");
        assert_eq!(values(&a, "-i"), ["pipe:0"]);
        assert_eq!(value(&a, "-c:v"), "libx264");
        assert_eq!(value(&a, "-preset"), "veryfast");
        assert_eq!(value(&a, "-tune"), "zerolatency");
        assert_eq!(value(&a, "-profile:v"), "high");
        assert_eq!(value(&a, "-crf"), "18");
        // 1 s at 23.976 fps rounds to 24 frames.
        assert_eq!(value(&a, "-g"), "24");
        assert_eq!(value(&a, "-keyint_min"), "24");
        assert_eq!(value(&a, "-sc_threshold"), "0");
        assert_eq!(value(&a, "-force_key_frames"), "expr:eq(mod(n,24),0)");
        // Full size: no scaling filter; no audio without the tone.
        assert!(!has(&a, "-vf"));
        assert!(has(&a, "-an") && !has(&a, "-c:a"));
        assert_eq!(values(&a, "-map"), ["0:v:0"]);

        // Quality 0.5: half size, CRF 28.
        c.encoding.quality = 0.5;
        let a = strings(ffmpeg_args(&c));
        assert_eq!(value(&a, "-vf"), "scale=80:48");
        assert_eq!(value(&a, "-crf"), "28");
    }

    #[test]
    fn generator_tone_is_a_second_input_with_a_beep_at_each_event() {
        let mut c = cfg(Source::Generator);
        c.encoding.tone = true;
        c.event_mean = Duration::from_secs(5);
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        check_aac(&a);
        assert_eq!(values(&a, "-f"), ["rawvideo", "lavfi", "mp4"]);
        let inputs = values(&a, "-i");
        assert_eq!(inputs[0], "pipe:0");
        assert!(
            inputs[1].starts_with("sine=f=1000:r=48000:"),
            "{}",
            inputs[1]
        );
        assert!(inputs[1].ends_with("[out0]") && inputs[1].len() < 120_000);
        assert_eq!(values(&a, "-map"), ["0:v:0", "1:a:0"]);
        assert!(has(&a, "-shortest"));
        // One audio frame per video frame, so the beep gate counts video frames.
        assert!(
            inputs[1].contains("samples_per_frame='floor((n+1)*48000*1/30)-floor(n*48000*1/30)'")
        );
        // The first beep starts at the first event's first frame and lasts 3 frames (100 ms).
        let mut sched = crate::events::EventSchedule::new(c.schedule());
        let e = sched.first_ending_after(0);
        assert!(
            inputs[1].contains(&format!("between(n,{},{})", e.start, e.start + 2)),
            "{}",
            &inputs[1][..300]
        );
        assert_eq!(inputs[1].matches("between(").count(), TONE_MAX_EVENTS);
        // A later epoch counts from its own first frame.
        let later = strings(ffmpeg_args_at(&c, e.start));
        assert!(values(&later, "-i")[1].contains("between(n,0,2)"));
        // --audio off drops it.
        c.encoding.audio = AudioMode::Off;
        let a = strings(ffmpeg_args(&c));
        assert_eq!(values(&a, "-i"), ["pipe:0"]);
        assert!(has(&a, "-an"));
    }

    #[test]
    fn part_duration_sets_the_fragment_length_and_zero_leaves_keyframes_only() {
        let mut c = cfg(Source::Generator);
        c.part_duration = Duration::from_millis(333);
        let a = strings(ffmpeg_args(&c));
        assert_eq!(value(&a, "-frag_duration"), "333000");
        c.part_duration = Duration::ZERO;
        let a = strings(ffmpeg_args(&c));
        assert!(!has(&a, "-frag_duration"), "{a:?}");
        assert!(value(&a, "-movflags").contains("frag_keyframe"));
    }

    #[test]
    fn file_args_loop_by_default_and_leave_pacing_to_the_reader() {
        let mut c = cfg(Source::File {
            path: "/media/clip:1.mp4".into(),
            looped: true,
        });
        c.segment_duration = Duration::from_millis(2_000);
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        check_aac(&a);
        assert!(has(&a, "-nostdin") && !has(&a, "-re"));
        assert_eq!(value(&a, "-stream_loop"), "-1");
        assert_eq!(value(&a, "-fflags"), "+genpts");
        assert_eq!(value(&a, "-analyzeduration"), "1000000");
        assert_eq!(value(&a, "-probesize"), "2000000");
        assert_eq!(values(&a, "-i"), ["file:/media/clip:1.mp4"]);
        assert_eq!(values(&a, "-map"), ["0:v:0", "0:a:0?"]);
        assert_eq!(value(&a, "-c:v"), "libx264");
        assert_eq!(value(&a, "-vf"), "scale=trunc(iw/2)*2:trunc(ih/2)*2");
        assert_eq!(value(&a, "-fps_mode"), "passthrough");
        assert_eq!(value(&a, "-enc_time_base:v"), "1:90000");
        assert_eq!(
            value(&a, "-force_key_frames"),
            "expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,1.999000))"
        );
        assert!(!has(&a, "-g") && !has(&a, "-keyint_min"));
        // The options come before the input they apply to.
        let i = a.iter().position(|x| x == "-i").unwrap();
        assert!(a.iter().position(|x| x == "-stream_loop").unwrap() < i);

        c.source = Source::File {
            path: "/media/a.mp4".into(),
            looped: false,
        };
        c.encoding.audio = AudioMode::Off;
        let a = strings(ffmpeg_args(&c));
        assert!(!has(&a, "-stream_loop") && !has(&a, "-re"));
        assert_eq!(values(&a, "-map"), ["0:v:0"]);
        assert!(has(&a, "-an"));
    }

    #[test]
    fn file_args_in_copy_mode_keep_the_video() {
        let mut c = cfg(Source::File {
            path: "/media/a.mkv".into(),
            looped: true,
        });
        c.encoding.video = VideoMode::Copy;
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        check_aac(&a);
        assert_eq!(value(&a, "-c:v"), "copy");
        for flag in ["-vf", "-crf", "-force_key_frames", "-preset", "-fps_mode"] {
            assert!(!has(&a, flag), "{flag}");
        }
    }

    #[test]
    fn follow_args_read_a_growing_file() {
        let c = cfg(Source::Follow {
            path: "/rec/obs.ts".into(),
        });
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        assert!(has(&a, "-re") && has(&a, "-nostdin") && !has(&a, "-stream_loop"));
        assert_eq!(value(&a, "-follow"), "1");
        assert_eq!(value(&a, "-seekable"), "0");
        assert_eq!(value(&a, "-analyzeduration"), "1000000");
        assert_eq!(values(&a, "-i"), ["file:/rec/obs.ts"]);
    }

    #[test]
    fn rtsp_args_use_tcp_and_a_timeout() {
        let mut c = cfg(Source::Rtsp {
            url: "rtsp://u:p@cam/s".into(),
        });
        c.encoding = Encoding {
            quality: 0.75,
            ..Encoding::default()
        };
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        check_aac(&a);
        assert_eq!(value(&a, "-rtsp_transport"), "tcp");
        assert_eq!(value(&a, "-timeout"), "5000000");
        assert_eq!(values(&a, "-i"), ["rtsp://u:p@cam/s"]);
        assert!(!has(&a, "-re"));
        assert_eq!(
            value(&a, "-vf"),
            "scale=trunc(iw*750/2000)*2:trunc(ih*750/2000)*2"
        );
        assert_eq!(value(&a, "-crf"), "23");
        assert_eq!(
            value(&a, "-force_key_frames"),
            "expr:if(isnan(prev_forced_t),1,gte(t-prev_forced_t,0.999000))"
        );
    }

    #[test]
    fn http_args_reconnect() {
        let mut c = cfg(Source::Http {
            url: "https://h/live.m3u8".into(),
        });
        c.encoding.resolution = Some((640, 360));
        c.encoding.crf = Some(30);
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        assert_eq!(value(&a, "-reconnect"), "1");
        assert_eq!(value(&a, "-reconnect_streamed"), "1");
        assert_eq!(value(&a, "-reconnect_delay_max"), "5");
        assert_eq!(value(&a, "-rw_timeout"), "10000000");
        assert_eq!(values(&a, "-i"), ["https://h/live.m3u8"]);
        assert_eq!(value(&a, "-live_start_index"), "-1");
        assert!(!has(&a, "-re"));
        assert_eq!(value(&a, "-vf"), "scale=640:360");
        assert_eq!(value(&a, "-crf"), "30");
        assert!(!has(&a, "-use_wallclock_as_timestamps"));
        // A Motion JPEG camera (found in ffmpeg's input dump) is stamped with arrival times.
        c.stamp_arrival = true;
        let a = strings(ffmpeg_args(&c));
        assert_eq!(value(&a, "-use_wallclock_as_timestamps"), "1");
    }

    #[test]
    fn v4l2_args_stamp_wall_clock() {
        // No V4L2 device on the test machines (it needs a kernel module): the list is all we test.
        let c = cfg(Source::V4l2 {
            device: "/dev/video2".into(),
        });
        let a = strings(ffmpeg_args(&c));
        check_output(&a);
        assert_eq!(values(&a, "-f"), ["v4l2", "mp4"]);
        assert_eq!(value(&a, "-use_wallclock_as_timestamps"), "1");
        assert_eq!(values(&a, "-i"), ["/dev/video2"]);
    }

    #[test]
    fn the_preview_is_a_second_output_only_while_its_tap_reads() {
        let mut c = cfg(Source::Generator);
        let spec = crate::PreviewSpec::new(320, 5, None, false);
        c.preview = Some(spec.clone());
        let off = strings(ffmpeg_args(&c));
        assert_eq!(
            off.iter().filter(|a| *a == "-map").count(),
            1,
            "tap not up: no second output"
        );
        spec.up.store(true, std::sync::atomic::Ordering::Relaxed);
        let a = strings(ffmpeg_args(&c));
        let main_end = a.iter().position(|x| x == "pipe:1").unwrap();
        let tail = &a[main_end + 1..];
        assert_eq!(tail[..2], ["-map", "0:v:0"]);
        assert_eq!(
            value(tail, "-vf"),
            "fps=5,scale=320:'trunc(320*ih/(iw*sar)/2)*2',setsar=1"
        );
        assert_eq!(value(tail, "-f"), "image2pipe");
        assert_eq!(value(tail, "-c:v"), "mjpeg");
        assert!(tail.last().unwrap().ends_with("/preview.fifo"));
        check_output(&a[..=main_end]);
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
    }
}
