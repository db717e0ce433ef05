//! Behavioural tests of the ratchet: orderings, limits, replay, tampering,
//! forward secrecy, post-compromise security, saved state, and a seeded
//! two-party simulation that drops, shuffles and replays messages (after
//! libsignal's `rust/protocol/fuzz/fuzz_targets/interaction.rs`).

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::*;

const AD: &[u8] = b"northstar ratchet test AD: IK_A || IK_B";

/// An initiator and a responder sharing `sk` and `AD`, and an RNG.
fn pair(seed: u64) -> (Session, Session, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut sk = [0u8; 32];
    rng.fill_bytes(&mut sk);
    let mut prekey = [0u8; 32];
    rng.fill_bytes(&mut prekey);
    let prekey_pub = PublicKey::from(&StaticSecret::from(prekey)).to_bytes();
    let a = Session::initiate(Zeroizing::new(sk), AD.to_vec(), prekey_pub, &mut rng);
    let b = Session::respond(Zeroizing::new(sk), AD.to_vec(), Zeroizing::new(prekey));
    (a, b, rng)
}

fn state(s: &Session) -> Vec<u8> {
    s.encode_state().to_vec()
}

fn copy(s: &Session) -> Session {
    Session::decode_state(&s.encode_state()).unwrap()
}

fn send(s: &mut Session, text: &str, rng: &mut ChaCha20Rng) -> Vec<u8> {
    s.encrypt(text.as_bytes(), rng).unwrap()
}

#[track_caller]
fn recv(s: &mut Session, m: &[u8], text: &str) {
    assert_eq!(&s.decrypt(m).unwrap()[..], text.as_bytes());
}

/// Asserts `decrypt` fails with `want` and leaves the state unchanged.
#[track_caller]
fn reject(s: &mut Session, m: &[u8], want: RatchetError) {
    let before = state(s);
    assert_eq!(s.decrypt(m).unwrap_err(), want);
    assert_eq!(state(s), before, "state changed on a rejected message");
}

#[test]
fn in_order_one_direction() {
    let (mut a, mut b, mut rng) = pair(1);
    for i in 0..20 {
        let m = send(&mut a, &format!("m{i}"), &mut rng);
        recv(&mut b, &m, &format!("m{i}"));
    }
    assert_eq!(b.skipped_keys(), 0);
}

#[test]
fn alternating() {
    let (mut a, mut b, mut rng) = pair(2);
    for i in 0..20 {
        let m = send(&mut a, &format!("a{i}"), &mut rng);
        recv(&mut b, &m, &format!("a{i}"));
        let m = send(&mut b, &format!("b{i}"), &mut rng);
        recv(&mut a, &m, &format!("b{i}"));
    }
}

#[test]
fn same_direction_bursts_across_chains() {
    let (mut a, mut b, mut rng) = pair(3);
    for round in 0..5 {
        for i in 0..4 {
            let t = format!("a{round}.{i}");
            let m = send(&mut a, &t, &mut rng);
            recv(&mut b, &m, &t);
        }
        for i in 0..3 {
            let t = format!("b{round}.{i}");
            let m = send(&mut b, &t, &mut rng);
            recv(&mut a, &m, &t);
        }
    }
}

#[test]
fn out_of_order_within_a_chain() {
    let (mut a, mut b, mut rng) = pair(4);
    let ms: Vec<_> = (0..6)
        .map(|i| send(&mut a, &format!("m{i}"), &mut rng))
        .collect();
    for i in [3, 0, 5, 1, 4, 2] {
        recv(&mut b, &ms[i], &format!("m{i}"));
    }
    assert_eq!(b.skipped_keys(), 0);
}

#[test]
fn out_of_order_across_chains() {
    let (mut a, mut b, mut rng) = pair(5);
    let chain1: Vec<_> = (0..3)
        .map(|i| send(&mut a, &format!("c1.{i}"), &mut rng))
        .collect();
    recv(&mut b, &chain1[0], "c1.0");
    let r = send(&mut b, "reply", &mut rng);
    recv(&mut a, &r, "reply");
    let chain2: Vec<_> = (0..2)
        .map(|i| send(&mut a, &format!("c2.{i}"), &mut rng))
        .collect();
    // The new chain arrives first: its header's pn = 3 makes b skip c1.1, c1.2.
    recv(&mut b, &chain2[1], "c2.1");
    assert_eq!(b.skipped_keys(), 3);
    recv(&mut b, &chain1[2], "c1.2");
    recv(&mut b, &chain2[0], "c2.0");
    recv(&mut b, &chain1[1], "c1.1");
    assert_eq!(b.skipped_keys(), 0);
}

#[test]
fn dropped_messages_do_not_block_later_ones() {
    let (mut a, mut b, mut rng) = pair(6);
    for round in 0..4 {
        let ms: Vec<_> = (0..5)
            .map(|i| send(&mut a, &format!("{round}.{i}"), &mut rng))
            .collect();
        // Only every other message arrives.
        for i in (0..5).step_by(2) {
            recv(&mut b, &ms[i], &format!("{round}.{i}"));
        }
        let r = send(&mut b, "ack", &mut rng);
        recv(&mut a, &r, "ack");
    }
}

#[test]
fn responder_cannot_send_first() {
    let (_, mut b, mut rng) = pair(7);
    assert!(!b.can_send());
    let before = state(&b);
    assert_eq!(
        b.encrypt(b"x", &mut rng).unwrap_err(),
        RatchetError::CannotSendYet
    );
    assert_eq!(state(&b), before);
}

#[test]
fn max_skip_exceeded_is_rejected() {
    let (mut a, mut b, mut rng) = pair(8);
    let ms: Vec<_> = (0..=MAX_SKIP + 1)
        .map(|i| send(&mut a, &format!("{i}"), &mut rng))
        .collect();
    let last = ms.len() - 1;
    reject(
        &mut b,
        &ms[last],
        RatchetError::TooManySkipped {
            max: MAX_SKIP,
            skip: u64::from(MAX_SKIP) + 1,
        },
    );
    // Exactly MAX_SKIP ahead is allowed.
    recv(&mut b, &ms[last - 1], &format!("{}", last - 1));
    assert_eq!(b.skipped_keys(), MAX_SKIP as usize);
    recv(&mut b, &ms[last], &format!("{last}"));
}

#[test]
fn max_skip_applies_to_previous_chain_too() {
    let (mut a, mut b, mut rng) = pair(9);
    let first = send(&mut a, "first", &mut rng);
    recv(&mut b, &first, "first");
    let r = send(&mut b, "r", &mut rng);
    // a keeps sending on its old chain, then receives and ratchets: its next
    // header carries pn = MAX_SKIP + 2, and b has only seen n = 0.
    for i in 0..=MAX_SKIP {
        send(&mut a, &format!("{i}"), &mut rng);
    }
    recv(&mut a, &r, "r");
    let m = send(&mut a, "new chain", &mut rng);
    reject(
        &mut b,
        &m,
        RatchetError::TooManySkipped {
            max: MAX_SKIP,
            skip: u64::from(MAX_SKIP) + 1,
        },
    );
}

#[test]
fn replay_is_rejected_without_state_change() {
    let (mut a, mut b, mut rng) = pair(10);
    let m0 = send(&mut a, "m0", &mut rng);
    let m1 = send(&mut a, "m1", &mut rng);
    let m2 = send(&mut a, "m2", &mut rng);
    recv(&mut b, &m0, "m0");
    reject(&mut b, &m0, RatchetError::Replay);
    // A skipped key is usable once.
    recv(&mut b, &m2, "m2");
    recv(&mut b, &m1, "m1");
    reject(&mut b, &m1, RatchetError::Replay);
    reject(&mut b, &m2, RatchetError::Replay);
    // Replays from an earlier receiving chain are recognised too.
    let r = send(&mut b, "r", &mut rng);
    recv(&mut a, &r, "r");
    let n0 = send(&mut a, "n0", &mut rng);
    recv(&mut b, &n0, "n0");
    reject(&mut b, &m0, RatchetError::Replay);
    reject(&mut b, &m2, RatchetError::Replay);
    reject(&mut b, &n0, RatchetError::Replay);
    // And the first message (which started the responder's first chain).
    let (mut a, mut b, mut rng) = pair(11);
    let m0 = send(&mut a, "m0", &mut rng);
    recv(&mut b, &m0, "m0");
    reject(&mut b, &m0, RatchetError::Replay);
    let r = send(&mut b, "r", &mut rng);
    recv(&mut a, &r, "r");
    reject(&mut a, &r, RatchetError::Replay);
}

#[test]
fn tampering_any_byte_is_rejected_without_state_change() {
    let (mut a, mut b, mut rng) = pair(12);
    // Exercise each kind of receive: a new chain, the same chain, a skipped key.
    let ms: Vec<_> = (0..3)
        .map(|i| send(&mut a, &format!("m{i}"), &mut rng))
        .collect();
    for (i, m) in [(0, &ms[0]), (2, &ms[2]), (1, &ms[1])] {
        for idx in 0..m.len() {
            let mut bad = m.clone();
            bad[idx] ^= 0x01;
            let before = state(&b);
            assert!(b.decrypt(&bad).is_err(), "flip at {idx} accepted");
            assert_eq!(state(&b), before, "flip at {idx} changed state");
        }
        let mut longer = m.clone();
        longer.push(0);
        reject(
            &mut b,
            &longer,
            RatchetError::Malformed {
                source: DecodeError::TrailingBytes {
                    what: "ratchet message",
                    count: 1,
                },
            },
        );
        for cut in 0..m.len() {
            let before = state(&b);
            assert!(b.decrypt(&m[..cut]).is_err());
            assert_eq!(state(&b), before);
        }
        recv(&mut b, m, &format!("m{i}"));
    }
}

#[test]
fn tampered_parts_give_precise_errors() {
    let (mut a, mut b, mut rng) = pair(13);
    let m = send(&mut a, "hello", &mut rng);
    let mut version = m.clone();
    version[0] = 2;
    assert!(matches!(
        b.decrypt(&version),
        Err(RatchetError::Malformed { .. })
    ));
    let mut nonce = m.clone();
    nonce[1] ^= 0x80;
    reject(&mut b, &nonce, RatchetError::HeaderUndecryptable);
    let mut head = m.clone();
    head[40] ^= 0x80;
    reject(&mut b, &head, RatchetError::HeaderUndecryptable);
    let mut body = m.clone();
    let last = body.len() - 1;
    body[last] ^= 0x80;
    reject(&mut b, &body, RatchetError::BodyUndecryptable);
    // Another session's AD (the header keys match, the AD does not).
    let mut sk = [0u8; 32];
    let mut prekey = [0u8; 32];
    let mut r = ChaCha20Rng::seed_from_u64(13);
    r.fill_bytes(&mut sk);
    r.fill_bytes(&mut prekey);
    let mut other = Session::respond(
        Zeroizing::new(sk),
        b"different AD".to_vec(),
        Zeroizing::new(prekey),
    );
    reject(&mut other, &m, RatchetError::BodyUndecryptable);
    recv(&mut b, &m, "hello");
}

#[test]
fn forged_body_cannot_destroy_a_skipped_key() {
    let (mut a, mut b, mut rng) = pair(14);
    let m0 = send(&mut a, "m0", &mut rng);
    let m1 = send(&mut a, "m1", &mut rng);
    recv(&mut b, &m1, "m1");
    let mut bad = m0.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    reject(&mut b, &bad, RatchetError::BodyUndecryptable);
    recv(&mut b, &m0, "m0");
}

#[test]
fn low_order_ratchet_key_in_header_is_refused() {
    // Forge a first message under the responder's NHKr (= HKa), read from its
    // saved state: `version, ad_len, ad, dhs, dhr(none), rk, cks, ckr, hks,
    // hkr (none each), nhks, nhkr`.
    let (_, mut b, mut rng) = pair(29);
    let st = b.encode_state();
    let at = 1 + 4 + AD.len() + 32 + 1 + 32 + 4 + 32;
    let nhkr = keys::HeaderKey::from_bytes(st[at..at + 32].try_into().unwrap());
    let mut nonce = [0u8; HEADER_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let h = header::Header {
        dh: [0; 32],
        pn: 0,
        n: 0,
    };
    let mut m = vec![MESSAGE_VERSION];
    m.extend_from_slice(&nonce);
    m.extend_from_slice(&header::encrypt_header(&nhkr, &nonce, &h).unwrap());
    m.extend_from_slice(&16u32.to_be_bytes());
    m.extend_from_slice(&[0; 16]);
    reject(&mut b, &m, RatchetError::InvalidRatchetKey);
}

#[test]
fn unrelated_session_cannot_open_headers() {
    let (mut a, _, mut rng) = pair(15);
    let (_, mut b2, _) = pair(16);
    let m = send(&mut a, "x", &mut rng);
    reject(&mut b2, &m, RatchetError::HeaderUndecryptable);
}

#[test]
fn forward_secrecy_later_state_cannot_open_earlier_messages() {
    let (mut a, mut b, mut rng) = pair(17);
    let mut transcript_to_b = Vec::new();
    let mut transcript_to_a = Vec::new();
    for round in 0..3 {
        let ms: Vec<_> = (0..3)
            .map(|i| send(&mut a, &format!("a{round}.{i}"), &mut rng))
            .collect();
        // Out of order, so skipped keys are stored and then used.
        for i in [2, 0, 1] {
            recv(&mut b, &ms[i], &format!("a{round}.{i}"));
        }
        transcript_to_b.extend(ms);
        let r = send(&mut b, &format!("b{round}"), &mut rng);
        recv(&mut a, &r, &format!("b{round}"));
        transcript_to_a.push(r);
    }
    // The attacker seizes both devices' states after the messages were read.
    let mut stolen_b = copy(&b);
    let mut stolen_a = copy(&a);
    for m in &transcript_to_b {
        let before = state(&stolen_b);
        assert!(stolen_b.decrypt(m).is_err());
        assert_eq!(state(&stolen_b), before);
    }
    for m in &transcript_to_a {
        assert!(stolen_a.decrypt(m).is_err());
    }
    assert_eq!(stolen_b.skipped_keys(), 0);
}

#[test]
fn post_compromise_security_after_one_round_trip() {
    let (mut a, mut b, mut rng) = pair(18);
    let m = send(&mut a, "hello", &mut rng);
    recv(&mut b, &m, "hello");
    let m = send(&mut b, "hi", &mut rng);
    recv(&mut a, &m, "hi");

    // The attacker steals a copy of a's state and watches every ciphertext.
    let mut eve = copy(&a);
    // The compromise is real: before a round trip, eve reads b's messages.
    let m1 = send(&mut b, "b1 (compromised)", &mut rng);
    recv(&mut eve, &m1, "b1 (compromised)");
    recv(&mut a, &m1, "b1 (compromised)");

    // a and b complete one DH ratchet round trip with fresh keys.
    let m2 = send(&mut a, "a2", &mut rng);
    assert!(eve.decrypt(&m2).is_err());
    recv(&mut b, &m2, "a2");
    let m3 = send(&mut b, "b3 (healed)", &mut rng);
    let m4 = send(&mut b, "b4 (healed)", &mut rng);
    // Eve, holding everything a held plus the whole transcript, is locked out.
    assert!(eve.decrypt(&m3).is_err());
    assert!(eve.decrypt(&m4).is_err());
    recv(&mut a, &m3, "b3 (healed)");
    recv(&mut a, &m4, "b4 (healed)");
    // Also in the other direction, with a stolen copy of b from before.
    let m5 = send(&mut a, "a5", &mut rng);
    recv(&mut b, &m5, "a5");
    let m6 = send(&mut b, "b6", &mut rng);
    assert!(eve.decrypt(&m6).is_err());
    recv(&mut a, &m6, "b6");
}

#[test]
fn post_compromise_security_of_a_stolen_responder() {
    let (mut a, mut b, mut rng) = pair(19);
    let m = send(&mut a, "hello", &mut rng);
    recv(&mut b, &m, "hello");
    let mut eve = copy(&b);
    let m1 = send(&mut a, "a1 (compromised)", &mut rng);
    recv(&mut eve, &m1, "a1 (compromised)");
    recv(&mut b, &m1, "a1 (compromised)");
    let r = send(&mut b, "r", &mut rng);
    recv(&mut a, &r, "r");
    let m2 = send(&mut a, "a2 (healed)", &mut rng);
    assert!(eve.decrypt(&m2).is_err());
    recv(&mut b, &m2, "a2 (healed)");
}

#[test]
fn state_round_trip_mid_conversation() {
    let (mut a, mut b, mut rng) = pair(20);
    let mut held = Vec::new();
    for round in 0..3 {
        let ms: Vec<_> = (0..4)
            .map(|i| send(&mut a, &format!("a{round}.{i}"), &mut rng))
            .collect();
        recv(&mut b, &ms[3], &format!("a{round}.3"));
        held.push((ms[1].clone(), format!("a{round}.1")));
        let r = send(&mut b, &format!("b{round}"), &mut rng);
        recv(&mut a, &r, &format!("b{round}"));
    }
    assert_eq!(b.skipped_keys(), 9);
    // Save and restore both parties; the encoding is canonical.
    let sa = a.encode_state();
    let sb = b.encode_state();
    let mut a = Session::decode_state(&sa).unwrap();
    let mut b = Session::decode_state(&sb).unwrap();
    assert_eq!(a.encode_state(), sa);
    assert_eq!(b.encode_state(), sb);
    // Skipped keys survived the round trip, and the conversation goes on.
    for (m, t) in &held {
        recv(&mut b, m, t);
    }
    let m = send(&mut a, "after restore", &mut rng);
    recv(&mut b, &m, "after restore");
    let m = send(&mut b, "reply after restore", &mut rng);
    recv(&mut a, &m, "reply after restore");
    // A fresh responder state (nothing received yet) round-trips too.
    let (_, b0, _) = pair(21);
    assert_eq!(copy(&b0).encode_state(), b0.encode_state());
}

#[test]
fn decode_state_is_strict() {
    let (mut a, mut b, mut rng) = pair(22);
    let ms: Vec<_> = (0..3)
        .map(|i| send(&mut a, &format!("{i}"), &mut rng))
        .collect();
    recv(&mut b, &ms[2], "2");
    let s = b.encode_state().to_vec();
    let mut v = s.clone();
    v[0] = 2;
    assert!(matches!(
        Session::decode_state(&v),
        Err(RatchetError::Malformed {
            source: DecodeError::UnsupportedVersion { got: 2, .. }
        })
    ));
    let mut t = s.clone();
    t.push(0);
    assert!(matches!(
        Session::decode_state(&t),
        Err(RatchetError::Malformed {
            source: DecodeError::TrailingBytes { count: 1, .. }
        })
    ));
    for cut in 0..s.len() {
        assert!(
            Session::decode_state(&s[..cut]).is_err(),
            "prefix {cut} accepted"
        );
    }
    // The option tag after `dhs` must be 0 or 1.
    let tag_at = 1 + 4 + AD.len() + 32;
    let mut bad = s.clone();
    bad[tag_at] = 2;
    assert!(matches!(
        Session::decode_state(&bad),
        Err(RatchetError::Malformed {
            source: DecodeError::UnknownTag { tag: 2, .. }
        })
    ));
}

#[test]
fn skipped_keys_are_evicted_oldest_first() {
    let (mut a, mut b, mut rng) = pair(23);
    let mut chains = Vec::new();
    for (round, len) in [1001usize, 1001, 11].into_iter().enumerate() {
        let ms: Vec<_> = (0..len)
            .map(|i| send(&mut a, &format!("{round}.{i}"), &mut rng))
            .collect();
        recv(&mut b, &ms[len - 1], &format!("{round}.{}", len - 1));
        let r = send(&mut b, "ack", &mut rng);
        recv(&mut a, &r, "ack");
        chains.push(ms);
    }
    assert_eq!(b.skipped_keys(), MAX_SKIPPED_KEYS);
    // The ten oldest keys (chain 0, n = 0..10) were deleted.
    for m in &chains[0][..10] {
        reject(&mut b, m, RatchetError::Replay);
    }
    recv(&mut b, &chains[0][10], "0.10");
    recv(&mut b, &chains[2][0], "2.0");
}

#[test]
fn skipped_keys_expire_after_max_chain_age() {
    let (mut a, mut b, mut rng) = pair(24);
    let mut withheld = Vec::new();
    for round in 0..=MAX_SKIPPED_CHAIN_AGE + 1 {
        let held = send(&mut a, &format!("held{round}"), &mut rng);
        let m = send(&mut a, &format!("m{round}"), &mut rng);
        recv(&mut b, &m, &format!("m{round}"));
        withheld.push(held);
        let r = send(&mut b, "ack", &mut rng);
        recv(&mut a, &r, "ack");
    }
    // b is now MAX_SKIPPED_CHAIN_AGE + 1 chains past round 0: expired.
    reject(&mut b, &withheld[0], RatchetError::HeaderUndecryptable);
    // Round 1 is exactly MAX_SKIPPED_CHAIN_AGE old: still readable.
    recv(&mut b, &withheld[1], "held1");
    for (round, m) in withheld.iter().enumerate().skip(2) {
        recv(&mut b, m, &format!("held{round}"));
    }
}

#[test]
fn plaintext_limits() {
    let (mut a, mut b, mut rng) = pair(25);
    let big = vec![7u8; MAX_PLAINTEXT_LEN];
    let m = a.encrypt(&big, &mut rng).unwrap();
    assert_eq!(m.len(), MAX_MESSAGE_LEN);
    assert_eq!(&b.decrypt(&m).unwrap()[..], &big[..]);
    let before = state(&a);
    assert_eq!(
        a.encrypt(&vec![0u8; MAX_PLAINTEXT_LEN + 1], &mut rng)
            .unwrap_err(),
        RatchetError::PlaintextTooLong {
            max: MAX_PLAINTEXT_LEN,
            got: MAX_PLAINTEXT_LEN + 1
        }
    );
    assert_eq!(state(&a), before);
    let m = a.encrypt(b"", &mut rng).unwrap();
    assert_eq!(m.len(), MESSAGE_OVERHEAD);
    assert_eq!(&b.decrypt(&m).unwrap()[..], b"");
}

#[test]
fn oversized_ad_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(26);
    let mut a = Session::initiate(
        Zeroizing::new([1; 32]),
        vec![0; MAX_AD_LEN + 1],
        [9; 32],
        &mut rng,
    );
    assert_eq!(
        a.encrypt(b"x", &mut rng).unwrap_err(),
        RatchetError::AssociatedDataTooLong {
            max: MAX_AD_LEN,
            got: MAX_AD_LEN + 1
        }
    );
}

#[test]
fn debug_prints_no_secrets() {
    let (a, _, _) = pair(27);
    let dbg = format!("{a:?}");
    assert_eq!(
        dbg,
        "Session { ns: 0, nr: 0, pn: 0, recv_epoch: 0, skipped_keys: 0, old_chains: 0, .. }"
    );
}

#[test]
fn messages_reveal_nothing_in_the_clear() {
    // Two messages of the same chain share no header bytes (random nonces,
    // encrypted counters and ratchet key).
    let (mut a, _, mut rng) = pair(28);
    let m0 = send(&mut a, "same", &mut rng);
    let m1 = send(&mut a, "same", &mut rng);
    assert_eq!(m0[0], m1[0]);
    let equal = m0[1..MESSAGE_PREFIX_LEN]
        .iter()
        .zip(&m1[1..MESSAGE_PREFIX_LEN])
        .filter(|(x, y)| x == y)
        .count();
    assert!(equal < 10, "{equal} equal header bytes");
    assert_ne!(m0[MESSAGE_PREFIX_LEN + 4..], m1[MESSAGE_PREFIX_LEN + 4..]);
}

/// One message in flight in the simulation.
#[derive(Clone)]
struct Flight {
    to: usize,
    bytes: Vec<u8>,
    text: String,
    /// The sender's sending-chain number when it was sent.
    chain: u32,
}

/// What a simulation run exercised.
#[derive(Debug, Default)]
struct Stats {
    sent: usize,
    delivered: usize,
    out_of_order: usize,
    dropped: usize,
    replays_rejected: usize,
    expired_rejected: usize,
    restored: usize,
}

/// A seeded two-party simulation: random sends in both directions, and
/// random delivery order, drops, replays and save/restore cycles. Checks
/// every first delivery decrypts to what was sent (unless its chain has
/// expired, when it must fail), every replay is refused, and every refusal
/// leaves the state unchanged.
fn simulate(seed: u64, steps: usize) -> Stats {
    let mut stats = Stats::default();
    let (a, b, mut rng) = pair(seed);
    let mut parties = [a, b];
    // Sending-chain counter per party, and whether its next send starts a chain.
    let mut chain = [0u32, 0];
    let mut pending = [false, true];
    // Highest peer chain each party has received.
    let mut newest_seen: [Option<u32>; 2] = [None, None];
    let mut in_flight: Vec<Flight> = Vec::new();
    let mut delivered: Vec<Flight> = Vec::new();
    let mut counter = 0u64;
    let expired = |seen: Option<u32>, c: u32| seen.is_some_and(|s| s > c + MAX_SKIPPED_CHAIN_AGE);

    let deliver = |parties: &mut [Session; 2],
                   f: &Flight,
                   first: bool,
                   newest_seen: &mut [Option<u32>; 2],
                   pending: &mut [bool; 2],
                   stats: &mut Stats| {
        let p = &mut parties[f.to];
        let before = p.encode_state();
        let too_old = expired(newest_seen[f.to], f.chain);
        match p.decrypt(&f.bytes) {
            Ok(pt) => {
                assert!(first, "replay accepted");
                assert!(!too_old, "expired chain accepted");
                assert_eq!(&pt[..], f.text.as_bytes());
                stats.delivered += 1;
                if newest_seen[f.to].is_none_or(|s| f.chain > s) {
                    newest_seen[f.to] = Some(f.chain);
                    pending[f.to] = true;
                }
            }
            Err(e) => {
                assert_eq!(p.encode_state(), before, "state changed on {e:?}");
                if too_old {
                    stats.expired_rejected += 1;
                    assert!(
                        e == RatchetError::HeaderUndecryptable || e == RatchetError::Replay,
                        "{e:?}"
                    );
                } else {
                    assert!(!first, "first delivery failed: {e:?}");
                    assert_eq!(e, RatchetError::Replay);
                    stats.replays_rejected += 1;
                }
            }
        }
    };

    for _ in 0..steps {
        match rng.next_u32() % 10 {
            0..=1 => {
                let from = (rng.next_u32() % 2) as usize;
                if !parties[from].can_send() {
                    continue;
                }
                if pending[from] {
                    chain[from] += 1;
                    pending[from] = false;
                }
                counter += 1;
                stats.sent += 1;
                let text = format!("{from}:{counter}");
                let bytes = parties[from].encrypt(text.as_bytes(), &mut rng).unwrap();
                in_flight.push(Flight {
                    to: 1 - from,
                    bytes,
                    text,
                    chain: chain[from],
                });
            }
            2..=5 if !in_flight.is_empty() => {
                let i = (rng.next_u32() as usize) % in_flight.len();
                if i + 1 < in_flight.len() {
                    stats.out_of_order += 1;
                }
                let f = in_flight.swap_remove(i);
                deliver(
                    &mut parties,
                    &f,
                    true,
                    &mut newest_seen,
                    &mut pending,
                    &mut stats,
                );
                delivered.push(f);
            }
            6 if !in_flight.is_empty() => {
                let i = (rng.next_u32() as usize) % in_flight.len();
                in_flight.swap_remove(i);
                stats.dropped += 1;
            }
            7 if !delivered.is_empty() => {
                let i = (rng.next_u32() as usize) % delivered.len();
                let f = delivered[i].clone();
                deliver(
                    &mut parties,
                    &f,
                    false,
                    &mut newest_seen,
                    &mut pending,
                    &mut stats,
                );
            }
            8 => {
                let p = (rng.next_u32() % 2) as usize;
                let saved = parties[p].encode_state();
                parties[p] = Session::decode_state(&saved).unwrap();
                assert_eq!(parties[p].encode_state(), saved);
                stats.restored += 1;
            }
            _ => {}
        }
    }
    for f in std::mem::take(&mut in_flight) {
        deliver(
            &mut parties,
            &f,
            true,
            &mut newest_seen,
            &mut pending,
            &mut stats,
        );
    }
    stats
}

#[test]
fn simulation_fixed_seeds() {
    let mut total = Stats::default();
    for seed in 0..8 {
        let s = simulate(1000 + seed, 400);
        total.sent += s.sent;
        total.delivered += s.delivered;
        total.out_of_order += s.out_of_order;
        total.dropped += s.dropped;
        total.replays_rejected += s.replays_rejected;
        total.expired_rejected += s.expired_rejected;
        total.restored += s.restored;
    }
    // The runs really exercise reordering, loss, replay and persistence.
    assert!(total.delivered > 300, "{total:?}");
    assert!(total.out_of_order > 50, "{total:?}");
    assert!(total.dropped > 20, "{total:?}");
    assert!(total.replays_rejected > 50, "{total:?}");
    assert!(total.restored > 50, "{total:?}");
    eprintln!("{total:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn simulation(seed in any::<u64>(), steps in 1usize..250) {
        let _ = simulate(seed, steps);
    }

    #[test]
    fn decrypt_never_panics_and_rejects_garbage_unchanged(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        let m = send(&mut a, "x", &mut rng);
        recv(&mut b, &m, "x");
        let before = state(&b);
        prop_assert!(b.decrypt(&bytes).is_err());
        prop_assert_eq!(state(&b), before);
    }

    #[test]
    fn decrypt_never_panics_on_mutated_messages(
        idx in any::<prop::sample::Index>(),
        val in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        let mut m = send(&mut a, "payload", &mut rng);
        let i = idx.index(m.len());
        prop_assume!(m[i] != val);
        m[i] = val;
        let before = state(&b);
        prop_assert!(b.decrypt(&m).is_err());
        prop_assert_eq!(state(&b), before);
    }

    #[test]
    fn decode_state_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Session::decode_state(&bytes);
    }

    #[test]
    fn decode_state_never_panics_on_mutated_state(
        idx in any::<prop::sample::Index>(),
        val in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        for i in 0..3 {
            let m = send(&mut a, &format!("{i}"), &mut rng);
            if i != 1 {
                recv(&mut b, &m, &format!("{i}"));
            }
        }
        let mut s = b.encode_state().to_vec();
        let i = idx.index(s.len());
        s[i] = val;
        if let Ok(mut restored) = Session::decode_state(&s) {
            // Whatever decodes must encode back identically and be usable
            // without panicking.
            prop_assert_eq!(&restored.encode_state()[..], &s[..]);
            let m = send(&mut a, "after", &mut rng);
            let _ = restored.decrypt(&m);
            let _ = restored.encrypt(b"reply", &mut rng);
        }
    }

    #[test]
    fn round_trip_arbitrary_plaintexts(
        pts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8),
        seed in any::<u64>(),
    ) {
        let (mut a, mut b, mut rng) = pair(seed);
        for (i, pt) in pts.iter().enumerate() {
            let (s, r) = if i % 3 == 2 { (&mut b, &mut a) } else { (&mut a, &mut b) };
            let m = s.encrypt(pt, &mut rng).unwrap();
            prop_assert_eq!(m.len(), pt.len() + MESSAGE_OVERHEAD);
            prop_assert_eq!(&r.decrypt(&m).unwrap()[..], &pt[..]);
        }
    }
}

/// The attack: the relay stores a seeker's saved state and serves an older
/// copy; the seeker then encrypts a new message at a chain position already
/// used. With a body key and nonce derived from the message key alone, the
/// two bodies would be one keystream over two plaintexts: whoever later
/// removes the sealed-sender layer (a seized counselor mailbox key) gets
/// their XOR. The body key is salted with each message's random header
/// nonce, so a reused position never reuses a key and nonce.
#[test]
fn a_rolled_back_state_never_reuses_a_body_key_with_a_nonce() {
    let (mut a, mut b, mut rng) = pair(41);
    let m0 = send(&mut a, "hello", &mut rng);
    recv(&mut b, &m0, "hello");
    let saved = copy(&a);
    let p1 = "I am seventeen and alone here.";
    let p2 = "my aunt lives in Montreal, QC.";
    assert_eq!(p1.len(), p2.len());
    let m1 = send(&mut a, p1, &mut rng);
    // The relay serves the older state; the seeker writes again.
    let mut rolled_back = saved;
    let m2 = send(&mut rolled_back, p2, &mut rng);
    assert_eq!(m1.len(), m2.len());
    let body = |m: &[u8]| m[m.len() - (p1.len() + TAG_LEN)..m.len() - TAG_LEN].to_vec();
    let xor = |x: &[u8], y: &[u8]| x.iter().zip(y).map(|(p, q)| p ^ q).collect::<Vec<u8>>();
    assert_ne!(
        xor(&body(&m1), &body(&m2)),
        xor(p1.as_bytes(), p2.as_bytes()),
        "the two ciphertexts reveal the XOR of the plaintexts"
    );
    // The first arrives; the second reuses a position the receiver already
    // consumed and is refused as a replay (a relay can drop messages anyway;
    // what it cannot do is read them).
    recv(&mut b, &m1, p1);
    reject(&mut b, &m2, RatchetError::Replay);
}
