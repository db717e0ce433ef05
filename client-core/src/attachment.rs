//! Attachments: files encrypted on the device in fixed-size chunks under a
//! fresh key, stored on the relay as opaque blobs, and named by a reference
//! that travels inside the ratchet (docs/PROTOCOL.md §5.6 "Attachments").
//!
//! ## Chunk encryption: STREAM
//!
//! A file of `size` bytes is cut into `n = ceil(size / CHUNK_DATA_LEN)`
//! chunks (at least one). Each chunk is zero-padded to [`CHUNK_DATA_LEN`]
//! and sealed with ChaCha20-Poly1305 (RFC 8439) under the file's own fresh
//! key, following the STREAM construction of Hoang, Reyhanitabar, Rogaway
//! and Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance" (CRYPTO 2015, §7): the nonce of chunk `i` is
//!
//! ```text
//! nonce_i = 0x00 * 7 || i:u32 || last:u8     (last = 1 for i = n − 1, else 0)
//! ad      = "northstar/v1/attachment-chunk" || blob_id[32] || n:u16
//! chunk_i = ChaCha20-Poly1305(key, nonce_i, ad, data_i || 0x00 * (CHUNK_DATA_LEN − len(data_i)))
//! ```
//!
//! The counter stops reordering, the last-chunk flag stops truncation and
//! extension (an attacker cannot turn a middle chunk into a final one), and
//! the AD binds the blob and the chunk count. The nonce prefix of STREAM is
//! all zero because every key encrypts exactly one stream (a fresh key per
//! file); re-sealing chunk `i` after a dropped connection yields the very
//! same bytes, so a retried upload is idempotent.
//!
//! ## What the relay learns
//! Every sealed chunk is exactly [`CHUNK_SEALED_LEN`] bytes, so the relay
//! learns the chunk count: the file size rounded up to a multiple of
//! 64 KiB (the bucket), at most [`MAX_CHUNKS`] buckets. It never learns the
//! name, the type, the exact size or the key: those travel in
//! [`AttachmentRef`], inside the ratchet message (body tag 7).
//!
//! ## Memory
//! Nothing here holds a whole file: [`AttachmentSealer`] takes one chunk at
//! a time and keeps only the running SHA-256 digest; [`AttachmentOpener`]
//! likewise checks chunks in order and the digest at the end.

use core::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoRng;
use crate::error::{DecodeError, Error};
use crate::wire::{Reader, Writer};

/// Largest attachment, in bytes of the file: 10 MiB holds a phone photo of
/// a document many times over, or a scanned multi-page PDF, while keeping
/// a seeker's upload short on a slow connection and a mailbox's quota
/// meaningful.
pub const MAX_ATTACHMENT_LEN: usize = 10 * 1024 * 1024;

/// File bytes per chunk: 64 KiB. Small enough that a phone encrypts and
/// uploads one chunk at a time without holding the file, and that a chunk
/// frame stays far below every relay's frame limit; large enough that a
/// 10 MiB file is 160 frames.
pub const CHUNK_DATA_LEN: usize = 64 * 1024;

/// The Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// Every sealed chunk's length on the wire and on the relay's disk.
pub const CHUNK_SEALED_LEN: usize = CHUNK_DATA_LEN + TAG_LEN;

/// Most chunks of one attachment: [`MAX_ATTACHMENT_LEN`] / [`CHUNK_DATA_LEN`].
pub const MAX_CHUNKS: usize = MAX_ATTACHMENT_LEN / CHUNK_DATA_LEN;
const _: () = assert!(MAX_CHUNKS * CHUNK_DATA_LEN == MAX_ATTACHMENT_LEN);
const _: () = assert!(MAX_CHUNKS <= u16::MAX as usize);

/// Longest file name, in UTF-8 bytes (the usual file-system limit).
pub const MAX_NAME_LEN: usize = 255;

/// Longest media type (`type/subtype`, RFC 6838 allows 127 + 1 + 127).
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// Domain separation of the chunk AD.
pub const CHUNK_AD_DOMAIN: &[u8] = b"northstar/v1/attachment-chunk";

/// Encoded length of an [`AttachmentRef`] without its two strings.
pub const REF_FIXED_LEN: usize = 32 + 32 + 32 + 4 + 2 + 2 + 2;

/// Largest encoded [`AttachmentRef`].
pub const MAX_REF_LEN: usize = REF_FIXED_LEN + MAX_MEDIA_TYPE_LEN + MAX_NAME_LEN;

/// Why an attachment operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The file is larger than [`MAX_ATTACHMENT_LEN`].
    #[error("the file is {got} bytes, at most {max} allowed")]
    TooLarge { max: usize, got: u64 },
    /// A chunk was given out of order, with the wrong length, or after the last.
    #[error("chunk {index} is out of order or has the wrong length")]
    ChunkOutOfOrder { index: u32 },
    /// A chunk did not authenticate (wrong key, blob, position, or tampered).
    #[error("chunk {index} does not authenticate")]
    ChunkForged { index: u32 },
    /// The decrypted file's SHA-256 differs from the reference's.
    #[error("the file's digest does not match its reference")]
    DigestMismatch,
    /// Not every chunk was given before finishing.
    #[error("the file is incomplete")]
    Incomplete,
}

/// A blob on the relay: 32 random bytes chosen by the uploader. Knowing it
/// is the capability to download the (encrypted) chunks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId([u8; 32]);

impl BlobId {
    pub const LEN: usize = 32;
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        BlobId(b)
    }
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// A fresh random blob id.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        BlobId(b)
    }
    /// Lower-case hex (for scripts; never for relay logs).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for BlobId {
    // A capability: print nothing of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobId(..)")
    }
}

/// Label of the HKDF-SHA256 expansion of an attachment key into its blob
/// delete token (docs/PROTOCOL.md §4.12).
pub const BLOB_DELETE_LABEL: &[u8] = b"northstar/v1/blob-delete";

/// Domain prefix of the hash that turns a delete token into its blob id.
pub const BLOB_ID_DOMAIN: &[u8] = b"northstar/v1/blob-id";

/// The capability to delete one blob from the relay:
/// `HKDF-SHA256(salt = none, ikm = attachment key, info = "northstar/v1/blob-delete", L = 32)`.
/// The blob id is `SHA-256("northstar/v1/blob-id" || token)`, so the relay
/// checks a `DeleteBlob` against the blob id alone and stores nothing more;
/// everyone who holds the [`AttachmentRef`] (the seeker and the team) can
/// delete the blob, and the relay, which sees only the blob id, cannot
/// forge the token. Zeroized on drop; `Debug` prints no bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlobDeleteToken([u8; 32]);

impl fmt::Debug for BlobDeleteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobDeleteToken(..)")
    }
}

impl PartialEq for BlobDeleteToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for BlobDeleteToken {}

impl BlobDeleteToken {
    pub const LEN: usize = 32;

    /// The token of the blob sealed under `key`.
    pub fn derive(key: &AttachmentKey) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, &key.0[..]);
        let mut t = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(BLOB_DELETE_LABEL, &mut t);
        BlobDeleteToken(t)
    }

    /// Wraps token bytes (from a frame).
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        BlobDeleteToken(b)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The blob id this token deletes: `SHA-256("northstar/v1/blob-id" || token)`.
    pub fn blob_id(&self) -> BlobId {
        let mut h = Sha256::new();
        h.update(BLOB_ID_DOMAIN);
        h.update(self.0);
        BlobId(h.finalize().into())
    }

    /// Whether this token deletes `blob` (compared in constant time).
    pub fn opens(&self, blob: &BlobId) -> bool {
        self.blob_id().0.ct_eq(&blob.0).into()
    }
}

impl AttachmentRef {
    /// The token that deletes this reference's blob from the relay.
    pub fn delete_token(&self) -> BlobDeleteToken {
        BlobDeleteToken::derive(&self.key)
    }
}

/// The key of one attachment. Zeroized on drop; `Debug` prints no bytes;
/// compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttachmentKey(Box<[u8; 32]>);

impl fmt::Debug for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachmentKey(..)")
    }
}

impl PartialEq for AttachmentKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}
impl Eq for AttachmentKey {}

impl AttachmentKey {
    /// A fresh random key (one per file).
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = Box::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        AttachmentKey(k)
    }
    /// Wraps key bytes (the caller zeroizes its copy).
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        AttachmentKey(Box::new(*b))
    }
    /// The key bytes, for encoding the reference.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0[..]))
    }
}

/// The number of chunks a file of `size` bytes is cut into (at least one).
pub fn chunk_count_for(size: u64) -> Result<u16, AttachmentError> {
    if size > MAX_ATTACHMENT_LEN as u64 {
        return Err(AttachmentError::TooLarge {
            max: MAX_ATTACHMENT_LEN,
            got: size,
        });
    }
    let n = size.div_ceil(CHUNK_DATA_LEN as u64).max(1);
    Ok(n as u16)
}

/// The file bytes chunk `index` of a `size`-byte file carries.
pub fn chunk_data_len(size: u64, index: u16) -> usize {
    let start = u64::from(index) * CHUNK_DATA_LEN as u64;
    size.saturating_sub(start).min(CHUNK_DATA_LEN as u64) as usize
}

fn nonce(index: u16, count: u16) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&u32::from(index).to_be_bytes());
    n[11] = u8::from(index + 1 == count);
    n
}

fn chunk_ad(blob: &BlobId, count: u16) -> Vec<u8> {
    let mut ad = Vec::with_capacity(CHUNK_AD_DOMAIN.len() + 34);
    ad.extend_from_slice(CHUNK_AD_DOMAIN);
    ad.extend_from_slice(&blob.0);
    ad.extend_from_slice(&count.to_be_bytes());
    ad
}

/// Seals chunk `index` of `count` (see the module doc). `data` must be the
/// chunk's file bytes, at most [`CHUNK_DATA_LEN`]. Deterministic: sealing
/// the same chunk again gives the same bytes.
pub fn seal_chunk(
    key: &AttachmentKey,
    blob: &BlobId,
    index: u16,
    count: u16,
    data: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    if index >= count || data.len() > CHUNK_DATA_LEN || count as usize > MAX_CHUNKS {
        return Err(AttachmentError::ChunkOutOfOrder {
            index: u32::from(index),
        });
    }
    let mut padded = zeroize::Zeroizing::new(vec![0u8; CHUNK_DATA_LEN]);
    padded[..data.len()].copy_from_slice(data);
    let ad = chunk_ad(blob, count);
    let n = nonce(index, count);
    key.cipher()
        .encrypt(
            Nonce::from_slice(&n),
            Payload {
                msg: &padded,
                aad: &ad,
            },
        )
        .map_err(|_| AttachmentError::ChunkForged {
            index: u32::from(index),
        })
}

/// Opens chunk `index` of the file `r` names, returning its file bytes
/// (the padding is checked to be zero and removed).
pub fn open_chunk(
    r: &AttachmentRef,
    index: u16,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, AttachmentError> {
    let count = r.chunk_count();
    let forged = AttachmentError::ChunkForged {
        index: u32::from(index),
    };
    if index >= count || sealed.len() != CHUNK_SEALED_LEN {
        return Err(forged);
    }
    let ad = chunk_ad(&r.blob_id, count);
    let n = nonce(index, count);
    let mut padded = zeroize::Zeroizing::new(
        r.key
            .cipher()
            .decrypt(
                Nonce::from_slice(&n),
                Payload {
                    msg: sealed,
                    aad: &ad,
                },
            )
            .map_err(|_| forged.clone())?,
    );
    let len = chunk_data_len(u64::from(r.size), index);
    if padded[len..].iter().any(|b| *b != 0) {
        return Err(forged);
    }
    padded.truncate(len);
    Ok(padded)
}

/// A file name, as shown and as offered when saving: 1 to
/// [`MAX_NAME_LEN`] bytes of UTF-8, no path separator, no control
/// character, not `.` or `..` (so saving it cannot escape a folder).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct FileName(String);

impl fmt::Debug for FileName {
    // A file name can identify its owner ("passport_maria_lopez.jpg").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileName(len={})", self.0.len())
    }
}

impl FileName {
    /// Checks a name; see the type's doc.
    pub fn new(name: &str) -> Result<Self, DecodeError> {
        let bad = name.is_empty()
            || name.len() > MAX_NAME_LEN
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control());
        if bad {
            return Err(DecodeError::Invalid { what: "file name" });
        }
        Ok(FileName(name.to_owned()))
    }

    /// Makes any name acceptable: keeps the last path component, replaces
    /// separators and control characters with `_`, cuts it to
    /// [`MAX_NAME_LEN`] bytes, and falls back to `file` if nothing is left.
    pub fn sanitize(name: &str) -> Self {
        let last = name.rsplit(['/', '\\']).next().unwrap_or("");
        let mut s: String = last
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        while s.len() > MAX_NAME_LEN {
            s.pop();
        }
        if s.is_empty() || s == "." || s == ".." {
            s = "file".to_owned();
        }
        FileName(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A media type such as `application/pdf`: `type/subtype`, lower-case
/// ASCII letters, digits and `!#$&^_.+-`, at most [`MAX_MEDIA_TYPE_LEN`]
/// bytes, no parameters.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MediaType(String);

impl MediaType {
    /// `application/octet-stream`: what an unknown type is sent as.
    pub fn octet_stream() -> Self {
        MediaType("application/octet-stream".to_owned())
    }

    /// Checks a media type; see the type's doc.
    pub fn new(s: &str) -> Result<Self, DecodeError> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b)
                })
        };
        match s.split_once('/') {
            Some((a, b)) if s.len() <= MAX_MEDIA_TYPE_LEN && token(a) && token(b) => {
                Ok(MediaType(s.to_owned()))
            }
            _ => Err(DecodeError::Invalid { what: "media type" }),
        }
    }

    /// Lower-cases a type and drops parameters; unknown or malformed
    /// types become `application/octet-stream`.
    pub fn sanitize(s: &str) -> Self {
        let base = s
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        MediaType::new(&base).unwrap_or_else(|_| MediaType::octet_stream())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `image/jpeg` or `image/png`: the types whose metadata is stripped.
    pub fn is_strippable_image(&self) -> bool {
        matches!(self.0.as_str(), "image/jpeg" | "image/png")
    }
}

/// What a file is called and which kind it is; the sender's choice,
/// shown to the receiver. Together with the blob and its key, it forms the
/// [`AttachmentRef`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FileInfo {
    pub name: FileName,
    pub media_type: MediaType,
}

/// Everything a receiver needs to fetch, decrypt and check one file. It
/// travels inside the ratchet (body tag 7), never to the relay in the clear.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttachmentRef {
    pub blob_id: BlobId,
    pub key: AttachmentKey,
    /// SHA-256 of the file's bytes.
    pub digest: [u8; 32],
    /// The file's exact length in bytes (≤ [`MAX_ATTACHMENT_LEN`]).
    pub size: u32,
    pub info: FileInfo,
}

impl AttachmentRef {
    /// Chunks the blob has.
    pub fn chunk_count(&self) -> u16 {
        // `size` is checked on construction and decode.
        chunk_count_for(u64::from(self.size)).unwrap_or(1)
    }

    /// ```text
    /// blob_id[32] || key[32] || digest[32] || size:u32 || chunk_count:u16
    ///   || media_type:str16 (≤ 255) || name:str16 (≤ 255)
    /// ```
    /// `chunk_count` must equal `max(1, ceil(size / 65536))`.
    pub(crate) fn write(&self, w: &mut Writer) -> Result<(), Error> {
        let count = chunk_count_for(u64::from(self.size)).map_err(|_| Error::TooLongToEncode {
            what: "attachment",
            max: MAX_ATTACHMENT_LEN,
            got: self.size as usize,
        })?;
        w.bytes(&self.blob_id.0)
            .bytes(&self.key.0[..])
            .bytes(&self.digest)
            .u32(self.size)
            .u16(count);
        w.vec_u16(
            self.info.media_type.0.as_bytes(),
            MAX_MEDIA_TYPE_LEN,
            "media type",
        )?;
        w.vec_u16(self.info.name.0.as_bytes(), MAX_NAME_LEN, "file name")?;
        Ok(())
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let blob_id = BlobId(r.array("blob id")?);
        let mut key_bytes = zeroize::Zeroizing::new(r.array::<32>("attachment key")?);
        let key = AttachmentKey::from_bytes(&key_bytes);
        key_bytes.zeroize();
        let digest = r.array("attachment digest")?;
        let size = r.u32("attachment size")?;
        if size as usize > MAX_ATTACHMENT_LEN {
            return Err(DecodeError::TooLong {
                what: "attachment",
                max: MAX_ATTACHMENT_LEN,
                got: size as usize,
            });
        }
        let count = r.u16("chunk count")?;
        if Ok(count) != chunk_count_for(u64::from(size)) {
            return Err(DecodeError::Invalid {
                what: "chunk count",
            });
        }
        let media_type = MediaType::new(r.str_u16(MAX_MEDIA_TYPE_LEN, "media type")?)?;
        let name = FileName::new(r.str_u16(MAX_NAME_LEN, "file name")?)?;
        // Whoever holds the reference must be able to delete the blob (a
        // counselor's purge): a blob id its key's delete token does not
        // derive was not made by a Northstar client.
        if !BlobDeleteToken::derive(&key).opens(&blob_id) {
            return Err(DecodeError::Invalid {
                what: "blob id (not derived from the key)",
            });
        }
        Ok(AttachmentRef {
            blob_id,
            key,
            digest,
            size,
            info: FileInfo { name, media_type },
        })
    }

    /// The reference alone (for vectors and the fuzzer).
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::new();
        self.write(&mut w)?;
        Ok(w.into_bytes())
    }

    /// Strictly decodes a reference alone.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let a = Self::read(&mut r)?;
        r.finish("attachment reference")?;
        Ok(a)
    }
}

/// Encrypts one file, chunk by chunk, in order, without holding it: give
/// it each chunk's bytes with [`AttachmentSealer::seal_next`], then
/// [`AttachmentSealer::finish`] for the reference.
pub struct AttachmentSealer {
    key: AttachmentKey,
    blob_id: BlobId,
    size: u32,
    count: u16,
    next: u16,
    hash: Sha256,
    info: FileInfo,
}

impl fmt::Debug for AttachmentSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttachmentSealer({}/{})", self.next, self.count)
    }
}

impl AttachmentSealer {
    /// Starts a file of `size` bytes under a fresh key; the blob id is
    /// derived from the key ([`BlobDeleteToken::blob_id`]), so whoever holds
    /// the reference can delete the blob.
    pub fn new(
        size: u64,
        info: FileInfo,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, AttachmentError> {
        let count = chunk_count_for(size)?;
        let key = AttachmentKey::generate(rng);
        Ok(AttachmentSealer {
            blob_id: BlobDeleteToken::derive(&key).blob_id(),
            key,
            size: size as u32,
            count,
            next: 0,
            hash: Sha256::new(),
            info,
        })
    }

    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }
    pub fn chunk_count(&self) -> u16 {
        self.count
    }
    pub fn size(&self) -> u32 {
        self.size
    }
    /// The index of the chunk [`Self::seal_next`] expects.
    pub fn next_index(&self) -> u16 {
        self.next
    }
    /// The file bytes the next chunk must carry.
    pub fn next_len(&self) -> usize {
        chunk_data_len(u64::from(self.size), self.next)
    }
    /// Whether every chunk has been sealed.
    pub fn is_complete(&self) -> bool {
        self.next == self.count
    }

    /// Seals the next chunk; `data` must be exactly [`Self::next_len`] bytes.
    pub fn seal_next(&mut self, data: &[u8]) -> Result<Vec<u8>, AttachmentError> {
        if self.is_complete() || data.len() != self.next_len() {
            return Err(AttachmentError::ChunkOutOfOrder {
                index: u32::from(self.next),
            });
        }
        let sealed = seal_chunk(&self.key, &self.blob_id, self.next, self.count, data)?;
        self.hash.update(data);
        self.next += 1;
        Ok(sealed)
    }

    /// The reference, once every chunk is sealed.
    pub fn finish(self) -> Result<AttachmentRef, AttachmentError> {
        if !self.is_complete() {
            return Err(AttachmentError::Incomplete);
        }
        Ok(AttachmentRef {
            blob_id: self.blob_id,
            key: self.key.clone(),
            digest: self.hash.clone().finalize().into(),
            size: self.size,
            info: self.info.clone(),
        })
    }
}

/// Decrypts one file chunk by chunk, in order, and checks its digest at
/// the end. Bytes it returns before [`AttachmentOpener::finish`] are
/// authenticated chunk by chunk but the file is only known whole and
/// genuine once `finish` succeeds: a shell writes to a temporary file and
/// keeps it only then.
pub struct AttachmentOpener {
    reference: AttachmentRef,
    next: u16,
    hash: Sha256,
}

impl fmt::Debug for AttachmentOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AttachmentOpener({}/{})",
            self.next,
            self.reference.chunk_count()
        )
    }
}

impl AttachmentOpener {
    pub fn new(reference: AttachmentRef) -> Self {
        AttachmentOpener {
            reference,
            next: 0,
            hash: Sha256::new(),
        }
    }
    pub fn reference(&self) -> &AttachmentRef {
        &self.reference
    }
    /// The index of the chunk [`Self::open_next`] expects.
    pub fn next_index(&self) -> u16 {
        self.next
    }
    pub fn is_complete(&self) -> bool {
        self.next == self.reference.chunk_count()
    }

    /// Opens the next chunk; returns its file bytes.
    pub fn open_next(
        &mut self,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, AttachmentError> {
        if self.is_complete() {
            return Err(AttachmentError::ChunkOutOfOrder {
                index: u32::from(self.next),
            });
        }
        let data = open_chunk(&self.reference, self.next, sealed)?;
        self.hash.update(&data[..]);
        self.next += 1;
        Ok(data)
    }

    /// Checks the digest of the whole file.
    pub fn finish(self) -> Result<AttachmentRef, AttachmentError> {
        if !self.is_complete() {
            return Err(AttachmentError::Incomplete);
        }
        let got: [u8; 32] = self.hash.clone().finalize().into();
        if !bool::from(got.ct_eq(&self.reference.digest)) {
            return Err(AttachmentError::DigestMismatch);
        }
        Ok(self.reference.clone())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::from_seed([21; 32])
    }

    pub(crate) fn info(name: &str, ty: &str) -> FileInfo {
        FileInfo {
            name: FileName::new(name).unwrap(),
            media_type: MediaType::new(ty).unwrap(),
        }
    }

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn seal_all(data: &[u8], rng: &mut ChaCha20Rng) -> (AttachmentRef, Vec<Vec<u8>>) {
        let mut s = AttachmentSealer::new(data.len() as u64, info("a.pdf", "application/pdf"), rng)
            .unwrap();
        let mut chunks = Vec::new();
        let mut at = 0;
        while !s.is_complete() {
            let n = s.next_len();
            chunks.push(s.seal_next(&data[at..at + n]).unwrap());
            at += n;
        }
        (s.finish().unwrap(), chunks)
    }

    fn open_all(r: &AttachmentRef, chunks: &[Vec<u8>]) -> Result<Vec<u8>, AttachmentError> {
        let mut o = AttachmentOpener::new(r.clone());
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&o.open_next(c)?);
        }
        o.finish()?;
        Ok(out)
    }

    /// A reference with fixed values (also used for vectors).
    pub(crate) fn sample_ref() -> AttachmentRef {
        AttachmentRef {
            blob_id: BlobDeleteToken::derive(&AttachmentKey::from_bytes(&[0x4b; 32])).blob_id(),
            key: AttachmentKey::from_bytes(&[0x4b; 32]),
            digest: [0xd1; 32],
            size: 70_000,
            info: info("notice to appear.pdf", "application/pdf"),
        }
    }

    #[test]
    fn round_trip_at_chunk_edges() {
        let mut rng = rng();
        for len in [
            0,
            1,
            CHUNK_DATA_LEN - 1,
            CHUNK_DATA_LEN,
            CHUNK_DATA_LEN + 1,
            3 * CHUNK_DATA_LEN,
        ] {
            let data = file(len);
            let (r, chunks) = seal_all(&data, &mut rng);
            assert_eq!(usize::from(r.chunk_count()), chunks.len());
            assert!(chunks.iter().all(|c| c.len() == CHUNK_SEALED_LEN));
            assert_eq!(open_all(&r, &chunks).unwrap(), data, "len {len}");
            let want: [u8; 32] = Sha256::digest(&data).into();
            assert_eq!(r.digest, want);
        }
    }

    #[test]
    fn max_size_is_160_chunks_and_one_more_byte_is_refused() {
        assert_eq!(chunk_count_for(MAX_ATTACHMENT_LEN as u64).unwrap(), 160);
        assert_eq!(
            chunk_count_for(MAX_ATTACHMENT_LEN as u64 + 1),
            Err(AttachmentError::TooLarge {
                max: MAX_ATTACHMENT_LEN,
                got: MAX_ATTACHMENT_LEN as u64 + 1
            })
        );
        assert!(
            AttachmentSealer::new(MAX_ATTACHMENT_LEN as u64 + 1, info("a", "a/b"), &mut rng())
                .is_err()
        );
    }

    #[test]
    fn reordered_dropped_truncated_or_swapped_chunks_are_refused() {
        let mut rng = rng();
        let data = file(3 * CHUNK_DATA_LEN + 10);
        let (r, chunks) = seal_all(&data, &mut rng);
        // Reorder.
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            open_all(&r, &swapped),
            Err(AttachmentError::ChunkForged { index: 0 })
        ));
        // Drop a middle chunk.
        let mut dropped = chunks.clone();
        dropped.remove(1);
        assert!(open_all(&r, &dropped).is_err());
        // Truncate: the file ends early.
        assert_eq!(open_all(&r, &chunks[..3]), Err(AttachmentError::Incomplete));
        // A reference claiming fewer chunks cannot make a middle chunk final.
        let mut shorter = r.clone();
        shorter.size = (3 * CHUNK_DATA_LEN) as u32;
        assert!(open_all(&shorter, &chunks[..3]).is_err());
        // A chunk of another file (another key) is refused.
        let (r2, other) = seal_all(&data, &mut rng);
        let mut mixed = chunks.clone();
        mixed[2] = other[2].clone();
        assert!(open_all(&r, &mixed).is_err());
        // Same key, other blob id: the AD binds the blob.
        let mut moved = r2.clone();
        moved.blob_id = r.blob_id;
        assert!(open_all(&moved, &other).is_err());
        // A flipped bit.
        let mut flipped = chunks.clone();
        flipped[1][100] ^= 1;
        assert!(open_all(&r, &flipped).is_err());
        // A wrong digest in the reference is caught at the end.
        let mut lying = r.clone();
        lying.digest[0] ^= 1;
        assert_eq!(
            open_all(&lying, &chunks),
            Err(AttachmentError::DigestMismatch)
        );
    }

    #[test]
    fn sealing_is_deterministic_so_retries_are_idempotent() {
        let key = AttachmentKey::from_bytes(&[1; 32]);
        let blob = BlobId([2; 32]);
        let a = seal_chunk(&key, &blob, 1, 3, b"hello").unwrap();
        let b = seal_chunk(&key, &blob, 1, 3, b"hello").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, seal_chunk(&key, &blob, 2, 3, b"hello").unwrap());
        assert!(seal_chunk(&key, &blob, 3, 3, b"x").is_err());
        assert!(seal_chunk(&key, &blob, 0, 1, &[0; CHUNK_DATA_LEN + 1]).is_err());
    }

    #[test]
    fn sealer_refuses_wrong_lengths_and_early_finish() {
        let mut rng = rng();
        let mut s = AttachmentSealer::new(10, info("a", "a/b"), &mut rng).unwrap();
        assert!(s.seal_next(&[0; 9]).is_err());
        assert!(matches!(
            AttachmentSealer::new(10, info("a", "a/b"), &mut rng)
                .unwrap()
                .finish(),
            Err(AttachmentError::Incomplete)
        ));
        s.seal_next(&[0; 10]).unwrap();
        assert!(s.seal_next(&[]).is_err());
        assert!(s.finish().is_ok());
    }

    #[test]
    fn reference_round_trips_and_is_strict() {
        let r = sample_ref();
        let enc = r.encode().unwrap();
        assert_eq!(AttachmentRef::decode(&enc).unwrap(), r);
        let mut t = enc.clone();
        t.push(0);
        assert!(AttachmentRef::decode(&t).is_err());
        for n in 0..enc.len() {
            assert!(AttachmentRef::decode(&enc[..n]).is_err());
        }
        // Wrong chunk count.
        let mut c = enc.clone();
        c[100 + 1] ^= 1;
        assert!(AttachmentRef::decode(&c).is_err());
        // Size over the maximum.
        let mut s = enc.clone();
        s[96..100].copy_from_slice(&(MAX_ATTACHMENT_LEN as u32 + 1).to_be_bytes());
        s[100..102].copy_from_slice(&161u16.to_be_bytes());
        assert!(matches!(
            AttachmentRef::decode(&s),
            Err(Error::Decode(DecodeError::TooLong { .. }))
        ));
    }

    #[test]
    fn names_and_types_are_checked() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
            assert!(FileName::new(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::new("récépissé asile.pdf").is_ok());
        assert_eq!(
            FileName::sanitize("/tmp/../x/passport.jpg").as_str(),
            "passport.jpg"
        );
        assert_eq!(FileName::sanitize("C:\\Users\\m\\..").as_str(), "file");
        assert_eq!(FileName::sanitize("a\u{7}b").as_str(), "a_b");
        assert!(FileName::sanitize(&"é".repeat(200)).as_str().len() <= MAX_NAME_LEN);
        for bad in ["pdf", "Application/PDF", "a/b; c=d", "/b", "a/", "a b/c"] {
            assert!(MediaType::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            MediaType::sanitize("Image/JPEG; q=1").as_str(),
            "image/jpeg"
        );
        assert_eq!(MediaType::sanitize("").as_str(), "application/octet-stream");
    }

    #[test]
    fn debug_prints_no_key_name_or_capability() {
        let r = sample_ref();
        let d = format!("{r:?}");
        assert!(!d.contains("notice"));
        assert!(!d.contains("4b, 4b") && !d.contains("75, 75"));
        assert!(!d.contains("b1b1") && !d.contains("177"));
    }

    #[test]
    fn vectors() {
        // A 70 000-byte file (byte i = i·31 mod 251) under the sample
        // reference's key and blob id: two chunks, the second padded.
        let mut r = sample_ref();
        let data = file(r.size as usize);
        r.digest = Sha256::digest(&data).into();
        let count = r.chunk_count();
        let chunks: Vec<serde_json::Value> = (0..count)
            .map(|i| {
                let start = usize::from(i) * CHUNK_DATA_LEN;
                let part = &data[start..start + chunk_data_len(u64::from(r.size), i)];
                let sealed = seal_chunk(&r.key, &r.blob_id, i, count, part).unwrap();
                assert_eq!(&open_chunk(&r, i, &sealed).unwrap()[..], part);
                serde_json::json!({
                    "index": i,
                    "nonce": hex::encode(nonce(i, count)),
                    "data_len": part.len(),
                    "sealed_len": sealed.len(),
                    "sealed_first_32": hex::encode(&sealed[..32]),
                    "tag": hex::encode(&sealed[CHUNK_DATA_LEN..]),
                    "sealed_sha256": hex::encode(Sha256::digest(&sealed)),
                })
            })
            .collect();
        let enc = r.encode().unwrap();
        let bad_count = {
            let mut e = enc.clone();
            e[101] = 3;
            e
        };
        let bad_name = {
            let mut e = enc.clone();
            let n = e.len();
            e[n - 5] = b'/';
            e
        };
        let mut trailing = enc.clone();
        trailing.push(0);
        let invalid = serde_json::json!([
            { "case": "chunk count 3 for 70 000 bytes", "encoded": hex::encode(bad_count) },
            { "case": "name with a slash", "encoded": hex::encode(bad_name) },
            { "case": "trailing byte", "encoded": hex::encode(trailing) },
        ]);
        let json = serde_json::json!({
            "description": "Attachment STREAM chunks (ChaCha20-Poly1305, nonce = 0^7 || index:u32 || last:u8, ad = domain || blob_id || count:u16) and the attachment reference; the file is byte i = (i*31) mod 251.",
            "key": hex::encode(r.key.as_bytes()),
            "blob_id": hex::encode(r.blob_id.as_bytes()),
            "ad": hex::encode(chunk_ad(&r.blob_id, count)),
            "file_len": r.size,
            "file_sha256": hex::encode(r.digest),
            "chunks": chunks,
            "reference": hex::encode(r.encode().unwrap()),
            "invalid_references": invalid,
            "images": {
                "description": "docs/PROTOCOL.md §5.6.4: a JPEG with JFIF, EXIF (GPS, serial, date), XMP, IPTC, a comment and trailing bytes, and what cleaning leaves; a PNG with tEXt, eXIf, tIME, iTXt, zTXt and its cleaned form.",
                "jpeg_with_gps": hex::encode(crate::metadata::samples::jpeg_with_gps()),
                "jpeg_cleaned": hex::encode(crate::metadata::samples::jpeg_cleaned()),
                "png_with_metadata": hex::encode(crate::metadata::samples::png_with_metadata().0),
                "png_cleaned": hex::encode(crate::metadata::samples::png_with_metadata().1),
            },
        });
        for bad in json["invalid_references"].as_array().unwrap() {
            let bytes = hex::decode(bad["encoded"].as_str().unwrap()).unwrap();
            assert!(AttachmentRef::decode(&bytes).is_err(), "{}", bad["case"]);
        }
        crate::state::vectors::check("attachment.json", &json);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = AttachmentRef::decode(&bytes);
        }

        #[test]
        fn small_files_round_trip(data in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            let mut rng = rng();
            let (r, chunks) = seal_all(&data, &mut rng);
            prop_assert_eq!(open_all(&r, &chunks).unwrap(), data);
        }
    }

    #[test]
    fn delete_token_derives_the_blob_id_and_nothing_else_opens_it() {
        let key = AttachmentKey::from_bytes(&[7; 32]);
        let t = BlobDeleteToken::derive(&key);
        assert_eq!(t, BlobDeleteToken::derive(&key), "deterministic");
        assert_ne!(
            t,
            BlobDeleteToken::derive(&AttachmentKey::from_bytes(&[8; 32]))
        );
        assert_ne!(t.as_bytes(), key.as_bytes(), "the token is not the key");
        assert!(t.opens(&t.blob_id()));
        assert!(!BlobDeleteToken::from_bytes(*t.blob_id().as_bytes()).opens(&t.blob_id()));
        assert!(!t.opens(&BlobId([0; 32])));
        assert_eq!(format!("{t:?}"), "BlobDeleteToken(..)");
        // The sealer names its blob by the token of its key.
        let mut s = AttachmentSealer::new(3, info("a.txt", "text/plain"), &mut rng()).unwrap();
        let id = s.blob_id();
        s.seal_next(b"abc").unwrap();
        let r = s.finish().unwrap();
        assert_eq!(r.blob_id, id);
        assert!(r.delete_token().opens(&r.blob_id));
    }

    #[test]
    fn a_reference_whose_blob_id_is_not_derived_from_its_key_is_refused() {
        let mut r = sample_ref();
        assert!(AttachmentRef::decode(&r.encode().unwrap()).is_ok());
        r.blob_id = BlobId([0xb1; 32]);
        assert!(matches!(
            AttachmentRef::decode(&r.encode().unwrap()),
            Err(Error::Decode(DecodeError::Invalid { .. }))
        ));
    }
}
