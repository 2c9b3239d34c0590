//! Opt-in TLS for a throwaway server: a CA and a server certificate generated in the test
//! (rcgen, no network, no `openssl` binary), and a server started with `ssl = on`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::TestPostgres;
use super::local::LocalServer;
use super::user::ServerUser;
use crate::error::TestkitError;

/// A certificate authority made for one test, a server certificate it signed, and the CA's
/// certificate written to a PEM file (for `sslrootcert`), removed on drop.
///
/// ```no_run
/// use tenant_guard_testkit::{TestCertificates, TestPostgres};
///
/// let certs = TestCertificates::generate(&["localhost"])?;
/// let server = TestPostgres::start_local_tls(&certs)?;
/// let port = server.config().get_ports()[0];
/// let url = format!(
///     "host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
///      sslmode=verify-full sslrootcert={}",
///     certs.ca_file().display()
/// );
/// # let _ = url;
/// # Ok::<(), tenant_guard_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    dir: PathBuf,
    ca_file: PathBuf,
}

fn generation_error(what: &str, error: rcgen::Error) -> TestkitError {
    TestkitError::io(
        format!("generating the test {what}"),
        io::Error::other(error.to_string()),
    )
}

impl TestCertificates {
    /// A fresh CA (ECDSA P-256) and a server certificate for `hosts` (DNS names or IP
    /// addresses), valid from now for a day or so (rcgen's defaults cover any test run).
    pub fn generate(hosts: &[&str]) -> Result<Self, TestkitError> {
        let ca_key = KeyPair::generate().map_err(|e| generation_error("CA key", e))?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let dir = unique_dir()?;
        // A name of its own, so two CAs of one test are told apart by name (as real ones are).
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!(
                "tenant-guard test CA {}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
        );
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| generation_error("CA certificate", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(|e| generation_error("server key", e))?;
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let mut params = CertificateParams::new(names)
            .map_err(|e| generation_error("server certificate's names", e))?;
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .map_err(|e| generation_error("server certificate", e))?;

        let ca_file = dir.join("ca.pem");
        let ca_pem = ca_cert.pem();
        fs::write(&ca_file, &ca_pem)
            .map_err(|e| TestkitError::io(format!("writing {}", ca_file.display()), e))?;
        Ok(Self {
            ca_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            dir,
            ca_file,
        })
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A PEM file holding the CA's certificate (for `sslrootcert`); removed on drop.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The server's certificate, PEM.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// Writes the server's certificate and key into `data_dir` (the key private to the server's
    /// user, as PostgreSQL requires) and turns TLS on in its `postgresql.conf`.
    fn install(&self, data_dir: &Path, user: Option<&ServerUser>) -> Result<(), TestkitError> {
        let cert = data_dir.join("server.crt");
        let key = data_dir.join("server.key");
        for (path, contents, mode) in [
            (&cert, &self.server_cert_pem, 0o644),
            (&key, &self.server_key_pem, 0o600),
        ] {
            let context = || format!("writing {}", path.display());
            fs::write(path, contents).map_err(|e| TestkitError::io(context(), e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| TestkitError::io(context(), e))?;
            if let Some(user) = user {
                std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(|e| TestkitError::io(context(), e))?;
            }
        }
        let conf = data_dir.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)
            .map_err(|e| TestkitError::io(format!("reading {}", conf.display()), e))?;
        text.push_str("\n# tenant-guard-testkit: TLS\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        fs::write(&conf, text)
            .map_err(|e| TestkitError::io(format!("writing {}", conf.display()), e))
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn unique_dir() -> Result<PathBuf, TestkitError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tenant-guard-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)
        .map_err(|e| TestkitError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

impl TestPostgres {
    /// Like [`start_local`](Self::start_local), with TLS on: the server presents `certs`'
    /// server certificate (`ssl = on`; clients may still connect without TLS, as `pg_hba.conf`
    /// allows both). Never the [`shared`](Self::shared) server, which stays without TLS.
    ///
    /// ```no_run
    /// use tenant_guard_testkit::{TestCertificates, TestPostgres};
    ///
    /// let certs = TestCertificates::generate(&["localhost"])?;
    /// let server = TestPostgres::start_local_tls(&certs)?;
    /// let db = server.create_database()?;
    /// # let _ = db;
    /// # Ok::<(), tenant_guard_testkit::TestkitError>(())
    /// ```
    pub fn start_local_tls(certs: &TestCertificates) -> Result<TestPostgres, TestkitError> {
        Self::from_local(LocalServer::start_with(&|data_dir, user| {
            certs.install(data_dir, user)
        })?)
    }
}
