//! What a stream reads: one source string (`generator`, a file, a growing file, `rtsp://`,
//! `http(s)://`, `/dev/videoN`, `page:http(s)://`) detected into a [`Source`], as
//! `design/sources.md` tabulates.
//!
//! Detection happens once at start-up so a string that cannot work is one clear line naming it and
//! the accepted forms, never an ffmpeg error later. What each kind means for ffmpeg's input lives in
//! `ffmpeg.rs`; what it means for time (paced by ffmpeg or by us, live) is asked through the methods here.

use std::fmt;
use std::path::{Path, PathBuf};

/// The accepted forms, quoted by every detection error.
pub const ACCEPTED_FORMS: &str = "accepted: `generator`, a path to an existing file (with --follow: a growing file), \
     rtsp://..., rtsps://..., http://..., https://... (incl. .m3u8), /dev/videoN, \
     page:https://... (a web page rendered by headless Chromium)";

/// A stream's source, detected from its string.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in checkerboard; frames go to ffmpeg as rawvideo on stdin, paced by us.
    Generator,
    /// A media file, played in real time (paced by hlsmark's read loop), looped for ever unless
    /// `looped` is false.
    File { path: PathBuf, looped: bool },
    /// A file that is still being written (an OBS recording), read as it grows, in real time.
    Follow { path: PathBuf },
    /// `rtsp://` or `rtsps://`, over TCP.
    Rtsp { url: String },
    /// `http://` or `https://`, including HLS playlists.
    Http { url: String },
    /// A V4L2 capture device.
    V4l2 { device: PathBuf },
    /// A web page (`page:http(s)://...`) rendered by headless Chromium; its pictures go to
    /// ffmpeg as rawvideo on stdin at the stream's rate, like the generator's (`page/`).
    Page { url: String },
}

/// Why a source string cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("--source is empty; {ACCEPTED_FORMS}")]
    Empty,
    #[error("--source {given:?}: unknown scheme {scheme:?}; {ACCEPTED_FORMS}")]
    UnknownScheme { given: String, scheme: String },
    #[error("--source {given:?}: no such file; {ACCEPTED_FORMS}")]
    MissingFile { given: String },
    #[error("--source {given:?}: is a directory, not a media file; {ACCEPTED_FORMS}")]
    NotAFile { given: String },
    #[error("--follow needs a path to a file, not {given:?}")]
    FollowNeedsFile { given: String },
    #[error("--source {given:?}: a URL needs a host; {ACCEPTED_FORMS}")]
    NoHost { given: String },
    #[error(
        "ffmpeg not found at {path:?}: install it (`apt-get install ffmpeg`) or pass --ffmpeg /path/to/ffmpeg"
    )]
    FfmpegMissing { path: PathBuf },
    #[error("ffmpeg at {path:?} cannot be used: {why}")]
    FfmpegBroken { path: PathBuf, why: String },
    #[error("--source {given:?}: a page source is page:http://... or page:https://... with a host")]
    PageUrl { given: String },
    #[error(
        "chromium not found at {path:?} (a page source needs it): install it (`apt-get install chromium`) or pass --chromium /path/to/chromium"
    )]
    BrowserMissing { path: PathBuf },
}

/// The pipeline's error keeps its own ffmpeg variants (tests and the CLI match them).
impl From<SourceError> for crate::GeneratorError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::FfmpegMissing { path } => crate::GeneratorError::FfmpegMissing { path },
            SourceError::FfmpegBroken { path, why } => {
                crate::GeneratorError::FfmpegBroken { path, why }
            }
            other => crate::GeneratorError::Config(crate::config::ConfigError::Source(other)),
        }
    }
}

impl Source {
    /// Detects the kind of `s` as `design/sources.md`'s table says. `follow` turns a path into a
    /// growing file; `looped` only matters for a file. A file (growing or not) must exist at
    /// start; a `/dev/video*` device may appear later (the supervisor retries it).
    pub fn parse(s: &str, follow: bool, looped: bool) -> Result<Source, SourceError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceError::Empty);
        }
        if s == "generator" {
            if follow {
                return Err(SourceError::FollowNeedsFile { given: s.into() });
            }
            return Ok(Source::Generator);
        }
        if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("page:")) {
            return Self::page(s, &s[5..], follow);
        }
        if let Some((scheme, rest)) = s.split_once("://") {
            let lower = scheme.to_ascii_lowercase();
            let is_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if is_scheme && lower == "file" {
                return Self::path(s, Path::new(rest), follow, looped);
            }
            if is_scheme {
                let url = || {
                    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                    let host = host.rsplit('@').next().unwrap_or_default();
                    if host.is_empty() {
                        Err(SourceError::NoHost { given: mask_url(s) })
                    } else {
                        Ok(s.to_owned())
                    }
                };
                let kind = match lower.as_str() {
                    "rtsp" | "rtsps" => Source::Rtsp { url: url()? },
                    "http" | "https" => Source::Http { url: url()? },
                    _ => {
                        return Err(SourceError::UnknownScheme {
                            given: mask_url(s),
                            scheme: scheme.into(),
                        });
                    }
                };
                if follow {
                    return Err(SourceError::FollowNeedsFile {
                        given: kind.masked(),
                    });
                }
                return Ok(kind);
            }
        }
        Self::path(s, Path::new(s), follow, looped)
    }

    /// `page:` + an http(s) URL with a host.
    fn page(s: &str, url: &str, follow: bool) -> Result<Source, SourceError> {
        let bad = || SourceError::PageUrl { given: mask_url(s) };
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or_default();
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") || host.is_empty() {
            return Err(bad());
        }
        let page = Source::Page {
            url: url.to_owned(),
        };
        if follow {
            return Err(SourceError::FollowNeedsFile {
                given: page.masked(),
            });
        }
        Ok(page)
    }

    fn path(s: &str, path: &Path, follow: bool, looped: bool) -> Result<Source, SourceError> {
        if !follow
            && let Some(name) = path.to_str().and_then(|p| p.strip_prefix("/dev/"))
            && name.starts_with("video")
        {
            return Ok(Source::V4l2 {
                device: path.to_owned(),
            });
        }
        match std::fs::metadata(path) {
            Err(_) => Err(SourceError::MissingFile { given: s.into() }),
            Ok(m) if m.is_dir() => Err(SourceError::NotAFile { given: s.into() }),
            Ok(_) if follow => Ok(Source::Follow {
                path: path.to_owned(),
            }),
            Ok(_) => Ok(Source::File {
                path: path.to_owned(),
                looped,
            }),
        }
    }

    /// `"generator" | "file" | "follow" | "rtsp" | "http" | "v4l2" | "page"`: for `/streams`,
    /// metrics, logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Generator => "generator",
            Source::File { .. } => "file",
            Source::Follow { .. } => "follow",
            Source::Rtsp { .. } => "rtsp",
            Source::Http { .. } => "http",
            Source::V4l2 { .. } => "v4l2",
            Source::Page { .. } => "page",
        }
    }

    /// The source string safe to show: a URL's password and secret-looking query values
    /// (`token`, `password`, `key`, `signature`, ...) are replaced by `****`.
    pub fn masked(&self) -> String {
        match self {
            Source::Generator => "generator".into(),
            Source::File { path, .. } | Source::Follow { path } => path.display().to_string(),
            Source::V4l2 { device } => device.display().to_string(),
            Source::Rtsp { url } | Source::Http { url } => mask_url(url),
            Source::Page { url } => format!("page:{}", mask_url(url)),
        }
    }

    /// `text` (a line of ffmpeg's, which quotes the URL it was given) with this source's secrets
    /// hidden: the URL itself becomes its masked form, then the password and the secret query
    /// values are replaced by `****` wherever else they appear (`:pw@` and `key=value` forms
    /// always; the bare value when it has 4 characters or more).
    pub fn redact(&self, text: &str) -> String {
        let (Source::Rtsp { url } | Source::Http { url } | Source::Page { url }) = self else {
            return text.to_owned();
        };
        let mut out = text.replace(url.as_str(), &mask_url(url));
        let (password, query) = url_secrets(url);
        if let Some(pw) = password {
            out = out.replace(&format!(":{pw}@"), ":****@");
            if pw.len() >= 4 {
                out = out.replace(&pw, "****");
            }
        }
        for (k, v) in query {
            out = out.replace(&format!("{k}={v}"), &format!("{k}=****"));
            if v.len() >= 4 {
                out = out.replace(&v, "****");
            }
        }
        out
    }

    pub fn is_generator(&self) -> bool {
        matches!(self, Source::Generator)
    }

    /// ffmpeg reads rawvideo frames from hlsmark on its stdin: the generator's and a page's.
    pub fn frames_on_stdin(&self) -> bool {
        matches!(self, Source::Generator | Source::Page { .. })
    }

    /// ffmpeg paces the input to real time (`-re`): growing files.
    pub fn paced_by_ffmpeg(&self) -> bool {
        matches!(self, Source::Follow { .. })
    }

    /// hlsmark paces ffmpeg's output to real time (the read loop sleeps, the pipe holds ffmpeg
    /// back): files. Until the first segment is cut nothing waits, so a file's first segment is
    /// ready as fast as ffmpeg can read it (`design/sources.md`, "Launch").
    pub fn paced_by_reader(&self) -> bool {
        matches!(self, Source::File { .. })
    }

    /// An HTTP(S) URL of an HLS playlist (`.m3u8` before any query): its media comes a whole
    /// upstream segment at a time.
    pub fn is_hls_playlist(&self) -> bool {
        let Source::Http { url } = self else {
            return false;
        };
        let path = url.split(['?', '#']).next().unwrap_or_default();
        path.to_ascii_lowercase().ends_with(".m3u8")
    }

    /// A frame's arrival time says when it was captured (give or take the transport), so arrival
    /// anchors UTC: RTSP, HTTP, V4L2, growing files and pages.
    pub fn is_live(&self) -> bool {
        matches!(
            self,
            Source::Rtsp { .. }
                | Source::Http { .. }
                | Source::V4l2 { .. }
                | Source::Follow { .. }
                | Source::Page { .. }
        )
    }
}

/// Only the masked form is ever printed, so a `{:?}` in a log cannot leak a password.
impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { looped, .. } => {
                write!(f, "File({:?}, looped: {looped})", self.masked())
            }
            _ => write!(f, "{}({:?})", self.kind(), self.masked()),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Query keys whose values are secrets (compared lower-case, also as a suffix: `api_key`).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "token",
    "key",
    "secret",
    "signature",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
    "x-amz-security-token",
    "x-amz-credential",
];

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_KEYS
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")) || k.ends_with(&format!("-{s}")))
}

/// A URL's password and its secret query pairs (what [`mask_url`] hides).
fn url_secrets(url: &str) -> (Option<String>, Vec<(String, String)>) {
    let Some((_, rest)) = url.split_once("://") else {
        return (None, Vec::new());
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let password = authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pw)| pw.to_owned())
        .filter(|pw| !pw.is_empty());
    let query = tail
        .split('#')
        .next()
        .and_then(|t| t.split_once('?'))
        .map(|(_, q)| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(k, v)| is_secret_key(k) && !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    (password, query)
}

/// `scheme://user:****@host/path?token=****&a=b#frag`; a string without `://` is returned as it
/// is. Also for other URLs than sources' (the `--store` Redis URL in errors).
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let (before_frag, frag) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let tail = match before_frag.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if is_secret_key(k) && !v.is_empty() => format!("{k}=****"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}{frag}", q.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_is_detected() {
        assert_eq!(
            Source::parse("generator", false, true),
            Ok(Source::Generator)
        );
        let f = tempfile::NamedTempFile::new().unwrap();
        let p = f.path().to_str().unwrap();
        assert_eq!(
            Source::parse(p, false, true),
            Ok(Source::File {
                path: p.into(),
                looped: true
            })
        );
        assert_eq!(
            Source::parse(&format!("file://{p}"), false, false),
            Ok(Source::File {
                path: p.into(),
                looped: false
            })
        );
        assert_eq!(
            Source::parse(p, true, true),
            Ok(Source::Follow { path: p.into() })
        );
        for url in ["rtsp://cam/1", "RTSPS://u:p@cam:322/s"] {
            assert_eq!(
                Source::parse(url, false, true).unwrap().kind(),
                "rtsp",
                "{url}"
            );
        }
        for url in ["http://h/x.m3u8", "https://h:8443/live"] {
            assert_eq!(Source::parse(url, false, true).unwrap().kind(), "http");
        }
        assert_eq!(
            Source::parse("/dev/video0", false, true),
            Ok(Source::V4l2 {
                device: "/dev/video0".into()
            })
        );
    }

    #[test]
    fn sources_that_cannot_work_are_named_with_the_accepted_forms() {
        let e = Source::parse("srt://h:9000", false, true).unwrap_err();
        assert!(matches!(e, SourceError::UnknownScheme { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("srt://h:9000") && msg.contains("\"srt\""),
            "{msg}"
        );
        assert!(
            msg.contains("rtsp://") && msg.contains("generator"),
            "{msg}"
        );
        let e = Source::parse("/no/such/clip.mp4", false, true).unwrap_err();
        assert!(e.to_string().contains("/no/such/clip.mp4"), "{e}");
        assert!(matches!(e, SourceError::MissingFile { .. }));
        assert!(matches!(
            Source::parse("/tmp", false, true),
            Err(SourceError::NotAFile { .. })
        ));
        assert_eq!(Source::parse("  ", false, true), Err(SourceError::Empty));
        assert!(matches!(
            Source::parse("rtsp://cam/1", true, true),
            Err(SourceError::FollowNeedsFile { .. })
        ));
        assert!(matches!(
            Source::parse("generator", true, true),
            Err(SourceError::FollowNeedsFile { .. })
        ));
        assert!(matches!(
            Source::parse("http:///x", false, true),
            Err(SourceError::NoHost { .. })
        ));
        // An unknown scheme's password is not echoed either.
        let e = Source::parse("srt://u:hunter2@h", false, true).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn secrets_are_masked() {
        let s = Source::parse(
            "rtsp://admin:hunter2@cam.local:554/s?channel=1&token=abc&api_key=xyz#f",
            false,
            true,
        )
        .unwrap();
        assert_eq!(
            s.masked(),
            "rtsp://admin:****@cam.local:554/s?channel=1&token=****&api_key=****#f"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("abc"));
        let s = Source::parse("https://cdn/x.m3u8?X-Amz-Signature=ff&v=2", false, true).unwrap();
        assert_eq!(s.masked(), "https://cdn/x.m3u8?X-Amz-Signature=****&v=2");
        let s = Source::parse("http://user@h/p?keyframes=1", false, true).unwrap();
        assert_eq!(s.masked(), "http://user@h/p?keyframes=1");
    }

    /// ffmpeg quotes the URL in its errors, which reached the log and `/streams`' `last_error`
    /// in clear (found by QA: an unreachable `rtsp://admin:pw@...`); and a URL without a host
    /// echoed its password in the start-up error.
    #[test]
    fn ffmpeg_lines_and_start_errors_do_not_show_secrets() {
        let s = Source::parse(
            "rtsp://admin:S3cretPw@10.0.0.1:1/s?token=tok3n&ch=1",
            false,
            true,
        )
        .unwrap();
        let line = "rtsp://admin:S3cretPw@10.0.0.1:1/s?token=tok3n&ch=1: Connection refused";
        assert_eq!(
            s.redact(line),
            "rtsp://admin:****@10.0.0.1:1/s?token=****&ch=1: Connection refused"
        );
        // Other forms of the URL (ffmpeg rewrites it) and the bare values.
        let r =
            s.redact("Opening rtsp://admin:S3cretPw@10.0.0.1:1/s?ch=1&token=tok3n, pw S3cretPw");
        assert!(!r.contains("S3cretPw") && !r.contains("tok3n"), "{r}");
        // A short password still goes in its URL form; other text is left alone.
        let s = Source::parse("rtsp://u:ab@h/s", false, true).unwrap();
        assert_eq!(
            s.redact("rtsp://u:ab@h/x: 401 about"),
            "rtsp://u:****@h/x: 401 about"
        );
        assert_eq!(Source::Generator.redact("a:ab@b"), "a:ab@b");
        let e = Source::parse("rtsp://u:hunter2@", false, true).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn page_sources_are_detected_and_masked() {
        let s = Source::parse(
            "page:https://u:hunter2@dash.local/board?token=abc&x=1",
            false,
            true,
        )
        .unwrap();
        assert_eq!(s.kind(), "page");
        assert!(s.frames_on_stdin() && s.is_live() && !s.is_generator());
        assert_eq!(
            s.masked(),
            "page:https://u:****@dash.local/board?token=****&x=1"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(
            !s.redact("loading https://u:hunter2@dash.local/board?token=abc&x=1")
                .contains("abc")
        );
        assert_eq!(
            Source::parse("PAGE:http://127.0.0.1:8080/", false, true),
            Ok(Source::Page {
                url: "http://127.0.0.1:8080/".into()
            })
        );
        for bad in [
            "page:",
            "page:ftp://h/x",
            "page:http:///x",
            "page:/tmp/x.html",
        ] {
            let e = Source::parse(bad, false, true).unwrap_err();
            assert!(matches!(e, SourceError::PageUrl { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("page:https://"), "{e}");
        }
        assert!(matches!(
            Source::parse("page:http://h/", true, true),
            Err(SourceError::FollowNeedsFile { .. })
        ));
        let e = Source::parse("page:ftp://u:hunter2@h/", false, true).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(ACCEPTED_FORMS.contains("page:https://"));
    }

    #[test]
    fn time_properties_by_kind() {
        let g = Source::Generator;
        assert!(g.is_generator() && !g.paced_by_ffmpeg() && !g.paced_by_reader() && !g.is_live());
        let f = Source::File {
            path: "a.mp4".into(),
            looped: true,
        };
        assert!(f.paced_by_reader() && !f.paced_by_ffmpeg() && !f.is_live());
        let fo = Source::Follow {
            path: "a.ts".into(),
        };
        assert!(fo.paced_by_ffmpeg() && !fo.paced_by_reader() && fo.is_live());
        let r = Source::Rtsp {
            url: "rtsp://h".into(),
        };
        assert!(r.is_live() && !r.paced_by_ffmpeg() && !r.paced_by_reader());
    }
}
