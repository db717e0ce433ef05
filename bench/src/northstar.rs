//! The Northstar protocol side (also spoken by `bare-relay`): pre-built
//! sealed envelopes in deposit frames, recipients that register, subscribe
//! and acknowledge, senders that keep deposits in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use northstar_core::frame::{self, ClientFrame, PUSH_REQUEST_ID, ServerFrame};
use northstar_core::ids::EnvelopeId;
use northstar_core::keys::{
    Ed25519Secret, IdentityPublic, MailboxKeyPair, MailboxPublic, X25519Secret,
};
use northstar_core::sealed::{self, SealedBody, SealedContent, SenderInfo};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Reply, Ws};
use crate::run::{Run, histogram};

/// Length of the stand-in ratchet message: with the sealed-content header
/// (134 bytes) and the padding marker it fills the 1 KiB padding bucket.
pub const RATCHET_MESSAGE_LEN: usize = 800;

/// How long one set-up step may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Every deposit frame, built and sealed before the timed phase, indexed by
/// envelope id.
pub type Prebuilt = crate::run::Prebuilt<EnvelopeId>;

/// A fresh mailbox for a recipient.
pub fn new_mailbox() -> MailboxKeyPair {
    MailboxKeyPair::generate(&mut OsRng)
}

/// Seals `per_sender` envelopes per sender, each to a random recipient, in
/// the 1 KiB padding bucket, and encodes each in its deposit frame.
pub fn prebuild(
    recipients: &[MailboxPublic],
    senders: usize,
    per_sender: usize,
) -> Result<Prebuilt> {
    // Per sender: its frames and its envelope ids, sealed on every CPU.
    Prebuilt::build(senders, per_sender, |s| {
        let sender = SenderInfo {
            identity: IdentityPublic {
                x25519: X25519Secret::generate(&mut OsRng).public(),
                ed25519: Ed25519Secret::generate(&mut OsRng).public(),
            },
            mailbox: new_mailbox().public(),
        };
        let mut mine = Vec::with_capacity(per_sender);
        let mut ids = Vec::with_capacity(per_sender);
        for i in 0..per_sender {
            let to = recipients
                .get(OsRng.next_u32() as usize % recipients.len().max(1))
                .ok_or_else(|| anyhow!("no recipients"))?;
            let mut ratchet_message = vec![0u8; RATCHET_MESSAGE_LEN];
            OsRng.fill_bytes(&mut ratchet_message);
            let content = SealedContent {
                sender,
                body: SealedBody::Ratchet { ratchet_message },
            };
            let envelope = sealed::seal(to, &content, &mut OsRng)?;
            ids.push((
                EnvelopeId::of(&envelope.encode()),
                u32::try_from(s * per_sender + i)?,
            ));
            let request_id = u32::try_from(i + 1)?;
            mine.push(Message::binary(
                ClientFrame::Deposit {
                    pow_nonce: None,
                    envelopes: vec![envelope],
                }
                .encode(request_id)?,
            ));
        }
        Ok((mine, ids))
    })
}

async fn next_frame(ws: &mut Ws) -> Result<(u32, ServerFrame)> {
    loop {
        let msg = tokio::time::timeout(SETUP_TIMEOUT, ws.next())
            .await
            .context("no frame in time")?
            .ok_or_else(|| anyhow!("connection closed"))??;
        match msg {
            Message::Binary(b) => return Ok(ServerFrame::decode(&b)?),
            Message::Close(_) => bail!("connection closed"),
            _ => continue,
        }
    }
}

async fn request(ws: &mut Ws, id: u32, f: ClientFrame) -> Result<ServerFrame> {
    ws.send(Message::binary(f.encode(id)?)).await?;
    loop {
        let (rid, frame) = next_frame(ws).await?;
        if rid == id {
            return Ok(frame);
        }
        if rid != PUSH_REQUEST_ID {
            bail!("reply to unexpected request {rid}");
        }
    }
}

/// Connects and reads the relay's hello.
pub async fn connect(url: &str) -> Result<Ws> {
    let (mut ws, _) = tokio::time::timeout(SETUP_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connecting to {url}"))?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nodelay(true)?;
    }
    match next_frame(&mut ws).await? {
        (PUSH_REQUEST_ID, ServerFrame::Hello { .. }) => Ok(ws),
        other => bail!("expected hello, got {other:?}"),
    }
}

/// Connects, registers `mb` (no proof of work required of its depositors),
/// which authenticates the session, and subscribes to its mailbox.
pub async fn subscriber(url: &str, mb: &MailboxKeyPair) -> Result<Ws> {
    let mut ws = connect(url).await?;
    let challenge = match request(&mut ws, 1, ClientFrame::Challenge).await? {
        ServerFrame::Challenge { challenge } => challenge,
        other => bail!("expected challenge, got {other:?}"),
    };
    let signature = mb.sign(&frame::register_message(&challenge, &mb.id(), false));
    match request(
        &mut ws,
        2,
        ClientFrame::Register {
            keys: mb.public(),
            pow_required: false,
            signature,
        },
    )
    .await?
    {
        ServerFrame::Ok => {}
        other => bail!("register: {other:?}"),
    }
    match request(&mut ws, 3, ClientFrame::Subscribe).await? {
        ServerFrame::Subscribed { .. } => Ok(ws),
        other => bail!("subscribe: {other:?}"),
    }
}

/// How a sender reads a reply: message index of an accepted deposit, or an error.
pub fn classify(base: usize) -> impl FnMut(Message) -> Reply {
    move |msg| {
        let Message::Binary(b) = msg else {
            return Reply::Ignore;
        };
        match ServerFrame::decode(&b) {
            Ok((PUSH_REQUEST_ID, _)) => Reply::Ignore,
            Ok((rid, ServerFrame::Deposited { .. })) => {
                Reply::Accepted(base + (rid as usize).saturating_sub(1))
            }
            Ok(_) => Reply::Refused,
            Err(_) => Reply::Garbled,
        }
    }
}

/// One recipient: records each delivery, acknowledges in batches (or each
/// delivery on its own, `ack_each`), until stopped.
pub async fn recipient(
    ws: Ws,
    index: Arc<HashMap<EnvelopeId, u32>>,
    run: Arc<Run>,
    ack_each: bool,
) -> Histogram<u64> {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<EnvelopeId>();
    let writer = tokio::spawn(async move {
        let mut request_id = 100u32;
        while let Some(first) = rx.recv().await {
            let mut ids = vec![first];
            while !ack_each && ids.len() < frame::MAX_ACK_IDS {
                match rx.try_recv() {
                    Ok(id) => ids.push(id),
                    Err(_) => break,
                }
            }
            request_id = request_id.wrapping_add(1).max(100);
            let Ok(bytes) = (ClientFrame::Ack { ids }).encode(request_id) else {
                break;
            };
            if sink.send(Message::binary(bytes)).await.is_err() {
                break;
            }
        }
        sink
    });
    let mut deliveries = histogram();
    while !run.stopped() {
        let msg = match tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        let Message::Binary(b) = msg else { continue };
        let now = Instant::now();
        match ServerFrame::decode(&b) {
            Ok((_, ServerFrame::Deliver { id, .. })) => {
                let idx = index.get(&id).map(|i| *i as usize);
                run.mark_delivered(idx, now, &mut deliveries);
                let _ = tx.send(id);
            }
            Ok((_, ServerFrame::Acked { .. })) => {}
            _ => run.error(),
        }
    }
    drop(tx);
    if let Ok(mut sink) = writer.await {
        let _ = sink.close().await;
    }
    deliveries
}
