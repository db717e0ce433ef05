//! `PutState`, `GetState`, `DeleteState`: the seeker's encrypted state blob.
//! The relay sees only ciphertext and an expiry on the hour
//! (`now + min(ttl_hours, state_max_hours)`, rounded up), which the client
//! reads back to show the seeker.

use northstar_core::UnixTime;
use northstar_core::frame::{ErrorCode, ServerFrame};

use super::{Relay, Session, expiry_after_hours, store_code};
use crate::store::StateBlob;

pub async fn put(
    relay: &Relay,
    session: &Session,
    ttl_hours: u32,
    blob: Vec<u8>,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    if blob.len() > relay.config.max_state_bytes {
        return Err(ErrorCode::StateTooLarge);
    }
    let hours = ttl_hours.clamp(1, relay.config.state_max_hours);
    let expires_at = expiry_after_hours(now, hours);
    relay
        .store
        .put_state(mailbox, StateBlob { expires_at, blob })
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::StateStored { expires_at })
}

pub async fn get(
    relay: &Relay,
    session: &Session,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    let s = relay
        .store
        .state(mailbox, now)
        .await
        .map_err(store_code)?
        .ok_or(ErrorCode::NotFound)?;
    Ok(ServerFrame::State {
        expires_at: s.expires_at,
        blob: s.blob,
    })
}

pub async fn delete(relay: &Relay, session: &Session) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    relay
        .store
        .delete_state(mailbox)
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::Ok)
}
