//! Pipelines: YAML lists of commands, run on events or on demand.

pub mod builtins;
pub mod dispatch;
pub mod event;
pub mod expr;
pub mod parse;
mod process;
pub mod run;

pub use dispatch::Runtime;
pub use parse::{Pipeline, parse};
