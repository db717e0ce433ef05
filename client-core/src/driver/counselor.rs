//! The counselor device's and the administrator's request sequences, and
//! the receiver every mailbox holder runs.

use core::cell::RefCell;
use std::rc::Rc;

use super::link::{Delivery, Io, backoff_secs};
use super::seeker::{Proof, fetch_bundles, fetch_directory, handle_seeker, open_mailbox};
use super::{
    ClientState, ConnId, ConnKind, Connection, DriverError, Event, Outcome, Output,
    PREKEY_LOW_WATER, PREKEY_TARGET, TeamAction,
};
use crate::UnixTime;
use crate::client::counselor::Counselor;
use crate::client::endpoint::SIGNED_PREKEY_ROTATION_SECS;
use crate::client::saved::UnreadableReason;
use crate::directory::SignedDirectory;
use crate::frame::{
    ClientFrame, FRAME_HEADER_LEN, MAX_PQ_PREKEYS_PER_UPLOAD, MAX_PREKEYS_PER_UPLOAD,
    ONE_TIME_PQ_PREKEY_LEN, ONE_TIME_PREKEY_LEN, OneTimePqPrekey, OneTimePrekey, ServerFrame,
};
use crate::ids::MailboxId;

type St = Rc<RefCell<ClientState>>;

/// A counselor action refetches the directory (to know colleagues added
/// since) unless it was fetched this recently.
pub const DIRECTORY_FRESH_SECS: u64 = 60;

/// Queues the sealed device state for the shell to store.
pub(super) fn persist(io: &Io, st: &St) -> Result<(), DriverError> {
    let s = st.borrow();
    let dev = s.device.as_ref().ok_or(DriverError::Misuse {
        what: "not a counselor device",
    })?;
    let mut l = io.0.borrow_mut();
    let sealed = dev.state.seal(&dev.key, &mut l.rng)?;
    l.out.push_back(Output::Persist { sealed });
    Ok(())
}

/// Applies a change that involves no relay, then saves.
pub(super) fn local_change(
    io: &Io,
    st: &St,
    f: impl FnOnce(&mut Counselor),
) -> Result<(), DriverError> {
    {
        let mut s = st.borrow_mut();
        let dev = s.device.as_mut().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        f(&mut dev.state.counselor);
    }
    persist(io, st)
}

/// Directory, registration (depositors must do proof of work), prekey
/// rotation and top-up, then everything stored is read, then expired
/// prekeys are deleted; the device keeps receiving.
pub(super) async fn sync(io: &Io, st: &St) -> Result<Outcome, DriverError> {
    fetch_directory(io, st).await?;
    st.borrow_mut().directory_at = Some(io.now());
    {
        let s = st.borrow();
        let dev = s.device.as_ref().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        dev.state.counselor.device()?;
    }
    persist(io, st)?;
    let running = st.borrow().mailbox.filter(|c| io.with(|l| l.is_open(*c)));
    let conn = match running {
        Some(c) => c,
        None => open_mailbox(io, st, Proof::Register { pow_required: true }).await?,
    };
    let topped = top_up_prekeys(io, st, conn).await;
    flush_outbox(io, st).await;
    if running.is_none() {
        if let Err(e) = topped {
            io.close(conn);
            return Err(e);
        }
        super::seeker::receive(io, st, conn).await?;
    } else {
        topped?;
    }
    // Receipts for what was just read go now, not at the next sync.
    flush_outbox(io, st).await;
    expire_prekeys(io, st)?;
    expire_conversations(io, st)?;
    Ok(Outcome::Synced)
}

/// Deletes the conversations whose retention has passed (and what the
/// outbox holds for them), tells the shell, and saves.
pub(super) fn expire_conversations(io: &Io, st: &St) -> Result<(), DriverError> {
    let now = io.now();
    let gone = {
        let mut s = st.borrow_mut();
        let Some(dev) = s.device.as_mut() else {
            return Ok(());
        };
        dev.state.expire(now)
    };
    if gone.is_empty() {
        return Ok(());
    }
    for conversation in gone {
        io.with(|l| {
            l.event(Event::Team(crate::client::counselor::Event::Expired {
                conversation,
            }))
        });
    }
    persist(io, st)
}

/// Queues a read receipt for `conversation` if one is due; whether one
/// was. A receipt that cannot be made (no directory, expired) is skipped:
/// opening a case never fails for it.
pub(super) fn read_receipt(
    io: &Io,
    st: &St,
    conversation: &MailboxId,
    now: UnixTime,
) -> Result<bool, DriverError> {
    let mut s = st.borrow_mut();
    let dev = s.device.as_mut().ok_or(DriverError::Misuse {
        what: "not a counselor device",
    })?;
    let env = {
        let mut l = io.0.borrow_mut();
        dev.state
            .counselor
            .read_receipt(conversation, now, &mut l.rng)
    };
    match env {
        Ok(Some(env)) => Ok(dev.state.queue(&[env]).is_ok()),
        _ => Ok(false),
    }
}

fn queue(st: &St, envelopes: &[crate::sealed::Envelope]) -> Result<(), DriverError> {
    let mut s = st.borrow_mut();
    let dev = s.device.as_mut().ok_or(DriverError::Misuse {
        what: "not a counselor device",
    })?;
    Ok(dev.state.queue(envelopes)?)
}

fn sent(io: &Io, st: &St, envelopes: &[crate::sealed::Envelope]) -> Result<(), DriverError> {
    if let Some(dev) = st.borrow_mut().device.as_mut() {
        dev.state.sent(envelopes);
    }
    persist(io, st)
}

/// Sends what earlier actions saved but could not deposit, and the
/// receipts queued since. A failure keeps them for the next sync (the sync
/// itself goes on). One flush at a time: a second waits for the first.
pub(super) async fn flush_outbox(io: &Io, st: &St) {
    let st2 = st.clone();
    io.until(move |_| !st2.borrow().flushing).await;
    let waiting: Vec<_> = st
        .borrow()
        .device
        .as_ref()
        .map(|d| d.state.outbox.clone())
        .unwrap_or_default();
    if waiting.is_empty() {
        return;
    }
    st.borrow_mut().flushing = true;
    let deposited = io.deposit(waiting.clone()).await.is_ok();
    st.borrow_mut().flushing = false;
    if deposited {
        let _ = sent(io, st, &waiting);
    }
}

/// Runs `f` on the counselor device's state.
fn with_device<R>(
    st: &St,
    f: impl FnOnce(&mut Counselor) -> Result<R, crate::Error>,
) -> Result<R, DriverError> {
    let mut s = st.borrow_mut();
    let dev = s.device.as_mut().ok_or(DriverError::Misuse {
        what: "not a counselor device",
    })?;
    Ok(f(&mut dev.state.counselor)?)
}

/// Keeps the relay supplied with this device's prekeys:
///
/// 1. the signed X25519 and last-resort ML-KEM prekeys are replaced when
///    they are [`SIGNED_PREKEY_ROTATION_SECS`] old (saved first);
/// 2. otherwise the bundle alone is uploaded, and the reply says how many
///    one-time prekeys of each kind the relay still holds;
/// 3. after a rotation, below [`PREKEY_LOW_WATER`] of either kind, or when
///    the newest one-time prekey is a rotation period old (the relay's set
///    may be stale), a fresh set of [`PREKEY_TARGET`] of each kind is made,
///    **saved**, and uploaded in place of everything the relay held — so
///    every one-time prekey the relay hands out is recent, and its secret
///    is on the device until it is used or
///    [`ONE_TIME_PREKEY_MAX_AGE_SECS`](crate::client::endpoint::ONE_TIME_PREKEY_MAX_AGE_SECS)
///    old. There is no lifetime cap: a device drained of its one-time
///    prekeys gets a fresh set at every sync.
async fn top_up_prekeys(io: &Io, st: &St, conn: ConnId) -> Result<(), DriverError> {
    let now = io.now();
    let before = with_device(st, |c| c.prekey_status())?;
    let rotated = with_device(st, |c| {
        let mut l = io.0.borrow_mut();
        c.rotate_prekeys_if_due(now, &mut l.rng)
    })?;
    let status = with_device(st, |c| c.prekey_status())?;
    // A rotation is saved with the fresh one-time set below, before
    // anything is uploaded; a first pair that was only dated, now.
    if !rotated && status.signed_prekey_created_at != before.signed_prekey_created_at {
        persist(io, st)?;
    }
    let bundle = with_device(st, |c| Ok(c.prekey_bundle()?.encode()))?;
    if !rotated {
        let (held, held_pq) = upload_prekeys(
            io,
            conn,
            ClientFrame::UploadPrekeys {
                signed_bundle: bundle.clone(),
                one_time: Vec::new(),
                one_time_pq: Vec::new(),
                replace: false,
            },
        )
        .await?;
        let stale = status
            .newest_one_time_at
            .is_none_or(|t| t.0.saturating_add(SIGNED_PREKEY_ROTATION_SECS) <= now.0);
        if held >= PREKEY_LOW_WATER && held_pq >= PREKEY_LOW_WATER && !stale {
            return Ok(());
        }
    }
    let (fresh, fresh_pq) = with_device(st, |c| {
        let mut l = io.0.borrow_mut();
        let target = PREKEY_TARGET as usize;
        let fresh = c.new_one_time_prekeys(target, now, &mut l.rng)?;
        let fresh_pq = c.new_one_time_pq_prekeys(target, now, &mut l.rng)?;
        Ok((fresh, fresh_pq))
    })?;
    persist(io, st)?;
    let one_time: Vec<OneTimePrekey> = fresh
        .iter()
        .map(|k| OneTimePrekey {
            id: k.id,
            public: k.key,
        })
        .collect();
    let one_time_pq: Vec<OneTimePqPrekey> = fresh_pq.iter().map(OneTimePqPrekey::from).collect();
    upload_replacing(io, conn, bundle, one_time, one_time_pq).await
}

/// One `UploadPrekeys`; the one-time prekeys of each kind the relay now holds.
async fn upload_prekeys(io: &Io, conn: ConnId, f: ClientFrame) -> Result<(u32, u32), DriverError> {
    match io.request(conn, f).await? {
        ServerFrame::PrekeysStored {
            one_time_count,
            one_time_pq_count,
        } => Ok((one_time_count, one_time_pq_count)),
        _ => Err(DriverError::Protocol),
    }
}

/// Uploads the bundle with a whole new set of one-time prekeys in place of
/// the relay's, in as many frames as the relay's announced frame limit
/// needs: the first replaces, the others add.
async fn upload_replacing(
    io: &Io,
    conn: ConnId,
    bundle: Vec<u8>,
    one_time: Vec<OneTimePrekey>,
    one_time_pq: Vec<OneTimePqPrekey>,
) -> Result<(), DriverError> {
    let hello = io.with(|l| l.hello(conn)).ok_or(DriverError::Network)?;
    let room = (hello.max_frame_len as usize).saturating_sub(UPLOAD_FRAME_OVERHEAD + bundle.len());
    let mut one_time = one_time.into_iter().peekable();
    let mut one_time_pq = one_time_pq.into_iter().peekable();
    let mut first = true;
    loop {
        let mut left = room;
        let mut chunk = Vec::new();
        while chunk.len() < MAX_PREKEYS_PER_UPLOAD && left >= ONE_TIME_PREKEY_LEN {
            let Some(k) = one_time.next() else { break };
            chunk.push(k);
            left -= ONE_TIME_PREKEY_LEN;
        }
        let mut chunk_pq = Vec::new();
        while chunk_pq.len() < MAX_PQ_PREKEYS_PER_UPLOAD && left >= ONE_TIME_PQ_PREKEY_LEN {
            let Some(k) = one_time_pq.next() else { break };
            chunk_pq.push(k);
            left -= ONE_TIME_PQ_PREKEY_LEN;
        }
        if !first && chunk.is_empty() && chunk_pq.is_empty() {
            // Done, or not even one more key fits a frame of this relay.
            return Ok(());
        }
        upload_prekeys(
            io,
            conn,
            ClientFrame::UploadPrekeys {
                signed_bundle: bundle.clone(),
                one_time: chunk,
                one_time_pq: chunk_pq,
                replace: first,
            },
        )
        .await?;
        first = false;
        if one_time.peek().is_none() && one_time_pq.peek().is_none() {
            return Ok(());
        }
    }
}

/// Bytes of an `UploadPrekeys` frame besides the bundle and the keys:
/// header, bundle length, the two counts and the replace flag.
const UPLOAD_FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 2 + 2 + 2 + 1;

/// Deletes the signed prekeys past their grace period and the one-time
/// prekeys past their maximum age, and saves if any were. Run after the
/// backlog was read, so a device back after a long absence reads what was
/// sealed to its old keys first.
fn expire_prekeys(io: &Io, st: &St) -> Result<(), DriverError> {
    let now = io.now();
    if with_device(st, |c| c.expire_prekeys(now))? {
        persist(io, st)?;
    }
    Ok(())
}

/// A team action: bundles for colleagues without a session, the action,
/// save, deposit.
pub(super) async fn act(
    io: &Io,
    st: &St,
    conversation: MailboxId,
    action: TeamAction,
) -> Result<Outcome, DriverError> {
    let now = io.now();
    let stale = st
        .borrow()
        .directory_at
        .is_none_or(|t| t.0 + DIRECTORY_FRESH_SECS <= now.0);
    if stale {
        // Colleagues the administrator added or removed since; a relay that
        // cannot be reached, or serves an older directory, leaves the
        // verified one this device holds in use — until it expires.
        if fetch_directory(io, st).await.is_ok() {
            st.borrow_mut().directory_at = Some(now);
            persist(io, st)?;
        }
    }
    let missing = {
        let s = st.borrow();
        let dev = s.device.as_ref().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        // An expired directory (the relay served no newer one) is not
        // acted on: it may still list a device the administrator removed.
        if let Some(dir) = dev.state.counselor.directory() {
            dir.check_not_expired(now)
                .map_err(DriverError::DirectoryRefused)?;
        }
        dev.state.counselor.missing_bundles(&conversation)?
    };
    let bundles = fetch_bundles(io, &missing).await?;
    let purge = matches!(action, TeamAction::Purge);
    if purge {
        // The blobs go first, while this device still holds their
        // references: a purge cut off here changes nothing else and is
        // simply done again (a blob already gone is a success).
        let blobs = with_device(st, |c| c.purge_blobs(&conversation))?;
        super::attach::delete_blobs(io, blobs).await?;
    }
    let envelopes = {
        let mut s = st.borrow_mut();
        let dev = s.device.as_mut().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        let c = &mut dev.state.counselor;
        let mut l = io.0.borrow_mut();
        let (t, rng) = (l.now, &mut l.rng);
        let b = &bundles;
        let id = &conversation;
        match action {
            TeamAction::Claim => c.claim(id, b, t, rng),
            TeamAction::Reply { text } => c.reply(id, &text, b, t, rng),
            TeamAction::HandOff { to } => c.hand_off(id, to, b, t, rng),
            TeamAction::Note { text } => c.note(id, &text, b, t, rng),
            TeamAction::Resolve => c.resolve(id, b, t, rng),
            TeamAction::Reopen => c.reopen(id, b, t, rng),
            TeamAction::Refer { partner, text } => c.refer(id, partner, &text, b, t, rng),
            TeamAction::SaveCanned { title, text } => {
                c.add_canned_answer(id, &title, &text, b, t, rng)
            }
            TeamAction::Keep { until, reason } => c.keep(id, until, &reason, b, t, rng),
            TeamAction::Attach { reference } => c.attach(id, reference, b, t, rng),
            TeamAction::Purge => c.purge(id, b, t, rng),
        }?
    };
    if purge && let Some(dev) = st.borrow_mut().device.as_mut() {
        dev.state.drop_queued_for(&conversation);
    }
    // Saved, with the envelopes in the outbox, before sending: a ratchet key
    // is never used twice, and an action whose deposit is cut off is sent
    // at the next sync instead of lost.
    queue(st, &envelopes)?;
    persist(io, st)?;
    io.deposit(envelopes.clone())
        .await
        .map_err(|e| DriverError::NotSentYet { cause: Box::new(e) })?;
    sent(io, st, &envelopes)?;
    Ok(Outcome::Acted)
}

/// Publishes a signed directory over an anonymous connection.
pub(super) async fn publish(io: &Io, directory: SignedDirectory) -> Result<Outcome, DriverError> {
    let serial = directory.version().serial;
    let (conn, _) = io.open(ConnKind::Anonymous).await?;
    let reply = io
        .request(
            conn,
            ClientFrame::PublishDirectory {
                directory: directory.encode(),
            },
        )
        .await;
    io.close(conn);
    match reply? {
        ServerFrame::Ok => Ok(Outcome::Published { serial }),
        _ => Err(DriverError::Protocol),
    }
}

/// Handles deliveries for a counselor device: open each, quarantine what
/// cannot be read, save, and only then acknowledge.
/// Returns whether receipts were queued (to deposit now).
fn handle_counselor(
    io: &Io,
    st: &St,
    conn: ConnId,
    batch: Vec<Delivery>,
) -> Result<bool, DriverError> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut receipts = false;
    {
        let mut s = st.borrow_mut();
        let Some(dev) = s.device.as_mut() else {
            return Ok(false);
        };
        // Seeker messages received, per conversation, for one delivered
        // receipt each (docs/PROTOCOL.md §6.6).
        let mut arrived: Vec<(MailboxId, Vec<crate::ids::MessageId>)> = Vec::new();
        for d in batch {
            match dev.state.counselor.receive(&d.envelope) {
                Ok(Some(e)) => {
                    if let crate::client::counselor::Event::Purged { conversation, .. } = &e {
                        dev.state.drop_queued_for(conversation);
                    }
                    if let Some((conv, id)) = seeker_arrival(&dev.state.counselor, &e) {
                        match arrived.iter_mut().find(|(c, _)| *c == conv) {
                            Some((_, ids)) if !ids.contains(&id) => ids.push(id),
                            Some(_) => {}
                            None => arrived.push((conv, vec![id])),
                        }
                    }
                    io.with(|l| l.event(Event::Team(e)))
                }
                Ok(None) => {}
                Err(e) => {
                    let reason = UnreadableReason::of(&e);
                    dev.state.quarantine(reason, d.envelope);
                    io.with(|l| l.event(Event::Unreadable { reason }));
                }
            }
            ids.push(d.id);
        }
        let now = io.now();
        for (conv, messages) in arrived {
            let env = {
                let mut l = io.0.borrow_mut();
                dev.state
                    .counselor
                    .delivered_receipt(&conv, &messages, now, &mut l.rng)
            };
            // A receipt that cannot be made (an expired directory) is
            // skipped: reading never fails for it.
            if let Ok(Some(env)) = env
                && dev.state.queue(&[env]).is_ok()
            {
                receipts = true;
            }
        }
        s.handled += ids.len() as u64;
    }
    persist(io, st)?;
    io.ack(conn, &ids)?;
    Ok(receipts)
}

/// The conversation and seeker message a receive event reports, if it is a
/// seeker's message (an opening or a text).
fn seeker_arrival(
    c: &Counselor,
    e: &crate::client::counselor::Event,
) -> Option<(MailboxId, crate::ids::MessageId)> {
    use crate::client::Author;
    use crate::client::counselor::Event as E;
    match e {
        E::NewConversation { conversation } => c
            .conversation(conversation)?
            .history
            .iter()
            .rev()
            .find(|x| x.author == Author::Seeker)
            .map(|x| (*conversation, x.id)),
        E::Message {
            conversation,
            entry,
            ..
        } if entry.author == Author::Seeker => Some((*conversation, entry.id)),
        _ => None,
    }
}

/// Receives on the mailbox connection for as long as the driver runs:
/// hands deliveries to the seeker or the counselor device, and when the
/// connection drops, reconnects with backoff (moving through the relay
/// list), authenticates and subscribes again.
pub(super) async fn receiver(io: Io, st: St, first: ConnId) {
    let mut conn = first;
    loop {
        loop {
            io.until(|l| l.has_deliveries(conn) || !l.is_open(conn))
                .await;
            let batch = io.with(|l| l.take_deliveries(conn));
            if batch.is_empty() {
                break;
            }
            let seeker = st.borrow().seeker.is_some();
            let result = if seeker {
                handle_seeker(&io, &st, conn, batch).await.map(|()| false)
            } else {
                handle_counselor(&io, &st, conn, batch)
            };
            match result {
                Err(_) => {
                    io.close(conn);
                    break;
                }
                // Receipts for what arrived go now, over an anonymous
                // connection like every deposit.
                Ok(true) => flush_outbox(&io, &st).await,
                Ok(false) => {}
            }
        }
        {
            let s = st.borrow();
            if s.closing || s.mailbox != Some(conn) {
                return;
            }
        }
        io.with(|l| l.event(Event::Connection(Connection::Reconnecting)));
        let lost = conn;
        // Another sequence (a sync, a seeker's open) took over the mailbox
        // connection meanwhile, with its own receiver: this one stops.
        let superseded = |st: &St| {
            let s = st.borrow();
            s.closing || s.mailbox != Some(lost)
        };
        let mut attempt = 0;
        conn = loop {
            let wait = backoff_secs(attempt, &mut io.0.borrow_mut().rng);
            io.sleep_until(UnixTime(io.now().0 + wait)).await;
            attempt = attempt.saturating_add(1);
            if superseded(&st) {
                return;
            }
            let Ok(c) = open_mailbox(&io, &st, Proof::Auth).await else {
                continue;
            };
            match io.request(c, ClientFrame::Subscribe).await {
                Ok(ServerFrame::Subscribed { .. }) => break c,
                _ => io.close(c),
            }
        };
        if superseded(&st) {
            io.close(conn);
            return;
        }
        st.borrow_mut().mailbox = Some(conn);
        io.with(|l| l.event(Event::Connection(Connection::Connected)));
    }
}
