//! One file per command: check, apply to the store, build the reply.
//!
//! [`execute`] is the one dispatch point: the handler hands it every
//! decoded request, and it writes the reply (a command's error becomes an
//! error frame carrying the request id, and never changes anything stored:
//! store operations are all-or-nothing). Two commands do more than answer:
//! a deposit takes the deposits pipelined behind it along
//! ([`deposit::execute`]), and a subscription pushes deliveries
//! ([`subscribe::Deliveries`]).

use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_core::ids::MailboxId;
use rand_core::{OsRng, RngCore};

use crate::config::Config;
use crate::connection::{Closed, Connection};
use crate::frame::{self, Request};
use crate::limits::rate::{self, TokenBucket};
use crate::notify::Notifier;
use crate::store::{Store, StoreError};

pub mod auth;
pub mod blob;
pub mod delete;
pub mod deposit;
pub mod directory;
pub mod prekeys;
pub mod register;
pub mod state;
pub mod subscribe;

/// What every connection shares.
pub struct Relay {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub notifier: Notifier,
    /// Acknowledged envelopes, gathered from every connection and deleted together.
    pub acks: crate::acks::AckQueue,
}

impl core::fmt::Debug for Relay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Relay")
    }
}

/// Per-connection state: the protocol's and the limits'.
#[derive(Debug)]
pub struct Session {
    /// Proof-of-work challenge of this connection (sent in the hello,
    /// rotated after each accepted proof so a proof cannot be replayed).
    pub pow_challenge: [u8; 32],
    /// The pending authentication challenge; taken (single use) by the next
    /// `Auth` or `Register`, whether it succeeds or not.
    pub auth_challenge: Option<[u8; 32]>,
    /// The mailbox this connection has proven it owns.
    pub mailbox: Option<MailboxId>,
    /// The subscription, and what it pushed and awaits acknowledgement for.
    pub deliveries: subscribe::Deliveries,
    /// The message-rate limit: every frame takes a token, those read ahead
    /// with a deposit too.
    pub rate: TokenBucket,
    /// Prekey fetches cost a token of their own: a fetch hands out (and
    /// deletes) one-time prekeys, so a connection draining them is slowed
    /// far below the general rate (`prekey_fetches_per_minute`).
    pub fetches: TokenBucket,
}

impl Session {
    pub fn new(config: &Config) -> Self {
        Session {
            pow_challenge: random32(),
            auth_challenge: None,
            mailbox: None,
            deliveries: subscribe::Deliveries::default(),
            rate: TokenBucket::new(
                config.messages_per_second,
                config.message_burst,
                rate::now(),
            ),
            fetches: TokenBucket::per_minute(
                config.prekey_fetches_per_minute,
                config.prekey_fetch_burst,
                rate::now(),
            ),
        }
    }

    /// The session's mailbox, or `not_authenticated`.
    pub fn require_mailbox(&self) -> Result<MailboxId, ErrorCode> {
        self.mailbox.ok_or(ErrorCode::NotAuthenticated)
    }

    /// Ends the session: its subscription, if any, stops.
    pub fn end(&mut self, relay: &Relay) {
        self.deliveries.unsubscribe(relay);
    }
}

/// 32 bytes from the operating system's RNG (challenges).
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

/// The current time (the relay is the I/O edge; the core takes `now` in),
/// moved forward by [`test_clock_offset`] in test builds.
pub fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_add(test_clock_offset()),
    )
}

/// Environment variable that moves the clock of a **debug** build forward
/// by that many seconds, so the end-to-end tests can show what happens when
/// a retention or an expiry passes (tests/tests/retention/). A release
/// build ignores it and refuses to start with it set
/// ([`check_test_clock`]); the CLI honours the same variable the same way.
pub const TEST_CLOCK_OFFSET_ENV: &str = "NORTHSTAR_TEST_CLOCK_OFFSET_SECS";

/// Seconds the test clock is moved forward: 0 in release builds, or when
/// [`TEST_CLOCK_OFFSET_ENV`] is unset or not a number. Read once.
pub fn test_clock_offset() -> u64 {
    if !cfg!(debug_assertions) {
        return 0;
    }
    static OFFSET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(TEST_CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// Refuses [`TEST_CLOCK_OFFSET_ENV`] in a release build: an operator who
/// sets it by mistake learns at once that it does nothing there.
pub fn check_test_clock() -> Result<(), &'static str> {
    if !cfg!(debug_assertions) && std::env::var_os(TEST_CLOCK_OFFSET_ENV).is_some() {
        return Err("NORTHSTAR_TEST_CLOCK_OFFSET_SECS is for test builds only; unset it");
    }
    Ok(())
}

/// `now + hours`, rounded UP to the hour: the only time the relay stores.
pub fn expiry_after_hours(now: UnixTime, hours: u32) -> UnixTime {
    // Kept an hour below u64::MAX so rounding up cannot overflow.
    let t = now.0.saturating_add(u64::from(hours) * 3600);
    UnixTime(t.min(u64::MAX - 3600)).ceil_hour()
}

/// Maps a store failure to the code the client sees. Backend failures are
/// logged by kind only.
pub fn store_code(e: StoreError) -> ErrorCode {
    match e {
        StoreError::UnknownMailbox => ErrorCode::UnknownMailbox,
        StoreError::QuotaExceeded => ErrorCode::QuotaExceeded,
        StoreError::BlobMismatch => ErrorCode::BlobMismatch,
        StoreError::TooManyBlobs => ErrorCode::TooManyBlobs,
        StoreError::DirectoryRollback => ErrorCode::DirectoryRollback,
        StoreError::Closed => ErrorCode::ServerBusy,
        StoreError::Full => {
            tracing::warn!(
                "storage full: a write was refused (raise max_database_bytes or free disk)"
            );
            ErrorCode::ServerBusy
        }
        other => {
            tracing::error!(error = %other, "store failure");
            ErrorCode::Internal
        }
    }
}

/// Executes one decoded request and writes its reply (and, for a
/// deposit, those of the deposits pipelined behind it; for a subscription
/// or an acknowledgement, the deliveries that may then go out). `Err` only
/// when the connection is over.
pub async fn execute(
    relay: &Relay,
    session: &mut Session,
    dst: &mut Connection,
    request: Request,
    now: UnixTime,
) -> Result<(), Closed> {
    let Request {
        id,
        frame,
        wire_len,
    } = request;
    let name = frame.name();
    let before = session.mailbox;
    let reply = match frame {
        ClientFrame::Deposit {
            pow_nonce,
            envelopes,
        } => {
            let first = deposit::Pipelined {
                request_id: id,
                pow_nonce,
                envelopes,
            };
            return deposit::execute(relay, session, dst, first, wire_len, now).await;
        }
        ClientFrame::Subscribe => return subscribe::subscribe(relay, session, dst, id, now).await,
        ClientFrame::Ack { ids } => return subscribe::ack(relay, session, dst, id, ids).await,
        ClientFrame::Register {
            keys,
            pow_required,
            signature,
        } => register::apply(relay, session, keys, pow_required, signature).await,
        ClientFrame::Challenge => Ok(auth::challenge(session)),
        ClientFrame::Auth { mailbox, signature } => {
            auth::apply(relay, session, mailbox, signature).await
        }
        ClientFrame::PublishDirectory { directory } => directory::publish(relay, directory).await,
        ClientFrame::FetchDirectory { org_key } => directory::fetch(relay, org_key).await,
        ClientFrame::UploadPrekeys {
            signed_bundle,
            one_time,
            one_time_pq,
            replace,
        } => {
            prekeys::upload(
                relay,
                session,
                signed_bundle,
                one_time,
                one_time_pq,
                replace,
            )
            .await
        }
        ClientFrame::FetchPrekeys { mailbox } => prekeys::fetch(relay, mailbox).await,
        ClientFrame::PutState { ttl_hours, blob } => {
            state::put(relay, session, ttl_hours, blob, now).await
        }
        ClientFrame::GetState => state::get(relay, session, now).await,
        ClientFrame::DeleteState => state::delete(relay, session).await,
        ClientFrame::DeleteMailbox => delete::apply(relay, session).await,
        ClientFrame::PutChunk {
            mailbox,
            blob,
            chunk_count,
            index,
            chunk,
        } => blob::put(relay, mailbox, blob, chunk_count, index, chunk, now).await,
        ClientFrame::BlobStatus { blob } => blob::status(relay, blob, now).await,
        ClientFrame::GetChunk { blob, index } => blob::get(relay, blob, index, now).await,
        ClientFrame::DeleteBlob { blob, token } => blob::delete(relay, blob, token).await,
    };
    // A subscription belongs to the mailbox it was made on.
    if session.mailbox != before {
        session.deliveries.unsubscribe(relay);
    }
    if reply.is_ok() {
        tracing::debug!(command = name, "ok");
    }
    write_reply(dst, id, reply).await
}

/// Writes a command's reply, or its error frame.
pub async fn write_reply(
    dst: &mut Connection,
    request_id: u32,
    reply: Result<ServerFrame, ErrorCode>,
) -> Result<(), Closed> {
    dst.write_frame(frame::encode_reply(request_id, reply).ok_or(Closed)?)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_rounded_up_to_the_hour() {
        assert_eq!(expiry_after_hours(UnixTime(3601), 1), UnixTime(3 * 3600));
        assert_eq!(expiry_after_hours(UnixTime(3600), 1), UnixTime(2 * 3600));
        assert_eq!(expiry_after_hours(UnixTime(u64::MAX - 5), 1).0 % 3600, 0);
    }
}
