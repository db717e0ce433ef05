//! The Double Ratchet with header encryption (Signal's specification,
//! <https://signal.org/docs/specifications/doubleratchet/>, §4 "Double
//! Ratchet with header encryption"), as specified byte-exact in
//! docs/PROTOCOL.md, "Double Ratchet" (source: docs/PROTOCOL.md §3).
//!
//! A [`Session`] starts from the PQXDH output (`SK`, `AD`): the initiator
//! (the seeker) with [`Session::initiate`], knowing the responder's signed
//! prekey as the responder's first ratchet public key; the responder (a
//! counselor device) with [`Session::respond`], using that prekey's secret.
//! Then [`Session::encrypt`] and [`Session::decrypt`] turn plaintexts into
//! encoded `RatchetMessage`s and back. [`Session::encode_state`] /
//! [`Session::decode_state`] save and restore a session (the caller encrypts
//! the blob; see `state`).
//!
//! What it guarantees, each property tested in `tests.rs`:
//! - forward secrecy: message keys are deleted once used, chain keys only
//!   move forward, so a later state cannot open earlier messages;
//! - post-compromise security: a stolen state stops opening messages once
//!   the victim and its peer have completed one DH ratchet round trip;
//! - header encryption: the relay (and anyone without the header keys) sees
//!   neither ratchet keys nor message numbers;
//! - bounded work and memory: [`MAX_SKIP`], [`MAX_SKIPPED_KEYS`],
//!   [`MAX_SKIPPED_CHAIN_AGE`] bound what a peer (or forger) can make us
//!   compute or store;
//! - replay rejection: a message whose key was already used is refused with
//!   [`RatchetError::Replay`];
//! - atomicity: a call that returns an error leaves the session unchanged.
//!
//! What it does not do: it does not pad (see `padding`), does not hide the
//! sender from the relay (see `sealed`), and does not authenticate the peer's
//! identity (PQXDH binds identities into `SK` and `AD`).
//!
//! One deliberate deviation in *timing*, not in keys: the specification
//! performs both halves of a DH ratchet step while decrypting. Decryption
//! here takes no RNG, so the receiving half runs in `decrypt` and the sending
//! half (fresh `DHs`, `KDF_RK`, `PN = Ns`, `Ns = 0`, `HKs = NHKs`) runs in
//! the next `encrypt`, exactly as the specification would have computed it.
//!
//! ```
//! use northstar_core::ratchet::Session;
//! use rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
//! use zeroize::Zeroizing;
//! # use x25519_dalek::{PublicKey, StaticSecret};
//! let mut rng = ChaCha20Rng::from_seed([7; 32]);
//! // In practice SK, AD and the prekey come from PQXDH.
//! let sk = [42u8; 32];
//! let prekey_secret = [9u8; 32];
//! let prekey_public = PublicKey::from(&StaticSecret::from(prekey_secret)).to_bytes();
//! let mut seeker = Session::initiate(Zeroizing::new(sk), b"AD".to_vec(), prekey_public, &mut rng);
//! let mut counselor = Session::respond(Zeroizing::new(sk), b"AD".to_vec(), Zeroizing::new(prekey_secret));
//! let m = seeker.encrypt(b"hello", &mut rng).unwrap();
//! assert_eq!(&counselor.decrypt(&m).unwrap()[..], b"hello");
//! let r = counselor.encrypt(b"hi", &mut rng).unwrap();
//! assert_eq!(&seeker.decrypt(&r).unwrap()[..], b"hi");
//! ```

mod header;
mod keys;
mod session;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

use crate::error::DecodeError;

pub use header::{
    ENC_HEADER_LEN, HEADER_LEN, HEADER_NONCE_LEN, MAX_AD_LEN, MAX_BODY_LEN, MAX_MESSAGE_LEN,
    MAX_PLAINTEXT_LEN, MESSAGE_OVERHEAD, MESSAGE_PREFIX_LEN, MESSAGE_VERSION, TAG_LEN,
};
pub use keys::{CK_CHAIN_INPUT, CK_MESSAGE_INPUT, INFO_INIT, INFO_MESSAGE, INFO_ROOT, KEY_LEN};
pub use session::{STATE_VERSION, Session};

/// Most message keys one received message may make us skip in one chain
/// (the specification's `MAX_SKIP`). A header's `n` (or `pn`) more than this
/// far ahead is refused before any key is derived, so a forged or runaway
/// counter costs at most 2 × 1000 HMACs (previous chain + new chain).
/// Messages in a Northstar conversation are human-written and delivered by
/// a store-and-forward relay; a gap of 1000 lost messages in one chain means
/// something is badly wrong, not ordinary loss. (libsignal allows 25 000;
/// vodozemac 2 000; we are stricter because our clients are browsers on
/// phones.)
pub const MAX_SKIP: u32 = 1000;

/// Most skipped message keys kept in total, across all chains. When a step
/// would keep more, the oldest keys are deleted first (those messages then
/// become undecryptable). 2000 = two full [`MAX_SKIP`] gaps, so one
/// legitimate maximal jump never evicts its own keys; at 32 + 4 bytes each
/// this bounds saved state to about 72 KB of skipped keys.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// Skipped keys (and the header key that recognises replays) of a receiving
/// chain are deleted once this many newer receiving chains have started
/// (DH ratchet steps on receipt). A message delayed across five round trips
/// of the conversation is treated as lost: keeping skipped keys forever
/// would weaken forward secrecy for exactly the messages an attacker chose
/// to withhold. 5 matches libsignal's `MAX_RECEIVER_CHAINS`.
pub const MAX_SKIPPED_CHAIN_AGE: u32 = 5;

/// Most previous receiving chains kept (each with its header key, so at most
/// this many header trial decryptions beyond `HKr` and `NHKr` per message):
/// the chains of the last [`MAX_SKIPPED_CHAIN_AGE`] steps.
pub const MAX_OLD_CHAINS: usize = MAX_SKIPPED_CHAIN_AGE as usize;

/// Errors of this module. None carries key material or plaintext.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatchetError {
    /// A message or saved state is not a valid encoding.
    #[error("malformed: {source}")]
    Malformed {
        #[from]
        source: DecodeError,
    },
    /// The plaintext is larger than a message can carry (caller misuse).
    #[error("plaintext is {got} bytes, at most {max} allowed")]
    PlaintextTooLong { max: usize, got: usize },
    /// The session's associated data is over the limit (caller misuse).
    #[error("associated data is {got} bytes, at most {max} allowed")]
    AssociatedDataTooLong { max: usize, got: usize },
    /// The responder cannot send before it has received the first message
    /// (it does not yet know the initiator's ratchet key).
    #[error("cannot send before the first message from the peer has been received")]
    CannotSendYet,
    /// No header key of this session opens the header: not for this session,
    /// tampered, or from a chain whose keys have expired.
    #[error("no header key opens the message header")]
    HeaderUndecryptable,
    /// The message's key was already used: a duplicate delivery or a replay.
    #[error("message already received (duplicate or replay)")]
    Replay,
    /// The header asks us to skip more than `MAX_SKIP` message keys.
    #[error("message is {skip} messages ahead of its chain, at most {max} allowed")]
    TooManySkipped { max: u32, skip: u64 },
    /// The header opened but the body did not authenticate (tampered body,
    /// tampered associated data, or wrong session).
    #[error("message body does not authenticate")]
    BodyUndecryptable,
    /// The peer's ratchet public key is a low-order point (no shared secret).
    #[error("peer ratchet key is not a valid X25519 public key")]
    InvalidRatchetKey,
    /// A message counter would overflow `u32` (after four billion messages).
    #[error("message counter exhausted")]
    CounterExhausted,
    /// The AEAD refused to encrypt (cannot happen within the size limits).
    #[error("encryption failed")]
    EncryptionFailed,
}
