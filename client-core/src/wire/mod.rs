//! The strict binary codec shared by every encoded structure.
//!
//! Conventions (docs/PROTOCOL.md §2): integers are big-endian; variable-length
//! byte strings carry a `u16` or `u32` length prefix that is checked against a
//! named maximum *before* anything is allocated; every decode ends with
//! [`Reader::finish`], so trailing bytes are an error.

use crate::error::{DecodeError, Error};

/// A cursor over input bytes. Every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Reads exactly `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::UnexpectedEnd { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads everything that is left (for a final, self-delimiting field).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a version byte and checks it equals `expected`.
    pub fn version(&mut self, expected: u8, what: &'static str) -> Result<(), DecodeError> {
        let got = self.u8(what)?;
        if got != expected {
            return Err(DecodeError::UnsupportedVersion {
                what,
                expected,
                got,
            });
        }
        Ok(())
    }

    /// Reads a `u16`-length-prefixed byte string of at most `max` bytes.
    pub fn vec_u16(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(DecodeError::TooLong {
                what,
                max,
                got: len,
            });
        }
        self.take(len, what)
    }

    /// Reads a `u32`-length-prefixed byte string of at most `max` bytes.
    pub fn vec_u32(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(DecodeError::TooLong {
                what,
                max,
                got: len,
            });
        }
        self.take(len, what)
    }

    /// Reads a `u16`-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str_u16(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.vec_u16(max, what)?).map_err(|_| DecodeError::Invalid { what })
    }

    /// Reads a `u16` item count of at most `max` (for lists).
    pub fn count_u16(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(what)?);
        if n > max {
            return Err(DecodeError::TooLong { what, max, got: n });
        }
        Ok(n)
    }

    /// Ends the decode: any byte left over is an error.
    pub fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                count: self.buf.len(),
            })
        }
    }
}

/// Appends encoded fields to a byte vector.
///
/// Secrets are encoded through it (key stores, saved states), so it never
/// leaves a copy behind: when the buffer must grow, the bytes move to a
/// larger allocation and the old one is zeroized before it is freed (a
/// plain `Vec` would hand the old allocation back with the bytes in it), and
/// a writer dropped without [`Writer::into_bytes`] zeroizes its buffer. The
/// caller keeps what `into_bytes` returns in a `Zeroizing` when it is secret.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl Writer {
    /// Makes room for `extra` more bytes without leaving the old bytes in a
    /// freed allocation.
    fn reserve(&mut self, extra: usize) {
        let need = self.buf.len().saturating_add(extra);
        if need <= self.buf.capacity() {
            return;
        }
        let cap = need.max(self.buf.capacity().saturating_mul(2)).max(64);
        let mut bigger = Vec::with_capacity(cap);
        bigger.extend_from_slice(&self.buf);
        zeroize::Zeroize::zeroize(&mut self.buf);
        self.buf = bigger;
    }

    fn put(&mut self, b: &[u8]) {
        self.reserve(b.len());
        self.buf.extend_from_slice(b);
    }

    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.put(&[v]);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.put(&v.to_be_bytes());
        self
    }
    /// Raw bytes, no length prefix (fixed-size fields).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.put(b);
        self
    }
    /// A `u16`-length-prefixed byte string; errors if longer than `max`.
    pub fn vec_u16(
        &mut self,
        b: &[u8],
        max: usize,
        what: &'static str,
    ) -> Result<&mut Self, Error> {
        let max = max.min(usize::from(u16::MAX));
        if b.len() > max {
            return Err(Error::TooLongToEncode {
                what,
                max,
                got: b.len(),
            });
        }
        self.u16(b.len() as u16);
        Ok(self.bytes(b))
    }
    /// A `u32`-length-prefixed byte string; errors if longer than `max`.
    pub fn vec_u32(
        &mut self,
        b: &[u8],
        max: usize,
        what: &'static str,
    ) -> Result<&mut Self, Error> {
        let max = max.min(u32::MAX as usize);
        if b.len() > max {
            return Err(Error::TooLongToEncode {
                what,
                max,
                got: b.len(),
            });
        }
        self.u32(b.len() as u32);
        Ok(self.bytes(b))
    }
    /// A `u16` item count; errors if more than `max`.
    pub fn count_u16(
        &mut self,
        n: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&mut Self, Error> {
        let max = max.min(usize::from(u16::MAX));
        if n > max {
            return Err(Error::TooLongToEncode { what, max, got: n });
        }
        Ok(self.u16(n as u16))
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn into_bytes(mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let mut w = Writer::new();
        w.u8(1).u16(2).u32(3).u64(4);
        w.vec_u16(b"abc", 10, "s").unwrap();
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        r.version(1, "v").unwrap();
        assert_eq!(r.u16("a").unwrap(), 2);
        assert_eq!(r.u32("b").unwrap(), 3);
        assert_eq!(r.u64("c").unwrap(), 4);
        assert_eq!(r.vec_u16(10, "s").unwrap(), b"abc");
        r.finish("t").unwrap();

        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.version(2, "v"),
            Err(DecodeError::UnsupportedVersion { got: 1, .. })
        ));
        let mut r = Reader::new(&bytes[15..]);
        assert!(matches!(
            r.vec_u16(2, "s"),
            Err(DecodeError::TooLong { got: 3, .. })
        ));
        let r = Reader::new(&bytes);
        assert!(matches!(
            r.finish("t"),
            Err(DecodeError::TrailingBytes { count: 20, .. })
        ));
        let mut r = Reader::new(&bytes[..3]);
        r.u8("x").unwrap();
        assert!(matches!(r.u32("y"), Err(DecodeError::UnexpectedEnd { .. })));
        assert!(Writer::new().vec_u16(&[0; 11], 10, "s").is_err());
    }
}
