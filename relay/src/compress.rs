//! Static files sent compressed: brotli to a client that accepts it, else
//! gzip, else the file as it is. Each file is compressed once, on its first
//! request, and kept in memory with the SHA-256 of the bytes it was made
//! from: a changed file (a new release in the web root) is compressed again,
//! and the cache holds at most one entry per path that exists.
//!
//! `Cache-Control: no-store` stays (a cached copy would be a trace on the
//! device), so every visit transfers the files again: compression is what
//! makes a visit cheaper (docs/BENCHMARKS.md). Every response says
//! `Vary: Accept-Encoding`.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Files larger than this are sent as they are (the web root holds a page,
/// its scripts and one module of a few MiB).
pub const MAX_COMPRESSED_FILE: usize = 32 * 1024 * 1024;

/// A content coding the client accepts, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    /// The `Content-Encoding` value (`None` for identity).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Coding::Brotli => Some("br"),
            Coding::Gzip => Some("gzip"),
            Coding::Identity => None,
        }
    }
}

/// The coding to send for an `Accept-Encoding` header (RFC 9110 §12.5.3):
/// brotli if acceptable, else gzip, else identity. A coding with `q=0` is
/// refused; `*` stands for any coding not named.
pub fn negotiate(accept: Option<&str>) -> Coding {
    let Some(accept) = accept else {
        return Coding::Identity;
    };
    let mut br = None;
    let mut gzip = None;
    let mut any = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
        let ok = q > 0.0;
        match name.as_str() {
            "br" => br = Some(ok),
            "gzip" | "x-gzip" => gzip = Some(ok),
            "*" => any = Some(ok),
            _ => {}
        }
    }
    if br.or(any).unwrap_or(false) {
        Coding::Brotli
    } else if gzip.or(any).unwrap_or(false) {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// One file, compressed both ways.
#[derive(Debug)]
pub struct Encoded {
    pub brotli: Vec<u8>,
    pub gzip: Vec<u8>,
}

impl Encoded {
    /// Compresses `bytes` (CPU-bound: call it off the async threads).
    pub fn new(bytes: &[u8]) -> Self {
        let mut brotli = Vec::with_capacity(bytes.len() / 3);
        {
            // The best quality for the page's text files; a lower one for
            // the module (MiBs), so its first request is not kept waiting
            // seconds (11 would save a few per cent more).
            let quality = if bytes.len() <= 512 * 1024 { 11 } else { 9 };
            let params = brotli::enc::BrotliEncoderParams {
                quality,
                lgwin: 22,
                ..Default::default()
            };
            let mut w = brotli::CompressorWriter::with_params(&mut brotli, 4096, &params);
            // Writing into a Vec cannot fail.
            let _ = w.write_all(bytes);
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(bytes.len() / 3),
            flate2::Compression::best(),
        );
        let _ = gz.write_all(bytes);
        let gzip = gz.finish().unwrap_or_default();
        Encoded { brotli, gzip }
    }

    /// The bytes to send for `coding`, or `None` when they would not be
    /// smaller than the file itself.
    pub fn get(&self, coding: Coding, identity_len: usize) -> Option<&[u8]> {
        let b = match coding {
            Coding::Brotli => &self.brotli,
            Coding::Gzip => &self.gzip,
            Coding::Identity => return None,
        };
        (!b.is_empty() && b.len() < identity_len).then_some(b.as_slice())
    }
}

/// A file's compressed forms, with the SHA-256 of the bytes they came from.
type Entry = ([u8; 32], Arc<Encoded>);

/// Compressed files by path, each with the SHA-256 of its source bytes.
#[derive(Debug, Default)]
pub struct Cache {
    files: Mutex<HashMap<String, Entry>>,
}

impl Cache {
    /// The compressed forms of `bytes`, served at `path`: from memory when
    /// the file is unchanged, else compressed now (on a blocking thread).
    pub async fn get(&self, path: &str, bytes: axum::body::Bytes) -> Option<Arc<Encoded>> {
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some((h, e)) = self.lock().get(path)
            && *h == hash
        {
            return Some(e.clone());
        }
        let encoded = Arc::new(
            tokio::task::spawn_blocking(move || Encoded::new(&bytes))
                .await
                .ok()?,
        );
        self.lock().insert(path.to_owned(), (hash, encoded.clone()));
        Some(encoded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Middleware around the static file service: adds `Vary: Accept-Encoding`
/// and sends a whole `200 OK` file in the best coding the client accepts.
/// Ranges, `HEAD`, other statuses and anything already encoded pass through.
pub async fn middleware(State(cache): State<Arc<Cache>>, req: Request, next: Next) -> Response {
    let coding = if req.method() == Method::GET && !req.headers().contains_key(header::RANGE) {
        negotiate(
            req.headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        )
    } else {
        Coding::Identity
    };
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let small = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= MAX_COMPRESSED_FILE);
    if coding == Coding::Identity
        || resp.status() != StatusCode::OK
        || resp.headers().contains_key(header::CONTENT_ENCODING)
        || !small
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_COMPRESSED_FILE).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let len = bytes.len();
    let Some(encoded) = cache.get(&path, bytes.clone()).await else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let Some(out) = encoded.get(coding, len) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(name) = coding.header() {
        parts
            .headers
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(name));
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, out.len().into());
    Response::from_parts(parts, Body::from(out.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_brotli_and_honours_q_zero() {
        assert_eq!(negotiate(Some("br, gzip")), Coding::Brotli);
        assert_eq!(negotiate(Some("gzip, deflate, br, zstd")), Coding::Brotli);
        assert_eq!(negotiate(Some("gzip")), Coding::Gzip);
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0.5")), Coding::Gzip);
        assert_eq!(negotiate(Some("identity")), Coding::Identity);
        assert_eq!(negotiate(Some("gzip;q=0")), Coding::Identity);
        assert_eq!(negotiate(Some("")), Coding::Identity);
        assert_eq!(negotiate(None), Coding::Identity);
        assert_eq!(negotiate(Some("*")), Coding::Brotli);
        assert_eq!(negotiate(Some("br;q=0, *")), Coding::Gzip);
    }

    #[test]
    fn both_codings_round_trip() {
        use std::io::Read as _;
        let text = "Northstar ".repeat(1000);
        let e = Encoded::new(text.as_bytes());
        let mut out = Vec::new();
        brotli::Decompressor::new(&e.brotli[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text.as_bytes());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&e.gzip[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text.as_bytes());
        assert!(e.get(Coding::Brotli, text.len()).is_some());
        assert!(Encoded::new(b"x").get(Coding::Gzip, 1).is_none());
    }
}
