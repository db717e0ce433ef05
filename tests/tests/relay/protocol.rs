//! Every protocol operation, as a client sees it.

use std::time::Duration;

use northstar_core::UnixTime;
use northstar_core::directory::OrgSigningKey;
use northstar_core::frame::{
    self, ClientFrame, ErrorCode, ONE_TIME_PQ_PREKEY_LEN, OneTimePqPrekey, OneTimePrekey, Refused,
    ServerFrame,
};
use northstar_core::ids::EnvelopeId;
use northstar_core::keys::{Ed25519Public, X25519Public};
use northstar_core::pow;
use northstar_e2e::{Client, Mailbox, RelayProcess, forged_directory, seal, signed_directory};
use rand_core::OsRng;

use crate::now;

/// A one-time ML-KEM prekey as the relay sees it: opaque bytes.
fn pq_otk(id: u32) -> OneTimePqPrekey {
    let mut b = vec![id as u8; ONE_TIME_PQ_PREKEY_LEN];
    b[..4].copy_from_slice(&id.to_be_bytes());
    OneTimePqPrekey::from_bytes(&b).unwrap()
}

#[tokio::test]
async fn health_and_static_files_carry_strict_headers() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let (status, _, body) = relay.http_get("/health").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, head, body) = relay.http_get("/").await.unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("northstar test page"));
    for h in [
        "content-security-policy: default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "referrer-policy: no-referrer",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
    ] {
        assert!(head.contains(h), "missing header {h}");
    }
    let (status, head, _) = relay.http_get("/no-such-file").await.unwrap();
    assert_eq!(status, 404);
    assert!(head.contains("content-security-policy"));
}

#[tokio::test]
async fn deposit_deliver_ack_and_catch_up() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    assert_eq!(owner.register(&mb, false).await.unwrap(), ServerFrame::Ok);
    assert_eq!(
        owner.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 0 }
    );

    // Deposits travel over a connection not authenticated to anything.
    let mut depositor = relay.client().await.unwrap();
    let env = seal(mb.id(), b"hello counselor");
    let reply = depositor.deposit(vec![env.clone()], false).await.unwrap();
    assert!(matches!(reply, ServerFrame::Deposited { accepted: 1, .. }));

    let got = owner
        .next_push(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let ServerFrame::Deliver {
        id,
        expires_at,
        envelope,
    } = got
    else {
        panic!("expected a delivery, got {got:?}");
    };
    assert_eq!(envelope, env);
    assert_eq!(id, EnvelopeId::of(&env.encode()));
    assert_eq!(expires_at.0 % 3600, 0, "expiry on the hour");
    let t = now().0;
    assert!(expires_at.0 >= t + 720 * 3600 && expires_at.0 <= t + 721 * 3600);

    // A retried deposit (same bytes) is stored once.
    depositor.deposit(vec![env.clone()], false).await.unwrap();
    assert_eq!(
        owner
            .request(ClientFrame::Ack { ids: vec![id] })
            .await
            .unwrap(),
        ServerFrame::Acked { deleted: 1 }
    );
    assert_eq!(
        owner
            .request(ClientFrame::Ack { ids: vec![id] })
            .await
            .unwrap(),
        ServerFrame::Acked { deleted: 0 }
    );
    assert!(
        owner
            .next_push(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    owner.close().await;

    // Everything stored since the last visit, in order, on the next visit.
    let e1 = seal(mb.id(), b"one");
    let e2 = seal(mb.id(), b"two");
    depositor.deposit(vec![e1.clone()], false).await.unwrap();
    depositor.deposit(vec![e2.clone()], false).await.unwrap();
    let mut again = relay.client().await.unwrap();
    assert_eq!(again.auth(&mb).await.unwrap(), ServerFrame::Ok);
    assert_eq!(
        again.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 2 }
    );
    let d = again.deliveries(2).await.unwrap();
    assert_eq!((d[0].1.clone(), d[1].1.clone()), (e1, e2));
    // Not acknowledged: delivered again on the next connection.
    again.close().await;
    let mut third = relay.client().await.unwrap();
    third.auth(&mb).await.unwrap();
    third.request(ClientFrame::Subscribe).await.unwrap();
    let d2 = third.deliveries(2).await.unwrap();
    assert_eq!(d2, d);
    let ids = d2.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        third.request(ClientFrame::Ack { ids }).await.unwrap(),
        ServerFrame::Acked { deleted: 2 }
    );
}

#[tokio::test]
async fn one_proof_covers_a_fan_out_batch() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let devices: Vec<Mailbox> = (0..3).map(|_| Mailbox::random()).collect();
    let mut conns = Vec::new();
    for d in &devices {
        let mut c = relay.client().await.unwrap();
        assert_eq!(c.register(d, true).await.unwrap(), ServerFrame::Ok);
        c.request(ClientFrame::Subscribe).await.unwrap();
        conns.push(c);
    }
    let mut seeker = relay.client().await.unwrap();
    assert_eq!(seeker.pow_difficulty, 16, "default difficulty");
    let batch: Vec<_> = devices.iter().map(|d| seal(d.id(), b"fan-out")).collect();
    seeker
        .expect_error(
            ClientFrame::Deposit {
                pow_nonce: None,
                envelopes: batch.clone(),
            },
            ErrorCode::PowRequired,
        )
        .await
        .unwrap();
    let reply = seeker.deposit(batch.clone(), true).await.unwrap();
    assert!(matches!(reply, ServerFrame::Deposited { accepted: 3, .. }));
    for (c, e) in conns.iter_mut().zip(&batch) {
        let d = c.deliveries(1).await.unwrap();
        assert_eq!(&d[0].1, e);
    }
    // A batch with one unknown recipient is refused for it alone: the
    // rest is stored and delivered.
    let stranger = Mailbox::random();
    let mixed = vec![seal(devices[0].id(), b"x"), seal(stranger.id(), b"y")];
    assert_eq!(
        seeker.deposit(mixed.clone(), true).await.unwrap(),
        ServerFrame::Deposited {
            accepted: 1,
            next_pow_challenge: seeker.pow_challenge,
            refused: vec![Refused {
                index: 1,
                code: ErrorCode::UnknownMailbox
            }],
        }
    );
    assert_eq!(conns[0].deliveries(1).await.unwrap()[0].1, mixed[0]);
    // A batch for unknown recipients only stores nothing at all.
    seeker
        .expect_error(
            ClientFrame::Deposit {
                pow_nonce: Some(0),
                envelopes: vec![seal(stranger.id(), b"z")],
            },
            ErrorCode::UnknownMailbox,
        )
        .await
        .unwrap();
    assert!(
        conns[0]
            .next_push(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn pipelined_deposits_commit_together_but_a_proof_is_used_once() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let (open, intake) = (Mailbox::random(), Mailbox::random());
    let mut open_conn = relay.client().await.unwrap();
    assert_eq!(
        open_conn.register(&open, false).await.unwrap(),
        ServerFrame::Ok
    );
    open_conn.request(ClientFrame::Subscribe).await.unwrap();
    let mut intake_conn = relay.client().await.unwrap();
    assert_eq!(
        intake_conn.register(&intake, true).await.unwrap(),
        ServerFrame::Ok
    );
    intake_conn.request(ClientFrame::Subscribe).await.unwrap();

    // Four deposits sent back to back, without waiting for replies; the two
    // to the intake mailbox carry proofs solved against the SAME challenge.
    let mut sender = relay.client().await.unwrap();
    let challenge = sender.pow_challenge;
    let solved = |envelopes: Vec<_>| {
        let nonce = pow::solve(
            &challenge,
            &frame::deposit_batch_hash(&envelopes),
            sender.pow_difficulty,
        )
        .unwrap();
        ClientFrame::Deposit {
            pow_nonce: Some(nonce),
            envelopes,
        }
    };
    let plain = |envelopes| ClientFrame::Deposit {
        pow_nonce: None,
        envelopes,
    };
    let (a, b, c, d) = (
        seal(open.id(), b"a"),
        seal(intake.id(), b"b"),
        seal(intake.id(), b"c"),
        seal(open.id(), b"d"),
    );
    let frames = [
        plain(vec![a.clone()]),
        solved(vec![b.clone()]),
        solved(vec![c]),
        plain(vec![d.clone()]),
    ];
    for (i, f) in frames.iter().enumerate() {
        sender
            .send_raw(f.encode(1000 + i as u32).unwrap())
            .await
            .unwrap();
    }
    let mut replies = Vec::new();
    for i in 0..4 {
        replies.push(sender.reply_to(1000 + i).await.unwrap());
    }
    let rotated = match &replies[1] {
        ServerFrame::Deposited {
            accepted: 1,
            next_pow_challenge,
            refused,
        } if refused.is_empty() => *next_pow_challenge,
        other => panic!("expected the first proof accepted, got {other:?}"),
    };
    assert_ne!(
        rotated, challenge,
        "an accepted proof rotates the challenge"
    );
    assert!(matches!(
        replies[0],
        ServerFrame::Deposited { accepted: 1, .. }
    ));
    assert_eq!(
        replies[2],
        ServerFrame::Error {
            code: ErrorCode::PowInvalid
        },
        "a second proof against the used-up challenge is a replay"
    );
    assert!(matches!(
        replies[3],
        ServerFrame::Deposited { accepted: 1, .. }
    ));
    let got: Vec<_> = open_conn.deliveries(2).await.unwrap();
    assert_eq!((&got[0].1, &got[1].1), (&a, &d), "deposit order");
    assert_eq!(intake_conn.deliveries(1).await.unwrap()[0].1, b);
    assert!(
        intake_conn
            .next_push(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "the replayed proof stored nothing"
    );
}

#[tokio::test]
async fn directory_keeps_newest_and_refuses_rollback() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let org = OrgSigningKey::generate(&mut OsRng);
    let org_key = Ed25519Public(*org.public().as_bytes());
    let mut c = relay.client().await.unwrap();
    c.expect_error(ClientFrame::FetchDirectory { org_key }, ErrorCode::NotFound)
        .await
        .unwrap();
    let v2 = signed_directory(&org, 2, UnixTime(7200));
    assert_eq!(
        c.request(ClientFrame::PublishDirectory {
            directory: v2.clone()
        })
        .await
        .unwrap(),
        ServerFrame::Ok
    );
    // Publishing the same version again is harmless.
    assert_eq!(
        c.request(ClientFrame::PublishDirectory {
            directory: v2.clone()
        })
        .await
        .unwrap(),
        ServerFrame::Ok
    );
    assert_eq!(
        c.request(ClientFrame::FetchDirectory { org_key })
            .await
            .unwrap(),
        ServerFrame::Directory {
            directory: v2.clone()
        }
    );
    for (directory, code) in [
        // Older serial.
        (
            signed_directory(&org, 1, UnixTime(7200)),
            ErrorCode::DirectoryRollback,
        ),
        // Different contents under the stored serial.
        (
            signed_directory(&org, 2, UnixTime(3 * 3600)),
            ErrorCode::DirectoryRollback,
        ),
        // Names the organisation, signed by someone else.
        (
            forged_directory(&org, &OrgSigningKey::generate(&mut OsRng), 9),
            ErrorCode::DirectoryInvalid,
        ),
        // Not a directory at all.
        (vec![1, 2, 3], ErrorCode::DirectoryInvalid),
    ] {
        c.expect_error(ClientFrame::PublishDirectory { directory }, code)
            .await
            .unwrap();
    }
    let mut tampered = signed_directory(&org, 9, UnixTime(7200));
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    c.expect_error(
        ClientFrame::PublishDirectory {
            directory: tampered,
        },
        ErrorCode::DirectoryInvalid,
    )
    .await
    .unwrap();
    let v3 = signed_directory(&org, 3, UnixTime(7200));
    c.request(ClientFrame::PublishDirectory {
        directory: v3.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        c.request(ClientFrame::FetchDirectory { org_key })
            .await
            .unwrap(),
        ServerFrame::Directory { directory: v3 }
    );
}

#[tokio::test]
async fn one_time_prekeys_are_handed_out_once() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let counselor = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    let otk = |id: u32| OneTimePrekey {
        id,
        public: X25519Public([id as u8; 32]),
    };
    c.expect_error(
        ClientFrame::UploadPrekeys {
            signed_bundle: vec![1; 100],
            one_time: vec![otk(1)],
            one_time_pq: vec![pq_otk(1)],
            replace: false,
        },
        ErrorCode::NotAuthenticated,
    )
    .await
    .unwrap();
    c.register(&counselor, true).await.unwrap();
    assert_eq!(
        c.request(ClientFrame::UploadPrekeys {
            signed_bundle: vec![7; 1500],
            one_time: vec![otk(3), otk(1), otk(2)],
            one_time_pq: vec![pq_otk(5), pq_otk(4)],
            replace: false,
        })
        .await
        .unwrap(),
        ServerFrame::PrekeysStored {
            one_time_count: 3,
            one_time_pq_count: 2
        }
    );
    let mut seeker = relay.client().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        match seeker
            .request(ClientFrame::FetchPrekeys {
                mailbox: counselor.id(),
            })
            .await
            .unwrap()
        {
            ServerFrame::Prekeys {
                signed_bundle,
                one_time,
                one_time_pq,
            } => {
                assert_eq!(signed_bundle, vec![7; 1500]);
                seen.push((one_time, one_time_pq));
            }
            other => panic!("{other:?}"),
        }
    }
    // One of each kind, lowest id first, each once; the bundle alone after.
    assert_eq!(
        seen,
        vec![
            (Some(otk(1)), Some(pq_otk(4))),
            (Some(otk(2)), Some(pq_otk(5))),
            (Some(otk(3)), None),
            (None, None)
        ]
    );
    seeker
        .expect_error(
            ClientFrame::FetchPrekeys {
                mailbox: Mailbox::random().id(),
            },
            ErrorCode::NotFound,
        )
        .await
        .unwrap();
}

/// A device deletes one-time prekey secrets past their maximum age, and
/// cannot know which the relay still holds: it uploads a fresh set in place
/// of everything the relay held, of both kinds, so the relay never hands out
/// a key whose secret is gone (an opening nobody could read).
#[tokio::test]
async fn a_replacing_upload_leaves_only_the_new_one_time_prekeys() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let counselor = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    c.register(&counselor, true).await.unwrap();
    let otk = |id: u32| OneTimePrekey {
        id,
        public: X25519Public([id as u8; 32]),
    };
    let upload = |bundle: u8, ids: std::ops::Range<u32>, replace| ClientFrame::UploadPrekeys {
        signed_bundle: vec![bundle; 1417],
        one_time: ids.clone().map(otk).collect(),
        one_time_pq: ids.map(pq_otk).collect(),
        replace,
    };
    c.request(upload(1, 1..6, false)).await.unwrap();
    c.request(upload(1, 6..9, false)).await.unwrap();
    assert_eq!(
        c.request(upload(2, 100..103, true)).await.unwrap(),
        ServerFrame::PrekeysStored {
            one_time_count: 3,
            one_time_pq_count: 3
        }
    );
    let mut seeker = relay.client().await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        match seeker
            .request(ClientFrame::FetchPrekeys {
                mailbox: counselor.id(),
            })
            .await
            .unwrap()
        {
            ServerFrame::Prekeys {
                signed_bundle,
                one_time,
                one_time_pq,
            } => {
                assert_eq!(signed_bundle, vec![2; 1417], "the new bundle");
                seen.push((one_time.map(|k| k.id), one_time_pq.map(|k| k.id)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![
            (Some(100), Some(100)),
            (Some(101), Some(101)),
            (Some(102), Some(102)),
            (None, None)
        ]
    );
}

#[tokio::test]
async fn seeker_state_and_delete_everything_now() {
    let relay = RelayProcess::start(&["--state-max-hours", "100"])
        .await
        .unwrap();
    let seeker = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    c.expect_error(ClientFrame::GetState, ErrorCode::NotAuthenticated)
        .await
        .unwrap();
    c.register(&seeker, false).await.unwrap();
    c.expect_error(ClientFrame::GetState, ErrorCode::NotFound)
        .await
        .unwrap();
    let t = now().0;
    let ServerFrame::StateStored { expires_at } = c
        .request(ClientFrame::PutState {
            ttl_hours: 48,
            blob: vec![3; 500],
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(expires_at.0 % 3600, 0);
    assert!(expires_at.0 >= t + 48 * 3600 && expires_at.0 <= t + 49 * 3600);
    assert_eq!(
        c.request(ClientFrame::GetState).await.unwrap(),
        ServerFrame::State {
            expires_at,
            blob: vec![3; 500]
        }
    );
    // A longer lifetime than the relay allows is capped.
    let ServerFrame::StateStored { expires_at } = c
        .request(ClientFrame::PutState {
            ttl_hours: u32::MAX,
            blob: vec![4; 10],
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(expires_at.0 <= now().0 + 101 * 3600);
    assert_eq!(
        c.request(ClientFrame::DeleteState).await.unwrap(),
        ServerFrame::Ok
    );
    c.expect_error(ClientFrame::GetState, ErrorCode::NotFound)
        .await
        .unwrap();

    // Delete everything now: state, envelopes, the mailbox itself.
    c.request(ClientFrame::PutState {
        ttl_hours: 1,
        blob: vec![5; 10],
    })
    .await
    .unwrap();
    let mut d = relay.client().await.unwrap();
    d.deposit(vec![seal(seeker.id(), b"reply")], false)
        .await
        .unwrap();
    assert_eq!(
        c.request(ClientFrame::DeleteMailbox).await.unwrap(),
        ServerFrame::Ok
    );
    c.expect_error(ClientFrame::GetState, ErrorCode::NotAuthenticated)
        .await
        .unwrap();
    assert_eq!(
        c.auth(&seeker).await.unwrap(),
        ServerFrame::Error {
            code: ErrorCode::UnknownMailbox
        }
    );
    d.expect_error(
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: vec![seal(seeker.id(), b"late")],
        },
        ErrorCode::UnknownMailbox,
    )
    .await
    .unwrap();
    // Registering again starts from nothing.
    c.register(&seeker, false).await.unwrap();
    assert_eq!(
        c.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 0 }
    );
    c.expect_error(ClientFrame::GetState, ErrorCode::NotFound)
        .await
        .unwrap();
}

/// Deposits 300 envelopes (5 batches of 60) for `mb`.
async fn deposit_300(d: &mut Client, mb: &Mailbox) {
    for b in 0..5u32 {
        let batch = (0..60u32)
            .map(|i| seal(mb.id(), &(b * 100 + i).to_be_bytes()))
            .collect();
        d.deposit(batch, false).await.unwrap();
    }
}

/// Nothing more is pushed for a while.
async fn assert_no_push(owner: &mut Client) {
    assert!(
        owner
            .next_push(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
}

/// With 300 stored or on their way: the window's 256 come, nothing more
/// until they are acknowledged, then the other 44, each once. Returns
/// every id delivered.
async fn window_then_rest(owner: &mut Client) -> std::collections::HashSet<EnvelopeId> {
    let first = owner.deliveries(256).await.unwrap();
    assert_no_push(owner).await;
    let ids: Vec<_> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        owner.request(ClientFrame::Ack { ids }).await.unwrap(),
        ServerFrame::Acked { deleted: 256 }
    );
    let rest = owner.deliveries(44).await.unwrap();
    let mut seen: std::collections::HashSet<_> = first.iter().map(|(id, _)| *id).collect();
    assert!(rest.iter().all(|(id, _)| seen.insert(*id)));
    assert_no_push(owner).await;
    seen
}

#[tokio::test]
async fn delivery_window_refills_as_envelopes_are_acknowledged() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    let mut d = relay.client().await.unwrap();
    deposit_300(&mut d, &mb).await;
    assert_eq!(
        owner.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 256 }
    );
    assert_eq!(window_then_rest(&mut owner).await.len(), 300);
}

#[tokio::test]
async fn live_deliveries_fall_back_to_the_store_when_the_window_fills() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    // Subscribed with nothing stored: what follows comes from the live feed,
    // never more than the window unacknowledged; acknowledging reads the 44
    // the window held back from the store.
    assert_eq!(
        owner.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 0 }
    );
    let mut d = relay.client().await.unwrap();
    deposit_300(&mut d, &mb).await;
    let mut seen = window_then_rest(&mut owner).await;
    // Caught up again: a new deposit is pushed live, once.
    d.deposit(vec![seal(mb.id(), b"after")], false)
        .await
        .unwrap();
    let last = owner.deliveries(1).await.unwrap();
    assert!(seen.insert(last[0].0));
    assert_no_push(&mut owner).await;
    assert_eq!(seen.len(), 301);
}
