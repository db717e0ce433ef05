//! The README's quick tour, run for real: the relay binary and the
//! `northstar` binary, as an administrator, two counselors and a seeker would
//! use them — plus the hand-off, note, referral, resolve and delete-everything
//! paths, the errors a person can cause, and a scan of what the relay kept.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod readme;

use northstar_e2e::RelayProcess;
use northstar_e2e::cli::Cli;

const ADMIN_PASS: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const BEN: &str = "ben passphrase 12\n";
const QUESTION: &str = "Tengo 17 anos y estoy solo. Puedo pedir asilo en Canada?";
const ANSWER: &str = "Hola. Si, hay opciones para menores. Te explicamos los pasos.";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_tour_and_every_path() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let admin = Cli {
        relay: relay.url(),
        home: home.join("admin-person"),
        org: None,
    };

    // Administrator: organisation key (fingerprint printed), default teams.
    let init = admin
        .ok(&["--json", "admin", "init"], &ADMIN_PASS.repeat(2))
        .await
        .json();
    let org = init["org_key"].as_str().unwrap().to_owned();
    assert_eq!(init["fingerprint"].as_str().unwrap().split(' ').count(), 8);
    let ana = Cli {
        relay: relay.url(),
        home: home.join("ana"),
        org: Some(org.clone()),
    };
    let ben = Cli {
        relay: relay.url(),
        home: home.join("ben"),
        org: Some(org.clone()),
    };
    let seeker = Cli {
        relay: relay.url(),
        home: home.join("seeker"),
        org: Some(org.clone()),
    };

    // Two counselors create device keys; the key store is private.
    let ana_dev = ana.counselor_init(ANA).await;
    let ben_dev = ben.counselor_init(BEN).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["keystore", "state"] {
            let mode = std::fs::metadata(home.join("ana").join("counselor").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f} must be 0600");
        }
    }
    for (label, dev) in [("ana", &ana_dev), ("ben", &ben_dev)] {
        admin
            .add_device("unaccompanied-minors", label, dev, ADMIN_PASS)
            .await;
    }
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
    ana.ok(&["counselor", "sync"], ANA).await;
    ben.ok(&["counselor", "sync"], BEN).await;

    // The seeker asks; the codename is printed once.
    let topics = seeker.ok(&["--json", "seeker", "topics"], "").await.json();
    assert_eq!(topics["topics"][0]["slug"], "unaccompanied-minors");
    let start = seeker.seeker_start("unaccompanied-minors", QUESTION).await;
    let codename = start["codename"].as_str().unwrap().to_owned();
    // A Spanish codename: nine words of the BIP-39 Spanish list, two check words.
    assert_eq!(codename.split(' ').count(), 11);
    assert_eq!(start["relay_learns_topic"], false);

    // Ana sees it, claims it; Ben sees it claimed by Ana and cannot answer over her.
    let inbox = ana.ok(&["--json", "counselor", "inbox"], ANA).await.json();
    let conv = inbox["conversations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(inbox["conversations"][0]["team"], "unaccompanied-minors");
    assert_eq!(inbox["conversations"][0]["messages"][0]["text"], QUESTION);
    ana.ok(&["counselor", "claim", &conv], ANA).await;
    let seen = ben
        .ok(
            &["--json", "counselor", "inbox", "--filter", "claimed"],
            BEN,
        )
        .await
        .json();
    assert_eq!(seen["conversations"][0]["status"]["state"], "claimed");
    assert_eq!(seen["conversations"][0]["status"]["by"], 1);
    ben.fails(
        &["counselor", "reply", &conv, "--message", "hola"],
        BEN,
        "ana has claimed this conversation",
    )
    .await;
    ana.ok(
        &["counselor", "reply", &conv[..12], "--message", ANSWER],
        ANA,
    )
    .await;

    // The seeker comes back with only the codename (typed in capitals, with hyphens).
    let typed = codename.to_uppercase().replace(' ', "-");
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{typed}\n"))
        .await
        .json();
    let msgs = read["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["from"], "counselor");
    assert_eq!(msgs[1]["text"], ANSWER);

    // The seeker writes again; both counselors see it.
    seeker
        .ok(
            &["seeker", "write"],
            &format!("{codename}\nGracias. Que documentos necesito?\n"),
        )
        .await;
    let shown = ben
        .ok(&["--json", "counselor", "show", &conv], BEN)
        .await
        .json();
    let texts: Vec<&str> = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec![QUESTION, ANSWER, "Gracias. Que documentos necesito?"]
    );

    // Note (colleagues only), hand-off, referral, resolve.
    ana.ok(
        &[
            "counselor",
            "note",
            &conv,
            "--message",
            "Ask about shelter tonight",
        ],
        ANA,
    )
    .await;
    ana.ok(&["counselor", "hand-off", &conv, "--to", "2"], ANA)
        .await;
    let b = ben
        .ok(&["--json", "counselor", "show", &conv], BEN)
        .await
        .json();
    assert_eq!(b["status"]["by"], 2);
    assert_eq!(b["notes"][0]["text"], "Ask about shelter tonight");
    ben.ok(
        &[
            "counselor",
            "refer",
            &conv,
            "--partner",
            "1",
            "--message",
            "Tienen camas esta noche.",
        ],
        BEN,
    )
    .await;
    ben.ok(
        &[
            "counselor",
            "save-answer",
            &conv,
            "--title",
            "Shelter",
            "--message",
            "Call Shelter North tonight.",
        ],
        BEN,
    )
    .await;
    let canned = ana.ok(&["--json", "counselor", "canned"], ANA).await.json();
    assert_eq!(canned["canned"][0]["title"], "Shelter");
    ben.ok(&["counselor", "resolve", &conv], BEN).await;
    let a = ana
        .ok(
            &["--json", "counselor", "inbox", "--filter", "resolved"],
            ANA,
        )
        .await
        .json();
    assert_eq!(a["conversations"][0]["id"], conv.as_str());
    let read = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    let last = read["messages"].as_array().unwrap().last().unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        last.contains("Shelter North") && last.contains("+1 555 0100"),
        "{last}"
    );
    assert!(
        !read.to_string().contains("Ask about shelter"),
        "notes never reach the seeker"
    );

    // Errors a person can cause: one sentence, non-zero exit, nothing changed.
    seeker
        .fails(
            &["seeker", "read"],
            "truth roman grievance backup diffusion hanky\n",
            "codename is not valid",
        )
        .await;
    // A valid codename nobody started (fixed draw, so the test is repeatable).
    let other = northstar_core::codename::Codename::generate(
        northstar_core::ids::Language::Es,
        &mut <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed([7; 32]),
    )
    .to_string();
    seeker
        .fails(
            &["seeker", "read"],
            &format!("{other}\n"),
            "no conversation found",
        )
        .await;
    // One word miscopied into another list word: caught, and named.
    let mut words: Vec<String> = other.split(' ').map(str::to_owned).collect();
    words[3] = if words[3] == "ábaco" {
        "abeja"
    } else {
        "ábaco"
    }
    .to_owned();
    seeker
        .fails(
            &["seeker", "read"],
            &format!("{}\n", words.join(" ")),
            "word 4 does not match the others",
        )
        .await;
    ana.fails(
        &["counselor", "inbox"],
        "not the passphrase\n",
        "wrong passphrase",
    )
    .await;
    seeker
        .fails(
            &[
                "seeker",
                "start",
                "--team",
                "no-such-topic",
                "--message",
                "x",
            ],
            "",
            "no topic called",
        )
        .await;
    let wrong_org = Cli {
        relay: relay.url(),
        home: home.join("x"),
        org: Some("11".repeat(32)),
    };
    wrong_org.fails(&["seeker", "topics"], "", "").await;
    let down = Cli {
        relay: "ws://127.0.0.1:9/ws".into(),
        home: home.join("x"),
        org: Some(org.clone()),
    };
    down.fails(&["seeker", "topics"], "", "cannot reach the relay")
        .await;
    let still = seeker
        .ok(&["--json", "seeker", "read"], &format!("{codename}\n"))
        .await
        .json();
    assert_eq!(
        still["messages"].as_array().unwrap().len(),
        read["messages"].as_array().unwrap().len()
    );

    // What the relay kept (its database, whichever backend): no plaintext,
    // codename, note, or client address.
    let stored: Vec<u8> = relay
        .stored_files()
        .unwrap()
        .into_iter()
        .flat_map(|(_, bytes, _)| bytes)
        .collect();
    for needle in [
        QUESTION,
        ANSWER,
        "Gracias",
        "Ask about shelter",
        "Tienen camas",
        codename.as_str(),
        "127.0.0.1",
    ] {
        assert!(
            !contains(&stored, needle.as_bytes()),
            "the relay's files contain {needle:?}"
        );
    }
    let words: Vec<&str> = codename.split(' ').collect();
    assert!(!contains(&stored, words[..3].join(" ").as_bytes()));
    // No two consecutive codename words, in any spelling the client accepts.
    for pair in words.windows(2) {
        for sep in [" ", "-", ""] {
            assert!(!contains(&stored, pair.join(sep).as_bytes()));
        }
    }
    // The sender's identity (sealed inside the ciphertext: the relay must
    // not learn who wrote) appears nowhere in its files, as bytes or hex.
    let org_pk = northstar_core::keys::Ed25519Public(
        (0..32)
            .map(|i| u8::from_str_radix(&org[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap(),
    );
    let secrets = northstar_core::codename::Codename::parse(&codename)
        .unwrap()
        .derive(&org_pk)
        .unwrap();
    // Control: the seeker's mailbox key, registered by design, is found,
    // so the derivation (and the scan) is the right one.
    assert!(contains(&stored, &secrets.mailbox_keys().public().auth.0));
    let sender = secrets.identity_keys().public();
    let hex = |k: &[u8; 32]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for key in [sender.x25519.0, sender.ed25519.0] {
        assert!(!contains(&stored, &key), "the sender's key is stored");
        assert!(!contains(&stored, hex(&key).as_bytes()));
        assert!(
            !relay.logs().contains(&hex(&key)),
            "the sender's key is logged"
        );
    }
    let logs = relay.logs();
    for needle in [QUESTION, ANSWER, codename.as_str(), &conv[..16]] {
        assert!(
            !logs.contains(needle),
            "the relay's log contains {needle:?}"
        );
    }

    // Delete everything: the mailbox and state are gone; the team's copies too.
    seeker
        .ok(&["seeker", "delete"], &format!("{codename}\nyes\n"))
        .await;
    seeker
        .fails(
            &["seeker", "read"],
            &format!("{codename}\n"),
            "no conversation found",
        )
        .await;
    for (who, pass) in [(&ana, ANA), (&ben, BEN)] {
        let inbox = who.ok(&["--json", "counselor", "inbox"], pass).await.json();
        assert!(inbox["conversations"].as_array().unwrap().is_empty());
    }
}
