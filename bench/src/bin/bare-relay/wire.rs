//! The hot frames without allocating: a `Deposit` and an `Ack` are checked
//! in place (every rule of `ClientFrame::decode` for them: frame version,
//! length, tag, proof-of-work flag, counts, envelope version and ciphertext
//! bounds, no trailing bytes) and yield slices of the received bytes; the
//! `Deliver`, `Deposited` and `Acked` replies are written straight into a
//! caller's buffer. Byte layouts: docs/PROTOCOL.md; the tests check both
//! directions against northstar-core's own encoder and decoder.

use northstar_core::frame::{
    FRAME_VERSION, MAX_ACK_IDS, MAX_BATCH_ENVELOPES, MAX_FRAME_LEN, PUSH_REQUEST_ID,
};
use northstar_core::ids::MailboxId;
use northstar_core::sealed::{
    ENVELOPE_HEADER_LEN, ENVELOPE_VERSION, MAX_CIPHERTEXT_LEN, MIN_CIPHERTEXT_LEN,
};

/// Version, request id, tag.
const HEADER_LEN: usize = 1 + 4 + 1;
const TAG_DEPOSIT: u8 = 0x01;
const TAG_ACK: u8 = 0x06;
const TAG_DEPOSITED: u8 = 0x83;
const TAG_DELIVER: u8 = 0x85;
const TAG_ACKED: u8 = 0x86;
/// An envelope id on the wire.
pub const ID_LEN: usize = 32;
/// What a `Deliver` frame carries before the envelope: header, id, expiry.
pub const DELIVER_PREFIX_LEN: usize = HEADER_LEN + ID_LEN + 8;

/// A checked `Deposit` frame: its envelopes lie back to back from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    pub request_id: u32,
    pub first: usize,
    pub count: u16,
}

/// A checked `Ack` frame: `count` ids of 32 bytes from `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub request_id: u32,
    pub first: usize,
    pub count: u16,
}

/// One of the two frames the hot path reads, or anything else (decoded by
/// `ClientFrame::decode`, allocations and all: set-up frames only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hot {
    Deposit(Deposit),
    Ack(Ack),
    Other,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Classifies a client frame. `None`: a `Deposit` or `Ack` that
/// `ClientFrame::decode` would refuse too.
pub fn read(frame: &[u8]) -> Option<Hot> {
    let tag = *frame.get(HEADER_LEN - 1)?;
    if tag != TAG_DEPOSIT && tag != TAG_ACK {
        return Some(Hot::Other);
    }
    if frame[0] != FRAME_VERSION || frame.len() > MAX_FRAME_LEN {
        return None;
    }
    let request_id = u32_at(frame, 1)?;
    if tag == TAG_ACK {
        let count = u16_at(frame, HEADER_LEN)?;
        let first = HEADER_LEN + 2;
        if usize::from(count) > MAX_ACK_IDS || frame.len() != first + usize::from(count) * ID_LEN {
            return None;
        }
        return Some(Hot::Ack(Ack {
            request_id,
            first,
            count,
        }));
    }
    let mut at = HEADER_LEN;
    match *frame.get(at)? {
        0 => at += 1,
        1 => at += 1 + 8,
        _ => return None,
    }
    let count = u16_at(frame, at)?;
    at += 2;
    if count == 0 || usize::from(count) > MAX_BATCH_ENVELOPES {
        return None;
    }
    let first = at;
    for _ in 0..count {
        at += envelope_len(frame.get(at..)?)?;
    }
    (at == frame.len()).then_some(Hot::Deposit(Deposit {
        request_id,
        first,
        count,
    }))
}

/// The length of the well-formed envelope at the start of `b`.
fn envelope_len(b: &[u8]) -> Option<usize> {
    if *b.first()? != ENVELOPE_VERSION {
        return None;
    }
    let ct = usize::try_from(u32_at(b, 1 + MailboxId::LEN)?).ok()?;
    if !(MIN_CIPHERTEXT_LEN..=MAX_CIPHERTEXT_LEN).contains(&ct)
        || b.len() < ENVELOPE_HEADER_LEN + ct
    {
        return None;
    }
    Some(ENVELOPE_HEADER_LEN + ct)
}

/// The envelopes of a checked deposit: (encoded envelope, recipient).
pub fn envelopes(frame: &[u8], d: Deposit) -> impl Iterator<Item = (&[u8], MailboxId)> {
    let mut at = d.first;
    (0..d.count).map_while(move |_| {
        let len = envelope_len(frame.get(at..)?)?;
        let e = frame.get(at..at + len)?;
        at += len;
        let to = MailboxId::from_bytes(e.get(1..1 + MailboxId::LEN)?.try_into().ok()?);
        Some((e, to))
    })
}

fn header(out: &mut Vec<u8>, request_id: u32, tag: u8) {
    out.push(FRAME_VERSION);
    out.extend_from_slice(&request_id.to_be_bytes());
    out.push(tag);
}

/// Appends a `Deliver` push (expiry 0) of `envelope` under `id`.
pub fn deliver(out: &mut Vec<u8>, id: &[u8; ID_LEN], envelope: &[u8]) {
    header(out, PUSH_REQUEST_ID, TAG_DELIVER);
    out.extend_from_slice(id);
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(envelope);
}

/// Appends `Deposited { accepted, next_pow_challenge: zeros, refused: none }`.
pub fn deposited(out: &mut Vec<u8>, request_id: u32, accepted: u16) {
    header(out, request_id, TAG_DEPOSITED);
    out.extend_from_slice(&accepted.to_be_bytes());
    out.extend_from_slice(&[0; 32]);
    out.extend_from_slice(&0u16.to_be_bytes());
}

/// Appends `Acked { deleted }`.
pub fn acked(out: &mut Vec<u8>, request_id: u32, deleted: u32) {
    header(out, request_id, TAG_ACKED);
    out.extend_from_slice(&deleted.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_core::UnixTime;
    use northstar_core::frame::{ClientFrame, ServerFrame};
    use northstar_core::ids::EnvelopeId;
    use northstar_core::sealed::Envelope;

    fn envelope(to: u8, len: usize) -> Envelope {
        Envelope::from_parts(MailboxId::from_bytes([to; 32]), vec![to; len]).unwrap()
    }

    fn deposit(pow: Option<u64>, envelopes: Vec<Envelope>) -> Vec<u8> {
        ClientFrame::Deposit {
            pow_nonce: pow,
            envelopes,
        }
        .encode(7)
        .unwrap()
    }

    #[test]
    fn deposits_read_in_place_as_the_core_decodes_them() {
        for pow in [None, Some(42)] {
            let es = vec![envelope(1, MIN_CIPHERTEXT_LEN), envelope(2, 1072)];
            let f = deposit(pow, es.clone());
            let Some(Hot::Deposit(d)) = read(&f) else {
                panic!("not read")
            };
            assert_eq!((d.request_id, d.count), (7, 2));
            let got: Vec<_> = envelopes(&f, d).map(|(b, to)| (b.to_vec(), to)).collect();
            let want: Vec<_> = es.iter().map(|e| (e.encode(), *e.recipient())).collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn acks_read_in_place_as_the_core_decodes_them() {
        for n in [0, 1, MAX_ACK_IDS] {
            let ids: Vec<_> = (0..n)
                .map(|i| EnvelopeId::from_bytes([i as u8; 32]))
                .collect();
            let f = ClientFrame::Ack { ids: ids.clone() }.encode(9).unwrap();
            let Some(Hot::Ack(a)) = read(&f) else {
                panic!("not read")
            };
            assert_eq!((a.request_id, usize::from(a.count)), (9, n));
            let got: Vec<_> = f[a.first..]
                .chunks(ID_LEN)
                .map(|c| EnvelopeId::from_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(got, ids);
        }
    }

    #[test]
    fn malformed_deposits_and_acks_are_refused_as_the_core_refuses_them() {
        let good = deposit(None, vec![envelope(3, 100)]);
        let ack = ClientFrame::Ack {
            ids: vec![EnvelopeId::from_bytes([1; 32])],
        }
        .encode(1)
        .unwrap();
        let mut bad: Vec<Vec<u8>> = Vec::new();
        let mut v = good.clone();
        v[0] = FRAME_VERSION.wrapping_add(1); // unknown frame version
        bad.push(v);
        let mut v = good.clone();
        v.push(0); // trailing byte
        bad.push(v);
        bad.push(good[..good.len() - 1].to_vec()); // truncated
        let mut v = good.clone();
        v[HEADER_LEN] = 2; // unknown pow flag
        bad.push(v);
        let mut v = good.clone();
        v[HEADER_LEN + 1..HEADER_LEN + 3].copy_from_slice(&0u16.to_be_bytes()); // empty batch
        bad.push(v);
        let mut v = good.clone();
        v[HEADER_LEN + 1..HEADER_LEN + 3]
            .copy_from_slice(&(MAX_BATCH_ENVELOPES as u16 + 1).to_be_bytes()); // batch too large
        bad.push(v);
        let mut v = good.clone();
        v[HEADER_LEN + 3] = ENVELOPE_VERSION.wrapping_add(1); // unknown envelope version
        bad.push(v);
        // A ciphertext under the minimum, length prefix and body consistent.
        let short = MIN_CIPHERTEXT_LEN - 1;
        let mut v = good[..HEADER_LEN + 3 + 1 + 32].to_vec();
        v.extend_from_slice(&(short as u32).to_be_bytes());
        v.extend(std::iter::repeat_n(0, short));
        bad.push(v);
        let mut v = ack.clone();
        v.push(0); // trailing byte in an ack
        bad.push(v);
        let mut v = ack.clone();
        v[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&(MAX_ACK_IDS as u16 + 1).to_be_bytes());
        bad.push(v);
        bad.push(ack[..ack.len() - 1].to_vec());
        for (i, f) in bad.iter().enumerate() {
            assert!(
                ClientFrame::decode(f).is_err(),
                "case {i}: the core accepts it"
            );
            assert_eq!(read(f), None, "case {i}: read in place");
        }
        assert!(matches!(read(&good), Some(Hot::Deposit(_))));
        assert!(matches!(read(&ack), Some(Hot::Ack(_))));
        let subscribe = ClientFrame::Subscribe.encode(3).unwrap();
        assert_eq!(read(&subscribe), Some(Hot::Other));
    }

    #[test]
    fn replies_are_byte_for_byte_the_core_encoding() {
        let e = envelope(4, 1072);
        let id = EnvelopeId::of(&e.encode());
        let encoded = e.encode();
        let mut out = Vec::new();
        deliver(&mut out, id.as_bytes(), &encoded);
        let want = ServerFrame::Deliver {
            id,
            expires_at: UnixTime(0),
            envelope: e,
        }
        .encode(PUSH_REQUEST_ID)
        .unwrap();
        assert_eq!(out, want);
        assert_eq!(&want[DELIVER_PREFIX_LEN..], &encoded[..]);

        let mut out = Vec::new();
        deposited(&mut out, 11, 3);
        let want = ServerFrame::Deposited {
            accepted: 3,
            next_pow_challenge: [0; 32],
            refused: Vec::new(),
        }
        .encode(11)
        .unwrap();
        assert_eq!(out, want);

        let mut out = Vec::new();
        acked(&mut out, 12, 5);
        assert_eq!(out, ServerFrame::Acked { deleted: 5 }.encode(12).unwrap());
    }
}
