//! Where credentials come from, in the order SPEC §3 gives: the official CLI's
//! profile file, the environment, then the SDKs' shared credentials file.
//!
//! The secret key and token live in [`Secret`], whose `Debug`/`Display` print a
//! redaction, so a stray `{:?}` can never leak them into a log or a panic.

use std::fmt;
use std::path::{Path, PathBuf};

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value: for signing and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An API key pair with an optional session token.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: Secret,
    pub token: Option<Secret>,
    /// Where they were found, for messages (never the values).
    pub source: String,
}

impl Credentials {
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            secret_id: secret_id.into(),
            secret_key: Secret::new(secret_key),
            token: None,
            source: "given".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no credentials found; fleetcrypt looks, in this order, at: (1) --profile NAME or TCCLI_PROFILE -> ~/.tccli/NAME.credential, (2) the environment variables TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (optional TENCENTCLOUD_TOKEN), (3) ~/.tencentcloud/credentials, section [default], keys secret_id and secret_key")]
    Missing,
    #[error("cannot read the credential file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the credential file {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The environment as the lookup sees it; a trait so tests need not mutate the process env.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Finds credentials: `--profile` (or `TCCLI_PROFILE`), else env, else `~/.tencentcloud/credentials`.
pub fn load(profile: Option<&str>, env: &dyn Env) -> Result<Credentials, CredentialsError> {
    let home = env.var("HOME").map(PathBuf::from);
    let profile = profile
        .map(str::to_string)
        .or_else(|| env.var("TCCLI_PROFILE"));
    if let Some(name) = profile {
        let Some(home) = &home else {
            return Err(CredentialsError::Missing);
        };
        let path = home.join(".tccli").join(format!("{name}.credential"));
        return read_tccli(&path);
    }
    if let (Some(id), Some(key)) = (
        env.var("TENCENTCLOUD_SECRET_ID"),
        env.var("TENCENTCLOUD_SECRET_KEY"),
    ) {
        return Ok(Credentials {
            secret_id: id.trim().to_string(),
            secret_key: Secret::new(key.trim()),
            token: env.var("TENCENTCLOUD_TOKEN").map(Secret::new),
            source: "environment (TENCENTCLOUD_SECRET_ID)".into(),
        });
    }
    if let Some(home) = &home {
        let path = home.join(".tencentcloud").join("credentials");
        if path.exists() {
            return read_ini(&path);
        }
    }
    Err(CredentialsError::Missing)
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `~/.tccli/NAME.credential`: `{"secretId": "...", "secretKey": "...", "token": "..."}`.
fn read_tccli(path: &Path) -> Result<Credentials, CredentialsError> {
    let text = read(path)?;
    let invalid = |reason: &str| CredentialsError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    // Parse into a map of strings; the error text of serde_json never echoes values.
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| invalid("not a JSON object"))?;
    let get = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let id = get("secretId").ok_or_else(|| invalid("missing \"secretId\""))?;
    let key = get("secretKey").ok_or_else(|| invalid("missing \"secretKey\""))?;
    Ok(Credentials {
        secret_id: id,
        secret_key: Secret::new(key),
        token: get("token").map(Secret::new),
        source: path.display().to_string(),
    })
}

/// `~/.tencentcloud/credentials`: INI, section `[default]`, `secret_id`/`secret_key` (and `token`).
fn read_ini(path: &Path) -> Result<Credentials, CredentialsError> {
    let text = read(path)?;
    let mut in_default = false;
    let (mut id, mut key, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            in_default = line == "[default]";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "secret_id" => id = Some(v),
                "secret_key" => key = Some(v),
                "token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (id, key) {
        (Some(id), Some(key)) if !id.is_empty() && !key.is_empty() => Ok(Credentials {
            secret_id: id,
            secret_key: Secret::new(key),
            token: token.filter(|t| !t.is_empty()).map(Secret::new),
            source: path.display().to_string(),
        }),
        _ => Err(CredentialsError::Invalid {
            path: path.to_path_buf(),
            reason: "section [default] needs secret_id and secret_key".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, content) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn secret_never_prints() {
        let c = Credentials {
            secret_id: "AKIDx".into(),
            secret_key: Secret::new("supersecret"),
            token: Some(Secret::new("tok3n")),
            source: "t".into(),
        };
        let shown = format!("{c:?} {} {}", c.secret_key, c.token.as_ref().unwrap());
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("tok3n"), "{shown}");
        assert!(shown.contains("AKIDx"));
    }

    #[test]
    fn profile_wins_over_env_and_file() {
        let home = home_with(&[
            (
                ".tccli/work.credential",
                r#"{"secretId": "AKIDprofile", "secretKey": "kp", "token": "tp"}"#,
            ),
            (
                ".tencentcloud/credentials",
                "[default]\nsecret_id = AKIDfile\nsecret_key = kf\n",
            ),
        ]);
        let h = home.path().to_str().unwrap();
        let env = [
            ("HOME", h),
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "ke"),
        ];
        let c = load(Some("work"), &env).unwrap();
        assert_eq!(c.secret_id, "AKIDprofile");
        assert_eq!(c.secret_key.expose(), "kp");
        assert_eq!(c.token.unwrap().expose(), "tp");
        // TCCLI_PROFILE selects the profile too.
        let env = [
            ("HOME", h),
            ("TCCLI_PROFILE", "work"),
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "ke"),
        ];
        assert_eq!(load(None, &env).unwrap().secret_id, "AKIDprofile");
    }

    #[test]
    fn env_wins_over_file_and_reads_token() {
        let home = home_with(&[(
            ".tencentcloud/credentials",
            "[default]\nsecret_id = AKIDfile\nsecret_key = kf\n",
        )]);
        let h = home.path().to_str().unwrap();
        let env = [
            ("HOME", h),
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "ke"),
            ("TENCENTCLOUD_TOKEN", "te"),
        ];
        let c = load(None, &env).unwrap();
        assert_eq!(c.secret_id, "AKIDenv");
        assert_eq!(c.token.unwrap().expose(), "te");
    }

    #[test]
    fn shared_file_default_section_only() {
        let home = home_with(&[(
            ".tencentcloud/credentials",
            "[other]\nsecret_id = AKIDother\nsecret_key = ko\n\n[default]\nsecret_id = AKIDfile\nsecret_key = kf\n",
        )]);
        let env = [("HOME", home.path().to_str().unwrap())];
        let c = load(None, &env).unwrap();
        assert_eq!(c.secret_id, "AKIDfile");
        assert_eq!(c.secret_key.expose(), "kf");
        assert!(c.token.is_none());
    }

    #[test]
    fn missing_names_all_three_places() {
        let home = home_with(&[]);
        let env = [("HOME", home.path().to_str().unwrap())];
        let msg = load(None, &env).unwrap_err().to_string();
        assert!(msg.contains("~/.tccli/NAME.credential"), "{msg}");
        assert!(msg.contains("TENCENTCLOUD_SECRET_ID"), "{msg}");
        assert!(msg.contains("~/.tencentcloud/credentials"), "{msg}");
    }

    #[test]
    fn broken_profile_file_does_not_echo_its_content() {
        let home = home_with(&[(".tccli/p.credential", "secretKey=hunter2 not json")]);
        let env = [("HOME", home.path().to_str().unwrap())];
        let msg = load(Some("p"), &env).unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("p.credential"), "{msg}");
    }

    #[test]
    fn a_secret_prints_as_a_visible_redaction_marker() {
        // Redacted, but visibly present: a log line must show that a value was there.
        let s = Secret::new("supersecret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
    }

    #[test]
    fn the_process_environment_is_read_as_it_is() {
        // PATH is set (non-empty) wherever cargo runs the tests.
        let path = std::env::var("PATH").unwrap();
        assert!(!path.is_empty());
        assert_eq!(ProcessEnv.var("PATH"), Some(path));
        assert_eq!(
            ProcessEnv.var("FLEETCRYPT_TEST_SURELY_UNSET_VARIABLE"),
            None
        );
    }

    #[test]
    fn shared_file_reads_a_token_and_ignores_an_empty_one() {
        let home = home_with(&[(
            ".tencentcloud/credentials",
            "[default]\nsecret_id = AKIDfile\nsecret_key = kf\ntoken = tf\n",
        )]);
        let env = [("HOME", home.path().to_str().unwrap())];
        let c = load(None, &env).unwrap();
        assert_eq!(c.token.expect("token read").expose(), "tf");

        let home = home_with(&[(
            ".tencentcloud/credentials",
            "[default]\nsecret_id = AKIDfile\nsecret_key = kf\ntoken =\n",
        )]);
        let env = [("HOME", home.path().to_str().unwrap())];
        assert!(load(None, &env).unwrap().token.is_none());
    }

    #[test]
    fn shared_file_with_an_empty_secret_id_or_key_is_invalid() {
        for content in [
            "[default]\nsecret_id =\nsecret_key = kf\n",
            "[default]\nsecret_id = AKIDfile\nsecret_key =\n",
            "[default]\nsecret_id =\nsecret_key =\n",
        ] {
            let home = home_with(&[(".tencentcloud/credentials", content)]);
            let env = [("HOME", home.path().to_str().unwrap())];
            match load(None, &env) {
                Err(CredentialsError::Invalid { reason, .. }) => {
                    assert!(reason.contains("secret_id and secret_key"), "{reason}")
                }
                other => panic!("{content:?}: {other:?}"),
            }
        }
    }
}
