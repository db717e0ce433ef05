//! `Deposit`: store a batch of sealed envelopes for their recipients.
//!
//! No session is needed (a depositor must not be tied to its own mailbox).
//! Steps: every recipient must be registered; if any requires proof of work,
//! the batch must carry a nonce with
//! `SHA-256("northstar/v1/pow" || pow_challenge || deposit_batch_hash || nonce)`
//! ≥ difficulty leading zero bits; the batch is stored in one transaction
//! (quotas checked inside it) with an expiry of now + retention rounded up
//! to the hour; the reply is sent only after the commit; subscribers of the
//! recipients are then woken. An accepted proof rotates the connection's
//! challenge, so it cannot be replayed.

use northstar_core::UnixTime;
use northstar_core::frame::{ErrorCode, ServerFrame, deposit_batch_hash};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::pow;
use northstar_core::sealed::Envelope;

use super::{Relay, Session, expiry_after_hours, random32, store_code};
use crate::store::{NewEnvelope, Quotas};

pub async fn apply(
    relay: &Relay,
    session: &mut Session,
    pow_nonce: Option<u64>,
    envelopes: Vec<Envelope>,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
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
    let count = envelopes.len();
    let batch = envelopes
        .into_iter()
        .map(|envelope| NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at,
            envelope,
        })
        .collect();
    let quotas = Quotas {
        max_envelopes: cfg.mailbox_max_envelopes,
        max_bytes: cfg.mailbox_max_bytes,
    };
    relay
        .store
        .deposit(batch, quotas)
        .await
        .map_err(store_code)?;
    if pow_required {
        session.pow_challenge = random32();
    }
    for to in &recipients {
        relay.notifier.notify(to);
    }
    Ok(ServerFrame::Deposited {
        accepted: u16::try_from(count).unwrap_or(u16::MAX),
        next_pow_challenge: session.pow_challenge,
    })
}
