//! Operator metrics in the Prometheus text format, and the liveness and
//! readiness endpoints, on their own listen address (`metrics_listen`, off
//! by default; docs/DEPLOY.md).
//!
//! **Nothing identifying.** Every series is a process-wide total: there is
//! no label but fixed enums (an error code's name, a histogram bucket), so
//! nothing here can name a mailbox, an envelope, a connection or an
//! address. The relay is one process, so the counters are one static
//! ([`METRICS`]) of relaxed atomics: the hot path pays an atomic add, never
//! a lock, and nothing is allocated until a scrape renders the text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use northstar_core::frame::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::command::Relay;

/// Every error code, in wire order (index = code − 1).
pub const ERROR_CODES: [ErrorCode; ErrorCode::ALL.len()] = ErrorCode::ALL;

/// Upper bounds of the commit-latency buckets, seconds (`+Inf` follows).
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How long a readiness probe may wait for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A latency histogram with fixed buckets (microsecond sums).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; COMMIT_BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // Non-cumulative here; the renderer sums.
        if let Some(i) = COMMIT_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }
}

/// The relay's counters, histograms and gauges.
#[derive(Debug)]
pub struct Metrics {
    /// Deposit frames committed (a batch of one or more envelopes).
    pub deposit_batches: AtomicU64,
    /// Envelopes stored by committed deposits.
    pub deposit_envelopes: AtomicU64,
    /// Envelopes of a committed deposit refused one by one, by code.
    envelopes_refused: [AtomicU64; ERROR_CODES.len()],
    /// `Deliver` frames written to subscribers.
    pub deliveries: AtomicU64,
    /// `Ack` frames answered `Acked`.
    pub ack_frames: AtomicU64,
    /// Envelopes deleted by acknowledgements.
    pub acked_envelopes: AtomicU64,
    /// Store writes that deleted acknowledged envelopes (each gathers the
    /// acknowledgements of every connection over `ack_flush_ms`).
    pub ack_writes: AtomicU64,
    /// Error frames sent, by code.
    refusals: [AtomicU64; ERROR_CODES.len()],
    /// WebSocket connections open now.
    pub connections_open: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// WebSocket upgrades refused at the connection cap.
    pub connections_refused: AtomicU64,
    /// The storage writer's transactions (SQLite group commit, PostgreSQL transaction).
    pub commit_seconds: Histogram,
}

/// The process's metrics.
pub static METRICS: Metrics = Metrics {
    deposit_batches: AtomicU64::new(0),
    deposit_envelopes: AtomicU64::new(0),
    envelopes_refused: [const { AtomicU64::new(0) }; ERROR_CODES.len()],
    deliveries: AtomicU64::new(0),
    ack_frames: AtomicU64::new(0),
    acked_envelopes: AtomicU64::new(0),
    ack_writes: AtomicU64::new(0),
    refusals: [const { AtomicU64::new(0) }; ERROR_CODES.len()],
    connections_open: AtomicU64::new(0),
    connections_total: AtomicU64::new(0),
    connections_refused: AtomicU64::new(0),
    commit_seconds: Histogram::new(),
};

fn code_index(code: ErrorCode) -> usize {
    usize::from(code.to_u16()).saturating_sub(1) % ERROR_CODES.len()
}

impl Metrics {
    /// Counts one error frame.
    pub fn refused(&self, code: ErrorCode) {
        self.refusals[code_index(code)].fetch_add(1, Relaxed);
    }

    /// Counts one envelope refused inside an accepted deposit.
    pub fn envelope_refused(&self, code: ErrorCode) {
        self.envelopes_refused[code_index(code)].fetch_add(1, Relaxed);
    }

    /// Counts `n`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Counts a connection in; the guard counts it out when dropped.
    pub fn connection(&'static self) -> ConnectionGuard {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        ConnectionGuard(self)
    }
}

/// Held for a connection's lifetime (the open-connections gauge).
#[derive(Debug)]
pub struct ConnectionGuard(&'static Metrics);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

/// Gauges read at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Writes waiting for the storage writer (SQLite).
    pub write_queue: Option<u64>,
    /// Mailboxes with a live subscription on this node.
    pub subscribed_mailboxes: u64,
    /// Bytes of the database (SQLite files, or `pg_database_size`).
    pub database_bytes: Option<u64>,
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn by_code(out: &mut String, name: &str, help: &str, counters: &[AtomicU64]) {
    header(out, name, "counter", help);
    for (code, c) in ERROR_CODES.iter().zip(counters) {
        let _ = writeln!(
            out,
            "{name}{{code=\"{}\"}} {}",
            code.name(),
            c.load(Relaxed)
        );
    }
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {v}");
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: Gauges) -> String {
        let mut o = String::with_capacity(8192);
        let l = |c: &AtomicU64| c.load(Relaxed);
        single(
            &mut o,
            "northstar_deposit_batches_total",
            "counter",
            "Deposit frames committed (each a batch of one or more envelopes).",
            l(&self.deposit_batches),
        );
        single(
            &mut o,
            "northstar_deposit_envelopes_total",
            "counter",
            "Envelopes stored by committed deposits.",
            l(&self.deposit_envelopes),
        );
        by_code(
            &mut o,
            "northstar_envelopes_refused_total",
            "Envelopes refused inside an otherwise committed deposit, by error code.",
            &self.envelopes_refused,
        );
        single(
            &mut o,
            "northstar_deliveries_total",
            "counter",
            "Envelopes pushed to subscribers (Deliver frames).",
            l(&self.deliveries),
        );
        single(
            &mut o,
            "northstar_ack_frames_total",
            "counter",
            "Acknowledgement frames answered.",
            l(&self.ack_frames),
        );
        single(
            &mut o,
            "northstar_acked_envelopes_total",
            "counter",
            "Envelopes deleted on acknowledgement.",
            l(&self.acked_envelopes),
        );
        single(
            &mut o,
            "northstar_ack_writes_total",
            "counter",
            "Store writes deleting acknowledged envelopes, each gathered from every connection.",
            l(&self.ack_writes),
        );
        by_code(
            &mut o,
            "northstar_refusals_total",
            "Error frames sent, by error code.",
            &self.refusals,
        );
        single(
            &mut o,
            "northstar_connections",
            "gauge",
            "WebSocket connections open now.",
            l(&self.connections_open),
        );
        single(
            &mut o,
            "northstar_connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            l(&self.connections_total),
        );
        single(
            &mut o,
            "northstar_connections_refused_total",
            "counter",
            "WebSocket upgrades refused at the connection cap.",
            l(&self.connections_refused),
        );
        let name = "northstar_store_commit_seconds";
        header(
            &mut o,
            name,
            "histogram",
            "Time the storage writer takes per transaction (SQLite group commit from BEGIN to COMMIT, PostgreSQL transaction).",
        );
        let mut cumulative = 0;
        for (bound, b) in COMMIT_BUCKETS.iter().zip(&self.commit_seconds.buckets) {
            cumulative += l(b);
            let _ = writeln!(o, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = l(&self.commit_seconds.count);
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = l(&self.commit_seconds.sum_micros) as f64 / 1e6;
        let _ = writeln!(o, "{name}_sum {sum}\n{name}_count {count}");
        if let Some(q) = gauges.write_queue {
            single(
                &mut o,
                "northstar_store_write_queue",
                "gauge",
                "Writes queued for the storage writer (SQLite).",
                q,
            );
        }
        single(
            &mut o,
            "northstar_subscribed_mailboxes",
            "gauge",
            "Mailboxes with a live subscription on this node (a count only).",
            gauges.subscribed_mailboxes,
        );
        if let Some(b) = gauges.database_bytes {
            single(
                &mut o,
                "northstar_database_bytes",
                "gauge",
                "Size of the database: the SQLite files, or pg_database_size.",
                b,
            );
        }
        o
    }
}

#[derive(Clone)]
struct MetricsState {
    relay: Arc<Relay>,
    stop: watch::Receiver<bool>,
}

async fn metrics(State(s): State<MetricsState>) -> impl IntoResponse {
    let database_bytes = tokio::time::timeout(READY_TIMEOUT, s.relay.store.database_bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let gauges = Gauges {
        write_queue: s.relay.store.queue_depth().map(|q| q as u64),
        subscribed_mailboxes: s.relay.notifier.watched() as u64,
        database_bytes,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        METRICS.render(gauges),
    )
}

async fn livez() -> &'static str {
    "alive"
}

async fn readyz(State(s): State<MetricsState>) -> (StatusCode, &'static str) {
    if *s.stop.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match tokio::time::timeout(READY_TIMEOUT, s.relay.store.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(_)) => (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage not answering"),
    }
}

/// Serves `/metrics`, `/livez` and `/readyz` until `stop` flips.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, stop: watch::Receiver<bool>) {
    let state = MetricsState {
        relay,
        stop: stop.clone(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(state);
    let mut stop = stop;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_own_counter() {
        for (i, code) in ERROR_CODES.iter().enumerate() {
            assert_eq!(code_index(*code), i);
        }
    }

    #[test]
    fn the_histogram_renders_cumulative_buckets() {
        let m = Metrics {
            deposit_batches: AtomicU64::new(0),
            deposit_envelopes: AtomicU64::new(0),
            envelopes_refused: [const { AtomicU64::new(0) }; ERROR_CODES.len()],
            deliveries: AtomicU64::new(0),
            ack_frames: AtomicU64::new(0),
            acked_envelopes: AtomicU64::new(0),
            ack_writes: AtomicU64::new(0),
            refusals: [const { AtomicU64::new(0) }; ERROR_CODES.len()],
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            commit_seconds: Histogram::new(),
        };
        m.commit_seconds.observe(Duration::from_micros(50));
        m.commit_seconds.observe(Duration::from_millis(3));
        m.commit_seconds.observe(Duration::from_secs(9));
        m.refused(ErrorCode::Internal);
        let text = m.render(Gauges::default());
        assert!(text.contains("northstar_store_commit_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("northstar_store_commit_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("northstar_store_commit_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(text.contains("northstar_store_commit_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("northstar_store_commit_seconds_count 3\n"));
        assert!(text.contains("northstar_refusals_total{code=\"internal\"} 1\n"));
        assert!(!text.contains("northstar_database_bytes"));
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metric_names() {
        let dashboard = include_str!("../../docs/grafana-northstar.json");
        let text = METRICS.render(Gauges {
            write_queue: Some(0),
            subscribed_mailboxes: 0,
            database_bytes: Some(0),
        });
        let mut used = 0;
        for (at, _) in dashboard.match_indices("northstar_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "the dashboard uses {name}, which the relay does not export"
            );
            used += 1;
        }
        assert!(used >= 10);
    }
}
