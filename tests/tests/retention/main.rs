//! Issue 20 items 3 and 4 with the real relay and the real `northstar`
//! binary: the seeker sees encrypted receipts (reached, read, answered,
//! referred, resolved), and a conversation disappears at the organisation's
//! retention — from the relay's files, from the counselor device and from
//! the seeker's saved state — shown by moving the clocks of the relay and
//! of the clients forward (`NORTHSTAR_TEST_CLOCK_OFFSET_SECS`, honoured by
//! debug builds only). A case a counselor explicitly kept stays on the
//! device until the kept date, and no longer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use northstar_core::codename::Codename;
use northstar_core::directory::OrgPublicKey;
use northstar_core::frame::{ClientFrame, ServerFrame};
use northstar_core::ids::MailboxId;
use northstar_e2e::cli::{Cli, Run};
use northstar_e2e::{RelayProcess, bin_dir, scan};
use tokio::io::AsyncWriteExt;

const ADMIN: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const DAY: u64 = 24 * 3600;
/// The retention the administrator signs into the directory.
const RETENTION_DAYS: u64 = 30;
const CLOCK: &str = "NORTHSTAR_TEST_CLOCK_OFFSET_SECS";

/// `northstar` as `cli`, with its clock moved `offset` seconds forward.
async fn run_at(cli: &Cli, offset: u64, args: &[&str], stdin: &str) -> Run {
    let mut cmd = tokio::process::Command::new(bin_dir().join("northstar"));
    cmd.args(args)
        .env("NORTHSTAR_RELAY", &cli.relay)
        .env("NORTHSTAR_HOME", &cli.home)
        .env(CLOCK, offset.to_string())
        .env_remove("NORTHSTAR_ORG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(org) = &cli.org {
        cmd.env("NORTHSTAR_ORG", org);
    }
    let mut child = cmd.spawn().expect("build the northstar binary first");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn ok_at(cli: &Cli, offset: u64, args: &[&str], stdin: &str) -> serde_json::Value {
    let r = run_at(cli, offset, args, stdin).await;
    assert!(
        r.ok,
        "northstar {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    r.json()
}

/// What the relay holds for a seeker: the state blob and the envelopes
/// waiting in the mailbox (read without acknowledging them), through the
/// mailbox key the codename derives.
async fn relay_holds(relay: &RelayProcess, codename: &str, org: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let org = OrgPublicKey::from_bytes(*MailboxId::from_hex(org).unwrap().as_bytes()).unwrap();
    let secrets = Codename::parse(codename)
        .unwrap()
        .derive(org.as_ed25519())
        .unwrap();
    let keys = secrets.mailbox_keys();
    let mut c = relay.client().await.unwrap();
    let challenge = c.challenge().await.unwrap();
    let mailbox = keys.id();
    let signature = keys.sign(&northstar_core::frame::auth_message(&challenge, &mailbox));
    assert_eq!(
        c.request(ClientFrame::Auth { mailbox, signature })
            .await
            .unwrap(),
        ServerFrame::Ok
    );
    let blob = match c.request(ClientFrame::GetState).await.unwrap() {
        ServerFrame::State { blob, .. } => blob,
        other => panic!("no state: {other:?}"),
    };
    let pending = match c.request(ClientFrame::Subscribe).await.unwrap() {
        ServerFrame::Subscribed { pending } => pending as usize,
        other => panic!("{other:?}"),
    };
    let envelopes = c
        .deliveries(pending)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.ciphertext().to_vec())
        .collect();
    c.close().await;
    (blob, envelopes)
}

fn mailbox_of(codename: &str, org: &str) -> [u8; 32] {
    let org = OrgPublicKey::from_bytes(*MailboxId::from_hex(org).unwrap().as_bytes()).unwrap();
    *Codename::parse(codename)
        .unwrap()
        .derive(org.as_ed25519())
        .unwrap()
        .mailbox_keys()
        .id()
        .as_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_then_retention_with_the_clock_moved_forward_leaves_no_copy() {
    let relay = RelayProcess::start_with_env(&["--erase-within-secs", "1"], &[])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let mut admin = Cli {
        relay: relay.url(),
        home: home.join("admin"),
        org: None,
    };
    let init = admin
        .ok(&["--json", "admin", "init"], &ADMIN.repeat(2))
        .await
        .json();
    let org = init["org_key"].as_str().unwrap().to_owned();
    let person = |name: &str| Cli {
        relay: relay.url(),
        home: home.join(name),
        org: Some(org.clone()),
    };
    let mut ana = person("ana");
    let mut seeker = person("seeker");
    let kept_seeker = person("kept-seeker");
    let dev = ana.counselor_init(ANA).await;
    admin
        .add_device("unaccompanied-minors", "ana", &dev, ADMIN)
        .await;
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
            ADMIN,
        )
        .await;
    admin
        .ok(&["admin", "publish", "--retention-days", "30"], ADMIN)
        .await;
    ana.ok(&["counselor", "sync"], ANA).await;

    // Two seekers write; Ana's device receives both and says so (receipts).
    let start = seeker
        .seeker_start("unaccompanied-minors", "Tengo 17 anos.")
        .await;
    let codename = start["codename"].as_str().unwrap().to_owned();
    let start2 = kept_seeker
        .seeker_start("unaccompanied-minors", "Necesito ayuda con un caso.")
        .await;
    let codename2 = start2["codename"].as_str().unwrap().to_owned();
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let convs = inbox["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 2);
    let id_of = |codename: &str| hex_of(&mailbox_of(codename, &org));
    let conv = id_of(&codename);
    let conv2 = id_of(&codename2);
    // What the retention will be, from the opening (to the minute).
    let deletion = convs.iter().find(|c| c["id"] == conv.as_str()).unwrap()["deletion_at"]
        .as_u64()
        .unwrap();
    let opening_at = convs.iter().find(|c| c["id"] == conv.as_str()).unwrap()["messages"][0]["at"]
        .as_u64()
        .unwrap();
    assert_eq!(deletion, opening_at + RETENTION_DAYS * DAY);

    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    assert_eq!(read["status"]["reached"], 1, "{read}");
    assert_eq!(read["status"]["devices"], 1);
    assert_eq!(read["status"]["read"], false);
    assert_eq!(read["deletion_at"].as_u64(), Some(deletion));

    // Ana opens the case (read), answers, refers, resolves.
    ana.ok(&["counselor", "show", &conv], ANA).await;
    ana.ok(
        &["counselor", "reply", &conv, "--message", "Hay opciones."],
        ANA,
    )
    .await;
    ana.ok(
        &[
            "counselor",
            "refer",
            &conv,
            "--partner",
            "Shelter North",
            "--message",
            "Pueden ayudarle.",
        ],
        ANA,
    )
    .await;
    ana.ok(&["counselor", "resolve", &conv], ANA).await;
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    let st = &read["status"];
    assert_eq!(st["read"], true, "{read}");
    assert_eq!(st["answered"], true);
    assert_eq!(st["resolved"], true);
    assert_eq!(st["referred"][0]["name"], "Shelter North");
    assert_eq!(st["referred"][0]["contact"], "+1 555 0100");

    // Ana keeps the second case 30 days past the retention, with a reason.
    let kept_until_day = {
        let t = deletion + 30 * DAY;
        utc_day(t)
    };
    ana.ok(
        &[
            "counselor",
            "keep",
            &conv2,
            "--until",
            &kept_until_day,
            "--reason",
            "Court date after the retention.",
        ],
        ANA,
    )
    .await;
    let kept = ana.ok(&["--json", "counselor", "kept"], ANA).await.json();
    assert_eq!(kept["kept"][0]["conversation"], conv2.as_str());
    assert_eq!(kept["kept"][0]["reason"], "Court date after the retention.");

    // A last reply waits, unread, in the first seeker's mailbox.
    ana.ok(
        &["counselor", "reply", &conv, "--message", "Un mensaje mas."],
        ANA,
    )
    .await;

    // Before the move, the scan sees the conversation in the relay's files.
    let (blob, waiting) = relay_holds(&relay, &codename, &org).await;
    assert!(!waiting.is_empty(), "the last reply waits in the mailbox");
    let (blob2, _) = relay_holds(&relay, &codename2, &org).await;
    let sqlite = relay.uses_sqlite_file();
    let files = |relay: &RelayProcess| -> Vec<u8> {
        relay
            .stored_files()
            .unwrap()
            .into_iter()
            .flat_map(|(_, b, _)| b)
            .collect()
    };
    let before = files(&relay);
    let mailbox = mailbox_of(&codename, &org);
    assert!(scan::contains(&before, &mailbox), "the mailbox is stored");
    assert!(
        scan::holds_a_piece_of(&before, &blob),
        "the state is stored"
    );
    for e in &waiting {
        assert!(scan::holds_a_piece_of(&before, e), "the reply is stored");
    }

    // The clocks move a day past the retention.
    let offset = RETENTION_DAYS * DAY + DAY;
    let offset_s = offset.to_string();
    let relay = relay.restart_with_env(&[(CLOCK, &offset_s)]).await.unwrap();
    // (It listens on a new port.)
    for cli in [&mut admin, &mut ana, &mut seeker] {
        cli.relay = relay.url();
    }
    // The administrator re-signs the directory (the old one has expired).
    let published = run_at(&admin, offset, &["admin", "publish"], ADMIN).await;
    assert!(published.ok, "{}\n{}", published.stderr, relay.logs());

    // The relay: nothing of either seeker's conversation is left in its
    // files (the sweep runs at start, then the freed pages are erased).
    let mailbox2 = mailbox_of(&codename2, &org);
    let clean = |copy: &[u8]| {
        !scan::contains(copy, &mailbox)
            && !scan::contains(copy, &mailbox2)
            && !scan::holds_a_piece_of(copy, &blob)
            && !scan::holds_a_piece_of(copy, &blob2)
            && waiting.iter().all(|e| !scan::holds_a_piece_of(copy, e))
    };
    let mut copy = files(&relay);
    for _ in 0..200 {
        if clean(&copy) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        copy = files(&relay);
    }
    assert!(
        clean(&copy),
        "the relay's files ({}) still hold the conversation",
        if sqlite { "SQLite" } else { "pg_dump" }
    );

    // The counselor device: the first case is gone; the kept one is there.
    let synced = ok_at(&ana, offset, &["--json", "counselor", "sync"], ANA).await;
    let events = synced["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "expired" && e["conversation"] == conv.as_str()),
        "{synced}"
    );
    let inbox = ok_at(&ana, offset, &["--json", "counselor", "inbox"], ANA).await;
    let ids: Vec<&str> = inbox["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![conv2.as_str()], "only the kept case remains");
    let shown = run_at(&ana, offset, &["counselor", "show", &conv], ANA).await;
    assert!(!shown.ok);

    // The seeker: the codename finds nothing.
    let back = run_at(
        &seeker,
        offset,
        &["seeker", "read"],
        &format!("{codename}\n"),
    )
    .await;
    assert!(!back.ok, "{}", back.stdout);
    assert!(back.stderr.contains("no conversation"), "{}", back.stderr);

    // Past the kept date, the kept case goes from the device too.
    let later = offset + 31 * DAY;
    let relay = relay
        .restart_with_env(&[(CLOCK, &later.to_string())])
        .await
        .unwrap();
    for cli in [&mut admin, &mut ana] {
        cli.relay = relay.url();
    }
    let published = run_at(&admin, later, &["admin", "publish"], ADMIN).await;
    assert!(published.ok, "{}", published.stderr);
    ok_at(&ana, later, &["--json", "counselor", "sync"], ANA).await;
    let inbox = ok_at(&ana, later, &["--json", "counselor", "inbox"], ANA).await;
    assert!(
        inbox["conversations"].as_array().unwrap().is_empty(),
        "{inbox}"
    );
    // The keep log stays: the record of the choice, not the case.
    let kept = ok_at(&ana, later, &["--json", "counselor", "kept"], ANA).await;
    assert_eq!(kept["kept"].as_array().unwrap().len(), 1);
    drop(relay);
}

fn hex_of(b: &[u8; 32]) -> String {
    MailboxId::from_bytes(*b).to_hex()
}

/// `t` as the YYYY-MM-DD day it falls in (UTC).
fn utc_day(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
