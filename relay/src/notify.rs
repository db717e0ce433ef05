//! Live delivery: after a deposit commits, subscribers of each recipient
//! mailbox are woken and read what is new from the store.
//!
//! One `watch` channel per mailbox that has a subscriber; the value is a
//! counter nobody reads, only its change matters. Deposits on this node
//! notify directly; on a store shared by several nodes (PostgreSQL), the
//! other nodes' deposits arrive as [`Wakeup`]s through `LISTEN/NOTIFY`
//! and are fed in by [`Notifier::forward`].

use std::collections::HashMap;
use std::sync::Mutex;

use northstar_core::ids::MailboxId;
use tokio::sync::{mpsc, watch};

use crate::store::Wakeup;

/// The per-mailbox wake-up registry.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<MailboxId, watch::Sender<u64>>>,
}

impl core::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Notifier {
    /// Starts watching a mailbox. Subscribe *before* reading what is stored,
    /// so a deposit committed in between is not missed.
    pub fn subscribe(&self, mailbox: MailboxId) -> watch::Receiver<u64> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(mailbox)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes every subscriber of `mailbox`.
    pub fn notify(&self, mailbox: &MailboxId) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(mailbox) {
            if tx.receiver_count() == 0 {
                map.remove(mailbox);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every subscriber (signals may have been missed).
    pub fn notify_all(&self) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, tx| tx.receiver_count() > 0);
        for tx in map.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
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

    /// Forgets a mailbox's channel once its last subscriber is gone.
    pub fn release(&self, mailbox: &MailboxId) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(mailbox).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(mailbox);
        }
    }

    /// Mailboxes currently watched (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.channels.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_subscribers_and_cleans_up() {
        let n = Notifier::default();
        let id = MailboxId::from_bytes([1; 32]);
        let mut rx = n.subscribe(id);
        n.notify(&id);
        rx.changed().await.unwrap();
        n.notify(&MailboxId::from_bytes([2; 32]));
        drop(rx);
        n.release(&id);
        assert_eq!(n.watched(), 0);
    }

    #[tokio::test]
    async fn forwards_other_nodes_wakeups() {
        let n = std::sync::Arc::new(Notifier::default());
        let (a, b) = (
            MailboxId::from_bytes([1; 32]),
            MailboxId::from_bytes([2; 32]),
        );
        let (mut ra, mut rb) = (n.subscribe(a), n.subscribe(b));
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn({
            let n = n.clone();
            async move { n.forward(rx).await }
        });
        tx.send(Wakeup::Mailbox(a)).await.unwrap();
        ra.changed().await.unwrap();
        assert!(!rb.has_changed().unwrap());
        tx.send(Wakeup::All).await.unwrap();
        ra.changed().await.unwrap();
        rb.changed().await.unwrap();
        drop(tx);
        task.await.unwrap();
    }
}
