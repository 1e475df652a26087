//! The embedded store's webhook outbox ([`crate::outbox`]): five redb tables beside the markers.
//!
//! | table          | key                               | value                                  |
//! |----------------|-----------------------------------|----------------------------------------|
//! | `webhooks`     | hook id                           | registration JSON (url, streams, seen) |
//! | `outbox`       | (hook, stream, marker id u128)    | (created ms, due ms, attempts)         |
//! | `outbox_due`   | (hook, due ms, stream, marker id) | ()                                     |
//! | `outbox_age`   | (hook, created ms, stream, id)    | ()                                     |
//! | `outbox_stats` | hook id                           | (pending, delivered, failed, dead, skipped) |
//!
//! Entries are written by [`on_inserted`] inside the marker's own transaction (durable with it:
//! a journaled group's replay after a crash runs `on_inserted` again). Claims, finishes and
//! retries commit with `Durability::None`, like parts: a crash may undo the newest of them,
//! which only means an entry is delivered again (same delivery id), and the next immediate
//! commit (a journal checkpoint, at most about a second after markers were written, or a
//! segment's) makes them durable.

use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{EmbeddedStore, decode, encode};
use crate::outbox::{
    Finish, HookRegistration, Outbox, OutboxEntry, OutboxStats, REGISTRATION_TTL, check_hook_id,
    ms, now_ms,
};
use crate::{InsertOutcome, Marker, Result, StoreError, StreamName};

const HOOKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("webhooks");
/// (hook, stream, marker id) -> (created ms, due ms, attempts).
const ENTRIES: TableDefinition<'_, (&str, &str, u128), (u64, u64, u32)> =
    TableDefinition::new("outbox");
/// (hook, due ms, stream, marker id): entries in the order they fall due.
const DUE: TableDefinition<'_, (&str, u64, &str, u128), ()> = TableDefinition::new("outbox_due");
/// (hook, created ms, stream, marker id): the oldest pending entry first.
const AGE: TableDefinition<'_, (&str, u64, &str, u128), ()> = TableDefinition::new("outbox_age");
/// hook -> (pending, delivered, failed attempts, dead, skipped).
const STATS: TableDefinition<'_, &str, (u64, u64, u64, u64, u64)> =
    TableDefinition::new("outbox_stats");

#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    url: String,
    streams: Option<Vec<String>>,
    seen_ms: u64,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redb: {e}"))
}

/// Adds an outbox entry for every new marker of `new` and every live registration that wants
/// its stream. Called by `write_new`, inside the transaction that writes the markers.
pub(super) fn on_inserted(
    txn: &WriteTransaction,
    new: &[Marker],
    outcomes: &[InsertOutcome],
) -> Result<()> {
    let hooks = txn.open_table(HOOKS)?;
    // No webhook configured anywhere (the usual case): one empty-table check per transaction.
    if hooks.is_empty()? {
        return Ok(());
    }
    let now = now_ms();
    let mut live: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for row in hooks.iter()? {
        let (k, v) = row?;
        // An unreadable registration must not fail the marker's own write: it is skipped (and
        // rewritten by its node's next renewal, within a minute).
        let reg: Registration = match decode(v.value(), || format!("webhooks/{}", k.value())) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "webhook registration unreadable; skipped");
                continue;
            }
        };
        if now.saturating_sub(reg.seen_ms) <= ms(REGISTRATION_TTL) {
            live.push((k.value().to_owned(), reg.streams));
        }
    }
    drop(hooks);
    if live.is_empty() {
        return Ok(());
    }
    let mut entries = txn.open_table(ENTRIES)?;
    let mut due = txn.open_table(DUE)?;
    let mut age = txn.open_table(AGE)?;
    let mut stats = txn.open_table(STATS)?;
    for (hook, streams) in &live {
        let mut added = 0u64;
        for (m, o) in new.iter().zip(outcomes) {
            let s = m.stream.as_str();
            if *o != InsertOutcome::Inserted
                || streams
                    .as_ref()
                    .is_some_and(|list| !list.iter().any(|x| x == s))
            {
                continue;
            }
            let id = m.id.as_u128();
            let key = (hook.as_str(), s, id);
            if entries.get(key)?.is_some() {
                continue;
            }
            entries.insert(key, (now, now, 0))?;
            due.insert((hook.as_str(), now, s, id), ())?;
            age.insert((hook.as_str(), now, s, id), ())?;
            added += 1;
        }
        if added > 0 {
            let (p, d, f, x, k) = stats
                .get(hook.as_str())?
                .map_or((0, 0, 0, 0, 0), |g| g.value());
            stats.insert(hook.as_str(), (p + added, d, f, x, k))?;
        }
    }
    Ok(())
}

/// A write transaction that commits without an fsync (see the module note).
fn quick_txn(db: &redb::Database) -> Result<WriteTransaction> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None).map_err(backend)?;
    Ok(txn)
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn register_webhook(&self, reg: &HookRegistration) -> Result<()> {
        check_hook_id(&reg.id)?;
        let id = reg.id.clone();
        let body = encode(&Registration {
            url: reg.url_masked.clone(),
            streams: reg
                .streams
                .as_ref()
                .map(|v| v.iter().map(|s| s.as_str().to_owned()).collect()),
            seen_ms: now_ms(),
        })?;
        self.run(move |db| {
            // Durable: a registration decides which markers get entries.
            let txn = db.begin_write()?;
            txn.open_table(HOOKS)?
                .insert(id.as_str(), body.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn claim_due(
        &self,
        hook: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        check_hook_id(hook)?;
        let hook = hook.to_owned();
        self.run(move |db| {
            let now = now_ms();
            let until = now.saturating_add(ms(lease));
            // The dispatcher asks every second: look with a reader first, so an empty outbox
            // never takes the writer's lock from marker inserts.
            {
                let r = db.begin_read()?;
                let due = match r.open_table(DUE) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                };
                let h = hook.as_str();
                if due
                    .range((h, 0u64, "", 0u128)..(h, now.saturating_add(1), "", 0u128))?
                    .next()
                    .is_none()
                {
                    return Ok(Vec::new());
                }
            }
            let txn = quick_txn(db)?;
            let mut out = Vec::new();
            {
                let mut due = txn.open_table(DUE)?;
                let mut entries = txn.open_table(ENTRIES)?;
                let h = hook.as_str();
                let mut picked = Vec::new();
                for row in due.range((h, 0u64, "", 0u128)..(h, now.saturating_add(1), "", 0u128))? {
                    let (k, ()) = row.map(|(k, v)| (k, v.value()))?;
                    let (_, d, s, id) = k.value();
                    picked.push((d, s.to_owned(), id));
                    if picked.len() == limit {
                        break;
                    }
                }
                for (d, s, id) in picked {
                    due.remove((h, d, s.as_str(), id))?;
                    let Some((created, _, attempts)) =
                        entries.get((h, s.as_str(), id))?.map(|g| g.value())
                    else {
                        continue;
                    };
                    let attempt = attempts.saturating_add(1);
                    entries.insert((h, s.as_str(), id), (created, until, attempt))?;
                    due.insert((h, until, s.as_str(), id), ())?;
                    out.push(OutboxEntry {
                        hook: hook.clone(),
                        stream: StreamName::new(&s)?,
                        marker: Uuid::from_u128(id),
                        created_ms: created,
                        attempt,
                    });
                }
            }
            if out.is_empty() {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(out)
        })
        .await
    }

    async fn finish(&self, entry: &OutboxEntry, how: Finish) -> Result<()> {
        let e = entry.clone();
        self.run(move |db| {
            let txn = quick_txn(db)?;
            {
                let (h, s, id) = (e.hook.as_str(), e.stream.as_str(), e.marker.as_u128());
                let mut entries = txn.open_table(ENTRIES)?;
                let Some((created, due_ms, _)) = entries.remove((h, s, id))?.map(|g| g.value())
                else {
                    return Ok(());
                };
                txn.open_table(DUE)?.remove((h, due_ms, s, id))?;
                txn.open_table(AGE)?.remove((h, created, s, id))?;
                let mut stats = txn.open_table(STATS)?;
                let (p, d, f, x, k) = stats.get(h)?.map_or((0, 0, 0, 0, 0), |g| g.value());
                let p = p.saturating_sub(1);
                let row = match how {
                    Finish::Delivered => (p, d + 1, f, x, k),
                    Finish::Skipped => (p, d, f, x, k + 1),
                    Finish::Dead => (p, d, f + 1, x + 1, k),
                };
                stats.insert(h, row)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn retry_later(&self, entry: &OutboxEntry, after: Duration) -> Result<()> {
        let e = entry.clone();
        self.run(move |db| {
            let txn = quick_txn(db)?;
            {
                let (h, s, id) = (e.hook.as_str(), e.stream.as_str(), e.marker.as_u128());
                let mut entries = txn.open_table(ENTRIES)?;
                let Some((created, due_ms, attempts)) = entries.get((h, s, id))?.map(|g| g.value())
                else {
                    return Ok(());
                };
                let next = now_ms().saturating_add(ms(after));
                let mut due = txn.open_table(DUE)?;
                due.remove((h, due_ms, s, id))?;
                due.insert((h, next, s, id), ())?;
                entries.insert((h, s, id), (created, next, attempts))?;
                let mut stats = txn.open_table(STATS)?;
                let (p, d, f, x, k) = stats.get(h)?.map_or((0, 0, 0, 0, 0), |g| g.value());
                stats.insert(h, (p, d, f + 1, x, k))?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn outbox_stats(&self) -> Result<Vec<OutboxStats>> {
        self.read(true, |db| {
            let txn = db.begin_read()?;
            let hooks = match txn.open_table(HOOKS) {
                Ok(t) => t,
                // Created by the first registration: none yet.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let stats = txn.open_table(STATS).ok();
            let age = txn.open_table(AGE).ok();
            let mut out = Vec::new();
            for row in hooks.iter()? {
                let (k, v) = row?;
                let h = k.value();
                let reg: Registration = decode(v.value(), || format!("webhooks/{h}"))?;
                let (pending, delivered, failed_attempts, dead, skipped) = match &stats {
                    Some(t) => t.get(h)?.map_or((0, 0, 0, 0, 0), |g| g.value()),
                    None => (0, 0, 0, 0, 0),
                };
                let oldest_pending_ms = match &age {
                    Some(t) => match t.range((h, 0u64, "", 0u128)..)?.next() {
                        Some(r) => {
                            let (k, _) = r?;
                            let (kh, created, _, _) = k.value();
                            (kh == h).then_some(created)
                        }
                        None => None,
                    },
                    None => None,
                };
                out.push(OutboxStats {
                    hook: h.to_owned(),
                    url_masked: reg.url,
                    pending,
                    delivered,
                    failed_attempts,
                    dead,
                    skipped,
                    oldest_pending_ms,
                    now_ms: now_ms(),
                });
            }
            Ok(out)
        })
        .await
    }
}
