//! The relay link the driver's request sequences run on: connections,
//! request/reply matching, batching within the relay's announced limits,
//! proof of work handed to the shell, timers and retries.
//!
//! Sequences are written as `async` functions over [`Io`]. They never touch
//! a socket: an operation puts an [`Output`] in the queue and the future
//! stays pending until the driver is fed the matching input (a frame, an
//! opened or closed connection, a solved proof of work, the time). The
//! driver polls every sequence after each input with a no-op waker; nothing
//! here needs an executor, threads or a clock.

use core::cell::RefCell;
use core::future::poll_fn;
use core::task::Poll;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::{ConnId, ConnKind, DriverError, Event, Output, WorkId};
use crate::UnixTime;
use crate::error::DecodeError;
use crate::frame::{
    self, ClientFrame, ErrorCode, FRAME_HEADER_LEN, MAX_ACK_IDS, MAX_BATCH_ENVELOPES, ServerFrame,
};
use crate::ids::EnvelopeId;
use crate::pow::{self, CHALLENGE_LEN};
use crate::sealed::Envelope;

/// How long a request may wait for its reply before the connection is
/// treated as lost (a relay that stopped answering).
pub const REPLY_TIMEOUT_SECS: u64 = 30;

/// How long opening a connection (TCP, WebSocket, the relay's hello) may take
/// before the next relay of the list is tried.
pub const CONNECT_TIMEOUT_SECS: u64 = 15;

/// How many times a deposit is tried (each on a fresh connection, moving on
/// through the relay list) before the command fails: covers a relay node
/// restarting or a dropped mobile connection without hiding a dead relay.
pub const DEPOSIT_ATTEMPTS: u32 = 4;

/// Bytes of a deposit frame besides its envelopes: the frame header, the
/// proof-of-work flag and nonce, and the envelope count (PROTOCOL.md §4).
pub const DEPOSIT_FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 1 + 8 + 2;

/// Reconnection backoff: the first wait, doubling per failed attempt up to
/// [`BACKOFF_MAX_SECS`].
pub const BACKOFF_MIN_SECS: u64 = 1;
/// The longest wait between two reconnection attempts.
pub const BACKOFF_MAX_SECS: u64 = 30;

/// The relay's limits and proof-of-work challenge, from its hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub pow_challenge: [u8; CHALLENGE_LEN],
    pub pow_difficulty: u8,
    pub max_frame_len: u32,
    pub max_batch: u16,
}

impl Hello {
    /// Envelopes per deposit frame: the relay's announced limit, within the
    /// protocol's, and few enough that the batch's proof of work stays
    /// within `pow::MAX_DIFFICULTY`.
    pub fn batch_limit(&self) -> usize {
        usize::from(self.max_batch)
            .clamp(1, MAX_BATCH_ENVELOPES)
            .min(pow::max_batch_at(self.pow_difficulty))
    }
}

/// How a deposit went, over all its frames and connections.
#[derive(Debug, Default)]
struct Tally {
    /// Envelopes the relay holds (stored now, or already).
    held: usize,
    /// Envelopes the relay refused (their recipients' mailboxes are full,
    /// or not registered).
    refused: usize,
    /// The first refusal's code.
    code: Option<ErrorCode>,
}

/// A stored envelope the relay pushed to the mailbox connection.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: EnvelopeId,
    pub envelope: Envelope,
}

#[derive(Debug)]
enum Phase {
    /// The shell was asked to open it; waiting for the relay's hello.
    Opening {
        deadline: UnixTime,
    },
    Ready(Hello),
    Closed,
}

#[derive(Debug)]
struct Pending {
    deadline: UnixTime,
    reply: Option<Result<ServerFrame, DriverError>>,
    /// Nobody waits for this reply (acknowledgements): dropped on arrival.
    detached: bool,
}

#[derive(Debug)]
struct Conn {
    kind: ConnKind,
    phase: Phase,
    next_request: u32,
    pending: BTreeMap<u32, Pending>,
    deliveries: VecDeque<Delivery>,
}

/// A file slice as the shell read it, or why not.
type ReadResult = Result<Zeroizing<Vec<u8>>, DriverError>;

/// Everything the sequences and the driver share.
pub(crate) struct Link {
    pub(crate) now: UnixTime,
    pub(crate) rng: ChaCha20Rng,
    relays: Vec<String>,
    /// The relay the next connection goes to (moves on when one fails).
    relay_cursor: usize,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    pub(crate) out: VecDeque<Output>,
    work: BTreeMap<WorkId, Option<u64>>,
    next_work: u64,
    timers: BTreeMap<u64, (UnixTime, bool)>,
    next_timer: u64,
    /// File slices asked of the shell (`Output::ReadFile`) and, once read,
    /// their bytes (attachments).
    reads: BTreeMap<super::ReadId, Option<ReadResult>>,
    next_read: u64,
    /// The frame version a relay spoke instead of ours, if one did: every
    /// relay failing to open then says why (`UnsupportedVersion`), not
    /// merely that none could be reached.
    other_version: Option<u8>,
}

impl core::fmt::Debug for Link {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Link")
            .field("relays", &self.relays.len())
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(relays: Vec<String>, rng: ChaCha20Rng) -> Self {
        Link {
            now: UnixTime(0),
            rng,
            relays,
            relay_cursor: 0,
            conns: BTreeMap::new(),
            next_conn: 1,
            out: VecDeque::new(),
            work: BTreeMap::new(),
            next_work: 1,
            timers: BTreeMap::new(),
            next_timer: 1,
            reads: BTreeMap::new(),
            next_read: 1,
            other_version: None,
        }
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn fail_pending(conn: &mut Conn, err: &DriverError) {
        for p in conn.pending.values_mut() {
            if p.reply.is_none() {
                p.reply = Some(Err(err.clone()));
            }
        }
    }

    /// The shell reports the connection open: nothing to do until the hello.
    pub(crate) fn opened(&mut self, _conn: ConnId) {}

    /// The connection closed (or could not be opened).
    pub(crate) fn closed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if matches!(c.phase, Phase::Opening { .. }) {
                // Never got going: the next connection tries the next relay.
                self.relay_cursor = self.relay_cursor.wrapping_add(1);
            }
            c.phase = Phase::Closed;
            Self::fail_pending(c, &DriverError::Network);
        }
    }

    /// A frame from the relay. A frame that does not decode closes the
    /// connection: a relay that speaks garbage is not trusted for anything.
    pub(crate) fn frame(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let (request, f) = match ServerFrame::decode(bytes) {
            Ok(x) => x,
            Err(e) => {
                // A relay of another protocol version: its very hello does
                // not decode. Said plainly, and the next relay is tried.
                let err = match e.error {
                    DecodeError::UnsupportedVersion { got, .. } => {
                        self.other_version = Some(got);
                        DriverError::UnsupportedVersion {
                            relay: got,
                            ours: frame::FRAME_VERSION,
                        }
                    }
                    _ => DriverError::Protocol,
                };
                if matches!(c.phase, Phase::Opening { .. }) {
                    self.relay_cursor = self.relay_cursor.wrapping_add(1);
                }
                c.phase = Phase::Closed;
                Self::fail_pending(c, &err);
                self.out.push_back(Output::Close { conn });
                return;
            }
        };
        match (request, f) {
            (
                frame::PUSH_REQUEST_ID,
                ServerFrame::Hello {
                    pow_challenge,
                    pow_difficulty,
                    max_frame_len,
                    max_batch,
                },
            ) => {
                if matches!(c.phase, Phase::Opening { .. }) {
                    c.phase = Phase::Ready(Hello {
                        pow_challenge,
                        pow_difficulty,
                        max_frame_len,
                        max_batch,
                    });
                }
            }
            (frame::PUSH_REQUEST_ID, ServerFrame::Deliver { id, envelope, .. }) => {
                if c.kind == ConnKind::Mailbox {
                    c.deliveries.push_back(Delivery { id, envelope });
                }
            }
            (frame::PUSH_REQUEST_ID, ServerFrame::Error { code }) => {
                // A failure the relay could not tie to a request fails them all.
                Self::fail_pending(c, &DriverError::Relay { code });
            }
            (frame::PUSH_REQUEST_ID, _) => {}
            (id, f) => {
                if let Some(p) = c.pending.get_mut(&id) {
                    if p.detached {
                        c.pending.remove(&id);
                    } else if p.reply.is_none() {
                        p.reply = Some(match f {
                            ServerFrame::Error { code } => Err(DriverError::Relay { code }),
                            other => Ok(other),
                        });
                    }
                }
            }
        }
    }

    /// The shell read a file slice (or could not: `None`).
    pub(crate) fn read_done(&mut self, read: super::ReadId, bytes: Option<Zeroizing<Vec<u8>>>) {
        if let Some(slot) = self.reads.get_mut(&read) {
            *slot = Some(bytes.ok_or(DriverError::FileUnreadable));
        }
    }

    pub(crate) fn work_done(&mut self, work: WorkId, nonce: u64) {
        if let Some(slot) = self.work.get_mut(&work) {
            *slot = Some(nonce);
        }
    }

    /// Fires what is due at `now`: request and connect deadlines, timers.
    pub(crate) fn tick(&mut self) {
        let now = self.now;
        let mut stale = Vec::new();
        for (id, c) in &mut self.conns {
            if let Phase::Opening { deadline } = c.phase
                && deadline <= now
            {
                c.phase = Phase::Closed;
                stale.push(*id);
            }
            let mut lost = false;
            c.pending.retain(|_, p| !(p.detached && p.deadline <= now));
            for p in c.pending.values_mut() {
                if p.reply.is_none() && p.deadline <= now {
                    lost = true;
                }
            }
            if lost {
                c.phase = Phase::Closed;
                Self::fail_pending(c, &DriverError::Network);
                stale.push(*id);
            }
        }
        for id in stale {
            self.relay_cursor = self.relay_cursor.wrapping_add(1);
            self.out.push_back(Output::Close { conn: id });
        }
        for (at, fired) in self.timers.values_mut() {
            if *at <= now {
                *fired = true;
            }
        }
    }

    /// The earliest time the driver must be woken at, if any.
    pub(crate) fn next_deadline(&self) -> Option<UnixTime> {
        let conns = self.conns.values().flat_map(|c| {
            let open = match c.phase {
                Phase::Opening { deadline } => Some(deadline),
                _ => None,
            };
            open.into_iter().chain(
                c.pending
                    .values()
                    .filter(|p| p.reply.is_none())
                    .map(|p| p.deadline),
            )
        });
        let timers = self
            .timers
            .values()
            .filter(|(_, fired)| !fired)
            .map(|(at, _)| *at);
        conns.chain(timers).min()
    }

    /// Drops the records of closed connections nobody waits on.
    pub(crate) fn collect(&mut self) {
        self.conns.retain(|_, c| {
            !matches!(c.phase, Phase::Closed) || c.pending.values().any(|p| p.reply.is_some())
        });
    }

    /// The hello of an open connection (the relay's announced limits).
    pub(crate) fn hello(&self, conn: ConnId) -> Option<Hello> {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(Phase::Ready(h)) => Some(*h),
            _ => None,
        }
    }

    pub(crate) fn is_open(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.phase, Phase::Ready(_)))
    }

    pub(crate) fn take_deliveries(&mut self, conn: ConnId) -> Vec<Delivery> {
        self.conns
            .get_mut(&conn)
            .map(|c| c.deliveries.drain(..).collect())
            .unwrap_or_default()
    }

    pub(crate) fn has_deliveries(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| !c.deliveries.is_empty())
    }

    /// Closes every connection (the shell closes the sockets).
    pub(crate) fn close_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }

    pub(crate) fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !matches!(c.phase, Phase::Closed) {
                self.out.push_back(Output::Close { conn });
            }
            c.phase = Phase::Closed;
            Self::fail_pending(c, &DriverError::Network);
            c.pending.retain(|_, p| !p.detached);
        }
    }

    fn start_open(&mut self, kind: ConnKind) -> Result<ConnId, DriverError> {
        if self.relays.is_empty() {
            return Err(DriverError::NoRelay);
        }
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let url = self.relays[self.relay_cursor % self.relays.len()].clone();
        self.conns.insert(
            id,
            Conn {
                kind,
                phase: Phase::Opening {
                    deadline: UnixTime(self.now.0 + CONNECT_TIMEOUT_SECS),
                },
                next_request: 1,
                pending: BTreeMap::new(),
                deliveries: VecDeque::new(),
            },
        );
        self.out.push_back(Output::Connect {
            conn: id,
            kind,
            url,
        });
        Ok(id)
    }

    /// Encodes and queues a request; returns its request id.
    fn send(&mut self, conn: ConnId, f: &ClientFrame, detached: bool) -> Result<u32, DriverError> {
        let deadline = UnixTime(self.now.0 + REPLY_TIMEOUT_SECS);
        let c = self.conns.get_mut(&conn).ok_or(DriverError::Network)?;
        let Phase::Ready(hello) = c.phase else {
            return Err(DriverError::Network);
        };
        let id = c.next_request;
        c.next_request = c.next_request.checked_add(1).unwrap_or(1);
        let bytes = f.encode(id).map_err(DriverError::Core)?;
        if bytes.len() > hello.max_frame_len as usize {
            return Err(DriverError::TooLargeForRelay {
                size: bytes.len(),
                max: hello.max_frame_len as usize,
            });
        }
        c.pending.insert(
            id,
            Pending {
                deadline,
                reply: None,
                detached,
            },
        );
        self.out.push_back(Output::Send { conn, frame: bytes });
        Ok(id)
    }
}

/// The handle a sequence runs on.
#[derive(Clone)]
pub(crate) struct Io(pub(crate) Rc<RefCell<Link>>);

impl Io {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Link) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }

    pub(crate) fn now(&self) -> UnixTime {
        self.0.borrow().now
    }

    /// Opens a connection and waits for the relay's hello, moving on through
    /// the relay list when one cannot be reached.
    pub(crate) async fn open(&self, kind: ConnKind) -> Result<(ConnId, Hello), DriverError> {
        let tries = self.with(|l| l.relays.len().max(1));
        for _ in 0..tries {
            let conn = self.with(|l| l.start_open(kind))?;
            let hello = poll_fn(|_| {
                let l = self.0.borrow();
                match l.conns.get(&conn).map(|c| &c.phase) {
                    Some(Phase::Ready(h)) => Poll::Ready(Some(*h)),
                    Some(Phase::Opening { .. }) => Poll::Pending,
                    _ => Poll::Ready(None),
                }
            })
            .await;
            if let Some(h) = hello {
                return Ok((conn, h));
            }
            self.with(|l| l.close(conn));
        }
        Err(self.with(|l| match l.other_version.take() {
            Some(relay) => DriverError::UnsupportedVersion {
                relay,
                ours: frame::FRAME_VERSION,
            },
            None => DriverError::Network,
        }))
    }

    pub(crate) fn close(&self, conn: ConnId) {
        self.with(|l| l.close(conn));
    }

    /// Sends one request and waits for its reply; a relay error frame is
    /// `DriverError::Relay`.
    pub(crate) async fn request(
        &self,
        conn: ConnId,
        f: ClientFrame,
    ) -> Result<ServerFrame, DriverError> {
        let id = self.with(|l| l.send(conn, &f, false))?;
        drop(f);
        poll_fn(|_| {
            let mut l = self.0.borrow_mut();
            let Some(c) = l.conns.get_mut(&conn) else {
                return Poll::Ready(Err(DriverError::Network));
            };
            match c.pending.get_mut(&id).and_then(|p| p.reply.take()) {
                Some(r) => {
                    c.pending.remove(&id);
                    Poll::Ready(r)
                }
                None if c.pending.contains_key(&id) => Poll::Pending,
                None => Poll::Ready(Err(DriverError::Network)),
            }
        })
        .await
    }

    /// Queues a request whose reply nobody waits for (acknowledgements).
    pub(crate) fn send_detached(&self, conn: ConnId, f: &ClientFrame) -> Result<(), DriverError> {
        self.with(|l| l.send(conn, f, true)).map(|_| ())
    }

    /// Asks the shell to solve a proof of work and waits for the nonce.
    pub(crate) async fn solve_pow(
        &self,
        challenge: [u8; CHALLENGE_LEN],
        hash: [u8; 32],
        difficulty: u8,
    ) -> u64 {
        let work = self.with(|l| {
            let id = WorkId(l.next_work);
            l.next_work += 1;
            l.work.insert(id, None);
            l.out.push_back(Output::Work {
                work: id,
                job: super::Work::ProofOfWork {
                    challenge,
                    batch_hash: hash,
                    difficulty,
                },
            });
            id
        });
        poll_fn(|_| {
            let mut l = self.0.borrow_mut();
            match l.work.get(&work).copied().flatten() {
                Some(n) => {
                    l.work.remove(&work);
                    Poll::Ready(n)
                }
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Asks the shell for `len` bytes of the file at `offset` and waits for
    /// them; a slice of another length is refused (the file changed).
    pub(crate) async fn read_file(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, DriverError> {
        let read = self.with(|l| {
            let id = super::ReadId(l.next_read);
            l.next_read += 1;
            l.reads.insert(id, None);
            l.out.push_back(Output::ReadFile {
                read: id,
                offset,
                len,
            });
            id
        });
        let bytes = poll_fn(|_| {
            let mut l = self.0.borrow_mut();
            match l.reads.get_mut(&read).and_then(Option::take) {
                Some(r) => {
                    l.reads.remove(&read);
                    Poll::Ready(r)
                }
                None => Poll::Pending,
            }
        })
        .await?;
        if bytes.len() != len {
            return Err(DriverError::FileUnreadable);
        }
        Ok(bytes)
    }

    /// Waits until `at` (the shell wakes the driver through `poll_timeout`).
    pub(crate) async fn sleep_until(&self, at: UnixTime) {
        let timer = self.with(|l| {
            let id = l.next_timer;
            l.next_timer += 1;
            l.timers.insert(id, (at, at <= l.now));
            id
        });
        poll_fn(|_| {
            let mut l = self.0.borrow_mut();
            if l.timers.get(&timer).is_some_and(|(_, fired)| *fired) {
                l.timers.remove(&timer);
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until `ready` holds (checked after every input).
    pub(crate) async fn until(&self, mut ready: impl FnMut(&Link) -> bool) {
        poll_fn(|_| {
            if ready(&self.0.borrow()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Deposits envelopes over fresh connections not tied to any mailbox,
    /// in batches within the relay's announced count *and* frame size, each
    /// with its proof of work. A lost connection moves on to a new one (the
    /// next relay of the list when it failed to open) for the batches left.
    ///
    /// A full or unknown (deleted) mailbox does not stop the rest: the
    /// relay stores a batch for every registered recipient with room and
    /// names the envelopes it refused (a frame refused whole is
    /// `quota_exceeded` or `unknown_mailbox`, and the next frames go on).
    /// Every envelope the relay holds counts as sent; the refused ones are
    /// not sent again. When some were refused and some stored, the deposit
    /// succeeds and says so with [`Event::PartlyRefused`]; when the relay
    /// stored none of them, it fails with `Relay { code }`, as it always did.
    pub(crate) async fn deposit(&self, mut envelopes: Vec<Envelope>) -> Result<(), DriverError> {
        // One canonical order, by recipient: the order of a batch says
        // nothing about who wrote it or why.
        envelopes.sort_by(|a, b| a.recipient().cmp(b.recipient()));
        let total = envelopes.len();
        let mut left: VecDeque<Envelope> = envelopes.into();
        let mut tally = Tally::default();
        let mut attempts = 0;
        while !left.is_empty() {
            attempts += 1;
            match self.deposit_on_one_connection(&mut left, &mut tally).await {
                Ok(()) => {}
                Err(DriverError::Network) if attempts < DEPOSIT_ATTEMPTS => {
                    let wait = backoff_secs(attempts - 1, &mut self.0.borrow_mut().rng);
                    self.sleep_until(UnixTime(self.now().0 + wait)).await;
                }
                Err(e) => return Err(e),
            }
        }
        match tally.code {
            None => Ok(()),
            Some(code) if tally.held == 0 => Err(DriverError::Relay { code }),
            Some(code) => {
                self.with(|l| {
                    l.event(Event::PartlyRefused {
                        refused: tally.refused,
                        of: total,
                        code,
                    })
                });
                Ok(())
            }
        }
    }

    async fn deposit_on_one_connection(
        &self,
        left: &mut VecDeque<Envelope>,
        tally: &mut Tally,
    ) -> Result<(), DriverError> {
        let (conn, hello) = self.open(ConnKind::Anonymous).await?;
        let result = self.deposit_batches(conn, hello, left, tally).await;
        self.close(conn);
        result
    }

    async fn deposit_batches(
        &self,
        conn: ConnId,
        hello: Hello,
        left: &mut VecDeque<Envelope>,
        tally: &mut Tally,
    ) -> Result<(), DriverError> {
        let mut challenge = hello.pow_challenge;
        while !left.is_empty() {
            let n = batch_len(left.iter(), hello)?;
            let batch: Vec<Envelope> = left.iter().take(n).cloned().collect();
            let hash = frame::deposit_batch_hash(&batch);
            // The work grows with the envelopes the frame carries.
            let difficulty = pow::batch_difficulty(hello.pow_difficulty, batch.len());
            let nonce = self.solve_pow(challenge, hash, difficulty).await;
            let reply = self
                .request(
                    conn,
                    ClientFrame::Deposit {
                        pow_nonce: Some(nonce),
                        envelopes: batch,
                    },
                )
                .await;
            match reply {
                Ok(ServerFrame::Deposited {
                    accepted,
                    next_pow_challenge,
                    refused,
                }) => {
                    // Every envelope of the frame is accounted for once
                    // (the codec checked the positions are distinct).
                    if usize::from(accepted) + refused.len() != n
                        || refused.iter().any(|r| usize::from(r.index) >= n)
                    {
                        return Err(DriverError::Protocol);
                    }
                    challenge = next_pow_challenge;
                    left.drain(..n);
                    tally.held += usize::from(accepted);
                    tally.refused += refused.len();
                    if let Some(r) = refused.first() {
                        tally.code.get_or_insert(r.code);
                    }
                }
                // Refused whole, its recipients' mailboxes full or unknown
                // (a deleted device): nothing changed (the challenge
                // neither), and the next frames may reach other mailboxes.
                Err(DriverError::Relay {
                    code: code @ (ErrorCode::QuotaExceeded | ErrorCode::UnknownMailbox),
                }) => {
                    left.drain(..n);
                    tally.refused += n;
                    tally.code.get_or_insert(code);
                }
                Ok(_) => return Err(DriverError::Protocol),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Acknowledges delivered envelopes (deletes them on the relay), in
    /// frames of at most [`MAX_ACK_IDS`]. The replies are not waited for:
    /// an acknowledgement lost with its connection means a redelivery, which
    /// the receiver drops as a duplicate.
    pub(crate) fn ack(&self, conn: ConnId, ids: &[EnvelopeId]) -> Result<(), DriverError> {
        for chunk in ids.chunks(MAX_ACK_IDS) {
            self.send_detached(
                conn,
                &ClientFrame::Ack {
                    ids: chunk.to_vec(),
                },
            )?;
        }
        Ok(())
    }
}

/// How many of the next envelopes fit one deposit frame under `hello`'s
/// count and size limits. An envelope that fits no frame at all is an error
/// (the message is larger than this relay accepts).
pub(crate) fn batch_len<'a>(
    envelopes: impl Iterator<Item = &'a Envelope>,
    hello: Hello,
) -> Result<usize, DriverError> {
    let max_frame = hello.max_frame_len as usize;
    let mut size = DEPOSIT_FRAME_OVERHEAD;
    let mut n = 0;
    for e in envelopes.take(hello.batch_limit()) {
        let len = e.encoded_len();
        if size + len > max_frame {
            if n == 0 {
                return Err(DriverError::TooLargeForRelay {
                    size: DEPOSIT_FRAME_OVERHEAD + len,
                    max: max_frame,
                });
            }
            break;
        }
        size += len;
        n += 1;
    }
    if n == 0 {
        return Err(DriverError::Protocol);
    }
    Ok(n)
}

/// Capped exponential backoff with jitter: attempt 0 waits 1–2 s, then
/// doubling, at most [`BACKOFF_MAX_SECS`].
pub(crate) fn backoff_secs(attempt: u32, rng: &mut ChaCha20Rng) -> u64 {
    use rand_core::RngCore;
    let base = BACKOFF_MIN_SECS
        .saturating_mul(1u64 << attempt.min(6))
        .min(BACKOFF_MAX_SECS);
    base + rng.next_u64() % base.max(1)
}

/// Every request/reply in one place for the sequences: a relay error code
/// they expect becomes their own error kind.
pub(crate) fn expect_code(e: &DriverError, code: ErrorCode) -> bool {
    matches!(e, DriverError::Relay { code: c } if *c == code)
}
