//! Malformed and hostile input: every bad frame gets a typed error, nothing
//! changes, the connection (and everyone else's) lives on.

use std::time::Duration;

use northstar_core::frame::{self, ClientFrame, ErrorCode, ServerFrame};
use northstar_e2e::{Mailbox, RelayProcess, seal};
use rand_core::{OsRng, RngCore};

#[tokio::test]
async fn random_bytes_get_one_answer_each_and_change_nothing() {
    let relay = RelayProcess::start(&[
        "--messages-per-second",
        "100000",
        "--message-burst",
        "100000",
    ])
    .await
    .unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    owner.request(ClientFrame::Subscribe).await.unwrap();

    let mut c = relay.client().await.unwrap();
    for i in 0..400u32 {
        let len = (OsRng.next_u32() % 300) as usize;
        let mut b = vec![0u8; len];
        OsRng.fill_bytes(&mut b);
        if i % 2 == 0 && len >= 6 {
            // A valid header over a random body reaches the body decoders.
            b[0] = frame::FRAME_VERSION;
            b[5] = (i % 16) as u8;
        }
        c.send_raw(b).await.unwrap();
        let (_, f) = c.recv_frame().await.unwrap();
        assert!(
            !matches!(
                f,
                ServerFrame::Deposited { .. } | ServerFrame::Deliver { .. }
            ),
            "random bytes were accepted as {f:?}"
        );
    }
    c.send_raw(Vec::new()).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            0,
            ServerFrame::Error {
                code: ErrorCode::Malformed
            }
        )
    );
    // Still alive, and nothing reached the mailbox.
    c.challenge().await.unwrap();
    assert!(
        owner
            .next_push(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn bad_versions_tags_trailing_bytes_and_text_frames() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let mut c = relay.client().await.unwrap();
    let mut v3 = ClientFrame::Challenge.encode(77).unwrap();
    v3[0] = 3;
    c.send_raw(v3).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            77,
            ServerFrame::Error {
                code: ErrorCode::UnsupportedVersion
            }
        )
    );
    c.send_raw(vec![2, 0, 0, 0, 78, 0x6E]).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            78,
            ServerFrame::Error {
                code: ErrorCode::Malformed
            }
        )
    );
    let mut trailing = ClientFrame::Challenge.encode(79).unwrap();
    trailing.push(0);
    c.send_raw(trailing).await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            79,
            ServerFrame::Error {
                code: ErrorCode::Malformed
            }
        )
    );
    // A frame shaped like a server frame is not a request.
    c.send_raw(ServerFrame::Ok.encode(80).unwrap())
        .await
        .unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            80,
            ServerFrame::Error {
                code: ErrorCode::Malformed
            }
        )
    );
    c.send_text("hello").await.unwrap();
    assert_eq!(
        c.recv_frame().await.unwrap(),
        (
            0,
            ServerFrame::Error {
                code: ErrorCode::Malformed
            }
        )
    );
    c.challenge().await.unwrap();
}

/// The failure: a version 1 client (its deposit and prekey frames mean
/// other things in version 2) talks to this relay. Its hello already says
/// version 2; each version 1 request is answered `unsupported_version` to
/// its own request id and changes nothing, and the connection lives on.
#[tokio::test]
async fn a_version_1_frame_is_refused_with_a_clear_error() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    owner.request(ClientFrame::Subscribe).await.unwrap();

    let mut c = relay.client().await.unwrap();
    let v1 = |f: ClientFrame, id: u32| {
        let mut b = f.encode(id).unwrap();
        assert_eq!(b[0], 2, "this client speaks version 2");
        b[0] = 1;
        b
    };
    let requests = [
        ClientFrame::Challenge,
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: vec![seal(mb.id(), b"from a version 1 client")],
        },
        ClientFrame::FetchPrekeys { mailbox: mb.id() },
    ];
    for (i, f) in requests.into_iter().enumerate() {
        let id = 90 + i as u32;
        c.send_raw(v1(f, id)).await.unwrap();
        assert_eq!(
            c.recv_frame().await.unwrap(),
            (
                id,
                ServerFrame::Error {
                    code: ErrorCode::UnsupportedVersion
                }
            )
        );
    }
    // Nothing was stored, and the connection still serves version 2.
    assert!(
        owner
            .next_push(Duration::from_millis(200))
            .await
            .unwrap()
            .is_none()
    );
    c.challenge().await.unwrap();
}

#[tokio::test]
async fn signatures_challenges_and_foreign_mailboxes() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let alice = Mailbox::random();
    let bob = Mailbox::random();
    let mut a = relay.client().await.unwrap();
    let mut b = relay.client().await.unwrap();
    a.register(&alice, true).await.unwrap();
    b.register(&bob, false).await.unwrap();

    let mut eve = relay.client().await.unwrap();
    // No challenge pending.
    eve.expect_error(
        ClientFrame::Auth {
            mailbox: alice.id(),
            signature: alice.sign(&frame::auth_message(&[0; 32], &alice.id())),
        },
        ErrorCode::AuthFailed,
    )
    .await
    .unwrap();
    // Someone else's mailbox, signed with one's own key.
    let c = eve.challenge().await.unwrap();
    eve.expect_error(
        ClientFrame::Auth {
            mailbox: alice.id(),
            signature: bob.sign(&frame::auth_message(&c, &alice.id())),
        },
        ErrorCode::AuthFailed,
    )
    .await
    .unwrap();
    // Signature over the wrong domain (a registration message).
    let c = eve.challenge().await.unwrap();
    eve.expect_error(
        ClientFrame::Auth {
            mailbox: bob.id(),
            signature: bob.sign(&frame::register_message(&c, &bob.id(), false)),
        },
        ErrorCode::AuthFailed,
    )
    .await
    .unwrap();

    // A valid auth works once; replaying it (challenge consumed) fails.
    let mut a2 = relay.client().await.unwrap();
    let c = a2.challenge().await.unwrap();
    let auth = ClientFrame::Auth {
        mailbox: alice.id(),
        signature: alice.sign(&frame::auth_message(&c, &alice.id())),
    };
    assert_eq!(a2.request(auth.clone()).await.unwrap(), ServerFrame::Ok);
    a2.expect_error(auth.clone(), ErrorCode::AuthFailed)
        .await
        .unwrap();
    // Replayed on another connection with its own challenge.
    eve.challenge().await.unwrap();
    eve.expect_error(auth, ErrorCode::AuthFailed).await.unwrap();

    // Re-flagging someone's mailbox needs their key.
    let c = eve.challenge().await.unwrap();
    eve.expect_error(
        ClientFrame::Register {
            keys: alice.keys,
            pow_required: false,
            signature: bob.sign(&frame::register_message(&c, &alice.id(), false)),
        },
        ErrorCode::AuthFailed,
    )
    .await
    .unwrap();
    eve.expect_error(
        ClientFrame::Deposit {
            pow_nonce: None,
            envelopes: vec![seal(alice.id(), b"flood")],
        },
        ErrorCode::PowRequired,
    )
    .await
    .unwrap();

    // Nothing that needs a session works without one.
    for f in [
        ClientFrame::Subscribe,
        ClientFrame::Ack { ids: vec![] },
        ClientFrame::GetState,
        ClientFrame::DeleteState,
        ClientFrame::PutState {
            ttl_hours: 1,
            blob: vec![1],
        },
        ClientFrame::DeleteMailbox,
        ClientFrame::UploadPrekeys {
            signed_bundle: vec![1],
            one_time: vec![],
            one_time_pq: vec![],
            replace: true,
        },
    ] {
        eve.expect_error(f, ErrorCode::NotAuthenticated)
            .await
            .unwrap();
    }
    // A session on one mailbox cannot acknowledge another's envelopes.
    let mut d = relay.client().await.unwrap();
    d.deposit(vec![seal(bob.id(), b"for bob")], false)
        .await
        .unwrap();
    b.request(ClientFrame::Subscribe).await.unwrap();
    let got = b.deliveries(1).await.unwrap();
    a.request(ClientFrame::Ack {
        ids: vec![got[0].0],
    })
    .await
    .unwrap();
    let mut b2 = relay.client().await.unwrap();
    b2.auth(&bob).await.unwrap();
    assert_eq!(
        b2.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 1 }
    );
}
