//! Resource exhaustion against the running relay: slow and silent clients
//! (slowloris), clients that never read, connection floods, one mailbox
//! filled to its quota. Each test prints its figures (connections held,
//! frames accepted and refused, resident memory and open descriptors before
//! and after, from /proc) for docs/RELIABILITY.md, and asserts the bound
//! the limit promises, not a timing.

use std::time::{Duration, Instant};

use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_core::sealed::Envelope;
use northstar_e2e::{Client, Mailbox, RelayProcess, seal};
use rand_core::{OsRng, RngCore};

use crate::durability::{fast_relay, registered};
use crate::faults::{raw_auth, raw_send, raw_websocket_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory (KiB) and open descriptors of the relay.
fn usage(relay: &RelayProcess) -> (u64, usize) {
    (relay.rss_kib().unwrap_or(0), relay.open_fds().unwrap_or(0))
}

/// Whether the peer closed `s` (EOF or reset) within `wait`.
async fn closed_by_peer(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_capped_and_timed_out() {
    const SLOW: usize = 120;
    let relay = RelayProcess::start(&[
        "--idle-timeout-secs",
        "5",
        "--max-connections",
        "40",
        "--max-tcp-connections",
        "80",
    ])
    .await
    .unwrap();
    let before = usage(&relay);
    let t = Instant::now();
    // Each opens a request and never finishes its headers.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        let _ = s
            .write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websock")
            .await;
        slow.push(s);
    }
    // Time for the relay to accept (or refuse) them all; well inside the
    // idle timeout, which the counting below must also finish within.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = usage(&relay);
    // Beyond the TCP cap, connections are closed at once.
    let mut refused = 0;
    for s in slow.iter_mut() {
        if closed_by_peer(s, Duration::from_millis(20)).await {
            refused += 1;
        }
    }
    let held = SLOW - refused;
    // The idle timeout frees the held ones; then a normal client gets in.
    let mut timed_out = 0;
    for s in slow.iter_mut() {
        if closed_by_peer(s, Duration::from_secs(10)).await {
            timed_out += 1;
        }
    }
    let freed_after = t.elapsed();
    let mut c = relay.client().await.unwrap();
    c.challenge().await.unwrap();
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = usage(&relay);
    println!(
        "slowloris: {SLOW} half-sent requests, {held} held (TCP cap 80), {refused} closed at once, \
         all {timed_out} closed {freed_after:?} after the first was opened (idle timeout 5 s); \
         RSS {} -> {} -> {} KiB, fds {} -> {} -> {}",
        before.0, during.0, after.0, before.1, during.1, after.1
    );
    assert!(held <= 80, "the TCP cap held");
    assert!(refused >= SLOW - 80);
    assert_eq!(timed_out, SLOW, "every silent connection was closed");
    assert!(
        during.1 <= before.1 + 80 + 8,
        "descriptors bounded by the cap"
    );
}

#[tokio::test]
async fn live_idle_subscribers_are_kept_silent_peers_are_cut() {
    let relay = RelayProcess::start(&["--idle-timeout-secs", "3"])
        .await
        .unwrap();
    let mb = Mailbox::random();
    let mut live = relay.client().await.unwrap();
    live.register(&mb, false).await.unwrap();
    live.request(ClientFrame::Subscribe).await.unwrap();
    // A WebSocket that never reads, so never answers the relay's pings.
    let mut silent = relay.client().await.unwrap();
    // Reading (which answers pings) for twice the idle timeout.
    assert!(
        live.next_push(Duration::from_secs(7))
            .await
            .unwrap()
            .is_none(),
        "nothing was pushed"
    );
    live.challenge().await.unwrap();
    assert!(
        silent.is_closed_within(Duration::from_millis(500)).await,
        "a peer that answered no ping for the idle timeout is closed"
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_and_memory_stays_bounded() {
    // 320 x 60 kB = 19 MB for it: more than the delivery window (256).
    const ENVELOPES: usize = 320;
    const SIZE: usize = 60_000;
    let relay = fast_relay(&["--send-timeout-secs", "2"]).await;
    let mb = registered(&relay).await;
    // A subscriber with a small receive buffer (no kernel autotuning to
    // absorb megabytes) that never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(8192).unwrap();
    let mut reader = raw_websocket_on(sock.connect(relay.addr).await.unwrap()).await;
    raw_auth(&mut reader, &mb).await;
    raw_send(&mut reader, &ClientFrame::Subscribe.encode(3).unwrap()).await;
    // Deliveries pushed at a subscriber that reads none of them.
    let mut d = relay.client().await.unwrap();
    let before = usage(&relay);
    let t = Instant::now();
    let mut accepted = 0;
    for _ in 0..ENVELOPES / 32 {
        // Opaque random bytes (sealing 19 MB in a debug build is slow).
        let batch: Vec<_> = (0..32)
            .map(|_| {
                let mut ct = vec![0u8; SIZE];
                OsRng.fill_bytes(&mut ct);
                Envelope::from_parts(mb.id(), ct).unwrap()
            })
            .collect();
        if let ServerFrame::Deposited { accepted: n, .. } = d.deposit(batch, false).await.unwrap() {
            accepted += usize::from(n);
        }
    }
    let deposit_time = t.elapsed();
    // The relay gives up on the stalled socket after the send timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = usage(&relay);
    // What the stalled client can still read is what sat in the kernel's
    // buffers when it was cut; then the connection ends.
    let mut buf = vec![0u8; 1 << 16];
    let mut readable = 0usize;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => readable += n,
            Err(_) => break false,
        }
    };
    let growth = after.0.saturating_sub(before.0);
    println!(
        "never-reading subscriber: {accepted} envelopes of {SIZE} B ({} MB) deposited for it in {deposit_time:?}; \
         cut after the send timeout with {} kB still in kernel buffers; \
         relay RSS {} -> {} KiB (growth {growth} KiB), fds {} -> {}",
        accepted * SIZE / 1_000_000,
        readable / 1000,
        before.0,
        after.0,
        before.1,
        after.1
    );
    assert_eq!(accepted, ENVELOPES);
    // Bounded by the delivery window (256 envelopes of at most 64 KiB, read
    // from the store once), never by what is queued for it: the relay
    // writes one frame at a time and waits for the socket.
    assert!(growth < 24 * 1024, "memory grew by {growth} KiB");
    assert!(ended, "the stalled connection was closed");
    assert!(readable < accepted * SIZE / 2, "it was cut, not served");
    assert_eq!(after.1 + 1, before.1, "its descriptor was released");
    drop(reader);
    let mut back = relay.client().await.unwrap();
    back.auth(&mb).await.unwrap();
    let ServerFrame::Subscribed { pending } = back.request(ClientFrame::Subscribe).await.unwrap()
    else {
        panic!("subscribe")
    };
    assert_eq!(
        pending as usize,
        ENVELOPES.min(256),
        "all kept (the count is capped at the window)"
    );
}

#[tokio::test]
async fn a_connection_flood_gets_503_past_the_cap_and_everything_is_released() {
    const CAP: usize = 50;
    const FLOOD: usize = 200;
    let relay = RelayProcess::start(&["--max-connections", "50"])
        .await
        .unwrap();
    let before = usage(&relay);
    let attempts: Vec<_> = (0..FLOOD)
        .map(|_| {
            let url = relay.url();
            tokio::spawn(async move { Client::connect(&url).await })
        })
        .collect();
    let mut held = Vec::new();
    let mut refused = 0;
    for a in attempts {
        match a.await.unwrap() {
            Ok(c) => held.push(c),
            Err(_) => refused += 1,
        }
    }
    let during = usage(&relay);
    for c in held.iter_mut().take(5) {
        c.challenge().await.unwrap();
    }
    let n_held = held.len();
    for c in held {
        c.close().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = usage(&relay);
    let mut c = relay.client().await.unwrap();
    c.challenge().await.unwrap();
    println!(
        "connection flood: {FLOOD} attempts, {n_held} held (cap {CAP}), {refused} refused with 503; \
         RSS {} -> {} -> {} KiB, fds {} -> {} -> {}",
        before.0, during.0, after.0, before.1, during.1, after.1
    );
    assert_eq!(n_held, CAP);
    assert_eq!(refused, FLOOD - CAP);
    assert!(after.1 <= before.1 + 4, "descriptors released");
}

#[tokio::test]
async fn one_full_mailbox_does_not_affect_another() {
    let relay = fast_relay(&["--mailbox-max-envelopes", "100"]).await;
    let (victim, other) = (registered(&relay).await, registered(&relay).await);
    let mut flood = relay.client().await.unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..150u32 {
        match flood
            .deposit(vec![seal(victim.id(), &i.to_be_bytes())], false)
            .await
            .unwrap()
        {
            ServerFrame::Deposited { .. } => accepted += 1,
            ServerFrame::Error {
                code: ErrorCode::QuotaExceeded,
            } => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut s = relay.client().await.unwrap();
    let ok = s
        .deposit(vec![seal(other.id(), b"still fine")], false)
        .await
        .unwrap();
    println!(
        "quota flood: {accepted} accepted, {refused} refused quota_exceeded; other mailbox: {}",
        ok.name()
    );
    assert_eq!((accepted, refused), (100, 50));
    assert!(matches!(ok, ServerFrame::Deposited { accepted: 1, .. }));
}
