//! The client driver: everything a Northstar client *does*, without I/O.
//!
//! One state machine for the seeker, the counselor device and the
//! administrator, in the shape of rustls's and quinn-proto's connections:
//! the shell (the CLI's tokio loop, the browser's JavaScript) feeds it what
//! happened and carries out what it asks for, in order.
//!
//! ```text
//!   shell                                 Driver
//!   ─────                                 ──────
//!   command(Command, now)         ──►     starts a request sequence
//!   handle_connected(conn, now)   ──►
//!   handle_frame(conn, bytes, now)──►     replies, pushed deliveries
//!   handle_closed(conn, now)      ──►     fails or retries what was pending
//!   handle_work(work, nonce, now) ──►     a solved proof of work
//!   handle_timeout(now)           ──►     request deadlines, reconnection
//!   poll_output()                 ◄──     Connect | Send | Close | Persist | Work | Event
//!   poll_timeout()                ◄──     when to call handle_timeout
//! ```
//!
//! After every input the shell drains `poll_output` and carries out each
//! output in order: a `Persist` must be stored before any later `Send` goes
//! out (saving before sending and before acknowledging is how no ratchet key
//! is used twice and nothing acknowledged is lost). Outputs name
//! connections by [`ConnId`]; a connection is either the *mailbox*
//! connection (authenticated to the client's own mailbox) or an *anonymous*
//! one (deposits, prekey bundles, directories), so the relay cannot tie a
//! deposit or a prekey fetch to a mailbox.
//!
//! The driver owns: the order of relay requests of every command, batching
//! by the count *and* bytes the relay's hello announces, proof of work (as
//! a [`Work`] output the shell may run on another thread), reconnection with
//! backoff and failover across the configured relays, acknowledging only
//! after saving, the quarantine of unreadable messages, and typed errors
//! ([`DriverError`]) that each shell puts in its own words.
//!
//! Internally each command is an `async` sequence over the link
//! (`link.rs`); the driver polls them with a no-op waker after each input,
//! so no executor, thread or clock is involved.

pub mod attach;
mod counselor;
mod link;
mod seeker;
#[cfg(test)]
mod tests;

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::rc::Rc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

pub use link::{
    BACKOFF_MAX_SECS, BACKOFF_MIN_SECS, CONNECT_TIMEOUT_SECS, DEPOSIT_ATTEMPTS,
    DEPOSIT_FRAME_OVERHEAD, REPLY_TIMEOUT_SECS,
};

use crate::UnixTime;
use crate::client::Entry;
use crate::client::counselor::{self as team, Counselor};
use crate::client::saved::{DeviceState, UnreadableReason};
use crate::client::search::{Inbox, InboxFilter, Query, SearchIndex, SearchResults};
use crate::client::seeker::{Conversation as SeekerConversation, Seeker};
use crate::codename::SeekerSecrets;
use crate::directory::{DeviceId, OrgPublicKey, PartnerId, SignedDirectory, VerifiedDirectory};
use crate::frame::ErrorCode;
use crate::ids::Language;
use crate::ids::MailboxId;
use crate::message::{MAX_CANNED_TITLE_LEN, MAX_TEXT_LEN};
use crate::pow::CHALLENGE_LEN;
use crate::state::StateKey;
use link::{Io, Link};

/// How long the relay keeps a seeker's saved conversation after each visit
/// (30 days); the relay caps it with its own retention and says the expiry.
pub const SEEKER_STATE_TTL_HOURS: u32 = 30 * 24;

/// Below this many one-time prekeys on the relay, a counselor sync uploads more.
pub const PREKEY_LOW_WATER: u32 = 20;
/// A counselor sync tops the relay up to this many one-time prekeys.
pub const PREKEY_TARGET: u32 = 100;

/// A connection the driver asked the shell to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A proof of work the driver asked the shell to solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkId(pub u64);

/// Plaintext bytes of a file being downloaded. Zeroized on drop; `Debug`
/// prints only the length.
pub struct FileData(pub Zeroizing<Vec<u8>>);

impl core::fmt::Debug for FileData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FileData(len={})", self.0.len())
    }
}

/// A file slice the driver asked the shell to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// A command the shell started; its outcome comes back as an [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// What a connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// Authenticated to this client's own mailbox: state, deliveries, acks.
    Mailbox,
    /// Tied to no mailbox: deposits, prekey bundles, directories.
    Anonymous,
}

/// Computation the shell runs (on a worker thread, or in slices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Find a nonce with `pow::solve(challenge, batch_hash, difficulty)`.
    ProofOfWork {
        challenge: [u8; CHALLENGE_LEN],
        batch_hash: [u8; 32],
        difficulty: u8,
    },
}

/// What the driver asks the shell to do, in order.
#[derive(Debug)]
pub enum Output {
    /// Open a WebSocket to `url`; report `handle_connected`, then every
    /// binary message with `handle_frame`, and `handle_closed` when it ends
    /// (or cannot be opened).
    Connect {
        conn: ConnId,
        kind: ConnKind,
        url: String,
    },
    /// Send one binary WebSocket message.
    Send { conn: ConnId, frame: Vec<u8> },
    /// Close the connection (no `handle_closed` needed).
    Close { conn: ConnId },
    /// Store the device's sealed state (replacing the previous one) before
    /// carrying out any later output.
    Persist { sealed: Vec<u8> },
    /// Run this computation and report it with `handle_work`.
    Work { work: WorkId, job: Work },
    /// Read `len` bytes of the file being attached, from `offset`, and hand
    /// them over with `handle_read` (`None` if the file cannot be read).
    ReadFile {
        read: ReadId,
        offset: u64,
        len: usize,
    },
    /// The next bytes of the file a `FetchAttachment` command downloads, in
    /// order. Write them to a temporary file and keep it only when the
    /// command is `Done` (the digest is checked after the last chunk).
    WriteFile { command: CommandId, data: FileData },
    /// Tell the user.
    Event(Event),
}

/// Connection state the UI may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// The mailbox connection dropped; reconnecting with backoff.
    Reconnecting,
    /// Connected and receiving again.
    Connected,
}

/// What a command achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The directory is fetched and verified ([`Driver::directory`]).
    Directory,
    /// The seeker's conversation is started; state kept until `expires_at`.
    Started { expires_at: UnixTime },
    /// The seeker's conversation is open and read up to now.
    Opened { expires_at: UnixTime },
    /// The seeker's message is sent.
    Sent { expires_at: UnixTime },
    /// The seeker's mailbox and saved state are deleted.
    Deleted,
    /// The counselor device is registered, topped up and read up to now.
    Synced,
    /// The team action is done and sent.
    Acted,
    /// The administrator's directory is published.
    Published { serial: u64 },
    /// The seeker's file is stored and its reference sent.
    Attached { expires_at: UnixTime },
    /// A downloaded file is complete and genuine (`size` bytes written).
    Fetched { size: u64 },
}

/// Something the shell tells the user about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command finished.
    Done {
        command: CommandId,
        outcome: Outcome,
    },
    /// A command failed; nothing after the failing step was done.
    Failed {
        command: CommandId,
        error: DriverError,
    },
    /// A counselor's message reached the seeker's conversation.
    SeekerMessage(Entry),
    /// A receipt changed what the seeker sees of the conversation
    /// ([`Driver::seeker_status`]).
    SeekerStatus,
    /// The team inbox changed.
    Team(team::Event),
    /// A delivered message could not be read. It was kept (a counselor
    /// device quarantines it; a seeker leaves it on the relay) — never
    /// dropped silently.
    Unreadable { reason: UnreadableReason },
    /// The mailbox connection's state changed.
    Connection(Connection),
    /// A deposit reached some of its recipients, but the relay refused
    /// `refused` of its `of` envelopes (`code`, the first refusal's:
    /// `quota_exceeded`, their mailboxes are full, or `unknown_mailbox`,
    /// a device whose mailbox was deleted). The command goes on: every envelope the relay
    /// stored counts as sent — a seeker still reaches the rest of the team —
    /// and the refused ones are not sent again (a counselor's outbox does
    /// not keep them: a mailbox full for weeks would fill it and stop every
    /// team action). When the relay refuses every envelope, the command
    /// fails instead (`Relay { code }`, or `NotSentYet` where a message is
    /// kept for later).
    PartlyRefused {
        refused: usize,
        of: usize,
        code: ErrorCode,
    },
    /// An upload or download moved on: `done` of `total` bytes of the file.
    Progress {
        command: CommandId,
        done: u64,
        total: u64,
    },
}

/// Why a command failed. Each shell explains these in its own words and
/// languages; none carries a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The configuration names no relay.
    #[error("no relay is configured")]
    NoRelay,
    /// No relay could be reached, or the connection was lost.
    #[error("the relay cannot be reached")]
    Network,
    /// The relay answered something that makes no sense for the request.
    #[error("the relay answered unexpectedly")]
    Protocol,
    /// The relay speaks another version of the relay protocol (its frames
    /// carry frame version `relay`; this client speaks `ours`): one of the
    /// two must be updated. Version 1 and 2 do not interoperate.
    #[error(
        "unsupported version: the relay speaks protocol version {relay}, this client version {ours}"
    )]
    UnsupportedVersion { relay: u8, ours: u8 },
    /// The relay refused the request.
    #[error("the relay refused the request ({})", code.name())]
    Relay { code: ErrorCode },
    /// A frame larger than the relay accepts (its hello's max_frame_len).
    #[error("a message of {size} bytes is larger than this relay accepts ({max} bytes)")]
    TooLargeForRelay { size: usize, max: usize },
    /// The relay holds no directory for the organisation yet.
    #[error("the relay has no directory for this organisation yet")]
    NoDirectory,
    /// The relay's directory is not signed by the pinned organisation key,
    /// is older than one already accepted (a rollback), or has expired
    /// (`DirectoryError::Expired`: the administrator has not re-signed it,
    /// or the relay withholds the newer one).
    #[error("the relay's directory was refused: {0}")]
    DirectoryRefused(crate::directory::DirectoryError),
    /// No conversation under this codename (never started, expired or deleted).
    #[error("no conversation for this codename")]
    CodenameNotFound,
    /// The saved conversation does not open under this codename.
    #[error("the saved conversation does not open with this codename")]
    StateDoesNotOpen,
    /// The chosen topic is not in the directory.
    #[error("no such topic")]
    UnknownTopic,
    /// Nobody answers the chosen topic yet.
    #[error("nobody answers this topic yet")]
    NobodyAnswers,
    /// A counselor device has not uploaded its prekeys yet.
    #[error("a counselor device has not uploaded its keys yet")]
    DeviceWithoutKeys,
    /// This counselor device is not in the directory.
    #[error("this device is not in the team directory")]
    NotInDirectory,
    /// A colleague holds the conversation.
    #[error("the conversation is claimed by device {}", by.0)]
    ClaimedByOther { by: DeviceId },
    /// The message (or team action) is saved but did not reach the relay;
    /// it is sent again at the next visit or sync.
    #[error("not sent yet ({cause}); it is kept and sent again next time")]
    NotSentYet { cause: Box<DriverError> },
    /// The message is empty or only white space.
    #[error("the message is empty")]
    EmptyMessage,
    /// The message is longer than the protocol carries.
    #[error("the message is {len} bytes long, at most {max} allowed")]
    MessageTooLong { len: usize, max: usize },
    /// The device's saved state belongs to another organisation than the
    /// configured one.
    #[error("this device belongs to another organisation")]
    OtherOrganisation,
    /// A command that needs something first (an open conversation, a
    /// counselor device, an administrator key): caller misuse.
    #[error("misuse: {what}")]
    Misuse { what: &'static str },
    /// The protocol library refused the operation.
    #[error("{0}")]
    Core(crate::Error),
    /// The file is larger than an attachment may be.
    #[error("the file is {size} bytes, at most {max} allowed")]
    AttachmentTooLarge { size: u64, max: u64 },
    /// The file could not be read (or changed while it was sent).
    #[error("the file cannot be read")]
    FileUnreadable,
    /// An image whose format is damaged: it is not sent, since its
    /// metadata could not be removed safely.
    #[error("the image is damaged and was not sent")]
    ImageUnreadable,
    /// A photo in a format whose metadata this client cannot remove (HEIC,
    /// WebP, TIFF, GIF): not sent, since it may carry where it was taken.
    #[error("this kind of photo cannot be cleaned of its hidden details and was not sent")]
    ImageUnsupported,
    /// A downloaded file does not check out (a chunk or the digest).
    #[error("the file is damaged")]
    AttachmentDamaged,
    /// The relay no longer holds the file (expired or deleted).
    #[error("the file is no longer on the relay")]
    AttachmentGone,
}

impl From<crate::Error> for DriverError {
    fn from(e: crate::Error) -> Self {
        use crate::client::ClientError;
        match e {
            crate::Error::Client(ClientError::ClaimedByOther { by }) => {
                DriverError::ClaimedByOther { by: DeviceId(by) }
            }
            crate::Error::Client(ClientError::NotInDirectory) => DriverError::NotInDirectory,
            crate::Error::Client(ClientError::NoRecipients) => DriverError::NobodyAnswers,
            crate::Error::Directory(d) => DriverError::DirectoryRefused(d),
            e => DriverError::Core(e),
        }
    }
}

/// Checks a message a person typed: not empty, not longer than the
/// protocol carries. Every shell applies this one rule before anything is
/// sent or registered.
pub fn check_message(text: &str) -> Result<(), DriverError> {
    if text.trim().is_empty() {
        return Err(DriverError::EmptyMessage);
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(DriverError::MessageTooLong {
            len: text.len(),
            max: MAX_TEXT_LEN,
        });
    }
    Ok(())
}

/// Checks a canned answer's title by the same rule: not empty, not longer
/// than the protocol carries.
fn check_title(title: &str) -> Result<(), DriverError> {
    if title.trim().is_empty() {
        return Err(DriverError::EmptyMessage);
    }
    if title.len() > MAX_CANNED_TITLE_LEN {
        return Err(DriverError::MessageTooLong {
            len: title.len(),
            max: MAX_CANNED_TITLE_LEN,
        });
    }
    Ok(())
}

/// Checks the reason a counselor gives for keeping a case longer: not
/// empty, not longer than the protocol carries.
fn check_keep_reason(reason: &str) -> Result<(), DriverError> {
    if reason.trim().is_empty() {
        return Err(DriverError::EmptyMessage);
    }
    if reason.trim().len() > crate::message::MAX_KEEP_REASON_LEN {
        return Err(DriverError::MessageTooLong {
            len: reason.trim().len(),
            max: crate::message::MAX_KEEP_REASON_LEN,
        });
    }
    Ok(())
}

/// What a counselor does to a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TeamAction {
    Claim,
    Reply {
        text: String,
    },
    HandOff {
        to: DeviceId,
    },
    Note {
        text: String,
    },
    Resolve,
    Reopen,
    Refer {
        partner: PartnerId,
        text: String,
    },
    SaveCanned {
        title: String,
        text: String,
    },
    /// Keep the case past the organisation's retention until `until`, for
    /// `reason` (logged on every device of the team).
    Keep {
        until: UnixTime,
        reason: String,
    },
    /// Sends the seeker a file already stored in the seeker's mailbox
    /// (what [`Command::CounselorAttach`] does after its upload).
    Attach {
        reference: crate::attachment::AttachmentRef,
    },
    /// Resolve the case and delete it everywhere the team can reach: every
    /// attachment blob it references is deleted from the relay first, then
    /// the seeker gets the "resolved" receipt, every colleague's device the
    /// `Purge` team event, and this device deletes the conversation
    /// (docs/PROTOCOL.md §6.7). The shell asks for confirmation first.
    Purge,
}

/// What the shell asks for.
#[derive(Debug)]
pub enum Command {
    /// Fetch and verify the directory (the topics a seeker can pick).
    Directory,
    /// A seeker's first contact: register the codename's mailbox, fetch a
    /// prekey bundle per intake device, save the state, deposit the opening.
    SeekerStart {
        secrets: Box<SeekerSecrets>,
        team_slug: String,
        language: Language,
        /// The answers to the team's intake questions (each may be
        /// skipped); checked against the directory before anything is sent.
        answers: crate::intake::IntakeAnswers,
        text: String,
    },
    /// A seeker comes back: authenticate, restore the saved state, read what
    /// arrived since, and keep receiving.
    SeekerOpen { secrets: Box<SeekerSecrets> },
    /// Write again in the open conversation.
    SeekerWrite { text: String },
    /// Ask the team to delete the conversation, then delete the mailbox and
    /// the saved state on the relay.
    SeekerDelete,
    /// A counselor device: directory, registration, prekey top-up, read
    /// everything stored, then keep receiving.
    Sync,
    /// A team action on a conversation.
    Team {
        conversation: MailboxId,
        action: TeamAction,
    },
    /// Publish a signed directory (administrator).
    Publish { directory: SignedDirectory },
    /// The seeker sends a file of `size` bytes: read through
    /// `Output::ReadFile`, images cleaned of metadata, uploaded, then its
    /// reference sent like a message.
    SeekerAttach {
        info: crate::attachment::FileInfo,
        size: u64,
    },
    /// A counselor sends the seeker of `conversation` a file (as
    /// [`Command::SeekerAttach`]; the blob goes to the seeker's mailbox).
    CounselorAttach {
        conversation: MailboxId,
        info: crate::attachment::FileInfo,
        size: u64,
    },
    /// Download and open a file of the conversation (`Output::WriteFile`).
    FetchAttachment {
        reference: crate::attachment::AttachmentRef,
    },
}

/// The relays and the pinned organisation key.
#[derive(Clone, Debug)]
pub struct Config {
    /// WebSocket URLs of the relay nodes, tried in order and failed over.
    pub relays: Vec<String>,
    /// The organisation key every directory must be signed with.
    pub org: OrgPublicKey,
}

/// A counselor device held by the driver.
pub(crate) struct Device {
    pub(crate) state: DeviceState,
    pub(crate) key: StateKey,
}

/// What the sequences and the getters share besides the link.
pub(crate) struct ClientState {
    pub(crate) org: OrgPublicKey,
    pub(crate) directory: Option<VerifiedDirectory>,
    /// When the directory was last fetched (counselor actions refresh it).
    pub(crate) directory_at: Option<UnixTime>,
    pub(crate) seeker: Option<Seeker>,
    pub(crate) expires_at: Option<UnixTime>,
    pub(crate) device: Option<Device>,
    /// The authenticated mailbox connection with its receiver running.
    pub(crate) mailbox: Option<ConnId>,
    /// Deliveries the receiver has handled so far (readable or not).
    pub(crate) handled: u64,
    /// Sequences started by other sequences (the receiver).
    pub(crate) spawned: Vec<Task>,
    pub(crate) closing: bool,
    /// An outbox deposit is under way: the next waits for it (so receipts
    /// queued by the receiver and a sync's flush go out once).
    pub(crate) flushing: bool,
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The client driver. See the module documentation.
pub struct Driver {
    io: Io,
    st: Rc<RefCell<ClientState>>,
    tasks: Vec<Task>,
    next_command: u64,
    /// The counselor inbox's search index: folded text of what the device
    /// decrypted, in memory only, dropped on [`Driver::close`].
    search: SearchIndex,
}

impl core::fmt::Debug for Driver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A driver for a seeker, an administrator or a public look-up.
    /// `seed` seeds its CSPRNG (the shell draws it from the OS).
    pub fn new(config: Config, seed: Zeroizing<[u8; 32]>) -> Self {
        Driver {
            io: Io(Rc::new(RefCell::new(Link::new(
                config.relays,
                ChaCha20Rng::from_seed(*seed),
            )))),
            st: Rc::new(RefCell::new(ClientState {
                org: config.org,
                directory: None,
                directory_at: None,
                seeker: None,
                expires_at: None,
                device: None,
                mailbox: None,
                handled: 0,
                spawned: Vec::new(),
                closing: false,
                flushing: false,
            })),
            tasks: Vec::new(),
            next_command: 1,
            search: SearchIndex::new(),
        }
    }

    /// A driver for a counselor device, from its sealed saved state and the
    /// state key its key store opened. Refuses a state sealed for another
    /// organisation than `config.org`.
    pub fn counselor(
        config: Config,
        seed: Zeroizing<[u8; 32]>,
        key: StateKey,
        sealed: &[u8],
    ) -> Result<Self, DriverError> {
        let state = DeviceState::open(&key, sealed)?;
        if state.org != config.org {
            return Err(DriverError::OtherOrganisation);
        }
        let d = Driver::new(config, seed);
        d.st.borrow_mut().directory = state.counselor.directory().cloned();
        d.st.borrow_mut().device = Some(Device { state, key });
        Ok(d)
    }

    /// Replaces the counselor device's state with a newer copy saved by
    /// another process or tab (the shell holds its lock and saw it change).
    pub fn reload_counselor(&mut self, sealed: &[u8]) -> Result<(), DriverError> {
        let mut st = self.st.borrow_mut();
        let dev = st.device.as_mut().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        let state = DeviceState::open(&dev.key, sealed)?;
        if state.org != dev.state.org {
            return Err(DriverError::OtherOrganisation);
        }
        dev.state = state;
        Ok(())
    }

    /// Starts a command. Input that can be refused without the relay (an
    /// empty message, a command for another role) is refused here, before
    /// anything is sent.
    pub fn command(&mut self, cmd: Command, now: UnixTime) -> Result<CommandId, DriverError> {
        self.io.with(|l| l.now = now);
        let id = CommandId(self.next_command);
        let io = self.io.clone();
        let st = self.st.clone();
        let seq: Pin<Box<dyn Future<Output = Result<Outcome, DriverError>>>> = match cmd {
            Command::Directory => Box::pin(async move { seeker::directory(&io, &st).await }),
            Command::SeekerStart {
                secrets,
                team_slug,
                language,
                answers,
                text,
            } => {
                check_message(&text)?;
                Box::pin(async move {
                    seeker::start(&io, &st, &secrets, &team_slug, language, &answers, &text).await
                })
            }
            Command::SeekerOpen { secrets } => {
                Box::pin(async move { seeker::open(&io, &st, &secrets).await })
            }
            Command::SeekerWrite { text } => {
                check_message(&text)?;
                self.need_seeker()?;
                Box::pin(async move { seeker::write(&io, &st, &text).await })
            }
            Command::SeekerDelete => {
                self.need_seeker()?;
                Box::pin(async move { seeker::delete(&io, &st).await })
            }
            Command::Sync => {
                self.need_device()?;
                Box::pin(async move { counselor::sync(&io, &st).await })
            }
            Command::Team {
                conversation,
                action,
            } => {
                if let TeamAction::Reply { text }
                | TeamAction::Note { text }
                | TeamAction::Refer { text, .. }
                | TeamAction::SaveCanned { text, .. } = &action
                {
                    check_message(text)?;
                }
                if let TeamAction::SaveCanned { title, .. } = &action {
                    check_title(title)?;
                }
                if let TeamAction::Keep { reason, .. } = &action {
                    check_keep_reason(reason)?;
                }
                self.need_device()?;
                Box::pin(async move { counselor::act(&io, &st, conversation, action).await })
            }
            Command::Publish { directory } => {
                Box::pin(async move { counselor::publish(&io, directory).await })
            }
            Command::SeekerAttach { info, size } => {
                attach::check_size(size)?;
                self.need_seeker()?;
                Box::pin(async move { seeker::attach(&io, &st, id, info, size).await })
            }
            Command::CounselorAttach {
                conversation,
                info,
                size,
            } => {
                attach::check_size(size)?;
                self.need_device()?;
                Box::pin(async move {
                    let reference = attach::upload(&io, id, conversation, info, size).await?;
                    counselor::act(&io, &st, conversation, TeamAction::Attach { reference }).await
                })
            }
            Command::FetchAttachment { reference } => Box::pin(async move {
                let size = attach::download(&io, id, reference).await?;
                Ok(Outcome::Fetched { size })
            }),
        };
        self.next_command += 1;
        let report = self.io.clone();
        self.tasks.push(Box::pin(async move {
            let event = match seq.await {
                Ok(outcome) => Event::Done {
                    command: id,
                    outcome,
                },
                Err(error) => Event::Failed { command: id, error },
            };
            report.with(|l| l.event(event));
        }));
        self.run();
        Ok(id)
    }

    fn need_seeker(&self) -> Result<(), DriverError> {
        if self.st.borrow().seeker.is_none() {
            return Err(DriverError::Misuse {
                what: "no conversation is open",
            });
        }
        Ok(())
    }

    fn need_device(&self) -> Result<(), DriverError> {
        if self.st.borrow().device.is_none() {
            return Err(DriverError::Misuse {
                what: "not a counselor device",
            });
        }
        Ok(())
    }

    /// The shell opened the connection.
    pub fn handle_connected(&mut self, conn: ConnId, now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.opened(conn);
        });
        self.run();
    }

    /// A binary message arrived on the connection.
    pub fn handle_frame(&mut self, conn: ConnId, bytes: &[u8], now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.frame(conn, bytes);
        });
        self.run();
    }

    /// The connection closed or could not be opened.
    pub fn handle_closed(&mut self, conn: ConnId, now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.closed(conn);
        });
        self.run();
    }

    /// The shell read a file slice asked for with `Output::ReadFile`
    /// (`None`: the file cannot be read; the command fails).
    pub fn handle_read(&mut self, read: ReadId, bytes: Option<Zeroizing<Vec<u8>>>, now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.read_done(read, bytes);
        });
        self.run();
    }

    /// A proof of work is solved.
    pub fn handle_work(&mut self, work: WorkId, nonce: u64, now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.work_done(work, nonce);
        });
        self.run();
    }

    /// Time passed (call at [`Driver::poll_timeout`], or any time).
    pub fn handle_timeout(&mut self, now: UnixTime) {
        self.io.with(|l| {
            l.now = now;
            l.tick();
        });
        self.run();
    }

    /// The next thing to do, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.io.with(|l| l.out.pop_front())
    }

    /// When to call [`Driver::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        self.io.0.borrow().next_deadline()
    }

    /// Whether any command or the receiver is still running.
    pub fn is_busy(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Stops receiving and closes every connection.
    pub fn close(&mut self) {
        self.st.borrow_mut().closing = true;
        self.st.borrow_mut().mailbox = None;
        self.tasks.clear();
        self.io.with(|l| l.close_all());
        self.search.clear();
    }

    /// Polls every sequence until none can go further with what it has.
    fn run(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let before = self.io.0.borrow().out.len();
            self.tasks
                .retain_mut(|t| t.as_mut().poll(&mut cx) == Poll::Pending);
            let spawned: Vec<Task> = core::mem::take(&mut self.st.borrow_mut().spawned);
            let more = !spawned.is_empty();
            self.tasks.extend(spawned);
            // A sequence that queued something may have unblocked another
            // (a closed connection, a fired timer): go round once more.
            if !more && self.io.0.borrow().out.len() == before {
                break;
            }
        }
        self.io.with(|l| l.collect());
    }

    // ------------------------------------------------------------ getters

    /// The verified directory, once fetched.
    pub fn directory(&self) -> Option<VerifiedDirectory> {
        let st = self.st.borrow();
        match &st.device {
            Some(d) => d.state.counselor.directory().cloned(),
            None => st.directory.clone(),
        }
    }

    /// The seeker's conversation, when one is open.
    pub fn seeker_conversation(&self) -> Option<SeekerConversation> {
        self.st
            .borrow()
            .seeker
            .as_ref()
            .and_then(|s| s.conversation().cloned())
    }

    /// Until when the relay keeps the seeker's saved conversation.
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.st.borrow().expires_at
    }

    /// Reads the counselor device (inbox, conversations, canned answers).
    pub fn with_counselor<R>(&self, f: impl FnOnce(&Counselor) -> R) -> Option<R> {
        self.st
            .borrow()
            .device
            .as_ref()
            .map(|d| f(&d.state.counselor))
    }

    /// How many messages the seeker wrote that wait to be sent (next visit).
    pub fn seeker_pending(&self) -> usize {
        self.st.borrow().seeker.as_ref().map_or(0, |s| s.pending())
    }

    /// How many envelopes of team actions wait in the device's outbox.
    pub fn outbox_len(&self) -> usize {
        self.st
            .borrow()
            .device
            .as_ref()
            .map_or(0, |d| d.state.outbox.len())
    }

    /// How many unreadable envelopes the device keeps in quarantine, and
    /// how many it had to drop.
    pub fn quarantine(&self) -> Option<(usize, u32)> {
        self.st
            .borrow()
            .device
            .as_ref()
            .map(|d| (d.state.quarantine.len(), d.state.quarantine_dropped))
    }

    /// Marks a conversation read on this device (a local change, saved),
    /// and queues a read receipt for the seeker when their latest message
    /// has had none from this device. The receipt is deposited at once
    /// when the mailbox connection is up (a running inbox), else with the
    /// next sync or team action.
    pub fn mark_read(&mut self, conversation: &MailboxId) -> Result<(), DriverError> {
        let now = self.io.now();
        let queued = counselor::read_receipt(&self.io, &self.st, conversation, now)?;
        counselor::local_change(&self.io, &self.st, |c| c.mark_read(conversation))?;
        if queued && self.st.borrow().mailbox.is_some() {
            let (io, st) = (self.io.clone(), self.st.clone());
            self.tasks.push(Box::pin(
                async move { counselor::flush_outbox(&io, &st).await },
            ));
            self.run();
        }
        Ok(())
    }

    /// What the seeker sees of the open conversation (receipts, answers,
    /// referrals), when one is open.
    pub fn seeker_status(&self) -> Option<crate::client::seeker::ConversationStatus> {
        self.st
            .borrow()
            .seeker
            .as_ref()
            .and_then(|s| s.conversation().map(|c| c.status()))
    }

    /// When the seeker's conversation is deleted everywhere: the directory's
    /// retention after the seeker's last message (docs/PROTOCOL.md
    /// §6.6). The page shows this date.
    pub fn seeker_deletion_at(&self) -> Option<UnixTime> {
        let st = self.st.borrow();
        let retention = st.directory.as_ref()?.retention_secs();
        st.seeker.as_ref()?.conversation()?.deletion_at(retention)
    }

    /// The directory's retention in seconds, once a directory is held.
    pub fn retention_secs(&self) -> Option<u64> {
        self.directory().map(|d| d.retention_secs())
    }

    /// Searches the counselor inbox for `query` (every word must match,
    /// case and accents ignored) among the conversations `filter` keeps:
    /// most recent activity first, at most
    /// [`MAX_SEARCH_RESULTS`](crate::client::search::MAX_SEARCH_RESULTS),
    /// with a snippet of where each matched. Reads only what this device
    /// decrypted; nothing goes to the relay. An empty query lists the
    /// filtered inbox. See [`crate::client::search`].
    pub fn search(
        &mut self,
        query: &str,
        filter: InboxFilter,
    ) -> Result<SearchResults, DriverError> {
        let query = Query::parse(query).map_err(|e| DriverError::Core(e.into()))?;
        let st = self.st.borrow();
        let dev = st.device.as_ref().ok_or(DriverError::Misuse {
            what: "not a counselor device",
        })?;
        Ok(self
            .search
            .search(Inbox::of(&dev.state.counselor), &query, filter))
    }

    /// Memory the search index holds now: (conversations, bytes of folded text).
    pub fn search_index_size(&self) -> (usize, usize) {
        (self.search.len(), self.search.text_bytes())
    }
}
