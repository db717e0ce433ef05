//! `bare-relay`: the physical limit for the relay benchmarks. A bare
//! tokio-tungstenite server speaking Northstar's frames with none of the
//! relay's work: no signature checks, no limits, no quotas. A deposit is
//! acknowledged and forwarded to the recipient's subscriber
//! (`--mode forward`: nothing stored), or first inserted by one SQLite
//! writer thread that commits in batches, as Northstar's store does (WAL,
//! `synchronous=FULL`), with acknowledgements deleting (`--mode sqlite-batch`):
//! appended to a rowid table with no index, deleted by a rowid kept in
//! memory, the least work a durable store can do per message.
//! A connection keeps reading while its writes commit (each reply and
//! delivery follows its commit), so a client's pipelined deposits share
//! commits, as they do on the relay.
//! NOT a relay: it trusts every client. Benchmarks only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use northstar_core::UnixTime;
use northstar_core::frame::{ClientFrame, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::sealed::Envelope;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

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
    /// Most writes per transaction (sqlite-batch mode).
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

/// One queued write and who waits for its commit.
enum Write {
    Insert(Vec<(EnvelopeId, MailboxId, Vec<u8>)>, oneshot::Sender<u64>),
    Delete(MailboxId, Vec<EnvelopeId>, oneshot::Sender<u64>),
}

type Subscribers = Arc<Mutex<HashMap<MailboxId, mpsc::UnboundedSender<Message>>>>;

fn writer(path: PathBuf, mut rx: mpsc::UnboundedReceiver<Write>, batch: usize) -> Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // The least a durable mailbox store can do: append each envelope to a
    // rowid table (no index) and delete it by rowid, found in memory.
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS envelopes (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, mailbox BLOB NOT NULL, body BLOB NOT NULL);",
    )?;
    let mut rowids: HashMap<(MailboxId, EnvelopeId), i64> = HashMap::new();
    while let Some(first) = rx.blocking_recv() {
        let mut queue = vec![first];
        while queue.len() < batch {
            match rx.try_recv() {
                Ok(w) => queue.push(w),
                Err(_) => break,
            }
        }
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(queue.len());
        {
            let mut ins =
                tx.prepare_cached("INSERT INTO envelopes (id, mailbox, body) VALUES (?1, ?2, ?3)")?;
            let mut del = tx.prepare_cached("DELETE FROM envelopes WHERE seq = ?1")?;
            for w in queue {
                match w {
                    Write::Insert(rows, done) => {
                        let mut n = 0;
                        for (id, mb, body) in &rows {
                            if rowids.contains_key(&(*mb, *id)) {
                                continue;
                            }
                            n += ins.execute((id.as_bytes(), mb.as_bytes(), body))? as u64;
                            rowids.insert((*mb, *id), tx.last_insert_rowid());
                        }
                        results.push((done, n));
                    }
                    Write::Delete(mb, ids, done) => {
                        let mut n = 0;
                        for id in &ids {
                            if let Some(seq) = rowids.remove(&(mb, *id)) {
                                n += del.execute([seq])? as u64;
                            }
                        }
                        results.push((done, n));
                    }
                }
            }
        }
        tx.commit()?;
        for (done, n) in results {
            let _ = done.send(n);
        }
    }
    Ok(())
}

fn encode(request_id: u32, f: &ServerFrame) -> Message {
    Message::binary(f.encode(request_id).unwrap_or_default())
}

/// Pushes each envelope to its recipient's subscriber, if any.
fn forward(subs: &Subscribers, items: Vec<(EnvelopeId, Envelope)>) {
    for (id, envelope) in items {
        let to = subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(envelope.recipient())
            .cloned();
        if let Some(to) = to {
            let deliver = ServerFrame::Deliver {
                id,
                expires_at: UnixTime(0),
                envelope,
            };
            let _ = to.send(encode(PUSH_REQUEST_ID, &deliver));
        }
    }
}

async fn serve(
    stream: TcpStream,
    subs: Subscribers,
    store: Option<mpsc::UnboundedSender<Write>>,
) -> Result<()> {
    stream.set_nodelay(true)?;
    // Reads of 4 KiB, as the relay does: the library zeroes its whole read
    // buffer (128 KiB by default) before every socket read.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20));
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    sink.send(encode(
        PUSH_REQUEST_ID,
        &ServerFrame::Hello {
            pow_challenge: [0; 32],
            pow_difficulty: 0,
            max_frame_len: 4 << 20,
            max_batch: 64,
        },
    ))
    .await?;
    let mut mailbox: Option<MailboxId> = None;
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                let Some(m) = out else { break };
                sink.feed(m).await?;
                while let Ok(m) = out_rx.try_recv() {
                    sink.feed(m).await?;
                }
                sink.flush().await?;
            }
            msg = source.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Binary(bytes) = msg else { continue };
                let Ok((rid, frame)) = ClientFrame::decode(&bytes) else { continue };
                let reply = match frame {
                    ClientFrame::Challenge => ServerFrame::Challenge { challenge: [0; 32] },
                    ClientFrame::Register { keys, .. } => {
                        mailbox = Some(keys.id());
                        ServerFrame::Ok
                    }
                    ClientFrame::Auth { mailbox: m, .. } => {
                        mailbox = Some(m);
                        ServerFrame::Ok
                    }
                    ClientFrame::Subscribe => {
                        if let Some(m) = mailbox {
                            subs.lock().unwrap_or_else(|p| p.into_inner()).insert(m, out_tx.clone());
                        }
                        ServerFrame::Subscribed { pending: 0 }
                    }
                    ClientFrame::Deposit { envelopes, .. } => {
                        let accepted = u16::try_from(envelopes.len()).unwrap_or(u16::MAX);
                        let items: Vec<_> = envelopes
                            .into_iter()
                            .map(|e| (EnvelopeId::of(&e.encode()), e))
                            .collect();
                        let reply = ServerFrame::Deposited { accepted, next_pow_challenge: [0; 32], refused: Vec::new() };
                        let Some(store) = &store else {
                            forward(&subs, items);
                            sink.send(encode(rid, &reply)).await?;
                            continue;
                        };
                        let rows = items
                            .iter()
                            .map(|(id, e)| (*id, *e.recipient(), e.encode()))
                            .collect();
                        let (done, wait) = oneshot::channel();
                        store.send(Write::Insert(rows, done)).context("writer gone")?;
                        // The connection reads on while the write commits
                        // (pipelining, as the relay's group commit does);
                        // the reply and the deliveries follow the commit.
                        let (subs, out) = (subs.clone(), out_tx.clone());
                        tokio::spawn(async move {
                            if wait.await.is_ok() {
                                forward(&subs, items);
                                let _ = out.send(encode(rid, &reply));
                            }
                        });
                        continue;
                    }
                    ClientFrame::Ack { ids } => {
                        if let (Some(store), Some(m)) = (&store, mailbox) {
                            let (done, wait) = oneshot::channel();
                            store.send(Write::Delete(m, ids, done)).context("writer gone")?;
                            let out = out_tx.clone();
                            tokio::spawn(async move {
                                if let Ok(deleted) = wait.await {
                                    let reply = ServerFrame::Acked { deleted: u32::try_from(deleted).unwrap_or(u32::MAX) };
                                    let _ = out.send(encode(rid, &reply));
                                }
                            });
                            continue;
                        }
                        ServerFrame::Acked { deleted: 0 }
                    }
                    _ => ServerFrame::Ok,
                };
                sink.send(encode(rid, &reply)).await?;
            }
        }
    }
    if let Some(m) = mailbox {
        subs.lock().unwrap_or_else(|p| p.into_inner()).remove(&m);
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let store = match args.mode {
        Mode::Forward => None,
        Mode::SqliteBatch => {
            let dir = args
                .db
                .clone()
                .context("--db DIR is needed in sqlite-batch mode")?;
            let (tx, rx) = mpsc::unbounded_channel();
            let path = dir.join("bare.db");
            let batch = args.batch.max(1);
            std::thread::spawn(move || {
                if let Err(e) = writer(path, rx, batch) {
                    eprintln!("bare-relay writer: {e:#}");
                    std::process::exit(1);
                }
            });
            Some(tx)
        }
    };
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("bare-relay {:?} on {}", args.mode, args.listen);
    let subs: Subscribers = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let (subs, store) = (subs.clone(), store.clone());
        tokio::spawn(async move {
            let _ = serve(stream, subs, store).await;
        });
    }
}
