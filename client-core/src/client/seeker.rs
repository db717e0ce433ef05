//! The seeker: one conversation with the organisation, keys from the codename.
//!
//! Everything the seeker has is derived from the codename
//! ([`crate::codename::SeekerSecrets`]): identity and mailbox keys, and the
//! key that encrypts the saved state. The saved state (sessions and the
//! conversation so far) is stored on the relay as an opaque blob; coming back
//! from any browser is: codename → keys → authenticate to the mailbox →
//! fetch the blob → [`Seeker::restore`] → read what arrived since.
//!
//! The seeker writes to the organisation's *intake set* (by default every
//! counselor device, [`crate::directory::VerifiedDirectory::intake_set`]),
//! one pairwise session per device; the chosen team travels inside the
//! ciphertext, in the opening message.
//!
//! The recipients follow the directory: the saved state keeps the version
//! of the last directory accepted, and every visit hands the directory just
//! fetched to [`Seeker::accept_directory`], which refuses one that cannot
//! follow it (a relay rolling the seeker back) and rebuilds the recipients
//! from its intake set. A device the administrator removed gets nothing
//! more and is not listened to; one added since is sent the conversation's
//! opening (the message being written, as an `Opening`) with a new session.
//!
//! A restored state may be an old copy: the relay stores it and can serve
//! any version it once held. Its sessions may then stand at chain positions
//! the seeker already used, whose keys the counselor devices have deleted
//! (they cannot keep them without losing forward secrecy). So after
//! [`Seeker::restore`] the first message to each recipient opens a *new*
//! session from a freshly fetched prekey bundle (the recipient files it in
//! the same conversation: a conversation is the seeker's identity and
//! mailbox); the restored sessions are kept only to read replies sent on
//! them. A message sent from a rolled-back state is therefore read like any
//! other, and never encrypted under a key used before (PROTOCOL.md §6.2).

use super::endpoint::Endpoint;
use super::{Author, ClientError, Entry, EntryKind, FetchedBundle, push_entry};
use crate::codename::SeekerSecrets;
use crate::directory::{DeviceEntry, DeviceId, DirectoryVersion, TeamId, VerifiedDirectory};
use crate::error::{DecodeError, Error};
use crate::ids::Language;
use crate::ids::{MailboxId, MessageId};
use crate::intake::IntakeAnswers;
use crate::keys::{IdentityPublic, MailboxKeyPair, MailboxPublic};
use crate::message::{AppMessage, Body, MessageText, Receipt, ReceiptKind};
use crate::sealed::Envelope;
use crate::state::{StateKey, StateKind};
use crate::wire::{Reader, Writer};
use crate::{CryptoRng, UnixTime};

/// Saved-state format version of a seeker (3: with the directory version;
/// 4: with the intake answers and the receipts).
pub const SEEKER_STATE_VERSION: u8 = 4;

/// Most messages written but not yet deposited: a seeker who writes while
/// the relay cannot be reached keeps at most this many to send next visit.
pub const MAX_PENDING: usize = 8;

/// Most counselor devices one conversation fans out to (bounds state and the
/// deposit batch; the relay's batch limit is 64).
pub const MAX_INTAKE_DEVICES: usize = 64;

/// A counselor device the seeker writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counterpart {
    pub device: DeviceId,
    pub identity: IdentityPublic,
    pub mailbox: MailboxPublic,
}

/// The seeker's conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub team: TeamId,
    pub language: Language,
    /// The devices written to and listened to: the intake set of `team` in
    /// the directory accepted last ([`Seeker::accept_directory`]).
    pub counselors: Vec<Counterpart>,
    pub history: Vec<Entry>,
    /// The answers to the intake questions, sent with the opening (and
    /// again to a device that joins later, inside its own opening).
    pub answers: IntakeAnswers,
    /// What the team's devices said about the conversation.
    pub receipts: Receipts,
}

/// Where the seeker's conversation stands, from the encrypted receipts the
/// team's devices sent (docs/PROTOCOL.md §6.6). Only the seeker's
/// latest message is followed: a new message starts over. "Answered" and
/// "referred" are not receipts: they are the replies and referrals in the
/// history ([`Conversation::status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipts {
    /// The seeker's latest message, which `reached` and `read` are about.
    pub latest: Option<MessageId>,
    /// Devices that said they received `latest` (each once, at most
    /// [`MAX_INTAKE_DEVICES`]).
    pub reached: Vec<DeviceId>,
    /// A counselor opened the case after `latest` arrived.
    pub read: bool,
    /// The team marked the conversation resolved, and has not reopened it
    /// (a new message from the seeker reopens it too).
    pub resolved: bool,
}

/// What the seeker sees of the conversation, drawn by every shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationStatus {
    /// Devices that received the seeker's latest message, of `devices`.
    pub reached: usize,
    /// The devices the conversation goes to now.
    pub devices: usize,
    /// A counselor read the latest message.
    pub read: bool,
    /// A counselor answered (a reply or a referral after the latest message
    /// of the seeker, or any before it if the seeker wrote nothing since).
    pub answered: bool,
    /// The partners the team referred the seeker to, in order (the shell
    /// shows their name and contact from the directory).
    pub referred: Vec<crate::directory::PartnerId>,
    /// The team marked the conversation resolved.
    pub resolved: bool,
}

impl Conversation {
    /// When the seeker last wrote (what the retention counts from).
    pub fn last_message_at(&self) -> Option<UnixTime> {
        self.history
            .iter()
            .filter(|e| e.author == Author::Seeker)
            .map(|e| e.at)
            .max()
    }

    /// When every copy of this conversation is deleted under a retention of
    /// `retention_secs` (the directory's): that long after the seeker's last
    /// message (docs/PROTOCOL.md §6.6).
    pub fn deletion_at(&self, retention_secs: u64) -> Option<UnixTime> {
        self.last_message_at()
            .map(|t| UnixTime(t.0.saturating_add(retention_secs)))
    }

    /// What the seeker sees: receipts and what the history says.
    pub fn status(&self) -> ConversationStatus {
        let devices = self.counselors.len();
        let reached = self
            .receipts
            .reached
            .iter()
            .filter(|d| self.counselors.iter().any(|c| c.device == **d))
            .count();
        let last_seeker = self
            .history
            .iter()
            .rposition(|e| e.author == Author::Seeker);
        let answered = self.history.iter().enumerate().any(|(i, e)| {
            matches!(e.author, Author::Counselor(_)) && last_seeker.is_none_or(|l| i > l)
        }) || (self.receipts.resolved
            && self
                .history
                .iter()
                .any(|e| matches!(e.author, Author::Counselor(_))));
        let referred = self
            .history
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Referral { partner, .. } => Some(*partner),
                _ => None,
            })
            .collect();
        ConversationStatus {
            reached,
            devices,
            read: self.receipts.read,
            answered,
            referred,
            resolved: self.receipts.resolved,
        }
    }

    /// Takes a receipt from `device` (one of `counselors`). Returns whether
    /// anything changed.
    fn apply_receipt(&mut self, device: DeviceId, receipt: &Receipt) -> bool {
        let r = &mut self.receipts;
        let about_latest = r.latest.is_some_and(|l| receipt.messages.contains(&l));
        match receipt.kind {
            ReceiptKind::Delivered | ReceiptKind::Read if !about_latest => false,
            ReceiptKind::Delivered => {
                if r.reached.contains(&device) || r.reached.len() >= MAX_INTAKE_DEVICES {
                    return false;
                }
                r.reached.push(device);
                true
            }
            ReceiptKind::Read => {
                let mut changed = !r.read;
                r.read = true;
                if !r.reached.contains(&device) && r.reached.len() < MAX_INTAKE_DEVICES {
                    r.reached.push(device);
                    changed = true;
                }
                changed
            }
            ReceiptKind::Resolved => !core::mem::replace(&mut r.resolved, true),
            ReceiptKind::Reopened => core::mem::replace(&mut r.resolved, false),
        }
    }

    /// The seeker wrote `id`: the receipts follow it from now on.
    fn wrote(&mut self, id: MessageId) {
        self.receipts = Receipts {
            latest: Some(id),
            ..Receipts::default()
        };
    }
}

/// What [`Seeker::receive_any`] took in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A reply or referral, added to the history.
    Entry(Entry),
    /// A receipt that changed the conversation's status.
    Status,
}

/// A seeker client.
#[derive(Debug)]
pub struct Seeker {
    endpoint: Endpoint,
    state_key: StateKey,
    conversation: Option<Conversation>,
    /// Messages saved but not yet acknowledged by the relay: a deposit cut
    /// off is sealed and sent again on the next visit (same message id, so a
    /// counselor who got the first copy drops the second), never lost.
    pending: Vec<AppMessage>,
    /// The directory accepted last: a later one must be able to follow it.
    directory: Option<DirectoryVersion>,
    /// Whether this state came from a saved blob (which the relay may have
    /// rolled back): sessions restored with it are not sent on.
    restored: bool,
    /// Recipients this process has started a session with since the
    /// restore: those it sends on. Not saved — every restore starts over.
    renewed: Vec<IdentityPublic>,
}

impl Seeker {
    /// A seeker with no conversation yet, from the codename's secrets.
    pub fn new(secrets: &SeekerSecrets) -> Self {
        Seeker {
            endpoint: Endpoint::without_prekeys(secrets.identity_keys(), secrets.mailbox_keys()),
            state_key: secrets.state_key(),
            conversation: None,
            pending: Vec::new(),
            directory: None,
            restored: false,
            renewed: Vec::new(),
        }
    }

    /// Restores a saved seeker. A blob that does not open under this
    /// codename's key is an error (a wrong codename yields a different
    /// mailbox, so normally there is no blob at all).
    pub fn restore(secrets: &SeekerSecrets, blob: &[u8]) -> Result<Self, Error> {
        let state_key = secrets.state_key();
        let plain = state_key.open(StateKind::Seeker, blob)?;
        let mut r = Reader::new(&plain);
        r.version(SEEKER_STATE_VERSION, "seeker state")?;
        let endpoint = Endpoint::decode(r.vec_u32(crate::state::MAX_STATE_BLOB_LEN, "endpoint")?)?;
        if endpoint.mailbox().id() != secrets.mailbox_keys().id() {
            return Err(ClientError::BadState.into());
        }
        let directory = match r.u8("has directory")? {
            0 => None,
            1 => {
                let b: [u8; DirectoryVersion::LEN] = r.array("directory version")?;
                Some(DirectoryVersion::decode(&b)?)
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "has directory",
                    tag,
                }
                .into());
            }
        };
        let conversation = match r.u8("has conversation")? {
            0 => None,
            1 => Some(read_conversation(&mut r)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "has conversation",
                    tag,
                }
                .into());
            }
        };
        let n = r.count_u16(MAX_PENDING, "pending messages")?;
        let mut pending = Vec::with_capacity(n);
        for _ in 0..n {
            pending.push(AppMessage::decode(
                r.vec_u32(crate::message::MAX_APP_MESSAGE_LEN, "pending message")?,
            )?);
        }
        r.finish("seeker state")?;
        Ok(Seeker {
            endpoint,
            state_key,
            conversation,
            pending,
            directory,
            restored: true,
            renewed: Vec::new(),
        })
    }

    /// Encrypts the whole state under the codename's state key, for the relay.
    pub fn save(&self, rng: &mut impl CryptoRng) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u8(SEEKER_STATE_VERSION);
        w.vec_u32(
            &self.endpoint.encode()?,
            crate::state::MAX_STATE_BLOB_LEN,
            "endpoint",
        )?;
        match &self.directory {
            None => {
                w.u8(0);
            }
            Some(v) => {
                w.u8(1).bytes(&v.encode());
            }
        }
        match &self.conversation {
            None => {
                w.u8(0);
            }
            Some(c) => {
                w.u8(1);
                write_conversation(&mut w, c)?;
            }
        }
        w.count_u16(self.pending.len(), MAX_PENDING, "pending messages")?;
        for m in &self.pending {
            w.vec_u32(
                &m.encode()?,
                crate::message::MAX_APP_MESSAGE_LEN,
                "pending message",
            )?;
        }
        let plain = zeroize::Zeroizing::new(w.into_bytes());
        self.state_key.seal(StateKind::Seeker, &plain, rng)
    }

    /// How many written messages wait to be deposited.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Seals every waiting message again (fresh ratchet keys, same message
    /// ids) to the current recipients, to deposit after the state is saved.
    /// `bundles`: as for [`Seeker::write`].
    pub fn reseal_pending(
        &mut self,
        bundles: &[FetchedBundle],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let pending = self.pending.clone();
        let mut out = Vec::new();
        for m in &pending {
            out.extend(self.fan_out(m, bundles, rng)?);
        }
        Ok(out)
    }

    /// The relay acknowledged every waiting message.
    pub fn sent(&mut self) {
        self.pending.clear();
    }

    /// The seeker's mailbox keys (to register and authenticate at the relay).
    pub fn mailbox(&self) -> &MailboxKeyPair {
        self.endpoint.mailbox()
    }

    pub fn conversation(&self) -> Option<&Conversation> {
        self.conversation.as_ref()
    }

    /// The version of the directory accepted last (kept in the saved state).
    pub fn directory_version(&self) -> Option<DirectoryVersion> {
        self.directory
    }

    /// Takes the directory just fetched (verified against the pinned key at
    /// the current time): refuses one that cannot follow the version
    /// accepted last — an older serial ([`DirectoryError::Rollback`]) or
    /// another directory under the same serial — and rebuilds the
    /// conversation's recipients from its intake set. Returns whether the
    /// version changed (the state should then be saved).
    ///
    /// [`DirectoryError::Rollback`]: crate::directory::DirectoryError::Rollback
    pub fn accept_directory(&mut self, directory: &VerifiedDirectory) -> Result<bool, Error> {
        let version = directory.version();
        version.check_successor_of(self.directory.as_ref())?;
        if let Some(c) = self.conversation.as_mut() {
            c.counselors = recipients(directory, c.team)?;
        }
        let changed = self.directory != Some(version);
        self.directory = Some(version);
        Ok(changed)
    }

    /// Mailboxes of the recipients to fetch prekey bundles for before
    /// [`Seeker::write`], [`Seeker::reseal_pending`] or
    /// [`Seeker::request_deletion`]: those with no session yet (devices
    /// added since the conversation started) and, after a restore, those
    /// not yet written to on a new session.
    pub fn missing_bundles(&self) -> Vec<MailboxId> {
        self.conversation
            .as_ref()
            .map(|c| {
                c.counselors
                    .iter()
                    .filter(|k| self.needs_new_session(&k.identity))
                    .map(|k| k.mailbox.id())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the next message to `peer` must open a new session: there is
    /// none, or the ones there are came with a restored (perhaps rolled
    /// back) state.
    fn needs_new_session(&self, peer: &IdentityPublic) -> bool {
        !self.endpoint.has_session(peer) || (self.restored && !self.renewed.contains(peer))
    }

    /// Starts the conversation: the opening message (with the chosen team
    /// inside) to every device of the intake set. `bundles` must hold one
    /// fetched prekey bundle per intake device. `answers` are checked
    /// against the team's intake questions
    /// ([`IntakeAnswers::check_against`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        directory: &VerifiedDirectory,
        team: TeamId,
        language: Language,
        answers: &IntakeAnswers,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        if self.conversation.is_some() {
            return Err(ClientError::ConversationExists.into());
        }
        // The chosen team must be listed (a team that left the directory
        // later is handled by `recipients`).
        directory.intake_set(team)?;
        answers.check_against(&directory.questions_of(team))?;
        let intake = recipients(directory, team)?;
        let msg = AppMessage::new(
            MessageId::random(rng),
            now,
            Body::Opening {
                team,
                language,
                answers: answers.clone(),
                text: MessageText::new(text),
            },
        );
        // Every bundle must be there before any session is started.
        if let Some(d) = intake
            .iter()
            .find(|d| !bundles.iter().any(|b| b.mailbox == d.mailbox.id()))
        {
            return Err(ClientError::MissingBundle {
                mailbox: d.mailbox.id(),
            }
            .into());
        }
        let mut envelopes = Vec::with_capacity(intake.len());
        for d in &intake {
            let bundle = bundles.iter().find(|b| b.mailbox == d.mailbox.id()).ok_or(
                ClientError::MissingBundle {
                    mailbox: d.mailbox.id(),
                },
            )?;
            envelopes.push(self.endpoint.seal_to(
                &d.identity,
                &d.mailbox,
                Some(bundle),
                &msg,
                rng,
            )?);
        }
        let mut history = Vec::new();
        push_entry(&mut history, entry_of(&msg, Author::Seeker, text));
        self.conversation = Some(Conversation {
            team,
            language,
            counselors: intake,
            history,
            receipts: Receipts {
                latest: Some(msg.id),
                ..Receipts::default()
            },
            answers: answers.clone(),
        });
        self.directory = Some(directory.version());
        Ok(envelopes)
    }

    /// Writes to every counselor device of the conversation. A device added
    /// since the conversation started (no session yet) gets the message as
    /// the conversation's `Opening`, with a session from its bundle in
    /// `bundles` (see [`Seeker::missing_bundles`]); one whose bundle is not
    /// given is left out of this message. Refused when no device at all
    /// would receive it ([`ClientError::NoRecipients`]).
    pub fn write(
        &mut self,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let msg = AppMessage::new(
            MessageId::random(rng),
            now,
            Body::Text {
                text: MessageText::new(text),
            },
        );
        if self.pending.len() >= MAX_PENDING {
            return Err(crate::ApiMisuse::OutboxFull { max: MAX_PENDING }.into());
        }
        self.conversation
            .as_ref()
            .ok_or(ClientError::NoConversation)?;
        if !self.reaches_anyone(bundles) {
            return Err(ClientError::NoRecipients.into());
        }
        let envelopes = self.fan_out(&msg, bundles, rng)?;
        if let Some(c) = self.conversation.as_mut() {
            push_entry(&mut c.history, entry_of(&msg, Author::Seeker, text));
            c.wrote(msg.id);
        }
        self.pending.push(msg);
        Ok(envelopes)
    }

    /// Sends a file's reference (its blob is already stored on the relay)
    /// to every counselor device that has a session with this seeker, and
    /// keeps it in the history. Like [`Seeker::write`], it waits in the
    /// pending list until delivered.
    pub fn attach(
        &mut self,
        reference: crate::attachment::AttachmentRef,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let msg = AppMessage::new(MessageId::random(rng), now, Body::Attachment(reference));
        if self.pending.len() >= MAX_PENDING {
            return Err(crate::ApiMisuse::OutboxFull { max: MAX_PENDING }.into());
        }
        self.conversation
            .as_ref()
            .ok_or(ClientError::NoConversation)?;
        if !self.reaches_anyone(bundles) {
            return Err(ClientError::NoRecipients.into());
        }
        let envelopes = self.fan_out(&msg, bundles, rng)?;
        if let Some(c) = self.conversation.as_mut()
            && let Some(entry) = Entry::of_message(msg.clone(), Author::Seeker)
        {
            push_entry(&mut c.history, entry);
        }
        self.pending.push(msg);
        Ok(envelopes)
    }

    /// Asks the team to delete the conversation (sent before the seeker
    /// deletes their mailbox and state on the relay) — to every recipient
    /// that has the conversation (a session with this seeker). `bundles`: as
    /// for [`Seeker::write`] (after a restore the request goes on new
    /// sessions, so a rolled-back state cannot get it dropped as a replay).
    pub fn request_deletion(
        &mut self,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let msg = AppMessage::new(MessageId::random(rng), now, Body::DeleteRequest);
        self.fan_out(&msg, bundles, rng)
    }

    /// Whether a message now would reach at least one device.
    fn reaches_anyone(&self, bundles: &[FetchedBundle]) -> bool {
        self.conversation.as_ref().is_some_and(|c| {
            c.counselors.iter().any(|k| {
                self.endpoint.has_session(&k.identity)
                    || bundles.iter().any(|b| b.mailbox == k.mailbox.id())
            })
        })
    }

    /// Seals `msg` to every recipient with a session; a recipient without
    /// one (added since the conversation started) gets a text as the
    /// conversation's `Opening` (same id and time) if its bundle is given,
    /// and nothing otherwise. After a restore, a recipient whose bundle is
    /// given is written to on a new session; one whose bundle could not be
    /// fetched, on the restored session (its body key is salted per message,
    /// §3.1, so even a reused chain position reveals nothing; the recipient
    /// may refuse it as a replay).
    fn fan_out(
        &mut self,
        msg: &AppMessage,
        bundles: &[FetchedBundle],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let conv = self
            .conversation
            .as_ref()
            .ok_or(ClientError::NoConversation)?;
        let (team, language, answers) = (conv.team, conv.language, conv.answers.clone());
        let counselors = conv.counselors.clone();
        let mut out = Vec::with_capacity(counselors.len());
        for c in &counselors {
            let has_session = self.endpoint.has_session(&c.identity);
            let bundle = bundles.iter().find(|b| b.mailbox == c.mailbox.id());
            if has_session {
                if let Some(bundle) = bundle.filter(|_| self.needs_new_session(&c.identity)) {
                    self.endpoint
                        .start_session(&c.identity, &c.mailbox, bundle, rng)?;
                    self.renewed.push(c.identity);
                }
                out.push(
                    self.endpoint
                        .seal_to(&c.identity, &c.mailbox, None, msg, rng)?,
                );
                continue;
            }
            let Some(bundle) = bundle else {
                continue;
            };
            let Body::Text { text } = &msg.body else {
                continue;
            };
            let opening = AppMessage {
                id: msg.id,
                sent_at: msg.sent_at,
                body: Body::Opening {
                    team,
                    language,
                    answers: answers.clone(),
                    text: text.clone(),
                },
            };
            out.push(self.endpoint.seal_to(
                &c.identity,
                &c.mailbox,
                Some(bundle),
                &opening,
                rng,
            )?);
            self.renewed.push(c.identity);
        }
        Ok(out)
    }

    /// Takes in an envelope from the seeker's mailbox. Returns the new entry,
    /// or `None` for a duplicate. Only the conversation's counselor devices
    /// — those the directory accepted last lists — can write here, and only
    /// texts and referrals; anything from another sender
    /// ([`ClientError::UnlistedSender`]) is refused before it changes any
    /// session.
    pub fn receive(&mut self, env: &Envelope) -> Result<Option<Entry>, Error> {
        Ok(match self.receive_any(env)? {
            Some(Received::Entry(e)) => Some(e),
            _ => None,
        })
    }

    /// [`Seeker::receive`], receipts included: a receipt from a listed
    /// device updates [`Conversation::receipts`] (`Some(Received::Status)`
    /// when that changed anything). A receipt is taken from the listed
    /// devices only, like any message: the relay cannot forge one (it is
    /// inside the ratchet), and a device the administrator removed cannot
    /// either.
    pub fn receive_any(&mut self, env: &Envelope) -> Result<Option<Received>, Error> {
        let conv = self
            .conversation
            .as_ref()
            .ok_or(ClientError::NoConversation)?;
        let listed = |from: &IdentityPublic| conv.counselors.iter().find(|c| c.identity == *from);
        let Some(received) = self.endpoint.open_from(env, |from| match listed(from) {
            Some(_) => Ok(()),
            None => Err(ClientError::UnlistedSender.into()),
        })?
        else {
            return Ok(None);
        };
        let device = listed(&received.from)
            .map(|c| c.device)
            .ok_or(ClientError::UnlistedSender)?;
        if let Body::Receipt(receipt) = &received.message.body {
            let conv = self
                .conversation
                .as_mut()
                .ok_or(ClientError::NoConversation)?;
            return Ok(conv
                .apply_receipt(device, receipt)
                .then_some(Received::Status));
        }
        let entry = Entry::of_message(received.message, Author::Counselor(device))
            .ok_or(ClientError::NotAllowed)?;
        let conv = self
            .conversation
            .as_mut()
            .ok_or(ClientError::NoConversation)?;
        Ok(push_entry(&mut conv.history, entry.clone()).then_some(Received::Entry(entry)))
    }
}

/// The devices a conversation about `team` goes to under `directory`: its
/// intake set, in directory order; every device if the team has left the
/// directory (as a counselor device does for team events).
fn recipients(directory: &VerifiedDirectory, team: TeamId) -> Result<Vec<Counterpart>, Error> {
    let devices: Vec<&DeviceEntry> = match directory.intake_set(team) {
        Ok(set) => set.into_iter().map(|r| r.device).collect(),
        Err(_) => directory.devices(),
    };
    if devices.len() > MAX_INTAKE_DEVICES {
        return Err(crate::ApiMisuse::IntakeTooLarge {
            max: MAX_INTAKE_DEVICES,
            got: devices.len(),
        }
        .into());
    }
    Ok(devices
        .into_iter()
        .map(|d| Counterpart {
            device: d.id,
            identity: d.identity,
            mailbox: d.mailbox,
        })
        .collect())
}

fn entry_of(msg: &AppMessage, author: Author, text: &str) -> Entry {
    Entry {
        id: msg.id,
        at: msg.sent_at,
        author,
        kind: EntryKind::Text(MessageText::new(text)),
    }
}

/// ```text
/// conversation = team:u16 || language:u8 || counselor_count:u16 || counselor*
///                || history_count:u16 || entry* || answers (intake::IntakeAnswers::write)
/// ```
fn write_conversation(w: &mut Writer, c: &Conversation) -> Result<(), Error> {
    w.u16(c.team.0).u8(c.language.wire());
    w.count_u16(c.counselors.len(), MAX_INTAKE_DEVICES, "counselors")?;
    for k in &c.counselors {
        w.u32(k.device.0);
        k.identity.write(w);
        k.mailbox.write(w);
    }
    w.count_u16(c.history.len(), super::MAX_HISTORY, "history")?;
    for e in &c.history {
        e.write(w)?;
    }
    let r = &c.receipts;
    match r.latest {
        None => {
            w.u8(0);
        }
        Some(id) => {
            w.u8(1).bytes(&id.0);
        }
    }
    w.count_u16(r.reached.len(), MAX_INTAKE_DEVICES, "reached")?;
    for d in &r.reached {
        w.u32(d.0);
    }
    w.u8(u8::from(r.read)).u8(u8::from(r.resolved));
    c.answers.write(w)?;
    Ok(())
}

fn read_flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

fn read_conversation(r: &mut Reader<'_>) -> Result<Conversation, DecodeError> {
    let team = TeamId(r.u16("team")?);
    let language = Language::from_wire(r.u8("language")?)?;
    let n = r.count_u16(MAX_INTAKE_DEVICES, "counselors")?;
    let mut counselors = Vec::with_capacity(n);
    for _ in 0..n {
        let device = DeviceId(r.u32("device")?);
        let identity = IdentityPublic::read(r)?;
        let mailbox = MailboxPublic::read(r)?;
        counselors.push(Counterpart {
            device,
            identity,
            mailbox,
        });
    }
    let h = r.count_u16(super::MAX_HISTORY, "history")?;
    let mut history = Vec::with_capacity(h);
    for _ in 0..h {
        history.push(Entry::read(r)?);
    }
    let latest = if read_flag(r, "has latest")? {
        Some(MessageId(r.array("latest message")?))
    } else {
        None
    };
    let n = r.count_u16(MAX_INTAKE_DEVICES, "reached")?;
    let mut reached = Vec::with_capacity(n);
    for _ in 0..n {
        reached.push(DeviceId(r.u32("reached device")?));
    }
    let read = read_flag(r, "read")?;
    let resolved = read_flag(r, "resolved")?;
    let answers = IntakeAnswers::read(r)?;
    Ok(Conversation {
        team,
        language,
        counselors,
        history,
        receipts: Receipts {
            latest,
            reached,
            read,
            resolved,
        },
        answers,
    })
}
