//! The hlsmark HTTP API (actix-web): live and VOD playlists rendered from the store's segment
//! index, segment and init files, markers in every clock (query, create, delete, live SSE), the
//! timeline, health, metrics, the OpenAPI document and the player page.
//!
//! Stateless apart from caches: several servers can share one store and one segment directory.
//! [`Api::bind`] + [`Api::run_until`] (or [`serve`]) run it in-process, so `hlsmark run` can host
//! it next to the generator on the same `Arc<dyn Store>`.

mod auth;
mod body_deadline;
mod config;
mod error;
mod files;
mod limits;
mod metrics;
mod openapi;
mod page;
mod readiness;
mod routes;
mod server;
mod services;
mod sse;
mod state;
mod views;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::web;
use hlsmark_store::Store;

pub use config::{ApiConfig, ConfigError, TlsFiles};
pub use error::{ApiError, error_body};
pub use readiness::{DirWriteProbe, ProbeFuture, WriteProbe};
pub use server::{FdLimit, TlsError, connection_budget, fd_limit, raise_fd_limit};
pub use services::webhooks::marker_json as webhook_marker_json;
pub use state::AppState;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot listen on {addr} (is something else using that port? choose another with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("HTTP server failed")]
    Server(#[source] std::io::Error),
}

/// Every route pattern the API answers, in registration order. [`res`] refuses any other pattern
/// (in debug builds), and a test checks that the OpenAPI document describes exactly these, so a
/// new route cannot go undocumented. The three `/hls/` patterns are told apart by
/// `routes::hls::dispatch` (no regex per request: they are the hottest paths).
pub const ROUTES: &[&str] = &[
    "/",
    "/hls/{stream}/index.m3u8",
    "/hls/{stream}/vod.m3u8",
    "/hls/{stream}/{file}",
    "/markers",
    "/markers/live",
    "/markers/{id}",
    "/markers/{id}/thumbnail.jpg",
    "/markers/{id}/clip.mp4",
    "/clips/{stream}.mp4",
    "/preview/{stream}.gif",
    "/preview/{stream}.mjpeg",
    "/thumbnail/{stream}.jpg",
    "/thumbs/{stream}.vtt",
    "/thumbs/{stream}/{seq}.jpg",
    "/streams",
    "/timeline",
    "/debug/timeline",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/assets/{file}",
    "/{file}",
];

/// The route pattern of a request answered by a dispatcher instead of its own resource (the
/// metrics label).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteLabel(pub &'static str);

/// A resource named by its own pattern (the route label of the metrics).
fn res(path: &'static str) -> actix_web::Resource {
    debug_assert!(ROUTES.contains(&path), "{path} is missing from ROUTES");
    web::resource(path).name(path)
}

/// GET, and HEAD with the same handler: actix-http sends HEAD answers with the headers of the
/// GET answer and no body.
fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// Registers every route (used by the server and usable with `actix_web::test`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    use routes::{clips, hls, markers, meta, preview, streams};
    cfg.service(res("/").route(get_or_head().to(page::index)))
        // "/hls/{stream}/index.m3u8", "/hls/{stream}/vod.m3u8", "/hls/{stream}/{file}": one
        // static prefix and a split instead of three regex captures per request (a segment
        // request used to try all three, and every other request the first two).
        .service(web::scope("/hls").default_service(web::to(hls::dispatch)))
        .service(
            res("/markers")
                .route(get_or_head().to(markers::list))
                .route(web::post().to(markers::create)),
        )
        .service(res("/markers/live").route(get_or_head().to(markers::live)))
        .service(
            res("/markers/{id}")
                .route(get_or_head().to(markers::get))
                .route(web::delete().to(markers::delete)),
        )
        .service(
            res("/markers/{id}/thumbnail.jpg").route(get_or_head().to(preview::marker_thumbnail)),
        )
        .service(res("/markers/{id}/clip.mp4").route(get_or_head().to(clips::marker_clip)))
        .service(res("/clips/{stream}.mp4").route(get_or_head().to(clips::range_clip)))
        .service(res("/preview/{stream}.gif").route(get_or_head().to(preview::gif)))
        .service(res("/preview/{stream}.mjpeg").route(get_or_head().to(preview::mjpeg)))
        .service(res("/thumbnail/{stream}.jpg").route(get_or_head().to(preview::thumbnail)))
        .service(res("/thumbs/{stream}.vtt").route(get_or_head().to(preview::thumbs_track)))
        .service(res("/thumbs/{stream}/{seq}.jpg").route(get_or_head().to(preview::thumbs_tile)))
        .service(res("/streams").route(get_or_head().to(streams::list)))
        .service(res("/timeline").route(get_or_head().to(meta::timeline)))
        .service(res("/debug/timeline").route(get_or_head().to(meta::debug_timeline)))
        .service(res("/healthz").route(get_or_head().to(meta::healthz)))
        .service(res("/readyz").route(get_or_head().to(meta::readyz)))
        .service(res("/metrics").route(get_or_head().to(meta::metrics)))
        .service(res("/openapi.json").route(get_or_head().to(meta::openapi)))
        .service(res("/assets/{file}").route(get_or_head().to(page::asset)))
        .service(res("/{file}").route(get_or_head().to(page::top_level_file)));
}

pub(crate) fn cors(cfg: &ApiConfig) -> actix_cors::Cors {
    let allowed: Arc<Vec<String>> = Arc::new(cfg.cors_origins.clone());
    actix_cors::Cors::default()
        .allowed_origin_fn(move |origin, head| {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            // The page's own origin is always allowed (browsers send Origin on same-origin POST).
            let same = head
                .headers
                .get(actix_web::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| {
                    origin
                        .strip_prefix("http://")
                        .or_else(|| origin.strip_prefix("https://"))
                        == Some(host)
                });
            same || allowed.iter().any(|a| a == origin)
        })
        .allowed_methods(["GET", "HEAD", "POST", "DELETE", "OPTIONS"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::ACCEPT,
        ])
        .max_age(600)
}

/// A bound, not yet running API server.
#[derive(Debug)]
pub struct Api {
    listener: TcpListener,
    addr: SocketAddr,
    cfg: ApiConfig,
    tls: Option<rustls::ServerConfig>,
    store: Arc<dyn Store>,
}

impl Api {
    /// Validates the config, reads the TLS files and binds `cfg.listen`.
    pub fn bind(cfg: ApiConfig, store: Arc<dyn Store>) -> Result<Self, ServeError> {
        cfg.validate()?;
        // Before binding: a bad certificate is reported as such, not as a busy port.
        let tls = cfg.tls.as_ref().map(server::tls_config).transpose()?;
        let listener = TcpListener::bind(cfg.listen).map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
        Self::assemble(listener, cfg, tls, store)
    }

    /// Uses an already bound listener (tests bind port 0 and read the address).
    pub fn from_listener(
        listener: TcpListener,
        cfg: ApiConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServeError> {
        cfg.validate()?;
        let tls = cfg.tls.as_ref().map(server::tls_config).transpose()?;
        Self::assemble(listener, cfg, tls, store)
    }

    fn assemble(
        listener: TcpListener,
        cfg: ApiConfig,
        tls: Option<rustls::ServerConfig>,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            cfg,
            tls,
            store,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends SSE streams, lets in-flight
    /// requests finish (up to `shutdown_timeout`) and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let scheme = self.scheme();
        // Copies of remote media for ffmpeg: a crashed run's are removed now, ours at the end.
        if self.cfg.media.is_some() {
            files::sweep_spools();
        }
        let spooled = self.cfg.media.is_some();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let state = web::Data::new(AppState::new(self.store, self.cfg.clone(), stop_rx));
        let server =
            server::build(self.listener, &self.cfg, self.tls, state).map_err(ServeError::Server)?;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        tracing::info!(addr = %self.addr, scheme, "API listening");
        tokio::select! {
            r = &mut server => {
                return r.map_err(|e| ServeError::Server(std::io::Error::other(e)))?.map_err(ServeError::Server);
            }
            () = shutdown => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        handle.stop(true).await;
        let r = server
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))?
            .map_err(ServeError::Server);
        if spooled {
            files::remove_own_spool();
        }
        r
    }
}

/// Binds and serves until `shutdown` resolves.
pub async fn serve(
    cfg: ApiConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    Api::bind(cfg, store)?.run_until(shutdown).await
}
