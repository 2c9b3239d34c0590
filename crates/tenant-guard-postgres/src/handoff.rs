//! Building blocks for web-framework adapters: the access mode of a request's transaction and the
//! hand-over point between the extractor that begins it and the middleware that ends it.
//!
//! `tenant-guard-axum` and `tenant-guard-actix` are built on these, so both frameworks end a
//! request's transaction by the same rules. An adapter for another framework would use them the
//! same way:
//!
//! - the middleware puts a fresh [`TxSlot`] into the request;
//! - the extractor [`check_out`](TxSlot::check_out)s it, begins the transaction and, when the
//!   handler drops it, [`give_back`](TxSlot::give_back)s it;
//! - once the handler has answered, the middleware [`close`](TxSlot::close)s the slot and commits
//!   or rolls back what it finds. A transaction given back after that (a handler that moved it
//!   into a spawned task) is handed back to the caller to drop, so the guard's drop hygiene rolls
//!   it back.
//!
//! ```
//! use tenant_guard_postgres::handoff::{Closed, TxSlot};
//!
//! let slot = TxSlot::new();
//! slot.check_out().unwrap();                  // the extractor begins a transaction
//! assert!(slot.check_out().is_err());         // only one per request
//! assert!(slot.give_back("tx").is_none());    // the handler is done with it
//! assert!(matches!(slot.close(), Closed::Returned("tx"))); // the middleware ends it
//! assert_eq!(slot.give_back("late"), Some("late")); // late returns are not kept
//! ```

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
pub struct TxSlot<T>(Arc<Mutex<State<T>>>);

impl<T> Clone for TxSlot<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for TxSlot<T> {
    fn default() -> Self {
        Self::new()
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
pub enum Closed<T> {
    /// No transaction was used.
    Unused,
    /// A transaction was begun but not given back (it escaped the handler).
    Outstanding,
    /// The transaction to commit or roll back.
    Returned(T),
}

/// The slot is taken (a second transaction extractor in the same request) or closed.
#[derive(Debug, Clone, Copy)]
pub struct SlotBusy;

impl<T> TxSlot<T> {
    /// An empty slot.
    pub fn new() -> Self {
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
    pub fn check_out(&self) -> Result<(), SlotBusy> {
        let mut state = self.lock();
        match *state {
            State::Empty => {
                *state = State::CheckedOut;
                Ok(())
            }
            _ => Err(SlotBusy),
        }
    }

    /// Releases a reservation whose transaction could not be begun.
    pub fn cancel_check_out(&self) {
        let mut state = self.lock();
        if matches!(*state, State::CheckedOut) {
            *state = State::Empty;
        }
    }

    /// Gives the transaction back. Returns it when the slot is already closed, so the caller
    /// drops it outside the lock.
    #[must_use = "a value handed back must be dropped by the caller"]
    pub fn give_back(&self, value: T) -> Option<T> {
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
    pub fn close(&self) -> Closed<T> {
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
    fn a_cancelled_check_out_leaves_the_slot_unused_and_closed_slots_take_nothing() {
        let slot = TxSlot::<u8>::new();
        slot.check_out().unwrap();
        slot.cancel_check_out();
        assert!(matches!(slot.close(), Closed::Unused));
        assert!(slot.check_out().is_err());
    }

    #[test]
    fn modes_say_whether_they_are_read_only() {
        const { assert!(ReadOnly::READ_ONLY) };
        const { assert!(!ReadWrite::READ_ONLY) };
    }
}
