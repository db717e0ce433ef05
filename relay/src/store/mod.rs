//! Storage behind one trait.
//!
//! The relay stores only what docs/RELAY.md lists: mailbox ids and their
//! public keys (plus the proof-of-work flag), sealed envelopes (ciphertext
//! and an expiry rounded up to the hour), prekey bundles, signed directories
//! and encrypted seeker-state blobs. No address, no arrival time, no sender.
//!
//! Every method returns a boxed future so the trait is object safe
//! (`Arc<dyn Store>`). Writes are durable when their future resolves `Ok`.
//!
//! - [`sqlite`] — the default: one writer thread with group commit, WAL,
//!   `synchronous=FULL`, `PRAGMA user_version` migrations.
//! - [`postgres`] — several relay nodes sharing one PostgreSQL database;
//!   deposits on one node wake subscribers on the others ([`Wakeup`]).
//! - [`memory`] — the same semantics in a `HashMap`, for tests.

use std::future::Future;
use std::pin::Pin;

use northstar_core::UnixTime;
use northstar_core::attachment::{BlobId, CHUNK_SEALED_LEN};
use northstar_core::frame::{OneTimePqPrekey, OneTimePrekey};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::MailboxPublic;
use northstar_core::sealed::Envelope;

pub mod memory;
pub mod postgres;
pub mod sqlite;

/// The future every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The mailbox is not registered (or was deleted meanwhile).
    #[error("unknown mailbox")]
    UnknownMailbox,
    /// The mailbox's envelope-count or byte quota, or its one-time prekey cap, would be exceeded.
    #[error("mailbox quota exceeded")]
    QuotaExceeded,
    /// The directory's serial is not newer than the one stored.
    #[error("directory serial is not newer than the stored one")]
    DirectoryRollback,
    /// The store has been closed (shutdown in progress).
    #[error("store closed")]
    Closed,
    /// The storage is full (the database size cap or the disk): the write
    /// was rolled back and nothing changed.
    #[error("storage full")]
    Full,
    /// The database cannot be written (a read-only file, directory or
    /// file system): refused at start rather than failing every write.
    #[error("the database is read-only: check the data directory's permissions and file system")]
    ReadOnly,
    /// The database files cannot be created or made private to the relay's
    /// user (mode `0600`): refused at start rather than left readable.
    #[error("cannot make the database files private to the relay's user")]
    Files {
        #[source]
        source: std::io::Error,
    },
    /// The storage engine failed (disk full, corruption, …).
    #[error("storage backend failed")]
    Sqlite {
        #[from]
        source: rusqlite::Error,
    },
    /// The PostgreSQL server failed or is unreachable.
    #[error("storage backend failed")]
    Postgres {
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database server is configured so that a commit may be lost.
    #[error("the database has {setting} off: acknowledged deposits could be lost")]
    Unsafe { setting: &'static str },
    /// A value read back from storage does not decode (corruption).
    #[error("stored {what} is corrupt")]
    Corrupt { what: &'static str },
    /// A chunk names a blob held for another mailbox or with another
    /// chunk count.
    #[error("the chunk does not fit its blob")]
    BlobMismatch,
    /// The mailbox holds its maximum of attachment blobs.
    #[error("too many blobs in the mailbox")]
    TooManyBlobs,
}

/// A registered mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxRecord {
    pub keys: MailboxPublic,
    /// Deposits to it must carry proof of work (counselor intake mailboxes).
    pub pow_required: bool,
}

/// An envelope to store.
#[derive(Clone, Debug)]
pub struct NewEnvelope {
    pub id: EnvelopeId,
    /// Already rounded up to the hour by the caller.
    pub expires_at: UnixTime,
    pub envelope: Envelope,
}

/// A stored envelope, as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub id: EnvelopeId,
    pub expires_at: UnixTime,
    pub envelope: Envelope,
}

/// Per-mailbox limits a deposit is checked against, inside its transaction.
#[derive(Clone, Copy, Debug)]
pub struct Quotas {
    pub max_envelopes: u64,
    pub max_bytes: u64,
}

/// What a deposit did. A full mailbox does not hold up the others: each
/// recipient's envelopes are stored, or refused, on their own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DepositOutcome {
    /// Envelopes newly stored (a copy already held is not stored twice).
    pub stored: u64,
    /// Positions in the batch of the envelopes not stored because their
    /// recipient's envelope-count or byte quota would be exceeded, ascending.
    pub over_quota: Vec<usize>,
    /// Positions in the batch of the envelopes not stored because their
    /// recipient is not registered (never, or deleted), ascending.
    pub unknown: Vec<usize>,
}

/// The positions of a batch's envelopes, grouped by recipient (recipients
/// in order of first appearance). Shared by the backends.
pub(crate) fn by_recipient(batch: &[NewEnvelope]) -> Vec<(MailboxId, Vec<usize>)> {
    let mut parts: Vec<(MailboxId, Vec<usize>)> = Vec::new();
    for (i, e) in batch.iter().enumerate() {
        let to = *e.envelope.recipient();
        match parts.iter_mut().find(|(m, _)| *m == to) {
            Some((_, at)) => at.push(i),
            None => parts.push((to, vec![i])),
        }
    }
    parts
}

/// One recipient's part of a deposit, decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Store these positions (each envelope id once, none already held).
    Store(Vec<usize>),
    /// The quota does not allow them all: these positions (every one not
    /// already held) are refused, and nothing of the part is stored.
    Refuse(Vec<usize>),
}

/// Decides one recipient's part (`positions`, with `held[k]` saying
/// whether the mailbox already holds the envelope at `positions[k]`)
/// against the mailbox's `held_count` envelopes and `held_bytes` bytes:
/// what it adds is stored whole if it fits both quotas, else refused whole.
pub(crate) fn admit(
    batch: &[NewEnvelope],
    positions: &[usize],
    held: &[bool],
    (held_count, held_bytes): (u64, u64),
    quotas: Quotas,
) -> Admit {
    let mut new: Vec<usize> = Vec::new();
    for (&i, &h) in positions.iter().zip(held) {
        if !h && !new.iter().any(|&j| batch[j].id == batch[i].id) {
            new.push(i);
        }
    }
    let bytes: u64 = new
        .iter()
        .map(|&i| batch[i].envelope.ciphertext().len() as u64)
        .sum();
    if new.is_empty()
        || (held_count.saturating_add(new.len() as u64) <= quotas.max_envelopes
            && held_bytes.saturating_add(bytes) <= quotas.max_bytes)
    {
        return Admit::Store(new);
    }
    Admit::Refuse(
        positions
            .iter()
            .zip(held)
            .filter(|(_, h)| !**h)
            .map(|(i, _)| *i)
            .collect(),
    )
}

/// A prekey bundle as handed out: the signed bundle with one one-time
/// prekey of each kind while any remain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyBundle {
    pub signed_bundle: Vec<u8>,
    pub one_time: Option<OneTimePrekey>,
    pub one_time_pq: Option<OneTimePqPrekey>,
}

/// What one `UploadPrekeys` stores.
#[derive(Clone, Debug)]
pub struct PrekeyUpload {
    /// Replaces the mailbox's signed bundle.
    pub signed_bundle: Vec<u8>,
    /// One-time X25519 prekeys to add (an id already held is replaced).
    pub one_time: Vec<OneTimePrekey>,
    /// One-time ML-KEM prekeys to add (likewise).
    pub one_time_pq: Vec<OneTimePqPrekey>,
    /// Drop every one-time prekey of both kinds the mailbox held first.
    pub replace: bool,
}

/// Per-mailbox caps on held one-time prekeys, checked inside the upload's
/// transaction.
#[derive(Clone, Copy, Debug)]
pub struct PrekeyCaps {
    pub max_one_time: u64,
    pub max_one_time_pq: u64,
}

/// One-time prekeys of each kind a mailbox holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrekeyCounts {
    pub one_time: u64,
    pub one_time_pq: u64,
}

/// An encrypted seeker-state blob.
#[derive(Clone, PartialEq, Eq)]
pub struct StateBlob {
    pub expires_at: UnixTime,
    pub blob: Vec<u8>,
}

impl core::fmt::Debug for StateBlob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StateBlob({} bytes)", self.blob.len())
    }
}

/// A verified, org-signed directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryRecord {
    pub org_key: [u8; 32],
    pub serial: u64,
    pub bytes: Vec<u8>,
}

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepCounts {
    pub envelopes: u64,
    pub states: u64,
    /// Attachment blobs (with all their chunks).
    pub blobs: u64,
}

/// One sealed attachment chunk to store (docs/PROTOCOL.md §4.12).
#[derive(Clone)]
pub struct NewChunk {
    /// The mailbox the blob belongs to and is charged to (the seeker's).
    pub mailbox: MailboxId,
    pub blob: BlobId,
    pub chunk_count: u16,
    pub index: u16,
    /// Set when the blob's first chunk arrives, already rounded up to the
    /// hour; later chunks do not move it.
    pub expires_at: UnixTime,
    /// Exactly `CHUNK_SEALED_LEN` bytes.
    pub data: Vec<u8>,
}

impl core::fmt::Debug for NewChunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NewChunk({}/{})", self.index, self.chunk_count)
    }
}

/// Per-mailbox limits a chunk's blob is checked against when its first
/// chunk arrives: the blob is charged whole (`chunk_count` sealed chunks)
/// to the mailbox's byte quota, shared with its envelopes, so an upload is
/// refused at its start rather than half-way.
#[derive(Clone, Copy, Debug)]
pub struct BlobQuotas {
    /// The mailbox's byte quota (`mailbox_max_bytes`), envelopes included.
    pub max_bytes: u64,
    /// Most blobs one mailbox holds (`mailbox_max_blobs`).
    pub max_blobs: u64,
}

/// The bytes a blob of `chunk_count` chunks is charged.
pub fn blob_bytes(chunk_count: u16) -> u64 {
    u64::from(chunk_count) * CHUNK_SEALED_LEN as u64
}

/// Decides a chunk against what is held, shared by the backends:
/// `existing` is the blob's (mailbox, chunk count) if held, `held` the
/// mailbox's (bytes of envelopes and blobs, blobs). `Ok(true)`: create the
/// blob; `Ok(false)`: it exists and the chunk fits it.
pub(crate) fn admit_chunk(
    chunk: &NewChunk,
    existing: Option<(MailboxId, u16)>,
    (held_bytes, held_blobs): (u64, u64),
    quotas: BlobQuotas,
) -> Result<bool, StoreError> {
    match existing {
        Some((m, n)) if m == chunk.mailbox && n == chunk.chunk_count => Ok(false),
        Some(_) => Err(StoreError::BlobMismatch),
        None if held_blobs >= quotas.max_blobs => Err(StoreError::TooManyBlobs),
        None if held_bytes.saturating_add(blob_bytes(chunk.chunk_count)) > quotas.max_bytes => {
            Err(StoreError::QuotaExceeded)
        }
        None => Ok(true),
    }
}

/// A signal from another relay node sharing the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// Something was deposited for this mailbox.
    Mailbox(MailboxId),
    /// Signals may have been missed (the listening connection was
    /// (re)opened): every subscriber re-reads what is stored.
    All,
}

/// Column conversions shared by the SQL backends: times as SQL integers
/// (saturating, never wrapping) and 32-byte ids read back from blobs.
pub(crate) fn i64_of(t: UnixTime) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

/// A stored SQL integer back as a time (negative reads as 0).
pub(crate) fn time_of(v: i64) -> UnixTime {
    UnixTime(u64::try_from(v).unwrap_or(0))
}

/// A 32-byte id from a blob column; any other length is corruption.
pub(crate) fn id32(v: Vec<u8>, what: &'static str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt { what })
}

/// A one-time ML-KEM prekey read back from its id and the stored
/// `pk || sig`; any other length is corruption.
pub(crate) fn pq_prekey(id: u32, public: &[u8]) -> Result<OneTimePqPrekey, StoreError> {
    let mut b = Vec::with_capacity(4 + public.len());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(public);
    OneTimePqPrekey::from_bytes(&b).map_err(|_| StoreError::Corrupt {
        what: "one-time pq prekey",
    })
}

/// The relay's storage.
pub trait Store: Send + Sync + 'static {
    /// Registers a mailbox, or updates its proof-of-work flag.
    fn register(&self, keys: MailboxPublic, pow_required: bool) -> StoreFuture<'_, ()>;
    /// Looks a mailbox up.
    fn mailbox(&self, id: MailboxId) -> StoreFuture<'_, Option<MailboxRecord>>;
    /// Stores a batch in one transaction, per recipient: the envelopes for
    /// a recipient that is not registered are not stored (their positions
    /// in `unknown`); the envelopes the batch adds to a registered mailbox
    /// are stored together if they fit its quotas, else none of them
    /// (their positions in `over_quota`). Neither holds up the other
    /// recipients. A copy already held is not stored twice (envelope ids
    /// are content addresses).
    fn deposit(&self, batch: Vec<NewEnvelope>, quotas: Quotas) -> StoreFuture<'_, DepositOutcome>;
    /// Unexpired envelopes of a mailbox in deposit order, at most `limit`.
    fn pending(
        &self,
        mailbox: MailboxId,
        now: UnixTime,
        limit: usize,
    ) -> StoreFuture<'_, Vec<StoredEnvelope>>;
    /// Deletes acknowledged envelopes; returns how many existed.
    fn ack(&self, mailbox: MailboxId, ids: Vec<EnvelopeId>) -> StoreFuture<'_, u64>;
    /// Deletes the acknowledged envelopes of several mailboxes (each id
    /// only from its own mailbox), as one write where the backend can:
    /// the relay gathers acknowledgements from every connection so that
    /// deleting them does not cost a commit each (docs/RELAY.md,
    /// "Acknowledgements"). Returns how many existed.
    fn ack_many(&self, acks: Vec<(MailboxId, Vec<EnvelopeId>)>) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut deleted = 0;
            for (mailbox, ids) in acks {
                deleted += self.ack(mailbox, ids).await?;
            }
            Ok(deleted)
        })
    }
    /// Stores a directory if its serial is newer than the stored one for
    /// the same org key (the same serial with identical bytes is accepted).
    fn put_directory(&self, dir: DirectoryRecord) -> StoreFuture<'_, ()>;
    /// The newest directory of an organisation.
    fn directory(&self, org_key: [u8; 32]) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Replaces the signed bundle and adds one-time prekeys of both kinds
    /// (an id already held is replaced), after dropping every one held if
    /// `upload.replace`. Fails with `QuotaExceeded`, changing nothing, when
    /// either kind would pass its cap. Returns the one-time prekeys now held.
    fn put_prekeys(
        &self,
        mailbox: MailboxId,
        upload: PrekeyUpload,
        caps: PrekeyCaps,
    ) -> StoreFuture<'_, PrekeyCounts>;
    /// Hands a bundle out, deleting the one-time prekeys (one of each kind,
    /// the lowest id) it includes.
    fn take_prekeys(&self, mailbox: MailboxId) -> StoreFuture<'_, Option<PrekeyBundle>>;
    /// Stores (replaces) a mailbox's state blob.
    fn put_state(&self, mailbox: MailboxId, state: StateBlob) -> StoreFuture<'_, ()>;
    /// Reads a mailbox's unexpired state blob.
    fn state(&self, mailbox: MailboxId, now: UnixTime) -> StoreFuture<'_, Option<StateBlob>>;
    /// Deletes a mailbox's state blob; returns whether one existed.
    fn delete_state(&self, mailbox: MailboxId) -> StoreFuture<'_, bool>;
    /// Deletes a mailbox and everything it holds (attachment blobs
    /// included); returns whether it existed.
    fn delete_mailbox(&self, mailbox: MailboxId) -> StoreFuture<'_, bool>;
    /// Stores one attachment chunk, creating its blob on the first chunk
    /// (checked by [`admit_chunk`]: `UnknownMailbox`, `BlobMismatch`,
    /// `TooManyBlobs`, `QuotaExceeded`). The same chunk again is a no-op.
    /// Returns how many chunks the blob now holds; durable when it resolves.
    fn put_chunk(&self, chunk: NewChunk, quotas: BlobQuotas) -> StoreFuture<'_, u16>;
    /// Which chunks of an unexpired blob are held (`present[i]`), or `None`.
    fn blob_chunks(&self, blob: BlobId, now: UnixTime) -> StoreFuture<'_, Option<Vec<bool>>>;
    /// One chunk of an unexpired blob.
    fn chunk(&self, blob: BlobId, index: u16, now: UnixTime) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Deletes a blob and all its chunks (expired or not), giving its bytes
    /// back to its mailbox's quota; returns whether it existed. The caller
    /// has checked the delete token (docs/PROTOCOL.md §4.12).
    fn delete_blob(&self, blob: BlobId) -> StoreFuture<'_, bool>;
    /// Deletes envelopes, state blobs and attachment blobs whose expiry is
    /// at or before `now`; a mailbox whose state blob expired is deleted
    /// whole (registration, envelopes, prekeys, attachment blobs), as
    /// [`Store::delete_mailbox`] does: a seeker's state expires with the
    /// conversation's retention, and nothing of it may outlive that
    /// (docs/PROTOCOL.md §6.6).
    fn sweep(&self, now: UnixTime) -> StoreFuture<'_, SweepCounts>;
    /// Finishes every queued write, then refuses new ones.
    fn close(&self) -> StoreFuture<'_, ()>;
    /// Wake-ups caused by other nodes' deposits, for a store shared by
    /// several nodes; `None` for a single-node store, and after the first call.
    fn take_wakeups(&self) -> Option<tokio::sync::mpsc::Receiver<Wakeup>> {
        None
    }
    /// Whether the store is reachable and accepting (a trivial read; the
    /// readiness probe, `/readyz`).
    fn ready(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Bytes the database takes (the SQLite files, or `pg_database_size`);
    /// `None` when there is nothing to measure (memory).
    fn database_bytes(&self) -> StoreFuture<'_, Option<u64>> {
        Box::pin(async { Ok(None) })
    }
    /// Writes queued for the storage writer, for a store that queues them.
    fn queue_depth(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! One behavioural test run against every backend.
    use super::*;
    use northstar_core::keys::{Ed25519Public, X25519Public};

    pub fn keys(seed: u8) -> MailboxPublic {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        MailboxPublic {
            auth: Ed25519Public(sk.verifying_key().to_bytes()),
            seal: X25519Public([seed; 32]),
        }
    }

    /// A one-time ML-KEM prekey with recognisable bytes (opaque to the store).
    pub fn pq_otk(id: u32) -> OneTimePqPrekey {
        let mut b = vec![0u8; northstar_core::frame::ONE_TIME_PQ_PREKEY_LEN];
        b[..4].copy_from_slice(&id.to_be_bytes());
        b[4..].fill(id as u8);
        OneTimePqPrekey::from_bytes(&b).unwrap()
    }

    pub fn new_env(to: MailboxId, fill: u8, len: usize, expires: u64) -> NewEnvelope {
        let envelope = Envelope::from_parts(to, vec![fill; len]).unwrap();
        NewEnvelope {
            id: EnvelopeId::of(&envelope.encode()),
            expires_at: UnixTime(expires),
            envelope,
        }
    }

    const Q: Quotas = Quotas {
        max_envelopes: 3,
        max_bytes: 400,
    };

    pub async fn run(store: &dyn Store) {
        let a = keys(1);
        let b = keys(2);
        let (ida, idb) = (a.id(), b.id());
        store.register(a, false).await.unwrap();
        store.register(b, true).await.unwrap();
        assert_eq!(
            store.mailbox(idb).await.unwrap(),
            Some(MailboxRecord {
                keys: b,
                pow_required: true
            })
        );
        store.register(b, false).await.unwrap();
        assert!(!store.mailbox(idb).await.unwrap().unwrap().pow_required);
        assert_eq!(store.mailbox(keys(3).id()).await.unwrap(), None);

        // Deposits: refused per unknown recipient, deduplicated,
        // quota-checked per recipient.
        let stored = |n| DepositOutcome {
            stored: n,
            ..DepositOutcome::default()
        };
        let over_quota = |at: Vec<usize>| DepositOutcome {
            over_quota: at,
            ..DepositOutcome::default()
        };
        let e1 = new_env(ida, 1, 100, 7200);
        let e2 = new_env(idb, 2, 100, 7200);
        assert_eq!(
            store
                .deposit(vec![e1.clone(), e2.clone()], Q)
                .await
                .unwrap(),
            stored(2)
        );
        assert_eq!(store.deposit(vec![e1.clone()], Q).await.unwrap(), stored(0));
        // An unknown recipient's envelopes are refused (positions 0 and 2)
        // and the rest of the batch is stored; nothing is created for it.
        let c = keys(5);
        store.register(c, false).await.unwrap();
        let unknown = new_env(keys(3).id(), 3, 100, 7200);
        let for_c = new_env(c.id(), 4, 100, 7200);
        assert_eq!(
            store
                .deposit(vec![unknown.clone(), for_c.clone(), unknown.clone()], Q)
                .await
                .unwrap(),
            DepositOutcome {
                stored: 1,
                over_quota: Vec::new(),
                unknown: vec![0, 2],
            }
        );
        let pc = store.pending(c.id(), UnixTime(0), 100).await.unwrap();
        assert_eq!(pc.len(), 1);
        assert_eq!(pc[0].id, for_c.id);
        assert_eq!(store.mailbox(keys(3).id()).await.unwrap(), None);
        assert!(
            store
                .pending(keys(3).id(), UnixTime(0), 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.deposit(vec![unknown.clone()], Q).await.unwrap(),
            DepositOutcome {
                unknown: vec![0],
                ..DepositOutcome::default()
            }
        );
        assert_eq!(store.pending(ida, UnixTime(0), 100).await.unwrap().len(), 1);
        // Byte quota: 100 + 400 > 400.
        assert_eq!(
            store
                .deposit(vec![new_env(ida, 5, 400, 7200)], Q)
                .await
                .unwrap(),
            over_quota(vec![0])
        );
        store
            .deposit(vec![new_env(ida, 6, 50, 3600)], Q)
            .await
            .unwrap();
        store
            .deposit(vec![new_env(ida, 7, 50, 7200)], Q)
            .await
            .unwrap();
        // Count quota: a fourth envelope.
        assert_eq!(
            store
                .deposit(vec![new_env(ida, 8, 50, 7200)], Q)
                .await
                .unwrap(),
            over_quota(vec![0])
        );
        // A full mailbox does not hold up the others in its batch: b gets
        // its envelopes, a's are refused whole (positions 0 and 2, and the
        // copy of 2 at 3), and a copy a already holds counts as held.
        let b_new = new_env(idb, 10, 60, 7200);
        assert_eq!(
            store
                .deposit(
                    vec![
                        new_env(ida, 11, 50, 7200),
                        b_new.clone(),
                        new_env(ida, 12, 50, 7200),
                        new_env(ida, 12, 50, 7200),
                        e1.clone(),
                    ],
                    Q
                )
                .await
                .unwrap(),
            DepositOutcome {
                stored: 1,
                over_quota: vec![0, 2, 3],
                unknown: Vec::new(),
            }
        );
        let pb = store.pending(idb, UnixTime(0), 100).await.unwrap();
        assert_eq!(pb.len(), 2);
        assert_eq!(pb[1].id, b_new.id, "b got its envelope");
        let p = store.pending(ida, UnixTime(0), 100).await.unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].id, e1.id, "deposit order");
        assert_eq!(p[0].envelope, e1.envelope);
        assert_eq!(store.pending(ida, UnixTime(0), 2).await.unwrap().len(), 2);
        // Expired envelopes are not delivered, then swept.
        assert_eq!(
            store.pending(ida, UnixTime(3600), 100).await.unwrap().len(),
            2
        );
        let swept = store.sweep(UnixTime(3600)).await.unwrap();
        assert_eq!(swept.envelopes, 1);
        // Ack deletes only from the acknowledging mailbox.
        assert_eq!(store.ack(idb, vec![e1.id]).await.unwrap(), 0);
        assert_eq!(store.ack(idb, vec![b_new.id]).await.unwrap(), 1);
        assert_eq!(store.ack(ida, vec![e1.id, e1.id]).await.unwrap(), 1);
        assert_eq!(store.pending(ida, UnixTime(0), 100).await.unwrap().len(), 1);
        // Acknowledgements of several mailboxes in one write: each id is
        // deleted only from the mailbox it is listed under.
        let rest_a = store.pending(ida, UnixTime(0), 100).await.unwrap()[0].id;
        let (xa, yb) = (new_env(ida, 13, 60, 7200), new_env(idb, 14, 60, 7200));
        store
            .deposit(vec![xa.clone(), yb.clone()], Q)
            .await
            .unwrap();
        assert_eq!(
            store
                .ack_many(vec![
                    (idb, vec![xa.id]),
                    (ida, vec![xa.id, rest_a, yb.id]),
                    (idb, vec![yb.id]),
                ])
                .await
                .unwrap(),
            3
        );
        assert!(
            store
                .pending(ida, UnixTime(0), 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.pending(idb, UnixTime(0), 100).await.unwrap().len(), 1);
        assert_eq!(store.ack_many(Vec::new()).await.unwrap(), 0);

        // Directories: newest only, rollbacks refused.
        let d = |serial, fill| DirectoryRecord {
            org_key: [9; 32],
            serial,
            bytes: vec![fill; 10],
        };
        store.put_directory(d(2, 2)).await.unwrap();
        store.put_directory(d(2, 2)).await.unwrap();
        assert!(matches!(
            store.put_directory(d(1, 1)).await,
            Err(StoreError::DirectoryRollback)
        ));
        assert!(matches!(
            store.put_directory(d(2, 3)).await,
            Err(StoreError::DirectoryRollback)
        ));
        store.put_directory(d(3, 3)).await.unwrap();
        assert_eq!(store.directory([9; 32]).await.unwrap(), Some(vec![3; 10]));
        assert_eq!(store.directory([8; 32]).await.unwrap(), None);

        // Prekeys: one-time keys of each kind handed out once (lowest id
        // first), then the bundle alone.
        let otk = |id| OneTimePrekey {
            id,
            public: X25519Public([id as u8; 32]),
        };
        let upload = |fill: u8, one_time: Vec<u32>, pq: Vec<u32>, replace: bool| PrekeyUpload {
            signed_bundle: vec![fill; 50],
            one_time: one_time.into_iter().map(otk).collect(),
            one_time_pq: pq.into_iter().map(pq_otk).collect(),
            replace,
        };
        let caps = PrekeyCaps {
            max_one_time: 3,
            max_one_time_pq: 2,
        };
        let counts = |one_time, one_time_pq| PrekeyCounts {
            one_time,
            one_time_pq,
        };
        assert_eq!(store.take_prekeys(idb).await.unwrap(), None);
        assert_eq!(
            store
                .put_prekeys(idb, upload(1, vec![2, 1], vec![9, 8], false), caps)
                .await
                .unwrap(),
            counts(2, 2)
        );
        // Over either cap: refused, nothing changed.
        assert!(matches!(
            store
                .put_prekeys(idb, upload(2, vec![3, 4], vec![], false), caps)
                .await,
            Err(StoreError::QuotaExceeded)
        ));
        assert!(matches!(
            store
                .put_prekeys(idb, upload(2, vec![], vec![7], false), caps)
                .await,
            Err(StoreError::QuotaExceeded)
        ));
        let mut got = Vec::new();
        for _ in 0..3 {
            let bundle = store.take_prekeys(idb).await.unwrap().unwrap();
            assert_eq!(bundle.signed_bundle, vec![1; 50]);
            got.push((bundle.one_time, bundle.one_time_pq));
        }
        assert_eq!(
            got,
            vec![
                (Some(otk(1)), Some(pq_otk(8))),
                (Some(otk(2)), Some(pq_otk(9))),
                (None, None)
            ]
        );
        // A replacing upload drops what was held, of both kinds; a plain
        // one adds (the same id again replaces its key).
        store
            .put_prekeys(idb, upload(3, vec![5, 6], vec![5], false), caps)
            .await
            .unwrap();
        assert_eq!(
            store
                .put_prekeys(idb, upload(4, vec![7, 8, 9], vec![6, 7], true), caps)
                .await
                .unwrap(),
            counts(3, 2)
        );
        let mut changed = otk(9);
        changed.public = X25519Public([0xEE; 32]);
        let mut plain = upload(4, vec![], vec![], false);
        plain.one_time = vec![changed];
        assert_eq!(
            store.put_prekeys(idb, plain, caps).await.unwrap(),
            counts(3, 2)
        );
        let mut got = Vec::new();
        for _ in 0..4 {
            let bundle = store.take_prekeys(idb).await.unwrap().unwrap();
            assert_eq!(bundle.signed_bundle, vec![4; 50]);
            got.push((bundle.one_time, bundle.one_time_pq));
        }
        assert_eq!(
            got,
            vec![
                (Some(otk(7)), Some(pq_otk(6))),
                (Some(otk(8)), Some(pq_otk(7))),
                (Some(changed), None),
                (None, None)
            ]
        );
        assert!(matches!(
            store
                .put_prekeys(keys(3).id(), upload(1, vec![], vec![], false), caps)
                .await,
            Err(StoreError::UnknownMailbox)
        ));

        // State: expiry readable, swept when expired, deletable.
        let s = StateBlob {
            expires_at: UnixTime(7200),
            blob: vec![5; 64],
        };
        store.put_state(ida, s.clone()).await.unwrap();
        assert_eq!(
            store.state(ida, UnixTime(0)).await.unwrap(),
            Some(s.clone())
        );
        assert_eq!(store.state(ida, UnixTime(7200)).await.unwrap(), None);
        assert!(store.delete_state(ida).await.unwrap());
        assert!(!store.delete_state(ida).await.unwrap());
        store.put_state(ida, s.clone()).await.unwrap();
        store
            .deposit(vec![new_env(ida, 8, 60, 99_999)], Q)
            .await
            .unwrap();
        assert_eq!(store.sweep(UnixTime(7199)).await.unwrap().states, 0);
        assert!(store.mailbox(ida).await.unwrap().is_some());
        // Retention: the mailbox goes with its expired state, envelopes
        // that would still be unexpired included.
        assert_eq!(store.sweep(UnixTime(7200)).await.unwrap().states, 1);
        assert_eq!(store.mailbox(ida).await.unwrap(), None);
        assert!(
            store
                .pending(ida, UnixTime(0), 100)
                .await
                .unwrap()
                .is_empty()
        );
        store.register(a, false).await.unwrap();
        assert!(matches!(
            store.put_state(keys(3).id(), s.clone()).await,
            Err(StoreError::UnknownMailbox)
        ));

        // Delete everything now.
        store.put_state(idb, s.clone()).await.unwrap();
        store
            .deposit(vec![new_env(idb, 9, 60, 7200)], Q)
            .await
            .unwrap();
        store
            .put_prekeys(idb, upload(1, vec![5], vec![5], false), caps)
            .await
            .unwrap();
        assert!(store.delete_mailbox(idb).await.unwrap());
        assert!(!store.delete_mailbox(idb).await.unwrap());
        assert_eq!(store.mailbox(idb).await.unwrap(), None);
        assert!(
            store
                .pending(idb, UnixTime(0), 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.state(idb, UnixTime(0)).await.unwrap(), None);
        assert_eq!(store.take_prekeys(idb).await.unwrap(), None);
        // A deposit for the deleted mailbox is refused for it alone.
        assert_eq!(
            store
                .deposit(
                    vec![new_env(ida, 13, 50, 7200), new_env(idb, 14, 60, 7200)],
                    Quotas {
                        max_envelopes: 100,
                        max_bytes: 100_000,
                    }
                )
                .await
                .unwrap(),
            DepositOutcome {
                stored: 1,
                over_quota: Vec::new(),
                unknown: vec![1],
            }
        );
        // Re-registering gives an empty mailbox.
        store.register(b, true).await.unwrap();
        assert!(
            store
                .pending(idb, UnixTime(0), 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.take_prekeys(idb).await.unwrap(), None);

        blobs(store).await;
        blob_delete(store).await;

        store.close().await.unwrap();
        assert!(matches!(
            store.register(keys(4), false).await,
            Err(StoreError::Closed)
        ));
    }

    fn chunk(m: MailboxId, blob: u8, count: u16, index: u16, expires: u64) -> NewChunk {
        NewChunk {
            mailbox: m,
            blob: BlobId::from_bytes([blob; 32]),
            chunk_count: count,
            index,
            expires_at: UnixTime(expires),
            data: vec![blob ^ index as u8; CHUNK_SEALED_LEN],
        }
    }

    /// Attachment blobs: idempotent chunks, resume status, downloads by
    /// id, quotas shared with envelopes, expiry and deletion with the mailbox.
    pub async fn blobs(store: &dyn Store) {
        let s = keys(20);
        let other = keys(21);
        store.register(s, false).await.unwrap();
        store.register(other, false).await.unwrap();
        let m = s.id();
        let q = BlobQuotas {
            max_bytes: blob_bytes(5) + 100,
            max_blobs: 2,
        };
        let id = |b: u8| BlobId::from_bytes([b; 32]);
        assert_eq!(store.blob_chunks(id(1), UnixTime(0)).await.unwrap(), None);
        assert_eq!(
            store.put_chunk(chunk(m, 1, 3, 2, 7200), q).await.unwrap(),
            1
        );
        // The same chunk again: nothing changes (a retry after a drop).
        assert_eq!(
            store.put_chunk(chunk(m, 1, 3, 2, 7200), q).await.unwrap(),
            1
        );
        assert_eq!(
            store.put_chunk(chunk(m, 1, 3, 0, 7200), q).await.unwrap(),
            2
        );
        assert_eq!(
            store.blob_chunks(id(1), UnixTime(0)).await.unwrap(),
            Some(vec![true, false, true])
        );
        assert_eq!(
            store.chunk(id(1), 2, UnixTime(0)).await.unwrap(),
            Some(vec![1 ^ 2; CHUNK_SEALED_LEN])
        );
        assert_eq!(store.chunk(id(1), 1, UnixTime(0)).await.unwrap(), None);
        // Another chunk count or mailbox for the same blob is refused.
        assert!(matches!(
            store.put_chunk(chunk(m, 1, 4, 1, 7200), q).await,
            Err(StoreError::BlobMismatch)
        ));
        assert!(matches!(
            store.put_chunk(chunk(other.id(), 1, 3, 1, 7200), q).await,
            Err(StoreError::BlobMismatch)
        ));
        assert!(matches!(
            store
                .put_chunk(chunk(keys(22).id(), 9, 3, 1, 7200), q)
                .await,
            Err(StoreError::UnknownMailbox)
        ));
        // The byte quota counts whole blobs (3 chunks held): 3 more do not fit.
        assert!(matches!(
            store.put_chunk(chunk(m, 2, 3, 0, 7200), q).await,
            Err(StoreError::QuotaExceeded)
        ));
        assert_eq!(
            store.put_chunk(chunk(m, 2, 2, 1, 3600), q).await.unwrap(),
            1
        );
        // ... and envelopes share it: 100 bytes left.
        let quotas = Quotas {
            max_envelopes: 100,
            max_bytes: q.max_bytes,
        };
        assert_eq!(
            store
                .deposit(vec![new_env(m, 1, 101, 7200)], quotas)
                .await
                .unwrap()
                .over_quota,
            vec![0]
        );
        assert_eq!(
            store
                .deposit(vec![new_env(m, 1, 100, 7200)], quotas)
                .await
                .unwrap()
                .stored,
            1
        );
        // The blob count.
        let roomy = BlobQuotas {
            max_bytes: u64::MAX,
            max_blobs: 2,
        };
        assert!(matches!(
            store.put_chunk(chunk(m, 3, 1, 0, 7200), roomy).await,
            Err(StoreError::TooManyBlobs)
        ));
        // Expiry: blob 2 expires at 3600, is not served after, then swept.
        assert_eq!(
            store.blob_chunks(id(2), UnixTime(3600)).await.unwrap(),
            None
        );
        assert_eq!(store.chunk(id(2), 1, UnixTime(3600)).await.unwrap(), None);
        assert_eq!(store.sweep(UnixTime(3600)).await.unwrap().blobs, 1);
        assert_eq!(store.blob_chunks(id(2), UnixTime(0)).await.unwrap(), None);
        // Its bytes are free again.
        assert_eq!(
            store.put_chunk(chunk(m, 3, 1, 0, 7200), q).await.unwrap(),
            1
        );
        // Deleting the mailbox deletes its blobs.
        assert!(store.delete_mailbox(m).await.unwrap());
        assert_eq!(store.blob_chunks(id(1), UnixTime(0)).await.unwrap(), None);
        assert_eq!(store.chunk(id(3), 0, UnixTime(0)).await.unwrap(), None);
        // A blob id freed by deletion can be used by another mailbox.
        assert_eq!(
            store
                .put_chunk(chunk(other.id(), 1, 1, 0, 7200), q)
                .await
                .unwrap(),
            1
        );
    }

    /// Deleting one blob (a counselor's purge or a seeker's delete, the
    /// token already checked): its chunks go, its bytes return to the
    /// mailbox's quota, the other blobs stay, and deleting it again is a
    /// harmless `false`.
    pub async fn blob_delete(store: &dyn Store) {
        let s = keys(30);
        store.register(s, false).await.unwrap();
        let m = s.id();
        let q = BlobQuotas {
            max_bytes: blob_bytes(3),
            max_blobs: 3,
        };
        let id = |b: u8| BlobId::from_bytes([b; 32]);
        store.put_chunk(chunk(m, 41, 2, 0, 7200), q).await.unwrap();
        store.put_chunk(chunk(m, 41, 2, 1, 7200), q).await.unwrap();
        store.put_chunk(chunk(m, 42, 1, 0, 7200), q).await.unwrap();
        // The quota is full: a third blob does not fit.
        assert!(matches!(
            store.put_chunk(chunk(m, 43, 2, 0, 7200), q).await,
            Err(StoreError::QuotaExceeded)
        ));
        assert!(store.delete_blob(id(41)).await.unwrap());
        assert_eq!(store.blob_chunks(id(41), UnixTime(0)).await.unwrap(), None);
        assert_eq!(store.chunk(id(41), 0, UnixTime(0)).await.unwrap(), None);
        assert_eq!(store.chunk(id(41), 1, UnixTime(0)).await.unwrap(), None);
        // The other blob is untouched.
        assert_eq!(
            store.chunk(id(42), 0, UnixTime(0)).await.unwrap(),
            Some(vec![42; CHUNK_SEALED_LEN])
        );
        // Idempotent: already gone, and a blob never stored.
        assert!(!store.delete_blob(id(41)).await.unwrap());
        assert!(!store.delete_blob(id(44)).await.unwrap());
        // Its bytes are free again.
        assert_eq!(
            store.put_chunk(chunk(m, 43, 2, 0, 7200), q).await.unwrap(),
            1
        );
        assert!(store.delete_mailbox(m).await.unwrap());
    }
}
