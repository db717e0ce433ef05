//! `Challenge` and `Auth`: proving ownership of a mailbox.
//!
//! ```text
//! client                                relay
//!   Challenge                  ->
//!                              <-       Challenge { c }     (32 random bytes, stored)
//!   Auth { id, sig }           ->       take c (single use);
//!                                       sig = Ed25519(auth_sk, "northstar/v1/relay-auth" || c || id)?
//!                              <-       Ok | Error(auth_failed | unknown_mailbox)
//! ```

use northstar_core::frame::{ErrorCode, ServerFrame, auth_message};
use northstar_core::ids::MailboxId;
use northstar_core::keys::Signature;

use super::{Relay, Session, random32, store_code};

/// Issues a fresh challenge (replacing any pending one).
pub fn challenge(session: &mut Session) -> ServerFrame {
    let c = random32();
    session.auth_challenge = Some(c);
    ServerFrame::Challenge { challenge: c }
}

/// Opens a session on `mailbox` if the signature over the pending challenge verifies.
pub async fn apply(
    relay: &Relay,
    session: &mut Session,
    mailbox: MailboxId,
    signature: Signature,
) -> Result<ServerFrame, ErrorCode> {
    let challenge = session.auth_challenge.take().ok_or(ErrorCode::AuthFailed)?;
    let record = relay
        .store
        .mailbox(mailbox)
        .await
        .map_err(store_code)?
        .ok_or(ErrorCode::UnknownMailbox)?;
    if !record
        .keys
        .auth
        .verify(&auth_message(&challenge, &mailbox), &signature)
    {
        return Err(ErrorCode::AuthFailed);
    }
    session.mailbox = Some(mailbox);
    Ok(ServerFrame::Ok)
}
