//! `Deposit`: store a batch of sealed envelopes for their recipients.
//!
//! No session is needed (a depositor must not be tied to its own mailbox).
//! Steps: every recipient must be registered; if any requires proof of work,
//! the batch must carry a nonce with
//! `SHA-256("northstar/v1/pow" || pow_challenge || deposit_batch_hash || nonce)`
//! ≥ difficulty leading zero bits; the batch is stored in one transaction
//! (quotas checked inside it) with an expiry of now + retention rounded up
//! to the hour; the reply is sent only after the commit; subscribers of the
//! recipients are then handed the new envelopes (`notify`). An accepted proof rotates the connection's
//! challenge, so it cannot be replayed.
//!
//! [`check`] and [`commit`] are the two halves: the connection checks the
//! deposits a client pipelined one after another and commits them together
//! (see `connection`), but never checks a deposit against a challenge that
//! an earlier proof in the same group has used up.

use northstar_core::UnixTime;
use northstar_core::frame::{ErrorCode, PUSH_REQUEST_ID, ServerFrame, deposit_batch_hash};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::pow;
use northstar_core::sealed::Envelope;

use super::{Relay, Session, expiry_after_hours, random32, store_code};
use crate::notify::Push;
use crate::store::{NewEnvelope, Quotas};

/// A deposit that passed every check and awaits its commit.
#[derive(Debug)]
pub struct Checked {
    batch: Vec<NewEnvelope>,
    recipients: Vec<MailboxId>,
    /// It carried an accepted proof of work: the challenge rotates on commit.
    pub pow_used: bool,
}

pub async fn apply(
    relay: &Relay,
    session: &mut Session,
    pow_nonce: Option<u64>,
    envelopes: Vec<Envelope>,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    let checked = check(relay, session, pow_nonce, envelopes, now).await?;
    let pow_used = checked.pow_used;
    let reply = commit(relay, checked).await;
    if pow_used && reply.is_ok() {
        session.pow_challenge = random32();
    }
    reply.map(|accepted| deposited(session, accepted))
}

/// The reply to a committed deposit.
pub fn deposited(session: &Session, accepted: u16) -> ServerFrame {
    ServerFrame::Deposited {
        accepted,
        next_pow_challenge: session.pow_challenge,
    }
}

/// Checks batch size, recipients and proof of work; changes nothing.
pub async fn check(
    relay: &Relay,
    session: &Session,
    pow_nonce: Option<u64>,
    envelopes: Vec<Envelope>,
    now: UnixTime,
) -> Result<Checked, ErrorCode> {
    let cfg = &relay.config;
    if envelopes.len() > cfg.max_batch {
        return Err(ErrorCode::BatchTooLarge);
    }
    let mut recipients: Vec<MailboxId> = Vec::new();
    let mut pow_required = false;
    for e in &envelopes {
        let to = *e.recipient();
        if recipients.contains(&to) {
            continue;
        }
        let record = relay
            .store
            .mailbox(to)
            .await
            .map_err(store_code)?
            .ok_or(ErrorCode::UnknownMailbox)?;
        pow_required |= record.pow_required;
        recipients.push(to);
    }
    if pow_required {
        let nonce = pow_nonce.ok_or(ErrorCode::PowRequired)?;
        pow::verify(
            &session.pow_challenge,
            &deposit_batch_hash(&envelopes),
            cfg.pow_difficulty,
            nonce,
        )
        .map_err(|_| ErrorCode::PowInvalid)?;
    }
    let expires_at = expiry_after_hours(now, cfg.retention_hours);
    let batch = envelopes
        .into_iter()
        .map(|envelope| NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at,
            envelope,
        })
        .collect();
    Ok(Checked {
        batch,
        recipients,
        pow_used: pow_required,
    })
}

/// Stores a checked deposit and wakes its recipients' subscribers; returns
/// the count accepted. The caller rotates the challenge if `pow_used`.
pub async fn commit(relay: &Relay, checked: Checked) -> Result<u16, ErrorCode> {
    let cfg = &relay.config;
    let count = checked.batch.len();
    let quotas = Quotas {
        max_envelopes: cfg.mailbox_max_envelopes,
        max_bytes: cfg.mailbox_max_bytes,
    };
    // Frames for the recipients someone is subscribed to, built before the
    // batch moves into the store; handed over only after the commit.
    let mut live: Vec<(MailboxId, Vec<Push>)> = checked
        .recipients
        .iter()
        .filter(|to| relay.notifier.is_watched(to))
        .map(|to| (*to, pushes_for(to, &checked.batch)))
        .collect();
    relay
        .store
        .deposit(checked.batch, quotas)
        .await
        .map_err(store_code)?;
    for to in &checked.recipients {
        match live.iter().position(|(m, _)| m == to) {
            Some(i) => relay.notifier.deliver(to, std::mem::take(&mut live[i].1)),
            // Subscribed since the frames were built: it reads the store.
            None => relay.notifier.notify(to),
        }
    }
    Ok(u16::try_from(count).unwrap_or(u16::MAX))
}

/// The `Deliver` push frames of a batch's envelopes for one recipient.
fn pushes_for(to: &MailboxId, batch: &[NewEnvelope]) -> Vec<Push> {
    batch
        .iter()
        .filter(|e| e.envelope.recipient() == to)
        .filter_map(|e| {
            let frame = ServerFrame::Deliver {
                id: e.id,
                expires_at: e.expires_at,
                envelope: e.envelope.clone(),
            }
            .encode(PUSH_REQUEST_ID)
            .ok()?;
            Some(Push {
                id: e.id,
                frame: frame.into(),
            })
        })
        .collect()
}
