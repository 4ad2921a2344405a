//! TLS for the catalog connection, with libpq's `sslmode` and `sslrootcert` semantics, over
//! rustls (the same rustls and aws-lc-rs provider the object stores and kube use).
//!
//! tokio-postgres itself knows only `disable|prefer|require` and no `sslrootcert`, so the DSN is
//! split first ([`split_dsn`]): our keys are taken out, and tokio-postgres is given the
//! negotiation part (`verify-ca` and `verify-full` negotiate like `require`). What is checked of
//! the server's certificate is decided here ([`connector`]):
//!
//! | sslmode | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers it | no |
//! | `require` | always | no; with `sslrootcert`, the chain (as libpq: then `verify-ca`) |
//! | `verify-ca` | always | the chain, against `sslrootcert` |
//! | `verify-full` | always | the chain and the host name |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's trust store;
//! without it, `verify-*` uses `~/.postgresql/root.crt` as libpq does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (use disable, prefer, require, verify-ca or verify-full)".into(),
                );
            }
            other => {
                return Err(format!(
                    "invalid sslmode {other:?} (use disable, prefer, require, verify-ca or verify-full)"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres negotiates.
    fn negotiation(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the system's trust store.
    System,
}

impl std::fmt::Display for RootCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootCert::File(p) => write!(f, "{}", p.display()),
            RootCert::System => f.write_str("the system trust store"),
        }
    }
}

/// The TLS settings of a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// As written (libpq's default, `prefer`, when absent).
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
}

impl TlsSettings {
    /// The mode in force: `require` with a root certificate is `verify-ca`, as in libpq.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// A short description for error messages (no secrets in it).
    pub fn describe(&self) -> String {
        match self.effective_mode() {
            SslMode::VerifyCa | SslMode::VerifyFull => format!(
                "sslmode={}, trusting {}",
                self.mode.as_str(),
                self.roots().map(|r| r.to_string()).unwrap_or_default()
            ),
            _ => format!("sslmode={}", self.mode.as_str()),
        }
    }

    fn roots(&self) -> Option<RootCert> {
        self.root_cert.clone().or_else(|| {
            std::env::var_os("HOME")
                .map(|home| RootCert::File(Path::new(&home).join(".postgresql/root.crt")))
        })
    }
}

/// Keys libpq knows that this build cannot honour: refused by name rather than by
/// tokio-postgres's "unknown option".
const UNSUPPORTED: &[&str] = &[
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
];

/// Takes `sslmode` and `sslrootcert` out of `dsn` (URL or `key=value` form) and returns the DSN
/// for tokio-postgres (its `sslmode` set to what it negotiates) and the TLS settings.
pub fn split_dsn(dsn: &str) -> Result<(String, TlsSettings), String> {
    let (rest, pairs) = if is_url(dsn) {
        split_url(dsn)?
    } else {
        split_key_values(dsn)?
    };
    let mut settings = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => settings.mode = SslMode::parse(&value)?,
            "sslrootcert" if value == "system" => settings.root_cert = Some(RootCert::System),
            "sslrootcert" if value.is_empty() => settings.root_cert = None,
            "sslrootcert" => settings.root_cert = Some(RootCert::File(PathBuf::from(value))),
            other => {
                return Err(format!(
                    "{other} is not supported (client certificates and CRLs are not implemented; TLS is configured with sslmode and sslrootcert)"
                ));
            }
        }
    }
    let negotiation = settings.effective_mode().negotiation();
    let out = if is_url(dsn) {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}sslmode={negotiation}")
    } else if rest.trim().is_empty() {
        format!("sslmode={negotiation}")
    } else {
        format!("{} sslmode={negotiation}", rest.trim_end())
    };
    Ok((out, settings))
}

fn is_url(dsn: &str) -> bool {
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

fn is_ours(key: &str) -> bool {
    key == "sslmode" || key == "sslrootcert" || UNSUPPORTED.contains(&key)
}

/// The URL without our query parameters, and our parameters (percent-decoded).
fn split_url(dsn: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok((dsn.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for item in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        let key = percent_decode(k)?;
        if is_ours(&key) {
            ours.push((key, percent_decode(v)?));
        } else {
            kept.push(item);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, ours))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid percent-encoding in the connection URL".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in the connection URL".to_string())
}

/// libpq's `key = value` form: the text without our pairs, and our pairs (unquoted).
fn split_key_values(dsn: &str) -> Result<(String, Vec<(String, String)>), String> {
    let chars: Vec<(usize, char)> = dsn.char_indices().collect();
    let mut kept = String::new();
    let mut ours = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(dsn.len(), |&(o, _)| o);
    loop {
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i).is_none() {
            break;
        }
        let start = i;
        let mut key = String::new();
        while let Some(c) = at(i).filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            i += 1;
        }
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        if at(i) != Some('=') {
            // Not ours to judge: tokio-postgres reports the syntax error.
            return Ok((dsn.to_string(), Vec::new()));
        }
        i += 1;
        while at(i).is_some_and(char::is_whitespace) {
            i += 1;
        }
        let mut value = String::new();
        if at(i) == Some('\'') {
            i += 1;
            loop {
                match at(i) {
                    None => return Ok((dsn.to_string(), Vec::new())),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        if let Some(c) = at(i + 1) {
                            value.push(c);
                        }
                        i += 2;
                    }
                    Some(c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = at(i).filter(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = at(i + 1) {
                        value.push(n);
                    }
                    i += 2;
                } else {
                    value.push(c);
                    i += 1;
                }
            }
        }
        if is_ours(&key) {
            ours.push((key, value));
        } else {
            if !kept.is_empty() {
                kept.push(' ');
            }
            kept.push_str(&dsn[offset(start)..offset(i)]);
        }
    }
    Ok((kept, ours))
}

/// The connector for `settings`; `None` for `disable`.
pub fn connector(settings: &TlsSettings) -> Result<Option<MakeRustlsConnect>, String> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier: Arc<dyn ServerCertVerifier> = match settings.effective_mode() {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => Arc::new(NoVerification(provider.clone())),
        mode @ (SslMode::VerifyCa | SslMode::VerifyFull) => {
            let source = settings.roots().ok_or_else(|| {
                format!(
                    "sslmode={} needs sslrootcert (a PEM file of CA certificates, or `system`)",
                    mode.as_str()
                )
            })?;
            let roots = root_store(&source)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert {source}: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn root_store(source: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match source {
        RootCert::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {}: cannot read: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    format!("sslrootcert {}: not PEM certificates: {e}", path.display())
                })?;
            for cert in certs {
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert=system: no certificates in the system trust store{}",
                    found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    if store.is_empty() {
        return Err(format!("sslrootcert {source}: no certificates in it"));
    }
    Ok(store)
}

/// `prefer` and `require` (libpq): encryption without checking who the server is.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check except the host name. WebPKI checks the chain before the
/// name, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(dsn: &str) -> (String, TlsSettings) {
        split_dsn(dsn).unwrap()
    }

    #[test]
    fn url_form() {
        let (d, s) = split(
            "postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a",
        );
        assert_eq!(
            d,
            "postgres://u:p@db:5432/x?application_name=a&sslmode=require"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        let (d, s) = split("postgresql://db/x");
        assert_eq!(d, "postgresql://db/x?sslmode=prefer");
        assert_eq!(s.mode, SslMode::Prefer);
        let (d, _) = split("postgres://db/x?sslmode=disable");
        assert_eq!(d, "postgres://db/x?sslmode=disable");
    }

    #[test]
    fn key_value_form() {
        let (d, s) = split(
            "host=db user=u password='a b\\'c' sslmode = verify-ca sslrootcert='/ca dir/ca.pem'",
        );
        assert_eq!(d, "host=db user=u password='a b\\'c' sslmode=require");
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.root_cert, Some(RootCert::File("/ca dir/ca.pem".into())));
        let (d, s) = split("host=db sslrootcert=system sslmode=verify-full");
        assert_eq!(d, "host=db sslmode=require");
        assert_eq!(s.root_cert, Some(RootCert::System));
    }

    #[test]
    fn require_with_a_root_certificate_is_verify_ca() {
        let (_, s) = split("host=db sslmode=require sslrootcert=/ca.pem");
        assert_eq!(s.effective_mode(), SslMode::VerifyCa);
        let (_, s) = split("host=db sslmode=require");
        assert_eq!(s.effective_mode(), SslMode::Require);
    }

    #[test]
    fn bad_and_unsupported_settings_are_named() {
        let e = split_dsn("host=db sslmode=bogus").unwrap_err();
        assert!(e.contains("invalid sslmode \"bogus\""), "{e}");
        let e = split_dsn("postgres://db/x?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("sslcert is not supported"), "{e}");
    }

    #[test]
    fn a_missing_root_file_is_a_clear_error() {
        let (_, s) = split("host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem");
        let e = connector(&s).err().unwrap();
        assert!(
            e.contains("sslrootcert /nonexistent/ca.pem: cannot read"),
            "{e}"
        );
        let (_, s) = split("host=db sslmode=disable");
        assert!(connector(&s).unwrap().is_none());
    }
}
