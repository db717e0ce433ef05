//! The application messages carried inside the Double Ratchet
//! (docs/PROTOCOL.md §"Application messages").
//!
//! The relay never sees these: they are the plaintext of a ratchet message,
//! which is padded and sealed before it leaves the device. Two families:
//!
//! - between a seeker and the team: [`Body::Opening`] (the first message,
//!   which names the chosen team *inside* the ciphertext, so the relay does
//!   not learn the topic), [`Body::Text`], [`Body::Referral`] and
//!   [`Body::DeleteRequest`];
//! - between counselor devices of one organisation: [`Body::Team`], the
//!   team state (claims, hand-offs, statuses, private notes, copies of what a
//!   colleague sent or received, canned answers). A client must ignore a
//!   `Team` body that does not come from a device of its own directory.
//!
//! ```text
//! app_message = version:u8 (=2) || id[16] || sent_at:u64 (multiple of 60) || body
//! body        = tag:u8 || fields            (see AppMessage::encode)
//! ```

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::UnixTime;
use crate::error::{DecodeError, Error};
pub use crate::ids::Language;
use crate::ids::{DeviceId, PartnerId, TeamId};
use crate::ids::{MailboxId, MessageId};
use crate::intake::{IntakeAnswers, MAX_ANSWERS_LEN};
use crate::wire::{Reader, Writer};

/// Version byte of an application message (2: the opening carries the
/// intake answers).
pub const MESSAGE_VERSION: u8 = 2;

/// Largest encoded application message: exactly what one Double Ratchet
/// message can carry ([`crate::ratchet::MAX_PLAINTEXT_LEN`], a little under
/// 60 000 bytes), so every message we encode can be sent as one ratchet
/// message inside the largest sealed-sender padding bucket.
pub const MAX_APP_MESSAGE_LEN: usize = crate::ratchet::MAX_PLAINTEXT_LEN;

/// Longest message text in UTF-8 bytes (16 KiB: several pages of a letter,
/// between 5 000 and 16 000 characters depending on the script). Long enough
/// for anyone's story, short enough that a copy of it wrapped in a team
/// event still fits [`MAX_APP_MESSAGE_LEN`] with room to spare.
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// Longest private note between counselors (same reasoning as [`MAX_TEXT_LEN`]).
pub const MAX_NOTE_LEN: usize = MAX_TEXT_LEN;

/// Longest canned-answer title in UTF-8 bytes: a line in a picker.
pub const MAX_CANNED_TITLE_LEN: usize = 200;

/// Most seeker message ids one receipt names: more than a seeker sends in
/// one visit ([`crate::client::seeker::MAX_PENDING`] waiting plus the one
/// written), so one receipt per conversation per sync covers what arrived;
/// a device back after a long absence names the newest ones (the seeker
/// only looks at its latest message).
pub const MAX_RECEIPT_IDS: usize = 32;

/// Longest reason a counselor gives for keeping a case past the
/// organisation's retention, in UTF-8 bytes: a sentence or two for the log.
pub const MAX_KEEP_REASON_LEN: usize = 500;

/// Precision of a "keep until" time: the hour, like the retention.
pub const KEEP_UNTIL_PRECISION_SECS: u64 = 3600;

/// `sent_at` precision in seconds: minutes are enough to order a
/// conversation, and coarser times say less if a device is seized.
pub const SENT_AT_PRECISION_SECS: u64 = 60;

/// `now` floored to [`SENT_AT_PRECISION_SECS`]: the time a message (or a
/// note kept with one) carries.
pub fn sent_at_of(now: UnixTime) -> UnixTime {
    UnixTime(now.0 - now.0 % SENT_AT_PRECISION_SECS)
}

/// Fixed part of an encoded message: version, id, sent_at, body tag.
const HEADER_LEN: usize = 1 + 16 + 8 + 1;

/// The largest possible encoding (a canned answer or a copy of a maximal
/// referral wrapped in a team event), checked at compile time against
/// [`MAX_APP_MESSAGE_LEN`].
const WORST_CASE_LEN: usize = {
    let team_event = 32 + 4 + 1;
    let canned = 2 + MAX_CANNED_TITLE_LEN + 2 + MAX_TEXT_LEN;
    let copy = 1 + HEADER_LEN + 2 + 1 + MAX_ANSWERS_LEN + 2 + MAX_TEXT_LEN;
    let biggest = if canned > copy { canned } else { copy };
    HEADER_LEN + team_event + biggest
};
const _: () = assert!(WORST_CASE_LEN <= MAX_APP_MESSAGE_LEN);
// A copied attachment reference is far smaller than a copied text.
const _: () = assert!(crate::attachment::MAX_REF_LEN < MAX_TEXT_LEN);

/// Text someone wrote. Zeroized on drop; `Debug` prints only its length, so
/// a message can be logged in a test failure without its content.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MessageText(String);

impl fmt::Debug for MessageText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageText(len={})", self.0.len())
    }
}

impl MessageText {
    pub fn new(text: impl Into<String>) -> Self {
        MessageText(text.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for MessageText {
    fn from(s: &str) -> Self {
        MessageText(s.to_owned())
    }
}

/// Which way a copied message went, seen from the team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// The seeker wrote it (a colleague's device received it).
    FromSeeker = 1,
    /// A colleague wrote it to the seeker.
    ToSeeker = 2,
}

/// One application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppMessage {
    /// Chosen at random by the sender; receivers drop a second copy.
    pub id: MessageId,
    /// When it was written, floored to the minute.
    pub sent_at: UnixTime,
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The seeker's first message. `team` is the topic they chose; it travels
    /// here, inside the ciphertext, never in anything the relay sees, with
    /// the answers to the team's intake questions (skipped ones absent).
    Opening {
        team: TeamId,
        language: Language,
        answers: IntakeAnswers,
        text: MessageText,
    },
    /// A message in the conversation, either way.
    Text { text: MessageText },
    /// A counselor refers the seeker to a partner organisation of the directory.
    Referral {
        partner: PartnerId,
        text: MessageText,
    },
    /// The seeker asks the team to delete the conversation.
    DeleteRequest,
    /// Team state between counselor devices (never sent to a seeker).
    Team(TeamEvent),
    /// A file, either way: where its encrypted blob is on the relay, the
    /// key, the digest, the name and the type (docs/PROTOCOL.md §5.6). Sent
    /// only once the whole blob is stored.
    Attachment(crate::attachment::AttachmentRef),
    /// A counselor device tells the seeker where their conversation stands
    /// (docs/PROTOCOL.md §6.6). Sent through the ratchet like any
    /// message, so the relay can neither read nor forge one; the seeker
    /// takes it only from a device of the directory it accepted last.
    Receipt(Receipt),
}

/// What a receipt says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReceiptKind {
    /// The sending device received the seeker messages named.
    Delivered = 1,
    /// A counselor opened the case on the sending device after the seeker
    /// messages named had arrived.
    Read = 2,
    /// The team marked the conversation answered and closed.
    Resolved = 3,
    /// The team opened a resolved conversation again.
    Reopened = 4,
}

impl ReceiptKind {
    fn from_wire(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            1 => ReceiptKind::Delivered,
            2 => ReceiptKind::Read,
            3 => ReceiptKind::Resolved,
            4 => ReceiptKind::Reopened,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "receipt kind",
                    tag,
                });
            }
        })
    }

    /// Whether this kind names seeker messages (delivered, read) or none
    /// (resolved, reopened).
    fn names_messages(self) -> bool {
        matches!(self, ReceiptKind::Delivered | ReceiptKind::Read)
    }
}

/// A receipt: its kind and the seeker messages it is about — between 1 and
/// [`MAX_RECEIPT_IDS`] for delivered and read, none for resolved and
/// reopened (anything else is refused both ways).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub kind: ReceiptKind,
    pub messages: Vec<MessageId>,
}

impl Receipt {
    fn check(&self) -> Result<(), DecodeError> {
        let n = self.messages.len();
        let ok = if self.kind.names_messages() {
            (1..=MAX_RECEIPT_IDS).contains(&n)
        } else {
            n == 0
        };
        if ok {
            Ok(())
        } else {
            Err(DecodeError::Invalid {
                what: "receipt message count",
            })
        }
    }
}

/// A change to the team's view of one conversation, made by one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamEvent {
    /// The seeker's mailbox: how devices name a conversation.
    pub conversation: MailboxId,
    /// The device that made the change.
    pub by: DeviceId,
    pub kind: TeamEventKind,
}

/// The kinds of team event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamEventKind {
    /// `by` takes the conversation.
    Claim,
    /// `by` hands the conversation to device `to`.
    HandOff { to: DeviceId },
    /// The conversation is answered and closed.
    Resolve,
    /// A resolved conversation is open again.
    Reopen,
    /// A private note for colleagues; the seeker never sees it.
    Note { text: MessageText },
    /// A copy of a message the seeker sent to, or received from, `by`, so
    /// every device shows the whole conversation. The copied message is a
    /// seeker-facing one (never itself a `Team` body).
    Copy {
        direction: Direction,
        message: Box<AppMessage>,
    },
    /// A reusable answer shared with the team.
    CannedAnswer {
        title: MessageText,
        text: MessageText,
    },
    /// `by` keeps the conversation past the organisation's retention until
    /// `until` (on the hour), for `reason`: an explicit choice every device
    /// of the team logs.
    Keep {
        until: UnixTime,
        reason: MessageText,
    },
    /// `by` resolved the conversation and deleted it: every device of the
    /// team deletes it as retention does (messages, notes, sessions,
    /// queued envelopes; a tombstone refuses a replayed opening) and asks
    /// the relay to delete every attachment blob it references
    /// (docs/PROTOCOL.md §6.7). An explicit, confirmed choice.
    Purge,
}

mod tag {
    pub const OPENING: u8 = 1;
    pub const TEXT: u8 = 2;
    pub const REFERRAL: u8 = 3;
    pub const DELETE_REQUEST: u8 = 4;
    pub const TEAM: u8 = 5;
    pub const RECEIPT: u8 = 6;
    pub const ATTACHMENT: u8 = 7;

    pub const CLAIM: u8 = 1;
    pub const HAND_OFF: u8 = 2;
    pub const RESOLVE: u8 = 3;
    pub const REOPEN: u8 = 4;
    pub const NOTE: u8 = 5;
    pub const COPY: u8 = 6;
    pub const CANNED_ANSWER: u8 = 7;
    pub const KEEP: u8 = 8;
    pub const PURGE: u8 = 9;
}

impl AppMessage {
    /// A message written at `now` (floored to the minute).
    pub fn new(id: MessageId, now: UnixTime, body: Body) -> Self {
        AppMessage {
            id,
            sent_at: sent_at_of(now),
            body,
        }
    }

    /// Encodes the message.
    ///
    /// ```text
    /// version:u8 (=2) || id[16] || sent_at:u64 || body_tag:u8 || body
    ///   1 Opening       team:u16 || language:u8 || answers || text:str16
    ///                   (answers: intake::IntakeAnswers::write)
    ///   2 Text          text:str16
    ///   3 Referral      partner:u16 || text:str16
    ///   4 DeleteRequest (nothing)
    ///   5 Team          conversation[32] || by:u32 || kind_tag:u8 || kind
    ///       1 Claim, 3 Resolve, 4 Reopen, 9 Purge   (nothing)
    ///       2 HandOff        to:u32
    ///       5 Note           text:str16
    ///       6 Copy           direction:u8 (1 from seeker, 2 to seeker) || app_message (tags 1–4, 7)
    ///       7 CannedAnswer   title:str16 || text:str16
    ///       8 Keep           until:u64 (on the hour) || reason:str16 (≤ 500)
    ///   6 Receipt       kind:u8 (1 delivered, 2 read, 3 resolved, 4 reopened)
    ///                   || count:u8 || message_id[16]*count
    ///                   (count 1..=32 for delivered and read, 0 otherwise)
    ///   7 Attachment    attachment_ref (docs/PROTOCOL.md §5.6)
    /// str16 = len:u16 || UTF-8[len]
    /// ```
    /// Errors if `sent_at` is not on a minute, a text is over its maximum,
    /// or a copy nests a team event.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        self.write(&mut w, true)?;
        if w.len() > MAX_APP_MESSAGE_LEN {
            return Err(Error::TooLongToEncode {
                what: "application message",
                max: MAX_APP_MESSAGE_LEN,
                got: w.len(),
            });
        }
        Ok(w.into_bytes())
    }

    fn write(&self, w: &mut Writer, allow_team: bool) -> Result<(), Error> {
        if !self.sent_at.0.is_multiple_of(SENT_AT_PRECISION_SECS) {
            return Err(Error::Decode(DecodeError::Invalid {
                what: "sent_at (not on a minute)",
            }));
        }
        w.u8(MESSAGE_VERSION).bytes(&self.id.0).u64(self.sent_at.0);
        match &self.body {
            Body::Opening {
                team,
                language,
                answers,
                text,
            } => {
                w.u8(tag::OPENING).u16(team.0).u8(language.wire());
                answers.write(w)?;
                w.vec_u16(text.as_str().as_bytes(), MAX_TEXT_LEN, "message text")?;
            }
            Body::Text { text } => {
                w.u8(tag::TEXT);
                w.vec_u16(text.as_str().as_bytes(), MAX_TEXT_LEN, "message text")?;
            }
            Body::Referral { partner, text } => {
                w.u8(tag::REFERRAL).u16(partner.0);
                w.vec_u16(text.as_str().as_bytes(), MAX_TEXT_LEN, "referral text")?;
            }
            Body::DeleteRequest => {
                w.u8(tag::DELETE_REQUEST);
            }
            Body::Receipt(receipt) => {
                receipt.check()?;
                w.u8(tag::RECEIPT)
                    .u8(receipt.kind as u8)
                    .u8(receipt.messages.len() as u8);
                for id in &receipt.messages {
                    w.bytes(&id.0);
                }
            }
            Body::Attachment(a) => {
                w.u8(tag::ATTACHMENT);
                a.write(w)?;
            }
            Body::Team(ev) => {
                if !allow_team {
                    return Err(Error::Decode(DecodeError::Invalid {
                        what: "team event inside a copy",
                    }));
                }
                w.u8(tag::TEAM)
                    .bytes(ev.conversation.as_bytes())
                    .u32(ev.by.0);
                match &ev.kind {
                    TeamEventKind::Claim => {
                        w.u8(tag::CLAIM);
                    }
                    TeamEventKind::HandOff { to } => {
                        w.u8(tag::HAND_OFF).u32(to.0);
                    }
                    TeamEventKind::Resolve => {
                        w.u8(tag::RESOLVE);
                    }
                    TeamEventKind::Reopen => {
                        w.u8(tag::REOPEN);
                    }
                    TeamEventKind::Purge => {
                        w.u8(tag::PURGE);
                    }
                    TeamEventKind::Note { text } => {
                        w.u8(tag::NOTE);
                        w.vec_u16(text.as_str().as_bytes(), MAX_NOTE_LEN, "note text")?;
                    }
                    TeamEventKind::Copy { direction, message } => {
                        w.u8(tag::COPY).u8(*direction as u8);
                        message.write(w, false)?;
                    }
                    TeamEventKind::CannedAnswer { title, text } => {
                        w.u8(tag::CANNED_ANSWER);
                        w.vec_u16(
                            title.as_str().as_bytes(),
                            MAX_CANNED_TITLE_LEN,
                            "canned answer title",
                        )?;
                        w.vec_u16(text.as_str().as_bytes(), MAX_TEXT_LEN, "canned answer text")?;
                    }
                    TeamEventKind::Keep { until, reason } => {
                        if !until.0.is_multiple_of(KEEP_UNTIL_PRECISION_SECS) {
                            return Err(Error::Decode(DecodeError::Invalid {
                                what: "keep until (not on the hour)",
                            }));
                        }
                        w.u8(tag::KEEP).u64(until.0);
                        w.vec_u16(
                            reason.as_str().as_bytes(),
                            MAX_KEEP_REASON_LEN,
                            "keep reason",
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Strictly decodes one message (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_APP_MESSAGE_LEN {
            return Err(DecodeError::TooLong {
                what: "application message",
                max: MAX_APP_MESSAGE_LEN,
                got: bytes.len(),
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        let m = Self::read(&mut r, true)?;
        r.finish("application message")?;
        Ok(m)
    }

    fn read(r: &mut Reader<'_>, allow_team: bool) -> Result<Self, DecodeError> {
        r.version(MESSAGE_VERSION, "application message")?;
        let id = MessageId(r.array("message id")?);
        let sent_at = r.u64("sent_at")?;
        if !sent_at.is_multiple_of(SENT_AT_PRECISION_SECS) {
            return Err(DecodeError::Invalid {
                what: "sent_at (not on a minute)",
            });
        }
        let body = match r.u8("body tag")? {
            tag::OPENING => Body::Opening {
                team: TeamId(r.u16("team id")?),
                language: Language::from_wire(r.u8("language")?)?,
                answers: IntakeAnswers::read(r)?,
                text: read_text(r, MAX_TEXT_LEN, "message text")?,
            },
            tag::TEXT => Body::Text {
                text: read_text(r, MAX_TEXT_LEN, "message text")?,
            },
            tag::REFERRAL => Body::Referral {
                partner: PartnerId(r.u16("partner id")?),
                text: read_text(r, MAX_TEXT_LEN, "referral text")?,
            },
            tag::DELETE_REQUEST => Body::DeleteRequest,
            tag::RECEIPT => {
                let kind = ReceiptKind::from_wire(r.u8("receipt kind")?)?;
                let n = usize::from(r.u8("receipt count")?);
                if n > MAX_RECEIPT_IDS {
                    return Err(DecodeError::TooLong {
                        what: "receipt message ids",
                        max: MAX_RECEIPT_IDS,
                        got: n,
                    });
                }
                let mut messages = Vec::with_capacity(n);
                for _ in 0..n {
                    messages.push(MessageId(r.array("receipt message id")?));
                }
                let receipt = Receipt { kind, messages };
                receipt.check()?;
                Body::Receipt(receipt)
            }
            tag::ATTACHMENT => Body::Attachment(crate::attachment::AttachmentRef::read(r)?),
            tag::TEAM if allow_team => {
                let conversation = MailboxId::from_bytes(r.array("conversation")?);
                let by = DeviceId(r.u32("device id")?);
                let kind = match r.u8("team event tag")? {
                    tag::CLAIM => TeamEventKind::Claim,
                    tag::HAND_OFF => TeamEventKind::HandOff {
                        to: DeviceId(r.u32("device id")?),
                    },
                    tag::RESOLVE => TeamEventKind::Resolve,
                    tag::REOPEN => TeamEventKind::Reopen,
                    tag::PURGE => TeamEventKind::Purge,
                    tag::NOTE => TeamEventKind::Note {
                        text: read_text(r, MAX_NOTE_LEN, "note text")?,
                    },
                    tag::COPY => {
                        let direction = match r.u8("direction")? {
                            1 => Direction::FromSeeker,
                            2 => Direction::ToSeeker,
                            t => {
                                return Err(DecodeError::UnknownTag {
                                    what: "direction",
                                    tag: t,
                                });
                            }
                        };
                        TeamEventKind::Copy {
                            direction,
                            message: Box::new(AppMessage::read(r, false)?),
                        }
                    }
                    tag::CANNED_ANSWER => TeamEventKind::CannedAnswer {
                        title: read_text(r, MAX_CANNED_TITLE_LEN, "canned answer title")?,
                        text: read_text(r, MAX_TEXT_LEN, "canned answer text")?,
                    },
                    tag::KEEP => {
                        let until = r.u64("keep until")?;
                        if !until.is_multiple_of(KEEP_UNTIL_PRECISION_SECS) {
                            return Err(DecodeError::Invalid {
                                what: "keep until (not on the hour)",
                            });
                        }
                        TeamEventKind::Keep {
                            until: UnixTime(until),
                            reason: read_text(r, MAX_KEEP_REASON_LEN, "keep reason")?,
                        }
                    }
                    t => {
                        return Err(DecodeError::UnknownTag {
                            what: "team event",
                            tag: t,
                        });
                    }
                };
                Body::Team(TeamEvent {
                    conversation,
                    by,
                    kind,
                })
            }
            tag::TEAM => {
                return Err(DecodeError::Invalid {
                    what: "team event inside a copy",
                });
            }
            t => {
                return Err(DecodeError::UnknownTag {
                    what: "message body",
                    tag: t,
                });
            }
        };
        Ok(AppMessage {
            id,
            sent_at: UnixTime(sent_at),
            body,
        })
    }
}

fn read_text(
    r: &mut Reader<'_>,
    max: usize,
    what: &'static str,
) -> Result<MessageText, DecodeError> {
    Ok(MessageText(r.str_u16(max, what)?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn id(b: u8) -> MessageId {
        MessageId([b; 16])
    }

    /// One message of every body and team-event kind (also used for vectors).
    pub(crate) fn samples() -> Vec<(&'static str, AppMessage)> {
        let t = UnixTime(1_800_000_000);
        let conv = MailboxId::from_bytes([0x42; 32]);
        let seeker_text = AppMessage::new(
            id(9),
            t,
            Body::Text {
                text: "Gracias.".into(),
            },
        );
        let team = |kind| {
            Body::Team(TeamEvent {
                conversation: conv,
                by: DeviceId(7),
                kind,
            })
        };
        vec![
            (
                "opening",
                AppMessage::new(
                    id(1),
                    t,
                    Body::Opening {
                        team: TeamId(1),
                        language: Language::Es,
                        answers: IntakeAnswers::none(),
                        text: "Tengo 17 años y estoy solo en EE. UU.".into(),
                    },
                ),
            ),
            (
                "opening_with_answers",
                AppMessage::new(
                    id(13),
                    t,
                    Body::Opening {
                        team: TeamId(1),
                        language: Language::Ht,
                        answers: crate::intake::tests::sample_answers(),
                        text: "M ap ekri pou yon zanmi ki gen 17 an.".into(),
                    },
                ),
            ),
            (
                "text",
                AppMessage::new(
                    id(2),
                    t,
                    Body::Text {
                        text: "Yes, Canada may be an option.".into(),
                    },
                ),
            ),
            (
                "referral",
                AppMessage::new(
                    id(3),
                    t,
                    Body::Referral {
                        partner: PartnerId(2),
                        text: "They can help with shelter.".into(),
                    },
                ),
            ),
            (
                "delete_request",
                AppMessage::new(id(4), t, Body::DeleteRequest),
            ),
            (
                "team_claim",
                AppMessage::new(id(5), t, team(TeamEventKind::Claim)),
            ),
            (
                "team_hand_off",
                AppMessage::new(id(6), t, team(TeamEventKind::HandOff { to: DeviceId(8) })),
            ),
            (
                "team_resolve",
                AppMessage::new(id(7), t, team(TeamEventKind::Resolve)),
            ),
            (
                "team_reopen",
                AppMessage::new(id(8), t, team(TeamEventKind::Reopen)),
            ),
            (
                "team_note",
                AppMessage::new(
                    id(10),
                    t,
                    team(TeamEventKind::Note {
                        text: "Check STCA exception for family.".into(),
                    }),
                ),
            ),
            (
                "team_copy",
                AppMessage::new(
                    id(11),
                    t,
                    team(TeamEventKind::Copy {
                        direction: Direction::FromSeeker,
                        message: Box::new(seeker_text),
                    }),
                ),
            ),
            (
                "receipt_delivered",
                AppMessage::new(
                    id(13),
                    t,
                    Body::Receipt(Receipt {
                        kind: ReceiptKind::Delivered,
                        messages: vec![id(1), id(9)],
                    }),
                ),
            ),
            (
                "receipt_read",
                AppMessage::new(
                    id(14),
                    t,
                    Body::Receipt(Receipt {
                        kind: ReceiptKind::Read,
                        messages: vec![id(9)],
                    }),
                ),
            ),
            (
                "receipt_resolved",
                AppMessage::new(
                    id(15),
                    t,
                    Body::Receipt(Receipt {
                        kind: ReceiptKind::Resolved,
                        messages: vec![],
                    }),
                ),
            ),
            (
                "team_keep",
                AppMessage::new(
                    id(16),
                    t,
                    team(TeamEventKind::Keep {
                        until: UnixTime(1_810_000_800),
                        reason: "Court date in June.".into(),
                    }),
                ),
            ),
            (
                "attachment",
                AppMessage::new(
                    id(13),
                    t,
                    Body::Attachment(crate::attachment::tests::sample_ref()),
                ),
            ),
            (
                "team_copy_attachment",
                AppMessage::new(
                    id(14),
                    t,
                    team(TeamEventKind::Copy {
                        direction: Direction::ToSeeker,
                        message: Box::new(AppMessage::new(
                            id(15),
                            t,
                            Body::Attachment(crate::attachment::tests::sample_ref()),
                        )),
                    }),
                ),
            ),
            (
                "team_canned_answer",
                AppMessage::new(
                    id(12),
                    t,
                    team(TeamEventKind::CannedAnswer {
                        title: "STCA basics".into(),
                        text: "The Safe Third Country Agreement ...".into(),
                    }),
                ),
            ),
            (
                "team_purge",
                AppMessage::new(id(17), t, team(TeamEventKind::Purge)),
            ),
        ]
    }

    #[test]
    fn every_kind_round_trips_and_is_strict() {
        for (name, m) in samples() {
            let enc = m.encode().unwrap();
            assert_eq!(AppMessage::decode(&enc).unwrap(), m, "{name}");
            let mut t = enc.clone();
            t.push(0);
            assert!(matches!(
                AppMessage::decode(&t),
                Err(Error::Decode(DecodeError::TrailingBytes { .. }))
            ));
            for n in 0..enc.len() {
                assert!(
                    AppMessage::decode(&enc[..n]).is_err(),
                    "{name} truncated to {n}"
                );
            }
            let mut v = enc.clone();
            v[0] = 1;
            assert!(matches!(
                AppMessage::decode(&v),
                Err(Error::Decode(DecodeError::UnsupportedVersion {
                    got: 1,
                    ..
                }))
            ));
        }
    }

    #[test]
    fn vectors() {
        let cases: Vec<serde_json::Value> = samples()
            .into_iter()
            .map(|(name, m)| {
                serde_json::json!({
                    "name": name,
                    "debug": format!("{m:?}"),
                    "encoded": hex::encode(m.encode().unwrap()),
                })
            })
            .collect();
        let json = serde_json::json!({
            "description": "Application messages, one per body and team-event kind; `debug` is the Rust Debug form (texts appear only as their byte length).",
            "messages": cases,
            "invalid": [
                { "case": "version 1", "encoded": "01" },
                { "case": "sent_at not on a minute", "encoded": format!("02{}{}04", "00".repeat(16), hex::encode(61u64.to_be_bytes())) },
                { "case": "unknown body tag 9", "encoded": format!("02{}{}09", "00".repeat(16), hex::encode(60u64.to_be_bytes())) },
                { "case": "trailing byte", "encoded": format!("02{}{}0400", "00".repeat(16), hex::encode(60u64.to_be_bytes())) },
                { "case": "opening whose answers are not in increasing question order", "encoded": format!("02{}{}01000102 0002 0002 01 01 0001 01 01 0000", "00".repeat(16), hex::encode(60u64.to_be_bytes())).replace(' ', "") },
                { "case": "opening with a yes/no answer byte of 2", "encoded": format!("02{}{}01000102 0001 0002 01 02 0000", "00".repeat(16), hex::encode(60u64.to_be_bytes())).replace(' ', "") },
                { "case": "delivered receipt naming no message", "encoded": format!("02{}{}060100", "00".repeat(16), hex::encode(60u64.to_be_bytes())) },
                { "case": "resolved receipt naming a message", "encoded": format!("02{}{}060301{}", "00".repeat(16), hex::encode(60u64.to_be_bytes()), "11".repeat(16)) },
                { "case": "unknown receipt kind 5", "encoded": format!("02{}{}060501{}", "00".repeat(16), hex::encode(60u64.to_be_bytes()), "11".repeat(16)) },
            ],
        });
        for bad in json["invalid"].as_array().unwrap() {
            let bytes = hex::decode(bad["encoded"].as_str().unwrap()).unwrap();
            assert!(AppMessage::decode(&bytes).is_err());
        }
        crate::state::vectors::check("message.json", &json);
    }

    #[test]
    fn sent_at_is_minute_precision() {
        let m = AppMessage::new(id(1), UnixTime(125), Body::DeleteRequest);
        assert_eq!(m.sent_at, UnixTime(120));
        let mut bad = m.clone();
        bad.sent_at = UnixTime(121);
        assert!(bad.encode().is_err());
        let mut enc = m.encode().unwrap();
        enc[24] = 121;
        assert!(AppMessage::decode(&enc).is_err());
    }

    #[test]
    fn limits() {
        let t = UnixTime(0);
        let max = AppMessage::new(
            id(1),
            t,
            Body::Text {
                text: MessageText::new("a".repeat(MAX_TEXT_LEN)),
            },
        );
        assert!(AppMessage::decode(&max.encode().unwrap()).is_ok());
        let over = AppMessage::new(
            id(1),
            t,
            Body::Text {
                text: MessageText::new("a".repeat(MAX_TEXT_LEN + 1)),
            },
        );
        assert!(matches!(over.encode(), Err(Error::TooLongToEncode { .. })));
        // Over-long length prefix is refused on decode too.
        let mut enc = max.encode().unwrap();
        enc[26..28].copy_from_slice(&((MAX_TEXT_LEN + 1) as u16).to_be_bytes());
        enc.push(b'a');
        assert!(matches!(
            AppMessage::decode(&enc),
            Err(Error::Decode(DecodeError::TooLong { .. }))
        ));
        // Worst case fits.
        let worst = AppMessage::new(
            id(1),
            t,
            Body::Team(TeamEvent {
                conversation: MailboxId::from_bytes([1; 32]),
                by: DeviceId(1),
                kind: TeamEventKind::CannedAnswer {
                    title: MessageText::new("t".repeat(MAX_CANNED_TITLE_LEN)),
                    text: MessageText::new("a".repeat(MAX_TEXT_LEN)),
                },
            }),
        );
        assert!(worst.encode().unwrap().len() <= MAX_APP_MESSAGE_LEN);
        assert!(AppMessage::decode(&vec![1u8; MAX_APP_MESSAGE_LEN + 1]).is_err());
    }

    fn receipt_bytes(kind: u8, ids: &[[u8; 16]], count: u8) -> Vec<u8> {
        let mut b = vec![MESSAGE_VERSION];
        b.extend_from_slice(&[3; 16]);
        b.extend_from_slice(&60u64.to_be_bytes());
        b.extend_from_slice(&[6, kind, count]);
        for i in ids {
            b.extend_from_slice(i);
        }
        b
    }

    #[test]
    fn receipts_are_strict() {
        // Well-formed by hand: delivered with two ids, resolved with none.
        let ok = AppMessage::decode(&receipt_bytes(1, &[[1; 16], [2; 16]], 2)).unwrap();
        assert_eq!(
            ok.body,
            Body::Receipt(Receipt {
                kind: ReceiptKind::Delivered,
                messages: vec![id(1), id(2)]
            })
        );
        assert!(AppMessage::decode(&receipt_bytes(3, &[], 0)).is_ok());
        // Unknown kind.
        assert!(matches!(
            AppMessage::decode(&receipt_bytes(5, &[[1; 16]], 1)),
            Err(Error::Decode(DecodeError::UnknownTag { .. }))
        ));
        assert!(AppMessage::decode(&receipt_bytes(0, &[[1; 16]], 1)).is_err());
        // Delivered or read naming no message; resolved naming one.
        assert!(AppMessage::decode(&receipt_bytes(1, &[], 0)).is_err());
        assert!(AppMessage::decode(&receipt_bytes(2, &[], 0)).is_err());
        assert!(AppMessage::decode(&receipt_bytes(3, &[[1; 16]], 1)).is_err());
        assert!(AppMessage::decode(&receipt_bytes(4, &[[1; 16]], 1)).is_err());
        // Count larger than the ids present (truncated), or than the bytes say.
        assert!(AppMessage::decode(&receipt_bytes(1, &[[1; 16]], 2)).is_err());
        assert!(matches!(
            AppMessage::decode(&receipt_bytes(1, &[[1; 16]; 2], 1)),
            Err(Error::Decode(DecodeError::TrailingBytes { .. }))
        ));
        // Over the maximum count, with every id present.
        let many = vec![[7u8; 16]; MAX_RECEIPT_IDS + 1];
        assert!(matches!(
            AppMessage::decode(&receipt_bytes(1, &many, (MAX_RECEIPT_IDS + 1) as u8)),
            Err(Error::Decode(DecodeError::TooLong { .. }))
        ));
        let max = vec![[7u8; 16]; MAX_RECEIPT_IDS];
        assert!(AppMessage::decode(&receipt_bytes(1, &max, MAX_RECEIPT_IDS as u8)).is_ok());
        // And the encoder refuses what the decoder would.
        for (kind, n) in [
            (ReceiptKind::Delivered, 0),
            (ReceiptKind::Read, MAX_RECEIPT_IDS + 1),
            (ReceiptKind::Resolved, 1),
        ] {
            let m = AppMessage::new(
                id(1),
                UnixTime(0),
                Body::Receipt(Receipt {
                    kind,
                    messages: vec![id(2); n],
                }),
            );
            assert!(m.encode().is_err(), "{kind:?} with {n}");
        }
    }

    #[test]
    fn keep_events_are_on_the_hour_and_bounded() {
        let keep = |until: u64, reason: String| {
            AppMessage::new(
                id(1),
                UnixTime(0),
                Body::Team(TeamEvent {
                    conversation: MailboxId::from_bytes([1; 32]),
                    by: DeviceId(1),
                    kind: TeamEventKind::Keep {
                        until: UnixTime(until),
                        reason: MessageText::new(reason),
                    },
                }),
            )
        };
        assert!(keep(7200, "a".repeat(MAX_KEEP_REASON_LEN)).encode().is_ok());
        assert!(keep(7201, "a".into()).encode().is_err());
        assert!(
            keep(7200, "a".repeat(MAX_KEEP_REASON_LEN + 1))
                .encode()
                .is_err()
        );
        let mut enc = keep(7200, "a".into()).encode().unwrap();
        // until is right after the kind tag: header 26 + conversation 32 + by 4 + tag 1.
        enc[26 + 32 + 4 + 1 + 7] = 1;
        assert!(matches!(
            AppMessage::decode(&enc),
            Err(Error::Decode(DecodeError::Invalid { .. }))
        ));
    }

    #[test]
    fn copies_cannot_nest_team_events() {
        let inner = AppMessage::new(
            id(1),
            UnixTime(0),
            Body::Team(TeamEvent {
                conversation: MailboxId::from_bytes([1; 32]),
                by: DeviceId(1),
                kind: TeamEventKind::Claim,
            }),
        );
        let outer = AppMessage::new(
            id(2),
            UnixTime(0),
            Body::Team(TeamEvent {
                conversation: MailboxId::from_bytes([1; 32]),
                by: DeviceId(1),
                kind: TeamEventKind::Copy {
                    direction: Direction::ToSeeker,
                    message: Box::new(inner.clone()),
                },
            }),
        );
        assert!(outer.encode().is_err());
        // Hand-built bytes with a nested team event are refused as well.
        let mut bytes = vec![MESSAGE_VERSION];
        bytes.extend_from_slice(&[2; 16]);
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.push(5);
        bytes.extend_from_slice(&[1; 32]);
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&[6, 2]);
        bytes.extend_from_slice(&inner.encode().unwrap());
        assert!(matches!(
            AppMessage::decode(&bytes),
            Err(Error::Decode(DecodeError::Invalid { .. }))
        ));
    }

    #[test]
    fn debug_shows_no_text_and_languages_parse() {
        let m = AppMessage::new(
            id(1),
            UnixTime(0),
            Body::Text {
                text: "my secret story".into(),
            },
        );
        assert!(!format!("{m:?}").contains("secret"));
        assert_eq!(Language::from_tag("es-MX"), Some(Language::Es));
        assert_eq!(Language::from_tag("HT"), Some(Language::Ht));
        assert_eq!(Language::from_tag("de"), None);
        for l in Language::ALL {
            assert_eq!(Language::from_wire(l.wire()).unwrap(), l);
            assert_eq!(Language::from_tag(l.tag()), Some(l));
        }
        assert!(Language::from_wire(0).is_err());
    }

    #[test]
    fn bad_utf8_and_unknown_tags_fail() {
        let m = AppMessage::new(id(1), UnixTime(0), Body::Text { text: "ab".into() });
        let mut enc = m.encode().unwrap();
        let n = enc.len();
        enc[n - 1] = 0xff;
        assert!(matches!(
            AppMessage::decode(&enc),
            Err(Error::Decode(DecodeError::Invalid { .. }))
        ));
        let mut enc = m.encode().unwrap();
        enc[25] = 99;
        assert!(matches!(
            AppMessage::decode(&enc),
            Err(Error::Decode(DecodeError::UnknownTag { .. }))
        ));
    }

    fn arb_text(max: usize) -> impl Strategy<Value = MessageText> {
        "\\PC{0,40}".prop_map(move |s| {
            let mut s: String = s;
            while s.len() > max {
                s.pop();
            }
            MessageText::new(s)
        })
    }

    fn arb_seeker_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (
                any::<u16>(),
                0usize..4,
                any::<bool>(),
                arb_text(MAX_TEXT_LEN)
            )
                .prop_map(|(t, l, with_answers, text)| {
                    Body::Opening {
                        team: TeamId(t),
                        language: Language::ALL[l],
                        answers: if with_answers {
                            crate::intake::tests::sample_answers()
                        } else {
                            IntakeAnswers::none()
                        },
                        text,
                    }
                }),
            arb_text(MAX_TEXT_LEN).prop_map(|text| Body::Text { text }),
            (any::<u16>(), arb_text(MAX_TEXT_LEN)).prop_map(|(p, text)| Body::Referral {
                partner: PartnerId(p),
                text
            }),
            Just(Body::DeleteRequest),
            (0u8..4, proptest::collection::vec(any::<[u8; 16]>(), 1..4)).prop_map(|(k, ids)| {
                let kind = [
                    ReceiptKind::Delivered,
                    ReceiptKind::Read,
                    ReceiptKind::Resolved,
                    ReceiptKind::Reopened,
                ][usize::from(k)];
                let messages = if kind.names_messages() {
                    ids.into_iter().map(MessageId).collect()
                } else {
                    Vec::new()
                };
                Body::Receipt(Receipt { kind, messages })
            }),
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                0u32..=crate::attachment::MAX_ATTACHMENT_LEN as u32
            )
                .prop_map(|(_b, k, size)| {
                    Body::Attachment(crate::attachment::AttachmentRef {
                        blob_id: crate::attachment::BlobDeleteToken::derive(
                            &crate::attachment::AttachmentKey::from_bytes(&k),
                        )
                        .blob_id(),
                        key: crate::attachment::AttachmentKey::from_bytes(&k),
                        digest: k,
                        size,
                        info: crate::attachment::FileInfo {
                            name: crate::attachment::FileName::sanitize("scan.jpg"),
                            media_type: crate::attachment::MediaType::sanitize("image/jpeg"),
                        },
                    })
                }),
        ]
    }

    fn arb_seeker_message() -> impl Strategy<Value = AppMessage> {
        (any::<[u8; 16]>(), any::<u32>(), arb_seeker_body())
            .prop_map(|(i, t, b)| AppMessage::new(MessageId(i), UnixTime(u64::from(t) * 60), b))
    }

    fn arb_message() -> impl Strategy<Value = AppMessage> {
        let seeker = arb_seeker_message();
        let kind = prop_oneof![
            Just(TeamEventKind::Claim),
            any::<u32>().prop_map(|d| TeamEventKind::HandOff { to: DeviceId(d) }),
            Just(TeamEventKind::Resolve),
            Just(TeamEventKind::Reopen),
            arb_text(MAX_NOTE_LEN).prop_map(|text| TeamEventKind::Note { text }),
            (any::<bool>(), arb_seeker_message()).prop_map(|(d, m)| TeamEventKind::Copy {
                direction: if d {
                    Direction::FromSeeker
                } else {
                    Direction::ToSeeker
                },
                message: Box::new(m)
            }),
            (arb_text(MAX_CANNED_TITLE_LEN), arb_text(MAX_TEXT_LEN))
                .prop_map(|(title, text)| TeamEventKind::CannedAnswer { title, text }),
            (any::<u32>(), arb_text(MAX_KEEP_REASON_LEN)).prop_map(|(h, reason)| {
                TeamEventKind::Keep {
                    until: UnixTime(u64::from(h) * 3600),
                    reason,
                }
            }),
        ];
        let team = (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<u32>(), kind).prop_map(
            |(i, c, by, kind)| {
                AppMessage::new(
                    MessageId(i),
                    UnixTime(0),
                    Body::Team(TeamEvent {
                        conversation: MailboxId::from_bytes(c),
                        by: DeviceId(by),
                        kind,
                    }),
                )
            },
        );
        prop_oneof![seeker, team]
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = AppMessage::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_near_valid(m in arb_message(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut enc = m.encode().unwrap();
            let i = pos % enc.len();
            enc[i] = byte;
            let _ = AppMessage::decode(&enc);
        }

        #[test]
        fn round_trips(m in arb_message()) {
            let enc = m.encode().unwrap();
            prop_assert_eq!(AppMessage::decode(&enc).unwrap(), m);
        }
    }
}
