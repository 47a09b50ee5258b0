//! The commands: every operation hookd offers, each a handler given a [`Ctx`] (the few shared
//! things commands use) and a validated [`Call`]. Declaring and dispatching them is
//! `registry.rs`'s; pipelines call them through the [`Commands`] trait `Ctx` implements.

mod deliver;
mod mail;
mod message;
mod meta;
mod pipeline;
mod store;
#[cfg(test)]
pub(crate) mod testing;
mod token;
mod webhook;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::burst::Burst;
use crate::config::Config;
use crate::deliver::Deliverer;
use crate::events::Bus;
use crate::receive::limits::Limits;
pub use crate::registry::{
    Call, HandlerFuture, Kind, Output, Param, Params, RawData, RawOutput, json, parse_uuid,
};
use crate::registry::{Catalog, Commands, Spec};
use crate::store::{Store, TokenAuth};

/// A command's declaration, its handler given a [`Ctx`].
pub type Command = crate::registry::Command<Ctx>;
/// The registry of hookd's commands.
pub type Registry = crate::registry::Registry<Ctx>;
/// What a handler is given; cheap to clone.
pub type Ctx = Arc<Context>;

/// What commands use: the store, the bus, the settings, and the parts of the daemon that
/// commands steer (deliveries, compiled pipelines, rate limits).
pub struct Context {
    pub store: Store,
    pub bus: Bus,
    pub config: Arc<Config>,
    pub deliverer: Arc<Deliverer>,
    pub pipelines: Arc<crate::pipeline::Runtime>,
    pub limits: Arc<Limits>,
    /// Receives in progress: a prune steps aside for them.
    pub burst: Arc<Burst>,
    pub registry: Arc<Registry>,
}

/// How a command runs pipelines: with its context's commands.
fn pipeline_env(ctx: &Ctx) -> crate::pipeline::Env {
    crate::pipeline::Env {
        runtime: ctx.pipelines.clone(),
        commands: Arc::new(ctx.clone()),
    }
}

/// Every command hookd has.
pub fn registry() -> Registry {
    Registry::new([
        webhook::commands(),
        message::commands(),
        token::commands(),
        meta::commands(),
        pipeline::commands(),
        mail::commands(),
        deliver::commands(),
        store::commands(),
        crate::pipeline::builtins::commands(),
    ])
}

/// Pipelines run commands with the context they were started with.
impl Catalog for Ctx {
    fn spec(&self, name: &str) -> Option<Spec> {
        self.registry.spec(name)
    }
}

impl Commands for Ctx {
    fn invoke(
        &self,
        name: &str,
        raw: Map<String, Value>,
        caller: Option<TokenAuth>,
        input: Option<Value>,
    ) -> HandlerFuture {
        let ctx = self.clone();
        let name = name.to_string();
        Box::pin(async move {
            ctx.registry
                .invoke(ctx.clone(), &name, raw, caller, input)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::registry::{authorize, validate};
    use hookd_shared::Role;

    fn registry() -> Registry {
        super::registry()
    }

    fn raw(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_coerced() {
        let r = registry();
        let put = r.get("webhook.put").expect("webhook.put exists");
        let p = validate(
            put,
            raw(&[
                ("eventKey", "webhook.x".into()),
                ("maxPayloadLength", "1024".into()),
                ("enabled", "false".into()),
            ]),
        )
        .expect("valid");
        assert_eq!(p.int("maxPayloadLength"), Some(1024));
        assert_eq!(p.bool("enabled"), Some(false));
        let err = validate(put, raw(&[("evntKey", "x".into())])).expect_err("unknown");
        assert!(
            err.to_string().contains("unknown parameter 'evntKey'"),
            "{err}"
        );
        assert!(err.to_string().contains("eventKey"), "{err}");
        let err = validate(put, raw(&[("maxPayloadLength", "lots".into())])).expect_err("type");
        assert!(
            err.to_string()
                .contains("maxPayloadLength must be an integer"),
            "{err}"
        );
        let get = r.get("message.get").expect("message.get exists");
        let err = validate(get, Map::new()).expect_err("required");
        assert!(
            err.to_string().contains("missing required parameter 'id'"),
            "{err}"
        );
    }

    #[test]
    fn roles_are_enforced() {
        let r = registry();
        let put = r.get("webhook.put").expect("exists");
        let viewer = TokenAuth {
            id: "1".into(),
            name: "ci".into(),
            role: Role::Viewer,
        };
        assert!(matches!(authorize(put, None), Err(Error::Unauthorized(_))));
        assert!(matches!(
            authorize(put, Some(&viewer)),
            Err(Error::Forbidden(_))
        ));
        let list = r.get("webhook.get").expect("exists");
        assert!(authorize(list, Some(&viewer)).is_ok());
    }

    #[test]
    fn every_command_is_described() {
        let names: Vec<String> = registry().describe().into_iter().map(|c| c.name).collect();
        for n in [
            "command.list",
            "message.body",
            "message.file",
            "message.get",
            "message.list",
            "token.create",
            "token.delete",
            "token.list",
            "webhook.delete",
            "webhook.get",
            "webhook.put",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
    }
}
