//! The operations Northstar's client-core benchmarks time, in one place so
//! that the native criterion benches (`benches/core.rs`) and the wasm build
//! timed in headless Chromium (`web-client`, feature `bench`) run exactly
//! the same code on the same inputs.
//!
//! Each operation is prepared once ([`prepare`], deterministic: every key and
//! nonce comes from a fixed-seed ChaCha20 RNG) and then run many times; one
//! run is one operation as named in [`OPERATIONS`]. Results go through
//! [`black_box`] so the optimiser cannot drop the work.
//!
//! Two kinds of operation:
//! - `core/...`: northstar-core's public API (PQXDH, ratchet, sealed sender,
//!   directory, codename);
//! - `prim/...`: each primitive the ratchet and the rest of the core use,
//!   straight from the same crates, with the same sizes, so that the report
//!   can show how far the ratchet is above the floor its primitives set
//!   (`report/floors.mjs` lists the primitives one ratchet message costs).
//!
//! Benchmarks, not tests: nothing here asserts a time.

use std::hint::black_box;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use kem::{Decapsulate, Encapsulate};
use ml_kem::{KemCore, MlKem768};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use northstar_core::codename::{
    ARGON2_M_COST_KIB, ARGON2_P_COST, ARGON2_T_COST, Codename, SeekerSecrets,
};
use northstar_core::directory::{
    DeviceEntry, DeviceId, Directory, OrgPublicKey, OrgSigningKey, SignedDirectory,
};
use northstar_core::keys::{
    IdentityKeyPair, MailboxKeyPair, OneTimePreKey, PqPreKey, SignedPreKey,
};
use northstar_core::pqxdh::{self, SignedPreKeyBundle};
use northstar_core::ratchet::Session;
use northstar_core::sealed::{self, Envelope, SealedBody, SealedContent, SenderInfo};
use northstar_core::{Error, UnixTime};

pub mod search;

/// Plaintext size of the message benchmarks: 1 KiB.
pub const MESSAGE_LEN: usize = 1024;

/// Length of the ratchet body's associated data for a real session:
/// `u32 len || AD (192 bytes from PQXDH) || version || header nonce || encrypted header`.
pub const RATCHET_BODY_AAD_LEN: usize = 4 + pqxdh::ASSOCIATED_DATA_LEN + 81;

/// Counselor devices in the benchmarked directory (spread over the default teams).
pub const DIRECTORY_DEVICES: u32 = 12;

/// Every operation, by name. `core/*` are northstar-core calls, `prim/*`
/// single primitives.
pub const OPERATIONS: &[&str] = &[
    "core/pqxdh_setup",
    "core/ratchet_1k_same_direction",
    "core/ratchet_1k_alternating",
    "core/hpke_seal_open_1k",
    "core/sealed_ratchet_1k_end_to_end",
    "core/directory_verify",
    "core/codename_derive",
    "prim/x25519_keygen",
    "prim/x25519_dh",
    "prim/hkdf_sha256_96",
    "prim/hkdf_sha256_44",
    "prim/hmac_sha256",
    "prim/chacha20poly1305_seal_1k",
    "prim/chacha20poly1305_open_1k",
    "prim/xchacha20poly1305_header_seal",
    "prim/xchacha20poly1305_header_open",
    "prim/mlkem768_encaps",
    "prim/mlkem768_decaps",
    "prim/ed25519_verify",
    "prim/argon2id_codename",
    "core/inbox_search_keystroke_10k",
    "core/inbox_search_index_build_10k",
    "core/inbox_search_after_new_message_10k",
    "setup/onetime_prekey",
    "setup/bundle_verify",
    "setup/initiate",
    "setup/seeker_first_message",
    "setup/respond",
    "setup/counselor_first_decrypt",
    "prim/x25519_public",
    "prim/ed25519_sign",
];

/// The slow operations (hundreds of ms): fewer samples.
pub fn is_slow(name: &str) -> bool {
    matches!(
        name,
        "core/codename_derive" | "prim/argon2id_codename" | "core/inbox_search_index_build_10k"
    )
}

/// One prepared operation: call it to run the operation once.
pub type Operation = Box<dyn FnMut()>;

/// Prepares the operation `name` (one of [`OPERATIONS`]); `None` for an
/// unknown name. Preparation (key generation, session set-up, a first
/// message) is not part of what the returned closure does.
pub fn prepare(name: &str) -> Option<Operation> {
    let op: Operation = match name {
        "core/pqxdh_setup" => pqxdh_setup(),
        "core/ratchet_1k_same_direction" => ratchet(false),
        "core/ratchet_1k_alternating" => ratchet(true),
        "core/hpke_seal_open_1k" => hpke_seal_open(),
        "core/sealed_ratchet_1k_end_to_end" => sealed_end_to_end(),
        "core/directory_verify" => directory_verify(),
        "core/codename_derive" => codename_derive(),
        "prim/x25519_keygen" => x25519_keygen(),
        "prim/x25519_dh" => x25519_dh(),
        "prim/hkdf_sha256_96" => hkdf_sha256::<96>(),
        "prim/hkdf_sha256_44" => hkdf_sha256::<44>(),
        "prim/hmac_sha256" => hmac_sha256(),
        "prim/chacha20poly1305_seal_1k" => chacha_body(false),
        "prim/chacha20poly1305_open_1k" => chacha_body(true),
        "prim/xchacha20poly1305_header_seal" => xchacha_header(false),
        "prim/xchacha20poly1305_header_open" => xchacha_header(true),
        "prim/mlkem768_encaps" => mlkem(false),
        "prim/mlkem768_decaps" => mlkem(true),
        "prim/ed25519_verify" => ed25519_verify(),
        "prim/argon2id_codename" => argon2id_codename(),
        "core/inbox_search_keystroke_10k" => search::keystroke(),
        "core/inbox_search_index_build_10k" => search::index_build(),
        "core/inbox_search_after_new_message_10k" => search::after_new_message(),
        "setup/onetime_prekey" => setup_onetime_prekey(),
        "setup/bundle_verify" => setup_bundle_verify(),
        "setup/initiate" => setup_initiate(),
        "setup/seeker_first_message" => setup_seeker_first_message(),
        "setup/respond" => setup_respond(),
        "setup/counselor_first_decrypt" => setup_counselor_first_decrypt(),
        "prim/x25519_public" => x25519_public(),
        "prim/ed25519_sign" => ed25519_sign(),
        _ => return None,
    };
    Some(op)
}

fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// A benchmark input the library refused: the bench itself is broken, and
/// a figure for an operation that failed would be meaningless, so it stops.
#[allow(clippy::panic)]
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("benchmark {what} failed: {e}")
}

fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| fail(what, e))
}

/// The counselor side of PQXDH: identity, prekeys and the signed bundle.
struct Responder {
    identity: IdentityKeyPair,
    spk: SignedPreKey,
    pq: PqPreKey,
    bundle: SignedPreKeyBundle,
}

fn responder(rng: &mut ChaCha20Rng) -> Responder {
    let identity = IdentityKeyPair::generate(rng);
    let spk = SignedPreKey::generate(7, rng);
    let pq = PqPreKey::generate(9, rng);
    let bundle = SignedPreKeyBundle::build(&identity, &spk, &pq);
    Responder {
        identity,
        spk,
        pq,
        bundle,
    }
}

/// A seeker's and a counselor's ratchet sessions after a real PQXDH (the
/// counselor has received the first message, so both can send), plus the
/// seeker's and counselor's mailboxes for sealing.
struct Pair {
    seeker: Session,
    counselor: Session,
    seeker_sender: SenderInfo,
    counselor_mailbox: MailboxKeyPair,
}

fn pair(rng: &mut ChaCha20Rng) -> Pair {
    let b = responder(rng);
    let seeker_id = IdentityKeyPair::generate(rng);
    let seeker_mailbox = MailboxKeyPair::generate(rng);
    let counselor_mailbox = MailboxKeyPair::generate(rng);
    let bundle = ok("bundle verify", b.bundle.verify_for(&b.identity.public()));
    let (header, sk_a, ad_a) = ok(
        "pqxdh initiate",
        pqxdh::initiate(rng, &seeker_id, &seeker_mailbox, &bundle, None),
    );
    let (sk_b, ad_b) = ok(
        "pqxdh respond",
        pqxdh::respond(&b.identity, &b.spk, &b.pq, None, &header),
    );
    let mut seeker = Session::initiate(
        sk_a.into_bytes(),
        ad_a.as_bytes().to_vec(),
        bundle.signed_prekey().0,
        rng,
    );
    let mut counselor = Session::respond(
        sk_b.into_bytes(),
        ad_b.as_bytes().to_vec(),
        b.spk.key.to_bytes(),
    );
    let first = ok("first encrypt", seeker.encrypt(b"hello", rng));
    ok("first decrypt", counselor.decrypt(&first));
    Pair {
        seeker,
        counselor,
        seeker_sender: SenderInfo {
            identity: seeker_id.public(),
            mailbox: seeker_mailbox.public(),
        },
        counselor_mailbox,
    }
}

/// A session set-up from both sides, up to the first message read: the
/// seeker verifies the counselor's bundle, runs PQXDH (with a one-time
/// prekey) and encrypts a first short message; the counselor runs PQXDH from
/// the header and decrypts it. The counselor's fresh one-time prekey (one
/// X25519 key generation) is in the timed work too, as it is in the peer's
/// set-up.
fn pqxdh_setup() -> Operation {
    let mut rng = rng(1);
    let b = responder(&mut rng);
    let seeker = IdentityKeyPair::generate(&mut rng);
    let mailbox = MailboxKeyPair::generate(&mut rng);
    let expected = b.identity.public();
    let mut otk_id = 100u32;
    Box::new(move || {
        otk_id = otk_id.wrapping_add(1);
        let otk = OneTimePreKey::generate(otk_id, &mut rng);
        let otk_pub = otk.public();
        let bundle = ok("bundle verify", b.bundle.verify_for(&expected));
        let (header, sk_a, ad_a) = ok(
            "pqxdh initiate",
            pqxdh::initiate(&mut rng, &seeker, &mailbox, &bundle, Some(&otk_pub)),
        );
        let mut s = Session::initiate(
            sk_a.into_bytes(),
            ad_a.as_bytes().to_vec(),
            bundle.signed_prekey().0,
            &mut rng,
        );
        let first = ok("first encrypt", s.encrypt(b"hello", &mut rng));
        let (sk_b, ad_b) = ok(
            "pqxdh respond",
            pqxdh::respond(&b.identity, &b.spk, &b.pq, Some(otk), &header),
        );
        let mut r = Session::respond(
            sk_b.into_bytes(),
            ad_b.as_bytes().to_vec(),
            b.spk.key.to_bytes(),
        );
        black_box(ok("first decrypt", r.decrypt(&first)));
        black_box((s, r));
    })
}

// The parts of `core/pqxdh_setup`, each timed alone (`setup/*`), so that the
// wasm/native ratio of the set-up can be read part by part: together they
// are the set-up's work, on the same keys.

/// The set-up's keys and one run of it, for the `setup/*` parts: the
/// responder, the seeker's identity and mailbox, a one-time prekey (kept
/// encoded, as a counselor's store keeps it), and what the seeker sends.
struct SetupParts {
    b: Responder,
    seeker: IdentityKeyPair,
    mailbox: MailboxKeyPair,
    otk_encoded: Zeroizing<Vec<u8>>,
    otk_pub: northstar_core::keys::OneTimePreKeyPublic,
    bundle: pqxdh::VerifiedBundle,
    header: pqxdh::InitialHeader,
    sk_a: Zeroizing<[u8; 32]>,
    ad_a: Vec<u8>,
    first: Vec<u8>,
}

fn setup_parts(rng: &mut ChaCha20Rng) -> SetupParts {
    let b = responder(rng);
    let seeker = IdentityKeyPair::generate(rng);
    let mailbox = MailboxKeyPair::generate(rng);
    let otk = OneTimePreKey::generate(101, rng);
    let otk_pub = otk.public();
    let bundle = ok("bundle verify", b.bundle.verify_for(&b.identity.public()));
    let (header, sk_a, ad_a) = ok(
        "pqxdh initiate",
        pqxdh::initiate(rng, &seeker, &mailbox, &bundle, Some(&otk_pub)),
    );
    let sk_a = sk_a.into_bytes();
    let ad_a = ad_a.as_bytes().to_vec();
    let mut s = Session::initiate(sk_a.clone(), ad_a.clone(), bundle.signed_prekey().0, rng);
    let first = ok("first encrypt", s.encrypt(b"hello", rng));
    SetupParts {
        otk_encoded: otk.encode(),
        b,
        seeker,
        mailbox,
        otk_pub,
        bundle,
        header,
        sk_a,
        ad_a,
        first,
    }
}

/// The counselor's fresh one-time prekey: key generation and its public key.
fn setup_onetime_prekey() -> Operation {
    let mut rng = rng(20);
    let mut id = 100u32;
    Box::new(move || {
        id = id.wrapping_add(1);
        let otk = OneTimePreKey::generate(id, &mut rng);
        black_box(otk.public());
    })
}

/// The seeker's check of the bundle: identity as expected, 2 Ed25519 signatures.
fn setup_bundle_verify() -> Operation {
    let mut rng = rng(21);
    let p = setup_parts(&mut rng);
    let expected = p.b.identity.public();
    Box::new(move || {
        black_box(ok("bundle verify", p.b.bundle.verify_for(&expected)));
    })
}

/// `pqxdh::initiate`: ephemeral key, 4 X25519, ML-KEM-768 encapsulation
/// (the key decoded from its bytes), KDF, the mailbox proof (a signature).
fn setup_initiate() -> Operation {
    let mut rng = rng(22);
    let p = setup_parts(&mut rng);
    Box::new(move || {
        black_box(ok(
            "pqxdh initiate",
            pqxdh::initiate(&mut rng, &p.seeker, &p.mailbox, &p.bundle, Some(&p.otk_pub)),
        ));
    })
}

/// The seeker's session from SK and its first message: a ratchet key pair,
/// one X25519, `KDF_RK`, the encryption of a short message.
fn setup_seeker_first_message() -> Operation {
    let mut rng = rng(23);
    let p = setup_parts(&mut rng);
    let spk = p.bundle.signed_prekey().0;
    Box::new(move || {
        let mut s = Session::initiate(p.sk_a.clone(), p.ad_a.clone(), spk, &mut rng);
        black_box(ok("first encrypt", s.encrypt(b"hello", &mut rng)));
        black_box(s);
    })
}

/// `pqxdh::respond`: the mailbox proof checked (an Ed25519 verification),
/// 4 X25519, ML-KEM-768 decapsulation, KDF; the one-time prekey decoded
/// from its stored bytes.
fn setup_respond() -> Operation {
    let mut rng = rng(24);
    let p = setup_parts(&mut rng);
    Box::new(move || {
        let otk = ok("otk decode", OneTimePreKey::decode(&p.otk_encoded));
        black_box(ok(
            "pqxdh respond",
            pqxdh::respond(&p.b.identity, &p.b.spk, &p.b.pq, Some(otk), &p.header),
        ));
    })
}

/// The counselor's session from SK and the first message read: a DH
/// ratchet step (2 X25519, a key pair, 2 `KDF_RK`) and the decryption.
fn setup_counselor_first_decrypt() -> Operation {
    let mut rng = rng(25);
    let p = setup_parts(&mut rng);
    let (sk_b, ad_b) = ok(
        "pqxdh respond",
        pqxdh::respond(
            &p.b.identity,
            &p.b.spk,
            &p.b.pq,
            Some(ok("otk decode", OneTimePreKey::decode(&p.otk_encoded))),
            &p.header,
        ),
    );
    let sk_b = sk_b.into_bytes();
    let ad_b = ad_b.as_bytes().to_vec();
    Box::new(move || {
        let mut r = Session::respond(sk_b.clone(), ad_b.clone(), p.b.spk.key.to_bytes());
        black_box(ok("first decrypt", r.decrypt(&p.first)));
        black_box(r);
    })
}

/// One message per run: encrypt 1 KiB, decrypt it. `alternating`: the
/// sender changes every message, so every message is a DH ratchet step.
fn ratchet(alternating: bool) -> Operation {
    let mut rng = rng(2);
    let Pair {
        mut seeker,
        mut counselor,
        ..
    } = pair(&mut rng);
    let plaintext = [0x5au8; MESSAGE_LEN];
    let mut seeker_sends = true;
    Box::new(move || {
        let (from, to) = if seeker_sends {
            (&mut seeker, &mut counselor)
        } else {
            (&mut counselor, &mut seeker)
        };
        let m = ok("ratchet encrypt", from.encrypt(&plaintext, &mut rng));
        let p = ok("ratchet decrypt", to.decrypt(&m));
        black_box(p);
        if alternating {
            seeker_sends = !seeker_sends;
        }
    })
}

fn sealed_content(sender: SenderInfo, ratchet_message: Vec<u8>) -> SealedContent {
    SealedContent {
        sender,
        body: SealedBody::Ratchet { ratchet_message },
    }
}

/// Sealed sender alone: HPKE seal + open of a 1 KiB ratchet message (padded
/// to its size bucket), including the envelope's encoding.
fn hpke_seal_open() -> Operation {
    let mut rng = rng(3);
    let Pair {
        seeker_sender,
        counselor_mailbox,
        ..
    } = pair(&mut rng);
    let recipient = counselor_mailbox.public();
    let content = sealed_content(seeker_sender, vec![0x33; MESSAGE_LEN]);
    Box::new(move || {
        let env = ok("seal", sealed::seal(&recipient, &content, &mut rng));
        let wire = env.encode();
        let env = ok("envelope decode", Envelope::decode(&wire));
        black_box(ok("open", sealed::open(&counselor_mailbox, &env)));
    })
}

/// A message end to end, as a client sends it to the relay and the peer
/// reads it: ratchet encrypt of 1 KiB, seal, envelope encoding; envelope
/// decoding, open, ratchet decrypt. Same direction.
fn sealed_end_to_end() -> Operation {
    let mut rng = rng(4);
    let Pair {
        mut seeker,
        mut counselor,
        seeker_sender,
        counselor_mailbox,
    } = pair(&mut rng);
    let recipient = counselor_mailbox.public();
    let plaintext = [0x5au8; MESSAGE_LEN];
    Box::new(move || {
        let m = ok("ratchet encrypt", seeker.encrypt(&plaintext, &mut rng));
        let content = sealed_content(seeker_sender, m);
        let env = ok("seal", sealed::seal(&recipient, &content, &mut rng));
        let wire = env.encode();
        let env = ok("envelope decode", Envelope::decode(&wire));
        let opened = ok("open", sealed::open(&counselor_mailbox, &env));
        let SealedBody::Ratchet { ratchet_message } = opened.body else {
            fail("open", "not a ratchet body")
        };
        black_box(ok("ratchet decrypt", counselor.decrypt(&ratchet_message)));
    })
}

/// The signed directory a seeker fetches: the default teams with
/// [`DIRECTORY_DEVICES`] devices and a partner.
pub fn sample_directory() -> Result<(Vec<u8>, OrgPublicKey), Error> {
    let mut rng = rng(5);
    let org = OrgSigningKey::generate(&mut rng);
    let mut d = Directory::new(org.public(), 1, UnixTime(1_800_000_000));
    d.teams = Directory::default_teams();
    let teams = d.teams.len();
    for i in 0..DIRECTORY_DEVICES {
        let entry = DeviceEntry {
            id: DeviceId(i + 1),
            label: format!("Desk {}", i + 1),
            identity: IdentityKeyPair::generate(&mut rng).public(),
            mailbox: MailboxKeyPair::generate(&mut rng).public(),
        };
        d.teams[i as usize % teams].devices.push(entry);
    }
    d.partners = vec![northstar_core::directory::Partner {
        id: northstar_core::directory::PartnerId(1),
        name: "Shelter Partners".into(),
        contact: "+1 555 0100, shelter.example".into(),
    }];
    Ok((d.sign(&org)?.encode(), org.public()))
}

/// What a seeker does with the directory it fetched: decode (every key
/// checked) and verify against the pinned organisation key.
fn directory_verify() -> Operation {
    let (bytes, org) = ok("directory", sample_directory());
    Box::new(move || {
        let signed = ok("directory decode", SignedDirectory::decode(&bytes));
        black_box(ok(
            "directory verify",
            signed.verify(&org, None, UnixTime(1_800_000_000)),
        ));
    })
}

/// A seeker's keys from the codename (Argon2id, then HKDF).
fn codename_derive() -> Operation {
    let mut rng = rng(6);
    let org = OrgSigningKey::generate(&mut rng).public();
    let codename = Codename::generate(northstar_core::ids::Language::En, &mut rng);
    Box::new(move || {
        let s: SeekerSecrets = ok("codename derive", codename.derive(org.as_ed25519()));
        black_box(s);
    })
}

fn x25519_keygen() -> Operation {
    let mut rng = rng(10);
    Box::new(move || {
        let s = StaticSecret::random_from_rng(&mut rng);
        black_box(PublicKey::from(&s));
    })
}

fn x25519_dh() -> Operation {
    let mut rng = rng(11);
    let ours = StaticSecret::random_from_rng(&mut rng);
    let theirs = PublicKey::from(&StaticSecret::random_from_rng(&mut rng));
    Box::new(move || {
        let shared = ours.diffie_hellman(black_box(&theirs));
        black_box(shared.was_contributory());
        black_box(shared.to_bytes());
    })
}

/// The X25519 base-point multiplication alone (a public key from its secret).
fn x25519_public() -> Operation {
    let mut rng = rng(14);
    let secret = StaticSecret::random_from_rng(&mut rng);
    Box::new(move || {
        black_box(PublicKey::from(black_box(&secret)));
    })
}

/// One Ed25519 signature over 64 bytes (as `prim/ed25519_verify` checks).
fn ed25519_sign() -> Operation {
    let mut rng = rng(15);
    let key = SigningKey::generate(&mut rng);
    let msg = [0x42u8; 64];
    Box::new(move || {
        black_box(key.sign(black_box(&msg)));
    })
}

fn hkdf_sha256<const L: usize>() -> Operation {
    let salt = [1u8; 32];
    let ikm = [2u8; 32];
    Box::new(move || {
        let mut okm = Zeroizing::new([0u8; L]);
        let hk = Hkdf::<Sha256>::new(Some(black_box(&salt)), black_box(&ikm));
        ok(
            "hkdf",
            hk.expand(b"northstar/v1/ratchet-root", okm.as_mut()),
        );
        black_box(&okm);
    })
}

/// One HMAC-SHA256 of a one-byte input under a 32-byte key (half a chain step).
fn hmac_sha256() -> Operation {
    let key = [3u8; 32];
    Box::new(move || {
        let mut mac = ok(
            "hmac",
            <Hmac<Sha256> as Mac>::new_from_slice(black_box(&key)),
        );
        mac.update(&[1]);
        black_box(mac.finalize().into_bytes());
    })
}

fn chacha_body(open: bool) -> Operation {
    let key = [4u8; 32];
    let nonce = [5u8; 12];
    let aad = [6u8; RATCHET_BODY_AAD_LEN];
    let plaintext = [7u8; MESSAGE_LEN];
    let sealed = ok(
        "chacha seal",
        ChaCha20Poly1305::new((&key).into()).encrypt(
            (&nonce).into(),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        ),
    );
    Box::new(move || {
        // A fresh cipher per message, as the ratchet's fresh key per message needs.
        let cipher = ChaCha20Poly1305::new(black_box(&key).into());
        let out = if open {
            cipher.decrypt(
                (&nonce).into(),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
        } else {
            cipher.encrypt(
                (&nonce).into(),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
        };
        black_box(ok("chacha", out.map_err(|_| "aead")));
    })
}

fn xchacha_header(open: bool) -> Operation {
    let key = [8u8; 32];
    let nonce = [9u8; 24];
    let header = [10u8; 40];
    let sealed = ok(
        "xchacha seal",
        XChaCha20Poly1305::new((&key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &header,
                    aad: &[1],
                },
            )
            .map_err(|_| "aead"),
    );
    Box::new(move || {
        let cipher = XChaCha20Poly1305::new(black_box(&key).into());
        let out = if open {
            cipher.decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &[1],
                },
            )
        } else {
            cipher.encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &header,
                    aad: &[1],
                },
            )
        };
        black_box(ok("xchacha", out.map_err(|_| "aead")));
    })
}

fn mlkem(decaps: bool) -> Operation {
    let mut rng = rng(12);
    let (dk, ek) = MlKem768::generate(&mut rng);
    let (ct, _) = ok("encaps", ek.encapsulate(&mut rng).map_err(|()| "encaps"));
    Box::new(move || {
        if decaps {
            black_box(ok(
                "decaps",
                dk.decapsulate(black_box(&ct)).map_err(|()| "decaps"),
            ));
        } else {
            black_box(ok(
                "encaps",
                ek.encapsulate(&mut rng).map_err(|()| "encaps"),
            ));
        }
    })
}

fn ed25519_verify() -> Operation {
    let mut rng = rng(13);
    let key = SigningKey::generate(&mut rng);
    let public = key.verifying_key();
    let mut msg = [0u8; 64];
    rng.fill_bytes(&mut msg);
    let sig = key.sign(&msg);
    Box::new(move || {
        ok("ed25519 verify", public.verify(black_box(&msg), &sig));
    })
}

fn argon2id_codename() -> Operation {
    let params = ok(
        "argon2 params",
        argon2::Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, Some(32)),
    );
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let password = [11u8; 64];
    let salt = [12u8; 32];
    Box::new(move || {
        let mut out = Zeroizing::new([0u8; 32]);
        ok(
            "argon2id",
            argon.hash_password_into(black_box(&password), &salt, out.as_mut()),
        );
        black_box(&out);
    })
}
