//! `hlsmark-loadgen`: N viewers of one live stream that behave like hls.js (LL-HLS blocking
//! reloads and parts, or plain playlist polling and segments), all on one tokio thread so a
//! benchmark can give the server the other cores. Prints each part's delay from its availability
//! to each viewer's receipt (p50/p99/max), the viewers that fell behind and, with `--pid`, the
//! server's CPU and RSS over the same window. A benchmark tool, not part of the server.
//!
//! ```text
//! hlsmark-loadgen --url http://127.0.0.1:5000/hls/live/index.m3u8 --viewers 1000 --seconds 30
//! ```

mod http;
mod playlist;
mod procfs;
mod stats;
mod viewer;

use std::net::ToSocketAddrs as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use tokio::time::Instant;

use crate::viewer::{Ctx, Kind};

/// Many player-like viewers of one live HLS stream, with per-part delays.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The media playlist (`http://host:port/hls/{stream}/index.m3u8`).
    #[arg(long, env = "HLSMARK_LOADGEN_URL")]
    url: String,
    /// Viewers.
    #[arg(
        long,
        short = 'n',
        default_value_t = 1000,
        env = "HLSMARK_LOADGEN_VIEWERS"
    )]
    viewers: u32,
    /// How they play: `ll` (blocking reloads, parts) or `plain` (polling, segments).
    #[arg(long, value_enum, default_value_t = Kind::Ll, env = "HLSMARK_LOADGEN_MODE")]
    mode: Kind,
    /// Connections per viewer: 2 (a playlist loader and a media loader at the same time) or 1.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2), env = "HLSMARK_LOADGEN_CONNS")]
    conns: u8,
    /// Viewers join evenly over this time.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "HLSMARK_LOADGEN_RAMP")]
    ramp: Duration,
    /// After the ramp, time before measuring (joins settle).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, env = "HLSMARK_LOADGEN_SETTLE")]
    settle: Duration,
    /// Measured time: parts (segments) first listed within it are judged.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "HLSMARK_LOADGEN_SECONDS")]
    seconds: Duration,
    /// Runtime threads: 1 is tokio's current-thread runtime (one core); more is its
    /// multi-thread runtime.
    #[arg(long, default_value_t = 1, env = "HLSMARK_LOADGEN_THREADS")]
    threads: usize,
    /// The server's process ids (repeat or comma-separate: nginx's master and workers): their
    /// CPU time and RSS (summed) over the measured window are reported.
    #[arg(long, value_delimiter = ',', env = "HLSMARK_LOADGEN_PID")]
    pid: Vec<u32>,
    /// A name for this run in the JSON line.
    #[arg(long, default_value = "", env = "HLSMARK_LOADGEN_LABEL")]
    label: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(args))
}

/// `http://host:port/path` -> (host:port, path).
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must be http:// (the viewers speak plain HTTP/1.1)")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Ok((authority.to_owned(), path.to_owned()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (authority, path) = split_url(&args.url)?;
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let t0 = Instant::now();
    let t0_unix_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )?;
    let from = t0 + args.ramp + args.settle;
    let to = from + args.seconds;
    // Time after the window for its last parts to arrive (a late one still counts, as late).
    let tail = Duration::from_secs(3);
    let ctx = Arc::new(Ctx {
        addr,
        host: authority,
        playlist: path,
        kind: args.mode,
        conns: args.conns,
        end: to + tail,
        shared: Mutex::new(stats::Shared::new(t0, t0_unix_ms)),
    });
    let n = args.viewers.max(1);
    for i in 0..n {
        let start = t0 + args.ramp.mul_f64(f64::from(i) / f64::from(n));
        tokio::spawn(viewer::run(ctx.clone(), i, start));
    }
    tokio::time::sleep_until(from).await;
    let pids = (!args.pid.is_empty()).then_some(args.pid.as_slice());
    let server0 = pids.map(procfs::cpu_ticks_sum).transpose()?;
    let client0 = procfs::cpu_ticks_self()?;
    let counters0 = ctx.shared().counters;
    let mut rss_max_kb = 0;
    let mut rss_first_kb = None;
    // RSS once a second through the window (its peak and where it started).
    while Instant::now() < to {
        if let Some(pids) = pids {
            let kb = procfs::rss_kb_sum(pids)?;
            rss_first_kb.get_or_insert(kb);
            rss_max_kb = rss_max_kb.max(kb);
        }
        tokio::time::sleep_until((Instant::now() + Duration::from_secs(1)).min(to)).await;
    }
    let window = Instant::now().duration_since(from).as_secs_f64();
    let server1 = pids.map(procfs::cpu_ticks_sum).transpose()?;
    let client1 = procfs::cpu_ticks_self()?;
    let counters1 = ctx.shared().counters;
    tokio::time::sleep_until(to + tail).await;

    let s = ctx.shared();
    let (one_us, hold_back_us) = match args.mode {
        // One part target; PART-HOLD-BACK is 3 of them.
        Kind::Ll => (s.part_target_us, 3 * s.part_target_us),
        // One target duration; HOLD-BACK is 3 of them.
        Kind::Plain => (s.target_us, 3 * s.target_us),
    };
    let r = s.report(args.mode == Kind::Ll, from, to, one_us, hold_back_us);
    let share = |a: Option<u64>, b: Option<u64>| {
        a.zip(b).map(|(a, b)| procfs::ticks_to_secs(b - a) / window)
    };
    let server_cpu = share(server0, server1);
    let client_cpu = share(Some(client0), Some(client1)).unwrap_or(0.0);
    let d = |c: fn(&stats::Counters) -> u64| c(&counters1) - c(&counters0);
    let mbit = d(|c| c.media_bytes) as f64 * 8.0 / 1e6 / window;
    let ms = |us: u64| us as f64 / 1000.0;
    let json = serde_json::json!({
        "label": args.label,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "viewers": n,
        "viewers_judged": r.viewers,
        "conns_per_viewer": args.conns,
        "window_s": window,
        // One part target (LL) or one target duration (plain): the "1 part" of the criterion.
        "unit_ms": ms(one_us),
        "media_in_window": r.media,
        "delivered": r.delivered,
        "missed": r.missed,
        "missed_first": r.missed_keys.iter().map(|((m, i), n)| format!("{m}.{i}x{n}")).collect::<Vec<_>>(),
        "delay_ms": {
            "p50": ms(r.delay_us.p50), "p90": ms(r.delay_us.p90), "p99": ms(r.delay_us.p99),
            "p999": ms(r.delay_us.p999), "max": ms(r.delay_us.max),
        },
        "deliveries_over_one_unit": r.deliveries_over_one,
        "deliveries_over_own_duration": r.deliveries_over_own_duration,
        "viewers_over_one_unit": r.viewers_over_one,
        "viewers_behind": r.viewers_behind,
        "age_ms": { "p50": r.age_ms.p50, "p99": r.age_ms.p99, "max": r.age_ms.max },
        "media_mbit_s": mbit,
        "playlist_req_s": d(|c| c.playlist_requests) as f64 / window,
        "media_req_s": d(|c| c.media_requests) as f64 / window,
        "errors": s.counters.errors,
        "server_errors": s.counters.server_errors,
        "gone": s.counters.gone,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        "server_rss_mb_start": rss_first_kb.map(|k| k as f64 / 1024.0),
        "server_rss_mb_max": pids.map(|_| rss_max_kb as f64 / 1024.0),
    });
    eprintln!(
        "{} {} viewers ({} judged): delay p50 {:.1} / p99 {:.1} / max {:.1} ms (1 {} = {:.0} ms), \
         {} behind, {} missed, {:.0} Mbit/s; client CPU {:.2}, server CPU {}, RSS max {} MB",
        json["mode"].as_str().unwrap_or(""),
        n,
        r.viewers,
        ms(r.delay_us.p50),
        ms(r.delay_us.p99),
        ms(r.delay_us.max),
        if args.mode == Kind::Ll {
            "part"
        } else {
            "segment"
        },
        ms(one_us),
        r.viewers_behind,
        r.missed,
        mbit,
        client_cpu,
        server_cpu.map_or("-".into(), |c| format!("{c:.3}")),
        pids.map_or("-".into(), |_| format!("{:.1}", rss_max_kb as f64 / 1024.0)),
    );
    println!("{json}");
    Ok(())
}
