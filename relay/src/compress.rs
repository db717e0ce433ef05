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
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub use northstar_compress::{Coding, Encoded, negotiate};

/// Files larger than this are sent as they are (the web root holds a page,
/// its scripts and one module of a few MiB).
pub const MAX_COMPRESSED_FILE: usize = 32 * 1024 * 1024;

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
