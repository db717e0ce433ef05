//! The same mailbox workload on a nostr relay (NIP-01): kind-4 events with
//! 1 KiB content tagged `["p", recipient]`, signed (BIP-340) before the
//! timed phase; recipients subscribe with a `#p` filter. Nostr has no
//! acknowledgement of deliveries, so recipients only receive.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use k256::schnorr::SigningKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Reply, Ws};
use crate::run::{Run, histogram};

/// Content length of each event (base64 characters, as a NIP-04 payload).
pub const CONTENT_LEN: usize = 1024;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A recipient: only its public key matters (the tag value).
pub fn new_recipient() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// Every `["EVENT", …]` message, signed before the timed phase, indexed by
/// event id (hex).
pub type Prebuilt = crate::run::Prebuilt<String>;

pub fn prebuild(recipients: &[String], senders: usize, per_sender: usize) -> Result<Prebuilt> {
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    // Per sender: its frames and its event ids, signed on every CPU.
    Prebuilt::build(senders, per_sender, |s| {
        let key = SigningKey::random(&mut OsRng);
        let pubkey = hex::encode(key.verifying_key().to_bytes());
        let mut ids = Vec::with_capacity(per_sender);
        let mut mine = Vec::with_capacity(per_sender);
        for i in 0..per_sender {
            let to = recipients
                .get(OsRng.next_u32() as usize % recipients.len().max(1))
                .ok_or_else(|| anyhow!("no recipients"))?;
            let mut raw = [0u8; CONTENT_LEN];
            OsRng.fill_bytes(&mut raw);
            let content: String = raw
                .iter()
                .map(|b| BASE64[usize::from(b & 63)] as char)
                .collect();
            let tags = serde_json::json!([["p", to]]);
            // NIP-01: id = SHA-256 of [0, pubkey, created_at, kind, tags, content].
            let canonical = serde_json::to_string(&serde_json::json!([
                0, pubkey, created_at, 4, tags, content
            ]))?;
            let id: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
            let mut aux = [0u8; 32];
            OsRng.fill_bytes(&mut aux);
            let sig = key
                .sign_raw(&id, &aux)
                .map_err(|e| anyhow!("signing: {e}"))?;
            let id_hex = hex::encode(id);
            let event = serde_json::json!({
                "id": id_hex,
                "pubkey": pubkey,
                "created_at": created_at,
                "kind": 4,
                "tags": tags,
                "content": content,
                "sig": hex::encode(sig.to_bytes()),
            });
            mine.push(Message::text(serde_json::to_string(&serde_json::json!([
                "EVENT", event
            ]))?));
            ids.push((id_hex, u32::try_from(s * per_sender + i)?));
        }
        Ok((mine, ids))
    })
}

pub async fn connect(url: &str) -> Result<Ws> {
    let (ws, _) = tokio::time::timeout(SETUP_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")?
        .with_context(|| format!("connecting to {url}"))?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_nodelay(true)?;
    }
    Ok(ws)
}

/// Connects and subscribes to kind-4 events tagged to `pubkey`; returns after EOSE.
pub async fn subscriber(url: &str, pubkey: &str) -> Result<Ws> {
    let mut ws = connect(url).await?;
    let req = serde_json::json!(["REQ", "inbox", {"kinds": [4], "#p": [pubkey]}]);
    ws.send(Message::text(serde_json::to_string(&req)?)).await?;
    loop {
        let msg = tokio::time::timeout(SETUP_TIMEOUT, ws.next())
            .await
            .context("no EOSE in time")?
            .ok_or_else(|| anyhow!("connection closed"))??;
        if let Message::Text(t) = msg {
            if t.starts_with("[\"EOSE\"") {
                return Ok(ws);
            }
            if t.starts_with("[\"NOTICE\"") || t.starts_with("[\"CLOSED\"") {
                bail!("subscription refused: {}", t.as_str());
            }
        }
    }
}

/// The value of `"id":"…"` in an event message.
fn event_id(text: &str) -> Option<&str> {
    let at = text.find("\"id\":\"")? + 6;
    text.get(at..at + 64)
}

/// `["OK", id, accepted, message]`.
fn ok_reply(text: &str) -> Option<(String, bool)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let a = v.as_array()?;
    if a.first()?.as_str()? != "OK" {
        return None;
    }
    Some((a.get(1)?.as_str()?.to_owned(), a.get(2)?.as_bool()?))
}

/// How a sender reads a reply: `OK` true for one of ours, or an error.
pub fn classify(index: Arc<HashMap<String, u32>>) -> impl FnMut(Message) -> Reply {
    move |msg| {
        let Message::Text(t) = msg else {
            return Reply::Ignore;
        };
        match ok_reply(t.as_str()) {
            Some((id, true)) => match index.get(&id) {
                Some(i) => Reply::Accepted(*i as usize),
                None => Reply::Refused,
            },
            Some((_, false)) => Reply::Refused,
            None => Reply::Garbled,
        }
    }
}

pub async fn recipient(ws: Ws, index: Arc<HashMap<String, u32>>, run: Arc<Run>) -> Histogram<u64> {
    let (mut sink, mut stream) = ws.split();
    let mut deliveries = histogram();
    while !run.stopped() {
        let msg = match tokio::time::timeout(Duration::from_millis(50), stream.next()).await {
            Err(_) => continue,
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(t) = msg else { continue };
        let now = Instant::now();
        if t.starts_with("[\"EVENT\"") {
            let idx = event_id(t.as_str())
                .and_then(|id| index.get(id))
                .map(|i| *i as usize);
            run.mark_delivered(idx, now, &mut deliveries);
        } else {
            run.error();
        }
    }
    let _ = sink.close().await;
    deliveries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ok_replies_and_event_ids() {
        assert_eq!(
            ok_reply(r#"["OK","ab",true,""]"#),
            Some(("ab".to_owned(), true))
        );
        assert_eq!(ok_reply(r#"["NOTICE","x"]"#), None);
        let id = "f".repeat(64);
        let msg = format!(r#"["EVENT","inbox",{{"id":"{id}","kind":4}}]"#);
        assert_eq!(event_id(&msg), Some(id.as_str()));
    }
}
