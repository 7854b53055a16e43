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
                    // Valid but unsafe: said loudly, on stderr, without failing the check.
                    for warning in config::advice::warnings(&config) {
                        eprintln!("WARNING: {warning}");
                    }
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
        Command::GenSecret { ed25519: false } => {
            println!("{}", sign::generate_whsec());
            ExitCode::SUCCESS
        }
        Command::GenSecret { ed25519: true } => {
            let key = sign::Ed25519Key::generate();
            println!(
                "# Private key: for posthorn's config only (secret, secret_file or secret_env,\n\
                 # with signature = \"ed25519\"). Keep it secret; the receiver never needs it.\n\
                 {}\n\
                 # Public key: give it to the receiver, which verifies the v1a signatures with it.\n\
                 # It is not secret (the admin page shows it too).\n\
                 {}",
                key.secret_whsk(),
                key.public_whpk()
            );
            ExitCode::SUCCESS
        }
        Command::HashPassword => commands::hash_password(),
        Command::Forget {
            conversation,
            let_pending_finish,
            json,
            api,
        } => commands::forget(&conversation, let_pending_finish, json, &api),
        Command::Status { api, json } => commands::status(&api, json),
        Command::Deliveries { command } => commands::deliveries(&command),
        Command::Delivery { command } => commands::delivery(&command),
        Command::Events { command } => commands::events(&command),
        Command::Test {
            subscription,
            no_wait,
            api,
        } => commands::test(&subscription, no_wait, &api),
        Command::Replay {
            event_ids,
            subscription,
            delivery,
            api,
        } => commands::replay(&event_ids, subscription.as_deref(), &delivery, &api),
        Command::Pause { subscription, api } => commands::pause(&subscription, true, &api),
        Command::Resume { subscription, api } => commands::pause(&subscription, false, &api),
        Command::PauseAll { api, json } => commands::switch_all(&api, Some(true), json),
        Command::ResumeAll { api, json } => commands::switch_all(&api, Some(false), json),
        Command::Verify(args) => commands::verify::run(&args),
        Command::MigrateStore(args) => commands::migrate_store::run(&args),
    }
}
