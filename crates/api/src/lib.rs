//! The hlsmark HTTP API (actix-web): live and VOD playlists rendered from the store's segment
//! index, segment and init files, markers in every clock (query, create, delete, live SSE), the
//! timeline, health, metrics, the OpenAPI document and the player page.
//!
//! Stateless apart from caches: several servers can share one store and one segment directory.
//! [`Api::bind`] + [`Api::run_until`] (or [`serve`]) run it in-process, so `hlsmark run` can host
//! it next to the generator on the same `Arc<dyn Store>`.

mod body_deadline;
mod config;
mod error;
mod fastpath;
mod files;
mod metrics;
mod openapi;
mod routes;
mod server;
mod state;
mod zerocopy;

// Segment files leave with Linux's sendfile(2) (see `zerocopy`); other systems run the Docker image.
#[cfg(not(target_os = "linux"))]
compile_error!("hlsmark-api needs Linux (sendfile); on other systems use the Docker image");

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpMessage as _;
use actix_web::dev::Service as _;
use actix_web::middleware::{Condition, ErrorHandlers};
use actix_web::{App, web};
use futures_util::FutureExt as _;
use hlsmark_store::Store;

pub use config::{ApiConfig, ConfigError};
pub use error::{ApiError, error_body};
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
    use routes::{hls, markers, meta};
    cfg.service(res("/").route(get_or_head().to(meta::index)))
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
        .service(res("/timeline").route(get_or_head().to(meta::timeline)))
        .service(res("/debug/timeline").route(get_or_head().to(meta::debug_timeline)))
        .service(res("/healthz").route(get_or_head().to(meta::healthz)))
        .service(res("/readyz").route(get_or_head().to(meta::readyz)))
        .service(res("/metrics").route(get_or_head().to(meta::metrics)))
        .service(res("/openapi.json").route(get_or_head().to(meta::openapi)))
        .service(res("/assets/{file}").route(get_or_head().to(meta::asset)))
        .service(res("/{file}").route(get_or_head().to(meta::top_level_file)));
}

fn cors(cfg: &ApiConfig) -> actix_cors::Cors {
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
    store: Arc<dyn Store>,
}

impl Api {
    /// Validates the config and binds `cfg.listen`.
    pub fn bind(cfg: ApiConfig, store: Arc<dyn Store>) -> Result<Self, ServeError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.listen).map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
        Self::from_listener(listener, cfg, store)
    }

    /// Uses an already bound listener (tests bind port 0 and read the address).
    pub fn from_listener(
        listener: TcpListener,
        cfg: ApiConfig,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServeError> {
        cfg.validate()?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            cfg,
            store,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends SSE streams, lets in-flight
    /// requests finish (up to `shutdown_timeout`) and returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let cfg = self.cfg.clone();
        let state = web::Data::new(AppState::new(self.store, cfg.clone(), stop_rx));
        let metrics = state.metrics.clone();
        let body_limit = cfg.body_limit;
        let body_timeout = cfg.body_timeout;
        let use_cors = !cfg.cors_origins.is_empty();
        let app_state = state.clone();
        let app = move || {
            let m = app_state.metrics.clone();
            App::new()
                .app_data(app_state.clone())
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
                    let shutdown = app_state.shutdown.clone();
                    move |mut req, srv| {
                        let guard = body_deadline::arm(&mut req, body_timeout, &shutdown);
                        srv.call(req)
                            .map(move |res| res.map(|res| body_deadline::answer(res, guard)))
                    }
                })
                .wrap(Condition::new(use_cors, cors(&cfg)))
                .wrap(ErrorHandlers::new().default_handler(error::json_error_net))
                // Outermost: counts every answer, and marks where it ends for the connection's
                // fast path (`zerocopy::mark_framing`).
                .wrap_fn(move |req, srv| {
                    let start = Instant::now();
                    let m = m.clone();
                    srv.call(req).map(move |mut res| {
                        // An error that leaves the chain unanswered is answered by actix-http
                        // unmarked: that connection then stops taking the fast path.
                        if let Ok(res) = &mut res {
                            // Resources are named by their pattern (the /hls/ dispatcher sets
                            // its own): no allocation per request.
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
                            zerocopy::mark_framing(res);
                        }
                        res
                    })
                })
        };
        let fast = Arc::new(fastpath::FastPath::new(state.clone(), use_cors));
        let server = server::build(self.listener, self.addr, &self.cfg, metrics, fast, app)
            .map_err(ServeError::Server)?;
        let handle = server.handle();
        let mut server = tokio::spawn(server);
        tracing::info!(addr = %self.addr, "API listening");
        tokio::select! {
            r = &mut server => {
                return r.map_err(|e| ServeError::Server(std::io::Error::other(e)))?.map_err(ServeError::Server);
            }
            () = shutdown => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        handle.stop(true).await;
        server
            .await
            .map_err(|e| ServeError::Server(std::io::Error::other(e)))?
            .map_err(ServeError::Server)
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
