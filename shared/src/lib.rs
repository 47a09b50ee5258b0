//! Types that the hookd daemon and its clients (CLI, TUI, tests) agree on. No I/O lives here.

pub mod api;
pub mod event;
pub mod key;
pub mod units;
pub mod verify;

pub use api::*;
pub use event::{Event, EventType, Lagged};
