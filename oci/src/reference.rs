//! Image references with docker's normalisation: `busybox` is
//! `docker.io/library/busybox:latest`, `user/app` is `docker.io/user/app:latest`,
//! and anything whose first component looks like a host (has a `.` or `:`, or is
//! `localhost`, or has uppercase letters) names its registry. Validation follows
//! the grammar of distribution's `reference` package; it is written here because
//! no maintained crate carries docker's normalisation rules with typed errors.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
/// distribution's NameTotalLengthMax: domain and path together.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference: empty")]
    Empty,
    #[error("invalid reference {reference:?}: repository name is {len} characters, more than 255")]
    NameTooLong { reference: String, len: usize },
    #[error("invalid reference {reference:?}: bad registry host {domain:?}")]
    InvalidDomain { reference: String, domain: String },
    #[error(
        "invalid reference {reference:?}: bad repository path component {component:?} (lowercase letters, digits and separators . _ __ - only)"
    )]
    InvalidPathComponent {
        reference: String,
        component: String,
    },
    #[error("invalid reference {reference:?}: repository name must be lowercase")]
    Uppercase { reference: String },
    #[error(
        "invalid reference {reference:?}: bad tag {tag:?} (up to 128 of [A-Za-z0-9_.-], not starting with . or -)"
    )]
    InvalidTag { reference: String, tag: String },
    #[error("invalid reference {reference:?}: bad digest")]
    InvalidDigest {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "invalid reference {reference:?}: cannot be a 64-character hexadecimal string (that is an image ID)"
    )]
    HexOnly { reference: String },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises like `docker pull`: a reference with neither tag
    /// nor digest gets the tag `latest`.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_name_only(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises without adding a default tag.
    pub fn parse_name_only(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexOnly {
                reference: s.to_string(),
            });
        }
        let err_ref = || s.to_string();

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::InvalidDigest {
                    reference: err_ref(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A tag is after the last ':' that comes after the last '/', so that a
        // registry port (`localhost:5000/x`) is not taken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::InvalidTag {
                reference: err_ref(),
                tag: tag.to_string(),
            });
        }
        if name.is_empty() {
            return Err(ReferenceError::InvalidPathComponent {
                reference: err_ref(),
                component: String::new(),
            });
        }

        let (domain, path) = split_docker_domain(name);
        if !is_valid_domain(&domain) {
            return Err(ReferenceError::InvalidDomain {
                reference: err_ref(),
                domain,
            });
        }
        if path.to_lowercase() != path {
            return Err(ReferenceError::Uppercase {
                reference: err_ref(),
            });
        }
        for component in path.split('/') {
            if !is_valid_path_component(component) {
                return Err(ReferenceError::InvalidPathComponent {
                    reference: err_ref(),
                    component: component.to_string(),
                });
            }
        }
        let len = domain.len() + 1 + path.len();
        if len > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                reference: err_ref(),
                len,
            });
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Registry host (and port) as written, `docker.io` for Docker Hub.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short name docker shows: `busybox`, `user/app`, `localhost:5000/a`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    /// `busybox:latest`, `user/app@sha256:…`: what `docker images` shows.
    pub fn familiar(&self) -> String {
        self.render(self.familiar_name())
    }

    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::InvalidTag {
                reference: self.to_string(),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with neither tag nor digest.
    pub fn repository(&self) -> Reference {
        Reference {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    fn render(&self, name: String) -> String {
        let mut out = name;
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(&d.to_string());
        }
        out
    }
}

impl fmt::Display for Reference {
    /// The fully normalised form: `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.name()))
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        Reference::parse(s)
    }
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_string();
    }
    if domain == DEFAULT_DOMAIN && !rest.contains('/') {
        rest = format!("{OFFICIAL_REPO_PREFIX}{rest}");
    }
    (domain, rest)
}

fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `alpha-numeric [separator alpha-numeric]*` with separator `[_.]|__|[-]+`.
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let is_alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.is_empty() {
        return domain.starts_with('[');
    }
    host.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("localhost/a"), "localhost/a:latest");
        assert_eq!(norm("Example.com/a"), "Example.com/a:latest");
        assert_eq!(norm("[::1]:5000/a"), "[::1]:5000/a:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b/c"), "127.0.0.1:5000/a/b/c:latest");
        assert_eq!(norm("a__b/c--d/e.f_g"), "docker.io/a__b/c--d/e.f_g:latest");
    }

    #[test]
    fn digests_and_tags_together() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("host.io/x@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), d);
        assert_eq!(r.to_string(), format!("host.io/x@{d}"));
        assert_eq!(
            Reference::parse("host/x").unwrap().to_string(),
            "docker.io/host/x:latest"
        );
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.familiar(), format!("busybox:1@{d}"));
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/library/a/b")
                .unwrap()
                .familiar(),
            "library/a/b:latest"
        );
        assert_eq!(
            Reference::parse("user/app:v1").unwrap().familiar(),
            "user/app:v1"
        );
        assert_eq!(
            Reference::parse("localhost:5000/a:t").unwrap().familiar(),
            "localhost:5000/a:t"
        );
    }

    #[test]
    fn rejects_what_docker_rejects() {
        use ReferenceError::*;
        let bad = |s: &str| Reference::parse(s).unwrap_err();
        assert!(matches!(bad(""), Empty));
        assert!(matches!(bad("Upper"), Uppercase { .. }));
        // An uppercase first component is a registry host, as in docker.
        assert_eq!(Reference::parse("UPPER/case").unwrap().domain(), "UPPER");
        assert!(matches!(bad("docker.io/Upper"), Uppercase { .. }));
        assert!(matches!(bad("a:b:c"), InvalidPathComponent { .. }));
        assert!(matches!(bad("busybox:-x"), InvalidTag { .. }));
        assert!(matches!(
            bad(&format!("busybox:{}", "a".repeat(129))),
            InvalidTag { .. }
        ));
        assert!(Reference::parse(&format!("busybox:{}", "a".repeat(128))).is_ok());
        assert!(matches!(bad("a//b"), InvalidPathComponent { .. }));
        assert!(matches!(bad("a/-b"), InvalidPathComponent { .. }));
        assert!(matches!(bad("a/b___c"), InvalidPathComponent { .. }));
        assert!(matches!(bad("a/b."), InvalidPathComponent { .. }));
        assert!(matches!(bad("host:port/a"), InvalidDomain { .. }));
        assert!(matches!(bad("-host.com/a"), InvalidDomain { .. }));
        assert!(matches!(bad("busybox@sha256:abc"), InvalidDigest { .. }));
        assert!(matches!(bad(&"a".repeat(64)), HexOnly { .. }));
        assert!(matches!(
            bad(&format!("x.io/{}", "a".repeat(255))),
            NameTooLong { .. }
        ));
        assert!(matches!(bad("a/../b"), InvalidPathComponent { .. }));
    }

    #[test]
    fn error_names_the_bad_part() {
        let e = Reference::parse("busybox:bad tag").unwrap_err().to_string();
        assert!(e.contains("bad tag \"bad tag\""), "{e}");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics(s in "\\PC{0,300}") {
                let _ = Reference::parse(&s);
            }

            #[test]
            fn never_panics_on_reference_like(s in "[a-zA-Z0-9._:/@\\-\\[\\]]{0,80}") {
                let _ = Reference::parse(&s);
            }

            #[test]
            fn normalised_form_reparses_to_itself(
                host in "(([a-z0-9]{1,8}\\.)?[a-z]{1,8}(:[0-9]{1,5})?/)?",
                path in "[a-z0-9]{1,6}((_|__|-{1,3})[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,6}([._][a-z0-9]{1,3})?){0,2}",
                tag in "(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?",
            ) {
                let s = format!("{host}{path}{tag}");
                let r = Reference::parse(&s).unwrap();
                let again = Reference::parse(&r.to_string()).unwrap();
                prop_assert_eq!(&r, &again);
                let familiar = Reference::parse(&r.familiar()).unwrap();
                prop_assert_eq!(r, familiar);
            }
        }
    }
}
