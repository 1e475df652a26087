//! A web page as a video source (`page:https://...`): headless Chromium renders the page at the
//! stream's `--width` x `--height`, its screencast pictures (JPEG) are decoded to rawvideo and
//! written into ffmpeg's stdin at the stream's `--fps`, paced by our clock like the generator's
//! frames (`frames.rs`: the last frame is repeated when the page did not repaint). From ffmpeg on
//! it is a live source like any other: the pipeline makes the epoch from the first segment and
//! anchors PDT by arrival, and frame tables come from ffmpeg's output.
//!
//! One attempt = one browser (fresh temp profile, own process group) + one ffmpeg. The browser
//! is launched and its first picture awaited before ffmpeg starts (so an epoch never begins
//! with blank frames of a browser still starting); then a driver task acknowledges screencast
//! frames, probes the page when it has not repainted for a second (`Runtime.evaluate`), and ends
//! the attempt when the browser exits, the page crashes, or neither a picture nor a probe answer
//! came for `--stall-timeout` (a hung page). The supervisor then restarts it with the sources'
//! backoff: a new epoch, a DISCONTINUITY in the playlist. See `design/sources.md`, "Page sources".

pub mod cdp;
pub mod frames;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::StreamConfig;
use crate::pipeline::Ffmpeg;
use crate::pump::PumpEnd;
use crate::source::{Source, SourceError};
use frames::{FrameSlot, PagePumpSpec, PumpCounts, page_pump};

/// The browser gets this long (or the stall timeout, if longer) to start and show the page's
/// first picture: a cold Chromium on a busy 2-core machine takes 5-10 s.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Without a new picture for this long the page is probed (a static page paints nothing).
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// JPEG quality of the screencast (the pictures are decoded once and re-encoded by libx264).
const JPEG_QUALITY: u32 = 85;

/// Checks at start that the browser can be found: one clear line instead of a retry loop.
pub fn check_browser(chromium: &Path) -> Result<PathBuf, SourceError> {
    let found = if chromium.components().count() > 1 {
        chromium.is_file().then(|| chromium.to_owned())
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(chromium))
            .find(|p| p.is_file())
    };
    found.ok_or_else(|| SourceError::BrowserMissing {
        path: chromium.to_owned(),
    })
}

/// How opening a page for an attempt went.
#[derive(Debug)]
pub(crate) enum PageOpen {
    /// The stream's source is not a page.
    NotAPage,
    Open(PageSession),
    /// Shutdown was requested while the browser started.
    Stopped,
    Failed(String),
}

/// A page attempt's browser, its driver task and the pictures it delivers. Dropping it kills the
/// browser's process group and removes its profile.
#[derive(Debug)]
pub(crate) struct PageSession {
    slot: Arc<FrameSlot>,
    first: Option<Vec<u8>>,
    driver: tokio::task::JoinHandle<()>,
    counts: Arc<PumpCounts>,
    written: Option<Arc<AtomicI64>>,
    stream: String,
    width: u32,
    height: u32,
    fps: hlsmark_clock::FrameRate,
    started: Instant,
    /// Last field: dropped after the driver is aborted.
    browser: cdp::Browser,
}

/// Launches the browser for `cfg`'s page and waits for its first picture (bounded, and never
/// past a shutdown).
pub(crate) async fn open_for(cfg: &StreamConfig, stop_rx: &mut watch::Receiver<bool>) -> PageOpen {
    let Source::Page { url } = &cfg.source else {
        return PageOpen::NotAPage;
    };
    let limit = START_TIMEOUT.max(cfg.stall_timeout);
    tokio::select! {
        r = tokio::time::timeout(limit, open(cfg, url, limit)) => match r {
            Ok(Ok(s)) => PageOpen::Open(s),
            Ok(Err(why)) => PageOpen::Failed(why),
            Err(_) => PageOpen::Failed(format!(
                "the browser showed no picture of the page within {} s",
                limit.as_secs()
            )),
        },
        _ = stop_rx.changed() => PageOpen::Stopped,
    }
}

async fn open(cfg: &StreamConfig, url: &str, limit: Duration) -> Result<PageSession, String> {
    let stream = cfg.stream.to_string();
    let (w, h) = (cfg.width, cfg.height);
    let l = cdp::launch(&cfg.chromium, w, h, &stream)
        .map_err(|e| format!("starting {}: {e}", cfg.chromium.display()))?;
    let browser = l.browser;
    let cdp = l.cdp;
    tracing::info!(stream = %stream, pid = browser.pid(), "chromium started");
    let failed = |e: cdp::CdpError, browser: &cdp::Browser| {
        let line = browser.last_line();
        if line.is_empty() {
            e.to_string()
        } else {
            format!("{e} (chromium: {line})")
        }
    };
    // Attach to the tab the browser opened (one renderer, not two); create one if it has none.
    let targets = cdp
        .call("Target.getTargets", json!({}), None, limit)
        .await
        .map_err(|e| failed(e, &browser))?;
    let existing = targets["targetInfos"].as_array().and_then(|t| {
        t.iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["targetId"].as_str().map(str::to_owned))
    });
    let target = match existing {
        Some(t) => t,
        None => cdp
            .call(
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                None,
                limit,
            )
            .await
            .map_err(|e| failed(e, &browser))?["targetId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
            None,
            limit,
        )
        .await
        .map_err(|e| failed(e, &browser))?;
    let session = attached["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let s = Some(session.as_str());
    let setup = [
        (
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": w, "height": h, "deviceScaleFactor": 1, "mobile": false }),
        ),
        ("Inspector.enable", json!({})),
        ("Page.enable", json!({})),
        (
            "Page.startScreencast",
            json!({ "format": "jpeg", "quality": JPEG_QUALITY, "maxWidth": w, "maxHeight": h,
                    "everyNthFrame": 1 }),
        ),
    ];
    for (method, params) in setup {
        cdp.call(method, params, s, limit)
            .await
            .map_err(|e| failed(e, &browser))?;
    }
    // The screencast starts on about:blank, before the navigation: a cross-site navigation
    // swaps the renderer, and a screencast started right after it failed with "Not attached to
    // an active page". So the first picture may be the blank page's, for an instant.
    let nav = cdp
        .call("Page.navigate", json!({ "url": url }), s, limit)
        .await
        .map_err(|e| failed(e, &browser))?;
    if let Some(err) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
        return Err(format!("the page could not be loaded: {err}"));
    }
    // An HTTP error page (404, 500) renders like any page, so it streamed as `live` without a
    // word. Its status, from the committed document's navigation entry (0 when not known: then
    // nothing is said).
    if let Ok(r) = cdp
        .call(
            "Runtime.evaluate",
            json!({ "expression":
                "performance.getEntriesByType('navigation')[0]?.responseStatus ?? 0",
                "returnByValue": true }),
            s,
            limit,
        )
        .await
        && let Some(code) = r["result"]["value"].as_u64()
        && code >= 400
    {
        return Err(format!("the page answered HTTP {code}"));
    }

    let slot = Arc::new(FrameSlot::default());
    let (first_tx, first_rx) = oneshot::channel();
    let driver = tokio::spawn(drive(Driver {
        cdp,
        events: l.events,
        exited: l.exited,
        session,
        slot: slot.clone(),
        hang: cfg.stall_timeout,
        first: Some(first_tx),
    }));
    let first = match first_rx.await {
        Ok(j) => j,
        Err(_) => {
            driver.abort();
            let why = slot
                .take_end()
                .unwrap_or_else(|| "the browser ended before its first picture".into());
            return Err(why);
        }
    };
    Ok(PageSession {
        slot,
        first: Some(first),
        driver,
        counts: Arc::default(),
        written: None,
        stream,
        width: w,
        height: h,
        fps: cfg.fps,
        started: Instant::now(),
        browser,
    })
}

impl PageSession {
    /// Starts the page pump on ffmpeg's stdin (a plain thread, like the generator's pump); the
    /// receiver says how it ended (`PumpEnd::SourceEnded` when the browser died or hung).
    pub(crate) fn start_pump(
        &mut self,
        ff: &mut Ffmpeg,
        stop: &Arc<AtomicBool>,
        written: &Arc<AtomicI64>,
    ) -> Result<oneshot::Receiver<PumpEnd>, String> {
        let stdin = ff
            .take_stdin()
            .ok_or("ffmpeg's stdin is missing")?
            .into_owned_fd()
            .map_err(|e| format!("ffmpeg's stdin: {e}"))?;
        let spec = PagePumpSpec {
            width: self.width,
            height: self.height,
            fps: self.fps,
            start: Instant::now(),
        };
        let first = self.first.take().unwrap_or_default();
        let (slot, counts) = (self.slot.clone(), self.counts.clone());
        let (stop, w) = (stop.clone(), written.clone());
        self.written = Some(written.clone());
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("page-{}", self.stream))
            .spawn(move || {
                let mut out = std::fs::File::from(stdin);
                grow_pipe(&out);
                let end = page_pump(&spec, &slot, &first, &mut out, &stop, &w, &counts);
                drop(out); // EOF: ffmpeg finishes the last fragment and exits
                let _ = done_tx.send(end);
            })
            .map_err(|e| format!("starting the page pump thread: {e}"))?;
        Ok(done_rx)
    }
}

impl Drop for PageSession {
    fn drop(&mut self) {
        self.driver.abort();
        let written = self
            .written
            .as_ref()
            .map_or(0, |w| w.load(Ordering::Acquire));
        let fresh = self.counts.fresh.load(Ordering::Relaxed);
        let (received, replaced) = self.slot.counts();
        let repeated_pct = if written > 0 {
            #[allow(clippy::cast_precision_loss)]
            let p = (written - fresh) as f64 * 100.0 / written as f64;
            p
        } else {
            0.0
        };
        // The benchmark (scripts/bench-page.sh) reads this line.
        tracing::info!(
            stream = %self.stream,
            pid = self.browser.pid(),
            secs = self.started.elapsed().as_secs(),
            written,
            fresh,
            repeated_pct = format_args!("{repeated_pct:.1}"),
            received,
            replaced,
            bad = self.counts.bad.load(Ordering::Relaxed),
            "page capture ended"
        );
    }
}

/// A 1 MiB pipe instead of 64 KiB: a 720p frame (2.7 MB) crosses in a few wake-ups.
fn grow_pipe(f: &std::fs::File) {
    const WANT: i32 = 1 << 20;
    if let Err(e) = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETPIPE_SZ(WANT)) {
        tracing::debug!(error = %e, "could not enlarge ffmpeg's stdin pipe; using the default size");
    }
}

/// The driver task's inputs.
struct Driver {
    cdp: cdp::Cdp,
    events: mpsc::UnboundedReceiver<cdp::Event>,
    exited: oneshot::Receiver<String>,
    session: String,
    slot: Arc<FrameSlot>,
    hang: Duration,
    /// Takes the first picture (the session waits for it before ffmpeg starts).
    first: Option<oneshot::Sender<Vec<u8>>>,
}

/// Acknowledges and hands on screencast pictures, probes a page that stopped repainting, and
/// puts the reason into the slot when the browser exits, the page crashes or hangs.
async fn drive(mut d: Driver) {
    let why = run_driver(&mut d).await;
    d.slot.end(why);
}

async fn run_driver(d: &mut Driver) -> String {
    let s = Some(d.session.as_str());
    let mut last_picture = Instant::now();
    let mut last_alive = Instant::now();
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let mut probing = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            ev = d.events.recv() => {
                let Some(ev) = ev else {
                    // The pipe closes as the browser dies: its exit status says more.
                    return match tokio::time::timeout(Duration::from_secs(1), &mut d.exited).await {
                        Ok(Ok(st)) => format!("chromium exited ({st})"),
                        _ => "the browser's DevTools pipe closed".into(),
                    };
                };
                match ev.method.as_str() {
                    "Page.screencastFrame" if ev.session.as_deref() == s => {
                        // Acked at once: Chromium sends the next picture only after the ack.
                        let ack = json!({ "sessionId": ev.params["sessionId"].clone() });
                        if d.cdp.notify("Page.screencastFrameAck", ack, s).is_err() {
                            return "the browser's DevTools pipe closed".into();
                        }
                        let Some(jpeg) = ev.params["data"].as_str().and_then(base64_decode) else {
                            continue;
                        };
                        last_picture = Instant::now();
                        last_alive = last_picture;
                        match d.first.take() {
                            Some(tx) => {
                                let _ = tx.send(jpeg);
                            }
                            None => d.slot.put(jpeg),
                        }
                    }
                    // alert(), confirm(), prompt() and beforeunload block the page until
                    // answered; nobody is there to answer, so they are accepted at once (else
                    // the page would count as hung and be restarted for ever).
                    "Page.javascriptDialogOpening" if ev.session.as_deref() == s => {
                        let _ = d.cdp.notify(
                            "Page.handleJavaScriptDialog",
                            json!({ "accept": true }),
                            s,
                        );
                    }
                    "Inspector.targetCrashed" => return "the page crashed".into(),
                    "Target.detachedFromTarget"
                        if ev.params["sessionId"].as_str() == s =>
                    {
                        return "the page was closed".into();
                    }
                    _ => {}
                }
            }
            st = &mut d.exited => {
                return format!("chromium exited ({})", st.unwrap_or_else(|_| "unknown status".into()));
            }
            Some(alive) = probe_rx.recv() => {
                probing = false;
                if alive {
                    last_alive = Instant::now();
                }
            }
            _ = tick.tick() => {
                if last_alive.elapsed() >= d.hang {
                    return format!(
                        "the page hung: no picture and no answer for {} s",
                        d.hang.as_secs()
                    );
                }
                if !probing && last_picture.elapsed() >= PROBE_AFTER {
                    // A page that paints nothing new is fine as long as it still answers.
                    probing = true;
                    let (cdp, tx, session, hang) =
                        (d.cdp.clone(), probe_tx.clone(), d.session.clone(), d.hang);
                    tokio::spawn(async move {
                        let r = cdp
                            .call("Runtime.evaluate", json!({ "expression": "1" }), Some(&session), hang)
                            .await;
                        let _ = tx.send(r.is_ok());
                    });
                }
            }
        }
    }
}

/// Standard base64 (the screencast's `data`); `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let b = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("a$==").is_none());
    }

    #[test]
    fn a_missing_browser_is_one_clear_error() {
        let e = check_browser(Path::new("no-such-browser-xyz")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("no-such-browser-xyz") && msg.contains("--chromium"),
            "{msg}"
        );
        assert!(check_browser(Path::new("/no/such/chromium")).is_err());
        assert!(check_browser(Path::new("sh")).is_ok());
    }
}
