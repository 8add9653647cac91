//! Registry credentials in the Docker config format: `~/.docker/config.json` for the CLI, and
//! `kubernetes.io/dockerconfigjson` Secrets for the controller and runner.

use base64::Engine;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// A username and password. `Debug` does not show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Basic({}, <redacted>)", self.username)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("the Docker config is not valid JSON: {0}")]
    Malformed(String),
    #[error(
        "the Docker config entry for {0} has an auth value that is not base64 of user:password"
    )]
    BadAuth(String),
}

/// The host (and port) a Docker config key names: keys may carry a scheme and a path.
fn host_of(key: &str) -> &str {
    let key = key.split_once("://").map_or(key, |(_, rest)| rest);
    key.split('/').next().unwrap_or(key)
}

/// Credentials for `registry` (`host[:port]`) in a Docker config JSON document, if any.
pub fn lookup(config_json: &[u8], registry: &str) -> Result<Option<Basic>, CredentialsError> {
    let config: DockerConfig = serde_json::from_slice(config_json)
        .map_err(|e| CredentialsError::Malformed(e.to_string()))?;
    let Some((key, entry)) = config.auths.iter().find(|(k, _)| host_of(k) == registry) else {
        return Ok(None);
    };
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Basic {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| CredentialsError::BadAuth(key.clone()))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| CredentialsError::BadAuth(key.clone()))?;
    Ok(Some(Basic {
        username: username.into(),
        password: password.into(),
    }))
}

/// The Docker config of the current user: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn user_config() -> Option<Vec<u8>> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))?;
    std::fs::read(dir.join("config.json")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_by_host_in_either_form() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let cfg = format!(
            r#"{{"auths": {{"https://registry.example:5000/v1/": {{"auth": "{auth}"}}, "other.example": {{"username": "bob", "password": "pw"}}}}}}"#
        );
        let alice = lookup(cfg.as_bytes(), "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(
            lookup(cfg.as_bytes(), "other.example")
                .unwrap()
                .unwrap()
                .username,
            "bob"
        );
        assert_eq!(lookup(cfg.as_bytes(), "nowhere.example").unwrap(), None);
        assert!(!format!("{alice:?}").contains("s3cret"));
    }

    #[test]
    fn reports_malformed_configs() {
        assert!(matches!(
            lookup(b"not json", "r"),
            Err(CredentialsError::Malformed(_))
        ));
        let bad = r#"{"auths": {"r": {"auth": "!!!"}}}"#;
        assert_eq!(
            lookup(bad.as_bytes(), "r"),
            Err(CredentialsError::BadAuth("r".into()))
        );
    }
}
