//! The keys and certificates a benchmark TPP uses, read from a Keyfort sandbox directory
//! (`keyfort sandbox init`, `keyfort sandbox add-software`): the directory's SSA signing
//! key, and one software's signing key, software statement and transport certificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use keyfort_core::jose::{SigningAlg, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Manifest {
    directory_kid: String,
    software: Vec<ManifestSoftware>,
}

#[derive(Deserialize)]
struct ManifestSoftware {
    software_id: String,
    signing_kid: String,
}

/// What the TPP of the benchmark holds, and the directory key to issue it fresh SSAs.
pub struct Material {
    pub software_id: String,
    /// The directory's SSA signing key (PS256), as the sandbox keystore publishes it.
    pub directory_key: SigningKey,
    /// The software's request and client-assertion signing key (PS256).
    pub software_key: SigningKey,
    /// The claims of the sandbox's SSA; fresh SSAs are these with a new `iat` and `jti`.
    pub ssa_claims: Value,
    pub transport_cert: PathBuf,
    pub transport_key: PathBuf,
    /// The transport certificate's subject DN, for `tls_client_auth` registrations.
    pub subject_dn: String,
}

fn pkcs8_key(path: &Path, kid: &str) -> anyhow::Result<SigningKey> {
    let key = PrivateKeyDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))?;
    let PrivateKeyDer::Pkcs8(der) = key else {
        anyhow::bail!("{}: expected a PKCS#8 \"PRIVATE KEY\"", path.display());
    };
    SigningKey::from_pkcs8_der(SigningAlg::PS256, kid, der.secret_pkcs8_der())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The claims of a compact JWS, unverified (the TPP reads its own SSA).
pub fn jwt_claims(jwt: &str) -> anyhow::Result<Value> {
    let payload = jwt.trim().split('.').nth(1).context("not a compact JWS")?;
    let bytes = keyfort_core::jose::b64url_decode(payload).context("the payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the payload is not JSON")
}

impl Material {
    /// Reads `software_id` (or the sandbox's first software) from the sandbox at `dir`.
    pub fn load(dir: &Path, software_id: Option<&str>) -> anyhow::Result<Self> {
        let manifest_path = dir.join("sandbox.json");
        let manifest: Manifest = serde_json::from_str(
            &std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?,
        )
        .with_context(|| format!("{} is not a sandbox manifest", manifest_path.display()))?;
        let software = match software_id {
            Some(id) => manifest.software.iter().find(|s| s.software_id == id),
            None => manifest.software.first(),
        }
        .with_context(|| format!("no software {} in the sandbox {}", software_id.unwrap_or(""), dir.display()))?;
        let software_dir = dir.join("software").join(&software.software_id);
        let ssa_path = software_dir.join("ssa.jwt");
        let ssa = std::fs::read_to_string(&ssa_path).with_context(|| format!("reading {}", ssa_path.display()))?;
        let transport_cert = software_dir.join("transport.pem");
        Ok(Self {
            software_id: software.software_id.clone(),
            directory_key: pkcs8_key(&dir.join("directory/signing.key"), &manifest.directory_kid)?,
            software_key: pkcs8_key(&software_dir.join("signing.key"), &software.signing_kid)?,
            ssa_claims: jwt_claims(&ssa).with_context(|| format!("{}", ssa_path.display()))?,
            subject_dn: subject_dn(&transport_cert)?,
            transport_key: software_dir.join("transport.key"),
            transport_cert,
        })
    }

    /// A software statement signed now by the directory key, with its own `jti`.
    pub fn fresh_ssa(&self, now: i64) -> String {
        let mut claims = self.ssa_claims.clone();
        claims["iat"] = json!(now);
        claims["jti"] = json!(keyfort_core::secret::random_b64url(12));
        self.directory_key.sign_jwt(&claims, "JWT")
    }

    /// The scopes the software's roles allow, as the UK profile maps them.
    pub fn scopes(&self) -> String {
        let roles = self.ssa_claims["software_roles"].as_array().cloned().unwrap_or_default();
        let mut scopes: Vec<&str> = Vec::new();
        for role in roles.iter().filter_map(Value::as_str) {
            let scope = match role {
                "AISP" => "accounts",
                "PISP" => "payments",
                "CBPII" => "fundsconfirmations",
                _ => continue,
            };
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.join(" ")
    }

    /// The claims of a registration request carrying `ssa`, for `auth_method`
    /// (`private_key_jwt` or `tls_client_auth`), with certificate-bound tokens.
    pub fn registration_claims(&self, issuer: &str, ssa: &str, auth_method: &str, now: i64) -> Value {
        let mut claims = json!({
            "iss": self.software_id,
            "aud": issuer,
            "iat": now,
            "exp": now + 300,
            "jti": keyfort_core::secret::random_b64url(16),
            "software_id": self.software_id,
            "software_statement": ssa,
            "redirect_uris": self.ssa_claims["software_redirect_uris"],
            "scope": self.scopes(),
            "grant_types": ["client_credentials", "authorization_code", "refresh_token"],
            "response_types": ["code id_token"],
            "application_type": "web",
            "token_endpoint_auth_method": auth_method,
            "id_token_signed_response_alg": "PS256",
            "request_object_signing_alg": "PS256",
            "require_signed_request_object": true,
            "tls_client_certificate_bound_access_tokens": true,
            "token_type_extension": "JWT",
            "jwks_uri": self.ssa_claims["software_jwks_endpoint"],
        });
        if auth_method == "tls_client_auth" {
            claims["tls_client_auth_subject_dn"] = json!(self.subject_dn);
        } else {
            claims["token_endpoint_auth_signing_alg"] = json!("PS256");
        }
        claims
    }

    /// A signed registration request (the OBIE form) with a fresh SSA.
    pub fn registration_request(&self, issuer: &str, auth_method: &str, now: i64) -> String {
        let ssa = self.fresh_ssa(now);
        self.software_key.sign_jwt(&self.registration_claims(issuer, &ssa, auth_method, now), "JWT")
    }

    /// A `private_key_jwt` client assertion (RFC 7523) for `client_id` at `audience`.
    pub fn client_assertion(&self, client_id: &str, audience: &str, now: i64) -> String {
        self.software_key.sign_jwt(
            &json!({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 300,
                    "jti": keyfort_core::secret::random_b64url(16)}),
            "JWT",
        )
    }
}

/// The subject DN of the certificate in `path`, most significant RDN last, as
/// `tls_client_auth_subject_dn` is written (RFC 4514 order).
pub fn subject_dn(path: &Path) -> anyhow::Result<String> {
    let der = CertificateDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let oid = a.attr_type().to_id_string();
                    let name = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "2.5.4.97" => "organizationIdentifier",
                        other => other,
                    };
                    format!("{name}={}", a.as_str().unwrap_or_default().replace(',', "\\,"))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_claims_reads_the_payload() {
        let key = SigningKey::generate(SigningAlg::PS256, "k").unwrap();
        let jwt = key.sign_jwt(&json!({"software_id": "abc", "software_roles": ["AISP"]}), "JWT");
        assert_eq!(jwt_claims(&jwt).unwrap()["software_id"], "abc");
        assert!(jwt_claims("not-a-jwt").is_err());
    }
}
