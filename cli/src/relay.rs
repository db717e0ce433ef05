//! The connection to the relay: WebSocket (tokio-tungstenite), binary frames
//! from `northstar_core::frame`, one request at a time, deliveries buffered.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use northstar_core::client::FetchedBundle;
use northstar_core::frame::{self, ClientFrame, ErrorCode, OneTimePrekey, ServerFrame};
use northstar_core::ids::{EnvelopeId, MailboxId};
use northstar_core::keys::{Ed25519Public, MailboxKeyPair, OneTimePreKeyPublic};
use northstar_core::pow;
use northstar_core::sealed::Envelope;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long to wait for any one reply before giving up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A delivered envelope.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: EnvelopeId,
    pub envelope: Envelope,
}

/// A failure the relay reported, kept typed so callers can explain it.
#[derive(Debug, thiserror::Error)]
#[error("{}", explain(*.0))]
pub struct RelayRefused(pub ErrorCode);

fn explain(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RateLimited => {
            "the relay is rate limiting this connection; wait a moment and try again"
        }
        ErrorCode::QuotaExceeded => "the recipient's mailbox is full; try again later",
        ErrorCode::UnknownMailbox => "the relay does not know that mailbox",
        ErrorCode::AuthFailed => "the relay refused the mailbox key",
        ErrorCode::DirectoryRollback => {
            "the relay already has a newer directory from this organisation"
        }
        ErrorCode::DirectoryInvalid => "the relay refused the directory as invalid",
        ErrorCode::PowRequired | ErrorCode::PowInvalid => "the relay refused the proof of work",
        ErrorCode::ServerBusy => "the relay is busy; try again in a moment",
        ErrorCode::NotFound => "the relay has nothing stored for that",
        ErrorCode::StateTooLarge => "the saved conversation is too large for the relay",
        _ => "the relay refused the request",
    }
}

/// One WebSocket connection.
pub struct Relay {
    url: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    pow_challenge: [u8; pow::CHALLENGE_LEN],
    pow_difficulty: u8,
    deliveries: VecDeque<Delivery>,
}

impl Relay {
    /// Connects and reads the relay's hello.
    pub async fn connect(url: &str) -> Result<Self> {
        let (ws, _) = tokio::time::timeout(REPLY_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| anyhow!("the relay at {url} did not answer"))?
            .with_context(|| format!("cannot reach the relay at {url}"))?;
        let mut relay = Relay {
            url: url.to_owned(),
            ws,
            next_id: 1,
            pow_challenge: [0; 32],
            pow_difficulty: 0,
            deliveries: VecDeque::new(),
        };
        match relay.read_frame().await? {
            (
                _,
                ServerFrame::Hello {
                    pow_challenge,
                    pow_difficulty,
                    ..
                },
            ) => {
                relay.pow_challenge = pow_challenge;
                relay.pow_difficulty = pow_difficulty;
            }
            _ => bail!("the relay did not greet as expected (is this a Northstar relay?)"),
        }
        Ok(relay)
    }

    /// The URL this connection was opened to.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn read_frame(&mut self) -> Result<(u32, ServerFrame)> {
        loop {
            let msg = tokio::time::timeout(REPLY_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| anyhow!("the relay stopped answering"))?
                .ok_or_else(|| anyhow!("the relay closed the connection"))?
                .context("connection to the relay failed")?;
            match msg {
                Message::Binary(b) => {
                    return ServerFrame::decode(&b)
                        .map_err(|e| anyhow!("the relay sent a malformed frame: {}", e.error));
                }
                Message::Close(_) => bail!("the relay closed the connection"),
                _ => continue,
            }
        }
    }

    /// Waits for the next frame, buffering deliveries; returns a reply.
    async fn read_reply(&mut self, want: u32) -> Result<ServerFrame> {
        loop {
            let (id, f) = self.read_frame().await?;
            match f {
                ServerFrame::Deliver {
                    id: env_id,
                    envelope,
                    ..
                } if id == frame::PUSH_REQUEST_ID => {
                    self.deliveries.push_back(Delivery {
                        id: env_id,
                        envelope,
                    });
                }
                ServerFrame::Error { code } if id == want || id == frame::PUSH_REQUEST_ID => {
                    return Err(RelayRefused(code).into());
                }
                other if id == want => return Ok(other),
                _ => {}
            }
        }
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&mut self, f: ClientFrame) -> Result<ServerFrame> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let bytes = f
            .encode(id)
            .map_err(|e| anyhow!("cannot encode request: {e}"))?;
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .context("cannot send to the relay")?;
        self.read_reply(id).await
    }

    async fn challenge(&mut self) -> Result<[u8; 32]> {
        match self.request(ClientFrame::Challenge).await? {
            ServerFrame::Challenge { challenge } => Ok(challenge),
            _ => bail!("unexpected reply to a challenge request"),
        }
    }

    /// Registers the mailbox (idempotent) and opens a session on it.
    pub async fn register(&mut self, keys: &MailboxKeyPair, pow_required: bool) -> Result<()> {
        let challenge = self.challenge().await?;
        let id = keys.id();
        let signature = keys.sign(&frame::register_message(&challenge, &id, pow_required));
        match self
            .request(ClientFrame::Register {
                keys: keys.public(),
                pow_required,
                signature,
            })
            .await?
        {
            ServerFrame::Ok => Ok(()),
            _ => bail!("unexpected reply to register"),
        }
    }

    /// Opens a session on an existing mailbox.
    pub async fn auth(&mut self, keys: &MailboxKeyPair) -> Result<()> {
        let challenge = self.challenge().await?;
        let mailbox = keys.id();
        let signature = keys.sign(&frame::auth_message(&challenge, &mailbox));
        match self
            .request(ClientFrame::Auth { mailbox, signature })
            .await?
        {
            ServerFrame::Ok => Ok(()),
            _ => bail!("unexpected reply to auth"),
        }
    }

    /// Deposits envelopes, with a proof of work over the batch (solved on a
    /// blocking thread). Returns once the relay has stored them durably.
    pub async fn deposit(&mut self, envelopes: Vec<Envelope>) -> Result<()> {
        for chunk in envelopes.chunks(frame::MAX_BATCH_ENVELOPES) {
            let batch = chunk.to_vec();
            let hash = frame::deposit_batch_hash(&batch);
            let (challenge, difficulty) = (self.pow_challenge, self.pow_difficulty);
            let nonce =
                tokio::task::spawn_blocking(move || pow::solve(&challenge, &hash, difficulty))
                    .await
                    .context("proof of work was interrupted")?
                    .map_err(|e| anyhow!("proof of work failed: {e}"))?;
            match self
                .request(ClientFrame::Deposit {
                    pow_nonce: Some(nonce),
                    envelopes: batch,
                })
                .await?
            {
                ServerFrame::Deposited {
                    next_pow_challenge, ..
                } => self.pow_challenge = next_pow_challenge,
                _ => bail!("unexpected reply to deposit"),
            }
        }
        Ok(())
    }

    /// Fetches the newest directory of an organisation.
    pub async fn fetch_directory(&mut self, org: &Ed25519Public) -> Result<Vec<u8>> {
        match self
            .request(ClientFrame::FetchDirectory { org_key: *org })
            .await
        {
            Ok(ServerFrame::Directory { directory }) => Ok(directory),
            Err(e)
                if matches!(
                    e.downcast_ref::<RelayRefused>(),
                    Some(RelayRefused(ErrorCode::NotFound))
                ) =>
            {
                bail!(
                    "the relay has no directory for this organisation yet (the administrator must publish one)"
                )
            }
            Err(e) => Err(e),
            Ok(_) => bail!("unexpected reply to a directory request"),
        }
    }

    pub async fn publish_directory(&mut self, directory: Vec<u8>) -> Result<()> {
        match self
            .request(ClientFrame::PublishDirectory { directory })
            .await?
        {
            ServerFrame::Ok => Ok(()),
            _ => bail!("unexpected reply to publish"),
        }
    }

    /// Uploads the signed bundle and one-time prekeys (session needed).
    pub async fn upload_prekeys(
        &mut self,
        signed_bundle: Vec<u8>,
        one_time: &[OneTimePreKeyPublic],
    ) -> Result<u32> {
        let one_time = one_time
            .iter()
            .map(|k| OneTimePrekey {
                id: k.id,
                public: k.key,
            })
            .collect();
        match self
            .request(ClientFrame::UploadPrekeys {
                signed_bundle,
                one_time,
            })
            .await?
        {
            ServerFrame::PrekeysStored { one_time_count } => Ok(one_time_count),
            _ => bail!("unexpected reply to a prekey upload"),
        }
    }

    /// Fetches a device's prekey bundle.
    pub async fn fetch_prekeys(&mut self, mailbox: MailboxId) -> Result<FetchedBundle> {
        match self.request(ClientFrame::FetchPrekeys { mailbox }).await {
            Ok(ServerFrame::Prekeys {
                signed_bundle,
                one_time,
            }) => Ok(FetchedBundle {
                mailbox,
                signed_bundle,
                one_time: one_time.map(|k| k.to_bytes()),
            }),
            Err(e)
                if matches!(
                    e.downcast_ref::<RelayRefused>(),
                    Some(RelayRefused(ErrorCode::NotFound))
                ) =>
            {
                bail!("a counselor device has not uploaded its keys yet; try again later")
            }
            Err(e) => Err(e),
            Ok(_) => bail!("unexpected reply to a prekey request"),
        }
    }

    /// Subscribes and collects everything stored so far.
    pub async fn subscribe(&mut self) -> Result<Vec<Delivery>> {
        let pending = match self.request(ClientFrame::Subscribe).await? {
            ServerFrame::Subscribed { pending } => pending as usize,
            _ => bail!("unexpected reply to subscribe"),
        };
        while self.deliveries.len() < pending {
            let (id, f) = self.read_frame().await?;
            if let (frame::PUSH_REQUEST_ID, ServerFrame::Deliver { id, envelope, .. }) = (id, f) {
                self.deliveries.push_back(Delivery { id, envelope });
            }
        }
        Ok(self.deliveries.drain(..).collect())
    }

    /// Waits for the next live delivery (after [`Relay::subscribe`]).
    pub async fn next_delivery(&mut self) -> Result<Delivery> {
        if let Some(d) = self.deliveries.pop_front() {
            return Ok(d);
        }
        loop {
            let msg = self
                .ws
                .next()
                .await
                .ok_or_else(|| anyhow!("the relay closed the connection"))?
                .context("connection to the relay failed")?;
            if let Message::Binary(b) = msg {
                let (id, f) = ServerFrame::decode(&b)
                    .map_err(|e| anyhow!("the relay sent a malformed frame: {}", e.error))?;
                if let (frame::PUSH_REQUEST_ID, ServerFrame::Deliver { id, envelope, .. }) = (id, f)
                {
                    return Ok(Delivery { id, envelope });
                }
            }
        }
    }

    /// Acknowledges (deletes) delivered envelopes.
    pub async fn ack(&mut self, ids: Vec<EnvelopeId>) -> Result<()> {
        for chunk in ids.chunks(frame::MAX_ACK_IDS) {
            match self
                .request(ClientFrame::Ack {
                    ids: chunk.to_vec(),
                })
                .await?
            {
                ServerFrame::Acked { .. } => {}
                _ => bail!("unexpected reply to ack"),
            }
        }
        Ok(())
    }

    /// Stores the session mailbox's state blob; returns its expiry.
    pub async fn put_state(&mut self, blob: Vec<u8>, ttl_hours: u32) -> Result<u64> {
        match self
            .request(ClientFrame::PutState { ttl_hours, blob })
            .await?
        {
            ServerFrame::StateStored { expires_at } => Ok(expires_at.0),
            _ => bail!("unexpected reply to put-state"),
        }
    }

    /// The session mailbox's state blob, if any.
    pub async fn get_state(&mut self) -> Result<Option<(Vec<u8>, u64)>> {
        match self.request(ClientFrame::GetState).await {
            Ok(ServerFrame::State { expires_at, blob }) => Ok(Some((blob, expires_at.0))),
            Err(e)
                if matches!(
                    e.downcast_ref::<RelayRefused>(),
                    Some(RelayRefused(ErrorCode::NotFound))
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
            Ok(_) => bail!("unexpected reply to get-state"),
        }
    }

    /// Deletes the session mailbox and everything it holds.
    pub async fn delete_mailbox(&mut self) -> Result<()> {
        match self.request(ClientFrame::DeleteMailbox).await? {
            ServerFrame::Ok => Ok(()),
            _ => bail!("unexpected reply to delete"),
        }
    }
}
