//! The embedded store's marker journal: an append-only file beside the redb file that makes a
//! group of marker writes durable with one `fdatasync` of a few KiB, several of them in flight
//! at once, instead of one redb commit at a time.
//!
//! Why: redb commits one write transaction at a time and each `Durability::Immediate` commit
//! waits for its own fsync, so with writers that each wait for their insert the rate is at most
//! writers / commit latency (32 / 13 ms on the loaded VM: 2,500/s). A disk (and this VM's
//! virtual one: a lone fdatasync ~4 ms, each of four concurrent ones ~0.3 ms) completes
//! concurrent flushes far faster than the same flushes one after the other; redb cannot overlap
//! two commits, an append-only file can.
//!
//! How (see design/store.md, "Marker journal"): the group-commit leader writes a group in one
//! redb transaction committed with `Durability::None` (visible, not yet durable) that also
//! records the group's log sequence number (LSN) in the `journal` table, appends one record
//! `[len u32][crc32 u32][lsn u64][payload]` to the journal, and goes on with the next group.
//! Flushers (at most [`MAX_FLUSHERS`] at once, on blocking threads) `fdatasync` the file and
//! answer every group whose record was written before their flush started. Every
//! [`CHECKPOINT_BYTES`] of journal or [`CHECKPOINT_EVERY`], a group is committed with
//! `Durability::Immediate` instead (a checkpoint: redb then holds every earlier group durably),
//! after which the journal is emptied. At open (and after the file is reopened following an I/O
//! error) the records newer than the LSN redb holds are applied again; a record is taken only
//! if its checksum holds and its LSN is one more than the previous record's, so a torn tail or
//! the leftovers of an emptied journal end the replay.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Marker, Result, StoreError};

/// "applied" -> the LSN of the newest group written into redb (durable with redb's own state).
pub(super) const APPLIED: TableDefinition<'_, &str, u64> = TableDefinition::new("journal");
const APPLIED_KEY: &str = "applied";

/// Record header: payload length, CRC-32 of (lsn, payload), lsn.
const HEADER: usize = 16;
/// Largest payload accepted at replay (a group holds at most a few thousand markers of at most
/// ~17 KiB each); a longer length field is a torn or foreign record.
const MAX_PAYLOAD: usize = 256 << 20;
/// Concurrent `fdatasync`s of the journal at most.
pub(super) const MAX_FLUSHERS: usize = 4;
/// How long a flusher with nothing to flush waits for the next record before it ends.
const FLUSHER_LINGER: Duration = Duration::from_millis(2);
/// Journal size after which the next group is a checkpoint.
pub(super) const CHECKPOINT_BYTES: u64 = 8 << 20;
/// Time after which the next group is a checkpoint: bounds what a restart replays, and makes
/// the other `Durability::None` commits (parts, outbox claims) durable at least this often.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Answers a journaled group once its record is durable (or its flush failed).
pub(super) type Waiter = Box<dyn FnOnce(Result<()>) + Send>;

/// The journal file and its flush state; shared by the leader, the flushers and reopening.
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    state: Mutex<State>,
    /// Wakes a lingering flusher when a record is written.
    more: std::sync::Condvar,
    /// Held while the file is appended to, emptied or replayed, and by the leader across a
    /// group's redb commit and append, so replay and the leader never interleave.
    pub(super) io: Mutex<Io>,
}

/// What the leader (and replay) own while holding [`Journal::io`].
pub(super) struct Io {
    /// Byte offset of the next record.
    end: u64,
    /// LSN of the next group.
    next_lsn: u64,
    last_checkpoint: Instant,
    /// A write or flush failed: nothing more is appended until a checkpoint empties the file
    /// (a record after a hole would never be replayed).
    broken: bool,
}

impl Io {
    /// The LSN the next group gets (taken with [`Io::take_lsn`] once it wrote something: the
    /// records of the file must have consecutive LSNs).
    pub(super) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    pub(super) fn take_lsn(&mut self) {
        self.next_lsn += 1;
    }
}

#[derive(Default)]
struct State {
    /// Highest LSN whose record is written (in the page cache at least).
    written: u64,
    /// Highest LSN a flush has been started for.
    requested: u64,
    /// Highest LSN known durable (flushed, or in a checkpoint).
    durable: u64,
    flushers: usize,
    /// Flushers lingering for the next record (see [`FLUSHER_LINGER`]).
    idle: usize,
    waiting: VecDeque<(u64, Waiter)>,
    /// Set by a failed flush until the next checkpoint: waits fail at once.
    broken: bool,
}

fn io_err(path: &Path, what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("store journal {}: {what}: {e}", path.display()))
}

fn crc(lsn: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Journal {
    /// Opens (or creates) the journal of the redb file `db_path`: `<db_path>.journal`.
    pub(super) fn open(db_path: &Path) -> Result<Arc<Self>> {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".journal");
        let path = PathBuf::from(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err(&path, "open", &e))?;
        Ok(Arc::new(Self {
            path,
            file,
            state: Mutex::new(State::default()),
            more: std::sync::Condvar::new(),
            io: Mutex::new(Io {
                end: 0,
                next_lsn: 1,
                last_checkpoint: Instant::now(),
                broken: false,
            }),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain numbers behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn lock_io(&self) -> MutexGuard<'_, Io> {
        self.io
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the records newer than redb's applied LSN in one immediate transaction, then
    /// empties the file. Each marker goes through `apply` (the store's check-and-write of one
    /// marker); the returned count of inserted markers per stream is folded into versions there.
    /// Waiters of records applied here are answered (their markers are now durable in redb).
    pub(super) fn replay(
        &self,
        io: &mut Io,
        db: &Database,
        apply: &dyn Fn(&WriteTransaction, &[Marker]) -> Result<()>,
    ) -> Result<usize> {
        // Read by offset (never the file cursor): a replay that failed is tried again later.
        let len = self
            .file
            .metadata()
            .map_err(|e| io_err(&self.path, "read", &e))?
            .len();
        let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| io_err(&self.path, "read", &e))?;
        let txn = db.begin_write()?;
        let applied = {
            let t = txn.open_table(APPLIED)?;
            t.get(APPLIED_KEY)?.map_or(0, |g| g.value())
        };
        let mut pos = 0usize;
        let mut prev: Option<u64> = None;
        let mut replayed = 0usize;
        let mut last = applied;
        while let Some(head) = bytes.get(pos..pos + HEADER) {
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let sum = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            let mut lsn_bytes = [0u8; 8];
            lsn_bytes.copy_from_slice(&head[8..16]);
            let lsn = u64::from_le_bytes(lsn_bytes);
            if len == 0 || len > MAX_PAYLOAD || prev.is_some_and(|p| lsn != p + 1) {
                break;
            }
            let Some(payload) = bytes.get(pos + HEADER..pos + HEADER + len) else {
                break;
            };
            if crc(lsn, payload) != sum {
                break;
            }
            if lsn > applied {
                let markers = decode_payload(payload)?;
                apply(&txn, &markers)?;
                replayed += markers.len();
                last = lsn;
            }
            prev = Some(lsn);
            pos += HEADER + len;
        }
        let top = last.max(prev.unwrap_or(0));
        txn.open_table(APPLIED)?.insert(APPLIED_KEY, top)?;
        txn.commit()?;
        if replayed > 0 {
            tracing::info!(
                journal = %self.path.display(),
                markers = replayed,
                "store journal: applied the markers acknowledged after the last checkpoint"
            );
        }
        io.next_lsn = io.next_lsn.max(top + 1);
        self.emptied(io, top);
        Ok(replayed)
    }

    /// After a checkpoint (an immediate commit that recorded `lsn`): every group up to `lsn` is
    /// durable in redb, so their waiters are answered and the file is emptied.
    pub(super) fn emptied(&self, io: &mut Io, lsn: u64) {
        let truncated = self.file.set_len(0);
        if let Err(e) = &truncated {
            tracing::warn!(journal = %self.path.display(), error = %e, "store journal: emptying it failed; the next group checkpoints again");
        }
        io.end = 0;
        io.last_checkpoint = Instant::now();
        // A failed truncation keeps the journal broken: the next group checkpoints again.
        io.broken = truncated.is_err();
        let done = {
            let mut st = self.state();
            st.durable = st.durable.max(lsn);
            st.written = st.written.max(lsn);
            st.requested = st.requested.max(lsn);
            st.broken = io.broken;
            take_done(&mut st)
        };
        for w in done {
            w(Ok(()));
        }
    }

    /// Whether the next group must be a checkpoint instead of a journal record.
    pub(super) fn checkpoint_due(&self, io: &Io) -> bool {
        io.broken
            || io.end >= CHECKPOINT_BYTES
            || io.last_checkpoint.elapsed() >= CHECKPOINT_EVERY
            || self.state().broken
    }

    /// Appends group `lsn`'s record (written, not yet durable). An error breaks the journal
    /// until the next checkpoint.
    pub(super) fn append(&self, io: &mut Io, lsn: u64, payload: &[u8]) -> Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_PAYLOAD)
            .ok_or_else(|| StoreError::Backend("journal record too large".into()))?;
        let mut rec = Vec::with_capacity(HEADER + payload.len());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&crc(lsn, payload).to_le_bytes());
        rec.extend_from_slice(&lsn.to_le_bytes());
        rec.extend_from_slice(payload);
        if let Err(e) = self.file.write_all_at(&rec, io.end) {
            io.broken = true;
            return Err(io_err(&self.path, "append", &e));
        }
        io.end += rec.len() as u64;
        let mut st = self.state();
        st.written = st.written.max(lsn);
        Ok(())
    }

    /// Calls `waiter` once record `lsn` is durable, starting a flush if fewer than
    /// [`MAX_FLUSHERS`] run and the record is not covered by one already started.
    pub(super) fn wait(self: &Arc<Self>, lsn: u64, waiter: Waiter) {
        let start = {
            let mut st = self.state();
            if st.durable >= lsn {
                drop(st);
                waiter(Ok(()));
                return;
            }
            if st.broken {
                drop(st);
                waiter(Err(self.broken_error()));
                return;
            }
            st.waiting.push_back((lsn, waiter));
            if st.written <= st.requested {
                false
            } else if st.idle > 0 {
                self.more.notify_one();
                false
            } else if st.flushers < MAX_FLUSHERS {
                st.flushers += 1;
                true
            } else {
                false
            }
        };
        if start {
            let me = Arc::clone(self);
            let run = move || me.flush_loop();
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn_blocking(run)),
                Err(_) => drop(std::thread::spawn(run)),
            }
        }
    }

    fn broken_error(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "store journal {}: a flush failed; the write was not acknowledged",
            self.path.display()
        ))
    }

    /// A flusher: flushes what is written and not yet being flushed, answers what became
    /// durable, until nothing new is written.
    fn flush_loop(&self) {
        loop {
            let target = {
                let mut st = self.state();
                if !st.broken && st.written <= st.requested {
                    // The writers just answered send their next inserts within a moment:
                    // lingering saves starting a new blocking thread for their flush.
                    st.idle += 1;
                    st = match self.more.wait_timeout(st, FLUSHER_LINGER) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                    st.idle -= 1;
                }
                if st.broken || st.written <= st.requested {
                    st.flushers -= 1;
                    return;
                }
                st.requested = st.written;
                st.written
            };
            let synced = self.file.sync_data();
            let done = {
                let mut st = self.state();
                match &synced {
                    Ok(()) if !st.broken => {
                        st.durable = st.durable.max(target);
                        take_done(&mut st)
                    }
                    Ok(()) => Vec::new(),
                    Err(_) => {
                        // After a failed fdatasync the kernel may have dropped the pages: no
                        // later flush can vouch for them. Fail everything not yet durable and
                        // append nothing until a checkpoint.
                        st.broken = true;
                        st.waiting.drain(..).map(|(_, w)| w).collect()
                    }
                }
            };
            match synced {
                Ok(()) => {
                    for w in done {
                        w(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::warn!(journal = %self.path.display(), error = %e, "store journal flush failed; writes are committed without it until a checkpoint works");
                    for w in done {
                        w(Err(io_err(&self.path, "flush", &e)));
                    }
                }
            }
        }
    }
}

/// Waiters whose LSN is durable, in order.
fn take_done(st: &mut State) -> Vec<Waiter> {
    let mut done = Vec::new();
    while st.waiting.front().is_some_and(|(l, _)| *l <= st.durable) {
        if let Some((_, w)) = st.waiting.pop_front() {
            done.push(w);
        }
    }
    // Out of order (a later group's waiter queued first) cannot happen: the leader queues in
    // LSN order. Still, never leave a durable waiter behind a newer one.
    if st.waiting.iter().any(|(l, _)| *l <= st.durable) {
        let (now, later): (Vec<_>, Vec<_>) =
            st.waiting.drain(..).partition(|(l, _)| *l <= st.durable);
        st.waiting = later.into();
        done.extend(now.into_iter().map(|(_, w)| w));
    }
    done
}

/// Records the group's LSN in its own transaction.
pub(super) fn record_lsn(txn: &WriteTransaction, lsn: u64) -> Result<()> {
    txn.open_table(APPLIED)?.insert(APPLIED_KEY, lsn)?;
    Ok(())
}

/// Appends one marker's JSON to a record payload: `[len u32][json]`.
pub(super) fn push_body(payload: &mut Vec<u8>, body: &[u8]) {
    payload.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    payload.extend_from_slice(body);
}

fn decode_payload(mut p: &[u8]) -> Result<Vec<Marker>> {
    let mut out = Vec::new();
    while !p.is_empty() {
        let corrupt = || StoreError::Corrupt {
            key: "journal".into(),
            why: "a record's marker list is cut short".into(),
        };
        let head = p.get(..4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let body = p.get(4..4 + len).ok_or_else(corrupt)?;
        out.push(super::decode(body, || "journal record".into())?);
        p = &p[4 + len..];
    }
    Ok(out)
}
