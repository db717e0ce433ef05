//! Live delivery: after a deposit commits, the subscribers of each recipient
//! mailbox get the new envelopes handed over in memory, already encoded as
//! `Deliver` frames, so a subscriber that is keeping up never re-reads the
//! store.
//!
//! Each subscription has an [`Inbox`]: the frames handed to it and not yet
//! taken, and a flag saying the store must be read instead. The flag is
//! raised when the inbox is full ([`INBOX_LIMIT`], so a subscriber that does
//! not read bounds the memory it holds), and by wake-ups that carry no
//! envelope: other nodes' deposits on a shared store (PostgreSQL), which
//! arrive as [`Wakeup`]s through `LISTEN/NOTIFY` and are fed in by
//! [`Notifier::forward`]. The store stays the truth: an envelope is handed
//! over only after its commit, and whatever an inbox drops is still stored
//! and read on the flag.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::sync::{Notify, mpsc};

use crate::store::Wakeup;

/// Most frames waiting in one inbox; past it the subscriber reads the store.
pub const INBOX_LIMIT: usize = 256;

/// One committed envelope, encoded once as a `Deliver` push frame.
#[derive(Clone, Debug)]
pub struct Push {
    pub id: EnvelopeId,
    pub frame: Bytes,
}

#[derive(Default)]
struct Pending {
    pushes: Vec<Push>,
    read_store: bool,
}

/// One subscription's share of the live feed.
#[derive(Default)]
pub struct Inbox {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl core::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Inbox")
    }
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hand(&self, pushes: &[Push]) {
        {
            let mut p = self.lock();
            if p.read_store || p.pushes.len() + pushes.len() > INBOX_LIMIT {
                p.read_store = true;
                p.pushes.clear();
            } else {
                p.pushes.extend_from_slice(pushes);
            }
        }
        self.wake.notify_one();
    }

    fn flag(&self) {
        self.lock().read_store = true;
        self.wake.notify_one();
    }

    /// Resolves when something was handed over or flagged since the last take.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// What was handed over, and whether the store must be read (then the
    /// pushes are empty: the read covers them).
    pub fn take(&self) -> (Vec<Push>, bool) {
        let mut p = self.lock();
        let read_store = std::mem::take(&mut p.read_store);
        (std::mem::take(&mut p.pushes), read_store)
    }
}

/// The per-mailbox registry of inboxes.
#[derive(Default)]
pub struct Notifier {
    inboxes: Mutex<HashMap<MailboxId, Vec<Arc<Inbox>>>>,
}

impl core::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, Vec<Arc<Inbox>>>> {
        self.inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a subscription. Subscribe *before* reading what is stored, so
    /// a deposit committed in between is not missed.
    pub fn subscribe(&self, mailbox: MailboxId) -> Arc<Inbox> {
        let inbox = Arc::new(Inbox::default());
        self.map().entry(mailbox).or_default().push(inbox.clone());
        inbox
    }

    /// Whether anyone is subscribed to `mailbox` (a deposit builds the
    /// frames to hand over only then).
    pub fn is_watched(&self, mailbox: &MailboxId) -> bool {
        self.map().contains_key(mailbox)
    }

    /// Hands committed envelopes to every subscriber of `mailbox`.
    pub fn deliver(&self, mailbox: &MailboxId, pushes: Vec<Push>) {
        if let Some(list) = self.map().get(mailbox) {
            for inbox in list {
                inbox.hand(&pushes);
            }
        }
    }

    /// Tells every subscriber of `mailbox` to read the store.
    pub fn notify(&self, mailbox: &MailboxId) {
        if let Some(list) = self.map().get(mailbox) {
            for inbox in list {
                inbox.flag();
            }
        }
    }

    /// Tells every subscriber to read the store (signals may have been missed).
    pub fn notify_all(&self) {
        for list in self.map().values() {
            for inbox in list {
                inbox.flag();
            }
        }
    }

    /// Applies other nodes' wake-ups until the store stops sending them.
    pub async fn forward(&self, mut wakeups: mpsc::Receiver<Wakeup>) {
        while let Some(w) = wakeups.recv().await {
            match w {
                Wakeup::Mailbox(id) => self.notify(&id),
                Wakeup::All => self.notify_all(),
            }
        }
    }

    /// Ends a subscription; forgets the mailbox once its last one is gone.
    pub fn release(&self, mailbox: &MailboxId, inbox: &Arc<Inbox>) {
        let mut map = self.map();
        if let Some(list) = map.get_mut(mailbox) {
            list.retain(|i| !Arc::ptr_eq(i, inbox));
            if list.is_empty() {
                map.remove(mailbox);
            }
        }
    }

    /// Mailboxes currently watched (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(n: u8) -> Push {
        Push {
            id: EnvelopeId::from_bytes([n; 32]),
            frame: Bytes::from(vec![n; 4]),
        }
    }

    #[tokio::test]
    async fn hands_envelopes_to_subscribers_and_cleans_up() {
        let n = Notifier::default();
        let id = MailboxId::from_bytes([1; 32]);
        let inbox = n.subscribe(id);
        let other = n.subscribe(id);
        n.deliver(&id, vec![push(7), push(8)]);
        inbox.woken().await;
        let (got, read_store) = inbox.take();
        assert!(!read_store);
        assert_eq!(
            got.iter().map(|p| p.id).collect::<Vec<_>>(),
            [push(7).id, push(8).id]
        );
        assert_eq!(other.take().0.len(), 2);
        assert!(n.is_watched(&id));
        assert!(!n.is_watched(&MailboxId::from_bytes([2; 32])));
        n.release(&id, &inbox);
        assert_eq!(n.watched(), 1);
        n.release(&id, &other);
        assert_eq!(n.watched(), 0);
    }

    #[tokio::test]
    async fn a_full_inbox_drops_its_frames_and_says_read_the_store() {
        let n = Notifier::default();
        let id = MailboxId::from_bytes([1; 32]);
        let inbox = n.subscribe(id);
        for i in 0..INBOX_LIMIT {
            n.deliver(&id, vec![push(i as u8)]);
        }
        let (got, read_store) = inbox.take();
        assert_eq!((got.len(), read_store), (INBOX_LIMIT, false));
        for i in 0..=INBOX_LIMIT {
            n.deliver(&id, vec![push(i as u8)]);
        }
        let (got, read_store) = inbox.take();
        assert!(got.is_empty() && read_store);
        // Taken: the next hand-over is live again.
        n.deliver(&id, vec![push(1)]);
        assert_eq!(inbox.take().0.len(), 1);
    }

    #[tokio::test]
    async fn forwards_other_nodes_wakeups_as_store_reads() {
        let n = Arc::new(Notifier::default());
        let (a, b) = (
            MailboxId::from_bytes([1; 32]),
            MailboxId::from_bytes([2; 32]),
        );
        let (ia, ib) = (n.subscribe(a), n.subscribe(b));
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn({
            let n = n.clone();
            async move { n.forward(rx).await }
        });
        tx.send(Wakeup::Mailbox(a)).await.unwrap();
        ia.woken().await;
        assert!(ia.take().1);
        assert!(!ib.take().1);
        tx.send(Wakeup::All).await.unwrap();
        ia.woken().await;
        ib.woken().await;
        assert!(ia.take().1 && ib.take().1);
        drop(tx);
        task.await.unwrap();
    }
}
