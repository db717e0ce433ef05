//! The relay's connection logic in process, in the shape of mini-redis's
//! `tests/server.rs`: `server::run` on 127.0.0.1:0 with the memory store,
//! raw frames over tokio-tungstenite (or over a bare TCP socket where a peer
//! must answer no ping, or must stop reading), and paused time, so the idle
//! and send timeouts cost no wall-clock time.
//!
//! Paused time jumps to the next timer whenever every task waits, even
//! while bytes are on their way between two sockets of this process; a
//! [`heartbeat`] bounds each jump to a millisecond, so a round trip costs
//! about a millisecond of virtual time and nothing times out on its account.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use northstar_core::frame::{self, ClientFrame, ErrorCode, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::{Ed25519Public, MailboxPublic, Signature, X25519Public};
use northstar_core::sealed::Envelope;
use northstar_relay::config::Config;
use northstar_relay::server;
use northstar_relay::store::memory::MemoryStore;
use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// WebSocket close codes the relay sends (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;
const POLICY: u16 = 1008;

/// A relay served by this process.
struct Relay {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Relay {
    /// Serves the default configuration, changed by `configure`, with an
    /// empty memory store.
    async fn start(configure: impl FnOnce(&mut Config)) -> Relay {
        let mut config = Config::defaults().unwrap();
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let store = Arc::new(MemoryStore::new());
        let served = tokio::spawn(server::run(listener, config, store, shutdown));
        tokio::spawn(heartbeat());
        Relay { addr, stop, served }
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// Wakes every millisecond, so paused time advances in small steps while
/// sockets are busy (see the module doc).
async fn heartbeat() {
    loop {
        sleep(Duration::from_millis(1)).await;
    }
}

/// A mailbox's key pair (the seal key is a stand-in: the relay never uses it).
struct Mailbox {
    auth: SigningKey,
    keys: MailboxPublic,
}

impl Mailbox {
    fn random() -> Self {
        let auth = SigningKey::generate(&mut OsRng);
        let mut seal = [0u8; 32];
        OsRng.fill_bytes(&mut seal);
        let keys = MailboxPublic {
            auth: Ed25519Public(auth.verifying_key().to_bytes()),
            seal: X25519Public(seal),
        };
        Mailbox { auth, keys }
    }

    fn id(&self) -> MailboxId {
        self.keys.id()
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.auth.sign(msg).to_bytes())
    }

    fn register(&self, challenge: &[u8; 32]) -> ClientFrame {
        ClientFrame::Register {
            keys: self.keys,
            pow_required: false,
            signature: self.sign(&frame::register_message(challenge, &self.id(), false)),
        }
    }

    fn auth(&self, challenge: &[u8; 32]) -> ClientFrame {
        ClientFrame::Auth {
            mailbox: self.id(),
            signature: self.sign(&frame::auth_message(challenge, &self.id())),
        }
    }
}

/// `len` random ciphertext bytes for `to` (the relay never looks inside).
fn envelope(to: MailboxId, len: usize) -> Envelope {
    let mut ct = vec![0u8; len];
    OsRng.fill_bytes(&mut ct);
    Envelope::from_parts(to, ct).unwrap()
}

fn deposit(envelopes: Vec<Envelope>) -> ClientFrame {
    ClientFrame::Deposit {
        pow_nonce: None,
        envelopes,
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over tokio-tungstenite (which answers pings while it
/// reads).
struct Client {
    ws: Ws,
    next_id: u32,
    hello: ServerFrame,
    /// Frames pushed while waiting for a reply.
    pushes: VecDeque<ServerFrame>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        let mut c = Client {
            ws,
            next_id: 1,
            hello: ServerFrame::Ok,
            pushes: VecDeque::new(),
        };
        let (id, hello) = c.recv().await;
        assert_eq!(id, PUSH_REQUEST_ID);
        assert!(matches!(hello, ServerFrame::Hello { .. }), "{hello:?}");
        c.hello = hello;
        c
    }

    /// Sends messages with one flush, so the relay receives them together.
    async fn send_messages(&mut self, messages: Vec<Message>) {
        for m in messages {
            self.ws.feed(m).await.unwrap();
        }
        self.ws.flush().await.unwrap();
    }

    /// Sends frames under the given request ids with one flush.
    async fn send_frames(&mut self, frames: &[(u32, ClientFrame)]) {
        let messages = frames
            .iter()
            .map(|(id, f)| Message::Binary(f.encode(*id).unwrap().into()))
            .collect();
        self.send_messages(messages).await;
    }

    /// The next frame (pings and pongs skipped); the connection must not end.
    async fn recv(&mut self) -> (u32, ServerFrame) {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => return ServerFrame::decode(&b).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("the connection ended: {other:?}"),
            }
        }
    }

    /// Sends a request and returns its reply (pushes before it are queued).
    async fn request(&mut self, f: ClientFrame) -> ServerFrame {
        let id = self.next_id;
        self.next_id += 1;
        self.send_frames(&[(id, f)]).await;
        loop {
            let (rid, frame) = self.recv().await;
            if rid == id {
                return frame;
            }
            assert_eq!(rid, PUSH_REQUEST_ID, "a reply to another request");
            self.pushes.push_back(frame);
        }
    }

    async fn challenge(&mut self) -> [u8; 32] {
        match self.request(ClientFrame::Challenge).await {
            ServerFrame::Challenge { challenge } => challenge,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Registers `mb` and opens a session on it.
    async fn register(&mut self, mb: &Mailbox) {
        let c = self.challenge().await;
        assert_eq!(self.request(mb.register(&c)).await, ServerFrame::Ok);
    }

    async fn auth(&mut self, mb: &Mailbox) {
        let c = self.challenge().await;
        assert_eq!(self.request(mb.auth(&c)).await, ServerFrame::Ok);
    }

    async fn subscribe(&mut self) -> u32 {
        match self.request(ClientFrame::Subscribe).await {
            ServerFrame::Subscribed { pending } => pending,
            other => panic!("expected subscribed, got {other:?}"),
        }
    }

    /// Deposits a batch; returns how many were accepted.
    async fn deposit(&mut self, envelopes: Vec<Envelope>) -> u16 {
        match self.request(deposit(envelopes)).await {
            ServerFrame::Deposited { accepted, .. } => accepted,
            other => panic!("expected deposited, got {other:?}"),
        }
    }

    /// The next push, if one comes within `wait`.
    async fn push(&mut self, wait: Duration) -> Option<ServerFrame> {
        if let Some(f) = self.pushes.pop_front() {
            return Some(f);
        }
        let (rid, f) = timeout(wait, self.recv()).await.ok()?;
        assert_eq!(rid, PUSH_REQUEST_ID, "an unasked reply");
        Some(f)
    }

    /// The next `n` deliveries, in order.
    async fn deliveries(&mut self, n: usize) -> Vec<(EnvelopeId, Envelope)> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.push(Duration::from_secs(5)).await {
                Some(ServerFrame::Deliver { id, envelope, .. }) => out.push((id, envelope)),
                other => panic!("delivery {} of {n}: {other:?}", out.len()),
            }
        }
        out
    }

    /// Reads until the relay ends the connection: the frames before, and the
    /// close frame's code if one came (a reset or a bare end has none).
    async fn until_closed(&mut self) -> (Vec<(u32, ServerFrame)>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => frames.push(ServerFrame::decode(&b).unwrap()),
                Some(Ok(Message::Close(c))) => return (frames, c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return (frames, None),
            }
        }
    }
}

/// A WebSocket spoken by hand over a bare socket: it answers no ping, and
/// reads only when the test does.
struct RawPeer {
    s: TcpStream,
}

impl RawPeer {
    /// Connects and upgrades; `recv_buffer` shrinks the socket's receive
    /// buffer (no kernel autotuning to absorb megabytes).
    async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> RawPeer {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(n) = recv_buffer {
            socket.set_recv_buffer_size(n).unwrap();
        }
        let mut s = socket.connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        RawPeer { s }
    }

    /// Sends one frame as a masked binary message (mask 0).
    async fn send(&mut self, id: u32, f: &ClientFrame) {
        let payload = f.encode(id).unwrap();
        let mut m = vec![0x82];
        match payload.len() {
            n @ 0..=125 => m.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                m.push(0x80 | 126);
                m.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                m.push(0x80 | 127);
                m.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&payload);
        self.s.write_all(&m).await.unwrap();
    }

    /// The next binary message, decoded (others skipped).
    async fn recv(&mut self) -> ServerFrame {
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).await.unwrap();
            let len = match h[1] & 0x7F {
                126 => usize::from(self.s.read_u16().await.unwrap()),
                127 => usize::try_from(self.s.read_u64().await.unwrap()).unwrap(),
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            self.s.read_exact(&mut payload).await.unwrap();
            if h[0] & 0x0F == 2 {
                return ServerFrame::decode(&payload).unwrap().1;
            }
        }
    }

    /// Reads the hello and opens a session on `mb`.
    async fn auth(&mut self, mb: &Mailbox) {
        assert!(matches!(self.recv().await, ServerFrame::Hello { .. }));
        self.send(1, &ClientFrame::Challenge).await;
        let ServerFrame::Challenge { challenge } = self.recv().await else {
            panic!("expected a challenge")
        };
        self.send(2, &mb.auth(&challenge)).await;
        assert_eq!(self.recv().await, ServerFrame::Ok);
    }

    /// Reads what has arrived, waiting up to `wait` for more: the bytes read,
    /// and whether the relay has closed the connection.
    async fn drain(&mut self, wait: Duration) -> (usize, bool) {
        let mut buf = vec![0u8; 1 << 16];
        let mut read = 0;
        loop {
            match timeout(wait, self.s.read(&mut buf)).await {
                Err(_) => return (read, false),
                Ok(Ok(0) | Err(_)) => return (read, true),
                Ok(Ok(n)) => read += n,
            }
        }
    }
}

const RATE_LIMITED: ServerFrame = ServerFrame::Error {
    code: ErrorCode::RateLimited,
};

#[tokio::test(start_paused = true)]
async fn live_idle_subscribers_are_kept_silent_peers_are_cut() {
    let relay = Relay::start(|c| c.idle_timeout_secs = 3).await;
    let mb = Mailbox::random();
    let mut live = relay.client().await;
    live.register(&mb).await;
    assert_eq!(live.subscribe().await, 0);
    // A WebSocket that never answers the relay's pings.
    let mut silent = RawPeer::connect(relay.addr, None).await;
    // Reading (which answers pings) for two thirds of the idle timeout...
    assert_eq!(live.push(Duration::from_secs(2)).await, None);
    let (_, closed) = silent.drain(Duration::from_millis(10)).await;
    assert!(
        !closed,
        "the silent peer is not cut before the idle timeout"
    );
    // ...then for more than three times it.
    assert_eq!(
        live.push(Duration::from_secs(8)).await,
        None,
        "nothing was pushed"
    );
    let (_, closed) = silent.drain(Duration::from_millis(10)).await;
    assert!(
        closed,
        "a peer that answered no ping for the idle timeout is closed"
    );
    live.challenge().await;
}

#[tokio::test(start_paused = true)]
async fn a_half_sent_request_is_cut_after_the_idle_timeout() {
    let relay = Relay::start(|c| c.idle_timeout_secs = 5).await;
    let mut s = RawPeer {
        s: TcpStream::connect(relay.addr).await.unwrap(),
    };
    s.s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websock")
        .await
        .unwrap();
    sleep(Duration::from_secs(4)).await;
    assert_eq!(s.drain(Duration::from_millis(10)).await, (0, false));
    sleep(Duration::from_secs(2)).await;
    assert!(
        s.drain(Duration::from_millis(10)).await.1,
        "cut (slowloris)"
    );
    relay.client().await.challenge().await;
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_reads_is_cut_after_the_send_timeout() {
    // 320 x 60 kB = 19 MB for it: more than the delivery window (256) and
    // far more than the kernel's buffers hold.
    const ENVELOPES: usize = 320;
    const SIZE: usize = 60_000;
    const IDLE: Duration = Duration::from_secs(600);
    let relay = Relay::start(|c| {
        c.send_timeout_secs = 2;
        c.idle_timeout_secs = IDLE.as_secs();
    })
    .await;
    let mb = Mailbox::random();
    relay.client().await.register(&mb).await;
    let mut stalled = RawPeer::connect(relay.addr, Some(8192)).await;
    stalled.auth(&mb).await;
    stalled.send(3, &ClientFrame::Subscribe).await;
    // Deliveries pushed at a subscriber that reads none of them.
    let t0 = Instant::now();
    let mut d = relay.client().await;
    let mut accepted = 0;
    for _ in 0..ENVELOPES / 32 {
        let batch = (0..32).map(|_| envelope(mb.id(), SIZE)).collect();
        accepted += usize::from(d.deposit(batch).await);
    }
    assert_eq!(accepted, ENVELOPES);
    // The relay gives up on the stalled socket after the send timeout.
    sleep(Duration::from_secs(3)).await;
    assert!(
        t0.elapsed() < IDLE,
        "cut by the send timeout, not the idle timeout"
    );
    // What it can still read is what sat in the kernel's buffers when it was
    // cut (read at the kernel's pace: real time from here).
    tokio::time::resume();
    let (readable, ended) = stalled.drain(Duration::from_secs(10)).await;
    assert!(ended, "the stalled connection was closed");
    assert!(
        readable < ENVELOPES * SIZE / 2,
        "it was cut, not served: {readable} B"
    );
    // Everything is still stored, for the next connection.
    let mut back = relay.client().await;
    back.auth(&mb).await;
    assert_eq!(
        back.subscribe().await,
        256,
        "all kept (the count is capped at the window)"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_refills_with_time_and_closes_abusers() {
    let relay = Relay::start(|c| {
        c.messages_per_second = 2;
        c.message_burst = 5;
        c.rate_limit_strikes = 20;
    })
    .await;
    let mut c = relay.client().await;
    let burst: Vec<_> = (1..=8).map(|id| (id, ClientFrame::Challenge)).collect();
    c.send_frames(&burst).await;
    c.next_id = 9;
    let mut limited = Vec::new();
    for _ in 1..=8 {
        match c.recv().await {
            (id, RATE_LIMITED) => limited.push(id),
            (_, ServerFrame::Challenge { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(limited, [6, 7, 8], "the burst is 5");
    // Half a second at 2 per second gives one token back, and one only.
    sleep(Duration::from_millis(500)).await;
    c.challenge().await;
    assert_eq!(c.request(ClientFrame::Challenge).await, RATE_LIMITED);

    // A flood: the burst is answered, the strikes refused, then the close.
    let mut flood = relay.client().await;
    let frames: Vec<_> = (1..=60).map(|id| (id, ClientFrame::Challenge)).collect();
    flood.send_frames(&frames).await;
    let (replies, code) = flood.until_closed().await;
    let refused = replies.iter().filter(|(_, f)| *f == RATE_LIMITED).count();
    assert_eq!((replies.len() - refused, refused), (5, 20));
    assert_eq!(code, Some(POLICY));
    // Everyone else is fine.
    sleep(Duration::from_secs(1)).await;
    c.challenge().await;
}

#[tokio::test(start_paused = true)]
async fn bad_frames_get_error_frames_and_oversize_ones_a_close() {
    let relay = Relay::start(|c| c.max_frame_bytes = 65536).await;
    let mut c = relay.client().await;
    assert!(matches!(
        c.hello,
        ServerFrame::Hello {
            max_frame_len: 65536,
            ..
        }
    ));
    let error = |code| ServerFrame::Error { code };
    c.send_messages(vec![Message::Text("hello".into())]).await;
    assert_eq!(c.recv().await, (0, error(ErrorCode::Malformed)));
    // A broken frame is answered under the request id in its header.
    c.send_messages(vec![Message::Binary(vec![2, 0, 0, 0, 9, 0xEE].into())])
        .await;
    assert_eq!(c.recv().await, (9, error(ErrorCode::Malformed)));
    // Between the limit and twice it: an error frame, and the connection lives.
    let mut big = vec![2, 0, 0, 0, 42, 0x07];
    big.resize(70_000, 0);
    c.send_messages(vec![Message::Binary(big.into())]).await;
    assert_eq!(c.recv().await, (42, error(ErrorCode::FrameTooLarge)));
    c.challenge().await;
    // Beyond twice the limit the WebSocket library refuses it while reading,
    // and the connection closes.
    let mut huge = vec![2, 0, 0, 0, 43, 0x07];
    huge.resize(200_000, 0);
    let _ = c.ws.send(Message::Binary(huge.into())).await;
    assert!(
        timeout(Duration::from_secs(5), c.until_closed())
            .await
            .is_ok()
    );
    relay.client().await.challenge().await;
}

#[tokio::test(start_paused = true)]
async fn pipelined_deposits_are_answered_in_order_and_other_frames_wait_their_turn() {
    let relay = Relay::start(|_| {}).await;
    let mb = Mailbox::random();
    let mut owner = relay.client().await;
    owner.register(&mb).await;
    assert_eq!(owner.subscribe().await, 0);
    let envelopes: Vec<_> = (0..3).map(|_| envelope(mb.id(), 64)).collect();
    let nobody = envelope(MailboxId::from_bytes([7; 32]), 64);
    let mut d = relay.client().await;
    d.send_frames(&[
        (1, deposit(vec![envelopes[0].clone()])),
        (2, deposit(vec![envelopes[1].clone()])),
        (3, ClientFrame::Challenge),
        (4, deposit(vec![envelopes[2].clone()])),
        (5, deposit(vec![nobody])),
    ])
    .await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(d.recv().await);
    }
    let ids: Vec<_> = replies.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5], "replies in request order");
    let deposited = |f: &ServerFrame| matches!(f, ServerFrame::Deposited { accepted: 1, .. });
    assert!(deposited(&replies[0].1) && deposited(&replies[1].1) && deposited(&replies[3].1));
    assert!(matches!(replies[2].1, ServerFrame::Challenge { .. }));
    assert_eq!(
        replies[4].1,
        ServerFrame::Error {
            code: ErrorCode::UnknownMailbox
        }
    );
    let got: Vec<_> = owner
        .deliveries(3)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(got, envelopes, "delivered once each, in deposit order");
    assert_eq!(owner.push(Duration::from_secs(1)).await, None);
}

#[tokio::test(start_paused = true)]
async fn live_deliveries_stop_at_the_window_until_acknowledged() {
    let relay = Relay::start(|_| {}).await;
    let mb = Mailbox::random();
    let mut owner = relay.client().await;
    owner.register(&mb).await;
    // Subscribed with nothing stored: what follows comes from the live feed,
    // never more than the window unacknowledged; acknowledging reads the 44
    // the window held back from the store.
    assert_eq!(owner.subscribe().await, 0);
    let mut d = relay.client().await;
    for _ in 0..5 {
        let batch = (0..60).map(|_| envelope(mb.id(), 64)).collect();
        assert_eq!(d.deposit(batch).await, 60);
    }
    let first = owner.deliveries(256).await;
    assert_eq!(
        owner.push(Duration::from_secs(1)).await,
        None,
        "the window is full"
    );
    let ids: Vec<_> = first.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        owner.request(ClientFrame::Ack { ids }).await,
        ServerFrame::Acked { deleted: 256 }
    );
    let rest = owner.deliveries(44).await;
    let mut seen: HashSet<_> = first.iter().map(|(id, _)| *id).collect();
    assert!(rest.iter().all(|(id, _)| seen.insert(*id)), "each once");
    assert_eq!(owner.push(Duration::from_secs(1)).await, None);
    // Caught up again: a new deposit is pushed live, once.
    d.deposit(vec![envelope(mb.id(), 64)]).await;
    let last = owner.deliveries(1).await;
    assert!(seen.insert(last[0].0));
    assert_eq!(owner.push(Duration::from_secs(1)).await, None);
    assert_eq!(seen.len(), 301);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_ends_when_the_session_changes_mailbox() {
    let relay = Relay::start(|_| {}).await;
    let (a, b) = (Mailbox::random(), Mailbox::random());
    let mut owner = relay.client().await;
    owner.register(&a).await;
    assert_eq!(owner.subscribe().await, 0);
    // Registering `b` moves the session to it: `a`'s feed stops here.
    owner.register(&b).await;
    let mut d = relay.client().await;
    d.deposit(vec![envelope(a.id(), 64)]).await;
    assert_eq!(owner.push(Duration::from_secs(1)).await, None);
    assert_eq!(owner.subscribe().await, 0, "b has nothing");
    d.deposit(vec![envelope(b.id(), 64)]).await;
    assert_eq!(owner.deliveries(1).await.len(), 1);
    // Back on `a`, its envelope waits in the store.
    owner.auth(&a).await;
    assert_eq!(owner.subscribe().await, 1);
    assert_eq!(owner.deliveries(1).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_every_connection_with_going_away() {
    let relay = Relay::start(|_| {}).await;
    let mb = Mailbox::random();
    let mut idle = relay.client().await;
    let mut subscriber = relay.client().await;
    subscriber.register(&mb).await;
    assert_eq!(subscriber.subscribe().await, 0);
    relay.stop.send(()).unwrap();
    for c in [&mut idle, &mut subscriber] {
        let (frames, code) = c.until_closed().await;
        assert!(frames.is_empty(), "{frames:?}");
        assert_eq!(code, Some(GOING_AWAY));
    }
    relay.served.await.unwrap().unwrap();
}
