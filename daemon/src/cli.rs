//! `hookd command <name> key=value ...`: calls a running daemon's command API, prints the answer
//! (pretty JSON on a terminal), and exits non-zero with the error message on stderr.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use hookd_shared::ErrorResponse;
use serde_json::{Map, Value};

use crate::auth::ADMIN_TOKEN_FILE;
use crate::config::{Config, Overrides};

/// Arguments of `hookd command`.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    /// Daemon URL [default: http:// plus the configured listen address].
    #[arg(long, env = "HOOKD_URL")]
    pub url: Option<String>,
    /// API token [default: HOOKD_ADMIN_TOKEN, else <data-dir>/admin.token of a local daemon].
    #[arg(long, env = "HOOKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The command, e.g. webhook.put (`hookd command command.list` lists them).
    pub name: String,
    /// Parameters as key=value; key=@path reads the value from a file, key=\@x is a literal @x.
    pub params: Vec<String>,
}

/// Runs one command against the daemon.
pub fn run(over: &Overrides, args: CommandArgs) -> ExitCode {
    match call(over, args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Which daemon to talk to, and with what token.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Daemon URL [default: http:// plus the configured listen address].
    #[arg(long, env = "HOOKD_URL")]
    pub url: Option<String>,
    /// API token [default: HOOKD_ADMIN_TOKEN, else <data-dir>/admin.token of a local daemon].
    #[arg(long, env = "HOOKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Target {
    /// The base URL and token, with the defaults filled in from the config.
    pub(crate) fn resolve(&self, over: &Overrides) -> Result<(String, Option<String>), String> {
        let config = Config::load(over).map_err(|e| e.to_string())?;
        let base = self
            .url
            .clone()
            .unwrap_or_else(|| local_url(&config))
            .trim_end_matches('/')
            .to_string();
        let token = self
            .token
            .clone()
            .or_else(|| config.admin_token.clone())
            .or_else(|| read_token_file(&config.data_dir));
        Ok((base, token))
    }
}

/// `hookd backup FILE`: streams `store.backup` into FILE (written as FILE.partial, renamed when
/// complete, so a FILE that exists is a whole backup).
pub fn backup(over: &Overrides, target: &Target, file: &Path) -> Result<(), String> {
    if file.exists() {
        return Err(format!(
            "{} exists; give a new file name (backups are never overwritten)",
            file.display()
        ));
    }
    let (base, token) = target.resolve(over)?;
    let partial = std::path::PathBuf::from(format!("{}.partial", file.display()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = rt.block_on(async {
        let mut req = reqwest::Client::new().post(format!("{base}/api/v3/command/store.backup"));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let mut resp = req.send().await.map_err(|e| {
            format!("cannot reach hookd at {base} ({e}); is it running? Pass --url")
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            let msg = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(format!("{msg} [HTTP {status}]"));
        }
        let mut out = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("the backup was cut off ({e}); see the daemon's log"))?
        {
            out.write_all(&chunk)
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
            bytes += chunk.len() as u64;
        }
        out.sync_all()
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        Ok(bytes)
    });
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file)
        .map_err(|e| format!("cannot rename to {}: {e}", file.display()))?;
    eprintln!("backup written to {} ({bytes} bytes)", file.display());
    Ok(())
}

/// `hookd restore FILE`: restores a backup into the configured data dir, which must be empty.
pub fn restore(over: &Overrides, file: &Path) -> Result<(), String> {
    let config = Config::load(over).map_err(|e| e.to_string())?;
    let f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let m = crate::store::restore(std::io::BufReader::new(f), &config.storage)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "restored {} messages ({} body files) from {} into {}; start hookd on it",
        m.messages,
        m.body_files,
        m.created_at,
        config.storage.sqlite_dir().display()
    );
    Ok(())
}

fn call(over: &Overrides, args: CommandArgs) -> Result<ExitCode, String> {
    let params = parse_params(&args.params)?;
    let (base, token) = Target {
        url: args.url.clone(),
        token: args.token.clone(),
    }
    .resolve(over)?;
    let url = format!("{base}/api/v3/command/{}", args.name);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (status, content_type, bytes) = rt.block_on(async {
        let mut req = reqwest::Client::new().post(&url).json(&Value::Object(params));
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            format!("cannot reach hookd at {base} ({e}); is it running? Start it with `hookd serve`, or pass --url")
        })?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("the answer from {base} was cut off: {e}"))?;
        Ok::<_, String>((status, content_type, bytes))
    })?;

    if !status.is_success() {
        let msg = serde_json::from_slice::<ErrorResponse>(&bytes)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        let hint = if status.as_u16() == 401 && token.is_none() {
            " (no token found: pass --token, set HOOKD_TOKEN, or run on the daemon's machine)"
        } else {
            ""
        };
        return Err(format!("{msg}{hint} [HTTP {}]", status.as_u16()));
    }
    let mut out = std::io::stdout().lock();
    let written = if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let text = if std::io::stdout().is_terminal() {
            serde_json::to_string_pretty(&v)
        } else {
            serde_json::to_string(&v)
        }
        .map_err(|e| e.to_string())?;
        writeln!(out, "{text}")
    } else {
        out.write_all(&bytes)
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the answer: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// `key=value` pairs; `key=@path` reads the file, `key=\@x` is the literal `@x`.
fn parse_params(raw: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for arg in raw {
        let (k, v) = arg
            .split_once('=')
            .ok_or_else(|| format!("parameters are key=value, got '{arg}'"))?;
        let value = if let Some(path) = v.strip_prefix('@') {
            std::fs::read_to_string(path)
                .map_err(|e| format!("{k}=@{path}: cannot read the file: {e}"))?
        } else if let Some(literal) = v.strip_prefix("\\@") {
            format!("@{literal}")
        } else {
            v.to_string()
        };
        if out.insert(k.to_string(), Value::String(value)).is_some() {
            return Err(format!("parameter '{k}' is given more than once"));
        }
    }
    Ok(out)
}

/// The URL of a daemon on this machine, from its listen address.
fn local_url(config: &Config) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

fn read_token_file(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_with_files_and_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("v.txt");
        std::fs::write(&f, "from file").expect("write");
        let p = parse_params(&[
            "a=1".into(),
            "b=x=y".into(),
            format!("c=@{}", f.display()),
            "d=\\@team".into(),
        ])
        .expect("parses");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "x=y");
        assert_eq!(p["c"], "from file");
        assert_eq!(p["d"], "@team");
        assert!(parse_params(&["nokey".into()]).is_err());
        assert!(parse_params(&["a=1".into(), "a=2".into()]).is_err());
    }
}
