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
        .ok(&["--json", "admin", "init"], ADMIN_PASS)
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

/// The relay announces at most 8 envelopes and 300 KiB per frame; a long
/// message (each envelope in the 64 KiB bucket) to 12 devices must be split
/// by count *and* by bytes, and still reach every device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_reaches_every_device_through_small_batches_and_frames() {
    let relay = RelayProcess::start(&["--max-batch", "8", "--max-frame-bytes", "307200"])
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (_admin, devices, seeker) = organisation(&relay, tmp.path(), 12).await;
    let long = "Necesito ayuda. ".repeat(1000); // 16,000 bytes: the 64 KiB bucket
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
        assert_eq!(
            convs[0]["messages"][0]["text"].as_str().unwrap(),
            long,
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
    // The watcher starts, syncs and keeps the device open for a while.
    let watch = ana.run(
        &["--json", "counselor", "watch", "--seconds", "12"],
        DEVICE_PASS,
    );
    let actions = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
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
        id
    };
    let (watched, id) = tokio::join!(watch, actions);
    assert!(watched.ok, "watch failed: {}", watched.stderr);
    assert!(
        watched.stdout.contains("Estoy en Texas"),
        "the watcher did not see the seeker's second message: {}",
        watched.stdout
    );
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
