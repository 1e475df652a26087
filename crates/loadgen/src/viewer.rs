//! One viewer, as hls.js plays a live stream. Both kinds join the same way (full playlist, the
//! init section, the newest complete segment to fill the buffer) and then:
//! - **LL**: a blocking reload for the part after the last listed one (`_HLS_msn`/`_HLS_part`,
//!   `_HLS_skip=YES` when the server advertises `CAN-SKIP-UNTIL`), and, on the other connection
//!   at the same time, the parts the previous answer newly listed, by their `EXT-X-PART` URIs;
//! - **plain**: a playlist reload one target duration after it last changed (half of one when it
//!   had not), and each newly listed segment.
//!
//! A viewer has one or two keep-alive connections (a player's playlist and media loaders).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::http::Conn;
use crate::playlist::{self, Media, Playlist};
use crate::stats::Shared;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// LL-HLS: blocking reloads and parts.
    Ll,
    /// Plain HLS: playlist polling and whole segments.
    Plain,
}

/// What every viewer shares.
#[derive(Debug)]
pub struct Ctx {
    pub addr: SocketAddr,
    pub host: String,
    /// Path of the media playlist (`/hls/live/index.m3u8`).
    pub playlist: String,
    pub kind: Kind,
    /// Connections per viewer: 1 (playlist and media in turn) or 2 (at the same time).
    pub conns: u8,
    /// No request outlives this.
    pub end: Instant,
    pub shared: Mutex<Shared>,
}

/// A request may take this long (a blocking reload is held at most 3 target durations, 12 s).
const REQUEST_LIMIT: Duration = Duration::from_secs(15);
/// Pause after a failed request before the next (a player's retry delay, shortened).
const RETRY_PAUSE: Duration = Duration::from_millis(200);

impl Ctx {
    pub fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panicking viewer task cannot leave the records half-written in a way that matters.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A playlist URI as a request path: absolute paths as they are, relative ones against the
    /// playlist's directory.
    fn resolve(&self, uri: &str) -> String {
        if uri.starts_with('/') {
            return uri.to_owned();
        }
        if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
            return rest
                .find('/')
                .map_or("/".to_owned(), |i| rest[i..].to_owned());
        }
        let dir = self.playlist.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{uri}")
    }

    fn deadline(&self) -> Instant {
        (Instant::now() + REQUEST_LIMIT).min(self.end)
    }
}

/// What one viewer has seen and fetched so far.
struct Viewer {
    id: u32,
    ctx: Arc<Ctx>,
    /// Parts (segments) from this key on have not been noted as listed yet.
    seen_from: (u64, u32),
    /// Parts (segments) from this key on have not been fetched yet.
    fetch_from: (u64, u32),
}

pub async fn run(ctx: Arc<Ctx>, id: u32, start: Instant) {
    tokio::time::sleep_until(start).await;
    let mut v = Viewer {
        id,
        ctx: ctx.clone(),
        seen_from: (0, 0),
        fetch_from: (0, 0),
    };
    let mut playlist_conn = Conn::new(ctx.addr, ctx.host.clone());
    let mut media_conn = Conn::new(ctx.addr, ctx.host.clone());
    let mut media = (ctx.conns >= 2).then_some(&mut media_conn);
    let Some(pl) = v.join(&mut playlist_conn, media.as_deref_mut()).await else {
        return;
    };
    match ctx.kind {
        Kind::Ll => v.ll(pl, playlist_conn, media).await,
        Kind::Plain => v.plain(pl, playlist_conn, media).await,
    }
}

/// The media to fetch next: the parts (LL) or segments (plain) at or after `from`.
fn new_media(pl: &Playlist, kind: Kind, from: (u64, u32)) -> Vec<Media> {
    let list = match kind {
        Kind::Ll => &pl.parts,
        Kind::Plain => &pl.segments,
    };
    list.iter().filter(|m| m.key() >= from).cloned().collect()
}

/// GETs a playlist; notes what it newly lists (from `seen_from` on, which it moves). `None` on
/// anything but a 200 with a playlist.
async fn reload(
    ctx: &Ctx,
    seen_from: &mut (u64, u32),
    conn: &mut Conn,
    path: &str,
) -> Option<Playlist> {
    let got = conn.get(path, true, ctx.deadline()).await;
    let mut s = ctx.shared();
    s.counters.playlist_requests += 1;
    let got = match got {
        Ok(g) if g.status == 200 => g,
        Ok(g) => {
            if g.status >= 500 {
                s.counters.server_errors += 1;
            }
            return None;
        }
        Err(_) => {
            s.counters.errors += 1;
            return None;
        }
    };
    let pl = playlist::parse(std::str::from_utf8(got.body.as_deref()?).ok()?).ok()?;
    s.part_target_us = pl.part_target_us.unwrap_or(0);
    s.target_us = pl.target_duration_us;
    if path.contains("_HLS_msn=") {
        s.counters.blocked_answers += 1;
    }
    for m in pl.segments.iter().chain(&pl.parts) {
        if m.key() >= *seen_from {
            s.listed(m, got.done);
        }
    }
    let newest = pl.segments.iter().chain(&pl.parts).map(Media::key).max();
    if let Some((msn, index)) = newest {
        *seen_from = (*seen_from).max((msn, index.saturating_add(1)));
    }
    Some(pl)
}

/// GETs a part or segment; records its receipt under `key` when given.
async fn fetch(ctx: &Ctx, id: u32, conn: &mut Conn, path: &str, key: Option<(u64, u32)>) {
    let got = conn.get(path, false, ctx.deadline()).await;
    let mut s = ctx.shared();
    s.counters.media_requests += 1;
    match got {
        Ok(g) if g.status == 200 => match key {
            Some(k) => s.received(id, k, g.done, g.len),
            None => s.counters.media_bytes += g.len,
        },
        Ok(g) if g.status == 404 => s.counters.gone += 1,
        Ok(g) if g.status >= 500 => s.counters.server_errors += 1,
        Ok(_) => {}
        Err(_) => s.counters.errors += 1,
    }
}

/// Fetches `todo` in order.
async fn fetch_all(ctx: &Ctx, id: u32, conn: &mut Conn, todo: Vec<Media>) {
    for m in todo {
        if Instant::now() >= ctx.end {
            return;
        }
        fetch(ctx, id, conn, &ctx.resolve(&m.uri), Some(m.key())).await;
    }
}

impl Viewer {
    /// Full playlist (retried until it answers), init section, newest complete segment.
    async fn join(&mut self, conn: &mut Conn, media: Option<&mut Conn>) -> Option<Playlist> {
        let ctx = self.ctx.clone();
        let pl = loop {
            if Instant::now() >= ctx.end {
                return None;
            }
            if let Some(pl) = reload(&ctx, &mut self.seen_from, conn, &ctx.playlist).await {
                break pl;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        let media = media.unwrap_or(conn);
        if let Some(init) = &pl.init_uri {
            fetch(&ctx, self.id, media, &ctx.resolve(init), None).await;
        }
        if let Some(last) = pl.segments.last() {
            fetch(&ctx, self.id, media, &ctx.resolve(&last.uri), None).await;
        }
        ctx.shared().joined(self.id, Instant::now());
        // From here on: the open segment's parts (LL), the next segment (plain).
        self.fetch_from = match ctx.kind {
            Kind::Ll => (pl.next_msn, 0),
            Kind::Plain => (pl.next_msn, playlist::WHOLE),
        };
        Some(pl)
    }

    /// What `pl` lists from `fetch_from` on (which moves past it).
    fn take_new(&mut self, pl: &Playlist) -> Vec<Media> {
        let todo = new_media(pl, self.ctx.kind, self.fetch_from);
        if let Some(last) = todo.last() {
            self.fetch_from = match self.ctx.kind {
                Kind::Ll => (last.msn, last.index.saturating_add(1)),
                Kind::Plain => (last.msn + 1, playlist::WHOLE),
            };
        }
        todo
    }

    async fn ll(mut self, mut pl: Playlist, mut pconn: Conn, mut media: Option<&mut Conn>) {
        let ctx = self.ctx.clone();
        let mut full_next = false;
        while Instant::now() < ctx.end {
            let todo = self.take_new(&pl);
            let (msn, part) = pl.next_part();
            let path = if full_next || !pl.can_block_reload {
                ctx.playlist.clone()
            } else {
                let skip = if pl.can_skip { "&_HLS_skip=YES" } else { "" };
                format!("{}?_HLS_msn={msn}&_HLS_part={part}{skip}", ctx.playlist)
            };
            let seen = &mut self.seen_from;
            let next = match media.as_deref_mut() {
                // Two loaders: the reload waits on the server while the parts download.
                Some(mconn) => {
                    let (r, ()) = tokio::join!(
                        reload(&ctx, seen, &mut pconn, &path),
                        fetch_all(&ctx, self.id, mconn, todo)
                    );
                    r
                }
                None => {
                    fetch_all(&ctx, self.id, &mut pconn, todo).await;
                    reload(&ctx, seen, &mut pconn, &path).await
                }
            };
            match next {
                Some(p) => {
                    full_next = false;
                    pl = p;
                }
                None => {
                    // 503 (not ready in time), 400 (too far: we fell far behind) or an error:
                    // start over from a full playlist, like a player does.
                    full_next = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    async fn plain(mut self, mut pl: Playlist, mut pconn: Conn, mut media: Option<&mut Conn>) {
        let ctx = self.ctx.clone();
        let target = Duration::from_micros(pl.target_duration_us.max(100_000));
        let mut changed = true;
        let mut asked = Instant::now();
        while Instant::now() < ctx.end {
            let todo = self.take_new(&pl);
            // hls.js: reload one target duration after the playlist changed, half of one after
            // it did not, counted from when the previous reload was sent.
            let next_at = asked + if changed { target } else { target / 2 };
            let before = pl.segments.last().map(Media::key);
            let seen = &mut self.seen_from;
            let (next, sent) = match media.as_deref_mut() {
                Some(mconn) => {
                    let reload_later = async {
                        tokio::time::sleep_until(next_at).await;
                        let sent = Instant::now();
                        (reload(&ctx, seen, &mut pconn, &ctx.playlist).await, sent)
                    };
                    tokio::join!(reload_later, fetch_all(&ctx, self.id, mconn, todo)).0
                }
                None => {
                    // One connection: the segments first, then the reload on the same one.
                    fetch_all(&ctx, self.id, &mut pconn, todo).await;
                    tokio::time::sleep_until(next_at).await;
                    let sent = Instant::now();
                    (reload(&ctx, seen, &mut pconn, &ctx.playlist).await, sent)
                }
            };
            asked = sent;
            match next {
                Some(p) => {
                    changed = p.segments.last().map(Media::key) != before;
                    pl = p;
                }
                None => {
                    changed = false;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_against_the_playlist() {
        let ctx = Ctx {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            host: "h".into(),
            playlist: "/hls/live/index.m3u8".into(),
            kind: Kind::Ll,
            conns: 2,
            end: Instant::now(),
            shared: Mutex::new(Shared::new(Instant::now(), 0)),
        };
        assert_eq!(ctx.resolve("e0-1.m4s?v=2"), "/hls/live/e0-1.m4s?v=2");
        assert_eq!(ctx.resolve("/x/y.m4s"), "/x/y.m4s");
        assert_eq!(ctx.resolve("http://a:1/z/y.m4s"), "/z/y.m4s");
    }
}
