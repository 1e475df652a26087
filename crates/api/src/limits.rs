//! Limits on long-lived connections (SSE feeds and preview viewers): at most so many per client IP
//! and so many in total. A request beyond a limit gets a 503 JSON answer and its connection is
//! closed, so a client that opens feeds in a loop holds no file descriptors.
//!
//! One [`ConnLimiter`] per kind of long-lived answer; a [`Permit`] is held by the answer's body
//! stream and given back when actix drops it (the client went away, the feed ended, shutdown).
//!
//! What one preview viewer can hold is bounded by its queue (4 pictures, `hlsmark_previews`) and
//! by the kernel's send buffer, which is not capped per connection: see design/previews.md,
//! "Kernel buffers", for why (no safe way from a route to its socket; unsafe code is forbidden).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;

use crate::error::ApiError;

/// The limiters of every kind of long-lived answer (`web::Data<Limits>` in the app).
#[derive(Debug)]
pub struct Limits {
    /// `/markers/live` feeds.
    pub sse: ConnLimiter,
    /// `/preview/{stream}.gif` and `.mjpeg` viewers: the same per-IP and total numbers as SSE
    /// feeds (`--sse-max-per-ip`, `--sse-max-clients`), counted apart, so a page with its feed
    /// and a few previews fits either; `--preview-max-viewers` still bounds each stream.
    pub preview: ConnLimiter,
}

/// Counts open long-lived answers of one kind, per client IP and in total.
#[derive(Debug)]
pub struct ConnLimiter {
    /// What the limit is on, for messages and metrics (`"sse"`, `"preview"`).
    what: &'static str,
    /// Flags that set the limits, named in the 503 message.
    flags: &'static str,
    per_ip: usize,
    total: usize,
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    open: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicUsize,
}

/// One open long-lived answer; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip
            && let Ok(mut by_ip) = self.inner.by_ip.lock()
            && let Some(n) = by_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&ip);
            }
        }
    }
}

impl ConnLimiter {
    /// At most `per_ip` answers per client IP and `total` in all (0 = that limit is off).
    /// `flags` names the settings in the refusal message.
    pub fn new(what: &'static str, flags: &'static str, per_ip: usize, total: usize) -> Self {
        Self {
            what,
            flags,
            per_ip,
            total,
            inner: Arc::new(Inner::default()),
        }
    }

    /// A place for one more answer to `ip` (`None`: the peer address is not known, only the
    /// total applies), or 503 `too_many_connections`.
    pub fn acquire(&self, ip: Option<IpAddr>) -> Result<Permit, ApiError> {
        let open = self.inner.open.fetch_add(1, Ordering::Relaxed);
        // From here on the permit gives the place back on every path.
        let mut permit = Permit {
            inner: self.inner.clone(),
            ip: None,
        };
        if self.total != 0 && open >= self.total {
            return Err(self.refuse(format!(
                "{open} {} connections are open, the most this server allows ({})",
                self.what, self.flags
            )));
        }
        if let Some(ip) = ip {
            let Ok(mut by_ip) = self.inner.by_ip.lock() else {
                return Err(ApiError::internal("connection limiter poisoned"));
            };
            let n = by_ip.entry(ip).or_insert(0);
            if self.per_ip != 0 && *n >= self.per_ip {
                let n = *n;
                drop(by_ip);
                return Err(self.refuse(format!(
                    "{ip} has {n} {} connections open, the most one address may have ({})",
                    self.what, self.flags
                )));
            }
            *n += 1;
            permit.ip = Some(ip);
        }
        Ok(permit)
    }

    fn refuse(&self, why: String) -> ApiError {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            format!("{why}; close one or retry later"),
        )
    }

    /// Answers open now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Client addresses with an open answer now.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.inner.by_ip.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_total_and_places_come_back() {
        let l = ConnLimiter::new("sse", "--sse-max-*", 2, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let p1 = l.acquire(Some(a)).unwrap();
        let p2 = l.acquire(Some(a)).unwrap();
        let e = l.acquire(Some(a)).unwrap_err();
        assert_eq!(e.code, "too_many_connections");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let p3 = l.acquire(Some(b)).unwrap();
        assert!(l.acquire(Some(b)).is_err(), "total of 3 reached");
        assert!(l.acquire(None).is_err(), "total applies without an address");
        assert_eq!((l.open(), l.addresses(), l.refused()), (3, 2, 3));
        drop(p1);
        let p4 = l.acquire(Some(a)).unwrap();
        drop((p2, p3, p4));
        assert_eq!((l.open(), l.addresses()), (0, 0), "every place given back");
        let unlimited = ConnLimiter::new("sse", "", 0, 0);
        let many: Vec<_> = (0..100)
            .map(|_| unlimited.acquire(Some(a)).unwrap())
            .collect();
        assert_eq!(unlimited.open(), 100);
        drop(many);
        assert_eq!(unlimited.open(), 0);
    }
}
