//! README.md's Quick tour, run exactly as written: the shell blocks of the
//! section are taken from the README and run by bash at a terminal (a
//! pseudo-terminal from `script`), and the test types what a person types
//! at each prompt: passphrases, the texts the README says to type (its
//! `#   type:` lines), and the codename the seeker was shown.
//!
//! Three things are replaced, and each is checked to be in the README
//! first: Terminal 1's `./scripts/run` (the test starts the relay itself),
//! the release build (the test uses the binaries already built), and the
//! relay's URL and `NORTHSTAR_HOME` (a free port, a temporary directory).
//! The tour runs in a scratch directory, so the web configuration it
//! writes is checked there and the tracked file is left alone.

use std::process::Stdio;
use std::time::Duration;

use northstar_e2e::cli::Cli;
use northstar_e2e::{RelayProcess, bin_dir, workspace_root};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUILD_LINE: &str =
    r#"cargo build --release -p northstar-cli && export PATH="$PWD/target/release:$PATH""#;
const RELAY_URL: &str = "ws://127.0.0.1:8080/ws";
const HOME: &str = "/tmp/northstar-tour";
const ADMIN_PASS: &str = "readme admin passphrase";
const DEVICE_PASS: &str = "readme device passphrase";

/// The ```sh blocks of the README's "## Quick tour" section.
fn tour_blocks(readme: &str) -> Vec<String> {
    let start = readme
        .find("\n## Quick tour")
        .expect("a Quick tour section");
    let rest = &readme[start + 1..];
    let section = match rest[3..].find("\n## ") {
        Some(end) => &rest[..end + 3],
        None => rest,
    };
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n"));
        }
    }
    blocks
}

/// What the README says to type at the message prompts, in order.
fn typed_texts(script: &str) -> Vec<String> {
    script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#   type: "))
        .map(|t| t.trim().to_owned())
        .collect()
}

/// The prompts the tour meets, and what a person types at each.
enum Answer {
    Line(String),
    Message,
    Codename,
}

fn answer(prompt: &str) -> Option<Answer> {
    Some(match prompt {
        "New administrator passphrase: "
        | "Repeat the passphrase: "
        | "Administrator passphrase: " => Answer::Line(ADMIN_PASS.into()),
        "New device passphrase: " | "Device passphrase: " => Answer::Line(DEVICE_PASS.into()),
        "Type the message, then Ctrl-D:" => Answer::Message,
        "Codename: " => Answer::Codename,
        _ => return None,
    })
}

const PROMPTS: [&str; 7] = [
    "New administrator passphrase: ",
    "Repeat the passphrase: ",
    "Administrator passphrase: ",
    "New device passphrase: ",
    "Device passphrase: ",
    "Type the message, then Ctrl-D:",
    "Codename: ",
];

/// The codename `seeker start` printed (the first line after "Your
/// codename" with text), once that line is complete.
fn codename_in(output: &str) -> Option<String> {
    let at = output.find("Your codename")?;
    let mut lines: Vec<&str> = output[at..].split('\n').collect();
    lines.pop(); // not complete yet
    lines
        .into_iter()
        .skip(1)
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_tour_runs_as_written() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: `script` (util-linux) is needed to run the README's tour at a terminal"
        );
        return;
    }
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let blocks = tour_blocks(&readme);
    assert_eq!(blocks.len(), 2, "Terminal 1 and Terminal 2: {blocks:?}");
    assert!(blocks[0].lines().any(|l| l.trim() == "./scripts/run"));
    let mut script = blocks[1].clone();
    for needed in [BUILD_LINE, RELAY_URL, HOME] {
        assert!(script.contains(needed), "the tour no longer has {needed:?}");
    }
    let relay = RelayProcess::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let cwd = tmp.path().join("checkout");
    // A checkout's built web client, which `admin web-release` signs.
    let built = workspace_root().join("web-client/static");
    assert!(
        built.join("pkg/northstar_web_bg.wasm").is_file(),
        "the web client's WebAssembly module is not built: run `. scripts/lib.sh && build_web` (./scripts/test does)"
    );
    copy_dir(&built, &cwd.join("web-client/static"));
    script = script
        .replace(
            BUILD_LINE,
            &format!("export PATH=\"{}:$PATH\"", bin_dir().display()),
        )
        .replace(RELAY_URL, &relay.url())
        .replace(HOME, &home.display().to_string());
    let mut texts = typed_texts(&script).into_iter();
    assert_eq!(texts.len(), 2, "the question and the answer");
    let question = typed_texts(&script)[0].clone();
    let reply = typed_texts(&script)[1].clone();
    let file = tmp.path().join("tour.sh");
    std::fs::write(&file, &script).unwrap();

    let mut child = tokio::process::Command::new("script")
        .args(["-q", "-f", "-e", "-c"])
        .arg(format!(
            "bash --noprofile --norc -e -o pipefail {}",
            file.display()
        ))
        .arg("/dev/null")
        .current_dir(&cwd)
        .env_remove("NORTHSTAR_ORG")
        .env_remove("NORTHSTAR_RELAY")
        .env_remove("NORTHSTAR_HOME")
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut tty_in = child.stdin.take().unwrap();
    let mut tty_out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut answered = 0; // bytes of `seen` already scanned for prompts
    let mut codename: Option<String> = None;
    let mut buf = [0u8; 4096];
    let run = async {
        loop {
            let n = tty_out.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if codename.is_none() {
                codename = codename_in(&seen);
            }
            // Answer every prompt that appeared since the last answer.
            while let Some((at, prompt)) = PROMPTS
                .iter()
                .filter_map(|p| seen[answered..].find(p).map(|i| (answered + i, *p)))
                .min_by_key(|(i, _)| *i)
            {
                answered = at + prompt.len();
                let typed = match answer(prompt).unwrap() {
                    Answer::Line(l) => format!("{l}\n"),
                    Answer::Message => {
                        let t = texts.next().expect("a text to type");
                        // The line, then Ctrl-D at the start of the next.
                        format!("{t}\n\u{4}")
                    }
                    Answer::Codename => {
                        format!("{}\n", codename.clone().expect("the codename was shown"))
                    }
                };
                // Give the program a moment to turn echo off and read.
                tokio::time::sleep(Duration::from_millis(100)).await;
                tty_in.write_all(typed.as_bytes()).await.unwrap();
                tty_in.flush().await.unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("the tour did not finish; the terminal showed:\n{seen}"));
    if std::env::var_os("NORTHSTAR_SHOW_TOUR").is_some() {
        eprintln!("{seen}");
    }
    let status = child.wait().await.unwrap();
    assert!(
        status.success(),
        "the tour failed; the terminal showed:\n{seen}"
    );
    assert!(
        !seen.contains("Traceback") && !seen.contains("northstar: "),
        "an error on the way:\n{seen}"
    );

    // What a person sees at the end: the counselor's answer.
    assert!(
        seen.contains(&format!("    {reply}")),
        "no answer read:\n{seen}"
    );
    assert!(!seen.contains("\u{1b}["), "colour codes on a dumb terminal");
    // The release it signed names the organisation and this relay.
    let release =
        std::fs::read_to_string(cwd.join("web-release/.well-known/northstar/release")).unwrap();
    let line = |key: &str| {
        release
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
    };
    let org = line("org ").expect("the release names the organisation key");
    assert_eq!(org.len(), 64);
    assert_eq!(line("relay ").as_deref(), Some(relay.url().as_str()));
    // The counselors saw the question the README typed.
    let ana = Cli {
        relay: relay.url(),
        home: home.clone(),
        org: Some(org),
    };
    let ana_home = home.join("ana").display().to_string();
    let inbox = ana
        .ok(
            &["--json", "counselor", "--home", &ana_home, "inbox"],
            &format!("{DEVICE_PASS}\n"),
        )
        .await
        .json();
    assert_eq!(
        inbox["conversations"][0]["messages"][0]["text"],
        question.as_str()
    );
    assert_eq!(
        inbox["conversations"][0]["messages"][1]["text"],
        reply.as_str()
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
