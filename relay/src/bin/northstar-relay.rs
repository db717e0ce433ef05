//! `northstar-relay`: parse the configuration, open the store, serve.
//! Everything else is in the library (see `northstar_relay`).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use northstar_relay::config::{Args, Config, Database};
use northstar_relay::store::Store;
use northstar_relay::store::memory::MemoryStore;
use northstar_relay::store::postgres::{PostgresOptions, PostgresStore};
use northstar_relay::store::sqlite::{SqliteOptions, SqliteStore};

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Makes the data directory readable by the relay's user only.
#[cfg(unix)]
fn private(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .context("restricting the data directory to its owner")
}

#[cfg(not(unix))]
fn private(_dir: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    northstar_relay::command::check_test_clock().map_err(anyhow::Error::msg)?;
    let config = Config::load(Args::parse()).context("configuration")?;
    northstar_relay::init_logging(config.log_json);
    let store: Arc<dyn Store> = match &config.database {
        Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).context("creating the data directory")?;
                private(dir)?;
            }
            let options = SqliteOptions {
                write_batch: config.write_batch,
                max_database_bytes: config.max_database_bytes,
                erase_within: std::time::Duration::from_secs(config.erase_within_secs),
                page_bytes: config.sqlite_page_bytes,
            };
            Arc::new(SqliteStore::open(path, options).context("opening the database")?)
        }
        Database::Postgres(url) => {
            let options = PostgresOptions {
                pool_size: config.postgres_pool_size,
                write_batch: config.write_batch,
            };
            Arc::new(
                PostgresStore::open(url.expose(), options)
                    .await
                    .context("opening the PostgreSQL database")?,
            )
        }
        Database::Memory => {
            tracing::warn!("memory database: nothing will persist");
            Arc::new(MemoryStore::new())
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .context("binding the listen address")?;
    let addr = listener.local_addr()?;
    // The harness and operators read this line; it names our own address only.
    println!("northstar-relay listening on {addr}");
    tracing::info!(%addr, "listening");
    let metrics = match config.metrics_listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .context("binding the metrics listen address")?;
            let addr = l.local_addr()?;
            println!("northstar-relay metrics on {addr}");
            tracing::info!(%addr, "metrics, /livez and /readyz listening");
            Some(l)
        }
        None => None,
    };
    northstar_relay::server::run_with_metrics(listener, metrics, config, store, shutdown_signal())
        .await?;
    Ok(())
}
