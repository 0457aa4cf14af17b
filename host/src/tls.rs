//! The service identity and TLS 1.3 configuration.
//!
//! At first start the node creates a **service certificate** (a self-signed CA, ECDSA P-256,
//! `DIR/service-cert.pem`) that clients pin with `--ca`, and keeps its key in
//! `DIR/node/service-key.pem`. At every start it issues itself a fresh TLS certificate, signed by
//! the service key, for `localhost`, `127.0.0.1`, `::1` and the listen host. Clients therefore
//! pin one certificate that survives restarts and node certificate renewal.
//!
//! Outside a TEE the service key sits on disk in clear (owner-only permissions): fine for a
//! sandbox, not for production, where the key must be generated in and sealed to the TEE.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// File access failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// A stored key or certificate is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// The service certificate and this node's TLS certificate.
pub struct ServiceIdentity {
    /// PEM of the service certificate (what clients pin).
    pub service_cert_pem: String,
    node_chain: Vec<CertificateDer<'static>>,
    node_key: PrivateKeyDer<'static>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.display().to_string(), source }
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// The parameters of the service CA; deterministic, so that the issuer can be rebuilt from the
/// stored key alone.
fn service_ca_params() -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "CGS service");
    dn.push(DnType::OrganizationName, "Clean Room Governance Service");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

impl ServiceIdentity {
    /// Load the service identity from `dir` (creating it at first start) and issue a node
    /// certificate valid for `hosts` plus the loopback names.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Self, TlsError> {
        let cert_path = dir.join("service-cert.pem");
        let key_path = dir.join("node").join("service-key.pem");
        std::fs::create_dir_all(dir.join("node")).map_err(io(dir))?;
        let (ca_key, service_cert_pem) = if crate::fsutil::private_exists(&key_path) && cert_path.exists() {
            let key_pem = crate::fsutil::read_private(&key_path).map_err(io(&key_path))?;
            let key_pem = String::from_utf8(key_pem)
                .map_err(|_| TlsError::Invalid(format!("{}: not a PEM file", key_path.display())))?;
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|e| TlsError::Invalid(format!("{}: not a usable private key: {e}", key_path.display())))?;
            let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            (key, cert)
        } else {
            let key = KeyPair::generate().map_err(gen_err)?;
            let mut params = service_ca_params()?;
            let now = time_now();
            params.not_before = now - time::Duration::hours(1);
            params.not_after = now + time::Duration::days(10 * 365);
            let cert = params.self_signed(&key).map_err(gen_err)?;
            crate::fsutil::write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
            crate::fsutil::write_atomic(&cert_path, cert.pem().as_bytes()).map_err(io(&cert_path))?;
            (key, cert.pem())
        };

        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for h in hosts {
            if !h.is_empty() && !names.contains(h) && h != "0.0.0.0" && h != "::" {
                names.push(h.clone());
            }
        }
        let mut leaf = CertificateParams::new(names).map_err(gen_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "CGS node");
        leaf.distinguished_name = dn;
        let now = time_now();
        leaf.not_before = now - time::Duration::hours(1);
        leaf.not_after = now + time::Duration::days(365);
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(gen_err)?;
        let issuer = Issuer::new(service_ca_params()?, &ca_key);
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(gen_err)?;

        let service_der = rustls_pemfile::certs(&mut service_cert_pem.as_bytes())
            .next()
            .and_then(|c| c.ok())
            .ok_or_else(|| TlsError::Invalid(format!("{} holds no certificate", cert_path.display())))?;
        Ok(Self {
            service_cert_pem,
            node_chain: vec![leaf_cert.der().clone(), service_der],
            node_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        })
    }

    /// A TLS 1.3-only server configuration (ALPN h2 and http/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.node_chain.clone(), self.node_key.clone_key())
            .map_err(|e| TlsError::Invalid(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
