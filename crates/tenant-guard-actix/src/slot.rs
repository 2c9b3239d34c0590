//! The hand-over point between the transaction extractor and the middleware's response future.
//!
//! The extractor reserves the slot when it begins a transaction and puts the transaction back
//! when it is dropped (at the latest when the handler's future ends). After the inner service
//! answered, the middleware closes the slot and finishes what it finds there: commit on success,
//! rollback otherwise. A transaction given back after the slot was closed (a handler that moved it
//! into a spawned task) is simply dropped, so the guard's drop hygiene rolls it back.
//!
//! actix-web runs a request on one thread, so `Rc<RefCell<_>>` is enough.

use std::cell::RefCell;
use std::rc::Rc;

/// Shared between one request's extensions and its response future.
#[derive(Debug)]
pub(crate) struct Slot<T>(Rc<RefCell<State<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
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
    /// The middleware finished the request; late returns are dropped.
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

/// The slot is not empty: a second transaction extractor in the same request.
#[derive(Debug)]
pub(crate) struct Busy;

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        Self(Rc::new(RefCell::new(State::Empty)))
    }

    /// Reserves the slot for one transaction.
    pub(crate) fn check_out(&self) -> Result<(), Busy> {
        let mut state = self.0.borrow_mut();
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
        let mut state = self.0.borrow_mut();
        if matches!(*state, State::CheckedOut) {
            *state = State::Empty;
        }
    }

    /// Gives the transaction back. Returns it when the slot is already closed, so the caller
    /// drops it outside the borrow.
    pub(crate) fn give_back(&self, value: T) -> Option<T> {
        let mut state = self.0.borrow_mut();
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
        let previous = std::mem::replace(&mut *self.0.borrow_mut(), State::Closed);
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
    fn a_cancelled_check_out_leaves_the_slot_unused_and_closed_slots_take_nothing() {
        let slot = Slot::<u8>::new();
        slot.check_out().unwrap();
        slot.cancel_check_out();
        assert!(matches!(slot.close(), Closed::Unused));
        assert!(slot.check_out().is_err());
    }
}
