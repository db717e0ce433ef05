//! The web root's files over HTTP (issue 19 item 5): brotli to a client that
//! accepts it, gzip to one that accepts only gzip, the file as it is
//! otherwise, each decompressing to the exact file; the security headers
//! unchanged and `Vary: Accept-Encoding` on every one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;

use northstar_relay::config::Config;
use northstar_relay::server;
use northstar_relay::store::memory::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response: status, lowercase header lines, body.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Got {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let ae = accept
        .map(|a| format!("Accept-Encoding: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{ae}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    let got = Got {
        status,
        headers,
        body,
    };
    if let Some(n) = got.header("content-length") {
        assert_eq!(n.parse::<usize>().unwrap(), got.body.len(), "{path}");
    }
    got
}

fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out = body.to_vec(),
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

/// A web root like the seeker page's: HTML, JS, CSS and a module.
fn web_root() -> (tempfile::TempDir, Vec<(&'static str, Vec<u8>)>) {
    let dir = tempfile::tempdir().unwrap();
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    for i in 0..20_000u32 {
        wasm.extend_from_slice(&(i % 251).to_le_bytes());
    }
    let files = vec![
        (
            "/index.html",
            "<!doctype html><html lang=en><title>northstar</title><p>Ask a question. </p>"
                .repeat(50)
                .into_bytes(),
        ),
        (
            "/seeker.js",
            "export function hello(name) { return `hello ${name}`; }\n"
                .repeat(80)
                .into_bytes(),
        ),
        (
            "/style.css",
            "body { margin: 0; font: 1rem system-ui; }\n"
                .repeat(60)
                .into_bytes(),
        ),
        ("/pkg/northstar_web_bg.wasm", wasm),
    ];
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    for (p, b) in &files {
        std::fs::write(dir.path().join(&p[1..]), b).unwrap();
    }
    (dir, files)
}

async fn start(root: &std::path::Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut config = Config::defaults().unwrap();
    config.web_root = root.to_path_buf();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(
        listener,
        config,
        Arc::new(MemoryStore::new()),
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

fn strict_headers(g: &Got, what: &str) {
    for (n, v) in [
        ("content-security-policy", server::CONTENT_SECURITY_POLICY),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("vary", "accept-encoding"),
    ] {
        assert_eq!(g.header(n), Some(v), "{n} on {what}");
    }
}

#[tokio::test]
async fn every_static_file_is_sent_compressed_as_the_client_accepts() {
    let (dir, files) = web_root();
    let (addr, _stop) = start(dir.path()).await;
    for (path, bytes) in &files {
        for (accept, want) in [
            (Some("br, gzip"), Some("br")),
            (Some("gzip, deflate, br, zstd"), Some("br")),
            (Some("gzip"), Some("gzip")),
            (Some("br;q=0, gzip"), Some("gzip")),
            (Some("identity"), None),
            (None, None),
        ] {
            let what = format!("{path} with Accept-Encoding {accept:?}");
            // Twice: compressed on the first request, from memory after.
            for _ in 0..2 {
                let g = get(addr, path, accept).await;
                assert_eq!(g.status, 200, "{what}");
                assert_eq!(g.header("content-encoding"), want, "{what}");
                strict_headers(&g, &what);
                if want.is_some() {
                    assert!(g.body.len() < bytes.len(), "{what}: not smaller");
                }
                assert_eq!(&decode(want, &g.body), bytes, "{what}");
            }
        }
    }
    // `/` is the index, compressed too.
    let g = get(addr, "/", Some("br, gzip")).await;
    assert_eq!(g.header("content-encoding"), Some("br"));
    assert_eq!(decode(Some("br"), &g.body), files[0].1);
    // A 404 carries the same headers and is not compressed.
    let g = get(addr, "/nothing.js", Some("br, gzip")).await;
    assert_eq!(g.status, 404);
    assert_eq!(g.header("content-encoding"), None);
    assert_eq!(g.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_changed_file_is_compressed_again() {
    let (dir, files) = web_root();
    let (addr, _stop) = start(dir.path()).await;
    let g = get(addr, "/seeker.js", Some("br")).await;
    assert_eq!(decode(Some("br"), &g.body), files[1].1);
    let new = "export const changed = true;\n".repeat(100).into_bytes();
    std::fs::write(dir.path().join("seeker.js"), &new).unwrap();
    for accept in ["br", "gzip"] {
        let g = get(addr, "/seeker.js", Some(accept)).await;
        assert_eq!(decode(Some(accept), &g.body), new, "{accept}");
    }
}

#[tokio::test]
async fn a_range_request_gets_the_identity_bytes() {
    let (dir, files) = web_root();
    let (addr, _stop) = start(dir.path()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /style.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br, gzip\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 206"), "{text}");
    assert!(!text.contains("content-encoding"), "{text}");
    assert!(raw.ends_with(&files[2].1[..10]));
}
