//! Test vectors `docs/vectors/ratchet.json`, regenerated from fixed seeds
//! and compared on every `cargo test`; `NORTHSTAR_WRITE_VECTORS=1` rewrites
//! the file. An independent implementation can check itself against the
//! file: every value is derived from the inputs listed in it.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::Session;
use super::keys::kdf_init;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/ratchet.json");

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Vectors {
    description: String,
    /// PQXDH's shared secret `SK` (hex).
    sk: String,
    /// PQXDH's associated data `AD` (hex).
    ad: String,
    /// The responder's signed prekey secret, its first ratchet key (hex).
    responder_prekey_secret: String,
    responder_prekey_public: String,
    /// `ChaCha20Rng::from_seed` seeds (hex) of each party's RNG. Each party's
    /// RNG is used, in order, for: (initiator only) `DHs` in `initiate`; then
    /// per `encrypt`: a fresh `DHs` (32 bytes) when a DH ratchet step is
    /// pending, then the 24-byte header nonce.
    initiator_rng_seed: String,
    responder_rng_seed: String,
    /// `HKDF(0^32, SK, "northstar/v1/ratchet-init", 96)` split in three.
    init_root_key: String,
    init_shared_header_key: String,
    init_shared_next_header_key: String,
    messages: Vec<VectorMessage>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct VectorMessage {
    /// "initiator" or "responder".
    from: String,
    /// UTF-8 plaintext (hex).
    plaintext: String,
    /// The encoded `RatchetMessage` (hex).
    message: String,
}

/// Who sends each message of the conversation, and what.
const CONVERSATION: &[(bool, &str)] = &[
    (true, "Hello. Is Canada an option for me?"),
    (true, "I already claimed asylum in the U.S."),
    (
        false,
        "Thank you for writing. We can help you understand your options.",
    ),
    (true, "Thank you."),
    (
        false,
        "Under the Safe Third Country Agreement, some exceptions apply.",
    ),
    (false, "Can you tell us whether you have family in Canada?"),
    (true, "My sister lives in Montreal."),
];

fn generate() -> Vectors {
    let sk: [u8; 32] = core::array::from_fn(|i| i as u8);
    let ad = b"northstar/v1 test AD: IK_seeker || IK_counselor".to_vec();
    let prekey: [u8; 32] = core::array::from_fn(|i| 0x40 + i as u8);
    let prekey_pub = PublicKey::from(&StaticSecret::from(prekey)).to_bytes();
    let seed_i = [0x11u8; 32];
    let seed_r = [0x22u8; 32];
    let mut rng_i = ChaCha20Rng::from_seed(seed_i);
    let mut rng_r = ChaCha20Rng::from_seed(seed_r);

    let (rk0, hka, nhkb) = kdf_init(&sk);
    let mut initiator = Session::initiate(Zeroizing::new(sk), ad.clone(), prekey_pub, &mut rng_i);
    let mut responder = Session::respond(Zeroizing::new(sk), ad.clone(), Zeroizing::new(prekey));

    let mut messages = Vec::new();
    for (from_initiator, text) in CONVERSATION {
        let (sender, receiver, rng) = if *from_initiator {
            (&mut initiator, &mut responder, &mut rng_i)
        } else {
            (&mut responder, &mut initiator, &mut rng_r)
        };
        let m = sender.encrypt(text.as_bytes(), rng).unwrap();
        assert_eq!(&receiver.decrypt(&m).unwrap()[..], text.as_bytes());
        messages.push(VectorMessage {
            from: if *from_initiator {
                "initiator"
            } else {
                "responder"
            }
            .to_string(),
            plaintext: hex::encode(text),
            message: hex::encode(&m),
        });
    }
    Vectors {
        description: "Northstar Double Ratchet with header encryption (docs/PROTOCOL.md §3): \
                      a short conversation from fixed inputs; each message is decrypted by the \
                      other party in order."
            .to_string(),
        sk: hex::encode(sk),
        ad: hex::encode(&ad),
        responder_prekey_secret: hex::encode(prekey),
        responder_prekey_public: hex::encode(prekey_pub),
        initiator_rng_seed: hex::encode(seed_i),
        responder_rng_seed: hex::encode(seed_r),
        init_root_key: hex::encode(rk0.as_bytes()),
        init_shared_header_key: hex::encode(hka.as_bytes()),
        init_shared_next_header_key: hex::encode(nhkb.as_bytes()),
        messages,
    }
}

#[test]
fn ratchet_vectors_match_file() {
    let fresh = generate();
    if std::env::var("NORTHSTAR_WRITE_VECTORS").as_deref() == Ok("1") {
        let mut json = serde_json::to_string_pretty(&fresh).unwrap();
        json.push('\n');
        std::fs::write(PATH, json).unwrap();
    }
    let text = std::fs::read_to_string(PATH)
        .expect("docs/vectors/ratchet.json missing: run with NORTHSTAR_WRITE_VECTORS=1");
    let stored: Vectors = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored, fresh,
        "docs/vectors/ratchet.json is stale: rerun with NORTHSTAR_WRITE_VECTORS=1"
    );
}
