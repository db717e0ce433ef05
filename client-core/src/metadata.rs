//! Removing what identifies a person from an image before it is encrypted
//! (docs/PROTOCOL.md §5.6.4 "Image metadata").
//!
//! A phone photo of a document carries, besides the document, where and
//! when it was taken and which phone took it: EXIF GPS coordinates, the
//! camera's serial number, timestamps, sometimes the owner's name. None of
//! it is needed to show the picture, so it is removed on the device, by
//! default, before encryption:
//!
//! - **JPEG** — the file is rewritten segment by segment. Kept: the start
//!   of image, JFIF `APP0` (pixel density only), `APP2` ICC profiles
//!   (colour data: a profile names a device *model* at most, never a serial
//!   or a place), `APP14` Adobe (colour transform flag, needed to decode
//!   some CMYK files), quantisation and Huffman tables, frame and scan
//!   headers, restart intervals, and the entropy-coded image data. Dropped:
//!   `APP1` (EXIF, XMP — GPS, serial numbers, timestamps, thumbnails),
//!   `APP13` (IPTC/Photoshop — names, captions, places), every other
//!   `APPn`, and comments (`COM`). Anything after the end of image (where
//!   some phones append extra data) is dropped too. A file that does not
//!   parse is refused, never sent half-cleaned.
//! - **PNG** — chunks are copied except `tEXt`, `zTXt`, `iTXt` (free text:
//!   author, software, comments, XMP), `eXIf` (EXIF, GPS included) and
//!   `tIME` (when it was last changed). Every chunk's CRC is checked. Other
//!   ancillary chunks (colour, gamma, physical size) carry nothing
//!   personal and are kept.
//! - Anything else (PDFs, documents) is sent as it is: the client warns
//!   plainly that documents can carry names.
//!
//! This module is pure: bytes in, bytes out; it never decodes pixels.

use crate::error::DecodeError;

/// Largest image this module rewrites: the attachment limit.
pub const MAX_IMAGE_LEN: usize = crate::attachment::MAX_ATTACHMENT_LEN;

/// What cleaning an attachment did, for the message shown before sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleaning {
    /// An image whose metadata was removed (`removed` segments or chunks).
    Stripped { removed: usize },
    /// A file sent as it is; documents can carry names.
    AsIs,
}

/// Why an image could not be cleaned (then it is not sent).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The bytes are not a well-formed image of the type they claim.
    #[error("the image is malformed ({what})")]
    Malformed { what: &'static str },
    /// Larger than [`MAX_IMAGE_LEN`].
    #[error("the image is too large")]
    TooLarge,
}

impl From<MetadataError> for DecodeError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Malformed { what } => DecodeError::Invalid { what },
            MetadataError::TooLarge => DecodeError::TooLong {
                what: "image",
                max: MAX_IMAGE_LEN,
                got: MAX_IMAGE_LEN + 1,
            },
        }
    }
}

/// JPEG start of image.
const SOI: [u8; 2] = [0xFF, 0xD8];
/// The PNG signature.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Whether `bytes` start like a JPEG.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&SOI)
}

/// Whether `bytes` start like a PNG.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

/// What a file is, by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    /// An image format this module cannot clean and that can carry EXIF,
    /// XMP or text (HEIC/HEIF/AVIF, WebP, TIFF, GIF): refused rather than
    /// sent with its metadata.
    UncleanableImage,
    /// Anything else (PDF, documents): sent as it is, with the warning.
    Other,
}

/// Recognises a file by its first bytes (12 are enough).
pub fn sniff(first: &[u8]) -> Kind {
    if is_jpeg(first) {
        return Kind::Jpeg;
    }
    if is_png(first) {
        return Kind::Png;
    }
    let iso_bmff_image = first.len() >= 12
        && &first[4..8] == b"ftyp"
        && matches!(
            &first[8..12],
            b"heic"
                | b"heix"
                | b"hevc"
                | b"hevx"
                | b"heim"
                | b"heis"
                | b"mif1"
                | b"msf1"
                | b"avif"
                | b"avis"
        );
    let webp = first.len() >= 12 && &first[..4] == b"RIFF" && &first[8..12] == b"WEBP";
    let tiff = first.starts_with(b"II*\0") || first.starts_with(b"MM\0*");
    let gif = first.starts_with(b"GIF87a") || first.starts_with(b"GIF89a");
    if iso_bmff_image || webp || tiff || gif {
        Kind::UncleanableImage
    } else {
        Kind::Other
    }
}

/// Cleans a file by its content (not by its claimed type, which a sender's
/// system may get wrong): JPEG and PNG are rewritten, anything else is
/// returned as it is with [`Cleaning::AsIs`].
pub fn clean(bytes: Vec<u8>) -> Result<(Vec<u8>, Cleaning), MetadataError> {
    if is_jpeg(&bytes) {
        let (out, removed) = strip_jpeg(&bytes)?;
        Ok((out, Cleaning::Stripped { removed }))
    } else if is_png(&bytes) {
        let (out, removed) = strip_png(&bytes)?;
        Ok((out, Cleaning::Stripped { removed }))
    } else {
        Ok((bytes, Cleaning::AsIs))
    }
}

/// Rewrites a JPEG without its metadata segments (see the module doc);
/// returns the new bytes and how many segments were dropped.
pub fn strip_jpeg(input: &[u8]) -> Result<(Vec<u8>, usize), MetadataError> {
    let bad = |what| MetadataError::Malformed { what };
    if input.len() > MAX_IMAGE_LEN {
        return Err(MetadataError::TooLarge);
    }
    if !is_jpeg(input) {
        return Err(bad("no JPEG start"));
    }
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&SOI);
    let mut removed = 0;
    let mut i = 2;
    let mut seen_frame = false;
    loop {
        // Markers may be preceded by fill bytes 0xFF.
        if i >= input.len() || input[i] != 0xFF {
            return Err(bad("expected a marker"));
        }
        while i < input.len() && input[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = input.get(i) else {
            return Err(bad("truncated marker"));
        };
        i += 1;
        match marker {
            0xD9 => {
                // End of image: anything after it is dropped.
                out.extend_from_slice(&[0xFF, 0xD9]);
                if i < input.len() {
                    removed += 1;
                }
                return if seen_frame {
                    Ok((out, removed))
                } else {
                    Err(bad("no frame header"))
                };
            }
            0x00 | 0x01 | 0xD0..=0xD8 => return Err(bad("unexpected marker")),
            _ => {}
        }
        let Some(len_bytes) = input.get(i..i + 2) else {
            return Err(bad("truncated segment length"));
        };
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 || i + len > input.len() {
            return Err(bad("segment length"));
        }
        let segment = &input[i - 2..i + len];
        let payload = &input[i + 2..i + len];
        i += len;
        let keep = match marker {
            0xE0 => payload.starts_with(b"JFIF\0"),
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
            0xEE => payload.starts_with(b"Adobe"),
            0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
            // SOFn (0xC0–0xCF except DHT 0xC4, JPG 0xC8, DAC 0xCC).
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                seen_frame = true;
                true
            }
            // DHT, DAC, DQT, DRI, DNL, and the rest of the defined segments.
            0xC4 | 0xCC | 0xDB | 0xDD | 0xDC | 0xDE | 0xDF => true,
            0xDA => {
                if !seen_frame {
                    return Err(bad("scan before frame"));
                }
                out.extend_from_slice(segment);
                // Entropy-coded data up to the next marker that is not a
                // stuffed zero or a restart marker.
                let start = i;
                loop {
                    if i + 1 >= input.len() {
                        return Err(bad("truncated scan"));
                    }
                    if input[i] == 0xFF {
                        let next = input[i + 1];
                        if next == 0x00 || (0xD0..=0xD7).contains(&next) || next == 0xFF {
                            i += if next == 0xFF { 1 } else { 2 };
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                out.extend_from_slice(&input[start..i]);
                continue;
            }
            _ => return Err(bad("unknown marker")),
        };
        if keep {
            out.extend_from_slice(segment);
        } else {
            removed += 1;
        }
    }
}

/// PNG chunk types that carry text, EXIF or a time.
const PNG_DROPPED: [&[u8; 4]; 5] = [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"];

/// Rewrites a PNG without its text, EXIF and time chunks (see the module
/// doc); returns the new bytes and how many chunks were dropped.
pub fn strip_png(input: &[u8]) -> Result<(Vec<u8>, usize), MetadataError> {
    let bad = |what| MetadataError::Malformed { what };
    if input.len() > MAX_IMAGE_LEN {
        return Err(MetadataError::TooLarge);
    }
    if !is_png(input) {
        return Err(bad("no PNG signature"));
    }
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&PNG_SIGNATURE);
    let mut i = PNG_SIGNATURE.len();
    let mut removed = 0;
    let mut first = true;
    loop {
        let Some(head) = input.get(i..i + 8) else {
            return Err(bad("truncated chunk"));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let ty: [u8; 4] = [head[4], head[5], head[6], head[7]];
        if len > 0x7FFF_FFFF || !ty.iter().all(u8::is_ascii_alphabetic) {
            return Err(bad("chunk header"));
        }
        let end = i
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .filter(|e| *e <= input.len())
            .ok_or(bad("chunk length"))?;
        let chunk = &input[i..end];
        let crc = u32::from_be_bytes([
            chunk[8 + len],
            chunk[9 + len],
            chunk[10 + len],
            chunk[11 + len],
        ]);
        if crc32(&chunk[4..8 + len]) != crc {
            return Err(bad("chunk CRC"));
        }
        if first && &ty != b"IHDR" {
            return Err(bad("first chunk is not IHDR"));
        }
        first = false;
        i = end;
        if PNG_DROPPED.contains(&&ty) {
            removed += 1;
        } else {
            out.extend_from_slice(chunk);
        }
        if &ty == b"IEND" {
            if i < input.len() {
                removed += 1;
            }
            return Ok((out, removed));
        }
    }
}

/// CRC-32 (ISO 3309, as PNG uses it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Test images built byte by byte (also used by the end-to-end and
/// browser tests through the CLI's test helpers).
#[doc(hidden)]
pub mod samples {
    use super::crc32;

    /// An EXIF APP1 segment with a GPS IFD (latitude 45°30'N, longitude
    /// 73°34'W), a camera serial number and a date: what a phone writes.
    pub fn exif_app1_with_gps() -> Vec<u8> {
        // TIFF header, big-endian.
        let mut t: Vec<u8> = b"MM\0\x2a\0\0\0\x08".to_vec();
        // IFD0: 3 entries: DateTime (0x0132, ASCII), ExifIFD not used,
        // BodySerialNumber-like tag (0xA431 is in the Exif IFD; here as a
        // private-use tag in IFD0 to keep the sample small), GPS IFD pointer (0x8825).
        let ifd0_at = 8u32;
        let n0 = 3u16;
        let ifd0_len = 2 + 12 * u32::from(n0) + 4;
        let date_at = ifd0_at + ifd0_len;
        let date = b"2026:11:30 14:02:11\0";
        let serial_at = date_at + date.len() as u32;
        let serial = b"SN-4C0FFEE12345\0";
        let gps_at = serial_at + serial.len() as u32;
        let entry = |t: &mut Vec<u8>, tag: u16, ty: u16, count: u32, val: u32| {
            t.extend_from_slice(&tag.to_be_bytes());
            t.extend_from_slice(&ty.to_be_bytes());
            t.extend_from_slice(&count.to_be_bytes());
            t.extend_from_slice(&val.to_be_bytes());
        };
        t.extend_from_slice(&n0.to_be_bytes());
        entry(&mut t, 0x0132, 2, date.len() as u32, date_at);
        entry(&mut t, 0x8825, 4, 1, gps_at);
        entry(&mut t, 0xA431, 2, serial.len() as u32, serial_at);
        t.extend_from_slice(&0u32.to_be_bytes());
        t.extend_from_slice(date);
        t.extend_from_slice(serial);
        // GPS IFD: LatitudeRef 'N', Latitude, LongitudeRef 'W', Longitude.
        let n = 4u16;
        let gps_len = 2 + 12 * u32::from(n) + 4;
        let lat_at = gps_at + gps_len;
        let lon_at = lat_at + 24;
        t.extend_from_slice(&n.to_be_bytes());
        entry(&mut t, 0x0001, 2, 2, u32::from_be_bytes(*b"N\0\0\0"));
        entry(&mut t, 0x0002, 5, 3, lat_at);
        entry(&mut t, 0x0003, 2, 2, u32::from_be_bytes(*b"W\0\0\0"));
        entry(&mut t, 0x0004, 5, 3, lon_at);
        t.extend_from_slice(&0u32.to_be_bytes());
        for (num, den) in [
            (45u32, 1u32),
            (30, 1),
            (1234, 100),
            (73, 1),
            (34, 1),
            (5678, 100),
        ] {
            t.extend_from_slice(&num.to_be_bytes());
            t.extend_from_slice(&den.to_be_bytes());
        }
        let mut seg = vec![0xFF, 0xE1];
        let len = (2 + 6 + t.len()) as u16;
        seg.extend_from_slice(&len.to_be_bytes());
        seg.extend_from_slice(b"Exif\0\0");
        seg.extend_from_slice(&t);
        seg
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// A valid baseline 8×8 grey JPEG (one all-zero block: mid-grey),
    /// with JFIF, the EXIF/GPS segment above, an XMP APP1, an IPTC APP13
    /// and a comment naming a person, then trailing bytes after the end.
    pub fn jpeg_with_gps() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        j.extend(exif_app1_with_gps());
        j.extend(segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><exif:GPSLatitude>45,30.2N</exif:GPSLatitude></x:xmpmeta>",
        ));
        j.extend(segment(
            0xED,
            b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x0c\x1c\x02\x50\0\x08Maria L.",
        ));
        j.extend(segment(0xFE, b"Taken by Maria Lopez"));
        j.extend(clean_jpeg_body());
        j.extend_from_slice(b"trailing phone data");
        j
    }

    /// The image segments a cleaned [`jpeg_with_gps`] keeps, after JFIF:
    /// tables, frame, scan, data, end.
    fn clean_jpeg_body() -> Vec<u8> {
        let mut j = Vec::new();
        // DQT: table 0, all ones.
        let mut dqt = vec![0x00];
        dqt.extend_from_slice(&[1u8; 64]);
        j.extend(segment(0xDB, &dqt));
        // SOF0: 8-bit, 8×8, one component (id 1, 1×1 sampling, table 0).
        j.extend(segment(0xC0, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
        // DHT DC table 0: one code of length 1 for category 0.
        let mut dc = vec![0x00, 1];
        dc.extend_from_slice(&[0u8; 15]);
        dc.push(0);
        j.extend(segment(0xC4, &dc));
        // DHT AC table 0: one code of length 1 for EOB (0x00).
        let mut ac = vec![0x10, 1];
        ac.extend_from_slice(&[0u8; 15]);
        ac.push(0);
        j.extend(segment(0xC4, &ac));
        // SOS: one component, tables 0/0, spectral 0–63.
        j.extend(segment(0xDA, &[1, 1, 0x00, 0, 63, 0]));
        // DC diff category 0 (code "0"), AC EOB (code "0"), padded with 1s.
        j.push(0x3F);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    /// What [`jpeg_with_gps`] must become.
    pub fn jpeg_cleaned() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        j.extend(clean_jpeg_body());
        j
    }

    fn png_chunk(ty: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(ty);
        c.extend_from_slice(data);
        c.extend_from_slice(&crc32(&c[4..]).to_be_bytes());
        c
    }

    /// A 1×1 PNG with text, EXIF and time chunks; and its cleaned form.
    pub fn png_with_metadata() -> (Vec<u8>, Vec<u8>) {
        let ihdr = png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        let gama = png_chunk(b"gAMA", &45455u32.to_be_bytes());
        let idat = png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0, 0, 0, 2, 0, 1]);
        let iend = png_chunk(b"IEND", &[]);
        let mut dirty = super::PNG_SIGNATURE.to_vec();
        let mut clean = dirty.clone();
        dirty.extend(&ihdr);
        dirty.extend(png_chunk(b"tEXt", b"Author\0Maria Lopez"));
        dirty.extend(png_chunk(b"eXIf", &exif_app1_with_gps()[10..]));
        dirty.extend(&gama);
        dirty.extend(png_chunk(b"tIME", &[7, 234, 11, 30, 14, 2, 11]));
        dirty.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<gps/>"));
        dirty.extend(png_chunk(b"zTXt", b"Comment\0\0x"));
        dirty.extend(&idat);
        dirty.extend(&iend);
        clean.extend(&ihdr);
        clean.extend(&gama);
        clean.extend(&idat);
        clean.extend(&iend);
        (dirty, clean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn gps_exif_xmp_iptc_comments_and_trailers_leave_a_jpeg() {
        let dirty = samples::jpeg_with_gps();
        assert!(contains(&dirty, b"SN-4C0FFEE12345"));
        assert!(contains(&dirty, b"Exif\0\0"));
        let (out, removed) = strip_jpeg(&dirty).unwrap();
        assert_eq!(out, samples::jpeg_cleaned());
        assert_eq!(removed, 5); // EXIF, XMP, IPTC, comment, trailer
        for needle in [
            &b"Exif"[..],
            b"GPS",
            b"SN-4C0FFEE",
            b"2026:11:30",
            b"Maria",
            b"trailing",
            b"8BIM",
        ] {
            assert!(!contains(&out, needle), "{needle:?} survived");
        }
        // Idempotent, and a clean file comes back unchanged.
        assert_eq!(strip_jpeg(&out).unwrap(), (out.clone(), 0));
        assert_eq!(
            clean(dirty).unwrap(),
            (samples::jpeg_cleaned(), Cleaning::Stripped { removed: 5 })
        );
    }

    #[test]
    fn malformed_jpegs_are_refused_not_half_cleaned() {
        let good = samples::jpeg_with_gps();
        // Cut anywhere before the end of image: refused.
        let eoi = good.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
        for n in 2..eoi {
            assert!(strip_jpeg(&good[..n]).is_err(), "cut at {n}");
        }
        // A segment length running past the end.
        let mut long = good.clone();
        long[4] = 0xFF;
        assert!(strip_jpeg(&long).is_err());
        // No frame header.
        assert!(strip_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
        assert!(strip_jpeg(b"not a jpeg").is_err());
    }

    #[test]
    fn png_text_exif_and_time_chunks_are_dropped() {
        let (dirty, want) = samples::png_with_metadata();
        let (out, removed) = strip_png(&dirty).unwrap();
        assert_eq!(out, want);
        assert_eq!(removed, 5);
        assert!(!contains(&out, b"Maria"));
        assert!(!contains(&out, b"eXIf"));
        let mut bad_crc = dirty.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 1;
        assert!(strip_png(&bad_crc).is_err());
        for n in 8..dirty.len() {
            assert!(strip_png(&dirty[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn images_that_cannot_be_cleaned_are_recognised() {
        assert_eq!(sniff(&samples::jpeg_with_gps()), Kind::Jpeg);
        assert_eq!(sniff(&samples::png_with_metadata().0), Kind::Png);
        for first in [
            &b"\0\0\0\x18ftypheic\0\0\0\0"[..],
            b"\0\0\0\x1cftypmif1\0\0\0\0",
            b"\0\0\0\x1cftypavif\0\0\0\0",
            b"RIFF\x10\0\0\0WEBPVP8X",
            b"II*\0\x08\0\0\0",
            b"MM\0*\0\0\0\x08",
            b"GIF89a\x01\0",
        ] {
            assert_eq!(sniff(first), Kind::UncleanableImage, "{first:?}");
        }
        // A video in the same container, a PDF, text: sent as they are.
        for first in [
            &b"\0\0\0\x18ftypisom\0\0\0\0"[..],
            b"%PDF-1.7\n",
            b"hello",
            b"",
        ] {
            assert_eq!(sniff(first), Kind::Other, "{first:?}");
        }
    }

    #[test]
    fn other_files_pass_unchanged() {
        let pdf = b"%PDF-1.7\n/Author (Maria Lopez)\n%%EOF\n".to_vec();
        assert_eq!(clean(pdf.clone()).unwrap(), (pdf, Cleaning::AsIs));
    }

    #[test]
    fn crc32_matches_the_png_specification() {
        // The CRC of the IEND chunk type, as every PNG ends with.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = strip_jpeg(&bytes);
            let _ = strip_png(&bytes);
        }

        #[test]
        fn never_panics_near_valid(pos in any::<usize>(), byte in any::<u8>(), png in any::<bool>()) {
            let mut b = if png { samples::png_with_metadata().0 } else { samples::jpeg_with_gps() };
            let i = pos % b.len();
            b[i] = byte;
            if let Ok((out, _)) = clean(b) {
                // Whatever is accepted is stable: a second pass removes nothing.
                prop_assert_eq!(clean(out.clone()).unwrap().0, out);
            }
        }
    }
}
