//! One instance to encrypt, as the input asked for it: what `input` produces
//! and the journal imports.

use super::InstanceId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub id: InstanceId,
    pub region: String,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    /// The tccli profile whose credentials this instance is worked with (the
    /// `Account` column, or `--account-column`); `None`: the run's own
    /// credentials (`--profile`, the environment, the shared file).
    pub account: Option<String>,
    /// Extra CSV columns, in file order.
    pub labels: Vec<(String, String)>,
    /// 1-based line in the input file.
    pub line: u64,
}

impl InstanceSpec {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `name` may name an account: a tccli profile, read from
/// `~/.tccli/NAME.credential`. At most 64 ASCII letters, digits, `-`, `_` or
/// `.`, not starting with `.`, so an input column can never point the lookup
/// outside `~/.tccli`. The error completes "Account NAME …".
pub fn check_account_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("is not a profile name (1 to 64 characters)");
    }
    if name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(
            "is not a profile name (letters, digits, '-', '_' and '.', not starting with '.')",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_account_name;

    #[test]
    fn account_names_stay_inside_the_tccli_directory() {
        for good in ["prod", "prod-a", "team_b.eu", "A1", &"x".repeat(64)] {
            assert_eq!(check_account_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "../etc",
            "a/b",
            "a b",
            "prod\\x",
            &"x".repeat(65),
            "é",
        ] {
            assert!(check_account_name(bad).is_err(), "{bad:?}");
        }
    }
}
