//! Pipelines: YAML lists of commands, run on events or on demand.

pub mod builtins;
pub mod expr;
pub mod parse;

pub use parse::{Pipeline, PipelineError, parse};
