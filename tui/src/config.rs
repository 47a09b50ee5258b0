//! Which daemon to talk to: `--url`/`HOOKD_URL` and `--token`/`HOOKD_TOKEN`, else a config file
//! (`~/.config/hookd/tui.toml`: `url`, `token`), else a local daemon's default URL and its
//! `admin.token`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Command-line arguments.
#[derive(clap::Parser, Debug)]
#[command(
    name = "hookd-tui",
    version,
    about = "hookd-tui: watch and manage a hookd daemon"
)]
pub struct Args {
    /// Daemon URL [default: config file, else http://127.0.0.1:8080].
    #[arg(long, env = "HOOKD_URL")]
    pub url: Option<String>,
    /// API token (a viewer token can watch; actions need admin).
    #[arg(long, env = "HOOKD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Config file [default: ~/.config/hookd/tui.toml].
    #[arg(long, env = "HOOKD_TUI_CONFIG")]
    pub config: Option<PathBuf>,
    /// A local daemon's data dir, to find its admin.token [default: ~/.local/share/hookd].
    #[arg(long, env = "HOOKD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    url: Option<String>,
    token: Option<String>,
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http://host:port`, no trailing slash.
    pub url: String,
    pub token: Option<String>,
}

impl Settings {
    /// Resolves the settings from arguments, file and local defaults.
    pub fn load(args: &Args) -> anyhow::Result<Settings> {
        let path = args
            .config
            .clone()
            .or_else(|| dirs::config_dir().map(|d| d.join("hookd").join("tui.toml")));
        let file = match &path {
            Some(p) if p.exists() => {
                let text = std::fs::read_to_string(p)?;
                toml::from_str::<File>(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", p.display()))?
            }
            _ => File::default(),
        };
        let url = args
            .url
            .clone()
            .or(file.url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_string();
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| dirs::data_dir().map(|d| d.join("hookd")));
        let token = args
            .token
            .clone()
            .or(file.token)
            .or_else(|| std::env::var("HOOKD_ADMIN_TOKEN").ok())
            .or_else(|| data_dir.as_deref().and_then(read_token));
        Ok(Settings { url, token })
    }
}

fn read_token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("admin.token"))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}
