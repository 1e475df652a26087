//! Zero-copy file bodies under actix-http: segment bytes go from the page cache to the socket with
//! `sendfile(2)`, never through user space.
//!
//! actix-http copies every body chunk into its connection write buffer before writing it, which
//! for 350 KB segments costs more than the rest of the request together. So the server hands
//! actix-http a [`ZcStream`] (the TCP socket plus a per-connection queue of file jobs) instead of
//! the bare socket:
//!
//! 1. The segment handler opens the file, queues a [`Job`] (file, byte range) on the connection's
//!    [`ZcConn`] and answers with headers only: no body (`BodySize::None`), and one marker header
//!    `x-hlsmark-sendfile: <process token>-<job id>`.
//! 2. actix-http encodes that head into its write buffer and writes it to the `ZcStream`. While a
//!    job is queued, the stream looks for the marker line in what it is given, replaces it with
//!    `content-length: <n>`, and after the head's blank line sends the job's bytes with
//!    `sendfile` (head and body corked together with `TCP_CORK`), before anything that follows.
//!
//! Files of at most 64 KiB are kept in memory (`files::SMALL_FILE`) and leave with their head in
//! one `writev` instead: for them the cork, `sendfile` and uncork calls cost more than the copy.
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

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
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
    /// Bytes already in memory (small files), sent with the head in one `writev`.
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

/// A head taken apart by [`split_head`]: the marker's job id and the rewritten head bytes.
#[derive(Debug, PartialEq, Eq)]
struct Marked {
    /// Bytes of the input consumed: from the marker line's leading CRLF to the head's end.
    consumed: usize,
    id: u64,
    /// Everything after the marker line up to and including the blank line.
    rest_of_head: Vec<u8>,
}

/// With `buf` starting at a marker line (`\r\n<name>: <token>-<id>`), parses the id and finds the
/// end of the head. `None` when the bytes are not a whole marked head.
fn split_head(buf: &[u8], pattern: &[u8]) -> Option<Marked> {
    let after = buf.strip_prefix(pattern)?;
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    let id: u64 = std::str::from_utf8(&after[..digits]).ok()?.parse().ok()?;
    let line_end = pattern.len() + digits;
    if buf.get(line_end..line_end + 2)? != b"\r\n" {
        return None;
    }
    // The head ends at the first empty line: the marker line's CRLF may itself be followed by
    // "\r\n" (the marker was the last header).
    let end = FIND_HEAD_END.find(&buf[line_end..])? + line_end + 4;
    Some(Marked {
        consumed: end,
        id,
        rest_of_head: buf[line_end..end].to_vec(),
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

/// The socket actix-http writes to; see the module docs.
#[derive(Debug)]
pub struct ZcStream {
    tcp: TcpStream,
    conn: ZcConn,
    out: Option<Transfer>,
}

impl ZcStream {
    pub fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            conn: ZcConn::default(),
            out: None,
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

impl AsyncRead for ZcStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
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
        if this.conn.is_empty() {
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        let pattern = PATTERN.as_slice();
        match FIND_MARKER.find(buf) {
            None => Pin::new(&mut this.tcp).poll_write(cx, buf),
            Some(at) => {
                let Some(m) = split_head(&buf[at..], pattern) else {
                    return Poll::Ready(Err(io::Error::other(
                        "a marked response head is incomplete",
                    )));
                };
                let Some(job) = this.conn.take(m.id) else {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "no queued file for response {}",
                        m.id
                    ))));
                };
                // What comes before the marker line (the status line, the first headers, maybe
                // earlier answers) goes out corked with the rest of the head and the file.
                let mut head = Vec::with_capacity(at + m.rest_of_head.len() + 40);
                head.extend_from_slice(&buf[..at]);
                // Writing into a Vec cannot fail.
                let _ = write!(head, "\r\ncontent-length: {}", job.len);
                head.extend_from_slice(&m.rest_of_head);
                this.out = Some(Transfer {
                    head,
                    head_sent: 0,
                    corked: false,
                    offset: job.offset,
                    end: job.offset.saturating_add(job.len),
                    body: job.body,
                    body_sent: 0,
                });
                // Accepted: sent by `drive` here or on the next write/flush/shutdown.
                if let Poll::Ready(Err(e)) = this.drive(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(at + m.consumed))
            }
        }
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
        assert_eq!(m.id, 17);
        assert_eq!(m.rest_of_head, b"\r\ncache-control: x\r\n\r\n");
        assert_eq!(&buf[m.consumed..], b"HTTP/1.1 200 OK\r\n");
        // The marker as the last header.
        let mut last = p.clone();
        last.extend_from_slice(b"3\r\n\r\nrest");
        let m = split_head(&last, &p).unwrap();
        assert_eq!((m.id, m.rest_of_head.as_slice()), (3, &b"\r\n\r\n"[..]));
        assert_eq!(&last[m.consumed..], b"rest");
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
