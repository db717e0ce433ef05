//! `Subscribe` and `Ack`: delivery.
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

use std::collections::HashSet;
use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::frame::{ErrorCode, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};

use crate::notify::Inbox;

use super::{Relay, Session, store_code};

/// Most envelopes pushed and not yet acknowledged on one connection: bounds
/// the relay's memory per subscriber; acknowledging makes room for more.
pub const DELIVERY_WINDOW: usize = 256;

/// Starts a live feed for the session's mailbox; returns its inbox and the
/// reply.
pub async fn subscribe(
    relay: &Relay,
    session: &Session,
    now: UnixTime,
) -> Result<(MailboxId, Arc<Inbox>, ServerFrame), ErrorCode> {
    let mailbox = session.require_mailbox()?;
    let rx = relay.notifier.subscribe(mailbox);
    let pending = relay
        .store
        .pending(mailbox, now, DELIVERY_WINDOW)
        .await
        .map_err(store_code)?
        .len();
    Ok((
        mailbox,
        rx,
        ServerFrame::Subscribed {
            pending: u32::try_from(pending).unwrap_or(u32::MAX),
        },
    ))
}

/// The stored deliveries not yet pushed on this connection, and whether
/// that was all of them (the connection is caught up with the store: from
/// now on the live feed hands it every new envelope).
pub async fn fresh(
    relay: &Relay,
    mailbox: MailboxId,
    sent: &mut HashSet<EnvelopeId>,
    now: UnixTime,
) -> Result<(Vec<ServerFrame>, bool), ErrorCode> {
    let pending = relay
        .store
        .pending(mailbox, now, DELIVERY_WINDOW)
        .await
        .map_err(store_code)?;
    // Fewer than a window stored: every pending envelope is now in `sent`.
    let caught_up = pending.len() < DELIVERY_WINDOW;
    let frames = pending
        .into_iter()
        .filter(|e| sent.insert(e.id))
        .map(|e| ServerFrame::Deliver {
            id: e.id,
            expires_at: e.expires_at,
            envelope: e.envelope,
        })
        .collect();
    Ok((frames, caught_up))
}

/// Deletes acknowledged envelopes of the session's mailbox.
pub async fn ack(
    relay: &Relay,
    session: &Session,
    ids: Vec<EnvelopeId>,
) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    let deleted = relay.store.ack(mailbox, ids).await.map_err(store_code)?;
    Ok(ServerFrame::Acked {
        deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
    })
}
