//! Reading PEM: certificates, private keys and CRLs, from files or bytes.
//!
//! Every PEM file Keyfort reads (its TLS identity, trust bundles, signing keys, the sandbox's
//! files) goes through here, so an operator gets the same error for the same mistake
//! wherever it is made, and it names the file.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// What is wrong with PEM data.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("cannot be read ({0})")]
    Unreadable(#[source] std::io::Error),
    #[error("is not valid PEM ({0})")]
    Malformed(#[source] pem::Error),
    #[error("holds no PEM CERTIFICATE block")]
    NoCertificate,
    #[error("holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)")]
    NoPrivateKey,
    #[error("holds no PEM X509 CRL block")]
    NoCrl,
}

/// A [`PemError`] in a named file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct PemFileError {
    pub path: PathBuf,
    #[source]
    pub error: PemError,
}

/// Every certificate in `pem`, in order; at least one. Other PEM blocks are skipped.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certificates =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(PemError::Malformed)?;
    // A file meant to hold certificates that holds none is a mistake (a key file given as a
    // CA bundle, say), and trusting nothing is not what the operator asked for.
    if certificates.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(certificates)
}

/// The first private key in `pem`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => PemError::NoPrivateKey,
        other => PemError::Malformed(other),
    })
}

/// The first CRL in `pem`.
pub fn crl_from_pem(pem: &[u8]) -> Result<CertificateRevocationListDer<'static>, PemError> {
    CertificateRevocationListDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => PemError::NoCrl,
        other => PemError::Malformed(other),
    })
}

/// Every certificate in the PEM file at `path` (a chain, end-entity first, or a bundle).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    read(path).and_then(|pem| certificates_from_pem(&pem)).map_err(|error| in_file(path, error))
}

/// The first certificate in the PEM file at `path`: the end-entity certificate of a chain.
pub fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, PemFileError> {
    let mut certificates = read_certificates(path)?;
    // Never empty: `certificates_from_pem` refuses a file without a certificate.
    Ok(certificates.swap_remove(0))
}

/// The first private key in the PEM file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemFileError> {
    read(path).and_then(|pem| private_key_from_pem(&pem)).map_err(|error| in_file(path, error))
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(PemError::Unreadable)
}

fn in_file(path: &Path, error: PemError) -> PemFileError {
    PemFileError { path: path.to_path_buf(), error }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate_pem(name: &str) -> (String, Vec<u8>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec(), key.serialize_pem())
    }

    #[test]
    fn a_bundle_reads_in_order_and_other_blocks_are_skipped() {
        let (first, first_der, key) = certificate_pem("a.example");
        let (second, second_der, _) = certificate_pem("b.example");
        let bundle = format!("{key}{first}some comment\n{second}");
        let certificates = certificates_from_pem(bundle.as_bytes()).unwrap();
        assert_eq!(certificates.len(), 2);
        assert_eq!(certificates[0].as_ref(), &first_der[..]);
        assert_eq!(certificates[1].as_ref(), &second_der[..]);
        assert!(matches!(private_key_from_pem(bundle.as_bytes()), Ok(PrivateKeyDer::Pkcs8(_))));
    }

    #[test]
    fn missing_blocks_and_broken_pem_are_errors() {
        let (cert, _, key) = certificate_pem("a.example");
        assert!(matches!(certificates_from_pem(key.as_bytes()), Err(PemError::NoCertificate)));
        assert!(matches!(certificates_from_pem(b""), Err(PemError::NoCertificate)));
        assert!(matches!(private_key_from_pem(cert.as_bytes()), Err(PemError::NoPrivateKey)));
        assert!(matches!(crl_from_pem(cert.as_bytes()), Err(PemError::NoCrl)));
        let unterminated = &cert[..cert.len() / 2];
        assert!(matches!(certificates_from_pem(unterminated.as_bytes()), Err(PemError::Malformed(_))));
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(certificates_from_pem(bad_base64.as_bytes()), Err(PemError::Malformed(_))));
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let message = read_certificates(&missing).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}: cannot be read", missing.display())), "{message}");

        let (cert, der, key) = certificate_pem("a.example");
        let cert_path = dir.path().join("cert.pem");
        std::fs::write(&cert_path, &cert).unwrap();
        assert_eq!(read_certificate(&cert_path).unwrap().as_ref(), &der[..]);
        let message = read_private_key(&cert_path).unwrap_err().to_string();
        assert!(message.contains("cert.pem: holds no PEM private key"), "{message}");

        let key_path = dir.path().join("key.pem");
        std::fs::write(&key_path, &key).unwrap();
        assert!(read_private_key(&key_path).is_ok());
        let message = read_certificates(&key_path).unwrap_err().to_string();
        assert!(message.contains("key.pem: holds no PEM CERTIFICATE block"), "{message}");
    }
}
