//! Bytes to and from frames. The codec is client-core's
//! ([`northstar_core::frame`], shared with every client; docs/PROTOCOL.md §4);
//! the relay adds the request id of a frame too broken to decode, the size
//! of a request on the wire, and replies that always encode.

use axum::body::Bytes;
use northstar_core::frame::{ClientFrame, ErrorCode, FRAME_HEADER_LEN, FrameError, ServerFrame};

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// Echoed by the reply.
    pub id: u32,
    pub frame: ClientFrame,
    /// Bytes it took on the wire (pipelined deposits are read ahead up to
    /// about `max_frame_bytes` of them).
    pub wire_len: usize,
}

impl Request {
    /// Decodes one binary message strictly.
    pub fn decode(bytes: &[u8]) -> Result<Request, FrameError> {
        let (id, frame) = ClientFrame::decode(bytes)?;
        Ok(Request {
            id,
            frame,
            wire_len: bytes.len(),
        })
    }
}

/// The request id of a frame too broken (or too large) to decode, if its
/// header is there; else 0.
pub fn peek_request_id(bytes: &[u8]) -> u32 {
    match bytes.get(1..FRAME_HEADER_LEN - 1) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Encodes a reply or push; a frame that does not encode (a bug: every
/// limit is checked before) is replaced by an `internal` error frame. `None`
/// only if that fails too, which ends the connection.
pub fn encode(request_id: u32, frame: &ServerFrame) -> Option<Bytes> {
    match frame.encode(request_id) {
        Ok(b) => Some(b.into()),
        Err(_) => {
            tracing::error!(frame = frame.name(), "reply does not encode");
            ServerFrame::Error {
                code: ErrorCode::Internal,
            }
            .encode(request_id)
            .ok()
            .map(Bytes::from)
        }
    }
}

/// Encodes a command's outcome: its reply, or the error frame.
pub fn encode_reply(request_id: u32, reply: Result<ServerFrame, ErrorCode>) -> Option<Bytes> {
    match reply {
        Ok(frame) => encode(request_id, &frame),
        Err(code) => {
            tracing::debug!(code = code.name(), "error frame");
            crate::metrics::METRICS.refused(code);
            encode(request_id, &ServerFrame::Error { code })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_peeked_from_broken_frames() {
        assert_eq!(peek_request_id(&[9, 0, 0, 1, 2, 0xEE, 1, 2]), 258);
        assert_eq!(peek_request_id(&[1, 0]), 0);
    }

    #[test]
    fn requests_know_their_size_and_errors_encode() {
        let bytes = ClientFrame::Challenge.encode(7).unwrap();
        let r = Request::decode(&bytes).unwrap();
        assert_eq!((r.id, r.frame, r.wire_len), (7, ClientFrame::Challenge, 6));
        let e = encode_reply(7, Err(ErrorCode::RateLimited)).unwrap();
        assert_eq!(&e[..], [2, 0, 0, 0, 7, 0xFF, 0, 4]);
    }
}
