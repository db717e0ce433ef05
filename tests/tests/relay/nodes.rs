//! Several relay nodes sharing one PostgreSQL database: live delivery
//! across nodes, a whole conversation split over two nodes, and a node
//! killed under load. Runs in the PostgreSQL pass of `scripts/test`
//! (`NORTHSTAR_TEST_BACKEND=postgres`); one node on SQLite has nothing to share.

use std::time::{Duration, Instant};

use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::ids::EnvelopeId;
use northstar_e2e::cli::Cli;
use northstar_e2e::{Backend, Mailbox, RelayProcess, backend, fresh_postgres_database, seal};

use crate::durability::{FAST, assert_all_delivered_once, traffic};

/// Two nodes on one fresh database, or `None` (with a note) on SQLite.
async fn two_nodes(extra: &[&str]) -> Option<(RelayProcess, RelayProcess)> {
    if backend() != Backend::Postgres {
        eprintln!("multi-node tests need NORTHSTAR_TEST_BACKEND=postgres; skipped on SQLite");
        return None;
    }
    let url = fresh_postgres_database().unwrap();
    let mut args = vec!["--database", url.as_str()];
    args.extend_from_slice(extra);
    let one = RelayProcess::start(&args).await.unwrap();
    let two = RelayProcess::start(&args).await.unwrap();
    Some((one, two))
}

#[tokio::test]
async fn a_deposit_on_one_node_reaches_a_subscriber_on_the_other_at_once() {
    let Some((one, two)) = two_nodes(&[]).await else {
        return;
    };
    let mb = Mailbox::random();
    let mut sub = two.client().await.unwrap();
    sub.register(&mb, false).await.unwrap();
    sub.request(ClientFrame::Subscribe).await.unwrap();
    let mut dep = one.client().await.unwrap();
    for i in 0..5u8 {
        let e = seal(mb.id(), &[i; 30]);
        let id = EnvelopeId::of(&e.encode());
        let sent = Instant::now();
        dep.deposit(vec![e], false).await.unwrap();
        match sub.next_push(Duration::from_secs(5)).await.unwrap() {
            Some(ServerFrame::Deliver { id: got, .. }) => assert_eq!(got, id),
            other => panic!("expected a live delivery from the other node, got {other:?}"),
        }
        eprintln!("cross-node delivery {i}: {:?}", sent.elapsed());
        sub.request(ClientFrame::Ack { ids: vec![id] })
            .await
            .unwrap();
    }
    // Nothing identifying in either node's log.
    for node in [&one, &two] {
        assert!(!node.logs().contains(&mb.id().to_hex()));
    }
}

const ADMIN_PASS: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const QUESTION: &str = "Estoy en la frontera con mi hermana. Donde podemos dormir esta noche?";
const ANSWER: &str = "Hay un albergue abierto toda la noche. Les mandamos la direccion.";
const THANKS: &str = "Gracias. Aceptan ninos pequenos?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeker_on_node_one_and_counselor_on_node_two_then_node_one_dies_under_load() {
    let Some((mut one, two)) = two_nodes(&FAST).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let person = |name: &str, node: &RelayProcess, org: Option<&str>| Cli {
        relay: node.url(),
        home: tmp.path().join(name),
        org: org.map(str::to_owned),
    };

    // The administrator publishes through node 1; the counselor lives on node 2.
    let admin = person("admin", &one, None);
    let org = admin
        .ok(&["--json", "admin", "init"], &ADMIN_PASS.repeat(2))
        .await
        .json()["org_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let ana = person("ana", &two, Some(&org));
    let seeker = person("seeker", &one, Some(&org));
    let dev = ana.counselor_init(ANA).await;
    admin
        .add_device("unaccompanied-minors", "ana", &dev, ADMIN_PASS)
        .await;
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;
    ana.ok(&["counselor", "sync"], ANA).await;

    // The seeker asks on node 1; the counselor reads and answers on node 2.
    let start = seeker.seeker_start("unaccompanied-minors", QUESTION).await;
    let codename = start["codename"].as_str().unwrap().to_owned();
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(inbox["conversations"][0]["messages"][0]["text"], QUESTION);
    ana.ok(&["counselor", "claim", &conv], ANA).await;
    ana.ok(&["counselor", "reply", &conv, "--message", ANSWER], ANA)
        .await;
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    let msgs = read["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["from"], "counselor");
    assert_eq!(msgs[1]["text"], ANSWER);
    seeker
        .ok(&["seeker", "write"], &format!("{codename}\n{THANKS}\n"))
        .await;
    let shown = ana
        .ok(&["--json", "counselor", "show", &conv], ANA)
        .await
        .json();
    let texts: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec![QUESTION, ANSWER, THANKS]);

    // Then node 1 is killed (-9) under load; node 2 delivers every
    // acknowledged deposit exactly once.
    let mb = Mailbox::random();
    let (acked, tasks) = traffic(&one, &mb, 150).await;
    one.kill9().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);
    assert_all_delivered_once(&two, &mb, &acked).await;

    // The shared database holds none of the conversation.
    let stored: Vec<u8> = two
        .stored_files()
        .unwrap()
        .into_iter()
        .flat_map(|(_, bytes, _)| bytes)
        .collect();
    for needle in [QUESTION, ANSWER, THANKS, codename.as_str(), "127.0.0.1"] {
        assert!(
            !northstar_e2e::scan::contains(&stored, needle.as_bytes()),
            "the database holds {needle:?}"
        );
    }
}

/// Issue 22: acknowledgements are deleted in gathered writes, so for a few
/// milliseconds an acknowledged envelope is still stored. A wake-up from
/// another node makes the subscriber's connection read the store: what it
/// acknowledged and is not yet deleted must not be pushed again.
#[tokio::test]
async fn an_acknowledged_envelope_is_not_pushed_again_by_a_wake_up_from_another_node() {
    const N: u8 = 60;
    // Deletions gathered for 200 ms: every wake-up in that time reads the
    // acknowledged envelopes back from the store.
    let Some((one, two)) = two_nodes(&["--ack-flush-ms", "200"]).await else {
        return;
    };
    let mb = Mailbox::random();
    let mut sub = two.client().await.unwrap();
    sub.register(&mb, false).await.unwrap();
    sub.request(ClientFrame::Subscribe).await.unwrap();
    let mut dep = one.client().await.unwrap();
    let mut seen: Vec<EnvelopeId> = Vec::new();
    for i in 0..N {
        dep.deposit(vec![seal(mb.id(), &[i; 30])], false)
            .await
            .unwrap();
        // Take what has arrived, acknowledge it at once without waiting
        // for `Acked`, and deposit the next one.
        while let Ok(got) = tokio::time::timeout(Duration::from_millis(20), sub.recv_frame()).await
        {
            if let (0, ServerFrame::Deliver { id, .. }) = got.unwrap() {
                seen.push(id);
                let ack = ClientFrame::Ack { ids: vec![id] }
                    .encode(10_000 + u32::from(i))
                    .unwrap();
                sub.send_raw(ack).await.unwrap();
            }
        }
    }
    while let Ok(got) = tokio::time::timeout(Duration::from_millis(500), sub.recv_frame()).await {
        if let (0, ServerFrame::Deliver { id, .. }) = got.unwrap() {
            seen.push(id);
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), usize::from(N), "every envelope delivered");
    assert_eq!(
        seen.len(),
        usize::from(N),
        "none delivered twice on one connection"
    );
}
