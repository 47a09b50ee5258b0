//! The domain types the storage port speaks in: no SQL, no backend notion. Each adapter maps its
//! rows to and from these.

pub mod backup;
pub mod deliveries;
pub mod messages;
pub mod pipelines;
pub mod retention;
pub mod tokens;
pub mod webhooks;
