//! The relay wire protocol: frames between a client and the relay
//! (docs/PROTOCOL.md §"Relay protocol", source docs/PROTOCOL.md §4).
//!
//! Every frame is one binary WebSocket message:
//!
//! ```text
//! frame = version:u8 (=2) || request_id:u32 || tag:u8 || body
//! ```
//!
//! A reply echoes the request id of the request it answers. Frames the relay
//! sends on its own (the hello, deliveries) carry request id 0, so clients
//! number their requests from 1. Bodies are decoded strictly (named maxima,
//! no trailing bytes). This module is pure: the relay, the CLI and the
//! browser client all use it.
//!
//! ```
//! use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
//!
//! let bytes = ClientFrame::Challenge.encode(7)?;
//! assert_eq!(bytes, [2, 0, 0, 0, 7, 0x03]);
//! assert_eq!(ClientFrame::decode(&bytes)?, (7, ClientFrame::Challenge));
//!
//! let reply = ServerFrame::Error { code: ErrorCode::RateLimited }.encode(7)?;
//! assert_eq!(reply, [2, 0, 0, 0, 7, 0xFF, 0, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use sha2::{Digest, Sha256};

use crate::UnixTime;
use crate::attachment::{BlobDeleteToken, BlobId, CHUNK_SEALED_LEN, MAX_CHUNKS};
use crate::error::{DecodeError, Error};
use crate::ids::{EnvelopeId, MailboxId};
use crate::keys::{Ed25519Public, MailboxPublic, Signature, X25519Public};
use crate::pow::CHALLENGE_LEN;
use crate::sealed::Envelope;
use crate::wire::{Reader, Writer};

/// Frame format version.
pub const FRAME_VERSION: u8 = 2;

/// Request id of frames the relay sends unasked (hello, deliveries).
pub const PUSH_REQUEST_ID: u32 = 0;

pub use crate::limits::{
    FRAME_HEADER_LEN, MAX_ACK_IDS, MAX_BATCH_ENVELOPES, MAX_DIRECTORY_LEN, MAX_FRAME_LEN,
    MAX_PQ_PREKEYS_PER_UPLOAD, MAX_PREKEY_BUNDLE_LEN, MAX_PREKEYS_PER_UPLOAD, MAX_STATE_LEN,
    ONE_TIME_PQ_PREKEY_LEN, ONE_TIME_PREKEY_LEN,
};

/// Domain separation of the mailbox authentication signature.
pub const AUTH_DOMAIN: &[u8] = b"northstar/v1/relay-auth";

/// Domain separation of the mailbox registration signature.
pub const REGISTER_DOMAIN: &[u8] = b"northstar/v1/relay-register";

/// Domain separation of the deposit batch hash the proof of work covers.
pub const DEPOSIT_BATCH_DOMAIN: &[u8] = b"northstar/v1/deposit-batch";

/// A one-time prekey: handed out once by the relay, then deleted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OneTimePrekey {
    pub id: u32,
    pub public: X25519Public,
}

impl OneTimePrekey {
    /// `id:u32 || pk[32]`.
    pub fn to_bytes(&self) -> [u8; ONE_TIME_PREKEY_LEN] {
        let mut out = [0u8; ONE_TIME_PREKEY_LEN];
        out[..4].copy_from_slice(&self.id.to_be_bytes());
        out[4..].copy_from_slice(&self.public.0);
        out
    }

    pub fn from_bytes(b: &[u8; ONE_TIME_PREKEY_LEN]) -> Self {
        let mut id = [0u8; 4];
        id.copy_from_slice(&b[..4]);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&b[4..]);
        OneTimePrekey {
            id: u32::from_be_bytes(id),
            public: X25519Public(pk),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self::from_bytes(&r.array("one-time prekey")?))
    }
}

/// A one-time ML-KEM prekey: `id:u32 || pk[1184] || sig[64]`
/// ([`crate::pqxdh::OneTimePqPreKeyPublic`]), opaque to the relay (the
/// client that uses it checks the key and the device's signature), handed
/// out once, then deleted.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimePqPrekey {
    pub id: u32,
    /// `pk[1184] || sig[64]`.
    pub public: Box<[u8; ONE_TIME_PQ_PREKEY_LEN - 4]>,
}

impl core::fmt::Debug for OneTimePqPrekey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "OneTimePqPrekey({})", self.id)
    }
}

impl OneTimePqPrekey {
    /// `id:u32 || pk[1184] || sig[64]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ONE_TIME_PQ_PREKEY_LEN);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.public[..]);
        out
    }

    /// From exactly [`ONE_TIME_PQ_PREKEY_LEN`] bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let k = Self::read(&mut r)?;
        r.finish("one-time pq prekey")?;
        Ok(k)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u32("one-time pq prekey id")?;
        let body = r.take(ONE_TIME_PQ_PREKEY_LEN - 4, "one-time pq prekey")?;
        let mut public = Box::new([0u8; ONE_TIME_PQ_PREKEY_LEN - 4]);
        public.copy_from_slice(body);
        Ok(OneTimePqPrekey { id, public })
    }
}

impl From<&crate::pqxdh::OneTimePqPreKeyPublic> for OneTimePqPrekey {
    fn from(k: &crate::pqxdh::OneTimePqPreKeyPublic) -> Self {
        let mut public = Box::new([0u8; ONE_TIME_PQ_PREKEY_LEN - 4]);
        public[..crate::keys::MlKemPublic::LEN].copy_from_slice(&k.key.0[..]);
        public[crate::keys::MlKemPublic::LEN..].copy_from_slice(&k.signature.0);
        OneTimePqPrekey { id: k.id, public }
    }
}

/// An envelope of a deposit batch the relay did not store, and why: a
/// batch is stored for every recipient with room, and the sender learns
/// which envelopes were refused (PROTOCOL.md §4.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refused {
    /// The envelope's position in the batch, from 0.
    pub index: u16,
    /// Why (`quota_exceeded`: the recipient's mailbox is full).
    pub code: ErrorCode,
}

/// What a relay error frame says went wrong. Codes are stable on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame does not decode (bad tag, bad length, trailing bytes, …).
    Malformed = 1,
    /// The frame's version byte is not one the relay speaks.
    UnsupportedVersion = 2,
    /// The frame is larger than the relay's limit.
    FrameTooLarge = 3,
    /// Too many frames per second on this connection.
    RateLimited = 4,
    /// A recipient requires proof of work and none was given.
    PowRequired = 5,
    /// The proof of work does not meet the difficulty.
    PowInvalid = 6,
    /// The command needs a mailbox session.
    NotAuthenticated = 7,
    /// The signature did not verify (or no challenge was pending).
    AuthFailed = 8,
    /// No such mailbox is registered.
    UnknownMailbox = 9,
    /// The mailbox's envelope-count or byte quota, or its one-time prekey cap, is full.
    QuotaExceeded = 10,
    /// The directory's serial is not newer than the stored one.
    DirectoryRollback = 11,
    /// The directory is not validly self-signed.
    DirectoryInvalid = 12,
    /// The state blob exceeds the relay's limit.
    StateTooLarge = 13,
    /// The relay is at capacity or shutting down; retry later.
    ServerBusy = 14,
    /// Nothing stored under that key (directory, prekeys, state).
    NotFound = 15,
    /// More envelopes in one batch than the relay accepts.
    BatchTooLarge = 16,
    /// The relay failed internally; nothing was changed.
    Internal = 17,
    /// An attachment blob with more chunks than the relay accepts (or none).
    AttachmentTooLarge = 18,
    /// A chunk that does not fit its blob: another chunk count or mailbox
    /// than the blob's first chunk said, or an index past the last.
    BlobMismatch = 19,
    /// The mailbox holds its maximum number of attachment blobs.
    TooManyBlobs = 20,
    /// A `DeleteBlob` whose token does not derive the blob id; nothing was
    /// deleted.
    BlobDeleteRefused = 21,
}

impl ErrorCode {
    /// Every error code, in wire order (index = code − 1).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::PowRequired,
        ErrorCode::PowInvalid,
        ErrorCode::NotAuthenticated,
        ErrorCode::AuthFailed,
        ErrorCode::UnknownMailbox,
        ErrorCode::QuotaExceeded,
        ErrorCode::DirectoryRollback,
        ErrorCode::DirectoryInvalid,
        ErrorCode::StateTooLarge,
        ErrorCode::ServerBusy,
        ErrorCode::NotFound,
        ErrorCode::BatchTooLarge,
        ErrorCode::Internal,
        ErrorCode::AttachmentTooLarge,
        ErrorCode::BlobMismatch,
        ErrorCode::TooManyBlobs,
        ErrorCode::BlobDeleteRefused,
    ];

    pub fn to_u16(self) -> u16 {
        self as u16
    }

    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.to_u16() == v)
    }

    /// A short stable name, for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PowRequired => "pow_required",
            ErrorCode::PowInvalid => "pow_invalid",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::UnknownMailbox => "unknown_mailbox",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::DirectoryRollback => "directory_rollback",
            ErrorCode::DirectoryInvalid => "directory_invalid",
            ErrorCode::StateTooLarge => "state_too_large",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BatchTooLarge => "batch_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::AttachmentTooLarge => "attachment_too_large",
            ErrorCode::BlobMismatch => "blob_mismatch",
            ErrorCode::TooManyBlobs => "too_many_blobs",
            ErrorCode::BlobDeleteRefused => "blob_delete_refused",
        }
    }
}

/// A frame that failed to decode, with the request id to answer (0 when
/// the header itself was unreadable) and the error code to answer with,
/// chosen by the decoder where it found the fault.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("frame (request {request_id}): {error}")]
pub struct FrameError {
    pub request_id: u32,
    pub error: DecodeError,
    code: ErrorCode,
}

impl FrameError {
    /// The error frame code the relay answers with.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// A body decode failure and the code it answers with; any decode error is
/// `malformed` unless the decoder said otherwise where it found it.
struct Fault {
    error: DecodeError,
    code: ErrorCode,
}

impl From<DecodeError> for Fault {
    fn from(error: DecodeError) -> Self {
        Fault {
            error,
            code: ErrorCode::Malformed,
        }
    }
}

/// A count or length over its maximum answers `code`; anything else is
/// `malformed`.
fn over_limit(code: ErrorCode) -> impl FnOnce(DecodeError) -> Fault {
    move |error| {
        let code = match error {
            DecodeError::TooLong { .. } => code,
            _ => ErrorCode::Malformed,
        };
        Fault { error, code }
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        Error::Decode(e.error)
    }
}

/// A request from a client.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Deposit a batch of sealed envelopes (no session needed). `pow_nonce`
    /// is required when any recipient is registered as needing proof of work.
    Deposit {
        pow_nonce: Option<u64>,
        envelopes: Vec<Envelope>,
    },
    /// Register (or re-flag) a mailbox; signed with its auth key over the
    /// pending challenge (see [`register_message`]). Also opens a session.
    Register {
        keys: MailboxPublic,
        pow_required: bool,
        signature: Signature,
    },
    /// Ask for a fresh single-use authentication challenge.
    Challenge,
    /// Open a session on a mailbox: signature over [`auth_message`].
    Auth {
        mailbox: MailboxId,
        signature: Signature,
    },
    /// Push everything stored and then every new deposit (session needed).
    Subscribe,
    /// Delete delivered envelopes (session needed).
    Ack { ids: Vec<EnvelopeId> },
    /// Publish an org-signed team directory.
    PublishDirectory { directory: Vec<u8> },
    /// Fetch the newest directory signed by an organisation key.
    FetchDirectory { org_key: Ed25519Public },
    /// Replace the session mailbox's signed prekey bundle and add one-time
    /// prekeys of both kinds; with `replace`, the one-time prekeys the
    /// relay held for the mailbox (of both kinds) are dropped first.
    UploadPrekeys {
        signed_bundle: Vec<u8>,
        one_time: Vec<OneTimePrekey>,
        one_time_pq: Vec<OneTimePqPrekey>,
        replace: bool,
    },
    /// Fetch a mailbox's prekey bundle (consumes one one-time prekey of
    /// each kind).
    FetchPrekeys { mailbox: MailboxId },
    /// Store the session mailbox's encrypted state blob, kept `ttl_hours`
    /// (capped by the relay, rounded up to the hour).
    PutState { ttl_hours: u32, blob: Vec<u8> },
    /// Read the session mailbox's state blob back.
    GetState,
    /// Delete the session mailbox's state blob.
    DeleteState,
    /// Delete the session mailbox and everything it holds.
    DeleteMailbox,
    /// Store one sealed chunk of an attachment blob in `mailbox` (the
    /// seeker's mailbox of the conversation, whoever uploads; no session
    /// needed). Idempotent: the same chunk again changes nothing.
    PutChunk {
        mailbox: MailboxId,
        blob: BlobId,
        chunk_count: u16,
        index: u16,
        /// Exactly [`CHUNK_SEALED_LEN`] bytes.
        chunk: Vec<u8>,
    },
    /// Which chunks of a blob the relay holds (to resume an upload).
    BlobStatus { blob: BlobId },
    /// Fetch one chunk of a blob (knowing the blob id is the capability).
    GetChunk { blob: BlobId, index: u16 },
    /// Delete a blob and all its chunks (no session needed): `token` must
    /// derive `blob` ([`BlobDeleteToken::opens`]). A blob already gone is
    /// a success, so every device of a team may send it.
    DeleteBlob {
        blob: BlobId,
        token: BlobDeleteToken,
    },
}

impl ClientFrame {
    /// The variant's name (for logs; prints no content).
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Deposit { .. } => "deposit",
            ClientFrame::Register { .. } => "register",
            ClientFrame::Challenge => "challenge",
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Subscribe => "subscribe",
            ClientFrame::Ack { .. } => "ack",
            ClientFrame::PublishDirectory { .. } => "publish_directory",
            ClientFrame::FetchDirectory { .. } => "fetch_directory",
            ClientFrame::UploadPrekeys { .. } => "upload_prekeys",
            ClientFrame::FetchPrekeys { .. } => "fetch_prekeys",
            ClientFrame::PutState { .. } => "put_state",
            ClientFrame::GetState => "get_state",
            ClientFrame::DeleteState => "delete_state",
            ClientFrame::DeleteMailbox => "delete_mailbox",
            ClientFrame::PutChunk { .. } => "put_chunk",
            ClientFrame::BlobStatus { .. } => "blob_status",
            ClientFrame::GetChunk { .. } => "get_chunk",
            ClientFrame::DeleteBlob { .. } => "delete_blob",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ClientFrame::Deposit { .. } => 0x01,
            ClientFrame::Register { .. } => 0x02,
            ClientFrame::Challenge => 0x03,
            ClientFrame::Auth { .. } => 0x04,
            ClientFrame::Subscribe => 0x05,
            ClientFrame::Ack { .. } => 0x06,
            ClientFrame::PublishDirectory { .. } => 0x07,
            ClientFrame::FetchDirectory { .. } => 0x08,
            ClientFrame::UploadPrekeys { .. } => 0x09,
            ClientFrame::FetchPrekeys { .. } => 0x0A,
            ClientFrame::PutState { .. } => 0x0B,
            ClientFrame::GetState => 0x0C,
            ClientFrame::DeleteState => 0x0D,
            ClientFrame::DeleteMailbox => 0x0E,
            ClientFrame::PutChunk { .. } => 0x10,
            ClientFrame::BlobStatus { .. } => 0x11,
            ClientFrame::GetChunk { .. } => 0x12,
            ClientFrame::DeleteBlob { .. } => 0x13,
        }
    }

    /// Encodes `version || request_id || tag || body`; bodies per
    /// docs/PROTOCOL.md §4. Errors only on caller misuse (too many
    /// items, oversize fields).
    pub fn encode(&self, request_id: u32) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u8(FRAME_VERSION).u32(request_id).u8(self.tag());
        match self {
            ClientFrame::Deposit {
                pow_nonce,
                envelopes,
            } => {
                match pow_nonce {
                    None => w.u8(0),
                    Some(n) => w.u8(1).u64(*n),
                };
                write_batch(&mut w, envelopes)?;
            }
            ClientFrame::Register {
                keys,
                pow_required,
                signature,
            } => {
                keys.write(&mut w);
                w.u8(u8::from(*pow_required)).bytes(&signature.0);
            }
            ClientFrame::Auth { mailbox, signature } => {
                w.bytes(mailbox.as_bytes()).bytes(&signature.0);
            }
            ClientFrame::Ack { ids } => {
                w.count_u16(ids.len(), MAX_ACK_IDS, "ack ids")?;
                for id in ids {
                    w.bytes(id.as_bytes());
                }
            }
            ClientFrame::PublishDirectory { directory } => {
                w.vec_u32(directory, MAX_DIRECTORY_LEN, "directory")?;
            }
            ClientFrame::FetchDirectory { org_key } => {
                w.bytes(&org_key.0);
            }
            ClientFrame::UploadPrekeys {
                signed_bundle,
                one_time,
                one_time_pq,
                replace,
            } => {
                w.vec_u16(signed_bundle, MAX_PREKEY_BUNDLE_LEN, "prekey bundle")?;
                w.count_u16(one_time.len(), MAX_PREKEYS_PER_UPLOAD, "one-time prekeys")?;
                for k in one_time {
                    w.bytes(&k.to_bytes());
                }
                w.count_u16(
                    one_time_pq.len(),
                    MAX_PQ_PREKEYS_PER_UPLOAD,
                    "one-time pq prekeys",
                )?;
                for k in one_time_pq {
                    w.u32(k.id).bytes(&k.public[..]);
                }
                w.u8(u8::from(*replace));
            }
            ClientFrame::FetchPrekeys { mailbox } => {
                w.bytes(mailbox.as_bytes());
            }
            ClientFrame::PutState { ttl_hours, blob } => {
                w.u32(*ttl_hours);
                w.vec_u32(blob, MAX_STATE_LEN, "state blob")?;
            }
            ClientFrame::PutChunk {
                mailbox,
                blob,
                chunk_count,
                index,
                chunk,
            } => {
                check_chunk_position(*chunk_count, *index)?;
                if chunk.len() != CHUNK_SEALED_LEN {
                    return Err(Error::Decode(DecodeError::Invalid {
                        what: "sealed chunk length",
                    }));
                }
                w.bytes(mailbox.as_bytes())
                    .bytes(blob.as_bytes())
                    .u16(*chunk_count)
                    .u16(*index)
                    .bytes(chunk);
            }
            ClientFrame::BlobStatus { blob } => {
                w.bytes(blob.as_bytes());
            }
            ClientFrame::GetChunk { blob, index } => {
                w.bytes(blob.as_bytes()).u16(*index);
            }
            ClientFrame::DeleteBlob { blob, token } => {
                w.bytes(blob.as_bytes()).bytes(token.as_bytes());
            }
            ClientFrame::Challenge
            | ClientFrame::Subscribe
            | ClientFrame::GetState
            | ClientFrame::DeleteState
            | ClientFrame::DeleteMailbox => {}
        }
        Ok(w.into_bytes())
    }

    /// Strictly decodes a client frame, returning its request id.
    pub fn decode(bytes: &[u8]) -> Result<(u32, ClientFrame), FrameError> {
        let (request_id, tag, mut r) = read_header(bytes)?;
        let frame = Self::decode_body(tag, &mut r)
            .and_then(|f| r.finish("frame").map(|()| f).map_err(Fault::from))
            .map_err(|f| FrameError {
                request_id,
                error: f.error,
                code: f.code,
            })?;
        Ok((request_id, frame))
    }

    fn decode_body(tag: u8, r: &mut Reader<'_>) -> Result<ClientFrame, Fault> {
        Ok(match tag {
            0x01 => {
                let pow_nonce = match r.u8("pow flag")? {
                    0 => None,
                    1 => Some(r.u64("pow nonce")?),
                    t => {
                        return Err(DecodeError::UnknownTag {
                            what: "pow flag",
                            tag: t,
                        }
                        .into());
                    }
                };
                ClientFrame::Deposit {
                    pow_nonce,
                    envelopes: read_batch(r)?,
                }
            }
            0x02 => ClientFrame::Register {
                keys: MailboxPublic::read(r)?,
                pow_required: read_bool(r, "pow required flag")?,
                signature: Signature(r.array("signature")?),
            },
            0x03 => ClientFrame::Challenge,
            0x04 => ClientFrame::Auth {
                mailbox: MailboxId::from_bytes(r.array("mailbox id")?),
                signature: Signature(r.array("signature")?),
            },
            0x05 => ClientFrame::Subscribe,
            0x06 => {
                let n = r.count_u16(MAX_ACK_IDS, "ack ids")?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(EnvelopeId::from_bytes(r.array("envelope id")?));
                }
                ClientFrame::Ack { ids }
            }
            0x07 => ClientFrame::PublishDirectory {
                directory: r.vec_u32(MAX_DIRECTORY_LEN, "directory")?.to_vec(),
            },
            0x08 => ClientFrame::FetchDirectory {
                org_key: Ed25519Public(r.array("organisation key")?),
            },
            0x09 => {
                let signed_bundle = r.vec_u16(MAX_PREKEY_BUNDLE_LEN, "prekey bundle")?.to_vec();
                let n = r.count_u16(MAX_PREKEYS_PER_UPLOAD, "one-time prekeys")?;
                // Check the bytes are there before allocating for them.
                if r.remaining() < n * ONE_TIME_PREKEY_LEN {
                    return Err(DecodeError::UnexpectedEnd {
                        what: "one-time prekeys",
                    }
                    .into());
                }
                let mut one_time = Vec::with_capacity(n);
                for _ in 0..n {
                    one_time.push(OneTimePrekey::read(r)?);
                }
                let n = r.count_u16(MAX_PQ_PREKEYS_PER_UPLOAD, "one-time pq prekeys")?;
                if r.remaining() < n * ONE_TIME_PQ_PREKEY_LEN {
                    return Err(DecodeError::UnexpectedEnd {
                        what: "one-time pq prekeys",
                    }
                    .into());
                }
                let mut one_time_pq = Vec::with_capacity(n);
                for _ in 0..n {
                    one_time_pq.push(OneTimePqPrekey::read(r)?);
                }
                ClientFrame::UploadPrekeys {
                    signed_bundle,
                    one_time,
                    one_time_pq,
                    replace: read_bool(r, "replace flag")?,
                }
            }
            0x0A => ClientFrame::FetchPrekeys {
                mailbox: MailboxId::from_bytes(r.array("mailbox id")?),
            },
            0x0B => ClientFrame::PutState {
                ttl_hours: r.u32("state ttl")?,
                blob: r
                    .vec_u32(MAX_STATE_LEN, "state blob")
                    .map_err(over_limit(ErrorCode::StateTooLarge))?
                    .to_vec(),
            },
            0x0C => ClientFrame::GetState,
            0x0D => ClientFrame::DeleteState,
            0x0E => ClientFrame::DeleteMailbox,
            0x10 => {
                let mailbox = MailboxId::from_bytes(r.array("mailbox id")?);
                let blob = BlobId::from_bytes(r.array("blob id")?);
                let chunk_count = r.u16("chunk count")?;
                let index = r.u16("chunk index")?;
                read_chunk_position(chunk_count, index)?;
                ClientFrame::PutChunk {
                    mailbox,
                    blob,
                    chunk_count,
                    index,
                    chunk: r.take(CHUNK_SEALED_LEN, "sealed chunk")?.to_vec(),
                }
            }
            0x11 => ClientFrame::BlobStatus {
                blob: BlobId::from_bytes(r.array("blob id")?),
            },
            0x12 => ClientFrame::GetChunk {
                blob: BlobId::from_bytes(r.array("blob id")?),
                index: r.u16("chunk index")?,
            },
            0x13 => ClientFrame::DeleteBlob {
                blob: BlobId::from_bytes(r.array("blob id")?),
                token: BlobDeleteToken::from_bytes(r.array("blob delete token")?),
            },
            t => {
                return Err(DecodeError::UnknownTag {
                    what: "client frame",
                    tag: t,
                }
                .into());
            }
        })
    }
}

impl core::fmt::Debug for ClientFrame {
    // Names the variant only: frames carry ciphertext, keys and blobs.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ClientFrame::{}", self.name())
    }
}

/// A reply or push from the relay.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Sent once on connect (request id 0): the proof-of-work challenge of
    /// this connection and the relay's limits.
    Hello {
        pow_challenge: [u8; CHALLENGE_LEN],
        pow_difficulty: u8,
        max_frame_len: u32,
        max_batch: u16,
    },
    /// Success with nothing to return.
    Ok,
    /// A fresh single-use authentication challenge.
    Challenge { challenge: [u8; 32] },
    /// The batch is durably stored for every recipient with room:
    /// `accepted` envelopes are held (stored now or already), the ones in
    /// `refused` (by position, ascending) are not. The proof-of-work
    /// challenge for the next deposit on this connection (rotated after
    /// every accepted proof).
    Deposited {
        accepted: u16,
        next_pow_challenge: [u8; CHALLENGE_LEN],
        refused: Vec<Refused>,
    },
    /// Subscription started; `pending` stored envelopes follow as deliveries.
    Subscribed { pending: u32 },
    /// A stored envelope pushed to a subscriber (request id 0). `id` is
    /// `EnvelopeId::of(envelope.encode())`; acknowledge it to delete it.
    Deliver {
        id: EnvelopeId,
        expires_at: UnixTime,
        envelope: Envelope,
    },
    /// How many acknowledged envelopes were deleted.
    Acked { deleted: u32 },
    /// The newest stored directory of the requested organisation.
    Directory { directory: Vec<u8> },
    /// The prekeys were stored; one-time prekeys of each kind now held.
    PrekeysStored {
        one_time_count: u32,
        one_time_pq_count: u32,
    },
    /// A prekey bundle, with one one-time prekey of each kind while any remain.
    Prekeys {
        signed_bundle: Vec<u8>,
        one_time: Option<OneTimePrekey>,
        one_time_pq: Option<OneTimePqPrekey>,
    },
    /// The state blob is stored until `expires_at` (on the hour).
    StateStored { expires_at: UnixTime },
    /// The stored state blob.
    State { expires_at: UnixTime, blob: Vec<u8> },
    /// The request failed; nothing was changed.
    Error { code: ErrorCode },
    /// Chunk `index` is durably stored; the blob now holds `held` chunks.
    ChunkStored { index: u16, held: u16 },
    /// Which chunks of a blob are held: `present[i]` for chunk `i`.
    BlobChunks { present: Vec<bool> },
    /// One sealed chunk of a blob.
    Chunk { index: u16, chunk: Vec<u8> },
}

impl ServerFrame {
    /// The variant's name (for logs; prints no content).
    pub fn name(&self) -> &'static str {
        match self {
            ServerFrame::Hello { .. } => "hello",
            ServerFrame::Ok => "ok",
            ServerFrame::Challenge { .. } => "challenge",
            ServerFrame::Deposited { .. } => "deposited",
            ServerFrame::Subscribed { .. } => "subscribed",
            ServerFrame::Deliver { .. } => "deliver",
            ServerFrame::Acked { .. } => "acked",
            ServerFrame::Directory { .. } => "directory",
            ServerFrame::PrekeysStored { .. } => "prekeys_stored",
            ServerFrame::Prekeys { .. } => "prekeys",
            ServerFrame::StateStored { .. } => "state_stored",
            ServerFrame::State { .. } => "state",
            ServerFrame::Error { .. } => "error",
            ServerFrame::ChunkStored { .. } => "chunk_stored",
            ServerFrame::BlobChunks { .. } => "blob_chunks",
            ServerFrame::Chunk { .. } => "chunk",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            ServerFrame::Hello { .. } => 0x80,
            ServerFrame::Ok => 0x81,
            ServerFrame::Challenge { .. } => 0x82,
            ServerFrame::Deposited { .. } => 0x83,
            ServerFrame::Subscribed { .. } => 0x84,
            ServerFrame::Deliver { .. } => 0x85,
            ServerFrame::Acked { .. } => 0x86,
            ServerFrame::Directory { .. } => 0x87,
            ServerFrame::PrekeysStored { .. } => 0x88,
            ServerFrame::Prekeys { .. } => 0x89,
            ServerFrame::StateStored { .. } => 0x8A,
            ServerFrame::State { .. } => 0x8B,
            ServerFrame::Error { .. } => 0xFF,
            ServerFrame::ChunkStored { .. } => 0x90,
            ServerFrame::BlobChunks { .. } => 0x91,
            ServerFrame::Chunk { .. } => 0x92,
        }
    }

    /// Encodes `version || request_id || tag || body`.
    pub fn encode(&self, request_id: u32) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        w.u8(FRAME_VERSION).u32(request_id).u8(self.tag());
        match self {
            ServerFrame::Hello {
                pow_challenge,
                pow_difficulty,
                max_frame_len,
                max_batch,
            } => {
                w.bytes(pow_challenge)
                    .u8(*pow_difficulty)
                    .u32(*max_frame_len)
                    .u16(*max_batch);
            }
            ServerFrame::Ok => {}
            ServerFrame::Challenge { challenge } => {
                w.bytes(challenge);
            }
            ServerFrame::Deposited {
                accepted,
                next_pow_challenge,
                refused,
            } => {
                w.u16(*accepted).bytes(next_pow_challenge).count_u16(
                    refused.len(),
                    MAX_BATCH_ENVELOPES,
                    "refused envelopes",
                )?;
                for r in refused {
                    w.u16(r.index).u16(r.code.to_u16());
                }
            }
            ServerFrame::Subscribed { pending } => {
                w.u32(*pending);
            }
            ServerFrame::Deliver {
                id,
                expires_at,
                envelope,
            } => {
                w.bytes(id.as_bytes())
                    .u64(expires_at.0)
                    .bytes(&envelope.encode());
            }
            ServerFrame::Acked { deleted } => {
                w.u32(*deleted);
            }
            ServerFrame::Directory { directory } => {
                w.vec_u32(directory, MAX_DIRECTORY_LEN, "directory")?;
            }
            ServerFrame::PrekeysStored {
                one_time_count,
                one_time_pq_count,
            } => {
                w.u32(*one_time_count).u32(*one_time_pq_count);
            }
            ServerFrame::Prekeys {
                signed_bundle,
                one_time,
                one_time_pq,
            } => {
                w.vec_u16(signed_bundle, MAX_PREKEY_BUNDLE_LEN, "prekey bundle")?;
                match one_time {
                    None => w.u8(0),
                    Some(k) => w.u8(1).bytes(&k.to_bytes()),
                };
                match one_time_pq {
                    None => w.u8(0),
                    Some(k) => w.u8(1).u32(k.id).bytes(&k.public[..]),
                };
            }
            ServerFrame::StateStored { expires_at } => {
                w.u64(expires_at.0);
            }
            ServerFrame::State { expires_at, blob } => {
                w.u64(expires_at.0);
                w.vec_u32(blob, MAX_STATE_LEN, "state blob")?;
            }
            ServerFrame::Error { code } => {
                w.u16(code.to_u16());
            }
            ServerFrame::ChunkStored { index, held } => {
                w.u16(*index).u16(*held);
            }
            ServerFrame::BlobChunks { present } => {
                let count = u16::try_from(present.len()).unwrap_or(u16::MAX);
                check_chunk_position(count, 0)?;
                w.u16(count);
                let mut bits = vec![0u8; present.len().div_ceil(8)];
                for (i, p) in present.iter().enumerate() {
                    if *p {
                        bits[i / 8] |= 1 << (i % 8);
                    }
                }
                w.bytes(&bits);
            }
            ServerFrame::Chunk { index, chunk } => {
                if chunk.len() != CHUNK_SEALED_LEN {
                    return Err(Error::Decode(DecodeError::Invalid {
                        what: "sealed chunk length",
                    }));
                }
                w.u16(*index).bytes(chunk);
            }
        }
        Ok(w.into_bytes())
    }

    /// Strictly decodes a relay frame, returning its request id.
    pub fn decode(bytes: &[u8]) -> Result<(u32, ServerFrame), FrameError> {
        let (request_id, tag, mut r) = read_header(bytes)?;
        let frame = Self::decode_body(tag, &mut r)
            .and_then(|f| r.finish("frame").map(|()| f))
            .map_err(|error| FrameError {
                request_id,
                error,
                code: ErrorCode::Malformed,
            })?;
        Ok((request_id, frame))
    }

    fn decode_body(tag: u8, r: &mut Reader<'_>) -> Result<ServerFrame, DecodeError> {
        Ok(match tag {
            0x80 => ServerFrame::Hello {
                pow_challenge: r.array("pow challenge")?,
                pow_difficulty: r.u8("pow difficulty")?,
                max_frame_len: r.u32("max frame length")?,
                max_batch: r.u16("max batch")?,
            },
            0x81 => ServerFrame::Ok,
            0x82 => ServerFrame::Challenge {
                challenge: r.array("auth challenge")?,
            },
            0x83 => {
                let accepted = r.u16("accepted count")?;
                let next_pow_challenge = r.array("pow challenge")?;
                let n = r.count_u16(MAX_BATCH_ENVELOPES, "refused envelopes")?;
                // The batch had `accepted + n` envelopes, at most 64; the
                // refused ones are named once each, in ascending order.
                let batch = usize::from(accepted) + n;
                if batch > MAX_BATCH_ENVELOPES {
                    return Err(DecodeError::Invalid {
                        what: "deposit result",
                    });
                }
                let mut refused: Vec<Refused> = Vec::with_capacity(n);
                for _ in 0..n {
                    let index = r.u16("refused index")?;
                    let code = ErrorCode::from_u16(r.u16("refused code")?).ok_or(
                        DecodeError::Invalid {
                            what: "refused code",
                        },
                    )?;
                    if usize::from(index) >= batch
                        || refused.last().is_some_and(|p| p.index >= index)
                    {
                        return Err(DecodeError::Invalid {
                            what: "refused index",
                        });
                    }
                    refused.push(Refused { index, code });
                }
                ServerFrame::Deposited {
                    accepted,
                    next_pow_challenge,
                    refused,
                }
            }
            0x84 => ServerFrame::Subscribed {
                pending: r.u32("pending count")?,
            },
            0x85 => {
                let id = EnvelopeId::from_bytes(r.array("envelope id")?);
                let expires_at = UnixTime(r.u64("expiry")?);
                let envelope = Envelope::read(r)?;
                if EnvelopeId::of(&envelope.encode()) != id {
                    return Err(DecodeError::Invalid {
                        what: "envelope id",
                    });
                }
                ServerFrame::Deliver {
                    id,
                    expires_at,
                    envelope,
                }
            }
            0x86 => ServerFrame::Acked {
                deleted: r.u32("deleted count")?,
            },
            0x87 => ServerFrame::Directory {
                directory: r.vec_u32(MAX_DIRECTORY_LEN, "directory")?.to_vec(),
            },
            0x88 => ServerFrame::PrekeysStored {
                one_time_count: r.u32("one-time prekey count")?,
                one_time_pq_count: r.u32("one-time pq prekey count")?,
            },
            0x89 => {
                let signed_bundle = r.vec_u16(MAX_PREKEY_BUNDLE_LEN, "prekey bundle")?.to_vec();
                let one_time = match r.u8("one-time prekey flag")? {
                    0 => None,
                    1 => Some(OneTimePrekey::read(r)?),
                    t => {
                        return Err(DecodeError::UnknownTag {
                            what: "one-time prekey flag",
                            tag: t,
                        });
                    }
                };
                let one_time_pq = match r.u8("one-time pq prekey flag")? {
                    0 => None,
                    1 => Some(OneTimePqPrekey::read(r)?),
                    t => {
                        return Err(DecodeError::UnknownTag {
                            what: "one-time pq prekey flag",
                            tag: t,
                        });
                    }
                };
                ServerFrame::Prekeys {
                    signed_bundle,
                    one_time,
                    one_time_pq,
                }
            }
            0x8A => ServerFrame::StateStored {
                expires_at: UnixTime(r.u64("expiry")?),
            },
            0x8B => ServerFrame::State {
                expires_at: UnixTime(r.u64("expiry")?),
                blob: r.vec_u32(MAX_STATE_LEN, "state blob")?.to_vec(),
            },
            0x90 => ServerFrame::ChunkStored {
                index: r.u16("chunk index")?,
                held: r.u16("chunks held")?,
            },
            0x91 => {
                let count = r.u16("chunk count")?;
                read_chunk_position(count, 0).map_err(|f| f.error)?;
                let n = usize::from(count);
                let bits = r.take(n.div_ceil(8), "chunk bitmap")?;
                // Bits past the count must be zero (one encoding per value).
                if n % 8 != 0 && bits[n / 8] >> (n % 8) != 0 {
                    return Err(DecodeError::Invalid {
                        what: "chunk bitmap",
                    });
                }
                ServerFrame::BlobChunks {
                    present: (0..n).map(|i| bits[i / 8] & (1 << (i % 8)) != 0).collect(),
                }
            }
            0x92 => ServerFrame::Chunk {
                index: r.u16("chunk index")?,
                chunk: r.take(CHUNK_SEALED_LEN, "sealed chunk")?.to_vec(),
            },
            0xFF => {
                let v = r.u16("error code")?;
                ServerFrame::Error {
                    code: ErrorCode::from_u16(v)
                        .ok_or(DecodeError::Invalid { what: "error code" })?,
                }
            }
            t => {
                return Err(DecodeError::UnknownTag {
                    what: "server frame",
                    tag: t,
                });
            }
        })
    }
}

impl core::fmt::Debug for ServerFrame {
    // Errors show their code; other variants only their name.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServerFrame::Error { code } => write!(f, "ServerFrame::error({})", code.name()),
            other => write!(f, "ServerFrame::{}", other.name()),
        }
    }
}

/// Reads `version || request_id || tag`, checking the overall size first.
fn read_header(bytes: &[u8]) -> Result<(u32, u8, Reader<'_>), FrameError> {
    let mut r = Reader::new(bytes);
    // The request id is read even when the version is wrong, so the error
    // can be answered to the right request.
    let malformed = |request_id, error| FrameError {
        request_id,
        error,
        code: ErrorCode::Malformed,
    };
    let version = r.u8("frame").map_err(|e| malformed(0, e))?;
    let request_id = r.u32("request id").map_err(|e| malformed(0, e))?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(FrameError {
            request_id,
            error: DecodeError::TooLong {
                what: "frame",
                max: MAX_FRAME_LEN,
                got: bytes.len(),
            },
            code: ErrorCode::FrameTooLarge,
        });
    }
    if version != FRAME_VERSION {
        return Err(FrameError {
            request_id,
            error: DecodeError::UnsupportedVersion {
                what: "frame",
                expected: FRAME_VERSION,
                got: version,
            },
            code: ErrorCode::UnsupportedVersion,
        });
    }
    let tag = r.u8("frame tag").map_err(|e| malformed(request_id, e))?;
    Ok((request_id, tag, r))
}

fn read_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(DecodeError::UnknownTag { what, tag }),
    }
}

/// A blob's chunk count must be 1..=[`MAX_CHUNKS`] and the index below it
/// (caller misuse when encoding).
fn check_chunk_position(count: u16, index: u16) -> Result<(), Error> {
    read_chunk_position(count, index).map_err(|f| Error::Decode(f.error))
}

/// The same check when decoding: too many chunks is
/// `attachment_too_large`, an index past the last `blob_mismatch`.
fn read_chunk_position(count: u16, index: u16) -> Result<(), Fault> {
    if count == 0 || usize::from(count) > MAX_CHUNKS {
        return Err(Fault {
            error: DecodeError::TooLong {
                what: "attachment chunks",
                max: MAX_CHUNKS,
                got: usize::from(count),
            },
            code: ErrorCode::AttachmentTooLarge,
        });
    }
    if index >= count {
        return Err(Fault {
            error: DecodeError::Invalid {
                what: "chunk index",
            },
            code: ErrorCode::BlobMismatch,
        });
    }
    Ok(())
}

/// `count:u16 || envelope_1 || … || envelope_count` (1 ≤ count ≤ 64).
fn write_batch(w: &mut Writer, envelopes: &[Envelope]) -> Result<(), Error> {
    if envelopes.is_empty() {
        return Err(crate::ApiMisuse::EmptyBatch.into());
    }
    w.count_u16(envelopes.len(), MAX_BATCH_ENVELOPES, "deposit batch")?;
    for e in envelopes {
        w.bytes(&e.encode());
    }
    Ok(())
}

fn read_batch(r: &mut Reader<'_>) -> Result<Vec<Envelope>, Fault> {
    let n = r
        .count_u16(MAX_BATCH_ENVELOPES, "deposit batch")
        .map_err(over_limit(ErrorCode::BatchTooLarge))?;
    if n == 0 {
        return Err(DecodeError::TooShort {
            what: "deposit batch",
            min: 1,
            got: 0,
        }
        .into());
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Envelope::read(r)?);
    }
    Ok(out)
}

/// The hash a deposit's proof of work covers:
/// `SHA-256("northstar/v1/deposit-batch" || count:u16 || envelope_1 || …)`,
/// i.e. the domain followed by the batch exactly as encoded in the frame.
pub fn deposit_batch_hash(envelopes: &[Envelope]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DEPOSIT_BATCH_DOMAIN);
    // Decoded batches never exceed MAX_BATCH_ENVELOPES, so this fits.
    h.update((envelopes.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for e in envelopes {
        h.update(e.encode());
    }
    h.finalize().into()
}

/// What a client signs to open a session:
/// `"northstar/v1/relay-auth" || challenge[32] || mailbox_id[32]`.
pub fn auth_message(challenge: &[u8; 32], mailbox: &MailboxId) -> Vec<u8> {
    let mut m = Vec::with_capacity(AUTH_DOMAIN.len() + 64);
    m.extend_from_slice(AUTH_DOMAIN);
    m.extend_from_slice(challenge);
    m.extend_from_slice(mailbox.as_bytes());
    m
}

/// What a client signs to register a mailbox:
/// `"northstar/v1/relay-register" || challenge[32] || mailbox_id[32] || pow_required:u8`.
pub fn register_message(challenge: &[u8; 32], mailbox: &MailboxId, pow_required: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(REGISTER_DOMAIN.len() + 65);
    m.extend_from_slice(REGISTER_DOMAIN);
    m.extend_from_slice(challenge);
    m.extend_from_slice(mailbox.as_bytes());
    m.push(u8::from(pow_required));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn env(seed: u8, len: usize) -> Envelope {
        Envelope::from_parts(MailboxId::from_bytes([seed; 32]), vec![seed; len]).unwrap()
    }

    fn keys() -> MailboxPublic {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        MailboxPublic {
            auth: Ed25519Public(sk.verifying_key().to_bytes()),
            seal: X25519Public([4; 32]),
        }
    }

    fn pq_otk(id: u32) -> OneTimePqPrekey {
        OneTimePqPrekey {
            id,
            public: Box::new([id as u8; ONE_TIME_PQ_PREKEY_LEN - 4]),
        }
    }

    fn all_client_frames() -> Vec<ClientFrame> {
        vec![
            ClientFrame::Deposit {
                pow_nonce: None,
                envelopes: vec![env(1, 48)],
            },
            ClientFrame::Deposit {
                pow_nonce: Some(u64::MAX),
                envelopes: vec![env(1, 48), env(2, 100)],
            },
            ClientFrame::Register {
                keys: keys(),
                pow_required: true,
                signature: Signature([5; 64]),
            },
            ClientFrame::Challenge,
            ClientFrame::Auth {
                mailbox: MailboxId::from_bytes([6; 32]),
                signature: Signature([7; 64]),
            },
            ClientFrame::Subscribe,
            ClientFrame::Ack {
                ids: vec![EnvelopeId::from_bytes([8; 32]); 3],
            },
            ClientFrame::PublishDirectory {
                directory: vec![9; 300],
            },
            ClientFrame::FetchDirectory {
                org_key: Ed25519Public([10; 32]),
            },
            ClientFrame::UploadPrekeys {
                signed_bundle: vec![11; 1500],
                one_time: vec![
                    OneTimePrekey {
                        id: 1,
                        public: X25519Public([12; 32]),
                    };
                    5
                ],
                one_time_pq: vec![pq_otk(2), pq_otk(3)],
                replace: true,
            },
            ClientFrame::UploadPrekeys {
                signed_bundle: vec![11; 1500],
                one_time: Vec::new(),
                one_time_pq: Vec::new(),
                replace: false,
            },
            ClientFrame::FetchPrekeys {
                mailbox: MailboxId::from_bytes([13; 32]),
            },
            ClientFrame::PutState {
                ttl_hours: 24,
                blob: vec![14; 77],
            },
            ClientFrame::GetState,
            ClientFrame::DeleteState,
            ClientFrame::DeleteMailbox,
            ClientFrame::PutChunk {
                mailbox: MailboxId::from_bytes([3; 32]),
                blob: BlobId::from_bytes([4; 32]),
                chunk_count: 160,
                index: 159,
                chunk: vec![5; CHUNK_SEALED_LEN],
            },
            ClientFrame::BlobStatus {
                blob: BlobId::from_bytes([4; 32]),
            },
            ClientFrame::GetChunk {
                blob: BlobId::from_bytes([4; 32]),
                index: 7,
            },
            ClientFrame::DeleteBlob {
                blob: BlobId::from_bytes([4; 32]),
                token: BlobDeleteToken::from_bytes([6; 32]),
            },
        ]
    }

    fn all_server_frames() -> Vec<ServerFrame> {
        let e = env(1, 60);
        vec![
            ServerFrame::Hello {
                pow_challenge: [1; 32],
                pow_difficulty: 16,
                max_frame_len: 1 << 20,
                max_batch: 64,
            },
            ServerFrame::Ok,
            ServerFrame::Challenge { challenge: [2; 32] },
            ServerFrame::Deposited {
                accepted: 3,
                next_pow_challenge: [3; 32],
                refused: Vec::new(),
            },
            ServerFrame::Deposited {
                accepted: 2,
                next_pow_challenge: [3; 32],
                refused: vec![
                    Refused {
                        index: 0,
                        code: ErrorCode::QuotaExceeded,
                    },
                    Refused {
                        index: 3,
                        code: ErrorCode::QuotaExceeded,
                    },
                ],
            },
            ServerFrame::Subscribed { pending: 4 },
            ServerFrame::Deliver {
                id: EnvelopeId::of(&e.encode()),
                expires_at: UnixTime(3600 * 5),
                envelope: e,
            },
            ServerFrame::Acked { deleted: 5 },
            ServerFrame::Directory {
                directory: vec![6; 10],
            },
            ServerFrame::PrekeysStored {
                one_time_count: 7,
                one_time_pq_count: 8,
            },
            ServerFrame::Prekeys {
                signed_bundle: vec![8; 20],
                one_time: None,
                one_time_pq: None,
            },
            ServerFrame::Prekeys {
                signed_bundle: vec![8; 20],
                one_time: Some(OneTimePrekey {
                    id: 9,
                    public: X25519Public([9; 32]),
                }),
                one_time_pq: Some(pq_otk(10)),
            },
            ServerFrame::Prekeys {
                signed_bundle: vec![8; 20],
                one_time: None,
                one_time_pq: Some(pq_otk(11)),
            },
            ServerFrame::StateStored {
                expires_at: UnixTime(7200),
            },
            ServerFrame::State {
                expires_at: UnixTime(7200),
                blob: vec![10; 5],
            },
            ServerFrame::Error {
                code: ErrorCode::QuotaExceeded,
            },
            ServerFrame::ChunkStored { index: 3, held: 4 },
            ServerFrame::BlobChunks {
                present: vec![
                    true, false, true, true, false, false, false, false, true, true,
                ],
            },
            ServerFrame::BlobChunks {
                present: vec![false; 8],
            },
            ServerFrame::Chunk {
                index: 2,
                chunk: vec![6; CHUNK_SEALED_LEN],
            },
        ]
    }

    #[test]
    fn chunk_frames_are_strict() {
        // A chunk of the wrong length is refused both ways.
        let put = ClientFrame::PutChunk {
            mailbox: MailboxId::from_bytes([3; 32]),
            blob: BlobId::from_bytes([4; 32]),
            chunk_count: 2,
            index: 1,
            chunk: vec![5; CHUNK_SEALED_LEN],
        };
        let mut b = put.encode(9).unwrap();
        b.pop();
        assert!(ClientFrame::decode(&b).is_err());
        // Too many chunks: attachment_too_large; index past the end: blob_mismatch.
        let mut b = put.encode(9).unwrap();
        b[6 + 64..6 + 66].copy_from_slice(&161u16.to_be_bytes());
        assert_eq!(
            ClientFrame::decode(&b).unwrap_err().code(),
            ErrorCode::AttachmentTooLarge
        );
        let mut b = put.encode(9).unwrap();
        b[6 + 66..6 + 68].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            ClientFrame::decode(&b).unwrap_err().code(),
            ErrorCode::BlobMismatch
        );
        let mut b = put.encode(9).unwrap();
        b[6 + 64..6 + 66].copy_from_slice(&0u16.to_be_bytes());
        assert!(ClientFrame::decode(&b).is_err());
        // A bitmap with a bit set past the count is refused.
        let mut b = ServerFrame::BlobChunks {
            present: vec![true; 3],
        }
        .encode(1)
        .unwrap();
        *b.last_mut().unwrap() |= 0x08;
        assert!(ServerFrame::decode(&b).is_err());
        assert!(
            ServerFrame::BlobChunks { present: vec![] }
                .encode(1)
                .is_err()
        );
    }

    #[test]
    fn every_frame_round_trips() {
        for (i, f) in all_client_frames().into_iter().enumerate() {
            let b = f.encode(i as u32 + 1).unwrap();
            assert_eq!(ClientFrame::decode(&b).unwrap(), (i as u32 + 1, f));
        }
        for (i, f) in all_server_frames().into_iter().enumerate() {
            let b = f.encode(i as u32).unwrap();
            assert_eq!(ServerFrame::decode(&b).unwrap(), (i as u32, f));
        }
    }

    /// The failure: a version 1 client and a version 2 relay (the deposit
    /// and prekey frames changed meaning between them) talk past each
    /// other. Each side refuses the other's frames by their version byte,
    /// before anything else is read, with `unsupported_version`.
    #[test]
    fn a_version_1_frame_is_refused_with_a_clear_error() {
        let v1_challenge = [1, 0, 0, 0, 7, 0x03];
        let e = ClientFrame::decode(&v1_challenge).unwrap_err();
        assert_eq!((e.request_id, e.code()), (7, ErrorCode::UnsupportedVersion));
        assert_eq!(
            e.error,
            DecodeError::UnsupportedVersion {
                what: "frame",
                expected: 2,
                got: 1
            }
        );
        assert_eq!(
            e.to_string(),
            "frame (request 7): unsupported frame version 1, expected 2"
        );
        // The relay's answer, to the request it could read the id of.
        let reply = ServerFrame::Error { code: e.code() }
            .encode(e.request_id)
            .unwrap();
        assert_eq!(reply, [2, 0, 0, 0, 7, 0xFF, 0, 2]);
        assert_eq!(ErrorCode::UnsupportedVersion.name(), "unsupported_version");
        // A version 1 relay's hello, as a version 2 client reads it.
        let mut hello = ServerFrame::Hello {
            pow_challenge: [0; 32],
            pow_difficulty: 16,
            max_frame_len: 1 << 20,
            max_batch: 64,
        }
        .encode(PUSH_REQUEST_ID)
        .unwrap();
        hello[0] = 1;
        let e = ServerFrame::decode(&hello).unwrap_err();
        assert_eq!(
            e.error,
            DecodeError::UnsupportedVersion {
                what: "frame",
                expected: 2,
                got: 1
            }
        );
        // Every frame is written as version 2.
        for f in all_client_frames() {
            assert_eq!(f.encode(1).unwrap()[0], 2);
        }
        for f in all_server_frames() {
            assert_eq!(f.encode(1).unwrap()[0], 2);
        }
    }

    #[test]
    fn strictness() {
        let good = ClientFrame::Subscribe.encode(42).unwrap();
        assert_eq!(good, [2, 0, 0, 0, 42, 5]);
        let mut bad = good.clone();
        bad[0] = 1;
        let e = ClientFrame::decode(&bad).unwrap_err();
        assert_eq!(
            (e.request_id, e.code()),
            (42, ErrorCode::UnsupportedVersion)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        let e = ClientFrame::decode(&trailing).unwrap_err();
        assert_eq!((e.request_id, e.code()), (42, ErrorCode::Malformed));
        assert_eq!(ClientFrame::decode(&[2, 0]).unwrap_err().request_id, 0);
        let mut unknown = good.clone();
        unknown[5] = 0x7F;
        assert!(ClientFrame::decode(&unknown).is_err());
        // Empty batch, bad pow flag, too many envelopes.
        assert!(ClientFrame::decode(&[2, 0, 0, 0, 1, 1, 0, 0, 0]).is_err());
        assert!(ClientFrame::decode(&[2, 0, 0, 0, 1, 1, 2, 0, 1]).is_err());
        let e = ClientFrame::decode(&[2, 0, 0, 0, 1, 1, 0, 0, 65]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BatchTooLarge);
        let huge = vec![2u8; MAX_FRAME_LEN + 1];
        let e = ClientFrame::decode(&huge).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        // A deliver whose id does not match its envelope.
        let e = env(1, 60);
        let mut b = ServerFrame::Deliver {
            id: EnvelopeId::of(&e.encode()),
            expires_at: UnixTime(0),
            envelope: e,
        }
        .encode(0)
        .unwrap();
        b[6] ^= 1;
        assert!(ServerFrame::decode(&b).is_err());
        assert!(ServerFrame::decode(&[2, 0, 0, 0, 0, 0xFF, 0, 99]).is_err());
        // Prekey frames of protocol version 1 (no one-time ML-KEM prekeys,
        // no replace flag) do not decode; nor do flags other than 0 or 1.
        assert!(ClientFrame::decode(&[2, 0, 0, 0, 1, 0x09, 0, 1, 0xAA, 0, 0]).is_err());
        assert!(ServerFrame::decode(&[2, 0, 0, 0, 1, 0x89, 0, 1, 0xAA, 0]).is_err());
        assert!(ServerFrame::decode(&[2, 0, 0, 0, 1, 0x89, 0, 1, 0xAA, 0, 2]).is_err());
        assert!(ServerFrame::decode(&[2, 0, 0, 0, 1, 0x88, 0, 0, 0, 1]).is_err());
        let mut up = ClientFrame::UploadPrekeys {
            signed_bundle: vec![1],
            one_time: Vec::new(),
            one_time_pq: vec![pq_otk(1)],
            replace: true,
        }
        .encode(1)
        .unwrap();
        *up.last_mut().unwrap() = 2;
        assert!(ClientFrame::decode(&up).is_err());
        up.pop();
        assert!(ClientFrame::decode(&up).is_err());
        // A count of one-time ML-KEM prekeys with fewer bytes than it says.
        let mut short = vec![2, 0, 0, 0, 1, 0x09, 0, 1, 0xAA, 0, 0, 0, 2];
        short.extend_from_slice(&[0; ONE_TIME_PQ_PREKEY_LEN]);
        short.push(0);
        assert!(ClientFrame::decode(&short).is_err());
        // A deposit result names each refused envelope once, in order,
        // within the batch, with a known code.
        let deposited = |accepted: u16, refused: &[(u16, u16)]| {
            let mut b = vec![2, 0, 0, 0, 1, 0x83];
            b.extend_from_slice(&accepted.to_be_bytes());
            b.extend_from_slice(&[0; 32]);
            b.extend_from_slice(&(refused.len() as u16).to_be_bytes());
            for (i, c) in refused {
                b.extend_from_slice(&i.to_be_bytes());
                b.extend_from_slice(&c.to_be_bytes());
            }
            ServerFrame::decode(&b)
        };
        assert!(deposited(1, &[(1, 10)]).is_ok());
        assert!(deposited(1, &[(2, 10)]).is_err(), "beyond the batch");
        assert!(deposited(0, &[(1, 10), (0, 10)]).is_err(), "out of order");
        assert!(deposited(0, &[(0, 10), (0, 10)]).is_err(), "twice");
        assert!(deposited(1, &[(0, 99)]).is_err(), "unknown code");
        assert!(deposited(64, &[(0, 10)]).is_err(), "over 64 in all");
        assert!(deposited(65, &[]).is_err());
    }

    #[test]
    fn signed_messages_are_domain_separated() {
        let id = MailboxId::from_bytes([1; 32]);
        let a = auth_message(&[2; 32], &id);
        assert!(a.starts_with(b"northstar/v1/relay-auth"));
        assert_eq!(a.len(), 23 + 64);
        let r = register_message(&[2; 32], &id, true);
        assert!(r.starts_with(b"northstar/v1/relay-register"));
        assert_eq!(r.last(), Some(&1));
        assert_ne!(
            deposit_batch_hash(&[env(1, 48)]),
            deposit_batch_hash(&[env(1, 48), env(1, 48)])
        );
    }

    #[test]
    fn debug_prints_no_content() {
        let f = ClientFrame::PutState {
            ttl_hours: 1,
            blob: b"secret".to_vec(),
        };
        assert_eq!(format!("{f:?}"), "ClientFrame::put_state");
    }

    /// docs/vectors/relay.json: every frame, the signed messages, the batch
    /// hash and a proof of work, from fixed inputs (regenerated and compared).
    #[test]
    fn vectors() {
        use ed25519_dalek::Signer;
        use rand_chacha::ChaCha20Rng;
        use rand_core::{RngCore, SeedableRng};

        let mut rng = ChaCha20Rng::from_seed([0x40; 32]);
        let mut draw = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        };
        let auth_seed = draw();
        let seal_pk = draw();
        let auth_challenge = draw();
        let pow_challenge = draw();
        let mut ct = draw().to_vec();
        ct.extend_from_slice(&draw()[..16]);
        let sk = ed25519_dalek::SigningKey::from_bytes(&auth_seed);
        let keys = MailboxPublic {
            auth: Ed25519Public(sk.verifying_key().to_bytes()),
            seal: X25519Public(seal_pk),
        };
        let id = keys.id();
        let env = Envelope::from_parts(id, ct).unwrap();
        let batch = vec![env.clone()];
        let batch_hash = deposit_batch_hash(&batch);
        let difficulty = 8;
        let nonce = crate::pow::solve(&pow_challenge, &batch_hash, difficulty).unwrap();
        let auth_msg = auth_message(&auth_challenge, &id);
        let auth_sig = Signature(sk.sign(&auth_msg).to_bytes());
        let reg_msg = register_message(&auth_challenge, &id, true);
        let reg_sig = Signature(sk.sign(&reg_msg).to_bytes());
        let env_id = EnvelopeId::of(&env.encode());
        let otk = OneTimePrekey {
            id: 7,
            public: X25519Public([0x77; 32]),
        };
        let pq_otk = OneTimePqPrekey {
            id: 8,
            public: Box::new([0x88; ONE_TIME_PQ_PREKEY_LEN - 4]),
        };
        let client = vec![
            (
                "deposit",
                ClientFrame::Deposit {
                    pow_nonce: Some(nonce),
                    envelopes: batch.clone(),
                },
            ),
            (
                "deposit_without_pow",
                ClientFrame::Deposit {
                    pow_nonce: None,
                    envelopes: batch.clone(),
                },
            ),
            (
                "register",
                ClientFrame::Register {
                    keys,
                    pow_required: true,
                    signature: reg_sig,
                },
            ),
            ("challenge", ClientFrame::Challenge),
            (
                "auth",
                ClientFrame::Auth {
                    mailbox: id,
                    signature: auth_sig,
                },
            ),
            ("subscribe", ClientFrame::Subscribe),
            ("ack", ClientFrame::Ack { ids: vec![env_id] }),
            (
                "publish_directory",
                ClientFrame::PublishDirectory {
                    directory: vec![1, 2, 3],
                },
            ),
            (
                "fetch_directory",
                ClientFrame::FetchDirectory { org_key: keys.auth },
            ),
            (
                "upload_prekeys",
                ClientFrame::UploadPrekeys {
                    signed_bundle: vec![0xb0; 4],
                    one_time: vec![otk],
                    one_time_pq: vec![pq_otk.clone()],
                    replace: true,
                },
            ),
            ("fetch_prekeys", ClientFrame::FetchPrekeys { mailbox: id }),
            (
                "put_state",
                ClientFrame::PutState {
                    ttl_hours: 720,
                    blob: vec![0x5b; 4],
                },
            ),
            ("get_state", ClientFrame::GetState),
            ("delete_state", ClientFrame::DeleteState),
            ("delete_mailbox", ClientFrame::DeleteMailbox),
            (
                "put_chunk",
                ClientFrame::PutChunk {
                    mailbox: id,
                    blob: BlobId::from_bytes([0xb1; 32]),
                    chunk_count: 2,
                    index: 1,
                    chunk: vec![0xc5; CHUNK_SEALED_LEN],
                },
            ),
            (
                "blob_status",
                ClientFrame::BlobStatus {
                    blob: BlobId::from_bytes([0xb1; 32]),
                },
            ),
            (
                "get_chunk",
                ClientFrame::GetChunk {
                    blob: BlobId::from_bytes([0xb1; 32]),
                    index: 1,
                },
            ),
            (
                "delete_blob",
                ClientFrame::DeleteBlob {
                    blob: BlobId::from_bytes([0xb1; 32]),
                    token: BlobDeleteToken::from_bytes([0xd7; 32]),
                },
            ),
        ];
        let server = vec![
            (
                "hello",
                PUSH_REQUEST_ID,
                ServerFrame::Hello {
                    pow_challenge,
                    pow_difficulty: difficulty,
                    max_frame_len: 2 * 1024 * 1024,
                    max_batch: 64,
                },
            ),
            ("ok", 1, ServerFrame::Ok),
            (
                "challenge",
                1,
                ServerFrame::Challenge {
                    challenge: auth_challenge,
                },
            ),
            (
                "deposited",
                1,
                ServerFrame::Deposited {
                    accepted: 1,
                    next_pow_challenge: [0xcc; 32],
                    refused: Vec::new(),
                },
            ),
            (
                "deposited_partly",
                1,
                ServerFrame::Deposited {
                    accepted: 2,
                    next_pow_challenge: [0xcc; 32],
                    refused: vec![Refused {
                        index: 1,
                        code: ErrorCode::QuotaExceeded,
                    }],
                },
            ),
            ("subscribed", 1, ServerFrame::Subscribed { pending: 1 }),
            (
                "deliver",
                PUSH_REQUEST_ID,
                ServerFrame::Deliver {
                    id: env_id,
                    expires_at: UnixTime(1_800_000_000),
                    envelope: env.clone(),
                },
            ),
            ("acked", 1, ServerFrame::Acked { deleted: 1 }),
            (
                "directory",
                1,
                ServerFrame::Directory {
                    directory: vec![1, 2, 3],
                },
            ),
            (
                "prekeys_stored",
                1,
                ServerFrame::PrekeysStored {
                    one_time_count: 1,
                    one_time_pq_count: 1,
                },
            ),
            (
                "prekeys",
                1,
                ServerFrame::Prekeys {
                    signed_bundle: vec![0xb0; 4],
                    one_time: Some(otk),
                    one_time_pq: Some(pq_otk.clone()),
                },
            ),
            (
                "prekeys_exhausted",
                1,
                ServerFrame::Prekeys {
                    signed_bundle: vec![0xb0; 4],
                    one_time: None,
                    one_time_pq: None,
                },
            ),
            (
                "state_stored",
                1,
                ServerFrame::StateStored {
                    expires_at: UnixTime(1_800_000_000),
                },
            ),
            (
                "state",
                1,
                ServerFrame::State {
                    expires_at: UnixTime(1_800_000_000),
                    blob: vec![0x5b; 4],
                },
            ),
            (
                "error_pow_required",
                1,
                ServerFrame::Error {
                    code: ErrorCode::PowRequired,
                },
            ),
            (
                "chunk_stored",
                1,
                ServerFrame::ChunkStored { index: 1, held: 2 },
            ),
            (
                "blob_chunks",
                1,
                ServerFrame::BlobChunks {
                    present: vec![
                        true, true, false, true, false, false, false, false, false, true,
                    ],
                },
            ),
            (
                "chunk",
                1,
                ServerFrame::Chunk {
                    index: 1,
                    chunk: vec![0xc5; CHUNK_SEALED_LEN],
                },
            ),
        ];
        let mut client_json = serde_json::Map::new();
        for (name, f) in &client {
            let b = f.encode(1).unwrap();
            assert_eq!(ClientFrame::decode(&b).unwrap(), (1, f.clone()));
            client_json.insert((*name).into(), hex::encode(b).into());
        }
        let mut server_json = serde_json::Map::new();
        for (name, rid, f) in &server {
            let b = f.encode(*rid).unwrap();
            assert_eq!(ServerFrame::decode(&b).unwrap(), (*rid, f.clone()));
            server_json.insert((*name).into(), hex::encode(b).into());
        }
        let codes: serde_json::Map<String, serde_json::Value> = ErrorCode::ALL
            .iter()
            .map(|c| (c.name().to_string(), c.to_u16().into()))
            .collect();
        let json = serde_json::json!({
            "description": "Relay frames (docs/PROTOCOL.md §4). Inputs from ChaCha20Rng::from_seed(0x40 * 32), drawn 32 bytes at a time in this order: mailbox Ed25519 seed, mailbox seal key, auth challenge, pow challenge, envelope ciphertext (32 + first 16 of the next draw). Client frames use request id 1.",
            "mailbox_auth_seed": hex::encode(auth_seed),
            "mailbox_auth_pk": hex::encode(keys.auth.0),
            "mailbox_seal_pk": hex::encode(seal_pk),
            "mailbox_id": hex::encode(id.as_bytes()),
            "envelope": hex::encode(env.encode()),
            "envelope_id": hex::encode(env_id.as_bytes()),
            "auth_challenge": hex::encode(auth_challenge),
            "auth_message": hex::encode(&auth_msg),
            "auth_signature": hex::encode(auth_sig.0),
            "register_message_pow_required": hex::encode(&reg_msg),
            "register_signature": hex::encode(reg_sig.0),
            "deposit_batch_hash": hex::encode(batch_hash),
            "pow": {
                "challenge": hex::encode(pow_challenge),
                "batch_hash": hex::encode(batch_hash),
                "difficulty": difficulty,
                "nonce": nonce,
                "hash": hex::encode(Sha256::digest([crate::pow::POW_DOMAIN, &pow_challenge, &batch_hash, &nonce.to_be_bytes()].concat())),
            },
            "client_frames": client_json,
            "server_frames": server_json,
            "error_codes": codes,
        });
        crate::state::vectors::check("relay.json", &json);
    }

    proptest! {
        #[test]
        fn client_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ClientFrame::decode(&b);
        }

        #[test]
        fn server_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ServerFrame::decode(&b);
        }

        #[test]
        fn decode_with_valid_header_never_panics(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![2, 0, 0, 0, 9, tag];
            b.extend_from_slice(&body);
            let _ = ClientFrame::decode(&b);
            let _ = ServerFrame::decode(&b);
        }

        #[test]
        fn deposit_round_trips(nonce in proptest::option::of(any::<u64>()), lens in proptest::collection::vec(48usize..200, 1..5), id in any::<u32>()) {
            let envelopes: Vec<_> = lens.iter().enumerate().map(|(i, l)| env(i as u8, *l)).collect();
            let f = ClientFrame::Deposit { pow_nonce: nonce, envelopes };
            let b = f.encode(id).unwrap();
            prop_assert_eq!(ClientFrame::decode(&b).unwrap(), (id, f));
        }

        #[test]
        fn state_round_trips(ttl in any::<u32>(), blob in proptest::collection::vec(any::<u8>(), 0..500), exp in any::<u64>()) {
            let f = ClientFrame::PutState { ttl_hours: ttl, blob: blob.clone() };
            prop_assert_eq!(ClientFrame::decode(&f.encode(3).unwrap()).unwrap(), (3, f));
            let s = ServerFrame::State { expires_at: UnixTime(exp), blob };
            prop_assert_eq!(ServerFrame::decode(&s.encode(4).unwrap()).unwrap(), (4, s));
        }
    }

    #[test]
    fn delete_blob_is_decoded_strictly() {
        let f = ClientFrame::DeleteBlob {
            blob: BlobId::from_bytes([4; 32]),
            token: BlobDeleteToken::from_bytes([6; 32]),
        };
        let bytes = f.encode(9).unwrap();
        assert_eq!(bytes.len(), 1 + 4 + 1 + 32 + 32);
        assert_eq!(bytes[5], 0x13);
        assert_eq!(ClientFrame::decode(&bytes).unwrap().1, f);
        // Short by one byte, one byte too many, unknown version.
        assert!(ClientFrame::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(ClientFrame::decode(&long).is_err());
        let mut v = bytes.clone();
        v[0] ^= 0xff;
        assert!(ClientFrame::decode(&v).is_err());
        assert_eq!(ErrorCode::from_u16(21), Some(ErrorCode::BlobDeleteRefused));
    }
}
