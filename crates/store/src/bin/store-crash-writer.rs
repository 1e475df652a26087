//! Helper of the store's crash test (`tests/conformance.rs`), not a user tool: opens the embedded
//! store file given as the only argument and inserts markers one at a time, printing the number of
//! each acknowledged marker on its own line, until it is killed.

use std::io::Write;
use std::process::ExitCode;

use hlsmark_clock::{Duration90k, GenTime, HlsTime, UtcTime};
use hlsmark_store::{Marker, StreamName};
use uuid::Uuid;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: store-crash-writer <store file>");
        return ExitCode::from(2);
    };
    let store = match hlsmark_store::open(&path, "crash").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("open {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for n in 1u64.. {
        let t = i64::try_from(n).unwrap_or(i64::MAX / 2) * 90_000;
        let m = Marker {
            id: Uuid::from_u128(u128::from(n)),
            stream: StreamName::live(),
            label: format!("crash test {n}"),
            kind: "event".into(),
            gen_time: GenTime(t),
            hls: HlsTime(t),
            utc: UtcTime(t),
            duration: Duration90k(0),
            data: None,
            created_at: UtcTime(t),
        };
        if let Err(e) = store.insert_marker(&m).await {
            eprintln!("insert {n}: {e}");
            return ExitCode::FAILURE;
        }
        // Acknowledged: only now does the parent learn of it.
        if writeln!(out, "{n}").and_then(|()| out.flush()).is_err() {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
