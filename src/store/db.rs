//! The one way the store speaks SQL, to SQLite or to PostgreSQL. Every store module
//! writes its SQL once, with `?N` placeholders and syntax both backends accept; `Db`
//! runs it on whichever connection it holds (translating placeholders for PostgreSQL)
//! and reads rows as [`Value`]s. Where the backends differ in more than placeholders,
//! the caller asks [`Db::dialect`].

mod pg;
mod value;

use std::cell::RefCell;

pub(crate) use value::{FromValue, OwnedValue, ToValue, Value};

/// Binds values to a statement: `params![a, b]`, like rusqlite's macro.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::db::ToValue]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue]
    };
}
pub(crate) use params;

/// What a statement binds: `params![..]`, `[]`, or an array of values.
pub(crate) trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

impl Params for [&dyn ToValue; 0] {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToValue> Params for [T; $n] {
            fn values(&self) -> Vec<Value<'_>> {
                self.iter().map(|p| p.to_value()).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

impl<T: ToValue> Params for Vec<T> {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.to_value()).collect()
    }
}

/// `.optional()` on a single-row answer: no row becomes `None`.
pub(crate) trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(err) if err.is_no_row() => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// Which database a [`Db`] speaks to, and the few spellings that differ between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The larger of two values (SQLite's two-argument `MAX`).
    pub(crate) fn greatest(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Sqlite => format!("MAX({a}, {b})"),
            Dialect::Postgres => format!("GREATEST({a}, {b})"),
        }
    }

    /// Whether the text `haystack` contains the text `needle` (both SQL expressions).
    pub(crate) fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {needle}) > 0"),
        }
    }

    /// The texts of the JSON array bound at `param`, as a one-column subquery.
    pub(crate) fn json_texts(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
            Dialect::Postgres => {
                format!("SELECT json_array_elements_text(CAST({param} AS json))")
            }
        }
    }

    /// `expr` matching the pattern bound at the next `?`, made by [`Dialect::glob`].
    /// On SQLite the `+` keeps the planner off the column's index: a glob is checked row
    /// by row on a walk in time order.
    pub(crate) fn glob_match(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("+{expr} GLOB ?"),
            Dialect::Postgres => format!("{expr} LIKE ? ESCAPE '\\'"),
        }
    }

    /// A glob in SQLite `GLOB` syntax where only `*` is a wildcard (`[?]` and `[[]` stand
    /// for themselves), as this dialect's pattern: for PostgreSQL a `LIKE` pattern.
    pub(crate) fn glob(self, glob: &str) -> String {
        if self == Dialect::Sqlite {
            return glob.to_owned();
        }
        let mut like = String::with_capacity(glob.len() + 4);
        let mut rest = glob;
        while let Some(c) = rest.chars().next() {
            let literal = ["[?]", "[[]"].into_iter().find(|esc| rest.starts_with(esc));
            let (c, taken) = match literal {
                Some(esc) => (esc.as_bytes()[1] as char, 3),
                None => (c, c.len_utf8()),
            };
            match c {
                '*' if literal.is_none() => like.push('%'),
                '%' | '_' | '\\' => {
                    like.push('\\');
                    like.push(c);
                }
                c => like.push(c),
            }
            rest = &rest[taken..];
        }
        like
    }

    /// The join that keeps the tables in the order written: SQLite's `CROSS JOIN` (its
    /// planner never reorders one); PostgreSQL plans any `JOIN` itself and takes no `ON`
    /// after `CROSS JOIN`.
    pub(crate) fn ordered_join(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }

    /// A unary `+` before a column, keeping SQLite's planner off the column's indexes;
    /// nothing on PostgreSQL, which has no `+` for text and plans by statistics.
    pub(crate) fn off_index(self) -> &'static str {
        match self {
            Dialect::Sqlite => "+",
            Dialect::Postgres => "",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("the query returned no row")]
    NoRow,
    #[error("column {index}: {problem}")]
    Column { index: usize, problem: String },
}

impl Error {
    pub(crate) fn is_no_row(&self) -> bool {
        matches!(
            self,
            Error::NoRow | Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)
        )
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to the store's database.
pub(crate) struct Db {
    conn: Conn,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    /// `postgres::Client` needs `&mut` for every call; the store's code passes `&Db`
    /// around (statements in flight while others run), so the client sits in a cell and
    /// is borrowed for one call at a time.
    Postgres(Box<RefCell<pg::Client>>),
}

/// One row of a result.
pub(crate) enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `index` (0-based) as a `T`.
    pub(crate) fn get<T: FromValue>(&self, index: usize) -> Result<T> {
        let value = match self {
            Row::Sqlite(row) => {
                let raw = row.get_ref(index)?;
                value::from_sqlite(raw)
            }
            Row::Postgres(row) => value::from_postgres(row, index),
        };
        value
            .and_then(T::from_value)
            .map_err(|problem| Error::Column { index, problem })
    }
}

impl Db {
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Db {
        conn.set_prepared_statement_cache_capacity(64);
        Db {
            conn: Conn::Sqlite(conn),
        }
    }

    /// A PostgreSQL client, connected to `url` (kept to connect again if the
    /// connection is lost).
    pub(crate) fn postgres(client: postgres::Client, url: &str) -> Db {
        Db {
            conn: Conn::Postgres(Box::new(RefCell::new(pg::Client::new(
                client,
                url.to_owned(),
            )))),
        }
    }

    /// A fresh SQLite database in memory, for tests.
    #[cfg(test)]
    pub(crate) fn open_in_memory() -> Result<Db> {
        Ok(Db::sqlite(rusqlite::Connection::open_in_memory()?))
    }

    /// The rowid of the last insert, for tests that build rows by hand on SQLite
    /// (store code uses `RETURNING`, which both backends have).
    #[cfg(test)]
    pub(crate) fn last_insert_rowid(&self) -> i64 {
        self.as_sqlite()
            .expect("last_insert_rowid is for SQLite tests")
            .last_insert_rowid()
    }

    /// Whether the connection is gone (PostgreSQL only: the server closed it).
    pub(crate) fn is_closed(&self) -> bool {
        match &self.conn {
            Conn::Sqlite(_) => false,
            Conn::Postgres(client) => client.borrow().is_closed(),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, the file's size).
    pub(crate) fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.conn {
            Conn::Sqlite(conn) => Some(conn),
            Conn::Postgres(_) => None,
        }
    }

    /// Runs one statement; returns how many rows it changed.
    pub(crate) fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        let values = params.values();
        match &self.conn {
            Conn::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values.iter()))?),
            Conn::Postgres(client) => Ok(client.borrow_mut().execute(sql, &values)? as usize),
        }
    }

    /// Runs one statement and hands each row to `each`, in order.
    pub(crate) fn for_each(
        &self,
        sql: &str,
        params: impl Params,
        mut each: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let values = params.values();
        match &self.conn {
            Conn::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Sqlite(row))?;
                }
                Ok(())
            }
            Conn::Postgres(client) => {
                // Fetched whole, so `each` may run statements of its own.
                let rows = client.borrow_mut().query(sql, &values)?;
                rows.iter().try_for_each(|row| each(&Row::Postgres(row)))
            }
        }
    }

    /// Every row, each made a `T` by `map`.
    pub(crate) fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, params, |row| {
            out.push(map(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if there is one.
    pub(crate) fn query_opt<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut map = Some(map);
        let mut out = None;
        self.for_each(sql, params, |row| {
            if let Some(map) = map.take() {
                out = Some(map(row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row; [`Error::NoRow`] when there is none.
    pub(crate) fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.query_opt(sql, params, map)?.ok_or(Error::NoRow)
    }

    /// A statement to run once or many times (SQLite caches its plan, PostgreSQL
    /// prepares it once per connection).
    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            db: self,
            sql: sql.to_owned(),
        })
    }

    /// The same as [`Db::prepare_cached`]: every statement is cached.
    pub(crate) fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// Runs statements separated by `;`, binding nothing (schema, pragmas).
    pub(crate) fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres(client) => Ok(client.borrow_mut().batch(sql)?),
        }
    }

    /// Runs a statement that only opens or closes a transaction or savepoint: at once on
    /// SQLite, with the next batch or statement on PostgreSQL (one round trip fewer).
    /// Its error, if any, is that later call's.
    pub(crate) fn hold_batch(&self, sql: &str) -> Result<()> {
        match &self.conn {
            Conn::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Conn::Postgres(client) => {
                client.borrow_mut().hold(sql);
                Ok(())
            }
        }
    }

    /// Begins a transaction; it rolls back unless committed.
    pub(crate) fn transaction(&self) -> Result<Transaction<'_>> {
        self.hold_batch("BEGIN")?;
        Ok(Transaction {
            db: self,
            end: Some("ROLLBACK"),
        })
    }

    /// Begins a transaction and runs `first` in the same round trip to the server (only
    /// statements without parameters or results, such as `SET LOCAL`).
    pub(crate) fn transaction_with(&self, first: &str) -> Result<Transaction<'_>> {
        self.hold_batch(&format!("BEGIN; {first}"))?;
        Ok(Transaction {
            db: self,
            end: Some("ROLLBACK"),
        })
    }

    /// Begins a savepoint inside the current transaction; it rolls back unless released.
    pub(crate) fn savepoint(&self) -> Result<Savepoint<'_>> {
        self.hold_batch("SAVEPOINT command")?;
        Ok(Savepoint {
            db: self,
            open: true,
        })
    }
}

/// The rows of [`Statement::query_map`], each already read.
pub(crate) type MappedRows<T> = std::iter::Map<std::vec::IntoIter<T>, fn(T) -> Result<T>>;

/// A statement bound to its connection, for call sites that run it many times.
pub(crate) struct Statement<'a> {
    db: &'a Db,
    sql: String,
}

impl Statement<'_> {
    pub(crate) fn execute(&mut self, params: impl Params) -> Result<usize> {
        self.db.execute(&self.sql, params)
    }

    /// Every row made a `T` by `map`; an iterator of results, as rusqlite's is.
    pub(crate) fn query_map<T>(
        &mut self,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<MappedRows<T>> {
        let rows = self.db.query_map(&self.sql, params, map)?;
        Ok(rows.into_iter().map(Ok as fn(T) -> Result<T>))
    }

    pub(crate) fn query_row<T>(
        &mut self,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.db.query_row(&self.sql, params, map)
    }

    pub(crate) fn for_each(
        &mut self,
        params: impl Params,
        each: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        self.db.for_each(&self.sql, params, each)
    }
}

/// A transaction in progress; derefs to its [`Db`].
pub(crate) struct Transaction<'a> {
    db: &'a Db,
    end: Option<&'static str>,
}

impl Transaction<'_> {
    pub(crate) fn commit(mut self) -> Result<()> {
        self.end = None;
        self.db.execute_batch("COMMIT")
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            if let Err(err) = self.db.execute_batch(end) {
                tracing::warn!("store: rolling a transaction back failed: {err}");
            }
        }
    }
}

/// A savepoint in progress; derefs to its [`Db`].
pub(crate) struct Savepoint<'a> {
    db: &'a Db,
    open: bool,
}

impl Savepoint<'_> {
    pub(crate) fn commit(mut self) -> Result<()> {
        self.open = false;
        self.db.hold_batch("RELEASE command")
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if self.open {
            if let Err(err) = self
                .db
                .execute_batch("ROLLBACK TO command; RELEASE command")
            {
                tracing::warn!("store: rolling a savepoint back failed: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Db {
        Db::sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }

    #[test]
    fn values_go_in_and_come_out_unchanged() {
        let db = memory();
        db.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n INTEGER)")
            .unwrap();
        let blob = vec![0u8, 255, 7];
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            params![i64::MIN, 0.1f64, "é\"x", blob, None::<i64>],
        )
        .unwrap();
        let row = db
            .query_row("SELECT i, r, s, b, n FROM t", params![], |row| {
                Ok((
                    row.get::<i64>(0)?,
                    row.get::<f64>(1)?,
                    row.get::<String>(2)?,
                    row.get::<Vec<u8>>(3)?,
                    row.get::<Option<i64>>(4)?,
                ))
            })
            .unwrap();
        assert_eq!(row, (i64::MIN, 0.1, "é\"x".to_owned(), blob, None));
    }

    #[test]
    fn a_column_read_as_the_wrong_kind_is_an_error_naming_it() {
        let db = memory();
        let err = db
            .query_row("SELECT 'text'", params![], |row| row.get::<i64>(0))
            .unwrap_err();
        assert_eq!(err.to_string(), "column 0: expected an integer, found text");
        let err = db
            .query_row("SELECT -1", params![], |row| row.get::<u32>(0))
            .unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn a_transaction_not_committed_is_rolled_back_and_a_savepoint_undoes_only_its_own() {
        let db = memory();
        db.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        {
            let tx = db.transaction().unwrap();
            tx.execute("INSERT INTO t VALUES (1)", params![]).unwrap();
        }
        let count = |db: &Db| -> i64 {
            db.query_row("SELECT count(*) FROM t", params![], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(count(&db), 0);
        let tx = db.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (1)", params![]).unwrap();
        {
            let sp = tx.savepoint().unwrap();
            sp.execute("INSERT INTO t VALUES (2)", params![]).unwrap();
        }
        let sp = tx.savepoint().unwrap();
        sp.execute("INSERT INTO t VALUES (3)", params![]).unwrap();
        sp.commit().unwrap();
        tx.commit().unwrap();
        let kept = db
            .query_map("SELECT n FROM t ORDER BY n", params![], |row| {
                row.get::<i64>(0)
            })
            .unwrap();
        assert_eq!(kept, [1, 3]);
    }

    #[test]
    fn a_glob_becomes_a_like_pattern_with_its_literals_escaped() {
        let glob = crate::store::TypeFilter::parse("conv_1%[x]?*");
        let crate::store::TypeFilter::Glob(glob) = glob else {
            panic!("a pattern with * is a glob");
        };
        assert_eq!(Dialect::Sqlite.glob(&glob), glob);
        assert_eq!(Dialect::Postgres.glob(&glob), "conv\\_1\\%[x]?%");
    }

    #[test]
    fn query_opt_says_none_and_query_row_says_no_row() {
        let db = memory();
        let none = db
            .query_opt("SELECT 1 WHERE 0", params![], |row| row.get::<i64>(0))
            .unwrap();
        assert_eq!(none, None);
        let err = db
            .query_row("SELECT 1 WHERE 0", params![], |row| row.get::<i64>(0))
            .unwrap_err();
        assert!(err.is_no_row());
    }
}
