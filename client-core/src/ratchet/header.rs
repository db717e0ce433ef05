//! The encoded `RatchetMessage`, its encrypted header (HENCRYPT/HDECRYPT)
//! and its body (ENCRYPT/DECRYPT) (docs/PROTOCOL.md, "Double Ratchet",
//! §Message format).
//!
//! ```text
//! RatchetMessage =
//!   version        u8        = MESSAGE_VERSION (0x01)
//!   header_nonce   [u8; 24]  random, XChaCha20-Poly1305 nonce
//!   enc_header     [u8; 56]  XChaCha20-Poly1305(HK, header_nonce, aad = version, Header)
//!   body_len       u32 BE    16 ..= MAX_BODY_LEN
//!   body           [u8; body_len]
//!                            ChaCha20-Poly1305(key, nonce from HKDF(salt = header_nonce, mk),
//!                              aad = u32 BE len(AD) || AD || version || header_nonce || enc_header,
//!                              plaintext)
//! Header (40 bytes, inside enc_header) = dh_pub [u8; 32] || pn u32 BE || n u32 BE
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::RatchetError;
use super::keys::{HeaderKey, KEY_LEN, MessageKey};
use crate::error::DecodeError;
use crate::wire::Reader;

/// Version byte of an encoded `RatchetMessage`.
pub const MESSAGE_VERSION: u8 = 1;
/// Length of the plaintext header: `dh_pub (32) || pn (4) || n (4)`.
pub const HEADER_LEN: usize = KEY_LEN + 4 + 4;
/// Poly1305 tag length of both AEADs.
pub const TAG_LEN: usize = 16;
/// XChaCha20-Poly1305 nonce length. Header keys are reused for every message
/// of a chain, so the header nonce must be random; 24 bytes make random
/// nonces safe (collision probability negligible for any realistic count).
pub const HEADER_NONCE_LEN: usize = 24;
/// Length of the encrypted header: header plus tag.
pub const ENC_HEADER_LEN: usize = HEADER_LEN + TAG_LEN;
/// `version || header_nonce || enc_header`: the fixed prefix of every
/// message, bound into the body's associated data.
pub const MESSAGE_PREFIX_LEN: usize = 1 + HEADER_NONCE_LEN + ENC_HEADER_LEN;
/// Bytes a message adds to its plaintext: prefix, body length, body tag.
pub const MESSAGE_OVERHEAD: usize = MESSAGE_PREFIX_LEN + 4 + TAG_LEN;
/// Largest encoded `RatchetMessage`. The message travels inside a
/// sealed-sender envelope whose padded plaintext is at most
/// `sealed::MAX_PADDED_PLAINTEXT` = 65 536 bytes, which sealed sender caps
/// at `sealed::MAX_RATCHET_MESSAGE_LEN` = 63 488 for the ratchet message
/// (after its own header and a session's first PQXDH header); 60 000 stays
/// under both with round-number headroom.
pub const MAX_MESSAGE_LEN: usize = 60_000;
/// Largest plaintext [`Session::encrypt`](super::Session::encrypt) accepts:
/// what fits in [`MAX_MESSAGE_LEN`] after [`MESSAGE_OVERHEAD`].
pub const MAX_PLAINTEXT_LEN: usize = MAX_MESSAGE_LEN - MESSAGE_OVERHEAD;
/// Largest body ciphertext a decoder accepts: plaintext plus tag.
pub const MAX_BODY_LEN: usize = MAX_PLAINTEXT_LEN + TAG_LEN;
/// Largest associated data (from PQXDH) a session accepts. PQXDH's AD is
/// two encoded identities and a mailbox (192 bytes); 1 KiB leaves room for
/// growth while keeping saved state and per-message AAD small.
pub const MAX_AD_LEN: usize = 1024;

const _: () = assert!(MAX_MESSAGE_LEN <= crate::sealed::MAX_PADDED_PLAINTEXT);
const _: () = assert!(MAX_MESSAGE_LEN <= crate::sealed::MAX_RATCHET_MESSAGE_LEN);

/// The plaintext header: our current ratchet public key, the length of our
/// previous sending chain, and this message's number in the current chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) dh: [u8; KEY_LEN],
    pub(crate) pn: u32,
    pub(crate) n: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..KEY_LEN].copy_from_slice(&self.dh);
        out[KEY_LEN..KEY_LEN + 4].copy_from_slice(&self.pn.to_be_bytes());
        out[KEY_LEN + 4..].copy_from_slice(&self.n.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(bytes);
        let dh = r.array::<KEY_LEN>("ratchet header key")?;
        let pn = r.u32("ratchet header pn")?;
        let n = r.u32("ratchet header n")?;
        r.finish("ratchet header")?;
        Ok(Header { dh, pn, n })
    }
}

/// A decoded (not yet decrypted) `RatchetMessage`, borrowing the input.
#[derive(Debug)]
pub(crate) struct ParsedMessage<'a> {
    /// `version || header_nonce || enc_header`, bound into the body's AAD.
    pub(crate) prefix: &'a [u8],
    pub(crate) header_nonce: &'a [u8],
    pub(crate) enc_header: &'a [u8],
    pub(crate) body: &'a [u8],
}

/// Strictly decodes a `RatchetMessage` (no decryption).
pub(crate) fn parse(message: &[u8]) -> Result<ParsedMessage<'_>, DecodeError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong {
            what: "ratchet message",
            max: MAX_MESSAGE_LEN,
            got: message.len(),
        });
    }
    let mut r = Reader::new(message);
    r.version(MESSAGE_VERSION, "ratchet message")?;
    let header_nonce = r.take(HEADER_NONCE_LEN, "ratchet header nonce")?;
    let enc_header = r.take(ENC_HEADER_LEN, "ratchet encrypted header")?;
    let body = r.vec_u32(MAX_BODY_LEN, "ratchet body")?;
    if body.len() < TAG_LEN {
        return Err(DecodeError::TooShort {
            what: "ratchet body",
            min: TAG_LEN,
            got: body.len(),
        });
    }
    r.finish("ratchet message")?;
    Ok(ParsedMessage {
        prefix: &message[..MESSAGE_PREFIX_LEN],
        header_nonce,
        enc_header,
        body,
    })
}

/// HENCRYPT: `XChaCha20-Poly1305(hk, nonce, aad = [MESSAGE_VERSION], header)`.
pub(crate) fn encrypt_header(
    hk: &HeaderKey,
    nonce: &[u8; HEADER_NONCE_LEN],
    header: &Header,
) -> Result<Vec<u8>, RatchetError> {
    let cipher = XChaCha20Poly1305::new(hk.as_bytes().into());
    cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &header.encode(),
                aad: &[MESSAGE_VERSION],
            },
        )
        .map_err(|_| RatchetError::EncryptionFailed)
}

/// HDECRYPT: `None` if `hk` does not open the header.
pub(crate) fn decrypt_header(hk: &HeaderKey, parsed: &ParsedMessage<'_>) -> Option<Header> {
    let cipher = XChaCha20Poly1305::new(hk.as_bytes().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(parsed.header_nonce),
                Payload {
                    msg: parsed.enc_header,
                    aad: &[MESSAGE_VERSION],
                },
            )
            .ok()?,
    );
    Header::decode(&plain).ok()
}

/// The body's associated data: `u32 BE len(ad) || ad || prefix`.
fn body_aad(ad: &[u8], prefix: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + ad.len() + prefix.len());
    // `ad` is bounded by MAX_AD_LEN (checked by every caller), so it fits in u32.
    aad.extend_from_slice(&(ad.len() as u32).to_be_bytes());
    aad.extend_from_slice(ad);
    aad.extend_from_slice(prefix);
    aad
}

/// ENCRYPT(mk, plaintext, AD || prefix). Consumes the single-use key.
pub(crate) fn encrypt_body(
    mk: MessageKey,
    plaintext: &[u8],
    ad: &[u8],
    prefix: &[u8],
) -> Result<Vec<u8>, RatchetError> {
    // prefix = version || header_nonce || enc_header.
    let header_nonce = prefix.get(1..1 + HEADER_NONCE_LEN).unwrap_or_default();
    let (key, nonce) = mk.aead_key(header_nonce);
    drop(mk);
    let cipher = ChaCha20Poly1305::new((&*key).into());
    cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad: &body_aad(ad, prefix),
            },
        )
        .map_err(|_| RatchetError::EncryptionFailed)
}

/// DECRYPT(mk, body, AD || prefix). Consumes the single-use key on
/// success; on failure hands it back (so a forged message cannot destroy a
/// skipped key a genuine delayed message still needs).
pub(crate) fn decrypt_body(
    mk: MessageKey,
    parsed: &ParsedMessage<'_>,
    ad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, (MessageKey, RatchetError)> {
    let (key, nonce) = mk.aead_key(parsed.header_nonce);
    let cipher = ChaCha20Poly1305::new((&*key).into());
    match cipher.decrypt(
        (&nonce).into(),
        Payload {
            msg: parsed.body,
            aad: &body_aad(ad, parsed.prefix),
        },
    ) {
        Ok(plaintext) => Ok(Zeroizing::new(plaintext)),
        Err(_) => Err((mk, RatchetError::BodyUndecryptable)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<u8> {
        let hk = HeaderKey::from_bytes(&[3; 32]);
        let h = Header {
            dh: [4; 32],
            pn: 7,
            n: 9,
        };
        let nonce = [5u8; HEADER_NONCE_LEN];
        let mut out = vec![MESSAGE_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&encrypt_header(&hk, &nonce, &h).unwrap());
        out.extend_from_slice(&20u32.to_be_bytes());
        out.extend_from_slice(&[0u8; 20]);
        out
    }

    #[test]
    fn layout_constants() {
        assert_eq!(HEADER_LEN, 40);
        assert_eq!(ENC_HEADER_LEN, 56);
        assert_eq!(MESSAGE_PREFIX_LEN, 81);
        assert_eq!(MESSAGE_OVERHEAD, 101);
        assert_eq!(MAX_PLAINTEXT_LEN, 59_899);
    }

    #[test]
    fn header_round_trip_and_wrong_key() {
        let msg = sample();
        let parsed = parse(&msg).unwrap();
        assert_eq!(parsed.prefix.len(), MESSAGE_PREFIX_LEN);
        let h = decrypt_header(&HeaderKey::from_bytes(&[3; 32]), &parsed).unwrap();
        assert_eq!((h.dh, h.pn, h.n), ([4; 32], 7, 9));
        assert!(decrypt_header(&HeaderKey::from_bytes(&[2; 32]), &parsed).is_none());
    }

    #[test]
    fn strict_parse() {
        let msg = sample();
        let mut bad = msg.clone();
        bad[0] = 2;
        assert!(matches!(
            parse(&bad),
            Err(DecodeError::UnsupportedVersion { got: 2, .. })
        ));
        let mut trailing = msg.clone();
        trailing.push(0);
        assert!(matches!(
            parse(&trailing),
            Err(DecodeError::TrailingBytes { count: 1, .. })
        ));
        assert!(matches!(
            parse(&msg[..msg.len() - 1]),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
        let mut short = msg[..MESSAGE_PREFIX_LEN].to_vec();
        short.extend_from_slice(&15u32.to_be_bytes());
        short.extend_from_slice(&[0; 15]);
        assert!(matches!(
            parse(&short),
            Err(DecodeError::TooShort { got: 15, .. })
        ));
        let mut long = msg[..MESSAGE_PREFIX_LEN].to_vec();
        long.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(parse(&long), Err(DecodeError::TooLong { .. })));
        assert!(matches!(
            parse(&vec![1u8; MAX_MESSAGE_LEN + 1]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutations(idx in 0usize..105, val in any::<u8>()) {
            let mut msg = sample();
            msg[idx] = val;
            let _ = parse(&msg);
        }
    }
}
