//! TLS for both edges: loading certificates into a rustls configuration, and a nonblocking
//! TLS stream the shard loops drive exactly like a plain socket.
//!
//! [`TlsStream`] implements `Read` and `Write` over a `rustls::ServerConnection` and a mio
//! socket, with the nonblocking contract of a socket: `WouldBlock` means "wait for the next
//! readiness event", never "lost". Invariants:
//! - TLS records that rustls has produced (handshake replies, encrypted replies) are pushed to
//!   the socket at every read, write and flush; `flush` answers `WouldBlock` while some are
//!   still waiting, so the caller knows to wait for writability before it closes.
//! - Plaintext is taken from rustls before more TLS bytes are read from the socket, so the
//!   bounded buffers inside rustls (16 KiB received, 64 KiB to send) never overflow; a full
//!   send buffer is back-pressure (`WouldBlock`), not growth.
//! - A handshake or record error is answered with rustls's alert and reported as
//!   `InvalidData`: the connection is closed like one that sent bad bytes.
//!
//! The crypto provider is *ring*, chosen explicitly so that no process-wide default is
//! needed (and none is ambiguous when other crates enable another one).

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::config::{Security, TlsAuthClients};

/// Builds the server's TLS configuration from `--tls-cert-file`, `--tls-key-file` and, when
/// given, `--tls-ca-cert-file`, advertising `alpn` (empty: none). Errors name the file.
pub fn server_config(security: &Security, alpn: &[&[u8]]) -> io::Result<Arc<ServerConfig>> {
    let (Some(cert_file), Some(key_file)) = (&security.tls_cert_file, &security.tls_key_file)
    else {
        return Err(invalid("TLS needs --tls-cert-file and --tls-key-file"));
    };
    let certs = load_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        invalid(format!(
            "cannot read a private key from {}: {e}",
            key_file.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS setup: {e}")))?;
    let builder = match (&security.tls_ca_cert_file, security.tls_auth_clients) {
        (Some(ca_file), mode) if mode != TlsAuthClients::No => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca_file)? {
                roots.add(cert).map_err(|e| {
                    invalid(format!("bad CA certificate in {}: {e}", ca_file.display()))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == TlsAuthClients::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| invalid(format!("client certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        invalid(format!(
            "{} and {} do not make a usable certificate: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Reads every certificate in a PEM file; none at all is an error.
fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let bytes = fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad certificate in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// A server-side TLS session over a nonblocking mio socket.
#[derive(Debug)]
pub struct TlsStream {
    /// The socket; registered with the shard's poll through [`super::stream::Stream`].
    pub tcp: TcpStream,
    tls: ServerConnection,
}

impl TlsStream {
    /// Starts a TLS session (server side) over `tcp`.
    pub fn new(tcp: TcpStream, tls: ServerConnection) -> Self {
        TlsStream { tcp, tls }
    }

    /// Pushes the TLS records rustls holds to the socket. Returns whether all of them left
    /// (false: the socket would block).
    fn push_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut socket_eof = false;
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0) after the peer's close_notify: a clean end.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if socket_eof {
                        return Ok(0);
                    }
                }
                // UnexpectedEof: the socket closed without close_notify; also an end.
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => socket_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Send the alert rustls queued, if the socket takes it; the error stands.
                let _ = self.push_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake messages (and key updates) answer at once.
            self.push_records()?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        for _ in 0..2 {
            let taken = self.tls.writer().write(buf)?;
            let drained = self.push_records()?;
            if taken > 0 {
                return Ok(taken);
            }
            if !drained {
                break;
            }
        }
        // rustls's send buffer is full and the socket takes no more: back-pressure.
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.push_records()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
}

impl Drop for TlsStream {
    /// Says goodbye with close_notify when the socket takes it at once; never waits.
    fn drop(&mut self) {
        self.tls.send_close_notify();
        let _ = self.push_records();
    }
}
