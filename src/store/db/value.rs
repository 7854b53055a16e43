//! Values crossing the store's SQL boundary, the same for both backends: what a query
//! binds (`ToValue`) and what a row gives back (`FromValue`). Integers are 64-bit
//! everywhere (flags are 0/1), so one SQL text binds the same on SQLite and PostgreSQL.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{IsNull, Type};

/// One SQL value, borrowed where it can be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        }
    }
}

/// A value owned, for statements whose parameters are gathered before they run (a
/// filter's `WHERE` built term by term).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnedValue {
    Integer(i64),
    Text(String),
}

impl ToValue for OwnedValue {
    fn to_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Integer(n) => Value::Integer(*n),
            OwnedValue::Text(text) => Value::Text(text),
        }
    }
}

impl From<i64> for OwnedValue {
    fn from(n: i64) -> Self {
        OwnedValue::Integer(n)
    }
}

impl From<String> for OwnedValue {
    fn from(text: String) -> Self {
        OwnedValue::Text(text)
    }
}

/// A Rust value a query may bind.
pub(crate) trait ToValue {
    fn to_value(&self) -> Value<'_>;
}

macro_rules! integer_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value<'_> {
                // Counts and ids never come near i64::MAX; saturate rather than wrap.
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
integer_to_value!(i64, i32, u8, u16, u32, u64, usize);

impl ToValue for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(value) => value.to_value(),
            None => Value::Null,
        }
    }
}

impl ToValue for Value<'_> {
    fn to_value(&self) -> Value<'_> {
        *self
    }
}

/// A Rust value a column may be read as; the error says what the column held instead.
pub(crate) trait FromValue: Sized {
    fn from_value(value: Value<'_>) -> Result<Self, String>;
}

fn mismatch<T>(want: &str, got: Value<'_>) -> Result<T, String> {
    Err(format!("expected {want}, found {}", got.kind()))
}

macro_rules! integer_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: Value<'_>) -> Result<Self, String> {
                match value {
                    Value::Integer(n) => <$t>::try_from(n)
                        .map_err(|_| format!("{n} is out of range for {}", stringify!($t))),
                    other => mismatch("an integer", other),
                }
            }
        }
    )*};
}
integer_from_value!(i64, i32, u8, u16, u32, u64, usize);

impl FromValue for bool {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(n != 0),
            other => mismatch("a 0/1 flag", other),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Real(x) => Ok(x),
            Value::Integer(n) => Ok(n as f64),
            other => mismatch("a number", other),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.to_owned()),
            other => mismatch("text", other),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.to_vec()),
            Value::Text(text) => Ok(text.as_bytes().to_vec()),
            other => mismatch("a blob", other),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value<'_>) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Integer(n) => ValueRef::Integer(n),
            Value::Real(x) => ValueRef::Real(x),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Blob(bytes) => ValueRef::Blob(bytes),
        }))
    }
}

/// Reads a SQLite column as a [`Value`].
pub(super) fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Value<'_>, String> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Real(x),
        ValueRef::Text(bytes) => Value::Text(
            std::str::from_utf8(bytes).map_err(|err| format!("text is not UTF-8: {err}"))?,
        ),
        ValueRef::Blob(bytes) => Value::Blob(bytes),
    })
}

/// Reads a PostgreSQL column as a [`Value`], by the column's type.
pub(super) fn from_postgres(row: &postgres::Row, index: usize) -> Result<Value<'_>, String> {
    let column = row
        .columns()
        .get(index)
        .ok_or_else(|| format!("there is no column {index}"))?;
    let read = |err: postgres::Error| err.to_string();
    let ty = column.type_().clone();
    Ok(match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(read)?
            .map_or(Value::Null, |n| Value::Integer(n.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(read)?
            .map_or(Value::Null, |n| Value::Integer(n.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(read)?
            .map_or(Value::Null, |b| Value::Integer(b.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(index)
            .map_err(read)?
            .map_or(Value::Null, |x| Value::Real(x.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<&str>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Text),
        Type::BYTEA => row
            .try_get::<_, Option<&[u8]>>(index)
            .map_err(read)?
            .map_or(Value::Null, Value::Blob),
        other => {
            return Err(format!(
                "column {:?} has type {other}, which the store does not read (CAST it to BIGINT, \
                 DOUBLE PRECISION or TEXT)",
                column.name()
            ))
        }
    })
}

impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                Type::FLOAT8 => (n as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot bind to a parameter of type {ty}").into()),
            },
            Value::Real(x) => match *ty {
                Type::FLOAT8 => x.to_sql(ty, out),
                Type::FLOAT4 => (x as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot bind to a parameter of type {ty}").into()),
            },
            // PostgreSQL text cannot hold NUL, which a snippet of a producer's input or a
            // receiver's answer may: there it becomes U+FFFD, as invalid UTF-8 does.
            // (Event bodies are JSON, where a NUL is always escaped.)
            Value::Text(text) if text.contains('\0') => {
                text.replace('\0', "\u{fffd}").as_str().to_sql(ty, out)
            }
            Value::Text(text) => text.to_sql(ty, out),
            Value::Blob(bytes) => bytes.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, where the value is known.
        true
    }

    postgres::types::to_sql_checked!();
}
