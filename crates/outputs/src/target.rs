//! A restream target: an `rtmp://` or `rtmps://` URL naming the ingest, its application and the
//! stream key. Checked once at start-up (a URL that cannot work is one line, key masked); the key
//! is a secret and only [`Target::masked`] (`rtmp://host/app/****`) is ever shown.

use std::fmt;

/// Why a restream URL cannot work. Every message shows the URL masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "--restream {given}: scheme {scheme:?} is not rtmp or rtmps (write rtmp://host/app/key)"
    )]
    Scheme { given: String, scheme: String },
    #[error("--restream {given}: no host (write rtmp://host/app/key)")]
    NoHost { given: String },
    #[error("--restream {given}: port {port:?} is not a port number (1-65535)")]
    BadPort { given: String, port: String },
    #[error(
        "--restream {given}: needs an application and a stream key in the path (rtmp://host/app/key)"
    )]
    NoKey { given: String },
    #[error("--restream {given}: contains whitespace or control characters")]
    BadChar { given: String },
}

/// A validated restream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    url: String,
}

impl Target {
    /// Checks `s`: scheme `rtmp` or `rtmps`, a host, and a path of at least an application and a
    /// key (`/app/key`; the key is the last segment, the application may have several).
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        let s = s.trim();
        let given = || mask(s);
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TargetError::BadChar { given: given() });
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(TargetError::Scheme {
                given: given(),
                scheme: String::new(),
            });
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "rtmp" | "rtmps") {
            return Err(TargetError::Scheme {
                given: given(),
                scheme: scheme.to_owned(),
            });
        }
        let (authority, path) = split_authority(rest);
        let host = authority.rsplit('@').next().unwrap_or_default();
        // `[v6]:port`, `[v6]`, `name:port`, `name`.
        let (host_name, port) = match host.strip_prefix('[') {
            Some(v6) => v6
                .split_once(']')
                .map_or(("", None), |(h, tail)| (h, tail.strip_prefix(':'))),
            None => host
                .rsplit_once(':')
                .map_or((host, None), |(h, p)| (h, Some(p))),
        };
        if host_name.is_empty() {
            return Err(TargetError::NoHost { given: given() });
        }
        if let Some(p) = port
            && !p.parse::<u16>().is_ok_and(|p| p > 0)
        {
            return Err(TargetError::BadPort {
                given: given(),
                port: p.chars().take(16).collect(),
            });
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if segments.len() < 2 {
            return Err(TargetError::NoKey { given: given() });
        }
        Ok(Self { url: s.to_owned() })
    }

    /// The URL for ffmpeg (secret: never log it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL safe to show: the stream key (last path segment), a password and any query are
    /// `****`: `rtmp://host/app/****`.
    pub fn masked(&self) -> String {
        mask(&self.url)
    }

    /// `text` (a line of ffmpeg's, which may quote the URL) with the URL masked and the key,
    /// password and query values replaced by `****` wherever else they appear.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.masked());
        for secret in secrets(&self.url) {
            // Very short secrets would mask ordinary words; those still go in their URL form.
            if secret.len() >= 4 {
                out = out.replace(&secret, "****");
            }
        }
        out
    }
}

/// Only the masked form is ever printed, so a `{:?}` in a log cannot leak the key.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({:?})", self.masked())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// `(authority, "/path?query#frag")` of what follows `scheme://`.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// The secret parts of a URL: the password, the key (last path segment), query values.
fn secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let (authority, tail) = split_authority(rest);
    let mut out = Vec::new();
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, pw)) = userinfo.split_once(':')
        && !pw.is_empty()
    {
        out.push(pw.to_owned());
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q.split('#').next().unwrap_or_default())),
        None => (tail.split('#').next().unwrap_or_default(), None),
    };
    if let Some(key) = path.rsplit('/').find(|s| !s.is_empty())
        && path.split('/').filter(|s| !s.is_empty()).count() >= 2
    {
        out.push(key.to_owned());
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let v = pair.split_once('=').map_or(pair, |(_, v)| v);
        if !v.is_empty() {
            out.push(v.to_owned());
        }
    }
    out
}

/// `scheme://user:****@host/app/****?****`: also for strings that did not parse (errors).
fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL at all: show no more than its first characters.
        let head: String = url.chars().take(8).collect();
        return if head.len() < url.len() {
            format!("{head}…")
        } else {
            head
        };
    };
    let (authority, tail) = split_authority(rest);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let (path, has_query) = match tail.find(['?', '#']) {
        Some(i) => (&tail[..i], true),
        None => (tail, false),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let path = match segments.split_last() {
        Some((_, app)) if !app.is_empty() => format!("/{}/****", app.join("/")),
        // One segment: it may be the key of an app-less URL; hide it too.
        Some(_) => "/****".to_owned(),
        None => String::new(),
    };
    let query = if has_query { "?****" } else { "" };
    format!("{scheme}://{authority}{path}{query}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn good_urls_parse_and_mask_the_key() {
        let t = Target::parse("rtmp://127.0.0.1:1935/live/secretkey123").unwrap();
        assert_eq!(t.masked(), "rtmp://127.0.0.1:1935/live/****");
        assert_eq!(t.url(), "rtmp://127.0.0.1:1935/live/secretkey123");
        assert!(!format!("{t:?} {t}").contains("secretkey123"));
        let t = Target::parse("RTMPS://u:pw12345@a.example/app/inst/k3y-abc?auth=zzzz").unwrap();
        assert_eq!(t.masked(), "RTMPS://u:****@a.example/app/inst/****?****");
        for ok in [
            "rtmp://[::1]:1935/live/k3y",
            "rtmp://[::1]/live/k3y",
            "rtmp://h:65535/live/k3y",
        ] {
            assert!(Target::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn urls_that_cannot_work_are_one_line_with_the_key_masked() {
        for (url, want) in [
            ("http://h/live/secretkey123", "not rtmp or rtmps"),
            ("srt://h/live/secretkey123", "not rtmp or rtmps"),
            ("rtmp:///live/secretkey123", "no host"),
            ("rtmp://:1935/live/secretkey123", "no host"),
            ("rtmp://h/secretkey123", "application and a stream key"),
            ("rtmp://h", "application and a stream key"),
            ("rtmp://h/live/secret key123", "whitespace"),
            ("rtmp://h:99999/live/secretkey123", "is not a port"),
            ("rtmp://h:0/live/secretkey123", "is not a port"),
            ("rtmp://h:abc/live/secretkey123", "is not a port"),
            ("rtmp://[::1]:70000/live/secretkey123", "is not a port"),
            ("secretkey123", "not rtmp or rtmps"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("secretkey123"), "{url}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn ffmpeg_lines_are_redacted() {
        let t = Target::parse("rtmp://u:hunter22@h:1/live/secretkey123?x=tok3n").unwrap();
        let line = "[rtmp @ 0x1] Server error: rtmp://u:hunter22@h:1/live/secretkey123?x=tok3n \
                    refused; stream secretkey123, pw hunter22, tok3n";
        let r = t.redact(line);
        for s in ["secretkey123", "hunter22", "tok3n"] {
            assert!(!r.contains(s), "{r}");
        }
        assert!(r.contains("rtmp://u:****@h:1/live/****?****"), "{r}");
    }
}
