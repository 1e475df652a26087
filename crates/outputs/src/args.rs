//! The restream ffmpeg's argument list, in one function with a test over it: fragmented MP4 (the
//! stream's own init section and fragments) on stdin, H.264 copied, AAC copied or made, FLV to
//! the target, progress on stdout.

use std::ffi::OsString;

use crate::Target;

/// What the restream does for sound. Most ingests refuse a stream without audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioPlan {
    /// The stream's audio is AAC: copied.
    Copy,
    /// The stream's audio is something else: encoded to AAC.
    Encode,
    /// The stream has no audio: silent AAC (48 kHz stereo) is made for it.
    Silent,
}

impl AudioPlan {
    /// From the init section's audio track codec (RFC 6381), if any.
    pub fn for_codec(codec: Option<&str>) -> Self {
        match codec {
            Some(c) if c.starts_with("mp4a") => Self::Copy,
            Some(_) => Self::Encode,
            None => Self::Silent,
        }
    }
}

/// `ffmpeg` arguments for one restream attempt to `target`.
pub fn ffmpeg_args(target: &Target, audio: AudioPlan) -> Vec<OsString> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-nostats",
        // key=value blocks on stdout, once a second: bytes sent and media time, for the state
        // and the stall check.
        "-stats_period",
        "1",
        "-progress",
        "pipe:1",
        // The stream's own fMP4 (init section first); the codec parameters are all in it, so a
        // short probe suffices and the target connects sooner.
        "-probesize",
        "65536",
        "-analyzeduration",
        "500000",
        // With silence as a second input, ffmpeg reads each input in its own thread; a start-up
        // burst of fragments would otherwise fill the default 8-packet queue (a warning).
        "-thread_queue_size",
        "64",
        "-f",
        "mp4",
        "-i",
        "pipe:0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if audio == AudioPlan::Silent {
        // Paced (-re) so that silence is made at the rate it is sent, not as fast as the CPU goes.
        a.extend(
            ["-re", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
    }
    a.extend(
        ["-map", "0:v:0", "-c:v", "copy"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let audio_args: &[&str] = match audio {
        AudioPlan::Copy => &["-map", "0:a:0", "-c:a", "copy"],
        AudioPlan::Encode => &[
            "-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
        ],
        // -shortest: the silence never ends; the restream ends with the video.
        AudioPlan::Silent => &["-map", "1:a:0", "-c:a", "aac", "-b:a", "64k", "-shortest"],
    };
    a.extend(audio_args.iter().map(|s| (*s).to_owned()));
    a.extend(
        [
            // A live FLV has no duration or size to write back into its header.
            "-flvflags",
            "no_duration_filesize",
            "-f",
            "flv",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    a.push(target.url().to_owned());
    a.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn joined(audio: AudioPlan) -> String {
        let t = Target::parse("rtmp://h/live/k3y").unwrap();
        ffmpeg_args(&t, audio)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn video_is_copied_and_audio_follows_the_stream() {
        let copy = joined(AudioPlan::Copy);
        assert!(copy.contains("-f mp4 -i pipe:0 -map 0:v:0 -c:v copy -map 0:a:0 -c:a copy"));
        assert!(copy.ends_with("-f flv rtmp://h/live/k3y"), "{copy}");
        assert!(copy.contains("-progress pipe:1"));
        assert!(!copy.contains("lavfi") && !copy.contains("libx264"));
        let enc = joined(AudioPlan::Encode);
        assert!(enc.contains("-map 0:a:0 -c:a aac"), "{enc}");
        let silent = joined(AudioPlan::Silent);
        assert!(
            silent.contains("-re -f lavfi -i anullsrc=r=48000:cl=stereo -map 0:v:0 -c:v copy -map 1:a:0 -c:a aac"),
            "{silent}"
        );
        assert!(silent.contains("-shortest"));
        assert_eq!(AudioPlan::for_codec(Some("mp4a.40.2")), AudioPlan::Copy);
        assert_eq!(AudioPlan::for_codec(Some("opus")), AudioPlan::Encode);
        assert_eq!(AudioPlan::for_codec(None), AudioPlan::Silent);
    }
}
