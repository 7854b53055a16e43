//! The `posthorn` binary: parses the command line and hands off to the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use posthorn::cli::{Cli, Command};
use posthorn::{config, serve, sign};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let loaded = match config::resolve_config_path(config.as_deref()) {
                Some(path) => config::load(&path),
                None => Ok(config::embedded_defaults()),
            };
            let config = match loaded {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("posthorn: the configuration is not valid:\n{err}");
                    return ExitCode::from(2);
                }
            };
            match serve::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!("{err:#}");
                    eprintln!("posthorn: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig {
            config_flag,
            config,
        } => {
            let Some(path) = config::resolve_config_path(config_flag.or(config).as_deref()) else {
                eprintln!(
                    "posthorn: no config file to check: pass --config PATH, set POSTHORN_CONFIG, \
                     or create {}",
                    config::default_config_path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "~/.config/posthorn/config.toml".into())
                );
                return ExitCode::from(2);
            };
            match config::load(&path) {
                Ok(config) => {
                    println!(
                        "{}: ok ({} subscription{})",
                        path.display(),
                        config.subscriptions.len(),
                        if config.subscriptions.len() == 1 {
                            ""
                        } else {
                            "s"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::GenSecret => {
            println!("{}", sign::generate_whsec());
            ExitCode::SUCCESS
        }
    }
}

/// Plain lines on stderr, which journald reads well: colour only on a terminal, and no
/// timestamp of our own under systemd (`JOURNAL_STREAM`), which stamps each line itself.
/// The level comes from POSTHORN_LOG.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTHORN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
