//! The HTTP server: the actix-web app (routes, middleware) under actix-web's own `HttpServer`, as
//! documented, with nothing of ours between the socket and actix-http. Plain TCP speaks
//! HTTP/1.1 and HTTP/2 with prior knowledge (h2c, told apart by the connection preface); TLS
//! (rustls with the `ring` provider) offers `h2` and `http/1.1` by ALPN.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody, SizedStream};
use actix_web::dev::{Server, Service as _};
use actix_web::middleware::{Condition, ErrorHandlers};
use actix_web::{App, HttpServer, web};
use futures_util::FutureExt as _;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ApiConfig, TlsFiles};
use crate::error::{self, ApiError};
use crate::metrics::ConnectionGuard;
use crate::state::AppState;
use crate::{RouteLabel, body_deadline, configure, cors, routes};

/// Blocking-pool threads of each HTTP worker (the embedded store's calls and file reads).
const BLOCKING_THREADS_PER_WORKER: usize = 4;
/// Idle time after which a kept-alive connection is closed. Players ask for the playlist and a
/// segment every segment duration; nginx keeps connections 75 s.
const KEEP_ALIVE: Duration = Duration::from_secs(75);
/// Time a client has to send a request head (actix-web's default).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a closing connection gets to finish (actix-web's default; it also bounds how long a
/// connection that answered an unread request body lingers).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes an HTTP/1 connection's write buffer holds before it is flushed, and the size of the
/// pieces an answer from memory is handed to it in. actix-http copies each body chunk whole into
/// the connection's buffer and keeps that allocation for the connection's life unless it passed
/// 128 KiB: a 100 KB LL-HLS part handed over as one chunk left ~100 KB behind on every viewer's
/// connection (RSS 190-210 MB at 1,000 LL viewers). In 32 KiB pieces (actix's default buffer
/// size) the buffer stays under 64 KiB (RSS 105 MB), and a 4 MB segment no longer needs 4 MB per
/// connection while it is sent. 16 KiB gave 90 MB but cost ~15-35 % more CPU (more writes);
/// design/llhls.md, "Measured".
const WRITE_PIECE: usize = 32 << 10;

/// File descriptors kept out of the connection budget: the media cache's open files (up to 128),
/// the store, ffmpeg pipes of `hlsmark run`, the listener, epoll and log files.
const FD_RESERVE: u64 = 256;
/// Fewest connections allowed per worker, however low the descriptor limit.
const MIN_CONNECTIONS_PER_WORKER: usize = 16;

/// The process's open-file limit before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft limit of open files to the hard limit (capped by the kernel's `nr_open`), so
/// a server on a distribution's default of 1,024 is not cut off at 1,000 clients. Whether it
/// could or not, the limit it runs with is returned (and `Api` sizes its connection budget by it).
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = hard.min(nr_open);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(std::io::Error::from)?;
    }
    let (now, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    Ok(FdLimit {
        before: soft,
        now,
        hard,
    })
}

/// The open-file soft limit now (`u64::MAX` when it cannot be read).
pub fn fd_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(u64::MAX, |(soft, _)| soft)
}

/// How many connections the server takes at once, from the descriptor limit: all but
/// [`FD_RESERVE`] descriptors, so a flood of connections leaves room for files, the store and
/// new requests (beyond it, connections wait in the listen queue instead of failing `accept`).
pub fn connection_budget(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX)
}

/// Why the TLS certificate or key cannot be used (one line each, naming the file).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the TLS {what} {path} is not valid PEM")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("the TLS certificate file {0} holds no certificate (expected PEM `BEGIN CERTIFICATE`)")]
    NoCertificate(PathBuf),
    #[error("the TLS key file {0} holds no private key (expected PEM `BEGIN PRIVATE KEY`)")]
    NoKey(PathBuf),
    #[error("the TLS key {key} does not fit the certificate {cert}")]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The rustls server configuration of a certificate chain and key (read now, so a bad file stops
/// the start). ALPN protocols are added by actix-web (`h2`, `http/1.1`).
pub fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |what, path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Pem { what, path, source }
    };
    let cert_pem = read("certificate file", &files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error("certificate file", &files.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key_pem = read("key file", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(files.key.clone()),
        e => pem_error("key file", &files.key)(e),
    })?;
    let rejected = |source| TlsError::Rejected {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        // Checks that the key is the certificate's (rustls compares the public keys).
        .with_single_cert(certs, key)
        .map_err(rejected)
}

/// A body held in memory (a cached segment or part, a playlist) as [`WRITE_PIECE`]-byte slices of
/// the same `Bytes` (no copy here), so the connection's write buffer is filled a piece at a time;
/// streamed bodies (big files, SSE) pass as they are.
fn in_pieces<B: MessageBody + 'static>(body: B) -> BoxBody {
    match body.try_into_bytes() {
        Ok(bytes) if bytes.len() > WRITE_PIECE => {
            let len = bytes.len();
            let pieces = (0..len).step_by(WRITE_PIECE).map(move |at| {
                Ok::<_, std::convert::Infallible>(bytes.slice(at..len.min(at + WRITE_PIECE)))
            });
            BoxBody::new(SizedStream::new(
                len as u64,
                futures_util::stream::iter(pieces),
            ))
        }
        Ok(bytes) => BoxBody::new(bytes),
        Err(body) => body.boxed(),
    }
}

/// A bound, not yet started server over `state`.
pub fn build(
    listener: TcpListener,
    cfg: &ApiConfig,
    tls: Option<rustls::ServerConfig>,
    state: web::Data<AppState>,
) -> std::io::Result<Server> {
    let metrics = state.metrics.clone();
    let budget = connection_budget(fd_limit());
    let per_worker = (budget / cfg.workers.max(1)).max(MIN_CONNECTIONS_PER_WORKER);
    // SSE feeds may take at most half of the connections: requests keep the other half.
    let sse_total = match cfg.sse_max_clients {
        0 => budget / 2,
        n => n.min(budget / 2),
    };
    if cfg.sse_max_clients == 0 || sse_total < cfg.sse_max_clients {
        tracing::info!(
            sse_max_clients = sse_total,
            connections = budget,
            "SSE feeds limited to half of the connections the open-file limit allows"
        );
    }
    let limits = web::Data::new(crate::limits::Limits {
        sse: crate::limits::ConnLimiter::new(
            "SSE",
            "--sse-max-per-ip, --sse-max-clients",
            cfg.sse_max_per_ip,
            sse_total,
        ),
        preview: crate::limits::ConnLimiter::new(
            "preview",
            "--sse-max-per-ip, --sse-max-clients (previews count apart from feeds)",
            cfg.sse_max_per_ip,
            sse_total,
        ),
    });
    let readiness = web::Data::new(crate::readiness::Readiness::default());
    let body_limit = cfg.body_limit;
    let body_timeout = cfg.body_timeout;
    let use_cors = !cfg.cors_origins.is_empty();
    let app_cfg = cfg.clone();
    let app =
        move || {
            let m = state.metrics.clone();
            App::new()
                .app_data(state.clone())
                .app_data(limits.clone())
                .app_data(readiness.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::bad_request("invalid_query", e.to_string()).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|e, _| {
                    ApiError::bad_request("invalid_path", e.to_string()).into()
                }))
                .configure(configure)
                .default_service(web::to(routes::meta::not_found))
                // Innermost, so the 408/503 it makes still gets CORS headers and is counted.
                .wrap_fn({
                    let shutdown = state.shutdown.clone();
                    move |mut req, srv| {
                        let guard = body_deadline::arm(&mut req, body_timeout, &shutdown);
                        srv.call(req)
                            .map(move |res| res.map(|res| body_deadline::answer(res, guard)))
                    }
                })
                .wrap(Condition::new(use_cors, cors(&app_cfg)))
                .wrap(ErrorHandlers::new().default_handler(error::json_error_net))
                // Outermost: counts every answer.
                .wrap_fn(move |req, srv| {
                    let start = Instant::now();
                    let m = m.clone();
                    srv.call(req).map(move |res| {
                        if let Ok(res) = &res {
                            // Resources are named by their pattern (the /hls/ dispatcher sets its
                            // own): no allocation per request.
                            let label = res.request().extensions().get::<RouteLabel>().map(|l| l.0);
                            let route = label
                                .or_else(|| res.request().match_name())
                                .unwrap_or("unmatched");
                            m.observe(
                                route,
                                res.request().method(),
                                res.status().as_u16(),
                                start.elapsed(),
                            );
                        }
                        res
                    })
                })
                // Outside everything: the final body, in pieces (see `WRITE_PIECE`).
                .wrap_fn(|req, srv| {
                    srv.call(req)
                        .map(|res| res.map(|res| res.map_body(|_, body| in_pieces(body))))
                })
        };
    let server = HttpServer::new(app)
        .workers(cfg.workers)
        .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .tls_handshake_timeout(TLS_HANDSHAKE_TIMEOUT)
        // A client that closes its side is gone: end the connection (and drop a streaming answer
        // such as an SSE feed) at once instead of at its next write. HTTP clients do not
        // half-close (RFC 9112 9.6), and a keep-alive comment every 15 s was too late: a client
        // opening and closing feeds exhausted the descriptors first.
        .h1_allow_half_closed(false)
        // Beyond the descriptor budget, connections wait in the listen queue (no EMFILE).
        .max_connections(per_worker)
        // Answers go out as soon as they are written (no Nagle delay on the last piece).
        .tcp_nodelay(true)
        .h1_write_buffer_size(WRITE_PIECE)
        .shutdown_timeout(cfg.shutdown_timeout.as_secs().max(1))
        .disable_signals()
        .on_connect(move |_, ext| {
            metrics.open_connections.fetch_add(1, Ordering::Relaxed);
            ext.insert(Arc::new(ConnectionGuard(metrics.clone())));
        });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen_auto_h2c(listener)?,
    };
    Ok(server.run())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use actix_web::body::BodySize;
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn memory_bodies_go_to_the_connection_in_pieces() {
        let len = 2 * WRITE_PIECE + 1000;
        let mut body = in_pieces(BoxBody::new(Bytes::from(vec![7u8; len])));
        assert_eq!(
            body.size(),
            BodySize::Sized(len as u64),
            "Content-Length kept"
        );
        let mut pieces = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
            pieces.push(piece.unwrap());
        }
        let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lens, [WRITE_PIECE, WRITE_PIECE, 1000]);
        assert!(pieces.iter().flat_map(|p| p.iter()).all(|b| *b == 7));
        let small = in_pieces(BoxBody::new(Bytes::from_static(b"#EXTM3U\n")));
        assert_eq!(
            small.try_into_bytes().ok(),
            Some(Bytes::from_static(b"#EXTM3U\n"))
        );
    }
}
