//! The stream's restream targets (`--restream`, crate `hlsmark-outputs`) as the supervisor runs
//! them: started with the stream, fed by the pipeline (`RunSpec::restream`), their states copied
//! into the stream's status (`GET /streams`, `/metrics`) every 2 s, stopped with the stream.

use std::time::Duration;

use hlsmark_outputs::{Restream, TargetState, TargetStatus};
use hlsmark_store::{RestreamState, RestreamStatus};

/// How often the targets' figures (bytes, media sent) are copied into the status; a change of
/// state is copied at the same pace (the status itself is written on change).
const SYNC_PERIOD: Duration = Duration::from_secs(2);

/// The targets of `cfg`, if any, running (they wait for the first init section).
pub(crate) fn start(cfg: &crate::StreamConfig) -> Option<Restream> {
    if cfg.restream.is_empty() {
        return None;
    }
    for t in &cfg.restream {
        tracing::info!(stream = %cfg.stream, restream = %t.masked(), "restream target");
    }
    Some(Restream::start(
        cfg.stream.as_str(),
        &cfg.ffmpeg,
        &cfg.restream,
    ))
}

/// Copies the targets' states into the status until aborted.
pub(crate) async fn follow(r: Restream, set: impl Fn(Vec<RestreamStatus>) + Send + 'static) {
    loop {
        set(statuses(&r));
        tokio::time::sleep(SYNC_PERIOD).await;
    }
}

/// The targets' states as the store keeps them.
pub(crate) fn statuses(r: &Restream) -> Vec<RestreamStatus> {
    r.statuses().into_iter().map(convert).collect()
}

fn convert(s: TargetStatus) -> RestreamStatus {
    RestreamStatus {
        target: s.target,
        state: match s.state {
            TargetState::Connecting => RestreamState::Connecting,
            TargetState::Connected => RestreamState::Connected,
            TargetState::Retrying => RestreamState::Retrying,
            TargetState::Failed => RestreamState::Failed,
            TargetState::Stopped => RestreamState::Stopped,
        },
        since_90k: s.since,
        last_error: s.last_error,
        bytes_sent: s.bytes_sent,
        sent_ms: s.sent_ms,
        restarts: s.restarts,
        reinits: s.reinits,
        dropped_fragments: s.dropped_fragments,
    }
}
