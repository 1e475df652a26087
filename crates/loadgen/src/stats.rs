//! What the viewers saw, and the report made of it.
//!
//! A part's (segment's) **availability** is the moment the first viewer's playlist answer listing
//! it arrived: every viewer blocked on that part is woken by the same server-side update, so the
//! first answer to arrive is the server's publish time plus one loopback answer, on the same
//! (client, monotonic) clock as every receipt. A viewer's **delay** for a part is when it had the
//! part's last byte minus that moment. The PDT-based **age** (receipt wall time minus the wall
//! time the part's media ends, from `EXT-X-PROGRAM-DATE-TIME`) is reported beside it: it adds the
//! ingest's own publishing delay, which is not the server's serving.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::playlist::{Media, WHOLE};

/// When a part (segment) was first seen listed, and its media's wall-clock end.
#[derive(Debug, Clone, Copy)]
struct Listed {
    at: Instant,
    end_unix_ms: Option<i64>,
    duration_us: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub playlist_requests: u64,
    pub blocked_answers: u64,
    pub media_requests: u64,
    pub media_bytes: u64,
    /// Transport errors and timeouts (the request is retried on a new connection).
    pub errors: u64,
    /// Answers 5xx (a blocking reload's 503 `playlist_not_ready`, among others).
    pub server_errors: u64,
    /// A listed part or segment that answered 404 (it left before the viewer asked).
    pub gone: u64,
}

#[derive(Debug)]
pub struct Shared {
    t0: Instant,
    t0_unix_ms: i64,
    listed: HashMap<(u64, u32), Listed>,
    /// (viewer, media key) -> when the viewer had the last byte.
    received: HashMap<(u32, (u64, u32)), Instant>,
    pub counters: Counters,
    /// Per viewer: the moment its join ended (its first part or segment was asked for).
    joined: HashMap<u32, Instant>,
    /// The newest playlist's part target and target duration (µs).
    pub part_target_us: u64,
    pub target_us: u64,
}

impl Shared {
    pub fn new(t0: Instant, t0_unix_ms: i64) -> Self {
        Self {
            t0,
            t0_unix_ms,
            listed: HashMap::new(),
            received: HashMap::new(),
            counters: Counters::default(),
            joined: HashMap::new(),
            part_target_us: 0,
            target_us: 0,
        }
    }

    pub fn listed(&mut self, m: &Media, at: Instant) {
        self.listed
            .entry(m.key())
            .and_modify(|l| l.at = l.at.min(at))
            .or_insert(Listed {
                at,
                end_unix_ms: m.end_unix_ms,
                duration_us: m.duration_us,
            });
    }

    pub fn received(&mut self, viewer: u32, key: (u64, u32), at: Instant, bytes: u64) {
        self.received.entry((viewer, key)).or_insert(at);
        self.counters.media_bytes += bytes;
    }

    pub fn joined(&mut self, viewer: u32, at: Instant) {
        self.joined.entry(viewer).or_insert(at);
    }

    fn unix_ms(&self, at: Instant) -> i64 {
        self.t0_unix_ms + i64::try_from(at.duration_since(self.t0).as_millis()).unwrap_or(0)
    }

    /// Delays of the parts (`parts`, else the whole segments) first listed within `[from, to)`,
    /// for every viewer that had joined before `from`. `hold_back` is how late a part may come before a player with that much
    /// buffer stalls: a viewer with a later or a missing one fell behind.
    pub fn report(
        &self,
        parts: bool,
        from: Instant,
        to: Instant,
        one: u64,
        hold_back_us: u64,
    ) -> Report {
        let mut media: Vec<((u64, u32), Listed)> = self
            .listed
            .iter()
            .filter(|((_, index), l)| (*index != WHOLE) == parts && l.at >= from && l.at < to)
            .map(|(k, l)| (*k, *l))
            .collect();
        media.sort_by_key(|(k, _)| *k);
        let viewers: Vec<u32> = self
            .joined
            .iter()
            .filter(|(_, at)| **at < from)
            .map(|(v, _)| *v)
            .collect();
        let mut delays_us = Vec::with_capacity(media.len() * viewers.len());
        let mut ages_ms = Vec::new();
        let (mut missed, mut behind, mut over_one) = (0u64, 0u64, 0u64);
        let mut over_own = 0usize;
        let mut missed_keys = std::collections::BTreeMap::new();
        for v in &viewers {
            let (mut v_behind, mut v_over) = (false, false);
            for (key, l) in &media {
                match self.received.get(&(*v, *key)) {
                    Some(at) => {
                        let d = u64::try_from(at.saturating_duration_since(l.at).as_micros())
                            .unwrap_or(u64::MAX);
                        v_over |= d > one;
                        over_own += usize::from(d > l.duration_us);
                        v_behind |= d > hold_back_us;
                        delays_us.push(d);
                        if let Some(end) = l.end_unix_ms {
                            ages_ms.push(self.unix_ms(*at) - end);
                        }
                    }
                    None => {
                        *missed_keys.entry(*key).or_insert(0u64) += 1;
                        missed += 1;
                        v_behind = true;
                    }
                }
            }
            behind += u64::from(v_behind);
            over_one += u64::from(v_over);
        }
        delays_us.sort_unstable();
        ages_ms.sort_unstable();
        Report {
            viewers: viewers.len(),
            media: media.len(),
            delivered: delays_us.len(),
            missed,
            viewers_behind: behind,
            viewers_over_one: over_one,
            deliveries_over_one: delays_us.iter().filter(|d| **d > one).count(),
            deliveries_over_own_duration: over_own,
            missed_keys: missed_keys.into_iter().take(20).collect(),
            delay_us: Quantiles::of(&delays_us),
            age_ms: Quantiles::of(&ages_ms),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles<T> {
    pub p50: T,
    pub p90: T,
    pub p99: T,
    pub p999: T,
    pub max: T,
}

impl<T: Copy + Default> Quantiles<T> {
    /// Nearest-rank quantiles of sorted values (all zero when there are none).
    pub fn of(sorted: &[T]) -> Self {
        let q = |num: usize, den: usize| {
            if sorted.is_empty() {
                return T::default();
            }
            let rank = (sorted.len() * num).div_ceil(den).max(1);
            sorted[rank.min(sorted.len()) - 1]
        };
        Self {
            p50: q(50, 100),
            p90: q(90, 100),
            p99: q(99, 100),
            p999: q(999, 1000),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
pub struct Report {
    /// Viewers that had joined before the window opened.
    pub viewers: usize,
    /// Parts (segments) first listed within the window.
    pub media: usize,
    pub delivered: usize,
    pub missed: u64,
    pub viewers_behind: u64,
    pub viewers_over_one: u64,
    pub deliveries_over_one: usize,
    /// Deliveries later than the part's (segment's) own duration.
    pub deliveries_over_own_duration: usize,
    /// The first missed parts (segments) as ((msn, index), viewers that missed it).
    pub missed_keys: Vec<((u64, u32), u64)>,
    pub delay_us: Quantiles<u64>,
    pub age_ms: Quantiles<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        let q = Quantiles::of(&v);
        assert_eq!((q.p50, q.p90, q.p99, q.p999, q.max), (50, 90, 99, 100, 100));
        assert_eq!(Quantiles::<u64>::of(&[]), Quantiles::default());
    }

    #[test]
    fn delays_count_from_the_first_listing_and_a_missing_part_puts_a_viewer_behind() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Shared::new(t0, 0);
        let part = |index| Media {
            msn: 5,
            index,
            uri: String::new(),
            duration_us: 200_000,
            end_unix_ms: Some(100),
        };
        s.joined(0, ms(1));
        s.joined(1, ms(2));
        s.joined(2, ms(500)); // joined after the window opened: not judged
        s.listed(&part(0), ms(120));
        s.listed(&part(0), ms(110)); // a second viewer saw it earlier
        s.listed(&part(1), ms(310));
        s.listed(&part(WHOLE), ms(320)); // the parent segment: not judged with the parts
        s.received(0, (5, 0), ms(130), 10);
        s.received(1, (5, 0), ms(400), 10);
        s.received(0, (5, 1), ms(320), 10);
        let r = s.report(true, ms(100), ms(1000), 200_000, 600_000);
        assert_eq!((r.viewers, r.media, r.delivered, r.missed), (2, 2, 3, 1));
        assert_eq!(r.delay_us.max, 290_000);
        assert_eq!(r.delay_us.p50, 20_000);
        assert_eq!((r.viewers_behind, r.viewers_over_one), (1, 1));
        assert_eq!(
            (r.deliveries_over_one, r.deliveries_over_own_duration),
            (1, 1)
        );
        assert_eq!(r.age_ms.max, 300);
    }
}
