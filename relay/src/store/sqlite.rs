//! The SQLite [`Store`]: one file under the data directory, nothing else to install.
//!
//! - **One writer.** Every write is a job sent to a single writer thread. The
//!   thread takes the first queued job, then whatever else is queued (up to
//!   [`SqliteOptions::write_batch`]), runs them in ONE transaction, commits,
//!   and only then answers each caller. If a job fails, the transaction is
//!   rolled back and the jobs run again, each in its own savepoint, so the
//!   failing one changes nothing and the others commit. Under load this is group commit: one
//!   `fsync` for many deposits.
//! - **Durability.** WAL with `synchronous=FULL`: a committed transaction is
//!   on disk before the caller is answered, so an acknowledged deposit
//!   survives `kill -9` and power loss alike. (`NORMAL` would survive a process
//!   crash but could lose the last commits on power loss; group commit makes
//!   `FULL` cheap enough that we do not take that risk.)
//! - **Reads** use a second, read-only connection (WAL readers do not block
//!   the writer).
//! - **Deletion** uses `secure_delete`, so deleted ciphertext is overwritten
//!   rather than left in free pages; and since the WAL keeps the pages a
//!   deletion overwrote until it is checkpointed, a write that deleted
//!   something makes the writer checkpoint the WAL and truncate it within
//!   [`SqliteOptions::erase_within`] (one checkpoint for all the deletions
//!   of that span, between group commits).
//! - **Files** are the relay user's own: the database is created `0600`
//!   (SQLite gives its `-wal` and `-shm` the database file's mode) and an
//!   existing one loses any group or other permission on open.
//! - **Migrations** are numbered; `PRAGMA user_version` records the last applied.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use northstar_core::UnixTime;
use northstar_core::frame::{ONE_TIME_PREKEY_LEN, OneTimePrekey};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::{Ed25519Public, MailboxPublic, X25519Public};
use northstar_core::sealed::Envelope;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    Admit, DepositOutcome, DirectoryRecord, MailboxRecord, NewEnvelope, PrekeyBundle, PrekeyCaps,
    PrekeyCounts, PrekeyUpload, Quotas, StateBlob, Store, StoreError, StoreFuture, StoredEnvelope,
    SweepCounts, admit, by_recipient, i64_of, id32, pq_prekey, time_of,
};
use super::{BlobQuotas, NewChunk, admit_chunk};
use northstar_core::attachment::BlobId;

/// Schema migrations; entry `n` moves `user_version` from `n` to `n + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE mailboxes (
        id           BLOB PRIMARY KEY,
        auth_pk      BLOB NOT NULL,
        seal_pk      BLOB NOT NULL,
        pow_required INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE envelopes (
        seq        INTEGER PRIMARY KEY,
        mailbox    BLOB NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        id         BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        UNIQUE (mailbox, id)
    );
    CREATE INDEX envelopes_expiry ON envelopes(expires_at);
    CREATE TABLE signed_prekeys (
        mailbox BLOB PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        bundle  BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE one_time_prekeys (
        mailbox BLOB NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        prekey_id INTEGER NOT NULL,
        public  BLOB NOT NULL,
        PRIMARY KEY (mailbox, prekey_id)
    ) WITHOUT ROWID;
    CREATE TABLE states (
        mailbox    BLOB PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        expires_at INTEGER NOT NULL,
        blob       BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE directories (
        org_key   BLOB PRIMARY KEY,
        serial    BLOB NOT NULL,
        directory BLOB NOT NULL
    ) WITHOUT ROWID;
", "
    -- Per-mailbox envelope count and bytes, kept by triggers, so the quota
    -- check on every deposit is one row read instead of a scan.
    ALTER TABLE mailboxes ADD COLUMN envelope_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN envelope_bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET
        envelope_count = (SELECT COUNT(*) FROM envelopes WHERE mailbox = mailboxes.id),
        envelope_bytes = (SELECT COALESCE(SUM(LENGTH(ciphertext)), 0) FROM envelopes WHERE mailbox = mailboxes.id);
    CREATE TRIGGER envelopes_count_insert AFTER INSERT ON envelopes BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count + 1,
                             envelope_bytes = envelope_bytes + LENGTH(NEW.ciphertext)
        WHERE id = NEW.mailbox;
    END;
    CREATE TRIGGER envelopes_count_delete AFTER DELETE ON envelopes BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count - 1,
                             envelope_bytes = envelope_bytes - LENGTH(OLD.ciphertext)
        WHERE id = OLD.mailbox;
    END;
", "
    -- A mailbox's pending envelopes in deposit order straight from an index:
    -- without it every delivery read sorted the mailbox's whole backlog
    -- (ciphertext included) in a temporary b-tree.
    CREATE INDEX envelopes_mailbox_seq ON envelopes(mailbox, seq);
", MIGRATION_PER_MAILBOX_SEQ, "
    -- One-time ML-KEM prekeys (protocol v2): `public` is the opaque
    -- `pk[1184] || sig[64]`. A rowid table, not WITHOUT ROWID: rows of
    -- 1.2 KB are far past the size where clustering on the key pays.
    CREATE TABLE one_time_pq_prekeys (
        mailbox   BLOB NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        prekey_id INTEGER NOT NULL,
        public    BLOB NOT NULL,
        PRIMARY KEY (mailbox, prekey_id)
    );
", MIGRATION_BLOBS, "
    -- The envelope counters are kept by the statements that insert and
    -- delete envelopes (one UPDATE per mailbox per write) instead of a
    -- trigger per row: a trigger made SQLite keep a statement journal for
    -- every insert and delete (a copy of each page touched), a tenth of
    -- the writer's time under load.
    DROP TRIGGER envelopes_count_insert;
    DROP TRIGGER envelopes_count_delete;
"];

/// Moves a mailbox's envelope counters by what a write stored or deleted.
const COUNTERS_SQL: &str = "UPDATE mailboxes SET envelope_count = envelope_count + ?2,
     envelope_bytes = envelope_bytes + ?3 WHERE id = ?1";

/// Deletes one envelope of a mailbox, giving back its length.
const DELETE_ENVELOPE_SQL: &str =
    "DELETE FROM envelopes WHERE mailbox = ?1 AND id = ?2 RETURNING LENGTH(ciphertext)";

/// Moves `mailbox`'s counters by `count` envelopes of `bytes` in all.
fn move_counters(
    c: &Connection,
    mailbox: &[u8],
    count: i64,
    bytes: i64,
) -> Result<(), rusqlite::Error> {
    if count != 0 || bytes != 0 {
        c.prepare_cached(COUNTERS_SQL)?
            .execute(params![mailbox, count, bytes])?;
    }
    Ok(())
}

/// Migration: attachment blobs (issue 21). A separate step so a merge with
/// other migrations only renumbers it.
const MIGRATION_BLOBS: &str = "
    -- Attachment blobs: opaque sealed chunks of one size, owned by (and
    -- charged to) a mailbox, deleted with it (cascade) or at expiry. No
    -- rowid on either table: nothing on disk orders blobs or chunks across
    -- mailboxes. `blob_bytes` is the mailbox's blobs' reserved size
    -- (chunk_count x 65552 each), kept by triggers, shared with envelopes
    -- in the byte quota.
    CREATE TABLE blobs (
        id          BLOB PRIMARY KEY,
        mailbox     BLOB NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        chunk_count INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX blobs_mailbox ON blobs(mailbox);
    CREATE INDEX blobs_expiry ON blobs(expires_at);
    CREATE TABLE blob_chunks (
        blob  BLOB NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
        idx   INTEGER NOT NULL,
        data  BLOB NOT NULL,
        PRIMARY KEY (blob, idx)
    ) WITHOUT ROWID;
    ALTER TABLE mailboxes ADD COLUMN blob_bytes INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER blobs_bytes_insert AFTER INSERT ON blobs BEGIN
        UPDATE mailboxes SET blob_bytes = blob_bytes + NEW.chunk_count * 65552
        WHERE id = NEW.mailbox;
    END;
    CREATE TRIGGER blobs_bytes_delete AFTER DELETE ON blobs BEGIN
        UPDATE mailboxes SET blob_bytes = blob_bytes - OLD.chunk_count * 65552
        WHERE id = OLD.mailbox;
    END;
";

/// Migration: per-mailbox sequence numbers (issue 17). A separate step so a
/// merge with other migrations only renumbers it.
const MIGRATION_PER_MAILBOX_SEQ: &str = "
    -- Per-mailbox sequence numbers: nothing on disk orders envelopes across
    -- mailboxes. The table has no rowid (a rowid table numbers every insert
    -- in one global order); its key is (mailbox, seq), seq counting from 1
    -- within each mailbox (one above the mailbox's highest stored, so it
    -- starts over once a mailbox is emptied). Delivery order within a
    -- mailbox is unchanged. The old numbers are renumbered per mailbox in
    -- their order; DROP TABLE fires no trigger, so the counters stand.
    CREATE TABLE envelopes_per_mailbox (
        mailbox    BLOB NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        seq        INTEGER NOT NULL,
        id         BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        PRIMARY KEY (mailbox, seq),
        UNIQUE (mailbox, id)
    ) WITHOUT ROWID;
    INSERT INTO envelopes_per_mailbox (mailbox, seq, id, expires_at, ciphertext)
        SELECT mailbox, ROW_NUMBER() OVER (PARTITION BY mailbox ORDER BY seq),
               id, expires_at, ciphertext
        FROM envelopes;
    DROP TABLE envelopes;
    ALTER TABLE envelopes_per_mailbox RENAME TO envelopes;
    CREATE INDEX envelopes_expiry ON envelopes(expires_at);
    CREATE TRIGGER envelopes_count_insert AFTER INSERT ON envelopes BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count + 1,
                             envelope_bytes = envelope_bytes + LENGTH(NEW.ciphertext)
        WHERE id = NEW.mailbox;
    END;
    CREATE TRIGGER envelopes_count_delete AFTER DELETE ON envelopes BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count - 1,
                             envelope_bytes = envelope_bytes - LENGTH(OLD.ciphertext)
        WHERE id = OLD.mailbox;
    END;
";

/// Stores one envelope under the next sequence number of its mailbox
/// (per mailbox: see the last migration); a copy the mailbox already holds
/// is ignored.
const INSERT_ENVELOPE_SQL: &str =
    "INSERT OR IGNORE INTO envelopes (mailbox, seq, id, expires_at, ciphertext)
     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM envelopes WHERE mailbox = ?1), ?2, ?3, ?4)";

/// A mailbox's pending envelopes, oldest first (read along the primary key,
/// `(mailbox, seq)`).
const PENDING_SQL: &str = "SELECT id, expires_at, ciphertext FROM envelopes
     WHERE mailbox = ?1 AND expires_at > ?2 ORDER BY seq LIMIT ?3";

/// Default number of queued writes committed in one transaction: enough to
/// amortise one fsync over a burst of deposits, small enough that a
/// transaction stays short (milliseconds).
pub const DEFAULT_WRITE_BATCH: usize = 256;

/// Depth of the queue in front of the writer; callers wait (backpressure)
/// when it is full.
const WRITE_QUEUE_DEPTH: usize = 4096;

/// Default bound on how long deleted data stays in the database files: the
/// writer checkpoints and truncates the WAL at most this long after a write
/// that deleted something (acknowledged or expired envelopes, a replaced or
/// deleted state blob, a deleted mailbox).
pub const DEFAULT_ERASE_WITHIN: Duration = Duration::from_secs(5);

/// A checkpoint readers kept from finishing is tried again after this.
const CHECKPOINT_RETRY: Duration = Duration::from_millis(500);

/// Tuning of the SQLite store.
#[derive(Clone, Copy, Debug)]
pub struct SqliteOptions {
    /// Most writes committed in one transaction.
    pub write_batch: usize,
    /// Largest database file, bytes (0: no cap). Enforced by SQLite's
    /// `max_page_count`: a write that would grow past it fails with
    /// `SQLITE_FULL`, is rolled back and answered [`StoreError::Full`].
    pub max_database_bytes: u64,
    /// At most this long after a write that deleted something, the WAL is
    /// checkpointed into the database file (where `secure_delete` already
    /// zeroed what was deleted) and truncated to nothing, so no copy of
    /// deleted data is left in either file. Zero: after the group commit.
    pub erase_within: Duration,
    /// Page size of a NEW database, bytes (a power of two, 512 to 65,536);
    /// an existing database keeps its own. Larger pages hold more of a
    /// mailbox's consecutive envelopes in one leaf, so a busy group commit
    /// writes fewer WAL frames (more throughput); at low rates each commit
    /// writes whole pages, so smaller pages keep commits, and latency, short.
    pub page_bytes: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            write_batch: DEFAULT_WRITE_BATCH,
            max_database_bytes: 0,
            erase_within: DEFAULT_ERASE_WITHIN,
            page_bytes: DEFAULT_PAGE_BYTES,
        }
    }
}

/// One queued write and the caller waiting for it.
trait WriteJob: Send {
    /// Runs inside the transaction; says whether it succeeded. It may run
    /// twice: a first run whose transaction was rolled back changed nothing.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether its (last) run deleted or replaced stored data.
    fn erased(&self) -> bool;
    /// Answers the caller: its result if the transaction committed.
    fn finish(self: Box<Self>, committed: bool);
}

struct Write<T, F> {
    f: F,
    /// Says from a successful result whether the write deleted something.
    erases: fn(&T) -> bool,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

/// For writes that never delete.
fn erases_nothing<T>(_: &T) -> bool {
    false
}

impl<T, F> WriteJob for Write<T, F>
where
    T: Send,
    F: Fn(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result = (self.f)(conn).map_err(full);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn erased(&self) -> bool {
        matches!(&self.result, Some(Ok(v)) if (self.erases)(v))
    }

    fn finish(self: Box<Self>, committed: bool) {
        let answer = match self.result {
            Some(result) if committed => result,
            _ => Err(StoreError::Closed),
        };
        let _ = self.reply.send(answer);
    }
}

type Job = Box<dyn WriteJob>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// The SQLite store handle (cheap to share behind an `Arc`).
pub struct SqliteStore {
    writer: mpsc::Sender<Msg>,
    reader: Arc<Mutex<Connection>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The database file (its size, with the WAL's, is a metric).
    path: std::path::PathBuf,
}

impl core::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    configure_pages(conn, DEFAULT_PAGE_BYTES)
}

/// [`configure`] with the page size of a new database (an existing one,
/// or one in WAL mode already, keeps its own).
fn configure_pages(conn: &Connection, page_bytes: u32) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "page_size", page_bytes)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    // Statement and savepoint journals (a group commit retried after a
    // failed write gives each write a savepoint) in memory rather than a
    // temporary file: no write syscalls for them, and no rollback images
    // of ciphertext in a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Pages read through a memory map instead of a `pread` copy each (the
    // copies were a tenth of the relay's CPU at saturation). It changes
    // nothing written, or when. (A 16 MiB page cache was tried too: it let
    // a stalled subscriber's backlog grow the relay's memory past the
    // bound `pressure.rs` holds it to, so SQLite's default 2 MiB stays.)
    conn.pragma_update(None, "mmap_size", SQLITE_MMAP_BYTES)?;
    // The WAL is checkpointed (and truncated) within `erase_within` of any
    // deletion anyway; the automatic checkpoint at SQLite's default 1,000
    // pages ran inside the commits, several times as often, copying pages
    // that the next seconds overwrite again (15 % of the relay's CPU at
    // saturation).
    conn.pragma_update(None, "wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(())
}

/// WAL pages after which a commit checkpoints on its own.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: i64 = 8192;

/// Default [`SqliteOptions::page_bytes`]: SQLite's own. 16 KiB gave about a
/// sixth more throughput at saturation but a longer p99 at 1,000 msg/s
/// (docs/BENCHMARKS.md), and latency is what a person waits for.
pub const DEFAULT_PAGE_BYTES: u32 = 4096;

/// Bytes of the database file SQLite reads through a memory map.
const SQLITE_MMAP_BYTES: i64 = 256 << 20;

fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = conn
            .execute_batch(sql)
            .and_then(|()| conn.pragma_update(None, "user_version", (n + 1) as i64));
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The database file and the two SQLite keeps beside it.
fn database_files(path: &Path) -> [std::path::PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

/// Makes the database files the relay user's own: a new database file is
/// created `0600` before SQLite opens it (SQLite creates its `-wal` and
/// `-shm` with the database file's mode), and existing files lose every
/// group and other permission (the owner's are left as they are: a file
/// the operator made read-only stays so, and is refused below).
#[cfg(unix)]
fn owner_only(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let refused = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            StoreError::ReadOnly
        }
        _ => StoreError::Files { source },
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused(e)),
    }
    for file in database_files(path) {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|source| StoreError::Files { source })?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        owner_only(path)?;
        let writer = Connection::open(path)?;
        // SQLite quietly opens a file it may not write read-only.
        if writer.is_readonly(rusqlite::DatabaseName::Main)? {
            return Err(StoreError::ReadOnly);
        }
        configure_pages(&writer, options.page_bytes).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                StoreError::ReadOnly
            }
            _ => e.into(),
        })?;
        migrate(&writer)?;
        if options.max_database_bytes > 0 {
            let page: i64 = writer.pragma_query_value(None, "page_size", |r| r.get(0))?;
            let pages = options.max_database_bytes / page.max(512) as u64;
            writer.pragma_update(
                None,
                "max_page_count",
                i64::try_from(pages).unwrap_or(i64::MAX),
            )?;
        }
        let reader = Connection::open(path)?;
        configure(&reader)?;
        reader.pragma_update(None, "query_only", "ON")?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_DEPTH);
        let batch = options.write_batch.max(1);
        let erase_within = options.erase_within;
        let thread = std::thread::Builder::new()
            .name("northstar-writer".into())
            .spawn(move || writer_loop(writer, rx, batch, erase_within))
            .map_err(|_| StoreError::Closed)?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            thread: Mutex::new(Some(thread)),
            path: path.to_path_buf(),
        })
    }

    fn write<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        self.write_erasing(erases_nothing, f)
    }

    /// A write that may delete stored data; `erases` says from its result
    /// whether it did (then the WAL is checkpointed within `erase_within`).
    fn write_erasing<T: Send + 'static>(
        &self,
        erases: fn(&T) -> bool,
        f: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            let job: Job = Box::new(Write {
                f,
                erases,
                result: None,
                reply,
            });
            self.writer
                .send(Msg::Job(job))
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = reader.lock().map_err(|_| StoreError::Closed)?;
                f(&conn)
            })
            .await
            .map_err(|_| StoreError::Closed)?
        })
    }
}

/// `SQLITE_FULL` (the `max_page_count` cap or the disk) as [`StoreError::Full`].
fn full(e: StoreError) -> StoreError {
    match &e {
        StoreError::Sqlite { source }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
        {
            StoreError::Full
        }
        _ => e,
    }
}

/// Waits for the next message, at most until `deadline`; `Err(())` when
/// the deadline passed first.
fn next_message(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::Receiver<Msg>,
    deadline: Option<Instant>,
) -> Result<Option<Msg>, ()> {
    match deadline {
        None => Ok(rt.block_on(rx.recv())),
        // The timer is made inside the runtime (it needs its time driver).
        Some(at) => rt
            .block_on(async {
                tokio::time::timeout_at(tokio::time::Instant::from_std(at), rx.recv()).await
            })
            .map_err(|_| ()),
    }
}

/// Copies the WAL into the database file and truncates it to zero bytes,
/// so pages a deletion overwrote survive in neither file. Fails (to be
/// tried again) while a reader still needs the WAL.
fn checkpoint_truncate(conn: &Connection) -> bool {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .is_ok_and(|busy| busy == 0)
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    batch: usize,
    erase_within: Duration,
) {
    // A timer for the erase deadline; the thread runs nothing else on it.
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let mut closing: Option<oneshot::Sender<()>> = None;
    // When the WAL must be checkpointed: set by the first committed
    // deletion since the last checkpoint.
    let mut erase_by: Option<Instant> = None;
    while closing.is_none() {
        let first = match next_message(&rt, &mut rx, erase_by) {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(()) => {
                erase_by = (!checkpoint_truncate(&conn)).then(|| Instant::now() + CHECKPOINT_RETRY);
                continue;
            }
        };
        let mut msgs = vec![first];
        while msgs.len() < batch {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut jobs: Vec<Job> = Vec::with_capacity(msgs.len());
        for m in msgs {
            match m {
                // Jobs queued after Close are answered `Closed` below.
                Msg::Close(done) if closing.is_none() => closing = Some(done),
                Msg::Close(_) => {}
                Msg::Job(job) if closing.is_some() => job.finish(false),
                Msg::Job(job) => jobs.push(job),
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        let committed = run_group(&conn, &mut jobs);
        crate::metrics::METRICS
            .commit_seconds
            .observe(started.elapsed());
        if committed && erase_by.is_none() && jobs.iter().any(|j| j.erased()) {
            erase_by = Some(Instant::now() + erase_within);
        }
        for job in jobs {
            job.finish(committed);
        }
        // Under steady load the queue never empties: the deadline is
        // checked between groups too.
        if erase_by.is_some_and(|at| Instant::now() >= at) {
            erase_by = (!checkpoint_truncate(&conn)).then(|| Instant::now() + CHECKPOINT_RETRY);
        }
    }
    // Refuse what is still queued, then checkpoint the WAL into the main file.
    rx.close();
    while let Ok(m) = rx.try_recv() {
        if let Msg::Job(job) = m {
            job.finish(false);
        }
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Runs the jobs in one transaction and commits it; says whether it committed.
///
/// Fast path: the jobs run one after another with nothing between them.
/// If one fails (a quota, an unknown mailbox, a full disk), the whole
/// transaction is rolled back and the jobs run again, each in its own
/// savepoint, so the failing one changes nothing and the others commit.
/// Savepoints on every job cost a copy of each page a job touches (a tenth
/// of the writer's time under load), and jobs rarely fail. A failure that
/// makes SQLite roll the whole transaction back (`SQLITE_FULL` in a
/// statement that keeps no statement journal) starts the savepoint pass
/// over without the failed job.
fn run_group(conn: &Connection, jobs: &mut [Job]) -> bool {
    if run_cached(conn, "BEGIN IMMEDIATE").is_err() {
        return false;
    }
    if jobs.iter_mut().all(|job| job.run(conn)) {
        return commit(conn);
    }
    // SQLite may already have rolled back (after SQLITE_FULL): ignore that.
    let _ = run_cached(conn, "ROLLBACK");
    let mut failed = vec![false; jobs.len()];
    'again: loop {
        if run_cached(conn, "BEGIN IMMEDIATE").is_err() {
            return false;
        }
        for (i, job) in jobs.iter_mut().enumerate() {
            if failed[i] {
                // Its answer stays the error it failed with.
                continue;
            }
            if run_cached(conn, "SAVEPOINT op").is_err() {
                let _ = run_cached(conn, "ROLLBACK");
                return false;
            }
            let end = if job.run(conn) {
                run_cached(conn, "RELEASE op")
            } else {
                failed[i] = true;
                if conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (a statement
                    // without a statement journal failing with
                    // SQLITE_FULL): run the others again without it.
                    continue 'again;
                }
                run_cached(conn, "ROLLBACK TO op").and_then(|()| run_cached(conn, "RELEASE op"))
            };
            if end.is_err() {
                let _ = run_cached(conn, "ROLLBACK");
                return false;
            }
        }
        return commit(conn);
    }
}

fn commit(conn: &Connection) -> bool {
    if run_cached(conn, "COMMIT").is_ok() {
        return true;
    }
    let _ = run_cached(conn, "ROLLBACK");
    false
}

/// Runs a parameterless statement from the statement cache (the writer
/// runs the same few for every write; parsing them each time was a tenth
/// of the relay's CPU under load).
fn run_cached(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn exists(conn: &Connection, id: &MailboxId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM mailboxes WHERE id = ?1")?
        .query_row([&id.as_bytes()[..]], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Store for SqliteStore {
    fn register(&self, keys: MailboxPublic, pow_required: bool) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET pow_required = excluded.pow_required",
                params![
                    &keys.id().as_bytes()[..],
                    &keys.auth.0[..],
                    &keys.seal.0[..],
                    pow_required
                ],
            )?;
            Ok(())
        })
    }

    fn mailbox(&self, id: MailboxId) -> StoreFuture<'_, Option<MailboxRecord>> {
        self.read(move |c| {
            let row = c
                .prepare_cached(
                    "SELECT auth_pk, seal_pk, pow_required FROM mailboxes WHERE id = ?1",
                )?
                .query_row([&id.as_bytes()[..]], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                })
                .optional()?;
            row.map(|(a, s, pow_required)| {
                Ok(MailboxRecord {
                    keys: MailboxPublic {
                        auth: Ed25519Public(id32(a, "mailbox auth key")?),
                        seal: X25519Public(id32(s, "mailbox seal key")?),
                    },
                    pow_required,
                })
            })
            .transpose()
        })
    }

    fn deposit(&self, batch: Vec<NewEnvelope>, quotas: Quotas) -> StoreFuture<'_, DepositOutcome> {
        self.write(move |c| {
            let mut out = DepositOutcome::default();
            for (to, positions) in by_recipient(&batch) {
                let m = &to.as_bytes()[..];
                // Envelopes and bytes it holds (reading them also proves the
                // mailbox exists: an unknown recipient's envelopes are
                // refused, and the others go on).
                let Some((count, bytes)): Option<(i64, i64)> = c
                    .prepare_cached(
                        "SELECT envelope_count, envelope_bytes + blob_bytes FROM mailboxes WHERE id = ?1",
                    )?
                    .query_row([m], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                else {
                    out.unknown.extend(positions);
                    continue;
                };
                let mut held = Vec::with_capacity(positions.len());
                for &i in &positions {
                    held.push(
                        c.prepare_cached("SELECT 1 FROM envelopes WHERE mailbox = ?1 AND id = ?2")?
                            .query_row(params![m, &batch[i].id.as_bytes()[..]], |_| Ok(()))
                            .optional()?
                            .is_some(),
                    );
                }
                let held_now = (count.max(0) as u64, bytes.max(0) as u64);
                match admit(&batch, &positions, &held, held_now, quotas) {
                    Admit::Refuse(at) => out.over_quota.extend(at),
                    Admit::Store(at) => {
                        let mut insert = c.prepare_cached(INSERT_ENVELOPE_SQL)?;
                        let (mut count, mut bytes) = (0i64, 0i64);
                        for i in at {
                            let e = &batch[i];
                            let ct = e.envelope.ciphertext();
                            let n = insert.execute(params![
                                m,
                                &e.id.as_bytes()[..],
                                i64_of(e.expires_at),
                                ct
                            ])?;
                            if n > 0 {
                                count += 1;
                                bytes += ct.len() as i64;
                            }
                        }
                        out.stored += count as u64;
                        move_counters(c, m, count, bytes)?;
                    }
                }
            }
            out.over_quota.sort_unstable();
            out.unknown.sort_unstable();
            Ok(out)
        })
    }

    fn pending(
        &self,
        mailbox: MailboxId,
        now: UnixTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEnvelope>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(PENDING_SQL)?;
            let rows = stmt.query_map(
                params![
                    &mailbox.as_bytes()[..],
                    i64_of(now),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (id, exp, ct) = row?;
                out.push(StoredEnvelope {
                    id: EnvelopeId::from_bytes(id32(id, "envelope id")?),
                    expires_at: time_of(exp),
                    envelope: Envelope::from_parts(mailbox, ct)
                        .map_err(|_| StoreError::Corrupt { what: "envelope" })?,
                });
            }
            Ok(out)
        })
    }

    fn ack(&self, mailbox: MailboxId, ids: Vec<EnvelopeId>) -> StoreFuture<'_, u64> {
        self.ack_many(vec![(mailbox, ids)])
    }

    fn ack_many(&self, acks: Vec<(MailboxId, Vec<EnvelopeId>)>) -> StoreFuture<'_, u64> {
        // One write for every connection's acknowledgements: it joins the
        // writer's group like any other, so it shares a commit.
        self.write_erasing(
            |deleted| *deleted > 0,
            move |c| {
                let mut n = 0u64;
                for (mailbox, ids) in &acks {
                    let m = &mailbox.as_bytes()[..];
                    let (mut count, mut bytes) = (0i64, 0i64);
                    let mut stmt = c.prepare_cached(DELETE_ENVELOPE_SQL)?;
                    for id in ids {
                        let gone: Option<i64> = stmt
                            .query_row(params![m, &id.as_bytes()[..]], |r| r.get(0))
                            .optional()?;
                        if let Some(len) = gone {
                            count += 1;
                            bytes += len;
                        }
                    }
                    drop(stmt);
                    move_counters(c, m, -count, -bytes)?;
                    n += count as u64;
                }
                Ok(n)
            },
        )
    }

    fn put_directory(&self, dir: DirectoryRecord) -> StoreFuture<'_, ()> {
        self.write(move |c| {
            let old: Option<(Vec<u8>, Vec<u8>)> = c
                .query_row(
                    "SELECT serial, directory FROM directories WHERE org_key = ?1",
                    [&dir.org_key[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((serial, bytes)) = old {
                let serial: [u8; 8] = serial
                    .try_into()
                    .map_err(|_| StoreError::Corrupt { what: "directory serial" })?;
                let serial = u64::from_be_bytes(serial);
                if dir.serial < serial || (dir.serial == serial && bytes != dir.bytes) {
                    return Err(StoreError::DirectoryRollback);
                }
            }
            c.execute(
                "INSERT OR REPLACE INTO directories (org_key, serial, directory) VALUES (?1, ?2, ?3)",
                params![&dir.org_key[..], &dir.serial.to_be_bytes()[..], &dir.bytes],
            )?;
            Ok(())
        })
    }

    fn directory(&self, org_key: [u8; 32]) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT directory FROM directories WHERE org_key = ?1",
                [&org_key[..]],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    fn put_prekeys(
        &self,
        mailbox: MailboxId,
        upload: PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StoreFuture<'_, PrekeyCounts> {
        self.write(move |c| {
            let m = &mailbox.as_bytes()[..];
            if !exists(c, &mailbox)? {
                return Err(StoreError::UnknownMailbox);
            }
            c.execute(
                "INSERT OR REPLACE INTO signed_prekeys (mailbox, bundle) VALUES (?1, ?2)",
                params![m, &upload.signed_bundle],
            )?;
            if upload.replace {
                c.execute("DELETE FROM one_time_prekeys WHERE mailbox = ?1", [m])?;
                c.execute("DELETE FROM one_time_pq_prekeys WHERE mailbox = ?1", [m])?;
            }
            let mut stmt = c.prepare_cached(
                "INSERT OR REPLACE INTO one_time_prekeys (mailbox, prekey_id, public) VALUES (?1, ?2, ?3)",
            )?;
            for k in &upload.one_time {
                stmt.execute(params![m, k.id, &k.public.0[..]])?;
            }
            let mut stmt = c.prepare_cached(
                "INSERT OR REPLACE INTO one_time_pq_prekeys (mailbox, prekey_id, public) VALUES (?1, ?2, ?3)",
            )?;
            for k in &upload.one_time_pq {
                stmt.execute(params![m, k.id, &k.public[..]])?;
            }
            let count = |table: &str| -> Result<u64, StoreError> {
                let n: i64 = c.query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE mailbox = ?1"),
                    [m],
                    |r| r.get(0),
                )?;
                Ok(n as u64)
            };
            let counts = PrekeyCounts {
                one_time: count("one_time_prekeys")?,
                one_time_pq: count("one_time_pq_prekeys")?,
            };
            // Over a cap: the error rolls the whole upload back.
            if counts.one_time > caps.max_one_time || counts.one_time_pq > caps.max_one_time_pq {
                return Err(StoreError::QuotaExceeded);
            }
            Ok(counts)
        })
    }

    fn take_prekeys(&self, mailbox: MailboxId) -> StoreFuture<'_, Option<PrekeyBundle>> {
        self.write(move |c| {
            let m = &mailbox.as_bytes()[..];
            let Some(signed_bundle) = c
                .query_row(
                    "SELECT bundle FROM signed_prekeys WHERE mailbox = ?1",
                    [m],
                    |r| r.get::<_, Vec<u8>>(0),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let take = |table: &str| -> Result<Option<(u32, Vec<u8>)>, StoreError> {
                let row: Option<(u32, Vec<u8>)> = c
                    .query_row(
                        &format!(
                            "SELECT prekey_id, public FROM {table} WHERE mailbox = ?1
                             ORDER BY prekey_id LIMIT 1"
                        ),
                        [m],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((id, _)) = &row {
                    c.execute(
                        &format!("DELETE FROM {table} WHERE mailbox = ?1 AND prekey_id = ?2"),
                        params![m, id],
                    )?;
                }
                Ok(row)
            };
            let one_time = match take("one_time_prekeys")? {
                None => None,
                Some((id, pk)) => {
                    let mut b = [0u8; ONE_TIME_PREKEY_LEN];
                    b[..4].copy_from_slice(&id.to_be_bytes());
                    b[4..].copy_from_slice(&id32(pk, "one-time prekey")?);
                    Some(OneTimePrekey::from_bytes(&b))
                }
            };
            let one_time_pq = match take("one_time_pq_prekeys")? {
                None => None,
                Some((id, public)) => Some(pq_prekey(id, &public)?),
            };
            Ok(Some(PrekeyBundle {
                signed_bundle,
                one_time,
                one_time_pq,
            }))
        })
    }

    fn put_state(&self, mailbox: MailboxId, state: StateBlob) -> StoreFuture<'_, ()> {
        // Replacing a blob deletes the old one: it is erased like one.
        let replaced = self.write_erasing(
            |replaced| *replaced,
            move |c| {
                if !exists(c, &mailbox)? {
                    return Err(StoreError::UnknownMailbox);
                }
                let m = &mailbox.as_bytes()[..];
                let replaced = c
                    .prepare_cached("SELECT 1 FROM states WHERE mailbox = ?1")?
                    .query_row([m], |_| Ok(()))
                    .optional()?
                    .is_some();
                c.execute(
                    "INSERT OR REPLACE INTO states (mailbox, expires_at, blob) VALUES (?1, ?2, ?3)",
                    params![m, i64_of(state.expires_at), &state.blob],
                )?;
                Ok(replaced)
            },
        );
        Box::pin(async move { replaced.await.map(|_| ()) })
    }

    fn state(&self, mailbox: MailboxId, now: UnixTime) -> StoreFuture<'_, Option<StateBlob>> {
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT expires_at, blob FROM states WHERE mailbox = ?1 AND expires_at > ?2",
                params![&mailbox.as_bytes()[..], i64_of(now)],
                |r| {
                    Ok(StateBlob {
                        expires_at: time_of(r.get(0)?),
                        blob: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn delete_state(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        self.write_erasing(
            |deleted| *deleted,
            move |c| {
                Ok(c.execute(
                    "DELETE FROM states WHERE mailbox = ?1",
                    [&mailbox.as_bytes()[..]],
                )? > 0)
            },
        )
    }

    fn delete_blob(&self, blob: BlobId) -> StoreFuture<'_, bool> {
        // Chunks go by cascade; the trigger gives the bytes back.
        self.write_erasing(
            |deleted| *deleted,
            move |c| Ok(c.execute("DELETE FROM blobs WHERE id = ?1", [&blob.as_bytes()[..]])? > 0),
        )
    }

    fn delete_mailbox(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        // Foreign keys cascade to envelopes, prekeys and state.
        self.write_erasing(
            |deleted| *deleted,
            move |c| {
                Ok(c.execute(
                    "DELETE FROM mailboxes WHERE id = ?1",
                    [&mailbox.as_bytes()[..]],
                )? > 0)
            },
        )
    }

    fn sweep(&self, now: UnixTime) -> StoreFuture<'_, SweepCounts> {
        self.write_erasing(
            |swept| swept.envelopes + swept.states + swept.blobs > 0,
            move |c| {
                let t = i64_of(now);
                // A seeker's mailbox goes with its expired state (the
                // conversation's retention, docs/PROTOCOL.md §6.6):
                // registration, envelopes, prekeys, by cascade.
                let states = c.execute(
                    "DELETE FROM mailboxes WHERE id IN \
                     (SELECT mailbox FROM states WHERE expires_at <= ?1)",
                    [t],
                )? as u64;
                // Expired envelopes, and each mailbox's counters by what it lost.
                let mut lost: std::collections::HashMap<Vec<u8>, (i64, i64)> =
                    std::collections::HashMap::new();
                let mut envelopes = 0u64;
                {
                    let mut stmt = c.prepare_cached(
                        "DELETE FROM envelopes WHERE expires_at <= ?1 \
                         RETURNING mailbox, LENGTH(ciphertext)",
                    )?;
                    let mut rows = stmt.query([t])?;
                    while let Some(row) = rows.next()? {
                        let entry = lost.entry(row.get(0)?).or_default();
                        entry.0 += 1;
                        entry.1 += row.get::<_, i64>(1)?;
                        envelopes += 1;
                    }
                }
                for (m, (count, bytes)) in &lost {
                    move_counters(c, m, -count, -bytes)?;
                }
                Ok(SweepCounts {
                    envelopes,
                    states,
                    blobs: c.execute("DELETE FROM blobs WHERE expires_at <= ?1", [t])? as u64,
                })
            },
        )
    }

    fn put_chunk(&self, chunk: NewChunk, quotas: BlobQuotas) -> StoreFuture<'_, u16> {
        self.write(move |c| {
            let m = &chunk.mailbox.as_bytes()[..];
            let b = &chunk.blob.as_bytes()[..];
            let Some((env_bytes, blob_bytes)): Option<(i64, i64)> = c
                .prepare_cached("SELECT envelope_bytes, blob_bytes FROM mailboxes WHERE id = ?1")?
                .query_row([m], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            else {
                return Err(StoreError::UnknownMailbox);
            };
            let existing = c
                .prepare_cached("SELECT mailbox, chunk_count FROM blobs WHERE id = ?1")?
                .query_row([b], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
                .optional()?
                .map(|(owner, n)| {
                    Ok::<_, StoreError>((
                        MailboxId::from_bytes(id32(owner, "blob mailbox")?),
                        u16::try_from(n).map_err(|_| StoreError::Corrupt { what: "blob" })?,
                    ))
                })
                .transpose()?;
            let held_blobs: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM blobs WHERE mailbox = ?1")?
                .query_row([m], |r| r.get(0))?;
            let held = (
                (env_bytes.max(0) + blob_bytes.max(0)) as u64,
                held_blobs.max(0) as u64,
            );
            if admit_chunk(&chunk, existing, held, quotas)? {
                c.prepare_cached(
                    "INSERT INTO blobs (id, mailbox, chunk_count, expires_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    b,
                    m,
                    i64::from(chunk.chunk_count),
                    i64_of(chunk.expires_at)
                ])?;
            }
            c.prepare_cached("INSERT OR IGNORE INTO blob_chunks (blob, idx, data) VALUES (?1, ?2, ?3)")?
                .execute(params![b, i64::from(chunk.index), &chunk.data])?;
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM blob_chunks WHERE blob = ?1")?
                .query_row([b], |r| r.get(0))?;
            Ok(n.clamp(0, i64::from(u16::MAX)) as u16)
        })
    }

    fn blob_chunks(&self, blob: BlobId, now: UnixTime) -> StoreFuture<'_, Option<Vec<bool>>> {
        self.read(move |c| {
            let b = &blob.as_bytes()[..];
            let Some(n): Option<i64> = c
                .prepare_cached("SELECT chunk_count FROM blobs WHERE id = ?1 AND expires_at > ?2")?
                .query_row(params![b, i64_of(now)], |r| r.get(0))
                .optional()?
            else {
                return Ok(None);
            };
            let mut present = vec![false; usize::try_from(n).unwrap_or(0)];
            let mut stmt = c.prepare_cached("SELECT idx FROM blob_chunks WHERE blob = ?1")?;
            for idx in stmt.query_map([b], |r| r.get::<_, i64>(0))? {
                let slot = usize::try_from(idx?)
                    .ok()
                    .and_then(|i| present.get_mut(i))
                    .ok_or(StoreError::Corrupt { what: "blob chunk" })?;
                *slot = true;
            }
            Ok(Some(present))
        })
    }

    fn chunk(&self, blob: BlobId, index: u16, now: UnixTime) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT data FROM blob_chunks JOIN blobs ON blobs.id = blob_chunks.blob
                 WHERE blob_chunks.blob = ?1 AND blob_chunks.idx = ?2 AND blobs.expires_at > ?3",
            )?
            .query_row(
                params![&blob.as_bytes()[..], i64::from(index), i64_of(now)],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    fn ready(&self) -> StoreFuture<'_, ()> {
        if self.writer.is_closed() {
            return Box::pin(async { Err(StoreError::Closed) });
        }
        // A trivial read that must reach the file: the schema version this
        // relay migrated to (a lost or replaced database file fails it).
        self.read(|conn| {
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if usize::try_from(version).ok() != Some(MIGRATIONS.len()) {
                return Err(StoreError::Corrupt {
                    what: "schema version",
                });
            }
            Ok(())
        })
    }

    fn database_bytes(&self) -> StoreFuture<'_, Option<u64>> {
        let files = database_files(&self.path);
        Box::pin(async move {
            let size = files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            Ok(Some(size))
        })
    }

    fn queue_depth(&self) -> Option<usize> {
        Some(
            self.writer
                .max_capacity()
                .saturating_sub(self.writer.capacity()),
        )
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            if self.writer.send(Msg::Close(tx)).await.is_ok() {
                let _ = rx.await;
            }
            let handle = self.thread.lock().ok().and_then(|mut h| h.take());
            if let Some(h) = handle {
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        super::super::contract::run(&store).await;
    }

    /// A database written before one-time ML-KEM prekeys existed (schema 3)
    /// migrates on open and keeps what it held.
    #[tokio::test]
    async fn a_schema_3_database_gains_one_time_pq_prekeys_and_keeps_its_prekeys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let k = super::super::contract::keys(1);
        let m = k.id();
        {
            let c = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 3).unwrap();
            c.execute(
                "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES (?1, ?2, ?3, 1)",
                params![&m.as_bytes()[..], &k.auth.0[..], &k.seal.0[..]],
            )
            .unwrap();
            c.execute(
                "INSERT INTO signed_prekeys (mailbox, bundle) VALUES (?1, ?2)",
                params![&m.as_bytes()[..], &[7u8; 40][..]],
            )
            .unwrap();
            c.execute(
                "INSERT INTO one_time_prekeys (mailbox, prekey_id, public) VALUES (?1, 5, ?2)",
                params![&m.as_bytes()[..], &[5u8; 32][..]],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let v: i64 = s
            .reader
            .lock()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let b = s.take_prekeys(m).await.unwrap().unwrap();
        assert_eq!(b.signed_bundle, vec![7; 40]);
        assert_eq!(b.one_time.map(|k| (k.id, k.public.0)), Some((5, [5; 32])));
        assert_eq!(b.one_time_pq, None);
        let caps = PrekeyCaps {
            max_one_time: 10,
            max_one_time_pq: 10,
        };
        let counts = s
            .put_prekeys(
                m,
                PrekeyUpload {
                    signed_bundle: vec![8; 40],
                    one_time: vec![],
                    one_time_pq: vec![super::super::contract::pq_otk(3)],
                    replace: false,
                },
                caps,
            )
            .await
            .unwrap();
        assert_eq!(
            counts,
            PrekeyCounts {
                one_time: 0,
                one_time_pq: 1
            }
        );
        // Deleting the mailbox takes its one-time ML-KEM prekeys with it.
        assert!(s.delete_mailbox(m).await.unwrap());
        let left: i64 = s
            .reader
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM one_time_pq_prekeys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn survives_reopen_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let k = super::super::contract::keys(1);
        {
            let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            s.register(k, true).await.unwrap();
            s.close().await.unwrap();
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert!(s.mailbox(k.id()).await.unwrap().unwrap().pow_required);
        let v: i64 = s
            .reader
            .lock()
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        // The trigger-kept counters match the rows.
        let counts: (i64, i64) = s
            .reader
            .lock()
            .unwrap()
            .query_row(
                "SELECT SUM(envelope_count), SUM(envelope_bytes) FROM mailboxes",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(counts, (0, 0));
        s.close().await.unwrap();
    }

    /// A write as the store queues it.
    type WriteFn<T> = Box<dyn Fn(&Connection) -> Result<T, StoreError> + Send>;

    /// Runs `jobs` as one group commit on `conn`; returns each caller's answer.
    fn group<T: Send + 'static>(
        conn: &Connection,
        fs: Vec<WriteFn<T>>,
    ) -> Vec<Result<T, StoreError>> {
        let mut answers = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        for f in fs {
            let (reply, rx) = oneshot::channel();
            jobs.push(Box::new(Write {
                f,
                erases: erases_nothing,
                result: None,
                reply,
            }));
            answers.push(rx);
        }
        let committed = run_group(conn, &mut jobs);
        for job in jobs {
            job.finish(committed);
        }
        answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_new_database_takes_the_page_size_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let page = |p: &Path| -> i64 {
            Connection::open(p)
                .unwrap()
                .pragma_query_value(None, "page_size", |r| r.get(0))
                .unwrap()
        };
        let open = |bytes| {
            SqliteStore::open(
                &path,
                SqliteOptions {
                    page_bytes: bytes,
                    ..SqliteOptions::default()
                },
            )
            .unwrap()
        };
        let s = open(16_384);
        s.close().await.unwrap();
        drop(s);
        assert_eq!(page(&path), 16_384);
        let s = open(4096);
        s.register(super::super::contract::keys(1), false)
            .await
            .unwrap();
        s.close().await.unwrap();
        drop(s);
        assert_eq!(page(&path), 16_384, "an existing database keeps its pages");
    }

    #[test]
    fn a_failing_write_in_a_group_changes_nothing_and_the_others_commit() {
        use super::super::contract::{keys, new_env};
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        configure(&conn).unwrap();
        migrate(&conn).unwrap();
        let (a, b) = (keys(1), keys(2));
        for k in [a, b] {
            conn.execute(
                "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES (?1, ?2, ?3, 0)",
                params![&k.id().as_bytes()[..], &k.auth.0[..], &k.seal.0[..]],
            )
            .unwrap();
        }
        let q = Quotas {
            max_envelopes: 2,
            max_bytes: 1 << 20,
        };
        let deposit = |batch: Vec<NewEnvelope>| -> WriteFn<u64> {
            Box::new(move |c: &Connection| {
                let mut n = 0;
                for e in &batch {
                    let m = &e.envelope.recipient().as_bytes()[..];
                    let ct = e.envelope.ciphertext();
                    let stored = c
                        .execute(INSERT_ENVELOPE_SQL, params![m, &e.id.as_bytes()[..], 9, ct])?
                        as i64;
                    move_counters(c, m, stored, stored * ct.len() as i64)?;
                    n += stored as u64;
                }
                let count: i64 = c.query_row(
                    "SELECT envelope_count FROM mailboxes WHERE id = ?1",
                    [&batch[0].envelope.recipient().as_bytes()[..]],
                    |r| r.get(0),
                )?;
                if count as u64 > q.max_envelopes {
                    return Err(StoreError::QuotaExceeded);
                }
                Ok(n)
            })
        };
        // All succeed: one transaction, no savepoints.
        let ok = group(&conn, vec![deposit(vec![new_env(a.id(), 1, 60, 9)])]);
        assert!(matches!(ok[..], [Ok(1)]));
        // The second write breaks a's quota halfway through its batch (one
        // of its two envelopes fits): it changes nothing; the first and
        // third commit.
        let answers = group(
            &conn,
            vec![
                deposit(vec![new_env(b.id(), 2, 60, 9)]),
                deposit(vec![new_env(a.id(), 3, 60, 9), new_env(a.id(), 4, 60, 9)]),
                deposit(vec![new_env(b.id(), 5, 60, 9)]),
            ],
        );
        assert!(matches!(
            answers[..],
            [Ok(1), Err(StoreError::QuotaExceeded), Ok(1)]
        ));
        let rows = |m: MailboxId| -> (i64, i64) {
            conn.query_row(
                "SELECT (SELECT COUNT(*) FROM envelopes WHERE mailbox = ?1), envelope_count FROM mailboxes WHERE id = ?1",
                [&m.as_bytes()[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(rows(a.id()), (1, 1));
        assert_eq!(rows(b.id()), (2, 2));
    }

    #[tokio::test]
    async fn pending_reads_follow_the_mailbox_index_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        let plan: Vec<String> = {
            let c = s.reader.lock().unwrap();
            let mut stmt = c
                .prepare(&format!("EXPLAIN QUERY PLAN {PENDING_SQL}"))
                .unwrap();
            stmt.query_map(params![&[0u8; 32][..], 0i64, 256i64], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        };
        // The primary key is (mailbox, seq) since per-mailbox numbering.
        assert!(
            plan.iter()
                .any(|d| d.contains("USING PRIMARY KEY (mailbox=?")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|d| d.contains("TEMP B-TREE")), "{plan:?}");
        s.close().await.unwrap();
    }

    /// `(mailbox, seq)` of every stored envelope, in the table's own order.
    fn stored_seqs(c: &Connection) -> Vec<(Vec<u8>, i64)> {
        let mut stmt = c.prepare("SELECT mailbox, seq FROM envelopes").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[tokio::test]
    async fn envelopes_are_numbered_per_mailbox_and_the_table_has_no_rowid() {
        use super::super::contract::{keys, new_env};
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        let (a, b) = (keys(1).id(), keys(2).id());
        s.register(keys(1), false).await.unwrap();
        s.register(keys(2), false).await.unwrap();
        let q = Quotas {
            max_envelopes: 100,
            max_bytes: 1 << 20,
        };
        // Interleaved: a, b, a, b, a (one batch holds both).
        s.deposit(vec![new_env(a, 1, 60, 7200)], q).await.unwrap();
        s.deposit(vec![new_env(b, 2, 60, 7200), new_env(a, 3, 60, 7200)], q)
            .await
            .unwrap();
        s.deposit(vec![new_env(b, 4, 60, 7200)], q).await.unwrap();
        s.deposit(vec![new_env(a, 5, 60, 7200)], q).await.unwrap();
        {
            let c = s.reader.lock().unwrap();
            let mut rows = stored_seqs(&c);
            rows.sort();
            let mut want = vec![
                (a.as_bytes().to_vec(), 1),
                (a.as_bytes().to_vec(), 2),
                (a.as_bytes().to_vec(), 3),
                (b.as_bytes().to_vec(), 1),
                (b.as_bytes().to_vec(), 2),
            ];
            want.sort();
            assert_eq!(rows, want);
            assert!(
                c.prepare("SELECT rowid FROM envelopes").is_err(),
                "no rowid: no hidden global insertion order"
            );
        }
        // Delivery order within a mailbox is deposit order.
        let fills: Vec<u8> = s
            .pending(a, UnixTime(0), 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope.ciphertext()[0])
            .collect();
        assert_eq!(fills, vec![1, 3, 5]);
        // An emptied mailbox starts over at 1.
        let ids: Vec<_> = s
            .pending(b, UnixTime(0), 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(s.ack(b, ids).await.unwrap(), 2);
        s.deposit(vec![new_env(b, 6, 60, 7200)], q).await.unwrap();
        let b_rows: Vec<i64> = stored_seqs(&s.reader.lock().unwrap())
            .into_iter()
            .filter(|(m, _)| m[..] == b.as_bytes()[..])
            .map(|(_, seq)| seq)
            .collect();
        assert_eq!(b_rows, vec![1]);
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_per_mailbox_migration_renumbers_and_keeps_order_and_counters() {
        use super::super::contract::keys;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (a, b) = (keys(1), keys(2));
        {
            // A database as the relay left it before per-mailbox numbering.
            let conn = Connection::open(&path).unwrap();
            configure(&conn).unwrap();
            let before = MIGRATIONS
                .iter()
                .position(|m| *m == MIGRATION_PER_MAILBOX_SEQ)
                .unwrap();
            for sql in &MIGRATIONS[..before] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", before as i64)
                .unwrap();
            for k in [a, b] {
                conn.execute(
                    "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES (?1, ?2, ?3, 0)",
                    params![&k.id().as_bytes()[..], &k.auth.0[..], &k.seal.0[..]],
                )
                .unwrap();
            }
            // Global numbers, interleaved across the two mailboxes.
            for (i, k) in [a, b, a, b, a].iter().enumerate() {
                conn.execute(
                    "INSERT INTO envelopes (mailbox, id, expires_at, ciphertext) VALUES (?1, ?2, 7200, ?3)",
                    params![&k.id().as_bytes()[..], &[i as u8; 32][..], &vec![i as u8; 50]],
                )
                .unwrap();
            }
        }
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let fills = |m: MailboxId| {
            let s = &s;
            async move {
                s.pending(m, UnixTime(0), 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.envelope.ciphertext()[0])
                    .collect::<Vec<u8>>()
            }
        };
        assert_eq!(fills(a.id()).await, vec![0, 2, 4]);
        assert_eq!(fills(b.id()).await, vec![1, 3]);
        let (mut rows, counts) = {
            let c = s.reader.lock().unwrap();
            let mut stmt = c
                .prepare(
                    "SELECT envelope_count, envelope_bytes FROM mailboxes ORDER BY envelope_count",
                )
                .unwrap();
            let counts: Vec<(i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (stored_seqs(&c), counts)
        };
        rows.sort();
        let a_id = a.id().as_bytes().to_vec();
        let b_id = b.id().as_bytes().to_vec();
        let mut want = vec![
            (a_id.clone(), 1),
            (a_id.clone(), 2),
            (a_id, 3),
            (b_id.clone(), 1),
            (b_id, 2),
        ];
        want.sort();
        assert_eq!(rows, want);
        assert_eq!(counts, vec![(2, 100), (3, 150)]);
        // The triggers are back: a new deposit counts.
        s.deposit(
            vec![super::super::contract::new_env(b.id(), 9, 50, 7200)],
            Quotas {
                max_envelopes: 3,
                max_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
        assert_eq!(fills(b.id()).await, vec![1, 3, 9]);
        s.close().await.unwrap();
    }

    /// Whether any 16-byte piece of `secret` (at a multiple of 16) occurs
    /// anywhere in `hay`.
    fn holds_a_piece_of(hay: &[u8], secret: &[u8]) -> bool {
        let pieces: std::collections::HashSet<&[u8]> = secret.chunks_exact(16).collect();
        hay.windows(16).any(|w| pieces.contains(w))
    }

    /// The database, WAL and shared-memory files, read as they are now.
    fn files_now(path: &Path) -> Vec<u8> {
        database_files(path)
            .iter()
            .filter_map(|f| std::fs::read(f).ok())
            .flatten()
            .collect()
    }

    fn random_envelope(to: MailboxId, len: usize) -> NewEnvelope {
        use rand_core::RngCore;
        let mut ct = vec![0u8; len];
        rand_core::OsRng.fill_bytes(&mut ct);
        let envelope = Envelope::from_parts(to, ct).unwrap();
        NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at: UnixTime(7200),
            envelope,
        }
    }

    #[tokio::test]
    async fn deleted_data_leaves_the_files_within_the_erase_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let erase_within = Duration::from_millis(300);
        let s = SqliteStore::open(
            &path,
            SqliteOptions {
                erase_within,
                ..SqliteOptions::default()
            },
        )
        .unwrap();
        let k = super::super::contract::keys(1);
        s.register(k, false).await.unwrap();
        let q = Quotas {
            max_envelopes: 100,
            max_bytes: 1 << 24,
        };
        // Small, page-sized and overflowing ciphertexts; one is kept.
        let acked: Vec<NewEnvelope> = [100, 1000, 3000, 9000, 30_000]
            .iter()
            .map(|len| random_envelope(k.id(), *len))
            .collect();
        let kept = random_envelope(k.id(), 2000);
        let expired = NewEnvelope {
            expires_at: UnixTime(3600),
            ..random_envelope(k.id(), 1500)
        };
        for e in acked.iter().chain([&kept, &expired]) {
            s.deposit(vec![e.clone()], q).await.unwrap();
        }
        let random = |len| random_envelope(k.id(), len).envelope.ciphertext().to_vec();
        let blob = |b: &[u8]| StateBlob {
            expires_at: UnixTime(7200),
            blob: b.to_vec(),
        };
        let old_state = random(5000);
        s.put_state(k.id(), blob(&old_state)).await.unwrap();
        // A second mailbox with an envelope and a state blob, deleted whole.
        let k2 = super::super::contract::keys(2);
        s.register(k2, false).await.unwrap();
        let k2_envelope = random_envelope(k2.id(), 4000);
        s.deposit(vec![k2_envelope.clone()], q).await.unwrap();
        let k2_state = random(3000);
        s.put_state(k2.id(), blob(&k2_state)).await.unwrap();
        let mut gone: Vec<Vec<u8>> = acked
            .iter()
            .chain([&expired, &k2_envelope])
            .map(|e| e.envelope.ciphertext().to_vec())
            .collect();
        gone.extend([old_state, k2_state]);
        let files = files_now(&path);
        for g in &gone {
            assert!(holds_a_piece_of(&files, g), "the scan sees stored data");
        }
        // Acknowledged, replaced by a newer blob, expired and swept, and
        // deleted with its mailbox.
        let ids = acked.iter().map(|e| e.id).collect();
        assert_eq!(s.ack(k.id(), ids).await.unwrap(), acked.len() as u64);
        s.put_state(k.id(), blob(&[7; 64])).await.unwrap();
        assert_eq!(s.sweep(UnixTime(3600)).await.unwrap().envelopes, 1);
        assert!(s.delete_mailbox(k2.id()).await.unwrap());
        let done = Instant::now();
        // One pass over the files for every piece of everything deleted.
        let pieces: std::collections::HashSet<&[u8]> =
            gone.iter().flat_map(|g| g.chunks_exact(16)).collect();
        let clean = |files: &[u8]| !files.windows(16).any(|w| pieces.contains(w));
        // When the first clean copy was read (not counting the scan).
        let mut took = done.elapsed();
        let mut files = files_now(&path);
        while !clean(&files) && done.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            took = done.elapsed();
            files = files_now(&path);
        }
        assert!(
            clean(&files),
            "deleted data is still in the files after {took:?}"
        );
        assert!(
            took <= erase_within + Duration::from_secs(2),
            "took {took:?}"
        );
        assert!(
            holds_a_piece_of(&files, kept.envelope.ciphertext()),
            "what is kept stays"
        );
        assert_eq!(
            std::fs::metadata(&database_files(&path)[1]).unwrap().len(),
            0,
            "the WAL is truncated"
        );
        s.close().await.unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_files_are_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A new database.
        let path = dir.path().join("new.db");
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.register(super::super::contract::keys(1), false)
            .await
            .unwrap();
        for f in database_files(&path) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        s.close().await.unwrap();
        // One an older relay left readable to everyone.
        let path = dir.path().join("old.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        s.register(super::super::contract::keys(1), false)
            .await
            .unwrap();
        for f in database_files(&path) {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn quota_counters_follow_every_insert_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap();
        let k = super::super::contract::keys(1);
        s.register(k, false).await.unwrap();
        let q = Quotas {
            max_envelopes: 100,
            max_bytes: 1 << 20,
        };
        let mut ids = Vec::new();
        for i in 0..5u8 {
            let envelope = Envelope::from_parts(k.id(), vec![i; 50 + usize::from(i)]).unwrap();
            let id = EnvelopeId::of(&envelope.encode());
            ids.push(id);
            let expires_at = UnixTime(if i == 0 { 3600 } else { 7200 });
            s.deposit(
                vec![NewEnvelope {
                    id,
                    expires_at,
                    envelope,
                }],
                q,
            )
            .await
            .unwrap();
        }
        s.ack(k.id(), vec![ids[4]]).await.unwrap();
        s.sweep(UnixTime(3600)).await.unwrap();
        let check = |s: &SqliteStore| {
            let c = s.reader.lock().unwrap();
            let kept: (i64, i64) = c
                .query_row(
                    "SELECT envelope_count, envelope_bytes FROM mailboxes",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let real: (i64, i64) = c
                .query_row(
                    "SELECT COUNT(*), SUM(LENGTH(ciphertext)) FROM envelopes",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!(kept, real);
            kept
        };
        assert_eq!(check(&s), (3, 51 + 52 + 53));
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn readiness_fails_once_the_writer_is_closed_and_size_counts_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.ready().await.unwrap();
        let size = store.database_bytes().await.unwrap().unwrap();
        let on_disk: u64 = database_files(&path)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        assert!(size > 0 && size == on_disk);
        assert_eq!(store.queue_depth(), Some(0));
        store.close().await.unwrap();
        assert!(store.ready().await.is_err(), "a closed store is not ready");
    }

    #[tokio::test]
    async fn concurrent_writes_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(
            SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..200u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let sk = ed25519_dalek::SigningKey::from_bytes(&[i; 32]);
                let k = MailboxPublic {
                    auth: Ed25519Public(sk.verifying_key().to_bytes()),
                    seal: X25519Public([i; 32]),
                };
                s.register(k, false).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n: i64 = s
            .reader
            .lock()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM mailboxes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
        s.close().await.unwrap();
    }
}
