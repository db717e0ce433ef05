//! Issue 20 items 1-2 with the real relay and the real `northstar` binary:
//! the administrator's intake questions in the signed directory, seekers
//! answering them on standard input (one line each, skippable, "prefer not
//! to say", someone writing for another person), and the counselor's inbox
//! ordered and filtered by the answers — the order and filters client-core
//! computes for the CLI and the web inbox alike.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use northstar_e2e::RelayProcess;
use northstar_e2e::cli::Cli;
use serde_json::Value;

const ADMIN_PASS: &str = "admin passphrase 1\n";
const DEVICE_PASS: &str = "device passphrase 1\n";
const TEAM: &str = "unaccompanied-minors";

/// The conversations' first messages, in the order `inbox` listed them.
fn firsts(v: &Value) -> Vec<String> {
    v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["messages"][0]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seekers_answer_the_intake_questions_and_the_counselor_sorts_and_filters_by_them() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let admin = Cli {
        relay: relay.url(),
        home: tmp.path().join("admin"),
        org: None,
    };
    let org = admin
        .ok(&["--json", "admin", "init"], &ADMIN_PASS.repeat(2))
        .await
        .json()["org_key"]
        .as_str()
        .unwrap()
        .to_owned();

    // `admin init` wrote the default questions; every default team asks all six.
    let q = admin
        .ok(&["--json", "admin", "questions"], ADMIN_PASS)
        .await
        .json();
    let meanings: Vec<&str> = q["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["meaning"].as_str().unwrap())
        .collect();
    assert_eq!(
        meanings,
        [
            "for_whom",
            "minor",
            "asylum_elsewhere",
            "citizenship",
            "location",
            "urgency"
        ]
    );
    for t in q["teams"].as_array().unwrap() {
        assert_eq!(t["questions"], serde_json::json!([1, 2, 3, 4, 5, 6]));
    }
    // The catalog round-trips through a file, and a team's list can be
    // changed; the directory's rules hold (who-for first, known ids).
    let file = tmp.path().join("questions.json");
    std::fs::write(&file, serde_json::to_vec(&q).unwrap()).unwrap();
    admin
        .ok(
            &["admin", "set-questions", "--file", file.to_str().unwrap()],
            ADMIN_PASS,
        )
        .await;
    assert_eq!(
        admin
            .ok(&["--json", "admin", "questions"], ADMIN_PASS)
            .await
            .json(),
        q
    );
    admin
        .fails(
            &[
                "admin",
                "team-questions",
                "--team",
                TEAM,
                "--questions",
                "2,1",
            ],
            ADMIN_PASS,
            "for-whom question must come first",
        )
        .await;
    admin
        .fails(
            &[
                "admin",
                "team-questions",
                "--team",
                TEAM,
                "--questions",
                "1,42",
            ],
            ADMIN_PASS,
            "not in the catalog",
        )
        .await;
    // Crossing the border asks three only.
    admin
        .ok(
            &[
                "admin",
                "team-questions",
                "--team",
                "crossing-the-border",
                "--questions",
                "1,5,6",
            ],
            ADMIN_PASS,
        )
        .await;

    let device = Cli {
        relay: relay.url(),
        home: tmp.path().join("device"),
        org: Some(org.clone()),
    };
    let key = device.counselor_init(DEVICE_PASS).await;
    admin.add_device(TEAM, "ana", &key, ADMIN_PASS).await;
    admin
        .add_device("crossing-the-border", "ana", &key, ADMIN_PASS)
        .await;
    admin.ok(&["admin", "publish"], ADMIN_PASS).await;
    device.ok(&["counselor", "sync"], DEVICE_PASS).await;

    let seeker = |name: &str| Cli {
        relay: relay.url(),
        home: tmp.path().join(name),
        org: Some(org.clone()),
    };
    // The questions, as a seeker's script sees them: numbered choices, and
    // the helper's wording on request.
    let shown = seeker("s0")
        .ok(
            &[
                "--json",
                "seeker",
                "questions",
                "--team",
                "crossing-the-border",
                "--language",
                "es",
                "--for-someone-else",
            ],
            "",
        )
        .await
        .json();
    let prompts: Vec<&str> = shown["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(
        prompts,
        [
            "¿Para quién escribe?",
            "¿Dónde está ahora la persona a quien ayuda?",
            "¿Qué tan urgente es para la persona a quien ayuda?"
        ]
    );

    // Seekers answer on standard input, one line per question (empty skips,
    // `-` is "prefer not to say"), then the message.
    let start = |team: &'static str, lines: &'static str| {
        // One home per seeker, named after the message's tag.
        let tag = lines
            .rsplit('\n')
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap();
        let s = seeker(&format!("seeker-{}", tag.to_lowercase()));
        async move {
            s.ok(
                &[
                    "--json",
                    "seeker",
                    "start",
                    "--team",
                    team,
                    "--language",
                    "es",
                    "--questions",
                ],
                lines,
            )
            .await
            .json()
        }
    };
    // A minor alone, urgent, Mexican; asylum elsewhere skipped.
    start(TEAM, "1\nyes\n\n3\n-\n3\nMINOR: tengo 16 años.\n").await;
    // A lawyer for a client: not a minor, a few days.
    start(
        TEAM,
        "2\nno\n1,2\n\n\n2\nHELPER: mi clienta ya pidió asilo.\n",
    )
    .await;
    // Skips everything.
    start(TEAM, "\n\n\n\n\n\nSKIPPED: solo una pregunta.\n").await;
    // Another topic's three questions: someone else, in Canada, urgent.
    start(
        "crossing-the-border",
        "2\n3\n3\nBORDER: mi hermano ya cruzó.\n",
    )
    .await;
    // A mistyped answer is refused before anything is sent.
    seeker("bad")
        .fails(
            &["seeker", "start", "--team", TEAM, "--questions"],
            "7\nHola\n",
            "not one of the numbers listed",
        )
        .await;

    device.ok(&["counselor", "sync"], DEVICE_PASS).await;
    let inbox = |extra: &'static [&'static str]| {
        let mut args = vec!["--json", "counselor", "inbox"];
        args.extend_from_slice(extra);
        let device = &device;
        async move { device.ok(&args, DEVICE_PASS).await.json() }
    };
    let all = inbox(&[]).await;
    assert_eq!(firsts(&all).len(), 4);
    let mut everyone = firsts(&all);
    everyone.sort();

    // Urgent first: level 3 (minor, border), then 2 (helper), then none.
    let urgent = firsts(&inbox(&["--sort", "urgent-first"]).await);
    let mut top: Vec<&str> = urgent[..2].iter().map(String::as_str).collect();
    top.sort();
    assert_eq!(
        top,
        ["BORDER: mi hermano ya cruzó.", "MINOR: tengo 16 años."]
    );
    assert_eq!(urgent[2], "HELPER: mi clienta ya pidió asilo.");
    assert_eq!(urgent[3], "SKIPPED: solo una pregunta.");
    // Minors first.
    let minors = firsts(&inbox(&["--sort", "minors-first"]).await);
    assert_eq!(minors[0], "MINOR: tengo 16 años.");
    let mut rest = minors[1..].to_vec();
    rest.sort();
    let mut expected: Vec<String> = everyone
        .iter()
        .filter(|m| !m.starts_with("MINOR"))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(rest, expected);
    // Filters.
    let mut other = firsts(&inbox(&["--for-someone-else"]).await);
    other.sort();
    assert_eq!(
        other,
        [
            "BORDER: mi hermano ya cruzó.",
            "HELPER: mi clienta ya pidió asilo."
        ]
    );
    assert_eq!(
        firsts(&inbox(&["--minors"]).await),
        ["MINOR: tengo 16 años."]
    );
    let mut urgent_only = firsts(&inbox(&["--urgent"]).await);
    urgent_only.sort();
    assert_eq!(
        urgent_only,
        ["BORDER: mi hermano ya cruzó.", "MINOR: tengo 16 años."]
    );
    assert_eq!(
        firsts(&inbox(&["--minors", "--for-someone-else"]).await),
        Vec::<String>::new()
    );
    // Filters combine with the status filter and the order.
    assert_eq!(
        firsts(&inbox(&["--filter", "unread", "--urgent", "--sort", "minors-first"]).await)[0],
        "MINOR: tengo 16 años."
    );
    device
        .fails(
            &["counselor", "inbox", "--sort", "oldest"],
            DEVICE_PASS,
            "--sort must be one of newest, minors-first, urgent-first",
        )
        .await;

    // The answers, read against the directory, in each conversation.
    let conv = |first: &str| {
        all["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["messages"][0]["text"] == first)
            .unwrap()["intake"]
            .clone()
    };
    let minor = conv("MINOR: tengo 16 años.");
    assert_eq!(minor["minor"], true);
    assert_eq!(minor["urgent"], true);
    assert_eq!(minor["for_someone_else"], false);
    assert_eq!(minor["us_citizen"], false);
    assert_eq!(minor["asylum_elsewhere"], Value::Null, "skipped");
    let answers: Vec<(&str, &str)> = minor["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["meaning"].as_str().unwrap(),
                a["answer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("for_whom", "For myself"),
            ("minor", "yes"),
            ("citizenship", "Mexico"),
            ("location", "prefers not to say"),
            ("urgency", "Today: there is danger now"),
        ]
    );
    let helper = conv("HELPER: mi clienta ya pidió asilo.");
    assert_eq!(helper["for_someone_else"], true);
    assert_eq!(helper["asylum_elsewhere"], true);
    assert!(
        helper["answers"][1]["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Is the person you are helping")
    );
    assert_eq!(
        conv("SKIPPED: solo una pregunta.")["answers"],
        serde_json::json!([])
    );
    assert_eq!(conv("BORDER: mi hermano ya cruzó.")["in_canada"], true);

    // The human views: flags in the table, the summary on top of `show`.
    let table = device.ok(&["counselor", "inbox"], DEVICE_PASS).await.stdout;
    assert!(table.lines().next().unwrap().contains("INTAKE"));
    let row = table.lines().find(|l| l.contains("MINOR")).unwrap();
    assert!(row.contains("MINOR,URGENT"), "{row}");
    let helper_id = all["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["messages"][0]["text"] == "HELPER: mi clienta ya pidió asilo.")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = device
        .ok(&["counselor", "show", &helper_id], DEVICE_PASS)
        .await
        .stdout;
    let summary_at = shown.find("Intake answers:").unwrap();
    assert!(
        summary_at < shown.find("HELPER: mi clienta").unwrap(),
        "{shown}"
    );
    assert!(shown.contains("Written by someone helping another person"));
    assert!(shown.contains("The U.S., The U.K."), "{shown}");
}
