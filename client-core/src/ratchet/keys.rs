//! The ratchet's secret key types and the KDFs that produce them
//! (docs/PROTOCOL.md, "Double Ratchet", §KDFs).
//!
//! Every secret is its own type: boxed (so moves do not leave copies on the
//! stack), zeroized on drop, not `Copy`, not `Clone`, and with a `Debug` that
//! prints only the type name. A [`MessageKey`] is single-use: the AEAD
//! helpers in `header.rs` take it by value.

use std::fmt;

use hkdf::Hkdf;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of every symmetric key and X25519 key in the ratchet.
pub const KEY_LEN: usize = 32;

/// HKDF info string of the initial derivation from the PQXDH secret.
pub const INFO_INIT: &[u8] = b"northstar/v1/ratchet-init";
/// HKDF info string of `KDF_RK`.
pub const INFO_ROOT: &[u8] = b"northstar/v1/ratchet-root";
/// HKDF info string that turns a message key into an AEAD key and nonce.
pub const INFO_MESSAGE: &[u8] = b"northstar/v2/ratchet-message";
/// HMAC input that derives a message key from a chain key.
pub const CK_MESSAGE_INPUT: u8 = 0x01;
/// HMAC input that derives the next chain key from a chain key.
pub const CK_CHAIN_INPUT: u8 = 0x02;

macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub(crate) struct $name(Box<[u8; KEY_LEN]>);

        impl $name {
            /// Wraps key bytes (copied into a fresh box; the caller zeroizes its copy).
            pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
                $name(Box::new(*bytes))
            }
            /// The key bytes, for encoding saved state and for the KDFs.
            pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_key! {
    /// The root key `RK`: input and output of every DH ratchet step.
    RootKey
}
secret_key! {
    /// A sending or receiving chain key `CKs` / `CKr`.
    ChainKey
}
secret_key! {
    /// A header key `HKs`, `HKr`, `NHKs` or `NHKr`: encrypts message headers.
    HeaderKey
}
secret_key! {
    /// A single-use message key `mk`.
    MessageKey
}

/// Our ratchet key pair `DHs` (X25519): the secret, and its public half
/// computed once when the pair is made (it goes in the header of every
/// message we send; recomputing it would cost a scalar multiplication per
/// message).
pub(crate) struct RatchetSecret {
    secret: StaticSecret,
    public: [u8; KEY_LEN],
}

impl RatchetSecret {
    fn new(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret).to_bytes();
        RatchetSecret { secret, public }
    }
    /// A fresh key pair (`GENERATE_DH`).
    pub(crate) fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        Self::new(StaticSecret::random_from_rng(rng))
    }
    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self::new(StaticSecret::from(*bytes))
    }
    /// The secret scalar bytes (for encoding saved state).
    pub(crate) fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }
    /// The public half, sent in every header.
    pub(crate) fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }
    /// `DH(DHs, their_public)` without the contributory check (the
    /// initiator's first step, on a prekey PQXDH already verified).
    pub(crate) fn dh_unchecked(&self, their_public: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(
            self.secret
                .diffie_hellman(&PublicKey::from(*their_public))
                .to_bytes(),
        )
    }
    /// `DH(DHs, their_public)`, or `None` if the result is not contributory
    /// (their key is a low-order point, which would make the output all zero).
    pub(crate) fn dh(&self, their_public: &[u8; KEY_LEN]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*their_public));
        if shared.was_contributory() {
            Some(Zeroizing::new(shared.to_bytes()))
        } else {
            None
        }
    }
}

impl fmt::Debug for RatchetSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RatchetSecret(..)")
    }
}

/// HKDF-SHA256 with an output length fixed at compile time.
fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 output is limited to 255 blocks") };
    let mut okm = Zeroizing::new([0u8; N]);
    // `expand` fails only when N > 255 * HashLen, which the const assertion
    // above rules out at compile time.
    let _ = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, okm.as_mut());
    okm
}

/// Copies `okm[at..at + 32]` out (the caller zeroizes or wraps it).
fn slice32(okm: &[u8], at: usize) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&okm[at..at + KEY_LEN]);
    out
}

/// The initial derivation from the PQXDH secret `SK`:
/// `HKDF-SHA256(salt = 0^32, ikm = SK, info = "northstar/v1/ratchet-init", L = 96)`
/// = `RK0 || HKa (shared header key) || NHKb (shared next header key)`.
pub(crate) fn kdf_init(sk: &[u8; KEY_LEN]) -> (RootKey, HeaderKey, HeaderKey) {
    let okm = hkdf::<96>(&[0u8; KEY_LEN], sk, INFO_INIT);
    (
        RootKey::from_bytes(&slice32(okm.as_ref(), 0)),
        HeaderKey::from_bytes(&slice32(okm.as_ref(), 32)),
        HeaderKey::from_bytes(&slice32(okm.as_ref(), 64)),
    )
}

/// `KDF_RK(rk, dh_out)`:
/// `HKDF-SHA256(salt = rk, ikm = dh_out, info = "northstar/v1/ratchet-root", L = 96)`
/// = `new RK || CK || NHK`.
pub(crate) fn kdf_rk(rk: &RootKey, dh_out: &[u8; KEY_LEN]) -> (RootKey, ChainKey, HeaderKey) {
    let okm = hkdf::<96>(rk.as_bytes(), dh_out, INFO_ROOT);
    (
        RootKey::from_bytes(&slice32(okm.as_ref(), 0)),
        ChainKey::from_bytes(&slice32(okm.as_ref(), 32)),
        HeaderKey::from_bytes(&slice32(okm.as_ref(), 64)),
    )
}

/// HMAC-SHA256 keyed with a 32-byte key, with the key's inner and outer
/// pads already absorbed: clone it to MAC several inputs under one key for
/// the price of one key set-up. HMAC pads a key shorter than the block with
/// zeros (RFC 2104 §2), so the key is passed as the full 64-byte block,
/// which makes this infallible by type (a unit test checks it against
/// `Hmac::new_from_slice`).
fn hmac_keyed(key: &[u8; KEY_LEN]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..KEY_LEN].copy_from_slice(key);
    let block: &[u8; 64] = &block;
    <Hmac<Sha256> as KeyInit>::new(block.into())
}

/// Finishes `mac` over `[input]` into a boxed key.
fn hmac_finish(mut mac: Hmac<Sha256>, input: u8) -> Box<[u8; KEY_LEN]> {
    mac.update(&[input]);
    let mut tag = mac.finalize().into_bytes();
    let mut out = Box::new([0u8; KEY_LEN]);
    out.copy_from_slice(&tag);
    tag.as_mut_slice().zeroize();
    out
}

impl ChainKey {
    /// `KDF_CK(ck)`: `mk = HMAC-SHA256(ck, 0x01)`, `ck' = HMAC-SHA256(ck, 0x02)`.
    /// Returns `(ck', mk)`. One HMAC key set-up serves both.
    pub(crate) fn step(&self) -> (ChainKey, MessageKey) {
        let mac = hmac_keyed(&self.0);
        let mk = MessageKey(hmac_finish(mac.clone(), CK_MESSAGE_INPUT));
        (ChainKey(hmac_finish(mac, CK_CHAIN_INPUT)), mk)
    }
}

impl MessageKey {
    /// `HKDF-SHA256(salt = header_nonce, ikm = mk, info =
    /// "northstar/v2/ratchet-message", L = 44)` = ChaCha20-Poly1305 key (32)
    /// || nonce (12). Callers own the key by value and drop it right after
    /// use (see `header.rs`).
    ///
    /// The salt is the message's random header nonce (24 fresh bytes, sent
    /// with it and bound into its AAD). The specification salts with zeros;
    /// Northstar salts with per-message randomness so that a sender whose
    /// saved state was rolled back — the relay stores a seeker's state and
    /// can serve an old copy — never encrypts two plaintexts under one key
    /// and nonce, even though it reuses a chain position (PROTOCOL.md §3.4).
    pub(crate) fn aead_key(&self, header_nonce: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
        let hk = Hkdf::<Sha256>::new(Some(header_nonce), self.as_bytes());
        let mut okm = Zeroizing::new([0u8; 44]);
        // 44 bytes is far below HKDF-SHA256's 255 * 32 limit: never fails.
        let _ = hk.expand(INFO_MESSAGE, okm.as_mut());
        let key = slice32(okm.as_ref(), 0);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&okm[32..44]);
        (key, nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_hmac_matches_hmac_crate() {
        let key = [7u8; 32];
        for input in [CK_MESSAGE_INPUT, CK_CHAIN_INPUT] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            mac.update(&[input]);
            let want: [u8; 32] = mac.finalize().into_bytes().into();
            assert_eq!(*hmac_finish(hmac_keyed(&key), input), want);
        }
    }

    #[test]
    fn chain_step_and_message_key_match_their_definitions() {
        let ck = ChainKey::from_bytes(&[3u8; 32]);
        let (next, mk) = ck.step();
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&[3u8; 32]), &[CK_CHAIN_INPUT]);
        assert_eq!(next.as_bytes()[..], prk[..]);
        let (prk, _) = Hkdf::<Sha256>::extract(Some(&[3u8; 32]), &[CK_MESSAGE_INPUT]);
        assert_eq!(mk.as_bytes()[..], prk[..]);
        let want = hkdf::<44>(&[9u8; 24], mk.as_bytes(), INFO_MESSAGE);
        let (key, nonce) = mk.aead_key(&[9u8; 24]);
        assert_eq!(key[..], want[..32]);
        assert_eq!(nonce[..], want[32..]);
    }

    #[test]
    fn chain_step_separates_message_and_chain_keys() {
        let ck = ChainKey::from_bytes(&[1u8; 32]);
        let (next, mk) = ck.step();
        assert_ne!(next.as_bytes(), mk.as_bytes());
        assert_ne!(next.as_bytes(), ck.as_bytes());
    }

    #[test]
    fn debug_prints_no_bytes() {
        assert_eq!(
            format!("{:?}", RootKey::from_bytes(&[9; 32])),
            "RootKey(..)"
        );
        assert_eq!(
            format!("{:?}", ChainKey::from_bytes(&[9; 32])),
            "ChainKey(..)"
        );
        assert_eq!(
            format!("{:?}", HeaderKey::from_bytes(&[9; 32])),
            "HeaderKey(..)"
        );
        assert_eq!(
            format!("{:?}", MessageKey::from_bytes(&[9; 32])),
            "MessageKey(..)"
        );
        assert_eq!(
            format!("{:?}", RatchetSecret::from_bytes(&[9; 32])),
            "RatchetSecret(..)"
        );
    }

    #[test]
    fn low_order_point_is_rejected() {
        let s = RatchetSecret::from_bytes(&[9; 32]);
        assert!(s.dh(&[0u8; 32]).is_none());
        let other = RatchetSecret::from_bytes(&[5; 32]);
        assert!(s.dh(&other.public()).is_some());
    }
}
