//! Issue 21: attachments end to end, with the real relay and the real
//! `northstar` binary — a seeker's document and GPS-tagged photo reach the
//! counselor (the document byte for byte, the photo without its metadata),
//! a counselor's form reaches the seeker who comes back with the codename,
//! the relay's files and logs hold no plaintext and no file name, and an
//! upload cut off by a relay crash resumes where it stopped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use northstar_e2e::RelayProcess;
use northstar_e2e::cli::Cli;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ADMIN_PASS: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const QUESTION: &str = "Tengo una cita en la corte. Que hago?";
/// Bytes that appear in every plaintext file of the tests and must never
/// reach the relay.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-MARIA-LOPEZ-A123456789";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A PDF-looking file of `len` bytes full of the marker.
fn pdf(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n/Author (Maria Lopez)\n".to_vec();
    while v.len() < len {
        v.extend_from_slice(MARKER);
        v.extend_from_slice(format!(" {} ", v.len()).as_bytes());
    }
    v.truncate(len);
    v
}

/// An organisation with one counselor (Ana) on the relay; (admin, ana, seeker).
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
    let ana = Cli {
        relay: relay_url.clone(),
        home: home.join("ana"),
        org: Some(org.clone()),
    };
    let seeker = Cli {
        relay: relay_url,
        home: home.join("seeker"),
        org: Some(org),
    };
    let dev = ana.counselor_init(ANA).await;
    admin
        .add_device("unaccompanied-minors", "ana", &dev, ADMIN_PASS)
        .await;
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;
    ana.ok(&["counselor", "sync"], ANA).await;
    (admin, ana, seeker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_both_ways_arrive_whole_photos_without_gps_and_the_relay_keeps_no_plaintext_or_name()
{
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_, ana, seeker) = organisation(relay.url(), tmp.path()).await;
    let files = tmp.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let photo = northstar_core::metadata::samples::jpeg_with_gps();
    let photo_path = files.join("maria-passport-photo.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    let notice = pdf(700_000);
    let notice_path = files.join("maria-lopez-notice-to-appear.pdf");
    std::fs::write(&notice_path, &notice).unwrap();

    // The seeker starts with the photo, and is told it is cleaned.
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
                photo_path.to_str().unwrap(),
            ],
            &format!("{QUESTION}\n"),
        )
        .await;
    assert!(
        start.stderr.contains("cleaned before it is sent"),
        "{}",
        start.stderr
    );
    let codename = start.json()["codename"].as_str().unwrap().to_owned();
    // Then writes again with the document, and is warned it goes as it is.
    let write = seeker
        .ok(
            &["seeker", "write", "--attach", notice_path.to_str().unwrap()],
            &format!("{codename}\n"),
        )
        .await;
    assert!(
        write.stderr.contains("Documents can carry names"),
        "{}",
        write.stderr
    );

    // The counselor sees both and saves them.
    ana.ok(&["counselor", "sync"], ANA).await;
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    let texts: Vec<String> = inbox["conversations"][0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts[0], QUESTION);
    assert!(texts[1].contains("maria-passport-photo.jpg"), "{texts:?}");
    assert!(
        texts[2].contains("maria-lopez-notice-to-appear.pdf"),
        "{texts:?}"
    );
    let saved = tmp.path().join("saved-by-ana");
    std::fs::create_dir_all(&saved).unwrap();
    for n in ["1", "2"] {
        ana.ok(
            &[
                "counselor",
                "save-attachment",
                &conv,
                "--file",
                n,
                "--out",
                saved.to_str().unwrap(),
            ],
            ANA,
        )
        .await;
    }
    let got_photo = std::fs::read(saved.join("maria-passport-photo.jpg")).unwrap();
    assert_eq!(got_photo, northstar_core::metadata::samples::jpeg_cleaned());
    for gone in [
        &b"GPS"[..],
        b"Exif",
        b"SN-4C0FFEE12345",
        b"2026:11:30",
        b"Maria",
    ] {
        assert!(
            !contains(&got_photo, gone),
            "{:?} reached the counselor",
            String::from_utf8_lossy(gone)
        );
    }
    assert_eq!(
        std::fs::read(saved.join("maria-lopez-notice-to-appear.pdf")).unwrap(),
        notice,
        "the PDF arrives byte for byte"
    );

    // The counselor sends a form; the seeker comes back with the codename and saves it.
    let form = pdf(150_000);
    let form_path = files.join("I-589-form-for-maria.pdf");
    std::fs::write(&form_path, &form).unwrap();
    ana.ok(
        &[
            "counselor",
            "reply",
            &conv,
            "--attach",
            form_path.to_str().unwrap(),
        ],
        ANA,
    )
    .await;
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    let msgs = read["messages"].as_array().unwrap();
    assert!(
        msgs.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("I-589-form-for-maria.pdf")
    );
    let seeker_dir = tmp.path().join("saved-by-seeker");
    std::fs::create_dir_all(&seeker_dir).unwrap();
    seeker
        .ok(
            &[
                "seeker",
                "save-attachment",
                "--file",
                "3",
                "--out",
                seeker_dir.to_str().unwrap(),
            ],
            &format!("{codename}\n"),
        )
        .await;
    assert_eq!(
        std::fs::read(seeker_dir.join("I-589-form-for-maria.pdf")).unwrap(),
        form
    );

    // What the relay holds (database and WAL, or a pg_dump) and logged.
    let mut scanned = 0;
    for (label, bytes, _) in relay.stored_files().unwrap() {
        scanned += bytes.len();
        for needle in [
            MARKER,
            b"Maria Lopez",
            b"maria-passport-photo",
            b"maria-lopez-notice",
            b"I-589-form",
            b"application/pdf",
            b"image/jpeg",
            b"SN-4C0FFEE12345",
            b"%PDF-1.7",
            b"JFIF",
        ] {
            assert!(
                !contains(&bytes, needle),
                "the relay's {label} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    assert!(
        scanned > 700_000,
        "the blobs were scanned ({scanned} bytes)"
    );
    let logs = relay.logs();
    for needle in ["maria", "Maria", "I-589", "pdf", "jpeg", "PLAINTEXT"] {
        assert!(!logs.contains(needle), "the relay logged {needle:?}");
    }
    assert!(
        logs.contains("put_chunk"),
        "the relay logged the command names only"
    );
}

/// A TCP proxy to the relay, whose target can change (a restarted relay
/// listens on a new port); counts the bytes clients send through it.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    sent: Arc<AtomicU64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let sent = Arc::new(AtomicU64::new(0));
        let (t, s) = (target.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let to = *t.lock().unwrap();
                let s = s.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            s.fetch_add(n as u64, Ordering::SeqCst);
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    // Whichever side ends, both close.
                    tokio::select! {
                        () = up => {}
                        () = down => {}
                    }
                });
            }
        });
        Proxy { addr, target, sent }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_by_a_relay_crash_resumes_where_it_stopped() {
    let mut relay = RelayProcess::start(&[]).await.unwrap();
    let proxy = Proxy::start(relay.addr).await;
    let url = format!("ws://{}/ws", proxy.addr);
    let tmp = tempfile::tempdir().unwrap();
    let (_, ana, seeker) = organisation(url, tmp.path()).await;
    let start = seeker.seeker_start("unaccompanied-minors", QUESTION).await;
    let codename = start["codename"].as_str().unwrap().to_owned();

    // 4 MiB: 64 chunks.
    let size = 4 * 1024 * 1024;
    let scan = pdf(size);
    let path = tmp.path().join("scan.pdf");
    std::fs::write(&path, &scan).unwrap();
    let before = proxy.sent.load(Ordering::SeqCst);
    let upload = {
        let seeker = Cli {
            relay: seeker.relay.clone(),
            home: seeker.home.clone(),
            org: seeker.org.clone(),
        };
        let path = path.clone();
        let codename = codename.clone();
        tokio::spawn(async move {
            seeker
                .run(
                    &["seeker", "write", "--attach", path.to_str().unwrap()],
                    &format!("{codename}\n"),
                )
                .await
        })
    };
    // Halfway through, the relay dies (kill -9) and comes back (new port).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while proxy.sent.load(Ordering::SeqCst) - before < (size / 2) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never got halfway"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.kill9().await.unwrap();
    let cut_at = proxy.sent.load(Ordering::SeqCst) - before;
    let relay = relay.restart().await.unwrap();
    *proxy.target.lock().unwrap() = relay.addr;
    let run = tokio::time::timeout(Duration::from_secs(180), upload)
        .await
        .expect("the upload finished")
        .unwrap();
    assert!(
        run.ok,
        "the upload resumed and finished:\n{}\n{}",
        run.stdout, run.stderr
    );
    let total = proxy.sent.load(Ordering::SeqCst) - before;
    // Resumed, not restarted: what was sent after the crash is about the
    // half that was left, not the whole file again.
    assert!(
        total < (size as u64) + (size as u64) / 4,
        "sent {total} bytes for a {size}-byte file (cut at {cut_at})"
    );
    let logs = relay.logs();
    assert!(
        logs.contains("blob_status"),
        "the client asked what the relay held"
    );
    let puts_after = logs.matches("put_chunk").count();
    assert!(
        puts_after < 48,
        "the restarted relay got {puts_after} chunks of 64: the upload resumed"
    );
    // The counselor gets the whole file, intact.
    ana.ok(&["counselor", "sync"], ANA).await;
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    let out = tmp.path().join("got.pdf");
    ana.ok(
        &[
            "counselor",
            "save-attachment",
            &conv,
            "--out",
            out.to_str().unwrap(),
        ],
        ANA,
    )
    .await;
    assert_eq!(std::fs::read(&out).unwrap(), scan);
}

/// Raw frames against the real relay: chunks are stored once, reported for
/// resuming, served by blob id to a connection with no session, refused for
/// a counselor intake mailbox, and go with the seeker's mailbox — leaving
/// no piece in the SQLite files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_go_with_the_mailbox_and_leave_no_piece_in_the_files() {
    use northstar_core::attachment::{BlobId, CHUNK_SEALED_LEN};
    use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
    use rand_core::RngCore;

    let relay = RelayProcess::start(&["--erase-within-secs", "0"])
        .await
        .unwrap();
    let mut owner = relay.client().await.unwrap();
    let seeker = northstar_e2e::Mailbox::random();
    owner.register(&seeker, false).await.unwrap();
    let blob = BlobId::from_bytes([7; 32]);
    let mut chunk = vec![0u8; CHUNK_SEALED_LEN];
    rand_core::OsRng.fill_bytes(&mut chunk);
    let put = |index: u16| ClientFrame::PutChunk {
        mailbox: seeker.id(),
        blob,
        chunk_count: 2,
        index,
        chunk: chunk.clone(),
    };
    // From a connection with no session (as a counselor uploads).
    let mut anon = relay.client().await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            anon.request(put(0)).await.unwrap(),
            ServerFrame::ChunkStored { index: 0, held: 1 },
            "stored once, a retry changes nothing"
        );
    }
    assert_eq!(
        anon.request(ClientFrame::BlobStatus { blob })
            .await
            .unwrap(),
        ServerFrame::BlobChunks {
            present: vec![true, false]
        }
    );
    assert_eq!(
        anon.request(ClientFrame::GetChunk { blob, index: 0 })
            .await
            .unwrap(),
        ServerFrame::Chunk {
            index: 0,
            chunk: chunk.clone()
        }
    );
    anon.expect_error(
        ClientFrame::GetChunk { blob, index: 1 },
        ErrorCode::NotFound,
    )
    .await
    .unwrap();
    // Another count for the same blob: refused.
    let mut other = put(1);
    if let ClientFrame::PutChunk { chunk_count, .. } = &mut other {
        *chunk_count = 3;
    }
    anon.expect_error(other, ErrorCode::BlobMismatch)
        .await
        .unwrap();
    // A counselor intake mailbox (proof of work required) takes no blob.
    let mut device = relay.client().await.unwrap();
    let intake = northstar_e2e::Mailbox::random();
    device.register(&intake, true).await.unwrap();
    anon.expect_error(
        ClientFrame::PutChunk {
            mailbox: intake.id(),
            blob: BlobId::from_bytes([8; 32]),
            chunk_count: 1,
            index: 0,
            chunk: chunk.clone(),
        },
        ErrorCode::PowRequired,
    )
    .await
    .unwrap();
    let held_before = relay.stored_files().unwrap();
    let piece = &chunk[1000..1016];
    if relay.uses_sqlite_file() {
        assert!(
            held_before.iter().any(|(_, b, _)| contains(b, piece)),
            "the chunk is in the files while the mailbox lives"
        );
    }
    // The seeker deletes everything: the blob goes with the mailbox.
    assert_eq!(
        owner.request(ClientFrame::DeleteMailbox).await.unwrap(),
        ServerFrame::Ok
    );
    anon.expect_error(ClientFrame::BlobStatus { blob }, ErrorCode::NotFound)
        .await
        .unwrap();
    anon.expect_error(
        ClientFrame::GetChunk { blob, index: 0 },
        ErrorCode::NotFound,
    )
    .await
    .unwrap();
    if relay.uses_sqlite_file() {
        // Erased from the database and its WAL (erase_within 0: after the commit).
        let mut gone = false;
        for _ in 0..50 {
            if relay
                .stored_files()
                .unwrap()
                .iter()
                .all(|(_, b, _)| !contains(b, piece))
            {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            gone,
            "a piece of the deleted chunk is still in the relay's files"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_mailbox_quota_or_blob_count_is_refused_plainly() {
    // 2 MB per mailbox, two files at most.
    let relay =
        RelayProcess::start(&["--mailbox-max-bytes", "2000000", "--mailbox-max-blobs", "2"])
            .await
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, seeker) = organisation(relay.url(), tmp.path()).await;
    let start = seeker.seeker_start("unaccompanied-minors", QUESTION).await;
    let codename = start["codename"].as_str().unwrap().to_owned();
    let big = tmp.path().join("big.pdf");
    std::fs::write(&big, pdf(3_000_000)).unwrap();
    let r = seeker
        .run(
            &["seeker", "write", "--attach", big.to_str().unwrap()],
            &format!("{codename}\n"),
        )
        .await;
    assert!(!r.ok);
    assert!(r.stderr.contains("mailbox is full"), "{}", r.stderr);
    assert!(
        !r.stderr.contains("sending file: 10%"),
        "refused at the start: {}",
        r.stderr
    );
    let small = tmp.path().join("small.pdf");
    std::fs::write(&small, pdf(10_000)).unwrap();
    for _ in 0..2 {
        seeker
            .ok(
                &["seeker", "write", "--attach", small.to_str().unwrap()],
                &format!("{codename}\n"),
            )
            .await;
    }
    let r = seeker
        .run(
            &["seeker", "write", "--attach", small.to_str().unwrap()],
            &format!("{codename}\n"),
        )
        .await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("as many files as the relay allows"),
        "{}",
        r.stderr
    );
    // Over 10 MB: refused before anything is sent.
    let huge = tmp.path().join("huge.pdf");
    std::fs::write(&huge, vec![0u8; 10 * 1024 * 1024 + 1]).unwrap();
    let r = seeker
        .run(
            &["seeker", "write", "--attach", huge.to_str().unwrap()],
            &format!("{codename}\n"),
        )
        .await;
    assert!(!r.ok);
    assert!(r.stderr.contains("too big to send"), "{}", r.stderr);
}
