//! S3-compatible object storage through the `object_store` crate (SigV4 signing with `ring`,
//! reqwest over rustls, path-style requests to a custom endpoint, its own retries with backoff).
//! Each object is one PUT (segments are at most a few MB; `object_store` would need multipart
//! only past 5 GB). Retries are bounded to seconds, not the crate's default minutes: a live
//! segment that cannot be stored in ~10 s is better reported than queued.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    PutPayload, RetryConfig,
};

use crate::spec::S3Spec;
use crate::{MediaError, MediaStore, Object, check_key};

/// A bucket (and a prefix in it) of an S3-compatible server.
#[derive(Debug)]
pub struct S3 {
    store: AmazonS3,
    bucket: String,
    prefix: String,
    endpoint: String,
}

impl S3 {
    /// Builds the client from the spec and the usual AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`, `AWS_REGION`, ...), then
    /// lists the prefix once: a missing bucket, refused credentials or an unreachable server fail
    /// here in one line (never showing a secret).
    pub async fn open(spec: &S3Spec) -> Result<Self, MediaError> {
        // reqwest is built with rustls and no provider of its own: ring, as everywhere in
        // hlsmark (a second install is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&spec.bucket);
        if let Some(e) = &spec.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &spec.region {
            b = b.with_region(r);
        }
        if let Some(c) = &spec.credentials {
            b = b
                .with_access_key_id(&c.key_id)
                .with_secret_access_key(&c.secret);
        }
        let endpoint = spec
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT").ok())
            .unwrap_or_else(|| "AWS".to_owned());
        // Naming a plain-HTTP endpoint is the choice (a server on the same host or network).
        let allow_http = endpoint.starts_with("http://")
            || std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true");
        if spec.endpoint.is_none() && endpoint != "AWS" {
            crate::spec::check_endpoint(&endpoint)
                .map_err(|e| MediaError::Open(format!("AWS_ENDPOINT_URL: {e}")))?;
        }
        let b = b
            .with_virtual_hosted_style_request(false)
            .with_client_options(
                // Replaces the client options `from_env` set: `allow_http` goes here too.
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(15)),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(10),
            });
        let url = format!("s3://{}/{}", spec.bucket, spec.prefix);
        let store = b
            .build()
            .map_err(|e| MediaError::Open(format!("media {url}: {}", one_line(&e.to_string()))))?;
        let s3 = Self {
            store,
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone(),
            endpoint,
        };
        // One request proves the bucket, the credentials and the server.
        let probe = s3.path_of_prefix();
        if let Err(e) = s3.store.list_with_delimiter(probe.as_ref()).await {
            let why = match &e {
                object_store::Error::NotFound { .. } => "bucket not found".to_owned(),
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => {
                    "credentials refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)".to_owned()
                }
                other => classify_open(&other.to_string()),
            };
            return Err(MediaError::Open(format!(
                "media {url} at {}: {why}",
                s3.endpoint
            )));
        }
        Ok(s3)
    }

    fn path_of_prefix(&self) -> Option<ObjPath> {
        (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()))
    }

    fn path(&self, key: &str) -> Result<ObjPath, MediaError> {
        check_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjPath::parse(full).map_err(|_| MediaError::InvalidKey(key.to_owned()))
    }

    /// The key (relative to the prefix) of a full object path.
    fn key_of(&self, p: &ObjPath) -> String {
        let s = p.as_ref();
        if self.prefix.is_empty() {
            s.to_owned()
        } else {
            s.strip_prefix(&self.prefix)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(s)
                .to_owned()
        }
    }
}

/// Why the start-up probe failed, for the user. `object_store` reports S3's answers as a generic
/// error whose text holds the status and S3's error code (its retry error type is private), so
/// the text is what there is to read.
fn classify_open(text: &str) -> String {
    let has = |w: &[&str]| w.iter().any(|w| text.contains(w));
    if has(&["NoSuchBucket", "404 Not Found"]) {
        "bucket not found".to_owned()
    } else if has(&[
        "403 Forbidden",
        "401 Unauthorized",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]) {
        "credentials refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)".to_owned()
    } else if has(&["error sending request", "connect"]) {
        "cannot reach the server (--s3-endpoint / AWS_ENDPOINT_URL)".to_owned()
    } else {
        one_line(text)
    }
}

/// The first line of an error text (object_store errors may carry a response body).
fn one_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    l.chars().take(300).collect()
}

fn remote(op: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> MediaError {
    let key = key.to_owned();
    move |source| match source {
        object_store::Error::NotFound { .. } => MediaError::NotFound { key },
        source => MediaError::Remote { op, key, source },
    }
}

#[async_trait::async_trait]
impl MediaStore for S3 {
    async fn put(&self, key: &str, chunks: Vec<Bytes>) -> Result<(), MediaError> {
        let path = self.path(key)?;
        // The chunks become the body as they are (no copy into one buffer).
        let payload: PutPayload = chunks.into_iter().collect();
        self.store
            .put(&path, payload)
            .await
            .map_err(remote("put", key))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, MediaError> {
        let path = self.path(key)?;
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let r = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(remote("get", key))?;
        let meta = r.meta.clone();
        let bytes = r.bytes().await.map_err(remote("get", key))?;
        Ok(Object {
            bytes,
            size: meta.size,
            last_modified: Some(SystemTime::from(meta.last_modified)),
            etag: meta.e_tag,
        })
    }

    async fn delete_many(&self, keys: &[String]) -> Result<usize, MediaError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let paths = keys
            .iter()
            .map(|k| self.path(k))
            .collect::<Result<Vec<_>, _>>()?;
        // DeleteObjects, up to 1,000 keys a request; an object already gone counts as deleted.
        let first = keys[0].clone();
        let results: Vec<_> = self
            .store
            .delete_stream(futures_util::stream::iter(paths.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        let mut n = 0;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(remote("delete", &first)(e)),
            }
        }
        Ok(n)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, MediaError> {
        // `object_store` lists whole path segments: list the directory part, filter the rest.
        let (dir, start) = match prefix.rsplit_once('/') {
            Some((d, s)) => (d, s),
            None => ("", prefix),
        };
        let dir_path = match (self.prefix.is_empty(), dir.is_empty()) {
            (true, true) => None,
            (false, true) => self.path_of_prefix(),
            _ => Some(self.path(dir)?),
        };
        let metas: Vec<_> = self
            .store
            .list(dir_path.as_ref())
            .try_collect()
            .await
            .map_err(remote("list", prefix))?;
        Ok(metas
            .iter()
            .map(|m| self.key_of(&m.location))
            .filter(|k| {
                let name = k
                    .strip_prefix(dir)
                    .map_or(k.as_str(), |r| r.trim_start_matches('/'));
                k.starts_with(dir) && name.starts_with(start) && !name.contains('/')
            })
            .collect())
    }

    fn describe(&self) -> String {
        format!("s3://{}/{} at {}", self.bucket, self.prefix, self.endpoint)
    }
}
