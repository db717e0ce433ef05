//! What a seized data directory still shows (issue 17): the order of
//! envelopes across mailboxes, who may read the files, and ciphertext that
//! was deleted.

use std::time::{Duration, Instant};

use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::sealed::Envelope;
use northstar_e2e::{Mailbox, RelayProcess, scan, seal};

use crate::durability::registered;

#[tokio::test]
async fn stored_envelopes_are_numbered_per_mailbox_with_no_order_across_mailboxes() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    if !relay.uses_sqlite_file() {
        println!("skipped: reads the SQLite file (PostgreSQL: relay/src/store/postgres.rs tests)");
        return;
    }
    let (a, b) = (registered(&relay).await, registered(&relay).await);
    let mut d = relay.client().await.unwrap();
    // Interleaved: a b a b a b a, one at a time, then one batch for both.
    for i in 0..7u8 {
        let to = if i % 2 == 0 { a.id() } else { b.id() };
        let r = d.deposit(vec![seal(to, &[i; 40])], false).await.unwrap();
        assert!(matches!(r, ServerFrame::Deposited { .. }), "{r:?}");
    }
    let r = d
        .deposit(vec![seal(a.id(), b"x"), seal(b.id(), b"y")], false)
        .await
        .unwrap();
    assert!(
        matches!(r, ServerFrame::Deposited { accepted: 2, .. }),
        "{r:?}"
    );

    // The live database, as someone copying the data directory reads it.
    let db = rusqlite::Connection::open_with_flags(
        relay.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(Vec<u8>, i64)> = db
        .prepare("SELECT mailbox, seq FROM envelopes")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 9);
    let seqs = |m: &[u8]| -> Vec<i64> {
        let mut s: Vec<i64> = rows
            .iter()
            .filter(|(id, _)| id == m)
            .map(|(_, s)| *s)
            .collect();
        s.sort_unstable();
        s
    };
    // Each mailbox counts from 1 on its own: the numbers of a and b say
    // nothing about which of them received first.
    assert_eq!(seqs(a.id().as_bytes()), vec![1, 2, 3, 4, 5]);
    assert_eq!(seqs(b.id().as_bytes()), vec![1, 2, 3, 4]);
    // No hidden global order either: no rowid, no AUTOINCREMENT counter.
    assert!(
        db.prepare("SELECT rowid FROM envelopes").is_err(),
        "the envelope table has a rowid"
    );
    let sequence_tables: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sequence_tables, 0);
    // The table's own order is by mailbox: all of one, then all of the other.
    let order: Vec<&[u8]> = rows.iter().map(|(m, _)| m.as_slice()).collect();
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "rows come grouped by mailbox");
}

#[tokio::test]
async fn every_file_the_relay_creates_is_its_users_own() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let relay = RelayProcess::start_in(&data, &[]).await.unwrap();
    if !relay.uses_sqlite_file() {
        println!("skipped: the database files of SQLite (PostgreSQL keeps its own)");
        return;
    }
    let mb = registered(&relay).await;
    let mut d = relay.client().await.unwrap();
    d.deposit(vec![seal(mb.id(), b"x")], false).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for f in relay.sqlite_files() {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    // A database an older relay left readable to everyone is tightened.
    let tmp2 = tempfile::tempdir().unwrap();
    let data2 = tmp2.path().join("data");
    std::fs::create_dir(&data2).unwrap();
    let db = data2.join("northstar.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let relay2 = RelayProcess::start_in(&data2, &[]).await.unwrap();
    registered(&relay2).await;
    for f in relay2.sqlite_files() {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

#[tokio::test]
async fn acknowledged_ciphertext_leaves_a_copy_of_the_live_files_within_the_bound() {
    const ERASE_WITHIN: Duration = Duration::from_secs(1);
    let relay = RelayProcess::start(&["--erase-within-secs", "1"])
        .await
        .unwrap();
    if !relay.uses_sqlite_file() {
        println!("skipped: the SQLite files (PostgreSQL: see docs/THREAT_MODEL.md)");
        return;
    }
    let mb = Mailbox::random();
    let mut owner = relay.client().await.unwrap();
    owner.register(&mb, false).await.unwrap();
    let mut d = relay.client().await.unwrap();
    // Small, page-sized and overflowing envelopes; the last one is kept.
    let sizes = [40usize, 900, 3000, 9000, 30_000, 2000];
    let envelopes: Vec<Envelope> = sizes.iter().map(|n| seal(mb.id(), &vec![7; *n])).collect();
    for e in &envelopes {
        d.deposit(vec![e.clone()], false).await.unwrap();
    }
    let (gone, kept) = envelopes.split_at(sizes.len() - 1);
    let copy = relay.copy_of_sqlite_files();
    for e in &envelopes {
        assert!(
            scan::holds_a_piece_of(&copy, e.ciphertext()),
            "the scan sees stored ciphertext"
        );
    }
    owner.request(ClientFrame::Subscribe).await.unwrap();
    let got = owner.deliveries(envelopes.len()).await.unwrap();
    let ids: Vec<_> = got
        .iter()
        .filter(|(_, e)| gone.contains(e))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        owner.request(ClientFrame::Ack { ids }).await.unwrap(),
        ServerFrame::Acked {
            deleted: gone.len() as u32
        }
    );
    let acked = Instant::now();
    let clean = |copy: &[u8]| {
        gone.iter()
            .all(|e| !scan::holds_a_piece_of(copy, e.ciphertext()))
    };
    // When the first clean copy was taken (scanning a copy takes a while
    // in a debug build: it does not count).
    let mut took = acked.elapsed();
    let mut copy = relay.copy_of_sqlite_files();
    while !clean(&copy) && acked.elapsed() < ERASE_WITHIN + Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        took = acked.elapsed();
        copy = relay.copy_of_sqlite_files();
    }
    println!(
        "acknowledged ciphertext gone from a copy of the live files after {took:?} (bound {ERASE_WITHIN:?})"
    );
    assert!(
        clean(&copy),
        "acknowledged ciphertext is still in the files after {took:?}"
    );
    assert!(
        took <= ERASE_WITHIN + Duration::from_secs(2),
        "took {took:?}, bound {ERASE_WITHIN:?}"
    );
    assert!(
        scan::holds_a_piece_of(&copy, kept[0].ciphertext()),
        "the envelope not acknowledged is still there"
    );
}
