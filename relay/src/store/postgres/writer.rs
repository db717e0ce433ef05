//! The node's writer: group commit of deposits and acknowledgements.
//!
//! Every deposit and every acknowledgement of a node is a [`Job`] queued to
//! one writer task with its own connection. The task takes the first queued
//! job and whatever else is queued (up to `write_batch`), and runs them all
//! in ONE transaction of two round trips:
//!
//! 1. `BEGIN`; lock every mailbox the group touches (`FOR UPDATE`, in id
//!    order: groups on other nodes queue behind it instead of deadlocking,
//!    and the counters cannot move under it); delete every acknowledged
//!    envelope (one `DELETE … unnest`); read the recipients' counters and
//!    the envelopes they already hold (one statement each, for all of them).
//!    The statements are pipelined: PostgreSQL runs them in order, the
//!    writer waits once.
//! 2. The group is decided in memory ([`decide`]: the acknowledgements
//!    first, then each deposit in queue order against the counters as the
//!    earlier ones left them, each recipient through [`admit`] exactly as a
//!    lone deposit would be), then one multi-row `INSERT … unnest` for every
//!    envelope admitted, one `pg_notify` statement for the recipients, and
//!    `COMMIT`, pipelined again.
//!
//! Every caller is answered only after `COMMIT` returned. If the group
//! fails (a lost deadlock with a sweep is retried first), it is rolled back
//! and the jobs run again, each in its own savepoint, so a failing job
//! changes nothing and the others commit — as the SQLite writer does, and
//! for the same reason savepoints are on the slow path only.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::future::{try_join3, try_join5};
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Statement};

use super::super::{
    Admit, DepositOutcome, NewEnvelope, Quotas, StoreError, Wakeup, admit, by_recipient, i64_of,
};
use super::{NOTIFY_CHANNEL, RETRIES, db, retryable};

/// Depth of the queue in front of the writer; callers wait (backpressure)
/// when it is full.
pub(super) const WRITE_QUEUE_DEPTH: usize = 4096;

/// Longest `NOTIFY` payload PostgreSQL accepts (it must be shorter than
/// 8000 bytes); a group waking more recipients sends several.
pub(super) const NOTIFY_PAYLOAD_MAX: usize = 7999;

/// Locks the group's mailboxes in id order; returns those that exist.
const LOCK_SQL: &str = "SELECT id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE";

/// Deletes the acknowledged envelopes (each id from its own mailbox only).
const DELETE_SQL: &str = "DELETE FROM envelopes WHERE (mailbox, id) IN
     (SELECT * FROM unnest($1::bytea[], $2::bytea[]))
     RETURNING mailbox, id";

/// The recipients' envelope count, bytes (envelopes and blobs, the byte
/// quota's measure) and highest sequence number, read after the locks.
const COUNTERS_SQL: &str = "SELECT m.id, m.envelope_count, m.envelope_bytes + m.blob_bytes,
            COALESCE((SELECT MAX(e.seq) FROM envelopes e WHERE e.mailbox = m.id), 0)
     FROM mailboxes m WHERE m.id = ANY($1)";

/// Which of the deposited envelopes their recipient already holds.
const HELD_SQL: &str = "SELECT e.mailbox, e.id FROM envelopes e
     JOIN unnest($1::bytea[], $2::bytea[]) AS w(m, i) ON e.mailbox = w.m AND e.id = w.i";

/// Every envelope the group admitted, numbered in memory under the locks.
const INSERT_SQL: &str = "INSERT INTO envelopes (mailbox, seq, id, expires_at, ciphertext)
     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[], $5::bytea[])";

/// One notification per payload, delivered to listeners on commit.
const NOTIFY_SQL: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// One queued write and the caller waiting for it.
pub(super) enum Job {
    Deposit {
        batch: Vec<NewEnvelope>,
        quotas: Quotas,
        reply: oneshot::Sender<Result<DepositOutcome, StoreError>>,
    },
    Ack {
        acks: Vec<(MailboxId, Vec<EnvelopeId>)>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// What a job answers once its group committed.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Deposit(DepositOutcome),
    Ack(u64),
}

impl Job {
    /// Answers the caller: its result if the group committed, else the error.
    fn finish(self, answer: Result<Answer, StoreError>) {
        match self {
            Job::Deposit { reply, .. } => {
                let _ = reply.send(answer.and_then(|a| match a {
                    Answer::Deposit(o) => Ok(o),
                    Answer::Ack(_) => Err(StoreError::Closed),
                }));
            }
            Job::Ack { reply, .. } => {
                let _ = reply.send(answer.and_then(|a| match a {
                    Answer::Ack(n) => Ok(n),
                    Answer::Deposit(_) => Err(StoreError::Closed),
                }));
            }
        }
    }
}

pub(super) enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// A mailbox's counters as the group goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counters {
    count: u64,
    bytes: u64,
    /// Highest sequence number held (the next envelope gets one more).
    seq: i64,
}

/// What a group read under its locks, after its deletions.
#[derive(Debug, Default)]
struct View {
    /// The recipients that exist (locked), with their counters.
    mailboxes: HashMap<MailboxId, Counters>,
    /// `(mailbox, envelope)` pairs of the group's deposits already held.
    held: HashSet<(MailboxId, EnvelopeId)>,
    /// `(mailbox, envelope)` pairs the group's deletion removed.
    deleted: HashSet<(MailboxId, EnvelopeId)>,
}

/// One envelope to insert: the job, its position in the job's batch, and
/// its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    job: usize,
    at: usize,
    seq: i64,
}

/// A group decided: an answer per job, the rows to insert, the recipients
/// to wake (sorted).
#[derive(Debug)]
struct Decided {
    answers: Vec<Answer>,
    rows: Vec<Row>,
    woken: Vec<MailboxId>,
}

/// The mailboxes a group locks, in id order: every deposit's recipients
/// and every acknowledged mailbox (the deletion's counter updates touch
/// their rows, so they are locked first, in the same order).
fn lock_set(jobs: &[Job]) -> Vec<MailboxId> {
    let mut ids: Vec<MailboxId> = Vec::new();
    for job in jobs {
        match job {
            Job::Deposit { batch, .. } => ids.extend(batch.iter().map(|e| *e.envelope.recipient())),
            Job::Ack { acks, .. } => ids.extend(
                acks.iter()
                    .filter(|(_, list)| !list.is_empty())
                    .map(|(m, _)| *m),
            ),
        }
    }
    ids.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    ids.dedup();
    ids
}

/// Distinct `(mailbox, envelope)` pairs, as the two arrays of an `unnest`.
fn pairs<'a>(it: impl Iterator<Item = (&'a MailboxId, &'a EnvelopeId)>) -> [Vec<&'a [u8]>; 2] {
    let mut seen = HashSet::new();
    let [mut ms, mut is] = [Vec::new(), Vec::new()];
    for (m, i) in it {
        if seen.insert((*m, *i)) {
            ms.push(&m.as_bytes()[..]);
            is.push(&i.as_bytes()[..]);
        }
    }
    [ms, is]
}

/// Decides a group against what it read: acknowledgements first (the
/// deletion already ran; each removed pair is counted for the first job
/// that names it), then every deposit in queue order, each recipient's part
/// through [`admit`] against the counters and held envelopes as the earlier
/// jobs left them — so each job gets exactly the answer it would get alone
/// in that order.
fn decide(jobs: &[Job], mut view: View) -> Decided {
    let mut answers = Vec::with_capacity(jobs.len());
    let mut rows = Vec::new();
    let mut woken: Vec<MailboxId> = Vec::new();
    // Answers are pushed in job order; acknowledgements are counted first.
    let mut acked: Vec<Option<u64>> = jobs
        .iter()
        .map(|job| match job {
            Job::Ack { acks, .. } => Some(
                acks.iter()
                    .flat_map(|(m, ids)| ids.iter().map(move |i| (*m, *i)))
                    .filter(|pair| view.deleted.remove(pair))
                    .count() as u64,
            ),
            Job::Deposit { .. } => None,
        })
        .collect();
    for (j, job) in jobs.iter().enumerate() {
        let Job::Deposit { batch, quotas, .. } = job else {
            answers.push(Answer::Ack(acked[j].take().unwrap_or(0)));
            continue;
        };
        let mut out = DepositOutcome::default();
        for (to, positions) in by_recipient(batch) {
            let Some(c) = view.mailboxes.get_mut(&to) else {
                out.unknown.extend(positions);
                continue;
            };
            let held: Vec<bool> = positions
                .iter()
                .map(|&i| view.held.contains(&(to, batch[i].id)))
                .collect();
            match admit(batch, &positions, &held, (c.count, c.bytes), *quotas) {
                Admit::Refuse(at) => out.over_quota.extend(at),
                Admit::Store(at) => {
                    for i in at {
                        c.seq += 1;
                        c.count += 1;
                        c.bytes += batch[i].envelope.ciphertext().len() as u64;
                        view.held.insert((to, batch[i].id));
                        rows.push(Row {
                            job: j,
                            at: i,
                            seq: c.seq,
                        });
                        out.stored += 1;
                    }
                    woken.push(to);
                }
            }
        }
        out.over_quota.sort_unstable();
        out.unknown.sort_unstable();
        answers.push(Answer::Deposit(out));
    }
    woken.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    woken.dedup();
    Decided {
        answers,
        rows,
        woken,
    }
}

/// The `NOTIFY` payloads waking `woken`: the sending node's tag, then the
/// mailbox ids in hex, separated by spaces, split so that each payload
/// stays within [`NOTIFY_PAYLOAD_MAX`].
pub(super) fn notify_payloads(node: &str, woken: &[MailboxId]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for id in woken {
        let hex = id.to_hex();
        if !current.is_empty() && current.len() + 1 + hex.len() > NOTIFY_PAYLOAD_MAX {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(node);
        }
        current.push(' ');
        current.push_str(&hex);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The wake-ups a notification carries for the node tagged `own`: none for
/// its own deposits (it delivered those in memory), one per mailbox named
/// otherwise, and [`Wakeup::All`] for anything it cannot read (re-reading
/// everything never loses a message).
pub(super) fn parse_payload(payload: &str, own: &str) -> Vec<Wakeup> {
    let mut tokens = payload.split(' ');
    match tokens.next() {
        Some(node) if node == own => return Vec::new(),
        Some(node) if !node.is_empty() => {}
        _ => return vec![Wakeup::All],
    }
    let mut out = Vec::new();
    for t in tokens {
        match MailboxId::from_hex(t) {
            Some(id) => out.push(Wakeup::Mailbox(id)),
            None => return vec![Wakeup::All],
        }
    }
    if out.is_empty() {
        return vec![Wakeup::All];
    }
    out
}

/// The writer's connection and its statements (prepared once per connection).
pub(super) struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    lock: Statement,
    delete: Statement,
    counters: Statement,
    held: Statement,
    insert: Statement,
    notify: Statement,
}

impl Conn {
    pub(super) async fn open(
        config: &tokio_postgres::Config,
    ) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let prepared = async {
            Ok::<_, tokio_postgres::Error>([
                client.prepare(LOCK_SQL).await?,
                client.prepare(DELETE_SQL).await?,
                client.prepare(COUNTERS_SQL).await?,
                client.prepare(HELD_SQL).await?,
                client.prepare(INSERT_SQL).await?,
                client.prepare(NOTIFY_SQL).await?,
            ])
        }
        .await;
        let [lock, delete, counters, held, insert, notify] = match prepared {
            Ok(s) => s,
            Err(e) => {
                task.abort();
                return Err(e);
            }
        };
        Ok(Conn {
            client,
            task,
            lock,
            delete,
            counters,
            held,
            insert,
            notify,
        })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a group's statements are bracketed: a transaction of its own, or a
/// savepoint of the slow path's transaction.
#[derive(Clone, Copy)]
enum Bracket {
    Transaction,
    Savepoint,
}

impl Bracket {
    fn open(self) -> &'static str {
        match self {
            Bracket::Transaction => "BEGIN",
            Bracket::Savepoint => "SAVEPOINT job",
        }
    }

    fn close(self) -> &'static str {
        match self {
            Bracket::Transaction => "COMMIT",
            Bracket::Savepoint => "RELEASE SAVEPOINT job",
        }
    }
}

/// Runs `jobs` as one unit (see the module doc): two pipelined round trips,
/// the second ending with `COMMIT` (or the savepoint's release). `Ok` only
/// once that returned.
async fn apply(
    c: &Conn,
    jobs: &[Job],
    node: &str,
    bracket: Bracket,
) -> Result<Vec<Answer>, StoreError> {
    let locks = lock_set(jobs);
    let lock_ids: Vec<&[u8]> = locks.iter().map(|m| &m.as_bytes()[..]).collect();
    let acked = pairs(jobs.iter().flat_map(|job| {
        match job {
            Job::Ack { acks, .. } => acks
                .iter()
                .flat_map(|(m, ids)| ids.iter().map(move |i| (m, i)))
                .collect::<Vec<_>>(),
            Job::Deposit { .. } => Vec::new(),
        }
    }));
    let deposited = pairs(jobs.iter().flat_map(|job| {
        match job {
            Job::Deposit { batch, .. } => batch
                .iter()
                .map(|e| (e.envelope.recipient(), &e.id))
                .collect::<Vec<_>>(),
            Job::Ack { .. } => Vec::new(),
        }
    }));
    let mut recipients: Vec<&[u8]> = deposited[0].clone();
    recipients.sort_unstable();
    recipients.dedup();

    // Round trip 1 (PostgreSQL runs the statements in the order sent).
    let open = c.client.batch_execute(bracket.open());
    let lock = async { c.client.query(&c.lock, &[&lock_ids]).await };
    let delete = async {
        if acked[0].is_empty() {
            return Ok(Vec::new());
        }
        c.client.query(&c.delete, &[&acked[0], &acked[1]]).await
    };
    let counters = async {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        c.client.query(&c.counters, &[&recipients]).await
    };
    let held = async {
        if deposited[0].is_empty() {
            return Ok(Vec::new());
        }
        c.client
            .query(&c.held, &[&deposited[0], &deposited[1]])
            .await
    };
    let ((), locked, deleted, counters, held) = try_join5(open, lock, delete, counters, held)
        .await
        .map_err(db)?;

    let mailbox = |v: Vec<u8>| -> Result<MailboxId, StoreError> {
        Ok(MailboxId::from_bytes(super::super::id32(v, "mailbox id")?))
    };
    let envelope = |v: Vec<u8>| -> Result<EnvelopeId, StoreError> {
        Ok(EnvelopeId::from_bytes(super::super::id32(
            v,
            "envelope id",
        )?))
    };
    let locked: HashSet<MailboxId> = locked
        .into_iter()
        .map(|r| mailbox(r.get(0)))
        .collect::<Result<_, _>>()?;
    let mut view = View::default();
    for r in deleted {
        view.deleted
            .insert((mailbox(r.get(0))?, envelope(r.get(1))?));
    }
    for r in counters {
        let id = mailbox(r.get(0))?;
        // Registered after our lock was taken: unknown to this group.
        if !locked.contains(&id) {
            continue;
        }
        let (count, bytes, seq): (i64, i64, i64) = (r.get(1), r.get(2), r.get(3));
        view.mailboxes.insert(
            id,
            Counters {
                count: count.max(0) as u64,
                bytes: bytes.max(0) as u64,
                seq,
            },
        );
    }
    for r in held {
        view.held.insert((mailbox(r.get(0))?, envelope(r.get(1))?));
    }
    let decided = decide(jobs, view);

    // Round trip 2: the rows, the notifications, the commit.
    let envelope_of = |row: &Row| match &jobs[row.job] {
        Job::Deposit { batch, .. } => Some(&batch[row.at]),
        Job::Ack { .. } => None,
    };
    let admitted: Vec<(&NewEnvelope, i64)> = decided
        .rows
        .iter()
        .filter_map(|row| envelope_of(row).map(|e| (e, row.seq)))
        .collect();
    let ms: Vec<&[u8]> = admitted
        .iter()
        .map(|(e, _)| &e.envelope.recipient().as_bytes()[..])
        .collect();
    let seqs: Vec<i64> = admitted.iter().map(|(_, s)| *s).collect();
    let ids: Vec<&[u8]> = admitted.iter().map(|(e, _)| &e.id.as_bytes()[..]).collect();
    let expiries: Vec<i64> = admitted.iter().map(|(e, _)| i64_of(e.expires_at)).collect();
    let texts: Vec<&[u8]> = admitted
        .iter()
        .map(|(e, _)| e.envelope.ciphertext())
        .collect();
    let payloads = notify_payloads(node, &decided.woken);
    let insert = async {
        if admitted.is_empty() {
            return Ok(0);
        }
        c.client
            .execute(&c.insert, &[&ms, &seqs, &ids, &expiries, &texts])
            .await
    };
    let notify = async {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        // Delivered to listeners on commit, dropped on rollback.
        c.client
            .query(&c.notify, &[&NOTIFY_CHANNEL, &payloads])
            .await
    };
    let close = c.client.batch_execute(bracket.close());
    // The insert stores every row or fails (no conflict clause: the rows
    // were checked under the locks); a failed insert or notification
    // aborts the transaction, and its pipelined COMMIT then rolls back:
    // the error is returned and nothing of the group was stored.
    try_join3(insert, notify, close).await.map_err(db)?;
    Ok(decided.answers)
}

/// Rolls back whatever the failed unit left (the transaction, or the
/// savepoint); says whether the connection still answers.
async fn roll_back(c: &Conn, bracket: Bracket) -> bool {
    let sql = match bracket {
        Bracket::Transaction => "ROLLBACK",
        Bracket::Savepoint => "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job",
    };
    c.client.batch_execute(sql).await.is_ok()
}

/// Commits one group and answers its callers (see the module doc).
async fn run_group(c: &Conn, jobs: Vec<Job>, node: &str) {
    let started = Instant::now();
    let mut attempt = 0usize;
    let failed = loop {
        match apply(c, &jobs, node, Bracket::Transaction).await {
            Ok(answers) => {
                crate::metrics::METRICS
                    .commit_seconds
                    .observe(started.elapsed());
                for (job, answer) in jobs.into_iter().zip(answers) {
                    job.finish(Ok(answer));
                }
                return;
            }
            Err(e) => {
                let _ = roll_back(c, Bracket::Transaction).await;
                if retryable(&e) && attempt < RETRIES {
                    attempt += 1;
                    continue;
                }
                break e;
            }
        }
    };
    if jobs.len() == 1 {
        if let Some(job) = jobs.into_iter().next() {
            job.finish(Err(failed));
        }
        return;
    }
    tracing::warn!(error = %failed, jobs = jobs.len(), "group commit failed; each write in its own savepoint");
    // Slow path: each job in its own savepoint of one transaction.
    let mut answers: Vec<Result<Answer, StoreError>> = Vec::with_capacity(jobs.len());
    let begun = c.client.batch_execute("BEGIN").await.is_ok();
    if begun {
        for j in 0..jobs.len() {
            match apply(c, &jobs[j..=j], node, Bracket::Savepoint).await {
                Ok(mut a) => answers.push(a.pop().ok_or(StoreError::Closed)),
                Err(e) => {
                    if !roll_back(c, Bracket::Savepoint).await {
                        break;
                    }
                    answers.push(Err(e));
                }
            }
        }
    }
    let committed =
        begun && answers.len() == jobs.len() && c.client.batch_execute("COMMIT").await.is_ok();
    if !committed {
        let _ = roll_back(c, Bracket::Transaction).await;
        tracing::warn!("group commit failed on the slow path too; its writes were refused");
    } else {
        crate::metrics::METRICS
            .commit_seconds
            .observe(started.elapsed());
    }
    let mut answers = answers.into_iter();
    for job in jobs {
        match answers.next() {
            Some(answer) if committed => job.finish(answer),
            // Nothing of the group was committed: the caller may retry.
            _ => job.finish(Err(StoreError::Closed)),
        }
    }
}

/// The writer task: group commit until the store closes (see the module
/// doc). `node` tags this node's notifications; `batch` is the most jobs
/// committed in one transaction.
pub(super) async fn run(
    config: tokio_postgres::Config,
    conn: Conn,
    node: String,
    batch: usize,
    mut rx: mpsc::Receiver<Msg>,
    groups: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut conn = Some(conn);
    let mut closing: Option<oneshot::Sender<()>> = None;
    while closing.is_none() {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut msgs = vec![first];
        while msgs.len() < batch {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut jobs = Vec::with_capacity(msgs.len());
        for m in msgs {
            match m {
                // Jobs queued after Close are answered `Closed`.
                Msg::Close(done) if closing.is_none() => closing = Some(done),
                Msg::Close(_) => {}
                Msg::Job(job) if closing.is_some() => job.finish(Err(StoreError::Closed)),
                Msg::Job(job) => jobs.push(job),
            }
        }
        if jobs.is_empty() {
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = match Conn::open(&config).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the writer's connection to PostgreSQL failed");
                    None
                }
            };
        }
        match &conn {
            Some(c) => {
                groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                run_group(c, jobs, &node).await;
            }
            None => {
                for job in jobs {
                    job.finish(Err(StoreError::Closed));
                }
            }
        }
    }
    rx.close();
    while let Ok(m) = rx.try_recv() {
        if let Msg::Job(job) = m {
            job.finish(Err(StoreError::Closed));
        }
    }
    drop(conn);
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use northstar_core::UnixTime;
    use northstar_core::sealed::Envelope;

    use super::super::super::Store;
    use super::super::super::contract::keys;
    use super::super::super::memory::MemoryStore;
    use super::*;

    fn env(to: MailboxId, fill: u8, len: usize) -> NewEnvelope {
        let envelope = Envelope::from_parts(to, vec![fill; len]).unwrap();
        NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at: UnixTime(7200),
            envelope,
        }
    }

    fn deposit(batch: Vec<NewEnvelope>, quotas: Quotas) -> Job {
        Job::Deposit {
            batch,
            quotas,
            reply: oneshot::channel().0,
        }
    }

    fn ack(acks: Vec<(MailboxId, Vec<EnvelopeId>)>) -> Job {
        Job::Ack {
            acks,
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn payloads_stay_under_the_limit_and_carry_every_id() {
        let node = "0123456789abcdef";
        let ids: Vec<MailboxId> = (0..300u16)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..2].copy_from_slice(&i.to_be_bytes());
                MailboxId::from_bytes(b)
            })
            .collect();
        let payloads = notify_payloads(node, &ids);
        assert!(payloads.len() >= 3, "300 ids need several payloads");
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() <= NOTIFY_PAYLOAD_MAX, "{} bytes", p.len());
            assert!(p.len() < 8000);
            for w in parse_payload(p, "another-node") {
                match w {
                    Wakeup::Mailbox(id) => back.push(id),
                    Wakeup::All => panic!("a payload did not parse"),
                }
            }
            // This node's own notifications wake nothing here.
            assert!(parse_payload(p, node).is_empty());
        }
        assert_eq!(back, ids);
        assert!(notify_payloads(node, &[]).is_empty());
    }

    #[test]
    fn an_unreadable_payload_wakes_everyone() {
        for p in ["", "node", "node zz", "node 00 11", " "] {
            assert_eq!(parse_payload(p, "mine"), vec![Wakeup::All], "{p:?}");
        }
    }

    #[test]
    fn the_lock_set_is_sorted_and_counts_acked_mailboxes() {
        let (a, b, c) = (keys(1).id(), keys(2).id(), keys(3).id());
        let q = Quotas {
            max_envelopes: 1,
            max_bytes: 1,
        };
        let jobs = vec![
            deposit(vec![env(c, 1, 48), env(a, 2, 48)], q),
            ack(vec![
                (b, vec![EnvelopeId::from_bytes([1; 32])]),
                (c, vec![]),
            ]),
            deposit(vec![env(a, 3, 48)], q),
        ];
        let mut want = vec![a, b, c];
        want.sort_unstable_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
        assert_eq!(lock_set(&jobs), want);
    }

    /// The view a group would read from the memory store's state after its
    /// acknowledgements: counters, held pairs, and the pairs deleted.
    async fn view_of(store: &MemoryStore, jobs: &[Job], known: &[MailboxId]) -> View {
        let mut view = View::default();
        let acked: HashSet<(MailboxId, EnvelopeId)> = jobs
            .iter()
            .flat_map(|j| match j {
                Job::Ack { acks, .. } => acks
                    .iter()
                    .flat_map(|(m, ids)| ids.iter().map(move |i| (*m, *i)))
                    .collect(),
                Job::Deposit { .. } => Vec::new(),
            })
            .collect();
        for m in known {
            let mut c = Counters {
                count: 0,
                bytes: 0,
                seq: 0,
            };
            for e in store.pending(*m, UnixTime(0), 10_000).await.unwrap() {
                c.seq += 1;
                if acked.contains(&(*m, e.id)) {
                    view.deleted.insert((*m, e.id));
                    continue;
                }
                c.count += 1;
                c.bytes += e.envelope.ciphertext().len() as u64;
                view.held.insert((*m, e.id));
            }
            view.mailboxes.insert(*m, c);
        }
        view
    }

    /// A group decides every job exactly as the jobs would be answered one
    /// at a time (acknowledgements first, then the deposits in queue
    /// order): quotas per recipient, copies already held, envelopes two
    /// jobs of the group both carry, unknown recipients, freed room.
    #[tokio::test]
    async fn a_group_answers_each_job_as_it_would_be_answered_alone() {
        let (a, b, c) = (keys(1), keys(2), keys(3));
        let unknown = keys(4).id();
        let tight = Quotas {
            max_envelopes: 4,
            max_bytes: 250,
        };
        let roomy = Quotas {
            max_envelopes: 100,
            max_bytes: 100_000,
        };
        for round in 0..8u8 {
            let reference = MemoryStore::new();
            let grouped = MemoryStore::new();
            for s in [&reference, &grouped] {
                for k in [a, b, c] {
                    s.register(k, false).await.unwrap();
                }
                s.deposit(vec![env(a.id(), 1, 50), env(b.id(), 2, 60)], roomy)
                    .await
                    .unwrap();
            }
            let old_a = env(a.id(), 1, 50).id;
            let r = round;
            let jobs = vec![
                deposit(
                    vec![
                        env(a.id(), 10 + r, 48),
                        env(unknown, 3, 48),
                        env(b.id(), 2, 60),
                    ],
                    tight,
                ),
                ack(vec![(a.id(), vec![old_a, old_a]), (b.id(), vec![old_a])]),
                deposit(vec![env(a.id(), 10 + r, 48), env(a.id(), 20, 70)], tight),
                deposit(
                    vec![
                        env(a.id(), 21, 70 + usize::from(r) * 10),
                        env(c.id(), 5, 50),
                    ],
                    tight,
                ),
                deposit(vec![env(c.id(), 6, 50), env(c.id(), 6, 50)], roomy),
                ack(vec![(c.id(), vec![env(c.id(), 6, 50).id])]),
                deposit(vec![env(a.id(), 22, 48)], tight),
            ];
            // One at a time: acknowledgements first, then deposits in order.
            let mut want = Vec::new();
            for job in &jobs {
                if let Job::Ack { acks, .. } = job {
                    want.push(Answer::Ack(reference.ack_many(acks.clone()).await.unwrap()));
                } else {
                    want.push(Answer::Ack(u64::MAX));
                }
            }
            for (j, job) in jobs.iter().enumerate() {
                if let Job::Deposit { batch, quotas, .. } = job {
                    want[j] =
                        Answer::Deposit(reference.deposit(batch.clone(), *quotas).await.unwrap());
                }
            }
            let view = view_of(&grouped, &jobs, &[a.id(), b.id(), c.id()]).await;
            let decided = decide(&jobs, view);
            assert_eq!(decided.answers, want, "round {round}");
            // What the group inserts is what the reference holds now.
            for m in [a.id(), b.id(), c.id()] {
                let before = grouped.pending(m, UnixTime(0), 100).await.unwrap();
                let mut seq = before.len() as i64;
                let mut ids: Vec<EnvelopeId> = before
                    .iter()
                    .map(|e| e.id)
                    .filter(|id| !(m == a.id() && *id == old_a))
                    .collect();
                for row in &decided.rows {
                    if let Job::Deposit { batch, .. } = &jobs[row.job]
                        && *batch[row.at].envelope.recipient() == m
                    {
                        seq += 1;
                        assert_eq!(row.seq, seq, "numbered after the highest held");
                        ids.push(batch[row.at].id);
                    }
                }
                let held: Vec<EnvelopeId> = reference
                    .pending(m, UnixTime(0), 100)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.id)
                    .collect();
                assert_eq!(ids, held, "round {round}, mailbox contents");
            }
            let mut woken = decided.woken.clone();
            woken.dedup();
            assert_eq!(woken, decided.woken);
            assert!(!woken.contains(&unknown));
        }
    }
}
