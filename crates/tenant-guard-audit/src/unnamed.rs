//! The audit's statements as unnamed statements (tokio-postgres `query_typed`): one round trip
//! each, and nothing left on the server connection, so the audit also runs through a
//! transaction-mode pooler (PgBouncer, Supavisor). Parameter types come from the Rust values
//! ([`infer_types`]); a value whose type cannot be inferred falls back to a statement prepared
//! and closed inside the audit's transaction (still safe behind such a pooler, which keeps a
//! transaction on one server connection).

use tenant_guard_postgres::pooler::infer_types;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient, Row};

pub(crate) async fn query<C: GenericClient + Sync>(
    tx: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, Error> {
    match infer_types(params) {
        Some(typed) => tx.query_typed(sql, &typed).await,
        None => {
            tracing::debug!("audit statement with a parameter of no inferable type: prepared");
            tx.query(sql, params).await
        }
    }
}

pub(crate) async fn query_one<C: GenericClient + Sync>(
    tx: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, Error> {
    match infer_types(params) {
        Some(typed) => tx.query_typed_one(sql, &typed).await,
        None => tx.query_one(sql, params).await,
    }
}

pub(crate) async fn query_opt<C: GenericClient + Sync>(
    tx: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, Error> {
    match infer_types(params) {
        Some(typed) => tx.query_typed_opt(sql, &typed).await,
        None => tx.query_opt(sql, params).await,
    }
}

pub(crate) async fn execute<C: GenericClient + Sync>(
    tx: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, Error> {
    match infer_types(params) {
        Some(typed) => tx.execute_typed(sql, &typed).await,
        None => tx.execute(sql, params).await,
    }
}
