//! The escape hatch: an unscoped pooled connection, loudly named.

use std::fmt;
use std::ops::Deref;

use deadpool_postgres::Object;

/// A pooled connection with **no** scoping: statements run as the pool's login, without a role
/// switch, claims or org. From
/// [`TenantPool::dangerous_unscoped_connection`](crate::TenantPool::dangerous_unscoped_connection)
/// only, which logs every use.
///
/// Dereferences to [`tokio_postgres::Client`]. When dropped, the connection is closed instead of
/// returned to the pool, so nothing it did (a session `SET`, an open transaction) can reach a
/// scoped transaction.
///
/// Behind a transaction-mode pooler ([`Pooler::Transaction`](crate::Pooler::Transaction)) it is a
/// connection to the *pooler*: only `query_typed`, `simple_query`/`batch_execute`, or statements
/// prepared and used inside one explicit transaction work, and nothing survives between
/// transactions. Run migrations and session-level work on a direct URL.
pub struct UnscopedConnection {
    conn: Option<Object>,
}

impl UnscopedConnection {
    pub(crate) fn new(conn: Object) -> Self {
        Self { conn: Some(conn) }
    }
}

impl Deref for UnscopedConnection {
    type Target = tokio_postgres::Client;

    fn deref(&self) -> &tokio_postgres::Client {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("UnscopedConnection used after drop"),
        }
    }
}

impl fmt::Debug for UnscopedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnscopedConnection").finish_non_exhaustive()
    }
}

impl Drop for UnscopedConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Out of the pool for good; dropping the client closes the connection.
            drop(Object::take(conn));
        }
    }
}
