//! Issue 21: a counselor's resolve-and-purge end to end, with the real
//! relay and the real `northstar` binary — a seeker sends a file, Ana
//! purges the case with `counselor purge <case> --yes`: the blob's bytes
//! are gone from the relay's files (database and WAL, or a pg_dump), a
//! colleague's device (Ben's) no longer has the conversation, and the
//! seeker is told the case is resolved. A `DeleteBlob` with a wrong token
//! is refused and deletes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use northstar_core::attachment::{BlobDeleteToken, BlobId};
use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_e2e::cli::Cli;
use northstar_e2e::{RelayProcess, scan};

const ADMIN_PASS: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const BEN: &str = "ben passphrase 12\n";
const QUESTION: &str = "Tengo una cita en la corte. Que hago?";

/// An organisation with two counselors (Ana and Ben) of one team;
/// (ana, ben, seeker).
async fn organisation(relay_url: String, home: &Path) -> (Cli, Cli, Cli) {
    let admin = Cli {
        relay: relay_url.clone(),
        home: home.join("admin"),
        org: None,
    };
    let org = admin
        .ok(&["--json", "admin", "init"], &ADMIN_PASS.repeat(2))
        .await
        .json()["org_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let cli = |name: &str| Cli {
        relay: relay_url.clone(),
        home: home.join(name),
        org: Some(org.clone()),
    };
    let (ana, ben, seeker) = (cli("ana"), cli("ben"), cli("seeker"));
    for (who, pass, label) in [(&ana, ANA, "ana"), (&ben, BEN, "ben")] {
        let dev = who.counselor_init(pass).await;
        admin
            .add_device("unaccompanied-minors", label, &dev, ADMIN_PASS)
            .await;
    }
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;
    ana.ok(&["counselor", "sync"], ANA).await;
    ben.ok(&["counselor", "sync"], BEN).await;
    (ana, ben, seeker)
}

/// The blob ids the relay's SQLite database holds (read-only, beside the
/// running relay: WAL readers do not block it).
fn blob_ids(relay: &RelayProcess) -> Vec<BlobId> {
    let db = rusqlite::Connection::open_with_flags(
        relay.db_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db.prepare("SELECT id FROM blobs").unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|id| BlobId::from_bytes(id.unwrap().try_into().unwrap()))
        .collect()
}

fn stored(relay: &RelayProcess) -> Vec<u8> {
    relay
        .stored_files()
        .unwrap()
        .into_iter()
        .flat_map(|(_, b, _)| b)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counselors_purge_deletes_the_file_from_the_relay_and_the_case_from_every_device() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    if !relay.uses_sqlite_file() {
        // The blob id is read from the SQLite file; the store contract test
        // covers DeleteBlob on PostgreSQL.
        eprintln!("skipped: not the SQLite backend");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ana, ben, seeker) = organisation(relay.url(), tmp.path()).await;
    let file = tmp.path().join("maria-notice.pdf");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..100_000u32).map(|i| (i % 251) as u8));
    std::fs::write(&file, &pdf).unwrap();

    let start = seeker
        .ok(
            &[
                "--json",
                "seeker",
                "start",
                "--team",
                "unaccompanied-minors",
                "--language",
                "es",
                "--attach",
                file.to_str().unwrap(),
            ],
            &format!("{QUESTION}\n"),
        )
        .await;
    let codename = start.json()["codename"].as_str().unwrap().to_owned();
    ana.ok(&["counselor", "sync"], ANA).await;
    ben.ok(&["counselor", "sync"], BEN).await;
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    let ben_inbox = ben.ok(&["--json", "counselor", "inbox"], BEN).await.json();
    assert_eq!(ben_inbox["conversations"][0]["id"], conv.as_str());

    // The blob and one of its sealed chunks, as the relay stores them.
    let blobs = blob_ids(&relay);
    assert_eq!(blobs.len(), 1, "one file, one blob");
    let blob = blobs[0];
    let mut c = relay.client().await.unwrap();
    let chunk = match c
        .request(ClientFrame::GetChunk { blob, index: 0 })
        .await
        .unwrap()
    {
        ServerFrame::Chunk { chunk, .. } => chunk,
        other => panic!("{other:?}"),
    };
    assert!(scan::holds_a_piece_of(&stored(&relay), &chunk));

    // A wrong token (here: the blob id itself) is refused; nothing changes.
    assert_eq!(
        c.request(ClientFrame::DeleteBlob {
            blob,
            token: BlobDeleteToken::from_bytes(*blob.as_bytes()),
        })
        .await
        .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::BlobDeleteRefused
        }
    );
    assert!(matches!(
        c.request(ClientFrame::GetChunk { blob, index: 0 })
            .await
            .unwrap(),
        ServerFrame::Chunk { .. }
    ));

    // Without --yes nothing is deleted.
    ana.fails(&["counselor", "purge", &conv], ANA, "nothing was deleted")
        .await;
    assert_eq!(blob_ids(&relay), vec![blob]);

    // Ana purges.
    let purged = ana
        .ok(&["--json", "counselor", "purge", &conv, "--yes"], ANA)
        .await
        .json();
    assert_eq!(purged["ok"], true);
    assert!(blob_ids(&relay).is_empty(), "the blob row is gone");
    assert_eq!(
        c.request(ClientFrame::GetChunk { blob, index: 0 })
            .await
            .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::NotFound
        }
    );
    // The chunk's bytes leave the database and the WAL (erased within the
    // relay's erase_within, 5 s by default).
    let mut copy = stored(&relay);
    for _ in 0..200 {
        if !scan::holds_a_piece_of(&copy, &chunk) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        copy = stored(&relay);
    }
    assert!(
        !scan::holds_a_piece_of(&copy, &chunk),
        "the relay's files still hold the file's bytes"
    );
    // The token is checked before anything else, gone or not.
    assert_eq!(
        c.request(ClientFrame::DeleteBlob {
            blob,
            token: BlobDeleteToken::from_bytes([0; 32]),
        })
        .await
        .unwrap(),
        ServerFrame::Error {
            code: ErrorCode::BlobDeleteRefused
        },
        "a wrong token is refused even for a blob already gone"
    );

    // Ana's device no longer has it.
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    assert!(inbox["conversations"].as_array().unwrap().is_empty());
    // Ben's device deletes it at its next sync, and says so.
    let synced = ben.ok(&["--json", "counselor", "sync"], BEN).await.json();
    let events = synced["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "purged" && e["conversation"] == conv.as_str()),
        "{synced}"
    );
    let inbox = ben.ok(&["--json", "counselor", "inbox"], BEN).await.json();
    assert!(inbox["conversations"].as_array().unwrap().is_empty());

    // The seeker is told the case is resolved and keeps its own copy.
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    assert_eq!(read["status"]["resolved"], true, "{read}");
    assert!(
        relay.logs().contains("delete_blob"),
        "the relay logged the command name"
    );
}

/// The attack: someone who learned a blob id (from the relay's database, a
/// log, a compelled operator) tries to delete the file with guessed tokens
/// — the id itself, zeros, the id's hash. Every try is refused with
/// `blob_delete_refused` and the file stays whole for the team.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_who_learned_a_blob_id_cannot_delete_the_file() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    if !relay.uses_sqlite_file() {
        eprintln!("skipped: not the SQLite backend");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ana, _ben, seeker) = organisation(relay.url(), tmp.path()).await;
    let file = tmp.path().join("carta.pdf");
    std::fs::write(&file, b"%PDF-1.7\nuna carta").unwrap();
    seeker
        .ok(
            &[
                "seeker",
                "start",
                "--team",
                "unaccompanied-minors",
                "--language",
                "es",
                "--attach",
                file.to_str().unwrap(),
            ],
            &format!("{QUESTION}\n"),
        )
        .await;
    let blob = blob_ids(&relay)[0];
    let mut c = relay.client().await.unwrap();
    let hashed = BlobDeleteToken::from_bytes(*blob.as_bytes()).blob_id();
    for guess in [*blob.as_bytes(), [0; 32], *hashed.as_bytes()] {
        assert_eq!(
            c.request(ClientFrame::DeleteBlob {
                blob,
                token: BlobDeleteToken::from_bytes(guess),
            })
            .await
            .unwrap(),
            ServerFrame::Error {
                code: ErrorCode::BlobDeleteRefused
            }
        );
    }
    assert_eq!(blob_ids(&relay), vec![blob], "nothing was deleted");
    // The team still gets the whole file.
    ana.ok(&["counselor", "sync"], ANA).await;
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    let out = tmp.path().join("saved");
    std::fs::create_dir_all(&out).unwrap();
    ana.ok(
        &[
            "counselor",
            "save-attachment",
            &conv,
            "--file",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
        ANA,
    )
    .await;
    assert_eq!(
        std::fs::read(out.join("carta.pdf")).unwrap(),
        b"%PDF-1.7\nuna carta"
    );
}
