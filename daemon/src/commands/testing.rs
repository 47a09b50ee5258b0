//! Commands against a real store in a temporary directory, with no server, workers or
//! deliverer loop running: what the commands' and dispatch's unit tests stand on.

use std::sync::Arc;

use hookd_shared::Role;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{Context, Ctx, Output};
use crate::burst::Burst;
use crate::config::Config;
use crate::error::Error;
use crate::events::Bus;
use crate::pipeline::{Env, Runtime};
use crate::store::{Store, StoreConfig, TokenAuth};

/// A context over a fresh store; the store closes (and the directory goes) when it is dropped.
pub struct Harness {
    pub ctx: Ctx,
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// Defaults, with a fresh store.
    pub async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    /// A fresh store and the defaults as `edit` changes them.
    pub async fn with(edit: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::with_data_dir(dir.path());
        edit(&mut config);
        let config = Arc::new(config);
        let bus = Bus::default();
        let store = crate::store::open(StoreConfig {
            url: config.storage.clone(),
            synchronous: config.synchronous,
            public_url: "http://hooks.test".into(),
            bus: bus.clone(),
            retention: config.retention.clone(),
        })
        .expect("open the store");
        let registry = Arc::new(super::registry());
        let burst = Burst::new(0);
        let pipelines = Runtime::load(
            store.clone(),
            &*registry,
            config.pipeline.clone(),
            burst.clone(),
            crate::pipeline::process::Groups::unrecorded(),
            CancellationToken::new(),
        )
        .await
        .expect("load pipelines");
        let deliverer = crate::deliver::Deliverer::new(&config, store.clone()).expect("deliverer");
        let ctx = Arc::new(Context {
            store: store.clone(),
            bus,
            config,
            deliverer: Arc::new(deliverer),
            pipelines: Arc::new(pipelines),
            limits: Default::default(),
            burst,
            registry,
        });
        Harness {
            ctx,
            store,
            _dir: dir,
        }
    }

    /// Calls `name` with `params` (a JSON object) as a caller of `role` (`None`: no token),
    /// through the registry's checks, as the HTTP API does.
    pub async fn call(
        &self,
        name: &str,
        params: Value,
        role: Option<Role>,
    ) -> Result<Output, Error> {
        let raw: Map<String, Value> = match params {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => panic!("params must be an object, got {other}"),
        };
        let caller = role.map(|role| TokenAuth {
            id: "t1".into(),
            name: format!("a {}", role.as_str()),
            role,
        });
        self.ctx
            .registry
            .dispatch(self.ctx.clone(), name, raw, caller)
            .await
    }

    /// The error of a call that must be refused.
    pub async fn refused(&self, name: &str, params: Value, role: Role) -> Error {
        self.call(name, params.clone(), Some(role))
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} {params} was accepted"))
    }

    /// The JSON answer of a call that must succeed.
    pub async fn ok(&self, name: &str, params: Value, role: Role) -> Value {
        match self.call(name, params, Some(role)).await {
            Ok(Output::Json(v)) => v,
            Ok(Output::None) => Value::Null,
            Ok(Output::Raw(_)) => panic!("{name} answered raw bytes"),
            Err(e) => panic!("{name} failed: {e}"),
        }
    }

    /// Creates a webhook for `event_key`; its uuid.
    pub async fn webhook(&self, event_key: &str) -> String {
        let w = self
            .ok(
                "webhook.put",
                serde_json::json!({ "eventKey": event_key }),
                Role::Admin,
            )
            .await;
        w["uuid"].as_str().expect("uuid").to_string()
    }

    /// How pipelines run here: with this context's commands.
    pub fn env(&self) -> Env {
        super::pipeline_env(&self.ctx)
    }

    /// Commits a capture of `body` for `uuid` with `headers` (queuing its listeners' runs, as
    /// receive does); its message id.
    pub async fn capture(&self, uuid: &str, body: &[u8], headers: &[(&str, &str)]) -> String {
        let hook = self.store.webhook(uuid).expect("webhook exists");
        let headers: Vec<[&str; 2]> = headers.iter().map(|(k, v)| [*k, *v]).collect();
        let mut c = crate::store::conformance::capture(uuid, body, crate::clock::now_ms());
        c.event_key = hook.event_key.clone();
        c.query = format!("uuid={uuid}");
        c.headers_json = serde_json::to_string(&headers).expect("headers");
        match self.store.capture(c).await.expect("capture") {
            crate::store::Captured::Stored(s) => s.id.clone(),
            crate::store::Captured::Duplicate(id) => panic!("unexpected duplicate of {id}"),
        }
    }
}
