//! The client layer every Northstar client runs: what a seeker and a
//! counselor device *do* with the protocol pieces, without any I/O.
//!
//! - [`endpoint`] — one party's keys and its ratchet sessions with peers:
//!   seal a message to a peer (starting a session from a prekey bundle with
//!   PQXDH when there is none yet), open an envelope, drop duplicates.
//! - [`seeker`] — the seeker: keys from the codename, one conversation with
//!   the organisation's intake set, state saved as a blob under the codename.
//! - [`counselor`] — a counselor device: prekeys, the team inbox
//!   (conversations, claims, hand-offs, notes, resolution, referrals), team
//!   state shared with colleagues' devices as end-to-end encrypted messages.
//! - [`search`] — search in the counselor inbox over what the device has
//!   decrypted (folded, accent-insensitive, in memory only).
//!
//! The shell (CLI, browser) moves the bytes: it fetches prekey bundles and
//! directories from the relay, deposits the [`Envelope`]s these functions
//! return, hands received envelopes back in, and stores the saved state.
//!
//! [`Envelope`]: crate::sealed::Envelope

pub mod counselor;
pub mod endpoint;
pub mod inbox;
#[cfg(test)]
mod purge_tests;
pub mod saved;
pub mod search;
pub mod seeker;
#[cfg(test)]
mod status_tests;
#[cfg(test)]
pub(crate) mod tests;

use crate::directory::{DeviceId, PartnerId};
use crate::ids::MailboxId;

/// What went wrong in the client layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// A message to a peer with no session and no prekey bundle given.
    #[error("no session with that device and no prekey bundle for it")]
    NoSession,
    /// An envelope from a sender we have no session with (and not a session start).
    #[error("message from an unknown sender")]
    UnknownSender,
    /// A session start addressed to a client that has no prekeys (a seeker).
    #[error("session start refused: this client accepts no new sessions")]
    NoPrekeys,
    /// A session start naming prekeys we do not have.
    #[error("session start names unknown prekey {which} {id}")]
    UnknownPrekey { which: &'static str, id: u32 },
    /// The seeker has not started a conversation yet.
    #[error("no conversation yet")]
    NoConversation,
    /// The seeker already has a conversation under this codename.
    #[error("a conversation already exists for this codename")]
    ConversationExists,
    /// A conversation this device does not know.
    #[error("unknown conversation")]
    UnknownConversation,
    /// The directory lists no such team.
    #[error("unknown team {team}")]
    UnknownTeam { team: u16 },
    /// The directory lists no such device.
    #[error("unknown device {device}")]
    UnknownDevice { device: u32 },
    /// The directory lists no such partner organisation.
    #[error("unknown partner {partner}")]
    UnknownPartner { partner: u16 },
    /// No directory loaded yet.
    #[error("no verified directory loaded")]
    NoDirectory,
    /// This device is not in the directory (the administrator has not added it).
    #[error("this device is not in the directory")]
    NotInDirectory,
    /// A prekey bundle for an intake device is missing.
    #[error("missing prekey bundle for a device")]
    MissingBundle { mailbox: MailboxId },
    /// Another device has claimed the conversation.
    #[error("the conversation is claimed by device {by}")]
    ClaimedByOther { by: u32 },
    /// A message about a conversation from another seeker identity than the
    /// one the conversation belongs to (conversations are keyed by identity
    /// and mailbox together).
    #[error("message from another identity than the conversation's seeker")]
    WrongSeeker,
    /// A message for a conversation the seeker deleted (a replayed opening).
    #[error("message for a deleted conversation")]
    Deleted,
    /// A message from a counselor device the current directory does not
    /// list (removed by the administrator, or never added): a seeker takes
    /// nothing from it, a device no team event.
    #[error("message from a device the directory does not list")]
    UnlistedSender,
    /// The directory lists no device that would receive the seeker's message.
    #[error("no counselor device receives this conversation now")]
    NoRecipients,
    /// The message is not allowed from this sender (e.g. a seeker sending team events).
    #[error("message type not allowed from this sender")]
    NotAllowed,
    /// Saved state that does not decode.
    #[error("saved state is malformed")]
    BadState,
}

impl ClientError {
    pub(crate) fn unknown_device(d: DeviceId) -> Self {
        ClientError::UnknownDevice { device: d.0 }
    }
    pub(crate) fn unknown_partner(p: PartnerId) -> Self {
        ClientError::UnknownPartner { partner: p.0 }
    }
}

/// A prekey bundle as the relay hands it out: the signed bundle and, while
/// the device has any left, one one-time prekey of each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedBundle {
    /// The device mailbox the bundle belongs to.
    pub mailbox: MailboxId,
    /// An encoded [`crate::pqxdh::SignedPreKeyBundle`].
    pub signed_bundle: Vec<u8>,
    /// An encoded [`crate::keys::OneTimePreKeyPublic`] (36 bytes), if any.
    pub one_time: Option<[u8; crate::keys::ONE_TIME_PREKEY_PUBLIC_LEN]>,
    /// An encoded [`crate::pqxdh::OneTimePqPreKeyPublic`] (1252 bytes,
    /// signed by the device), if any.
    pub one_time_pq: Option<Vec<u8>>,
}

use crate::UnixTime;
use crate::error::DecodeError;
use crate::ids::MessageId;
use crate::message::{MAX_TEXT_LEN, MessageText};
use crate::wire::{Reader, Writer};

/// Who wrote an entry of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    Seeker,
    Counselor(DeviceId),
}

/// What an entry says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Text(MessageText),
    /// A file (docs/PROTOCOL.md §5.6): fetched and opened on demand.
    Attachment(crate::attachment::AttachmentRef),
    Referral {
        partner: PartnerId,
        text: MessageText,
    },
}

/// One message of a conversation, as both sides show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: MessageId,
    pub at: UnixTime,
    pub author: Author,
    pub kind: EntryKind,
}

/// Most entries a conversation keeps in saved state (the oldest go first).
/// A long advice conversation has tens of messages; 2,000 bounds the state.
pub const MAX_HISTORY: usize = 2000;

impl Entry {
    /// The entry a seeker-facing message (text or referral) makes; `None`
    /// for any other body.
    pub(crate) fn of_message(msg: crate::message::AppMessage, author: Author) -> Option<Entry> {
        use crate::message::Body;
        let kind = match msg.body {
            Body::Text { text } => EntryKind::Text(text),
            Body::Referral { partner, text } => EntryKind::Referral { partner, text },
            Body::Attachment(a) => EntryKind::Attachment(a),
            _ => return None,
        };
        Some(Entry {
            id: msg.id,
            at: msg.sent_at,
            author,
            kind,
        })
    }

    /// `id[16] || at:u64 || author:u8 (0 seeker, 1 counselor) || [device:u32]
    ///  || kind:u8 (1 text, 2 referral, 3 attachment) || [partner:u16] || text:str16`
    ///  (kind 3: `attachment_ref` instead of the text, docs/PROTOCOL.md §5.6.2)
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), crate::Error> {
        w.bytes(&self.id.0).u64(self.at.0);
        match self.author {
            Author::Seeker => {
                w.u8(0);
            }
            Author::Counselor(d) => {
                w.u8(1).u32(d.0);
            }
        }
        match &self.kind {
            EntryKind::Text(t) => {
                w.u8(1);
                w.vec_u16(t.as_str().as_bytes(), MAX_TEXT_LEN, "entry text")?;
            }
            EntryKind::Referral { partner, text } => {
                w.u8(2).u16(partner.0);
                w.vec_u16(text.as_str().as_bytes(), MAX_TEXT_LEN, "entry text")?;
            }
            EntryKind::Attachment(a) => {
                w.u8(3);
                a.write(w)?;
            }
        }
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = MessageId(r.array("entry id")?);
        let at = UnixTime(r.u64("entry time")?);
        let author = match r.u8("entry author")? {
            0 => Author::Seeker,
            1 => Author::Counselor(DeviceId(r.u32("entry device")?)),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "entry author",
                    tag,
                });
            }
        };
        let kind = match r.u8("entry kind")? {
            1 => EntryKind::Text(MessageText::new(r.str_u16(MAX_TEXT_LEN, "entry text")?)),
            2 => {
                let partner = PartnerId(r.u16("entry partner")?);
                EntryKind::Referral {
                    partner,
                    text: MessageText::new(r.str_u16(MAX_TEXT_LEN, "entry text")?),
                }
            }
            3 => EntryKind::Attachment(crate::attachment::AttachmentRef::read(r)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "entry kind",
                    tag,
                });
            }
        };
        Ok(Entry {
            id,
            at,
            author,
            kind,
        })
    }
}

/// Appends `entry` unless an entry with its id is there; keeps at most
/// [`MAX_HISTORY`]. Returns whether it was added.
pub(crate) fn push_entry(history: &mut Vec<Entry>, entry: Entry) -> bool {
    if history.iter().any(|e| e.id == entry.id) {
        return false;
    }
    history.push(entry);
    if history.len() > MAX_HISTORY {
        let excess = history.len() - MAX_HISTORY;
        history.drain(..excess);
    }
    true
}
