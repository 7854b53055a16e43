//! A test's own look into its home's store, the same on SQLite and PostgreSQL: rows read
//! as [`Val`]s, fixtures written with one SQL text for both (`?N` placeholders, `"offset"`
//! quoted, `RETURNING` instead of rowids), and every stored byte for scans that prove a
//! secret or a forgotten value is not kept.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};

use super::Home;

/// One value of a row, or one parameter of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a test binds: `&[&"evt_1", &42_i64, &None::<i64>]`.
pub trait Param {
    fn val(&self) -> Val;
}

impl Param for i64 {
    fn val(&self) -> Val {
        Val::Int(*self)
    }
}

impl Param for i32 {
    fn val(&self) -> Val {
        Val::Int((*self).into())
    }
}

impl Param for bool {
    fn val(&self) -> Val {
        Val::Int((*self).into())
    }
}

impl Param for f64 {
    fn val(&self) -> Val {
        Val::Real(*self)
    }
}

impl Param for str {
    fn val(&self) -> Val {
        Val::Text(self.to_owned())
    }
}

impl Param for String {
    fn val(&self) -> Val {
        Val::Text(self.clone())
    }
}

impl Param for Vec<u8> {
    fn val(&self) -> Val {
        Val::Blob(self.clone())
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn val(&self) -> Val {
        (**self).val()
    }
}

impl<T: Param> Param for Option<T> {
    fn val(&self) -> Val {
        self.as_ref().map_or(Val::Null, Param::val)
    }
}

/// A Rust value a column is read as; a flag (`x IS NOT NULL`, a boolean on PostgreSQL)
/// reads as `bool` or as 0/1.
pub trait FromVal: Sized {
    fn from_val(val: &Val) -> Result<Self, String>;
}

impl FromVal for i64 {
    fn from_val(val: &Val) -> Result<Self, String> {
        match val {
            Val::Int(n) => Ok(*n),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromVal for bool {
    fn from_val(val: &Val) -> Result<Self, String> {
        i64::from_val(val).map(|n| n != 0)
    }
}

impl FromVal for f64 {
    fn from_val(val: &Val) -> Result<Self, String> {
        match val {
            Val::Real(x) => Ok(*x),
            Val::Int(n) => Ok(*n as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}

impl FromVal for String {
    fn from_val(val: &Val) -> Result<Self, String> {
        match val {
            Val::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromVal for Vec<u8> {
    fn from_val(val: &Val) -> Result<Self, String> {
        match val {
            Val::Blob(bytes) => Ok(bytes.clone()),
            Val::Text(text) => Ok(text.as_bytes().to_vec()),
            other => Err(format!("expected a blob, found {other:?}")),
        }
    }
}

impl<T: FromVal> FromVal for Option<T> {
    fn from_val(val: &Val) -> Result<Self, String> {
        match val {
            Val::Null => Ok(None),
            other => T::from_val(other).map(Some),
        }
    }
}

/// One row of a result.
#[derive(Debug, Clone)]
pub struct Row {
    sql: String,
    values: Vec<Val>,
}

impl Row {
    /// Column `index` (from 0) as a `T`; panics naming the statement and the column.
    pub fn get<T: FromVal>(&self, index: usize) -> T {
        let val = self
            .values
            .get(index)
            .unwrap_or_else(|| panic!("{}: there is no column {index}", self.sql));
        T::from_val(val).unwrap_or_else(|e| panic!("{}: column {index}: {e}", self.sql))
    }
}

impl Home {
    /// Every row `sql` answers, with `params` bound to `?1`, `?2`, ...
    pub fn rows(&self, sql: &str, params: &[&dyn Param]) -> Vec<Row> {
        let params: Vec<Val> = params.iter().map(|p| p.val()).collect();
        let values = match &self.pg {
            Some(db) => {
                let mut client = db.connect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                client
                    .query(&dollars(sql), &refs)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| from_postgres(row, i).unwrap_or_else(|e| panic!("{sql}: {e}")))
                            .collect()
                    })
                    .collect::<Vec<Vec<Val>>>()
            }
            None => {
                let conn = self.sqlite(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY);
                let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let width = stmt.column_count();
                stmt.query_map(rusqlite::params_from_iter(params.iter()), |row| {
                    (0..width)
                        .map(|i| row.get_ref(i).map(from_sqlite))
                        .collect()
                })
                .and_then(|rows| rows.collect::<Result<Vec<Vec<Val>>, _>>())
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        };
        values
            .into_iter()
            .map(|values| Row {
                sql: sql.to_owned(),
                values,
            })
            .collect()
    }

    /// The first row `sql` answers, if any.
    pub fn row(&self, sql: &str, params: &[&dyn Param]) -> Option<Row> {
        self.rows(sql, params).into_iter().next()
    }

    /// Runs one statement that changes the store (a fixture); returns the rows changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> u64 {
        let params: Vec<Val> = params.iter().map(|p| p.val()).collect();
        match &self.pg {
            Some(db) => {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                db.connect()
                    .execute(&dollars(sql), &refs)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
            None => self
                .sqlite(rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
                .execute(sql, rusqlite::params_from_iter(params.iter()))
                .unwrap_or_else(|e| panic!("{sql}: {e}")) as u64,
        }
    }

    /// Every byte the store keeps, for scans that prove a value is not in it: the SQLite
    /// file and its WAL as they are on disk; on PostgreSQL every row of every table as
    /// text.
    pub fn store_bytes(&self) -> Vec<u8> {
        let Some(db) = &self.pg else {
            let mut bytes = std::fs::read(self.db()).unwrap_or_default();
            bytes.extend(std::fs::read(self.db().with_extension("db-wal")).unwrap_or_default());
            return bytes;
        };
        let mut client = db.connect();
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
                &[],
            )
            .expect("list the store's tables");
        let mut bytes = Vec::new();
        for table in tables {
            let name: String = table.get(0);
            let sql = format!("SELECT CAST(t AS text) FROM \"{name}\" t");
            for row in client
                .query(&sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
            {
                bytes.extend(row.get::<_, String>(0).into_bytes());
                bytes.push(b'\n');
            }
        }
        bytes
    }

    fn sqlite(&self, flags: rusqlite::OpenFlags) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_with_flags(self.db(), flags).expect("open the store");
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }
}

/// `?N` as PostgreSQL's `$N`, and a bare `?` as the next number, outside quoted text.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut quoted, mut next) = (false, 1);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    continue;
                }
                out.push_str(&next.to_string());
                next += 1;
            }
            c => out.push(c),
        }
    }
    out
}

fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(n) => Val::Int(n),
        ValueRef::Real(x) => Val::Real(x),
        ValueRef::Text(bytes) => Val::Text(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => Val::Blob(bytes.to_vec()),
    }
}

fn from_postgres(row: &postgres::Row, index: usize) -> Result<Val, String> {
    fn get<'a, T: postgres::types::FromSql<'a>>(
        row: &'a postgres::Row,
        index: usize,
    ) -> Result<Option<T>, String> {
        row.try_get(index).map_err(|e| e.to_string())
    }
    let ty = row.columns()[index].type_().clone();
    let val = match ty {
        Type::INT8 => get::<i64>(row, index)?.map(Val::Int),
        Type::INT4 => get::<i32>(row, index)?.map(|n| Val::Int(n.into())),
        Type::INT2 => get::<i16>(row, index)?.map(|n| Val::Int(n.into())),
        Type::BOOL => get::<bool>(row, index)?.map(|b| Val::Int(b.into())),
        Type::FLOAT8 => get::<f64>(row, index)?.map(Val::Real),
        Type::FLOAT4 => get::<f32>(row, index)?.map(|x| Val::Real(x.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            get::<String>(row, index)?.map(Val::Text)
        }
        Type::BYTEA => get::<Vec<u8>>(row, index)?.map(Val::Blob),
        other => {
            return Err(format!(
                "column {index} has type {other}: CAST it to BIGINT, DOUBLE PRECISION or TEXT"
            ))
        }
    };
    Ok(val.unwrap_or(Val::Null))
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(n) => ValueRef::Integer(*n),
            Val::Real(x) => ValueRef::Real(*x),
            Val::Text(text) => ValueRef::Text(text.as_bytes()),
            Val::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
                Type::BOOL => (*n != 0).to_sql(ty, out),
                Type::FLOAT8 => (*n as f64).to_sql(ty, out),
                _ => n.to_string().as_str().to_sql(ty, out),
            },
            Val::Real(x) => x.to_sql(ty, out),
            Val::Text(text) => text.as_str().to_sql(ty, out),
            Val::Blob(bytes) => bytes.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, where the value is known.
        true
    }

    postgres::types::to_sql_checked!();
}
