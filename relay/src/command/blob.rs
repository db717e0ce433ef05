//! `PutChunk`, `BlobStatus`, `GetChunk`: attachment blobs
//! (docs/PROTOCOL.md §4.12).
//!
//! No session is needed for any of them, so the relay cannot tie an upload
//! or a download to the uploader's or reader's own mailbox: a chunk names
//! the mailbox it is charged to (the seeker's mailbox of the conversation,
//! whoever uploads), and a download needs only the blob id, a 32-byte
//! random capability that travels inside the ratchet.
//!
//! - `PutChunk`: the mailbox must be registered and must not require proof
//!   of work (blobs belong to seekers' mailboxes; a counselor intake
//!   mailbox, which requires proof, is not a place to park data: `pow_required`).
//!   The first chunk creates the blob, charged whole (`chunk_count` ×
//!   65 552 bytes) to the mailbox's byte quota shared with envelopes, with
//!   the envelope retention as expiry (rounded up to the hour); later chunks
//!   must name the same mailbox and count. A chunk already held is not
//!   stored twice. The reply is sent after the commit.
//! - `BlobStatus`: which chunks are held (a client resumes from there).
//! - `GetChunk`: one sealed chunk.
//! - `DeleteBlob`: deletes a blob whose id the token derives
//!   (`SHA-256("northstar/v1/blob-id" || token)`, compared in constant
//!   time); a wrong token is `blob_delete_refused` and changes nothing; a
//!   blob already gone is `Ok` (every device of a team may send it).
//!
//! The relay logs none of the ids: only the command name.

use northstar_core::UnixTime;
use northstar_core::attachment::{BlobDeleteToken, BlobId};
use northstar_core::frame::{ErrorCode, ServerFrame};
use northstar_core::ids::MailboxId;

use super::{Relay, expiry_after_hours, store_code};
use crate::store::{BlobQuotas, NewChunk};

pub async fn put(
    relay: &Relay,
    mailbox: MailboxId,
    blob: BlobId,
    chunk_count: u16,
    index: u16,
    chunk: Vec<u8>,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    let cfg = &relay.config;
    if u64::from(chunk_count) * northstar_core::attachment::CHUNK_DATA_LEN as u64
        > cfg.max_attachment_bytes
    {
        return Err(ErrorCode::AttachmentTooLarge);
    }
    let record = relay
        .store
        .mailbox(mailbox)
        .await
        .map_err(store_code)?
        .ok_or(ErrorCode::UnknownMailbox)?;
    if record.pow_required {
        return Err(ErrorCode::PowRequired);
    }
    let held = relay
        .store
        .put_chunk(
            NewChunk {
                mailbox,
                blob,
                chunk_count,
                index,
                expires_at: expiry_after_hours(now, cfg.retention_hours),
                data: chunk,
            },
            BlobQuotas {
                max_bytes: cfg.mailbox_max_bytes,
                max_blobs: cfg.mailbox_max_blobs,
            },
        )
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::ChunkStored { index, held })
}

pub async fn status(relay: &Relay, blob: BlobId, now: UnixTime) -> Result<ServerFrame, ErrorCode> {
    relay
        .store
        .blob_chunks(blob, now)
        .await
        .map_err(store_code)?
        .map(|present| ServerFrame::BlobChunks { present })
        .ok_or(ErrorCode::NotFound)
}

pub async fn get(
    relay: &Relay,
    blob: BlobId,
    index: u16,
    now: UnixTime,
) -> Result<ServerFrame, ErrorCode> {
    relay
        .store
        .chunk(blob, index, now)
        .await
        .map_err(store_code)?
        .map(|chunk| ServerFrame::Chunk { index, chunk })
        .ok_or(ErrorCode::NotFound)
}

pub async fn delete(
    relay: &Relay,
    blob: BlobId,
    token: BlobDeleteToken,
) -> Result<ServerFrame, ErrorCode> {
    if !token.opens(&blob) {
        return Err(ErrorCode::BlobDeleteRefused);
    }
    relay.store.delete_blob(blob).await.map_err(store_code)?;
    Ok(ServerFrame::Ok)
}
