//! The HTTP server: actix-server workers running actix-http's HTTP/1.1 service with the actix-web
//! app, the way actix-web's `HttpServer` assembles them, but over the socket
//! wrapped in a [`ZcStream`], so segment files can leave with
//! `sendfile` instead of being copied through actix-http's write buffer.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_server::Server;
use actix_service::{
    IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _, fn_service, map_config,
};
use actix_web::dev::AppConfig;
use tokio::net::TcpStream;

use crate::ApiConfig;
use crate::fastpath::FastPath;
use crate::metrics::{ConnectionGuard, Metrics};
use crate::zerocopy::ZcStream;

/// Blocking-pool threads of each HTTP worker (the embedded store's calls and file reads).
const BLOCKING_THREADS_PER_WORKER: usize = 4;
/// Idle time after which a kept-alive connection is closed. Players ask for the playlist and a
/// segment every segment duration; nginx keeps connections 75 s.
const KEEP_ALIVE: Duration = Duration::from_secs(75);
/// Time a client has to send a request head (actix-web's default).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a closing connection gets to finish (actix-web's default; it also bounds how long a
/// connection that answered an unread request body lingers). A file answer still on its way when
/// the connection closes gets this long too: with the keep-alive above, that is a file taking more
/// than 75 s to send.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

type Io = ZcStream;

/// A bound, not yet started server: `app` builds the actix-web app of each worker.
pub fn build<F, I, S, B>(
    listener: TcpListener,
    addr: SocketAddr,
    cfg: &ApiConfig,
    metrics: Arc<Metrics>,
    fast: Arc<FastPath>,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    B: MessageBody + 'static,
{
    let builder = Server::build()
        .workers(cfg.workers)
        .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
        .shutdown_timeout(cfg.shutdown_timeout.as_secs().max(1))
        .disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder.listen("hlsmark-http", listener, move || {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let fast = fast.clone();
        let app = app().into_factory().map_err(|e| e.into().error_response());
        let http = HttpService::<Io, _, _>::build()
            // Idle keep-alive connections close when a graceful stop starts.
            .graceful_shutdown_signal(move || {
                let s = shutdown.clone();
                async move { s.notified().await }
            })
            .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
            .client_request_timeout(REQUEST_HEAD_TIMEOUT)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .local_addr(addr)
            .on_connect_ext(move |io: &Io, ext| {
                metrics
                    .open_connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ext.insert(Arc::new(ConnectionGuard(metrics.clone())));
                ext.insert(io.conn());
            })
            .h1(map_config(app, move |()| AppConfig::default()));
        fn_service(move |tcp: TcpStream| {
            let fast = fast.clone();
            async move {
                // Responses go out as soon as they are written (no Nagle delay on the last piece).
                let _ = tcp.set_nodelay(true);
                let peer = tcp.peer_addr().ok();
                Ok((ZcStream::new(tcp, Some(fast)), peer))
            }
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}
