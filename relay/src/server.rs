//! The HTTP side: one port serves the WebSocket protocol (`/ws`, one
//! [`Handler`] per socket), the web client's static files (with a strict
//! Content-Security-Policy) and `GET /health`. Caps TCP connections and
//! times out silent peers ([`crate::limits::socket`]), caps WebSockets with
//! a semaphore (excess gets HTTP 503), sweeps expired data periodically, and
//! shuts down gracefully: stop accepting, tell every handler (a `watch`
//! channel), let each finish its current command, wait for the writer to
//! commit everything queued, close the store.
//!
//! No remote address is ever extracted, so none can be logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::command::{self, Relay};
use crate::compress;
use crate::config::Config;
use crate::connection;
use crate::handler::Handler;
use crate::limits::socket::GuardedListener;
use crate::metrics::{self, METRICS, Metrics};
use crate::notify::Notifier;
use crate::store::Store;

/// The Content-Security-Policy of every response: only our own scripts,
/// styles, images and WebSocket; wasm may be compiled; no framing, no
/// forms to elsewhere, no base-URI tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";

#[derive(Clone)]
struct AppState {
    relay: Arc<Relay>,
    /// Connection cap; a connection holds one permit for its lifetime.
    permits: Arc<Semaphore>,
    /// Flips to `true` on shutdown.
    stop: watch::Receiver<bool>,
}

async fn ws_handler(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if *state.stop.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        tracing::debug!("connection refused: at capacity");
        Metrics::add(&METRICS.connections_refused, 1);
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    };
    let relay = state.relay.clone();
    let stop = state.stop.clone();
    connection::limits(ws, relay.config.max_frame_bytes).on_upgrade(move |socket| async move {
        let counted = METRICS.connection();
        Handler::new(relay, socket, stop).run().await;
        drop(counted);
        drop(permit);
    })
}

async fn health() -> &'static str {
    "ok"
}

/// The counselor inbox's own files: it runs only from the binary a
/// counselor installed (`northstar counselor web`), never from a relay, so
/// the relay answers 404 even when its web root holds them.
pub const NOT_SERVED: &[&str] = &["/counselor.html", "/counselor.js"];

/// The CSP to send: the one in the signed release at the web root
/// (`.well-known/northstar/release`, whose connect-src names the relay URLs
/// the organisation signed), else [`CONTENT_SECURITY_POLICY`]. Read on every
/// response, so a new release takes effect without a restart. The release's
/// signature is not this server's to check (`northstar web verify` and the
/// page do); a release whose CSP breaks the rules is ignored, with a warning.
pub async fn served_csp(web_root: &std::path::Path) -> HeaderValue {
    let path = web_root.join(&northstar_core::webrelease::RELEASE_PATH[1..]);
    let Ok(text) = tokio::fs::read_to_string(&path).await else {
        return HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    };
    match northstar_core::webrelease::parse_unverified(&text)
        .map_err(|e| e.to_string())
        .and_then(|(r, _, _)| HeaderValue::from_str(&r.csp).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "the web root's release is unreadable: sending the default CSP");
            HeaderValue::from_static(CONTENT_SECURITY_POLICY)
        }
    }
}

async fn not_served() -> StatusCode {
    StatusCode::NOT_FOUND
}

async fn set_csp(State(web_root): State<Arc<std::path::PathBuf>>, mut resp: Response) -> Response {
    let csp = served_csp(&web_root).await;
    resp.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, csp);
    resp
}

fn router(state: AppState) -> Router {
    let web_root = state.relay.config.web_root.clone();
    let csp_root = Arc::new(web_root.clone());
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let mut router = Router::new();
    for p in NOT_SERVED {
        router = router.route(p, get(not_served));
    }
    router
        .route(WS_PATH, get(ws_handler))
        .route("/health", get(health))
        // Every file brotli- or gzip-compressed once, from memory
        // (crate::compress; docs/BENCHMARKS.md).
        .fallback_service(
            Router::new()
                .fallback_service(ServeDir::new(web_root))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(compress::Cache::default()),
                    compress::middleware,
                )),
        )
        .layer(axum::middleware::map_response_with_state(csp_root, set_csp))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::CACHE_CONTROL, "no-store"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .with_state(state)
}

async fn sweep_loop(relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(relay.config.sweep_interval_secs));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                match relay.store.sweep(command::now()).await {
                    Ok(c) if c.envelopes + c.states + c.blobs > 0 => {
                        tracing::info!(envelopes = c.envelopes, states = c.states, blobs = c.blobs, "swept expired data");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        }
    }
}

/// Serves until `shutdown` resolves, then drains and closes the store.
pub async fn run(
    listener: TcpListener,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_metrics(listener, None, config, store, shutdown).await
}

/// [`run`], and with `metrics` the operators' listener ([`metrics::serve`]:
/// `/metrics`, `/livez`, `/readyz`) beside it, stopped with it.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    config: Config,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = config.max_connections;
    let listener = GuardedListener::new(
        listener,
        config.tcp_connection_cap(),
        Duration::from_secs(config.idle_timeout_secs),
    );
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let acks = crate::acks::AckQueue::start(
        store.clone(),
        Duration::from_millis(config.ack_flush_ms),
        config.ack_flush_ids,
    );
    let relay = Arc::new(Relay {
        config,
        store,
        notifier: Notifier::default(),
        acks,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(max));
    let state = AppState {
        relay: relay.clone(),
        permits: permits.clone(),
        stop: stop_rx.clone(),
    };
    let metrics_server =
        metrics.map(|l| tokio::spawn(metrics::serve(l, relay.clone(), stop_rx.clone())));
    let sweeper = tokio::spawn(sweep_loop(relay.clone(), stop_rx));
    // Other nodes' deposits (a shared PostgreSQL store) wake our subscribers.
    let forwarder = relay.store.take_wakeups().map(|wakeups| {
        let relay = relay.clone();
        tokio::spawn(async move { relay.notifier.forward(wakeups).await })
    });
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing open connections");
            let _ = stop_tx.send(true);
        })
        .await;
    // Every connection holds a permit until its last command is answered.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with connections still open");
    }
    sweeper.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    if let Some(f) = forwarder {
        f.abort();
    }
    // Deletes what connections acknowledged, then commits everything
    // queued before returning.
    relay.acks.close().await;
    if let Err(e) = relay.store.close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    tracing::info!("stopped");
    served
}
