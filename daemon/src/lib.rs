//! hookd: a self-hosted webhook hub. The binary (`main.rs`) is a thin edge over this library:
//! `server::serve` runs the daemon, `cli::run` is `hookd command`.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
mod coarse_timer;
pub mod commands;
pub mod config;
pub mod deliver;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod receive;
pub mod retention;
pub mod server;
pub mod store;
pub mod stream;

pub use server::{run, serve};
