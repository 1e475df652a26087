//! Date ranges that left a stream's live playlist, remembered by this process so that
//! `_HLS_skip=v2` delta updates name them in `RECENTLY-REMOVED-DATERANGES` (RFC 8216bis
//! §6.2.5.1): the store keeps no deletion log, so each view's date-range IDs are compared with the
//! previous view's.
//!
//! An ID listed by the previous view and absent from the new one is recorded at the wall time the
//! new view is built, whatever took it out: `DELETE /markers/{id}`, retention, the playlist's cap,
//! or the window sliding past it. The renderer names slid-out ranges itself only when it is given
//! them, and the API gives it only ranges that overlap the window (`AppState::dateranges`), so
//! without this record a v2 client would keep those too. An ID the new view lists is never named
//! (the renderer's own slid-out ranges are among the listed ones), so none is named twice or while
//! present. Records are kept for one skip boundary (what a v2 client may lag behind: the delta
//! leaves out ranges older than that), at most [`MAX_REMOVED`] per stream.
//!
//! A process knows only what it watched: deletions made before it first rendered the stream, or
//! while it went more than half a skip boundary without being asked for the stream's live
//! playlist, are unknown to it (several API nodes share one Redis; a v2 client may have been
//! served by another node). Until it has watched for one whole skip boundary,
//! [`Watched::complete`] is false and a v2 request gets the full playlist, always a valid answer
//! to a skip request (§6.2.5.1). Left open: a range added and deleted entirely between two of this
//! process's views of the stream, and served meanwhile by another node, is never named here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use hlsmark_clock::{Duration90k, UtcTime};
use hlsmark_store::StreamName;

/// At most this many removed IDs are remembered per stream. Forgetting one within the skip
/// boundary makes the stream's deltas "unknown" (full playlists) until that record would have
/// expired.
pub const MAX_REMOVED: usize = 1_000;
/// At most this many streams are watched; past it every record is dropped, and each stream is
/// watched anew (full playlists for v2 requests for a skip boundary).
const MAX_STREAMS: usize = 1_024;

/// What one process watched of one stream.
#[derive(Debug)]
struct Watch {
    /// Watching without a gap since then.
    since: UtcTime,
    /// The last time a live playlist of the stream was asked for (or rendered).
    seen: UtcTime,
    /// The skip boundary of the last view.
    boundary: Duration90k,
    /// IDs of the date ranges of the last view built.
    listed: HashSet<String>,
    /// Removed IDs with the time they were found gone, oldest first.
    removed: VecDeque<(UtcTime, String)>,
    /// A record still within the skip boundary was dropped (count bound): unknown until then.
    forgot_until: Option<UtcTime>,
}

impl Watch {
    fn new(now: UtcTime, boundary: Duration90k) -> Self {
        Self {
            since: now,
            seen: now,
            boundary,
            listed: HashSet::new(),
            removed: VecDeque::new(),
            forgot_until: None,
        }
    }

    /// A request at `now`: after a gap of more than half the skip boundary, watching restarts.
    fn touch(&mut self, now: UtcTime) {
        if now - self.seen > Duration90k(self.boundary.ticks() / 2) {
            self.since = now;
        }
        self.seen = self.seen.max(now);
    }

    /// A new view lists `ids` with skip boundary `boundary`: records the IDs of the previous view
    /// that it no longer lists, and answers the removed IDs to name in its v2 delta.
    fn observe(
        &mut self,
        now: UtcTime,
        ids: HashSet<String>,
        boundary: Duration90k,
    ) -> Vec<String> {
        self.boundary = boundary;
        self.touch(now);
        let mut gone: Vec<String> = self.listed.difference(&ids).cloned().collect();
        gone.sort();
        self.listed = ids;
        // Listed again (an out-of-order view, a cap lifted): no longer removed.
        self.removed.retain(|(_, id)| !self.listed.contains(id));
        self.removed.extend(gone.into_iter().map(|id| (now, id)));
        let horizon = now - boundary;
        while self.removed.front().is_some_and(|(at, _)| *at < horizon) {
            self.removed.pop_front();
        }
        while self.removed.len() > MAX_REMOVED {
            if let Some((at, _)) = self.removed.pop_front() {
                let until = at + boundary;
                self.forgot_until = Some(self.forgot_until.map_or(until, |u| u.max(until)));
            }
        }
        self.removed.iter().map(|(_, id)| id.clone()).collect()
    }

    /// Watched without a gap for a whole skip boundary, and no removal within it forgotten.
    fn complete(&self, now: UtcTime) -> bool {
        now - self.since >= self.boundary
            && now - self.seen <= Duration90k(self.boundary.ticks() / 2)
            && self.forgot_until.is_none_or(|u| now >= u)
    }
}

/// One stream's watch, shared by the views rendered from it: whether their removed lists are
/// complete is decided when a request comes (a view may outlive a gap in watching).
#[derive(Debug, Clone)]
pub struct Watched(Arc<Mutex<Watch>>);

impl Watched {
    /// Whether at `now` this process has watched the stream without a gap for a whole skip
    /// boundary and forgot no removal within it: then a view's removed list (complete when it was
    /// built, and nothing changed since without a newer view) names every range a v2 client may
    /// still hold. Else a v2 request gets the full playlist.
    pub fn complete(&self, now: UtcTime) -> bool {
        self.0.lock().is_ok_and(|w| w.complete(now))
    }
}

/// The removed IDs a view's v2 delta names, and whether they can be trusted yet.
#[derive(Debug, Clone)]
pub struct RecentlyRemoved {
    pub ids: Vec<String>,
    pub watched: Watched,
}

/// Removed date ranges of every stream this process renders live playlists of.
#[derive(Debug, Default)]
pub struct Removed {
    streams: Mutex<HashMap<StreamName, Watched>>,
}

impl Removed {
    /// A live playlist of `stream` was asked for at `now`: keeps the stream watched (a longer gap
    /// than half a skip boundary restarts the watch). Streams never rendered are not added.
    pub fn touch(&self, stream: &StreamName, now: UtcTime) {
        let w = self
            .streams
            .lock()
            .ok()
            .and_then(|m| m.get(stream).cloned());
        if let Some(w) = w
            && let Ok(mut w) = w.0.lock()
        {
            w.touch(now);
        }
    }

    /// A new view of `stream` lists the date ranges `ids`; `boundary` is its skip boundary
    /// (`CAN-SKIP-UNTIL`). The IDs its v2 delta names as recently removed (`None` only if a lock
    /// was poisoned: then v2 requests get the full playlist).
    pub fn observe<'a>(
        &self,
        stream: &StreamName,
        now: UtcTime,
        ids: impl IntoIterator<Item = &'a str>,
        boundary: Duration90k,
    ) -> Option<RecentlyRemoved> {
        let ids: HashSet<String> = ids.into_iter().map(str::to_owned).collect();
        let watched = {
            let mut m = self.streams.lock().ok()?;
            if m.len() >= MAX_STREAMS && !m.contains_key(stream) {
                // Views still holding a dropped watch must not trust it: it restarts.
                for w in m.values() {
                    if let Ok(mut w) = w.0.lock() {
                        w.since = w.since.max(now);
                    }
                }
                m.clear();
            }
            m.entry(stream.clone())
                .or_insert_with(|| Watched(Arc::new(Mutex::new(Watch::new(now, boundary)))))
                .clone()
        };
        let ids = watched.0.lock().ok()?.observe(now, ids, boundary);
        Some(RecentlyRemoved { ids, watched })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration90k = Duration90k::from_secs(6);

    fn at(secs: i64) -> UtcTime {
        UtcTime::from_ticks(1_000_000 * 90_000 + secs * 90_000)
    }

    /// A view at `t` listing `ids`: its removed list when complete at `t`, else `None`.
    fn view(r: &Removed, t: UtcTime, ids: &[&str]) -> Option<Vec<String>> {
        let v = r.observe(&StreamName::live(), t, ids.iter().copied(), B)?;
        v.watched.complete(t).then_some(v.ids)
    }

    fn names(ids: &[&str]) -> Option<Vec<String>> {
        Some(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn names_what_left_the_view_once_within_the_boundary_after_a_full_watch() {
        let r = Removed::default();
        let s = StreamName::live();
        // Not watched for a whole skip boundary yet: unknown (full playlists).
        let first = r.observe(&s, at(0), ["a", "b", "c"], B);
        let first = first.unwrap_or_else(|| unreachable!());
        assert!(first.ids.is_empty() && !first.watched.complete(at(0)));
        r.touch(&s, at(3));
        assert!(!first.watched.complete(at(5)));
        // The same view, asked again once watched for 6 s: complete (nothing changed since).
        r.touch(&s, at(6));
        assert!(first.watched.complete(at(6)));
        assert_eq!(view(&r, at(6), &["a", "b", "c"]), names(&[]));
        // "b" deleted, "d" added: "b" named, the listed ones never.
        assert_eq!(view(&r, at(7), &["a", "c", "d"]), names(&["b"]));
        // Named once per list, in every view within the boundary.
        assert_eq!(view(&r, at(8), &["a", "c", "d"]), names(&["b"]));
        // "a" leaves too (deleted, or slid out of the window): named once, after "b".
        assert_eq!(view(&r, at(9), &["c", "d"]), names(&["b", "a"]));
        // Listed again (an older view rendered late): not named while listed; gone again, named.
        assert_eq!(view(&r, at(10), &["a", "c", "d"]), names(&["b"]));
        assert_eq!(view(&r, at(11), &["c", "d"]), names(&["b", "a"]));
        // Older than the skip boundary: forgotten.
        assert_eq!(view(&r, at(13), &["c", "d"]), names(&["b", "a"]));
        assert_eq!(view(&r, at(14), &["c", "d"]), names(&["a"]));
        r.touch(&s, at(16));
        assert_eq!(view(&r, at(18), &["c", "d"]), names(&[]));
    }

    #[test]
    fn a_gap_in_watching_makes_deltas_unknown_for_a_boundary() {
        let r = Removed::default();
        let s = StreamName::live();
        assert_eq!(view(&r, at(0), &["a"]), None);
        for t in 1..=6 {
            r.touch(&s, at(t));
        }
        let v = r
            .observe(&s, at(6), ["a"], B)
            .unwrap_or_else(|| unreachable!());
        assert!(v.watched.complete(at(6)));
        // Not asked for 4 s (> half the boundary): what happened meanwhile may be unknown, also
        // to a view built before the gap.
        assert!(!v.watched.complete(at(10)));
        assert_eq!(view(&r, at(10), &[]), None);
        assert!(!v.watched.complete(at(10)));
        for t in 11..=15 {
            r.touch(&s, at(t));
        }
        // Watched again for a boundary; "a" (gone at 10) is still named.
        assert_eq!(view(&r, at(16), &[]), names(&["a"]));
        // Touching never adds a stream.
        let other = StreamName::new("other").unwrap_or_else(|_| unreachable!());
        r.touch(&other, at(16));
        assert_eq!(r.streams.lock().map(|m| m.len()).unwrap_or(0), 1);
    }

    #[test]
    fn forgetting_a_recent_removal_makes_deltas_unknown_until_it_would_expire() {
        let r = Removed::default();
        let s = StreamName::live();
        let many: Vec<String> = (0..=MAX_REMOVED).map(|i| format!("m{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(view(&r, at(0), &refs), None);
        for t in 1..=6 {
            r.touch(&s, at(t));
        }
        assert_eq!(view(&r, at(6), &refs), names(&[]));
        // All 1,001 deleted at once: one record is dropped, so the list is incomplete.
        assert_eq!(view(&r, at(7), &[]), None);
        for t in 8..=12 {
            r.touch(&s, at(t));
        }
        assert_eq!(view(&r, at(12), &[]), None);
        // At 13 the dropped record (7 s) would have expired: known again, then all expire.
        assert_eq!(view(&r, at(13), &[]).map(|v| v.len()), Some(MAX_REMOVED));
        assert_eq!(view(&r, at(14), &[]), names(&[]));
    }
}
