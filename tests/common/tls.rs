//! Certificates made at test time: a CA, a server certificate it signed for `localhost`
//! and `127.0.0.1`, and PEM files of them in a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM files in a temporary directory (removed when dropped).
pub struct Certificates {
    dir: tempfile::TempDir,
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
    /// A private key of another certificate.
    pub other_key: PathBuf,
}

impl Certificates {
    /// A new CA and server certificate.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut certificates = Self {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            other_key: dir.path().join("other-key.pem"),
            dir,
        };
        certificates.renew();
        let other = KeyPair::generate().expect("a key");
        std::fs::write(&certificates.other_key, other.serialize_pem()).unwrap();
        certificates
    }

    /// Writes a new CA and a server certificate it signed over the files.
    pub fn renew(&mut self) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(&self.ca, ca.as_ref().pem()).unwrap();
        std::fs::write(&self.cert, cert.pem()).unwrap();
        std::fs::write(&self.key, key.serialize_pem()).unwrap();
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A raw `wss://` WebSocket over rustls, trusting `ca`.
pub type WssSocket =
    tungstenite::WebSocket<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>;

/// Opens a `wss://` WebSocket to `addr` (as `localhost`) at `path`, trusting `ca`; the
/// handshake's error as it is.
pub fn connect_wss(
    addr: std::net::SocketAddr,
    path: &str,
    ca: &Path,
) -> Result<WssSocket, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let config = deltasync::tls::client_config(Some(ca)).expect("the CA loads");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).map_err(tungstenite::Error::Io)?;
    tcp.set_read_timeout(Some(super::WAIT)).unwrap();
    let stream = rustls::StreamOwned::new(tls, tcp);
    let url = format!("wss://localhost:{}{path}", addr.port());
    let request = url.into_client_request()?;
    tungstenite::client::client(request, stream)
        .map(|(socket, _)| socket)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => {
                tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
            }
        })
}
