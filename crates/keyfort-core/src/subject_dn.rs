//! Distinguished names parsed from their RFC 4514 string form and compared as data.
//!
//! `tls_client_auth_subject_dn` is registered as a string, but certificates carry the DN as
//! ASN.1. Comparing printed strings breaks on attribute order inside an RDN, spacing,
//! escaping and `OID=` versus keyword spellings, so a DN is parsed once into relative
//! distinguished names and compared as data: attribute types by OID, values exactly, with
//! only insignificant white space folded. Values are not compared case-insensitively (as
//! X.520's caseIgnoreMatch would): Open Banking identifiers in a CN or OU are case-sensitive
//! base62, so `CN=abc` and `CN=ABC` name two different pieces of software.

use std::fmt;

/// One attribute of an RDN: the attribute type as a dotted OID and its value.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub oid: String,
    /// The value as written (after unescaping), for messages and identifiers.
    pub value: String,
    /// Value after white-space folding, for comparison (case is kept: see the module).
    pub normalized: String,
}

impl Attribute {
    fn new(oid: String, value: String) -> Self {
        let normalized = normalize(&value);
        Self { oid, value, normalized }
    }

    fn key(&self) -> (&str, &str) {
        (&self.oid, &self.normalized)
    }
}

fn sort_rdn(attrs: &mut [Attribute]) {
    attrs.sort_by(|a, b| a.key().cmp(&b.key()));
}

/// A parsed distinguished name, in the order of its RFC 4514 string (most specific first).
#[derive(Debug, Clone)]
pub struct SubjectDn {
    original: String,
    rdns: Vec<Vec<Attribute>>,
}

impl PartialEq for SubjectDn {
    fn eq(&self, other: &Self) -> bool {
        self.rdns.len() == other.rdns.len()
            && self
                .rdns
                .iter()
                .zip(&other.rdns)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.key() == y.key()))
    }
}
impl Eq for SubjectDn {}

const KEYWORDS: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("S", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("TITLE", "2.5.4.12"),
    ("GIVENNAME", "2.5.4.42"),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// The dotted OID for an attribute type keyword, if Keyfort knows it.
pub fn keyword_oid(keyword: &str) -> Option<&'static str> {
    KEYWORDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(keyword)).map(|(_, oid)| *oid)
}

impl SubjectDn {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Err("subject DN is empty".into());
        }
        if raw.len() > 1024 {
            return Err("subject DN is longer than 1024 characters".into());
        }
        let mut rdns = Vec::new();
        for rdn in split_unescaped(raw, &[',', ';']) {
            let mut attrs = Vec::new();
            for ava in split_unescaped(rdn, &['+']) {
                let (kind, value) = ava
                    .split_once('=')
                    .ok_or_else(|| format!("\"{}\" in subject DN is not of the form TYPE=value", ava.trim()))?;
                let kind = kind.trim();
                let oid = if kind.chars().all(|c| c.is_ascii_digit() || c == '.') && kind.contains('.') {
                    kind.to_owned()
                } else if let Some(oid) = kind.strip_prefix("OID.").or_else(|| kind.strip_prefix("oid.")) {
                    oid.to_owned()
                } else {
                    keyword_oid(kind)
                        .ok_or_else(|| {
                            format!("subject DN attribute type \"{kind}\" is not known; use its dotted OID")
                        })?
                        .to_owned()
                };
                let value = unescape(value.trim())?;
                attrs.push(Attribute::new(oid, value));
            }
            sort_rdn(&mut attrs);
            rdns.push(attrs);
        }
        Ok(Self { original: raw.to_owned(), rdns })
    }

    /// Builds a DN from attributes as they appear in a certificate (ASN.1 order: least
    /// specific first), so it compares equal to the RFC 4514 string of the same name.
    pub fn from_certificate_rdns(rdns_in_asn1_order: Vec<Vec<(String, String)>>, printed: String) -> Self {
        let rdns = rdns_in_asn1_order
            .into_iter()
            .rev()
            .map(|rdn| {
                let mut attrs: Vec<Attribute> =
                    rdn.into_iter().map(|(oid, value)| Attribute::new(oid, value)).collect();
                sort_rdn(&mut attrs);
                attrs
            })
            .collect();
        Self { original: printed, rdns }
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The value (as written) of the first attribute with `oid`, most specific RDN first.
    pub fn attribute(&self, oid: &str) -> Option<&str> {
        self.rdns.iter().flatten().find(|a| a.oid == oid).map(|a| a.value.as_str())
    }

    /// Every value of the attribute `oid`, most specific RDN first: several when the name
    /// repeats the attribute in separate RDNs (`OU=a,OU=b`) or in one multi-valued RDN
    /// (`OU=a+OU=b`).
    pub fn values(&self, oid: &str) -> Vec<&str> {
        self.rdns.iter().flatten().filter(|a| a.oid == oid).map(|a| a.value.as_str()).collect()
    }

    /// The only value of `oid`: `Ok(None)` when the name has none, `Err` with every value
    /// when it has several. What a name is bound to must not depend on which of two values
    /// is read first.
    pub fn single(&self, oid: &str) -> Result<Option<&str>, Vec<&str>> {
        match self.values(oid).as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            several => Err(several.to_vec()),
        }
    }
}

/// The longest `tls_client_auth_subject_dn` OBIE DCR v3.4 allows.
pub const OBIE_MAX_SUBJECT_DN_CHARS: usize = 512;

/// Checks `raw` against OBIE DCR v3.4's pattern for `tls_client_auth_subject_dn`,
/// `^(?=.{1,512}$)[Cc][Nn]=[^,]+(?:,[^,\s]+=[^,]+)*$`: at most 512 characters, the CN first,
/// RDNs separated by commas, no white space in an attribute type, no empty value.
pub fn check_obie_pattern(raw: &str) -> Result<(), String> {
    let chars = raw.chars().count();
    if chars == 0 || chars > OBIE_MAX_SUBJECT_DN_CHARS {
        return Err(format!("must have 1 to {OBIE_MAX_SUBJECT_DN_CHARS} characters (it has {chars})"));
    }
    let mut parts = raw.split(',');
    let first = parts.next().unwrap_or_default();
    let starts_with_cn = first.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("CN="));
    if !starts_with_cn || first.len() == 3 {
        return Err("must start with the CN (\"CN=<value>,...\"), as OBIE DCR v3.4 requires: write the RFC 4514 \
                    form of the certificate subject, most specific RDN first"
            .to_owned());
    }
    for part in parts {
        let well_formed = part
            .split_once('=')
            .is_some_and(|(kind, value)| !kind.is_empty() && !kind.contains(char::is_whitespace) && !value.is_empty());
        if !well_formed {
            return Err(format!(
                "has \"{part}\" where OBIE DCR v3.4 expects TYPE=value after a comma (no white space after commas, \
                 no empty values, no escaped commas)"
            ));
        }
    }
    Ok(())
}

impl fmt::Display for SubjectDn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// Splits at separators that are not escaped with a backslash.
fn split_unescaped<'a>(s: &'a str, separators: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if separators.contains(&c) {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(value: &str) -> Result<String, String> {
    if let Some(hex) = value.strip_prefix('#') {
        // A BER-encoded value is kept as its hex form; it compares equal only to itself.
        return Ok(format!("#{}", hex.to_ascii_lowercase()));
    }
    let mut bytes = Vec::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some(h1) if h1.is_ascii_hexdigit() => {
                let h2 = chars
                    .next()
                    .filter(char::is_ascii_hexdigit)
                    .ok_or_else(|| format!("bad hex escape in subject DN value \"{value}\""))?;
                let byte = u8::from_str_radix(&format!("{h1}{h2}"), 16).expect("two hex digits");
                bytes.push(byte);
            }
            Some(special) => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(special.encode_utf8(&mut buf).as_bytes());
            }
            None => return Err(format!("subject DN value \"{value}\" ends with a lone backslash")),
        }
    }
    String::from_utf8(bytes).map_err(|_| format!("subject DN value \"{value}\" escapes bytes that are not UTF-8"))
}

fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl serde::Serialize for SubjectDn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.original)
    }
}

impl<'de> serde::Deserialize<'de> for SubjectDn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> SubjectDn {
        SubjectDn::parse(s).unwrap()
    }

    #[test]
    fn equal_names_spelled_differently_are_equal() {
        assert_eq!(
            dn("CN=oQ4KoaavpOuoE7rvQsZEOV,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB"),
            dn("cn = oQ4KoaavpOuoE7rvQsZEOV , ou=0015800001HQQrZAAX, o=OpenBanking,c=GB")
        );
        assert_eq!(dn("CN=a+OU=b,O=c"), dn("OU=b+CN=a,O=c"));
        assert_eq!(dn("2.5.4.3=a,O=c"), dn("CN=a,O=c"));
        assert_eq!(dn("CN=Acme\\, Ltd,O=x"), dn("CN=Acme\\2C Ltd,O=x"));
        assert_eq!(dn("organizationIdentifier=PSDGB-OB-1,CN=a").attribute("2.5.4.97"), Some("PSDGB-OB-1"));
    }

    #[test]
    fn different_names_differ() {
        assert_ne!(dn("CN=a,O=b"), dn("O=b,CN=a"));
        assert_ne!(dn("CN=a,O=b"), dn("CN=a,O=b,C=GB"));
        assert_ne!(dn("CN=a,O=b"), dn("CN=a,OU=b"));
        // A comma inside a value is not an RDN separator.
        assert_ne!(dn("CN=a\\,O=b"), dn("CN=a,O=b"));
    }

    /// Open Banking identifiers are case-sensitive: two software ids that differ in case
    /// are two pieces of software.
    #[test]
    fn values_are_compared_with_their_case() {
        assert_ne!(
            dn("CN=oQ4KoaavpOuoE7rvQsZEOV,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB"),
            dn("CN=oq4koaavpouoe7rvqszeov,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB")
        );
        assert_ne!(dn("CN=a,OU=Org"), dn("CN=a,OU=ORG"));
    }

    #[test]
    fn repeated_attributes_are_all_seen() {
        let name = dn("CN=s,OU=a+OU=b,O=OpenBanking");
        assert_eq!(name.values(OU), vec!["a", "b"]);
        assert_eq!(name.single(OU), Err(vec!["a", "b"]));
        assert_eq!(dn("CN=s,OU=a,OU=b").single(OU), Err(vec!["a", "b"]));
        assert_eq!(name.single("2.5.4.3"), Ok(Some("s")));
        assert_eq!(name.single("2.5.4.97"), Ok(None));
    }

    #[test]
    fn the_obie_pattern_wants_the_cn_first() {
        for good in [
            "CN=oQ4KoaavpOuoE7rvQsZEOV,OU=0015800001HQQrZAAX,O=OpenBanking,C=GB",
            "cn=TPPIdentifier,organizationIdentifier=PSDGB-OB-UnknownTPPID,O=Open Banking Limited (A),C=GB",
            "CN=x",
        ] {
            assert_eq!(check_obie_pattern(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "OU=0015800001HQQrZAAX,O=OpenBanking,C=GB,CN=oQ4KoaavpOuoE7rvQsZEOV",
            "CN=",
            "CN=a, O=b",
            "CN=a,O=",
            "CN=a,=b",
            "CN=a\\,b,O=c",
            " CN=a",
        ] {
            assert!(check_obie_pattern(bad).is_err(), "{bad:?}");
        }
        assert!(check_obie_pattern(&format!("CN={}", "a".repeat(510))).is_err());
        assert!(check_obie_pattern(&format!("CN={}", "a".repeat(509))).is_ok());
    }

    const OU: &str = "2.5.4.11";

    #[test]
    fn malformed_names_are_refused() {
        assert!(SubjectDn::parse("").is_err());
        assert!(SubjectDn::parse("just text").is_err());
        assert!(SubjectDn::parse("XYZ=1").unwrap_err().contains("not known"));
        assert!(SubjectDn::parse("CN=a\\").is_err());
    }

    #[test]
    fn certificate_order_is_reversed() {
        let from_cert = SubjectDn::from_certificate_rdns(
            vec![
                vec![("2.5.4.6".into(), "GB".into())],
                vec![("2.5.4.10".into(), "OpenBanking".into())],
                vec![("2.5.4.3".into(), "abc".into())],
            ],
            "C=GB, O=OpenBanking, CN=abc".into(),
        );
        assert_eq!(from_cert, dn("CN=abc,O=OpenBanking,C=GB"));
    }
}
