//! The `hookd` binary: `hookd [serve]` runs the daemon, `hookd command <name> k=v` calls one.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hookd::cli::{self, CommandArgs};
use hookd::config::{Config, LogFormat, Overrides};

// glibc's allocator spent ~15% of the receive path's CPU in malloc/free under load (perf, see
// docs/BENCHMARKS.md); mimalloc's thread-local heaps remove most of that. Built with `no_thp`: on
// kernels whose THP mode is `madvise`, mimalloc otherwise asks for huge pages on its arena and
// every thread's first allocation makes 2 MiB resident (idle RSS 29 MiB instead of 17 MiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "hookd", version, about = "hookd: a self-hosted webhook hub")]
struct Cli {
    #[command(flatten)]
    over: Overrides,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon (the default).
    Serve,
    /// Call a command of a running daemon, e.g. `hookd command webhook.put eventKey=webhook.x`.
    Command(CommandArgs),
    /// Relay a hookd's captured webhooks to an app here, e.g.
    /// `hookd listen --url https://hooks.example.com --forward-to http://localhost:3000/hook`.
    Listen(hookd::listen::ListenArgs),
    /// Write a consistent backup of a running daemon (database and bodies) to FILE.
    Backup {
        #[command(flatten)]
        target: cli::Target,
        /// The archive to write (a tar file; it must not exist yet).
        file: std::path::PathBuf,
    },
    /// Restore a backup into the data dir (--data-dir), which must be empty or not exist.
    Restore {
        /// An archive written by `hookd backup`.
        file: std::path::PathBuf,
    },
    /// Check the configuration (--config file, HOOKD_* variables, flags) without starting.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script, e.g. `hookd completions bash > /etc/bash_completion.d/hookd`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Load and validate the settings; unknown keys and bad values are errors that name them.
    Check,
    /// Print every setting with its variable and default (docs/config.md).
    Docs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Command(args)) => cli::run(&cli.over, args),
        Some(Cmd::Listen(args)) => hookd::listen::run(&cli.over, args),
        Some(Cmd::Backup { target, file }) => exit(cli::backup(&cli.over, &target, &file)),
        Some(Cmd::Restore { file }) => exit(cli::restore(&cli.over, &file)),
        Some(Cmd::Config {
            action: ConfigAction::Check,
        }) => exit(check_config(&cli.over)),
        Some(Cmd::Config {
            action: ConfigAction::Docs,
        }) => {
            print!("{}", hookd::config::keys::markdown());
            ExitCode::SUCCESS
        }
        Some(Cmd::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hookd", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        None | Some(Cmd::Serve) => match daemon(&cli.over) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookd: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `hookd config check`: the settings as the daemon would load them.
fn check_config(over: &Overrides) -> Result<(), String> {
    let c = Config::load(over).map_err(|e| e.to_string())?;
    let source = over
        .config
        .as_ref()
        .map_or("no config file".to_string(), |p| p.display().to_string());
    println!(
        "config ok ({source}): listen {}, data dir {}, retention of messages {}",
        c.listen,
        c.data_dir.display(),
        if c.retention.messages.any() {
            serde_json::to_string(&c.retention.messages.view()).unwrap_or_default()
        } else {
            "none (nothing is deleted)".into()
        }
    );
    Ok(())
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn daemon(over: &Overrides) -> anyhow::Result<()> {
    // A file size limit (`ulimit -f`, systemd's LimitFSIZE=) would otherwise kill the daemon
    // mid-write with SIGXFSZ; ignored, the write fails with EFBIG and the request gets a 503,
    // like any other full disk, while what is stored stays readable.
    // SAFETY: sets a signal's disposition to "ignore" before any thread starts; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let config = Config::load(over)?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("HOOKD_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        // One JSON object per line, for log shippers (journald, Loki, Vector, ...).
        LogFormat::Json => logs.json().flatten_event(true).init(),
        // Colours for a person at a terminal; a log file or journald would keep the escape codes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        // Bound now (so a port-0 address is known and the port is ours) but listening only once
        // the store and admin token are ready: a script that waits for the port can then use
        // `hookd command` at once, instead of racing the token file.
        let socket = if config.listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        socket.set_reuseaddr(true)?;
        socket
            .bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let bound = socket.local_addr()?;
        let app = hookd::app::App::open(config, bound).await?;
        let listener = socket
            .listen(1024)
            .with_context(|| format!("cannot listen on {bound}"))?;
        if let Some(path) = &app.admin_token_file {
            tracing::info!("admin token: {}", path.display());
        }
        tracing::info!(
            "data dir {}, webhook URLs under {}",
            app.config.data_dir.display(),
            app.store.public_url()
        );
        // The one line on stdout: scripts and tests wait for it to know the daemon is ready.
        let mut out = std::io::stdout();
        writeln!(out, "hookd listening on http://{bound}")?;
        out.flush()?;
        hookd::run(listener, app, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("stopping: finishing open requests");
}
