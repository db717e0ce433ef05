//! A signed release of the web client (docs/WEB_CLIENT.md, "Signed
//! releases"): every file's SHA-256, the Content-Security-Policy, the
//! organisation key and the relay URLs, signed with the organisation key.
//! Pure logic — build, encode, sign, parse, verify, compare — with no I/O:
//! the CLI reads files and fetches URLs, the page's module checks what the
//! page loaded.
//!
//! The signed form is a small line-oriented text, byte-exact and versioned
//! (`northstar-web-release 1`): a release is parsed strictly and must
//! re-encode to exactly the bytes that were signed, so there is one
//! encoding of each release. From the same data [`Release::webcat_manifest`]
//! writes a WEBCAT manifest (`/.well-known/webcat/manifest.json`, the
//! `manifest` object of freedomofpress/webcat-spec manifest.md) with the same
//! file hashes (SHA-256, base64url without padding) and the same CSP.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::keys::{OrgPublicKey, OrgSigningKey, Signature};

/// First line of every release: the format and its version.
pub const MAGIC: &str = "northstar-web-release 1";
/// Domain separation of the release signature.
pub const SIGNATURE_DOMAIN: &[u8] = b"northstar/v1/web-release\n";
/// Where a release is served, relative to the page.
pub const RELEASE_PATH: &str = "/.well-known/northstar/release";
/// Where the WEBCAT manifest is served.
pub const WEBCAT_MANIFEST_PATH: &str = "/.well-known/webcat/manifest.json";
/// At most this many relay URLs.
pub const MAX_RELAYS: usize = 8;
/// At most this many files.
pub const MAX_FILES: usize = 256;
/// At most this many WebAssembly modules.
pub const MAX_WASM: usize = 8;
/// At most this many bytes of release text.
pub const MAX_RELEASE_BYTES: usize = 64 * 1024;
/// A release issued this far in the future (seconds) is refused.
pub const MAX_CLOCK_SKEW_SECS: u64 = 24 * 3600;

/// Why a release or a served file was refused. Each message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    /// The text is not a well-formed release.
    #[error("the release is malformed at line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    /// A value given to build a release is not allowed.
    #[error("cannot build the release: {0}")]
    Invalid(&'static str),
    /// The signature does not verify under the key the release names.
    #[error("the release signature does not verify: the release was altered after signing")]
    BadSignature,
    /// Signed, but by another organisation key than the one pinned.
    #[error(
        "the release is signed by another organisation key (fingerprint {got}) than the pinned one ({pinned})"
    )]
    OrgMismatch { pinned: String, got: String },
    /// Past its signed expiry.
    #[error("the release expired at {expires_at} (Unix time): an old release is being served")]
    Expired { expires_at: u64 },
    /// Issued in the future.
    #[error("the release is issued in the future ({issued_at}, Unix time)")]
    NotYetIssued { issued_at: u64 },
    /// Older than a release already seen.
    #[error(
        "rollback: the release served was issued at {served}, older than the release issued at {seen} already seen"
    )]
    Rollback { served: u64, seen: u64 },
    /// A file the page loads is not in the release.
    #[error("extra file: {0} is loaded by the page but is not in the signed release")]
    Unlisted(String),
    /// A file's content differs from the release.
    #[error("modified file: {0} does not match its SHA-256 in the signed release")]
    Mismatch(String),
    /// A file of the release is not served.
    #[error("missing file: {0} is in the signed release but is not served")]
    Missing(String),
    /// The Content-Security-Policy served differs from the release's.
    #[error("the Content-Security-Policy served with {0} is not the one in the signed release")]
    CspMismatch(String),
    /// The release's Content-Security-Policy breaks a rule.
    #[error("the release's Content-Security-Policy is not allowed: {0}")]
    CspNotAllowed(&'static str),
}

/// SHA-256 of `bytes`, base64url without padding (WEBCAT's file hash form).
pub fn sha256_b64url(bytes: &[u8]) -> String {
    b64url(&Sha256::digest(bytes))
}

/// The Content-Security-Policy of a release whose page talks to `relays`:
/// only its own scripts, styles, images; WebAssembly may be compiled; its
/// own scripts as workers (the seeker worker, worker.js: named, because a
/// browser that knows only CSP 2 would fall back to `default-src 'none'`);
/// connections to its own origin (the release and the module) and to the
/// relays only; no framing, no forms, no base URI.
pub fn csp_for(relays: &[String]) -> String {
    let mut connect = String::from("'self'");
    for r in relays {
        connect.push(' ');
        connect.push_str(r);
    }
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Checks a CSP against the rules a release's policy must follow (stricter
/// than WEBCAT csp.md, which it satisfies): `default-src 'none'`;
/// `script-src` only `'self'`, `'none'` and `'wasm-unsafe-eval'`;
/// `worker-src`, if given, only `'self'` or `'none'`; no
/// `'unsafe-inline'`, `'unsafe-eval'`, `'unsafe-hashes'`, nonce or hash
/// anywhere; `object-src`, if given, `'none'`.
pub fn check_csp(csp: &str) -> Result<(), ReleaseError> {
    let mut default_none = false;
    let mut has_script = false;
    for directive in csp.split(';') {
        let mut words = directive.split_ascii_whitespace();
        let Some(name) = words.next() else { continue };
        let values: Vec<&str> = words.collect();
        for v in &values {
            let lower = v.to_ascii_lowercase();
            if lower.starts_with("'unsafe-")
                || lower.starts_with("'nonce-")
                || lower.starts_with("'sha")
            {
                return Err(ReleaseError::CspNotAllowed(
                    "no 'unsafe-…', nonce or hash sources",
                ));
            }
            if *v == "*"
                || lower == "data:"
                || lower == "blob:"
                || lower == "http:"
                || lower == "https:"
            {
                return Err(ReleaseError::CspNotAllowed(
                    "no wildcard, data:, blob: or scheme-only sources",
                ));
            }
        }
        match name.to_ascii_lowercase().as_str() {
            "default-src" => default_none = values == ["'none'"],
            "script-src" => {
                has_script = true;
                if values
                    .iter()
                    .any(|v| !matches!(*v, "'self'" | "'none'" | "'wasm-unsafe-eval'"))
                {
                    return Err(ReleaseError::CspNotAllowed(
                        "script-src may only name 'self', 'none' and 'wasm-unsafe-eval'",
                    ));
                }
            }
            "worker-src" if values.iter().any(|v| !matches!(*v, "'self'" | "'none'")) => {
                return Err(ReleaseError::CspNotAllowed(
                    "worker-src may only name 'self' and 'none'",
                ));
            }
            "object-src" if values != ["'none'"] => {
                return Err(ReleaseError::CspNotAllowed("object-src must be 'none'"));
            }
            _ => {}
        }
    }
    if !default_none {
        return Err(ReleaseError::CspNotAllowed("default-src must be 'none'"));
    }
    if !has_script {
        return Err(ReleaseError::CspNotAllowed("script-src must be given"));
    }
    Ok(())
}

/// One release of the web client: what the organisation signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Where the code comes from (WEBCAT `app`), a URL or name without spaces.
    pub app: String,
    /// A version name (WEBCAT `version`), without spaces.
    pub version: String,
    /// When it was signed (Unix seconds); a later release has a later time.
    pub issued_at: u64,
    /// From this time on every client and watcher refuses it.
    pub expires_at: u64,
    /// The organisation key: the root of trust of the page.
    pub org: OrgPublicKey,
    /// The relay WebSocket URLs the page connects to, in order.
    pub relays: Vec<String>,
    /// The Content-Security-Policy every file is served with.
    pub csp: String,
    /// The file `/` resolves to (WEBCAT `default_index`).
    pub index: String,
    /// The file served for unknown pages (WEBCAT `default_fallback`).
    pub fallback: String,
    /// Path (from the release root, starting with `/`) → SHA-256.
    pub files: BTreeMap<String, [u8; 32]>,
    /// SHA-256 of each WebAssembly module the page compiles.
    pub wasm: Vec<[u8; 32]>,
}

fn token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 512
        && s.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn path_ok(p: &str) -> bool {
    if p == "/" {
        return true;
    }
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    p.len() <= 256
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

fn relay_ok(u: &str) -> bool {
    (u.starts_with("ws://") || u.starts_with("wss://"))
        && token_ok(u)
        && !u.contains(['\'', ';', ','])
        && u.len() > "wss://".len()
}

fn csp_text_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 4096
        && s.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

impl Release {
    /// Checks every field against the format's rules.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        use ReleaseError::Invalid;
        if !token_ok(&self.app) {
            return Err(Invalid("app: printable ASCII without spaces or quotes"));
        }
        if !token_ok(&self.version) {
            return Err(Invalid("version: printable ASCII without spaces or quotes"));
        }
        if self.expires_at <= self.issued_at {
            return Err(Invalid("the expiry must come after the issue time"));
        }
        if self.relays.is_empty() || self.relays.len() > MAX_RELAYS {
            return Err(Invalid("one to eight relay URLs"));
        }
        if !self.relays.iter().all(|r| relay_ok(r)) {
            return Err(Invalid(
                "relay URLs start with ws:// or wss:// and hold no space, quote, comma or semicolon",
            ));
        }
        if !csp_text_ok(&self.csp) {
            return Err(Invalid("the CSP is printable ASCII without quotes"));
        }
        check_csp(&self.csp)?;
        if self.files.is_empty() || self.files.len() > MAX_FILES {
            return Err(Invalid("one to 256 files"));
        }
        if !self.files.keys().all(|p| path_ok(p)) {
            return Err(Invalid(
                "file paths start with / and hold only letters, digits, '.', '_', '-' and '/'",
            ));
        }
        for p in [&self.index, &self.fallback] {
            if !self.files.contains_key(p.as_str()) || p == "/" {
                return Err(Invalid(
                    "the index and the fallback must be files of the release",
                ));
            }
        }
        if self.wasm.len() > MAX_WASM {
            return Err(Invalid("at most eight WebAssembly modules"));
        }
        for w in &self.wasm {
            if !self.files.values().any(|h| h == w) {
                return Err(Invalid(
                    "each WebAssembly module must be a file of the release",
                ));
            }
        }
        Ok(())
    }

    /// The signed part: every line before `signature`.
    pub fn encode_body(&self) -> Result<String, ReleaseError> {
        self.validate()?;
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(MAGIC.to_owned());
        line(format!("app {}", self.app));
        line(format!("version {}", self.version));
        line(format!("issued {}", self.issued_at));
        line(format!("expires {}", self.expires_at));
        line(format!("org {}", hex32(self.org.as_bytes())));
        for r in &self.relays {
            line(format!("relay {r}"));
        }
        line(format!("csp {}", self.csp));
        line(format!("index {}", self.index));
        line(format!("fallback {}", self.fallback));
        for (p, h) in &self.files {
            line(format!("file {p} {}", b64url(h)));
        }
        for w in &self.wasm {
            line(format!("wasm {}", b64url(w)));
        }
        Ok(s)
    }

    /// The whole release text, signed by `key` (which must be the release's
    /// organisation key).
    pub fn sign(&self, key: &OrgSigningKey) -> Result<String, ReleaseError> {
        if key.public() != self.org {
            return Err(ReleaseError::Invalid(
                "the release must name the key that signs it",
            ));
        }
        let body = self.encode_body()?;
        let sig = key.sign(&signed_message(&body));
        Ok(format!("{body}signature {}\n", b64url(&sig.0)))
    }

    /// The release's SHA-256 of `path`, if listed.
    pub fn hash_of(&self, path: &str) -> Option<&[u8; 32]> {
        self.files.get(path)
    }

    /// Checks one file the page loads: listed, and with the listed hash.
    pub fn check_file(&self, path: &str, content: &[u8]) -> Result<(), ReleaseError> {
        let want = self
            .files
            .get(path)
            .ok_or_else(|| ReleaseError::Unlisted(path.to_owned()))?;
        let got: [u8; 32] = Sha256::digest(content).into();
        if bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &want[..])) {
            Ok(())
        } else {
            Err(ReleaseError::Mismatch(path.to_owned()))
        }
    }

    /// Refuses a release at `now` that is expired or issued in the future.
    pub fn check_time(&self, now: u64) -> Result<(), ReleaseError> {
        if now >= self.expires_at {
            return Err(ReleaseError::Expired {
                expires_at: self.expires_at,
            });
        }
        if self.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(ReleaseError::NotYetIssued {
                issued_at: self.issued_at,
            });
        }
        Ok(())
    }

    /// Refuses a release older than one issued at `seen` (a watcher's memory).
    pub fn check_not_older_than(&self, seen: u64) -> Result<(), ReleaseError> {
        if self.issued_at < seen {
            return Err(ReleaseError::Rollback {
                served: self.issued_at,
                seen,
            });
        }
        Ok(())
    }

    /// The WEBCAT manifest (`/.well-known/webcat/manifest.json`): the
    /// `manifest` object of webcat-spec manifest.md with this release's
    /// files (and `/` for the index), CSP and WebAssembly hashes, keys in
    /// sorted order and no whitespace (RFC 8785 form, since every string is
    /// printable ASCII without quotes or backslashes). `timestamp` and
    /// `signatures` are left empty: they are WEBCAT's Sigsum proofs, which
    /// the organisation adds with WEBCAT's own tools.
    pub fn webcat_manifest(&self) -> Result<String, ReleaseError> {
        self.validate()?;
        let mut files = self.files.clone();
        if let Some(h) = self.files.get(&self.index) {
            files.insert("/".to_owned(), *h);
        }
        let files: Vec<String> = files
            .iter()
            .map(|(p, h)| format!("\"{p}\":\"{}\"", b64url(h)))
            .collect();
        let wasm: Vec<String> = self
            .wasm
            .iter()
            .map(|h| format!("\"{}\"", b64url(h)))
            .collect();
        Ok(format!(
            "{{\"manifest\":{{\"app\":\"{}\",\"default_csp\":\"{}\",\"default_fallback\":\"{}\",\"default_index\":\"{}\",\"extra_csp\":{{}},\"files\":{{{}}},\"timestamp\":\"\",\"version\":\"{}\",\"wasm\":[{}]}},\"signatures\":{{}}}}\n",
            self.app,
            self.csp,
            self.fallback,
            self.index,
            files.join(","),
            self.version,
            wasm.join(",")
        ))
    }
}

fn signed_message(body: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + body.len());
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(body.as_bytes());
    m
}

/// Parses a release text strictly, WITHOUT checking its signature: for a
/// page that must read the WebAssembly module's hash before it can run the
/// module that checks the signature, and for a relay reading the CSP it
/// serves. Anything that matters must go through [`verify`].
pub fn parse_unverified(text: &str) -> Result<(Release, Signature, String), ReleaseError> {
    let bad = |line: usize, what: &'static str| ReleaseError::Malformed { line, what };
    if text.len() > MAX_RELEASE_BYTES {
        return Err(bad(0, "longer than 64 KiB"));
    }
    let Some(inner) = text.strip_suffix('\n') else {
        return Err(bad(0, "the last line must end with a newline"));
    };
    let lines: Vec<&str> = inner.split('\n').collect();
    if lines.first() != Some(&MAGIC) {
        return Err(bad(1, "not a Northstar web release, version 1"));
    }
    let mut c = Cursor {
        lines: &lines,
        i: 1,
    };
    let app = c.take("app", "expected `app`")?;
    let version = c.take("version", "expected `version`")?;
    let issued_at = c
        .take("issued", "expected `issued`")?
        .parse::<u64>()
        .map_err(|_| bad(4, "`issued` is not a number"))?;
    let expires_at = c
        .take("expires", "expected `expires`")?
        .parse::<u64>()
        .map_err(|_| bad(5, "`expires` is not a number"))?;
    let org = unhex32(c.take("org", "expected `org`")?)
        .and_then(|b| OrgPublicKey::from_bytes(b).ok())
        .ok_or_else(|| bad(6, "`org` is not an organisation key"))?;
    let mut relays = Vec::new();
    while c.next_is("relay") {
        relays.push(c.take("relay", "expected `relay`")?.to_owned());
    }
    let csp = c.take("csp", "expected `csp`")?.to_owned();
    let index = c.take("index", "expected `index`")?.to_owned();
    let fallback = c.take("fallback", "expected `fallback`")?.to_owned();
    let mut files = BTreeMap::new();
    while c.next_is("file") {
        let n = c.i + 1;
        let v = c.take("file", "expected `file`")?;
        let (p, h) = v
            .split_once(' ')
            .ok_or_else(|| bad(n, "`file` needs a path and a hash"))?;
        let h =
            unb64url::<32>(h).ok_or_else(|| bad(n, "a file hash is not 32 bytes of base64url"))?;
        if files.insert(p.to_owned(), h).is_some() {
            return Err(bad(n, "a file is listed twice"));
        }
    }
    let mut wasm = Vec::new();
    while c.next_is("wasm") {
        let n = c.i + 1;
        let v = c.take("wasm", "expected `wasm`")?;
        wasm.push(
            unb64url::<32>(v).ok_or_else(|| bad(n, "a wasm hash is not 32 bytes of base64url"))?,
        );
    }
    let sig_line = c.i + 1;
    let sig = c.take("signature", "expected `signature`")?;
    let sig = unb64url::<64>(sig)
        .ok_or_else(|| bad(sig_line, "the signature is not 64 bytes of base64url"))?;
    if c.i != lines.len() {
        return Err(bad(c.i + 1, "nothing may follow the signature"));
    }
    let (app, version) = (app.to_owned(), version.to_owned());
    let release = Release {
        app,
        version,
        issued_at,
        expires_at,
        org,
        relays,
        csp,
        index,
        fallback,
        files,
        wasm,
    };
    let body = release.encode_body().map_err(|e| match e {
        ReleaseError::Invalid(what) | ReleaseError::CspNotAllowed(what) => bad(0, what),
        other => other,
    })?;
    // One encoding per release: what was signed must be exactly the
    // canonical encoding of what was parsed (order, spacing, case).
    let signed_len = text.len() - lines[lines.len() - 1].len() - 1;
    if body.as_bytes() != &text.as_bytes()[..signed_len] {
        return Err(bad(0, "not in canonical form"));
    }
    Ok((release, Signature(sig), body))
}

/// Verifies a release text: well formed, signed by the organisation key it
/// names, that key equal to `pinned` when given, and valid at `now`.
pub fn verify(
    text: &str,
    pinned: Option<&OrgPublicKey>,
    now: u64,
) -> Result<Release, ReleaseError> {
    let (release, sig, body) = parse_unverified(text)?;
    if !release
        .org
        .as_ed25519()
        .verify(&signed_message(&body), &sig)
    {
        return Err(ReleaseError::BadSignature);
    }
    if let Some(p) = pinned
        && *p != release.org
    {
        return Err(ReleaseError::OrgMismatch {
            pinned: p.fingerprint(),
            got: release.org.fingerprint(),
        });
    }
    release.check_time(now)?;
    Ok(release)
}

/// Reads the lines of a release in order.
struct Cursor<'a> {
    lines: &'a [&'a str],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn next_is(&self, key: &str) -> bool {
        self.lines
            .get(self.i)
            .and_then(|l| l.strip_prefix(key))
            .is_some_and(|r| r.starts_with(' '))
    }

    fn take(&mut self, key: &str, what: &'static str) -> Result<&'a str, ReleaseError> {
        let line = self.i + 1;
        let v = self
            .lines
            .get(self.i)
            .and_then(|l| l.strip_prefix(key))
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(ReleaseError::Malformed { line, what })?;
        self.i += 1;
        Ok(v)
    }
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 §5).
pub fn b64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for k in 0..chars {
            out.push(B64[((n >> (18 - 6 * k)) & 63) as usize] as char);
        }
    }
    out
}

/// Strict base64url without padding of exactly `N` bytes (canonical: the
/// unused low bits of the last character must be zero).
fn unb64url<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N.div_ceil(3) * 4 - (3 - N % 3) % 3 {
        return None;
    }
    let mut out = Vec::with_capacity(N);
    let vals: Vec<u32> = s
        .bytes()
        .map(|c| B64.iter().position(|&x| x == c).map(|v| v as u32))
        .collect::<Option<_>>()?;
    for chunk in vals.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | (v << (18 - 6 * i)));
        let bytes = chunk.len() - 1;
        for k in 0..bytes {
            out.push((n >> (16 - 8 * k)) as u8);
        }
        let used = 8 * bytes;
        let mask = (1u32 << (24 - used)) - 1;
        if chunk.len() < 4 && n & mask != 0 {
            return None;
        }
    }
    out.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OrgSigningKey {
        OrgSigningKey::from_seed(&[7u8; 32])
    }

    fn release() -> Release {
        let relays = vec!["wss://relay.example.org/ws".to_owned()];
        let mut files = BTreeMap::new();
        files.insert("/index.html".to_owned(), Sha256::digest(b"<html>").into());
        files.insert("/seeker.js".to_owned(), Sha256::digest(b"js").into());
        files.insert("/pkg/m.wasm".to_owned(), Sha256::digest(b"\0asm").into());
        Release {
            app: "https://example.org/northstar".to_owned(),
            version: "1700000000".to_owned(),
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_000 + 90 * 86_400,
            org: key().public(),
            csp: csp_for(&relays),
            relays,
            index: "/index.html".to_owned(),
            fallback: "/index.html".to_owned(),
            files,
            wasm: vec![Sha256::digest(b"\0asm").into()],
        }
    }

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for n in 0..70 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
            let e = b64url(&v);
            assert!(!e.contains('='));
            if n == 32 {
                assert_eq!(unb64url::<32>(&e).map(|a| a.to_vec()), Some(v.clone()));
            }
            if n == 64 {
                assert_eq!(unb64url::<64>(&e).map(|a| a.to_vec()), Some(v.clone()));
            }
        }
        // RFC 4648 test vector, base64url alphabet.
        assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        // Non-zero unused bits are refused (one encoding per value).
        let good = b64url(&[1u8; 32]);
        let mut bad = good.clone();
        bad.pop();
        bad.push('B');
        assert!(unb64url::<32>(&bad).is_none());
        assert!(unb64url::<32>(&good).is_some());
    }

    #[test]
    fn a_signed_release_verifies_and_round_trips() {
        let r = release();
        let text = r.sign(&key()).unwrap();
        let got = verify(&text, Some(&key().public()), 1_700_000_100).unwrap();
        assert_eq!(got, r);
        assert!(verify(&text, None, 1_700_000_100).is_ok());
    }

    #[test]
    fn the_vector_in_web_client_md_is_this_encoding() {
        let text = release().sign(&key()).unwrap();
        let doc = include_str!("../../docs/vectors/web-release-v1.txt");
        assert_eq!(
            text, doc,
            "docs/vectors/web-release-v1.txt is out of date:\n{text}"
        );
    }

    #[test]
    fn every_tampering_is_refused() {
        let r = release();
        let text = r.sign(&key()).unwrap();
        let now = 1_700_000_100;
        // A swapped organisation key (not re-signed).
        let other = OrgSigningKey::from_seed(&[9u8; 32]).public();
        let swapped = text.replace(&hex32(r.org.as_bytes()), &hex32(other.as_bytes()));
        assert_eq!(verify(&swapped, None, now), Err(ReleaseError::BadSignature));
        // Re-signed by another key: consistent, refused only against a pinned key.
        let mut theirs = r.clone();
        theirs.org = other;
        let theirs = theirs.sign(&OrgSigningKey::from_seed(&[9u8; 32])).unwrap();
        assert!(verify(&theirs, None, now).is_ok());
        assert!(matches!(
            verify(&theirs, Some(&key().public()), now),
            Err(ReleaseError::OrgMismatch { .. })
        ));
        // A changed relay or hash or CSP.
        let relay = text.replace("relay.example.org", "evil.example.org");
        assert_eq!(verify(&relay, None, now), Err(ReleaseError::BadSignature));
        // Expired, or issued in the future.
        assert!(matches!(
            verify(&text, None, r.expires_at),
            Err(ReleaseError::Expired { .. })
        ));
        assert!(matches!(
            verify(&text, None, r.issued_at - 2 * MAX_CLOCK_SKEW_SECS),
            Err(ReleaseError::NotYetIssued { .. })
        ));
        // Non-canonical forms: extra spaces, CRLF, trailing bytes.
        for t in [
            text.replace("app ", "app  "),
            text.replace('\n', "\r\n"),
            format!("{text}x\n"),
            text.trim_end().to_owned(),
        ] {
            assert!(
                matches!(verify(&t, None, now), Err(ReleaseError::Malformed { .. })),
                "{t}"
            );
        }
        // Rollback against a watcher's memory.
        assert!(r.check_not_older_than(r.issued_at).is_ok());
        assert!(matches!(
            r.check_not_older_than(r.issued_at + 1),
            Err(ReleaseError::Rollback { .. })
        ));
    }

    #[test]
    fn files_are_compared_by_hash() {
        let r = release();
        assert!(r.check_file("/seeker.js", b"js").is_ok());
        assert_eq!(
            r.check_file("/seeker.js", b"js2"),
            Err(ReleaseError::Mismatch("/seeker.js".into()))
        );
        assert_eq!(
            r.check_file("/evil.js", b"js"),
            Err(ReleaseError::Unlisted("/evil.js".into()))
        );
    }

    #[test]
    fn weak_policies_and_bad_fields_are_refused() {
        for csp in [
            "default-src 'self'; script-src 'self'",
            "default-src 'none'; script-src 'self' 'unsafe-inline'",
            "default-src 'none'; script-src 'self' https://cdn.example",
            "default-src 'none'; script-src 'self'; connect-src *",
            "default-src 'none'; script-src 'self'; worker-src 'self' https://cdn.example",
            "default-src 'none'; script-src 'self'; worker-src https:",
            "default-src 'none'",
        ] {
            assert!(check_csp(csp).is_err(), "{csp}");
        }
        assert!(check_csp(&csp_for(&["wss://r.example/ws".into()])).is_ok());
        let mut r = release();
        r.files.insert("/../x".into(), [0; 32]);
        assert!(r.sign(&key()).is_err());
        let mut r = release();
        r.relays = vec!["https://r.example".into()];
        assert!(r.sign(&key()).is_err());
        let mut r = release();
        r.wasm = vec![[1; 32]];
        assert!(r.sign(&key()).is_err());
        assert!(release().sign(&OrgSigningKey::from_seed(&[9; 32])).is_err());
    }

    proptest::proptest! {
        /// Any text — random, or a signed release with one byte changed —
        /// parses without panicking, and nothing but the signed bytes verifies.
        #[test]
        fn parsing_never_panics_and_only_the_signed_text_verifies(
            junk in ".{0,300}",
            at in 0usize..2000,
            byte in 0x20u8..0x7f,
        ) {
            let _ = parse_unverified(&junk);
            let text = release().sign(&key()).unwrap();
            let mut b = text.clone().into_bytes();
            let i = at % b.len();
            if b[i] != byte {
                b[i] = byte;
                let t = String::from_utf8(b).unwrap();
                proptest::prop_assert!(verify(&t, None, 1_700_000_100).is_err());
            }
        }
    }

    #[test]
    fn the_webcat_manifest_lists_the_same_hashes() {
        let r = release();
        let m = r.webcat_manifest().unwrap();
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        let files = v["manifest"]["files"].as_object().unwrap();
        assert_eq!(files.len(), r.files.len() + 1);
        for (p, h) in &r.files {
            assert_eq!(files[p.as_str()], b64url(h));
        }
        assert_eq!(files["/"], files["/index.html"]);
        assert_eq!(v["manifest"]["default_csp"], r.csp);
        assert_eq!(v["manifest"]["wasm"][0], b64url(&r.wasm[0]));
        // Canonical (RFC 8785) for these strings: serde_json's sorted compact form.
        assert_eq!(m.trim_end(), serde_json::to_string(&v).unwrap());
    }
}
