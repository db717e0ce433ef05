//! Issue 22 item 3: two relay nodes on one PostgreSQL database, deposits
//! and subscribers on both, and one node killed (`kill -9`) in the middle
//! of the load. Its senders and subscribers reconnect to the survivor, and
//! every deposit either node acknowledged (`Deposited`) is delivered: the
//! group commit answers a deposit only after its `COMMIT` returned, so
//! nothing a client was told is stored can die with the node. Runs in the
//! PostgreSQL pass of `scripts/test` (`NORTHSTAR_TEST_BACKEND=postgres`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_e2e::{
    Backend, Client, Mailbox, RelayProcess, backend, fresh_postgres_database, seal,
};

use crate::durability::FAST;

/// Recipient mailboxes: half watched on each node.
const BOXES: usize = 6;
/// Depositing connections per node.
const SENDERS_PER_NODE: usize = 3;
/// Deposits acknowledged before the kill, and after it (by the survivor).
const BEFORE_KILL: usize = 500;
const AFTER_KILL: usize = 500;

type Delivered = Arc<Mutex<HashMap<MailboxId, HashSet<EnvelopeId>>>>;

/// What the senders did: every deposit attempted, and those acknowledged
/// (with their recipient).
#[derive(Default)]
struct Sent {
    attempted: HashSet<EnvelopeId>,
    acked: Vec<(MailboxId, EnvelopeId)>,
}

/// Connects to `first`, or to `fallback` once `first` is gone.
async fn connect(first: &str, fallback: &str, first_dead: &AtomicBool) -> Client {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = if first_dead.load(Ordering::SeqCst) {
            fallback
        } else {
            first
        };
        if let Ok(c) = Client::connect(url).await {
            return c;
        }
        assert!(Instant::now() < deadline, "no node to reconnect to");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deposits one envelope after another (round robin over the mailboxes)
/// until `stop`; on a lost connection, reconnects (to the survivor once
/// the node is dead). Returns the connection losses it saw.
async fn sender(
    name: String,
    urls: [String; 2],
    dead: Arc<AtomicBool>,
    boxes: Vec<MailboxId>,
    sent: Arc<Mutex<Sent>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut lost = 0;
    let mut c = connect(&urls[0], &urls[1], &dead).await;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let to = boxes[n % boxes.len()];
        let e = seal(to, format!("{name} deposit {n}").as_bytes());
        let id = EnvelopeId::of(&e.encode());
        n += 1;
        sent.lock().unwrap().attempted.insert(id);
        match c.deposit(vec![e], false).await {
            Ok(ServerFrame::Deposited { .. }) => sent.lock().unwrap().acked.push((to, id)),
            Ok(other) => panic!("unexpected reply {other:?}"),
            // The node died with this deposit in flight: it may or may not
            // have been stored, and was not acknowledged.
            Err(_) => {
                lost += 1;
                c = connect(&urls[0], &urls[1], &dead).await;
            }
        }
    }
    lost
}

/// Keeps `mb` subscribed (on `urls[0]`, then the survivor), records every
/// delivery and acknowledges it at once, until `stop`.
async fn recipient(
    urls: [String; 2],
    dead: Arc<AtomicBool>,
    mb: Arc<Mailbox>,
    delivered: Delivered,
    stop: Arc<AtomicBool>,
    reconnects: Arc<AtomicUsize>,
) {
    'connection: while !stop.load(Ordering::SeqCst) {
        let mut c = connect(&urls[0], &urls[1], &dead).await;
        if c.auth(&mb).await.is_err() || c.request(ClientFrame::Subscribe).await.is_err() {
            reconnects.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        while !stop.load(Ordering::SeqCst) {
            let mut ids = Vec::new();
            loop {
                match c.next_push(Duration::from_millis(20)).await {
                    Ok(Some(ServerFrame::Deliver { id, .. })) => ids.push(id),
                    Ok(Some(other)) => panic!("unexpected push {other:?}"),
                    Ok(None) => break,
                    Err(_) => {
                        reconnects.fetch_add(1, Ordering::SeqCst);
                        continue 'connection;
                    }
                }
                if ids.len() >= 64 {
                    break;
                }
            }
            if ids.is_empty() {
                continue;
            }
            delivered
                .lock()
                .unwrap()
                .entry(mb.id())
                .or_default()
                .extend(ids.iter().copied());
            if c.request(ClientFrame::Ack { ids }).await.is_err() {
                reconnects.fetch_add(1, Ordering::SeqCst);
                continue 'connection;
            }
        }
    }
}

/// Waits until `n` deposits are acknowledged (or fails after `within`).
async fn until_acked(sent: &Mutex<Sent>, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while sent.lock().unwrap().acked.len() < n {
        assert!(Instant::now() < deadline, "the load stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_mid_load_loses_no_acknowledged_deposit() {
    if backend() != Backend::Postgres {
        eprintln!("multi-node tests need NORTHSTAR_TEST_BACKEND=postgres; skipped on SQLite");
        return;
    }
    let started = Instant::now();
    let url = fresh_postgres_database().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--database", url.as_str()]);
    let mut one = RelayProcess::start(&args).await.unwrap();
    let two = RelayProcess::start(&args).await.unwrap();
    let boxes: Vec<Arc<Mailbox>> = (0..BOXES).map(|_| Arc::new(Mailbox::random())).collect();
    let ids: Vec<MailboxId> = boxes.iter().map(|b| b.id()).collect();
    for mb in &boxes {
        two.client()
            .await
            .unwrap()
            .register(mb, false)
            .await
            .unwrap();
    }

    let dead = Arc::new(AtomicBool::new(false));
    let never = Arc::new(AtomicBool::new(false));
    let stop_senders = Arc::new(AtomicBool::new(false));
    let stop_recipients = Arc::new(AtomicBool::new(false));
    let delivered: Delivered = Arc::default();
    let reconnects = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Mutex::new(Sent::default()));
    // Node one's clients fall back to node two; node two's stay there.
    let on_one = [one.url(), two.url()];
    let on_two = [two.url(), two.url()];

    let recipients: Vec<_> = boxes
        .iter()
        .enumerate()
        .map(|(i, mb)| {
            let (urls, dead) = if i % 2 == 0 {
                (on_one.clone(), dead.clone())
            } else {
                (on_two.clone(), never.clone())
            };
            tokio::spawn(recipient(
                urls,
                dead,
                mb.clone(),
                delivered.clone(),
                stop_recipients.clone(),
                reconnects.clone(),
            ))
        })
        .collect();
    let senders: Vec<_> = (0..2 * SENDERS_PER_NODE)
        .map(|i| {
            let (urls, dead) = if i % 2 == 0 {
                (on_one.clone(), dead.clone())
            } else {
                (on_two.clone(), never.clone())
            };
            tokio::spawn(sender(
                format!("sender {i}"),
                urls,
                dead,
                ids.clone(),
                sent.clone(),
                stop_senders.clone(),
            ))
        })
        .collect();

    // Load through both nodes, then node one dies in the middle of it.
    until_acked(&sent, BEFORE_KILL, Duration::from_secs(10)).await;
    dead.store(true, Ordering::SeqCst);
    one.kill9().await.unwrap();
    let at_kill = sent.lock().unwrap().acked.len();
    // The survivor takes everyone's load.
    until_acked(&sent, at_kill + AFTER_KILL, Duration::from_secs(10)).await;
    stop_senders.store(true, Ordering::SeqCst);
    let mut lost_connections = 0;
    for s in senders {
        lost_connections += s.await.unwrap();
    }
    assert!(
        lost_connections > 0,
        "node one's senders were depositing when it died"
    );

    // Every acknowledged deposit is delivered (after the reconnections).
    let (attempted, acked) = {
        let s = sent.lock().unwrap();
        (s.attempted.clone(), s.acked.clone())
    };
    let missing = || {
        let got = delivered.lock().unwrap();
        acked
            .iter()
            .filter(|(to, id)| !got.get(to).is_some_and(|ids| ids.contains(id)))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while missing() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_recipients.store(true, Ordering::SeqCst);
    for r in recipients {
        r.await.unwrap();
    }
    assert_eq!(
        missing(),
        0,
        "of {} acknowledged deposits, some were never delivered",
        acked.len()
    );
    assert!(
        reconnects.load(Ordering::SeqCst) > 0,
        "node one's subscribers reconnected to the survivor"
    );
    // Nothing was delivered that no sender deposited.
    let got = delivered.lock().unwrap().clone();
    for ids in got.values() {
        assert!(ids.iter().all(|id| attempted.contains(id)));
    }
    // Nothing acknowledged is left over: the survivor delivered and
    // deleted it all.
    for mb in &boxes {
        let mut c = two.client().await.unwrap();
        c.auth(mb).await.unwrap();
        let ServerFrame::Subscribed { pending } = c.request(ClientFrame::Subscribe).await.unwrap()
        else {
            panic!("expected Subscribed");
        };
        // At most the deposits in flight when node one died, delivered and
        // acknowledged by nobody.
        assert!(pending as usize <= SENDERS_PER_NODE, "{pending} left");
    }
    eprintln!(
        "{} acknowledged deposits ({} before the kill), {} deliveries, {} connection losses, {} subscriber reconnections, {:.1} s",
        acked.len(),
        at_kill,
        got.values().map(HashSet::len).sum::<usize>(),
        lost_connections,
        reconnects.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
}
