//! Every setting once: its TOML key, its `HOOKD_*` variable, its default and what it does. The
//! loader maps variables to keys through this table, and `docs/config.md` is rendered from it
//! (`hookd config docs`; a test keeps the two equal), so neither can miss a setting.

/// One setting.
pub struct Key {
    /// `section.key` (or `section.sub.key`) as in the TOML file.
    pub path: &'static str,
    /// The default, as a person reads it.
    pub default: &'static str,
    pub doc: &'static str,
}

const fn key(path: &'static str, default: &'static str, doc: &'static str) -> Key {
    Key { path, default, doc }
}

/// Every setting, in the order of `docs/hookd.example.toml`.
pub const KEYS: &[Key] = &[
    key(
        "server.listen",
        "127.0.0.1:8080",
        "address to listen on (also `--listen`)",
    ),
    key(
        "server.publicUrl",
        "http://<listen address>",
        "base of every webhookUrl; set it behind a proxy (also `--public-url`)",
    ),
    key(
        "server.dataDir",
        "~/.local/share/hookd",
        "database and captured bodies (also `--data-dir`)",
    ),
    key(
        "server.maxBody",
        "25MiB",
        "largest accepted body; no webhook may allow more (also `--max-body`)",
    ),
    key(
        "server.maxConnections",
        "1024",
        "most simultaneous connections (also `--max-connections`)",
    ),
    key(
        "server.threads",
        "0 (one per core)",
        "threads serving connections, and as many for deliveries",
    ),
    key(
        "server.adminToken",
        "generated into <dataDir>/admin.token",
        "bootstrap admin token, accepted but never stored",
    ),
    key(
        "server.headerReadTimeout",
        "10s",
        "a client must send its request head within this; also closes idle keep-alive connections",
    ),
    key(
        "server.maxParts",
        "1000",
        "most parts of one multipart body",
    ),
    key(
        "server.trustedProxies",
        "[] (none)",
        "proxies whose X-Forwarded-For is believed (CIDRs; a variable takes them comma-separated)",
    ),
    key(
        "server.perIpRate",
        "0 (off)",
        "requests per second per source IP on webhook URLs",
    ),
    key(
        "server.perIpBurst",
        "2 x perIpRate",
        "burst of the per-IP limit",
    ),
    key(
        "server.perIpV6Prefix",
        "64",
        "IPv6 sources share one per-IP bucket per prefix of this many bits",
    ),
    key(
        "server.minBodyRate",
        "1024",
        "bytes/s below which a body is cut off with 408",
    ),
    key(
        "server.logFormat",
        "text",
        "text or json, one object per line (also `--log-format`)",
    ),
    key(
        "storage.url",
        "sqlite://<dataDir>",
        "the storage backend; only sqlite:// in this build (also `--store`, `HOOKD_STORE`)",
    ),
    key(
        "storage.synchronous",
        "full",
        "full: a 2xx survives power loss; normal: survives a crash of hookd",
    ),
    key(
        "events.maxClients",
        "256",
        "most simultaneous event stream clients",
    ),
    key(
        "events.maxCount",
        "1000000",
        "the event log keeps at most this many events",
    ),
    key("events.maxAge", "30days", "and none older than this"),
    key("pipeline.workers", "48", "pipeline runs at once"),
    key(
        "pipeline.programs",
        "16",
        "programs `exec` runs at once across all runs",
    ),
    key(
        "pipeline.maxRunsPerTrace",
        "1000",
        "runs one message and the event.send chains it sets off may queue in all",
    ),
    key(
        "pipeline.timeout",
        "60s",
        "every run's time limit: a hard deadline, waiting or computing",
    ),
    key(
        "pipeline.anonymousCommands",
        "log, set, var.set, body.set, exit, event.send, webhook.send, mail.send",
        "what a listener may do as anonymous",
    ),
    key(
        "pipeline.nice",
        "10",
        "nice value of run threads, 0-19; 0 also keeps runs going during bursts",
    ),
    key("smtp.host", "none", "SMTP server for mail.send"),
    key("smtp.port", "587 (25 with starttls = none)", "its port"),
    key(
        "smtp.starttls",
        "opportunistic",
        "none, opportunistic or required",
    ),
    key("smtp.username", "none", "SMTP login"),
    key("smtp.password", "none", "SMTP password"),
    key("smtp.from", "none", "default sender"),
    key(
        "send.allowCidrs",
        "[]",
        "destinations webhook.send may reach although private (CIDRs; comma-separated in a variable)",
    ),
    key(
        "send.allowPrivate",
        "false",
        "allow every private, loopback or link-local destination",
    ),
    key(
        "send.allowForwardLocal",
        "true when listening on loopback",
        "let message.forward reach loopback",
    ),
    key(
        "send.maxConcurrency",
        "64",
        "delivery attempts in flight at once",
    ),
    key(
        "send.maxPerHost",
        "8",
        "delivery attempts in flight per destination host",
    ),
    key(
        "retention.maxAge",
        "none",
        "keep each webhook's messages at most this long (a webhook's retention overrides)",
    ),
    key(
        "retention.maxCount",
        "none",
        "keep at most this many messages per webhook, the newest",
    ),
    key(
        "retention.maxBytes",
        "none",
        "keep at most this many body bytes per webhook",
    ),
    key("retention.interval", "60s", "how often pruning runs"),
    key(
        "retention.executions.maxAge",
        "none",
        "keep finished pipeline runs at most this long",
    ),
    key(
        "retention.executions.maxCount",
        "none",
        "keep at most this many pipeline runs",
    ),
    key(
        "retention.deliveries.maxAge",
        "none",
        "keep finished deliveries at most this long",
    ),
    key(
        "retention.deliveries.maxCount",
        "none",
        "keep at most this many deliveries",
    ),
    key(
        "retention.events.maxAge",
        "events.maxAge",
        "the event log's age limit (the same setting as events.maxAge)",
    ),
    key(
        "retention.events.maxCount",
        "events.maxCount",
        "the event log's size limit (the same setting as events.maxCount)",
    ),
    key(
        "metrics.enabled",
        "true",
        "record metrics and serve /metrics",
    ),
    key(
        "metrics.listen",
        "none (the main listener)",
        "serve /metrics, /healthz and /readyz on this address, without a token",
    ),
    key(
        "metrics.token",
        "true",
        "on the main listener, /metrics needs a (viewer) token",
    ),
];

/// `server.maxBody` -> `HOOKD_MAX_BODY`, `send.allowCidrs` -> `HOOKD_SEND_ALLOW_CIDRS`: the
/// `[server]` keys go without their section, every other key with it.
pub fn env_name(path: &str) -> String {
    let path = path.strip_prefix("server.").unwrap_or(path);
    let mut out = String::from("HOOKD_");
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            out.push('_');
        }
        for c in part.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
    }
    out
}

/// The key a `HOOKD_*` variable (given without its `HOOKD_`) sets, if any.
pub fn path_for_env(var: &str) -> Option<&'static str> {
    KEYS.iter()
        .find(|k| env_name(k.path).strip_prefix("HOOKD_") == Some(var))
        .map(|k| k.path)
}

/// docs/config.md.
pub fn markdown() -> String {
    let mut out = String::from(
        "# hookd settings\n\n\
         Generated by `hookd config docs` from the table the loader reads (`daemon/src/config/keys.rs`).\n\n\
         Each setting comes from, in rising precedence: its default, the TOML file (`--config` or\n\
         `HOOKD_CONFIG`), its `HOOKD_*` variable, a flag where there is one. Values in variables are\n\
         written as in TOML without quotes (`HOOKD_PIPELINE_WORKERS=8`, `HOOKD_RETENTION_MAX_AGE=7d`,\n\
         `HOOKD_SEND_ALLOW_CIDRS=10.0.0.0/8,127.0.0.1/32`). `hookd config check` validates a file and\n\
         the variables; unknown keys are errors that name them. See also `docs/hookd.example.toml`.\n\n\
         Besides these: `HOOKD_CONFIG` (the file), `HOOKD_LOG` (the log filter, default `info`),\n\
         `HOOKD_URL` and `HOOKD_TOKEN` (where `hookd command`, `hookd backup` and `hookd-tui` find the daemon).\n\n\
         | key | variable | default | what it does |\n|---|---|---|---|\n",
    );
    for k in KEYS {
        let (section, name) = k.path.rsplit_once('.').unwrap_or(("", k.path));
        out.push_str(&format!(
            "| `[{section}] {name}` | `{}` | `{}` | {} |\n",
            env_name(k.path),
            k.default,
            k.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_named_from_the_keys_and_map_back() {
        assert_eq!(env_name("server.maxBody"), "HOOKD_MAX_BODY");
        assert_eq!(env_name("send.allowCidrs"), "HOOKD_SEND_ALLOW_CIDRS");
        assert_eq!(
            env_name("retention.executions.maxAge"),
            "HOOKD_RETENTION_EXECUTIONS_MAX_AGE"
        );
        for k in KEYS {
            let var = env_name(k.path);
            assert_eq!(path_for_env(&var["HOOKD_".len()..]), Some(k.path), "{var}");
        }
        assert_eq!(path_for_env("LOG"), None);
        assert_eq!(path_for_env("CONFIG"), None);
    }

    #[test]
    fn docs_config_md_is_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == markdown(),
            "docs/config.md is out of date: run `cargo run -p hookd -- config docs > docs/config.md`"
        );
    }
}
