//! The web client's root of trust (issue 18), on the command line:
//! `northstar admin web-release` signs a release of the seeker page and
//! writes the directory any static host (or the relay) serves;
//! `northstar web verify <url>` fetches every file such a page loads and
//! compares it to the signed release — the transparency watcher of
//! docs/DEPLOY.md. The release format and every check are client-core's
//! (`northstar_core::webrelease`); this file reads files and speaks HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use northstar_core::directory::OrgSigningKey;
use northstar_core::webrelease::{
    self, RELEASE_PATH, Release, ReleaseError, WEBCAT_MANIFEST_PATH, csp_for,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Out;
use crate::shell::now;

/// The seeker page's files: everything index.html loads (and keystore.js,
/// which core.js names for the inbox but the seeker page never loads); not
/// counselor.html or counselor.js, which run from `northstar counselor web`
/// only.
pub const SEEKER_FILES: &[&str] = &[
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
    "pkg/northstar_web.js",
    "pkg/northstar_web_bg.wasm",
];
const WASM_FILE: &str = "pkg/northstar_web_bg.wasm";
const DAY: u64 = 24 * 3600;

/// `northstar admin web-release`.
#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    /// The built web client (after scripts/lib.sh build_web).
    #[arg(long, default_value = "web-client/static")]
    from: PathBuf,
    /// Where to write the release (a new or empty directory), to serve as
    /// it is: `northstar-relay --web-root DIR`, or any static host.
    #[arg(long)]
    out: PathBuf,
    /// Days until pages and watchers refuse this release (1 to 366).
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=366))]
    lifetime_days: u64,
    /// Where the code comes from (the WEBCAT manifest's `app`).
    #[arg(long, default_value = "https://northstar.invalid/web-client")]
    app: String,
}

/// Signs a release of the seeker page for `relays` (the global `--relay`).
pub fn release(key: &OrgSigningKey, args: ReleaseArgs, relays: &str, out: &Out) -> Result<()> {
    let relays: Vec<String> = relays
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if !args.from.join(WASM_FILE).is_file() {
        bail!(
            "{} has no WebAssembly module: run ./scripts/run or `. scripts/lib.sh && build_web` first",
            args.from.display()
        );
    }
    if args.out.exists()
        && std::fs::read_dir(&args.out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} exists and is not empty", args.out.display());
    }
    let mut files = BTreeMap::new();
    let mut contents = Vec::new();
    for f in SEEKER_FILES {
        let bytes = std::fs::read(args.from.join(f))
            .with_context(|| format!("cannot read {}", args.from.join(f).display()))?;
        files.insert(format!("/{f}"), Sha256::digest(&bytes).into());
        contents.push((*f, bytes));
    }
    let wasm: [u8; 32] = files[&format!("/{WASM_FILE}")];
    let issued_at = now().0;
    let r = Release {
        app: args.app,
        version: issued_at.to_string(),
        issued_at,
        expires_at: issued_at + args.lifetime_days * DAY,
        org: key.public(),
        csp: csp_for(&relays),
        relays,
        index: "/index.html".to_owned(),
        fallback: "/index.html".to_owned(),
        files,
        wasm: vec![wasm],
    };
    let text = r.sign(key).map_err(|e| anyhow!("{e}"))?;
    let manifest = r.webcat_manifest().map_err(|e| anyhow!("{e}"))?;
    for (f, bytes) in &contents {
        write(&args.out.join(f), bytes)?;
    }
    // The module, gzipped, for browsers that accept it (the relay sends it
    // with Content-Encoding: gzip; the bytes the page sees are the same).
    let gz = args.from.join(format!("{WASM_FILE}.gz"));
    if gz.is_file() {
        write(
            &args.out.join(format!("{WASM_FILE}.gz")),
            &std::fs::read(&gz)?,
        )?;
    }
    write(&args.out.join(&RELEASE_PATH[1..]), text.as_bytes())?;
    write(
        &args.out.join(&WEBCAT_MANIFEST_PATH[1..]),
        manifest.as_bytes(),
    )?;
    out.print(
        json!({ "out": args.out, "version": r.version, "issued_at": r.issued_at,
            "expires_at": r.expires_at, "relays": r.relays, "csp": r.csp,
            "fingerprint": r.org.fingerprint() }),
        || {
            format!(
                "Signed web release {} in {} for {}.\nPages and watchers refuse it from {}: release again before then.\nServe that directory as it is (northstar-relay --web-root, or any static host sending the CSP in .well-known/northstar/release).",
                r.version,
                args.out.display(),
                r.relays.join(", "),
                crate::utc(r.expires_at)
            )
        },
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

// ------------------------------------------------------------------ verify

/// `northstar web …`
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Fetch every file the page at URL loads and compare each to the
    /// release signed by the organisation key. Exits non-zero with a
    /// one-line reason on any difference.
    Verify {
        /// The page's address (http://…/; over Tor for an onion service).
        url: String,
        /// The organisation key (64 hex digits) the release must be signed by.
        #[arg(long, env = "NORTHSTAR_ORG")]
        org: String,
        /// A file remembering the newest release seen: an older one served
        /// later is a rollback (created when missing).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

pub async fn run(args: Args, out: &Out) -> Result<()> {
    match args.cmd {
        Cmd::Verify { url, org, state } => {
            let org = crate::parse_org(&org)?;
            let seen = match &state {
                Some(p) if p.exists() => std::fs::read_to_string(p)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or_else(|| anyhow!("{} does not hold a release time", p.display()))?,
                _ => 0,
            };
            let r = verify(&url, &org, seen, now().0).await?;
            if let Some(p) = &state {
                std::fs::write(p, format!("{}\n", r.issued_at.max(seen)))
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            out.print(
                json!({ "ok": true, "url": url, "version": r.version, "issued_at": r.issued_at,
                    "expires_at": r.expires_at, "files": r.files.len() }),
                || {
                    format!(
                        "ok: {url} serves the signed release {} ({} files, every one matches; expires {})",
                        r.version,
                        r.files.len(),
                        crate::utc(r.expires_at)
                    )
                },
            );
            Ok(())
        }
    }
}

/// The whole check, as `web verify` runs it; every failure is one line.
pub async fn verify(
    url: &str,
    org: &northstar_core::keys::OrgPublicKey,
    seen: u64,
    now: u64,
) -> Result<Release> {
    let base = HttpUrl::parse(url)?;
    let fail = |e: ReleaseError| anyhow!("{url}: {e}");
    let text = base.join(&RELEASE_PATH[1..]).get().await?;
    if text.status == 404 {
        return Err(fail(ReleaseError::Missing(RELEASE_PATH.to_owned())));
    }
    text.ok()?;
    let text =
        String::from_utf8(text.body).map_err(|_| anyhow!("{url}: the release is not text"))?;
    let r = webrelease::verify(&text, Some(org), now).map_err(fail)?;
    r.check_not_older_than(seen).map_err(fail)?;

    // Every file of the release, and `/` (the index), as served.
    let mut served: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for path in r.files.keys().map(String::as_str).chain(["/"]) {
        let resp = base.join(&path[1..]).get().await?;
        if resp.status == 404 {
            return Err(fail(ReleaseError::Missing(path.to_owned())));
        }
        resp.ok()?;
        if resp.header("content-security-policy") != Some(r.csp.as_str()) {
            return Err(fail(ReleaseError::CspMismatch(path.to_owned())));
        }
        served.insert(path.to_owned(), resp.body);
    }
    // What the served pages and scripts load must be files of the release
    // (checked first: an added script is named as such, not only as a
    // modified page).
    for (path, body) in &served {
        let from = if path == "/" { r.index.as_str() } else { path };
        for dep in references(from, body) {
            if dep.starts_with("//") || dep.contains("://") || !r.files.contains_key(&dep) {
                return Err(fail(ReleaseError::Unlisted(dep)));
            }
        }
    }
    for (path, body) in &served {
        let listed = if path == "/" { r.index.as_str() } else { path };
        r.check_file(listed, body).map_err(|e| match e {
            ReleaseError::Mismatch(_) => fail(ReleaseError::Mismatch(path.clone())),
            other => fail(other),
        })?;
    }
    // The WEBCAT manifest must list the same hashes and CSP.
    let m = base.join(&WEBCAT_MANIFEST_PATH[1..]).get().await?;
    if m.status == 404 {
        return Err(fail(ReleaseError::Missing(WEBCAT_MANIFEST_PATH.to_owned())));
    }
    m.ok()?;
    let got: serde_json::Value = serde_json::from_slice(&m.body)
        .map_err(|_| anyhow!("{url}: {WEBCAT_MANIFEST_PATH} is not JSON"))?;
    let want: serde_json::Value = serde_json::from_str(&r.webcat_manifest().map_err(fail)?)?;
    for field in ["files", "default_csp", "wasm", "default_index"] {
        if got["manifest"][field] != want["manifest"][field] {
            bail!("{url}: {WEBCAT_MANIFEST_PATH} disagrees with the signed release on `{field}`");
        }
    }
    Ok(r)
}

/// The files an HTML page or a JavaScript module loads (relative references
/// resolved against `from`): `src` attributes, `<link href>`, and module
/// specifiers of `import … from "…"` and `import("…")`, and relative
/// `new URL("…", import.meta.url)` (the worker core.js starts). Cross-origin
/// references are returned as they are.
pub fn references(from: &str, body: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(body);
    let mut refs = Vec::new();
    if from.ends_with(".html") {
        for tag in text.split('<').skip(1) {
            let tag = tag.split('>').next().unwrap_or("");
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            let mut attrs = vec![" src="];
            if name == "link" {
                attrs.push(" href=");
            }
            for a in attrs {
                let lower = tag.to_ascii_lowercase();
                let mut at = 0;
                while let Some(i) = lower[at..].find(a) {
                    let start = at + i + a.len();
                    if let Some(v) = quoted(&tag[start..]) {
                        refs.push(v.to_owned());
                    }
                    at = start;
                }
            }
        }
    } else if from.ends_with(".js") {
        // `new URL("./worker.js", import.meta.url)`: the seeker worker.
        for marker in ["from ", "import(", "import ", "new URL("] {
            let mut at = 0;
            while let Some(i) = text[at..].find(marker) {
                let start = at + i + marker.len();
                if let Some(v) = quoted(text[start..].trim_start())
                    && (v.starts_with("./")
                        || v.starts_with("../")
                        || v.starts_with('/')
                        || v.contains("://"))
                {
                    refs.push(v.to_owned());
                }
                at = start;
            }
        }
    }
    refs.into_iter().map(|r| resolve(from, &r)).collect()
}

fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &s[1..];
    rest.find(q).map(|end| &rest[..end])
}

fn resolve(from: &str, r: &str) -> String {
    if r.contains("://") || r.starts_with("//") || r.starts_with("data:") {
        return r.to_owned();
    }
    let r = r.split(['?', '#']).next().unwrap_or("");
    let mut parts: Vec<&str> = if r.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
        p.pop();
        p
    };
    for seg in r.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

// ------------------------------------------------------------------ HTTP/1.1

/// An `http://host[:port]/path/` URL.
#[derive(Debug, Clone)]
pub struct HttpUrl {
    host: String,
    port: u16,
    path: String,
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    url: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn ok(&self) -> Result<()> {
        if self.status != 200 {
            bail!("{}: HTTP {}", self.url, self.status);
        }
        Ok(())
    }
}

const MAX_BODY: usize = 32 << 20;

impl HttpUrl {
    pub fn parse(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            if url.starts_with("https://") {
                bail!(
                    "{url}: this build speaks plain http:// only (as its relay connections do); check an onion service's http:// address through Tor (torsocks), or a TLS host from a machine that reaches it over http on a trusted path"
                );
            }
            bail!("{url}: expected an http:// URL");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| anyhow!("{url}: bad port"))?),
            None => (authority, 80),
        };
        if host.is_empty() || path.contains(['?', '#', ' ']) {
            bail!("{url}: not a page address");
        }
        let mut path = path.to_owned();
        if !path.ends_with('/') {
            // A page's directory: `…/index.html` → `…/`.
            let cut = path.rfind('/').unwrap_or(0);
            path.truncate(cut + 1);
        }
        Ok(HttpUrl {
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// `rel` (no leading slash) under this URL's directory.
    pub fn join(&self, rel: &str) -> HttpUrl {
        HttpUrl {
            host: self.host.clone(),
            port: self.port,
            path: format!("{}{rel}", self.path),
        }
    }

    fn display(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.path)
    }

    /// One GET, `Connection: close`, no compression, 30 s at most.
    pub async fn get(&self) -> Result<HttpResponse> {
        let url = self.display();
        tokio::time::timeout(Duration::from_secs(30), self.get_inner(&url))
            .await
            .map_err(|_| anyhow!("{url}: no answer within 30 s"))?
    }

    async fn get_inner(&self, url: &str) -> Result<HttpResponse> {
        let mut s = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| anyhow!("{url}: cannot connect: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: northstar-web-verify\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_BODY as u64 + 65_536)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| anyhow!("{url}: {e}"))?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("{url}: not an HTTP response"))?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("{url}: not an HTTP response"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        let resp = |body| HttpResponse {
            status,
            headers: headers.clone(),
            body,
            url: url.to_owned(),
        };
        let h = resp(Vec::new());
        if h.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body).ok_or_else(|| anyhow!("{url}: bad chunked body"))?;
        } else if let Some(n) = h
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if body.len() < n {
                bail!("{url}: the response ended early");
            }
            body.truncate(n);
        }
        if h.header("content-encoding")
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
        {
            bail!("{url}: compressed although identity was asked for");
        }
        if body.len() > MAX_BODY {
            bail!("{url}: larger than 32 MiB");
        }
        Ok(resp(body))
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let i = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..i]).ok()?.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        b = &b[i + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_of_pages_and_modules() {
        let html = br#"<link rel="stylesheet" href="style.css"><script type="module" src="seeker.js"></script><a href="https://weather.com/">x</a><img src="./icon.svg">"#;
        let r = references("/index.html", html);
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            ["/icon.svg", "/seeker.js", "/style.css"]
        );
        let js = br#"import * as core from "./core.js";
import { X } from './ui.js';
const m = await import("./pkg/northstar_web.js");
const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const base = new URL(".", location.href);
// from the relay
"#;
        let r = references("/seeker.js", js);
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            ["/core.js", "/pkg/northstar_web.js", "/ui.js", "/worker.js"]
        );
        assert_eq!(resolve("/pkg/a.js", "../core.js"), "/core.js");
        assert_eq!(
            resolve("/index.html", "https://x.example/a.js"),
            "https://x.example/a.js"
        );
    }

    #[test]
    fn urls_and_chunks() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/site/index.html").unwrap();
        assert_eq!(
            u.join("core.js").display(),
            "http://127.0.0.1:8080/site/core.js"
        );
        assert!(HttpUrl::parse("https://x.example/").is_err());
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }
}
