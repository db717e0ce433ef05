//! Configuration: command-line flags, `NORTHSTAR_*` environment variables
//! and an optional TOML file (`--config`), in that order of precedence, over
//! safe defaults. Every limit is a named field; `northstar-relay --help`
//! documents each. docs/RELAY.md explains them for operators.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default listen address: loopback only; put a TLS-terminating reverse
/// proxy in front to expose the relay.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory (holds `northstar.db`).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default web root: the browser client's static files.
pub const DEFAULT_WEB_ROOT: &str = "web-client/static";
/// Default connection cap: each connection costs a task and a few buffers;
/// 1024 fits a small VPS with memory to spare.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default frame limit: a batch of 32 envelopes of the 16 KiB bucket, or a
/// large state blob, fits; bigger batches are split by clients.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Default deposit batch size (the protocol maximum).
pub const DEFAULT_MAX_BATCH: usize = northstar_core::frame::MAX_BATCH_ENVELOPES;
/// Default sustained frames per second per connection: far above what a
/// person or a counselor client sends, far below a flood.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 20;
/// Default burst: a client reconnecting acknowledges and fetches in a burst.
pub const DEFAULT_MESSAGE_BURST: u32 = 100;
/// Default consecutive rate-limited frames before the connection is closed
/// as abusive (a well-behaved client backs off after the first).
pub const DEFAULT_RATE_LIMIT_STRIKES: u32 = 200;
/// Default proof-of-work difficulty (see `northstar_core::pow`).
pub const DEFAULT_POW_DIFFICULTY: u8 = northstar_core::pow::DEFAULT_DIFFICULTY;
/// Default envelopes held per mailbox: weeks of conversation for an intake
/// device that is offline; a flood fills it and then gets `quota_exceeded`.
pub const DEFAULT_MAILBOX_MAX_ENVELOPES: u64 = 5000;
/// Default bytes held per mailbox (ciphertext).
pub const DEFAULT_MAILBOX_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default envelope retention: 30 days, then the envelope is swept unread.
pub const DEFAULT_RETENTION_HOURS: u32 = 30 * 24;
/// Default longest seeker-state lifetime: 90 days (the client asks for less
/// or more; more is capped to this).
pub const DEFAULT_STATE_MAX_HOURS: u32 = 90 * 24;
/// Default largest state blob: ample for several conversations.
pub const DEFAULT_MAX_STATE_BYTES: usize = 1024 * 1024;
/// Default one-time prekeys held per mailbox.
pub const DEFAULT_MAX_ONE_TIME_PREKEYS: u64 = 500;
/// Default one-time ML-KEM prekeys held per mailbox (1252 bytes each, so
/// fewer than X25519 ones: 200 is about 250 KB per device, twice what a
/// device keeps on the relay).
pub const DEFAULT_MAX_ONE_TIME_PQ_PREKEYS: u64 = 200;
/// Default prekey fetches one connection may make at once: a seeker
/// fetches one bundle per intake device (at most 64) over one connection.
pub const DEFAULT_PREKEY_FETCH_BURST: u32 = 64;
/// Default prekey fetches a connection gets back per minute once its burst
/// is spent: one every ten seconds, nothing an honest client needs (it
/// fetches a few bundles, then closes the connection), and a drain of
/// one-time prekeys on one connection then runs at a crawl.
pub const DEFAULT_PREKEY_FETCHES_PER_MINUTE: u32 = 6;
/// Default sweep interval for expired envelopes and state.
pub const DEFAULT_SWEEP_INTERVAL_SECS: u64 = 300;
/// Default writes per group commit.
pub const DEFAULT_WRITE_BATCH: usize = crate::store::sqlite::DEFAULT_WRITE_BATCH;
/// Default pooled PostgreSQL connections per relay node.
pub const DEFAULT_POSTGRES_POOL_SIZE: usize = crate::store::postgres::DEFAULT_POOL_SIZE;
/// Default deposits of one connection read ahead and committed together.
pub const DEFAULT_PIPELINE_DEPOSITS: usize = 32;
/// See [`Config::sqlite_page_bytes`].
pub const DEFAULT_SQLITE_PAGE_BYTES: u32 = 4096;
/// See [`Config::ack_flush_ms`].
pub const DEFAULT_ACK_FLUSH_MS: u64 = 10;
/// See [`Config::ack_flush_ids`].
pub const DEFAULT_ACK_FLUSH_IDS: usize = 4096;
/// Default time allowed for connections to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 10;
/// Default idle timeout: a WebSocket from which nothing (not even the pong
/// to our ping, sent every third of this) arrives for this long is closed.
/// Browsers and the CLI answer pings by themselves, so only dead or
/// stalled peers are cut; it bounds how long one can hold a connection slot.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 90;
/// Default time one outgoing frame may take to leave: a client that stops
/// reading is disconnected after this, so its unsent frames never pile up
/// (the relay writes one frame at a time: the outbound queue per
/// connection is one frame plus the kernel's socket buffer).
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 20;
/// Default cap on open TCP connections, WebSocket or not yet: 0 means twice
/// `max_connections`, so handshakes in progress cannot crowd out the
/// sockets (excess connections are closed at once).
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 0;
/// Default bound, in seconds, on how long data deleted from the SQLite
/// database (acknowledged or expired envelopes, replaced or deleted state,
/// deleted mailboxes) stays anywhere in its files.
pub const DEFAULT_ERASE_WITHIN_SECS: u64 = crate::store::sqlite::DEFAULT_ERASE_WITHIN.as_secs();
/// Default attachment blobs held per mailbox: a seeker sends a few
/// documents and receives a few forms; 16 blobs of up to 10 MiB stay
/// within the byte quota they share with envelopes.
pub const DEFAULT_MAILBOX_MAX_BLOBS: u64 = 16;
/// Default largest attachment, bytes of file (the protocol's maximum,
/// `northstar_core::attachment::MAX_ATTACHMENT_LEN`, 10 MiB); an operator
/// may set it lower.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = northstar_core::attachment::MAX_ATTACHMENT_LEN as u64;
/// Default database size cap in bytes; 0 means none beyond the disk. Set it
/// below the free space of the data directory's disk: when reached, writes
/// get `server_busy` and nothing stored changes, instead of the disk filling.
pub const DEFAULT_MAX_DATABASE_BYTES: u64 = 0;

macro_rules! config {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal; )*) => {
        /// Command-line flags and environment variables.
        #[derive(clap::Parser, Debug, Default)]
        #[command(name = "northstar-relay", version, about = "The Northstar relay: stores and forwards sealed ciphertext only.")]
        pub struct Args {
            /// Optional TOML file with any of the settings below (snake_case keys).
            #[arg(long, env = "NORTHSTAR_CONFIG")]
            pub config: Option<PathBuf>,
            /// Database URL: `sqlite:<path>` (default `sqlite:<data-dir>/northstar.db`),
            /// `postgres://user@host/db` (several nodes sharing one database; see docs/DEPLOY.md)
            /// or `memory:` (tests only, nothing persists).
            #[arg(long, env = "NORTHSTAR_DATABASE")]
            pub database: Option<String>,
            /// Log as JSON lines instead of text.
            #[arg(long, env = "NORTHSTAR_LOG_JSON")]
            pub log_json: Option<bool>,
            /// Address for operators' metrics (Prometheus text at `/metrics`) and the
            /// load balancer's `/livez` and `/readyz`, e.g. `127.0.0.1:9464`; bind it to
            /// loopback or a private network only, never the public interface
            /// (docs/DEPLOY.md) [default: off].
            #[arg(long, env = "NORTHSTAR_METRICS_LISTEN")]
            pub metrics_listen: Option<SocketAddr>,
            $( $(#[doc = $doc])* #[arg(long, env = $env)] pub $name: Option<$ty>, )*
        }

        /// The TOML file.
        #[derive(Deserialize, Debug, Default)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            pub database: Option<String>,
            pub log_json: Option<bool>,
            pub metrics_listen: Option<SocketAddr>,
            $( pub $name: Option<$ty>, )*
        }

        /// The effective configuration.
        #[derive(Clone, Debug)]
        pub struct Config {
            /// Database URL (see [`Database`]).
            pub database: Database,
            /// Log as JSON lines.
            pub log_json: bool,
            /// Where metrics, `/livez` and `/readyz` are served; `None` = off.
            pub metrics_listen: Option<SocketAddr>,
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        impl Config {
            fn merge(args: Args, file: FileConfig) -> Result<Config, ConfigError> {
                let c = Config {
                    database: Database::Sqlite(PathBuf::new()),
                    log_json: args.log_json.or(file.log_json).unwrap_or(false),
                    metrics_listen: args.metrics_listen.or(file.metrics_listen),
                    $( $name: args.$name.or(file.$name).unwrap_or_else(|| $default), )*
                };
                let database = match args.database.or(file.database) {
                    Some(url) => Database::parse(&url)?,
                    None => Database::Sqlite(c.data_dir.join("northstar.db")),
                };
                Ok(Config { database, ..c })
            }
        }
    };
}

config! {
    /// Address to listen on [default: 127.0.0.1:8080].
    listen: SocketAddr = DEFAULT_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))), "NORTHSTAR_LISTEN";
    /// Data directory (the SQLite file lives here) [default: ./data].
    data_dir: PathBuf = PathBuf::from(DEFAULT_DATA_DIR), "NORTHSTAR_DATA_DIR";
    /// Directory of the web client's static files [default: web-client/static].
    web_root: PathBuf = PathBuf::from(DEFAULT_WEB_ROOT), "NORTHSTAR_WEB_ROOT";
    /// Most simultaneous WebSocket connections; more get HTTP 503 [default: 1024].
    max_connections: usize = DEFAULT_MAX_CONNECTIONS, "NORTHSTAR_MAX_CONNECTIONS";
    /// Largest frame accepted, bytes; larger get `frame_too_large` (twice this closes the connection) [default: 2097152].
    max_frame_bytes: usize = DEFAULT_MAX_FRAME_BYTES, "NORTHSTAR_MAX_FRAME_BYTES";
    /// Most envelopes in one deposit batch (at most 64) [default: 64].
    max_batch: usize = DEFAULT_MAX_BATCH, "NORTHSTAR_MAX_BATCH";
    /// Sustained frames per second per connection [default: 20].
    messages_per_second: u32 = DEFAULT_MESSAGES_PER_SECOND, "NORTHSTAR_MESSAGES_PER_SECOND";
    /// Frames a connection may send in a burst [default: 100].
    message_burst: u32 = DEFAULT_MESSAGE_BURST, "NORTHSTAR_MESSAGE_BURST";
    /// Consecutive rate-limited frames after which the connection is closed [default: 200].
    rate_limit_strikes: u32 = DEFAULT_RATE_LIMIT_STRIKES, "NORTHSTAR_RATE_LIMIT_STRIKES";
    /// Proof-of-work difficulty in leading zero bits for mailboxes that require it (at most 28) [default: 16].
    pow_difficulty: u8 = DEFAULT_POW_DIFFICULTY, "NORTHSTAR_POW_DIFFICULTY";
    /// Most envelopes stored per mailbox [default: 5000].
    mailbox_max_envelopes: u64 = DEFAULT_MAILBOX_MAX_ENVELOPES, "NORTHSTAR_MAILBOX_MAX_ENVELOPES";
    /// Most ciphertext bytes stored per mailbox [default: 67108864].
    mailbox_max_bytes: u64 = DEFAULT_MAILBOX_MAX_BYTES, "NORTHSTAR_MAILBOX_MAX_BYTES";
    /// Hours an envelope is kept if never acknowledged (expiry rounded up to the hour) [default: 720].
    retention_hours: u32 = DEFAULT_RETENTION_HOURS, "NORTHSTAR_RETENTION_HOURS";
    /// Longest lifetime of a seeker-state blob, hours [default: 2160].
    state_max_hours: u32 = DEFAULT_STATE_MAX_HOURS, "NORTHSTAR_STATE_MAX_HOURS";
    /// Largest seeker-state blob, bytes (at most 4194304) [default: 1048576].
    max_state_bytes: usize = DEFAULT_MAX_STATE_BYTES, "NORTHSTAR_MAX_STATE_BYTES";
    /// Most one-time prekeys held per mailbox [default: 500].
    max_one_time_prekeys: u64 = DEFAULT_MAX_ONE_TIME_PREKEYS, "NORTHSTAR_MAX_ONE_TIME_PREKEYS";
    /// Most one-time ML-KEM prekeys held per mailbox [default: 200].
    max_one_time_pq_prekeys: u64 = DEFAULT_MAX_ONE_TIME_PQ_PREKEYS, "NORTHSTAR_MAX_ONE_TIME_PQ_PREKEYS";
    /// Prekey fetches a connection may make at once; more get `rate_limited` [default: 64].
    prekey_fetch_burst: u32 = DEFAULT_PREKEY_FETCH_BURST, "NORTHSTAR_PREKEY_FETCH_BURST";
    /// Prekey fetches a connection gets back per minute after its burst [default: 6].
    prekey_fetches_per_minute: u32 = DEFAULT_PREKEY_FETCHES_PER_MINUTE, "NORTHSTAR_PREKEY_FETCHES_PER_MINUTE";
    /// Seconds between sweeps of expired envelopes and state [default: 300].
    sweep_interval_secs: u64 = DEFAULT_SWEEP_INTERVAL_SECS, "NORTHSTAR_SWEEP_INTERVAL_SECS";
    /// Most writes committed in one transaction (group commit: SQLite's writer, or each PostgreSQL node's) [default: 256].
    write_batch: usize = DEFAULT_WRITE_BATCH, "NORTHSTAR_WRITE_BATCH";
    /// Most pooled connections to PostgreSQL per node (PostgreSQL only) [default: 16].
    postgres_pool_size: usize = DEFAULT_POSTGRES_POOL_SIZE, "NORTHSTAR_POSTGRES_POOL_SIZE";
    /// Most deposits one connection has already sent that are checked in turn and committed together (at most about max_frame_bytes of them are held) [default: 32].
    pipeline_deposits: usize = DEFAULT_PIPELINE_DEPOSITS, "NORTHSTAR_PIPELINE_DEPOSITS";
    /// Seconds open connections get to finish on shutdown [default: 10].
    shutdown_grace_secs: u64 = DEFAULT_SHUTDOWN_GRACE_SECS, "NORTHSTAR_SHUTDOWN_GRACE_SECS";
    /// Seconds without any frame (pings go out every third of it) before a WebSocket is closed [default: 90].
    idle_timeout_secs: u64 = DEFAULT_IDLE_TIMEOUT_SECS, "NORTHSTAR_IDLE_TIMEOUT_SECS";
    /// Seconds one outgoing frame may take before a non-reading client is disconnected [default: 20].
    send_timeout_secs: u64 = DEFAULT_SEND_TIMEOUT_SECS, "NORTHSTAR_SEND_TIMEOUT_SECS";
    /// Most open TCP connections (WebSocket or not yet); more are closed at once; 0 = twice max_connections [default: 0].
    max_tcp_connections: usize = DEFAULT_MAX_TCP_CONNECTIONS, "NORTHSTAR_MAX_TCP_CONNECTIONS";
    /// Largest database, bytes (SQLite `max_page_count`); 0 = no cap beyond the disk [default: 0].
    max_database_bytes: u64 = DEFAULT_MAX_DATABASE_BYTES, "NORTHSTAR_MAX_DATABASE_BYTES";
    /// Seconds within which data deleted from the SQLite database is gone from its files (the WAL is checkpointed and truncated; 0 = after each commit that deleted something) [default: 5].
    erase_within_secs: u64 = DEFAULT_ERASE_WITHIN_SECS, "NORTHSTAR_ERASE_WITHIN_SECS";
    /// Page size of a new SQLite database, bytes (a power of two, 512 to 65536; an existing database keeps its own): larger pages give more throughput under heavy load, smaller ones shorter commits at low rates [default: 4096].
    sqlite_page_bytes: u32 = DEFAULT_SQLITE_PAGE_BYTES, "NORTHSTAR_SQLITE_PAGE_BYTES";
    /// Milliseconds acknowledged envelopes are gathered (from every connection) before they are deleted together; 0 = each acknowledgement is deleted as soon as the previous deletion is written [default: 10].
    ack_flush_ms: u64 = DEFAULT_ACK_FLUSH_MS, "NORTHSTAR_ACK_FLUSH_MS";
    /// Most acknowledged envelope ids deleted in one write; more are deleted at once [default: 4096].
    ack_flush_ids: usize = DEFAULT_ACK_FLUSH_IDS, "NORTHSTAR_ACK_FLUSH_IDS";
    /// Most attachment blobs held per mailbox; more get `too_many_blobs` [default: 16].
    mailbox_max_blobs: u64 = DEFAULT_MAILBOX_MAX_BLOBS, "NORTHSTAR_MAILBOX_MAX_BLOBS";
    /// Largest attachment, bytes of file (at most 10485760); larger get `attachment_too_large` [default: 10485760].
    max_attachment_bytes: u64 = DEFAULT_MAX_ATTACHMENT_BYTES, "NORTHSTAR_MAX_ATTACHMENT_BYTES";
}

/// Where data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `sqlite:<path>`.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…` — a database shared by several nodes.
    Postgres(PostgresUrl),
    /// `memory:` — nothing persists (tests).
    Memory,
}

/// A PostgreSQL connection URL. It may carry a password, so its `Debug`
/// shows only the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL itself, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl core::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PostgresUrl(postgres://…)")
    }
}

impl Database {
    fn parse(url: &str) -> Result<Self, ConfigError> {
        if let Some(p) = url.strip_prefix("sqlite:") {
            if p.is_empty() {
                return Err(ConfigError::Database);
            }
            Ok(Database::Sqlite(PathBuf::from(p)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Database::Postgres(PostgresUrl(url.to_owned())))
        } else if url == "memory:" {
            Ok(Database::Memory)
        } else {
            Err(ConfigError::Database)
        }
    }
}

/// Configuration problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the config file")]
    Read {
        #[source]
        source: std::io::Error,
    },
    #[error("the config file is not valid TOML for this relay")]
    Toml {
        #[source]
        source: toml::de::Error,
    },
    #[error("database must be `sqlite:<path>`, `postgres://…` or `memory:`")]
    Database,
    #[error("{what} must be between {min} and {max}")]
    OutOfRange {
        what: &'static str,
        min: u64,
        max: u64,
    },
    #[error("{what} must be a power of two")]
    NotPowerOfTwo { what: &'static str },
}

fn range(what: &'static str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::OutOfRange { what, min, max });
    }
    Ok(())
}

impl Config {
    /// Parses flags and environment, reads the file if given, validates.
    pub fn load(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => Self::read_file(path)?,
            None => FileConfig::default(),
        };
        let c = Config::merge(args, file)?;
        c.validate()?;
        Ok(c)
    }

    /// The defaults (what `northstar-relay` with no flags, environment or file uses).
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::merge(Args::default(), FileConfig::default())
    }

    /// The effective TCP connection cap (`max_tcp_connections`, 0 = twice `max_connections`).
    pub fn tcp_connection_cap(&self) -> usize {
        match self.max_tcp_connections {
            0 => self.max_connections.saturating_mul(2),
            n => n,
        }
    }

    fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Toml { source })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        use northstar_core::frame;
        range("max_connections", self.max_connections as u64, 1, 1 << 20)?;
        range(
            "max_frame_bytes",
            self.max_frame_bytes as u64,
            1024,
            frame::MAX_FRAME_LEN as u64,
        )?;
        range(
            "max_batch",
            self.max_batch as u64,
            1,
            frame::MAX_BATCH_ENVELOPES as u64,
        )?;
        range(
            "messages_per_second",
            u64::from(self.messages_per_second),
            1,
            1_000_000,
        )?;
        range("message_burst", u64::from(self.message_burst), 1, 1_000_000)?;
        range(
            "rate_limit_strikes",
            u64::from(self.rate_limit_strikes),
            1,
            u64::from(u32::MAX),
        )?;
        range(
            "pow_difficulty",
            u64::from(self.pow_difficulty),
            0,
            u64::from(northstar_core::pow::MAX_DIFFICULTY),
        )?;
        range(
            "mailbox_max_envelopes",
            self.mailbox_max_envelopes,
            1,
            u64::MAX,
        )?;
        range("mailbox_max_bytes", self.mailbox_max_bytes, 1, u64::MAX)?;
        range(
            "retention_hours",
            u64::from(self.retention_hours),
            1,
            24 * 366,
        )?;
        range(
            "state_max_hours",
            u64::from(self.state_max_hours),
            1,
            24 * 366 * 2,
        )?;
        range(
            "max_state_bytes",
            self.max_state_bytes as u64,
            1,
            frame::MAX_STATE_LEN as u64,
        )?;
        range(
            "max_one_time_prekeys",
            self.max_one_time_prekeys,
            0,
            100_000,
        )?;
        range(
            "max_one_time_pq_prekeys",
            self.max_one_time_pq_prekeys,
            0,
            10_000,
        )?;
        range(
            "prekey_fetch_burst",
            u64::from(self.prekey_fetch_burst),
            1,
            1_000_000,
        )?;
        range(
            "prekey_fetches_per_minute",
            u64::from(self.prekey_fetches_per_minute),
            1,
            60_000_000,
        )?;
        range("sweep_interval_secs", self.sweep_interval_secs, 1, 86_400)?;
        range("mailbox_max_blobs", self.mailbox_max_blobs, 0, 10_000)?;
        range(
            "max_attachment_bytes",
            self.max_attachment_bytes,
            northstar_core::attachment::CHUNK_DATA_LEN as u64,
            northstar_core::attachment::MAX_ATTACHMENT_LEN as u64,
        )?;
        range("write_batch", self.write_batch as u64, 1, 100_000)?;
        range(
            "postgres_pool_size",
            self.postgres_pool_size as u64,
            1,
            10_000,
        )?;
        range("pipeline_deposits", self.pipeline_deposits as u64, 1, 1024)?;
        range("shutdown_grace_secs", self.shutdown_grace_secs, 0, 3600)?;
        range("erase_within_secs", self.erase_within_secs, 0, 3600)?;
        range("ack_flush_ms", self.ack_flush_ms, 0, 1000)?;
        range(
            "sqlite_page_bytes",
            u64::from(self.sqlite_page_bytes),
            512,
            65_536,
        )?;
        if !self.sqlite_page_bytes.is_power_of_two() {
            return Err(ConfigError::NotPowerOfTwo {
                what: "sqlite_page_bytes",
            });
        }
        range("ack_flush_ids", self.ack_flush_ids as u64, 1, 65_536)?;
        if self.max_tcp_connections != 0 {
            range(
                "max_tcp_connections",
                self.max_tcp_connections as u64,
                self.max_connections as u64,
                1 << 21,
            )?;
        }
        range("idle_timeout_secs", self.idle_timeout_secs, 3, 86_400)?;
        range("send_timeout_secs", self.send_timeout_secs, 1, 3600)?;
        if self.max_database_bytes != 0 {
            range(
                "max_database_bytes",
                self.max_database_bytes,
                1 << 20,
                u64::MAX,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults_validate() {
        let c = Config::defaults().unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.database,
            Database::Sqlite(PathBuf::from("./data/northstar.db"))
        );
        assert_eq!(c.metrics_listen, None, "metrics are off by default");
    }

    #[test]
    fn metrics_listen_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "metrics_listen = \"10.0.0.5:9464\"\n").unwrap();
        let args = Args::try_parse_from(["x", "--config", path.to_str().unwrap()]).unwrap();
        let c = Config::load(args).unwrap();
        assert_eq!(c.metrics_listen, Some("10.0.0.5:9464".parse().unwrap()));
        let args = Args::try_parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:9464",
        ])
        .unwrap();
        let c = Config::load(args).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(
            &path,
            "max_batch = 8\npow_difficulty = 10\ndatabase = \"memory:\"\n",
        )
        .unwrap();
        let args = Args::try_parse_from([
            "northstar-relay",
            "--config",
            path.to_str().unwrap(),
            "--pow-difficulty",
            "12",
        ])
        .unwrap();
        let c = Config::load(args).unwrap();
        assert_eq!((c.max_batch, c.pow_difficulty), (8, 12));
        assert_eq!(c.database, Database::Memory);
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        let args = Args::try_parse_from(["x", "--config", path.to_str().unwrap()]).unwrap();
        assert!(matches!(Config::load(args), Err(ConfigError::Toml { .. })));
        let args = Args::try_parse_from(["x", "--pow-difficulty", "40"]).unwrap();
        assert!(matches!(
            Config::load(args),
            Err(ConfigError::OutOfRange { .. })
        ));
        // The TCP cap defaults to twice the WebSocket cap and may not be below it.
        let args = Args::try_parse_from(["x", "--max-connections", "10"]).unwrap();
        assert_eq!(Config::load(args).unwrap().tcp_connection_cap(), 20);
        let args = Args::try_parse_from(["x", "--max-tcp-connections", "5"]).unwrap();
        assert!(matches!(
            Config::load(args),
            Err(ConfigError::OutOfRange { .. })
        ));
        let args = Args::try_parse_from(["x", "--max-database-bytes", "4096"]).unwrap();
        assert!(matches!(
            Config::load(args),
            Err(ConfigError::OutOfRange { .. })
        ));
        let args = Args::try_parse_from(["x", "--database", "mysql://x"]).unwrap();
        assert!(matches!(Config::load(args), Err(ConfigError::Database)));
        let url = "postgres://relay:secret@db.internal/northstar";
        let args = Args::try_parse_from(["x", "--database", url]).unwrap();
        let c = Config::load(args).unwrap();
        assert_eq!(c.database, Database::Postgres(PostgresUrl(url.to_owned())));
        assert!(!format!("{c:?}").contains("secret"), "no password in Debug");
    }
}
