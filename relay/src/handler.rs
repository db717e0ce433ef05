//! The per-connection loop: one [`Handler`] per WebSocket (the shape of
//! mini-redis's `server::Handler`). It reads a message, decodes it,
//! hands the request to [`command::execute`] (which writes the reply), and
//! meanwhile pings the peer, pushes live deliveries and watches for
//! shutdown.
//!
//! One request is handled at a time, to completion: a deposit's reply goes
//! out only after its commit, and shutdown never cuts a command in half
//! (deposits a client pipelined are the one batch; see
//! [`command::deposit`]). Bad input gets a typed error frame and the
//! connection lives on; only the abuse limits (a hard frame-size breach, a
//! sustained rate-limit breach) and the timeouts (`idle_timeout_secs`:
//! nothing heard, pings every third of it; `send_timeout_secs`: a frame the
//! peer does not take) close it. Nothing about the peer or the payload is
//! logged.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use northstar_core::frame::{ClientFrame, ErrorCode, PUSH_REQUEST_ID, ServerFrame};
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use crate::command::subscribe::Ready;
use crate::command::{self, Relay, Session};
use crate::connection::{CLOSE_GOING_AWAY, CLOSE_POLICY, Closed, Connection, Incoming};
use crate::frame::{self, Request};
use crate::limits::rate;

/// One connection's loop and everything it holds.
#[derive(Debug)]
pub struct Handler {
    /// What every connection shares: configuration, store, notifier.
    relay: Arc<Relay>,
    /// The WebSocket, as bytes.
    connection: Connection,
    /// Challenges, mailbox, deliveries and rate limit of this connection.
    session: Session,
    /// Flips to `true` when the relay shuts down.
    shutdown: watch::Receiver<bool>,
    /// Nothing heard for this long closes the connection.
    idle: Duration,
    /// When the peer last sent anything (a pong too).
    last_heard: Instant,
    /// Consecutive rate-limited frames; at `rate_limit_strikes` the
    /// connection closes.
    strikes: u32,
}

impl Handler {
    pub fn new(relay: Arc<Relay>, ws: WebSocket, shutdown: watch::Receiver<bool>) -> Self {
        let cfg = &relay.config;
        let connection = Connection::new(ws, Duration::from_secs(cfg.send_timeout_secs));
        let idle = Duration::from_secs(cfg.idle_timeout_secs);
        let session = Session::new(cfg);
        Handler {
            relay,
            connection,
            session,
            shutdown,
            idle,
            last_heard: Instant::now(),
            strikes: 0,
        }
    }

    /// Serves the connection until it closes, abuses a limit, or the relay
    /// shuts down; then ends its subscription.
    pub async fn run(mut self) {
        // Idle timeout: a ping every third of it; anything received (the
        // pong too) counts as life.
        let every = self.idle / 3;
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        if self.hello().await.is_ok() {
            while self.step(&mut ping).await.is_ok() {}
        }
        self.session.end(&self.relay);
    }

    async fn hello(&mut self) -> Result<(), Closed> {
        let cfg = &self.relay.config;
        let hello = ServerFrame::Hello {
            pow_challenge: self.session.pow_challenge,
            pow_difficulty: cfg.pow_difficulty,
            max_frame_len: u32::try_from(cfg.max_frame_bytes).unwrap_or(u32::MAX),
            max_batch: u16::try_from(cfg.max_batch).unwrap_or(u16::MAX),
        };
        let bytes = frame::encode(PUSH_REQUEST_ID, &hello).ok_or(Closed)?;
        self.connection.write_frame(bytes).await
    }

    /// Waits for the next event and handles it; `Err` ends the connection.
    async fn step(&mut self, ping: &mut Interval) -> Result<(), Closed> {
        tokio::select! {
            biased;
            _ = self.shutdown.changed() => {
                self.connection.close(CLOSE_GOING_AWAY, "relay shutting down").await;
                Err(Closed)
            }
            _ = ping.tick() => {
                if self.last_heard.elapsed() >= self.idle {
                    tracing::info!("closing an idle connection");
                    self.connection.close(CLOSE_POLICY, "idle").await;
                    return Err(Closed);
                }
                self.connection.ping().await
            }
            ready = self.session.deliveries.ready() => match ready {
                Ready::Woken => {
                    self.session.deliveries.push_live(&self.relay, &mut self.connection).await
                }
                Ready::Acked(request_id, reply) => {
                    command::write_reply(&mut self.connection, request_id, reply).await
                }
            },
            incoming = self.connection.read() => self.received(incoming).await,
        }
    }

    /// Handles one message: checks it against the limits, decodes it and
    /// executes it.
    async fn received(&mut self, incoming: Incoming) -> Result<(), Closed> {
        let silent_for = self.last_heard.elapsed();
        self.last_heard = Instant::now();
        let bytes = match incoming {
            Incoming::Frame(b) => b,
            Incoming::Text => return self.error(0, ErrorCode::Malformed).await,
            Incoming::Control => return Ok(()), // ping/pong: answered by the library
            Incoming::Closed => return Err(Closed),
            Incoming::Failed if silent_for >= self.idle => {
                // The socket's own idle timeout (limits::socket): the peer is gone.
                tracing::info!("closing an idle connection");
                return Err(Closed);
            }
            Incoming::Failed => {
                // Over the hard size cap (or a broken socket): abuse, close.
                let _ = self.error(0, ErrorCode::FrameTooLarge).await;
                self.connection.close(CLOSE_POLICY, "frame too large").await;
                return Err(Closed);
            }
        };
        let request_id = frame::peek_request_id(&bytes);
        if !self.session.rate.try_take(rate::now()) {
            self.strikes += 1;
            let sent = self.error(request_id, ErrorCode::RateLimited).await;
            if sent.is_err() || self.strikes >= self.relay.config.rate_limit_strikes {
                tracing::info!("closing a connection over its rate limit");
                self.connection.close(CLOSE_POLICY, "rate limit").await;
                return Err(Closed);
            }
            return Ok(());
        }
        let strikes_before = self.strikes;
        self.strikes = 0;
        if bytes.len() > self.relay.config.max_frame_bytes {
            return self.error(request_id, ErrorCode::FrameTooLarge).await;
        }
        let request = match Request::decode(&bytes) {
            Ok(r) => r,
            Err(e) => return self.error(e.request_id, e.code()).await,
        };
        if matches!(request.frame, ClientFrame::FetchPrekeys { .. })
            && !self.session.fetches.try_take(rate::now())
        {
            // Counts as a rate-limited frame: a client that keeps fetching
            // past its limit is closed like any other.
            self.strikes = strikes_before + 1;
            let sent = self.error(request.id, ErrorCode::RateLimited).await;
            if sent.is_err() || self.strikes >= self.relay.config.rate_limit_strikes {
                tracing::info!("closing a connection over its prekey fetch limit");
                self.connection.close(CLOSE_POLICY, "rate limit").await;
                return Err(Closed);
            }
            return Ok(());
        }
        // The decoded request holds its own copy.
        drop(bytes);
        // Replies go out in request order: an `Ack` only queues its own.
        if !matches!(request.frame, ClientFrame::Ack { .. }) {
            self.session
                .deliveries
                .flush_acks(&mut self.connection)
                .await?;
        }
        command::execute(
            &self.relay,
            &mut self.session,
            &mut self.connection,
            request,
            command::now(),
        )
        .await
    }

    async fn error(&mut self, request_id: u32, code: ErrorCode) -> Result<(), Closed> {
        self.session
            .deliveries
            .flush_acks(&mut self.connection)
            .await?;
        command::write_reply(&mut self.connection, request_id, Err(code)).await
    }
}
