//! Issue 20 item 5: search in the counselor inbox from the command line,
//! with the real relay and the real `northstar` binary — every word must
//! match, case and accents ignored, over messages both ways, private notes,
//! status and topic; the filters alone and with words; the words read from
//! standard input, never the command line; nothing asked of the relay (the
//! search works with the relay stopped, and its words are nowhere in what
//! the relay stored).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use northstar_e2e::RelayProcess;
use northstar_e2e::cli::Cli;
use serde_json::Value;

const ADMIN: &str = "admin passphrase 1\n";
const ANA: &str = "ana passphrase 12\n";
const BEN: &str = "ben passphrase 12\n";

/// `counselor search` with `words` typed after the passphrase: the JSON.
async fn search(who: &Cli, pass: &str, words: &str, filter: &str) -> Value {
    who.ok(
        &["--json", "counselor", "search", "--filter", filter],
        &format!("{pass}{words}\n"),
    )
    .await
    .json()
}

/// `counselor inbox --filter`: the JSON.
async fn inbox(who: &Cli, pass: &str, filter: &str) -> Value {
    who.ok(&["--json", "counselor", "inbox", "--filter", filter], pass)
        .await
        .json()
}

fn ids(v: &Value) -> Vec<String> {
    v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counselor_search_and_filters_from_the_command_line() {
    let mut relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().to_path_buf();
    let admin = Cli {
        relay: relay.url(),
        home: home.join("admin"),
        org: None,
    };
    let org = admin
        .ok(&["--json", "admin", "init"], &ADMIN.repeat(2))
        .await
        .json()["org_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let person = |name: &str| Cli {
        relay: relay.url(),
        home: home.join(name),
        org: Some(org.clone()),
    };
    let (ana, ben) = (person("ana"), person("ben"));
    let ana_dev = ana.counselor_init(ANA).await;
    let ben_dev = ben.counselor_init(BEN).await;
    admin
        .add_device("unaccompanied-minors", "ana", &ana_dev, ADMIN)
        .await;
    admin
        .add_device("unaccompanied-minors", "ben", &ben_dev, ADMIN)
        .await;
    admin.ok(&["admin", "publish"], ADMIN).await;
    ana.ok(&["counselor", "sync"], ANA).await;
    ben.ok(&["counselor", "sync"], BEN).await;

    // Three seekers, in Spanish, French and Haitian Creole.
    let texts = [
        "Tengo 17 años, estoy en Tijuana con mis dos niños.",
        "Je suis réfugié à Montréal avec ma sœur.",
        "Mwen bezwen èd pou timoun mwen yo nan Tijuana.",
    ];
    for (i, t) in texts.iter().enumerate() {
        person(&format!("seeker{i}"))
            .seeker_start("unaccompanied-minors", t)
            .await;
    }
    let all = inbox(&ana, ANA, "all").await;
    let by_text = |t: &str| -> String {
        all["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["messages"][0]["text"] == t)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (minor, refugee, creole) = (by_text(texts[0]), by_text(texts[1]), by_text(texts[2]));

    // Ana takes the first, notes the second; Ben resolves the third.
    ana.ok(&["counselor", "claim", &minor], ANA).await;
    ana.ok(
        &["counselor", "note", &refugee],
        &format!("{ANA}Shelter in Plattsburgh has a bed on Friday.\n"),
    )
    .await;
    ben.ok(&["counselor", "resolve", &creole], BEN).await;

    // Accents and case ignored, every word must match.
    let r = search(&ana, ANA, "NINOS tijuana", "all").await;
    assert_eq!(ids(&r), vec![minor.clone()]);
    assert_eq!(r["conversations"][0]["match"]["field"], "seeker-message");
    assert_eq!(r["conversations"][0]["match"]["matched"], "Tijuana");
    let r = search(&ana, ANA, "tijuana", "all").await;
    assert_eq!(r["total"], 2);
    let mut both = ids(&r);
    both.sort();
    let mut want = vec![minor.clone(), creole.clone()];
    want.sort();
    assert_eq!(both, want);
    assert_eq!(
        ids(&search(&ana, ANA, "refugie soeur", "all").await),
        vec![refugee.clone()]
    );
    assert_eq!(
        ids(&search(&ana, ANA, "ed timoun", "all").await),
        vec![creole.clone()]
    );
    assert_eq!(
        search(&ana, ANA, "tijuana montreal", "all").await["total"],
        0
    );

    // A colleague's private note, found on the other device once synced.
    let r = search(&ben, BEN, "plattsburgh", "all").await;
    assert_eq!(ids(&r), vec![refugee.clone()]);
    let m = &r["conversations"][0]["match"];
    assert_eq!(m["field"], "note");
    assert_eq!(m["before"], "Shelter in ");
    assert_eq!(m["after"], " has a bed on Friday.");

    // Status and claimant (the directory's label).
    assert_eq!(
        ids(&search(&ben, BEN, "resolved", "all").await),
        vec![creole.clone()]
    );
    let r = search(&ben, BEN, "claimed ana", "all").await;
    assert_eq!(ids(&r), vec![minor.clone()]);
    assert_eq!(r["conversations"][0]["match"]["field"], "status");

    // Filters with words, and alone (an empty line lists the filtered inbox).
    assert_eq!(
        ids(&search(&ana, ANA, "tijuana", "mine").await),
        vec![minor.clone()]
    );
    assert_eq!(
        ids(&search(&ana, ANA, "tijuana", "resolved").await),
        vec![creole.clone()]
    );
    assert_eq!(search(&ana, ANA, "tijuana", "open").await["total"], 0);
    assert_eq!(
        ids(&search(&ana, ANA, "", "open").await),
        vec![refugee.clone()]
    );
    assert_eq!(search(&ana, ANA, "", "all").await["total"], 3);
    assert_eq!(
        ids(&search(&ben, BEN, "", "mine").await),
        Vec::<String>::new()
    );
    // The same filters in the inbox.
    assert_eq!(ids(&inbox(&ana, ANA, "mine").await), vec![minor.clone()]);
    assert_eq!(ids(&inbox(&ana, ANA, "claimed").await), vec![minor.clone()]);
    assert_eq!(
        ids(&inbox(&ana, ANA, "resolved").await),
        vec![creole.clone()]
    );
    assert_eq!(ids(&inbox(&ana, ANA, "open").await), vec![refugee.clone()]);
    assert_eq!(ids(&inbox(&ben, BEN, "mine").await), Vec::<String>::new());
    ana.fails(
        &["counselor", "search", "--filter", "everything"],
        &format!("{ANA}x\n"),
        "--filter must be one of",
    )
    .await;
    ana.fails(
        &["counselor", "inbox", "--filter", "everything"],
        ANA,
        "--filter must be one of",
    )
    .await;

    // The words never go on the command line.
    let r = ana.run(&["counselor", "search", "tijuana"], ANA).await;
    assert!(
        !r.ok && r.stderr.contains("unexpected argument"),
        "{}",
        r.stderr
    );
    // An over-long search is refused with the limit.
    ana.fails(
        &["counselor", "search"],
        &format!("{ANA}{}\n", "x".repeat(201)),
        "at most 200 allowed",
    )
    .await;

    // The table for a person at a terminal: the inbox's columns, then where it matched.
    let table = ana
        .ok(&["counselor", "search"], &format!("{ANA}plattsburgh\n"))
        .await
        .stdout;
    assert!(table.contains("STATUS"), "{table}");
    assert!(table.contains(&refugee[..12]), "{table}");
    assert!(table.contains("private note"), "{table}");
    assert!(
        table.contains("Shelter in [Plattsburgh] has a bed"),
        "{table}"
    );
    let none = ana
        .ok(&["counselor", "search"], &format!("{ANA}zzzz\n"))
        .await
        .stdout;
    assert!(none.contains("No conversation matches."), "{none}");

    // Nothing of the search reaches the relay: its words are nowhere in
    // what it stored, and the search works with the relay stopped.
    for (name, bytes, _) in relay.stored_files().unwrap() {
        for w in [&b"Plattsburgh"[..], b"plattsburgh", b"Tijuana", b"tijuana"] {
            assert!(
                !contains(&bytes, w),
                "{name} holds {:?}",
                String::from_utf8_lossy(w)
            );
        }
    }
    relay.terminate().await.unwrap();
    let offline = ana
        .run(&["--json", "counselor", "search"], &format!("{ANA}ninos\n"))
        .await;
    assert!(offline.ok, "{}", offline.stderr);
    assert!(
        offline.stderr.contains("showing what this device saved"),
        "{}",
        offline.stderr
    );
    let v: Value = serde_json::from_str(&offline.stdout).unwrap();
    assert_eq!(ids(&v), vec![minor]);
}
