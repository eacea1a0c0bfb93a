//! Registry credentials where docker and podman keep them: docker's
//! `config.json` (`auths`, `credsStore`, `credHelpers`; `$DOCKER_CONFIG` or
//! `~/.docker`) and containers' `auth.json` (`$REGISTRY_AUTH_FILE`, or
//! `$XDG_RUNTIME_DIR/containers/auth.json`), with `docker-credential-<name>`
//! helpers run for `get`, `store` and `erase`.
//!
//! Files are rewritten through serde_json `Value`s so that fields berth does
//! not know survive a `berth login`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Docker Hub's key in `auths`, kept for compatibility with docker.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token service.
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken { username, .. } => {
                write!(f, "IdentityToken({username}, ***)")
            }
        }
    }
}

/// Where credentials are read from and written to.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    /// docker's config.json.
    docker_config: Option<PathBuf>,
    /// containers' auth.json, consulted first.
    auth_file: Option<PathBuf>,
    /// Whether `auth_file` was named explicitly (then logins are written there).
    auth_file_explicit: bool,
}

impl CredentialStore {
    /// The locations docker and podman use, from the environment.
    pub fn from_env() -> CredentialStore {
        let docker_dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        let explicit = std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from);
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(|d| PathBuf::from(d).join("containers/auth.json"));
        CredentialStore {
            docker_config: docker_dir.map(|d| d.join("config.json")),
            auth_file_explicit: explicit.is_some(),
            auth_file: explicit.or(runtime),
        }
    }

    /// Only this docker config.json (tests, embedding).
    pub fn with_docker_config(path: PathBuf) -> CredentialStore {
        CredentialStore {
            docker_config: Some(path),
            auth_file: None,
            auth_file_explicit: false,
        }
    }

    /// No credentials at all: anonymous access.
    pub fn anonymous() -> CredentialStore {
        CredentialStore {
            docker_config: None,
            auth_file: None,
            auth_file_explicit: false,
        }
    }

    /// The credential for `registry` (a host[:port] as in references, `docker.io`
    /// for Docker Hub), if any is configured.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>> {
        for path in [&self.auth_file, &self.docker_config].into_iter().flatten() {
            let Some(config) = read_config(path)? else {
                continue;
            };
            if let Some(helper) = helper_for(&config, registry) {
                if let Some(c) = helper_get(&helper, &server_key(registry))? {
                    return Ok(Some(c));
                }
                continue;
            }
            if let Some(c) = auths_entry(&config, registry)
                .map(|entry| decode_entry(path, entry))
                .transpose()?
                .flatten()
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Saves a login; returns where it went (a file, or the helper's name).
    pub fn store(&self, registry: &str, username: &str, password: &str) -> Result<String> {
        let path = self.write_target()?;
        let mut config = read_config(&path)?.unwrap_or_else(|| json!({}));
        let key = server_key(registry);
        if let Some(helper) = helper_for(&config, registry) {
            helper_store(&helper, &key, username, password)?;
            // docker keeps an empty entry so that `docker info` lists the login.
            set_auth_entry(&mut config, &key, None);
            write_config(&path, &config)?;
            return Ok(format!("docker-credential-{helper}"));
        }
        let auth = B64.encode(format!("{username}:{password}"));
        set_auth_entry(&mut config, &key, Some(auth));
        write_config(&path, &config)?;
        Ok(path.display().to_string())
    }

    /// Removes a login; returns whether there was one.
    pub fn erase(&self, registry: &str) -> Result<bool> {
        let path = self.write_target()?;
        let Some(mut config) = read_config(&path)? else {
            return Ok(false);
        };
        let key = server_key(registry);
        let mut found = false;
        if let Some(helper) = helper_for(&config, registry) {
            found |= helper_erase(&helper, &key)?;
        }
        if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
            for k in key_aliases(registry) {
                found |= auths.remove(&k).is_some();
            }
        }
        write_config(&path, &config)?;
        Ok(found)
    }

    fn write_target(&self) -> Result<PathBuf> {
        if self.auth_file_explicit
            && let Some(p) = &self.auth_file
        {
            return Ok(p.clone());
        }
        self.docker_config.clone().ok_or_else(|| {
            Error::Invalid(
                "no credentials file: set HOME, DOCKER_CONFIG or REGISTRY_AUTH_FILE".to_string(),
            )
        })
    }
}

/// The key a registry is stored under in `auths` and given to helpers.
pub fn server_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

fn key_aliases(registry: &str) -> Vec<String> {
    let mut keys = vec![server_key(registry)];
    if is_docker_hub(registry) {
        keys.extend(["docker.io", "index.docker.io", "registry-1.docker.io"].map(str::to_string));
    } else {
        keys.push(format!("https://{registry}"));
        keys.push(format!("http://{registry}"));
    }
    keys
}

/// docker matches `auths` keys after stripping a scheme and a path.
fn normalise_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn auths_entry<'a>(config: &'a Value, registry: &str) -> Option<&'a Value> {
    let auths = config.get("auths")?.as_object()?;
    let want: Vec<String> = key_aliases(registry);
    if let Some(v) = want.iter().find_map(|k| auths.get(k)) {
        return Some(v);
    }
    let host = if is_docker_hub(registry) {
        "index.docker.io"
    } else {
        registry
    };
    auths
        .iter()
        .find(|(k, _)| normalise_key(k) == host)
        .map(|(_, v)| v)
}

fn decode_entry(path: &Path, entry: &Value) -> Result<Option<Credential>> {
    let bad =
        |what: &str| Error::Invalid(format!("{}: bad \"auth\" entry: {what}", path.display()));
    let (mut username, mut password) = (String::new(), String::new());
    if let Some(auth) = entry.get("auth").and_then(Value::as_str)
        && !auth.is_empty()
    {
        let raw = B64.decode(auth.trim()).map_err(|_| bad("not base64"))?;
        let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let (u, p) = text.split_once(':').ok_or_else(|| bad("no ':'"))?;
        username = u.to_string();
        password = p.to_string();
    } else if let Some(u) = entry.get("username").and_then(Value::as_str) {
        username = u.to_string();
        password = entry
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
    }
    if let Some(token) = entry.get("identitytoken").and_then(Value::as_str)
        && !token.is_empty()
    {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: token.to_string(),
        }));
    }
    if username.is_empty() && password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic { username, password }))
}

fn helper_for(config: &Value, registry: &str) -> Option<String> {
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    if let Some(h) = helpers.and_then(|h| {
        key_aliases(registry)
            .iter()
            .find_map(|k| h.get(k))
            .and_then(Value::as_str)
    }) {
        return Some(h.to_string());
    }
    config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn read_config(path: &Path) -> Result<Option<Value>> {
    let text = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::CredentialsFile {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(json!({})));
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| Error::CredentialsJson {
            path: path.to_path_buf(),
            source,
        })
}

fn set_auth_entry(config: &mut Value, key: &str, auth: Option<String>) {
    if !config.is_object() {
        *config = json!({});
    }
    let Some(obj) = config.as_object_mut() else {
        return;
    };
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Some(auths) = auths.as_object_mut() {
        let entry = auths
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Some(entry) = entry.as_object_mut() {
            match auth {
                Some(a) => {
                    entry.insert("auth".to_string(), Value::String(a));
                    entry.remove("identitytoken");
                }
                None => {
                    entry.remove("auth");
                }
            }
        }
    }
}

/// Writes the file atomically with mode 0600 (it holds secrets).
fn write_config(path: &Path, config: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |source| Error::CredentialsFile {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let mut body = serde_json::to_vec_pretty(config).map_err(|e| io_err(io::Error::other(e)))?;
    body.push(b'\n');
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

fn run_helper(helper: &str, action: &'static str, input: &[u8]) -> Result<(bool, String)> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| Error::CredentialHelper {
        helper: helper.to_string(),
        action,
        message,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for {program}: {e}")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() && text.is_empty() {
        text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    Ok((out.status.success(), text))
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>> {
    let (ok, text) = run_helper(helper, "get", server.as_bytes())?;
    if !ok {
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::CredentialHelper {
            helper: helper.to_string(),
            action: "get",
            message: text,
        });
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::CredentialHelper {
        helper: helper.to_string(),
        action: "get",
        message: format!("bad JSON: {e}"),
    })?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
    let (username, secret) = (field("Username").to_string(), field("Secret").to_string());
    if secret.is_empty() {
        return Ok(None);
    }
    if username == "<token>" {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: secret,
        }));
    }
    Ok(Some(Credential::Basic {
        username,
        password: secret,
    }))
}

fn helper_store(helper: &str, server: &str, username: &str, secret: &str) -> Result<()> {
    let body = json!({"ServerURL": server, "Username": username, "Secret": secret}).to_string();
    let (ok, text) = run_helper(helper, "store", body.as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(Error::CredentialHelper {
            helper: helper.to_string(),
            action: "store",
            message: text,
        })
    }
}

fn helper_erase(helper: &str, server: &str) -> Result<bool> {
    let (ok, text) = run_helper(helper, "erase", server.as_bytes())?;
    if ok {
        Ok(true)
    } else if text.contains("credentials not found") {
        Ok(false)
    } else {
        Err(Error::CredentialHelper {
            helper: helper.to_string(),
            action: "erase",
            message: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_keeps_unknown_fields_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            r#"{"auths":{"other.io":{"auth":"eDp5"}},"psFormat":"table {{.ID}}","proxies":{"default":{}}}"#,
        )
        .unwrap();
        let store = CredentialStore::with_docker_config(path.clone());
        store
            .store("localhost:5000", "me", "secret:with:colons")
            .unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}");
        assert!(v["proxies"]["default"].is_object());
        assert_eq!(v["auths"]["other.io"]["auth"], "eDp5");
        assert_eq!(
            store.get("localhost:5000").unwrap(),
            Some(Credential::Basic {
                username: "me".into(),
                password: "secret:with:colons".into()
            })
        );
        assert!(store.erase("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        assert!(!store.erase("localhost:5000").unwrap());
    }

    #[test]
    fn docker_hub_keys_and_identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"","identitytoken":"tok"},"https://ghcr.io/v2/":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let store = CredentialStore::with_docker_config(path);
        assert!(matches!(
            store.get("docker.io").unwrap(),
            Some(Credential::IdentityToken { token, .. }) if token == "tok"
        ));
        assert_eq!(
            store.get("ghcr.io").unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(store.get("quay.io").unwrap(), None);
    }

    #[test]
    fn broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, "{not json").unwrap();
        let err = CredentialStore::with_docker_config(path)
            .get("x.io")
            .unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
