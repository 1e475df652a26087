//! Prometheus text metrics: requests and latency by route, open connections, SSE clients, segment
//! bytes served, store errors, and (read at scrape time) markers and segments of the default stream.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Counts and latency of one route (no allocation per request once the route is known).
#[derive(Debug, Default, Clone)]
struct RouteStats {
    by_status: Vec<(&'static str, u16, u64)>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

type Shard = Arc<Mutex<HashMap<String, RouteStats>>>;

static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's shard of the route statistics of one `Metrics` (an HTTP worker thread serves
    /// one server), so the hot path takes a lock no other core touches until a scrape.
    static SHARD: RefCell<Option<(u64, Shard)>> = const { RefCell::new(None) };
}

/// Process-wide counters of one API server.
#[derive(Debug)]
pub struct Metrics {
    id: u64,
    shards: Mutex<Vec<Shard>>,
    pub open_connections: AtomicI64,
    pub sse_clients: AtomicI64,
    pub store_errors: AtomicU64,
    pub files_served: AtomicU64,
    pub file_bytes_served: AtomicU64,
    pub playlist_renders: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            id: NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            open_connections: AtomicI64::new(0),
            sse_clients: AtomicI64::new(0),
            store_errors: AtomicU64::new(0),
            files_served: AtomicU64::new(0),
            file_bytes_served: AtomicU64::new(0),
            playlist_renders: AtomicU64::new(0),
        }
    }
}

/// Decrements the open-connection gauge when the connection (which owns it) is dropped.
#[derive(Debug)]
pub struct ConnectionGuard(pub std::sync::Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        _ => "OTHER",
    }
}

impl Metrics {
    /// Records one finished request. `route` is the matched pattern (bounded cardinality).
    pub fn observe(
        &self,
        route: &str,
        method: &actix_web::http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let secs = elapsed.as_secs_f64();
        let method = method_label(method);
        SHARD.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(id, _)| *id != self.id) {
                let shard = Shard::default();
                if let Ok(mut all) = self.shards.lock() {
                    all.push(shard.clone());
                }
                *cell = Some((self.id, shard));
            }
            let Some((_, shard)) = cell.as_ref() else {
                return;
            };
            let Ok(mut m) = shard.lock() else {
                return;
            };
            let r = match m.get_mut(route) {
                Some(r) => r,
                None => m.entry(route.to_owned()).or_default(),
            };
            match r
                .by_status
                .iter_mut()
                .find(|(me, st, _)| *me == method && *st == status)
            {
                Some(row) => row.2 += 1,
                None => r.by_status.push((method, status, 1)),
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    r.buckets[i] += 1;
                }
            }
            r.count += 1;
            r.sum_secs += secs;
        });
    }

    /// All shards merged, by route.
    fn merged(&self) -> BTreeMap<String, RouteStats> {
        let mut out: BTreeMap<String, RouteStats> = BTreeMap::new();
        let shards = self.shards.lock().map(|v| v.clone()).unwrap_or_default();
        for shard in shards {
            let Ok(m) = shard.lock() else { continue };
            for (route, r) in m.iter() {
                let o = out.entry(route.clone()).or_default();
                for (method, status, n) in &r.by_status {
                    match o
                        .by_status
                        .iter_mut()
                        .find(|(me, st, _)| me == method && st == status)
                    {
                        Some(row) => row.2 += n,
                        None => o.by_status.push((method, *status, *n)),
                    }
                }
                for (a, b) in o.buckets.iter_mut().zip(r.buckets) {
                    *a += b;
                }
                o.count += r.count;
                o.sum_secs += r.sum_secs;
            }
        }
        out
    }

    /// The Prometheus text exposition; `gauges` are extra values read at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("# HELP hlsmark_http_requests_total HTTP requests by route, method and status.\n# TYPE hlsmark_http_requests_total counter\n");
        let rows = self.merged();
        for (route, r) in &rows {
            let mut by_status = r.by_status.clone();
            by_status.sort();
            for (method, status, n) in by_status {
                let _ = writeln!(
                    s,
                    "hlsmark_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        s.push_str("# HELP hlsmark_http_request_duration_seconds Request latency by route.\n# TYPE hlsmark_http_request_duration_seconds histogram\n");
        for (route, h) in &rows {
            let r = escape(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "hlsmark_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                s,
                "hlsmark_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}\nhlsmark_http_request_duration_seconds_sum{{route=\"{r}\"}} {}\nhlsmark_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count, h.sum_secs, h.count
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "hlsmark_store_errors_total",
                "Store calls that failed.",
                load(&self.store_errors),
            ),
            (
                "hlsmark_files_served_total",
                "Segment and init files served.",
                load(&self.files_served),
            ),
            (
                "hlsmark_file_bytes_served_total",
                "Bytes of segment and init files served.",
                load(&self.file_bytes_served),
            ),
            (
                "hlsmark_playlist_renders_total",
                "Live playlists rendered (once per index change).",
                load(&self.playlist_renders),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let mut all_gauges = vec![
            (
                "hlsmark_open_connections",
                "Open HTTP connections.",
                self.open_connections.load(Ordering::Relaxed) as f64,
            ),
            (
                "hlsmark_sse_clients",
                "Connected /markers/live clients.",
                self.sse_clients.load(Ordering::Relaxed) as f64,
            ),
        ];
        all_gauges.extend_from_slice(gauges);
        for (name, help, v) in all_gauges {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        s
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let m = Metrics::default();
        let get = actix_web::http::Method::GET;
        m.observe("/markers", &get, 200, Duration::from_micros(300));
        m.observe("/markers", &get, 200, Duration::from_millis(3));
        m.observe("/markers", &get, 400, Duration::from_millis(30));
        let text = m.render(&[("hlsmark_markers", "Markers.", 7.0)]);
        assert!(
            text.contains(
                "hlsmark_http_requests_total{route=\"/markers\",method=\"GET\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("hlsmark_markers 7\n"), "{text}");
    }
}
