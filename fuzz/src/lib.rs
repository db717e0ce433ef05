//! The bodies of Northstar's fuzz targets, one plain function per decoder
//! family, so that the libFuzzer binaries (`fuzz_targets/*.rs`, nightly,
//! `cargo fuzz run <name>`) and the stable replay test
//! (`tests/tests/fuzz_replay.rs`, part of `cargo test`) run the very same
//! code on the committed corpora.
//!
//! Every body feeds untrusted bytes to a decoder and checks more than "no
//! panic": whatever decodes must encode back to the same bytes (one
//! encoding per value, so nothing can be smuggled in a second form), and
//! whatever fails must fail with a typed error.
//!
//! Secrets here are fixed test values derived from constants: nothing in
//! this file protects anything.

#![forbid(unsafe_code)]
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use northstar_core::UnixTime;
use northstar_core::codename::Codename;
use northstar_core::directory::{Directory, DirectoryVersion, OrgSigningKey, SignedDirectory};
use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::keys::MailboxKeyPair;
use northstar_core::message::AppMessage;
use northstar_core::pqxdh::{InitialHeader, OneTimePqPreKeyPublic, SignedPreKeyBundle};
use northstar_core::ratchet::Session;
use northstar_core::sealed::{self, Envelope, SealedContent};
use northstar_core::state::{KeyStore, StateKey, StateKind, StateRecords};
use zeroize::Zeroizing;

/// A fuzz target: its name (the `fuzz_targets/<name>.rs` binary and the
/// `corpus/<name>` directory) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the replay test and scripts/test run them.
pub const TARGETS: &[Target] = &[
    ("client_frame", client_frame),
    ("saved_state", saved_state),
    ("server_frame", server_frame),
    ("envelope", envelope),
    ("ratchet_message", ratchet_message),
    ("directory", directory),
    ("state_blob", state_blob),
    ("codename", codename),
    ("app_message", app_message),
    ("prekey_bundle", prekey_bundle),
    ("attachment", attachment),
];

// The fixed keys are those of docs/vectors, so the seed corpora (taken
// from the vectors) decrypt for real and the fuzzer starts past the
// authentication checks.

/// The recipient mailbox of docs/vectors/sealed.json (`recipient_mailbox_secret`).
const MAILBOX_SECRET_HEX: &str = "01053d237cd371514aeb3a0dfac6959bf7bb74df7986b6037e534c2e95833769029c2a107a9d443f61f01ccfd3e697954d9e8b4b11c3fa04023b95ee9f90c3ef90ba";
/// docs/vectors/ratchet.json: `sk`.
const RATCHET_SK_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
/// docs/vectors/ratchet.json: `responder_prekey_secret`.
const RATCHET_PREKEY_HEX: &str = "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f";
/// docs/vectors/ratchet.json: `ad`.
const RATCHET_AD_HEX: &str = "6e6f727468737461722f763120746573742041443a20494b5f7365656b6572207c7c20494b5f636f756e73656c6f72";
/// docs/vectors/directory.json: the organisation signing seed.
const ORG_SEED: [u8; 32] = [0x0a; 32];
/// docs/vectors/state.json: `state_blob.key`.
const STATE_KEY: [u8; 32] = [0x42; 32];

/// Decodes a lower-case hex constant of this file.
fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("bad hex constant"),
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect()
}

fn key32(s: &str) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(unhex(s).try_into().expect("a 32-byte constant"))
}

/// The recipient mailbox every envelope is opened with.
pub fn mailbox() -> &'static MailboxKeyPair {
    static M: OnceLock<MailboxKeyPair> = OnceLock::new();
    M.get_or_init(|| {
        MailboxKeyPair::decode(&unhex(MAILBOX_SECRET_HEX)).expect("the vector's mailbox decodes")
    })
}

/// The responder's side of the vectors' ratchet session, before any message.
pub fn responder() -> Session {
    Session::respond(
        key32(RATCHET_SK_HEX),
        unhex(RATCHET_AD_HEX),
        key32(RATCHET_PREKEY_HEX),
    )
}

/// The organisation whose directories are accepted.
pub fn org() -> OrgSigningKey {
    OrgSigningKey::from_seed(&ORG_SEED)
}

/// Relay frames from clients: what the relay decodes from the network.
pub fn client_frame(data: &[u8]) {
    if let Ok((id, frame)) = ClientFrame::decode(data) {
        let again = frame.encode(id).expect("a decoded client frame encodes");
        assert_eq!(again, data, "client frame: one encoding per value");
    }
}

/// Relay frames from the relay: what every client decodes.
pub fn server_frame(data: &[u8]) {
    if let Ok((id, frame)) = ServerFrame::decode(data) {
        let again = frame.encode(id).expect("a decoded server frame encodes");
        assert_eq!(again, data, "server frame: one encoding per value");
    }
}

/// Envelopes (relay and client), their sealed-sender opening, and the
/// sealed content inside.
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.encode(), data, "envelope: one encoding per value");
    }
    // The same bytes as the ciphertext of an envelope to our mailbox: HPKE
    // decapsulation and the sealed-sender layers must refuse, not panic.
    if let Ok(env) = Envelope::from_parts(mailbox().id(), data.to_vec()) {
        let _ = sealed::open(mailbox(), &env);
    }
    if let Ok(content) = SealedContent::decode(data) {
        let again = content.encode().expect("decoded sealed content encodes");
        assert_eq!(
            SealedContent::decode(&again).ok(),
            Some(content),
            "sealed content round trip"
        );
    }
}

/// Ratchet messages (header parsing, header decryption, skipped keys) and
/// PQXDH initial headers. A failed decryption must leave the session
/// unchanged.
pub fn ratchet_message(data: &[u8]) {
    let mut s = responder();
    let before = s.encode_state();
    match s.decrypt(data) {
        Err(_) => assert_eq!(
            s.encode_state(),
            before,
            "a refused message changes nothing"
        ),
        Ok(_) => {
            // Only a genuine message decrypts; a replay of it must not.
            assert!(s.decrypt(data).is_err(), "a replay is refused");
        }
    }
    if let Ok(h) = InitialHeader::decode(data) {
        let mut w = northstar_core::internal::Writer::new();
        h.write(&mut w);
        assert_eq!(w.into_bytes(), data, "initial header: one encoding");
    }
}

/// Signed team directories, as the relay and clients receive them, and the
/// version records clients keep.
pub fn directory(data: &[u8]) {
    if let Ok(signed) = SignedDirectory::decode(data) {
        assert_eq!(signed.encode(), data, "signed directory: one encoding");
        let _ = signed.verify(&org().public(), None, UnixTime(0));
        let _ = signed.verify_self_signed(None);
    }
    if let Ok(dir) = Directory::decode(data) {
        let again = dir.encode().expect("a decoded directory encodes");
        assert_eq!(again, data, "directory: one encoding per value");
    }
    if let Ok(v) = DirectoryVersion::decode(data) {
        assert_eq!(v.encode(), data, "directory version: one encoding");
    }
}

/// Encrypted state blobs (seeker state on the relay, device state on
/// disk), key-store headers, and the plaintext records and saved sessions
/// inside them.
pub fn state_blob(data: &[u8]) {
    let key = StateKey::from_bytes(Zeroizing::new(STATE_KEY));
    for kind in [StateKind::Seeker, StateKind::Counselor, StateKind::Admin] {
        let _ = key.open(kind, data);
    }
    let _ = KeyStore::params(data);
    if let Ok(records) = StateRecords::decode(data) {
        let again = records.encode().expect("decoded records encode");
        assert_eq!(again.as_slice(), data, "state records: one encoding");
    }
    if let Ok(session) = Session::decode_state(data) {
        assert_eq!(
            session.encode_state().as_slice(),
            data,
            "ratchet state: one encoding"
        );
    }
    if let Ok(e) = northstar_core::client::endpoint::Endpoint::decode(data) {
        let _ = e.encode();
    }
    let _ = northstar_core::client::counselor::Counselor::decode(data, &org().public());
    let _ = northstar_core::client::counselor::DevicePublic::decode(data);
}

/// The saved formats of a counselor device and of the administrator
/// (read back from a local file or IndexedDB another program could edit).
pub fn saved_state(data: &[u8]) {
    use northstar_core::client::saved::{AdminState, DeviceState};
    if let Ok(d) = DeviceState::decode(data) {
        let again = d.encode().expect("a decoded device state encodes");
        assert_eq!(again.as_slice(), data, "device state: one encoding");
    }
    if let Ok(a) = AdminState::decode(data) {
        let again = a.encode().expect("a decoded admin state encodes");
        assert_eq!(again.as_slice(), data, "admin state: one encoding");
    }
    let key = StateKey::from_bytes(Zeroizing::new([0x42; 32]));
    let _ = DeviceState::open(&key, data);
}

/// What a seeker types as a codename: any text.
pub fn codename(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Codename::parse(text) {
        let shown = c.to_zeroizing_string();
        let again = Codename::parse(&shown).expect("a shown codename parses");
        assert!(again == c, "codename: parse(show(c)) == c");
    }
}

/// Application messages (inside the ratchet): what a peer can send.
pub fn app_message(data: &[u8]) {
    if let Ok(m) = AppMessage::decode(data) {
        let again = m.encode().expect("a decoded message encodes");
        assert_eq!(again, data, "application message: one encoding");
    }
}

/// Prekey bundles (fetched from the relay) and the public-key records in them,
/// and the signed one-time ML-KEM prekeys handed out with them.
pub fn prekey_bundle(data: &[u8]) {
    if let Ok(b) = SignedPreKeyBundle::decode(data) {
        assert_eq!(b.encode(), data, "prekey bundle: one encoding");
        let _ = b.verify();
    }
    if let Ok(k) = OneTimePqPreKeyPublic::decode(data) {
        assert_eq!(k.encode(), data, "one-time pq prekey: one encoding");
        let _ = k.verify(&pinned_identity());
    }
}

/// Any fixed identity: a one-time ML-KEM prekey must verify under the
/// bundle's identity, and a fuzzed one is (almost surely) refused.
fn pinned_identity() -> northstar_core::keys::IdentityPublic {
    northstar_core::keys::IdentityKeyPair::from_seeds(
        Zeroizing::new([0x11; 32]),
        Zeroizing::new([0x22; 32]),
    )
    .public()
}

/// Attachments: the reference a peer sends (inside the ratchet), the
/// sealed chunks the relay hands back (which must open only under the
/// vectors' reference), and the image cleaner run on a file a seeker picks.
pub fn attachment(data: &[u8]) {
    use northstar_core::attachment::{AttachmentRef, open_chunk};
    use northstar_core::metadata;
    if let Ok(r) = AttachmentRef::decode(data) {
        let again = r.encode().expect("a decoded reference encodes");
        assert_eq!(again, data, "attachment reference: one encoding");
    }
    let r = attachment_ref();
    for i in 0..r.chunk_count() {
        assert!(
            open_chunk(r, i, data).is_err(),
            "a fuzzed chunk does not authenticate"
        );
    }
    // The cleaner: whatever it accepts, a second pass leaves unchanged.
    if let Ok((out, _)) = metadata::clean(data.to_vec()) {
        let (again, _) = metadata::clean(out.clone()).expect("a cleaned image cleans again");
        assert_eq!(again, out, "cleaning is idempotent");
    }
}

/// docs/vectors/attachment.json: the reference.
const ATTACHMENT_REF_HEX: &str = "7300e1d2098932fd94163d9e8ec627c166971730f45c15aaf2658b73d58259754b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b0edc19550d3f9bf4e7e8ea028ba8f9916dc29653d1eea97613bb394becf7eeb3000111700002000f6170706c69636174696f6e2f70646600146e6f7469636520746f206170706561722e706466";

fn attachment_ref() -> &'static northstar_core::attachment::AttachmentRef {
    static R: OnceLock<northstar_core::attachment::AttachmentRef> = OnceLock::new();
    R.get_or_init(|| {
        northstar_core::attachment::AttachmentRef::decode(&unhex(ATTACHMENT_REF_HEX))
            .expect("the vector's reference decodes")
    })
}
