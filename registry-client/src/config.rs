//! berth's client settings file, for what would otherwise have to be repeated
//! on every command line.
//!
//! JSON, at `$BERTH_CONFIG` when set (the file must then exist), else
//! `$XDG_CONFIG_HOME/berth/config.json`, else `~/.config/berth/config.json`
//! (a missing default file means no settings). Unknown keys are ignored.
//!
//! ```json
//! {
//!   "insecure-registries": ["localhost:5000", "10.0.0.7:5000"],
//!   "registry-endpoints": { "docker.io": "https://mirror.example.com" }
//! }
//! ```
//!
//! `insecure-registries` adds to `--insecure-registry`. `registry-endpoints`
//! sends a registry's API calls elsewhere (a mirror, a test double): every
//! `docker.io/...` reference above goes to `https://mirror.example.com/v2/...`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};

/// The settings read from the file.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub insecure_registries: Vec<String>,
    pub registry_endpoints: HashMap<String, Url>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct SettingsFile {
    #[serde(default)]
    insecure_registries: Vec<String>,
    #[serde(default)]
    registry_endpoints: HashMap<String, String>,
}

impl Settings {
    /// Where the settings file is looked for, and whether it must exist.
    pub fn location() -> Option<(PathBuf, bool)> {
        if let Some(path) = std::env::var_os("BERTH_CONFIG").filter(|p| !p.is_empty()) {
            return Some((PathBuf::from(path), true));
        }
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some((config_home.join("berth").join("config.json"), false))
    }

    /// The settings from [`Settings::location`].
    pub fn load() -> Result<Settings> {
        match Self::location() {
            None => Ok(Settings::default()),
            Some((path, required)) => {
                if !required && !path.exists() {
                    return Ok(Settings::default());
                }
                Self::load_from(&path)
            }
        }
    }

    pub fn load_from(path: &Path) -> Result<Settings> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SettingsFile =
            serde_json::from_slice(&bytes).map_err(|source| Error::ConfigJson {
                path: path.to_path_buf(),
                source,
            })?;
        let mut registry_endpoints = HashMap::new();
        for (registry, url) in file.registry_endpoints {
            let parsed = Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: registry-endpoints.{registry}: {url:?} is not an http(s) URL",
                        path.display()
                    ))
                })?;
            registry_endpoints.insert(registry, parsed);
        }
        Ok(Settings {
            insecure_registries: file.insecure_registries,
            registry_endpoints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_insecure_registries_and_endpoints_ignoring_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"insecure-registries":["a:5000"],"registry-endpoints":{"docker.io":"http://127.0.0.1:9/"},"other":1}"#,
        )
        .unwrap();
        let s = Settings::load_from(&path).unwrap();
        assert_eq!(s.insecure_registries, ["a:5000"]);
        assert_eq!(
            s.registry_endpoints["docker.io"].as_str(),
            "http://127.0.0.1:9/"
        );
    }

    #[test]
    fn rejects_an_endpoint_that_is_not_http() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"registry-endpoints":{"docker.io":"ftp://x"}}"#).unwrap();
        let err = Settings::load_from(&path).unwrap_err().to_string();
        assert!(err.contains("registry-endpoints.docker.io"), "{err}");
    }
}
