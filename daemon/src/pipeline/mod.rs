//! Pipelines: YAML lists of commands, run on events or on demand.

pub mod builtins;
pub mod dispatch;
pub mod event;
pub mod expr;
pub mod parse;
pub(crate) mod process;
pub mod run;

pub use dispatch::Runtime;
pub use parse::{Pipeline, parse};

use std::sync::Arc;

/// What running pipelines needs: the compiled pipelines with what their runs share, and the
/// commands their steps call.
#[derive(Clone)]
pub struct Env {
    pub runtime: Arc<Runtime>,
    pub commands: Arc<dyn crate::registry::Commands>,
}
