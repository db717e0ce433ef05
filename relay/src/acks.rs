//! Acknowledgements from every connection, deleted together.
//!
//! An `Ack` used to be one store write of its own: with acknowledgements
//! sent promptly (one per delivery), every delivered envelope cost a commit,
//! and on a busy disk each commit is an `fsync` the next deposit queues
//! behind. Now:
//!
//! - a connection hands the ids to the relay's one [`AckQueue`] and goes on
//!   serving (deliveries keep flowing); its `Acked` reply is written once
//!   the deletion is committed, so `Acked` still means "deleted, durably":
//!   an acknowledged envelope never comes back, not even after `kill -9`;
//! - the queue's task takes everything handed over during
//!   [`Config::ack_flush_ms`](crate::config::Config) after the first one
//!   (at most [`Config::ack_flush_ids`](crate::config::Config) ids) and
//!   deletes it with one [`Store::ack_many`]: one write for the
//!   acknowledgements of every connection, which on SQLite also joins the
//!   deposits' group commit when one is queued;
//! - a connection that will read the store next (it fell behind its
//!   delivery window) waits for its deletion, so it does not push back
//!   what was just acknowledged; that batch does not wait out the delay.
//!
//! Deleted data still leaves the files within `erase_within_secs` of the
//! deletion (SQLite), which now comes at most `ack_flush_ms` later.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use northstar_core::frame::ErrorCode;
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::{METRICS, Metrics};
use crate::store::Store;

/// Acknowledgements waiting to be handed to the gathering task; a
/// connection handing one over past this waits (back-pressure on `Ack`).
pub const ACK_QUEUE_CAPACITY: usize = 4096;

/// Resolves once an acknowledgement's deletion is committed (`Ok`), or
/// failed (the code to answer with; the envelopes stay stored).
pub type AckDone = oneshot::Receiver<Result<(), ErrorCode>>;

enum Item {
    /// Delete these envelopes of this mailbox; `urgent`: without waiting
    /// for more to gather.
    Ack {
        mailbox: MailboxId,
        ids: Vec<EnvelopeId>,
        urgent: bool,
        done: oneshot::Sender<Result<(), ErrorCode>>,
    },
    /// Delete what is gathered, then stop.
    Close(oneshot::Sender<()>),
}

/// The relay's one gatherer of acknowledgements.
pub struct AckQueue {
    tx: mpsc::Sender<Item>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl core::fmt::Debug for AckQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AckQueue")
    }
}

impl AckQueue {
    /// Starts the gathering task on the current runtime.
    pub fn start(store: Arc<dyn Store>, flush_after: Duration, flush_ids: usize) -> Self {
        let (tx, rx) = mpsc::channel(ACK_QUEUE_CAPACITY);
        let task = tokio::spawn(gather(store, rx, flush_after, flush_ids.max(1)));
        AckQueue {
            tx,
            task: Mutex::new(Some(task)),
        }
    }

    /// Hands acknowledged ids over for deletion (`urgent`: deleted without
    /// waiting for others to gather); the returned receiver resolves once
    /// the deletion is committed.
    pub async fn submit(&self, mailbox: MailboxId, ids: Vec<EnvelopeId>, urgent: bool) -> AckDone {
        let (done, committed) = oneshot::channel();
        let item = Item::Ack {
            mailbox,
            ids,
            urgent,
            done,
        };
        if let Err(mpsc::error::SendError(Item::Ack { done, .. })) = self.tx.send(item).await {
            // Closed only at shutdown: nothing is deleted.
            let _ = done.send(Err(ErrorCode::ServerBusy));
        }
        committed
    }

    /// Deletes what was handed over, then stops taking more (shutdown,
    /// before the store closes).
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Item::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// One batch being gathered.
#[derive(Default)]
struct Batch {
    acks: Vec<(MailboxId, Vec<EnvelopeId>)>,
    ids: usize,
    urgent: bool,
    waiters: Vec<oneshot::Sender<Result<(), ErrorCode>>>,
    close: Option<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, item: Item) {
        match item {
            Item::Ack {
                mailbox,
                ids,
                urgent,
                done,
            } => {
                self.ids += ids.len();
                self.urgent |= urgent;
                self.acks.push((mailbox, ids));
                self.waiters.push(done);
            }
            Item::Close(done) => self.close = Some(done),
        }
    }

    /// Written now: full, someone cannot wait, or the relay is closing.
    fn due(&self, flush_ids: usize) -> bool {
        self.ids >= flush_ids || self.urgent || self.close.is_some()
    }
}

async fn gather(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Item>,
    flush_after: Duration,
    flush_ids: usize,
) {
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + flush_after;
        let mut batch = Batch::default();
        batch.add(first);
        // What is already queued joins at once; then wait for more until
        // the deadline, unless the batch is due.
        while !batch.due(flush_ids) {
            match rx.try_recv() {
                Ok(item) => batch.add(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(item)) => batch.add(item),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        let Batch {
            acks,
            waiters,
            close,
            ..
        } = batch;
        let result = if acks.is_empty() {
            Ok(())
        } else {
            match store.ack_many(acks).await {
                Ok(deleted) => {
                    Metrics::add(&METRICS.ack_writes, 1);
                    Metrics::add(&METRICS.acked_envelopes, deleted);
                    Ok(())
                }
                // Logged by kind; the envelopes stay stored and are
                // delivered again.
                Err(e) => Err(crate::command::store_code(e)),
            }
        };
        for w in waiters {
            let _ = w.send(result);
        }
        if let Some(done) = close {
            rx.close();
            let _ = done.send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Quotas, contract as testing};
    use northstar_core::UnixTime;

    const Q: Quotas = Quotas {
        max_envelopes: 100,
        max_bytes: 1 << 20,
    };

    #[tokio::test]
    async fn acknowledgements_are_deleted_together_and_an_urgent_one_is_not_delayed() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = testing::keys(1);
        let b = testing::keys(2);
        store.register(a, false).await.unwrap();
        store.register(b, false).await.unwrap();
        let ea = testing::new_env(a.id(), 1, 60, 7200);
        let eb = testing::new_env(b.id(), 2, 60, 7200);
        store
            .deposit(vec![ea.clone(), eb.clone()], Q)
            .await
            .unwrap();
        // A long delay: a plain acknowledgement waits for it, an urgent one
        // does not, and takes the waiting one along.
        let acks = AckQueue::start(store.clone(), Duration::from_secs(3600), 4096);
        let first = acks.submit(a.id(), vec![ea.id], false).await;
        let second = acks.submit(b.id(), vec![eb.id, ea.id], true).await;
        let wait = |d: AckDone| tokio::time::timeout(Duration::from_secs(5), d);
        assert_eq!(wait(second).await.expect("not delayed").unwrap(), Ok(()));
        assert_eq!(wait(first).await.expect("same batch").unwrap(), Ok(()));
        assert!(
            store
                .pending(a.id(), UnixTime(0), 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .pending(b.id(), UnixTime(0), 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Not committed before the delay: nothing is answered early.
        let ec = testing::new_env(a.id(), 3, 60, 7200);
        store.deposit(vec![ec.clone()], Q).await.unwrap();
        let mut third = acks.submit(a.id(), vec![ec.id], false).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(third.try_recv().is_err(), "gathering, not yet written");
        assert_eq!(
            store.pending(a.id(), UnixTime(0), 10).await.unwrap().len(),
            1
        );
        // Closing deletes what was handed over before it.
        tokio::time::timeout(Duration::from_secs(5), acks.close())
            .await
            .expect("close does not wait out the delay");
        assert_eq!(third.await.unwrap(), Ok(()));
        assert!(
            store
                .pending(a.id(), UnixTime(0), 10)
                .await
                .unwrap()
                .is_empty()
        );
        // After closing, an acknowledgement is refused, not lost silently.
        let late = acks.submit(a.id(), vec![ec.id], true).await;
        assert_eq!(late.await.unwrap(), Err(ErrorCode::ServerBusy));
    }
}
