//! Loading what TLS needs from PEM files: a server's certificate chain and private key, a
//! client's trusted roots. Each failure is a [`TlsError`] that names the file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What went wrong loading TLS files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file cannot be read (missing, unreadable).
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// Which file: `certificate`, `private key` or `CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error reading it.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the kind asked for.
    #[error("the TLS {what} file {} {reason}", path.display())]
    Pem {
        /// Which file: `certificate`, `private key` or `CA`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the key of the certificate.
    #[error(
        "the TLS private key {} does not match the certificate {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate and key for another reason (an unsupported key
    /// type, say).
    #[error("the TLS certificate {} and key {} cannot be used: {reason}", cert.display(), key.display())]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        reason: String,
    },
    /// The system's trusted roots cannot be loaded (a client without a CA file).
    #[error("cannot load the system's trusted certificates: {0}")]
    SystemRoots(String),
}

/// The configuration of a TLS server presenting the certificate chain of `cert` (PEM, the
/// server's certificate first) with the private key of `key` (PEM: PKCS#8, PKCS#1 or
/// SEC1). TLS 1.3 and 1.2, no client certificates.
///
/// # Errors
///
/// A file that cannot be read, holds no certificate or no key, or a key that is not the
/// certificate's: each names the file.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert, "certificate")?;
    let bytes = read(key, "private key")?;
    let private = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        what: "private key",
        path: key.to_owned(),
        reason: pem_reason(&e, "private key"),
    })?;
    let config = ServerConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(cert, key, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| unusable(cert, key, &e))?;
    Ok(Arc::new(config))
}

/// The configuration of a TLS client that trusts the certificates of `ca` (PEM) alone,
/// or, without one, the system's trusted roots.
///
/// # Errors
///
/// A CA file that cannot be read or holds no certificate (naming it); no system roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for certificate in certificates(path, "CA")? {
                roots.add(certificate).map_err(|e| TlsError::Pem {
                    what: "CA",
                    path: path.to_owned(),
                    reason: format!("holds a certificate that cannot be trusted: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if let Some(error) = found.errors.first().filter(|_| found.certs.is_empty()) {
                return Err(TlsError::SystemRoots(error.to_string()));
            }
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::SystemRoots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of the PEM file `path`: at least one.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(pem_reason(&e, "certificate")))?;
    if chain.is_empty() {
        return Err(pem_error("holds no PEM certificate".into()));
    }
    Ok(chain)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Why a PEM file was refused, as the end of a sentence starting with the file.
fn pem_reason(error: &rustls::pki_types::pem::Error, kind: &str) -> String {
    match error {
        rustls::pki_types::pem::Error::NoItemsFound => format!("holds no PEM {kind}"),
        other => format!("is not valid PEM: {other}"),
    }
}

fn unusable(cert: &Path, key: &Path, error: &rustls::Error) -> TlsError {
    match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }
        }
        other => TlsError::Unusable {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason: other.to_string(),
        },
    }
}
