//! The `posthorn` binary: parses the command line and hands off to the library.

use std::process::ExitCode;

use clap::Parser as _;
use posthorn::cli::{Cli, Command};
use posthorn::{commands, config, logging, serve, sign};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => {
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
            // After the config is read: it holds the level (POSTHORN_LOG wins over it).
            let log = logging::init(log_format, &config.log.level);
            match serve::serve(config, log) {
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
        Command::HashPassword => commands::hash_password(),
        Command::Status { api, json } => commands::status(&api, json),
        Command::Deliveries { command } => commands::deliveries(&command),
        Command::Delivery { command } => commands::delivery(&command),
        Command::Events { command } => commands::events(&command),
        Command::Test {
            subscription,
            no_wait,
            api,
        } => commands::test(&subscription, no_wait, &api),
    }
}
