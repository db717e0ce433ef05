//! `DeleteMailbox`: "delete everything now" — the mailbox, its envelopes,
//! prekeys and state blob, in one transaction. The session ends with it.

use northstar_core::frame::{ErrorCode, ServerFrame};

use super::{Relay, Session, store_code};

pub async fn apply(relay: &Relay, session: &mut Session) -> Result<ServerFrame, ErrorCode> {
    let mailbox = session.require_mailbox()?;
    relay
        .store
        .delete_mailbox(mailbox)
        .await
        .map_err(store_code)?;
    session.mailbox = None;
    Ok(ServerFrame::Ok)
}
