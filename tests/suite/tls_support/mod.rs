//! TLS test fixtures: a throwaway CA with a server and a client certificate (made with rcgen
//! in a temporary directory), and TLS clients for RESP and HTTP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A CA, a server certificate for `localhost` and `127.0.0.1`, and a client certificate, as
/// PEM files in a directory removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "token-server test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = params.signed_by(&server_key, &ca).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "token-server test client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = params.signed_by(&client_key, &ca).unwrap();

        let dir = std::env::temp_dir().join(format!(
            "token-server-pki-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            ca_pem: ca.pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
            dir,
        };
        std::fs::write(&pki.ca_file, &pki.ca_pem).unwrap();
        std::fs::write(&pki.cert_file, server_cert.pem()).unwrap();
        std::fs::write(&pki.key_file, server_key.serialize_pem()).unwrap();
        pki
    }

    /// `--tls-cert-file` and `--tls-key-file`.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.cert_file.display().to_string(),
            "--tls-key-file".into(),
            self.key_file.display().to_string(),
        ]
    }

    /// A `redis` client for `rediss://addr`, trusting this CA, with or without the client
    /// certificate.
    pub fn redis_client(&self, addr: SocketAddr, resp3: bool, client_cert: bool) -> redis::Client {
        let url = if resp3 {
            format!("rediss://{addr}/?protocol=resp3")
        } else {
            format!("rediss://{addr}/")
        };
        let client_tls = client_cert.then(|| redis::ClientTlsConfig {
            client_cert: self.client_cert_pem.clone().into_bytes(),
            client_key: self.client_key_pem.clone().into_bytes(),
        });
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls,
                root_cert: Some(self.ca_pem.clone().into_bytes()),
            },
        )
        .expect("TLS client")
    }

    /// rustls client settings trusting this CA, with or without the client certificate.
    pub fn client_config(&self, client_cert: bool, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if client_cert {
            let certs = CertificateDer::pem_slice_iter(self.client_cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(self.client_key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// A blocking TLS connection to `addr` (server name `localhost`).
    pub fn connect(
        &self,
        addr: SocketAddr,
        client_cert: bool,
        alpn: &[&[u8]],
    ) -> StreamOwned<ClientConnection, TcpStream> {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(self.client_config(client_cert, alpn), name).unwrap();
        StreamOwned::new(conn, tcp)
    }

    /// Sends one HTTP/1.1 GET over TLS with `Connection: close` and returns the whole
    /// response text.
    pub fn https_get(&self, addr: SocketAddr, path: &str, headers: &[&str]) -> String {
        let mut tls = self.connect(addr, false, &[b"http/1.1"]);
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        match tls.read_to_end(&mut response) {
            Ok(_) => {}
            // Some servers close without close_notify after Connection: close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => panic!(
                "https read failed: {e}; got {:?}",
                String::from_utf8_lossy(&response)
            ),
        }
        String::from_utf8(response).expect("UTF-8 response")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address a server printed after `marker` (`listening tls=`, `listening https=`).
pub fn logged_addr(server: &crate::common::Server, marker: &str) -> SocketAddr {
    let text = server.log_text();
    text.lines()
        .find_map(|line| {
            let start = line.find(marker)? + marker.len();
            let rest = &line[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
        .unwrap_or_else(|| panic!("the server did not print `{marker}`\n{text}"))
}
