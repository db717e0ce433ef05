//! Every limit gets a clear error frame and leaves the relay healthy.

use std::time::Duration;

use northstar_core::frame::{
    self, ClientFrame, ErrorCode, ONE_TIME_PQ_PREKEY_LEN, OneTimePqPrekey, OneTimePrekey, Refused,
    ServerFrame,
};
use northstar_core::ids::MailboxId;
use northstar_core::keys::X25519Public;
use northstar_core::pow;
use northstar_core::sealed::Envelope;
use northstar_e2e::{Mailbox, RelayProcess, seal};

fn otk(id: u32) -> OneTimePrekey {
    OneTimePrekey {
        id,
        public: X25519Public([id as u8; 32]),
    }
}

/// A one-time ML-KEM prekey as the relay sees it: opaque bytes.
fn pq_otk(id: u32) -> OneTimePqPrekey {
    let mut b = vec![id as u8; ONE_TIME_PQ_PREKEY_LEN];
    b[..4].copy_from_slice(&id.to_be_bytes());
    OneTimePqPrekey::from_bytes(&b).unwrap()
}

#[tokio::test]
async fn proof_of_work_is_required_checked_and_not_replayable() {
    let relay = RelayProcess::start(&["--pow-difficulty", "12"])
        .await
        .unwrap();
    let intake = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&intake, true).await.unwrap();
    let mut seeker = relay.client().await.unwrap();
    assert_eq!(seeker.pow_difficulty, 12);
    let batch = vec![seal(intake.id(), b"hi")];
    let hash = frame::deposit_batch_hash(&batch);
    // A nonce that does not meet the difficulty.
    let bad = (0u64..)
        .find(|n| pow::verify(&seeker.pow_challenge, &hash, 12, *n).is_err())
        .unwrap();
    seeker
        .expect_error(
            ClientFrame::Deposit {
                pow_nonce: Some(bad),
                envelopes: batch.clone(),
            },
            ErrorCode::PowInvalid,
        )
        .await
        .unwrap();
    // A proof for another batch does not cover this one.
    let other = vec![seal(intake.id(), b"other")];
    let n_other = pow::solve(
        &seeker.pow_challenge,
        &frame::deposit_batch_hash(&other),
        12,
    )
    .unwrap();
    if pow::verify(&seeker.pow_challenge, &hash, 12, n_other).is_err() {
        seeker
            .expect_error(
                ClientFrame::Deposit {
                    pow_nonce: Some(n_other),
                    envelopes: batch.clone(),
                },
                ErrorCode::PowInvalid,
            )
            .await
            .unwrap();
    }
    // The right proof works once; replaying the frame fails (challenge rotated).
    let old = seeker.pow_challenge;
    let nonce = pow::solve(&old, &hash, 12).unwrap();
    let deposit = ClientFrame::Deposit {
        pow_nonce: Some(nonce),
        envelopes: batch.clone(),
    };
    assert!(matches!(
        seeker.request(deposit.clone()).await.unwrap(),
        ServerFrame::Deposited { accepted: 1, next_pow_challenge, .. } if next_pow_challenge != old
    ));
    if pow::verify(&[0; 32], &hash, 12, nonce).is_err() {
        seeker
            .expect_error(deposit.clone(), ErrorCode::PowInvalid)
            .await
            .unwrap();
    }
    // A proof made for one connection is useless on another.
    let mut other_conn = relay.client().await.unwrap();
    if pow::verify(&other_conn.pow_challenge, &hash, 12, nonce).is_err() {
        other_conn
            .expect_error(deposit, ErrorCode::PowInvalid)
            .await
            .unwrap();
    }
    // Mailboxes without the flag need no proof.
    let plain = Mailbox::random();
    owner.register(&plain, false).await.unwrap();
    assert!(matches!(
        seeker
            .deposit(vec![seal(plain.id(), b"x")], false)
            .await
            .unwrap(),
        ServerFrame::Deposited { .. }
    ));
}

#[tokio::test]
async fn rate_limit_answers_then_closes_abusers() {
    let relay = RelayProcess::start(&[
        "--messages-per-second",
        "2",
        "--message-burst",
        "5",
        "--rate-limit-strikes",
        "20",
    ])
    .await
    .unwrap();
    let mut c = relay.client().await.unwrap();
    let mut limited = Vec::new();
    for id in 1..=8u32 {
        c.send_raw(ClientFrame::Challenge.encode(id).unwrap())
            .await
            .unwrap();
    }
    for _ in 1..=8u32 {
        let (rid, f) = c.recv_frame().await.unwrap();
        if f == (ServerFrame::Error {
            code: ErrorCode::RateLimited,
        }) {
            limited.push(rid);
        }
    }
    assert!(
        limited.len() >= 2,
        "some frames were rate limited: {limited:?}"
    );
    assert!(limited.iter().all(|id| (6..=8).contains(id)), "{limited:?}");
    // After a pause the connection works again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.challenge().await.unwrap();

    // A flood past the strike limit closes the connection...
    let mut flood = relay.client().await.unwrap();
    for id in 1..=60u32 {
        if flood
            .send_raw(ClientFrame::Challenge.encode(id).unwrap())
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(flood.is_closed_within(Duration::from_secs(5)).await);
    // ...and everyone else is fine.
    c.challenge().await.unwrap();
}

#[tokio::test]
async fn connection_cap_answers_503() {
    let relay = RelayProcess::start(&["--max-connections", "2"])
        .await
        .unwrap();
    let a = relay.client().await.unwrap();
    let _b = relay.client().await.unwrap();
    let err = tokio_tungstenite::connect_async(relay.url())
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    a.close().await;
    // The slot frees once the connection ends.
    let mut ok = false;
    for _ in 0..50 {
        if relay.client().await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok);
    let (status, _, _) = relay.http_get("/health").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oversize_frames_get_an_error_then_a_close() {
    let relay = RelayProcess::start(&["--max-frame-bytes", "65536"])
        .await
        .unwrap();
    let mut c = relay.client().await.unwrap();
    assert_eq!(c.max_frame_len, 65536);
    let mut big = vec![2, 0, 0, 0, 42, 0x07];
    big.resize(70_000, 0);
    c.send_raw(big).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            42,
            ServerFrame::Error {
                code: ErrorCode::FrameTooLarge
            }
        )
    );
    c.challenge().await.unwrap();
    // Beyond twice the limit the socket refuses and closes.
    let mut huge = vec![2, 0, 0, 0, 43, 0x07];
    huge.resize(200_000, 0);
    let _ = c.send_raw(huge).await;
    assert!(c.is_closed_within(Duration::from_secs(5)).await);
    let mut other = relay.client().await.unwrap();
    other.challenge().await.unwrap();
}

#[tokio::test]
async fn mailbox_quotas_count_and_bytes() {
    let relay = RelayProcess::start(&[
        "--mailbox-max-envelopes",
        "3",
        "--mailbox-max-bytes",
        "20000",
    ])
    .await
    .unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    let mut d = relay.client().await.unwrap();
    for i in 0..3u8 {
        d.deposit(vec![seal(mb.id(), &[i; 10])], false)
            .await
            .unwrap();
    }
    d.expect_error(
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: vec![seal(mb.id(), b"four")],
        },
        ErrorCode::QuotaExceeded,
    )
    .await
    .unwrap();
    // Acknowledging makes room.
    owner.request(ClientFrame::Subscribe).await.unwrap();
    let got = owner.deliveries(3).await.unwrap();
    owner
        .request(ClientFrame::Ack {
            ids: vec![got[0].0],
        })
        .await
        .unwrap();
    assert!(matches!(
        d.deposit(vec![seal(mb.id(), b"four")], false)
            .await
            .unwrap(),
        ServerFrame::Deposited { .. }
    ));

    let big = Mailbox::random();
    owner.register(&big, false).await.unwrap();
    d.deposit(vec![seal(big.id(), &[1; 12_000])], false)
        .await
        .unwrap();
    d.expect_error(
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: vec![seal(big.id(), &[2; 12_000])],
        },
        ErrorCode::QuotaExceeded,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn batch_state_and_prekey_caps() {
    let relay = RelayProcess::start(&[
        "--max-batch",
        "4",
        "--max-state-bytes",
        "1000",
        "--max-one-time-prekeys",
        "5",
        "--max-one-time-pq-prekeys",
        "2",
    ])
    .await
    .unwrap();
    let mb = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    c.register(&mb, false).await.unwrap();
    assert_eq!(c.max_batch, 4);
    let five: Vec<_> = (0..5).map(|_| seal(mb.id(), b"x")).collect();
    c.expect_error(
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: five,
        },
        ErrorCode::BatchTooLarge,
    )
    .await
    .unwrap();
    // Beyond the protocol maximum of 64, the frame itself is refused.
    let mut raw = vec![2, 0, 0, 0, 99, 0x01, 0, 0, 65];
    for _ in 0..65 {
        raw.extend_from_slice(&seal(mb.id(), b"x").encode());
    }
    c.send_raw(raw).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            99,
            ServerFrame::Error {
                code: ErrorCode::BatchTooLarge
            }
        )
    );
    c.expect_error(
        ClientFrame::PutState {
            ttl_hours: 1,
            blob: vec![0; 1001],
        },
        ErrorCode::StateTooLarge,
    )
    .await
    .unwrap();
    assert!(matches!(
        c.request(ClientFrame::PutState {
            ttl_hours: 1,
            blob: vec![0; 1000],
        })
        .await
        .unwrap(),
        ServerFrame::StateStored { .. }
    ));
    let upload =
        |one_time: Vec<u32>, one_time_pq: Vec<u32>, replace: bool| ClientFrame::UploadPrekeys {
            signed_bundle: vec![1; 10],
            one_time: one_time.into_iter().map(otk).collect(),
            one_time_pq: one_time_pq.into_iter().map(pq_otk).collect(),
            replace,
        };
    c.expect_error(
        upload((0..6).collect(), vec![], false),
        ErrorCode::QuotaExceeded,
    )
    .await
    .unwrap();
    assert_eq!(
        c.request(upload((0..5).collect(), vec![], false))
            .await
            .unwrap(),
        ServerFrame::PrekeysStored {
            one_time_count: 5,
            one_time_pq_count: 0
        }
    );
    c.expect_error(upload(vec![9], vec![], false), ErrorCode::QuotaExceeded)
        .await
        .unwrap();
    // One-time ML-KEM prekeys have their own cap (here 2).
    c.expect_error(
        upload(vec![], vec![1, 2, 3], false),
        ErrorCode::QuotaExceeded,
    )
    .await
    .unwrap();
    assert_eq!(
        c.request(upload(vec![], vec![1, 2], false)).await.unwrap(),
        ServerFrame::PrekeysStored {
            one_time_count: 5,
            one_time_pq_count: 2
        }
    );
    c.expect_error(upload(vec![], vec![3], false), ErrorCode::QuotaExceeded)
        .await
        .unwrap();
    // A replacing upload counts against the caps after dropping what was held.
    assert_eq!(
        c.request(upload(vec![10, 11, 12, 13, 14], vec![4, 5], true))
            .await
            .unwrap(),
        ServerFrame::PrekeysStored {
            one_time_count: 5,
            one_time_pq_count: 2
        }
    );
}

/// The attack: whoever can reach the relay drains a counselor device's
/// one-time prekeys (each fetch hands one of each kind out, for ever lost
/// to real seekers). A fetch costs a token of a per-connection bucket of its
/// own: past the burst, fetches are refused (`rate_limited`, nothing handed
/// out) while everything else on the connection goes on; a client that
/// keeps fetching is closed like any other rate-limit abuser.
#[tokio::test]
async fn prekey_fetches_are_rate_limited_per_connection() {
    let relay = RelayProcess::start(&[
        "--prekey-fetch-burst",
        "3",
        "--prekey-fetches-per-minute",
        "1",
        "--rate-limit-strikes",
        "4",
    ])
    .await
    .unwrap();
    let counselor = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&counselor, true).await.unwrap();
    let upload = |replace| ClientFrame::UploadPrekeys {
        signed_bundle: vec![7; 100],
        one_time: (1..=10).map(otk).collect(),
        one_time_pq: (1..=10).map(pq_otk).collect(),
        replace,
    };
    owner.request(upload(true)).await.unwrap();
    let fetch = ClientFrame::FetchPrekeys {
        mailbox: counselor.id(),
    };
    let mut drainer = relay.client().await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            drainer.request(fetch.clone()).await.unwrap(),
            ServerFrame::Prekeys {
                one_time: Some(_),
                one_time_pq: Some(_),
                ..
            }
        ));
    }
    drainer
        .expect_error(fetch.clone(), ErrorCode::RateLimited)
        .await
        .unwrap();
    // The refused fetch handed nothing out.
    let held = owner
        .request(ClientFrame::UploadPrekeys {
            signed_bundle: vec![7; 100],
            one_time: vec![],
            one_time_pq: vec![],
            replace: false,
        })
        .await
        .unwrap();
    assert_eq!(
        held,
        ServerFrame::PrekeysStored {
            one_time_count: 7,
            one_time_pq_count: 7
        }
    );
    // Other requests on the connection are not affected (and end the run
    // of rate-limited frames).
    drainer.challenge().await.unwrap();
    // The limit is per connection: a seeker's own connection fetches.
    let mut seeker = relay.client().await.unwrap();
    assert!(matches!(
        seeker.request(fetch.clone()).await.unwrap(),
        ServerFrame::Prekeys {
            one_time: Some(_),
            ..
        }
    ));
    // Fetching on past the limit: `rate_limit_strikes` refusals in a row
    // close the connection.
    for _ in 0..3 {
        drainer
            .expect_error(fetch.clone(), ErrorCode::RateLimited)
            .await
            .unwrap();
    }
    let _ = drainer.request(fetch.clone()).await;
    assert!(drainer.is_closed_within(Duration::from_secs(5)).await);
    seeker.challenge().await.unwrap();
}

#[tokio::test]
async fn settings_come_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        "pow_difficulty = 9\nmax_batch = 7\nmax_frame_bytes = 100000\nlog_json = true\n",
    )
    .unwrap();
    let relay = RelayProcess::start_with_env(
        &["--config", file.to_str().unwrap(), "--max-batch", "5"],
        &[("NORTHSTAR_POW_DIFFICULTY", "11")],
    )
    .await
    .unwrap();
    let c = relay.client().await.unwrap();
    // flag > environment > file > default
    assert_eq!(c.max_batch, 5);
    assert_eq!(c.pow_difficulty, 11);
    assert_eq!(c.max_frame_len, 100_000);
    c.close().await;
    let logs = relay.logs();
    assert!(
        logs.lines().any(|l| l.starts_with('{')),
        "JSON logs requested by the file"
    );
    // A bad setting stops the relay before it listens.
    std::fs::write(&file, "pow_difficulty = 99\n").unwrap();
    assert!(
        RelayProcess::start(&["--config", file.to_str().unwrap()])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn one_full_counselor_mailbox_does_not_block_a_seeker_from_the_rest_of_the_team() {
    let relay = RelayProcess::start(&["--mailbox-max-envelopes", "3", "--pow-difficulty", "8"])
        .await
        .unwrap();
    // The intake set: four counselor devices (proof of work required).
    let devices: Vec<Mailbox> = (0..4).map(|_| Mailbox::random()).collect();
    let mut conns = Vec::new();
    for d in &devices {
        let mut c = relay.client().await.unwrap();
        assert_eq!(c.register(d, true).await.unwrap(), ServerFrame::Ok);
        conns.push(c);
    }
    // One device is offline and someone fills its mailbox to the quota.
    let full = 2;
    let mut flooder = relay.client().await.unwrap();
    for i in 0..3u8 {
        let r = flooder
            .deposit(vec![seal(devices[full].id(), &[i; 20])], true)
            .await
            .unwrap();
        assert!(
            matches!(r, ServerFrame::Deposited { accepted: 1, .. }),
            "{r:?}"
        );
    }
    assert_eq!(
        flooder
            .deposit(vec![seal(devices[full].id(), b"more")], true)
            .await
            .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::QuotaExceeded
        },
        "a batch refused whole is an error and stores nothing"
    );
    // A seeker's fan-out: one batch to the whole set, in canonical order.
    let mut seeker = relay.client().await.unwrap();
    let mut batch: Vec<Envelope> = devices
        .iter()
        .map(|d| seal(d.id(), b"is Canada an option for me?"))
        .collect();
    batch.sort_by(|a, b| a.recipient().cmp(b.recipient()));
    let at = batch
        .iter()
        .position(|e| *e.recipient() == devices[full].id())
        .unwrap();
    let challenge = seeker.pow_challenge;
    let reply = seeker.deposit(batch.clone(), true).await.unwrap();
    assert_eq!(
        reply,
        ServerFrame::Deposited {
            accepted: 3,
            next_pow_challenge: seeker.pow_challenge,
            refused: vec![Refused {
                index: at as u16,
                code: ErrorCode::QuotaExceeded
            }],
        }
    );
    assert_ne!(seeker.pow_challenge, challenge, "the proof was used");
    // The rest of the team has it; the full mailbox holds only the flood.
    for (i, c) in conns.iter_mut().enumerate() {
        c.request(ClientFrame::Subscribe).await.unwrap();
        if i == full {
            let got = c.deliveries(3).await.unwrap();
            assert!(got.iter().all(|(_, e)| !batch.contains(e)));
            assert!(
                c.next_push(Duration::from_millis(300))
                    .await
                    .unwrap()
                    .is_none()
            );
            let ids = got.iter().map(|(id, _)| *id).collect();
            c.request(ClientFrame::Ack { ids }).await.unwrap();
        } else {
            let got = c.deliveries(1).await.unwrap();
            assert_eq!(*got[0].1.recipient(), devices[i].id());
            assert!(batch.contains(&got[0].1));
        }
    }
    // Once its owner has read it, the next message reaches it too.
    let next: Vec<Envelope> = batch
        .iter()
        .map(|e| seal(*e.recipient(), b"and for my brother?"))
        .collect();
    assert!(matches!(
        seeker.deposit(next.clone(), true).await.unwrap(),
        ServerFrame::Deposited { accepted: 4, ref refused, .. } if refused.is_empty()
    ));
    assert_eq!(conns[full].deliveries(1).await.unwrap()[0].1, next[at]);
}

/// The attack (or accident): one counselor device of the intake set is
/// deleted (`DeleteMailbox`, or a directory entry whose mailbox was never
/// registered). A seeker's fan-out names it; before, that one unknown
/// mailbox failed the whole batch and the seeker reached nobody. Now only
/// its envelope is refused (`unknown_mailbox`, by position); nothing is
/// stored for it and its mailbox is not brought back.
#[tokio::test]
async fn a_deleted_counselor_mailbox_does_not_keep_a_seeker_from_the_rest_of_the_team() {
    let relay = RelayProcess::start(&["--mailbox-max-envelopes", "3", "--pow-difficulty", "8"])
        .await
        .unwrap();
    let devices: Vec<Mailbox> = (0..4).map(|_| Mailbox::random()).collect();
    let mut conns = Vec::new();
    for d in &devices {
        let mut c = relay.client().await.unwrap();
        assert_eq!(c.register(d, true).await.unwrap(), ServerFrame::Ok);
        conns.push(c);
    }
    // Device 1 is deleted; device 3's mailbox was never registered.
    let (deleted, never) = (1, Mailbox::random());
    assert_eq!(
        conns[deleted]
            .request(ClientFrame::DeleteMailbox)
            .await
            .unwrap(),
        ServerFrame::Ok
    );
    let mut seeker = relay.client().await.unwrap();
    let mut batch: Vec<Envelope> = devices
        .iter()
        .chain([&never])
        .map(|d| seal(d.id(), b"I am 17 and alone in the U.S."))
        .collect();
    batch.sort_by(|a, b| a.recipient().cmp(b.recipient()));
    let pos = |id: MailboxId| batch.iter().position(|e| *e.recipient() == id).unwrap() as u16;
    let mut unknown = [pos(devices[deleted].id()), pos(never.id())];
    unknown.sort_unstable();
    let challenge = seeker.pow_challenge;
    assert_eq!(
        seeker.deposit(batch.clone(), true).await.unwrap(),
        ServerFrame::Deposited {
            accepted: 3,
            next_pow_challenge: seeker.pow_challenge,
            refused: unknown
                .iter()
                .map(|&index| Refused {
                    index,
                    code: ErrorCode::UnknownMailbox
                })
                .collect(),
        }
    );
    assert_ne!(seeker.pow_challenge, challenge, "the proof was used");
    // The rest of the team has it.
    for (i, c) in conns.iter_mut().enumerate().filter(|(i, _)| *i != deleted) {
        c.request(ClientFrame::Subscribe).await.unwrap();
        let got = c.deliveries(1).await.unwrap();
        assert_eq!(*got[0].1.recipient(), devices[i].id());
    }
    // Nothing came back for the unknown mailboxes: they are still unknown,
    // and a batch for them alone is refused whole, changing nothing (the
    // challenge neither).
    for m in [&devices[deleted], &never] {
        let mut c = relay.client().await.unwrap();
        assert_eq!(
            c.auth(m).await.unwrap(),
            ServerFrame::Error {
                code: ErrorCode::UnknownMailbox
            }
        );
    }
    let challenge = seeker.pow_challenge;
    assert_eq!(
        seeker
            .deposit(
                vec![
                    seal(devices[deleted].id(), b"again"),
                    seal(never.id(), b"again")
                ],
                true
            )
            .await
            .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::UnknownMailbox
        }
    );
    assert_eq!(seeker.pow_challenge, challenge);
    // Unknown and full together: refused whole, as over quota.
    let full = 0;
    for i in 0..2u8 {
        seeker
            .deposit(vec![seal(devices[full].id(), &[i; 20])], true)
            .await
            .unwrap();
    }
    assert_eq!(
        seeker
            .deposit(
                vec![seal(devices[full].id(), b"over"), seal(never.id(), b"x")],
                true
            )
            .await
            .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::QuotaExceeded
        }
    );
}

#[tokio::test]
async fn a_batch_of_n_envelopes_with_the_single_envelope_difficulty_is_refused() {
    let relay = RelayProcess::start(&["--pow-difficulty", "8"])
        .await
        .unwrap();
    let devices: Vec<Mailbox> = (0..4).map(|_| Mailbox::random()).collect();
    let mut owner = relay.client().await.unwrap();
    for d in &devices {
        owner.register(d, true).await.unwrap();
    }
    let mut seeker = relay.client().await.unwrap();
    let batch: Vec<_> = devices.iter().map(|d| seal(d.id(), b"fan-out")).collect();
    let hash = frame::deposit_batch_hash(&batch);
    // 4 envelopes: 8 + ceil(log2 4) = 10 bits. A nonce that meets the
    // single-envelope 8 bits but not 10 pays for one envelope, not four.
    let need = pow::batch_difficulty(8, batch.len());
    assert_eq!(need, 10);
    let cheap = (0u64..)
        .find(|n| {
            pow::verify(&seeker.pow_challenge, &hash, 8, *n).is_ok()
                && pow::verify(&seeker.pow_challenge, &hash, need, *n).is_err()
        })
        .unwrap();
    seeker
        .expect_error(
            ClientFrame::Deposit {
                pow_nonce: Some(cheap),
                envelopes: batch.clone(),
            },
            ErrorCode::PowInvalid,
        )
        .await
        .unwrap();
    // Nothing was stored and the challenge did not move: the right proof
    // for the same batch is accepted.
    let nonce = pow::solve(&seeker.pow_challenge, &hash, need).unwrap();
    assert!(matches!(
        seeker
            .request(ClientFrame::Deposit {
                pow_nonce: Some(nonce),
                envelopes: batch,
            })
            .await
            .unwrap(),
        ServerFrame::Deposited { accepted: 4, ref refused, .. } if refused.is_empty()
    ));
    // A single envelope still needs only the announced difficulty.
    let one = vec![seal(devices[0].id(), b"one")];
    let mut fresh = relay.client().await.unwrap();
    let hash = frame::deposit_batch_hash(&one);
    let nonce = (0u64..)
        .find(|n| {
            pow::verify(&fresh.pow_challenge, &hash, 8, *n).is_ok()
                && pow::verify(&fresh.pow_challenge, &hash, 9, *n).is_err()
        })
        .unwrap();
    assert!(matches!(
        fresh
            .request(ClientFrame::Deposit {
                pow_nonce: Some(nonce),
                envelopes: one,
            })
            .await
            .unwrap(),
        ServerFrame::Deposited { accepted: 1, .. }
    ));
}
