//! Who may do what: no auth, htpasswd (bcrypt) basic auth, or a built-in
//! token service in the style of Docker Hub's (`/token` issues ES256 JWTs
//! whose `access` claim lists repository actions; the API answers
//! `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenges).
//!
//! In token mode a request whose token lacks an action gets 401 with a
//! challenge when the rules would grant the action to the token's subject
//! (the client fetches a better token), and 403 `DENIED` when they would not.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::config::{AuthConfig, TokenConfig};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::routes::Shared;

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read htpasswd file {path}")]
    Htpasswd {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd file {path}, line {line}: {message}")]
    HtpasswdLine {
        path: String,
        line: usize,
        message: String,
    },
    #[error("bad repository glob {glob:?} in an access rule")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("unknown action {0:?} in an access rule (pull, push, delete, catalog or *)")]
    Action(String),
    #[error("token signing key {path}: {message}")]
    Key { path: String, message: String },
    #[error("cannot generate a token signing key")]
    KeyGen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// `registry:catalog:*`
    Catalog,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "*",
        }
    }

    fn parse(s: &str) -> Option<Vec<Action>> {
        match s {
            "pull" => Some(vec![Action::Pull]),
            "push" => Some(vec![Action::Push]),
            "delete" => Some(vec![Action::Delete]),
            "catalog" => Some(vec![Action::Catalog]),
            "*" => Some(vec![Action::Pull, Action::Push, Action::Delete]),
            _ => None,
        }
    }
}

/// htpasswd users with their bcrypt hashes, and a cache of credentials that
/// verified (bcrypt costs tens of milliseconds, and clients send basic auth
/// on every request).
struct Users {
    hashes: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Users {
    fn load(path: &Path) -> Result<Users, AuthSetupError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Htpasswd {
            path: p.clone(),
            source,
        })?;
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(AuthSetupError::HtpasswdLine {
                    path: p,
                    line: i + 1,
                    message: "expected USER:HASH".to_string(),
                });
            };
            if !hash.starts_with("$2") {
                return Err(AuthSetupError::HtpasswdLine {
                    path: p,
                    line: i + 1,
                    message: format!("user {user}: only bcrypt hashes are supported (htpasswd -B)"),
                });
            }
            hashes.insert(user.to_string(), hash.to_string());
        }
        Ok(Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
        })
    }

    async fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.hashes.get(user).cloned() else {
            return false;
        };
        let mut key = sha2::Sha256::new();
        key.update(user.as_bytes());
        key.update([0]);
        key.update(password.as_bytes());
        key.update([0]);
        key.update(hash.as_bytes());
        let key: [u8; 32] = key.finalize().into();
        if self
            .verified
            .lock()
            .map(|v| v.contains(&key))
            .unwrap_or(false)
        {
            return true;
        }
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() > 10_000 {
                v.clear();
            }
            v.insert(key);
        }
        ok
    }
}

struct Rule {
    glob: GlobMatcher,
    users: Vec<String>,
    groups: Vec<String>,
    actions: BTreeSet<Action>,
    anonymous: BTreeSet<Action>,
}

fn parse_actions(list: &[String]) -> Result<BTreeSet<Action>, AuthSetupError> {
    let mut out = BTreeSet::new();
    for a in list {
        out.extend(Action::parse(a).ok_or_else(|| AuthSetupError::Action(a.clone()))?);
    }
    Ok(out)
}

struct TokenService {
    config: TokenConfig,
    rules: Vec<Rule>,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
}

#[derive(Debug, Serialize, Deserialize)]
struct AccessEntry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    access: Vec<AccessEntry>,
}

impl TokenService {
    fn new(config: &TokenConfig) -> Result<TokenService, AuthSetupError> {
        let mut rules = Vec::new();
        for r in &config.rules {
            let glob = GlobBuilder::new(&r.repository)
                .literal_separator(true)
                .build()
                .map_err(|source| AuthSetupError::Glob {
                    glob: r.repository.clone(),
                    source,
                })?
                .compile_matcher();
            rules.push(Rule {
                glob,
                users: r.users.clone(),
                groups: r.groups.clone(),
                actions: parse_actions(&r.actions)?,
                anonymous: parse_actions(&r.anonymous)?,
            });
        }
        let pkcs8 = match &config.key {
            Some(path) => {
                use rustls_pki_types::pem::PemObject;
                let key =
                    rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| {
                        AuthSetupError::Key {
                            path: path.display().to_string(),
                            message: format!("expected a PKCS#8 EC P-256 private key in PEM ({e})"),
                        }
                    })?;
                key.secret_pkcs8_der().to_vec()
            }
            None => {
                let rng = ring::rand::SystemRandom::new();
                ring::signature::EcdsaKeyPair::generate_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .map_err(|_| AuthSetupError::KeyGen)?
                .as_ref()
                .to_vec()
            }
        };
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &rng,
        )
        .map_err(|e| AuthSetupError::Key {
            path: config
                .key
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            message: format!("not an EC P-256 key ({e})"),
        })?;
        use ring::signature::KeyPair as _;
        let decoding = jsonwebtoken::DecodingKey::from_ec_der(pair.public_key().as_ref());
        let encoding = jsonwebtoken::EncodingKey::from_ec_der(&pkcs8);
        Ok(TokenService {
            config: config.clone(),
            rules,
            encoding,
            decoding,
        })
    }

    /// What the rules grant `user` (None: anonymous) on `repo`.
    fn granted(&self, user: Option<&str>, repo: &str) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for rule in &self.rules {
            let catalog_rule = repo == "*";
            if !catalog_rule && !rule.glob.is_match(repo) {
                continue;
            }
            let filter = |set: &BTreeSet<Action>| -> Vec<Action> {
                set.iter()
                    .copied()
                    .filter(|a| (*a == Action::Catalog) == catalog_rule)
                    .collect()
            };
            out.extend(filter(&rule.anonymous));
            if let Some(u) = user {
                let member = rule.users.iter().any(|x| x == u || x == "*")
                    || rule.groups.iter().any(|g| {
                        self.config
                            .groups
                            .get(g)
                            .is_some_and(|members| members.iter().any(|m| m == u))
                    });
                if member {
                    out.extend(filter(&rule.actions));
                }
            }
        }
        out
    }

    fn issue(
        &self,
        user: Option<&str>,
        scopes: &[(String, String, Vec<String>)],
    ) -> ApiResult<(String, u64)> {
        let now = chrono::Utc::now().timestamp();
        let mut access = Vec::new();
        for (kind, name, wanted) in scopes {
            let repo = if kind == "registry" && name == "catalog" {
                "*"
            } else if kind == "repository" {
                name.as_str()
            } else {
                continue;
            };
            let granted = self.granted(user, repo);
            let actions: Vec<String> = wanted
                .iter()
                .filter(|w| {
                    Action::parse(if repo == "*" { "catalog" } else { w })
                        .is_some_and(|acts| acts.iter().all(|a| granted.contains(a)))
                })
                .cloned()
                .collect();
            access.push(AccessEntry {
                kind: kind.clone(),
                name: name.clone(),
                actions,
            });
        }
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: user.unwrap_or("").to_string(),
            aud: self.config.service.clone(),
            exp: now + self.config.expiry_secs as i64,
            nbf: now - 10,
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| ApiError::internal(&e))?;
        Ok((token, self.config.expiry_secs))
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[&self.config.service]);
        v.set_issuer(&[&self.config.issuer]);
        v.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .ok()
            .map(|d| d.claims)
    }
}

enum Mode {
    Open,
    Basic(Users),
    Token {
        users: Option<Users>,
        service: Box<TokenService>,
    },
}

pub struct Auth {
    mode: Mode,
    /// Scheme of the default token realm (this server's /token).
    scheme: &'static str,
}

/// `Basic` credentials of a request.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn scope_string(need: Option<(&str, Action)>) -> Option<String> {
    need.map(|(repo, action)| match action {
        Action::Catalog => "registry:catalog:*".to_string(),
        Action::Push => format!("repository:{repo}:pull,push"),
        a => format!("repository:{repo}:{}", a.as_str()),
    })
}

impl Auth {
    /// `tls`: whether this server speaks HTTPS (for the default realm URL).
    pub fn new(config: &AuthConfig, tls: bool) -> Result<Auth, AuthSetupError> {
        let users = config.htpasswd.as_deref().map(Users::load).transpose()?;
        let mode = match (&config.token, users) {
            (Some(token), users) => Mode::Token {
                users,
                service: Box::new(TokenService::new(token)?),
            },
            (None, Some(users)) => Mode::Basic(users),
            (None, None) => Mode::Open,
        };
        Ok(Auth {
            mode,
            scheme: if tls { "https" } else { "http" },
        })
    }

    fn challenge_basic() -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, "authentication required").with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"berth-registry\""),
        )
    }

    fn challenge_bearer(
        &self,
        headers: &HeaderMap,
        need: Option<(&str, Action)>,
        error: Option<&str>,
    ) -> ApiError {
        let Mode::Token { service, .. } = &self.mode else {
            return Self::challenge_basic();
        };
        let realm = service.config.realm.clone().unwrap_or_else(|| {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("{}://{host}/token", self.scheme)
        });
        let mut value = format!(
            "Bearer realm=\"{realm}\",service=\"{}\"",
            service.config.service
        );
        if let Some(scope) = scope_string(need) {
            value.push_str(&format!(",scope=\"{scope}\""));
        }
        if let Some(e) = error {
            value.push_str(&format!(",error=\"{e}\""));
        }
        let mut err = ApiError::new(ErrorCode::Unauthorized, "authentication required");
        if let Ok(v) = HeaderValue::from_str(&value) {
            err = err.with_header(header::WWW_AUTHENTICATE, v);
        }
        err
    }

    /// Checks that the request may do `need` (None: just be authenticated,
    /// for `/v2/`).
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        need: Option<(&str, Action)>,
    ) -> ApiResult<()> {
        match &self.mode {
            Mode::Open => Ok(()),
            Mode::Basic(users) => match basic_credentials(headers) {
                Some((u, p)) if users.verify(&u, &p).await => Ok(()),
                _ => Err(Self::challenge_basic()),
            },
            Mode::Token { service, .. } => {
                let Some(claims) = bearer(headers).and_then(|t| service.verify(t)) else {
                    // No token, an expired one or a forged one.
                    let err = bearer(headers).map(|_| "invalid_token");
                    return Err(self.challenge_bearer(headers, need, err));
                };
                let Some((repo, action)) = need else {
                    return Ok(());
                };
                let (kind, name) = if action == Action::Catalog {
                    ("registry", "catalog")
                } else {
                    ("repository", repo)
                };
                let held = claims.access.iter().any(|a| {
                    a.kind == kind
                        && a.name == name
                        && a.actions.iter().any(|x| x == action.as_str() || x == "*")
                });
                if held {
                    return Ok(());
                }
                let user = (!claims.sub.is_empty()).then_some(claims.sub.as_str());
                let grantable = service
                    .granted(user, if action == Action::Catalog { "*" } else { repo })
                    .contains(&action);
                if grantable || user.is_none() {
                    Err(self.challenge_bearer(headers, need, Some("insufficient_scope")))
                } else {
                    Err(ApiError::new(
                        ErrorCode::Denied,
                        format!("{} access to {name} is denied", action.as_str()),
                    ))
                }
            }
        }
    }

    /// Whether the request may do `action` on `repo`, without an error.
    pub async fn allows(&self, headers: &HeaderMap, repo: &str, action: Action) -> bool {
        self.authorize(headers, Some((repo, action))).await.is_ok()
    }
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    account: Option<String>,
}

/// `GET /token?service=...&scope=...`: a JWT for the scopes the caller may
/// have (anonymous when no credentials come with the request).
pub async fn token_endpoint(
    State(state): State<Shared>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let Mode::Token { users, service } = &state.auth.mode else {
        return ApiError::new(ErrorCode::Unsupported, "this registry has no token service")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    if let Some(s) = &q.service
        && s != &service.config.service
    {
        return ApiError::new(ErrorCode::Denied, format!("unknown service {s:?}"))
            .with_status(StatusCode::BAD_REQUEST)
            .into_response();
    }
    let user = match basic_credentials(&headers) {
        Some((u, p)) => {
            let ok = match users {
                Some(users) => users.verify(&u, &p).await,
                None => false,
            };
            if !ok {
                return Auth::challenge_basic().into_response();
            }
            Some(u)
        }
        None => None,
    };
    let _ = q.account;
    // `scope` may repeat: read them all from the raw query.
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k != "scope" {
            continue;
        }
        for one in v.split(' ') {
            let mut parts = one.rsplitn(2, ':');
            let (Some(actions), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some((kind, name)) = rest.split_once(':') else {
                continue;
            };
            scopes.push((
                kind.to_string(),
                name.to_string(),
                actions.split(',').map(str::to_string).collect(),
            ));
        }
    }
    match service.issue(user.as_deref(), &scopes) {
        Ok((token, expires_in)) => axum::Json(serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": chrono::Utc::now().to_rfc3339(),
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessRule;

    fn service() -> TokenService {
        let config = TokenConfig {
            rules: vec![
                AccessRule {
                    repository: "team/**".to_string(),
                    users: vec!["alice".to_string()],
                    groups: vec!["devs".to_string()],
                    actions: vec!["pull".to_string(), "push".to_string()],
                    anonymous: vec![],
                },
                AccessRule {
                    repository: "public/*".to_string(),
                    users: vec![],
                    groups: vec![],
                    actions: vec![],
                    anonymous: vec!["pull".to_string()],
                },
            ],
            groups: [("devs".to_string(), vec!["bob".to_string()])].into(),
            ..TokenConfig::default()
        };
        TokenService::new(&config).unwrap()
    }

    #[test]
    fn rules_grant_by_user_group_glob_and_anonymous() {
        let s = service();
        assert!(s.granted(Some("alice"), "team/a/b").contains(&Action::Push));
        assert!(s.granted(Some("bob"), "team/x").contains(&Action::Pull));
        assert!(!s.granted(Some("bob"), "team/x").contains(&Action::Delete));
        assert!(s.granted(Some("carol"), "team/x").is_empty());
        assert!(s.granted(None, "public/x").contains(&Action::Pull));
        assert!(s.granted(None, "public/x/y").is_empty());
    }

    #[test]
    fn tokens_verify_and_carry_only_granted_actions() {
        let s = service();
        let scopes = vec![(
            "repository".to_string(),
            "team/x".to_string(),
            vec!["pull".to_string(), "delete".to_string()],
        )];
        let (token, _) = s.issue(Some("alice"), &scopes).unwrap();
        let claims = s.verify(&token).unwrap();
        assert_eq!(claims.access[0].actions, vec!["pull".to_string()]);
        let mut forged = token.clone();
        forged.pop();
        forged.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(s.verify(&forged).is_none());
        let other = service();
        assert!(
            other.verify(&token).is_none(),
            "another key must not verify"
        );
    }
}
