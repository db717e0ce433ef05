//! One WebSocket connection: binary frames in, replies and deliveries out.
//!
//! The loop handles one request at a time, to completion (so a deposit's
//! reply is sent only after its commit, and shutdown never cuts a command
//! in half). The one exception is deposits a client pipelined: those already
//! received (at most `pipeline_deposits`, and about `max_frame_bytes` of
//! frames) are checked one after another and committed together, so one
//! connection's deposits share a group commit instead of waiting for one
//! commit each; each still gets its reply only after its commit. It also
//! pushes deliveries when the subscribed mailbox is woken.
//! Bad input gets a typed error frame and the connection lives on; only the
//! abuse limits (a hard frame-size breach, a sustained rate-limit breach)
//! and the timeouts (`idle_timeout_secs`: nothing heard, pings every third of
//! it; `send_timeout_secs`: a frame the peer does not take) close it. Nothing about the peer or the payload is logged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{FutureExt, SinkExt};
use northstar_core::frame::{
    ClientFrame, ErrorCode, FRAME_HEADER_LEN, PUSH_REQUEST_ID, ServerFrame,
};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::sealed::Envelope;
use tokio::sync::watch;

use crate::command::{self, Relay, Session, deposit, random32, subscribe};
use crate::limits::rate::TokenBucket;
use crate::notify::Inbox;

/// WebSocket close code for policy violations (RFC 6455 §7.4.1).
const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for "going away" (shutdown).
const CLOSE_GOING_AWAY: u16 = 1001;

/// A subscription: the mailbox, its live inbox, and whether everything
/// stored has been pushed (then the inbox's frames are all that is new;
/// otherwise the store is read when the window has room).
struct Subscription {
    mailbox: MailboxId,
    inbox: Arc<Inbox>,
    caught_up: bool,
}

/// This connection's deliveries: its subscription, if any, and the
/// envelopes pushed and not yet acknowledged (at most the window).
#[derive(Default)]
struct Deliveries {
    sub: Option<Subscription>,
    sent: HashSet<EnvelopeId>,
}

/// A message received ahead of its turn, handled before the next read.
type Stashed = Option<Option<Result<Message, axum::Error>>>;

/// A deposit frame's request id, proof-of-work nonce and envelopes.
type PipelinedDeposit = (u32, Option<u64>, Vec<Envelope>);

/// The socket and the time outgoing frames may take (`send_timeout_secs`):
/// each write waits for the socket, so a peer that stops reading holds at
/// most one write's frames (plus the kernel's buffer) until the timeout cuts
/// it off.
struct Peer {
    ws: WebSocket,
    send_timeout: Duration,
}

impl Peer {
    async fn send_message(&mut self, m: Message) -> bool {
        self.send_messages(vec![m]).await
    }

    /// Queues the messages and writes them with one flush, within the send timeout.
    async fn send_messages(&mut self, messages: Vec<Message>) -> bool {
        let ws = &mut self.ws;
        let write = async move {
            for m in messages {
                ws.feed(m).await?;
            }
            ws.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Ok(r) => r.is_ok(),
            Err(_) => {
                tracing::info!("closing a connection that does not read");
                false
            }
        }
    }
}

fn encode(request_id: u32, frame: &ServerFrame) -> Option<Message> {
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
                Err(_) => return None,
            }
        }
    };
    Some(Message::Binary(bytes.into()))
}

async fn send(socket: &mut Peer, request_id: u32, frame: &ServerFrame) -> bool {
    match encode(request_id, frame) {
        Some(m) => socket.send_message(m).await,
        None => false,
    }
}

/// Writes frames with one flush.
async fn send_all(socket: &mut Peer, frames: &[(u32, ServerFrame)]) -> bool {
    let mut messages = Vec::with_capacity(frames.len());
    for (request_id, frame) in frames {
        let Some(m) = encode(*request_id, frame) else {
            return false;
        };
        messages.push(m);
    }
    socket.send_messages(messages).await
}

/// The next message: the one read ahead, if any, else the socket's next.
async fn next_message(
    socket: &mut Peer,
    stash: &mut Stashed,
) -> Option<Result<Message, axum::Error>> {
    match stash.take() {
        Some(m) => m,
        None => socket.ws.recv().await,
    }
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

/// The request id of a frame too broken to decode, if its header is there.
fn peek_request_id(bytes: &[u8]) -> u32 {
    match bytes.get(1..FRAME_HEADER_LEN - 1) {
        Some([a, b, c, d]) => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

impl Deliveries {
    /// Resolves when the subscription's inbox is woken; never without one.
    async fn woken(&self) {
        match &self.sub {
            Some(sub) => sub.inbox.woken().await,
            None => std::future::pending().await,
        }
    }

    /// Starts a subscription in place of any earlier one.
    fn subscribe(&mut self, relay: &Relay, mailbox: MailboxId, inbox: Arc<Inbox>) {
        self.unsubscribe(relay);
        self.sub = Some(Subscription {
            mailbox,
            inbox,
            caught_up: false,
        });
    }

    fn unsubscribe(&mut self, relay: &Relay) {
        if let Some(sub) = self.sub.take() {
            relay.notifier.release(&sub.mailbox, &sub.inbox);
        }
        self.sent.clear();
    }

    /// Pushes the stored envelopes not yet sent on this connection, if the
    /// window has room, and notes whether that caught it up with the store.
    async fn push_stored(&mut self, socket: &mut Peer, relay: &Relay) -> bool {
        let Some(sub) = &mut self.sub else {
            return true;
        };
        if self.sent.len() >= subscribe::DELIVERY_WINDOW {
            // Nothing can go out before an acknowledgement, which reads again.
            sub.caught_up = false;
            return true;
        }
        match subscribe::fresh(relay, sub.mailbox, &mut self.sent, command::now()).await {
            Ok((frames, caught_up)) => {
                sub.caught_up = caught_up;
                let frames: Vec<(u32, ServerFrame)> =
                    frames.into_iter().map(|f| (PUSH_REQUEST_ID, f)).collect();
                frames.is_empty() || send_all(socket, &frames).await
            }
            // A transient store failure: the next wake-up or ack retries.
            Err(_) => {
                sub.caught_up = false;
                true
            }
        }
    }

    /// Pushes what the live feed handed over; reads the store instead when
    /// the feed says so or the connection is behind.
    async fn push_live(&mut self, socket: &mut Peer, relay: &Relay) -> bool {
        let Some(sub) = &mut self.sub else {
            return true;
        };
        let (pushes, read_store) = sub.inbox.take();
        if read_store || !sub.caught_up {
            return self.push_stored(socket, relay).await;
        }
        let mut messages = Vec::with_capacity(pushes.len());
        for push in pushes {
            if self.sent.len() >= subscribe::DELIVERY_WINDOW {
                // The rest stays stored; an acknowledgement reads it.
                sub.caught_up = false;
                break;
            }
            if self.sent.insert(push.id) {
                messages.push(Message::Binary(push.frame));
            }
        }
        messages.is_empty() || socket.send_messages(messages).await
    }

    /// Forgets acknowledged envelopes; with room in the window, pushes what
    /// waited in the store (a caught-up connection has nothing waiting there).
    async fn acked(&mut self, socket: &mut Peer, relay: &Relay, ids: &[EnvelopeId]) -> bool {
        for id in ids {
            self.sent.remove(id);
        }
        if self.sub.as_ref().is_some_and(|sub| !sub.caught_up) {
            return self.push_stored(socket, relay).await;
        }
        true
    }
}

/// Checks pipelined deposits in order and commits them together. A deposit
/// whose proof of work is accepted is committed (with those staged before
/// it) before the next is checked, so the next is checked against the
/// rotated challenge, exactly as if they had come one at a time.
async fn deposit_group(
    relay: &Relay,
    session: &mut Session,
    group: Vec<PipelinedDeposit>,
    now: northstar_core::UnixTime,
) -> Vec<(u32, Result<ServerFrame, ErrorCode>)> {
    let mut replies: Vec<(u32, Result<ServerFrame, ErrorCode>)> = Vec::with_capacity(group.len());
    let mut staged: Vec<(usize, deposit::Checked)> = Vec::new();
    for (request_id, pow_nonce, envelopes) in group {
        let at = replies.len();
        match deposit::check(relay, session, pow_nonce, envelopes, now).await {
            Ok(checked) => {
                replies.push((request_id, Err(ErrorCode::Internal)));
                let pow_used = checked.pow_used;
                staged.push((at, checked));
                if pow_used {
                    commit_staged(relay, session, &mut staged, &mut replies).await;
                }
            }
            Err(code) => replies.push((request_id, Err(code))),
        }
    }
    commit_staged(relay, session, &mut staged, &mut replies).await;
    replies
}

async fn commit_one(
    relay: &Relay,
    at: usize,
    checked: deposit::Checked,
) -> (usize, bool, Result<u16, ErrorCode>) {
    let pow_used = checked.pow_used;
    (at, pow_used, deposit::commit(relay, checked).await)
}

async fn commit_staged(
    relay: &Relay,
    session: &mut Session,
    staged: &mut Vec<(usize, deposit::Checked)>,
    replies: &mut [(u32, Result<ServerFrame, ErrorCode>)],
) {
    let mut commits = Vec::with_capacity(staged.len());
    for (at, checked) in std::mem::take(staged) {
        commits.push(commit_one(relay, at, checked));
    }
    for (at, pow_used, result) in futures_util::future::join_all(commits).await {
        if pow_used && result.is_ok() {
            session.pow_challenge = random32();
        }
        if let Some(slot) = replies.get_mut(at) {
            slot.1 = result.map(|accepted| deposit::deposited(session, accepted));
        }
    }
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
    // Prekey fetches cost a token of their own: a fetch hands out (and
    // deletes) one-time prekeys, so a connection draining them is slowed
    // far below the general rate.
    let mut fetches = TokenBucket::per_minute(
        cfg.prekey_fetches_per_minute,
        cfg.prekey_fetch_burst,
        Instant::now(),
    );
    let mut strikes = 0u32;
    let mut deliveries = Deliveries::default();
    let mut stash: Stashed = None;

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
            () = deliveries.woken() => {
                if !deliveries.push_live(&mut socket, &relay).await {
                    break;
                }
            }
            msg = next_message(&mut socket, &mut stash) => {
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
                let strikes_before = strikes;
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
                if matches!(frame, ClientFrame::FetchPrekeys { .. })
                    && !fetches.try_take(Instant::now())
                {
                    // Counts as a rate-limited frame: a client that keeps
                    // fetching past its limit is closed like any other.
                    strikes = strikes_before + 1;
                    let ok = send_error(&mut socket, request_id, ErrorCode::RateLimited).await;
                    if !ok || strikes >= cfg.rate_limit_strikes {
                        tracing::info!("closing a connection over its prekey fetch limit");
                        close(&mut socket, CLOSE_POLICY, "rate limit").await;
                        break;
                    }
                    continue;
                }
                let frame_len = bytes.len();
                drop(bytes);
                let name = frame.name();
                let now = command::now();
                if let ClientFrame::Deposit { pow_nonce, envelopes } = frame {
                    let mut group = vec![(request_id, pow_nonce, envelopes)];
                    let mut held = frame_len;
                    // Deposits the client already sent join this one.
                    while group.len() < cfg.pipeline_deposits && held < cfg.max_frame_bytes && stash.is_none() {
                        let Some(next) = socket.ws.recv().now_or_never() else {
                            break;
                        };
                        match next {
                            Some(Ok(Message::Binary(b))) if b.len() <= cfg.max_frame_bytes => {
                                match ClientFrame::decode(&b) {
                                    Ok((rid, ClientFrame::Deposit { pow_nonce, envelopes }))
                                        if bucket.try_take(Instant::now()) =>
                                    {
                                        held += b.len();
                                        group.push((rid, pow_nonce, envelopes));
                                    }
                                    // Anything else waits its turn in the main loop.
                                    _ => stash = Some(Some(Ok(Message::Binary(b)))),
                                }
                            }
                            other => stash = Some(other),
                        }
                    }
                    let replies = deposit_group(&relay, &mut session, group, now).await;
                    let frames: Vec<(u32, ServerFrame)> = replies
                        .into_iter()
                        .map(|(rid, r)| match r {
                            Ok(f) => (rid, f),
                            Err(code) => (rid, ServerFrame::Error { code }),
                        })
                        .collect();
                    if !send_all(&mut socket, &frames).await {
                        break;
                    }
                    continue;
                }
                if matches!(frame, ClientFrame::Subscribe) {
                    match subscribe::subscribe(&relay, &session, now).await {
                        Ok((mailbox, inbox, reply)) => {
                            deliveries.subscribe(&relay, mailbox, inbox);
                            if !send(&mut socket, request_id, &reply).await
                                || !deliveries.push_stored(&mut socket, &relay).await
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
                    deliveries.unsubscribe(&relay);
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
                if !acked.is_empty() && !deliveries.acked(&mut socket, &relay, &acked).await {
                    break;
                }
            }
        }
    }
    deliveries.unsubscribe(&relay);
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
