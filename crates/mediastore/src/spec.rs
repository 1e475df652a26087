//! The `--media` value: a directory (the default, `<data-dir>/hls`) or `s3://bucket/prefix`, with
//! the S3 endpoint and region from their own flags or the usual AWS variables (read at open).

use std::path::PathBuf;

use crate::check_key;

/// Where media goes, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSpec {
    Dir(PathBuf),
    S3(S3Spec),
}

/// An S3-compatible bucket. Credentials are not here: they come from `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` (and the other usual AWS variables) when the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// Keys go under this (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None`: `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// `None`: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// `None` (what the CLI passes): the usual AWS variables. Set by callers that hold the key
    /// themselves (tests: the environment is the process's, shared by parallel tests).
    pub credentials: Option<Credentials>,
}

/// An access key and its secret (`Debug` never shows the secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A `--media` / `--s3-endpoint` value that cannot work (one line, the value shown without any
/// secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(String);

impl MediaSpec {
    /// Parses `--media`: `s3://bucket[/prefix]` or a directory path; any other `scheme://` is an
    /// error.
    pub fn parse(
        value: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Result<Self, SpecError> {
        let Some((scheme, rest)) = value.split_once("://") else {
            if value.is_empty() {
                return Err(SpecError(
                    "--media: empty (a directory or s3://bucket/prefix)".into(),
                ));
            }
            if endpoint.is_some() {
                return Err(SpecError(
                    "--s3-endpoint is set but --media is a directory (use --media s3://bucket/prefix)"
                        .into(),
                ));
            }
            return Ok(Self::Dir(PathBuf::from(value)));
        };
        if scheme != "s3" {
            return Err(SpecError(format!(
                "--media: unsupported scheme {:?} (a directory or s3://bucket/prefix)",
                scheme.chars().take(20).collect::<String>()
            )));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') || bucket.contains(':') {
            return Err(SpecError(
                "--media: no credentials or port in s3:// (credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the server from --s3-endpoint)".into(),
            ));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(SpecError(format!(
                "--media s3://{}: bad bucket name (3-63 lowercase letters, digits, '-', '.')",
                bucket.chars().take(70).collect::<String>()
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && check_key(prefix).is_err() {
            return Err(SpecError(format!(
                "--media s3://{bucket}/{}: bad prefix (letters, digits, '.', '_', '-' separated by '/')",
                prefix.chars().take(70).collect::<String>()
            )));
        }
        let endpoint = match endpoint.filter(|e| !e.is_empty()) {
            Some(e) => Some(check_endpoint(e)?),
            None => None,
        };
        if let Some(r) = region
            && (r.is_empty()
                || r.len() > 64
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(SpecError(format!(
                "--s3-region {:?}: letters, digits and '-' (e.g. us-east-1, garage)",
                r.chars().take(70).collect::<String>()
            )));
        }
        Ok(Self::S3(S3Spec {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint,
            region: region.map(str::to_owned),
            credentials: None,
        }))
    }
}

/// `http(s)://host[:port][/]`, without user info (a secret in a URL would end up in logs).
pub(crate) fn check_endpoint(e: &str) -> Result<String, SpecError> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Err(SpecError(
            "--s3-endpoint: must start with http:// or https:// (e.g. http://127.0.0.1:3900)"
                .into(),
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.contains('@') {
        return Err(SpecError(
            "--s3-endpoint: no credentials in the URL (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
        ));
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(SpecError(format!(
            "--s3-endpoint {:?}: not a host[:port]",
            host.chars().take(70).collect::<String>()
        )));
    }
    Ok(e.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dirs_and_buckets() {
        assert_eq!(
            MediaSpec::parse("/data/hls", None, None),
            Ok(MediaSpec::Dir("/data/hls".into()))
        );
        assert_eq!(
            MediaSpec::parse(
                "s3://media/a/b/",
                Some("http://127.0.0.1:3900/"),
                Some("garage")
            ),
            Ok(MediaSpec::S3(S3Spec {
                bucket: "media".into(),
                prefix: "a/b".into(),
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("garage".into()),
                credentials: None,
            }))
        );
        let MediaSpec::S3(s) = MediaSpec::parse("s3://media", None, None).unwrap() else {
            panic!()
        };
        assert_eq!((s.prefix.as_str(), s.endpoint), ("", None));
    }

    #[test]
    fn refuses_bad_values_in_one_line_without_secrets() {
        for (v, ep) in [
            ("", None),
            ("gs://b/p", None),
            ("s3://", None),
            ("s3://UPPER/p", None),
            ("s3://b", None),
            ("s3://key:secret@bucket/p", None),
            ("s3://bucket/../x", None),
            ("s3://bucket/p", Some("ftp://x")),
            ("s3://bucket/p", Some("http://key:secret@host:1")),
            ("s3://bucket/p", Some("http://")),
            ("/dir", Some("http://127.0.0.1:1")),
        ] {
            let e = MediaSpec::parse(v, ep, None).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("secret"), "{e}");
        }
        assert!(MediaSpec::parse("s3://bucket", None, Some("bad region")).is_err());
    }
}
