//! `northstar counselor web`: the counselor inbox in the browser, served
//! from files embedded in this binary (cli/build.rs) on 127.0.0.1 only.
//! The page's code, the organisation key and the relay URLs all come from
//! the binary the counselor installed; the remote relay only carries
//! WebSocket frames. The key store lives in the browser's IndexedDB for
//! this local origin (`http://127.0.0.1:<port>`), so the port stays the
//! same from one run to the next.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Out;

use northstar_compress as compress;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_inbox.rs"));
}

/// The default port: the browser keeps the key store per origin, so a
/// counselor uses the same port every time.
pub const DEFAULT_PORT: u16 = 8765;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The organisation key (64 hex digits) to pin.
    #[arg(long, env = "NORTHSTAR_ORG")]
    org: String,
    /// The local port (the browser's key store belongs to this port: keep it).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Print the address instead of opening the browser.
    #[arg(long)]
    no_browser: bool,
}

pub async fn run(args: Args, relay: &str, out: &Out) -> Result<()> {
    if !embedded::MODULE_BUILT {
        bail!(
            "this binary was built without the web inbox's WebAssembly module: run ./scripts/run (or `. scripts/lib.sh && build_web`), then build northstar again"
        );
    }
    let org = crate::parse_org(&args.org)?;
    let relays: Vec<String> = relay
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if relays.is_empty()
        || !relays
            .iter()
            .all(|r| r.starts_with("ws://") || r.starts_with("wss://"))
    {
        bail!("--relay must be one or more ws:// or wss:// URLs");
    }
    let csp = northstar_core::webrelease::csp_for(&relays);
    northstar_core::webrelease::check_csp(&csp).map_err(|e| anyhow!("{e}"))?;
    let config = json!({ "org_key": hex::encode(org.as_bytes()), "relays": relays }).to_string();
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/");
    out.print(
        json!({ "url": url, "relays": relays, "fingerprint": org.fingerprint() }),
        || {
            format!(
                "Counselor inbox: {url} (this binary's own files; relay {}; organisation {}).\nCtrl-C stops it.",
                relays.join(", "),
                org.fingerprint()
            )
        },
    );
    if !args.no_browser {
        open_browser(&url);
    }
    // Every file compressed once, before the address is given out, so no
    // request waits on it (the module takes seconds in a debug build).
    let encoded = tokio::task::spawn_blocking(|| {
        embedded::FILES
            .iter()
            .map(|(_, _, b)| tokio::sync::OnceCell::new_with(Some(compress::Encoded::new(b))))
            .collect()
    })
    .await?;
    let site = Site {
        port,
        csp,
        config,
        encoded,
    };
    let site = std::sync::Arc::new(site);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let site = site.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), site.serve(stream)).await;
                });
            }
        }
    }
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_err()
    {
        eprintln!("northstar: open {url} in your browser");
    }
}

struct Site {
    port: u16,
    csp: String,
    config: String,
    /// Each embedded file compressed, once, on its first request.
    encoded: Vec<tokio::sync::OnceCell<compress::Encoded>>,
}

impl Site {
    async fn serve(&self, mut s: TcpStream) -> Result<()> {
        let mut buf = Vec::with_capacity(2048);
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await?;
            if n == 0 || buf.len() + n > 16 * 1024 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
        let mut host = String::new();
        let mut accept = None;
        for (n, v) in lines.filter_map(|l| l.split_once(':')) {
            if n.trim().eq_ignore_ascii_case("host") {
                host = v.trim().to_owned();
            } else if n.trim().eq_ignore_ascii_case("accept-encoding") {
                accept = Some(v.trim().to_owned());
            }
        }
        // Only this machine's own address: a page elsewhere that rebinds a
        // DNS name to 127.0.0.1 gets nothing (its Host header differs).
        let ours = [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ];
        let mut file = None;
        let (status, ty, body): (&str, &str, &[u8]) = if !ours.contains(&host) {
            ("421 Misdirected Request", "text/plain", b"wrong host\n")
        } else if method != "GET" && method != "HEAD" {
            ("405 Method Not Allowed", "text/plain", b"GET only\n")
        } else {
            let path = target.split(['?', '#']).next().unwrap_or("");
            let path = if path == "/" { "/counselor.html" } else { path };
            if path == "/northstar-local.json" {
                ("200 OK", "application/json", self.config.as_bytes())
            } else if let Some((i, (_, ty, b))) = embedded::FILES
                .iter()
                .enumerate()
                .find(|(_, (p, _, _))| *p == path)
            {
                file = Some(i);
                ("200 OK", ty, b)
            } else {
                ("404 Not Found", "text/plain", b"not found\n")
            }
        };
        // An embedded file goes out brotli- or gzip-compressed when the
        // browser accepts it (compressed once, then from memory).
        let coding = compress::negotiate(accept.as_deref());
        let mut encoding = String::new();
        let mut body = body;
        if let (Some(i), Some(name)) = (file, coding.header()) {
            let raw: &'static [u8] = embedded::FILES[i].2;
            let encoded = self.encoded[i]
                .get_or_init(|| async move {
                    tokio::task::spawn_blocking(move || compress::Encoded::new(raw))
                        .await
                        .unwrap_or_default()
                })
                .await;
            if let Some(b) = encoded.get(coding, raw.len()) {
                body = b;
                encoding = format!("Content-Encoding: {name}\r\n");
            }
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\n{encoding}Content-Length: {}\r\nVary: Accept-Encoding\r\nContent-Security-Policy: {}\r\nReferrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nX-Frame-Options: DENY\r\nCross-Origin-Resource-Policy: same-origin\r\nConnection: close\r\n\r\n",
            body.len(),
            self.csp
        );
        s.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            s.write_all(body).await?;
        }
        s.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::io::Read as _;

    use super::*;

    /// One request to a `Site` on a fresh port: (head, body).
    async fn get(path: &str, accept: Option<&str>) -> (String, Vec<u8>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let site = Site {
            port,
            csp: "default-src 'none'".into(),
            config: "{}".into(),
            encoded: embedded::FILES
                .iter()
                .map(|_| tokio::sync::OnceCell::new())
                .collect(),
        };
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            site.serve(s).await.unwrap();
        });
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let ae = accept
            .map(|a| format!("Accept-Encoding: {a}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{ae}\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        server.await.unwrap();
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8(raw[..end].to_vec())
                .unwrap()
                .to_ascii_lowercase(),
            raw[end + 4..].to_vec(),
        )
    }

    #[tokio::test]
    async fn every_embedded_file_is_sent_compressed_as_the_browser_accepts() {
        for (path, _, bytes) in embedded::FILES {
            for (accept, want) in [
                (Some("br, gzip"), Some("br")),
                (Some("gzip"), Some("gzip")),
                (Some("identity"), None),
                (None, None),
            ] {
                let (head, body) = get(path, accept).await;
                let what = format!("{path} {accept:?}");
                assert!(head.starts_with("http/1.1 200"), "{what}: {head}");
                for h in [
                    "vary: accept-encoding",
                    "cache-control: no-store",
                    "referrer-policy: no-referrer",
                    "x-content-type-options: nosniff",
                    "x-frame-options: deny",
                    "content-security-policy: default-src 'none'",
                ] {
                    assert!(head.contains(h), "{what}: {h}");
                }
                assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
                let mut out = Vec::new();
                match want {
                    Some("br") if head.contains("content-encoding: br") => {
                        brotli::Decompressor::new(&body[..], 4096)
                            .read_to_end(&mut out)
                            .unwrap();
                    }
                    Some("gzip") if head.contains("content-encoding: gzip") => {
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut out)
                            .unwrap();
                    }
                    // Only a file compression would not shrink (none today
                    // but the tiny icon) goes out as it is.
                    Some(_) => {
                        assert!(bytes.len() < 1024, "{what}: not compressed");
                        out = body.clone();
                    }
                    None => {
                        assert!(!head.contains("content-encoding"), "{what}");
                        out = body.clone();
                    }
                }
                assert_eq!(&out, bytes, "{what}");
            }
        }
    }
}
