//! A counselor device: prekeys, the team inbox, and team state shared with
//! colleagues' devices.
//!
//! Every device of the intake set receives each seeker message (the seeker
//! fans out), so every device files the conversation itself, under the team
//! named inside the opening message. What one device *does* — claim, hand
//! off, resolve, reopen, a private note, a reply or referral it sent — travels
//! to the colleagues' devices as a [`TeamEvent`], end-to-end encrypted over
//! pairwise sessions like any other message; the relay never holds team state
//! in the clear.
//!
//! Sending to a colleague with no session yet needs its prekey bundle:
//! [`Counselor::missing_bundles`] says which to fetch, and each operation
//! takes the fetched bundles.

use crate::attachment::{BlobDeleteToken, BlobId};
use std::collections::{BTreeMap, VecDeque};

use super::endpoint::{Endpoint, PrekeyStore};
use super::{Author, ClientError, Entry, EntryKind, FetchedBundle, push_entry};
use crate::directory::{
    DeviceEntry, DeviceId, DirectoryVersion, OrgPublicKey, PartnerId, SignedDirectory, TeamId,
    VerifiedDirectory,
};
use crate::error::{DecodeError, Error};
use crate::ids::Language;
use crate::ids::{MailboxId, MessageId};
use crate::intake::IntakeAnswers;
use crate::keys::{
    IdentityKeyPair, IdentityPublic, MailboxKeyPair, MailboxPublic, OneTimePqPreKeyPublic,
    OneTimePreKeyPublic,
};
use crate::message::{
    AppMessage, Body, Direction, KEEP_UNTIL_PRECISION_SECS, MAX_CANNED_TITLE_LEN,
    MAX_KEEP_REASON_LEN, MAX_NOTE_LEN, MAX_RECEIPT_IDS, MAX_TEXT_LEN, MessageText, Receipt,
    ReceiptKind, TeamEvent, TeamEventKind, sent_at_of,
};
use crate::pqxdh::SignedPreKeyBundle;
use crate::sealed::Envelope;
use crate::wire::{Reader, Writer};
use crate::{CryptoRng, UnixTime};

/// Saved-state format version of a counselor device (2: tombstones; 3: the
/// intake answers of each conversation, retention, keep log, read receipts).
pub const COUNSELOR_STATE_VERSION: u8 = 3;

/// Most entries of the keep log a device holds (the oldest go first): years
/// of explicit "keep this case longer" choices for a team.
pub const MAX_KEEP_LOG: usize = 1000;

/// Longest a counselor can keep a case past the retention in one choice,
/// counted from the moment of the choice (a year; the choice can be made
/// again).
pub const MAX_KEEP_SECS: u64 = crate::directory::MAX_RETENTION_SECS;

/// Most deleted conversations a device remembers, so that a replayed
/// opening cannot bring one back. Kept well beyond the relay's retention of
/// the envelopes a replay would need, in practice every deletion.
pub const MAX_TOMBSTONES: usize = 32_768;

/// Most conversations a device keeps (bounds saved state). The retention
/// deletes conversations after the seeker's last message (90 days by
/// default), so this bounds what one team receives in a retention period:
/// 16,384 leaves room above the 10,000 the inbox search is measured with
/// (docs/BENCHMARKS.md); at that size the saved state is a few MiB, written
/// whole after each change.
pub const MAX_CONVERSATIONS: usize = 16_384;

/// Most private notes per conversation.
pub const MAX_NOTES: usize = 500;

/// Most canned answers a device keeps (a team's set of prepared replies;
/// the oldest goes first when a new one would exceed it).
pub const MAX_CANNED_ANSWERS: usize = 200;

/// A prepared reply shared with the team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CannedAnswer {
    pub title: MessageText,
    pub text: MessageText,
}

/// Where a conversation stands for the team.
///
/// A seeker who writes after a conversation was resolved has not been
/// answered: their message opens it again ([`Status::Open`], unread), on
/// every device alike. A resolution counts only if it is not older than
/// the seeker's last message, so devices that receive the seeker's message
/// and a colleague's resolution in either order agree. (Message times are
/// kept to the minute: within one minute, the order of arrival decides.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Nobody has taken it yet.
    Open,
    /// A device has taken it.
    Claimed(DeviceId),
    /// Answered and closed.
    Resolved,
}

/// A private note between colleagues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub by: DeviceId,
    pub at: UnixTime,
    pub text: MessageText,
}

/// One conversation in the team inbox, named by the seeker's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub seeker: IdentityPublic,
    pub seeker_mailbox: MailboxPublic,
    pub team: TeamId,
    pub language: Language,
    pub status: Status,
    pub history: Vec<Entry>,
    pub notes: Vec<Note>,
    /// Something arrived that this device has not shown yet.
    pub unread: bool,
    /// The seeker's answers to the intake questions (from the opening;
    /// read against the directory with [`Counselor::intake_summary`]).
    pub answers: IntakeAnswers,
    /// A counselor chose to keep the case past the retention until then
    /// ([`Counselor::keep`]); `None` when nobody did.
    pub kept_until: Option<UnixTime>,
    /// The seeker's latest message this device sent a read receipt for.
    pub read_receipt_for: Option<MessageId>,
}

/// One explicit choice to keep a case past the retention, as the device logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepRecord {
    /// The case (the seeker's mailbox).
    pub conversation: MailboxId,
    /// The device whose counselor chose it.
    pub by: DeviceId,
    /// When the choice was made (to the minute).
    pub at: UnixTime,
    /// Until when the case is kept.
    pub until: UnixTime,
    pub reason: MessageText,
}

/// When the seeker last wrote in `conv`.
fn last_from_seeker(conv: &Conversation) -> Option<UnixTime> {
    conv.history
        .iter()
        .filter(|e| e.author == Author::Seeker)
        .map(|e| e.at)
        .max()
}

/// When `conv` is deleted under `retention_secs`: that long after the
/// seeker's last message, or at `kept_until` if later.
fn deletion_at(conv: &Conversation, retention_secs: u64) -> UnixTime {
    let by_retention = UnixTime(
        last_from_seeker(conv)
            .unwrap_or(UnixTime(0))
            .0
            .saturating_add(retention_secs),
    );
    conv.kept_until
        .map_or(by_retention, |k| k.max(by_retention))
}

impl Conversation {
    /// Keeps a note, dropping the oldest beyond [`MAX_NOTES`].
    fn push_note(&mut self, note: Note) {
        if self.notes.len() >= MAX_NOTES {
            self.notes.remove(0);
        }
        self.notes.push(note);
    }
}

/// What [`Counselor::receive`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A seeker opened a conversation.
    NewConversation { conversation: MailboxId },
    /// A new entry (from the seeker, or a copy of a colleague's reply).
    Message {
        conversation: MailboxId,
        entry: Entry,
        /// The seeker wrote on a resolved conversation, which is open
        /// (and unread) again: see [`Status`].
        reopened: bool,
    },
    /// A colleague changed the conversation's status.
    StatusChanged {
        conversation: MailboxId,
        status: Status,
        by: DeviceId,
    },
    /// A colleague added a private note.
    Note { conversation: MailboxId, note: Note },
    /// The seeker asked for deletion; the conversation is gone from this device.
    Deleted { conversation: MailboxId },
    /// A colleague shared a canned answer.
    CannedAnswer { title: MessageText, by: DeviceId },
    /// The retention passed: the conversation is gone from this device.
    Expired { conversation: MailboxId },
    /// A colleague kept the conversation past the retention.
    Kept {
        conversation: MailboxId,
        until: UnixTime,
        by: DeviceId,
    },
    /// A colleague resolved and deleted the conversation: it is gone from
    /// this device (docs/PROTOCOL.md §6.7).
    Purged {
        conversation: MailboxId,
        by: DeviceId,
    },
}

/// A device's prekeys at a glance (no secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrekeyStatus {
    /// When the current signed prekeys were made (0 before the first sync).
    pub signed_prekey_created_at: UnixTime,
    /// Signed prekey pairs held: the current one and those in their grace period.
    pub signed_prekey_generations: usize,
    /// Unused one-time X25519 prekeys held.
    pub one_time: usize,
    /// Unused one-time ML-KEM prekeys held.
    pub one_time_pq: usize,
    /// When the newest one-time prekey held was made (the last fresh set).
    pub newest_one_time_at: Option<UnixTime>,
}

/// A counselor device.
pub struct Counselor {
    endpoint: Endpoint,
    directory: Option<VerifiedDirectory>,
    conversations: BTreeMap<MailboxId, Conversation>,
    canned: Vec<CannedAnswer>,
    /// Mailboxes of conversations the seeker deleted, oldest first: a
    /// session start naming one is refused.
    tombstones: VecDeque<MailboxId>,
    /// Every explicit choice to keep a case longer, oldest first.
    keep_log: VecDeque<KeepRecord>,
}

impl core::fmt::Debug for Counselor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Counselor")
            .field("conversations", &self.conversations.len())
            .finish_non_exhaustive()
    }
}

/// What a device hands the administrator to be added to the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePublic {
    pub identity: IdentityPublic,
    pub mailbox: MailboxPublic,
}

impl DevicePublic {
    /// Version byte of the exported form.
    pub const VERSION: u8 = 1;

    /// `version:u8 (=1) || identity[64] || mailbox[64]`
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(Self::VERSION);
        self.identity.write(&mut w);
        self.mailbox.write(&mut w);
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(Self::VERSION, "device public")?;
        let identity = IdentityPublic::read(&mut r)?;
        let mailbox = MailboxPublic::read(&mut r)?;
        r.finish("device public")?;
        Ok(DevicePublic { identity, mailbox })
    }
}

impl Counselor {
    /// A new device with fresh keys.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let mailbox = MailboxKeyPair::generate(rng);
        let prekeys = PrekeyStore::generate(rng);
        Counselor {
            endpoint: Endpoint::with_prekeys(identity, mailbox, prekeys),
            directory: None,
            conversations: BTreeMap::new(),
            canned: Vec::new(),
            tombstones: VecDeque::new(),
            keep_log: VecDeque::new(),
        }
    }

    /// The public keys to give the administrator.
    pub fn public(&self) -> DevicePublic {
        DevicePublic {
            identity: self.endpoint.identity().public(),
            mailbox: self.endpoint.mailbox().public(),
        }
    }

    pub fn mailbox(&self) -> &MailboxKeyPair {
        self.endpoint.mailbox()
    }

    /// The signed prekey bundle to upload.
    pub fn prekey_bundle(&self) -> Result<SignedPreKeyBundle, Error> {
        let store = self.endpoint.prekeys().ok_or(ClientError::NoPrekeys)?;
        Ok(store.bundle(self.endpoint.identity()))
    }

    /// New one-time X25519 prekeys to upload, dated `now`.
    pub fn new_one_time_prekeys(
        &mut self,
        count: usize,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<OneTimePreKeyPublic>, Error> {
        let store = self.endpoint.prekeys_mut().ok_or(ClientError::NoPrekeys)?;
        Ok(store.generate_one_time(count, now, rng))
    }

    /// New one-time ML-KEM prekeys to upload (each signed by this device's
    /// identity), dated `now`.
    pub fn new_one_time_pq_prekeys(
        &mut self,
        count: usize,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<OneTimePqPreKeyPublic>, Error> {
        self.endpoint.new_one_time_pq_prekeys(count, now, rng)
    }

    /// Replaces the signed prekeys when they are
    /// [`SIGNED_PREKEY_ROTATION_SECS`](super::endpoint::SIGNED_PREKEY_ROTATION_SECS)
    /// old (the old ones stay for the grace period). Says whether it did:
    /// the new bundle must then be uploaded.
    pub fn rotate_prekeys_if_due(
        &mut self,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<bool, Error> {
        let store = self.endpoint.prekeys_mut().ok_or(ClientError::NoPrekeys)?;
        Ok(store.rotate_if_due(now, rng))
    }

    /// Deletes the signed prekeys whose grace period is over and the
    /// one-time prekeys past their maximum age. Says whether any were.
    pub fn expire_prekeys(&mut self, now: UnixTime) -> Result<bool, Error> {
        let store = self.endpoint.prekeys_mut().ok_or(ClientError::NoPrekeys)?;
        Ok(store.expire(now))
    }

    /// What this device holds of its prekeys.
    pub fn prekey_status(&self) -> Result<PrekeyStatus, Error> {
        let store = self.endpoint.prekeys().ok_or(ClientError::NoPrekeys)?;
        Ok(PrekeyStatus {
            signed_prekey_created_at: store.signed_prekey_created_at(),
            signed_prekey_generations: store.generations(),
            one_time: store.one_time_count(),
            one_time_pq: store.one_time_pq_count(),
            newest_one_time_at: store.newest_one_time_at(),
        })
    }

    /// Loads a directory fetched from the relay, checked against the pinned
    /// organisation key at `now`, refusing a rollback from the one held and
    /// an expired one (the one held is then kept, and refused in turn by
    /// every team operation once it has expired).
    pub fn set_directory(
        &mut self,
        signed: &[u8],
        pinned: &OrgPublicKey,
        now: UnixTime,
    ) -> Result<(), Error> {
        let previous: Option<DirectoryVersion> = self.directory.as_ref().map(|d| d.version());
        let verified = SignedDirectory::decode(signed)?.verify(pinned, previous.as_ref(), now)?;
        self.directory = Some(verified);
        Ok(())
    }

    /// The directory held, refused once expired: nothing is sent to the
    /// devices of a directory a relay may be freezing this device on.
    fn live_directory(&self, now: UnixTime) -> Result<&VerifiedDirectory, Error> {
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        dir.check_not_expired(now)?;
        Ok(dir)
    }

    pub fn directory(&self) -> Option<&VerifiedDirectory> {
        self.directory.as_ref()
    }

    /// This device's entry in the directory.
    pub fn device(&self) -> Result<&DeviceEntry, Error> {
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        Ok(dir
            .device_by_identity(&self.endpoint.identity().public())
            .ok_or(ClientError::NotInDirectory)?)
    }

    /// Conversations, by seeker mailbox.
    pub fn conversations(&self) -> &BTreeMap<MailboxId, Conversation> {
        &self.conversations
    }

    pub fn conversation(&self, id: &MailboxId) -> Option<&Conversation> {
        self.conversations.get(id)
    }

    /// Marks a conversation as read on this device.
    pub fn mark_read(&mut self, id: &MailboxId) {
        if let Some(c) = self.conversations.get_mut(id) {
            c.unread = false;
        }
    }

    /// Takes in an envelope from this device's mailbox.
    pub fn receive(&mut self, env: &Envelope) -> Result<Option<Event>, Error> {
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        let conversations = &self.conversations;
        let tombstones = &self.tombstones;
        let known_devices = dir;
        let Some(received) = self.endpoint.open_checked(env, |r| {
            let colleague = known_devices.device_by_identity(&r.from).is_some();
            // Team events only from devices the directory lists now: a
            // device the administrator removed is refused before any
            // session with it is kept.
            if !colleague && matches!(r.message.body, Body::Team(_)) {
                return Err(ClientError::UnlistedSender.into());
            }
            // A seeker message naming a known conversation's mailbox from
            // another identity is refused before any session is kept.
            if !colleague && tombstones.contains(&r.from_mailbox.id()) {
                // The seeker deleted this conversation: a replay of its
                // opening (or anything else naming it) brings nothing back.
                return Err(ClientError::Deleted.into());
            }
            match conversations.get(&r.from_mailbox.id()) {
                Some(c) if !colleague && c.seeker != r.from => Err(ClientError::WrongSeeker.into()),
                _ => Ok(()),
            }
        })?
        else {
            return Ok(None);
        };
        let colleague = dir.device_by_identity(&received.from).map(|d| d.id);
        let msg = received.message;
        match colleague {
            Some(by) => match msg.body {
                Body::Team(event) if event.by == by => {
                    Ok(self.apply_team_event(event, msg.sent_at))
                }
                _ => Err(ClientError::NotAllowed.into()),
            },
            None => {
                let conv_id = received.from_mailbox.id();
                match msg.body {
                    Body::Opening {
                        team,
                        language,
                        answers,
                        text,
                    } => {
                        // A conversation is the seeker's identity *and*
                        // mailbox: another identity naming a known mailbox
                        // (even one holding its key) is refused.
                        if self
                            .conversations
                            .get(&conv_id)
                            .is_some_and(|c| c.seeker != received.from)
                        {
                            return Err(ClientError::WrongSeeker.into());
                        }
                        let is_new = !self.conversations.contains_key(&conv_id);
                        if is_new && self.conversations.len() >= MAX_CONVERSATIONS {
                            return Err(crate::ApiMisuse::InboxFull {
                                max: MAX_CONVERSATIONS,
                            }
                            .into());
                        }
                        let conv =
                            self.conversations
                                .entry(conv_id)
                                .or_insert_with(|| Conversation {
                                    seeker: received.from,
                                    seeker_mailbox: received.from_mailbox,
                                    team,
                                    language,
                                    status: Status::Open,
                                    history: Vec::new(),
                                    notes: Vec::new(),
                                    unread: true,
                                    kept_until: None,
                                    read_receipt_for: None,
                                    answers,
                                });
                        let entry = Entry {
                            id: msg.id,
                            at: msg.sent_at,
                            author: Author::Seeker,
                            kind: EntryKind::Text(text),
                        };
                        if push_entry(&mut conv.history, entry) && conv.status == Status::Resolved {
                            conv.status = Status::Open;
                        }
                        conv.unread = true;
                        Ok(Some(Event::NewConversation {
                            conversation: conv_id,
                        }))
                    }
                    body @ (Body::Text { .. } | Body::Attachment(_)) => {
                        let conv = self
                            .conversations
                            .get_mut(&conv_id)
                            .ok_or(ClientError::UnknownConversation)?;
                        if conv.seeker != received.from {
                            return Err(ClientError::WrongSeeker.into());
                        }
                        let kind = match body {
                            Body::Text { text } => EntryKind::Text(text),
                            Body::Attachment(a) => EntryKind::Attachment(a),
                            _ => return Err(ClientError::NotAllowed.into()),
                        };
                        let entry = Entry {
                            id: msg.id,
                            at: msg.sent_at,
                            author: Author::Seeker,
                            kind,
                        };
                        if !push_entry(&mut conv.history, entry.clone()) {
                            return Ok(None);
                        }
                        conv.unread = true;
                        let reopened = conv.status == Status::Resolved;
                        if reopened {
                            conv.status = Status::Open;
                        }
                        Ok(Some(Event::Message {
                            conversation: conv_id,
                            entry,
                            reopened,
                        }))
                    }
                    Body::DeleteRequest => {
                        match self.conversations.get(&conv_id) {
                            Some(c) if c.seeker != received.from => {
                                return Err(ClientError::WrongSeeker.into());
                            }
                            Some(_) => {
                                self.conversations.remove(&conv_id);
                            }
                            None => {}
                        }
                        self.tombstone(conv_id);
                        self.endpoint.forget(&received.from);
                        Ok(Some(Event::Deleted {
                            conversation: conv_id,
                        }))
                    }
                    _ => Err(ClientError::NotAllowed.into()),
                }
            }
        }
    }

    fn apply_team_event(&mut self, event: TeamEvent, at: UnixTime) -> Option<Event> {
        // Canned answers belong to the team, whatever conversation they
        // were saved from.
        if let TeamEventKind::CannedAnswer { title, text } = event.kind {
            self.keep_canned(CannedAnswer {
                title: title.clone(),
                text,
            });
            return Some(Event::CannedAnswer {
                title,
                by: event.by,
            });
        }
        let conversation = event.conversation;
        if event.kind == TeamEventKind::Purge {
            // The acting device's own copy finds the conversation gone.
            if !self.conversations.contains_key(&conversation) {
                return None;
            }
            self.delete_conversation(&conversation);
            return Some(Event::Purged {
                conversation,
                by: event.by,
            });
        }
        // A colleague can push a case's deletion at most MAX_KEEP_SECS past
        // the date it has now: a seized device cannot make the team keep
        // cases indefinitely in one event (each is logged, with its author).
        if let TeamEventKind::Keep { until, .. } = &event.kind {
            let retention = self.directory.as_ref().map(|d| d.retention_secs())?;
            let current = deletion_at(self.conversations.get(&conversation)?, retention);
            if until.0 > current.0.saturating_add(MAX_KEEP_SECS) {
                return None;
            }
        }
        let conv = self.conversations.get_mut(&conversation)?;
        let by = event.by;
        let status = |s: Status| {
            Some(Event::StatusChanged {
                conversation,
                status: s,
                by,
            })
        };
        match event.kind {
            TeamEventKind::Claim => {
                conv.status = Status::Claimed(by);
                status(conv.status)
            }
            TeamEventKind::HandOff { to } => {
                conv.status = Status::Claimed(to);
                conv.unread = true;
                status(conv.status)
            }
            TeamEventKind::Resolve => {
                // Resolved before the seeker's last message (which this
                // colleague had not seen): the conversation stays open.
                if last_from_seeker(conv).is_some_and(|t| t > at) {
                    conv.status = Status::Open;
                    conv.unread = true;
                } else {
                    conv.status = Status::Resolved;
                }
                status(conv.status)
            }
            TeamEventKind::Reopen => {
                conv.status = Status::Open;
                status(conv.status)
            }
            TeamEventKind::Note { text } => {
                let note = Note { by, at, text };
                conv.push_note(note.clone());
                Some(Event::Note { conversation, note })
            }
            TeamEventKind::Keep { until, reason } => {
                conv.kept_until = Some(conv.kept_until.map_or(until, |k| k.max(until)));
                self.log_keep(KeepRecord {
                    conversation,
                    by,
                    at,
                    until,
                    reason,
                });
                Some(Event::Kept {
                    conversation,
                    until,
                    by,
                })
            }
            TeamEventKind::Copy {
                direction: Direction::ToSeeker,
                message,
            } => {
                let entry = Entry::of_message(*message, Author::Counselor(by))?;
                push_entry(&mut conv.history, entry.clone()).then_some(Event::Message {
                    conversation,
                    entry,
                    reopened: false,
                })
            }
            // Every device receives the seeker's own messages directly;
            // canned answers were handled above.
            TeamEventKind::Copy {
                direction: Direction::FromSeeker,
                ..
            }
            | TeamEventKind::CannedAnswer { .. }
            | TeamEventKind::Purge => None,
        }
    }

    /// The colleague devices team events about `conversation` go to: the
    /// intake set of its team, without this device.
    fn colleagues(&self, conversation: &MailboxId) -> Result<Vec<DeviceEntry>, Error> {
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        let me = self.endpoint.identity().public();
        let set = match dir.intake_set(conv.team) {
            Ok(set) => set
                .into_iter()
                .map(|r| r.device.clone())
                .collect::<Vec<_>>(),
            // A team that left the directory: every device.
            Err(_) => dir.devices().into_iter().cloned().collect(),
        };
        Ok(set.into_iter().filter(|d| d.identity != me).collect())
    }

    /// Colleague mailboxes whose prekey bundles must be fetched before a
    /// team operation on `conversation` (no session with them yet).
    pub fn missing_bundles(&self, conversation: &MailboxId) -> Result<Vec<MailboxId>, Error> {
        Ok(self
            .colleagues(conversation)?
            .into_iter()
            .filter(|d| !self.endpoint.has_session(&d.identity))
            .map(|d| d.mailbox.id())
            .collect())
    }

    fn send_team_event(
        &mut self,
        conversation: &MailboxId,
        kind: TeamEventKind,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.live_directory(now)?;
        let by = self.device()?.id;
        let colleagues = self.colleagues(conversation)?;
        let msg = AppMessage::new(
            MessageId::random(rng),
            now,
            Body::Team(TeamEvent {
                conversation: *conversation,
                by,
                kind,
            }),
        );
        let mut out = Vec::with_capacity(colleagues.len() + 1);
        for d in &colleagues {
            let bundle = bundles.iter().find(|b| b.mailbox == d.mailbox.id());
            out.push(
                self.endpoint
                    .seal_to(&d.identity, &d.mailbox, bundle, &msg, rng)?,
            );
        }
        // The acting device is in the fan-out too, so the set of recipients
        // is the same whoever acts.
        if let Some(like) = out.iter().max_by_key(|e| e.ciphertext().len()) {
            let copy = self.endpoint.self_copy(like, rng)?;
            out.push(copy);
        }
        Ok(out)
    }

    /// Test only: seals any message to a peer this device has a session
    /// with (to play a modified client).
    #[cfg(test)]
    pub(crate) fn seal_for_test(
        &mut self,
        identity: &IdentityPublic,
        mailbox: &MailboxPublic,
        msg: &AppMessage,
        rng: &mut impl CryptoRng,
    ) -> Result<Envelope, Error> {
        self.endpoint.seal_to(identity, mailbox, None, msg, rng)
    }

    /// Deletes a conversation from this device: messages, notes, the
    /// session with the seeker, and a tombstone so that a replayed opening
    /// cannot bring it back.
    fn delete_conversation(&mut self, conversation: &MailboxId) {
        if let Some(c) = self.conversations.remove(conversation) {
            self.endpoint.forget(&c.seeker);
        }
        self.tombstone(*conversation);
    }

    /// Remembers a conversation that must not come back (deleted by the
    /// seeker, or by the retention).
    fn tombstone(&mut self, conv_id: MailboxId) {
        if !self.tombstones.contains(&conv_id) {
            if self.tombstones.len() >= MAX_TOMBSTONES {
                self.tombstones.pop_front();
            }
            self.tombstones.push_back(conv_id);
        }
    }

    fn log_keep(&mut self, record: KeepRecord) {
        if self.keep_log.len() >= MAX_KEEP_LOG {
            self.keep_log.pop_front();
        }
        self.keep_log.push_back(record);
    }

    /// Every explicit choice to keep a case longer this device knows of
    /// (its own counselors' and its colleagues'), oldest first.
    pub fn keep_log(&self) -> impl Iterator<Item = &KeepRecord> {
        self.keep_log.iter()
    }

    /// When `conversation` is deleted from this device: the directory's
    /// retention after the seeker's last message, or later if a counselor
    /// kept the case (docs/PROTOCOL.md §6.6). `None` without a
    /// directory or for an unknown conversation.
    pub fn deletion_at(&self, conversation: &MailboxId) -> Option<UnixTime> {
        let retention = self.directory.as_ref()?.retention_secs();
        let conv = self.conversations.get(conversation)?;
        Some(deletion_at(conv, retention))
    }

    /// Deletes every conversation whose retention has passed at `now`
    /// (messages, notes, the session with the seeker; the mailbox is
    /// remembered so that a replayed opening cannot bring it back). Returns
    /// the conversations deleted; the shell also drops anything it queued
    /// for them ([`crate::client::saved::DeviceState::expire`] does both).
    pub fn expire(&mut self, now: UnixTime) -> Vec<MailboxId> {
        let Some(retention) = self.directory.as_ref().map(|d| d.retention_secs()) else {
            return Vec::new();
        };
        let due: Vec<MailboxId> = self
            .conversations
            .iter()
            .filter(|(_, c)| deletion_at(c, retention) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            if let Some(c) = self.conversations.remove(id) {
                self.endpoint.forget(&c.seeker);
            }
            self.tombstone(*id);
        }
        due
    }

    /// Keeps `conversation` past the retention until `until` (rounded up
    /// to the hour), for `reason`: an explicit choice, logged on this
    /// device and sent to the colleagues' devices, which log it too. Refused
    /// for a time not in the future, more than [`MAX_KEEP_SECS`] away, or
    /// without a reason.
    #[allow(clippy::too_many_arguments)]
    pub fn keep(
        &mut self,
        conversation: &MailboxId,
        until: UnixTime,
        reason: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let until = UnixTime(
            until
                .0
                .div_ceil(KEEP_UNTIL_PRECISION_SECS)
                .saturating_mul(KEEP_UNTIL_PRECISION_SECS),
        );
        if until <= now || until.0 > now.0.saturating_add(MAX_KEEP_SECS) {
            return Err(crate::ApiMisuse::KeepOutOfRange.into());
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_KEEP_REASON_LEN {
            return Err(Error::TooLongToEncode {
                what: "keep reason",
                max: MAX_KEEP_REASON_LEN,
                got: reason.len(),
            });
        }
        let me = self.device()?.id;
        let reason = MessageText::new(reason);
        let out = self.send_team_event(
            conversation,
            TeamEventKind::Keep {
                until,
                reason: reason.clone(),
            },
            bundles,
            now,
            rng,
        )?;
        let conv = self
            .conversations
            .get_mut(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        conv.kept_until = Some(until);
        self.log_keep(KeepRecord {
            conversation: *conversation,
            by: me,
            at: sent_at_of(now),
            until,
            reason,
        });
        Ok(out)
    }

    /// The receipt telling the seeker this device received `messages`
    /// (their ids, the newest [`MAX_RECEIPT_IDS`] kept), or `None` when
    /// this device leaves it to a colleague: once a colleague has claimed
    /// the conversation, only that colleague's device sends receipts, so a
    /// large team does not fill the seeker's mailbox
    /// (docs/PROTOCOL.md §6.6).
    pub fn delivered_receipt(
        &mut self,
        conversation: &MailboxId,
        messages: &[MessageId],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Option<Envelope>, Error> {
        let me = self.device()?.id;
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        if messages.is_empty() || matches!(conv.status, Status::Claimed(d) if d != me) {
            return Ok(None);
        }
        let start = messages.len().saturating_sub(MAX_RECEIPT_IDS);
        self.receipt_to_seeker(
            conversation,
            ReceiptKind::Delivered,
            messages[start..].to_vec(),
            now,
            rng,
        )
        .map(Some)
    }

    /// The receipt telling the seeker a counselor opened the case on this
    /// device, when the seeker's latest message has not had one from this
    /// device yet; `None` otherwise (or when a colleague holds the case).
    pub fn read_receipt(
        &mut self,
        conversation: &MailboxId,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Option<Envelope>, Error> {
        let me = self.device()?.id;
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        if matches!(conv.status, Status::Claimed(d) if d != me) {
            return Ok(None);
        }
        let Some(latest) = conv
            .history
            .iter()
            .rev()
            .find(|e| e.author == Author::Seeker)
            .map(|e| e.id)
        else {
            return Ok(None);
        };
        if conv.read_receipt_for == Some(latest) {
            return Ok(None);
        }
        let env =
            self.receipt_to_seeker(conversation, ReceiptKind::Read, vec![latest], now, rng)?;
        if let Some(c) = self.conversations.get_mut(conversation) {
            c.read_receipt_for = Some(latest);
        }
        Ok(Some(env))
    }

    fn receipt_to_seeker(
        &mut self,
        conversation: &MailboxId,
        kind: ReceiptKind,
        messages: Vec<MessageId>,
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Envelope, Error> {
        self.live_directory(now)?;
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        let (seeker, seeker_mailbox) = (conv.seeker, conv.seeker_mailbox);
        let msg = AppMessage::new(
            MessageId::random(rng),
            now,
            Body::Receipt(Receipt { kind, messages }),
        );
        self.endpoint
            .seal_to(&seeker, &seeker_mailbox, None, &msg, rng)
    }

    fn check_not_claimed_by_other(&self, conversation: &MailboxId) -> Result<(), Error> {
        let me = self.device()?.id;
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        match conv.status {
            Status::Claimed(d) if d != me => Err(ClientError::ClaimedByOther { by: d.0 }.into()),
            _ => Ok(()),
        }
    }

    fn set_status(&mut self, conversation: &MailboxId, status: Status) -> Result<(), Error> {
        let conv = self
            .conversations
            .get_mut(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        conv.status = status;
        Ok(())
    }

    /// Takes the conversation (refused if a colleague holds it).
    pub fn claim(
        &mut self,
        conversation: &MailboxId,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.check_not_claimed_by_other(conversation)?;
        let me = self.device()?.id;
        let out = self.send_team_event(conversation, TeamEventKind::Claim, bundles, now, rng)?;
        self.set_status(conversation, Status::Claimed(me))?;
        Ok(out)
    }

    /// Hands a conversation this device holds (or an open one) to a colleague.
    pub fn hand_off(
        &mut self,
        conversation: &MailboxId,
        to: DeviceId,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.check_not_claimed_by_other(conversation)?;
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        dir.device(to).ok_or(ClientError::unknown_device(to))?;
        let out = self.send_team_event(
            conversation,
            TeamEventKind::HandOff { to },
            bundles,
            now,
            rng,
        )?;
        self.set_status(conversation, Status::Claimed(to))?;
        Ok(out)
    }

    /// Marks the conversation answered and closed.
    pub fn resolve(
        &mut self,
        conversation: &MailboxId,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let out = self.close(conversation, TeamEventKind::Resolve, bundles, now, rng)?;
        self.set_status(conversation, Status::Resolved)?;
        Ok(out)
    }

    /// What resolve and purge share: refused while a colleague holds the
    /// claim; `kind` to the team, then the "resolved" receipt to the seeker.
    fn close(
        &mut self,
        conversation: &MailboxId,
        kind: TeamEventKind,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.check_not_claimed_by_other(conversation)?;
        let mut out = self.send_team_event(conversation, kind, bundles, now, rng)?;
        out.push(self.receipt_to_seeker(
            conversation,
            ReceiptKind::Resolved,
            Vec::new(),
            now,
            rng,
        )?);
        Ok(out)
    }

    /// The attachment blobs `conversation` references (the seeker's files
    /// and the team's), each with the token that deletes it from the relay:
    /// what a purge deletes there first.
    pub fn attachment_blobs(
        &self,
        conversation: &MailboxId,
    ) -> Result<Vec<(BlobId, BlobDeleteToken)>, Error> {
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        let mut out: Vec<(BlobId, BlobDeleteToken)> = Vec::new();
        for e in &conv.history {
            if let EntryKind::Attachment(a) = &e.kind
                && !out.iter().any(|(b, _)| *b == a.blob_id)
            {
                out.push((a.blob_id, a.delete_token()));
            }
        }
        Ok(out)
    }

    /// What a purge of `conversation` deletes on the relay first
    /// ([`Counselor::attachment_blobs`]); refused, like the purge itself,
    /// while a colleague holds the claim, so that nothing is deleted then.
    pub fn purge_blobs(
        &self,
        conversation: &MailboxId,
    ) -> Result<Vec<(BlobId, BlobDeleteToken)>, Error> {
        self.check_not_claimed_by_other(conversation)?;
        self.attachment_blobs(conversation)
    }

    /// Resolves the conversation and deletes it everywhere the team can
    /// reach: the seeker gets the usual "resolved" receipt (it keeps its own
    /// copy until its retention), every colleague's device deletes the
    /// conversation on the `Purge` team event, and this device deletes it
    /// now, as retention does. The shell deletes the attachment blobs on
    /// the relay first ([`Counselor::attachment_blobs`]). Refused while a
    /// colleague holds the claim.
    pub fn purge(
        &mut self,
        conversation: &MailboxId,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let out = self.close(conversation, TeamEventKind::Purge, bundles, now, rng)?;
        self.delete_conversation(conversation);
        Ok(out)
    }

    /// Opens a resolved conversation again.
    pub fn reopen(
        &mut self,
        conversation: &MailboxId,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let mut out =
            self.send_team_event(conversation, TeamEventKind::Reopen, bundles, now, rng)?;
        out.push(self.receipt_to_seeker(
            conversation,
            ReceiptKind::Reopened,
            Vec::new(),
            now,
            rng,
        )?);
        self.set_status(conversation, Status::Open)?;
        Ok(out)
    }

    /// A private note for colleagues (the seeker never sees it).
    pub fn note(
        &mut self,
        conversation: &MailboxId,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        if text.len() > MAX_NOTE_LEN {
            return Err(Error::TooLongToEncode {
                what: "note",
                max: MAX_NOTE_LEN,
                got: text.len(),
            });
        }
        let me = self.device()?.id;
        let text = MessageText::new(text);
        let out = self.send_team_event(
            conversation,
            TeamEventKind::Note { text: text.clone() },
            bundles,
            now,
            rng,
        )?;
        let conv = self
            .conversations
            .get_mut(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        conv.push_note(Note {
            by: me,
            at: sent_at_of(now),
            text,
        });
        Ok(out)
    }

    /// The team's canned answers, oldest first.
    pub fn canned_answers(&self) -> &[CannedAnswer] {
        &self.canned
    }

    /// Replaces an answer with the same title, or appends (bounded).
    fn keep_canned(&mut self, answer: CannedAnswer) {
        self.canned.retain(|c| c.title != answer.title);
        if self.canned.len() >= MAX_CANNED_ANSWERS {
            self.canned.remove(0);
        }
        self.canned.push(answer);
    }

    /// Saves a canned answer and shares it with the colleagues of
    /// `conversation` (the conversation it was written in; the answer is
    /// team-wide). A new answer with an existing title replaces it.
    pub fn add_canned_answer(
        &mut self,
        conversation: &MailboxId,
        title: &str,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        if title.len() > MAX_CANNED_TITLE_LEN || title.trim().is_empty() {
            return Err(Error::TooLongToEncode {
                what: "canned answer title",
                max: MAX_CANNED_TITLE_LEN,
                got: title.len(),
            });
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(Error::TooLongToEncode {
                what: "canned answer",
                max: MAX_TEXT_LEN,
                got: text.len(),
            });
        }
        let answer = CannedAnswer {
            title: MessageText::new(title.trim()),
            text: MessageText::new(text),
        };
        let kind = TeamEventKind::CannedAnswer {
            title: answer.title.clone(),
            text: answer.text.clone(),
        };
        let out = self.send_team_event(conversation, kind, bundles, now, rng)?;
        self.keep_canned(answer);
        Ok(out)
    }

    /// Answers the seeker; colleagues get a copy. Replying to an open
    /// conversation claims it first.
    pub fn reply(
        &mut self,
        conversation: &MailboxId,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let body = Body::Text {
            text: MessageText::new(text),
        };
        self.send_to_seeker(conversation, body, bundles, now, rng)
    }

    /// Sends the seeker a file whose blob is stored in the seeker's
    /// mailbox; colleagues get a copy of the reference.
    pub fn attach(
        &mut self,
        conversation: &MailboxId,
        reference: crate::attachment::AttachmentRef,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.send_to_seeker(conversation, Body::Attachment(reference), bundles, now, rng)
    }

    /// Refers the seeker to a partner organisation of the directory.
    pub fn refer(
        &mut self,
        conversation: &MailboxId,
        partner: PartnerId,
        text: &str,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        let dir = self.directory.as_ref().ok_or(ClientError::NoDirectory)?;
        dir.partner(partner)
            .ok_or(ClientError::unknown_partner(partner))?;
        let body = Body::Referral {
            partner,
            text: MessageText::new(text),
        };
        self.send_to_seeker(conversation, body, bundles, now, rng)
    }

    fn send_to_seeker(
        &mut self,
        conversation: &MailboxId,
        body: Body,
        bundles: &[FetchedBundle],
        now: UnixTime,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Envelope>, Error> {
        self.live_directory(now)?;
        self.check_not_claimed_by_other(conversation)?;
        let me = self.device()?.id;
        let mut out = Vec::new();
        let open = self
            .conversations
            .get(conversation)
            .is_some_and(|c| c.status == Status::Open);
        if open {
            out.extend(self.send_team_event(
                conversation,
                TeamEventKind::Claim,
                bundles,
                now,
                rng,
            )?);
            self.set_status(conversation, Status::Claimed(me))?;
        }
        let conv = self
            .conversations
            .get(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        let (seeker, seeker_mailbox) = (conv.seeker, conv.seeker_mailbox);
        let msg = AppMessage::new(MessageId::random(rng), now, body);
        out.push(
            self.endpoint
                .seal_to(&seeker, &seeker_mailbox, None, &msg, rng)?,
        );
        out.extend(self.send_team_event(
            conversation,
            TeamEventKind::Copy {
                direction: Direction::ToSeeker,
                message: Box::new(msg.clone()),
            },
            bundles,
            now,
            rng,
        )?);
        let entry = Entry::of_message(msg, Author::Counselor(me)).ok_or(ClientError::NotAllowed)?;
        let conv = self
            .conversations
            .get_mut(conversation)
            .ok_or(ClientError::UnknownConversation)?;
        push_entry(&mut conv.history, entry);
        Ok(out)
    }

    /// Saves the whole device (keys, prekeys, sessions, directory, inbox).
    /// The shell encrypts it (see [`crate::state`]).
    ///
    /// ```text
    /// version:u8 (=3) || endpoint:vec32 || has_dir:u8 || [signed_directory:vec32]
    ///   || conversations:u16 || conversation*
    /// conversation = seeker_identity[64] || seeker_mailbox[64] || team:u16 || language:u8
    ///   || status:u8 (0 open, 1 claimed, 2 resolved) || [device:u32] || unread:u8
    ///   || history:u16 || entry* || notes:u16 || (by:u32 || at:u64 || text:str16)*
    ///   || has_kept:u8 || [kept_until:u64] || has_read_receipt:u8 || [message_id[16]]
    ///   || answers (intake::IntakeAnswers::write)
    /// then: canned:u16 || (title:str16 || text:str16)*
    ///   || tombstones:u16 || mailbox_id[32]*
    ///   || keep_log:u16 || (conversation[32] || by:u32 || at:u64 || until:u64 || reason:str16)*
    /// ```
    pub fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let mut w = Writer::new();
        w.u8(COUNSELOR_STATE_VERSION);
        w.vec_u32(
            &self.endpoint.encode()?,
            crate::state::MAX_LOCAL_STATE_PLAINTEXT_LEN,
            "endpoint",
        )?;
        match &self.directory {
            Some(d) => {
                w.u8(1);
                w.vec_u32(
                    &d.signed().encode(),
                    crate::limits::MAX_DIRECTORY_LEN,
                    "directory",
                )?;
            }
            None => {
                w.u8(0);
            }
        }
        w.count_u16(self.conversations.len(), MAX_CONVERSATIONS, "conversations")?;
        for c in self.conversations.values() {
            c.seeker.write(&mut w);
            c.seeker_mailbox.write(&mut w);
            w.u16(c.team.0).u8(c.language.wire());
            match c.status {
                Status::Open => {
                    w.u8(0);
                }
                Status::Claimed(d) => {
                    w.u8(1).u32(d.0);
                }
                Status::Resolved => {
                    w.u8(2);
                }
            }
            w.u8(u8::from(c.unread));
            w.count_u16(c.history.len(), super::MAX_HISTORY, "history")?;
            for e in &c.history {
                e.write(&mut w)?;
            }
            w.count_u16(c.notes.len(), MAX_NOTES, "notes")?;
            for n in &c.notes {
                w.u32(n.by.0).u64(n.at.0);
                w.vec_u16(n.text.as_str().as_bytes(), MAX_NOTE_LEN, "note")?;
            }
            match c.kept_until {
                None => {
                    w.u8(0);
                }
                Some(t) => {
                    w.u8(1).u64(t.0);
                }
            }
            match c.read_receipt_for {
                None => {
                    w.u8(0);
                }
                Some(id) => {
                    w.u8(1).bytes(&id.0);
                }
            }
            c.answers.write(&mut w)?;
        }
        w.count_u16(self.canned.len(), MAX_CANNED_ANSWERS, "canned answers")?;
        for c in &self.canned {
            w.vec_u16(
                c.title.as_str().as_bytes(),
                MAX_CANNED_TITLE_LEN,
                "canned title",
            )?;
            w.vec_u16(c.text.as_str().as_bytes(), MAX_TEXT_LEN, "canned text")?;
        }
        w.count_u16(self.tombstones.len(), MAX_TOMBSTONES, "tombstones")?;
        for t in &self.tombstones {
            w.bytes(t.as_bytes());
        }
        w.count_u16(self.keep_log.len(), MAX_KEEP_LOG, "keep log")?;
        for k in &self.keep_log {
            w.bytes(k.conversation.as_bytes())
                .u32(k.by.0)
                .u64(k.at.0)
                .u64(k.until.0);
            w.vec_u16(
                k.reason.as_str().as_bytes(),
                MAX_KEEP_REASON_LEN,
                "keep reason",
            )?;
        }
        Ok(zeroize::Zeroizing::new(w.into_bytes()))
    }

    /// Restores what [`Counselor::encode`] saved; the directory is verified
    /// again against the pinned key (whatever its expiry: an expired one is
    /// refused when used, and replaced at the next sync).
    pub fn decode(bytes: &[u8], pinned: &OrgPublicKey) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        r.version(COUNSELOR_STATE_VERSION, "counselor state")?;
        let endpoint =
            Endpoint::decode(r.vec_u32(crate::state::MAX_LOCAL_STATE_PLAINTEXT_LEN, "endpoint")?)?;
        let directory = match r.u8("has directory")? {
            0 => None,
            1 => Some(
                SignedDirectory::decode(r.vec_u32(crate::limits::MAX_DIRECTORY_LEN, "directory")?)?
                    .verify_stored(pinned)?,
            ),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "has directory",
                    tag,
                }
                .into());
            }
        };
        let n = r.count_u16(MAX_CONVERSATIONS, "conversations")?;
        let mut conversations = BTreeMap::new();
        for _ in 0..n {
            let seeker = IdentityPublic::read(&mut r)?;
            let seeker_mailbox = MailboxPublic::read(&mut r)?;
            let team = TeamId(r.u16("team")?);
            let language = Language::from_wire(r.u8("language")?)?;
            let status = match r.u8("status")? {
                0 => Status::Open,
                1 => Status::Claimed(DeviceId(r.u32("claimed by")?)),
                2 => Status::Resolved,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "status",
                        tag,
                    }
                    .into());
                }
            };
            let unread = match r.u8("unread")? {
                0 => false,
                1 => true,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "unread",
                        tag,
                    }
                    .into());
                }
            };
            let h = r.count_u16(super::MAX_HISTORY, "history")?;
            let mut history = Vec::with_capacity(h);
            for _ in 0..h {
                history.push(Entry::read(&mut r)?);
            }
            let k = r.count_u16(MAX_NOTES, "notes")?;
            let mut notes = Vec::with_capacity(k);
            for _ in 0..k {
                let by = DeviceId(r.u32("note by")?);
                let at = UnixTime(r.u64("note at")?);
                let text = MessageText::new(r.str_u16(MAX_NOTE_LEN, "note")?);
                notes.push(Note { by, at, text });
            }
            let kept_until = match r.u8("has kept")? {
                0 => None,
                1 => Some(UnixTime(r.u64("kept until")?)),
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "has kept",
                        tag,
                    }
                    .into());
                }
            };
            let read_receipt_for = match r.u8("has read receipt")? {
                0 => None,
                1 => Some(MessageId(r.array("read receipt for")?)),
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "has read receipt",
                        tag,
                    }
                    .into());
                }
            };
            let answers = IntakeAnswers::read(&mut r)?;
            conversations.insert(
                seeker_mailbox.id(),
                Conversation {
                    seeker,
                    seeker_mailbox,
                    team,
                    language,
                    status,
                    history,
                    notes,
                    unread,
                    kept_until,
                    read_receipt_for,
                    answers,
                },
            );
        }
        let k = r.count_u16(MAX_CANNED_ANSWERS, "canned answers")?;
        let mut canned = Vec::with_capacity(k);
        for _ in 0..k {
            let title = MessageText::new(r.str_u16(MAX_CANNED_TITLE_LEN, "canned title")?);
            let text = MessageText::new(r.str_u16(MAX_TEXT_LEN, "canned text")?);
            canned.push(CannedAnswer { title, text });
        }
        let t = r.count_u16(MAX_TOMBSTONES, "tombstones")?;
        let mut tombstones = VecDeque::with_capacity(t);
        for _ in 0..t {
            tombstones.push_back(MailboxId::from_bytes(r.array("tombstone")?));
        }
        let k = r.count_u16(MAX_KEEP_LOG, "keep log")?;
        let mut keep_log = VecDeque::with_capacity(k);
        for _ in 0..k {
            keep_log.push_back(KeepRecord {
                conversation: MailboxId::from_bytes(r.array("kept conversation")?),
                by: DeviceId(r.u32("kept by")?),
                at: UnixTime(r.u64("kept at")?),
                until: UnixTime(r.u64("kept until")?),
                reason: MessageText::new(r.str_u16(MAX_KEEP_REASON_LEN, "keep reason")?),
            });
        }
        r.finish("counselor state")?;
        Ok(Counselor {
            canned,
            endpoint,
            directory,
            conversations,
            tombstones,
            keep_log,
        })
    }
}
