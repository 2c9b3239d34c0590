//! [`Pooler`]: running behind a transaction-mode connection pooler (PgBouncer
//! `pool_mode = transaction`, Supabase's Supavisor on port 6543, RDS Proxy), where every
//! transaction may land on a different server connection.
//!
//! By default ([`Pooler::None`]) every SQL string is prepared once per connection as a *named*
//! statement and cached: the fastest path on a direct (or session-mode pooled) connection, and a
//! broken one behind a transaction-mode pooler, where the statement lives on a server connection
//! the next transaction may not get (`prepared statement "s3" does not exist`). With
//! [`Pooler::Transaction`] the guard never creates a named statement: `BEGIN`/`COMMIT` use the
//! simple protocol, the scoping statement and the handler's statements the *unnamed* statement of
//! the extended protocol (Parse, Bind, Execute and Sync in one message, tokio-postgres'
//! `query_typed`), still pipelined behind `BEGIN` in one round trip.
//!
//! # What changes in pooler mode
//!
//! - Parameter types are not learned from the server (that would need a prepared statement):
//!   each parameter's type is inferred from its Rust value (`&str`/`String` → `text`, `i32` →
//!   `int4`, `i64` → `int8`, `Uuid` → `uuid`, `serde_json::Value` → `jsonb`, `bool`, floats,
//!   `bytea`, time types, arrays of those, `Option` of any). The server then coerces as usual
//!   (`int4` compared with an `int8` column uses the index). A value of another type (a custom
//!   `ToSql` enum, `hstore`) fails with [`GuardError::ParameterType`]: pass it through
//!   [`TenantTx::query_typed`](crate::TenantTx::query_typed) with its type.
//! - [`TenantTx::prepare`](crate::TenantTx::prepare) is refused ([`GuardError::NeedsSession`]).
//! - Every statement is planned anew (no cached plan): a few microseconds of server time per
//!   statement for the queries of a typical handler (`BENCHMARKS.md`).
//! - Columns of types unknown to the driver (enums, composites, domains over them) make
//!   tokio-postgres look the type up with a named statement of its own: cast them to `text`
//!   in the SQL.
//! - Connection options (`-c statement_timeout=…`) are not sent (PgBouncer refuses unknown
//!   startup parameters): [`statement_timeout`](crate::TenantPoolBuilder::statement_timeout)
//!   becomes a `SET LOCAL` sent with `BEGIN` (same message, no round trip).
//! - The session reset still runs, folded into the `COMMIT`'s message (`COMMIT; SET SESSION
//!   AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *[; DISCARD SEQUENCES]`, see
//!   [`SessionReset::Check`](crate::SessionReset::Check)): one message runs on one server
//!   connection, so a handler's session `SET`, `set_config(…, false)`, plain `SET ROLE`, `WITH
//!   HOLD` cursor or `LISTEN` is gone before the pooler hands that connection to anyone else.
//!   The *check* does not run (a message of its own could reach another server connection): a
//!   session advisory lock, an SQL-level `PREPARE` or a temporary object stays on the server
//!   connection, for PgBouncer's `server_reset_query_always = 1` to clean. `DiscardAll` acts as
//!   `Check` here (`DISCARD ALL` cannot share a message); `DangerousNone` sends `COMMIT` alone.
//! - Nothing may rely on session state, which the pooler hands to whoever comes next:
//!   `LISTEN`/`NOTIFY` receivers, session advisory locks (`pg_advisory_lock`; the `_xact_`
//!   variants are fine), `SET` without `LOCAL`, temporary tables kept across transactions, `WITH
//!   HOLD` cursors. The guard itself only ever sets transaction-local state. Run those on a
//!   direct connection (a second pool with [`Pooler::None`] pointing past the pooler).
//!
//! Forgetting the switch is caught: at build time a pool in the default mode on a well-known
//! transaction-mode port (6543, Supavisor; 6432, PgBouncer's default) logs a warning naming the
//! option, and at run time a `prepared statement … does not exist` / `already exists` error
//! (SQLSTATE `26000`, `42P05`) becomes [`GuardError::PreparedStatementLost`], whose message names
//! the option, and is logged at `error`.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use tokio_postgres::types::{ToSql, Type};

use crate::error::GuardError;

/// The environment variable read by
/// [`TenantPoolBuilder::pooler_from_env`](crate::TenantPoolBuilder::pooler_from_env): `none`
/// (or `session`) or `transaction`.
pub const POOLER_ENV: &str = "TENANT_GUARD_POOLER";

/// The URL query parameter [`TenantPool::builder_from_url`](crate::TenantPool::builder_from_url)
/// understands (and removes before handing the URL to the driver): `?pooler=transaction`.
pub const POOLER_URL_PARAM: &str = "pooler";

/// What sits between the pool and PostgreSQL; see the [module docs](self).
///
/// ```
/// use tenant_guard_postgres::Pooler;
///
/// assert_eq!("transaction".parse::<Pooler>().unwrap(), Pooler::Transaction);
/// assert_eq!("session".parse::<Pooler>().unwrap(), Pooler::None);
/// assert!("statement".parse::<Pooler>().is_err()); // PgBouncer's statement mode: no transactions
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Pooler {
    /// A direct connection, or a pooler in *session* mode: named statements, prepared once per
    /// connection and cached (the default, and the fastest).
    #[default]
    None,
    /// A pooler in *transaction* mode (PgBouncer `pool_mode = transaction`, Supavisor port
    /// 6543): unnamed statements only, nothing kept in the session.
    Transaction,
}

impl Pooler {
    /// Whether statements must be unnamed.
    pub fn is_transaction(self) -> bool {
        self == Self::Transaction
    }

    /// The name used by [`FromStr`] and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Transaction => "transaction",
        }
    }
}

impl fmt::Display for Pooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pooler {
    type Err = GuardError;

    /// `none`, `direct`, `session` or `transaction` (case-insensitive); anything else is an error
    /// (an unknown value never silently means "direct").
    fn from_str(s: &str) -> Result<Self, GuardError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "direct" | "session" => Ok(Self::None),
            "transaction" => Ok(Self::Transaction),
            _ => Err(GuardError::Config(format!(
                "unknown pooler mode `{}` (expected `none`, `session` or `transaction`)",
                s.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// Removes `pooler=…` from the query string of a `postgres://` URL; returns the URL the driver
/// should see and the mode, if one was given.
pub(crate) fn split_url(url: &str) -> Result<(String, Option<Pooler>), GuardError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    if !(base.starts_with("postgres://") || base.starts_with("postgresql://")) {
        return Ok((url.to_owned(), None));
    }
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((POOLER_URL_PARAM, value)) => mode = Some(value.parse()?),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, mode))
}

/// Supavisor's transaction-mode port on Supabase.
const SUPAVISOR_TRANSACTION_PORT: u16 = 6543;
/// PgBouncer's default port.
const PGBOUNCER_DEFAULT_PORT: u16 = 6432;

/// What the port says about the server, when the pool caches named statements: `Some(message)`
/// for a well-known transaction-mode pooler port.
pub(crate) fn pooler_port_hint(pooler: Pooler, port: u16) -> Option<&'static str> {
    if pooler.is_transaction() {
        return None;
    }
    match port {
        SUPAVISOR_TRANSACTION_PORT => Some(
            "port 6543 is Supabase's transaction-mode pooler (Supavisor): named statements will \
             fail there; build the pool with .pooler(Pooler::Transaction) or set \
             TENANT_GUARD_POOLER=transaction",
        ),
        PGBOUNCER_DEFAULT_PORT => Some(
            "port 6432 is PgBouncer's default: if it runs pool_mode = transaction, build the \
             pool with .pooler(Pooler::Transaction) or set TENANT_GUARD_POOLER=transaction",
        ),
        _ => None,
    }
}

/// Logs [`pooler_port_hint`] for each port (startup detection of the most common mistake).
pub(crate) fn warn_on_pooler_port<'a>(pooler: Pooler, ports: impl Iterator<Item = &'a u16>) {
    for &port in ports {
        if let Some(hint) = pooler_port_hint(pooler, port) {
            tracing::warn!(port, "{hint}");
        }
    }
}

/// Parameter types tried, in order, for a value whose type the server is not asked for. Types a
/// Rust value commonly accepts several of come in the order of the most useful one (`text` before
/// `varchar`, `jsonb` before `json`, `timestamptz` before `timestamp`).
const CANDIDATES: &[Type] = &[
    Type::TEXT,
    Type::INT4,
    Type::INT8,
    Type::UUID,
    Type::BOOL,
    Type::INT2,
    Type::FLOAT8,
    Type::FLOAT4,
    Type::NUMERIC,
    Type::JSONB,
    Type::JSON,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMP,
    Type::DATE,
    Type::TIME,
    Type::INTERVAL,
    Type::BYTEA,
    Type::INET,
    Type::CHAR,
    Type::OID,
    Type::OID_ARRAY,
    Type::VARCHAR,
    Type::BPCHAR,
    Type::NAME,
    Type::TEXT_ARRAY,
    Type::INT4_ARRAY,
    Type::INT8_ARRAY,
    Type::UUID_ARRAY,
    Type::BOOL_ARRAY,
    Type::INT2_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT4_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::JSONB_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TIMESTAMP_ARRAY,
    Type::DATE_ARRAY,
    Type::BYTEA_ARRAY,
];

/// The PostgreSQL type to send `value` as, inferred from the Rust type (the first of
/// [`CANDIDATES`] it accepts). `None` when it accepts none of them.
pub(crate) fn infer_type(value: &(dyn ToSql + Sync), scratch: &mut BytesMut) -> Option<Type> {
    CANDIDATES.iter().find_map(|ty| {
        scratch.clear();
        // `to_sql_checked` refuses a type the value does not accept before encoding anything.
        value.to_sql_checked(ty, scratch).ok().map(|_| ty.clone())
    })
}

/// `params` with their PostgreSQL types inferred from the Rust values, for tokio-postgres'
/// `query_typed` (unnamed statements): what [`Pooler::Transaction`] does with the parameters of
/// [`TenantTx::query`](crate::TenantTx::query) and friends. `None` when a value's type cannot be
/// inferred (a custom `ToSql` type).
///
/// ```
/// use tenant_guard_postgres::pooler::infer_types;
/// use tenant_guard_postgres::tokio_postgres::types::{ToSql, Type};
///
/// let params: [&(dyn ToSql + Sync); 2] = [&"name", &7_i64];
/// let typed = infer_types(&params).unwrap();
/// assert_eq!(typed[0].1, Type::TEXT);
/// assert_eq!(typed[1].1, Type::INT8);
/// ```
pub fn infer_types<'a>(
    params: &[&'a (dyn ToSql + Sync)],
) -> Option<Vec<(&'a (dyn ToSql + Sync), Type)>> {
    typed(params).ok()
}

/// `params` with their inferred types, for tokio-postgres' `query_typed`.
pub(crate) fn typed<'a>(
    params: &[&'a (dyn ToSql + Sync)],
) -> Result<Vec<(&'a (dyn ToSql + Sync), Type)>, GuardError> {
    let mut scratch = BytesMut::new();
    params
        .iter()
        .enumerate()
        .map(|(i, p)| match infer_type(*p, &mut scratch) {
            Some(ty) => Ok((*p, ty)),
            None => Err(GuardError::ParameterType { index: i + 1 }),
        })
        .collect()
}

/// `BEGIN` (with `READ ONLY` when asked), plus `SET LOCAL statement_timeout` in pooler mode when
/// the pool has one: one simple-protocol message either way.
pub(crate) fn begin_statements(statement_timeout_ms: Option<u128>) -> [Box<str>; 2] {
    let suffix = statement_timeout_ms
        .map(|ms| format!("; SET LOCAL statement_timeout = {}", ms.max(1)))
        .unwrap_or_default();
    [
        format!("BEGIN{suffix}").into_boxed_str(),
        format!("BEGIN READ ONLY{suffix}").into_boxed_str(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_values_get_their_natural_types() {
        let mut s = BytesMut::new();
        let uuid = uuid::Uuid::nil();
        let cases: [(&(dyn ToSql + Sync), Type); 9] = [
            (&"x", Type::TEXT),
            (&String::from("x"), Type::TEXT),
            (&1_i32, Type::INT4),
            (&1_i64, Type::INT8),
            (&1_i16, Type::INT2),
            (&true, Type::BOOL),
            (&uuid, Type::UUID),
            (&serde_json::json!({"a": 1}), Type::JSONB),
            (&vec![uuid], Type::UUID_ARRAY),
        ];
        for (value, ty) in cases {
            assert_eq!(infer_type(value, &mut s), Some(ty));
        }
        let none: Option<i64> = None;
        assert_eq!(infer_type(&none, &mut s), Some(Type::INT8));
        assert_eq!(infer_type(&1.5_f64, &mut s), Some(Type::FLOAT8));
        assert_eq!(infer_type(&vec![1_u8], &mut s), Some(Type::BYTEA));
    }

    #[test]
    fn an_unknown_type_names_the_parameter() {
        struct Odd;
        impl fmt::Debug for Odd {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Odd")
            }
        }
        impl ToSql for Odd {
            fn to_sql(
                &self,
                _: &Type,
                _: &mut BytesMut,
            ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
            {
                Ok(tokio_postgres::types::IsNull::Yes)
            }
            fn accepts(ty: &Type) -> bool {
                ty.name() == "mood"
            }
            tokio_postgres::types::to_sql_checked!();
        }
        let err = typed(&[&1_i32, &Odd]).unwrap_err();
        assert!(matches!(err, GuardError::ParameterType { index: 2 }));
        assert!(err.to_string().contains("$2"));
        assert!(err.to_string().contains("query_typed"));
    }

    #[test]
    fn the_url_parameter_is_removed_and_parsed() {
        let (url, mode) = split_url("postgres://u@h:6543/db?pooler=transaction").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://u@h:6543/db", Some(Pooler::Transaction))
        );
        let (url, mode) =
            split_url("postgres://u@h/db?sslmode=disable&pooler=session&connect_timeout=3")
                .unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=disable&connect_timeout=3");
        assert_eq!(mode, Some(Pooler::None));
        assert_eq!(split_url("host=h user=u").unwrap().1, None);
        assert!(split_url("postgres://h/db?pooler=statement").is_err());
    }

    #[test]
    fn well_known_pooler_ports_are_flagged_in_cached_mode_only() {
        assert!(
            pooler_port_hint(Pooler::None, 6543).is_some_and(|m| m.contains("Pooler::Transaction"))
        );
        assert!(pooler_port_hint(Pooler::None, 6432).is_some());
        assert!(pooler_port_hint(Pooler::None, 5432).is_none());
        assert!(pooler_port_hint(Pooler::Transaction, 6543).is_none());
    }

    #[test]
    fn begin_carries_the_local_timeout_in_one_message() {
        let [rw, ro] = begin_statements(Some(2500));
        assert_eq!(&*rw, "BEGIN; SET LOCAL statement_timeout = 2500");
        assert_eq!(&*ro, "BEGIN READ ONLY; SET LOCAL statement_timeout = 2500");
        assert_eq!(&*begin_statements(None)[1], "BEGIN READ ONLY");
    }
}
