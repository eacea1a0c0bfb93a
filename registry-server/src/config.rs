//! The server's configuration: a YAML file (every key optional), then
//! `BERTH_REGISTRY_<SECTION>_<KEY>` environment variables, then command-line
//! flags. Unknown keys are errors that name the key and its line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_ROOT: &str = "/var/lib/berth/registry";
pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const ENV_PREFIX: &str = "BERTH_REGISTRY_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("bad value in environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("bad config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address (`host:port`; port 0 picks a free one).
    pub addr: String,
    /// Storage root of the filesystem driver.
    pub root: PathBuf,
    /// Log filter used when BERTH_LOG is not set (error, warn, info, debug, trace).
    pub log_level: String,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub gc: GcConfig,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: DEFAULT_ADDR.to_string(),
            root: PathBuf::from(DEFAULT_ROOT),
            log_level: "info".to_string(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            gc: GcConfig::default(),
            auth: AuthConfig::default(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Allow DELETE of manifests, tags and blobs (else 405 UNSUPPORTED).
    pub delete_enabled: bool,
    /// Largest manifest accepted, bytes.
    pub manifest_max_bytes: usize,
    /// Largest blob accepted, bytes (none: unlimited).
    pub blob_max_bytes: Option<u64>,
    /// Upload sessions idle longer than this are removed, seconds.
    pub upload_max_age_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            delete_enabled: true,
            manifest_max_bytes: 4 << 20,
            blob_max_bytes: None,
            upload_max_age_secs: 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Uploads (POST/PATCH/PUT of blobs) served at once; more get 429.
    pub max_concurrent_uploads: usize,
    /// Requests per second allowed per client address (0: no limit).
    pub rate_limit_per_sec: u32,
    /// Requests a client may burst above its rate.
    pub rate_limit_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_uploads: 256,
            rate_limit_per_sec: 0,
            rate_limit_burst: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Run GC in the server every this many seconds (0: never).
    pub interval_secs: u64,
    /// Unreferenced blobs younger than this are kept, seconds.
    pub grace_period_secs: u64,
    /// Also delete manifests no tag reaches (and what only they reach).
    pub delete_untagged: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: 0,
            grace_period_secs: 3600,
            delete_untagged: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// htpasswd file (bcrypt entries): the users of basic auth and of the
    /// token service.
    pub htpasswd: Option<PathBuf>,
    /// Issue and require bearer tokens (Docker Hub's flow) instead of basic auth.
    pub token: Option<TokenConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// URL clients fetch tokens from (default: this server's /token).
    pub realm: Option<String>,
    pub service: String,
    pub issuer: String,
    /// PEM private key (EC P-256 for ES256); generated per start when absent.
    pub key: Option<PathBuf>,
    pub expiry_secs: u64,
    /// Group name -> members.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Access rules, first match of a repository glob wins per user.
    pub rules: Vec<AccessRule>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "berth-registry".to_string(),
            issuer: "berth-registry".to_string(),
            key: None,
            expiry_secs: 300,
            groups: Default::default(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Repository glob (`*` within a component, `**` across `/`).
    pub repository: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Actions granted: pull, push, delete (`*` for all).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Actions granted to everyone, logged in or not (usually `[pull]`).
    #[serde(default)]
    pub anonymous: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle (PEM): when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Config {
    /// Reads the file (if any), then applies the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let base = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut c = Config::parse_yaml(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                })?;
                c.resolve_relative_to(path.parent().unwrap_or(Path::new(".")));
                c
            }
            None => Config::default(),
        };
        base.with_env(std::env::vars())
    }

    /// Paths in a config file are relative to the file's directory.
    fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(h) = &mut self.auth.htpasswd {
            fix(h);
        }
        if let Some(k) = self.auth.token.as_mut().and_then(|t| t.key.as_mut()) {
            fix(k);
        }
        if let Some(tls) = &mut self.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
    }

    pub fn parse_yaml(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str::<Config>(text).map_err(|e| e.to_string())
    }

    /// Applies `BERTH_REGISTRY_*` variables: the upper-cased path of a key,
    /// sections joined by `_` (`BERTH_REGISTRY_STORAGE_DELETE_ENABLED=false`).
    /// Values are read as YAML scalars (numbers, booleans, strings).
    pub fn with_env(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut tree =
            serde_json::to_value(&self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut leaves = Vec::new();
        collect_leaves(&tree, String::new(), &mut leaves);
        let mut changed = false;
        for (var, raw) in vars {
            let Some(key) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some(path) = leaves
                .iter()
                .find(|p| p.replace('.', "_").to_uppercase() == key)
            else {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: "no such setting".to_string(),
                });
            };
            let value: Value =
                serde_saphyr::from_str::<Value>(&raw).unwrap_or(Value::String(raw.clone()));
            let mut slot = &mut tree;
            for part in path.split('.') {
                slot = &mut slot[part];
            }
            *slot = value;
            changed = true;
        }
        if !changed {
            return Ok(self);
        }
        serde_json::from_value(tree).map_err(|e| ConfigError::Env {
            var: "BERTH_REGISTRY_*".to_string(),
            message: e.to_string(),
        })
    }

    /// The effective config as YAML.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn collect_leaves(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if child.is_object() {
                    collect_leaves(child, path, out);
                } else {
                    out.push(path);
                }
            }
        }
        _ => out.push(prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse_yaml("addr: 127.0.0.1:1\nstorage:\n  delete_enabld: false\n")
            .unwrap_err();
        assert!(err.contains("delete_enabld"), "{err}");
        assert!(err.contains('3'), "{err}");
    }

    #[test]
    fn env_overrides_nested_keys() {
        let c = Config::default()
            .with_env([
                (
                    "BERTH_REGISTRY_STORAGE_DELETE_ENABLED".to_string(),
                    "false".to_string(),
                ),
                ("BERTH_REGISTRY_ADDR".to_string(), "0.0.0.0:1".to_string()),
                (
                    "BERTH_REGISTRY_GC_GRACE_PERIOD_SECS".to_string(),
                    "5".to_string(),
                ),
            ])
            .unwrap();
        assert!(!c.storage.delete_enabled);
        assert_eq!(c.addr, "0.0.0.0:1");
        assert_eq!(c.gc.grace_period_secs, 5);
        let err = Config::default()
            .with_env([("BERTH_REGISTRY_NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("BERTH_REGISTRY_NOPE"));
    }

    #[test]
    fn print_config_round_trips() {
        let c = Config::default();
        let again = Config::parse_yaml(&c.to_yaml()).unwrap();
        assert_eq!(again.addr, c.addr);
        assert_eq!(
            again.storage.manifest_max_bytes,
            c.storage.manifest_max_bytes
        );
    }
}
