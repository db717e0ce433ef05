//! Helpers for the end-to-end tests: start the REAL relay binary on
//! 127.0.0.1 with a temporary data directory and drive it with real
//! WebSocket clients.
//!
//! ## Running
//!
//! The tests run the compiled `northstar-relay` binary, so build it first:
//!
//! ```text
//! cargo build -p northstar-relay && cargo test -p northstar-e2e
//! ```
//!
//! The binary is looked up in `$NORTHSTAR_BIN_DIR` if set, else in
//! `$CARGO_TARGET_DIR/debug`, else in `<workspace>/target/debug`.
//! Every relay binds `127.0.0.1:0` (a free port, loopback only) and prints
//! the address it got; each test starts its own.
//!
//! ## Backends
//!
//! `NORTHSTAR_TEST_BACKEND=postgres` runs every relay on PostgreSQL instead
//! of SQLite: each [`RelayProcess`] gets a fresh, empty database on the
//! server whose admin URL is in `NORTHSTAR_TEST_POSTGRES` (`scripts/test`
//! starts a throwaway one with `scripts/pg-throwaway`). See [`backend`].

// Test support only: a failed expectation should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use northstar_core::UnixTime;
use northstar_core::directory::{Directory, OrgSigningKey};
use northstar_core::frame::{self, ClientFrame, ErrorCode, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::MailboxId;
use northstar_core::keys::{Ed25519Public, MailboxPublic, Signature, X25519Public};
use northstar_core::pow;
use northstar_core::sealed::Envelope;
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any single reply before failing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory holding the relay binary (see the module doc).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NORTHSTAR_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        let d = if d.is_relative() {
            workspace_root().join(d)
        } else {
            d
        };
        return d.join("debug");
    }
    workspace_root().join("target").join("debug")
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The relay's storage backend under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `NORTHSTAR_TEST_BACKEND`: `postgres`, or SQLite (the default).
pub fn backend() -> Backend {
    match std::env::var("NORTHSTAR_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// Creates a new, empty database on the throwaway PostgreSQL server
/// (`NORTHSTAR_TEST_POSTGRES`, an admin URL ending in `/<database>`) and
/// returns its URL. Several relays given the same URL share it (nodes).
pub fn fresh_postgres_database() -> Result<String> {
    let admin = std::env::var("NORTHSTAR_TEST_POSTGRES")
        .context("NORTHSTAR_TEST_POSTGRES is unset: start a server with scripts/pg-throwaway")?;
    let (server, _) = admin
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("NORTHSTAR_TEST_POSTGRES must end in /<database>"))?;
    let mut raw = [0u8; 8];
    OsRng.fill_bytes(&mut raw);
    let name = format!("northstar_e2e_{}", u64::from_be_bytes(raw));
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &admin, "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "creating a test database failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(format!("{server}/{name}"))
}

/// Adds `--database <fresh database>` on PostgreSQL unless `args` names one.
fn with_backend(mut args: Vec<String>) -> Result<Vec<String>> {
    if backend() == Backend::Postgres && !args.iter().any(|a| a == "--database") {
        args.push("--database".into());
        args.push(fresh_postgres_database()?);
    }
    Ok(args)
}

/// Replaces every hex bytea literal (`\\x…` or `\x…`) of a plain-text
/// `pg_dump` by the raw bytes it stands for, so the dump can be scanned
/// like a database file (raw keys, ids, integers).
pub fn decode_pg_dump(text: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let skip = if text[i..].starts_with(b"\\\\x") {
            3
        } else if text[i..].starts_with(b"\\x") {
            2
        } else {
            0
        };
        if skip > 0 {
            let mut j = i + skip;
            while j + 1 < text.len() {
                match (hex(text[j]), hex(text[j + 1])) {
                    (Some(a), Some(b)) => out.push(a << 4 | b),
                    _ => break,
                }
                j += 2;
            }
            if j > i + skip {
                i = j;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// A running relay process.
#[derive(Debug)]
pub struct RelayProcess {
    child: Child,
    pub addr: SocketAddr,
    /// Where the database lives (kept across restarts; SQLite).
    pub data_dir: PathBuf,
    /// The PostgreSQL database URL, when the relay runs on PostgreSQL.
    pub database: Option<String>,
    /// The web root served (a temp dir with an index.html).
    pub web_root: PathBuf,
    /// Everything the relay wrote to stderr (its logs).
    pub log_path: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Run the relay as this user id (see [`RelayProcess::start_in_as`]).
    uid: Option<u32>,
    /// Lines the relay printed after its first (the metrics address).
    stdout_rest: Arc<std::sync::Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl RelayProcess {
    /// Starts a relay on a fresh temporary data directory.
    pub async fn start(extra: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        let mut r = Self::start_in(&data, extra).await?;
        r._tmp = Some(tmp);
        Ok(r)
    }

    /// Starts a relay on `data_dir` (created if needed).
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_in_maybe_as(data_dir, extra, None).await
    }

    /// Starts a relay on `data_dir` as user `uid` (the tests run as root,
    /// whom file permissions do not bind; an unprivileged relay shows what
    /// an operator's read-only data directory does). The binary and the
    /// directories must be reachable by that user.
    pub async fn start_in_as(data_dir: &Path, extra: &[&str], uid: u32) -> Result<Self> {
        Self::start_in_maybe_as(data_dir, extra, Some(uid)).await
    }

    async fn start_in_maybe_as(data_dir: &Path, extra: &[&str], uid: Option<u32>) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let web_root = data_dir.join("..").join("web");
        std::fs::create_dir_all(&web_root)?;
        std::fs::write(
            web_root.join("index.html"),
            "<!doctype html><title>Northstar</title><p>northstar test page</p>\n",
        )?;
        let args = with_backend(extra.iter().map(|s| s.to_string()).collect())?;
        Self::spawn(
            data_dir.to_path_buf(),
            web_root,
            args,
            Vec::new(),
            uid,
            None,
        )
        .await
    }

    /// Whether this relay keeps its data in the SQLite file [`db_path`](Self::db_path)
    /// (tests that read or damage that file are SQLite-specific).
    pub fn uses_sqlite_file(&self) -> bool {
        self.db_path().exists()
    }

    /// The relay's process id (to read /proc/<pid>/status).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The relay's resident memory, KiB (`VmRSS` in /proc/<pid>/status).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Open file descriptors of the relay (sockets included).
    pub fn open_fds(&self) -> Option<usize> {
        Some(
            std::fs::read_dir(format!("/proc/{}/fd", self.pid()?))
                .ok()?
                .count(),
        )
    }

    /// Starts a relay on a fresh temporary data directory with extra
    /// `NORTHSTAR_*` environment variables (all others are removed).
    pub async fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data = tmp.path().join("data");
        std::fs::create_dir_all(&data)?;
        let web_root = tmp.path().join("web");
        std::fs::create_dir_all(&web_root)?;
        let args = with_backend(extra.iter().map(|s| s.to_string()).collect())?;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(data, web_root, args, env, None, Some(tmp)).await
    }

    async fn spawn(
        data_dir: PathBuf,
        web_root: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        uid: Option<u32>,
        tmp: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let bin = bin_dir().join("northstar-relay");
        if !bin.exists() {
            bail!(
                "relay binary not found at {}: run `cargo build -p northstar-relay` first",
                bin.display()
            );
        }
        let log_path = data_dir.join("..").join(format!(
            "relay-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        ));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(&bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("NORTHSTAR_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--web-root")
            .arg(&web_root)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().context("spawning the relay")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(REPLY_TIMEOUT, lines.next_line())
            .await
            .context("relay did not start in time")??
            .ok_or_else(|| {
                anyhow!(
                    "relay exited at start: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )
            })?;
        let addr: SocketAddr = line
            .rsplit(' ')
            .next()
            .ok_or_else(|| anyhow!("unexpected first line {line:?}"))?
            .parse()?;
        // Keep draining stdout so the relay never blocks on it; the lines
        // after the first (the metrics address) are kept.
        let stdout_rest = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = stdout_rest.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Ok(mut k) = kept.lock() {
                    k.push(l);
                }
            }
        });
        let database = args
            .iter()
            .position(|a| a == "--database")
            .and_then(|i| args.get(i + 1))
            .filter(|u| u.starts_with("postgres"))
            .cloned();
        Ok(RelayProcess {
            child,
            addr,
            data_dir,
            database,
            web_root,
            log_path,
            args,
            env,
            uid,
            stdout_rest,
            _tmp: tmp,
        })
    }

    /// The metrics listener's address (`--metrics-listen`), as the relay
    /// printed it after its first line.
    pub async fn metrics_addr(&self) -> Result<SocketAddr> {
        let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let found = self.stdout_rest.lock().ok().and_then(|k| {
                k.iter().find_map(|l| {
                    l.strip_prefix("northstar-relay metrics on ")
                        .map(str::to_owned)
                })
            });
            if let Some(a) = found {
                return Ok(a.parse()?);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the relay printed no metrics address");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain HTTP/1.1 GET to the metrics listener; (status, body).
    pub async fn metrics_get(&self, path: &str) -> Result<(u16, String)> {
        let (status, _, body) = http_get_at(self.metrics_addr().await?, path).await?;
        Ok((status, String::from_utf8(body)?))
    }

    /// `ws://127.0.0.1:<port>/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The SQLite file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("northstar.db")
    }

    /// The SQLite database file and the two SQLite keeps beside it.
    pub fn sqlite_files(&self) -> [PathBuf; 3] {
        let db = self.db_path();
        [
            db.clone(),
            db.with_extension("db-wal"),
            db.with_extension("db-shm"),
        ]
    }

    /// A copy of the live SQLite files (database, WAL, shared memory) as
    /// someone seizing the running machine would take it, concatenated.
    pub fn copy_of_sqlite_files(&self) -> Vec<u8> {
        self.sqlite_files()
            .iter()
            .filter_map(|f| std::fs::read(f).ok())
            .flatten()
            .collect()
    }

    /// What the relay's store holds now, as `(label, bytes, is_sqlite_wal)`:
    /// on SQLite the database file and its WAL (if any); on PostgreSQL a
    /// `pg_dump` of its database with bytea values decoded to raw bytes.
    pub fn stored_files(&self) -> Result<Vec<(String, Vec<u8>, bool)>> {
        if let Some(url) = &self.database {
            let out = std::process::Command::new("pg_dump")
                .args(["--no-owner", "-d", url])
                .output()
                .context("running pg_dump")?;
            if !out.status.success() {
                bail!("pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            return Ok(vec![("pg_dump".into(), decode_pg_dump(&out.stdout), false)]);
        }
        let db = self.db_path();
        let mut files = vec![("db".into(), std::fs::read(&db)?, false)];
        if let Ok(w) = std::fs::read(db.with_extension("db-wal")) {
            files.push(("wal".into(), w, true));
        }
        Ok(files)
    }

    /// Opens a client connection.
    pub async fn client(&self) -> Result<Client> {
        Client::connect(&self.url()).await
    }

    /// `kill -9`: no chance to flush anything.
    pub async fn kill9(&mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> Result<bool> {
        let pid = self.child.id().ok_or_else(|| anyhow!("already exited"))?;
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await??;
        Ok(exit.success())
    }

    /// Starts the relay again on the same data directory and arguments
    /// (after [`kill9`](Self::kill9) or [`terminate`](Self::terminate)).
    pub async fn restart(self) -> Result<Self> {
        let RelayProcess {
            data_dir,
            web_root,
            args,
            env,
            uid,
            _tmp,
            ..
        } = self;
        Self::spawn(data_dir, web_root, args, env, uid, _tmp).await
    }

    /// Starts the relay again on the same data directory and arguments,
    /// with `env` (`NORTHSTAR_*` variables) in place of the ones it had: for
    /// instance a moved test clock (tests/tests/retention/).
    pub async fn restart_with_env(self, env: &[(&str, &str)]) -> Result<Self> {
        let RelayProcess {
            data_dir,
            web_root,
            args,
            uid,
            _tmp,
            ..
        } = self;
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(data_dir, web_root, args, env, uid, _tmp).await
    }

    /// The relay's logs so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A plain HTTP/1.1 GET; returns (status, raw headers lower-cased, body).
    pub async fn http_get(&self, path: &str) -> Result<(u16, String, Vec<u8>)> {
        http_get_at(self.addr, path).await
    }
}

/// A plain HTTP/1.1 GET to `addr`; returns (status, raw headers lower-cased, body).
pub async fn http_get_at(addr: SocketAddr, path: &str) -> Result<(u16, String, Vec<u8>)> {
    {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        tokio::time::timeout(REPLY_TIMEOUT, s.read_to_end(&mut buf)).await??;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("no header end"))?;
        let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("no status"))?
            .parse()?;
        Ok((status, head, buf[split + 4..].to_vec()))
    }
}

/// A mailbox's key pair (Ed25519 auth key; the seal key is a random
/// stand-in, the relay never uses it).
#[derive(Debug)]
pub struct Mailbox {
    pub auth: SigningKey,
    pub keys: MailboxPublic,
}

impl Mailbox {
    pub fn random() -> Self {
        let auth = SigningKey::generate(&mut OsRng);
        let mut seal = [0u8; 32];
        OsRng.fill_bytes(&mut seal);
        let keys = MailboxPublic {
            auth: Ed25519Public(auth.verifying_key().to_bytes()),
            seal: X25519Public(seal),
        };
        Mailbox { auth, keys }
    }

    pub fn id(&self) -> MailboxId {
        self.keys.id()
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.auth.sign(msg).to_bytes())
    }
}

/// A stand-in for a sealed envelope: `enc[32] || ChaCha20-Poly1305(random
/// key, plaintext)`, so a marker in the plaintext must never appear on the relay.
pub fn seal(to: MailboxId, plaintext: &[u8]) -> Envelope {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut ct = vec![0u8; 32];
    OsRng.fill_bytes(&mut ct);
    let aead = ChaCha20Poly1305::new(Key::from_slice(&key));
    let body = aead
        .encrypt(Nonce::from_slice(&[0u8; 12]), plaintext)
        .unwrap_or_default();
    ct.extend_from_slice(&body);
    Envelope::from_parts(to, ct).expect("test plaintexts fit the largest bucket")
}

/// An org-signed, empty team directory (`northstar_core::directory`).
pub fn signed_directory(org: &OrgSigningKey, serial: u64, issued_at: UnixTime) -> Vec<u8> {
    Directory::new(org.public(), serial, issued_at)
        .sign(org)
        .expect("the key is the directory's organisation key")
        .encode()
}

/// A directory that names `claimed` as its organisation but is signed by
/// `signer` (a forgery the relay must refuse).
pub fn forged_directory(claimed: &OrgSigningKey, signer: &OrgSigningKey, serial: u64) -> Vec<u8> {
    let mut bytes = signed_directory(signer, serial, UnixTime(3600));
    let from = *signer.public().as_bytes();
    let to = *claimed.public().as_bytes();
    if let Some(at) = bytes.windows(32).position(|w| w == from) {
        bytes[at..at + 32].copy_from_slice(&to);
    }
    bytes
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw protocol client.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    next_id: u32,
    /// The current proof-of-work challenge (from the hello, then each `Deposited`).
    pub pow_challenge: [u8; 32],
    pub pow_difficulty: u8,
    pub max_frame_len: u32,
    pub max_batch: u16,
    /// Frames pushed (request id 0) while waiting for a reply.
    pushes: VecDeque<ServerFrame>,
    /// The client's own local address (to check the relay never logs it).
    pub local_addr: SocketAddr,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self> {
        let (ws, _) = tokio::time::timeout(REPLY_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")??;
        let local_addr = match ws.get_ref() {
            MaybeTlsStream::Plain(s) => s.local_addr()?,
            _ => bail!("unexpected TLS"),
        };
        let mut c = Client {
            ws,
            next_id: 1,
            pow_challenge: [0; 32],
            pow_difficulty: 0,
            max_frame_len: 0,
            max_batch: 0,
            pushes: VecDeque::new(),
            local_addr,
        };
        match c.recv_frame().await? {
            (
                PUSH_REQUEST_ID,
                ServerFrame::Hello {
                    pow_challenge,
                    pow_difficulty,
                    max_frame_len,
                    max_batch,
                },
            ) => {
                c.pow_challenge = pow_challenge;
                c.pow_difficulty = pow_difficulty;
                c.max_frame_len = max_frame_len;
                c.max_batch = max_batch;
            }
            other => bail!("expected hello, got {other:?}"),
        }
        Ok(c)
    }

    /// Sends raw bytes as one binary message.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Sends a text message (not part of the protocol).
    pub async fn send_text(&mut self, s: &str) -> Result<()> {
        self.ws.send(Message::Text(s.into())).await?;
        Ok(())
    }

    /// Next binary message, decoded. Errors on close or timeout.
    pub async fn recv_frame(&mut self) -> Result<(u32, ServerFrame)> {
        loop {
            let msg = tokio::time::timeout(REPLY_TIMEOUT, self.ws.next())
                .await
                .context("no frame in time")?
                .ok_or_else(|| anyhow!("connection closed"))??;
            match msg {
                Message::Binary(b) => return Ok(ServerFrame::decode(&b)?),
                Message::Close(_) => bail!("connection closed"),
                _ => continue,
            }
        }
    }

    /// Whether the relay closes the connection within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Sends a request and returns the reply to it (pushes are queued).
    pub async fn request(&mut self, f: ClientFrame) -> Result<ServerFrame> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(f.encode(id)?).await?;
        self.reply_to(id).await
    }

    /// Waits for the reply to request `id`, queueing pushes.
    pub async fn reply_to(&mut self, id: u32) -> Result<ServerFrame> {
        loop {
            let (rid, frame) = self.recv_frame().await?;
            if rid == id {
                return Ok(frame);
            }
            if rid == PUSH_REQUEST_ID {
                self.pushes.push_back(frame);
            } else {
                bail!("reply to unexpected request {rid}");
            }
        }
    }

    /// A request that must fail with `code`.
    pub async fn expect_error(&mut self, f: ClientFrame, code: ErrorCode) -> Result<()> {
        match self.request(f).await? {
            ServerFrame::Error { code: got } if got == code => Ok(()),
            other => bail!("expected error {code:?}, got {other:?}"),
        }
    }

    /// The next pushed frame, waiting up to `wait`.
    pub async fn next_push(&mut self, wait: Duration) -> Result<Option<ServerFrame>> {
        if let Some(f) = self.pushes.pop_front() {
            return Ok(Some(f));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Ok(msg) = tokio::time::timeout_at(deadline, self.ws.next()).await else {
                return Ok(None);
            };
            match msg.ok_or_else(|| anyhow!("connection closed"))?? {
                Message::Binary(b) => {
                    let (rid, f) = ServerFrame::decode(&b)?;
                    if rid != PUSH_REQUEST_ID {
                        bail!("unexpected reply to request {rid}");
                    }
                    return Ok(Some(f));
                }
                Message::Close(_) => bail!("connection closed"),
                _ => continue,
            }
        }
    }

    /// Collects deliveries until `n` arrived (or fails after the timeout).
    pub async fn deliveries(
        &mut self,
        n: usize,
    ) -> Result<Vec<(northstar_core::EnvelopeId, Envelope)>> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next_push(REPLY_TIMEOUT).await? {
                Some(ServerFrame::Deliver { id, envelope, .. }) => out.push((id, envelope)),
                Some(other) => bail!("unexpected push {other:?}"),
                None => bail!("only {} of {n} deliveries arrived", out.len()),
            }
        }
        Ok(out)
    }

    /// A fresh auth challenge.
    pub async fn challenge(&mut self) -> Result<[u8; 32]> {
        match self.request(ClientFrame::Challenge).await? {
            ServerFrame::Challenge { challenge } => Ok(challenge),
            other => bail!("expected challenge, got {other:?}"),
        }
    }

    /// Registers `mb` (and opens a session on it).
    pub async fn register(&mut self, mb: &Mailbox, pow_required: bool) -> Result<ServerFrame> {
        let c = self.challenge().await?;
        let signature = mb.sign(&frame::register_message(&c, &mb.id(), pow_required));
        self.request(ClientFrame::Register {
            keys: mb.keys,
            pow_required,
            signature,
        })
        .await
    }

    /// Opens a session on `mb`.
    pub async fn auth(&mut self, mb: &Mailbox) -> Result<ServerFrame> {
        let c = self.challenge().await?;
        let signature = mb.sign(&frame::auth_message(&c, &mb.id()));
        self.request(ClientFrame::Auth {
            mailbox: mb.id(),
            signature,
        })
        .await
    }

    /// Deposits a batch, solving the proof of work when `with_pow` (at the
    /// batch's difficulty, `pow::batch_difficulty`).
    pub async fn deposit(
        &mut self,
        envelopes: Vec<Envelope>,
        with_pow: bool,
    ) -> Result<ServerFrame> {
        let pow_nonce = if with_pow {
            Some(pow::solve(
                &self.pow_challenge,
                &frame::deposit_batch_hash(&envelopes),
                pow::batch_difficulty(self.pow_difficulty, envelopes.len()),
            )?)
        } else {
            None
        };
        let reply = self
            .request(ClientFrame::Deposit {
                pow_nonce,
                envelopes,
            })
            .await?;
        if let ServerFrame::Deposited {
            next_pow_challenge, ..
        } = &reply
        {
            self.pow_challenge = *next_pow_challenge;
        }
        Ok(reply)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Byte-level scans of the relay's files.
pub mod scan {
    /// Whether `needle` occurs in `hay`.
    pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Whether any 16-byte piece of `secret` (cut at multiples of 16)
    /// occurs anywhere in `hay`: for random bytes such as ciphertext, a
    /// piece found is a piece left behind.
    pub fn holds_a_piece_of(hay: &[u8], secret: &[u8]) -> bool {
        let pieces: std::collections::HashSet<&[u8]> = secret.chunks_exact(16).collect();
        hay.windows(16).any(|w| pieces.contains(w))
    }

    /// Overwrites every occurrence of each opaque value the clients sent
    /// (ciphertexts, keys, ids, blobs) with zeros, so scans for structure
    /// (timestamps, addresses) are not fooled by random bytes.
    pub fn blank(hay: &mut [u8], opaque: &[Vec<u8>]) {
        // Index the values by their first 8 bytes: one pass over `hay`.
        let mut by_prefix: std::collections::HashMap<[u8; 8], Vec<&[u8]>> = Default::default();
        for o in opaque.iter().filter(|o| o.len() >= 8) {
            let mut k = [0u8; 8];
            k.copy_from_slice(&o[..8]);
            by_prefix.entry(k).or_default().push(o);
        }
        let mut i = 0;
        while i + 8 <= hay.len() {
            let mut k = [0u8; 8];
            k.copy_from_slice(&hay[i..i + 8]);
            let hit = by_prefix.get(&k).and_then(|cands| {
                cands
                    .iter()
                    .find(|c| hay.get(i..i + c.len()) == Some(**c))
                    .map(|c| c.len())
            });
            match hit {
                Some(len) => {
                    hay[i..i + len].fill(0);
                    i += len;
                }
                None => i += 1,
            }
        }
    }

    /// Zeroes the WAL file's own headers (its salts and checksums are
    /// random-looking integers, not data).
    pub fn blank_wal_headers(wal: &mut [u8]) {
        if wal.len() < 32 {
            return;
        }
        let page = u32::from_be_bytes([wal[8], wal[9], wal[10], wal[11]]) as usize;
        wal[..32].fill(0);
        let mut at = 32;
        while page > 0 && at + 24 <= wal.len() {
            wal[at..at + 24].fill(0);
            at += 24 + page;
        }
    }

    /// Offsets of integers (4- or 8-byte, either byte order) or decimal
    /// text inside any of the `windows` (inclusive ranges of Unix seconds:
    /// around the time of the traffic and around each expiry the relay
    /// could have computed from it) that are NOT on a whole hour.
    pub fn fine_timestamps(hay: &[u8], windows: &[(u64, u64)]) -> Vec<usize> {
        let mut hits = Vec::new();
        let fine =
            |v: u64| !v.is_multiple_of(3600) && windows.iter().any(|(lo, hi)| v >= *lo && v <= *hi);
        for i in 0..hay.len() {
            if i + 4 <= hay.len() {
                let b = [hay[i], hay[i + 1], hay[i + 2], hay[i + 3]];
                if fine(u64::from(u32::from_be_bytes(b))) || fine(u64::from(u32::from_le_bytes(b)))
                {
                    hits.push(i);
                    continue;
                }
            }
            if i + 8 <= hay.len() {
                let mut b = [0u8; 8];
                b.copy_from_slice(&hay[i..i + 8]);
                if fine(u64::from_be_bytes(b)) || fine(u64::from_le_bytes(b)) {
                    hits.push(i);
                    continue;
                }
            }
        }
        // Decimal text (seconds).
        let text = String::from_utf8_lossy(hay);
        let digits: Vec<u8> = text.bytes().collect();
        let mut i = 0;
        while i < digits.len() {
            if digits[i].is_ascii_digit() {
                let start = i;
                while i < digits.len() && digits[i].is_ascii_digit() {
                    i += 1;
                }
                if let Ok(s) = std::str::from_utf8(&digits[start..i])
                    && let Ok(v) = s.parse::<u64>()
                    && fine(v)
                {
                    hits.push(start);
                }
            } else {
                i += 1;
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn scanners_find_what_they_look_for() {
        let t: u64 = 1_800_000_123;
        let w = [(t - 10, t + 10)];
        let mut hay = vec![0u8; 64];
        hay[10..14].copy_from_slice(&(t as u32).to_le_bytes());
        assert_eq!(scan::fine_timestamps(&hay, &w), vec![10]);
        let on_hour = t - t % 3600;
        assert!(
            scan::fine_timestamps(&on_hour.to_be_bytes(), &[(on_hour - 5, on_hour + 5)]).is_empty()
        );
        assert_eq!(
            scan::fine_timestamps(format!("x{t}y").as_bytes(), &w),
            vec![1]
        );
        let secret = b"0123456789abcdef".to_vec();
        let mut hay2 = b"xx0123456789abcdefyy".to_vec();
        assert!(scan::contains(&hay2, &secret));
        scan::blank(&mut hay2, std::slice::from_ref(&secret));
        assert!(!scan::contains(&hay2, &secret));
        assert_eq!(&hay2[..2], b"xx");
    }
}

/// The `northstar` command-line client as a person runs it (the tour and
/// the multi-node test).
pub mod cli {
    use std::path::PathBuf;
    use std::process::Stdio;

    use serde_json::Value;
    use tokio::io::AsyncWriteExt;

    use crate::bin_dir;

    /// One person's view: the `northstar` binary with their home and the relay.
    #[derive(Debug)]
    pub struct Cli {
        pub relay: String,
        pub home: PathBuf,
        pub org: Option<String>,
    }

    #[derive(Debug)]
    pub struct Run {
        pub ok: bool,
        pub stdout: String,
        pub stderr: String,
    }

    impl Run {
        pub fn json(&self) -> Value {
            serde_json::from_str(self.stdout.trim())
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
        }
    }

    impl Cli {
        pub async fn run(&self, args: &[&str], stdin: &str) -> Run {
            let mut cmd = tokio::process::Command::new(bin_dir().join("northstar"));
            cmd.args(args)
                .env("NORTHSTAR_RELAY", &self.relay)
                .env("NORTHSTAR_HOME", &self.home)
                .env_remove("NORTHSTAR_ORG")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(org) = &self.org {
                cmd.env("NORTHSTAR_ORG", org);
            }
            let mut child = cmd
                .spawn()
                .expect("build the northstar binary first (cargo build --workspace --bins)");
            let mut input = child.stdin.take().unwrap();
            // A command that fails before reading its input (a refused
            // argument) closes the pipe: that is its answer, not an error.
            if let Err(e) = input.write_all(stdin.as_bytes()).await {
                assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
            }
            drop(input);
            let out = child.wait_with_output().await.unwrap();
            Run {
                ok: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }

        pub async fn ok(&self, args: &[&str], stdin: &str) -> Run {
            let r = self.run(args, stdin).await;
            assert!(
                r.ok,
                "northstar {args:?} failed:\n{}\n{}",
                r.stdout, r.stderr
            );
            r
        }

        /// `counselor init`: the new device's key.
        pub async fn counselor_init(&self, pass: &str) -> String {
            let out = self.ok(&["--json", "counselor", "init"], pass).await.json();
            out["device"].as_str().unwrap().to_owned()
        }

        /// `admin add-device` of `device` to `team` (not yet published).
        pub async fn add_device(&self, team: &str, label: &str, device: &str, pass: &str) {
            self.ok(
                &[
                    "admin",
                    "add-device",
                    "--team",
                    team,
                    "--label",
                    label,
                    "--device",
                    device,
                ],
                pass,
            )
            .await;
        }

        /// `seeker start` in Spanish to `team`: the JSON it prints (the
        /// codename among it). The question goes on standard input, as a
        /// person's should (never on the command line).
        pub async fn seeker_start(&self, team: &str, message: &str) -> Value {
            self.ok(
                &[
                    "--json",
                    "seeker",
                    "start",
                    "--team",
                    team,
                    "--language",
                    "es",
                ],
                &format!("{message}\n"),
            )
            .await
            .json()
        }

        pub async fn fails(&self, args: &[&str], stdin: &str, says: &str) -> Run {
            let r = self.run(args, stdin).await;
            assert!(
                !r.ok,
                "northstar {args:?} should have failed:\n{}",
                r.stdout
            );
            assert!(
                r.stderr.contains(says),
                "northstar {args:?}: expected {says:?} in {:?}",
                r.stderr
            );
            assert_eq!(
                r.stderr.trim().lines().count(),
                1,
                "one clear sentence, got {:?}",
                r.stderr
            );
            r
        }
    }
}
