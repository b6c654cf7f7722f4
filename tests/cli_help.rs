//! The operator's aids (issue 12, deliverable 5): completions and a manual
//! page from clap's own generators, and an example in every subcommand's help.

mod common;

use std::process::Command;

use common::BIN;

fn out(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn completions_for_each_shell_know_the_subcommands_and_flags() {
    for (shell, marker) in [
        ("bash", "_fleetcrypt()"),
        ("zsh", "#compdef fleetcrypt"),
        ("fish", "complete -c fleetcrypt"),
    ] {
        let (code, text) = out(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {text}");
        assert!(text.contains(marker), "{shell}: {marker} missing");
        for word in ["resume", "doctor", "canary", "max-errors", "window-tz"] {
            assert!(text.contains(word), "{shell}: {word} missing");
        }
    }
    let (code, _) = out(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}

#[test]
fn the_manual_page_is_roff_with_every_subcommand() {
    let (code, text) = out(&["man"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(".ie") || text.contains(".TH fleetcrypt"),
        "{}",
        &text[..200.min(text.len())]
    );
    for word in ["run", "resume", "status", "report", "doctor", "emulator"] {
        assert!(text.contains(word), "{word} missing");
    }
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in [
        "demo",
        "plan",
        "run",
        "doctor",
        "resume",
        "status",
        "report",
        "retry-failed",
        "discover",
        "emulator",
        "call",
        "journal",
        "completions",
        "man",
    ] {
        let (code, text) = out(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub}: {text}");
        assert!(
            text.contains("Examples:\n  fleetcrypt ") || text.contains("Examples:\n  watch"),
            "{sub} --help has no example:\n{text}"
        );
    }
    // The rollout flags are grouped under their own heading in `run --help`.
    let (_, text) = out(&["run", "--help"]);
    assert!(text.contains("Rollout:"), "{text}");
}

/// Each subcommand's help lists the flags that mean something to it
/// (issue 12): `emulator --help` has no `--journal`, `--endpoint`,
/// `--resolve` or `--profile`; `status` has `--journal` only. Before the
/// subcommand, or after it, they are still accepted everywhere (SPEC §3).
#[test]
fn subcommand_help_shows_only_the_flags_that_apply() {
    let options = |sub: &str| {
        let (code, text) = out(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub}: {text}");
        text
    };
    let cloud = ["--profile", "--endpoint", "--resolve"];
    for sub in ["emulator", "demo", "completions", "man"] {
        let text = options(sub);
        for flag in cloud.iter().chain(&["--journal"]) {
            assert!(!text.contains(flag), "{sub} --help lists {flag}:\n{text}");
        }
        assert!(text.contains("--log-format"), "{sub}:\n{text}");
    }
    for sub in ["status", "report", "retry-failed"] {
        let text = options(sub);
        assert!(text.contains("--journal"), "{sub}:\n{text}");
        for flag in cloud {
            assert!(!text.contains(flag), "{sub} --help lists {flag}:\n{text}");
        }
    }
    for sub in ["discover", "call"] {
        let text = options(sub);
        assert!(!text.contains("--journal"), "{sub}:\n{text}");
        assert!(cloud.iter().all(|f| text.contains(f)), "{sub}:\n{text}");
    }
    for sub in ["run", "resume", "plan", "doctor"] {
        let text = options(sub);
        for flag in cloud.iter().chain(&["--journal"]) {
            assert!(text.contains(flag), "{sub} --help lacks {flag}:\n{text}");
        }
    }
    // Accepted after a subcommand they do not apply to, as before it.
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = out(&[
        "completions",
        "bash",
        "--journal",
        dir.path().join("x.db").to_str().unwrap(),
        "--endpoint",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(code, 0, "{text}");
}
