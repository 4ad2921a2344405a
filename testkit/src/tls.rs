//! A throwaway certificate authority made with the `openssl` CLI: a CA and server certificates
//! it signs, as PEM files in a temp dir (removed on Drop).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::process::run_checked;

/// A test CA: `ca.pem` (certificate) and its key, in a temp dir.
pub struct TestCa {
    dir: TempDir,
    name: String,
}

/// A server certificate and key signed by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new self-signed CA named `name` (the certificate's CN).
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::Builder::new()
            .prefix("bronze-ca-")
            .tempdir()
            .unwrap_or_else(|e| panic!("bronze-testkit: temp dir for a test CA: {e}"));
        let ca = TestCa {
            dir,
            name: name.to_string(),
        };
        run_checked(
            "openssl req (test CA)",
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-days", "2", "-subj"])
                .arg(format!("/CN={name}"))
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .arg("-keyout")
                .arg(ca.path("ca.key"))
                .arg("-out")
                .arg(ca.cert()),
        );
        ca
    }

    /// The CA certificate (PEM): what a client trusts (`sslrootcert`).
    pub fn cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A server certificate for `dns_names` and `ips` (subject alternative names).
    pub fn server_cert(&self, dns_names: &[&str], ips: &[&str]) -> ServerCert {
        let stem = format!("server-{}", dns_names.first().copied().unwrap_or("ip"));
        let key = self.path(&format!("{stem}.key"));
        let csr = self.path(&format!("{stem}.csr"));
        let cert = self.path(&format!("{stem}.pem"));
        let ext = self.path(&format!("{stem}.ext"));
        let san: Vec<String> = dns_names
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(ips.iter().map(|i| format!("IP:{i}")))
            .collect();
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                san.join(",")
            ),
        )
        .unwrap_or_else(|e| panic!("bronze-testkit: write {}: {e}", ext.display()));
        run_checked(
            "openssl req (server key)",
            Command::new("openssl")
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-subj"])
                .arg(format!(
                    "/CN={}",
                    dns_names.first().or(ips.first()).unwrap_or(&"server")
                ))
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        run_checked(
            "openssl x509 (sign server certificate)",
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(self.cert())
                .arg("-CAkey")
                .arg(self.path("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        ServerCert { cert, key }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
