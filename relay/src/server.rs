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
use crate::config::Config;
use crate::connection;
use crate::handler::Handler;
use crate::limits::socket::GuardedListener;
use crate::notify::Notifier;
use crate::store::Store;

/// The Content-Security-Policy of every response: only our own scripts,
/// styles, images and WebSocket; wasm may be compiled; no framing, no
/// forms to elsewhere, no base-URI tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

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
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    };
    let relay = state.relay.clone();
    let stop = state.stop.clone();
    connection::limits(ws, relay.config.max_frame_bytes).on_upgrade(move |socket| async move {
        Handler::new(relay, socket, stop).run().await;
        drop(permit);
    })
}

async fn health() -> &'static str {
    "ok"
}

fn router(state: AppState) -> Router {
    let web_root = state.relay.config.web_root.clone();
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    Router::new()
        .route(WS_PATH, get(ws_handler))
        .route("/health", get(health))
        // `file.gz` beside a file is sent instead to a browser that accepts
        // gzip: build_web writes one for the wasm module, most of the
        // seeker page's transfer (docs/BENCHMARKS.md).
        .fallback_service(ServeDir::new(web_root).precompressed_gzip())
        .layer(set(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
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
                    Ok(c) if c.envelopes + c.states > 0 => {
                        tracing::info!(envelopes = c.envelopes, states = c.states, "swept expired data");
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
    let max = config.max_connections;
    let listener = GuardedListener::new(
        listener,
        config.tcp_connection_cap(),
        Duration::from_secs(config.idle_timeout_secs),
    );
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let relay = Arc::new(Relay {
        config,
        store,
        notifier: Notifier::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(max));
    let state = AppState {
        relay: relay.clone(),
        permits: permits.clone(),
        stop: stop_rx.clone(),
    };
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
    if let Some(f) = forwarder {
        f.abort();
    }
    // Commits everything queued before returning.
    if let Err(e) = relay.store.close().await {
        tracing::error!(error = %e, "closing the store failed");
    }
    tracing::info!("stopped");
    served
}
