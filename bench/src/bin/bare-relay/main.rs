//! `bare-relay`: the physical limit for the relay benchmarks. A bare
//! tokio-tungstenite server speaking Northstar's frames with none of the
//! relay's work: no signature checks, no limits, no quotas. A deposit is
//! acknowledged and forwarded to the recipient's subscriber
//! (`--mode forward`: nothing stored), or first inserted by one SQLite
//! writer thread that commits in batches, as Northstar's store does (WAL,
//! `synchronous=FULL`), with acknowledgements deleting (`--mode sqlite-batch`):
//! appended to a rowid table with no index, deleted by a rowid kept in
//! memory, the least work a durable store can do per message. Every
//! `Deposited` and every `Deliver` follows the commit of its envelope, every
//! `Acked` the commit of its deletes.
//! NOT a relay: it trusts every client. Benchmarks only.
//!
//! Lean on purpose (docs/bench-notes/bare.md says what each step saved):
//! - one thread for every connection (a `current_thread` runtime, `Rc`
//!   state, no locks or atomics between connections), one task per
//!   connection that reads and writes its socket itself (no split halves,
//!   no task or channel per message);
//! - deposits and acknowledgements are checked in place ([`wire`]), with
//!   every rule of the core's decoder, and hashed once (SHA-256: the
//!   envelope's id, which `Deliver` carries and `Ack` names, so a relay must
//!   compute it); the `Deliver` frame is written once, into the batch the
//!   writer stores from, and sent as slices of that one buffer;
//! - the writer commits whatever arrived during the previous commit as one
//!   transaction ([`store`]); one wake-up of the runtime per commit, after
//!   which every reply and delivery of the batch is queued on its connection
//!   and each connection flushes all of them with one write.

mod store;
mod wire;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use northstar_core::frame::{ClientFrame, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use store::{Batch, ConnId, Op, RandomKey, Store};
use wire::Hot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Acknowledge and forward; store nothing.
    Forward,
    /// Insert (deposits) and delete (acks) through one SQLite writer committing in batches.
    SqliteBatch,
}

/// Bare WebSocket server: the machine's limit for the relay benchmarks.
#[derive(Parser, Debug)]
#[command(name = "bare-relay", version)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7800")]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "forward")]
    mode: Mode,
    /// Directory of the SQLite file (sqlite-batch mode).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Most writes (envelopes stored, acknowledgement frames) per
    /// transaction (sqlite-batch mode); a deposit frame's envelopes are
    /// never split between two transactions.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Bytes read from a socket at a time (the relay reads 4 KiB; the
    /// library zeroes this much before every read).
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
    /// WAL size, MiB, after which a commit checkpoints (sqlite-batch mode).
    /// SQLite's default, which the relay keeps, is 1000 pages (3.9 MiB of
    /// 4 KiB pages); 40 MiB copies each page rewritten by a deposit and
    /// then by its deletion to the database once instead of several times:
    /// checkpoints fell from 20 % to 8 % of the server's CPU (4 KiB pages).
    #[arg(long, default_value_t = 40)]
    wal_checkpoint_mib: u32,
    /// SQLite page cache, MiB (sqlite-batch mode). SQLite's default is
    /// 2 MiB, fewer pages than the envelopes in flight at saturation take:
    /// the b-tree was read back from the file and spilled mid-transaction.
    #[arg(long, default_value_t = 64)]
    cache_mib: u32,
    /// SQLite page size of the new database (sqlite-batch mode). SQLite
    /// writes each WAL frame (page) with its own system calls and checksum:
    /// 16 KiB pages hold 13 envelopes of 1 KiB instead of 3, so a commit
    /// writes a quarter of the frames for about the same bytes.
    #[arg(long, default_value_t = 16384)]
    page_size: u32,
}

/// Forward mode: bytes reserved for the deliveries of one connection's wake-up.
const FORWARD_BYTES: usize = 64 << 10;

/// A connection as the rest of the server sees it.
#[derive(Default)]
struct Slot {
    generation: u32,
    open: bool,
    /// Frames for it, appended by the dispatcher.
    out: Vec<Message>,
    /// Its task, woken when `out` gets frames.
    waker: Option<Waker>,
}

/// Everything shared by the connections, all on the one runtime thread.
struct Hub {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    subscribers: RefCell<HashMap<MailboxId, ConnId, BuildHasherDefault<RandomKey>>>,
    store: Option<Arc<Store>>,
    /// Replies of one dispatch: (connection, span in the reply buffer).
    replies: RefCell<Vec<(ConnId, u32, u32)>>,
}

/// What one connection's task keeps to itself.
struct Local {
    id: ConnId,
    mailbox: Option<MailboxId>,
    /// Accepted by the sink in order; taken from the slot's `out`.
    sending: VecDeque<Message>,
    taken: Vec<Message>,
    /// Written to the sink since the last flush.
    unflushed: bool,
    /// Forward mode: the deposits read in this wake-up, dispatched at its end.
    batch: Batch,
}

impl Hub {
    fn open(&self) -> ConnId {
        let mut slots = self.slots.borrow_mut();
        let index = self.free.borrow_mut().pop().unwrap_or_else(|| {
            slots.push(Slot::default());
            u32::try_from(slots.len() - 1).unwrap_or(u32::MAX)
        });
        let slot = &mut slots[index as usize];
        slot.open = true;
        ConnId {
            index,
            generation: slot.generation,
        }
    }

    fn close(&self, id: ConnId, mailbox: Option<MailboxId>) {
        if let Some(m) = mailbox {
            let mut subs = self.subscribers.borrow_mut();
            if subs.get(&m) == Some(&id) {
                subs.remove(&m);
            }
        }
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots[id.index as usize];
        slot.open = false;
        slot.generation = slot.generation.wrapping_add(1);
        slot.out.clear();
        slot.waker = None;
        self.free.borrow_mut().push(id.index);
    }

    /// Sends what a committed (or, forward mode, just read) batch owes: each
    /// `Deliver` as a slice of the batch's bytes, each reply as a slice of
    /// one reply buffer; every connection that got something is woken once.
    fn dispatch(&self, b: &mut Batch) {
        let frames = Bytes::from(std::mem::take(&mut b.bytes));
        let mut reply_bytes = Vec::with_capacity(b.ops.len() * 48);
        let mut replies = self.replies.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        let subs = self.subscribers.borrow();
        for op in b.ops.drain(..) {
            match op {
                Op::Insert {
                    conn,
                    request_id,
                    reply,
                    to,
                    at,
                    len,
                } => {
                    if let Some(&dst) = subs.get(&to) {
                        let frame = frames.slice(at as usize..(at + len) as usize);
                        send(&mut slots, dst, frame);
                    }
                    if let Some(accepted) = reply {
                        let s = reply_bytes.len();
                        wire::deposited(&mut reply_bytes, request_id, accepted);
                        replies.push((conn, s as u32, reply_bytes.len() as u32));
                    }
                }
                Op::Delete {
                    conn,
                    request_id,
                    deleted,
                    ..
                } => {
                    let s = reply_bytes.len();
                    wire::acked(&mut reply_bytes, request_id, deleted);
                    replies.push((conn, s as u32, reply_bytes.len() as u32));
                }
            }
        }
        let reply_bytes = Bytes::from(reply_bytes);
        for (conn, s, e) in replies.drain(..) {
            send(&mut slots, conn, reply_bytes.slice(s as usize..e as usize));
        }
    }

    /// One wake-up of a connection: reads every frame ready, then writes
    /// every frame queued for it and flushes once.
    fn poll_conn(
        &self,
        cx: &mut Context<'_>,
        ws: &mut WebSocketStream<TcpStream>,
        me: &mut Local,
    ) -> Poll<Result<()>> {
        // Not woken by its own forwarded deposits' replies.
        self.slots.borrow_mut()[me.id.index as usize].waker = None;
        loop {
            match ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(Message::Binary(b)))) => self.frame(me, &b),
                // Pings are answered by the library on the next flush.
                Poll::Ready(Some(Ok(_))) => me.unflushed = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if !me.batch.ops.is_empty() {
            self.dispatch(&mut me.batch);
        }
        {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots[me.id.index as usize];
            std::mem::swap(&mut slot.out, &mut me.taken);
            if slot.waker.is_none() {
                slot.waker = Some(cx.waker().clone());
            }
        }
        me.sending.extend(me.taken.drain(..));
        while let Some(m) = me.sending.pop_front() {
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    ws.start_send_unpin(m)?;
                    me.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {
                    me.sending.push_front(m);
                    break;
                }
            }
        }
        if me.unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => me.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    fn frame(&self, me: &mut Local, b: &[u8]) {
        match wire::read(b) {
            // Refused by the core's rules too; ignored, as the old server did.
            None => {}
            Some(Hot::Deposit(d)) => {
                // Hash before taking the writer's lock.
                let mut ids = [[0u8; wire::ID_LEN]; northstar_core::frame::MAX_BATCH_ENVELOPES];
                for (id, (e, _)) in ids.iter_mut().zip(wire::envelopes(b, d)) {
                    *id = *EnvelopeId::of(e).as_bytes();
                }
                let conn = me.id;
                let fill = |batch: &mut Batch| {
                    for (i, (e, to)) in wire::envelopes(b, d).enumerate() {
                        let at = batch.bytes.len();
                        wire::deliver(&mut batch.bytes, &ids[i], e);
                        let last = i + 1 == usize::from(d.count);
                        batch.ops.push(Op::Insert {
                            conn,
                            request_id: d.request_id,
                            reply: last.then_some(d.count),
                            to,
                            at: at as u32,
                            len: (batch.bytes.len() - at) as u32,
                        });
                    }
                };
                match &self.store {
                    Some(store) => store.push(fill),
                    None => {
                        if me.batch.bytes.capacity() == 0 {
                            me.batch.bytes.reserve(FORWARD_BYTES);
                        }
                        fill(&mut me.batch)
                    }
                }
            }
            Some(Hot::Ack(a)) => match (&self.store, me.mailbox) {
                (Some(store), Some(mailbox)) => store.push(|batch| {
                    let at = batch.bytes.len();
                    batch.bytes.extend_from_slice(&b[a.first..]);
                    batch.ops.push(Op::Delete {
                        conn: me.id,
                        request_id: a.request_id,
                        mailbox,
                        at: at as u32,
                        count: a.count,
                        deleted: 0,
                    });
                }),
                _ => {
                    let mut out = Vec::with_capacity(16);
                    wire::acked(&mut out, a.request_id, 0);
                    me.sending.push_back(Message::binary(out));
                }
            },
            Some(Hot::Other) => {
                // Set-up frames: the core's decoder and encoder.
                let Ok((rid, frame)) = ClientFrame::decode(b) else {
                    return;
                };
                let reply = match frame {
                    ClientFrame::Challenge => ServerFrame::Challenge { challenge: [0; 32] },
                    ClientFrame::Register { keys, .. } => {
                        me.mailbox = Some(keys.id());
                        ServerFrame::Ok
                    }
                    ClientFrame::Auth { mailbox, .. } => {
                        me.mailbox = Some(mailbox);
                        ServerFrame::Ok
                    }
                    ClientFrame::Subscribe => {
                        if let Some(m) = me.mailbox {
                            self.subscribers.borrow_mut().insert(m, me.id);
                        }
                        ServerFrame::Subscribed { pending: 0 }
                    }
                    _ => ServerFrame::Ok,
                };
                me.sending
                    .push_back(Message::binary(reply.encode(rid).unwrap_or_default()));
            }
        }
    }
}

/// Queues `frame` on connection `to` (if it is still the same connection)
/// and wakes its task.
fn send(slots: &mut [Slot], to: ConnId, frame: Bytes) {
    if let Some(slot) = slots.get_mut(to.index as usize)
        && slot.open
        && slot.generation == to.generation
    {
        slot.out.push(Message::Binary(frame));
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
    }
}

async fn serve(stream: TcpStream, hub: Rc<Hub>, read_buffer: usize) -> Result<()> {
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let hello = ServerFrame::Hello {
        pow_challenge: [0; 32],
        pow_difficulty: 0,
        max_frame_len: 4 << 20,
        max_batch: 64,
    };
    ws.send(Message::binary(hello.encode(PUSH_REQUEST_ID)?))
        .await?;
    let mut me = Local {
        id: hub.open(),
        mailbox: None,
        sending: VecDeque::new(),
        taken: Vec::new(),
        unflushed: false,
        batch: Batch::default(),
    };
    let r = poll_fn(|cx| hub.poll_conn(cx, &mut ws, &mut me)).await;
    hub.close(me.id, me.mailbox);
    r
}

/// Sends each committed batch's replies and deliveries, once per commit.
async fn dispatcher(hub: Rc<Hub>, store: Arc<Store>) {
    let mut batches = Vec::new();
    loop {
        store.ring.notified().await;
        store.take_committed(&mut batches);
        for mut b in batches.drain(..) {
            hub.dispatch(&mut b);
            store.recycle(b);
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let store = match args.mode {
        Mode::Forward => None,
        Mode::SqliteBatch => {
            let dir = args
                .db
                .clone()
                .context("--db DIR is needed in sqlite-batch mode")?;
            let store = Arc::new(Store::new(args.batch));
            let writer = store.clone();
            let path = dir.join("bare.db");
            let tuning = store::Tuning {
                page_size: args.page_size,
                cache_mib: args.cache_mib,
                wal_autocheckpoint: (u64::from(args.wal_checkpoint_mib) << 20)
                    .div_ceil(u64::from(args.page_size.max(512)))
                    .try_into()
                    .unwrap_or(u32::MAX),
            };
            std::thread::Builder::new()
                .name("bare-writer".into())
                .spawn(move || {
                    if let Err(e) = writer.run(&path, &tuning) {
                        eprintln!("bare-relay writer: {e:#}");
                        std::process::exit(1);
                    }
                })?;
            Some(store)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!("bare-relay {:?} on {}", args.mode, args.listen);
        let hub = Rc::new(Hub {
            slots: RefCell::default(),
            free: RefCell::default(),
            subscribers: RefCell::default(),
            store: store.clone(),
            replies: RefCell::default(),
        });
        if let Some(store) = store {
            tokio::task::spawn_local(dispatcher(hub.clone(), store));
        }
        loop {
            let (stream, _) = listener.accept().await?;
            let hub = hub.clone();
            let read_buffer = args.read_buffer;
            tokio::task::spawn_local(async move {
                let _ = serve(stream, hub, read_buffer).await;
            });
        }
    })
}
