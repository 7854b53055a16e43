//! posthorn: a conversation-scoped webhook dispatcher. Events come in from a spool
//! directory or the HTTP inlet, are matched against subscriptions, stored in SQLite and delivered as signed
//! HTTP POSTs with retries. Each module below is one box of the data flow in the README.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod breaker;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod deliver;
pub mod egress;
pub mod event;
pub mod fdlimit;
pub mod format;
pub mod fuzzing;
pub mod health;
pub mod indent;
pub mod inlet;
pub mod logging;
pub mod metrics;
pub mod nodes;
pub mod password;
pub mod preview;
pub mod receivers;
pub mod reload;
pub mod retention;
pub mod retry;
pub mod routing;
pub mod scheduler;
pub mod serve;
pub mod shape;
pub mod sign;
pub mod snippets;
pub mod spool;
pub mod store;
#[cfg(test)]
pub(crate) mod test_rng;
pub mod transport;
pub mod verify;
pub mod web;
