//! [`ScopeOptions`]: per-transaction choices that are not part of the identity.

use std::fmt;

/// Longest request id kept in `tenant_guard.request_id` (longer ones are cut at a char boundary).
const MAX_REQUEST_ID_LEN: usize = 128;

/// Options of one scoped transaction: the request id to record and whether it only reads.
///
/// ```
/// use tenant_guard_core::RequestId;
/// use tenant_guard_postgres::ScopeOptions;
///
/// let options = ScopeOptions::default()
///     .request_id(RequestId::generate())
///     .read_only(true);
/// assert!(options.is_read_only());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeOptions {
    pub(crate) request_id: Option<Box<str>>,
    pub(crate) read_only: bool,
    pub(crate) primary: bool,
}

impl ScopeOptions {
    /// Records `id` (a [`RequestId`](tenant_guard_core::RequestId), or any text) in the
    /// transaction-local setting `tenant_guard.request_id`, for audit triggers and logs.
    #[must_use]
    pub fn request_id(mut self, id: impl fmt::Display) -> Self {
        let mut id = id.to_string();
        if id.len() > MAX_REQUEST_ID_LEN {
            let mut end = MAX_REQUEST_ID_LEN;
            while !id.is_char_boundary(end) {
                end -= 1;
            }
            id.truncate(end);
        }
        self.request_id = Some(id.into_boxed_str());
        self
    }

    /// Opens the transaction `READ ONLY` (the database refuses writes in it). Its commit is sent
    /// without waiting for the answer: the connection's next user queues behind it, in order.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Runs a read-only transaction on the primary even when the pool has read replicas (see
    /// [`replica`](crate::replica)): for a read that must see a write the replicas may not have
    /// replayed yet (the pool's read-your-writes rule covers the same principal's own writes).
    #[must_use]
    pub fn primary(mut self, primary: bool) -> Self {
        self.primary = primary;
        self
    }

    /// Whether the transaction must run on the primary.
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Whether the transaction is opened `READ ONLY`.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The request id, if one was set.
    pub fn get_request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_request_ids_are_cut_at_a_char_boundary() {
        let id = format!("{}é", "a".repeat(MAX_REQUEST_ID_LEN - 1));
        let o = ScopeOptions::default().request_id(&id);
        assert_eq!(
            o.get_request_id(),
            Some(&*"a".repeat(MAX_REQUEST_ID_LEN - 1))
        );
    }

    #[test]
    fn defaults_are_read_write_without_id() {
        let o = ScopeOptions::default();
        assert!(!o.is_read_only());
        assert_eq!(o.get_request_id(), None);
    }
}
