//! Failures: the relay killed (-9) at random points under load, a full
//! database, a read-only data directory, clients vanishing mid-transfer.
//! Acknowledged means committed; refused means nothing changed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_core::ids::EnvelopeId;
use northstar_e2e::{Backend, Client, Mailbox, RelayProcess, backend, seal};
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::durability::{deposit_until_dead, drain, fast_relay, registered};

/// What the mailbox owner saw: every delivery (with repeats) and the ids
/// whose acknowledgement the relay confirmed.
#[derive(Default)]
struct Owner {
    delivered: Vec<EnvelopeId>,
    acked: HashSet<EnvelopeId>,
}

/// The owner's device: receives, acknowledges in small batches, until the
/// relay dies.
async fn consume_until_dead(url: String, mb: Arc<Mailbox>, owner: Arc<Mutex<Owner>>) {
    let Ok(mut c) = Client::connect(&url).await else {
        return;
    };
    if c.auth(&mb).await.is_err() || c.request(ClientFrame::Subscribe).await.is_err() {
        return;
    }
    loop {
        let mut batch = Vec::new();
        while batch.len() < 16 {
            match c.next_push(Duration::from_millis(100)).await {
                Ok(Some(ServerFrame::Deliver { id, .. })) => batch.push(id),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    owner.lock().unwrap().delivered.extend(batch);
                    return;
                }
            }
        }
        owner
            .lock()
            .unwrap()
            .delivered
            .extend(batch.iter().copied());
        if batch.is_empty() {
            continue;
        }
        match c.request(ClientFrame::Ack { ids: batch.clone() }).await {
            Ok(ServerFrame::Acked { .. }) => owner.lock().unwrap().acked.extend(batch),
            _ => return,
        }
    }
}

#[tokio::test]
async fn kill9_at_random_points_delivers_every_acknowledged_deposit_once() {
    const CYCLES: usize = 6;
    let mut relay = fast_relay(&[]).await;
    let mb = Arc::new(registered(&relay).await);
    let deposited = Arc::new(Mutex::new(Vec::new()));
    let owner = Arc::new(Mutex::new(Owner::default()));
    // Ids the owner had acknowledged before each crash: never to come back.
    let mut settled: HashSet<EnvelopeId> = HashSet::new();
    let mut kill_points = Vec::new();
    for cycle in 0..CYCLES {
        let seen_before = owner.lock().unwrap().delivered.len();
        let mut tasks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(deposit_until_dead(relay.url(), mb.id(), deposited.clone())))
            .collect();
        tasks.push(tokio::spawn(consume_until_dead(
            relay.url(),
            mb.clone(),
            owner.clone(),
        )));
        // A random point under load: 150-900 ms in.
        let after = 150 + OsRng.next_u64() % 750;
        kill_points.push(after);
        tokio::time::sleep(Duration::from_millis(after)).await;
        relay.kill9().await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        {
            let o = owner.lock().unwrap();
            let late: Vec<_> = o.delivered[seen_before..]
                .iter()
                .filter(|id| settled.contains(id))
                .collect();
            assert!(
                late.is_empty(),
                "cycle {cycle}: {} acknowledged deliveries came back",
                late.len()
            );
            settled.extend(o.acked.iter().copied());
        }
        relay = relay.restart().await.unwrap();
    }
    // The owner reconnects once more and takes everything left.
    let mut c = relay.client().await.unwrap();
    c.auth(&mb).await.unwrap();
    c.request(ClientFrame::Subscribe).await.unwrap();
    loop {
        let batch = drain(&mut c, Duration::from_millis(400)).await;
        if batch.is_empty() {
            break;
        }
        assert!(
            batch.iter().all(|id| !settled.contains(id)),
            "an acknowledged delivery came back after the last restart"
        );
        owner
            .lock()
            .unwrap()
            .delivered
            .extend(batch.iter().copied());
        c.request(ClientFrame::Ack { ids: batch }).await.unwrap();
    }
    let deposited = deposited.lock().unwrap().clone();
    let owner = owner.lock().unwrap();
    let mut times: HashMap<EnvelopeId, usize> = HashMap::new();
    for id in &owner.delivered {
        *times.entry(*id).or_default() += 1;
    }
    for id in &deposited {
        assert!(times.contains_key(id), "an acknowledged deposit was lost");
    }
    // Deduplicated by id, the owner has each acknowledged deposit once; a
    // repeat happens only for a delivery whose ack the crash cut off.
    let repeats: usize = times.values().map(|n| n - 1).sum();
    let unacked_at_crash = times.len() - settled.len().min(times.len());
    println!(
        "kill -9 x{CYCLES} at {kill_points:?} ms: {} deposits acknowledged, {} distinct delivered, \
         {repeats} redelivered after a crash cut their ack, {} acknowledged by the owner before a crash",
        deposited.len(),
        times.len(),
        settled.len()
    );
    assert!(deposited.len() >= 100, "too little load to mean anything");
    assert!(repeats <= unacked_at_crash + CYCLES * 16 * 2);
    // Nothing appears that no one deposited (in-flight deposits whose
    // acknowledgement the crash cut may or may not have committed).
    assert!(times.len() <= deposited.len() + CYCLES * 3);
}

/// `PRAGMA integrity_check` of a stopped relay's database.
fn integrity(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_full_database_refuses_writes_cleanly_and_stays_intact() {
    // SQLITE_FULL through the operator's size cap (max_page_count): the
    // same code path as a full disk.
    let mut relay = fast_relay(&["--max-database-bytes", "1048576"]).await;
    if !relay.uses_sqlite_file() {
        println!("skipped: the size cap is SQLite's max_page_count");
        return;
    }
    let mb = registered(&relay).await;
    let mut d = relay.client().await.unwrap();
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for i in 0..400u32 {
        let batch: Vec<_> = (0..4)
            .map(|j| seal(mb.id(), &[i as u8 ^ j; 4000]))
            .collect();
        match d.deposit(batch, false).await.unwrap() {
            // Near the cap a later batch may still fit (a B-tree page split
            // is needed for some keys, not others): refusal is per write.
            ServerFrame::Deposited { accepted: n, .. } => accepted += usize::from(n),
            ServerFrame::Error { code } => {
                assert_eq!(code, ErrorCode::ServerBusy, "a full store says server_busy");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    println!("1 MiB database cap: {accepted} envelopes accepted, then {refused} batches refused");
    assert!(accepted > 0 && refused > 0, "the cap was reached");
    // Reads, auth and the rest of the relay still work; exactly the
    // accepted envelopes are there, no part of a refused batch.
    let mut r = relay.client().await.unwrap();
    r.auth(&mb).await.unwrap();
    let ServerFrame::Subscribed { pending } = r.request(ClientFrame::Subscribe).await.unwrap()
    else {
        panic!("subscribe")
    };
    assert!(
        accepted < 256,
        "within one delivery window, so `pending` is exact"
    );
    assert_eq!(pending as usize, accepted, "no refused batch left a trace");
    assert!(
        relay.logs().contains("storage full"),
        "the operator is told why"
    );
    // Acknowledging frees room: deposits are accepted again.
    let got = r.deliveries(accepted.min(64)).await.unwrap();
    r.request(ClientFrame::Ack {
        ids: got.iter().map(|(id, _)| *id).collect(),
    })
    .await
    .unwrap();
    assert!(matches!(
        d.deposit(vec![seal(mb.id(), b"after")], false)
            .await
            .unwrap(),
        ServerFrame::Deposited { accepted: 1, .. }
    ));
    assert!(relay.terminate().await.unwrap());
    assert_eq!(integrity(&relay.db_path()), "ok");
}

/// A directory tree `uid` may enter, with `data` inside owned by `uid`.
fn dir_for(uid: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::{PermissionsExt, chown};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chown(&data, Some(uid), Some(uid)).unwrap();
    (tmp, data)
}

/// Whether `uid` can run the relay binary (every directory above it must
/// be searchable by others).
fn can_run_as(uid: u32) -> bool {
    std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
        ])
        .arg(northstar_e2e::bin_dir().join("northstar-relay"))
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn a_read_only_database_is_refused_at_start_and_left_intact() {
    use std::os::unix::fs::{PermissionsExt, chown};
    const NOBODY: u32 = 65534;
    if backend() != Backend::Sqlite {
        // On PostgreSQL the data directory holds no database: a read-only
        // server is the database operator's failure (default_transaction_read_only),
        // refused by the server itself, not by this file-level check.
        println!("skipped: SQLite-specific (the database file in the data directory)");
        return;
    }
    // SAFETY of the premise: permissions bind only a non-root relay.
    let euid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    if euid.ok() != Some(0) || !can_run_as(NOBODY) {
        println!(
            "skipped: needs root to start the relay as uid {NOBODY}, who must reach the binary"
        );
        return;
    }
    let (_tmp, data) = dir_for(NOBODY);
    // A database with content, written by a relay running as that user.
    let mb = Mailbox::random();
    let mut relay = RelayProcess::start_in_as(&data, &[], NOBODY).await.unwrap();
    let mut c = relay.client().await.unwrap();
    c.register(&mb, false).await.unwrap();
    c.deposit(vec![seal(mb.id(), b"kept")], false)
        .await
        .unwrap();
    drop(c);
    assert!(relay.terminate().await.unwrap());
    let db = relay.db_path();
    let before = std::fs::read(&db).unwrap();
    // The operator (or a failing disk) makes the database read-only.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = RelayProcess::start_in_as(&data, &[], NOBODY)
        .await
        .expect_err("a read-only database must not be served");
    let msg = format!("{err:#}");
    println!("read-only database: {}", msg.lines().last().unwrap_or(""));
    assert!(msg.contains("read-only"), "unclear error: {msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was written");
    assert_eq!(integrity(&db), "ok");
    // A data directory the relay's user cannot write at all.
    let (_tmp2, data2) = dir_for(NOBODY);
    chown(&data2, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&data2, std::fs::Permissions::from_mode(0o555)).unwrap();
    let err = RelayProcess::start_in_as(&data2, &[], NOBODY)
        .await
        .expect_err("an unwritable data directory must not be served");
    let msg = format!("{err:#}");
    println!(
        "unwritable data directory: {}",
        msg.lines().last().unwrap_or("")
    );
    assert!(
        msg.contains("data directory") || msg.contains("database"),
        "unclear error: {msg}"
    );
    assert!(!msg.contains("panicked"), "{msg}");
    // After the fix the same data is served again.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let relay = RelayProcess::start_in_as(&data, &[], NOBODY).await.unwrap();
    let mut c = relay.client().await.unwrap();
    c.auth(&mb).await.unwrap();
    let ServerFrame::Subscribed { pending } = c.request(ClientFrame::Subscribe).await.unwrap()
    else {
        panic!("subscribe")
    };
    assert_eq!(pending, 1);
}

/// Opens a raw WebSocket (handshake by hand) so a test can stop mid-frame.
pub(crate) async fn raw_websocket(relay: &RelayProcess) -> TcpStream {
    raw_websocket_on(TcpStream::connect(relay.addr).await.unwrap()).await
}

/// The WebSocket handshake over an open TCP stream.
pub(crate) async fn raw_websocket_on(mut s: TcpStream) -> TcpStream {
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    s
}

/// Reads the hello and authenticates a raw WebSocket as `mb`.
pub(crate) async fn raw_auth(s: &mut TcpStream, mb: &Mailbox) {
    assert!(matches!(raw_recv(s).await, ServerFrame::Hello { .. }));
    raw_send(s, &ClientFrame::Challenge.encode(1).unwrap()).await;
    let ServerFrame::Challenge { challenge } = raw_recv(s).await else {
        panic!("challenge")
    };
    let auth = ClientFrame::Auth {
        mailbox: mb.id(),
        signature: mb.sign(&northstar_core::frame::auth_message(&challenge, &mb.id())),
    };
    raw_send(s, &auth.encode(2).unwrap()).await;
    assert_eq!(raw_recv(s).await, ServerFrame::Ok);
}

/// A masked binary WebSocket frame header for `len` payload bytes (mask 0).
fn frame_header(len: usize) -> Vec<u8> {
    let mut h = vec![0x82];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=0xFFFF => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// Sends one whole frame over a raw WebSocket.
pub(crate) async fn raw_send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(&frame_header(bytes.len())).await.unwrap();
    s.write_all(bytes).await.unwrap();
}

/// Reads one server frame (unmasked, unfragmented) from a raw WebSocket,
/// skipping pings.
pub(crate) async fn raw_recv(s: &mut TcpStream) -> ServerFrame {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await.unwrap();
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.unwrap();
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        if h[0] & 0x0F == 2 {
            return ServerFrame::decode(&payload).unwrap().1;
        }
    }
}

#[tokio::test]
async fn a_client_vanishing_mid_transfer_leaves_nothing_half_written() {
    let relay = fast_relay(&[]).await;
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    owner
        .request(ClientFrame::PutState {
            ttl_hours: 24,
            blob: b"state v1".to_vec(),
        })
        .await
        .unwrap();
    // 1. A deposit batch cut off half-way through its frame.
    let batch: Vec<_> = (0..32u8).map(|i| seal(mb.id(), &[i; 900])).collect();
    let bytes = ClientFrame::Deposit {
        pow_nonce: None,
        envelopes: batch,
    }
    .encode(7)
    .unwrap();
    let mut s = raw_websocket(&relay).await;
    s.write_all(&frame_header(bytes.len())).await.unwrap();
    s.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    drop(s);
    // 2. The owner's own device replacing its state, authenticated, cut off
    //    one byte before the end of the frame.
    let mut s = raw_websocket(&relay).await;
    raw_auth(&mut s, &mb).await;
    let put = ClientFrame::PutState {
        ttl_hours: 24,
        blob: vec![0xAB; 50_000],
    }
    .encode(3)
    .unwrap();
    s.write_all(&frame_header(put.len())).await.unwrap();
    s.write_all(&put[..put.len() - 1]).await.unwrap();
    drop(s);
    // 3. A complete batch whose sender vanishes before reading the reply:
    //    all of it or none of it is stored.
    let whole: Vec<_> = (0..32u8).map(|i| seal(mb.id(), &[i; 100])).collect();
    let bytes = ClientFrame::Deposit {
        pow_nonce: None,
        envelopes: whole,
    }
    .encode(9)
    .unwrap();
    let mut s = raw_websocket(&relay).await;
    assert!(matches!(raw_recv(&mut s).await, ServerFrame::Hello { .. }));
    raw_send(&mut s, &bytes).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ServerFrame::Subscribed { pending } = owner.request(ClientFrame::Subscribe).await.unwrap()
    else {
        panic!("subscribe")
    };
    println!("vanished mid-transfer: {pending} envelopes stored (0 or 32 allowed)");
    assert!(
        pending == 0 || pending == 32,
        "a batch was half stored: {pending}"
    );
    match owner.request(ClientFrame::GetState).await.unwrap() {
        ServerFrame::State { blob, .. } => assert_eq!(blob, b"state v1"),
        other => panic!("state lost: {other:?}"),
    }
    // The relay is healthy and holds no stray connection slots.
    let (status, _, _) = relay.http_get("/health").await.unwrap();
    assert_eq!(status, 200);
}
