//! `posthorn status`'s nodes: one line per node sharing the store, then the warnings.

use std::fmt::Write as _;

use super::super::api::NodeList;
use super::super::time::{format_age, format_ms_seconds};
use super::Table;

/// The nodes table and the API's warnings, each on a line of its own.
pub fn nodes(list: &NodeList) -> String {
    let mut out = String::new();
    let mut table = Table::new(&[
        "NODE",
        "STATE",
        "VERSION",
        "CONFIG",
        "IN FLIGHT",
        "STARTED",
        "LAST HEARTBEAT",
    ]);
    for item in &list.items {
        let n = &item.node;
        let id = if n.id == list.this_node {
            format!("{} (this one)", n.id)
        } else {
            n.id.clone()
        };
        table.row(vec![
            id,
            item.state.clone(),
            n.version.clone(),
            n.config_fingerprint.clone(),
            format!("{}/{}", n.in_flight, n.workers),
            format_ms_seconds(n.started_at),
            format!("{} ago", format_age(item.heartbeat_age_ms)),
        ]);
    }
    out.push_str(&table.render());
    for warning in &list.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
