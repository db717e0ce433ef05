//! `PublishDirectory` and `FetchDirectory`: the org-signed team directory.
//!
//! The relay keeps, per organisation key, only the newest validly
//! self-signed directory ([`SignedDirectory::verify_self_signed`]) and
//! refuses an older serial, or different contents under the stored serial
//! (`directory_rollback`). Clients verify the directory against their pinned
//! organisation key anyway; the relay's check keeps garbage and rollbacks
//! out of its store. The store re-checks the serial inside its transaction,
//! so two racing publishers cannot roll it back either.

use northstar_core::directory::{DirectoryError, DirectoryVersion, SignedDirectory};
use northstar_core::frame::{ErrorCode, ServerFrame};
use northstar_core::keys::Ed25519Public;

use super::{Relay, store_code};
use crate::store::DirectoryRecord;

/// What the relay stores about a directory besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryMeta {
    pub org_key: [u8; 32],
    pub serial: u64,
}

/// The version of the directory stored for an organisation, if any.
async fn stored_version(
    relay: &Relay,
    org_key: [u8; 32],
) -> Result<Option<DirectoryVersion>, ErrorCode> {
    let Some(bytes) = relay.store.directory(org_key).await.map_err(store_code)? else {
        return Ok(None);
    };
    // What we stored was verified; if it no longer decodes (a newer core
    // with stricter rules), let a valid new version replace it.
    Ok(SignedDirectory::decode(&bytes).ok().map(|d| d.version()))
}

/// The one place that understands directory bytes: decode strictly, check
/// the self-signature and that it may follow `previous`.
pub fn verify_directory(
    signed: &SignedDirectory,
    previous: Option<&DirectoryVersion>,
) -> Result<DirectoryMeta, ErrorCode> {
    let version = signed.verify_self_signed(previous).map_err(|e| match e {
        DirectoryError::Rollback { .. } | DirectoryError::ConflictingSerial { .. } => {
            ErrorCode::DirectoryRollback
        }
        _ => ErrorCode::DirectoryInvalid,
    })?;
    Ok(DirectoryMeta {
        org_key: *signed.claimed_org().as_bytes(),
        serial: version.serial,
    })
}

pub async fn publish(relay: &Relay, bytes: Vec<u8>) -> Result<ServerFrame, ErrorCode> {
    let signed = SignedDirectory::decode(&bytes).map_err(|_| ErrorCode::DirectoryInvalid)?;
    let org_key = *signed.claimed_org().as_bytes();
    let previous = stored_version(relay, org_key).await?;
    let meta = verify_directory(&signed, previous.as_ref())?;
    relay
        .store
        .put_directory(DirectoryRecord {
            org_key: meta.org_key,
            serial: meta.serial,
            bytes,
        })
        .await
        .map_err(store_code)?;
    Ok(ServerFrame::Ok)
}

pub async fn fetch(relay: &Relay, org_key: Ed25519Public) -> Result<ServerFrame, ErrorCode> {
    let directory = relay
        .store
        .directory(org_key.0)
        .await
        .map_err(store_code)?
        .ok_or(ErrorCode::NotFound)?;
    Ok(ServerFrame::Directory { directory })
}

#[cfg(test)]
mod tests {
    use super::*;
    use northstar_core::UnixTime;
    use northstar_core::directory::{Directory, OrgSigningKey};

    fn signed(key: &OrgSigningKey, serial: u64) -> SignedDirectory {
        Directory::new(key.public(), serial, UnixTime(7200))
            .sign(key)
            .unwrap()
    }

    #[test]
    fn verifies_and_rejects() {
        let key = OrgSigningKey::from_seed(&[1; 32]);
        let d2 = signed(&key, 2);
        let meta = verify_directory(&d2, None).unwrap();
        assert_eq!(meta.org_key, *key.public().as_bytes());
        assert_eq!(meta.serial, 2);
        let v2 = d2.version();
        assert_eq!(verify_directory(&d2, Some(&v2)), Ok(meta));
        assert_eq!(
            verify_directory(&signed(&key, 1), Some(&v2)),
            Err(ErrorCode::DirectoryRollback)
        );
        let mut other = Directory::new(key.public(), 2, UnixTime(3 * 3600));
        other.partners.clear();
        assert_eq!(
            verify_directory(&other.sign(&key).unwrap(), Some(&v2)),
            Err(ErrorCode::DirectoryRollback)
        );
        let mut tampered = d2.encode();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let t = SignedDirectory::decode(&tampered).unwrap();
        assert_eq!(verify_directory(&t, None), Err(ErrorCode::DirectoryInvalid));
        assert!(SignedDirectory::decode(&[]).is_err());
    }
}
