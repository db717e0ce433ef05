//! The durable half of `--mode sqlite-batch`: one writer thread that
//! commits queued writes in groups (WAL, `synchronous=FULL`), and the queue
//! between it and the connections.
//!
//! The connections append writes to the last open [`Batch`] under one
//! mutex (a new batch once it holds `batch` writes; a frame's writes are
//! never split); the writer takes one batch per transaction, so everything
//! that arrived while the previous transaction committed shares the next
//! one. The writer is woken (a futex) only when it sleeps, and after each
//! commit hands the whole batch back and wakes the runtime once; the
//! dispatcher then sends every `Deposited`, `Deliver` and `Acked` of it.
//! Batches are recycled: no allocation per write on either side.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use anyhow::Result;
use northstar_core::ids::{EnvelopeId, MailboxId};
use rusqlite::Statement;

use crate::wire::{DELIVER_PREFIX_LEN, ID_LEN};

/// Which connection, in the runtime's slab, a reply goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    pub index: u32,
    pub generation: u32,
}

/// One write, and what to send once it is committed.
#[derive(Debug)]
pub enum Op {
    /// Store one envelope, then push it to its recipient's subscriber; the
    /// `Deliver` frame (id, envelope) lies at `bytes[at..at + len]`.
    /// `reply`: the last envelope of its deposit frame, which is answered
    /// `Deposited { accepted }` after the commit.
    Insert {
        conn: ConnId,
        request_id: u32,
        reply: Option<u16>,
        to: MailboxId,
        at: u32,
        len: u32,
    },
    /// Delete the acknowledged envelopes of `mailbox` whose ids lie at
    /// `bytes[at..at + 32 * count]`, then answer `Acked { deleted }`.
    Delete {
        conn: ConnId,
        request_id: u32,
        mailbox: MailboxId,
        at: u32,
        count: u16,
        deleted: u32,
    },
}

/// The writes of one transaction, with the bytes they refer to.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub bytes: Vec<u8>,
}

struct Queue {
    /// Waiting for the writer, oldest first; only the last takes new writes.
    pending: VecDeque<Batch>,
    /// Dispatched batches, emptied, for reuse.
    spare: Vec<Batch>,
    /// The writer sleeps on the condition variable.
    idle: bool,
    /// Bytes of the largest batch so far: a new batch reserves as much.
    bytes_hint: usize,
}

/// SQLite settings that change the cost per message, not what is durable.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub page_size: u32,
    pub cache_mib: u32,
    pub wal_autocheckpoint: u32,
}

/// The queue shared by the runtime thread and the writer thread.
pub struct Store {
    queue: Mutex<Queue>,
    wake_writer: Condvar,
    committed: Mutex<Vec<Batch>>,
    /// Rung (once per commit) when `committed` has batches.
    pub ring: tokio::sync::Notify,
    batch: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    pub fn new(batch: usize) -> Self {
        Store {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                spare: Vec::new(),
                idle: false,
                bytes_hint: 64 << 10,
            }),
            wake_writer: Condvar::new(),
            committed: Mutex::new(Vec::new()),
            ring: tokio::sync::Notify::new(),
            batch: batch.max(1),
        }
    }

    /// Lets `f` append one frame's writes to the open batch, then wakes the
    /// writer if it sleeps.
    pub fn push<R>(&self, f: impl FnOnce(&mut Batch) -> R) -> R {
        let mut q = lock(&self.queue);
        let mut b = match q.pending.pop_back() {
            Some(open) if open.ops.len() < self.batch => open,
            full => {
                q.pending.extend(full);
                let mut b = q.spare.pop().unwrap_or_default();
                b.bytes.reserve(q.bytes_hint);
                b
            }
        };
        let r = f(&mut b);
        q.bytes_hint = q.bytes_hint.max(b.bytes.len());
        q.pending.push_back(b);
        if q.idle {
            q.idle = false;
            self.wake_writer.notify_one();
        }
        r
    }

    /// Takes the committed batches (swapped with `into`, which must be empty).
    pub fn take_committed(&self, into: &mut Vec<Batch>) {
        std::mem::swap(&mut *lock(&self.committed), into);
    }

    /// Returns a dispatched batch for reuse.
    pub fn recycle(&self, mut b: Batch) {
        b.ops.clear();
        b.bytes.clear();
        lock(&self.queue).spare.push(b);
    }

    fn next(&self) -> Batch {
        let mut q = lock(&self.queue);
        loop {
            if let Some(b) = q.pending.pop_front() {
                q.idle = false;
                return b;
            }
            q.idle = true;
            q = self.wake_writer.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The writer thread: opens the database and commits batch after batch.
    pub fn run(&self, path: &Path, tuning: &Tuning) -> Result<()> {
        let conn = rusqlite::Connection::open(path)?;
        // Before the first write: the page size of a new database.
        conn.pragma_update(None, "page_size", tuning.page_size)?;
        conn.pragma_update(None, "cache_size", -i64::from(tuning.cache_mib) * 1024)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", tuning.wal_autocheckpoint)?;
        // The least a durable mailbox store can do: append each envelope to a
        // rowid table (no index) and delete it by rowid, found in memory.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS envelopes (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, mailbox BLOB NOT NULL, body BLOB NOT NULL);",
        )?;
        let mut begin = conn.prepare("BEGIN")?;
        let mut commit = conn.prepare("COMMIT")?;
        let mut ins =
            conn.prepare("INSERT INTO envelopes (id, mailbox, body) VALUES (?1, ?2, ?3)")?;
        let mut del = conn.prepare("DELETE FROM envelopes WHERE seq = ?1")?;
        let mut rowids: HashMap<EnvelopeId, (MailboxId, i64), BuildHasherDefault<RandomKey>> =
            HashMap::default();
        let mut stats = Stats::default();
        loop {
            let mut b = self.next();
            stats.count(&b);
            begin.execute([])?;
            let Batch { ops, bytes } = &mut b;
            for op in ops.iter_mut() {
                match op {
                    Op::Insert { to, at, len, .. } => {
                        let frame = &bytes[*at as usize..(*at + *len) as usize];
                        let id_bytes =
                            &frame[DELIVER_PREFIX_LEN - 8 - ID_LEN..DELIVER_PREFIX_LEN - 8];
                        let id = EnvelopeId::from_bytes(id_bytes.try_into()?);
                        if rowids.contains_key(&id) {
                            continue;
                        }
                        let seq =
                            insert_envelope(&mut ins, id_bytes, to, &frame[DELIVER_PREFIX_LEN..])?;
                        rowids.insert(id, (*to, seq));
                    }
                    Op::Delete {
                        mailbox,
                        at,
                        count,
                        deleted,
                        ..
                    } => {
                        let ids = &bytes[*at as usize..*at as usize + ID_LEN * usize::from(*count)];
                        for id in ids.chunks_exact(ID_LEN) {
                            let id = EnvelopeId::from_bytes(id.try_into()?);
                            if let Some(&(owner, seq)) = rowids.get(&id)
                                && owner == *mailbox
                            {
                                rowids.remove(&id);
                                *deleted += delete_envelope(&mut del, seq)?;
                            }
                        }
                    }
                }
            }
            commit_batch(&mut commit)?;
            lock(&self.committed).push(b);
            self.ring.notify_one();
        }
    }
}

// Named, never inlined: the profile (scripts/profile-bare) splits SQLite's
// time by these frames.
#[inline(never)]
fn insert_envelope(
    ins: &mut Statement<'_>,
    id: &[u8],
    to: &MailboxId,
    body: &[u8],
) -> rusqlite::Result<i64> {
    ins.insert((id, to.as_bytes().as_slice(), body))
}

#[inline(never)]
fn delete_envelope(del: &mut Statement<'_>, seq: i64) -> rusqlite::Result<u32> {
    Ok(u32::try_from(del.execute([seq])?).unwrap_or(u32::MAX))
}

#[inline(never)]
fn commit_batch(commit: &mut Statement<'_>) -> rusqlite::Result<()> {
    commit.execute([]).map(|_| ())
}

/// Commits and writes, printed every [`STATS_EVERY`] (the average
/// transaction size is part of the per-message budget).
#[derive(Default)]
struct Stats {
    since: Option<std::time::Instant>,
    commits: u64,
    inserts: u64,
    acks: u64,
}

const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Stats {
    fn count(&mut self, b: &Batch) {
        self.commits += 1;
        for op in &b.ops {
            match op {
                Op::Insert { .. } => self.inserts += 1,
                Op::Delete { .. } => self.acks += 1,
            }
        }
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        let t = since.elapsed();
        if t >= STATS_EVERY {
            eprintln!(
                "bare-relay writer: {:.0} commits/s, {:.1} inserts and {:.1} ack frames per commit",
                self.commits as f64 / t.as_secs_f64(),
                self.inserts as f64 / self.commits as f64,
                self.acks as f64 / self.commits as f64
            );
            *self = Stats::default();
        }
    }
}

/// Hashes a key that is already uniformly random (a SHA-256 output:
/// envelope ids, mailbox ids) by its first eight bytes instead of SipHash.
/// Neither can be chosen by a client without breaking SHA-256.
#[derive(Default)]
pub struct RandomKey(u64);

impl Hasher for RandomKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(b) => self.0 ^= u64::from_le_bytes(*b),
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    // The slice length written before the bytes of an id adds nothing.
    fn write_usize(&mut self, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const A: ConnId = ConnId {
        index: 0,
        generation: 0,
    };

    fn deposit(store: &Store, to: MailboxId, n: u8) -> EnvelopeId {
        let envelope = northstar_core::sealed::Envelope::from_parts(to, vec![n; 100]).unwrap();
        let encoded = envelope.encode();
        let id = EnvelopeId::of(&encoded);
        store.push(|b| {
            let at = b.bytes.len();
            wire::deliver(&mut b.bytes, id.as_bytes(), &encoded);
            b.ops.push(Op::Insert {
                conn: A,
                request_id: u32::from(n),
                reply: Some(1),
                to,
                at: at as u32,
                len: (b.bytes.len() - at) as u32,
            });
        });
        id
    }

    fn ack(store: &Store, mailbox: MailboxId, ids: &[EnvelopeId]) {
        store.push(|b| {
            let at = b.bytes.len();
            for id in ids {
                b.bytes.extend_from_slice(id.as_bytes());
            }
            b.ops.push(Op::Delete {
                conn: A,
                request_id: 9,
                mailbox,
                at: at as u32,
                count: ids.len() as u16,
                deleted: 0,
            });
        });
    }

    /// Waits for the writer to hand back committed batches.
    fn committed(store: &Store) -> Vec<Batch> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.is_empty() {
            assert!(Instant::now() < deadline, "nothing committed");
            std::thread::sleep(Duration::from_millis(10));
            store.take_committed(&mut got);
        }
        got
    }

    fn rows(path: &Path) -> i64 {
        let c = rusqlite::Connection::open(path).unwrap();
        c.query_row("SELECT count(*) FROM envelopes", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn writes_come_back_after_their_commit_and_acks_delete_only_their_mailbox() {
        let dir = std::env::temp_dir().join(format!("bare-relay-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bare.db");
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(Store::new(256));
        let writer = store.clone();
        let p = path.clone();
        std::thread::spawn(move || {
            let tuning = Tuning {
                page_size: 16384,
                cache_mib: 8,
                wal_autocheckpoint: 100,
            };
            writer.run(&p, &tuning)
        });
        let (alice, bob) = (
            MailboxId::from_bytes([1; 32]),
            MailboxId::from_bytes([2; 32]),
        );
        let ids = [deposit(&store, alice, 1), deposit(&store, alice, 2)];
        deposit(&store, bob, 3);
        let mut inserted = 0;
        while inserted < 3 {
            for b in committed(&store) {
                inserted += b.ops.len();
                store.recycle(b);
            }
        }
        // Handed back only once committed: another connection sees them.
        assert_eq!(rows(&path), 3);

        // Bob cannot delete Alice's envelopes; Alice deletes hers once.
        ack(&store, bob, &ids);
        ack(&store, alice, &ids);
        ack(&store, alice, &ids);
        let mut deleted = Vec::new();
        while deleted.len() < 3 {
            for b in committed(&store) {
                for op in &b.ops {
                    if let Op::Delete { deleted: n, .. } = op {
                        deleted.push(*n);
                    }
                }
                store.recycle(b);
            }
        }
        assert_eq!(deleted, [0, 2, 0]);
        assert_eq!(rows(&path), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
