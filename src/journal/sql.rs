//! How the model's types are stored: TEXT, through `as_str` and `FromStr`, and
//! checked on the way back in (a value outside the model reads as an error,
//! never as a guess).

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::model::{Disposition, EventKind, InstanceId, State};

macro_rules! stored_as_text {
    ($($ty:ty),*) => {$(
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e| FromSqlError::Other(Box::new(e)))
            }
        }
    )*};
}

stored_as_text!(InstanceId, State, EventKind, Disposition);

/// A SQL list (`'a', 'b'`) of stored enum values, so that queries name states and
/// event kinds through the model's types, never as literals typed into SQL.
pub fn sql_list<T: AsRef<str>>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|v| format!("'{}'", v.as_ref().replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}
