//! Shared by `tests/hostile_input.rs`, `tests/faults.rs` and `tests/secrets.rs`: the same app
//! built with both adapters, the table of hostile requests, and the fault scenarios, so the
//! secrets test scans the log output of exactly what the other two run.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

pub mod apps;
pub mod faults;
pub mod table;
pub mod tokens;
