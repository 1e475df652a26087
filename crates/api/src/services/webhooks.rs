//! Webhooks seen from the API: the body's marker exactly as `GET /markers/{id}` shows it (the
//! dispatcher in `hlsmark-webhooks` calls [`marker_json`] through the binary's wiring), and the
//! outbox's delivery state as `/metrics` series, read from the store so every node shows the
//! same numbers whether or not it delivers.

use std::fmt::Write as _;

use hlsmark_store::Marker;

use crate::error::ApiError;
use crate::services::clocks::Clocks;
use crate::state::AppState;
use crate::views::MarkerView;

/// The marker's JSON as `GET /markers/{id}` answers it (seconds on every clock, `seq`).
pub async fn marker_json(state: &AppState, m: &Marker) -> Result<serde_json::Value, ApiError> {
    let (view, index) = state.clocks(&m.stream).await?;
    let v = MarkerView::new(m, &Clocks::new(&view.timeline, &index), None)?;
    serde_json::to_value(&v).map_err(|e| ApiError::internal(format!("serializing a marker: {e}")))
}

/// `hlsmark_webhook_*` series per registered webhook (labels: its id and masked URL); nothing
/// when none is registered or the store does not answer.
pub async fn metric_series(state: &AppState, text: &mut String) {
    let Some(outbox) = hlsmark_store::outbox::of(&*state.store) else {
        return;
    };
    let Ok(stats) = outbox.outbox_stats().await else {
        return;
    };
    if stats.is_empty() {
        return;
    }
    let label = |s: &hlsmark_store::outbox::OutboxStats| {
        let url = s
            .url_masked
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', " ");
        format!("webhook=\"{}\",url=\"{url}\"", s.hook)
    };
    type Get = fn(&hlsmark_store::outbox::OutboxStats) -> f64;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53
    let series: [(&str, &str, &str, Get); 6] = [
        (
            "hlsmark_webhook_pending",
            "gauge",
            "Outbox entries not yet delivered (due, leased or waiting for a retry).",
            |s| s.pending as f64,
        ),
        (
            "hlsmark_webhook_delivered_total",
            "counter",
            "Deliveries answered 2xx.",
            |s| s.delivered as f64,
        ),
        (
            "hlsmark_webhook_failed_attempts_total",
            "counter",
            "Attempts that failed (non-2xx, timeout, connection refused), retried or not.",
            |s| s.failed_attempts as f64,
        ),
        (
            "hlsmark_webhook_dead_total",
            "counter",
            "Entries given up after the last allowed attempt.",
            |s| s.dead as f64,
        ),
        (
            "hlsmark_webhook_skipped_total",
            "counter",
            "Entries whose marker was deleted before it could be delivered.",
            |s| s.skipped as f64,
        ),
        (
            "hlsmark_webhook_oldest_pending_seconds",
            "gauge",
            "Age of the oldest undelivered entry (0 when none).",
            |s| {
                s.oldest_pending_ms
                    .map_or(0.0, |t| s.now_ms.saturating_sub(t) as f64 / 1000.0)
            },
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &stats {
            let _ = writeln!(text, "{name}{{{}}} {}", label(s), get(s));
        }
    }
}
