//! Concurrency, restarts, crashes, and what the relay's files contain.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::ids::EnvelopeId;
use northstar_e2e::{Client, Mailbox, RelayProcess, scan, seal};

use crate::now;

pub(crate) const FAST: [&str; 4] = [
    "--messages-per-second",
    "100000",
    "--message-burst",
    "100000",
];

/// A relay without the per-connection rate limit (load tests), with `extra` flags.
pub(crate) async fn fast_relay(extra: &[&str]) -> RelayProcess {
    let mut args = FAST.to_vec();
    args.extend_from_slice(extra);
    RelayProcess::start(&args).await.unwrap()
}

/// Registers a fresh mailbox (no proof of work) over a throw-away connection.
pub(crate) async fn registered(relay: &RelayProcess) -> Mailbox {
    let mb = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    c.register(&mb, false).await.unwrap();
    mb
}

/// Collects deliveries until none arrives for `quiet`.
pub(crate) async fn drain(c: &mut Client, quiet: Duration) -> Vec<EnvelopeId> {
    let mut ids = Vec::new();
    while let Some(f) = c.next_push(quiet).await.unwrap() {
        match f {
            ServerFrame::Deliver { id, .. } => ids.push(id),
            other => panic!("unexpected push {other:?}"),
        }
    }
    ids
}

#[tokio::test]
async fn concurrent_clients_get_everything_exactly_once() {
    let relay = RelayProcess::start(&FAST).await.unwrap();
    let boxes: Vec<Arc<Mailbox>> = (0..4).map(|_| Arc::new(Mailbox::random())).collect();
    let mut subs = Vec::new();
    for mb in &boxes {
        let mut c = relay.client().await.unwrap();
        c.register(mb, false).await.unwrap();
        c.request(ClientFrame::Subscribe).await.unwrap();
        subs.push(c);
    }
    const WRITERS: usize = 8;
    const EACH: usize = 50;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = relay.url();
        let targets: Vec<_> = boxes.iter().map(|b| b.id()).collect();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&url).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..EACH {
                let to = targets[(w + i) % targets.len()];
                let env = seal(to, format!("w{w} m{i}").as_bytes());
                sent.push((to, EnvelopeId::of(&env.encode())));
                let r = c.deposit(vec![env], false).await.unwrap();
                assert!(matches!(r, ServerFrame::Deposited { .. }), "{r:?}");
            }
            sent
        }));
    }
    let mut expected: HashMap<_, HashSet<EnvelopeId>> = HashMap::new();
    for t in tasks {
        for (to, id) in t.await.unwrap() {
            expected.entry(to).or_default().insert(id);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "loopback: {} deposits from {WRITERS} connections in {secs:.2}s = {:.0} deposits/s",
        WRITERS * EACH,
        (WRITERS * EACH) as f64 / secs
    );
    for (c, mb) in subs.iter_mut().zip(&boxes) {
        let got = drain(c, Duration::from_millis(500)).await;
        let set: HashSet<_> = got.iter().copied().collect();
        assert_eq!(set.len(), got.len(), "no duplicates");
        assert_eq!(&set, &expected[&mb.id()]);
    }
}

/// A rough loopback figure for docs/BENCHMARKS.md (not run by default):
/// `cargo test -p northstar-e2e --test relay -- --ignored --nocapture throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_with_many_connections() {
    let mut args = FAST.to_vec();
    args.extend(["--mailbox-max-envelopes", "100000"]);
    let relay = RelayProcess::start(&args).await.unwrap();
    let mb = Mailbox::random();
    relay
        .client()
        .await
        .unwrap()
        .register(&mb, false)
        .await
        .unwrap();
    for writers in [1usize, 8, 64] {
        const EACH: usize = 100;
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let url = relay.url();
                let to = mb.id();
                tokio::spawn(async move {
                    let mut c = Client::connect(&url).await.unwrap();
                    for i in 0..EACH {
                        let e = seal(to, format!("{writers} {w} {i}").as_bytes());
                        let r = c.deposit(vec![e], false).await.unwrap();
                        assert!(matches!(r, ServerFrame::Deposited { .. }), "{r:?}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "loopback: {writers:>2} connections x {EACH} deposits: {:.0} deposits/s",
            (writers * EACH) as f64 / secs
        );
    }
}

#[tokio::test]
async fn pending_messages_survive_a_graceful_restart() {
    let mut relay = RelayProcess::start(&[]).await.unwrap();
    let mb = Mailbox::random();
    let mut c = relay.client().await.unwrap();
    c.register(&mb, false).await.unwrap();
    let mut d = relay.client().await.unwrap();
    let mut ids = HashSet::new();
    for i in 0..5u8 {
        let e = seal(mb.id(), &[i; 20]);
        ids.insert(EnvelopeId::of(&e.encode()));
        d.deposit(vec![e], false).await.unwrap();
    }
    assert!(relay.terminate().await.unwrap(), "clean exit on SIGTERM");
    let relay = relay.restart().await.unwrap();
    let mut c = relay.client().await.unwrap();
    c.auth(&mb).await.unwrap();
    c.request(ClientFrame::Subscribe).await.unwrap();
    let got: HashSet<_> = c
        .deliveries(5)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(got, ids);
}

/// Deposits from several connections until the relay dies; returns the ids
/// whose deposit was acknowledged.
pub(crate) async fn deposit_until_dead(
    url: String,
    to: northstar_core::MailboxId,
    acked: Arc<Mutex<Vec<EnvelopeId>>>,
) {
    let Ok(mut c) = Client::connect(&url).await else {
        return;
    };
    for i in 0..100_000u32 {
        let e = seal(to, &i.to_be_bytes());
        let id = EnvelopeId::of(&e.encode());
        match c.deposit(vec![e], false).await {
            Ok(ServerFrame::Deposited { .. }) => acked.lock().unwrap().push(id),
            _ => return,
        }
    }
}

pub(crate) async fn assert_all_delivered_once(
    relay: &RelayProcess,
    mb: &Mailbox,
    acked: &[EnvelopeId],
) {
    let mut c = relay.client().await.unwrap();
    c.auth(mb).await.unwrap();
    let ServerFrame::Subscribed { pending } = c.request(ClientFrame::Subscribe).await.unwrap()
    else {
        panic!()
    };
    assert!(pending as usize >= acked.len().min(256));
    let mut got = Vec::new();
    loop {
        let batch = drain(&mut c, Duration::from_millis(400)).await;
        if batch.is_empty() {
            break;
        }
        // Acknowledge to open the delivery window for the rest.
        for chunk in batch.chunks(256) {
            c.request(ClientFrame::Ack {
                ids: chunk.to_vec(),
            })
            .await
            .unwrap();
        }
        got.extend(batch);
    }
    let set: HashSet<_> = got.iter().copied().collect();
    assert_eq!(set.len(), got.len(), "delivered exactly once");
    for id in acked {
        assert!(set.contains(id), "an acknowledged deposit was lost");
    }
    // Unacknowledged in-flight deposits may or may not have committed.
    assert!(got.len() <= acked.len() + 4);
}

/// Acknowledged deposits and the depositor tasks of [`traffic`].
pub(crate) type Traffic = (
    Arc<Mutex<Vec<EnvelopeId>>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Registers a mailbox and starts four depositors against it; returns once
/// `at_least` deposits were acknowledged (they keep going until the relay dies).
pub(crate) async fn traffic(relay: &RelayProcess, mb: &Mailbox, at_least: usize) -> Traffic {
    relay
        .client()
        .await
        .unwrap()
        .register(mb, false)
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(deposit_until_dead(relay.url(), mb.id(), acked.clone())))
        .collect();
    while acked.lock().unwrap().len() < at_least {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (acked, tasks)
}

/// Waits for the depositors, restarts the relay and checks every
/// acknowledged deposit is delivered exactly once.
async fn restart_and_check(relay: RelayProcess, mb: &Mailbox, (acked, tasks): Traffic) {
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let relay = relay.restart().await.unwrap();
    assert_all_delivered_once(&relay, mb, &acked).await;
}

#[tokio::test]
async fn kill9_loses_no_acknowledged_deposit() {
    let mut relay = RelayProcess::start(&FAST).await.unwrap();
    let mb = Mailbox::random();
    let running = traffic(&relay, &mb, 150).await;
    relay.kill9().await.unwrap();
    restart_and_check(relay, &mb, running).await;
}

#[tokio::test]
async fn sigterm_mid_traffic_drains_in_flight_writes() {
    let mut relay = RelayProcess::start(&FAST).await.unwrap();
    let mb = Mailbox::random();
    let running = traffic(&relay, &mb, 100).await;
    assert!(relay.terminate().await.unwrap(), "clean exit on SIGTERM");
    restart_and_check(relay, &mb, running).await;
}

#[tokio::test]
async fn files_and_logs_hold_no_plaintext_address_or_fine_time() {
    let mut relay = RelayProcess::start(&[]).await.unwrap();
    const MARKER: &[u8] = b"MARKER-plaintext-7f3a9c-must-never-reach-the-relay";
    let mut opaque: Vec<Vec<u8>> = Vec::new();
    let mut ports = Vec::new();
    let mut boxes = Vec::new();
    for i in 0..3 {
        let mb = Mailbox::random();
        let mut c = relay.client().await.unwrap();
        ports.push(c.local_addr.port());
        c.register(&mb, i == 0).await.unwrap();
        opaque.push(mb.id().as_bytes().to_vec());
        opaque.push(mb.keys.auth.0.to_vec());
        opaque.push(mb.keys.seal.0.to_vec());
        // The state blob: ciphertext of the marker under a key the relay never sees.
        let state = seal(mb.id(), MARKER).ciphertext().to_vec();
        opaque.push(state.clone());
        c.request(ClientFrame::PutState {
            ttl_hours: 24,
            blob: state,
        })
        .await
        .unwrap();
        boxes.push(mb);
    }
    let mut d = relay.client().await.unwrap();
    ports.push(d.local_addr.port());
    for (i, mb) in boxes.iter().enumerate() {
        for _ in 0..5 {
            let e = seal(mb.id(), MARKER);
            opaque.push(e.ciphertext().to_vec());
            opaque.push(EnvelopeId::of(&e.encode()).as_bytes().to_vec());
            d.deposit(vec![e], i == 0).await.unwrap();
        }
    }
    let t = now().0;
    // Arrival times, and expiries computed from them without rounding
    // (envelope retention 720 h, state 24 h), each with two hours' slack.
    let windows: Vec<(u64, u64)> = [0u64, 24, 720]
        .iter()
        .map(|h| (t + h * 3600 - 7200, t + h * 3600 + 7200))
        .collect();
    let check = |label: &str, mut bytes: Vec<u8>, wal: bool| {
        assert!(!scan::contains(&bytes, MARKER), "{label}: marker plaintext");
        assert!(
            !scan::contains(&bytes, b"127.0.0.1"),
            "{label}: address text"
        );
        if wal {
            scan::blank_wal_headers(&mut bytes);
        }
        scan::blank(&mut bytes, &opaque);
        assert!(
            !scan::contains(&bytes, &[127, 0, 0, 1]),
            "{label}: address bytes"
        );
        let fine = scan::fine_timestamps(&bytes, &windows);
        let show: Vec<String> = fine
            .iter()
            .take(6)
            .map(|i| {
                let s = i.saturating_sub(8);
                let e = (i + 16).min(bytes.len());
                format!("{i}: {:02x?}", &bytes[s..e])
            })
            .collect();
        assert!(
            fine.is_empty(),
            "{label}: fine timestamps at {fine:?}: {show:#?}"
        );
    };
    // SQLite: the database file and its WAL; PostgreSQL: a dump of the database.
    let files = relay.stored_files().unwrap();
    assert!(
        files
            .iter()
            .any(|(_, bytes, _)| scan::contains(bytes, &opaque[0])),
        "the scan sees the stored raw bytes (a mailbox id)"
    );
    for (label, bytes, wal) in files {
        if wal {
            assert!(!bytes.is_empty(), "the WAL holds the recent commits");
        }
        check(&format!("{label} (running)"), bytes, wal);
    }
    assert!(relay.terminate().await.unwrap());
    for (label, bytes, wal) in relay.stored_files().unwrap() {
        check(&format!("{label} (stopped)"), bytes, wal);
    }
    let logs = relay.logs();
    assert!(!logs.is_empty(), "debug logs were written");
    for p in ports {
        assert!(
            !logs.contains(&format!(":{p}")),
            "a client port appears in the logs"
        );
    }
    for mb in &boxes {
        assert!(
            !logs.contains(&mb.id().to_hex()),
            "a mailbox id appears in the logs"
        );
    }
}
