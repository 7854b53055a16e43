//! Side connections: small read-write connections beside the writer, for the node's own
//! bookkeeping that must not queue behind deliveries (heartbeats, admin sessions, the
//! login throttle). Each write here is one short statement; on SQLite it takes the write
//! lock for that instant only (WAL, with a busy timeout), so the writer's batches go on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};

use super::db::Db;
use super::{schema_pg, Location};

/// Connections kept idle; more are opened while many requests run at once.
const KEEP: usize = 4;

/// A pool of side connections to one store. Cheap to clone.
#[derive(Clone)]
pub struct SidePool {
    location: Location,
    idle: Arc<Mutex<Vec<Db>>>,
}

impl SidePool {
    pub fn new(location: Location) -> SidePool {
        SidePool {
            location,
            idle: Default::default(),
        }
    }

    /// Runs `work` with a connection. Blocks: call it off the async threads.
    pub(crate) fn with<T>(&self, work: impl FnOnce(&Db) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let db = match taken {
            Some(db) => db,
            None => open(&self.location)?,
        };
        let answer = work(&db);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEEP && !db.is_closed() {
            idle.push(db);
        }
        answer
    }
}

/// A read-write connection to the store, which `Store::open` has created and migrated.
fn open(location: &Location) -> anyhow::Result<Db> {
    match location {
        Location::Postgres(url) => Ok(Db::postgres(schema_pg::connect(url)?, url)),
        Location::Sqlite(path) => {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("while opening the store at {}", path.display()))?;
            conn.busy_timeout(Duration::from_secs(5))?;
            // What is written here (a heartbeat, a session) may be lost to a power cut
            // without harm; it need not wait for the disk.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(Db::sqlite(conn))
        }
    }
}
