//! Webhook flags (`--webhook`, `--webhook-secret`, ...) and the per-stream `webhooks = [...]` of
//! `--config`, validated into the dispatcher's configuration at start (a bad URL is one line,
//! masked), and the dispatcher started beside the API in `run` and `serve`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hlsmark_store::{Marker, Store, StreamName};
use hlsmark_webhooks::{DispatcherConfig, Render, Secret, Target};

/// Webhook flags (shared by `serve` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// POST every new marker, as signed JSON, to this http(s) URL (repeat for several; the
    /// variable takes them comma-separated). Delivered at least once from the store's outbox,
    /// retried with backoff [default: none].
    #[arg(long = "webhook", env = "HLSMARK_WEBHOOK", value_delimiter = ',')]
    pub webhooks: Vec<String>,
    /// Key of the `webhook-signature` HMAC-SHA256 (at least 16 characters, or `whsec_` +
    /// base64 as Standard Webhooks writes it) [default: none, deliveries unsigned, with a warning].
    #[arg(long, env = "HLSMARK_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Time one delivery attempt may take (connect, send, answer), 1s-60s.
    #[arg(long, env = "HLSMARK_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// Attempts before a delivery is given up (dead), 1-100; with the backoff of 1 s doubling to
    /// 5 min, the default 20 retries for about an hour.
    #[arg(long, env = "HLSMARK_WEBHOOK_MAX_ATTEMPTS", default_value_t = 20)]
    pub webhook_max_attempts: u32,
}

/// Just the stream names and webhooks of `--config` (the full parse is `crate::streams`,
/// which refuses bad URLs with the line they are on).
#[derive(serde::Deserialize)]
struct LooseFile {
    #[serde(default)]
    stream: Vec<LooseTable>,
}

#[derive(serde::Deserialize)]
struct LooseTable {
    name: String,
    webhooks: Option<crate::streams::WebhookUrls>,
}

impl WebhookArgs {
    /// The dispatcher's configuration, or `None` when no webhook is configured. `config_file`
    /// adds the per-stream `webhooks` of `--config` (`run`).
    pub fn config(&self, config_file: Option<&Path>) -> anyhow::Result<Option<DispatcherConfig>> {
        // URL -> streams (`None` = every stream: a `--webhook` flag).
        let mut urls: BTreeMap<String, Option<Vec<StreamName>>> = BTreeMap::new();
        for u in self
            .webhooks
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
        {
            urls.insert(u.to_owned(), None);
        }
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--config {}: cannot be read", path.display()))?;
            let file: LooseFile =
                toml::from_str(&text).with_context(|| format!("--config {}", path.display()))?;
            for t in file.stream {
                let name = StreamName::new(&t.name)?;
                for u in t
                    .webhooks
                    .iter()
                    .flat_map(crate::streams::WebhookUrls::urls)
                {
                    // A URL that is also a --webhook (`None`) gets every stream already.
                    if let Some(list) = urls
                        .entry(u.trim().to_owned())
                        .or_insert_with(|| Some(Vec::new()))
                    {
                        list.push(name.clone());
                    }
                }
            }
        }
        if urls.is_empty() {
            return Ok(None);
        }
        let targets = urls
            .into_iter()
            .map(|(u, streams)| Target::parse(&u, streams))
            .collect::<Result<Vec<_>, _>>()?;
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.webhook_timeout) {
            bail!(
                "--webhook-timeout {}: must be between 1s and 60s",
                humantime::format_duration(self.webhook_timeout)
            );
        }
        if !(1..=100).contains(&self.webhook_max_attempts) {
            bail!(
                "--webhook-max-attempts {}: must be between 1 and 100",
                self.webhook_max_attempts
            );
        }
        let secret = self
            .webhook_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(Secret::parse)
            .transpose()?;
        Ok(Some(DispatcherConfig {
            targets,
            secret,
            timeout: self.webhook_timeout,
            max_attempts: self.webhook_max_attempts,
            ..DispatcherConfig::default()
        }))
    }
}

/// The marker as `GET /markers/{id}` shows it, through an `AppState` of the dispatcher's own
/// (its own caches of timelines and segment indexes).
struct ApiRender(hlsmark_api::AppState);

#[async_trait::async_trait]
impl Render for ApiRender {
    async fn render(&self, marker: &Marker) -> Result<serde_json::Value, String> {
        hlsmark_api::webhook_marker_json(&self.0, marker)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A running dispatcher.
#[derive(Debug)]
pub struct Dispatcher {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Dispatcher {
    /// Registers the targets (so markers from now on get entries) and starts delivering.
    pub async fn start(
        cfg: DispatcherConfig,
        store: &Arc<dyn Store>,
        api: &hlsmark_api::ApiConfig,
    ) -> Self {
        if cfg.secret.is_none() {
            tracing::warn!(
                "webhooks are delivered unsigned: set --webhook-secret (HLSMARK_WEBHOOK_SECRET) so receivers can check them"
            );
        }
        for t in &cfg.targets {
            crate::common::say(format_args!(
                "  webhook {} ({})",
                t.masked,
                t.streams.as_ref().map_or("every stream".to_owned(), |s| {
                    s.iter()
                        .map(StreamName::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            ));
        }
        if let Err(e) = hlsmark_webhooks::register(&**store, &cfg.targets).await {
            // The dispatcher keeps trying; markers stored meanwhile need the store anyway.
            tracing::warn!(error = %e, "webhooks: cannot register in the store yet; retrying");
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let timeout = cfg.timeout;
        let render = Arc::new(ApiRender(hlsmark_api::AppState::new(
            Arc::clone(store),
            api.clone(),
            stop_rx.clone(),
        )));
        let store = Arc::clone(store);
        let task = tokio::spawn(async move {
            if let Err(e) = hlsmark_webhooks::run(store, cfg, render, stop_rx).await {
                tracing::error!(error = %e, "webhooks: the dispatcher did not start");
            }
        });
        Self {
            stop,
            task,
            timeout,
        }
    }

    /// Stops after the attempts in flight (bounded by the timeout; what is cut off is delivered
    /// again after a restart, with the same delivery id).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(self.timeout + Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct T {
        #[command(flatten)]
        w: WebhookArgs,
    }

    #[test]
    fn flags_and_per_stream_webhooks_merge_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(
            &file,
            "[[stream]]\nname = \"a\"\nwebhooks = [\"http://x/h\"]\n\
             [[stream]]\nname = \"b\"\nwebhooks = [\"http://x/h\", \"http://y/h\"]\n\
             [[stream]]\nname = \"c\"\n",
        )
        .unwrap();
        let t = T::parse_from(["t", "--webhook", "http://y/h"]);
        let c = t.w.config(Some(&file)).unwrap().unwrap();
        let by_url: BTreeMap<String, Option<Vec<String>>> = c
            .targets
            .iter()
            .map(|t| {
                (
                    t.url.to_string(),
                    t.streams
                        .as_ref()
                        .map(|s| s.iter().map(|n| n.as_str().to_owned()).collect()),
                )
            })
            .collect();
        assert_eq!(
            by_url["http://x/h"],
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        // Also a flag: every stream.
        assert_eq!(by_url["http://y/h"], None);
        // No secret: allowed (unsigned; a warning at start).
        assert!(c.secret.is_none());
        assert!(T::parse_from(["t"]).w.config(None).unwrap().is_none());
        let e = T::parse_from([
            "t",
            "--webhook",
            "http://x/h",
            "--webhook-max-attempts",
            "0",
        ])
        .w
        .config(None)
        .unwrap_err();
        assert!(e.to_string().contains("--webhook-max-attempts"), "{e}");
    }
}
