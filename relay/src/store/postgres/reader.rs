//! The node's readers: the lookups every deposit and delivery makes,
//! batched.
//!
//! Each deposit looks its recipients up ([`Store::mailbox`]) and each
//! delivery from the store reads a mailbox's pending envelopes
//! ([`Store::pending`]). One statement each costs PostgreSQL a wake-up, a
//! bind and an execute per call, more than the row itself. So calls are
//! queued to [`READERS`] tasks; a task takes whatever is queued (up to
//! [`READ_BATCH`] lookups, and pending reads up to [`READ_BATCH_ROWS`]
//! envelopes) and answers them all from one statement per kind, on its own
//! connection (opened with the store, statements prepared once, re-opened
//! when lost). An idle node's call goes out at once, alone;
//! under load the batches grow by themselves. Each answer is a read taken
//! after its call began, as before.
//!
//! [`Store::mailbox`]: super::super::Store::mailbox
//! [`Store::pending`]: super::super::Store::pending

use std::collections::HashMap;
use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::{Ed25519Public, MailboxPublic, X25519Public};
use northstar_core::sealed::Envelope;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Statement};

use super::super::{MailboxRecord, StoreError, StoredEnvelope, i64_of, id32, time_of};
use super::db;

/// Reader tasks per node: one gathers the next batch while another's
/// statement runs.
pub(super) const READERS: usize = 2;

/// Most mailbox lookups answered by one statement.
pub(super) const READ_BATCH: usize = 256;

/// Most envelopes one batch of pending reads may return (the sum of the
/// reads' limits; a single read larger than this goes alone): bounds the
/// memory of one answer to about this many sealed envelopes.
pub(super) const READ_BATCH_ROWS: usize = 4096;

/// Depth of the queue in front of the readers; callers wait when it is full.
pub(super) const READ_QUEUE_DEPTH: usize = 4096;

const MAILBOXES_SQL: &str =
    "SELECT id, auth_pk, seal_pk, pow_required FROM mailboxes WHERE id = ANY($1)";

/// Each mailbox's unexpired envelopes in deposit order, at most `$3` each.
const PENDING_SQL: &str = "SELECT w.m, e.id, e.expires_at, e.ciphertext
     FROM unnest($1::bytea[]) AS w(m)
     CROSS JOIN LATERAL (SELECT id, expires_at, ciphertext, seq FROM envelopes
                         WHERE mailbox = w.m AND expires_at > $2
                         ORDER BY seq LIMIT $3) AS e
     ORDER BY w.m, e.seq";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Pending reads waiting for the same statement, with their mailboxes.
type PendingReads = Vec<(MailboxId, Reply<Vec<StoredEnvelope>>)>;

/// One queued read and the caller waiting for it.
pub(super) enum Read {
    Mailbox {
        id: MailboxId,
        reply: Reply<Option<MailboxRecord>>,
    },
    Pending {
        mailbox: MailboxId,
        now: UnixTime,
        limit: usize,
        reply: Reply<Vec<StoredEnvelope>>,
    },
}

/// Takes the next batch: the first queued read (or the one this task held
/// back from its last batch), then whatever else is queued within the
/// limits. `None` once the store is gone.
///
/// A held-back read never waits for the queue's lock: the other task may
/// hold it while waiting for a new read, and none may come.
async fn next_batch(
    rx: &Mutex<mpsc::Receiver<Read>>,
    held: &mut Option<Read>,
) -> Option<Vec<Read>> {
    let (first, mut queue) = match held.take() {
        Some(r) => (r, rx.try_lock().ok()),
        None => {
            let mut queue = rx.lock().await;
            let r = queue.recv().await?;
            (r, Some(queue))
        }
    };
    let rows = |r: &Read| match r {
        Read::Pending { limit, .. } => *limit,
        Read::Mailbox { .. } => 0,
    };
    let mut lookups = usize::from(matches!(first, Read::Mailbox { .. }));
    let mut pending_rows = rows(&first);
    let mut batch = vec![first];
    let Some(queue) = queue.as_mut() else {
        return Some(batch);
    };
    while let Ok(r) = queue.try_recv() {
        let over = match &r {
            Read::Mailbox { .. } => lookups + 1 > READ_BATCH,
            Read::Pending { limit, .. } => pending_rows + limit > READ_BATCH_ROWS,
        };
        if over {
            // First of this task's next batch.
            *held = Some(r);
            break;
        }
        lookups += usize::from(matches!(r, Read::Mailbox { .. }));
        pending_rows += rows(&r);
        batch.push(r);
    }
    Some(batch)
}

/// A reader's connection and its statements.
pub(super) struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    mailboxes: Statement,
    pending: Statement,
}

impl Conn {
    pub(super) async fn open(config: &tokio_postgres::Config) -> Result<Conn, StoreError> {
        let (client, connection) = config.connect(NoTls).await.map_err(db)?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        let prepared = async {
            Ok::<_, tokio_postgres::Error>((
                client.prepare(MAILBOXES_SQL).await?,
                client.prepare(PENDING_SQL).await?,
            ))
        }
        .await;
        match prepared {
            Ok((mailboxes, pending)) => Ok(Conn {
                client,
                task,
                mailboxes,
                pending,
            }),
            Err(e) => {
                task.abort();
                Err(db(e))
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(row: &tokio_postgres::Row) -> Result<(MailboxId, MailboxRecord), StoreError> {
    Ok((
        MailboxId::from_bytes(id32(row.get(0), "mailbox id")?),
        MailboxRecord {
            keys: MailboxPublic {
                auth: Ed25519Public(id32(row.get(1), "mailbox auth key")?),
                seal: X25519Public(id32(row.get(2), "mailbox seal key")?),
            },
            pow_required: row.get(3),
        },
    ))
}

/// Answers one batch: one statement for the lookups, one per distinct
/// `(now, limit)` of the pending reads (every caller asks with the
/// delivery window and the current second, so usually one).
async fn answer(conn: Option<&Conn>, batch: Vec<Read>) {
    let Some(c) = conn else {
        // Nothing was read: every caller may ask again.
        for r in batch {
            match r {
                Read::Mailbox { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
                Read::Pending { reply, .. } => drop(reply.send(Err(StoreError::Closed))),
            }
        }
        return;
    };
    let mut lookups: Vec<(MailboxId, Reply<Option<MailboxRecord>>)> = Vec::new();
    let mut pending: HashMap<(UnixTime, usize), PendingReads> = HashMap::new();
    for r in batch {
        match r {
            Read::Mailbox { id, reply } => lookups.push((id, reply)),
            Read::Pending {
                mailbox,
                now,
                limit,
                reply,
            } => pending
                .entry((now, limit))
                .or_default()
                .push((mailbox, reply)),
        }
    }
    if !lookups.is_empty() {
        let ids: Vec<&[u8]> = lookups.iter().map(|(m, _)| &m.as_bytes()[..]).collect();
        let found = async {
            let rows = c.client.query(&c.mailboxes, &[&ids]).await.map_err(db)?;
            rows.iter()
                .map(record)
                .collect::<Result<HashMap<MailboxId, MailboxRecord>, StoreError>>()
        }
        .await;
        match found {
            Ok(found) => {
                for (id, reply) in lookups {
                    let _ = reply.send(Ok(found.get(&id).copied()));
                }
            }
            Err(e) => answer_all(lookups, e),
        }
    }
    for ((now, limit), reads) in pending {
        let mut ids: Vec<&[u8]> = reads.iter().map(|(m, _)| &m.as_bytes()[..]).collect();
        ids.sort_unstable();
        ids.dedup();
        let found = async {
            let rows = c
                .client
                .query(
                    &c.pending,
                    &[
                        &ids,
                        &i64_of(now),
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await
                .map_err(db)?;
            let mut by_mailbox: HashMap<MailboxId, Vec<StoredEnvelope>> = HashMap::new();
            for r in rows {
                let mailbox = MailboxId::from_bytes(id32(r.get(0), "mailbox id")?);
                by_mailbox.entry(mailbox).or_default().push(StoredEnvelope {
                    id: EnvelopeId::from_bytes(id32(r.get(1), "envelope id")?),
                    expires_at: time_of(r.get(2)),
                    envelope: Envelope::from_parts(mailbox, r.get(3))
                        .map_err(|_| StoreError::Corrupt { what: "envelope" })?,
                });
            }
            Ok::<_, StoreError>(by_mailbox)
        }
        .await;
        match found {
            Ok(mut found) => {
                let mut readers: HashMap<MailboxId, usize> = HashMap::new();
                for (m, _) in &reads {
                    *readers.entry(*m).or_default() += 1;
                }
                for (mailbox, reply) in reads {
                    // The same mailbox read twice in one batch: a copy for
                    // all but the last.
                    let left = readers.entry(mailbox).or_default();
                    *left -= 1;
                    let envelopes = if *left > 0 {
                        found.get(&mailbox).cloned().unwrap_or_default()
                    } else {
                        found.remove(&mailbox).unwrap_or_default()
                    };
                    let _ = reply.send(Ok(envelopes));
                }
            }
            Err(e) => answer_all(reads, e),
        }
    }
}

/// Answers every caller of a failed statement: the first with its error,
/// the others `Closed` (nothing was read; they may ask again).
fn answer_all<T>(callers: Vec<(MailboxId, Reply<T>)>, e: StoreError) {
    let mut first = Some(e);
    for (_, reply) in callers {
        let _ = reply.send(Err(first.take().unwrap_or(StoreError::Closed)));
    }
}

/// One reader task: batches until the store is gone, on `conn` (re-opened
/// from `config` when lost).
pub(super) async fn run(
    config: tokio_postgres::Config,
    conn: Conn,
    rx: Arc<Mutex<mpsc::Receiver<Read>>>,
) {
    let mut conn = Some(conn);
    let mut held = None;
    while let Some(batch) = next_batch(&rx, &mut held).await {
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            conn = match Conn::open(&config).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "a reader's connection to PostgreSQL failed");
                    None
                }
            };
        }
        answer(conn.as_ref(), batch).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pending(limit: usize) -> Read {
        Read::Pending {
            mailbox: MailboxId::from_bytes([1; 32]),
            now: UnixTime(0),
            limit,
            reply: oneshot::channel().0,
        }
    }

    /// A read held back from a full batch goes out at once even while the
    /// other reader holds the queue waiting for a read that never comes
    /// (it once waited for that lock, and a subscriber's read stalled).
    #[tokio::test]
    async fn a_held_back_read_does_not_wait_for_the_other_readers_lock() {
        let (tx, rx) = mpsc::channel(8);
        let rx = Arc::new(Mutex::new(rx));
        tx.send(pending(READ_BATCH_ROWS)).await.unwrap();
        tx.send(pending(READ_BATCH_ROWS)).await.unwrap();
        let mut held = None;
        let first = next_batch(&rx, &mut held).await.unwrap();
        assert_eq!(first.len(), 1, "one full read per batch");
        assert!(held.is_some(), "the second is held back");
        // The other reader now waits on the empty queue, holding it.
        let other = {
            let rx = rx.clone();
            tokio::spawn(async move {
                let mut none = None;
                next_batch(&rx, &mut none).await.map(|b| b.len())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = tokio::time::timeout(Duration::from_secs(5), next_batch(&rx, &mut held))
            .await
            .expect("the held-back read waited for the other reader");
        assert_eq!(second.unwrap().len(), 1);
        assert!(held.is_none());
        // The other reader takes the next read that comes.
        tx.send(Read::Mailbox {
            id: MailboxId::from_bytes([2; 32]),
            reply: oneshot::channel().0,
        })
        .await
        .unwrap();
        assert_eq!(other.await.unwrap(), Some(1));
        drop(tx);
    }
}
