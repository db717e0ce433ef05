//! Static files sent compressed: brotli to a client that accepts it, else
//! gzip, else the file as it is. The negotiation and the compression, shared
//! by the relay's web root (relay/src/compress.rs, which caches by path) and
//! the inbox `northstar counselor web` serves from its binary
//! (cli/src/inbox_web.rs, each embedded file once).

#![forbid(unsafe_code)]

use std::io::Write as _;

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
#[derive(Debug, Default)]
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
