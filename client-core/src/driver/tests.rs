//! The driver against a scripted relay in memory.
//!
//! [`Relay`] speaks the real frames (`ClientFrame::decode`,
//! `ServerFrame::encode`) for every request the driver makes and checks
//! what a real relay checks (signatures over its challenges, batch count and
//! frame size against its hello, proof of work). [`Net`] is the shell: it
//! drains every driver's outputs in order, opens and closes the fake
//! connections, solves proofs of work, keeps the persisted blob, feeds the
//! relay's replies and pushes back, and moves a fake clock for timeouts. It
//! records every output so tests can check their order (a `Persist` before
//! the `Send` it protects).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zeroize::Zeroizing;

use super::{
    Command, CommandId, Config, ConnId, ConnKind, Connection, Driver, DriverError, Event, Outcome,
    Output, TeamAction, Work,
};
use crate::UnixTime;
use crate::attachment::BlobId;
use crate::client::counselor::{Event as TeamEvent, Status};
use crate::client::saved::{DeviceState, UnreadableReason};
use crate::client::seeker::Seeker;
use crate::client::{Author, EntryKind};
use crate::codename::{Codename, SeekerSecrets};
use crate::directory::{
    DeviceEntry, DeviceId, Directory, DirectoryError, OrgSigningKey, SignedDirectory,
};
use crate::frame::{
    self, ClientFrame, ErrorCode, OneTimePqPrekey, OneTimePrekey, PUSH_REQUEST_ID, ServerFrame,
};
use crate::ids::{EnvelopeId, Language, MailboxId};
use crate::keys::MailboxPublic;
use crate::message::MAX_TEXT_LEN;
use crate::padding::BUCKETS;
use crate::pow;
use crate::sealed::Envelope;
use crate::state::StateKey;

const T0: UnixTime = UnixTime(1_800_000_000);
const RELAY: &str = "wss://relay.test";
const TEAM: &str = "unaccompanied-minors";
const MIB: u32 = 1024 * 1024;

// ------------------------------------------------------------ the relay

/// What the relay announces in its hello.
#[derive(Clone, Copy, Debug)]
struct Limits {
    pow_difficulty: u8,
    max_frame_len: u32,
    max_batch: u16,
}

const ROOMY: Limits = Limits {
    pow_difficulty: 0,
    max_frame_len: 2 * MIB,
    max_batch: 64,
};

/// A connection as the relay names it: (client, the client's connection).
type Key = (usize, ConnId);

#[derive(Debug)]
struct Mailbox {
    keys: MailboxPublic,
    pow_required: bool,
    stored: Vec<(EnvelopeId, Envelope)>,
    bundle: Option<Vec<u8>>,
    one_time: VecDeque<OneTimePrekey>,
    one_time_pq: VecDeque<OneTimePqPrekey>,
    state: Option<(UnixTime, Vec<u8>)>,
}

#[derive(Debug)]
struct Session {
    auth_challenge: Option<[u8; 32]>,
    pow_challenge: [u8; 32],
    mailbox: Option<MailboxId>,
    subscribed: bool,
}

/// A deposit frame as the relay received it.
#[derive(Clone, Debug)]
struct DepositSeen {
    /// The client whose connection carried it.
    by: usize,
    frame_len: usize,
    envelope_lens: Vec<usize>,
    /// The error the relay answered, if it refused the frame.
    refused: Option<ErrorCode>,
}

#[derive(Debug)]
struct Relay {
    limits: Limits,
    rng: ChaCha20Rng,
    mailboxes: BTreeMap<MailboxId, Mailbox>,
    directories: BTreeMap<[u8; 32], Vec<u8>>,
    sessions: BTreeMap<Key, Session>,
    deposits: Vec<DepositSeen>,
    /// Envelopes one mailbox may hold (the relay's `mailbox_max_envelopes`).
    mailbox_max: usize,
    /// Attachment blobs: the mailbox they belong to and their chunks.
    blobs: BTreeMap<BlobId, FakeBlob>,
    /// Chunk puts the relay refuses with `rate_limited` before storing
    /// any (to test the driver's retry).
    refuse_puts: usize,
}

/// An attachment blob on the fake relay: its mailbox and its chunks.
type FakeBlob = (MailboxId, Vec<Option<Vec<u8>>>);

/// How long the fake relay keeps an envelope.
const RETENTION_SECS: u64 = 7 * 24 * 3600;

impl Relay {
    fn new(limits: Limits) -> Self {
        Relay {
            limits,
            rng: ChaCha20Rng::from_seed([0xEE; 32]),
            mailboxes: BTreeMap::new(),
            directories: BTreeMap::new(),
            blobs: BTreeMap::new(),
            refuse_puts: 0,
            sessions: BTreeMap::new(),
            deposits: Vec::new(),
            mailbox_max: usize::MAX,
        }
    }

    fn random32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        b
    }

    /// A new connection: its session and the hello.
    fn connect(&mut self, key: Key) -> Vec<u8> {
        let pow_challenge = self.random32();
        self.sessions.insert(
            key,
            Session {
                auth_challenge: None,
                pow_challenge,
                mailbox: None,
                subscribed: false,
            },
        );
        ServerFrame::Hello {
            pow_challenge,
            pow_difficulty: self.limits.pow_difficulty,
            max_frame_len: self.limits.max_frame_len,
            max_batch: self.limits.max_batch,
        }
        .encode(PUSH_REQUEST_ID)
        .unwrap()
    }

    fn disconnect(&mut self, key: Key) {
        self.sessions.remove(&key);
    }

    fn session(&mut self, key: Key) -> &mut Session {
        self.sessions
            .get_mut(&key)
            .expect("a frame on a live connection")
    }

    /// One request: the reply to `key`, then any pushes (to `key` or to
    /// other subscribers).
    fn handle(&mut self, key: Key, bytes: &[u8], now: UnixTime) -> Vec<(Key, Vec<u8>)> {
        let mut pushes = Vec::new();
        let (request, reply) = match ClientFrame::decode(bytes) {
            Err(e) => (e.request_id, Err(e.code())),
            Ok((request, f)) => {
                let too_long = bytes.len() > self.limits.max_frame_len as usize;
                let deposit = match &f {
                    ClientFrame::Deposit { envelopes, .. } => Some(DepositSeen {
                        by: key.0,
                        frame_len: bytes.len(),
                        envelope_lens: envelopes.iter().map(Envelope::encoded_len).collect(),
                        refused: None,
                    }),
                    _ => None,
                };
                let reply = if too_long {
                    Err(ErrorCode::FrameTooLarge)
                } else {
                    self.apply(key, f, now, &mut pushes)
                };
                if let Some(mut d) = deposit {
                    d.refused = reply.as_ref().err().copied();
                    self.deposits.push(d);
                }
                (request, reply)
            }
        };
        let reply = reply.unwrap_or_else(|code| ServerFrame::Error { code });
        let mut out = vec![(key, reply.encode(request).unwrap())];
        out.extend(pushes);
        out
    }

    fn apply(
        &mut self,
        key: Key,
        f: ClientFrame,
        now: UnixTime,
        pushes: &mut Vec<(Key, Vec<u8>)>,
    ) -> Result<ServerFrame, ErrorCode> {
        let session_mailbox = self.session(key).mailbox;
        let need = || session_mailbox.ok_or(ErrorCode::NotAuthenticated);
        match f {
            ClientFrame::Challenge => {
                let challenge = self.random32();
                self.session(key).auth_challenge = Some(challenge);
                Ok(ServerFrame::Challenge { challenge })
            }
            ClientFrame::Register {
                keys,
                pow_required,
                signature,
            } => {
                let challenge = self
                    .session(key)
                    .auth_challenge
                    .take()
                    .ok_or(ErrorCode::AuthFailed)?;
                let id = keys.id();
                let msg = frame::register_message(&challenge, &id, pow_required);
                if !keys.auth.verify(&msg, &signature) {
                    return Err(ErrorCode::AuthFailed);
                }
                self.mailboxes
                    .entry(id)
                    .or_insert_with(|| Mailbox {
                        keys,
                        pow_required,
                        stored: Vec::new(),
                        bundle: None,
                        one_time: VecDeque::new(),
                        one_time_pq: VecDeque::new(),
                        state: None,
                    })
                    .pow_required = pow_required;
                self.session(key).mailbox = Some(id);
                Ok(ServerFrame::Ok)
            }
            ClientFrame::Auth { mailbox, signature } => {
                let challenge = self
                    .session(key)
                    .auth_challenge
                    .take()
                    .ok_or(ErrorCode::AuthFailed)?;
                let m = self
                    .mailboxes
                    .get(&mailbox)
                    .ok_or(ErrorCode::UnknownMailbox)?;
                if !m
                    .keys
                    .auth
                    .verify(&frame::auth_message(&challenge, &mailbox), &signature)
                {
                    return Err(ErrorCode::AuthFailed);
                }
                self.session(key).mailbox = Some(mailbox);
                Ok(ServerFrame::Ok)
            }
            ClientFrame::Subscribe => {
                let id = need()?;
                let stored = self
                    .mailboxes
                    .get(&id)
                    .ok_or(ErrorCode::UnknownMailbox)?
                    .stored
                    .clone();
                self.session(key).subscribed = true;
                for (eid, env) in &stored {
                    pushes.push((key, deliver(*eid, env, now)));
                }
                Ok(ServerFrame::Subscribed {
                    pending: stored.len() as u32,
                })
            }
            ClientFrame::Deposit {
                pow_nonce,
                envelopes,
            } => {
                if envelopes.len() > usize::from(self.limits.max_batch) {
                    return Err(ErrorCode::BatchTooLarge);
                }
                // An unknown recipient's envelopes are refused; a batch
                // for unknown recipients only is refused whole.
                let mut pow_required = false;
                let mut known = false;
                for e in &envelopes {
                    if let Some(m) = self.mailboxes.get(e.recipient()) {
                        pow_required |= m.pow_required;
                        known = true;
                    }
                }
                if !known {
                    return Err(ErrorCode::UnknownMailbox);
                }
                if pow_required && self.limits.pow_difficulty > 0 {
                    let nonce = pow_nonce.ok_or(ErrorCode::PowRequired)?;
                    let challenge = self.session(key).pow_challenge;
                    pow::verify(
                        &challenge,
                        &frame::deposit_batch_hash(&envelopes),
                        pow::batch_difficulty(self.limits.pow_difficulty, envelopes.len()),
                        nonce,
                    )
                    .map_err(|_| ErrorCode::PowInvalid)?;
                }
                // Per recipient: what the batch adds must fit its mailbox,
                // or all of that recipient's new envelopes are refused.
                let held = |m: &Mailbox, e: &Envelope| {
                    m.stored
                        .iter()
                        .any(|(id, _)| *id == EnvelopeId::of(&e.encode()))
                };
                let mut refused = Vec::new();
                for (i, e) in envelopes.iter().enumerate() {
                    let Some(m) = self.mailboxes.get(e.recipient()) else {
                        refused.push(frame::Refused {
                            index: i as u16,
                            code: ErrorCode::UnknownMailbox,
                        });
                        continue;
                    };
                    let mut new: Vec<EnvelopeId> = envelopes
                        .iter()
                        .filter(|x| x.recipient() == e.recipient() && !held(m, x))
                        .map(|x| EnvelopeId::of(&x.encode()))
                        .collect();
                    new.sort();
                    new.dedup();
                    if !held(m, e) && m.stored.len() + new.len() > self.mailbox_max {
                        refused.push(frame::Refused {
                            index: i as u16,
                            code: ErrorCode::QuotaExceeded,
                        });
                    }
                }
                if refused.len() == envelopes.len() {
                    return Err(ErrorCode::QuotaExceeded);
                }
                debug_assert!(refused.is_sorted_by_key(|r| r.index));
                if pow_required && self.limits.pow_difficulty > 0 {
                    let next = self.random32();
                    self.session(key).pow_challenge = next;
                }
                let accepted = (envelopes.len() - refused.len()) as u16;
                for (i, e) in envelopes.into_iter().enumerate() {
                    if !refused.iter().any(|r| usize::from(r.index) == i) {
                        pushes.extend(self.store(e, now));
                    }
                }
                Ok(ServerFrame::Deposited {
                    accepted,
                    next_pow_challenge: self.session(key).pow_challenge,
                    refused,
                })
            }
            ClientFrame::Ack { ids } => {
                let m = self
                    .mailboxes
                    .get_mut(&need()?)
                    .ok_or(ErrorCode::UnknownMailbox)?;
                let before = m.stored.len();
                m.stored.retain(|(id, _)| !ids.contains(id));
                Ok(ServerFrame::Acked {
                    deleted: (before - m.stored.len()) as u32,
                })
            }
            ClientFrame::PublishDirectory { directory } => {
                let signed =
                    SignedDirectory::decode(&directory).map_err(|_| ErrorCode::DirectoryInvalid)?;
                let org = *signed.claimed_org().as_bytes();
                let previous = self
                    .directories
                    .get(&org)
                    .and_then(|b| SignedDirectory::decode(b).ok())
                    .map(|d| d.version());
                signed
                    .verify_self_signed(previous.as_ref())
                    .map_err(|_| ErrorCode::DirectoryRollback)?;
                self.directories.insert(org, directory);
                Ok(ServerFrame::Ok)
            }
            ClientFrame::FetchDirectory { org_key } => self
                .directories
                .get(&org_key.0)
                .map(|d| ServerFrame::Directory {
                    directory: d.clone(),
                })
                .ok_or(ErrorCode::NotFound),
            ClientFrame::UploadPrekeys {
                signed_bundle,
                one_time,
                one_time_pq,
                replace,
            } => {
                let m = self
                    .mailboxes
                    .get_mut(&need()?)
                    .ok_or(ErrorCode::UnknownMailbox)?;
                m.bundle = Some(signed_bundle);
                if replace {
                    m.one_time.clear();
                    m.one_time_pq.clear();
                }
                m.one_time
                    .retain(|k| !one_time.iter().any(|n| n.id == k.id));
                m.one_time.extend(one_time);
                m.one_time_pq
                    .retain(|k| !one_time_pq.iter().any(|n| n.id == k.id));
                m.one_time_pq.extend(one_time_pq);
                Ok(ServerFrame::PrekeysStored {
                    one_time_count: m.one_time.len() as u32,
                    one_time_pq_count: m.one_time_pq.len() as u32,
                })
            }
            ClientFrame::FetchPrekeys { mailbox } => {
                let m = self
                    .mailboxes
                    .get_mut(&mailbox)
                    .ok_or(ErrorCode::NotFound)?;
                let signed_bundle = m.bundle.clone().ok_or(ErrorCode::NotFound)?;
                Ok(ServerFrame::Prekeys {
                    signed_bundle,
                    one_time: m.one_time.pop_front(),
                    one_time_pq: m.one_time_pq.pop_front(),
                })
            }
            ClientFrame::PutState { ttl_hours, blob } => {
                let m = self
                    .mailboxes
                    .get_mut(&need()?)
                    .ok_or(ErrorCode::UnknownMailbox)?;
                let expires_at = UnixTime(now.0 + u64::from(ttl_hours) * 3600).ceil_hour();
                m.state = Some((expires_at, blob));
                Ok(ServerFrame::StateStored { expires_at })
            }
            ClientFrame::GetState => self
                .mailboxes
                .get(&need()?)
                .ok_or(ErrorCode::UnknownMailbox)?
                .state
                .clone()
                .map(|(expires_at, blob)| ServerFrame::State { expires_at, blob })
                .ok_or(ErrorCode::NotFound),
            ClientFrame::DeleteState => {
                if let Some(m) = self.mailboxes.get_mut(&need()?) {
                    m.state = None;
                }
                Ok(ServerFrame::Ok)
            }
            ClientFrame::DeleteMailbox => {
                let id = need()?;
                self.mailboxes.remove(&id);
                self.blobs.retain(|_, (m, _)| *m != id);
                self.session(key).mailbox = None;
                Ok(ServerFrame::Ok)
            }
            ClientFrame::PutChunk {
                mailbox,
                blob,
                chunk_count,
                index,
                chunk,
            } => {
                if self.refuse_puts > 0 {
                    self.refuse_puts -= 1;
                    return Err(ErrorCode::RateLimited);
                }
                if !self.mailboxes.contains_key(&mailbox) {
                    return Err(ErrorCode::UnknownMailbox);
                }
                let (m, chunks) = self
                    .blobs
                    .entry(blob)
                    .or_insert_with(|| (mailbox, vec![None; usize::from(chunk_count)]));
                if *m != mailbox || chunks.len() != usize::from(chunk_count) {
                    return Err(ErrorCode::BlobMismatch);
                }
                chunks[usize::from(index)] = Some(chunk);
                Ok(ServerFrame::ChunkStored {
                    index,
                    held: chunks.iter().filter(|c| c.is_some()).count() as u16,
                })
            }
            ClientFrame::BlobStatus { blob } => self
                .blobs
                .get(&blob)
                .map(|(_, c)| ServerFrame::BlobChunks {
                    present: c.iter().map(Option::is_some).collect(),
                })
                .ok_or(ErrorCode::NotFound),
            ClientFrame::GetChunk { blob, index } => self
                .blobs
                .get(&blob)
                .and_then(|(_, c)| c.get(usize::from(index)).cloned().flatten())
                .map(|chunk| ServerFrame::Chunk { index, chunk })
                .ok_or(ErrorCode::NotFound),
            ClientFrame::DeleteBlob { blob, token } => {
                if !token.opens(&blob) {
                    return Err(ErrorCode::BlobDeleteRefused);
                }
                self.blobs.remove(&blob);
                Ok(ServerFrame::Ok)
            }
        }
    }

    /// Stores an envelope for its (registered) recipient and pushes it to
    /// every connection subscribed to that mailbox.
    fn store(&mut self, env: Envelope, now: UnixTime) -> Vec<(Key, Vec<u8>)> {
        let to = *env.recipient();
        let id = EnvelopeId::of(&env.encode());
        let m = self.mailboxes.get_mut(&to).expect("a registered recipient");
        if m.stored.iter().any(|(e, _)| *e == id) {
            return Vec::new();
        }
        m.stored.push((id, env.clone()));
        self.sessions
            .iter()
            .filter(|(_, s)| s.subscribed && s.mailbox == Some(to))
            .map(|(k, _)| (*k, deliver(id, &env, now)))
            .collect()
    }
}

fn deliver(id: EnvelopeId, envelope: &Envelope, now: UnixTime) -> Vec<u8> {
    ServerFrame::Deliver {
        id,
        expires_at: UnixTime(now.0 + RETENTION_SECS).ceil_hour(),
        envelope: envelope.clone(),
    }
    .encode(PUSH_REQUEST_ID)
    .unwrap()
}

// ------------------------------------------------------------ the shell

/// One output, as the shell carried it out.
#[derive(Debug)]
enum Rec {
    Connect {
        conn: ConnId,
        kind: ConnKind,
        url: String,
    },
    Send {
        conn: ConnId,
        frame: ClientFrame,
    },
    Close {
        conn: ConnId,
    },
    Persist {
        sealed: Vec<u8>,
    },
    Work {
        difficulty: u8,
    },
    Event(Event),
}

#[derive(Debug)]
struct Client {
    driver: Driver,
    log: Vec<Rec>,
    persisted: Option<Vec<u8>>,
    open: BTreeMap<ConnId, ConnKind>,
    /// The file the shell attaches (`Output::ReadFile` reads it).
    file: Vec<u8>,
    /// Slices read, as (offset, len).
    reads: Vec<(u64, usize)>,
    /// What `Output::WriteFile` wrote.
    written: Vec<u8>,
}

/// What happens to a frame on its way to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Pass,
    /// The connection drops before the relay reads the frame.
    Drop,
    /// The relay reads nothing and answers nothing (a hung node).
    Mute,
    /// The answer is bytes that are no frame.
    Garble,
    /// The relay carries the frame out, then the connection drops before
    /// its reply arrives.
    Lose,
}

type FaultFn = Box<dyn FnMut(usize, &ClientFrame) -> Fault>;

/// Whether a connection a client opens (of a kind) is closed before the
/// relay's hello.
type RefuseFn = Box<dyn FnMut(usize, ConnKind) -> bool>;

/// The shell of every driver of a test, one relay and a fake clock.
struct Net {
    relay: Relay,
    config: Config,
    now: UnixTime,
    clients: Vec<Client>,
    /// Frames from the relay not yet handed to their driver, in order.
    inbox: VecDeque<(usize, ConnId, Vec<u8>)>,
    /// Relay URLs that cannot be reached: their connections close before
    /// the hello.
    down: BTreeSet<String>,
    /// Relay URLs that accept the connection and then never say hello.
    silent: BTreeSet<String>,
    /// Relay URLs that speak frame version 1 (their hello says so).
    version_1: BTreeSet<String>,
    /// Decides the fate of every frame a driver sends (all pass if `None`).
    fault: Option<FaultFn>,
    /// Decides which connections cannot be opened (all open if `None`).
    refuse: Option<RefuseFn>,
    next_seed: u8,
}

impl Net {
    fn new(org: &OrgSigningKey, limits: Limits) -> Self {
        Self::with_relays(org, limits, &[RELAY])
    }

    fn with_relays(org: &OrgSigningKey, limits: Limits, relays: &[&str]) -> Self {
        Net {
            relay: Relay::new(limits),
            config: Config {
                relays: relays.iter().map(|r| (*r).to_owned()).collect(),
                org: org.public(),
            },
            now: T0,
            clients: Vec::new(),
            inbox: VecDeque::new(),
            down: BTreeSet::new(),
            silent: BTreeSet::new(),
            version_1: BTreeSet::new(),
            fault: None,
            refuse: None,
            next_seed: 1,
        }
    }

    fn seed(&mut self) -> Zeroizing<[u8; 32]> {
        self.next_seed += 1;
        Zeroizing::new([self.next_seed; 32])
    }

    fn add(&mut self, driver: Driver) -> usize {
        self.clients.push(Client {
            driver,
            log: Vec::new(),
            persisted: None,
            open: BTreeMap::new(),
            file: Vec::new(),
            reads: Vec::new(),
            written: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// A seeker's (or administrator's) driver.
    fn plain(&mut self) -> usize {
        let seed = self.seed();
        self.add(Driver::new(self.config.clone(), seed))
    }

    /// A counselor device's driver, from its newest persisted state.
    fn counselor(&mut self, device: &Device) -> usize {
        let seed = self.seed();
        let d = Driver::counselor(
            self.config.clone(),
            seed,
            StateKey::from_bytes(device.key.clone()),
            &device.sealed,
        )
        .unwrap();
        self.add(d)
    }

    /// Starts a command (which must be accepted) and runs until quiet.
    fn start(&mut self, i: usize, cmd: Command) -> CommandId {
        let now = self.now;
        let id = self.clients[i].driver.command(cmd, now).unwrap();
        self.run();
        id
    }

    /// Runs a command to its end; its outcome.
    fn exec(&mut self, i: usize, cmd: Command) -> Result<Outcome, DriverError> {
        let id = self.start(i, cmd);
        self.outcome(i, id)
    }

    fn outcome(&self, i: usize, cmd: CommandId) -> Result<Outcome, DriverError> {
        self.try_outcome(i, cmd)
            .unwrap_or_else(|| panic!("command {cmd:?} of client {i} has not finished"))
    }

    fn try_outcome(&self, i: usize, cmd: CommandId) -> Option<Result<Outcome, DriverError>> {
        self.clients[i].log.iter().find_map(|r| match r {
            Rec::Event(Event::Done { command, outcome }) if *command == cmd => {
                Some(Ok(outcome.clone()))
            }
            Rec::Event(Event::Failed { command, error }) if *command == cmd => {
                Some(Err(error.clone()))
            }
            _ => None,
        })
    }

    /// Carries out outputs and delivers frames until nothing moves.
    fn run(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some(out) = self.clients[i].driver.poll_output() {
                    moved = true;
                    self.carry_out(i, out);
                }
            }
            if let Some((i, conn, bytes)) = self.inbox.pop_front() {
                // Frames for a connection closed meanwhile are lost with it.
                if self.clients[i].open.contains_key(&conn) {
                    let now = self.now;
                    self.clients[i].driver.handle_frame(conn, &bytes, now);
                }
                continue;
            }
            if !moved {
                return;
            }
        }
        panic!("the drivers never settle");
    }

    fn carry_out(&mut self, i: usize, out: Output) {
        let now = self.now;
        match out {
            Output::Connect { conn, kind, url } => {
                let refused = match self.refuse.as_mut() {
                    Some(f) => f(i, kind),
                    None => false,
                };
                let down = refused || self.down.contains(&url);
                self.clients[i].log.push(Rec::Connect {
                    conn,
                    kind,
                    url: url.clone(),
                });
                if down {
                    self.clients[i].driver.handle_closed(conn, now);
                    return;
                }
                self.clients[i].open.insert(conn, kind);
                self.clients[i].driver.handle_connected(conn, now);
                if self.silent.contains(&url) {
                    return;
                }
                let mut hello = self.relay.connect((i, conn));
                if self.version_1.contains(&url) {
                    hello[0] = 1;
                }
                self.inbox.push_back((i, conn, hello));
            }
            Output::Send { conn, frame } => {
                let (_, decoded) =
                    ClientFrame::decode(&frame).expect("the driver sends valid frames");
                assert!(
                    self.clients[i].open.contains_key(&conn),
                    "{decoded:?} sent on a connection that is not open"
                );
                let fate = match self.fault.as_mut() {
                    Some(f) => f(i, &decoded),
                    None => Fault::Pass,
                };
                self.clients[i].log.push(Rec::Send {
                    conn,
                    frame: decoded,
                });
                match fate {
                    Fault::Pass => {}
                    Fault::Mute => return,
                    Fault::Garble => {
                        self.inbox.push_back((i, conn, vec![0xFF, 0, 1]));
                        return;
                    }
                    Fault::Drop => {
                        self.clients[i].open.remove(&conn);
                        self.relay.disconnect((i, conn));
                        self.clients[i].driver.handle_closed(conn, now);
                        return;
                    }
                    Fault::Lose => {
                        for ((to, c), bytes) in self.relay.handle((i, conn), &frame, now) {
                            if (to, c) != (i, conn) {
                                self.inbox.push_back((to, c, bytes));
                            }
                        }
                        self.clients[i].open.remove(&conn);
                        self.relay.disconnect((i, conn));
                        self.clients[i].driver.handle_closed(conn, now);
                        return;
                    }
                }
                for ((to, c), bytes) in self.relay.handle((i, conn), &frame, now) {
                    self.inbox.push_back((to, c, bytes));
                }
            }
            Output::Close { conn } => {
                self.clients[i].log.push(Rec::Close { conn });
                self.clients[i].open.remove(&conn);
                self.relay.disconnect((i, conn));
            }
            Output::Persist { sealed } => {
                self.clients[i].persisted = Some(sealed.clone());
                self.clients[i].log.push(Rec::Persist { sealed });
            }
            Output::Work { work, job } => {
                let Work::ProofOfWork {
                    challenge,
                    batch_hash,
                    difficulty,
                } = job;
                self.clients[i].log.push(Rec::Work { difficulty });
                let nonce = pow::solve(&challenge, &batch_hash, difficulty).unwrap();
                self.clients[i].driver.handle_work(work, nonce, now);
            }
            Output::Event(e) => self.clients[i].log.push(Rec::Event(e)),
            Output::ReadFile { read, offset, len } => {
                let c = &mut self.clients[i];
                c.reads.push((offset, len));
                let start = offset as usize;
                let bytes = c
                    .file
                    .get(start..start + len)
                    .map(|s| Zeroizing::new(s.to_vec()));
                c.driver.handle_read(read, bytes, now);
            }
            Output::WriteFile { data, .. } => {
                self.clients[i].written.extend_from_slice(&data.0);
            }
        }
    }

    /// The relay (or the network) drops a connection.
    fn drop_conn(&mut self, i: usize, conn: ConnId) {
        assert!(self.clients[i].open.remove(&conn).is_some());
        self.relay.disconnect((i, conn));
        let now = self.now;
        self.clients[i].driver.handle_closed(conn, now);
        self.run();
    }

    /// The process behind a driver exits (after closing its connections).
    fn close(&mut self, i: usize) {
        let open: Vec<ConnId> = self.clients[i].open.keys().copied().collect();
        let mark = self.mark(i);
        self.clients[i].driver.close();
        self.run();
        for c in open {
            assert!(
                self.clients[i].log[mark..]
                    .iter()
                    .any(|r| matches!(r, Rec::Close { conn } if *conn == c)),
                "close left {c:?} open"
            );
        }
        assert!(self.clients[i].open.is_empty());
    }

    /// The client's open connections of a kind.
    fn open_of(&self, i: usize, kind: ConnKind) -> Vec<ConnId> {
        self.clients[i]
            .open
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(c, _)| *c)
            .collect()
    }

    /// Moves the clock to each wake-up a driver asks for, up to `until`.
    fn run_until(&mut self, until: UnixTime) {
        for _ in 0..10_000 {
            self.run();
            let next = self
                .clients
                .iter()
                .filter_map(|c| c.driver.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for c in &mut self.clients {
                        if c.driver.poll_timeout().is_some_and(|t| t <= now) {
                            c.driver.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("timers keep firing");
    }

    /// Stores an envelope on the relay as if deposited by a stranger.
    fn inject(&mut self, env: Envelope) {
        let now = self.now;
        for ((to, c), bytes) in self.relay.store(env, now) {
            self.inbox.push_back((to, c, bytes));
        }
        self.run();
    }

    fn events(&self, i: usize) -> Vec<Event> {
        self.events_since(i, 0)
    }

    fn events_since(&self, i: usize, mark: usize) -> Vec<Event> {
        self.clients[i].log[mark..]
            .iter()
            .filter_map(|r| match r {
                Rec::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn team_events(&self, i: usize) -> Vec<TeamEvent> {
        self.events(i)
            .into_iter()
            .filter_map(|e| match e {
                Event::Team(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn mark(&self, i: usize) -> usize {
        self.clients[i].log.len()
    }

    /// The client's open mailbox connection.
    fn mailbox_conn(&self, i: usize) -> ConnId {
        let c = &self.clients[i];
        c.log
            .iter()
            .rev()
            .find_map(|r| match r {
                Rec::Connect {
                    conn,
                    kind: ConnKind::Mailbox,
                    ..
                } if c.open.contains_key(conn) => Some(*conn),
                _ => None,
            })
            .expect("an open mailbox connection")
    }

    /// Every frame the client sent since `mark`.
    fn sent_since(&self, i: usize, mark: usize) -> Vec<&ClientFrame> {
        self.clients[i].log[mark..]
            .iter()
            .filter_map(|r| match r {
                Rec::Send { frame, .. } => Some(frame),
                _ => None,
            })
            .collect()
    }

    /// The newest state the device persisted, opened.
    fn saved_state(&self, i: usize, device: &Device) -> DeviceState {
        let sealed = self.clients[i]
            .persisted
            .as_ref()
            .expect("a persisted state");
        DeviceState::open(&StateKey::from_bytes(device.key.clone()), sealed).unwrap()
    }
}

/// Asserts that in `log[mark..]` every frame `pick` selects comes after a
/// `Persist` (itself after `mark`), and that there is at least one such
/// frame. Returns, for each, the blob persisted last before it, so a test
/// can check that it already holds what the frame sends or acknowledges.
fn persisted_before(log: &[Rec], mark: usize, pick: impl Fn(&ClientFrame) -> bool) -> Vec<&[u8]> {
    let mut last: Option<&[u8]> = None;
    let mut out = Vec::new();
    for r in &log[mark..] {
        match r {
            Rec::Persist { sealed } => last = Some(sealed),
            Rec::Send { frame, .. } if pick(frame) => {
                out.push(last.unwrap_or_else(|| panic!("{frame:?} sent before any Persist")));
            }
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no such frame was sent");
    out
}

fn is_deposit(f: &ClientFrame) -> bool {
    matches!(f, ClientFrame::Deposit { .. })
}

fn is_ack(f: &ClientFrame) -> bool {
    matches!(f, ClientFrame::Ack { .. })
}

// ------------------------------------------------------------ the world

/// A counselor device: its state key and the sealed state it starts from.
#[derive(Debug, Clone)]
struct Device {
    id: DeviceId,
    key: Zeroizing<[u8; 32]>,
    sealed: Vec<u8>,
    mailbox: MailboxId,
}

/// An organisation with `n` fresh counselor devices, all in the first
/// team, and its signed directory.
fn org_with_devices(n: u32, seed: u8) -> (OrgSigningKey, Vec<Device>, SignedDirectory) {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let org = OrgSigningKey::generate(&mut rng);
    let mut dir = Directory::new(org.public(), 1, T0);
    let mut teams = Directory::default_teams();
    let mut devices = Vec::new();
    for i in 1..=n {
        let state = DeviceState::generate(org.public(), &mut rng);
        let key = StateKey::generate(&mut rng);
        let public = state.counselor.public();
        teams[0].devices.push(DeviceEntry {
            id: DeviceId(i),
            label: format!("device-{i}"),
            identity: public.identity,
            mailbox: public.mailbox,
        });
        devices.push(Device {
            id: DeviceId(i),
            key: Zeroizing::new(*key.as_bytes()),
            sealed: state.seal(&key, &mut rng).unwrap(),
            mailbox: public.mailbox.id(),
        });
    }
    dir.teams = teams;
    let signed = dir.sign(&org).unwrap();
    (org, devices, signed)
}

/// The administrator publishes the directory through a driver.
fn publish(net: &mut Net, directory: SignedDirectory) {
    let admin = net.plain();
    let serial = directory.version().serial;
    assert_eq!(
        net.exec(admin, Command::Publish { directory }),
        Ok(Outcome::Published { serial })
    );
}

/// The administrator's next directory: `edit` applied to `previous`,
/// serial + 1, issued at `now` (and expiring one lifetime later).
fn next_directory(
    org: &OrgSigningKey,
    previous: &SignedDirectory,
    now: UnixTime,
    edit: impl FnOnce(&mut Directory),
) -> SignedDirectory {
    let verified = previous.verify_stored(&org.public()).unwrap();
    let mut next = verified.directory().successor(now).unwrap();
    edit(&mut next);
    next.sign(org).unwrap()
}

/// A new counselor device (not yet in any directory) and its entry.
fn new_device(org: &OrgSigningKey, id: u32, seed: u8) -> (Device, DeviceEntry) {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let state = DeviceState::generate(org.public(), &mut rng);
    let key = StateKey::generate(&mut rng);
    let public = state.counselor.public();
    let device = Device {
        id: DeviceId(id),
        key: Zeroizing::new(*key.as_bytes()),
        sealed: state.seal(&key, &mut rng).unwrap(),
        mailbox: public.mailbox.id(),
    };
    let entry = DeviceEntry {
        id: DeviceId(id),
        label: format!("device-{id}"),
        identity: public.identity,
        mailbox: public.mailbox,
    };
    (device, entry)
}

/// A device's driver that has synced (registered, prekeys up, receiving).
fn synced(net: &mut Net, device: &Device) -> usize {
    let i = net.counselor(device);
    assert_eq!(net.exec(i, Command::Sync), Ok(Outcome::Synced));
    i
}

/// Keeps a device's newest persisted state for the next driver.
fn keep(net: &Net, i: usize, device: &mut Device) {
    device.sealed = net.clients[i].persisted.clone().expect("persisted");
}

fn secrets_for(org: &OrgSigningKey, seed: u8) -> (Codename, SeekerSecrets) {
    let codename = Codename::generate(Language::En, &mut ChaCha20Rng::from_seed([seed; 32]));
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    (codename, secrets)
}

fn start_cmd(secrets: SeekerSecrets, text: &str) -> Command {
    Command::SeekerStart {
        secrets: Box::new(secrets),
        team_slug: TEAM.into(),
        language: Language::Es,
        answers: crate::intake::IntakeAnswers::none(),
        text: text.into(),
    }
}

fn new_conversations(net: &Net, i: usize) -> Vec<MailboxId> {
    net.team_events(i)
        .into_iter()
        .filter_map(|e| match e {
            TeamEvent::NewConversation { conversation } => Some(conversation),
            _ => None,
        })
        .collect()
}

fn text_of(kind: &EntryKind) -> &str {
    match kind {
        EntryKind::Text(t) | EntryKind::Referral { text: t, .. } => t.as_str(),
        EntryKind::Attachment(a) => a.info.name.as_str(),
    }
}

/// Garbage no device or seeker can open, addressed to `to`.
fn garbage_for(to: MailboxId) -> Envelope {
    Envelope::from_parts(to, vec![0x5A; 32 + 256 + 16]).unwrap()
}

// ------------------------------------------------------------ the tests

#[test]
fn seeker_start_then_come_back_reads_the_counselors_reply() {
    let (org, mut devices, directory) = org_with_devices(2, 1);
    let mut net = Net::new(
        &org,
        Limits {
            pow_difficulty: 6,
            ..ROOMY
        },
    );
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    for d in &devices {
        let m = &net.relay.mailboxes[&d.mailbox];
        assert!(m.pow_required, "a device asks depositors for proof of work");
        assert_eq!(m.one_time.len(), super::PREKEY_TARGET as usize);
    }
    // Device B's process stops; it will catch up from the relay later.
    keep(&net, b, &mut devices[1]);
    net.close(b);

    let (codename, secrets) = secrets_for(&org, 2);
    let seeker = net.plain();
    let started = net.exec(seeker, start_cmd(secrets, "Tengo 17 años y estoy solo."));
    let Ok(Outcome::Started { expires_at }) = started else {
        panic!("start failed: {started:?}");
    };
    // Kept until the directory's retention after the opening (to the hour).
    let retention = crate::directory::DEFAULT_RETENTION_SECS;
    assert_eq!(
        expires_at,
        UnixTime(crate::message::sent_at_of(T0).0 + retention).ceil_hour()
    );
    assert_eq!(
        net.clients[seeker].driver.seeker_deletion_at(),
        Some(UnixTime(crate::message::sent_at_of(T0).0 + retention))
    );
    assert_eq!(net.clients[seeker].driver.expires_at(), Some(expires_at));
    assert!(
        net.clients[seeker]
            .log
            .iter()
            .any(|r| matches!(r, Rec::Work { .. })),
        "deposits to devices carried a proof of work"
    );
    // The conversation is saved on the relay before the opening goes out.
    let sent = net.sent_since(seeker, 0);
    let put = sent
        .iter()
        .position(|f| matches!(f, ClientFrame::PutState { .. }))
        .expect("saved");
    let deposit = sent.iter().position(|f| is_deposit(f)).expect("deposited");
    assert!(put < deposit);
    // A is online and sees the new conversation at once.
    let convs = new_conversations(&net, a);
    assert_eq!(convs.len(), 1);
    let conv = convs[0];
    assert!(
        net.relay.mailboxes.contains_key(&conv),
        "the seeker's mailbox"
    );
    assert!(
        net.relay.mailboxes[&devices[0].mailbox].stored.is_empty(),
        "A acknowledged the opening"
    );
    // The seeker leaves.
    net.close(seeker);

    let reply = "Estamos aquí para ayudarte.";
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply { text: reply.into() },
            }
        ),
        Ok(Outcome::Acted)
    );
    assert_eq!(
        net.relay.mailboxes[&conv].stored.len(),
        1,
        "the reply waits"
    );

    // B comes back: its sync reads the opening and A's copy of the reply.
    let b = synced(&mut net, &devices[1]);
    assert_eq!(new_conversations(&net, b), vec![conv]);
    let history = net.clients[b]
        .driver
        .with_counselor(|c| c.conversation(&conv).unwrap().history.clone())
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].author, Author::Counselor(devices[0].id));
    assert_eq!(text_of(&history[1].kind), reply);
    assert!(net.relay.mailboxes[&devices[1].mailbox].stored.is_empty());

    // The seeker comes back on a fresh driver with only the codename.
    let again = Codename::parse(&codename.to_zeroizing_string()).unwrap();
    let secrets = again.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    let opened = net.exec(
        back,
        Command::SeekerOpen {
            secrets: Box::new(secrets),
        },
    );
    assert_eq!(opened, Ok(Outcome::Opened { expires_at }));
    let got: Vec<_> = net
        .events(back)
        .into_iter()
        .filter_map(|e| match e {
            Event::SeekerMessage(entry) => Some(entry),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].author, Author::Counselor(devices[0].id));
    let conversation = net.clients[back].driver.seeker_conversation().unwrap();
    assert_eq!(conversation.history.len(), 2);
    assert_eq!(conversation.history[0].author, Author::Seeker);
    assert_eq!(
        text_of(&conversation.history[0].kind),
        "Tengo 17 años y estoy solo."
    );
    assert_eq!(text_of(&conversation.history[1].kind), reply);
    // Saved with the reply (and with each batch of receipts) before
    // acknowledging it: every acknowledgement follows a save made since
    // the one before; then it is gone.
    let sent = net.sent_since(back, 0);
    let mut saved_since_ack = false;
    let mut acks = 0;
    for f in &sent {
        match f {
            ClientFrame::PutState { .. } => saved_since_ack = true,
            f if is_ack(f) => {
                assert!(saved_since_ack, "saved before acknowledging");
                saved_since_ack = false;
                acks += 1;
            }
            _ => {}
        }
    }
    assert!(acks >= 1, "acknowledged");
    assert!(net.relay.mailboxes[&conv].stored.is_empty());
}

/// 16 KiB of text (the most one message carries): an opening this long
/// lands in the 32 KiB padding bucket.
fn long_text() -> String {
    let mut t = "Necesito ayuda. ".repeat(MAX_TEXT_LEN / 16 + 1);
    t.truncate(MAX_TEXT_LEN);
    t
}

#[test]
fn fan_out_to_forty_devices_with_max_batch_8_and_1_mib_frames_reaches_every_device() {
    let (org, mut devices, directory) = org_with_devices(40, 3);
    let mut net = Net::new(
        &org,
        Limits {
            pow_difficulty: 0,
            max_frame_len: MIB,
            max_batch: 8,
        },
    );
    publish(&mut net, directory);
    for d in &mut devices {
        let i = synced(&mut net, d);
        keep(&net, i, d);
        net.close(i);
    }
    let (_, secrets) = secrets_for(&org, 4);
    let seeker = net.plain();
    let started = net.exec(seeker, start_cmd(secrets, &long_text()));
    assert!(
        matches!(started, Ok(Outcome::Started { .. })),
        "{started:?}"
    );

    let deposits = &net.relay.deposits;
    assert_eq!(deposits.len(), 5, "40 envelopes in batches of 8");
    for d in deposits {
        assert_eq!(d.refused, None);
        assert!(
            d.envelope_lens.len() <= 8,
            "{} envelopes",
            d.envelope_lens.len()
        );
        assert!(d.frame_len <= MIB as usize, "{} bytes", d.frame_len);
        for len in &d.envelope_lens {
            assert!(*len > BUCKETS[2], "padded to the 32 KiB bucket: {len}");
        }
    }
    assert_eq!(
        deposits
            .iter()
            .map(|d| d.envelope_lens.len())
            .sum::<usize>(),
        40
    );
    let conv = *net
        .relay
        .mailboxes
        .keys()
        .find(|m| !devices.iter().any(|d| d.mailbox == **m))
        .expect("the seeker's mailbox");

    for d in &devices {
        let i = synced(&mut net, d);
        assert_eq!(new_conversations(&net, i), vec![conv], "device {:?}", d.id);
        let text = net.clients[i]
            .driver
            .with_counselor(|c| {
                let h = &c.conversation(&conv).unwrap().history;
                text_of(&h[0].kind).to_owned()
            })
            .unwrap();
        assert_eq!(text, long_text());
        net.close(i);
    }
}

#[test]
fn each_deposit_frame_proves_work_for_as_many_envelopes_as_it_carries() {
    let (org, mut devices, directory) = org_with_devices(12, 5);
    let mut net = Net::new(
        &org,
        Limits {
            pow_difficulty: 4,
            max_batch: 8,
            ..ROOMY
        },
    );
    publish(&mut net, directory);
    for d in &mut devices {
        let i = synced(&mut net, d);
        keep(&net, i, d);
        net.close(i);
    }
    let (_, secrets) = secrets_for(&org, 6);
    let seeker = net.plain();
    let started = net.exec(seeker, start_cmd(secrets, "hola"));
    assert!(
        matches!(started, Ok(Outcome::Started { .. })),
        "{started:?}"
    );
    // 12 envelopes in frames of 8 and 4: 4 + 3 and 4 + 2 bits, each
    // verified by the relay at that difficulty.
    let works: Vec<u8> = net.clients[seeker]
        .log
        .iter()
        .filter_map(|r| match r {
            Rec::Work { difficulty } => Some(*difficulty),
            _ => None,
        })
        .collect();
    assert_eq!(works, vec![7, 6]);
    let counts: Vec<usize> = net
        .relay
        .deposits
        .iter()
        .map(|d| d.envelope_lens.len())
        .collect();
    assert_eq!(counts, vec![8, 4]);
    assert!(net.relay.deposits.iter().all(|d| d.refused.is_none()));
}

/// Fills `mailbox` on the relay with garbage up to `n` envelopes.
fn fill(net: &mut Net, mailbox: MailboxId, n: usize) {
    let m = net.relay.mailboxes.get_mut(&mailbox).unwrap();
    let mut k = 0u8;
    while m.stored.len() < n {
        let g = Envelope::from_parts(mailbox, vec![k; 32 + 256 + 16]).unwrap();
        m.stored.push((EnvelopeId::of(&g.encode()), g));
        k += 1;
    }
}

#[test]
fn one_full_counselor_mailbox_does_not_keep_a_seeker_from_the_rest_of_the_team() {
    let quota = ErrorCode::QuotaExceeded;
    // One frame partly refused (max batch 64), or one frame refused whole
    // among frames that are stored (max batch 1).
    for (max_batch, seed) in [(64u16, 60u8), (1, 70)] {
        let (org, mut devices, directory) = org_with_devices(4, seed);
        let mut net = Net::new(
            &org,
            Limits {
                pow_difficulty: 2,
                max_batch,
                ..ROOMY
            },
        );
        publish(&mut net, directory);
        for d in &mut devices {
            let i = synced(&mut net, d);
            keep(&net, i, d);
            net.close(i);
        }
        // Device 3 is offline and its mailbox is at the relay's quota.
        net.relay.mailbox_max = 3;
        let full = devices[2].mailbox;
        fill(&mut net, full, 3);
        let (_, secrets) = secrets_for(&org, seed + 1);
        let seeker = net.plain();
        let started = net.exec(seeker, start_cmd(secrets, "hola"));
        assert!(
            matches!(started, Ok(Outcome::Started { .. })),
            "{started:?}"
        );
        let partly = Event::PartlyRefused {
            refused: 1,
            of: 4,
            code: quota,
        };
        assert!(
            net.events(seeker).contains(&partly),
            "max batch {max_batch}"
        );
        assert_eq!(net.relay.mailboxes[&full].stored.len(), 3);
        // The rest of the team has the conversation.
        for d in devices.iter().filter(|d| d.mailbox != full) {
            let i = synced(&mut net, d);
            assert_eq!(new_conversations(&net, i).len(), 1, "device {:?}", d.id);
            net.close(i);
        }
        // Writing again: sent (not kept for later), the same notice.
        let mark = net.mark(seeker);
        let write = |text: &str| Command::SeekerWrite { text: text.into() };
        assert!(matches!(
            net.exec(seeker, write("¿sigue ahí?")),
            Ok(Outcome::Sent { .. })
        ));
        assert!(net.events_since(seeker, mark).contains(&partly));
        // When every mailbox is full, nothing went out: the message is kept.
        net.relay.mailbox_max = 0;
        assert_eq!(
            net.exec(seeker, write("¿hola?")),
            Err(DriverError::NotSentYet {
                cause: Box::new(DriverError::Relay { code: quota })
            })
        );
    }
}

/// The attack (or accident): one counselor device of a conversation is
/// deleted from the relay (its mailbox deleted, its directory entry not yet
/// removed). Before, the one unknown mailbox failed every deposit naming
/// it, so the seeker reached nobody and the message stayed pending. Now the
/// relay refuses that envelope alone: the message is sent, the seeker is
/// told one copy did not get through, and the rest of the team reads it.
#[test]
fn a_deleted_counselor_mailbox_does_not_keep_a_seeker_from_the_rest_of_the_team() {
    let unknown = ErrorCode::UnknownMailbox;
    // One frame partly refused (max batch 64), or one frame refused whole
    // among frames that are stored (max batch 1).
    for (max_batch, seed) in [(64u16, 80u8), (1, 90)] {
        let (org, mut devices, directory) = org_with_devices(4, seed);
        let mut net = Net::new(
            &org,
            Limits {
                pow_difficulty: 2,
                max_batch,
                ..ROOMY
            },
        );
        publish(&mut net, directory);
        for d in &mut devices {
            let i = synced(&mut net, d);
            keep(&net, i, d);
            net.close(i);
        }
        let (_, secrets) = secrets_for(&org, seed + 1);
        let seeker = net.plain();
        assert!(matches!(
            net.exec(seeker, start_cmd(secrets, "hola")),
            Ok(Outcome::Started { .. })
        ));
        // Device 2's mailbox is deleted on the relay.
        let gone = devices[2].mailbox;
        net.relay.mailboxes.remove(&gone).unwrap();
        let mark = net.mark(seeker);
        let write = |text: &str| Command::SeekerWrite { text: text.into() };
        assert!(
            matches!(
                net.exec(seeker, write("¿alguien me lee?")),
                Ok(Outcome::Sent { .. })
            ),
            "max batch {max_batch}"
        );
        assert!(
            net.events_since(seeker, mark)
                .contains(&Event::PartlyRefused {
                    refused: 1,
                    of: 4,
                    code: unknown
                })
        );
        assert!(
            !net.relay.mailboxes.contains_key(&gone),
            "nothing brought it back"
        );
        // The rest of the team reads it.
        for d in devices.iter().filter(|d| d.mailbox != gone) {
            let i = synced(&mut net, d);
            let conv = new_conversations(&net, i)[0];
            let texts: Vec<String> = net.clients[i]
                .driver
                .with_counselor(|c| {
                    c.conversation(&conv)
                        .unwrap()
                        .history
                        .iter()
                        .map(|e| text_of(&e.kind).to_owned())
                        .collect()
                })
                .unwrap();
            assert!(
                texts.iter().any(|t| t == "¿alguien me lee?"),
                "device {:?}: {texts:?}",
                d.id
            );
            net.close(i);
        }
        // When no recipient is left at all, nothing went out: it is kept.
        net.relay
            .mailboxes
            .retain(|id, _| !devices.iter().any(|d| d.mailbox == *id));
        assert_eq!(
            net.exec(seeker, write("¿hola?")),
            Err(DriverError::NotSentYet {
                cause: Box::new(DriverError::Relay { code: unknown })
            })
        );
    }
}

#[test]
fn a_team_action_reaches_the_colleagues_with_room_and_keeps_no_refused_copy() {
    let (org, devices, directory) = org_with_devices(3, 80);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let c = synced(&mut net, &devices[2]);
    let (_, secrets) = secrets_for(&org, 81);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    // Device C goes offline and its mailbox fills up.
    net.close(c);
    net.relay.mailbox_max = 10;
    fill(&mut net, devices[2].mailbox, 10);
    let mark = net.mark(a);
    let b_mark = net.mark(b);
    let seeker_mark = net.mark(seeker);
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Estamos aquí.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    // Every copy for C is refused, every other one stored.
    let (mut for_c, mut all) = (0, 0);
    for f in net.sent_since(a, mark) {
        if let ClientFrame::Deposit { envelopes, .. } = f {
            all += envelopes.len();
            for_c += envelopes
                .iter()
                .filter(|e| *e.recipient() == devices[2].mailbox)
                .count();
        }
    }
    assert!(for_c > 0 && all > for_c);
    let notice = net
        .events_since(a, mark)
        .into_iter()
        .find(|e| matches!(e, Event::PartlyRefused { .. }));
    assert_eq!(
        notice,
        Some(Event::PartlyRefused {
            refused: for_c,
            of: all,
            code: ErrorCode::QuotaExceeded,
        })
    );
    assert_eq!(
        net.clients[a].driver.outbox_len(),
        0,
        "the refused copy is not kept"
    );
    assert_eq!(net.relay.mailboxes[&devices[2].mailbox].stored.len(), 10);
    // B and the seeker have the reply.
    assert!(
        net.events_since(b, b_mark)
            .iter()
            .any(|e| matches!(e, Event::Team(TeamEvent::Message { .. }))),
        "B saw the reply"
    );
    assert!(
        net.events_since(seeker, seeker_mark)
            .iter()
            .any(|e| matches!(e, Event::SeekerMessage(_))),
        "the seeker got the reply"
    );
}

#[test]
fn deposits_split_by_the_announced_frame_bytes_when_they_bind_before_the_count() {
    let (org, devices, directory) = org_with_devices(5, 5);
    // Three ~32 KiB envelopes fit 100 000 bytes, four do not.
    let mut net = Net::new(
        &org,
        Limits {
            pow_difficulty: 0,
            max_frame_len: 100_000,
            max_batch: 64,
        },
    );
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let (_, secrets) = secrets_for(&org, 6);
    let seeker = net.plain();
    let started = net.exec(seeker, start_cmd(secrets, &long_text()));
    assert!(
        matches!(started, Ok(Outcome::Started { .. })),
        "{started:?}"
    );
    // The seeker's deposits (the devices' delivered receipts are theirs).
    let counts: Vec<usize> = net
        .relay
        .deposits
        .iter()
        .filter(|d| d.by == seeker)
        .map(|d| d.envelope_lens.len())
        .collect();
    assert_eq!(counts, vec![3, 2]);
    assert!(net.relay.deposits.iter().all(|d| d.frame_len <= 100_000));
    for i in counselors {
        assert_eq!(new_conversations(&net, i).len(), 1);
    }
}

#[test]
fn an_envelope_larger_than_the_relay_frame_limit_fails_before_anything_is_registered() {
    let (org, devices, directory) = org_with_devices(2, 7);
    // Room for every request but not for one ~32 KiB envelope.
    let mut net = Net::new(
        &org,
        Limits {
            pow_difficulty: 0,
            max_frame_len: 30_000,
            max_batch: 8,
        },
    );
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let (_, secrets) = secrets_for(&org, 8);
    let seeker = net.plain();
    let failed = net.exec(seeker, start_cmd(secrets, &long_text()));
    match failed {
        Err(DriverError::TooLargeForRelay { size, max }) => {
            assert_eq!(max, 30_000);
            assert!(size > max, "{size}");
        }
        other => panic!("expected TooLargeForRelay, got {other:?}"),
    }
    let sent = net.sent_since(seeker, 0);
    assert!(
        !sent.iter().any(|f| matches!(
            f,
            ClientFrame::Register { .. }
                | ClientFrame::PutState { .. }
                | ClientFrame::Deposit { .. }
                | ClientFrame::FetchPrekeys { .. }
        )),
        "nothing registered, saved or deposited, no prekey used up: {sent:?}"
    );
    assert_eq!(
        net.relay.mailboxes.len(),
        devices.len(),
        "no seeker mailbox on the relay"
    );
    assert!(net.relay.deposits.is_empty());
    assert_eq!(net.clients[seeker].driver.seeker_conversation(), None);
    assert!(
        net.clients[seeker].open.is_empty(),
        "no connection left open"
    );
    for i in counselors {
        assert!(new_conversations(&net, i).is_empty());
    }
}

#[test]
fn an_unreadable_delivery_is_quarantined_reported_and_saved_before_it_is_acknowledged() {
    let (org, devices, directory) = org_with_devices(1, 9);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    assert_eq!(net.clients[a].driver.quarantine(), Some((0, 0)));

    let mark = net.mark(a);
    let junk = garbage_for(devices[0].mailbox);
    let junk_id = EnvelopeId::of(&junk.encode());
    net.inject(junk.clone());

    assert_eq!(
        net.events_since(a, mark),
        vec![Event::Unreadable {
            reason: UnreadableReason::Sealed
        }]
    );
    assert_eq!(net.clients[a].driver.quarantine(), Some((1, 0)));
    let log = &net.clients[a].log;
    let saved = persisted_before(log, mark, is_ack);
    let ack_ids: Vec<EnvelopeId> = net
        .sent_since(a, mark)
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::Ack { ids } => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(ack_ids, vec![junk_id]);
    // What was saved before the acknowledgement holds the envelope.
    let state = DeviceState::open(&StateKey::from_bytes(devices[0].key.clone()), saved[0]).unwrap();
    assert_eq!(state.quarantine.len(), 1);
    assert_eq!(state.quarantine[0].reason, UnreadableReason::Sealed);
    assert_eq!(state.quarantine[0].envelope, junk);
    assert!(net.relay.mailboxes[&devices[0].mailbox].stored.is_empty());
}

#[test]
fn a_seeker_reports_an_unreadable_delivery_and_leaves_it_unacknowledged() {
    let (org, devices, directory) = org_with_devices(1, 10);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let (codename, secrets) = secrets_for(&org, 11);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    net.close(seeker);
    let conv = new_conversations(&net, a)[0];
    // A reply and junk wait in the seeker's mailbox.
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Te escuchamos.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    let junk = garbage_for(conv);
    let junk_id = EnvelopeId::of(&junk.encode());
    net.inject(junk);
    assert_eq!(net.relay.mailboxes[&conv].stored.len(), 2);

    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    let opened = net.exec(
        back,
        Command::SeekerOpen {
            secrets: Box::new(secrets),
        },
    );
    assert!(matches!(opened, Ok(Outcome::Opened { .. })), "{opened:?}");
    let events = net.events(back);
    assert!(events.contains(&Event::Unreadable {
        reason: UnreadableReason::Sealed
    }));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::SeekerMessage(_)))
            .count(),
        1
    );
    for f in net.sent_since(back, 0) {
        if let ClientFrame::Ack { ids } = f {
            assert!(
                !ids.contains(&junk_id),
                "the unreadable one is not acknowledged"
            );
        }
    }
    let left: Vec<EnvelopeId> = net.relay.mailboxes[&conv]
        .stored
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        left,
        vec![junk_id],
        "the reply is acknowledged, the junk stays"
    );
}

#[test]
fn a_dropped_mailbox_connection_reconnects_with_backoff_and_resumes_receiving() {
    let (org, devices, directory) = org_with_devices(1, 12);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let first = net.mailbox_conn(a);

    let mark = net.mark(a);
    // The relay goes away for a moment.
    net.down.insert(RELAY.into());
    net.drop_conn(a, first);
    assert_eq!(
        net.events_since(a, mark),
        vec![Event::Connection(Connection::Reconnecting)]
    );
    assert!(
        !net.clients[a].log[mark..]
            .iter()
            .any(|r| matches!(r, Rec::Connect { .. })),
        "no reconnection before the backoff"
    );
    let wake = net.clients[a].driver.poll_timeout().expect("a wake-up");
    let wait = wake.0 - net.now.0;
    assert!(
        (super::BACKOFF_MIN_SECS..=2 * super::BACKOFF_MIN_SECS).contains(&wait),
        "first wait {wait}s"
    );
    // The first attempt fails (the relay is down): the next wait is longer.
    net.run_until(wake);
    let connects = |net: &Net| {
        net.clients[a].log[mark..]
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Rec::Connect {
                        kind: ConnKind::Mailbox,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(connects(&net), 1);
    let wake2 = net.clients[a]
        .driver
        .poll_timeout()
        .expect("a second wake-up");
    let wait2 = wake2.0 - net.now.0;
    assert!(wait2 >= 2 * super::BACKOFF_MIN_SECS, "second wait {wait2}s");

    // Meanwhile a seeker writes; it is stored for the device.
    net.down.clear();
    let (_, secrets) = secrets_for(&org, 13);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    assert!(new_conversations(&net, a).is_empty(), "still disconnected");
    assert_eq!(net.relay.mailboxes[&devices[0].mailbox].stored.len(), 1);

    net.run_until(wake2);
    assert_eq!(connects(&net), 2);
    let second = net.mailbox_conn(a);
    assert_ne!(first, second);
    assert!(
        net.clients[a].log[mark..].iter().any(
            |r| matches!(r, Rec::Send { conn, frame: ClientFrame::Auth { .. } } if *conn == second)
        ),
        "authenticated (not registered again) on the new connection"
    );
    let sent = net.sent_since(a, mark);
    assert!(
        !sent
            .iter()
            .any(|f| matches!(f, ClientFrame::Register { .. }))
    );
    let events = net.events_since(a, mark);
    let connected = events
        .iter()
        .position(|e| *e == Event::Connection(Connection::Connected))
        .expect("connected again");
    let new = events
        .iter()
        .position(|e| matches!(e, Event::Team(TeamEvent::NewConversation { .. })))
        .expect("the stored opening arrived");
    assert!(connected < new, "connected, then the backlog");
    assert!(net.relay.mailboxes[&devices[0].mailbox].stored.is_empty());

    // And live deliveries flow again.
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerWrite {
                text: "¿Sigues ahí?".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    assert!(net.team_events(a).iter().any(
        |e| matches!(e, TeamEvent::Message { entry, .. } if text_of(&entry.kind) == "¿Sigues ahí?")
    ));
    assert_eq!(
        net.clients[a].driver.poll_timeout(),
        None,
        "nothing pending"
    );
}

#[test]
fn commands_fail_over_to_the_second_relay_when_the_first_cannot_be_reached() {
    let (org, devices, directory) = org_with_devices(1, 14);
    let down = "wss://down.test";
    let up = "wss://up.test";
    let mut net = Net::with_relays(&org, ROOMY, &[down, up]);
    net.down.insert(down.into());
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let (_, secrets) = secrets_for(&org, 15);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    assert_eq!(new_conversations(&net, a).len(), 1);
    for i in [a, seeker] {
        let urls: Vec<&str> = net.clients[i]
            .log
            .iter()
            .filter_map(|r| match r {
                Rec::Connect { url, .. } => Some(url.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(urls[0], down, "the first relay is tried first");
        assert!(
            urls[1..].iter().all(|u| *u == up),
            "then the second: {urls:?}"
        );
    }
}

#[test]
fn an_empty_or_whitespace_message_is_refused_before_any_output() {
    let (org, devices, directory) = org_with_devices(1, 16);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let (_, secrets) = secrets_for(&org, 17);
    let seeker = net.plain();
    let now = net.now;
    let refused = net.clients[seeker]
        .driver
        .command(start_cmd(secrets, " \n\t "), now);
    assert_eq!(refused.unwrap_err(), DriverError::EmptyMessage);
    assert!(net.clients[seeker].driver.poll_output().is_none());
    assert!(!net.clients[seeker].driver.is_busy());
    let refused = net.clients[seeker].driver.command(
        Command::SeekerWrite {
            text: String::new(),
        },
        now,
    );
    assert_eq!(refused.unwrap_err(), DriverError::EmptyMessage);
    let refused = net.clients[seeker].driver.command(
        Command::SeekerWrite {
            text: "a".repeat(MAX_TEXT_LEN + 1),
        },
        now,
    );
    assert_eq!(
        refused.unwrap_err(),
        DriverError::MessageTooLong {
            len: MAX_TEXT_LEN + 1,
            max: MAX_TEXT_LEN
        }
    );
    assert!(net.clients[seeker].driver.poll_output().is_none());

    let mark = net.mark(a);
    for action in [
        TeamAction::Reply { text: "  ".into() },
        TeamAction::Note {
            text: String::new(),
        },
        TeamAction::SaveCanned {
            title: "t".into(),
            text: "\u{3000}\n".into(),
        },
        TeamAction::SaveCanned {
            title: " ".into(),
            text: "a canned answer".into(),
        },
    ] {
        let refused = net.clients[a].driver.command(
            Command::Team {
                conversation: MailboxId::from_bytes([1; 32]),
                action,
            },
            now,
        );
        assert_eq!(refused.unwrap_err(), DriverError::EmptyMessage);
        assert!(net.clients[a].driver.poll_output().is_none());
    }
    net.run();
    assert_eq!(net.mark(a), mark, "nothing happened");
    assert!(net.relay.deposits.is_empty());
}

#[test]
fn counselor_team_actions_persist_before_they_deposit() {
    let (org, devices, directory) = org_with_devices(2, 18);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (_, secrets) = secrets_for(&org, 19);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];

    let me = devices[0].id;
    let actions = [
        (TeamAction::Claim, Status::Claimed(me)),
        (
            TeamAction::Note {
                text: "needs a shelter".into(),
            },
            Status::Claimed(me),
        ),
        (
            TeamAction::Reply {
                text: "Estamos aquí.".into(),
            },
            Status::Claimed(me),
        ),
        (TeamAction::Resolve, Status::Resolved),
    ];
    for (action, status) in actions {
        let mark = net.mark(a);
        let reply = matches!(action, TeamAction::Reply { .. });
        assert_eq!(
            net.exec(
                a,
                Command::Team {
                    conversation: conv,
                    action,
                }
            ),
            Ok(Outcome::Acted)
        );
        // Every deposit of the action follows a save that already holds it.
        for sealed in persisted_before(&net.clients[a].log, mark, is_deposit) {
            let state =
                DeviceState::open(&StateKey::from_bytes(devices[0].key.clone()), sealed).unwrap();
            let c = state.counselor.conversation(&conv).unwrap().clone();
            assert_eq!(c.status, status);
            if reply {
                assert_eq!(c.history.len(), 2, "the reply is saved");
            }
        }
        assert_eq!(
            net.clients[b]
                .driver
                .with_counselor(|c| c.conversation(&conv).unwrap().status),
            Some(status),
            "B sees it"
        );
    }
    // The seeker got the reply live.
    assert!(net.events(seeker).iter().any(
        |e| matches!(e, Event::SeekerMessage(entry) if text_of(&entry.kind) == "Estamos aquí.")
    ));
    // Deliveries are saved before they are acknowledged, too.
    persisted_before(&net.clients[b].log, 0, is_ack);
    // A local change is saved, with nothing sent.
    let unread = |net: &Net| {
        net.clients[b]
            .driver
            .with_counselor(|c| c.conversation(&conv).unwrap().unread)
            .unwrap()
    };
    assert!(unread(&net));
    let mark = net.mark(b);
    net.clients[b].driver.mark_read(&conv).unwrap();
    net.run();
    assert!(!unread(&net));
    // Saved first (with the read receipt in the outbox); then the read
    // receipt, one envelope, goes to the seeker alone.
    assert!(matches!(
        net.clients[b].log.get(mark),
        Some(Rec::Persist { .. })
    ));
    persisted_before(&net.clients[b].log, mark, is_deposit);
    let receipts: Vec<usize> = net.clients[b].log[mark..]
        .iter()
        .filter_map(|r| match r {
            Rec::Send {
                frame: ClientFrame::Deposit { envelopes, .. },
                ..
            } => Some(envelopes.len()),
            _ => None,
        })
        .collect();
    assert_eq!(receipts, vec![1], "one read receipt");
    assert!(
        net.events(seeker)
            .iter()
            .any(|e| matches!(e, Event::SeekerStatus)),
        "the seeker took the receipt"
    );
    // Opening the case again sends nothing more: the seeker's latest
    // message has its read receipt from this device.
    let mark = net.mark(b);
    net.clients[b].driver.mark_read(&conv).unwrap();
    net.run();
    assert!(matches!(&net.clients[b].log[mark..], [Rec::Persist { .. }]));
    assert!(
        !net.saved_state(b, &devices[1])
            .counselor
            .conversation(&conv)
            .unwrap()
            .unread
    );
}

#[test]
fn reload_counselor_keeps_the_other_process_claim_and_the_new_message() {
    let (org, mut devices, directory) = org_with_devices(2, 20);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    // The long-running process of device A, and colleague B.
    let x = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (_, secrets) = secrets_for(&org, 21);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, x)[0];
    keep(&net, x, &mut devices[0]);

    // A second process of device A (a one-shot `claim`) from the same state.
    let y = net.counselor(&devices[0]);
    assert_eq!(
        net.exec(
            y,
            Command::Team {
                conversation: conv,
                action: TeamAction::Claim,
            }
        ),
        Ok(Outcome::Acted)
    );
    let newer = net.clients[y]
        .persisted
        .clone()
        .expect("the claim was saved");
    net.close(y);
    let me = devices[0].id;
    assert_eq!(
        net.clients[b]
            .driver
            .with_counselor(|c| c.conversation(&conv).unwrap().status),
        Some(Status::Claimed(me))
    );
    let status_in_x = |net: &Net| {
        net.clients[x]
            .driver
            .with_counselor(|c| c.conversation(&conv).unwrap().status)
            .unwrap()
    };
    assert_eq!(status_in_x(&net), Status::Open, "X has not seen the claim");

    // X's shell sees the newer blob and reloads it; then a delivery comes.
    net.clients[x].driver.reload_counselor(&newer).unwrap();
    assert_eq!(status_in_x(&net), Status::Claimed(me));
    let mark = net.mark(x);
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerWrite {
                text: "¿Hola?".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    assert!(matches!(
        &net.events_since(x, mark)[..],
        [Event::Team(TeamEvent::Message { .. })]
    ));
    let state = net.saved_state(x, &devices[0]);
    let c = state.counselor.conversation(&conv).unwrap();
    assert_eq!(c.status, Status::Claimed(me), "the claim survives");
    assert_eq!(c.history.len(), 2);
    assert_eq!(text_of(&c.history[1].kind), "¿Hola?");
    // The session Y started with B is kept: X needs no new bundle for B.
    assert_eq!(
        state.counselor.missing_bundles(&conv).unwrap(),
        Vec::<MailboxId>::new()
    );
    // And X can go on in the conversation: B reads its note.
    assert_eq!(
        net.exec(
            x,
            Command::Team {
                conversation: conv,
                action: TeamAction::Note {
                    text: "called back".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    assert!(
        net.team_events(b)
            .iter()
            .any(|e| matches!(e, TeamEvent::Note { .. }))
    );
    // A state of another device is refused.
    let other = net.clients[b].persisted.clone().unwrap();
    assert!(net.clients[x].driver.reload_counselor(&other).is_err());
}

#[test]
fn a_sync_while_the_receiver_waits_to_reconnect_leaves_one_mailbox_connection() {
    let (org, devices, directory) = org_with_devices(1, 22);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let first = net.mailbox_conn(a);
    net.drop_conn(a, first);
    assert_eq!(
        net.events(a).last(),
        Some(&Event::Connection(Connection::Reconnecting))
    );
    // The user syncs before the backoff is over.
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(net.open_of(a, ConnKind::Mailbox).len(), 1);
    assert_eq!(
        net.events(a)
            .iter()
            .rev()
            .find(|e| matches!(e, Event::Connection(_))),
        Some(&Event::Connection(Connection::Connected)),
        "the UI stops showing the reconnection"
    );
    // The receiver's wake-up comes and goes.
    net.run_until(UnixTime(net.now.0 + 2 * super::BACKOFF_MAX_SECS));
    assert_eq!(
        net.open_of(a, ConnKind::Mailbox).len(),
        1,
        "one mailbox connection, one receiver"
    );
    // Deliveries are handled once.
    let (_, secrets) = secrets_for(&org, 23);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    assert_eq!(new_conversations(&net, a).len(), 1);
    let acks = net
        .sent_since(a, 0)
        .into_iter()
        .filter(|f| is_ack(f))
        .count();
    assert_eq!(acks, 1, "acknowledged once");
}

#[test]
fn a_deposit_cut_off_mid_batch_is_finished_on_a_fresh_connection() {
    let (org, devices, directory) = org_with_devices(10, 24);
    let mut net = Net::new(
        &org,
        Limits {
            max_batch: 4,
            ..ROOMY
        },
    );
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    // The connection drops as the second batch goes out.
    let mut deposits = 0;
    net.fault = Some(Box::new(move |_, f| {
        if is_deposit(f) {
            deposits += 1;
            if deposits == 2 {
                return Fault::Drop;
            }
        }
        Fault::Pass
    }));
    let (_, secrets) = secrets_for(&org, 25);
    let seeker = net.plain();
    let cmd = net.start(seeker, start_cmd(secrets, "hola"));
    assert_eq!(net.try_outcome(seeker, cmd), None, "waiting to retry");
    let wake = net.clients[seeker].driver.poll_timeout().expect("a retry");
    assert!(wake > net.now);
    net.run_until(UnixTime(net.now.0 + 10));
    assert!(
        matches!(net.outcome(seeker, cmd), Ok(Outcome::Started { .. })),
        "{:?}",
        net.outcome(seeker, cmd)
    );
    // The seeker's deposits (the devices' delivered receipts are theirs).
    let counts: Vec<usize> = net
        .relay
        .deposits
        .iter()
        .filter(|d| d.by == seeker)
        .map(|d| d.envelope_lens.len())
        .collect();
    assert_eq!(counts, vec![4, 4, 2], "the lost batch again, then the rest");
    let anonymous = net.clients[seeker]
        .log
        .iter()
        .filter(|r| {
            matches!(
                r,
                Rec::Connect {
                    kind: ConnKind::Anonymous,
                    ..
                }
            )
        })
        .count();
    assert_eq!(anonymous, 4, "directory, bundles, two deposit connections");
    for i in counselors {
        assert_eq!(new_conversations(&net, i).len(), 1, "exactly once");
    }
}

#[test]
fn a_relay_that_stops_answering_fails_the_request_after_the_reply_timeout() {
    let (org, devices, directory) = org_with_devices(1, 26);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    net.fault = Some(Box::new(|_, f| {
        if matches!(f, ClientFrame::Subscribe) {
            Fault::Mute
        } else {
            Fault::Pass
        }
    }));
    let a = net.counselor(&devices[0]);
    let cmd = net.start(a, Command::Sync);
    assert_eq!(net.try_outcome(a, cmd), None);
    let sent_at = net.now;
    assert_eq!(
        net.clients[a].driver.poll_timeout(),
        Some(UnixTime(sent_at.0 + super::REPLY_TIMEOUT_SECS))
    );
    net.run_until(UnixTime(sent_at.0 + super::REPLY_TIMEOUT_SECS - 1));
    assert_eq!(net.try_outcome(a, cmd), None, "not before the deadline");
    net.run_until(UnixTime(sent_at.0 + super::REPLY_TIMEOUT_SECS));
    assert_eq!(net.outcome(a, cmd), Err(DriverError::Network));
    assert!(
        net.clients[a].open.is_empty(),
        "the hung connection is closed"
    );
    assert!(!net.clients[a].driver.is_busy());
    assert_eq!(net.clients[a].driver.poll_timeout(), None);
}

#[test]
fn prekeys_below_the_low_water_mark_are_saved_before_they_are_uploaded() {
    let (org, mut devices, directory) = org_with_devices(1, 27);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    // Seekers used every one-time prekey.
    net.relay
        .mailboxes
        .get_mut(&devices[0].mailbox)
        .unwrap()
        .one_time
        .clear();
    let mark = net.mark(a);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    let uploads: Vec<usize> = net
        .sent_since(a, mark)
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::UploadPrekeys { one_time, .. } => Some(one_time.len()),
            _ => None,
        })
        .collect();
    assert_eq!(uploads, vec![0, super::PREKEY_TARGET as usize]);
    persisted_before(
        &net.clients[a].log,
        mark,
        |f| matches!(f, ClientFrame::UploadPrekeys { one_time, .. } if !one_time.is_empty()),
    );
    assert_eq!(
        net.relay.mailboxes[&devices[0].mailbox].one_time.len(),
        super::PREKEY_TARGET as usize
    );
    // A new process from the saved state opens a session made with one.
    keep(&net, a, &mut devices[0]);
    net.close(a);
    let (_, secrets) = secrets_for(&org, 28);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    assert_eq!(
        net.relay.mailboxes[&devices[0].mailbox].one_time.len(),
        super::PREKEY_TARGET as usize - 1
    );
    assert_eq!(
        net.relay.mailboxes[&devices[0].mailbox].one_time_pq.len(),
        super::PREKEY_TARGET as usize - 1,
        "a one-time ML-KEM prekey went with it"
    );
    let a = synced(&mut net, &devices[0]);
    assert_eq!(new_conversations(&net, a).len(), 1);
    assert_eq!(net.clients[a].driver.quarantine(), Some((0, 0)));
}

/// Hands out every one-time prekey the relay holds for `mailbox`, through
/// real `FetchPrekeys` frames on a connection of the drainer's own; returns
/// how many of each kind came out.
fn drain(net: &mut Net, mailbox: MailboxId, conn: u64) -> (usize, usize) {
    let key = (usize::MAX, ConnId(conn));
    net.relay.connect(key);
    let mut got = (0, 0);
    for request in 1u32.. {
        let frame = ClientFrame::FetchPrekeys { mailbox }
            .encode(request)
            .unwrap();
        let replies = net.relay.handle(key, &frame, net.now);
        match ServerFrame::decode(&replies[0].1).unwrap() {
            (
                _,
                ServerFrame::Prekeys {
                    one_time,
                    one_time_pq,
                    ..
                },
            ) => {
                if one_time.is_none() && one_time_pq.is_none() {
                    break;
                }
                got.0 += usize::from(one_time.is_some());
                got.1 += usize::from(one_time_pq.is_some());
            }
            (_, other) => panic!("{other:?}"),
        }
    }
    net.relay.disconnect(key);
    got
}

/// The attack: someone (or the relay itself) fetches every one-time prekey
/// of a device, again and again, and never uses them. Before, a device
/// kept every such secret and stopped making new ones past about 1,000;
/// from then on every opening rested on the signed prekeys alone. Now each
/// sync replaces the relay's drained set with a fresh one, the device's
/// own store stays bounded (the oldest secrets go first), and seekers get
/// one-time prekeys of both kinds however much was drained.
#[test]
fn draining_one_time_prekeys_never_leaves_a_device_without_them_for_good() {
    use crate::client::endpoint::{MAX_ONE_TIME_PREKEYS, SIGNED_PREKEY_ROTATION_SECS};

    let (org, devices, directory) = org_with_devices(1, 48);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let mailbox = devices[0].mailbox;
    let target = super::PREKEY_TARGET as usize;
    let mut drained = (0, 0);
    // Thirty rounds, a sync every eight hours: ten days, so the signed
    // prekeys rotate on the way.
    for round in 0..30 {
        let (x, pq) = drain(&mut net, mailbox, 10_000 + round);
        drained = (drained.0 + x, drained.1 + pq);
        net.now = UnixTime(net.now.0 + 8 * 3600);
        assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
        let m = &net.relay.mailboxes[&mailbox];
        assert_eq!(
            (m.one_time.len(), m.one_time_pq.len()),
            (target, target),
            "round {round}: topped up again"
        );
    }
    assert_eq!(drained, (30 * target, 30 * target));
    assert!(drained.0 >= 3 * 1000, "far more than the old ~1,000 cap");
    // The device made more than it may keep: it kept the newest, at its cap.
    let status = net
        .saved_state(a, &devices[0])
        .counselor
        .prekey_status()
        .unwrap();
    assert_eq!(status.one_time, MAX_ONE_TIME_PREKEYS, "{status:?}");
    assert_eq!(status.one_time_pq, MAX_ONE_TIME_PREKEYS, "{status:?}");
    assert!(status.signed_prekey_created_at.0 >= T0.0 + SIGNED_PREKEY_ROTATION_SECS);
    // A seeker now gets a one-time prekey of each kind, and the device
    // reads the opening.
    let (_, secrets) = secrets_for(&org, 49);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let m = &net.relay.mailboxes[&mailbox];
    assert_eq!(
        (m.one_time.len(), m.one_time_pq.len()),
        (target - 1, target - 1)
    );
    assert_eq!(new_conversations(&net, a).len(), 1);
    assert_eq!(net.clients[a].driver.quarantine(), Some((0, 0)));
    let after = net
        .saved_state(a, &devices[0])
        .counselor
        .prekey_status()
        .unwrap();
    assert_eq!(
        (after.one_time, after.one_time_pq),
        (status.one_time - 1, status.one_time_pq - 1),
        "the one-time prekeys the opening used are deleted"
    );
}

/// A device away for a week and a day comes back: its sync replaces the
/// signed prekeys (saved before the new bundle is uploaded, with a fresh
/// one-time set in place of the relay's old one), still reads the opening
/// a seeker sealed to the old bundle while it was away, and a sync after
/// the grace period deletes the old pair.
#[test]
fn a_sync_a_week_on_rotates_the_signed_prekeys_and_still_reads_what_was_sealed_to_the_old_ones() {
    use crate::client::endpoint::{SIGNED_PREKEY_GRACE_SECS, SIGNED_PREKEY_ROTATION_SECS};
    use crate::pqxdh::SignedPreKeyBundle;

    let (org, mut devices, directory) = org_with_devices(1, 50);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let mailbox = devices[0].mailbox;
    let bundle_on_relay = |net: &Net| {
        SignedPreKeyBundle::decode(net.relay.mailboxes[&mailbox].bundle.as_ref().unwrap()).unwrap()
    };
    let v1 = bundle_on_relay(&net);
    let old_ids: BTreeSet<u32> = net.relay.mailboxes[&mailbox]
        .one_time
        .iter()
        .map(|k| k.id)
        .collect();
    keep(&net, a, &mut devices[0]);
    net.close(a);
    // A seeker writes while the device is away: sealed to v1.
    net.now = UnixTime(T0.0 + SIGNED_PREKEY_ROTATION_SECS - 3600);
    let (_, secrets) = secrets_for(&org, 51);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "¿Sigue ahí alguien?")),
        Ok(Outcome::Started { .. })
    ));
    // The device is back a week and a day after its last sync.
    let back_at = UnixTime(T0.0 + SIGNED_PREKEY_ROTATION_SECS + 24 * 3600);
    net.now = back_at;
    let a = net.counselor(&devices[0]);
    let mark = net.mark(a);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    let v2 = bundle_on_relay(&net);
    assert_ne!(v2.signed_prekey_id, v1.signed_prekey_id);
    assert_ne!(v2.pq_prekey, v1.pq_prekey);
    assert_eq!(v2.identity, v1.identity);
    let m = &net.relay.mailboxes[&mailbox];
    assert_eq!(m.one_time.len(), super::PREKEY_TARGET as usize);
    assert!(
        m.one_time.iter().all(|k| !old_ids.contains(&k.id)),
        "the relay's old one-time set was replaced"
    );
    // The new prekeys were saved before the relay could hand them out.
    let saved = persisted_before(&net.clients[a].log, mark, |f| {
        matches!(f, ClientFrame::UploadPrekeys { replace: true, .. })
    });
    for blob in saved {
        let state = DeviceState::open(&StateKey::from_bytes(devices[0].key.clone()), blob).unwrap();
        assert_eq!(state.counselor.prekey_bundle().unwrap(), v2);
    }
    // The opening sealed to v1 while the device was away is read.
    assert_eq!(new_conversations(&net, a).len(), 1);
    assert_eq!(net.clients[a].driver.quarantine(), Some((0, 0)));
    let status = |net: &Net, i| {
        net.saved_state(i, &devices[0])
            .counselor
            .prekey_status()
            .unwrap()
    };
    assert_eq!(status(&net, a).signed_prekey_generations, 2);
    assert_eq!(status(&net, a).signed_prekey_created_at, back_at);
    // A sync within the grace keeps v1 (and v2 is not due yet); one after
    // it deletes v1 (and, a week on, replaces v2 with v3).
    net.now = UnixTime(back_at.0 + SIGNED_PREKEY_GRACE_SECS - 1);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(status(&net, a).signed_prekey_generations, 2);
    assert_eq!(bundle_on_relay(&net), v2, "no rotation before a week is up");
    net.now = UnixTime(back_at.0 + SIGNED_PREKEY_GRACE_SECS);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(SIGNED_PREKEY_GRACE_SECS, SIGNED_PREKEY_ROTATION_SECS);
    let v3 = bundle_on_relay(&net);
    assert_ne!(v3.signed_prekey_id, v2.signed_prekey_id);
    let after = status(&net, a);
    assert_eq!(
        (
            after.signed_prekey_generations,
            after.signed_prekey_created_at
        ),
        (2, net.now),
        "v2 (in its grace) and v3; v1 is gone"
    );
}

/// A hundred one-time ML-KEM prekeys are 125 KB: against a relay that
/// announces smaller frames, the fresh set goes in several uploads, the
/// first replacing the relay's set, the others adding to it.
#[test]
fn a_fresh_prekey_set_is_split_to_fit_the_relays_frame_limit() {
    let (org, devices, directory) = org_with_devices(1, 52);
    let limits = Limits {
        pow_difficulty: 0,
        max_frame_len: 60_000,
        max_batch: 8,
    };
    let mut net = Net::new(&org, limits);
    publish(&mut net, directory);
    let a = net.counselor(&devices[0]);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    let uploads: Vec<(usize, usize, bool, usize)> = net.clients[a]
        .log
        .iter()
        .filter_map(|r| match r {
            Rec::Send {
                frame:
                    f @ ClientFrame::UploadPrekeys {
                        one_time,
                        one_time_pq,
                        replace,
                        ..
                    },
                ..
            } => Some((
                one_time.len(),
                one_time_pq.len(),
                *replace,
                f.encode(1).unwrap().len(),
            )),
            _ => None,
        })
        .collect();
    let target = super::PREKEY_TARGET as usize;
    // The bundle alone (the relay's counts), then the fresh set in frames.
    assert_eq!((uploads[0].0, uploads[0].1, uploads[0].2), (0, 0, false));
    let set = &uploads[1..];
    assert!(set.len() >= 3, "{uploads:?}");
    assert!(set[0].2 && set[1..].iter().all(|u| !u.2), "{uploads:?}");
    assert!(set.iter().all(|u| u.3 <= 60_000), "{uploads:?}");
    assert_eq!(set.iter().map(|u| u.0).sum::<usize>(), target);
    assert_eq!(set.iter().map(|u| u.1).sum::<usize>(), target);
    let m = &net.relay.mailboxes[&devices[0].mailbox];
    assert_eq!((m.one_time.len(), m.one_time_pq.len()), (target, target));
}

#[test]
fn seeker_delete_tells_the_team_and_removes_the_mailbox() {
    let (org, devices, directory) = org_with_devices(2, 29);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let (codename, secrets) = secrets_for(&org, 30);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, counselors[0])[0];
    assert_eq!(
        net.exec(seeker, Command::SeekerDelete),
        Ok(Outcome::Deleted)
    );
    assert!(!net.relay.mailboxes.contains_key(&conv));
    assert_eq!(net.clients[seeker].driver.seeker_conversation(), None);
    assert!(net.clients[seeker].open.is_empty());
    for i in counselors {
        assert!(
            net.team_events(i)
                .contains(&TeamEvent::Deleted { conversation: conv })
        );
        assert_eq!(
            net.clients[i]
                .driver
                .with_counselor(|c| c.conversation(&conv).is_none()),
            Some(true)
        );
    }
    // The codename opens nothing any more.
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    assert_eq!(
        net.exec(
            back,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Err(DriverError::CodenameNotFound)
    );
    assert_eq!(net.clients[back].driver.seeker_conversation(), None);
    assert!(net.clients[back].open.is_empty());
    assert!(!net.clients[back].driver.is_busy());
}

#[test]
fn a_sync_that_fails_while_the_receiver_waits_to_reconnect_leaves_it_reconnecting() {
    let (org, devices, directory) = org_with_devices(1, 31);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let first = net.mailbox_conn(a);
    net.drop_conn(a, first);
    // The sync's connection drops as it subscribes.
    let mut armed = true;
    net.fault = Some(Box::new(move |_, f| {
        if armed && matches!(f, ClientFrame::Subscribe) {
            armed = false;
            return Fault::Drop;
        }
        Fault::Pass
    }));
    assert_eq!(net.exec(a, Command::Sync), Err(DriverError::Network));
    assert!(net.open_of(a, ConnKind::Mailbox).is_empty());
    net.run_until(UnixTime(net.now.0 + 2 * super::BACKOFF_MAX_SECS));
    assert_eq!(net.open_of(a, ConnKind::Mailbox).len(), 1, "reconnected");
    assert_eq!(
        net.events(a).last(),
        Some(&Event::Connection(Connection::Connected))
    );
}

#[test]
fn a_relay_that_never_says_hello_is_given_up_after_the_connect_timeout() {
    let (org, devices, directory) = org_with_devices(1, 32);
    let silent = "wss://silent.test";
    let mut net = Net::with_relays(&org, ROOMY, &[silent, RELAY]);
    publish(&mut net, directory);
    net.silent.insert(silent.into());
    let a = net.counselor(&devices[0]);
    let cmd = net.start(a, Command::Sync);
    assert_eq!(net.try_outcome(a, cmd), None, "waiting for the hello");
    let t0 = net.now;
    assert_eq!(
        net.clients[a].driver.poll_timeout(),
        Some(UnixTime(t0.0 + super::CONNECT_TIMEOUT_SECS))
    );
    net.run_until(UnixTime(t0.0 + super::CONNECT_TIMEOUT_SECS));
    assert_eq!(net.outcome(a, cmd), Ok(Outcome::Synced));
    let urls: Vec<&str> = net.clients[a]
        .log
        .iter()
        .filter_map(|r| match r {
            Rec::Connect { url, .. } => Some(url.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(urls[0], silent);
    assert!(urls[1..].iter().all(|u| *u == RELAY), "{urls:?}");
    assert_eq!(net.open_of(a, ConnKind::Mailbox).len(), 1);
    assert_eq!(net.open_of(a, ConnKind::Anonymous).len(), 0);
}

/// The failure: a relay still on version 1 of the relay protocol (whose
/// deposit and prekey frames mean other things). Its hello does not decode,
/// nothing is sent to it, and the command says why instead of "cannot be
/// reached"; a version 2 relay further down the list is used.
#[test]
fn a_version_1_relay_is_refused_with_a_clear_error() {
    let (org, devices, directory) = org_with_devices(1, 38);
    let old = "wss://old.test";
    let mut net = Net::with_relays(&org, ROOMY, &[old]);
    publish(&mut net, directory.clone());
    net.version_1.insert(old.into());
    let a = net.counselor(&devices[0]);
    let failed = net.exec(a, Command::Sync);
    assert_eq!(
        failed,
        Err(DriverError::UnsupportedVersion { relay: 1, ours: 2 })
    );
    assert_eq!(
        failed.unwrap_err().to_string(),
        "unsupported version: the relay speaks protocol version 1, this client version 2"
    );
    assert!(net.clients[a].open.is_empty(), "the connection is closed");
    assert!(net.relay.mailboxes.is_empty(), "nothing registered");
    assert!(
        net.sent_since(a, 0).is_empty(),
        "no frame went to the old relay"
    );
    // With a version 2 relay next in the list, the command goes there.
    let mut net = Net::with_relays(&org, ROOMY, &[old, RELAY]);
    publish(&mut net, directory);
    net.version_1.insert(old.into());
    let a = net.counselor(&devices[0]);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
}

#[test]
fn a_seeker_open_while_the_old_receiver_waits_to_reconnect_leaves_one_mailbox_connection() {
    let (org, devices, directory) = org_with_devices(1, 33);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let (codename, secrets) = secrets_for(&org, 34);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let lost = net.mailbox_conn(seeker);
    net.drop_conn(seeker, lost);
    assert_eq!(
        net.events(seeker).last(),
        Some(&Event::Connection(Connection::Reconnecting))
    );
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Ok(Outcome::Opened { .. })
    ));
    net.run_until(UnixTime(net.now.0 + 2 * super::BACKOFF_MAX_SECS));
    assert_eq!(net.open_of(seeker, ConnKind::Mailbox).len(), 1);
    // The counselor's reply is read once, by the one receiver.
    let conv = new_conversations(&net, a)[0];
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Aquí estamos.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    let replies = net
        .events(seeker)
        .iter()
        .filter(|e| matches!(e, Event::SeekerMessage(_)))
        .count();
    assert_eq!(replies, 1);
    // Each delivery (device A's delivered receipt, then its reply) is
    // acknowledged once, by one receiver.
    let acked: Vec<_> = net
        .sent_since(seeker, 0)
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::Ack { ids } => Some(ids),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(acked.len(), 2, "{acked:?}");
    assert_ne!(acked[0], acked[1]);
}

#[test]
fn a_reply_that_is_no_frame_closes_the_connection_and_fails_the_command() {
    let (org, devices, directory) = org_with_devices(1, 35);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    net.fault = Some(Box::new(|_, f| {
        if matches!(f, ClientFrame::Challenge) {
            Fault::Garble
        } else {
            Fault::Pass
        }
    }));
    let a = net.counselor(&devices[0]);
    assert_eq!(net.exec(a, Command::Sync), Err(DriverError::Protocol));
    assert!(net.clients[a].open.is_empty(), "the connection is closed");
    assert!(net.relay.mailboxes.is_empty(), "nothing registered");
    assert!(!net.clients[a].driver.is_busy());
}

#[test]
fn directory_look_ups_report_a_missing_or_foreign_directory() {
    let (org, _, directory) = org_with_devices(1, 36);
    let mut net = Net::new(&org, ROOMY);
    let seeker = net.plain();
    assert_eq!(
        net.exec(seeker, Command::Directory),
        Err(DriverError::NoDirectory)
    );
    // A directory filed under our key but naming another organisation.
    let (other, _, foreign) = org_with_devices(1, 37);
    assert_ne!(other.public(), org.public());
    net.relay
        .directories
        .insert(*org.public().as_bytes(), foreign.encode());
    assert!(matches!(
        net.exec(seeker, Command::Directory),
        Err(DriverError::DirectoryRefused(_))
    ));
    assert!(net.clients[seeker].driver.directory().is_none());
    net.relay.directories.clear();
    publish(&mut net, directory);
    assert_eq!(net.exec(seeker, Command::Directory), Ok(Outcome::Directory));
    let dir = net.clients[seeker].driver.directory().unwrap();
    assert!(dir.teams().iter().any(|t| t.slug == TEAM));
    // A device the administrator has not added cannot sync, and registers nothing.
    let mut rng = ChaCha20Rng::from_seed([39; 32]);
    let state = DeviceState::generate(org.public(), &mut rng);
    let key = StateKey::generate(&mut rng);
    let stranger = Device {
        id: DeviceId(99),
        key: Zeroizing::new(*key.as_bytes()),
        sealed: state.seal(&key, &mut rng).unwrap(),
        mailbox: state.counselor.mailbox().id(),
    };
    let s = net.counselor(&stranger);
    assert_eq!(net.exec(s, Command::Sync), Err(DriverError::NotInDirectory));
    assert!(net.relay.mailboxes.is_empty());
    assert!(net.clients[s].open.is_empty());
}

/// How many entries of `text` a counselor's copy of the conversation holds.
fn times_in_history(net: &Net, i: usize, conv: &MailboxId, text: &str) -> usize {
    net.clients[i]
        .driver
        .with_counselor(|c| {
            c.conversation(conv)
                .unwrap()
                .history
                .iter()
                .filter(|e| text_of(&e.kind) == text)
                .count()
        })
        .unwrap()
}

/// The counselors' messages the seeker's driver reported.
fn seeker_messages(net: &Net, i: usize) -> Vec<String> {
    net.events(i)
        .into_iter()
        .filter_map(|e| match e {
            Event::SeekerMessage(entry) => Some(text_of(&entry.kind).to_owned()),
            _ => None,
        })
        .collect()
}

/// Long enough for every deposit attempt and its backoff.
const ALL_ATTEMPTS_SECS: u64 = 4 * (super::CONNECT_TIMEOUT_SECS + 2 * super::BACKOFF_MAX_SECS);

#[test]
fn a_counselor_reply_whose_deposit_is_cut_off_is_kept_and_sent_at_the_next_sync() {
    let (org, mut devices, directory) = org_with_devices(2, 40);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 41);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    net.close(seeker);
    let conv = new_conversations(&net, a)[0];
    // A claims while all is well (and so holds a session with B).
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Claim,
            }
        ),
        Ok(Outcome::Acted)
    );
    let deposits_before = net.relay.deposits.len();

    // Every anonymous connection of A closes before the hello.
    net.refuse = Some(Box::new(move |i, kind| {
        i == a && kind == ConnKind::Anonymous
    }));
    let reply = "Te leemos, escribe cuando quieras.";
    let mark = net.mark(a);
    let cmd = net.start(
        a,
        Command::Team {
            conversation: conv,
            action: TeamAction::Reply { text: reply.into() },
        },
    );
    net.run_until(UnixTime(net.now.0 + ALL_ATTEMPTS_SECS));
    assert_eq!(
        net.outcome(a, cmd),
        Err(DriverError::NotSentYet {
            cause: Box::new(DriverError::Network)
        })
    );
    let tries = net.clients[a].log[mark..]
        .iter()
        .filter(|r| {
            matches!(
                r,
                Rec::Connect {
                    kind: ConnKind::Anonymous,
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        tries,
        super::DEPOSIT_ATTEMPTS as usize,
        "every attempt made"
    );
    assert_eq!(
        net.relay.deposits.len(),
        deposits_before,
        "nothing deposited"
    );
    assert!(net.relay.mailboxes[&conv].stored.is_empty());
    assert_eq!(times_in_history(&net, b, &conv, reply), 0);
    assert!(
        net.open_of(a, ConnKind::Anonymous).is_empty(),
        "no deposit connection left open"
    );
    assert_eq!(
        net.open_of(a, ConnKind::Mailbox).len(),
        1,
        "still receiving"
    );
    // The last save holds the reply and its envelopes, to the seeker and to B.
    let saved = net.saved_state(a, &devices[0]);
    assert_eq!(
        text_of(&saved.counselor.conversation(&conv).unwrap().history[1].kind),
        reply
    );
    let to: BTreeSet<MailboxId> = saved.outbox.iter().map(|e| *e.recipient()).collect();
    // To the seeker, to B, and A's own copy (the full set, whoever acts).
    assert_eq!(saved.outbox.len(), 3, "{to:?}");
    assert_eq!(
        to,
        BTreeSet::from([conv, devices[1].mailbox, devices[0].mailbox])
    );

    // A's process exits; the relay is reachable again; A's next sync (from
    // what it saved) sends them.
    keep(&net, a, &mut devices[0]);
    net.close(a);
    net.refuse = None;
    let a = synced(&mut net, &devices[0]);
    let flushed: Vec<usize> = net.relay.deposits[deposits_before..]
        .iter()
        .map(|d| d.envelope_lens.len())
        .collect();
    assert_eq!(flushed, vec![3], "the saved envelopes, deposited once");
    assert!(
        net.saved_state(a, &devices[0]).outbox.is_empty(),
        "the outbox is empty once deposited"
    );
    assert_eq!(
        times_in_history(&net, b, &conv, reply),
        1,
        "B reads it once"
    );
    assert_eq!(
        net.relay.mailboxes[&conv].stored.len(),
        1,
        "the reply waits"
    );
    // Another sync sends nothing again.
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(net.relay.deposits.len(), deposits_before + 1);

    // The seeker comes back and reads the reply, once.
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    assert!(matches!(
        net.exec(
            back,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Ok(Outcome::Opened { .. })
    ));
    assert_eq!(seeker_messages(&net, back), vec![reply.to_owned()]);
    let history = net.clients[back]
        .driver
        .seeker_conversation()
        .unwrap()
        .history;
    let texts: Vec<&str> = history.iter().map(|e| text_of(&e.kind)).collect();
    assert_eq!(texts, vec!["hola", reply]);
    assert_eq!(history[1].author, Author::Counselor(devices[0].id));
    assert!(net.relay.mailboxes[&conv].stored.is_empty());
}

#[test]
fn a_seeker_message_whose_deposit_is_cut_off_is_sent_at_the_next_visit_once() {
    let (org, devices, directory) = org_with_devices(2, 42);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let (codename, secrets) = secrets_for(&org, 43);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, counselors[0])[0];
    let deposits_before = net.relay.deposits.len();

    // Every anonymous connection of the seeker closes before the hello.
    net.refuse = Some(Box::new(move |i, kind| {
        i == seeker && kind == ConnKind::Anonymous
    }));
    let text = "¿Me oye alguien?";
    let mark = net.mark(seeker);
    let cmd = net.start(seeker, Command::SeekerWrite { text: text.into() });
    net.run_until(UnixTime(net.now.0 + ALL_ATTEMPTS_SECS));
    assert_eq!(
        net.outcome(seeker, cmd),
        Err(DriverError::NotSentYet {
            cause: Box::new(DriverError::Network)
        })
    );
    assert_eq!(
        net.relay.deposits.len(),
        deposits_before,
        "nothing deposited"
    );
    for &i in &counselors {
        assert_eq!(times_in_history(&net, i, &conv, text), 0);
    }
    // The state saved on the relay (before any deposit attempt) holds it.
    let sent = net.sent_since(seeker, mark);
    assert!(matches!(sent.first(), Some(ClientFrame::PutState { .. })));
    let blob = net.relay.mailboxes[&conv].state.clone().unwrap().1;
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let saved = Seeker::restore(&secrets, &blob).unwrap();
    assert_eq!(saved.pending(), 1, "saved as pending");
    // The seeker still sees what it wrote, once.
    let mine = |net: &Net, i: usize| {
        net.clients[i]
            .driver
            .seeker_conversation()
            .unwrap()
            .history
            .iter()
            .filter(|e| e.author == Author::Seeker && text_of(&e.kind) == text)
            .count()
    };
    assert_eq!(mine(&net, seeker), 1);
    net.close(seeker);
    net.refuse = None;

    // The next visit sends it.
    let back = net.plain();
    assert!(matches!(
        net.exec(
            back,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Ok(Outcome::Opened { .. })
    ));
    for &i in &counselors {
        assert_eq!(times_in_history(&net, i, &conv, text), 1, "counselor {i}");
        assert_eq!(
            net.team_events(i)
                .iter()
                .filter(|e| matches!(
                    e,
                    TeamEvent::Message { entry, .. } if text_of(&entry.kind) == text
                ))
                .count(),
            1
        );
    }
    assert_eq!(mine(&net, back), 1, "shown once");
    let texts: Vec<String> = net.clients[back]
        .driver
        .seeker_conversation()
        .unwrap()
        .history
        .iter()
        .map(|e| text_of(&e.kind).to_owned())
        .collect();
    assert_eq!(texts, vec!["hola".to_owned(), text.to_owned()]);
    let blob = net.relay.mailboxes[&conv].state.clone().unwrap().1;
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    assert_eq!(Seeker::restore(&secrets, &blob).unwrap().pending(), 0);
    let deposits_after = net.relay.deposits.len();
    assert!(deposits_after > deposits_before);
    net.close(back);

    // A visit after that sends nothing again.
    let again = net.plain();
    assert!(matches!(
        net.exec(
            again,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Ok(Outcome::Opened { .. })
    ));
    assert_eq!(net.relay.deposits.len(), deposits_after);
    assert_eq!(mine(&net, again), 1);
    for &i in &counselors {
        assert_eq!(times_in_history(&net, i, &conv, text), 1);
    }
}

#[test]
fn a_seeker_start_whose_deposit_fails_leaves_no_mailbox_or_state_on_the_relay() {
    let (org, devices, directory) = org_with_devices(2, 44);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    // Every deposit frame is cut off with its connection.
    net.fault = Some(Box::new(|_, f| {
        if is_deposit(f) {
            Fault::Drop
        } else {
            Fault::Pass
        }
    }));
    let (codename, secrets) = secrets_for(&org, 45);
    let seeker = net.plain();
    let cmd = net.start(seeker, start_cmd(secrets, "hola"));
    net.run_until(UnixTime(net.now.0 + ALL_ATTEMPTS_SECS));
    assert_eq!(net.outcome(seeker, cmd), Err(DriverError::Network));
    let sent = net.sent_since(seeker, 0);
    assert_eq!(
        sent.iter().filter(|f| is_deposit(f)).count(),
        super::DEPOSIT_ATTEMPTS as usize
    );
    let put = sent
        .iter()
        .position(|f| matches!(f, ClientFrame::PutState { .. }))
        .expect("saved before the deposits");
    let delete = sent
        .iter()
        .position(|f| matches!(f, ClientFrame::DeleteMailbox))
        .expect("the mailbox is deleted");
    assert!(put < delete);
    assert!(
        sent[delete..].iter().all(|f| !is_deposit(f)),
        "deleted after the last attempt"
    );
    assert!(net.relay.deposits.is_empty());
    assert_eq!(
        net.relay.mailboxes.keys().copied().collect::<BTreeSet<_>>(),
        devices.iter().map(|d| d.mailbox).collect(),
        "no mailbox (nor state) of the seeker on the relay"
    );
    assert!(
        net.relay.mailboxes.values().all(|m| m.state.is_none()),
        "no saved state"
    );
    assert_eq!(net.clients[seeker].driver.seeker_conversation(), None);
    assert_eq!(net.clients[seeker].driver.expires_at(), None);
    assert!(
        net.clients[seeker].open.is_empty(),
        "no connection left open"
    );
    assert!(!net.clients[seeker].driver.is_busy());
    assert_eq!(net.clients[seeker].driver.poll_timeout(), None);
    for i in counselors {
        assert!(new_conversations(&net, i).is_empty());
    }
    // The codename opens nothing.
    net.fault = None;
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    assert_eq!(
        net.exec(
            back,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Err(DriverError::CodenameNotFound)
    );
}

#[test]
fn messages_stored_but_unconfirmed_are_read_once_after_they_are_sent_again() {
    let (org, mut devices, directory) = org_with_devices(2, 46);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 47);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Claim,
            }
        ),
        Ok(Outcome::Acted)
    );
    // Every deposit reaches the relay, but its reply never comes back.
    net.fault = Some(Box::new(|_, f| {
        if is_deposit(f) {
            Fault::Lose
        } else {
            Fault::Pass
        }
    }));
    let text = "¿Me oye alguien?";
    let cmd = net.start(seeker, Command::SeekerWrite { text: text.into() });
    net.run_until(UnixTime(net.now.0 + ALL_ATTEMPTS_SECS));
    assert!(
        matches!(
            net.outcome(seeker, cmd),
            Err(DriverError::NotSentYet { .. })
        ),
        "{:?}",
        net.outcome(seeker, cmd)
    );
    let reply = "Sí, aquí estamos.";
    let cmd = net.start(
        a,
        Command::Team {
            conversation: conv,
            action: TeamAction::Reply { text: reply.into() },
        },
    );
    net.run_until(UnixTime(net.now.0 + ALL_ATTEMPTS_SECS));
    assert!(
        matches!(net.outcome(a, cmd), Err(DriverError::NotSentYet { .. })),
        "{:?}",
        net.outcome(a, cmd)
    );
    // Everyone online read both already.
    for i in [a, b] {
        assert_eq!(times_in_history(&net, i, &conv, text), 1);
    }
    assert_eq!(times_in_history(&net, b, &conv, reply), 1);
    assert_eq!(seeker_messages(&net, seeker), vec![reply.to_owned()]);
    net.fault = None;

    // Both are sent again: the seeker's visit, A's next sync.
    net.close(seeker);
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    let back = net.plain();
    assert!(matches!(
        net.exec(
            back,
            Command::SeekerOpen {
                secrets: Box::new(secrets)
            }
        ),
        Ok(Outcome::Opened { .. })
    ));
    keep(&net, a, &mut devices[0]);
    net.close(a);
    let a = synced(&mut net, &devices[0]);
    assert!(net.saved_state(a, &devices[0]).outbox.is_empty());
    for i in [a, b] {
        assert_eq!(times_in_history(&net, i, &conv, text), 1, "client {i}");
        assert_eq!(net.clients[i].driver.quarantine(), Some((0, 0)));
    }
    assert_eq!(times_in_history(&net, b, &conv, reply), 1);
    let texts: Vec<String> = net.clients[back]
        .driver
        .seeker_conversation()
        .unwrap()
        .history
        .iter()
        .map(|e| text_of(&e.kind).to_owned())
        .collect();
    assert_eq!(
        texts,
        vec!["hola".to_owned(), text.to_owned(), reply.to_owned()]
    );
    let unreadable = net
        .events(back)
        .iter()
        .filter(|e| matches!(e, Event::Unreadable { .. }))
        .count();
    assert_eq!(unreadable, 0, "{:?}", net.events(back));
    assert!(
        net.relay.mailboxes[&conv].stored.is_empty(),
        "{} left for the seeker",
        net.relay.mailboxes[&conv].stored.len()
    );
}

// ------------------------------------------------ the directory over time

/// Every envelope the client deposited since `mark`, by recipient.
fn deposited_to(net: &Net, i: usize, mark: usize) -> Vec<MailboxId> {
    net.sent_since(i, mark)
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::Deposit { envelopes, .. } => Some(envelopes),
            _ => None,
        })
        .flatten()
        .map(|e| *e.recipient())
        .collect()
}

fn open_cmd(org: &OrgSigningKey, codename: &Codename) -> Command {
    let again = Codename::parse(&codename.to_zeroizing_string()).unwrap();
    Command::SeekerOpen {
        secrets: Box::new(again.derive(org.public().as_ed25519()).unwrap()),
    }
}

/// The version of the directory the seeker's saved state (on the relay) holds.
fn saved_directory_serial(
    net: &Net,
    org: &OrgSigningKey,
    codename: &Codename,
    conv: &MailboxId,
) -> u64 {
    let blob = net.relay.mailboxes[conv].state.clone().unwrap().1;
    let secrets = codename.derive(org.public().as_ed25519()).unwrap();
    Seeker::restore(&secrets, &blob)
        .unwrap()
        .directory_version()
        .unwrap()
        .serial
}

#[test]
fn a_removed_device_no_longer_receives_the_seekers_next_message() {
    let (org, devices, first) = org_with_devices(2, 50);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 51);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    assert_eq!(new_conversations(&net, b), vec![conv]);
    net.close(seeker);
    // Device B is seized; the administrator removes it and publishes.
    net.close(b);
    let second = next_directory(&org, &first, net.now, |d| {
        assert!(d.remove_device(devices[1].id))
    });
    publish(&mut net, second);

    // The seeker's next visit: recipients rebuilt from the new directory,
    // and its version saved.
    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    let listed: Vec<DeviceId> = net.clients[back]
        .driver
        .seeker_conversation()
        .unwrap()
        .counselors
        .iter()
        .map(|c| c.device)
        .collect();
    assert_eq!(listed, vec![devices[0].id]);
    assert_eq!(saved_directory_serial(&net, &org, &codename, &conv), 2);
    let mark = net.mark(back);
    let text = "¿Siguen ahí?";
    assert!(matches!(
        net.exec(back, Command::SeekerWrite { text: text.into() }),
        Ok(Outcome::Sent { .. })
    ));
    assert_eq!(deposited_to(&net, back, mark), vec![devices[0].mailbox]);
    assert!(
        net.relay.mailboxes[&devices[1].mailbox].stored.is_empty(),
        "nothing waits for the removed device"
    );
    assert_eq!(times_in_history(&net, a, &conv, text), 1);
}

#[test]
fn a_removed_devices_message_to_the_seeker_is_refused() {
    let (org, devices, first) = org_with_devices(2, 52);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let _a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 53);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, b)[0];
    net.close(seeker);
    // B is removed, but whoever holds it answers with the directory it
    // fetched a moment ago.
    let second = next_directory(&org, &first, net.now, |d| {
        assert!(d.remove_device(devices[1].id))
    });
    publish(&mut net, second);
    assert_eq!(
        net.exec(
            b,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Mándeme su dirección.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    assert_eq!(net.relay.mailboxes[&conv].stored.len(), 1);

    let back = net.plain();
    let opened = net.exec(back, open_cmd(&org, &codename));
    assert!(matches!(opened, Ok(Outcome::Opened { .. })), "{opened:?}");
    assert_eq!(
        net.events(back)
            .into_iter()
            .filter(|e| !matches!(e, Event::Done { .. }))
            .collect::<Vec<_>>(),
        vec![Event::Unreadable {
            reason: UnreadableReason::Invalid
        }]
    );
    assert!(seeker_messages(&net, back).is_empty());
    assert_eq!(
        net.clients[back]
            .driver
            .seeker_conversation()
            .unwrap()
            .history
            .len(),
        1
    );
    // Not acknowledged: it stays on the relay, unread.
    assert!(!net.sent_since(back, 0).into_iter().any(is_ack));
    assert_eq!(net.relay.mailboxes[&conv].stored.len(), 1);
}

#[test]
fn a_removed_devices_team_event_is_refused() {
    let (org, devices, first) = org_with_devices(2, 54);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (_, secrets) = secrets_for(&org, 55);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    let second = next_directory(&org, &first, net.now, |d| {
        assert!(d.remove_device(devices[1].id))
    });
    publish(&mut net, second);
    // A takes the new directory; B, still holding the old one, claims.
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    let mark = net.mark(a);
    assert_eq!(
        net.exec(
            b,
            Command::Team {
                conversation: conv,
                action: TeamAction::Claim,
            }
        ),
        Ok(Outcome::Acted)
    );
    assert_eq!(
        net.events_since(a, mark),
        vec![Event::Unreadable {
            reason: UnreadableReason::Invalid
        }]
    );
    let status = net.clients[a]
        .driver
        .with_counselor(|c| c.conversation(&conv).unwrap().status)
        .unwrap();
    assert_eq!(status, Status::Open);
    assert_eq!(net.clients[a].driver.quarantine(), Some((1, 0)));
}

#[test]
fn a_relay_serving_the_previous_directory_is_detected() {
    let (org, devices, first) = org_with_devices(2, 56);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let _b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 57);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    assert_eq!(saved_directory_serial(&net, &org, &codename, &conv), 1);
    net.close(seeker);
    // B is removed in version 2; the seeker's visit accepts it.
    let second = next_directory(&org, &first, net.now, |d| {
        assert!(d.remove_device(devices[1].id))
    });
    publish(&mut net, second);
    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    assert_eq!(saved_directory_serial(&net, &org, &codename, &conv), 2);
    net.close(back);

    // A compelled relay serves version 1 again (B listed): a fresh driver,
    // with nothing but the codename, still notices.
    net.relay
        .directories
        .insert(*org.public().as_bytes(), first.encode());
    let state_before = net.relay.mailboxes[&conv].state.clone();
    let again = net.plain();
    let mark = net.mark(again);
    assert_eq!(
        net.exec(again, open_cmd(&org, &codename)),
        Err(DriverError::DirectoryRefused(DirectoryError::Rollback {
            got: 1,
            previous: 2
        }))
    );
    let sent = net.sent_since(again, mark);
    assert!(
        !sent.iter().any(|f| matches!(
            f,
            ClientFrame::Subscribe
                | ClientFrame::PutState { .. }
                | ClientFrame::Deposit { .. }
                | ClientFrame::Ack { .. }
        )),
        "nothing read, saved or sent: {sent:?}"
    );
    assert_eq!(net.relay.mailboxes[&conv].state, state_before);
    assert!(net.clients[again].open.is_empty());
    assert!(net.clients[again].driver.seeker_conversation().is_none());
}

#[test]
fn an_expired_directory_is_refused() {
    let (org, devices, first) = org_with_devices(1, 58);
    let expires_at = first.verify_stored(&org.public()).unwrap().expires_at();
    assert_eq!(
        expires_at.0,
        T0.0 + crate::directory::DEFAULT_DIRECTORY_LIFETIME_SECS
    );
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let (codename, secrets) = secrets_for(&org, 59);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    net.close(seeker);
    // The administrator does not re-sign in time (or the relay withholds
    // the new directory): from the expiry on, every client refuses.
    net.now = expires_at;
    let expired = Err(DriverError::DirectoryRefused(DirectoryError::Expired {
        expires_at: expires_at.0,
    }));
    let back = net.plain();
    let mark = net.mark(back);
    assert_eq!(net.exec(back, open_cmd(&org, &codename)), expired);
    assert!(
        !net.sent_since(back, mark)
            .iter()
            .any(|f| matches!(f, ClientFrame::Auth { .. } | ClientFrame::Subscribe)),
        "the seeker stops before its mailbox"
    );
    let seeker_look_up = net.plain();
    assert_eq!(net.exec(seeker_look_up, Command::Directory), expired);
    // The device: a team action is refused, nothing deposited ...
    let deposits = net.relay.deposits.len();
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "hola".into()
                },
            }
        ),
        expired
    );
    assert_eq!(net.relay.deposits.len(), deposits);
    // ... and so is a sync, by this process or a new one.
    assert_eq!(net.exec(a, Command::Sync), expired);
    let mut device = devices[0].clone();
    keep(&net, a, &mut device);
    net.close(a);
    let a = net.counselor(&device);
    assert_eq!(net.exec(a, Command::Sync), expired);

    // A directory signed now works again, for both.
    let renewed = next_directory(&org, &first, net.now, |_| {});
    publish(&mut net, renewed);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "hola".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    assert_eq!(seeker_messages(&net, back), vec!["hola".to_owned()]);
}

#[test]
fn a_device_added_later_gets_the_seekers_next_message() {
    let (org, devices, first) = org_with_devices(1, 60);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let (codename, secrets) = secrets_for(&org, 61);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    net.close(seeker);
    let (newcomer, entry) = new_device(&org, 2, 62);
    let second = next_directory(&org, &first, net.now, |d| {
        d.add_device(d.teams[0].id, entry).unwrap()
    });
    publish(&mut net, second);
    let n = synced(&mut net, &newcomer);

    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    let mark = net.mark(back);
    let text = "Sigo necesitando ayuda.";
    assert!(matches!(
        net.exec(back, Command::SeekerWrite { text: text.into() }),
        Ok(Outcome::Sent { .. })
    ));
    // A bundle for every recipient, fetched before the write is saved: the
    // new device, and the old one too, since a state restored from the
    // relay (perhaps an old copy) writes on new sessions (issue 17 item 5).
    let sent = net.sent_since(back, mark);
    let mut fetched: Vec<MailboxId> = sent
        .iter()
        .filter_map(|f| match f {
            ClientFrame::FetchPrekeys { mailbox } => Some(*mailbox),
            _ => None,
        })
        .collect();
    fetched.sort();
    let mut expected = vec![devices[0].mailbox, newcomer.mailbox];
    expected.sort();
    assert_eq!(fetched, expected);
    let fetch = sent
        .iter()
        .position(|f| matches!(f, ClientFrame::FetchPrekeys { .. }))
        .unwrap();
    let put = sent
        .iter()
        .position(|f| matches!(f, ClientFrame::PutState { .. }))
        .unwrap();
    assert!(fetch < put);
    assert_eq!(
        deposited_to(&net, back, mark),
        vec![devices[0].mailbox, newcomer.mailbox]
    );
    // The new device files the conversation, under the seeker's team.
    assert_eq!(new_conversations(&net, n), vec![conv]);
    assert_eq!(times_in_history(&net, n, &conv, text), 1);
    assert_eq!(times_in_history(&net, a, &conv, text), 1);
    // And it can answer.
    assert_eq!(
        net.exec(
            n,
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Bienvenida.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    assert_eq!(seeker_messages(&net, back), vec!["Bienvenida.".to_owned()]);
    // A second message needs no bundle.
    let mark = net.mark(back);
    assert!(matches!(
        net.exec(
            back,
            Command::SeekerWrite {
                text: "Gracias.".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    assert!(
        !net.sent_since(back, mark)
            .iter()
            .any(|f| matches!(f, ClientFrame::FetchPrekeys { .. }))
    );
}

// ------------------------------------------------ what the relay can tell

/// What a frame shows the relay beyond its bytes' secrecy: its kind, the
/// mailbox a prekey fetch names, and each deposited envelope's recipient and
/// size (a seeker's own mailbox, which differs by design, written as None).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Shape {
    Kind(&'static str),
    Fetch(MailboxId),
    Deposit(Vec<(Option<MailboxId>, usize)>),
}

fn shapes(frames: &[&ClientFrame], seekers: &[MailboxId]) -> Vec<Shape> {
    let who = |m: &MailboxId| (!seekers.contains(m)).then_some(*m);
    frames
        .iter()
        .map(|f| match f {
            ClientFrame::FetchPrekeys { mailbox } => Shape::Fetch(*mailbox),
            ClientFrame::Deposit { envelopes, .. } => Shape::Deposit(
                envelopes
                    .iter()
                    .map(|e| (who(e.recipient()), e.encoded_len()))
                    .collect(),
            ),
            f => Shape::Kind(f.name()),
        })
        .collect()
}

/// Two teams of two devices each, every device in the default intake set.
fn two_teams(seed: u8) -> (OrgSigningKey, Vec<Device>, SignedDirectory) {
    let (org, devices, directory) = org_with_devices(4, seed);
    let mut dir = directory
        .verify(&org.public(), None, T0)
        .unwrap()
        .directory()
        .clone();
    let moved: Vec<DeviceEntry> = dir.teams[0].devices.drain(2..).collect();
    dir.teams[1].devices = moved;
    let signed = dir.sign(&org).unwrap();
    (org, devices, signed)
}

#[test]
fn the_topic_a_seeker_chose_does_not_show_in_what_the_relay_receives() {
    let (org, devices, directory) = two_teams(41);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    for d in &devices {
        synced(&mut net, d);
    }
    let slugs: Vec<String> = net.clients[1]
        .driver
        .directory()
        .unwrap()
        .teams()
        .iter()
        .take(2)
        .map(|t| t.slug.clone())
        .collect();
    let mut seen = Vec::new();
    for (n, slug) in slugs.iter().enumerate() {
        let (_, secrets) = secrets_for(&org, 42 + n as u8);
        let mailbox = secrets.mailbox_keys().id();
        let seeker = net.plain();
        let mark = net.mark(seeker);
        let started = net.exec(
            seeker,
            Command::SeekerStart {
                secrets: Box::new(secrets),
                team_slug: slug.clone(),
                language: Language::Es,
                answers: crate::intake::IntakeAnswers::none(),
                text: "¿Puedo pedir asilo en Canadá?".into(),
            },
        );
        assert!(
            matches!(started, Ok(Outcome::Started { .. })),
            "{started:?}"
        );
        seen.push(shapes(&net.sent_since(seeker, mark), &[mailbox]));
    }
    assert!(seen[0].iter().any(|s| matches!(s, Shape::Deposit(_))));
    assert_eq!(
        seen[0], seen[1],
        "two topics: the same prekey fetches in the same order, the same recipients and sizes"
    );
}

/// Issue 20: the intake answers travel inside the opening's ciphertext.
/// A seeker who answers every question (a minor, urgent, writing for
/// someone else, several citizenships) and one who skips them all give the
/// relay the same prekey fetches, recipients, order and sizes (the answers
/// add at most a few dozen bytes, inside the padding bucket).
#[test]
fn the_intake_answers_do_not_show_in_what_the_relay_receives() {
    use crate::intake::{Answer, FOR_WHOM_SOMEONE_ELSE, IntakeAnswers, QuestionId};
    let (org, devices, directory) = two_teams(43);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    for d in &devices {
        synced(&mut net, d);
    }
    let slug = net.clients[1].driver.directory().unwrap().teams()[0]
        .slug
        .clone();
    let full = IntakeAnswers::new(vec![
        (QuestionId(1), Answer::Choice(FOR_WHOM_SOMEONE_ELSE)),
        (QuestionId(2), Answer::YesNo(true)),
        (QuestionId(3), Answer::Choices(vec![1, 2])),
        (QuestionId(4), Answer::Choices(vec![2, 3, 9])),
        (QuestionId(5), Answer::Choice(2)),
        (QuestionId(6), Answer::Choice(3)),
    ])
    .unwrap();
    let mut seen = Vec::new();
    for (n, answers) in [full, IntakeAnswers::none()].into_iter().enumerate() {
        let (_, secrets) = secrets_for(&org, 44 + n as u8);
        let mailbox = secrets.mailbox_keys().id();
        let seeker = net.plain();
        let mark = net.mark(seeker);
        let started = net.exec(
            seeker,
            Command::SeekerStart {
                secrets: Box::new(secrets),
                team_slug: slug.clone(),
                language: Language::Es,
                answers,
                text: "¿Puedo pedir asilo en Canadá?".into(),
            },
        );
        assert!(
            matches!(started, Ok(Outcome::Started { .. })),
            "{started:?}"
        );
        seen.push(shapes(&net.sent_since(seeker, mark), &[mailbox]));
    }
    assert!(seen[0].iter().any(|s| matches!(s, Shape::Deposit(_))));
    assert_eq!(
        seen[0], seen[1],
        "answers or none: the same prekey fetches in the same order, the same recipients and sizes"
    );
}

/// Answers the chosen team's questions do not take (a choice the question
/// does not offer, a question the team does not ask) fail before any
/// prekey is fetched or a mailbox registered.
#[test]
fn answers_that_do_not_fit_the_questions_fail_before_anything_is_spent() {
    use crate::intake::{Answer, IntakeAnswers, QuestionId};
    let (org, devices, directory) = two_teams(45);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    for d in &devices {
        synced(&mut net, d);
    }
    let slug = net.clients[1].driver.directory().unwrap().teams()[0]
        .slug
        .clone();
    for (n, bad) in [
        vec![(QuestionId(1), Answer::Choice(7))],
        vec![(QuestionId(2), Answer::Choice(1))],
        vec![(QuestionId(99), Answer::Declined)],
    ]
    .into_iter()
    .enumerate()
    {
        let (_, secrets) = secrets_for(&org, 46 + n as u8);
        let mailbox = secrets.mailbox_keys().id();
        let seeker = net.plain();
        let mark = net.mark(seeker);
        let started = net.exec(
            seeker,
            Command::SeekerStart {
                secrets: Box::new(secrets),
                team_slug: slug.clone(),
                language: Language::Es,
                answers: IntakeAnswers::new(bad).unwrap(),
                text: "Hola.".into(),
            },
        );
        assert!(matches!(started, Err(DriverError::Core(_))), "{started:?}");
        let sent = shapes(&net.sent_since(seeker, mark), &[mailbox]);
        assert!(
            sent.iter()
                .all(|s| matches!(s, Shape::Kind(k) if *k == "fetch_directory")),
            "only the directory was fetched: {sent:?}"
        );
    }
}

#[test]
fn who_answered_does_not_show_in_what_the_relay_receives() {
    let (org, devices, directory) = org_with_devices(3, 51);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let ids: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let mut convs = Vec::new();
    for n in 0..2u8 {
        let (_, secrets) = secrets_for(&org, 52 + n);
        convs.push(secrets.mailbox_keys().id());
        let seeker = net.plain();
        assert!(matches!(
            net.exec(seeker, start_cmd(secrets, "hola")),
            Ok(Outcome::Started { .. })
        ));
    }
    // Every device has written to every other, so all sessions are
    // established both ways (a first message carries a session start).
    for (n, i) in ids.iter().enumerate() {
        let note = TeamAction::Note {
            text: format!("note {n}"),
        };
        assert_eq!(
            net.exec(
                *i,
                Command::Team {
                    conversation: convs[0],
                    action: note
                }
            ),
            Ok(Outcome::Acted)
        );
    }
    // Two different counselors answer two seekers with texts of one length.
    let mut seen = Vec::new();
    for (n, i) in [ids[0], ids[1]].into_iter().enumerate() {
        let mark = net.mark(i);
        let action = TeamAction::Reply {
            text: format!("respuesta {n}"),
        };
        assert_eq!(
            net.exec(
                i,
                Command::Team {
                    conversation: convs[n],
                    action
                }
            ),
            Ok(Outcome::Acted)
        );
        seen.push(shapes(&net.sent_since(i, mark), &convs));
    }
    let deposits: Vec<&Shape> = seen[0]
        .iter()
        .filter(|s| matches!(s, Shape::Deposit(_)))
        .collect();
    assert!(!deposits.is_empty());
    // The acting device is among the recipients too: the full set.
    for d in &deposits {
        let Shape::Deposit(to) = d else {
            unreachable!()
        };
        for dev in &devices {
            assert!(to.iter().any(|(m, _)| *m == Some(dev.mailbox)));
        }
    }
    // Each seeker's envelope sits where its own mailbox id sorts among the
    // devices' (the canonical order), which says which seeker, not who
    // answered: compare without it, once checked it is there once.
    let without_seeker = |shapes: &[Shape]| -> Vec<Shape> {
        shapes
            .iter()
            .map(|s| match s {
                Shape::Deposit(to) => {
                    assert_eq!(to.iter().filter(|(m, _)| m.is_none()).count(), 1);
                    Shape::Deposit(to.iter().filter(|(m, _)| m.is_some()).cloned().collect())
                }
                other => other.clone(),
            })
            .collect()
    };
    assert_eq!(
        without_seeker(&seen[0]),
        without_seeker(&seen[1]),
        "replies by two counselors: the same recipients, order and sizes"
    );
}

/// Issue 17, item 5, through the driver: the relay keeps an old copy of the
/// seeker's state and serves it on the next visit. The message written then
/// opens new sessions (bundles fetched first), and the team reads both it
/// and the one written from the state the relay threw away.
#[test]
fn a_seeker_state_rolled_back_by_the_relay_still_gets_its_next_message_read() {
    let (org, devices, first) = org_with_devices(2, 70);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (codename, secrets) = secrets_for(&org, 71);
    let mailbox = secrets.mailbox_keys().id();
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    let old = net.relay.mailboxes[&mailbox].state.clone();
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerWrite {
                text: "I am seventeen and alone here.".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    net.close(seeker);
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    // The relay serves the older blob.
    net.relay.mailboxes.get_mut(&mailbox).unwrap().state = old;
    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    let mark = net.mark(back);
    assert!(matches!(
        net.exec(
            back,
            Command::SeekerWrite {
                text: "my aunt lives in Montreal, QC.".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    let fetched = net
        .sent_since(back, mark)
        .iter()
        .filter(|f| matches!(f, ClientFrame::FetchPrekeys { .. }))
        .count();
    assert_eq!(fetched, 2, "a bundle per device: new sessions");
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(
        times_in_history(&net, a, &conv, "I am seventeen and alone here."),
        1
    );
    assert_eq!(
        times_in_history(&net, a, &conv, "my aunt lives in Montreal, QC."),
        1,
        "the message from the rolled-back state is read"
    );
    assert_eq!(net.exec(b, Command::Sync), Ok(Outcome::Synced));
    assert_eq!(
        times_in_history(&net, b, &conv, "my aunt lives in Montreal, QC."),
        1
    );
}

/// Search in the counselor inbox through the driver: a seeker's message
/// that arrives live is found at once (accents ignored); the index is held
/// in memory only and dropped when the driver closes (the inbox locks).
#[test]
fn the_inbox_search_finds_what_arrives_and_is_dropped_on_close() {
    use crate::client::search::{Field, InboxFilter};
    let (org, devices, directory) = org_with_devices(2, 1);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    synced(&mut net, &devices[1]);
    let none = net.clients[a]
        .driver
        .search("anos", InboxFilter::All)
        .unwrap();
    assert_eq!(none.total, 0);
    let (_, secrets) = secrets_for(&org, 2);
    let seeker = net.plain();
    net.exec(seeker, start_cmd(secrets, "Tengo 17 años y estoy solo."))
        .unwrap();
    let conv = new_conversations(&net, a)[0];
    let d = &mut net.clients[a].driver;
    let found = d.search("ANOS solo", InboxFilter::All).unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.hits[0].conversation, conv);
    let snippet = found.hits[0].snippet.clone().unwrap();
    assert_eq!(snippet.field, Field::SeekerMessage);
    assert_eq!(snippet.matched, "años");
    assert_eq!(d.search("anos", InboxFilter::Resolved).unwrap().total, 0);
    assert!(d.search_index_size().1 > 0);
    assert!(matches!(
        d.search(&"x".repeat(300), InboxFilter::All),
        Err(DriverError::Core(crate::Error::Misuse(
            crate::error::ApiMisuse::QueryTooLong { .. }
        )))
    ));
    d.close();
    assert_eq!(d.search_index_size(), (0, 0));
    // A seeker's driver has no inbox to search.
    assert!(matches!(
        net.clients[seeker].driver.search("anos", InboxFilter::All),
        Err(DriverError::Misuse { .. })
    ));
}

// ------------------------------------------------ receipts and retention
// (issue 20 items 3-4, docs/PROTOCOL.md §6.6)

#[test]
fn devices_send_one_delivered_receipt_each_and_the_seeker_counts_them() {
    let (org, devices, directory) = org_with_devices(3, 71);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let counselors: Vec<usize> = devices.iter().map(|d| synced(&mut net, d)).collect();
    let (_, secrets) = secrets_for(&org, 72);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "Necesito ayuda.")),
        Ok(Outcome::Started { .. })
    ));
    net.run();
    // Every device read the opening live and said so, once.
    let status = net.clients[seeker].driver.seeker_status().unwrap();
    assert_eq!((status.reached, status.devices), (3, 3));
    assert!(!status.read && !status.answered && !status.resolved);
    let receipts = net
        .relay
        .deposits
        .iter()
        .filter(|d| counselors.contains(&d.by))
        .count();
    assert_eq!(receipts, 3, "one receipt per device, not per message");
    assert!(
        net.events(seeker)
            .iter()
            .any(|e| matches!(e, Event::SeekerStatus))
    );
    // Device 1 answers (claiming it): the seeker's next message gets a
    // receipt from device 1 only; the others leave it to their colleague.
    let conv = new_conversations(&net, counselors[0])[0];
    assert_eq!(
        net.exec(
            counselors[0],
            Command::Team {
                conversation: conv,
                action: TeamAction::Reply {
                    text: "Aquí estamos.".into()
                },
            }
        ),
        Ok(Outcome::Acted)
    );
    net.run();
    assert!(net.clients[seeker].driver.seeker_status().unwrap().answered);
    let before = net.relay.deposits.len();
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerWrite {
                text: "Gracias.".into()
            }
        ),
        Ok(Outcome::Sent { .. })
    ));
    net.run();
    let by: Vec<usize> = net.relay.deposits[before..]
        .iter()
        .filter(|d| counselors.contains(&d.by))
        .map(|d| d.by)
        .collect();
    assert_eq!(by, vec![counselors[0]], "only the claiming device");
    let status = net.clients[seeker].driver.seeker_status().unwrap();
    assert_eq!(status.reached, 1);
    assert!(!status.answered, "the new message has no answer yet");
}

#[test]
fn a_seeker_state_restored_past_its_retention_is_deleted_not_shown() {
    let (org, devices, first) = org_with_devices(1, 73);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, first.clone());
    let a = synced(&mut net, &devices[0]);
    let (codename, secrets) = secrets_for(&org, 74);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    let deletion = net.clients[seeker].driver.seeker_deletion_at().unwrap();
    net.close(seeker);
    // One minute before the deletion the conversation is there (with a
    // directory re-signed meanwhile: the first one has expired).
    net.now = UnixTime(deletion.0 - 60);
    let second = next_directory(&org, &first, net.now, |_| {});
    publish(&mut net, second);
    let back = net.plain();
    assert!(matches!(
        net.exec(back, open_cmd(&org, &codename)),
        Ok(Outcome::Opened { .. })
    ));
    net.close(back);
    // At the deletion time: not shown, and deleted from the relay.
    net.now = deletion;
    let late = net.plain();
    assert_eq!(
        net.exec(late, open_cmd(&org, &codename)),
        Err(DriverError::CodenameNotFound)
    );
    assert!(net.clients[late].driver.seeker_conversation().is_none());
    assert!(
        !net.relay.mailboxes.contains_key(&conv),
        "the client deleted the mailbox"
    );
    // The device deletes its copy at its next sync.
    assert_eq!(net.exec(a, Command::Sync), Ok(Outcome::Synced));
    assert!(
        net.team_events(a)
            .iter()
            .any(|e| matches!(e, TeamEvent::Expired { conversation } if *conversation == conv))
    );
    assert!(
        net.clients[a]
            .driver
            .with_counselor(|c| c.conversation(&conv).is_none())
            .unwrap()
    );
}

// ------------------------------------------------------------ attachments

fn file_info(name: &str, ty: &str) -> crate::attachment::FileInfo {
    crate::attachment::FileInfo {
        name: crate::attachment::FileName::new(name).unwrap(),
        media_type: crate::attachment::MediaType::new(ty).unwrap(),
    }
}

fn pdf_bytes(len: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend((0..len - v.len()).map(|i| (i * 7 % 253) as u8));
    v
}

fn attachments_of(net: &Net, i: usize, conv: &MailboxId) -> Vec<crate::attachment::AttachmentRef> {
    net.clients[i]
        .driver
        .with_counselor(|c| c.conversation(conv).unwrap().history.clone())
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EntryKind::Attachment(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn put_chunks_since(net: &Net, i: usize, mark: usize) -> Vec<u16> {
    net.sent_since(i, mark)
        .into_iter()
        .filter_map(|f| match f {
            ClientFrame::PutChunk { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

/// A seeker with an open conversation and one synced device; (net,
/// seeker, device, conversation).
fn attach_setup() -> (Net, usize, usize, MailboxId) {
    let (org, devices, directory) = org_with_devices(1, 40);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let (_, secrets) = secrets_for(&org, 41);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "Hola")),
        Ok(Outcome::Started { .. })
    ));
    let conv = new_conversations(&net, a)[0];
    (net, seeker, a, conv)
}

#[test]
fn a_seekers_pdf_and_gps_jpeg_reach_the_counselor_whole_and_without_gps() {
    let (mut net, seeker, a, conv) = attach_setup();
    // A 200 000-byte PDF: 4 chunks, read one slice at a time.
    let pdf = pdf_bytes(200_000);
    net.clients[seeker].file = pdf.clone();
    let cmd = net.start(
        seeker,
        Command::SeekerAttach {
            info: file_info("notice to appear.pdf", "application/pdf"),
            size: pdf.len() as u64,
        },
    );
    assert!(matches!(
        net.outcome(seeker, cmd),
        Ok(Outcome::Attached { .. })
    ));
    let reads = net.clients[seeker].reads.clone();
    assert_eq!(
        reads,
        vec![
            (0, 65_536),
            (65_536, 65_536),
            (131_072, 65_536),
            (196_608, 3_392)
        ],
        "the file is read a chunk at a time, never whole"
    );
    // Progress, ending at the whole file.
    let progress: Vec<(u64, u64)> = net
        .events(seeker)
        .into_iter()
        .filter_map(|e| match e {
            Event::Progress {
                command,
                done,
                total,
            } if command == cmd => Some((done, total)),
            _ => None,
        })
        .collect();
    assert_eq!(progress.first(), Some(&(0, 200_000)));
    assert_eq!(progress.last(), Some(&(200_000, 200_000)));
    // The blob is in the seeker's mailbox, 4 chunks of one size.
    let (owner, chunks) = net.relay.blobs.values().next().unwrap();
    assert_eq!(*owner, conv);
    assert_eq!(chunks.len(), 4);
    assert!(
        chunks
            .iter()
            .all(|c| c.as_ref().unwrap().len() == crate::attachment::CHUNK_SEALED_LEN)
    );
    // The JPEG with GPS.
    let jpeg = crate::metadata::samples::jpeg_with_gps();
    net.clients[seeker].file = jpeg.clone();
    net.clients[seeker].reads.clear();
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerAttach {
                info: file_info("IMG_0042.JPG", "image/jpeg"),
                size: jpeg.len() as u64,
            }
        ),
        Ok(Outcome::Attached { .. })
    ));
    // The counselor has both references and downloads them.
    let refs = attachments_of(&net, a, &conv);
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0].info.name.as_str(), "notice to appear.pdf");
    assert_eq!(refs[1].info.media_type.as_str(), "image/jpeg");
    for (r, want) in [
        (&refs[0], pdf),
        (&refs[1], crate::metadata::samples::jpeg_cleaned()),
    ] {
        net.clients[a].written.clear();
        let got = net.exec(
            a,
            Command::FetchAttachment {
                reference: r.clone(),
            },
        );
        assert_eq!(
            got,
            Ok(Outcome::Fetched {
                size: want.len() as u64
            })
        );
        assert_eq!(net.clients[a].written, want);
    }
    // The seeker's history shows both files too.
    let history = net.clients[seeker]
        .driver
        .seeker_conversation()
        .unwrap()
        .history;
    assert_eq!(
        history
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Attachment(_)))
            .count(),
        2
    );
}

#[test]
fn a_counselors_file_reaches_the_seeker_who_comes_back() {
    let (mut net, seeker, a, conv) = attach_setup();
    let form = pdf_bytes(70_000);
    net.clients[a].file = form.clone();
    let cmd = net.start(
        a,
        Command::CounselorAttach {
            conversation: conv,
            info: file_info("I-589 guide.pdf", "application/pdf"),
            size: form.len() as u64,
        },
    );
    assert_eq!(net.outcome(a, cmd), Ok(Outcome::Acted));
    // The seeker (still connected) receives the reference and downloads it.
    let got: Vec<crate::attachment::AttachmentRef> = net
        .events(seeker)
        .into_iter()
        .filter_map(|e| match e {
            Event::SeekerMessage(crate::client::Entry {
                kind: EntryKind::Attachment(r),
                ..
            }) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(
        net.exec(
            seeker,
            Command::FetchAttachment {
                reference: got[0].clone()
            }
        ),
        Ok(Outcome::Fetched { size: 70_000 })
    );
    assert_eq!(net.clients[seeker].written, form);
    // The blob belongs to the seeker's mailbox; deleting it deletes the blob.
    assert_eq!(net.relay.blobs.values().next().unwrap().0, conv);
    assert_eq!(
        net.exec(seeker, Command::SeekerDelete),
        Ok(Outcome::Deleted)
    );
    assert!(net.relay.blobs.is_empty(), "blobs go with the mailbox");
}

#[test]
fn an_upload_cut_off_halfway_resumes_from_what_the_relay_holds() {
    let (mut net, seeker, a, conv) = attach_setup();
    let pdf = pdf_bytes(5 * 65_536);
    net.clients[seeker].file = pdf.clone();
    // The connection drops after the relay stored chunk 2 and before its
    // reply arrives; then a rate limit refuses the next put once.
    let mut puts = 0;
    net.fault = Some(Box::new(move |_, f| {
        if matches!(f, ClientFrame::PutChunk { .. }) {
            puts += 1;
            if puts == 3 {
                return Fault::Lose;
            }
        }
        Fault::Pass
    }));
    net.relay.refuse_puts = 0;
    let mark = net.mark(seeker);
    let cmd = net.start(
        seeker,
        Command::SeekerAttach {
            info: file_info("asylum receipt.pdf", "application/pdf"),
            size: pdf.len() as u64,
        },
    );
    net.relay.refuse_puts = 1;
    net.run_until(UnixTime(net.now.0 + 120));
    assert!(matches!(
        net.outcome(seeker, cmd),
        Ok(Outcome::Attached { .. })
    ));
    // Chunks 0, 1, 2 (lost reply); after reconnecting the status says 2 is
    // held, so 3 and 4 follow (3 twice: once refused by the rate limit).
    assert_eq!(put_chunks_since(&net, seeker, mark), vec![0, 1, 2, 3, 3, 4]);
    assert!(
        net.sent_since(seeker, mark)
            .iter()
            .any(|f| matches!(f, ClientFrame::BlobStatus { .. })),
        "resumed from the relay's status"
    );
    let reads = net.clients[seeker].reads.len();
    assert_eq!(reads, 5, "each slice read once");
    let r = attachments_of(&net, a, &conv).pop().unwrap();
    assert_eq!(
        net.exec(a, Command::FetchAttachment { reference: r }),
        Ok(Outcome::Fetched {
            size: pdf.len() as u64
        })
    );
    assert_eq!(net.clients[a].written, pdf);
}

#[test]
fn a_file_over_10_mib_is_refused_before_anything_is_read_or_sent() {
    let (mut net, seeker, _, _) = attach_setup();
    let mark = net.mark(seeker);
    let too_big = crate::attachment::MAX_ATTACHMENT_LEN as u64 + 1;
    let now = net.now;
    let err = net.clients[seeker]
        .driver
        .command(
            Command::SeekerAttach {
                info: file_info("scan.pdf", "application/pdf"),
                size: too_big,
            },
            now,
        )
        .unwrap_err();
    assert_eq!(
        err,
        DriverError::AttachmentTooLarge {
            size: too_big,
            max: crate::attachment::MAX_ATTACHMENT_LEN as u64
        }
    );
    net.run();
    assert!(net.sent_since(seeker, mark).is_empty());
    assert!(net.clients[seeker].reads.is_empty());
}

#[test]
fn a_damaged_image_is_not_sent() {
    let (mut net, seeker, _, _) = attach_setup();
    let mut jpeg = crate::metadata::samples::jpeg_with_gps();
    jpeg.truncate(jpeg.len() / 2);
    net.clients[seeker].file = jpeg.clone();
    let mark = net.mark(seeker);
    assert_eq!(
        net.exec(
            seeker,
            Command::SeekerAttach {
                info: file_info("IMG.jpg", "image/jpeg"),
                size: jpeg.len() as u64,
            }
        ),
        Err(DriverError::ImageUnreadable)
    );
    assert!(put_chunks_since(&net, seeker, mark).is_empty());
    assert!(net.relay.blobs.is_empty());
}

#[test]
fn a_heic_photo_is_refused_rather_than_sent_with_its_metadata() {
    let (mut net, seeker, _, _) = attach_setup();
    // Claimed to be a PDF: the content decides.
    let mut heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    heic.extend_from_slice(b"Exif\0\0GPS 45N 73W");
    net.clients[seeker].file = heic.clone();
    let mark = net.mark(seeker);
    assert_eq!(
        net.exec(
            seeker,
            Command::SeekerAttach {
                info: file_info("IMG_0001.pdf", "application/pdf"),
                size: heic.len() as u64,
            }
        ),
        Err(DriverError::ImageUnsupported)
    );
    assert!(put_chunks_since(&net, seeker, mark).is_empty());
}

#[test]
fn a_tampered_chunk_fails_the_download() {
    let (mut net, seeker, a, conv) = attach_setup();
    let pdf = pdf_bytes(100_000);
    net.clients[seeker].file = pdf.clone();
    net.exec(
        seeker,
        Command::SeekerAttach {
            info: file_info("a.pdf", "application/pdf"),
            size: pdf.len() as u64,
        },
    )
    .unwrap();
    for (_, chunks) in net.relay.blobs.values_mut() {
        chunks[1].as_mut().unwrap()[10] ^= 1;
    }
    let r = attachments_of(&net, a, &conv).pop().unwrap();
    assert_eq!(
        net.exec(a, Command::FetchAttachment { reference: r }),
        Err(DriverError::AttachmentDamaged)
    );
}

#[test]
fn a_colleague_gets_a_copy_of_the_counselors_file_and_can_open_it() {
    let (org, devices, directory) = org_with_devices(2, 50);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (_, secrets) = secrets_for(&org, 51);
    let seeker = net.plain();
    net.exec(seeker, start_cmd(secrets, "Hola")).unwrap();
    let conv = new_conversations(&net, a)[0];
    let form = pdf_bytes(80_000);
    net.clients[a].file = form.clone();
    assert_eq!(
        net.exec(
            a,
            Command::CounselorAttach {
                conversation: conv,
                info: file_info("form.pdf", "application/pdf"),
                size: form.len() as u64,
            }
        ),
        Ok(Outcome::Acted)
    );
    // B's history has the file (a team Copy of the reference), and opens it.
    let r = attachments_of(&net, b, &conv)
        .pop()
        .expect("a copy of the file");
    assert_eq!(r.info.name.as_str(), "form.pdf");
    assert_eq!(
        net.exec(b, Command::FetchAttachment { reference: r }),
        Ok(Outcome::Fetched { size: 80_000 })
    );
    assert_eq!(net.clients[b].written, form);
    // One blob for the whole fan-out.
    assert_eq!(net.relay.blobs.len(), 1);
}

#[test]
fn a_relay_whose_frames_cannot_carry_a_chunk_is_refused_before_any_upload() {
    let (org, devices, directory) = org_with_devices(1, 60);
    let mut net = Net::new(
        &org,
        Limits {
            max_frame_len: 65_536,
            ..ROOMY
        },
    );
    publish(&mut net, directory);
    synced(&mut net, &devices[0]);
    let (_, secrets) = secrets_for(&org, 61);
    let seeker = net.plain();
    net.exec(seeker, start_cmd(secrets, "Hola")).unwrap();
    let pdf = pdf_bytes(1000);
    net.clients[seeker].file = pdf.clone();
    let mark = net.mark(seeker);
    assert_eq!(
        net.exec(
            seeker,
            Command::SeekerAttach {
                info: file_info("a.pdf", "application/pdf"),
                size: pdf.len() as u64,
            }
        ),
        Err(DriverError::TooLargeForRelay {
            size: super::attach::PUT_CHUNK_FRAME_LEN,
            max: 65_536
        })
    );
    assert!(put_chunks_since(&net, seeker, mark).is_empty());
}

// ------------------------------------------------------------ resolve and purge

/// A counselor's purge (docs/PROTOCOL.md §6.7): the driver deletes every
/// blob the conversation references (the seeker's file and the team's)
/// with `DeleteBlob` before the local copy, then the seeker is told the
/// case is resolved and the colleague's device deletes it on the event.
#[test]
fn a_purge_deletes_the_cases_blobs_on_the_relay_and_the_case_on_every_device() {
    let (org, devices, directory) = org_with_devices(2, 90);
    let mut net = Net::new(&org, ROOMY);
    publish(&mut net, directory);
    let a = synced(&mut net, &devices[0]);
    let b = synced(&mut net, &devices[1]);
    let (_, secrets) = secrets_for(&org, 91);
    let seeker = net.plain();
    assert!(matches!(
        net.exec(seeker, start_cmd(secrets, "Hola")),
        Ok(Outcome::Started { .. })
    ));
    net.run();
    let conv = new_conversations(&net, a)[0];
    // A file from the seeker, one from the team.
    let pdf = pdf_bytes(70_000);
    net.clients[seeker].file = pdf.clone();
    assert!(matches!(
        net.exec(
            seeker,
            Command::SeekerAttach {
                info: file_info("notice to appear.pdf", "application/pdf"),
                size: pdf.len() as u64,
            }
        ),
        Ok(Outcome::Attached { .. })
    ));
    net.clients[a].file = pdf_bytes(1_000);
    assert_eq!(
        net.exec(
            a,
            Command::CounselorAttach {
                conversation: conv,
                info: file_info("guide.pdf", "application/pdf"),
                size: 1_000,
            }
        ),
        Ok(Outcome::Acted)
    );
    net.run();
    assert_eq!(net.relay.blobs.len(), 2);
    assert_eq!(attachments_of(&net, b, &conv).len(), 2);
    // Ana purges.
    let sent_mark = net.mark(a);
    assert_eq!(
        net.exec(
            a,
            Command::Team {
                conversation: conv,
                action: TeamAction::Purge,
            }
        ),
        Ok(Outcome::Acted)
    );
    let deletes = net
        .sent_since(a, sent_mark)
        .into_iter()
        .filter(|f| matches!(f, ClientFrame::DeleteBlob { .. }))
        .count();
    assert_eq!(deletes, 2, "one DeleteBlob per file");
    assert!(
        net.relay.blobs.is_empty(),
        "the files are gone from the relay"
    );
    assert!(
        net.clients[a]
            .driver
            .with_counselor(|c| c.conversation(&conv).is_none())
            .unwrap()
    );
    // The colleague's device deletes it as the event arrives.
    net.run();
    assert!(
        net.team_events(b)
            .iter()
            .any(|e| matches!(e, TeamEvent::Purged { conversation, .. } if *conversation == conv))
    );
    assert!(
        net.clients[b]
            .driver
            .with_counselor(|c| c.conversation(&conv).is_none())
            .unwrap()
    );
    // The seeker is told it is resolved.
    assert!(net.clients[seeker].driver.seeker_status().unwrap().resolved);
}
