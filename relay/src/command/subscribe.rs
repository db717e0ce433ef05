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
//!   Ack { ids }          ->       delete them (gathered, see `acks`)
//!                        <-       Acked { deleted }
//!                        <-       Deliver …   (what waited for room)
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::frame::{ErrorCode, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::sync::oneshot::error::RecvError;

use super::{Relay, Session, now, store_code, write_reply};
use crate::acks::AckDone;
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
    /// `Ack`s whose deletion is not committed yet, oldest first: their
    /// replies go out in this order, before the reply to any later request.
    acks: VecDeque<PendingAck>,
    /// The ids of those `Ack`s: still stored until their deletion commits,
    /// so a read of the store (a wake-up from another node, a full window)
    /// must not push them again.
    deleting: HashSet<EnvelopeId>,
}

/// Most `Ack`s of one connection whose deletion is not committed yet; the
/// next one waits for the oldest (bounds what a connection holds).
pub const MAX_PENDING_ACKS: usize = 64;

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

/// Hands acknowledged envelopes of the session's mailbox over for deletion
/// ([`crate::acks`]: gathered with every connection's, one write), and
/// goes on: the `Acked` reply is written once the deletion is committed
/// ([`Deliveries::ready`]). A connection that fell behind its window waits
/// for it here, then pushes what waited in the store.
///
/// `Acked { deleted }` counts the listed ids this connection delivered and
/// had not seen acknowledged; every listed id of the session's mailbox is
/// deleted (docs/PROTOCOL.md §4.5).
pub async fn ack(
    relay: &Relay,
    session: &mut Session,
    dst: &mut Connection,
    request_id: u32,
    ids: Vec<EnvelopeId>,
) -> Result<(), Closed> {
    let mailbox = match session.require_mailbox() {
        Ok(mailbox) => mailbox,
        Err(code) => {
            session.deliveries.flush_acks(dst).await?;
            return write_reply(dst, request_id, Err(code)).await;
        }
    };
    let deliveries = &mut session.deliveries;
    // Out of the window now: what a failed deletion leaves stored is
    // pushed again from there.
    let acknowledged = ids.iter().filter(|id| deliveries.sent.remove(id)).count();
    // A connection that is behind reads the store next: it waits until
    // the deletion is committed, or it would push these back.
    let behind = deliveries.sub.as_ref().is_some_and(|sub| !sub.caught_up);
    let any = !ids.is_empty();
    while deliveries.acks.len() >= MAX_PENDING_ACKS {
        deliveries.flush_oldest_ack(dst).await?;
    }
    deliveries.deleting.extend(ids.iter().copied());
    let done = relay.acks.submit(mailbox, ids.clone(), behind).await;
    deliveries.acks.push_back(PendingAck {
        request_id,
        acknowledged: u32::try_from(acknowledged).unwrap_or(u32::MAX),
        ids,
        done,
    });
    if behind {
        deliveries.flush_acks(dst).await?;
        if any {
            return deliveries.push_stored(relay, dst).await;
        }
    }
    Ok(())
}

/// An `Ack` whose deletion is not committed yet, and its reply.
#[derive(Debug)]
pub struct PendingAck {
    request_id: u32,
    acknowledged: u32,
    ids: Vec<EnvelopeId>,
    done: AckDone,
}

impl PendingAck {
    fn reply(
        &self,
        committed: Result<Result<(), ErrorCode>, RecvError>,
    ) -> Result<ServerFrame, ErrorCode> {
        match committed {
            Ok(Ok(())) => {
                Metrics::add(&crate::metrics::METRICS.ack_frames, 1);
                Ok(ServerFrame::Acked {
                    deleted: self.acknowledged,
                })
            }
            Ok(Err(code)) => Err(code),
            Err(_) => Err(ErrorCode::ServerBusy),
        }
    }
}

/// Waits until the oldest pending `Ack` is committed (or failed), then
/// takes it off the queue, lets its ids be pushed again from the store,
/// and gives its request id and reply; `None` with nothing pending. Safe to
/// cancel: the `Ack` stays queued until its deletion is settled.
async fn settle_oldest(
    acks: &mut VecDeque<PendingAck>,
    deleting: &mut HashSet<EnvelopeId>,
) -> Option<(u32, Result<ServerFrame, ErrorCode>)> {
    let committed = (&mut acks.front_mut()?.done).await;
    let p = acks.pop_front()?;
    for id in &p.ids {
        deleting.remove(id);
    }
    Some((p.request_id, p.reply(committed)))
}

/// What [`Deliveries::ready`] saw first.
#[derive(Debug)]
pub enum Ready {
    /// The live feed has something (push it with [`Deliveries::push_live`]).
    Woken,
    /// The oldest pending `Ack` was committed (or failed): its reply.
    Acked(u32, Result<ServerFrame, ErrorCode>),
}

impl Deliveries {
    /// Resolves when the subscription's inbox is woken, or when the oldest
    /// pending `Ack` is committed; never with neither.
    pub async fn ready(&mut self) -> Ready {
        let Deliveries {
            sub,
            acks,
            deleting,
            ..
        } = self;
        let acked = async {
            match settle_oldest(acks, deleting).await {
                Some(settled) => settled,
                None => std::future::pending().await,
            }
        };
        let woken = async {
            match sub {
                Some(sub) => sub.inbox.woken().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            (id, reply) = acked => Ready::Acked(id, reply),
            () = woken => Ready::Woken,
        }
    }

    /// Waits for every pending `Ack` and writes their replies, in order
    /// (before the reply to any later request).
    pub async fn flush_acks(&mut self, dst: &mut Connection) -> Result<(), Closed> {
        while !self.acks.is_empty() {
            self.flush_oldest_ack(dst).await?;
        }
        Ok(())
    }

    /// Waits for the oldest pending `Ack` and writes its reply.
    async fn flush_oldest_ack(&mut self, dst: &mut Connection) -> Result<(), Closed> {
        match settle_oldest(&mut self.acks, &mut self.deleting).await {
            Some((request_id, reply)) => write_reply(dst, request_id, reply).await,
            None => Ok(()),
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
            if !self.deleting.contains(&push.id) && self.sent.insert(push.id) {
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
            .filter(|e| !self.deleting.contains(&e.id) && self.sent.insert(e.id))
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
