//! Authentication challenges and the Docker registry token flow.
//!
//! A registry answers an unauthenticated request with 401 and a
//! `WWW-Authenticate` header: `Basic realm=...` (send the credentials on every
//! request) or `Bearer realm=...,service=...,scope=...` (trade the credentials
//! for a token at `realm`: a GET with basic auth, or, holding an OAuth2 refresh
//! token, the POST form with `grant_type=refresh_token`). Tokens are cached per
//! set of scopes until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::credentials::Credential;
use crate::error::{Error, Result};

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value; Bearer wins when several are offered.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        }),
        "basic" => Some(Challenge::Basic),
        _ => None,
    }
}

/// `key=value, key="quoted, value"` pairs (RFC 7235 auth-params).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.insert(key, value);
    }
}

#[derive(Debug, Clone)]
struct CachedToken {
    value: String,
    expires: Instant,
}

/// Tokens by (registry, scopes).
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, CachedToken>>,
}

fn cache_key(registry: &str, scopes: &[String]) -> String {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    format!("{registry} {}", sorted.join(" "))
}

impl TokenCache {
    pub fn get(&self, registry: &str, scopes: &[String]) -> Option<String> {
        let map = self.tokens.lock().ok()?;
        map.get(&cache_key(registry, scopes))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.value.clone())
    }

    pub fn put(&self, registry: &str, scopes: &[String], value: String, lifetime: Duration) {
        // Renew a little early so a token does not expire in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        if let Ok(mut map) = self.tokens.lock() {
            map.insert(
                cache_key(registry, scopes),
                CachedToken {
                    value,
                    expires: Instant::now() + lifetime - margin,
                },
            );
        }
    }

    pub fn forget(&self, registry: &str, scopes: &[String]) {
        if let Ok(mut map) = self.tokens.lock() {
            map.remove(&cache_key(registry, scopes));
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A token and how long it lives.
pub struct Token {
    pub value: String,
    pub lifetime: Duration,
}

/// The token spec's minimum lifetime when the server names none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// Asks the token service at `realm` for a token covering `scopes`.
pub async fn fetch_token(
    http: &reqwest::Client,
    host: &str,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credential: Option<&Credential>,
) -> Result<Token> {
    let token_err = |message: String| Error::Token {
        host: host.to_string(),
        realm: realm.to_string(),
        message,
    };
    let request = match credential {
        Some(Credential::IdentityToken { token, .. }) => {
            let mut form: Vec<(&str, &str)> = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "berth"),
            ];
            if let Some(s) = service {
                form.push(("service", s));
            }
            let scope = scopes.join(" ");
            if !scope.is_empty() {
                form.push(("scope", &scope));
            }
            http.post(realm).form(&form)
        }
        other => {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = service {
                query.push(("service", s));
            }
            for s in scopes {
                query.push(("scope", s));
            }
            let mut req = http.get(realm).query(&query);
            if let Some(Credential::Basic { username, password }) = other {
                req = req
                    .basic_auth(username, Some(password))
                    .query(&[("account", username.as_str())]);
            }
            req
        }
    };
    let resp = request.send().await.map_err(|e| token_err(e.to_string()))?;
    let status = resp.status();
    let body = crate::transport::read_limited(resp, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|e| token_err(e.to_string()))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(Error::Unauthorized {
            host: host.to_string(),
            message: format!(
                "the token service refused the credentials ({})",
                crate::transport::error_summary(&body).unwrap_or_else(|| status.to_string())
            ),
        });
    }
    if !status.is_success() {
        return Err(token_err(format!(
            "HTTP {status}{}",
            crate::transport::error_summary(&body)
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        )));
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| token_err(format!("bad JSON: {e}")))?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token)
        .ok_or_else(|| token_err("the response holds no token".to_string()))?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .filter(|d| *d >= DEFAULT_TOKEN_LIFETIME)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok(Token { value, lifetime })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
        let p = parse_params(r#" a=1 , b="x\"y", c = "" "#);
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "x\"y");
        assert_eq!(p["c"], "");
    }

    #[test]
    fn token_cache_keys_ignore_scope_order() {
        let cache = TokenCache::default();
        let a = vec!["repository:a:pull".to_string(), "repository:b:push".into()];
        let b = vec!["repository:b:push".to_string(), "repository:a:pull".into()];
        cache.put("r", &a, "t".into(), Duration::from_secs(300));
        assert_eq!(cache.get("r", &b).as_deref(), Some("t"));
        assert_eq!(cache.get("other", &b), None);
        cache.forget("r", &a);
        assert_eq!(cache.get("r", &a), None);
    }
}
