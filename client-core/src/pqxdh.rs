//! Session set-up following Signal's PQXDH specification
//! (<https://signal.org/docs/specifications/pqxdh/>), with X25519 and
//! ML-KEM-768. Byte-exact formats: docs/PROTOCOL.md §"Keys, PQXDH and sealed
//! sender" (source: `docs/PROTOCOL.md §2`).
//!
//! A counselor device (Bob, the responder) publishes a [`SignedPreKeyBundle`]
//! (identity keys, a signed X25519 prekey, a signed "last resort"
//! ML-KEM-768 prekey), one-time X25519 prekeys ([`OneTimePreKeyPublic`]) and
//! signed one-time ML-KEM-768 prekeys ([`OneTimePqPreKeyPublic`]). A seeker
//! (Alice, the initiator) fetches the bundle with at most one of each
//! one-time kind from the relay, checks the signatures
//! ([`SignedPreKeyBundle::verify_for`], [`VerifiedBundle::with_one_time_pq`])
//! and runs [`initiate`]:
//!
//! ```text
//! EK_A            = fresh X25519 key
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (only when a one-time prekey was handed out)
//! (CT, SS)        = ML-KEM-768.Encaps(PQOPK_B if one was handed out, else PQSPK_B)
//! SK = HKDF-SHA256(salt = 0x00*32, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS,
//!                  info = "Northstar_PQXDH_CURVE25519_SHA-256_ML-KEM-768", L = 32)
//! AD = Encode(IK_A) || Encode(IK_B) || Encode(MB_A)
//! ```
//!
//! `Encode(IK) = x25519_pk[32] || ed25519_pk[32]`; `MB_A` is the initiator's
//! mailbox (`auth_pk[32] || seal_pk[32]`), the address replies go to. It is
//! carried in the [`InitialHeader`] and bound into `AD`, which the Double
//! Ratchet authenticates with every message, so nobody can redirect the
//! responder's replies by swapping the mailbox. Every DH output is checked
//! to be non-zero ([`X25519Secret::diffie_hellman`]). The responder runs
//! [`respond`], consuming the one-time prekey.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{DecodeError, Error};
use crate::keys::{
    IdentityKeyPair, IdentityPublic, KeyError, MailboxKeyPair, MailboxPublic, MlKemCiphertext,
    MlKemPublic, MlKemSecret, OneTimePqPreKey, OneTimePreKey, OneTimePreKeyPublic, PqPreKey,
    SharedSecret32, Signature, SignedPreKey, X25519Public, X25519Secret,
};
use crate::wire::{Reader, Writer};

/// HKDF `info` of the PQXDH key derivation (the spec's protocol name).
pub const PQXDH_INFO: &[u8] = b"Northstar_PQXDH_CURVE25519_SHA-256_ML-KEM-768";

/// Domain separator of the signature over the signed X25519 prekey.
pub const SIGNED_PREKEY_SIG_CONTEXT: &[u8] = b"northstar/v1/pqxdh/signed-prekey";

/// Domain separator of the signature over the signed ML-KEM prekey.
pub const PQ_PREKEY_SIG_CONTEXT: &[u8] = b"northstar/v1/pqxdh/pq-prekey";

/// Domain separator of the signature over a one-time ML-KEM prekey (its own,
/// so a one-time key can never pass for the last-resort key or back).
pub const ONE_TIME_PQ_PREKEY_SIG_CONTEXT: &[u8] = b"northstar/v2/pqxdh/one-time-pq-prekey";

/// Version byte of [`SignedPreKeyBundle`].
pub const BUNDLE_VERSION: u8 = 1;

/// Version byte of [`InitialHeader`] (2: carries the mailbox proof; 3: names
/// which kind of ML-KEM prekey was used, last resort or one-time).
pub const INITIAL_HEADER_VERSION: u8 = 3;

/// Context of the initiator's proof that it holds the mailbox it names
/// (`MB_A`): an Ed25519 signature by the mailbox's auth key.
pub const MAILBOX_PROOF_CONTEXT: &[u8] = b"northstar/v2/pqxdh/mailbox-proof";

/// Exact length of an encoded [`SignedPreKeyBundle`]: version, identity
/// (64), signed prekey (id 4, key 32, signature 64), PQ prekey (id 4, key
/// 1184, signature 64).
pub const SIGNED_BUNDLE_LEN: usize =
    1 + IdentityPublic::LEN + (4 + 32 + 64) + (4 + MlKemPublic::LEN + 64);

/// The relay's limit on a stored bundle. The format is fixed-length, so the
/// limit is that length: anything longer cannot be a valid bundle.
pub const MAX_SIGNED_BUNDLE_LEN: usize = SIGNED_BUNDLE_LEN;

/// Exact length of an encoded [`OneTimePqPreKeyPublic`]: id, ML-KEM-768
/// encapsulation key, signature.
pub const ONE_TIME_PQ_PREKEY_PUBLIC_LEN: usize = 4 + MlKemPublic::LEN + 64;

/// Length of an [`InitialHeader`] without a one-time prekey id.
pub const INITIAL_HEADER_MIN_LEN: usize =
    1 + IdentityPublic::LEN + MailboxPublic::LEN + 32 + 4 + (1 + 4) + 1 + MlKemCiphertext::LEN + 64;

/// Length of an [`InitialHeader`] with a one-time prekey id (the largest).
pub const INITIAL_HEADER_MAX_LEN: usize = INITIAL_HEADER_MIN_LEN + 4;

/// Length of the associated data: `Encode(IK_A) || Encode(IK_B) || Encode(MB_A)`.
pub const ASSOCIATED_DATA_LEN: usize = 2 * IdentityPublic::LEN + MailboxPublic::LEN;

/// Why session set-up failed. Carries no key material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PqxdhError {
    /// The signature over the signed X25519 prekey does not verify.
    #[error("signed prekey signature does not verify")]
    BadSignedPreKeySignature,
    /// The signature over the ML-KEM prekey does not verify.
    #[error("PQ prekey signature does not verify")]
    BadPqPreKeySignature,
    /// The signature over the one-time ML-KEM prekey the relay handed out
    /// does not verify (a relay substituting its own key).
    #[error("one-time PQ prekey signature does not verify")]
    BadOneTimePqPreKeySignature,
    /// The bundle is signed by an identity other than the expected one
    /// (the one the signed directory lists).
    #[error("bundle identity is not the expected identity")]
    UnexpectedIdentity,
    /// Initiator and responder share an identity key: a session with oneself
    /// (or a reflected header) is refused.
    #[error("initiator and responder identities are the same")]
    SameIdentity,
    /// The header names a prekey this responder does not hold.
    #[error("header names a different {which} than the one supplied")]
    PreKeyMismatch { which: &'static str },
    /// A DH output was all zeros (a small-order public key).
    #[error("an X25519 exchange was not contributory")]
    NonContributory,
    /// ML-KEM encapsulation or decapsulation failed.
    #[error("ML-KEM operation failed")]
    Kem,
    /// The initiator did not prove it holds the mailbox it names: a session
    /// start that would file replies (and the conversation) under someone
    /// else's mailbox.
    #[error("the initiator's mailbox proof does not verify")]
    BadMailboxProof,
    /// HKDF refused the output length (cannot happen for 32 bytes; kept
    /// rather than panicking).
    #[error("key derivation failed")]
    KeyDerivation,
}

impl From<KeyError> for PqxdhError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NonContributory => PqxdhError::NonContributory,
            _ => PqxdhError::Kem,
        }
    }
}

// ---------------------------------------------------------------------------
// Bundles.
// ---------------------------------------------------------------------------

/// `context || identity_x25519_pk[32] || id:u32 || pk` — what the identity
/// Ed25519 key signs for each prekey. Binding the X25519 identity key ties
/// the two halves of the identity together.
fn prekey_sig_message(context: &[u8], identity: &X25519Public, id: u32, pk: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(context.len() + 32 + 4 + pk.len());
    w.bytes(context).bytes(&identity.0).u32(id).bytes(pk);
    w.into_bytes()
}

/// A counselor device's public prekey bundle, as stored (opaquely) by the
/// relay. Not yet trusted: call [`SignedPreKeyBundle::verify_for`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedPreKeyBundle {
    /// The device's identity keys (IK_B and its signing key).
    pub identity: IdentityPublic,
    /// Signed prekey id (chosen by the device; echoed in the initial header).
    pub signed_prekey_id: u32,
    /// SPK_B.
    pub signed_prekey: X25519Public,
    /// Ed25519 signature by `identity.ed25519` over the signed prekey.
    pub signed_prekey_sig: Signature,
    /// PQ prekey id (echoed in the initial header).
    pub pq_prekey_id: u32,
    /// PQSPK_B (ML-KEM-768 encapsulation key).
    pub pq_prekey: MlKemPublic,
    /// Ed25519 signature by `identity.ed25519` over the PQ prekey.
    pub pq_prekey_sig: Signature,
}

impl SignedPreKeyBundle {
    /// Builds and signs the bundle of `identity`'s prekeys.
    pub fn build(identity: &IdentityKeyPair, spk: &SignedPreKey, pq: &PqPreKey) -> Self {
        let ik = identity.public();
        let spk_pk = spk.key.public();
        let pq_pk = pq.key.public();
        let spk_sig = identity.ed25519.sign(&prekey_sig_message(
            SIGNED_PREKEY_SIG_CONTEXT,
            &ik.x25519,
            spk.id,
            &spk_pk.0,
        ));
        let pq_sig = identity.ed25519.sign(&prekey_sig_message(
            PQ_PREKEY_SIG_CONTEXT,
            &ik.x25519,
            pq.id,
            &pq_pk.0[..],
        ));
        SignedPreKeyBundle {
            identity: ik,
            signed_prekey_id: spk.id,
            signed_prekey: spk_pk,
            signed_prekey_sig: spk_sig,
            pq_prekey_id: pq.id,
            pq_prekey: pq_pk,
            pq_prekey_sig: pq_sig,
        }
    }

    /// Encodes ([`SIGNED_BUNDLE_LEN`] bytes):
    ///
    /// ```text
    /// version:u8 (=1) || ik_x25519[32] || ik_ed25519[32]
    ///   || spk_id:u32 || spk[32] || spk_sig[64]
    ///   || pq_id:u32 || pq_pk[1184] || pq_sig[64]
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGNED_BUNDLE_LEN);
        w.u8(BUNDLE_VERSION);
        self.identity.write(&mut w);
        w.u32(self.signed_prekey_id)
            .bytes(&self.signed_prekey.0)
            .bytes(&self.signed_prekey_sig.0)
            .u32(self.pq_prekey_id)
            .bytes(&self.pq_prekey.0[..])
            .bytes(&self.pq_prekey_sig.0);
        w.into_bytes()
    }

    /// Strictly decodes a bundle (checks the Ed25519 point and the ML-KEM
    /// modulus; does not check signatures).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_SIGNED_BUNDLE_LEN {
            return Err(DecodeError::TooLong {
                what: "signed prekey bundle",
                max: MAX_SIGNED_BUNDLE_LEN,
                got: bytes.len(),
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        r.version(BUNDLE_VERSION, "signed prekey bundle")?;
        let identity = IdentityPublic::read(&mut r)?;
        let signed_prekey_id = r.u32("signed prekey id")?;
        let signed_prekey = X25519Public(r.array("signed prekey")?);
        let signed_prekey_sig = Signature(r.array("signed prekey signature")?);
        let pq_prekey_id = r.u32("pq prekey id")?;
        let pq_prekey = MlKemPublic::read(&mut r)?;
        let pq_prekey_sig = Signature(r.array("pq prekey signature")?);
        r.finish("signed prekey bundle")?;
        Ok(SignedPreKeyBundle {
            identity,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_sig,
            pq_prekey_id,
            pq_prekey,
            pq_prekey_sig,
        })
    }

    /// Checks both signatures against the bundle's own identity key.
    ///
    /// This proves only that the prekeys belong to *some* identity: callers
    /// must also check that identity is the device the signed directory
    /// lists — prefer [`SignedPreKeyBundle::verify_for`], which does both.
    pub fn verify(&self) -> Result<VerifiedBundle, PqxdhError> {
        let ik = &self.identity;
        let spk_msg = prekey_sig_message(
            SIGNED_PREKEY_SIG_CONTEXT,
            &ik.x25519,
            self.signed_prekey_id,
            &self.signed_prekey.0,
        );
        if !ik.ed25519.verify(&spk_msg, &self.signed_prekey_sig) {
            return Err(PqxdhError::BadSignedPreKeySignature);
        }
        let pq_msg = prekey_sig_message(
            PQ_PREKEY_SIG_CONTEXT,
            &ik.x25519,
            self.pq_prekey_id,
            &self.pq_prekey.0[..],
        );
        if !ik.ed25519.verify(&pq_msg, &self.pq_prekey_sig) {
            return Err(PqxdhError::BadPqPreKeySignature);
        }
        Ok(VerifiedBundle {
            identity: *ik,
            signed_prekey_id: self.signed_prekey_id,
            signed_prekey: self.signed_prekey,
            pq_prekey_id: self.pq_prekey_id,
            pq_prekey: self.pq_prekey.clone(),
            one_time_pq: None,
        })
    }

    /// [`SignedPreKeyBundle::verify`] plus: the bundle's identity is
    /// `expected` (the device's keys from the verified directory).
    pub fn verify_for(&self, expected: &IdentityPublic) -> Result<VerifiedBundle, PqxdhError> {
        let same = self.identity.x25519.0.ct_eq(&expected.x25519.0)
            & self.identity.ed25519.0.ct_eq(&expected.ed25519.0);
        if !bool::from(same) {
            return Err(PqxdhError::UnexpectedIdentity);
        }
        self.verify()
    }
}

/// A bundle whose prekey signatures were checked. Only
/// [`SignedPreKeyBundle::verify`] makes one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VerifiedBundle {
    identity: IdentityPublic,
    signed_prekey_id: u32,
    signed_prekey: X25519Public,
    pq_prekey_id: u32,
    pq_prekey: MlKemPublic,
    /// A one-time ML-KEM prekey whose signature was checked, if the relay
    /// handed one out: used instead of the last-resort key.
    one_time_pq: Option<(u32, MlKemPublic)>,
}

impl VerifiedBundle {
    /// Adds the one-time ML-KEM prekey the relay handed out with the
    /// bundle, after checking it is signed by the bundle's identity.
    pub fn with_one_time_pq(mut self, k: &OneTimePqPreKeyPublic) -> Result<Self, PqxdhError> {
        k.verify(&self.identity)?;
        self.one_time_pq = Some((k.id, k.key.clone()));
        Ok(self)
    }

    /// The ML-KEM prekey a session started from this bundle encapsulates
    /// to: the one-time key if there is one, else the last-resort key.
    pub fn pq_prekey_used(&self) -> PqPrekeyId {
        match &self.one_time_pq {
            Some((id, _)) => PqPrekeyId::OneTime(*id),
            None => PqPrekeyId::LastResort(self.pq_prekey_id),
        }
    }

    /// The identity that signed the prekeys.
    pub fn identity(&self) -> &IdentityPublic {
        &self.identity
    }
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }
    /// SPK_B: also the responder's first ratchet public key (the Double
    /// Ratchet initiator's `their_ratchet_pk`).
    pub fn signed_prekey(&self) -> &X25519Public {
        &self.signed_prekey
    }
    pub fn pq_prekey_id(&self) -> u32 {
        self.pq_prekey_id
    }
    /// PQSPK_B.
    pub fn pq_prekey(&self) -> &MlKemPublic {
        &self.pq_prekey
    }
}

/// The public half of a one-time ML-KEM-768 prekey as uploaded to and
/// handed out by the relay, signed by the device's identity Ed25519 key
/// (as PQXDH requires of every PQ prekey: the relay must not be able to
/// substitute a key of its own). Exactly [`ONE_TIME_PQ_PREKEY_PUBLIC_LEN`]
/// bytes: `id:u32 || pk[1184] || sig[64]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OneTimePqPreKeyPublic {
    pub id: u32,
    pub key: MlKemPublic,
    pub signature: Signature,
}

impl OneTimePqPreKeyPublic {
    /// The signed public half of `key`.
    pub fn build(identity: &IdentityKeyPair, key: &OneTimePqPreKey) -> Self {
        let pk = key.key().public();
        let signature = identity.ed25519.sign(&prekey_sig_message(
            ONE_TIME_PQ_PREKEY_SIG_CONTEXT,
            &identity.x25519.public(),
            key.id,
            &pk.0[..],
        ));
        OneTimePqPreKeyPublic {
            id: key.id,
            key: pk,
            signature,
        }
    }

    /// Checks the signature against `identity` (the bundle's).
    pub fn verify(&self, identity: &IdentityPublic) -> Result<(), PqxdhError> {
        let msg = prekey_sig_message(
            ONE_TIME_PQ_PREKEY_SIG_CONTEXT,
            &identity.x25519,
            self.id,
            &self.key.0[..],
        );
        if !identity.ed25519.verify(&msg, &self.signature) {
            return Err(PqxdhError::BadOneTimePqPreKeySignature);
        }
        Ok(())
    }

    /// `id:u32 || pk[1184] || sig[64]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(ONE_TIME_PQ_PREKEY_PUBLIC_LEN);
        w.u32(self.id)
            .bytes(&self.key.0[..])
            .bytes(&self.signature.0);
        w.into_bytes()
    }

    /// Reads one (checks the ML-KEM modulus; not the signature).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = r.u32("one-time pq prekey id")?;
        let key = MlKemPublic::read(r)?;
        let signature = Signature(r.array("one-time pq prekey signature")?);
        Ok(OneTimePqPreKeyPublic { id, key, signature })
    }

    /// Strictly decodes exactly [`ONE_TIME_PQ_PREKEY_PUBLIC_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let k = Self::read(&mut r)?;
        r.finish("one-time pq prekey")?;
        Ok(k)
    }
}

// ---------------------------------------------------------------------------
// Initial header, session secret, associated data.
// ---------------------------------------------------------------------------

/// Which ML-KEM prekey a session start encapsulated to: the signed
/// last-resort key of the bundle, or a one-time key. On the wire
/// `kind:u8 (1 last resort, 2 one-time) || id:u32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PqPrekeyId {
    LastResort(u32),
    OneTime(u32),
}

impl PqPrekeyId {
    fn write(&self, w: &mut Writer) {
        match self {
            PqPrekeyId::LastResort(id) => w.u8(1).u32(*id),
            PqPrekeyId::OneTime(id) => w.u8(2).u32(*id),
        };
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("pq prekey kind")? {
            1 => Ok(PqPrekeyId::LastResort(r.u32("pq prekey id")?)),
            2 => Ok(PqPrekeyId::OneTime(r.u32("pq prekey id")?)),
            tag => Err(DecodeError::UnknownTag {
                what: "pq prekey kind",
                tag,
            }),
        }
    }
}

/// The responder's ML-KEM secret for a session start: the one the header
/// names ([`InitialHeader::pq_prekey`]).
#[derive(Clone, Copy, Debug)]
pub enum PqSecret<'a> {
    LastResort(&'a PqPreKey),
    OneTime(&'a OneTimePqPreKey),
}

impl PqSecret<'_> {
    fn id(&self) -> PqPrekeyId {
        match self {
            PqSecret::LastResort(k) => PqPrekeyId::LastResort(k.id),
            PqSecret::OneTime(k) => PqPrekeyId::OneTime(k.id),
        }
    }

    fn key(&self) -> &MlKemSecret {
        match self {
            PqSecret::LastResort(k) => &k.key,
            PqSecret::OneTime(k) => k.key(),
        }
    }
}

impl<'a> From<&'a PqPreKey> for PqSecret<'a> {
    fn from(k: &'a PqPreKey) -> Self {
        PqSecret::LastResort(k)
    }
}

impl<'a> From<&'a OneTimePqPreKey> for PqSecret<'a> {
    fn from(k: &'a OneTimePqPreKey) -> Self {
        PqSecret::OneTime(k)
    }
}

/// What the initiator sends (inside the sealed envelope) so the responder
/// can derive the same secret.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InitialHeader {
    initiator: IdentityPublic,
    initiator_mailbox: MailboxPublic,
    ephemeral: X25519Public,
    signed_prekey_id: u32,
    pq_prekey: PqPrekeyId,
    one_time_prekey_id: Option<u32>,
    kem_ciphertext: MlKemCiphertext,
    /// Ed25519 signature by `MB_A`'s auth key over
    /// [`InitialHeader::mailbox_proof_message`].
    mailbox_proof: Signature,
}

impl InitialHeader {
    /// What the initiator's mailbox key signs: the context, the responder's
    /// identity, then every header field before the proof (identity,
    /// mailbox, ephemeral key, prekey ids, KEM ciphertext), so the proof
    /// holds for this one session start only.
    ///
    /// ```text
    /// MAILBOX_PROOF_CONTEXT || Encode(IK_B) || header[1 .. len - 64]
    /// ```
    pub fn mailbox_proof_message(&self, responder: &IdentityPublic) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(MAILBOX_PROOF_CONTEXT.len() + 64 + INITIAL_HEADER_MAX_LEN);
        w.bytes(MAILBOX_PROOF_CONTEXT);
        responder.write(&mut w);
        self.write_fields(&mut w);
        w.into_bytes()
    }

    /// IK_A (and the initiator's Ed25519 key).
    pub fn initiator(&self) -> &IdentityPublic {
        &self.initiator
    }
    /// MB_A: the mailbox the responder replies to.
    pub fn initiator_mailbox(&self) -> &MailboxPublic {
        &self.initiator_mailbox
    }
    /// EK_A.
    pub fn ephemeral(&self) -> &X25519Public {
        &self.ephemeral
    }
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }
    /// The ML-KEM prekey encapsulated to (one-time or last resort).
    pub fn pq_prekey(&self) -> PqPrekeyId {
        self.pq_prekey
    }
    /// The one-time prekey used, if the relay handed one out.
    pub fn one_time_prekey_id(&self) -> Option<u32> {
        self.one_time_prekey_id
    }
    pub fn kem_ciphertext(&self) -> &MlKemCiphertext {
        &self.kem_ciphertext
    }

    /// Appends the encoding:
    ///
    /// ```text
    /// version:u8 (=3) || ik_x25519[32] || ik_ed25519[32]
    ///   || mailbox_auth[32] || mailbox_seal[32] || ek[32]
    ///   || spk_id:u32 || pq_kind:u8 (1 last resort | 2 one-time) || pq_id:u32
    ///   || has_otk:u8 (0 | 1) || [otk_id:u32 if has_otk = 1]
    ///   || kem_ct[1088] || mailbox_proof[64]
    /// ```
    pub fn write(&self, w: &mut Writer) {
        w.u8(INITIAL_HEADER_VERSION);
        self.write_fields(w);
        w.bytes(&self.mailbox_proof.0);
    }

    fn write_fields(&self, w: &mut Writer) {
        self.initiator.write(w);
        self.initiator_mailbox.write(w);
        w.bytes(&self.ephemeral.0).u32(self.signed_prekey_id);
        self.pq_prekey.write(w);
        match self.one_time_prekey_id {
            None => {
                w.u8(0);
            }
            Some(id) => {
                w.u8(1).u32(id);
            }
        }
        w.bytes(&self.kem_ciphertext.0[..]);
    }

    /// The encoding alone (see [`InitialHeader::write`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(INITIAL_HEADER_MAX_LEN);
        self.write(&mut w);
        w.into_bytes()
    }

    /// Reads one header (self-delimiting) from a reader.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(INITIAL_HEADER_VERSION, "initial header")?;
        let initiator = IdentityPublic::read(r)?;
        let initiator_mailbox = MailboxPublic::read(r)?;
        let ephemeral = X25519Public(r.array("ephemeral key")?);
        let signed_prekey_id = r.u32("signed prekey id")?;
        let pq_prekey = PqPrekeyId::read(r)?;
        let one_time_prekey_id = match r.u8("one-time prekey flag")? {
            0 => None,
            1 => Some(r.u32("one-time prekey id")?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "one-time prekey flag",
                    tag,
                });
            }
        };
        let ct = r.take(MlKemCiphertext::LEN, "kem ciphertext")?;
        let mut arr = Box::new([0u8; MlKemCiphertext::LEN]);
        arr.copy_from_slice(ct);
        let mailbox_proof = Signature(r.array("mailbox proof")?);
        Ok(InitialHeader {
            initiator,
            initiator_mailbox,
            ephemeral,
            signed_prekey_id,
            pq_prekey,
            one_time_prekey_id,
            kem_ciphertext: MlKemCiphertext(arr),
            mailbox_proof,
        })
    }

    /// Strictly decodes exactly one header.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let h = Self::read(&mut r)?;
        r.finish("initial header")?;
        Ok(h)
    }
}

/// PQXDH's output SK: the root key the Double Ratchet starts from.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SessionSecret(Box<[u8; 32]>);

impl SessionSecret {
    /// Hands the bytes to the ratchet (consumes the secret).
    pub fn into_bytes(self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0)
    }
}

impl ConstantTimeEq for SessionSecret {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&*other.0)
    }
}

impl core::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// `Encode(IK_A) || Encode(IK_B) || Encode(MB_A)` ([`ASSOCIATED_DATA_LEN`]
/// bytes): public, but the ratchet must authenticate it with every message.
#[derive(Clone, PartialEq, Eq)]
pub struct AssociatedData([u8; ASSOCIATED_DATA_LEN]);

impl AssociatedData {
    fn new(
        initiator: &IdentityPublic,
        responder: &IdentityPublic,
        mailbox: &MailboxPublic,
    ) -> Self {
        let mut w = Writer::with_capacity(ASSOCIATED_DATA_LEN);
        initiator.write(&mut w);
        responder.write(&mut w);
        mailbox.write(&mut w);
        let mut out = [0u8; ASSOCIATED_DATA_LEN];
        out.copy_from_slice(&w.into_bytes());
        AssociatedData(out)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for AssociatedData {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AssociatedData({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// `HKDF-SHA256(salt = 0*32, ikm = 0xFF*32 || km, info = PQXDH_INFO)`, 32 bytes.
fn kdf(parts: &[&SharedSecret32]) -> Result<SessionSecret, PqxdhError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * (parts.len() + 1)));
    ikm.extend_from_slice(&[0xFF; 32]);
    for p in parts {
        ikm.extend_from_slice(p.as_bytes());
    }
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &ikm);
    let mut out = Box::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit; never fails.
    hk.expand(PQXDH_INFO, &mut out[..])
        .map_err(|_| PqxdhError::KeyDerivation)?;
    Ok(SessionSecret(out))
}

fn same_identity(a: &IdentityPublic, b: &IdentityPublic) -> bool {
    a.x25519 == b.x25519 || a.ed25519 == b.ed25519
}

/// Alice's side: derives SK for `bundle` (already verified) and the header
/// to send with the first message.
///
/// `otk` is the one-time prekey the relay handed out with the bundle, if any
/// (the relay may have run out); a one-time ML-KEM prekey, if one was
/// handed out, is part of `bundle` ([`VerifiedBundle::with_one_time_pq`])
/// and is used instead of the last-resort one. `our_mailbox` is the mailbox the responder
/// should reply to; it is bound into `AD`, and its key signs the header to
/// prove we hold it.
pub fn initiate(
    rng: &mut impl crate::CryptoRng,
    our: &IdentityKeyPair,
    our_mailbox: &MailboxKeyPair,
    bundle: &VerifiedBundle,
    otk: Option<&OneTimePreKeyPublic>,
) -> Result<(InitialHeader, SessionSecret, AssociatedData), PqxdhError> {
    let ik_a = our.public();
    let ik_b = bundle.identity;
    if same_identity(&ik_a, &ik_b) {
        return Err(PqxdhError::SameIdentity);
    }
    let ek = X25519Secret::generate(rng);
    let dh1 = our.x25519.diffie_hellman(&bundle.signed_prekey)?;
    let dh2 = ek.diffie_hellman(&ik_b.x25519)?;
    let dh3 = ek.diffie_hellman(&bundle.signed_prekey)?;
    let dh4 = otk.map(|k| ek.diffie_hellman(&k.key)).transpose()?;
    let pq_pk = match &bundle.one_time_pq {
        Some((_, k)) => k,
        None => &bundle.pq_prekey,
    };
    let (ct, ss) = pq_pk.encapsulate(rng)?;
    let sk = match &dh4 {
        Some(dh4) => kdf(&[&dh1, &dh2, &dh3, dh4, &ss])?,
        None => kdf(&[&dh1, &dh2, &dh3, &ss])?,
    };
    let mb_a = our_mailbox.public();
    let mut header = InitialHeader {
        initiator: ik_a,
        initiator_mailbox: mb_a,
        ephemeral: ek.public(),
        signed_prekey_id: bundle.signed_prekey_id,
        pq_prekey: bundle.pq_prekey_used(),
        one_time_prekey_id: otk.map(|k| k.id),
        kem_ciphertext: ct,
        mailbox_proof: Signature([0; 64]),
    };
    header.mailbox_proof = our_mailbox.sign(&header.mailbox_proof_message(&ik_b));
    let ad = AssociatedData::new(&ik_a, &ik_b, &mb_a);
    Ok((header, sk, ad))
}

/// Bob's side: derives the same SK and AD from `header`, using the prekeys
/// the header names (`pq` is the last-resort or one-time ML-KEM key it
/// names; a `&PqPreKey` or `&OneTimePqPreKey` converts). The one-time
/// X25519 prekey is taken by value and destroyed here, used or not. Anyone can seal a header naming a one-time prekey id,
/// so the caller should delete the prekey from its store only once the
/// first ratchet message has decrypted under the derived SK (reloading it
/// from its saved encoding for this call).
///
/// A wrong KEM ciphertext does not fail here (ML-KEM's implicit rejection):
/// it yields a different SK, and the first ratchet message then fails to
/// decrypt — the caller must not keep the session until it does.
pub fn respond<'a>(
    our: &IdentityKeyPair,
    spk: &SignedPreKey,
    pq: impl Into<PqSecret<'a>>,
    otk: Option<OneTimePreKey>,
    header: &InitialHeader,
) -> Result<(SessionSecret, AssociatedData), PqxdhError> {
    let pq = pq.into();
    if header.signed_prekey_id != spk.id {
        return Err(PqxdhError::PreKeyMismatch {
            which: "signed prekey",
        });
    }
    if header.pq_prekey != pq.id() {
        return Err(PqxdhError::PreKeyMismatch { which: "pq prekey" });
    }
    match (header.one_time_prekey_id, &otk) {
        (None, None) => {}
        (Some(id), Some(k)) if k.id == id => {}
        _ => {
            return Err(PqxdhError::PreKeyMismatch {
                which: "one-time prekey",
            });
        }
    }
    let ik_b = our.public();
    let ik_a = header.initiator;
    if same_identity(&ik_a, &ik_b) {
        return Err(PqxdhError::SameIdentity);
    }
    // Checked before any secret is used: only the holder of MB_A's key can
    // start a session whose replies (and conversation) belong to MB_A.
    if !header
        .initiator_mailbox
        .auth
        .verify(&header.mailbox_proof_message(&ik_b), &header.mailbox_proof)
    {
        return Err(PqxdhError::BadMailboxProof);
    }
    let dh1 = spk.key.diffie_hellman(&ik_a.x25519)?;
    let dh2 = our.x25519.diffie_hellman(&header.ephemeral)?;
    let dh3 = spk.key.diffie_hellman(&header.ephemeral)?;
    let dh4 = otk
        .as_ref()
        .map(|k| k.key.diffie_hellman(&header.ephemeral))
        .transpose()?;
    drop(otk);
    let ss = pq.key().decapsulate(&header.kem_ciphertext)?;
    let sk = match &dh4 {
        Some(dh4) => kdf(&[&dh1, &dh2, &dh3, dh4, &ss])?,
        None => kdf(&[&dh1, &dh2, &dh3, &ss])?,
    };
    let ad = AssociatedData::new(&ik_a, &ik_b, &header.initiator_mailbox);
    Ok((sk, ad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MailboxKeyPair;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    pub(crate) struct Bob {
        pub identity: IdentityKeyPair,
        pub spk: SignedPreKey,
        pub pq: PqPreKey,
        pub otk: OneTimePreKey,
        pub opq: OneTimePqPreKey,
        pub bundle: SignedPreKeyBundle,
    }

    pub(crate) fn bob(rng: &mut ChaCha20Rng) -> Bob {
        let identity = IdentityKeyPair::generate(rng);
        let spk = SignedPreKey::generate(7, rng);
        let pq = PqPreKey::generate(9, rng);
        let otk = OneTimePreKey::generate(42, rng);
        let opq = OneTimePqPreKey::generate(43, rng);
        let bundle = SignedPreKeyBundle::build(&identity, &spk, &pq);
        Bob {
            identity,
            spk,
            pq,
            otk,
            opq,
            bundle,
        }
    }

    fn eq(a: &SessionSecret, b: &SessionSecret) -> bool {
        bool::from(a.ct_eq(b))
    }

    #[test]
    fn both_sides_agree_with_and_without_otk() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let vb = b.bundle.verify_for(&b.identity.public()).unwrap();

        let otk_pub = b.otk.public();
        let (h, sk_a, ad_a) = initiate(&mut rng, &alice, &mb, &vb, Some(&otk_pub)).unwrap();
        let h = InitialHeader::decode(&h.encode()).unwrap();
        assert_eq!(h.one_time_prekey_id(), Some(42));
        let (sk_b, ad_b) = respond(&b.identity, &b.spk, &b.pq, Some(b.otk), &h).unwrap();
        assert!(eq(&sk_a, &sk_b));
        assert_eq!(ad_a, ad_b);
        assert_eq!(ad_a.as_bytes().len(), ASSOCIATED_DATA_LEN);

        let (h2, sk_a2, _) = initiate(&mut rng, &alice, &mb, &vb, None).unwrap();
        assert_eq!(h2.encode().len(), INITIAL_HEADER_MIN_LEN);
        assert_eq!(h.encode().len(), INITIAL_HEADER_MAX_LEN);
        let (sk_b2, _) = respond(&b.identity, &b.spk, &b.pq, None, &h2).unwrap();
        assert!(eq(&sk_a2, &sk_b2));
        assert!(!eq(&sk_a, &sk_a2));
        assert_eq!(h.pq_prekey(), PqPrekeyId::LastResort(9));
    }

    #[test]
    fn a_one_time_pq_prekey_is_used_instead_of_the_last_resort_one() {
        let mut rng = ChaCha20Rng::from_seed([11; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let opq_pub = OneTimePqPreKeyPublic::build(&b.identity, &b.opq);
        let enc = opq_pub.encode();
        assert_eq!(enc.len(), ONE_TIME_PQ_PREKEY_PUBLIC_LEN);
        assert_eq!(OneTimePqPreKeyPublic::decode(&enc).unwrap(), opq_pub);
        assert!(OneTimePqPreKeyPublic::decode(&enc[..enc.len() - 1]).is_err());
        let vb = b
            .bundle
            .verify_for(&b.identity.public())
            .unwrap()
            .with_one_time_pq(&opq_pub)
            .unwrap();
        assert_eq!(vb.pq_prekey_used(), PqPrekeyId::OneTime(43));
        let otk_pub = b.otk.public();
        let (h, sk_a, _) = initiate(&mut rng, &alice, &mb, &vb, Some(&otk_pub)).unwrap();
        let h = InitialHeader::decode(&h.encode()).unwrap();
        assert_eq!(h.pq_prekey(), PqPrekeyId::OneTime(43));
        assert_eq!(h.encode().len(), INITIAL_HEADER_MAX_LEN);
        // Only the one-time ML-KEM key opens it: the last-resort key (even
        // one with the same id) is refused.
        let otk2 = OneTimePreKey::decode(&b.otk.encode()).unwrap();
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, Some(otk2), &h).unwrap_err(),
            PqxdhError::PreKeyMismatch { which: "pq prekey" }
        );
        let last_resort_43 = PqPreKey::generate(43, &mut rng);
        let otk3 = OneTimePreKey::decode(&b.otk.encode()).unwrap();
        assert_eq!(
            respond(&b.identity, &b.spk, &last_resort_43, Some(otk3), &h).unwrap_err(),
            PqxdhError::PreKeyMismatch { which: "pq prekey" }
        );
        assert_eq!(
            respond(&b.identity, &b.spk, &b.opq, None, &h).unwrap_err(),
            PqxdhError::PreKeyMismatch {
                which: "one-time prekey"
            }
        );
        let (sk_b, _) = respond(&b.identity, &b.spk, &b.opq, Some(b.otk), &h).unwrap();
        assert!(eq(&sk_a, &sk_b));
        // The saved seed derives the same key.
        let again = OneTimePqPreKey::decode(&b.opq.encode()).unwrap();
        assert_eq!(again.key().public(), b.opq.key().public());
        assert_eq!(OneTimePqPreKey::decode_id(&b.opq.encode()).unwrap(), 43);
    }

    /// The attack: a relay hands out an ML-KEM key of its own as the
    /// one-time key (to decapsulate what seekers encapsulate to it). Alice
    /// refuses it unless the device's identity signed it, for that id.
    #[test]
    fn a_one_time_pq_prekey_not_signed_by_the_device_is_refused() {
        let mut rng = ChaCha20Rng::from_seed([12; 32]);
        let b = bob(&mut rng);
        let relay_key = OneTimePqPreKey::generate(43, &mut rng);
        let relay_identity = IdentityKeyPair::generate(&mut rng);
        let vb = b.bundle.verify_for(&b.identity.public()).unwrap();
        // Signed by another identity.
        let forged = OneTimePqPreKeyPublic::build(&relay_identity, &relay_key);
        assert_eq!(
            vb.clone().with_one_time_pq(&forged).unwrap_err(),
            PqxdhError::BadOneTimePqPreKeySignature
        );
        // The device's genuine signature, over a substituted key or id.
        let genuine = OneTimePqPreKeyPublic::build(&b.identity, &b.opq);
        let mut swapped = genuine.clone();
        swapped.key = relay_key.key().public();
        assert!(vb.clone().with_one_time_pq(&swapped).is_err());
        let mut renumbered = genuine.clone();
        renumbered.id ^= 1;
        assert!(vb.clone().with_one_time_pq(&renumbered).is_err());
        // The last-resort key's signature does not pass for a one-time key
        // (separate signing contexts), nor a one-time key's for the bundle.
        let as_one_time = OneTimePqPreKeyPublic {
            id: b.bundle.pq_prekey_id,
            key: b.bundle.pq_prekey.clone(),
            signature: b.bundle.pq_prekey_sig,
        };
        assert!(vb.clone().with_one_time_pq(&as_one_time).is_err());
        let mut as_last_resort = b.bundle.clone();
        as_last_resort.pq_prekey_id = genuine.id;
        as_last_resort.pq_prekey = genuine.key.clone();
        as_last_resort.pq_prekey_sig = genuine.signature;
        assert_eq!(
            as_last_resort.verify(),
            Err(PqxdhError::BadPqPreKeySignature)
        );
        vb.with_one_time_pq(&genuine).unwrap();
    }

    #[test]
    fn bundle_round_trip_and_signature_checks() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let b = bob(&mut rng);
        let enc = b.bundle.encode();
        assert_eq!(enc.len(), SIGNED_BUNDLE_LEN);
        assert_eq!(SignedPreKeyBundle::decode(&enc).unwrap(), b.bundle);
        b.bundle.verify().unwrap();

        // Every signature byte and every signed field matters.
        let mut t = b.bundle.clone();
        t.signed_prekey_id ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadSignedPreKeySignature));
        let mut t = b.bundle.clone();
        t.signed_prekey.0[0] ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadSignedPreKeySignature));
        let mut t = b.bundle.clone();
        t.signed_prekey_sig.0[5] ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadSignedPreKeySignature));
        let mut t = b.bundle.clone();
        t.pq_prekey_id ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadPqPreKeySignature));
        let mut t = b.bundle.clone();
        t.pq_prekey_sig.0[63] ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadPqPreKeySignature));
        let mut t = b.bundle.clone();
        t.identity.x25519.0[0] ^= 1;
        assert_eq!(t.verify(), Err(PqxdhError::BadSignedPreKeySignature));
        // A bundle signed by another identity (a relay swapping bundles).
        let other = IdentityKeyPair::generate(&mut rng);
        let forged = SignedPreKeyBundle::build(&other, &b.spk, &b.pq);
        forged.verify().unwrap();
        assert_eq!(
            forged.verify_for(&b.identity.public()),
            Err(PqxdhError::UnexpectedIdentity)
        );

        // Every byte flip of the encoding either fails to decode or to verify.
        for i in 0..enc.len() {
            let mut e = enc.clone();
            e[i] ^= 0x01;
            if let Ok(d) = SignedPreKeyBundle::decode(&e) {
                assert!(d.verify_for(&b.identity.public()).is_err(), "byte {i}");
            }
        }
        assert!(SignedPreKeyBundle::decode(&enc[..enc.len() - 1]).is_err());
        let mut long = enc.clone();
        long.push(0);
        assert!(SignedPreKeyBundle::decode(&long).is_err());
        let mut v2 = enc;
        v2[0] = 2;
        assert!(SignedPreKeyBundle::decode(&v2).is_err());
    }

    #[test]
    fn tampered_header_fields_change_or_fail() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let vb = b.bundle.verify().unwrap();
        let (h, sk_a, ad_a) = initiate(&mut rng, &alice, &mb, &vb, None).unwrap();
        let sk_a = sk_a.into_bytes();
        let enc = h.encode();
        // Flip every byte: decoding fails, respond fails, or SK or AD differs.
        let step = 7; // every 7th byte of the 1088-byte ciphertext is plenty
        for i in (0..enc.len()).filter(|i| *i < 200 || i % step == 0) {
            let mut e = enc.clone();
            e[i] ^= 0x01;
            let Ok(t) = InitialHeader::decode(&e) else {
                continue;
            };
            match respond(&b.identity, &b.spk, &b.pq, None, &t) {
                Err(_) => {}
                Ok((sk, ad)) => assert!(
                    *sk.into_bytes() != *sk_a || ad != ad_a,
                    "byte {i} tampered without effect"
                ),
            }
        }
    }

    #[test]
    fn identity_misuse_and_prekey_mismatch_rejected() {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let b = bob(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let vb = b.bundle.verify().unwrap();
        // Bob initiating to himself.
        assert_eq!(
            initiate(&mut rng, &b.identity, &mb, &vb, None).unwrap_err(),
            PqxdhError::SameIdentity
        );
        let alice = IdentityKeyPair::generate(&mut rng);
        let otk_pub = b.otk.public();
        let (h, _, _) = initiate(&mut rng, &alice, &mb, &vb, Some(&otk_pub)).unwrap();
        // Missing / wrong one-time prekey.
        assert!(matches!(
            respond(&b.identity, &b.spk, &b.pq, None, &h),
            Err(PqxdhError::PreKeyMismatch { .. })
        ));
        let wrong = OneTimePreKey::generate(43, &mut rng);
        assert!(matches!(
            respond(&b.identity, &b.spk, &b.pq, Some(wrong), &h),
            Err(PqxdhError::PreKeyMismatch { .. })
        ));
        let spk2 = SignedPreKey::generate(8, &mut rng);
        assert!(matches!(
            respond(&b.identity, &spk2, &b.pq, Some(b.otk), &h),
            Err(PqxdhError::PreKeyMismatch { .. })
        ));
        // A header reflected back to its sender.
        let mut reflected = h.clone();
        reflected.initiator = b.identity.public();
        let otk3 = OneTimePreKey::generate(42, &mut rng);
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, Some(otk3), &reflected).unwrap_err(),
            PqxdhError::SameIdentity
        );
        // A small-order ephemeral key.
        let mut zero = h.clone();
        zero.ephemeral = X25519Public([0; 32]);
        zero.mailbox_proof = mb.sign(&zero.mailbox_proof_message(&b.identity.public()));
        let otk4 = OneTimePreKey::generate(42, &mut rng);
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, Some(otk4), &zero).unwrap_err(),
            PqxdhError::NonContributory
        );
    }

    #[test]
    fn wrong_kem_ciphertext_gives_different_secret() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let vb = b.bundle.verify().unwrap();
        let (h1, sk1, _) = initiate(&mut rng, &alice, &mb, &vb, None).unwrap();
        let (h2, _, _) = initiate(&mut rng, &alice, &mb, &vb, None).unwrap();
        let mut mixed = h1.clone();
        mixed.kem_ciphertext = h2.kem_ciphertext.clone();
        // Refused as it stands (the proof covers the ciphertext)...
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, None, &mixed).unwrap_err(),
            PqxdhError::BadMailboxProof
        );
        // ...and, signed again by the mailbox holder, a different secret.
        mixed.mailbox_proof = mb.sign(&mixed.mailbox_proof_message(&b.identity.public()));
        let (sk, _) = respond(&b.identity, &b.spk, &b.pq, None, &mixed).unwrap();
        assert!(!eq(&sk, &sk1));
    }

    /// The attack: someone who knows a victim's mailbox public keys (the
    /// relay, any current or removed device) starts a session under their own
    /// identity naming the victim's mailbox, to be filed into the victim's
    /// conversation. Without the mailbox's secret key the proof fails.
    #[test]
    fn forged_opening_naming_a_victims_mailbox_is_refused() {
        let mut rng = ChaCha20Rng::from_seed([6; 32]);
        let b = bob(&mut rng);
        let victim = MailboxKeyPair::generate(&mut rng);
        let forger = IdentityKeyPair::generate(&mut rng);
        let forger_mb = MailboxKeyPair::generate(&mut rng);
        let vb = b.bundle.verify().unwrap();
        let (mut h, _, _) = initiate(&mut rng, &forger, &forger_mb, &vb, None).unwrap();
        // Name the victim's mailbox, keep the forger's own proof.
        h.initiator_mailbox = victim.public();
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, None, &h).unwrap_err(),
            PqxdhError::BadMailboxProof
        );
        // A proof made for another responder does not transfer either.
        let other = bob(&mut rng);
        let (h2, _, _) = initiate(
            &mut rng,
            &forger,
            &forger_mb,
            &other.bundle.verify().unwrap(),
            None,
        )
        .unwrap();
        let mut moved = h2.clone();
        moved.signed_prekey_id = b.spk.id;
        moved.pq_prekey = PqPrekeyId::LastResort(b.pq.id);
        assert_eq!(
            respond(&b.identity, &b.spk, &b.pq, None, &moved).unwrap_err(),
            PqxdhError::BadMailboxProof
        );
    }

    #[test]
    fn secrets_debug_prints_no_bytes() {
        let s = SessionSecret(Box::new([0xAB; 32]));
        assert_eq!(format!("{s:?}"), "SessionSecret(..)");
    }

    fn generate_pqxdh_vectors() -> serde_json::Value {
        let mut rng = ChaCha20Rng::from_seed([0x9d; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let otk = b.otk.public();
        let opq = OneTimePqPreKeyPublic::build(&b.identity, &b.opq);
        let vb = b.bundle.verify_for(&b.identity.public()).unwrap();
        let (h, sk, ad) = initiate(
            &mut rng,
            &alice,
            &mb,
            &vb.clone().with_one_time_pq(&opq).unwrap(),
            Some(&otk),
        )
        .unwrap();
        // The relay had no one-time prekey of either kind left.
        let (h_lr, sk_lr, _) = initiate(&mut rng, &alice, &mb, &vb, None).unwrap();
        serde_json::json!({
            "description": "PQXDH (docs/PROTOCOL.md §2). Generated from ChaCha20Rng seed 0x9d*32 by client-core/src/pqxdh.rs tests; regenerate with NORTHSTAR_WRITE_VECTORS=1. Secrets use the secret-key encodings (version, kind, bytes). `initial_header` uses both one-time prekeys (X25519 and ML-KEM); `initial_header_last_resort` neither (the signed last-resort ML-KEM prekey).",
            "responder_identity_secret": hex::encode(&*b.identity.encode()),
            "responder_signed_prekey_secret": hex::encode(&*b.spk.encode()),
            "responder_pq_prekey_secret": hex::encode(&*b.pq.encode()),
            "responder_one_time_prekey_secret": hex::encode(&*b.otk.encode()),
            "responder_one_time_pq_prekey_secret": hex::encode(&*b.opq.encode()),
            "responder_bundle": hex::encode(b.bundle.encode()),
            "responder_one_time_prekey_public": hex::encode(otk.encode()),
            "responder_one_time_pq_prekey_public": hex::encode(opq.encode()),
            "initiator_identity_secret": hex::encode(&*alice.encode()),
            "initiator_mailbox_secret": hex::encode(&*mb.encode()),
            "initial_header": hex::encode(h.encode()),
            "session_secret": hex::encode(*sk.into_bytes()),
            "associated_data": hex::encode(ad.as_bytes()),
            "initial_header_last_resort": hex::encode(h_lr.encode()),
            "session_secret_last_resort": hex::encode(*sk_lr.into_bytes()),
        })
    }

    #[test]
    fn pqxdh_vectors_match() {
        let v = generate_pqxdh_vectors();
        crate::keys::check_vector_file(
            "pqxdh.json",
            include_str!("../../docs/vectors/pqxdh.json"),
            &v,
        );
        // The responder, from the stored secrets and header alone, derives
        // the stored SK and AD.
        let d = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
        let id = IdentityKeyPair::decode(&d("responder_identity_secret")).unwrap();
        let spk = SignedPreKey::decode(&d("responder_signed_prekey_secret")).unwrap();
        let pq = PqPreKey::decode(&d("responder_pq_prekey_secret")).unwrap();
        let otk = OneTimePreKey::decode(&d("responder_one_time_prekey_secret")).unwrap();
        let opq = OneTimePqPreKey::decode(&d("responder_one_time_pq_prekey_secret")).unwrap();
        let bundle = SignedPreKeyBundle::decode(&d("responder_bundle")).unwrap();
        let opq_pub =
            OneTimePqPreKeyPublic::decode(&d("responder_one_time_pq_prekey_public")).unwrap();
        assert_eq!(opq_pub.key, opq.key().public());
        bundle
            .verify_for(&id.public())
            .unwrap()
            .with_one_time_pq(&opq_pub)
            .unwrap();
        let h = InitialHeader::decode(&d("initial_header")).unwrap();
        let (sk, ad) = respond(&id, &spk, &opq, Some(otk), &h).unwrap();
        assert_eq!(sk.into_bytes().to_vec(), d("session_secret"));
        assert_eq!(ad.as_bytes(), &d("associated_data")[..]);
        let h = InitialHeader::decode(&d("initial_header_last_resort")).unwrap();
        let (sk, _) = respond(&id, &spk, &pq, None, &h).unwrap();
        assert_eq!(sk.into_bytes().to_vec(), d("session_secret_last_resort"));
    }

    /// Recomputes SK from the documented formula with raw primitives, so the
    /// concatenation order in the doc and the code cannot diverge.
    #[test]
    fn session_secret_follows_documented_formula() {
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let b = bob(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mb = MailboxKeyPair::generate(&mut rng);
        let otk = b.otk.public();
        let (h, sk, ad) = initiate(
            &mut rng,
            &alice,
            &mb,
            &b.bundle.verify().unwrap(),
            Some(&otk),
        )
        .unwrap();
        let dh = |sk: &X25519Secret, pk: &X25519Public| x25519_dalek::x25519(*sk.to_bytes(), pk.0);
        let ek = h.ephemeral();
        let mut ikm = vec![0xFF; 32];
        ikm.extend(dh(&b.spk.key, &alice.public().x25519)); // DH1 = DH(IK_A, SPK_B)
        ikm.extend(dh(&b.identity.x25519, ek)); // DH2 = DH(EK_A, IK_B)
        ikm.extend(dh(&b.spk.key, ek)); // DH3 = DH(EK_A, SPK_B)
        ikm.extend(dh(&b.otk.key, ek)); // DH4 = DH(EK_A, OPK_B)
        ikm.extend(b.pq.key.decapsulate(h.kem_ciphertext()).unwrap().as_bytes());
        let mut expect = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&[0u8; 32]), &ikm)
            .expand(
                b"Northstar_PQXDH_CURVE25519_SHA-256_ML-KEM-768",
                &mut expect,
            )
            .unwrap();
        assert_eq!(*sk.into_bytes(), expect);
        let mut ad_expect = Vec::new();
        for k in [alice.public().x25519.0, alice.public().ed25519.0] {
            ad_expect.extend(k);
        }
        for k in [
            b.identity.public().x25519.0,
            b.identity.public().ed25519.0,
            mb.public().auth.0,
            mb.public().seal.0,
        ] {
            ad_expect.extend(k);
        }
        assert_eq!(ad.as_bytes(), &ad_expect[..]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = InitialHeader::decode(&bytes);
            let _ = SignedPreKeyBundle::decode(&bytes);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn header_decoder_never_panics_near_valid(idx in 0usize..INITIAL_HEADER_MAX_LEN, val in any::<u8>(), cut in 0usize..INITIAL_HEADER_MAX_LEN + 2) {
            let mut rng = ChaCha20Rng::from_seed([6; 32]);
            let b = bob(&mut rng);
            let alice = IdentityKeyPair::generate(&mut rng);
            let mb = MailboxKeyPair::generate(&mut rng);
            let otk = b.otk.public();
            let (h, _, _) = initiate(&mut rng, &alice, &mb, &b.bundle.verify().unwrap(), Some(&otk)).unwrap();
            let mut e = h.encode();
            prop_assert_eq!(&InitialHeader::decode(&e).unwrap(), &h);
            e[idx] = val;
            e.truncate(cut);
            let _ = InitialHeader::decode(&e);
        }
    }
}
