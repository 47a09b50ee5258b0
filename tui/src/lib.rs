//! hookd-tui: the terminal dashboard. `app` holds the state and its `update`, `ui` draws it,
//! `client` talks to the daemon; `main.rs` wires them to a terminal.

pub mod app;
pub mod client;
pub mod config;
pub mod curl;
pub mod fixtures;
pub mod save;
pub mod ui;
