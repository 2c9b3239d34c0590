//! The hand-over point between the transaction extractor and the middleware's response future:
//! [`tenant_guard_postgres::handoff`], shared by both adapters so they end a request's transaction
//! by the same rules.

pub(crate) use tenant_guard_postgres::handoff::{Closed, TxSlot as Slot};
