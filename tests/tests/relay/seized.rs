//! What a seized data directory still shows (issue 17): the order of
//! envelopes across mailboxes, file modes, and ciphertext that was deleted.

use northstar_core::frame::ServerFrame;
use northstar_e2e::{RelayProcess, seal};

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
