//! TLS test certificates: a CA and a leaf it signed for `localhost` and `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA and a certificate it signed for `localhost` and `127.0.0.1`, as PEM files in a temporary
/// directory (removed on drop), and a rustls server configuration serving the leaf.
pub struct TestTls {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestTls {
    /// A fresh CA (named `common_name`) and leaf.
    pub fn new(common_name: &str) -> TestTls {
        crate::install_crypto();
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_file, cert_file, key_file, server) =
            generate(dir.path(), common_name).expect("test certificates");
        TestTls {
            dir,
            ca_file,
            cert_file,
            key_file,
            server: Arc::new(server),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca_file).expect("read test ca")
    }

    /// The CA as a reqwest root certificate.
    pub fn ca_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&self.ca_pem()).expect("test ca pem")
    }

    /// A client trusting only the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([self.ca_certificate()])
            .build()
            .expect("client trusting the test ca")
    }
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir`: a CA named `common_name` and a certificate
/// it signed for `localhost` and `127.0.0.1` (for tools that want the files only, e.g. the
/// benchmark). Returns the three paths and a server configuration for the leaf.
pub fn generate(
    dir: &Path,
    common_name: &str,
) -> Result<
    (PathBuf, PathBuf, PathBuf, rustls::ServerConfig),
    Box<dyn std::error::Error + Send + Sync>,
> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?
        .signed_by(&leaf_key, &issuer)?;
    let (ca_file, cert_file, key_file) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_file, ca_cert.pem())?;
    std::fs::write(&cert_file, leaf.pem())?;
    std::fs::write(&key_file, leaf_key.serialize_pem())?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())?,
    )?;
    Ok((ca_file, cert_file, key_file, server))
}
