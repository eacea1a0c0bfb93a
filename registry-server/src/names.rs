//! Repository names, tags and upload ids as the Distribution Spec's grammar
//! allows them, and where each thing lives in storage.
//!
//! The name grammar (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components joined by
//! `/`) never yields `.`, `..` or a component starting with `_`, so a name can
//! neither leave `repositories/` nor collide with the `_manifests`, `_layers`,
//! `_uploads` and `_referrers` directories beside it.

use berth_oci::Digest;

/// distribution's limit on a repository name.
pub const NAME_MAX: usize = 255;

pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && name.split('/').all(is_valid_component)
}

fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Upload ids are ours: 32 lowercase hex characters.
pub fn is_valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Storage layout, distribution-like:
///
/// ```text
/// blobs/<alg>/<hex[..2]>/<hex>/data                    content, once per digest
/// repositories/<name>/_layers/<alg>/<hex>/link          blobs the repo holds
/// repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifests (media type)
/// repositories/<name>/_manifests/tags/<tag>/current/link      tag -> digest
/// repositories/<name>/_referrers/<alg>/<hex>/<alg>/<hex>/link referrer descriptors
/// repositories/<name>/_uploads/<id>/{data,startedat}    upload sessions
/// ```
pub mod layout {
    use super::Digest;

    pub const REPOSITORIES: &str = "repositories";
    pub const BLOBS: &str = "blobs";

    pub fn blob_data(d: &Digest) -> String {
        format!("blobs/{}/{}/{}/data", d.algorithm(), &d.hex()[..2], d.hex())
    }

    pub fn repo(name: &str) -> String {
        format!("repositories/{name}")
    }

    pub fn layer_link(name: &str, d: &Digest) -> String {
        format!(
            "repositories/{name}/_layers/{}/{}/link",
            d.algorithm(),
            d.hex()
        )
    }

    pub fn layers_dir(name: &str) -> String {
        format!("repositories/{name}/_layers")
    }

    pub fn manifests_dir(name: &str) -> String {
        format!("repositories/{name}/_manifests")
    }

    pub fn revision_dir(name: &str, d: &Digest) -> String {
        format!(
            "repositories/{name}/_manifests/revisions/{}/{}",
            d.algorithm(),
            d.hex()
        )
    }

    pub fn revision_link(name: &str, d: &Digest) -> String {
        format!("{}/link", revision_dir(name, d))
    }

    pub fn revisions_dir(name: &str) -> String {
        format!("repositories/{name}/_manifests/revisions")
    }

    pub fn tags_dir(name: &str) -> String {
        format!("repositories/{name}/_manifests/tags")
    }

    pub fn tag_dir(name: &str, tag: &str) -> String {
        format!("repositories/{name}/_manifests/tags/{tag}")
    }

    pub fn tag_link(name: &str, tag: &str) -> String {
        format!("repositories/{name}/_manifests/tags/{tag}/current/link")
    }

    pub fn referrers_of(name: &str, subject: &Digest) -> String {
        format!(
            "repositories/{name}/_referrers/{}/{}",
            subject.algorithm(),
            subject.hex()
        )
    }

    pub fn referrer_dir(name: &str, subject: &Digest, referrer: &Digest) -> String {
        format!(
            "{}/{}/{}",
            referrers_of(name, subject),
            referrer.algorithm(),
            referrer.hex()
        )
    }

    pub fn referrer_link(name: &str, subject: &Digest, referrer: &Digest) -> String {
        format!("{}/link", referrer_dir(name, subject, referrer))
    }

    pub fn uploads_dir(name: &str) -> String {
        format!("repositories/{name}/_uploads")
    }

    pub fn upload_dir(name: &str, id: &str) -> String {
        format!("repositories/{name}/_uploads/{id}")
    }

    pub fn upload_data(name: &str, id: &str) -> String {
        format!("repositories/{name}/_uploads/{id}/data")
    }

    pub fn upload_info(name: &str, id: &str) -> String {
        format!("repositories/{name}/_uploads/{id}/startedat")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in ["a", "library/busybox", "a.b/c_d/e__f/g-h/i---j", "0/1/2"] {
            assert!(is_valid_name(ok), "{ok} rejected");
        }
        for bad in [
            "",
            "A",
            "a/../b",
            "..",
            ".a",
            "a.",
            "a/",
            "/a",
            "a//b",
            "a___b",
            "a..b",
            "a/_layers",
            "a-.b",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(!is_valid_name(bad), "{bad} accepted");
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x.Y-1"));
        assert!(is_valid_tag(&"a".repeat(128)));
        for bad in ["", ".a", "-a", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad} accepted");
        }
    }
}
