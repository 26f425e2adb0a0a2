//! Where keys and revocation lists come from, and which URLs Keyfort may fetch at all.

use std::path::PathBuf;

use keyfort_core::net::is_loopback_host;
use url::Url;

use super::loader::Paths;

/// Where a JWKS (or a CRL) comes from: an https URL (or loopback http in development), or a
/// file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    Url(Url),
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Url(u) => write!(f, "{u}"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Reads one entry of a key list: a URL (`https://`, or `file://`) or a file path.
pub(super) fn parse_key_source(
    raw: &str,
    paths: &Paths<'_>,
    allow_insecure_loopback: bool,
) -> Result<KeySource, String> {
    if !raw.contains("://") {
        return Ok(KeySource::File(paths.resolve(PathBuf::from(raw))));
    }
    let url = Url::parse(raw).map_err(|e| format!("\"{raw}\" is not a valid URL ({e})"))?;
    match url.scheme() {
        "file" => url.to_file_path().map(KeySource::File).map_err(|()| format!("\"{raw}\" is not a usable file URL")),
        "http" | "https" => {
            check_fetchable(&url, allow_insecure_loopback, "")?;
            Ok(KeySource::Url(url))
        }
        other => Err(format!("\"{raw}\" uses the scheme {other}: use an https URL or a file path")),
    }
}

/// Whether Keyfort may fetch `url`: https always; plain http only to this machine and only
/// with the development switch, since anyone on the path could replace what it serves.
/// `http_advice` is appended to the refusal of a non-loopback http URL.
pub(super) fn check_fetchable(url: &Url, allow_insecure_loopback: bool, http_advice: &str) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url) => {
            if allow_insecure_loopback {
                Ok(())
            } else {
                Err(format!(
                    "\"{url}\" is plain http: use https, or for local development set [http_client] allow_insecure_loopback = true"
                ))
            }
        }
        "http" => Err(format!(
            "\"{url}\" is plain http to another machine, which is never fetched: use an https URL{http_advice}"
        )),
        other => Err(format!("\"{url}\" uses the scheme {other}: use an https URL")),
    }
}
