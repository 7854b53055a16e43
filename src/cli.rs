//! The command line: what each subcommand takes, parsed with clap.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::client::time::parse_time_arg;
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
    /// Hash an admin password for `[admin] password_hash` (asked twice without echo on a
    /// terminal; one line from stdin otherwise).
    HashPassword,
    /// Show events, deliveries by state, the queue, and each subscription's health.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON: {"overview": ..., "subscriptions": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Switch all delivery off (pause) or on again (resume), kept across restarts, or
    /// show whether it runs. Events are still taken in and stored while it is off.
    Delivery {
        #[command(subcommand)]
        command: DeliveryCommand,
    },
    /// List, show and retry deliveries.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Show stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Send a `posthorn.test` event to one subscription and wait for its first attempt;
    /// exits 0 on a 2xx answer, 1 otherwise.
    Test {
        /// The subscription's name.
        subscription: String,
        /// Print the delivery's id and return without waiting for the attempt.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the operator commands find the API of a running `posthorn serve`. The token
/// comes from POSTHORN_API_TOKEN, else from `[admin] api_token` in the config.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Config file naming `[http] listen` and `[admin] api_token` (same default as
    /// `serve`).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The API's base URL (default: http:// and `[http] listen` from the config).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// Pause all delivery.
    Pause {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume all delivery (exits 1 while `[delivery] enabled = false` keeps it off).
    Resume {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Say whether delivery runs, and why not.
    Status {
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first, one page at a time.
    List {
        #[command(flatten)]
        filter: DeliveryFilterArgs,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON page.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery with its event and every attempt; given an event id, that
    /// event's deliveries.
    Show {
        /// A delivery id (a whole number), or an event id.
        #[arg(value_name = "ID")]
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make deliveries due now: the ones named, or every dead or failing delivery of a
    /// subscription that changed since a time. Exits 1 if any was refused.
    #[command(group(ArgGroup::new("which").required(true).args(["ids", "subscription"])))]
    Retry {
        /// Delivery ids.
        #[arg(value_name = "ID", conflicts_with = "subscription")]
        ids: Vec<i64>,
        /// Retry the failed deliveries of this subscription (with --since).
        #[arg(long, value_name = "NAME", requires = "since")]
        subscription: Option<String>,
        /// Failed deliveries last changed since TIME (RFC 3339, unix ms, or 30m/1h/2d
        /// ago).
        #[arg(long, value_name = "TIME", value_parser = parse_time_arg, requires = "subscription")]
        since: Option<i64>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Which deliveries `deliveries list` shows. TIME is RFC 3339, unix ms, or 30m/1h/2d ago.
#[derive(Debug, Clone, Args)]
pub struct DeliveryFilterArgs {
    /// A subscription's name.
    #[arg(long, value_name = "NAME")]
    pub subscription: Option<String>,
    #[arg(long, value_name = "STATE", value_parser = ["pending", "delivered", "dead", "cancelled"])]
    pub state: Option<String>,
    /// A conversation id, or a pattern where `*` stands for any text (c-2*).
    #[arg(long, value_name = "ID")]
    pub conversation: Option<String>,
    /// One event's deliveries.
    #[arg(long = "event", value_name = "EVENT_ID")]
    pub event_id: Option<String>,
    /// An event type; `*` stands for any text (conversation.*).
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Created at or after TIME: RFC 3339, unix ms, or 30m/1h/2d ago.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub since: Option<i64>,
    /// Created before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time_arg)]
    pub until: Option<i64>,
    /// Rows per page, 1 to 200 (default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=200))]
    pub limit: Option<u32>,
    /// The next page: the cursor the previous page printed.
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Show one event as received (body indented, values as stored), where it came from,
    /// and every delivery it produced.
    Show {
        /// The event's id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}
