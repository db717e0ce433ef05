//! One WebSocket, as bytes: binary messages in, binary messages out.
//!
//! Nothing here knows the protocol: [`crate::handler`] decodes what arrives
//! and [`crate::command`] answers. Sizes are capped by the WebSocket library
//! itself ([`limits`]), so an oversize message fails while it is read, before
//! it is buffered. Every write waits for the socket, within
//! `send_timeout_secs`: a peer that stops reading holds at most one write's
//! frames (plus the kernel's buffer) until the timeout cuts it off.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use futures_util::{FutureExt, SinkExt};

/// Bytes a connection reads from its socket at a time. The WebSocket
/// library zeroes this much on every read and keeps it per connection, so
/// its 128 KiB default cost 128 KiB of memory per idle connection and a
/// 128 KiB memset per read; larger frames still arrive whole (the buffer
/// grows to the frame being read).
pub const WS_READ_BUFFER_BYTES: usize = 4096;

/// WebSocket close code for policy violations (RFC 6455 §7.4.1).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "going away" (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Sets the WebSocket library's size caps on an upgrade. Messages up to
/// `max_frame_bytes` are protocol frames; those between it and twice it
/// arrive, to be answered `frame_too_large`; beyond that the read fails
/// before more is buffered (and the connection closes).
pub fn limits(upgrade: WebSocketUpgrade, max_frame_bytes: usize) -> WebSocketUpgrade {
    let hard = max_frame_bytes.saturating_mul(2);
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
}

/// What one read produced.
#[derive(Debug)]
pub enum Incoming {
    /// A binary message: one protocol frame, not yet decoded.
    Frame(Bytes),
    /// A text message (the protocol has none).
    Text,
    /// A ping or a pong (the library answers pings itself); proof of life only.
    Control,
    /// The peer closed the connection, or the stream ended.
    Closed,
    /// The read failed: a message over the hard cap, the socket's idle
    /// timeout ([`crate::limits::socket`]), or a broken socket.
    Failed,
}

impl From<Option<Result<Message, axum::Error>>> for Incoming {
    fn from(m: Option<Result<Message, axum::Error>>) -> Self {
        match m {
            Some(Ok(Message::Binary(b))) => Incoming::Frame(b),
            Some(Ok(Message::Text(_))) => Incoming::Text,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Incoming::Control,
            Some(Ok(Message::Close(_))) | None => Incoming::Closed,
            Some(Err(_)) => Incoming::Failed,
        }
    }
}

/// The connection is over: a write failed or outlasted the send timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// One WebSocket, and one message read ahead.
#[derive(Debug)]
pub struct Connection {
    ws: WebSocket,
    /// How long one write may wait for the peer to take it (`send_timeout_secs`).
    send_timeout: Duration,
    /// A message read ahead of its turn ([`Connection::unread`]), returned
    /// by the next read.
    ahead: Option<Incoming>,
}

impl Connection {
    pub fn new(ws: WebSocket, send_timeout: Duration) -> Self {
        Connection {
            ws,
            send_timeout,
            ahead: None,
        }
    }

    /// The next message: the one put back, if any, else the socket's next.
    /// Cancel-safe (a message is never half-read).
    pub async fn read(&mut self) -> Incoming {
        if let Some(m) = self.ahead.take() {
            return m;
        }
        self.ws.recv().await.into()
    }

    /// A message the peer already sent, without waiting; `None` when none has
    /// arrived, or when one put back is waiting (nothing is read past it).
    pub fn read_ready(&mut self) -> Option<Incoming> {
        if self.ahead.is_some() {
            return None;
        }
        self.ws.recv().now_or_never().map(Incoming::from)
    }

    /// Puts a message back: the next [`Connection::read`] returns it.
    pub fn unread(&mut self, m: Incoming) {
        debug_assert!(self.ahead.is_none(), "one message is read ahead at most");
        self.ahead = Some(m);
    }

    /// Writes one frame and flushes it, within the send timeout.
    pub async fn write_frame(&mut self, frame: Bytes) -> Result<(), Closed> {
        self.write(std::iter::once(Message::Binary(frame))).await
    }

    /// Writes frames with one flush, within the send timeout.
    pub async fn write_frames(
        &mut self,
        frames: impl IntoIterator<Item = Bytes, IntoIter: Send>,
    ) -> Result<(), Closed> {
        self.write(frames.into_iter().map(Message::Binary)).await
    }

    /// Pings the peer (its pong, like anything it sends, shows it is alive).
    pub async fn ping(&mut self) -> Result<(), Closed> {
        self.write(std::iter::once(Message::Ping(Bytes::new())))
            .await
    }

    /// Sends a close frame (best effort: the connection ends anyway).
    pub async fn close(&mut self, code: u16, reason: &'static str) {
        let close = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = self.write(std::iter::once(close)).await;
    }

    async fn write(
        &mut self,
        messages: impl Iterator<Item = Message> + Send,
    ) -> Result<(), Closed> {
        let ws = &mut self.ws;
        let write = async move {
            for m in messages {
                ws.feed(m).await?;
            }
            ws.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Closed),
            Err(_) => {
                tracing::info!("closing a connection that does not read");
                Err(Closed)
            }
        }
    }
}
