//! Sealed-sender envelopes (docs/PROTOCOL.md §"Envelope").
//!
//! The relay-visible part of every deposit is only:
//!
//! ```text
//! envelope   = version:u8 (=1) || recipient:MailboxId[32] || len:u32 || ciphertext[len]
//! ciphertext = hpke_enc[32] || hpke_ciphertext        (len <= MAX_CIPHERTEXT_LEN)
//! ```
//!
//! The relay decodes this routing header with [`Envelope::decode`] and nothing
//! else; sealing and opening (HPKE, RFC 9180) happen only in clients.

use crate::error::{DecodeError, Error};
use crate::ids::MailboxId;
use crate::wire::{Reader, Writer};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;

/// Largest padded plaintext bucket (see [`crate::padding`]).
pub const MAX_PADDED_PLAINTEXT: usize = 65_536;

/// HPKE encapsulated key (X25519) length.
pub const HPKE_ENC_LEN: usize = 32;

/// ChaCha20-Poly1305 tag length.
pub const AEAD_TAG_LEN: usize = 16;

/// Largest ciphertext an envelope may carry: the encapsulated key plus the
/// largest padding bucket plus the AEAD tag. Anything larger cannot have been
/// produced by a conforming client.
pub const MAX_CIPHERTEXT_LEN: usize = HPKE_ENC_LEN + MAX_PADDED_PLAINTEXT + AEAD_TAG_LEN;

/// Smallest ciphertext: encapsulated key plus tag around an empty plaintext.
pub const MIN_CIPHERTEXT_LEN: usize = HPKE_ENC_LEN + AEAD_TAG_LEN;

/// An encoded envelope's header length (version + recipient + length prefix).
pub const ENVELOPE_HEADER_LEN: usize = 1 + MailboxId::LEN + 4;

/// A sealed envelope as the relay sees it: a recipient and opaque bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    recipient: MailboxId,
    ciphertext: Vec<u8>,
}

impl core::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Envelope")
            .field("recipient", &self.recipient)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl Envelope {
    /// Builds an envelope from parts, checking the ciphertext length bounds.
    pub fn from_parts(recipient: MailboxId, ciphertext: Vec<u8>) -> Result<Self, DecodeError> {
        check_ct_len(ciphertext.len())?;
        Ok(Envelope {
            recipient,
            ciphertext,
        })
    }

    pub fn recipient(&self) -> &MailboxId {
        &self.recipient
    }

    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Encodes as in the module diagram.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(ENVELOPE_HEADER_LEN + self.ciphertext.len());
        w.u8(ENVELOPE_VERSION).bytes(self.recipient.as_bytes());
        // Length was checked on construction.
        w.u32(self.ciphertext.len() as u32).bytes(&self.ciphertext);
        w.into_bytes()
    }

    /// Strictly decodes one envelope (no trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let env = Self::read(&mut r)?;
        r.finish("envelope")?;
        Ok(env)
    }

    /// Reads one envelope from a reader (for frames that embed envelopes).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(ENVELOPE_VERSION, "envelope")?;
        let recipient = MailboxId::from_bytes(r.array("envelope recipient")?);
        let ct = r.vec_u32(MAX_CIPHERTEXT_LEN, "envelope ciphertext")?;
        check_ct_len(ct.len())?;
        Ok(Envelope {
            recipient,
            ciphertext: ct.to_vec(),
        })
    }
}

fn check_ct_len(len: usize) -> Result<(), DecodeError> {
    if len > MAX_CIPHERTEXT_LEN {
        return Err(DecodeError::TooLong {
            what: "envelope ciphertext",
            max: MAX_CIPHERTEXT_LEN,
            got: len,
        });
    }
    if len < MIN_CIPHERTEXT_LEN {
        return Err(DecodeError::TooShort {
            what: "envelope ciphertext",
            min: MIN_CIPHERTEXT_LEN,
            got: len,
        });
    }
    Ok(())
}

/// Errors of sealing and opening.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealedError {
    #[error("not yet implemented")]
    Unimplemented,
}
