//! `UploadPrekeys` (session needed) and `FetchPrekeys` (anyone).
//!
//! The relay treats bundles as opaque: a signed bundle (≤ 4096 bytes) and
//! one-time prekeys of 36 bytes each. A fetch hands out the signed bundle
//! with the lowest-id one-time prekey and deletes that prekey in the same
//! transaction; once they run out the signed bundle comes alone.

use northstar_core::frame::{ErrorCode, OneTimePrekey, ServerFrame};
use northstar_core::ids::MailboxId;

use super::{Relay, Session, store_code};

pub async fn upload(
    relay: &Relay,
    session: &Session,
    signed_bundle: Vec<u8>,
    one_time: Vec<OneTimePrekey>,
) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    if one_time.len() as u64 > relay.config.max_one_time_prekeys {
        return Err(ErrorCode::QuotaExceeded);
    }
    let n = relay
        .store
        .put_prekeys(
            mailbox,
            signed_bundle,
            one_time,
            relay.config.max_one_time_prekeys,
        )
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::PrekeysStored {
        one_time_count: u32::try_from(n).unwrap_or(u32::MAX),
    })
}

pub async fn fetch(relay: &Relay, mailbox: MailboxId) -> Result<ServerFrame, ErrorCode> {
    let b = relay
        .store
        .take_prekeys(mailbox)
        .await
        .map_err(store_code)?
        .ok_or(ErrorCode::NotFound)?;
    Ok(ServerFrame::Prekeys {
        signed_bundle: b.signed_bundle,
        one_time: b.one_time,
    })
}
