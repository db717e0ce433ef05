//! `Deposit`: store a batch of sealed envelopes for their recipients.
//!
//! No session is needed (a depositor must not be tied to its own mailbox).
//! Steps: the envelopes of a recipient that is not registered (never, or
//! deleted) are refused by position (`unknown_mailbox`) and the rest go on
//! (a batch with no registered recipient is refused whole, changing
//! nothing); if any registered recipient requires proof of work,
//! the batch must carry a nonce with
//! `SHA-256("northstar/v1/pow" || pow_challenge || deposit_batch_hash || nonce)`
//! ≥ `pow_difficulty + ceil(log2(envelopes))` leading zero bits
//! (`pow::batch_difficulty`: a batch costs what its envelopes would one by
//! one); the batch is stored in one transaction with an expiry of now +
//! retention rounded up to the hour, each recipient's envelopes stored if
//! they fit its quotas and refused (by position, in the reply) if not, so
//! one full mailbox holds up no other; a batch refused whole is
//! `quota_exceeded` and changes nothing; the reply is sent only after the
//! commit; subscribers of the recipients that got their envelopes are then
//! handed them (`notify`). An accepted proof rotates the connection's
//! challenge, so it cannot be replayed.
//!
//! Pipelining: the deposits a client sent behind this one and the relay has
//! already received (at most `pipeline_deposits`, and about
//! `max_frame_bytes` of frames, each taking a rate-limit token) are checked
//! one after another (`check`) and committed together (`commit`), so one
//! connection's deposits share a group commit instead of waiting for one
//! commit each. Each still gets its reply only after its commit, in order,
//! and none is checked against a challenge that an earlier proof in the
//! group has used up. The first other message read ahead waits for the
//! handler's next turn.

use northstar_core::UnixTime;
use northstar_core::frame::{
    ClientFrame, ErrorCode, PUSH_REQUEST_ID, Refused, ServerFrame, deposit_batch_hash,
};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::pow;
use northstar_core::sealed::Envelope;

use super::{Relay, Session, expiry_after_hours, random32, store_code};
use crate::connection::{Closed, Connection, Incoming};
use crate::frame::{self, Request};
use crate::limits::rate;
use crate::metrics::Metrics;
use crate::notify::Push;
use crate::store::{NewEnvelope, Quotas};

/// A deposit that passed every check and awaits its commit.
#[derive(Debug)]
struct Checked {
    /// The envelopes for registered recipients, in batch order.
    batch: Vec<NewEnvelope>,
    /// The position in the deposited batch of each of `batch`'s envelopes.
    positions: Vec<usize>,
    /// The envelopes' count in the deposited batch.
    count: usize,
    /// Positions whose recipient is not registered: refused, never stored.
    unknown: Vec<usize>,
    /// The registered recipients.
    recipients: Vec<MailboxId>,
    /// It carried an accepted proof of work: the challenge rotates on commit.
    pow_used: bool,
}

/// One deposit frame of a pipelined group.
#[derive(Debug)]
pub struct Pipelined {
    pub request_id: u32,
    pub pow_nonce: Option<u64>,
    pub envelopes: Vec<Envelope>,
}

/// Executes `first` (a frame of `wire_len` bytes) with the deposits the
/// client pipelined behind it, and writes their replies with one flush.
pub async fn execute(
    relay: &Relay,
    session: &mut Session,
    dst: &mut Connection,
    first: Pipelined,
    wire_len: usize,
    now: UnixTime,
) -> Result<(), Closed> {
    let cfg = &relay.config;
    let mut group = vec![first];
    let mut held = wire_len;
    while group.len() < cfg.pipeline_deposits && held < cfg.max_frame_bytes {
        let Some(next) = dst.read_ready() else {
            break;
        };
        if let Incoming::Frame(bytes) = &next
            && bytes.len() <= cfg.max_frame_bytes
            && let Ok(Request {
                id,
                frame:
                    ClientFrame::Deposit {
                        pow_nonce,
                        envelopes,
                    },
                wire_len,
            }) = Request::decode(bytes)
            && session.rate.try_take(rate::now())
        {
            held += wire_len;
            group.push(Pipelined {
                request_id: id,
                pow_nonce,
                envelopes,
            });
            continue;
        }
        // Anything else waits its turn in the handler's loop.
        dst.unread(next);
        break;
    }
    let replies = commit_group(relay, session, group, now).await;
    let frames = replies
        .into_iter()
        .map(|(request_id, reply)| frame::encode_reply(request_id, reply))
        .collect::<Option<Vec<_>>>()
        .ok_or(Closed)?;
    dst.write_frames(frames).await
}

/// Checks pipelined deposits in order and commits them together. A deposit
/// whose proof of work is accepted is committed (with those staged before
/// it) before the next is checked, so the next is checked against the
/// rotated challenge, exactly as if they had come one at a time.
async fn commit_group(
    relay: &Relay,
    session: &mut Session,
    group: Vec<Pipelined>,
    now: UnixTime,
) -> Vec<(u32, Result<ServerFrame, ErrorCode>)> {
    let mut replies: Vec<(u32, Result<ServerFrame, ErrorCode>)> = Vec::with_capacity(group.len());
    let mut staged: Vec<(usize, Checked)> = Vec::new();
    for d in group {
        let at = replies.len();
        match check(relay, session, d.pow_nonce, d.envelopes, now).await {
            Ok(checked) => {
                replies.push((d.request_id, Err(ErrorCode::Internal)));
                let pow_used = checked.pow_used;
                staged.push((at, checked));
                if pow_used {
                    commit_staged(relay, session, &mut staged, &mut replies).await;
                }
            }
            Err(code) => replies.push((d.request_id, Err(code))),
        }
    }
    commit_staged(relay, session, &mut staged, &mut replies).await;
    replies
}

/// A committed deposit: the envelopes held, and those refused.
type Committed = (u16, Vec<Refused>);

async fn commit_one(
    relay: &Relay,
    at: usize,
    checked: Checked,
) -> (usize, bool, Result<Committed, ErrorCode>) {
    let pow_used = checked.pow_used;
    (at, pow_used, commit(relay, checked).await)
}

/// Commits the staged deposits concurrently (the store groups them into
/// one commit) and fills in their replies.
async fn commit_staged(
    relay: &Relay,
    session: &mut Session,
    staged: &mut Vec<(usize, Checked)>,
    replies: &mut [(u32, Result<ServerFrame, ErrorCode>)],
) {
    let mut commits = Vec::with_capacity(staged.len());
    for (at, checked) in std::mem::take(staged) {
        commits.push(commit_one(relay, at, checked));
    }
    for (at, pow_used, result) in futures_util::future::join_all(commits).await {
        if pow_used && result.is_ok() {
            session.pow_challenge = random32();
        }
        if let Some(slot) = replies.get_mut(at) {
            slot.1 = result.map(|(accepted, refused)| deposited(session, accepted, refused));
        }
    }
}

/// The reply to a committed deposit.
fn deposited(session: &Session, accepted: u16, refused: Vec<Refused>) -> ServerFrame {
    ServerFrame::Deposited {
        accepted,
        next_pow_challenge: session.pow_challenge,
        refused,
    }
}

/// Checks batch size, recipients and proof of work; changes nothing.
async fn check(
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
    // Every distinct recipient is looked up once; an unknown one's
    // envelopes are refused (a seeker whose counselor device was deleted
    // still reaches the rest), and a batch for unknown recipients only is
    // refused whole.
    let mut recipients: Vec<MailboxId> = Vec::new();
    let mut unknown_to: Vec<MailboxId> = Vec::new();
    let mut pow_required = false;
    for e in &envelopes {
        let to = *e.recipient();
        if recipients.contains(&to) || unknown_to.contains(&to) {
            continue;
        }
        match relay.store.mailbox(to).await.map_err(store_code)? {
            Some(record) => {
                pow_required |= record.pow_required;
                recipients.push(to);
            }
            None => unknown_to.push(to),
        }
    }
    if recipients.is_empty() {
        return Err(ErrorCode::UnknownMailbox);
    }
    if pow_required {
        let nonce = pow_nonce.ok_or(ErrorCode::PowRequired)?;
        pow::verify(
            &session.pow_challenge,
            &deposit_batch_hash(&envelopes),
            pow::batch_difficulty(cfg.pow_difficulty, envelopes.len()),
            nonce,
        )
        .map_err(|_| ErrorCode::PowInvalid)?;
    }
    let expires_at = expiry_after_hours(now, cfg.retention_hours);
    let count = envelopes.len();
    let mut batch = Vec::with_capacity(count);
    let mut positions = Vec::with_capacity(count);
    let mut unknown = Vec::new();
    for (i, envelope) in envelopes.into_iter().enumerate() {
        if unknown_to.contains(envelope.recipient()) {
            unknown.push(i);
            continue;
        }
        positions.push(i);
        batch.push(NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at,
            envelope,
        });
    }
    Ok(Checked {
        batch,
        positions,
        count,
        unknown,
        recipients,
        pow_used: pow_required,
    })
}

/// Stores a checked deposit and wakes the subscribers of the recipients
/// that got their envelopes; returns the count held and the envelopes
/// refused, by position in the deposited batch: over quota, or for a
/// recipient not registered (at the check, or deleted since). A batch
/// refused whole is `unknown_mailbox` when every recipient is unknown, else
/// `quota_exceeded`, and changed nothing. The caller rotates the challenge
/// if `pow_used`.
async fn commit(relay: &Relay, checked: Checked) -> Result<Committed, ErrorCode> {
    let cfg = &relay.config;
    let Checked {
        batch,
        positions,
        count,
        mut unknown,
        recipients,
        ..
    } = checked;
    let quotas = Quotas {
        max_envelopes: cfg.mailbox_max_envelopes,
        max_bytes: cfg.mailbox_max_bytes,
    };
    // Frames for the recipients someone is subscribed to, built before the
    // batch moves into the store; handed over only after the commit.
    let mut live: Vec<(MailboxId, Vec<Push>)> = recipients
        .iter()
        .filter(|to| relay.notifier.is_watched(to))
        .map(|to| (*to, pushes_for(to, &batch)))
        .collect();
    let recipient_of: Vec<MailboxId> = batch.iter().map(|e| *e.envelope.recipient()).collect();
    let outcome = relay
        .store
        .deposit(batch, quotas)
        .await
        .map_err(store_code)?;
    // Positions in the store's batch, back to positions in the deposit.
    let at = |i: &usize| positions.get(*i).copied();
    unknown.extend(outcome.unknown.iter().filter_map(at));
    unknown.sort_unstable();
    let over_quota: Vec<usize> = outcome.over_quota.iter().filter_map(at).collect();
    if unknown.len() + over_quota.len() >= count {
        return Err(if over_quota.is_empty() {
            ErrorCode::UnknownMailbox
        } else {
            ErrorCode::QuotaExceeded
        });
    }
    // A recipient whose envelopes were refused got nothing stored.
    let refused_to: Vec<MailboxId> = outcome
        .over_quota
        .iter()
        .chain(&outcome.unknown)
        .filter_map(|&i| recipient_of.get(i).copied())
        .collect();
    for to in recipients.iter().filter(|to| !refused_to.contains(to)) {
        match live.iter().position(|(m, _)| m == to) {
            Some(i) => relay.notifier.deliver(to, std::mem::take(&mut live[i].1)),
            // Subscribed since the frames were built: it reads the store.
            None => relay.notifier.notify(to),
        }
    }
    let mut refused: Vec<Refused> = over_quota
        .iter()
        .map(|&i| (i, ErrorCode::QuotaExceeded))
        .chain(unknown.iter().map(|&i| (i, ErrorCode::UnknownMailbox)))
        .filter_map(|(i, code)| {
            Some(Refused {
                index: u16::try_from(i).ok()?,
                code,
            })
        })
        .collect();
    refused.sort_unstable_by_key(|r| r.index);
    let accepted = count - refused.len();
    let m = &crate::metrics::METRICS;
    Metrics::add(&m.deposit_batches, 1);
    Metrics::add(&m.deposit_envelopes, accepted as u64);
    for r in &refused {
        m.envelope_refused(r.code);
    }
    Ok((u16::try_from(accepted).unwrap_or(u16::MAX), refused))
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
