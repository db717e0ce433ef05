//! One WebSocket connection: binary frames in, replies and deliveries out.
//!
//! The loop handles one request at a time, to completion (so a deposit's
//! reply is sent only after its commit, and shutdown never cuts a command
//! in half). It also pushes deliveries when the subscribed mailbox is woken.
//! Bad input gets a typed error frame and the connection lives on; only the
//! abuse limits (a hard frame-size breach, a sustained rate-limit breach)
//! and the timeouts (`idle_timeout_secs`: nothing heard, pings every third of
//! it; `send_timeout_secs`: a frame the peer does not take) close it. Nothing about the peer or the payload is logged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use northstar_core::frame::{
    ClientFrame, ErrorCode, FRAME_HEADER_LEN, PUSH_REQUEST_ID, ServerFrame,
};
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::sync::watch;

use crate::command::{self, Relay, Session, subscribe};
use crate::limits::rate::TokenBucket;

/// WebSocket close code for policy violations (RFC 6455 §7.4.1).
const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "going away" (shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;

/// A subscription: the mailbox and its wake-up receiver.
type Feed = Option<(MailboxId, watch::Receiver<u64>)>;

/// The socket and the time one outgoing frame may take
/// (`send_timeout_secs`): frames are written one at a time and each waits
/// for the socket, so a peer that stops reading holds at most one frame
/// (plus the kernel's buffer) until the timeout cuts it off.
struct Peer {
    ws: WebSocket,
    send_timeout: Duration,
}

impl Peer {
    async fn send_message(&mut self, m: Message) -> bool {
        match tokio::time::timeout(self.send_timeout, self.ws.send(m)).await {
            Ok(r) => r.is_ok(),
            Err(_) => {
                tracing::info!("closing a connection that does not read");
                false
            }
        }
    }
}

async fn send(socket: &mut Peer, request_id: u32, frame: &ServerFrame) -> bool {
    let bytes = match frame.encode(request_id) {
        Ok(b) => b,
        Err(_) => {
            tracing::error!(frame = frame.name(), "reply does not encode");
            match (ServerFrame::Error {
                code: ErrorCode::Internal,
            })
            .encode(request_id)
            {
                Ok(b) => b,
                Err(_) => return false,
            }
        }
    };
    socket.send_message(Message::Binary(bytes.into())).await
}

async fn send_error(socket: &mut Peer, request_id: u32, code: ErrorCode) -> bool {
    tracing::debug!(code = code.name(), "error frame");
    send(socket, request_id, &ServerFrame::Error { code }).await
}

async fn close(socket: &mut Peer, code: u16, reason: &'static str) {
    let _ = socket
        .send_message(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Resolves when the feed's mailbox is woken; never if there is no feed.
async fn woken(feed: &mut Feed) -> bool {
    match feed {
        Some((_, rx)) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The request id of a frame too broken to decode, if its header is there.
fn peek_request_id(bytes: &[u8]) -> u32 {
    match bytes.get(1..FRAME_HEADER_LEN - 1) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Pushes the envelopes not yet sent on this connection.
async fn push_fresh(
    socket: &mut Peer,
    relay: &Relay,
    feed: &Feed,
    sent: &mut HashSet<EnvelopeId>,
) -> bool {
    let Some((mailbox, _)) = feed else {
        return true;
    };
    match subscribe::fresh(relay, *mailbox, sent, command::now()).await {
        Ok(frames) => {
            for f in &frames {
                if !send(socket, PUSH_REQUEST_ID, f).await {
                    return false;
                }
            }
            true
        }
        // A transient store failure: the next wake-up or ack retries.
        Err(_) => true,
    }
}

fn unsubscribe(relay: &Relay, feed: &mut Feed, sent: &mut HashSet<EnvelopeId>) {
    if let Some((mailbox, rx)) = feed.take() {
        drop(rx);
        relay.notifier.release(&mailbox);
    }
    sent.clear();
}

/// Serves one connection until it closes, abuses a limit, or the relay shuts down.
pub async fn handle(ws: WebSocket, relay: Arc<Relay>, mut shutdown: watch::Receiver<bool>) {
    let cfg = &relay.config;
    let mut socket = Peer {
        ws,
        send_timeout: Duration::from_secs(cfg.send_timeout_secs),
    };
    // Idle timeout: a ping every third of it; anything received (the pong
    // too) counts as life.
    let idle = Duration::from_secs(cfg.idle_timeout_secs);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + idle / 3, idle / 3);
    let mut last_heard = Instant::now();
    let mut session = Session::new();
    let hello = ServerFrame::Hello {
        pow_challenge: session.pow_challenge,
        pow_difficulty: cfg.pow_difficulty,
        max_frame_len: u32::try_from(cfg.max_frame_bytes).unwrap_or(u32::MAX),
        max_batch: u16::try_from(cfg.max_batch).unwrap_or(u16::MAX),
    };
    if !send(&mut socket, PUSH_REQUEST_ID, &hello).await {
        return;
    }
    let mut bucket = TokenBucket::new(cfg.messages_per_second, cfg.message_burst, Instant::now());
    let mut strikes = 0u32;
    let mut feed: Feed = None;
    let mut sent: HashSet<EnvelopeId> = HashSet::new();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                close(&mut socket, CLOSE_GOING_AWAY, "relay shutting down").await;
                break;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    tracing::info!("closing an idle connection");
                    close(&mut socket, CLOSE_POLICY, "idle").await;
                    break;
                }
                if !socket.send_message(Message::Ping(Vec::new().into())).await {
                    break;
                }
            }
            alive = woken(&mut feed) => {
                if !alive {
                    unsubscribe(&relay, &mut feed, &mut sent);
                } else if !push_fresh(&mut socket, &relay, &feed, &mut sent).await {
                    break;
                }
            }
            msg = socket.ws.recv() => {
                let silent_for = last_heard.elapsed();
                last_heard = Instant::now();
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(_))) => {
                        if !send_error(&mut socket, 0, ErrorCode::Malformed).await {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue, // ping/pong: answered by axum
                    Some(Err(_)) if silent_for >= idle => {
                        // The socket's own idle timeout (limits::socket): the peer is gone.
                        tracing::info!("closing an idle connection");
                        break;
                    }
                    Some(Err(_)) => {
                        // Over the hard size cap (or a broken socket): abuse, close.
                        send_error(&mut socket, 0, ErrorCode::FrameTooLarge).await;
                        close(&mut socket, CLOSE_POLICY, "frame too large").await;
                        break;
                    }
                };
                let request_id = peek_request_id(&bytes);
                if !bucket.try_take(Instant::now()) {
                    strikes += 1;
                    let ok = send_error(&mut socket, request_id, ErrorCode::RateLimited).await;
                    if !ok || strikes >= cfg.rate_limit_strikes {
                        tracing::info!("closing a connection over its rate limit");
                        close(&mut socket, CLOSE_POLICY, "rate limit").await;
                        break;
                    }
                    continue;
                }
                strikes = 0;
                if bytes.len() > cfg.max_frame_bytes {
                    if !send_error(&mut socket, request_id, ErrorCode::FrameTooLarge).await {
                        break;
                    }
                    continue;
                }
                let (request_id, frame) = match ClientFrame::decode(&bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        if !send_error(&mut socket, e.request_id, e.code()).await {
                            break;
                        }
                        continue;
                    }
                };
                drop(bytes);
                let name = frame.name();
                let now = command::now();
                if matches!(frame, ClientFrame::Subscribe) {
                    match subscribe::subscribe(&relay, &session, now).await {
                        Ok((mailbox, rx, reply)) => {
                            unsubscribe(&relay, &mut feed, &mut sent);
                            feed = Some((mailbox, rx));
                            if !send(&mut socket, request_id, &reply).await
                                || !push_fresh(&mut socket, &relay, &feed, &mut sent).await
                            {
                                break;
                            }
                        }
                        Err(code) => {
                            if !send_error(&mut socket, request_id, code).await {
                                break;
                            }
                        }
                    }
                    continue;
                }
                let acked = match &frame {
                    ClientFrame::Ack { ids } => ids.clone(),
                    _ => Vec::new(),
                };
                let before = session.mailbox;
                let result = command::execute(&relay, &mut session, frame, now).await;
                if session.mailbox != before {
                    unsubscribe(&relay, &mut feed, &mut sent);
                }
                let ok = match result {
                    Ok(reply) => {
                        tracing::debug!(command = name, "ok");
                        send(&mut socket, request_id, &reply).await
                    }
                    Err(code) => send_error(&mut socket, request_id, code).await,
                };
                if !ok {
                    break;
                }
                if !acked.is_empty() {
                    for id in &acked {
                        sent.remove(id);
                    }
                    // Room in the delivery window: push what waited.
                    if !push_fresh(&mut socket, &relay, &feed, &mut sent).await {
                        break;
                    }
                }
            }
        }
    }
    unsubscribe(&relay, &mut feed, &mut sent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_peeked_from_broken_frames() {
        assert_eq!(peek_request_id(&[9, 0, 0, 1, 2, 0xEE, 1, 2]), 258);
        assert_eq!(peek_request_id(&[1, 0]), 0);
    }
}
