//! The nodes sharing one store: this node's id, its heartbeat thread, and how the list
//! of nodes is judged for the operator (up, stale or stopped; warnings when nodes run
//! different versions or configs).
//!
//! A node's id is `hostname@listen` (`[http] listen`): the same across restarts of one
//! node, so a restarted node replaces its row instead of adding one, and never the same
//! for two live nodes (two processes on one host cannot listen on one address). Every
//! [`HEARTBEAT`] the node writes its version, config fingerprint, attempts in flight and
//! the time; a node not heard from for [`STALE_AFTER`] is shown stale, and one not heard
//! from for [`PRUNE_AFTER`] is deleted. The heartbeat thread also sweeps expired admin
//! sessions and ended throttle windows.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::reload::Live;
use crate::store::nodes::{NodeRow, Nodes};
use crate::store::now_ms;
use crate::store::sessions::Sessions;

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose last heartbeat is older than this is shown stale: three missed beats.
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// A node not heard from for this long is deleted from the list.
pub const PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long a login throttle window lasts (`web::limits`), for the sweep.
const THROTTLE_WINDOW_MS: i64 = 60_000;

/// What identifies this node and what it reports besides its heartbeat.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: String,
    pub hostname: String,
    pub listen: String,
    pub workers: u64,
    pub started_at: i64,
}

impl Identity {
    pub fn new(listen: std::net::SocketAddr, workers: usize) -> Identity {
        let hostname = hostname();
        Identity {
            id: format!("{hostname}@{listen}"),
            hostname,
            listen: listen.to_string(),
            workers: workers as u64,
            started_at: now_ms(),
        }
    }
}

/// This machine's host name; `localhost` if it has none.
pub(crate) fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The running heartbeat thread. `stop` marks the node stopped in the store.
pub struct Heartbeat {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    /// Writes the first heartbeat now (an error there stops the start: the store is
    /// unusable), then one every [`HEARTBEAT`] on a thread. `sqlite` says the store is a
    /// SQLite file, which this node alone holds: other nodes' rows are deleted.
    pub fn start(
        identity: Identity,
        nodes: Nodes,
        sessions: Sessions,
        live: Live,
        metrics: Arc<Metrics>,
        sqlite: bool,
    ) -> anyhow::Result<Heartbeat> {
        let beat = Beat {
            identity,
            nodes,
            sessions,
            live,
            metrics,
            sqlite,
        };
        beat.beat()?;
        beat.sweep();
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || beat.run(stopped))?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Beat {
    identity: Identity,
    nodes: Nodes,
    sessions: Sessions,
    live: Live,
    metrics: Arc<Metrics>,
    sqlite: bool,
}

impl Beat {
    fn run(self, stopped: Receiver<()>) {
        let mut beats = 0u64;
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
            if let Err(err) = self.beat() {
                tracing::warn!("could not write this node's heartbeat: {err:#}");
            }
            beats += 1;
            // About once a minute.
            if beats.is_multiple_of(12) {
                self.sweep();
            }
        }
        if let Err(err) = self.nodes.stopped(&self.identity.id, now_ms()) {
            tracing::warn!("could not mark this node stopped: {err:#}");
        }
    }

    fn beat(&self) -> anyhow::Result<()> {
        let (_, busy) = self.metrics.liveness.workers();
        self.nodes.beat(&NodeRow {
            id: self.identity.id.clone(),
            hostname: self.identity.hostname.clone(),
            listen: self.identity.listen.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            config_fingerprint: self.live.load().fingerprint.clone(),
            in_flight: busy as u64,
            workers: self.identity.workers,
            started_at: self.identity.started_at,
            heartbeat_at: now_ms(),
            stopped_at: None,
        })
    }

    fn sweep(&self) {
        let now = now_ms();
        let only = self.sqlite.then_some(self.identity.id.as_str());
        let before = now - PRUNE_AFTER.as_millis() as i64;
        if let Err(err) = self.nodes.prune(before, only) {
            tracing::warn!("could not prune the list of nodes: {err:#}");
        }
        if let Err(err) = self.sessions.sweep(now, now - THROTTLE_WINDOW_MS) {
            tracing::warn!("could not sweep expired admin sessions: {err:#}");
        }
    }
}

/// What the API needs to list the nodes: this node's id and the store's `nodes` table.
pub struct Roster {
    pub this_node: String,
    pub nodes: Nodes,
}

impl Roster {
    /// Every node, judged as of now. Blocks.
    pub fn list(&self) -> anyhow::Result<NodeList> {
        Ok(judge(self.nodes.list()?, &self.this_node, now_ms()))
    }
}

/// `GET /api/v1/nodes`: every node using the store, and what the operator should know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeList {
    /// The id of the node that answered.
    pub this_node: String,
    /// A node whose heartbeat is older than this (ms) is stale.
    pub stale_after_ms: u64,
    pub items: Vec<NodeView>,
    /// Sentences for the operator: stale nodes, differing versions or configs.
    pub warnings: Vec<String>,
}

/// One node as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: NodeRow,
    /// `up`, `stale` (no heartbeat for `stale_after_ms`) or `stopped` (a clean stop).
    pub state: String,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
}

/// Judges `rows` as of `now_ms`.
pub fn judge(rows: Vec<NodeRow>, this_node: &str, now_ms: i64) -> NodeList {
    let stale_after = STALE_AFTER.as_millis() as i64;
    let items: Vec<NodeView> = rows
        .into_iter()
        .map(|node| {
            let age = (now_ms - node.heartbeat_at).max(0);
            let state = if node.stopped_at.is_some() {
                "stopped"
            } else if age > stale_after {
                "stale"
            } else {
                "up"
            };
            NodeView {
                node,
                state: state.into(),
                heartbeat_age_ms: age,
            }
        })
        .collect();
    let mut warnings = Vec::new();
    for item in items.iter().filter(|i| i.state == "stale") {
        warnings.push(format!(
            "node {} has not been heard from for {} s (its last heartbeat); it may have \
             died: its leased deliveries go to other nodes when their leases end",
            item.node.id,
            item.heartbeat_age_ms / 1000
        ));
    }
    let up: Vec<&NodeView> = items.iter().filter(|i| i.state == "up").collect();
    if let Some(warning) = differ(&up, "versions", |n| &n.version) {
        warnings.push(warning);
    }
    if let Some(warning) = differ(&up, "different configs (fingerprints)", |n| {
        &n.config_fingerprint
    }) {
        warnings.push(warning);
    }
    NodeList {
        this_node: this_node.into(),
        stale_after_ms: stale_after as u64,
        items,
        warnings,
    }
}

/// A warning naming which nodes have which value, when the nodes up differ in `field`.
fn differ(up: &[&NodeView], what: &str, field: impl Fn(&NodeRow) -> &String) -> Option<String> {
    let mut groups: Vec<(&String, Vec<&str>)> = Vec::new();
    for item in up {
        let value = field(&item.node);
        match groups.iter_mut().find(|(v, _)| *v == value) {
            Some((_, ids)) => ids.push(&item.node.id),
            None => groups.push((value, vec![&item.node.id])),
        }
    }
    if groups.len() < 2 {
        return None;
    }
    let listed: Vec<String> = groups
        .iter()
        .map(|(value, ids)| format!("{value} on {}", ids.join(", ")))
        .collect();
    let noun = if what == "versions" {
        "nodes run different versions".to_string()
    } else {
        format!("nodes run {what}")
    };
    Some(format!("{noun}: {}", listed.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, version: &str, fingerprint: &str, heartbeat_at: i64) -> NodeRow {
        NodeRow {
            id: id.into(),
            hostname: "h".into(),
            listen: "127.0.0.1:1".into(),
            version: version.into(),
            config_fingerprint: fingerprint.into(),
            in_flight: 0,
            workers: 4,
            started_at: 0,
            heartbeat_at,
            stopped_at: None,
        }
    }

    #[test]
    fn nodes_alike_and_fresh_give_no_warning() {
        let list = judge(
            vec![row("a", "1", "f", 1000), row("b", "1", "f", 2000)],
            "a",
            3000,
        );
        assert!(list.warnings.is_empty(), "{:?}", list.warnings);
        assert!(list.items.iter().all(|i| i.state == "up"));
    }

    #[test]
    fn a_stale_node_and_differing_configs_and_versions_are_warned_about() {
        let now = 100_000;
        let list = judge(
            vec![
                row("a", "1", "f1", now),
                row("b", "2", "f2", now),
                row("c", "1", "f1", now - 20_000),
            ],
            "a",
            now,
        );
        let states: Vec<&str> = list.items.iter().map(|i| i.state.as_str()).collect();
        assert_eq!(states, ["up", "up", "stale"]);
        assert_eq!(list.warnings.len(), 3, "{:?}", list.warnings);
        assert!(list.warnings[0].contains("node c has not been heard from for 20 s"));
        assert_eq!(
            list.warnings[1],
            "nodes run different versions: 1 on a; 2 on b"
        );
        assert_eq!(
            list.warnings[2],
            "nodes run different configs (fingerprints): f1 on a; f2 on b"
        );
    }

    #[test]
    fn a_stopped_node_is_shown_stopped_without_a_warning() {
        let mut stopped = row("b", "2", "f2", 0);
        stopped.stopped_at = Some(10);
        let list = judge(vec![row("a", "1", "f1", 100_000), stopped], "a", 100_000);
        assert_eq!(list.items[1].state, "stopped");
        assert!(list.warnings.is_empty(), "{:?}", list.warnings);
    }
}
