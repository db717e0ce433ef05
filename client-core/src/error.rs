//! The crate's one error type, with precise sub-enums per concern.
//!
//! Messages never carry secret or identifying data (no key bytes, no
//! codename words, no plaintext).

/// Every error northstar-core returns.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that are not a valid encoding of the expected structure.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A value too large to encode (caller misuse, not a peer fault).
    #[error("encode: {what} is {got} bytes, at most {max} allowed")]
    TooLongToEncode {
        what: &'static str,
        max: usize,
        got: usize,
    },
    /// A key operation failed (invalid public key, non-contributory DH, KEM failure).
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// Session set-up failed.
    #[error("session set-up: {0}")]
    Pqxdh(#[from] crate::pqxdh::PqxdhError),
    /// The Double Ratchet refused a message.
    #[error("ratchet: {0}")]
    Ratchet(#[from] crate::ratchet::RatchetError),
    /// A sealed envelope could not be sealed or opened.
    #[error("sealed sender: {0}")]
    Sealed(#[from] crate::sealed::SealedError),
    /// Codename problems (malformed, unknown word, wrong codename).
    #[error("codename: {0}")]
    Codename(#[from] crate::codename::CodenameError),
    /// Directory verification failed.
    #[error("directory: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
    /// Encrypted state could not be opened.
    #[error("state: {0}")]
    State(#[from] crate::state::StateError),
    /// The client layer refused an operation.
    #[error("client: {0}")]
    Client(#[from] crate::client::ClientError),
    /// Proof of work missing or insufficient.
    #[error("proof of work: {0}")]
    Pow(#[from] crate::pow::PowError),
    /// An attachment could not be sealed or opened.
    #[error("attachment: {0}")]
    Attachment(#[from] crate::attachment::AttachmentError),
    /// The caller asked for something the API does not allow (a local
    /// mistake or a full local store), as opposed to a fault of a peer or of
    /// the relay: nothing was sent or changed.
    #[error("misuse: {0}")]
    Misuse(#[from] ApiMisuse),
}

/// What the caller did wrong, or which local store is full: never caused by
/// a peer's bytes being malformed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// A deposit batch with no envelope.
    #[error("a deposit batch needs at least one envelope")]
    EmptyBatch,
    /// The counselor inbox holds its maximum of conversations.
    #[error("the inbox is full ({max} conversations)")]
    InboxFull { max: usize },
    /// The endpoint keeps sessions with its maximum of peers.
    #[error("too many peers ({max})")]
    TooManyPeers { max: usize },
    /// Too many envelopes wait to be sent.
    #[error("too many messages wait to be sent ({max} envelopes)")]
    OutboxFull { max: usize },
    /// The intake set is larger than one conversation can fan out to.
    #[error("the intake set has {got} devices, at most {max} allowed")]
    IntakeTooLarge { max: usize, got: usize },
    /// A search query over its maximum length (bytes).
    #[error("the search is {got} bytes long, at most {max} allowed")]
    QueryTooLong { max: usize, got: usize },
    /// A search query with more terms than allowed.
    #[error("the search has {got} words, at most {max} allowed")]
    QueryTooManyTerms { max: usize, got: usize },
    /// A "keep this case longer" time that is not in the future, or more
    /// than a year away.
    #[error("keep-until must be in the future and at most a year away")]
    KeepOutOfRange,
}

/// Why bytes failed to decode. Every decoder is strict: unknown versions,
/// unknown tags, short input, over-long fields and trailing bytes are errors.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ended before `what` was complete.
    #[error("input ended inside {what}")]
    UnexpectedEnd { what: &'static str },
    /// Bytes left over after a complete structure.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes { what: &'static str, count: usize },
    /// A version byte this implementation does not speak.
    #[error("unsupported {what} version {got}, expected {expected}")]
    UnsupportedVersion {
        what: &'static str,
        expected: u8,
        got: u8,
    },
    /// A length prefix over the documented maximum.
    #[error("{what} is {got} bytes, at most {max} allowed")]
    TooLong {
        what: &'static str,
        max: usize,
        got: usize,
    },
    /// A length below the documented minimum.
    #[error("{what} is {got} bytes, at least {min} required")]
    TooShort {
        what: &'static str,
        min: usize,
        got: usize,
    },
    /// An enum tag with no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    /// A field whose bytes are not a valid value (bad key, bad UTF-8, …).
    #[error("invalid {what}")]
    Invalid { what: &'static str },
}
