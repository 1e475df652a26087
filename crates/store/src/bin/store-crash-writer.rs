//! Helper of the store's crash tests (`tests/conformance.rs`), not a user tool: opens the embedded
//! store file given as the first argument and inserts markers until it is killed, printing the
//! number of each acknowledged marker on its own line. With a second argument `W` > 1, `W`
//! writers insert concurrently (marker `n` by writer `n % W`), so acknowledgements come from
//! group commits: one fsync'd transaction shared by every writer waiting at that moment.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::{Marker, Severity, Store, StreamName};
use uuid::Uuid;

fn marker(n: u64) -> Marker {
    let t = i64::try_from(n).unwrap_or(i64::MAX / 2) * 90_000;
    Marker {
        id: Uuid::from_u128(u128::from(n)),
        stream: StreamName::live(),
        label: format!("crash test {n}"),
        kind: "event".into(),
        gen_time: GenTime(t),
        hls: HlsTime(t),
        utc: UtcTime(t),
        duration: Duration90k(0),
        severity: Severity::Warning,
        color: Some("#ff8800".into()),
        tags: vec!["crash".into()],
        data: None,
        created_at: UtcTime(t),
    }
}

/// Inserts markers `first`, `first + step`, ... printing each once it is acknowledged.
async fn write(store: Arc<dyn Store>, first: u64, step: u64) -> Result<(), String> {
    let mut n = first;
    loop {
        store
            .insert_marker(&marker(n))
            .await
            .map_err(|e| format!("insert {n}: {e}"))?;
        // Acknowledged: only now does the parent learn of it.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{n}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
        n += step;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: store-crash-writer <store file> [writers]");
        return ExitCode::from(2);
    };
    let writers: u64 = match args.next().map(|w| w.parse()) {
        None => 1,
        Some(Ok(w)) if w >= 1 => w,
        Some(_) => {
            eprintln!("writers must be a whole number >= 1");
            return ExitCode::from(2);
        }
    };
    let store = match hlsmark_store::open(&path, "crash").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        tasks.spawn(write(Arc::clone(&store), w + 1, writers));
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
