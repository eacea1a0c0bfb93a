//! `ADD https://…`: downloading a remote file into the build's scratch
//! space while hashing it, and checking `--checksum`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use berth_oci::Digest;
use sha2::{Digest as _, Sha256};

use super::BuildError;

/// The file name ADD gives a download: the last segment of the URL's path.
pub fn file_name(url: &str) -> String {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let name = path
        .split_once('/')
        .map_or("", |(_, p)| p)
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("");
    if name.is_empty() {
        "__unnamed__".to_string()
    } else {
        name.to_string()
    }
}

/// Downloads `url` to `target`; returns the sha256 of the bytes. With
/// `checksum`, a different digest is an error and the file is removed.
pub fn download(url: &str, target: &Path, checksum: Option<&str>) -> Result<Digest, BuildError> {
    let fail = |m: String| BuildError::Copy(format!("ADD {url}: {m}"));
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut response = client.get(url).send().map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP status {}", response.status())));
    }
    let mut file = File::create(target).map_err(|e| BuildError::io(target, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| BuildError::io(target, e))?;
    }
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
        .map_err(|e| fail(e.to_string()))?;
    if let Some(want) = checksum {
        let want = Digest::parse(want).map_err(|e| fail(format!("invalid --checksum: {e}")))?;
        if want.algorithm() != digest.algorithm() || want != digest {
            let _ = std::fs::remove_file(target);
            return Err(fail(format!(
                "checksum mismatch: expected {want}, downloaded {digest}"
            )));
        }
    }
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn names_come_from_the_url_path() {
        assert_eq!(
            file_name("https://example.com/a/b/tool.tar.gz"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/a/b/?x=1"), "b");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("http://h:8080/f.txt#frag"), "f.txt");
    }
}
