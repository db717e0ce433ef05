//! An in-memory [`Store`] with the same semantics as SQLite, for tests.
//! Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use northstar_core::UnixTime;
use northstar_core::frame::{OneTimePqPrekey, OneTimePrekey};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::MailboxPublic;

use super::{
    Admit, DepositOutcome, DirectoryRecord, MailboxRecord, NewEnvelope, PrekeyBundle, PrekeyCaps,
    PrekeyCounts, PrekeyUpload, Quotas, StateBlob, Store, StoreError, StoreFuture, StoredEnvelope,
    SweepCounts, admit, by_recipient,
};
use super::{BlobQuotas, NewChunk, admit_chunk, blob_bytes};
use northstar_core::attachment::BlobId;

/// The bytes a mailbox's blobs are charged.
fn blob_bytes_of(blobs: &HashMap<BlobId, Blob>, mailbox: MailboxId) -> u64 {
    blobs
        .values()
        .filter(|b| b.mailbox == mailbox)
        .map(|b| blob_bytes(b.chunks.len() as u16))
        .sum()
}

#[derive(Default)]
struct Mailbox {
    record: Option<MailboxRecord>,
    /// Envelopes in deposit order: this mailbox's own sequence number
    /// (one above its highest stored) → envelope.
    envelopes: BTreeMap<u64, StoredEnvelope>,
    signed_bundle: Option<Vec<u8>>,
    one_time: BTreeMap<u32, OneTimePrekey>,
    one_time_pq: BTreeMap<u32, OneTimePqPrekey>,
    state: Option<StateBlob>,
}

/// An attachment blob: its mailbox, expiry and chunks.
struct Blob {
    mailbox: MailboxId,
    expires_at: UnixTime,
    chunks: Vec<Option<Vec<u8>>>,
}

#[derive(Default)]
struct Inner {
    mailboxes: HashMap<MailboxId, Mailbox>,
    blobs: HashMap<BlobId, Blob>,
    directories: HashMap<[u8; 32], DirectoryRecord>,
    closed: bool,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl core::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> StoreFuture<'_, T> {
        let r = (|| {
            let mut g: MutexGuard<'_, Inner> = self.inner.lock().map_err(|_| StoreError::Closed)?;
            if write && g.closed {
                return Err(StoreError::Closed);
            }
            f(&mut g)
        })();
        Box::pin(async move { r })
    }
}

fn registered(inner: &mut Inner, id: MailboxId) -> Result<&mut Mailbox, StoreError> {
    match inner.mailboxes.get_mut(&id) {
        Some(m) if m.record.is_some() => Ok(m),
        _ => Err(StoreError::UnknownMailbox),
    }
}

impl Store for MemoryStore {
    fn register(&self, keys: MailboxPublic, pow_required: bool) -> StoreFuture<'_, ()> {
        self.with(true, move |i| {
            let m = i.mailboxes.entry(keys.id()).or_default();
            m.record = Some(MailboxRecord { keys, pow_required });
            Ok(())
        })
    }

    fn mailbox(&self, id: MailboxId) -> StoreFuture<'_, Option<MailboxRecord>> {
        self.with(false, move |i| {
            Ok(i.mailboxes.get(&id).and_then(|m| m.record))
        })
    }

    fn deposit(&self, batch: Vec<NewEnvelope>, quotas: Quotas) -> StoreFuture<'_, DepositOutcome> {
        self.with(true, move |i| {
            let parts = by_recipient(&batch);
            let mut out = DepositOutcome::default();
            for (to, positions) in parts {
                // An unknown recipient's envelopes are refused; the others go on.
                let Ok(m) = registered(i, to) else {
                    out.unknown.extend(positions);
                    continue;
                };
                let (count, bytes) = m.envelopes.values().fold((0u64, 0u64), |(c, b), s| {
                    (c + 1, b + s.envelope.ciphertext().len() as u64)
                });
                let held_now = (count, bytes + blob_bytes_of(&i.blobs, to));
                let Ok(m) = registered(i, to) else {
                    continue;
                };
                let held: Vec<bool> = positions
                    .iter()
                    .map(|&p| m.envelopes.values().any(|s| s.id == batch[p].id))
                    .collect();
                match admit(&batch, &positions, &held, held_now, quotas) {
                    Admit::Refuse(at) => out.over_quota.extend(at),
                    Admit::Store(at) => {
                        for p in at {
                            let e = &batch[p];
                            let seq = m.envelopes.last_key_value().map_or(1, |(k, _)| k + 1);
                            m.envelopes.insert(
                                seq,
                                StoredEnvelope {
                                    id: e.id,
                                    expires_at: e.expires_at,
                                    envelope: e.envelope.clone(),
                                },
                            );
                            out.stored += 1;
                        }
                    }
                }
            }
            out.over_quota.sort_unstable();
            out.unknown.sort_unstable();
            Ok(out)
        })
    }

    fn pending(
        &self,
        mailbox: MailboxId,
        now: UnixTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEnvelope>> {
        self.with(false, move |i| {
            Ok(i.mailboxes
                .get(&mailbox)
                .map(|m| {
                    m.envelopes
                        .values()
                        .filter(|e| e.expires_at > now)
                        .take(limit)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn ack(&self, mailbox: MailboxId, ids: Vec<EnvelopeId>) -> StoreFuture<'_, u64> {
        self.with(true, move |i| {
            let Some(m) = i.mailboxes.get_mut(&mailbox) else {
                return Ok(0);
            };
            let before = m.envelopes.len();
            m.envelopes.retain(|_, e| !ids.contains(&e.id));
            Ok((before - m.envelopes.len()) as u64)
        })
    }

    fn put_directory(&self, dir: DirectoryRecord) -> StoreFuture<'_, ()> {
        self.with(true, move |i| {
            if let Some(old) = i.directories.get(&dir.org_key) {
                let same = old.serial == dir.serial && old.bytes == dir.bytes;
                if dir.serial < old.serial || (dir.serial == old.serial && !same) {
                    return Err(StoreError::DirectoryRollback);
                }
            }
            i.directories.insert(dir.org_key, dir);
            Ok(())
        })
    }

    fn directory(&self, org_key: [u8; 32]) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.with(false, move |i| {
            Ok(i.directories.get(&org_key).map(|d| d.bytes.clone()))
        })
    }

    fn put_prekeys(
        &self,
        mailbox: MailboxId,
        upload: PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StoreFuture<'_, PrekeyCounts> {
        self.with(true, move |i| {
            let m = registered(i, mailbox)?;
            let (mut next, mut next_pq) = if upload.replace {
                (BTreeMap::new(), BTreeMap::new())
            } else {
                (m.one_time.clone(), m.one_time_pq.clone())
            };
            for k in upload.one_time {
                next.insert(k.id, k);
            }
            for k in upload.one_time_pq {
                next_pq.insert(k.id, k);
            }
            if next.len() as u64 > caps.max_one_time || next_pq.len() as u64 > caps.max_one_time_pq
            {
                return Err(StoreError::QuotaExceeded);
            }
            m.one_time = next;
            m.one_time_pq = next_pq;
            m.signed_bundle = Some(upload.signed_bundle);
            Ok(PrekeyCounts {
                one_time: m.one_time.len() as u64,
                one_time_pq: m.one_time_pq.len() as u64,
            })
        })
    }

    fn take_prekeys(&self, mailbox: MailboxId) -> StoreFuture<'_, Option<PrekeyBundle>> {
        self.with(true, move |i| {
            let Ok(m) = registered(i, mailbox) else {
                return Ok(None);
            };
            let Some(signed_bundle) = m.signed_bundle.clone() else {
                return Ok(None);
            };
            let one_time = m.one_time.pop_first().map(|(_, k)| k);
            let one_time_pq = m.one_time_pq.pop_first().map(|(_, k)| k);
            Ok(Some(PrekeyBundle {
                signed_bundle,
                one_time,
                one_time_pq,
            }))
        })
    }

    fn put_state(&self, mailbox: MailboxId, state: StateBlob) -> StoreFuture<'_, ()> {
        self.with(true, move |i| {
            registered(i, mailbox)?.state = Some(state);
            Ok(())
        })
    }

    fn state(&self, mailbox: MailboxId, now: UnixTime) -> StoreFuture<'_, Option<StateBlob>> {
        self.with(false, move |i| {
            Ok(i.mailboxes
                .get(&mailbox)
                .and_then(|m| m.state.clone())
                .filter(|s| s.expires_at > now))
        })
    }

    fn delete_state(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        self.with(true, move |i| {
            Ok(i.mailboxes
                .get_mut(&mailbox)
                .and_then(|m| m.state.take())
                .is_some())
        })
    }

    fn put_chunk(&self, chunk: NewChunk, quotas: BlobQuotas) -> StoreFuture<'_, u16> {
        self.with(true, move |i| {
            let m = registered(i, chunk.mailbox)?;
            let env_bytes: u64 = m
                .envelopes
                .values()
                .map(|s| s.envelope.ciphertext().len() as u64)
                .sum();
            let held_bytes = env_bytes + blob_bytes_of(&i.blobs, chunk.mailbox);
            let held_blobs = i
                .blobs
                .values()
                .filter(|b| b.mailbox == chunk.mailbox)
                .count() as u64;
            let existing = i
                .blobs
                .get(&chunk.blob)
                .map(|b| (b.mailbox, b.chunks.len() as u16));
            if admit_chunk(&chunk, existing, (held_bytes, held_blobs), quotas)? {
                i.blobs.insert(
                    chunk.blob,
                    Blob {
                        mailbox: chunk.mailbox,
                        expires_at: chunk.expires_at,
                        chunks: vec![None; usize::from(chunk.chunk_count)],
                    },
                );
            }
            let b = i
                .blobs
                .get_mut(&chunk.blob)
                .ok_or(StoreError::BlobMismatch)?;
            b.chunks[usize::from(chunk.index)] = Some(chunk.data);
            Ok(b.chunks.iter().filter(|c| c.is_some()).count() as u16)
        })
    }

    fn blob_chunks(&self, blob: BlobId, now: UnixTime) -> StoreFuture<'_, Option<Vec<bool>>> {
        self.with(false, move |i| {
            Ok(i.blobs
                .get(&blob)
                .filter(|b| b.expires_at > now)
                .map(|b| b.chunks.iter().map(Option::is_some).collect()))
        })
    }

    fn chunk(&self, blob: BlobId, index: u16, now: UnixTime) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.with(false, move |i| {
            Ok(i.blobs
                .get(&blob)
                .filter(|b| b.expires_at > now)
                .and_then(|b| b.chunks.get(usize::from(index)).cloned().flatten()))
        })
    }

    fn delete_blob(&self, blob: BlobId) -> StoreFuture<'_, bool> {
        self.with(true, move |i| Ok(i.blobs.remove(&blob).is_some()))
    }

    fn delete_mailbox(&self, mailbox: MailboxId) -> StoreFuture<'_, bool> {
        self.with(true, move |i| {
            i.blobs.retain(|_, b| b.mailbox != mailbox);
            Ok(i.mailboxes
                .remove(&mailbox)
                .is_some_and(|m| m.record.is_some()))
        })
    }

    fn sweep(&self, now: UnixTime) -> StoreFuture<'_, SweepCounts> {
        self.with(true, move |i| {
            let mut c = SweepCounts::default();
            // A seeker's mailbox goes with its expired state (the
            // conversation's retention, docs/PROTOCOL.md §6.6).
            let before = i.mailboxes.len();
            i.mailboxes
                .retain(|_, m| m.state.as_ref().is_none_or(|s| s.expires_at > now));
            c.states = (before - i.mailboxes.len()) as u64;
            for m in i.mailboxes.values_mut() {
                let before = m.envelopes.len();
                m.envelopes.retain(|_, e| e.expires_at > now);
                c.envelopes += (before - m.envelopes.len()) as u64;
            }
            // Blobs go with their mailbox (as the SQL stores' cascade does)
            // and at their own expiry.
            let before = i.blobs.len();
            let mailboxes = &i.mailboxes;
            i.blobs
                .retain(|_, b| b.expires_at > now && mailboxes.contains_key(&b.mailbox));
            c.blobs = (before - i.blobs.len()) as u64;
            Ok(c)
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        self.with(true, |i| {
            i.closed = true;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract() {
        super::super::contract::run(&MemoryStore::new()).await;
    }
}
