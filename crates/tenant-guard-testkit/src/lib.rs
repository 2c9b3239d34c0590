//! Placeholder: built in a later issue.
#![forbid(unsafe_code)]
