//! The loaders' messages and a [`TlsStream`] pair over non-blocking loopback sockets.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};

use super::*;

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// A connected pair of non-blocking loopback sockets.
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for socket in [&client, &server] {
        socket.set_nonblocking(true).unwrap();
    }
    (client, server)
}

/// Reads `stream` until it gives `n` bytes, within a bounded number of tries.
fn read_exactly<S: Read>(stream: &mut S, n: usize, other: &mut dyn FnMut()) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    for _ in 0..2000 {
        other();
        match stream.read(&mut buf) {
            Ok(0) => panic!("end of stream after {got:?}"),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read failed: {e}"),
        }
        if got.len() >= n {
            return got;
        }
    }
    panic!("only {got:?} came");
}

#[test]
fn a_ca_file_without_a_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = client_config(Some(&empty)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the TLS CA file {} holds no PEM certificate",
            empty.display()
        )
    );
}

#[test]
fn a_client_and_a_server_stream_exchange_bytes_over_non_blocking_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let server_config = server_config(&cert, &key).unwrap();
    let client_config = client_config(Some(&cert)).unwrap();
    let (client_socket, server_socket) = socket_pair();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = TlsStream::client(client_config, name, client_socket).unwrap();
    let mut server = TlsStream::server(server_config, server_socket).unwrap();
    // Written during the handshake: held by rustls until it ends.
    assert_eq!(client.write(b"hello").unwrap(), 5);
    assert!(client.is_handshaking());
    let got = read_exactly(&mut server, 5, &mut || {
        let mut scratch = [0u8; 16];
        // The client's side of the handshake happens in its reads.
        let _ = client.read(&mut scratch);
    });
    assert_eq!(got, b"hello");
    assert!(!server.is_handshaking());
    assert_eq!(server.write(b"world").unwrap(), 5);
    assert!(server.write_held().unwrap());
    assert_eq!(read_exactly(&mut client, 5, &mut || {}), b"world");
}

#[test]
fn a_peer_that_does_not_speak_tls_gets_an_alert_and_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (mut plain, server_socket) = socket_pair();
    let mut server = TlsStream::server(server_config(&cert, &key).unwrap(), server_socket).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    let error = (0..2000)
        .find_map(|_| match server.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
                None
            }
            other => Some(other),
        })
        .expect("an answer")
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert_eq!(
        error.to_string(),
        "received corrupt message of type InvalidContentType"
    );
    // The alert: fatal (2), decode_error (50).
    let alert = read_exactly(&mut plain, 7, &mut || {});
    assert_eq!(alert, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
}
