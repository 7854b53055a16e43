//! The command line: what each subcommand takes, parsed with clap.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "posthorn",
    version,
    about = "Conversation-scoped webhook dispatcher"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the dispatcher: take events from the spool and deliver them. SIGHUP (or an
    /// edit of the config file) reloads the config.
    Serve {
        /// Config file (default: $POSTHORN_CONFIG, then the user's config dir, then
        /// embedded defaults).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// How log lines on stderr are written: plain text, or one JSON object per line.
        #[arg(long, value_enum, value_name = "FORMAT", default_value = "plain")]
        log_format: LogFormat,
    },
    /// Check a config file and name every problem with its line and column.
    CheckConfig {
        /// Config file to check (same default as `serve`).
        #[arg(long = "config", value_name = "PATH")]
        config_flag: Option<PathBuf>,
        /// Config file to check, given without --config.
        #[arg(value_name = "PATH", conflicts_with = "config_flag")]
        config: Option<PathBuf>,
    },
    /// Print a fresh Standard Webhooks secret (whsec_...).
    GenSecret,
}
