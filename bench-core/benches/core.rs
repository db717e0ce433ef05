//! client-core benchmarks (criterion), with vodozemac's Olm as the peer.
//!
//! `cargo bench -p northstar-bench-core --bench core` (scripts/bench-core runs it
//! pinned, three times, and summarises). Groups:
//! - `core/*`: northstar-core operations, `prim/*`: the primitives under
//!   them (both from `northstar_bench_core::prepare`, the code the wasm build
//!   times too);
//! - `peer/*`: vodozemac 0.9 (crates.io) Olm: session creation, and
//!   encrypt + decrypt of 1 KiB same direction and alternating.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::Criterion;
    use northstar_bench_core::{MESSAGE_LEN, OPERATIONS, is_slow, prepare};
    use vodozemac::olm::{Account, OlmMessage, Session, SessionConfig};

    fn config(c: Criterion) -> Criterion {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(30)
    }

    pub fn core(c: &mut Criterion) {
        for kind in ["core", "setup", "prim"] {
            let mut g = c.benchmark_group(kind);
            for name in OPERATIONS.iter().filter(|n| n.starts_with(kind)) {
                let id = &name[kind.len() + 1..];
                if is_slow(name) {
                    g.sample_size(10).measurement_time(Duration::from_secs(4));
                } else {
                    g.sample_size(30).measurement_time(Duration::from_secs(3));
                }
                let mut op = prepare(name).expect("known operation");
                g.bench_function(id, |b| b.iter(&mut op));
            }
            g.finish();
        }
    }

    /// An Olm account with one fresh, published one-time key.
    fn otk(bob: &mut Account) -> vodozemac::Curve25519PublicKey {
        bob.generate_one_time_keys(1);
        let key = *bob.one_time_keys().values().next().expect("one key");
        bob.mark_keys_as_published();
        key
    }

    /// Alice's and Bob's Olm sessions after a round trip (so that both send
    /// normal, not pre-key, messages).
    fn olm_pair() -> (Session, Session) {
        let alice = Account::new();
        let mut bob = Account::new();
        let key = otk(&mut bob);
        let mut a =
            alice.create_outbound_session(SessionConfig::version_2(), bob.curve25519_key(), key);
        let OlmMessage::PreKey(m) = a.encrypt("hello") else {
            panic!("first message is a pre-key message")
        };
        let mut b = bob
            .create_inbound_session(alice.curve25519_key(), &m)
            .expect("inbound session")
            .session;
        let r = b.encrypt("hi");
        a.decrypt(&r).expect("reply");
        (a, b)
    }

    pub fn peer(c: &mut Criterion) {
        let mut g = c.benchmark_group("peer");
        g.sample_size(30).measurement_time(Duration::from_secs(3));
        // Session creation to the first message read: the outbound session
        // from Bob's identity and one-time key, a first short message, the
        // inbound session from it (Bob generates the one-time key inside the
        // timed work, as Northstar's set-up does).
        let alice = Account::new();
        let mut bob = Account::new();
        g.bench_function("olm_session_create", |b| {
            b.iter(|| {
                let key = otk(&mut bob);
                let mut s = alice.create_outbound_session(
                    SessionConfig::version_2(),
                    bob.curve25519_key(),
                    key,
                );
                let OlmMessage::PreKey(m) = s.encrypt("hello") else {
                    panic!("pre-key message")
                };
                let r = bob
                    .create_inbound_session(alice.curve25519_key(), &m)
                    .expect("inbound session");
                black_box((s, r.session, r.plaintext));
            })
        });
        let plaintext = [0x5au8; MESSAGE_LEN];
        for alternating in [false, true] {
            let (mut a, mut b) = olm_pair();
            let mut alice_sends = true;
            let id = if alternating {
                "olm_1k_alternating"
            } else {
                "olm_1k_same_direction"
            };
            g.bench_function(id, |bench| {
                bench.iter(|| {
                    let (from, to) = if alice_sends {
                        (&mut a, &mut b)
                    } else {
                        (&mut b, &mut a)
                    };
                    let m = from.encrypt(plaintext);
                    black_box(to.decrypt(&m).expect("decrypt"));
                    if alternating {
                        alice_sends = !alice_sends;
                    }
                })
            });
        }
        g.finish();
    }

    pub fn main() {
        let mut c = config(Criterion::default()).configure_from_args();
        core(&mut c);
        peer(&mut c);
        c.final_summary();
    }
}

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    native::main();
}
