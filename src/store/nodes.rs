//! The `nodes` table: one row per posthorn node using the store, written by that node's
//! heartbeat (see `crate::nodes`) through a [`SidePool`] connection, and read by every
//! node for `/api/v1/nodes` and `posthorn status`.

use serde::{Deserialize, Serialize};

use super::db::params;
use super::side::SidePool;

/// A node as its last heartbeat described it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// `hostname@listen`: stable across restarts of the same node.
    pub id: String,
    pub hostname: String,
    /// `[http] listen`.
    pub listen: String,
    /// posthorn's version.
    pub version: String,
    /// A fingerprint of the config in force (`crate::config::fingerprint`).
    pub config_fingerprint: String,
    /// Attempts in flight on this node.
    pub in_flight: u64,
    /// `[delivery] workers`.
    pub workers: u64,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds.
    pub heartbeat_at: i64,
    /// Unix milliseconds; set by a clean stop.
    pub stopped_at: Option<i64>,
}

/// The `nodes` table of one store. Cheap to clone.
#[derive(Clone)]
pub struct Nodes {
    pool: SidePool,
}

impl Nodes {
    pub fn new(pool: SidePool) -> Nodes {
        Nodes { pool }
    }

    /// Writes `node`'s heartbeat, replacing the row of an earlier run with its id.
    pub fn beat(&self, node: &NodeRow) -> anyhow::Result<()> {
        self.pool.with(|db| {
            db.execute(
                "INSERT INTO nodes (id, hostname, listen, version, config_fingerprint,
                                    in_flight, workers, started_at, heartbeat_at, stopped_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL)
                 ON CONFLICT (id) DO UPDATE SET
                    hostname = excluded.hostname, listen = excluded.listen,
                    version = excluded.version,
                    config_fingerprint = excluded.config_fingerprint,
                    in_flight = excluded.in_flight, workers = excluded.workers,
                    started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                    stopped_at = NULL",
                params![
                    node.id,
                    node.hostname,
                    node.listen,
                    node.version,
                    node.config_fingerprint,
                    node.in_flight,
                    node.workers,
                    node.started_at,
                    node.heartbeat_at
                ],
            )?;
            Ok(())
        })
    }

    /// Marks node `id` stopped at `now_ms` (a clean stop).
    pub fn stopped(&self, id: &str, now_ms: i64) -> anyhow::Result<()> {
        self.pool.with(|db| {
            db.execute(
                "UPDATE nodes SET stopped_at = ?2, in_flight = 0 WHERE id = ?1",
                params![id, now_ms],
            )?;
            Ok(())
        })
    }

    /// Every node, by id.
    pub fn list(&self) -> anyhow::Result<Vec<NodeRow>> {
        self.pool.with(|db| {
            Ok(db.query_map(
                "SELECT id, hostname, listen, version, config_fingerprint, in_flight, workers,
                        started_at, heartbeat_at, stopped_at
                   FROM nodes ORDER BY id",
                params![],
                |row| {
                    Ok(NodeRow {
                        id: row.get(0)?,
                        hostname: row.get(1)?,
                        listen: row.get(2)?,
                        version: row.get(3)?,
                        config_fingerprint: row.get(4)?,
                        in_flight: row.get(5)?,
                        workers: row.get(6)?,
                        started_at: row.get(7)?,
                        heartbeat_at: row.get(8)?,
                        stopped_at: row.get(9)?,
                    })
                },
            )?)
        })
    }

    /// Deletes nodes not heard from since `before_ms`, and with `only` (a SQLite store,
    /// which one node holds locked) every node but that one. Returns how many went.
    pub fn prune(&self, before_ms: i64, only: Option<&str>) -> anyhow::Result<usize> {
        self.pool.with(|db| {
            let mut gone = db.execute(
                "DELETE FROM nodes WHERE heartbeat_at < ?1",
                params![before_ms],
            )?;
            if let Some(id) = only {
                gone += db.execute("DELETE FROM nodes WHERE id != ?1", params![id])?;
            }
            Ok(gone)
        })
    }
}
