//! The command-line client on client-core's driver, against the real relay
//! binary: what the driver owns (batching within the relay's announced
//! limits, one device state shared safely by several processes) holds end
//! to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_util::future::join_all;
use northstar_e2e::RelayProcess;
use northstar_e2e::cli::Cli;
use serde_json::Value;

const ADMIN_PASS: &str = "admin passphrase 1\n";
const DEVICE_PASS: &str = "device passphrase 1\n";

/// An organisation on `relay` with `n` counselor devices in one team,
/// published, each device synced (prekeys uploaded). Returns the admin, the
/// devices and a seeker.
async fn organisation(
    relay: &RelayProcess,
    home: &std::path::Path,
    n: usize,
) -> (Cli, Vec<Cli>, Cli) {
    let admin = Cli {
        relay: relay.url(),
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
    let devices: Vec<Cli> = (0..n)
        .map(|i| Cli {
            relay: relay.url(),
            home: home.join(format!("device-{i}")),
            org: Some(org.clone()),
        })
        .collect();
    let keys = join_all(devices.iter().map(|d| d.counselor_init(DEVICE_PASS))).await;
    for (i, k) in keys.iter().enumerate() {
        admin
            .add_device("unaccompanied-minors", &format!("c{i}"), k, ADMIN_PASS)
            .await;
    }
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;
    join_all(
        devices
            .iter()
            .map(|d| d.ok(&["counselor", "sync"], DEVICE_PASS)),
    )
    .await;
    let seeker = Cli {
        relay: relay.url(),
        home: home.join("seeker"),
        org: Some(org),
    };
    (admin, devices, seeker)
}

fn conversations(v: &Value) -> &Vec<Value> {
    v["conversations"].as_array().unwrap()
}

/// The relay announces at most 8 envelopes and 150 000 bytes per frame; a
/// long message (each envelope in the 32 KiB bucket, four to a frame) to 12
/// devices must be split by count *and* by bytes, and still reach every
/// device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_reaches_every_device_through_small_batches_and_frames() {
    let relay = RelayProcess::start(&["--max-batch", "8", "--max-frame-bytes", "150000"])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_admin, devices, seeker) = organisation(&relay, tmp.path(), 12).await;
    let long = "Necesito ayuda. ".repeat(1000); // 16,000 bytes: the 32 KiB bucket
    let started = seeker.seeker_start("unaccompanied-minors", &long).await;
    assert!(started["codename"].is_string());
    let inboxes = join_all(
        devices
            .iter()
            .map(|d| d.ok(&["--json", "counselor", "inbox"], DEVICE_PASS)),
    )
    .await;
    for (i, inbox) in inboxes.iter().enumerate() {
        let convs = inbox.json();
        let convs = conversations(&convs);
        assert_eq!(convs.len(), 1, "device {i} has no conversation");
        // (Given on standard input, the message loses its trailing space.)
        assert!(
            convs[0]["messages"][0]["text"].as_str().unwrap() == long.trim_end(),
            "device {i} got another text"
        );
    }
}

/// `counselor watch` holds the device while the same device claims and
/// replies from another process: nothing either process did is lost, and
/// the device can still read the conversation afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_a_claim_from_another_process_lose_nothing() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_admin, devices, seeker) = organisation(&relay, tmp.path(), 1).await;
    let ana = &devices[0];
    let codename = seeker
        .seeker_start("unaccompanied-minors", "Tengo 17 anos.")
        .await["codename"]
        .as_str()
        .unwrap()
        .to_owned();
    // The watcher starts, syncs and stays live until it has printed the
    // seeker's second message (or a generous deadline on a loaded machine).
    let mut watch = tokio::process::Command::new(northstar_e2e::bin_dir().join("northstar"))
        .args(["--json", "counselor", "watch", "--seconds", "300"])
        .env("NORTHSTAR_RELAY", &ana.relay)
        .env("NORTHSTAR_HOME", &ana.home)
        .env("NORTHSTAR_ORG", ana.org.as_deref().unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = watch.stdin.take().unwrap();
        stdin.write_all(DEVICE_PASS.as_bytes()).await.unwrap();
    }
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut r = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            let _ = line_tx.send(l);
        }
    });
    // Synced: it printed the conversation it found.
    let first = tokio::time::timeout(Duration::from_secs(120), lines.recv())
        .await
        .expect("watch started")
        .expect("a first line");
    assert!(first.contains("\"new\""), "{first}");
    let inbox = ana
        .ok(&["--json", "counselor", "inbox"], DEVICE_PASS)
        .await
        .json();
    let id = conversations(&inbox)[0]["id"].as_str().unwrap().to_owned();
    ana.ok(&["counselor", "claim", &id], DEVICE_PASS).await;
    ana.ok(
        &[
            "counselor",
            "reply",
            &id,
            "--message",
            "Hola. Hay opciones.",
        ],
        DEVICE_PASS,
    )
    .await;
    // The seeker writes again while the watcher is live.
    seeker
        .ok(
            &["seeker", "write", "--message", "Gracias. Estoy en Texas."],
            &format!("{codename}\n"),
        )
        .await;
    let mut seen = Vec::new();
    let saw_it = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(l) = lines.recv().await {
            let hit = l.contains("Estoy en Texas");
            seen.push(l);
            if hit {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        saw_it,
        "the watcher did not see the seeker's second message: {seen:?}"
    );
    watch.kill().await.unwrap();
    // Afterwards the device holds the claim, the reply and both seeker messages.
    let show = ana
        .ok(&["--json", "counselor", "show", &id], DEVICE_PASS)
        .await
        .json();
    assert_eq!(show["status"]["state"], "claimed");
    let texts: Vec<&str> = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Tengo 17 anos.",
            "Hola. Hay opciones.",
            "Gracias. Estoy en Texas."
        ]
    );
    // And the device still reads this conversation: the seeker writes again.
    seeker
        .ok(
            &["seeker", "write", "--message", "Sigo aqui."],
            &format!("{codename}\n"),
        )
        .await;
    let sync = ana.ok(&["--json", "counselor", "sync"], DEVICE_PASS).await;
    assert!(sync.stdout.contains("Sigo aqui"), "{}", sync.stdout);
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    assert!(read.to_string().contains("Hola. Hay opciones."));
}

/// The relay's SQLite file, read while it runs; `None` on a PostgreSQL relay.
fn relay_db(relay: &RelayProcess) -> Option<rusqlite::Connection> {
    relay
        .uses_sqlite_file()
        .then(|| rusqlite::Connection::open(relay.db_path()).unwrap())
}

/// The ids of the envelopes the relay holds for `mailbox` (acknowledged
/// ones are deleted, so a new id is a new deposit).
fn held_for(
    db: &rusqlite::Connection,
    mailbox: &northstar_core::ids::MailboxId,
) -> std::collections::BTreeSet<Vec<u8>> {
    let mut q = db
        .prepare("SELECT id FROM envelopes WHERE mailbox = ?1")
        .unwrap();
    q.query_map([&mailbox.as_bytes()[..]], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Issue 17, item 3: once the administrator removes a device (seized, say)
/// and publishes, the seeker's next message is not deposited for it at all
/// — the relay holds nothing for it — while its colleague reads it; the
/// removed device cannot even sync any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_no_longer_receives_the_seekers_next_message() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (admin, devices, seeker) = organisation(&relay, tmp.path(), 2).await;
    let (kept, seized) = (&devices[0], &devices[1]);
    let mailbox_of = |export: Value| {
        let hex = export["device"].as_str().unwrap().to_owned();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        northstar_core::client::counselor::DevicePublic::decode(&bytes)
            .unwrap()
            .mailbox
            .id()
    };
    let kept_mailbox = mailbox_of(
        kept.ok(&["--json", "counselor", "export"], DEVICE_PASS)
            .await
            .json(),
    );
    let seized_mailbox = mailbox_of(
        seized
            .ok(&["--json", "counselor", "export"], DEVICE_PASS)
            .await
            .json(),
    );
    let codename = seeker
        .seeker_start("unaccompanied-minors", "Tengo miedo.")
        .await["codename"]
        .as_str()
        .unwrap()
        .to_owned();
    join_all(
        devices
            .iter()
            .map(|d| d.ok(&["counselor", "sync"], DEVICE_PASS)),
    )
    .await;
    // The seeker reads the devices' delivered receipts while both are
    // listed (a receipt the seized device sent before its removal would
    // otherwise be refused at the next visit, and reported as unreadable).
    seeker
        .ok(&["seeker", "read"], &format!("{codename}\n"))
        .await;

    // The administrator removes the seized device and publishes.
    let shown = admin
        .ok(&["--json", "admin", "show"], ADMIN_PASS)
        .await
        .json();
    let id = shown["teams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["devices"].as_array().unwrap())
        .find(|d| d["label"] == "c1")
        .unwrap()["id"]
        .to_string();
    admin
        .ok(&["admin", "remove-device", "--device", &id], ADMIN_PASS)
        .await;
    let published = admin
        .ok(&["--json", "admin", "publish"], ADMIN_PASS)
        .await
        .json();
    assert_eq!(published["published"], 2);
    assert!(published["expires_at"].as_u64().unwrap() > 0);

    // The seeker's next visit takes the new directory; what it writes goes
    // to the remaining device only.
    let db = relay_db(&relay);
    let before = db
        .as_ref()
        .map(|db| (held_for(db, &seized_mailbox), held_for(db, &kept_mailbox)));
    let text = "¿Me escuchan todavía?";
    seeker
        .ok(
            &["seeker", "write", "--message", text],
            &format!("{codename}\n"),
        )
        .await;
    if let (Some(db), Some((seized_before, kept_before))) = (&db, before) {
        let new = |now: std::collections::BTreeSet<Vec<u8>>, then| now.difference(&then).count();
        assert_eq!(
            new(held_for(db, &seized_mailbox), seized_before),
            0,
            "nothing was deposited for the removed device"
        );
        assert_eq!(
            new(held_for(db, &kept_mailbox), kept_before),
            1,
            "the remaining device's copy"
        );
    }
    let sync = kept.ok(&["--json", "counselor", "sync"], DEVICE_PASS).await;
    assert!(sync.stdout.contains(text), "{}", sync.stdout);
    seized
        .fails(
            &["counselor", "sync"],
            DEVICE_PASS,
            "not in the team directory",
        )
        .await;
}

/// The relay keeps at most 2 envelopes per mailbox; one counselor device is
/// offline and its mailbox fills up. A new seeker's opening still reaches
/// the rest of the team: the command succeeds, says how many copies did not
/// get through, and the full device simply misses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_counselor_mailbox_does_not_block_a_seeker_from_the_rest_of_the_team() {
    let relay = RelayProcess::start(&["--mailbox-max-envelopes", "2"])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_admin, devices, seeker) = organisation(&relay, tmp.path(), 3).await;
    let (online, offline) = (&devices[..2], &devices[2]);
    // Two seekers write; the two online devices read, the third is away.
    for (i, text) in ["Primera pregunta.", "Segunda pregunta."]
        .iter()
        .enumerate()
    {
        let s = Cli {
            relay: relay.url(),
            home: tmp.path().join(format!("earlier-seeker-{i}")),
            org: seeker.org.clone(),
        };
        s.seeker_start("unaccompanied-minors", text).await;
    }
    // (A watch, not a one-shot sync: a one-shot command exits without
    // waiting for the relay to take its acknowledgements, §7.5.)
    join_all(
        online
            .iter()
            .map(|d| d.ok(&["counselor", "watch", "--seconds", "2"], DEVICE_PASS)),
    )
    .await;
    // The offline device's mailbox is full: a third seeker writes.
    let start = seeker
        .run(
            &[
                "--json",
                "seeker",
                "start",
                "--team",
                "unaccompanied-minors",
                "--language",
                "es",
                "--message",
                "Tercera pregunta.",
            ],
            "",
        )
        .await;
    assert!(start.ok, "the seeker must reach the rest: {}", start.stderr);
    assert!(start.json()["codename"].is_string());
    assert!(
        start
            .stderr
            .contains("1 of its 3 copies did not get through"),
        "the seeker is told: {:?}",
        start.stderr
    );
    for d in online {
        let inbox = d
            .ok(&["--json", "counselor", "inbox"], DEVICE_PASS)
            .await
            .json();
        assert_eq!(
            conversations(&inbox).len(),
            3,
            "an online device has all three"
        );
    }
    let inbox = offline
        .ok(&["--json", "counselor", "inbox"], DEVICE_PASS)
        .await
        .json();
    let texts: Vec<&str> = conversations(&inbox)
        .iter()
        .map(|c| c["messages"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts.len(),
        2,
        "the full device missed only the third: {texts:?}"
    );
    assert!(!texts.contains(&"Tercera pregunta."));
}

/// Issue 19 at a terminal: what a seeker writes is shown escaped (an
/// anonymous sender cannot drive the counselor's terminal), a message on a
/// resolved case opens it again for everyone, empty and oversized messages
/// are refused before anything is sent, colleagues and partners are named
/// by label and name, the inbox is a table, the saved history reads while
/// the relay is down, and deleting asks first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counselor_at_a_terminal() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (admin, devices, seeker) = organisation(&relay, tmp.path(), 2).await;
    let (ana, ben) = (&devices[0], &devices[1]);
    admin
        .ok(
            &[
                "admin",
                "add-partner",
                "--name",
                "Shelter North",
                "--contact",
                "+1 555 0100",
            ],
            ADMIN_PASS,
        )
        .await;
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;

    // Empty and oversized messages: refused, in plain words, before
    // anything is registered (no codename is printed).
    for args in [
        &[
            "seeker",
            "start",
            "--team",
            "unaccompanied-minors",
            "--message",
            "",
        ][..],
        &[
            "seeker",
            "start",
            "--team",
            "unaccompanied-minors",
            "--message",
            " \t ",
        ][..],
    ] {
        let r = seeker.fails(args, "", "the message is empty").await;
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let huge = "a".repeat(16_385);
    let r = seeker
        .fails(
            &["seeker", "start", "--team", "unaccompanied-minors"],
            &huge,
            "at most 16384 bytes",
        )
        .await;
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // A seeker sends escape sequences, a bell, a NUL and a bidi override.
    let nasty = "Hola \u{1b}]0;owned\u{7} \u{1b}[2J\u{0} \u{202e}fin";
    let start = seeker.seeker_start("unaccompanied-minors", nasty).await;
    let codename = start["codename"].as_str().unwrap().to_owned();
    ana.ok(&["counselor", "sync"], DEVICE_PASS).await;
    let inbox = ana
        .ok(&["--json", "counselor", "inbox"], DEVICE_PASS)
        .await
        .json();
    let conv = conversations(&inbox)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        conversations(&inbox)[0]["messages"][0]["text"],
        nasty,
        "--json keeps the exact text"
    );
    let raw = |s: &str| s.contains(['\u{1b}', '\u{7}', '\u{0}', '\u{202e}']);
    for args in [
        &["counselor", "show", &conv][..],
        &["counselor", "inbox"][..],
        &["counselor", "sync"][..],
    ] {
        let r = ana.ok(args, DEVICE_PASS).await;
        assert!(
            !raw(&r.stdout) && !raw(&r.stderr),
            "{args:?}: {:?}",
            r.stdout
        );
    }
    let shown = ana.ok(&["counselor", "show", &conv], DEVICE_PASS).await;
    assert!(
        shown
            .stdout
            .contains("Hola \\x1b]0;owned\\x07 \\x1b[2J\\x00 \\u{202e}fin"),
        "{}",
        shown.stdout
    );
    // The inbox is a table: a header row, the date, the start of the message.
    let table = ben.ok(&["counselor", "inbox"], DEVICE_PASS).await.stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "STATUS", "TOPIC", "UPDATED", "LAST MESSAGE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&conv[..12]), "{row}");
    assert!(
        row.contains(" UTC") && row.contains("seeker: Hola"),
        "{row}"
    );

    // Colleagues and partners by name.
    let colleagues = ana
        .ok(&["counselor", "colleagues"], DEVICE_PASS)
        .await
        .stdout;
    assert!(colleagues.contains("c1"), "{colleagues}");
    let partners = ana.ok(&["counselor", "partners"], DEVICE_PASS).await.stdout;
    assert!(partners.contains("Shelter North"), "{partners}");
    ana.ok(&["counselor", "claim", &conv], DEVICE_PASS).await;
    ana.fails(
        &["counselor", "hand-off", &conv, "--to", "nobody"],
        DEVICE_PASS,
        "no colleague called",
    )
    .await;
    ana.ok(&["counselor", "hand-off", &conv, "--to", "C1"], DEVICE_PASS)
        .await;
    let b = ben
        .ok(&["--json", "counselor", "show", &conv], DEVICE_PASS)
        .await
        .json();
    assert_eq!(b["status"]["by"], 2);
    ben.fails(
        &["counselor", "reply", &conv, "--message", "  "],
        DEVICE_PASS,
        "the message is empty",
    )
    .await;
    ben.ok(
        &["counselor", "refer", &conv, "--partner", "shelter north"],
        &format!("{DEVICE_PASS}Tienen camas esta noche.\n"),
    )
    .await;
    ben.ok(&["counselor", "resolve", &conv], DEVICE_PASS).await;

    // The seeker writes on the resolved case: open again and unread, on
    // both devices, in the list and in the conversation alike.
    seeker
        .ok(
            &["seeker", "write"],
            &format!("{codename}\nGracias, pero no tengo dónde ir.\n"),
        )
        .await;
    for (who, d) in [("ana", ana), ("ben", ben)] {
        let inbox = d
            .ok(
                &["--json", "counselor", "inbox", "--filter", "unread"],
                DEVICE_PASS,
            )
            .await
            .json();
        let c = &conversations(&inbox)[0];
        assert_eq!(c["status"]["state"], "open", "{who}: {c}");
        assert_eq!(c["unread"], true, "{who}");
        let shown = d
            .ok(&["--json", "counselor", "show", &conv], DEVICE_PASS)
            .await
            .json();
        assert_eq!(shown["status"]["state"], "open", "{who}");
    }

    // The relay goes away: the saved history still reads.
    let offline = Cli {
        relay: "ws://127.0.0.1:9/ws".into(),
        home: ana.home.clone(),
        org: ana.org.clone(),
    };
    let r = offline.ok(&["counselor", "show", &conv], DEVICE_PASS).await;
    assert!(r.stdout.contains("no tengo dónde ir"), "{}", r.stdout);
    assert!(r.stderr.contains("last sync"), "{}", r.stderr);
    offline
        .fails(
            &["counselor", "reply", &conv, "--message", "hola"],
            DEVICE_PASS,
            "cannot reach the relay",
        )
        .await;

    // Deleting asks first; --yes is for scripts.
    seeker
        .fails(
            &["seeker", "delete"],
            &format!("{codename}\nno\n"),
            "nothing was deleted",
        )
        .await;
    seeker
        .ok(&["seeker", "read"], &format!("{codename}\n"))
        .await;
    seeker
        .ok(&["seeker", "delete", "--yes"], &format!("{codename}\n"))
        .await;

    // The relay's log, written to a pipe here, carries no colour codes.
    assert!(!relay.logs().contains('\u{1b}'), "{}", relay.logs());
}
