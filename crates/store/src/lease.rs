//! Per-stream ingest leases and fencing tokens: at most one ingest writes a stream's index.
//!
//! An ingest acquires the stream's lease for a `ttl` and gets a **fencing token**, a number that
//! grows with every grant of that stream's lease. It renews at `ttl / 3`; another ingest (a
//! standby) acquires only after the lease expired or was released, and gets a higher token.
//! A store handle that acquired a lease writes that stream's epochs, segments, parts, retention
//! drops and status only under its token: the backend refuses the write
//! ([`StoreError::Fenced`]) as soon as a newer token was granted, atomically with the write (in
//! the Redis scripts), so an ingest that wakes up after a pause cannot touch the index of the one
//! that took over. A token stays valid while no newer one exists, even if the lease's time ran
//! out (a store outage must not stop the only ingest): fencing is decided by the token, expiry
//! only decides when another ingest may take a new one. See design/store.md, "Ingest lease".
//!
//! The embedded backend's leases live in memory ([`LocalLeases`]): redb lets one process open a
//! file, so the lease only has to keep two ingests of one stream in one process apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Result, StoreError, StreamName};

/// Shortest lease accepted (a renewal every third of it must be possible over a network).
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(300);
/// Longest lease accepted.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// Longest holder id (characters of `[A-Za-z0-9_.:@-]`).
pub const MAX_HOLDER_CHARS: usize = 128;
/// A refused acquirer is listed as waiting ([`LeaseRenewal::standby`]) for this many ttls after
/// its last attempt (it retries every third of one).
const WAITER_TTLS: u32 = 3;

/// Who holds a stream's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder id given to [`Store::acquire_lease`](crate::Store::acquire_lease).
    pub holder: String,
    /// Its fencing token.
    pub token: u64,
    /// Time left before the lease expires (unless renewed).
    pub ttl_left: Duration,
    /// Holders that tried to acquire it lately (standby ingests), sorted; empty in the answer
    /// to an acquisition.
    pub standby: Vec<String>,
}

/// The answer to an acquisition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseAttempt {
    /// The caller holds the lease with this fencing token; this store handle now writes the
    /// stream's index under it.
    Acquired { token: u64 },
    /// Another holder has it (the caller is recorded as waiting, for the holder's status).
    Held(LeaseHolder),
}

/// The answer to a renewal that kept the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseRenewal {
    /// Holders that tried to acquire the lease lately (standby ingests), sorted.
    pub standby: Vec<String>,
}

/// Checks a holder id and a ttl (the same rules on every backend).
pub(crate) fn check_lease_args(holder: Option<&str>, ttl: Duration) -> Result<()> {
    if let Some(h) = holder {
        let ok = !h.is_empty()
            && h.chars().count() <= MAX_HOLDER_CHARS
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
        if !ok {
            return Err(StoreError::InvalidLease(format!(
                "holder id {h:?}: use 1-{MAX_HOLDER_CHARS} of A-Z, a-z, 0-9, '_', '.', ':', '@' and '-'"
            )));
        }
    }
    if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(StoreError::InvalidLease(format!(
            "ttl {} ms: must be from {} ms to {} s",
            ttl.as_millis(),
            MIN_LEASE_TTL.as_millis(),
            MAX_LEASE_TTL.as_secs()
        )));
    }
    Ok(())
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One stream's lease in [`LocalLeases`].
#[derive(Debug, Default)]
struct Local {
    /// The last token granted (0: none yet).
    token: u64,
    /// The current holder and when its lease ends; `None` after a release.
    held: Option<(String, Instant)>,
    /// Refused acquirers and until when they count as waiting.
    waiting: HashMap<String, Instant>,
}

/// The embedded backend's leases: in memory, for the one process that holds the file.
#[derive(Debug, Default)]
pub(crate) struct LocalLeases {
    streams: Mutex<HashMap<StreamName, Local>>,
    /// The token this handle writes each stream under (set by acquire, dropped by release).
    fences: Mutex<HashMap<StreamName, u64>>,
}

impl LocalLeases {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<StreamName, Local>>> {
        self.streams
            .lock()
            .map_err(|_| StoreError::Backend("lease table poisoned".into()))
    }

    pub(crate) fn acquire(
        &self,
        stream: &StreamName,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseAttempt> {
        check_lease_args(Some(holder), ttl)?;
        let now = Instant::now();
        let mut all = self.lock()?;
        let l = all.entry(stream.clone()).or_default();
        if let Some((h, until)) = &l.held
            && *until > now
        {
            let held = LeaseHolder {
                holder: h.clone(),
                token: l.token,
                ttl_left: *until - now,
                standby: Vec::new(),
            };
            l.waiting.insert(holder.to_owned(), now + ttl * WAITER_TTLS);
            return Ok(LeaseAttempt::Held(held));
        }
        l.token += 1;
        l.held = Some((holder.to_owned(), now + ttl));
        l.waiting.remove(holder);
        let token = l.token;
        drop(all);
        if let Ok(mut f) = self.fences.lock() {
            f.insert(stream.clone(), token);
        }
        Ok(LeaseAttempt::Acquired { token })
    }

    pub(crate) fn renew(
        &self,
        stream: &StreamName,
        token: u64,
        ttl: Duration,
    ) -> Result<LeaseRenewal> {
        check_lease_args(None, ttl)?;
        let now = Instant::now();
        let mut all = self.lock()?;
        let l = all.entry(stream.clone()).or_default();
        if l.token != token || token == 0 {
            return Err(fenced(stream, token, l.token));
        }
        // Still the newest token: the lease is ours again even if it had run out meanwhile.
        let holder = l.held.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
        l.held = Some((holder, now + ttl));
        l.waiting.retain(|_, until| *until > now);
        let mut standby: Vec<String> = l.waiting.keys().cloned().collect();
        standby.sort();
        Ok(LeaseRenewal { standby })
    }

    pub(crate) fn release(&self, stream: &StreamName, token: u64) -> Result<()> {
        let mut all = self.lock()?;
        if let Some(l) = all.get_mut(stream)
            && l.token == token
        {
            l.held = None;
        }
        drop(all);
        if let Ok(mut f) = self.fences.lock()
            && f.get(stream) == Some(&token)
        {
            f.remove(stream);
        }
        Ok(())
    }

    pub(crate) fn holder(&self, stream: &StreamName) -> Result<Option<LeaseHolder>> {
        let now = Instant::now();
        let all = self.lock()?;
        Ok(all.get(stream).and_then(|l| {
            let (h, until) = l.held.as_ref()?;
            let mut standby: Vec<String> = l
                .waiting
                .iter()
                .filter(|(_, w)| **w > now)
                .map(|(k, _)| k.clone())
                .collect();
            standby.sort();
            (*until > now).then(|| LeaseHolder {
                holder: h.clone(),
                token: l.token,
                ttl_left: *until - now,
                standby,
            })
        }))
    }

    /// Refuses a write of `stream` when this handle writes it under a token that is no longer
    /// the newest. A handle that never acquired the stream's lease is not fenced (tools, tests).
    pub(crate) fn check(&self, stream: &StreamName) -> Result<()> {
        let mine = self.fences.lock().ok().and_then(|f| f.get(stream).copied());
        let Some(mine) = mine else { return Ok(()) };
        let current = self.lock()?.get(stream).map_or(0, |l| l.token);
        if current == mine {
            Ok(())
        } else {
            Err(fenced(stream, mine, current))
        }
    }
}

pub(crate) fn fenced(stream: &StreamName, token: u64, current: u64) -> StoreError {
    StoreError::Fenced {
        stream: stream.to_string(),
        token,
        current,
    }
}
