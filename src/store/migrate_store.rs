//! Moving a store up: the copy behind `posthorn migrate-store`, of a SQLite store (every
//! table that holds state) into an empty PostgreSQL database, in one PostgreSQL
//! transaction, so a failure leaves the target as empty as it was.
//!
//! The tables are read from both schemas at run time and checked against [`COPIED`]: a
//! table the copy does not know is an error, never left behind. Columns are copied by
//! name, values as they are (a value of another kind than the target column's is an
//! error naming its row), streamed through `COPY ... (FORMAT binary)` so memory stays
//! bounded whatever the store's size. Deliveries leased when the source's posthorn
//! stopped come out due, as SQLite's start would make them; identity sequences are set
//! past the largest copied id; the migration is audited in the target.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::ValueRef;
use serde::Serialize;

use super::db::Value;
use super::writer::now_ms;

/// Every table of the SQLite store that holds state, in an order that satisfies the
/// foreign keys (events, then deliveries, then attempts). A table the store gains must
/// be added here (or the copy refuses to run), after deciding how it moves.
const COPIED: &[&str] = &[
    "events",
    "deliveries",
    "attempts",
    "rejections",
    "audit_log",
    "subscription_state",
    "settings",
    "forgotten_conversations",
    "spool_positions",
    "delivery_rollups",
    "queue_samples",
];

/// Tables of the SQLite store deliberately left behind, each with the reason.
const NOT_COPIED: &[(&str, &str)] = &[
    (
        "nodes",
        "each node writes its own row when it starts on the new store",
    ),
    (
        "admin_sessions",
        "sessions of the node that stopped; log in again on the new nodes",
    ),
    (
        "login_throttle",
        "a minute's count of wrong passwords, gone in a minute anyway",
    ),
];

/// Columns read with another expression than their name: a delivery leased when posthorn
/// stopped was never answered for, so it comes out due at once, as SQLite's start
/// (`recover_leases` in writer.rs) would make it.
const SOURCE_EXPRESSIONS: &[(&str, &str, &str)] = &[
    (
        "deliveries",
        "next_attempt_at",
        "CASE WHEN state = 'pending' AND leased_at IS NOT NULL THEN leased_at \
         ELSE next_attempt_at END",
    ),
    (
        "deliveries",
        "leased_at",
        "CASE WHEN state = 'pending' THEN NULL ELSE leased_at END",
    ),
];

/// Diagnostic text cut from what a producer or receiver sent (lossily decoded, so it may
/// hold NUL, which PostgreSQL text cannot): a NUL there becomes U+FFFD, counted in the
/// report. A NUL anywhere else is an error.
const LOSSY_TEXT: &[(&str, &str)] = &[
    ("rejections", "snippet"),
    ("attempts", "response_snippet"),
    ("attempts", "error"),
];

/// Longest wait for a lock on the target's tables (a node running on it).
const LOCK_TIMEOUT: &str = "10s";

/// What the copy did.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    /// The SQLite file copied.
    pub source: PathBuf,
    /// The target's URL, its password replaced.
    pub target: String,
    /// The source's schema version before and after this binary's migrations ran on it.
    pub source_schema: SchemaVersions,
    /// Rows copied per table, in copy order.
    pub tables: Vec<TableCount>,
    /// Deliveries leased when the source stopped, copied as due.
    pub leases_returned: u64,
    /// NUL characters in diagnostic snippets replaced by U+FFFD.
    pub nul_replaced: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SchemaVersions {
    pub before: i64,
    pub after: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

/// Copies the SQLite store at `source` into the PostgreSQL database at `target_url`,
/// which must hold no posthorn rows. The source is locked as `serve` locks it, so no
/// posthorn runs on it during the copy, and brought up to this binary's schema first (as
/// `serve` would at start); its rows are not changed.
pub fn migrate_store(source: &Path, target_url: &str) -> anyhow::Result<Migrated> {
    let shown = crate::config::redact_url(target_url);
    match std::fs::metadata(source) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => bail!("{} is not a SQLite store (not a file)", source.display()),
        Err(err) => bail!(
            "there is no SQLite store to copy at {} ([storage] path): {err}",
            source.display()
        ),
    }
    let _lock = super::try_lock_store(source)?.map_err(|lock| {
        anyhow::anyhow!(
            "posthorn is running on the store {} (it holds {}): stop it first, so that \
             nothing changes during the copy",
            source.display(),
            lock.display()
        )
    })?;

    let mut client = super::schema_pg::connect(target_url)?;
    super::schema_pg::migrate(&mut client)
        .with_context(|| format!("while preparing the schema of {shown}"))?;

    let mut tx = client.transaction()?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))?;
    let target_tables = pg_tables(&mut tx)?;
    // Before the source is opened (and perhaps migrated): a refused target leaves it be.
    lock_and_check_empty(&mut tx, &target_tables, &shown)?;

    let before = user_version(source)?;
    let db = super::open_writer_connection(source)
        .with_context(|| format!("while opening the store at {}", source.display()))?;
    let conn = db
        .as_sqlite()
        .context("the source store is not a SQLite connection")?;
    let after: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    // One read transaction: every table is read from the same state.
    let snapshot = conn.unchecked_transaction()?;
    check_tables(&sqlite_tables(&snapshot)?, &target_tables)?;

    let mut counts = Copied::default();
    let mut tables = Vec::with_capacity(COPIED.len());
    for table in COPIED {
        let rows = copy_table(&snapshot, &mut tx, table, &mut counts)?;
        tables.push(TableCount {
            table: table.to_string(),
            rows,
        });
    }
    let leases_returned: u64 = snapshot.query_row(
        "SELECT count(*) FROM deliveries WHERE state = 'pending' AND leased_at IS NOT NULL",
        [],
        |row| row.get(0),
    )?;
    for table in COPIED {
        advance_identity(&mut tx, table)?;
    }
    let migrated = Migrated {
        source: source.to_path_buf(),
        target: shown,
        source_schema: SchemaVersions { before, after },
        tables,
        leases_returned,
        nul_replaced: counts.nul_replaced,
    };
    tx.execute(
        "INSERT INTO audit_log (at, actor, action, detail, result, origin)
         VALUES ($1, 'migrate-store', 'store.migrate', $2, 'applied', NULL)",
        &[&now_ms(), &audit_detail(&migrated)],
    )?;
    tx.commit()
        .with_context(|| format!("while committing the copy into {}", migrated.target))?;
    drop(snapshot);
    Ok(migrated)
}

/// The audit row's text: where from, and what.
fn audit_detail(migrated: &Migrated) -> String {
    let counts: Vec<String> = migrated
        .tables
        .iter()
        .map(|t| format!("{} {}", t.table, t.rows))
        .collect();
    format!(
        "copied from the SQLite store {}: {}; {} leased deliveries made due",
        migrated.source.display(),
        counts.join(", "),
        migrated.leases_returned
    )
}

#[derive(Default)]
struct Copied {
    nul_replaced: u64,
}

/// The store's schema version before anything touched it (0 for a new file).
fn user_version(path: &Path) -> anyhow::Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("while opening the store at {}", path.display()))?;
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .with_context(|| format!("{} is not a SQLite database", path.display()))
}

fn sqlite_tables(conn: &rusqlite::Connection) -> anyhow::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )?;
    let names = stmt.query_map([], |row| row.get(0))?;
    Ok(names.collect::<Result<_, _>>()?)
}

/// The target's tables, without the schema's own bookkeeping.
fn pg_tables(tx: &mut postgres::Transaction<'_>) -> anyhow::Result<BTreeSet<String>> {
    let rows = tx.query(
        "SELECT table_name::text FROM information_schema.tables
          WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
            AND table_name <> 'posthorn_schema'",
        &[],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Every table of the source is one the copy knows and the target has.
fn check_tables(source: &BTreeSet<String>, target: &BTreeSet<String>) -> anyhow::Result<()> {
    let known = |t: &str| COPIED.contains(&t) || NOT_COPIED.iter().any(|(n, _)| *n == t);
    if let Some(unknown) = source.iter().find(|t| !known(t)) {
        bail!(
            "the SQLite store has a table {unknown:?} that migrate-store does not know how \
             to copy; nothing was copied (a posthorn bug: the copy must learn every table)"
        );
    }
    for table in COPIED {
        if !source.contains(*table) {
            bail!("the SQLite store has no table {table:?}; nothing was copied");
        }
        if !target.contains(*table) {
            bail!(
                "the PostgreSQL schema has no table {table:?} to copy the SQLite one into; \
                 nothing was copied"
            );
        }
    }
    Ok(())
}

/// Locks every table of the target against writes until the copy commits, then refuses
/// unless all are empty.
fn lock_and_check_empty(
    tx: &mut postgres::Transaction<'_>,
    tables: &BTreeSet<String>,
    shown: &str,
) -> anyhow::Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = tables.iter().map(|t| quoted(t)).collect();
    tx.batch_execute(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", list.join(", ")))
        .with_context(|| {
            format!("while locking the tables of {shown} (is a posthorn running on it?)")
        })?;
    // The copied tables first, in copy order, then any the target has of its own.
    let ordered = COPIED
        .iter()
        .copied()
        .filter(|t| tables.contains(*t))
        .chain(
            tables
                .iter()
                .map(String::as_str)
                .filter(|t| !COPIED.contains(t)),
        );
    let mut full = Vec::new();
    for table in ordered {
        let rows: bool = tx
            .query_one(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", quoted(table)),
                &[],
            )?
            .get(0);
        if rows {
            full.push(table);
        }
    }
    match full.as_slice() {
        [] => Ok(()),
        [table] => bail!(
            "{shown} is not empty: its table {table} holds rows; migrate-store copies into \
             an empty database only, and left this one as it was"
        ),
        tables => bail!(
            "{shown} is not empty: its tables {} hold rows; migrate-store copies into an \
             empty database only, and left this one as it was",
            tables.join(", ")
        ),
    }
}

/// `"name"`: our own table and column names, quoted for the reserved ones ("offset").
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Streams one table into the target; returns the rows copied.
fn copy_table(
    source: &rusqlite::Connection,
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    counts: &mut Copied,
) -> anyhow::Result<u64> {
    let columns: Vec<String> = {
        let mut stmt = source.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        let names = stmt.query_map([table], |row| row.get(0))?;
        names.collect::<Result<_, _>>()?
    };
    let target_columns: BTreeSet<String> = tx
        .query(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(missing) = columns.iter().find(|c| !target_columns.contains(*c)) {
        bail!(
            "the SQLite store's column {table}.{missing} has no column in the PostgreSQL \
             schema; nothing was copied"
        );
    }
    let list: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
    let list = list.join(", ");
    let types: Vec<Type> = tx
        .prepare(&format!("SELECT {list} FROM {} LIMIT 0", quoted(table)))?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let lossy: Vec<bool> = columns
        .iter()
        .map(|c| LOSSY_TEXT.contains(&(table, c.as_str())))
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            SOURCE_EXPRESSIONS
                .iter()
                .find(|(t, col, _)| *t == table && col == c)
                .map_or_else(
                    || quoted(c),
                    |(_, _, expr)| format!("{expr} AS {}", quoted(c)),
                )
        })
        .collect();

    let copy = tx.copy_in(&format!(
        "COPY {} ({list}) FROM STDIN (FORMAT binary)",
        quoted(table)
    ))?;
    let mut writer = BinaryCopyInWriter::new(copy, &types);
    let mut stmt = source.prepare(&format!(
        "SELECT {} FROM {}",
        select.join(", "),
        quoted(table)
    ))?;
    let mut rows = stmt.query([])?;
    let mut read = 0u64;
    let mut cleaned: Vec<Option<String>> = vec![None; columns.len()];
    while let Some(row) = rows.next()? {
        read += 1;
        let mut values: Vec<Value<'_>> = Vec::with_capacity(columns.len());
        for (index, ty) in types.iter().enumerate() {
            let value = row.get_ref(index)?;
            let at = || row_name(table, &columns, row);
            let value = cell(value, ty).map_err(|problem| {
                anyhow::anyhow!("{}: column {}: {problem}", at(), columns[index])
            })?;
            cleaned[index] = None;
            if let Value::Text(text) = value {
                if text.contains('\0') {
                    if !lossy[index] {
                        bail!(
                            "{}: column {} holds a NUL character, which PostgreSQL text \
                             cannot store; nothing was copied",
                            at(),
                            columns[index]
                        );
                    }
                    counts.nul_replaced += text.matches('\0').count() as u64;
                    cleaned[index] = Some(text.replace('\0', "\u{fffd}"));
                }
            }
            values.push(value);
        }
        for (value, clean) in values.iter_mut().zip(&cleaned) {
            if let Some(clean) = clean {
                *value = Value::Text(clean);
            }
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        writer
            .write(&refs)
            .with_context(|| format!("while copying {}", row_name(table, &columns, row)))?;
    }
    let written = writer
        .finish()
        .with_context(|| format!("while copying the table {table}"))?;
    if written != read {
        bail!("{table}: read {read} rows from SQLite but PostgreSQL took {written}");
    }
    Ok(written)
}

/// Names a row for an error by its first column (the key of every copied table).
fn row_name(table: &str, columns: &[String], row: &rusqlite::Row<'_>) -> String {
    let key = match row.get_ref(0) {
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(ValueRef::Text(text)) => format!("{:?}", String::from_utf8_lossy(text)),
        _ => "?".into(),
    };
    format!("{table} row {} = {key}", columns[0])
}

/// A SQLite value as it goes to a PostgreSQL column of type `ty`, refused unless it is of
/// the same kind: the copy passes values, it does not convert them.
fn cell<'a>(value: ValueRef<'a>, ty: &Type) -> Result<Value<'a>, String> {
    let fits = match value {
        ValueRef::Null => return Ok(Value::Null),
        ValueRef::Integer(_) => [Type::INT8, Type::INT4, Type::INT2].contains(ty),
        ValueRef::Real(_) => [Type::FLOAT8, Type::FLOAT4].contains(ty),
        ValueRef::Text(_) => [Type::TEXT, Type::VARCHAR, Type::BPCHAR].contains(ty),
        ValueRef::Blob(_) => *ty == Type::BYTEA,
    };
    let kind = match value {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    };
    if !fits {
        return Err(format!(
            "holds {kind}, but the PostgreSQL column is {ty}; nothing was copied"
        ));
    }
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(bytes) => {
            Value::Text(std::str::from_utf8(bytes).map_err(|err| {
                format!("holds text that is not UTF-8 ({err}); nothing was copied")
            })?)
        }
        ValueRef::Blob(bytes) => Value::Blob(bytes),
    })
}

/// Sets the identity sequence of `table` (if it has one) past its largest copied id, so
/// rows added later do not collide.
fn advance_identity(tx: &mut postgres::Transaction<'_>, table: &str) -> anyhow::Result<()> {
    let identities = tx.query(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
        &[&table],
    )?;
    for row in identities {
        let column: String = row.get(0);
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2),
                               COALESCE((SELECT MAX({}) FROM {}), 0) + 1, false)",
                quoted(&column),
                quoted(table)
            ),
            &[&quoted(table), &column],
        )
        .with_context(|| format!("while moving the id sequence of {table} past its rows"))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "migrate_store/tests.rs"]
mod tests;
