//! Key newtypes (docs/PROTOCOL.md §2.1–2.3).
//!
//! Public keys are plain byte newtypes (checked where a point must be valid:
//! Ed25519 points on decode, ML-KEM keys with the FIPS 203 modulus check).
//! Secret keys ([`X25519Secret`], [`Ed25519Secret`], [`MlKemSecret`] and the
//! pairs and prekeys built from them) are zeroized on drop, never `Copy` or
//! `Clone`, print no bytes in `Debug`, and have versioned, kind-tagged
//! encodings for saved state that return [`Zeroizing`] buffers.
//!
//! | type | holds | used for |
//! |---|---|---|
//! | [`IdentityKeyPair`] | X25519 + Ed25519 | PQXDH identity `IK`, signs prekeys |
//! | [`MailboxKeyPair`] | Ed25519 `auth` + X25519 `seal` | relay ownership proofs, opening sealed envelopes |
//! | [`SignedPreKey`], [`OneTimePreKey`], [`PqPreKey`], [`OneTimePqPreKey`] | X25519 / X25519 / ML-KEM-768 / ML-KEM-768 | PQXDH `SPK`, `OPK`, `PQSPK` (last resort), `PQOPK` |
//! | [`OrgSigningKey`] / [`OrgPublicKey`] | Ed25519 | the organisation's root of trust: signs the directory |
//!
//! The public bundle format ([`SignedPreKeyBundle`]) and the signed public
//! half of a one-time ML-KEM prekey ([`OneTimePqPreKeyPublic`]) live in
//! [`crate::pqxdh`], which defines their signatures, and are re-exported here.

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
    pub fn id(&self) -> MailboxId {
        MailboxId::derive(&self.auth.0, &self.seal.0)
    }

    /// `auth_pk[32] || seal_pk[32]`.
    pub fn write(&self, w: &mut crate::wire::Writer) {
        w.bytes(&self.auth.0).bytes(&self.seal.0);
    }

    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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

    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let x25519 = X25519Public(r.array("identity x25519 key")?);
        let ed25519 = Ed25519Public(r.array("identity ed25519 key")?);
        ed25519.check()?;
        Ok(IdentityPublic { x25519, ed25519 })
    }
}

// ---------------------------------------------------------------------------
// Secret keys.
// ---------------------------------------------------------------------------

use kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768, MlKem768Params};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::ids::MailboxId;
use crate::wire::Reader;

/// The public prekey bundle lives with PQXDH, which defines its signatures.
pub use crate::pqxdh::{
    MAX_SIGNED_BUNDLE_LEN, ONE_TIME_PQ_PREKEY_PUBLIC_LEN, OneTimePqPreKeyPublic,
    SignedPreKeyBundle, VerifiedBundle,
};

/// Version byte of every secret-key encoding (saved state, key store).
pub const SECRET_ENCODING_VERSION: u8 = 1;

/// Kind byte of a secret-key encoding, so a saved key of one kind can never be
/// loaded as another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum SecretKind {
    X25519 = 1,
    Ed25519 = 2,
    MlKem768 = 3,
    Identity = 4,
    Mailbox = 5,
    SignedPreKey = 6,
    OneTimePreKey = 7,
    PqPreKey = 8,
    OneTimePqPreKey = 9,
}

/// Why a key operation failed. Carries no key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// An X25519 exchange produced the all-zero output: the peer's public key
    /// is a small-order point (RFC 7748 §6.1 "check for the all-zero value").
    #[error("X25519 exchange was not contributory (small-order public key)")]
    NonContributory,
    /// ML-KEM encapsulation failed (does not happen with a valid key; kept
    /// rather than panicking).
    #[error("ML-KEM encapsulation failed")]
    Encapsulation,
    /// ML-KEM decapsulation failed (malformed ciphertext).
    #[error("ML-KEM decapsulation failed")]
    Decapsulation,
}

/// A 32-byte shared secret (X25519 output, ML-KEM shared key). Zeroized on
/// drop; compared in constant time; `Debug` prints no bytes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret32(Box<[u8; 32]>);

impl SharedSecret32 {
    pub(crate) fn new(bytes: [u8; 32]) -> Self {
        let mut b = Zeroizing::new(bytes);
        let out = SharedSecret32(Box::new(*b));
        b.zeroize();
        out
    }
    /// The secret bytes (for key derivation only).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ConstantTimeEq for SharedSecret32 {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&*other.0)
    }
}

impl core::fmt::Debug for SharedSecret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedSecret32(..)")
    }
}

/// Writes `version || kind || body` into a zeroizing buffer of exact capacity
/// (so no reallocation leaves a copy of the secret behind).
fn encode_secret(kind: SecretKind, parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
    let len = 2 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.push(SECRET_ENCODING_VERSION);
    out.push(kind as u8);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Reads and checks `version || kind` of a secret encoding.
fn read_secret_header(r: &mut Reader<'_>, kind: SecretKind) -> Result<(), DecodeError> {
    r.version(SECRET_ENCODING_VERSION, "secret key encoding")?;
    let got = r.u8("secret key kind")?;
    if got != kind as u8 {
        return Err(DecodeError::UnknownTag {
            what: "secret key kind",
            tag: got,
        });
    }
    Ok(())
}

/// Reads a 32-byte secret into a zeroizing buffer.
fn read_secret32(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Zeroizing<[u8; 32]>, DecodeError> {
    let b = r.take(32, what)?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(b);
    Ok(out)
}

/// An X25519 secret key (identity, prekey, ephemeral or mailbox sealing key).
#[derive(ZeroizeOnDrop)]
pub struct X25519Secret(x25519_dalek::StaticSecret);

impl X25519Secret {
    /// Encoded length of [`X25519Secret::encode`]: version, kind, 32 key bytes.
    pub const ENCODED_LEN: usize = 2 + 32;

    /// A fresh random key.
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        X25519Secret(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// A key from 32 secret bytes (clamped by X25519 itself, RFC 7748 §5).
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        X25519Secret(x25519_dalek::StaticSecret::from(*bytes))
    }

    /// The 32 secret bytes as given (unclamped), for saving.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> X25519Public {
        X25519Public(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// X25519(self, peer). Rejects the all-zero output (a small-order peer
    /// key), so no exchange is ever silently non-contributory.
    pub fn diffie_hellman(&self, peer: &X25519Public) -> Result<SharedSecret32, KeyError> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        Ok(SharedSecret32::new(shared.to_bytes()))
    }

    /// `version:u8 (=1) || kind:u8 (=1) || secret[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(SecretKind::X25519, &[&*self.to_bytes()])
    }

    /// Strict inverse of [`X25519Secret::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::X25519)?;
        let k = read_secret32(&mut r, "x25519 secret")?;
        r.finish("x25519 secret")?;
        Ok(Self::from_bytes(k))
    }
}

impl core::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("X25519Secret(..)")
    }
}

/// An Ed25519 signing key, kept as its 32-byte seed.
#[derive(ZeroizeOnDrop)]
pub struct Ed25519Secret(ed25519_dalek::SigningKey);

impl Ed25519Secret {
    /// Encoded length of [`Ed25519Secret::encode`]: version, kind, 32 seed bytes.
    pub const ENCODED_LEN: usize = 2 + 32;

    /// A fresh random key.
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        Ed25519Secret(ed25519_dalek::SigningKey::generate(rng))
    }

    /// The key whose RFC 8032 seed is `seed`.
    pub fn from_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        Ed25519Secret(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The 32-byte seed, for saving.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> Ed25519Public {
        Ed25519Public(self.0.verifying_key().to_bytes())
    }

    /// An Ed25519 (RFC 8032, pure) signature over `msg`. Callers
    /// domain-separate `msg` themselves.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        use ed25519_dalek::Signer;
        Signature(self.0.sign(msg).to_bytes())
    }

    /// `version:u8 (=1) || kind:u8 (=2) || seed[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(SecretKind::Ed25519, &[&*self.to_seed()])
    }

    /// Strict inverse of [`Ed25519Secret::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::Ed25519)?;
        let k = read_secret32(&mut r, "ed25519 seed")?;
        r.finish("ed25519 secret")?;
        Ok(Self::from_seed(k))
    }
}

impl core::fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Ed25519Secret(..)")
    }
}

/// The long-term identity of a counselor device or a seeker: an X25519 key
/// (PQXDH's IK) and an Ed25519 key (signs prekeys).
#[derive(Debug)]
pub struct IdentityKeyPair {
    pub x25519: X25519Secret,
    pub ed25519: Ed25519Secret,
}

impl IdentityKeyPair {
    /// Encoded length of [`IdentityKeyPair::encode`].
    pub const ENCODED_LEN: usize = 2 + 32 + 32;

    /// A fresh random identity (counselor devices).
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        IdentityKeyPair {
            x25519: X25519Secret::generate(rng),
            ed25519: Ed25519Secret::generate(rng),
        }
    }

    /// The identity two seeds determine (seekers derive them from the codename).
    pub fn from_seeds(x25519_seed: Zeroizing<[u8; 32]>, ed25519_seed: Zeroizing<[u8; 32]>) -> Self {
        IdentityKeyPair {
            x25519: X25519Secret::from_bytes(x25519_seed),
            ed25519: Ed25519Secret::from_seed(ed25519_seed),
        }
    }

    /// The public identity.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic {
            x25519: self.x25519.public(),
            ed25519: self.ed25519.public(),
        }
    }

    /// `version:u8 (=1) || kind:u8 (=4) || x25519_secret[32] || ed25519_seed[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(
            SecretKind::Identity,
            &[&*self.x25519.to_bytes(), &*self.ed25519.to_seed()],
        )
    }

    /// Strict inverse of [`IdentityKeyPair::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::Identity)?;
        let x = read_secret32(&mut r, "identity x25519 secret")?;
        let e = read_secret32(&mut r, "identity ed25519 seed")?;
        r.finish("identity key pair")?;
        Ok(Self::from_seeds(x, e))
    }
}

/// A mailbox's key pair: `auth` proves ownership to the relay (signs its
/// challenges), `seal` opens the envelopes sealed to the mailbox.
#[derive(Debug)]
pub struct MailboxKeyPair {
    pub auth: Ed25519Secret,
    pub seal: X25519Secret,
}

impl MailboxKeyPair {
    /// Encoded length of [`MailboxKeyPair::encode`].
    pub const ENCODED_LEN: usize = 2 + 32 + 32;

    /// A fresh random mailbox (counselor devices).
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        MailboxKeyPair {
            auth: Ed25519Secret::generate(rng),
            seal: X25519Secret::generate(rng),
        }
    }

    /// The mailbox two seeds determine (seekers derive them from the codename).
    pub fn from_seeds(auth_seed: Zeroizing<[u8; 32]>, seal_seed: Zeroizing<[u8; 32]>) -> Self {
        MailboxKeyPair {
            auth: Ed25519Secret::from_seed(auth_seed),
            seal: X25519Secret::from_bytes(seal_seed),
        }
    }

    /// The mailbox's public keys.
    pub fn public(&self) -> MailboxPublic {
        MailboxPublic {
            auth: self.auth.public(),
            seal: self.seal.public(),
        }
    }

    /// The mailbox id (`MailboxId::derive(auth_pk, seal_pk)`).
    pub fn id(&self) -> MailboxId {
        self.public().id()
    }

    /// Signs with the auth key (relay challenges; the caller domain-separates).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.auth.sign(msg)
    }

    /// `version:u8 (=1) || kind:u8 (=5) || auth_seed[32] || seal_secret[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(
            SecretKind::Mailbox,
            &[&*self.auth.to_seed(), &*self.seal.to_bytes()],
        )
    }

    /// Strict inverse of [`MailboxKeyPair::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::Mailbox)?;
        let a = read_secret32(&mut r, "mailbox auth seed")?;
        let s = read_secret32(&mut r, "mailbox seal secret")?;
        r.finish("mailbox key pair")?;
        Ok(Self::from_seeds(a, s))
    }
}

// ---------------------------------------------------------------------------
// ML-KEM-768.
// ---------------------------------------------------------------------------

type MlKemDk = ml_kem::kem::DecapsulationKey<MlKem768Params>;
type MlKemEk = ml_kem::kem::EncapsulationKey<MlKem768Params>;

/// An ML-KEM-768 ciphertext (FIPS 203), 1088 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MlKemCiphertext(pub Box<[u8; MlKemCiphertext::LEN]>);

impl MlKemCiphertext {
    pub const LEN: usize = 1088;
}

impl core::fmt::Debug for MlKemCiphertext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MlKemCiphertext({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl MlKemPublic {
    /// Reads 1184 bytes and checks them ([`MlKemPublic::check`]).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let b = r.take(Self::LEN, "ml-kem public key")?;
        let mut arr = Box::new([0u8; Self::LEN]);
        arr.copy_from_slice(b);
        let pk = MlKemPublic(arr);
        pk.check()?;
        Ok(pk)
    }

    fn to_ek(&self) -> Result<MlKemEk, DecodeError> {
        let enc = ml_kem::Encoded::<MlKemEk>::try_from(&self.0[..]).map_err(|_| {
            DecodeError::Invalid {
                what: "ml-kem public key",
            }
        })?;
        Ok(MlKemEk::from_bytes(&enc))
    }

    /// The FIPS 203 §7.2 "modulus check": every 12-bit coefficient is below
    /// q, i.e. decoding then re-encoding gives the same bytes.
    pub fn check(&self) -> Result<(), DecodeError> {
        let ek = self.to_ek()?;
        if ek.as_bytes().as_slice() != &self.0[..] {
            return Err(DecodeError::Invalid {
                what: "ml-kem public key",
            });
        }
        Ok(())
    }

    /// Encapsulates a fresh shared secret to this key.
    pub fn encapsulate(
        &self,
        rng: &mut impl crate::CryptoRng,
    ) -> Result<(MlKemCiphertext, SharedSecret32), KeyError> {
        let ek = self.to_ek().map_err(|_| KeyError::Encapsulation)?;
        let (ct, mut ss) = ek.encapsulate(rng).map_err(|()| KeyError::Encapsulation)?;
        let mut ct_arr = Box::new([0u8; MlKemCiphertext::LEN]);
        ct_arr.copy_from_slice(ct.as_slice());
        let mut ss_arr = Zeroizing::new([0u8; 32]);
        ss_arr.copy_from_slice(ss.as_slice());
        ss.as_mut_slice().zeroize();
        Ok((MlKemCiphertext(ct_arr), SharedSecret32::new(*ss_arr)))
    }
}

/// An ML-KEM-768 decapsulation key (FIPS 203 expanded form, 2400 bytes).
pub struct MlKemSecret(Box<MlKemDk>);

impl MlKemSecret {
    /// FIPS 203 decapsulation-key length for ML-KEM-768.
    pub const LEN: usize = 2400;
    /// Encoded length of [`MlKemSecret::encode`].
    pub const ENCODED_LEN: usize = 2 + Self::LEN;

    /// A fresh random key pair.
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        let (dk, _ek) = MlKem768::generate(rng);
        MlKemSecret(Box::new(dk))
    }

    /// The key pair FIPS 203 `ML-KEM.KeyGen_internal(d, z)` derives from
    /// `seed = d[32] || z[32]` (what [`MlKemSecret::generate`] does with
    /// fresh random `d` and `z`).
    pub fn from_seed(seed: &[u8; 64]) -> Self {
        let mut d = ml_kem::B32::default();
        let mut z = ml_kem::B32::default();
        d.copy_from_slice(&seed[..32]);
        z.copy_from_slice(&seed[32..]);
        let (dk, _ek) = MlKem768::generate_deterministic(&d, &z);
        d.as_mut_slice().zeroize();
        z.as_mut_slice().zeroize();
        MlKemSecret(Box::new(dk))
    }

    /// The matching encapsulation key.
    pub fn public(&self) -> MlKemPublic {
        let enc = self.0.encapsulation_key().as_bytes();
        let mut arr = Box::new([0u8; MlKemPublic::LEN]);
        arr.copy_from_slice(enc.as_slice());
        MlKemPublic(arr)
    }

    /// Recovers the shared secret of `ct`. ML-KEM uses implicit rejection: a
    /// tampered ciphertext yields an unrelated secret rather than an error.
    pub fn decapsulate(&self, ct: &MlKemCiphertext) -> Result<SharedSecret32, KeyError> {
        let ct = ml_kem::Ciphertext::<MlKem768>::try_from(&ct.0[..])
            .map_err(|_| KeyError::Decapsulation)?;
        let mut ss = self
            .0
            .decapsulate(&ct)
            .map_err(|()| KeyError::Decapsulation)?;
        let mut arr = Zeroizing::new([0u8; 32]);
        arr.copy_from_slice(ss.as_slice());
        ss.as_mut_slice().zeroize();
        Ok(SharedSecret32::new(*arr))
    }

    fn raw_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut enc = self.0.as_bytes();
        let out = Zeroizing::new(enc.as_slice().to_vec());
        enc.as_mut_slice().zeroize();
        out
    }

    fn from_raw(b: &[u8]) -> Result<Self, DecodeError> {
        const WHAT: &str = "ml-kem secret key";
        let mut enc = ml_kem::Encoded::<MlKemDk>::try_from(b)
            .map_err(|_| DecodeError::Invalid { what: WHAT })?;
        let dk = MlKemDk::from_bytes(&enc);
        // FIPS 203 §7.3 input checks: the embedded encapsulation key passes
        // the modulus check, and the stored hash H(ek) matches it.
        let ok = dk.as_bytes().as_slice() == enc.as_slice() && {
            let ek_bytes = dk.encapsulation_key().as_bytes();
            let fresh = MlKemEk::from_bytes(&ek_bytes);
            &fresh == dk.encapsulation_key()
        };
        enc.as_mut_slice().zeroize();
        if !ok {
            return Err(DecodeError::Invalid { what: WHAT });
        }
        Ok(MlKemSecret(Box::new(dk)))
    }

    /// `version:u8 (=1) || kind:u8 (=3) || dk[2400]` (FIPS 203 encoding).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(SecretKind::MlKem768, &[&self.raw_bytes()])
    }

    /// Strict inverse of [`MlKemSecret::encode`]; runs the FIPS 203 key checks.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::MlKem768)?;
        let k = Self::from_raw(r.take(Self::LEN, "ml-kem secret key")?)?;
        r.finish("ml-kem secret key")?;
        Ok(k)
    }
}

impl core::fmt::Debug for MlKemSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MlKemSecret(..)")
    }
}

// ---------------------------------------------------------------------------
// Counselor prekeys (private halves, kept by the device).
// ---------------------------------------------------------------------------

/// The signed prekey (PQXDH's SPK_B): medium-term, rotated by the device.
#[derive(Debug)]
pub struct SignedPreKey {
    pub id: u32,
    pub key: X25519Secret,
}

/// A one-time prekey (OPK_B): used for one session, then deleted.
#[derive(Debug)]
pub struct OneTimePreKey {
    pub id: u32,
    pub key: X25519Secret,
}

/// The signed ML-KEM-768 prekey (PQSPK_B), used as the "last resort" PQ key.
#[derive(Debug)]
pub struct PqPreKey {
    pub id: u32,
    pub key: MlKemSecret,
}

/// A one-time ML-KEM-768 prekey (PQOPK_B): handed out once by the relay
/// (with its signature, [`OneTimePqPreKeyPublic`]), used for one session,
/// then deleted. Kept as its 64-byte FIPS 203 seed `d || z`, from which the
/// decapsulation key is derived again when loaded, so a device's supply of
/// them costs little saved state.
pub struct OneTimePqPreKey {
    pub id: u32,
    seed: Zeroizing<[u8; 64]>,
    key: MlKemSecret,
}

impl core::fmt::Debug for OneTimePqPreKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneTimePqPreKey")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish()
    }
}

/// The public half of a one-time prekey as uploaded to and handed out by
/// the relay: exactly `id:u32 || pk[32]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OneTimePreKeyPublic {
    pub id: u32,
    pub key: X25519Public,
}

/// Encoded length of [`OneTimePreKeyPublic`] (`id:u32 || pk[32]`).
pub const ONE_TIME_PREKEY_PUBLIC_LEN: usize = 36;

/// Most one-time prekeys one call of [`OneTimePreKey::generate_batch`]
/// creates: bounds the work of one upload (100 is what Signal clients upload
/// at a time).
pub const MAX_ONE_TIME_PREKEY_BATCH: usize = 100;

impl OneTimePreKeyPublic {
    /// `id:u32 || pk[32]` (36 bytes).
    pub fn encode(&self) -> [u8; ONE_TIME_PREKEY_PUBLIC_LEN] {
        let mut out = [0u8; ONE_TIME_PREKEY_PUBLIC_LEN];
        out[..4].copy_from_slice(&self.id.to_be_bytes());
        out[4..].copy_from_slice(&self.key.0);
        out
    }

    /// Strictly decodes exactly 36 bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let k = Self::read(&mut r)?;
        r.finish("one-time prekey")?;
        Ok(k)
    }

    /// Reads one from a reader (for frames that carry lists of them).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u32("one-time prekey id")?;
        let key = X25519Public(r.array("one-time prekey")?);
        Ok(OneTimePreKeyPublic { id, key })
    }
}

fn encode_prekey32(kind: SecretKind, id: u32, key: &X25519Secret) -> Zeroizing<Vec<u8>> {
    encode_secret(kind, &[&id.to_be_bytes(), &*key.to_bytes()])
}

fn decode_prekey32(kind: SecretKind, bytes: &[u8]) -> Result<(u32, X25519Secret), DecodeError> {
    let mut r = Reader::new(bytes);
    read_secret_header(&mut r, kind)?;
    let id = r.u32("prekey id")?;
    let k = read_secret32(&mut r, "prekey secret")?;
    r.finish("prekey")?;
    Ok((id, X25519Secret::from_bytes(k)))
}

impl SignedPreKey {
    /// Encoded length of [`SignedPreKey::encode`].
    pub const ENCODED_LEN: usize = 2 + 4 + 32;

    pub fn generate(id: u32, rng: &mut impl crate::CryptoRng) -> Self {
        SignedPreKey {
            id,
            key: X25519Secret::generate(rng),
        }
    }

    /// `version:u8 (=1) || kind:u8 (=6) || id:u32 || secret[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_prekey32(SecretKind::SignedPreKey, self.id, &self.key)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (id, key) = decode_prekey32(SecretKind::SignedPreKey, bytes)?;
        Ok(SignedPreKey { id, key })
    }
}

impl OneTimePreKey {
    /// Encoded length of [`OneTimePreKey::encode`].
    pub const ENCODED_LEN: usize = 2 + 4 + 32;

    pub fn generate(id: u32, rng: &mut impl crate::CryptoRng) -> Self {
        OneTimePreKey {
            id,
            key: X25519Secret::generate(rng),
        }
    }

    /// `count` keys with ids `first_id, first_id + 1, …` (wrapping), at most
    /// [`MAX_ONE_TIME_PREKEY_BATCH`].
    pub fn generate_batch(
        first_id: u32,
        count: usize,
        rng: &mut impl crate::CryptoRng,
    ) -> Result<Vec<Self>, crate::Error> {
        if count > MAX_ONE_TIME_PREKEY_BATCH {
            return Err(crate::Error::TooLongToEncode {
                what: "one-time prekey batch",
                max: MAX_ONE_TIME_PREKEY_BATCH,
                got: count,
            });
        }
        Ok((0..count as u32)
            .map(|i| Self::generate(first_id.wrapping_add(i), rng))
            .collect())
    }

    /// The public half to upload.
    pub fn public(&self) -> OneTimePreKeyPublic {
        OneTimePreKeyPublic {
            id: self.id,
            key: self.key.public(),
        }
    }

    /// `version:u8 (=1) || kind:u8 (=7) || id:u32 || secret[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_prekey32(SecretKind::OneTimePreKey, self.id, &self.key)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (id, key) = decode_prekey32(SecretKind::OneTimePreKey, bytes)?;
        Ok(OneTimePreKey { id, key })
    }
}

impl PqPreKey {
    /// Encoded length of [`PqPreKey::encode`].
    pub const ENCODED_LEN: usize = 2 + 4 + MlKemSecret::LEN;

    pub fn generate(id: u32, rng: &mut impl crate::CryptoRng) -> Self {
        PqPreKey {
            id,
            key: MlKemSecret::generate(rng),
        }
    }

    /// `version:u8 (=1) || kind:u8 (=8) || id:u32 || dk[2400]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(
            SecretKind::PqPreKey,
            &[&self.id.to_be_bytes(), &self.key.raw_bytes()],
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::PqPreKey)?;
        let id = r.u32("pq prekey id")?;
        let key = MlKemSecret::from_raw(r.take(MlKemSecret::LEN, "ml-kem secret key")?)?;
        r.finish("pq prekey")?;
        Ok(PqPreKey { id, key })
    }
}

impl OneTimePqPreKey {
    /// Encoded length of [`OneTimePqPreKey::encode`].
    pub const ENCODED_LEN: usize = 2 + 4 + 64;

    /// A fresh key from 64 random seed bytes.
    pub fn generate(id: u32, rng: &mut impl crate::CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(id, seed)
    }

    fn from_seed(id: u32, seed: Zeroizing<[u8; 64]>) -> Self {
        let key = MlKemSecret::from_seed(&seed);
        OneTimePqPreKey { id, seed, key }
    }

    /// The decapsulation key.
    pub fn key(&self) -> &MlKemSecret {
        &self.key
    }

    /// `version:u8 (=1) || kind:u8 (=9) || id:u32 || d[32] || z[32]`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        encode_secret(
            SecretKind::OneTimePqPreKey,
            &[&self.id.to_be_bytes(), &self.seed[..]],
        )
    }

    /// Strict inverse of [`OneTimePqPreKey::encode`] (derives the key again).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let id = Self::decode_id(bytes)?;
        let mut seed = Zeroizing::new([0u8; 64]);
        seed.copy_from_slice(&bytes[6..]);
        Ok(Self::from_seed(id, seed))
    }

    /// Checks an encoding strictly and returns its id, without deriving the
    /// key (loading saved state need not run a key generation per key).
    pub fn decode_id(bytes: &[u8]) -> Result<u32, DecodeError> {
        let mut r = Reader::new(bytes);
        read_secret_header(&mut r, SecretKind::OneTimePqPreKey)?;
        let id = r.u32("one-time pq prekey id")?;
        r.take(64, "ml-kem seed")?;
        r.finish("one-time pq prekey")?;
        Ok(id)
    }
}

/// Version byte of an encoded [`OrgSigningKey`].
pub const ORG_KEY_VERSION: u8 = 1;

/// Domain of the organisation key's human fingerprint.
pub const FINGERPRINT_DOMAIN: &[u8] = b"northstar/v1/org-fingerprint";

/// The organisation's signing key, held offline by the administrator.
/// Zeroized on drop (ed25519-dalek's `zeroize` feature); `Debug` prints no bytes.
pub struct OrgSigningKey(ed25519_dalek::SigningKey);

impl core::fmt::Debug for OrgSigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("OrgSigningKey(..)")
    }
}

impl OrgSigningKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl crate::CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The key with this RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        OrgSigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The public key to pin in clients.
    pub fn public(&self) -> OrgPublicKey {
        OrgPublicKey(Ed25519Public(self.0.verifying_key().to_bytes()))
    }

    /// `version:u8 (=1) || seed[32]`, for the key store.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(33));
        out.push(ORG_KEY_VERSION);
        out.extend_from_slice(self.0.as_bytes());
        out
    }

    /// Strictly decodes [`OrgSigningKey::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::Error> {
        let mut r = Reader::new(bytes);
        r.version(ORG_KEY_VERSION, "organisation signing key")?;
        let seed = Zeroizing::new(r.array::<32>("organisation signing key")?);
        r.finish("organisation signing key")?;
        Ok(Self::from_seed(&seed))
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Signature {
        Signature(ed25519_dalek::Signer::sign(&self.0, msg).to_bytes())
    }
}

/// The organisation's public key: the root of trust pinned in clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrgPublicKey(Ed25519Public);

impl OrgPublicKey {
    /// Checks the bytes are a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        let k = Ed25519Public(bytes);
        k.check()?;
        Ok(OrgPublicKey(k))
    }

    pub fn as_ed25519(&self) -> &Ed25519Public {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    /// The fingerprint people compare: SHA-256("northstar/v1/org-fingerprint"
    /// || pk) read as eight big-endian u32s, each shown as `u32 mod 100000`
    /// in five decimal digits, separated by spaces (about 133 bits; digits
    /// read aloud the same in every language).
    pub fn fingerprint(&self) -> String {
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, FINGERPRINT_DOMAIN);
        sha2::Digest::update(&mut h, self.0.0);
        let d: [u8; 32] = sha2::Digest::finalize(h).into();
        d.chunks_exact(4)
            .map(|c| {
                let v = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                format!("{:05}", v % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Compares freshly generated vectors with the committed file, or rewrites
/// the file when `NORTHSTAR_WRITE_VECTORS=1` (so vectors cannot drift).
#[cfg(test)]
pub(crate) fn check_vector_file(name: &str, committed: &str, generated: &serde_json::Value) {
    if std::env::var("NORTHSTAR_WRITE_VECTORS").as_deref() == Ok("1") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/vectors")
            .join(name);
        let mut text = serde_json::to_string_pretty(generated).unwrap();
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        return;
    }
    let committed: serde_json::Value = serde_json::from_str(committed).unwrap();
    assert_eq!(
        &committed, generated,
        "docs/vectors/{name} is stale: rerun with NORTHSTAR_WRITE_VECTORS=1"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn h32(v: &serde_json::Value) -> [u8; 32] {
        hex::decode(v.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    }

    #[test]
    fn rfc7748_vectors() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/vectors/rfc7748-x25519.json")).unwrap();
        for t in v["scalar_mult"].as_array().unwrap() {
            let k = X25519Secret::from_bytes(Zeroizing::new(h32(&t["scalar"])));
            let out = k.diffie_hellman(&X25519Public(h32(&t["u"]))).unwrap();
            assert_eq!(out.as_bytes(), &h32(&t["output"]));
        }
        let d = &v["diffie_hellman"];
        let a = X25519Secret::from_bytes(Zeroizing::new(h32(&d["alice_private"])));
        let b = X25519Secret::from_bytes(Zeroizing::new(h32(&d["bob_private"])));
        assert_eq!(a.public().0, h32(&d["alice_public"]));
        assert_eq!(b.public().0, h32(&d["bob_public"]));
        let k1 = a.diffie_hellman(&b.public()).unwrap();
        let k2 = b.diffie_hellman(&a.public()).unwrap();
        assert_eq!(k1.as_bytes(), &h32(&d["shared"]));
        assert!(bool::from(k1.ct_eq(&k2)));
    }

    #[test]
    fn non_contributory_dh_rejected() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let k = X25519Secret::generate(&mut rng);
        // Zero and one are small-order u-coordinates.
        for u in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                k.diffie_hellman(&X25519Public(u)).unwrap_err(),
                KeyError::NonContributory
            );
        }
    }

    #[test]
    fn secret_encodings_round_trip_and_are_strict() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let x = X25519Secret::generate(&mut rng);
        assert_eq!(
            X25519Secret::decode(&x.encode()).unwrap().public(),
            x.public()
        );
        assert_eq!(x.encode().len(), X25519Secret::ENCODED_LEN);
        let e = Ed25519Secret::generate(&mut rng);
        assert_eq!(
            Ed25519Secret::decode(&e.encode()).unwrap().public(),
            e.public()
        );
        let id = IdentityKeyPair::generate(&mut rng);
        assert_eq!(
            IdentityKeyPair::decode(&id.encode()).unwrap().public(),
            id.public()
        );
        let mb = MailboxKeyPair::generate(&mut rng);
        let mb2 = MailboxKeyPair::decode(&mb.encode()).unwrap();
        assert_eq!(mb2.id(), mb.id());
        let spk = SignedPreKey::generate(5, &mut rng);
        let spk2 = SignedPreKey::decode(&spk.encode()).unwrap();
        assert_eq!((spk2.id, spk2.key.public()), (5, spk.key.public()));
        let otk = OneTimePreKey::generate(6, &mut rng);
        assert_eq!(
            OneTimePreKey::decode(&otk.encode()).unwrap().public(),
            otk.public()
        );
        let pq = PqPreKey::generate(7, &mut rng);
        let enc = pq.encode();
        assert_eq!(enc.len(), PqPreKey::ENCODED_LEN);
        let pq2 = PqPreKey::decode(&enc).unwrap();
        assert_eq!((pq2.id, pq2.key.public()), (7, pq.key.public()));
        let ml = MlKemSecret::decode(&pq.key.encode()).unwrap();
        assert_eq!(ml.public(), pq.key.public());
        let opq = OneTimePqPreKey::generate(8, &mut rng);
        let enc = opq.encode();
        assert_eq!(enc.len(), OneTimePqPreKey::ENCODED_LEN);
        let opq2 = OneTimePqPreKey::decode(&enc).unwrap();
        assert_eq!((opq2.id, opq2.key().public()), (8, opq.key().public()));
        // The seed is what FIPS 203 key generation takes: the same seed, the
        // same key; the expanded key passes the FIPS 203 §7.3 checks.
        assert_eq!(
            MlKemSecret::decode(&opq.key().encode()).unwrap().public(),
            opq.key().public()
        );
        assert!(OneTimePqPreKey::decode(&pq.encode()).is_err());
        assert!(PqPreKey::decode(&enc).is_err());
        assert!(OneTimePqPreKey::decode(&enc[..enc.len() - 1]).is_err());
        assert!(OneTimePqPreKey::decode(&[&enc[..], &[0]].concat()).is_err());

        // A key of one kind does not load as another; trailing bytes, short
        // input and other versions are refused.
        assert!(Ed25519Secret::decode(&x.encode()).is_err());
        assert!(MailboxKeyPair::decode(&id.encode()).is_err());
        assert!(OneTimePreKey::decode(&spk.encode()).is_err());
        let mut long = x.encode().to_vec();
        long.push(0);
        assert!(X25519Secret::decode(&long).is_err());
        assert!(X25519Secret::decode(&x.encode()[..33]).is_err());
        let mut v2 = x.encode().to_vec();
        v2[0] = 2;
        assert!(X25519Secret::decode(&v2).is_err());
        // A corrupted ML-KEM secret (hash of the embedded public key) is refused.
        let mut bad = pq.encode().to_vec();
        let n = bad.len();
        bad[n - 40] ^= 1; // inside H(ek)
        assert!(PqPreKey::decode(&bad).is_err());
    }

    #[test]
    fn ml_kem_round_trip_and_public_key_check() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let sk = MlKemSecret::generate(&mut rng);
        let pk = sk.public();
        pk.check().unwrap();
        let (ct, ss1) = pk.encapsulate(&mut rng).unwrap();
        let ss2 = sk.decapsulate(&ct).unwrap();
        assert!(bool::from(ss1.ct_eq(&ss2)));
        let mut bad_ct = ct.clone();
        bad_ct.0[0] ^= 1;
        assert!(!bool::from(sk.decapsulate(&bad_ct).unwrap().ct_eq(&ss1)));
        // A coefficient >= q fails the FIPS 203 modulus check.
        let mut bad = pk.clone();
        bad.0[0] = 0xff;
        bad.0[1] |= 0x0f;
        assert!(bad.check().is_err());
        let mut r = Reader::new(&bad.0[..]);
        assert!(MlKemPublic::read(&mut r).is_err());
    }

    #[test]
    fn one_time_prekey_public_is_36_bytes() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let batch = OneTimePreKey::generate_batch(u32::MAX, 3, &mut rng).unwrap();
        assert_eq!(
            batch.iter().map(|k| k.id).collect::<Vec<_>>(),
            [u32::MAX, 0, 1]
        );
        let p = batch[0].public();
        let e = p.encode();
        assert_eq!(e.len(), ONE_TIME_PREKEY_PUBLIC_LEN);
        assert_eq!(OneTimePreKeyPublic::decode(&e).unwrap(), p);
        assert!(OneTimePreKeyPublic::decode(&e[..35]).is_err());
        assert!(OneTimePreKeyPublic::decode(&[e.as_slice(), &[0]].concat()).is_err());
        assert!(OneTimePreKey::generate_batch(0, MAX_ONE_TIME_PREKEY_BATCH + 1, &mut rng).is_err());
    }

    #[test]
    fn signatures_and_mailbox_ids() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let mb = MailboxKeyPair::from_seeds(Zeroizing::new([1; 32]), Zeroizing::new([2; 32]));
        let sig = mb.sign(b"challenge");
        assert!(mb.public().auth.verify(b"challenge", &sig));
        assert!(!mb.public().auth.verify(b"challengf", &sig));
        assert_eq!(
            mb.id(),
            MailboxId::derive(&mb.public().auth.0, &mb.public().seal.0)
        );
        let other = MailboxKeyPair::generate(&mut rng);
        assert_ne!(other.id(), mb.id());
        // Seeds determine the keys.
        let again = MailboxKeyPair::from_seeds(Zeroizing::new([1; 32]), Zeroizing::new([2; 32]));
        assert_eq!(again.id(), mb.id());
    }

    #[test]
    fn debug_of_secrets_prints_no_bytes() {
        let mut rng = ChaCha20Rng::from_seed([6; 32]);
        let id =
            IdentityKeyPair::from_seeds(Zeroizing::new([0xAB; 32]), Zeroizing::new([0xCD; 32]));
        let mb = MailboxKeyPair::from_seeds(Zeroizing::new([0xAB; 32]), Zeroizing::new([0xCD; 32]));
        let pq = PqPreKey::generate(1, &mut rng);
        let spk = SignedPreKey::generate(2, &mut rng);
        let otk = OneTimePreKey::generate(3, &mut rng);
        let opq = OneTimePqPreKey::generate(4, &mut rng);
        let ss = SharedSecret32::new([0xAB; 32]);
        let all = format!("{id:?} {mb:?} {pq:?} {spk:?} {otk:?} {opq:?} {ss:?}");
        assert_eq!(
            all,
            "IdentityKeyPair { x25519: X25519Secret(..), ed25519: Ed25519Secret(..) } \
             MailboxKeyPair { auth: Ed25519Secret(..), seal: X25519Secret(..) } \
             PqPreKey { id: 1, key: MlKemSecret(..) } \
             SignedPreKey { id: 2, key: X25519Secret(..) } \
             OneTimePreKey { id: 3, key: X25519Secret(..) } \
             OneTimePqPreKey { id: 4, key: MlKemSecret(..) } SharedSecret32(..)"
        );
    }

    proptest! {
        #[test]
        fn secret_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = X25519Secret::decode(&bytes);
            let _ = Ed25519Secret::decode(&bytes);
            let _ = IdentityKeyPair::decode(&bytes);
            let _ = MailboxKeyPair::decode(&bytes);
            let _ = SignedPreKey::decode(&bytes);
            let _ = OneTimePreKey::decode(&bytes);
            let _ = OneTimePqPreKey::decode(&bytes);
            let _ = OneTimePreKeyPublic::decode(&bytes);
            let mut r = Reader::new(&bytes);
            let _ = MailboxPublic::read(&mut r);
            let mut r = Reader::new(&bytes);
            let _ = IdentityPublic::read(&mut r);
        }

        #[test]
        fn ml_kem_decoders_never_panic(head in proptest::collection::vec(any::<u8>(), 0..8), fill in any::<u8>(), len in 0usize..2500) {
            let mut bytes = head;
            bytes.resize(len, fill);
            let _ = MlKemSecret::decode(&bytes);
            let _ = PqPreKey::decode(&bytes);
            let mut r = Reader::new(&bytes);
            let _ = MlKemPublic::read(&mut r);
        }

        #[test]
        fn x25519_secret_round_trip(seed in any::<[u8; 32]>()) {
            let k = X25519Secret::from_bytes(Zeroizing::new(seed));
            prop_assert_eq!(&*k.to_bytes(), &seed);
            prop_assert_eq!(X25519Secret::decode(&k.encode()).unwrap().public(), k.public());
        }
    }
}
