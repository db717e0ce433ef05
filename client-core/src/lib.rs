//! # northstar-core
//!
//! The protocol library that every Northstar client runs — the command-line
//! client natively, the browser client compiled to `wasm32-unknown-unknown`.
//!
//! It does **no I/O**: no sockets, no files, no clock, no operating-system
//! randomness. Callers pass the current time ([`UnixTime`]) and a
//! cryptographically secure RNG in, and get bytes and new state back; the
//! shell (CLI, browser) stores and sends them.
//!
//! ## Modules
//! - `wire` (private) — the strict binary codec (`Reader` / `Writer`) every encoded structure uses.
//! - [`ids`] — newtypes for mailbox ids, envelope ids and message ids.
//! - [`keys`] — key newtypes: organisation, device identity, prekeys; zeroized, no `Debug` leak.
//! - [`pqxdh`] — session set-up following Signal's PQXDH (X25519 + ML-KEM-768).
//! - [`ratchet`] — the Double Ratchet with header encryption.
//! - [`sealed`] — sealed-sender envelopes: HPKE (RFC 9180) to a mailbox key.
//! - [`padding`] — size buckets every plaintext is padded to.
//! - [`message`] — the application messages carried inside the ratchet.
//! - [`attachment`] — files: chunked STREAM encryption under a fresh key, the reference sent in the ratchet.
//! - [`metadata`] — removes EXIF/GPS, XMP, IPTC, comments from JPEG and text/EXIF/time chunks from PNG.
//! - [`codename`] — seeker codenames and the keys derived from them (Argon2id + HKDF).
//! - [`directory`] — the organisation-signed team directory.
//! - [`state`] — encrypted, versioned client-state blobs.
//! - [`pow`] — the hashcash-style proof of work on deposits.
//! - [`frame`] — the relay wire protocol (client ↔ relay frames).
//! - [`limits`] — every wire maximum, checked against each other at compile time.
//! - [`client`] — what a seeker and a counselor device do: sessions with peers,
//!   the seeker's conversation, the counselor's team inbox, saved formats.
//! - [`driver`] — the sans-I/O client driver: every relay request sequence,
//!   batching, saving before sending, reconnection and typed errors. The CLI
//!   and the browser only move its bytes.
//!
//! Byte-exact formats are specified in `docs/PROTOCOL.md`.
//!
//! ## Example: a sealed envelope only its mailbox can open
//!
//! ```
//! use northstar_core::keys::{IdentityKeyPair, MailboxKeyPair};
//! use northstar_core::sealed::{self, SealedBody, SealedContent, SenderInfo};
//! # fn main() -> Result<(), northstar_core::Error> {
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
//! # use rand_core::SeedableRng;
//! let sender = (IdentityKeyPair::generate(&mut rng), MailboxKeyPair::generate(&mut rng));
//! let recipient = MailboxKeyPair::generate(&mut rng);
//! let content = SealedContent {
//!     sender: SenderInfo { identity: sender.0.public(), mailbox: sender.1.public() },
//!     body: SealedBody::Ratchet { ratchet_message: b"opaque ratchet bytes".to_vec() },
//! };
//! let envelope = sealed::seal(&recipient.public(), &content, &mut rng)?;
//! // The relay sees the recipient and a padded size, never the sender.
//! assert_eq!(*envelope.recipient(), recipient.id());
//! assert_eq!(sealed::open(&recipient, &envelope)?, content);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod attachment;
pub mod client;
pub mod codename;
pub mod directory;
pub mod driver;
pub mod error;
pub mod frame;
pub mod ids;
pub mod intake;
pub mod keys;
pub mod limits;
pub mod message;
pub mod metadata;
pub mod padding;
pub mod pow;
pub mod pqxdh;
pub mod ratchet;
pub mod sealed;
pub mod state;
#[cfg(test)]
mod vectors;
pub mod webrelease;
mod wire;

/// Not API: the strict codec, for the fuzz targets only (as rustls's
/// `internal`). Nothing outside this workspace's fuzzer may depend on it.
#[doc(hidden)]
pub mod internal {
    pub use crate::wire::{Reader, Writer};
}

pub use error::{ApiMisuse, DecodeError, Error};
pub use ids::{EnvelopeId, MailboxId, MessageId};

/// Seconds since the Unix epoch, passed in by the caller (the core reads no clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// Rounds down to the start of the hour: what the relay stores for expiries.
    pub fn floor_hour(self) -> UnixTime {
        UnixTime(self.0 - self.0 % 3600)
    }
    /// Rounds up to the next full hour (unchanged if already on one).
    pub fn ceil_hour(self) -> UnixTime {
        let r = self.0 % 3600;
        if r == 0 {
            self
        } else {
            UnixTime(self.0 - r + 3600)
        }
    }
}

/// The RNG bound every function that needs randomness takes.
pub trait CryptoRng: rand_core::RngCore + rand_core::CryptoRng {}
impl<T: rand_core::RngCore + rand_core::CryptoRng> CryptoRng for T {}
