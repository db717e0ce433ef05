//! `Register`: create a mailbox (or change its proof-of-work flag), proven
//! by a signature of its auth key over the pending challenge:
//! `Ed25519(auth_sk, "northstar/v1/relay-register" || challenge || id || pow_required)`.
//! Success also opens a session on the mailbox.

use northstar_core::frame::{ErrorCode, ServerFrame, register_message};
use northstar_core::keys::{MailboxPublic, Signature};

use super::{Relay, Session, store_code};

pub async fn apply(
    relay: &Relay,
    session: &mut Session,
    keys: MailboxPublic,
    pow_required: bool,
    signature: Signature,
) -> Result<ServerFrame, ErrorCode> {
    let challenge = session.auth_challenge.take().ok_or(ErrorCode::AuthFailed)?;
    let id = keys.id();
    if !keys
        .auth
        .verify(&register_message(&challenge, &id, pow_required), &signature)
    {
        return Err(ErrorCode::AuthFailed);
    }
    relay
        .store
        .register(keys, pow_required)
        .await
        .map_err(store_code)?;
    session.mailbox = Some(id);
    Ok(ServerFrame::Ok)
}
