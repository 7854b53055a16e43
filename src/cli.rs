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
    /// Print a fresh Standard Webhooks secret (whsec_...), or with --ed25519 a key pair
    /// for `signature = "ed25519"` (whsk_ private key and whpk_ public key).
    GenSecret {
        /// Print an ed25519 key pair (Standard Webhooks v1a) instead of an HMAC secret.
        #[arg(long)]
        ed25519: bool,
    },
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
    /// `delivery pause` and `delivery resume` are the same as `pause-all` and `resume-all`.
    Delivery {
        #[command(subcommand)]
        command: DeliveryCommand,
    },
    /// List, show and retry deliveries.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Send events to a subscription again: the ones named, or the events of the
    /// deliveries named with --delivery (delivered ones too). The existing delivery is
    /// made due again, or one is made where the subscription never had the event; an
    /// event outside the subscription's scope is refused. Exits 1 if any was refused.
    #[command(group(ArgGroup::new("what").required(true).args(["event_ids", "delivery"])))]
    Replay {
        /// Event ids.
        #[arg(value_name = "EVENT_ID", requires = "subscription")]
        event_ids: Vec<String>,
        /// The subscription to send the events to.
        #[arg(long, value_name = "NAME")]
        subscription: Option<String>,
        /// Delivery ids: each one's event goes to its own subscription again.
        #[arg(long, value_name = "ID", num_args = 1.., conflicts_with_all = ["event_ids", "subscription"])]
        delivery: Vec<i64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pause one subscription, kept across restarts: its deliveries wait, nothing is
    /// dropped.
    Pause {
        /// The subscription's name.
        subscription: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume a paused subscription (paused by an operator, by a 410 Gone or after failing
    /// too long); its waiting deliveries are sent.
    Resume {
        /// The subscription's name.
        subscription: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pause all delivery, kept across restarts (same as `delivery pause`). Events are
    /// still taken in and stored.
    PauseAll {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON: {"enabled", "config_enabled", "paused_by_operator", "reason", "changed"}.
        #[arg(long)]
        json: bool,
    },
    /// Resume all delivery (same as `delivery resume`); exits 1 while `[delivery] enabled
    /// = false` keeps it off.
    ResumeAll {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a captured webhook request against a secret and say why it does not verify
    /// (stale timestamp, wrong secret, changed body, missing headers). Exit 0 valid, 1
    /// invalid, 2 usage. Needs no running posthorn.
    Verify(crate::commands::verify::VerifyArgs),
    /// Forget a conversation (an erasure request): blank every stored payload, attempt
    /// snippet and rejection snippet of it, keeping the delivery log's ids, types, times,
    /// states and status codes. Cancels its pending deliveries unless
    /// --let-pending-finish. Events of it taken in later are not affected.
    Forget {
        /// The conversation's id.
        #[arg(long, value_name = "ID")]
        conversation: String,
        /// Let pending deliveries finish (their events are blanked once they are final)
        /// instead of cancelling them.
        #[arg(long)]
        let_pending_finish: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show stored events.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Copy the SQLite store ([storage] path) into an empty PostgreSQL database: events,
    /// pending and finished deliveries, attempts, rejections, audit log and settings, in
    /// one transaction. Stop posthorn first; then switch [storage] to the database. A
    /// database that holds posthorn rows is refused.
    MigrateStore(crate::commands::migrate_store::MigrateStoreArgs),
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
    /// Pause all delivery (same as `posthorn pause-all`).
    Pause {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume all delivery (same as `posthorn resume-all`; exits 1 while `[delivery]
    /// enabled = false` keeps it off).
    Resume {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say whether delivery runs, and why not.
    Status {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON: {"enabled", "config_enabled", "paused_by_operator", "reason"}.
        #[arg(long)]
        json: bool,
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
    /// Make deliveries due now: the ones named (dead, failing or cancelled), or every dead
    /// or failing delivery of a subscription that changed since a time (with
    /// --include-cancelled, its cancelled ones too). Exits 1 if any was refused.
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
        /// With --subscription: retry its cancelled deliveries too (cancelled when the
        /// subscription was removed or renamed at a reload).
        #[arg(long, requires = "subscription")]
        include_cancelled: bool,
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
