//! The hand-over point between the transaction extractor and the layer's response future.
//!
//! The extractor checks a transaction out of the slot's bookkeeping when it begins one and puts
//! the transaction back when it is dropped (at the latest when the handler's future ends). After
//! the inner service answered, the layer closes the slot and finishes what it finds there: commit
//! on success, rollback otherwise. A transaction given back after the slot was closed (a handler
//! that moved it into a spawned task) is simply dropped, so the guard's drop hygiene rolls it back.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Shared between one request's extensions and its response future.
#[derive(Debug)]
pub(crate) struct Slot<T>(Arc<Mutex<State<T>>>);

impl<T> Clone for Slot<T> {
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
    /// The response future finished the request; late returns are dropped.
    Closed,
}

/// What the response future found when it closed the slot.
#[derive(Debug)]
pub(crate) enum Closed<T> {
    /// No transaction was used.
    Unused,
    /// A transaction was begun but not given back (it escaped the handler).
    Outstanding,
    /// The transaction to commit or roll back.
    Returned(T),
}

/// The slot is not empty: a second transaction extractor in the same request.
#[derive(Debug)]
pub(crate) struct Busy;

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(State::Empty)))
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state stays consistent whatever panicked while holding the lock.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the slot for one transaction.
    pub(crate) fn check_out(&self) -> Result<(), Busy> {
        let mut state = self.lock();
        match *state {
            State::Empty => {
                *state = State::CheckedOut;
                Ok(())
            }
            _ => Err(Busy),
        }
    }

    /// Releases a reservation whose transaction could not be begun.
    pub(crate) fn cancel_check_out(&self) {
        let mut state = self.lock();
        if matches!(*state, State::CheckedOut) {
            *state = State::Empty;
        }
    }

    /// Gives the transaction back. Returns it when the slot is already closed, so the caller
    /// drops it outside the lock.
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
        let mut state = self.lock();
        match std::mem::replace(&mut *state, State::Closed) {
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
    fn a_returned_value_is_handed_to_close() {
        let slot = Slot::new();
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
        let slot = Slot::new();
        slot.check_out().unwrap();
        assert!(matches!(slot.close(), Closed::Outstanding));
        assert_eq!(slot.give_back(7), Some(7), "late returns are not kept");
    }

    #[test]
    fn a_cancelled_check_out_leaves_the_slot_unused() {
        let slot = Slot::<u8>::new();
        slot.check_out().unwrap();
        slot.cancel_check_out();
        assert!(matches!(slot.close(), Closed::Unused));
        assert!(slot.check_out().is_err(), "closed slots take nothing");
    }
}
