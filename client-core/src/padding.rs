//! Size buckets every sealed plaintext is padded to
//! (docs/PROTOCOL.md §"Padding").
//!
//! The relay sees only an envelope's length, so lengths must say as little as
//! possible. Every plaintext is padded, before sealing, to the smallest
//! bucket of [`BUCKETS`] that holds it plus one marker byte:
//!
//! ```text
//! padded = plaintext || 0x80 || 0x00 * (bucket - len(plaintext) - 1)
//! ```
//!
//! This is ISO/IEC 7816-4 padding: unambiguous (the last non-zero byte is the
//! 0x80 marker), and applicable to any plaintext, including one that itself
//! ends in zeros or 0x80.
//!
//! Why these buckets: factors of four from 512 bytes to 32 KiB, then 64 KiB.
//! The smallest sealed ratchet message is about 265 bytes (sealed-sender
//! header 134, ratchet overhead 101, application message header ~28), so a
//! short text message — up to about 240 bytes of text — fits the first
//! (512) bucket, and most chat traffic is indistinguishable; the first
//! message of a session (it carries the ~1.3 KB PQXDH header) lands in 2048
//! for texts up to about 450 bytes; long messages and team-state updates use
//! the larger ones. Factor four keeps the worst-case overhead under 4x
//! while leaving only five observable sizes; 65 536 is
//! [`crate::sealed::MAX_PADDED_PLAINTEXT`], the largest envelope a relay accepts.

use crate::error::{DecodeError, Error};
use crate::sealed::MAX_PADDED_PLAINTEXT;

/// The padded sizes, ascending. The last is [`MAX_PADDED_PLAINTEXT`].
pub const BUCKETS: [usize; 5] = [512, 2048, 8192, 32_768, MAX_PADDED_PLAINTEXT];

/// The padding marker (ISO/IEC 7816-4).
pub const PADDING_MARKER: u8 = 0x80;

/// Longest plaintext [`pad`] accepts: the largest bucket less the marker byte.
pub const MAX_UNPADDED_LEN: usize = MAX_PADDED_PLAINTEXT - 1;

/// The bucket a plaintext of `len` bytes is padded to, if any.
pub fn bucket_for(len: usize) -> Option<usize> {
    BUCKETS.iter().copied().find(|b| len < *b)
}

/// Pads `plaintext` to its bucket (see the module doc).
pub fn pad(plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let Some(bucket) = bucket_for(plaintext.len()) else {
        return Err(Error::TooLongToEncode {
            what: "padded plaintext",
            max: MAX_UNPADDED_LEN,
            got: plaintext.len(),
        });
    };
    let mut out = Vec::with_capacity(bucket);
    out.extend_from_slice(plaintext);
    out.push(PADDING_MARKER);
    out.resize(bucket, 0);
    Ok(out)
}

/// Removes the padding: the input must be exactly one bucket long and end in
/// `0x80` followed only by zeros.
pub fn unpad(padded: &[u8]) -> Result<&[u8], DecodeError> {
    if !BUCKETS.contains(&padded.len()) {
        return Err(DecodeError::Invalid {
            what: "padded length",
        });
    }
    let Some(marker) = padded.iter().rposition(|b| *b != 0) else {
        return Err(DecodeError::Invalid { what: "padding" });
    };
    if padded[marker] != PADDING_MARKER {
        return Err(DecodeError::Invalid { what: "padding" });
    }
    Ok(&padded[..marker])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_edges() {
        assert_eq!(pad(&[]).unwrap().len(), 512);
        assert_eq!(pad(&[1; 511]).unwrap().len(), 512);
        assert_eq!(pad(&[1; 512]).unwrap().len(), 2048);
        assert_eq!(
            pad(&[1; MAX_UNPADDED_LEN]).unwrap().len(),
            MAX_PADDED_PLAINTEXT
        );
        assert!(pad(&vec![1; MAX_PADDED_PLAINTEXT]).is_err());
        assert_eq!(*BUCKETS.last().unwrap(), MAX_PADDED_PLAINTEXT);
    }

    #[test]
    fn unpad_rejects_bad_padding() {
        assert!(unpad(&[0; 512]).is_err()); // no marker
        let mut p = pad(b"hi").unwrap();
        p[511] = 1; // trailing non-zero that is not the marker
        assert!(unpad(&p).is_err());
        assert!(unpad(&pad(b"hi").unwrap()[..511]).is_err()); // not a bucket
        assert!(unpad(&[]).is_err());
        // Plaintexts that end like padding survive.
        for pt in [&b"\x80"[..], b"\x80\x00", b"a\x00\x00"] {
            assert_eq!(unpad(&pad(pt).unwrap()).unwrap(), pt);
        }
    }

    proptest! {
        #[test]
        fn round_trip(pt in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let p = pad(&pt).unwrap();
            prop_assert!(BUCKETS.contains(&p.len()));
            prop_assert_eq!(unpad(&p).unwrap(), &pt[..]);
        }

        #[test]
        fn unpad_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = unpad(&bytes);
        }
    }
}
