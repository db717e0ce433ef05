//! One file per command: check, apply to the store, build the reply.
//!
//! Every command returns `Result<ServerFrame, ErrorCode>`; an error is sent
//! as an error frame carrying the request id, and never changes anything
//! stored (store operations are all-or-nothing).

use std::sync::Arc;

use northstar_core::UnixTime;
use northstar_core::frame::{ClientFrame, ErrorCode, ServerFrame};
use northstar_core::ids::MailboxId;
use rand_core::{OsRng, RngCore};

use crate::config::Config;
use crate::notify::Notifier;
use crate::store::{Store, StoreError};

pub mod auth;
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
}

impl core::fmt::Debug for Relay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Relay")
    }
}

/// Per-connection protocol state.
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
}

impl Session {
    pub fn new() -> Self {
        Session {
            pow_challenge: random32(),
            auth_challenge: None,
            mailbox: None,
        }
    }

    /// The session's mailbox, or `not_authenticated`.
    pub fn require_mailbox(&self) -> Result<MailboxId, ErrorCode> {
        self.mailbox.ok_or(ErrorCode::NotAuthenticated)
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// 32 bytes from the operating system's RNG (challenges).
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

/// The current time (the relay is the I/O edge; the core takes `now` in).
pub fn now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
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

/// Executes one decoded request (all but `Subscribe`, which the connection
/// handles because it attaches a live feed; see [`subscribe`]).
pub async fn execute(
    relay: &Relay,
    session: &mut Session,
    frame: ClientFrame,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    match frame {
        ClientFrame::Deposit {
            pow_nonce,
            envelopes,
        } => deposit::apply(relay, session, pow_nonce, envelopes, now).await,
        ClientFrame::Register {
            keys,
            pow_required,
            signature,
        } => register::apply(relay, session, keys, pow_required, signature).await,
        ClientFrame::Challenge => Ok(auth::challenge(session)),
        ClientFrame::Auth { mailbox, signature } => {
            auth::apply(relay, session, mailbox, signature).await
        }
        ClientFrame::Subscribe => Err(ErrorCode::Internal),
        ClientFrame::Ack { ids } => subscribe::ack(relay, session, ids).await,
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
    }
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
