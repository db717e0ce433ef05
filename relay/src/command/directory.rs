//! `PublishDirectory` and `FetchDirectory`: the org-signed team directory.
//!
//! The relay keeps, per organisation key, only the newest validly
//! self-signed directory and refuses an older serial (a rollback). Clients
//! verify the directory against their pinned organisation key anyway; the
//! relay's check only keeps garbage and rollbacks out of its store.

use northstar_core::frame::{ErrorCode, ServerFrame};
use northstar_core::keys::{Ed25519Public, Signature};
use northstar_core::wire::Reader;

use super::{Relay, store_code};
use crate::store::DirectoryRecord;

/// What the relay needs from a directory: who signed it and its serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryMeta {
    pub org_key: [u8; 32],
    pub serial: u64,
}

/// The one place that understands directory bytes.
///
/// Interim format until `northstar_core::directory::SignedDirectory` lands
/// (then this calls `SignedDirectory::decode(bytes)?.verify_self_signed()`):
/// `version:u8 (=1) || org_key[32] || serial:u64 || body_len:u32 || body || signature[64]`,
/// the Ed25519 signature by `org_key` covering every byte before it.
pub fn verify_directory(bytes: &[u8]) -> Result<DirectoryMeta, ErrorCode> {
    let bad = |_| ErrorCode::DirectoryInvalid;
    let mut r = Reader::new(bytes);
    r.version(1, "directory").map_err(bad)?;
    let org_key: [u8; 32] = r.array("organisation key").map_err(bad)?;
    let serial = r.u64("directory serial").map_err(bad)?;
    r.vec_u32(northstar_core::frame::MAX_DIRECTORY_LEN, "directory body")
        .map_err(bad)?;
    let signed_len = bytes.len() - r.remaining();
    let sig = Signature(r.array("directory signature").map_err(bad)?);
    r.finish("directory").map_err(bad)?;
    let signed = bytes.get(..signed_len).ok_or(ErrorCode::DirectoryInvalid)?;
    if !Ed25519Public(org_key).verify(signed, &sig) {
        return Err(ErrorCode::DirectoryInvalid);
    }
    Ok(DirectoryMeta { org_key, serial })
}

pub async fn publish(relay: &Relay, bytes: Vec<u8>) -> Result<ServerFrame, ErrorCode> {
    let meta = verify_directory(&bytes)?;
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
    use ed25519_dalek::Signer;

    pub fn make(sk: &ed25519_dalek::SigningKey, serial: u64, body: &[u8]) -> Vec<u8> {
        let mut b = vec![1];
        b.extend_from_slice(&sk.verifying_key().to_bytes());
        b.extend_from_slice(&serial.to_be_bytes());
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(body);
        let sig = sk.sign(&b);
        b.extend_from_slice(&sig.to_bytes());
        b
    }

    #[test]
    fn verifies_and_rejects() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let d = make(&sk, 7, b"teams");
        assert_eq!(
            verify_directory(&d),
            Ok(DirectoryMeta {
                org_key: sk.verifying_key().to_bytes(),
                serial: 7
            })
        );
        let mut tampered = d.clone();
        tampered[42] ^= 1;
        assert_eq!(
            verify_directory(&tampered),
            Err(ErrorCode::DirectoryInvalid)
        );
        let mut trailing = d.clone();
        trailing.push(0);
        assert_eq!(
            verify_directory(&trailing),
            Err(ErrorCode::DirectoryInvalid)
        );
        assert_eq!(verify_directory(&[]), Err(ErrorCode::DirectoryInvalid));
    }
}
