//! The socket under actix-http: zero-copy file bodies, request framing and the fast path.
//!
//! actix-http copies every body chunk into its connection write buffer before writing it, which
//! for 350 KB segments costs more than the rest of the request together. So the server hands
//! actix-http a [`ZcStream`] (the TCP socket plus a per-connection queue of file jobs) instead of
//! the bare socket:
//!
//! 1. The segment handler opens the file, queues a [`Job`] (file, byte range) on the connection's
//!    [`ZcConn`] and answers with headers only: no body (`BodySize::None`), and one marker header
//!    `x-hlsmark-sendfile: <process token>-<job id>`.
//! 2. actix-http encodes that head into its write buffer and writes it to the `ZcStream`. The
//!    stream finds the marker line, replaces it with `content-length: <n>`, and after the head's
//!    blank line sends the job's bytes with `sendfile` (head and body corked together with
//!    `TCP_CORK`), before anything that follows.
//!
//! This holds for small files too: with the server on one core, 16.6 KB segments sent this way
//! ran at 141-148k req/s against 124-130k when they left from memory with their head in one
//! `writev` (the copy into the socket costs more than the cork and uncork calls).
//!
//! **Framing.** The stream also reads the socket itself. It frames each request with `httparse`
//! (head, then a Content-Length body) and hands actix one request at a time: actix-http decides
//! whether an answer carries its body by the method of the request it decoded *last*, so a
//! pipelined `HEAD` behind a `GET` would otherwise strip the `GET` answer's body. Every other answer
//! of the app is marked too (`mark_framing`, in the outermost middleware): `<token>-b<n>` when
//! actix writes `n` body bytes after the head, `<token>-s` for a streamed body. The stream removes
//! the marker line, sends head and body bytes in one `writev`, and counts the body, so it knows
//! when actix has answered everything it was given. Then, and only then, a plain segment, init or
//! live-playlist request is answered by the stream itself ([`crate::fastpath`]); everything else
//! goes to actix byte for byte.
//!
//! Whatever the stream cannot frame (bytes `httparse` refuses, a chunked request body, an upgrade,
//! a streamed answer, an answer the app did not mark such as actix-http's own 400/408) ends the
//! framing for that connection: from then on every byte passes through to actix, and only marked
//! heads are still rewritten. A request head that stays unfinished for 5 s after the first request
//! (actix-http times only the first) closes the connection.
//!
//! Head and body therefore leave in order even when requests are pipelined. The token is 128
//! random bits drawn once per process and is never sent (the marker line is always replaced), so
//! no other byte sequence can be taken for a marker. A job whose marker never arrives (the answer
//! was replaced on the way out) is dropped when a later job's marker is seen, or with the
//! connection. A connection without a `ZcConn` (actix's test harness) gets the same answer with a
//! body read from the file instead.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};

use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::fastpath::{self, FastPath, Parsed};
use tokio::net::TcpStream;

/// Name of the marker header (lower case, as actix-http writes header names).
pub const MARKER_HEADER: &str = "x-hlsmark-sendfile";
/// The same as a header name (parsed once).
pub const MARKER_NAME: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static(MARKER_HEADER);

/// 32 hex digits drawn once per process.
static TOKEN: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// `\r\n<name>: <token>-`: what starts a marker line in a response head.
static PATTERN: LazyLock<Vec<u8>> =
    LazyLock::new(|| format!("\r\n{MARKER_HEADER}: {}-", TOKEN.as_str()).into_bytes());

/// Searchers built once (building one costs about as much as a search of a short head).
static FIND_MARKER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(PATTERN.as_slice()).into_owned());
static FIND_HEAD_END: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// Most bytes one `sendfile` call is asked for (the kernel caps a call near 2 GiB anyway).
const MAX_CHUNK: usize = 1 << 30;

/// What to send after a response head (`len` bytes: the Content-Length).
#[derive(Debug)]
pub struct Job {
    pub body: Body,
    pub offset: u64,
    pub len: u64,
}

/// Where a job's bytes come from.
#[derive(Debug)]
pub enum Body {
    /// Nothing (HEAD): the head only.
    None,
    /// `len` bytes of the file from `offset`, with `sendfile`.
    File(Arc<File>),
    /// Bytes already in memory (a cached playlist), sent with the head in one `writev`.
    Bytes(Bytes),
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    jobs: VecDeque<(u64, Job)>,
}

/// A connection's job queue, shared by the handlers (through the connection data) and the stream.
#[derive(Debug, Clone, Default)]
pub struct ZcConn(Rc<RefCell<Queue>>);

impl ZcConn {
    /// Queues a job and returns the value of the marker header that answers it.
    pub fn push(&self, job: Job) -> String {
        let mut q = self.0.borrow_mut();
        let id = q.next_id;
        q.next_id += 1;
        q.jobs.push_back((id, job));
        format!("{}-{id}", TOKEN.as_str())
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.borrow().jobs.is_empty()
    }

    /// Takes the job `id`, dropping older ones whose answers never reached the socket.
    fn take(&self, id: u64) -> Option<Job> {
        let mut q = self.0.borrow_mut();
        while let Some((first, _)) = q.jobs.front() {
            match (*first).cmp(&id) {
                std::cmp::Ordering::Less => {
                    q.jobs.pop_front();
                }
                std::cmp::Ordering::Equal => return q.jobs.pop_front().map(|(_, j)| j),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}

/// What a marker says follows its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// `<token>-<id>`: the queued file job `id` (actix writes no body).
    Job(u64),
    /// `<token>-b<n>`: actix writes `n` body bytes itself.
    Body(u64),
    /// `<token>-s`: actix streams a body of unknown length (chunked or until close).
    Stream,
}

/// A head taken apart by [`split_head`]: the marker and the rewritten head bytes.
#[derive(Debug, PartialEq, Eq)]
struct Marked {
    /// Bytes of the input consumed: from the marker line's leading CRLF to the head's end.
    consumed: usize,
    mark: Mark,
    /// Where the marker line ends: from there to `consumed` is the rest of the head (up to and
    /// including the blank line).
    line_end: usize,
}

/// With `buf` starting at a marker line (`\r\n<name>: <token>-<mark>`), parses the mark and finds
/// the end of the head. `None` when the bytes are not a whole marked head.
fn split_head(buf: &[u8], pattern: &[u8]) -> Option<Marked> {
    let after = buf.strip_prefix(pattern)?;
    let (prefix, after) = match after.first() {
        Some(b's') => (1, &after[..0]),
        Some(b'b') => (1, &after[1..]),
        _ => (0, after),
    };
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    let mark = if prefix == 1 && digits == 0 && buf[pattern.len()] == b's' {
        Mark::Stream
    } else {
        let n: u64 = std::str::from_utf8(&after[..digits]).ok()?.parse().ok()?;
        if prefix == 1 {
            Mark::Body(n)
        } else {
            Mark::Job(n)
        }
    };
    let line_end = pattern.len() + prefix + digits;
    if buf.get(line_end..line_end + 2)? != b"\r\n" {
        return None;
    }
    // The head ends at the first empty line: the marker line's CRLF may itself be followed by
    // "\r\n" (the marker was the last header).
    let end = FIND_HEAD_END.find(&buf[line_end..])? + line_end + 4;
    Some(Marked {
        consumed: end,
        mark,
        line_end,
    })
}

/// A head and a file range on their way out.
#[derive(Debug)]
struct Transfer {
    head: Vec<u8>,
    head_sent: usize,
    corked: bool,
    body: Body,
    body_sent: usize,
    offset: u64,
    end: u64,
}

/// The socket actix-http reads from and writes to; see the module docs.
#[derive(Debug)]
pub struct ZcStream {
    tcp: TcpStream,
    conn: ZcConn,
    out: Option<Transfer>,
    /// `None`: the stream only rewrites marked answers; every byte read goes to actix.
    fast: Option<Arc<FastPath>>,
    /// Bytes read from the socket and not yet handed to actix or answered.
    inbuf: BytesMut,
    /// Bytes at the front of the input (in `inbuf`, then from the socket) that are actix's: the
    /// rest of a request handed to it.
    to_actix: u64,
    /// The socket's read side has ended.
    eof: bool,
    /// The input was cut off by us (a request head took too long): actix reads end of file.
    cut: bool,
    /// Requests and answers can no longer be told apart (input `httparse` cannot frame, an answer
    /// streamed without a length, an answer we did not mark): every byte goes to actix, and only
    /// marked heads are still rewritten.
    unframed: bool,
    /// Requests handed to actix, and how many of them were answered to the last byte.
    handed: u64,
    answered: u64,
    /// Body bytes of actix's current answer still to pass.
    body_left: u64,
    /// When the unfinished request head at the front of `inbuf` started.
    partial_since: Option<Instant>,
    /// A request waits in `inbuf` until actix has answered the previous one (actix-http decides
    /// whether an answer gets its body by the method of the request it decoded last, so it must
    /// never decode ahead); the task is woken when that answer is written.
    held: bool,
}

/// Longest request head the stream frames (actix-http's own limit); a longer one goes to actix,
/// which answers 431.
const MAX_HEAD: usize = 32 * 1024;
/// Time a client has to complete a request head after the first of the connection (actix-http
/// times out only the first one).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

impl ZcStream {
    pub fn new(tcp: TcpStream, fast: Option<Arc<FastPath>>) -> Self {
        Self {
            tcp,
            conn: ZcConn::default(),
            out: None,
            fast,
            inbuf: BytesMut::new(),
            to_actix: 0,
            eof: false,
            cut: false,
            unframed: false,
            handed: 0,
            answered: 0,
            body_left: 0,
            partial_since: None,
            held: false,
        }
    }

    /// The queue handlers push jobs to (put in the connection data by `on_connect`).
    pub fn conn(&self) -> ZcConn {
        self.conn.clone()
    }

    /// Sends what is left of the current transfer; ready once nothing is left.
    ///
    /// A head followed by file bytes is sent under `TCP_CORK` (nginx's `tcp_nopush`): the head
    /// and the file fill whole segments and leave together when the cork is pulled. Measured
    /// against `MSG_MORE` on the head alone, this cut the kernel time per segment by a fifth.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Self { tcp, out, .. } = self;
        while let Some(t) = out.as_mut() {
            if let Body::Bytes(b) = &t.body {
                let head = &t.head[t.head_sent..];
                let rest = &b[t.body_sent..];
                if head.is_empty() && rest.is_empty() {
                    *out = None;
                    continue;
                }
                let bufs = [io::IoSlice::new(head), io::IoSlice::new(rest)];
                let n = ready!(Pin::new(&mut *tcp).poll_write_vectored(cx, &bufs))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                let from_head = n.min(head.len());
                t.head_sent += from_head;
                t.body_sent += n - from_head;
                continue;
            }
            let file_left = matches!(t.body, Body::File(_)) && t.offset < t.end;
            if file_left && !t.corked {
                rustix::net::sockopt::set_tcp_cork(&*tcp, true)?;
                t.corked = true;
            }
            if t.head_sent < t.head.len() {
                t.head_sent += ready!(Pin::new(&mut *tcp).poll_write(cx, &t.head[t.head_sent..]))?;
                continue;
            }
            if let (true, Body::File(file)) = (file_left, &t.body) {
                ready!(tcp.poll_write_ready(cx))?;
                let count =
                    usize::try_from(t.end - t.offset).map_or(MAX_CHUNK, |n| n.min(MAX_CHUNK));
                let offset = &mut t.offset;
                match tcp.try_io(Interest::WRITABLE, || {
                    rustix::fs::sendfile(&*tcp, &**file, Some(offset), count)
                        .map_err(io::Error::from)
                }) {
                    // The file got shorter than the Content-Length already sent: the connection
                    // cannot be continued.
                    Ok(0) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "file shrank while being sent",
                        )));
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            if t.corked {
                rustix::net::sockopt::set_tcp_cork(&*tcp, false)?;
            }
            *out = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl ZcStream {
    /// Hands input to actix, frames requests, and answers the fast ones (see `fastpath`).
    fn read_framed(
        &mut self,
        fast: &FastPath,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.cut {
                return Poll::Ready(Ok(()));
            }
            // Input that is actix's.
            if (self.to_actix > 0 || self.unframed) && !self.inbuf.is_empty() {
                let mut n = self.inbuf.len().min(buf.remaining());
                if !self.unframed {
                    n = usize::try_from(self.to_actix).map_or(n, |left| n.min(left));
                    self.to_actix -= n as u64;
                }
                buf.put_slice(&self.inbuf[..n]);
                self.inbuf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.unframed {
                return Pin::new(&mut self.tcp).poll_read(cx, buf);
            }
            if self.to_actix == 0 && !self.inbuf.is_empty() {
                // An answer of ours still on its way goes first (and a full socket stops reading).
                ready!(self.drive(cx))?;
                // One request at a time for actix (see `held`).
                if self.handed != self.answered {
                    self.held = true;
                    return Poll::Pending;
                }
                match fastpath::parse(&self.inbuf) {
                    Parsed::Request {
                        head_len,
                        body_len,
                        fast: candidate,
                    } => {
                        self.partial_since = None;
                        // Actix owes nothing (checked above), so answers leave in request order;
                        // it answers the connection's first request (see `fastpath`).
                        let started = self.handed > 0;
                        if let Some(a) = candidate.filter(|_| started).and_then(|c| fast.answer(&c))
                        {
                            self.inbuf.advance(head_len);
                            self.out = Some(Transfer::new(a.head, a.body, 0, a.len));
                            continue;
                        }
                        self.handed += 1;
                        self.to_actix = (head_len as u64).saturating_add(body_len);
                        continue;
                    }
                    Parsed::Partial if self.inbuf.len() < MAX_HEAD => {
                        let since = *self.partial_since.get_or_insert_with(Instant::now);
                        // The first request's head is timed by actix-http (408).
                        if self.handed > 0 && since.elapsed() > HEAD_TIMEOUT {
                            self.cut = true;
                            continue;
                        }
                    }
                    Parsed::Partial | Parsed::Opaque => {
                        self.unframed = true;
                        continue;
                    }
                }
            }
            if self.eof {
                if self.inbuf.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                // An unfinished head before the end: actix sees it as it is.
                self.unframed = true;
                continue;
            }
            // Our answers leave before more is read (and a full socket stops reading): actix
            // flushes after reading too, but the stream does not count on it.
            ready!(self.drive(cx))?;
            if self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 2 {
                self.inbuf.reserve(READ_CHUNK);
            }
            // tokio takes a short read as "drained" and waits for the next readiness event
            // instead of asking the socket again (one `recvfrom` per request instead of two).
            if ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.tcp),
                cx,
                &mut self.inbuf
            ))? == 0
            {
                self.eof = true;
            }
        }
    }

    /// Writes what actix gives while requests are framed: one answer's head (marked by the app)
    /// at a time, then its counted body.
    fn write_framed(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.body_left > 0 {
            let n = usize::try_from(self.body_left).map_or(buf.len(), |left| buf.len().min(left));
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &buf[..n]))?;
            self.body_left -= n as u64;
            if self.body_left == 0 {
                self.answered += 1;
            }
            return Poll::Ready(Ok(n));
        }
        // An answer's head starts here; actix encodes heads whole and we take them whole.
        let Some(end) = FIND_HEAD_END.find(buf).map(|e| e + 4) else {
            self.unframed = true;
            return self.write_unframed(cx, buf);
        };
        match FIND_MARKER.find(&buf[..end]) {
            Some(at) => self.write_marked(cx, buf, at),
            // An interim answer (`100 Continue`) before the real one.
            None if buf.starts_with(b"HTTP/1.1 1") => {
                self.out = Some(Transfer::head(buf[..end].to_vec()));
                if let Poll::Ready(Err(e)) = self.drive(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(end))
            }
            // An answer the app did not mark (actix-http's own errors): framing is lost.
            None => {
                self.unframed = true;
                self.write_unframed(cx, buf)
            }
        }
    }

    /// Writes what actix gives, rewriting marked heads wherever they are.
    fn write_unframed(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match FIND_MARKER.find(buf) {
            None => Pin::new(&mut self.tcp).poll_write(cx, buf),
            Some(at) => self.write_marked(cx, buf, at),
        }
    }

    /// Takes `buf` up to the end of the head whose marker line starts at `at`, with the marker
    /// line replaced (by the job's Content-Length, or by nothing).
    fn write_marked(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: usize,
    ) -> Poll<io::Result<usize>> {
        let Some(m) = split_head(&buf[at..], PATTERN.as_slice()) else {
            return Poll::Ready(Err(io::Error::other(
                "a marked response head is incomplete",
            )));
        };
        let rest_of_head = &buf[at + m.line_end..at + m.consumed];
        let after = at + m.consumed;
        let Mark::Job(id) = m.mark else {
            return self.write_app_head(cx, buf, at, at + m.line_end, after, m.mark);
        };
        let Some(job) = self.conn.take(id) else {
            return Poll::Ready(Err(io::Error::other(format!(
                "no queued file for response {id}"
            ))));
        };
        // What comes before the marker line (the status line, the first headers, in unframed
        // mode maybe earlier answers) goes out corked with the rest of the head and the file.
        let mut head = Vec::with_capacity(at + rest_of_head.len() + 40);
        head.extend_from_slice(&buf[..at]);
        // Writing into a Vec cannot fail.
        let _ = write!(head, "\r\ncontent-length: {}", job.len);
        head.extend_from_slice(rest_of_head);
        self.answered += 1;
        self.out = Some(Transfer::new(head, job.body, job.offset, job.len));
        // Accepted: sent by `drive` here or on the next read/write/flush/shutdown.
        if let Poll::Ready(Err(e)) = self.drive(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(after))
    }

    /// An answer whose body actix writes: the head without its marker line and (while framed)
    /// the body bytes at hand leave in one `writev`, as actix would have written them.
    fn write_app_head(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        at: usize,
        line_end: usize,
        after: usize,
        mark: Mark,
    ) -> Poll<io::Result<usize>> {
        // `buf[at..line_end]` is the marker line, `buf[line_end..after]` the rest of the head.
        let rest_of_head = &buf[line_end..after];
        let counted = match mark {
            Mark::Body(n) if !self.unframed => Some(n),
            _ => None,
        };
        let available = buf.len() - after;
        let take = counted.map_or(0, |n| {
            usize::try_from(n).map_or(available, |n| n.min(available))
        });
        let prefix = &buf[..at];
        let slices = [
            io::IoSlice::new(prefix),
            io::IoSlice::new(rest_of_head),
            io::IoSlice::new(&buf[after..after + take]),
        ];
        let written = ready!(Pin::new(&mut self.tcp).poll_write_vectored(cx, &slices))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let head_len = prefix.len() + rest_of_head.len();
        if written < head_len {
            let mut rest = Vec::with_capacity(head_len - written);
            if written < prefix.len() {
                rest.extend_from_slice(&prefix[written..]);
                rest.extend_from_slice(rest_of_head);
            } else {
                rest.extend_from_slice(&rest_of_head[written - prefix.len()..]);
            }
            self.out = Some(Transfer::head(rest));
        }
        let body_sent = written.saturating_sub(head_len);
        match (mark, counted) {
            (Mark::Stream, _) => self.unframed = true,
            (_, Some(n)) => match n - body_sent as u64 {
                0 => self.answered += 1,
                left => self.body_left = left,
            },
            _ => {}
        }
        Poll::Ready(Ok(after + body_sent))
    }
}

impl Transfer {
    /// `head`, then `len` bytes of `body` from `offset`.
    fn new(head: Vec<u8>, body: Body, offset: u64, len: u64) -> Self {
        Self {
            head,
            head_sent: 0,
            corked: false,
            body,
            body_sent: 0,
            offset,
            end: offset.saturating_add(len),
        }
    }

    /// A head alone.
    fn head(head: Vec<u8>) -> Self {
        Self {
            head,
            head_sent: 0,
            corked: false,
            body: Body::None,
            body_sent: 0,
            offset: 0,
            end: 0,
        }
    }
}

/// Bytes read from the socket at a time (requests are small; bodies pass in pieces).
const READ_CHUNK: usize = 8 * 1024;

impl AsyncRead for ZcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.fast.clone() {
            Some(fast) => this.read_framed(&fast, cx, buf),
            None => Pin::new(&mut this.tcp).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ZcStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drive(cx))?;
        let written = if this.unframed || this.fast.is_none() {
            this.write_unframed(cx, buf)
        } else {
            this.write_framed(cx, buf)
        };
        // The answer that a waiting request waits for is written: read again.
        if this.held && (this.answered == this.handed || this.unframed) {
            this.held = false;
            cx.waker().wake_by_ref();
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drive(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Marks an answer of the app with what actix will write after its head, so the stream can tell
/// where it ends (see `fastpath`). File answers carry their job's marker already.
pub fn mark_framing<B: actix_web::body::MessageBody>(res: &mut actix_web::dev::ServiceResponse<B>) {
    use actix_web::body::BodySize;
    let req = res.request();
    if req.conn_data::<ZcConn>().is_none()
        || req.version() > actix_web::http::Version::HTTP_11
        || res.headers().contains_key(&MARKER_NAME)
    {
        return;
    }
    let len = if req.method() == actix_web::http::Method::HEAD {
        Some(0)
    } else {
        match res.response().body().size() {
            BodySize::None => Some(0),
            BodySize::Sized(n) => Some(n),
            BodySize::Stream => None,
        }
    };
    let value = match len {
        Some(n) => format!("{}-b{n}", TOKEN.as_str()),
        None => format!("{}-s", TOKEN.as_str()),
    };
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&value) {
        res.headers_mut().insert(MARKER_NAME, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern() -> Vec<u8> {
        PATTERN.clone()
    }

    #[test]
    fn a_marked_head_is_split_at_its_blank_line() {
        let p = pattern();
        let mut buf = p.clone();
        buf.extend_from_slice(b"17\r\ncache-control: x\r\n\r\nHTTP/1.1 200 OK\r\n");
        let m = split_head(&buf, &p).unwrap();
        assert_eq!(m.mark, Mark::Job(17));
        assert_eq!(
            &buf[m.line_end..m.consumed],
            b"\r\ncache-control: x\r\n\r\n"
        );
        assert_eq!(&buf[m.consumed..], b"HTTP/1.1 200 OK\r\n");
        // The marker as the last header.
        let mut last = p.clone();
        last.extend_from_slice(b"3\r\n\r\nrest");
        let m = split_head(&last, &p).unwrap();
        assert_eq!(
            (m.mark, &last[m.line_end..m.consumed]),
            (Mark::Job(3), &b"\r\n\r\n"[..])
        );
        assert_eq!(&last[m.consumed..], b"rest");
        // Answers whose bodies actix writes: a length, or a stream.
        for (tail, mark) in [
            (&b"b0\r\n\r\n"[..], Mark::Body(0)),
            (b"b1234\r\nx: y\r\n\r\n", Mark::Body(1234)),
            (b"s\r\n\r\n", Mark::Stream),
        ] {
            let mut buf = p.clone();
            buf.extend_from_slice(tail);
            assert_eq!(split_head(&buf, &p).map(|m| m.mark), Some(mark));
        }
        for bad in [&b"b\r\n\r\n"[..], b"s1\r\n\r\n", b"bx\r\n\r\n"] {
            let mut buf = p.clone();
            buf.extend_from_slice(bad);
            assert_eq!(
                split_head(&buf, &p),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn broken_markers_are_refused() {
        let p = pattern();
        for tail in [
            &b"\r\n\r\n"[..],
            b"12",
            b"12\r\nx: y\r\n",
            b"1x\r\n\r\n",
            b"99999999999999999999999\r\n\r\n",
        ] {
            let mut buf = p.clone();
            buf.extend_from_slice(tail);
            assert_eq!(
                split_head(&buf, &p),
                None,
                "{:?}",
                String::from_utf8_lossy(tail)
            );
        }
        assert_eq!(
            split_head(b"\r\nx-hlsmark-sendfile: 00-1\r\n\r\n", &p),
            None
        );
    }

    #[test]
    fn stale_jobs_are_dropped_in_order() {
        let c = ZcConn::default();
        let job = || Job {
            body: Body::None,
            offset: 0,
            len: 1,
        };
        let a = c.push(job());
        let b = c.push(job());
        let d = c.push(job());
        assert!(a.ends_with("-0") && b.ends_with("-1") && d.ends_with("-2"));
        assert!(c.take(1).is_some(), "job 0 is dropped on the way");
        assert!(c.take(0).is_none());
        assert!(c.take(2).is_some());
        assert!(c.is_empty());
    }
}
