//! The seeker's request sequences, and the directory look-up every role uses.

use core::cell::RefCell;
use std::rc::Rc;

use super::link::{DEPOSIT_FRAME_OVERHEAD, Io, batch_len, expect_code};
use super::{ClientState, ConnKind, DriverError, Event, Outcome, SEEKER_STATE_TTL_HOURS};
use crate::UnixTime;
use crate::client::FetchedBundle;
use crate::client::seeker::{Received, Seeker};
use crate::codename::SeekerSecrets;
use crate::directory::{SignedDirectory, VerifiedDirectory};
use crate::frame::{ClientFrame, ErrorCode, ServerFrame};
use crate::ids::Language;
use crate::ids::MailboxId;
use crate::keys::MailboxKeyPair;
use crate::padding::bucket_for;
use crate::sealed::MAX_PADDED_PLAINTEXT;

type St = Rc<RefCell<ClientState>>;

/// Fetches the organisation's newest directory over an anonymous
/// connection and verifies it against the pinned key at the current time
/// (an expired one is refused) and against the version accepted last: a
/// counselor device's, or this driver's. (A seeker's saved version is
/// checked once the state is restored, [`Seeker::accept_directory`].)
pub(super) async fn fetch_directory(io: &Io, st: &St) -> Result<VerifiedDirectory, DriverError> {
    let now = io.now();
    let org = st.borrow().org;
    let (conn, _) = io.open(ConnKind::Anonymous).await?;
    let reply = io
        .request(
            conn,
            ClientFrame::FetchDirectory {
                org_key: *org.as_ed25519(),
            },
        )
        .await;
    io.close(conn);
    let bytes = match reply {
        Ok(ServerFrame::Directory { directory }) => directory,
        Ok(_) => return Err(DriverError::Protocol),
        Err(e) if expect_code(&e, ErrorCode::NotFound) => return Err(DriverError::NoDirectory),
        Err(e) => return Err(e),
    };
    let mut s = st.borrow_mut();
    if let Some(dev) = s.device.as_mut() {
        dev.state.counselor.set_directory(&bytes, &org, now)?;
        let dir = dev
            .state
            .counselor
            .directory()
            .cloned()
            .ok_or(DriverError::Protocol)?;
        s.directory = Some(dir.clone());
        return Ok(dir);
    }
    let previous = s.directory.as_ref().map(|d| d.version());
    let dir = SignedDirectory::decode(&bytes)
        .map_err(DriverError::from)?
        .verify(&org, previous.as_ref(), now)
        .map_err(DriverError::DirectoryRefused)?;
    s.directory = Some(dir.clone());
    Ok(dir)
}

pub(super) async fn directory(io: &Io, st: &St) -> Result<Outcome, DriverError> {
    fetch_directory(io, st).await?;
    if st.borrow().device.is_some() {
        // A counselor device keeps the newer directory it accepted.
        st.borrow_mut().directory_at = Some(io.now());
        super::counselor::persist(io, st)?;
    }
    Ok(Outcome::Directory)
}

/// Fetches one prekey bundle per device, in the order given, over one
/// anonymous connection.
pub(super) async fn fetch_bundles(
    io: &Io,
    mailboxes: &[MailboxId],
) -> Result<Vec<FetchedBundle>, DriverError> {
    fetch_some_bundles(io, mailboxes, false, 0).await
}

/// [`fetch_bundles`]; with `skip_missing`, a device that has uploaded no
/// keys yet is left out instead of failing the whole fetch. With
/// `min_envelope` (bytes; 0 for none), a message whose envelopes cannot be
/// smaller than that fails against the relay's frame limit (its hello)
/// before any bundle is fetched, so no one-time prekey is used up for it.
async fn fetch_some_bundles(
    io: &Io,
    mailboxes: &[MailboxId],
    skip_missing: bool,
    min_envelope: usize,
) -> Result<Vec<FetchedBundle>, DriverError> {
    if mailboxes.is_empty() {
        return Ok(Vec::new());
    }
    let (conn, hello) = io.open(ConnKind::Anonymous).await?;
    let max = hello.max_frame_len as usize;
    if min_envelope > 0 && DEPOSIT_FRAME_OVERHEAD + min_envelope > max {
        io.close(conn);
        return Err(DriverError::TooLargeForRelay {
            size: DEPOSIT_FRAME_OVERHEAD + min_envelope,
            max,
        });
    }
    let mut out = Vec::with_capacity(mailboxes.len());
    let mut result = Ok(());
    for mailbox in mailboxes {
        match io
            .request(conn, ClientFrame::FetchPrekeys { mailbox: *mailbox })
            .await
        {
            Ok(ServerFrame::Prekeys {
                signed_bundle,
                one_time,
                one_time_pq,
            }) => out.push(FetchedBundle {
                mailbox: *mailbox,
                signed_bundle,
                one_time: one_time.map(|k| k.to_bytes()),
                one_time_pq: one_time_pq.map(|k| k.to_bytes()),
            }),
            Ok(_) => {
                result = Err(DriverError::Protocol);
                break;
            }
            Err(e) if expect_code(&e, ErrorCode::NotFound) && skip_missing => {}
            Err(e) if expect_code(&e, ErrorCode::NotFound) => {
                result = Err(DriverError::DeviceWithoutKeys);
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    io.close(conn);
    result.map(|()| out)
}

/// How the mailbox connection proves it holds the mailbox key.
#[derive(Clone, Copy, Debug)]
pub(super) enum Proof {
    /// Register the mailbox (idempotent), flagging whether depositors must
    /// do proof of work.
    Register { pow_required: bool },
    /// Authenticate to an existing mailbox.
    Auth,
}

/// Opens the mailbox connection and proves possession of the mailbox key
/// (the seeker's or the counselor device's) over a fresh relay challenge.
pub(super) async fn open_mailbox(
    io: &Io,
    st: &St,
    proof: Proof,
) -> Result<super::ConnId, DriverError> {
    let (conn, _) = io.open(ConnKind::Mailbox).await?;
    match authenticate(io, st, conn, proof).await {
        Ok(()) => Ok(conn),
        Err(e) => {
            io.close(conn);
            Err(e)
        }
    }
}

async fn authenticate(
    io: &Io,
    st: &St,
    conn: super::ConnId,
    proof: Proof,
) -> Result<(), DriverError> {
    let challenge = match io.request(conn, ClientFrame::Challenge).await? {
        ServerFrame::Challenge { challenge } => challenge,
        _ => return Err(DriverError::Protocol),
    };
    let f = {
        let s = st.borrow();
        let keys = match (&s.device, &s.seeker) {
            (Some(d), _) => d.state.counselor.mailbox(),
            (None, Some(seeker)) => seeker.mailbox(),
            (None, None) => {
                return Err(DriverError::Misuse { what: "no mailbox" });
            }
        };
        proof_frame(keys, &challenge, proof)
    };
    match io.request(conn, f).await? {
        ServerFrame::Ok => Ok(()),
        _ => Err(DriverError::Protocol),
    }
}

fn proof_frame(keys: &MailboxKeyPair, challenge: &[u8; 32], proof: Proof) -> ClientFrame {
    let mailbox = keys.id();
    match proof {
        Proof::Register { pow_required } => ClientFrame::Register {
            keys: keys.public(),
            pow_required,
            signature: keys.sign(&crate::frame::register_message(
                challenge,
                &mailbox,
                pow_required,
            )),
        },
        Proof::Auth => ClientFrame::Auth {
            mailbox,
            signature: keys.sign(&crate::frame::auth_message(challenge, &mailbox)),
        },
    }
}

/// Hours the relay keeps the seeker's state from `now`: until the
/// conversation's deletion under the directory's retention (rounded up to
/// the hour, at least one), or [`SEEKER_STATE_TTL_HOURS`] before there is a
/// conversation or a directory.
fn state_ttl_hours(s: &ClientState, now: UnixTime) -> u32 {
    let deletion = s.directory.as_ref().and_then(|d| {
        s.seeker
            .as_ref()?
            .conversation()?
            .deletion_at(d.retention_secs())
    });
    match deletion {
        Some(t) => {
            let hours = t.0.saturating_sub(now.0).div_ceil(3600).max(1);
            u32::try_from(hours).unwrap_or(u32::MAX)
        }
        None => SEEKER_STATE_TTL_HOURS,
    }
}

/// Saves the seeker's state on the relay; returns its expiry.
async fn save(io: &Io, st: &St, conn: super::ConnId) -> Result<UnixTime, DriverError> {
    let (blob, ttl_hours) = {
        let s = st.borrow();
        let seeker = s.seeker.as_ref().ok_or(DriverError::Misuse {
            what: "no conversation is open",
        })?;
        let mut l = io.0.borrow_mut();
        let ttl = state_ttl_hours(&s, l.now);
        (seeker.save(&mut l.rng)?, ttl)
    };
    match io
        .request(conn, ClientFrame::PutState { ttl_hours, blob })
        .await?
    {
        ServerFrame::StateStored { expires_at } => {
            st.borrow_mut().expires_at = Some(expires_at);
            Ok(expires_at)
        }
        _ => Err(DriverError::Protocol),
    }
}

pub(super) async fn start(
    io: &Io,
    st: &St,
    secrets: &SeekerSecrets,
    team_slug: &str,
    language: Language,
    answers: &crate::intake::IntakeAnswers,
    text: &str,
) -> Result<Outcome, DriverError> {
    forget(io, st);
    let dir = fetch_directory(io, st).await?;
    let team = dir
        .teams()
        .iter()
        .find(|t| t.slug == team_slug)
        .ok_or(DriverError::UnknownTopic)?;
    if team.devices.is_empty() {
        return Err(DriverError::NobodyAnswers);
    }
    let team = team.id;
    // Answers the team's questions do not take fail here, before a prekey
    // is fetched (and used up) or a mailbox registered.
    answers
        .check_against(&dir.questions_of(team))
        .map_err(DriverError::Core)?;
    let intake: Vec<MailboxId> = dir
        .intake_set(team)
        .map_err(|e| DriverError::Core(e.into()))?
        .iter()
        .map(|r| r.device.mailbox.id())
        .collect();
    // A message too large for this relay fails here, before a prekey is
    // fetched (and used up) or a mailbox registered: its padded plaintext
    // alone is a lower bound of each envelope.
    let min_envelope = bucket_for(text.len() + 1).unwrap_or(MAX_PADDED_PLAINTEXT);
    let bundles = fetch_some_bundles(io, &intake, false, min_envelope).await?;
    // Everything that can fail locally fails before the mailbox exists.
    let mut seeker = Seeker::new(secrets);
    let envelopes = {
        let mut l = io.0.borrow_mut();
        let now = l.now;
        seeker.start(
            &dir, team, language, answers, text, &bundles, now, &mut l.rng,
        )?
    };
    st.borrow_mut().seeker = Some(seeker);
    let (conn, hello) = match io.open(ConnKind::Mailbox).await {
        Ok(x) => x,
        Err(e) => {
            forget(io, st);
            return Err(e);
        }
    };
    // An envelope no deposit frame of this relay can carry (its hello's
    // max_frame_len) fails here, before the mailbox is registered and a
    // conversation nobody received is saved.
    let fits = envelopes
        .iter()
        .try_for_each(|e| batch_len(core::iter::once(e), hello).map(|_| ()));
    let proven = match fits {
        Ok(()) => {
            authenticate(
                io,
                st,
                conn,
                Proof::Register {
                    pow_required: false,
                },
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = proven {
        io.close(conn);
        forget(io, st);
        return Err(e);
    }
    // Saved before the deposit: a ratchet key is never used twice.
    let expires_at = match save(io, st, conn).await {
        Ok(t) => t,
        Err(e) => {
            io.close(conn);
            forget(io, st);
            return Err(e);
        }
    };
    if let Err(e) = io.deposit(envelopes).await {
        // Nobody received the opening: leave no mailbox or saved
        // conversation behind for a codename the seeker never saw.
        let _ = io.request(conn, ClientFrame::DeleteMailbox).await;
        io.close(conn);
        forget(io, st);
        return Err(e);
    }
    receive(io, st, conn).await?;
    Ok(Outcome::Started { expires_at })
}

pub(super) async fn open(
    io: &Io,
    st: &St,
    secrets: &SeekerSecrets,
) -> Result<Outcome, DriverError> {
    forget(io, st);
    let dir = fetch_directory(io, st).await?;
    // The codename's keys prove the mailbox; the conversation itself comes
    // from the saved state below.
    st.borrow_mut().seeker = Some(Seeker::new(secrets));
    let conn = match open_mailbox(io, st, Proof::Auth).await {
        Ok(c) => c,
        Err(e) => {
            forget(io, st);
            if expect_code(&e, ErrorCode::UnknownMailbox) || expect_code(&e, ErrorCode::AuthFailed)
            {
                return Err(DriverError::CodenameNotFound);
            }
            return Err(e);
        }
    };
    let restored = match io.request(conn, ClientFrame::GetState).await {
        Ok(ServerFrame::State { expires_at, blob }) => Seeker::restore(secrets, &blob)
            .map(|s| (s, expires_at))
            .map_err(|_| DriverError::StateDoesNotOpen),
        Ok(_) => Err(DriverError::Protocol),
        Err(e) if expect_code(&e, ErrorCode::NotFound) => Err(DriverError::CodenameNotFound),
        Err(e) => Err(e),
    };
    // The directory served must follow the one the seeker accepted last
    // (a relay serving an older one is refused), and the recipients are
    // rebuilt from it: a removed device is not written to or listened to.
    let restored = restored.and_then(|(mut seeker, expires_at)| {
        let changed = seeker.accept_directory(&dir).map_err(DriverError::from)?;
        Ok((seeker, expires_at, changed))
    });
    let (seeker, expires_at, changed) = match restored {
        Ok(x) => x,
        Err(e) => {
            io.close(conn);
            forget(io, st);
            return Err(e);
        }
    };
    // A conversation past its retention is deleted, not shown: the relay
    // may not have swept it yet (or may serve an old copy).
    let past_retention = seeker
        .conversation()
        .and_then(|c| c.deletion_at(dir.retention_secs()))
        .is_some_and(|t| t <= io.now());
    if past_retention {
        let _ = io.request(conn, ClientFrame::DeleteMailbox).await;
        io.close(conn);
        forget(io, st);
        return Err(DriverError::CodenameNotFound);
    }
    {
        let mut s = st.borrow_mut();
        s.seeker = Some(seeker);
        s.expires_at = Some(expires_at);
    }
    if changed {
        // The newer version is kept before anything else: from now on the
        // relay cannot serve this seeker an older one.
        if let Err(e) = save(io, st, conn).await {
            io.close(conn);
            forget(io, st);
            return Err(e);
        }
    }
    receive(io, st, conn).await?;
    // What an earlier visit saved but could not deposit goes now, to the
    // current recipients (a copy the relay did store is stored once; a copy
    // a counselor already read is dropped there as a duplicate).
    let waiting = st.borrow().seeker.as_ref().map_or(0, |s| s.pending());
    if waiting > 0 {
        let bundles = newcomer_bundles(io, st).await?;
        let envelopes = seal(io, st, |seeker, _, rng| {
            seeker.reseal_pending(&bundles, rng)
        })?;
        // Nobody to send them to (every device removed): they wait.
        if !envelopes.is_empty() {
            save(io, st, conn).await?;
            io.deposit(envelopes).await?;
            sent(st);
            save(io, st, conn).await?;
        }
    }
    let expires_at = st.borrow().expires_at.unwrap_or(expires_at);
    Ok(Outcome::Opened { expires_at })
}

/// Prekey bundles for the recipients the next message opens a session with
/// ([`Seeker::missing_bundles`]: devices added since the conversation
/// started and, after coming back, every recipient not yet written to on a
/// new session); one that has uploaded no keys yet is left out (it gets a
/// later message, or, with a session, the message on the restored one).
async fn newcomer_bundles(io: &Io, st: &St) -> Result<Vec<FetchedBundle>, DriverError> {
    let missing = st
        .borrow()
        .seeker
        .as_ref()
        .map(|s| s.missing_bundles())
        .unwrap_or_default();
    fetch_some_bundles(io, &missing, true, 0).await
}

pub(super) async fn write(io: &Io, st: &St, text: &str) -> Result<Outcome, DriverError> {
    let conn = st.borrow().mailbox.ok_or(DriverError::Network)?;
    let bundles = newcomer_bundles(io, st).await?;
    let envelopes = seal(io, st, |seeker, now, rng| {
        seeker.write(text, &bundles, now, rng)
    })?;
    // Saved with the message pending before the deposit.
    let expires_at = save(io, st, conn).await?;
    io.deposit(envelopes)
        .await
        .map_err(|e| DriverError::NotSentYet { cause: Box::new(e) })?;
    sent(st);
    let expires_at = save(io, st, conn).await.unwrap_or(expires_at);
    Ok(Outcome::Sent { expires_at })
}

/// Uploads a file into the seeker's own mailbox, then sends its reference
/// as [`write`] sends a text (saved pending first, kept if the deposit fails).
pub(super) async fn attach(
    io: &Io,
    st: &St,
    command: super::CommandId,
    info: crate::attachment::FileInfo,
    size: u64,
) -> Result<Outcome, DriverError> {
    let mailbox = st
        .borrow()
        .seeker
        .as_ref()
        .map(|s| s.mailbox().id())
        .ok_or(DriverError::Misuse {
            what: "no conversation is open",
        })?;
    let reference = super::attach::upload(io, command, mailbox, info, size).await?;
    // The mailbox connection may have been lost (and replaced by the
    // receiver) while the file went up.
    let conn = open_mailbox_conn(io, st).await?;
    let bundles = newcomer_bundles(io, st).await?;
    let envelopes = seal(io, st, |seeker, now, rng| {
        seeker.attach(reference, &bundles, now, rng)
    })?;
    let expires_at = save(io, st, conn).await?;
    io.deposit(envelopes)
        .await
        .map_err(|e| DriverError::NotSentYet { cause: Box::new(e) })?;
    sent(st);
    let expires_at = save(io, st, conn).await.unwrap_or(expires_at);
    Ok(Outcome::Attached { expires_at })
}

/// How long a command waits for the receiver to reconnect a lost mailbox
/// connection before it fails (`Network`).
const MAILBOX_WAIT_SECS: u64 = 120;

/// The open mailbox connection, waiting (up to [`MAILBOX_WAIT_SECS`]) for
/// the receiver to replace a lost one.
async fn open_mailbox_conn(io: &Io, st: &St) -> Result<super::ConnId, DriverError> {
    let deadline = io.now().0 + MAILBOX_WAIT_SECS;
    loop {
        let conn = st.borrow().mailbox;
        if let Some(c) = conn
            && io.with(|l| l.is_open(c))
        {
            return Ok(c);
        }
        if io.now().0 >= deadline || st.borrow().seeker.is_none() {
            return Err(DriverError::Network);
        }
        io.sleep_until(UnixTime(io.now().0 + 1)).await;
    }
}

pub(super) async fn delete(io: &Io, st: &St) -> Result<Outcome, DriverError> {
    let conn = st.borrow().mailbox.ok_or(DriverError::Network)?;
    let bundles = newcomer_bundles(io, st).await?;
    let envelopes = seal(io, st, |seeker, now, rng| {
        seeker.request_deletion(&bundles, now, rng)
    })?;
    io.deposit(envelopes).await?;
    match io.request(conn, ClientFrame::DeleteMailbox).await? {
        ServerFrame::Ok => {}
        _ => return Err(DriverError::Protocol),
    }
    forget(io, st);
    Ok(Outcome::Deleted)
}

/// Seals with the open conversation, the time and the driver's RNG.
fn seal(
    io: &Io,
    st: &St,
    f: impl FnOnce(
        &mut Seeker,
        UnixTime,
        &mut rand_chacha::ChaCha20Rng,
    ) -> Result<Vec<crate::sealed::Envelope>, crate::Error>,
) -> Result<Vec<crate::sealed::Envelope>, DriverError> {
    let mut s = st.borrow_mut();
    let seeker = s.seeker.as_mut().ok_or(DriverError::Misuse {
        what: "no conversation is open",
    })?;
    let mut l = io.0.borrow_mut();
    let now = l.now;
    Ok(f(seeker, now, &mut l.rng)?)
}

/// The relay stored every waiting message.
fn sent(st: &St) {
    if let Some(s) = st.borrow_mut().seeker.as_mut() {
        s.sent();
    }
}

/// Drops the open conversation and its connection.
fn forget(io: &Io, st: &St) {
    let mut s = st.borrow_mut();
    if let Some(conn) = s.mailbox.take() {
        io.close(conn);
    }
    s.seeker = None;
    s.expires_at = None;
}

/// Subscribes, starts the receiver on `conn` and waits until the backlog
/// the relay announced is handled.
pub(super) async fn receive(io: &Io, st: &St, conn: super::ConnId) -> Result<(), DriverError> {
    let base = st.borrow().handled;
    let pending = match io.request(conn, ClientFrame::Subscribe).await {
        Ok(ServerFrame::Subscribed { pending }) => pending,
        Ok(_) => {
            io.close(conn);
            return Err(DriverError::Protocol);
        }
        Err(e) => {
            io.close(conn);
            // A counselor device keeps the mailbox connection it lost (its
            // receiver goes on reconnecting); a seeker drops the conversation.
            if st.borrow().device.is_none() {
                forget(io, st);
            }
            return Err(e);
        }
    };
    let replaced = {
        let mut s = st.borrow_mut();
        // A lost connection whose receiver was waiting to reconnect (and
        // said so): this one replaces it, and that receiver stops.
        let replaced = s.mailbox.is_some_and(|lost| lost != conn);
        s.mailbox = Some(conn);
        let (io2, st2) = (io.clone(), st.clone());
        s.spawned.push(Box::pin(async move {
            super::counselor::receiver(io2, st2, conn).await
        }));
        replaced
    };
    if replaced {
        io.with(|l| l.event(Event::Connection(super::Connection::Connected)));
    }
    let target = base + u64::from(pending);
    let st2 = st.clone();
    io.until(move |l| st2.borrow().handled >= target || !l.is_open(conn))
        .await;
    if st.borrow().handled < target {
        return Err(DriverError::Network);
    }
    Ok(())
}

/// Handles deliveries for a seeker: counselors' messages into the
/// conversation, saved on the relay before they are acknowledged. An
/// unreadable one is reported and left on the relay (not acknowledged).
pub(super) async fn handle_seeker(
    io: &Io,
    st: &St,
    conn: super::ConnId,
    batch: Vec<super::link::Delivery>,
) -> Result<(), DriverError> {
    let mut ack = Vec::new();
    let mut changed = false;
    for d in &batch {
        let result = {
            let mut s = st.borrow_mut();
            match s.seeker.as_mut() {
                Some(seeker) => seeker.receive_any(&d.envelope),
                None => return Ok(()),
            }
        };
        match result {
            Ok(Some(Received::Entry(entry))) => {
                changed = true;
                ack.push(d.id);
                io.with(|l| l.event(Event::SeekerMessage(entry)));
            }
            Ok(Some(Received::Status)) => {
                changed = true;
                ack.push(d.id);
                io.with(|l| l.event(Event::SeekerStatus));
            }
            Ok(None) => ack.push(d.id),
            Err(e) => io.with(|l| {
                l.event(Event::Unreadable {
                    reason: crate::client::saved::UnreadableReason::of(&e),
                })
            }),
        }
    }
    if changed {
        save(io, st, conn).await?;
    }
    st.borrow_mut().handled += batch.len() as u64;
    io.ack(conn, &ack)
}
