//! The checklist: one line per check, a fix under each failure, and the exit
//! code they make (0 all pass, warnings allowed; 3 the credentials failed;
//! 1 any other failure).

use super::super::error::{CliError, CliResult, Done};

/// Clock skew from which `doctor` warns: well inside the API's 5 minutes.
pub const SKEW_WARN_SECS: i64 = 60;
/// Clock skew from which `doctor` fails: a minute before the API refuses
/// every signature (`AuthFailure.SignatureExpire` at 300 s).
pub const SKEW_FAIL_SECS: i64 = 240;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Facts that are not pass or fail (the quota, the ETA).
    Info,
    Pass,
    /// Not checked, because an earlier check failed.
    Skipped,
    /// A run may still work; worth a look.
    Warn,
    Fail,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Info => "[info]",
            Level::Pass => "[ok]  ",
            Level::Skipped => "[--]  ",
            Level::Warn => "[warn]",
            Level::Fail => "[FAIL]",
        }
    }
}

/// How far apart the local clock and the server's may be: `skew_secs` is the
/// server's time minus the local time (either sign).
pub fn skew_level(skew_secs: i64) -> Level {
    match skew_secs.unsigned_abs() {
        s if s >= SKEW_FAIL_SECS as u64 => Level::Fail,
        s if s >= SKEW_WARN_SECS as u64 => Level::Warn,
        _ => Level::Pass,
    }
}

/// One check: what was checked, what was found, and the fix for a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub level: Level,
    pub what: String,
    pub found: String,
    pub fix: Option<String>,
}

#[derive(Debug, Default)]
pub struct Checklist {
    pub items: Vec<Item>,
    /// The credentials are missing or the API refused them (exit 3).
    pub credentials_failed: bool,
    /// Whose checks come next (several accounts, issue 12): each item's
    /// `what` starts with "account NAME: " while it is set.
    pub account: Option<String>,
}

impl Checklist {
    fn what(&self, what: impl Into<String>) -> String {
        match &self.account {
            Some(a) => format!("account {a}: {}", what.into()),
            None => what.into(),
        }
    }

    pub fn push(&mut self, level: Level, what: impl Into<String>, found: impl Into<String>) {
        self.items.push(Item {
            level,
            what: self.what(what),
            found: found.into(),
            fix: None,
        });
    }

    /// A warning or failure with what to do about it.
    pub fn push_fix(
        &mut self,
        level: Level,
        what: impl Into<String>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.items.push(Item {
            level,
            what: self.what(what),
            found: found.into(),
            fix: Some(fix.into()),
        });
    }

    pub fn count(&self, level: Level) -> usize {
        self.items.iter().filter(|i| i.level == level).count()
    }

    pub fn failed(&self) -> bool {
        self.credentials_failed || self.count(Level::Fail) > 0
    }

    /// The items at `at_least` and above, one per line, fixes indented under them.
    pub fn render(&self, at_least: Level) -> String {
        let mut out = String::new();
        for i in self.items.iter().filter(|i| i.level >= at_least) {
            out.push_str(&format!("  {} {}: {}\n", i.level.tag(), i.what, i.found));
            if let Some(fix) = &i.fix {
                out.push_str(&format!("         fix: {fix}\n"));
            }
        }
        out
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> String {
        let (fail, warn) = (self.count(Level::Fail), self.count(Level::Warn));
        match (fail, warn) {
            (0, 0) => "all checks passed".to_string(),
            (0, w) => format!("all checks passed, {w} warning(s)"),
            (f, w) => format!("{f} check(s) failed, {w} warning(s)"),
        }
    }

    /// The exit the checklist makes (SPEC §3): 3 when the credentials
    /// failed, 1 when anything else failed, 0 otherwise (warnings allowed).
    pub fn outcome(&self, what: &str) -> CliResult {
        if self.credentials_failed {
            Err(CliError::Account(format!(
                "{what}: the credentials failed ({})",
                self.verdict()
            )))
        } else if self.failed() {
            Err(CliError::Failed(format!("{what}: {}", self.verdict())))
        } else {
            Ok(Done::Ok)
        }
    }
}

/// A SecretId as it may be shown: its kind prefix and last four characters.
pub fn mask_secret_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_warns_at_60_s_and_fails_at_240_s_either_way() {
        for (skew, level) in [
            (0, Level::Pass),
            (59, Level::Pass),
            (-59, Level::Pass),
            (60, Level::Warn),
            (-60, Level::Warn),
            (90, Level::Warn),
            (239, Level::Warn),
            (-239, Level::Warn),
            (240, Level::Fail),
            (-240, Level::Fail),
            (301, Level::Fail),
            (i64::MIN, Level::Fail),
        ] {
            assert_eq!(skew_level(skew), level, "skew {skew}");
        }
    }

    #[test]
    fn the_exit_code_is_3_for_credentials_1_for_a_failure_0_with_warnings() {
        let mut c = Checklist::default();
        c.push(Level::Pass, "a", "fine");
        c.push_fix(Level::Warn, "b", "odd", "look");
        assert_eq!(c.outcome("doctor"), Ok(Done::Ok));
        c.push_fix(Level::Fail, "kms", "off", "turn it on");
        assert_eq!(c.outcome("doctor").unwrap_err().exit_code(), 1);
        c.credentials_failed = true;
        assert_eq!(c.outcome("doctor").unwrap_err().exit_code(), 3);
        let shown = c.render(Level::Warn);
        assert!(!shown.contains("fine"), "{shown}");
        assert!(
            shown.contains("[FAIL] kms: off\n         fix: turn it on"),
            "{shown}"
        );
        assert_eq!(c.verdict(), "1 check(s) failed, 1 warning(s)");
    }

    #[test]
    fn a_secret_id_shows_only_its_ends() {
        assert_eq!(mask_secret_id("AKIDtest0123456789"), "AKID…6789");
        assert_eq!(mask_secret_id("short"), "*****");
        assert!(!mask_secret_id("AKIDabcdefghijklmnop").contains("efgh"));
    }
}
