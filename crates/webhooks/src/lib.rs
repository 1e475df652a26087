//! Webhooks: every new marker is POSTed as signed JSON to each configured URL, at least once,
//! from the store's durable outbox (`hlsmark_store::outbox`: the entry is written in the same
//! transaction as the marker), retried with backoff, with a stable delivery id.
//!
//! - [`target`]: a webhook's URL checked (http/https, a host), masked for logs and metrics, and
//!   its stable id.
//! - [`sign`]: the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`).
//! - [`dispatcher`]: claims due entries (a lease per entry, so several nodes share the work and a
//!   dead node's claims are taken over), renders the marker, POSTs it, and records the outcome.
//!
//! Depends on the store only; the marker's JSON comes from a [`dispatcher::Render`] that the
//! binary wires to the API's marker view.

pub mod dispatcher;
pub mod sign;
pub mod target;

pub use dispatcher::{Backoff, DispatcherConfig, Render, delivery_id, register, run};
pub use sign::{Secret, SecretError};
pub use target::{Target, TargetError};
