//! tenant-guard facade (placeholder while the member crates are built).
#![forbid(unsafe_code)]

pub use tenant_guard_core as core;
