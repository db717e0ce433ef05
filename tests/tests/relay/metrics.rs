//! Operator metrics (`--metrics-listen`): they count what happened and
//! name nothing — no mailbox, envelope, address or port — and the load
//! balancer's `/livez` and `/readyz` answer on the same listener.

use std::time::Duration;

use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_core::ids::EnvelopeId;
use northstar_e2e::{Mailbox, RelayProcess, seal};

/// The value of an unlabelled series, or of one with exactly `labels`.
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

fn labels_are_fixed_enums(text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(start) = line.find('{') {
            let labels = &line[start + 1..line.find('}').unwrap()];
            let (key, _) = labels.split_once('=').unwrap();
            assert!(
                ["code", "le"].contains(&key) && !labels.contains(','),
                "unexpected label in {line}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_real_traffic_and_name_no_mailbox_envelope_or_client_address() {
    let relay = RelayProcess::start(&["--metrics-listen", "127.0.0.1:0"])
        .await
        .unwrap();
    let (status, before) = relay.metrics_get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(value(&before, "northstar_deposit_envelopes_total"), 0);

    // Three mailboxes, each subscribed; deposits to all of them from an
    // unauthenticated connection: one batch of three, then one each.
    let boxes: Vec<Mailbox> = (0..3).map(|_| Mailbox::random()).collect();
    let mut owners = Vec::new();
    let mut ports = Vec::new();
    for mb in &boxes {
        let mut c = relay.client().await.unwrap();
        ports.push(c.local_addr.port());
        assert_eq!(c.register(mb, false).await.unwrap(), ServerFrame::Ok);
        c.request(ClientFrame::Subscribe).await.unwrap();
        owners.push(c);
    }
    let mut depositor = relay.client().await.unwrap();
    ports.push(depositor.local_addr.port());
    let mut envelopes = Vec::new();
    let batch: Vec<_> = boxes.iter().map(|mb| seal(mb.id(), b"first")).collect();
    envelopes.extend(batch.iter().cloned());
    let reply = depositor.deposit(batch, false).await.unwrap();
    assert!(matches!(reply, ServerFrame::Deposited { accepted: 3, .. }));
    for mb in &boxes {
        let e = seal(mb.id(), b"second");
        envelopes.push(e.clone());
        depositor.deposit(vec![e], false).await.unwrap();
    }
    // A batch with one envelope to nobody: two held, one refused inside it.
    let stranger = Mailbox::random();
    let mixed = vec![
        seal(boxes[0].id(), b"third"),
        seal(stranger.id(), b"lost"),
        seal(boxes[1].id(), b"third"),
    ];
    envelopes.extend(mixed.iter().cloned());
    let reply = depositor.deposit(mixed, false).await.unwrap();
    assert!(matches!(reply, ServerFrame::Deposited { accepted: 2, .. }));
    // Refusals: a deposit to nobody, two unauthenticated commands.
    depositor
        .expect_error(
            ClientFrame::Deposit {
                pow_nonce: None,
                envelopes: vec![seal(stranger.id(), b"x")],
            },
            ErrorCode::UnknownMailbox,
        )
        .await
        .unwrap();
    for _ in 0..2 {
        depositor
            .expect_error(ClientFrame::GetState, ErrorCode::NotAuthenticated)
            .await
            .unwrap();
    }
    // Every owner takes its deliveries (3, 3, 2) and acknowledges them.
    let mut acked = 0;
    for (i, c) in owners.iter_mut().enumerate() {
        let want = if i == 2 { 2 } else { 3 };
        let got = c.deliveries(want).await.unwrap();
        let ids: Vec<EnvelopeId> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            c.request(ClientFrame::Ack { ids }).await.unwrap(),
            ServerFrame::Acked {
                deleted: want as u32
            }
        );
        acked += want as u64;
    }

    let (_, text) = relay.metrics_get("/metrics").await.unwrap();
    assert_eq!(value(&text, "northstar_deposit_batches_total"), 5);
    assert_eq!(value(&text, "northstar_deposit_envelopes_total"), 8);
    assert_eq!(
        value(
            &text,
            "northstar_envelopes_refused_total{code=\"unknown_mailbox\"}"
        ),
        1
    );
    assert_eq!(value(&text, "northstar_deliveries_total"), 8);
    assert_eq!(value(&text, "northstar_ack_frames_total"), 3);
    assert_eq!(value(&text, "northstar_acked_envelopes_total"), acked);
    assert_eq!(
        value(&text, "northstar_refusals_total{code=\"unknown_mailbox\"}"),
        1
    );
    assert_eq!(
        value(
            &text,
            "northstar_refusals_total{code=\"not_authenticated\"}"
        ),
        2
    );
    assert_eq!(
        value(&text, "northstar_refusals_total{code=\"quota_exceeded\"}"),
        0
    );
    assert_eq!(value(&text, "northstar_connections"), 4);
    assert_eq!(value(&text, "northstar_connections_total"), 4);
    assert_eq!(value(&text, "northstar_subscribed_mailboxes"), 3);
    assert!(value(&text, "northstar_store_commit_seconds_count") >= 5);
    if relay.uses_sqlite_file() {
        let on_disk: u64 = relay
            .sqlite_files()
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let reported = value(&text, "northstar_database_bytes");
        assert!(reported > 0 && reported.abs_diff(on_disk) < 1 << 20);
        value(&text, "northstar_store_write_queue");
    } else {
        assert!(value(&text, "northstar_database_bytes") > 0);
    }

    // Nothing identifying: no mailbox id (hex, whole or a 16-digit piece),
    // no envelope id, no client port, no address at all.
    labels_are_fixed_enums(&text);
    let lower = text.to_lowercase();
    for mb in boxes.iter().chain([&stranger]) {
        let hex = mb.id().to_hex();
        assert!(!lower.contains(&hex[..16]), "a mailbox id in the metrics");
    }
    for e in &envelopes {
        let hex: String = EnvelopeId::of(&e.encode())
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!lower.contains(&hex[..16]), "an envelope id in the metrics");
    }
    assert!(!text.contains("127.0.0.1"), "an address in the metrics");
    for port in ports {
        let port = port.to_string();
        assert!(
            !text.split(|c: char| !c.is_ascii_digit()).any(|n| n == port),
            "a client port in the metrics"
        );
    }

    // Connections closed leave the gauge, not the total.
    for c in owners {
        c.close().await;
    }
    depositor.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = relay.metrics_get("/metrics").await.unwrap();
        if value(&text, "northstar_connections") == 0 {
            assert_eq!(value(&text, "northstar_connections_total"), 4);
            assert_eq!(value(&text, "northstar_subscribed_mailboxes"), 0);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "gauge never fell");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn livez_and_readyz_answer_on_the_metrics_listener_only() {
    let mut relay = RelayProcess::start(&["--metrics-listen", "127.0.0.1:0"])
        .await
        .unwrap();
    assert_eq!(
        relay.metrics_get("/livez").await.unwrap(),
        (200, "alive".to_owned())
    );
    assert_eq!(
        relay.metrics_get("/readyz").await.unwrap(),
        (200, "ready".to_owned())
    );
    // Not on the public port, and the public port's paths not here.
    let (status, _, _) = relay.http_get("/metrics").await.unwrap();
    assert_ne!(status, 200, "metrics leaked onto the public listener");
    assert_eq!(relay.metrics_get("/health").await.unwrap().0, 404);

    // A store that is not accepting answers 503: see the SQLite store's
    // `readiness_fails_once_the_writer_is_closed` (a damaged file cannot
    // be injected from outside: SQLite serves the schema from its cache).
    relay.kill9().await.unwrap();
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    assert!(relay.metrics_addr().await.is_err());
    let (status, _, _) = relay.http_get("/metrics").await.unwrap();
    assert_ne!(status, 200);
}

/// Issue 22 item 2: acknowledgements sent at once from many connections are
/// deleted in shared writes (not a commit each), each `Acked` still comes
/// after its deletion committed (the envelope is gone for a new connection),
/// and a connection's replies keep their request order while its `Ack`
/// waits for that write.
#[tokio::test]
async fn acknowledgements_from_many_connections_share_a_write_and_keep_reply_order() {
    const N: usize = 16;
    let relay = RelayProcess::start(&["--metrics-listen", "127.0.0.1:0"])
        .await
        .unwrap();
    let boxes: Vec<Mailbox> = (0..N).map(|_| Mailbox::random()).collect();
    let mut owners = Vec::new();
    for mb in &boxes {
        let mut c = relay.client().await.unwrap();
        assert_eq!(c.register(mb, false).await.unwrap(), ServerFrame::Ok);
        c.request(ClientFrame::Subscribe).await.unwrap();
        owners.push(c);
    }
    let mut depositor = relay.client().await.unwrap();
    let batch: Vec<_> = boxes.iter().map(|mb| seal(mb.id(), b"one")).collect();
    let reply = depositor.deposit(batch, false).await.unwrap();
    assert!(matches!(reply, ServerFrame::Deposited { accepted, .. } if accepted as usize == N));
    let mut ids = Vec::new();
    for c in owners.iter_mut() {
        ids.push(c.deliveries(1).await.unwrap()[0].0);
    }
    // Every owner acknowledges at once, then asks for its (absent) state:
    // the state reply must not overtake the `Acked`.
    for (c, id) in owners.iter_mut().zip(&ids) {
        let ack = ClientFrame::Ack { ids: vec![*id] }.encode(1_000).unwrap();
        c.send_raw(ack).await.unwrap();
        c.send_raw(ClientFrame::GetState.encode(1_001).unwrap())
            .await
            .unwrap();
    }
    for c in owners.iter_mut() {
        assert_eq!(
            c.recv_frame().await.unwrap(),
            (1_000, ServerFrame::Acked { deleted: 1 })
        );
        let (id, state) = c.recv_frame().await.unwrap();
        assert_eq!(id, 1_001, "replies in request order");
        assert!(matches!(
            state,
            ServerFrame::Error { .. } | ServerFrame::State { .. }
        ));
    }
    let (_, text) = relay.metrics_get("/metrics").await.unwrap();
    assert_eq!(value(&text, "northstar_acked_envelopes_total"), N as u64);
    let writes = value(&text, "northstar_ack_writes_total");
    assert!(
        (1..=N as u64 / 4).contains(&writes),
        "{N} acknowledgements took {writes} writes"
    );
    // Acknowledged means deleted: a new connection gets nothing back.
    let mut again = relay.client().await.unwrap();
    again.auth(&boxes[0]).await.unwrap();
    assert_eq!(
        again.request(ClientFrame::Subscribe).await.unwrap(),
        ServerFrame::Subscribed { pending: 0 }
    );
}
