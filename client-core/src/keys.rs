//! Key newtypes.
//!
//! Public keys are plain byte newtypes (checked where a point must be valid).
//! Secret keys are zeroized on drop, never `Copy`, and their `Debug` prints
//! no bytes.

use crate::error::DecodeError;

/// An X25519 public key (identity, prekey, ephemeral or mailbox sealing key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct X25519Public(pub [u8; 32]);

/// An Ed25519 public (verifying) key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ed25519Public(pub [u8; 32]);

impl Ed25519Public {
    /// Verifies `sig` over `msg` (strict verification: rejects small-order
    /// and non-canonical encodings).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .is_ok()
    }

    /// Checks that the bytes are a valid Ed25519 point.
    pub fn check(&self) -> Result<(), DecodeError> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map(|_| ())
            .map_err(|_| DecodeError::Invalid {
                what: "ed25519 public key",
            })
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// An ML-KEM-768 encapsulation (public) key, 1184 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MlKemPublic(pub Box<[u8; MlKemPublic::LEN]>);

impl MlKemPublic {
    pub const LEN: usize = 1184;
}

impl core::fmt::Debug for MlKemPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MlKemPublic({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// The public half of a mailbox: the Ed25519 key that proves ownership to
/// the relay, and the X25519 key envelopes are sealed to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MailboxPublic {
    pub auth: Ed25519Public,
    pub seal: X25519Public,
}

impl MailboxPublic {
    /// Encoded length: auth key then seal key.
    pub const LEN: usize = 64;

    /// The mailbox id these keys determine.
    pub fn id(&self) -> crate::ids::MailboxId {
        crate::ids::MailboxId::derive(&self.auth.0, &self.seal.0)
    }

    /// `auth_pk[32] || seal_pk[32]`.
    pub fn write(&self, w: &mut crate::wire::Writer) {
        w.bytes(&self.auth.0).bytes(&self.seal.0);
    }

    pub fn read(r: &mut crate::wire::Reader<'_>) -> Result<Self, DecodeError> {
        let auth = Ed25519Public(r.array("mailbox auth key")?);
        auth.check()?;
        let seal = X25519Public(r.array("mailbox seal key")?);
        Ok(MailboxPublic { auth, seal })
    }
}

/// The public identity of a counselor device or a seeker: an X25519 key
/// (PQXDH) and an Ed25519 key (signatures over prekeys).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IdentityPublic {
    pub x25519: X25519Public,
    pub ed25519: Ed25519Public,
}

impl IdentityPublic {
    /// Encoded length: X25519 key then Ed25519 key.
    pub const LEN: usize = 64;

    /// `x25519_pk[32] || ed25519_pk[32]`.
    pub fn write(&self, w: &mut crate::wire::Writer) {
        w.bytes(&self.x25519.0).bytes(&self.ed25519.0);
    }

    pub fn read(r: &mut crate::wire::Reader<'_>) -> Result<Self, DecodeError> {
        let x25519 = X25519Public(r.array("identity x25519 key")?);
        let ed25519 = Ed25519Public(r.array("identity ed25519 key")?);
        ed25519.check()?;
        Ok(IdentityPublic { x25519, ed25519 })
    }
}
