//! The ingest side of a stream's lease (`hlsmark_store::lease`): an ingest writes a stream only
//! while it holds the stream's lease. At start it asks for it: granted, the stream runs and a
//! task renews it every third of its ttl; held by another ingest, the run either ends at once
//! with one line naming the holder (the default: two ingests started by accident should hear
//! about it) or, with `--standby`, waits and asks again until the holder is gone, then starts a
//! new epoch that continues the sequence. A renewal the store answers with `Fenced` (another
//! ingest took over while this one was paused or cut off longer than the ttl) stops the stream
//! at once; the store refuses its index writes anyway. Renewals that fail because the store is
//! unreachable change nothing: the token stays valid until a newer one exists.

use std::sync::Arc;
use std::time::Duration;

use hlsmark_store::{ErrorKind, LeaseAttempt, Store, StoreError, StreamName};
use tokio::sync::watch;

use crate::GeneratorError;

/// Default lease time: a standby takes over at most this long after the holder's last renewal.
/// 1.5 s puts the next segment after a `kill -9` at 2.5 s (median) with 1 s segments (2 s: 3.05 s;
/// scripts/bench-takeover.sh), and still outlasts one renewal lost to the store's 0.8 s call bound.
pub const DEFAULT_TTL: Duration = Duration::from_millis(1500);

/// How a stream's ingest holds its lease (`--standby`, `--lease-ttl`, `--ingest-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Who this ingest is (`host:pid` by default), shown to the other ingests and in `/streams`.
    pub holder: String,
    pub ttl: Duration,
    /// Wait for a held lease instead of ending with an error.
    pub standby: bool,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            holder: default_holder(),
            ttl: DEFAULT_TTL,
            standby: false,
        }
    }
}

/// `host:pid`, with characters a holder id cannot carry replaced by `-`.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let host: String = host
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{}:{}",
        if host.is_empty() { "host" } else { &host },
        std::process::id()
    )
}

/// A held lease: its token, the renewal task, and whether the store said another ingest took
/// over (`fenced`).
#[derive(Debug)]
pub(crate) struct Held {
    pub token: u64,
    fenced: watch::Receiver<bool>,
    fenced_tx: Arc<watch::Sender<bool>>,
    ttl: Duration,
    task: tokio::task::JoinHandle<()>,
    store: Arc<dyn Store>,
    stream: StreamName,
}

/// What a run checks before each attempt of its source: an attempt writes a new epoch's files,
/// and a stale ingest (resumed after a pause, its ffmpeg killed by the one that took over) must
/// not start one, even before its renewal task noticed: in a shared directory the new holder's
/// next epoch has the same file names.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    token: u64,
    ttl: Duration,
    fenced: Arc<watch::Sender<bool>>,
    store: Arc<dyn Store>,
    stream: StreamName,
}

impl Gate {
    pub fn is_fenced(&self) -> bool {
        *self.fenced.borrow()
    }

    /// Renews the lease now; `false` (and the run's stop flag set) when the store says another
    /// ingest holds it. An unreachable store answers `true`: the token is still the newest one
    /// as far as anyone can tell, and the store refuses the writes if not.
    pub async fn confirm(&self) -> bool {
        if self.is_fenced() {
            return false;
        }
        match tokio::time::timeout(
            self.ttl,
            self.store.renew_lease(&self.stream, self.token, self.ttl),
        )
        .await
        {
            Ok(Err(e @ StoreError::Fenced { .. })) => {
                tracing::error!(stream = %self.stream, error = %e, "fenced: another ingest holds the stream now; not restarting its source");
                let _ = self.fenced.send(true);
                false
            }
            _ => true,
        }
    }
}

/// A run dropped without `release` (its task aborted) must not renew forever: the lease then
/// lapses after its ttl.
impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Held {
    pub fn gate(&self) -> Gate {
        Gate {
            token: self.token,
            ttl: self.ttl,
            fenced: self.fenced_tx.clone(),
            store: self.store.clone(),
            stream: self.stream.clone(),
        }
    }

    /// A receiver that turns true when the lease was taken over.
    pub fn fenced(&self) -> watch::Receiver<bool> {
        self.fenced.clone()
    }

    pub fn is_fenced(&self) -> bool {
        *self.fenced.borrow()
    }

    /// Stops renewing; gives the lease up unless it was taken over (a standby then starts at
    /// its next try instead of after the ttl).
    pub async fn release(mut self) {
        self.task.abort();
        // An aborted task's future (and the store handle it holds) is dropped when the runtime
        // next gets to it: wait for that, so that nothing of this run keeps the store open once
        // the run has returned (an embedded store reopened at once in the same process would
        // otherwise be "in use").
        let _ = (&mut self.task).await;
        if self.is_fenced() {
            return;
        }
        match tokio::time::timeout(
            Duration::from_secs(1),
            self.store.release_lease(&self.stream, self.token),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(stream = %self.stream, token = self.token, "ingest lease released");
            }
            Ok(Err(e)) => {
                tracing::warn!(stream = %self.stream, error = %e, "could not release the ingest lease; it expires by itself");
            }
            Err(_) => {
                tracing::warn!(stream = %self.stream, "releasing the ingest lease timed out; it expires by itself");
            }
        }
    }
}

/// Acquires the stream's lease, waiting as a standby when configured to. `None` when `stop`
/// turned true first.
pub(crate) async fn acquire(
    store: &Arc<dyn Store>,
    stream: &StreamName,
    cfg: &LeaseConfig,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Held>, GeneratorError> {
    let poll = cfg.ttl / 3;
    // Without --standby a held lease is still waited on for one ttl: a process restarted right
    // after a crash finds its own dead predecessor's lease, which lapses within the ttl. A
    // holder that renews through that wait is alive: then the start ends with its name.
    let give_up = tokio::time::Instant::now() + cfg.ttl + poll;
    let mut last_holder: Option<String> = None;
    let mut warned = false;
    loop {
        if *stop.borrow() {
            return Ok(None);
        }
        // The next try: a third of the ttl, or right when the holder's lease ends if sooner
        // (takeover time after a holder died is what a standby is for).
        let wait = match store.acquire_lease(stream, &cfg.holder, cfg.ttl).await {
            Ok(LeaseAttempt::Acquired { token }) => {
                tracing::info!(stream = %stream, token, holder = %cfg.holder, ttl_ms = cfg.ttl.as_millis(), "ingest lease acquired; this ingest writes the stream");
                return Ok(Some(start_renewing(store, stream, cfg, token)));
            }
            Ok(LeaseAttempt::Held(h)) => {
                if !cfg.standby && tokio::time::Instant::now() >= give_up {
                    return Err(GeneratorError::LeaseHeld {
                        stream: stream.to_string(),
                        holder: h.holder,
                        token: h.token,
                        ttl_left_ms: h.ttl_left.as_millis(),
                    });
                }
                if last_holder.as_deref() != Some(h.holder.as_str()) {
                    if cfg.standby {
                        tracing::info!(stream = %stream, holder = %h.holder, token = h.token, "standby: another ingest writes the stream; taking over when its lease ends");
                    } else {
                        tracing::info!(stream = %stream, holder = %h.holder, token = h.token, ttl_ms = cfg.ttl.as_millis(), "another ingest holds the stream's lease; waiting one lease time for it to lapse");
                    }
                    last_holder = Some(h.holder.clone());
                }
                poll.min(h.ttl_left + Duration::from_millis(5))
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                if !warned {
                    warned = true;
                    tracing::warn!(stream = %stream, error = %e, "store unreachable; waiting to acquire the ingest lease");
                }
                poll
            }
            Err(e) => return Err(GeneratorError::Store(e)),
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

fn start_renewing(
    store: &Arc<dyn Store>,
    stream: &StreamName,
    cfg: &LeaseConfig,
    token: u64,
) -> Held {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let task = tokio::spawn(renew_loop(
        store.clone(),
        stream.clone(),
        cfg.ttl,
        token,
        tx.clone(),
    ));
    Held {
        token,
        fenced: rx,
        fenced_tx: tx,
        ttl: cfg.ttl,
        task,
        store: store.clone(),
        stream: stream.clone(),
    }
}

async fn renew_loop(
    store: Arc<dyn Store>,
    stream: StreamName,
    ttl: Duration,
    token: u64,
    fenced: Arc<watch::Sender<bool>>,
) {
    let period = ttl / 3;
    let mut failing = false;
    loop {
        tokio::time::sleep(period).await;
        match tokio::time::timeout(ttl, store.renew_lease(&stream, token, ttl)).await {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!(stream = %stream, token, "ingest lease renewed again");
                }
                failing = false;
            }
            Ok(Err(e @ StoreError::Fenced { .. })) => {
                tracing::error!(stream = %stream, error = %e, "fenced: another ingest holds the stream now; stopping this ingest of it");
                let _ = fenced.send(true);
                return;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(stream = %stream, token, error = %e, "could not renew the ingest lease; ingesting on (a standby may take over if this lasts longer than the ttl)");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(stream = %stream, token, "renewing the ingest lease timed out; ingesting on");
                }
                failing = true;
            }
        }
    }
}

/// A stop flag that turns true when `stop` or `fenced` does.
pub(crate) fn stop_or_fenced(
    mut stop: watch::Receiver<bool>,
    mut fenced: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(*stop.borrow() || *fenced.borrow());
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = fenced.wait_for(|f| *f) => {}
        }
        let _ = tx.send(true);
        std::future::pending::<()>().await;
    });
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_holder_is_a_valid_holder_id() {
        let h = default_holder();
        assert!(h.ends_with(&format!(":{}", std::process::id())), "{h}");
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)),
            "{h}"
        );
    }
}
