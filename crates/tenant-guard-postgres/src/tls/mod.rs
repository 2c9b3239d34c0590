//! TLS to the database, as libpq does it: `sslmode` and `sslrootcert` in the connection string.
//!
//! One connector builder serves every connection the crates open from a URL: the
//! [`TenantPool`](crate::TenantPool), the [`PgRateLimiter`](crate::PgRateLimiter) and the audit.
//!
//! ```
//! use tenant_guard_postgres::tls::{DatabaseUrl, SslMode};
//!
//! let url: DatabaseUrl =
//!     "postgres://app@db.example.com/app?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem"
//!         .parse()?;
//! assert_eq!(url.tls().sslmode(), SslMode::VerifyFull);
//! // The rest is a plain tokio-postgres configuration; the TLS parameters were taken out.
//! assert_eq!(url.config().get_dbname(), Some("app"));
//! # Ok::<(), tenant_guard_postgres::tls::TlsError>(())
//! ```
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (the default, as in libpq) | when the server offers it | not checked |
//! | `require` | always (refuses a server without TLS) | not checked, unless `sslrootcert` is given: then as `verify-ca` (libpq's rule) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA **and** issued for the host name connected to |
//!
//! Trusted CAs: the PEM file named by `sslrootcert`, or the operating system's store when it is
//! absent or `system` (`sslrootcert=system` requires `verify-full`, as in libpq 16). Unlike libpq,
//! `~/.postgresql/root.crt` and the `PGSSLMODE`/`PGSSLROOTCERT` variables are not read, and
//! client certificates (`sslcert`, `sslkey`) are refused with an error rather than ignored.
//!
//! For a managed database (Supabase, RDS, Cloud SQL, Neon, Azure) use `sslmode=verify-full` with
//! the provider's CA bundle in `sslrootcert` (or none, when the provider's certificate chains to a
//! public CA): `require` encrypts but does not stop an attacker in the middle.
//!
//! Built on rustls (through `tokio-postgres-rustls`, with the `ring` provider already in the tree)
//! and the OS store (through `rustls-native-certs`).

mod url;
mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::Config;
use tokio_postgres::tls::MakeTlsConnect;

/// The name a certificate is checked against when the connection has no host name (a Unix
/// socket, where PostgreSQL never offers TLS anyway, or `hostaddr` without `host`): in the
/// reserved `.invalid` domain, so `verify-full` can never accept it (as libpq refuses it).
const NO_HOST_NAME: &str = "no-host-name.invalid";

/// The TLS connector every connection built here uses: rustls through `tokio-postgres-rustls`,
/// from [`TlsOptions::connector`]. Cheap to clone.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_postgres_rustls::MakeRustlsConnect,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for TlsConnector
where
    tokio_postgres_rustls::MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        // tokio-postgres passes "" when there is no host name; rustls needs a valid one.
        let domain = if domain.is_empty() {
            NO_HOST_NAME
        } else {
            domain
        };
        MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, domain)
    }
}

/// libpq's `sslmode`, with its meaning (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is given).
    Require,
    /// TLS, and the server's certificate must chain to a trusted CA.
    VerifyCa,
    /// TLS, a trusted CA, and a certificate issued for the host name connected to.
    VerifyFull,
}

impl SslMode {
    /// The name used in connection strings (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            // libpq's `allow` (plaintext first, TLS only if refused) is downgrade-prone: refused.
            other => Err(TlsError::InvalidSslMode {
                value: other.chars().take(32).collect(),
            }),
        }
    }
}

/// Which CAs are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The operating system's store (`sslrootcert` absent or `system`).
    #[default]
    System,
    /// The certificates of a PEM file (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
}

/// Why TLS settings cannot be used. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// `sslmode` has a value other than `disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`.
    #[error(
        "invalid sslmode `{value}` (expected disable, prefer, require, verify-ca or verify-full)"
    )]
    InvalidSslMode {
        /// The value (at most 32 characters of it).
        value: String,
    },
    /// A libpq TLS parameter this crate does not implement (`sslcert`, `sslkey`, `sslcrl`, …).
    #[error("the connection parameter `{parameter}` is not supported")]
    Unsupported {
        /// The parameter's name.
        parameter: String,
    },
    /// `sslrootcert=system` with a mode that does not check host names (libpq refuses it too).
    #[error("sslrootcert=system requires sslmode=verify-full (got {mode})")]
    SystemRootsNeedVerifyFull {
        /// The mode given.
        mode: SslMode,
    },
    /// The rest of the connection string is invalid (tokio-postgres's error, which never
    /// repeats the password).
    #[error("invalid database URL: {source}")]
    InvalidUrl {
        /// The parser's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The `sslrootcert` file could not be read.
    #[error("could not read sslrootcert {}: {source}", path.display())]
    ReadRootCert {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The `sslrootcert` file holds no usable certificate.
    #[error("sslrootcert {} holds no usable PEM certificate{}", path.display(), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    InvalidRootCert {
        /// The file.
        path: PathBuf,
        /// What was wrong, when known.
        reason: Option<String>,
    },
    /// The operating system's store holds no certificate (install `ca-certificates`, or name a
    /// CA file in `sslrootcert`).
    #[error(
        "no trusted CA certificates in the system store; install the system's CA bundle or set sslrootcert"
    )]
    NoSystemRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS half of a connection string: the mode and the trusted CAs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    mode: SslMode,
    roots: RootCerts,
}

impl TlsOptions {
    /// Options for `mode`, trusting the system's CAs.
    pub fn new(mode: SslMode) -> Self {
        Self {
            mode,
            roots: RootCerts::System,
        }
    }

    /// The options a plain tokio-postgres [`Config`] implies: its `ssl_mode` (`disable`,
    /// `prefer` or `require`), nothing verified.
    pub fn from_config(config: &Config) -> Self {
        Self::new(match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        })
    }

    /// Trusts the certificates of the PEM file at `path` instead of the system's.
    #[must_use]
    pub fn root_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = RootCerts::File(path.into());
        self
    }

    /// The mode.
    pub fn sslmode(&self) -> SslMode {
        self.mode
    }

    /// The trusted CAs.
    pub fn root_certs(&self) -> &RootCerts {
        &self.roots
    }

    /// Whether the server's certificate is checked against the trusted CAs (`verify-ca`,
    /// `verify-full`, or `require` with a root file).
    pub fn verifies_certificate(&self) -> bool {
        self.effective_mode().verifies()
    }

    /// libpq's rule: `require` with an explicit root file behaves as `verify-ca`.
    fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.roots) {
            (SslMode::Require, RootCerts::File(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// Sets `config`'s own `ssl_mode` to what this mode needs (`require` for every mode that
    /// insists on TLS), so a server without TLS is refused.
    pub fn apply(&self, config: &mut Config) {
        config.ssl_mode(match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
    }

    /// The connector: reads the root file (or the system store) now, so a missing or broken
    /// file fails here and not at the first connection.
    pub fn connector(&self) -> Result<TlsConnector, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let mode = self.effective_mode();
        let config = if mode.verifies() {
            let roots = Arc::new(self.load_roots()?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
            if mode == SslMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verify::CaOnly::new(webpki)))
                    .with_no_client_auth()
            }
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::Unverified::new(provider)))
                .with_no_client_auth()
        };
        Ok(TlsConnector {
            inner: tokio_postgres_rustls::MakeRustlsConnect::new(config),
        })
    }

    fn load_roots(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            RootCerts::File(path) => {
                let pem = std::fs::read(path).map_err(|source| TlsError::ReadRootCert {
                    path: path.clone(),
                    source,
                })?;
                let invalid = |reason: Option<String>| TlsError::InvalidRootCert {
                    path: path.clone(),
                    reason,
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<_, _>>()
                    .map_err(|e| invalid(Some(e.to_string())))?;
                let (added, _ignored) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(invalid(None));
                }
            }
            RootCerts::System => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::debug!(%error, "skipping part of the system CA store");
                }
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoSystemRoots);
                }
            }
        }
        Ok(store)
    }
}

/// A connection string parsed the libpq way: a tokio-postgres [`Config`] plus the
/// [`TlsOptions`] its `sslmode`/`sslrootcert` asked for. Accepts URLs
/// (`postgres://user:password@host:port/db?sslmode=verify-full`) and `key=value` strings.
///
/// Its `Debug` and its errors never show the password.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    config: Config,
    tls: TlsOptions,
}

impl DatabaseUrl {
    /// The connection configuration, its `ssl_mode` already set from the TLS options.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The TLS options.
    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// Both halves.
    pub fn into_parts(self) -> (Config, TlsOptions) {
        (self.config, self.tls)
    }
}

impl FromStr for DatabaseUrl {
    type Err = TlsError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let split = url::split(url)?;
        let mut config: Config = split
            .rest
            .parse()
            .map_err(|source| TlsError::InvalidUrl { source })?;
        let mode = match split.sslmode.as_deref() {
            Some(mode) => mode.parse()?,
            None => SslMode::Prefer,
        };
        let roots = match split.sslrootcert.as_deref() {
            None | Some("") => RootCerts::System,
            Some("system") => {
                if mode != SslMode::VerifyFull {
                    return Err(TlsError::SystemRootsNeedVerifyFull { mode });
                }
                RootCerts::System
            }
            Some(path) => RootCerts::File(Path::new(path).to_owned()),
        };
        let tls = TlsOptions { mode, roots };
        tls.apply(&mut config);
        Ok(Self { config, tls })
    }
}

/// The connector for cancel requests (a pid and a cancel key, nothing else): TLS when the
/// cancelled connection's `ssl_mode` asks for it, the certificate unchecked (the worst a peer in
/// the middle can do with the key is cancel that one statement, which it could do by dropping
/// the connection). Built once.
pub(crate) fn cancel_connector() -> Option<TlsConnector> {
    static CONNECTOR: std::sync::OnceLock<Option<TlsConnector>> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| TlsOptions::new(SslMode::Require).connector().ok())
        .clone()
}

/// A URL or TLS option that cannot be used, as [`crate::GuardError::Config`] (never repeating the URL:
/// tokio-postgres's parse errors do not, and ours name only the TLS parameter).
pub(crate) fn config_error(error: TlsError) -> crate::GuardError {
    match error {
        TlsError::InvalidUrl { .. } => {
            crate::GuardError::Config("the database URL is not a valid PostgreSQL URL".into())
        }
        other => crate::GuardError::Config(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<DatabaseUrl, TlsError> {
        url.parse()
    }

    #[test]
    fn modes_map_to_the_driver_setting() {
        use tokio_postgres::config::SslMode as Driver;
        for (mode, driver) in [
            ("disable", Driver::Disable),
            ("prefer", Driver::Prefer),
            ("require", Driver::Require),
            ("verify-ca", Driver::Require),
            ("verify-full", Driver::Require),
        ] {
            let url = parse(&format!("postgres://h/db?sslmode={mode}")).unwrap();
            assert_eq!(url.tls().sslmode().as_str(), mode);
            assert_eq!(url.config().get_ssl_mode(), driver, "{mode}");
        }
        let default = parse("postgres://h/db").unwrap();
        assert_eq!(default.tls().sslmode(), SslMode::Prefer);
        assert_eq!(default.tls().root_certs(), &RootCerts::System);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(
            parse("postgres://h/db?sslmode=allow"),
            Err(TlsError::InvalidSslMode { .. })
        ));
        assert!(matches!(
            parse("postgres://h/db?sslmode=require&sslrootcert=system"),
            Err(TlsError::SystemRootsNeedVerifyFull { .. })
        ));
        let error = parse("postgres://u:hunter2@h/db?port=x").unwrap_err();
        assert!(matches!(error, TlsError::InvalidUrl { .. }));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn require_with_a_root_file_verifies_the_ca() {
        let url = parse("host=h sslmode=require sslrootcert=/ca.pem").unwrap();
        assert!(url.tls().verifies_certificate());
        assert!(
            !parse("host=h sslmode=require")
                .unwrap()
                .tls()
                .verifies_certificate()
        );
        assert!(
            parse("host=h sslmode=verify-full")
                .unwrap()
                .tls()
                .verifies_certificate()
        );
    }

    #[test]
    fn a_missing_or_empty_root_file_fails_when_building_the_connector() {
        let missing = parse("host=h sslmode=verify-full sslrootcert=/nonexistent/ca.pem").unwrap();
        assert!(matches!(
            missing.tls().connector(),
            Err(TlsError::ReadRootCert { .. })
        ));
        let dir = std::env::temp_dir().join(format!("tg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let options = TlsOptions::new(SslMode::VerifyCa).root_cert_file(&empty);
        assert!(matches!(
            options.connector(),
            Err(TlsError::InvalidRootCert { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unverified_modes_build_without_roots() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(TlsOptions::new(mode).connector().is_ok(), "{mode}");
        }
    }
}
