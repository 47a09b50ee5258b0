//! hookd: a self-hosted webhook hub. The binary (`main.rs`) is a thin edge over this library:
//! `serve` runs the daemon (`run` an opened `App`), `cli::run` is `hookd command`. Only what
//! the binary uses is public, so the compiler finds dead code.

pub mod app;
mod auth;
mod burst;
pub mod cli;
mod clock;
mod coarse_timer;
mod commands;
pub mod config;
mod deliver;
mod error;
mod events;
mod framing;
mod http;
pub mod listen;
mod locks;
mod metrics;
mod pipeline;
mod prune;
mod receive;
mod registry;
mod retention;
mod server;
mod store;
mod stream;

pub use server::{run, serve};
