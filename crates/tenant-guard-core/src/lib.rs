//! Core of tenant-guard (placeholder while the crate is built).
#![forbid(unsafe_code)]

#[cfg(all(feature = "aws_lc_rs", feature = "rust_crypto"))]
compile_error!(
    "tenant-guard-core: enable exactly one crypto backend; both `aws_lc_rs` and `rust_crypto` are on. \
     Depend on tenant-guard with `default-features = false, features = [\"rust_crypto\"]` to pick rust_crypto."
);
#[cfg(not(any(feature = "aws_lc_rs", feature = "rust_crypto")))]
compile_error!(
    "tenant-guard-core: enable exactly one crypto backend feature: `aws_lc_rs` (default) or `rust_crypto`."
);
