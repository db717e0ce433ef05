//! Attachments: uploading a file's blob chunk by chunk, resuming after a
//! lost connection, and downloading one (docs/PROTOCOL.md §4.12, §5.6,
//! §7.7).
//!
//! The shell holds the file; the driver asks for it a slice at a time
//! (`Output::ReadFile`, one chunk of 64 KiB), seals the slice and sends it,
//! so neither side needs the whole file in memory twice. Images (found by
//! their first bytes, whatever type the shell claimed) are the exception:
//! their metadata is removed first (`metadata::strip_jpeg` / `strip_png`), which needs the
//! whole image (at most 10 MiB) once; the cleaned copy is then sealed from
//! memory.
//!
//! Uploads go over an anonymous connection, one chunk per request, each
//! acknowledged after the relay's commit. A lost connection is reopened
//! (backoff, then the next relay) up to [`UPLOAD_ATTEMPTS`] times; the
//! upload resumes from what `BlobStatus` says the relay holds (the chunk in
//! flight is kept sealed: sealing is deterministic, so sending it again is
//! harmless). `rate_limited` waits a second and sends the same chunk again.
//! The reference goes into the ratchet only after every chunk is stored.

use zeroize::Zeroizing;

use super::link::{Io, backoff_secs, expect_code};
use super::{CommandId, ConnId, ConnKind, DriverError, Event, Output};
use crate::UnixTime;
use crate::attachment::{
    AttachmentOpener, AttachmentRef, AttachmentSealer, CHUNK_DATA_LEN, FileInfo,
    MAX_ATTACHMENT_LEN, MediaType, chunk_data_len,
};
use crate::frame::{ClientFrame, ErrorCode, ServerFrame};
use crate::ids::MailboxId;
use crate::metadata;

/// Connections an upload or a download may open before giving up (the
/// first and seven more after losing one, with backoff: about two minutes
/// of a relay restarting or a phone between networks).
pub const UPLOAD_ATTEMPTS: u32 = 8;

/// Seconds to wait after `rate_limited` before sending the chunk again
/// (the relay's bucket refills at `messages_per_second`).
const RATE_LIMIT_WAIT_SECS: u64 = 1;

/// Checks a file's size before anything is read or sent.
pub fn check_size(size: u64) -> Result<(), DriverError> {
    if size > MAX_ATTACHMENT_LEN as u64 {
        return Err(DriverError::AttachmentTooLarge {
            size,
            max: MAX_ATTACHMENT_LEN as u64,
        });
    }
    Ok(())
}

/// Where the file's bytes come from once it is known.
enum Source {
    /// The shell's file, read slice by slice; the first slice already read.
    Shell { first: Option<Zeroizing<Vec<u8>>> },
    /// A cleaned image, in memory.
    Memory(Zeroizing<Vec<u8>>),
}

impl Source {
    async fn chunk(
        &mut self,
        io: &Io,
        size: u64,
        index: u16,
    ) -> Result<Zeroizing<Vec<u8>>, DriverError> {
        let start = u64::from(index) * CHUNK_DATA_LEN as u64;
        let len = chunk_data_len(size, index);
        match self {
            Source::Shell { first } => match first.take() {
                Some(f) if index == 0 => Ok(f),
                _ => io.read_file(start, len).await,
            },
            Source::Memory(bytes) => {
                let s = start as usize;
                Ok(Zeroizing::new(bytes[s..s + len].to_vec()))
            }
        }
    }
}

/// Reads the start of the file, and cleans it if it is an image: returns
/// the file's final size, its info and where to read it from.
async fn prepare(
    io: &Io,
    info: FileInfo,
    size: u64,
) -> Result<(u64, FileInfo, Source), DriverError> {
    check_size(size)?;
    let first_len = chunk_data_len(size, 0);
    let first = io.read_file(0, first_len).await?;
    let kind = match metadata::sniff(&first) {
        metadata::Kind::Jpeg => Some("image/jpeg"),
        metadata::Kind::Png => Some("image/png"),
        metadata::Kind::UncleanableImage => return Err(DriverError::ImageUnsupported),
        metadata::Kind::Other => None,
    };
    let Some(kind) = kind else {
        return Ok((size, info, Source::Shell { first: Some(first) }));
    };
    let mut whole = Zeroizing::new(Vec::with_capacity(size as usize));
    whole.extend_from_slice(&first);
    drop(first);
    if size > first_len as u64 {
        let rest = io
            .read_file(first_len as u64, (size - first_len as u64) as usize)
            .await?;
        whole.extend_from_slice(&rest);
    }
    // The original (with its metadata) stays in `whole`, zeroized when dropped.
    let stripped = if kind == "image/jpeg" {
        metadata::strip_jpeg(&whole)
    } else {
        metadata::strip_png(&whole)
    };
    let (cleaned, _) = stripped.map_err(|_| DriverError::ImageUnreadable)?;
    drop(whole);
    let cleaned = Zeroizing::new(cleaned);
    let info = FileInfo {
        name: info.name,
        media_type: MediaType::new(kind).unwrap_or_else(|_| MediaType::octet_stream()),
    };
    Ok((cleaned.len() as u64, info, Source::Memory(cleaned)))
}

fn progress(io: &Io, command: CommandId, done: u64, total: u64) {
    io.with(|l| {
        l.event(Event::Progress {
            command,
            done,
            total,
        })
    });
}

/// The encoded length of a `PutChunk` (the largest chunk frame): header,
/// mailbox, blob id, count, index, sealed chunk.
pub const PUT_CHUNK_FRAME_LEN: usize =
    crate::frame::FRAME_HEADER_LEN + 32 + 32 + 2 + 2 + crate::attachment::CHUNK_SEALED_LEN;

/// Opens an anonymous connection, moving on with backoff after a failure;
/// `attempts` counts every connection opened for this transfer. A relay
/// whose frame limit is below a chunk frame cannot carry files at all.
async fn connect(io: &Io, attempts: &mut u32) -> Result<ConnId, DriverError> {
    loop {
        *attempts += 1;
        match io.open(ConnKind::Anonymous).await {
            Ok((conn, hello)) if (hello.max_frame_len as usize) < PUT_CHUNK_FRAME_LEN => {
                io.close(conn);
                return Err(DriverError::TooLargeForRelay {
                    size: PUT_CHUNK_FRAME_LEN,
                    max: hello.max_frame_len as usize,
                });
            }
            Ok((conn, _)) => return Ok(conn),
            Err(DriverError::Network) if *attempts < UPLOAD_ATTEMPTS => {
                let wait = backoff_secs(*attempts - 1, &mut io.0.borrow_mut().rng);
                io.sleep_until(UnixTime(io.now().0 + wait)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// After a failed request on `c`: waits so the caller can try again (the
/// relay rate-limited it; or the connection was lost while attempts remain,
/// and `conn` is dropped so the next round reconnects with backoff), or
/// closes `c` and gives the error back. One rule for uploads, downloads and
/// deletions.
async fn after_failure(
    io: &Io,
    c: ConnId,
    conn: &mut Option<ConnId>,
    attempts: u32,
    e: DriverError,
) -> Result<(), DriverError> {
    if expect_code(&e, ErrorCode::RateLimited) {
        io.sleep_until(UnixTime(io.now().0 + RATE_LIMIT_WAIT_SECS))
            .await;
        return Ok(());
    }
    if matches!(e, DriverError::Network) && attempts < UPLOAD_ATTEMPTS {
        io.close(c);
        *conn = None;
        let wait = backoff_secs(attempts - 1, &mut io.0.borrow_mut().rng);
        io.sleep_until(UnixTime(io.now().0 + wait)).await;
        return Ok(());
    }
    io.close(c);
    Err(e)
}

/// Uploads a file of `size` bytes into `mailbox` (the seeker's mailbox of
/// the conversation) and returns its reference, once every chunk is stored.
pub(super) async fn upload(
    io: &Io,
    command: CommandId,
    mailbox: MailboxId,
    info: FileInfo,
    size: u64,
) -> Result<AttachmentRef, DriverError> {
    let (size, info, mut source) = prepare(io, info, size).await?;
    let mut sealer = {
        let mut l = io.0.borrow_mut();
        AttachmentSealer::new(size, info, &mut l.rng).map_err(crate::Error::from)?
    };
    let (blob, count) = (sealer.blob_id(), sealer.chunk_count());
    let mut attempts = 0;
    let mut conn: Option<ConnId> = None;
    // The chunk sent and not yet acknowledged: kept sealed until it is.
    let mut in_flight: Option<(u16, Vec<u8>)> = None;
    progress(io, command, 0, size);
    while !sealer.is_complete() || in_flight.is_some() {
        let c = match conn {
            Some(c) => c,
            None => {
                let c = connect(io, &mut attempts).await?;
                conn = Some(c);
                // Resuming: the chunk in flight may have been stored before
                // its acknowledgement was lost.
                if let Some((i, _)) = &in_flight {
                    match io.request(c, ClientFrame::BlobStatus { blob }).await {
                        Ok(ServerFrame::BlobChunks { present })
                            if present.len() == usize::from(count) =>
                        {
                            if present[usize::from(*i)] {
                                let i = *i;
                                in_flight = None;
                                let done = (u64::from(i) + 1) * CHUNK_DATA_LEN as u64;
                                progress(io, command, done.min(size), size);
                                continue;
                            }
                        }
                        Ok(ServerFrame::BlobChunks { .. }) => return Err(DriverError::Protocol),
                        Err(e) if expect_code(&e, ErrorCode::NotFound) => {}
                        Err(DriverError::Network) => {
                            io.close(c);
                            conn = None;
                            continue;
                        }
                        Err(e) => return Err(e),
                        Ok(_) => return Err(DriverError::Protocol),
                    }
                }
                c
            }
        };
        if in_flight.is_none() {
            let index = sealer.next_index();
            let data = source.chunk(io, size, index).await?;
            let sealed = sealer.seal_next(&data).map_err(crate::Error::from)?;
            in_flight = Some((index, sealed));
        }
        let Some((index, sealed)) = &in_flight else {
            continue;
        };
        let reply = io
            .request(
                c,
                ClientFrame::PutChunk {
                    mailbox,
                    blob,
                    chunk_count: count,
                    index: *index,
                    chunk: sealed.clone(),
                },
            )
            .await;
        match reply {
            Ok(ServerFrame::ChunkStored { index: got, .. }) if got == *index => {
                let done = (u64::from(got) + 1) * CHUNK_DATA_LEN as u64;
                in_flight = None;
                progress(io, command, done.min(size), size);
            }
            Ok(_) => return Err(DriverError::Protocol),
            Err(e) => after_failure(io, c, &mut conn, attempts, e).await?,
        }
    }
    if let Some(c) = conn {
        io.close(c);
    }
    Ok(sealer.finish().map_err(crate::Error::from)?)
}

/// Downloads and opens a file: each chunk is checked, then handed to the
/// shell in order (`Output::WriteFile`); the digest of the whole is
/// checked at the end. The shell keeps the file only if this succeeds.
pub(super) async fn download(
    io: &Io,
    command: CommandId,
    reference: AttachmentRef,
) -> Result<u64, DriverError> {
    let size = u64::from(reference.size);
    let mut opener = AttachmentOpener::new(reference);
    let mut attempts = 0;
    let mut conn: Option<ConnId> = None;
    progress(io, command, 0, size);
    while !opener.is_complete() {
        let c = match conn {
            Some(c) => c,
            None => {
                let c = connect(io, &mut attempts).await?;
                conn = Some(c);
                c
            }
        };
        let index = opener.next_index();
        match io
            .request(
                c,
                ClientFrame::GetChunk {
                    blob: opener.reference().blob_id,
                    index,
                },
            )
            .await
        {
            Ok(ServerFrame::Chunk { index: got, chunk }) if got == index => {
                let data = opener
                    .open_next(&chunk)
                    .map_err(|_| DriverError::AttachmentDamaged)?;
                io.with(|l| {
                    l.out.push_back(Output::WriteFile {
                        command,
                        data: super::FileData(data),
                    })
                });
                let done = (u64::from(index) + 1) * CHUNK_DATA_LEN as u64;
                progress(io, command, done.min(size), size);
            }
            Ok(_) => return Err(DriverError::Protocol),
            Err(e) if expect_code(&e, ErrorCode::NotFound) => {
                io.close(c);
                return Err(DriverError::AttachmentGone);
            }
            Err(e) => after_failure(io, c, &mut conn, attempts, e).await?,
        }
    }
    if let Some(c) = conn {
        io.close(c);
    }
    opener
        .finish()
        .map_err(|_| DriverError::AttachmentDamaged)?;
    Ok(size)
}

/// Deletes attachment blobs from the relay over one anonymous connection
/// (a counselor's purge, docs/PROTOCOL.md §4.12), with the same retries
/// as a transfer. A blob already gone is a success; a refused token is a
/// protocol error (every reference's blob id is derived from its key).
pub(super) async fn delete_blobs(
    io: &Io,
    blobs: Vec<(
        crate::attachment::BlobId,
        crate::attachment::BlobDeleteToken,
    )>,
) -> Result<(), DriverError> {
    let mut attempts = 0;
    let mut conn: Option<ConnId> = None;
    let mut next = 0;
    while let Some((blob, token)) = blobs.get(next) {
        let c = match conn {
            Some(c) => c,
            None => {
                let c = connect(io, &mut attempts).await?;
                conn = Some(c);
                c
            }
        };
        let frame = ClientFrame::DeleteBlob {
            blob: *blob,
            token: token.clone(),
        };
        match io.request(c, frame).await {
            Ok(ServerFrame::Ok) => next += 1,
            Ok(_) => {
                io.close(c);
                return Err(DriverError::Protocol);
            }
            Err(e) => after_failure(io, c, &mut conn, attempts, e).await?,
        }
    }
    if let Some(c) = conn {
        io.close(c);
    }
    Ok(())
}
