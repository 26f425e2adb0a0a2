//! `[development]`: the one named switch under which Keyfort starts with settings that are
//! unsafe in front of real TPPs.
//!
//! Some combinations of otherwise valid keys make a server that looks healthy and is not:
//! registration answers 201 to clients that can never get a token, or accepts a
//! registration from anyone who holds a copy of a (public) software statement. Such a
//! configuration is refused at start-up and by `check-config`, naming each setting and what
//! to do, unless `[development] allow_unsafe_registration = true` says it is meant; then
//! every start logs a warning naming them, so the switch cannot be forgotten in production.

use super::loader::Section;
use super::Config;

#[derive(Debug, Clone, Default)]
pub struct DevelopmentConfig {
    /// Start even though [`unsafe_settings`] names something (a development server).
    pub allow_unsafe_registration: bool,
}

pub(super) fn read(mut s: Section<'_>) -> DevelopmentConfig {
    DevelopmentConfig { allow_unsafe_registration: s.take("allow_unsafe_registration").unwrap_or(false) }
}

/// What is written in messages about the switch, so every message names it the same way.
pub const SWITCH: &str = "[development] allow_unsafe_registration = true";

/// One unsafe setting: the key to change, and why it is unsafe and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsafeSetting {
    pub key: &'static str,
    pub why: String,
}

/// The settings of `config` that would let registration accept callers that can never get
/// a token, or registrations with no proof of who sends them. Empty for a configuration fit
/// for real TPPs.
pub fn unsafe_settings(config: &Config) -> Vec<UnsafeSetting> {
    let mut found = Vec::new();
    let dcr = &config.dcr;
    if dcr.policy.fapi && !config.certificates_possible() {
        found.push(UnsafeSetting {
            key: "[server.tls] client_ca_file",
            why: "is not set (nor [mtls] gateway_header), so no client certificate can reach Keyfort; under \
                  [oauth.dcr] enable_fapi_enforcement every client is registered for certificate-bound tokens, \
                  so TPPs would register (201) and then never get a token. Set client_ca_file to the bundle of \
                  the CAs that issue transport certificates (or gateway_header behind a TLS-terminating proxy)"
                .to_owned(),
        });
    }
    if dcr.allow_json_without_proof {
        found.push(UnsafeSetting {
            key: "[oauth.dcr] allow_json_without_proof",
            why: "is true, so anyone holding a copy of a software statement (which every bank the TPP joins \
                  holds) can register as that software without a transport certificate or a signature. Set it \
                  to false"
                .to_owned(),
        });
    }
    if dcr.binding.level == keyfort_core::transport::BindingLevel::Off {
        found.push(UnsafeSetting {
            key: "[oauth.dcr] certificate_binding",
            why: "is \"off\", so a transport certificate of any organisation can register any organisation's \
                  software. Set it to \"software\" (or \"organisation\")"
                .to_owned(),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SAFE: &str = r#"
[server]
listen = "127.0.0.1:9446"
public_url = "https://bank.example"
[server.tls]
client_ca_file = "ca.pem"
[oauth.dcr]
ssa_jkws = "https://keystore.example/dir.jwks"
"#;

    fn load(text: &str) -> Result<Config, super::super::ConfigError> {
        Config::from_toml_with_env(text, "test.toml", Path::new("/etc/keyfort"), Vec::new())
    }

    #[test]
    fn a_server_that_can_receive_certificates_is_safe() {
        let c = load(SAFE).unwrap();
        assert!(unsafe_settings(&c).is_empty());
        assert!(!c.development.allow_unsafe_registration);
        let gateway = SAFE.replace(
            "[oauth.dcr]",
            "[mtls]\ngateway_header = \"x-cert\"\ntrusted_proxies = [\"10.0.0.1\"]\n[oauth.dcr]",
        );
        assert!(unsafe_settings(&load(&gateway).unwrap()).is_empty());
    }

    #[test]
    fn each_unsafe_setting_is_refused_with_the_switch_named() {
        let no_ca = SAFE.replace("client_ca_file = \"ca.pem\"", "");
        let err = load(&no_ca).unwrap_err();
        assert_eq!(err.problems().len(), 1, "{err}");
        let text = err.to_string();
        assert!(text.contains("[server.tls] client_ca_file") && text.contains("never get a token"), "{text}");
        assert!(text.contains(SWITCH), "names the switch: {text}");

        let both = format!("{SAFE}allow_json_without_proof = true\ncertificate_binding = \"off\"\n");
        let err = load(&both).unwrap_err();
        let keys: Vec<_> = err.problems().iter().filter_map(|p| p.key.clone()).collect();
        assert_eq!(keys, ["[oauth.dcr] allow_json_without_proof", "[oauth.dcr] certificate_binding"], "{err}");
    }

    #[test]
    fn without_fapi_a_server_without_certificates_is_not_refused() {
        let text = format!("{}enable_fapi_enforcement = false\n", SAFE.replace("client_ca_file = \"ca.pem\"", ""));
        assert!(unsafe_settings(&load(&text).unwrap()).is_empty());
    }

    #[test]
    fn the_switch_lets_it_start_and_keeps_the_list_for_the_warning() {
        let text = format!(
            "[development]\nallow_unsafe_registration = true\n{}allow_json_without_proof = true\n",
            SAFE.replace("client_ca_file = \"ca.pem\"", "")
        );
        let c = load(&text).unwrap();
        assert!(c.development.allow_unsafe_registration);
        assert_eq!(unsafe_settings(&c).len(), 2);
    }

    #[test]
    fn the_check_can_wait_until_development_overrides_are_applied() {
        let no_ca = SAFE.replace("client_ca_file = \"ca.pem\"", "");
        let c = Config::from_toml_deferring_safety(&no_ca, "test.toml", Path::new("/etc/keyfort")).unwrap();
        assert!(c.check_safety().is_err());
    }
}
