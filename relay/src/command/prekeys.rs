//! `UploadPrekeys` (session needed) and `FetchPrekeys` (anyone).
//!
//! The relay treats prekeys as opaque: a signed bundle (≤ 4096 bytes),
//! one-time X25519 prekeys of 36 bytes and one-time ML-KEM prekeys of 1252
//! bytes (their signatures are checked by the clients that use them). An
//! upload may first drop every one-time prekey the mailbox held (`replace`:
//! a device replaces its whole set, so the relay never keeps a public key
//! whose secret the device has deleted). A fetch hands out the signed
//! bundle with the lowest-id one-time prekey of each kind and deletes them
//! in the same transaction; once they run out the signed bundle comes
//! alone. Fetches are rate-limited per connection (`connection.rs`).

use northstar_core::frame::{ErrorCode, OneTimePqPrekey, OneTimePrekey, ServerFrame};
use northstar_core::ids::MailboxId;

use super::{Relay, Session, store_code};
use crate::store::{PrekeyCaps, PrekeyUpload};

pub async fn upload(
    relay: &Relay,
    session: &Session,
    signed_bundle: Vec<u8>,
    one_time: Vec<OneTimePrekey>,
    one_time_pq: Vec<OneTimePqPrekey>,
    replace: bool,
) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    let caps = PrekeyCaps {
        max_one_time: relay.config.max_one_time_prekeys,
        max_one_time_pq: relay.config.max_one_time_pq_prekeys,
    };
    if one_time.len() as u64 > caps.max_one_time || one_time_pq.len() as u64 > caps.max_one_time_pq
    {
        return Err(ErrorCode::QuotaExceeded);
    }
    let n = relay
        .store
        .put_prekeys(
            mailbox,
            PrekeyUpload {
                signed_bundle,
                one_time,
                one_time_pq,
                replace,
            },
            caps,
        )
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::PrekeysStored {
        one_time_count: u32::try_from(n.one_time).unwrap_or(u32::MAX),
        one_time_pq_count: u32::try_from(n.one_time_pq).unwrap_or(u32::MAX),
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
        one_time_pq: b.one_time_pq,
    })
}
