//! # northstar-relay
//!
//! The Northstar relay stores and forwards sealed ciphertext. It is assumed
//! hostile by design: it learns recipient mailbox ids, padded sizes and
//! hour-rounded expiries, and nothing else — it never sees plaintext, the
//! sender, or (in its database and logs) any network address or fine
//! timestamp. See docs/RELAY.md for operators and docs/PROTOCOL.md §4
//! for the byte-exact protocol (frames are in `northstar_core::frame`).
//!
//! ## Modules
//! - [`config`] — flags, `NORTHSTAR_*` environment and TOML file; every limit.
//! - [`server`] — the axum router on one port (`/ws`, static files, `/health`),
//!   connection cap, sweeper, graceful shutdown.
//! - [`handler`] — one connection's loop: read, decode, [`command::execute`],
//!   pings and idle timeout, rate limit, live deliveries, shutdown.
//! - [`connection`] — one WebSocket as bytes: messages in, frames out, size
//!   caps and send timeout.
//! - [`frame`] — bytes to and from frames (client-core's codec).
//! - [`command`] — one file per command: check, apply, reply; deposit
//!   pipelining and the delivery window live with their commands.
//! - [`store`] — the storage trait; [`store::sqlite`] (default) and
//!   [`store::memory`] (tests).
//! - [`notify`] — wakes subscribers after a deposit commits.
//! - [`limits`] — the per-connection token bucket.
//! - [`metrics`] — operator counters (Prometheus text), `/livez`, `/readyz`,
//!   on their own listen address; nothing identifying.
//!
//! ## Example
//!
//! Serve on a free loopback port with the in-memory store until the
//! shutdown future resolves (here at once), then drain and stop:
//!
//! ```
//! use std::sync::Arc;
//! use northstar_relay::{config::Config, server, store::memory::MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::defaults()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let store = Arc::new(MemoryStore::new());
//! server::run(listener, config, store, async {}).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod acks;
pub mod command;
pub mod compress;
pub mod config;
pub mod connection;
pub mod frame;
pub mod handler;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod store;

/// Installs the tracing subscriber: `RUST_LOG` (default `info`), text or
/// JSON, with ANSI colours only when standard error is a terminal. HTTP internals are held to `warn` so no request line is logged,
/// and the PostgreSQL client too (at `debug` it logs statement parameters,
/// which carry mailbox ids).
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("hyper=warn".parse().unwrap_or_default())
        .add_directive("tower_http=warn".parse().unwrap_or_default())
        .add_directive("axum=warn".parse().unwrap_or_default())
        .add_directive("tungstenite=warn".parse().unwrap_or_default())
        .add_directive("tokio_postgres=warn".parse().unwrap_or_default())
        .add_directive("postgres_protocol=warn".parse().unwrap_or_default())
        .add_directive("deadpool=warn".parse().unwrap_or_default())
        .add_directive("deadpool_postgres=warn".parse().unwrap_or_default());
    // Colour codes only on a terminal: in a journal, a file or a pipe they
    // are noise (and `NO_COLOR` turns them off everywhere).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
