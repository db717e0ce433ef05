//! (to be written)

/// Errors of this module.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RatchetError {
    #[error("not yet implemented")]
    Unimplemented,
}
