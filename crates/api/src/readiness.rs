//! `/readyz`: ready means the store answers reads *and* takes writes. A store that answers reads
//! while refusing every write (an embedded store on a full or read-only disk, or one latched after
//! an I/O error; Redis with `MISCONF` after a failed save, a `READONLY` replica) makes the server
//! not ready, with the reason. The write side is checked by a [`WriteProbe`] (set by the binary
//! from the store spec: a tiny file beside the embedded store, a Redis key with a TTL) and by
//! opening a write transaction that changes nothing (a delete of an id no marker has).
//!
//! Probes are cheap but not free (an fsync, a round trip), so one result serves every `/readyz`
//! for [`PROBE_TTL`]; a change of state is logged once, when it happens.

use std::fmt::Debug;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hlsmark_store::{Store, StreamName};
use uuid::Uuid;

use crate::error::ApiError;

/// How long one probe result is reused.
pub const PROBE_TTL: Duration = Duration::from_secs(1);
/// A probe that takes longer than this counts as failed (the store answers within 1 s when up).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`WriteProbe::check`] returns: `Err(why)` when the write failed (one line, for the 503
/// message and the log).
pub type ProbeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// A cheap write to where the store keeps its data, that grows nothing.
pub trait WriteProbe: Send + Sync + Debug {
    fn check(&self) -> ProbeFuture<'_>;
}

/// Writes 16 bytes to a new file, syncs it and renames it over `<dir>/.hlsmark-write-probe`:
/// fails on a full or read-only file system (the embedded store's disk). A new file each time,
/// because rewriting one in place would reuse its own block even on a full disk.
#[derive(Debug, Clone)]
pub struct DirWriteProbe {
    path: PathBuf,
    tmp: PathBuf,
}

impl DirWriteProbe {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            path: dir.join(".hlsmark-write-probe"),
            tmp: dir.join(".hlsmark-write-probe.tmp"),
        }
    }
}

impl WriteProbe for DirWriteProbe {
    fn check(&self) -> ProbeFuture<'_> {
        let (path, tmp) = (self.path.clone(), self.tmp.clone());
        Box::pin(async move {
            let write = move || -> std::io::Result<()> {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let written = std::fs::File::create(&tmp).and_then(|mut f| {
                    f.write_all(&stamp.to_le_bytes())?;
                    f.sync_data()
                });
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
                std::fs::rename(&tmp, &path)
            };
            let path = self.path.display().to_string();
            match actix_web::web::block(write).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("cannot write {path}: {e}")),
                Err(e) => Err(format!("write probe of {path} did not run: {e}")),
            }
        })
    }
}

/// The last readiness result and when it was taken.
#[derive(Debug)]
pub struct Readiness {
    /// An id no marker has: deleting it opens a write transaction that changes nothing.
    probe_id: Uuid,
    last: Mutex<Option<(Instant, Result<(), ApiError>)>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            probe_id: Uuid::new_v4(),
            last: Mutex::new(None),
        }
    }
}

impl Readiness {
    /// Ready, or the 503 that says why not (at most [`PROBE_TTL`] old).
    pub async fn check(
        &self,
        store: &dyn Store,
        stream: &StreamName,
        probe: Option<&dyn WriteProbe>,
    ) -> Result<(), ApiError> {
        if let Ok(last) = self.last.lock()
            && let Some((at, r)) = last.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return r.clone();
        }
        let r = self.probe(store, stream, probe).await;
        if let Ok(mut last) = self.last.lock() {
            let was = last.as_ref().map(|(_, r)| r.is_ok());
            match (&r, was) {
                (Err(e), Some(true) | None) => {
                    tracing::warn!(reason = %e.message, "not ready: the store refuses writes or reads");
                }
                (Ok(()), Some(false)) => tracing::info!("ready again: the store takes writes"),
                _ => {}
            }
            *last = Some((Instant::now(), r.clone()));
        }
        r
    }

    async fn probe(
        &self,
        store: &dyn Store,
        stream: &StreamName,
        probe: Option<&dyn WriteProbe>,
    ) -> Result<(), ApiError> {
        let unavailable = |code, why: String| {
            ApiError::new(actix_web::http::StatusCode::SERVICE_UNAVAILABLE, code, why)
        };
        let timed = |what: &str| format!("{what} took longer than {PROBE_TIMEOUT:?}");
        match tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(unavailable(
                    "store_unavailable",
                    format!("the store does not answer: {e}"),
                ));
            }
            Err(_) => {
                return Err(unavailable(
                    "store_unavailable",
                    timed("a ping of the store"),
                ));
            }
        }
        match tokio::time::timeout(PROBE_TIMEOUT, store.delete_marker(stream, self.probe_id)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(unavailable(
                    "store_not_writable",
                    format!("the store refuses writes: {e}"),
                ));
            }
            Err(_) => {
                return Err(unavailable(
                    "store_not_writable",
                    timed("a write transaction"),
                ));
            }
        }
        if let Some(p) = probe {
            match tokio::time::timeout(PROBE_TIMEOUT, p.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    return Err(unavailable(
                        "store_not_writable",
                        format!("the store refuses writes: {why}"),
                    ));
                }
                Err(_) => {
                    return Err(unavailable("store_not_writable", timed("the write probe")));
                }
            }
        }
        Ok(())
    }
}
