//! The PostgreSQL [`Store`]: several relay nodes share one database.
//!
//! SQLite stays the default (one node, nothing to install). An organisation
//! that outgrows one relay process runs several `northstar-relay` nodes
//! behind a load balancer with `--database postgres://…`; PostgreSQL brings
//! replication and backups, so there is no home-made clustering here.
//!
//! - **Client.** `tokio-postgres`: plain async, no compile-time query
//!   checking that would need a database at build time (sqlx's macros), few
//!   dependencies, and direct access to asynchronous notifications for
//!   `LISTEN`. A node holds a writer connection, two reader connections, a
//!   listening connection, and a `deadpool-postgres` pool for the rest.
//! - **Group commit per node** (module `writer`). Deposits and acknowledgements
//!   from all of a node's connections are queued to one writer task, which
//!   takes whatever is queued (up to [`PostgresOptions::write_batch`], the
//!   `write_batch` setting SQLite uses too) and commits it in ONE
//!   transaction of two pipelined round trips with multi-row statements
//!   (`unnest` arrays) prepared once per connection: the recipients' and
//!   acknowledged mailboxes' rows locked in id order, one `DELETE` for all
//!   acknowledgements, one read of all recipients' counters and held
//!   envelopes, each deposit decided in memory by `admit` exactly as
//!   alone, one `INSERT` for every admitted envelope, one `pg_notify`
//!   statement, `COMMIT`. A failed group is retried with a savepoint per
//!   write (the slow path), so one bad write changes nothing and the others
//!   commit. Concurrent mailbox lookups and pending reads are batched the
//!   same way (module `reader`).
//! - **Exactly once across nodes.** Every write is one transaction. A
//!   one-time prekey is taken with `DELETE … RETURNING` on a row chosen
//!   `FOR UPDATE SKIP LOCKED`; a directory is replaced by one
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE newer` statement, so two nodes
//!   racing cannot roll it back; a group locks its mailboxes' rows (in id
//!   order, so no deadlock between nodes' groups) and checks each quota from
//!   the counters kept by statement-level triggers inside the transaction,
//!   so a quota holds across nodes; the sweep runs on one node at a time (a
//!   transaction-scoped advisory lock). Authentication challenges never
//!   reach the store: they live in the connection's session, which lives on
//!   one node.
//! - **Durability.** A call resolves `Ok` only after its `COMMIT` returned
//!   (for a deposit or an acknowledgement, its group's), and the relay
//!   refuses to start on a server with `fsync` or `synchronous_commit` off.
//! - **Live delivery across nodes.** A group sends `NOTIFY` inside its
//!   transaction, so it is delivered on commit: the node's random tag, then
//!   the mailbox ids (hex) of the recipients it stored envelopes for, split
//!   under PostgreSQL's 8000-byte payload limit. Each node keeps one
//!   dedicated connection that `LISTEN`s and turns other nodes'
//!   notifications into [`Wakeup`]s (its own deposits reach its subscribers
//!   in memory); after every (re)connect it sends [`Wakeup::All`], so
//!   subscribers re-read what is stored and a missed notification loses
//!   nothing.
//! - **Migrations** are numbered; table `schema_version` records the last
//!   applied, under an advisory lock so nodes starting together migrate once.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use northstar_core::UnixTime;
use northstar_core::attachment::BlobId;
use northstar_core::frame::{ONE_TIME_PREKEY_LEN, OneTimePrekey};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::MailboxPublic;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls, Transaction};

use super::{BlobQuotas, NewChunk, admit_chunk};
use super::{
    DepositOutcome, DirectoryRecord, MailboxRecord, NewEnvelope, PrekeyBundle, PrekeyCaps,
    PrekeyCounts, PrekeyUpload, Quotas, StateBlob, Store, StoreError, StoreFuture, StoredEnvelope,
    SweepCounts, Wakeup, i64_of, id32, pq_prekey, time_of,
};

mod reader;
mod writer;

/// Schema migrations; entry `n` moves `schema_version` from `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE mailboxes (
        id             bytea PRIMARY KEY,
        auth_pk        bytea NOT NULL,
        seal_pk        bytea NOT NULL,
        pow_required   boolean NOT NULL,
        envelope_count bigint NOT NULL DEFAULT 0,
        envelope_bytes bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE envelopes (
        seq        bigserial PRIMARY KEY,
        mailbox    bytea NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        id         bytea NOT NULL,
        expires_at bigint NOT NULL,
        ciphertext bytea NOT NULL,
        UNIQUE (mailbox, id)
    );
    CREATE INDEX envelopes_mailbox_seq ON envelopes(mailbox, seq);
    CREATE INDEX envelopes_expiry ON envelopes(expires_at);
    CREATE TABLE signed_prekeys (
        mailbox bytea PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        bundle  bytea NOT NULL
    );
    CREATE TABLE one_time_prekeys (
        mailbox   bytea NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        prekey_id bigint NOT NULL,
        public    bytea NOT NULL,
        PRIMARY KEY (mailbox, prekey_id)
    );
    CREATE TABLE states (
        mailbox    bytea PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        expires_at bigint NOT NULL,
        blob       bytea NOT NULL
    );
    CREATE INDEX states_expiry ON states(expires_at);
    CREATE TABLE directories (
        org_key   bytea PRIMARY KEY,
        serial    bytea NOT NULL,
        directory bytea NOT NULL
    );
    -- Per-mailbox envelope count and bytes, kept by triggers, so the quota
    -- check on every deposit is one row read instead of a scan.
    CREATE FUNCTION envelopes_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE mailboxes SET envelope_count = envelope_count + 1,
                                 envelope_bytes = envelope_bytes + length(NEW.ciphertext)
            WHERE id = NEW.mailbox;
            RETURN NEW;
        ELSE
            UPDATE mailboxes SET envelope_count = envelope_count - 1,
                                 envelope_bytes = envelope_bytes - length(OLD.ciphertext)
            WHERE id = OLD.mailbox;
            RETURN OLD;
        END IF;
    END $$;
    CREATE TRIGGER envelopes_count AFTER INSERT OR DELETE ON envelopes
        FOR EACH ROW EXECUTE FUNCTION envelopes_count();
",
    MIGRATION_PER_MAILBOX_SEQ,
    "
    -- One-time ML-KEM prekeys (protocol v2): `public` is the opaque
    -- `pk[1184] || sig[64]`.
    CREATE TABLE one_time_pq_prekeys (
        mailbox   bytea NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        prekey_id bigint NOT NULL,
        public    bytea NOT NULL,
        PRIMARY KEY (mailbox, prekey_id)
    );
",
    MIGRATION_BLOBS,
    MIGRATION_STATEMENT_COUNTERS,
];

/// Migration: the per-mailbox counters kept per statement rather than per
/// row (issue 22): a group commit inserts or deletes hundreds of envelopes
/// in one statement, and one `UPDATE` per mailbox touched (from the
/// statement's transition table) replaces one per envelope. A separate
/// step so a merge with other migrations only renumbers it.
const MIGRATION_STATEMENT_COUNTERS: &str = "
    DROP TRIGGER envelopes_count ON envelopes;
    DROP FUNCTION envelopes_count();
    CREATE FUNCTION envelopes_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count + d.n,
                             envelope_bytes = envelope_bytes + d.b
        FROM (SELECT mailbox, COUNT(*) AS n, SUM(length(ciphertext)) AS b
              FROM added GROUP BY mailbox) AS d
        WHERE mailboxes.id = d.mailbox;
        RETURN NULL;
    END $$;
    CREATE FUNCTION envelopes_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE mailboxes SET envelope_count = envelope_count - d.n,
                             envelope_bytes = envelope_bytes - d.b
        FROM (SELECT mailbox, COUNT(*) AS n, SUM(length(ciphertext)) AS b
              FROM removed GROUP BY mailbox) AS d
        WHERE mailboxes.id = d.mailbox;
        RETURN NULL;
    END $$;
    CREATE TRIGGER envelopes_added AFTER INSERT ON envelopes
        REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION envelopes_added();
    CREATE TRIGGER envelopes_removed AFTER DELETE ON envelopes
        REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION envelopes_removed();
";

/// Migration: attachment blobs (issue 21); see the SQLite store's. A
/// separate step so a merge with other migrations only renumbers it.
const MIGRATION_BLOBS: &str = "
    CREATE TABLE blobs (
        id          bytea PRIMARY KEY,
        mailbox     bytea NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        chunk_count integer NOT NULL,
        expires_at  bigint NOT NULL
    );
    CREATE INDEX blobs_mailbox ON blobs(mailbox);
    CREATE INDEX blobs_expiry ON blobs(expires_at);
    CREATE TABLE blob_chunks (
        blob bytea NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
        idx  integer NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (blob, idx)
    );
    ALTER TABLE mailboxes ADD COLUMN blob_bytes bigint NOT NULL DEFAULT 0;
    CREATE FUNCTION blobs_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE mailboxes SET blob_bytes = blob_bytes + NEW.chunk_count::bigint * 65552
            WHERE id = NEW.mailbox;
            RETURN NEW;
        ELSE
            UPDATE mailboxes SET blob_bytes = blob_bytes - OLD.chunk_count::bigint * 65552
            WHERE id = OLD.mailbox;
            RETURN OLD;
        END IF;
    END $$;
    CREATE TRIGGER blobs_bytes AFTER INSERT OR DELETE ON blobs
        FOR EACH ROW EXECUTE FUNCTION blobs_bytes();
";

/// Migration: per-mailbox sequence numbers (issue 17). A separate step so a
/// merge with other migrations only renumbers it.
const MIGRATION_PER_MAILBOX_SEQ: &str = "
    -- Per-mailbox sequence numbers: no global sequence numbers envelopes
    -- across mailboxes any more. The key is (mailbox, seq), seq counting
    -- from 1 within each mailbox (one above the mailbox's highest stored,
    -- taken under the mailbox's row lock). The old numbers are renumbered
    -- per mailbox in their order; the global sequence (whose counter told
    -- how many envelopes were ever deposited) is dropped.
    ALTER TABLE envelopes DROP CONSTRAINT envelopes_pkey;
    ALTER TABLE envelopes ALTER COLUMN seq DROP DEFAULT;
    DROP SEQUENCE envelopes_seq_seq;
    UPDATE envelopes SET seq = renumbered.n
        FROM (SELECT mailbox AS m, id AS i,
                     row_number() OVER (PARTITION BY mailbox ORDER BY seq) AS n
              FROM envelopes) AS renumbered
        WHERE envelopes.mailbox = renumbered.m AND envelopes.id = renumbered.i;
    ALTER TABLE envelopes ADD PRIMARY KEY (mailbox, seq);
    DROP INDEX envelopes_mailbox_seq;
";

/// The notification channel deposits signal on (payload: the depositing
/// node's tag, then the recipients' mailbox ids in hex, space-separated;
/// see `writer::notify_payloads`).
pub const NOTIFY_CHANNEL: &str = "northstar_deposit";

/// Advisory lock key held while migrating (any constant unique to us).
const MIGRATION_LOCK: i64 = 0x6e6f_7274_6873_0001;
/// Advisory lock key held by the node that sweeps.
const SWEEP_LOCK: i64 = 0x6e6f_7274_6873_0002;

/// Default pool size per node: enough for the reads of many connections
/// in flight (each holds a connection for one statement or transaction
/// only; deposits and acknowledgements go through the writer's own
/// connection, lookups through the readers'); a server's `max_connections`
/// must exceed nodes × (this + 1 listener + 1 writer + 2 readers).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How often a transaction that lost a deadlock or a serialization race is
/// retried before the client gets an error.
const RETRIES: usize = 3;

/// Wake-ups queued between the listener and the notifier.
const WAKEUP_QUEUE_DEPTH: usize = 4096;

/// Longest wait between two attempts to re-open the listening connection.
const LISTEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Tuning of the PostgreSQL store.
#[derive(Clone, Copy, Debug)]
pub struct PostgresOptions {
    /// Most pooled connections of this node.
    pub pool_size: usize,
    /// Most deposits and acknowledgements committed in one transaction by
    /// the node's writer (the `write_batch` setting, shared with SQLite).
    pub write_batch: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: DEFAULT_POOL_SIZE,
            write_batch: super::sqlite::DEFAULT_WRITE_BATCH,
        }
    }
}

/// The PostgreSQL store handle (cheap to share behind an `Arc`).
pub struct PostgresStore {
    pool: Pool,
    closed: AtomicBool,
    wakeups: std::sync::Mutex<Option<mpsc::Receiver<Wakeup>>>,
    listener: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The queue in front of this node's writer (group commit).
    writer: mpsc::Sender<writer::Msg>,
    writer_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The queue in front of this node's readers (batched lookups).
    reader: mpsc::Sender<reader::Read>,
    reader_tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Groups the writer committed or tried (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    groups: Arc<AtomicU64>,
}

impl core::fmt::Debug for PostgresStore {
    // The URL may hold a password: never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres { source: e }
}

fn retryable(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres { source } => matches!(
            source.code(),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
        ),
        _ => false,
    }
}

/// Runs `$body` (which may use `?`) in a transaction bound to `$tx`,
/// commits, and retries the whole transaction after a deadlock or a
/// serialization failure. Resolves only after `COMMIT` returned.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:block) => {{
        let mut attempt = 0usize;
        loop {
            let mut client = $self.client().await?;
            let started = std::time::Instant::now();
            let result: Result<_, StoreError> = async {
                let $tx = client.transaction().await.map_err(db)?;
                let value = async { $body }.await?;
                $tx.commit().await.map_err(db)?;
                Ok(value)
            }
            .await;
            if result.is_ok() {
                crate::metrics::METRICS
                    .commit_seconds
                    .observe(started.elapsed());
            }
            match result {
                Err(e) if retryable(&e) && attempt < RETRIES => attempt += 1,
                other => break other,
            }
        }
    }};
}

/// Locks a mailbox's row for the rest of the transaction; whether it exists.
async fn lock_mailbox(tx: &Transaction<'_>, id: &MailboxId) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM mailboxes WHERE id = $1 FOR UPDATE",
            &[&&id.as_bytes()[..]],
        )
        .await
        .map_err(db)?
        .is_some())
}

/// Refuses a server that could lose an acknowledged commit.
async fn check_durability(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    for setting in ["fsync", "synchronous_commit"] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .map_err(db)?;
        let value: String = row.get(0);
        if value == "off" {
            return Err(StoreError::Unsafe { setting });
        }
    }
    Ok(())
}

async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        .await
        .map_err(db)?;
    let row = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(db)?;
    let version = match row {
        Some(r) => r.get::<_, i32>(0),
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                .await
                .map_err(db)?;
            0
        }
    };
    let applied = usize::try_from(version.max(0)).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt {
            what: "schema version (newer than this relay)",
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).await.map_err(db)?;
        let next = i32::try_from(n + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE schema_version SET version = $1", &[&next])
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

/// One session of the listening connection: `LISTEN`, announce
/// [`Wakeup::All`], then forward notifications until the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    own: &str,
    out: &mpsc::Sender<Wakeup>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message
                && ntx.send(n.payload().to_owned()).is_err()
            {
                return;
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await?;
        // Anything deposited while we were not listening is in the store.
        if out.send(Wakeup::All).await.is_err() {
            return Ok(());
        }
        while let Some(payload) = nrx.recv().await {
            for wakeup in writer::parse_payload(&payload, own) {
                if out.send(wakeup).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
    .await;
    driver.abort();
    drop(client);
    result
}

/// Keeps one listening connection open for the life of the store.
async fn listen_loop(config: tokio_postgres::Config, own: String, out: mpsc::Sender<Wakeup>) {
    let mut backoff = Duration::from_millis(100);
    while !out.is_closed() {
        match listen_once(&config, &own, &out).await {
            Ok(()) => tracing::warn!("notification connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "notification connection failed; reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_BACKOFF_MAX);
    }
}

impl PostgresStore {
    /// Connects to `url` (a libpq-style `postgres://` URL or key=value
    /// string), checks durability settings, migrates, and starts listening.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let config = tokio_postgres::Config::from_str(url).map_err(db)?;
        let (mut client, connection) = config.connect(NoTls).await.map_err(db)?;
        let conn_task = tokio::spawn(connection);
        check_durability(&client).await?;
        migrate(&mut client).await?;
        drop(client);
        let _ = conn_task.await;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(|_| StoreError::Closed)?;
        // This node's tag in its notifications (random per start, nothing
        // else): its listener skips them, its deposits being delivered in
        // memory already.
        let mut raw = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let node = format!("{:016x}", u64::from_be_bytes(raw));
        let (tx, rx) = mpsc::channel(WAKEUP_QUEUE_DEPTH);
        let listener = tokio::spawn(listen_loop(config.clone(), node.clone(), tx));
        // The writer's and the readers' own connections, opened now: a
        // node that cannot have them does not start.
        let write_conn = writer::Conn::open(&config).await.map_err(db)?;
        let mut read_conns = Vec::with_capacity(reader::READERS);
        for _ in 0..reader::READERS {
            read_conns.push(reader::Conn::open(&config).await?);
        }
        let (rtx, rrx) = mpsc::channel(reader::READ_QUEUE_DEPTH);
        let rrx = Arc::new(tokio::sync::Mutex::new(rrx));
        let reader_tasks = read_conns
            .into_iter()
            .map(|c| tokio::spawn(reader::run(config.clone(), c, rrx.clone())))
            .collect();
        let (wtx, wrx) = mpsc::channel(writer::WRITE_QUEUE_DEPTH);
        let groups = Arc::new(AtomicU64::new(0));
        let writer_task = tokio::spawn(writer::run(
            config,
            write_conn,
            node,
            options.write_batch.max(1),
            wrx,
            groups.clone(),
        ));
        Ok(PostgresStore {
            pool,
            closed: AtomicBool::new(false),
            wakeups: std::sync::Mutex::new(Some(rx)),
            listener: std::sync::Mutex::new(Some(listener)),
            writer: wtx,
            writer_task: std::sync::Mutex::new(Some(writer_task)),
            reader: rtx,
            reader_tasks: std::sync::Mutex::new(reader_tasks),
            groups,
        })
    }

    /// Queues a read for the readers and waits for its answer.
    async fn read<T>(
        &self,
        read: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> reader::Read,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.reader
            .send(read(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues a job for the writer and waits for its answer (given after
    /// its group's `COMMIT` returned).
    async fn write<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> writer::Job,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(writer::Msg::Job(job(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(source) => StoreError::Postgres { source },
            _ => StoreError::Closed,
        })
    }
}

impl Store for PostgresStore {
    fn register(&self, keys: MailboxPublic, pow_required: bool) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO UPDATE SET pow_required = excluded.pow_required",
                    &[
                        &&keys.id().as_bytes()[..],
                        &&keys.auth.0[..],
                        &&keys.seal.0[..],
                        &pow_required,
                    ],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn mailbox(&self, id: MailboxId) -> StoreFuture<'_, Option<MailboxRecord>> {
        // Batched with the node's other lookups (module `reader`).
        Box::pin(self.read(move |reply| reader::Read::Mailbox { id, reply }))
    }

    fn deposit(&self, batch: Vec<NewEnvelope>, quotas: Quotas) -> StoreFuture<'_, DepositOutcome> {
        // Committed with whatever else the node's connections queued
        // meanwhile (module `writer`): recipients locked in id order, the
        // quota decided per recipient from the trigger-kept counters,
        // `NOTIFY` on commit.
        Box::pin(self.write(move |reply| writer::Job::Deposit {
            batch,
            quotas,
            reply,
        }))
    }

    fn pending(
        &self,
        mailbox: MailboxId,
        now: UnixTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEnvelope>> {
        // Batched with the node's other pending reads (module `reader`).
        Box::pin(self.read(move |reply| reader::Read::Pending {
            mailbox,
            now,
            limit,
            reply,
        }))
    }

    fn ack(&self, mailbox: MailboxId, ids: Vec<EnvelopeId>) -> StoreFuture<'_, u64> {
        self.ack_many(vec![(mailbox, ids)])
    }

    fn ack_many(&self, acks: Vec<(MailboxId, Vec<EnvelopeId>)>) -> StoreFuture<'_, u64> {
        // One deletion for the whole group (module `writer`), after the
        // mailboxes' row locks in the deposits' order.
        Box::pin(self.write(move |reply| writer::Job::Ack { acks, reply }))
    }

    fn put_directory(&self, dir: DirectoryRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            // One statement: the row lock taken by ON CONFLICT makes racing
            // publishers on different nodes apply one after the other, and
            // the WHERE refuses anything not newer than what is stored.
            let n = client
                .execute(
                    "INSERT INTO directories (org_key, serial, directory) VALUES ($1, $2, $3)
                     ON CONFLICT (org_key) DO UPDATE
                        SET serial = excluded.serial, directory = excluded.directory
                        WHERE directories.serial < excluded.serial
                           OR (directories.serial = excluded.serial
                               AND directories.directory = excluded.directory)",
                    &[
                        &&dir.org_key[..],
                        &&dir.serial.to_be_bytes()[..],
                        &dir.bytes,
                    ],
                )
                .await
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::DirectoryRollback);
            }
            Ok(())
        })
    }

    fn directory(&self, org_key: [u8; 32]) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(client
                .query_opt(
                    "SELECT directory FROM directories WHERE org_key = $1",
                    &[&&org_key[..]],
                )
                .await
                .map_err(db)?
                .map(|r| r.get(0)))
        })
    }

    fn put_prekeys(
        &self,
        mailbox: MailboxId,
        upload: PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StoreFuture<'_, PrekeyCounts> {
        Box::pin(async move {
            let m = &mailbox.as_bytes()[..];
            in_tx!(self, |tx| {
                // The row lock serialises uploads for one mailbox across
                // nodes, so the caps below cannot be passed by racing.
                if !lock_mailbox(&tx, &mailbox).await? {
                    return Err(StoreError::UnknownMailbox);
                }
                tx.execute(
                    "INSERT INTO signed_prekeys (mailbox, bundle) VALUES ($1, $2)
                     ON CONFLICT (mailbox) DO UPDATE SET bundle = excluded.bundle",
                    &[&m, &upload.signed_bundle],
                )
                .await
                .map_err(db)?;
                if upload.replace {
                    for table in ["one_time_prekeys", "one_time_pq_prekeys"] {
                        tx.execute(&format!("DELETE FROM {table} WHERE mailbox = $1"), &[&m])
                            .await
                            .map_err(db)?;
                    }
                }
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO one_time_prekeys (mailbox, prekey_id, public) VALUES ($1, $2, $3)
                         ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public = excluded.public",
                    )
                    .await
                    .map_err(db)?;
                for k in &upload.one_time {
                    tx.execute(&insert, &[&m, &i64::from(k.id), &&k.public.0[..]])
                        .await
                        .map_err(db)?;
                }
                let insert = tx
                    .prepare_cached(
                        "INSERT INTO one_time_pq_prekeys (mailbox, prekey_id, public) VALUES ($1, $2, $3)
                         ON CONFLICT (mailbox, prekey_id) DO UPDATE SET public = excluded.public",
                    )
                    .await
                    .map_err(db)?;
                for k in &upload.one_time_pq {
                    tx.execute(&insert, &[&m, &i64::from(k.id), &&k.public[..]])
                        .await
                        .map_err(db)?;
                }
                let row = tx
                    .query_one(
                        "SELECT (SELECT COUNT(*) FROM one_time_prekeys WHERE mailbox = $1),
                                (SELECT COUNT(*) FROM one_time_pq_prekeys WHERE mailbox = $1)",
                        &[&m],
                    )
                    .await
                    .map_err(db)?;
                let counts = PrekeyCounts {
                    one_time: row.get::<_, i64>(0) as u64,
                    one_time_pq: row.get::<_, i64>(1) as u64,
                };
                // Over a cap: the error rolls the whole upload back.
                if counts.one_time > caps.max_one_time || counts.one_time_pq > caps.max_one_time_pq
                {
                    return Err(StoreError::QuotaExceeded);
                }
                Ok::<PrekeyCounts, StoreError>(counts)
            })
        })
    }

    fn take_prekeys(&self, mailbox: MailboxId) -> StoreFuture<'_, Option<PrekeyBundle>> {
        Box::pin(async move {
            let m = &mailbox.as_bytes()[..];
            in_tx!(self, |tx| {
                let Some(row) = tx
                    .query_opt(
                        "SELECT bundle FROM signed_prekeys WHERE mailbox = $1",
                        &[&m],
                    )
                    .await
                    .map_err(db)?
                else {
                    return Ok(None);
                };
                let signed_bundle: Vec<u8> = row.get(0);
                // Exactly once across nodes: a row another transaction is
                // taking is skipped, and the one we take is deleted.
                let mut taken = Vec::with_capacity(2);
                for table in ["one_time_prekeys", "one_time_pq_prekeys"] {
                    let row = tx
                        .query_opt(
                            &format!(
                                "DELETE FROM {table} WHERE (mailbox, prekey_id) = (
                                     SELECT mailbox, prekey_id FROM {table}
                                     WHERE mailbox = $1 ORDER BY prekey_id LIMIT 1
                                     FOR UPDATE SKIP LOCKED)
                                 RETURNING prekey_id, public"
                            ),
                            &[&m],
                        )
                        .await
                        .map_err(db)?;
                    taken.push(match row {
                        None => None,
                        Some(r) => {
                            let id = u32::try_from(r.get::<_, i64>(0))
                                .map_err(|_| StoreError::Corrupt { what: "prekey id" })?;
                            Some((id, r.get::<_, Vec<u8>>(1)))
                        }
                    });
                }
                let one_time_pq = match taken.pop().flatten() {
                    None => None,
                    Some((id, public)) => Some(pq_prekey(id, &public)?),
                };
                let one_time = match taken.pop().flatten() {
                    None => None,
                    Some((id, pk)) => {
                        let mut b = [0u8; ONE_TIME_PREKEY_LEN];
                        b[..4].copy_from_slice(&id.to_be_bytes());
                        b[4..].copy_from_slice(&id32(pk, "one-time prekey")?);
                        Some(OneTimePrekey::from_bytes(&b))
                    }
                };
                Ok::<Option<PrekeyBundle>, StoreError>(Some(PrekeyBundle {
                    signed_bundle,
                    one_time,
                    one_time_pq,
                }))
            })
        })
    }

    fn put_state(&self, mailbox: MailboxId, state: StateBlob) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            in_tx!(self, |tx| {
                if !lock_mailbox(&tx, &mailbox).await? {
                    return Err(StoreError::UnknownMailbox);
                }
                tx.execute(
                    "INSERT INTO states (mailbox, expires_at, blob) VALUES ($1, $2, $3)
                     ON CONFLICT (mailbox) DO UPDATE
                        SET expires_at = excluded.expires_at, blob = excluded.blob",
                    &[
                        &&mailbox.as_bytes()[..],
                        &i64_of(state.expires_at),
                        &state.blob,
                    ],
                )
                .await
                .map_err(db)?;
                Ok::<(), StoreError>(())
            })
        })
    }

    fn state(&self, mailbox: MailboxId, now: UnixTime) -> StoreFuture<'_, Option<StateBlob>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(client
                .query_opt(
                    "SELECT expires_at, blob FROM states WHERE mailbox = $1 AND expires_at > $2",
                    &[&&mailbox.as_bytes()[..], &i64_of(now)],
                )
                .await
                .map_err(db)?
                .map(|r| StateBlob {
                    expires_at: time_of(r.get(0)),
                    blob: r.get(1),
                }))
        })
    }

    fn delete_state(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(client
                .execute(
                    "DELETE FROM states WHERE mailbox = $1",
                    &[&&mailbox.as_bytes()[..]],
                )
                .await
                .map_err(db)?
                > 0)
        })
    }

    fn delete_blob(&self, blob: BlobId) -> StoreFuture<'_, bool> {
        // Chunks go by cascade; the trigger gives the bytes back.
        Box::pin(async move {
            in_tx!(self, |tx| {
                let n = tx
                    .execute("DELETE FROM blobs WHERE id = $1", &[&&blob.as_bytes()[..]])
                    .await
                    .map_err(db)?;
                Ok::<bool, StoreError>(n > 0)
            })
        })
    }

    fn delete_mailbox(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        // Foreign keys cascade to envelopes, prekeys and state.
        Box::pin(async move {
            in_tx!(self, |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM mailboxes WHERE id = $1",
                        &[&&mailbox.as_bytes()[..]],
                    )
                    .await
                    .map_err(db)?;
                Ok::<bool, StoreError>(n > 0)
            })
        })
    }

    fn sweep(&self, now: UnixTime) -> StoreFuture<'_, SweepCounts> {
        Box::pin(async move {
            let t = i64_of(now);
            in_tx!(self, |tx| {
                // One node sweeps at a time; the others skip this round.
                let mine: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
                    .await
                    .map_err(db)?
                    .get(0);
                if !mine {
                    return Ok(SweepCounts::default());
                }
                let envelopes = tx
                    .execute("DELETE FROM envelopes WHERE expires_at <= $1", &[&t])
                    .await
                    .map_err(db)?;
                // A seeker's mailbox goes with its expired state (the
                // conversation's retention, docs/PROTOCOL.md §6.6):
                // registration, envelopes, prekeys, by cascade.
                let states = tx
                    .execute(
                        "DELETE FROM mailboxes WHERE id IN \
                         (SELECT mailbox FROM states WHERE expires_at <= $1)",
                        &[&t],
                    )
                    .await
                    .map_err(db)?;
                let blobs = tx
                    .execute("DELETE FROM blobs WHERE expires_at <= $1", &[&t])
                    .await
                    .map_err(db)?;
                Ok::<SweepCounts, StoreError>(SweepCounts {
                    envelopes,
                    states,
                    blobs,
                })
            })
        })
    }

    fn put_chunk(&self, chunk: NewChunk, quotas: BlobQuotas) -> StoreFuture<'_, u16> {
        Box::pin(async move {
            in_tx!(self, |tx| {
                let m = &chunk.mailbox.as_bytes()[..];
                let b = &chunk.blob.as_bytes()[..];
                // The mailbox row is locked: its quota cannot move under us.
                let Some(row) = tx
                    .query_opt(
                        "SELECT envelope_bytes + blob_bytes FROM mailboxes WHERE id = $1 FOR UPDATE",
                        &[&m],
                    )
                    .await
                    .map_err(db)?
                else {
                    return Err(StoreError::UnknownMailbox);
                };
                let held_bytes: i64 = row.get(0);
                let existing = match tx
                    .query_opt(
                        "SELECT mailbox, chunk_count FROM blobs WHERE id = $1",
                        &[&b],
                    )
                    .await
                    .map_err(db)?
                {
                    None => None,
                    Some(r) => Some((
                        MailboxId::from_bytes(id32(r.get(0), "blob mailbox")?),
                        u16::try_from(r.get::<_, i32>(1))
                            .map_err(|_| StoreError::Corrupt { what: "blob" })?,
                    )),
                };
                let held_blobs: i64 = tx
                    .query_one("SELECT COUNT(*) FROM blobs WHERE mailbox = $1", &[&m])
                    .await
                    .map_err(db)?
                    .get(0);
                let held = (held_bytes.max(0) as u64, held_blobs.max(0) as u64);
                if admit_chunk(&chunk, existing, held, quotas)? {
                    tx.execute(
                        "INSERT INTO blobs (id, mailbox, chunk_count, expires_at) VALUES ($1, $2, $3, $4)",
                        &[
                            &b,
                            &m,
                            &i32::from(chunk.chunk_count),
                            &i64_of(chunk.expires_at),
                        ],
                    )
                    .await
                    .map_err(db)?;
                }
                tx.execute(
                    "INSERT INTO blob_chunks (blob, idx, data) VALUES ($1, $2, $3)
                     ON CONFLICT (blob, idx) DO NOTHING",
                    &[&b, &i32::from(chunk.index), &chunk.data],
                )
                .await
                .map_err(db)?;
                let n: i64 = tx
                    .query_one("SELECT COUNT(*) FROM blob_chunks WHERE blob = $1", &[&b])
                    .await
                    .map_err(db)?
                    .get(0);
                Ok::<u16, StoreError>(n.clamp(0, i64::from(u16::MAX)) as u16)
            })
        })
    }

    fn blob_chunks(&self, blob: BlobId, now: UnixTime) -> StoreFuture<'_, Option<Vec<bool>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let b = &blob.as_bytes()[..];
            let Some(row) = client
                .query_opt(
                    "SELECT chunk_count FROM blobs WHERE id = $1 AND expires_at > $2",
                    &[&b, &i64_of(now)],
                )
                .await
                .map_err(db)?
            else {
                return Ok(None);
            };
            let n: i32 = row.get(0);
            let mut present = vec![false; usize::try_from(n).unwrap_or(0)];
            for r in client
                .query("SELECT idx FROM blob_chunks WHERE blob = $1", &[&b])
                .await
                .map_err(db)?
            {
                let slot = usize::try_from(r.get::<_, i32>(0))
                    .ok()
                    .and_then(|i| present.get_mut(i))
                    .ok_or(StoreError::Corrupt { what: "blob chunk" })?;
                *slot = true;
            }
            Ok(Some(present))
        })
    }

    fn chunk(&self, blob: BlobId, index: u16, now: UnixTime) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let client = self.client().await?;
            Ok(client
                .query_opt(
                    "SELECT data FROM blob_chunks JOIN blobs ON blobs.id = blob_chunks.blob
                     WHERE blob_chunks.blob = $1 AND blob_chunks.idx = $2 AND blobs.expires_at > $3",
                    &[&&blob.as_bytes()[..], &i32::from(index), &i64_of(now)],
                )
                .await
                .map_err(db)?
                .map(|r| r.get(0)))
        })
    }

    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let client = self.client().await?;
            client.query_one("SELECT 1", &[]).await.map_err(db)?;
            Ok(())
        })
    }

    fn database_bytes(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .map_err(db)?;
            let bytes: i64 = row.try_get(0).map_err(db)?;
            Ok(Some(u64::try_from(bytes).unwrap_or(0)))
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
            // Calls in flight hold their connection until they commit; the
            // writer commits what was queued before it is told to close.
            self.closed.store(true, Ordering::Release);
            let (done, closed) = oneshot::channel();
            if self.writer.send(writer::Msg::Close(done)).await.is_ok() {
                let _ = closed.await;
            }
            let handle = self.writer_task.lock().ok().and_then(|mut h| h.take());
            if let Some(h) = handle {
                let _ = h.await;
            }
            // Reads still queued are answered `Closed` (their replies drop).
            let readers = self
                .reader_tasks
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            for h in readers {
                h.abort();
            }
            let handle = self.listener.lock().ok().and_then(|mut h| h.take());
            if let Some(h) = handle {
                h.abort();
            }
            self.pool.close();
            Ok(())
        })
    }

    fn take_wakeups(&self) -> Option<mpsc::Receiver<Wakeup>> {
        self.wakeups.lock().ok().and_then(|mut w| w.take())
    }
}

/// A fresh, empty database for a test, from the admin URL in
/// `NORTHSTAR_TEST_POSTGRES` (`postgres://user@host:port/db`, set by
/// `scripts/pg-throwaway`); `None` when unset.
#[cfg(test)]
pub(crate) async fn test_database() -> Option<String> {
    let admin = std::env::var("NORTHSTAR_TEST_POSTGRES").ok()?;
    let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.ok()?;
    tokio::spawn(conn);
    let mut raw = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    let name = format!("northstar_unit_{}", u64::from_be_bytes(raw));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .ok()?;
    // `postgres://user@host:port/<admin db>` → the same server, our database.
    let (server, _) = admin.rsplit_once('/')?;
    Some(format!("{server}/{name}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use northstar_core::frame::OneTimePqPrekey;
    use northstar_core::keys::X25519Public;
    use northstar_core::sealed::Envelope;

    use super::*;

    /// Skips (loudly) when no throwaway server is configured; `scripts/test`
    /// always starts one, so CI runs these.
    macro_rules! database_or_skip {
        () => {
            match test_database().await {
                Some(url) => url,
                None => {
                    eprintln!("NORTHSTAR_TEST_POSTGRES unset: PostgreSQL store tests skipped");
                    return;
                }
            }
        };
    }

    #[tokio::test]
    async fn contract() {
        let url = database_or_skip!();
        let store = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        super::super::contract::run(&store).await;
    }

    #[tokio::test]
    async fn migrates_once_and_two_stores_share_one_database() {
        let url = database_or_skip!();
        let (a, b) = tokio::join!(
            PostgresStore::open(&url, PostgresOptions::default()),
            PostgresStore::open(&url, PostgresOptions::default()),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let client = a.client().await.unwrap();
        let v: i32 = client
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v as usize, MIGRATIONS.len());
        drop(client);
        let k = super::super::contract::keys(1);
        a.register(k, true).await.unwrap();
        assert!(b.mailbox(k.id()).await.unwrap().unwrap().pow_required);
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// A database written before one-time ML-KEM prekeys existed (schema 1)
    /// migrates on open and keeps what it held.
    #[tokio::test]
    async fn a_schema_1_database_gains_one_time_pq_prekeys_and_keeps_its_prekeys() {
        let url = database_or_skip!();
        let k = super::super::contract::keys(1);
        let m = k.id();
        {
            let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "{}
                     CREATE TABLE schema_version (version integer NOT NULL);
                     INSERT INTO schema_version (version) VALUES (1);",
                    MIGRATIONS[0]
                ))
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES ($1, $2, $3, true)",
                    &[&&m.as_bytes()[..], &&k.auth.0[..], &&k.seal.0[..]],
                )
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO signed_prekeys (mailbox, bundle) VALUES ($1, $2)",
                    &[&&m.as_bytes()[..], &&[7u8; 40][..]],
                )
                .await
                .unwrap();
            client
                .execute(
                    "INSERT INTO one_time_prekeys (mailbox, prekey_id, public) VALUES ($1, 5, $2)",
                    &[&&m.as_bytes()[..], &&[5u8; 32][..]],
                )
                .await
                .unwrap();
            drop(client);
            let _ = task.await;
        }
        let s = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let v: i32 = s
            .client()
            .await
            .unwrap()
            .query_one("SELECT version FROM schema_version", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v as usize, MIGRATIONS.len());
        let b = s.take_prekeys(m).await.unwrap().unwrap();
        assert_eq!(b.signed_bundle, vec![7; 40]);
        assert_eq!(b.one_time.map(|k| (k.id, k.public.0)), Some((5, [5; 32])));
        assert_eq!(b.one_time_pq, None);
        let counts = s
            .put_prekeys(
                m,
                PrekeyUpload {
                    signed_bundle: vec![8; 40],
                    one_time: vec![],
                    one_time_pq: vec![super::super::contract::pq_otk(3)],
                    replace: false,
                },
                PrekeyCaps {
                    max_one_time: 10,
                    max_one_time_pq: 10,
                },
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
        assert!(s.delete_mailbox(m).await.unwrap());
        let left: i64 = s
            .client()
            .await
            .unwrap()
            .query_one("SELECT COUNT(*) FROM one_time_pq_prekeys", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
        s.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_nodes_take_each_one_time_prekey_once() {
        let url = database_or_skip!();
        let a = Arc::new(
            PostgresStore::open(&url, PostgresOptions::default())
                .await
                .unwrap(),
        );
        let b = Arc::new(
            PostgresStore::open(&url, PostgresOptions::default())
                .await
                .unwrap(),
        );
        let k = super::super::contract::keys(1);
        a.register(k, false).await.unwrap();
        let keys: Vec<OneTimePrekey> = (0..40u32)
            .map(|id| OneTimePrekey {
                id,
                public: X25519Public([id as u8; 32]),
            })
            .collect();
        let pq: Vec<OneTimePqPrekey> = (0..40u32).map(super::super::contract::pq_otk).collect();
        a.put_prekeys(
            k.id(),
            PrekeyUpload {
                signed_bundle: vec![1; 50],
                one_time: keys,
                one_time_pq: pq,
                replace: false,
            },
            PrekeyCaps {
                max_one_time: 100,
                max_one_time_pq: 100,
            },
        )
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for i in 0..60 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let b = s.take_prekeys(k.id()).await.unwrap().unwrap();
                (b.one_time, b.one_time_pq)
            }));
        }
        let (mut got, mut got_pq) = (Vec::new(), Vec::new());
        for t in tasks {
            let (otk, pq) = t.await.unwrap();
            if let Some(otk) = otk {
                got.push(otk.id);
            }
            if let Some(pq) = pq {
                assert_eq!(pq, super::super::contract::pq_otk(pq.id));
                got_pq.push(pq.id);
            }
        }
        got.sort_unstable();
        got_pq.sort_unstable();
        assert_eq!(got, (0..40).collect::<Vec<_>>(), "each key handed out once");
        assert_eq!(got_pq, got, "each ML-KEM key handed out once");

        // Racing directory publishers: the newest serial wins, whatever the order.
        let mut tasks = Vec::new();
        for serial in 1..=20u64 {
            let s = if serial % 2 == 0 {
                a.clone()
            } else {
                b.clone()
            };
            tasks.push(tokio::spawn(async move {
                s.put_directory(DirectoryRecord {
                    org_key: [7; 32],
                    serial,
                    bytes: vec![serial as u8; 8],
                })
                .await
            }));
        }
        for t in tasks {
            let _ = t.await.unwrap();
        }
        assert_eq!(a.directory([7; 32]).await.unwrap(), Some(vec![20; 8]));

        // Racing deposits on both nodes: the quota holds exactly.
        let q = Quotas {
            max_envelopes: 25,
            max_bytes: 1 << 20,
        };
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let envelope = Envelope::from_parts(k.id(), vec![i; 50]).unwrap();
                let id = EnvelopeId::of(&envelope.encode());
                s.deposit(
                    vec![NewEnvelope {
                        id,
                        expires_at: UnixTime(7200),
                        envelope,
                    }],
                    q,
                )
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(o) if o.over_quota.is_empty() => ok += 1,
                Ok(o) => assert_eq!(o.over_quota, vec![0]),
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, 25);
        assert_eq!(b.pending(k.id(), UnixTime(0), 100).await.unwrap().len(), 25);
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// `(mailbox, seq)` of every stored envelope, sorted.
    async fn stored_seqs(s: &PostgresStore) -> Vec<(Vec<u8>, i64)> {
        let client = s.client().await.unwrap();
        client
            .query(
                "SELECT mailbox, seq FROM envelopes ORDER BY mailbox, seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    #[tokio::test]
    async fn envelopes_are_numbered_per_mailbox() {
        use super::super::contract::{keys, new_env};
        let url = database_or_skip!();
        let s = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let (a, b) = (keys(1).id(), keys(2).id());
        s.register(keys(1), false).await.unwrap();
        s.register(keys(2), false).await.unwrap();
        let q = Quotas {
            max_envelopes: 100,
            max_bytes: 1 << 20,
        };
        s.deposit(vec![new_env(a, 1, 60, 7200)], q).await.unwrap();
        s.deposit(vec![new_env(b, 2, 60, 7200), new_env(a, 3, 60, 7200)], q)
            .await
            .unwrap();
        s.deposit(vec![new_env(b, 4, 60, 7200)], q).await.unwrap();
        s.deposit(vec![new_env(a, 5, 60, 7200)], q).await.unwrap();
        let (av, bv) = (a.as_bytes().to_vec(), b.as_bytes().to_vec());
        let mut want = vec![
            (av.clone(), 1),
            (av.clone(), 2),
            (av, 3),
            (bv.clone(), 1),
            (bv, 2),
        ];
        want.sort();
        assert_eq!(stored_seqs(&s).await, want);
        let fills: Vec<u8> = s
            .pending(a, UnixTime(0), 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope.ciphertext()[0])
            .collect();
        assert_eq!(fills, vec![1, 3, 5], "deposit order within the mailbox");
        let client = s.client().await.unwrap();
        let sequences: i64 = client
            .query_one("SELECT COUNT(*) FROM pg_class WHERE relkind = 'S'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sequences, 0, "no global sequence counts deposits");
        drop(client);
        s.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_per_mailbox_migration_renumbers_and_keeps_order_and_counters() {
        use super::super::contract::keys;
        let url = database_or_skip!();
        let (a, b) = (keys(1), keys(2));
        {
            // A database as the relay left it before per-mailbox numbering.
            let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            let task = tokio::spawn(conn);
            let before = MIGRATIONS
                .iter()
                .position(|m| *m == MIGRATION_PER_MAILBOX_SEQ)
                .unwrap();
            client
                .batch_execute("CREATE TABLE schema_version (version integer NOT NULL)")
                .await
                .unwrap();
            for sql in &MIGRATIONS[..before] {
                client.batch_execute(sql).await.unwrap();
            }
            client
                .execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(before as i32)],
                )
                .await
                .unwrap();
            for k in [a, b] {
                client
                    .execute(
                        "INSERT INTO mailboxes (id, auth_pk, seal_pk, pow_required) VALUES ($1, $2, $3, false)",
                        &[&&k.id().as_bytes()[..], &&k.auth.0[..], &&k.seal.0[..]],
                    )
                    .await
                    .unwrap();
            }
            for (i, k) in [a, b, a, b, a].iter().enumerate() {
                client
                    .execute(
                        "INSERT INTO envelopes (mailbox, id, expires_at, ciphertext) VALUES ($1, $2, 7200, $3)",
                        &[&&k.id().as_bytes()[..], &&[i as u8; 32][..], &vec![i as u8; 50]],
                    )
                    .await
                    .unwrap();
            }
            drop(client);
            let _ = task.await;
        }
        let s = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
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
        let (av, bv) = (a.id().as_bytes().to_vec(), b.id().as_bytes().to_vec());
        let mut want = vec![
            (av.clone(), 1),
            (av.clone(), 2),
            (av, 3),
            (bv.clone(), 1),
            (bv, 2),
        ];
        want.sort();
        assert_eq!(stored_seqs(&s).await, want);
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

    #[tokio::test]
    async fn a_deposit_on_one_node_wakes_the_other() {
        let url = database_or_skip!();
        let a = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let b = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let mut wake = b.take_wakeups().unwrap();
        assert!(b.take_wakeups().is_none(), "taken once");
        // The listener announces itself first (re-read everything).
        let first = tokio::time::timeout(Duration::from_secs(10), wake.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(Wakeup::All));
        let k = super::super::contract::keys(3);
        a.register(k, false).await.unwrap();
        let envelope = Envelope::from_parts(k.id(), vec![1; 50]).unwrap();
        let id = EnvelopeId::of(&envelope.encode());
        a.deposit(
            vec![NewEnvelope {
                id,
                expires_at: UnixTime(7200),
                envelope,
            }],
            Quotas {
                max_envelopes: 10,
                max_bytes: 1 << 20,
            },
        )
        .await
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), wake.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(Wakeup::Mailbox(k.id())));
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// A node's own deposits are delivered in memory by the relay: its
    /// listener skips their notifications, while the other node gets one
    /// wake-up per recipient of the group.
    #[tokio::test]
    async fn a_node_is_not_woken_by_its_own_deposits() {
        use super::super::contract::{keys, new_env};
        let url = database_or_skip!();
        let a = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let b = PostgresStore::open(&url, PostgresOptions::default())
            .await
            .unwrap();
        let (mut wake_a, mut wake_b) = (a.take_wakeups().unwrap(), b.take_wakeups().unwrap());
        for w in [&mut wake_a, &mut wake_b] {
            let first = tokio::time::timeout(Duration::from_secs(10), w.recv()).await;
            assert_eq!(first.unwrap(), Some(Wakeup::All));
        }
        let (k1, k2) = (keys(1), keys(2));
        a.register(k1, false).await.unwrap();
        a.register(k2, false).await.unwrap();
        let q = Quotas {
            max_envelopes: 10,
            max_bytes: 1 << 20,
        };
        a.deposit(
            vec![new_env(k1.id(), 1, 60, 7200), new_env(k2.id(), 2, 60, 7200)],
            q,
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let w = tokio::time::timeout(Duration::from_secs(10), wake_b.recv()).await;
            got.push(w.unwrap().unwrap());
        }
        got.sort_by_key(|w| match w {
            Wakeup::Mailbox(m) => *m.as_bytes(),
            Wakeup::All => [0; 32],
        });
        let mut want = vec![Wakeup::Mailbox(k1.id()), Wakeup::Mailbox(k2.id())];
        want.sort_by_key(|w| match w {
            Wakeup::Mailbox(m) => *m.as_bytes(),
            Wakeup::All => [0; 32],
        });
        assert_eq!(got, want);
        // By now a's listener had the same notification: it woke nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), wake_a.recv())
                .await
                .is_err()
        );
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// Lookups and pending reads made at once are answered from batched
    /// statements exactly as alone: unknown mailboxes, expiry, limits, the
    /// same mailbox read twice, deposit order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_are_answered_as_single_ones() {
        use super::super::contract::{keys, new_env};
        let url = database_or_skip!();
        let s = Arc::new(
            PostgresStore::open(&url, PostgresOptions::default())
                .await
                .unwrap(),
        );
        for i in 1..=3 {
            s.register(keys(i), i == 2).await.unwrap();
        }
        let q = Quotas {
            max_envelopes: 100,
            max_bytes: 1 << 20,
        };
        // Mailbox 1: fills 1..=6, the even ones expiring at 3600.
        for f in 1..=6u8 {
            let expires = if f % 2 == 0 { 3600 } else { 7200 };
            s.deposit(vec![new_env(keys(1).id(), f, 50, expires)], q)
                .await
                .unwrap();
        }
        s.deposit(vec![new_env(keys(2).id(), 9, 60, 7200)], q)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..120u32 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let k = keys((i % 4 + 1) as u8);
                match i % 3 {
                    0 => {
                        let r = s.mailbox(k.id()).await.unwrap();
                        let want = (i % 4 < 3).then_some(MailboxRecord {
                            keys: k,
                            pow_required: i % 4 == 1,
                        });
                        assert_eq!(r, want, "lookup {i}");
                    }
                    _ => {
                        let (now, limit) =
                            [(0, 256), (3600, 256), (0, 2), (3600, 2)][i as usize / 4 % 4];
                        let fills: Vec<u8> = s
                            .pending(k.id(), UnixTime(now), limit)
                            .await
                            .unwrap()
                            .iter()
                            .map(|e| e.envelope.ciphertext()[0])
                            .collect();
                        let all: Vec<u8> = match i % 4 {
                            0 if now == 0 => vec![1, 2, 3, 4, 5, 6],
                            0 => vec![1, 3, 5],
                            1 => vec![9],
                            _ => vec![],
                        };
                        let want: Vec<u8> = all.into_iter().take(limit).collect();
                        assert_eq!(fills, want, "pending {i}");
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        s.close().await.unwrap();
        assert!(matches!(
            s.pending(keys(1).id(), UnixTime(0), 10).await,
            Err(StoreError::Closed)
        ));
    }

    /// The per-mailbox counters against a recount, for every way envelopes
    /// and blobs come and go.
    async fn assert_counters_match(s: &PostgresStore) {
        let client = s.client().await.unwrap();
        let rows = client
            .query(
                "SELECT m.id, m.envelope_count, m.envelope_bytes,
                        (SELECT COUNT(*) FROM envelopes e WHERE e.mailbox = m.id),
                        (SELECT COALESCE(SUM(length(ciphertext)), 0)::bigint
                         FROM envelopes e WHERE e.mailbox = m.id)
                 FROM mailboxes m",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let (count, bytes, recount, rebytes): (i64, i64, i64, i64) =
                (r.get(1), r.get(2), r.get(3), r.get(4));
            assert_eq!((count, bytes), (recount, rebytes));
        }
    }

    /// Hundreds of concurrent deposits and acknowledgements commit in a
    /// few groups; every deposit is stored once, the quota holds exactly,
    /// and the statement-level counters match a recount throughout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_group_commit_and_keep_the_counters() {
        use super::super::contract::{keys, new_env};
        let url = database_or_skip!();
        let s = Arc::new(
            PostgresStore::open(&url, PostgresOptions::default())
                .await
                .unwrap(),
        );
        let boxes: Vec<MailboxId> = (1..=5).map(|i| keys(i).id()).collect();
        for i in 1..=5 {
            s.register(keys(i), false).await.unwrap();
        }
        // Mailbox 5 takes 30 envelopes at most.
        let q = |m: &MailboxId| Quotas {
            max_envelopes: if *m == boxes[4] { 30 } else { 1000 },
            max_bytes: 1 << 20,
        };
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let s = s.clone();
            let to = boxes[i as usize % 5];
            let quotas = q(&to);
            tasks.push(tokio::spawn(async move {
                let e = new_env(to, (i % 250) as u8, 48 + (i / 250) as usize, 7200);
                s.deposit(vec![e], quotas).await.unwrap()
            }));
        }
        let mut stored = 0;
        let mut refused = 0;
        for t in tasks {
            let o = t.await.unwrap();
            stored += o.stored;
            refused += o.over_quota.len();
        }
        assert_eq!(refused, 50, "mailbox 5 refuses every deposit past 30");
        assert_eq!(stored, 350);
        let groups = s.groups.load(Ordering::Relaxed);
        assert!(groups < 200, "400 concurrent deposits took {groups} groups");
        assert_counters_match(&s).await;

        // Acknowledgements from many connections at once, one mailbox's
        // ids twice and another's under the wrong mailbox.
        let mut acks = Vec::new();
        for m in &boxes {
            let ids: Vec<EnvelopeId> = s
                .pending(*m, UnixTime(0), 1000)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            acks.push((*m, ids));
        }
        let before = s.groups.load(Ordering::Relaxed);
        let mut tasks = Vec::new();
        for (m, ids) in acks.clone() {
            for chunk in ids.chunks(7) {
                let s = s.clone();
                let chunk = chunk.to_vec();
                tasks.push(tokio::spawn(async move { s.ack(m, chunk).await.unwrap() }));
            }
        }
        // The same ids again (counted once over the two), and under another mailbox (none).
        let again = {
            let s = s.clone();
            let (m, ids) = acks[0].clone();
            let other = boxes[1];
            tokio::spawn(async move {
                s.ack_many(vec![(m, ids.clone()), (other, ids)])
                    .await
                    .unwrap()
            })
        };
        let mut deleted = 0;
        for t in tasks {
            deleted += t.await.unwrap();
        }
        deleted += again.await.unwrap();
        assert_eq!(deleted, 350);
        assert!(s.groups.load(Ordering::Relaxed) - before < 40);
        for m in &boxes {
            assert!(s.pending(*m, UnixTime(0), 10).await.unwrap().is_empty());
        }
        assert_counters_match(&s).await;
        let client = s.client().await.unwrap();
        let left: i64 = client
            .query_one(
                "SELECT COALESCE(SUM(envelope_count), 0)::bigint + COALESCE(SUM(envelope_bytes), 0)::bigint FROM mailboxes",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
        drop(client);

        // Sweeps and deleted mailboxes keep them too.
        s.deposit(
            vec![
                new_env(boxes[0], 1, 60, 3600),
                new_env(boxes[0], 2, 70, 7200),
            ],
            q(&boxes[0]),
        )
        .await
        .unwrap();
        s.deposit(vec![new_env(boxes[1], 3, 80, 3600)], q(&boxes[1]))
            .await
            .unwrap();
        assert_eq!(s.sweep(UnixTime(3600)).await.unwrap().envelopes, 2);
        assert_counters_match(&s).await;
        assert!(s.delete_mailbox(boxes[0]).await.unwrap());
        assert_counters_match(&s).await;
        s.close().await.unwrap();
    }

    /// A write that fails inside a group (here a deposit the database
    /// refuses, through a constraint only this test adds) changes nothing,
    /// gets its error, and every other write of the group commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_in_a_group_changes_nothing_and_the_others_commit() {
        use super::super::contract::{keys, new_env};
        let url = database_or_skip!();
        let s = Arc::new(
            PostgresStore::open(&url, PostgresOptions::default())
                .await
                .unwrap(),
        );
        s.client()
            .await
            .unwrap()
            .batch_execute(
                "ALTER TABLE envelopes ADD CONSTRAINT test_poison CHECK (get_byte(ciphertext, 0) <> 255)",
            )
            .await
            .unwrap();
        let (a, b) = (keys(1).id(), keys(2).id());
        s.register(keys(1), false).await.unwrap();
        s.register(keys(2), false).await.unwrap();
        let q = Quotas {
            max_envelopes: 1000,
            max_bytes: 1 << 20,
        };
        s.deposit(vec![new_env(b, 7, 50, 7200)], q).await.unwrap();
        let old = s.pending(b, UnixTime(0), 10).await.unwrap()[0].id;
        for round in 0..5u8 {
            let mut tasks = Vec::new();
            for i in 0..60u8 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    // The poisoned one also carries a good envelope: none of
                    // its batch may be stored.
                    let batch = if i == 30 {
                        vec![new_env(a, 200 + round, 50, 7200), new_env(b, 255, 50, 7200)]
                    } else {
                        vec![new_env(a, i, 48 + usize::from(round), 7200)]
                    };
                    (i, s.deposit(batch, q).await)
                }));
            }
            let acker = {
                let s = s.clone();
                tokio::spawn(async move { s.ack(b, vec![old]).await })
            };
            for t in tasks {
                match t.await.unwrap() {
                    (30, r) => assert!(r.is_err(), "the poisoned deposit fails"),
                    (i, r) => assert_eq!(r.unwrap().stored, 1, "deposit {i} stored"),
                }
            }
            assert_eq!(acker.await.unwrap().unwrap(), u64::from(round == 0));
            let held: Vec<u8> = s
                .pending(a, UnixTime(0), 1000)
                .await
                .unwrap()
                .iter()
                .map(|e| e.envelope.ciphertext()[0])
                .collect();
            assert_eq!(held.len(), 59 * (usize::from(round) + 1));
            assert!(
                !held.contains(&(200 + round)),
                "nothing of the failing write"
            );
        }
        assert!(s.pending(b, UnixTime(0), 10).await.unwrap().is_empty());
        assert_counters_match(&s).await;
        s.close().await.unwrap();
    }
}
