//! The delivery loop: one task per webhook target, each claiming due outbox entries, rendering
//! the marker, POSTing it signed, and recording the outcome in the store.
//!
//! At least once: an entry leaves the outbox only after a 2xx answer (or as dead after the last
//! attempt, or as skipped when its marker was deleted first). A claim is a lease of
//! `timeout + 5 s`: if this process dies mid-delivery, the entry falls due again when the lease
//! ends and any node (this one restarted, or another) delivers it again with the same delivery
//! id. New markers wake the loop through the store's marker feed; retries and leases that end
//! are found by a poll once a second.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hlsmark_store::outbox::{self, Finish, HookRegistration, Outbox, OutboxEntry};
use hlsmark_store::{Marker, Store};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

use crate::{Secret, Target};

/// The marker as the API shows it (`GET /markers/{id}`), supplied by the binary.
#[async_trait]
pub trait Render: Send + Sync + 'static {
    async fn render(&self, marker: &Marker) -> Result<serde_json::Value, String>;
}

/// Wait before the next attempt: `first`, doubling per failed attempt, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

/// How the dispatcher delivers.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub targets: Vec<Target>,
    /// `None`: deliveries are not signed (allowed with a warning at start).
    pub secret: Option<Secret>,
    /// Whole request (connect, send, answer) per attempt.
    pub timeout: Duration,
    /// Attempts before an entry is dead (counted, logged, removed).
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            secret: None,
            timeout: Duration::from_secs(10),
            max_attempts: 20,
            backoff: Backoff::default(),
        }
    }
}

/// Entries claimed (and delivered concurrently) per round of one target.
const BATCH: usize = 16;
/// How often due retries and ended leases are looked for without a wake-up.
const POLL: Duration = Duration::from_secs(1);
/// How often each node renews its registrations.
const RENEW: Duration = Duration::from_secs(60);

/// The stable delivery id of an entry: the same for every attempt and every node, different for
/// each (webhook, marker insert).
pub fn delivery_id(e: &OutboxEntry) -> String {
    let mut h = Sha256::new();
    h.update(e.hook.as_bytes());
    h.update(b"/");
    h.update(e.stream.as_str().as_bytes());
    h.update(b"/");
    h.update(e.marker.as_bytes());
    h.update(e.created_ms.to_be_bytes());
    let d = h.finalize();
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("this store has no webhook outbox")]
    NoOutbox,
    #[error("cannot build the webhook HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Registers every target in the store now (a start-up step: from then on every marker insert
/// writes their entries, before the API takes its first POST). The dispatcher renews them.
pub async fn register(
    store: &dyn Store,
    targets: &[Target],
) -> Result<(), hlsmark_store::StoreError> {
    let Some(ob) = outbox::of(store) else {
        return Ok(());
    };
    for t in targets {
        ob.register_webhook(&HookRegistration {
            id: t.id.clone(),
            url_masked: t.masked.clone(),
            streams: t.streams.clone(),
        })
        .await?;
    }
    Ok(())
}

/// Registers every target and delivers until `stop` turns true. Returns when every target's
/// loop has ended (in-flight attempts finish first, bounded by the timeout).
pub async fn run(
    store: Arc<dyn Store>,
    cfg: DispatcherConfig,
    render: Arc<dyn Render>,
    stop: watch::Receiver<bool>,
) -> Result<(), StartError> {
    if outbox::of(&*store).is_none() {
        return Err(StartError::NoOutbox);
    }
    // reqwest is built without a default crypto provider (no aws-lc): use ring, like the server.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hlsmark-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(StartError::Client)?;
    let cfg = Arc::new(cfg);
    let mut tasks = Vec::new();
    for target in cfg.targets.clone() {
        let d = Deliverer {
            store: Arc::clone(&store),
            cfg: Arc::clone(&cfg),
            render: Arc::clone(&render),
            client: client.clone(),
            target,
        };
        tasks.push(tokio::spawn(d.run(stop.clone())));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

struct Deliverer {
    store: Arc<dyn Store>,
    cfg: Arc<DispatcherConfig>,
    render: Arc<dyn Render>,
    client: reqwest::Client,
    target: Target,
}

/// What an attempt came to.
enum Outcome {
    Delivered,
    Gone,
    Failed(String),
}

impl Deliverer {
    fn outbox(&self) -> &dyn Outbox {
        // Checked in `run`.
        outbox::of(&*self.store).unwrap_or_else(|| unreachable!("checked at start"))
    }

    fn lease(&self) -> Duration {
        self.cfg.timeout + Duration::from_secs(5)
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let url = self.target.masked.clone();
        let mut feed: Option<broadcast::Receiver<Marker>> = None;
        let mut registered: Option<tokio::time::Instant> = None;
        let mut store_down = false;
        let mut failing = false;
        loop {
            if *stop.borrow() {
                return;
            }
            if registered.is_none_or(|t| t.elapsed() >= RENEW) {
                match self.outbox().register_webhook(&self.registration()).await {
                    Ok(()) => registered = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        if !store_down {
                            tracing::warn!(webhook = %url, error = %e, "webhook: cannot register in the store; retrying");
                        }
                        store_down = true;
                        self.pause(&mut stop, POLL).await;
                        continue;
                    }
                }
            }
            if feed.is_none() {
                feed = self.store.subscribe_markers().await.ok();
            }
            let claimed = match self
                .outbox()
                .claim_due(&self.target.id, BATCH, self.lease())
                .await
            {
                Ok(c) => {
                    if store_down {
                        tracing::info!(webhook = %url, "webhook: store reachable again");
                        store_down = false;
                    }
                    c
                }
                Err(e) => {
                    if !store_down {
                        tracing::warn!(webhook = %url, error = %e, "webhook: cannot read the outbox; retrying");
                    }
                    store_down = true;
                    self.pause(&mut stop, POLL).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                self.idle(&mut stop, &mut feed).await;
                continue;
            }
            let attempts = claimed.iter().map(|e| self.attempt(e));
            let outcomes = futures_util::future::join_all(attempts).await;
            for (e, outcome) in claimed.iter().zip(outcomes) {
                let id = delivery_id(e);
                let recorded = match outcome {
                    Outcome::Delivered => {
                        if failing {
                            tracing::info!(webhook = %url, "webhook: deliveries work again");
                            failing = false;
                        }
                        tracing::debug!(webhook = %url, delivery = %id, marker = %e.marker, attempt = e.attempt, "webhook delivered");
                        self.outbox().finish(e, Finish::Delivered).await
                    }
                    Outcome::Gone => self.outbox().finish(e, Finish::Skipped).await,
                    Outcome::Failed(why) if e.attempt >= self.cfg.max_attempts => {
                        tracing::warn!(webhook = %url, delivery = %id, marker = %e.marker, attempts = e.attempt, error = %why, "webhook delivery dead: giving up");
                        self.outbox().finish(e, Finish::Dead).await
                    }
                    Outcome::Failed(why) => {
                        let wait = self.cfg.backoff.after(e.attempt);
                        if failing {
                            tracing::debug!(webhook = %url, delivery = %id, attempt = e.attempt, error = %why, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "webhook attempt failed");
                        } else {
                            // One line when a target starts failing, one when it works again.
                            tracing::warn!(webhook = %url, delivery = %id, attempt = e.attempt, error = %why, retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "webhook attempt failed; retrying with backoff");
                            failing = true;
                        }
                        self.outbox().retry_later(e, wait).await
                    }
                };
                if let Err(err) = recorded {
                    // The lease ends and the entry is attempted again: at least once holds.
                    tracing::warn!(webhook = %url, delivery = %id, error = %err, "webhook: cannot record the outcome in the store");
                }
            }
        }
    }

    fn registration(&self) -> HookRegistration {
        HookRegistration {
            id: self.target.id.clone(),
            url_masked: self.target.masked.clone(),
            streams: self.target.streams.clone(),
        }
    }

    /// Waits for a new marker of a wanted stream, the poll interval, or stop.
    async fn idle(
        &self,
        stop: &mut watch::Receiver<bool>,
        feed: &mut Option<broadcast::Receiver<Marker>>,
    ) {
        let deadline = tokio::time::sleep(POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = stop.changed() => return,
                r = async {
                    match feed.as_mut() {
                        Some(f) => f.recv().await,
                        None => std::future::pending().await,
                    }
                } => match r {
                    Ok(m) if self.wants(&m) => {
                        // Let a burst (a batch insert) land before claiming.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => {
                        *feed = None;
                        return;
                    }
                },
            }
        }
    }

    fn wants(&self, m: &Marker) -> bool {
        self.target
            .streams
            .as_ref()
            .is_none_or(|s| s.contains(&m.stream))
    }

    async fn pause(&self, stop: &mut watch::Receiver<bool>, d: Duration) {
        tokio::select! {
            () = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }

    async fn attempt(&self, e: &OutboxEntry) -> Outcome {
        let marker = match self.store.get_marker(&e.stream, e.marker).await {
            Ok(Some(m)) => m,
            Ok(None) => return Outcome::Gone,
            Err(err) => return Outcome::Failed(format!("store: {err}")),
        };
        let view = match self.render.render(&marker).await {
            Ok(v) => v,
            Err(why) => return Outcome::Failed(format!("render: {why}")),
        };
        let id = delivery_id(e);
        let body = serde_json::json!({
            "event": "marker.created",
            "delivery_id": id,
            "stream": e.stream.as_str(),
            "marker": view,
        });
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(err) => return Outcome::Failed(format!("encode: {err}")),
        };
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut req = self
            .client
            .post(self.target.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string());
        if let Some(secret) = &self.cfg.secret {
            req = req.header("webhook-signature", secret.sign(&id, ts, &body));
        }
        match req.body(body).send().await {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered,
            Ok(resp) => Outcome::Failed(format!("HTTP {}", resp.status().as_u16())),
            // Without the URL: it may hold a token.
            Err(err) => Outcome::Failed(describe(&err.without_url())),
        }
    }
}

/// A short cause: timeout, connection refused, TLS, ...
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else if err.is_request() {
        "request"
    } else {
        "error"
    };
    let mut s = format!("{kind}: {err}");
    let mut src = std::error::Error::source(err);
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let b = Backoff::default();
        let waits: Vec<u64> = (1..=12).map(|a| b.after(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.after(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let e = OutboxEntry {
            hook: "ab12".into(),
            stream: hlsmark_store::StreamName::live(),
            marker: uuid::Uuid::from_u128(7),
            created_ms: 1,
            attempt: 1,
        };
        let again = OutboxEntry {
            attempt: 5,
            ..e.clone()
        };
        assert_eq!(delivery_id(&e), delivery_id(&again));
        let reinserted = OutboxEntry {
            created_ms: 2,
            ..e.clone()
        };
        assert_ne!(delivery_id(&e), delivery_id(&reinserted));
        assert!(delivery_id(&e).starts_with("msg_"));
        assert_eq!(delivery_id(&e).len(), 36);
    }
}
