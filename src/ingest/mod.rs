//! Pure functions of ingest: the stored envelope, the event id, redaction, limits, signatures.
//!
//! Nothing here does I/O, so every rule of CONTRACT §2 is unit-tested in isolation.

pub mod envelope;
pub mod event_id;
pub mod json_scan;
pub mod limits;
#[cfg(test)]
mod proptests;
pub mod redact;
pub mod signature;
pub mod signatures;
pub mod sources;

pub use envelope::{Envelope, RequestParts};
pub use event_id::derive_event_id;
pub use signature::verify_hmac_sha256;
