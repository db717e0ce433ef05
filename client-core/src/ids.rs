//! Identifiers: newtypes checked on construction, never bare byte arrays —
//! mailboxes, envelopes, messages, teams, devices, partners — and the
//! client languages' wire tags.

use sha2::{Digest, Sha256};

use crate::error::DecodeError;

macro_rules! id32 {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length in bytes on the wire.
            pub const LEN: usize = 32;
            pub const fn from_bytes(b: [u8; 32]) -> Self {
                $name(b)
            }
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lower-case hex, for scripts and file names (not for relay logs).
            pub fn to_hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }
            /// Parses 64 lower- or upper-case hex digits.
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.as_bytes();
                if s.len() != 64 {
                    return None;
                }
                let mut out = [0u8; 32];
                for (i, pair) in s.chunks(2).enumerate() {
                    let hi = (pair[0] as char).to_digit(16)?;
                    let lo = (pair[1] as char).to_digit(16)?;
                    out[i] = (hi * 16 + lo) as u8;
                }
                Some($name(out))
            }
        }

        impl core::fmt::Debug for $name {
            // Short prefix only: enough to tell ids apart in a test failure.
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($name), "({:02x}{:02x}{:02x}{:02x}..)"), self.0[0], self.0[1], self.0[2], self.0[3])
            }
        }
    };
}

id32!(
    /// A mailbox on the relay: `SHA-256("northstar/v1/mailbox-id" || auth_pk || seal_pk)`
    /// where `auth_pk` is the mailbox's Ed25519 key (proves ownership to the relay)
    /// and `seal_pk` its X25519 HPKE key (envelopes are sealed to it).
    MailboxId
);
id32!(
    /// A stored envelope: `SHA-256("northstar/v1/envelope-id" || envelope bytes)`.
    /// Content-addressed, so a retried deposit is stored once.
    EnvelopeId
);

impl MailboxId {
    /// Derives the id a mailbox's two public keys determine.
    pub fn derive(auth_pk: &[u8; 32], seal_pk: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"northstar/v1/mailbox-id");
        h.update(auth_pk);
        h.update(seal_pk);
        MailboxId(h.finalize().into())
    }
}

impl EnvelopeId {
    /// The id of an encoded envelope.
    pub fn of(envelope: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"northstar/v1/envelope-id");
        h.update(envelope);
        EnvelopeId(h.finalize().into())
    }
}

/// An application message id, chosen at random by the sender and carried
/// inside the ciphertext; receivers drop a second copy with the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn random(rng: &mut impl crate::CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        MessageId(b)
    }
}

/// A team's id, stable across directory versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamId(pub u16);

/// A counselor device's id, assigned by the administrator, stable across
/// directory versions and unique within the organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// A partner organisation's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartnerId(pub u16);

/// A language the clients are translated into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Language {
    /// English.
    En = 1,
    /// Spanish.
    Es = 2,
    /// French.
    Fr = 3,
    /// Haitian Creole.
    Ht = 4,
}

impl Language {
    /// Every language, in wire-tag order.
    pub const ALL: [Language; 4] = [Language::En, Language::Es, Language::Fr, Language::Ht];

    /// The BCP 47 tag ("en", "es", "fr", "ht").
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Fr => "fr",
            Language::Ht => "ht",
        }
    }

    /// Parses a BCP 47 tag (primary subtag only, case-insensitive: "es-MX" → Es).
    pub fn from_tag(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        Language::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(primary))
    }

    /// The wire byte.
    pub fn wire(self) -> u8 {
        self as u8
    }

    /// Parses the wire byte.
    pub fn from_wire(tag: u8) -> Result<Language, DecodeError> {
        match tag {
            1 => Ok(Language::En),
            2 => Ok(Language::Es),
            3 => Ok(Language::Fr),
            4 => Ok(Language::Ht),
            _ => Err(DecodeError::UnknownTag {
                what: "language",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hex_round_trip_and_debug_is_short() {
        let id = MailboxId::derive(&[1; 32], &[2; 32]);
        assert_eq!(MailboxId::from_hex(&id.to_hex()), Some(id));
        assert!(MailboxId::from_hex("zz").is_none());
        assert!(format!("{id:?}").len() < 30);
    }
}
