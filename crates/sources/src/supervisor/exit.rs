//! What an attempt's end means: from how ffmpeg's output ended, how the process exited, its last
//! line and the frame pump's end, decide whether the stream is done (shutdown, the media ended)
//! or failed, with the one-line reason `/streams` shows and whether a retry could ever work.

use crate::pipeline::{EndReason, PipelineError};
use crate::pump::PumpEnd;
use crate::source::Source;

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    Shutdown,
    /// `--stop-after` reached, or a file played once ended.
    Finished,
    /// Nothing failed, but the next attempt must run differently (`--video copy` of a codec
    /// browsers do not play: it encodes; Motion JPEG: stamped on arrival): started again at
    /// once, not counted as a restart; `why`, if any, is shown as the stream's last error so the
    /// reason stays visible.
    Again {
        why: Option<String>,
    },
    /// Retried after a pause, unless `fatal`.
    Failed {
        what: &'static str,
        why: String,
        fatal: bool,
    },
}

impl AttemptEnd {
    /// ffmpeg, its frame pump or a page's browser did not start: retried.
    pub(super) fn could_not_start(why: String) -> Self {
        Self::Failed {
            what: "could not start",
            why,
            fatal: false,
        }
    }
}

/// What is known when an attempt's output and process have ended.
pub(super) struct Ended<'a> {
    /// Shutdown had asked the attempt to finish.
    pub stopping: bool,
    pub reason: &'a EndReason,
    /// Segments the attempt published.
    pub segments: u64,
    /// The first fragment arrived (the source opened).
    pub opened: bool,
    /// An earlier attempt of this run published a segment.
    pub published_before: bool,
    /// How the generator's or a page's frame pump ended (none for sources ffmpeg reads).
    pub pump: Option<&'a PumpEnd>,
    /// ffmpeg exited with status 0.
    pub clean: bool,
    /// ffmpeg's exit status as text.
    pub status: &'a str,
    /// ffmpeg's last line on stderr (credentials already masked).
    pub last_line: &'a str,
    pub source: &'a Source,
}

/// The verdict, and what it changes in the run.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Verdict {
    pub end: AttemptEnd,
    /// The source delivered nothing for `--stall-timeout` (counted in the report).
    pub stalled: bool,
    /// `--video copy` met a codec browsers do not play: the next attempts encode.
    pub reencode: bool,
    /// Writing a file failed: the disk's fault, not the source's (a short retry pause).
    pub disk_failure: bool,
    /// The input has no timestamps (Motion JPEG): the next attempts stamp arrival times.
    pub stamp_arrival: bool,
}

/// Classifies an attempt's end (logging what only this decision knows).
pub(super) fn classify(stream: &str, e: &Ended<'_>) -> Verdict {
    let mut v = Verdict {
        end: AttemptEnd::Shutdown,
        stalled: false,
        reencode: false,
        disk_failure: false,
        stamp_arrival: false,
    };
    if e.stopping {
        return v;
    }
    v.end = match e.reason {
        // A followed recording that stops growing has ended: restarting would read it from the
        // start again and publish it once more as a new epoch.
        EndReason::Stalled(d) if matches!(e.source, Source::Follow { .. }) && e.segments > 0 => {
            v.stalled = true;
            tracing::info!(
                stream = %stream,
                "the followed file has not grown for {} s: the recording has ended",
                d.as_secs_f64()
            );
            AttemptEnd::Finished
        }
        EndReason::Stalled(d) => {
            v.stalled = true;
            AttemptEnd::Failed {
                what: "stalled",
                why: format!("no media for {} s", d.as_secs_f64()),
                fatal: false,
            }
        }
        EndReason::Failed(PipelineError::CopyNotH264(codec)) => {
            // Browsers play H.264: the next attempt re-encodes.
            tracing::warn!(
                stream = %stream,
                codec = %codec,
                "--video copy keeps H.264 that browsers play only; re-encoding this source with libx264"
            );
            v.reencode = true;
            AttemptEnd::Again {
                why: Some(format!(
                    "--video copy keeps H.264 that browsers play only; the source's video is {codec}: re-encoding"
                )),
            }
        }
        EndReason::Failed(PipelineError::NoTimestamps(format)) => {
            tracing::info!(
                stream = %stream,
                format = %format,
                "the source carries no timestamps: read again, each picture stamped when it arrives"
            );
            v.stamp_arrival = true;
            AttemptEnd::Again { why: None }
        }
        EndReason::Failed(err) => {
            let fatal =
                matches!(err, PipelineError::NoVideo) && matches!(e.source, Source::File { .. });
            // A write error is the disk's, not the source's: retried soon.
            v.disk_failure = matches!(err, PipelineError::Write { .. });
            let chain = crate::error_chain(err);
            let why = if e.last_line.is_empty() {
                chain
            } else {
                format!("{chain} (ffmpeg: {})", e.last_line)
            };
            AttemptEnd::Failed {
                what: "failed",
                why,
                fatal,
            }
        }
        EndReason::Eof => eof(e),
    };
    v
}

/// ffmpeg closed its output: the media ended (a file played once, the generator's
/// `--stop-after`), or the source went away.
fn eof(e: &Ended<'_>) -> AttemptEnd {
    let finished = match (e.pump, e.source) {
        (Some(p), _) => e.clean && matches!(p, PumpEnd::Done),
        (None, Source::File { looped: false, .. }) => e.clean,
        _ => false,
    };
    if finished {
        return AttemptEnd::Finished;
    }
    if !e.opened && no_video_stream(e.last_line) {
        // A file of sound only cannot become video: say so, and stop retrying.
        return AttemptEnd::Failed {
            what: "failed",
            why: format!("the source has no video stream (ffmpeg: {})", e.last_line),
            fatal: matches!(e.source, Source::File { .. }),
        };
    }
    if !e.opened
        && !e.published_before
        && matches!(e.source, Source::File { .. })
        && unreadable(e.last_line)
    {
        // A file ffmpeg cannot read at all (empty, truncated, not media) does not heal by
        // itself; one that played before and fails now (replaced while looping) is retried.
        return AttemptEnd::Failed {
            what: "failed",
            why: format!("ffmpeg cannot read the file as media ({})", e.last_line),
            fatal: true,
        };
    }
    if !e.opened && matches!(e.source, Source::Rtsp { .. }) && unreadable(e.last_line) {
        // ffmpeg's words for an RTSP server that accepted the connection and then said nothing
        // within its 5 s timeout, or spoke something else.
        return AttemptEnd::Failed {
            what: "exited",
            why: format!(
                "no usable RTSP answer: the server did not answer within 5 s or did not speak \
                 RTSP (ffmpeg: {})",
                e.last_line
            ),
            fatal: false,
        };
    }
    let why = match e.pump {
        Some(PumpEnd::SourceEnded(why)) => e.source.redact(why),
        Some(p) if e.last_line.is_empty() => format!("{}; pump: {p:?}", e.status),
        // ffmpeg read to the end and exited 0: the source closed the stream (a camera or server
        // that ended it, a file served over HTTP); a warning printed on the way is not why.
        None if e.clean => "the source ended the stream (ffmpeg read to its end)".to_owned(),
        _ if e.last_line.is_empty() => e.status.to_owned(),
        _ => e.last_line.to_owned(),
    };
    AttemptEnd::Failed {
        what: "exited",
        why,
        fatal: false,
    }
}

/// ffmpeg's line when it cannot open the input as media.
fn unreadable(last_line: &str) -> bool {
    last_line.ends_with("Invalid data found when processing input")
}

/// ffmpeg's line when the input has no video stream to map (`-map 0:v:0`).
fn no_video_stream(last_line: &str) -> bool {
    last_line.contains("Stream map '0:v:0' matches no streams")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn file(looped: bool) -> Source {
        Source::File {
            path: PathBuf::from("/m/a.mp4"),
            looped,
        }
    }

    fn rtsp() -> Source {
        Source::Rtsp {
            url: "rtsp://cam:hunter22@10.0.0.5/live".into(),
        }
    }

    /// An attempt that ended with `reason`, opened, published 3 segments, exited 0.
    fn ended<'a>(reason: &'a EndReason, source: &'a Source) -> Ended<'a> {
        Ended {
            stopping: false,
            reason,
            segments: 3,
            opened: true,
            published_before: false,
            pump: None,
            clean: true,
            status: "exit status: 0",
            last_line: "",
            source,
        }
    }

    fn failed(what: &'static str, why: &str, fatal: bool) -> AttemptEnd {
        AttemptEnd::Failed {
            what,
            why: why.into(),
            fatal,
        }
    }

    #[test]
    fn shutdown_wins_over_whatever_ended_the_output() {
        let stalled = EndReason::Stalled(Duration::from_secs(10));
        let src = rtsp();
        let v = classify(
            "s",
            &Ended {
                stopping: true,
                ..ended(&stalled, &src)
            },
        );
        assert_eq!(v.end, AttemptEnd::Shutdown);
        assert!(!v.stalled);
    }

    #[test]
    fn a_stall_is_retried_but_a_followed_recording_that_stops_growing_has_ended() {
        let stalled = EndReason::Stalled(Duration::from_secs(10));
        let src = rtsp();
        let v = classify("s", &ended(&stalled, &src));
        assert_eq!(v.end, failed("stalled", "no media for 10 s", false));
        assert!(v.stalled);
        let follow = Source::Follow {
            path: PathBuf::from("/rec/obs.mkv"),
        };
        let v = classify("s", &ended(&stalled, &follow));
        assert_eq!(v.end, AttemptEnd::Finished);
        assert!(v.stalled);
        // A followed file that never published a segment did not end: it never started.
        let v = classify(
            "s",
            &Ended {
                segments: 0,
                ..ended(&stalled, &follow)
            },
        );
        assert!(matches!(v.end, AttemptEnd::Failed { fatal: false, .. }));
    }

    #[test]
    fn copy_of_a_codec_browsers_do_not_play_switches_to_encoding() {
        let r = EndReason::Failed(PipelineError::CopyNotH264("hevc".into()));
        let src = rtsp();
        let v = classify("s", &ended(&r, &src));
        assert!(v.reencode);
        assert!(matches!(v.end, AttemptEnd::Again { why: Some(ref why) } if why.contains("hevc")));
        let r = EndReason::Failed(PipelineError::NoTimestamps("mpjpeg".into()));
        let v = classify("s", &ended(&r, &src));
        assert!(v.stamp_arrival && !v.reencode);
        assert_eq!(v.end, AttemptEnd::Again { why: None });
    }

    #[test]
    fn a_write_error_is_the_disks_and_no_video_in_a_file_is_fatal() {
        let r = EndReason::Failed(PipelineError::Write {
            path: PathBuf::from("/d/e0-00000001.m4s"),
            source: std::io::Error::other("No space left on device"),
        });
        let src = file(true);
        let v = classify("s", &ended(&r, &src));
        assert!(v.disk_failure);
        assert!(
            matches!(v.end, AttemptEnd::Failed { fatal: false, ref why, .. }
            if why.contains("No space left on device"))
        );
        let r = EndReason::Failed(PipelineError::NoVideo);
        assert!(matches!(
            classify("s", &ended(&r, &src)).end,
            AttemptEnd::Failed { fatal: true, .. }
        ));
        // A camera without video now may have it after a restart.
        let cam = rtsp();
        assert!(matches!(
            classify("s", &ended(&r, &cam)).end,
            AttemptEnd::Failed { fatal: false, .. }
        ));
    }

    #[test]
    fn the_end_of_the_output_means_finished_only_for_what_can_end() {
        let eof = EndReason::Eof;
        let once = file(false);
        assert_eq!(classify("s", &ended(&eof, &once)).end, AttemptEnd::Finished);
        // ffmpeg failed at the end of a file played once: not finished.
        let v = classify(
            "s",
            &Ended {
                clean: false,
                status: "exit status: 1",
                last_line: "Error while decoding stream #0:0",
                ..ended(&eof, &once)
            },
        );
        assert_eq!(
            v.end,
            failed("exited", "Error while decoding stream #0:0", false)
        );
        // A looped file or a camera never ends by itself: a clean exit means the source closed
        // the stream, whatever warning ffmpeg printed last.
        let cam = rtsp();
        let v = classify(
            "s",
            &Ended {
                last_line: "[h264 @ 0x55] concealing 12 DC errors",
                ..ended(&eof, &cam)
            },
        );
        assert_eq!(
            v.end,
            failed(
                "exited",
                "the source ended the stream (ffmpeg read to its end)",
                false
            )
        );
        let v = classify(
            "s",
            &Ended {
                clean: false,
                status: "signal: 9 (SIGKILL)",
                ..ended(&eof, &cam)
            },
        );
        assert_eq!(v.end, failed("exited", "signal: 9 (SIGKILL)", false));
        // The generator ends when its pump wrote every frame (`--stop-after`) and ffmpeg exited 0.
        let g = Source::Generator;
        let done = PumpEnd::Done;
        assert_eq!(
            classify(
                "s",
                &Ended {
                    pump: Some(&done),
                    ..ended(&eof, &g)
                }
            )
            .end,
            AttemptEnd::Finished
        );
        let broke = PumpEnd::WriteFailed(std::io::ErrorKind::BrokenPipe.into());
        assert!(matches!(
            classify("s", &Ended { pump: Some(&broke), ..ended(&eof, &g) }).end,
            AttemptEnd::Failed { what: "exited", ref why, fatal: false } if why.starts_with("exit status: 0; pump: WriteFailed")
        ));
    }

    #[test]
    fn a_file_that_never_opened_as_media_is_fatal_but_one_that_played_before_is_retried() {
        let eof = EndReason::Eof;
        let line = "file:/m/a.mp4: Invalid data found when processing input";
        let f = file(true);
        let never = Ended {
            opened: false,
            clean: false,
            status: "exit status: 1",
            last_line: line,
            ..ended(&eof, &f)
        };
        assert!(matches!(
            classify("s", &never).end,
            AttemptEnd::Failed { fatal: true, ref why, .. } if why.contains("cannot read the file")
        ));
        let before = Ended {
            published_before: true,
            ..never
        };
        assert!(matches!(
            classify("s", &before).end,
            AttemptEnd::Failed { fatal: false, .. }
        ));
        // A camera's stream that is not media now may be later; the reason says what it means.
        let cam = rtsp();
        let c = Ended {
            source: &cam,
            last_line: "rtsp://cam:****@10.0.0.5/live: Invalid data found when processing input",
            ..never
        };
        assert!(matches!(
            classify("s", &c).end,
            AttemptEnd::Failed { fatal: false, ref why, .. } if why.contains("did not answer within 5 s")
        ));
    }

    #[test]
    fn sound_only_is_fatal_for_a_file_and_the_reason_never_shows_a_password() {
        let eof = EndReason::Eof;
        let line = "Stream map '0:v:0' matches no streams.";
        let sound = file(true);
        let v = classify(
            "s",
            &Ended {
                opened: false,
                last_line: line,
                ..ended(&eof, &sound)
            },
        );
        assert!(
            matches!(v.end, AttemptEnd::Failed { fatal: true, ref why, .. } if why.contains("no video stream"))
        );
        let cam = rtsp();
        let v = classify(
            "s",
            &Ended {
                opened: false,
                last_line: line,
                ..ended(&eof, &cam)
            },
        );
        assert!(matches!(v.end, AttemptEnd::Failed { fatal: false, .. }));
        // A page's browser that ended: its reason, with the URL's secrets masked.
        let page = Source::Page {
            url: "https://dash.example/view?token=s3cr3tvalue".into(),
        };
        let gone = PumpEnd::SourceEnded(
            "chromium exited on https://dash.example/view?token=s3cr3tvalue".into(),
        );
        let v = classify(
            "s",
            &Ended {
                pump: Some(&gone),
                ..ended(&eof, &page)
            },
        );
        let AttemptEnd::Failed { why, .. } = v.end else {
            panic!("{v:?}")
        };
        assert!(why.starts_with("chromium exited on "), "{why}");
        assert!(!why.contains("s3cr3tvalue"), "{why}");
    }
}
