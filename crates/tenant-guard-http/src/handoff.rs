//! The access mode of a request's transaction, and the hand-over point between the extractor
//! that takes it and the pipeline that ends it (moved here from `tenant_guard_postgres::handoff`).
//!
//! - admission puts a fresh [`TxSlot`] into the request's [`RequestContext`](crate::RequestContext);
//! - [`RequestContext::db`](crate::RequestContext::db) [`check_out`](TxSlot::check_out)s it (no
//!   connection yet: the check-out from the pool is lazy) and, when the handler drops the
//!   [`TenantDb`](crate::TenantDb), [`give_back`](TxSlot::give_back)s it;
//! - once the handler has answered, [`Finisher::finish`](crate::Finisher::finish)
//!   [`close`](TxSlot::close)s the slot and commits or rolls back what it finds. A transaction
//!   given back after that (a handler that moved it into a spawned task) is handed back to the
//!   caller to drop, so the guard's drop hygiene rolls it back.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ReadWrite {}
    impl Sealed for super::ReadOnly {}
}

/// The access mode of a request's transaction: [`ReadWrite`] or [`ReadOnly`].
pub trait Mode: sealed::Sealed + Send + Sync + 'static {
    /// `true` when the transaction is opened `READ ONLY`.
    const READ_ONLY: bool;
}

/// A read-write transaction (the default).
#[derive(Debug, Clone, Copy)]
pub struct ReadWrite;

/// A transaction opened `READ ONLY`: the database refuses writes in it, and the response does not
/// wait for its end.
#[derive(Debug, Clone, Copy)]
pub struct ReadOnly;

impl Mode for ReadWrite {
    const READ_ONLY: bool = false;
}

impl Mode for ReadOnly {
    const READ_ONLY: bool = true;
}

/// Shared between one request's extensions and its middleware's response future. Clones share
/// the slot.
#[derive(Debug)]
pub(crate) struct TxSlot<T>(Arc<Mutex<State<T>>>);

impl<T> Clone for TxSlot<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

#[derive(Debug)]
enum State<T> {
    /// No transaction was begun.
    Empty,
    /// A transaction is held by an extractor.
    CheckedOut,
    /// The extractor gave its transaction back.
    Returned(T),
    /// The middleware finished the request; late returns are refused.
    Closed,
}

/// What the middleware found when it closed the slot.
#[derive(Debug)]
pub(crate) enum Closed<T> {
    /// No transaction was used.
    Unused,
    /// A transaction was begun but not given back (it escaped the handler).
    Outstanding,
    /// The transaction to commit or roll back.
    Returned(T),
}

/// The slot is taken (a second transaction extractor in the same request) or closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotBusy;

impl<T> TxSlot<T> {
    /// An empty slot.
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(State::Empty)))
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state stays consistent whatever panicked while holding the lock.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the slot for one transaction.
    ///
    /// # Errors
    /// [`SlotBusy`] when a transaction was already checked out, or the slot is closed.
    pub(crate) fn check_out(&self) -> Result<(), SlotBusy> {
        let mut state = self.lock();
        match *state {
            State::Empty => {
                *state = State::CheckedOut;
                Ok(())
            }
            _ => Err(SlotBusy),
        }
    }

    /// Gives the transaction back. Returns it when the slot is already closed, so the caller
    /// drops it outside the lock.
    #[must_use = "a value handed back must be dropped by the caller"]
    pub(crate) fn give_back(&self, value: T) -> Option<T> {
        let mut state = self.lock();
        match *state {
            State::CheckedOut => {
                *state = State::Returned(value);
                None
            }
            _ => Some(value),
        }
    }

    /// Closes the slot and takes what is in it.
    pub(crate) fn close(&self) -> Closed<T> {
        let previous = std::mem::replace(&mut *self.lock(), State::Closed);
        match previous {
            State::Empty | State::Closed => Closed::Unused,
            State::CheckedOut => Closed::Outstanding,
            State::Returned(value) => Closed::Returned(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_value_is_handed_to_close_once() {
        let slot = TxSlot::new();
        slot.check_out().unwrap();
        assert!(
            slot.check_out().is_err(),
            "only one transaction per request"
        );
        assert!(slot.give_back(7).is_none());
        assert!(matches!(slot.close(), Closed::Returned(7)));
        assert!(matches!(slot.close(), Closed::Unused));
    }

    #[test]
    fn an_escaped_value_is_outstanding_and_dropped_when_late() {
        let slot = TxSlot::new();
        slot.check_out().unwrap();
        assert!(matches!(slot.close(), Closed::Outstanding));
        assert_eq!(slot.give_back(7), Some(7), "late returns are not kept");
    }

    #[test]
    fn modes_say_whether_they_are_read_only() {
        const { assert!(ReadOnly::READ_ONLY) };
        const { assert!(!ReadWrite::READ_ONLY) };
    }
}
