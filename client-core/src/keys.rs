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
