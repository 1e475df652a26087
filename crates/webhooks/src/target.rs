//! A webhook target: its URL (http or https with a host, checked at start), the URL with its
//! secrets masked (for logs, `/metrics` and errors) and a stable id derived from the URL (the
//! outbox is keyed by it, so every node with the same URL shares one outbox).

use hlsmark_store::StreamName;
use reqwest::Url;
use sha2::{Digest, Sha256};

/// Why a `--webhook` URL was refused (the message holds the masked URL only).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("webhook URL {0} is not a URL")]
    NotAUrl(String),
    #[error("webhook URL {0} must be http:// or https://")]
    Scheme(String),
    #[error("webhook URL {0} has no host")]
    NoHost(String),
}

/// One configured webhook.
#[derive(Clone)]
pub struct Target {
    pub url: Url,
    /// `url` with user info, query values and token-like path segments as `****`.
    pub masked: String,
    /// First 16 hex digits of SHA-256 of the URL: the outbox key.
    pub id: String,
    /// Streams whose markers it gets; `None` = every stream.
    pub streams: Option<Vec<StreamName>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.masked)
            .field("id", &self.id)
            .field("streams", &self.streams)
            .finish()
    }
}

impl Target {
    /// Checks and prepares a webhook URL; `streams` limits it to some streams.
    pub fn parse(raw: &str, streams: Option<Vec<StreamName>>) -> Result<Self, TargetError> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|_| TargetError::NotAUrl(mask_unparsed(raw)))?;
        let masked = mask(&url);
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(TargetError::Scheme(masked));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(TargetError::NoHost(masked));
        }
        let digest = Sha256::digest(url.as_str().as_bytes());
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            url,
            masked,
            id,
            streams,
        })
    }
}

/// A path segment that may be a credential (`/services/T0/B0/XXXXXXXX`, `/hooks/<token>`):
/// anything but a short word.
fn token_like(seg: &str) -> bool {
    seg.len() > 16
        || seg.bytes().any(|b| b.is_ascii_digit())
        || seg
            .bytes()
            .any(|b| !(b.is_ascii_alphabetic() || b == b'-' || b == b'_' || b == b'.'))
}

/// The URL with user info, every query value and token-like path segments replaced by `****`.
pub fn mask(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("****@");
    }
    out.push_str(url.host_str().unwrap_or(""));
    if let Some(p) = url.port() {
        out.push_str(&format!(":{p}"));
    }
    let path: Vec<&str> = url
        .path()
        .split('/')
        .map(|s| if token_like(s) { "****" } else { s })
        .collect();
    out.push_str(&path.join("/"));
    if let Some(q) = url.query() {
        let pairs: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=****"),
                None => "****".to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Something that did not parse as a URL: only its scheme-like start is shown.
fn mask_unparsed(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, _)) => format!(
            "{:?}",
            format!("{}://****", scheme.chars().take(16).collect::<String>())
        ),
        None => "\"****\"".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_masked() {
        let t = Target::parse(
            "https://user:pw@hooks.example.com:8443/services/T0AB/XyZ123456?token=abc&x",
            None,
        )
        .expect("valid");
        assert_eq!(
            t.masked,
            "https://****@hooks.example.com:8443/services/****/****?token=****&****"
        );
        assert_eq!(t.id.len(), 16);
        assert_eq!(
            Target::parse("http://127.0.0.1:9000/hook", None)
                .expect("valid")
                .masked,
            "http://127.0.0.1:9000/hook"
        );
        let e = Target::parse("ftp://h/x?token=secret", None).expect_err("scheme");
        assert!(matches!(e, TargetError::Scheme(_)));
        assert!(!e.to_string().contains("secret"));
        assert!(matches!(
            Target::parse("file:///tmp/x", None),
            Err(TargetError::Scheme(_))
        ));
        // http(s) without a host does not even parse.
        assert!(Target::parse("http://", None).is_err());
        assert!(Target::parse("https://:443/x", None).is_err());
        let e = Target::parse("not a url secret", None).expect_err("garbage");
        assert!(!e.to_string().contains("secret"), "{e}");
        // The same URL on every node: the same outbox.
        assert_eq!(
            Target::parse("http://a/x", None).expect("valid").id,
            Target::parse("http://a/x", None).expect("valid").id
        );
    }
}
