//! `Subscribe` and `Ack`: delivery, and the connection's delivery window.
//!
//! Subscribing watches the mailbox *first*, then reads what is stored, so a
//! deposit committed in between is not missed. Once a connection has pushed
//! everything stored, new envelopes come from the live feed (`notify`)
//! without a store read, until its window fills or the feed says to read
//! the store again. Each envelope is pushed once
//! per connection (the connection remembers what it sent until it is
//! acknowledged); an envelope never acknowledged is pushed again on the next
//! connection. At most [`DELIVERY_WINDOW`] unacknowledged envelopes are in
//! flight per connection.
//!
//! ```text
//! client                          relay
//!   Subscribe            ->       watch mailbox; count stored (≤ window)
//!                        <-       Subscribed { pending }
//!                        <-       Deliver …   (stored, up to the window)
//!                        <-       Deliver …   (live, as deposits commit)
//!   Ack { ids }          ->       delete them
//!                        <-       Acked { deleted }
//!                        <-       Deliver …   (what waited for room)
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::frame::{PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};

use super::{Relay, Session, now, store_code, write_reply};
use crate::connection::{Closed, Connection};
use crate::frame;
use crate::metrics::Metrics;
use crate::notify::Inbox;

/// Most envelopes pushed and not yet acknowledged on one connection: bounds
/// the relay's memory per subscriber; acknowledging makes room for more.
pub const DELIVERY_WINDOW: usize = 256;

/// A subscription: the mailbox, its live inbox, and whether everything
/// stored has been pushed (then the inbox's frames are all that is new;
/// otherwise the store is read when the window has room).
#[derive(Debug)]
struct Subscription {
    mailbox: MailboxId,
    inbox: Arc<Inbox>,
    caught_up: bool,
}

/// A connection's deliveries: its subscription, if any, and the envelopes
/// pushed and not yet acknowledged (at most the window).
#[derive(Debug, Default)]
pub struct Deliveries {
    sub: Option<Subscription>,
    sent: HashSet<EnvelopeId>,
}

/// Starts a live feed for the session's mailbox (in place of any earlier
/// one), replies, and pushes what is stored.
pub async fn subscribe(
    relay: &Relay,
    session: &mut Session,
    dst: &mut Connection,
    request_id: u32,
    now: UnixTime,
) -> Result<(), Closed> {
    let started = async {
        let mailbox = session.require_mailbox()?;
        let inbox = relay.notifier.subscribe(mailbox);
        match relay.store.pending(mailbox, now, DELIVERY_WINDOW).await {
            Ok(pending) => Ok((mailbox, inbox, pending.len())),
            Err(e) => {
                relay.notifier.release(&mailbox, &inbox);
                Err(store_code(e))
            }
        }
    };
    let (mailbox, inbox, pending) = match started.await {
        Ok(s) => s,
        Err(code) => return write_reply(dst, request_id, Err(code)).await,
    };
    let deliveries = &mut session.deliveries;
    deliveries.unsubscribe(relay);
    deliveries.sub = Some(Subscription {
        mailbox,
        inbox,
        caught_up: false,
    });
    let reply = ServerFrame::Subscribed {
        pending: u32::try_from(pending).unwrap_or(u32::MAX),
    };
    write_reply(dst, request_id, Ok(reply)).await?;
    deliveries.push_stored(relay, dst).await
}

/// Deletes acknowledged envelopes of the session's mailbox, replies, and
/// with room in the window pushes what waited in the store.
pub async fn ack(
    relay: &Relay,
    session: &mut Session,
    dst: &mut Connection,
    request_id: u32,
    ids: Vec<EnvelopeId>,
) -> Result<(), Closed> {
    // Out of the window whether the deletion succeeds or not: what was not
    // deleted is still stored, and is pushed again from there.
    let any = !ids.is_empty();
    for id in &ids {
        session.deliveries.sent.remove(id);
    }
    let reply = match session.require_mailbox() {
        Ok(mailbox) => match relay.store.ack(mailbox, ids).await {
            Ok(deleted) => {
                let m = &crate::metrics::METRICS;
                Metrics::add(&m.ack_frames, 1);
                Metrics::add(&m.acked_envelopes, deleted);
                Ok(ServerFrame::Acked {
                    deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
                })
            }
            Err(e) => Err(store_code(e)),
        },
        Err(code) => Err(code),
    };
    write_reply(dst, request_id, reply).await?;
    let deliveries = &mut session.deliveries;
    // A caught-up connection has nothing waiting in the store.
    if any && deliveries.sub.as_ref().is_some_and(|sub| !sub.caught_up) {
        return deliveries.push_stored(relay, dst).await;
    }
    Ok(())
}

impl Deliveries {
    /// Resolves when the subscription's inbox is woken; never without one.
    pub async fn woken(&self) {
        match &self.sub {
            Some(sub) => sub.inbox.woken().await,
            None => std::future::pending().await,
        }
    }

    /// Ends the subscription, if any, and forgets what it pushed.
    pub fn unsubscribe(&mut self, relay: &Relay) {
        if let Some(sub) = self.sub.take() {
            relay.notifier.release(&sub.mailbox, &sub.inbox);
        }
        self.sent.clear();
    }

    /// Pushes what the live feed handed over; reads the store instead when
    /// the feed says so or the connection is behind.
    pub async fn push_live(&mut self, relay: &Relay, dst: &mut Connection) -> Result<(), Closed> {
        let Some(sub) = &mut self.sub else {
            return Ok(());
        };
        let (pushes, read_store) = sub.inbox.take();
        if read_store || !sub.caught_up {
            return self.push_stored(relay, dst).await;
        }
        let mut frames = Vec::with_capacity(pushes.len());
        for push in pushes {
            if self.sent.len() >= DELIVERY_WINDOW {
                // The rest stays stored; an acknowledgement reads it.
                sub.caught_up = false;
                break;
            }
            if self.sent.insert(push.id) {
                frames.push(push.frame);
            }
        }
        if frames.is_empty() {
            return Ok(());
        }
        let n = frames.len() as u64;
        dst.write_frames(frames).await?;
        Metrics::add(&crate::metrics::METRICS.deliveries, n);
        Ok(())
    }

    /// Pushes the stored envelopes not yet sent on this connection, if the
    /// window has room, and notes whether that caught it up with the store
    /// (from then on the live feed hands it every new envelope).
    async fn push_stored(&mut self, relay: &Relay, dst: &mut Connection) -> Result<(), Closed> {
        let Some(sub) = &mut self.sub else {
            return Ok(());
        };
        if self.sent.len() >= DELIVERY_WINDOW {
            // Nothing can go out before an acknowledgement, which reads again.
            sub.caught_up = false;
            return Ok(());
        }
        let pending = match relay
            .store
            .pending(sub.mailbox, now(), DELIVERY_WINDOW)
            .await
        {
            Ok(pending) => pending,
            // A transient store failure (logged by kind): the next
            // wake-up or ack retries.
            Err(e) => {
                store_code(e);
                sub.caught_up = false;
                return Ok(());
            }
        };
        // Fewer than a window stored: every pending envelope is now in `sent`.
        sub.caught_up = pending.len() < DELIVERY_WINDOW;
        let frames = pending
            .into_iter()
            .filter(|e| self.sent.insert(e.id))
            .map(|e| {
                let deliver = ServerFrame::Deliver {
                    id: e.id,
                    expires_at: e.expires_at,
                    envelope: e.envelope,
                };
                frame::encode(PUSH_REQUEST_ID, &deliver)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(Closed)?;
        if frames.is_empty() {
            return Ok(());
        }
        let n = frames.len() as u64;
        dst.write_frames(frames).await?;
        Metrics::add(&crate::metrics::METRICS.deliveries, n);
        Ok(())
    }
}
