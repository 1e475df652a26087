//! The webhooks' durable outbox: one entry per (webhook, new marker), written in the same
//! transaction (embedded) or script (Redis) as the marker itself, so a marker acknowledged to its
//! poster can never be lost to a webhook, whatever crashes afterwards.
//!
//! A webhook is registered in the store ([`Outbox::register_webhook`]: an id, the streams it
//! wants or all, a masked URL for `/metrics`) by every node that has it configured, at start and
//! then every minute. Every marker insert looks at the registrations (a handful of rows) and adds
//! an entry for each webhook whose streams match and whose registration was renewed within
//! [`REGISTRATION_TTL`] (a webhook dropped from every node's config stops collecting entries).
//!
//! Delivery: a dispatcher [claims](Outbox::claim_due) due entries; the claim is a lease, made by
//! moving the entry's due time to `now + lease`, so a node that dies mid-delivery leaves its
//! entries due again when the lease ends and any node takes them over (a duplicate after a crash
//! carries the same delivery id). A delivered entry is [finished](Outbox::finish) (removed and
//! counted); a failed one is [retried later](Outbox::retry_later) or finished as dead. Times are
//! the store's clock (Redis `TIME`; the embedded store's process clock), in ms since 1970.
//!
//! The store knows nothing of HTTP: the dispatcher and its retry policy are `hlsmark-webhooks`.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::{Result, Store, StoreError, StreamName};

/// A registration not renewed for this long is ignored by new inserts (its entries stay).
pub const REGISTRATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest webhook id (`[0-9a-z]`); ids are keys in both backends.
pub const MAX_HOOK_ID: usize = 32;

/// What a node tells the store about a configured webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRegistration {
    /// Stable id of the webhook (derived from its URL by the caller), 1-32 of `[0-9a-z]`.
    pub id: String,
    /// The URL with secrets masked, for `/metrics` and logs.
    pub url_masked: String,
    /// Streams whose markers it gets; `None` = every stream.
    pub streams: Option<Vec<StreamName>>,
}

/// One pending delivery: a marker for a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub hook: String,
    pub stream: StreamName,
    pub marker: Uuid,
    /// When the entry was written (with the marker), ms since 1970 on the store's clock.
    pub created_ms: u64,
    /// Attempts so far, this claim included (1 on the first delivery).
    pub attempt: u32,
}

/// How an entry leaves the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The receiver answered 2xx.
    Delivered,
    /// The marker is gone (deleted, or dropped by retention) before it could be delivered.
    Skipped,
    /// The last allowed attempt failed: counted as a failed attempt and as dead.
    Dead,
}

/// Delivery state of one webhook (from the store, so every node shows the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub hook: String,
    pub url_masked: String,
    pub pending: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead: u64,
    pub skipped: u64,
    /// `created_ms` of the oldest pending entry.
    pub oldest_pending_ms: Option<u64>,
    /// The store's clock when these were read (ms since 1970), for the oldest entry's age.
    pub now_ms: u64,
}

/// The outbox operations of a store (both backends implement it).
#[async_trait]
pub trait Outbox: Send + Sync + std::fmt::Debug {
    /// Adds or renews a webhook's registration (idempotent; every node calls it every minute).
    async fn register_webhook(&self, reg: &HookRegistration) -> Result<()>;

    /// Claims up to `limit` entries of `hook` that are due now, oldest due first: each one's
    /// attempt count goes up and its due time moves to `now + lease` (the lease).
    async fn claim_due(
        &self,
        hook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>>;

    /// Removes a claimed entry and counts how it ended. An entry already gone (another node
    /// finished it after taking over the lease) is not counted twice.
    async fn finish(&self, entry: &OutboxEntry, how: Finish) -> Result<()>;

    /// Counts a failed attempt and makes the entry due again `after` from now (nothing if it is
    /// gone).
    async fn retry_later(&self, entry: &OutboxEntry, after: Duration) -> Result<()>;

    /// The delivery state of every registered webhook, by id.
    async fn outbox_stats(&self) -> Result<Vec<OutboxStats>>;
}

/// The outbox of a store opened by [`crate::open`] (both backends have one).
pub fn of(store: &dyn Store) -> Option<&dyn Outbox> {
    let any: &dyn std::any::Any = store;
    if let Some(s) = any.downcast_ref::<crate::EmbeddedStore>() {
        return Some(s);
    }
    if let Some(s) = any.downcast_ref::<crate::RedisStore>() {
        return Some(s);
    }
    None
}

/// Checks a webhook id: it becomes part of keys (redb tuple keys, Redis key names).
pub fn check_hook_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_HOOK_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return Err(StoreError::Backend(format!(
            "webhook id {id:?} is not 1-{MAX_HOOK_ID} of [0-9a-z]"
        )));
    }
    Ok(())
}

/// Milliseconds since 1970 on this process's clock (the embedded store's clock).
pub(crate) fn now_ms() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
